//! A minimal Kafka client connection: length-prefixed framing over a tokio `TcpStream`,
//! request/response headers and API version negotiation, all on top of `kafka-protocol`.
//!
//! The connection can be split into a [`FrameWriter`] and a [`FrameReader`] so several
//! requests can be pipelined: Kafka answers the requests of one connection in order, so the
//! reader matches responses to requests by position and checks the correlation id.

use std::collections::HashMap;

use anyhow::{bail, ensure, Context, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

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
    wr: OwnedWriteHalf,
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
        // Don't keep a huge buffer around after an unusually large request.
        if self.buf.capacity() > 16 * 1024 * 1024 {
            self.buf = BytesMut::with_capacity(64 * 1024);
        }
        Ok(correlation_id)
    }
}

/// The receiving half: reads frames and decodes responses.
pub struct FrameReader {
    rd: BufReader<OwnedReadHalf>,
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
        let (rd, wr) = stream.into_split();
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
        Ok(conn)
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
