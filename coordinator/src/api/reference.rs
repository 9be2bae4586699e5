//! The API reference in Markdown (`docs/api.md`), written from the OpenAPI
//! document so that it cannot say something the server does not do: one
//! section per tag, one entry per operation with its parameters, body and
//! answers. A test regenerates it and fails when the committed file
//! differs (`DISTDIAG_BLESS=1` writes it).

use std::fmt::Write as _;

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{OpenApi, RefOr, Required};

fn schema_name(r: &RefOr<utoipa::openapi::schema::Schema>) -> String {
    match r {
        RefOr::Ref(r) => format!("`{}`", r.ref_location.rsplit('/').next().unwrap_or("?")),
        RefOr::T(s) => match serde_json::to_value(s) {
            Ok(v) => match v.get("type") {
                Some(serde_json::Value::String(t)) => t.clone(),
                Some(other) => other.to_string(),
                None => "object".into(),
            },
            Err(_) => "object".into(),
        },
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn operation(out: &mut String, method: &str, path: &str, op: &Operation) {
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let _ =
        writeln!(out, "### `{method} {path}`{}\n", if secured { " (bearer token)" } else { "" });
    if let Some(d) = op.description.as_deref().or(op.summary.as_deref()) {
        let _ = writeln!(out, "{}\n", one_line(d));
    }
    if let Some(params) = &op.parameters {
        for p in params {
            let place = match p.parameter_in {
                ParameterIn::Path => "path",
                ParameterIn::Query => "query",
                ParameterIn::Header => "header",
                ParameterIn::Cookie => "cookie",
            };
            let ty = p.schema.as_ref().map(schema_name).unwrap_or_default();
            let req = if matches!(p.required, Required::True) { ", required" } else { "" };
            let desc = p.description.as_deref().map(one_line).unwrap_or_default();
            let _ = writeln!(out, "- `{}` ({place}, {ty}{req}) {desc}", p.name);
        }
        if !params.is_empty() {
            out.push('\n');
        }
    }
    if let Some(body) = &op.request_body {
        for (ct, c) in &body.content {
            let s = c.schema.as_ref().map(schema_name).unwrap_or_default();
            let desc = body
                .description
                .as_deref()
                .map(|d| format!(" — {}", one_line(d)))
                .unwrap_or_default();
            let _ = writeln!(out, "Body: {s} ({ct}){desc}\n");
        }
    }
    let _ = writeln!(out, "| status | answer | when |\n|---|---|---|");
    for (status, resp) in &op.responses.responses {
        let RefOr::T(r) = resp else { continue };
        let bodies: Vec<String> = r
            .content
            .iter()
            .map(|(ct, c)| {
                let s = c.schema.as_ref().map(schema_name).unwrap_or_default();
                if ct == "application/json" {
                    s
                } else {
                    format!("{s} ({ct})")
                }
            })
            .collect();
        let _ =
            writeln!(out, "| {status} | {} | {} |", bodies.join(", "), one_line(&r.description));
    }
    out.push('\n');
}

/// The reference as Markdown.
pub fn markdown(doc: &OpenApi) -> String {
    let mut out = String::from(
        "# distdiag REST API\n\n\
         Generated from the OpenAPI document (`GET /api/openapi.json`; an interactive \
         viewer at `/docs` on a running coordinator) by `coordinator/src/api/reference.rs`; \
         do not edit by hand (`DISTDIAG_BLESS=1 cargo nextest run -p distdiag-coordinator \
         the_openapi_document` rewrites it). Schemas are in the document's `components`.\n\n",
    );
    if let Some(d) = &doc.info.description {
        let _ = writeln!(out, "{}\n", one_line(d));
    }
    let tags: Vec<String> = doc.tags.iter().flatten().map(|t| t.name.clone()).collect();
    for tag in &tags {
        let desc = doc
            .tags
            .iter()
            .flatten()
            .find(|t| &t.name == tag)
            .and_then(|t| t.description.clone())
            .unwrap_or_default();
        let _ = writeln!(out, "## {tag}\n\n{desc}\n");
        for (path, item) in &doc.paths.paths {
            let ops = [
                ("GET", &item.get),
                ("POST", &item.post),
                ("PUT", &item.put),
                ("DELETE", &item.delete),
                ("PATCH", &item.patch),
            ];
            for (method, op) in ops {
                if let Some(op) = op {
                    if op.tags.as_ref().is_some_and(|t| t.contains(tag)) {
                        operation(&mut out, method, path, op);
                    }
                }
            }
        }
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}
