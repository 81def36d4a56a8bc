use super::*;

fn parse(pairs: &[(&str, &str)]) -> (IngressAnnotations, Vec<AnnotationWarning>) {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    parse_annotations(Some(&map))
}

fn nginx(short: &str) -> String {
    format!("nginx.ingress.kubernetes.io/{short}")
}

#[test]
fn the_common_annotations_parse_into_types() {
    let (a, warnings) = parse(&[
        (&nginx("ssl-redirect"), "false"),
        (&nginx("use-regex"), "true"),
        (&nginx("rewrite-target"), "/$2"),
        (&nginx("affinity"), "cookie"),
        (&nginx("session-cookie-name"), "route"),
        (&nginx("session-cookie-max-age"), "172800"),
        (&nginx("session-cookie-samesite"), "None"),
        (&nginx("load-balance"), "ewma"),
        (&nginx("proxy-connect-timeout"), "5"),
        (&nginx("proxy-read-timeout"), "120s"),
        (&nginx("proxy-body-size"), "8m"),
        (&nginx("proxy-next-upstream-tries"), "3"),
        (&nginx("backend-protocol"), "GRPC"),
        (&nginx("whitelist-source-range"), "10.0.0.0/8, 192.168.1.7"),
        ("unrelated.example/annotation", "x"),
    ]);
    assert_eq!(warnings, vec![]);
    assert_eq!(a.ssl_redirect, Some(false));
    assert!(a.use_regex);
    assert_eq!(a.rewrite_target.as_deref(), Some("/$2"));
    let cookie = a.affinity.expect("affinity");
    assert_eq!(cookie.name, "route");
    assert_eq!(cookie.ttl_seconds, 172_800);
    assert_eq!(cookie.same_site, SameSite::None);
    assert_eq!(cookie.secure, Some(true), "SameSite=None forces Secure");
    assert_eq!(a.algorithm, Some(Algorithm::PeakEwma));
    assert_eq!(a.connect_timeout_millis, Some(5000));
    assert_eq!(a.read_timeout_seconds, Some(120));
    assert_eq!(a.body_size, Some(Some(8 * 1024 * 1024)));
    assert_eq!(a.next_upstream_tries, Some(3));
    assert_eq!(a.backend_protocol, BackendProtocol::H2c);
    let allow: Vec<String> = a
        .allow_source
        .expect("allow")
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(allow, ["10.0.0.0/8", "192.168.1.7/32"]);
}

#[test]
fn weir_names_win_over_nginx_names() {
    let (a, warnings) = parse(&[
        (&nginx("load-balance"), "round_robin"),
        ("weir.dev/load-balance", "least_conn"),
    ]);
    assert!(warnings.is_empty());
    assert_eq!(a.algorithm, Some(Algorithm::LeastConnections));
}

#[test]
fn nothing_is_silently_ignored() {
    let (a, warnings) = parse(&[
        (
            &nginx("configuration-snippet"),
            "more_set_headers \"x: y\";",
        ),
        (&nginx("enable-cors"), "true"),
        (&nginx("limit-rps"), "10"),
        (&nginx("no-such-thing"), "1"),
        (&nginx("proxy-body-size"), "eight"),
        (&nginx("load-balance"), "chash"),
        (&nginx("session-cookie-name"), "x"),
        (&nginx("backend-protocol"), "HTTPS"),
    ]);
    let kinds: Vec<(String, WarningKind)> = warnings
        .iter()
        .map(|w| (w.annotation.clone(), w.kind))
        .collect();
    for (short, kind) in [
        ("configuration-snippet", WarningKind::Snippet),
        ("enable-cors", WarningKind::Unsupported),
        ("limit-rps", WarningKind::Unsupported),
        ("no-such-thing", WarningKind::Unknown),
        ("proxy-body-size", WarningKind::BadValue),
        ("load-balance", WarningKind::BadValue),
        ("session-cookie-name", WarningKind::BadValue),
        ("backend-protocol", WarningKind::Unsupported),
    ] {
        assert!(kinds.contains(&(nginx(short), kind)), "{short}: {kinds:?}");
    }
    assert_eq!(warnings.len(), 8, "{warnings:?}");
    assert_eq!(a.body_size, None);
    assert_eq!(a.algorithm, None);
    assert_eq!(a.affinity, None);
}

#[test]
fn a_broken_allow_list_refuses_more_never_less() {
    let (a, warnings) = parse(&[(&nginx("whitelist-source-range"), "10.0.0.0/33,nonsense")]);
    assert_eq!(warnings.len(), 2);
    assert_eq!(
        a.allow_source,
        Some(vec![]),
        "no entry parsed: nobody is let in"
    );
}

