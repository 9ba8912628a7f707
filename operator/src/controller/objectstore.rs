//! The ObjectStore controller: applies the fleet's objects, grows volumes, rolls storage nodes one
//! at a time while the fleet is healthy, reports status; deleting a store that Buckets still use
//! is refused with an Event and a condition.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use serde_json::json;

use super::pods::{PodSummary, pod_ready};
use super::{Context, Error, FINALIZER, Result, apply, apply_status};
use crate::admin::{Health, NodeReport};
use crate::conditions::{self, DEGRADED, PROGRESSING, READY};
use crate::crd::objectstore::{Capacity, ObjectStoreStatus, ZoneStatus};
use crate::crd::{Bucket, ObjectStore, Phase};
use crate::resources::objectstore::{
    self as build, COMPONENT_GATEWAY, COMPONENT_NODE, FleetSecrets, credentials_secret, names,
    owner_ref,
};
use crate::resources::quantity::parse_bytes;

/// Kind name in metrics and logs.
pub const KIND: &str = "ObjectStore";

/// Reconciles one ObjectStore.
pub async fn reconcile(store: Arc<ObjectStore>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(KIND);
    let ns = store.namespace().unwrap_or_default();
    let api: Api<ObjectStore> = Api::namespaced(ctx.client.clone(), &ns);
    let action = finalizer(&api, super::FINALIZER, store, |event| async {
        match event {
            Finalizer::Apply(s) => apply_store(&s, &ctx).await,
            Finalizer::Cleanup(s) => cleanup(&s, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(Box::new(other)),
    })?;
    Ok(action)
}

/// Buckets (any namespace) that use `store`, as `namespace/name`.
pub fn buckets_using(store: &ObjectStore, buckets: &[Bucket]) -> Vec<String> {
    let ns = store.namespace().unwrap_or_default();
    let name = store.name_any();
    let mut out: Vec<String> = buckets
        .iter()
        .filter(|b| {
            let bns = b.namespace().unwrap_or_default();
            let r = &b.spec.object_store_ref;
            r.name == name && r.namespace.as_deref().unwrap_or(&bns) == ns
        })
        .map(|b| format!("{}/{}", b.namespace().unwrap_or_default(), b.name_any()))
        .collect();
    out.sort();
    out
}

async fn cleanup(store: &ObjectStore, ctx: &Context) -> Result<Action> {
    let buckets: Vec<Bucket> = ctx.list_watched().await?;
    let using = buckets_using(store, &buckets);
    if using.is_empty() {
        ctx.event(
            store,
            EventType::Normal,
            "Deleted",
            "Delete",
            "no Buckets use this ObjectStore; deleting it".into(),
        )
        .await;
        return Ok(Action::await_change());
    }
    let shown: Vec<&str> = using.iter().take(5).map(String::as_str).collect();
    let msg = format!(
        "deletion blocked: {} Bucket(s) still use this ObjectStore ({}{}); delete them first",
        using.len(),
        shown.join(", "),
        if using.len() > 5 { ", ..." } else { "" }
    );
    ctx.event(
        store,
        EventType::Warning,
        "DeletionBlocked",
        "Delete",
        msg.clone(),
    )
    .await;
    let mut status = store.status.clone().unwrap_or_default();
    let generation = store.metadata.generation;
    conditions::set(
        &mut status.conditions,
        READY,
        false,
        "DeletionBlocked",
        msg,
        generation,
    );
    status.phase = Phase::Deleting;
    let api: Api<ObjectStore> =
        Api::namespaced(ctx.client.clone(), &store.namespace().unwrap_or_default());
    apply_status(&api, store, serde_json::to_value(&status).expect("status")).await?;
    Err(Error::DeletionBlocked {
        store: store.name_any(),
        count: using.len(),
        buckets: shown.join(", "),
    })
}

/// The credentials Secret: read if present, generated and created once otherwise. An existing
/// Secret is never overwritten, so keys are not rotated by accident.
async fn ensure_credentials(
    store: &ObjectStore,
    ctx: &Context,
) -> Result<Result<FleetSecrets, String>> {
    let ns = store.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let name = names::credentials(&store.name_any());
    if let Some(s) = api.get_opt(&name).await? {
        let s = add_missing_keys(store, ctx, &api, s).await?;
        return Ok(FleetSecrets::from_secret(&s).ok_or_else(|| {
            format!("Secret {name} lacks CAIRN_ROOT_ACCESS_KEY, CAIRN_ROOT_SECRET_KEY or CAIRN_ADMIN_TOKEN; restore it or delete it to generate new credentials")
        }));
    }
    let secrets = FleetSecrets::generate();
    let secret = credentials_secret(store, &secrets, &owner_ref(store));
    match api
        .create(
            &PostParams {
                field_manager: Some(crate::resources::FIELD_MANAGER.into()),
                ..Default::default()
            },
            &secret,
        )
        .await
    {
        Ok(_) => {
            ctx.event(
                store,
                EventType::Normal,
                "CredentialsCreated",
                "Create",
                format!("generated root credentials, admin token, fleet secret and index seal key in Secret {name}"),
            )
            .await;
            Ok(Ok(secrets))
        }
        // Someone (another replica, a restore) created it meanwhile: use theirs.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let s = api.get(&name).await?;
            Ok(FleetSecrets::from_secret(&s).ok_or_else(|| format!("Secret {name} is incomplete")))
        }
        Err(e) => Err(e.into()),
    }
}

/// Adds the generated-once keys (fleet secret, index seal key) an existing credentials Secret
/// lacks, generated now, without touching its other keys: a merge patch of those keys only,
/// conditional on the Secret's resourceVersion (a concurrent writer makes it fail and retry
/// rather than overwrite).
async fn add_missing_keys(
    store: &ObjectStore,
    ctx: &Context,
    api: &Api<Secret>,
    secret: Secret,
) -> Result<Secret> {
    let missing = FleetSecrets::missing_keys(&secret);
    if missing.is_empty() {
        return Ok(secret);
    }
    let data: serde_json::Map<String, serde_json::Value> = missing
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                serde_json::to_value(k8s_openapi::ByteString(v.clone().into_bytes()))
                    .expect("bytes"),
            )
        })
        .collect();
    let patch = json!({
        "metadata": {"resourceVersion": secret.metadata.resource_version},
        "data": data,
    });
    let name = secret.name_any();
    let patched = api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let keys: Vec<&str> = missing.keys().map(String::as_str).collect();
    ctx.event(
        store,
        EventType::Normal,
        "CredentialsExtended",
        "Update",
        format!(
            "added {} to Secret {name} (generated once; its other keys are unchanged)",
            keys.join(" and ")
        ),
    )
    .await;
    Ok(patched)
}

