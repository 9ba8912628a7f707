//! Wiring of one storage node: store, metrics, scrubber and HTTP server, started from a
//! [`NodeConfig`]. The binary runs one; `cairn-gateway dev` runs several in one process.

use std::future::Future;
use std::sync::Arc;

use crate::config::NodeConfig;
use crate::metrics::NodeMetrics;
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
    let scrubber = Scrubber::new(
        &config.data_dir,
        store.clone(),
        metrics.clone(),
        Repairer::new(reqwest::Client::new()),
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
        metrics,
        scrub: scrubber.handle(),
        data_dir: config.data_dir.clone(),
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let scrub_task = tokio::spawn(scrubber.run(stop_rx));
    tracing::info!(node = %config.node_id, zone = %config.zone, addr = %listener.local_addr()?, "storage node listening");
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await;
    let _ = stop_tx.send(true);
    let _ = scrub_task.await;
    served.map_err(NodeError::from)
}
