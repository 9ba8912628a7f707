//! The storage node's HTTP API (`/v1`), health endpoints and `/metrics`.
//!
//! Shard metadata travels in `x-cairn-*` headers so the body can be the raw shard payload, streamed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use bytes::Bytes;
use cairn_transport::server::{FleetAuth, require_fleet_signature};

pub use crate::api::{
    ErrorBody, ErrorDetail, ListQuery, ListReply, NodeStatus, Peers, PutShardReply,
    StartScrubReply, headers, parse_placement, placement_header,
};
use crate::codec::ErasureProfile;
use crate::format::{ShardHeader, ShardSpec};
use crate::ids::{NodeId, ObjectId, ShardIndex};
use crate::ingest::{IngestError, store_stream};
use crate::metrics::{EndpointLabels, NodeMetrics, RequestLabels};
use crate::peers::PeerDirectory;
use crate::scrubber::{ScrubHandle, ScrubStatus};
use crate::store::{ShardKey, ShardStore, StoreError, fs_space};

/// State shared by the handlers.
pub struct NodeState {
    /// This node's id.
    pub node_id: NodeId,
    /// This node's failure zone.
    pub zone: String,
    /// The shard files.
    pub store: Arc<ShardStore>,
    /// Metrics.
    pub metrics: Arc<NodeMetrics>,
    /// The scrubber's status and trigger.
    pub scrub: ScrubHandle,
    /// Data directory (for disk space figures).
    pub data_dir: std::path::PathBuf,
    /// The fleet's storage nodes (the only peers repair talks to).
    pub peers: PeerDirectory,
    /// A shard body that sends nothing for this long loses its request; so does a reader that
    /// takes nothing for this long.
    pub stall_timeout: Duration,
}

/// An API error: HTTP status plus a stable code, rendered as `{"error":{"code","message"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequest", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.into(),
                message: self.message,
            },
        };
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let (status, code) = match &e {
            StoreError::NotFound { .. } => (StatusCode::NOT_FOUND, "NoSuchShard"),
            StoreError::Corrupt { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "CorruptShard"),
            StoreError::DiskFull { .. } => (StatusCode::INSUFFICIENT_STORAGE, "DiskFull"),
            StoreError::InvalidSpec(_) => (StatusCode::BAD_REQUEST, "InvalidShardSpec"),
            StoreError::WrongLength { .. } => (StatusCode::BAD_REQUEST, "WrongLength"),
            StoreError::BadRange { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "InvalidRange"),
            StoreError::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, "IoError"),
        };
        Self::new(status, code, e.to_string())
    }
}

/// Largest JSON body accepted (a peer list).
const BODY_LIMIT: usize = 4 << 20;

