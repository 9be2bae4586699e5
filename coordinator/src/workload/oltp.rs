//! sysbench-compatible OLTP: the `sbtestN` schema and, per transaction, the
//! statement mix of sysbench's `oltp_common.lua` with its defaults (10 point
//! selects; one simple, sum, order and distinct range of 100 rows; one index
//! update, one non-index update, one delete+insert of the same id), each
//! group on a table drawn uniformly, ids from the configured distribution.
//! Statements are server-side prepared and cached per connection, as
//! sysbench's are.

use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::Value;

use super::rand::{Rand, SB_C_TEMPLATE, SB_PAD_TEMPLATE};
use super::{BoxFuture, Driver, Event, Options, Progress, Worker, WorkloadError, WorkloadKind};
use crate::db::DbTarget;

/// Statement texts of one table, built once (the table number is ours, never input).
struct TableStmts {
    point: String,
    simple: String,
    sum: String,
    order: String,
    distinct: String,
    index_update: String,
    non_index_update: String,
    delete: String,
    insert: String,
}

impl TableStmts {
    fn new(n: u32) -> Self {
        TableStmts {
            point: format!("SELECT c FROM sbtest{n} WHERE id=?"),
            simple: format!("SELECT c FROM sbtest{n} WHERE id BETWEEN ? AND ?"),
            sum: format!("SELECT SUM(k) FROM sbtest{n} WHERE id BETWEEN ? AND ?"),
            order: format!("SELECT c FROM sbtest{n} WHERE id BETWEEN ? AND ? ORDER BY c"),
            distinct: format!("SELECT DISTINCT c FROM sbtest{n} WHERE id BETWEEN ? AND ? ORDER BY c"),
            index_update: format!("UPDATE sbtest{n} SET k=k+1 WHERE id=?"),
            non_index_update: format!("UPDATE sbtest{n} SET c=? WHERE id=?"),
            delete: format!("DELETE FROM sbtest{n} WHERE id=?"),
            insert: format!("INSERT INTO sbtest{n} (id, k, c, pad) VALUES (?, ?, ?, ?)"),
        }
    }
}

pub struct Oltp {
    kind: WorkloadKind,
    tables: u32,
    table_size: u64,
    range_size: u64,
    seed: u64,
    stmts: Arc<Vec<TableStmts>>,
}

impl Oltp {
    pub fn new(kind: WorkloadKind, o: &Options) -> Self {
        Oltp { kind, tables: o.tables, table_size: o.table_size, range_size: o.range_size, seed: o.seed, stmts: Arc::new((1..=o.tables).map(TableStmts::new).collect()) }
    }

    fn table(&self, r: &mut Rand) -> &TableStmts {
        let i = r.uniform(1, u64::from(self.tables)) as usize - 1;
        &self.stmts[i]
    }
}

/// Rows per multi-row INSERT while loading.
const LOAD_BATCH: u64 = 1000;

impl Driver for Oltp {
    fn tables(&self) -> Vec<String> {
        (1..=self.tables).map(|n| format!("sbtest{n}")).collect()
    }

    fn prepare<'a>(&'a self, t: &'a DbTarget, progress: &'a Progress) -> BoxFuture<'a, Result<(), WorkloadError>> {
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

    fn event<'a>(&'a self, w: &'a mut Worker) -> BoxFuture<'a, Result<Event, mysql_async::Error>> {
        Box::pin(async move {
            let size = self.table_size;
            let range = self.range_size;
            let (c, r) = (&mut w.conn, &mut w.rand);
            let mut q = 0u32;
            let reads = matches!(self.kind, WorkloadKind::OltpReadWrite | WorkloadKind::OltpReadOnly);
            let writes = matches!(self.kind, WorkloadKind::OltpReadWrite | WorkloadKind::OltpWriteOnly);
            if self.kind == WorkloadKind::OltpPointSelect {
                let s = self.table(r);
                c.exec_drop(&s.point, (r.default_range(1, size),)).await?;
                return Ok(Event { queries: 1, kind: "point_select" });
            }
            c.query_drop("BEGIN").await?;
            q += 1;
            if reads {
                let s = self.table(r);
                for _ in 0..10 {
                    c.exec_drop(&s.point, (r.default_range(1, size),)).await?;
                    q += 1;
                }
                for stmt in [&self.table(r).simple, &self.table(r).sum, &self.table(r).order, &self.table(r).distinct] {
                    let id = r.default_range(1, size);
                    c.exec_drop(stmt, (id, id + range - 1)).await?;
                    q += 1;
                }
            }
            if writes {
                let s = self.table(r);
                c.exec_drop(&s.index_update, (r.default_range(1, size),)).await?;
                let s = self.table(r);
                let cv = r.template(SB_C_TEMPLATE);
                c.exec_drop(&s.non_index_update, (cv, r.default_range(1, size))).await?;
                let s = self.table(r);
                let id = r.default_range(1, size);
                let k = r.default_range(1, size);
                c.exec_drop(&s.delete, (id,)).await?;
                let (cv, pad) = (r.template(SB_C_TEMPLATE), r.template(SB_PAD_TEMPLATE));
                c.exec_drop(&s.insert, (id, k, cv, pad)).await?;
                q += 4;
            }
            c.query_drop("COMMIT").await?;
            q += 1;
            Ok(Event { queries: q, kind: "transaction" })
        })
    }
}
