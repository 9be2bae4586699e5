//! TPC-C: the nine tables, the loader with the specification's
//! cardinalities and value rules (clause 4.3.3), the five transactions with
//! the standard mix (New-Order 45 %, Payment 43 %, Order-Status, Delivery and
//! Stock-Level 4 % each; 1 % of New-Orders roll back on an unused item) and
//! the consistency conditions 1–4 of clause 3.3.2. Each worker is a terminal
//! with a home warehouse (worker index modulo warehouses). There is no
//! keying or think time: workers run back to back, like sysbench-tpcc and
//! go-tpc. `tpcc_scale` below 1 shrinks items, customers and orders for
//! quick tests; reports say so.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};
use serde::Serialize;

use super::rand::{Rand, RandType};
use super::{
    bulk_insert, datetime_value, BoxFuture, Driver, Event, EventError, Options, Progress, Worker,
    WorkloadError,
};
use crate::db::{col_f64, DbTarget};
use distdiag_store::now_ms;

const DISTRICTS: u64 = 10;
const SYLLABLES: [&str; 10] =
    ["BAR", "OUGHT", "ABLE", "PRI", "PRES", "ESE", "ANTI", "CALLY", "ATION", "EING"];
/// NURand run-time constants (C in clause 2.1.6), fixed for reproducibility.
const C_LAST: u64 = 157;
const C_ID: u64 = 259;
const C_ITEM: u64 = 7911;

/// Sizes after scaling.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    items: u64,
    customers: u64,
    /// Orders per district (= customers).
    orders: u64,
    /// Orders at or above this id are undelivered (new orders).
    first_new_order: u64,
}

impl Sizes {
    fn of(scale: f64) -> Sizes {
        let items = ((100_000.0 * scale) as u64).max(100);
        let customers = ((3_000.0 * scale) as u64).max(30);
        Sizes { items, customers, orders: customers, first_new_order: customers * 7 / 10 + 1 }
    }
}

pub struct Tpcc {
    warehouses: u64,
    sizes: Sizes,
    seed: u64,
}

impl Tpcc {
    pub fn new(o: &Options) -> Self {
        Tpcc { warehouses: u64::from(o.warehouses), sizes: Sizes::of(o.tpcc_scale), seed: o.seed }
    }
}

/// Customer last name of a number 0..=999 (clause 4.3.2.3).
pub fn last_name(n: u64) -> String {
    let n = n % 1000;
    format!(
        "{}{}{}",
        SYLLABLES[(n / 100) as usize],
        SYLLABLES[((n / 10) % 10) as usize],
        SYLLABLES[(n % 10) as usize]
    )
}

fn data_with_original(r: &mut Rand, min: usize, max: usize) -> String {
    let mut s = r.astring(min, max);
    if r.uniform(1, 10) == 1 {
        let at = r.uniform(0, (s.len() - 8) as u64) as usize;
        s.replace_range(at..at + 8, "ORIGINAL");
    }
    s
}

fn zip(r: &mut Rand) -> String {
    format!("{}11111", r.nstring(4, 4))
}

