//! Sans-IO Kafka wire protocol: length-prefixed frames in, typed requests out; typed
//! responses in, frames out. Message bodies use the `kafka-protocol` crate; this crate adds
//! the framing rules, the table of versions Arctern implements, and the special cases
//! (ApiVersions' v0 fallback). No sockets, no storage.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseKind,
};
use kafka_protocol::protocol::types::decode_budget;
use kafka_protocol::protocol::{Decodable, Encodable};

pub use kafka_protocol;
pub use kafka_protocol::error::ResponseError;

/// The APIs and version ranges Arctern fully implements. Only these are advertised in
/// ApiVersions; anything else is refused.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
];

pub fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| (*min, *max))
}

/// The `api_keys` array of an ApiVersions response.
pub fn advertised_versions() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|(k, min, max)| {
            ApiVersion::default()
                .with_api_key(*k as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect()
}

/// Errors of the client side of the codec (Arctern's own clients: the replica fetcher,
/// `arctern cluster status`, the bench).
#[derive(Debug, thiserror::Error)]
pub enum ClientCodecError {
    #[error("encoding request: {0}")]
    Encode(String),
    #[error("request of {0} bytes is too large for a frame")]
    TooLarge(usize),
    #[error("decoding {api} v{version} response: {reason}")]
    Decode {
        api: String,
        version: i16,
        reason: String,
    },
    #[error("response correlation id {got} does not match request {expected}")]
    CorrelationMismatch { got: i32, expected: i32 },
}

/// Client side: replaces `buf` with one request frame (size prefix, header, body).
pub fn encode_request<R: kafka_protocol::protocol::Request>(
    buf: &mut BytesMut,
    req: &R,
    version: i16,
    correlation_id: i32,
    client_id: &kafka_protocol::protocol::StrBytes,
) -> Result<(), ClientCodecError> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(client_id.clone()));
    buf.clear();
    buf.put_i32(0); // size, filled in below
    header
        .encode(buf, R::header_version(version))
        .map_err(|e| ClientCodecError::Encode(format!("header: {e}")))?;
    req.encode(buf, version)
        .map_err(|e| ClientCodecError::Encode(e.to_string()))?;
    let len = i32::try_from(buf.len() - 4).map_err(|_| ClientCodecError::TooLarge(buf.len()))?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Client side: decodes a response frame (without its size prefix) for request type `R`
