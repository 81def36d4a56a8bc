//! The `weir` binary as a child process: started on loopback ports, stopped by PID.

use super::{Config, free_port, get, http1_client};
use http::StatusCode;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const WEIR: &str = env!("CARGO_BIN_EXE_weir");

/// A weir process, killed by PID if the test ends without stopping it.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.0.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Resident memory in bytes, from /proc.
    pub fn rss(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    }
}

/// Waits until the admin port says ready.
pub async fn wait_ready(admin: &str) {
    let client = http1_client();
    for _ in 0..300 {
        if let Ok((StatusCode::OK, _)) =
            get(&client, &format!("http://{admin}/readyz"), "admin").await
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("weir at {admin} never became ready");
}

/// A `weir run` against a cluster, and where it listens.
pub struct Run {
    pub process: Process,
    pub http: String,
    pub https: String,
    pub admin: String,
}

/// `weir run --kubeconfig KUBECONFIG` as replica `identity` (`POD_NAME`, its Lease identity),
/// its listeners on free loopback ports, with `extra` flags, logging at `rust_log` to `stderr`.
pub fn run(
    kubeconfig: &std::path::Path,
    identity: &str,
    extra: &[&str],
    rust_log: &str,
    stderr: Stdio,
) -> Run {
    let [http, https, admin] = [(); 3].map(|_| format!("127.0.0.1:{}", free_port()));
    let child = Command::new(WEIR)
        .arg("run")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "--http-addr",
            &http,
            "--admin-addr",
            &admin,
            "--https-addr",
            &https,
        ])
        .args(extra)
        .env("POD_NAME", identity)
        .env("RUST_LOG", rust_log)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("weir starts");
    Run {
        process: Process(child),
        http,
        https,
        admin,
    }
}

/// `weir serve` on a file, with `extra` flags; HTTPS on a free port nobody uses.
pub fn serve(config: &std::path::Path, http: &str, admin: &str, extra: &[&str]) -> Process {
    let child = Command::new(WEIR)
        .args(["serve", "--config"])
        .arg(config)
        .args([
            "--http-addr",
            http,
            "--admin-addr",
            admin,
            "--reload-interval",
            "100ms",
        ])
        .args(["--https-addr", &format!("127.0.0.1:{}", free_port())])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("weir starts");
    Process(child)
}

/// A `weir serve` of a test config, on free loopback ports; the file lives as long as it.
pub struct Served {
    pub process: Process,
    /// `127.0.0.1:port` of the HTTP listener and of the admin server.
    pub http: String,
    pub admin: String,
    _dir: tempfile::TempDir,
}

/// Writes `config` to a file, starts `weir serve` on it with `extra` flags, and waits until
/// it is ready.
pub async fn serve_config(config: &Config, extra: &[&str]) -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pools.yaml");
    std::fs::write(&file, config.yaml()).expect("write config");
    let (http, admin) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let process = serve(&file, &http, &admin, extra);
    wait_ready(&admin).await;
    Served {
        process,
        http,
        admin,
        _dir: dir,
    }
}

/// One unlabelled sample's value from weir's /metrics, e.g. `weir_runtime_tasks`.
pub async fn metric(admin: &str, name: &str) -> Option<f64> {
    let (_, text) = get(&http1_client(), &format!("http://{admin}/metrics"), "admin")
        .await
        .ok()?;
    text.lines().find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}
