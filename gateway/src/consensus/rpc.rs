//! The internal endpoints gateways call on each other (on the admin port, behind its token):
//! Raft's own messages, index proposals and read-index requests forwarded to the leader, and the
//! followers' read-load reports, and the leader's liveness probe.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::proposal::{Outcome, Proposal};
use super::store::GroupId;
use super::{Consensus, Forwarded, Hello, TypeConfig};

/// Raft batches carry inline objects; they may be far larger than axum's 2 MiB default.
const BODY_LIMIT: usize = 256 << 20;

/// The internal routes, for the admin router (which adds the token check).
pub fn router<S: Clone + Send + Sync + 'static>(consensus: Arc<Consensus>) -> Router<S> {
    Router::new()
        .route("/internal/v1/raft/{group}/append", post(append))
        .route("/internal/v1/raft/{group}/vote", post(vote))
        .route("/internal/v1/raft/{group}/snapshot", post(snapshot))
        .route("/internal/v1/index/propose", post(propose))
        .route("/internal/v1/index/read-index", post(read_index))
        .route("/internal/v1/index/read-load", post(read_load))
        .route("/internal/v1/index/hello", get(hello))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(consensus)
}

/// The group a Raft message is for, if this gateway has a replica of it (404 otherwise: the sender
/// retries, as it does for an unreachable peer).
fn replica(c: &Consensus, group: GroupId) -> Result<&openraft::Raft<TypeConfig>, StatusCode> {
    if group == c.group() {
        Ok(c.raft())
    } else {
        Err(StatusCode::NOT_FOUND)
    }
}

type Answer<T> = Result<Json<T>, StatusCode>;

async fn append(
    State(c): State<Arc<Consensus>>,
    Path(group): Path<GroupId>,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> Answer<Result<AppendEntriesResponse<u64>, RaftError<u64>>> {
    Ok(Json(replica(&c, group)?.append_entries(req).await))
}

async fn vote(
    State(c): State<Arc<Consensus>>,
    Path(group): Path<GroupId>,
    Json(req): Json<VoteRequest<u64>>,
) -> Answer<Result<VoteResponse<u64>, RaftError<u64>>> {
    Ok(Json(replica(&c, group)?.vote(req).await))
}

async fn snapshot(
    State(c): State<Arc<Consensus>>,
    Path(group): Path<GroupId>,
    Json(req): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Answer<Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>> {
    Ok(Json(replica(&c, group)?.install_snapshot(req).await))
}

async fn propose(
    State(c): State<Arc<Consensus>>,
    Json(proposal): Json<Proposal>,
) -> Json<Forwarded<Outcome>> {
    Json(c.propose_here(proposal).await)
}

async fn read_load(
    State(c): State<Arc<Consensus>>,
    Json(report): Json<super::store::ReadReport>,
) -> Json<Forwarded<()>> {
    Json(c.reported_reads_here(&report))
}

async fn read_index(
    State(c): State<Arc<Consensus>>,
    Json(()): Json<()>,
) -> Json<Forwarded<Option<u64>>> {
    Json(c.read_index_here().await)
}

/// The leader's liveness and zone probe.
async fn hello(State(c): State<Arc<Consensus>>) -> Json<Hello> {
    Json(c.hello())
}
