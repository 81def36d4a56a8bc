//! The API server side of the Gateway status writer: server-side apply on each kind's status
//! subresource (`gateway.networking.k8s.io/v1`), field manager `weir`, forced (the status of
//! a Gateway of our class is ours to say).

use super::{Sink, desired};
use crate::api::gateway::{
    GRPCRoute, Gateway, GatewayClass, GatewayClassStatus, GatewayStatus, HTTPRoute,
    RouteParentStatus, RouteStatus,
};
use crate::controller::status::FIELD_MANAGER;
use crate::routing::gateway::RouteKind;
use crate::store::ObjectKey;
use kube::api::{Api, ListParams, Patch, PatchParams};
use std::collections::BTreeMap;

const API_VERSION: &str = "gateway.networking.k8s.io/v1";

/// Writes to the API server `client` talks to.
pub(crate) struct ApiServer {
    client: kube::Client,
    /// Where routes are listed for entries of ours: the watched namespaces (empty: all), as
    /// far as weir's RBAC reaches.
    namespaces: Vec<String>,
}

impl ApiServer {
    pub fn new(client: kube::Client, namespaces: Vec<String>) -> Self {
        ApiServer { client, namespaces }
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
    #[error("reading {kind} {route}: {source}")]
    Read {
        kind: &'static str,
        route: ObjectKey,
        #[source]
        source: kube::Error,
    },
    #[error("listing {kind}s: {source}")]
    List {
        kind: &'static str,
        #[source]
        source: kube::Error,
    },
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
        kind: RouteKind,
        key: &ObjectKey,
        ours: &[RouteParentStatus],
    ) -> Result<(), WriteError> {
        match kind {
            RouteKind::Http => write_route_of::<HTTPRoute>(&self.client, key, ours).await,
            RouteKind::Grpc => write_route_of::<GRPCRoute>(&self.client, key, ours).await,
        }
    }

    async fn our_route_entries(
        &self,
        kind: RouteKind,
    ) -> Result<BTreeMap<ObjectKey, Vec<RouteParentStatus>>, WriteError> {
        let apis: Vec<Option<&str>> = if self.namespaces.is_empty() {
            vec![None]
        } else {
            self.namespaces.iter().map(|n| Some(n.as_str())).collect()
        };
        let mut out = BTreeMap::new();
        for namespace in apis {
            out.extend(match kind {
                RouteKind::Http => route_entries_of::<HTTPRoute>(&self.client, namespace).await?,
                RouteKind::Grpc => route_entries_of::<GRPCRoute>(&self.client, namespace).await?,
            });
        }
        Ok(out)
    }
}

/// A route kind's status, for the writer: HTTPRoute and GRPCRoute share `RouteStatus`.
trait Route:
    kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
{
    const KIND: &'static str;
    fn route_status(&self) -> Option<&RouteStatus>;
}

impl Route for HTTPRoute {
    const KIND: &'static str = "HTTPRoute";
    fn route_status(&self) -> Option<&RouteStatus> {
        self.status.as_ref()
    }
}

impl Route for GRPCRoute {
    const KIND: &'static str = "GRPCRoute";
    fn route_status(&self) -> Option<&RouteStatus> {
        self.status.as_ref()
    }
}

async fn write_route_of<K: Route>(
    client: &kube::Client,
    key: &ObjectKey,
    ours: &[RouteParentStatus],
) -> Result<(), WriteError> {
    let api: Api<K> = Api::namespaced(client.clone(), &key.namespace);
    let route = match api.get_status(&key.name).await {
        Ok(route) => route,
        // Nothing of ours left to take away.
        Err(e) if not_found(&e) && ours.is_empty() => return Ok(()),
        Err(source) => {
            return Err(WriteError::Read {
                kind: K::KIND,
                route: key.clone(),
                source,
            });
        }
    };
    let current = route
        .route_status()
        .map(|s| s.parents.clone())
        .unwrap_or_default();
    let parents = desired::merge_parents(&current, ours);
    if parents == current {
        return Ok(());
    }
    // The resourceVersion makes the write conditional on the route being as read, so an
    // entry another controller wrote meanwhile is not lost (409; read again next tick).
    let patch = serde_json::json!({
        "apiVersion": API_VERSION, "kind": K::KIND,
        "metadata": { "resourceVersion": route.meta().resource_version },
        "status": { "parents": parents },
    });
    api.patch_status(&key.name, &apply(), &Patch::Apply(&patch))
        .await
        .map(drop)
        .map_err(|source| WriteError::Write {
            kind: K::KIND,
            name: key.to_string(),
            source,
        })
}

/// weir's entries on every route of kind `K` in `namespace` (`None`: all); none when the
/// cluster does not serve `K` (404).
async fn route_entries_of<K: Route>(
    client: &kube::Client,
    namespace: Option<&str>,
) -> Result<BTreeMap<ObjectKey, Vec<RouteParentStatus>>, WriteError> {
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let routes = match api.list(&ListParams::default()).await {
        Ok(routes) => routes,
        Err(e) if not_found(&e) => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(WriteError::List {
                kind: K::KIND,
                source,
            });
        }
    };
    Ok(routes
        .items
        .into_iter()
        .filter_map(|route| {
            let ours = desired::ours(&route.route_status()?.parents);
            (!ours.is_empty()).then(|| (ObjectKey::of(route.meta()), ours))
        })
        .collect())
}

fn apply() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}
