//! Session affinity settings of a pool spec.

use super::Bounds;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

pub(crate) const COOKIE_NAME_LEN: Bounds = Bounds::new(1, 64);
pub(crate) const TTL_SECONDS: Bounds = Bounds::new(0, 31_536_000);
pub(crate) const COOKIE_PATH_LEN: Bounds = Bounds::new(1, 1024);
pub(crate) const COOKIE_DOMAIN_LEN: Bounds = Bounds::new(1, 253);

/// Whether `name` may name a cookie: 1 to 64 token characters (RFC 6265), as the CRD's
/// pattern says. Shared by pool validation and Gateway API `sessionName`.
pub fn is_cookie_name(name: &str) -> bool {
    (COOKIE_NAME_LEN.min as usize..=COOKIE_NAME_LEN.max as usize).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+.^_`|~-".contains(&b))
}

/// Keeps a client on one endpoint with a cookie.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SessionAffinity {
    pub cookie: AffinityCookie,
}

/// The affinity cookie. Its value is an opaque keyed hash of the endpoint; it never reveals
/// an address.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.sameSite) || self.sameSite != 'None' || !has(self.secure) || self.secure").message("sameSite None needs secure"))]
pub struct AffinityCookie {
    /// Cookie name.
    #[serde(default = "default_name")]
    #[schemars(
        length(min = COOKIE_NAME_LEN.min, max = COOKIE_NAME_LEN.max),
        regex(pattern = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
    )]
    pub name: String,
    /// Lifetime in seconds; 0 makes a session cookie (gone when the browser closes).
    #[serde(default = "default_ttl")]
    #[schemars(range(min = TTL_SECONDS.min, max = TTL_SECONDS.max))]
    pub ttl_seconds: u32,
    #[serde(default = "default_path")]
    #[schemars(
        length(min = COOKIE_PATH_LEN.min, max = COOKIE_PATH_LEN.max),
        regex(pattern = r"^/[^;\s]*$")
    )]
    pub path: String,
    /// The Domain attribute; none by default (the cookie stays with the exact host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = COOKIE_DOMAIN_LEN.min, max = COOKIE_DOMAIN_LEN.max),
        regex(pattern = r"^\.?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub domain: Option<String>,
    /// The Secure attribute; by default set on HTTPS and not on plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
    #[serde(default = "default_true")]
    pub http_only: bool,
    #[serde(default)]
    pub same_site: SameSite,
    /// Pass the affinity cookie on to the pods too (by default it is removed).
    #[serde(default)]
    pub forward_cookie: bool,
}

#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum SameSite {
    #[default]
    Lax,
    Strict,
    /// Forces Secure, as browsers require.
    None,
}

fn default_name() -> String {
    "weir-affinity".into()
}
fn default_ttl() -> u32 {
    3600
}
fn default_path() -> String {
    "/".into()
}
fn default_true() -> bool {
    true
}

impl Default for AffinityCookie {
    fn default() -> Self {
        AffinityCookie {
            name: default_name(),
            ttl_seconds: default_ttl(),
            path: default_path(),
            domain: None,
            secure: None,
            http_only: true,
            same_site: SameSite::Lax,
            forward_cookie: false,
        }
    }
}
