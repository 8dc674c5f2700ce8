//! A minimal Kafka client connection: length-prefixed framing over a tokio `TcpStream`,
//! request/response headers and API version negotiation, all on top of `kafka-protocol`.
//!
//! The connection can be split into a [`FrameWriter`] and a [`FrameReader`] so several
//! requests can be pipelined: Kafka answers the requests of one connection in order, so the
//! reader matches responses to requests by position and checks the correlation id.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::security::{self, SaslMechanism, ScramClient};

type Rd = Box<dyn AsyncRead + Send + Unpin>;
type Wr = Box<dyn AsyncWrite + Send + Unpin>;

/// Largest response frame we accept (a fetch response is bounded by the `max_bytes` we ask for).
const MAX_FRAME: usize = 512 * 1024 * 1024;

const CLIENT_ID: &str = "arctern-bench";

/// API versions this client can speak, per API key: `(min, max)`.
///
/// Fetch and Produce stop at the last versions that address topics by name.
fn client_range(key: ApiKey) -> (i16, i16) {
    match key {
        ApiKey::Produce => (3, 9),
        ApiKey::Fetch => (4, 12),
        ApiKey::ListOffsets => (1, 7),
        ApiKey::Metadata => (1, 12),
        ApiKey::CreateTopics => (2, 7),
        ApiKey::ApiVersions => (0, 0),
        _ => (0, -1),
    }
}

/// API versions agreed with the broker: the highest version both sides support.
#[derive(Debug, Clone, Default)]
pub struct Versions {
    agreed: HashMap<i16, i16>,
}

impl Versions {
    fn from_response(resp: &ApiVersionsResponse) -> Self {
        let mut agreed = HashMap::new();
        for api in &resp.api_keys {
            let Ok(key) = ApiKey::try_from(api.api_key) else {
                continue;
            };
            let (cmin, cmax) = client_range(key);
            let hi = cmax.min(api.max_version);
            let lo = cmin.max(api.min_version);
            if lo <= hi {
                agreed.insert(api.api_key, hi);
            }
        }
        Self { agreed }
    }

    /// The version to use for request type `R`.
    pub fn get<R: Request>(&self) -> Result<i16> {
        match self.agreed.get(&R::KEY) {
            Some(v) => Ok(*v),
            None => {
                let key = ApiKey::try_from(R::KEY)
                    .map(|k| format!("{k:?}"))
                    .unwrap_or_else(|_| R::KEY.to_string());
                let (lo, hi) = ApiKey::try_from(R::KEY)
                    .map(client_range)
                    .unwrap_or((0, -1));
                bail!("broker supports no version of {key} in {lo}..={hi} that this client speaks")
            }
        }
    }
}

/// The sending half: encodes and frames requests.
pub struct FrameWriter {
    wr: Wr,
    buf: BytesMut,
    next_correlation_id: i32,
}

impl FrameWriter {
    /// Encodes and sends one request; returns its correlation id.
    pub async fn send<R: Request>(&mut self, req: &R, version: i16) -> Result<i32> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        arctern_kafka_wire::encode_request(
            &mut self.buf,
            req,
            version,
            correlation_id,
            &StrBytes::from_static_str(CLIENT_ID),
        )?;
        self.wr
            .write_all(&self.buf)
            .await
            .context("writing request to broker")?;
        // TLS holds records until flushed (a no-op on plain TCP).
        self.wr.flush().await.context("writing request to broker")?;
        // Don't keep a huge buffer around after an unusually large request.
        if self.buf.capacity() > 16 * 1024 * 1024 {
            self.buf = BytesMut::with_capacity(64 * 1024);
        }
        Ok(correlation_id)
    }
}

/// The receiving half: reads frames and decodes responses.
pub struct FrameReader {
    rd: BufReader<Rd>,
    /// Receive buffer. Frames are split off it; once the caller drops a frame, `reserve`
    /// reclaims the same allocation, so large fetch responses don't cost fresh page faults.
    buf: BytesMut,
}

impl FrameReader {
    /// Reads one length-prefixed frame (without the length).
    pub async fn recv_frame(&mut self) -> Result<Bytes> {
        let len = self
            .rd
            .read_i32()
            .await
            .context("reading response length (connection closed by broker?)")?;
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= MAX_FRAME)
            .with_context(|| format!("bad response frame length {len}"))?;
        self.buf.clear();
        self.buf.reserve(len);
        while self.buf.len() < len {
            let want = (len - self.buf.len()) as u64;
            let n = (&mut self.rd)
                .take(want)
                .read_buf(&mut self.buf)
                .await
                .context("reading response body")?;
            if n == 0 {
                bail!(
                    "connection closed by broker in the middle of a response ({} of {len} bytes)",
                    self.buf.len()
                );
            }
        }
        Ok(self.buf.split_to(len).freeze())
    }

    /// Reads the response to request type `R` sent with `version` and `correlation_id`.
    pub async fn recv<R: Request>(
        &mut self,
        version: i16,
        correlation_id: i32,
    ) -> Result<R::Response> {
        let frame = self.recv_frame().await?;
        decode_response::<R>(frame, version, correlation_id)
    }
}

