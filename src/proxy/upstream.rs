//! Keep-alive connection pools to pods.
//!
//! One hyper client per distinct timeout setting; each keeps a pool of idle connections per
//! endpoint address. Pools live outside the routing table, so a table swap keeps them.

use super::request_body::AttemptBody;
use crate::api::Timeouts;
use arc_swap::ArcSwap;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub type UpstreamClient = Client<HttpConnector, AttemptBody>;

/// Idle connections kept per endpoint.
const MAX_IDLE_PER_ENDPOINT: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    connect_millis: u32,
    idle_seconds: u32,
    h2c: bool,
}

#[derive(Default)]
pub struct Upstreams {
    clients: ArcSwap<HashMap<Key, UpstreamClient>>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams")
            .field("clients", &self.clients.load().len())
            .finish()
    }
}

impl Upstreams {
    /// Sends a request upstream with the pool's connect and idle settings. The request's URI
    /// names the endpoint (`http://10.0.0.1:8080/path`).
    pub fn request(
        &self,
        timeouts: &Timeouts,
        h2c: bool,
        req: http::Request<AttemptBody>,
    ) -> hyper_util::client::legacy::ResponseFuture {
        let key = Key {
            connect_millis: timeouts.connect_millis,
            idle_seconds: timeouts.idle_seconds,
            h2c,
        };
        if let Some(client) = self.clients.load().get(&key) {
            return client.request(req);
        }
        // First request with these settings: add a client. Rare, so copying the map is fine.
        let client = new_client(key);
        self.clients.rcu(|clients| {
            let mut clients = HashMap::clone(clients);
            clients.entry(key).or_insert_with(|| client.clone());
            clients
        });
        client.request(req)
    }
}

fn new_client(key: Key) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_millis(key.connect_millis.into())));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(key.idle_seconds.into()))
        .pool_max_idle_per_host(MAX_IDLE_PER_ENDPOINT)
        .http2_only(key.h2c)
        .build(connector)
}

pub(super) fn shared() -> Arc<Upstreams> {
    Arc::new(Upstreams::default())
}
