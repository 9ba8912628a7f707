//! The internal endpoints gateways call on each other (on the admin port, behind the fleet
//! credential, not the admin token):
//! Raft's own messages, index proposals and read-index requests forwarded to the leader, and the
//! followers' read-load reports, and the leader's liveness probe.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::command::Command;
use super::host::HostError;
use super::proposal::Outcome;
use super::store::{GroupId, INDEX_GROUP};
use super::{Consensus, Forwarded, Hello, TypeConfig};

/// Raft batches carry inline objects; they may be far larger than axum's 2 MiB default.
pub const BODY_LIMIT: usize = 256 << 20;

/// The internal routes, for the admin router (which adds the fleet signature check).
pub fn router<S: Clone + Send + Sync + 'static>(consensus: Arc<Consensus>) -> Router<S> {
    Router::new()
        .route("/internal/v1/raft/{group}/append", post(append))
        .route("/internal/v1/raft/{group}/vote", post(vote))
        .route("/internal/v1/raft/{group}/snapshot", post(snapshot))
        .route("/internal/v1/index/propose", post(propose_meta))
        .route("/internal/v1/index/read-index", post(read_index_meta))
        .route("/internal/v1/index/{group}/propose", post(propose))
        .route("/internal/v1/index/{group}/read-index", post(read_index))
        .route("/internal/v1/index/{group}/progress", get(progress))
        .route("/internal/v1/index/{group}/read", post(read))
        .route("/internal/v1/index/{group}/align", post(align))
        .route("/internal/v1/index/groups", get(groups))
        .route("/internal/v1/index/campaign", post(campaign_meta))
        .route("/internal/v1/index/{group}/campaign", post(campaign))
        .route("/internal/v1/index/hand-over", post(hand_over_meta))
        .route("/internal/v1/index/{group}/hand-over", post(hand_over))
        .route("/internal/v1/index/read-load", post(read_load))
        .route("/internal/v1/index/hello", get(hello))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(consensus)
}

/// The group a Raft message is for, if this gateway runs a replica of it. Refusals are answered
/// with a status the sender retries on, as for an unreachable peer: 404 for a group it has no
/// replica of (the sender's host then sends a snapshot), 409 while a snapshot overlaps another
/// group here or the replica is stopped, 503 when the group could not start.
async fn replica(c: &Consensus, group: GroupId) -> Result<openraft::Raft<TypeConfig>, StatusCode> {
    c.host().get(group).await.map_err(refusal)
}

