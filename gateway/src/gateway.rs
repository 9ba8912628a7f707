//! Wiring of one gateway: index, storage-node registry, data path, garbage collector, the S3
//! server and the admin server. Used by `serve`, `dev` and the integration tests.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cairn_storage_node::codec::ErasureProfile;
use cairn_transport::client::ClientTimeouts;
use cairn_transport::listener::serve_router;
use cairn_transport::server::{FleetAuth, counting_into};
use cairn_transport::{FleetClient, Secret, Signer, Verifier};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{AdminState, router as admin_router};
use crate::config::GatewayArgs;
use crate::credentials::Secrets;
use crate::data::DataOptions;
use crate::data::gc::GarbageCollector;
use crate::data::nodes::{NodeConfig, NodeRegistry};
use crate::data::reader::BlobReader;
use crate::data::writer::BlobWriter;
use crate::index::{Index, IndexOptions};
use crate::lifecycle::rules::LifecycleClock;
use crate::lifecycle::worker::{LifecycleOptions, LifecycleWorker};
use crate::metrics::GatewayMetrics;
use crate::s3::auth::{CairnAccess, CairnAuth, RootCredentials};
use crate::s3::{CairnS3, ClassWriters, S3Options};
use crate::storage_class::StorageClasses;
use cairn_kv::RocksEngine;
use cairn_raft::{Consensus, ConsensusConfig};

/// How often a gateway reads the storage-node registry of the index (a node registered through
/// another gateway is written to from here at most this long after).
const NODE_SYNC_INTERVAL: Duration = Duration::from_secs(3);

/// Largest admin request body read to check a signature (a lifecycle or replication document).
const ADMIN_BODY_LIMIT: usize = 32 << 20;

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The index could not be opened.
    #[error("opening the index at {path}: {source}")]
    Index {
        path: std::path::PathBuf,
        source: cairn_kv::EngineError,
    },
    /// A setting is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A listener could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running gateway.
pub struct RunningGateway {
    /// Where the S3 API listens.
    pub s3_addr: SocketAddr,
    /// Where the admin API listens.
    pub admin_addr: SocketAddr,
    /// The index (for tests and the dev launcher).
    pub index: Index,
    stop: watch::Sender<bool>,
    consensus: Option<Arc<Consensus>>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningGateway {
    /// Stops accepting requests and background work, and waits for the tasks.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        if let Some(c) = self.consensus {
            c.shutdown().await;
        }
    }
}

/// Refuses to switch an index between kept-alone and replicated: entries written alone are not in
/// any Raft log, so a group would never carry them to the other gateways; and a replica started
/// alone would fork from its group.
fn check_index_mode(
    engine: &RocksEngine,
    path: &Path,
    replicated: bool,
) -> Result<(), GatewayError> {
    let was_replicated = engine.holds_raft_state();
    if replicated && !was_replicated && engine.holds_entries() {
        return Err(GatewayError::Config(format!(
            "the index in {} was written by a gateway running alone (no --peer); a replicated group \
             cannot hand its entries to other gateways. Run this gateway alone, or start the group \
             on an empty data directory",
            path.display()
        )));
    }
    if !replicated && was_replicated {
        return Err(GatewayError::Config(format!(
            "the index in {} belongs to a replicated group; start this gateway with --gateway-id \
             and --peer (a group of one is allowed)",
            path.display()
        )));
    }
    Ok(())
}

