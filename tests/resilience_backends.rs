//! Pods that fail in every way a pod can, under load, in front of the real `weir` binary: one
//! killed with SIGKILL, one that accepts and never answers, one that resets before its answer,
//! one that resets mid-body, one that speaks garbage, one that takes seconds. Idempotent
//! requests must not fail while another endpoint is healthy; weir's memory and task count
//! must come back afterwards.

mod common;

use common::process::*;
use common::*;
use http::StatusCode;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a fault backend misbehaves after reading a request.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Reads, never answers, never closes.
    BlackHole,
    /// Sends half a status line, then a TCP reset.
    ResetBeforeHead,
    /// Sends a full head promising 1000 bytes, 10 of them, then a reset.
    ResetMidBody,
    /// Answers with bytes that are not HTTP.
    Garbage,
}

/// A raw TCP server that misbehaves; counts the requests it took.
struct FaultBackend {
    addr: SocketAddr,
    taken: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultBackend {
    async fn start(fault: Fault) -> FaultBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let taken = Arc::new(AtomicUsize::new(0));
        let counter = taken.clone();
        let task = tokio::spawn(async move {
            let mut held = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let counter = counter.clone();
                held.spawn(misbehave(stream, fault, counter));
            }
        });
        FaultBackend { addr, taken, task }
    }
}

async fn misbehave(mut stream: TcpStream, fault: Fault, taken: Arc<AtomicUsize>) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut got = Vec::new();
    // Health checks get the same treatment: a pod this broken fails them too.
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    taken.fetch_add(1, Ordering::SeqCst);
    let reset = |stream: TcpStream| {
        // Linger 0: close() sends RST instead of FIN.
        let _ = stream.set_zero_linger();
        drop(stream);
    };
    match fault {
        Fault::BlackHole => {
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    return;
                }
            }
        }
        Fault::ResetBeforeHead => {
            let _ = stream.write_all(b"HTTP/1.1 200 O").await;
            reset(stream);
        }
        Fault::ResetMidBody => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
                .await;
            tokio::time::sleep(Duration::from_millis(5)).await;
            reset(stream);
        }
        Fault::Garbage => {
            let _ = stream
                .write_all(b"SSH-2.0-OpenSSH_9.2\r\n\x00\xff\xfe")
                .await;
            let _ = stream.shutdown().await;
        }
    }
}

/// A pod in its own process, so it can be SIGKILLed: python's HTTP server, answering GET and
/// POST with its name over keep-alive connections.
const PYTHON_POD: &str = r#"
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Pod(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        n = int(self.headers.get("content-length") or 0)
        if n:
            self.rfile.read(n)
        body = b"python"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = answer
    do_POST = answer
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Pod).serve_forever()
"#;

struct PythonPod {
    child: Child,
    addr: SocketAddr,
}

