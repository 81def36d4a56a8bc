//! Writes the Gateway API status of GatewayClasses, Gateways, HTTPRoutes and GRPCRoutes of weir's
//! controllerName: by the leader only, with server-side apply on the status subresource under
//! weir's field manager, and only when it changed; each condition's `lastTransitionTime`
//! moves only when its status flips.
//!
//! A route's `status.parents` is shared with other controllers (one entry per parent per
//! controller) and is an `atomic` list, so weir reads the route and writes the whole list back
//! with the others' entries as they were, under the route's `resourceVersion`: a write that
//! meets a newer route fails and is made again at the next tick. When a route no longer has a
//! parentRef of ours, our entries go. A new leader first reads which routes carry entries of
//! ours, so one left by an earlier leader is taken away too.

mod api;
pub mod bind;
mod desired;
#[cfg(test)]
mod tests;

pub use api::WriteError;

use api::ApiServer;
pub use bind::with_bind_failures;

use crate::admin::ProcessState;
use crate::api::gateway::{GatewayClassStatus, GatewayStatus, RouteParentStatus};
use crate::routing::GatewayStatuses;
use crate::routing::gateway::RouteKind;
use crate::store::ObjectKey;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Where the statuses go: the API server, or a test's record of the calls.
pub(crate) trait Sink {
    type Error: std::fmt::Display;
    async fn write_class(&self, name: &str, status: &GatewayClassStatus)
    -> Result<(), Self::Error>;
    async fn write_gateway(
        &self,
        key: &ObjectKey,
        status: &GatewayStatus,
    ) -> Result<(), Self::Error>;
    /// Makes weir's entries of the route's `status.parents` `ours` (none: removes them),
    /// leaving every other controller's entry. A route that is gone needs no removal: `Ok`.
    async fn write_route(
        &self,
        kind: RouteKind,
        key: &ObjectKey,
        ours: &[RouteParentStatus],
    ) -> Result<(), Self::Error>;
    /// weir's entries on every route of `kind` that has some (none when the cluster does not
    /// serve the kind).
    async fn our_route_entries(
        &self,
        kind: RouteKind,
    ) -> Result<BTreeMap<ObjectKey, Vec<RouteParentStatus>>, Self::Error>;
}

/// What was last written of each object, so an unchanged status is not written again and a
/// condition keeps its transition time.
pub(crate) struct Writer<S> {
    sink: S,
    classes: HashMap<String, GatewayClassStatus>,
    gateways: HashMap<ObjectKey, GatewayStatus>,
    /// weir's entries of each route, as last written (or as found when the term began).
    routes: HashMap<(RouteKind, ObjectKey), Vec<RouteParentStatus>>,
    /// Whether this term has read the routes that carry entries of ours.
    seeded: bool,
    /// Whether this term's failure to read them was logged at warn (it is tried each tick).
    seed_warned: bool,
    /// Objects whose last write failed and was logged at warn: the next failures of the same
    /// object go to debug (a write is tried every tick), until one succeeds.
    failing: HashSet<String>,
}

/// How one [`Writer::sync`] went.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Synced {
    /// Statuses written (a route's removal of our entries included).
    pub written: usize,
    /// Writes (or the first read of a term) that failed; tried again at the next sync.
    pub failed: Vec<String>,
}

/// The writer to the API server: what the leader's loop runs, and what a test against a real
/// cluster drives tick by tick.
pub struct StatusWriter(pub(crate) Writer<ApiServer>);

impl StatusWriter {
    /// A writer to the API server `client` talks to, for routes in `namespaces` (the
    /// watched ones; empty: all).
    pub fn new(client: kube::Client, namespaces: Vec<String>) -> Self {
        StatusWriter(Writer::new(ApiServer::new(client, namespaces)))
    }

    /// One tick of the leader's loop: writes what changed since the last, and takes our
    /// entries away from routes no longer in `current`.
    pub async fn sync(&mut self, current: &GatewayStatuses) -> Synced {
        self.0.sync(current).await
    }

    /// Forgets what was written, as at the start of a term.
    pub fn new_term(&mut self) {
        self.0.new_term();
    }
}

impl<S: Sink> Writer<S> {
    pub(crate) fn new(sink: S) -> Self {
        Writer {
            sink,
            classes: HashMap::new(),
            gateways: HashMap::new(),
            routes: HashMap::new(),
            seeded: false,
            seed_warned: false,
            failing: HashSet::new(),
        }
    }

    /// Logs a failed write at warn the first time in a row for `object`, else at debug.
    fn failed(&mut self, object: String, error: &dyn std::fmt::Display) {
        if self.failing.insert(object.clone()) {
            tracing::warn!(%object, %error, "could not write Gateway API status; trying again each tick");
        } else {
            tracing::debug!(%object, %error, "could not write Gateway API status");
        }
    }

    /// Forgets what was written: another replica may have written since this one last led.
    pub fn new_term(&mut self) {
        self.classes.clear();
        self.gateways.clear();
        self.routes.clear();
        self.seeded = false;
        self.seed_warned = false;
    }

