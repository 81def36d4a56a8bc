//! weir-pod-runner: plays kubelet, scheduler and container runtime for one Node of the test
//! cluster, running pods as local processes. See README.md beside Cargo.toml.

mod echo;
mod env;
mod grpc;
mod images;
mod ips;
mod probe;
mod rewrite;
mod signals;
mod sources;
mod standin;
mod status;
mod tls;

mod node {
    pub const NODE_CPU: &str = "2";
    pub const NODE_MEMORY_BYTES: u64 = 8 << 30;
}

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The echo backend (echo-basic compatible), run as a pod's process.
    Echo {
        /// The container's args; only echo-advanced's `--port=N` is read.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
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
        Command::Echo { args } => multi_thread(echo::main(args)),
        Command::StandIn { image, ports } => multi_thread(standin::main(image, ports)),
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
