//! Gateway API routing of one request: the socket's rules pick a rule, whose filters redirect
//! it or edit it, and whose backends pick the pool it goes to.

use super::{Scheme, ingress, local};
use crate::proxy::ProxyBody;
use crate::routing::gateway::GatewayPort;
use crate::routing::gateway::{RequestFacts, RouteRule};
use crate::routing::{Pool, RoutingTable, normalize_host};
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Where a request goes: a pool, and the rule that chose it (whose response filters apply).
pub(super) struct Routed {
    pub pool: Arc<Pool>,
    pub rule: Option<Arc<RouteRule>>,
}

/// Routes `req`, which arrived on the Gateway socket `socket`, for `host`; applies the rule's
/// request filters to it. `Err`: weir answers itself (no route, a redirect, or a rule whose
/// backends do not resolve); boxed, as the answer is large and the route is the usual case.
pub(super) fn route<B>(
    table: &RoutingTable,
    socket: SocketAddr,
    scheme: Scheme,
    host: &str,
    client: IpAddr,
    req: &mut Request<B>,
) -> Result<Routed, Box<Response<ProxyBody>>> {
    match table.gateway_port(&socket) {
        Some(port) => route_on(port, scheme, host, client, req),
        None => Err(not_found()),
    }
}

/// A request whose target is rewritten to origin form keeps the host it was routed on: the pod
/// reads it from `Host`, which an HTTP/2 or absolute-form request may not carry.
pub(super) fn keep_host<B>(req: &mut Request<B>, host: &str) {
    if !req.headers().contains_key(header::HOST)
        && let Ok(h) = HeaderValue::from_str(host)
    {
        req.headers_mut().insert(header::HOST, h);
    }
}

fn not_found() -> Box<Response<ProxyBody>> {
    Box::new(local(
        StatusCode::NOT_FOUND,
        "no route for this host and path\n",
    ))
}

/// Routes `req` by the rules of `port` (a Gateway socket's, or the Ingresses' on weir's own
/// listeners).
pub(super) fn route_on<B>(
    port: &GatewayPort,
    scheme: Scheme,
    host: &str,
    client: IpAddr,
    req: &mut Request<B>,
) -> Result<Routed, Box<Response<ProxyBody>>> {
    let facts = RequestFacts {
        host,
        method: req.method(),
        path: req.uri().path(),
        query: req.uri().query(),
        headers: req.headers(),
    };
    let Some(found) = port.route(&facts) else {
        return Err(not_found());
    };
    let rule = found.rule.clone();
    if let Some(ingress) = &rule.ingress {
        return ingress::route(ingress, &rule, scheme, host, client, req);
    }
    // Borrowed from the table, which outlives this call: no copy per request.
    let prefix = found.matcher.prefix();
    let filters = &rule.filters;
    if let Some(redirect) = &filters.redirect {
        let name = normalize_host(host);
        let (status, location) = redirect.answer(
            scheme.as_str(),
            &name,
            // The listener's port, which the client reached (in service mode the socket's is
            // the pod port behind the Service).
            port.listener_port,
            req.uri().path(),
            req.uri().query(),
            prefix,
        );
        let mut response = local(status, "");
        response.headers_mut().insert(header::LOCATION, location);
        return Err(Box::new(response));
    }
    if let Some(edit) = &filters.request_headers {
        edit.apply(req.headers_mut());
    }
    if let Some(rewrite) = &filters.rewrite {
        let (new_host, target) = rewrite.apply(req.uri().path(), req.uri().query(), prefix);
        // Origin form: the pod reads the host from `Host`, which the rewrite may have set.
        *req.uri_mut() = Uri::from(target);
        match new_host {
            Some(h) => {
                req.headers_mut().insert(header::HOST, h);
            }
            None => keep_host(req, host),
        }
    }
    match rule.backends.pick() {
        Some(pool) => Ok(Routed {
            pool: pool.clone(),
            rule: Some(rule.clone()),
        }),
        None => Err(Box::new(local(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the route's backends do not resolve\n",
        ))),
    }
}
