//! A deterministic, in-process simulation of the index's load-based partitioning at fleet scale
//! (`cairn-scale-sim` prints its table; `docs/scaling.md` discusses it).
//!
//! The split/merge policy is the gateway's own ([`LoadBook`], [`SplitPolicy`]), driven with a
//! simulated clock. Each simulated second (one tick) draws a bounded number of requests from a
//! workload, each carrying the weight `offered / samples`, and records them into one [`LoadBook`]
//! (the union of what every partition leader measures about its own partitions). Then `decide` is
//! called until it has nothing more to do (at most one action per gateway per tick) and every
//! split and merge is applied to the map.
//!
//! Leadership is modelled as designed, not as built: every partition has a leader gateway; on a
//! split the right half goes to the least-loaded gateway (by the summed load of the partitions it
//! leads), and on a merge the left partition's leader keeps the joined range. (Today the product
//! replicates the whole index as one Raft group, so every partition has the same leader.)
//!
//! Everything is seeded: the same configuration gives the same report, bit for bit.

use std::collections::HashMap;
use std::fmt::Write as _;

use cairn_gateway::index::keys;
use cairn_gateway::index::partition::load::Access;
use cairn_gateway::index::partition::policy::{Action, LoadBook, PartitionStats, SplitPolicy};
use cairn_gateway::index::partition::{MapError, Partition, PartitionId, PartitionMap};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The bucket every simulated key lives in.
pub const BUCKET: &str = "sim";

/// Distinct keys of the Zipf workload.
pub const ZIPF_KEYS: u64 = 10_000_000;

/// Exponent of the Zipf workload.
pub const ZIPF_EXPONENT: f64 = 1.1;

/// Share of the hot-prefix workload's requests under `hot/`.
pub const HOT_SHARE: f64 = 0.8;

/// Reads of the sequential workload fetch a key written at most this long ago.
pub const RECENT_READ_MS: u64 = 10 * 60 * 1000;

/// Which keys the simulated clients ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Workload {
    /// Keys drawn uniformly from 2^64 names (`u/<16 hex>`).
    Uniform,
    /// [`ZIPF_KEYS`] keys with Zipf popularity ([`ZIPF_EXPONENT`]); popularity is unrelated to
    /// key order (`z/<hash of rank>`).
    Zipf,
    /// Writes append strictly increasing timestamps (`logs/2026-11-23T10:00:00.000123`); reads
    /// fetch a key written in the last [`RECENT_READ_MS`].
    Sequential,
    /// [`HOT_SHARE`] of the requests go to `hot/<random 16 hex>`, the rest are uniform.
    HotPrefix,
}

impl Workload {
    /// Every workload, in table order.
    pub const ALL: [Workload; 4] = [
        Workload::Uniform,
        Workload::Zipf,
        Workload::Sequential,
        Workload::HotPrefix,
    ];

    /// The name used on the command line and in the table.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Uniform => "uniform",
            Workload::Zipf => "zipf",
            Workload::Sequential => "sequential",
            Workload::HotPrefix => "hot-prefix",
        }
    }

    /// The workload of this name.
    pub fn from_name(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Zipf-distributed ranks `1..=n` by rejection-inversion (Hörmann and Derflinger, 1996): O(1)
/// memory and time per sample, whatever `n`.
#[derive(Debug, Clone)]
pub struct Zipf {
    n: f64,
    s: f64,
    h_x1: f64,
    h_n: f64,
    s_local: f64,
    harmonic: f64,
}

impl Zipf {
    /// Ranks `1..=n` with probability proportional to `rank^-s` (`s > 0`, `s != 1`).
    pub fn new(n: u64, s: f64) -> Self {
        let nf = n as f64;
        let h_x1 = h_integral(1.5, s) - 1.0;
        let h_n = h_integral(nf + 0.5, s);
        let s_local = 2.0 - h_integral_inverse(h_integral(2.5, s) - h(2.0, s), s);
        // The normalising sum: exact for the first ranks, then the midpoint rule (its error is
        // far below f64 noise this far out).
        let exact = n.min(100_000);
        let mut harmonic: f64 = (1..=exact).map(|k| (k as f64).powf(-s)).sum();
        if n > exact {
            let a = exact as f64 + 0.5;
            harmonic += ((nf + 0.5).powf(1.0 - s) - a.powf(1.0 - s)) / (1.0 - s);
        }
        Self {
            n: nf,
            s,
            h_x1,
            h_n,
            s_local,
            harmonic,
        }
    }

    /// The probability of `rank`.
    pub fn probability(&self, rank: u64) -> f64 {
        (rank as f64).powf(-self.s) / self.harmonic
    }

    /// One rank.
    pub fn sample(&self, rng: &mut impl Rng) -> u64 {
        loop {
            let u = self.h_n + rng.random::<f64>() * (self.h_x1 - self.h_n);
            let x = h_integral_inverse(u, self.s);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.s_local || u >= h_integral(k + 0.5, self.s) - h(k, self.s) {
                return k as u64;
            }
        }
    }
}

fn h(x: f64, s: f64) -> f64 {
    (-s * x.ln()).exp()
}

fn h_integral(x: f64, s: f64) -> f64 {
    let lx = x.ln();
    expm1_over_x((1.0 - s) * lx) * lx
}

fn h_integral_inverse(x: f64, s: f64) -> f64 {
    let t = (x * (1.0 - s)).max(-1.0);
    (ln1p_over_x(t) * x).exp()
}

fn ln1p_over_x(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

fn expm1_over_x(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x))
    }
}