/// sent at `version` with `correlation_id`.
pub fn decode_response<R: kafka_protocol::protocol::Request>(
    mut frame: Bytes,
    version: i16,
    correlation_id: i32,
) -> Result<R::Response, ClientCodecError> {
    use kafka_protocol::messages::ResponseHeader;
    use kafka_protocol::protocol::HeaderVersion;
    let api = || {
        ApiKey::try_from(R::KEY)
            .map(|k| format!("{k:?}"))
            .unwrap_or_else(|_| R::KEY.to_string())
    };
    let header_version = <R::Response as HeaderVersion>::header_version(version);
    let header = ResponseHeader::decode(&mut frame, header_version).map_err(|e| {
        ClientCodecError::Decode {
            api: api(),
            version,
            reason: format!("header: {e}"),
        }
    })?;
    if header.correlation_id != correlation_id {
        return Err(ClientCodecError::CorrelationMismatch {
            got: header.correlation_id,
            expected: correlation_id,
        });
    }
    R::Response::decode(&mut frame, version).map_err(|e| ClientCodecError::Decode {
        api: api(),
        version,
        reason: e.to_string(),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {0} is negative")]
    NegativeLength(i32),
    #[error("frame of {len} bytes exceeds socket.request.max.bytes {max}")]
    TooLarge { len: usize, max: usize },
}

/// Validates the 4-byte size prefix of a request; returns the body length.
pub fn frame_length(prefix: [u8; 4], max: usize) -> Result<usize, FrameError> {
    let len = i32::from_be_bytes(prefix);
    if len < 0 {
        return Err(FrameError::NegativeLength(len));
    }
    let len = len as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(len)
}

#[derive(Debug)]
pub struct DecodedRequest {
    pub header: RequestHeader,
    pub api_key: ApiKey,
    pub body: RequestKind,
}

/// Why a request frame could not be turned into a typed request.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    #[error("unknown or unsupported api key {api_key} (correlation id {correlation_id})")]
    UnsupportedApi { api_key: i16, correlation_id: i32 },
    /// ApiVersions at a version we do not implement: answer with the v0-format
    /// UNSUPPORTED_VERSION response (see `unsupported_api_versions_response`).
    #[error("ApiVersions v{version} is not supported")]
    UnsupportedApiVersionsVersion { version: i16, correlation_id: i32 },
    #[error("{api_key:?} v{version} is not supported (correlation id {correlation_id})")]
    UnsupportedVersion {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    },
    #[error("malformed {api_key:?} v{version} request: {reason}")]
    Malformed {
        api_key: ApiKey,
        version: i16,
        reason: String,
    },
}

/// How many bytes of decoded array elements a request may take per byte received (the
/// densest legitimate requests, e.g. Fetch partitions, take about 3).
pub const DECODE_AMPLIFICATION: usize = 8;
/// Plus this much for any request, so small requests with many short strings decode.
pub const DECODE_ALLOWANCE: usize = 1 << 20;

/// Decodes one request frame (without its size prefix).
pub fn decode_request(mut frame: Bytes) -> Result<DecodedRequest, DecodeError> {
    if frame.len() < 8 {
        return Err(DecodeError::TooShort(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|_| DecodeError::UnsupportedApi {
        api_key: raw_key,
        correlation_id,
    })?;
    let Some((min, max)) = supported_range(api_key) else {
        return Err(DecodeError::UnsupportedApi {
            api_key: raw_key,
            correlation_id,
        });
    };
    if version < min || version > max {
        if api_key == ApiKey::ApiVersions {
            return Err(DecodeError::UnsupportedApiVersionsVersion {
                version,
                correlation_id,
            });
        }
        return Err(DecodeError::UnsupportedVersion {
            api_key,
            version,
            correlation_id,
        });
    }
    let malformed = |reason: String| DecodeError::Malformed {
        api_key,
        version,
        reason,
    };
    // Decoded arrays may take at most this much memory: a small multiple of the bytes
    // received, never a claimed length times an element size.
    let _budget = decode_budget::limit(
        frame
            .len()
            .saturating_mul(DECODE_AMPLIFICATION)
            .saturating_add(DECODE_ALLOWANCE),
    );
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(|e| malformed(format!("{e:#}")))?;
    let body = RequestKind::decode(api_key, &mut frame, version)
        .map_err(|e| malformed(format!("{e:#}")))?;
    Ok(DecodedRequest {
        header,
        api_key,
        body,
    })
}

/// Encodes a response frame (size prefix, response header, body).
pub fn encode_response(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    body: &ResponseKind,
) -> Result<BytesMut, String> {
    let header_version = api_key.response_header_version(version);
    let header =
        kafka_protocol::messages::ResponseHeader::default().with_correlation_id(correlation_id);
    let mut out = BytesMut::with_capacity(size_hint(body));
    out.put_i32(0);
    header
        .encode(&mut out, header_version)
        .map_err(|e| e.to_string())?;
    body.encode(&mut out, version).map_err(|e| e.to_string())?;
    let len = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

/// Room for the response up front: a fetch response is mostly record bytes, and growing
/// the buffer by doubling would copy them several times.
fn size_hint(body: &ResponseKind) -> usize {
    match body {
        ResponseKind::Fetch(f) => {
            let records: usize = f
                .responses
                .iter()
                .flat_map(|t| t.partitions.iter())
                .map(|p| p.records.as_ref().map_or(0, |r| r.len()) + 64)
                .sum();
            records + 256
        }
        _ => 256,
    }
}

/// The response to an ApiVersions request at a version we do not support: Kafka answers
/// in the v0 format (non-flexible header and body) with UNSUPPORTED_VERSION and the full
/// list of supported versions, so the client can pick one and retry.
pub fn unsupported_api_versions_response(correlation_id: i32) -> BytesMut {
    let body = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(advertised_versions());
    let mut out = BytesMut::with_capacity(128);
    out.put_i32(0);
    out.put_i32(correlation_id);
    // v0 encoding of this body cannot fail: it has only fixed fields and a plain array.
    if body.encode(&mut out, 0).is_err() {
        out.truncate(8);
        out.put_i16(ResponseError::UnsupportedVersion.code());
        out.put_i32(0);
    }
    let len = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out
}

/// Reads the correlation id of a frame, if it has one (for logging bad requests).
pub fn peek_correlation_id(frame: &[u8]) -> Option<i32> {
    let mut b = frame.get(4..8)?;
    Some(b.get_i32())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use kafka_protocol::protocol::StrBytes;

    fn request_frame<T: Encodable>(key: ApiKey, version: i16, body: &T) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("t")));
        let mut b = BytesMut::new();
        header
            .encode(&mut b, key.request_header_version(version))
            .expect("header");
        body.encode(&mut b, version).expect("body");
        b.freeze()
    }

    #[test]
    fn decodes_supported_requests() {
        let f = request_frame(ApiKey::Metadata, 12, &MetadataRequest::default());
        let r = decode_request(f).expect("decodes");
        assert_eq!(r.api_key, ApiKey::Metadata);
        assert_eq!(r.header.correlation_id, 7);
    }

    #[test]
    fn api_versions_unknown_version_gets_v0_answer() {
        let f = request_frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        let mut raw = f.to_vec();
        raw[2..4].copy_from_slice(&99i16.to_be_bytes());
        match decode_request(Bytes::from(raw)) {
            Err(DecodeError::UnsupportedApiVersionsVersion {
                version: 99,
                correlation_id: 7,
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
        let resp = unsupported_api_versions_response(7);
        let mut body = &resp[4..];
        assert_eq!(body.get_i32(), 7);
        let parsed = ApiVersionsResponse::decode(&mut body, 0).expect("v0 body");
        assert_eq!(parsed.error_code, 35);
        assert_eq!(parsed.api_keys.len(), SUPPORTED_APIS.len());
    }

    #[test]
    fn garbage_and_hostile_frames_are_errors() {
        assert!(decode_request(Bytes::from_static(&[1, 2, 3])).is_err());
        assert!(decode_request(Bytes::from_static(&[0x7f, 0x7f, 0, 0, 0, 0, 0, 1])).is_err());
        // Metadata v1 with a topics array claiming i32::MAX entries and no data.
        let mut f = request_frame(ApiKey::Metadata, 1, &MetadataRequest::default()).to_vec();
        f.truncate(f.len() - 4);
        f.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            decode_request(Bytes::from(f)),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(frame_length((-1i32).to_be_bytes(), 100).is_err());
    }

    #[test]
    fn decoded_size_is_bounded_by_the_bytes_received() {
        use kafka_protocol::messages::ListGroupsRequest;
        // ListGroups v4's states filter: a compact array of strings, each one byte on the
        // wire (an empty string) and 32 in memory.
        let states = |n: usize| {
            ListGroupsRequest::default().with_states_filter(vec![StrBytes::from_static_str(""); n])
        };
        let hostile = request_frame(ApiKey::ListGroups, 4, &states(2_000_000));
        assert!(hostile.len() < 2_100_000);
        match decode_request(hostile) {
            Err(DecodeError::Malformed { reason, .. }) => {
                assert!(
                    reason.contains("more memory than its size allows"),
                    "{reason}"
                )
            }
            other => panic!("unexpected {other:?}"),
        }
        // The same shape, small enough for the fixed allowance, decodes.
        let fine = request_frame(ApiKey::ListGroups, 4, &states(10_000));
        assert!(decode_request(fine).is_ok());
        // A large legitimate request: Metadata naming 20,000 topics.
        let topics = (0..20_000)
            .map(|i| {
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(StrBytes::from_string(format!("topic-{i}")).into()))
            })
            .collect();
        let big = request_frame(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(Some(topics)),
        );
        assert!(decode_request(big).is_ok());
        assert!(frame_length(101i32.to_be_bytes(), 100).is_err());
    }
}