/// What to do about storage nodes whose pod runs an old revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RollDecision {
    /// Every storage node runs its StatefulSet's update revision.
    UpToDate,
    /// Some are outdated, but rolling one now could hurt: why.
    Wait(String),
    /// Delete this pod; its StatefulSet recreates it at the new revision.
    Delete(String),
}

/// Chooses the next storage node to restart for an update: one at a time over the whole fleet,
/// only when every storage node pod is ready and the gateway reports every node up.
pub fn next_node_to_roll(
    sets: &[StatefulSet],
    pods: &[Pod],
    health: Option<&Health>,
) -> RollDecision {
    let mut outdated = Vec::new();
    for set in sets {
        let Some(update) = set.status.as_ref().and_then(|s| s.update_revision.clone()) else {
            continue;
        };
        let set_name = set.name_any();
        for p in pods {
            let owned = p
                .owner_references()
                .iter()
                .any(|o| o.kind == "StatefulSet" && o.name == set_name);
            let rev = p.labels().get("controller-revision-hash");
            if owned && rev.is_some_and(|r| *r != update) {
                outdated.push(p);
            }
        }
    }
    if outdated.is_empty() {
        return RollDecision::UpToDate;
    }
    if let Some(p) = pods
        .iter()
        .find(|p| p.metadata.deletion_timestamp.is_some() || !pod_ready(p))
    {
        return RollDecision::Wait(format!("storage node {} is not ready", p.name_any()));
    }
    let want: i32 = sets
        .iter()
        .map(|s| s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1))
        .sum();
    if (pods.len() as i32) < want {
        return RollDecision::Wait(format!("{} of {want} storage node pods exist", pods.len()));
    }
    match health {
        None => RollDecision::Wait("fleet health unknown (admin API unreachable)".into()),
        Some(h) if h.status != "ok" => RollDecision::Wait(format!(
            "fleet is {}: {} of {} storage nodes up, {} shards waiting for repair",
            h.status, h.nodes_up, h.nodes_total, h.repair_backlog
        )),
        Some(_) => {
            outdated.sort_by_key(|p| p.name_any());
            RollDecision::Delete(outdated[outdated.len() - 1].name_any())
        }
    }
}

