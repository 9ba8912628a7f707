//! The fleet credential: HMAC-SHA256 signatures on internal HTTP requests.
//!
//! A signed request carries three headers:
//! - `x-cairn-target`: who the request is for (a storage node's id, a gateway's id), so a request
//!   captured on its way to one process cannot be replayed against another;
//! - `x-cairn-content-sha256`: the SHA-256 of the body, or `UNSIGNED-PAYLOAD` for a streamed body
//!   whose integrity is checked another way (shard data: per-block checksums on the node, and
//!   the hashes the gateway recorded at write time);
//! - `x-cairn-auth`: `v1 key=ID sender=HEX seq=N ts=MS sig=HEX`, the signature over the method,
//!   path, query, the key id, sender, sequence and timestamp, and every `x-cairn-*` header and
//!   `range` (sorted by name).
//!
//! The receiver checks the key, the target, the timestamp (within [`MAX_SKEW_MS`] of its clock,
//! and not before it started), the signature, and then that the (sender, sequence) is new
//! ([`crate::replay`]). The key id is derived from the secret, so a receiver can hold the current
//! and the previous secret while a fleet rotates.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Method};
use ring::{digest, hmac};

use crate::replay::{Refusal, ReplayGuard};
use crate::secret::{Secret, hex};

/// The signature header.
pub const AUTH_HEADER: &str = "x-cairn-auth";
/// The body's SHA-256 (hex), or [`UNSIGNED_PAYLOAD`].
pub const CONTENT_SHA256_HEADER: &str = "x-cairn-content-sha256";
/// Who the request is for.
pub const TARGET_HEADER: &str = "x-cairn-target";
/// The content hash of a body that is not hashed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// How far a request's timestamp may be from the receiver's clock.
pub const MAX_SKEW_MS: u64 = 5 * 60 * 1000;
/// A sender unheard of for this long is forgotten by the replay guard: longer than twice the
/// skew, so that none of its requests can still pass the timestamp check.
const SENDER_EXPIRY_MS: u64 = 2 * MAX_SKEW_MS + 60 * 1000;
const SCHEME: &str = "CAIRN-HMAC-SHA256-V1";

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// An HMAC key and its public id (the first 8 hex digits of a hash of the secret).
struct Key {
    id: String,
    key: hmac::Key,
}

impl Key {
    fn new(secret: &Secret) -> Self {
        let mut id_input = b"cairn fleet key id\0".to_vec();
        id_input.extend_from_slice(secret.expose().as_bytes());
        Self {
            id: hex(&sha256(&id_input)[..4]),
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes()),
        }
    }
}

/// The fields of an `x-cairn-auth` header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AuthFields<'a> {
    key: &'a str,
    sender: u64,
    seq: u64,
    ts: u64,
    sig: &'a str,
}

impl<'a> AuthFields<'a> {
    fn parse(value: &'a str) -> Option<Self> {
        let mut parts = value.split(' ');
        if parts.next()? != "v1" {
            return None;
        }
        let mut field = |name: &str| parts.next()?.strip_prefix(name)?.strip_prefix('=');
        let key = field("key")?;
        let sender = u64::from_str_radix(field("sender")?, 16).ok()?;
        let seq = field("seq")?.parse().ok()?;
        let ts = field("ts")?.parse().ok()?;
        let sig = field("sig")?;
        if parts.next().is_some() || sig.len() != 64 || key.is_empty() || key.len() > 16 {
            return None;
        }
        Some(Self {
            key,
            sender,
            seq,
            ts,
            sig,
        })
    }
}

/// Who signed a request, with which number, when.
struct Stamp<'a> {
    key: &'a str,
    sender: u64,
    seq: u64,
    ts: u64,
}

/// The bytes a signature covers.
fn string_to_sign(
    method: &Method,
    path: &str,
    query: Option<&str>,
    stamp: &Stamp<'_>,
    headers: &HeaderMap,
) -> Vec<u8> {
    let Stamp {
        key,
        sender,
        seq,
        ts,
    } = stamp;
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(SCHEME.as_bytes());
    for part in [method.as_str(), path, query.unwrap_or("")] {
        out.push(b'\n');
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(format!("\n{key} {sender:016x} {seq} {ts}").as_bytes());
    let mut names: Vec<&str> = headers
        .keys()
        .map(|n| n.as_str())
        .filter(|n| (n.starts_with("x-cairn-") && *n != AUTH_HEADER) || *n == "range")
        .collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        out.push(b'\n');
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        for (i, v) in headers.get_all(name).iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(v.as_bytes());
        }
    }
    out
}

/// Signs requests with the fleet secret. One per process: its sender id is random and its
/// sequence numbers count up, so every request it signs is unique.
pub struct Signer {
    key: Key,
    sender: u64,
    seq: AtomicU64,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key", &self.key.id)
            .field("sender", &format_args!("{:016x}", self.sender))
            .finish()
    }
}

