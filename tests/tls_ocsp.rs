//! OCSP stapling over real handshakes: a leaf signed by a CA made in the test, an OCSP response
//! for it made by `openssl ocsp` acting as the CA's responder, carried in the Secret's
//! `tls.ocsp-staple`, and clients (rustls, and `openssl s_client -status`) that ask for it.

mod common;

use base64::Engine;
use common::*;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const HOST: &str = "ocsp.test";

/// A CA, a leaf it signed for [`HOST`], and the CA's OCSP response saying the leaf is good.
struct Pki {
    leaf_pem: String,
    leaf_key: String,
    leaf_der: Vec<u8>,
    /// DER, as `openssl ocsp -respout` writes it.
    ocsp: Vec<u8>,
}

fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn make_pki() -> Pki {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "weir test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let mut leaf_params =
        rcgen::CertificateParams::new(vec![HOST.to_string()]).expect("leaf params");
    leaf_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, HOST);
    leaf_params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    let leaf = leaf_params.signed_by(&leaf_key, &ca).expect("leaf");
    std::fs::write(d.join("ca.pem"), ca.pem()).expect("write");
    std::fs::write(d.join("ca.key"), ca.key().serialize_pem()).expect("write");
    std::fs::write(d.join("leaf.pem"), leaf.pem()).expect("write");
    // The responder's database: one valid certificate, by serial number (openssl's ca format:
    // status, expiry, revocation, serial in hex, file, subject).
    let serial = openssl(d, &["x509", "-in", "leaf.pem", "-noout", "-serial"]);
    let serial = serial
        .trim()
        .strip_prefix("serial=")
        .expect("openssl prints serial=");
    std::fs::write(
        d.join("index.txt"),
        format!("V\t350101000000Z\t\t{serial}\tunknown\t/CN={HOST}\n"),
    )
    .expect("write");
    openssl(
        d,
        &[
            "ocsp",
            "-index",
            "index.txt",
            "-rsigner",
            "ca.pem",
            "-rkey",
            "ca.key",
            "-CA",
            "ca.pem",
            "-issuer",
            "ca.pem",
            "-cert",
            "leaf.pem",
            "-respout",
            "resp.der",
            "-ndays",
            "1",
        ],
    );
    let ocsp = std::fs::read(d.join("resp.der")).expect("the response");
    let text = openssl(
        d,
        &["ocsp", "-respin", "resp.der", "-resp_text", "-noverify"],
    );
    assert!(text.contains("Cert Status: good"), "{text}");
    Pki {
        leaf_pem: leaf.pem(),
        leaf_key: leaf_key.serialize_pem(),
        leaf_der: leaf.der().to_vec(),
        ocsp,
    }
}

/// The Secret `tls` with the leaf, and `ocsp` (if any) under `tls.ocsp-staple`.
fn secret_yaml(pki: &Pki, ocsp: Option<&[u8]>) -> String {
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let mut yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{ name: tls, namespace: test }}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
        b64(pki.leaf_pem.as_bytes()),
        b64(pki.leaf_key.as_bytes())
    );
    if let Some(ocsp) = ocsp {
        yaml.push_str(&format!("  tls.ocsp-staple: {}\n", b64(ocsp)));
    }
    yaml
}

fn config(b: &Backend) -> Config {
    Config::default().service("web", &[b.addr]).pool_with(
        "a",
        HOST,
        &[("web", 1)],
        "  tls: { secretName: tls }\n",
    )
}

fn store_of(config: &Config, secret: &str) -> Arc<weir::store::Store> {
    let yaml = format!("{}---\n{secret}", config.yaml());
    Arc::new(weir::source::file::parse("test.yaml", &yaml).expect("parses"))
}

async fn start(config: &Config, secret: &str) -> Weir {
    let weir = Weir::start(&Config::default()).await;
    weir.feed
        .send(store_of(config, secret))
        .expect("weir listens");
    tokio::time::sleep(Duration::from_millis(100)).await;
    weir
}

/// Accepts any certificate, and keeps what the server stapled to it.
#[derive(Debug, Default)]
struct Recorder {
    /// The leaf and the staple of the last handshake (empty: none).
    seen: Mutex<Option<(Vec<u8>, Vec<u8>)>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some((end_entity.to_vec(), ocsp_response.to_vec()));
        }
        AnyCert.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        AnyCert.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        AnyCert.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        AnyCert.supported_verify_schemes()
    }
}

/// A rustls handshake with SNI [`HOST`] (rustls always asks for the status): the leaf weir
/// sent and its staple (empty: none).
async fn handshake(
    addr: SocketAddr,
    version: &'static rustls::SupportedProtocolVersion,
) -> (Vec<u8>, Vec<u8>) {
    let recorder = Arc::new(Recorder::default());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.expect("connects");
    let name = ServerName::try_from(HOST).expect("a name");
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("handshake");
    let seen = recorder.seen.lock().expect("not poisoned").take();
    seen.expect("the certificate was verified")
}

