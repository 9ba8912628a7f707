//! Lifecycle rule evaluation: which action, if any, a bucket's rules call for on one version or
//! upload at a given time. Pure functions over validated configurations (see
//! `bucket_config::lifecycle`), so every decision is testable without a disk or a clock.
//!
//! Time: a rule's `Days` count whole lifecycle days from the version's reference time (written,
//! became noncurrent, upload began), rounded up to the next day boundary as S3 rounds to the next
//! midnight UTC. A lifecycle day is normally 24 hours; tests and demos shorten it
//! (`--lifecycle-day-length`). `Date`s are absolute.
//!
//! Precedence, as in S3: an expiration that is due wins over a transition; among due transitions
//! the one due last (the furthest along the rule's schedule) is taken.

use crate::bucket_config::RuleStatus;
use crate::bucket_config::lifecycle::{LifecycleConfiguration, LifecycleRule, ObjectFilter};
use crate::index::records::ObjectTags;

/// The length of a lifecycle day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleClock {
    /// Milliseconds per lifecycle day (86,400,000 in production).
    pub day_ms: i64,
}

impl Default for LifecycleClock {
    fn default() -> Self {
        Self {
            day_ms: 24 * 3600 * 1000,
        }
    }
}

impl LifecycleClock {
    /// A clock whose days last `day`.
    pub fn with_day(day: std::time::Duration) -> Self {
        Self {
            day_ms: (day.as_millis() as i64).max(1),
        }
    }

    /// When something with reference time `from_ms` is `days` days old: `days` days later,
    /// rounded up to the next day boundary.
    pub fn after_days(&self, from_ms: i64, days: i32) -> i64 {
        let t = from_ms.saturating_add(i64::from(days).saturating_mul(self.day_ms));
        let r = t.rem_euclid(self.day_ms);
        if r == 0 { t } else { t - r + self.day_ms }
    }
}

/// What evaluation needs to know of a version.
#[derive(Debug, Clone, Copy)]
pub struct VersionFacts<'a> {
    /// Object key.
    pub key: &'a str,
    /// Bytes.
    pub size: u64,
    /// The version's tags.
    pub tags: &'a ObjectTags,
    /// Its storage class.
    pub storage_class: &'a str,
    /// When it was written.
    pub last_modified_ms: i64,
    /// A delete marker.
    pub delete_marker: bool,
    /// Its data can be re-encoded (erasure-coded, not kept inline in the index).
    pub transitionable: bool,
}

/// What to do with a current version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CurrentAction {
    /// Re-encode into `storage_class`.
    Transition {
        /// Target class.
        storage_class: String,
        /// The rule that asked.
        rule_id: String,
    },
    /// Delete (unversioned) or make a delete marker current (versioned).
    Expire {
        /// The rule that asked.
        rule_id: String,
    },
    /// Remove a delete marker that is the key's only version.
    RemoveExpiredMarker {
        /// The rule that asked.
        rule_id: String,
    },
}

/// What to do with a noncurrent version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoncurrentAction {
    /// Re-encode into `storage_class`.
    Transition {
        /// Target class.
        storage_class: String,
        /// The rule that asked.
        rule_id: String,
    },
    /// Delete permanently.
    Expire {
        /// The rule that asked.
        rule_id: String,
    },
}

fn rule_id(r: &LifecycleRule) -> String {
    r.id.clone().unwrap_or_default()
}

/// `true` if `filter` selects the version: its prefix, sizes, and every tag of the filter (`Tag`,
/// or `And` `Tags`) present with an equal value. Delete markers are matched on their key only, so
/// a filter with tags never selects them.
pub fn matches(filter: &ObjectFilter, v: &VersionFacts<'_>) -> bool {
    if !v.key.starts_with(&filter.prefix) {
        return false;
    }
    if v.delete_marker {
        return filter.tags.is_empty();
    }
    filter
        .tags
        .iter()
        .all(|t| v.tags.get(&t.key) == Some(&t.value))
        && filter.size_greater_than.is_none_or(|n| v.size > n)
        && filter.size_less_than.is_none_or(|n| v.size < n)
}

/// The enabled rules of `cfg` whose filter selects `v`.
fn applicable<'a>(
    cfg: &'a LifecycleConfiguration,
    v: &'a VersionFacts<'a>,
) -> impl Iterator<Item = &'a LifecycleRule> + 'a {
    cfg.rules.iter().filter(move |r| {
        r.status == RuleStatus::Enabled && r.object_filter().is_ok_and(|f| matches(&f, v))
    })
}

fn date_ms(d: &Option<String>) -> Option<i64> {
    d.as_deref()
        .and_then(|s| crate::bucket_config::lifecycle::parse_date(s).ok())
}

