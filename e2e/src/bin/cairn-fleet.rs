//! `cairn-fleet`: starts and stops a fleet of real processes on 127.0.0.1.
//!
//! `cairn-fleet up --dir DIR [--gateways 3] [--zones 3] [--nodes-per-zone 2] [--base-port 9200]`
//! prints the endpoints and writes DIR/fleet.json; `cairn-fleet add-node --dir DIR --zone a`
//! starts one more storage node and registers it through the first gateway;
//! `cairn-fleet down --dir DIR` stops it all.

use std::path::PathBuf;
use std::time::Duration;

use cairn_e2e::fleet::{self, FleetSpec};
use clap::{Parser, Subcommand};

/// Fleet launcher.
#[derive(Debug, Parser)]
#[command(name = "cairn-fleet", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start storage nodes and gateways.
    Up {
        /// Directory for data, logs and fleet.json.
        #[arg(long)]
        dir: PathBuf,
        /// Gateways (more than one share a replicated index).
        #[arg(long, default_value_t = 1)]
        gateways: usize,
        /// Zones.
        #[arg(long, default_value_t = 3)]
        zones: usize,
        /// Storage nodes per zone.
        #[arg(long, default_value_t = 2)]
        nodes_per_zone: usize,
        /// First of the consecutive ports used.
        #[arg(long, default_value_t = 9200)]
        base_port: u16,
        /// Where the cairn binaries are (default: next to this one).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// Extra arguments for every gateway, after `--` (e.g. `-- --gc-delay 1m`).
        #[arg(last = true)]
        gateway_args: Vec<String>,
    },
    /// Start one more storage node and register it in the index through the first gateway
    /// (every gateway writes to it within seconds, none restarts).
    AddNode {
        /// The fleet's directory.
        #[arg(long)]
        dir: PathBuf,
        /// The node's zone.
        #[arg(long)]
        zone: String,
        /// Its port (default: the one after the highest the fleet uses).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Stop the fleet described by DIR/fleet.json.
    Down {
        /// The fleet's directory.
        #[arg(long)]
        dir: PathBuf,
    },
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    match Cli::parse().command {
        Cmd::Up {
            dir,
            gateways,
            zones,
            nodes_per_zone,
            base_port,
            bin_dir,
            gateway_args,
        } => {
            let f = fleet::up(&FleetSpec {
                dir: dir.clone(),
                bin_dir: bin_dir.unwrap_or_else(fleet::default_bin_dir),
                gateways,
                zones,
                nodes_per_zone,
                base_port,
                gateway_args,
            })?;
            for g in &f.gateways {
                println!("gateway  s3={} admin={} pid={}", g.s3, g.admin, g.pid);
            }
            for n in &f.nodes {
                println!(
                    "node     {} zone={} {} pid={}",
                    n.id, n.zone, n.endpoint, n.pid
                );
            }
            println!("credentials and pids: {}", dir.join("fleet.json").display());
        }
        Cmd::AddNode { dir, zone, port } => {
            let mut f = fleet::read(&dir)?;
            let (id, next_port) = fleet::next_node(&f, &zone);
            let node = fleet::add_node(&dir, &mut f, &id, &zone, port.unwrap_or(next_port))?;
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(fleet::register_node(&f, 0, &node))?;
            println!(
                "node     {} zone={} {} pid={} (registered)",
                node.id, node.zone, node.endpoint, node.pid
            );
        }
        Cmd::Down { dir } => fleet::down(&dir, Duration::from_secs(10))?,
    }
    Ok(())
}
