//! `weir demo`: three small backends on loopback and a pool in front of them, in one command.
//! Nothing is written to disk; the pool is the same YAML a user would give `weir serve`.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use tokio::net::TcpListener;

/// Starts `n` backends that answer with their name, on 127.0.0.1, 127.0.0.2, … and one
/// shared port (as pods of one Service share a target port). Returns that port.
pub async fn start_backends(n: u8) -> std::io::Result<u16> {
    // The first address picks a free port; the others take the same port on their own IP.
    for _ in 0..20 {
        let first = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 1), 0)).await?;
        let port = first.local_addr()?.port();
        let mut listeners = vec![first];
        for i in 2..=n {
            match TcpListener::bind((Ipv4Addr::new(127, 0, 0, i), port)).await {
                Ok(l) => listeners.push(l),
                Err(_) => break,
            }
        }
        if listeners.len() == usize::from(n) {
            for (i, listener) in listeners.into_iter().enumerate() {
                tokio::spawn(backend(listener, format!("backend-{}", i + 1)));
            }
            return Ok(port);
        }
    }
    Err(std::io::Error::other("no port free on 127.0.0.1-127.0.0.3"))
}

async fn backend(listener: TcpListener, name: String) {
    let builder = auto::Builder::new(TokioExecutor::new());
    while let Ok((stream, _)) = listener.accept().await {
        let name = name.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let text = format!("hello from {name}: {} {}\n", req.method(), req.uri().path());
            async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text)))) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(connection);
    }
}

/// The demo's objects, as a `weir serve` file: a Service, its EndpointSlice and a pool.
pub fn config(port: u16, backends: u8) -> String {
    let endpoints: String = (1..=backends)
        .map(|i| {
            let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, i));
            format!(
                "  - addresses: [\"{ip}\"]\n    conditions: {{ ready: true }}\n    targetRef: {{ kind: Pod, namespace: demo, name: web-{i} }}\n"
            )
        })
        .collect();
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{ name: web, namespace: demo }}
spec:
  ports: [{{ name: http, port: 80, targetPort: {port} }}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-demo
  namespace: demo
  labels: {{ kubernetes.io/service-name: web }}
addressType: IPv4
ports: [{{ name: http, port: {port} }}]
endpoints:
{endpoints}---
apiVersion: weir.dev/v1alpha1
kind: LoadBalancerPool
metadata: {{ name: web, namespace: demo }}
spec:
  routes: [{{ host: "", pathPrefix: / }}]
  backends: [{{ service: web, port: http }}]
  algorithm: RoundRobin
"#
    )
}

/// What to try, printed once the demo is up.
pub fn instructions(http: SocketAddr, admin: SocketAddr) -> String {
    format!(
        "weir demo: 3 backends behind a round-robin pool\n\
         \n  curl http://{http}/            # run it a few times: backend-1, 2, 3, 1, ...\n  \
         for i in 1 2 3 4 5 6; do curl -s http://{http}/hello; done\n  \
         curl --http2-prior-knowledge http://{http}/   # HTTP/2 without TLS\n  \
         curl http://{admin}/metrics     # requests by pool and status\n  \
         curl http://{admin}/readyz\n\
         \n  weir demo --print-config shows the pool as a `weir serve --config` file.\n  \
         Ctrl-C stops it.\n"
    )
}
