//! Memory per idle client connection of the `weir serve` binary.
//!
//! `cargo run --release --example idle_conns -- [CONNECTIONS] [VARIANTS]`
//! (defaults 10000, `request,silent`; `h2` on request); the binary is `$WEIR`, else `target/release/weir`.
//!
//! For each variant a fresh weir starts (`--workers 1` unless `WEIR_WORKERS` says otherwise,
//! `--client-header-timeout 600s` so that idle connections stay open while measured) on
//! 127.0.0.1 with a one-pool file over a backend in this process. After a warm-up request, its
//! `VmRSS` is read; then CONNECTIONS connections are opened and left idle:
//! - `request`: each sends one complete HTTP/1.1 keep-alive request and reads the answer;
//! - `silent`: each sends nothing;
//! - `h2`: each sends the HTTP/2 prior-knowledge preface and an empty SETTINGS frame (and
//!   never answers weir's PING, so weir closes them 30 + 10 s after they open; this variant
//!   does not give a sound figure yet: the connections close while they are still opened).
//!
//! Once weir's `client_connections_open` gauge shows them all, and 2 s later, `VmRSS` is read
//! again: (after − before) ÷ CONNECTIONS is the figure. Then they are closed and RSS read once
//! more (what the allocator keeps). weir is stopped by its PID. Nothing is asserted.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::mib;

const HOST: &str = "idle.test";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A backend answering `ok`, on its own thread.
fn start_backend() -> SocketAddr {
    let std_listener = TcpListener::bind("127.0.0.1:0").expect("bind the backend");
    let addr = std_listener.local_addr().expect("backend address");
    std_listener
        .set_nonblocking(true)
        .expect("nonblocking backend socket");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("backend runtime");
        runtime.block_on(async move {
            let listener =
                tokio::net::TcpListener::from_std(std_listener).expect("backend listener");
            support::serve_ok(listener).await;
        });
    });
    addr
}

fn config(backend: SocketAddr) -> String {
    use weir::testkit::{EndpointState, endpoint, pool, route_spec, service, slice, to_document};
    let ns = weir::testkit::generated::NS;
    [
        to_document(&service(ns, "idle", &[("http", 80)])),
        to_document(&slice(
            ns,
            "idle",
            "idle-0",
            &[("http", backend.port().into())],
            &[endpoint(backend, EndpointState::Ready)],
        )),
        to_document(&pool(ns, "idle", route_spec(HOST, "/", "idle"))),
    ]
    .join("---\n")
}

/// One request on a raw connection; `Some(status)` when an answer was read.
fn get(addr: SocketAddr, path: &str, host: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Reads one HTTP/1.1 answer with a Content-Length, leaving the connection open.
fn read_answer(s: &mut TcpStream) -> std::io::Result<u16> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::other("closed before the answer"));
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + length {
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            return Ok(status);
        }
    }
}

fn open_gauge(admin: SocketAddr) -> Option<u64> {
    let (_, body) = get(admin, "/metrics", "127.0.0.1")?;
    body.lines()
        .filter(|l| {
            l.starts_with("weir_client_connections_open")
                || l.starts_with("client_connections_open")
        })
        .find(|l| l.contains("listener=\"http\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

fn wait_gauge(admin: SocketAddr, want: u64, limit: Duration) -> Option<u64> {
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < limit {
        last = open_gauge(admin);
        if last == Some(want) {
            return last;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    last
}

fn rss_of(pid: u32) -> u64 {
    support::status_field(&format!("/proc/{pid}/status"), "VmRSS:").expect("VmRSS of weir")
}

fn stop(mut child: Child) {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn run_variant(weir: &Path, file: &Path, variant: &str, n: usize) {
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let https: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let workers = std::env::var("WEIR_WORKERS").unwrap_or_else(|_| "1".into());
    let child = Command::new(weir)
        .args(["serve", "--config"])
        .arg(file)
        .args([
            "--http-addr",
            &http.to_string(),
            "--https-addr",
            &https.to_string(),
        ])
        .args(["--admin-addr", &admin.to_string(), "--workers", &workers])
        .args(["--client-header-timeout", "600s", "--log-level", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start weir ($WEIR or target/release/weir)");
    let pid = child.id();
    let started = Instant::now();
    let mut ready = false;
    while started.elapsed() < Duration::from_secs(20) {
        if let Some((200, body)) = get(http, "/", HOST)
            && body == "ok"
        {
            ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if !ready {
        eprintln!("{variant}: weir (pid {pid}) never answered through the pool");
        stop(child);
        return;
    }
    for _ in 0..100 {
        let _ = get(http, "/", HOST);
    }
    let _ = wait_gauge(admin, 0, Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(1));
    let before = rss_of(pid);

    let mut conns = Vec::with_capacity(n);
    let mut errors = 0usize;
    let t = Instant::now();
    for _ in 0..n {
        let Ok(mut s) = TcpStream::connect(http) else {
            errors += 1;
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let ok = match variant {
            "request" => write!(s, "GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n")
                .and_then(|_| read_answer(&mut s))
                .is_ok_and(|status| status == 200),
            "h2" => s
                .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
                .is_ok(),
            _ => true,
        };
        if !ok {
            errors += 1;
        }
        conns.push(s);
        // Unanswered connects pile up in the listen backlog faster than one worker accepts
        // them, and a full backlog drops SYNs (retried after 1 s, 3 s...): let weir catch up.
        if variant != "request" && conns.len() % 500 == 0 {
            let _ = wait_gauge(admin, conns.len() as u64, Duration::from_secs(5));
        }
    }
    let opened = t.elapsed();
    let seen = wait_gauge(admin, conns.len() as u64, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_of(pid);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    drop(conns);
    let _ = wait_gauge(admin, 0, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(1));
    let closed = rss_of(pid);
    stop(child);
    let per = (after as f64 - before as f64) / n as f64;
    println!(
        "{variant:>8}: {n} connections opened in {:.1} s ({errors} errors), weir saw {} open, {fds} fds; VmRSS {:.1} MiB before, {:.1} MiB with them open, {:.1} MiB after closing; {:.0} B ({:.2} KiB) per idle connection",
        opened.as_secs_f64(),
        seen.map_or_else(|| "?".to_string(), |s| s.to_string()),
        mib(before),
        mib(after),
        mib(closed),
        per,
        per / 1024.0
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args
        .first()
        .map(|a| a.parse().expect("CONNECTIONS is a number"))
        .unwrap_or(10_000);
    let variants: Vec<String> = args
        .get(1)
        .map_or("request,silent", String::as_str)
        .split(',')
        .map(str::to_string)
        .collect();
    let weir = std::env::var_os("WEIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/weir"));
    let dir = std::env::temp_dir().join(format!("weir-idle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let file = dir.join("weir.yaml");
    let backend = start_backend();
    std::fs::write(&file, config(backend)).expect("write the config");
    println!(
        "idle_conns: weir {}, {n} connections per variant",
        weir.display()
    );
    for v in &variants {
        run_variant(&weir, &file, v, n);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