/// Starts a gateway with its index under `data_dir` and the given storage nodes.
pub async fn start(
    args: &GatewayArgs,
    data_dir: &Path,
    nodes: Vec<NodeConfig>,
    secrets: Secrets,
    replication: Option<ConsensusConfig>,
) -> Result<RunningGateway, GatewayError> {
    let profile = ErasureProfile::new(args.data_shards, args.parity_shards)
        .map_err(|e| GatewayError::Config(e.to_string()))?;
    let stripe_size = u32::try_from(args.stripe_size)
        .ok()
        .filter(|s| (4096..=64 << 20).contains(s))
        .ok_or_else(|| GatewayError::Config("--stripe-size must be 4K..=64M".into()))?;
    // A replicated gateway may learn its nodes from the index (`data/registration.rs`); the
    // checks below need configured nodes.
    let learns_nodes = nodes.is_empty() && replication.is_some();
    if nodes.is_empty() && !learns_nodes {
        return Err(GatewayError::Config("no storage nodes configured".into()));
    }
    if !learns_nodes && nodes.len() < profile.data_shards() {
        // Every blob is spread over at least k nodes (see `BlobWriter::plan`).
        return Err(GatewayError::Config(format!(
            "{profile} needs at least {} storage nodes, {} configured",
            profile.data_shards(),
            nodes.len()
        )));
    }
    let classes =
        StorageClasses::new(profile, args.storage_classes.clone()).map_err(GatewayError::Config)?;
    for c in classes.iter().filter(|_| !learns_nodes) {
        let usable = nodes
            .iter()
            .filter(|n| c.zone.as_ref().is_none_or(|z| &n.zone == z))
            .count();
        if usable < c.profile.data_shards() {
            return Err(GatewayError::Config(format!(
                "storage class {} ({}) needs at least {} storage nodes{}, {usable} configured",
                c.name,
                c.profile,
                c.profile.data_shards(),
                c.zone
                    .as_ref()
                    .map(|z| format!(" in zone {z}"))
                    .unwrap_or_default()
            )));
        }
    }
    let classes = Arc::new(classes);
    let index_path = data_dir.join("index");
    std::fs::create_dir_all(&index_path)
        .map_err(|e| GatewayError::Config(format!("{}: {e}", index_path.display())))?;
    let engine =
        RocksEngine::open(&index_path, crate::index::keys::KEY_LAYOUT).map_err(|source| {
            GatewayError::Index {
                path: index_path.clone(),
                source,
            }
        })?;
    check_index_mode(&engine, &index_path, replication.is_some())?;
    let registered = crate::data::registration::registered_locally(&engine).map_err(|source| {
        GatewayError::Index {
            path: index_path.clone(),
            source,
        }
    })?;
    if learns_nodes {
        tracing::info!(
            registered = registered.len(),
            "no --node given: writing to the storage nodes registered in the index"
        );
    }
    let engine = Arc::new(engine);
    let index_options = IndexOptions {
        gc_delay_ms: args.gc_delay.as_millis() as u64,
        intent_ttl_ms: args.upload_timeout.as_millis() as u64,
        split: args.split_policy(),
        merge_crash_file: args.failpoint_merge_crash_file.clone(),
        seal: Some(Arc::new(
            secrets
                .sealer()
                .map_err(|e| GatewayError::Config(e.to_string()))?,
        )),
    };
    let fleet_secrets = secrets
        .fleet_secrets()
        .map_err(|e| GatewayError::Config(e.to_string()))?;
    // Every call to a storage node or another gateway is signed with the fleet credential.
    let fleet = FleetClient::new(
        ClientTimeouts::default(),
        Arc::new(Signer::new(&fleet_secrets[0])),
    );
    let metrics = Arc::new(GatewayMetrics::new());
    let internal_auth = FleetAuth {
        verifier: Arc::new(Verifier::new(
            &fleet_secrets,
            replication.as_ref().map(|r| r.id.to_string()),
        )),
        allow_unsigned_payload: false,
        body_limit: cairn_raft::rpc::BODY_LIMIT,
        rejected: counting_into(metrics.internal_auth_rejected.clone()),
    };
    let consensus = match replication {
        Some(cfg) => Some(
            Consensus::start(
                cfg,
                engine.clone(),
                fleet.clone(),
                Arc::new(crate::index::schema::IndexSchema),
                metrics.raft.clone(),
            )
            .await
            .map_err(|e| GatewayError::Config(e.to_string()))?,
        ),
        None => None,
    };
    let index = match &consensus {
        Some(c) => Index::replicated(engine, c.clone(), index_options),
        None => Index::new(engine, index_options),
    };
    let known = crate::data::registration::known_nodes(&nodes, registered);
    let configured_nodes = nodes;
    let registry = NodeRegistry::new(known, fleet);
    registry.probe_all().await;
    let data = DataOptions::new(profile, stripe_size);
    let writers: ClassWriters = classes
        .iter()
        .map(|c| {
            let options = DataOptions::new(c.profile, c.stripe_size.unwrap_or(stripe_size));
            let w =
                BlobWriter::new(registry.clone(), options, metrics.clone()).in_zone(c.zone.clone());
            (c.name.clone(), w)
        })
        .collect();
    let writers = Arc::new(writers);
    let reader = BlobReader::new(registry.clone(), metrics.clone());
    let standard = writers[crate::storage_class::STANDARD].clone();
    let clock = LifecycleClock::with_day(args.lifecycle_day_length);
    let s3 = CairnS3::new(
        index.clone(),
        standard,
        reader.clone(),
        metrics.clone(),
        S3Options {
            inline_threshold: args.inline_threshold,
            region: args.region.clone(),
            owner_id: secrets.access_key.clone(),
            stall_timeout: args.stall_timeout,
        },
    )
    .with_storage_classes(classes.clone(), writers.clone())
    .with_lifecycle_clock(clock);
    let keys = s3.access_keys();
    let mut builder = s3s::service::S3ServiceBuilder::new(s3);
    builder.set_auth(CairnAuth::new(
        RootCredentials {
            access_key: secrets.access_key.clone(),
            secret_key: secrets.secret_key.clone(),
        },
        keys.clone(),
    ));
    builder.set_access(CairnAccess::new(secrets.access_key.clone(), keys.clone()));
    if let Some(domain) = &args.domain {
        let host = s3s::host::SingleDomain::new(domain)
            .map_err(|e| GatewayError::Config(format!("--domain {domain}: {e:?}")))?;
        builder.set_host(host);
    }
    let service = builder.build();

    let refresh: Arc<dyn Fn() + Send + Sync> = {
        let (index, registry, metrics) = (index.clone(), registry.clone(), metrics.clone());
        Arc::new(move || {
            metrics.index_bytes.set(index.approximate_size() as i64);
            metrics
                .partitions
                .set(index.partition_map().partitions.len() as i64);
            metrics.nodes_up.set(registry.up_count() as i64);
            metrics.nodes_known.set(registry.len() as i64);
        })
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(crate::tls::acceptor(cert, key).map_err(|e| GatewayError::Config(e.to_string()))?)
        }
        _ => None,
    };
    let (stop, stop_rx) = watch::channel(false);
    let bind = |addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| GatewayError::Bind { addr, source })
    };
    let s3_listener = bind(args.listen).await?;
    let admin_listener = bind(args.admin_listen).await?;
    let s3_addr = s3_listener
        .local_addr()
        .map_err(|source| GatewayError::Bind {
            addr: args.listen,
            source,
        })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| GatewayError::Bind {
            addr: args.admin_listen,
            source,
        })?;

    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(
        registry
            .clone()
            .probe_loop(Duration::from_secs(2), stop_rx.clone()),
    ));
    let registration = crate::data::registration::NodeRegistration::new(
        index.clone(),
        registry.clone(),
        configured_nodes,
    );
    tasks.push(tokio::spawn(
        registration.run(NODE_SYNC_INTERVAL, stop_rx.clone()),
    ));
    let gc = GarbageCollector::new(
        index.clone(),
        registry.clone(),
        metrics.clone(),
        args.gc_interval,
    );
    tasks.push(tokio::spawn(gc.run(stop_rx.clone())));
    let mut lifecycle_options =
        LifecycleOptions::for_day(args.lifecycle_day_length, args.lifecycle_rate);
    // A failpoint for crash tests (see `LifecycleOptions::crash_after_written`).
    lifecycle_options.crash_after_written = std::env::var("CAIRN_FAILPOINT_LIFECYCLE_CRASH")
        .ok()
        .and_then(|v| v.parse().ok());
    let lifecycle = LifecycleWorker::new(
        index.clone(),
        writers.clone(),
        reader,
        metrics.clone(),
        lifecycle_options,
    );
    tasks.push(tokio::spawn(lifecycle.run(stop_rx.clone())));
    tasks.push(tokio::spawn(reseal_access_keys(
        index.clone(),
        stop_rx.clone(),
    )));
    let rebalancer =
        crate::rebalancer::Rebalancer::new(index.clone(), metrics.clone(), Duration::from_secs(1));
    tasks.push(tokio::spawn(rebalancer.run(stop_rx.clone())));
    {
        let (metrics, refresh, rx) = (metrics.clone(), refresh.clone(), stop_rx.clone());
        let limits = args.listener_limits();
        let front = crate::server::FrontOptions {
            edge: crate::s3::edge::EdgeOptions {
                allow_sigv2: args.allow_sigv2,
            },
            public_metrics: args.public_metrics,
        };
        tasks.push(tokio::spawn(async move {
            let serving = crate::server::S3Serving { tls, limits, front };
            if let Err(e) =
                crate::server::serve_s3(s3_listener, service, metrics, refresh, serving, rx).await
            {
                tracing::error!(error = %e, "S3 server stopped");
            }
        }));
    }
    let admin_state = Arc::new(AdminState {
        index: index.clone(),
        nodes: registry.clone(),
        metrics: metrics.clone(),
        refresh_metrics: refresh,
        token: secrets.admin_token.clone(),
        owner: secrets.access_key.clone(),
        write_quorum: data.write_quorum,
        read_quorum: profile.data_shards(),
        storage_classes: classes.clone(),
        keys,
        signed: FleetAuth {
            verifier: Arc::new(Verifier::new(
                &[Secret::new("CAIRN_ADMIN_TOKEN", &secrets.admin_token, 1)
                    .map_err(|e| GatewayError::Config(e.to_string()))?],
                None,
            )),
            allow_unsigned_payload: false,
            body_limit: ADMIN_BODY_LIMIT,
            rejected: counting_into(metrics.admin_auth_rejected.clone()),
        },
    });
    {
        let mut rx = stop_rx.clone();
        let router = admin_router(admin_state, consensus.clone(), internal_auth);
        let (limits, listener_metrics) = (args.listener_limits(), metrics.admin_listener.clone());
        tasks.push(tokio::spawn(async move {
            let served = serve_router(
                admin_listener,
                router,
                limits,
                listener_metrics,
                async move {
                    let _ = rx.changed().await;
                },
            )
            .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "admin server stopped");
            }
        }));
    }
    tracing::info!(%s3_addr, %admin_addr, profile = %profile, https = args.tls_cert.is_some(), "gateway listening");
    Ok(RunningGateway {
        s3_addr,
        admin_addr,
        index,
        stop,
        consensus,
        tasks,
    })
}

