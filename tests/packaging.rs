//! Packaging: the Helm chart (lint, rendered objects, schema), manifests/install.yaml's
//! freshness, the examples, the Dockerfile, and an install against a real Kubernetes API server
//! (the test cluster, tests/cluster) with the real helm and kubectl (../shared/k8s/clients.sh).
//!
//! Nothing here skips: without helm, kubectl or the API server the tests fail and say why.

mod common;

use common::cluster::{Cluster, clients, ok, text};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const ALL_FEATURES: &str = "charts/weir/ci/all-features-values.yaml";

fn root() -> &'static Path {
    Path::new(ROOT)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Helm with its own cache, config and data folders (under target/tmp; nothing read from or
/// left in $HOME).
fn helm_command() -> Command {
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("packaging-helm");
    let mut cmd = Command::new(clients().join("helm"));
    cmd.current_dir(root())
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    cmd
}

fn helm(args: &[&str]) -> Output {
    helm_command().args(args).output().expect("helm runs")
}

/// `helm template` of the chart (release weir, namespace weir-system) with extra arguments,
/// parsed into its objects.
fn render(extra: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "template",
        "weir",
        "charts/weir",
        "--namespace",
        "weir-system",
    ];
    args.extend_from_slice(extra);
    parse(&ok("helm template", helm(&args)))
}

fn parse(yaml: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).expect("rendered YAML parses");
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn default_objects() -> &'static [Value] {
    static OBJECTS: OnceLock<Vec<Value>> = OnceLock::new();
    OBJECTS.get_or_init(|| render(&[]))
}

fn all_features_objects() -> &'static [Value] {
    static OBJECTS: OnceLock<Vec<Value>> = OnceLock::new();
    OBJECTS.get_or_init(|| render(&["-f", ALL_FEATURES]))
}

fn kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn one<'a>(objects: &'a [Value], k: &str, name: &str) -> &'a Value {
    let found: Vec<_> = kind(objects, k)
        .into_iter()
        .filter(|o| o["metadata"]["name"] == name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {k} {name}, found {}",
        found.len()
    );
    found[0]
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn pod_specs(objects: &[Value]) -> Vec<(&str, &Value)> {
    objects
        .iter()
        .filter_map(|o| {
            let spec = &o["spec"]["template"]["spec"];
            spec.is_object()
                .then(|| (o["metadata"]["name"].as_str().unwrap_or("?"), spec))
        })
        .collect()
}

#[test]
fn helm_lint_strict_is_clean() {
    for extra in [&[][..], &["-f", ALL_FEATURES][..]] {
        let mut args = vec!["lint", "--strict", "charts/weir"];
        args.extend_from_slice(extra);
        let out = ok("helm lint --strict", helm(&args));
        assert!(out.contains("0 chart(s) failed"), "{out}");
        assert!(!out.contains("[WARNING]"), "{out}");
        assert!(!out.contains("[ERROR]"), "{out}");
    }
}

#[test]
fn chart_is_helm_3_and_4_compatible() {
    let chart: Value = serde_saphyr::from_str(&read("charts/weir/Chart.yaml")).expect("Chart.yaml");
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["type"], "application");
    // The image tag defaults to appVersion, which is the crate's version.
    let cargo = read("Cargo.toml");
    let version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("version = "))
        .expect("a package version")
        .trim_matches('"');
    assert_eq!(
        chart["appVersion"], version,
        "Chart appVersion vs Cargo.toml"
    );
    // A JSON schema draft both Helm 3 and Helm 4 validate with.
    let schema: Value =
        serde_json::from_str(&read("charts/weir/values.schema.json")).expect("schema is JSON");
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(schema["additionalProperties"], false);
    // Every top-level value is in the schema, and the schema has nothing values.yaml lacks.
    let values: Value = serde_saphyr::from_str(&read("charts/weir/values.yaml")).expect("values");
    let mut in_values: Vec<_> = values.as_object().expect("a map").keys().collect();
    let mut in_schema: Vec<_> = schema["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .filter(|k| *k != "global")
        .collect();
    in_values.sort();
    in_schema.sort();
    assert_eq!(in_values, in_schema);
}

