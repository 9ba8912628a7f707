//! What the pods of a fleet say about it: which are ready, which are still starting, and which are
//! in trouble (crash-looping with the container's last termination message, an image that cannot
//! be pulled, a container that cannot be created, a pod no node takes). The ObjectStore status is
//! built from this, so a crash loop reads `Ready=False GatewayCrashLoop: ... exit code 2: Error:
//! invalid value ...` instead of `Progressing=True Updating`.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

use crate::resources::objectstore::COMPONENT_GATEWAY;

/// A pod not ready this long after its container started is not "starting" any more: it hangs.
pub const STARTUP_GRACE: SignedDuration = SignedDuration::from_secs(180);

/// Most characters of a termination message kept in a condition.
const MESSAGE_MAX: usize = 600;

/// What is wrong with a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TroubleKind {
    /// The container exits and is restarted again and again (or has just exited with an error).
    CrashLoop,
    /// The image cannot be pulled (wrong name or tag, no access, `pullPolicy: Never` without the
    /// image on the node).
    ImagePull,
    /// The container cannot be created (a missing Secret key, a bad volume...).
    ContainerConfig,
    /// No node takes the pod (no node in its zone, not enough resources, an unbound volume).
    Unschedulable,
}

/// A pod in trouble.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trouble {
    /// What.
    pub kind: TroubleKind,
    /// Whether the pod is a gateway (else a storage node).
    pub gateway: bool,
    /// Pod name.
    pub pod: String,
    /// One sentence for a condition.
    pub message: String,
}

impl Trouble {
    /// The reason of the `Ready=False` condition it causes.
    pub fn reason(&self) -> &'static str {
        match (self.kind, self.gateway) {
            (TroubleKind::CrashLoop, true) => "GatewayCrashLoop",
            (TroubleKind::CrashLoop, false) => "NodeCrashLoop",
            (TroubleKind::ImagePull, _) => "ImagePullFailed",
            (TroubleKind::ContainerConfig, _) => "ContainerConfigError",
            (TroubleKind::Unschedulable, _) => "PodsUnschedulable",
        }
    }
}

/// A pod's state as far as the fleet status goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodState {
    /// Ready.
    Ready,
    /// Coming up (created, pulling, started less than [`STARTUP_GRACE`] ago) or going away.
    Starting,
    /// Running for longer than the grace period without being ready (a hung process, a
    /// readiness probe that keeps failing): why, for a condition.
    NotReady(String),
    /// In trouble.
    Trouble(Trouble),
}

fn is_gateway(pod: &Pod) -> bool {
    pod.labels()
        .get("app.kubernetes.io/component")
        .map(String::as_str)
        == Some(COMPONENT_GATEWAY)
}

fn what(pod: &Pod) -> String {
    let c = if is_gateway(pod) {
        "gateway"
    } else {
        "storage node"
    };
    format!("{c} {}", pod.name_any())
}

/// Whether the pod's `Ready` condition is true.
pub fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The last lines of a termination message, on one line, at most [`MESSAGE_MAX`] characters.
fn last_words(msg: &str) -> String {
    let lines: Vec<&str> = msg
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut out = String::new();
    for l in lines.iter().rev() {
        let candidate = if out.is_empty() {
            l.to_string()
        } else {
            format!("{l} / {out}")
        };
        if candidate.chars().count() > MESSAGE_MAX {
            if out.is_empty() {
                out = l.chars().take(MESSAGE_MAX).collect();
            }
            break;
        }
        out = candidate;
    }
    out
}

