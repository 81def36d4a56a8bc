//! The `weir` binary itself: its commands, signals and exit codes.

mod common;

use common::process::*;
use common::*;
use http::StatusCode;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn crd_command_matches_the_checked_in_crd() {
    let out = Command::new(WEIR)
        .arg("crd")
        .output()
        .expect("weir crd runs");
    assert!(out.status.success());
    let checked_in = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/loadbalancerpool.yaml"
    ))
    .expect("crds/loadbalancerpool.yaml exists");
    assert!(
        String::from_utf8_lossy(&out.stdout) == checked_in,
        "crds/loadbalancerpool.yaml is stale: run `cargo run -- crd > crds/loadbalancerpool.yaml`"
    );
}

/// A pool the file source refuses: it has no backends.
const NO_BACKENDS: &str = "apiVersion: weir.dev/v1alpha1\nkind: LoadBalancerPool\nmetadata: { name: web }\nspec:\n  backends: []\n";

/// Runs `weir serve` on a file holding `config` and the admin port on `admin` (the others
/// ephemeral), with `RUST_BACKTRACE=1` (as CI sets it), expecting it to fail at start: its
/// stderr, after checking it is a user's error (a failed exit, a few lines, no backtrace).
fn serve_fails(config: &str, admin: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pools.yaml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(WEIR)
        .args(["serve", "--config"])
        .arg(&path)
        .args(["--http-addr", "127.0.0.1:0", "--https-addr", "127.0.0.1:0"])
        .args(["--admin-addr", admin])
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("weir runs");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    assert!(!err.to_lowercase().contains("stack backtrace"), "{err}");
    let lines = err.lines().count();
    assert!(lines <= 4, "{lines} lines:\n{err}");
    err
}

#[test]
fn a_bad_first_config_is_a_clear_error_and_a_failed_exit() {
    let err = serve_fails(NO_BACKENDS, "127.0.0.1:0");
    assert!(
        err.contains("document 1 (LoadBalancerPool default/web): spec.backends: must list at least one backend"),
        "{err}"
    );
}

/// A user's mistake is a message, not a crash report: even with `RUST_BACKTRACE=1` stderr
/// holds the error and its causes (checked by `serve_fails`), and the exit is a failure.
#[test]
fn a_user_error_prints_no_backtrace_even_with_rust_backtrace_set() {
    let err = serve_fails(NO_BACKENDS, "127.0.0.1:0");
    assert!(err.contains("must list at least one backend"), "{err}");
}

