//! A container's environment, resolved the way a kubelet would from the Pod, its Secrets and
//! ConfigMaps, and the addresses this runner gave it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::sources::Sources;

/// What the downward API can say about a running pod beyond its object.
#[derive(Debug, Clone)]
pub struct PodFacts<'a> {
    pub pod: &'a Pod,
    pub pod_ip: String,
    pub host_ip: String,
    pub node_name: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("env {var}: {what} {name:?} not found")]
    MissingObject {
        var: String,
        what: &'static str,
        name: String,
    },
    #[error("env {var}: key {key:?} not in {what} {name:?}")]
    MissingKey {
        var: String,
        what: &'static str,
        name: String,
        key: String,
    },
    #[error("env {var}: unsupported field path {path:?}")]
    Field { var: String, path: String },
    #[error("env {var}: unsupported resource {resource:?}")]
    Resource { var: String, resource: String },
    #[error("envFrom: {what} {name:?} not found")]
    MissingFrom { what: &'static str, name: String },
}

/// `metadata.labels['x']` → ("labels", "x").
fn subscript(path: &str) -> Option<(&str, &str)> {
    let (field, rest) = path.split_once("['")?;
    let key = rest.strip_suffix("']")?;
    Some((field, key))
}

/// One map as the downward API writes it into a file: `key="value"` lines, sorted.
fn map_lines(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}\n"))
        .collect()
}

/// The value of a downward-API field path, or None if the path is not one we know.
pub fn field_value(facts: &PodFacts<'_>, path: &str) -> Option<String> {
    let meta = &facts.pod.metadata;
    let spec = facts.pod.spec.as_ref();
    if let Some((field, key)) = subscript(path) {
        let map = match field {
            "metadata.labels" => meta.labels.as_ref(),
            "metadata.annotations" => meta.annotations.as_ref(),
            _ => return None,
        };
        return Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default());
    }
    Some(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => map_lines(meta.labels.as_ref()),
        "metadata.annotations" => map_lines(meta.annotations.as_ref()),
        "spec.nodeName" => spec
            .and_then(|s| s.node_name.clone())
            .unwrap_or_else(|| facts.node_name.clone()),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        "status.podIP" | "status.podIPs" => facts.pod_ip.clone(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.clone(),
        _ => return None,
    })
}

/// A resource of the container (`limits.cpu`, `requests.memory`, ...). Without a value in the
/// spec, the node's allocatable stands in, as the kubelet does for limits.
pub fn resource_value(container: &Container, resource: &str) -> Option<String> {
    let (kind, name) = resource.split_once('.')?;
    let resources = container.resources.as_ref();
    let set = match kind {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => return None,
    };
    if let Some(q) = set.and_then(|m| m.get(name)) {
        return Some(q.0.clone());
    }
    match name {
        "cpu" => Some(crate::node::NODE_CPU.into()),
        "memory" => Some(crate::node::NODE_MEMORY_BYTES.to_string()),
        "ephemeral-storage" => Some("0".into()),
        _ => None,
    }
}

