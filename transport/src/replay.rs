//! Replay protection: every signer numbers its requests (a random 64-bit sender id, then a
//! sequence number counting up from 1), and a receiver accepts each (sender, sequence) once.
//!
//! Per sender the receiver keeps the highest sequence seen and a ring of [`WINDOW`] bits for
//! the ones just below it, as IPsec's anti-replay window does: requests may arrive out of order
//! (they are sent concurrently over several connections) by up to [`WINDOW`]; an older one is
//! refused. Memory is a few KiB per live sender process, whatever the request rate. A sender
//! unheard of for [`crate::signing::Verifier`]'s expiry is forgotten; timestamps (checked before
//! this guard) make sure none of its requests can come back after that.

use std::collections::HashMap;

/// How far below the highest sequence seen a request may still arrive.
pub const WINDOW: u64 = 1 << 16;
const WORDS: usize = (WINDOW / 64) as usize;

/// Most senders tracked at once; beyond it, new senders are refused until old ones expire.
pub const MAX_SENDERS: usize = 4096;

/// Why a (sender, sequence) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Seen before.
    Replayed,
    /// Further below the highest sequence seen than [`WINDOW`].
    TooOld,
    /// [`MAX_SENDERS`] senders are live.
    TooManySenders,
}

struct Window {
    top: u64,
    seen: Box<[u64; WORDS]>,
    last_seen_ms: u64,
}

impl Window {
    fn bit(seq: u64) -> (usize, u64) {
        let i = seq % WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    fn admit(&mut self, seq: u64) -> Result<(), Refusal> {
        if seq > self.top {
            if seq - self.top >= WINDOW {
                self.seen.fill(0);
            } else {
                for s in self.top + 1..seq {
                    let (w, b) = Self::bit(s);
                    self.seen[w] &= !b;
                }
            }
            self.top = seq;
            let (w, b) = Self::bit(seq);
            self.seen[w] |= b;
            return Ok(());
        }
        if self.top - seq >= WINDOW {
            return Err(Refusal::TooOld);
        }
        let (w, b) = Self::bit(seq);
        if self.seen[w] & b != 0 {
            return Err(Refusal::Replayed);
        }
        self.seen[w] |= b;
        Ok(())
    }
}

/// The (sender, sequence) pairs a receiver has accepted.
pub struct ReplayGuard {
    senders: HashMap<u64, Window>,
    expiry_ms: u64,
}

impl ReplayGuard {
    /// A guard forgetting senders unheard of for `expiry_ms`.
    pub fn new(expiry_ms: u64) -> Self {
        Self {
            senders: HashMap::new(),
            expiry_ms,
        }
    }

    /// Accepts `seq` of `sender` at `now_ms` unless it was accepted before (or is too old to
    /// tell). Call only for requests whose signature checked out, so that nobody without the
    /// key can fill the table.
    pub fn admit(&mut self, sender: u64, seq: u64, now_ms: u64) -> Result<(), Refusal> {
        if !self.senders.contains_key(&sender) && self.senders.len() >= MAX_SENDERS {
            let expiry = self.expiry_ms;
            self.senders
                .retain(|_, w| now_ms.saturating_sub(w.last_seen_ms) < expiry);
            if self.senders.len() >= MAX_SENDERS {
                return Err(Refusal::TooManySenders);
            }
        }
        let window = self.senders.entry(sender).or_insert_with(|| Window {
            top: 0,
            seen: Box::new([0; WORDS]),
            last_seen_ms: now_ms,
        });
        window.last_seen_ms = window.last_seen_ms.max(now_ms);
        window.admit(seq)
    }

    /// Senders tracked now.
    pub fn senders(&self) -> usize {
        self.senders.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sequence_is_accepted_once_in_any_order_within_the_window() {
        let mut g = ReplayGuard::new(1000);
        assert_eq!(g.admit(1, 5, 0), Ok(()));
        assert_eq!(g.admit(1, 3, 0), Ok(()));
        assert_eq!(g.admit(1, 4, 0), Ok(()));
        assert_eq!(g.admit(1, 5, 0), Err(Refusal::Replayed));
        assert_eq!(g.admit(1, 3, 0), Err(Refusal::Replayed));
        // Another sender's numbers are its own.
        assert_eq!(g.admit(2, 5, 0), Ok(()));
        // A jump keeps what is still inside the window, and forgets what fell out of it.
        assert_eq!(g.admit(1, 5 + WINDOW - 1, 0), Ok(()));
        assert_eq!(g.admit(1, 5, 0), Err(Refusal::Replayed));
        assert_eq!(g.admit(1, 4, 0), Err(Refusal::TooOld));
        assert_eq!(g.admit(1, 6, 0), Ok(()));
        assert_eq!(g.admit(1, 10 * WINDOW, 0), Ok(()));
        assert_eq!(g.admit(1, 10 * WINDOW - 1, 0), Ok(()));
        assert_eq!(g.admit(1, 10 * WINDOW - 1, 0), Err(Refusal::Replayed));
        assert_eq!(g.admit(1, 5 + WINDOW - 1, 0), Err(Refusal::TooOld));
    }

    #[test]
    fn senders_are_bounded_and_expire() {
        let mut g = ReplayGuard::new(1000);
        for s in 0..MAX_SENDERS as u64 {
            g.admit(s, 1, 0).unwrap();
        }
        assert_eq!(g.admit(u64::MAX, 1, 999), Err(Refusal::TooManySenders));
        // A known sender goes on.
        assert_eq!(g.admit(7, 2, 999), Ok(()));
        // Once the others expire, a new one fits.
        assert_eq!(g.admit(u64::MAX, 1, 1500), Ok(()));
        assert_eq!(g.senders(), 2);
    }

    proptest::proptest! {
        /// Against a model (the set of accepted pairs): nothing is accepted twice, and every
        /// first arrival within the window is accepted.
        #[test]
        fn matches_a_set_model(seqs in proptest::collection::vec((0u64..3, 1u64..200_000), 1..400)) {
            let mut g = ReplayGuard::new(u64::MAX);
            let mut accepted = std::collections::HashSet::new();
            let mut top = std::collections::HashMap::new();
            for (sender, seq) in seqs {
                let t = top.entry(sender).or_insert(0u64);
                let fresh = !accepted.contains(&(sender, seq));
                let in_window = seq > *t || *t - seq < WINDOW;
                let r = g.admit(sender, seq, 0);
                if fresh && in_window {
                    proptest::prop_assert_eq!(r, Ok(()));
                    accepted.insert((sender, seq));
                    *t = (*t).max(seq);
                } else {
                    proptest::prop_assert!(r.is_err());
                }
            }
        }
    }
}
