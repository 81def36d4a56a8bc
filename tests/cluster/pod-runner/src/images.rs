//! The image table: which local program plays a container, chosen by the image's repository.
//!
//! There is no container runtime, so an image is only a name here. The table maps a repository
//! (the image without `:tag` or `@digest`) to one of a few programs this runner knows how to run.

/// Repositories that our echo backend (`weir-pod-runner echo`) stands for. The Gateway API
/// conformance suite deploys the first ones; `weir.dev/test/echo` is our own name for it.
pub const ECHO_IMAGES: &[&str] = &[
    "gcr.io/k8s-staging-gateway-api/echo-basic",
    "gcr.io/k8s-staging-gateway-api/echo-advanced",
    "registry.k8s.io/gateway-api/echo-basic",
    "registry.k8s.io/gateway-api/echo-advanced",
    "weir.dev/test/echo",
];

/// Images the conformance manifests deploy that no test talks to directly: they get a
/// stand-in that accepts TCP on the declared ports and answers HTTP 200.
pub const STAND_IN_IMAGES: &[&str] = &["registry.k8s.io/coredns/coredns"];

/// The local program that plays a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// `weir-pod-runner echo`, an echo-basic look-alike.
    Echo,
    /// The weir binary with the container's args.
    Weir,
    /// A listener on the container's ports that says it is a stand-in for this image.
    StandIn,
}

/// The repository of an image reference: without `@digest`, then without `:tag` (a `:` after
/// the last `/`; one before it is a registry port), and without Docker Hub's implied prefixes
/// so that `docker.io/library/weir` and `weir` are one name.
pub fn repository(image: &str) -> &str {
    let image = image.trim();
    let image = image.split_once('@').map_or(image, |(name, _)| name);
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    let image = match image[last_slash..].find(':') {
        Some(colon) => &image[..last_slash + colon],
        None => image,
    };
    let image = image.strip_prefix("docker.io/").unwrap_or(image);
    image.strip_prefix("library/").unwrap_or(image)
}

/// The table, with the weir repositories given on the command line.
#[derive(Debug, Clone)]
pub struct ImageTable {
    weir: Vec<String>,
}

impl ImageTable {
    pub fn new(weir_images: &[String]) -> Self {
        ImageTable {
            weir: weir_images
                .iter()
                .map(|image| repository(image).to_string())
                .collect(),
        }
    }

    /// The program for an image, or None for an image this runner can't play.
    pub fn lookup(&self, image: &str) -> Option<Program> {
        let repo = repository(image);
        if self.weir.iter().any(|w| w == repo) {
            Some(Program::Weir)
        } else if ECHO_IMAGES.contains(&repo) {
            Some(Program::Echo)
        } else if STAND_IN_IMAGES.contains(&repo) {
            Some(Program::StandIn)
        } else {
            None
        }
    }

    /// A plain sentence listing what this runner can run, for an UnknownImage message.
    pub fn describe(&self) -> String {
        format!(
            "this pod runner has no container runtime and runs only these images (any tag): \
             weir ({}), the echo backend ({}), and stand-ins ({})",
            self.weir.join(", "),
            ECHO_IMAGES.join(", "),
            STAND_IN_IMAGES.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_strips_tag_digest_and_docker_hub() {
        assert_eq!(
            repository("registry.k8s.io/gateway-api/echo-basic:v1.5.1"),
            "registry.k8s.io/gateway-api/echo-basic"
        );
        assert_eq!(repository("weir"), "weir");
        assert_eq!(repository("weir:dev"), "weir");
        assert_eq!(repository("weir@sha256:abc"), "weir");
        assert_eq!(repository("weir:dev@sha256:abc"), "weir");
        assert_eq!(repository("localhost:5000/weir"), "localhost:5000/weir");
        assert_eq!(repository("localhost:5000/weir:1"), "localhost:5000/weir");
        assert_eq!(repository("docker.io/library/weir:1"), "weir");
        assert_eq!(repository("docker.io/weir/weir"), "weir/weir");
    }

    #[test]
    fn lookup() {
        let table = ImageTable::new(&["weir".into(), "ghcr.io/x/weir:ignored".into()]);
        assert_eq!(table.lookup("weir:0.1.0"), Some(Program::Weir));
        assert_eq!(
            table.lookup("ghcr.io/x/weir@sha256:00"),
            Some(Program::Weir)
        );
        assert_eq!(
            table.lookup("registry.k8s.io/gateway-api/echo-basic:v1.6.0-dev.3"),
            Some(Program::Echo)
        );
        assert_eq!(table.lookup("weir.dev/test/echo"), Some(Program::Echo));
        assert_eq!(
            table.lookup("registry.k8s.io/coredns/coredns:v1.12.2"),
            Some(Program::StandIn)
        );
        assert_eq!(table.lookup("nginx:latest"), None);
        assert!(table.describe().contains("weir.dev/test/echo"));
    }
}
