//! What a partition's leader measures to decide splits: read and write rates (exponentially
//! decayed, so a burst fades and a steady load holds) and a sample of the keys it served, from
//! which a split key is chosen so that each half carries about half of the *load* (not half of the
//! keys).
//!
//! Everything takes the time as an argument (milliseconds on any monotonic clock), so the same
//! code runs in the gateway and in the deterministic scaling simulation.

use std::collections::VecDeque;

/// An event rate decayed exponentially with a half-life: after a step change, the estimate has
/// moved halfway to the new rate one half-life later.
#[derive(Debug, Clone)]
pub struct DecayedRate {
    /// Decayed event count (events x exp(-age / tau)).
    acc: f64,
    last_ms: u64,
    tau_ms: f64,
}

impl DecayedRate {
    /// A rate with this half-life (at least 1 ms).
    pub fn new(half_life_ms: u64) -> Self {
        Self {
            acc: 0.0,
            last_ms: 0,
            tau_ms: half_life_ms.max(1) as f64 / std::f64::consts::LN_2,
        }
    }

    fn decay_to(&mut self, now_ms: u64) {
        if now_ms > self.last_ms {
            self.acc *= (-((now_ms - self.last_ms) as f64) / self.tau_ms).exp();
            self.last_ms = now_ms;
        }
    }

    /// A rate of `per_second` events per second at `now_ms`: one measured on another gateway
    /// (whose clock differs) and handed over.
    pub fn at_rate(half_life_ms: u64, per_second: f64, now_ms: u64) -> Self {
        let mut rate = Self::new(half_life_ms);
        rate.last_ms = now_ms;
        rate.acc = per_second.max(0.0) * rate.tau_ms / 1000.0;
        rate
    }

    /// Counts `n` events at `now_ms`.
    pub fn record(&mut self, now_ms: u64, n: f64) {
        self.decay_to(now_ms);
        self.acc += n;
    }

    /// Events per second at `now_ms`.
    pub fn per_second(&mut self, now_ms: u64) -> f64 {
        self.decay_to(now_ms);
        self.acc / self.tau_ms * 1000.0
    }

    /// Scales the rate (a split hands each half its share).
    pub fn scale(&mut self, factor: f64) {
        self.acc *= factor;
    }
}

/// The most recent requests' keys with their weights (a request counted once has weight 1; a
/// simulation sampling 1 request in N passes N) and whether each was a write. A bounded ring:
/// memory is fixed per partition.
#[derive(Debug, Clone, Default)]
pub struct KeySample {
    recent: VecDeque<Sampled>,
}

#[derive(Debug, Clone)]
struct Sampled {
    key: Vec<u8>,
    weight: f64,
    write: bool,
}

/// Keys kept per partition.
pub const SAMPLE_SIZE: usize = 512;

/// A sampled request as handed to another gateway: its key, weight and whether it was a write.
pub type SampledRequest = (Vec<u8>, f64, bool);

/// A split must leave at least this share of the sampled load on its lighter side; otherwise one
/// key carries the load and no cut can divide it.
pub const MIN_LIGHTER_SHARE: f64 = 0.2;

/// When at least this share of consecutive sampled keys increase, the load is an append stream
/// (timestamps, sequence numbers).
pub const SEQUENTIAL_SHARE: f64 = 0.9;

impl KeySample {
    /// Notes a request of `kind` for `key`.
    pub fn record(&mut self, key: &[u8], weight: f64, kind: Access) {
        if self.recent.len() == SAMPLE_SIZE {
            self.recent.pop_front();
        }
        self.recent.push_back(Sampled {
            key: key.to_vec(),
            weight,
            write: kind == Access::Write,
        });
    }

    /// The sampled requests, oldest first.
    pub fn requests(&self) -> Vec<SampledRequest> {
        self.recent
            .iter()
            .map(|s| (s.key.clone(), s.weight, s.write))
            .collect()
    }

