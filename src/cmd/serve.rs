//! `weir serve`: pools from a YAML file, reloaded when it changes. No cluster needed.

use super::affinity_key;
use super::listen::Listen;
use super::runtime;
use anyhow::Context;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use weir::app::{self, Options};
use weir::metrics::Metrics;
use weir::source::file::{self, Contents, FileError};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The file (multi-document YAML, or a `kind: List` as `kubectl get -o yaml` prints).
    #[arg(long, short = 'c')]
    config: PathBuf,
    #[command(flatten)]
    listen: Listen,
    /// How often to look for changes in the file.
    #[arg(long, default_value = "1s", value_parser = super::parse_duration)]
    reload_interval: Duration,
}

pub fn main(args: Args) -> anyhow::Result<()> {
    let mut options = args.listen.options()?;
    // The file is weir's alone: its Ingresses without a class are weir's.
    options.ingress_class.unclassed = true;
    let key_file = args.listen.key_file();
    runtime::build(args.listen.process.workers)?.block_on(async move {
        let running = start(&args.config, options, args.reload_interval).await?;
        // The key file is looked at as often as the configuration.
        affinity_key::until_signal(&running.weir, key_file, args.reload_interval).await;
        running.watcher.abort();
        running.weir.shutdown().await;
        Ok(())
    })
}

/// weir serving the file, and the task that follows it.
struct Serving {
    weir: app::Running,
    watcher: tokio::task::JoinHandle<()>,
}

/// Loads the file and serves it. The first load must succeed: there is no last good state to
/// fall back on yet. Later ones that fail are reported and keep the last good one serving.
async fn start(
    config: &std::path::Path,
    options: Options,
    reload_interval: Duration,
) -> anyhow::Result<Serving> {
    let contents = Contents::read(config);
    let store = Arc::new(contents.parse(config)?);
    let (updates, rx) = watch::channel(store.clone());
    let weir = app::start(options, Some(store), rx)
        .await
        .context("starting weir")?;
    let metrics = weir.admin.metrics.clone();
    let watcher = tokio::spawn(file::watch(
        config.to_path_buf(),
        reload_interval,
        updates,
        Some(contents),
        move |e| report_refused(&metrics, e),
    ));
    Ok(Serving { weir, watcher })
}

/// A configuration that cannot be served (missing, unreadable, invalid): counted and logged.
fn report_refused(metrics: &Metrics, error: &FileError) {
    metrics.config_errors.inc();
    tracing::error!(error = %error, "configuration refused; the last good one keeps serving");
}