impl Drop for PythonPod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PythonPod {
    async fn start() -> PythonPod {
        let port = free_port();
        let mut pod = PythonPod {
            child: Command::new("python3")
                .args(["-c", PYTHON_POD])
                .arg(port.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("python3 runs (CI installs it)"),
            addr: ([127, 0, 0, 1], port).into(),
        };
        for _ in 0..200 {
            if TcpStream::connect(pod.addr).await.is_ok() {
                return pod;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Dropping the pod kills and reaps the process.
        let addr = pod.addr;
        pod.kill();
        panic!("the python pod never listened on {addr}");
    }

    fn kill(&mut self) {
        let status = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let _ = self.child.wait();
    }
}

/// Spec lines shared by the fault pools: a short request timeout (so a black hole costs a
/// second, not a minute), two retries, and ejection after three failures in a row.
const FAULT_POLICY: &str = "  timeouts: { requestSeconds: 1, idleSeconds: 2 }\n  retries: { attempts: 2 }\n  outlierDetection: { consecutiveFailures: 3, ejectionSeconds: 30, maxEjectedPercent: 50 }\n";

struct Baseline {
    rss: f64,
    tasks: f64,
}

async fn baseline(admin: &str) -> Baseline {
    Baseline {
        rss: metric(admin, "process_resident_memory_bytes")
            .await
            .expect("rss metric"),
        tasks: metric(admin, "weir_runtime_tasks")
            .await
            .expect("tasks metric"),
    }
}

/// Sends `n` POSTs with a small body over `clients` connections; returns (ok, failures with
/// their statuses and bodies).
async fn post_load(url: &str, host: &str, clients: usize, n: usize) -> (usize, Vec<(u16, String)>) {
    let per = n / clients;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (url, host) = (url.to_string(), host.to_string());
            tokio::spawn(async move {
                let client = http1_client();
                let (mut ok, mut failed) = (0, Vec::new());
                for _ in 0..per {
                    let req = http::Request::post(&url)
                        .header("host", &host)
                        .body(http_body_util::Full::new(bytes::Bytes::from_static(
                            b"order=1",
                        )))
                        .expect("request");
                    let answer =
                        tokio::time::timeout(Duration::from_secs(10), client.request(req)).await;
                    match answer {
                        Ok(Ok(resp)) => {
                            let status = resp.status().as_u16();
                            let body = http_body_util::BodyExt::collect(resp.into_body())
                                .await
                                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                                .unwrap_or_default();
                            if status == 200 {
                                ok += 1;
                            } else {
                                failed.push((status, body));
                            }
                        }
                        other => failed.push((0, format!("{other:?}"))),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let (mut ok, mut failed) = (0, Vec::new());
    for t in tasks {
        let (o, f) = t.await.expect("client task");
        ok += o;
        failed.extend(f);
    }
    (ok, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_faults_under_load() {
    let healthy = Backend::start_many(2).await;
    let good: Vec<SocketAddr> = healthy.iter().map(|b| b.addr).collect();
    let hole = FaultBackend::start(Fault::BlackHole).await;
    let reset_head = FaultBackend::start(Fault::ResetBeforeHead).await;
    let reset_body = FaultBackend::start(Fault::ResetMidBody).await;
    let garbage = FaultBackend::start(Fault::Garbage).await;
    let slow = Backend::start_with_delay("slow", Duration::from_secs(2)).await;
    let mut python = PythonPod::start().await;
    let mut python_b = PythonPod::start().await;

    let with = |fault: SocketAddr| {
        let mut addrs = good.clone();
        addrs.push(fault);
        addrs
    };
    let config = Config::default()
        .service("kill", &[good[0], good[1], python.addr, python_b.addr])
        .service("hole", &with(hole.addr))
        .service("rhead", &with(reset_head.addr))
        .service("rbody", &with(reset_body.addr))
        .service("garbage", &with(garbage.addr))
        .service("slow", &with(slow.addr))
        .pool_with("kill", "kill.test", &[("kill", 1)], FAULT_POLICY)
        .pool_with("hole", "hole.test", &[("hole", 1)], FAULT_POLICY)
        .pool_with("rhead", "rhead.test", &[("rhead", 1)], FAULT_POLICY)
        .pool_with("rbody", "rbody.test", &[("rbody", 1)], FAULT_POLICY)
        .pool_with("garbage", "garbage.test", &[("garbage", 1)], FAULT_POLICY)
        .pool_with(
            "slow",
            "slow.test",
            &[("slow", 1)],
            "  algorithm: PeakEwma\n  timeouts: { requestSeconds: 5, idleSeconds: 2 }\n",
        );
    let weir = serve_config(&config, &[]).await;
    let admin = weir.admin.clone();
    let url = format!("http://{}/", weir.http);

    // Warm up every pool's connections, then take the baseline.
    for host in ["kill.test", "slow.test"] {
        let (ok, failed) = Load::start(url.clone(), host, 4, 25).join().await;
        assert_eq!((ok, failed), (100, 0), "warm-up on {host}");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = baseline(&admin).await;

    // SIGKILL mid-load.
    let load = Load::start(url.clone(), "kill.test", 8, 400);
    tokio::time::sleep(Duration::from_millis(300)).await;
    python.kill();
    let (ok, failed) = load.join().await;
    eprintln!("SIGKILL: {ok} GETs answered, {failed} failed");
    assert_eq!(failed, 0, "GETs failed after a pod was killed");
    assert_eq!(ok, 3200);

    // POSTs are not replayed once sent: they may fail, but only when they went to the pod
    // that died, and only with a clear 502/504.
    let posts = tokio::spawn({
        let url = url.clone();
        async move { post_load(&url, "kill.test", 4, 800).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    python_b.kill();
    let (ok, failed) = posts.await.expect("POST clients");
    eprintln!("POSTs with a SIGKILL: {ok} ok, {} failed", failed.len());
    assert_eq!(ok + failed.len(), 800);
    for (status, body) in &failed {
        assert!(
            (*status == 502 && body.contains(&python_b.addr.to_string()))
                || (*status == 504 && body.contains("did not answer")),
            "unexpected POST failure {status}: {body}"
        );
    }

    for (host, name) in [
        ("hole.test", "black hole"),
        ("rhead.test", "reset before the head"),
        ("garbage.test", "garbage"),
        ("slow.test", "slow"),
    ] {
        let started = Instant::now();
        let (ok, failed) = Load::start(url.clone(), host, 8, 100).join().await;
        eprintln!(
            "{name}: {ok} GETs answered, {failed} failed in {:?}",
            started.elapsed()
        );
        assert_eq!(failed, 0, "GETs failed against a pool with a {name} pod");
        assert_eq!(ok, 800);
    }
    assert!(
        hole.taken.load(Ordering::SeqCst) > 0,
        "the black hole was never tried"
    );
    assert!(reset_head.taken.load(Ordering::SeqCst) > 0);
    assert!(garbage.taken.load(Ordering::SeqCst) > 0);

    // A reset after the head went out cannot be hidden: the client must see a broken body,
    // never a short one passed off as complete.
    let client = http1_client();
    let mut broken = 0;
    for _ in 0..60 {
        match get(&client, &url, "rbody.test").await {
            Ok((StatusCode::OK, body)) => assert!(
                body == "e0" || body == "e1",
                "a truncated body was delivered as complete: {body:?}"
            ),
            Ok((status, body)) => panic!("unexpected {status}: {body}"),
            Err(_) => broken += 1,
        }
    }
    let tried = reset_body.taken.load(Ordering::SeqCst);
    eprintln!("reset mid-body: {tried} requests reached the pod, {broken} clients saw the break");
    assert!(tried > 0 && broken > 0 && broken <= tried);

    // Give idle upstream connections their 2 s to close, then compare.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = baseline(&admin).await;
    eprintln!(
        "weir RSS {:.1} MiB before, {:.1} MiB after; tasks {} before, {} after",
        before.rss / 1048576.0,
        after.rss / 1048576.0,
        before.tasks,
        after.tasks
    );
    assert!(
        after.tasks <= before.tasks + 2.0,
        "tasks did not come back: {} before, {} after",
        before.tasks,
        after.tasks
    );
    assert!(
        after.rss <= before.rss + 16.0 * 1048576.0,
        "memory grew by {:.1} MiB",
        (after.rss - before.rss) / 1048576.0
    );
}