fn crash(pod: &Pod, c: &ContainerStatus) -> Option<String> {
    let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref());
    let now_terminated = c.state.as_ref().and_then(|s| s.terminated.as_ref());
    let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    let looping = waiting.is_some_and(|w| w.reason.as_deref() == Some("CrashLoopBackOff"))
        || now_terminated.is_some_and(|t| t.exit_code != 0)
        || (c.restart_count >= 2 && last.is_some_and(|t| t.exit_code != 0));
    if !looping {
        return None;
    }
    let t = now_terminated.filter(|t| t.exit_code != 0).or(last);
    let detail = match t {
        Some(t) => {
            let words = t.message.as_deref().map(last_words).unwrap_or_default();
            let reason = t.reason.as_deref().unwrap_or("Error");
            if words.is_empty() {
                format!("last exit code {} ({reason})", t.exit_code)
            } else {
                format!("last exit code {} ({reason}): {words}", t.exit_code)
            }
        }
        None => "no termination message".to_string(),
    };
    Some(format!(
        "{} is crash-looping ({} restart(s)); {detail}",
        what(pod),
        c.restart_count
    ))
}

/// Classifies one pod at time `now`.
pub fn classify(pod: &Pod, now: Timestamp) -> PodState {
    if pod.metadata.deletion_timestamp.is_some() {
        return PodState::Starting;
    }
    let gateway = is_gateway(pod);
    let trouble = |kind, message| {
        PodState::Trouble(Trouble {
            kind,
            gateway,
            pod: pod.name_any(),
            message,
        })
    };
    let status = pod.status.clone().unwrap_or_default();
    let containers = status.container_statuses.clone().unwrap_or_default();
    for c in &containers {
        if let Some(msg) = crash(pod, c)
            && !c.ready
        {
            return trouble(TroubleKind::CrashLoop, msg);
        }
        if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.as_deref().unwrap_or_default();
            let detail = w.message.as_deref().map(last_words).unwrap_or_default();
            match reason {
                "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull" => {
                    return trouble(
                        TroubleKind::ImagePull,
                        format!(
                            "{}: image {} cannot be pulled ({reason}): {detail}",
                            what(pod),
                            c.image
                        ),
                    );
                }
                "CreateContainerConfigError" | "CreateContainerError" | "RunContainerError" => {
                    return trouble(
                        TroubleKind::ContainerConfig,
                        format!(
                            "{}: the container cannot start ({reason}): {detail}",
                            what(pod)
                        ),
                    );
                }
                _ => {}
            }
        }
    }
    if pod_ready(pod) {
        return PodState::Ready;
    }
    if let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        && c.reason.as_deref() == Some("Unschedulable")
    {
        return trouble(
            TroubleKind::Unschedulable,
            format!(
                "{} cannot be scheduled: {}",
                what(pod),
                c.message.as_deref().unwrap_or("no node fits")
            ),
        );
    }
    let started = containers
        .iter()
        .filter_map(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
        .map(|t| t.0)
        .max();
    match started {
        Some(t) if now.duration_since(t) > STARTUP_GRACE => PodState::NotReady(format!(
            "{} has been running since {t} without becoming ready",
            what(pod)
        )),
        _ => PodState::Starting,
    }
}

/// The fleet's pods, summed up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodSummary {
    /// Pods seen.
    pub count: usize,
    /// Pods coming up or going away.
    pub starting: Vec<String>,
    /// Pods running but not ready past the grace period, with why.
    pub not_ready: Vec<String>,
    /// Pods in trouble, the worst first (gateways before storage nodes).
    pub troubles: Vec<Trouble>,
}

impl PodSummary {
    /// Classifies every pod at time `now`.
    pub fn of(pods: &[Pod], now: Timestamp) -> Self {
        let mut s = Self {
            count: pods.len(),
            ..Self::default()
        };
        for p in pods {
            match classify(p, now) {
                PodState::Ready => {}
                PodState::Starting => s.starting.push(p.name_any()),
                PodState::NotReady(why) => s.not_ready.push(why),
                PodState::Trouble(t) => s.troubles.push(t),
            }
        }
        s.troubles
            .sort_by(|a, b| (a.kind, !a.gateway, &a.pod).cmp(&(b.kind, !b.gateway, &b.pod)));
        s
    }

