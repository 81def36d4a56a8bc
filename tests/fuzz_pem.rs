//! Fuzzing the PEM / TLS Secret loader: arbitrary bytes, random DER in a PEM wrapper, and real
//! certificates and keys (made here with rcgen: ECDSA P-256 and P-384, Ed25519, a chain)
//! mutated in their text and in their DER, through `certificate::load_pem` and, as a
//! `kubernetes.io/tls` Secret in a file, through parse and compile.
//!
//! Invariants: nothing panics; a refusal is a message naming the part at fault (`tls.crt`
//! when only the certificate was touched, `tls.key` when only the key was); a certificate
//! with another's key is refused; a pool's status and the table agree with `load_pem`: the
//! certificate serves exactly when it loads, and a refusal shows as `InvalidSecret` with the
//! loader's message.
//!
//! `WEIR_FUZZ_CASES=20000 cargo test --release --test fuzz_pem -- --nocapture`, or
//! `WEIR_FUZZ_SECONDS=600` for a timed run (see `fuzz_common.rs`).

#[path = "fuzz_common.rs"]
mod fuzz_common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use fuzz_common::fuzz;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::sync::atomic::{AtomicU64, Ordering};
use weir::certificate::load_pem;
use weir::routing::compile;
use weir::store::ObjectKey;

/// A certificate (PEM, possibly a chain) and the PEM of its key.
#[derive(Clone)]
struct Pair {
    crt: Vec<u8>,
    key: Vec<u8>,
    not_after: i64,
}

/// 2031-07-09T00:00:00Z, the expiry of every certificate made here.
const NOT_AFTER: i64 = 1_941_321_600;

fn made() -> Vec<Pair> {
    let mut pairs = Vec::new();
    let params = || {
        let mut p = rcgen::CertificateParams::new(vec!["shop.test".to_string()]).expect("params");
        p.not_after = rcgen::date_time_ymd(2031, 7, 9);
        p
    };
    for alg in [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_ED25519,
    ] {
        let key = rcgen::KeyPair::generate_for(alg).expect("a key");
        let cert = params().self_signed(&key).expect("a certificate");
        pairs.push(Pair {
            crt: cert.pem().into_bytes(),
            key: key.serialize_pem().into_bytes(),
            not_after: NOT_AFTER,
        });
    }
    // A leaf signed by a CA, the chain leaf first.
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("a key");
    let mut ca_params = params();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("a CA");
    let leaf_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("a key");
    let leaf = params().signed_by(&leaf_key, &ca).expect("a leaf");
    pairs.push(Pair {
        crt: format!("{}{}", leaf.pem(), ca.pem()).into_bytes(),
        key: leaf_key.serialize_pem().into_bytes(),
        not_after: NOT_AFTER,
    });
    pairs
}