/// A bijective 64-bit mix (the SplitMix64 finalizer): Zipf ranks become names whose order has
/// nothing to do with their popularity.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The Zipf workload's object key of `rank`.
pub fn zipf_key(rank: u64) -> String {
    format!("z/{:016x}", mix64(rank))
}

/// The sequential workload's object key written `us` microseconds after 2026-11-23T10:00:00:
/// strictly increasing in `us` (the day keeps counting past the month's end, which no run
/// reaches).
pub fn timestamp_key(us: u64) -> String {
    let secs = 10 * 3600 + us / 1_000_000;
    let (day, rest) = (23 + secs / 86_400, secs % 86_400);
    format!(
        "logs/2026-11-{day:02}T{:02}:{:02}:{:02}.{:06}",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        us % 1_000_000
    )
}

/// Draws requests of one workload.
#[derive(Debug, Clone)]
struct KeyGen {
    workload: Workload,
    read_share: f64,
    zipf: Option<Zipf>,
}

impl KeyGen {
    fn new(workload: Workload, read_share: f64) -> Self {
        let zipf = (workload == Workload::Zipf).then(|| Zipf::new(ZIPF_KEYS, ZIPF_EXPONENT));
        Self {
            workload,
            read_share,
            zipf,
        }
    }

    /// Request `i` of the `n` drawn in the tick starting at `tick_ms`.
    fn next(&self, rng: &mut StdRng, tick_ms: u64, i: u64, n: u64) -> (String, Access) {
        let kind = if rng.random_bool(self.read_share) {
            Access::Read
        } else {
            Access::Write
        };
        let key = match self.workload {
            Workload::Uniform => format!("u/{:016x}", rng.random::<u64>()),
            Workload::Zipf => zipf_key(self.zipf.as_ref().expect("zipf").sample(rng)),
            Workload::HotPrefix => {
                if rng.random_bool(HOT_SHARE) {
                    format!("hot/{:016x}", rng.random::<u64>())
                } else {
                    format!("u/{:016x}", rng.random::<u64>())
                }
            }
            Workload::Sequential => {
                let now_us = tick_ms * 1000 + i * 1_000_000 / n;
                match kind {
                    Access::Write => timestamp_key(now_us),
                    Access::Read => {
                        let window = now_us.min(RECENT_READ_MS * 1000);
                        timestamp_key(now_us - rng.random_range(0..=window))
                    }
                }
            }
        };
        (key, kind)
    }

    /// The writes and reads per second that no split can divide at `offered` requests per
    /// second: the hottest key's (Zipf), or every append (sequential: they all land on the
    /// newest key). Negligible for the uniform and hot-prefix workloads.
    fn floor(&self, offered: f64) -> (f64, f64) {
        let (w, r) = (offered * (1.0 - self.read_share), offered * self.read_share);
        match (&self.workload, &self.zipf) {
            (Workload::Zipf, Some(z)) => (w * z.probability(1), r * z.probability(1)),
            (Workload::Sequential, _) => (w, 0.0),
            _ => (0.0, 0.0),
        }
    }

    /// How many single keys take more than a threshold on their own at `offered` (the append
    /// point counts as one key).
    fn keys_over(&self, offered: f64, policy: &SplitPolicy) -> u64 {
        let (w, r) = (offered * (1.0 - self.read_share), offered * self.read_share);
        let over = |p: f64| w * p > policy.write_threshold || r * p > policy.read_threshold;
        match (&self.workload, &self.zipf) {
            (Workload::Zipf, Some(z)) => {
                (1..).take_while(|&k| over(z.probability(k))).count() as u64
            }
            (Workload::Sequential, _) => u64::from(w > policy.write_threshold),
            _ => 0,
        }
    }

