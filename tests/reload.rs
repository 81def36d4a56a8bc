//! Configuration changes while traffic flows: the file source, the table swap.

mod common;

use common::*;
use http::StatusCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use weir::store::Store;

/// Writes the file the way editors and config management do: a new file renamed over the old.
fn write_atomically(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, path).expect("rename config");
}

/// weir fed by `file::watch` on a real file, as `weir serve` runs it.
async fn weir_on_file(path: &std::path::Path, config: &Config) -> Weir {
    write_atomically(path, &config.yaml());
    let weir = Weir::start(config).await;
    let metrics = weir.running.admin.metrics.clone();
    let feed: watch::Sender<Arc<Store>> = weir.feed.clone();
    tokio::spawn(weir::source::file::watch(
        path.to_path_buf(),
        Duration::from_millis(50),
        feed,
        None,
        move |_| {
            metrics.config_errors.inc();
        },
    ));
    weir
}

/// weir following a file at `path` that routes `shop.test` to one backend (answering "b"),
/// that backend, and the file's configuration.
async fn weir_on_shop_file(path: &std::path::Path) -> (Weir, Backend, Config) {
    let b = Backend::start("b").await;
    let good = Config::default()
        .service("web", &[b.addr])
        .pool("web", "shop.test", &[("web", 1)]);
    let weir = weir_on_file(path, &good).await;
    (weir, b, good)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_change_under_load_drops_nothing_and_moves_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pools.yaml");
    let old = Backend::start("old").await;
    let new = Backend::start("new").await;
    let before =
        Config::default()
            .service("web", &[old.addr])
            .pool("web", "shop.test", &[("web", 1)]);
    let weir = weir_on_file(&path, &before).await;

    // Bounded: at most 5000 requests per client.
    let load = Load::start(weir.url("/"), "shop.test", 4, 5000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = Config::default()
        .service("web", &[old.addr, new.addr])
        .pool("web", "shop.test", &[("web", 1)]);
    write_atomically(&path, &after.yaml());
    // Wait for the new backend to take traffic, then a little more load.
    for _ in 0..100 {
        if new.hits() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, failed) = load.finish().await;
    eprintln!(
        "requests: {ok} ok, {failed} failed; new backend got {}",
        new.hits()
    );
    assert_eq!(failed, 0);
    assert!(ok > 100, "only {ok} requests went through");
    assert!(new.hits() > 0, "the new backend never got traffic");
    weir.running.shutdown().await;
}

#[tokio::test]
async fn a_broken_file_keeps_the_last_good_table_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pools.yaml");
    let (weir, b, good) = weir_on_shop_file(&path).await;
    let client = http1_client();
    assert_eq!(
        get(&client, &weir.url("/"), "shop.test").await.unwrap().0,
        StatusCode::OK
    );

    let broken = [
        "kind: [unclosed\n".to_string(),
        good.yaml().replace("weight: 1", "weight: -5"),
        good.yaml()
            .replace("algorithm", "x")
            .replace("routes:", "algorithm: Fastest\n  routes:"),
        String::from_utf8_lossy(&[0xff, 0xfe, 0x00, 0x41]).into_owned(),
    ];
    for (i, text) in broken.iter().enumerate() {
        write_atomically(&path, text);
        // Long enough for several polls.
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (status, body) = get(&client, &weir.url("/"), "shop.test").await.unwrap();
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "b"),
            "after broken file {i}"
        );
        let errors = weir.running.admin.metrics.config_errors.get();
        assert_eq!(errors, i as u64 + 1, "each refused file is counted once");
    }
    // A good file again takes effect.
    let fixed =
        Config::default()
            .service("web", &[b.addr])
            .pool("web", "fixed.test", &[("web", 1)]);
    write_atomically(&path, &fixed.yaml());
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        get(&client, &weir.url("/"), "fixed.test").await.unwrap().0,
        StatusCode::OK
    );
    assert_eq!(
        get(&client, &weir.url("/"), "shop.test").await.unwrap().0,
        StatusCode::NOT_FOUND
    );
    weir.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_requests_finish_on_the_table_they_started_with() {
    let b = Backend::start("b").await;
    let config =
        Config::default()
            .service("web", &[b.addr])
            .pool("web", "shop.test", &[("web", 1)]);
    let weir = Weir::start(&config).await;
    let client = http1_client();
    let url = weir.url("/slow?ms=500");
    let pending = tokio::spawn(async move { get(&client, &url, "shop.test").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The pool disappears while the request is in flight.
    weir.feed.send(Arc::new(Store::default())).unwrap();
    let (status, body) = pending.await.unwrap().unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "b"));
    weir.running.shutdown().await;
}

/// A deleted file is a configuration error like any other (counted, the last good table keeps
/// serving), and a file that comes back is read and served, even when it comes back empty.
#[tokio::test]
async fn a_deleted_file_is_reported_and_one_that_comes_back_empty_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pools.yaml");
    let (weir, _backend, _) = weir_on_shop_file(&path).await;
    let client = http1_client();
    let errors = || weir.running.admin.metrics.config_errors.get();

    std::fs::remove_file(&path).unwrap();
    // Long enough for several polls: counted once, not once a poll.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(errors(), 1, "a missing file is a configuration error");
    assert_eq!(
        get(&client, &weir.url("/"), "shop.test").await.unwrap().0,
        StatusCode::OK,
        "the last good table keeps serving"
    );

    // Empty is what someone wrote: no pools.
    write_atomically(&path, "");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        get(&client, &weir.url("/"), "shop.test").await.unwrap().0,
        StatusCode::NOT_FOUND,
        "the empty file was never served"
    );
    assert_eq!(errors(), 1);

    // And empty → missing is reported too.
    std::fs::remove_file(&path).unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(errors(), 2, "an empty file going missing was not reported");
    weir.running.shutdown().await;
}