/// Damage to PEM text, or to the DER inside it.
#[derive(Debug, Clone)]
enum Mutation {
    FlipByte {
        at: usize,
        xor: u8,
    },
    Insert {
        at: usize,
        text: &'static str,
    },
    Delete {
        at: usize,
        len: usize,
    },
    Truncate {
        at: usize,
    },
    /// A different label on every `BEGIN`/`END` line.
    Relabel(&'static str),
    Crlf,
    Doubled,
    /// Mutations of the DER of the first PEM block, re-encoded.
    Der(Vec<DerMutation>),
}

#[derive(Debug, Clone)]
enum DerMutation {
    Flip {
        at: usize,
        xor: u8,
    },
    Set {
        at: usize,
        byte: u8,
    },
    /// A length byte made long-form with these 4 bytes.
    LongLength {
        at: usize,
        len: u32,
    },
    Truncate {
        at: usize,
    },
    Insert {
        at: usize,
        byte: u8,
    },
    /// A byte of the first time value (UTCTime or GeneralizedTime) replaced.
    TimeDigit {
        nth: usize,
        byte: u8,
    },
    /// The time values' tags swapped between UTCTime and GeneralizedTime.
    TimeTag,
}

fn der_mutation() -> impl Strategy<Value = DerMutation> {
    let at = any::<usize>();
    prop_oneof![
        1 => (at, 1u8..=255).prop_map(|(at, xor)| DerMutation::Flip { at, xor }),
        1 => (at, any::<u8>()).prop_map(|(at, byte)| DerMutation::Set { at, byte }),
        1 => (at, any::<u32>()).prop_map(|(at, len)| DerMutation::LongLength { at, len }),
        1 => at.prop_map(|at| DerMutation::Truncate { at }),
        1 => (at, any::<u8>()).prop_map(|(at, byte)| DerMutation::Insert { at, byte }),
        3 => (0usize..40, prop_oneof![b'0'..=b'9', any::<u8>()])
            .prop_map(|(nth, byte)| DerMutation::TimeDigit { nth, byte }),
        1 => Just(DerMutation::TimeTag),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        1 => (at, 1u8..=255).prop_map(|(at, xor)| Mutation::FlipByte { at, xor }),
        1 => (
            at,
            prop::sample::select(vec![
                "\n", "\r\n", " ", "=", "A", "-----", "-----END CERTIFICATE-----\n",
                "-----BEGIN CERTIFICATE-----\n", "\u{0}", "ü", "!",
            ])
        )
            .prop_map(|(at, text)| Mutation::Insert { at, text }),
        1 => (at, 1usize..80).prop_map(|(at, len)| Mutation::Delete { at, len }),
        1 => at.prop_map(|at| Mutation::Truncate { at }),
        1 => prop::sample::select(vec![
            "CERTIFICATE",
            "PRIVATE KEY",
            "EC PRIVATE KEY",
            "RSA PRIVATE KEY",
            "ENCRYPTED PRIVATE KEY",
            "X509 CRL",
            "",
            "certificate",
        ])
        .prop_map(Mutation::Relabel),
        1 => Just(Mutation::Crlf),
        1 => Just(Mutation::Doubled),
        4 => prop::collection::vec(der_mutation(), 1..4).prop_map(Mutation::Der),
    ]
}

/// The first PEM block: (start of its body, end of its body, decoded DER).
fn first_block(text: &[u8]) -> Option<(usize, usize, Vec<u8>)> {
    let s = std::str::from_utf8(text).ok()?;
    let begin = s.find("-----BEGIN ")?;
    let body_start = begin + s[begin..].find('\n')? + 1;
    let body_end = body_start + s[body_start..].find("-----END ")?;
    let body: String = s[body_start..body_end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = STANDARD.decode(body).ok()?;
    Some((body_start, body_end, der))
}

fn pem_body(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::new();
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out
}

fn apply_der(der: &mut Vec<u8>, m: &DerMutation) {
    let n = der.len();
    // The time values of a certificate: UTCTime (0x17, 13 bytes) or GeneralizedTime (0x18, 15).
    let times: Vec<usize> = der
        .windows(2)
        .enumerate()
        .filter(|(_, w)| (w[0] == 0x17 && w[1] == 13) || (w[0] == 0x18 && w[1] == 15))
        .map(|(i, _)| i)
        .collect();
    match *m {
        DerMutation::Flip { at, xor } if n > 0 => der[at % n] ^= xor,
        DerMutation::Set { at, byte } if n > 0 => der[at % n] = byte,
        DerMutation::LongLength { at, len } if n > 1 => {
            let i = at % (n - 1) + 1;
            der.splice(i..i + 1, [0x84].into_iter().chain(len.to_be_bytes()));
        }
        DerMutation::Truncate { at } => der.truncate(at % (n + 1)),
        DerMutation::Insert { at, byte } => der.insert(at % (n + 1), byte),
        DerMutation::TimeDigit { nth, byte } if !times.is_empty() => {
            // notAfter is the second time value; aim there most of the time.
            let t = times[(nth / 20 + 1).min(times.len() - 1)];
            let i = t + 2 + nth % 15;
            if i < n {
                der[i] = byte;
            }
        }
        DerMutation::TimeTag => {
            for t in times {
                der[t] = if der[t] == 0x17 { 0x18 } else { 0x17 };
            }
        }
        _ => {}
    }
}

fn apply(text: &mut Vec<u8>, m: &Mutation) {
    let n = text.len();
    match m {
        Mutation::FlipByte { at, xor } if n > 0 => text[at % n] ^= xor,
        Mutation::Insert { at, text: t } => {
            let i = at % (n + 1);
            text.splice(i..i, t.bytes());
        }
        Mutation::Delete { at, len } if n > 0 => {
            let i = at % n;
            text.drain(i..(i + len).min(n));
        }
        Mutation::Truncate { at } => text.truncate(at % (n + 1)),
        Mutation::Relabel(label) => {
            let s = String::from_utf8_lossy(text).into_owned();
            let mut out = String::new();
            for line in s.split_inclusive('\n') {
                if line.starts_with("-----BEGIN ") {
                    out.push_str(&format!("-----BEGIN {label}-----\n"));
                } else if line.starts_with("-----END ") {
                    out.push_str(&format!("-----END {label}-----\n"));
                } else {
                    out.push_str(line);
                }
            }
            *text = out.into_bytes();
        }
        Mutation::Crlf => {
            let s = String::from_utf8_lossy(text).replace('\n', "\r\n");
            *text = s.into_bytes();
        }
        Mutation::Doubled => {
            let copy = text.clone();
            text.extend_from_slice(&copy);
        }
        Mutation::Der(ms) => {
            if let Some((start, end, mut der)) = first_block(text) {
                for m in ms {
                    apply_der(&mut der, m);
                }
                text.splice(start..end, pem_body(&der).into_bytes());
            }
        }
        _ => {}
    }
}

/// Which pair's certificate and which pair's key, and what is done to each.
#[derive(Debug, Clone)]
struct Case {
    crt_from: usize,
    key_from: usize,
    crt: Vec<Mutation>,
    key: Vec<Mutation>,
    /// Through a Secret in a file too.
    via_secret: bool,
}

fn case() -> impl Strategy<Value = Case> {
    (
        0usize..4,
        prop_oneof![3 => Just(None), 1 => (0usize..4).prop_map(Some)],
        prop_oneof![
            1 => Just(vec![]),
            3 => prop::collection::vec(mutation(), 1..3),
        ],
        prop_oneof![
            2 => Just(vec![]),
            1 => prop::collection::vec(mutation(), 1..3),
        ],
        prop::bool::weighted(0.3),
    )
        .prop_map(|(crt_from, key_from, crt, key, via_secret)| Case {
            crt_from,
            key_from: key_from.unwrap_or(crt_from),
            crt,
            key,
            via_secret,
        })
}

fn check_loader(crt: &[u8], key: &[u8]) -> Result<Result<Option<i64>, String>, TestCaseError> {
    match load_pem(crt, key) {
        Ok(c) => {
            prop_assert!(!c.key.cert.is_empty());
            Ok(Ok(c.not_after))
        }
        Err(message) => {
            prop_assert!(
                message.contains("tls.crt") || message.contains("tls.key"),
                "a message that names neither part: {:?}",
                message
            );
            Ok(Err(message))
        }
    }
}

/// The first documents of the Secret checks' file: Service `shop/web` and a pool on
/// `shop.test` whose certificate is Secret `shop/shop-tls`.
fn shop_documents() -> String {
    use weir::testkit::{pool, route_spec, service, to_document};
    let mut spec = route_spec("shop.test", "/", "web");
    spec["tls"] = serde_json::json!({ "secretName": "shop-tls" });
    format!(
        "{}---\n{}---\n",
        to_document(&service("shop", "web", &[("http", 80)])),
        to_document(&pool("shop", "web", spec))
    )
}

/// The Secret path: the pool's status and the table's certificate agree with `load_pem`.
fn check_secret(
    crt: &[u8],
    key: &[u8],
    loaded: &Result<Option<i64>, String>,
) -> Result<(), TestCaseError> {
    let secret = weir::testkit::tls_secret("shop", "shop-tls", crt, key);
    let text = shop_documents() + &weir::testkit::to_document(&secret);
    let store = weir::source::file::parse("tls.yaml", &text)
        .map_err(|e| TestCaseError::fail(format!("the Secret file was refused: {e}")))?;
    let compiled = compile(&store, None);
    let status = &compiled.statuses[&ObjectKey::new("shop", "web")];
    let condition = |kind: &str| status.conditions.iter().find(|c| c.type_ == kind);
    let refs = condition("ResolvedRefs").ok_or_else(|| TestCaseError::fail("no ResolvedRefs"))?;
    let served = compiled.table.certificate("shop.test").is_some();
    match loaded {
        Ok(_) => {
            prop_assert!(refs.is_true(), "{:?}", refs);
            prop_assert!(condition("CertificateValid").is_some(), "{:?}", status);
            prop_assert!(served, "a certificate that loads is not served");
        }
        Err(message) => {
            prop_assert!(!refs.is_true());
            prop_assert_eq!(refs.reason.as_str(), "InvalidSecret");
            prop_assert!(
                refs.message.contains(message.as_str()),
                "{:?} lacks {:?}",
                refs.message,
                message
            );
            prop_assert!(!served, "a refused certificate is served");
        }
    }
    Ok(())
}

#[test]
fn fuzz_mutated_certificates_and_keys() {
    let pairs = made();
    for p in &pairs {
        assert_eq!(
            load_pem(&p.crt, &p.key).expect("loads").not_after,
            Some(p.not_after)
        );
    }
    let (loaded_damaged, refused) = (AtomicU64::new(0), AtomicU64::new(0));
    let report = fuzz("fuzz_pem::mutated", 600, case(), |c| {
        let (from_crt, from_key) = (&pairs[c.crt_from], &pairs[c.key_from]);
        let mut crt = from_crt.crt.clone();
        for m in &c.crt {
            apply(&mut crt, m);
        }
        let mut key = from_key.key.clone();
        for m in &c.key {
            apply(&mut key, m);
        }
        let loaded = check_loader(&crt, &key)?;
        let crt_intact = crt == from_crt.crt;
        let key_intact = key == from_key.key;
        match &loaded {
            Ok(_) if !(crt_intact && key_intact) => loaded_damaged.fetch_add(1, Ordering::Relaxed),
            Err(_) => refused.fetch_add(1, Ordering::Relaxed),
            Ok(_) => 0,
        };
        match (&loaded, crt_intact, key_intact) {
            // A certificate and its own key, untouched: loads, with its expiry.
            (_, true, true) if c.crt_from == c.key_from => {
                prop_assert_eq!(&loaded, &Ok(Some(from_crt.not_after)));
            }
            // Another pair's key: refused as not matching.
            (Ok(_), true, true) => prop_assert!(
                false,
                "pair {} loaded with the key of {}",
                c.crt_from,
                c.key_from
            ),
            (Err(m), true, true) => prop_assert!(m.contains("does not match"), "{}", m),
            (Err(m), true, false) => {
                prop_assert!(m.contains("tls.key"), "only the key changed: {}", m)
            }
            (Err(m), false, true) => {
                prop_assert!(m.contains("tls.crt"), "only the certificate changed: {}", m)
            }
            _ => {}
        }
        if loaded.is_ok() {
            // Whatever was damaged, only a certificate's own key goes with it.
            prop_assert_eq!(
                c.crt_from,
                c.key_from,
                "a certificate loaded with another's key"
            );
        }
        if c.via_secret {
            check_secret(&crt, &key, &loaded)?;
        }
        Ok(())
    });
    println!(
        "fuzz_pem::mutated: of {} cases, {} damaged pairs still loaded, {} were refused",
        report.executions,
        loaded_damaged.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    );
}

#[test]
fn fuzz_arbitrary_bytes() {
    let pairs = made();
    let der = first_block(&pairs[0].crt).expect("PEM").2;
    fuzz(
        "fuzz_pem::arbitrary",
        1000,
        (
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..2048),
                // Random DER, or a real certificate's DER cut short, in a PEM wrapper.
                prop::collection::vec(any::<u8>(), 0..600).prop_map(|d| format!(
                    "-----BEGIN CERTIFICATE-----\n{}-----END CERTIFICATE-----\n",
                    pem_body(&d)
                )
                .into_bytes()),
                (0..der.len()).prop_map(move |n| {
                    format!(
                        "-----BEGIN CERTIFICATE-----\n{}-----END CERTIFICATE-----\n",
                        pem_body(&der[..n])
                    )
                    .into_bytes()
                }),
            ],
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..512),
                prop::collection::vec(any::<u8>(), 0..200).prop_map(|d| format!(
                    "-----BEGIN PRIVATE KEY-----\n{}-----END PRIVATE KEY-----\n",
                    pem_body(&d)
                )
                .into_bytes()),
                Just(pairs[0].key.clone()),
            ],
            prop::bool::weighted(0.2),
        ),
        |(crt, key, via_secret)| {
            let loaded = check_loader(&crt, &key)?;
            if via_secret {
                check_secret(&crt, &key, &loaded)?;
            }
            Ok(())
        },
    );
}