/// How many gateways to run on the way from `running` (the StatefulSet's replicas now) to
/// `wanted`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GatewayScale {
    /// Run `wanted` gateways (nothing leaves, or the leaving ones no longer vote).
    Run(i32),
    /// Keep `running` gateways while `retiring` (the highest ordinals, which a StatefulSet
    /// scale-down deletes at once) hand their index votes and leadership to the others:
    /// deleting voters together could take the index group's majority with them.
    Drain {
        /// Gateways kept until the drain is done.
        running: i32,
        /// Ordinals about to go.
        retiring: BTreeSet<u64>,
    },
}

/// See [`GatewayScale`].
pub fn gateway_scale(running: Option<i32>, wanted: i32) -> GatewayScale {
    match running {
        Some(running) if running > wanted && wanted >= 1 => GatewayScale::Drain {
            running,
            retiring: (wanted..running).map(|o| o as u64).collect(),
        },
        _ => GatewayScale::Run(wanted),
    }
}

/// The ordinal of a StatefulSet pod (`NAME-ORDINAL`).
fn ordinal(pod: &Pod) -> Option<u64> {
    pod.labels()
        .get(build::POD_INDEX_LABEL)
        .cloned()
        .or_else(|| pod.name_any().rsplit_once('-').map(|(_, o)| o.to_string()))?
        .parse()
        .ok()
}

/// Whether a PVC of `current` size must grow to `desired`.
pub fn needs_growth(current: Option<&str>, desired: &str) -> bool {
    match (current.and_then(parse_bytes), parse_bytes(desired)) {
        (Some(c), Some(d)) => d > c,
        _ => false,
    }
}

