//! The Kubernetes source: watchers on LoadBalancerPools, Services, EndpointSlices and TLS
//! Secrets, and (where the cluster has its CRDs) on the Gateway API's kinds and Namespaces,
//! feed the same store the file source fills.
//!
//! Each watcher sends edits to one task that owns the store. Bursts are coalesced (a rolling
//! update of many pods gives a few rebuilds), and no change waits more than [`MAX_DELAY`]. The
//! first store is published only once every watcher has listed everything once, so a new
//! replica never serves a partial view. The Gateway API watchers come and go with their CRDs
//! (see [`gateway_api`]): readiness never waits on a kind the cluster does not serve.

mod gateway_api;
mod gateway_kinds;
mod ingress_kinds;

use crate::api::LoadBalancerPool;
use crate::store::{ObjectKey, ServicePorts, Slice, Store, TlsSecret, reduce};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Changes are published once they pause this long ...
pub const DEBOUNCE: Duration = Duration::from_millis(20);
/// ... or once the oldest unpublished one has waited this long.
pub const MAX_DELAY: Duration = Duration::from_millis(100);

/// What to watch.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Namespaces to watch; empty: all.
    pub namespaces: Vec<String>,
    /// Pools whose `spec.className` differs are ignored (a pool without one is ours).
    pub class: String,
    /// Gateway API service mode: weir's namespace, whose Services of weir's own (the
    /// Gateways') are watched even when `namespaces` leaves it out (compile reads their ports
    /// and addresses).
    pub gateway_services: Option<String>,
}

/// How the source is doing, for `/readyz` and the metrics.
#[derive(Debug, Default)]
pub struct SourceState {
    /// Every watcher has listed once.
    pub synced: AtomicBool,
    /// A watcher is failing: the view may be stale.
    pub stale: AtomicBool,
}

/// Why there is no client for the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading the kubeconfig {}", path.display())]
    ReadKubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("using the kubeconfig {}", path.display())]
    UseKubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("making the Kubernetes client")]
    Build(#[source] kube::Error),
    #[error("finding the cluster (KUBECONFIG, ~/.kube/config or in-cluster)")]
    Infer(#[source] kube::Error),
}

/// A client for the cluster `kubeconfig` names; without one, the usual search: KUBECONFIG,
/// `~/.kube/config`, then the pod's service account.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, ClientError> {
    let Some(path) = kubeconfig else {
        return Client::try_default().await.map_err(ClientError::Infer);
    };
    let file = kube::config::Kubeconfig::read_from(path).map_err(|source| {
        ClientError::ReadKubeconfig {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .map_err(|source| ClientError::UseKubeconfig {
            path: path.to_path_buf(),
            source,
        })?;
    Client::try_from(config).map_err(ClientError::Build)
}

/// How often [`export_stale`] copies the stale flag into its gauge.
const STALE_EXPORT_EVERY: Duration = Duration::from_millis(500);

/// Keeps `gauge` (weir's `source_stale` metric) at 1 while a watcher is failing, else 0.
/// Runs until aborted.
pub async fn export_stale(
    state: Arc<SourceState>,
    gauge: prometheus_client::metrics::gauge::Gauge,
) {
    loop {
        gauge.set(i64::from(state.stale.load(Ordering::Relaxed)));
        tokio::time::sleep(STALE_EXPORT_EVERY).await;
    }
}

/// How the store keys the objects of a kind: namespaced kinds by [`ObjectKey`], cluster-wide
/// ones by name alone.
trait StoreKey: Ord + Send + 'static {
    fn of(meta: &ObjectMeta) -> Self;
    /// Whether a watcher of `namespace` owns this key (a full list replaces what it owns).
    fn in_namespace(&self, namespace: &str) -> bool;
}

impl StoreKey for ObjectKey {
    fn of(meta: &ObjectMeta) -> Self {
        ObjectKey::of(meta)
    }
    fn in_namespace(&self, namespace: &str) -> bool {
        self.namespace == namespace
    }
}

impl StoreKey for String {
    fn of(meta: &ObjectMeta) -> Self {
        meta.name.clone().unwrap_or_default()
    }
    /// Cluster-wide kinds are watched cluster-wide only: every key is the watcher's.
    fn in_namespace(&self, _namespace: &str) -> bool {
        true
    }
}

/// A kind the store holds.
trait Kind:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
    /// What the store keeps of an object of this kind.
    type Stored: PartialEq + Send + Sync + 'static;
    type Key: StoreKey;
    fn map(store: &mut Store) -> &mut BTreeMap<Self::Key, Arc<Self::Stored>>;
    /// The API to watch: `namespace`'s, or every namespace's (always so for a cluster-wide
    /// kind).
    fn api(client: Client, namespace: Option<&str>) -> Api<Self>;
    /// What the store keeps of this object.
    fn stored(self) -> Self::Stored;
    /// Whether weir takes this object at all.
    fn wanted(&self, _scope: &Scope) -> bool {
        true
    }
}

/// [`Kind::api`] of a namespaced kind.
fn namespaced_api<K>(client: Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    }
}

