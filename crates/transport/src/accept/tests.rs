use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::tls::{ClientAuth, PemSource, TlsSettings};

struct Pki {
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    fn new() -> Pki {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, "test CA");
        let ca_key = KeyPair::generate().expect("key");
        let ca_cert = p.self_signed(&ca_key).expect("ca");
        Pki { ca_cert, ca_key }
    }

    /// (cert PEM, key PEM) signed by the CA.
    fn issue(&self, cn: &str, sans: &[&str], serial: u64) -> (String, String) {
        let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("params");
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::OrganizationName, "Test");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.serial_number = Some(serial.into());
        let key = KeyPair::generate().expect("key");
        let cert = p
            .signed_by(&key, &self.ca_cert, &self.ca_key)
            .expect("sign");
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PemSource {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    PemSource::File(p)
}

fn server_settings(dir: &Path, pki: &Pki, auth: ClientAuth) -> TlsSettings {
    let (cert, key) = pki.issue("server", &["127.0.0.1"], 1);
    TlsSettings {
        cert_chain: write(dir, "server.pem", &cert),
        key: write(dir, "server.key", &key),
        ca: Some(write(dir, "ca.pem", &pki.ca_cert.pem())),
        client_auth: auth,
    }
}

fn client_config(pki: &Pki, cert: Option<(String, String)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_cert.der().clone()).expect("root");
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(crate::tls::provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let c = match cert {
        None => b.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = rustls_pemfile::certs(&mut cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("certs");
            let key = rustls_pemfile::private_key(&mut key.as_bytes())
                .expect("key")
                .expect("some key");
            b.with_client_auth_cert(chain, key).expect("client cert")
        }
    };
    Arc::new(c)
}

/// Accepts one connection with `tls` and echoes one line; returns what accept saw.
async fn serve_one(
    tls: Option<Arc<ReloadableTls>>,
) -> (SocketAddr, tokio::task::JoinHandle<Option<Option<TlsPeer>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let (s, peer) = l.accept().await.expect("accept");
        let a = accept(s, peer, tls.as_deref(), "test").await?;
        let mut stream = a.stream;
        let mut buf = [0u8; 5];
        stream.read_exact(&mut buf).await.ok()?;
        stream.write_all(&buf).await.ok()?;
        stream.flush().await.ok()?;
        Some(a.tls)
    });
    (addr, task)
}

async fn connect_tls(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<(Vec<u8>, Option<Vec<u8>>)> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let mut s = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    s.write_all(b"hello").await?;
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).await?;
    let server_cert = s
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec());
    Ok((buf.to_vec(), server_cert))
}

#[tokio::test]
async fn tls_round_trip_with_a_client_certificate() {
    let dir = tempfile::tempdir().expect("dir");
    let pki = Pki::new();
    let tls = Arc::new(
        ReloadableTls::new("t", server_settings(dir.path(), &pki, ClientAuth::Required))
            .expect("loads"),
    );
    let (addr, task) = serve_one(Some(tls)).await;
    let client = pki.issue("alice", &[], 7);
    let (echo, _) = connect_tls(addr, client_config(&pki, Some(client)))
        .await
        .expect("tls");
    assert_eq!(echo, b"hello");
    let peer = task.await.expect("join").expect("accepted").expect("tls");
    assert_eq!(peer.client_cn.as_deref(), Some("alice"));
    assert_eq!(peer.client_subject.as_deref(), Some("CN=alice,O=Test"));
}

#[tokio::test]
async fn required_client_auth_refuses_a_client_without_certificate() {
    let dir = tempfile::tempdir().expect("dir");
    let pki = Pki::new();
    let tls = Arc::new(
        ReloadableTls::new("t", server_settings(dir.path(), &pki, ClientAuth::Required))
            .expect("loads"),
    );
    let (addr, task) = serve_one(Some(tls)).await;
    // TLS 1.3: the client learns of the refusal on its first read.
    assert!(connect_tls(addr, client_config(&pki, None)).await.is_err());
    assert!(task.await.expect("join").is_none());
}