/// Seals access-key secrets stored plain or under a previous seal key, once the index answers
/// (a replicated one may have no leader yet at start).
async fn reseal_access_keys(index: Index, mut stop: watch::Receiver<bool>) {
    loop {
        match index.reseal_access_keys().await {
            Ok(0) => return,
            Ok(n) => {
                tracing::info!(keys = n, "access-key secrets sealed with the current key");
                return;
            }
            Err(e) => tracing::debug!(error = %e, "cannot seal access keys yet; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_kv::{KvEngine, WriteOp};

    #[test]
    fn an_index_never_switches_between_alone_and_replicated() {
        let dir = tempfile::tempdir().unwrap();
        let engine = RocksEngine::open(dir.path(), crate::index::keys::KEY_LAYOUT).unwrap();
        // Empty: either way.
        assert!(check_index_mode(&engine, dir.path(), true).is_ok());
        assert!(check_index_mode(&engine, dir.path(), false).is_ok());
        // Entries written alone: alone only.
        engine
            .write(vec![WriteOp::Put(b"k".to_vec(), b"v".to_vec())])
            .unwrap();
        assert!(check_index_mode(&engine, dir.path(), false).is_ok());
        let e = check_index_mode(&engine, dir.path(), true).unwrap_err();
        assert!(e.to_string().contains("running alone"), "{e}");
        // A replica (Raft state present): replicated only.
        let db = engine.db();
        let cf = db.cf_handle("raft_state").unwrap();
        db.put_cf(cf, b"vote", b"{}").unwrap();
        assert!(check_index_mode(&engine, dir.path(), true).is_ok());
        let e = check_index_mode(&engine, dir.path(), false).unwrap_err();
        assert!(
            e.to_string().contains("belongs to a replicated group"),
            "{e}"
        );
    }
}