/// Builds the router for a node: `/v1` only for requests signed with the fleet credential for
/// this node (`auth`); health and metrics for anyone who can reach the port.
pub fn router(state: Arc<NodeState>, auth: FleetAuth) -> Router {
    let api = Router::new()
        .route("/v1/shards", get(list_shards))
        .route(
            "/v1/shards/{object}/{index}",
            get(get_shard)
                .head(head_shard)
                .put(put_shard)
                .delete(delete_shard),
        )
        .route("/v1/scrub", get(scrub_status).post(start_scrub))
        .route("/v1/status", get(node_status))
        .route("/v1/peers", put(put_peers).get(get_peers))
        .layer(middleware::from_fn_with_state(
            FleetAuth {
                body_limit: BODY_LIMIT,
                ..auth
            },
            require_fleet_signature,
        ));
    Router::new()
        .merge(api)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Request id, tracing span and metrics around every request.
async fn observe(State(state): State<Arc<NodeState>>, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().to_string();
    let request_id = format!("{:016x}", rand_u64());
    let span = tracing::info_span!("request", %request_id, %method, path = %req.uri().path());
    let start = Instant::now();
    let mut resp = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    let status = resp.status().as_u16();
    span.in_scope(|| {
        tracing::debug!(
            status,
            elapsed_ms = start.elapsed().as_millis() as u64,
            "done"
        )
    });
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(headers::REQUEST_ID, v);
    }
    let m = &state.metrics;
    m.requests
        .get_or_create(&RequestLabels {
            endpoint: endpoint.clone(),
            method,
            status,
        })
        .inc();
    m.latency
        .get_or_create(&EndpointLabels { endpoint })
        .observe(start.elapsed().as_secs_f64());
    resp
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

fn parse_key(object: &str, index: &str) -> Result<(ObjectId, ShardIndex), ApiError> {
    let object = object.parse().map_err(|e: crate::ids::IdError| {
        ApiError::new(StatusCode::BAD_REQUEST, "InvalidObjectId", e.to_string())
    })?;
    let index = index.parse().map_err(|e: crate::ids::IdError| {
        ApiError::new(StatusCode::BAD_REQUEST, "InvalidShardIndex", e.to_string())
    })?;
    Ok((object, index))
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Result<&'a str, ApiError> {
    h.get(name)
        .ok_or_else(|| ApiError::bad_request(format!("missing header {name}")))?
        .to_str()
        .map_err(|_| ApiError::bad_request(format!("header {name} is not ASCII")))
}

fn header_num<T: std::str::FromStr>(h: &HeaderMap, name: &str) -> Result<T, ApiError> {
    header_str(h, name)?
        .parse()
        .map_err(|_| ApiError::bad_request(format!("header {name} is not a valid number")))
}

fn spec_from_headers(
    object_id: ObjectId,
    shard_index: ShardIndex,
    h: &HeaderMap,
) -> Result<ShardSpec, ApiError> {
    let k: u8 = header_num(h, headers::K)?;
    let m: u8 = header_num(h, headers::M)?;
    let profile = ErasureProfile::new(k, m)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "InvalidShardSpec", e.to_string()))?;
    let placement =
        parse_placement(header_str(h, headers::PLACEMENT)?).map_err(ApiError::bad_request)?;
    let spec = ShardSpec {
        object_id,
        shard_index,
        profile,
        stripe_size: header_num(h, headers::STRIPE_SIZE)?,
        object_length: header_num(h, headers::OBJECT_LENGTH)?,
        placement,
    };
    spec.validate()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "InvalidShardSpec", e.to_string()))?;
    Ok(spec)
}

fn spec_headers(header: &ShardHeader, content_length: u64) -> HeaderMap {
    let s = &header.spec;
    let mut h = HeaderMap::new();
    let mut put = |name: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(name, v);
        }
    };
    put(headers::K, s.profile.data_shards().to_string());
    put(headers::M, s.profile.parity_shards().to_string());
    put(headers::STRIPE_SIZE, s.stripe_size.to_string());
    put(headers::OBJECT_LENGTH, s.object_length.to_string());
    put(headers::PLACEMENT, placement_header(&s.placement));
    put(header::CONTENT_LENGTH.as_str(), content_length.to_string());
    h
}

async fn put_shard(
    State(state): State<Arc<NodeState>>,
    Path((object, index)): Path<(String, String)>,
    h: HeaderMap,
    body: Body,
) -> Result<(StatusCode, axum::Json<PutShardReply>), ApiError> {
    let (object, index) = parse_key(&object, &index)?;
    let spec = spec_from_headers(object, index, &h)?;
    let expected = spec.geometry().shard_payload_len();
    if let Some(len) = h.get(header::CONTENT_LENGTH) {
        let len: u64 = len
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ApiError::bad_request("bad Content-Length"))?;
        if len != expected {
            return Err(StoreError::WrongLength { expected, got: len }.into());
        }
    }
    let mut body = body.into_data_stream();
    let stored = store_stream(state.store.clone(), spec, &mut body, state.stall_timeout).await;
    let header = match stored {
        Ok(h) => h,
        Err(e) => {
            if matches!(e, IngestError::Store(StoreError::DiskFull { .. })) {
                state.metrics.disk_full_rejections.inc();
            }
            tracing::warn!(%object, %index, error = %e, "shard write failed");
            if !matches!(e, IngestError::Stalled(_) | IngestError::Body(_)) {
                // Refused before (or while) reading the body: read the rest, within bounds,
                // so the client sees this error rather than a broken pipe.
                drain_body(&mut body, state.stall_timeout).await;
            }
            return Err(match e {
                IngestError::Store(e) => e.into(),
                IngestError::Body(m) => ApiError::bad_request(m),
                IngestError::Stalled(_) => {
                    ApiError::new(StatusCode::REQUEST_TIMEOUT, "RequestTimeout", e.to_string())
                }
            });
        }
    };
    state.metrics.shards_written.inc();
    state.metrics.bytes_written.inc_by(expected);
    tracing::debug!(%object, %index, bytes = expected, "shard stored");
    Ok((
        StatusCode::CREATED,
        axum::Json(PutShardReply {
            bytes: expected,
            blocks: header.block_checksums.len() as u64,
        }),
    ))
}