impl Kind for LoadBalancerPool {
    type Stored = Self;
    type Key = ObjectKey;
    fn map(store: &mut Store) -> &mut BTreeMap<ObjectKey, Arc<Self>> {
        &mut store.pools
    }
    fn api(client: Client, namespace: Option<&str>) -> Api<Self> {
        namespaced_api(client, namespace)
    }
    fn stored(self) -> Self {
        reduce::pool(self)
    }
    fn wanted(&self, scope: &Scope) -> bool {
        self.spec
            .class_name
            .as_deref()
            .is_none_or(|c| c == scope.class)
    }
}
impl Kind for Service {
    type Stored = ServicePorts;
    type Key = ObjectKey;
    fn map(store: &mut Store) -> &mut BTreeMap<ObjectKey, Arc<ServicePorts>> {
        &mut store.services
    }
    fn api(client: Client, namespace: Option<&str>) -> Api<Self> {
        namespaced_api(client, namespace)
    }
    fn stored(self) -> ServicePorts {
        ServicePorts::from_service(&self)
    }
}
impl Kind for EndpointSlice {
    type Stored = Slice;
    type Key = ObjectKey;
    fn map(store: &mut Store) -> &mut BTreeMap<ObjectKey, Arc<Slice>> {
        &mut store.slices
    }
    fn api(client: Client, namespace: Option<&str>) -> Api<Self> {
        namespaced_api(client, namespace)
    }
    fn stored(self) -> Slice {
        Slice::from_slice(&self)
    }
}
impl Kind for Secret {
    type Stored = TlsSecret;
    type Key = ObjectKey;
    fn map(store: &mut Store) -> &mut BTreeMap<ObjectKey, Arc<TlsSecret>> {
        &mut store.secrets
    }
    fn api(client: Client, namespace: Option<&str>) -> Api<Self> {
        namespaced_api(client, namespace)
    }
    fn stored(self) -> TlsSecret {
        TlsSecret::from_secret(self)
    }
}

/// A change to the store; returns whether anything changed (an object written back as it was,
/// as after a status write that the reduced object does not keep, changes nothing and is not
/// published: no rebuild for it).
type Edit = Box<dyn FnOnce(&mut Store) -> bool + Send>;

/// What the watchers (and the Gateway API's discovery, [`gateway_api::run`]) tell the task that
/// owns the store. Each has an index of its own.
enum Message {
    Edit(Edit),
    /// Readiness also waits for this watcher's first full list (sent before it starts; ignored
    /// once synced: a ready replica stays ready when a kind appears).
    Expect(usize),
    /// A watcher finished a full list.
    Listed(usize),
    Failed(usize, String),
    /// A watcher was stopped (its kind is no longer served): neither readiness nor staleness
    /// waits on it.
    Stopped(usize),
}