/// What `openssl s_client -status` prints of the handshake.
async fn s_client(addr: SocketAddr) -> String {
    tokio::task::spawn_blocking(move || {
        let out = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &addr.to_string(),
                "-servername",
                HOST,
                "-status",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("openssl runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .expect("s_client finishes")
}

/// The pool's `CertificateValid` once its message contains `part`.
async fn certificate_valid(weir: &Weir, part: &str) -> weir::api::Condition {
    eventually(
        &format!("CertificateValid saying {part:?}"),
        Duration::from_secs(5),
        async || {
            let status = weir.status("a")?;
            let c = status
                .conditions
                .into_iter()
                .find(|c| c.type_ == "CertificateValid")?;
            c.message.contains(part).then_some(c)
        },
    )
    .await
}

#[tokio::test]
async fn the_secrets_ocsp_response_is_stapled_byte_for_byte() {
    let pki = make_pki();
    let b = Backend::start("web").await;
    let config = config(&b);
    let weir = start(&config, &secret_yaml(&pki, Some(&pki.ocsp))).await;
    let https = weir.running.https_addr.expect("https");
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let (leaf, staple) = handshake(https, version).await;
        assert_eq!(leaf, pki.leaf_der, "{version:?}");
        assert_eq!(staple, pki.ocsp, "{version:?}");
    }
    let out = s_client(https).await;
    assert!(out.contains("OCSP Response Status: successful"), "{out}");
    assert!(out.contains("Cert Status: good"), "{out}");
    let valid = certificate_valid(&weir, "OCSP response stapled").await;
    assert_eq!(
        (valid.status.as_str(), valid.reason.as_str()),
        ("True", "Valid")
    );
    // Taking the key out of the Secret stops the staple at the next handshake.
    weir.feed
        .send(store_of(&config, &secret_yaml(&pki, None)))
        .expect("weir listens");
    eventually("no staple", Duration::from_secs(5), async || {
        handshake(https, &rustls::version::TLS13)
            .await
            .1
            .is_empty()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_secret_without_a_response_staples_nothing() {
    let pki = make_pki();
    let b = Backend::start("web").await;
    let weir = start(&config(&b), &secret_yaml(&pki, None)).await;
    let https = weir.running.https_addr.expect("https");
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let (leaf, staple) = handshake(https, version).await;
        assert_eq!(leaf, pki.leaf_der, "{version:?}");
        assert!(staple.is_empty(), "{version:?}: {staple:?}");
    }
    let out = s_client(https).await;
    assert!(out.contains("OCSP response: no response sent"), "{out}");
    let valid = certificate_valid(&weir, "test/tls").await;
    assert!(!valid.message.contains("OCSP"), "{}", valid.message);
}

#[tokio::test]
async fn a_bad_response_serves_the_certificate_without_a_staple_and_says_why() {
    let pki = make_pki();
    let other = make_pki();
    let b = Backend::start("web").await;
    let config = config(&b);
    let weir = start(&config, &secret_yaml(&pki, None)).await;
    let https = weir.running.https_addr.expect("https");
    let bad: [(&[u8], &str); 4] = [
        (b"", "tls.ocsp-staple is empty"),
        (
            b"not a response\n",
            "tls.ocsp-staple is not a DER OCSPResponse (it is text",
        ),
        // responseStatus tryLater, as an overloaded responder answers.
        (&[0x30, 0x03, 0x0a, 0x01, 0x03], "responseStatus tryLater"),
        (
            &other.ocsp,
            "answers for no certificate with the serial number",
        ),
    ];
    for (ocsp, why) in bad {
        weir.feed
            .send(store_of(&config, &secret_yaml(&pki, Some(ocsp))))
            .expect("weir listens");
        let valid = certificate_valid(&weir, why).await;
        assert_eq!(
            (valid.status.as_str(), valid.reason.as_str()),
            ("True", "Valid"),
            "{why}"
        );
        assert!(
            valid
                .message
                .contains("so handshakes go without an OCSP staple"),
            "{}",
            valid.message
        );
        let status = weir.status("a").expect("status");
        let refs = status
            .conditions
            .iter()
            .find(|c| c.type_ == "ResolvedRefs")
            .expect("ResolvedRefs");
        assert!(refs.is_true(), "{why}: {refs:?}");
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let (leaf, staple) = handshake(https, version).await;
            assert_eq!(leaf, pki.leaf_der, "{why} {version:?}");
            assert!(staple.is_empty(), "{why} {version:?}");
        }
    }
    // A good response after bad ones is stapled at the next handshake.
    weir.feed
        .send(store_of(&config, &secret_yaml(&pki, Some(&pki.ocsp))))
        .expect("weir listens");
    let staple = eventually("the staple", Duration::from_secs(5), async || {
        let (_, staple) = handshake(https, &rustls::version::TLS12).await;
        (!staple.is_empty()).then_some(staple)
    })
    .await;
    assert_eq!(staple, pki.ocsp);
}