/// A listener that cannot bind names its address, so the user knows which flag to change.
#[test]
fn a_port_in_use_is_named_in_the_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = serve_fails("", &addr);
    assert!(
        err.contains(&addr),
        "the error does not name {addr}:\n{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish() {
    let backend = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pools.yaml");
    let config = Config::default()
        .service("web", &[backend.addr])
        .pool("web", "", &[("web", 1)]);
    std::fs::write(&path, config.yaml()).unwrap();
    let (http, admin) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let mut weir = serve(&path, &http, &admin, &["--shutdown-grace", "10s"]);
    wait_ready(&admin).await;

    let listen = http.clone();
    let url = format!("http://{http}/slow?ms=1500");
    let in_flight = tokio::spawn(async move { get(&http1_client(), &url, "shop.test").await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    weir.signal("TERM");
    let (status, body) = in_flight
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!((status, body.as_str()), (StatusCode::OK, "b"));
    let exit = tokio::task::spawn_blocking(move || {
        let status = weir.wait_exit(Duration::from_secs(10));
        (status, weir)
    })
    .await
    .unwrap();
    assert!(
        exit.0.is_some_and(|s| s.success()),
        "weir exits cleanly: {:?}",
        exit.0
    );
    // And it no longer listens.
    assert!(std::net::TcpStream::connect(&listen).is_err());
    assert!(std::net::TcpStream::connect(&admin).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reloads_its_file() {
    let a = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pools.yaml");
    let config = Config::default()
        .service("web", &[a.addr])
        .pool("web", "one.test", &[("web", 1)]);
    std::fs::write(&path, config.yaml()).unwrap();
    let (http, admin) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let mut weir = serve(&path, &http, &admin, &[]);
    wait_ready(&admin).await;
    let client = http1_client();
    let url = format!("http://{http}/");
    assert_eq!(
        get(&client, &url, "one.test").await.unwrap().0,
        StatusCode::OK
    );
    let moved = Config::default()
        .service("web", &[a.addr])
        .pool("web", "two.test", &[("web", 1)]);
    std::fs::write(&path, moved.yaml()).unwrap();
    let mut status = StatusCode::NOT_FOUND;
    for _ in 0..100 {
        status = get(&client, &url, "two.test").await.unwrap().0;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        get(&client, &url, "one.test").await.unwrap().0,
        StatusCode::NOT_FOUND
    );
    weir.signal("INT");
    assert!(
        weir.wait_exit(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_three_backends_in_turn() {
    let (http, admin) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let child = Command::new(WEIR)
        .args(["demo", "--http-addr", &http, "--admin-addr", &admin])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("weir demo starts");
    let mut demo = Process(child);
    wait_ready(&admin).await;
    let client = http1_client();
    let mut seen = Vec::new();
    for _ in 0..6 {
        let (status, body) = get(&client, &format!("http://{http}/try"), "localhost")
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
        seen.push(body.split(':').next().unwrap_or_default().to_string());
    }
    assert_eq!(seen[..3], seen[3..]);
    let mut first = seen[..3].to_vec();
    first.sort();
    assert_eq!(
        first,
        [
            "hello from backend-1",
            "hello from backend-2",
            "hello from backend-3"
        ]
    );
    demo.signal("TERM");
    assert!(
        demo.wait_exit(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
}

/// The cookie value in a `Set-Cookie` header.
fn cookie_value(resp: &http::Response<hyper::body::Incoming>) -> Option<String> {
    let sc = resp.headers().get("set-cookie")?.to_str().ok()?;
    Some(sc.split(';').next()?.split_once('=')?.1.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sharing_a_key_file_pin_a_cookie_to_the_same_endpoint() {
    let backends: Vec<Backend> = Backend::start_many(4).await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pools.yaml");
    let key = dir.path().join("affinity.key");
    std::fs::write(&key, "a shared key for every replica of weir\n").unwrap();
    let config = Config::default().service("web", &addrs).pool_with(
        "web",
        "",
        &[("web", 1)],
        "  sessionAffinity:\n    cookie: { name: sticky }\n",
    );
    std::fs::write(&path, config.yaml()).unwrap();
    let key_arg = key.to_str().unwrap();
    let ports: Vec<(String, String)> = (0..2)
        .map(|_| {
            (
                format!("127.0.0.1:{}", free_port()),
                format!("127.0.0.1:{}", free_port()),
            )
        })
        .collect();
    let _replicas: Vec<Process> = ports
        .iter()
        .map(|(http, admin)| serve(&path, http, admin, &["--affinity-key-file", key_arg]))
        .collect();
    for (_, admin) in &ports {
        wait_ready(admin).await;
    }
    let client = http1_client();
    for _ in 0..8 {
        // A new session on replica A ...
        let req = http::Request::get(format!("http://{}/", ports[0].0))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        let value = cookie_value(&resp).expect("replica A sets a cookie");
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        // ... continues on replica B, on the same endpoint, without a new cookie.
        let req = http::Request::get(format!("http://{}/", ports[1].0))
            .header("cookie", format!("sticky={value}"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(
            cookie_value(&resp),
            None,
            "replica B accepts replica A's cookie"
        );
        let body_b = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(body_b, body);
    }
}

#[test]
fn a_short_affinity_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pools.yaml");
    std::fs::write(&path, "").unwrap();
    let key = dir.path().join("k");
    std::fs::write(&key, "short").unwrap();
    let out = Command::new(WEIR)
        .args(["serve", "--config"])
        .arg(&path)
        .args([
            "--http-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--affinity-key-file",
        ])
        .arg(&key)
        .output()
        .expect("weir runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs at least 16"));
}

#[test]
fn check_prints_the_conditions_pools_would_get() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    let config = Config::default()
        .service("web", &["127.0.0.1:8080".parse().unwrap()])
        .pool("web", "shop.test", &[("web", 1)]);
    std::fs::write(&good, config.yaml()).unwrap();
    let out = Command::new(WEIR)
        .args(["check", "-f"])
        .arg(&good)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("test/web  hosts: shop.test"), "{text}");
    assert!(
        text.contains("Accepted=True") && text.contains("Ready=True"),
        "{text}"
    );

    let bad = dir.path().join("bad.yaml");
    let broken = config.pool("ghost", "ghost.test", &[("nothing", 1)]);
    std::fs::write(&bad, broken.yaml()).unwrap();
    let out = Command::new(WEIR)
        .args(["check", "-f"])
        .arg(&bad)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("ResolvedRefs=False BackendNotFound: Service test/nothing not found"),
        "{text}"
    );
}

/// A Service `web` in `ns` with one endpoint, and a pool `name` there claiming `host`.
fn namespaced_pool(ns: &str, name: &str, host: &str, backend: std::net::SocketAddr) -> String {
    use weir::testkit::{backend_slice, pool, route_spec, service, to_document};
    [
        to_document(&service(ns, "web", &[("http", 80)])),
        to_document(&backend_slice(
            ns,
            "web",
            "web-1",
            &endpoint(backend, EndpointState::Ready),
        )),
        to_document(&pool(ns, name, route_spec(host, "/", "web"))),
    ]
    .join("---\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_hosts_keeps_a_namespace_off_another_teams_host() {
    let shop = Backend::start("shop").await;
    let squat = Backend::start("squat").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pools.yaml");
    // Both claim shop.test; without a policy the first by name (a-squat) would hold it.
    std::fs::write(
        &file,
        format!(
            "{}---\n{}",
            namespaced_pool("a-squat", "grab", "shop.test", squat.addr),
            namespaced_pool("shop", "web", "shop.test", shop.addr)
        ),
    )
    .unwrap();
    let (http, admin) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let _weir = serve(
        &file,
        &http,
        &admin,
        &["--allow-hosts", "shop=shop.test,*.shop.test"],
    );
    wait_ready(&admin).await;
    let client = http1_client();
    for _ in 0..4 {
        let (status, body) = get(&client, &format!("http://{http}/"), "shop.test")
            .await
            .unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::OK, "shop"));
    }
    let (_, pools) = get(&client, &format!("http://{admin}/pools"), "admin")
        .await
        .unwrap();
    assert!(pools.contains("HostNotAllowed"), "{pools}");

    // `check` judges the file by the policy it will be served under.
    let out = Command::new(WEIR)
        .args(["check", "-f"])
        .arg(&file)
        .args(["--allow-hosts", "shop=shop.test,*.shop.test"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("a-squat/grab") && text.contains("Accepted=False HostNotAllowed"),
        "{text}"
    );
    let open = Command::new(WEIR)
        .args(["check", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&open.stdout).contains("HostNotAllowed"));

    // A malformed rule is a user's error, named.
    let out = Command::new(WEIR)
        .args(["serve", "--config"])
        .arg(&file)
        .args(["--allow-hosts", "shop"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--allow-hosts") && err.contains("NAMESPACE=HOST"),
        "{err}"
    );
}

/// Colour codes are for a terminal: a log written to a file (or a pod's log) has none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_is_not_a_terminal_has_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (config, log) = (dir.path().join("pools.yaml"), dir.path().join("weir.log"));
    std::fs::write(&config, "").unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let child = Command::new(WEIR)
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--http-addr", "127.0.0.1:0", "--https-addr", "127.0.0.1:0"])
        .args(["--admin-addr", &admin, "--log-level", "debug"])
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("weir starts");
    let mut weir = common::process::Process(child);
    wait_ready(&admin).await;
    weir.signal("TERM");
    assert!(weir.wait_exit(Duration::from_secs(10)).is_some());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("INFO"), "nothing logged: {text}");
    assert!(!text.contains('\x1b'), "colour codes in a file: {text:?}");
}
