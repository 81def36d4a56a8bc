//! The process's log: text or JSON on stderr, filtered by `--log-level` or `RUST_LOG`.

use clap::ValueEnum;
use std::io::IsTerminal;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber.
pub fn init(format: LogFormat, level: &str) {
    // rustls warns about what clients send (an IP address as SNI, say): a client must not be
    // able to write weir's log, so its messages start at error unless asked for by name.
    let level = if level.contains("rustls") {
        level.to_string()
    } else {
        format!("{level},rustls=error")
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rustls=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes are for a terminal; in a file or a pod's log they are noise.
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
