//! `cairn-gateway`: `dev` runs a whole fleet on one machine; `serve` runs a gateway against remote
//! storage nodes.

use clap::Parser;

use cairn_gateway::config::{Cli, Command};

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} }
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    cairn_logging::init(cli.log, "info,aws_smithy=warn");
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "cairn-gateway starting"
    );
    match cli.command {
        Command::Dev(args) => {
            let fleet = cairn_gateway::dev::start(&args).await?;
            let s = &fleet.secrets;
            let endpoint = format!("http://{}", fleet.gateway.s3_addr);
            println!();
            println!(
                "Cairn dev fleet is up: 6 storage nodes in zones a, b, c; data in {}",
                args.data.display()
            );
            println!("  S3 endpoint:    {endpoint}");
            println!(
                "  admin API:      http://{}  (Authorization: Bearer {})",
                fleet.gateway.admin_addr, s.admin_token
            );
            println!("  access key:     {}", s.access_key);
            println!("  secret key:     {}", s.secret_key);
            if fleet.secrets_created {
                println!(
                    "  (generated now and kept in {}/credentials.json)",
                    args.data.display()
                );
            }
            println!();
            println!("Try it:");
            println!(
                "  export AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} AWS_DEFAULT_REGION={}",
                s.access_key, s.secret_key, args.gateway.region
            );
            println!("  aws --endpoint-url {endpoint} s3 mb s3://demo");
            println!("  aws --endpoint-url {endpoint} s3 cp README.md s3://demo/");
            println!("  aws --endpoint-url {endpoint} s3 ls s3://demo/");
            println!();
            wait_for_signal().await;
            fleet.stop().await;
        }
        Command::Serve(args) => {
            let secrets = cairn_gateway::credentials::from_env()?;
            let replication = args.replication();
            let gw = cairn_gateway::gateway::start(
                &args.gateway,
                &args.data,
                args.nodes.clone(),
                secrets,
                replication,
            )
            .await?;
            wait_for_signal().await;
            gw.stop().await;
        }
    }
    Ok(())
}
