//! sysbench-compatible OLTP: the `sbtestN` schema and, per transaction, the
//! statement mix of sysbench's `oltp_common.lua` with its defaults (10 point
//! selects; one simple, sum, order and distinct range of 100 rows; one index
//! update, one non-index update, one delete+insert of the same id), each
//! group on a table drawn uniformly, ids from the configured distribution.
//! Statements are server-side prepared and cached per connection, as
//! sysbench's are, and sent through the pipelining client
//! ([`crate::db::wire`]) unless the run's `pipeline` option is off.

use mysql_async::prelude::Queryable;
use mysql_async::Value;

use super::rand::{Rand, SB_C_TEMPLATE, SB_PAD_TEMPLATE};
use super::{
    BoxFuture, Driver, Event, EventError, Options, Progress, SessionKind, Worker, WorkloadError,
    WorkloadKind,
};
use crate::db::{wire, DbTarget};

/// The statements of one table, by index; the table number is ours, never input.
const POINT: usize = 0;
const SIMPLE: usize = 1;
const SUM: usize = 2;
const ORDER: usize = 3;
const DISTINCT: usize = 4;
const INDEX_UPDATE: usize = 5;
const NON_INDEX_UPDATE: usize = 6;
const DELETE: usize = 7;
const INSERT: usize = 8;
const PER_TABLE: usize = 9;

fn table_stmts(n: u32) -> [String; PER_TABLE] {
    [
        format!("SELECT c FROM sbtest{n} WHERE id=?"),
        format!("SELECT c FROM sbtest{n} WHERE id BETWEEN ? AND ?"),
        format!("SELECT SUM(k) FROM sbtest{n} WHERE id BETWEEN ? AND ?"),
        format!("SELECT c FROM sbtest{n} WHERE id BETWEEN ? AND ? ORDER BY c"),
        format!("SELECT DISTINCT c FROM sbtest{n} WHERE id BETWEEN ? AND ? ORDER BY c"),
        format!("UPDATE sbtest{n} SET k=k+1 WHERE id=?"),
        format!("UPDATE sbtest{n} SET c=? WHERE id=?"),
        format!("DELETE FROM sbtest{n} WHERE id=?"),
        format!("INSERT INTO sbtest{n} (id, k, c, pad) VALUES (?, ?, ?, ?)"),
    ]
}

pub struct Oltp {
    kind: WorkloadKind,
    tables: u32,
    table_size: u64,
    range_size: u64,
    seed: u64,
    pipeline: bool,
    stmts: Vec<[String; PER_TABLE]>,
}

impl Oltp {
    pub fn new(kind: WorkloadKind, o: &Options) -> Self {
        Oltp {
            kind,
            tables: o.tables,
            table_size: o.table_size,
            range_size: o.range_size,
            seed: o.seed,
            pipeline: o.pipeline,
            stmts: (1..=o.tables).map(table_stmts).collect(),
        }
    }

    /// A table drawn uniformly (0-based).
    fn table(&self, r: &mut Rand) -> usize {
        r.uniform(1, u64::from(self.tables)) as usize - 1
    }

    /// Statement `which` of table `t`, prepared on this session once.
    fn stmt(&self, c: &mut wire::Conn, t: usize, which: usize) -> Result<wire::Stmt, wire::Error> {
        c.stmt(t * PER_TABLE + which, &self.stmts[t][which])
    }
}

/// Rows per multi-row INSERT while loading.
const LOAD_BATCH: u64 = 1000;

impl Driver for Oltp {
    fn tables(&self) -> Vec<String> {
        (1..=self.tables).map(|n| format!("sbtest{n}")).collect()
    }

