//! The inputs that vary from run to run and that no module reaches for on its
//! own: the clock (now, and sleeping) and randomness. `Ambient` carries both; a
//! node builds it once (`Ambient::system()`), tests swap in a [`ManualClock`]
//! and a seeded [`Random`] so time and chance are theirs to control.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

/// A future that sleeps.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Tells the time and waits.
pub trait Clock: Send + Sync + Debug {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
    /// Waits for `duration` (a test clock may only move its time forward).
    fn sleep(&self, duration: Duration) -> Sleep;
}

/// Random bytes.
pub trait Random: Send + Sync + Debug {
    /// Fills `buf` with random bytes.
    fn fill(&self, buf: &mut [u8]);
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[expect(
        clippy::disallowed_methods,
        reason = "the one place the real clock is read"
    )]
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "the one place a real sleep is made"
    )]
    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A clock that moves only when told to. `sleep` waits until the clock has
/// been moved past its deadline (as tokio's paused time does): a test decides
/// when time passes, and nothing waits in real time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<tokio::sync::watch::Sender<DateTime<Utc>>>);

impl ManualClock {
    /// A clock standing at `now`.
    pub fn new(now: DateTime<Utc>) -> Self {
        ManualClock(Arc::new(tokio::sync::watch::Sender::new(now)))
    }

    /// Moves the clock forward by `by`, waking the sleeps it passes.
    pub fn advance(&self, by: chrono::Duration) {
        self.0.send_modify(|t| *t += by);
    }

    /// Sets the clock to `now`.
    pub fn set(&self, now: DateTime<Utc>) {
        self.0.send_replace(now);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.borrow()
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        let mut time = self.0.subscribe();
        let deadline =
            *time.borrow() + chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX);
        Box::pin(async move {
            while *time.borrow_and_update() < deadline {
                if time.changed().await.is_err() {
                    return;
                }
            }
        })
    }
}

/// The operating system's randomness.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRandom;

impl Random for OsRandom {
    #[expect(
        clippy::disallowed_methods,
        reason = "the one place OS randomness is read"
    )]
    fn fill(&self, buf: &mut [u8]) {
        getrandom::fill(buf).expect("the operating system provides randomness");
    }
}

/// A deterministic generator (SplitMix64) for tests: the same seed gives the
/// same bytes.
#[derive(Debug)]
pub struct SeededRandom(Mutex<u64>);

impl SeededRandom {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SeededRandom(Mutex::new(seed))
    }
}

impl Random for SeededRandom {
    fn fill(&self, buf: &mut [u8]) {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for chunk in buf.chunks_mut(8) {
            *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = *state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// The clock and randomness of a node, shared by everything in it.
#[derive(Debug, Clone)]
pub struct Ambient {
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Randomness.
    pub random: Arc<dyn Random>,
}

impl Ambient {
    /// The real clock and the operating system's randomness.
    pub fn system() -> Self {
        Ambient {
            clock: Arc::new(SystemClock),
            random: Arc::new(OsRandom),
        }
    }

    /// Now.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Waits for `duration`.
    pub fn sleep(&self, duration: Duration) -> Sleep {
        self.clock.sleep(duration)
    }

    /// A random number in [0, 1).
    pub fn unit(&self) -> f64 {
        let mut bytes = [0u8; 8];
        self.random.fill(&mut bytes);
        (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A random URL-safe token of `bytes` random bytes (states, PKCE verifiers,
    /// channel tokens).
    pub fn token(&self, bytes: usize) -> String {
        let mut buf = vec![0u8; bytes];
        self.random.fill(&mut buf);
        URL_SAFE_NO_PAD.encode(buf)
    }
}

impl Default for Ambient {
    fn default() -> Self {
        Ambient::system()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_moves_only_when_told_and_sleeps_until_moved() {
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let clock = ManualClock::new(t0);
        assert_eq!(clock.now(), t0);
        clock.advance(chrono::Duration::seconds(5));
        assert_eq!(clock.now(), t0 + chrono::Duration::seconds(5));
        let sleeping = tokio::spawn(clock.sleep(Duration::from_secs(60)));
        tokio::task::yield_now().await;
        clock.advance(chrono::Duration::seconds(59));
        tokio::task::yield_now().await;
        assert!(!sleeping.is_finished(), "woke before its deadline");
        clock.advance(chrono::Duration::seconds(1));
        tokio::time::timeout(Duration::from_secs(5), sleeping)
            .await
            .expect("woke once the clock passed its deadline")
            .unwrap();
        // A zero sleep returns at once.
        clock.sleep(Duration::ZERO).await;
    }

    #[test]
    fn seeded_randomness_repeats_and_units_stay_in_range() {
        let a = Ambient {
            clock: Arc::new(SystemClock),
            random: Arc::new(SeededRandom::new(7)),
        };
        let b = Ambient {
            clock: Arc::new(SystemClock),
            random: Arc::new(SeededRandom::new(7)),
        };
        assert_eq!(a.token(32), b.token(32));
        assert_ne!(a.token(32), a.token(32));
        for _ in 0..1000 {
            let u = a.unit();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
        assert_eq!(Ambient::system().token(32).len(), 43);
    }
}
