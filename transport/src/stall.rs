//! Streams that give up on a sender that stopped sending.
//!
//! A body is read piece by piece; wrapping each piece's wait in `tokio::time::timeout` registers
//! (and removes) a timer per piece, which a 1 MiB body in 16 KiB pieces pays 64 times. The guard
//! here arms one timer per stream and only notes when a wait begins; when the timer fires early
//! (pieces came meanwhile) it is moved to that wait's start plus the limit.
//!
//! Only waiting counts: the time between a piece and the reader's next poll (the reader was busy,
//! or held back by whoever it writes to) is not the sender's fault.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::time::{Instant, Sleep};

/// Nothing arrived for the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no data arrived within {0:?}")]
pub struct Stalled(pub Duration);

/// `inner`, each item wrapped in `Ok`, ending with one `Err(Stalled)` once nothing arrived for
/// `limit`.
pub fn stall_guard<S: Stream + Unpin>(inner: S, limit: Duration) -> StallGuard<S> {
    StallGuard {
        inner,
        limit,
        waiting_since: None,
        timer: Box::pin(tokio::time::sleep(limit)),
        done: false,
    }
}

/// See [`stall_guard`].
pub struct StallGuard<S> {
    inner: S,
    limit: Duration,
    /// When the current wait for the next item began (the first poll that found none).
    waiting_since: Option<Instant>,
    /// Fires no later than `waiting_since + limit` (re-armed when it fires earlier).
    timer: Pin<Box<Sleep>>,
    done: bool,
}

impl<S: Stream + Unpin> Stream for StallGuard<S> {
    type Item = Result<S::Item, Stalled>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(item)) => {
                self.waiting_since = None;
                return Poll::Ready(Some(Ok(item)));
            }
            Poll::Ready(None) => {
                self.done = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        let since = *self.waiting_since.get_or_insert_with(Instant::now);
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let deadline = since + self.limit;
            if Instant::now() >= deadline {
                self.done = true;
                return Poll::Ready(Some(Err(Stalled(self.limit))));
            }
            self.timer.as_mut().reset(deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test(start_paused = true)]
    async fn a_steady_sender_is_never_cut_off_and_a_silent_one_is() {
        // One piece every 60 ms for a second, with a 100 ms limit: all of them arrive.
        let steady = futures_util::stream::unfold(0u32, |n| async move {
            (n < 16).then_some(())?;
            tokio::time::sleep(Duration::from_millis(60)).await;
            Some((n, n + 1))
        });
        let got: Vec<_> = stall_guard(Box::pin(steady), Duration::from_millis(100))
            .collect()
            .await;
        assert_eq!(got, (0..16).map(Ok).collect::<Vec<_>>());

        // Two pieces, then silence: the guard ends the stream with one error, 100 ms after the
        // last piece.
        let silent = futures_util::stream::iter([1, 2]).chain(futures_util::stream::pending());
        let start = Instant::now();
        let mut guarded = stall_guard(Box::pin(silent), Duration::from_millis(100));
        assert_eq!(guarded.next().await, Some(Ok(1)));
        assert_eq!(guarded.next().await, Some(Ok(2)));
        assert_eq!(
            guarded.next().await,
            Some(Err(Stalled(Duration::from_millis(100))))
        );
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        assert_eq!(guarded.next().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_pauses_between_pieces_does_not_count_against_the_sender() {
        // The sender needs 50 ms per piece; the reader takes 500 ms over each one (held back
        // by whoever it writes to): every piece arrives, no stall.
        let slow_reader = futures_util::stream::unfold(0u32, |n| async move {
            (n < 3).then_some(())?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            Some((n, n + 1))
        });
        let mut guarded = stall_guard(Box::pin(slow_reader), Duration::from_millis(100));
        let mut got = Vec::new();
        while let Some(piece) = guarded.next().await {
            got.push(piece);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_eq!(got, (0..3).map(Ok).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_counts_from_the_last_piece_not_the_first() {
        // Pieces at 90 and 180 ms, then silence: the error comes at 280 ms, not at 100 or 190.
        let late = futures_util::stream::unfold(0u32, |n| async move {
            (n < 2).then_some(())?;
            tokio::time::sleep(Duration::from_millis(90)).await;
            Some((n, n + 1))
        })
        .chain(futures_util::stream::pending());
        let start = Instant::now();
        let got: Vec<_> = stall_guard(Box::pin(late), Duration::from_millis(100))
            .collect()
            .await;
        assert_eq!(got.len(), 3);
        assert!(got[2].is_err());
        assert_eq!(start.elapsed(), Duration::from_millis(280));
    }
}
