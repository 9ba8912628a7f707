//! An in-memory gateway admin API.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use cairn_operator::admin::{
    AdminApi, AdminError, BucketConfig, BucketInfo, CreatedKey, Health, KeyInfo, NodeReport,
    ReplicationStatus,
};

/// The fake's state; tests read and change it.
#[derive(Default)]
pub struct State {
    pub buckets: BTreeMap<String, u64>,
    pub keys: Vec<(KeyInfo, String)>,
    pub configs: BTreeMap<(String, &'static str), serde_json::Value>,
    /// Versioning state set per bucket.
    pub versioning: BTreeMap<String, String>,
    pub quota: BTreeMap<String, serde_json::Value>,
    pub default_class: BTreeMap<String, String>,
    pub health: Option<Health>,
    pub nodes: Vec<NodeReport>,
    /// The index membership `retire_gateways` answers (gateways drain at once in the fake:
    /// retiring ones are dropped from the voters unless `drain_stuck`).
    pub index: ReplicationStatus,
    pub drain_stuck: bool,
    /// Answer config calls like a gateway without those endpoints.
    pub no_config_endpoints: bool,
    pub calls: Vec<String>,
    next: u32,
}

/// The fake admin API.
#[derive(Default)]
pub struct FakeAdmin {
    pub state: Mutex<State>,
}

impl FakeAdmin {
    /// A healthy fleet of `nodes` storage nodes.
    pub fn healthy(nodes: usize) -> Self {
        let f = Self::default();
        {
            let mut s = f.state.lock().unwrap();
            s.health = Some(Health {
                status: "ok".into(),
                nodes_up: nodes,
                nodes_total: nodes,
                writable: true,
                repair_backlog: 0,
                unrepairable_shards: 0,
            });
            s.nodes = (0..nodes)
                .map(|i| NodeReport {
                    id: format!("n{i}"),
                    zone: ["a", "b", "c"][i % 3].into(),
                    endpoint: String::new(),
                    state: "up".into(),
                    available_bytes: 900,
                    total_bytes: 1000,
                    used_bytes: 100,
                })
                .collect();
            // Gateway 0 leads; 0, 1 and 2 vote.
            s.index = ReplicationStatus {
                leader: Some(0),
                voters: vec![0, 1, 2],
                ..Default::default()
            };
        }
        f
    }
}

fn unreachable() -> AdminError {
    AdminError::BadAnswer {
        path: "/".into(),
        detail: "fake: no health set".into(),
    }
}

#[async_trait]
impl AdminApi for FakeAdmin {
    async fn health(&self) -> Result<Health, AdminError> {
        self.state
            .lock()
            .unwrap()
            .health
            .clone()
            .ok_or_else(unreachable)
    }
    async fn nodes(&self) -> Result<Vec<NodeReport>, AdminError> {
        Ok(self.state.lock().unwrap().nodes.clone())
    }
    async fn bucket(&self, name: &str) -> Result<Option<BucketInfo>, AdminError> {
        let s = self.state.lock().unwrap();
        Ok(s.buckets.get(name).map(|n| BucketInfo {
            name: name.into(),
            created_ms: 1,
            objects: Some(*n),
            bytes: Some(*n * 10),
            ..Default::default()
        }))
    }
    async fn create_bucket(&self, name: &str, exist_ok: bool) -> Result<BucketInfo, AdminError> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(format!("create_bucket {name}"));
        if s.buckets.contains_key(name) && !exist_ok {
            return Err(AdminError::Api {
                method: "POST",
                path: "/admin/v1/buckets".into(),
                status: 409,
                code: "BucketAlreadyExists".into(),
                message: String::new(),
            });
        }
        s.buckets.entry(name.into()).or_insert(0);
        Ok(BucketInfo {
            name: name.into(),
            created_ms: 1,
            objects: Some(0),
            bytes: Some(0),
            ..Default::default()
        })
    }
    async fn delete_bucket(&self, name: &str, force: bool) -> Result<bool, AdminError> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(format!("delete_bucket {name} force={force}"));
        if s.buckets.get(name).is_some_and(|n| *n > 0) && !force {
            return Err(AdminError::Api {
                method: "DELETE",
                path: String::new(),
                status: 409,
                code: "BucketNotEmpty".into(),
                message: String::new(),
            });
        }
        Ok(s.buckets.remove(name).is_some())
    }
    async fn keys(&self) -> Result<Vec<KeyInfo>, AdminError> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .keys
            .iter()
            .map(|(k, _)| k.clone())
            .collect())
    }
    async fn create_key(&self, name: &str, buckets: &[String]) -> Result<CreatedKey, AdminError> {
        let mut s = self.state.lock().unwrap();
        s.next += 1;
        let id = format!("CKFAKE{}", s.next);
        let secret = format!("secret{}", s.next);
        s.calls.push(format!("create_key {name}"));
        s.keys.push((
            KeyInfo {
                access_key_id: id.clone(),
                name: name.into(),
                buckets: Some(buckets.to_vec()),
                created_ms: 0,
            },
            secret.clone(),
        ));
        Ok(CreatedKey {
            access_key_id: id,
            secret_key: secret,
        })
    }
    async fn delete_key(&self, id: &str) -> Result<bool, AdminError> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(format!("delete_key {id}"));
        let before = s.keys.len();
        s.keys.retain(|(k, _)| k.access_key_id != id);
        Ok(s.keys.len() < before)
    }
    async fn set_default_storage_class(
        &self,
        bucket: &str,
        class: Option<&str>,
    ) -> Result<(), AdminError> {
        let mut s = self.state.lock().unwrap();
        match class {
            Some(c) => s.default_class.insert(bucket.into(), c.into()),
            None => s.default_class.remove(bucket),
        };
        Ok(())
    }
    async fn set_quota(
        &self,
        bucket: &str,
        quota: Option<&serde_json::Value>,
    ) -> Result<(), AdminError> {
        let mut s = self.state.lock().unwrap();
        match quota {
            Some(q) => s.quota.insert(bucket.into(), q.clone()),
            None => s.quota.remove(bucket),
        };
        Ok(())
    }
    async fn set_versioning(&self, bucket: &str, status: &str) -> Result<(), AdminError> {
        let mut s = self.state.lock().unwrap();
        s.versioning.insert(bucket.into(), status.into());
        Ok(())
    }
    async fn put_bucket_config(
        &self,
        bucket: &str,
        which: BucketConfig,
        doc: &serde_json::Value,
    ) -> Result<(), AdminError> {
        let mut s = self.state.lock().unwrap();
        if s.no_config_endpoints {
            return Err(AdminError::Unsupported {
                method: "PUT",
                path: format!("/admin/v1/buckets/{bucket}/{}", which.segment()),
            });
        }
        // As the gateway (and S3): replication needs a versioned source bucket.
        if which.segment() == "replication"
            && s.versioning.get(bucket).map(String::as_str) != Some("Enabled")
        {
            return Err(AdminError::Api {
                method: "PUT",
                path: format!("/admin/v1/buckets/{bucket}/replication"),
                status: 400,
                code: "InvalidRequest".into(),
                message: "versioning must be enabled on the bucket".into(),
            });
        }
        s.configs
            .insert((bucket.into(), which.segment()), doc.clone());
        Ok(())
    }
    async fn delete_bucket_config(
        &self,
        bucket: &str,
        which: BucketConfig,
    ) -> Result<(), AdminError> {
        let mut s = self.state.lock().unwrap();
        if s.no_config_endpoints {
            return Err(AdminError::Unsupported {
                method: "DELETE",
                path: String::new(),
            });
        }
        s.configs.remove(&(bucket.to_string(), which.segment()));
        Ok(())
    }

    async fn retire_gateways(
        &self,
        ids: &std::collections::BTreeSet<u64>,
    ) -> Result<ReplicationStatus, AdminError> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(format!("retire {ids:?}"));
        if s.health.is_none() {
            return Err(unreachable());
        }
        let stuck = s.drain_stuck;
        let index = &mut s.index;
        index.retiring = ids.iter().copied().collect();
        if !stuck {
            index.voters.retain(|v| !ids.contains(v));
            if index.leader.is_some_and(|l| ids.contains(&l)) {
                index.leader = index.voters.first().copied();
            }
        }
        Ok(index.clone())
    }
}
