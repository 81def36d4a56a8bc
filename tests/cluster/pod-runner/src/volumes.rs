//! Volumes made real: each goes to `<pod folder>/volumes/<name>/`, written from the Secrets,
//! ConfigMaps, downward API and tokens already fetched (so this module does no I/O but files).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, KeyToPath, Pod, ServiceAccountTokenProjection,
};

use crate::env::{PodFacts, field_value, resource_value};
use crate::rewrite::Mount;
use crate::sources::Sources;

/// A token a projected volume wants: its audience and lifetime.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokenKey {
    pub audience: Option<String>,
    pub expiration_seconds: i64,
}

impl TokenKey {
    fn of(projection: &ServiceAccountTokenProjection) -> Self {
        TokenKey {
            audience: projection.audience.clone().filter(|a| !a.is_empty()),
            expiration_seconds: projection.expiration_seconds.unwrap_or(3600),
        }
    }
}

/// Every token the pod's projected volumes ask for.
pub fn token_requests(pod: &Pod) -> Vec<TokenKey> {
    let mut keys: Vec<TokenKey> = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .flat_map(|v| v.projected.iter().flat_map(|p| p.sources.iter().flatten()))
        .filter_map(|s| s.service_account_token.as_ref())
        .map(TokenKey::of)
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Writes one file, its folders made, with a Kubernetes mode (an int, 0644 = 420).
fn write(dir: &Path, relative: &str, data: &[u8], mode: Option<i32>) -> Result<()> {
    let relative = Path::new(relative);
    if relative.is_absolute()
        || relative
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        bail!("refusing the volume path {}", relative.display());
    }
    let path = dir.join(relative);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
    let mode = mode.unwrap_or(0o644) as u32 & 0o7777;
    fs::set_permissions(&path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))?;
    Ok(())
}

/// The keys of a Secret or ConfigMap into a folder: all of them, or only `items`.
fn write_keys(
    dir: &Path,
    what: &str,
    name: &str,
    data: Option<&BTreeMap<String, Vec<u8>>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<()> {
    let Some(data) = data else {
        if optional {
            return Ok(());
        }
        bail!("{what} {name:?} not found");
    };
    match items {
        None => {
            for (key, value) in data {
                write(dir, key, value, default_mode)?;
            }
        }
        Some(items) => {
            for item in items {
                match data.get(&item.key) {
                    Some(value) => write(dir, &item.path, value, item.mode.or(default_mode))?,
                    None if optional => {}
                    None => bail!("key {:?} not in {what} {name:?}", item.key),
                }
            }
        }
    }
    Ok(())
}

fn downward_item(
    facts: &PodFacts<'_>,
    containers: &[Container],
    item: &DownwardAPIVolumeFile,
) -> Result<String> {
    if let Some(f) = &item.field_ref {
        let path = &f.field_path;
        return field_value(facts, path).with_context(|| format!("unsupported field {path:?}"));
    }
    if let Some(r) = &item.resource_field_ref {
        let resource = &r.resource;
        let container = containers
            .iter()
            .find(|c| Some(c.name.as_str()) == r.container_name.as_deref())
            .or_else(|| containers.first())
            .context("no container for a resourceFieldRef")?;
        return resource_value(container, resource)
            .with_context(|| format!("unsupported resource {resource:?}"));
    }
    bail!("a downward API item with neither fieldRef nor resourceFieldRef")
}

/// The items of a downwardAPI volume (or of a projected volume's downwardAPI source).
fn write_downward(
    dir: &Path,
    facts: &PodFacts<'_>,
    containers: &[Container],
    items: Option<&Vec<DownwardAPIVolumeFile>>,
    default_mode: Option<i32>,
) -> Result<()> {
    for item in items.into_iter().flatten() {
        let value = downward_item(facts, containers, item)?;
        write(
            dir,
            &item.path,
            value.as_bytes(),
            item.mode.or(default_mode),
        )?;
    }
    Ok(())
}

/// Makes every volume; returns the local folder of each by volume name.
pub fn materialise(
    facts: &PodFacts<'_>,
    sources: &Sources,
    tokens: &BTreeMap<TokenKey, String>,
    ca_pem: &[u8],
    pod_dir: &Path,
) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    let Some(spec) = facts.pod.spec.as_ref() else {
        return Ok(out);
    };
    let namespace = facts.pod.metadata.namespace.clone().unwrap_or_default();
    for volume in spec.volumes.iter().flatten() {
        let name = &volume.name;
        let what = || format!("volume {name:?}");
        if let Some(host) = &volume.host_path {
            // A hostPath is the host's path: there is no container file system to mount it in.
            out.insert(name.clone(), PathBuf::from(&host.path));
            continue;
        }
        let dir = pod_dir.join("volumes").join(name);
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        if let Some(s) = &volume.secret {
            let secret = s.secret_name.clone().unwrap_or_default();
            write_keys(
                &dir,
                "Secret",
                &secret,
                sources.secrets.get(&secret),
                s.items.as_ref(),
                s.default_mode,
                s.optional == Some(true),
            )
            .with_context(what)?;
        } else if let Some(c) = &volume.config_map {
            write_keys(
                &dir,
                "ConfigMap",
                &c.name,
                sources.config_maps.get(&c.name),
                c.items.as_ref(),
                c.default_mode,
                c.optional == Some(true),
            )
            .with_context(what)?;
        } else if let Some(d) = &volume.downward_api {
            write_downward(
                &dir,
                facts,
                &spec.containers,
                d.items.as_ref(),
                d.default_mode,
            )
            .with_context(what)?;
        } else if let Some(p) = &volume.projected {
            for source in p.sources.iter().flatten() {
                if let Some(t) = &source.service_account_token {
                    let token = tokens
                        .get(&TokenKey::of(t))
                        .context("no token was issued")?;
                    write(
                        &dir,
                        &t.path,
                        token.as_bytes(),
                        p.default_mode.or(Some(0o600)),
                    )
                    .with_context(what)?;
                }
                if let Some(s) = &source.secret {
                    write_keys(
                        &dir,
                        "Secret",
                        &s.name,
                        sources.secrets.get(&s.name),
                        s.items.as_ref(),
                        p.default_mode,
                        s.optional == Some(true),
                    )
                    .with_context(what)?;
                }
                if let Some(c) = &source.config_map {
                    // kube-root-ca.crt may not be published yet; the cluster CA is the same.
                    let fallback: BTreeMap<String, Vec<u8>>;
                    let data = match sources.config_maps.get(&c.name) {
                        Some(d) => Some(d),
                        None if c.name == "kube-root-ca.crt" && !ca_pem.is_empty() => {
                            fallback = [("ca.crt".to_string(), ca_pem.to_vec())].into();
                            Some(&fallback)
                        }
                        None => None,
                    };
                    write_keys(
                        &dir,
                        "ConfigMap",
                        &c.name,
                        data,
                        c.items.as_ref(),
                        p.default_mode,
                        c.optional == Some(true),
                    )
                    .with_context(what)?;
                }
                if let Some(d) = &source.downward_api {
                    write_downward(
                        &dir,
                        facts,
                        &spec.containers,
                        d.items.as_ref(),
                        p.default_mode,
                    )
                    .with_context(what)?;
                }
            }
        } else if volume.empty_dir.is_some() {
            // The folder is the volume.
        } else {
            tracing::warn!(
                pod = ?facts.pod.metadata.name, namespace = %namespace, volume = %name,
                "unsupported volume type: an empty folder stands in"
            );
        }
        out.insert(name.clone(), dir);
    }
    Ok(out)
}

