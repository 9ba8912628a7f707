//! Load-based splitting and merging of the index's partitions. The map is an index record, so a
//! split or merge is one guarded write: replicated, it commits through the log like any object
//! write, and a change computed from a map that moved meanwhile is recomputed or refused.
//!
//! Only the gateway running background work (alone, or the leader) decides; every gateway
//! re-reads the map each tick so its admin API and metrics show the committed one.

use super::partition::load::Access;
use super::partition::policy::{Action, HandedLoad, LeaderReport, PartitionStats};
use super::partition::{PartitionId, PartitionMap};
use super::schema::Routes;
use super::{Index, IndexError, keys, records};
use cairn_kv::{KvEngine, WriteOp};
use cairn_raft::load::{LoadHandover, PartitionSummary, ReadReport};
use cairn_raft::store::GroupId;

/// Name of the map's record (`keys::meta`).
pub(super) const MAP_KEY: &str = "partition-map";

/// Entries read per page while looking for the middle of a partition.
const PAGE: usize = 1000;

/// The stored partition map (the initial one if none was stored yet).
pub(super) fn stored_map(engine: &dyn KvEngine) -> Result<PartitionMap, IndexError> {
    decode_map(engine.get(&keys::meta(MAP_KEY))?)
}

/// The map in a stored record (the initial one when there is none).
pub(super) fn decode_map(record: Option<Vec<u8>>) -> Result<PartitionMap, IndexError> {
    match record {
        Some(bytes) => Ok(records::decode(&bytes)?),
        None => Ok(PartitionMap::initial()),
    }
}

/// Approximate bytes on disk of partition `p`'s records, over every table they are in.
pub(super) fn partition_size(engine: &dyn KvEngine, p: &super::partition::Partition) -> u64 {
    p.key_ranges()
        .iter()
        .map(|(s, e)| engine.approximate_range_size(s, e))
        .sum()
}

/// Counts the reads and writes another gateway reported (of keys in groups this gateway
/// leads), and notes what the leaders of other groups measured (on the meta leader).
pub(super) fn count_reported_load(shared: &super::Shared, report: &ReadReport) {
    use base64::Engine as _;
    let now = shared.now_ms();
    let mut book = shared.book();
    let kinds = [
        (&report.samples, Access::Read),
        (&report.writes, Access::Write),
    ];
    for (samples, kind) in kinds {
        for (key, weight) in samples {
            if let Ok(key) = base64::engine::general_purpose::STANDARD.decode(key) {
                book.record(&key, kind, now, *weight);
            }
        }
    }
    for p in &report.partitions {
        let measured = LeaderReport {
            bytes: p.bytes,
            reads_per_second: p.reads_per_second,
            writes_per_second: p.writes_per_second,
        };
        book.reported(PartitionId(p.partition), p.epoch, measured, now);
    }
    for h in &report.handovers {
        let sample = h
            .sample
            .iter()
            .filter_map(|(key, weight, write)| {
                let key = base64::engine::general_purpose::STANDARD.decode(key).ok()?;
                Some((key, *weight, *write))
            })
            .collect();
        let load = HandedLoad {
            reads_per_second: h.reads_per_second,
            writes_per_second: h.writes_per_second,
            sample,
        };
        book.handed_over(PartitionId(h.partition), h.epoch, load, now);
    }
}

/// How often a group leader reports the sizes and rates of its partitions to the meta leader.
const SUMMARY_EVERY_MS: u64 = 5_000;

/// How long a load report may take: a gateway that does not answer loses it (a lost report
/// only makes a leader's rates a little low for a tick), and must not hold up the next tick.
const REPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Sampled keys (base64, as reports carry them) grouped by the gateway to report them to: the
/// leader of the group owning each (`leader_of`), leaving out those this gateway leads (`me`:
/// counted here already) and those whose leader is unknown (dropped: a report is a sample).
fn by_leader(
    samples: Vec<(Vec<u8>, f64)>,
    me: u64,
    leader_of: &dyn Fn(&[u8]) -> Option<u64>,
) -> std::collections::BTreeMap<u64, Vec<(String, f64)>> {
    use base64::Engine as _;
    let mut out = std::collections::BTreeMap::<u64, Vec<(String, f64)>>::new();
    for (key, weight) in samples {
        if let Some(leader) = leader_of(&key).filter(|l| *l != me) {
            let key = base64::engine::general_purpose::STANDARD.encode(key);
            out.entry(leader).or_default().push((key, weight));
        }
    }
    out
}

