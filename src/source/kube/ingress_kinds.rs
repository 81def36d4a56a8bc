//! Kubernetes Ingress and IngressClass as the watchers hand them to the store: whole, but for
//! what [`slim`] drops and the status (weir's to write, never read back).

use super::gateway_kinds::{namespaced_kind_without_status, slim};
use super::{Kind, Scope, namespaced_api};
use crate::api::ingress::INGRESS_CONTROLLER;
use crate::store::{ObjectKey, Store};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::{Api, Client};
use std::collections::BTreeMap;
use std::sync::Arc;

namespaced_kind_without_status!(Ingress, ingresses);

impl Kind for IngressClass {
    type Stored = Self;
    type Key = String;
    fn map(store: &mut Store) -> &mut BTreeMap<String, Arc<Self>> {
        &mut store.ingress_classes
    }
    fn api(client: Client, _namespace: Option<&str>) -> Api<Self> {
        Api::all(client)
    }
    fn stored(mut self) -> Self {
        slim(&mut self.metadata);
        self
    }
    /// Only weir's classes: another controller's class changes nothing weir serves.
    fn wanted(&self, _scope: &Scope) -> bool {
        self.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(INGRESS_CONTROLLER)
    }
}
