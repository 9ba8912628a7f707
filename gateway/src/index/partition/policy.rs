//! When to split and merge: a [`LoadBook`] holds each partition's measured load next to the
//! partition map and turns it into at most one [`Action`] per tick. Pure (time is an argument), so
//! the gateway and the scaling simulation (`cairn-scale-sim`) run the same decisions.

use std::collections::HashMap;

use serde::Serialize;

use super::load::{Access, DecayedRate, KeySample, RangeLoad, SampledRequest};
use super::{Partition, PartitionId, PartitionMap};

/// Thresholds of load-based splitting and merging.
#[derive(Debug, Clone)]
pub struct SplitPolicy {
    /// Split a partition taking more committed writes per second than this (S3 documents about
    /// 3,500 writes/s per prefix partition).
    pub write_threshold: f64,
    /// Split a partition serving more reads per second than this (S3: about 5,500).
    pub read_threshold: f64,
    /// Split a partition holding more bytes than this (approximate, on disk).
    pub size_limit: u64,
    /// Neighbours both below this share of both thresholds are cold.
    pub merge_share: f64,
    /// Neighbours merge after staying cold this long.
    pub quiet_ms: u64,
    /// A partition just split or merged is left alone this long, so its rates settle; a
    /// partition k times over a threshold waits only 1/k of it (each split halves its load, so a
    /// steep overload is divided in a few quick rounds); for an append stream only its read overload
    /// counts, as a cut cannot divide appends.
    pub cooldown_ms: u64,
    /// Half-life of the measured rates.
    pub half_life_ms: u64,
    /// Sampled requests needed before a load split.
    pub min_samples: usize,
}

impl SplitPolicy {
    /// How far `s` is past the split thresholds: the larger of its write and read rates over
    /// their thresholds (1.0: at a threshold).
    pub fn pressure(&self, s: &PartitionStats) -> f64 {
        (s.writes_per_second / self.write_threshold).max(s.reads_per_second / self.read_threshold)
    }
}

impl Default for SplitPolicy {
    fn default() -> Self {
        Self {
            write_threshold: 3500.0,
            read_threshold: 5500.0,
            size_limit: 512 << 20,
            merge_share: 0.1,
            quiet_ms: 10 * 60 * 1000,
            cooldown_ms: 30 * 1000,
            half_life_ms: 10 * 1000,
            min_samples: 64,
        }
    }
}

/// A change of the partition map the policy asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Cut partition `id` at `at` (load: the sampled keys chose `at`).
    Split { id: PartitionId, at: Vec<u8> },
    /// Cut partition `id` in the middle of its keys (it outgrew the size limit).
    SplitBySize { id: PartitionId },
    /// Join partition `left` with its right neighbour.
    Merge { left: PartitionId },
}

/// One partition's range and measured load, for the admin API and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionStats {
    /// The partition.
    pub id: PartitionId,
    /// Reads per second (decayed): this gateway's own, plus (on the leader) those the other
    /// gateways report every second.
    pub reads_per_second: f64,
    /// Committed writes per second (decayed), counted as applied, so every replica sees them all.
    pub writes_per_second: f64,
    /// Requests in the key sample.
    pub sampled_keys: usize,
    /// Approximate bytes on disk (0 until flushed).
    pub approximate_bytes: u64,
}

#[derive(Debug, Clone)]
struct Tracked {
    load: RangeLoad,
    epoch: u64,
    /// Last split or merge (or when this book first saw the partition).
    changed_ms: u64,
    /// Since when the partition has been cold.
    cold_since_ms: Option<u64>,
    /// What the leader of the partition's group last reported of it, and when: the meta
    /// leader, deciding merges, need not hold a replica of every group nor serve its requests.
    reported: Option<(LeaderReport, u64)>,
}

/// A partition's size and load as the leader of its group measured them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LeaderReport {
    /// Approximate bytes on disk.
    pub bytes: u64,
    /// Reads per second (decayed).
    pub reads_per_second: f64,
    /// Writes per second (decayed).
    pub writes_per_second: f64,
}

/// How long a reported size counts (leaders report every few seconds).
pub const REPORTED_SIZE_TTL_MS: u64 = 60_000;

