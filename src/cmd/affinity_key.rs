//! The affinity key file: read at start, and followed while weir serves, so a rotated key (a
//! mounted Secret changes in place: kubelet swaps a symlink) is picked up without a restart.

use super::runtime::wait_for_signal;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::time::Duration;
use weir::app::Running;

/// `--affinity-key-file` and `--affinity-key-grace`.
#[derive(Debug, Clone)]
pub struct KeyFile {
    pub path: PathBuf,
    /// After the key changes, cookies made with the previous key stay valid this long.
    pub grace: Duration,
}

/// The affinity key in a file: its bytes, without a trailing newline.
pub fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut key = std::fs::read(path)
        .with_context(|| format!("reading the affinity key file {}", path.display()))?;
    while key.last().is_some_and(|b| b.is_ascii_whitespace()) {
        key.pop();
    }
    if key.len() < weir::affinity::MIN_KEY_LEN {
        anyhow::bail!(
            "the affinity key in {} has {} bytes; it needs at least {}",
            path.display(),
            key.len(),
            weir::affinity::MIN_KEY_LEN
        );
    }
    Ok(key)
}

/// Serves until SIGTERM or SIGINT, following the key file (checked every `interval`)
/// meanwhile, when there is one.
pub async fn until_signal(running: &Running, key_file: Option<KeyFile>, interval: Duration) {
    let follow_key = async {
        match key_file {
            Some(file) => follow(file, interval, running).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = wait_for_signal() => {}
        _ = follow_key => {}
    }
}

/// Follows the key file: a new key takes over, the old one stays valid for the grace period.
/// A file that cannot be read, or holds too short a key, keeps the current key.
#[tracing::instrument(skip_all, fields(path = %file.path.display()))]
async fn follow(file: KeyFile, interval: Duration, running: &Running) {
    let mut current = read(&file.path).ok();
    loop {
        tokio::time::sleep(interval).await;
        match read(&file.path) {
            Ok(key) if current.as_ref() != Some(&key) => {
                running
                    .affinity
                    .rotate(&key, file.grace, &running.table.load());
                tracing::info!(grace_seconds = file.grace.as_secs(), "affinity key rotated");
                current = Some(key);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "keeping the current affinity key"),
        }
    }
}