#[tokio::test]
async fn requested_client_auth_accepts_both() {
    let dir = tempfile::tempdir().expect("dir");
    let pki = Pki::new();
    let tls = Arc::new(
        ReloadableTls::new(
            "t",
            server_settings(dir.path(), &pki, ClientAuth::Requested),
        )
        .expect("loads"),
    );
    let (addr, task) = serve_one(Some(Arc::clone(&tls))).await;
    connect_tls(addr, client_config(&pki, None))
        .await
        .expect("tls");
    let peer = task.await.expect("join").expect("accepted").expect("tls");
    assert_eq!(peer.client_subject, None);
}

#[tokio::test]
async fn plaintext_listener_closes_a_client_hello_and_tls_listener_closes_plaintext() {
    let dir = tempfile::tempdir().expect("dir");
    let pki = Pki::new();
    let (addr, task) = serve_one(None).await;
    assert!(connect_tls(addr, client_config(&pki, None)).await.is_err());
    assert!(task.await.expect("join").is_none());

    let tls = Arc::new(
        ReloadableTls::new("t", server_settings(dir.path(), &pki, ClientAuth::None))
            .expect("loads"),
    );
    let (addr, task) = serve_one(Some(tls)).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"\0\0\0\x10hello plaintext")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    assert!(task.await.expect("join").is_none());
}

#[tokio::test]
async fn plain_listener_passes_plaintext() {
    let (addr, task) = serve_one(None).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"hello").await.expect("write");
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).await.expect("echo");
    assert_eq!(&buf, b"hello");
    assert_eq!(task.await.expect("join"), Some(None));
}

#[tokio::test]
async fn reload_serves_the_new_certificate_and_a_bad_one_keeps_the_old() {
    let dir = tempfile::tempdir().expect("dir");
    let pki = Pki::new();
    let settings = server_settings(dir.path(), &pki, ClientAuth::None);
    let tls = Arc::new(ReloadableTls::new("t", settings).expect("loads"));
    let serial_of = |der: &[u8]| {
        let (_, c) = x509_parser::parse_x509_certificate(der).expect("parse");
        c.raw_serial().to_vec()
    };
    let (addr, _task) = serve_one(Some(Arc::clone(&tls))).await;
    let (_, cert) = connect_tls(addr, client_config(&pki, None))
        .await
        .expect("tls");
    assert_eq!(serial_of(&cert.expect("cert")), vec![1]);

    let (cert, key) = pki.issue("server", &["127.0.0.1"], 2);
    write(dir.path(), "server.pem", &cert);
    write(dir.path(), "server.key", &key);
    tls.reload().expect("reloads");
    let (addr, _task) = serve_one(Some(Arc::clone(&tls))).await;
    let (_, cert) = connect_tls(addr, client_config(&pki, None))
        .await
        .expect("tls");
    assert_eq!(serial_of(&cert.expect("cert")), vec![2]);

    // A key that does not match: the reload fails, the serial-2 config stays.
    let (_, other_key) = pki.issue("server", &["127.0.0.1"], 3);
    write(dir.path(), "server.key", &other_key);
    let err = tls.reload().expect_err("mismatch").to_string();
    assert!(err.contains("does not match"), "{err}");
    let (addr, _task) = serve_one(Some(Arc::clone(&tls))).await;
    let (_, cert) = connect_tls(addr, client_config(&pki, None))
        .await
        .expect("tls");
    assert_eq!(serial_of(&cert.expect("cert")), vec![2]);
}

#[test]
fn bad_material_names_the_file() {
    let dir = tempfile::tempdir().expect("dir");
    let pki = Pki::new();
    let mut s = server_settings(dir.path(), &pki, ClientAuth::None);
    let good = s.clone();
    s.cert_chain = PemSource::File(dir.path().join("missing.pem"));
    let e = ReloadableTls::new("t", s).err().expect("fails").to_string();
    assert!(e.contains("missing.pem"), "{e}");

    let mut s = good.clone();
    s.key = write(dir.path(), "garbage.key", "not a key");
    let e = ReloadableTls::new("t", s).err().expect("fails").to_string();
    assert!(
        e.contains("garbage.key") && e.contains("PRIVATE KEY"),
        "{e}"
    );

    let mut s = good.clone();
    s.client_auth = ClientAuth::Required;
    s.ca = Some(write(
        dir.path(),
        "badca.pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ));
    let e = ReloadableTls::new("t", s).err().expect("fails").to_string();
    assert!(e.contains("badca.pem"), "{e}");

    let mut s = good;
    s.ca = None;
    s.client_auth = ClientAuth::Required;
    assert!(ReloadableTls::new("t", s).is_err());
}
