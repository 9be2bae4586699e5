//! The Chaos Mesh injector (`[kubernetes.chaos_mesh]`): on Kubernetes, an
//! agent-type fault on a node that runs a discovered database pod is
//! created as a `chaos-mesh.org/v1alpha1` resource aimed at that pod —
//! StressChaos for `cpu_stress` and `memory_stress`, NetworkChaos for
//! `network_delay`, `network_loss` and `network_bandwidth` — instead of
//! asking the node's agent. The fault record is the same labelled record
//! (its `chaos` field names the resource), so training and evaluation do
//! not see a difference.
//!
//! Life cycle: the resource carries the fault's duration (Chaos Mesh ends
//! the effect itself) and is deleted by the coordinator on stop, at the
//! deadline, at a clean shutdown, and — after a crash — at the next start,
//! which deletes every resource labelled `app.kubernetes.io/managed-by:
//! distdiag` whose fault is over or unknown.
//!
//! Faults Chaos Mesh cannot express the way the agent does are left to the
//! agent, and the log says why: `disk_stress` (StressChaos has no I/O
//! stressor) and network faults limited to ports (NetworkChaos selects
//! peers, not ports).

use std::collections::BTreeMap;

use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams,
};
use serde_json::{json, Value};

use distdiag_api::faults::ChaosResource;
use distdiag_common::fault::{FaultSpec, MemorySize};

use crate::kube::{ChaosMeshConfig, DbPod};

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const FAULT_ID: &str = "distdiag.io/fault-id";
const GROUP: &str = "chaos-mesh.org";
const VERSION: &str = "v1alpha1";

fn api_resource(kind: &str) -> ApiResource {
    let plural = kind.to_ascii_lowercase();
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, kind), &plural)
}

/// What Chaos Mesh does for a fault: the resource kind and its `spec`
/// without selector and duration, or why the agent has to do it.
pub fn chaos_spec(spec: &FaultSpec) -> Result<(&'static str, Value), String> {
    let network = |peers: &[String], interface: &Option<String>, mut v: Value| {
        v["direction"] = json!("to");
        if !peers.is_empty() {
            v["externalTargets"] = json!(peers);
        }
        if let Some(dev) = interface {
            v["device"] = json!(dev);
        }
        v
    };
    match spec {
        FaultSpec::CpuStress { workers, load_percent } => Ok((
            "StressChaos",
            json!({"stressors": {"cpu": {"workers": workers, "load": load_percent}}}),
        )),
        FaultSpec::MemoryStress { size } => {
            let size = match size {
                MemorySize::Bytes(b) => format!("{}MB", b.div_ceil(1 << 20)),
                // Chaos Mesh's percentage is of the total memory, not of
                // what is available: the record keeps the request.
                MemorySize::PercentOfAvailable(p) => format!("{p}%"),
            };
            Ok(("StressChaos", json!({"stressors": {"memory": {"workers": 1, "size": size}}})))
        }
        FaultSpec::DiskStress { .. } => Err("Chaos Mesh's StressChaos has no I/O stressor".into()),
        FaultSpec::NetworkDelay { ports, .. } | FaultSpec::NetworkLoss { ports, .. }
            if !ports.is_empty() =>
        {
            Err("NetworkChaos cannot limit a fault to ports".into())
        }
        FaultSpec::NetworkDelay { latency_ms, jitter_ms, interface, peers, .. } => Ok((
            "NetworkChaos",
            network(
                peers,
                interface,
                json!({"action": "delay", "delay": {
                    "latency": format!("{latency_ms}ms"),
                    "jitter": format!("{jitter_ms}ms"),
                    "correlation": "0"}}),
            ),
        )),
        FaultSpec::NetworkLoss { percent, interface, peers, .. } => Ok((
            "NetworkChaos",
            network(
                peers,
                interface,
                json!({"action": "loss", "loss": {"loss": format!("{percent}"), "correlation": "0"}}),
            ),
        )),
        FaultSpec::NetworkBandwidth { rate_kbit, interface } => Ok((
            "NetworkChaos",
            network(
                &[],
                interface,
                // limit and buffer as tc's tbf needs them (bytes).
                json!({"action": "bandwidth", "bandwidth": {
                    "rate": format!("{rate_kbit}kbps"), "limit": 20_971_520, "buffer": 10_000}}),
            ),
        )),
    }
}

/// Creates, deletes and lists the chaos resources of this coordinator.
pub struct ChaosMesh {
    client: kube::Client,
    namespace: String,
    /// Database pods by Kubernetes node.
    pods: BTreeMap<String, Vec<DbPod>>,
}

impl ChaosMesh {
    pub fn new(client: kube::Client, cfg: &ChaosMeshConfig, pods: &[DbPod]) -> Self {
        let mut by_node: BTreeMap<String, Vec<DbPod>> = BTreeMap::new();
        for p in pods {
            by_node.entry(p.node.clone()).or_default().push(p.clone());
        }
        ChaosMesh { client, namespace: cfg.namespace.clone(), pods: by_node }
    }

