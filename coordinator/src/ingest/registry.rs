//! Which agents are connected right now.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use distdiag_common::proto::CoordMsg;
use serde::Serialize;
use tokio::sync::mpsc;

struct Entry {
    conn: quinn::Connection,
    /// Messages for the agent, written on its stream by the connection's task.
    control: mpsc::Sender<CoordMsg>,
    since_ms: i64,
}

/// Connected agents, by node name. One connection per node: a newer one
/// replaces an older one.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<HashMap<String, Entry>>>,
}

/// What the API shows about a connected agent.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AgentInfo {
    pub node: String,
    pub remote: SocketAddr,
    pub connected_since_ms: i64,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection; returns the one it replaces, if any.
    pub fn insert(
        &self,
        node: &str,
        conn: quinn::Connection,
        control: mpsc::Sender<CoordMsg>,
    ) -> Option<quinn::Connection> {
        let e = Entry { conn, control, since_ms: super::now_ms() };
        self.lock().insert(node.to_owned(), e).map(|old| old.conn)
    }

    /// Sends a message to a connected agent; false when it is not connected.
    pub async fn send(&self, node: &str, msg: CoordMsg) -> bool {
        let tx = self.lock().get(node).map(|e| e.control.clone());
        match tx {
            Some(tx) => tx.send(msg).await.is_ok(),
            None => false,
        }
    }

    /// Forgets a node's connection if it is still the one with `id`.
    pub fn remove(&self, node: &str, id: usize) {
        let mut m = self.lock();
        if m.get(node).is_some_and(|e| e.conn.stable_id() == id) {
            m.remove(node);
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn snapshot(&self) -> Vec<AgentInfo> {
        let mut v: Vec<AgentInfo> = self
            .lock()
            .iter()
            .map(|(n, e)| AgentInfo {
                node: n.clone(),
                remote: e.conn.remote_address(),
                connected_since_ms: e.since_ms,
            })
            .collect();
        v.sort_by(|a, b| a.node.cmp(&b.node));
        v
    }

    pub fn get(&self, node: &str) -> Option<AgentInfo> {
        self.snapshot().into_iter().find(|a| a.node == node)
    }
}