/// Decodes a response frame for request type `R`.
pub fn decode_response<R: Request>(
    frame: Bytes,
    version: i16,
    correlation_id: i32,
) -> Result<R::Response> {
    Ok(arctern_kafka_wire::decode_response::<R>(
        frame,
        version,
        correlation_id,
    )?)
}

/// A connection to one broker, with negotiated API versions.
pub struct Conn {
    pub writer: FrameWriter,
    pub reader: FrameReader,
    pub versions: Versions,
}

impl Conn {
    /// Connects and negotiates API versions (ApiVersions v0).
    pub async fn connect(addr: &str) -> Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let sec = security::get();
        let (rd, wr): (Rd, Wr) = match &sec.tls {
            None => {
                let (rd, wr) = stream.into_split();
                (Box::new(rd), Box::new(wr))
            }
            Some(tls) => {
                let host = addr
                    .rsplit_once(':')
                    .map_or(addr, |(h, _)| h)
                    .trim_matches(['[', ']']);
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .with_context(|| format!("bad TLS server name {host}"))?;
                let s = tokio_rustls::TlsConnector::from(Arc::clone(tls))
                    .connect(name, stream)
                    .await
                    .with_context(|| format!("TLS handshake with {addr}"))?;
                let (rd, wr) = tokio::io::split(s);
                (Box::new(rd), Box::new(wr))
            }
        };
        let mut conn = Self {
            writer: FrameWriter {
                wr,
                buf: BytesMut::with_capacity(64 * 1024),
                next_correlation_id: 1,
            },
            reader: FrameReader {
                rd: BufReader::with_capacity(256 * 1024, rd),
                buf: BytesMut::new(),
            },
            versions: Versions::default(),
        };
        let resp = conn
            .call_version(&ApiVersionsRequest::default(), 0)
            .await
            .context("ApiVersions")?;
        ensure!(
            resp.error_code == 0,
            "ApiVersions failed with error code {}",
            resp.error_code
        );
        conn.versions = Versions::from_response(&resp);
        if let Some(sasl) = &sec.sasl {
            conn.authenticate(sasl)
                .await
                .context("SASL authentication")?;
        }
        Ok(conn)
    }

    /// SaslHandshake v1 then SaslAuthenticate v1 rounds (KIP-152).
    async fn authenticate(&mut self, sasl: &security::Sasl) -> Result<()> {
        let hs = self
            .call_version(
                &SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_static_str(sasl.mechanism.name())),
                1,
            )
            .await?;
        ensure!(
            hs.error_code == 0,
            "SaslHandshake error {} (broker offers {:?})",
            hs.error_code,
            hs.mechanisms
        );
        match sasl.mechanism {
            SaslMechanism::Plain => {
                let token = format!("\0{}\0{}", sasl.username, sasl.password);
                self.sasl_round(token.into_bytes()).await?;
            }
            m => {
                let nonce: String = {
                    use rand::Rng;
                    let mut r = rand::thread_rng();
                    (0..24)
                        .map(|_| r.sample(rand::distributions::Alphanumeric) as char)
                        .collect()
                };
                let mut scram = ScramClient::new(m, &sasl.username, &sasl.password, nonce);
                let first = self.sasl_round(scram.client_first().into_bytes()).await?;
                let first = String::from_utf8(first.to_vec()).context("SCRAM server-first")?;
                let fin = scram.client_final(&first)?;
                let last = self.sasl_round(fin.into_bytes()).await?;
                scram.verify_server_final(&String::from_utf8_lossy(&last))?;
            }
        }
        Ok(())
    }

    async fn sasl_round(&mut self, bytes: Vec<u8>) -> Result<Bytes> {
        let r = self
            .call_version(
                &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes)),
                1,
            )
            .await?;
        if r.error_code != 0 {
            bail!(
                "SaslAuthenticate error {}: {}",
                r.error_code,
                r.error_message.as_deref().unwrap_or("")
            );
        }
        Ok(r.auth_bytes)
    }

    /// Sends a request at an explicit version and waits for its response.
    pub async fn call_version<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        let id = self.writer.send(req, version).await?;
        self.reader.recv::<R>(version, id).await
    }

    /// Sends a request at the negotiated version and waits for its response.
    pub async fn call<R: Request>(&mut self, req: &R) -> Result<(i16, R::Response)> {
        let version = self.versions.get::<R>()?;
        let resp = self.call_version(req, version).await?;
        Ok((version, resp))
    }
}
