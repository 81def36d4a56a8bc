//! Following the file: every change is parsed and published; a refused one is reported once.

use super::{Contents, FileError};
use crate::store::Store;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Publishes the file's objects into `tx`, and again whenever its contents change. A file
/// that is missing, cannot be read or cannot be parsed is reported through `on_error` (once
/// per state, not every tick), and the last good store stays. `published`: the contents
/// already sent, if any, so they are not sent twice.
#[tracing::instrument(skip_all, fields(path = %path.display()))]
pub async fn watch(
    path: PathBuf,
    interval: Duration,
    tx: watch::Sender<Arc<Store>>,
    published: Option<Contents>,
    on_error: impl Fn(&FileError),
) {
    let mut last = published;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let contents = match look(&path).await {
            Some(c) => c,
            None => continue,
        };
        if last.as_ref() == Some(&contents) {
            continue;
        }
        let parsed = contents.parse(&path);
        last = Some(contents);
        match parsed {
            Ok(store) => {
                if tx.send(Arc::new(store)).is_err() {
                    return;
                }
            }
            Err(e) => on_error(&e),
        }
    }
}

/// One read of the file, off the runtime's threads (a slow disk must not stall the proxy).
/// `None` only if the blocking task itself failed; the next tick looks again.
async fn look(path: &std::path::Path) -> Option<Contents> {
    let path = path.to_path_buf();
    match tokio::task::spawn_blocking(move || Contents::read(&path)).await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "reading the file failed; trying again");
            None
        }
    }
}
