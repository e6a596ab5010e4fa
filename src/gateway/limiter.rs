//! The per-connection webhook rate limit (`POBLYSH_WEBHOOK_RATE_LIMIT` requests
//! per minute, default 100): a GCRA limiter per connection (`governor`), so a
//! burst up to the limit passes and the rest get 429 with `Retry-After`. Per
//! node: with several API nodes behind a balancer the limit is per node.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::domain::ConnectionId;

/// The limiter (`None` inside when the limit is off).
#[derive(Debug)]
pub struct Limiter {
    limiter: Option<DefaultKeyedRateLimiter<ConnectionId>>,
    clock: DefaultClock,
}

impl Limiter {
    /// A limiter of `per_minute` requests per connection; 0 turns it off.
    pub fn new(per_minute: u32) -> Self {
        Limiter {
            limiter: NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request for `connection`; `Err(wait)` when over the limit.
    pub fn check(&self, connection: ConnectionId) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(&connection)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))?;
        if limiter.len() > 100_000 {
            limiter.retain_recent();
        }
        Ok(())
    }
}