    /// A sample of `requests` (oldest first; the last [`SAMPLE_SIZE`] are kept).
    pub fn from_requests(requests: impl IntoIterator<Item = SampledRequest>) -> Self {
        let mut sample = Self::default();
        for (key, weight, write) in requests {
            let kind = if write { Access::Write } else { Access::Read };
            sample.record(&key, weight, kind);
        }
        sample
    }

    /// Sampled requests.
    pub fn len(&self) -> usize {
        self.recent.len()
    }

    /// `true` before any request.
    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }

    /// The sample restricted to keys `>= at` (`right`) or `< at`.
    pub fn side(&self, at: &[u8], right: bool) -> KeySample {
        KeySample {
            recent: self
                .recent
                .iter()
                .filter(|s| (s.key.as_slice() >= at) == right)
                .cloned()
                .collect(),
        }
    }

    /// Share of the sampled weight on keys `>= at`.
    pub fn share_from(&self, at: &[u8]) -> f64 {
        let total: f64 = self.recent.iter().map(|s| s.weight).sum();
        if total <= 0.0 {
            return 0.0;
        }
        let right: f64 = self
            .recent
            .iter()
            .filter(|s| s.key.as_slice() >= at)
            .map(|s| s.weight)
            .sum();
        right / total
    }

    /// Whether the written keys arrive in increasing order (an append stream). Reads are left
    /// out: reads of fresh keys would blur the pattern.
    pub fn is_sequential(&self) -> bool {
        let writes: Vec<&[u8]> = self.written().collect();
        if writes.len() < 16 {
            return false;
        }
        let rising = writes.windows(2).filter(|w| w[1] > w[0]).count();
        rising as f64 >= SEQUENTIAL_SHARE * (writes.len() - 1) as f64
    }

    fn written(&self) -> impl Iterator<Item = &[u8]> {
        self.recent
            .iter()
            .filter(|s| s.write)
            .map(|s| s.key.as_slice())
    }

    /// A key strictly after `start` that divides the sampled load about evenly, or `None` when no
    /// cut leaves [`MIN_LIGHTER_SHARE`] on both sides (one hot key).
    ///
    /// An append stream is cut just past its newest key: no cut divides future appends, so the
    /// partition that keeps taking them starts empty (cheap to move to another leader) while
    /// everything already written, and read, stays behind.
    pub fn split_key(&self, start: &[u8]) -> Option<Vec<u8>> {
        if self.is_sequential() {
            let newest = self.written().max()?;
            let at = super::keys::after(newest);
            return (at.as_slice() > start).then_some(at);
        }
        let mut weighted: Vec<(&[u8], f64)> = self
            .recent
            .iter()
            .map(|s| (s.key.as_slice(), s.weight))
            .collect();
        weighted.sort_by(|a, b| a.0.cmp(b.0));
        let total: f64 = weighted.iter().map(|(_, w)| w).sum();
        if total <= 0.0 {
            return None;
        }
        // Each distinct key is a candidate cut (the cut puts that key on the right); take the one
        // whose left share is closest to half.
        let mut best: Option<(&[u8], f64)> = None;
        let mut left = 0.0;
        let mut i = 0;
        while i < weighted.len() {
            let key = weighted[i].0;
            if key > start {
                let share = left / total;
                let lighter = share.min(1.0 - share);
                if best.is_none_or(|(_, b)| lighter > b) {
                    best = Some((key, lighter));
                }
            }
            while i < weighted.len() && weighted[i].0 == key {
                left += weighted[i].1;
                i += 1;
            }
        }
        best.filter(|(_, lighter)| *lighter >= MIN_LIGHTER_SHARE)
            .map(|(k, _)| k.to_vec())
    }
}

/// Reads a follower served since its last report to the leader: a uniform sample (reservoir) of
/// their keys and their count, so a report stays small whatever the read rate.
#[derive(Debug, Clone)]
pub struct ReadOutbox {
    sample: Vec<Vec<u8>>,
    count: u64,
    rng: u64,
}

/// Keys a follower's read report carries at most.
pub const REPORT_SAMPLES: usize = 128;

