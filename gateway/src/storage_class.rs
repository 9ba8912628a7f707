//! Storage classes: the named erasure profiles of a fleet. `STANDARD` is the profile of
//! `--data-shards`/`--parity-shards` (RS(4,2) by default); `--storage-class` adds others, for
//! example `STANDARD_IA=6+3`, `GLACIER_IR=8+4:stripe=4M` (wider stripes) or
//! `ONEZONE_IA=4+2:zone=zone-a` (every shard in one zone). Writes choose one with
//! `x-amz-storage-class`; lifecycle transitions re-encode objects from one to another.

use std::collections::BTreeMap;

use cairn_storage_node::codec::ErasureProfile;
use cairn_storage_node::config::parse_byte_size;

/// The class of writes that name none.
pub const STANDARD: &str = "STANDARD";

/// One storage class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageClassSpec {
    /// S3 name (`[A-Z][A-Z0-9_]*`, at most 64 characters).
    pub name: String,
    /// Erasure profile.
    pub profile: ErasureProfile,
    /// Object bytes per stripe; `None`: the fleet's `--stripe-size`.
    pub stripe_size: Option<u32>,
    /// Every shard in this zone; `None`: spread evenly over the zones.
    pub zone: Option<String>,
}

impl StorageClassSpec {
    /// Raw bytes stored per object byte ((k+m)/k) for erasure-coded objects.
    pub fn overhead(&self) -> f64 {
        self.profile.total_shards() as f64 / self.profile.data_shards() as f64
    }
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    n.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Parses `NAME=K+M[:stripe=SIZE][:zone=ZONE]` (the `--storage-class` flag).
pub fn parse_storage_class(s: &str) -> Result<StorageClassSpec, String> {
    let (name, rest) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=K+M[:stripe=SIZE][:zone=ZONE]"))?;
    if !valid_name(name) {
        return Err(format!(
            "{name:?}: a storage class name is [A-Z][A-Z0-9_]*, at most 64 characters"
        ));
    }
    let mut parts = rest.split(':');
    let shards = parts.next().unwrap_or_default();
    let (k, m) = shards
        .split_once('+')
        .and_then(|(k, m)| Some((k.trim().parse::<u8>().ok()?, m.trim().parse::<u8>().ok()?)))
        .ok_or_else(|| format!("{shards:?}: expected K+M, such as 4+2"))?;
    let profile = ErasureProfile::new(k, m).map_err(|e| format!("{name}: {e}"))?;
    let mut spec = StorageClassSpec {
        name: name.to_string(),
        profile,
        stripe_size: None,
        zone: None,
    };
    for opt in parts {
        match opt.split_once('=') {
            Some(("stripe", v)) => {
                let n = parse_byte_size(v)?;
                spec.stripe_size = Some(
                    u32::try_from(n)
                        .ok()
                        .filter(|s| (4096..=64 << 20).contains(s))
                        .ok_or_else(|| format!("{name}: stripe must be 4K..=64M"))?,
                );
            }
            Some(("zone", z)) if !z.is_empty() => spec.zone = Some(z.to_string()),
            _ => {
                return Err(format!(
                    "{name}: unknown option {opt:?} (stripe=SIZE, zone=ZONE)"
                ));
            }
        }
    }
    Ok(spec)
}

/// The storage classes of a fleet, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageClasses {
    classes: BTreeMap<String, StorageClassSpec>,
}

impl StorageClasses {
    /// `STANDARD` with `standard`'s profile, plus `others` (which may redefine `STANDARD`).
    pub fn new(standard: ErasureProfile, others: Vec<StorageClassSpec>) -> Result<Self, String> {
        let mut classes = BTreeMap::new();
        classes.insert(
            STANDARD.to_string(),
            StorageClassSpec {
                name: STANDARD.to_string(),
                profile: standard,
                stripe_size: None,
                zone: None,
            },
        );
        let mut seen = std::collections::HashSet::new();
        for c in others {
            if !seen.insert(c.name.clone()) {
                return Err(format!("storage class {} is defined twice", c.name));
            }
            classes.insert(c.name.clone(), c);
        }
        Ok(Self { classes })
    }

    /// Only `STANDARD`, RS(4,2).
    pub fn standard_only() -> Self {
        Self::new(
            ErasureProfile::new(4, 2).expect("RS(4,2) is valid"),
            Vec::new(),
        )
        .expect("one class")
    }

    /// The class named `name`.
    pub fn get(&self, name: &str) -> Option<&StorageClassSpec> {
        self.classes.get(name)
    }

    /// Every class, by name.
    pub fn iter(&self) -> impl Iterator<Item = &StorageClassSpec> {
        self.classes.values()
    }

    /// `true` if the fleet has class `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.classes.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse() {
        let c = parse_storage_class("GLACIER_IR=8+4:stripe=4M").unwrap();
        assert_eq!(c.profile, ErasureProfile::new(8, 4).unwrap());
        assert_eq!(c.stripe_size, Some(4 << 20));
        assert_eq!(c.overhead(), 1.5);
        let z = parse_storage_class("ONEZONE_IA=4+2:zone=zone-a").unwrap();
        assert_eq!(z.zone.as_deref(), Some("zone-a"));
        for bad in [
            "x=4+2",
            "COLD",
            "COLD=4",
            "COLD=4+2:stripe=1K",
            "COLD=4+2:fast",
            "COLD=0+2",
        ] {
            assert!(parse_storage_class(bad).is_err(), "{bad}");
        }
        let all = StorageClasses::new(
            ErasureProfile::new(4, 2).unwrap(),
            vec![parse_storage_class("COLD=2+1").unwrap()],
        )
        .unwrap();
        assert!(all.contains("STANDARD") && all.contains("COLD") && !all.contains("WARM"));
        assert!(
            StorageClasses::new(
                ErasureProfile::new(4, 2).unwrap(),
                vec![
                    parse_storage_class("COLD=2+1").unwrap(),
                    parse_storage_class("COLD=3+1").unwrap()
                ]
            )
            .is_err()
        );
    }
}