    /// The index key carrying [`floor`](Self::floor), if one key does.
    fn hottest_key(&self) -> Option<Vec<u8>> {
        (self.workload == Workload::Zipf).then(|| keys::object(BUCKET, &zipf_key(1)))
    }
}

/// One simulation's parameters.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Gateways (each can lead partitions; at most this many map changes per tick).
    pub gateways: usize,
    /// Where the requests go.
    pub workload: Workload,
    /// Share of the requests that are reads (the rest are writes).
    pub read_share: f64,
    /// Most requests drawn per tick (fewer when less is offered: then each weighs 1).
    pub samples_per_tick: u64,
    /// Seed of every random draw.
    pub seed: u64,
    /// Most splits and merges applied per tick; 0 means one per gateway (every leader deciding
    /// for its own partitions). The product today has one decider making at most one per tick.
    pub max_actions_per_tick: usize,
    /// The gateway's split/merge policy.
    pub policy: SplitPolicy,
}

impl SimConfig {
    /// The defaults: 70% reads, at most 10,000 requests drawn per tick, the product's policy.
    pub fn new(gateways: usize, workload: Workload) -> Self {
        Self {
            gateways,
            workload,
            read_share: 0.7,
            samples_per_tick: 10_000,
            seed: 1,
            max_actions_per_tick: 0,
            policy: SplitPolicy::default(),
        }
    }
}

/// What one step of offered load did, measured at its end.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// Simulated gateways.
    pub gateways: usize,
    /// Workload.
    pub workload: Workload,
    /// Offered requests per second.
    pub offered: f64,
    /// Simulated seconds.
    pub seconds: u64,
    /// Partitions at the end (the meta partition included).
    pub partitions: usize,
    /// Splits during the step.
    pub splits: u64,
    /// Splits during its last minute.
    pub splits_last_minute: u64,
    /// Merges during the step.
    pub merges: u64,
    /// Merges during its last minute.
    pub merges_last_minute: u64,
    /// Splits of a partition less than the policy's quiet period after a merge made it.
    pub resplits_after_merge: u64,
    /// Ticks where `decide` still had work when the per-tick cap hit.
    pub capped_ticks: u64,
    /// Most splits and merges applied in one tick.
    pub max_actions_in_a_tick: u64,
    /// Ticks ending with some partition above a threshold as the policy measures it.
    pub seconds_over: u64,
    /// Highest writes per second one partition of the final map served over the step's last
    /// [`SERVED_WINDOW_S`] seconds (or since it was made, if later): the load as it is.
    pub max_writes: f64,
    /// Highest reads per second served likewise.
    pub max_reads: f64,
    /// Partitions of the final map above a threshold by served load.
    pub over_threshold: usize,
    /// Highest writes per second of one partition as the policy measures them at the end
    /// (decayed: lags a change, e.g. the empty right half of an append split).
    pub measured_max_writes: f64,
    /// Highest reads per second of one partition as the policy measures them at the end.
    pub measured_max_reads: f64,
    /// Writes per second no split can divide (one key, or the append point).
    pub floor_writes: f64,
    /// Reads per second no split can divide.
    pub floor_reads: f64,
    /// Keys whose own load is above a threshold (no partition holding one can be under it).
    pub hot_keys_over: u64,
    /// Highest summed load (reads + writes per second) of the partitions one gateway leads.
    pub max_leader: f64,
    /// Measured load over gateways (the load of a perfectly even spread).
    pub mean_leader: f64,
    /// Gateways leading at least one object partition.
    pub leading_gateways: usize,
    /// The map as JSON, in bytes.
    pub map_bytes: usize,
}

/// A map change the simulation could not apply, or a map that stopped covering the keyspace.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// `split` or `merge` refused what `decide` asked for.
    #[error("the map refused {action:?}: {source}")]
    Refused {
        /// What `decide` asked for.
        action: Action,
        /// Why.
        source: MapError,
    },
    /// The map no longer validates.
    #[error("invalid map after {action:?}: {reason}")]
    Invalid {
        /// The last change.
        action: Action,
        /// What `validate` said.
        reason: String,
    },
}

fn no_size(_: &Partition) -> u64 {
    0
}

/// Seconds at the end of a step over which the served load is reported.
pub const SERVED_WINDOW_S: u64 = 10;

