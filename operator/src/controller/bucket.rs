//! The Bucket controller: creates (or adopts) the bucket through the gateway admin API, keeps one
//! access key scoped to it, and writes the application Secret. On deletion, `Retain` removes only
//! the key; `Delete` empties and deletes the bucket too.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};

use super::{Context, Error, Result, apply, apply_status};
use crate::admin::{AdminApi, AdminError};
use crate::conditions::{self, DEGRADED, PROGRESSING, READY};
use crate::crd::bucket::BucketStatus;
use crate::crd::{Bucket, DeletionPolicy, ObjectStore, Phase, Versioning};
use crate::resources::bucket::{AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, app_secret, key_name};
use crate::resources::objectstore::s3_endpoint;

/// Kind name in metrics and logs.
pub const KIND: &str = "Bucket";

/// Reconciles one Bucket.
pub async fn reconcile(bucket: Arc<Bucket>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(KIND);
    let ns = bucket.namespace().unwrap_or_default();
    let api: Api<Bucket> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, super::FINALIZER, bucket, |event| async {
        match event {
            Finalizer::Apply(b) => apply_bucket(&b, &ctx).await,
            Finalizer::Cleanup(b) => cleanup(&b, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(Box::new(other)),
    })
}

/// A Bucket's fleet and a client of its admin API, or why there is none yet.
pub enum Fleet {
    /// Reachable.
    Ready(Box<ObjectStore>, Arc<dyn AdminApi>),
    /// Reachable, but the Bucket's namespace may not use it (`spec.allowedNamespaces`): why.
    NotAllowed(Box<ObjectStore>, Arc<dyn AdminApi>, String),
    /// Not usable: the reason and message for the `Ready` condition.
    Missing(&'static str, String),
}

/// Finds the ObjectStore a Bucket refers to and connects to its admin API.
pub async fn fleet_of(bucket: &Bucket, ctx: &Context) -> Result<Fleet> {
    let r = &bucket.spec.object_store_ref;
    let ns = r
        .namespace
        .clone()
        .or_else(|| bucket.namespace())
        .unwrap_or_default();
    let stores: Api<ObjectStore> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(store) = stores.get_opt(&r.name).await? else {
        return Ok(Fleet::Missing(
            "ObjectStoreNotFound",
            format!("ObjectStore {ns}/{} does not exist", r.name),
        ));
    };
    if store.meta().deletion_timestamp.is_some() {
        return Ok(Fleet::Missing(
            "ObjectStoreDeleting",
            format!("ObjectStore {ns}/{} is being deleted", r.name),
        ));
    }
    let Some(secrets) = ctx.fleet_secrets(&store).await? else {
        return Ok(Fleet::Missing(
            "ObjectStoreNotReady",
            format!("ObjectStore {ns}/{} has no credentials Secret yet", r.name),
        ));
    };
    let admin = ctx.admin.connect(&store, &secrets.admin_token);
    let bns = bucket.namespace().unwrap_or_default();
    if !super::access::namespace_allowed(ctx, &store, &bns).await? {
        let msg = super::access::not_allowed_message(&store, &bns);
        return Ok(Fleet::NotAllowed(Box::new(store), admin, msg));
    }
    Ok(Fleet::Ready(Box::new(store), admin))
}

/// Deletes every access key of this Bucket (named after it), returning how many went.
async fn revoke_keys(bucket: &Bucket, admin: &dyn AdminApi) -> Result<usize> {
    let label = key_name(bucket);
    let mut n = 0;
    for k in admin.keys().await?.iter().filter(|k| k.name == label) {
        admin.delete_key(&k.access_key_id).await?;
        n += 1;
    }
    Ok(n)
}

async fn set_not_ready(
    bucket: &Bucket,
    ctx: &Context,
    mut status: BucketStatus,
    reason: &str,
    msg: String,
    retry: Duration,
) -> Result<Action> {
    let api: Api<Bucket> =
        Api::namespaced(ctx.client.clone(), &bucket.namespace().unwrap_or_default());
    let generation = bucket.metadata.generation;
    let previous =
        conditions::get(&status.conditions, READY).map(|c| (c.reason.clone(), c.message.clone()));
    if previous != Some((reason.to_string(), msg.clone())) {
        ctx.event(bucket, EventType::Warning, reason, "Reconcile", msg.clone())
            .await;
    }
    conditions::set(
        &mut status.conditions,
        READY,
        false,
        reason,
        msg,
        generation,
    );
    conditions::set(
        &mut status.conditions,
        PROGRESSING,
        true,
        reason,
        "waiting",
        generation,
    );
    status.phase = if matches!(
        reason,
        "BucketAlreadyExists" | "SecretConflict" | "NamespaceNotAllowed" | "AdoptionNotAllowed"
    ) {
        Phase::Failed
    } else {
        Phase::Pending
    };
    status.observed_generation = generation;
    apply_status(&api, bucket, serde_json::to_value(&status).expect("status")).await?;
    Ok(Action::requeue(retry))
}

/// Whether `keys` hold this Bucket's access key: named after the resource (`k8s:NS/NAME`) and
/// scoped to exactly its bucket. The operator makes it right after it created (or adopted) the
/// bucket, and deletes it only when the resource goes, so it marks the bucket as this resource's
/// in the gateway itself.
pub fn marks_ownership(keys: &[crate::admin::KeyInfo], bucket: &Bucket) -> bool {
    let (label, name) = (key_name(bucket), bucket.bucket_name());
    keys.iter()
        .any(|k| k.name == label && k.buckets.as_deref() == Some(std::slice::from_ref(&name)))
}

async fn apply_bucket(bucket: &Bucket, ctx: &Context) -> Result<Action> {
    let ns = bucket.namespace().unwrap_or_default();
    let api: Api<Bucket> = Api::namespaced(ctx.client.clone(), &ns);
    let generation = bucket.metadata.generation;
    let status = bucket.status.clone().unwrap_or_default();
    let (store, admin) = match fleet_of(bucket, ctx).await? {
        Fleet::Ready(s, a) => (s, a),
        Fleet::NotAllowed(_, admin, msg) => {
            // A namespace taken off the list loses access: the keys this Bucket had go.
            let revoked = revoke_keys(bucket, admin.as_ref()).await?;
            let msg = if revoked > 0 {
                format!("{msg}; its access key was deleted")
            } else {
                msg
            };
            return set_not_ready(
                bucket,
                ctx,
                status,
                "NamespaceNotAllowed",
                msg,
                Duration::from_secs(300),
            )
            .await;
        }
        Fleet::Missing(reason, msg) => {
            return set_not_ready(bucket, ctx, status, reason, msg, Duration::from_secs(30)).await;
        }
    };
    let name = bucket.bucket_name();
    // Adopting an existing bucket is for the ObjectStore's own namespace only: from another
    // one it would hand that namespace a bucket someone else made.
    let same_namespace = bucket.namespace() == store.namespace();
    let adopt = bucket.spec.adopt_existing && same_namespace;

    // The application Secret must be this Bucket's (or not exist) before anything is created.
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let secret_name = bucket.secret_name();
    let existing = secrets.get_opt(&secret_name).await?;
    if let Some(s) = &existing {
        let mine = s.labels().get("cairn.io/bucket").map(String::as_str)
            == Some(bucket.name_any().as_str())
            && s.owner_references()
                .iter()
                .any(|o| o.kind == "Bucket" && o.name == bucket.name_any());
        if !mine {
            let msg = format!(
                "Secret {secret_name} exists and is not this Bucket's; set spec.secretName to another name"
            );
            return set_not_ready(
                bucket,
                ctx,
                status,
                "SecretConflict",
                msg,
                Duration::from_secs(300),
            )
            .await;
        }
    }

    // Whose bucket it is comes from the gateway — does the bucket exist, does this Bucket's key
    // (the marker) exist — never from the cached copy of the status alone: a reconcile
    // triggered by the Secret the previous one wrote may see a status without `bucketName`,
    // and used to report BucketAlreadyExists for a bucket it had just created. The status
    // still counts when it says so (it is only ever set after creating or adopting).
    let info = match admin.bucket(&name).await {
        Ok(i) => i,
        Err(e @ AdminError::Unreachable { .. }) => {
            return set_not_ready(
                bucket,
                ctx,
                status,
                "ObjectStoreUnreachable",
                e.to_string(),
                Duration::from_secs(15),
            )
            .await;
        }
        Err(e) => return Err(e.into()),
    };
    let key_label = key_name(bucket);
    let keys = admin.keys().await?;
    let ours =
        marks_ownership(&keys, bucket) || status.bucket_name.as_deref() == Some(name.as_str());
    let already_exists = || {
        format!(
            "bucket {name} already exists in the ObjectStore; set spec.adoptExisting: true to take it over"
        )
    };
    let info = match info {
        Some(i) if ours => i,
        Some(_) if bucket.spec.adopt_existing && !same_namespace => {
            let msg = format!(
                "bucket {name} already exists; spec.adoptExisting only adopts buckets of an ObjectStore in the Bucket's own namespace ({})",
                store.namespace().unwrap_or_default()
            );
            return set_not_ready(
                bucket,
                ctx,
                status,
                "AdoptionNotAllowed",
                msg,
                Duration::from_secs(300),
            )
            .await;
        }
        Some(i) if adopt => {
            ctx.event(
                bucket,
                EventType::Normal,
                "BucketAdopted",
                "Create",
                format!("adopted the existing bucket {name}"),
            )
            .await;
            i
        }
        Some(_) => {
            return set_not_ready(
                bucket,
                ctx,
                status,
                "BucketAlreadyExists",
                already_exists(),
                Duration::from_secs(300),
            )
            .await;
        }
        None => match admin.create_bucket(&name, adopt || ours).await {
            Ok(i) => {
                ctx.event(
                    bucket,
                    EventType::Normal,
                    "BucketCreated",
                    "Create",
                    format!("created bucket {name}"),
                )
                .await;
                i
            }
            Err(e) if e.code() == Some("InvalidBucketName") => {
                return set_not_ready(
                    bucket,
                    ctx,
                    status,
                    "InvalidBucketName",
                    e.to_string(),
                    Duration::from_secs(600),
                )
                .await;
            }
            // Created by someone else between the look-up and the creation.
            Err(e) if e.code() == Some("BucketAlreadyExists") => {
                return set_not_ready(
                    bucket,
                    ctx,
                    status,
                    "BucketAlreadyExists",
                    already_exists(),
                    Duration::from_secs(300),
                )
                .await;
            }
            Err(e) => return Err(e.into()),
        },
    };

    // The key (which also marks the bucket as this resource's) and the Secret, right after the
    // bucket: keep a working pair, else make a new one first and then remove the old.
    let read = |k: &str| {
        existing
            .as_ref()
            .and_then(|s| s.data.as_ref())
            .and_then(|d| d.get(k))
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
    };
    let current = match (read(AWS_ACCESS_KEY_ID), read(AWS_SECRET_ACCESS_KEY)) {
        (Some(id), Some(secret))
            if keys.iter().any(|k| {
                k.access_key_id == id && k.buckets.as_deref() == Some(std::slice::from_ref(&name))
            }) =>
        {
            (id, secret)
        }
        _ => {
            let k = admin
                .create_key(&key_label, std::slice::from_ref(&name))
                .await?;
            ctx.event(
                bucket,
                EventType::Normal,
                "AccessKeyCreated",
                "Create",
                format!(
                    "created access key {} for bucket {name} in Secret {secret_name}",
                    k.access_key_id
                ),
            )
            .await;
            (k.access_key_id, k.secret_key)
        }
    };
    let owner = bucket
        .controller_owner_ref(&())
        .expect("a Bucket from the API has a name and uid");
    let endpoint = s3_endpoint(&store);
    apply(
        &ctx.client,
        &ns,
        &app_secret(bucket, &endpoint, &current.0, &current.1, &owner),
    )
    .await?;
    // Keys of this Bucket that are not in the Secret (a lost Secret, a failed write) go.
    for k in keys
        .iter()
        .filter(|k| k.name == key_label && k.access_key_id != current.0)
    {
        admin.delete_key(&k.access_key_id).await?;
    }

    // Versioning: only ever switched on or suspended; the CRD's CEL rule forbids going back to Off.
    let versioning = match bucket.spec.versioning {
        Versioning::Off => None,
        Versioning::Enabled => Some("Enabled"),
        Versioning::Suspended => Some("Suspended"),
    };
    if let Some(v) = versioning {
        admin.set_versioning(&name, v).await?;
    }

    // The quota limits the bucket itself; removing it from the spec removes it from the bucket.
    let quota = bucket.spec.quota.as_ref().map(|q| {
        let max_bytes = q
            .max_size
            .as_deref()
            .and_then(crate::resources::quantity::parse_bytes)
            .map(|b| u64::try_from(b).unwrap_or(u64::MAX));
        serde_json::json!({"maxBytes": max_bytes, "maxObjects": q.max_objects})
    });
    // What the gateway could not apply; the bucket works without, and a condition says so.
    let mut not_applied: Vec<String> = Vec::new();
    match admin.set_quota(&name, quota.as_ref()).await {
        Ok(()) => {}
        Err(crate::admin::AdminError::Unsupported { .. }) => {
            if quota.is_some() {
                not_applied.push("quota (the gateway does not support quotas)".into());
            }
        }
        Err(e) => return Err(e.into()),
    }
    let default_class = bucket.spec.default_storage_class.as_deref();
    match admin.set_default_storage_class(&name, default_class).await {
        Ok(()) => {}
        Err(crate::admin::AdminError::Unsupported { .. }) => {
            if default_class.is_some() {
                not_applied.push("defaultStorageClass (the gateway does not support it)".into());
            }
        }
        Err(crate::admin::AdminError::Api { code, message, .. })
            if code == "InvalidStorageClass" =>
        {
            not_applied.push(format!("defaultStorageClass: {message}"));
        }
        Err(e) => return Err(e.into()),
    }

    let mut status = status;
    status.observed_generation = generation;
    status.bucket_name = Some(name.clone());
    status.endpoint = Some(endpoint.url());
    status.secret_name = Some(secret_name.clone());
    status.access_key_id = Some(current.0.clone());
    status.objects = info.objects.map(|v| v as i64);
    status.bytes = info.bytes.map(|v| v as i64);
    conditions::set(
        &mut status.conditions,
        READY,
        true,
        "Ready",
        format!("bucket {name} exists; credentials in Secret {secret_name}"),
        generation,
    );
    conditions::set(
        &mut status.conditions,
        PROGRESSING,
        false,
        "UpToDate",
        "",
        generation,
    );
    if not_applied.is_empty() {
        conditions::set(
            &mut status.conditions,
            DEGRADED,
            false,
            "AsSpecified",
            "",
            generation,
        );
        status.phase = Phase::Ready;
    } else {
        conditions::set(
            &mut status.conditions,
            DEGRADED,
            true,
            "NotApplied",
            format!(
                "not applied: {}; the bucket works without",
                not_applied.join("; ")
            ),
            generation,
        );
        status.phase = Phase::Degraded;
    }
    apply_status(&api, bucket, serde_json::to_value(&status).expect("status")).await?;
    ctx.succeeded(&super::key_of(bucket));
    Ok(Action::requeue(Duration::from_secs(300)))
}

async fn cleanup(bucket: &Bucket, ctx: &Context) -> Result<Action> {
    let admin = match fleet_of(bucket, ctx).await? {
        Fleet::Ready(_, a) => a,
        // Not allowed to use the fleet: never touch the bucket (deletionPolicy Delete from a
        // namespace taken off the list must not empty it); only this Bucket's keys go.
        Fleet::NotAllowed(_, admin, msg) => {
            revoke_keys(bucket, admin.as_ref()).await?;
            tracing::info!(bucket = %bucket.name_any(), msg, "not allowed: only its keys were deleted");
            return Ok(Action::await_change());
        }
        // No fleet: nothing left to clean up.
        Fleet::Missing(reason, msg) => {
            tracing::info!(bucket = %bucket.name_any(), reason, msg, "no fleet to clean up in");
            return Ok(Action::await_change());
        }
    };
    let name = bucket.bucket_name();
    // The bucket is this resource's (created or adopted by it) when its key marks it in the
    // gateway, or the status says so.
    let keys = admin.keys().await?;
    let created = marks_ownership(&keys, bucket)
        || bucket
            .status
            .as_ref()
            .and_then(|s| s.bucket_name.as_deref())
            == Some(name.as_str());
    if bucket.spec.deletion_policy == DeletionPolicy::Delete && created {
        let existed = admin.delete_bucket(&name, true).await?;
        if existed {
            ctx.event(
                bucket,
                EventType::Normal,
                "BucketDeleted",
                "Delete",
                format!("deleted bucket {name} and every object in it (deletionPolicy Delete)"),
            )
            .await;
        }
    }
    let key_label = key_name(bucket);
    for k in keys.iter().filter(|k| k.name == key_label) {
        admin.delete_key(&k.access_key_id).await?;
    }
    if bucket.spec.deletion_policy == DeletionPolicy::Retain {
        ctx.event(
            bucket,
            EventType::Normal,
            "BucketRetained",
            "Delete",
            format!(
                "kept bucket {name} and its objects (deletionPolicy Retain); deleted its access key"
            ),
        )
        .await;
    }
    Ok(Action::await_change())
}
