//! Kubernetes (`[kubernetes]`): the OBServer pods of an ob-operator cluster,
//! found by label selector when the coordinator starts, become
//! `[[databases]]` entries, each with `host_node` = the Kubernetes node it
//! runs on — the name the agent of that node (DaemonSet, `--node
//! $(NODE_NAME)`) carries — so database series and faults are labelled with
//! the right node. Static `[[databases]]` stay the default and win over a
//! discovered pod of the same name. The pods found are also the targets of
//! the Chaos Mesh injector ([`crate::chaos`]).
//!
//! Discovery runs once per start: a pod that is rescheduled (new address or
//! node) is followed at the next start, and `GET /api/databases` shows a
//! probe that lost its pod as disconnected until then.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde::{Deserialize, Serialize};

use distdiag_workload::db::{DbTarget, DialectKind};

/// `[kubernetes]` of the coordinator's configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KubeConfig {
    /// Find the database pods through the Kubernetes API at start.
    pub discover: bool,
    /// kubeconfig file; none: the pod's service account when in a cluster,
    /// else `$KUBECONFIG` or `~/.kube/config`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace of the database pods; none: every namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// ob-operator labels every OBServer pod `ref-obcluster=<cluster>`
    /// (and `ref-obzone`, `ref-observer`).
    pub label_selector: String,
    /// SQL port of each pod.
    pub port: u16,
    pub dialect: DialectKind,
    pub user: String,
    /// Environment variable holding the database password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// Schema the workloads use.
    pub schema: String,
    pub chaos_mesh: ChaosMeshConfig,
}

/// `[kubernetes.chaos_mesh]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChaosMeshConfig {
    /// Inject CPU, memory and network faults on a node that runs a
    /// discovered database pod as Chaos Mesh StressChaos / NetworkChaos
    /// resources aimed at that pod, instead of asking the node's agent.
    pub enabled: bool,
    /// Namespace the chaos resources are created in.
    pub namespace: String,
}

impl Default for KubeConfig {
    fn default() -> Self {
        KubeConfig {
            discover: false,
            kubeconfig: None,
            namespace: None,
            label_selector: "ref-obcluster".into(),
            port: 2881,
            dialect: DialectKind::Oceanbase,
            user: "root".into(),
            password_env: None,
            schema: "distdiag".into(),
            chaos_mesh: ChaosMeshConfig::default(),
        }
    }
}

impl Default for ChaosMeshConfig {
    fn default() -> Self {
        ChaosMeshConfig { enabled: false, namespace: "distdiag".into() }
    }
}

impl KubeConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.chaos_mesh.enabled && !self.discover {
            return Err("kubernetes.chaos_mesh needs kubernetes.discover: its targets are the discovered pods".into());
        }
        if self.discover && (self.label_selector.trim().is_empty() || self.port == 0) {
            return Err("kubernetes: label_selector and port are required for discovery".into());
        }
        if !is_dns_label(&self.chaos_mesh.namespace) {
            return Err(format!(
                "kubernetes.chaos_mesh.namespace = {:?} is not a Kubernetes namespace name",
                self.chaos_mesh.namespace
            ));
        }
        if let Some(ns) = &self.namespace {
            if !is_dns_label(ns) {
                return Err(format!(
                    "kubernetes.namespace = {ns:?} is not a Kubernetes namespace name"
                ));
            }
        }
        Ok(())
    }
}

/// RFC 1123 label: what Kubernetes accepts as a namespace or resource name part.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("Kubernetes configuration: {0}")]
    Config(String),
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("the Kubernetes API did not answer within {0:?}")]
    Timeout(Duration),
}

/// A client from the configured kubeconfig, or inferred (in-cluster, then
/// `$KUBECONFIG`, then `~/.kube/config`).
pub async fn client(cfg: &KubeConfig) -> Result<kube::Client, KubeError> {
    let config = match &cfg.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| KubeError::Config(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| KubeError::Config(format!("{}: {e}", path.display())))?
        }
        None => kube::Config::infer().await.map_err(|e| KubeError::Config(e.to_string()))?,
    };
    Ok(kube::Client::try_from(config)?)
}

/// A running database pod.
#[derive(Debug, Clone, PartialEq)]
pub struct DbPod {
    pub namespace: String,
    pub name: String,
    /// Kubernetes node (= agent node name).
    pub node: String,
    pub ip: String,
    pub labels: BTreeMap<String, String>,
}

