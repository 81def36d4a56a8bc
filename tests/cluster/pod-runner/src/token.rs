//! ServiceAccount tokens from the TokenRequest API, bound to the pod, and the kubeconfig a
//! pod's process gets (KUBECONFIG) with the API server address, the cluster CA and a token.

use anyhow::{Context, Result};
use base64::Engine;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use serde_json::json;

/// A token for the pod's ServiceAccount, bound to the pod (so it dies with it).
pub async fn request(
    client: &kube::Client,
    namespace: &str,
    service_account: &str,
    pod_name: &str,
    pod_uid: &str,
    audience: Option<&str>,
    expiration_seconds: i64,
) -> Result<String> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {
            "audiences": audience.map(|a| vec![a]).unwrap_or_default(),
            "expirationSeconds": expiration_seconds,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod_name, "uid": pod_uid},
        },
    });
    let answer: TokenRequest = api
        .create_subresource("token", service_account, &PostParams::default(), &request)
        .await
        .with_context(|| {
            format!("requesting a token for serviceaccount {namespace}/{service_account}")
        })?;
    answer
        .status
        .and_then(|s| s.token)
        .filter(|t| !t.is_empty())
        .context("the TokenRequest answer has no token")
}

/// A kubeconfig (JSON is YAML) for one token.
pub fn kubeconfig(server: &str, ca_pem: &[u8], token: &str, namespace: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": "pod", "user": {"token": token}}],
        "contexts": [{"name": "pod", "context": {"cluster": "cluster", "user": "pod", "namespace": namespace}}],
        "current-context": "pod",
    })
    .to_string()
}

/// KUBERNETES_SERVICE_HOST and _PORT for an API server URL.
pub fn service_host_port(server: &str) -> Option<(String, String)> {
    let uri: http::Uri = server.parse().ok()?;
    let host = uri
        .host()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("http") {
            80
        } else {
            443
        });
    Some((host, port.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_and_service_env() {
        let text = kubeconfig("https://10.244.3.1:6443", b"CA", "tok", "ns");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["users"][0]["user"]["token"], "tok");
        assert_eq!(
            v["clusters"][0]["cluster"]["certificate-authority-data"],
            "Q0E="
        );
        assert_eq!(
            service_host_port("https://10.244.3.1:6443"),
            Some(("10.244.3.1".into(), "6443".into()))
        );
        assert_eq!(
            service_host_port("https://api.example"),
            Some(("api.example".into(), "443".into()))
        );
    }
}