/// Why a partition was split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SplitReason {
    /// Its request rate passed a threshold.
    Load,
    /// Its size passed the limit.
    Size,
    /// An operator asked (admin API).
    Manual,
}

/// A committed change of the partition map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebalanced {
    /// `id` was cut at `at`; keys from `at` on are in `right`.
    Split {
        id: PartitionId,
        right: PartitionId,
        at: Vec<u8>,
        reason: SplitReason,
        map_version: u64,
    },
    /// `right` was joined into `left`.
    Merged {
        left: PartitionId,
        right: PartitionId,
        map_version: u64,
    },
}

impl Index {
    /// Each partition's measured load and approximate size, as this gateway sees it.
    pub fn partition_stats(&self) -> Vec<PartitionStats> {
        let now = self.inner.now_ms();
        let size_of = self.size_of();
        self.inner.book().stats(now, &size_of)
    }

    /// The measured load of the partitions whose groups this gateway leads (alone: all): their
    /// leader's figures are whole, so each partition is published once, by its leader.
    pub fn partition_stats_led_here(&self) -> Vec<PartitionStats> {
        let map = self.partition_map();
        self.partition_stats()
            .into_iter()
            .filter(|s| map.get(s.id).is_some_and(|p| self.leads_partition(p)))
            .collect()
    }

    /// Each group's pressure as this gateway measures it (for the groups it leads: every
    /// gateway's reported load; on the meta leader also every leader's reported figures): the sum over the partitions it serves of the larger of their
    /// write and read rates over the split thresholds. Weighs leaderships when they are
    /// balanced and when a split's new group is given a leader.
    pub fn group_pressure(&self) -> cairn_raft::balance::Pressure {
        let mut out = cairn_raft::balance::Pressure::new();
        let Some(c) = self.consensus() else {
            return out;
        };
        let map = self.partition_map();
        let policy = &self.inner.options.split;
        for s in self.partition_stats() {
            let Some(p) = map.get(s.id) else {
                continue;
            };
            let Some(group) = c.route(&p.start, &keys::after(&p.start)).single() else {
                continue;
            };
            *out.entry(group).or_default() += policy.pressure(&s);
        }
        out
    }

    /// A partition's approximate size on disk.
    fn size_of(&self) -> impl Fn(&super::partition::Partition) -> u64 + use<> {
        let engine = self.inner.engine.clone();
        move |p| partition_size(engine.as_ref(), p)
    }