/// Watches the cluster and publishes a store into `tx` after every (coalesced) change.
pub async fn run(
    client: Client,
    scope: Scope,
    tx: watch::Sender<Arc<Store>>,
    state: Arc<SourceState>,
) {
    let (msg_tx, mut msg_rx) = mpsc::channel::<Message>(1024);
    let namespaces = watched_namespaces(&scope);
    let mut watchers = 0;
    let mut tasks = Vec::new();
    for ns in &namespaces {
        let ns = ns.as_deref();
        let secrets = watcher::Config::default().fields("type=kubernetes.io/tls");
        tasks.push(spawn_watch::<LoadBalancerPool>(
            &client,
            ns,
            watcher::Config::default(),
            &scope,
            watchers,
            &msg_tx,
        ));
        tasks.push(spawn_watch::<Service>(
            &client,
            ns,
            watcher::Config::default(),
            &scope,
            watchers + 1,
            &msg_tx,
        ));
        tasks.push(spawn_watch::<EndpointSlice>(
            &client,
            ns,
            watcher::Config::default(),
            &scope,
            watchers + 2,
            &msg_tx,
        ));
        tasks.push(spawn_watch::<Secret>(
            &client,
            ns,
            secrets,
            &scope,
            watchers + 3,
            &msg_tx,
        ));
        tasks.push(spawn_watch::<k8s_openapi::api::networking::v1::Ingress>(
            &client,
            ns,
            watcher::Config::default(),
            &scope,
            watchers + 4,
            &msg_tx,
        ));
        watchers += 5;
    }
    tasks.push(
        spawn_watch::<k8s_openapi::api::networking::v1::IngressClass>(
            &client,
            None,
            watcher::Config::default(),
            &scope,
            watchers,
            &msg_tx,
        ),
    );
    watchers += 1;
    if let Some(own) = &scope.gateway_services
        && !namespaces
            .iter()
            .any(|ns| ns.is_none() || ns.as_ref() == Some(own))
    {
        // Only the Gateways' Services: weir serves no pool of its own namespace it was not
        // told to watch.
        let ours = watcher::Config::default().labels(&format!(
            "{}={}",
            crate::api::gateway::MANAGED_BY_LABEL,
            crate::api::gateway::MANAGED_BY
        ));
        tasks.push(spawn_watch::<Service>(
            &client,
            Some(own),
            ours,
            &scope,
            watchers,
            &msg_tx,
        ));
        watchers += 1;
    }
    // The Gateway API's discovery is one more participant: readiness waits for its first
    // answer (and for the watchers it starts then), so a replica with Gateways to serve never
    // turns ready without them.
    let discovery = watchers;
    tasks.push(tokio::spawn(gateway_api::run(
        client.clone(),
        scope.clone(),
        discovery,
        discovery + 1,
        msg_tx.clone(),
    )));
    drop(msg_tx);
    let mut store = Store::default();
    // The watchers whose first list readiness still waits for, and those failing now.
    let mut pending: BTreeSet<usize> = (0..=discovery).collect();
    let mut failing: BTreeSet<usize> = BTreeSet::new();
    // When the oldest change not yet published arrived.
    let mut dirty: Option<Instant> = None;
    loop {
        let message = match dirty {
            Some(since) if state.synced.load(Ordering::Relaxed) => {
                // Publish once changes pause for DEBOUNCE, or once the oldest has waited
                // MAX_DELAY, whichever comes first: a steady stream still gets through.
                let wait = DEBOUNCE.min(MAX_DELAY.saturating_sub(since.elapsed()));
                match tokio::time::timeout(wait, msg_rx.recv()).await {
                    Ok(m) => m,
                    Err(_) => {
                        let _ = tx.send(Arc::new(store.clone()));
                        dirty = None;
                        continue;
                    }
                }
            }
            _ => msg_rx.recv().await,
        };
        let Some(message) = message else {
            break;
        };
        match message {
            Message::Edit(edit) => {
                if edit(&mut store) {
                    dirty.get_or_insert_with(Instant::now);
                }
            }
            Message::Expect(i) => {
                if !state.synced.load(Ordering::Relaxed) {
                    pending.insert(i);
                }
            }
            Message::Listed(i) | Message::Stopped(i) => {
                pending.remove(&i);
                failing.remove(&i);
                dirty.get_or_insert_with(Instant::now);
                if !state.synced.load(Ordering::Relaxed) && pending.is_empty() {
                    state.synced.store(true, Ordering::Relaxed);
                    tracing::info!(objects = store.len(), "every watcher synced");
                }
            }
            Message::Failed(i, error) => {
                if failing.insert(i) {
                    tracing::warn!(error, "watch failed; serving the last view and retrying");
                }
            }
        }
        let stale = !failing.is_empty();
        if state.stale.swap(stale, Ordering::Relaxed) != stale && !stale {
            tracing::info!("every watcher is back; the view is current");
        }
    }
    for t in tasks {
        t.abort();
    }
}

/// The namespaces of [`Scope`] as the watchers take them: `None` is every namespace.
fn watched_namespaces(scope: &Scope) -> Vec<Option<String>> {
    if scope.namespaces.is_empty() {
        vec![None]
    } else {
        scope.namespaces.iter().cloned().map(Some).collect()
    }
}

fn spawn_watch<K: Kind>(
    client: &Client,
    namespace: Option<&str>,
    config: watcher::Config,
    scope: &Scope,
    index: usize,
    tx: &mpsc::Sender<Message>,
) -> tokio::task::JoinHandle<()> {
    let api = K::api(client.clone(), namespace);
    tokio::spawn(watch_kind(
        api,
        config,
        namespace.map(str::to_string),
        scope.clone(),
        index,
        tx.clone(),
    ))
}

async fn watch_kind<K: Kind>(
    api: Api<K>,
    config: watcher::Config,
    namespace: Option<String>,
    scope: Scope,
    index: usize,
    tx: mpsc::Sender<Message>,
) {
    // After a failure the watch starts over with a full list (rather than resuming where it
    // was): that list is what says the view is current again, and it catches deletions missed
    // while the API server was away.
    let mut backoff = RETRY_MIN;
    loop {
        let failed = watch_once(&api, &config, &namespace, &scope, index, &tx).await;
        if tx.is_closed() {
            return;
        }
        if failed {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RETRY_MAX);
        } else {
            backoff = RETRY_MIN;
        }
    }
}

