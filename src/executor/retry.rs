//! Retry policy for transient failures: exponential backoff with jitter.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Total attempts (1 = no retry).
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(500),
            max: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// Delay before attempt `n` (n ≥ 2): base·2^(n-2), capped, ±25 % jitter so a fleet that
    /// failed together does not retry in lockstep.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(2).min(16));
        let d = exp.min(self.max);
        let jitter = rand::thread_rng().gen_range(0.75..1.25);
        d.mul_f64(jitter)
    }
}