/// How long reported rates count: a few reports (every 5 s). A partition whose leader stopped
/// reporting (it died, or leads no more) falls back on what this gateway measures itself.
pub const REPORTED_RATE_TTL_MS: u64 = 15_000;

/// A partition's load as measured on the gateway that split it off, handed to the gateway
/// chosen to lead it, so that gateway decides its next split from the load so far instead of
/// measuring from nothing (rates are per second: the gateways' load clocks differ).
#[derive(Debug, Clone, PartialEq)]
pub struct HandedLoad {
    /// Reads per second (decayed) when handed over.
    pub reads_per_second: f64,
    /// Writes per second (decayed) when handed over.
    pub writes_per_second: f64,
    /// The sampled requests, oldest first.
    pub sample: Vec<SampledRequest>,
}

/// Loads handed over for partitions this book's map does not hold yet, kept at most.
const PENDING_HANDOVERS: usize = 16;

/// Each partition's load next to the map it was measured against.
#[derive(Debug, Clone)]
pub struct LoadBook {
    policy: SplitPolicy,
    map: PartitionMap,
    ranges: HashMap<PartitionId, Tracked>,
    /// Loads handed over for partitions (at an epoch) not in the map yet: a new leader may hear
    /// of its partition before it reads the map that has it.
    pending: Vec<(PartitionId, u64, HandedLoad)>,
}

impl LoadBook {
    /// A book for `map` with no load measured yet.
    pub fn new(policy: SplitPolicy, map: PartitionMap, now_ms: u64) -> Self {
        let mut book = Self {
            policy,
            map: PartitionMap::initial(),
            ranges: HashMap::new(),
            pending: Vec::new(),
        };
        book.set_map(map, now_ms);
        book
    }

    /// The policy.
    pub fn policy(&self) -> &SplitPolicy {
        &self.policy
    }

    /// The map the loads are measured against.
    pub fn map(&self) -> &PartitionMap {
        &self.map
    }

    fn fresh(&self, epoch: u64, now_ms: u64) -> Tracked {
        Tracked {
            load: RangeLoad::new(self.policy.half_life_ms),
            epoch,
            changed_ms: now_ms,
            cold_since_ms: None,
            reported: None,
        }
    }

    /// Notes what the leader of partition `id`'s group measured of it at `epoch`. A report
    /// made against another epoch (before a split or merge of it) is ignored.
    pub fn reported(&mut self, id: PartitionId, epoch: u64, report: LeaderReport, now_ms: u64) {
        if let Some(t) = self.ranges.get_mut(&id).filter(|t| t.epoch == epoch) {
            t.reported = Some((report, now_ms));
        }
    }

    /// Adopts a newer map (one this book did not make, e.g. committed by another leader): ranges
    /// that are unchanged keep their load; changed ones start afresh.
    pub fn set_map(&mut self, map: PartitionMap, now_ms: u64) {
        if map.version < self.map.version && !self.ranges.is_empty() {
            return;
        }
        let mut ranges = HashMap::new();
        for p in &map.partitions {
            let kept = self.ranges.remove(&p.id).filter(|t| t.epoch == p.epoch);
            ranges.insert(p.id, kept.unwrap_or_else(|| self.fresh(p.epoch, now_ms)));
        }
        self.ranges = ranges;
        self.map = map;
        // Handed-over loads of partitions now in the map are adopted (or, at another epoch,
        // dropped); the others wait.
        for (id, epoch, load) in std::mem::take(&mut self.pending) {
            match self.ranges.get(&id).map(|t| t.epoch) {
                Some(e) if e == epoch => self.adopt(id, load, now_ms),
                Some(_) => {}
                None => self.pending.push((id, epoch, load)),
            }
        }
    }

    /// What this book measured of partition `id` (at `epoch`), to hand to its new leader;
    /// `None` if nothing was sampled.
    pub fn handover(&mut self, id: PartitionId, epoch: u64, now_ms: u64) -> Option<HandedLoad> {
        let t = self.ranges.get_mut(&id).filter(|t| t.epoch == epoch)?;
        if t.load.sample.is_empty() {
            return None;
        }
        Some(HandedLoad {
            reads_per_second: t.load.reads.per_second(now_ms),
            writes_per_second: t.load.writes.per_second(now_ms),
            sample: t.load.sample.requests(),
        })
    }

