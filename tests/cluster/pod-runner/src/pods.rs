//! The kubelet's part: pods bound to our node become local processes, and their status says
//! so. One task (a worker) per pod; the watch feeds each worker the latest Pod object.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher::{self, Event};
use rustix::process::Signal;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::env::PodFacts;
use crate::images::{ImageTable, Program};
use crate::ips::IpPool;
use crate::launch::Settings;
use crate::probe::{Check, ProbeConfig};
use crate::process::Spec;
use crate::rewrite::Rewriter;
use crate::sources::Sources;
use crate::status::{ContainerRun, PodRun, RunState};
use crate::volumes::TokenKey;

pub struct Shared {
    pub client: kube::Client,
    pub settings: Settings,
    pub table: ImageTable,
    pub pool: Mutex<IpPool>,
}

/// Watches our node's pods forever and keeps one worker per pod.
pub async fn run(shared: Arc<Shared>) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let fields = format!("spec.nodeName={}", shared.settings.node_name);
    let mut stream = watcher::watcher(api, watcher::Config::default().fields(&fields)).boxed();
    let mut workers: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let mut listing: Option<HashSet<String>> = None;
    loop {
        tokio::select! {
            Some(uid) = done_rx.recv() => { workers.remove(&uid); }
            event = stream.next() => match event {
                None => return,
                Some(Ok(Event::Init)) => listing = Some(HashSet::new()),
                Some(Ok(Event::InitApply(pod))) => {
                    if let (Some(seen), Some(uid)) = (listing.as_mut(), pod.metadata.uid.clone()) {
                        seen.insert(uid);
                    }
                    deliver(&shared, &mut workers, &done_tx, pod);
                }
                Some(Ok(Event::InitDone)) => {
                    // A re-list: pods we run that are no longer listed were deleted meanwhile.
                    if let Some(seen) = listing.take() {
                        for (uid, tx) in &workers {
                            if !seen.contains(uid) {
                                tx.send_replace(None);
                            }
                        }
                    }
                }
                Some(Ok(Event::Apply(pod))) => deliver(&shared, &mut workers, &done_tx, pod),
                Some(Ok(Event::Delete(pod))) => {
                    if let Some(tx) = pod.metadata.uid.as_ref().and_then(|u| workers.get(u)) {
                        tx.send_replace(None);
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "watching this node's pods");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

fn deliver(
    shared: &Arc<Shared>,
    workers: &mut HashMap<String, watch::Sender<Option<Pod>>>,
    done: &mpsc::UnboundedSender<String>,
    pod: Pod,
) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    if let Some(tx) = workers.get(&uid) {
        tx.send_replace(Some(pod));
        return;
    }
    let span = tracing::info_span!(
        "pod",
        namespace = pod.metadata.namespace.as_deref().unwrap_or(""),
        pod = pod.metadata.name.as_deref().unwrap_or("")
    );
    let (tx, rx) = watch::channel(Some(pod));
    workers.insert(uid.clone(), tx);
    let shared = shared.clone();
    let done = done.clone();
    tokio::spawn(
        async move {
            if let Some(worker) = Worker::new(shared, rx) {
                worker.run().await;
            }
            let _ = done.send(uid);
        }
        .instrument(span),
    );
}

/// How a pod's end came.
enum End {
    /// Gone from the API (deleted with no grace, or missed): kill at once.
    Gone,
    /// A deletionTimestamp: stop gracefully, then the final delete.
    Deleting,
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Started by an earlier runner (whose processes died with it).
fn started_before(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| {
        s.container_statuses.iter().flatten().any(|c| {
            c.container_id
                .as_deref()
                .is_some_and(|id| id.starts_with("weir://"))
        })
    })
}

/// A container ready to start, and how to tell it is ready.
struct Planned {
    spec: Spec,
    probe: ProbeConfig,
}

struct Prepared {
    init: Vec<(String, Spec)>,
    main: Vec<Planned>,
}

/// Why a start can't go ahead.
enum NotYet {
    /// Never will (unknown image): the pod fails.
    Fatal { reason: String, message: String },
    /// Maybe later (a Secret not there yet): the pod waits and we try again.
    Retry(String),
}

struct Worker {
    shared: Arc<Shared>,
    rx: watch::Receiver<Option<Pod>>,
    pod: Pod,
    name: String,
    namespace: String,
    uid: String,
    ip: Option<Ipv4Addr>,
    run: PodRun,
    pids: Vec<Option<u32>>,
    exits_tx: mpsc::UnboundedSender<(usize, u32, Option<std::process::ExitStatus>)>,
    exits_rx: mpsc::UnboundedReceiver<(usize, u32, Option<std::process::ExitStatus>)>,
    ready_tx: mpsc::UnboundedSender<(usize, bool)>,
    ready_rx: mpsc::UnboundedReceiver<(usize, bool)>,
    probes: Vec<tokio::task::JoinHandle<()>>,
    last_published: Option<serde_json::Value>,
}

impl Worker {
    fn new(shared: Arc<Shared>, rx: watch::Receiver<Option<Pod>>) -> Option<Self> {
        let pod = rx.borrow().clone()?;
        let name = pod.metadata.name.clone()?;
        let namespace = pod.metadata.namespace.clone()?;
        let uid = pod.metadata.uid.clone()?;
        let spec = pod.spec.as_ref()?;
        let table = &shared.table;
        let containers = spec
            .containers
            .iter()
            .map(|c| {
                let image = c.image.clone().unwrap_or_default();
                let program = table.lookup(&image).map_or("unknown", program_name);
                ContainerRun::waiting(&c.name, &image, program, "ContainerCreating")
            })
            .collect::<Vec<_>>();
        let run = PodRun {
            pod_ip: None,
            host_ip: shared.settings.node_ip.clone(),
            start_time: crate::status::now(),
            init_done: spec.init_containers.as_ref().is_none_or(|i| i.is_empty()),
            containers,
            failure: None,
            restart_policy: spec
                .restart_policy
                .clone()
                .unwrap_or_else(|| "Always".into()),
        };
        let (exits_tx, exits_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = mpsc::unbounded_channel();
        let count = spec.containers.len();
        Some(Worker {
            shared,
            rx,
            pod,
            name,
            namespace,
            uid,
            ip: None,
            run,
            pids: vec![None; count],
            exits_tx,
            exits_rx,
            ready_tx,
            ready_rx,
            probes: Vec::new(),
            last_published: None,
        })
    }
}

fn program_name(program: Program) -> &'static str {
    match program {
        Program::Echo => "echo",
        Program::Weir => "weir",
        Program::StandIn => "stand-in",
    }
}

/// Resolves when the pod ends (gone, or given a deletionTimestamp).
async fn ending(rx: &mut watch::Receiver<Option<Pod>>) -> End {
    loop {
        match &*rx.borrow_and_update() {
            None => return End::Gone,
            Some(p) if p.metadata.deletion_timestamp.is_some() => return End::Deleting,
            Some(_) => {}
        }
        if rx.changed().await.is_err() {
            return End::Gone;
        }
    }
}

impl Worker {
    fn api(&self) -> Api<Pod> {
        Api::namespaced(self.shared.client.clone(), &self.namespace)
    }

    fn latest(&mut self) {
        if let Some(pod) = self.rx.borrow().clone() {
            self.pod = pod;
        }
    }

    /// Sends the status if it changed since the last one sent.
    async fn publish(&mut self) {
        self.latest();
        let status = crate::status::build(&self.run, self.pod.status.as_ref());
        let Ok(value) = serde_json::to_value(&status) else {
            return;
        };
        if self.last_published.as_ref() == Some(&value) {
            return;
        }
        let patch = serde_json::json!({ "status": value });
        match self
            .api()
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => {
                tracing::debug!(
                    phase = self.run.phase(),
                    ready = self.run.all_ready(),
                    "status sent"
                );
                self.last_published = Some(value);
            }
            Err(e) => tracing::warn!(error = %e, "writing the pod status"),
        }
    }

    async fn run(mut self) {
        let pod = self.pod.clone();
        if is_terminal(&pod) || started_before(&pod) {
            if !is_terminal(&pod) {
                tracing::warn!(
                    "started by an earlier pod runner whose processes are gone: failing it"
                );
                self.run.failure = Some((
                    "RunnerRestarted".into(),
                    "the pod runner restarted; this pod's processes ended with it".into(),
                ));
                for c in &mut self.run.containers {
                    c.state = RunState::Terminated {
                        pid: None,
                        exit_code: 137,
                        signal: Some(9),
                        reason: "Error".into(),
                        message: Some("the pod runner restarted".into()),
                        started_at: None,
                        finished_at: crate::status::now(),
                    };
                }
                self.publish().await;
            }
            if let End::Deleting = ending(&mut self.rx).await {
                self.final_delete().await;
            }
            return;
        }
        let mut rx = self.rx.clone();
        let started = tokio::select! {
            end = ending(&mut rx) => Err(end),
            () = self.start() => Ok(()),
        };
        match started {
            Err(End::Gone) => self.kill_now(),
            Err(End::Deleting) => {
                self.stop_gracefully().await;
                self.final_delete().await;
            }
            Ok(()) => {
                let end = self.supervise().await;
                match end {
                    End::Gone => self.kill_now(),
                    End::Deleting => {
                        self.stop_gracefully().await;
                        self.final_delete().await;
                    }
                }
            }
        }
        self.release_ip();
        for probe in &self.probes {
            probe.abort();
        }
    }

    fn release_ip(&mut self) {
        if let Some(ip) = self.ip.take()
            && let Ok(mut pool) = self.shared.pool.lock()
        {
            pool.release(ip);
        }
    }

    fn fail(&mut self, reason: &str, message: &str, container_reason: Option<&str>) {
        tracing::warn!(reason, message, "the pod failed");
        self.run.failure = Some((reason.into(), message.into()));
        for c in &mut self.run.containers {
            if matches!(c.state, RunState::Waiting { .. }) {
                c.state = RunState::Terminated {
                    pid: None,
                    exit_code: 128,
                    signal: None,
                    reason: container_reason.unwrap_or(reason).into(),
                    message: Some(message.into()),
                    started_at: None,
                    finished_at: crate::status::now(),
                };
            }
        }
    }

    /// Address, files, then the processes. Returns once they run (or the pod failed).
    async fn start(&mut self) {
        // An address first: everything else (env, args, status) depends on it.
        loop {
            let ip = self.shared.pool.lock().ok().and_then(|mut p| p.allocate());
            if let Some(ip) = ip {
                self.ip = Some(ip);
                self.run.pod_ip = Some(ip.to_string());
                break;
            }
            for c in &mut self.run.containers {
                c.state = RunState::Waiting {
                    reason: "ContainerCreating".into(),
                    message: Some("no free pod IP on this node".into()),
                };
            }
            self.publish().await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        self.publish().await;
        let prepared = loop {
            match self.prepare().await {
                Ok(p) => break p,
                Err(NotYet::Fatal { reason, message }) => {
                    let container_reason = (reason == "UnknownImage").then_some("UnknownImage");
                    self.fail(&reason, &message, container_reason);
                    self.publish().await;
                    // Nothing runs: the address can go to the next pod.
                    self.release_ip();
                    return;
                }
                Err(NotYet::Retry(message)) => {
                    tracing::info!(%message, "not ready to start; trying again");
                    for c in &mut self.run.containers {
                        c.state = RunState::Waiting {
                            reason: "CreateContainerConfigError".into(),
                            message: Some(message.clone()),
                        };
                    }
                    self.publish().await;
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
            }
        };
        for (name, spec) in &prepared.init {
            match run_to_end(spec).await {
                Ok(0) => tracing::info!(container = %name, "init container completed"),
                Ok(code) => {
                    self.fail(
                        "InitContainerFailed",
                        &format!("init container {name} exited with {code}"),
                        None,
                    );
                    self.publish().await;
                    return;
                }
                Err(e) => {
                    self.fail(
                        "InitContainerFailed",
                        &format!("init container {name}: {e:#}"),
                        None,
                    );
                    self.publish().await;
                    return;
                }
            }
        }
        self.run.init_done = true;
        let ip = IpAddr::V4(self.ip.unwrap_or(Ipv4Addr::UNSPECIFIED));
        for (index, planned) in prepared.main.into_iter().enumerate() {
            match crate::process::spawn(&planned.spec) {
                Ok(mut child) => {
                    let pid = child.id().unwrap_or(0);
                    tracing::info!(container = %self.run.containers[index].name, pid, "started");
                    self.pids[index] = Some(pid);
                    self.run.containers[index].state = RunState::Running {
                        pid,
                        started_at: crate::status::now(),
                    };
                    let exits = self.exits_tx.clone();
                    tokio::spawn(async move {
                        let status = child.wait().await.ok();
                        let _ = exits.send((index, pid, status));
                    });
                    let span = tracing::Span::current();
                    self.probes.push(tokio::spawn(crate::probe::run(
                        planned.probe,
                        ip,
                        index,
                        self.ready_tx.clone(),
                        span,
                    )));
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "could not start a container");
                    self.run.containers[index].state = RunState::Terminated {
                        pid: None,
                        exit_code: 128,
                        signal: None,
                        reason: "StartError".into(),
                        message: Some(format!("{e:#}")),
                        started_at: None,
                        finished_at: crate::status::now(),
                    };
                }
            }
        }
        self.after_exit().await;
        self.publish().await;
    }

    /// Reads a Secret or ConfigMap; a 403 right after binding is the Node authorizer not
    /// having seen the pod yet, so it is tried again.
    async fn read<K>(&self, name: &str) -> Result<Option<K>, String>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::namespaced(self.shared.client.clone(), &self.namespace);
        let mut last = String::new();
        for _ in 0..5 {
            match api.get_opt(name).await {
                Ok(found) => return Ok(found),
                Err(e) => {
                    last = e.to_string();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        Err(format!("reading {name:?}: {last}"))
    }

    async fn prepare(&mut self) -> Result<Prepared, NotYet> {
        self.latest();
        let pod = self.pod.clone();
        let Some(spec) = pod.spec.as_ref() else {
            return Err(NotYet::Fatal {
                reason: "NoSpec".into(),
                message: "the pod has no spec".into(),
            });
        };
        let shared = self.shared.clone();
        let table = &shared.table;
        let all = spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter());
        let mut unknown = Vec::new();
        for c in all.clone() {
            if table.lookup(c.image.as_deref().unwrap_or("")).is_none() {
                unknown.push(format!(
                    "{} ({})",
                    c.name,
                    c.image.as_deref().unwrap_or("no image")
                ));
            }
        }
        if !unknown.is_empty() {
            return Err(NotYet::Fatal {
                reason: "UnknownImage".into(),
                message: format!("cannot run {}: {}", unknown.join(", "), table.describe()),
            });
        }
        let refs = crate::sources::references(&pod);
        let mut sources = Sources::default();
        for name in &refs.secrets {
            if let Some(s) = self.read::<Secret>(name).await.map_err(NotYet::Retry)? {
                sources.add_secret(name, &s);
            }
        }
        for name in &refs.config_maps {
            if let Some(c) = self.read::<ConfigMap>(name).await.map_err(NotYet::Retry)? {
                sources.add_config_map(name, &c);
            }
        }

        let settings = &shared.settings;
        let pod_dir = pod_folder(&settings.state_dir, &self.namespace, &self.name, &self.uid);
        std::fs::create_dir_all(&pod_dir)
            .map_err(|e| NotYet::Retry(format!("creating {}: {e}", pod_dir.display())))?;
        let sa = spec
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into());
        let client = self.shared.client.clone();
        let (namespace, name, uid) = (self.namespace.clone(), self.name.clone(), self.uid.clone());
        let token = |audience: Option<String>, exp: i64| {
            let (client, sa, namespace, name, uid) = (
                client.clone(),
                sa.clone(),
                namespace.clone(),
                name.clone(),
                uid.clone(),
            );
            async move {
                crate::token::request(
                    &client,
                    &namespace,
                    &sa,
                    &name,
                    &uid,
                    audience.as_deref(),
                    exp,
                )
                .await
                .map_err(|e| NotYet::Retry(format!("{e:#}")))
            }
        };
        let mut tokens: BTreeMap<TokenKey, String> = BTreeMap::new();
        for key in crate::volumes::token_requests(&pod) {
            let t = token(key.audience.clone(), key.expiration_seconds).await?;
            tokens.insert(key, t);
        }
        let kubeconfig = if spec.automount_service_account_token != Some(false) {
            // 3607 s: the API server extends such a token's life, as it does for kubelets.
            let t = token(None, 3607).await?;
            let path = pod_dir.join("kubeconfig");
            let text = crate::token::kubeconfig(
                &settings.apiserver,
                &settings.ca_pem,
                &t,
                &self.namespace,
            );
            write_private(&path, text.as_bytes())
                .map_err(|e| NotYet::Retry(format!("writing {}: {e:#}", path.display())))?;
            Some(path)
        } else {
            None
        };

        let pod_ip = self.run.pod_ip.clone().unwrap_or_default();
        let facts = PodFacts {
            pod: &pod,
            pod_ip: pod_ip.clone(),
            host_ip: settings.node_ip.clone(),
            node_name: settings.node_name.clone(),
        };
        let volumes =
            crate::volumes::materialise(&facts, &sources, &tokens, &settings.ca_pem, &pod_dir)
                .map_err(|e| NotYet::Retry(format!("{e:#}")))?;

        let plan = |c: &Container| -> Result<(Spec, Program), NotYet> {
            let program = table
                .lookup(c.image.as_deref().unwrap_or(""))
                .ok_or_else(|| NotYet::Retry("the image table changed".into()))?;
            let env = crate::env::resolve(c, &facts, &sources)
                .map_err(|e| NotYet::Retry(e.to_string()))?;
            let rewriter = Rewriter::new(crate::volumes::mounts(c, &volumes), pod_ip.clone());
            let ctx = crate::launch::PodContext {
                pod_name: &name,
                pod_ip: &pod_ip,
                pod_dir: &pod_dir,
                kubeconfig: kubeconfig.as_deref(),
            };
            Ok((
                crate::launch::spec(settings, &ctx, c, &program, env, &rewriter),
                program,
            ))
        };
        let mut init = Vec::new();
        for c in spec.init_containers.iter().flatten() {
            init.push((c.name.clone(), plan(c)?.0));
        }
        let mut main = Vec::new();
        for (index, c) in spec.containers.iter().enumerate() {
            let (spec, program) = plan(c)?;
            let probe = crate::probe::readiness(c).unwrap_or_else(|e| {
                tracing::warn!(container = %c.name, error = %e, "unusable readiness probe: ready once started");
                ProbeConfig {
                    check: Check::Pass { why: "the readiness probe is unusable" },
                    initial_delay: Duration::ZERO,
                    period: Duration::from_secs(1),
                    timeout: Duration::from_secs(1),
                    success_threshold: 1,
                    failure_threshold: 1,
                }
            });
            if c.liveness_probe.is_some() || c.startup_probe.is_some() {
                tracing::info!(container = %c.name, "liveness and startup probes are not run here");
            }
            if program == Program::StandIn {
                // A container that declares no ports (the conformance suite's coredns, which
                // serves UDP DNS only to tests weir does not run) still runs and turns Ready,
                // so whoever waits for its namespace's pods is not kept waiting; the condition
                // says that it serves nothing.
                let image = c.image.as_deref().unwrap_or("");
                let declares_ports = c.ports.as_ref().is_some_and(|p| !p.is_empty());
                self.run.containers[index].stand_in = Some(if declares_ports {
                    format!("stand-in for {image}")
                } else {
                    format!("stand-in for {image}, serving nothing: it declares no ports")
                });
            }
            main.push(Planned { spec, probe });
        }
        Ok(Prepared { init, main })
    }

    /// A container exited: record it, and end the pod if that makes it terminal.
    async fn after_exit(&mut self) {
        if matches!(self.run.phase(), "Failed" | "Succeeded") {
            // No restarts here: the other containers of a finished pod are stopped.
            let running: Vec<u32> = self.running_pids();
            if !running.is_empty() {
                tracing::info!("the pod is finished; stopping its other containers");
                for pid in &running {
                    crate::process::signal_group(*pid, Signal::TERM);
                }
                self.wait_exits(Duration::from_secs(2)).await;
                for pid in self.running_pids() {
                    crate::process::signal_group(pid, Signal::KILL);
                }
                self.wait_exits(Duration::from_secs(2)).await;
            }
            for probe in &self.probes {
                probe.abort();
            }
            if self.running_pids().is_empty() {
                self.release_ip();
            }
        }
    }

    fn running_pids(&self) -> Vec<u32> {
        self.pids.iter().flatten().copied().collect()
    }

    fn record_exit(&mut self, index: usize, pid: u32, status: Option<std::process::ExitStatus>) {
        crate::process::forget(pid);
        if let Some(slot) = self.pids.get_mut(index) {
            *slot = None;
        }
        let (exit_code, signal, reason) =
            status.map_or((255, None, "Error"), crate::process::exit_summary);
        let Some(c) = self.run.containers.get_mut(index) else {
            return;
        };
        let started_at = match &c.state {
            RunState::Running { started_at, .. } => Some(started_at.clone()),
            _ => None,
        };
        tracing::info!(container = %c.name, pid, exit_code, "exited");
        c.ready = false;
        c.state = RunState::Terminated {
            pid: Some(pid),
            exit_code,
            signal,
            reason: reason.into(),
            message: None,
            started_at,
            finished_at: crate::status::now(),
        };
    }

    /// Collects exits for up to `limit`, or until nothing runs.
    async fn wait_exits(&mut self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.running_pids().is_empty() {
            match tokio::time::timeout_at(deadline, self.exits_rx.recv()).await {
                Ok(Some((index, pid, status))) => self.record_exit(index, pid, status),
                _ => return,
            }
        }
    }

    /// Runs until the pod ends, following readiness and exits.
    async fn supervise(&mut self) -> End {
        loop {
            tokio::select! {
                changed = self.rx.changed() => {
                    if changed.is_err() {
                        return End::Gone;
                    }
                    let pod = self.rx.borrow().clone();
                    match pod {
                        None => return End::Gone,
                        Some(p) if p.metadata.deletion_timestamp.is_some() => {
                            self.pod = p;
                            return End::Deleting;
                        }
                        Some(p) => self.pod = p,
                    }
                }
                Some((index, ready)) = self.ready_rx.recv() => {
                    if let Some(c) = self.run.containers.get_mut(index)
                        && matches!(c.state, RunState::Running { .. })
                    {
                        c.ready = ready;
                    }
                    self.publish().await;
                }
                Some((index, pid, status)) = self.exits_rx.recv() => {
                    self.record_exit(index, pid, status);
                    self.after_exit().await;
                    self.publish().await;
                }
            }
        }
    }

    fn kill_now(&mut self) {
        let pids = self.running_pids();
        if !pids.is_empty() {
            tracing::info!("the pod is gone: killing its processes");
        }
        for pid in pids {
            crate::process::signal_group(pid, Signal::KILL);
            crate::process::forget(pid);
        }
    }

    /// preStop, SIGTERM, the grace period, SIGKILL.
    async fn stop_gracefully(&mut self) {
        self.latest();
        let grace = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30)
            .max(0) as u64;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(grace);
        tracing::info!(grace, "stopping the pod");
        let ip = self.ip.map(IpAddr::V4);
        let mut hooks = Vec::new();
        for (index, c) in self
            .pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .enumerate()
        {
            if self.pids.get(index).copied().flatten().is_none() {
                continue;
            }
            let Some(pre_stop) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) else {
                continue;
            };
            if let Some(sleep) = &pre_stop.sleep {
                hooks.push(Box::pin(tokio::time::sleep(Duration::from_secs(
                    sleep.seconds.max(0) as u64,
                )))
                    as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>);
            } else if let (Some(http), Some(ip)) = (&pre_stop.http_get, ip) {
                if let Ok(port) = crate::probe::readiness(&Container {
                    readiness_probe: Some(k8s_openapi::api::core::v1::Probe {
                        http_get: Some(http.clone()),
                        ..Default::default()
                    }),
                    ..c.clone()
                }) {
                    let check = port.check;
                    hooks.push(Box::pin(async move {
                        let _ = crate::probe::attempt(&check, ip, Duration::from_secs(10)).await;
                    }));
                }
            } else if pre_stop.exec.is_some() {
                tracing::info!(container = %c.name, "exec preStop hooks are not run here");
            }
        }
        let _ = tokio::time::timeout_at(deadline, futures_util::future::join_all(hooks)).await;
        for pid in self.running_pids() {
            crate::process::signal_group(pid, Signal::TERM);
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.wait_exits(left).await;
        let stragglers = self.running_pids();
        if !stragglers.is_empty() {
            tracing::info!("grace period over: SIGKILL");
            for pid in stragglers {
                crate::process::signal_group(pid, Signal::KILL);
            }
            self.wait_exits(Duration::from_secs(2)).await;
        }
        self.publish().await;
    }

    /// The kubelet's last word: delete with no grace, only this very pod (UID precondition).
    async fn final_delete(&mut self) {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match self.api().delete(&self.name, &params).await {
            Ok(_) => tracing::info!("deleted"),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => tracing::warn!(error = %e, "the final delete failed"),
        }
    }
}

/// Runs an init container to its end; its exit code.
async fn run_to_end(spec: &Spec) -> Result<i32> {
    let mut child = crate::process::spawn(spec)?;
    let pid = child.id().unwrap_or(0);
    let status = child
        .wait()
        .await
        .context("waiting for the init container")?;
    crate::process::forget(pid);
    Ok(crate::process::exit_summary(status).0)
}

fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, data)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// `<state dir>/<namespace>_<name>_<first 8 of the uid>/`.
pub fn pod_folder(state_dir: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    let prefix: String = uid.chars().take(8).collect();
    state_dir.join(format!("{namespace}_{name}_{prefix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_name() {
        assert_eq!(
            pod_folder(Path::new("/s"), "ns", "web-1", "0123456789abcdef"),
            PathBuf::from("/s/ns_web-1_01234567")
        );
    }

    #[test]
    fn earlier_runner_pods() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
                "containerID": "weir://123"
            }]}
        }))
        .unwrap();
        assert!(started_before(&pod));
        assert!(!is_terminal(&pod));
    }
}
