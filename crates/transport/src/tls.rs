//! The server TLS configuration: built from PEM, swapped on reload.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::sync::watch;

/// The `ring` crypto provider. rustls 0.23.48 deprecates it in favour of aws-lc-rs (for
/// post-quantum key exchange), which needs cmake and a long C build; ring's classic suites
/// are what Kafka's and RabbitMQ's JVM/Erlang TLS stacks negotiate anyway.
#[allow(deprecated)]
pub fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// How often the certificate files' modification times are checked.
pub const RELOAD_POLL: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} ({source_name}): {message}")]
    Pem {
        what: &'static str,
        source_name: String,
        message: String,
    },
    #[error("{0}")]
    Config(String),
}

/// Where PEM text comes from: a file (re-read on reload) or text given in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PemSource {
    File(PathBuf),
    /// Inline PEM and the config key it came from (for messages).
    Inline {
        key: String,
        pem: String,
    },
}

impl PemSource {
    fn name(&self) -> String {
        match self {
            PemSource::File(p) => p.display().to_string(),
            PemSource::Inline { key, .. } => format!("inline {key}"),
        }
    }

    fn read(&self, what: &'static str) -> Result<Vec<u8>, TlsError> {
        match self {
            PemSource::File(p) => std::fs::read(p).map_err(|e| TlsError::Pem {
                what,
                source_name: self.name(),
                message: e.to_string(),
            }),
            PemSource::Inline { pem, .. } => Ok(pem.clone().into_bytes()),
        }
    }

    fn path(&self) -> Option<&PathBuf> {
        match self {
            PemSource::File(p) => Some(p),
            PemSource::Inline { .. } => None,
        }
    }
}

/// Kafka's `ssl.client.auth`; RabbitMQ's `verify_peer` + `fail_if_no_peer_cert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    Required,
    Requested,
    #[default]
    None,
}

impl ClientAuth {
    pub fn parse(s: &str) -> Option<ClientAuth> {
        match s.to_ascii_lowercase().as_str() {
            "required" => Some(ClientAuth::Required),
            "requested" => Some(ClientAuth::Requested),
            "none" => Some(ClientAuth::None),
            _ => None,
        }
    }
}

/// One listener's TLS material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The certificate chain, end-entity first.
    pub cert_chain: PemSource,
    /// The private key (PKCS#8, PKCS#1 RSA or SEC1 EC); may be the same file as the chain.
    pub key: PemSource,
    /// CAs that sign client certificates.
    pub ca: Option<PemSource>,
    pub client_auth: ClientAuth,
}

impl TlsSettings {
    fn paths(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = [Some(&self.cert_chain), Some(&self.key), self.ca.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|s| s.path().cloned())
            .collect();
        v.dedup();
        v
    }

    /// Builds the rustls server config; every failure names the file (or inline key).
    pub fn build(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let certs = read_certs(&self.cert_chain, "certificate chain")?;
        let key = read_key(&self.key)?;
        let provider = Arc::new(provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match (self.client_auth, &self.ca) {
            (ClientAuth::None, _) => builder.with_no_client_auth(),
            (_, None) => {
                return Err(TlsError::Config(
                    "client authentication needs a CA bundle (ssl.truststore.* / ssl_options.cacertfile)"
                        .into(),
                ))
            }
            (auth, Some(ca)) => {
                let mut roots = RootCertStore::empty();
                for c in read_certs(ca, "CA bundle")? {
                    roots.add(c).map_err(|e| TlsError::Pem {
                        what: "CA bundle",
                        source_name: ca.name(),
                        message: e.to_string(),
                    })?;
                }
                let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let v = if auth == ClientAuth::Requested {
                    v.allow_unauthenticated()
                } else {
                    v
                };
                let v = v.build().map_err(|e| TlsError::Pem {
                    what: "CA bundle",
                    source_name: ca.name(),
                    message: e.to_string(),
                })?;
                builder.with_client_cert_verifier(v)
            }
        };
        let config = builder
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Pem {
                what: "certificate and key",
                source_name: format!("{} + {}", self.cert_chain.name(), self.key.name()),
                message: match e {
                    rustls::Error::InconsistentKeys(_) => {
                        "the private key does not match the certificate".to_string()
                    }
                    e => e.to_string(),
                },
            })?;
        Ok(Arc::new(config))
    }
}