    /// Adopts the load of partition `id` at `epoch` measured on another gateway (which split
    /// it off and chose this one to lead it), added to what this book measured itself; kept
    /// until the map has the partition if it does not yet.
    pub fn handed_over(&mut self, id: PartitionId, epoch: u64, load: HandedLoad, now_ms: u64) {
        match self.ranges.get(&id).map(|t| t.epoch) {
            Some(e) if e == epoch => self.adopt(id, load, now_ms),
            Some(e) if e > epoch => {}
            _ => {
                if self.pending.len() == PENDING_HANDOVERS {
                    self.pending.remove(0);
                }
                self.pending.push((id, epoch, load));
            }
        }
    }

    fn adopt(&mut self, id: PartitionId, load: HandedLoad, now_ms: u64) {
        let half_life = self.policy.half_life_ms;
        let Some(t) = self.ranges.get_mut(&id) else {
            return;
        };
        // The larger of each rate, not their sum: a leader handing over counted the samples
        // this gateway reported to it, so the handed rates already hold this gateway's share.
        let reads = load.reads_per_second.max(t.load.reads.per_second(now_ms));
        let writes = load.writes_per_second.max(t.load.writes.per_second(now_ms));
        // The handed history first, then what was measured here.
        let sample =
            KeySample::from_requests(load.sample.into_iter().chain(t.load.sample.requests()));
        t.load = RangeLoad {
            reads: DecayedRate::at_rate(half_life, reads, now_ms),
            writes: DecayedRate::at_rate(half_life, writes, now_ms),
            sample,
        };
    }

    /// Counts `weight` requests of `kind` for index key `key`.
    pub fn record(&mut self, key: &[u8], kind: Access, now_ms: u64, weight: f64) {
        let id = self.map.lookup(key).id;
        if let Some(t) = self.ranges.get_mut(&id) {
            t.load.record(key, kind, now_ms, weight);
        }
    }

    /// Applies a split this book's [`decide`](Self::decide) asked for and that was committed as
    /// `next`: each half inherits its share of the load.
    pub fn split_done(&mut self, id: PartitionId, at: &[u8], next: PartitionMap, now_ms: u64) {
        let halves = self.ranges.get(&id).map(|t| t.load.split(at));
        self.set_map(next, now_ms);
        if let Some((left, right)) = halves {
            let right_id = self.map.lookup(at).id;
            for (pid, load) in [(id, left), (right_id, right)] {
                if let Some(t) = self.ranges.get_mut(&pid) {
                    t.load = load;
                }
            }
        }
    }

    /// Applies a committed merge of `left` and its right neighbour (`next` is the new map).
    pub fn merge_done(&mut self, left: PartitionId, next: PartitionMap, now_ms: u64) {
        let right = self.map.right_of(left).and_then(|p| self.ranges.get(&p.id));
        // The joined range has been cold since both halves were, so merges cascade one
        // cooldown apart instead of one quiet period apart.
        let joined = self.ranges.get(&left).zip(right).map(|(l, r)| {
            let cold_since = l.cold_since_ms.zip(r.cold_since_ms).map(|(a, b)| a.max(b));
            (l.load.merged(&r.load), cold_since)
        });
        self.set_map(next, now_ms);
        if let (Some((load, cold_since)), Some(t)) = (joined, self.ranges.get_mut(&left)) {
            t.load = load;
            t.cold_since_ms = cold_since;
        }
    }

