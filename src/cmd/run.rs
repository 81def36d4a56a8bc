//! `weir run`: the ingress controller in a cluster. Watches LoadBalancerPools, Services,
//! EndpointSlices and TLS Secrets, proxies, and (when leader) writes pool status and Ingress
//! status (the --publish-address / --publish-service addresses), and keeps the Services of
//! Gateways.

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
use weir::controller::gateway_service::{ServiceConfig, ServiceType};
use weir::controller::ingress_status::{
    Publish, PublishAddress, parse_publish_address, parse_publish_service,
};
use weir::controller::lease::LeaseConfig;
use weir::routing::gateway::{GatewayAddresses, PortRange};
use weir::source::kube::{Scope, SourceState};
use weir::store::{ObjectKey, Store};

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
    /// Boxed: `Run` is already the largest command's arguments.
    #[command(flatten)]
    publish: Box<PublishFlags>,
    #[command(flatten)]
    gateway_services: GatewayServices,
    #[command(flatten)]
    listen: Listen,
}

/// The addresses the leader writes to the status of weir's Ingresses (as ingress-nginx's
/// flags of the same names); neither flag: no Ingress status is written.
#[derive(clap::Args, Debug)]
struct PublishFlags {
    /// The addresses weir is reached at, IP addresses or DNS names, comma-separated; they win
    /// over --publish-service.
    #[arg(long, value_name = "ADDR", value_delimiter = ',', value_parser = parse_publish_address)]
    publish_address: Vec<PublishAddress>,
    /// The Service in front of weir, NAMESPACE/NAME: its load balancer's addresses, else its
    /// external IPs, else its cluster IP (the Helm chart sets it).
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = parse_publish_service)]
    publish_service: Option<ObjectKey>,
}

/// Gateway API in a cluster: without --gateway-addresses, each Gateway is exposed by a Service
/// of its own that weir makes in its namespace ("service mode").
#[derive(clap::Args, Debug)]
struct GatewayServices {
    /// weir's own namespace: where the Services of Gateways go, and where a GatewayClass's
    /// parameters ConfigMap is looked for when it names no namespace.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    namespace: String,
    /// The pod ports weir binds for Gateway listener ports (one per Gateway and listener port,
    /// on 0.0.0.0), which each Gateway's Service targets.
    #[arg(long, value_name = "FIRST-LAST", default_value_t = PortRange::default())]
    gateway_ports: PortRange,
    /// The labels of weir's pods, KEY=VALUE[,KEY=VALUE...]: the selector of the Gateways'
    /// Services (the Helm chart sets it).
    #[arg(long, value_name = "LABELS", value_delimiter = ',', value_parser = parse_label)]
    gateway_service_selector: Vec<(String, String)>,
    /// The type of a Gateway's Service when its GatewayClass's parameters ConfigMap does not
    /// say (key serviceType): LoadBalancer, ClusterIP or NodePort.
    #[arg(long, default_value_t = ServiceType::LoadBalancer)]
    gateway_service_type: ServiceType,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// How often the leader looks at what the Gateways' Services should be.
const SERVICE_INTERVAL: Duration = Duration::from_millis(500);

/// How often `weir run` looks at the affinity key file.
const KEY_FILE_INTERVAL: Duration = Duration::from_secs(5);
/// How often the leader writes pool status.
const STATUS_INTERVAL: Duration = Duration::from_millis(500);
/// How often the leader looks at what each Ingress's status and events should be.
const INGRESS_STATUS_INTERVAL: Duration = Duration::from_secs(1);

pub fn main(args: Args) -> anyhow::Result<()> {
    let mut options = args.listen.options()?;
    // In a cluster without --gateway-addresses, Gateways are exposed by Services of their own.
    let services = args.listen.gateway_addresses.is_none().then(|| {
        let config = ServiceConfig {
            namespace: args.gateway_services.namespace.clone(),
            selector: args
                .gateway_services
                .gateway_service_selector
                .iter()
                .cloned()
                .collect(),
            default_type: args.gateway_services.gateway_service_type,
        };
        options.gateway_addresses = GatewayAddresses::Services {
            ports: args.gateway_services.gateway_ports,
            namespace: config.namespace.clone(),
        };
        if config.selector.is_empty() {
            tracing::warn!(
                "no --gateway-service-selector: the Services of Gateways will select no pods"
            );
        }
        config
    });
    if services.is_some() {
        // A pod port weir's own listener holds would never bind for a Gateway: say so now.
        let range = args.gateway_services.gateway_ports;
        let own = [
            ("--http-addr", Some(options.http_addr)),
            ("--https-addr", options.https_addr),
            ("--admin-addr", Some(options.admin_addr)),
        ];
        for (flag, addr) in own {
            if let Some(addr) = addr.filter(|a| range.contains(a.port())) {
                anyhow::bail!("--gateway-ports {range} holds the port of {flag} {addr}");
            }
        }
    }
    let PublishFlags {
        publish_address,
        publish_service,
    } = *args.publish;
    let publish = Publish::from_flags(publish_address, publish_service);
    let key_file = args.listen.key_file();
    let watched = args.watch_namespaces.clone();
    let scope = Scope {
        namespaces: args.watch_namespaces,
        class: args.controller_class,
        gateway_services: services.as_ref().map(|c| c.namespace.clone()),
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
        let mut tasks = vec![
            source,
            tokio::spawn(weir::controller::lease::run(
                client.clone(),
                lease,
                leader.clone(),
            )),
            tokio::spawn(weir::controller::status::run(
                client.clone(),
                watched,
                running.admin.clone(),
                leader.clone(),
                STATUS_INTERVAL,
            )),
            tokio::spawn(weir::controller::ingress_status::run(
                client.clone(),
                publish,
                running.admin.clone(),
                leader.clone(),
                INGRESS_STATUS_INTERVAL,
            )),
            tokio::spawn(weir::source::kube::export_stale(
                source_state,
                running.admin.metrics.source_stale.clone(),
            )),
        ];
        if let Some(config) = services {
            tasks.push(tokio::spawn(weir::controller::gateway_service::run(
                client,
                config,
                running.admin.clone(),
                leader,
                SERVICE_INTERVAL,
            )));
        }
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