fn money(cents: u64) -> Value {
    Value::Double(cents as f64 / 100.0)
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE warehouse (w_id INT NOT NULL, w_name VARCHAR(10), w_street_1 VARCHAR(20), w_street_2 VARCHAR(20), w_city VARCHAR(20), w_state CHAR(2), w_zip CHAR(9), w_tax DECIMAL(4,4), w_ytd DECIMAL(12,2), PRIMARY KEY (w_id))",
    "CREATE TABLE district (d_id INT NOT NULL, d_w_id INT NOT NULL, d_name VARCHAR(10), d_street_1 VARCHAR(20), d_street_2 VARCHAR(20), d_city VARCHAR(20), d_state CHAR(2), d_zip CHAR(9), d_tax DECIMAL(4,4), d_ytd DECIMAL(12,2), d_next_o_id INT, PRIMARY KEY (d_w_id, d_id))",
    "CREATE TABLE customer (c_id INT NOT NULL, c_d_id INT NOT NULL, c_w_id INT NOT NULL, c_first VARCHAR(16), c_middle CHAR(2), c_last VARCHAR(16), c_street_1 VARCHAR(20), c_street_2 VARCHAR(20), c_city VARCHAR(20), c_state CHAR(2), c_zip CHAR(9), c_phone CHAR(16), c_since DATETIME, c_credit CHAR(2), c_credit_lim DECIMAL(12,2), c_discount DECIMAL(4,4), c_balance DECIMAL(12,2), c_ytd_payment DECIMAL(12,2), c_payment_cnt INT, c_delivery_cnt INT, c_data VARCHAR(500), PRIMARY KEY (c_w_id, c_d_id, c_id), KEY idx_customer_name (c_w_id, c_d_id, c_last, c_first))",
    "CREATE TABLE history (h_c_id INT, h_c_d_id INT, h_c_w_id INT, h_d_id INT, h_w_id INT, h_date DATETIME, h_amount DECIMAL(6,2), h_data VARCHAR(24))",
    "CREATE TABLE new_orders (no_o_id INT NOT NULL, no_d_id INT NOT NULL, no_w_id INT NOT NULL, PRIMARY KEY (no_w_id, no_d_id, no_o_id))",
    "CREATE TABLE orders (o_id INT NOT NULL, o_d_id INT NOT NULL, o_w_id INT NOT NULL, o_c_id INT, o_entry_d DATETIME, o_carrier_id INT, o_ol_cnt INT, o_all_local INT, PRIMARY KEY (o_w_id, o_d_id, o_id), KEY idx_orders_customer (o_w_id, o_d_id, o_c_id, o_id))",
    "CREATE TABLE order_line (ol_o_id INT NOT NULL, ol_d_id INT NOT NULL, ol_w_id INT NOT NULL, ol_number INT NOT NULL, ol_i_id INT, ol_supply_w_id INT, ol_delivery_d DATETIME, ol_quantity INT, ol_amount DECIMAL(6,2), ol_dist_info CHAR(24), PRIMARY KEY (ol_w_id, ol_d_id, ol_o_id, ol_number))",
    "CREATE TABLE item (i_id INT NOT NULL, i_im_id INT, i_name VARCHAR(24), i_price DECIMAL(5,2), i_data VARCHAR(50), PRIMARY KEY (i_id))",
    "CREATE TABLE stock (s_i_id INT NOT NULL, s_w_id INT NOT NULL, s_quantity INT, s_dist_01 CHAR(24), s_dist_02 CHAR(24), s_dist_03 CHAR(24), s_dist_04 CHAR(24), s_dist_05 CHAR(24), s_dist_06 CHAR(24), s_dist_07 CHAR(24), s_dist_08 CHAR(24), s_dist_09 CHAR(24), s_dist_10 CHAR(24), s_ytd INT, s_order_cnt INT, s_remote_cnt INT, s_data VARCHAR(50), PRIMARY KEY (s_w_id, s_i_id))",
];

pub const TABLES: [&str; 9] = [
    "warehouse",
    "district",
    "customer",
    "history",
    "new_orders",
    "orders",
    "order_line",
    "item",
    "stock",
];

const BATCH: usize = 500;

impl Tpcc {
    async fn load_items(
        &self,
        c: &mut Conn,
        r: &mut Rand,
        p: &Progress,
    ) -> Result<(), mysql_async::Error> {
        let mut rows = Vec::with_capacity(BATCH);
        for i in 1..=self.sizes.items {
            rows.push(vec![
                Value::UInt(i),
                Value::UInt(r.uniform(1, 10_000)),
                Value::from(r.astring(14, 24)),
                money(r.uniform(100, 10_000)),
                Value::from(data_with_original(r, 26, 50)),
            ]);
            if rows.len() == BATCH || i == self.sizes.items {
                bulk_insert(
                    c,
                    "item",
                    &["i_id", "i_im_id", "i_name", "i_price", "i_data"],
                    &rows,
                    BATCH,
                )
                .await?;
                p.add(rows.len() as u64);
                rows.clear();
            }
        }
        Ok(())
    }

