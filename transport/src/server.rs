//! Checking the fleet signature on the receiving side: an axum middleware.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::signing::{AuthError, Verifier, sha256};

/// Told the reason label of every refused request (for a `..._auth_rejected_total{reason}`
/// counter).
pub type RejectCounter = Arc<dyn Fn(&'static str) + Send + Sync>;

/// The label of a refusal counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ReasonLabels {
    /// [`AuthError::reason`].
    pub reason: String,
}

/// Refused requests by reason.
pub type RejectedFamily = prometheus_client::metrics::family::Family<
    ReasonLabels,
    prometheus_client::metrics::counter::Counter,
>;

/// A [`RejectCounter`] counting into `family`.
pub fn counting_into(family: RejectedFamily) -> RejectCounter {
    Arc::new(move |reason| {
        family
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    })
}

/// What the middleware needs: the verifier, whether bodies may be unsigned, and a counter.
#[derive(Clone)]
pub struct FleetAuth {
    /// Checks signatures.
    pub verifier: Arc<Verifier>,
    /// Accept `UNSIGNED-PAYLOAD` (streamed shard data, checked by block checksums); when false,
    /// every body must be hashed into its signature.
    pub allow_unsigned_payload: bool,
    /// The largest body hashed here (bodies with a signed hash are read whole before the
    /// handler runs).
    pub body_limit: usize,
    /// Counts refusals.
    pub rejected: RejectCounter,
}

fn refuse(e: &AuthError) -> Response {
    let body = format!(
        "{{\"error\":{{\"code\":\"Unauthorized\",\"message\":\"{}\"}}}}",
        e.to_string().replace('"', "'")
    );
    (
        e.status(),
        [(http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// Lets a request through only if it carries a valid fleet signature (and, when it signs its
/// body's hash, that body). Use with `axum::middleware::from_fn_with_state`.
pub async fn require_fleet_signature(
    State(auth): State<FleetAuth>,
    req: Request,
    next: Next,
) -> Response {
    match check_signed(&auth, req).await {
        Ok(req) => next.run(req).await,
        Err(refusal) => refusal,
    }
}

/// Checks a request's signature (and its body against a signed hash, reading the body up to
/// `auth.body_limit`): the request to pass on, or the refusal to answer with.
pub async fn check_signed(auth: &FleetAuth, req: Request) -> Result<Request, Response> {
    let checked = auth.verifier.verify(
        req.method(),
        req.uri().path(),
        req.uri().query(),
        req.headers(),
    );
    let verified = match checked {
        Ok(v) => v,
        Err(e) => {
            (auth.rejected)(e.reason());
            tracing::warn!(reason = e.reason(), path = %req.uri().path(), error = %e, "refused a signed request");
            return Err(refuse(&e));
        }
    };
    let Some(expected) = verified.payload_sha256 else {
        if auth.allow_unsigned_payload {
            return Ok(req);
        }
        let e = AuthError::Malformed("this endpoint needs a signed body hash");
        (auth.rejected)(e.reason());
        return Err(refuse(&e));
    };
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, auth.body_limit).await {
        Ok(b) => b,
        Err(_) => {
            return Err((
                http::StatusCode::PAYLOAD_TOO_LARGE,
                "body too large or broken",
            )
                .into_response());
        }
    };
    if sha256(&bytes) != expected {
        let e = AuthError::PayloadMismatch;
        (auth.rejected)(e.reason());
        return Err(refuse(&e));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}
