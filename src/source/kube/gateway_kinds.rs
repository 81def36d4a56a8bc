//! The Gateway API's kinds, and Namespaces, as the watchers hand them to the store.
//!
//! Objects are kept whole but for what no one reads: `managedFields`, the last-applied copy
//! (often larger than the object) and `status` (weir writes status from what it compiles; it
//! never reads it back from the store).

use super::{Kind, Scope, namespaced_api};
use crate::api::gateway::{
    CONTROLLER_NAME, GROUP, GRPCRoute, Gateway, GatewayClass, HTTPRoute, ReferenceGrant,
};
use crate::store::reduce::LAST_APPLIED;
use crate::store::{ObjectKey, Store};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Api, Client, Resource};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Drops `managedFields` and the last-applied annotation.
pub(super) fn slim(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    // Bumped by every status write (weir's own included); kept, it would make each of those
    // a change to the store and a rebuild. Nothing reads it from the store.
    meta.resource_version = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

impl Kind for GatewayClass {
    type Stored = Self;
    type Key = String;
    fn map(store: &mut Store) -> &mut BTreeMap<String, Arc<Self>> {
        &mut store.gateway_classes
    }
    fn api(client: Client, _namespace: Option<&str>) -> Api<Self> {
        Api::all(client)
    }
    fn stored(mut self) -> Self {
        slim(&mut self.metadata);
        self.status = None;
        self
    }
    /// Only weir's classes: a class of another controller changes nothing weir serves, and
    /// keeping it out spares a rebuild each time that controller writes its status.
    fn wanted(&self, _scope: &Scope) -> bool {
        self.spec.controller_name == CONTROLLER_NAME
    }
}

/// A namespaced kind with a status (the Gateway API's, Ingress), kept whole but for the status (weir's own to
/// write, never read back) and what [`slim`] drops.
macro_rules! namespaced_kind_without_status {
    ($kind:ty, $field:ident) => {
        impl Kind for $kind {
            type Stored = Self;
            type Key = ObjectKey;
            fn map(store: &mut Store) -> &mut BTreeMap<ObjectKey, Arc<Self>> {
                &mut store.$field
            }
            fn api(client: Client, namespace: Option<&str>) -> Api<Self> {
                namespaced_api(client, namespace)
            }
            fn stored(mut self) -> Self {
                slim(&mut self.metadata);
                self.status = None;
                self
            }
        }
    };
}

// Ingress (`ingress_kinds.rs`) is kept the same way.
pub(super) use namespaced_kind_without_status;

namespaced_kind_without_status!(Gateway, gateways);
namespaced_kind_without_status!(HTTPRoute, http_routes);
namespaced_kind_without_status!(GRPCRoute, grpc_routes);

impl Kind for ReferenceGrant {
    type Stored = Self;
    type Key = ObjectKey;
    fn map(store: &mut Store) -> &mut BTreeMap<ObjectKey, Arc<Self>> {
        &mut store.reference_grants
    }
    fn api(client: Client, namespace: Option<&str>) -> Api<Self> {
        namespaced_api(client, namespace)
    }
    fn stored(mut self) -> Self {
        slim(&mut self.metadata);
        self
    }
}

/// A ReferenceGrant read through `v1beta1`, for clusters whose CRDs (Gateway API before v1.5)
/// do not serve `v1` yet. The two versions have one schema, so this is the v1 type under the
/// other version's URL.
#[derive(Clone, Debug, Deserialize)]
#[serde(transparent)]
pub(super) struct ReferenceGrantV1Beta1(ReferenceGrant);

/// The version [`ReferenceGrantV1Beta1`] is read through.
pub(super) const REFERENCE_GRANT_BETA: &str = "v1beta1";

impl Resource for ReferenceGrantV1Beta1 {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;
    fn kind(_: &()) -> Cow<'_, str> {
        ReferenceGrant::kind(&())
    }
    fn group(_: &()) -> Cow<'_, str> {
        GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        REFERENCE_GRANT_BETA.into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        ReferenceGrant::plural(&())
    }
    fn meta(&self) -> &ObjectMeta {
        &self.0.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.0.metadata
    }
}

impl Kind for ReferenceGrantV1Beta1 {
    type Stored = ReferenceGrant;
    type Key = ObjectKey;
    fn map(store: &mut Store) -> &mut BTreeMap<ObjectKey, Arc<ReferenceGrant>> {
        &mut store.reference_grants
    }
    fn api(client: Client, namespace: Option<&str>) -> Api<Self> {
        namespaced_api(client, namespace)
    }
    fn stored(self) -> ReferenceGrant {
        self.0.stored()
    }
}

/// Namespaces for their labels only (listeners' `allowedRoutes.namespaces.from: Selector`).
impl Kind for Namespace {
    type Stored = BTreeMap<String, String>;
    type Key = String;
    fn map(store: &mut Store) -> &mut BTreeMap<String, Arc<BTreeMap<String, String>>> {
        &mut store.namespace_labels
    }
    fn api(client: Client, _namespace: Option<&str>) -> Api<Self> {
        Api::all(client)
    }
    fn stored(self) -> BTreeMap<String, String> {
        self.metadata.labels.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A v1beta1 object parses into the v1 type, and the store gets it slimmed.
    #[test]
    fn a_beta_reference_grant_is_stored_as_v1() {
        let beta: ReferenceGrantV1Beta1 = serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
            "metadata": {"name": "g", "namespace": "backends",
                         "annotations": {LAST_APPLIED: "{}"},
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                               "namespace": "shop"}],
                     "to": [{"group": "", "kind": "Service"}]},
        }))
        .expect("a v1beta1 ReferenceGrant");
        assert_eq!(
            ReferenceGrantV1Beta1::url_path(&(), Some("backends")),
            "/apis/gateway.networking.k8s.io/v1beta1/namespaces/backends/referencegrants"
        );
        let kept = beta.stored();
        assert_eq!(kept.metadata.managed_fields, None);
        assert_eq!(kept.metadata.annotations, None);
        assert_eq!(kept.spec.from[0].namespace, "shop");
    }

    #[test]
    fn only_weirs_gateway_classes_are_wanted() {
        let class = |controller: &str| -> GatewayClass {
            serde_json::from_value(json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                "metadata": {"name": "c"},
                "spec": {"controllerName": controller},
                "status": {"conditions": []},
            }))
            .expect("a GatewayClass")
        };
        let scope = Scope {
            namespaces: vec![],
            class: "weir".into(),
            gateway_services: None,
        };
        assert!(class(CONTROLLER_NAME).wanted(&scope));
        assert!(!class("example.com/other").wanted(&scope));
        assert_eq!(class(CONTROLLER_NAME).stored().status, None);
    }
}