    async fn load_warehouse(
        &self,
        c: &mut Conn,
        w: u64,
        r: &mut Rand,
        p: &Progress,
    ) -> Result<(), mysql_async::Error> {
        let s = self.sizes;
        let now = datetime_value(now_ms());
        let addr = |r: &mut Rand| {
            vec![
                Value::from(r.astring(10, 20)),
                Value::from(r.astring(10, 20)),
                Value::from(r.astring(10, 20)),
                Value::from(r.astring(2, 2).to_uppercase()),
                Value::from(zip(r)),
            ]
        };
        let mut row = vec![Value::UInt(w), Value::from(r.astring(6, 10))];
        row.extend(addr(r));
        row.extend([Value::Double(r.uniform(0, 2000) as f64 / 10_000.0), Value::Double(300_000.0)]);
        bulk_insert(
            c,
            "warehouse",
            &[
                "w_id",
                "w_name",
                "w_street_1",
                "w_street_2",
                "w_city",
                "w_state",
                "w_zip",
                "w_tax",
                "w_ytd",
            ],
            &[row],
            1,
        )
        .await?;
        // Stock.
        let mut rows = Vec::with_capacity(BATCH);
        for i in 1..=s.items {
            let mut row = vec![Value::UInt(i), Value::UInt(w), Value::UInt(r.uniform(10, 100))];
            for _ in 0..10 {
                row.push(Value::from(r.astring(24, 24)));
            }
            row.extend([
                Value::UInt(0),
                Value::UInt(0),
                Value::UInt(0),
                Value::from(data_with_original(r, 26, 50)),
            ]);
            rows.push(row);
            if rows.len() == BATCH || i == s.items {
                let cols = [
                    "s_i_id",
                    "s_w_id",
                    "s_quantity",
                    "s_dist_01",
                    "s_dist_02",
                    "s_dist_03",
                    "s_dist_04",
                    "s_dist_05",
                    "s_dist_06",
                    "s_dist_07",
                    "s_dist_08",
                    "s_dist_09",
                    "s_dist_10",
                    "s_ytd",
                    "s_order_cnt",
                    "s_remote_cnt",
                    "s_data",
                ];
                bulk_insert(c, "stock", &cols, &rows, BATCH).await?;
                p.add(rows.len() as u64);
                rows.clear();
            }
        }
        for d in 1..=DISTRICTS {
            let mut row = vec![Value::UInt(d), Value::UInt(w), Value::from(r.astring(6, 10))];
            row.extend(addr(r));
            row.extend([
                Value::Double(r.uniform(0, 2000) as f64 / 10_000.0),
                Value::Double(30_000.0),
                Value::UInt(s.orders + 1),
            ]);
            bulk_insert(
                c,
                "district",
                &[
                    "d_id",
                    "d_w_id",
                    "d_name",
                    "d_street_1",
                    "d_street_2",
                    "d_city",
                    "d_state",
                    "d_zip",
                    "d_tax",
                    "d_ytd",
                    "d_next_o_id",
                ],
                &[row],
                1,
            )
            .await?;
            // Customers and their first history row.
            let (mut cust, mut hist) = (Vec::with_capacity(BATCH), Vec::with_capacity(BATCH));
            for cid in 1..=s.customers {
                let last = if cid <= 1000 {
                    last_name(cid - 1)
                } else {
                    last_name(r.nurand(255, C_LAST, 0, 999))
                };
                let mut row = vec![
                    Value::UInt(cid),
                    Value::UInt(d),
                    Value::UInt(w),
                    Value::from(r.astring(8, 16)),
                    Value::from("OE"),
                    Value::from(last),
                ];
                row.extend(addr(r));
                row.extend([
                    Value::from(r.nstring(16, 16)),
                    now.clone(),
                    Value::from(if r.uniform(1, 10) == 1 { "BC" } else { "GC" }),
                    Value::Double(50_000.0),
                    Value::Double(r.uniform(0, 5000) as f64 / 10_000.0),
                    Value::Double(-10.0),
                    Value::Double(10.0),
                    Value::UInt(1),
                    Value::UInt(0),
                    Value::from(r.astring(300, 500)),
                ]);
                cust.push(row);
                hist.push(vec![
                    Value::UInt(cid),
                    Value::UInt(d),
                    Value::UInt(w),
                    Value::UInt(d),
                    Value::UInt(w),
                    now.clone(),
                    Value::Double(10.0),
                    Value::from(r.astring(12, 24)),
                ]);
            }
            let ccols = [
                "c_id",
                "c_d_id",
                "c_w_id",
                "c_first",
                "c_middle",
                "c_last",
                "c_street_1",
                "c_street_2",
                "c_city",
                "c_state",
                "c_zip",
                "c_phone",
                "c_since",
                "c_credit",
                "c_credit_lim",
                "c_discount",
                "c_balance",
                "c_ytd_payment",
                "c_payment_cnt",
                "c_delivery_cnt",
                "c_data",
            ];
            bulk_insert(c, "customer", &ccols, &cust, 200).await?;
            bulk_insert(
                c,
                "history",
                &[
                    "h_c_id", "h_c_d_id", "h_c_w_id", "h_d_id", "h_w_id", "h_date", "h_amount",
                    "h_data",
                ],
                &hist,
                BATCH,
            )
            .await?;
            p.add(s.customers);
            // Orders: customers in a random permutation; the last 30 % undelivered.
            let mut perm: Vec<u64> = (1..=s.customers).collect();
            for i in (1..perm.len()).rev() {
                let j = r.uniform(0, i as u64) as usize;
                perm.swap(i, j);
            }
            let (mut orders, mut lines, mut news) = (Vec::new(), Vec::new(), Vec::new());
            for o in 1..=s.orders {
                let delivered = o < s.first_new_order;
                let cnt = r.uniform(5, 15);
                orders.push(vec![
                    Value::UInt(o),
                    Value::UInt(d),
                    Value::UInt(w),
                    Value::UInt(perm[(o - 1) as usize]),
                    now.clone(),
                    if delivered { Value::UInt(r.uniform(1, 10)) } else { Value::NULL },
                    Value::UInt(cnt),
                    Value::UInt(1),
                ]);
                for n in 1..=cnt {
                    lines.push(vec![
                        Value::UInt(o),
                        Value::UInt(d),
                        Value::UInt(w),
                        Value::UInt(n),
                        Value::UInt(r.uniform(1, s.items)),
                        Value::UInt(w),
                        if delivered { now.clone() } else { Value::NULL },
                        Value::UInt(5),
                        if delivered { Value::Double(0.0) } else { money(r.uniform(1, 999_999)) },
                        Value::from(r.astring(24, 24)),
                    ]);
                }
                if !delivered {
                    news.push(vec![Value::UInt(o), Value::UInt(d), Value::UInt(w)]);
                }
            }
            bulk_insert(
                c,
                "orders",
                &[
                    "o_id",
                    "o_d_id",
                    "o_w_id",
                    "o_c_id",
                    "o_entry_d",
                    "o_carrier_id",
                    "o_ol_cnt",
                    "o_all_local",
                ],
                &orders,
                BATCH,
            )
            .await?;
            bulk_insert(
                c,
                "order_line",
                &[
                    "ol_o_id",
                    "ol_d_id",
                    "ol_w_id",
                    "ol_number",
                    "ol_i_id",
                    "ol_supply_w_id",
                    "ol_delivery_d",
                    "ol_quantity",
                    "ol_amount",
                    "ol_dist_info",
                ],
                &lines,
                BATCH,
            )
            .await?;
            bulk_insert(c, "new_orders", &["no_o_id", "no_d_id", "no_w_id"], &news, BATCH).await?;
            p.add(s.orders);
        }
        Ok(())
    }

