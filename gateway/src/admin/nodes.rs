//! The storage-node registry: list, register, deregister.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::{AdminError, AdminResult, AdminState};

pub(super) async fn list_nodes(
    State(state): State<Arc<AdminState>>,
) -> AdminResult<Vec<crate::data::nodes::NodeReport>> {
    Ok(axum::Json(state.nodes.report()))
}

/// Body of `PUT /admin/v1/nodes/{id}`.
#[derive(Debug, Deserialize)]
pub struct RegisterNode {
    /// The node's zone.
    pub zone: String,
    /// Base URL of its API (`http://host:port`).
    pub endpoint: String,
}

/// Registers a storage node (or changes its zone or endpoint) in the index's registry: this
/// gateway writes to it at once, every other within a few seconds. 201 for a new node, 200
/// otherwise.
pub(super) async fn register_node(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
    axum::Json(req): axum::Json<RegisterNode>,
) -> Result<(StatusCode, axum::Json<crate::data::nodes::NodeReport>), AdminError> {
    let bad = |m: String| AdminError(StatusCode::BAD_REQUEST, "InvalidArgument", m);
    if req.zone.is_empty() {
        return Err(bad("a storage node needs a zone".into()));
    }
    let config = crate::data::nodes::parse_node(&format!("{id}@{}={}", req.zone, req.endpoint))
        .map_err(bad)?;
    let change = state
        .index
        .put_storage_node(crate::data::registration::record_of(&config))
        .await?;
    state.nodes.register(config.clone());
    let status = if change == crate::index::NodeRegistration::Added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let report = state
        .nodes
        .report()
        .into_iter()
        .find(|r| r.id == config.id.as_str())
        .expect("just registered");
    Ok((status, axum::Json(report)))
}

/// Removes a storage node from the index's registry: no gateway places new shards on it any
/// more (within a few seconds; a gateway whose `--node` flags list it keeps it until restarted
/// without it). Blobs on it are still read from the endpoint they recorded, so move or repair
/// its data before stopping it. 204, or 404 `NoSuchNode`.
pub(super) async fn deregister_node(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, AdminError> {
    if !state.index.delete_storage_node(&id).await? {
        return Err(AdminError(
            StatusCode::NOT_FOUND,
            "NoSuchNode",
            format!("storage node {id} is not registered"),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}