/// Kubernetes' `$(VAR)` expansion: a defined name is replaced, `$$` is a literal `$`, and
/// anything else stays as written.
pub fn expand(value: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(close) = inner.find(')')
            && let Some(v) = vars.get(&inner[..close])
        {
            out.push_str(v);
            rest = &inner[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The container's own env: `envFrom` first, then `env` (later wins), with `$(VAR)` expanded
/// from what came before, as Kubernetes does.
pub fn resolve(
    container: &Container,
    facts: &PodFacts<'_>,
    sources: &Sources,
) -> Result<BTreeMap<String, String>, EnvError> {
    let mut vars = BTreeMap::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(s) = &from.secret_ref {
            env_from(
                &mut vars,
                &prefix,
                "Secret",
                &sources.secrets,
                &s.name,
                s.optional,
            )?;
        }
        if let Some(c) = &from.config_map_ref {
            env_from(
                &mut vars,
                &prefix,
                "ConfigMap",
                &sources.config_maps,
                &c.name,
                c.optional,
            )?;
        }
    }
    for var in container.env.iter().flatten() {
        let name = var.name.clone();
        let value = match &var.value_from {
            None => Some(expand(var.value.as_deref().unwrap_or(""), &vars)),
            Some(from) => {
                if let Some(f) = &from.field_ref {
                    Some(
                        field_value(facts, &f.field_path).ok_or_else(|| EnvError::Field {
                            var: name.clone(),
                            path: f.field_path.clone(),
                        })?,
                    )
                } else if let Some(r) = &from.resource_field_ref {
                    Some(resource_value(container, &r.resource).ok_or_else(|| {
                        EnvError::Resource {
                            var: name.clone(),
                            resource: r.resource.clone(),
                        }
                    })?)
                } else if let Some(s) = &from.secret_key_ref {
                    key_ref(
                        &name,
                        "Secret",
                        &sources.secrets,
                        &s.name,
                        &s.key,
                        s.optional,
                    )?
                } else if let Some(c) = &from.config_map_key_ref {
                    key_ref(
                        &name,
                        "ConfigMap",
                        &sources.config_maps,
                        &c.name,
                        &c.key,
                        c.optional,
                    )?
                } else {
                    None
                }
            }
        };
        if let Some(value) = value {
            vars.insert(name, value);
        }
    }
    Ok(vars)
}

/// A `secretRef`/`configMapRef` of `envFrom`: every key, prefixed; nothing when optional and
/// missing.
fn env_from(
    vars: &mut BTreeMap<String, String>,
    prefix: &str,
    what: &'static str,
    objects: &BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    name: &str,
    optional: Option<bool>,
) -> Result<(), EnvError> {
    match objects.get(name) {
        Some(data) => {
            for (k, v) in data {
                vars.insert(format!("{prefix}{k}"), text(v));
            }
            Ok(())
        }
        None if optional == Some(true) => Ok(()),
        None => Err(EnvError::MissingFrom {
            what,
            name: name.into(),
        }),
    }
}

/// A `secretKeyRef`/`configMapKeyRef`: None when optional and missing (the var is not set).
fn key_ref(
    var: &str,
    what: &'static str,
    objects: &BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    name: &str,
    key: &str,
    optional: Option<bool>,
) -> Result<Option<String>, EnvError> {
    let optional = optional == Some(true);
    match objects.get(name) {
        None if optional => Ok(None),
        None => Err(EnvError::MissingObject {
            var: var.into(),
            what,
            name: name.into(),
        }),
        Some(data) => match data.get(key) {
            Some(v) => Ok(Some(text(v))),
            None if optional => Ok(None),
            None => Err(EnvError::MissingKey {
                var: var.into(),
                what,
                name: name.into(),
                key: key.into(),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": "web-1", "namespace": "apps", "uid": "u-1",
                "labels": {"app": "web", "tier": "front"},
                "annotations": {"note": "hi"}
            },
            "spec": {
                "nodeName": "weir-node",
                "serviceAccountName": "web",
                "containers": [{
                    "name": "c",
                    "resources": {"limits": {"memory": "64Mi"}},
                    "envFrom": [
                        {"configMapRef": {"name": "cm"}, "prefix": "CM_"},
                        {"secretRef": {"name": "nope", "optional": true}}
                    ],
                    "env": [
                        {"name": "PLAIN", "value": "x"},
                        {"name": "EXPANDED", "value": "$(PLAIN)-$(UNSET)-$$(PLAIN)"},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                        {"name": "NOTE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['note']"}}},
                        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                        {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "IPS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}},
                        {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}},
                        {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                        {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                        {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "s", "key": "absent", "optional": true}}},
                        {"name": "CMKEY", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "a"}}}
                    ]
                }]
            }
        }))
        .unwrap()
    }

    fn sources() -> Sources {
        let mut s = Sources::default();
        s.secrets
            .insert("s".into(), [("k".to_string(), b"secret".to_vec())].into());
        s.config_maps.insert(
            "cm".into(),
            [
                ("a".to_string(), b"1".to_vec()),
                ("b".to_string(), b"2".to_vec()),
            ]
            .into(),
        );
        s
    }

    #[test]
    fn resolves_every_kind() {
        let pod = pod();
        let facts = PodFacts {
            pod: &pod,
            pod_ip: "10.244.3.130".into(),
            host_ip: "10.244.3.2".into(),
            node_name: "weir-node".into(),
        };
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let env = resolve(container, &facts, &sources()).unwrap();
        let get = |k: &str| env.get(k).map(String::as_str);
        assert_eq!(get("PLAIN"), Some("x"));
        assert_eq!(get("EXPANDED"), Some("x-$(UNSET)-$(PLAIN)"));
        assert_eq!(get("POD_NAME"), Some("web-1"));
        assert_eq!(get("NAMESPACE"), Some("apps"));
        assert_eq!(get("UID"), Some("u-1"));
        assert_eq!(get("APP"), Some("web"));
        assert_eq!(get("NOTE"), Some("hi"));
        assert_eq!(get("NODE"), Some("weir-node"));
        assert_eq!(get("SA"), Some("web"));
        assert_eq!(get("IP"), Some("10.244.3.130"));
        assert_eq!(get("IPS"), Some("10.244.3.130"));
        assert_eq!(get("HOST"), Some("10.244.3.2"));
        assert_eq!(get("MEM"), Some("64Mi"));
        assert_eq!(get("CPU"), Some("2"));
        assert_eq!(get("KEY"), Some("secret"));
        assert_eq!(get("OPT"), None);
        assert_eq!(get("CMKEY"), Some("1"));
        assert_eq!(get("CM_a"), Some("1"));
        assert_eq!(get("CM_b"), Some("2"));
        assert_eq!(
            field_value(&facts, "metadata.labels").unwrap(),
            "app=\"web\"\ntier=\"front\"\n"
        );
    }

    #[test]
    fn missing_required_secret_is_an_error() {
        let pod = pod();
        let facts = PodFacts {
            pod: &pod,
            pod_ip: "1.1.1.1".into(),
            host_ip: "1.1.1.2".into(),
            node_name: "n".into(),
        };
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let mut s = sources();
        s.secrets.clear();
        let err = resolve(container, &facts, &s).unwrap_err();
        assert!(matches!(err, EnvError::MissingObject { ref name, .. } if name == "s"));
    }

    #[test]
    fn expansion() {
        let vars: BTreeMap<String, String> = [("A".to_string(), "1".to_string())].into();
        assert_eq!(expand("$(A)$(A)", &vars), "11");
        assert_eq!(expand("$A $( $(A", &vars), "$A $( $(A");
        assert_eq!(expand("cost $$5", &vars), "cost $5");
    }
}
