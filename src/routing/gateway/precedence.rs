//! The order HTTPRoute matches are tried in, across every route on a host (Gateway API,
//! `HTTPRouteRule` precedence): an exact path first, then the longest prefix, then a method
//! match, then more header matches, then more query matches; ties go to the older route, then
//! to `namespace/name` order, then to the earlier rule and match within the route.

use crate::api::gateway::{HTTPRouteMatch, PathMatchType};
use std::cmp::Reverse;

/// Sorts ascending into the order matches are tried.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RuleKey {
    path: PathRank,
    method: Reverse<bool>,
    headers: Reverse<usize>,
    query: Reverse<usize>,
    /// The route's `metadata.creationTimestamp` in seconds; a route without one (the file
    /// source) counts as oldest, and then sorts by name.
    created: i64,
    route: (String, String),
    rule: usize,
    matched: usize,
}

/// Exact paths, then prefixes longest first, then regular expressions (whose precedence the
/// spec leaves to implementations: after every prefix, longest pattern first).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum PathRank {
    Exact,
    Prefix(Reverse<usize>),
    Regex(Reverse<usize>),
}

/// The key of match `matched` of rule `rule` in route `namespace/name`.
pub fn rule_key(
    m: &HTTPRouteMatch,
    created: Option<i64>,
    route: (&str, &str),
    rule: usize,
    matched: usize,
) -> RuleKey {
    let path = m.path.as_ref();
    let value = path.and_then(|p| p.value.as_deref()).unwrap_or("/");
    let path = match path
        .and_then(|p| p.r#type)
        .unwrap_or(PathMatchType::PathPrefix)
    {
        PathMatchType::Exact => PathRank::Exact,
        PathMatchType::PathPrefix => PathRank::Prefix(Reverse(value.len())),
        PathMatchType::RegularExpression => PathRank::Regex(Reverse(value.len())),
    };
    RuleKey {
        path,
        method: Reverse(m.method.is_some()),
        headers: Reverse(m.headers.len()),
        query: Reverse(m.query_params.len()),
        created: created.unwrap_or(i64::MIN),
        route: (route.0.to_string(), route.1.to_string()),
        rule,
        matched,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::gateway::{HTTPHeaderMatch, HTTPPathMatch, HTTPQueryParamMatch};

    fn path(kind: PathMatchType, value: &str) -> HTTPRouteMatch {
        HTTPRouteMatch {
            path: Some(HTTPPathMatch {
                r#type: Some(kind),
                value: Some(value.into()),
            }),
            ..Default::default()
        }
    }

    fn key(m: &HTTPRouteMatch) -> RuleKey {
        rule_key(m, Some(100), ("ns", "r"), 0, 0)
    }

    #[test]
    fn the_spec_order_across_matches() {
        let exact = path(PathMatchType::Exact, "/a");
        let long = path(PathMatchType::PathPrefix, "/a/b");
        let short = path(PathMatchType::PathPrefix, "/a");
        let regex = path(PathMatchType::RegularExpression, "/a/.*");
        let mut method = short.clone();
        method.method = Some("GET".into());
        let mut headers = short.clone();
        headers.headers = vec![HTTPHeaderMatch {
            r#type: None,
            name: "x".into(),
            value: "1".into(),
        }];
        let mut query = short.clone();
        query.query_params = vec![HTTPQueryParamMatch {
            r#type: None,
            name: "q".into(),
            value: "1".into(),
        }];
        let mut both = headers.clone();
        both.query_params = query.query_params.clone();
        let mut all = [
            ("regex", key(&regex)),
            ("short", key(&short)),
            ("query", key(&query)),
            ("headers", key(&headers)),
            ("both", key(&both)),
            ("method", key(&method)),
            ("long", key(&long)),
            ("exact", key(&exact)),
        ];
        all.sort_by(|a, b| a.1.cmp(&b.1));
        let order: Vec<_> = all.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            order,
            [
                "exact", "long", "method", "both", "headers", "query", "short", "regex"
            ]
        );
    }

    #[test]
    fn ties_go_to_the_older_route_then_the_name_then_the_rule() {
        let m = path(PathMatchType::PathPrefix, "/");
        let older = rule_key(&m, Some(1), ("z", "z"), 3, 0);
        let newer = rule_key(&m, Some(2), ("a", "a"), 0, 0);
        assert!(older < newer);
        let by_name = rule_key(&m, Some(2), ("a", "b"), 5, 0);
        assert!(newer < by_name);
        let first_rule = rule_key(&m, Some(2), ("a", "b"), 1, 3);
        assert!(first_rule < by_name);
        // A default match is a `/` prefix.
        assert_eq!(key(&HTTPRouteMatch::default()), key(&m));
    }
}