    fn prepare<'a>(
        &'a self,
        t: &'a DbTarget,
        progress: &'a Progress,
    ) -> BoxFuture<'a, Result<(), WorkloadError>> {
        Box::pin(async move {
            progress.set_total(u64::from(self.tables) * self.table_size);
            let mut c = t.connect(true, std::time::Duration::from_secs(10)).await?;
            let mut r = Rand::new(super::rand::RandType::Uniform, self.seed);
            for n in 1..=self.tables {
                c.query_drop(format!("DROP TABLE IF EXISTS sbtest{n}")).await?;
                c.query_drop(format!(
                    "CREATE TABLE sbtest{n} (id INTEGER NOT NULL AUTO_INCREMENT, k INTEGER DEFAULT '0' NOT NULL, c CHAR(120) DEFAULT '' NOT NULL, pad CHAR(60) DEFAULT '' NOT NULL, PRIMARY KEY (id))"
                ))
                .await?;
                let mut id = 1u64;
                while id <= self.table_size {
                    let rows = LOAD_BATCH.min(self.table_size - id + 1);
                    let mut sql = format!("INSERT INTO sbtest{n} (id, k, c, pad) VALUES ");
                    let mut params: Vec<Value> = Vec::with_capacity(rows as usize * 4);
                    for i in 0..rows {
                        sql.push_str(if i == 0 { "(?,?,?,?)" } else { ",(?,?,?,?)" });
                        params.push(Value::UInt(id + i));
                        params.push(Value::UInt(r.uniform(1, self.table_size)));
                        params.push(Value::Bytes(r.template(SB_C_TEMPLATE).into_bytes()));
                        params.push(Value::Bytes(r.template(SB_PAD_TEMPLATE).into_bytes()));
                    }
                    c.exec_drop(sql, params).await?;
                    id += rows;
                    progress.add(rows);
                }
                c.query_drop(format!("CREATE INDEX k_{n} ON sbtest{n}(k)")).await?;
            }
            let _ = c.disconnect().await;
            Ok(())
        })
    }

    fn session(&self) -> SessionKind {
        // Writes need autocommit off under pipelining: see SessionKind.
        SessionKind::Wire {
            pipeline: self.pipeline,
            autocommit: !matches!(
                self.kind,
                WorkloadKind::OltpReadWrite | WorkloadKind::OltpWriteOnly
            ),
        }
    }

    /// One sysbench event, on the worker's own thread (the client's I/O
    /// blocks, as sysbench's does). Pipelined, a read-write transaction is two
    /// round trips: BEGIN, the reads and the writes at once, then COMMIT
    /// once their answers are all in (or ROLLBACK, from the worker loop,
    /// if one failed — as sysbench rolls back on an ignored error).
    fn event<'a>(&'a self, w: &'a mut Worker) -> BoxFuture<'a, Result<Event, EventError>> {
        Box::pin(async move {
            let (size, range) = (self.table_size, self.range_size);
            let (c, r) = (w.conn.wire()?, &mut w.rand);
            use wire::Param::{Bytes, U64};
            if self.kind == WorkloadKind::OltpPointSelect {
                let s = self.stmt(c, self.table(r), POINT)?;
                c.execute(s, &[U64(r.default_range(1, size))])?;
                c.finish()?;
                return Ok(Event { queries: 1, kind: "point_select" });
            }
            let reads =
                matches!(self.kind, WorkloadKind::OltpReadWrite | WorkloadKind::OltpReadOnly);
            let writes =
                matches!(self.kind, WorkloadKind::OltpReadWrite | WorkloadKind::OltpWriteOnly);
            let mut q = 2;
            c.query("BEGIN")?;
            if reads {
                let s = self.stmt(c, self.table(r), POINT)?;
                for _ in 0..10 {
                    c.execute(s, &[U64(r.default_range(1, size))])?;
                }
                for which in [SIMPLE, SUM, ORDER, DISTINCT] {
                    let s = self.stmt(c, self.table(r), which)?;
                    let id = r.default_range(1, size);
                    c.execute(s, &[U64(id), U64(id + range - 1)])?;
                }
                q += 14;
            }
            if writes {
                let s = self.stmt(c, self.table(r), INDEX_UPDATE)?;
                c.execute(s, &[U64(r.default_range(1, size))])?;
                let s = self.stmt(c, self.table(r), NON_INDEX_UPDATE)?;
                let cv = r.template(SB_C_TEMPLATE);
                c.execute(s, &[Bytes(cv.as_bytes()), U64(r.default_range(1, size))])?;
                let t = self.table(r);
                let (del, ins) = (self.stmt(c, t, DELETE)?, self.stmt(c, t, INSERT)?);
                let id = r.default_range(1, size);
                let k = r.default_range(1, size);
                c.execute(del, &[U64(id)])?;
                let (cv, pad) = (r.template(SB_C_TEMPLATE), r.template(SB_PAD_TEMPLATE));
                c.execute(ins, &[U64(id), U64(k), Bytes(cv.as_bytes()), Bytes(pad.as_bytes())])?;
                q += 4;
                // The writes' answers decide between COMMIT and ROLLBACK.
                c.finish()?;
            }
            c.query("COMMIT")?;
            c.finish()?;
            Ok(Event { queries: q, kind: "transaction" })
        })
    }
}
