//! What the store keeps of the objects it holds whole: Secrets and pools lose what compile
//! never reads as they arrive, since every publish clones the store's maps and every Secret
//! held whole would be a copy of keys weir has no business keeping.

use crate::api::LoadBalancerPool;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// The keys of a `kubernetes.io/tls` Secret that compile reads.
pub const TLS_KEYS: [&str; 2] = ["tls.crt", "tls.key"];

/// The annotation `kubectl apply` writes: a whole copy of the object as last applied.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A Secret reduced to its certificate and key (in `data`; `stringData`, which a file may
/// use, folded in, `data` winning as the API server does), with its name and namespace.
pub fn secret(secret: Secret) -> Secret {
    let Secret {
        metadata,
        data,
        string_data,
        type_,
        ..
    } = secret;
    let mut data = data.unwrap_or_default();
    let mut string_data = string_data.unwrap_or_default();
    let kept: BTreeMap<String, ByteString> = TLS_KEYS
        .iter()
        .filter_map(|&key| {
            let value = data
                .remove(key)
                .or_else(|| string_data.remove(key).map(|s| ByteString(s.into_bytes())))?;
            Some((key.to_string(), value))
        })
        .collect();
    Secret {
        metadata: ObjectMeta {
            name: metadata.name,
            namespace: metadata.namespace,
            ..Default::default()
        },
        data: Some(kept),
        type_,
        ..Default::default()
    }
}

/// A pool without its `managedFields` and last-applied copy (both often larger than the pool
/// itself); the rest of its metadata stays, as status writes read its generation and uid.
pub fn pool(mut pool: LoadBalancerPool) -> LoadBalancerPool {
    let meta = &mut pool.metadata;
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
    pool
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_secret_keeps_only_the_certificate_and_key() {
        let s: Secret = serde_json::from_value(json!({
            "metadata": {"name": "tls", "namespace": "shop", "uid": "u", "labels": {"a": "b"},
                         "annotations": {LAST_APPLIED: "{}"},
                         "managedFields": [{"manager": "kubectl"}]},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": "Y3J0", "ca.crt": "Y2E="},
            "stringData": {"tls.key": "key", "tls.crt": "ignored", "password": "p"},
        }))
        .expect("test secret");
        let kept = secret(s);
        let data = kept.data.clone().unwrap_or_default();
        assert_eq!(data.keys().collect::<Vec<_>>(), ["tls.crt", "tls.key"]);
        assert_eq!(data["tls.crt"].0, b"crt");
        assert_eq!(data["tls.key"].0, b"key");
        assert_eq!(kept.string_data, None);
        assert_eq!(kept.type_.as_deref(), Some("kubernetes.io/tls"));
        assert_eq!(
            kept.metadata,
            ObjectMeta {
                name: Some("tls".into()),
                namespace: Some("shop".into()),
                ..Default::default()
            }
        );
    }

    #[test]
    fn a_pool_loses_managed_fields_and_the_last_applied_copy_only() {
        let p: LoadBalancerPool = serde_json::from_value(json!({
            "apiVersion": "weir.dev/v1alpha1", "kind": "LoadBalancerPool",
            "metadata": {"name": "web", "namespace": "shop", "generation": 3,
                         "annotations": {LAST_APPLIED: "{}", "team": "web"},
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": {"backends": [{"service": "web", "port": "http"}]},
        }))
        .expect("test pool");
        let kept = pool(p.clone());
        assert_eq!(kept.metadata.managed_fields, None);
        assert_eq!(kept.metadata.generation, Some(3));
        let annotations = kept.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations.keys().collect::<Vec<_>>(), ["team"]);
        assert_eq!(kept.spec, p.spec);
    }
}
