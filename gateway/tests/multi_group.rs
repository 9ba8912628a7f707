//! Two Raft groups sharing every replica's RocksDB, as a group per partition will (see
//! `docs/multi-raft.md`): three in-process replicas, an in-process network, the gateway's own log
//! store and state machine. It checks what that plan relies on:
//! - a group born of a split, initialized by the one replica meant to lead it, is led by that
//!   replica at once, so the two groups have different leaders;
//! - each group commits on its own, and neither touches the other's keys;
//! - a replica that lags in one group catches up from a snapshot of that group's ranges only,
//!   leaving the other group's keys as they were, and ends byte-identical to the others;
//! - a `Split` committed in a group's log shrinks its range at one position on every replica and
//!   starts the new group there, whose keys are exactly the parent's above the split; batches
//!   outside a group's range are answered `Moved`, also after a restart;
//! - the new group is persisted with the split: a restart finds and reopens it, and a replica
//!   that stopped before it started the group starts it when it opens and catches up in it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_gateway::consensus::TypeConfig;
use cairn_gateway::consensus::command::{Command, Split};
use cairn_gateway::consensus::digest;
use cairn_gateway::consensus::proposal::Outcome;
use cairn_gateway::consensus::proposal::Proposal;
use cairn_gateway::consensus::ranges::KeyRanges;
use cairn_gateway::consensus::snapshot;
use cairn_gateway::consensus::store::{self, Birth, GroupId, LogStore, SplitEvent, StateMachine};
use cairn_gateway::index::engine::{RocksEngine, WriteOp};
use cairn_gateway::index::keys;
use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft, RaftNetwork, RaftNetworkFactory, SnapshotPolicy};

type NodeId = u64;
type Rpc<T, E = RaftError<NodeId>> = Result<T, RPCError<NodeId, BasicNode, E>>;

/// The running replicas, by (node, group).
type Replicas = BTreeMap<(NodeId, GroupId), Raft<TypeConfig>>;

/// Every running replica of every group; a missing one is unreachable.
#[derive(Clone, Default)]
struct Router(Arc<Mutex<Replicas>>);

impl Router {
    fn get(&self, node: NodeId, group: GroupId) -> Option<Raft<TypeConfig>> {
        self.0.lock().unwrap().get(&(node, group)).cloned()
    }
}

struct Network {
    router: Router,
    group: GroupId,
}

struct Peer {
    router: Router,
    group: GroupId,
    target: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Peer {
        Peer {
            router: self.router.clone(),
            group: self.group,
            target,
        }
    }
}