async fn apply_store(store: &ObjectStore, ctx: &Context) -> Result<Action> {
    let ns = store.namespace().unwrap_or_default();
    let name = store.name_any();
    let api: Api<ObjectStore> = Api::namespaced(ctx.client.clone(), &ns);
    let generation = store.metadata.generation;
    let mut status = store.status.clone().unwrap_or_default();
    status.observed_generation = generation;

    let problems = build::validate(&store.spec);
    if !problems.is_empty() {
        let msg = problems.join("; ");
        if !conditions::get(&status.conditions, READY)
            .is_some_and(|c| c.reason == "InvalidSpec" && c.message == msg)
        {
            ctx.event(
                store,
                EventType::Warning,
                "InvalidSpec",
                "Validate",
                msg.clone(),
            )
            .await;
        }
        conditions::set(
            &mut status.conditions,
            READY,
            false,
            "InvalidSpec",
            msg,
            generation,
        );
        conditions::set(
            &mut status.conditions,
            PROGRESSING,
            false,
            "InvalidSpec",
            "fix the spec",
            generation,
        );
        status.phase = Phase::Failed;
        apply_status(&api, store, serde_json::to_value(&status).expect("status")).await?;
        return Ok(Action::requeue(Duration::from_secs(600)));
    }

    let secrets = match ensure_credentials(store, ctx).await? {
        Ok(s) => s,
        Err(msg) => {
            conditions::set(
                &mut status.conditions,
                READY,
                false,
                "CredentialsInvalid",
                msg,
                generation,
            );
            status.phase = Phase::Failed;
            apply_status(&api, store, serde_json::to_value(&status).expect("status")).await?;
            return Ok(Action::requeue(Duration::from_secs(300)));
        }
    };
    let owner = owner_ref(store);

    let services = build::services(store, &owner);
    for svc in &services {
        apply(&ctx.client, &ns, svc).await?;
    }
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let admin = ctx.admin.connect(store, &secrets.admin_token);
    let (gateways, draining) = scale_gateways(store, ctx, &sts_api, &pods_api, &*admin).await?;
    let mut desired_sets: Vec<StatefulSet> = store
        .spec
        .zones
        .iter()
        .map(|z| build::node_statefulset(store, z, &ctx.build, &owner))
        .collect();
    desired_sets.push(build::gateway_statefulset_of(
        store, &ctx.build, &owner, gateways,
    ));
    let mut applied_sets = Vec::new();
    let set_names: BTreeSet<String> = desired_sets.iter().map(|s| s.name_any()).collect();
    for mut set in desired_sets {
        let set_name = set.name_any();
        // Claim templates are immutable: keep the existing ones, grow the PVCs instead.
        let desired_claims = set
            .spec
            .as_ref()
            .and_then(|s| s.volume_claim_templates.clone())
            .unwrap_or_default();
        if let Some(existing) = sts_api.get_opt(&set_name).await? {
            if let (Some(spec), Some(old)) = (set.spec.as_mut(), existing.spec.as_ref()) {
                spec.volume_claim_templates = old.volume_claim_templates.clone();
            }
            grow_claims(ctx, &ns, &existing, &desired_claims, store).await?;
        }
        applied_sets.push(apply(&ctx.client, &ns, &set).await?);
    }
    let budgets = build::disruption_budgets(store, &ctx.build, &owner);
    for pdb in &budgets {
        apply(&ctx.client, &ns, pdb).await?;
    }
    // What the desired state no longer holds goes (a gateway PodDisruptionBudget after a scale
    // to fewer than three gateways would otherwise block every drain of its node).
    let policy = build::network_policy(store, &ctx.build, &owner);
    if let Some(p) = &policy {
        apply(&ctx.client, &ns, p).await?;
    }
    let policy_names: BTreeSet<String> = policy.iter().map(|p| p.name_any()).collect();
    let budget_names: BTreeSet<String> = budgets.iter().map(|b| b.name_any()).collect();
    let service_names: BTreeSet<String> = services.iter().map(|b| b.name_any()).collect();
    let mut pruned = Vec::new();
    pruned.extend(prune::<PodDisruptionBudget>(ctx, store, &budget_names).await?);
    pruned.extend(prune::<Service>(ctx, store, &service_names).await?);
    pruned.extend(prune::<NetworkPolicy>(ctx, store, &policy_names).await?);
    pruned.extend(prune::<StatefulSet>(ctx, store, &set_names).await?);
    if !pruned.is_empty() {
        ctx.event(
            store,
            EventType::Normal,
            "Pruned",
            "Delete",
            format!(
                "deleted what the spec no longer asks for: {}",
                pruned.join(", ")
            ),
        )
        .await;
    }
    if service_monitor_available(ctx).await {
        let sm = build::service_monitor(store, &owner);
        let ar = ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
            "monitoring.coreos.com",
            "v1",
            "ServiceMonitor",
        ));
        let sm_api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &ns, &ar);
        sm_api
            .patch(
                &name,
                &PatchParams::apply(crate::resources::FIELD_MANAGER).force(),
                &Patch::Apply(&sm),
            )
            .await?;
    }

    // The fleet as the gateway sees it (absent while no gateway answers).
    let health = admin.health().await.ok();
    let nodes = if health.is_some() {
        admin.nodes().await.ok()
    } else {
        None
    };

    // Storage-node updates: one pod at a time, only while healthy.
    let node_sets: Vec<StatefulSet> = applied_sets
        .iter()
        .filter(|s| {
            s.labels()
                .get("app.kubernetes.io/component")
                .map(String::as_str)
                == Some(COMPONENT_NODE)
        })
        .cloned()
        .collect();
    let component = |p: &Pod| p.labels().get("app.kubernetes.io/component").cloned();
    let all_pods: Vec<Pod> = pods_api
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={name}")))
        .await?
        .items
        .into_iter()
        .filter(|p| {
            matches!(
                component(p).as_deref(),
                Some(COMPONENT_NODE | COMPONENT_GATEWAY)
            )
        })
        .collect();
    let pods: Vec<Pod> = all_pods
        .iter()
        .filter(|p| component(p).as_deref() == Some(COMPONENT_NODE))
        .cloned()
        .collect();
    let summary = PodSummary::of(&all_pods, k8s_openapi::jiff::Timestamp::now());
    let roll = next_node_to_roll(&node_sets, &pods, health.as_ref());
    let mut requeue = Duration::from_secs(60);
    match &roll {
        RollDecision::Delete(pod) => {
            ctx.event(
                store,
                EventType::Normal,
                "RollingStorageNode",
                "Update",
                format!("restarting storage node {pod} to update it (fleet healthy)"),
            )
            .await;
            pods_api.delete(pod, &DeleteParams::default()).await?;
            requeue = Duration::from_secs(10);
        }
        RollDecision::Wait(_) => requeue = Duration::from_secs(15),
        RollDecision::UpToDate => {}
    }

    let observed = Observed {
        sets: &applied_sets,
        pods: &summary,
        health: health.as_ref(),
        nodes: nodes.as_deref(),
        roll: &roll,
    };
    fill_status(&mut status, store, &observed, ctx, generation);
    if let Some(why) = draining {
        conditions::set(
            &mut status.conditions,
            PROGRESSING,
            true,
            "DrainingGateways",
            why,
            generation,
        );
        requeue = Duration::from_secs(5);
    }
    let gw_wanted = build::gateway_replicas(&store.spec, &ctx.build);
    if gw_wanted < store.spec.gateway.replicas {
        conditions::set(
            &mut status.conditions,
            DEGRADED,
            true,
            "GatewayReplicasCapped",
            format!(
                "running {gw_wanted} gateway(s) instead of {}: capped by the operator (flag --max-gateway-replicas, chart value operator.maxGatewayReplicas)",
                store.spec.gateway.replicas
            ),
            generation,
        );
    }
    let previous_ready = store
        .status
        .as_ref()
        .and_then(|s| conditions::get(&s.conditions, READY))
        .map(|c| (c.status.clone(), c.reason.clone()));
    let was_ready = previous_ready.as_ref().is_some_and(|(s, _)| s == "True");
    let ready = conditions::is_true(&status.conditions, READY);
    if let Some(t) = summary.worst()
        && previous_ready.as_ref().map(|(_, r)| r.as_str()) != Some(t.reason())
    {
        ctx.event(
            store,
            EventType::Warning,
            t.reason(),
            "Reconcile",
            t.message.clone(),
        )
        .await;
    }
    if ready && !was_ready {
        ctx.event(
            store,
            EventType::Normal,
            "Ready",
            "Reconcile",
            "every gateway and storage node is ready and the fleet is healthy".into(),
        )
        .await;
    }
    apply_status(&api, store, serde_json::to_value(&status).expect("status")).await?;
    ctx.succeeded(&super::key_of(store));
    // Pod and StatefulSet changes trigger a reconcile at once (watches); the fleet's health does
    // not, so while the pods are ready but the gateway does not report the fleet healthy yet,
    // ask again soon.
    let pods_ready = status.ready_gateways >= build::gateway_replicas(&store.spec, &ctx.build)
        && status.ready_storage_nodes
            >= store.spec.storage.nodes_per_zone * store.spec.zones.len() as i32;
    Ok(Action::requeue(if ready {
        Duration::from_secs(120)
    } else if pods_ready {
        requeue.min(Duration::from_secs(5))
    } else {
        requeue.min(Duration::from_secs(30))
    }))
}

