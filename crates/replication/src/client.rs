//! A minimal sequential Kafka client connection (one request in flight), enough for the
//! replica fetcher: framing, request/response headers, fixed API versions.

use std::sync::Arc;
use std::time::Duration;

use arctern_kafka_wire::{decode_response, encode_request};
use arctern_security::cluster::now_ms;
use arctern_security::ClusterSecret;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Plain TCP or a TLS client stream.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// Largest response frame accepted: a fetch response is bounded by the max bytes asked for;
/// this only guards against a corrupt length.
const MAX_FRAME: usize = 256 * 1024 * 1024;

/// The SASL mechanism cluster nodes authenticate each other with on Kafka listeners.
pub const CLUSTER_MECHANISM: &str = "ARCTERN-CLUSTER";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("i/o with {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("protocol error with {addr}: {reason}")]
    Protocol { addr: String, reason: String },
    #[error("no response from {addr} within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
}

pub struct KafkaConnection {
    addr: String,
    stream: Box<dyn Stream>,
    client_id: StrBytes,
    next_correlation_id: i32,
    buf: BytesMut,
}

impl KafkaConnection {
    pub async fn connect(addr: &str, client_id: &str) -> Result<Self, ClientError> {
        Self::connect_with(addr, client_id, None).await
    }

    /// Connects over TLS when `tls` is set (an SSL inter-broker listener); the server name
    /// checked is `addr`'s host.
    pub async fn connect_with(
        addr: &str,
        client_id: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        stream.set_nodelay(true).map_err(|source| ClientError::Io {
            addr: addr.to_string(),
            source,
        })?;
        let stream: Box<dyn Stream> = match tls {
            None => Box::new(stream),
            Some(tls) => {
                let host = addr
                    .rsplit_once(':')
                    .map_or(addr, |(h, _)| h)
                    .trim_matches(['[', ']']);
                let name =
                    rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| {
                        ClientError::Protocol {
                            addr: addr.to_string(),
                            reason: format!("bad TLS server name: {e}"),
                        }
                    })?;
                let s = tokio_rustls::TlsConnector::from(tls)
                    .connect(name, stream)
                    .await
                    .map_err(|source| ClientError::Connect {
                        addr: addr.to_string(),
                        source,
                    })?;
                Box::new(s)
            }
        };
        Ok(KafkaConnection {
            addr: addr.to_string(),
            stream,
            client_id: StrBytes::from_string(client_id.to_string()),
            next_correlation_id: 1,
            buf: BytesMut::with_capacity(4096),
        })
    }

    fn protocol(&self, reason: String) -> ClientError {
        ClientError::Protocol {
            addr: self.addr.clone(),
            reason,
        }
    }

    fn io(&self, source: std::io::Error) -> ClientError {
        ClientError::Io {
            addr: self.addr.clone(),
            source,
        }
    }

    /// Proves this node's cluster membership on the connection: SASL mechanism
    /// ARCTERN-CLUSTER (SaslHandshake v1, then SaslAuthenticate v2 whose bytes are a
    /// membership token for purpose "kafka"). The leader then treats the connection as
    /// node `node_id` and serves its replica fetches.
    pub async fn authenticate_as_node(
        &mut self,
        secret: &ClusterSecret,
        node_id: i32,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let hs = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(CLUSTER_MECHANISM));
        let r = self.call(&hs, 1, timeout).await?;
        if r.error_code != 0 {
            return Err(self.protocol(format!(
                "SASL mechanism {CLUSTER_MECHANISM} refused (error {}; enabled: {:?})",
                r.error_code,
                r.mechanisms.iter().map(|m| m.as_str()).collect::<Vec<_>>()
            )));
        }
        let token = secret.prove(node_id, "kafka", now_ms());
        let auth = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
        let r = self.call(&auth, 2, timeout).await?;
        if r.error_code != 0 {
            return Err(self.protocol(format!(
                "cluster membership proof refused (error {}: {})",
                r.error_code,
                r.error_message.as_ref().map_or("", |m| m.as_str())
            )));
        }
        Ok(())
    }

    /// Sends `req` at `version` and waits (at most `timeout`) for its response.
    pub async fn call<R: Request>(
        &mut self,
        req: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response, ClientError> {
        match tokio::time::timeout(timeout, self.call_inner(req, version)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout {
                addr: self.addr.clone(),
                timeout,
            }),
        }
    }

    async fn call_inner<R: Request>(
        &mut self,
        req: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        encode_request(&mut self.buf, req, version, correlation_id, &self.client_id)
            .map_err(|e| self.protocol(e.to_string()))?;
        let frame = std::mem::take(&mut self.buf);
        let written = match self.stream.write_all(&frame).await {
            // TLS holds records until flushed (a no-op on plain TCP).
            Ok(()) => self.stream.flush().await,
            Err(e) => Err(e),
        };
        self.buf = frame;
        written.map_err(|e| self.io(e))?;

        let len = self.stream.read_i32().await.map_err(|e| self.io(e))?;
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= MAX_FRAME)
            .ok_or_else(|| self.protocol(format!("bad response frame length {len}")))?;
        let mut body = vec![0u8; len];
        self.stream
            .read_exact(&mut body)
            .await
            .map_err(|e| self.io(e))?;
        decode_response::<R>(Bytes::from(body), version, correlation_id)
            .map_err(|e| self.protocol(e.to_string()))
    }
}