/// The running pods matching the selector, in name order. Pods not yet
/// scheduled, without an address or not running are left out (and logged).
pub async fn db_pods(client: &kube::Client, cfg: &KubeConfig) -> Result<Vec<DbPod>, KubeError> {
    let api: Api<Pod> = match &cfg.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let limit = Duration::from_secs(15);
    let list =
        tokio::time::timeout(limit, api.list(&ListParams::default().labels(&cfg.label_selector)))
            .await
            .map_err(|_| KubeError::Timeout(limit))??;
    let mut out = Vec::new();
    for pod in list.items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.clone()).unwrap_or_default();
        let ip = status.and_then(|s| s.pod_ip.clone());
        match (node, ip) {
            (Some(node), Some(ip)) if phase == "Running" => out.push(DbPod {
                namespace,
                name,
                node,
                ip,
                labels: pod.metadata.labels.clone().unwrap_or_default(),
            }),
            (node, ip) => tracing::warn!(
                pod = %format!("{namespace}/{name}"), %phase, ?node, ?ip,
                "database pod left out: not running on a node with an address"
            ),
        }
    }
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(out)
}

/// `[[databases]]` entries for the pods: named after the pod (with its
/// namespace when two namespaces hold pods of one name), `host_node` the
/// pod's node.
pub fn targets(pods: &[DbPod], cfg: &KubeConfig) -> Vec<DbTarget> {
    pods.iter()
        .map(|p| {
            let clash = pods.iter().filter(|q| q.name == p.name).count() > 1;
            DbTarget {
                name: if clash { format!("{}.{}", p.namespace, p.name) } else { p.name.clone() },
                dialect: cfg.dialect,
                host: p.ip.clone(),
                port: cfg.port,
                user: cfg.user.clone(),
                password: None,
                password_env: cfg.password_env.clone(),
                schema: cfg.schema.clone(),
                host_node: Some(p.node.clone()),
            }
        })
        .collect()
}

/// The configured databases plus the discovered ones (a configured name
/// wins), and the pods found.
pub async fn discover(
    cfg: &KubeConfig,
    configured: &[DbTarget],
) -> Result<(Vec<DbTarget>, Vec<DbPod>, kube::Client), KubeError> {
    let client = client(cfg).await?;
    let pods = db_pods(&client, cfg).await?;
    let mut all = configured.to_vec();
    for t in targets(&pods, cfg) {
        if let Err(e) = t.validate() {
            tracing::warn!(database = %t.name, error = %e, "discovered database left out");
        } else if all.iter().any(|c| c.name == t.name) {
            tracing::info!(database = %t.name, "discovered pod has a configured entry; the configuration wins");
        } else {
            tracing::info!(database = %t.name, host = %t.host, node = ?t.host_node, "database discovered");
            all.push(t);
        }
    }
    Ok((all, pods, client))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, name: &str, node: &str) -> DbPod {
        DbPod {
            namespace: ns.into(),
            name: name.into(),
            node: node.into(),
            ip: "10.0.0.1".into(),
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn targets_carry_the_pod_node_and_disambiguate_names() {
        let cfg = KubeConfig { password_env: Some("PW".into()), ..KubeConfig::default() };
        let t = targets(
            &[pod("a", "obs-1", "k1"), pod("b", "obs-1", "k2"), pod("a", "obs-2", "k2")],
            &cfg,
        );
        let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a.obs-1", "b.obs-1", "obs-2"]);
        assert_eq!(t[1].host_node.as_deref(), Some("k2"));
        assert_eq!((t[0].port, t[0].dialect), (2881, DialectKind::Oceanbase));
        assert_eq!(t[0].password_env.as_deref(), Some("PW"));
        for x in &t {
            x.validate().unwrap();
        }
    }

    #[test]
    fn chaos_needs_discovery_and_names_are_checked() {
        let mut cfg = KubeConfig::default();
        cfg.validate().unwrap();
        cfg.chaos_mesh.enabled = true;
        assert!(cfg.validate().unwrap_err().contains("needs kubernetes.discover"));
        cfg.discover = true;
        cfg.validate().unwrap();
        cfg.chaos_mesh.namespace = "Bad_NS".into();
        assert!(cfg.validate().is_err());
        assert!(is_dns_label("chaos-testing") && !is_dns_label("-x") && !is_dns_label(""));
    }
}
