//! `cairn-storage-node`: serves the shard API of one storage node.

use std::sync::Arc;

use clap::Parser;

use cairn_storage_node::config::NodeConfig;
use cairn_storage_node::metrics::NodeMetrics;
use cairn_storage_node::server::{NodeState, router};
use cairn_storage_node::store::{ShardStore, StoreOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = NodeConfig::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let store = ShardStore::open(
        &config.data_dir,
        StoreOptions {
            min_free_bytes: config.min_free_bytes,
        },
    )
    .map_err(|e| format!("opening data dir {}: {e}", config.data_dir.display()))?;
    let state = Arc::new(NodeState {
        node_id: config.node_id.clone(),
        store,
        metrics: NodeMetrics::new(),
        data_dir: config.data_dir.clone(),
    });
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(node = %config.node_id, zone = %config.zone, addr = %listener.local_addr()?, "storage node listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} }
            tracing::info!("shutting down");
        })
        .await?;
    Ok(())
}
