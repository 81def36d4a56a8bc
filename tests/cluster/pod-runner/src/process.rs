//! Starting a container's process and signalling it.
//!
//! Each process leads its own process group, so a signal reaches whatever it forked, and gets
//! PR_SET_PDEATHSIG=SIGKILL so it dies if the runner dies. The death signal fires when the
//! *thread* that forked the child exits: the node runner therefore runs on a current-thread
//! runtime on the main thread, which lives as long as the runner, and spawns only from there.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

use anyhow::{Context, Result};
use rustix::process::{Pid, Signal};

/// Every process group this runner started and has not seen exit: what shutdown kills.
static LIVE: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub log: PathBuf,
    pub netns: Option<String>,
    pub workdir: PathBuf,
}

/// The command line that runs it: `ip netns exec NS program args` in a namespace (ip execs
/// the program, so the child's PID is the program's), else the program itself.
pub fn command_line(spec: &Spec) -> (PathBuf, Vec<String>) {
    match &spec.netns {
        Some(ns) => {
            let mut args = vec!["netns".to_string(), "exec".into(), ns.clone()];
            args.push(spec.program.to_string_lossy().into_owned());
            args.extend(spec.args.iter().cloned());
            (PathBuf::from("ip"), args)
        }
        None => (spec.program.clone(), spec.args.clone()),
    }
}

pub fn spawn(spec: &Spec) -> Result<tokio::process::Child> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .with_context(|| format!("opening {}", spec.log.display()))?;
    let log_err = log.try_clone().context("duplicating the log file")?;
    let (program, args) = command_line(spec);
    let mut command = tokio::process::Command::new(&program);
    command
        .args(&args)
        .env_clear()
        .envs(&spec.env)
        .current_dir(&spec.workdir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .kill_on_drop(false);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
    let child = command
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    if let Some(pid) = child.id()
        && let Ok(mut live) = LIVE.lock()
    {
        live.insert(pid as i32);
    }
    Ok(child)
}

/// Signals a process group; a group that is gone is fine.
pub fn signal_group(pid: u32, signal: Signal) {
    if let Some(pid) = Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// The leader exited: the group no longer needs killing at shutdown (its other members, if
/// any, got the same signals while the leader lived).
pub fn forget(pid: u32) {
    if let Ok(mut live) = LIVE.lock() {
        live.remove(&(pid as i32));
    }
}

/// Shutdown: TERM every group, KILL after `grace`.
pub async fn kill_all(grace: std::time::Duration) {
    let groups: Vec<i32> = LIVE
        .lock()
        .map(|l| l.iter().copied().collect())
        .unwrap_or_default();
    for pid in &groups {
        signal_group(*pid as u32, Signal::TERM);
    }
    if groups.is_empty() {
        return;
    }
    tokio::time::sleep(grace).await;
    for pid in &groups {
        signal_group(*pid as u32, Signal::KILL);
    }
}

/// How an exit reads in a container status: (exit code, signal, reason).
pub fn exit_summary(status: std::process::ExitStatus) -> (i32, Option<i32>, &'static str) {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => (0, None, "Completed"),
        (Some(code), _) => (code, None, "Error"),
        (None, Some(sig)) => (128 + sig, Some(sig), "Error"),
        (None, None) => (255, None, "Error"),
    }
}

pub fn log_path(pod_dir: &Path, container: &str) -> PathBuf {
    pod_dir.join(format!("{container}.log"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_command_line() {
        let spec = Spec {
            program: "/bin/weir".into(),
            args: vec!["run".into()],
            env: BTreeMap::new(),
            log: "/tmp/x.log".into(),
            netns: Some("weir-test".into()),
            workdir: "/tmp".into(),
        };
        assert_eq!(
            command_line(&spec),
            (
                PathBuf::from("ip"),
                vec![
                    "netns".into(),
                    "exec".into(),
                    "weir-test".into(),
                    "/bin/weir".into(),
                    "run".into()
                ]
            )
        );
    }

    #[tokio::test]
    async fn spawn_logs_and_exits() {
        let dir = tempfile::tempdir().unwrap();
        let spec = Spec {
            program: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                "echo out; echo err >&2; echo $FOO; exit 3".into(),
            ],
            env: [("FOO".to_string(), "bar".to_string())].into(),
            log: dir.path().join("c.log"),
            netns: None,
            workdir: dir.path().into(),
        };
        let mut child = spawn(&spec).unwrap();
        let status = child.wait().await.unwrap();
        assert_eq!(exit_summary(status), (3, None, "Error"));
        let log = std::fs::read_to_string(dir.path().join("c.log")).unwrap();
        assert_eq!(log, "out\nerr\nbar\n");
    }
}
