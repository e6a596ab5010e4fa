//! When a failed push delivery is tried again: the Standard Webhooks / Svix
//! schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h after each failure:
//! about 28 hours in all), each wait with ±20 % jitter so subscribers that
//! failed together do not come back together; a `Retry-After` the subscriber
//! sent is honoured when it is longer (capped at the longest step); `410 Gone`
//! disables the subscription; after the last step it is marked failing.

use std::time::Duration;

use crate::domain::Ambient;

/// The waits after the 1st, 2nd, … failed attempt.
pub const SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// What to do after a delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Taken (2xx): move the cursor past the batch.
    Advance,
    /// Try the same batch again after this wait.
    RetryAfter(Duration),
    /// The subscriber said it is gone (410): disable the subscription.
    Disable,
    /// The schedule is exhausted: mark the subscription failing.
    GiveUp,
}

/// What follows failed attempt number `failures` (1 for the first failure)
/// that answered `status` (`None`: no answer: a timeout, a refused
/// connection) with `retry_after` (its `Retry-After`, if any), on `schedule`
/// (the waits after each failure; [`SCHEDULE`] unless configured).
pub fn after(
    status: Option<u16>,
    failures: u32,
    retry_after: Option<Duration>,
    schedule: &[Duration],
    ambient: &Ambient,
) -> Next {
    match status {
        Some(200..=299) => return Next::Advance,
        Some(410) => return Next::Disable,
        _ => {}
    }
    let Some(step) = schedule.get(failures.max(1) as usize - 1) else {
        return Next::GiveUp;
    };
    let jittered = step.mul_f64(0.8 + 0.4 * ambient.unit());
    let longest = schedule.iter().max().copied().unwrap_or_default();
    let asked = retry_after.map_or(Duration::ZERO, |r| r.min(longest));
    Next::RetryAfter(jittered.max(asked))
}

/// A `Retry-After` header value: whole seconds (an HTTP date is not taken).
pub fn retry_after(value: Option<&str>) -> Option<Duration> {
    value?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SeededRandom;
    use std::sync::Arc;

    fn ambient(seed: u64) -> Ambient {
        Ambient {
            clock: Arc::new(crate::domain::SystemClock),
            random: Arc::new(SeededRandom::new(seed)),
        }
    }

    #[test]
    fn the_schedule_runs_about_a_day_with_jitter_then_gives_up() {
        let a = ambient(1);
        let mut total = Duration::ZERO;
        for (n, step) in SCHEDULE.iter().enumerate() {
            let Next::RetryAfter(wait) = after(Some(500), n as u32 + 1, None, &SCHEDULE, &a) else {
                panic!("attempt {n} should be retried");
            };
            assert!(
                wait >= step.mul_f64(0.8) && wait <= step.mul_f64(1.2),
                "{n}: {wait:?}"
            );
            total += wait;
        }
        assert!(
            total > Duration::from_secs(22 * 3600) && total < Duration::from_secs(34 * 3600),
            "{total:?}"
        );
        assert_eq!(
            after(None, SCHEDULE.len() as u32 + 1, None, &SCHEDULE, &a),
            Next::GiveUp
        );
        // Two subscribers failing together come back apart.
        let (x, y) = (
            after(Some(503), 3, None, &SCHEDULE, &ambient(2)),
            after(Some(503), 3, None, &SCHEDULE, &ambient(3)),
        );
        assert_ne!(x, y);
    }

    #[test]
    fn success_gone_and_retry_after() {
        let a = ambient(4);
        assert_eq!(after(Some(204), 1, None, &SCHEDULE, &a), Next::Advance);
        assert_eq!(after(Some(410), 2, None, &SCHEDULE, &a), Next::Disable);
        // A longer Retry-After wins; a shorter one does not hurry the schedule; it is capped.
        assert_eq!(
            after(Some(429), 1, Some(Duration::from_secs(120)), &SCHEDULE, &a),
            Next::RetryAfter(Duration::from_secs(120))
        );
        let Next::RetryAfter(wait) =
            after(Some(429), 2, Some(Duration::from_secs(1)), &SCHEDULE, &a)
        else {
            panic!()
        };
        assert!(wait >= Duration::from_secs(240), "{wait:?}");
        assert_eq!(
            after(
                Some(429),
                1,
                Some(Duration::from_secs(10 * 86_400)),
                &SCHEDULE,
                &a
            ),
            Next::RetryAfter(SCHEDULE[6])
        );
        assert_eq!(retry_after(Some(" 30 ")), Some(Duration::from_secs(30)));
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after(None), None);
    }
}
