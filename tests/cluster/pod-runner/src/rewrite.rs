//! Rewriting a container's args and env values for a process that runs on this machine's
//! file system, in a network namespace shared by every pod.
//!
//! - A volume's `mountPath` at the start of a path inside a value becomes the local folder
//!   the volume was materialised into (`--key=/etc/weir/affinity/key` reads the real Secret).
//! - `0.0.0.0` becomes the pod's IP: all pods share one namespace, so a wildcard listener would
//!   take the port from every other pod.

use std::path::PathBuf;

/// One mount: the path the container expects and the folder (or file, for a subPath) it is here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub container_path: String,
    pub local_path: PathBuf,
}

/// Characters that can stand right before a path inside an argument (`--x=/p`, `a:/p`, `"/p"`).
fn starts_path(c: char) -> bool {
    matches!(c, '=' | ',' | ':' | ' ' | '"' | '\'' | ';')
}

/// Characters that can end a mount path: the next component, or the end of the path.
fn ends_mount(c: char) -> bool {
    c == '/' || starts_path(c)
}

#[derive(Debug, Clone)]
pub struct Rewriter {
    /// Longest container path first, so `/etc/a/b` wins over `/etc/a`.
    mounts: Vec<Mount>,
    pod_ip: String,
}

impl Rewriter {
    pub fn new(mut mounts: Vec<Mount>, pod_ip: impl Into<String>) -> Self {
        // "/" as a mount would swallow every path; trailing slashes would stop boundary checks.
        for mount in &mut mounts {
            while mount.container_path.len() > 1 && mount.container_path.ends_with('/') {
                mount.container_path.pop();
            }
        }
        mounts.retain(|m| m.container_path.starts_with('/') && m.container_path.len() > 1);
        mounts.sort_by_key(|m| std::cmp::Reverse(m.container_path.len()));
        Rewriter {
            mounts,
            pod_ip: pod_ip.into(),
        }
    }

    /// One value rewritten. A single left-to-right pass, so a local path that itself looks
    /// like a mount path is never rewritten twice.
    pub fn rewrite(&self, value: &str) -> String {
        let value = value.replace("0.0.0.0", &self.pod_ip);
        let mut out = String::with_capacity(value.len());
        let mut i = 0;
        while i < value.len() {
            let rest = &value[i..];
            let at_boundary = i == 0 || value[..i].chars().next_back().is_some_and(starts_path);
            if at_boundary && rest.starts_with('/') {
                let hit = self.mounts.iter().find(|m| {
                    rest.starts_with(m.container_path.as_str())
                        && rest[m.container_path.len()..]
                            .chars()
                            .next()
                            .is_none_or(ends_mount)
                });
                if let Some(mount) = hit {
                    out.push_str(&mount.local_path.to_string_lossy());
                    i += mount.container_path.len();
                    continue;
                }
            }
            let Some(c) = rest.chars().next() else { break };
            out.push(c);
            i += c.len_utf8();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewriter() -> Rewriter {
        Rewriter::new(
            vec![
                Mount {
                    container_path: "/etc/weir".into(),
                    local_path: "/state/p/volumes/config".into(),
                },
                Mount {
                    container_path: "/etc/weir/affinity/".into(),
                    local_path: "/state/p/volumes/affinity".into(),
                },
                Mount {
                    container_path: "/root".into(),
                    local_path: "/state/p/volumes/conf".into(),
                },
            ],
            "10.244.3.130",
        )
    }

    #[test]
    fn mount_paths() {
        let r = rewriter();
        assert_eq!(
            r.rewrite("--affinity-key-file=/etc/weir/affinity/key"),
            "--affinity-key-file=/state/p/volumes/affinity/key"
        );
        assert_eq!(
            r.rewrite("/etc/weir/config.yaml"),
            "/state/p/volumes/config/config.yaml"
        );
        assert_eq!(r.rewrite("/etc/weir"), "/state/p/volumes/config");
        assert_eq!(
            r.rewrite("/root/Corefile"),
            "/state/p/volumes/conf/Corefile"
        );
        // Not a component boundary: left alone.
        assert_eq!(r.rewrite("/rootfs/x"), "/rootfs/x");
        assert_eq!(r.rewrite("/etc/weirdo"), "/etc/weirdo");
        // Not at the start of a path.
        assert_eq!(r.rewrite("/usr/etc/weir"), "/usr/etc/weir");
        assert_eq!(
            r.rewrite("a=/root/x,b=/etc/weir/y"),
            "a=/state/p/volumes/conf/x,b=/state/p/volumes/config/y"
        );
    }

    #[test]
    fn wildcard_becomes_pod_ip() {
        let r = rewriter();
        assert_eq!(
            r.rewrite("--http-addr=0.0.0.0:8080"),
            "--http-addr=10.244.3.130:8080"
        );
        assert_eq!(r.rewrite("0.0.0.0"), "10.244.3.130");
    }

    #[test]
    fn root_mount_is_ignored() {
        let r = Rewriter::new(
            vec![Mount {
                container_path: "/".into(),
                local_path: "/x".into(),
            }],
            "1.2.3.4",
        );
        assert_eq!(r.rewrite("/etc/passwd"), "/etc/passwd");
    }
}
