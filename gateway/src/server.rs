//! Serving the S3 API over HTTP/1.1 with hyper: a request id on every response (and in the
//! tracing span), per-operation metrics, the edge's refusals ([`crate::s3::edge`]) before s3s
//! sees a request, and (only with `--public-metrics`) `/metrics` for unsigned GETs on the same
//! port; the admin port always serves it.

use std::sync::Arc;
use std::time::Instant;

use cairn_transport::listener::Limits;
use hyper::body::Incoming;
use s3s::service::S3Service;

use crate::metrics::{GatewayMetrics, OperationLabels, RequestLabels};
use crate::s3::auth::OperationSlot;

/// What the S3 port accepts beyond S3 itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrontOptions {
    /// The edge's options.
    pub edge: crate::s3::edge::EdgeOptions,
    /// Serve `/metrics` to unsigned GETs on the S3 port too (it names buckets).
    pub public_metrics: bool,
}

/// A per-request id, also sent as `x-amz-request-id`.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn new_request_id() -> String {
    crate::s3::checksums::hex(&rand::random::<[u8; 8]>()).to_uppercase()
}

/// `true` for a request that carries no SigV4/V2 signature at all.
fn unsigned(req: &http::Request<Incoming>) -> bool {
    !req.headers().contains_key(http::header::AUTHORIZATION)
        && !req
            .uri()
            .query()
            .is_some_and(|q| q.contains("X-Amz-Signature") || q.contains("Signature="))
}

/// How the S3 port serves: TLS or not, the listener's bounds, what it accepts beyond S3.
#[derive(Clone)]
pub struct S3Serving {
    /// HTTPS with this acceptor; plain HTTP without.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// The listener's bounds.
    pub limits: Limits,
    /// The edge and `/metrics`.
    pub front: FrontOptions,
}

/// Serves `s3` on `listener` until `shutdown` turns true; connections already open finish their
/// current request.
pub async fn serve_s3(
    listener: tokio::net::TcpListener,
    s3: S3Service,
    metrics: Arc<GatewayMetrics>,
    refresh_metrics: Arc<dyn Fn() + Send + Sync>,
    serving: S3Serving,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let S3Serving { tls, limits, front } = serving;
    let listener_metrics = metrics.s3_listener.clone();
    let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let (s3, metrics, refresh) = (s3.clone(), metrics.clone(), refresh_metrics.clone());
        async move { handle(req, s3, metrics, refresh, front).await }
    });
    cairn_transport::listener::serve(
        listener,
        service,
        limits,
        tls,
        listener_metrics,
        async move {
            let _ = shutdown.changed().await;
        },
        std::time::Duration::from_secs(10),
    )
    .await
}

/// SDKs send a user's `Content-Encoding` and the transfer's `aws-chunked` as two header fields;
/// s3s refuses duplicate headers, so they are folded into one list joined by "," exactly as
/// SigV4 canonicalises repeated headers, so the signature still matches.
fn merge_content_encoding(headers: &mut http::HeaderMap) {
    let values: Vec<String> = headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    if values.len() > 1
        && let Ok(v) = http::HeaderValue::from_str(&values.join(","))
    {
        headers.insert(http::header::CONTENT_ENCODING, v);
    }
}

/// Puts `<RequestId>` into an XML error body that lacks it (errors raised in handlers do not know
/// the id); error bodies are small and already in memory.
fn add_request_id_to_error(resp: &mut http::Response<s3s::Body>, request_id: &str) {
    let Some(bytes) = resp.body_mut().take_bytes() else {
        return;
    };
    let text = String::from_utf8_lossy(&bytes);
    let patched = match text.rfind("</Error>") {
        Some(at) if !text.contains("<RequestId>") => {
            format!(
                "{}<RequestId>{request_id}</RequestId>{}",
                &text[..at],
                &text[at..]
            )
        }
        _ => {
            *resp.body_mut() = s3s::Body::from(bytes);
            return;
        }
    };
    resp.headers_mut().remove(http::header::CONTENT_LENGTH);
    *resp.body_mut() = s3s::Body::from(patched);
}

async fn handle(
    req: http::Request<Incoming>,
    s3: S3Service,
    metrics: Arc<GatewayMetrics>,
    refresh: Arc<dyn Fn() + Send + Sync>,
    front: FrontOptions,
) -> Result<http::Response<s3s::Body>, s3s::HttpError> {
    let request_id = new_request_id();
    if front.public_metrics
        && req.method() == http::Method::GET
        && req.uri().path() == "/metrics"
        && unsigned(&req)
    {
        refresh();
        let mut resp = http::Response::new(s3s::Body::from(metrics.encode()));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        return Ok(resp);
    }
    if let Err(refusal) =
        crate::s3::edge::screen(req.method(), req.uri().query(), req.headers(), front.edge)
    {
        metrics
            .requests
            .get_or_create(&RequestLabels {
                operation: "Unknown".into(),
                status: refusal.status,
            })
            .inc();
        tracing::debug!(code = refusal.code, "refused at the edge");
        let mut resp = http::Response::new(s3s::Body::from(refusal.xml(&request_id)));
        *resp.status_mut() =
            http::StatusCode::from_u16(refusal.status).unwrap_or(http::StatusCode::BAD_REQUEST);
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/xml"),
        );
        if let Ok(v) = http::HeaderValue::from_str(&request_id) {
            h.insert("x-amz-request-id", v);
        }
        // The body of a refused upload is not read: close the connection after answering.
        h.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        return Ok(resp);
    }
    let span = tracing::info_span!("s3", request_id = %request_id, method = %req.method(), path = %req.uri().path());
    let start = Instant::now();
    let slot = OperationSlot::default();
    let mut req = req.map(s3s::Body::from);
    merge_content_encoding(req.headers_mut());
    req.extensions_mut().insert(slot.clone());
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let result = tracing::Instrument::instrument(s3.call(req), span.clone()).await;
    let mut resp = result?;
    let status = resp.status().as_u16();
    if status >= 400 {
        add_request_id_to_error(&mut resp, &request_id);
    }
    if let Ok(v) = http::HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-amz-request-id", v);
    }
    let operation = slot
        .0
        .lock()
        .expect("op slot")
        .clone()
        .unwrap_or_else(|| "Unknown".into());
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(%operation, status, elapsed_ms = start.elapsed().as_millis() as u64, "request failed");
        } else {
            tracing::debug!(%operation, status, elapsed_ms = start.elapsed().as_millis() as u64, "request done");
        }
    });
    metrics
        .requests
        .get_or_create(&RequestLabels {
            operation: operation.clone(),
            status,
        })
        .inc();
    metrics
        .latency
        .get_or_create(&OperationLabels { operation })
        .observe(start.elapsed().as_secs_f64());
    Ok(resp)
}
