//! Waiting for SIGTERM or SIGINT.

use anyhow::{Context, Result};
use tokio::signal::unix::{SignalKind, signal};

pub async fn terminated() -> Result<()> {
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
