//! Which listeners of a Gateway a route attaches to through one `parentRef`, or why none:
//! the ref's name, `sectionName` and `port`; each listener's `allowedRoutes` (namespaces and
//! kinds); and the hostnames they share.

use super::hostname::{Intersection, intersect};
use crate::api::gateway::{
    FromNamespaces, GROUP, Gateway, Listener, ParentReference, RouteGroupKind,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;

/// The route kinds weir serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteKind {
    Http,
    Grpc,
}

impl RouteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Http => "HTTPRoute",
            RouteKind::Grpc => "GRPCRoute",
        }
    }

    /// The kind a listener's `allowedRoutes.kinds` entry names, if weir serves it.
    pub fn of(kind: &RouteGroupKind) -> Option<RouteKind> {
        if kind.group.as_deref().is_some_and(|g| g != GROUP) {
            return None;
        }
        match kind.kind.as_str() {
            "HTTPRoute" => Some(RouteKind::Http),
            "GRPCRoute" => Some(RouteKind::Grpc),
            _ => None,
        }
    }
}

/// What a route is, for attachment.
#[derive(Debug, Clone, Copy)]
pub struct Route<'a> {
    pub kind: RouteKind,
    pub namespace: &'a str,
    pub hostnames: &'a [String],
}

/// Why a parentRef attaches the route to no listener (the route's `Accepted=False` reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No listener has the ref's `sectionName` / `port`.
    #[error("no listener of the Gateway matches the parentRef's sectionName and port")]
    NoMatchingParent,
    /// Listeners match, but none lets this route's namespace or kind attach.
    #[error("no listener allows a route of this kind from this namespace")]
    NotAllowedByListeners,
    /// Listeners allow it, but none shares a hostname with it.
    #[error("no listener's hostname intersects the route's hostnames")]
    NoMatchingListenerHostname,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NoMatchingParent => "NoMatchingParent",
            Refusal::NotAllowedByListeners => "NotAllowedByListeners",
            Refusal::NoMatchingListenerHostname => "NoMatchingListenerHostname",
        }
    }
}

/// Whether `parent` names `gateway` at all (group, kind, namespace and name); a ref to
/// another parent is another parent's business, not a refusal.
pub fn names_gateway(parent: &ParentReference, route_namespace: &str, gateway: &Gateway) -> bool {
    let group = parent.group.as_deref().unwrap_or(GROUP);
    let kind = parent.kind.as_deref().unwrap_or("Gateway");
    let namespace = parent.namespace.as_deref().unwrap_or(route_namespace);
    group == GROUP
        && kind == "Gateway"
        && Some(namespace) == gateway.metadata.namespace.as_deref()
        && Some(parent.name.as_str()) == gateway.metadata.name.as_deref()
}

/// The listeners (by index) `route` attaches to through `parent`, with the hostnames it takes
/// on each. `usable` says which listeners are valid to attach to (a conflicted or invalid one
/// takes no routes); `labels` gives a namespace's labels, for `from: Selector`.
pub fn attach<'l>(
    route: Route<'_>,
    parent: &ParentReference,
    gateway: &Gateway,
    usable: impl Fn(usize) -> bool,
    labels: impl Fn(&str) -> Option<&'l BTreeMap<String, String>>,
) -> Result<Vec<(usize, Intersection)>, Refusal> {
    let named: Vec<(usize, &Listener)> = gateway
        .spec
        .listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| parent.section_name.as_ref().is_none_or(|s| *s == l.name))
        .filter(|(_, l)| parent.port.is_none_or(|p| p == l.port))
        .collect();
    if named.is_empty() {
        return Err(Refusal::NoMatchingParent);
    }
    let gateway_ns = gateway.metadata.namespace.as_deref().unwrap_or("default");
    let allowed: Vec<(usize, &Listener)> = named
        .into_iter()
        .filter(|(i, _)| usable(*i))
        .filter(|(_, l)| allows_kind(l, route.kind))
        .filter(|(_, l)| allows_namespace(l, gateway_ns, route.namespace, &labels))
        .collect();
    if allowed.is_empty() {
        return Err(Refusal::NotAllowedByListeners);
    }
    let attached: Vec<(usize, Intersection)> = allowed
        .into_iter()
        .map(|(i, l)| (i, intersect(l.hostname.as_deref(), route.hostnames)))
        .filter(|(_, hosts)| *hosts != Intersection::None)
        .collect();
    if attached.is_empty() {
        return Err(Refusal::NoMatchingListenerHostname);
    }
    Ok(attached)
}