    /// weir's entries on every route of each kind, as the API server has them now.
    async fn our_entries(
        &self,
    ) -> Result<Vec<((RouteKind, ObjectKey), Vec<RouteParentStatus>)>, S::Error> {
        let mut found = Vec::new();
        for kind in [RouteKind::Http, RouteKind::Grpc] {
            let entries = self.sink.our_route_entries(kind).await?;
            found.extend(entries.into_iter().map(|(key, e)| ((kind, key), e)));
        }
        Ok(found)
    }

    /// Writes every status of `current` that differs from what was last written, and takes
    /// weir's entries away from routes that are no longer in it.
    pub async fn sync(&mut self, current: &GatewayStatuses) -> Synced {
        let mut out = Synced::default();
        // No GatewayClass of weir's: nothing of ours to say (and no route list to make, which
        // a cluster without the Gateway API, or RBAC for it, would refuse every tick).
        if current.classes.is_empty() && self.classes.is_empty() {
            return out;
        }
        if !self.seeded {
            match self.our_entries().await {
                Ok(found) => {
                    for (key, entries) in found {
                        self.routes.entry(key).or_insert(entries);
                    }
                    self.seeded = true;
                }
                Err(e) => {
                    if std::mem::replace(&mut self.seed_warned, true) {
                        tracing::debug!(error = %e, "could not list routes for entries of ours");
                    } else {
                        tracing::warn!(error = %e, "could not list routes for entries of ours; entries an earlier leader left stay until this succeeds");
                    }
                    out.failed.push(e.to_string());
                }
            }
        }
        let now = desired::now();

        self.classes
            .retain(|name, _| current.classes.contains_key(name));
        for (name, report) in &current.classes {
            let previous = self.classes.get(name);
            let next = desired::class_status(report, previous, now);
            if previous == Some(&next) {
                continue;
            }
            match self.sink.write_class(name, &next).await {
                Ok(()) => {
                    out.written += 1;
                    self.failing.remove(&format!("GatewayClass {name}"));
                    self.classes.insert(name.clone(), next);
                }
                Err(e) => {
                    self.failed(format!("GatewayClass {name}"), &e);
                    out.failed.push(e.to_string());
                }
            }
        }

        self.gateways
            .retain(|key, _| current.gateways.contains_key(key));
        for (key, report) in &current.gateways {
            let previous = self.gateways.get(key);
            let next = desired::gateway_status(report, previous, now);
            if previous == Some(&next) {
                continue;
            }
            match self.sink.write_gateway(key, &next).await {
                Ok(()) => {
                    out.written += 1;
                    self.failing.remove(&format!("Gateway {key}"));
                    self.gateways.insert(key.clone(), next);
                }
                Err(e) => {
                    self.failed(format!("Gateway {key}"), &e);
                    out.failed.push(e.to_string());
                }
            }
        }

        let wanted = |kind: RouteKind| match kind {
            RouteKind::Http => &current.http_routes,
            RouteKind::Grpc => &current.grpc_routes,
        };
        let keys: BTreeSet<(RouteKind, ObjectKey)> = [RouteKind::Http, RouteKind::Grpc]
            .into_iter()
            .flat_map(|kind| wanted(kind).keys().map(move |k| (kind, k.clone())))
            .chain(self.routes.keys().cloned())
            .collect();
        for (kind, key) in keys {
            let previous = self.routes.get(&(kind, key.clone())).map(Vec::as_slice);
            let next = match wanted(kind).get(&key) {
                Some(parents) => desired::route_parents(parents, previous, now),
                None => Vec::new(),
            };
            match previous {
                Some(p) if p == next.as_slice() => continue,
                None if next.is_empty() => continue,
                _ => {}
            }
            match self.sink.write_route(kind, &key, &next).await {
                Ok(()) => {
                    out.written += 1;
                    self.failing.remove(&format!("{} {key}", kind.as_str()));
                    if next.is_empty() {
                        self.routes.remove(&(kind, key));
                    } else {
                        self.routes.insert((kind, key), next);
                    }
                }
                Err(e) => {
                    self.failed(format!("{} {key}", kind.as_str()), &e);
                    out.failed.push(e.to_string());
                }
            }
        }
        out
    }
}

/// Each `every`, while `leader` holds and the first table is in service, writes what changed
/// of `admin.gateway_statuses`. (Before the first table, the statuses say nothing yet, and
/// writing them would take every route's entries of ours away.)
pub(crate) async fn follow<S: Sink>(
    mut writer: Writer<S>,
    admin: &ProcessState,
    leader: &AtomicBool,
    every: Duration,
) {
    let mut leading = false;
    loop {
        tokio::time::sleep(every).await;
        if !leader.load(Ordering::Relaxed) {
            if leading {
                writer.new_term();
                leading = false;
            }
            continue;
        }
        leading = true;
        if !admin.synced.load(Ordering::Relaxed) {
            continue;
        }
        let current = admin.gateway_statuses.load_full();
        let synced = writer.sync(&current).await;
        if synced.written > 0 {
            tracing::debug!(
                written = synced.written,
                failed = synced.failed.len(),
                "Gateway API status written"
            );
        }
    }
}