impl Signer {
    /// A signer with `secret` and a fresh random sender id.
    pub fn new(secret: &Secret) -> Self {
        use ring::rand::SecureRandom;
        let mut sender = [0u8; 8];
        ring::rand::SystemRandom::new()
            .fill(&mut sender)
            .expect("the system's random source works");
        Self {
            key: Key::new(secret),
            sender: u64::from_le_bytes(sender),
            seq: AtomicU64::new(1),
        }
    }

    /// The id of the key it signs with.
    pub fn key_id(&self) -> &str {
        &self.key.id
    }

    /// Adds the target, content hash and signature headers to a request about to be sent.
    /// `payload_sha256` is the body's hash, `None` for a streamed body left unhashed.
    pub fn sign(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        target: &str,
        payload_sha256: Option<[u8; 32]>,
        headers: &mut HeaderMap,
    ) {
        self.sign_at(
            now_ms(),
            method,
            path,
            query,
            target,
            payload_sha256,
            headers,
        );
    }

    /// [`Signer::sign`] at a given time (tests).
    #[allow(clippy::too_many_arguments)]
    pub fn sign_at(
        &self,
        ts: u64,
        method: &Method,
        path: &str,
        query: Option<&str>,
        target: &str,
        payload_sha256: Option<[u8; 32]>,
        headers: &mut HeaderMap,
    ) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let content = payload_sha256.map_or_else(|| UNSIGNED_PAYLOAD.to_string(), |h| hex(&h));
        let value = |s: &str| {
            HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
        };
        headers.insert(TARGET_HEADER, value(target));
        headers.insert(CONTENT_SHA256_HEADER, value(&content));
        let stamp = Stamp {
            key: &self.key.id,
            sender: self.sender,
            seq,
            ts,
        };
        let to_sign = string_to_sign(method, path, query, &stamp, headers);
        let sig = hex(hmac::sign(&self.key.key, &to_sign).as_ref());
        let auth = format!(
            "v1 key={} sender={:016x} seq={seq} ts={ts} sig={sig}",
            self.key.id, self.sender
        );
        headers.insert(AUTH_HEADER, value(&auth));
    }
}

/// Why a request's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `x-cairn-auth` header.
    #[error("the request is not signed with the fleet credential")]
    Missing,
    /// The signature headers do not parse.
    #[error("malformed fleet signature: {0}")]
    Malformed(&'static str),
    /// Signed with a key this process does not hold.
    #[error("signed with unknown key {0}")]
    UnknownKey(String),
    /// Meant for another process.
    #[error("the request is for {got:?}, not for this process ({expected:?})")]
    WrongTarget { expected: String, got: String },
    /// The timestamp is too far from this process's clock.
    #[error("the request's timestamp is {skew_ms} ms from this process's clock")]
    Skewed { skew_ms: u64 },
    /// Signed before this process started: a replay of a request to its previous life.
    #[error("the request was signed before this process started")]
    BeforeStart,
    /// The signature does not match.
    #[error("the fleet signature does not match")]
    BadSignature,
    /// The (sender, sequence) was seen before.
    #[error("the request was already received (replay)")]
    Replayed,
    /// The sequence is too far behind the sender's latest.
    #[error("the request's sequence number is too old")]
    TooOld,
    /// Too many senders are live to track another.
    #[error("too many live senders")]
    TooManySenders,
    /// The body's hash differs from the signed one.
    #[error("the body does not match its signed hash")]
    PayloadMismatch,
}

impl AuthError {
    /// A stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed(_) => "malformed",
            AuthError::UnknownKey(_) => "unknown_key",
            AuthError::WrongTarget { .. } => "wrong_target",
            AuthError::Skewed { .. } => "skewed",
            AuthError::BeforeStart => "before_start",
            AuthError::BadSignature => "bad_signature",
            AuthError::Replayed => "replayed",
            AuthError::TooOld => "too_old",
            AuthError::TooManySenders => "too_many_senders",
            AuthError::PayloadMismatch => "payload_mismatch",
        }
    }

    /// The HTTP status to answer with: 401 for a request that proves nothing, 403 for a valid
    /// one sent to the wrong process, 503 when the replay guard is full.
    pub fn status(&self) -> http::StatusCode {
        match self {
            AuthError::WrongTarget { .. } => http::StatusCode::FORBIDDEN,
            AuthError::TooManySenders => http::StatusCode::SERVICE_UNAVAILABLE,
            _ => http::StatusCode::UNAUTHORIZED,
        }
    }
}

/// What a verified signature says about the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The body's signed SHA-256; `None` for `UNSIGNED-PAYLOAD`.
    pub payload_sha256: Option<[u8; 32]>,
}

