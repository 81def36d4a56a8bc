//! weir-pod-runner: plays kubelet, scheduler and container runtime for one Node of the test
//! cluster, running pods as local processes. See README.md beside Cargo.toml.

mod bind;
mod echo;
mod env;
mod grpc;
mod images;
mod ips;
mod launch;
mod logs;
mod node;
mod pods;
mod probe;
mod process;
mod rewrite;
mod signals;
mod sources;
mod standin;
mod status;
mod tls;
mod token;
mod volumes;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct NodeArgs {
    /// The Node's identity (system:node:NAME in group system:nodes).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// The scheduler's identity (system:kube-scheduler): watches and binds unbound pods.
    #[arg(long)]
    scheduler_kubeconfig: PathBuf,
    #[arg(long, default_value = "weir-node")]
    node_name: String,
    /// The node's address (the namespace side of the veth), for the Node and each pod's hostIP.
    #[arg(long)]
    node_ip: std::net::Ipv4Addr,
    /// The network namespace pods run in (`ip netns exec`); without it, the current one.
    #[arg(long)]
    netns: Option<String>,
    /// Pod addresses, FIRST-LAST.
    #[arg(long)]
    pod_ips: ips::IpRange,
    /// The API server as pods reach it, e.g. https://10.244.3.1:6443.
    #[arg(long)]
    apiserver: String,
    /// The cluster CA, for the pods' kubeconfigs.
    #[arg(long)]
    ca_file: PathBuf,
    /// The weir binary, run for containers of a --weir-image.
    #[arg(long)]
    weir_binary: PathBuf,
    /// An image repository (tag and digest ignored) that means weir; repeatable.
    #[arg(long = "weir-image", default_value = "weir")]
    weir_images: Vec<String>,
    /// Per pod a folder with its volumes, kubeconfig and container logs.
    #[arg(long)]
    state_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Plays kubelet, scheduler and runtime for one Node.
    Node(Box<NodeArgs>),
    /// The echo backend (echo-basic compatible), run as a pod's process.
    Echo {
        /// The container's args; only echo-advanced's `--port=N` is read.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The kubelet's log endpoint (`kubectl logs`), started by `node` in the pods' namespace.
    KubeletLogs {
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[arg(long)]
        state_dir: PathBuf,
    },
    /// A stand-in for an image no test talks to: HTTP 200 on each port.
    StandIn {
        #[arg(long)]
        image: String,
        #[arg(long, value_delimiter = ',')]
        ports: Vec<u16>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Node(args) => node_main(*args),
        Command::Echo { args } => multi_thread(echo::main(args)),
        Command::StandIn { image, ports } => multi_thread(standin::main(image, ports)),
        Command::KubeletLogs { listen, state_dir } => multi_thread(logs::main(listen, state_dir)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir-pod-runner: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn multi_thread(f: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(f)
}

async fn client(path: &std::path::Path) -> Result<kube::Client> {
    let config = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .with_context(|| format!("using {}", path.display()))?;
    kube::Client::try_from(config).context("making the Kubernetes client")
}

/// The node runner runs on a current-thread runtime on the main thread: every child is
/// forked from this thread, which lives as long as the process (see process.rs on
/// PR_SET_PDEATHSIG).
fn node_main(args: NodeArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let node_client = client(&args.kubeconfig).await?;
        let scheduler_client = client(&args.scheduler_kubeconfig).await?;
        let ca_pem = std::fs::read(&args.ca_file)
            .with_context(|| format!("reading {}", args.ca_file.display()))?;
        std::fs::create_dir_all(&args.state_dir)
            .with_context(|| format!("creating {}", args.state_dir.display()))?;
        let settings = launch::Settings {
            node_name: args.node_name.clone(),
            node_ip: args.node_ip.to_string(),
            netns: args.netns.clone(),
            apiserver: args.apiserver.clone(),
            ca_pem,
            weir_binary: args.weir_binary.clone(),
            self_binary: std::env::current_exe().context("finding this binary")?,
            state_dir: args.state_dir.clone(),
        };
        let node_ip = args.node_ip.to_string();
        // Registration is retried: the API server may still be coming up.
        let mut attempt = 0u32;
        while let Err(e) = node::register(&node_client, &args.node_name, &node_ip).await {
            attempt += 1;
            if attempt >= 30 {
                return Err(e);
            }
            tracing::warn!(error = %format!("{e:#}"), "registering the node; trying again");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let shared = Arc::new(pods::Shared {
            client: node_client.clone(),
            settings,
            table: images::ImageTable::new(&args.weir_images),
            pool: Mutex::new(ips::IpPool::new(args.pod_ips)),
        });
        tokio::spawn(node::heartbeat(
            node_client,
            args.node_name.clone(),
            node_ip,
        ));
        tokio::spawn(bind::run(scheduler_client, args.node_name.clone()));
        // Where the API server proxies `pods/log` to (the Node's kubeletEndpoint port).
        let logs = process::spawn(&process::Spec {
            program: shared.settings.self_binary.clone(),
            args: vec![
                "kubelet-logs".into(),
                "--listen".into(),
                format!("{}:{}", args.node_ip, node::KUBELET_PORT),
                "--state-dir".into(),
                args.state_dir.to_string_lossy().into_owned(),
            ],
            env: Default::default(),
            log: args.state_dir.join("kubelet-logs.log"),
            netns: args.netns.clone(),
            workdir: args.state_dir.clone(),
        })?;
        tokio::spawn(async move {
            let mut logs = logs;
            let status = logs.wait().await;
            tracing::warn!(?status, "the kubelet log endpoint exited");
        });
        tokio::spawn(pods::run(shared));
        tracing::info!(node = %args.node_name, "running pods");
        signals::terminated().await?;
        tracing::info!("terminating: stopping every pod's processes");
        process::kill_all(Duration::from_secs(2)).await;
        Ok(())
    })
}
