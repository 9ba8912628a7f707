//! `cairn-operator`: wires the four controllers, leader election, and the metrics/health server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use cairn_operator::controller::{
    self, Context, HttpConnector, bucket, objectstore, policy, watch,
};
use cairn_operator::crd::{Bucket, LifecyclePolicy, ObjectStore, ReplicationRule};
use cairn_operator::leader::Elector;
use cairn_operator::metrics::Metrics;
use cairn_operator::resources::objectstore::BuildConfig;
use clap::Parser;
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::Store;
use kube::runtime::{Controller, watcher};

/// Cairn Kubernetes operator.
#[derive(Debug, Parser)]
#[command(name = "cairn-operator", version)]
struct Config {
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "CAIRN_OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Gateway image for ObjectStores that name none.
    #[arg(long, env = "CAIRN_GATEWAY_IMAGE")]
    gateway_image: Option<String>,
    /// Storage-node image for ObjectStores that name none.
    #[arg(long, env = "CAIRN_STORAGE_NODE_IMAGE")]
    storage_node_image: Option<String>,
    /// Image pull policy of the fleets' pods when an ObjectStore names none.
    #[arg(long, env = "CAIRN_IMAGE_PULL_POLICY", value_parser = ["Always", "IfNotPresent", "Never"])]
    image_pull_policy: Option<String>,
    /// Image pull Secrets (names, in each fleet's namespace) of the fleets' pods when an
    /// ObjectStore names none; comma-separated.
    #[arg(long, env = "CAIRN_IMAGE_PULL_SECRETS", value_delimiter = ',')]
    image_pull_secrets: Vec<String>,
    /// Namespaces to watch, comma-separated (empty: every namespace). Confined to them, the
    /// operator needs only namespaced Roles there (the chart's `watchNamespaces`), Secrets
    /// included.
    #[arg(long, env = "CAIRN_WATCH_NAMESPACES", value_delimiter = ',')]
    watch_namespaces: Vec<String>,
    /// Most gateway pods per ObjectStore (0 = no limit, the default). The gateways of a fleet
    /// share one replicated index, so this is only an optional limit.
    #[arg(long, env = "CAIRN_MAX_GATEWAY_REPLICAS", default_value_t = 0)]
    max_gateway_replicas: i32,
    /// Namespace of the leader Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    namespace: String,
    /// Identity in the Lease (the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Lease name.
    #[arg(long, env = "CAIRN_LEASE_NAME", default_value = "cairn-operator")]
    lease_name: String,
    /// Skip leader election (a single replica, or running outside the cluster).
    #[arg(long, env = "CAIRN_NO_LEADER_ELECTION")]
    no_leader_election: bool,
    /// `--log-format text|json` (`CAIRN_LOG_FORMAT`).
    #[command(flatten)]
    log: cairn_logging::LogArgs,
}

struct Health {
    metrics: Arc<Metrics>,
    started: AtomicBool,
}

async fn serve(listen: SocketAddr, health: Arc<Health>) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(h): State<Arc<Health>>| async move { h.metrics.encode() }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(h): State<Arc<Health>>| async move {
                if h.started.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting")
                }
            }),
        )
        .with_state(health);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, app).await
}

/// An `Api` over every namespace, or over one (`--watch-namespaces`).
fn scoped<K>(client: &kube::Client, ns: Option<&str>) -> Api<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The four controllers over every namespace (`ns` None) or over one. Cluster-wide the operator
/// neither lists nor watches Secrets (its ClusterRole has no such right: it reads and writes only
/// Secrets it names); confined to namespaces, it watches the Secrets it writes there.
async fn run_controllers(ctx: Arc<Context>, ns: Option<String>) {
    let client = ctx.client.clone();
    let ns = ns.as_deref();
    let wc = watcher::Config::default();
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=cairn-operator");
    // Buckets first: their cache also maps ObjectStore changes to policies.
    let bucket_ctl = Controller::new(scoped::<Bucket>(&client, ns), wc.clone());
    let buckets = bucket_ctl.store();
    let stores = Controller::new(scoped::<ObjectStore>(&client, ns), wc.clone())
        .owns(scoped::<StatefulSet>(&client, ns), owned.clone())
        .owns(scoped::<Service>(&client, ns), owned.clone())
        .owns(scoped::<PodDisruptionBudget>(&client, ns), owned.clone())
        .owns(scoped::<NetworkPolicy>(&client, ns), owned.clone())
        // Pods are the StatefulSets' (not the store's): readiness, crash loops and restarts
        // reach the status at once.
        .watches(scoped::<Pod>(&client, ns), owned.clone(), |p| {
            watch::store_of_pod(&p)
        })
        .watches(scoped::<Bucket>(&client, ns), wc.clone(), |b| {
            Some(objectstore::store_of(&b))
        })
        .shutdown_on_signal()
        .run(
            objectstore::reconcile,
            controller::error_policy,
            ctx.clone(),
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "ObjectStore controller");
            }
        });
    let (b, b2) = (buckets.clone(), buckets.clone());
    let mut bucket_ctl = bucket_ctl;
    if ns.is_some() {
        bucket_ctl = bucket_ctl.owns(scoped::<Secret>(&client, ns), owned.clone());
    }
    let bucket_ctl = bucket_ctl
        .watches(scoped::<ObjectStore>(&client, ns), wc.clone(), move |s| {
            watch::buckets_of_store(&b.state(), &s)
        })
        // A namespace's labels decide whether an ObjectStore's selector allows its Buckets.
        .watches(
            Api::<Namespace>::all(client.clone()),
            wc.clone(),
            move |n| watch::buckets_in_namespace(&b2.state(), &n.name_any()),
        )
        .shutdown_on_signal()
        .run(bucket::reconcile, controller::error_policy, ctx.clone())
        .for_each(|_| async {});
    let lifecycle = policy_controller::<LifecyclePolicy>(&client, ns, &buckets)
        .run(
            policy::reconcile_lifecycle,
            controller::error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});
    let replication = policy_controller::<ReplicationRule>(&client, ns, &buckets)
        .run(
            policy::reconcile_replication,
            controller::error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});
    tokio::join!(stores, bucket_ctl, lifecycle, replication);
}

