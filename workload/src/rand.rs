//! Random numbers as the benchmarks define them: sysbench's distributions
//! (uniform, gaussian, special, pareto with its defaults) and string
//! templates, and TPC-C's NURand and random strings.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

pub use distdiag_api::workload::RandType;

/// sysbench defaults: 12 iterations for gaussian/special, 1 % special values
/// drawn 75 % of the time, Pareto h = 0.2.
const SPEC_ITER: u32 = 12;
const SPEC_PCT: f64 = 1.0;
const SPEC_RES: f64 = 75.0;
const PARETO_H: f64 = 0.2;

pub struct Rand {
    rng: SmallRng,
    kind: RandType,
}

impl Rand {
    pub fn new(kind: RandType, seed: u64) -> Self {
        Rand { rng: SmallRng::seed_from_u64(seed), kind }
    }

    pub fn unit(&mut self) -> f64 {
        self.rng.random::<f64>()
    }

    /// Uniform integer in `a..=b`.
    pub fn uniform(&mut self, a: u64, b: u64) -> u64 {
        if b <= a {
            return a;
        }
        self.rng.random_range(a..=b)
    }

    /// A value in `a..=b` drawn from the configured distribution.
    pub fn default_range(&mut self, a: u64, b: u64) -> u64 {
        if b <= a {
            return a;
        }
        let t = (b - a) as f64;
        let v = match self.kind {
            RandType::Uniform => return self.uniform(a, b),
            RandType::Gaussian => {
                let sum: f64 = (0..SPEC_ITER).map(|_| self.unit()).sum();
                a as f64 + (t + 1.0) * sum / f64::from(SPEC_ITER)
            }
            RandType::Special => {
                let range = t * 100.0 / (100.0 - SPEC_RES);
                let r = self.unit() * range;
                if r < t {
                    let sum: f64 = (0..SPEC_ITER).map(|_| self.unit()).sum();
                    a as f64 + t * sum / f64::from(SPEC_ITER)
                } else {
                    let d = t * SPEC_PCT / 100.0;
                    let mid = t * SPEC_PCT / 200.0;
                    a as f64 + t / 2.0 - mid + self.unit() * d
                }
            }
            RandType::Pareto => {
                let power = PARETO_H.ln() / (1.0 - PARETO_H).ln();
                a as f64 + (t + 1.0) * self.unit().powf(power)
            }
        };
        (v as u64).clamp(a, b)
    }

    /// sysbench's template strings: `#` becomes a digit, `@` a letter.
    pub fn template(&mut self, tpl: &str) -> String {
        tpl.chars()
            .map(|c| match c {
                '#' => char::from(b'0' + self.rng.random_range(0..10u8)),
                '@' => char::from(b'a' + self.rng.random_range(0..26u8)),
                other => other,
            })
            .collect()
    }

    /// Random alphanumeric string of a length in `min..=max` (TPC-C a-string).
    pub fn astring(&mut self, min: usize, max: usize) -> String {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let n = self.uniform(min as u64, max as u64) as usize;
        (0..n).map(|_| char::from(CHARS[self.rng.random_range(0..CHARS.len())])).collect()
    }

    /// Random numeric string of a length in `min..=max` (TPC-C n-string).
    pub fn nstring(&mut self, min: usize, max: usize) -> String {
        let n = self.uniform(min as u64, max as u64) as usize;
        (0..n).map(|_| char::from(b'0' + self.rng.random_range(0..10u8))).collect()
    }

    /// TPC-C NURand(A, x, y) with run-time constant `c`.
    pub fn nurand(&mut self, a: u64, c: u64, x: u64, y: u64) -> u64 {
        (((self.uniform(0, a) | self.uniform(x, y)) + c) % (y - x + 1)) + x
    }
}

pub const SB_C_TEMPLATE: &str = "###########-###########-###########-###########-###########-###########-###########-###########-###########-###########";
pub const SB_PAD_TEMPLATE: &str = "###########-###########-###########-###########-###########";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributions_stay_in_range_and_have_their_shape() {
        for kind in [RandType::Uniform, RandType::Gaussian, RandType::Special, RandType::Pareto] {
            let mut r = Rand::new(kind, 7);
            let mut hits_middle = 0;
            let mut hits_low = 0;
            for _ in 0..20_000 {
                let v = r.default_range(1, 10_000);
                assert!((1..=10_000).contains(&v), "{kind:?} {v}");
                if (4950..=5050).contains(&v) {
                    hits_middle += 1;
                }
                if v <= 100 {
                    hits_low += 1;
                }
            }
            match kind {
                // 1 % of the range gets about 1 % of the draws.
                RandType::Uniform => assert!((100..=300).contains(&hits_middle), "{hits_middle}"),
                // 75 % of the draws fall on the special middle 1 %.
                RandType::Special => assert!(hits_middle > 14_000, "{hits_middle}"),
                // The sum of 12 uniforms is peaked at the centre.
                RandType::Gaussian => assert!(hits_middle > 700, "{hits_middle}"),
                // Pareto piles up at the low end.
                RandType::Pareto => assert!(hits_low > 8_000, "{hits_low}"),
            }
        }
    }

    #[test]
    fn templates_and_strings() {
        let mut r = Rand::new(RandType::Uniform, 1);
        let c = r.template(SB_C_TEMPLATE);
        assert_eq!(c.len(), 119);
        assert!(c.split('-').all(|p| p.len() == 11 && p.chars().all(|ch| ch.is_ascii_digit())));
        let a = r.astring(8, 16);
        assert!((8..=16).contains(&a.len()));
        assert!(r.nstring(4, 4).chars().all(|ch| ch.is_ascii_digit()));
        for _ in 0..1000 {
            assert!((1..=3000).contains(&r.nurand(1023, 259, 1, 3000)));
        }
    }
}