impl TlsSettings {
    /// A client config for connecting to another broker's listener of these settings:
    /// trusting the CA bundle, presenting the keystore's certificate (as Kafka's brokers
    /// do on an SSL inter-broker listener).
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let ca = self.ca.as_ref().ok_or_else(|| {
            TlsError::Config(
                "an SSL inter-broker listener needs ssl.truststore.location or ssl.truststore.certificates (the CA of the other brokers' certificates)".into(),
            )
        })?;
        let mut roots = RootCertStore::empty();
        for c in read_certs(ca, "CA bundle")? {
            roots.add(c).map_err(|e| TlsError::Pem {
                what: "CA bundle",
                source_name: ca.name(),
                message: e.to_string(),
            })?;
        }
        let certs = read_certs(&self.cert_chain, "certificate chain")?;
        let key = read_key(&self.key)?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|e| TlsError::Pem {
                what: "certificate and key",
                source_name: format!("{} + {}", self.cert_chain.name(), self.key.name()),
                message: e.to_string(),
            })?;
        Ok(Arc::new(config))
    }
}

fn read_certs(
    src: &PemSource,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = src.read(what)?;
    let err = |message: String| TlsError::Pem {
        what,
        source_name: src.name(),
        message,
    };
    let certs = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err("no CERTIFICATE block found".into()));
    }
    for c in &certs {
        if x509_parser::parse_x509_certificate(c).is_err() {
            return Err(err(
                "a CERTIFICATE block is not a valid X.509 certificate".into()
            ));
        }
    }
    Ok(certs)
}

fn read_key(src: &PemSource) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = src.read("private key")?;
    let err = |message: String| TlsError::Pem {
        what: "private key",
        source_name: src.name(),
        message,
    };
    let key = rustls_pemfile::private_key(&mut bytes.as_slice())
        .map_err(|e| err(format!("bad PEM: {e}")))?
        .ok_or_else(|| err("no PRIVATE KEY block (PKCS#8, RSA or EC) found".into()))?;
    // Fail here, not at the first handshake, on a key ring cannot use.
    provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| err(format!("unusable key: {e}")))?;
    Ok(key)
}

/// A listener's current TLS config, replaced whole on reload.
pub struct ReloadableTls {
    /// For log lines: the listener's name.
    pub name: String,
    settings: TlsSettings,
    // Never held across an await: readers clone the Arc and let go.
    current: RwLock<Arc<ServerConfig>>,
    mtimes: Mutex<Vec<Option<SystemTime>>>,
}

impl ReloadableTls {
    /// Loads the material now; an error here should stop the start.
    pub fn new(name: impl Into<String>, settings: TlsSettings) -> Result<ReloadableTls, TlsError> {
        let mtimes = mtimes(&settings);
        let config = settings.build()?;
        Ok(ReloadableTls {
            name: name.into(),
            settings,
            current: RwLock::new(config),
            mtimes: Mutex::new(mtimes),
        })
    }

    pub fn config(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(c) => Arc::clone(&c),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// Rebuilds from the files; on failure the old config stays and the error is returned.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamp = mtimes(&self.settings);
        if let Ok(mut m) = self.mtimes.lock() {
            *m = stamp;
        }
        let config = self.settings.build()?;
        match self.current.write() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        Ok(())
    }

    /// Whether a file's modification time changed since the last (re)load.
    pub fn files_changed(&self) -> bool {
        let now = mtimes(&self.settings);
        match self.mtimes.lock() {
            Ok(m) => *m != now,
            Err(_) => false,
        }
    }

    fn reload_logged(&self, why: &str) {
        match self.reload() {
            Ok(()) => tracing::info!(listener = %self.name, why, "TLS certificates reloaded"),
            Err(e) => tracing::error!(
                listener = %self.name,
                why,
                error = %e,
                "TLS reload failed; keeping the previous certificates"
            ),
        }
    }
}

fn mtimes(settings: &TlsSettings) -> Vec<Option<SystemTime>> {
    settings
        .paths()
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

/// Reloads every listener's TLS config on SIGHUP, and each one whose files changed (polled
/// every [`RELOAD_POLL`]), until `shutdown` turns true. Nothing runs without TLS listeners
/// (SIGHUP then keeps its default action).
pub fn spawn_reloader(
    all: Vec<Arc<ReloadableTls>>,
    mut shutdown: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    if all.is_empty() {
        return None;
    }
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot install the SIGHUP handler; TLS reload only on file changes");
            None
        }
    };
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(RELOAD_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = hangup => {
                    for t in &all {
                        t.reload_logged("SIGHUP");
                    }
                }
                _ = tick.tick() => {
                    for t in &all {
                        if t.files_changed() {
                            t.reload_logged("file changed");
                        }
                    }
                }
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    }))
}
