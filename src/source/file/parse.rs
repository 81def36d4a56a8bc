//! Parsing a file's text into a store. Any problem refuses the whole file, and says where.

use super::FileError;
use crate::api::gateway::{GRPCRoute, Gateway, GatewayClass, HTTPRoute, ReferenceGrant};
use crate::api::{LoadBalancerPool, validate_spec};
use crate::store::{ObjectKey, ServicePorts, Slice, Store, TlsSecret, reduce};
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// The parser's limits, sized for a whole cluster in one file (10 000 pools with their Services
/// and slices as separate documents) while still refusing alias bombs and document storms.
fn yaml_limits() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: 250_000,
            max_nodes: 20_000_000,
            max_events: 50_000_000,
        },
    }
}

/// Parses file text into a store. Any problem refuses the whole file: a half-applied file
/// would serve a state nobody wrote.
pub fn parse(file: &str, text: &str) -> Result<Store, FileError> {
    let fail = |place: String, message: String| FileError {
        file: file.to_string(),
        place,
        message,
    };
    let documents: Vec<Value> = serde_saphyr::from_multiple_with_options(text, yaml_limits())
        .map_err(|e| fail(String::new(), format!("not valid YAML: {e}")))?;
    let mut store = Store::default();
    let mut seen: BTreeMap<(String, ObjectKey), String> = BTreeMap::new();
    for (i, document) in documents.into_iter().enumerate() {
        let doc = format!("document {}", i + 1);
        if document.is_null() {
            continue;
        }
        // `kubectl get -o yaml` prints a `kind: List` of items.
        if document.get("kind").and_then(Value::as_str) == Some("List") {
            let items = match document.get("items") {
                Some(Value::Array(items)) => items.clone(),
                Some(Value::Null) | None => Vec::new(),
                Some(_) => return Err(fail(format!("{doc}: "), "items: must be a list".into())),
            };
            for (j, item) in items.into_iter().enumerate() {
                let place = format!("{doc}, item {}", j + 1);
                add_object(&mut store, &mut seen, &place, item).map_err(|(p, m)| fail(p, m))?;
            }
        } else {
            add_object(&mut store, &mut seen, &doc, document).map_err(|(p, m)| fail(p, m))?;
        }
    }
    Ok(store)
}

type Problem = (String, String);

