//! Cookie session affinity: issuing and checking the cookie that pins a client to an endpoint.
//!
//! The cookie value is a keyed hash (HMAC-SHA256, cut to 128 bits, base64url) of the pool and
//! the endpoint's stable identity (its pod, or its address when the slice names no pod). It
//! never contains or reveals an address, cannot be forged without the key, and means the same
//! on every replica that shares the key. Checking a cookie is a hash-map lookup in an index
//! built once per routing table.

use crate::api::{AffinityCookie, SameSite};
use crate::endpoint::Endpoint;
use crate::routing::{Pool, RoutingTable};
use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use ring::hmac;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes of HMAC kept in a cookie.
const TAG_LEN: usize = 16;
/// A cookie value's length: 16 bytes in unpadded base64url.
const VALUE_LEN: usize = 22;
/// Shortest key accepted from a key file.
pub const MIN_KEY_LEN: usize = 16;
/// A random key's length: HMAC-SHA256's output, as `hmac::Key::generate` makes.
const KEY_LEN: usize = 32;

type Tag = [u8; TAG_LEN];

/// The keys cookies are made and checked with.
struct Keys {
    current: hmac::Key,
    /// The key before the last rotation, still accepted until the instant given.
    previous: Option<(hmac::Key, Instant)>,
}

/// Where each pool's cookies point, for one routing table.
#[derive(Default)]
struct Index {
    pools: HashMap<Arc<String>, PoolIndex>,
}

struct PoolIndex {
    /// The compiled pool this index was built from; a request on another (newer) pool falls
    /// back to a scan until the index catches up.
    pool: Arc<Pool>,
    /// Tags under the current key, then under the previous one.
    current: HashMap<Tag, Arc<Endpoint>>,
    previous: HashMap<Tag, Arc<Endpoint>>,
}

/// A valid cookie's endpoint.
#[derive(Debug, Clone)]
pub struct Pinned {
    pub endpoint: Arc<Endpoint>,
    /// Made with the previous key: re-issue it with the current one.
    pub stale_key: bool,
}

/// The system random source failed, so no key could be made.
#[derive(Debug, thiserror::Error)]
#[error(
    "the system random source failed, so no session-affinity key can be made that others cannot \
     guess; give one with --affinity-key-file"
)]
pub struct RandomKeyError;

/// Issues and checks affinity cookies.
pub struct Affinity {
    keys: ArcSwap<Keys>,
    index: ArcSwap<Index>,
    /// Made up at start: say so once, when a pool first uses affinity.
    random_key: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Affinity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Affinity").finish_non_exhaustive()
    }
}

impl Affinity {
    /// Cookies keyed with `key` (from the key file every replica shares).
    pub fn new(key: &[u8]) -> Self {
        Affinity {
            keys: ArcSwap::from_pointee(Keys {
                current: hmac::Key::new(hmac::HMAC_SHA256, key),
                previous: None,
            }),
            index: ArcSwap::from_pointee(Index::default()),
            random_key: false.into(),
        }
    }

    /// Cookies keyed with a random key: they hold only on this process. Fails when the
    /// system random source does: a key made any other way could be guessed, and with it
    /// every cookie forged.
    pub fn try_random() -> Result<Self, RandomKeyError> {
        Self::random_from(|buf| {
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), buf)
        })
    }

    /// A random key from `fill`, which writes random bytes (a parameter so a test can make it
    /// fail).
    fn random_from(
        fill: impl FnOnce(&mut [u8]) -> Result<(), ring::error::Unspecified>,
    ) -> Result<Self, RandomKeyError> {
        let mut key = [0u8; KEY_LEN];
        fill(&mut key).map_err(|_| RandomKeyError)?;
        Ok(Affinity {
            keys: ArcSwap::from_pointee(Keys {
                current: hmac::Key::new(hmac::HMAC_SHA256, &key),
                previous: None,
            }),
            index: ArcSwap::from_pointee(Index::default()),
            random_key: true.into(),
        })
    }

    /// Switches to a new key. Cookies made with the old one stay valid for `grace`, and are
    /// re-issued with the new key when used.
    pub fn rotate(&self, key: &[u8], grace: Duration, table: &RoutingTable) {
        let old = self.keys.load();
        self.keys.store(Arc::new(Keys {
            current: hmac::Key::new(hmac::HMAC_SHA256, key),
            previous: Some((old.current.clone(), Instant::now() + grace)),
        }));
        self.random_key
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.sync(table);
    }

    /// Rebuilds the cookie index for a new routing table.
    pub fn sync(&self, table: &RoutingTable) {
        let keys = self.keys.load();
        let mut index = Index::default();
        for pool in table
            .pools()
            .filter(|p| p.policy.session_affinity.is_some())
        {
            let tags = |key: &hmac::Key| -> HashMap<Tag, Arc<Endpoint>> {
                pool.all_endpoints()
                    .map(|e| (tag(key, pool, e), e.clone()))
                    .collect()
            };
            index.pools.insert(
                pool.name.clone(),
                PoolIndex {
                    pool: pool.clone(),
                    current: tags(&keys.current),
                    previous: keys
                        .previous
                        .as_ref()
                        .map(|(k, _)| tags(k))
                        .unwrap_or_default(),
                },
            );
        }
        self.index.store(Arc::new(index));
    }

    /// The endpoint a cookie value pins, if the value is genuine and the endpoint still in
    /// the pool. Anything else (forged, garbled, another pool's, an endpoint that left) is
    /// `None`, never an error.
    pub fn pinned(&self, pool: &Arc<Pool>, value: &[u8], now: Instant) -> Option<Pinned> {
        let tag = decode(value)?;
        let keys = self.keys.load();
        let previous_valid = keys.previous.as_ref().filter(|(_, until)| now < *until);
        let index = self.index.load();
        if let Some(pi) = index.pools.get(&pool.name)
            && Arc::ptr_eq(&pi.pool, pool)
        {
            if let Some(e) = pi.current.get(&tag) {
                return Some(Pinned {
                    endpoint: e.clone(),
                    stale_key: false,
                });
            }
            return previous_valid
                .and_then(|_| pi.previous.get(&tag))
                .map(|e| Pinned {
                    endpoint: e.clone(),
                    stale_key: true,
                });
        }
        // The table was just swapped and the index not yet: hash each endpoint instead. (Tag
        // comparisons need not be constant-time: a forger learns nothing useful from timing a
        // 128-bit MAC compare it cannot aim.)
        for e in pool.all_endpoints() {
            if tag == self::tag(&keys.current, pool, e) {
                return Some(Pinned {
                    endpoint: e.clone(),
                    stale_key: false,
                });
            }
            if let Some((k, _)) = previous_valid
                && tag == self::tag(k, pool, e)
            {
                return Some(Pinned {
                    endpoint: e.clone(),
                    stale_key: true,
                });
            }
        }
        None
    }

    /// The cookie value for an endpoint of a pool, under the current key.
    pub fn value(&self, pool: &Pool, endpoint: &Endpoint) -> String {
        URL_SAFE_NO_PAD.encode(tag(&self.keys.load().current, pool, endpoint))
    }

    /// The `Set-Cookie` header pinning a client to `endpoint`.
    pub fn set_cookie(
        &self,
        spec: &AffinityCookie,
        pool: &Pool,
        endpoint: &Endpoint,
        https: bool,
    ) -> Option<HeaderValue> {
        HeaderValue::from_str(&set_cookie_text(spec, &self.value(pool, endpoint), https)).ok()
    }
}

