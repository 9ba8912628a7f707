//! The LifecyclePolicy and ReplicationRule controllers. A bucket has one lifecycle and one
//! replication configuration, so each reconcile pushes the document built from every resource
//! of that kind targeting the bucket (`PUT /admin/v1/buckets/{name}/lifecycle|replication`);
//! deleting one pushes the rest, or deletes the configuration when none is left. A gateway
//! without those endpoints answers 404: the condition says `GatewayUnsupported`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};

use super::bucket::{Fleet, fleet_of};
use super::{Context, Error, Result, apply_status};
use crate::admin::{AdminApi, AdminError, BucketConfig};
use crate::conditions::{self, PROGRESSING, READY};
use crate::crd::{Bucket, LifecyclePolicy, ObjectStore, Phase, ReplicationRule};
use crate::resources::bucket::{DestinationCredentials, lifecycle_document, replication_document};

/// Kind name of LifecyclePolicy in metrics.
pub const LIFECYCLE_KIND: &str = "LifecyclePolicy";
/// Kind name of ReplicationRule in metrics.
pub const REPLICATION_KIND: &str = "ReplicationRule";

fn unwrap_finalizer(e: kube::runtime::finalizer::Error<Error>) -> Error {
    match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(Box::new(other)),
    }
}

/// Reconciles one LifecyclePolicy.
pub async fn reconcile_lifecycle(p: Arc<LifecyclePolicy>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(LIFECYCLE_KIND);
    let api: Api<LifecyclePolicy> =
        Api::namespaced(ctx.client.clone(), &p.namespace().unwrap_or_default());
    finalizer(&api, super::FINALIZER, p, |event| async {
        match event {
            Finalizer::Apply(p) => apply_lifecycle(&p, &ctx).await,
            Finalizer::Cleanup(p) => cleanup_lifecycle(&p, &ctx).await,
        }
    })
    .await
    .map_err(unwrap_finalizer)
}

/// Reconciles one ReplicationRule.
pub async fn reconcile_replication(r: Arc<ReplicationRule>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(REPLICATION_KIND);
    let api: Api<ReplicationRule> =
        Api::namespaced(ctx.client.clone(), &r.namespace().unwrap_or_default());
    finalizer(&api, super::FINALIZER, r, |event| async {
        match event {
            Finalizer::Apply(r) => apply_replication(&r, &ctx).await,
            Finalizer::Cleanup(r) => cleanup_replication(&r, &ctx).await,
        }
    })
    .await
    .map_err(unwrap_finalizer)
}