    fn other_warehouse(&self, r: &mut Rand, home: u64) -> u64 {
        if self.warehouses == 1 {
            return home;
        }
        let mut w = r.uniform(1, self.warehouses - 1);
        if w >= home {
            w += 1;
        }
        w
    }

    /// A customer id, by last name 60 % of the time (the middle one of the matches).
    async fn pick_customer(
        &self,
        c: &mut Conn,
        r: &mut Rand,
        w: u64,
        d: u64,
        q: &mut u32,
    ) -> Result<Option<u64>, mysql_async::Error> {
        if r.uniform(1, 100) <= 60 {
            // Names 0..customers exist when scaled down (clause 4.3.2.3 at full size: 0..=999).
            let last = last_name(r.nurand(255, C_LAST, 0, (self.sizes.customers - 1).min(999)));
            let ids: Vec<u64> = c.exec("SELECT c_id FROM customer WHERE c_w_id = ? AND c_d_id = ? AND c_last = ? ORDER BY c_first", (w, d, last)).await?;
            *q += 1;
            if ids.is_empty() {
                return Ok(None);
            }
            Ok(Some(ids[(ids.len() - 1) / 2]))
        } else {
            Ok(Some(r.nurand(1023, C_ID, 1, self.sizes.customers)))
        }
    }