impl Default for ReadOutbox {
    fn default() -> Self {
        Self {
            sample: Vec::new(),
            count: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }
}

impl ReadOutbox {
    /// Notes one read of `key`.
    pub fn record(&mut self, key: &[u8]) {
        self.count += 1;
        if self.sample.len() < REPORT_SAMPLES {
            self.sample.push(key.to_vec());
            return;
        }
        // xorshift64: deterministic, no global RNG.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let slot = self.rng % self.count;
        if let Some(s) = self.sample.get_mut(slot as usize) {
            *s = key.to_vec();
        }
    }

    /// The sampled keys, each standing for an equal share of the reads, and an empty outbox.
    pub fn take(&mut self) -> Vec<(Vec<u8>, f64)> {
        let weight = self.count as f64 / self.sample.len().max(1) as f64;
        self.count = 0;
        std::mem::take(&mut self.sample)
            .into_iter()
            .map(|k| (k, weight))
            .collect()
    }
}

/// What one partition's leader measures.
#[derive(Debug, Clone)]
pub struct RangeLoad {
    /// Reads (GET, HEAD, LIST) per second, decayed.
    pub reads: DecayedRate,
    /// Committed writes per second, decayed.
    pub writes: DecayedRate,
    /// Recent keys, reads and writes alike.
    pub sample: KeySample,
}

/// Kind of a request, for [`RangeLoad::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// GET, HEAD, LIST.
    Read,
    /// A committed write.
    Write,
}

impl RangeLoad {
    /// No load yet, with rates of this half-life.
    pub fn new(half_life_ms: u64) -> Self {
        Self {
            reads: DecayedRate::new(half_life_ms),
            writes: DecayedRate::new(half_life_ms),
            sample: KeySample::default(),
        }
    }

    /// Counts `weight` requests of `kind` for `key` at `now_ms`.
    pub fn record(&mut self, key: &[u8], kind: Access, now_ms: u64, weight: f64) {
        match kind {
            Access::Read => self.reads.record(now_ms, weight),
            Access::Write => self.writes.record(now_ms, weight),
        }
        self.sample.record(key, weight, kind);
    }

    /// The two halves of a split at `at`, each with its share of the rates and its sampled keys.
    pub fn split(&self, at: &[u8]) -> (RangeLoad, RangeLoad) {
        let right_share = self.sample.share_from(at);
        let mut left = self.clone();
        let mut right = self.clone();
        for (rate, share) in [
            (&mut left.reads, 1.0 - right_share),
            (&mut left.writes, 1.0 - right_share),
            (&mut right.reads, right_share),
            (&mut right.writes, right_share),
        ] {
            rate.scale(share);
        }
        left.sample = self.sample.side(at, false);
        right.sample = self.sample.side(at, true);
        (left, right)
    }

    /// The load of two neighbours joined.
    pub fn merged(&self, right: &RangeLoad) -> RangeLoad {
        let mut joined = self.clone();
        joined.reads.acc += right.reads.acc * decay_between(&right.reads, &self.reads);
        joined.writes.acc += right.writes.acc * decay_between(&right.writes, &self.writes);
        for s in &right.sample.recent {
            if joined.sample.recent.len() == SAMPLE_SIZE {
                joined.sample.recent.pop_front();
            }
            joined.sample.recent.push_back(s.clone());
        }
        joined
    }
}