/// The controllers over every namespace, or one set per namespace of `--watch-namespaces`.
async fn run_all(ctx: Arc<Context>) {
    match ctx.namespaces.clone() {
        None => run_controllers(ctx, None).await,
        Some(list) => {
            futures_util::future::join_all(
                list.into_iter()
                    .map(|ns| run_controllers(ctx.clone(), Some(ns))),
            )
            .await;
        }
    }
}

/// A LifecyclePolicy or ReplicationRule controller: requeued when the Bucket it targets changes
/// (created, Ready, versioning switched on) and when that Bucket's ObjectStore does.
fn policy_controller<P>(
    client: &kube::Client,
    ns: Option<&str>,
    buckets: &Store<Bucket>,
) -> Controller<P>
where
    P: watch::TargetsBucket<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let wc = watcher::Config::default();
    let ctl = Controller::new(scoped::<P>(client, ns), wc.clone());
    let (of_bucket, of_store) = (ctl.store(), ctl.store());
    let buckets = buckets.clone();
    ctl.watches(scoped::<Bucket>(client, ns), wc.clone(), move |b| {
        watch::policies_of_bucket(&of_bucket.state(), &b)
    })
    .watches(scoped::<ObjectStore>(client, ns), wc, move |s| {
        watch::policies_of_store(&of_store.state(), &buckets.state(), &s)
    })
    .shutdown_on_signal()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::parse();
    cairn_logging::init(config.log, "info");
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "cairn-operator starting"
    );
    let client = kube::Client::try_default().await?;
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health {
        metrics: metrics.clone(),
        started: AtomicBool::new(false),
    });
    tokio::spawn(serve(config.listen, health.clone()));

    let mut build = BuildConfig::default();
    if let Some(i) = config.gateway_image {
        build.gateway_image = i;
    }
    if let Some(i) = config.storage_node_image {
        build.storage_node_image = i;
    }
    build.max_gateway_replicas =
        (config.max_gateway_replicas > 0).then_some(config.max_gateway_replicas);
    build.pull_policy = config
        .image_pull_policy
        .as_deref()
        .and_then(|p| serde_json::from_value(serde_json::json!(p)).ok());
    build.operator_namespace = std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|n| !n.is_empty());
    build.pull_secrets = config
        .image_pull_secrets
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    let mut ctx = Context::new(
        client.clone(),
        Arc::new(HttpConnector::default()),
        metrics.clone(),
        build,
    );
    let namespaces: Vec<String> = config
        .watch_namespaces
        .iter()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
    if !namespaces.is_empty() {
        tracing::info!(?namespaces, "watching only these namespaces");
        Arc::get_mut(&mut ctx)
            .expect("the only reference")
            .namespaces = Some(namespaces);
    }
    // Ready as soon as the process runs: a standby replica is healthy too.
    health.started.store(true, Ordering::Relaxed);

    if config.no_leader_election {
        metrics.leader.set(1);
        run_all(ctx).await;
        return Ok(());
    }
    let identity = config
        .identity
        .unwrap_or_else(|| format!("cairn-operator-{}", std::process::id()));
    let elector = Elector::new(
        Api::<Lease>::namespaced(client, &config.namespace),
        &config.lease_name,
        &identity,
        Duration::from_secs(15),
    );
    tracing::info!(identity, "waiting for the leader Lease");
    elector.acquire().await;
    metrics.leader.set(1);
    tracing::info!(identity, "leading");
    tokio::select! {
        _ = run_all(ctx) => { elector.release().await; }
        _ = elector.hold() => {
            tracing::error!("lost the leader Lease; exiting so that only one replica reconciles");
            std::process::exit(1);
        }
    }
    Ok(())
}
