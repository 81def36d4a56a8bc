//! The weir binary: parses the command line and runs one of the commands (`src/cmd/`).
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used)]

mod cmd;

use clap::{Parser, Subcommand};
use cmd::logging::LogFormat;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "weir",
    version,
    about = "A Kubernetes-native ingress controller and load balancer"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log level or filter (RUST_LOG syntax); RUST_LOG wins when set.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve pools from a YAML file of Services, EndpointSlices, Secrets and LoadBalancerPools,
    /// reloading it when it changes. No cluster needed.
    Serve(cmd::serve::Args),
    /// The ingress controller in a cluster: watch LoadBalancerPools, Services, EndpointSlices
    /// and TLS Secrets, proxy, and (when leader) write pool status.
    Run(cmd::run::Args),
    /// Start three local backends and a pool in front of them, to try weir in one command.
    Demo(cmd::demo::Args),
    /// Print the LoadBalancerPool CustomResourceDefinition as YAML.
    Crd,
    /// Check a file of pools (with the Services, EndpointSlices and Secrets they use) offline:
    /// the same parsing and compile weir runs, printing the conditions each pool would get.
    /// Exits non-zero when a pool would not be accepted or its references do not resolve.
    Check(cmd::check::Args),
    /// Show every pool of a running weir and the state of its endpoints (from its admin port).
    Inspect(cmd::inspect::Args),
    /// Print Gateway API objects (Gateway, HTTPRoutes, LoadBalancerPools) for weir's Ingresses,
    /// from a file or the cluster, with a comment for each annotation not carried over.
    Migrate(cmd::migrate::Args),
}

/// A user's error (a bad file, a port in use) is one message with its causes, and exit code 1:
/// no `Result` from `main`, whose `Debug` printing adds a backtrace under `RUST_BACKTRACE`.
/// Backtraces are for bugs, and panics still print theirs.
fn main() -> ExitCode {
    let cli = Cli::parse();
    cmd::logging::init(cli.log_format, &cli.log_level);
    // One crypto provider for every rustls user in the binary (kube's client, our listeners).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let outcome = match cli.command {
        Command::Serve(args) => cmd::serve::main(args),
        Command::Run(args) => cmd::run::main(args),
        Command::Demo(args) => cmd::demo::main(args),
        Command::Crd => cmd::crd::main(),
        Command::Check(args) => cmd::check::main(args),
        Command::Inspect(args) => cmd::inspect::main(args),
        Command::Migrate(args) => cmd::migrate::main(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