    /// The worst trouble, if any.
    pub fn worst(&self) -> Option<&Trouble> {
        self.troubles.first()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn now() -> Timestamp {
        "2026-01-01T01:00:00Z".parse().unwrap()
    }

    fn pod(component: &str, status: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("s3-{component}-0"), "namespace": "storage",
                         "labels": {"app.kubernetes.io/component": component}},
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn a_crash_loop_says_why_the_container_exited() {
        let p = pod(
            "gateway",
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
                   "containerStatuses": [{"name": "gateway", "image": "g", "imageID": "", "ready": false, "restartCount": 4,
                       "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 1m20s restarting failed container"}},
                       "lastState": {"terminated": {"exitCode": 2, "reason": "Error",
                           "message": "\nError: invalid value '' for '--storage-class <STORAGE_CLASSES>': \"\": expected NAME=K+M[:stripe=SIZE][:zone=ZONE]\n\nFor more information, try '--help'.\n"}}}]}),
        );
        let PodState::Trouble(t) = classify(&p, now()) else {
            panic!("{:?}", classify(&p, now()))
        };
        assert_eq!(t.reason(), "GatewayCrashLoop");
        assert!(
            t.message.contains("gateway s3-gateway-0 is crash-looping (4 restart(s)); last exit code 2 (Error): Error: invalid value ''"),
            "{}",
            t.message
        );
        assert!(t.message.ends_with("For more information, try '--help'."));
        let n = pod(
            "storage-node",
            json!({"containerStatuses": [{"name": "storage-node", "image": "n", "imageID": "", "ready": false, "restartCount": 0,
                   "state": {"terminated": {"exitCode": 1, "reason": "Error", "message": "Error: disk"}}}]}),
        );
        let PodState::Trouble(t) = classify(&n, now()) else {
            panic!()
        };
        assert_eq!(t.reason(), "NodeCrashLoop");
        assert!(t.message.ends_with("last exit code 1 (Error): Error: disk"));
    }

    #[test]
    fn starting_hung_pulling_and_unschedulable_pods() {
        let running = |started: &str, restarts: i32| {
            pod(
                "storage-node",
                json!({"conditions": [{"type": "Ready", "status": "False"}],
                       "containerStatuses": [{"name": "n", "image": "n", "imageID": "", "ready": false, "restartCount": restarts,
                           "state": {"running": {"startedAt": started}},
                           "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
            )
        };
        // Restarted once after an OOM kill, back up a minute ago: coming up, not a loop.
        assert_eq!(
            classify(&running("2026-01-01T00:59:00Z", 1), now()),
            PodState::Starting
        );
        // Running for an hour without becoming ready: hung, not progressing.
        assert!(matches!(
            classify(&running("2026-01-01T00:00:00Z", 0), now()),
            PodState::NotReady(m) if m.contains("storage node s3-storage-node-0 has been running since")
        ));
        // Restarting again and again.
        assert!(matches!(
            classify(&running("2026-01-01T00:59:30Z", 3), now()),
            PodState::Trouble(t) if t.kind == TroubleKind::CrashLoop && t.message.contains("137 (OOMKilled)")
        ));
        let pulling = pod(
            "gateway",
            json!({"containerStatuses": [{"name": "g", "image": "ghcr.io/x/g:v1", "imageID": "", "ready": false, "restartCount": 0,
                   "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]}),
        );
        assert!(matches!(
            classify(&pulling, now()),
            PodState::Trouble(t) if t.reason() == "ImagePullFailed" && t.message.contains("ghcr.io/x/g:v1")
        ));
        let pending = pod(
            "gateway",
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                   "message": "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."}]}),
        );
        assert!(matches!(
            classify(&pending, now()),
            PodState::Trouble(t) if t.reason() == "PodsUnschedulable" && t.message.contains("node affinity")
        ));
        let ready = pod(
            "gateway",
            json!({"conditions": [{"type": "Ready", "status": "True"}]}),
        );
        assert_eq!(classify(&ready, now()), PodState::Ready);
        let summary = PodSummary::of(&[ready, pending, pulling.clone()], now());
        assert_eq!(summary.troubles.len(), 2);
        assert_eq!(summary.worst().unwrap().reason(), "ImagePullFailed");
    }
}