/// The target bucket of a policy, ready for use, or why not.
enum Target {
    Ready {
        name: String,
        store: Box<ObjectStore>,
        admin: Arc<dyn AdminApi>,
    },
    NotReady(&'static str, String),
}

async fn target(ns: &str, bucket_ref: &str, ctx: &Context) -> Result<Target> {
    let buckets: Api<Bucket> = Api::namespaced(ctx.client.clone(), ns);
    let Some(bucket) = buckets.get_opt(bucket_ref).await? else {
        return Ok(Target::NotReady(
            "BucketNotFound",
            format!("Bucket {ns}/{bucket_ref} does not exist"),
        ));
    };
    let Some(name) = bucket.status.as_ref().and_then(|s| s.bucket_name.clone()) else {
        return Ok(Target::NotReady(
            "BucketNotReady",
            format!("Bucket {ns}/{bucket_ref} has no bucket yet"),
        ));
    };
    match fleet_of(&bucket, ctx).await? {
        Fleet::Ready(store, admin) => Ok(Target::Ready { name, store, admin }),
        Fleet::NotAllowed(_, _, msg) => Ok(Target::NotReady("NamespaceNotAllowed", msg)),
        Fleet::Missing(reason, msg) => Ok(Target::NotReady(reason, msg)),
    }
}

/// Status fields shared by both kinds.
struct Outcome {
    ready: bool,
    reason: &'static str,
    message: String,
    bucket: Option<String>,
    retry: Duration,
}

impl Outcome {
    fn not_ready(reason: &'static str, message: String, retry: Duration) -> Self {
        Self {
            ready: false,
            reason,
            message,
            bucket: None,
            retry,
        }
    }
}

/// Pushes `doc` (or deletes the configuration when `None`), mapping the gateway's answers to an
/// outcome.
async fn push(
    admin: &dyn AdminApi,
    bucket: &str,
    which: BucketConfig,
    doc: Option<&serde_json::Value>,
) -> Result<Result<(), Outcome>> {
    let r = match doc {
        Some(d) => admin.put_bucket_config(bucket, which, d).await,
        None => admin.delete_bucket_config(bucket, which).await,
    };
    match r {
        Ok(()) => Ok(Ok(())),
        Err(e @ AdminError::Unsupported { .. }) => Ok(Err(Outcome::not_ready(
            "GatewayUnsupported",
            format!(
                "{e}: the rules are validated and kept here, and pushed once the gateway supports them"
            ),
            Duration::from_secs(600),
        ))),
        Err(e) if e.code() == Some("NoSuchBucket") => Ok(Err(Outcome::not_ready(
            "BucketNotReady",
            e.to_string(),
            Duration::from_secs(30),
        ))),
        Err(e) if matches!(&e, AdminError::Api { status: 400, .. }) => Ok(Err(Outcome::not_ready(
            "Rejected",
            e.to_string(),
            Duration::from_secs(600),
        ))),
        Err(e @ AdminError::Unreachable { .. }) => Ok(Err(Outcome::not_ready(
            "ObjectStoreUnreachable",
            e.to_string(),
            Duration::from_secs(15),
        ))),
        Err(e) => Err(e.into()),
    }
}

async fn record<K>(obj: &K, ctx: &Context, out: Outcome, rules: i32) -> Result<Action>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize
        + HasPolicyStatus,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let generation = obj.meta().generation;
    let mut status = obj.policy_status();
    let previous = conditions::get(&status.conditions, READY)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()));
    let now = (
        if out.ready { "True" } else { "False" }.to_string(),
        out.reason.to_string(),
        out.message.clone(),
    );
    if previous.as_ref() != Some(&now) {
        let t = if out.ready {
            EventType::Normal
        } else {
            EventType::Warning
        };
        ctx.event(obj, t, out.reason, "Reconcile", out.message.clone())
            .await;
    }
    conditions::set(
        &mut status.conditions,
        READY,
        out.ready,
        out.reason,
        out.message,
        generation,
    );
    conditions::set(
        &mut status.conditions,
        PROGRESSING,
        !out.ready && out.reason != "GatewayUnsupported",
        out.reason,
        "",
        generation,
    );
    status.observed_generation = generation;
    status.phase = if out.ready {
        Phase::Ready
    } else if matches!(
        out.reason,
        "InvalidSpec"
            | "RuleConflict"
            | "UnknownStorageClass"
            | "Rejected"
            | "GatewayUnsupported"
            | "NamespaceNotAllowed"
    ) {
        Phase::Failed
    } else {
        Phase::Pending
    };
    if out.bucket.is_some() {
        status.bucket_name = out.bucket;
    }
    status.rules = rules;
    apply_status(&api, obj, K::status_json(status)).await?;
    if out.ready {
        ctx.succeeded(&super::key_of(obj));
    }
    Ok(Action::requeue(out.retry))
}

/// Status shape common to LifecyclePolicy and ReplicationRule.
#[derive(Default)]
pub struct PolicyStatus {
    phase: Phase,
    conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    observed_generation: Option<i64>,
    bucket_name: Option<String>,
    rules: i32,
}

/// Access to the common status of a policy kind. Each kind writes its status as its own status
/// type, whose schema is the one in the CRD: a field the kind does not declare (a ReplicationRule
/// has no `rules`) can never be sent.
pub trait HasPolicyStatus {
    /// The current status in the common shape.
    fn policy_status(&self) -> PolicyStatus;
    /// `status` as this kind's status document.
    fn status_json(status: PolicyStatus) -> serde_json::Value;
}

impl HasPolicyStatus for LifecyclePolicy {
    fn policy_status(&self) -> PolicyStatus {
        let s = self.status.clone().unwrap_or_default();
        PolicyStatus {
            phase: s.phase,
            conditions: s.conditions,
            observed_generation: s.observed_generation,
            bucket_name: s.bucket_name,
            rules: s.rules,
        }
    }

    fn status_json(s: PolicyStatus) -> serde_json::Value {
        serde_json::to_value(crate::crd::LifecyclePolicyStatus {
            phase: s.phase,
            conditions: s.conditions,
            observed_generation: s.observed_generation,
            bucket_name: s.bucket_name,
            rules: s.rules,
        })
        .expect("status")
    }
}

impl HasPolicyStatus for ReplicationRule {
    fn policy_status(&self) -> PolicyStatus {
        let s = self.status.clone().unwrap_or_default();
        PolicyStatus {
            phase: s.phase,
            conditions: s.conditions,
            observed_generation: s.observed_generation,
            bucket_name: s.bucket_name,
            rules: 0,
        }
    }

