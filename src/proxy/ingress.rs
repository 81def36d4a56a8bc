//! Ingress routing of one request, after its rule is found: the annotations that answer
//! before a pod is asked (source ranges 403, the https redirect, fixed redirects, `app-root`),
//! the canary's choice, and `rewrite-target`.

use super::gateway::{Routed, keep_host};
use super::{ProxyBody, Scheme, local};
use crate::routing::gateway::RouteRule;
use crate::routing::ingress::IngressRule;
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use std::net::IpAddr;
use std::sync::Arc;

pub(super) fn route<B>(
    ingress: &IngressRule,
    rule: &Arc<RouteRule>,
    scheme: Scheme,
    host: &str,
    client: IpAddr,
    req: &mut Request<B>,
) -> Result<Routed, Box<Response<ProxyBody>>> {
    let answer = |status: StatusCode, location: Option<HeaderValue>| {
        let mut response = local(
            status,
            if location.is_some() {
                ""
            } else {
                "forbidden\n"
            },
        );
        if let Some(l) = location {
            response.headers_mut().insert(header::LOCATION, l);
        }
        Err(Box::new(response))
    };
    if !ingress.admits(client) {
        return answer(StatusCode::FORBIDDEN, None);
    }
    if scheme == Scheme::Http && ingress.ssl_redirect {
        let target = req.uri().path_and_query().map_or("/", |t| t.as_str());
        let name = crate::routing::normalize_host(host);
        if let Ok(location) = HeaderValue::from_str(&format!("https://{name}{target}")) {
            return answer(StatusCode::PERMANENT_REDIRECT, Some(location));
        }
    }
    if let Some((status, location)) = &ingress.redirect {
        return answer(*status, Some(location.clone()));
    }
    if let Some(root) = &ingress.app_root
        && req.uri().path() == "/"
    {
        return answer(StatusCode::FOUND, Some(root.clone()));
    }
    let pool = match &ingress.canary {
        Some(canary) if canary.takes(req.headers()) => canary.pool.clone(),
        _ => match rule.backends.pick() {
            Some(pool) => pool.clone(),
            None => {
                return Err(Box::new(local(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the Ingress's backend does not resolve\n",
                )));
            }
        },
    };
    if let Some(rewrite) = &ingress.rewrite
        && let Some(target) = rewrite.apply(req.uri().path(), req.uri().query())
        && let Ok(uri) = Uri::try_from(target)
    {
        keep_host(req, host);
        *req.uri_mut() = uri;
    }
    Ok(Routed {
        pool,
        rule: Some(rule.clone()),
    })
}
