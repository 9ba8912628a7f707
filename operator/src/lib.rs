//! `cairn-operator`: runs Cairn fleets on Kubernetes. The custom resources (`crd`), the pure
//! functions that build the Kubernetes objects a fleet needs (`resources`), the gateway admin API
//! client (`admin`), the controllers (`controller`), metrics and leader election.

pub mod admin;
pub mod conditions;
pub mod controller;
pub mod crd;
pub mod leader;
pub mod metrics;
pub mod resources;
