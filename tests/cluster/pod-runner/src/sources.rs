//! The Secrets and ConfigMaps a pod refers to, read once before its containers start, so that
//! env and volume code stays pure (and testable without an API server).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};

/// What one pod's env and volumes refer to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct References {
    pub secrets: BTreeSet<String>,
    pub config_maps: BTreeSet<String>,
}

/// Every Secret and ConfigMap named in a pod's env, envFrom and volumes.
pub fn references(pod: &Pod) -> References {
    let mut refs = References::default();
    let Some(spec) = &pod.spec else { return refs };
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for container in containers {
        for var in container.env.iter().flatten() {
            if let Some(from) = &var.value_from {
                if let Some(s) = &from.secret_key_ref {
                    refs.secrets.insert(s.name.clone());
                }
                if let Some(c) = &from.config_map_key_ref {
                    refs.config_maps.insert(c.name.clone());
                }
            }
        }
        for from in container.env_from.iter().flatten() {
            if let Some(s) = &from.secret_ref {
                refs.secrets.insert(s.name.clone());
            }
            if let Some(c) = &from.config_map_ref {
                refs.config_maps.insert(c.name.clone());
            }
        }
    }
    for volume in spec.volumes.iter().flatten() {
        if let Some(s) = volume.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            refs.secrets.insert(s);
        }
        if let Some(c) = &volume.config_map {
            refs.config_maps.insert(c.name.clone());
        }
        for source in volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
        {
            if let Some(s) = &source.secret {
                refs.secrets.insert(s.name.clone());
            }
            if let Some(c) = &source.config_map {
                refs.config_maps.insert(c.name.clone());
            }
        }
    }
    refs
}

/// The data of the objects that exist; a name missing here was not found.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    pub config_maps: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

impl Sources {
    pub fn add_secret(&mut self, name: &str, secret: &Secret) {
        let data = keys(secret.string_data.as_ref(), secret.data.as_ref());
        self.secrets.insert(name.to_string(), data);
    }

    pub fn add_config_map(&mut self, name: &str, config_map: &ConfigMap) {
        let data = keys(config_map.data.as_ref(), config_map.binary_data.as_ref());
        self.config_maps.insert(name.to_string(), data);
    }
}

/// An object's keys as bytes: the text ones, then the binary ones (over a text key of the
/// same name).
fn keys(
    text: Option<&BTreeMap<String, String>>,
    binary: Option<&BTreeMap<String, ByteString>>,
) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = text
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (key, value) in binary.into_iter().flatten() {
        data.insert(key.clone(), value.0.clone());
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_env_and_volume_references() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "n"},
            "spec": {
                "containers": [{
                    "name": "c",
                    "env": [
                        {"name": "A", "valueFrom": {"secretKeyRef": {"name": "s1", "key": "k"}}},
                        {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "c1", "key": "k"}}}
                    ],
                    "envFrom": [{"secretRef": {"name": "s2"}}]
                }],
                "volumes": [
                    {"name": "v1", "secret": {"secretName": "s3"}},
                    {"name": "v2", "configMap": {"name": "c2"}},
                    {"name": "v3", "projected": {"sources": [
                        {"configMap": {"name": "kube-root-ca.crt"}},
                        {"serviceAccountToken": {"path": "token"}}
                    ]}}
                ]
            }
        }))
        .unwrap();
        let refs = references(&pod);
        assert_eq!(refs.secrets.iter().collect::<Vec<_>>(), ["s1", "s2", "s3"]);
        assert_eq!(
            refs.config_maps.iter().collect::<Vec<_>>(),
            ["c1", "c2", "kube-root-ca.crt"]
        );
    }
}