/// The kinds a listener takes: those it lists that weir serves, else its protocol's.
pub fn allowed_kinds(listener: &Listener) -> Vec<RouteKind> {
    let listed = listener
        .allowed_routes
        .as_ref()
        .map(|a| &a.kinds[..])
        .unwrap_or_default();
    if !listed.is_empty() {
        let mut kinds: Vec<RouteKind> = listed.iter().filter_map(RouteKind::of).collect();
        kinds.sort();
        kinds.dedup();
        return kinds;
    }
    match listener.protocol.as_str() {
        "HTTP" | "HTTPS" => vec![RouteKind::Http, RouteKind::Grpc],
        _ => Vec::new(),
    }
}

fn allows_kind(listener: &Listener, kind: RouteKind) -> bool {
    allowed_kinds(listener).contains(&kind)
}

fn allows_namespace<'l>(
    listener: &Listener,
    gateway_ns: &str,
    route_ns: &str,
    labels: &impl Fn(&str) -> Option<&'l BTreeMap<String, String>>,
) -> bool {
    let namespaces = listener
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    match namespaces
        .and_then(|n| n.from)
        .unwrap_or(FromNamespaces::Same)
    {
        FromNamespaces::All => true,
        FromNamespaces::Same => route_ns == gateway_ns,
        FromNamespaces::None => false,
        FromNamespaces::Selector => {
            let selector = namespaces.and_then(|n| n.selector.as_ref());
            match (selector, labels(route_ns)) {
                (Some(s), Some(l)) => selects(s, l),
                // A namespace weir has not seen has no labels to match.
                (Some(s), None) => selects(s, &BTreeMap::new()),
                (None, _) => false,
            }
        }
    }
}

/// Whether a label selector takes an object with `labels`. An empty selector takes all.
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_label = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expression = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            // The API server rejects other operators; a file that has one selects nothing.
            _ => false,
        }
    });
    by_label && by_expression
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(yaml: &str) -> Gateway {
        serde_saphyr::from_str(yaml).expect("a Gateway")
    }

    const EDGE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: edge, namespace: infra }
spec:
  gatewayClassName: weir
  listeners:
  - { name: same, port: 80, protocol: HTTP }
  - name: shop
    port: 80
    protocol: HTTP
    hostname: "*.shop.test"
    allowedRoutes: { namespaces: { from: Selector, selector: { matchLabels: { team: shop } } } }
  - name: grpc-only
    port: 8080
    protocol: HTTP
    allowedRoutes: { namespaces: { from: All }, kinds: [{ kind: GRPCRoute }] }