fn refusal(e: HostError) -> StatusCode {
    match e {
        HostError::NoSuchGroup(_) => StatusCode::NOT_FOUND,
        HostError::Overlaps { .. } | HostError::Stopped(_) => StatusCode::CONFLICT,
        HostError::Start(..) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

type Answer<T> = Result<Json<T>, StatusCode>;

async fn append(
    State(c): State<Arc<Consensus>>,
    Path(group): Path<GroupId>,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> Answer<Result<AppendEntriesResponse<u64>, RaftError<u64>>> {
    Ok(Json(replica(&c, group).await?.append_entries(req).await))
}

async fn vote(
    State(c): State<Arc<Consensus>>,
    Path(group): Path<GroupId>,
    Json(req): Json<VoteRequest<u64>>,
) -> Answer<Result<VoteResponse<u64>, RaftError<u64>>> {
    Ok(Json(replica(&c, group).await?.vote(req).await))
}

async fn snapshot(
    State(c): State<Arc<Consensus>>,
    Path(group): Path<GroupId>,
    Json(req): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Answer<Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>> {
    let raft = c.host().snapshot_target(group, &req).await;
    Ok(Json(raft.map_err(refusal)?.install_snapshot(req).await))
}

/// A command for `group` (a bare proposal is a batch: the meta group's endpoint took only those
/// before there were several groups).
async fn propose(
    State(c): State<Arc<Consensus>>,
    Path(group): Path<GroupId>,
    Json(command): Json<Command>,
) -> Json<Forwarded<Outcome>> {
    Json(c.propose_here(group, command).await)
}

async fn propose_meta(
    State(c): State<Arc<Consensus>>,
    Json(command): Json<Command>,
) -> Json<Forwarded<Outcome>> {
    Json(c.propose_here(INDEX_GROUP, command).await)
}

async fn read_load(
    State(c): State<Arc<Consensus>>,
    Json(report): Json<super::load::ReadReport>,
) -> Json<Forwarded<()>> {
    Json(c.reported_load_here(&report))
}

/// Who asks for a read index (`?from=`; gateways of earlier versions do not say).
#[derive(serde::Deserialize)]
struct ReadIndexFrom {
    from: Option<u64>,
}

async fn read_index(
    State(c): State<Arc<Consensus>>,
    Path(group): Path<GroupId>,
    Query(asker): Query<ReadIndexFrom>,
    Json(()): Json<()>,
) -> Json<Forwarded<Option<u64>>> {
    let from = asker.from.filter(|_| group != INDEX_GROUP);
    Json(c.read_index_here(group, from).await)
}

async fn read_index_meta(
    State(c): State<Arc<Consensus>>,
    Json(()): Json<()>,
) -> Json<Forwarded<Option<u64>>> {
    Json(c.read_index_here(INDEX_GROUP, None).await)
}

/// Reads of a group for a gateway that does not run it (`NotLeader`: no replica here).
async fn read(
    State(c): State<Arc<Consensus>>,
    Path(group): Path<GroupId>,
    Json(reads): Json<Vec<super::remote::RemoteRead>>,
) -> Json<Forwarded<super::remote::RemoteAnswer>> {
    Json(c.read_here(group, &reads).await)
}

/// A new membership for a group this gateway leads (a replica move, or a merge).
async fn align(
    State(c): State<Arc<Consensus>>,
    Path(group): Path<GroupId>,
    Json(body): Json<super::placement::Align>,
) -> Json<Forwarded<()>> {
    Json(c.align_here(group, body.members).await)
}

/// The groups running here, for peers routing keys they own.
async fn groups(State(c): State<Arc<Consensus>>) -> Json<Vec<super::remote::GroupReplica>> {
    Json(c.groups_here())
}

/// This gateway's progress in a group (404 without a replica of it): a merge waits until every
/// member applied the freeze.
async fn progress(
    State(c): State<Arc<Consensus>>,
    Path(group): Path<GroupId>,
) -> Result<Json<super::GroupProgress>, StatusCode> {
    c.progress_here(group)
        .await
        .map(Json)
        .ok_or(StatusCode::NOT_FOUND)
}

/// Stand for election in a group once its leader's lease has run out (its leader is handing
/// the leadership to this gateway).
async fn campaign(
    State(c): State<Arc<Consensus>>,
    Path(group): Path<GroupId>,
    Json(()): Json<()>,
) -> Json<Forwarded<()>> {
    Json(c.campaign_here(group).await)
}

async fn campaign_meta(State(c): State<Arc<Consensus>>, Json(()): Json<()>) -> Json<Forwarded<()>> {
    Json(c.campaign_here(INDEX_GROUP).await)
}

/// Hand this gateway's leadership of a group to another voter (the meta leader balances
/// leaderships); whether the voter leads now.
async fn hand_over(
    State(c): State<Arc<Consensus>>,
    Path(group): Path<GroupId>,
    Json(body): Json<super::HandOver>,
) -> Json<Forwarded<bool>> {
    Json(match c.hand_over(group, body.to).await {
        Ok(moved) => Forwarded::Done(moved),
        Err(e) => Forwarded::Failed(e.to_string()),
    })
}

async fn hand_over_meta(
    State(c): State<Arc<Consensus>>,
    Json(body): Json<super::HandOver>,
) -> Json<Forwarded<bool>> {
    Json(match c.hand_over(INDEX_GROUP, body.to).await {
        Ok(moved) => Forwarded::Done(moved),
        Err(e) => Forwarded::Failed(e.to_string()),
    })
}

/// The leader's liveness and zone probe.
async fn hello(State(c): State<Arc<Consensus>>) -> Json<Hello> {
    Json(c.hello())
}
