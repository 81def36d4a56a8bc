//! TLS certificates from PEM (a `kubernetes.io/tls` Secret, or the `--default-certificate` and
//! `--default-key` files):
//! parsed and checked when the table is compiled, so a bad Secret becomes a status condition and
//! never reaches a handshake. An OCSP response beside them is checked the same way and stapled.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::sync::Arc;

/// The Secret key of the certificate chain, PEM, leaf first.
pub const TLS_CRT: &str = "tls.crt";
/// The Secret key of the private key, PEM.
pub const TLS_KEY: &str = "tls.key";
/// The Secret key of a DER OCSP response for the leaf, to staple. Not a Kubernetes standard
/// (there is none): the name Istio, kgateway and Envoy Gateway read, from cert-manager's
/// proposal, so one Secret and one updater serve them all.
pub const TLS_OCSP_STAPLE: &str = "tls.ocsp-staple";

/// A certificate ready for handshakes, and when it expires.
#[derive(Debug, Clone)]
pub struct Certificate {
    /// With `ocsp` set when the staple is [`Staple::Stapled`].
    pub key: Arc<CertifiedKey>,
    /// `notAfter` of the leaf certificate, in seconds since the Unix epoch.
    pub not_after: Option<i64>,
    pub staple: Staple,
}

/// What became of the OCSP response a Secret carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Staple {
    /// The Secret carries none.
    Absent,
    /// Sent to every client that asks for the certificate's status.
    Stapled,
    /// Left off: the certificate serves without a staple, since a client that gets a broken
    /// one may refuse the connection, while one that gets none only asks the CA itself.
    Refused(StapleError),
}

/// Why an OCSP response is not stapled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StapleError {
    #[error("is empty")]
    Empty,
    #[error("is not a DER OCSPResponse{}", if *.text {
        " (it is text: it must be the DER bytes, as `openssl ocsp -respout` writes them)"
    } else {
        ""
    })]
    NotDer { text: bool },
    #[error("has responseStatus {0}, not successful")]
    Unsuccessful(&'static str),
    #[error("is not a basic OCSP response (id-pkix-ocsp-basic)")]
    NotBasic,
    #[error("answers for no certificate with the serial number of the leaf in tls.crt")]
    OtherCertificate,
}

/// Loads a Secret's `tls.crt` (a full chain, leaf first) and `tls.key` (PKCS#1, PKCS#8 or
/// SEC1 PEM; RSA, ECDSA or Ed25519) and checks that they belong together. An OCSP response
/// (`ocsp_staple`, DER) is stapled if it is a successful basic response for the leaf; if not,
/// the certificate still loads and [`Certificate::staple`] says why it goes without.
pub fn load(
    crt: Option<&[u8]>,
    key: Option<&[u8]>,
    ocsp_staple: Option<&[u8]>,
) -> Result<Certificate, String> {
    let crt = crt.ok_or("has no tls.crt")?;
    let key = key.ok_or("has no tls.key")?;
    let (mut certified, not_after) = certified(crt, key)?;
    let staple = match ocsp_staple {
        None => Staple::Absent,
        Some(response) => {
            let leaf = certified.end_entity_cert().map(|c| c.as_ref()).ok();
            match check_staple(response, leaf) {
                Ok(()) => {
                    certified.ocsp = Some(response.to_vec());
                    Staple::Stapled
                }
                Err(e) => Staple::Refused(e),
            }
        }
    };
    Ok(Certificate {
        key: Arc::new(certified),
        not_after,
        staple,
    })
}

/// Loads a PEM certificate chain and private key, as [`load`] does for a Secret.
pub fn load_pem(crt: &[u8], key: &[u8]) -> Result<Certificate, String> {
    let (certified, not_after) = certified(crt, key)?;
    Ok(Certificate {
        key: Arc::new(certified),
        not_after,
        staple: Staple::Absent,
    })
}

/// The chain and key, checked to belong together, and the leaf's `notAfter`.
fn certified(crt: &[u8], key: &[u8]) -> Result<(CertifiedKey, Option<i64>), String> {
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
    Ok((certified, not_after))
}

/// DER of `id-pkix-ocsp-basic` (1.3.6.1.5.5.7.48.1.1), the one response type RFC 6960 defines.
const OCSP_BASIC: [u8; 11] = [
    0x06, 0x09, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01,
];

