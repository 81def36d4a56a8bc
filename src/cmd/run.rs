//! `weir run`: the ingress controller in a cluster. Watches LoadBalancerPools, Services,
//! EndpointSlices and TLS Secrets, proxies, and (when leader) writes pool status.

use super::affinity_key;
use super::listen::Listen;
use super::runtime;
use anyhow::Context;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio::sync::watch;
use weir::app;
use weir::controller::lease::LeaseConfig;
use weir::source::kube::{Scope, SourceState};
use weir::store::Store;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A kubeconfig file; default: KUBECONFIG, ~/.kube/config, or the in-cluster account.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Namespaces to watch, comma-separated; default: all.
    #[arg(long, value_delimiter = ',')]
    watch_namespaces: Vec<String>,
    /// Serve only pools whose spec.className is this (pools without one are served too).
    #[arg(long, default_value = "weir")]
    controller_class: String,
    /// Namespace of the leader-election Lease (default: POD_NAMESPACE, else default).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    #[arg(long, default_value = "weir-leader")]
    lease_name: String,
    /// A leader that stops renewing is replaced after this long.
    #[arg(long, default_value = "15s", value_parser = super::parse_duration)]
    lease_duration: Duration,
    #[command(flatten)]
    listen: Listen,
}

/// How often `weir run` looks at the affinity key file.
const KEY_FILE_INTERVAL: Duration = Duration::from_secs(5);
/// How often the leader writes pool status.
const STATUS_INTERVAL: Duration = Duration::from_millis(500);

pub fn main(args: Args) -> anyhow::Result<()> {
    let options = args.listen.options()?;
    let key_file = args.listen.key_file();
    let watched = args.watch_namespaces.clone();
    let scope = Scope {
        namespaces: args.watch_namespaces,
        class: args.controller_class,
    };
    let lease = LeaseConfig {
        namespace: args.lease_namespace,
        name: args.lease_name,
        identity: replica_identity(),
        duration: args.lease_duration,
        renew_every: (args.lease_duration / 5).max(Duration::from_secs(1)),
    };
    runtime::build(args.listen.process.workers)?.block_on(async move {
        let client = weir::source::kube::client(args.kubeconfig.as_deref()).await?;
        // Not ready until the watchers have listed everything once: no first store.
        let (updates, rx) = watch::channel(Arc::new(Store::default()));
        let source_state = Arc::new(SourceState::default());
        let source = tokio::spawn(weir::source::kube::run(
            client.clone(),
            scope,
            updates,
            source_state.clone(),
        ));
        let running = app::start(options, None, rx)
            .await
            .context("starting weir")?;
        let leader = Arc::new(AtomicBool::new(false));
        let tasks = [
            source,
            tokio::spawn(weir::controller::lease::run(
                client.clone(),
                lease,
                leader.clone(),
            )),
            tokio::spawn(weir::controller::status::run(
                client,
                watched,
                running.admin.clone(),
                leader,
                STATUS_INTERVAL,
            )),
            tokio::spawn(weir::source::kube::export_stale(
                source_state,
                running.admin.metrics.source_stale.clone(),
            )),
        ];
        affinity_key::until_signal(&running, key_file, KEY_FILE_INTERVAL).await;
        for task in tasks {
            task.abort();
        }
        running.shutdown().await;
        Ok(())
    })
}

/// This replica's name in the leader Lease: the pod, else host and process.
fn replica_identity() -> String {
    if let Ok(pod) = std::env::var("POD_NAME") {
        return pod;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}
