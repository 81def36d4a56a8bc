//! The API server side of the Gateway status writer: server-side apply on each kind's status
//! subresource (`gateway.networking.k8s.io/v1`), field manager `weir`, forced (the status of
//! a Gateway of our class is ours to say).

use super::{Sink, desired};
use crate::api::gateway::{
    Gateway, GatewayClass, GatewayClassStatus, GatewayStatus, HTTPRoute, RouteParentStatus,
};
use crate::controller::status::FIELD_MANAGER;
use crate::store::ObjectKey;
use kube::api::{Api, ListParams, Patch, PatchParams};
use std::collections::BTreeMap;

const API_VERSION: &str = "gateway.networking.k8s.io/v1";

/// Writes to the API server `client` talks to.
pub(crate) struct ApiServer {
    client: kube::Client,
}

impl ApiServer {
    pub fn new(client: kube::Client) -> Self {
        ApiServer { client }
    }
}

/// Why a status could not be written (each is tried again at the next tick).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The patch was refused: RBAC, a schema rule, the object gone, or (for a route) a newer
    /// version than the one read (409).
    #[error("writing the status of {kind} {name}: {source}")]
    Write {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// A route is read before its parents are written, to keep other controllers' entries.
    #[error("reading HTTPRoute {route}: {source}")]
    Read {
        route: ObjectKey,
        #[source]
        source: kube::Error,
    },
    #[error("listing HTTPRoutes: {0}")]
    List(#[source] kube::Error),
}

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

impl Sink for ApiServer {
    type Error = WriteError;

    async fn write_class(&self, name: &str, status: &GatewayClassStatus) -> Result<(), WriteError> {
        let api: Api<GatewayClass> = Api::all(self.client.clone());
        let patch = serde_json::json!({
            "apiVersion": API_VERSION, "kind": "GatewayClass", "status": status,
        });
        api.patch_status(name, &apply(), &Patch::Apply(&patch))
            .await
            .map(drop)
            .map_err(|source| WriteError::Write {
                kind: "GatewayClass",
                name: name.to_string(),
                source,
            })
    }

    async fn write_gateway(
        &self,
        key: &ObjectKey,
        status: &GatewayStatus,
    ) -> Result<(), WriteError> {
        let api: Api<Gateway> = Api::namespaced(self.client.clone(), &key.namespace);
        let patch = serde_json::json!({
            "apiVersion": API_VERSION, "kind": "Gateway", "status": status,
        });
        api.patch_status(&key.name, &apply(), &Patch::Apply(&patch))
            .await
            .map(drop)
            .map_err(|source| WriteError::Write {
                kind: "Gateway",
                name: key.to_string(),
                source,
            })
    }

    async fn write_route(
        &self,
        key: &ObjectKey,
        ours: &[RouteParentStatus],
    ) -> Result<(), WriteError> {
        let api: Api<HTTPRoute> = Api::namespaced(self.client.clone(), &key.namespace);
        let route = match api.get_status(&key.name).await {
            Ok(route) => route,
            // Nothing of ours left to take away.
            Err(e) if not_found(&e) && ours.is_empty() => return Ok(()),
            Err(source) => {
                return Err(WriteError::Read {
                    route: key.clone(),
                    source,
                });
            }
        };
        let current = route.status.map(|s| s.parents).unwrap_or_default();
        let parents = desired::merge_parents(&current, ours);
        if parents == current {
            return Ok(());
        }
        // The resourceVersion makes the write conditional on the route being as read, so an
        // entry another controller wrote meanwhile is not lost (409; read again next tick).
        let patch = serde_json::json!({
            "apiVersion": API_VERSION, "kind": "HTTPRoute",
            "metadata": { "resourceVersion": route.metadata.resource_version },
            "status": { "parents": parents },
        });
        api.patch_status(&key.name, &apply(), &Patch::Apply(&patch))
            .await
            .map(drop)
            .map_err(|source| WriteError::Write {
                kind: "HTTPRoute",
                name: key.to_string(),
                source,
            })
    }

    async fn our_route_entries(
        &self,
    ) -> Result<BTreeMap<ObjectKey, Vec<RouteParentStatus>>, WriteError> {
        let api: Api<HTTPRoute> = Api::all(self.client.clone());
        let routes = api
            .list(&ListParams::default())
            .await
            .map_err(WriteError::List)?;
        Ok(routes
            .items
            .into_iter()
            .filter_map(|route| {
                let ours = desired::ours(&route.status.as_ref()?.parents);
                (!ours.is_empty()).then(|| (ObjectKey::of(&route.metadata), ours))
            })
            .collect())
    }
}

fn apply() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}