    async fn new_order(
        &self,
        c: &mut Conn,
        r: &mut Rand,
        w: u64,
    ) -> Result<Event, mysql_async::Error> {
        let d = r.uniform(1, DISTRICTS);
        let cid = r.nurand(1023, C_ID, 1, self.sizes.customers);
        let cnt = r.uniform(5, 15);
        let rollback = r.uniform(1, 100) == 1;
        let mut items = Vec::with_capacity(cnt as usize);
        for n in 1..=cnt {
            let unused = rollback && n == cnt;
            let item = if unused {
                self.sizes.items + 1
            } else {
                r.nurand(8191, C_ITEM, 1, self.sizes.items)
            };
            let supply = if r.uniform(1, 100) == 1 { self.other_warehouse(r, w) } else { w };
            items.push((item, supply, r.uniform(1, 10)));
        }
        let all_local = u64::from(items.iter().all(|i| i.1 == w));
        let mut q = 0u32;
        c.query_drop("BEGIN").await?;
        let _: Option<Option<f64>> =
            c.exec_first("SELECT w_tax FROM warehouse WHERE w_id = ?", (w,)).await?;
        let drow: Option<(Option<f64>, u64)> = c
            .exec_first(
                "SELECT d_tax, d_next_o_id FROM district WHERE d_w_id = ? AND d_id = ? FOR UPDATE",
                (w, d),
            )
            .await?;
        let Some((_, o_id)) = drow else {
            c.query_drop("ROLLBACK").await?;
            return Ok(Event { queries: 3, kind: "new_order_missing_district" });
        };
        c.exec_drop(
            "UPDATE district SET d_next_o_id = d_next_o_id + 1 WHERE d_w_id = ? AND d_id = ?",
            (w, d),
        )
        .await?;
        let _: Option<Row> = c.exec_first("SELECT c_discount, c_last, c_credit FROM customer WHERE c_w_id = ? AND c_d_id = ? AND c_id = ?", (w, d, cid)).await?;
        c.exec_drop("INSERT INTO orders (o_id, o_d_id, o_w_id, o_c_id, o_entry_d, o_carrier_id, o_ol_cnt, o_all_local) VALUES (?, ?, ?, ?, NOW(), NULL, ?, ?)", (o_id, d, w, cid, cnt, all_local))
            .await?;
        c.exec_drop(
            "INSERT INTO new_orders (no_o_id, no_d_id, no_w_id) VALUES (?, ?, ?)",
            (o_id, d, w),
        )
        .await?;
        q += 7;
        for (n, (item, supply, qty)) in items.iter().enumerate() {
            let price: Option<Option<f64>> =
                c.exec_first("SELECT i_price FROM item WHERE i_id = ?", (item,)).await?;
            q += 1;
            let Some(price) = price.flatten() else {
                // The 1 % of New-Orders that name an unused item roll back.
                c.query_drop("ROLLBACK").await?;
                return Ok(Event { queries: q + 1, kind: "new_order_rollback" });
            };
            let dist_col = format!("s_dist_{d:02}");
            let srow: Option<(Option<i64>, Option<String>)> = c.exec_first(format!("SELECT s_quantity, {dist_col} FROM stock WHERE s_i_id = ? AND s_w_id = ? FOR UPDATE"), (item, supply)).await?;
            let (s_qty, dist) = srow
                .map(|(q, d)| (q.unwrap_or(0), d.unwrap_or_default()))
                .unwrap_or((0, String::new()));
            let new_qty = if s_qty - (*qty as i64) >= 10 {
                s_qty - *qty as i64
            } else {
                s_qty - *qty as i64 + 91
            };
            c.exec_drop(
                "UPDATE stock SET s_quantity = ?, s_ytd = s_ytd + ?, s_order_cnt = s_order_cnt + 1, s_remote_cnt = s_remote_cnt + ? WHERE s_i_id = ? AND s_w_id = ?",
                (new_qty, qty, u64::from(*supply != w), item, supply),
            )
            .await?;
            c.exec_drop(
                "INSERT INTO order_line (ol_o_id, ol_d_id, ol_w_id, ol_number, ol_i_id, ol_supply_w_id, ol_delivery_d, ol_quantity, ol_amount, ol_dist_info) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
                (o_id, d, w, n + 1, item, supply, qty, price * *qty as f64, dist),
            )
            .await?;
            q += 3;
        }
        c.query_drop("COMMIT").await?;
        Ok(Event { queries: q + 1, kind: "new_order" })
    }

