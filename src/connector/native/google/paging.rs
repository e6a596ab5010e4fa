//! Reading Google's pages in a sync, the same way in every Google connector:
//! each page's Signals to the sink, a page boundary where the sink may commit,
//! and bounds on one paged read: a page token answered a second time (a loop,
//! or a cycle) fails the run, and after [`MAX_PAGES`] pages the read stops so
//! the caller can end the run where the next one continues.

use std::collections::HashSet;

use serde_json::json;

use crate::connector::ConnectorError;
use crate::domain::Signal;
use crate::engine::poll::{PollError, PollOutcome, SignalSink};

/// Pages one paged read takes at most (a million Drive changes, a million
/// Gmail messages, half a million events of one calendar).
pub const MAX_PAGES: u32 = 2000;

fn sink_error(e: String) -> ConnectorError {
    ConnectorError::from(PollError::Sink(e))
}

/// Where a paged read goes after a page.
#[derive(Debug, PartialEq, Eq)]
pub enum Turn {
    /// On to this page.
    Next(String),
    /// The read has taken [`MAX_PAGES`] pages: it stops before this one.
    Bound(String),
}

/// One paged read.
#[derive(Debug)]
pub struct Pager {
    api: &'static str,
    pages: u32,
    seen: HashSet<String>,
}

impl Pager {
    /// A read of `api` (named in errors).
    pub fn new(api: &'static str) -> Self {
        Pager {
            api,
            pages: 0,
            seen: HashSet::new(),
        }
    }

    /// Hands one page's Signals to the sink and counts the page.
    pub async fn write(
        &mut self,
        sink: &mut dyn SignalSink,
        outcome: &mut PollOutcome,
        signals: Vec<Signal>,
    ) -> Result<(), ConnectorError> {
        self.pages += 1;
        outcome.signals += signals.len() as u64;
        outcome.pages += 1;
        sink.write(signals).await.map_err(sink_error)
    }

    /// Moves on to the page `next`, at a page boundary (the sink may commit),
    /// unless the read has taken [`MAX_PAGES`] pages.
    pub async fn next(
        &mut self,
        sink: &mut dyn SignalSink,
        next: String,
    ) -> Result<Turn, ConnectorError> {
        if !self.seen.insert(next.clone()) {
            return Err(ConnectorError::Other {
                message: format!("{} answered a page token it had answered before", self.api),
                retryable: true,
            });
        }
        sink.progress(json!({})).await.map_err(sink_error)?;
        Ok(if self.pages < MAX_PAGES {
            Turn::Next(next)
        } else {
            Turn::Bound(next)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::poll::VecSink;

    #[tokio::test]
    async fn a_read_fails_on_a_token_seen_before_and_stops_at_the_bound() {
        let mut sink = VecSink::default();
        let mut outcome = PollOutcome::default();
        let mut pager = Pager::new("Gmail");
        pager
            .write(&mut sink, &mut outcome, Vec::new())
            .await
            .unwrap();
        assert_eq!(
            pager.next(&mut sink, "a".into()).await.unwrap(),
            Turn::Next("a".into())
        );
        assert_eq!(
            pager.next(&mut sink, "b".into()).await.unwrap(),
            Turn::Next("b".into())
        );
        // A cycle back to `a`, not only a repeat of the last token.
        let e = pager.next(&mut sink, "a".into()).await.unwrap_err();
        assert!(e.to_string().contains("answered before"), "{e}");
        let mut pager = Pager::new("Gmail");
        for _ in 0..MAX_PAGES {
            pager
                .write(&mut sink, &mut outcome, Vec::new())
                .await
                .unwrap();
        }
        assert_eq!(
            pager.next(&mut sink, "z".into()).await.unwrap(),
            Turn::Bound("z".into())
        );
        assert_eq!(outcome.pages, MAX_PAGES + 1);
    }
}
