//! The Gateway API's watchers follow its CRDs, which many clusters do not have (they are the
//! cluster owner's to install, and most of weir's users only use LoadBalancerPools).
//!
//! One task asks API discovery (`/apis`, then the group's versions; every authenticated user may
//! read them, so no RBAC beyond the watches) which of the kinds weir reads the cluster serves,
//! at start and then every [`CHECK_EVERY`], and starts or stops their watchers to match:
//!
//! - **Absent**: no Gateway API watcher runs, readiness waits on none of them, and weir works
//!   as it did before it knew the Gateway API. Logged once at info.
//! - **Installed later**: picked up at the next check (within [`CHECK_EVERY`]), no restart. A
//!   replica that is already ready stays ready while the new watchers list.
//! - **Removed**: the watchers stop and their objects leave the store (the next table has no
//!   Gateways). Until the check that sees it, the failing watches mark the source stale.
//! - **ReferenceGrant** is watched through `v1` where served (the v1.6 standard bundle serves
//!   `v1` and `v1beta1`, storing `v1beta1`), else through `v1beta1` (bundles before v1.5).
//! - **Namespaces** (their labels, for `allowedRoutes.namespaces.from: Selector`) are watched
//!   only while Gateways are served: without the Gateway API nothing reads them.
//!
//! GatewayClasses and Namespaces are cluster-wide; Gateways, HTTPRoutes and ReferenceGrants
//! follow `--watch-namespaces`. Readiness waits for the first answer of discovery (and the
//! watchers it starts then), so a replica with Gateways to serve never turns ready without them.

use super::gateway_kinds::{REFERENCE_GRANT_BETA, ReferenceGrantV1Beta1};
use super::{Kind, Message, RETRY_MAX, RETRY_MIN, Scope, spawn_watch, watched_namespaces};
use crate::api::gateway::{GROUP, GRPCRoute, Gateway, GatewayClass, HTTPRoute, ReferenceGrant};
use crate::store::Store;
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::runtime::watcher;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How often discovery is asked again once it has answered.
pub const CHECK_EVERY: Duration = Duration::from_secs(30);

/// A kind weir watches when the cluster serves it, with the version it is read through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Watched {
    GatewayClass,
    Gateway,
    HTTPRoute,
    GRPCRoute,
    ReferenceGrant,
    ReferenceGrantV1Beta1,
    Namespace,
}

/// Why discovery did not answer.
#[derive(Debug, thiserror::Error)]
enum DiscoveryError {
    #[error("listing the API groups")]
    Groups(#[source] kube::Error),
    #[error("listing the resources of {group_version}")]
    Resources {
        group_version: String,
        #[source]
        source: kube::Error,
    },
}

/// The Gateway API kinds the cluster serves, by (version, plural), as discovery lists them.
async fn served(client: &Client) -> Result<BTreeSet<Watched>, DiscoveryError> {
    let groups = client
        .list_api_groups()
        .await
        .map_err(DiscoveryError::Groups)?;
    let mut served = BTreeSet::new();
    let Some(group) = groups.groups.iter().find(|g| g.name == GROUP) else {
        return Ok(served);
    };
    for version in &group.versions {
        if version.version != "v1" && version.version != REFERENCE_GRANT_BETA {
            continue;
        }
        let resources = client
            .list_api_group_resources(&version.group_version)
            .await
            .map_err(|source| DiscoveryError::Resources {
                group_version: version.group_version.clone(),
                source,
            })?;
        for resource in &resources.resources {
            let kind = match (version.version.as_str(), resource.name.as_str()) {
                ("v1", "gatewayclasses") => Watched::GatewayClass,
                ("v1", "gateways") => Watched::Gateway,
                ("v1", "httproutes") => Watched::HTTPRoute,
                ("v1", "grpcroutes") => Watched::GRPCRoute,
                ("v1", "referencegrants") => Watched::ReferenceGrant,
                (REFERENCE_GRANT_BETA, "referencegrants") => Watched::ReferenceGrantV1Beta1,
                _ => continue,
            };
            served.insert(kind);
        }
    }
    Ok(served)
}

/// What to watch of what is served: ReferenceGrant through one version (v1 first), and
/// Namespaces only with Gateways.
fn to_watch(mut served: BTreeSet<Watched>) -> BTreeSet<Watched> {
    if served.contains(&Watched::ReferenceGrant) {
        served.remove(&Watched::ReferenceGrantV1Beta1);
    }
    if served.contains(&Watched::Gateway) {
        served.insert(Watched::Namespace);
    }
    served
}

/// The message of `error` and of each error under it, for a log field.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// The watchers of one kind (one per watched namespace, or one cluster-wide), by index.
type Watchers = Vec<(usize, JoinHandle<()>)>;

/// Runs discovery and keeps the Gateway API watchers in step with it, until `tx` closes.
/// `index` is this task's own (for readiness and staleness); watchers it starts get indices
/// from `first_free` on.
pub(super) async fn run(
    client: Client,
    scope: Scope,
    index: usize,
    first_free: usize,
    tx: mpsc::Sender<Message>,
) {
    let mut starter = Starter {
        client,
        scope,
        next: first_free,
        tx,
    };
    let mut running: BTreeMap<Watched, Watchers> = BTreeMap::new();
    let mut answered = false;
    let mut failing = false;
    let mut backoff = RETRY_MIN;
    loop {
        let wait = match served(&starter.client).await {
            Ok(served) => {
                let want = to_watch(served);
                let have: BTreeSet<Watched> = running.keys().copied().collect();
                if want != have || !answered {
                    log_change(&have, &want, answered);
                }
                for gone in have.difference(&want) {
                    if let Some(watchers) = running.remove(gone)
                        && !starter.stop(*gone, watchers).await
                    {
                        return;
                    }
                }
                for new in want.difference(&have) {
                    let Some(watchers) = starter.start(*new).await else {
                        return;
                    };
                    running.insert(*new, watchers);
                }
                if (!answered || failing) && starter.tx.send(Message::Listed(index)).await.is_err()
                {
                    return;
                }
                answered = true;
                failing = false;
                backoff = RETRY_MIN;
                CHECK_EVERY
            }
            Err(e) => {
                failing = true;
                if starter
                    .tx
                    .send(Message::Failed(index, chain(&e)))
                    .await
                    .is_err()
                {
                    return;
                }
                let wait = backoff;
                backoff = (backoff * 2).min(RETRY_MAX);
                wait
            }
        };
        tokio::time::sleep(wait).await;
        if starter.tx.is_closed() {
            return;
        }
    }
}

fn log_change(have: &BTreeSet<Watched>, want: &BTreeSet<Watched>, answered: bool) {
    let every_s = CHECK_EVERY.as_secs();
    if want.is_empty() && !answered {
        tracing::info!(
            group = GROUP,
            every_s,
            "Gateway API is not installed; serving without it and checking again periodically"
        );
    } else if want.is_empty() {
        tracing::info!(
            group = GROUP,
            "Gateway API is no longer installed; its objects are dropped"
        );
    } else if have.is_empty() {
        tracing::info!(group = GROUP, kinds = ?want, "Gateway API found; watching it");
    } else {
        tracing::info!(group = GROUP, kinds = ?want, "Gateway API kinds changed; watching these");
    }
}

/// Starts and stops watchers, numbering them.
struct Starter {
    client: Client,
    scope: Scope,
    next: usize,
    tx: mpsc::Sender<Message>,
}

impl Starter {
    /// The watchers of `kind`; `None` once the store's task is gone.
    async fn start(&mut self, kind: Watched) -> Option<Watchers> {
        match kind {
            Watched::GatewayClass => self.start_kind::<GatewayClass>(false).await,
            Watched::Gateway => self.start_kind::<Gateway>(true).await,
            Watched::HTTPRoute => self.start_kind::<HTTPRoute>(true).await,
            Watched::GRPCRoute => self.start_kind::<GRPCRoute>(true).await,
            Watched::ReferenceGrant => self.start_kind::<ReferenceGrant>(true).await,
            Watched::ReferenceGrantV1Beta1 => self.start_kind::<ReferenceGrantV1Beta1>(true).await,
            Watched::Namespace => self.start_kind::<Namespace>(false).await,
        }
    }

