//! Service mode: the leader keeps one Service per Gateway of weir's in weir's own namespace,
//! as compile plans it (`GatewayStatuses::services`): the Gateway's listener ports, each sent
//! to the pod port every weir pod binds for it, selecting weir's pods, of the type the
//! GatewayClass's parameters ConfigMap says (`serviceType`), else `--gateway-service-type`.
//!
//! Server-side apply under weir's field manager, only when what weir would write changed (and
//! everything again every [`RESYNC`], which also repairs a Service someone edited or deleted).
//! A Service whose Gateway is gone, or no longer ours, is deleted: at once when this term
//! applied it, else when the list of weir's Services (at the start of a term, and every
//! [`RESYNC`]) finds it. ownerReferences cannot do this: the Gateway is in another namespace.
//!
//! The Service's address comes back the other way: the watchers keep weir's Services in the
//! store, and compile reads them for the Gateway's `status.addresses` (`routing::compile`).

mod api;
mod desired;

pub use api::ServiceError;
pub use desired::{SERVICE_TYPE_KEY, ServiceConfig, ServiceType, UnknownServiceType};

use crate::admin::ProcessState;
use crate::api::gateway::{ParametersReference, service_name};
use crate::routing::ServicePlan;
use crate::store::ObjectKey;
use api::{ApiServer, Sink};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often everything is applied again and weir's Services are listed for orphans.
pub const RESYNC: Duration = Duration::from_secs(30);
/// How long a parameters ConfigMap's answer is kept before it is read again.
pub const PARAMETERS_TTL: Duration = Duration::from_secs(5);

/// Keeps the Gateway Services as compile plans them, while `leader` holds and the first table
/// is in service (before it, the plans are empty and would delete every Service). Each
/// `every`; never ends.
pub async fn run(
    client: kube::Client,
    config: ServiceConfig,
    admin: Arc<ProcessState>,
    leader: Arc<AtomicBool>,
    every: Duration,
) {
    let sink = ApiServer::new(client, config.namespace.clone());
    let mut reconciler = Reconciler::new(sink, config);
    let mut leading = false;
    loop {
        tokio::time::sleep(every).await;
        if !leader.load(Ordering::Relaxed) {
            if leading {
                reconciler.new_term();
                leading = false;
            }
            continue;
        }
        leading = true;
        if !admin.synced.load(Ordering::Relaxed) {
            continue;
        }
        let current = admin.gateway_statuses.load_full();
        let synced = reconciler.sync(&current.services, Instant::now()).await;
        if synced.applied + synced.deleted > 0 {
            tracing::debug!(
                applied = synced.applied,
                deleted = synced.deleted,
                failed = synced.failed,
                "Gateway Services reconciled"
            );
        }
    }
}

/// How one [`Reconciler::sync`] went.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Synced {
    pub applied: usize,
    pub deleted: usize,
    pub failed: usize,
}

/// A parameters ConfigMap's answer, and when it was read.
struct Parameters {
    read: Instant,
    service_type: ServiceType,
}

pub(crate) struct Reconciler<S> {
    sink: S,
    config: ServiceConfig,
    /// What this term last applied, by Gateway.
    applied: HashMap<ObjectKey, serde_json::Value>,
    /// Parameters ConfigMaps, by key.
    parameters: HashMap<ObjectKey, Parameters>,
    /// When weir's Services were last listed for orphans (`None`: not yet this term).
    swept: Option<Instant>,
    /// Objects whose last call failed and was logged at warn: again at debug until it works.
    failing: HashSet<String>,
}

impl<S: Sink> Reconciler<S> {
    pub(crate) fn new(sink: S, config: ServiceConfig) -> Self {
        Reconciler {
            sink,
            config,
            applied: HashMap::new(),
            parameters: HashMap::new(),
            swept: None,
            failing: HashSet::new(),
        }
    }

    /// Forgets this term: another replica may have led since.
    pub(crate) fn new_term(&mut self) {
        self.applied.clear();
        self.swept = None;
    }

    /// Logs a failure at warn the first time in a row for `object`, else at debug.
    fn failed(&mut self, object: String, error: &dyn std::fmt::Display) {
        if self.failing.insert(object.clone()) {
            tracing::warn!(%object, %error, "Gateway Service: call failed; trying again");
        } else {
            tracing::debug!(%object, %error, "Gateway Service: call failed");
        }
    }

    fn worked(&mut self, object: &str) {
        self.failing.remove(object);
    }

