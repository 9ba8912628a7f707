//! Access keys: list, create (scoped to buckets or not), delete.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::{AdminError, AdminResult, AdminState};
use crate::index::now_ms;
use crate::index::records::AccessKeyRecord;
pub use cairn_admin_api::{CreateKey, CreatedKey, KeyInfo};

pub(super) async fn list_keys(State(state): State<Arc<AdminState>>) -> AdminResult<Vec<KeyInfo>> {
    let keys = state.index.list_access_keys().await?;
    Ok(axum::Json(
        keys.into_iter()
            .map(|k| KeyInfo {
                access_key_id: k.access_key_id,
                name: k.name,
                buckets: k.buckets,
                created_ms: k.created_ms,
            })
            .collect(),
    ))
}

pub(super) fn random_string(len: usize, alphabet: &[u8]) -> String {
    (0..len)
        .map(|_| alphabet[rand::random_range(0..alphabet.len())] as char)
        .collect()
}

/// A fresh key pair in the format AWS uses (`AK...` 20 chars, 40-char secret).
pub fn new_key_pair() -> (String, String) {
    let id = format!(
        "CK{}",
        random_string(18, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    );
    let secret = random_string(
        40,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    );
    (id, secret)
}

pub(super) async fn create_key(
    State(state): State<Arc<AdminState>>,
    axum::Json(req): axum::Json<CreateKey>,
) -> Result<(StatusCode, axum::Json<CreatedKey>), AdminError> {
    let (id, secret) = new_key_pair();
    state
        .index
        .put_access_key(AccessKeyRecord {
            access_key_id: id.clone(),
            secret_key: secret.clone(),
            name: req.name,
            buckets: req.buckets,
            created_ms: now_ms(),
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedKey {
            access_key_id: id,
            secret_key: secret,
        }),
    ))
}

pub(super) async fn delete_key(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, AdminError> {
    let deleted = state.index.delete_access_key(&id).await?;
    state.keys.forget(&id);
    if deleted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AdminError(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            format!("no access key {id}"),
        ))
    }
}