    /// The resource for a fault on `node`: `None` when no database pod runs
    /// there (the agent injects as usual), `Some(Err(why))` when Chaos Mesh
    /// cannot express it.
    pub fn object(
        &self,
        id: &str,
        node: &str,
        spec: &FaultSpec,
        duration_ms: u64,
    ) -> Option<Result<(ChaosResource, Value), String>> {
        let pods = self.pods.get(node)?;
        Some(chaos_spec(spec).map(|(kind, mut body)| {
            let mut by_ns: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for p in pods {
                by_ns.entry(&p.namespace).or_default().push(&p.name);
            }
            body["mode"] = json!("all");
            body["selector"] = json!({
                "namespaces": by_ns.keys().collect::<Vec<_>>(),
                "pods": by_ns,
            });
            body["duration"] = json!(format!("{}s", duration_ms.div_ceil(1000).max(1)));
            let res = ChaosResource {
                kind: kind.into(),
                namespace: self.namespace.clone(),
                name: format!("distdiag-{}", id.to_ascii_lowercase()),
            };
            let object = json!({
                "apiVersion": format!("{GROUP}/{VERSION}"),
                "kind": kind,
                "metadata": {
                    "name": res.name,
                    "namespace": res.namespace,
                    "labels": {MANAGED_BY: "distdiag", FAULT_ID: id},
                    "annotations": {"distdiag.io/node": node},
                },
                "spec": body,
            });
            (res, object)
        }))
    }

    fn api(&self, kind: &str, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &api_resource(kind))
    }

    pub async fn create(&self, res: &ChaosResource, object: Value) -> Result<(), kube::Error> {
        let obj: DynamicObject = serde_json::from_value(object).map_err(kube::Error::SerdeError)?;
        self.api(&res.kind, &res.namespace).create(&PostParams::default(), &obj).await?;
        Ok(())
    }

    /// Deletes a resource; one that is already gone counts as deleted.
    pub async fn delete(&self, res: &ChaosResource) -> Result<(), kube::Error> {
        match self.api(&res.kind, &res.namespace).delete(&res.name, &DeleteParams::default()).await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every chaos resource this coordinator made, with its fault id.
    pub async fn managed(&self) -> Result<Vec<(ChaosResource, Option<String>)>, kube::Error> {
        let mut out = Vec::new();
        for kind in ["StressChaos", "NetworkChaos"] {
            let list = self
                .api(kind, &self.namespace)
                .list(&ListParams::default().labels(&format!("{MANAGED_BY}=distdiag")))
                .await?;
            for o in list.items {
                let id = o.metadata.labels.as_ref().and_then(|l| l.get(FAULT_ID)).cloned();
                out.push((
                    ChaosResource {
                        kind: kind.into(),
                        namespace: o
                            .metadata
                            .namespace
                            .clone()
                            .unwrap_or_else(|| self.namespace.clone()),
                        name: o.metadata.name.clone().unwrap_or_default(),
                    },
                    id,
                ));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_map_to_chaos_mesh_fields() {
        let (k, v) = chaos_spec(&FaultSpec::CpuStress { workers: 2, load_percent: 80 }).unwrap();
        assert_eq!(
            (k, v),
            ("StressChaos", json!({"stressors": {"cpu": {"workers": 2, "load": 80}}}))
        );
        let (_, v) =
            chaos_spec(&FaultSpec::MemoryStress { size: MemorySize::Bytes(256 << 20) }).unwrap();
        assert_eq!(v["stressors"]["memory"]["size"], "256MB");
        let (k, v) = chaos_spec(&FaultSpec::NetworkDelay {
            latency_ms: 100,
            jitter_ms: 10,
            interface: Some("eth0".into()),
            peers: vec!["10.0.0.2".into()],
            ports: vec![],
        })
        .unwrap();
        assert_eq!(k, "NetworkChaos");
        assert_eq!(v["delay"]["latency"], "100ms");
        assert_eq!((&v["device"], &v["externalTargets"][0]), (&json!("eth0"), &json!("10.0.0.2")));
        let (_, v) = chaos_spec(&FaultSpec::NetworkLoss {
            percent: 12.5,
            interface: None,
            peers: vec![],
            ports: vec![],
        })
        .unwrap();
        assert_eq!((&v["action"], &v["loss"]["loss"]), (&json!("loss"), &json!("12.5")));
        let (_, v) =
            chaos_spec(&FaultSpec::NetworkBandwidth { rate_kbit: 800, interface: None }).unwrap();
        assert_eq!(v["bandwidth"]["rate"], "800kbps");
        assert!(chaos_spec(&FaultSpec::DiskStress { workers: 1, bytes: 1 << 20, path: None })
            .unwrap_err()
            .contains("I/O"));
        assert!(chaos_spec(&FaultSpec::NetworkLoss {
            percent: 1.0,
            interface: None,
            peers: vec![],
            ports: vec![2881]
        })
        .is_err());
    }
}
