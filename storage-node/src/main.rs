//! `cairn-storage-node`: serves the shard API of one storage node and runs its scrubber.

use clap::Parser;

use cairn_storage_node::config::NodeConfig;

/// A Cairn storage node: keeps erasure-coded shards on disk with per-block checksums.
#[derive(Parser)]
#[command(name = "cairn-storage-node", version)]
struct Cli {
    #[command(flatten)]
    config: NodeConfig,
    #[command(flatten)]
    log: cairn_logging::LogArgs,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Cli { config, log } = Cli::parse();
    cairn_logging::init(log, "info");
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    cairn_storage_node::node::serve(config, listener, async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} }
        tracing::info!("shutting down");
    })
    .await?;
    Ok(())
}
