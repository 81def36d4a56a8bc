//! From a container to the process that plays it: program, rewritten args and the full env.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Container;

use crate::images::Program;
use crate::process::Spec;
use crate::rewrite::Rewriter;

/// What the runner was told on its command line that shapes every process.
#[derive(Debug, Clone)]
pub struct Settings {
    pub node_name: String,
    pub node_ip: String,
    pub netns: Option<String>,
    pub apiserver: String,
    pub ca_pem: Vec<u8>,
    pub weir_binary: PathBuf,
    /// This binary, for the echo and the stand-ins.
    pub self_binary: PathBuf,
    pub state_dir: PathBuf,
}

/// Everything about the pod a process needs that isn't in the container.
pub struct PodContext<'a> {
    pub pod_name: &'a str,
    pub pod_ip: &'a str,
    pub pod_dir: &'a Path,
    /// The pod's kubeconfig file, when it has a ServiceAccount token.
    pub kubeconfig: Option<&'a Path>,
}

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub fn spec(
    settings: &Settings,
    pod: &PodContext<'_>,
    container: &Container,
    program: &Program,
    container_env: BTreeMap<String, String>,
    rewriter: &Rewriter,
) -> Spec {
    let args: Vec<String> = container
        .args
        .iter()
        .flatten()
        .map(|a| rewriter.rewrite(a))
        .collect();
    let ports: Vec<String> = crate::probe::tcp_ports(container)
        .iter()
        .map(u16::to_string)
        .collect();
    // A container starts from a clean environment, as in a real runtime.
    let mut env = BTreeMap::from([
        ("PATH".to_string(), PATH.to_string()),
        (
            "HOME".to_string(),
            pod.pod_dir.to_string_lossy().into_owned(),
        ),
        ("HOSTNAME".to_string(), pod.pod_name.to_string()),
    ]);
    if let Some((host, port)) = crate::token::service_host_port(&settings.apiserver) {
        env.insert("KUBERNETES_SERVICE_HOST".into(), host);
        env.insert("KUBERNETES_SERVICE_PORT".into(), port);
    }
    if let Some(kubeconfig) = pod.kubeconfig {
        env.insert(
            "KUBECONFIG".into(),
            kubeconfig.to_string_lossy().into_owned(),
        );
    }
    let (program_path, args) = match program {
        Program::Weir => (settings.weir_binary.clone(), args),
        Program::Echo => {
            // The echo binds the pod's address, not every address of the shared namespace.
            env.insert("POD_IP".into(), pod.pod_ip.to_string());
            env.insert("WEIR_ECHO_PORTS".into(), ports.join(","));
            let mut all = vec!["echo".to_string()];
            all.extend(args);
            (settings.self_binary.clone(), all)
        }
        Program::StandIn => {
            env.insert("POD_IP".into(), pod.pod_ip.to_string());
            let mut all = vec![
                "stand-in".to_string(),
                "--image".into(),
                container.image.clone().unwrap_or_default(),
            ];
            if !ports.is_empty() {
                all.push("--ports".into());
                all.push(ports.join(","));
            }
            (settings.self_binary.clone(), all)
        }
    };
    for (k, v) in container_env {
        env.insert(k, rewriter.rewrite(&v));
    }
    Spec {
        program: program_path,
        args,
        env,
        log: crate::process::log_path(pod.pod_dir, &container.name),
        netns: settings.netns.clone(),
        workdir: pod.pod_dir.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewrite::Mount;
    use serde_json::json;

    fn settings() -> Settings {
        Settings {
            node_name: "weir-node".into(),
            node_ip: "10.244.3.2".into(),
            netns: Some("weir-ns".into()),
            apiserver: "https://10.244.3.1:6443".into(),
            ca_pem: b"CA".to_vec(),
            weir_binary: "/bin/weir".into(),
            self_binary: "/bin/weir-pod-runner".into(),
            state_dir: "/state".into(),
        }
    }

    #[test]
    fn weir_container() {
        let c: Container = serde_json::from_value(json!({
            "name": "weir", "image": "weir:dev",
            "command": ["/ignored"],
            "args": ["run", "--http-addr=0.0.0.0:8080", "--affinity-key-file=/etc/weir/affinity/key"],
            "ports": [{"containerPort": 8080}]
        }))
        .unwrap();
        let rewriter = Rewriter::new(
            vec![Mount {
                container_path: "/etc/weir/affinity".into(),
                local_path: "/state/p/volumes/affinity".into(),
            }],
            "10.244.3.130",
        );
        let pod = PodContext {
            pod_name: "weir-0",
            pod_ip: "10.244.3.130",
            pod_dir: Path::new("/state/p"),
            kubeconfig: Some(Path::new("/state/p/kubeconfig")),
        };
        let env = BTreeMap::from([("LISTEN".to_string(), "0.0.0.0:9901".to_string())]);
        let s = spec(&settings(), &pod, &c, &Program::Weir, env, &rewriter);
        assert_eq!(s.program, PathBuf::from("/bin/weir"));
        assert_eq!(
            s.args,
            [
                "run",
                "--http-addr=10.244.3.130:8080",
                "--affinity-key-file=/state/p/volumes/affinity/key"
            ]
        );
        assert_eq!(s.env["LISTEN"], "10.244.3.130:9901");
        assert_eq!(s.env["KUBECONFIG"], "/state/p/kubeconfig");
        assert_eq!(s.env["KUBERNETES_SERVICE_HOST"], "10.244.3.1");
        assert_eq!(s.env["KUBERNETES_SERVICE_PORT"], "6443");
        assert_eq!(s.env["HOSTNAME"], "weir-0");
        assert!(!s.env.contains_key("POD_IP"));
        assert_eq!(s.log, PathBuf::from("/state/p/weir.log"));
        assert_eq!(s.netns.as_deref(), Some("weir-ns"));
    }

    #[test]
    fn echo_and_stand_in() {
        let c: Container = serde_json::from_value(json!({
            "name": "backend", "image": "registry.k8s.io/coredns/coredns:v1.12.2",
            "args": ["-conf", "/root/Corefile"],
            "ports": [{"containerPort": 53, "protocol": "UDP"}, {"containerPort": 9153}]
        }))
        .unwrap();
        let rewriter = Rewriter::new(vec![], "10.244.3.131");
        let pod = PodContext {
            pod_name: "p",
            pod_ip: "10.244.3.131",
            pod_dir: Path::new("/state/q"),
            kubeconfig: None,
        };
        let s = spec(
            &settings(),
            &pod,
            &c,
            &Program::StandIn,
            BTreeMap::new(),
            &rewriter,
        );
        assert_eq!(s.program, PathBuf::from("/bin/weir-pod-runner"));
        assert_eq!(
            s.args,
            [
                "stand-in",
                "--image",
                "registry.k8s.io/coredns/coredns:v1.12.2",
                "--ports",
                "9153"
            ]
        );
        let e = spec(
            &settings(),
            &pod,
            &c,
            &Program::Echo,
            BTreeMap::new(),
            &rewriter,
        );
        assert_eq!(e.args[0], "echo");
        assert_eq!(e.env["POD_IP"], "10.244.3.131");
        assert_eq!(e.env["WEIR_ECHO_PORTS"], "9153");
    }
}