    fn status_json(s: PolicyStatus) -> serde_json::Value {
        serde_json::to_value(crate::crd::ReplicationRuleStatus {
            phase: s.phase,
            conditions: s.conditions,
            observed_generation: s.observed_generation,
            bucket_name: s.bucket_name,
        })
        .expect("status")
    }
}

/// Storage classes a policy names that the ObjectStore does not define.
pub fn unknown_storage_classes(p: &LifecyclePolicy, store: &ObjectStore) -> Vec<String> {
    let known: Vec<&str> = store
        .spec
        .storage_classes
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let mut out: Vec<String> = p
        .spec
        .rules
        .iter()
        .flat_map(|r| {
            r.transitions
                .iter()
                .flatten()
                .map(|t| t.storage_class.clone())
                .chain(
                    r.noncurrent_version_transitions
                        .iter()
                        .flatten()
                        .map(|t| t.storage_class.clone()),
                )
        })
        .filter(|c| !known.contains(&c.as_str()))
        .collect();
    out.sort();
    out.dedup();
    out
}

async fn lifecycle_siblings(
    ns: &str,
    bucket_ref: &str,
    ctx: &Context,
) -> Result<Vec<LifecyclePolicy>> {
    let api: Api<LifecyclePolicy> = Api::namespaced(ctx.client.clone(), ns);
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|p| p.spec.bucket_ref.name == bucket_ref && p.meta().deletion_timestamp.is_none())
        .collect())
}

async fn apply_lifecycle(p: &LifecyclePolicy, ctx: &Context) -> Result<Action> {
    let ns = p.namespace().unwrap_or_default();
    let (name, store, admin) = match target(&ns, &p.spec.bucket_ref.name, ctx).await? {
        Target::Ready { name, store, admin } => (name, store, admin),
        Target::NotReady(reason, msg) => {
            return record(
                p,
                ctx,
                Outcome::not_ready(reason, msg, Duration::from_secs(30)),
                0,
            )
            .await;
        }
    };
    let unknown = unknown_storage_classes(p, &store);
    if !unknown.is_empty() {
        let msg = format!(
            "storage class(es) {} are not defined in ObjectStore {}",
            unknown.join(", "),
            store.name_any()
        );
        return record(
            p,
            ctx,
            Outcome::not_ready("UnknownStorageClass", msg, Duration::from_secs(300)),
            0,
        )
        .await;
    }
    let mut siblings = lifecycle_siblings(&ns, &p.spec.bucket_ref.name, ctx).await?;
    if !siblings.iter().any(|s| s.name_any() == p.name_any()) {
        siblings.push(p.clone());
    }
    let refs: Vec<&LifecyclePolicy> = siblings.iter().collect();
    let doc = match lifecycle_document(&refs) {
        Ok(d) => d,
        Err(msg) => {
            return record(
                p,
                ctx,
                Outcome::not_ready("RuleConflict", msg, Duration::from_secs(300)),
                0,
            )
            .await;
        }
    };
    let rules = p.spec.rules.len() as i32;
    match push(admin.as_ref(), &name, BucketConfig::Lifecycle, Some(&doc)).await? {
        Ok(()) => {
            let out = Outcome {
                ready: true,
                reason: "Applied",
                message: format!(
                    "{rules} rule(s) stored in bucket {name}'s lifecycle configuration"
                ),
                bucket: Some(name),
                retry: Duration::from_secs(600),
            };
            record(p, ctx, out, rules).await
        }
        Err(mut out) => {
            out.bucket = Some(name);
            record(p, ctx, out, 0).await
        }
    }
}

async fn cleanup_lifecycle(p: &LifecyclePolicy, ctx: &Context) -> Result<Action> {
    let ns = p.namespace().unwrap_or_default();
    let Target::Ready { name, admin, .. } = target(&ns, &p.spec.bucket_ref.name, ctx).await? else {
        return Ok(Action::await_change());
    };
    let rest: Vec<LifecyclePolicy> = lifecycle_siblings(&ns, &p.spec.bucket_ref.name, ctx)
        .await?
        .into_iter()
        .filter(|s| s.name_any() != p.name_any())
        .collect();
    let refs: Vec<&LifecyclePolicy> = rest.iter().collect();
    let doc = if rest.is_empty() {
        None
    } else {
        lifecycle_document(&refs).ok()
    };
    match push(admin.as_ref(), &name, BucketConfig::Lifecycle, doc.as_ref()).await? {
        Ok(()) => Ok(Action::await_change()),
        // Nothing was ever stored, or the bucket is gone: nothing to undo.
        Err(o) if matches!(o.reason, "GatewayUnsupported" | "BucketNotReady") => {
            Ok(Action::await_change())
        }
        Err(o) => Err(Error::NotReady(o.message)),
    }
}

