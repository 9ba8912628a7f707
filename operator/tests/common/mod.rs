//! Test support: an in-memory Kubernetes API server behind kube's `Client` (the tower-test mocked
//! service of kube-rs's controller example, answering every request from a map instead of a
//! script), an in-memory admin API, and fixtures.
#![allow(dead_code)]

pub mod fake_admin;
pub mod fake_kube;
pub mod schema;

use std::sync::Arc;

use cairn_operator::admin::AdminApi;
use cairn_operator::controller::{AdminConnector, Context};
use cairn_operator::crd::ObjectStore;
use cairn_operator::metrics::Metrics;
use cairn_operator::resources::objectstore::BuildConfig;

/// Hands out one admin client for every fleet.
pub struct FixedConnector(pub Arc<dyn AdminApi>);

impl AdminConnector for FixedConnector {
    fn connect(&self, _store: &ObjectStore, _token: &str) -> Arc<dyn AdminApi> {
        self.0.clone()
    }
}

/// A context over the fake API server and the given admin API.
pub fn context(kube: &fake_kube::FakeKube, admin: Arc<dyn AdminApi>) -> Arc<Context> {
    Context::new(
        kube.client(),
        Arc::new(FixedConnector(admin)),
        Arc::new(Metrics::default()),
        BuildConfig {
            max_gateway_replicas: None,
            ..Default::default()
        },
    )
}
