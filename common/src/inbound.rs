//! What the coordinator checks in an agent's stream, message by message,
//! with no I/O: the hello (this protocol version, the certificate's node,
//! a valid catalog), then batches that fit the catalog and catalogs that
//! only grow. The coordinator's ingest runs every frame through
//! [`Inbound`]; the fuzz targets (`fuzz/`) run the same code on arbitrary
//! bytes.

use std::collections::HashSet;

use crate::catalog::{validate_metric_name, MetricDesc, MAX_CATALOG_LEN};
use crate::codec::{decode_hello, decode_payload};
use crate::proto::{AgentMsg, Batch, Hello, ProtocolError};

/// Most rows one batch may carry.
pub const MAX_ROWS_PER_BATCH: usize = 100_000;
/// Rows stamped further than this into the future are refused.
pub const MAX_CLOCK_SKEW_MS: i64 = 24 * 3600 * 1000;

/// A catalog an agent may declare: at most [`MAX_CATALOG_LEN`] metrics,
/// valid names and units, no name twice.
pub fn validate_catalog(catalog: &[MetricDesc]) -> Result<(), ProtocolError> {
    if catalog.len() > MAX_CATALOG_LEN {
        return Err(ProtocolError::BadCatalog(format!(
            "{} metrics exceed the limit of {MAX_CATALOG_LEN}",
            catalog.len()
        )));
    }
    let mut seen = HashSet::with_capacity(catalog.len());
    for m in catalog {
        validate_metric_name(&m.name).map_err(ProtocolError::BadCatalog)?;
        if m.unit.len() > 32 || !m.unit.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ProtocolError::BadCatalog(format!(
                "metric {:?} has an invalid unit {:?}",
                m.name, m.unit
            )));
        }
        if !seen.insert(m.name.as_str()) {
            return Err(ProtocolError::BadCatalog(format!(
                "metric {:?} is declared twice",
                m.name
            )));
        }
    }
    Ok(())
}

/// A batch for a catalog of `width` metrics, received at `now_ms`: 1 to
/// [`MAX_ROWS_PER_BATCH`] rows, none wider than the catalog, none before
/// the epoch or more than [`MAX_CLOCK_SKEW_MS`] ahead.
pub fn validate_batch(b: &Batch, width: usize, now_ms: i64) -> Result<(), ProtocolError> {
    if b.rows.is_empty() || b.rows.len() > MAX_ROWS_PER_BATCH {
        return Err(ProtocolError::BadBatch(format!(
            "batch {} has {} rows (1..={MAX_ROWS_PER_BATCH} allowed)",
            b.seq,
            b.rows.len()
        )));
    }
    for r in &b.rows {
        if r.values.len() > width {
            return Err(ProtocolError::BadBatch(format!(
                "batch {}: a row has {} values but the catalog has {width}",
                b.seq,
                r.values.len()
            )));
        }
        if r.ts_ms < 0 || r.ts_ms > now_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
            return Err(ProtocolError::BadBatch(format!(
                "batch {}: timestamp {} is out of range",
                b.seq, r.ts_ms
            )));
        }
    }
    Ok(())
}

/// One connection's checks, in the order its messages arrive.
#[derive(Debug)]
pub struct Inbound {
    node: String,
    max_frame: u32,
    /// The catalog in force; None until the hello.
    catalog: Option<Vec<MetricDesc>>,
}

impl Inbound {
    /// A connection whose client certificate names `node`.
    pub fn new(node: &str, max_frame: u32) -> Inbound {
        Inbound { node: node.to_owned(), max_frame, catalog: None }
    }

    /// The catalog in force (empty before the hello).
    pub fn width(&self) -> usize {
        self.catalog.as_ref().map_or(0, Vec::len)
    }

    /// The first message: a hello of this version, from the certificate's
    /// node, with a valid catalog.
    pub fn hello(&mut self, payload: &[u8]) -> Result<Hello, ProtocolError> {
        if self.catalog.is_some() {
            return Err(ProtocolError::Unexpected("second hello on one connection".into()));
        }
        let h = decode_hello(payload, self.max_frame)?;
        if h.node != self.node {
            return Err(ProtocolError::NodeMismatch { cert: self.node.clone(), hello: h.node });
        }
        validate_catalog(&h.catalog)?;
        self.catalog = Some(h.catalog.clone());
        Ok(h)
    }