/// Runs blocking store I/O off the async workers; a panicked task becomes a 500, not a crash.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal", e.to_string()))
}

/// Most of a refused body read and discarded, so the client sees the error response instead of
/// a broken pipe; past this (or a stall) the connection is closed instead.
const MAX_DRAIN_BYTES: u64 = 64 << 20;

async fn drain_body<S>(body: &mut S, stall: Duration)
where
    S: futures_util::Stream<Item = Result<Bytes, axum::Error>> + Unpin,
{
    use futures_util::StreamExt;
    let mut drained = 0u64;
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout(stall, body.next()).await {
        drained += chunk.len() as u64;
        if drained > MAX_DRAIN_BYTES {
            break;
        }
    }
}

async fn open(
    state: &Arc<NodeState>,
    object: ObjectId,
    index: ShardIndex,
) -> Result<crate::store::ShardFile, ApiError> {
    let st = state.clone();
    let r = blocking(move || st.store.open_shard(object, index)).await?;
    r.inspect_err(|e| {
        if matches!(e, StoreError::Corrupt { .. }) {
            state.metrics.corrupt_reads.inc();
            tracing::error!(%object, %index, error = %e, "corrupt shard header");
        }
    })
    .map_err(ApiError::from)
}

async fn head_shard(
    State(state): State<Arc<NodeState>>,
    Path((object, index)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (object, index) = parse_key(&object, &index)?;
    let file = open(&state, object, index).await?;
    Ok((
        spec_headers(file.header(), file.payload_len()),
        Body::empty(),
    )
        .into_response())
}

/// Parses a single `bytes=` range against a payload of `len` bytes into `start..end`.
pub fn parse_range(value: &str, len: u64) -> Option<(u64, u64)> {
    let spec = value.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        (len.saturating_sub(n), len)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            len
        } else {
            b.parse::<u64>().ok()?.saturating_add(1).min(len)
        };
        (start, end)
    };
    (start < end && start < len).then_some((start, end))
}

async fn get_shard(
    State(state): State<Arc<NodeState>>,
    Path((object, index)): Path<(String, String)>,
    h: HeaderMap,
) -> Result<Response, ApiError> {
    let (object, index) = parse_key(&object, &index)?;
    let file = open(&state, object, index).await?;
    let len = file.payload_len();
    let (status, start, end) = match h.get(header::RANGE) {
        None => (StatusCode::OK, 0, len),
        Some(v) => {
            let r = v.to_str().ok().and_then(|v| parse_range(v, len));
            let (s, e) = r.ok_or_else(|| {
                ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "InvalidRange",
                    format!("unsatisfiable range for {len} bytes"),
                )
            })?;
            (StatusCode::PARTIAL_CONTENT, s, e)
        }
    };
    let mut resp_headers = spec_headers(file.header(), end - start);
    if status == StatusCode::PARTIAL_CONTENT {
        resp_headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {start}-{}/{len}", end - 1)).expect("ascii"),
        );
    }
    // One block at a time is read and verified on a blocking thread, then handed to the
    // response as the client takes it: memory stays at a block whatever the shard size, and a
    // client that stops reading holds no thread (the listener ends its connection). On
    // corruption the stream ends in an error, which aborts the response: the client never
    // receives unverified bytes.
    let file = Arc::new(file);
    let stream =
        futures_util::stream::unfold(Some((start, file, state)), move |cursor| async move {
            let (pos, file, state) = cursor?;
            if pos >= end {
                return None;
            }
            let g = file.header().spec.geometry();
            let b = g.block_of(pos);
            let block_end = (g.block_offset(b) + g.block_len(b)).min(end);
            let reader = file.clone();
            let chunk = blocking(move || reader.read_range(pos, block_end)).await;
            match chunk {
                Ok(Ok(c)) => {
                    state.metrics.bytes_read.inc_by(block_end - pos);
                    Some((Ok(Bytes::from(c)), Some((block_end, file, state))))
                }
                Ok(Err(e)) => {
                    if matches!(e, StoreError::Corrupt { .. }) {
                        state.metrics.corrupt_reads.inc();
                    }
                    tracing::error!(%object, %index, error = %e, "shard read failed mid-stream");
                    Some((Err(std::io::Error::other(e.to_string())), None))
                }
                Err(e) => Some((Err(std::io::Error::other(e.message)), None)),
            }
        });
    Ok((status, resp_headers, Body::from_stream(stream)).into_response())
}