/// Writes and reads (weights) one range served during one tick.
type Tally = HashMap<(PartitionId, u64), (f64, f64)>;

/// Writes and reads per second each range of the last tick's map served, averaged over the ticks
/// of `served` the range existed in (unchanged: same id and epoch).
fn served_per_second(served: &[Tally]) -> Vec<(f64, f64)> {
    let Some(last) = served.last() else {
        return Vec::new();
    };
    let mut ranges: Vec<_> = last.keys().copied().collect();
    ranges.sort();
    ranges
        .into_iter()
        .map(|range| {
            let ticks: Vec<_> = served.iter().filter_map(|t| t.get(&range)).collect();
            let n = ticks.len() as f64;
            let (w, r) = ticks
                .iter()
                .fold((0.0, 0.0), |(w, r), (tw, tr)| (w + tw, r + tr));
            (w / n, r / n)
        })
        .collect()
}

/// One running simulation: the map, its load book, the leaders and the clock.
#[derive(Debug, Clone)]
pub struct Simulation {
    config: SimConfig,
    book: LoadBook,
    leaders: HashMap<PartitionId, usize>,
    /// When a merge last made each partition.
    merged_at: HashMap<PartitionId, u64>,
    keys: KeyGen,
    rng: StdRng,
    now_ms: u64,
}

