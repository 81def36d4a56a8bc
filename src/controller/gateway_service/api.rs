//! The API server side of the Gateway Services: server-side apply (field manager `weir`,
//! forced: a Service of weir's is weir's to say), delete, the list of weir's own, and the
//! GatewayClass parameters ConfigMap.

use crate::api::gateway::{GATEWAY_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL};
use crate::controller::status::FIELD_MANAGER;
use crate::store::ObjectKey;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use std::collections::BTreeMap;

/// Why a call about weir's Services failed (each is tried again at a later tick).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("applying Service {namespace}/{name}: {source}")]
    Apply {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting Service {namespace}/{name}: {source}")]
    Delete {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("listing weir's Gateway Services in {namespace}: {source}")]
    List {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("reading the GatewayClass parameters ConfigMap {key}: {source}")]
    Parameters {
        key: ObjectKey,
        #[source]
        source: kube::Error,
    },
}

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Where the reconciler's calls go: the API server, or a test's record of them.
pub(crate) trait Sink {
    type Error: std::fmt::Display;
    async fn apply(&self, name: &str, service: &serde_json::Value) -> Result<(), Self::Error>;
    /// Deletes the Service; one already gone is `Ok`.
    async fn delete(&self, name: &str) -> Result<(), Self::Error>;
    /// weir's Gateway Services in its namespace: each one's name and Gateway.
    async fn ours(&self) -> Result<Vec<(String, ObjectKey)>, Self::Error>;
    /// The data of ConfigMap `key`; `None` when there is no such ConfigMap.
    async fn parameters(
        &self,
        key: &ObjectKey,
    ) -> Result<Option<BTreeMap<String, String>>, Self::Error>;
}

/// The API server `client` talks to, for Services in weir's `namespace`.
pub(crate) struct ApiServer {
    client: kube::Client,
    namespace: String,
}

impl ApiServer {
    pub fn new(client: kube::Client, namespace: String) -> Self {
        ApiServer { client, namespace }
    }

    fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }
}

impl Sink for ApiServer {
    type Error = ServiceError;

    async fn apply(&self, name: &str, service: &serde_json::Value) -> Result<(), ServiceError> {
        self.services()
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(service),
            )
            .await
            .map(drop)
            .map_err(|source| ServiceError::Apply {
                namespace: self.namespace.clone(),
                name: name.to_string(),
                source,
            })
    }

    async fn delete(&self, name: &str) -> Result<(), ServiceError> {
        match self.services().delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(source) => Err(ServiceError::Delete {
                namespace: self.namespace.clone(),
                name: name.to_string(),
                source,
            }),
        }
    }

    async fn ours(&self) -> Result<Vec<(String, ObjectKey)>, ServiceError> {
        let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY}");
        let list = self
            .services()
            .list_metadata(&ListParams::default().labels(&selector))
            .await
            .map_err(|source| ServiceError::List {
                namespace: self.namespace.clone(),
                source,
            })?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|s| {
                let gateway = s.metadata.annotations.as_ref()?.get(GATEWAY_ANNOTATION)?;
                let (namespace, name) = gateway.split_once('/')?;
                Some((s.metadata.name?, ObjectKey::new(namespace, name)))
            })
            .collect())
    }

    async fn parameters(
        &self,
        key: &ObjectKey,
    ) -> Result<Option<BTreeMap<String, String>>, ServiceError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &key.namespace);
        match api.get(&key.name).await {
            Ok(c) => Ok(Some(c.data.unwrap_or_default())),
            Err(e) if not_found(&e) => Ok(None),
            Err(source) => Err(ServiceError::Parameters {
                key: key.clone(),
                source,
            }),
        }
    }
}