    /// Sends the reads served and writes proposed here since the last call to the leaders of
    /// the groups owning their keys (one report per leader, those to different gateways at
    /// once), so that each leader's rates, which drive the splits it decides, cover every
    /// gateway; and every few seconds what this gateway measured of the partitions whose groups
    /// it leads to the meta leader (which decides merges and weighs leaderships without a
    /// replica of every group). A report is a sample: one that fails is dropped.
    pub async fn report_load(&self) -> Result<(), IndexError> {
        let Some(c) = self.consensus() else {
            return Ok(());
        };
        let reads = self.inner.read_outbox.lock().expect("read outbox").take();
        let writes = self.inner.write_outbox.lock().expect("write outbox").take();
        let leader_of = |key: &[u8]| c.leader_of_key(key);
        let mut reports = std::collections::BTreeMap::<u64, ReadReport>::new();
        for (leader, samples) in by_leader(reads, c.id(), &leader_of) {
            reports.entry(leader).or_default().samples = samples;
        }
        for (leader, samples) in by_leader(writes, c.id(), &leader_of) {
            reports.entry(leader).or_default().writes = samples;
        }
        if let Some(meta) = c.leader().filter(|l| *l != c.id()) {
            let summaries = self.summaries_to_report();
            if !summaries.is_empty() {
                reports.entry(meta).or_default().partitions = summaries;
            }
        }
        let sent = reports
            .iter()
            .filter(|(_, r)| !r.is_empty())
            .map(|(to, r)| async move {
                match tokio::time::timeout(REPORT_TIMEOUT, c.report_load(*to, r)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(format!("gateway {to}: {e}")),
                    Err(_) => Err(format!("gateway {to}: no answer in {REPORT_TIMEOUT:?}")),
                }
            });
        let failed: Vec<String> = futures_util::future::join_all(sent)
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(cairn_kv::EngineError::Unavailable(failed.join("; ")).into())
        }
    }

    /// What this gateway measured of the partitions whose owning group it leads, if due (every
    /// [`SUMMARY_EVERY_MS`]); else nothing.
    fn summaries_to_report(&self) -> Vec<PartitionSummary> {
        let now = self.inner.now_ms();
        let last = &self.inner.sizes_reported_ms;
        let due = last.load(std::sync::atomic::Ordering::Relaxed);
        if now < due {
            return Vec::new();
        }
        last.store(now + SUMMARY_EVERY_MS, std::sync::atomic::Ordering::Relaxed);
        let map = self.partition_map();
        let stats: std::collections::HashMap<PartitionId, PartitionStats> = self
            .partition_stats()
            .into_iter()
            .map(|s| (s.id, s))
            .collect();
        map.partitions
            .iter()
            .filter(|p| !p.is_meta() && self.leads_partition(p))
            .map(|p| {
                let measured = stats.get(&p.id);
                PartitionSummary {
                    partition: p.id.0,
                    epoch: p.epoch,
                    bytes: partition_size(self.inner.engine.as_ref(), p),
                    reads_per_second: measured.map_or(0.0, |s| s.reads_per_second),
                    writes_per_second: measured.map_or(0.0, |s| s.writes_per_second),
                }
            })
            .collect()
    }

    /// Whether this gateway leads the group owning partition `p` (always, alone): it measures
    /// `p`'s load whole and decides its splits.
    fn leads_partition(&self, p: &super::partition::Partition) -> bool {
        self.consensus().is_none_or(|c| c.leads_owner_of(&p.start))
    }

    /// Re-reads the committed map (after the read barrier) and adopts it.
    pub async fn refresh_partition_map(&self) -> Result<PartitionMap, IndexError> {
        let map = self
            .run(|i| {
                let key = keys::meta(MAP_KEY);
                stored_map(&i.engine.local(&key, &keys::after(&key))?)
            })
            .await?;
        let now = self.inner.now_ms();
        self.inner.book().set_map(map.clone(), now);
        Ok(map)
    }

    /// One tick of load-based partitioning: refreshes the map; makes the map's splits and
    /// merges in the groups this gateway leads; then commits the split of a partition whose
    /// group it leads, if the policy asks for one, or (on the gateway running background work,
    /// the meta leader) a merge.
    pub async fn rebalance_once(&self) -> Result<Option<Rebalanced>, IndexError> {
        let map = self.refresh_partition_map().await?;
        // Every gateway makes the map's splits and merges in the groups it leads.
        self.split_groups(&map).await?;
        self.merge_groups(&map).await?;
        let merges = self.runs_background_work();
        let action = {
            let shared = &self.inner;
            let now = shared.now_ms();
            let engine = shared.engine.clone();
            let size_of = move |p: &super::partition::Partition| partition_size(engine.as_ref(), p);
            let leads = |p: &super::partition::Partition| self.leads_partition(p);
            shared.book().decide_in(now, &size_of, &leads, merges)
        };
        match action {
            None => Ok(None),
            Some(Action::Split { id, at }) => {
                self.commit_split(id, at, SplitReason::Load).await.map(Some)
            }
            Some(Action::SplitBySize { id }) => match self.middle_key(id).await? {
                Some(at) => self.commit_split(id, at, SplitReason::Size).await.map(Some),
                None => Ok(None),
            },
            Some(Action::Merge { left }) => self.merge_partitions(left).await.map(Some),
        }
    }

    /// Splits partition `id` at index key `at` (the admin API's manual split).
    pub async fn split_partition(
        &self,
        id: PartitionId,
        at: Vec<u8>,
    ) -> Result<Rebalanced, IndexError> {
        self.commit_split(id, at, SplitReason::Manual).await
    }

    async fn commit_split(
        &self,
        id: PartitionId,
        at: Vec<u8>,
        reason: SplitReason,
    ) -> Result<Rebalanced, IndexError> {
        let key = at.clone();
        let next = self
            .commit_map(move |map| map.split(id, &key).map_err(IndexError::from))
            .await?;
        let right = next.lookup(&at).id;
        let map_version = next.version;
        let now = self.inner.now_ms();
        self.inner.book().split_done(id, &at, next.clone(), now);
        // The new partition's group, at once (a later tick retries if this fails).
        if let Err(e) = self.split_groups(&next).await {
            tracing::warn!(partition = %right, error = %e, "the new partition's group is not split off yet");
        }
        Ok(Rebalanced::Split {
            id,
            right,
            at,
            reason,
            map_version,
        })
    }

    /// Joins partition `left` with its right neighbour.
    pub async fn merge_partitions(&self, left: PartitionId) -> Result<Rebalanced, IndexError> {
        let before = self.refresh_partition_map().await?;
        let right = before.right_of(left).map(|p| p.id);
        let next = self
            .commit_map(move |map| {
                // The neighbour must still be the one measured.
                if map.right_of(left).map(|p| p.id) != right {
                    return Err(super::partition::MapError::NoNeighbour(left).into());
                }
                Ok(map.merge(left)?)
            })
            .await?;
        let map_version = next.version;
        let now = self.inner.now_ms();
        self.inner.book().merge_done(left, next, now);
        Ok(Rebalanced::Merged {
            left,
            right: right.ok_or(super::partition::MapError::NoNeighbour(left))?,
            map_version,
        })
    }

    /// Replicated: gives every object partition of `map` a Raft group that starts where it
    /// starts, by splitting the group owning its first route there (the new group takes the
    /// partition's id, and is led by the gateway leading the fewest groups). A split committed
    /// in the map but not yet in the groups (a crash in between, a leader change) is finished
    /// by the next tick; a split already made is a no-op. Each split is made by the leader of
    /// the group it cuts (a data group need not run on the meta leader), and by the meta leader
    /// if it runs that group.
    pub(super) async fn split_groups(&self, map: &PartitionMap) -> Result<(), IndexError> {
        let Some(c) = self.consensus() else {
            return Ok(());
        };
        // A group, once split off, keeps its first route (groups do not merge): one that this
        // replica already sees starting there needs no barrier to be sure.
        let starts_at = |group: GroupId, route: &[u8]| {
            group != c.group()
                && c.host()
                    .ranges_of(group)
                    .and_then(|r| r.object_routes())
                    .is_some_and(|(start, _)| start == route)
        };
        for p in map.partitions.iter().filter(|p| !p.is_meta()) {
            match c.host().owner_of(&p.start) {
                Some(g) if starts_at(g, &p.start) => continue,
                // The meta leader also makes the splits of the groups it runs (through their
                // leaders, waiting out an election): a split is a no-op the second time.
                Some(g) if c.is_leader_of(g) || self.runs_background_work() => {}
                // Its owner's leader makes the split.
                _ => continue,
            }
            let route = p.start.clone();
            // The owner as committed: pass its barrier first.
            let owner = self
                .run(move |i| {
                    i.engine.local(&route, &keys::after(&route))?;
                    Ok(i.consensus.as_ref().and_then(|c| c.host().owner_of(&route)))
                })
                .await?;
            let Some(owner) = owner else {
                continue;
            };
            // The meta group starts at the first key: any partition in it is to be split off.
            if starts_at(owner, &p.start) || c.host().runs(p.id.0) {
                continue;
            }
            if c.host().frozen_of(owner).is_some() {
                // A merge of this group was under way; the map wants it cut instead.
                thaw(c, owner).await?;
            }
            let leader = c.least_loaded_voter(owner, &self.group_pressure());
            let split = cairn_raft::command::Split {
                split_at: p.start.clone(),
                new_group: p.id.0,
                leader,
            };
            let outcome = c.split(owner, split).await?;
            tracing::info!(
                partition = %p.id,
                parent = owner,
                at = %keys::readable(&p.start),
                leader = ?leader,
                ?outcome,
                "index partition split off into a Raft group of its own"
            );
            if let Some(to) = leader.filter(|l| *l != c.id())
                && outcome == cairn_raft::proposal::Outcome::Applied
            {
                self.hand_over_load(c, p, to).await;
            }
        }
        Ok(())
    }

    /// Sends what this gateway measured of the partitions of `group` to gateway `to`, to which
    /// it just handed the group's leadership (see [`Index::hand_over_load`]).
    pub(super) async fn hand_over_group_load(&self, group: GroupId, to: u64) {
        let Some(c) = self.consensus() else {
            return;
        };
        let map = self.partition_map();
        for p in map.partitions.iter().filter(|p| !p.is_meta()) {
            if c.host().owner_of(&p.start) == Some(group) {
                self.hand_over_load(c, p, to).await;
            }
        }
    }

    /// Sends what this gateway measured of partition `p` (it split it off, or led it) to
    /// gateway `to`, chosen to lead it, which would otherwise measure it from nothing: a hot
    /// partition's next split waits for its cooldown, not for its rates to build up again.
    /// Best effort.
    async fn hand_over_load(
        &self,
        c: &cairn_raft::Consensus,
        p: &super::partition::Partition,
        to: u64,
    ) {
        use base64::Engine as _;
        let now = self.inner.now_ms();
        let Some(load) = self.inner.book().handover(p.id, p.epoch, now) else {
            return;
        };
        let handover = LoadHandover {
            partition: p.id.0,
            epoch: p.epoch,
            reads_per_second: load.reads_per_second,
            writes_per_second: load.writes_per_second,
            sample: load
                .sample
                .into_iter()
                .map(|(key, weight, write)| {
                    let key = base64::engine::general_purpose::STANDARD.encode(key);
                    (key, weight, write)
                })
                .collect(),
        };
        let report = ReadReport {
            handovers: vec![handover],
            ..ReadReport::default()
        };
        match tokio::time::timeout(REPORT_TIMEOUT, c.report_load(to, &report)).await {
            Ok(Ok(())) => {
                tracing::debug!(partition = %p.id, to, "measured load handed to the new leader")
            }
            Ok(Err(e)) => {
                tracing::debug!(partition = %p.id, to, error = %e, "measured load not handed over")
            }
            Err(_) => {
                tracing::debug!(partition = %p.id, to, "measured load not handed over in time")
            }
        }
    }

    /// Replicated, on the meta leader: moves a replica of a data group to spread the groups
    /// over the gateways (see `Consensus::balance_replicas`), never one of a group about to
    /// merge (its range does not match its partition's).
    pub async fn balance_replicas(&self) {
        let Some(c) = self.consensus() else {
            return;
        };
        let map = self.partition_map();
        let starts: std::collections::BTreeSet<Vec<u8>> =
            map.partitions.iter().map(|p| p.start.clone()).collect();
        let settled = |group: GroupId| {
            let ranges = c
                .host()
                .ranges_of(group)
                .or_else(|| c.remote_group(group).map(|g| g.ranges));
            ranges
                .and_then(|r| r.object_routes())
                .is_some_and(|(start, end)| {
                    starts.contains(&start) && end.is_none_or(|e| starts.contains(&e))
                })
        };
        c.balance_replicas(&settled, &self.group_pressure()).await;
    }

    /// Replicated: merges neighbouring groups that serve one partition of `map` (the map merged
    /// two partitions), one merge per call: freezes the right one, waits until every member has
    /// applied the freeze, and has the left one absorb it (`consensus::store`). Writes to the
    /// frozen group wait meanwhile (they are `Moved` and retried), so nothing is frozen unless
    /// every member answers first, and a merge that cannot finish in a few seconds is undone. A
    /// frozen group that serves a partition of its own again (the map split there meanwhile) is
    /// thawed. The meta leader coordinates if it runs the left group, else the left group's
    /// leader; if the right one lives on other gateways, it is first asked onto the left one's
    /// (and the left one kept where it is).
    pub(super) async fn merge_groups(&self, map: &PartitionMap) -> Result<(), IndexError> {
        let Some(c) = self.consensus() else {
            return Ok(());
        };
        let data: Vec<(GroupId, Vec<u8>, Option<Vec<u8>>)> = c
            .host()
            .directory()
            .into_iter()
            .filter(|(g, _)| *g != c.group())
            .filter_map(|(g, r)| r.object_routes().map(|(start, end)| (g, start, end)))
            .collect();
        let starts: std::collections::BTreeSet<&[u8]> =
            map.partitions.iter().map(|p| p.start.as_slice()).collect();
        for (left, left_start, left_end) in &data {
            let Some(right_start) = left_end else {
                continue;
            };
            // A group not starting a partition is itself the right side of a merge: it is
            // absorbed first, and its left neighbour then takes its right one (several merges
            // of one partition cascade from the left). Aligning it for two merges at once, onto
            // its left neighbour and as the pinned left of its right one, would never settle.
            if !starts.contains(left_start.as_slice()) {
                continue;
            }
            // One coordinator per merge: the meta leader if it runs the left group (waiting out
            // a new group's first election), else the left group's leader.
            let meta_runs_left = c.leader().zip(c.members_of(*left).await).is_some_and(
                |(meta, (voters, learners))| voters.contains(&meta) || learners.contains(&meta),
            );
            let coordinates = if meta_runs_left {
                c.is_leader()
            } else {
                c.is_leader_of(*left)
            };
            if !coordinates {
                continue;
            }
            let right = data.iter().find(|(_, s, _)| s == right_start).map(|d| d.0);
            if starts.contains(right_start.as_slice()) {
                if let Some(right) = right
                    && c.host().frozen_of(right).is_some()
                {
                    thaw(c, right).await?;
                }
                continue;
            }
            if c.host().frozen_of(*left).is_some() {
                continue;
            }
            let right = match right {
                Some(right) => right,
                None => {
                    // The neighbour runs on other gateways only.
                    c.learn_remote_groups().await;
                    let route = keys::after(right_start);
                    match c.route(right_start, &route).single() {
                        Some(r) if !c.host().runs(r) => r,
                        _ => continue,
                    }
                }
            };
            let (Some(left_members), Some(right_members)) =
                (c.members_of(*left).await, c.members_of(right).await)
            else {
                continue;
            };
            if left_members != right_members {
                // A change of the left group under way: its voters are the target once it is
                // done.
                let (voters, learners) = left_members;
                if !learners.is_empty() {
                    continue;
                }
                tracing::info!(
                    left,
                    right,
                    ?voters,
                    ?right_members,
                    "moving an index group onto its left neighbour's gateways before merging them"
                );
                c.align(*left, voters.clone()).await?;
                c.align(right, voters).await?;
                continue;
            }
            return self.merge_group_into(c, *left, right).await;
        }
        Ok(())
    }

    async fn merge_group_into(
        &self,
        c: &cairn_raft::Consensus,
        left: GroupId,
        right: GroupId,
    ) -> Result<(), IndexError> {
        use cairn_raft::command::{Absorb, Command, Freeze};
        /// How long every member has to apply the freeze before the merge is given up.
        const FREEZE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
        // Every replica of the left group must hold the right one (it applies the absorb from
        // its own copy), and answer before anything is frozen.
        let (of_left, of_right) = (
            c.progress_of_members(left).await,
            c.progress_of_members(right).await,
        );
        let blocked = if of_left.is_empty() || !of_left.keys().eq(of_right.keys()) {
            Some("groups with different members are not merged")
        } else if of_right.values().any(Option::is_none) {
            Some("a member does not answer; the merge waits")
        } else {
            None
        };
        if let Some(why) = blocked {
            tracing::debug!(left, right, why);
            // A freeze left by an earlier attempt must not block writes while the merge waits.
            if c.host().frozen_of(right).is_some() {
                return thaw(c, right).await;
            }
            return Ok(());
        }
        c.commit(right, Command::Freeze(Freeze { freeze: right }))
            .await?;
        c.read_barrier_of(right).await?;
        let Some(frozen_at) = c.host().frozen_of(right) else {
            return Ok(());
        };
        let deadline = std::time::Instant::now() + FREEZE_WAIT;
        loop {
            let progress = c.progress_of_members(right).await;
            let everywhere = progress.values().all(|p| {
                p.is_some_and(|p| {
                    p.frozen == Some(frozen_at) && p.applied.is_some_and(|a| a >= frozen_at)
                })
            });
            if everywhere {
                break;
            }
            if std::time::Instant::now() > deadline {
                tracing::warn!(
                    left,
                    right,
                    ?progress,
                    "not every member applied the freeze in time; merge undone"
                );
                return thaw(c, right).await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if let Some(path) = &self.inner.options.merge_crash_file
            && std::fs::remove_file(path).is_ok()
        {
            tracing::error!(
                left,
                right,
                "failpoint: crashing between a merge's freeze and its absorb"
            );
            std::process::abort();
        }
        // Members added to the left group since the check above (a change under way when the
        // freeze came) would lack a copy of the right one: the merge is undone and waits.
        let (of_left, of_right) = (
            c.progress_of_members(left).await,
            c.progress_of_members(right).await,
        );
        if !of_left.keys().eq(of_right.keys()) {
            tracing::info!(left, right, "the groups' members changed; merge undone");
            return thaw(c, right).await;
        }
        let Some(ranges) = c.host().ranges_of(right) else {
            return Ok(());
        };
        let absorb = Absorb {
            absorb: right,
            frozen_at,
            ranges,
        };
        let outcome = c.commit(left, Command::Absorb(absorb)).await?;
        tracing::info!(
            left,
            right,
            frozen_at,
            ?outcome,
            "index group absorbed its right neighbour"
        );
        Ok(())
    }

    /// Writes `change(stored map)` as the new map, guarded by the read of the stored one.
    async fn commit_map(
        &self,
        change: impl Fn(&PartitionMap) -> Result<PartitionMap, IndexError> + Send + Sync + 'static,
    ) -> Result<PartitionMap, IndexError> {
        self.run(move |i| {
            let key = keys::meta(MAP_KEY);
            let current = decode_map(i.engine.get(&key)?)?;
            let next = change(&current)?;
            debug_assert!(next.validate().is_ok());
            i.engine
                .write(vec![WriteOp::Put(key, records::encode(&next))])?;
            Ok(next)
        })
        .await
    }

    /// The key in the middle (by entry count) of partition `id`, for a split by size; `None` if it
    /// holds fewer than two entries. Two scans of the range, on a blocking thread.
    async fn middle_key(&self, id: PartitionId) -> Result<Option<Vec<u8>>, IndexError> {
        let Some(p) = self.partition_map().get(id).cloned() else {
            return Ok(None);
        };
        self.run(move |i| {
            let (start, end) = p.object_keys();
            let engine = i.engine.local(&start, &end)?;
            let walk = |stop_at: Option<u64>| -> Result<(u64, Option<Vec<u8>>), IndexError> {
                let (mut pos, mut seen) = (start.clone(), 0u64);
                loop {
                    let page = engine.scan(&pos, &end, PAGE)?;
                    let Some((last, _)) = page.last() else {
                        return Ok((seen, None));
                    };
                    if let Some(stop) = stop_at
                        && seen + page.len() as u64 > stop
                    {
                        let k = page[(stop - seen) as usize].0.clone();
                        return Ok((seen, Some(k)));
                    }
                    seen += page.len() as u64;
                    pos = keys::after(last);
                }
            };
            let (count, _) = walk(None)?;
            if count < 2 {
                return Ok(None);
            }
            let (_, middle) = walk(Some(count / 2))?;
            Ok(middle.filter(|k| k.as_slice() > p.start.as_slice()))
        })
        .await
    }
}

/// Lets frozen `group` take writes again.
async fn thaw(c: &cairn_raft::Consensus, group: GroupId) -> Result<(), IndexError> {
    use cairn_raft::command::{Command, Thaw};
    tracing::info!(group, "thawing a frozen index group");
    c.commit(group, Command::Thaw(Thaw { thaw: group }))
        .await
        .map(|_| ())
        .map_err(IndexError::from)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::index::IndexOptions;
    use crate::index::partition::policy::SplitPolicy;
    use cairn_kv::MemEngine;

    #[test]
    fn sampled_keys_are_reported_to_the_leaders_of_their_groups_and_not_to_this_gateway() {
        use base64::Engine as _;
        // Keys before "m" are led by gateway 1 (this one), from "m" by 2, from "t" by nobody
        // known.
        let leader_of = |key: &[u8]| match key {
            k if k < b"m".as_slice() => Some(1),
            k if k < b"t".as_slice() => Some(2),
            _ => None,
        };
        let samples = ["a", "n", "z", "p"]
            .iter()
            .map(|k| (k.as_bytes().to_vec(), 2.5))
            .collect();
        let reports = by_leader(samples, 1, &leader_of);
        let encode = |k: &str| base64::engine::general_purpose::STANDARD.encode(k);
        assert_eq!(
            reports,
            [(2, vec![(encode("n"), 2.5), (encode("p"), 2.5)])].into()
        );
    }

    #[tokio::test]
    async fn splits_and_merges_are_stored_and_survive_a_reopen() {
        let engine = Arc::new(MemEngine::default());
        let index = Index::new(engine.clone(), IndexOptions::default());
        let at = keys::object("b", "m");
        let split = index
            .split_partition(PartitionId(2), at.clone())
            .await
            .unwrap();
        assert!(matches!(
            split,
            Rebalanced::Split {
                right: PartitionId(3),
                ..
            }
        ));
        // A split key outside the partition is refused and changes nothing.
        let err = index
            .split_partition(PartitionId(2), keys::object("b", "z"))
            .await
            .unwrap_err();
        assert!(matches!(err, IndexError::Partition(_)));
        let reopened = Index::new(engine.clone(), IndexOptions::default());
        assert_eq!(reopened.partition_map(), index.partition_map());
        assert_eq!(reopened.partition_map().partitions.len(), 3);
        reopened.merge_partitions(PartitionId(2)).await.unwrap();
        let map = index.refresh_partition_map().await.unwrap();
        assert_eq!(map.partitions.len(), 2);
        assert_eq!(map, index.partition_map());
    }

    #[tokio::test]
    async fn a_partition_over_the_size_limit_splits_in_the_middle_of_its_keys() {
        let engine = Arc::new(MemEngine::default());
        let options = IndexOptions {
            split: SplitPolicy {
                size_limit: 10_000,
                cooldown_ms: 0,
                ..SplitPolicy::default()
            },
            ..IndexOptions::default()
        };
        let ops = (0..400)
            .map(|i| WriteOp::Put(keys::object("b", &format!("k{i:04}")), vec![0; 100]))
            .collect();
        engine.write(ops).unwrap();
        let index = Index::new(engine, options);
        let done = index.rebalance_once().await.unwrap();
        let Some(Rebalanced::Split { at, reason, .. }) = done else {
            panic!("{done:?}")
        };
        assert_eq!(reason, SplitReason::Size);
        assert_eq!(at, keys::object("b", "k0200"));
    }
}
