//! The one retry backoff: exponential from an initial delay, doubled per
//! attempt, with jitter (×0.5 to ×1.5) so retries from many workers spread out.
//! Outbound HTTP retries and job retries both use it.

use std::time::Duration;

use super::ambient::Ambient;

/// Exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the first retry, before jitter.
    pub initial: Duration,
}

impl Backoff {
    /// Backoff starting at `initial`.
    pub const fn new(initial: Duration) -> Self {
        Backoff { initial }
    }

    /// The wait after failed attempt `attempt` (1-based; 0 counts as 1):
    /// `initial × 2^(attempt-1)`, times a random factor in [0.5, 1.5).
    pub fn delay(&self, attempt: u32, ambient: &Ambient) -> Duration {
        let exponent = attempt.max(1).saturating_sub(1).min(30) as i32;
        let base = self.initial.as_secs_f64() * 2f64.powi(exponent);
        Duration::from_secs_f64(base * (0.5 + ambient.unit()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_per_attempt_with_jitter() {
        let ambient = Ambient::system();
        let b = Backoff::new(Duration::from_millis(100));
        for attempt in 1..=4u32 {
            let base = 100u64 << (attempt - 1);
            let d = b.delay(attempt, &ambient).as_millis() as u64;
            assert!(
                d >= base / 2 && d < base * 3 / 2 + 1,
                "attempt {attempt}: {d}"
            );
        }
        assert!(b.delay(0, &ambient) < Duration::from_millis(151));
        // Large attempt numbers do not overflow.
        assert!(b.delay(u32::MAX, &ambient) > Duration::from_secs(1));
    }
}
