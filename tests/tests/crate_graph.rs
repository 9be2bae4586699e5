//! The crate graph is the architecture (ARCHITECTURE.md, "Crates"):
//! dependencies point one way down the layer list, only the diagnosis
//! crate links XGBoost and it has no runtime, only the store has sled, the
//! `distdiag` CLI and the agent link neither. The graph drawn in
//! ARCHITECTURE.md is the one `cargo metadata` gives (`DISTDIAG_BLESS=1`
//! redraws it).

#![allow(clippy::unwrap_used, clippy::expect_used)]
// Runs cargo to read the dependency graph.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

/// Lower layers first: a crate may depend only on crates before it.
const LAYERS: [&str; 12] = [
    "distdiag-common",
    "distdiag-dataset",
    "distdiag-api",
    "distdiag-store",
    "distdiag-diagnose",
    "distdiag-workload",
    "distdiag-agent",
    "distdiag-coordinator",
    "distdiag-cli",
    "distdiag-testbed",
    "distdiag-tests",
    "distdiag-fuzz",
];

fn root() -> PathBuf {
    distdiag_testbed::package_dir(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Workspace crate → the workspace crates it depends on (normal dependencies).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(cargo())
        .current_dir(root())
        .args(["metadata", "--format-version", "1", "--offline"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let members: BTreeSet<&str> =
        v["workspace_members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    let names: BTreeMap<&str, &str> = v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let mut g = BTreeMap::new();
    for n in v["resolve"]["nodes"].as_array().unwrap() {
        let id = n["id"].as_str().unwrap();
        if !members.contains(id) {
            continue;
        }
        let deps = n["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| members.contains(d["pkg"].as_str().unwrap()))
            .filter(|d| d["dep_kinds"].as_array().unwrap().iter().any(|k| k["kind"].is_null()))
            .map(|d| names[d["pkg"].as_str().unwrap()].to_owned())
            .collect();
        g.insert(names[id].to_owned(), deps);
    }
    g
}

/// Every package in the normal dependency tree of `krate` built alone.
fn tree(krate: &str) -> BTreeSet<String> {
    let out = Command::new(cargo())
        .current_dir(root())
        .args(["tree", "--offline", "-p", krate, "-e", "normal", "--prefix", "none", "-f", "{p}"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn dependencies_point_down_the_layers() {
    let g = graph();
    assert_eq!(
        g.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        LAYERS.into_iter().collect(),
        "a crate is missing from LAYERS"
    );
    for (krate, deps) in &g {
        let at = LAYERS.iter().position(|l| l == krate).unwrap();
        for d in deps {
            let dat = LAYERS.iter().position(|l| l == d).unwrap();
            assert!(dat < at, "{krate} depends on {d}, which is not below it");
        }
    }
    let allowed: [(&str, &[&str]); 3] = [
        ("distdiag-cli", &["distdiag-api", "distdiag-dataset"]),
        ("distdiag-agent", &["distdiag-common"]),
        ("distdiag-diagnose", &["distdiag-common", "distdiag-dataset", "distdiag-api"]),
    ];
    for (krate, only) in allowed {
        assert!(g[krate].iter().all(|d| only.contains(&d.as_str())), "{krate}: {:?}", g[krate]);
    }
}

#[test]
fn what_links_what() {
    let has = |krate: &str, pkg: &str| tree(krate).contains(pkg);
    assert!(has("distdiag-diagnose", "xgb"));
    for runtime in ["tokio", "mio", "reqwest", "sled", "hyper"] {
        assert!(!has("distdiag-diagnose", runtime), "the diagnosis crate pulls {runtime}");
    }
    for krate in [
        "distdiag-cli",
        "distdiag-agent",
        "distdiag-api",
        "distdiag-dataset",
        "distdiag-store",
        "distdiag-workload",
    ] {
        assert!(!has(krate, "xgb"), "{krate} links XGBoost");
    }
    for krate in
        ["distdiag-cli", "distdiag-agent", "distdiag-api", "distdiag-dataset", "distdiag-diagnose"]
    {
        assert!(!has(krate, "sled"), "{krate} pulls sled");
    }
}

#[test]
fn architecture_md_draws_this_graph() {
    let g = graph();
    let mut drawn = String::from("```mermaid\ngraph TD\n");
    for krate in LAYERS.iter().rev() {
        for d in &g[*krate] {
            drawn.push_str(&format!(
                "    {} --> {}\n",
                krate.trim_start_matches("distdiag-"),
                d.trim_start_matches("distdiag-")
            ));
        }
    }
    drawn.push_str("```\n");
    let path = root().join("ARCHITECTURE.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let (start, end) =
        ("<!-- crate-graph: tests/tests/crate_graph.rs -->\n", "<!-- /crate-graph -->");
    let a = text.find(start).expect("ARCHITECTURE.md has no crate-graph markers") + start.len();
    let b = text[a..].find(end).expect("no end marker") + a;
    if std::env::var_os("DISTDIAG_BLESS").is_some() {
        std::fs::write(&path, format!("{}{drawn}{}", &text[..a], &text[b..])).unwrap();
        return;
    }
    assert_eq!(&text[a..b], drawn, "ARCHITECTURE.md's crate graph is out of date; DISTDIAG_BLESS=1 cargo test -p distdiag-tests --test crate_graph redraws it");
}
