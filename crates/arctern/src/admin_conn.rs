//! The Kafka connection of the admin subcommands (`arctern cluster status`, `arctern
//! groups ...`): the replica fetcher's sequential [`KafkaConnection`] (shared client codec)
//! plus API version negotiation with ApiVersions v0, so each request goes at the highest
//! version both this tool and the broker speak.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use arctern_replication::KafkaConnection;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Request, StrBytes};

/// How long one request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// SASL/PLAIN login for a SASL_PLAINTEXT listener (flattened into the Kafka-side tools).
#[derive(clap::Args, Clone, Default)]
pub struct SaslArgs {
    /// SASL/PLAIN user for a SASL_PLAINTEXT listener (with --sasl-password).
    #[arg(long)]
    pub sasl_username: Option<String>,
    /// SASL/PLAIN password (or ARCTERN_SASL_PASSWORD in the environment; arguments show
    /// in `ps`).
    #[arg(long)]
    pub sasl_password: Option<String>,
}

impl SaslArgs {
    /// Connects to `addr` and logs in when a user is given.
    pub async fn connect(&self, addr: &str, client_id: &str) -> Result<AdminConn> {
        let mut conn = AdminConn::connect(addr, client_id).await?;
        if let Some(user) = &self.sasl_username {
            let password = match &self.sasl_password {
                Some(p) => p.clone(),
                None => std::env::var("ARCTERN_SASL_PASSWORD")
                    .map_err(|_| anyhow::anyhow!("--sasl-username needs --sasl-password"))?,
            };
            conn.authenticate_plain(user, &password).await?;
        }
        Ok(conn)
    }
}

/// One broker connection with the version ranges the broker advertised.
pub struct AdminConn {
    addr: String,
    conn: KafkaConnection,
    /// api key -> (min, max) the broker supports
    broker_versions: HashMap<i16, (i16, i16)>,
}

impl AdminConn {
    /// Connects to `addr` and reads the broker's ApiVersions.
    pub async fn connect(addr: &str, client_id: &str) -> Result<Self> {
        let mut conn = KafkaConnection::connect(addr, client_id)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        let resp = conn
            .call(&ApiVersionsRequest::default(), 0, REQUEST_TIMEOUT)
            .await
            .with_context(|| format!("ApiVersions request to {addr}"))?;
        if resp.error_code != 0 {
            bail!(
                "ApiVersions from {addr} failed: {}",
                error_name(resp.error_code)
            );
        }
        let broker_versions = resp
            .api_keys
            .iter()
            .map(|a| (a.api_key, (a.min_version, a.max_version)))
            .collect();
        Ok(Self {
            addr: addr.to_string(),
            conn,
            broker_versions,
        })
    }

    /// Logs in with SASL/PLAIN on a SASL_PLAINTEXT listener (SaslHandshake v1, then
    /// SaslAuthenticate, as Kafka's Java client does).
    pub async fn authenticate_plain(&mut self, user: &str, password: &str) -> Result<()> {
        let v = self.version::<SaslHandshakeRequest>(1, 1)?;
        let resp = self
            .call(
                &SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_string("PLAIN".into())),
                v,
            )
            .await?;
        if resp.error_code != 0 {
            bail!(
                "SASL PLAIN refused by {}: {} (mechanisms: {:?})",
                self.addr,
                error_name(resp.error_code),
                resp.mechanisms
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
            );
        }
        let mut token = Vec::with_capacity(user.len() + password.len() + 2);
        token.push(0);
        token.extend_from_slice(user.as_bytes());
        token.push(0);
        token.extend_from_slice(password.as_bytes());
        let v = self.version::<SaslAuthenticateRequest>(0, 2)?;
        let resp = self
            .call(
                &SaslAuthenticateRequest::default().with_auth_bytes(token.into()),
                v,
            )
            .await?;
        if resp.error_code != 0 {
            bail!(
                "SASL authentication as {user:?} failed: {}{}",
                error_name(resp.error_code),
                resp.error_message
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
        }
        Ok(())
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The highest version of request type `R` in `lo..=hi` (what this tool speaks) that
    /// the broker supports.
    pub fn version<R: Request>(&self, lo: i16, hi: i16) -> Result<i16> {
        let name = api_name(R::KEY);
        let Some(&(bmin, bmax)) = self.broker_versions.get(&R::KEY) else {
            bail!("broker {} does not support {name}", self.addr);
        };
        let v = hi.min(bmax);
        if v < lo.max(bmin) {
            bail!(
                "broker {} supports {name} v{bmin}..=v{bmax}; this tool speaks v{lo}..=v{hi}",
                self.addr
            );
        }
        Ok(v)
    }

    /// Sends `req` at `version` and waits for the response.
    pub async fn call<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        let name = api_name(R::KEY);
        self.conn
            .call(req, version, REQUEST_TIMEOUT)
            .await
            .with_context(|| format!("{name} v{version} request to {}", self.addr))
    }
}

pub fn api_name(key: i16) -> String {
    ApiKey::try_from(key)
        .map(|k| format!("{k:?}"))
        .unwrap_or_else(|_| format!("api key {key}"))
}

/// A Kafka error code with its name, e.g. `NotCoordinator (16)`.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(ResponseError::Unknown(c)) => format!("unknown error ({c})"),
        Some(e) => format!("{e} ({code})"),
        None => "no error (0)".to_string(),
    }
}