impl Simulation {
    /// A fresh index (the initial map) at time 0: the meta partition led by gateway 0, the one
    /// object partition by gateway 1 (or 0 if alone).
    pub fn new(config: SimConfig) -> Self {
        let map = PartitionMap::initial();
        let mut leaders = HashMap::new();
        for (i, p) in map.partitions.iter().enumerate() {
            leaders.insert(p.id, i % config.gateways.max(1));
        }
        let seed = config.seed
            ^ (config.gateways as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ mix64(config.workload as u64 + 1);
        Self {
            book: LoadBook::new(config.policy.clone(), map, 0),
            leaders,
            merged_at: HashMap::new(),
            keys: KeyGen::new(config.workload, config.read_share),
            rng: StdRng::seed_from_u64(seed),
            now_ms: 0,
            config,
        }
    }

    /// The current map.
    pub fn map(&self) -> &PartitionMap {
        self.book.map()
    }

    /// The simulated clock (ms).
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// The gateway leading partition `id`.
    pub fn leader(&self, id: PartitionId) -> Option<usize> {
        self.leaders.get(&id).copied()
    }

    /// Every partition with its measured load now.
    pub fn partition_stats(&mut self) -> Vec<(Partition, PartitionStats)> {
        let stats = self.book.stats(self.now_ms, &no_size);
        let by_id: HashMap<_, _> = stats.into_iter().map(|s| (s.id, s)).collect();
        self.book
            .map()
            .partitions
            .iter()
            .filter_map(|p| by_id.get(&p.id).map(|s| (p.clone(), s.clone())))
            .collect()
    }

    /// The index key of the hottest single key of the workload, if one key is meant to be hot.
    pub fn hottest_key(&self) -> Option<Vec<u8>> {
        self.keys.hottest_key()
    }

    /// Writes and reads per second on the hottest key (or append point) at `offered`.
    pub fn floor(&self, offered: f64) -> (f64, f64) {
        self.keys.floor(offered)
    }

    /// Each gateway's summed measured load as leader (reads + writes per second).
    fn gateway_loads(&mut self) -> Vec<f64> {
        let mut loads = vec![0.0; self.config.gateways.max(1)];
        for s in self.book.stats(self.now_ms, &no_size) {
            if let Some(&g) = self.leaders.get(&s.id) {
                loads[g] += s.reads_per_second + s.writes_per_second;
            }
        }
        loads
    }

    /// Runs `seconds` ticks at `offered` requests per second.
    pub fn run_step(&mut self, offered: f64, seconds: u64) -> Result<StepReport, SimError> {
        let samples = (offered.round() as u64).clamp(1, self.config.samples_per_tick.max(1));
        let weight = offered / samples as f64;
        let last_minute_from = seconds.saturating_sub(60);
        let quiet_ms = self.config.policy.quiet_ms;
        let mut r = StepReport {
            gateways: self.config.gateways,
            workload: self.config.workload,
            offered,
            seconds,
            partitions: 0,
            splits: 0,
            splits_last_minute: 0,
            merges: 0,
            merges_last_minute: 0,
            resplits_after_merge: 0,
            capped_ticks: 0,
            max_actions_in_a_tick: 0,
            seconds_over: 0,
            max_writes: 0.0,
            max_reads: 0.0,
            over_threshold: 0,
            measured_max_writes: 0.0,
            measured_max_reads: 0.0,
            floor_writes: 0.0,
            floor_reads: 0.0,
            hot_keys_over: 0,
            max_leader: 0.0,
            mean_leader: 0.0,
            leading_gateways: 0,
            map_bytes: 0,
        };
        // What each range (id and epoch) served in each of the last ticks.
        let mut served: Vec<Tally> = Vec::new();
        for second in 0..seconds {
            let tick_ms = self.now_ms;
            let mut tally = (second + SERVED_WINDOW_S >= seconds).then(|| {
                let map = self.book.map();
                map.partitions
                    .iter()
                    .map(|p| ((p.id, p.epoch), (0.0, 0.0)))
                    .collect::<Tally>()
            });
            if offered > 0.0 {
                for i in 0..samples {
                    let (key, kind) = self.keys.next(&mut self.rng, tick_ms, i, samples);
                    let at = tick_ms + i * 1000 / samples;
                    let key = keys::object(BUCKET, &key);
                    if let Some(tally) = tally.as_mut() {
                        let p = self.book.map().lookup(&key);
                        let t = tally.entry((p.id, p.epoch)).or_default();
                        match kind {
                            Access::Write => t.0 += weight,
                            Access::Read => t.1 += weight,
                        }
                    }
                    self.book.record(&key, kind, at, weight);
                }
            }
            served.extend(tally);
            self.now_ms = tick_ms + 1000;
            let now = self.now_ms;
            let last_minute = second >= last_minute_from;
            let cap = match self.config.max_actions_per_tick {
                0 => self.config.gateways.max(1),
                n => n,
            };
            let mut actions = 0;
            loop {
                if actions == cap {
                    if self.book.decide(now, &no_size).is_some() {
                        r.capped_ticks += 1;
                    }
                    break;
                }
                let Some(action) = self.book.decide(now, &no_size) else {
                    break;
                };
                match &action {
                    Action::Split { id, at } => {
                        let loads = self.gateway_loads();
                        let next =
                            self.book
                                .map()
                                .split(*id, at)
                                .map_err(|source| SimError::Refused {
                                    action: action.clone(),
                                    source,
                                })?;
                        let right = next.lookup(at).id;
                        self.book.split_done(*id, at, next, now);
                        // The least-loaded gateway, the lowest index among equals.
                        let target = loads
                            .iter()
                            .enumerate()
                            .min_by(|a, b| a.1.total_cmp(b.1))
                            .map_or(0, |(g, _)| g);
                        self.leaders.insert(right, target);
                        if self
                            .merged_at
                            .get(id)
                            .is_some_and(|&m| now.saturating_sub(m) < quiet_ms)
                        {
                            r.resplits_after_merge += 1;
                        }
                        r.splits += 1;
                        r.splits_last_minute += u64::from(last_minute);
                    }
                    Action::Merge { left } => {
                        let map = self.book.map();
                        let right = map
                            .partitions
                            .iter()
                            .position(|p| p.id == *left)
                            .and_then(|i| map.partitions.get(i + 1))
                            .map(|p| p.id);
                        let next = map.merge(*left).map_err(|source| SimError::Refused {
                            action: action.clone(),
                            source,
                        })?;
                        self.book.merge_done(*left, next, now);
                        if let Some(right) = right {
                            self.leaders.remove(&right);
                            self.merged_at.remove(&right);
                        }
                        self.merged_at.insert(*left, now);
                        r.merges += 1;
                        r.merges_last_minute += u64::from(last_minute);
                    }
                    // Sizes are 0 here; a size split would be the same call again next time.
                    Action::SplitBySize { .. } => break,
                }
                self.book
                    .map()
                    .validate()
                    .map_err(|reason| SimError::Invalid {
                        action: action.clone(),
                        reason,
                    })?;
                actions += 1;
            }
            r.max_actions_in_a_tick = r.max_actions_in_a_tick.max(actions as u64);
            let policy = &self.config.policy;
            if self.book.stats(now, &no_size).iter().any(|s| {
                s.writes_per_second > policy.write_threshold
                    || s.reads_per_second > policy.read_threshold
            }) {
                r.seconds_over += 1;
            }
        }
        let policy = self.config.policy.clone();
        let stats = self.book.stats(self.now_ms, &no_size);
        for s in &stats {
            r.measured_max_writes = r.measured_max_writes.max(s.writes_per_second);
            r.measured_max_reads = r.measured_max_reads.max(s.reads_per_second);
        }
        for (w, rd) in served_per_second(&served) {
            r.max_writes = r.max_writes.max(w);
            r.max_reads = r.max_reads.max(rd);
            if w > policy.write_threshold || rd > policy.read_threshold {
                r.over_threshold += 1;
            }
        }
        let loads = self.gateway_loads();
        r.max_leader = loads.iter().copied().fold(0.0, f64::max);
        r.mean_leader = loads.iter().sum::<f64>() / loads.len() as f64;
        let mut leading = vec![false; loads.len()];
        for p in self.book.map().partitions.iter().filter(|p| !p.is_meta()) {
            if let Some(&g) = self.leaders.get(&p.id) {
                leading[g] = true;
            }
        }
        r.leading_gateways = leading.iter().filter(|l| **l).count();
        (r.floor_writes, r.floor_reads) = self.keys.floor(offered);
        r.hot_keys_over = self.keys.keys_over(offered, &policy);
        r.partitions = self.book.map().partitions.len();
        r.map_bytes = serde_json::to_vec(self.book.map())
            .expect("a map serialises")
            .len();
        Ok(r)
    }
}

/// One row of steps: the same fleet and workload under load growing step by step.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Offered requests per second per gateway, one entry per step.
    pub per_gateway_rates: Vec<f64>,
    /// Simulated seconds per step.
    pub step_seconds: u64,
    /// If not 0: a last step this long back at the first rate (to show merges).
    pub settle_seconds: u64,
}

