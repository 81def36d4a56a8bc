//! The Node object: registered (create, or status replaced if it exists) and kept alive with a
//! Ready heartbeat and a Lease in kube-node-lease, both every ~10 s.

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

pub const NODE_CPU: &str = "2";
pub const NODE_MEMORY_BYTES: u64 = 8 << 30;
pub const KUBELET_VERSION: &str = "v1.36.3";
/// The kubelet port the Node advertises; `kubelet-logs` serves `containerLogs` there.
pub const KUBELET_PORT: u16 = 10250;
const HEARTBEAT: Duration = Duration::from_secs(10);
const FIELD_MANAGER: &str = "weir-pod-runner";

fn ready_condition(now: &str, since: &str) -> Value {
    json!({
        "type": "Ready", "status": "True", "reason": "KubeletReady",
        "message": "weir-pod-runner is posting ready status",
        "lastHeartbeatTime": now, "lastTransitionTime": since,
    })
}

fn pressure(kind: &str, now: &str) -> Value {
    json!({
        "type": kind, "status": "False", "reason": format!("KubeletHasNo{kind}"),
        "message": format!("weir-pod-runner does not track {kind}"),
        "lastHeartbeatTime": now, "lastTransitionTime": now,
    })
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The whole status this runner owns.
pub fn status(name: &str, ip: &str, now: &str) -> Value {
    let resources = json!({
        "cpu": NODE_CPU, "memory": NODE_MEMORY_BYTES.to_string(), "pods": "110",
        "ephemeral-storage": "20Gi",
    });
    json!({
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            pressure("MemoryPressure", now),
            pressure("DiskPressure", now),
            pressure("PIDPressure", now),
            ready_condition(now, now),
        ],
        "addresses": [
            {"type": "InternalIP", "address": ip},
            {"type": "Hostname", "address": name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
        "nodeInfo": {
            "machineID": format!("weir-pod-runner-{name}"),
            "systemUUID": format!("weir-pod-runner-{name}"),
            "bootID": boot_id(),
            "kernelVersion": kernel_version(),
            "osImage": "weir-pod-runner (pods are local processes)",
            "containerRuntimeVersion": concat!("weir-pod-runner://", env!("CARGO_PKG_VERSION")),
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        },
    })
}

pub fn object(name: &str, ip: &str, now: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
            },
        },
        "spec": {},
        "status": status(name, ip, now),
    })
}

fn now_text() -> String {
    crate::status::now().0.to_string()
}

/// Creates the Node, or replaces the status of the one that exists.
pub async fn register(client: &kube::Client, name: &str, ip: &str) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let now = now_text();
    let node: Node = serde_json::from_value(object(name, ip, &now)).context("the Node object")?;
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => tracing::info!(node = name, "registered the node"),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            tracing::info!(node = name, "the node exists; replacing its status");
        }
        Err(e) => return Err(e).context("creating the Node"),
    }
    // Create may drop status; a merge patch replaces every list we own.
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status(name, ip, &now) })),
    )
    .await
    .context("writing the Node status")?;
    Ok(())
}

/// Heartbeats forever: the Ready condition's lastHeartbeatTime and the node Lease.
pub async fn heartbeat(client: kube::Client, name: String, ip: String) {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let mut since = now_text();
    let mut interval = tokio::time::interval(HEARTBEAT);
    loop {
        interval.tick().await;
        let now = now_text();
        // Strategic merge: conditions merge by type, so only Ready's times change.
        let patch = json!({"status": {"conditions": [ready_condition(&now, &since)]}});
        match nodes
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {
                tracing::warn!(node = %name, "the node is gone; registering it again");
                if let Err(e) = register(&nodes.clone().into_client(), &name, &ip).await {
                    tracing::warn!(node = %name, error = %format!("{e:#}"), "registering again failed");
                }
                since = now.clone();
            }
            Err(e) => tracing::warn!(node = %name, error = %e, "node heartbeat failed"),
        }
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {
                "holderIdentity": name,
                "leaseDurationSeconds": 40,
                "renewTime": crate::status::now_micro(),
            },
        });
        if let Err(e) = leases
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(lease),
            )
            .await
        {
            tracing::warn!(node = %name, error = %e, "node lease renewal failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_object_parses() {
        let node: Node =
            serde_json::from_value(object("n1", "10.244.3.2", "2026-01-01T00:00:00Z")).unwrap();
        let status = node.status.unwrap();
        let ready = status
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(status.addresses.unwrap()[0].address, "10.244.3.2");
        assert_eq!(status.node_info.unwrap().kubelet_version, KUBELET_VERSION);
        assert_eq!(status.capacity.unwrap()["pods"].0, "110");
    }
}
