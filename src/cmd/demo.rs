//! `weir demo`: three local backends and a round-robin pool in front of them, to try weir in
//! one command. Writes nothing to disk.

use super::listen::DemoListen;
use super::runtime::{self, wait_for_signal};
use anyhow::Context;
use std::sync::Arc;
use tokio::sync::watch;
use weir::app::{self, Options};

/// The port the printed configuration gives the backends (the running demo picks a free one).
const PRINTED_PORT: u16 = 8000;
/// How many backends the demo starts.
const BACKENDS: u8 = 3;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    listen: DemoListen,
    /// Print the demo's configuration (a `weir serve` file) and exit.
    #[arg(long)]
    print_config: bool,
}

pub fn main(args: Args) -> anyhow::Result<()> {
    if args.print_config {
        print!("{}", weir::demo::config(PRINTED_PORT, BACKENDS));
        return Ok(());
    }
    runtime::build(args.listen.process.workers)?.block_on(demo(args.listen.options()))
}

async fn demo(options: Options) -> anyhow::Result<()> {
    let port = weir::demo::start_backends(BACKENDS)
        .await
        .context("starting the demo backends")?;
    let store = weir::source::file::parse("demo", &weir::demo::config(port, BACKENDS))?;
    let store = Arc::new(store);
    // Nothing updates the demo: the sender stays here so the feed stays open.
    let (_updates, rx) = watch::channel(store.clone());
    let running = app::start(options, Some(store), rx)
        .await
        .context("starting weir (is something else on the port? try --http-addr)")?;
    println!(
        "{}",
        weir::demo::instructions(running.http_addr, running.admin_addr)
    );
    wait_for_signal().await;
    running.shutdown().await;
    Ok(())
}