/// Whether `response` is a successful basic OCSPResponse (RFC 6960 §4.2.1) with an answer for
/// `leaf`'s serial number. Its signature and times are the client's to judge: a client trusts
/// a staple only as far as it verifies it, and weir staples what the Secret's updater wrote.
fn check_staple(response: &[u8], leaf: Option<&[u8]>) -> Result<(), StapleError> {
    if response.is_empty() {
        return Err(StapleError::Empty);
    }
    let not_der = StapleError::NotDer {
        text: response
            .iter()
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()),
    };
    let (rest, body) = der_element(response, 0x30).ok_or_else(|| not_der.clone())?;
    if !rest.is_empty() {
        return Err(not_der);
    }
    let (body, status) = der_element(body, 0x0a).ok_or(not_der)?;
    match status {
        [0] => {}
        [n] => return Err(StapleError::Unsuccessful(status_name(*n))),
        _ => return Err(StapleError::Unsuccessful("unknown")),
    }
    // responseBytes [0] EXPLICIT ResponseBytes { responseType OID, response OCTET STRING }.
    let (_, explicit) = der_element(body, 0xa0).ok_or(StapleError::NotBasic)?;
    let (_, response_bytes) = der_element(explicit, 0x30).ok_or(StapleError::NotBasic)?;
    let basic = response_bytes
        .strip_prefix(&OCSP_BASIC[..])
        .and_then(|rest| der_element(rest, 0x04))
        .map(|(_, basic)| basic)
        .ok_or(StapleError::NotBasic)?;
    let serials = response_serials(basic).ok_or(StapleError::NotBasic)?;
    match leaf.and_then(serial_number) {
        Some(serial) if serials.contains(&serial) => Ok(()),
        _ => Err(StapleError::OtherCertificate),
    }
}

/// The serial numbers a BasicOCSPResponse answers for: tbsResponseData → responses →
/// each SingleResponse → certID → serialNumber.
fn response_serials(basic: &[u8]) -> Option<Vec<&[u8]>> {
    let (_, basic) = der_element(basic, 0x30)?;
    let (_, mut tbs) = der_element(basic, 0x30)?;
    // [0] version is optional.
    if tbs.first() == Some(&0xa0) {
        tbs = der_skip(tbs)?;
    }
    tbs = der_skip(tbs)?; // responderID
    tbs = der_skip(tbs)?; // producedAt
    let (_, mut responses) = der_element(tbs, 0x30)?;
    let mut serials = Vec::new();
    while !responses.is_empty() {
        let (rest, single) = der_element(responses, 0x30)?;
        responses = rest;
        let (_, cert_id) = der_element(single, 0x30)?;
        let cert_id = der_skip(cert_id)?; // hashAlgorithm
        let cert_id = der_skip(cert_id)?; // issuerNameHash
        let cert_id = der_skip(cert_id)?; // issuerKeyHash
        let (_, serial) = der_element(cert_id, 0x02)?;
        serials.push(serial);
    }
    Some(serials)
}

fn status_name(status: u8) -> &'static str {
    match status {
        1 => "malformedRequest",
        2 => "internalError",
        3 => "tryLater",
        5 => "sigRequired",
        6 => "unauthorized",
        _ => "unknown",
    }
}