fn tag(key: &hmac::Key, pool: &Pool, endpoint: &Endpoint) -> Tag {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(pool.name.as_bytes());
    ctx.update(&[0]);
    ctx.update(endpoint.identity.as_bytes());
    let full = ctx.sign();
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&full.as_ref()[..TAG_LEN]);
    out
}

/// A cookie value's tag, if it has exactly the form weir issues.
pub fn decode(value: &[u8]) -> Option<[u8; TAG_LEN]> {
    if value.len() != VALUE_LEN {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
    bytes.try_into().ok()
}

/// The `Set-Cookie` text for a value, with the attributes the spec asks for.
pub fn set_cookie_text(spec: &AffinityCookie, value: &str, https: bool) -> String {
    let mut out = format!("{}={value}; Path={}", spec.name, spec.path);
    if spec.ttl_seconds > 0 {
        out.push_str(&format!("; Max-Age={}", spec.ttl_seconds));
    }
    if let Some(domain) = &spec.domain {
        out.push_str(&format!("; Domain={domain}"));
    }
    let secure = spec.same_site == SameSite::None || spec.secure.unwrap_or(https);
    if secure {
        out.push_str("; Secure");
    }
    if spec.http_only {
        out.push_str("; HttpOnly");
    }
    out.push_str(match spec.same_site {
        SameSite::Lax => "; SameSite=Lax",
        SameSite::Strict => "; SameSite=Strict",
        SameSite::None => "; SameSite=None",
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn set_cookie_carries_the_configured_attributes() {
        let mut spec = AffinityCookie::default();
        assert_eq!(
            set_cookie_text(&spec, "v", false),
            "weir-affinity=v; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax"
        );
        assert_eq!(
            set_cookie_text(&spec, "v", true),
            "weir-affinity=v; Path=/; Max-Age=3600; Secure; HttpOnly; SameSite=Lax"
        );
        spec.name = "sticky".into();
        spec.ttl_seconds = 0;
        spec.path = "/app".into();
        spec.domain = Some("example.com".into());
        spec.http_only = false;
        spec.same_site = SameSite::None;
        assert_eq!(
            set_cookie_text(&spec, "v", false),
            "sticky=v; Path=/app; Domain=example.com; Secure; SameSite=None"
        );
    }

    #[test]
    fn a_failing_random_source_makes_no_key() {
        let made = Affinity::random_from(|_| Err(ring::error::Unspecified));
        assert!(made.is_err(), "made a key without randomness");
    }

    #[test]
    fn random_keys_differ() {
        let sign = |a: &Affinity| {
            hmac::sign(&a.keys.load().current, b"pool")
                .as_ref()
                .to_vec()
        };
        let random = || Affinity::try_random().expect("the system random source");
        assert_ne!(sign(&random()), sign(&random()));
    }

    proptest! {
        #[test]
        fn decode_never_panics_and_accepts_only_the_issued_form(value in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Some(tag) = decode(&value) {
                prop_assert_eq!(value.len(), VALUE_LEN);
                let again = URL_SAFE_NO_PAD.encode(tag);
                prop_assert_eq!(again.as_bytes(), &value[..]);
            }
        }

        #[test]
        fn issued_values_decode(tag in proptest::array::uniform16(any::<u8>())) {
            let value = URL_SAFE_NO_PAD.encode(tag);
            prop_assert_eq!(decode(value.as_bytes()), Some(tag));
        }
    }
}