impl Peer {
    /// The target's replica, or why it cannot be called.
    fn raft(&self) -> Result<Raft<TypeConfig>, Unreachable> {
        self.router.get(self.target, self.group).ok_or_else(|| {
            let e = std::io::Error::other(format!("{} is down", self.target));
            Unreachable::new(&e)
        })
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<NodeId>> {
        let raft = self.raft().map_err(RPCError::Unreachable)?;
        raft.append_entries(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        let raft = self.raft().map_err(RPCError::Unreachable)?;
        raft.install_snapshot(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Rpc<VoteResponse<NodeId>> {
        let raft = self.raft().map_err(RPCError::Unreachable)?;
        raft.vote(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

const META: GroupId = 1;
const SPLIT_OFF: GroupId = 2;

/// Where the test splits the keyspace: group 2 owns the routes from `b/m` on.
fn split_key() -> Vec<u8> {
    keys::object("b", "m")
}

fn ranges_of(group: GroupId) -> KeyRanges {
    match group {
        META => KeyRanges::new(
            [
                keys::meta_ranges(),
                keys::table_ranges(&[keys::tag::OBJECT], Some(&split_key())),
            ]
            .concat(),
        ),
        _ => KeyRanges::new(keys::table_ranges(&split_key(), None)),
    }
}

/// Starts `node`'s replica of `group` over `engine` and makes it reachable.
async fn start(
    router: &Router,
    engine: &Arc<RocksEngine>,
    node: NodeId,
    group: GroupId,
) -> Raft<TypeConfig> {
    start_owning(
        router.clone(),
        engine.clone(),
        node,
        group,
        ranges_of(group),
        false,
    )
    .await
}

/// Starts `node`'s replica of `group` owning `ranges` (at first). With `follow_splits`, every
/// group a split of it creates is started here too, and initialized if this is the replica the
/// split chose.
fn start_owning(
    router: Router,
    engine: Arc<RocksEngine>,
    node: NodeId,
    group: GroupId,
    ranges: KeyRanges,
    follow_splits: bool,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Raft<TypeConfig>> + Send>> {
    Box::pin(async move {
        let sm =
            StateMachine::open_owning(engine.clone(), group, ranges, Default::default()).unwrap();
        if follow_splits {
            let (router, engine) = (router.clone(), engine.clone());
            sm.observe_splits(Arc::new(move |born: SplitEvent| {
                let (router, engine) = (router.clone(), engine.clone());
                tokio::spawn(async move {
                    let raft =
                        start_owning(router, engine, node, born.new_group, born.ranges, true).await;
                    settle_birth(&raft, node, &born.birth).await;
                });
            }));
        }
        run(&router, &engine, node, group, sm).await
    })
}

/// Initializes a group born of a split if `node` is the replica chosen to and it has not yet.
async fn settle_birth(raft: &Raft<TypeConfig>, node: NodeId, birth: &Birth) {
    if birth.leader == Some(node) && !raft.is_initialized().await.unwrap() {
        raft.initialize(birth.voters()).await.unwrap();
    }
}

/// Opens `node` again after a stop: its replica of `base` (owning `ranges` unless it persisted
/// others), then every group its engine hosts besides, births settled; all following splits.
async fn reopen(
    router: &Router,
    engine: &Arc<RocksEngine>,
    node: NodeId,
    base: GroupId,
    ranges: KeyRanges,
) -> BTreeMap<GroupId, Raft<TypeConfig>> {
    let (r, e) = (router.clone(), engine.clone());
    let mut rafts = BTreeMap::from([(base, start_owning(r, e, node, base, ranges, true).await)]);
    for hosted in store::hosted_groups(engine).unwrap() {
        if hosted.group == base {
            continue;
        }
        let (r, e) = (router.clone(), engine.clone());
        let raft = start_owning(r, e, node, hosted.group, hosted.ranges, true).await;
        if let Some(birth) = &hosted.birth {
            settle_birth(&raft, node, birth).await;
        }
        rafts.insert(hosted.group, raft);
    }
    rafts
}

async fn run(
    router: &Router,
    engine: &Arc<RocksEngine>,
    node: NodeId,
    group: GroupId,
    sm: StateMachine,
) -> Raft<TypeConfig> {
    let config = openraft::Config {
        heartbeat_interval: 50,
        election_timeout_min: 400,
        election_timeout_max: 800,
        // Snapshots only when the test asks; the log behind one is purged at once, so a replica
        // that missed those entries can only catch up from the snapshot.
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: 0,
        purge_batch_size: 1,
        ..Default::default()
    }
    .validate()
    .unwrap();
    let raft = Raft::new(
        node,
        Arc::new(config),
        Network {
            router: router.clone(),
            group,
        },
        LogStore::new(engine, group),
        sm,
    )
    .await
    .unwrap();
    router.0.lock().unwrap().insert((node, group), raft.clone());
    raft
}

fn members() -> BTreeMap<NodeId, BasicNode> {
    (1..=3).map(|n| (n, BasicNode::default())).collect()
}

async fn leader_of(raft: &Raft<TypeConfig>) -> NodeId {
    raft.wait(Some(Duration::from_secs(20)))
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .unwrap()
        .current_leader
        .unwrap()
}

/// Commits one put of each key through `leader`.
async fn put_all(leader: &Raft<TypeConfig>, keys: &[Vec<u8>], value: &[u8]) {
    for key in keys {
        let proposal = Proposal {
            checks: Vec::new(),
            ops: vec![WriteOp::Put(key.clone(), value.to_vec())],
        };
        leader.client_write(proposal.into()).await.unwrap();
    }
}

/// Waits until every listed replica has applied its group's last log index.
async fn all_applied(rafts: &[Raft<TypeConfig>], index: u64) {
    for r in rafts {
        r.wait(Some(Duration::from_secs(20)))
            .applied_index_at_least(Some(index), "caught up")
            .await
            .unwrap();
    }
}

fn digest_of(engine: &RocksEngine, group: GroupId) -> digest::RangeDigest {
    digest::of(&engine.db().snapshot(), &ranges_of(group)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_groups_share_the_replicas_lead_apart_and_snapshot_only_their_own_keys() {
    let dir = tempfile::tempdir().unwrap();
    let engines: Vec<Arc<RocksEngine>> = (1..=3)
        .map(|n| Arc::new(RocksEngine::open(&dir.path().join(format!("node-{n}"))).unwrap()))
        .collect();
    let router = Router::default();

    // The meta group, formed by node 1, which leads it.
    let mut meta = Vec::new();
    for (i, e) in engines.iter().enumerate() {
        meta.push(start(&router, e, i as NodeId + 1, META).await);
    }
    meta[0].initialize(members()).await.unwrap();
    let meta_leader = leader_of(&meta[0]).await;
    let meta_keys: Vec<Vec<u8>> = (0..20)
        .map(|i| keys::object("b", &format!("a{i:02}")))
        .chain([keys::bucket("b")])
        .collect();
    put_all(&meta[meta_leader as usize - 1], &meta_keys, b"meta").await;

    // The split-off group on every replica, initialized by node 3 alone (the one meant to lead
    // it): it stands for election as it initializes, before the others' timers run out.
    let mut split = Vec::new();
    for (i, e) in engines.iter().enumerate() {
        split.push(start(&router, e, i as NodeId + 1, SPLIT_OFF).await);
    }
    let preferred: NodeId = if meta_leader == 3 { 2 } else { 3 };
    split[preferred as usize - 1]
        .initialize(members())
        .await
        .unwrap();
    let split_leader = leader_of(&split[0]).await;
    assert_eq!(split_leader, preferred, "the initializing replica leads");
    assert_ne!(
        split_leader, meta_leader,
        "the two groups have one leader each"
    );
    let split_keys: Vec<Vec<u8>> = (0..20)
        .map(|i| keys::object("b", &format!("m{i:02}")))
        .collect();
    put_all(&split[preferred as usize - 1], &split_keys, b"first").await;
    let last = split[preferred as usize - 1]
        .metrics()
        .borrow()
        .last_log_index
        .unwrap();
    all_applied(&split, last).await;

    // A replica other than the two leaders stops its split-off group; the group commits on,
    // snapshots and purges the log the stopped replica missed.
    let lagging = (1..=3)
        .find(|n| *n != meta_leader && *n != preferred)
        .unwrap();
    router.0.lock().unwrap().remove(&(lagging, SPLIT_OFF));
    split[lagging as usize - 1].shutdown().await.unwrap();
    let leader = &split[preferred as usize - 1];
    put_all(leader, &split_keys, b"second").await;
    let more: Vec<Vec<u8>> = (20..40)
        .map(|i| keys::object("b", &format!("m{i:02}")))
        .collect();
    put_all(leader, &more, b"second").await;
    leader.trigger().snapshot().await.unwrap();
    let snapshot_index = leader
        .wait(Some(Duration::from_secs(20)))
        .metrics(|m| m.purged.is_some_and(|p| p.index >= last), "log purged")
        .await
        .unwrap()
        .snapshot
        .unwrap()
        .index;
    // Meanwhile the meta group writes on, on every replica, the lagging one too.
    put_all(&meta[meta_leader as usize - 1], &meta_keys, b"meta, later").await;

    let meta_last = meta[meta_leader as usize - 1]
        .metrics()
        .borrow()
        .last_log_index
        .unwrap();
    all_applied(&meta, meta_last).await;

    // The lagging replica comes back: only a snapshot of the split-off group can catch it up.
    let lag_engine = &engines[lagging as usize - 1];
    let meta_before = digest_of(lag_engine, META);
    let back = start(&router, lag_engine, lagging, SPLIT_OFF).await;
    back.wait(Some(Duration::from_secs(30)))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= snapshot_index),
            "the snapshot installed",
        )
        .await
        .unwrap();
    let last = leader.metrics().borrow().last_log_index.unwrap();
    all_applied(&[back], last).await;

    // The install replaced the split-off group's keys and nothing else.
    assert_eq!(
        digest_of(lag_engine, META),
        meta_before,
        "the snapshot install touched the other group's keys"
    );
    for group in [META, SPLIT_OFF] {
        let digests: Vec<_> = engines.iter().map(|e| digest_of(e, group)).collect();
        assert!(
            digests.iter().all(|d| *d == digests[0]),
            "group {group}: replicas differ: {digests:?}"
        );
    }
    assert_eq!(digest_of(lag_engine, SPLIT_OFF).entries, 40);
    assert_eq!(digest_of(lag_engine, META).entries, meta_keys.len() as u64);
    let db = lag_engine.db();
    assert_eq!(
        db.get(keys::object("b", "m05")).unwrap().as_deref(),
        Some(&b"second"[..])
    );
    assert_eq!(
        db.get(keys::object("b", "a05")).unwrap().as_deref(),
        Some(&b"meta, later"[..])
    );
    for r in meta.iter().chain(split.iter()) {
        let _ = r.shutdown().await;
    }
}

/// Commits a one-key put through `leader`; what applying it did.
async fn put_one(leader: &Raft<TypeConfig>, key: Vec<u8>) -> Outcome {
    let proposal = Proposal {
        checks: Vec::new(),
        ops: vec![WriteOp::Put(key, b"v".to_vec())],
    };
    leader.client_write(proposal.into()).await.unwrap().data
}

/// Waits until every node runs a replica of `group`; those replicas.
async fn replicas_of(router: &Router, group: GroupId) -> Vec<Raft<TypeConfig>> {
    for _ in 0..200 {
        let found: Vec<_> = (1..=3).filter_map(|n| router.get(n, group)).collect();
        if found.len() == 3 {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("group {group} never started on every node");
}

/// One group owning every key, as today, on the three `engines`; the replicas of nodes for
/// which `follows` holds start the groups its splits create. Node 1 leads.
async fn start_whole(
    router: &Router,
    engines: &[Arc<RocksEngine>],
    follows: impl Fn(NodeId) -> bool,
) -> Vec<Raft<TypeConfig>> {
    let mut whole = Vec::new();
    for (i, e) in engines.iter().enumerate() {
        let node = i as NodeId + 1;
        let (r, e) = (router.clone(), e.clone());
        let ranges = KeyRanges::everything();
        whole.push(start_owning(r, e, node, META, ranges, follows(node)).await);
    }
    whole[0].initialize(members()).await.unwrap();
    whole
}

/// Through `leader`, puts 20 keys below the split key and 20 above, then commits a split there
/// handing the upper routes to [`SPLIT_OFF`], to be led by `chosen` (not `leader`).
async fn split_with_keys_on_both_sides(leader: &Raft<TypeConfig>, chosen: NodeId) {
    assert_ne!(leader.metrics().borrow().id, chosen);
    let below: Vec<Vec<u8>> = (0..20)
        .map(|i| keys::object("b", &format!("a{i:02}")))
        .collect();
    let above: Vec<Vec<u8>> = (0..20)
        .map(|i| keys::object("b", &format!("m{i:02}")))
        .collect();
    put_all(leader, &[below, above].concat(), b"before").await;
    let split = Command::Split(Split {
        split_at: split_key(),
        new_group: SPLIT_OFF,
        leader: Some(chosen),
    });
    assert_eq!(
        leader.client_write(split).await.unwrap().data,
        Outcome::Applied
    );
}

/// Waits until every replica of each group in `groups` has applied its leader's last entry.
async fn groups_applied(groups: &[&[Raft<TypeConfig>]]) {
    for rafts in groups {
        let leader = leader_of(&rafts[0]).await;
        let raft = rafts.iter().find(|r| r.metrics().borrow().id == leader);
        let last = raft.unwrap().metrics().borrow().last_log_index.unwrap();
        all_applied(rafts, last).await;
    }
}

/// Asserts every replica holds the same records in each half of the split; the records of the
/// upper half on node 3 (in `engines`).
fn halves_identical(engines: &[Arc<RocksEngine>]) -> u64 {
    let (kept, handed) = KeyRanges::everything().split_at_route(&split_key());
    for ranges in [&kept, &handed] {
        let digests: Vec<_> = engines
            .iter()
            .map(|e| digest::of(&e.db().snapshot(), ranges).unwrap())
            .collect();
        assert!(
            digests.iter().all(|d| *d == digests[0]),
            "replicas differ: {digests:?}"
        );
    }
    digest::of(&engines[2].db().snapshot(), &handed)
        .unwrap()
        .entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_in_the_log_hands_the_upper_routes_to_a_new_group_led_where_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let engines: Vec<Arc<RocksEngine>> = (1..=3)
        .map(|n| Arc::new(RocksEngine::open(&dir.path().join(format!("node-{n}"))).unwrap()))
        .collect();
    let router = Router::default();
    let chosen: NodeId = 2;
    let whole = start_whole(&router, &engines, |_| true).await;
    let first_leader = leader_of(&whole[0]).await;
    let leader = &whole[first_leader as usize - 1];
    split_with_keys_on_both_sides(leader, chosen).await;
    let born = replicas_of(&router, SPLIT_OFF).await;
    assert_eq!(
        leader_of(&born[0]).await,
        chosen,
        "the chosen replica leads the new group"
    );
    let born_leader = &born[chosen as usize - 1];

    // Each group takes its own keys and answers Moved for the other's.
    assert_eq!(
        put_one(leader, keys::object("b", "p")).await,
        Outcome::Moved
    );
    assert_eq!(
        put_one(leader, keys::object("b", "a50")).await,
        Outcome::Applied
    );
    assert_eq!(
        put_one(born_leader, keys::object("b", "p")).await,
        Outcome::Applied
    );
    assert_eq!(
        put_one(born_leader, keys::object("b", "a60")).await,
        Outcome::Moved
    );
    groups_applied(&[&whole, &born]).await;

    // On every replica the new group holds exactly the records above the split.
    assert_eq!(halves_identical(&engines), 21);
    let (kept, handed) = KeyRanges::everything().split_at_route(&split_key());
    let db = engines[2].db();
    assert_eq!(digest::of(&db.snapshot(), &handed).unwrap().entries, 21);
    assert_eq!(digest::of(&db.snapshot(), &kept).unwrap().entries, 21);
    assert_eq!(
        db.get(keys::object("b", "m07")).unwrap().as_deref(),
        Some(&b"before"[..])
    );

    // The parent's snapshots now carry its narrower ranges only.
    leader.trigger().snapshot().await.unwrap();
    leader
        .wait(Some(Duration::from_secs(20)))
        .metrics(|m| m.snapshot.is_some(), "a snapshot")
        .await
        .unwrap();
    let snapshots = snapshot::dir_of(&dir.path().join(format!("node-{first_leader}")));
    let file = std::fs::read_dir(&snapshots)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("snapshot-g1-")
        })
        .expect("the parent's snapshot file");
    assert_eq!(snapshot::verify(&file).unwrap().1, Some(kept.clone()));

    // Both groups survive a restart: the parent's narrower range, though it opens with every
    // key again, and the new group, found in the engine.
    for r in whole.iter().chain(born.iter()) {
        r.shutdown().await.unwrap();
    }
    router.0.lock().unwrap().clear();
    for e in &engines {
        let hosted = store::hosted_groups(e).unwrap();
        let found: Vec<_> = hosted.iter().map(|h| (h.group, h.ranges.clone())).collect();
        assert_eq!(found, [(META, kept.clone()), (SPLIT_OFF, handed.clone())]);
        assert_eq!(hosted[1].birth.as_ref().unwrap().leader, Some(chosen));
    }
    let mut again = Vec::new();
    for (i, e) in engines.iter().enumerate() {
        let node = i as NodeId + 1;
        again.push(reopen(&router, e, node, META, KeyRanges::everything()).await);
    }
    let parent: Vec<_> = again.iter().map(|g| g[&META].clone()).collect();
    let child: Vec<_> = again.iter().map(|g| g[&SPLIT_OFF].clone()).collect();
    let (l, c) = (leader_of(&parent[0]).await, leader_of(&child[0]).await);
    let (parent_leader, child_leader) = (&parent[l as usize - 1], &child[c as usize - 1]);
    assert_eq!(
        put_one(parent_leader, keys::object("b", "q")).await,
        Outcome::Moved
    );
    assert_eq!(
        put_one(parent_leader, keys::object("b", "a70")).await,
        Outcome::Applied
    );
    assert_eq!(
        put_one(child_leader, keys::object("b", "q")).await,
        Outcome::Applied
    );
    groups_applied(&[&parent, &child]).await;
    assert_eq!(halves_identical(&engines), 22);
    for r in parent.iter().chain(&child) {
        let _ = r.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_stops_before_starting_a_group_born_of_a_split_starts_it_when_it_opens() {
    let dir = tempfile::tempdir().unwrap();
    let engines: Vec<Arc<RocksEngine>> = (1..=3)
        .map(|n| Arc::new(RocksEngine::open(&dir.path().join(format!("node-{n}"))).unwrap()))
        .collect();
    let router = Router::default();
    // Node 3 applies the split but never starts the new group, as if it stopped right after.
    let chosen: NodeId = 2;
    let whole = start_whole(&router, &engines, |node| node != 3).await;
    let first_leader = leader_of(&whole[0]).await;
    let leader = &whole[first_leader as usize - 1];
    split_with_keys_on_both_sides(leader, chosen).await;
    groups_applied(&[&whole]).await;

    // The new group commits on without node 3.
    let mut born = Vec::new();
    for _ in 0..200 {
        born = (1..=2).filter_map(|n| router.get(n, SPLIT_OFF)).collect();
        if born.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(leader_of(&born[0]).await, chosen);
    assert!(router.get(3, SPLIT_OFF).is_none());
    let later: Vec<Vec<u8>> = (0..10)
        .map(|i| keys::object("b", &format!("x{i:02}")))
        .collect();
    put_all(&born[chosen as usize - 1], &later, b"while node 3 was down").await;

    // Node 3 stops and opens again: it finds the group in its engine and catches up in it.
    whole[2].shutdown().await.unwrap();
    router.0.lock().unwrap().remove(&(3, META));
    let node_3 = reopen(&router, &engines[2], 3, META, KeyRanges::everything()).await;
    born.push(node_3[&SPLIT_OFF].clone());
    let parent = [whole[0].clone(), whole[1].clone(), node_3[&META].clone()];
    groups_applied(&[&parent, &born]).await;
    assert_eq!(halves_identical(&engines), 30);
    assert_eq!(
        engines[2]
            .db()
            .get(keys::object("b", "x03"))
            .unwrap()
            .as_deref(),
        Some(&b"while node 3 was down"[..])
    );
    for r in parent.iter().chain(&born) {
        let _ = r.shutdown().await;
    }
}