/// The leaf's serialNumber, read from the DER: Certificate → tbsCertificate → serialNumber.
fn serial_number(cert: &[u8]) -> Option<&[u8]> {
    let (_, cert_body) = der_element(cert, 0x30)?;
    let (_, mut tbs) = der_element(cert_body, 0x30)?;
    if tbs.first() == Some(&0xa0) {
        tbs = der_skip(tbs)?;
    }
    der_element(tbs, 0x02).map(|(_, serial)| serial)
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

    /// A Secret with both parts and no staple.
    fn load_pair(crt: &str, key: &str) -> Result<Certificate, String> {
        load(Some(crt.as_bytes()), Some(key.as_bytes()), None)
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
            let c = load_pair(&crt, &key).expect("loads");
            // 2031-07-09T00:00:00Z
            assert_eq!(c.not_after, Some(1_941_321_600));
        }
    }

    #[test]
    fn bad_secrets_say_why() {
        let (crt, key) = made(&rcgen::PKCS_ECDSA_P256_SHA256);
        let (_, other_key) = made(&rcgen::PKCS_ECDSA_P256_SHA256);
        let mismatch = load_pair(&crt, &other_key).unwrap_err();
        assert!(mismatch.contains("does not match"), "{mismatch}");
        assert!(
            load_pair("garbage", &key)
                .unwrap_err()
                .contains("no certificate")
        );
        assert!(load_pair(&crt, "garbage").unwrap_err().contains("tls.key"));
        assert!(load(None, None, None).unwrap_err().contains("no tls.crt"));
        assert!(
            load(None, Some(key.as_bytes()), None)
                .unwrap_err()
                .contains("no tls.crt")
        );
        assert!(
            load(Some(crt.as_bytes()), None, None)
                .unwrap_err()
                .contains("no tls.key")
        );
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

#[cfg(test)]
mod staples {
    //! OCSP responses built by hand: weir reads their structure, never their signature, so
    //! an unsigned response with the right shape is what it would staple.
    use super::*;
    use proptest::prelude::*;

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match content.len() {
            n if n < 0x80 => out.push(n as u8),
            n if n < 0x100 => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(content);
        out
    }

    fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
        parts.concat()
    }

    /// A successful basic OCSPResponse answering for `serial`.
    fn response(serial: &[u8]) -> Vec<u8> {
        let time = tlv(0x18, b"20260101000000Z");
        let cert_id = tlv(
            0x30,
            &cat(&[
                tlv(0x30, &tlv(0x06, &[0x2b, 0x0e, 0x03, 0x02, 0x1a])),
                tlv(0x04, &[0; 20]),
                tlv(0x04, &[0; 20]),
                tlv(0x02, serial),
            ]),
        );
        let single = tlv(0x30, &cat(&[cert_id, vec![0x80, 0x00], time.clone()]));
        let tbs = tlv(
            0x30,
            &cat(&[tlv(0xa2, &tlv(0x04, &[0; 20])), time, tlv(0x30, &single)]),
        );
        let basic = tlv(
            0x30,
            &cat(&[tbs, tlv(0x30, &tlv(0x06, &[0x2a])), tlv(0x03, &[0, 1])]),
        );
        let bytes = tlv(0x30, &cat(&[OCSP_BASIC.to_vec(), tlv(0x04, &basic)]));
        tlv(0x30, &cat(&[tlv(0x0a, &[0]), tlv(0xa0, &bytes)]))
    }

    fn leaf() -> (String, String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["a.test".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    fn staple_of(crt: &str, key: &str, ocsp: &[u8]) -> (Staple, Option<Vec<u8>>) {
        let c = load(Some(crt.as_bytes()), Some(key.as_bytes()), Some(ocsp)).expect("loads");
        (c.staple, c.key.ocsp.clone())
    }

    #[test]
    fn a_response_for_the_leaf_is_stapled_as_is() {
        let (crt, key, der) = leaf();
        let serial = serial_number(&der).expect("a serial").to_vec();
        let ocsp = response(&serial);
        assert_eq!(staple_of(&crt, &key, &ocsp), (Staple::Stapled, Some(ocsp)));
        let none = load(Some(crt.as_bytes()), Some(key.as_bytes()), None).expect("loads");
        assert_eq!((none.staple, none.key.ocsp.clone()), (Staple::Absent, None));
    }

    #[test]
    fn an_implausible_response_is_refused_and_the_certificate_still_loads() {
        let (crt, key, der) = leaf();
        let serial = serial_number(&der).expect("a serial").to_vec();
        let refused = |ocsp: &[u8]| match staple_of(&crt, &key, ocsp) {
            (Staple::Refused(e), None) => e,
            other => panic!("stapled {ocsp:?}: {other:?}"),
        };
        assert_eq!(refused(b""), StapleError::Empty);
        assert_eq!(refused(b"garbage\n"), StapleError::NotDer { text: true });
        let base64_twice = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            response(&serial),
        );
        assert_eq!(
            refused(base64_twice.as_bytes()),
            StapleError::NotDer { text: true }
        );
        assert_eq!(
            refused(&[0x04, 0x01, 0xff]),
            StapleError::NotDer { text: false }
        );
        // Trailing bytes, and a length past the end.
        let mut trailing = response(&serial);
        trailing.push(0);
        assert_eq!(refused(&trailing), StapleError::NotDer { text: false });
        let whole = response(&serial);
        assert!(matches!(
            refused(&whole[..whole.len() - 1]),
            StapleError::NotDer { .. }
        ));
        // tryLater, as a responder under load answers.
        assert_eq!(
            refused(&[0x30, 0x03, 0x0a, 0x01, 0x03]),
            StapleError::Unsuccessful("tryLater")
        );
        // Successful but without responseBytes.
        assert_eq!(
            refused(&[0x30, 0x03, 0x0a, 0x01, 0x00]),
            StapleError::NotBasic
        );
        let mut other_serial = serial.clone();
        other_serial.push(1);
        assert_eq!(
            refused(&response(&other_serial)),
            StapleError::OtherCertificate
        );
        let message = StapleError::NotDer { text: true }.to_string();
        assert!(message.contains("DER bytes"), "{message}");
    }

    proptest! {
        /// A damaged response (bytes changed, cut short, or lengthened) never panics the
        /// reader, whatever part of it the damage hits.
        #[test]
        fn damaged_responses_never_panic(
            edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            cut in any::<usize>(),
            tail in prop::collection::vec(any::<u8>(), 0..3),
        ) {
            let serial = [0x1a, 0x2b, 0x3c];
            let mut ocsp = response(&serial);
            for (at, byte) in edits {
                let i = at % ocsp.len();
                ocsp[i] = byte;
            }
            ocsp.truncate(cut % (ocsp.len() + 1));
            ocsp.extend(tail);
            // The shortest DER with the leaf's serial where a certificate has it.
            let leaf = tlv(0x30, &tlv(0x30, &tlv(0x02, &serial)));
            let _ = check_staple(&ocsp, Some(&leaf));
        }
    }
}