    /// Applies what changed in `plans`, deletes the Services of Gateways no longer in them.
    pub(crate) async fn sync(
        &mut self,
        plans: &BTreeMap<ObjectKey, ServicePlan>,
        now: Instant,
    ) -> Synced {
        let mut out = Synced::default();
        let resync = self
            .swept
            .is_none_or(|t| now.saturating_duration_since(t) >= RESYNC);
        if resync {
            self.applied.clear();
        }
        for (key, plan) in plans {
            let Some(service_type) = self.service_type(plan.parameters.as_ref(), now).await else {
                // The class's parameters could not be read: the Service waits rather than take
                // a type it may not have.
                out.failed += 1;
                continue;
            };
            let desired = desired::service(key, plan, &self.config, service_type);
            if self.applied.get(key) == Some(&desired) {
                continue;
            }
            let name = service_name(&key.namespace, &key.name);
            let span = tracing::info_span!("gateway_service", gateway = %key, service = %name);
            let _entered = span.enter();
            let object = format!("Service {}/{name}", self.config.namespace);
            match self.sink.apply(&name, &desired).await {
                Ok(()) => {
                    if !self.applied.contains_key(key) {
                        tracing::info!(r#type = %service_type, ports = plan.ports.len(), "Gateway Service applied");
                    }
                    self.worked(&object);
                    self.applied.insert(key.clone(), desired);
                    out.applied += 1;
                }
                Err(e) => {
                    self.failed(object, &e);
                    out.failed += 1;
                }
            }
        }
        let gone: Vec<ObjectKey> = self
            .applied
            .keys()
            .filter(|k| !plans.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            let name = service_name(&key.namespace, &key.name);
            if self.delete(&key, &name, &mut out).await {
                self.applied.remove(&key);
            }
        }
        if resync {
            match self.sink.ours().await {
                Ok(found) => {
                    self.worked("the list of Gateway Services");
                    for (name, gateway) in found {
                        // Another name for a Gateway we serve is a leftover too.
                        let wanted = plans.contains_key(&gateway)
                            && name == service_name(&gateway.namespace, &gateway.name);
                        if !wanted {
                            self.delete(&gateway, &name, &mut out).await;
                        }
                    }
                    self.swept = Some(now);
                }
                Err(e) => {
                    self.failed("the list of Gateway Services".to_string(), &e);
                    out.failed += 1;
                }
            }
        }
        out
    }

    /// Deletes Service `name` of Gateway `key`; whether it is gone.
    async fn delete(&mut self, key: &ObjectKey, name: &str, out: &mut Synced) -> bool {
        let object = format!("Service {}/{name}", self.config.namespace);
        match self.sink.delete(name).await {
            Ok(()) => {
                tracing::info!(gateway = %key, service = %name, "Gateway Service deleted: its Gateway is gone or not ours");
                self.worked(&object);
                out.deleted += 1;
                true
            }
            Err(e) => {
                self.failed(object, &e);
                out.failed += 1;
                false
            }
        }
    }

    /// The type of a Service whose class has `parameters`: the ConfigMap's `serviceType`, else
    /// the default. `None`: the ConfigMap could not be read (not that it is missing), and
    /// nothing was read before to go on with.
    async fn service_type(
        &mut self,
        parameters: Option<&ParametersReference>,
        now: Instant,
    ) -> Option<ServiceType> {
        let default = self.config.default_type;
        let Some(reference) = parameters else {
            return Some(default);
        };
        let object = format!(
            "GatewayClass parametersRef {}/{}",
            reference.kind, reference.name
        );
        if !matches!(reference.group.as_str(), "" | "core") || reference.kind != "ConfigMap" {
            self.failed(
                object,
                &format!("weir reads parameters from a ConfigMap only; using {default}"),
            );
            return Some(default);
        }
        // A GatewayClass is cluster-wide; its parameters' namespace is required by the spec
        // for a namespaced kind, and weir's own when left out.
        let key = ObjectKey::new(
            reference
                .namespace
                .clone()
                .unwrap_or_else(|| self.config.namespace.clone()),
            reference.name.clone(),
        );
        if let Some(p) = self.parameters.get(&key)
            && now.saturating_duration_since(p.read) < PARAMETERS_TTL
        {
            return Some(p.service_type);
        }
        let object = format!("ConfigMap {key}");
        let service_type = match self.sink.parameters(&key).await {
            Ok(Some(data)) => match desired::type_from_parameters(&data) {
                Ok(t) => {
                    self.worked(&object);
                    t.unwrap_or(default)
                }
                Err(e) => {
                    self.failed(object, &format!("{e}; using {default}"));
                    default
                }
            },
            Ok(None) => {
                self.failed(object, &format!("no such ConfigMap; using {default}"));
                default
            }
            Err(e) => {
                self.failed(object, &e);
                return self.parameters.get(&key).map(|p| p.service_type);
            }
        };
        self.parameters.insert(
            key,
            Parameters {
                read: now,
                service_type,
            },
        );
        Some(service_type)
    }
}

#[cfg(test)]
mod tests;