#[test]
fn containers_are_non_root_read_only_and_without_capabilities() {
    for (label, objects) in [
        ("default", default_objects()),
        ("all features", all_features_objects()),
    ] {
        let pods = pod_specs(objects);
        assert!(!pods.is_empty(), "{label}: no pod templates rendered");
        for (name, spec) in pods {
            let pod = &spec["securityContext"];
            assert_eq!(pod["runAsNonRoot"], true, "{label} {name}");
            assert_eq!(pod["runAsUser"], 65532, "{label} {name}");
            assert_eq!(pod["seccompProfile"]["type"], "RuntimeDefault");
            let mut containers = spec["containers"].as_array().cloned().unwrap_or_default();
            containers.extend(
                spec["initContainers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
            assert!(!containers.is_empty());
            for c in &containers {
                let who = format!("{label}: {name}/{}", c["name"]);
                let sc = &c["securityContext"];
                assert_eq!(sc["runAsNonRoot"], true, "{who}");
                assert_eq!(sc["runAsUser"], 65532, "{who}");
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{who}");
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{who}");
                assert_ne!(sc["privileged"], true, "{who}");
                assert!(
                    strings(&sc["capabilities"]["drop"]).contains(&"ALL"),
                    "{who}"
                );
                assert!(
                    sc["capabilities"]["add"].is_null(),
                    "{who}: adds capabilities"
                );
                assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{who}");
                // Unprivileged ports only: the Service maps 80 and 443.
                for p in c["ports"].as_array().into_iter().flatten() {
                    assert!(p["containerPort"].as_u64().unwrap_or(0) >= 1024, "{who}");
                }
            }
        }
    }
}

/// What weir reads of the Gateway API (and Namespaces, for their labels).
const GATEWAY_API_READS: [&str; 6] = [
    "gatewayclasses",
    "gateways",
    "httproutes",
    "grpcroutes",
    "referencegrants",
    "namespaces",
];
/// The Gateway API status weir writes (the Lease holder).
const GATEWAY_API_STATUS: [&str; 4] = [
    "gatewayclasses/status",
    "gateways/status",
    "httproutes/status",
    "grpcroutes/status",
];
/// The kinds without a namespace: cluster-wide grants even with watchNamespaces.
const CLUSTER_WIDE: [&str; 4] = [
    "gatewayclasses",
    "gatewayclasses/status",
    "ingressclasses",
    "namespaces",
];

/// Every resource a role's rules name, sorted.
fn resources_of(role: &Value) -> Vec<&str> {
    let mut all: Vec<&str> = role["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| strings(&r["resources"]))
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

#[test]
fn rbac_is_least_privilege_without_wildcards() {
    for (label, objects) in [
        ("default", default_objects()),
        ("all features", all_features_objects()),
    ] {
        for o in objects
            .iter()
            .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
        {
            let rules = o["rules"].as_array().expect("rules");
            assert!(!rules.is_empty());
            for rule in rules {
                for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
                    assert!(
                        !strings(&rule[field]).iter().any(|s| s.contains('*')),
                        "{label}: a wildcard in {} {}: {rule}",
                        o["kind"],
                        o["metadata"]["name"]
                    );
                }
                assert!(rule["nonResourceURLs"].is_null());
                // weir never writes what it watches, except status (pools', the Gateway
                // API's and Ingresses') and events; and the Services it makes for Gateways, by a Role of
                // their own in the release namespace (checked below).
                let verbs = strings(&rule["verbs"]);
                let writes = verbs.iter().any(|v| !["get", "list", "watch"].contains(v));
                let gateway_services = o["kind"] == "Role"
                    && o["metadata"]["name"] == "weir-gateway-services"
                    && strings(&rule["resources"]) == ["services"];
                if writes && !gateway_services {
                    let resources = strings(&rule["resources"]);
                    assert!(
                        resources.iter().all(|r| [
                            "loadbalancerpools/status",
                            "gatewayclasses/status",
                            "gateways/status",
                            "httproutes/status",
                            "grpcroutes/status",
                            "ingresses/status",
                            "events",
                            "leases"
                        ]
                        .contains(r)),
                        "{label}: writes {resources:?}"
                    );
                    assert!(!verbs.contains(&"delete") && !verbs.contains(&"deletecollection"));
                }
            }
        }
    }
    // Default: one ClusterRole with what weir reads and writes, bound to its ServiceAccount.
    let objects = default_objects();
    let role = one(objects, "ClusterRole", "weir");
    let grants = |resource: &str, verb: &str| {
        role["rules"].as_array().into_iter().flatten().any(|r| {
            strings(&r["resources"]).contains(&resource) && strings(&r["verbs"]).contains(&verb)
        })
    };
    for resource in ["loadbalancerpools", "services", "endpointslices", "secrets"] {
        for verb in ["get", "list", "watch"] {
            assert!(grants(resource, verb), "{verb} {resource}");
        }
    }
    assert!(grants("loadbalancerpools/status", "patch"));
    // Kubernetes Ingress: read the Ingresses and classes, write the Ingresses' status.
    for resource in ["ingresses", "ingressclasses"] {
        for verb in ["get", "list", "watch"] {
            assert!(grants(resource, verb), "{verb} {resource}");
        }
    }
    assert!(grants("ingresses/status", "patch"));
    // The Gateway API: read what weir serves, write the status of what it implements.
    for resource in GATEWAY_API_READS {
        for verb in ["get", "list", "watch"] {
            assert!(grants(resource, verb), "{verb} {resource}");
        }
    }
    for resource in GATEWAY_API_STATUS {
        for verb in ["patch", "update"] {
            assert!(grants(resource, verb), "{verb} {resource}");
        }
    }
    let gateway_group = role["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| strings(&r["apiGroups"]) == ["gateway.networking.k8s.io"])
        .count();
    assert!(gateway_group > 0, "no rule on gateway.networking.k8s.io");
    assert!(grants("events", "create"));
    let binding = one(objects, "ClusterRoleBinding", "weir");
    assert_eq!(binding["subjects"][0]["name"], "weir");
    assert_eq!(binding["subjects"][0]["namespace"], "weir-system");
    // The Lease: a Role in the release namespace, get/update only on weir's own Lease.
    let lease = one(objects, "Role", "weir-leader-election");
    assert_eq!(lease["metadata"]["namespace"], "weir-system");
    for rule in lease["rules"].as_array().expect("rules") {
        assert_eq!(strings(&rule["resources"]), ["leases"]);
        if strings(&rule["verbs"]).contains(&"update") {
            assert_eq!(strings(&rule["resourceNames"]), ["weir-leader"]);
        }
    }
    // Gateway API service mode: the Services weir makes, and the GatewayClass parameters
    // ConfigMaps it reads, in the release namespace only.
    for objects in [default_objects(), all_features_objects()] {
        let role = one(objects, "Role", "weir-gateway-services");
        assert_eq!(role["metadata"]["namespace"], "weir-system");
        assert_eq!(
            role["rules"],
            serde_json::json!([
                { "apiGroups": [""], "resources": ["services"],
                  "verbs": ["get", "list", "watch", "create", "patch", "delete"] },
                { "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"] },
            ])
        );
        let binding = one(objects, "RoleBinding", "weir-gateway-services");
        assert_eq!(binding["roleRef"]["name"], "weir-gateway-services");
        assert_eq!(binding["subjects"][0]["name"], "weir");
        let deployment = one(objects, "Deployment", "weir");
        let args = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
        assert!(
            args.contains(
                &"--gateway-service-selector=app.kubernetes.io/name=weir,app.kubernetes.io/instance=weir"
            ),
            "{args:?}"
        );
    }
    // Namespaced mode (watchNamespaces): a Role in each namespace, and cluster-wide only the
    // kinds that have no namespace (GatewayClasses, Namespaces).
    let objects = all_features_objects();
    let cluster_role = one(objects, "ClusterRole", "weir-cluster");
    assert_eq!(kind(objects, "ClusterRole").len(), 1);
    assert_eq!(resources_of(cluster_role), CLUSTER_WIDE);
    let binding = one(objects, "ClusterRoleBinding", "weir-cluster");
    assert_eq!(binding["roleRef"]["name"], "weir-cluster");
    assert_eq!(binding["subjects"][0]["name"], "weir");
    for ns in ["shop", "payments"] {
        let role = kind(objects, "Role")
            .into_iter()
            .find(|r| r["metadata"]["namespace"] == ns)
            .unwrap_or_else(|| panic!("no Role in {ns}"));
        assert!(role["rules"].as_array().is_some_and(|r| r.len() >= 5));
        let resources = resources_of(role);
        for resource in GATEWAY_API_READS.iter().chain(&GATEWAY_API_STATUS) {
            if !CLUSTER_WIDE.contains(resource) {
                assert!(
                    resources.contains(resource),
                    "{resource} not in the Role in {ns}"
                );
            }
        }
        for resource in CLUSTER_WIDE {
            assert!(!resources.contains(&resource), "{resource} in a Role");
        }
        assert!(
            kind(objects, "RoleBinding")
                .iter()
                .any(|b| b["metadata"]["namespace"] == ns)
        );
    }
    let deployment = one(objects, "Deployment", "weir");
    let args = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(
        args.contains(&"--watch-namespaces=shop,payments"),
        "{args:?}"
    );
}

#[test]
fn deployment_probes_drain_and_spread() {
    let objects = default_objects();
    let deployment = one(objects, "Deployment", "weir");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let spec = &deployment["spec"]["template"]["spec"];
    let c = &spec["containers"][0];
    let admin = c["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == "admin")
        .expect("an admin port");
    assert_eq!(admin["containerPort"], 9901);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "admin");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "admin");
    let args = strings(&c["args"]);
    assert_eq!(args[0], "run");
    // The admin listener must be reachable by the kubelet (weir's default is loopback).
    assert!(args.contains(&"--admin-addr=0.0.0.0:9901"), "{args:?}");
    assert!(args.contains(&"--http-addr=0.0.0.0:8080"));
    assert!(args.contains(&"--https-addr=0.0.0.0:8443"));
    assert!(args.contains(&"--affinity-key-file=/etc/weir/affinity/key"));
    assert!(args.contains(&"--controller-class=weir"));
    // Drain: the preStop sleep (no shell in the image: no exec), then --shutdown-grace, both
    // within the termination grace period.
    let sleep = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .expect("a preStop sleep");
    assert!(c["lifecycle"]["preStop"]["exec"].is_null());
    let shutdown: u64 = args
        .iter()
        .find_map(|a| a.strip_prefix("--shutdown-grace="))
        .and_then(|s| s.strip_suffix('s'))
        .and_then(|s| s.parse().ok())
        .expect("--shutdown-grace=Ns");
    let grace = spec["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace");
    assert!(grace > sleep + shutdown, "{grace} <= {sleep} + {shutdown}");
    // The Lease identity and namespace from the downward API.
    let env = c["env"].as_array().expect("env");
    for (name, path) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        assert!(
            env.iter()
                .any(|e| e["name"] == name && e["valueFrom"]["fieldRef"]["fieldPath"] == path),
            "{name}"
        );
    }
    // The affinity key, read-only, from the kept Secret.
    let mount = &c["volumeMounts"][0];
    assert_eq!(mount["mountPath"], "/etc/weir/affinity");
    assert_eq!(mount["readOnly"], true);
    assert_eq!(
        spec["volumes"][0]["secret"]["secretName"],
        "weir-affinity-key"
    );
    let secret = one(objects, "Secret", "weir-affinity-key");
    assert_eq!(
        secret["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    assert!(
        secret["data"]["key"]
            .as_str()
            .is_some_and(|k| k.len() >= 24)
    );
    // Requests and limits, spread over nodes.
    for r in ["requests", "limits"] {
        assert!(c["resources"][r]["memory"].is_string(), "{r}");
        assert!(c["resources"][r]["cpu"].is_string(), "{r}");
    }
    assert_eq!(
        spec["topologySpreadConstraints"][0]["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert!(
        spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
            .is_array()
    );
    assert_eq!(c["image"], "weir:0.1.0");
    let pdb = one(objects, "PodDisruptionBudget", "weir");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
}

#[test]
fn services_map_80_and_443_and_metrics_stay_inside() {
    let objects = default_objects();
    let service = one(objects, "Service", "weir");
    assert_eq!(service["spec"]["type"], "LoadBalancer");
    assert_eq!(service["spec"]["externalTrafficPolicy"], "Local");
    let ports: Vec<(i64, &str, &str)> = service["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["port"].as_i64().unwrap_or(0),
                p["targetPort"].as_str().unwrap_or(""),
                p["name"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(ports, [(80, "http", "http"), (443, "https", "https")]);
    // The named target ports are the container's 8080 and 8443.
    let deployment = one(objects, "Deployment", "weir");
    let container_port = |name: &str| {
        deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_i64())
    };
    assert_eq!(container_port("http"), Some(8080));
    assert_eq!(container_port("https"), Some(8443));
    let metrics = one(objects, "Service", "weir-metrics");
    assert_eq!(metrics["spec"]["type"], "ClusterIP");
    assert_eq!(metrics["spec"]["ports"][0]["targetPort"], "admin");
    assert_eq!(metrics["spec"]["ports"][0]["port"], 9901);
    assert_eq!(service["spec"]["selector"], metrics["spec"]["selector"]);
    // Configurable: NodePort with fixed node ports; ClusterIP has no traffic policy.
    let objects = all_features_objects();
    let service = one(objects, "Service", "weir");
    assert_eq!(service["spec"]["type"], "NodePort");
    assert_eq!(service["spec"]["ports"][0]["nodePort"], 30080);
    let objects = render(&["--set", "service.type=ClusterIP"]);
    let service = one(&objects, "Service", "weir");
    assert_eq!(service["spec"]["type"], "ClusterIP");
    assert!(service["spec"]["externalTrafficPolicy"].is_null());
}

#[test]
fn every_optional_feature_renders() {
    let objects = all_features_objects();
    let deployment = one(objects, "Deployment", "weir");
    // The HPA owns the replica count.
    assert!(deployment["spec"]["replicas"].is_null());
    let hpa = one(objects, "HorizontalPodAutoscaler", "weir");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "weir");
    let monitor = one(objects, "ServiceMonitor", "weir");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "admin");
    assert_eq!(monitor["spec"]["endpoints"][0]["honorLabels"], true);
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    let policy = one(objects, "NetworkPolicy", "weir");
    // The Gateways' pod ports are open as the traffic ports are.
    assert_eq!(
        policy["spec"]["ingress"][0]["ports"][2],
        serde_json::json!({ "port": 20000, "endPort": 29999, "protocol": "TCP" })
    );
    assert_eq!(
        policy["spec"]["ingress"][1]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
    // The alerts file's rules, untouched (their {{ $labels.pool }} is for Prometheus).
    let rule = one(objects, "PrometheusRule", "weir");
    let alerts: Value =
        serde_saphyr::from_str(&read("charts/weir/alerts/weir-rules.yaml")).expect("alerts");
    assert_eq!(rule["spec"], alerts["spec"]);
    assert!(rule.to_string().contains("{{ $labels.pool }}"));
    // The dashboard, byte for byte, labelled for the Grafana sidecar.
    let dashboard = one(objects, "ConfigMap", "weir-dashboard");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json = dashboard["data"]["weir.json"].as_str().expect("weir.json");
    assert_eq!(
        json.trim_end(),
        read("charts/weir/dashboards/weir.json").trim_end()
    );
    serde_json::from_str::<Value>(json).expect("the dashboard is JSON");
    // Values reach the pod.
    let spec = &deployment["spec"]["template"]["spec"];
    let c = &spec["containers"][0];
    let args = strings(&c["args"]);
    for want in [
        "--controller-class=weir-internal",
        "--log-format=text",
        "--log-level=weir=debug,info",
        "--access-log=json",
        "--workers=2",
        "--lease-duration=20s",
        "--default-certificate=/etc/weir/default-tls/tls.crt",
    ] {
        assert!(args.contains(&want), "{want} not in {args:?}");
    }
    assert_eq!(c["image"], "registry.example.com/weir:0.1.0-test");
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(spec["imagePullSecrets"][0]["name"], "regcred");
    assert_eq!(spec["priorityClassName"], "system-cluster-critical");
    assert_eq!(spec["nodeSelector"]["kubernetes.io/os"], "linux");
    assert_eq!(spec["tolerations"][0]["value"], "ingress");
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    // weir's own GatewayClass, when asked for (never by default: see install_yaml_is_fresh).
    let class = one(objects, "GatewayClass", "weir-internal");
    assert_eq!(class["apiVersion"], "gateway.networking.k8s.io/v1");
    assert_eq!(
        class["spec"]["controllerName"],
        weir::api::gateway::CONTROLLER_NAME
    );
    assert!(class["metadata"]["namespace"].is_null());
}

#[test]
fn chart_crd_is_the_generated_one() {
    let chart = std::fs::read(root().join("charts/weir/crds/loadbalancerpool.yaml"))
        .expect("the chart's CRD");
    let top = std::fs::read(root().join("crds/loadbalancerpool.yaml")).expect("crds/");
    assert!(
        chart == top,
        "charts/weir/crds/loadbalancerpool.yaml differs from crds/loadbalancerpool.yaml: \
         cp crds/loadbalancerpool.yaml charts/weir/crds/"
    );
    // helm ships it with --include-crds, and install.yaml has it.
    let rendered = render(&["--include-crds"]);
    let crd = one(
        &rendered,
        "CustomResourceDefinition",
        "loadbalancerpools.weir.dev",
    );
    let want: Value = serde_saphyr::from_str(&text(&top)).expect("CRD YAML");
    assert_eq!(*crd, want);
}

#[test]
fn schema_rejects_wrong_values() {
    for (set, mention) in [
        ("replicaCount=two", "replicaCount"),
        ("replicas=3", "replicas"),
        ("service.type=Ingress", "type"),
        ("logFormat=xml", "logFormat"),
        ("leaderElection.leaseDuration=15", "leaseDuration"),
    ] {
        let out = helm(&["template", "weir", "charts/weir", "--set", set]);
        assert!(!out.status.success(), "--set {set} was accepted");
        let err = text(&out.stderr);
        assert!(err.contains(mention), "--set {set}: {err}");
    }
    let out = helm(&[
        "template",
        "weir",
        "charts/weir",
        "--set",
        "replicaCount=two",
    ]);
    let err = text(&out.stderr);
    assert!(err.contains("want integer"), "{err}");
    // A grace period too short to drain is refused with the reason.
    let out = helm(&[
        "template",
        "weir",
        "charts/weir",
        "--set",
        "terminationGracePeriodSeconds=10",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("must exceed"),
        "{}",
        text(&out.stderr)
    );
    // Namespaced mode needs no extra switch, and an empty list means every namespace.
    let objects = render(&["--set", "watchNamespaces={team-a}"]);
    one(&objects, "ClusterRole", "weir-cluster");
    assert_eq!(kind(&objects, "ClusterRole").len(), 1);
    // A GatewayClass name must be a DNS subdomain.
    let out = helm(&[
        "template",
        "weir",
        "charts/weir",
        "--set",
        "gatewayAPI.gatewayClass.name=Not_A_Name",
    ]);
    assert!(
        !out.status.success(),
        "a bad GatewayClass name was accepted"
    );
}

#[test]
fn install_yaml_is_fresh() {
    let out = Command::new("bash")
        .arg(root().join("manifests/generate.sh"))
        .arg("--print")
        .env("HELM", clients().join("helm"))
        .output()
        .expect("generate.sh runs");
    let fresh = ok("manifests/generate.sh --print", out);
    let committed = read("manifests/install.yaml");
    assert!(
        fresh == committed,
        "manifests/install.yaml is stale; regenerate it with\n  \
         HELM=$(bash ../shared/k8s/clients.sh)/helm bash manifests/generate.sh"
    );
    // Deterministic (no random key) and complete.
    let objects = parse(&committed);
    assert!(kind(&objects, "Secret").is_empty());
    // The Gateway API's objects are the cluster owner's: none by default.
    assert!(kind(&objects, "GatewayClass").is_empty());
    for (k, name) in [
        ("Namespace", "weir-system"),
        ("CustomResourceDefinition", "loadbalancerpools.weir.dev"),
        ("Deployment", "weir"),
        ("Service", "weir"),
        ("Service", "weir-metrics"),
        ("ServiceAccount", "weir"),
        ("ClusterRole", "weir"),
        ("ClusterRoleBinding", "weir"),
        ("Role", "weir-leader-election"),
        ("RoleBinding", "weir-leader-election"),
        ("PodDisruptionBudget", "weir"),
        ("IngressClass", "weir"),
    ] {
        one(&objects, k, name);
    }
    assert_eq!(objects[0]["kind"], "Namespace", "the Namespace comes first");
    let deployment = one(&objects, "Deployment", "weir");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"],
        "weir-affinity-key"
    );
}

const EXAMPLES: [&str; 6] = [
    "round-robin.yaml",
    "canary.yaml",
    "health-checks.yaml",
    "affinity.yaml",
    "tls.yaml",
    "weighted-by-load.yaml",
];

#[test]
fn examples_are_complete_and_pass_weir_check() {
    let mut listed: Vec<String> = std::fs::read_dir(root().join("manifests/examples"))
        .expect("manifests/examples")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    listed.sort();
    let mut want: Vec<String> = EXAMPLES.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(listed, want);
    for file in EXAMPLES {
        let path = format!("manifests/examples/{file}");
        let objects = parse(&read(&path));
        for k in ["Namespace", "Deployment", "Service", "LoadBalancerPool"] {
            assert!(!kind(&objects, k).is_empty(), "{file}: no {k}");
        }
        let pools = kind(&objects, "LoadBalancerPool");
        let spec = &pools[0]["spec"];
        match file {
            "canary.yaml" => assert_eq!(spec["backends"][1]["weight"], 10),
            "health-checks.yaml" => assert!(spec["healthCheck"]["http"].is_object()),
            "affinity.yaml" => assert!(spec["sessionAffinity"]["cookie"].is_object()),
            "weighted-by-load.yaml" => assert_eq!(spec["algorithm"], "WeightedByLoad"),
            "tls.yaml" => {
                assert_eq!(spec["tls"]["secretName"], "web-tls");
                assert_eq!(kind(&objects, "Secret")[0]["type"], "kubernetes.io/tls");
            }
            _ => assert_eq!(spec["algorithm"], "RoundRobin"),
        }
        // The same parsing and compile weir runs: accepted, references resolved. (Ready is
        // False: no pods run, so no EndpointSlices exist in the file.)
        let out = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["check", "-f"])
            .arg(root().join(&path))
            .output()
            .expect("weir check runs");
        let report = ok(&format!("weir check -f {path}"), out);
        assert!(report.contains("Accepted=True"), "{file}: {report}");
        assert!(report.contains("ResolvedRefs=True"), "{file}: {report}");
        for line in report.lines().filter(|l| l.contains("=False")) {
            assert!(
                line.contains("Ready=False NoHealthyEndpoints"),
                "{file}: {line}"
            );
        }
        if file == "tls.yaml" {
            assert!(report.contains("CertificateValid=True"), "{report}");
        }
    }
}

#[test]
fn dockerfile_builds_the_tested_binary_as_non_root() {
    let dockerfile = read("Dockerfile");
    let instructions: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let last = |prefix: &str| {
        instructions
            .iter()
            .rev()
            .find(|l| l.starts_with(prefix))
            .copied()
            .unwrap_or_else(|| panic!("no {prefix} in the Dockerfile"))
    };
    assert_eq!(last("ENTRYPOINT"), r#"ENTRYPOINT ["/weir"]"#);
    assert_eq!(last("CMD"), r#"CMD ["run"]"#);
    assert_eq!(last("USER"), "USER 65532:65532");
    let froms: Vec<_> = instructions
        .iter()
        .filter(|l| l.starts_with("FROM"))
        .collect();
    assert!(froms.len() >= 2, "multi-stage");
    assert!(froms[froms.len() - 1].contains("distroless"), "{froms:?}");
    // The toolchain of rust-toolchain.toml.
    let toolchain = read("rust-toolchain.toml");
    let channel = toolchain
        .lines()
        .find_map(|l| l.strip_prefix("channel = "))
        .expect("a channel")
        .trim_matches('"');
    assert!(froms[0].contains(&format!("rust:{channel}")), "{froms:?}");
    // The same crate and lock file, default features, release profile.
    let builds: Vec<_> = dockerfile
        .lines()
        .filter(|l| l.contains("cargo build"))
        .collect();
    assert!(builds.len() >= 2, "a dependency layer, then the crate");
    for b in &builds {
        assert!(b.contains("--release") && b.contains("--locked"), "{b}");
        assert!(
            !b.contains("feature"),
            "{b}: features differ from the tests'"
        );
    }
    assert!(dockerfile.contains("COPY Cargo.toml Cargo.lock rust-toolchain.toml"));
    // Every bench Cargo.toml names gets a stub in the dependency layer: the Dockerfile's own
    // stub loop, run here on the real Cargo.toml, must write one file per [[bench]].
    let stub_loop = dockerfile
        .lines()
        .find(|l| l.contains("for bench in"))
        .expect("a stub loop over the [[bench]] names");
    let names = stub_loop
        .split("$(")
        .nth(1)
        .and_then(|rest| rest.rsplit_once(')'))
        .map(|(cmd, _)| cmd)
        .expect("the loop reads the names with a command");
    let listed = std::process::Command::new("sh")
        .arg("-c")
        .arg(names)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("sh runs");
    let listed = String::from_utf8_lossy(&listed.stdout);
    let cargo = read("Cargo.toml");
    let benches: Vec<&str> = cargo
        .split("[[bench]]")
        .skip(1)
        .filter_map(|s| s.lines().find_map(|l| l.strip_prefix("name = ")))
        .map(|n| n.trim_matches('"'))
        .collect();
    assert!(!benches.is_empty());
    assert_eq!(listed.split_whitespace().collect::<Vec<_>>(), benches);
    let ignore = read(".dockerignore");
    for path in ["target/", ".git/"] {
        assert!(
            ignore.lines().any(|l| l == path),
            ".dockerignore lacks {path}"
        );
    }
    for needed in ["src", "benches", "Cargo.toml", "Cargo.lock"] {
        assert!(!ignore.lines().any(|l| l.trim_end_matches('/') == needed));
    }
}

#[test]
fn helm_install_and_kubectl_apply_against_the_test_cluster() {
    let started = std::time::Instant::now();
    let server = Cluster::start();
    // Helm 4 applies server-side, as on any cluster.
    let install = |release: &str, namespace: &str, extra: &[&str]| {
        let mut args = vec![
            "install",
            release,
            "charts/weir",
            "--namespace",
            namespace,
            "--create-namespace",
        ];
        args.extend_from_slice(extra);
        ok(&format!("helm install {release}"), server.helm(&args))
    };
    let notes = install("weir", "weir-helm", &[]);
    assert!(notes.contains("kind: LoadBalancerPool"), "NOTES: {notes}");

    // The objects exist, as rendered.
    let deployment = server.json(&["-n", "weir-helm", "get", "deployment", "weir"]);
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"],
        5
    );
    for what in [
        "service/weir",
        "service/weir-metrics",
        "serviceaccount/weir",
        "role/weir-leader-election",
        "rolebinding/weir-leader-election",
        "poddisruptionbudget/weir",
        "secret/weir-affinity-key",
    ] {
        ok(what, server.kubectl(&["-n", "weir-helm", "get", what]));
    }
    for what in [
        "clusterrole/weir",
        "clusterrolebinding/weir",
        "crd/loadbalancerpools.weir.dev",
    ] {
        ok(what, server.kubectl(&["get", what]));
    }
    let service = server.json(&["-n", "weir-helm", "get", "service", "weir"]);
    assert_eq!(service["spec"]["type"], "LoadBalancer");

    // The Gateway API, as the API server's authorizer reads the release's RBAC: weir's
    // ServiceAccount reads the kinds and writes their status, and no more.
    server.install_gateway_api();
    let can = |user: &str, namespace: &str, args: &[&str]| {
        let mut all = vec!["auth", "can-i", "--as", user, "-n", namespace];
        all.extend_from_slice(args);
        text(&server.kubectl(&all).stdout).trim() == "yes"
    };
    let weir_sa = "system:serviceaccount:weir-helm:weir";
    for resource in GATEWAY_API_READS {
        let resource = match resource {
            "namespaces" => resource.to_string(),
            _ => format!("{resource}.gateway.networking.k8s.io"),
        };
        for verb in ["get", "list", "watch"] {
            assert!(
                can(weir_sa, "shop", &[verb, &resource]),
                "{verb} {resource}"
            );
        }
        assert!(
            !can(weir_sa, "shop", &["delete", &resource]),
            "delete {resource}"
        );
    }
    for status in GATEWAY_API_STATUS {
        let resource = status.trim_end_matches("/status");
        let resource = format!("{resource}.gateway.networking.k8s.io");
        for verb in ["patch", "update"] {
            assert!(
                can(weir_sa, "shop", &[verb, &resource, "--subresource=status"]),
                "{verb} {status}"
            );
        }
        assert!(
            !can(weir_sa, "shop", &["patch", &resource]),
            "patch {resource}"
        );
    }

    // The affinity key survives an upgrade (looked up, not made again) and an uninstall.
    let key = |server: &Cluster| {
        server.json(&["-n", "weir-helm", "get", "secret", "weir-affinity-key"])["data"]["key"]
            .as_str()
            .expect("a key")
            .to_string()
    };
    let before = key(&server);
    ok(
        "helm upgrade",
        server.helm(&[
            "upgrade",
            "weir",
            "charts/weir",
            "--namespace",
            "weir-helm",
            "--set",
            "replicaCount=3",
        ]),
    );
    assert_eq!(
        key(&server),
        before,
        "helm upgrade changed the affinity key"
    );
    let deployment = server.json(&["-n", "weir-helm", "get", "deployment", "weir"]);
    assert_eq!(deployment["spec"]["replicas"], 3);
    ok(
        "helm uninstall",
        server.helm(&["uninstall", "weir", "--namespace", "weir-helm"]),
    );
    assert_eq!(key(&server), before, "the key Secret is kept on uninstall");
    assert!(
        !server
            .kubectl(&["get", "clusterrole/weir"])
            .status
            .success()
    );

    // Namespaced mode: Roles in the watched namespaces, no ClusterRole.
    ok(
        "namespace",
        server.kubectl(&["create", "namespace", "team-a"]),
    );
    install(
        "scoped",
        "weir-scoped",
        &["--set", "watchNamespaces={team-a}"],
    );
    ok(
        "role in team-a",
        server.kubectl(&["-n", "team-a", "get", "role/scoped-weir"]),
    );
    assert!(
        !server
            .kubectl(&["get", "clusterrole/scoped-weir"])
            .status
            .success()
    );
    // ... but the cluster-wide kinds cluster-wide, and the Gateway API in team-a alone.
    let scoped_sa = "system:serviceaccount:weir-scoped:scoped-weir";
    let gateways = "gateways.gateway.networking.k8s.io";
    assert!(can(scoped_sa, "team-a", &["watch", gateways]));
    assert!(!can(scoped_sa, "default", &["watch", gateways]));
    assert!(!can(
        scoped_sa,
        "team-a",
        &["watch", gateways, "--all-namespaces"]
    ));
    assert!(can(
        scoped_sa,
        "default",
        &["watch", "gatewayclasses.gateway.networking.k8s.io"]
    ));
    assert!(can(scoped_sa, "default", &["watch", "namespaces"]));

    // The IngressClass, cluster-wide: made by the release above, so the next one is told not to.
    let ingress_class = server.json(&["get", "ingressclass", "weir"]);
    assert_eq!(
        ingress_class["spec"]["controller"],
        weir::api::ingress::INGRESS_CONTROLLER
    );
    // weir's GatewayClass, when asked for (the CRDs are installed above).
    install(
        "gw",
        "weir-gw",
        &[
            "--set",
            "ingress.ingressClass.create=false",
            "--set",
            "gatewayAPI.gatewayClass.create=true",
            "--set",
            "gatewayAPI.gatewayClass.name=weir-gw",
        ],
    );
    let class = server.json(&["get", "gatewayclass", "weir-gw"]);
    assert_eq!(
        class["spec"]["controllerName"],
        weir::api::gateway::CONTROLLER_NAME
    );

    // kubectl-only: install.yaml applies as is.
    let out = ok(
        "kubectl apply -f manifests/install.yaml",
        server.kubectl(&["apply", "-f", "manifests/install.yaml"]),
    );
    assert!(out.contains("namespace/weir-system created"), "{out}");
    assert!(out.contains("deployment.apps/weir created"), "{out}");
    ok(
        "deployment",
        server.kubectl(&["-n", "weir-system", "get", "deployment/weir"]),
    );

    // Every example applies, pools included.
    for file in EXAMPLES {
        let path = format!("manifests/examples/{file}");
        let out = ok(
            &format!("kubectl apply -f {path}"),
            server.kubectl(&["apply", "-f", &path]),
        );
        assert!(
            out.contains("loadbalancerpool.weir.dev/web created"),
            "{file}: {out}"
        );
    }
    let pools = server.json(&["get", "lbp", "--all-namespaces"]);
    assert_eq!(
        pools["items"].as_array().map(Vec::len),
        Some(EXAMPLES.len())
    );

    // The CRD's validation refuses a bad pool, saying which field and why.
    let bad = server.dir().join("bad-pool.yaml");
    std::fs::write(
        &bad,
        "apiVersion: weir.dev/v1alpha1\nkind: LoadBalancerPool\nmetadata: { name: bad, namespace: example-round-robin }\nspec:\n  algorithm: Fastest\n  backends: [{ service: web, port: http, weight: 5000 }]\n",
    )
    .expect("writing a file");
    let out = server.kubectl(&["apply", "-f", bad.to_str().expect("a UTF-8 path")]);
    assert!(!out.status.success(), "the bad pool was accepted");
    let err = text(&out.stderr);
    for want in [
        "The LoadBalancerPool \"bad\" is invalid",
        "spec.algorithm: Unsupported value: \"Fastest\"",
        "spec.backends[0].weight",
        "less than or equal to 1000",
    ] {
        assert!(err.contains(want), "{want:?} not in: {err}");
    }
    // A CEL rule too: no backend with a weight above 0.
    std::fs::write(
        &bad,
        "apiVersion: weir.dev/v1alpha1\nkind: LoadBalancerPool\nmetadata: { name: bad, namespace: example-round-robin }\nspec:\n  backends: [{ service: web, port: http, weight: 0 }]\n",
    )
    .expect("writing a file");
    let out = server.kubectl(&["apply", "-f", bad.to_str().expect("a UTF-8 path")]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("at least one backend needs a weight above 0"),
        "{err}"
    );
    eprintln!("install scenario took {:?}", started.elapsed());
}

#[test]
fn gateway_api_examples_pass_weir_check() {
    let dir = root().join("manifests/examples/gateway-api");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("manifests/examples/gateway-api")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for path in files {
        let out = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["check", "-f"])
            .arg(&path)
            .output()
            .expect("weir check runs");
        let report = ok(&format!("weir check -f {}", path.display()), out);
        for want in ["GatewayClass weir", "Programmed=True", "Route ", "parent "] {
            assert!(
                report.contains(want),
                "{}: {want} not in {report}",
                path.display()
            );
        }
        for line in report.lines().filter(|l| l.contains("=False")) {
            assert!(
                line.contains("Conflicted=False"),
                "{}: {line}",
                path.display()
            );
        }
    }
}

#[test]
fn the_ingress_example_passes_weir_check_with_the_warning_it_shows() {
    let path = root().join("manifests/examples/ingress/ingress-nginx.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["check", "-f"])
        .arg(&path)
        .output()
        .expect("weir check runs");
    let report = ok(
        "weir check -f manifests/examples/ingress/ingress-nginx.yaml",
        out,
    );
    for ingress in [
        "shop/shop",
        "shop/shop-canary",
        "shop/static",
        "shop/moved",
        "shop/admin",
    ] {
        assert!(
            report.contains(&format!("Ingress {ingress} ")),
            "{ingress}: {report}"
        );
    }
    let warnings: Vec<&str> = report.lines().filter(|l| l.contains("warning ")).collect();
    assert_eq!(warnings.len(), 1, "{report}");
    assert!(warnings[0].contains("UnsupportedAnnotation: nginx.ingress.kubernetes.io/enable-cors"));
    assert!(
        report.contains("1 annotation(s) not carried out as written"),
        "{report}"
    );
}