    /// One watcher per watched namespace (`namespaced`), else one cluster-wide. Each is
    /// announced ([`Message::Expect`]) before it starts, so its first list cannot come first.
    async fn start_kind<K: Kind>(&mut self, namespaced: bool) -> Option<Watchers> {
        let namespaces = if namespaced {
            watched_namespaces(&self.scope)
        } else {
            vec![None]
        };
        let mut watchers = Vec::new();
        for ns in &namespaces {
            let index = self.next;
            self.next += 1;
            self.tx.send(Message::Expect(index)).await.ok()?;
            let task = spawn_watch::<K>(
                &self.client,
                ns.as_deref(),
                watcher::Config::default(),
                &self.scope,
                index,
                &self.tx,
            );
            watchers.push((index, task));
        }
        Some(watchers)
    }

    /// Stops the watchers of `kind` and drops its objects; false once the store's task is gone.
    async fn stop(&self, kind: Watched, mut watchers: Watchers) -> bool {
        for (_, task) in &watchers {
            task.abort();
        }
        // Waited for, so that nothing a watcher sent lands after the clearing below.
        for (_, task) in &mut watchers {
            let _ = task.await;
        }
        let clear: super::Edit = Box::new(move |store: &mut Store| {
            clear(store, kind);
            true
        });
        if self.tx.send(Message::Edit(clear)).await.is_err() {
            return false;
        }
        for (index, _) in watchers {
            if self.tx.send(Message::Stopped(index)).await.is_err() {
                return false;
            }
        }
        true
    }
}

/// Drops every object of `kind` from the store.
fn clear(store: &mut Store, kind: Watched) {
    match kind {
        Watched::GatewayClass => store.gateway_classes.clear(),
        Watched::Gateway => store.gateways.clear(),
        Watched::HTTPRoute => store.http_routes.clear(),
        Watched::GRPCRoute => store.grpc_routes.clear(),
        Watched::ReferenceGrant | Watched::ReferenceGrantV1Beta1 => store.reference_grants.clear(),
        Watched::Namespace => store.namespace_labels.clear(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_grants_through_v1_first_and_namespaces_with_gateways() {
        use Watched::*;
        let set = |kinds: &[Watched]| kinds.iter().copied().collect::<BTreeSet<_>>();
        assert_eq!(to_watch(set(&[])), set(&[]));
        // v1.6: ReferenceGrant in both versions, watched through v1.
        assert_eq!(
            to_watch(set(&[
                GatewayClass,
                Gateway,
                HTTPRoute,
                ReferenceGrant,
                ReferenceGrantV1Beta1
            ])),
            set(&[GatewayClass, Gateway, HTTPRoute, ReferenceGrant, Namespace])
        );
        // Before v1.5: v1beta1 only.
        assert_eq!(
            to_watch(set(&[
                GatewayClass,
                Gateway,
                HTTPRoute,
                ReferenceGrantV1Beta1
            ])),
            set(&[
                GatewayClass,
                Gateway,
                HTTPRoute,
                ReferenceGrantV1Beta1,
                Namespace
            ])
        );
    }
}
