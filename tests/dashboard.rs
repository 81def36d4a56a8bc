//! The admin dashboard: its JSON feed over HTTP, exactly, and the page itself in a real
//! headless Chromium driven over WebDriver (chromedriver, spoken to with hyper).

mod common;

use bytes::Bytes;
use common::*;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HTTP_CHECK: &str = "  healthCheck:\n    http: { path: /healthz }\n    intervalSeconds: 1\n    timeoutSeconds: 1\n    healthyThreshold: 1\n    unhealthyThreshold: 2\n";

/// Three pools: `web` (two Services weighted 90/10, HTTP checks), `api`, and `broken`, whose
/// Service does not exist.
fn config(a: &Backend, b: &Backend, c: &Backend) -> Config {
    Config::default()
        .service("web-main", &[a.addr])
        .service("web-canary", &[b.addr])
        .service("api", &[c.addr])
        .pool_with(
            "web",
            "web.test",
            &[("web-main", 90), ("web-canary", 10)],
            HTTP_CHECK,
        )
        .pool("api", "api.test", &[("api", 1)])
        .pool("broken", "broken.test", &[("missing", 1)])
}

async fn fetch(method: &str, url: &str) -> (StatusCode, http::HeaderMap, String) {
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(10), http1_client().request(req))
        .await
        .expect("in time")
        .expect("response");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

async fn feed(weir: &Weir, query: &str) -> Value {
    let (status, headers, body) =
        fetch("GET", &weir.admin_url(&format!("/dashboard.json{query}"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    serde_json::from_str(&body).expect("feed is JSON")
}

fn pool<'a>(feed: &'a Value, name: &str) -> &'a Value {
    feed["pools"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("{name} not in {feed}"))
}

fn endpoint(pool: &Value, addr: std::net::SocketAddr) -> &Value {
    pool["endpoints"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["address"] == addr.to_string()))
        .unwrap_or_else(|| panic!("{addr} not in {pool}"))
}