    /// The measured load of every partition: each figure the larger of what was measured here
    /// (`size_of` for sizes) and a fresh report of the partition's leader.
    pub fn stats(
        &mut self,
        now_ms: u64,
        size_of: &dyn Fn(&Partition) -> u64,
    ) -> Vec<PartitionStats> {
        let mut out = Vec::with_capacity(self.map.partitions.len());
        for p in &self.map.partitions {
            let Some(t) = self.ranges.get_mut(&p.id) else {
                continue;
            };
            let fresh = |ttl: u64| {
                t.reported
                    .filter(|(_, at)| now_ms.saturating_sub(*at) < ttl)
                    .map(|(r, _)| r)
            };
            let (sized, rated) = (fresh(REPORTED_SIZE_TTL_MS), fresh(REPORTED_RATE_TTL_MS));
            let rated = rated.unwrap_or_default();
            out.push(PartitionStats {
                id: p.id,
                reads_per_second: t.load.reads.per_second(now_ms).max(rated.reads_per_second),
                writes_per_second: t
                    .load
                    .writes
                    .per_second(now_ms)
                    .max(rated.writes_per_second),
                sampled_keys: t.load.sample.len(),
                approximate_bytes: sized.map_or(0, |r| r.bytes).max(size_of(p)),
            });
        }
        out
    }

    /// The split or merge to make now, if any: the most overloaded partition past its cooldown is
    /// split; otherwise two neighbours that have been cold for the quiet period, and unchanged for
    /// a cooldown, are merged.
    pub fn decide(&mut self, now_ms: u64, size_of: &dyn Fn(&Partition) -> u64) -> Option<Action> {
        self.decide_in(now_ms, size_of, &|_| true, true)
    }