async fn delete_shard(
    State(state): State<Arc<NodeState>>,
    Path((object, index)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (object, index) = parse_key(&object, &index)?;
    let st = state.clone();
    let existed = blocking(move || st.store.delete(object, index)).await??;
    if existed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(StoreError::NotFound { object, index }.into())
    }
}

async fn list_shards(
    State(state): State<Arc<NodeState>>,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<ListReply>, ApiError> {
    let limit = q.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be 1..=10000"));
    }
    let after = match q.after.as_deref() {
        None => None,
        Some(a) => {
            let (o, i) = a
                .split_once('.')
                .ok_or_else(|| ApiError::bad_request("after must be object.index"))?;
            let (object_id, shard_index) = parse_key(o, i)?;
            Some(ShardKey {
                object_id,
                shard_index,
            })
        }
    };
    let st = state.clone();
    let shards = blocking(move || st.store.list(after.as_ref(), limit)).await??;
    let next = (shards.len() == limit)
        .then(|| {
            shards
                .last()
                .map(|k| format!("{}.{}", k.object_id, k.shard_index))
        })
        .flatten();
    Ok(axum::Json(ListReply { shards, next }))
}

async fn node_status(
    State(state): State<Arc<NodeState>>,
) -> Result<axum::Json<NodeStatus>, ApiError> {
    let (_, total_bytes) = fs_space(&state.data_dir).map_err(StoreError::from)?;
    let available_bytes = state.store.available_bytes()?;
    let (shards, shard_bytes) = state.store.stored();
    Ok(axum::Json(NodeStatus {
        node_id: state.node_id.clone(),
        zone: state.zone.clone(),
        available_bytes,
        total_bytes,
        shards,
        shard_bytes,
        peers_digest: state.peers.digest(),
    }))
}

async fn put_peers(
    State(state): State<Arc<NodeState>>,
    axum::Json(peers): axum::Json<Peers>,
) -> Result<StatusCode, ApiError> {
    let dir = state.peers.clone();
    let replaced = tokio::task::spawn_blocking(move || dir.replace(peers))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal", e.to_string()))?;
    replaced.map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_peers(State(state): State<Arc<NodeState>>) -> axum::Json<Peers> {
    axum::Json(state.peers.peers())
}

async fn start_scrub(
    State(state): State<Arc<NodeState>>,
) -> (StatusCode, axum::Json<StartScrubReply>) {
    let started = state.scrub.start_now();
    let status = if started {
        StatusCode::ACCEPTED
    } else {
        StatusCode::CONFLICT
    };
    (status, axum::Json(StartScrubReply { started }))
}

async fn scrub_status(State(state): State<Arc<NodeState>>) -> axum::Json<ScrubStatus> {
    axum::Json(state.scrub.status())
}

async fn readyz(State(state): State<Arc<NodeState>>) -> Response {
    match state.store.available_bytes() {
        Ok(_) => "ready".into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn metrics(State(state): State<Arc<NodeState>>) -> Response {
    if let Ok((avail, total)) = fs_space(&state.data_dir) {
        state.metrics.disk_free.set(avail as i64);
        state
            .metrics
            .disk_used
            .set(total.saturating_sub(avail) as i64);
    }
    let (shards, bytes) = state.store.stored();
    state.metrics.shards_stored.set(shards as i64);
    state.metrics.shard_bytes_stored.set(bytes as i64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.encode(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 10)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 100)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 100)));
        assert_eq!(parse_range("bytes=50-500", 100), Some((50, 100)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-4", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }

    proptest::proptest! {
        /// Any header text and shard length: never a panic, and a range it accepts is inside
        /// the shard and not empty.
        #[test]
        fn arbitrary_ranges_stay_inside_the_shard(value in "[ -~]{0,40}", len in 0u64..u64::MAX) {
            for v in [value.clone(), format!("bytes={value}")] {
                if let Some((start, end)) = parse_range(&v, len) {
                    proptest::prop_assert!(start < end && end <= len);
                }
            }
        }

        #[test]
        fn numeric_ranges_stay_inside_the_shard(a in 0u64..2000, b in 0u64..2000, len in 0u64..1000) {
            for v in [format!("bytes={a}-{b}"), format!("bytes=-{b}"), format!("bytes={a}-")] {
                if let Some((start, end)) = parse_range(&v, len) {
                    proptest::prop_assert!(start < end && end <= len, "{} of {}", v, len);
                }
            }
        }
    }
}