/// How many gateways the StatefulSet gets now, and why it is not yet the spec's count (a drain
/// in progress). Scaling down, the leaving gateways first hand their index votes and leadership
/// to the others (`PUT /admin/v1/index/retiring`, repeated each reconcile until done); gateway
/// pods beyond the count that still exist (terminating) are kept from voting the same way.
async fn scale_gateways(
    store: &ObjectStore,
    ctx: &Context,
    sts_api: &Api<StatefulSet>,
    pods_api: &Api<Pod>,
    admin: &dyn crate::admin::AdminApi,
) -> Result<(i32, Option<String>)> {
    let wanted = build::gateway_replicas(&store.spec, &ctx.build);
    let name = store.name_any();
    let running = sts_api
        .get_opt(&names::gateway(&name))
        .await?
        .and_then(|s| s.spec)
        .and_then(|s| s.replicas);
    match gateway_scale(running, wanted) {
        GatewayScale::Run(n) => {
            if running.is_some_and(|r| r > 1) || n > 1 {
                let pods = pods_api
                    .list(&ListParams::default().labels(&format!(
                        "app.kubernetes.io/instance={name},app.kubernetes.io/component={COMPONENT_GATEWAY}"
                    )))
                    .await?
                    .items;
                let leftover: BTreeSet<u64> = pods
                    .iter()
                    .filter_map(ordinal)
                    .filter(|o| *o >= n as u64)
                    .collect();
                // Best effort: with no gateway answering there is no vote to move either.
                if let Err(e) = admin.retire_gateways(&leftover).await {
                    tracing::debug!(store = %name, error = %e, "retiring set not sent");
                }
            }
            Ok((n, None))
        }
        GatewayScale::Drain { running, retiring } => match admin.retire_gateways(&retiring).await {
            Ok(members) if members.drained(&retiring) => {
                ctx.event(
                        store,
                        EventType::Normal,
                        "GatewaysDrained",
                        "Scale",
                        format!(
                            "gateways {retiring:?} no longer vote in the index (voters {:?}); scaling gateways {running} -> {wanted}",
                            members.voters
                        ),
                    )
                    .await;
                Ok((wanted, None))
            }
            Ok(members) => Ok((
                running,
                Some(format!(
                    "scaling gateways {running} -> {wanted}: moving the index votes of gateways {retiring:?} to the others first (voters {:?}, leader {:?})",
                    members.voters, members.leader
                )),
            )),
            Err(e) => Ok((
                running,
                Some(format!(
                    "scaling gateways {running} -> {wanted} waits: gateways {retiring:?} must hand over their index votes, but the admin API failed: {e}"
                )),
            )),
        },
    }
}

