//! The controllers: one per kind, each a `reconcile(obj, ctx) -> Result<Action>` and the shared
//! `error_policy`. Desired objects come from `crate::resources`; everything is applied with
//! server-side apply under one field manager.

pub mod access;
pub mod bucket;
pub mod objectstore;
pub mod pods;
pub mod policy;
pub mod watch;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::admin::{AdminApi, AdminError, HttpAdmin};
use crate::crd::ObjectStore;
use crate::metrics::Metrics;
use crate::resources::FIELD_MANAGER;
use crate::resources::objectstore::{BuildConfig, FleetSecrets, admin_url, names};

/// Why a reconcile failed (and will be retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A gateway admin API call failed.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// Adding or removing a finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// An ObjectStore cannot go while Buckets use it.
    #[error("ObjectStore {store} is still used by {count} Bucket(s): {buckets}")]
    DeletionBlocked {
        /// The store.
        store: String,
        /// How many Buckets.
        count: usize,
        /// The first few, `namespace/name`.
        buckets: String,
    },
    /// Something this object needs is not there yet.
    #[error("waiting: {0}")]
    NotReady(String),
}

impl Error {
    /// A stable code for the error metric label.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Admin(_) => "admin",
            Error::Finalizer(_) => "finalizer",
            Error::DeletionBlocked { .. } => "deletion_blocked",
            Error::NotReady(_) => "not_ready",
        }
    }
}

/// Result of a reconcile step.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Makes admin API clients for fleets: over HTTP in production, a fake in tests.
pub trait AdminConnector: Send + Sync {
    /// A client of `store`'s admin API with its admin token.
    fn connect(&self, store: &ObjectStore, token: &str) -> Arc<dyn AdminApi>;
}

/// The admin API through the fleet's internal admin Service. Requests are signed with the
/// fleet's admin token (the token itself never travels), by one signer per token for the
/// operator's life: a signer is a sender the gateways track to refuse replays.
#[derive(Default)]
pub struct HttpConnector {
    signers: Mutex<HashMap<String, Arc<cairn_transport::Signer>>>,
}

impl AdminConnector for HttpConnector {
    fn connect(&self, store: &ObjectStore, token: &str) -> Arc<dyn AdminApi> {
        let admin = HttpAdmin::new(admin_url(store), token);
        // Tokens the gateways would refuse anyway are sent as they are, to get their answer.
        let Ok(secret) = cairn_transport::Secret::new("admin token", token, 1) else {
            return Arc::new(admin);
        };
        let signer = {
            let mut signers = self.signers.lock().expect("signer cache lock");
            let key = cairn_transport::Signer::new(&secret).key_id().to_string();
            signers
                .entry(key)
                .or_insert_with(|| Arc::new(cairn_transport::Signer::new(&secret)))
                .clone()
        };
        Arc::new(admin.signing_with(signer))
    }
}

/// What every reconcile shares.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Admin API clients.
    pub admin: Arc<dyn AdminConnector>,
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
    /// Who publishes Events.
    pub reporter: Reporter,
    /// Images and limits of the objects built.
    pub build: BuildConfig,
    /// The namespaces watched (`--watch-namespaces`); `None`: every namespace.
    pub namespaces: Option<Vec<String>>,
    /// Consecutive failures per object, for backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context.
    pub fn new(
        client: Client,
        admin: Arc<dyn AdminConnector>,
        metrics: Arc<Metrics>,
        build: BuildConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            client,
            admin,
            metrics,
            reporter: Reporter {
                controller: "cairn-operator".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
            build,
            namespaces: None,
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// Every object of kind `K` the operator watches: in every namespace, or in each of
    /// `--watch-namespaces` (where alone its Roles let it list).
    pub async fn list_watched<K>(&self) -> Result<Vec<K>>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + Debug
            + DeserializeOwned,
    {
        let lp = kube::api::ListParams::default();
        match &self.namespaces {
            None => Ok(Api::<K>::all(self.client.clone()).list(&lp).await?.items),
            Some(list) => {
                let mut out = Vec::new();
                for ns in list {
                    out.extend(
                        Api::<K>::namespaced(self.client.clone(), ns)
                            .list(&lp)
                            .await?
                            .items,
                    );
                }
                Ok(out)
            }
        }
    }

    /// Publishes an Event about `obj` (failures are logged, never fatal).
    pub async fn event<K>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) where
        K: Resource<DynamicType = ()>,
    {
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not publish event");
        }
    }

    /// Clears the failure count of `key` after a successful reconcile.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().expect("not poisoned").remove(key);
    }

    /// Backoff for another failure of `key`: 5 s doubling to 5 min.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut f = self.failures.lock().expect("not poisoned");
        let n = f.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        backoff_for(*n)
    }

    /// The fleet secrets of `store`, if its credentials Secret exists.
    pub async fn fleet_secrets(&self, store: &ObjectStore) -> Result<Option<FleetSecrets>> {
        let ns = store.namespace().unwrap_or_default();
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
        Ok(secrets
            .get_opt(&names::credentials(&store.name_any()))
            .await?
            .as_ref()
            .and_then(FleetSecrets::from_secret))
    }
}

/// 5 s after the first failure, doubling, at most 5 minutes.
pub fn backoff_for(failures: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << failures.saturating_sub(1).min(6));
    Duration::from_secs(secs.min(300))
}

/// `namespace/name` of an object, the key of its backoff state.
pub fn key_of<K: Resource>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        std::any::type_name::<K>(),
        obj.meta().namespace.as_deref().unwrap_or(""),
        obj.meta().name.as_deref().unwrap_or("")
    )
}

/// The error policy of every controller: count the error, log it, retry with backoff.
pub fn error_policy<K>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action
where
    K: Resource<DynamicType = ()>,
{
    let kind = K::kind(&());
    ctx.metrics.error(&kind, err.metric_label());
    let delay = ctx.backoff(&key_of(obj.as_ref()));
    tracing::warn!(kind = %kind, name = ?obj.meta().name, error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Server-side applies `obj` (namespaced) under the operator's field manager, taking over fields
/// another manager set.
pub async fn apply<K>(client: &Client, ns: &str, obj: &K) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let name = obj.meta().name.clone().unwrap_or_default();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Ok(api.patch(&name, &params, &Patch::Apply(obj)).await?)
}

/// Server-side applies the status of `obj` (its kind's API version and kind plus `status`).
pub async fn apply_status<K>(api: &Api<K>, obj: &K, status: serde_json::Value) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(&obj.name_any(), &params, &Patch::Apply(&patch))
        .await?;
    Ok(())
}

/// The finalizer every Cairn resource carries.
pub const FINALIZER: &str = "cairn.io/finalizer";

#[cfg(test)]
mod tests {
    use super::backoff_for;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_to_five_minutes() {
        assert_eq!(backoff_for(1), Duration::from_secs(5));
        assert_eq!(backoff_for(2), Duration::from_secs(10));
        assert_eq!(backoff_for(4), Duration::from_secs(40));
        assert_eq!(backoff_for(7), Duration::from_secs(300));
        assert_eq!(backoff_for(100), Duration::from_secs(300));
    }
}