#[test]
fn hash_keys_and_canaries() {
    let (a, w) = parse(&[(&nginx("upstream-hash-by"), "$http_x_user_id")]);
    assert!(w.is_empty());
    assert_eq!(
        a.hash_on.and_then(|h| h.header).as_deref(),
        Some("x-user-id")
    );
    assert_eq!(a.algorithm, Some(Algorithm::ConsistentHash));
    let (a, _) = parse(&[(&nginx("upstream-hash-by"), "$remote_addr")]);
    assert_eq!(a.hash_on.and_then(|h| h.source_ip), Some(true));
    let (_, w) = parse(&[(&nginx("upstream-hash-by"), "$request_uri")]);
    assert_eq!(w.len(), 1);

    let (a, w) = parse(&[
        (&nginx("canary"), "true"),
        (&nginx("canary-weight"), "10"),
        (&nginx("canary-by-header"), "x-canary"),
        (&nginx("canary-by-cookie"), "canary"),
    ]);
    assert!(w.is_empty(), "{w:?}");
    let c = a.canary.expect("canary");
    assert_eq!((c.weight, c.weight_total), (10, 100));
    assert_eq!(c.by_header.as_deref(), Some("x-canary"));
    assert_eq!(c.by_cookie.as_deref(), Some("canary"));
    let (a, w) = parse(&[(&nginx("canary-weight"), "10")]);
    assert_eq!(a.canary, None);
    assert_eq!(w.len(), 1, "a canary weight without canary: true says so");
}

#[test]
fn redirects_need_absolute_urls() {
    let (a, w) = parse(&[
        (&nginx("permanent-redirect"), "https://example.com/new"),
        (&nginx("permanent-redirect-code"), "308"),
    ]);
    assert!(w.is_empty());
    let r = a.redirect.expect("redirect");
    assert_eq!(
        (r.location.as_str(), r.status),
        ("https://example.com/new", 308)
    );
    let (a, w) = parse(&[(&nginx("temporal-redirect"), "/relative")]);
    assert_eq!(a.redirect, None);
    assert_eq!(w.len(), 1);
    assert_eq!(parse_size("512k"), Some(512 * 1024));
    assert_eq!(parse_size("100"), Some(100));
    assert_eq!(parse_size("1G"), Some(1 << 30));
    assert_eq!(parse_size("1x"), None);
}

fn ingress(class: Option<&str>, legacy: Option<&str>) -> Ingress {
    let mut i = Ingress {
        spec: Some(k8s_openapi::api::networking::v1::IngressSpec {
            ingress_class_name: class.map(str::to_string),
            ..Default::default()
        }),
        ..Ingress::default()
    };
    if let Some(l) = legacy {
        i.metadata.annotations =
            Some([(LEGACY_CLASS_ANNOTATION.to_string(), l.to_string())].into());
    }
    i
}

fn class(controller: &str, default: bool) -> std::sync::Arc<IngressClass> {
    let mut c = IngressClass {
        spec: Some(k8s_openapi::api::networking::v1::IngressClassSpec {
            controller: Some(controller.into()),
            parameters: None,
        }),
        ..IngressClass::default()
    };
    c.metadata.name = Some("weir".into());
    if default {
        c.metadata.annotations =
            Some([(DEFAULT_CLASS_ANNOTATION.to_string(), "true".to_string())].into());
    }
    std::sync::Arc::new(c)
}

#[test]
fn the_class_decides_whose_an_ingress_is() {
    let choice = IngressClassChoice::default();
    let none: BTreeMap<String, std::sync::Arc<IngressClass>> = BTreeMap::new();
    assert!(choice.takes(&ingress(Some("weir"), None), &none));
    assert!(choice.takes(&ingress(None, Some("weir")), &none));
    assert!(!choice.takes(&ingress(Some("nginx"), None), &none));
    assert!(
        !choice.takes(&ingress(None, None), &none),
        "not the default class"
    );
    let default: BTreeMap<_, _> = [("weir".to_string(), class(INGRESS_CONTROLLER, true))].into();
    assert!(choice.takes(&ingress(None, None), &default));
    let other: BTreeMap<_, _> = [("weir".to_string(), class("k8s.io/ingress-nginx", true))].into();
    assert!(
        !choice.takes(&ingress(Some("weir"), None), &other),
        "the class is another controller's"
    );
    let file = IngressClassChoice {
        unclassed: true,
        ..IngressClassChoice::default()
    };
    assert!(file.takes(&ingress(None, None), &none));
}