    /// As [`decide`](Self::decide), for the partitions `splits` picks (in a fleet, those whose
    /// group this gateway leads: their leader measures them whole, and each leader decides
    /// its own, so splits do not queue on one gateway), and merges only if `merges` (the meta
    /// leader, which hears every leader's figures: a merge joins two groups).
    pub fn decide_in(
        &mut self,
        now_ms: u64,
        size_of: &dyn Fn(&Partition) -> u64,
        splits: &dyn Fn(&Partition) -> bool,
        merges: bool,
    ) -> Option<Action> {
        let policy = self.policy.clone();
        let stats = self.stats(now_ms, size_of);
        let mut best: Option<(f64, Action)> = None;
        let mut cold = Vec::with_capacity(stats.len());
        for (p, s) in self.map.partitions.iter().zip(&stats) {
            let t = self.ranges.get_mut(&p.id).expect("tracked");
            let pressure = policy.pressure(s);
            let is_cold = !p.is_meta() && pressure < policy.merge_share;
            t.cold_since_ms = if is_cold {
                Some(t.cold_since_ms.unwrap_or(now_ms))
            } else {
                None
            };
            let since_change = now_ms.saturating_sub(t.changed_ms);
            let quiet = is_cold
                && t.cold_since_ms
                    .is_some_and(|c| now_ms.saturating_sub(c) >= policy.quiet_ms)
                && since_change >= policy.cooldown_ms;
            cold.push((quiet, s.approximate_bytes));
            // A split halves an ordinary load, so a steep overload may split again sooner. An
            // append stream's cut divides only its reads (the writes stay at the tail), so only
            // its read overload shortens the wait.
            let divisible = if t.load.sample.is_sequential() {
                s.reads_per_second / policy.read_threshold
            } else {
                pressure
            };
            let cooldown = policy.cooldown_ms as f64 / divisible.max(1.0);
            if p.is_meta() || !splits(p) || (since_change as f64) < cooldown {
                continue;
            }
            let action = if pressure > 1.0 && t.load.sample.len() >= policy.min_samples {
                t.load
                    .sample
                    .split_key(&p.start)
                    .filter(|at| p.contains(at))
                    .map(|at| (pressure, Action::Split { id: p.id, at }))
            } else if s.approximate_bytes > policy.size_limit {
                Some((1.0, Action::SplitBySize { id: p.id }))
            } else {
                None
            };
            if let Some((score, action)) = action
                && best.as_ref().is_none_or(|(b, _)| score > *b)
            {
                best = Some((score, action));
            }
        }
        if let Some((_, action)) = best {
            return Some(action);
        }
        if !merges {
            return None;
        }
        self.map
            .partitions
            .windows(2)
            .zip(cold.windows(2))
            .find(|(_, c)| c[0].0 && c[1].0 && c[0].1 + c[1].1 < policy.size_limit / 2)
            .map(|(pair, _)| Action::Merge { left: pair[0].id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::keys;

    fn policy() -> SplitPolicy {
        SplitPolicy {
            write_threshold: 100.0,
            read_threshold: 200.0,
            size_limit: 1 << 30,
            merge_share: 0.1,
            quiet_ms: 60_000,
            cooldown_ms: 5_000,
            half_life_ms: 2_000,
            min_samples: 32,
        }
    }

    fn no_size(_: &Partition) -> u64 {
        0
    }

    /// The `i`th key of a load spread over 10,000 keys, out of key order.
    fn spread(i: u64) -> Vec<u8> {
        keys::object("b", &format!("k{:05}", (i * 7919) % 10_000))
    }

    /// A leader's report of a size alone.
    fn size(bytes: u64) -> LeaderReport {
        LeaderReport {
            bytes,
            ..LeaderReport::default()
        }
    }

    /// Drives `book` with `rate` requests per second for `secs` seconds from `start_ms`, keys from
    /// `key_of(i)`, committing every action it decides; returns the actions.
    fn drive(
        book: &mut LoadBook,
        start_ms: u64,
        secs: u64,
        rate: u64,
        key_of: &dyn Fn(u64) -> Vec<u8>,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut i = 0;
        for s in 0..secs {
            for n in 0..rate {
                let now = start_ms + s * 1000 + n * 1000 / rate;
                book.record(&key_of(i), Access::Write, now, 1.0);
                i += 1;
            }
            let now = start_ms + (s + 1) * 1000;
            if let Some(a) = book.decide(now, &no_size) {
                match &a {
                    Action::Split { id, at } => {
                        let next = book.map().split(*id, at).unwrap();
                        book.split_done(*id, at, next, now);
                    }
                    Action::Merge { left } => {
                        let next = book.map().merge(*left).unwrap();
                        book.merge_done(*left, next, now);
                    }
                    Action::SplitBySize { .. } => unreachable!(),
                }
                book.map().validate().unwrap();
                actions.push(a);
            }
        }
        actions
    }

    #[test]
    fn a_uniform_overload_splits_until_every_partition_is_under_the_threshold() {
        let mut book = LoadBook::new(policy(), PartitionMap::initial(), 0);
        // 350 writes/s spread over 10,000 keys: 3.5x the threshold.
        let actions = drive(&mut book, 0, 120, 350, &spread);
        assert!(actions.len() >= 2, "{actions:?}");
        let stats = book.stats(120_000, &no_size);
        let max = stats
            .iter()
            .map(|s| s.writes_per_second)
            .fold(0.0, f64::max);
        assert!(max < 100.0, "{stats:?}");
    }

    #[test]
    fn cold_neighbours_merge_after_the_quiet_period() {
        let mut book = LoadBook::new(policy(), PartitionMap::initial(), 0);
        drive(&mut book, 0, 60, 350, &spread);
        let split = book.map().partitions.len();
        assert!(split > 2);
        // Then a trickle: everything merges back into one object partition, the pairs one
        // cooldown apart once the quiet period has passed.
        let actions = drive(&mut book, 60_000, 90 + (split as u64) * 5, 2, &spread);
        assert!(actions.iter().all(|a| matches!(a, Action::Merge { .. })));
        assert_eq!(book.map().partitions.len(), 2, "{actions:?}");
    }

    #[test]
    fn nothing_happens_below_the_thresholds() {
        let mut book = LoadBook::new(policy(), PartitionMap::initial(), 0);
        let spread = |i: u64| keys::object("b", &format!("k{i:05}"));
        assert!(drive(&mut book, 0, 60, 80, &spread).is_empty());
    }

    #[test]
    fn a_big_partition_splits_by_size() {
        let mut book = LoadBook::new(policy(), PartitionMap::initial(), 0);
        let big = |p: &Partition| if p.is_meta() { 0 } else { 2 << 30 };
        assert_eq!(
            book.decide(10_000, &big),
            Some(Action::SplitBySize { id: PartitionId(2) })
        );
    }

    #[test]
    fn a_size_reported_by_the_groups_leader_counts_for_its_epoch_until_it_is_old() {
        let mut book = LoadBook::new(policy(), PartitionMap::initial(), 0);
        let id = PartitionId(2);
        let epoch = book.map().get(id).unwrap().epoch;
        // Reports made against another epoch (before a split or merge) are ignored.
        book.reported(id, epoch + 1, size(2 << 30), 9_000);
        assert_eq!(book.decide(10_000, &no_size), None);
        book.reported(id, epoch, size(2 << 30), 9_000);
        let stats = book.stats(10_000, &no_size);
        assert_eq!(stats[1].approximate_bytes, 2 << 30);
        assert_eq!(
            book.decide(10_000, &no_size),
            Some(Action::SplitBySize { id })
        );
        // A report stops counting once it is old.
        assert_eq!(book.decide(9_000 + REPORTED_SIZE_TTL_MS, &no_size), None);
        // After the split both halves wait for fresh reports of their own.
        let next = book.map().split(id, &keys::object("b", "m")).unwrap();
        book.split_done(id, &keys::object("b", "m"), next, 10_000);
        assert!(
            book.stats(10_000, &no_size)
                .iter()
                .all(|s| s.approximate_bytes == 0)
        );
    }

    #[test]
    fn reported_sizes_keep_big_cold_neighbours_apart() {
        let mut book = LoadBook::new(policy(), PartitionMap::initial(), 0);
        let next = book
            .map()
            .split(PartitionId(2), &keys::object("b", "m"))
            .unwrap();
        book.set_map(next, 0);
        let quiet = policy().quiet_ms + policy().cooldown_ms;
        let report = |book: &mut LoadBook, now: u64| {
            for p in book
                .map()
                .partitions
                .clone()
                .iter()
                .filter(|p| !p.is_meta())
            {
                book.reported(p.id, p.epoch, size(1 << 29), now);
            }
        };
        // Both cold: seen through `decide` once to start the quiet period, then again after it.
        report(&mut book, 0);
        assert_eq!(book.decide(0, &no_size), None);
        report(&mut book, quiet);
        assert_eq!(book.decide(quiet, &no_size), None, "too big to merge");
        // Without the reports they would merge.
        assert!(matches!(
            book.decide(quiet + REPORTED_SIZE_TTL_MS, &no_size),
            Some(Action::Merge { .. })
        ));
    }

    #[test]
    fn a_map_from_elsewhere_keeps_the_load_of_unchanged_ranges() {
        let mut book = LoadBook::new(policy(), PartitionMap::initial(), 0);
        for i in 0..100 {
            book.record(&keys::object("b", &format!("a{i}")), Access::Read, 500, 1.0);
        }
        let next = book
            .map()
            .split(PartitionId(2), &keys::object("b", "m"))
            .unwrap();
        book.set_map(next, 1000);
        let stats = book.stats(1000, &no_size);
        assert_eq!(stats.len(), 3);
        // The split range's load restarts (its epoch changed); the meta partition's is untouched.
        assert!(stats.iter().all(|s| s.reads_per_second == 0.0));
    }

    #[test]
    fn a_gateway_decides_the_splits_of_the_partitions_it_picks_and_merges_only_if_asked() {
        let mut book = LoadBook::new(policy(), PartitionMap::initial(), 0);
        for i in 0..1000 {
            book.record(&spread(i), Access::Write, 10_000 + i * 2, 1.0);
        }
        let data = PartitionId(2);
        let not_data = |p: &Partition| p.id != data;
        assert_eq!(book.decide_in(12_000, &no_size, &not_data, true), None);
        let split = book.decide_in(12_000, &no_size, &|_| true, false);
        assert!(matches!(split, Some(Action::Split { id, .. }) if id == data));
        // Two cold neighbours: only a book deciding merges joins them.
        let mut book = LoadBook::new(policy(), PartitionMap::initial(), 0);
        let next = book.map().split(data, &keys::object("b", "m")).unwrap();
        book.set_map(next, 0);
        assert_eq!(book.decide_in(0, &no_size, &|_| true, false), None);
        let quiet = policy().quiet_ms + policy().cooldown_ms;
        assert_eq!(book.decide_in(quiet, &no_size, &|_| true, false), None);
        assert!(matches!(
            book.decide_in(quiet, &no_size, &|_| false, true),
            Some(Action::Merge { .. })
        ));
    }

    #[test]
    fn reported_rates_keep_a_partition_served_elsewhere_from_merging_until_they_go_stale() {
        let mut book = LoadBook::new(policy(), PartitionMap::initial(), 0);
        let next = book
            .map()
            .split(PartitionId(2), &keys::object("b", "m"))
            .unwrap();
        book.set_map(next, 0);
        let right = book.map().partitions[2].clone();
        let hot = LeaderReport {
            bytes: 0,
            reads_per_second: 150.0,
            writes_per_second: 20.0,
        };
        // Cold from the start, as far as this gateway serves them.
        assert_eq!(book.decide(0, &no_size), None);
        let quiet = policy().quiet_ms + policy().cooldown_ms;
        let mut now = 0;
        while now < quiet {
            now += 5_000;
            book.reported(right.id, right.epoch, hot, now);
            assert_eq!(book.decide(now, &no_size), None, "merged at {now} ms");
        }
        let stats = book.stats(now, &no_size);
        assert_eq!(stats[2].reads_per_second, 150.0);
        assert_eq!(stats[2].writes_per_second, 20.0);
        // The leader stopped reporting: its figures lapse, and after a quiet period of its
        // own the pair merges.
        now += REPORTED_RATE_TTL_MS;
        assert_eq!(book.stats(now, &no_size)[2].reads_per_second, 0.0);
        assert_eq!(book.decide(now, &no_size), None);
        assert!(matches!(
            book.decide(now + quiet, &no_size),
            Some(Action::Merge { .. })
        ));
    }

    #[test]
    fn a_handed_over_load_is_adopted_at_its_epoch_once_the_map_has_the_partition() {
        // The splitting gateway measured the load, split, and hands the right half over.
        let mut here = LoadBook::new(policy(), PartitionMap::initial(), 0);
        for i in 0..400 {
            here.record(&spread(i), Access::Write, 1_000 + i * 5, 1.0);
        }
        let at = keys::object("b", "k05000");
        let next = here.map().split(PartitionId(2), &at).unwrap();
        here.split_done(PartitionId(2), &at, next.clone(), 3_000);
        let right = next.lookup(&at).clone();
        let load = here
            .handover(right.id, right.epoch, 3_000)
            .expect("measured");
        assert!(load.writes_per_second > 10.0, "{load:?}");
        assert!(here.handover(right.id, right.epoch + 1, 3_000).is_none());

        // The new leader (its own clock) has not read the new map yet: the load waits for it.
        let mut there = LoadBook::new(policy(), PartitionMap::initial(), 0);
        there.handed_over(right.id, right.epoch, load.clone(), 50_000);
        assert!(
            there
                .stats(50_000, &no_size)
                .iter()
                .all(|s| s.writes_per_second == 0.0)
        );
        there.set_map(next.clone(), 50_000);
        let adopted = there.stats(50_000, &no_size);
        let r = adopted.iter().find(|s| s.id == right.id).unwrap();
        assert!(
            (r.writes_per_second - load.writes_per_second).abs() < 1e-6,
            "{r:?}"
        );
        assert_eq!(r.sampled_keys, load.sample.len());

        // A gateway that served part of the load itself (and reported it to the one handing
        // over) takes the larger rate, not the sum.
        let mut mine = LoadBook::new(policy(), next.clone(), 0);
        for i in 0..50 {
            mine.record(&spread(i), Access::Write, 49_000 + i * 20, 1.0);
        }
        let own = mine.stats(50_000, &no_size)[2].writes_per_second;
        assert!(own > 0.0 && own < load.writes_per_second, "{own}");
        mine.handed_over(right.id, right.epoch, load.clone(), 50_000);
        let both = mine.stats(50_000, &no_size)[2].writes_per_second;
        assert!((both - load.writes_per_second).abs() < 1e-6, "{both}");

        // A load handed over for another epoch of the range is dropped.
        let mut stale = LoadBook::new(policy(), next, 0);
        stale.handed_over(right.id, right.epoch - 1, load, 1_000);
        assert!(
            stale
                .stats(1_000, &no_size)
                .iter()
                .all(|s| s.sampled_keys == 0)
        );
    }
}
