//! Serving the S3 API over HTTP/1.1 with hyper: a request id on every response (and in the
//! tracing span), per-operation metrics, and `/metrics` for unsigned GETs on the same port.

use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use s3s::service::S3Service;

use crate::metrics::{GatewayMetrics, OperationLabels, RequestLabels};
use crate::s3::auth::OperationSlot;

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

/// Serves `s3` on `listener` until `shutdown` turns true; connections already open finish their
/// current request.
/// With `tls`, connections are HTTPS.
pub async fn serve_s3(
    listener: tokio::net::TcpListener,
    s3: S3Service,
    metrics: Arc<GatewayMetrics>,
    refresh_metrics: Arc<dyn Fn() + Send + Sync>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = shutdown.changed() => return Ok(()),
        };
        let _ = socket.set_nodelay(true);
        let (s3, metrics, refresh) = (s3.clone(), metrics.clone(), refresh_metrics.clone());
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let (s3, metrics, refresh) = (s3.clone(), metrics.clone(), refresh.clone());
            async move { handle(req, s3, metrics, refresh).await }
        });
        let tls = tls.clone();
        tokio::spawn(async move {
            let http = hyper::server::conn::http1::Builder::new();
            let served = match tls {
                None => http.serve_connection(TokioIo::new(socket), service).await,
                // The handshake runs in the connection's task, so a slow client holds up no one.
                Some(acceptor) => match acceptor.accept(socket).await {
                    Ok(stream) => http.serve_connection(TokioIo::new(stream), service).await,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                },
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
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
) -> Result<http::Response<s3s::Body>, s3s::HttpError> {
    let request_id = new_request_id();
    if req.method() == http::Method::GET && req.uri().path() == "/metrics" && unsigned(&req) {
        refresh();
        let mut resp = http::Response::new(s3s::Body::from(metrics.encode()));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4"),
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