    async fn payment(
        &self,
        c: &mut Conn,
        r: &mut Rand,
        w: u64,
    ) -> Result<Event, mysql_async::Error> {
        let d = r.uniform(1, DISTRICTS);
        let (cw, cd) = if r.uniform(1, 100) <= 85 {
            (w, d)
        } else {
            (self.other_warehouse(r, w), r.uniform(1, DISTRICTS))
        };
        let amount = r.uniform(100, 500_000) as f64 / 100.0;
        let mut q = 1u32;
        c.query_drop("BEGIN").await?;
        let Some(cid) = self.pick_customer(c, r, cw, cd, &mut q).await? else {
            c.query_drop("ROLLBACK").await?;
            return Ok(Event { queries: q + 1, kind: "payment_no_customer" });
        };
        c.exec_drop("UPDATE warehouse SET w_ytd = w_ytd + ? WHERE w_id = ?", (amount, w)).await?;
        let wname: Option<Option<String>> =
            c.exec_first("SELECT w_name FROM warehouse WHERE w_id = ?", (w,)).await?;
        c.exec_drop(
            "UPDATE district SET d_ytd = d_ytd + ? WHERE d_w_id = ? AND d_id = ?",
            (amount, w, d),
        )
        .await?;
        let dname: Option<Option<String>> = c
            .exec_first("SELECT d_name FROM district WHERE d_w_id = ? AND d_id = ?", (w, d))
            .await?;
        let credit: Option<Option<String>> = c.exec_first("SELECT c_credit FROM customer WHERE c_w_id = ? AND c_d_id = ? AND c_id = ? FOR UPDATE", (cw, cd, cid)).await?;
        q += 5;
        if credit.flatten().as_deref() == Some("BC") {
            let note = format!("{cid} {cd} {cw} {d} {w} {amount:.2} |");
            c.exec_drop(
                "UPDATE customer SET c_balance = c_balance - ?, c_ytd_payment = c_ytd_payment + ?, c_payment_cnt = c_payment_cnt + 1, c_data = SUBSTRING(CONCAT(?, c_data), 1, 500) WHERE c_w_id = ? AND c_d_id = ? AND c_id = ?",
                (amount, amount, note, cw, cd, cid),
            )
            .await?;
        } else {
            c.exec_drop(
                "UPDATE customer SET c_balance = c_balance - ?, c_ytd_payment = c_ytd_payment + ?, c_payment_cnt = c_payment_cnt + 1 WHERE c_w_id = ? AND c_d_id = ? AND c_id = ?",
                (amount, amount, cw, cd, cid),
            )
            .await?;
        }
        let h_data = format!(
            "{}    {}",
            wname.flatten().unwrap_or_default(),
            dname.flatten().unwrap_or_default()
        );
        c.exec_drop("INSERT INTO history (h_c_id, h_c_d_id, h_c_w_id, h_d_id, h_w_id, h_date, h_amount, h_data) VALUES (?, ?, ?, ?, ?, NOW(), ?, ?)", (cid, cd, cw, d, w, amount, h_data))
            .await?;
        c.query_drop("COMMIT").await?;
        Ok(Event { queries: q + 3, kind: "payment" })
    }

    async fn order_status(
        &self,
        c: &mut Conn,
        r: &mut Rand,
        w: u64,
    ) -> Result<Event, mysql_async::Error> {
        let d = r.uniform(1, DISTRICTS);
        let mut q = 1u32;
        c.query_drop("BEGIN").await?;
        if let Some(cid) = self.pick_customer(c, r, w, d, &mut q).await? {
            let _: Option<Row> = c.exec_first("SELECT c_balance, c_first, c_middle, c_last FROM customer WHERE c_w_id = ? AND c_d_id = ? AND c_id = ?", (w, d, cid)).await?;
            let o: Option<Option<u64>> = c
                .exec_first(
                    "SELECT MAX(o_id) FROM orders WHERE o_w_id = ? AND o_d_id = ? AND o_c_id = ?",
                    (w, d, cid),
                )
                .await?;
            q += 2;
            if let Some(o) = o.flatten() {
                let _: Vec<Row> = c.exec("SELECT ol_i_id, ol_supply_w_id, ol_quantity, ol_amount, ol_delivery_d FROM order_line WHERE ol_w_id = ? AND ol_d_id = ? AND ol_o_id = ?", (w, d, o)).await?;
                q += 1;
            }
        }
        c.query_drop("COMMIT").await?;
        Ok(Event { queries: q + 1, kind: "order_status" })
    }

    async fn delivery(
        &self,
        c: &mut Conn,
        r: &mut Rand,
        w: u64,
    ) -> Result<Event, mysql_async::Error> {
        let carrier = r.uniform(1, 10);
        let mut q = 1u32;
        c.query_drop("BEGIN").await?;
        for d in 1..=DISTRICTS {
            let no: Option<Option<u64>> = c
                .exec_first(
                    "SELECT MIN(no_o_id) FROM new_orders WHERE no_w_id = ? AND no_d_id = ?",
                    (w, d),
                )
                .await?;
            q += 1;
            let Some(o) = no.flatten() else { continue };
            c.exec_drop(
                "DELETE FROM new_orders WHERE no_w_id = ? AND no_d_id = ? AND no_o_id = ?",
                (w, d, o),
            )
            .await?;
            let cid: Option<Option<u64>> = c
                .exec_first(
                    "SELECT o_c_id FROM orders WHERE o_w_id = ? AND o_d_id = ? AND o_id = ?",
                    (w, d, o),
                )
                .await?;
            c.exec_drop(
                "UPDATE orders SET o_carrier_id = ? WHERE o_w_id = ? AND o_d_id = ? AND o_id = ?",
                (carrier, w, d, o),
            )
            .await?;
            c.exec_drop("UPDATE order_line SET ol_delivery_d = NOW() WHERE ol_w_id = ? AND ol_d_id = ? AND ol_o_id = ?", (w, d, o)).await?;
            let total: Option<Option<f64>> = c.exec_first("SELECT SUM(ol_amount) FROM order_line WHERE ol_w_id = ? AND ol_d_id = ? AND ol_o_id = ?", (w, d, o)).await?;
            c.exec_drop(
                "UPDATE customer SET c_balance = c_balance + ?, c_delivery_cnt = c_delivery_cnt + 1 WHERE c_w_id = ? AND c_d_id = ? AND c_id = ?",
                (total.flatten().unwrap_or(0.0), w, d, cid.flatten().unwrap_or(0)),
            )
            .await?;
            q += 6;
        }
        c.query_drop("COMMIT").await?;
        Ok(Event { queries: q + 1, kind: "delivery" })
    }