/// Checks fleet signatures for one receiving process.
pub struct Verifier {
    keys: Vec<Key>,
    target: Option<String>,
    started_ms: u64,
    guard: Mutex<ReplayGuard>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Verifier")
            .field("keys", &keys)
            .field("target", &self.target)
            .finish()
    }
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Verifier {
    /// Accepts signatures by any of `secrets` (the current one first, then the previous during
    /// a rotation) for `target` (`None`: for any target).
    pub fn new(secrets: &[Secret], target: Option<String>) -> Self {
        Self::started_at(now_ms(), secrets, target)
    }

    /// [`Verifier::new`] as if started at `started_ms` (tests).
    pub fn started_at(started_ms: u64, secrets: &[Secret], target: Option<String>) -> Self {
        Self {
            keys: secrets.iter().map(Key::new).collect(),
            target,
            started_ms,
            guard: Mutex::new(ReplayGuard::new(SENDER_EXPIRY_MS)),
        }
    }

    /// Checks a request's signature now.
    pub fn verify(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Verified, AuthError> {
        self.verify_at(now_ms(), method, path, query, headers)
    }

    /// Checks a request's signature at `now` (tests).
    pub fn verify_at(
        &self,
        now: u64,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Verified, AuthError> {
        let auth = headers
            .get(AUTH_HEADER)
            .ok_or(AuthError::Missing)?
            .to_str()
            .map_err(|_| AuthError::Malformed("x-cairn-auth is not ASCII"))?;
        let f = AuthFields::parse(auth).ok_or(AuthError::Malformed("x-cairn-auth"))?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == f.key)
            .ok_or_else(|| AuthError::UnknownKey(f.key.to_string()))?;
        let sig = parse_hex32(f.sig).ok_or(AuthError::Malformed("signature"))?;
        let stamp = Stamp {
            key: f.key,
            sender: f.sender,
            seq: f.seq,
            ts: f.ts,
        };
        let to_sign = string_to_sign(method, path, query, &stamp, headers);
        hmac::verify(&key.key, &to_sign, &sig).map_err(|_| AuthError::BadSignature)?;
        // Only a signed request gets this far: what follows can trust the fields.
        let target = headers
            .get(TARGET_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if let Some(expected) = &self.target
            && target != expected
        {
            return Err(AuthError::WrongTarget {
                expected: expected.clone(),
                got: target.to_string(),
            });
        }
        let skew_ms = now.abs_diff(f.ts);
        if skew_ms > MAX_SKEW_MS {
            return Err(AuthError::Skewed { skew_ms });
        }
        if f.ts < self.started_ms {
            return Err(AuthError::BeforeStart);
        }
        let content = headers
            .get(CONTENT_SHA256_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or(AuthError::Malformed("x-cairn-content-sha256"))?;
        let payload_sha256 = match content {
            UNSIGNED_PAYLOAD => None,
            h => Some(parse_hex32(h).ok_or(AuthError::Malformed("x-cairn-content-sha256"))?),
        };
        self.guard
            .lock()
            .expect("replay guard lock")
            .admit(f.sender, f.seq, now)
            .map_err(|r| match r {
                Refusal::Replayed => AuthError::Replayed,
                Refusal::TooOld => AuthError::TooOld,
                Refusal::TooManySenders => AuthError::TooManySenders,
            })?;
        Ok(Verified { payload_sha256 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        Secret::new("test", &format!("{s:0>32}"), 32).unwrap()
    }

    fn signed(signer: &Signer, ts: u64, target: &str, body: Option<&[u8]>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-cairn-k", HeaderValue::from_static("4"));
        h.insert("range", HeaderValue::from_static("bytes=0-9"));
        signer.sign_at(
            ts,
            &Method::PUT,
            "/v1/shards/ab/1",
            Some("x=1"),
            target,
            body.map(sha256),
            &mut h,
        );
        h
    }

    fn check(v: &Verifier, now: u64, h: &HeaderMap) -> Result<Verified, AuthError> {
        v.verify_at(now, &Method::PUT, "/v1/shards/ab/1", Some("x=1"), h)
    }

    #[test]
    fn a_signed_request_is_accepted_once() {
        let s = secret("a");
        let signer = Signer::new(&s);
        let v = Verifier::started_at(1000, &[s], Some("node-a1".into()));
        let h = signed(&signer, 2000, "node-a1", Some(b"body"));
        let ok = check(&v, 2000, &h).unwrap();
        assert_eq!(ok.payload_sha256, Some(sha256(b"body")));
        assert_eq!(check(&v, 2001, &h), Err(AuthError::Replayed));
        let h = signed(&signer, 2000, "node-a1", None);
        assert_eq!(check(&v, 2000, &h).unwrap().payload_sha256, None);
    }

    #[test]
    fn every_signed_part_is_covered() {
        let s = secret("a");
        let signer = Signer::new(&s);
        let v = Verifier::started_at(0, std::slice::from_ref(&s), None);
        let fresh = || signed(&signer, 5000, "node-a1", Some(b"body"));
        // Another method, path or query.
        for (m, p, q) in [
            (Method::DELETE, "/v1/shards/ab/1", Some("x=1")),
            (Method::PUT, "/v1/shards/ab/2", Some("x=1")),
            (Method::PUT, "/v1/shards/ab/1", Some("x=2")),
            (Method::PUT, "/v1/shards/ab/1", None),
        ] {
            let r = v.verify_at(5000, &m, p, q, &fresh());
            assert_eq!(r, Err(AuthError::BadSignature), "{m} {p} {q:?}");
        }
        // A changed x-cairn-* header, range, target or content hash; an added x-cairn-* header.
        for (name, value) in [
            ("x-cairn-k", "5"),
            ("range", "bytes=0-99"),
            (TARGET_HEADER, "node-b1"),
            (CONTENT_SHA256_HEADER, UNSIGNED_PAYLOAD),
            ("x-cairn-placement", "a=http://evil"),
        ] {
            let mut h = fresh();
            h.insert(name, HeaderValue::from_static(value));
            assert_eq!(check(&v, 5000, &h), Err(AuthError::BadSignature), "{name}");
        }
        // The timestamp or sequence in the header itself.
        let h = fresh();
        let auth = h[AUTH_HEADER].to_str().unwrap().to_string();
        for forged in [
            auth.replace("ts=5000", "ts=5001"),
            auth.replace("seq=", "seq=9"),
        ] {
            let mut h = h.clone();
            h.insert(AUTH_HEADER, HeaderValue::from_str(&forged).unwrap());
            assert_eq!(check(&v, 5000, &h), Err(AuthError::BadSignature));
        }
        // Headers outside the signed set may change (proxies add some).
        let mut h = fresh();
        h.insert("user-agent", HeaderValue::from_static("x"));
        assert!(check(&v, 5000, &h).is_ok());
    }

    #[test]
    fn wrong_key_target_time_and_garbage_are_refused() {
        let s = secret("a");
        let signer = Signer::new(&s);
        let v = Verifier::started_at(10_000, std::slice::from_ref(&s), Some("node-a1".into()));
        let other = Signer::new(&secret("b"));
        assert!(matches!(
            check(&v, 20_000, &signed(&other, 20_000, "node-a1", None)),
            Err(AuthError::UnknownKey(_))
        ));
        assert!(matches!(
            check(&v, 20_000, &signed(&signer, 20_000, "node-b1", None)),
            Err(AuthError::WrongTarget { .. })
        ));
        let late = 20_000 + MAX_SKEW_MS + 1;
        assert_eq!(
            check(&v, late, &signed(&signer, 20_000, "node-a1", None)),
            Err(AuthError::Skewed {
                skew_ms: MAX_SKEW_MS + 1
            })
        );
        assert_eq!(
            check(&v, 20_000, &signed(&signer, 9_999, "node-a1", None)),
            Err(AuthError::BeforeStart)
        );
        assert_eq!(
            check(&v, 20_000, &HeaderMap::new()),
            Err(AuthError::Missing)
        );
        for junk in [
            "v2 key=x",
            "v1 key=abc sender=zz seq=1 ts=1 sig=00",
            "v1",
            "",
        ] {
            let mut h = signed(&signer, 20_000, "node-a1", None);
            h.insert(AUTH_HEADER, HeaderValue::from_str(junk).unwrap());
            assert!(
                matches!(check(&v, 20_000, &h), Err(AuthError::Malformed(_))),
                "{junk}"
            );
        }
    }

    #[test]
    fn a_rotation_accepts_the_previous_secret_until_it_is_dropped() {
        let (old, new) = (secret("old"), secret("new"));
        let old_signer = Signer::new(&old);
        let during = Verifier::started_at(0, &[new.clone(), old.clone()], None);
        assert!(check(&during, 1, &signed(&old_signer, 1, "t", None)).is_ok());
        assert!(check(&during, 1, &signed(&Signer::new(&new), 1, "t", None)).is_ok());
        let after = Verifier::started_at(0, &[new], None);
        assert!(matches!(
            check(&after, 1, &signed(&old_signer, 1, "t", None)),
            Err(AuthError::UnknownKey(_))
        ));
    }

    proptest::proptest! {
        /// Arbitrary bytes in the signature header never panic and never pass.
        #[test]
        fn arbitrary_auth_headers_are_refused(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let s = secret("a");
            let v = Verifier::started_at(0, &[s], None);
            let mut h = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_bytes(&raw) {
                h.insert(AUTH_HEADER, value);
            }
            proptest::prop_assert!(check(&v, 1, &h).is_err());
        }
    }
}
