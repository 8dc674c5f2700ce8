//! TLS and SASL for the Kafka benchmark client: one process-wide setting, applied by
//! `Conn::connect` to every connection (set once from the command line).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::{bail, ensure, Context, Result};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

/// `--sasl-mechanism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SaslMechanism {
    #[value(name = "PLAIN")]
    Plain,
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Sasl {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

#[derive(Default)]
pub struct ClientSecurity {
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub sasl: Option<Sasl>,
}

static SECURITY: OnceLock<ClientSecurity> = OnceLock::new();

pub fn get() -> &'static ClientSecurity {
    SECURITY.get_or_init(ClientSecurity::default)
}

/// Sets the process's client security (the first call wins).
pub fn configure(tls_ca: Option<&Path>, sasl: Option<Sasl>) -> Result<()> {
    let tls = match tls_ca {
        Some(ca) => Some(tls_config(ca)?),
        None => None,
    };
    let _ = SECURITY.set(ClientSecurity { tls, sasl });
    Ok(())
}

/// A rustls client trusting the CA file (PEM) only.
pub fn tls_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let pem = std::fs::read(ca).with_context(|| format!("reading TLS CA {}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots
            .add(cert.with_context(|| format!("bad PEM in {}", ca.display()))?)
            .with_context(|| format!("bad CA certificate in {}", ca.display()))?;
    }
    ensure!(!roots.is_empty(), "no CERTIFICATE in {}", ca.display());
    #[allow(deprecated)] // ring: aws-lc-rs needs cmake (see arctern-transport)
    let provider = rustls::crypto::ring::default_provider();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A SCRAM exchange (RFC 5802) from the client side, without channel binding.
pub struct ScramClient {
    mechanism: SaslMechanism,
    password: String,
    client_first_bare: String,
    nonce: String,
    server_signature: Vec<u8>,
}

fn saslname(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

impl ScramClient {
    pub fn new(mechanism: SaslMechanism, username: &str, password: &str, nonce: String) -> Self {
        ScramClient {
            mechanism,
            password: password.to_string(),
            client_first_bare: format!("n={},r={nonce}", saslname(username)),
            nonce,
            server_signature: Vec::new(),
        }
    }

    pub fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    fn hmac(&self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self.mechanism {
            SaslMechanism::ScramSha512 => {
                let mut m = <Hmac<Sha512> as Mac>::new_from_slice(key).expect("any key size");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            _ => {
                let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key size");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(&self, data: &[u8]) -> Vec<u8> {
        match self.mechanism {
            SaslMechanism::ScramSha512 => Sha512::digest(data).to_vec(),
            _ => Sha256::digest(data).to_vec(),
        }
    }

    /// The client-final message for the server-first message.
    pub fn client_final(&mut self, server_first: &str) -> Result<String> {
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for part in server_first.split(',') {
            match part.split_once('=') {
                Some(("r", v)) => nonce = Some(v.to_string()),
                Some(("s", v)) => salt = Some(v.to_string()),
                Some(("i", v)) => iterations = v.parse::<u32>().ok(),
                Some(("e", v)) => bail!("SCRAM error from the server: {v}"),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            bail!("bad SCRAM server-first message");
        };
        ensure!(
            nonce.starts_with(&self.nonce),
            "SCRAM server nonce does not extend ours"
        );
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = b64.decode(salt).context("bad SCRAM salt")?;
        let mut salted = vec![0u8; self.hash(b"").len()];
        match self.mechanism {
            SaslMechanism::ScramSha512 => pbkdf2::pbkdf2_hmac::<Sha512>(
                self.password.as_bytes(),
                &salt,
                iterations,
                &mut salted,
            ),
            _ => pbkdf2::pbkdf2_hmac::<Sha256>(
                self.password.as_bytes(),
                &salt,
                iterations,
                &mut salted,
            ),
        }
        let client_key = self.hmac(&salted, b"Client Key");
        let stored_key = self.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = self.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = self.hmac(&salted, b"Server Key");
        self.server_signature = self.hmac(&server_key, auth_message.as_bytes());
        Ok(format!("{without_proof},p={}", b64.encode(proof)))
    }

    /// Checks the server-final message's signature.
    pub fn verify_server_final(&self, server_final: &str) -> Result<()> {
        if let Some(e) = server_final.strip_prefix("e=") {
            bail!("SCRAM authentication failed: {e}");
        }
        let v = server_final
            .strip_prefix("v=")
            .context("bad SCRAM server-final message")?;
        let v = base64::engine::general_purpose::STANDARD
            .decode(v)
            .context("bad SCRAM server signature")?;
        ensure!(
            v == self.server_signature,
            "SCRAM server signature mismatch"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7677_scram_sha_256_example() {
        let mut c = ScramClient::new(
            SaslMechanism::ScramSha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO".into(),
        );
        assert_eq!(c.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let fin = c
            .client_final(
                "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            )
            .expect("final");
        assert_eq!(
            fin,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        c.verify_server_final("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .expect("server signature");
        assert!(c.verify_server_final("v=AAAA").is_err());
    }
}