    async fn stock_level(
        &self,
        c: &mut Conn,
        r: &mut Rand,
        w: u64,
    ) -> Result<Event, mysql_async::Error> {
        let d = r.uniform(1, DISTRICTS);
        let threshold = r.uniform(10, 20);
        c.query_drop("BEGIN").await?;
        let next: Option<Option<u64>> = c
            .exec_first("SELECT d_next_o_id FROM district WHERE d_w_id = ? AND d_id = ?", (w, d))
            .await?;
        let next = next.flatten().unwrap_or(1);
        let _: Option<Option<u64>> = c
            .exec_first(
                "SELECT COUNT(DISTINCT s_i_id) FROM order_line, stock WHERE ol_w_id = ? AND ol_d_id = ? AND ol_o_id < ? AND ol_o_id >= ? AND s_w_id = ? AND s_i_id = ol_i_id AND s_quantity < ?",
                (w, d, next, next.saturating_sub(20), w, threshold),
            )
            .await?;
        c.query_drop("COMMIT").await?;
        Ok(Event { queries: 4, kind: "stock_level" })
    }
}

impl Driver for Tpcc {
    fn tables(&self) -> Vec<String> {
        TABLES.iter().map(|t| (*t).to_owned()).collect()
    }

    fn prepare<'a>(
        &'a self,
        t: &'a DbTarget,
        p: &'a Progress,
    ) -> BoxFuture<'a, Result<(), WorkloadError>> {
        Box::pin(async move {
            let s = self.sizes;
            p.set_total(
                s.items + self.warehouses * (s.items + DISTRICTS * (s.customers + s.orders)),
            );
            let mut c = t.connect(true, std::time::Duration::from_secs(10)).await?;
            for table in TABLES {
                c.query_drop(format!("DROP TABLE IF EXISTS {table}")).await?;
            }
            for ddl in SCHEMA {
                c.query_drop(*ddl).await?;
            }
            let mut r = Rand::new(RandType::Uniform, self.seed);
            self.load_items(&mut c, &mut r, p).await?;
            for w in 1..=self.warehouses {
                self.load_warehouse(&mut c, w, &mut r, p).await?;
            }
            let _ = c.disconnect().await;
            Ok(())
        })
    }

    fn event<'a>(&'a self, w: &'a mut Worker) -> BoxFuture<'a, Result<Event, EventError>> {
        Box::pin(async move {
            let home = (w.index as u64 % self.warehouses) + 1;
            let pick = w.rand.uniform(1, 100);
            let (c, r) = (w.conn.mysql()?, &mut w.rand);
            let ev = match pick {
                1..=45 => self.new_order(c, r, home).await,
                46..=88 => self.payment(c, r, home).await,
                89..=92 => self.order_status(c, r, home).await,
                93..=96 => self.delivery(c, r, home).await,
                _ => self.stock_level(c, r, home).await,
            };
            Ok(ev?)
        })
    }
}

/// One consistency condition's outcome.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Check {
    pub condition: u32,
    pub description: &'static str,
    pub passed: bool,
    /// The rows that break it (warehouse, district, details).
    pub violations: Vec<String>,
}