/// When the current version `v` expires under `cfg`, and by which rule (the earliest).
pub fn expiration(
    cfg: &LifecycleConfiguration,
    v: &VersionFacts<'_>,
    clock: LifecycleClock,
) -> Option<(i64, String)> {
    if v.delete_marker {
        return None;
    }
    applicable(cfg, v)
        .filter_map(|r| {
            let e = r.expiration.as_ref()?;
            let due = match (e.days, date_ms(&e.date)) {
                (Some(d), _) => clock.after_days(v.last_modified_ms, d),
                (None, Some(t)) => t,
                _ => return None,
            };
            Some((due, rule_id(r)))
        })
        .min()
}

/// The action `cfg` calls for on the current version `v` at `now_ms`; `only_version` says the key
/// has no noncurrent versions (for delete-marker cleanup).
pub fn evaluate_current(
    cfg: &LifecycleConfiguration,
    v: &VersionFacts<'_>,
    only_version: bool,
    now_ms: i64,
    clock: LifecycleClock,
) -> Option<CurrentAction> {
    if v.delete_marker {
        if !only_version {
            return None;
        }
        // A lone delete marker goes with ExpiredObjectDeleteMarker, or once a Days expiration would
        // have expired an object written when the marker was.
        return applicable(cfg, v)
            .find(|r| {
                r.expiration.as_ref().is_some_and(|e| {
                    e.expired_object_delete_marker == Some(true)
                        || e.days
                            .is_some_and(|d| now_ms >= clock.after_days(v.last_modified_ms, d))
                })
            })
            .map(|r| CurrentAction::RemoveExpiredMarker {
                rule_id: rule_id(r),
            });
    }
    if let Some((due, rule_id)) = expiration(cfg, v, clock)
        && now_ms >= due
    {
        return Some(CurrentAction::Expire { rule_id });
    }
    if !v.transitionable {
        return None;
    }
    applicable(cfg, v)
        .flat_map(|r| {
            r.transitions.iter().filter_map(move |t| {
                let due = match (t.days, date_ms(&t.date)) {
                    (Some(d), _) => clock.after_days(v.last_modified_ms, d),
                    (None, Some(at)) => at,
                    _ => return None,
                };
                (now_ms >= due).then(|| (due, t.storage_class.clone(), rule_id(r)))
            })
        })
        .max()
        .filter(|(_, class, _)| class != v.storage_class)
        .map(|(_, storage_class, rule_id)| CurrentAction::Transition {
            storage_class,
            rule_id,
        })
}

/// The action `cfg` calls for on a noncurrent version `v` that became noncurrent at `since_ms`
/// and has `newer` noncurrent versions of its key before it (0 = the newest noncurrent one).
pub fn evaluate_noncurrent(
    cfg: &LifecycleConfiguration,
    v: &VersionFacts<'_>,
    since_ms: i64,
    newer: usize,
    now_ms: i64,
    clock: LifecycleClock,
) -> Option<NoncurrentAction> {
    let kept = |n: Option<i32>| n.is_some_and(|n| newer < n.max(0) as usize);
    let expire = applicable(cfg, v).find(|r| {
        r.noncurrent_version_expiration.as_ref().is_some_and(|e| {
            e.noncurrent_days
                .is_some_and(|d| now_ms >= clock.after_days(since_ms, d))
                && !kept(e.newer_noncurrent_versions)
        })
    });
    if let Some(r) = expire {
        return Some(NoncurrentAction::Expire {
            rule_id: rule_id(r),
        });
    }
    if v.delete_marker || !v.transitionable {
        return None;
    }
    applicable(cfg, v)
        .flat_map(|r| {
            r.noncurrent_version_transitions
                .iter()
                .filter_map(move |t| {
                    let due = clock.after_days(since_ms, t.noncurrent_days?);
                    (now_ms >= due && !kept(t.newer_noncurrent_versions))
                        .then(|| (due, t.storage_class.clone(), rule_id(r)))
                })
        })
        .max()
        .filter(|(_, class, _)| class != v.storage_class)
        .map(|(_, storage_class, rule_id)| NoncurrentAction::Transition {
            storage_class,
            rule_id,
        })
}