/// Runs `plan` on a fresh simulation of `config`.
pub fn run(config: SimConfig, plan: &Plan) -> Result<Vec<StepReport>, SimError> {
    let gateways = config.gateways as f64;
    let mut sim = Simulation::new(config);
    let mut out = Vec::new();
    for &rate in &plan.per_gateway_rates {
        out.push(sim.run_step(rate * gateways, plan.step_seconds)?);
    }
    if plan.settle_seconds > 0
        && let Some(&first) = plan.per_gateway_rates.first()
    {
        out.push(sim.run_step(first * gateways, plan.settle_seconds)?);
    }
    Ok(out)
}

/// `1234567.8` as `1,234,568`.
pub fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// The reports as a Markdown table (thresholds from `policy`). A step offering less than the one
/// before it in the same run is marked "drop".
pub fn markdown_table(reports: &[StepReport], policy: &SplitPolicy) -> String {
    let mut t = String::new();
    t.push_str(
        "| gateways | workload | offered req/s | min | partitions | splits/min (step) | \
         splits (last min) | most changes in 1 s | merges (step / last min) | s over threshold | \
         max W/s per partition | max R/s per partition | partitions over | \
         hottest key W/s / R/s (keys over) | max leader req/s (x mean) | gateways leading | \
         map bytes |\n",
    );
    t.push_str(
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut previous: Option<&StepReport> = None;
    for r in reports {
        let minutes = r.seconds as f64 / 60.0;
        let floor = if r.floor_writes > 0.0 || r.floor_reads > 0.0 {
            format!(
                "{} / {} ({})",
                thousands(r.floor_writes),
                thousands(r.floor_reads),
                r.hot_keys_over
            )
        } else {
            "-".into()
        };
        let spread = if r.mean_leader > 0.0 {
            format!(
                "{} ({:.1}x)",
                thousands(r.max_leader),
                r.max_leader / r.mean_leader
            )
        } else {
            "0".into()
        };
        let drop = match previous {
            Some(p)
                if p.gateways == r.gateways
                    && p.workload == r.workload
                    && p.offered > r.offered =>
            {
                " (drop)"
            }
            _ => "",
        };
        previous = Some(r);
        let _ = writeln!(
            t,
            "| {} | {} | {}{drop} | {} | {} | {:.1} | {} | {} | {} / {} | {} | {} ({:.2}) | {} ({:.2}) | {} | {} | {} | {} | {} |",
            thousands(r.gateways as f64),
            r.workload,
            thousands(r.offered),
            minutes,
            thousands(r.partitions as f64),
            r.splits as f64 / minutes,
            r.splits_last_minute,
            r.max_actions_in_a_tick,
            r.merges,
            r.merges_last_minute,
            r.seconds_over,
            thousands(r.max_writes),
            r.max_writes / policy.write_threshold,
            thousands(r.max_reads),
            r.max_reads / policy.read_threshold,
            r.over_threshold,
            floor,
            spread,
            r.leading_gateways,
            thousands(r.map_bytes as f64),
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(gateways: usize, workload: Workload, samples: u64) -> SimConfig {
        SimConfig {
            samples_per_tick: samples,
            ..SimConfig::new(gateways, workload)
        }
    }

    #[test]
    fn zipf_samples_follow_the_distribution() {
        let z = Zipf::new(ZIPF_KEYS, ZIPF_EXPONENT);
        let mut rng = StdRng::seed_from_u64(7);
        let n = 200_000;
        let mut counts = [0u64; 4];
        for _ in 0..n {
            let k = z.sample(&mut rng);
            assert!((1..=ZIPF_KEYS).contains(&k));
            if k <= 3 {
                counts[k as usize] += 1;
            }
        }
        for rank in 1..=3 {
            let expected = z.probability(rank) * n as f64;
            let got = counts[rank as usize] as f64;
            // Within 4 standard deviations.
            assert!(
                (got - expected).abs() < 4.0 * expected.sqrt(),
                "rank {rank}: {got} vs {expected}"
            );
        }
        // Rank 1 of 10 million at s = 1.1 takes about 11.7% of the requests.
        assert!(
            (z.probability(1) - 0.1165).abs() < 0.002,
            "{}",
            z.probability(1)
        );
    }

    #[test]
    fn timestamp_keys_strictly_increase() {
        let mut last = String::new();
        for us in [
            0,
            1,
            999_999,
            1_000_000,
            59_999_999,
            3_600_000_000,
            50_400_000_000,
        ] {
            let k = timestamp_key(us);
            assert!(k > last, "{k} <= {last}");
            last = k;
        }
        assert_eq!(timestamp_key(123), "logs/2026-11-23T10:00:00.000123");
        assert_eq!(
            timestamp_key(50_400_000_000),
            "logs/2026-11-24T00:00:00.000000"
        );
    }

    /// Every partition below both thresholds, except (Zipf) the one holding the hottest key, whose
    /// load beyond that key's own must be below them.
    fn assert_under_thresholds(sim: &mut Simulation, offered: f64) {
        let policy = SplitPolicy::default();
        let hot = sim.hottest_key();
        let (hot_w, hot_r) = sim.floor(offered);
        for (p, s) in sim.partition_stats() {
            let (mut w, mut r) = (s.writes_per_second, s.reads_per_second);
            if hot.as_ref().is_some_and(|k| p.contains(k)) {
                w -= hot_w;
                r -= hot_r;
            }
            assert!(
                w < policy.write_threshold && r < policy.read_threshold,
                "partition {} [{:?}, {:?}) at {w:.0} W/s {r:.0} R/s (hot key {hot_w:.0} / {hot_r:.0})",
                p.id,
                String::from_utf8_lossy(&p.start),
                p.end.as_deref().map(String::from_utf8_lossy),
            );
        }
    }

    #[test]
    fn uniform_load_ends_under_the_thresholds() {
        // 60,000 req/s: 18,000 writes/s (5x the threshold), 42,000 reads/s (7.6x).
        let offered = 60_000.0;
        let mut sim = Simulation::new(config(20, Workload::Uniform, 2_000));
        let r = sim.run_step(offered, 240).unwrap();
        assert!(r.partitions >= 9, "{r:?}");
        assert_eq!(r.over_threshold, 0, "{r:?}");
        assert_under_thresholds(&mut sim, offered);
        // Splitting is done: nothing in the last minute.
        assert_eq!(r.splits_last_minute, 0, "{r:?}");
    }

    #[test]
    fn zipf_load_ends_under_the_thresholds_but_for_the_hottest_key() {
        // The hottest key alone takes 11.7%: 3,500 writes/s and 8,200 reads/s, above the read
        // threshold, so its partition may stay above it; everything else must not.
        let offered = 100_000.0;
        let mut sim = Simulation::new(config(20, Workload::Zipf, 2_000));
        let r = sim.run_step(offered, 240).unwrap();
        assert!(r.floor_reads > SplitPolicy::default().read_threshold);
        assert_under_thresholds(&mut sim, offered);
    }

    #[test]
    fn runs_are_deterministic() {
        let plan = Plan {
            per_gateway_rates: vec![100.0, 2_000.0],
            step_seconds: 60,
            settle_seconds: 0,
        };
        for workload in Workload::ALL {
            let a = run(config(10, workload, 500), &plan).unwrap();
            let b = run(config(10, workload, 500), &plan).unwrap();
            assert_eq!(a, b, "{workload}");
        }
    }

    #[test]
    fn the_table_has_a_row_per_step_and_aligned_columns() {
        let plan = Plan {
            per_gateway_rates: vec![10.0, 1_000.0],
            step_seconds: 30,
            settle_seconds: 30,
        };
        let reports = run(config(10, Workload::Zipf, 200), &plan).unwrap();
        let table = markdown_table(&reports, &SplitPolicy::default());
        let lines: Vec<_> = table.lines().collect();
        assert_eq!(lines.len(), 2 + 3);
        let columns = lines[0].matches('|').count();
        assert!(
            lines.iter().all(|l| l.matches('|').count() == columns),
            "{table}"
        );
        assert!(lines[4].contains("100 (drop)"), "{table}");
        assert!(lines[3].contains("| 10 | zipf | 10,000 |"), "{table}");
    }

    #[test]
    fn every_key_maps_to_exactly_one_partition() {
        // The map is validated after every change inside run_step; check coverage directly too.
        let mut sim = Simulation::new(config(10, Workload::HotPrefix, 1_000));
        sim.run_step(40_000.0, 150).unwrap();
        let map = sim.map().clone();
        map.validate().unwrap();
        assert!(map.partitions.len() > 3);
        let keygen = KeyGen::new(Workload::HotPrefix, 0.5);
        let mut rng = StdRng::seed_from_u64(3);
        let mut sampled: Vec<Vec<u8>> = (0..2_000)
            .map(|i| keys::object(BUCKET, &keygen.next(&mut rng, 0, i, 2_000).0))
            .collect();
        sampled.extend(map.partitions.iter().map(|p| p.start.clone()));
        sampled.extend([vec![], keys::bucket(BUCKET), vec![0xff; 4]]);
        for key in &sampled {
            let holders: Vec<_> = map.partitions.iter().filter(|p| p.contains(key)).collect();
            assert_eq!(holders.len(), 1, "{key:?}");
            assert_eq!(map.lookup(key).id, holders[0].id);
        }
        // Every partition has a leader.
        for p in &map.partitions {
            assert!(sim.leader(p.id).is_some_and(|g| g < 10), "{}", p.id);
        }
    }

    #[test]
    fn appends_above_the_write_threshold_cannot_be_split() {
        // 20,000 req/s, 6,000 appends/s: 1.7x the write threshold, all on the newest key.
        let offered = 20_000.0;
        let mut sim = Simulation::new(config(10, Workload::Sequential, 2_000));
        let r = sim.run_step(offered, 180).unwrap();
        let policy = SplitPolicy::default();
        // The policy keeps cutting the append point off (an empty right half each time), but the
        // newest partition still takes every append.
        assert!(r.splits >= 2, "{r:?}");
        assert!(r.max_writes > 0.9 * r.floor_writes, "{r:?}");
        assert!(r.max_writes > policy.write_threshold, "{r:?}");
        assert!(r.over_threshold >= 1, "{r:?}");
    }

    #[test]
    fn split_halves_go_to_idle_gateways_first() {
        let offered = 60_000.0;
        let mut sim = Simulation::new(config(40, Workload::Uniform, 2_000));
        let r = sim.run_step(offered, 180).unwrap();
        // Fewer partitions than gateways: no gateway should lead two object partitions.
        let objects = r.partitions - 1;
        assert!(objects < 40);
        assert_eq!(r.leading_gateways, objects, "{r:?}");
    }

    #[test]
    fn cold_partitions_merge_back_after_the_load_drops() {
        let mut sim = Simulation::new(config(10, Workload::Uniform, 1_000));
        sim.run_step(40_000.0, 150).unwrap();
        let peak = sim.map().partitions.len();
        assert!(peak > 4);
        // A merged partition waits a full quiet period (10 minutes) before it merges again, so
        // the partitions come back together in rounds; a trickle of load splits nothing.
        let (mut merges, mut rounds) = (0, 0);
        while sim.map().partitions.len() > 2 && rounds < 8 {
            let r = sim.run_step(100.0, 10 * 60).unwrap();
            assert_eq!(r.splits, 0, "{r:?}");
            merges += r.merges as usize;
            rounds += 1;
        }
        assert_eq!(sim.map().partitions.len(), 2, "after {rounds} rounds");
        assert_eq!(merges, peak - 2);
        // The joined range is led by the leader of its leftmost part.
        let only = sim.map().partitions[1].id;
        assert_eq!(only, PartitionId(2));
        assert_eq!(sim.leader(only), Some(1));
    }
}
