//! What the store keeps of the objects it holds whole: pools lose what compile never reads as
//! they arrive, since every publish clones the store's maps. (Services, slices and Secrets are
//! not held whole at all: see [`super::ServicePorts`], [`super::Slice`], [`super::TlsSecret`].)

use crate::api::LoadBalancerPool;

/// The annotation `kubectl apply` writes: a whole copy of the object as last applied.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

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