    /// A message after the hello, received at `now_ms`: a batch must fit
    /// the catalog; a new catalog must keep the old one as its prefix (and
    /// is in force from here on).
    pub fn message(&mut self, payload: &[u8], now_ms: i64) -> Result<AgentMsg, ProtocolError> {
        let Some(catalog) = self.catalog.as_mut() else {
            return Err(ProtocolError::Unexpected("the first message must be a hello".into()));
        };
        let msg = decode_payload::<AgentMsg>(payload, self.max_frame)?;
        match &msg {
            AgentMsg::Batch(b) => validate_batch(b, catalog.len(), now_ms)?,
            AgentMsg::Catalog(new) => {
                if new.len() < catalog.len() || new[..catalog.len()] != catalog[..] {
                    return Err(ProtocolError::BadCatalog(
                        "a catalog may only grow at its end".into(),
                    ));
                }
                validate_catalog(new)?;
                catalog.clone_from(new);
            }
            AgentMsg::Hello(_) => {
                return Err(ProtocolError::Unexpected("second hello on one connection".into()))
            }
            AgentMsg::Heartbeat { .. } | AgentMsg::FaultStatus { .. } => {}
        }
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode_frame, HEADER_LEN};
    use crate::proto::{Capabilities, HostFacts, Row, PROTOCOL_VERSION};

    fn payload(msg: &AgentMsg) -> Vec<u8> {
        encode_frame(msg, 1 << 20).unwrap()[HEADER_LEN..].to_vec()
    }

    fn hello(node: &str, catalog: Vec<MetricDesc>) -> AgentMsg {
        AgentMsg::Hello(Hello {
            version: PROTOCOL_VERSION,
            node: node.into(),
            host: HostFacts::default(),
            capabilities: Capabilities::default(),
            catalog,
            interval_ms: 1000,
        })
    }

    fn batch(width: usize, ts: i64) -> AgentMsg {
        AgentMsg::Batch(Batch { seq: 1, rows: vec![Row { ts_ms: ts, values: vec![1.0; width] }] })
    }

    #[test]
    fn a_connection_is_checked_in_order() {
        let a = MetricDesc::gauge("a", "count");
        let b = MetricDesc::gauge("b", "count");
        let mut c = Inbound::new("n1", 1 << 20);
        assert!(matches!(c.message(&payload(&batch(1, 5)), 10), Err(ProtocolError::Unexpected(_))));
        assert!(matches!(
            c.hello(&payload(&hello("n2", vec![a.clone()]))),
            Err(ProtocolError::NodeMismatch { .. })
        ));
        assert!(matches!(
            c.hello(&payload(&hello("n1", vec![a.clone(), a.clone()]))),
            Err(ProtocolError::BadCatalog(_))
        ));
        c.hello(&payload(&hello("n1", vec![a.clone()]))).unwrap();
        assert_eq!(c.width(), 1);
        c.message(&payload(&batch(1, 5)), 10).unwrap();
        assert!(matches!(c.message(&payload(&batch(2, 5)), 10), Err(ProtocolError::BadBatch(_))));
        assert!(matches!(
            c.message(&payload(&batch(1, 10 + MAX_CLOCK_SKEW_MS + 1)), 10),
            Err(ProtocolError::BadBatch(_))
        ));
        assert!(matches!(
            c.message(&payload(&AgentMsg::Catalog(vec![b.clone()])), 10),
            Err(ProtocolError::BadCatalog(_))
        ));
        c.message(&payload(&AgentMsg::Catalog(vec![a.clone(), b])), 10).unwrap();
        c.message(&payload(&batch(2, 5)), 10).unwrap();
        assert!(matches!(
            c.message(&payload(&hello("n1", vec![a])), 10),
            Err(ProtocolError::Unexpected(_))
        ));
        assert!(matches!(c.message(&[0xff; 3], 10), Err(ProtocolError::Malformed(_))));
    }

    #[test]
    fn catalogs_are_validated() {
        assert!(validate_catalog(&[MetricDesc::gauge("cpu.user", "seconds")]).is_ok());
        assert!(validate_catalog(&[
            MetricDesc::gauge("cpu.user", "seconds"),
            MetricDesc::gauge("cpu.user", "seconds")
        ])
        .is_err());
        assert!(validate_catalog(&[MetricDesc::gauge("Bad Name", "x")]).is_err());
        assert!(validate_catalog(&[MetricDesc::gauge("ok", "no spaces")]).is_err());
    }

    #[test]
    fn batches_are_validated() {
        let ok = Batch { seq: 1, rows: vec![Row { ts_ms: 1000, values: vec![1.0, 2.0] }] };
        assert!(validate_batch(&ok, 2, 2000).is_ok());
        assert!(validate_batch(&ok, 1, 2000).is_err());
        assert!(validate_batch(&Batch { seq: 1, rows: vec![] }, 2, 2000).is_err());
        let future = Batch {
            seq: 1,
            rows: vec![Row { ts_ms: 2000 + MAX_CLOCK_SKEW_MS + 1, values: vec![] }],
        };
        assert!(validate_batch(&future, 2, 2000).is_err());
        let negative = Batch { seq: 1, rows: vec![Row { ts_ms: -1, values: vec![] }] };
        assert!(validate_batch(&negative, 2, 2000).is_err());
    }
}