async fn send_many(weir: &Weir, host: &str, n: usize) {
    let clients = 4;
    let (ok, failed) = Load::start(weir.url("/"), host, clients, n / clients)
        .join()
        .await;
    assert_eq!((ok, failed), (n, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_reports_known_traffic_exactly_and_pages_problem_pools_first() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let weir = Weir::start(&config(&a, &b, &c)).await;
    send_many(&weir, "web.test", 200).await;
    let client = http1_client();
    for _ in 0..3 {
        assert_eq!(
            get(&client, &weir.url("/"), "api.test").await.unwrap().0,
            StatusCode::OK
        );
    }
    c.set_failing(true);
    for _ in 0..2 {
        assert_eq!(
            get(&client, &weir.url("/"), "api.test").await.unwrap().0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    let f = feed(&weir, "").await;
    let p = &f["process"];
    assert_eq!(p["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(p["tableGeneration"], 1);
    assert_eq!(p["configErrors"], 0);
    assert_eq!(p["ready"], true);
    assert_eq!(p["pools"], 3);
    assert_eq!(p["connectionsRefused"], json!({"http": 0, "https": 0}));
    assert!(
        p["lastRebuildSecondsAgo"]
            .as_i64()
            .is_some_and(|s| (0..60).contains(&s)),
        "{p}"
    );
    assert_eq!(f["matched"], 3);
    assert_eq!(f["history"], json!({"intervalSeconds": 5, "samples": 60}));
    // The pool with a problem comes first, then the others by name.
    let names: Vec<&str> = f["pools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["test/broken", "test/api", "test/web"]);
    let broken = pool(&f, "test/broken");
    assert_eq!(broken["problem"], true);
    assert!(
        broken["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["ok"] == false),
        "{broken}"
    );

    let web = pool(&f, "test/web");
    assert_eq!(web["problem"], false);
    assert_eq!(web["algorithm"], "RoundRobin");
    assert_eq!(web["hosts"], json!(["web.test"]));
    assert_eq!(web["routes"], json!([{"host": "web.test", "path": "/"}]));
    assert_eq!(web["tls"], Value::Null);
    assert_eq!(web["affinity"], Value::Null);
    assert_eq!(web["healthCheck"], true);
    assert_eq!(web["requests"], 200);
    let (ea, eb) = (endpoint(web, a.addr), endpoint(web, b.addr));
    // What the backends saw is what the feed says each endpoint was sent.
    assert_eq!(ea["requests"].as_u64(), Some(a.hits() as u64));
    assert_eq!(eb["requests"].as_u64(), Some(b.hits() as u64));
    assert_eq!(a.hits() + b.hits(), 200);
    let share = |e: &Value| e["share"].as_f64().unwrap();
    assert_eq!(share(ea), (a.hits() as f64 / 200.0 * 1e4).round() / 1e4);
    assert_eq!(
        (ea["backend"].as_str(), ea["weight"].as_u64()),
        (Some("test/web-main"), Some(90))
    );
    assert_eq!(
        (eb["backend"].as_str(), eb["weight"].as_u64()),
        (Some("test/web-canary"), Some(10))
    );
    assert_eq!(ea["state"], "ready");
    assert_eq!(ea["inFlight"], 0);
    assert_eq!(ea["ejectedForSeconds"], Value::Null);
    // The p99 is the upper bound of a power-of-two bucket of microseconds; local backends
    // answer within a second.
    let p99 = ea["latencyP99Ms"]
        .as_f64()
        .expect("a p99 after its requests");
    let micros = (p99 * 1000.0).round() as u64;
    assert!(micros.is_power_of_two() && micros <= 1 << 20, "{p99}");
    // These backends send no load reports: no utilization, no load weight.
    assert_eq!(
        (&ea["utilization"], &ea["loadWeight"]),
        (&Value::Null, &Value::Null)
    );

    // Paging and the filter.
    let page = feed(&weir, "?offset=1&limit=1").await;
    assert_eq!(
        (
            page["matched"].as_u64(),
            page["offset"].as_u64(),
            page["limit"].as_u64()
        ),
        (Some(3), Some(1), Some(1))
    );
    let names: Vec<&str> = page["pools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["test/api"]);
    let found = feed(&weir, "?q=WEB.te").await;
    assert_eq!(found["matched"], 1);
    assert_eq!(found["pools"][0]["name"], "test/web");
    assert_eq!(feed(&weir, "?q=nothing%20here").await["matched"], 0);

    // The sampler's next sample holds the answers and 5xx answers of the interval (5 s).
    let api = eventually(
        "the api pool's sample",
        Duration::from_secs(12),
        async || {
            let f = feed(&weir, "?q=api").await;
            let api = f["pools"][0].clone();
            (api["history"]["answers"].as_array()?.iter().any(|n| n != 0)).then_some(api)
        },
    )
    .await;
    let answers: u64 = api["history"]["answers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_u64())
        .sum();
    let errors: u64 = api["history"]["errors5xx"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_u64())
        .sum();
    assert_eq!((answers, errors), (5, 2));
    let web = feed(&weir, "?q=web").await;
    let answers: u64 = web["pools"][0]["history"]["answers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_u64())
        .sum();
    assert_eq!(answers, 200);

    // Read-only, and the files of the page are served from the binary.
    let (status, headers, html) = fetch("GET", &weir.admin_url("/")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    assert!(html.contains("/dashboard/app.js"), "{html}");
    for path in ["/dashboard/app.js", "/dashboard/style.css"] {
        let (status, _, body) = fetch("GET", &weir.admin_url(path)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(!body.is_empty());
        // The one absolute URL is SVG's namespace name, which is never fetched.
        let body = body.replace("http://www.w3.org/2000/svg", "");
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path} fetches nothing else"
        );
    }
    let (status, _, body) = fetch("HEAD", &weir.admin_url("/dashboard.json")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    for method in ["POST", "PUT", "DELETE"] {
        assert_eq!(
            fetch(method, &weir.admin_url("/dashboard.json")).await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            fetch(method, &weir.admin_url("/")).await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
    // Never on the ingress listener: there `/dashboard.json` is a request like any other.
    let (status, _) = get(&client, &weir.url("/dashboard.json"), "nowhere.test")
        .await
        .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The first of `names` on PATH.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// chromedriver, stopped by its PID when dropped (test passed or not).
struct Driver {
    child: Child,
    base: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebDriver session, spoken to as W3C JSON over HTTP.
struct Session {
    base: String,
    client: HttpClient,
}

async fn webdriver(
    client: &HttpClient,
    method: &str,
    url: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .map_err(|_| format!("{method} {url}: timed out"))?
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| format!("{method} {url}: {e}: {}", String::from_utf8_lossy(&body)))?;
    if !status.is_success() {
        return Err(format!("{method} {url}: {status}: {v}"));
    }
    Ok(v["value"].clone())
}

impl Driver {
    /// Starts chromedriver on a free loopback port; fails, saying what to install, when
    /// Chromium or chromedriver is missing.
    async fn start(dir: &Path) -> (Driver, PathBuf) {
        let (Some(browser), Some(driver)) = (
            on_path(&["chromium", "chromium-browser", "google-chrome"]),
            on_path(&["chromedriver"]),
        ) else {
            panic!(
                "the dashboard test drives a real browser: install Chromium and chromedriver \
                 (Debian/Ubuntu: apt-get install -y chromium chromium-driver) and run it again"
            );
        };
        let port = free_port();
        let log = std::fs::File::create(dir.join("chromedriver.log")).expect("log file");
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = http1_client();
        eventually("chromedriver ready", Duration::from_secs(15), async || {
            let status = webdriver(&client, "GET", &format!("{}/status", driver.base), None)
                .await
                .ok()?;
            (status["ready"] == true).then_some(())
        })
        .await;
        (driver, browser)
    }

    async fn session(&self, browser: &Path, dir: &Path) -> Session {
        let client = http1_client();
        let profile = dir.join("profile");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": browser,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1200,820", "--no-first-run", "--no-default-browser-check",
                         format!("--user-data-dir={}", profile.display())],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let created = webdriver(
            &client,
            "POST",
            &format!("{}/session", self.base),
            Some(caps),
        )
        .await
        .expect("a browser session");
        let id = created["sessionId"]
            .as_str()
            .expect("session id")
            .to_string();
        Session {
            base: format!("{}/session/{id}", self.base),
            client,
        }
    }
}

impl Session {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        webdriver(&self.client, method, &format!("{}{path}", self.base), body)
            .await
            .unwrap_or_else(|e| panic!("webdriver: {e}"))
    }

    /// Runs `script` (a function body) in the page; its return value.
    async fn run(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// The browser's console since the last call: `(level, message)`.
    async fn console(&self) -> Vec<(String, String)> {
        let log = self
            .call("POST", "/se/log", Some(json!({"type": "browser"})))
            .await;
        log.as_array()
            .map(|l| {
                l.iter()
                    .map(|e| {
                        (
                            e["level"].as_str().unwrap_or("").to_string(),
                            e["message"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn close(&self) {
        let _ = webdriver(&self.client, "DELETE", &self.base, None).await;
    }
}

/// The rows of pool `name` on the page: address → (state, share percent, bar width).
const ROWS: &str = r#"
const card = document.querySelector(`[data-pool="${arguments[0]}"]`);
if (!card) return null;
return [...card.querySelectorAll("tr[data-endpoint]")].map((r) => ({
  address: r.dataset.endpoint,
  state: r.dataset.state,
  stateText: r.querySelector(".state").textContent,
  share: parseFloat(r.querySelector(".share").dataset.share),
  width: parseFloat(r.querySelector(".fill").style.width),
  requests: parseInt(r.children[6].textContent, 10),
}));
"#;

async fn rows(session: &Session, pool: &str) -> Option<Vec<Value>> {
    let v = session
        .call(
            "POST",
            "/execute/sync",
            Some(json!({"script": ROWS, "args": [pool]})),
        )
        .await;
    v.as_array().cloned()
}

fn row(rows: &[Value], addr: std::net::SocketAddr) -> Option<&Value> {
    rows.iter().find(|r| r["address"] == addr.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_pools_their_traffic_split_and_an_endpoint_failing_its_checks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (driver, browser) = Driver::start(dir.path()).await;
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let weir = Weir::start(&config(&a, &b, &c)).await;
    let session = driver.session(&browser, dir.path()).await;
    // The session is closed (and Chromium with it) whether the checks pass or not.
    let outcome =
        futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(tokio::time::timeout(
            Duration::from_secs(90),
            drive(&session, &weir, &a, &b, dir.path()),
        )))
        .await;
    session.close().await;
    drop(driver);
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(_)) => panic!("the browser test took over 90 s"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

async fn drive(session: &Session, weir: &Weir, a: &Backend, b: &Backend, dir: &Path) {
    session
        .call("POST", "/url", Some(json!({"url": weir.admin_url("/")})))
        .await;
    let title = session.call("GET", "/title", None).await;
    assert_eq!(title, "weir");

    // Every pool is listed, the one with a problem first and marked.
    let listed = eventually("the pools on the page", Duration::from_secs(10), async || {
        let v = session
            .run("return [...document.querySelectorAll('[data-pool]')].map((p) => [p.dataset.pool, p.classList.contains('problem')]);")
            .await;
        let v = v.as_array()?.clone();
        (v.len() == 3).then_some(v)
    })
    .await;
    assert_eq!(
        listed,
        [
            json!(["test/broken", true]),
            json!(["test/api", false]),
            json!(["test/web", false])
        ]
    );
    let process = session
        .run("return document.getElementById('process').textContent;")
        .await;
    let process = process.as_str().unwrap_or_default();
    assert!(
        process.contains(env!("CARGO_PKG_VERSION")) && process.contains("table generation"),
        "{process}"
    );

    // A bounded burst, then the bars settle on the 90/10 split the weights ask for.
    send_many(weir, "web.test", 1000).await;
    let split = eventually(
        "the bars follow 90/10",
        Duration::from_secs(10),
        async || {
            let rows = rows(session, "test/web").await?;
            let (ra, rb) = (row(&rows, a.addr)?, row(&rows, b.addr)?);
            let total = ra["requests"].as_u64()? + rb["requests"].as_u64()?;
            (total == 1000).then(|| (ra.clone(), rb.clone()))
        },
    )
    .await;
    // The settled bars show the split since each endpoint joined (no traffic since the last poll).
    let (ra, rb) = &split;
    eventually(
        "bars of the whole burst",
        Duration::from_secs(5),
        async || {
            let rows = rows(session, "test/web").await?;
            let (ra, rb) = (row(&rows, a.addr)?, row(&rows, b.addr)?);
            let sum = ra["share"].as_f64()? + rb["share"].as_f64()?;
            ((sum - 100.0).abs() < 0.2).then_some(())
        },
    )
    .await;
    let rows_now = rows(session, "test/web").await.expect("rows");
    let (ra, rb) = (
        row(&rows_now, a.addr).unwrap_or(ra),
        row(&rows_now, b.addr).unwrap_or(rb),
    );
    for (r, want) in [(ra, 90.0), (rb, 10.0)] {
        let (share, width) = (r["share"].as_f64().unwrap(), r["width"].as_f64().unwrap());
        assert!((share - want).abs() <= 7.0, "share {share} vs {want}: {r}");
        assert!((width - share).abs() < 0.2, "bar width {width} vs {share}");
    }
    assert_eq!(ra["requests"].as_u64(), Some(a.hits() as u64));
    assert_eq!(ra["state"], "ready");

    // The canary fails its check: within a few seconds its row says so.
    b.set_healthy(false);
    let failed_at = Instant::now();
    let text = eventually(
        "the canary shown failing its checks",
        Duration::from_secs(8),
        async || {
            let rows = rows(session, "test/web").await?;
            let r = row(&rows, b.addr)?;
            (r["state"] == "failing").then(|| r["stateText"].clone())
        },
    )
    .await;
    assert_eq!(text, "failing checks");
    eprintln!(
        "the page showed the failing check {:?} after the backend turned",
        failed_at.elapsed()
    );
    let other = rows(session, "test/web").await.expect("rows");
    assert_eq!(
        row(&other, a.addr).map(|r| r["state"].clone()),
        Some(json!("ready"))
    );

    // The filter narrows the list without a reload.
    session
        .run("const s = document.getElementById('search'); s.value = 'api'; s.dispatchEvent(new Event('input')); return null;")
        .await;
    eventually("the filtered list", Duration::from_secs(5), async || {
        let v = session
            .run("return [...document.querySelectorAll('[data-pool]')].map((p) => p.dataset.pool);")
            .await;
        (v == json!(["test/api"])).then_some(())
    })
    .await;
    session
        .run("const s = document.getElementById('search'); s.value = ''; s.dispatchEvent(new Event('input')); return null;")
        .await;
    eventually("the whole list again", Duration::from_secs(5), async || {
        let v = session
            .run("return document.querySelectorAll('[data-pool]').length;")
            .await;
        (v == 3).then_some(())
    })
    .await;

    let png = session.call("GET", "/screenshot", None).await;
    let png = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        png.as_str().expect("base64 screenshot"),
    )
    .expect("a PNG");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(dir.join("dashboard.png"), &png).expect("screenshot written");
    if let Some(copy) = std::env::var_os("WEIR_DASHBOARD_SCREENSHOT") {
        std::fs::write(copy, &png).expect("screenshot copied");
    }

    let errors: Vec<_> = session
        .console()
        .await
        .into_iter()
        .filter(|(level, _)| level == "SEVERE" || level == "WARNING")
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}