async fn replication_siblings(
    ns: &str,
    bucket_ref: &str,
    ctx: &Context,
) -> Result<Vec<ReplicationRule>> {
    let api: Api<ReplicationRule> = Api::namespaced(ctx.client.clone(), ns);
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|r| r.spec.bucket_ref.name == bucket_ref && r.meta().deletion_timestamp.is_none())
        .collect())
}

async fn credentials_of(
    r: &ReplicationRule,
    ctx: &Context,
) -> Result<Result<DestinationCredentials, String>> {
    let ns = r.namespace().unwrap_or_default();
    let c = &r.spec.destination.credentials_secret_ref;
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(s) = api.get_opt(&c.name).await? else {
        return Ok(Err(format!("Secret {ns}/{} does not exist", c.name)));
    };
    let get = |k: &str| {
        s.data
            .as_ref()
            .and_then(|d| d.get(k))
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .filter(|v| !v.is_empty())
    };
    match (get(&c.access_key_id_key), get(&c.secret_access_key_key)) {
        (Some(id), Some(secret)) => Ok(Ok(DestinationCredentials {
            access_key_id: id,
            secret_access_key: secret,
        })),
        _ => Ok(Err(format!(
            "Secret {ns}/{} lacks {} or {}",
            c.name, c.access_key_id_key, c.secret_access_key_key
        ))),
    }
}

/// Every rule of the bucket with its credentials; rules whose Secret is unusable are left out
/// (their own reconcile reports it).
async fn replication_doc(
    rules: &[ReplicationRule],
    ctx: &Context,
) -> Result<Result<serde_json::Value, String>> {
    let mut with_creds = Vec::new();
    for r in rules {
        if let Ok(c) = credentials_of(r, ctx).await? {
            with_creds.push((r, c));
        }
    }
    Ok(replication_document(&with_creds))
}

async fn apply_replication(r: &ReplicationRule, ctx: &Context) -> Result<Action> {
    let ns = r.namespace().unwrap_or_default();
    let (name, _store, admin) = match target(&ns, &r.spec.bucket_ref.name, ctx).await? {
        Target::Ready { name, store, admin } => (name, store, admin),
        Target::NotReady(reason, msg) => {
            return record(
                r,
                ctx,
                Outcome::not_ready(reason, msg, Duration::from_secs(30)),
                0,
            )
            .await;
        }
    };
    if let Err(msg) = credentials_of(r, ctx).await? {
        return record(
            r,
            ctx,
            Outcome::not_ready("CredentialsNotFound", msg, Duration::from_secs(60)),
            0,
        )
        .await;
    }
    let mut siblings = replication_siblings(&ns, &r.spec.bucket_ref.name, ctx).await?;
    if !siblings.iter().any(|s| s.name_any() == r.name_any()) {
        siblings.push(r.clone());
    }
    let doc = match replication_doc(&siblings, ctx).await? {
        Ok(d) => d,
        Err(msg) => {
            return record(
                r,
                ctx,
                Outcome::not_ready("RuleConflict", msg, Duration::from_secs(300)),
                0,
            )
            .await;
        }
    };
    match push(admin.as_ref(), &name, BucketConfig::Replication, Some(&doc)).await? {
        Ok(()) => {
            let out = Outcome {
                ready: true,
                reason: "Applied",
                message: format!("rule stored in bucket {name}'s replication configuration"),
                bucket: Some(name),
                retry: Duration::from_secs(600),
            };
            record(r, ctx, out, 0).await
        }
        Err(mut out) => {
            out.bucket = Some(name);
            record(r, ctx, out, 0).await
        }
    }
}

async fn cleanup_replication(r: &ReplicationRule, ctx: &Context) -> Result<Action> {
    let ns = r.namespace().unwrap_or_default();
    let Target::Ready { name, admin, .. } = target(&ns, &r.spec.bucket_ref.name, ctx).await? else {
        return Ok(Action::await_change());
    };
    let rest: Vec<ReplicationRule> = replication_siblings(&ns, &r.spec.bucket_ref.name, ctx)
        .await?
        .into_iter()
        .filter(|s| s.name_any() != r.name_any())
        .collect();
    let doc = if rest.is_empty() {
        None
    } else {
        replication_doc(&rest, ctx).await?.ok()
    };
    match push(
        admin.as_ref(),
        &name,
        BucketConfig::Replication,
        doc.as_ref(),
    )
    .await?
    {
        Ok(()) => Ok(Action::await_change()),
        Err(o) if matches!(o.reason, "GatewayUnsupported" | "BucketNotReady") => {
            Ok(Action::await_change())
        }
        Err(o) => Err(Error::NotReady(o.message)),
    }
}
