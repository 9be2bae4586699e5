//! `cpu_stress`: `workers` processes, each busy for `load_percent` of every
//! 100 ms period.

use std::time::{Duration, Instant};

use super::Plan;

const PERIOD: Duration = Duration::from_millis(100);

pub(super) fn plan(workers: u32, load_percent: u8) -> Plan {
    let args =
        vec!["--kind".to_owned(), "cpu".to_owned(), "--load".to_owned(), load_percent.to_string()];
    Plan {
        workers: (0..workers).map(|_| args.clone()).collect(),
        paths: Vec::new(),
        qdisc: None,
        queue: None,
    }
}

/// The worker: spin for the busy share of each period, sleep the rest.
pub(super) fn work(load_percent: u8) -> ! {
    let busy = PERIOD.mul_f64(f64::from(load_percent.min(100)) / 100.0);
    let mut x: u64 = 1;
    loop {
        let start = Instant::now();
        while start.elapsed() < busy {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            std::hint::black_box(x);
        }
        let rest = PERIOD.saturating_sub(start.elapsed());
        if !rest.is_zero() {
            std::thread::sleep(rest);
        }
    }
}
