//! A `reqwest` client whose requests carry the fleet signature.

use std::sync::Arc;
use std::time::Duration;

use crate::secret::Secret;
use crate::signing::{Signer, sha256};

/// Timeouts every internal client has. There is no client-wide deadline on purpose: a shard of
/// a large object streams for as long as it takes (reqwest's read timeout would also run during
/// an upload), so every call sets its own: control calls a fixed one, data calls one that grows
/// with the bytes they move, and streamed reads a deadline per block.
#[derive(Debug, Clone, Copy)]
pub struct ClientTimeouts {
    /// TCP connect.
    pub connect: Duration,
    /// Idle pooled connections are closed after this.
    pub pool_idle: Duration,
    /// Deadline of a call that moves no bulk data; also the fixed part of a transfer's
    /// deadline ([`ClientTimeouts::transfer`]).
    pub control: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(3),
            pool_idle: Duration::from_secs(30),
            control: Duration::from_secs(30),
        }
    }
}

impl ClientTimeouts {
    /// The deadline of a call moving `bytes`: the control deadline, plus a second per MiB (a
    /// peer slower than 1 MiB/s is as good as stalled).
    pub fn transfer(&self, bytes: u64) -> Duration {
        self.control + Duration::from_secs(bytes / (1 << 20))
    }
}

/// Builds the plain HTTP client of a fleet process, with `timeouts`.
pub fn http_client(timeouts: ClientTimeouts) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .pool_idle_timeout(timeouts.pool_idle)
        .build()
        .expect("a reqwest client without TLS options builds")
}

/// An HTTP client that signs every request with the fleet credential. Cheap to clone (the
/// connection pool and the signer are shared).
#[derive(Clone, Debug)]
pub struct FleetClient {
    http: reqwest::Client,
    signer: Arc<Signer>,
    timeouts: ClientTimeouts,
}

impl FleetClient {
    /// Signs with `signer`, sends with a client built for `timeouts`.
    pub fn new(timeouts: ClientTimeouts, signer: Arc<Signer>) -> Self {
        Self {
            http: http_client(timeouts),
            signer,
            timeouts,
        }
    }

    /// A client with default timeouts signing with `secret` (tests and tools).
    pub fn with_secret(secret: &Secret) -> Self {
        Self::new(ClientTimeouts::default(), Arc::new(Signer::new(secret)))
    }

    /// The timeouts its callers apply.
    pub fn timeouts(&self) -> &ClientTimeouts {
        &self.timeouts
    }

    /// The underlying client, to build requests with.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The signer.
    pub fn signer(&self) -> &Arc<Signer> {
        &self.signer
    }

    /// Signs the request for `target` and sends it. A body given as bytes is hashed into the
    /// signature; a streamed body is sent as `UNSIGNED-PAYLOAD`.
    pub async fn send(
        &self,
        target: &str,
        request: reqwest::RequestBuilder,
    ) -> reqwest::Result<reqwest::Response> {
        self.sign_and_send(target, request, true).await
    }

    /// Like [`FleetClient::send`], but sends the body as `UNSIGNED-PAYLOAD` even when it is in
    /// memory: for shard data, which the receiver streams to disk rather than buffering it to
    /// check a hash (its blocks are checked by checksums instead).
    pub async fn send_unhashed(
        &self,
        target: &str,
        request: reqwest::RequestBuilder,
    ) -> reqwest::Result<reqwest::Response> {
        self.sign_and_send(target, request, false).await
    }

    async fn sign_and_send(
        &self,
        target: &str,
        request: reqwest::RequestBuilder,
        hash_body: bool,
    ) -> reqwest::Result<reqwest::Response> {
        let mut request = request.build()?;
        let payload = match request.body() {
            None => Some(sha256(b"")),
            Some(body) if hash_body => body.as_bytes().map(sha256),
            Some(_) => None,
        };
        let url = request.url().clone();
        let method = request.method().clone();
        self.signer.sign(
            &method,
            url.path(),
            url.query(),
            target,
            payload,
            request.headers_mut(),
        );
        self.http.execute(request).await
    }
}