/// A container's mounts as rewriting rules: mountPath → volume folder (+ subPath).
pub fn mounts(container: &Container, volumes: &BTreeMap<String, PathBuf>) -> Vec<Mount> {
    container
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| {
            let mut local = volumes.get(&m.name)?.clone();
            if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                local = local.join(sub);
            }
            Some(Mount {
                container_path: m.mount_path.clone(),
                local_path: local,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn makes_secret_configmap_downward_projected_and_empty_dir() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"a": "b"}},
            "spec": {
                "containers": [{"name": "c", "volumeMounts": [
                    {"name": "secret", "mountPath": "/etc/secret-volume"},
                    {"name": "cm", "mountPath": "/etc/cm", "subPath": "ca"}
                ]}],
                "volumes": [
                    {"name": "secret", "secret": {"secretName": "tls", "defaultMode": 256,
                        "items": [{"key": "tls.crt", "path": "crt"}, {"key": "tls.key", "path": "key"}]}},
                    {"name": "cm", "configMap": {"name": "ca"}},
                    {"name": "missing", "configMap": {"name": "nope", "optional": true}},
                    {"name": "down", "downwardAPI": {"items": [
                        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                        {"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}
                    ]}},
                    {"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}
                    ]}},
                    {"name": "scratch", "emptyDir": {}}
                ]
            }
        }))
        .unwrap();
        let mut sources = Sources::default();
        sources.secrets.insert(
            "tls".into(),
            [
                ("tls.crt".to_string(), b"CRT".to_vec()),
                ("tls.key".to_string(), b"KEY".to_vec()),
            ]
            .into(),
        );
        sources
            .config_maps
            .insert("ca".into(), [("ca".to_string(), b"CA".to_vec())].into());
        let keys = token_requests(&pod);
        assert_eq!(
            keys,
            [TokenKey {
                audience: None,
                expiration_seconds: 3607
            }]
        );
        let tokens = [(keys[0].clone(), "TOKEN".to_string())].into();
        let facts = PodFacts {
            pod: &pod,
            pod_ip: "10.0.0.5".into(),
            host_ip: "10.0.0.2".into(),
            node_name: "n".into(),
        };
        let dir = tempfile::tempdir().unwrap();
        let volumes = materialise(&facts, &sources, &tokens, b"CLUSTER-CA", dir.path()).unwrap();
        let read = |v: &str, f: &str| fs::read_to_string(volumes[v].join(f)).unwrap();
        assert_eq!(read("secret", "crt"), "CRT");
        assert_eq!(read("secret", "key"), "KEY");
        let mode = fs::metadata(volumes["secret"].join("key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400);
        assert_eq!(read("cm", "ca"), "CA");
        assert_eq!(read("down", "labels"), "a=\"b\"\n");
        assert_eq!(read("down", "ns"), "ns");
        assert_eq!(read("kube-api-access", "token"), "TOKEN");
        assert_eq!(read("kube-api-access", "ca.crt"), "CLUSTER-CA");
        assert_eq!(read("kube-api-access", "namespace"), "ns");
        assert!(volumes["scratch"].is_dir());
        assert!(volumes["missing"].is_dir());

        let container = &pod.spec.as_ref().unwrap().containers[0];
        let m = mounts(container, &volumes);
        assert_eq!(m[1].local_path, volumes["cm"].join("ca"));

        let mut no_secret = sources.clone();
        no_secret.secrets.clear();
        assert!(materialise(&facts, &no_secret, &tokens, b"", dir.path()).is_err());
    }
}
