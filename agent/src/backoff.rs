//! Exponential backoff with a cap and jitter, for reconnecting to the
//! coordinator. Pure: the caller passes the random draw, so the schedule is
//! property-tested without a clock or an RNG.

use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BackoffError {
    #[error("backoff base must be positive")]
    ZeroBase,
    #[error("backoff maximum must be at least the base")]
    MaxBelowBase,
    #[error("backoff jitter must be within 0..=1")]
    Jitter,
}

/// Delay `n` (0-based) is `min(max, base·2ⁿ)·(1 − jitter·u)` for a draw `u ∈ [0, 1)`.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    jitter: f64,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration, jitter: f64) -> Result<Self, BackoffError> {
        if base.is_zero() {
            return Err(BackoffError::ZeroBase);
        }
        if max < base {
            return Err(BackoffError::MaxBelowBase);
        }
        if !(0.0..=1.0).contains(&jitter) {
            return Err(BackoffError::Jitter);
        }
        Ok(Backoff { base, max, jitter, attempt: 0 })
    }

    /// The un-jittered delay of the current attempt.
    pub fn ceiling(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(31));
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The next delay; `u` is a uniform draw in `[0, 1)`.
    pub fn next_delay(&mut self, u: f64) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(1.0 - self.jitter * u.clamp(0.0, 1.0))
    }

    /// Back to the base delay (after a successful connection).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn constructor_validates() {
        assert_eq!(
            Backoff::new(Duration::ZERO, Duration::from_secs(1), 0.1).unwrap_err(),
            BackoffError::ZeroBase
        );
        assert_eq!(
            Backoff::new(Duration::from_secs(2), Duration::from_secs(1), 0.1).unwrap_err(),
            BackoffError::MaxBelowBase
        );
        assert_eq!(
            Backoff::new(Duration::from_secs(1), Duration::from_secs(1), 1.5).unwrap_err(),
            BackoffError::Jitter
        );
    }

    #[test]
    fn doubles_until_the_cap() {
        let mut b =
            Backoff::new(Duration::from_millis(100), Duration::from_millis(1000), 0.0).unwrap();
        let d: Vec<u128> = (0..7).map(|_| b.next_delay(0.5).as_millis()).collect();
        assert_eq!(d, vec![100, 200, 400, 800, 1000, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(0.0).as_millis(), 100);
    }

    proptest! {
        #[test]
        fn delays_stay_within_the_jitter_band_and_under_the_cap(
            base_ms in 1u64..10_000, extra in 0u64..100_000, jitter in 0.0f64..=1.0,
            draws in prop::collection::vec(0.0f64..1.0, 1..80),
        ) {
            let (base, max) = (Duration::from_millis(base_ms), Duration::from_millis(base_ms + extra));
            let mut b = Backoff::new(base, max, jitter).unwrap();
            for (n, u) in draws.iter().enumerate() {
                let ceiling = base.saturating_mul(2u32.saturating_pow((n as u32).min(31))).min(max);
                prop_assert_eq!(b.ceiling(), ceiling);
                let d = b.next_delay(*u);
                prop_assert!(d <= max);
                prop_assert!(d <= ceiling);
                prop_assert!(d.as_secs_f64() >= ceiling.as_secs_f64() * (1.0 - jitter) - 1e-9);
            }
            b.reset();
            prop_assert!(b.next_delay(draws[0]) <= base);
        }
    }
}
