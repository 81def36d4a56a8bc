//! TLS certificates from PEM (a `kubernetes.io/tls` Secret, or `--tls-cert`/`--tls-key` files):
//! parsed and checked when the table is compiled, so a bad Secret becomes a status condition and
//! never reaches a handshake.

use k8s_openapi::api::core::v1::Secret;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::sync::Arc;

/// A certificate ready for handshakes, and when it expires.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub key: Arc<CertifiedKey>,
    /// `notAfter` of the leaf certificate, in seconds since the Unix epoch.
    pub not_after: Option<i64>,
}

/// Loads a Secret's `tls.crt` (a full chain, leaf first) and `tls.key` (PKCS#1, PKCS#8 or
/// SEC1 PEM; RSA, ECDSA or Ed25519) and checks that they belong together.
pub fn load(secret: &Secret) -> Result<Certificate, String> {
    let field = |name: &str| -> Option<Vec<u8>> {
        if let Some(v) = secret.data.as_ref().and_then(|d| d.get(name)) {
            return Some(v.0.clone());
        }
        secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(name))
            .map(|s| s.clone().into_bytes())
    };
    let crt = field("tls.crt").ok_or("has no tls.crt")?;
    let key = field("tls.key").ok_or("has no tls.key")?;
    load_pem(&crt, &key)
}

/// Loads a PEM certificate chain and private key, as [`load`] does for a Secret.
pub fn load_pem(crt: &[u8], key: &[u8]) -> Result<Certificate, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(crt)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.crt is not PEM: {e}"))?;
    if chain.is_empty() {
        return Err("tls.crt holds no certificate".into());
    }
    let private = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| format!("tls.key is not a PEM private key: {e}"))?;
    let provider = rustls::crypto::ring::default_provider();
    let not_after = not_after(&chain[0]);
    let certified = CertifiedKey::from_der(chain, private, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            "tls.key does not match the certificate in tls.crt".to_string()
        }
        other => format!("tls.crt and tls.key cannot be used: {other}"),
    })?;
    Ok(Certificate {
        key: Arc::new(certified),
        not_after,
    })
}

/// The leaf's `notAfter`, read from the DER: Certificate → tbsCertificate → validity.
fn not_after(cert: &[u8]) -> Option<i64> {
    let (_, cert_body) = der_element(cert, 0x30)?;
    let (_, mut tbs) = der_element(cert_body, 0x30)?;
    // [0] version is optional.
    if tbs.first() == Some(&0xa0) {
        tbs = der_skip(tbs)?;
    }
    tbs = der_skip(tbs)?; // serialNumber
    tbs = der_skip(tbs)?; // signature algorithm
    tbs = der_skip(tbs)?; // issuer
    let (_, validity) = der_element(tbs, 0x30)?;
    let validity = der_skip(validity)?; // notBefore
    let tag = *validity.first()?;
    let (_, time) = der_element(validity, tag)?;
    let text = std::str::from_utf8(time).ok()?;
    let digits = text.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i64 = digits.get(..2)?.parse().ok()?;
            (
                if yy < 50 { 2000 + yy } else { 1900 + yy },
                digits.get(2..)?,
            )
        }
        0x18 => (digits.get(..4)?.parse().ok()?, digits.get(4..)?),
        _ => return None,
    };
    let num = |r: std::ops::Range<usize>| -> Option<i64> { rest.get(r)?.parse().ok() };
    let (month, day, hour, minute, second) =
        (num(0..2)?, num(2..4)?, num(4..6)?, num(6..8)?, num(8..10)?);
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// One DER element with the expected tag: (the rest after it, its contents).
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *input.first()? != tag {
        return None;
    }
    let first = *input.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *input.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let body = input.get(header..header.checked_add(len)?)?;
    Some((&input[header + len..], body))
}

fn der_skip(input: &[u8]) -> Option<&[u8]> {
    let tag = *input.first()?;
    der_element(input, tag).map(|(rest, _)| rest)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(crt: &str, key: &str) -> Secret {
        let mut data = BTreeMap::new();
        data.insert("tls.crt".to_string(), ByteString(crt.as_bytes().to_vec()));
        data.insert("tls.key".to_string(), ByteString(key.as_bytes().to_vec()));
        Secret {
            data: Some(data),
            ..Default::default()
        }
    }

    fn made(alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.test".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 7, 9);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn loads_ecdsa_ed25519_and_reads_the_expiry() {
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ED25519,
        ] {
            let (crt, key) = made(alg);
            let c = load(&secret(&crt, &key)).expect("loads");
            // 2031-07-09T00:00:00Z
            assert_eq!(c.not_after, Some(1_941_321_600));
        }
    }

    #[test]
    fn bad_secrets_say_why() {
        let (crt, key) = made(&rcgen::PKCS_ECDSA_P256_SHA256);
        let (_, other_key) = made(&rcgen::PKCS_ECDSA_P256_SHA256);
        let mismatch = load(&secret(&crt, &other_key)).unwrap_err();
        assert!(mismatch.contains("does not match"), "{mismatch}");
        assert!(
            load(&secret("garbage", &key))
                .unwrap_err()
                .contains("no certificate")
        );
        assert!(
            load(&secret(&crt, "garbage"))
                .unwrap_err()
                .contains("tls.key")
        );
        assert!(load(&Secret::default()).unwrap_err().contains("no tls.crt"));
    }

    #[test]
    fn civil_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
    }
}

#[cfg(test)]
mod openssl_formats {
    //! RSA and the older PEM key formats, made with the openssl command (rcgen makes neither).
    use super::*;
    use std::process::Command;

    fn openssl(dir: &std::path::Path, args: &[&str]) {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            status.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    }

    fn cert_for(dir: &std::path::Path, key: &str) -> Vec<u8> {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-key",
                key,
                "-subj",
                "/CN=a.test",
                "-days",
                "2",
                "-out",
                "crt.pem",
            ],
        );
        std::fs::read(dir.join("crt.pem")).unwrap()
    }

    #[test]
    fn rsa_pkcs1_and_ec_sec1_keys_load() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // RSA, PKCS#1 ("BEGIN RSA PRIVATE KEY").
        openssl(d, &["genrsa", "-traditional", "-out", "rsa.pem", "2048"]);
        let key = std::fs::read(d.join("rsa.pem")).unwrap();
        assert!(String::from_utf8_lossy(&key).contains("BEGIN RSA PRIVATE KEY"));
        let crt = cert_for(d, "rsa.pem");
        assert!(load_pem(&crt, &key).is_ok());
        // ECDSA, SEC1 ("BEGIN EC PRIVATE KEY").
        openssl(
            d,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "ec.pem",
            ],
        );
        let key = std::fs::read(d.join("ec.pem")).unwrap();
        assert!(String::from_utf8_lossy(&key).contains("BEGIN EC PRIVATE KEY"));
        let crt = cert_for(d, "ec.pem");
        let loaded = load_pem(&crt, &key).expect("SEC1 key loads");
        assert!(loaded.not_after.is_some());
        // A full chain (leaf, then a CA) keeps both certificates.
        let mut chain = crt.clone();
        chain.extend_from_slice(&crt);
        assert_eq!(load_pem(&chain, &key).unwrap().key.cert.len(), 2);
    }
}