fn add_object(
    store: &mut Store,
    seen: &mut BTreeMap<(String, ObjectKey), String>,
    place: &str,
    object: Value,
) -> Result<(), Problem> {
    let Value::Object(map) = &object else {
        return Err((
            format!("{place}: "),
            "must be a Kubernetes object (a mapping)".into(),
        ));
    };
    let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if kind.is_empty() || api_version.is_empty() {
        return Err((format!("{place}: "), "needs apiVersion and kind".into()));
    }
    if name.is_empty() {
        return Err((
            format!("{place} ({kind}): "),
            "metadata.name: required".into(),
        ));
    }
    let namespace = map
        .get("metadata")
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let key = ObjectKey::new(namespace, name);
    let here = format!("{place} ({kind} {key})");
    let known = matches!(
        (api_version, kind),
        ("v1", "Service")
            | ("v1", "Secret")
            | ("discovery.k8s.io/v1", "EndpointSlice")
            | ("v1", "Namespace")
            | ("weir.dev/v1alpha1", "LoadBalancerPool")
            | ("gateway.networking.k8s.io/v1", "GatewayClass")
            | ("gateway.networking.k8s.io/v1", "Gateway")
            | ("gateway.networking.k8s.io/v1", "HTTPRoute")
            | ("gateway.networking.k8s.io/v1", "GRPCRoute")
            | ("gateway.networking.k8s.io/v1", "ReferenceGrant")
            | ("gateway.networking.k8s.io/v1beta1", "ReferenceGrant")
            | ("networking.k8s.io/v1", "Ingress")
            | ("networking.k8s.io/v1", "IngressClass")
    );
    if !known {
        tracing::warn!(
            place,
            api_version,
            kind,
            "skipping an object of a kind weir does not use"
        );
        return Ok(());
    }
    if let Some(first) = seen.insert((kind.to_string(), key.clone()), place.to_string()) {
        return Err((format!("{here}: "), format!("the same object as {first}")));
    }
    match kind {
        "Service" => {
            let s: Service = decode(&here, object)?;
            store
                .services
                .insert(key, Arc::new(ServicePorts::from_service(&s)));
        }
        "Secret" => {
            let s: Secret = decode(&here, object)?;
            store
                .secrets
                .insert(key, Arc::new(TlsSecret::from_secret(s)));
        }
        "EndpointSlice" => {
            let s: EndpointSlice = decode(&here, object)?;
            store.slices.insert(key, Arc::new(Slice::from_slice(&s)));
        }
        // Cluster-wide kinds: known by name alone.
        "Namespace" => {
            let n: Namespace = decode(&here, object)?;
            let labels = n.metadata.labels.unwrap_or_default();
            store.namespace_labels.insert(key.name, Arc::new(labels));
        }
        "GatewayClass" => {
            let mut class: GatewayClass = decode(&here, object)?;
            class.metadata.namespace = None;
            store.gateway_classes.insert(key.name, Arc::new(class));
        }
        "Gateway" => {
            let mut gateway: Gateway = decode(&here, object)?;
            gateway.metadata.namespace = Some(key.namespace.clone());
            store.gateways.insert(key, Arc::new(gateway));
        }
        "HTTPRoute" => {
            let mut route: HTTPRoute = decode(&here, object)?;
            route.metadata.namespace = Some(key.namespace.clone());
            store.http_routes.insert(key, Arc::new(route));
        }
        "GRPCRoute" => {
            let mut route: GRPCRoute = decode(&here, object)?;
            route.metadata.namespace = Some(key.namespace.clone());
            store.grpc_routes.insert(key, Arc::new(route));
        }
        "Ingress" => {
            let mut ingress: Ingress = decode(&here, object)?;
            ingress.metadata.namespace = Some(key.namespace.clone());
            ingress.status = None;
            store.ingresses.insert(key, Arc::new(ingress));
        }
        "IngressClass" => {
            let mut class: IngressClass = decode(&here, object)?;
            class.metadata.namespace = None;
            store.ingress_classes.insert(key.name, Arc::new(class));
        }
        "ReferenceGrant" => {
            // v1beta1 (still the standard channel's stored version) has the same schema as v1.
            let mut object = object;
            object["apiVersion"] = Value::from("gateway.networking.k8s.io/v1");
            let mut grant: ReferenceGrant = decode(&here, object)?;
            grant.metadata.namespace = Some(key.namespace.clone());
            store.reference_grants.insert(key, Arc::new(grant));
        }
        _ => {
            if let Some(field) = list_for_mapping(&object, pool_schema()) {
                let field = field.strip_prefix('.').unwrap_or(&field);
                return Err((
                    format!("{here}: {field}: "),
                    "invalid type: sequence, expected a mapping".into(),
                ));
            }
            let mut pool: LoadBalancerPool = decode(&here, object)?;
            if let Some(e) = validate_spec(&pool.spec).into_iter().next() {
                return Err((format!("{here}: {}: ", e.field), e.message));
            }
            pool.metadata.namespace = Some(key.namespace.clone());
            store.pools.insert(key, Arc::new(reduce::pool(pool)));
        }
    }
    Ok(())
}

/// Decodes one object, naming the field that is wrong, and refusing fields the type does not
/// have (as `kubectl apply` does by default) so a typo does not pass silently.
fn decode<T: DeserializeOwned>(here: &str, object: Value) -> Result<T, Problem> {
    let mut unknown = Vec::new();
    let mut note = |path: serde_ignored::Path<'_>| unknown.push(field_path(&path.to_string()));
    let ignored = serde_ignored::Deserializer::new(object, &mut note);
    let value: T = serde_path_to_error::deserialize(ignored).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        (format!("{here}: {path}: "), inner)
    })?;
    // Derived custom resources check apiVersion and kind themselves and leave them "unused".
    if let Some(field) = unknown.iter().find(|f| *f != "apiVersion" && *f != "kind") {
        return Err((format!("{here}: {field}: "), "unknown field".into()));
    }
    Ok(value)
}

/// The CRD's schema of a whole `LoadBalancerPool` object.
fn pool_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(LoadBalancerPool::crd()).unwrap_or_default();
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    })
}

/// The first field (`spec.timeouts`) that holds a list where the schema says `type: object`.
/// serde's derived structs take a list as their fields in order (`timeouts: [1000, 60, 300]`),
/// which the API server refuses; so does the file source, before it decodes.
fn list_for_mapping(value: &Value, schema: &Value) -> Option<String> {
    match value {
        Value::Array(items) => {
            if schema.get("type").and_then(Value::as_str) == Some("object") {
                return Some(String::new());
            }
            let item_schema = schema.get("items")?;
            items.iter().enumerate().find_map(|(i, item)| {
                list_for_mapping(item, item_schema).map(|rest| format!("[{i}]{rest}"))
            })
        }
        Value::Object(map) => {
            let properties = schema.get("properties")?.as_object()?;
            map.iter().find_map(|(key, field)| {
                list_for_mapping(field, properties.get(key)?).map(|rest| format!(".{key}{rest}"))
            })
        }
        _ => None,
    }
}

/// `spec.backends.0.x` as `spec.backends[0].x`, the form the other errors use.
fn field_path(dotted: &str) -> String {
    let mut out = String::new();
    for part in dotted.split('.') {
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}
