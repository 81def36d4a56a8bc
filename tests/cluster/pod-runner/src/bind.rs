//! The scheduler's part: every Pod without a node is bound to ours.

use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::watcher::{self, Event};
use serde_json::json;

fn wants_binding(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    pod.metadata.deletion_timestamp.is_none()
        && spec.is_some_and(|s| s.node_name.as_deref().unwrap_or("").is_empty())
        // The API server refuses to bind a pod that still has scheduling gates.
        && spec.is_none_or(|s| s.scheduling_gates.as_ref().is_none_or(|g| g.is_empty()))
}

async fn bind(client: kube::Client, pod: Pod, node: String) {
    let (Some(name), Some(namespace)) = (pod.metadata.name.clone(), pod.metadata.namespace.clone())
    else {
        return;
    };
    let api: Api<Pod> = Api::namespaced(client, &namespace);
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name, "namespace": namespace, "uid": pod.metadata.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    for attempt in 1..=5u32 {
        match api
            .create_subresource::<_, serde_json::Value>(
                "binding",
                &name,
                &PostParams::default(),
                &binding,
            )
            .await
        {
            Ok(_) => {
                tracing::info!(pod = %name, namespace = %namespace, node = %node, "bound");
                return;
            }
            // Already bound (by us, racing a re-list), or gone: nothing to do.
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => return,
            Err(e) => {
                tracing::warn!(pod = %name, namespace = %namespace, attempt, error = %e, "binding failed");
                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
            }
        }
    }
}

/// Watches unbound pods (as the scheduler) forever.
pub async fn run(client: kube::Client, node: String) {
    let api: Api<Pod> = Api::all(client.clone());
    let config = watcher::Config::default()
        .fields("spec.nodeName=,status.phase!=Succeeded,status.phase!=Failed");
    let mut stream = watcher::watcher(api, config).boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Apply(pod) | Event::InitApply(pod)) if wants_binding(&pod) => {
                tokio::spawn(bind(client.clone(), pod, node.clone()));
            }
            Ok(_) => {}
            Err(e) => {
                // The watcher backs off and reconnects by itself.
                tracing::warn!(error = %e, "watching unbound pods");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_pods_are_bound() {
        let pod = |v: serde_json::Value| -> Pod { serde_json::from_value(v).unwrap() };
        assert!(wants_binding(&pod(
            json!({"metadata": {"name": "a"}, "spec": {"containers": []}})
        )));
        assert!(!wants_binding(&pod(
            json!({"metadata": {"name": "a"}, "spec": {"containers": [], "nodeName": "n"}})
        )));
        assert!(!wants_binding(&pod(
            json!({"metadata": {"name": "a"}, "spec": {"containers": [], "schedulingGates": [{"name": "g"}]}})
        )));
        assert!(!wants_binding(&pod(
            json!({"metadata": {"name": "a", "deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"containers": []}})
        )));
    }
}