/// First and longest pause before a failed watch starts over.
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Runs one watch until it fails (true) or ends (false).
async fn watch_once<K: Kind>(
    api: &Api<K>,
    config: &watcher::Config,
    namespace: &Option<String>,
    scope: &Scope,
    index: usize,
    tx: &mpsc::Sender<Message>,
) -> bool {
    let mut stream = watcher::watcher(api.clone(), config.clone()).boxed();
    // Objects are reduced to what the store keeps as they arrive, here in the watcher's task:
    // neither the channel nor a full list in progress holds whole objects.
    let mut listing: Vec<Entry<K>> = Vec::new();
    while let Some(event) = stream.next().await {
        let message = match event {
            Ok(Event::Apply(object)) => {
                let taken = entry(object, scope);
                Message::Edit(Box::new(move |store: &mut Store| apply::<K>(store, taken)))
            }
            Ok(Event::Delete(object)) => {
                let key = K::Key::of(object.meta());
                Message::Edit(Box::new(move |store: &mut Store| {
                    K::map(store).remove(&key).is_some()
                }))
            }
            Ok(Event::Init) => {
                listing.clear();
                continue;
            }
            Ok(Event::InitApply(object)) => {
                listing.push(entry(object, scope));
                continue;
            }
            Ok(Event::InitDone) => {
                // A full list replaces what this watcher saw before: deletions missed while
                // the watch was down are caught here.
                let entries = std::mem::take(&mut listing);
                let namespace = namespace.clone();
                let replace: Edit = Box::new(move |store: &mut Store| {
                    K::map(store).retain(|key, _| {
                        namespace.as_ref().is_some_and(|ns| !key.in_namespace(ns))
                    });
                    for entry in entries {
                        apply::<K>(store, entry);
                    }
                    true
                });
                if tx.send(Message::Edit(replace)).await.is_err() {
                    return false;
                }
                Message::Listed(index)
            }
            Err(e) => {
                let _ = tx.send(Message::Failed(index, e.to_string())).await;
                return true;
            }
        };
        if tx.send(message).await.is_err() {
            return false;
        }
    }
    false
}

/// An object as the store takes it: its key, and what is kept of it (`None`: weir does not
/// want it, and drops any earlier version).
type Entry<K> = (<K as Kind>::Key, Option<Arc<<K as Kind>::Stored>>);

fn entry<K: Kind>(object: K, scope: &Scope) -> Entry<K> {
    let key = K::Key::of(object.meta());
    let kept = object.wanted(scope).then(|| Arc::new(object.stored()));
    (key, kept)
}

/// Puts an object's entry in the store; whether that changed it.
fn apply<K: Kind>(store: &mut Store, (key, kept): Entry<K>) -> bool {
    let map = K::map(store);
    match kept {
        Some(object) => {
            if map.get(&key).is_some_and(|old| **old == *object) {
                return false;
            }
            map.insert(key, object);
            true
        }
        None => map.remove(&key).is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An object written back as the store keeps it (a status write, say) is no change, so
    /// it makes no rebuild; a real change and a delete are.
    #[test]
    fn only_a_change_to_what_the_store_keeps_counts() {
        let mut store = Store::default();
        let key = ObjectKey::new("ns", "web");
        let slice = |ip: &str| {
            let s = crate::testkit::slice(
                "ns",
                "web",
                "web",
                &[("http", 80)],
                &[crate::testkit::endpoint(
                    ip,
                    crate::testkit::EndpointState::Ready,
                )],
            );
            (key.clone(), Some(Arc::new(Slice::from_slice(&s))))
        };
        assert!(apply::<EndpointSlice>(&mut store, slice("10.0.0.1")));
        assert!(!apply::<EndpointSlice>(&mut store, slice("10.0.0.1")));
        assert!(apply::<EndpointSlice>(&mut store, slice("10.0.0.2")));
        assert!(apply::<EndpointSlice>(&mut store, (key.clone(), None)));
        assert!(!apply::<EndpointSlice>(&mut store, (key, None)));
    }

    /// The gauge follows the flag both ways, within one export period.
    #[tokio::test]
    async fn the_stale_gauge_follows_the_flag() {
        let state = Arc::new(SourceState::default());
        state.stale.store(true, Ordering::Relaxed);
        let gauge = prometheus_client::metrics::gauge::Gauge::<i64>::default();
        let task = tokio::spawn(export_stale(state.clone(), gauge.clone()));
        let within = STALE_EXPORT_EVERY * 3;
        let reaches = |want: i64| {
            let gauge = gauge.clone();
            async move {
                let started = Instant::now();
                while gauge.get() != want && started.elapsed() < within {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                gauge.get() == want
            }
        };
        assert!(reaches(1).await, "a stale source is not exported");
        state.stale.store(false, Ordering::Relaxed);
        assert!(reaches(0).await, "a recovered source stays stale");
        task.abort();
    }
}