/// What a reconcile saw of the fleet.
pub struct Observed<'a> {
    /// The StatefulSets as applied.
    pub sets: &'a [StatefulSet],
    /// The pods of the fleet.
    pub pods: &'a PodSummary,
    /// The gateway's health answer (absent while no gateway answers).
    pub health: Option<&'a Health>,
    /// The gateway's storage-node reports.
    pub nodes: Option<&'a [NodeReport]>,
    /// The storage-node update decision.
    pub roll: &'a RollDecision,
}

/// Whether a StatefulSet is mid-rollout: its controller has not seen the latest spec, the pods
/// run an older revision, or it is scaling.
fn rolling(s: &StatefulSet) -> bool {
    s.status.as_ref().is_some_and(|st| {
        st.observed_generation != s.metadata.generation
            || (st.update_revision.is_some() && st.update_revision != st.current_revision)
            || Some(st.replicas) != s.spec.as_ref().and_then(|sp| sp.replicas)
    })
}

/// Fills the status from what was observed: Ready follows the pods and the gateway's health;
/// Progressing is true only while something really changes (a StatefulSet rolling or scaling, a
/// storage node update, pods coming up), never for a crash loop or a hung pod, which make
/// `Ready=False` with a reason of their own (`GatewayCrashLoop`, `NodeCrashLoop`,
/// `ImagePullFailed`, `ContainerConfigError`, `PodsUnschedulable`, `PodsNotReady`).
pub fn fill_status(
    status: &mut ObjectStoreStatus,
    store: &ObjectStore,
    seen: &Observed<'_>,
    ctx: &Context,
    generation: Option<i64>,
) {
    fill_status_with(status, store, seen, &ctx.build, generation)
}

/// [`fill_status`] with the operator's build settings.
pub fn fill_status_with(
    status: &mut ObjectStoreStatus,
    store: &ObjectStore,
    seen: &Observed<'_>,
    build_config: &build::BuildConfig,
    generation: Option<i64>,
) {
    let (sets, health, nodes, roll) = (seen.sets, seen.health, seen.nodes, seen.roll);
    let name = store.name_any();
    let ready_of = |set: &str| {
        sets.iter()
            .find(|s| s.name_any() == set)
            .and_then(|s| s.status.as_ref())
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
    };
    status.zones = store
        .spec
        .zones
        .iter()
        .map(|z| {
            let in_zone: Vec<&NodeReport> = nodes
                .unwrap_or(&[])
                .iter()
                .filter(|n| &n.zone == z)
                .collect();
            ZoneStatus {
                name: z.clone(),
                desired_nodes: store.spec.storage.nodes_per_zone,
                ready_nodes: ready_of(&names::node_set(&name, z)),
                nodes_up: nodes.map(|_| in_zone.iter().filter(|n| n.state == "up").count() as i32),
                total_bytes: nodes.map(|_| in_zone.iter().map(|n| n.total_bytes as i64).sum()),
                used_bytes: nodes.map(|_| in_zone.iter().map(|n| n.used_bytes as i64).sum()),
            }
        })
        .collect();
    status.ready_storage_nodes = status.zones.iter().map(|z| z.ready_nodes).sum();
    status.ready_gateways = ready_of(&names::gateway(&name));
    status.health = health.map(|h| h.status.clone());
    status.capacity = nodes.map(|ns| Capacity {
        total_bytes: ns.iter().map(|n| n.total_bytes as i64).sum(),
        used_bytes: ns.iter().map(|n| n.used_bytes as i64).sum(),
        available_bytes: ns.iter().map(|n| n.available_bytes as i64).sum(),
    });
    status.endpoint = Some(build::s3_endpoint(store).url());
    status.secret_name = Some(names::credentials(&name));

    let want_nodes = store.spec.storage.nodes_per_zone * store.spec.zones.len() as i32;
    let want_gw = build::gateway_replicas(&store.spec, build_config);
    let pods_ready = status.ready_storage_nodes >= want_nodes && status.ready_gateways >= want_gw;
    let counts = format!(
        "{} of {want_gw} gateways and {} of {want_nodes} storage nodes ready",
        status.ready_gateways, status.ready_storage_nodes
    );
    let rolling_sets: Vec<String> = sets
        .iter()
        .filter(|s| rolling(s))
        .map(|s| s.name_any())
        .collect();
    let missing =
        (want_gw + want_nodes) as usize - seen.pods.count.min((want_gw + want_nodes) as usize);
    let starting = !pods_ready && (!seen.pods.starting.is_empty() || missing > 0);
    let mut coming = seen.pods.starting.clone();
    if missing > 0 {
        coming.push(format!("{missing} pod(s) not created yet"));
    }
    let (progressing, p_reason, p_msg) = match roll {
        RollDecision::Delete(pod) => (true, "Updating", format!("updating storage node {pod}")),
        RollDecision::Wait(why) => (
            true,
            "UpdatePaused",
            format!("storage node update paused: {why}"),
        ),
        RollDecision::UpToDate if !rolling_sets.is_empty() => (
            true,
            "Updating",
            format!("StatefulSets rolling out: {}", rolling_sets.join(", ")),
        ),
        RollDecision::UpToDate if starting => (
            true,
            "PodsStarting",
            format!("{counts}; starting: {}", coming.join(", ")),
        ),
        RollDecision::UpToDate => (false, "UpToDate", "every pod runs the current spec".into()),
    };
    conditions::set(
        &mut status.conditions,
        PROGRESSING,
        progressing,
        p_reason,
        p_msg,
        generation,
    );
    let (deg, deg_reason, deg_msg) = match health {
        None => (
            false,
            "HealthUnknown",
            "the admin API did not answer".to_string(),
        ),
        Some(h) if h.status == "ok" => (
            false,
            "Healthy",
            format!("{} of {} storage nodes up", h.nodes_up, h.nodes_total),
        ),
        Some(h) => (
            true,
            "NodesDown",
            format!(
                "fleet {}: {} of {} storage nodes up, writable={}, {} shards waiting for repair, {} unrepairable",
                h.status,
                h.nodes_up,
                h.nodes_total,
                h.writable,
                h.repair_backlog,
                h.unrepairable_shards
            ),
        ),
    };
    conditions::set(
        &mut status.conditions,
        DEGRADED,
        deg,
        deg_reason,
        deg_msg,
        generation,
    );
    let healthy = health.is_some_and(|h| h.status == "ok");
    let ready = pods_ready && healthy;
    let trouble = seen.pods.worst();
    let (reason, msg) = if ready {
        (
            "Ready",
            "every gateway and storage node is ready and the fleet is healthy".to_string(),
        )
    } else if let Some(t) = trouble {
        let more = seen.pods.troubles.len() - 1;
        let more = if more > 0 {
            format!(" (and {more} more pod(s) in trouble)")
        } else {
            String::new()
        };
        (t.reason(), format!("{}{more}; {counts}", t.message))
    } else if !pods_ready {
        let hung = if seen.pods.not_ready.is_empty() {
            String::new()
        } else {
            format!("; {}", seen.pods.not_ready.join("; "))
        };
        ("PodsNotReady", format!("{counts}{hung}"))
    } else {
        (
            "FleetUnhealthy",
            "pods are ready but the gateway does not report every storage node up".to_string(),
        )
    };
    conditions::set(
        &mut status.conditions,
        READY,
        ready,
        reason,
        msg,
        generation,
    );
    status.phase = if ready && deg {
        Phase::Degraded
    } else if ready {
        Phase::Ready
    } else if trouble.is_some() && !progressing {
        Phase::Failed
    } else if progressing {
        Phase::Progressing
    } else {
        Phase::Degraded
    };
}