"#;

    fn parent(section: Option<&str>, port: Option<i32>) -> ParentReference {
        ParentReference {
            namespace: Some("infra".into()),
            name: "edge".into(),
            section_name: section.map(str::to_string),
            port,
            ..Default::default()
        }
    }

    fn labels(ns: &str) -> Option<&'static BTreeMap<String, String>> {
        static SHOP: std::sync::LazyLock<BTreeMap<String, String>> =
            std::sync::LazyLock::new(|| BTreeMap::from([("team".into(), "shop".into())]));
        (ns == "shop").then(|| &*SHOP)
    }

    fn indexes(r: Result<Vec<(usize, Intersection)>, Refusal>) -> Result<Vec<usize>, Refusal> {
        r.map(|v| v.into_iter().map(|(i, _)| i).collect())
    }

    #[test]
    fn a_route_attaches_where_namespace_kind_and_hostnames_allow() {
        let gw = gateway(EDGE);
        let hosts: Vec<String> = vec!["www.shop.test".into()];
        let http = |ns| Route {
            kind: RouteKind::Http,
            namespace: ns,
            hostnames: &hosts,
        };
        let grpc = |ns| Route {
            kind: RouteKind::Grpc,
            namespace: ns,
            hostnames: &hosts,
        };
        let all = |_| true;
        // From the Gateway's own namespace: `same` (no hostname) takes it; `shop` needs the label.
        assert_eq!(
            indexes(attach(http("infra"), &parent(None, None), &gw, all, labels)),
            Ok(vec![0])
        );
        // From the labelled namespace: only `shop`.
        let got = attach(http("shop"), &parent(None, None), &gw, all, labels).unwrap();
        assert_eq!(got, [(1, Intersection::Hosts(hosts.clone()))]);
        // gRPC from anywhere: `grpc-only` (and `same` from infra).
        assert_eq!(
            indexes(attach(grpc("other"), &parent(None, None), &gw, all, labels)),
            Ok(vec![2])
        );
        assert_eq!(
            indexes(attach(grpc("infra"), &parent(None, None), &gw, all, labels)),
            Ok(vec![0, 2])
        );
        // A listener that is not usable (conflicted, invalid) takes nothing.
        assert_eq!(
            attach(http("shop"), &parent(None, None), &gw, |i| i != 1, labels),
            Err(Refusal::NotAllowedByListeners)
        );
    }

    #[test]
    fn each_refusal_has_its_reason() {
        let gw = gateway(EDGE);
        let hosts: Vec<String> = vec!["www.other.test".into()];
        let route = Route {
            kind: RouteKind::Http,
            namespace: "shop",
            hostnames: &hosts,
        };
        let all = |_| true;
        assert_eq!(
            attach(route, &parent(Some("nope"), None), &gw, all, labels),
            Err(Refusal::NoMatchingParent)
        );
        assert_eq!(
            attach(route, &parent(None, Some(443)), &gw, all, labels),
            Err(Refusal::NoMatchingParent)
        );
        assert_eq!(
            attach(route, &parent(Some("grpc-only"), None), &gw, all, labels),
            Err(Refusal::NotAllowedByListeners)
        );
        assert_eq!(
            attach(route, &parent(Some("shop"), Some(80)), &gw, all, labels),
            Err(Refusal::NoMatchingListenerHostname)
        );
        assert_eq!(
            Refusal::NoMatchingListenerHostname.reason(),
            "NoMatchingListenerHostname"
        );
    }

    #[test]
    fn a_parent_ref_names_a_gateway_by_group_kind_namespace_and_name() {
        let gw = gateway(EDGE);
        let mut p = parent(None, None);
        assert!(names_gateway(&p, "shop", &gw));
        p.namespace = None;
        assert!(
            !names_gateway(&p, "shop", &gw),
            "defaults to the route's namespace"
        );
        assert!(names_gateway(&p, "infra", &gw));
        p.kind = Some("Service".into());
        assert!(!names_gateway(&p, "infra", &gw));
    }

    #[test]
    fn label_selectors() {
        let l = BTreeMap::from([
            ("team".to_string(), "shop".to_string()),
            ("env".into(), "prod".into()),
        ]);
        let s = |yaml: &str| -> LabelSelector { serde_saphyr::from_str(yaml).expect("selector") };
        assert!(selects(&s("{}"), &l));
        assert!(selects(&s("{ matchLabels: { team: shop } }"), &l));
        assert!(!selects(&s("{ matchLabels: { team: web } }"), &l));
        assert!(selects(
            &s("{ matchExpressions: [{ key: env, operator: In, values: [prod, dev] }] }"),
            &l
        ));
        assert!(!selects(
            &s("{ matchExpressions: [{ key: env, operator: NotIn, values: [prod] }] }"),
            &l
        ));
        assert!(selects(
            &s("{ matchExpressions: [{ key: x, operator: DoesNotExist }] }"),
            &l
        ));
        assert!(!selects(
            &s("{ matchExpressions: [{ key: x, operator: Exists }] }"),
            &l
        ));
    }
}
