//! The object store: the Kubernetes objects weir cares about, by kind and key.
//!
//! Sources (the kube watchers, the YAML file) write it; `routing::compile` reads it. Objects sit
//! behind `Arc`, so a snapshot for compile is a cheap clone.

use crate::api::LoadBalancerPool;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A namespaced object's identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of any object with metadata; objects without a namespace go to `default`.
    pub fn of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Self {
        ObjectKey::new(
            meta.namespace.as_deref().unwrap_or("default"),
            meta.name.as_deref().unwrap_or_default(),
        )
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Every object a routing table is compiled from.
#[derive(Debug, Clone, Default)]
pub struct Store {
    pub pools: BTreeMap<ObjectKey, Arc<LoadBalancerPool>>,
    pub services: BTreeMap<ObjectKey, Arc<Service>>,
    pub slices: BTreeMap<ObjectKey, Arc<EndpointSlice>>,
    pub secrets: BTreeMap<ObjectKey, Arc<Secret>>,
}

impl Store {
    pub fn len(&self) -> usize {
        self.pools.len() + self.services.len() + self.slices.len() + self.secrets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
