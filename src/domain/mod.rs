//! Domain types shared by every layer, depending on none of them: newtype ids,
//! the normalized `Signal` and its `Priority`, checkpoints, OAuth tokens, job
//! states, the clock and randomness (`Ambient`), the one retry backoff and the
//! one secret scrubber.

/// `as_str` / `parse` between a plain enum and the words it is stored as.
macro_rules! text_enum {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            /// Every value, in declaration order.
            pub const ALL: &[Self] = &[$(Self::$v),*];
            /// The stored text.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
            /// Parses the stored text.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)* _ => None }
            }
        }
    };
}

mod ambient;
mod backoff;
mod checkpoint;
mod ids;
mod job;
pub mod rotation;
mod scrub;
pub mod signal;
mod tokens;

pub use ambient::{
    Ambient, Clock, ManualClock, OsRandom, Random, SeededRandom, Sleep, SystemClock,
};
pub use backoff::Backoff;
pub use checkpoint::{Checkpoints, NO_PARTITION};
pub use ids::{ConnectionId, SubscriptionId, TenantId};
pub use job::{JobState, JobType, Trigger};
pub use scrub::{REDACTED, Scrubber};
pub use signal::{Priority, Signal, dedupe_key};
pub use tokens::TokenSet;
