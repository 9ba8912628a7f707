//! How Cairn's processes talk to each other over HTTP, and what keeps those conversations safe.
//!
//! - [`secret`]: secrets that never print themselves and refuse to be too short.
//! - [`signing`]: the fleet credential. Every internal request (gateway to storage node, node to
//!   node, gateway to gateway) carries an HMAC-SHA256 signature over its method, path, query,
//!   target, timestamp, a per-sender sequence number and its payload hash; [`replay`] refuses a
//!   signature seen before, so a captured request can be neither forged nor replayed.
//! - [`client`]: a `reqwest` client that signs what it sends.
//! - [`server`]: the axum middleware that checks signatures, and counts what it refuses.
//! - [`listener`]: serving any hyper service with a connection cap, header and handshake
//!   deadlines, so a stalled client holds at most its own connection.
//! - [`stall`]: request bodies that fail once their sender stops sending.
//!
//! `docs/security.md` explains the choices (why signatures rather than mutual TLS).

pub mod client;
pub mod listener;
pub mod replay;
pub mod secret;
pub mod server;
pub mod signing;
pub mod stall;

pub use client::FleetClient;
pub use secret::{Secret, SecretError};
pub use signing::{AuthError, Signer, Verifier};
