//! Wiring of one storage node: store, metrics, scrubber and HTTP server, started from a
//! [`NodeConfig`]. The binary runs one; `cairn-gateway dev` runs several in one process.

use std::future::Future;
use std::sync::Arc;

use cairn_transport::client::ClientTimeouts;
use cairn_transport::listener::{Limits, serve_router};
use cairn_transport::server::FleetAuth;
use cairn_transport::{FleetClient, Signer, Verifier};

use crate::config::NodeConfig;
use crate::metrics::NodeMetrics;
use crate::peers::PeerDirectory;
use crate::repair::Repairer;
use crate::scrubber::{ScrubConfig, Scrubber};
use crate::server::{NodeState, router};
use crate::store::{ShardStore, StoreError, StoreOptions};

/// Why a node could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The data directory could not be opened.
    #[error("opening data dir {dir}: {source}")]
    Open {
        dir: std::path::PathBuf,
        source: StoreError,
    },
    /// The HTTP server failed.
    #[error("serving HTTP: {0}")]
    Serve(#[from] std::io::Error),
}

/// Serves a node on `listener` until `shutdown` completes, then stops the scrubber cleanly (it
/// persists its cursor so the next start resumes the pass).
pub async fn serve(
    config: NodeConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let store = ShardStore::open(
        &config.data_dir,
        StoreOptions {
            min_free_bytes: config.min_free_bytes,
        },
    )
    .map_err(|source| NodeError::Open {
        dir: config.data_dir.clone(),
        source,
    })?;
    let store = Arc::new(store);
    let metrics = Arc::new(NodeMetrics::new());
    let peers = PeerDirectory::open(&config.data_dir);
    let fleet = FleetClient::new(
        ClientTimeouts {
            control: config.peer_timeout,
            ..ClientTimeouts::default()
        },
        Arc::new(Signer::new(&config.fleet_secret)),
    );
    let scrubber = Scrubber::new(
        &config.data_dir,
        store.clone(),
        metrics.clone(),
        Repairer::new(fleet, peers.clone()),
        ScrubConfig {
            rate: config.scrub_rate,
            interval: config.scrub_interval,
            repair_grace: config.repair_grace,
        },
    );
    let state = Arc::new(NodeState {
        node_id: config.node_id.clone(),
        zone: config.zone.clone(),
        store,
        metrics: metrics.clone(),
        scrub: scrubber.handle(),
        data_dir: config.data_dir.clone(),
        peers,
        stall_timeout: config.stall_timeout,
    });
    let auth = FleetAuth {
        verifier: Arc::new(Verifier::new(
            &config.fleet_secrets(),
            Some(config.node_id.to_string()),
        )),
        allow_unsigned_payload: true,
        body_limit: 0,
        rejected: {
            let metrics = metrics.clone();
            Arc::new(move |reason| metrics.count_auth_rejection(reason))
        },
    };
    let limits = Limits {
        max_connections: config.max_connections,
        header_timeout: config.header_timeout,
        write_stall_timeout: config.stall_timeout,
        ..Limits::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let scrub_task = tokio::spawn(scrubber.run(stop_rx));
    tracing::info!(node = %config.node_id, zone = %config.zone, addr = %listener.local_addr()?, "storage node listening");
    let served = serve_router(
        listener,
        router(state, auth),
        limits,
        metrics.listener.clone(),
        shutdown,
    )
    .await;
    let _ = stop_tx.send(true);
    let _ = scrub_task.await;
    served.map_err(NodeError::from)
}
