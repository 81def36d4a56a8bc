//! Bodies stream through weir; they are never buffered whole. This file is its own test binary
//! so nothing else runs beside it while it reads the process's memory.

mod common;

use bytes::Bytes;
use common::*;
use http::StatusCode;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::convert::Infallible;

const BODY: u64 = 64 * 1024 * 1024;

/// Resident memory of this process (client, weir and backend together), in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mebibytes_each_way_with_flat_memory() {
    let backend = Backend::start("b").await;
    let config = Config::default()
        .service("web", &[backend.addr])
        .pool("web", "", &[("web", 1)]);
    let weir = Weir::start(&config).await;
    // Warm up the connection pools and allocator before the baseline.
    let client = http1_client();
    assert_eq!(
        get(&client, &weir.url("/bytes?n=1048576"), "x")
            .await
            .unwrap()
            .0,
        StatusCode::OK
    );
    let baseline = rss();

    // Download: the backend streams 64 MiB; count it as it arrives.
    let req = http::Request::get(weir.url(&format!("/bytes?n={BODY}")))
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.expect("download response");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut received = 0u64;
    let mut peak = baseline;
    while let Some(frame) = body.frame().await {
        received += frame
            .expect("download frame")
            .data_ref()
            .map_or(0, |d| d.len() as u64);
        if received % (8 * 1024 * 1024) < 65536 {
            peak = peak.max(rss());
        }
    }
    assert_eq!(received, BODY);

    // Upload: 64 MiB generated on the fly; the backend counts what it gets.
    let chunk = Bytes::from(vec![b'y'; 64 * 1024]);
    let stream = futures_util::stream::iter(
        (0..BODY / chunk.len() as u64)
            .map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone()))),
    );
    let upload: Client<_, StreamBody<_>> = Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::post(weir.url("/count"))
        .body(StreamBody::new(stream))
        .unwrap();
    let resp = upload.request(req).await.expect("upload response");
    peak = peak.max(rss());
    let counted = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(String::from_utf8_lossy(&counted), BODY.to_string());

    let grew = peak.saturating_sub(baseline);
    eprintln!(
        "baseline RSS {} MiB, peak {} MiB, growth {} KiB",
        baseline >> 20,
        peak >> 20,
        grew >> 10
    );
    // Buffering either body would add 64 MiB; streaming keeps it to socket buffers and a few
    // chunks in flight.
    assert!(grew < 16 * 1024 * 1024, "memory grew by {} MiB", grew >> 20);
    weir.running.shutdown().await;
}
