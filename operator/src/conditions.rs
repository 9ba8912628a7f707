//! Status conditions (`Ready`, `Progressing`, `Degraded`) with the Kubernetes conventions: the
//! transition time changes only when the status does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// The resource does what its spec asks.
pub const READY: &str = "Ready";
/// The operator is changing things toward the spec.
pub const PROGRESSING: &str = "Progressing";
/// It works, with a problem worth knowing.
pub const DEGRADED: &str = "Degraded";

/// Sets condition `type_` in `conds`, keeping its transition time when the status is unchanged.
pub fn set(
    conds: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let message = message.into();
    let previous = conds.iter().position(|c| c.type_ == type_);
    let last_transition_time = match previous.map(|i| &conds[i]) {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(Timestamp::now()),
    };
    let cond = Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    };
    match previous {
        Some(i) => conds[i] = cond,
        None => conds.push(cond),
    }
}

/// The condition `type_`, if set.
pub fn get<'a>(conds: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conds.iter().find(|c| c.type_ == type_)
}

/// Whether condition `type_` is `True`.
pub fn is_true(conds: &[Condition], type_: &str) -> bool {
    get(conds, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_kept_while_status_is_unchanged() {
        let mut c = Vec::new();
        set(&mut c, READY, false, "Creating", "a", Some(1));
        let t0 = c[0].last_transition_time.clone();
        std::thread::sleep(std::time::Duration::from_millis(5));
        set(&mut c, READY, false, "Waiting", "b", Some(2));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].last_transition_time, t0);
        assert_eq!(c[0].reason, "Waiting");
        assert_eq!(c[0].observed_generation, Some(2));
        set(&mut c, READY, true, "Ready", "c", Some(2));
        assert_ne!(c[0].last_transition_time, t0);
        assert!(is_true(&c, READY));
        set(&mut c, DEGRADED, false, "Healthy", "", Some(2));
        assert_eq!(c.len(), 2);
        assert!(!is_true(&c, DEGRADED));
    }
}