/// The rule that aborts an upload of `key` begun at `initiated_ms`, if one is due at `now_ms`.
pub fn evaluate_upload(
    cfg: &LifecycleConfiguration,
    key: &str,
    initiated_ms: i64,
    now_ms: i64,
    clock: LifecycleClock,
) -> Option<String> {
    cfg.rules
        .iter()
        .filter(|r| r.status == RuleStatus::Enabled)
        .filter(|r| r.object_filter().is_ok_and(|f| key.starts_with(&f.prefix)))
        .find(|r| {
            r.abort_incomplete_multipart_upload
                .as_ref()
                .and_then(|a| a.days_after_initiation)
                .is_some_and(|d| now_ms >= clock.after_days(initiated_ms, d))
        })
        .map(rule_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 1000;
    static NO_TAGS: ObjectTags = ObjectTags::new();

    fn clock() -> LifecycleClock {
        LifecycleClock { day_ms: DAY }
    }

    fn cfg(v: serde_json::Value) -> LifecycleConfiguration {
        serde_json::from_value::<LifecycleConfiguration>(v)
            .unwrap()
            .validate(&|c: &str| c != "NOPE", "STANDARD")
            .unwrap()
    }

    fn obj(key: &str, written: i64) -> VersionFacts<'_> {
        VersionFacts {
            key,
            size: 100_000,
            tags: &NO_TAGS,
            storage_class: "STANDARD",
            last_modified_ms: written,
            delete_marker: false,
            transitionable: true,
        }
    }

    #[test]
    fn days_round_up_to_day_boundaries() {
        let c = clock();
        assert_eq!(c.after_days(0, 1), 1000);
        assert_eq!(c.after_days(1, 1), 2000);
        assert_eq!(c.after_days(999, 0), 1000);
        assert_eq!(c.after_days(2000, 0), 2000);
        assert_eq!(LifecycleClock::default().after_days(0, 1), 86_400_000);
    }

    #[test]
    fn transitions_then_expiration_by_prefix() {
        let c = cfg(serde_json::json!({"Rules": [{
            "ID": "logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"},
            "Transitions": [{"Days": 1, "StorageClass": "WARM"}, {"Days": 3, "StorageClass": "COLD"}],
            "Expiration": {"Days": 5}
        }]}));
        let at = |now, key, class| {
            let mut v = obj(key, 0);
            v.storage_class = class;
            evaluate_current(&c, &v, true, now, clock())
        };
        assert_eq!(at(999, "logs/a", "STANDARD"), None);
        let warm = Some(CurrentAction::Transition {
            storage_class: "WARM".into(),
            rule_id: "logs".into(),
        });
        let cold = Some(CurrentAction::Transition {
            storage_class: "COLD".into(),
            rule_id: "logs".into(),
        });
        assert_eq!(at(1000, "logs/a", "STANDARD"), warm);
        assert_eq!(at(1500, "logs/a", "WARM"), None);
        // Days late: straight to the furthest due class.
        assert_eq!(at(3000, "logs/a", "STANDARD"), cold);
        assert_eq!(at(3000, "logs/a", "COLD"), None);
        assert_eq!(
            at(5000, "logs/a", "COLD"),
            Some(CurrentAction::Expire {
                rule_id: "logs".into()
            })
        );
        assert_eq!(at(9000, "other", "STANDARD"), None);
        // Inline data is not re-encoded; it still expires.
        let mut inline = obj("logs/a", 0);
        inline.transitionable = false;
        assert_eq!(evaluate_current(&c, &inline, true, 3000, clock()), None);
        assert!(evaluate_current(&c, &inline, true, 5000, clock()).is_some());
        assert_eq!(
            expiration(&c, &obj("logs/x", 100), clock()),
            Some((6000, "logs".into()))
        );
    }

    #[test]
    fn filters_disabled_rules_and_sizes() {
        let c = cfg(serde_json::json!({"Rules": [
            {"ID": "off", "Status": "Disabled", "Expiration": {"Days": 1}},
            {"ID": "big", "Status": "Enabled", "Filter": {"ObjectSizeGreaterThan": 1000}, "Expiration": {"Days": 2}},
            {"ID": "tagged", "Status": "Enabled", "Filter": {"Tag": {"Key": "t", "Value": "v"}}, "Expiration": {"Days": 1}},
        ]}));
        let mut small = obj("k", 0);
        small.size = 10;
        assert_eq!(evaluate_current(&c, &small, true, 10_000, clock()), None);
        assert_eq!(
            evaluate_current(&c, &obj("k", 0), true, 2000, clock()),
            Some(CurrentAction::Expire {
                rule_id: "big".into()
            })
        );
        let tags = ObjectTags::from([("t".into(), "v".into())]);
        let mut tagged = small;
        tagged.tags = &tags;
        assert_eq!(
            evaluate_current(&c, &tagged, true, 1000, clock()),
            Some(CurrentAction::Expire {
                rule_id: "tagged".into()
            })
        );
    }

    fn tags(pairs: &[(&str, &str)]) -> ObjectTags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn tag_filters_need_every_tag_with_its_value() {
        let filter = |f: serde_json::Value| {
            cfg(serde_json::json!({"Rules": [{"Status": "Enabled", "Filter": f, "Expiration": {"Days": 1}}]}))
                .rules[0]
                .object_filter()
                .unwrap()
        };
        let one = filter(serde_json::json!({"Tag": {"Key": "tier", "Value": "cold"}}));
        let and = filter(serde_json::json!({"And": {"Prefix": "logs/", "Tags": [
            {"Key": "tier", "Value": "cold"}, {"Key": "team", "Value": "a"}]}}));
        let sees = |f: &ObjectFilter, key: &str, t: &ObjectTags| {
            let mut v = obj(key, 0);
            v.tags = t;
            matches(f, &v)
        };
        let cold = tags(&[("tier", "cold")]);
        let both = tags(&[("tier", "cold"), ("team", "a"), ("extra", "x")]);
        assert!(sees(&one, "k", &cold));
        assert!(sees(&one, "k", &both), "extra tags do not matter");
        assert!(!sees(&one, "k", &NO_TAGS));
        assert!(
            !sees(&one, "k", &tags(&[("tier", "hot")])),
            "values must be equal"
        );
        assert!(
            !sees(&one, "k", &tags(&[("Tier", "cold")])),
            "keys are case-sensitive"
        );
        assert!(sees(&and, "logs/x", &both));
        assert!(
            !sees(&and, "logs/x", &cold),
            "every tag of And must be present"
        );
        assert!(!sees(&and, "other/x", &both), "and the prefix must match");
        // Delete markers have no tags: a tag filter never selects them.
        let mut marker = obj("k", 0);
        marker.delete_marker = true;
        marker.tags = &cold;
        assert!(!matches(&one, &marker));
    }

    #[test]
    fn expired_delete_markers_and_noncurrent_versions() {
        let c = cfg(serde_json::json!({"Rules": [
            {"ID": "nc", "Status": "Enabled",
             "NoncurrentVersionTransitions": [{"NoncurrentDays": 1, "StorageClass": "COLD"}],
             "NoncurrentVersionExpiration": {"NoncurrentDays": 3, "NewerNoncurrentVersions": 2}},
            {"ID": "markers", "Status": "Enabled", "Filter": {"Prefix": "m/"}, "Expiration": {"ExpiredObjectDeleteMarker": true}},
        ]}));
        let mut marker = obj("m/k", 0);
        marker.delete_marker = true;
        let remove = Some(CurrentAction::RemoveExpiredMarker {
            rule_id: "markers".into(),
        });
        assert_eq!(evaluate_current(&c, &marker, true, 0, clock()), remove);
        assert_eq!(evaluate_current(&c, &marker, false, 0, clock()), None);
        marker.key = "other";
        assert_eq!(evaluate_current(&c, &marker, true, 0, clock()), None);

        let v = obj("k", 0);
        assert_eq!(evaluate_noncurrent(&c, &v, 500, 0, 999, clock()), None);
        assert_eq!(
            evaluate_noncurrent(&c, &v, 500, 0, 2000, clock()),
            Some(NoncurrentAction::Transition {
                storage_class: "COLD".into(),
                rule_id: "nc".into()
            })
        );
        // The two newest noncurrent versions are kept; older ones go once due.
        assert_eq!(
            evaluate_noncurrent(&c, &v, 500, 1, 4000, clock()),
            Some(NoncurrentAction::Transition {
                storage_class: "COLD".into(),
                rule_id: "nc".into()
            })
        );
        assert_eq!(
            evaluate_noncurrent(&c, &v, 500, 2, 4000, clock()),
            Some(NoncurrentAction::Expire {
                rule_id: "nc".into()
            })
        );
        // Days-based expiration also cleans lone markers once they are old enough.
        let d = cfg(
            serde_json::json!({"Rules": [{"ID": "e", "Status": "Enabled", "Expiration": {"Days": 2}}]}),
        );
        let mut m = obj("k", 0);
        m.delete_marker = true;
        assert_eq!(evaluate_current(&d, &m, true, 1999, clock()), None);
        assert!(evaluate_current(&d, &m, true, 2000, clock()).is_some());
    }

    #[test]
    fn uploads_are_aborted_by_prefix() {
        let c = cfg(serde_json::json!({"Rules": [
            {"ID": "mpu", "Status": "Enabled", "Filter": {"Prefix": "up/"}, "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
        ]}));
        assert_eq!(evaluate_upload(&c, "up/a", 0, 999, clock()), None);
        assert_eq!(
            evaluate_upload(&c, "up/a", 0, 1000, clock()),
            Some("mpu".into())
        );
        assert_eq!(evaluate_upload(&c, "down/a", 0, 5000, clock()), None);
    }
}