/// Consistency conditions 1–4 of clause 3.3.2.
pub async fn consistency(t: &DbTarget) -> Result<Vec<Check>, WorkloadError> {
    let mut c = t.connect(true, std::time::Duration::from_secs(10)).await?;
    let mut out = Vec::new();
    let rows: Vec<Row> = c.query("SELECT w.w_id, w.w_ytd, SUM(d.d_ytd) FROM warehouse w JOIN district d ON d.d_w_id = w.w_id GROUP BY w.w_id, w.w_ytd").await?;
    let v1 = rows
        .iter()
        .filter(|r| {
            (col_f64(r, 1).unwrap_or(f64::NAN) - col_f64(r, 2).unwrap_or(f64::NAN)).abs() > 0.005
        })
        .map(|r| {
            format!(
                "warehouse {}: w_ytd {} != sum(d_ytd) {}",
                col_f64(r, 0).unwrap_or(0.0),
                col_f64(r, 1).unwrap_or(f64::NAN),
                col_f64(r, 2).unwrap_or(f64::NAN)
            )
        })
        .collect::<Vec<_>>();
    out.push(Check {
        condition: 1,
        description: "W_YTD = sum(D_YTD)",
        passed: v1.is_empty() && !rows.is_empty(),
        violations: v1,
    });
    let rows: Vec<Row> = c
        .query(
            "SELECT d.d_w_id, d.d_id, d.d_next_o_id, (SELECT MAX(o_id) FROM orders o WHERE o.o_w_id = d.d_w_id AND o.o_d_id = d.d_id), \
             (SELECT MAX(no_o_id) FROM new_orders n WHERE n.no_w_id = d.d_w_id AND n.no_d_id = d.d_id), \
             (SELECT MIN(no_o_id) FROM new_orders n WHERE n.no_w_id = d.d_w_id AND n.no_d_id = d.d_id), \
             (SELECT COUNT(*) FROM new_orders n WHERE n.no_w_id = d.d_w_id AND n.no_d_id = d.d_id), \
             (SELECT SUM(o_ol_cnt) FROM orders o WHERE o.o_w_id = d.d_w_id AND o.o_d_id = d.d_id), \
             (SELECT COUNT(*) FROM order_line l WHERE l.ol_w_id = d.d_w_id AND l.ol_d_id = d.d_id) \
             FROM district d ORDER BY d.d_w_id, d.d_id",
        )
        .await?;
    let (mut v2, mut v3, mut v4) = (Vec::new(), Vec::new(), Vec::new());
    for r in &rows {
        let g = |i| col_f64(r, i);
        let (w, d) = (g(0).unwrap_or(0.0), g(1).unwrap_or(0.0));
        let next = g(2).unwrap_or(f64::NAN);
        let max_o = g(3).unwrap_or(f64::NAN);
        if next - 1.0 != max_o || g(4).is_some_and(|m| m != max_o) {
            v2.push(format!(
                "w {w} d {d}: d_next_o_id-1 = {}, max(o_id) = {max_o}, max(no_o_id) = {:?}",
                next - 1.0,
                g(4)
            ));
        }
        if let (Some(mx), Some(mn)) = (g(4), g(5)) {
            if mx - mn + 1.0 != g(6).unwrap_or(f64::NAN) {
                v3.push(format!(
                    "w {w} d {d}: max-min+1 = {} but {} new orders",
                    mx - mn + 1.0,
                    g(6).unwrap_or(f64::NAN)
                ));
            }
        }
        if g(7) != g(8) {
            v4.push(format!("w {w} d {d}: sum(o_ol_cnt) = {:?}, order lines = {:?}", g(7), g(8)));
        }
    }
    let some = !rows.is_empty();
    out.push(Check {
        condition: 2,
        description: "D_NEXT_O_ID - 1 = max(O_ID) = max(NO_O_ID)",
        passed: some && v2.is_empty(),
        violations: v2,
    });
    out.push(Check {
        condition: 3,
        description: "max(NO_O_ID) - min(NO_O_ID) + 1 = rows in NEW-ORDER",
        passed: some && v3.is_empty(),
        violations: v3,
    });
    out.push(Check {
        condition: 4,
        description: "sum(O_OL_CNT) = rows in ORDER-LINE",
        passed: some && v4.is_empty(),
        violations: v4,
    });
    let _ = c.disconnect().await;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_names_follow_the_syllables() {
        assert_eq!(last_name(0), "BARBARBAR");
        assert_eq!(last_name(371), "PRICALLYOUGHT");
        assert_eq!(last_name(999), "EINGEINGEING");
    }

    #[test]
    fn sizes_scale_with_floors() {
        let full = Sizes::of(1.0);
        assert_eq!((full.items, full.customers, full.first_new_order), (100_000, 3000, 2101));
        let small = Sizes::of(0.001);
        assert_eq!((small.items, small.customers), (100, 30));
    }

    #[test]
    fn original_marks_about_a_tenth() {
        let mut r = Rand::new(RandType::Uniform, 3);
        let n =
            (0..5000).filter(|_| data_with_original(&mut r, 26, 50).contains("ORIGINAL")).count();
        assert!((350..=650).contains(&n), "{n}");
    }
}