/// A Secret that lacks a part, or holds it as `stringData`.
#[test]
fn secrets_missing_parts_say_which() {
    let pair = &made()[0];
    let compile_with = |data: &str| {
        let secret = "apiVersion: v1\nkind: Secret\ntype: kubernetes.io/tls\nmetadata: { name: shop-tls, namespace: shop }\n";
        let text = format!("{}{secret}{data}", shop_documents());
        let store = weir::source::file::parse("tls.yaml", &text).expect("parses");
        let compiled = compile(&store, None);
        let status = compiled.statuses[&ObjectKey::new("shop", "web")].clone();
        let refs = status
            .conditions
            .iter()
            .find(|c| c.type_ == "ResolvedRefs")
            .expect("ResolvedRefs")
            .clone();
        (refs, compiled.table.certificate("shop.test").is_some())
    };
    let (refs, served) = compile_with(&format!(
        "data:\n  tls.crt: {}\n",
        STANDARD.encode(&pair.crt)
    ));
    assert!(
        refs.message.contains("has no tls.key") && !served,
        "{refs:?}"
    );
    let (refs, served) = compile_with(&format!(
        "data:\n  tls.key: {}\n",
        STANDARD.encode(&pair.key)
    ));
    assert!(
        refs.message.contains("has no tls.crt") && !served,
        "{refs:?}"
    );
    let (refs, served) = compile_with(&format!(
        "stringData:\n  tls.crt: {}\n  tls.key: {}\n",
        serde_json::to_string(&String::from_utf8_lossy(&pair.crt)).expect("json"),
        serde_json::to_string(&String::from_utf8_lossy(&pair.key)).expect("json")
    ));
    assert!(refs.is_true() && served, "{refs:?}");
}