async fn grow_claims(
    ctx: &Context,
    ns: &str,
    existing: &StatefulSet,
    desired_claims: &[PersistentVolumeClaim],
    store: &ObjectStore,
) -> Result<()> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    let replicas = existing.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    for claim in desired_claims {
        let Some(want) = claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .map(|q| q.0.clone())
        else {
            continue;
        };
        for i in 0..replicas {
            let pvc_name = format!("{}-{}-{i}", claim.name_any(), existing.name_any());
            let Some(pvc) = pvcs.get_opt(&pvc_name).await? else {
                continue;
            };
            let have = pvc
                .spec
                .as_ref()
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"))
                .map(|q| q.0.clone());
            if needs_growth(have.as_deref(), &want) {
                let patch = json!({"spec": {"resources": {"requests": {"storage": want}}}});
                match pvcs
                    .patch(&pvc_name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {
                        ctx.event(
                            store,
                            EventType::Normal,
                            "VolumeExpanding",
                            "Update",
                            format!(
                                "growing {pvc_name} from {} to {want}",
                                have.unwrap_or_default()
                            ),
                        )
                        .await;
                    }
                    Err(kube::Error::Api(e)) if e.code == 422 || e.code == 403 => {
                        ctx.event(
                            store,
                            EventType::Warning,
                            "VolumeExpansionRefused",
                            "Update",
                            format!("{pvc_name} cannot grow to {want}: {}", e.message),
                        )
                        .await;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(())
}

/// Deletes the objects of kind `K` this store owns (its label and controller reference) whose
/// names are not in `keep`; returns `Kind/name` of each.
async fn prune<K>(
    ctx: &Context,
    store: &ObjectStore,
    keep: &BTreeSet<String>,
) -> Result<Vec<String>>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    let ns = store.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let uid = store.uid();
    let owned = api
        .list(&ListParams::default().labels(&format!(
            "app.kubernetes.io/instance={},app.kubernetes.io/managed-by={}",
            store.name_any(),
            crate::resources::MANAGED_BY
        )))
        .await?
        .items;
    let mut gone = Vec::new();
    for o in owned {
        let ours = o
            .owner_references()
            .iter()
            .any(|r| r.controller == Some(true) && Some(&r.uid) == uid.as_ref());
        let name = o.name_any();
        if !ours || keep.contains(&name) {
            continue;
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => gone.push(format!("{}/{name}", K::kind(&()))),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(gone)
}

async fn service_monitor_available(ctx: &Context) -> bool {
    ctx.client
        .list_api_group_resources("monitoring.coreos.com/v1")
        .await
        .is_ok_and(|l| l.resources.iter().any(|r| r.kind == "ServiceMonitor"))
}

/// The ObjectStore a Bucket refers to, for watch mapping.
pub fn store_of(bucket: &Bucket) -> kube::runtime::reflector::ObjectRef<ObjectStore> {
    let ns = bucket
        .spec
        .object_store_ref
        .namespace
        .clone()
        .or_else(|| bucket.namespace())
        .unwrap_or_default();
    kube::runtime::reflector::ObjectRef::new(&bucket.spec.object_store_ref.name).within(&ns)
}

impl ObjectStore {
    /// Whether the operator's finalizer is on this object.
    pub fn has_finalizer(&self) -> bool {
        self.finalizers().iter().any(|f| f == FINALIZER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_admin_api::{GroupStatus, ReplicationStatus};

    #[test]
    fn only_a_scale_down_of_a_replicated_index_drains() {
        assert_eq!(gateway_scale(None, 3), GatewayScale::Run(3));
        assert_eq!(gateway_scale(Some(3), 5), GatewayScale::Run(5));
        assert_eq!(gateway_scale(Some(3), 3), GatewayScale::Run(3));
        assert_eq!(
            gateway_scale(Some(5), 3),
            GatewayScale::Drain {
                running: 5,
                retiring: BTreeSet::from([3, 4])
            }
        );
        assert_eq!(
            gateway_scale(Some(2), 1),
            GatewayScale::Drain {
                running: 2,
                retiring: BTreeSet::from([1])
            }
        );
        // Zero gateways (a paused store): nothing is left to hand votes to.
        assert_eq!(gateway_scale(Some(3), 0), GatewayScale::Run(0));
    }

    #[test]
    fn drained_means_neither_voting_nor_leading() {
        let retiring = BTreeSet::from([3, 4]);
        let members = |leader: Option<u64>, voters: &[u64]| ReplicationStatus {
            leader,
            voters: voters.to_vec(),
            ..Default::default()
        };
        assert!(members(Some(0), &[0, 1, 2]).drained(&retiring));
        assert!(!members(Some(0), &[0, 1, 3]).drained(&retiring));
        assert!(!members(Some(4), &[0, 1, 2]).drained(&retiring));
        assert!(!members(None, &[0, 1, 2]).drained(&retiring));
        // Every group counts: a data group still led or voted in by a leaving gateway.
        let group = |group: u64, leader: Option<u64>, voters: &[u64]| GroupStatus {
            group,
            leader,
            voters: voters.to_vec(),
            ..Default::default()
        };
        let mut split = members(Some(0), &[0, 1, 2]);
        split.groups = vec![group(1, Some(0), &[0, 1, 2]), group(2, Some(1), &[0, 1, 2])];
        assert!(split.drained(&retiring));
        split.groups.push(group(3, Some(3), &[0, 1, 2]));
        assert!(!split.drained(&retiring));
        split.groups[2] = group(3, Some(1), &[1, 2, 4]);
        assert!(!split.drained(&retiring));
        // Groups the answering gateway does not run count too.
        split.groups.pop();
        split.remote_groups = vec![group(4, Some(2), &[2, 3, 5])];
        assert!(!split.drained(&retiring));
    }

    #[test]
    fn ordinals_from_the_pod_index_label_or_the_name() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("s3-gateway-12".into());
        assert_eq!(ordinal(&pod), Some(12));
        pod.metadata.labels = Some([(build::POD_INDEX_LABEL.to_string(), "3".into())].into());
        assert_eq!(ordinal(&pod), Some(3));
        pod.metadata.labels = None;
        pod.metadata.name = Some("odd".into());
        assert_eq!(ordinal(&pod), None);
    }
}