/// The factor bringing `from`'s accumulator to `to`'s time.
fn decay_between(from: &DecayedRate, to: &DecayedRate) -> f64 {
    if to.last_ms > from.last_ms {
        (-((to.last_ms - from.last_ms) as f64) / from.tau_ms).exp()
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_rate_is_measured_and_a_stopped_one_fades() {
        let mut r = DecayedRate::new(10_000);
        // 100 events per second for 100 s (ten half-lives).
        for ms in (0..100_000).step_by(10) {
            r.record(ms, 1.0);
        }
        let measured = r.per_second(100_000);
        assert!((measured - 100.0).abs() < 2.0, "{measured}");
        // One half-life of silence halves it.
        let later = r.per_second(110_000);
        assert!((later - measured / 2.0).abs() < 1.0, "{later}");
    }

    fn key(i: u32) -> Vec<u8> {
        format!("Ob\0k{i:06}").into_bytes()
    }

    #[test]
    fn a_uniform_load_is_cut_near_its_middle() {
        let mut s = KeySample::default();
        // Shuffled, so not an append stream.
        for i in 0..SAMPLE_SIZE as u32 {
            s.record(&key((i * 7919) % 1000), 1.0, Access::Read);
        }
        assert!(!s.is_sequential());
        let at = s.split_key(b"O").unwrap();
        let share = s.share_from(&at);
        assert!((share - 0.5).abs() < 0.05, "{share}");
    }

    #[test]
    fn the_cut_follows_the_load_not_the_keys() {
        let mut s = KeySample::default();
        // 3 hot keys carry 3/4 of the load; 400 cold keys the rest.
        for i in 0..SAMPLE_SIZE as u32 {
            let k = if i % 4 == 3 {
                key(1000 + (i * 37) % 400)
            } else {
                key(10 + (i % 3) * 100)
            };
            s.record(&k, 1.0, Access::Read);
        }
        let at = s.split_key(b"O").unwrap();
        let share = s.share_from(&at);
        assert!((MIN_LIGHTER_SHARE..=1.0 - MIN_LIGHTER_SHARE).contains(&share));
        // Half the load is among the 3 hot keys, so the cut is among them, far from the middle of
        // the key range (the cold keys).
        assert!(at <= key(210), "{:?}", String::from_utf8_lossy(&at));
    }

    #[test]
    fn one_hot_key_cannot_be_split() {
        let mut s = KeySample::default();
        for i in 0..SAMPLE_SIZE as u32 {
            let k = if i % 10 == 0 { key(i) } else { key(500) };
            s.record(&k, 1.0, Access::Read);
        }
        assert_eq!(s.split_key(b"O"), None);
    }

    #[test]
    fn an_append_stream_is_cut_past_its_newest_key() {
        let mut s = KeySample::default();
        for i in 0..2000 {
            s.record(&key(i), 1.0, Access::Write);
            // Reads of the freshest keys, mixed in, do not hide the append stream.
            s.record(&key(i.saturating_sub(3)), 1.0, Access::Read);
        }
        assert!(s.is_sequential());
        let at = s.split_key(b"O").unwrap();
        assert!(at > key(1999) && at < key(2000));
        // Sequential reads alone are no append stream (nothing lands past the newest key).
        let mut reads = KeySample::default();
        for i in 0..2000 {
            reads.record(&key(i), 1.0, Access::Read);
        }
        assert!(!reads.is_sequential());
    }

    #[test]
    fn a_read_report_stands_for_every_read_in_a_bounded_sample() {
        let mut out = ReadOutbox::default();
        for i in 0..10_000u32 {
            // Three quarters of the reads on key 1.
            out.record(&key(if i % 4 == 0 { 2 } else { 1 }));
        }
        let report = out.take();
        assert_eq!(report.len(), REPORT_SAMPLES);
        let total: f64 = report.iter().map(|(_, w)| w).sum();
        assert!((total - 10_000.0).abs() < 1e-6);
        let hot = report.iter().filter(|(k, _)| *k == key(1)).count() as f64;
        assert!((hot / REPORT_SAMPLES as f64 - 0.75).abs() < 0.15, "{hot}");
        assert!(out.take().is_empty());
    }

    #[test]
    fn a_split_hands_each_half_its_share_and_a_merge_joins_them() {
        let mut load = RangeLoad::new(10_000);
        for i in 0..400u32 {
            let k = if i % 4 == 0 { key(900) } else { key(100) };
            load.record(&k, Access::Write, 1000 + u64::from(i), 1.0);
        }
        let total = load.writes.per_second(2000);
        let (mut left, mut right) = load.split(&key(500));
        let (l, r) = (left.writes.per_second(2000), right.writes.per_second(2000));
        assert!((l - 0.75 * total).abs() < 1e-6 && (r - 0.25 * total).abs() < 1e-6);
        assert_eq!(left.sample.len() + right.sample.len(), 400);
        let mut joined = left.merged(&right);
        assert!((joined.writes.per_second(2000) - total).abs() < 1e-6);
    }
}
