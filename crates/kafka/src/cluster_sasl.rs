//! Cluster members on a Kafka listener: the server side of SASL mechanism ARCTERN-CLUSTER,
//! and the refusal of replica fetches from connections that did not use it.
//!
//! Minimal and isolated on purpose: the full Kafka SASL exchange (PLAIN, SCRAM, and this
//! mechanism among them) belongs to `sasl.rs`; this file only lets the replica fetcher prove
//! membership when `cluster.secret` is set. The mechanism: SaslHandshake (v0-1) naming
//! ARCTERN-CLUSTER, then SaslAuthenticate (v0-2) whose bytes are a membership token for
//! purpose "kafka"; a valid one makes the connection's principal `Node(id)`.

use std::net::SocketAddr;
use std::sync::Arc;

use arctern_kafka_wire::kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, PartitionData,
};
use arctern_kafka_wire::kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use arctern_kafka_wire::kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
    RequestHeader, ResponseKind, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use arctern_kafka_wire::kafka_protocol::protocol::{Decodable, StrBytes};
use arctern_kafka_wire::ResponseError;
use arctern_security::cluster::now_ms;
use arctern_security::{ClusterSecret, Principal};
use bytes::{Bytes, BytesMut};

use crate::handlers::Origin;

pub const MECHANISM: &str = "ARCTERN-CLUSTER";
const PURPOSE: &str = "kafka";

/// Where a connection is in the exchange.
#[derive(Debug, Default)]
pub struct Session {
    handshaken: bool,
}

/// What to do with a SASL frame.
pub enum Outcome {
    /// Send this response frame and go on.
    Reply(BytesMut),
    /// Send this response frame, then close the connection (failed authentication).
    ReplyAndClose(BytesMut),
}

/// Handles a SaslHandshake or SaslAuthenticate frame (without its size prefix) when a
/// cluster secret is set; `None` for any other frame, which takes the normal path.
pub fn intercept(
    frame: &Bytes,
    secret: &ClusterSecret,
    session: &mut Session,
    principal: &mut Arc<Principal>,
    peer: SocketAddr,
) -> Option<Outcome> {
    if frame.len() < 4 {
        return None;
    }
    let key = ApiKey::try_from(i16::from_be_bytes([frame[0], frame[1]])).ok()?;
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let in_range = match key {
        ApiKey::SaslHandshake => (0..=1).contains(&version),
        ApiKey::SaslAuthenticate => (0..=2).contains(&version),
        _ => return None,
    };
    if !in_range {
        return None;
    }
    let mut body = frame.clone();
    let header = RequestHeader::decode(&mut body, key.request_header_version(version)).ok()?;
    let correlation_id = header.correlation_id;
    let encode = |resp: ResponseKind| {
        arctern_kafka_wire::encode_response(correlation_id, key, version, &resp).ok()
    };
    match key {
        ApiKey::SaslHandshake => {
            let req = SaslHandshakeRequest::decode(&mut body, version).ok()?;
            let ok = req.mechanism.as_str() == MECHANISM;
            session.handshaken = ok;
            let resp = SaslHandshakeResponse::default()
                .with_error_code(if ok {
                    0
                } else {
                    ResponseError::UnsupportedSaslMechanism.code()
                })
                .with_mechanisms(vec![StrBytes::from_static_str(MECHANISM)]);
            encode(ResponseKind::SaslHandshake(resp)).map(Outcome::Reply)
        }
        _ => {
            let req = SaslAuthenticateRequest::decode(&mut body, version).ok()?;
            let result = if !session.handshaken {
                Err(ResponseError::IllegalSaslState)
            } else {
                std::str::from_utf8(&req.auth_bytes)
                    .map_err(|_| ResponseError::SaslAuthenticationFailed)
                    .and_then(|token| {
                        secret.verify(token, PURPOSE, now_ms()).map_err(|e| {
                            tracing::warn!(%peer, reason = %e, "refused Kafka connection: invalid cluster membership proof");
                            ResponseError::SaslAuthenticationFailed
                        })
                    })
            };
            session.handshaken = false;
            match result {
                Ok(node) => {
                    *principal = Arc::new(Principal::Node(node));
                    tracing::debug!(%peer, node, "Kafka connection authenticated as a cluster node");
                    encode(ResponseKind::SaslAuthenticate(
                        SaslAuthenticateResponse::default(),
                    ))
                    .map(Outcome::Reply)
                }
                Err(code) => encode(ResponseKind::SaslAuthenticate(
                    SaslAuthenticateResponse::default()
                        .with_error_code(code.code())
                        .with_error_message(Some(StrBytes::from_static_str(
                            "Authentication failed: invalid cluster membership proof",
                        ))),
                ))
                .map(Outcome::ReplyAndClose),
            }
        }
    }
}

/// Whether a replica request (replica_id >= 0) must be refused: a secret is set and the
/// connection did not prove it is a node. Logged here.
fn refuse(
    secret: Option<&Arc<ClusterSecret>>,
    origin: &Origin,
    replica_id: i32,
    api: &str,
) -> bool {
    if replica_id < 0 || secret.is_none() || origin.principal.is_node() {
        return false;
    }
    tracing::warn!(peer = %origin.peer, replica_id, api, principal = %origin.principal.kafka_name(), "refused a replica request from a connection that is no proven cluster node");
    true
}

/// Kafka answers a follower fetch without CLUSTER_ACTION with TOPIC_AUTHORIZATION_FAILED
/// on every partition; the top-level error says why (CLUSTER_AUTHORIZATION_FAILED).
pub fn refuse_fetch(
    secret: Option<&Arc<ClusterSecret>>,
    origin: &Origin,
    req: &FetchRequest,
) -> Option<FetchResponse> {
    if !refuse(secret, origin, req.replica_id.0, "Fetch") {
        return None;
    }
    let responses = req
        .topics
        .iter()
        .map(|t| {
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_topic_id(t.topic_id)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            PartitionData::default()
                                .with_partition_index(p.partition)
                                .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                                .with_high_watermark(-1)
                                .with_last_stable_offset(-1)
                                .with_log_start_offset(-1)
                        })
                        .collect(),
                )
        })
        .collect();
    Some(
        FetchResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_responses(responses),
    )
}

/// Kafka requires CLUSTER_ACTION for OffsetsForLeaderEpoch from a replica: every
/// partition gets CLUSTER_AUTHORIZATION_FAILED.
pub fn refuse_offset_for_leader_epoch(
    secret: Option<&Arc<ClusterSecret>>,
    origin: &Origin,
    req: &OffsetForLeaderEpochRequest,
) -> Option<OffsetForLeaderEpochResponse> {
    if !refuse(secret, origin, req.replica_id.0, "OffsetForLeaderEpoch") {
        return None;
    }
    let topics = req
        .topics
        .iter()
        .map(|t| {
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            EpochEndOffset::default()
                                .with_partition(p.partition)
                                .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
                                .with_leader_epoch(-1)
                                .with_end_offset(-1)
                        })
                        .collect(),
                )
        })
        .collect();
    Some(OffsetForLeaderEpochResponse::default().with_topics(topics))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arctern_kafka_wire::encode_request;
    use arctern_kafka_wire::kafka_protocol::messages::ResponseHeader;
    use arctern_kafka_wire::kafka_protocol::protocol::Decodable;

    fn frame<R: arctern_kafka_wire::kafka_protocol::protocol::Request>(
        req: &R,
        version: i16,
    ) -> Bytes {
        let mut buf = BytesMut::new();
        encode_request(&mut buf, req, version, 7, &StrBytes::from_static_str("t")).unwrap();
        Bytes::from(buf.split_off(4))
    }

    fn auth_error(out: Outcome) -> (bool, i16) {
        let (close, mut b) = match out {
            Outcome::Reply(b) => (false, b),
            Outcome::ReplyAndClose(b) => (true, b),
        };
        let mut b = b.split_off(4).freeze();
        ResponseHeader::decode(&mut b, 1).unwrap();
        let r = SaslAuthenticateResponse::decode(&mut b, 2).unwrap();
        (close, r.error_code)
    }

    #[test]
    fn a_valid_proof_makes_the_connection_a_node_and_others_are_refused() {
        let secret = ClusterSecret::new(b"0123456789abcdef0123").unwrap();
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut principal = Arc::new(Principal::Anonymous);
        let mut s = Session::default();
        let hs =
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(MECHANISM));
        assert!(matches!(
            intercept(&frame(&hs, 1), &secret, &mut s, &mut principal, peer),
            Some(Outcome::Reply(_))
        ));
        let token = secret.prove(2, PURPOSE, now_ms());
        let auth = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token.clone()));
        let out = intercept(&frame(&auth, 2), &secret, &mut s, &mut principal, peer).unwrap();
        assert_eq!(auth_error(out), (false, 0));
        assert_eq!(*principal, Principal::Node(2));

        // Replayed (and so without a fresh handshake too): refused, connection closed.
        let mut principal = Arc::new(Principal::Anonymous);
        let mut s = Session::default();
        intercept(&frame(&hs, 1), &secret, &mut s, &mut principal, peer);
        let out = intercept(&frame(&auth, 2), &secret, &mut s, &mut principal, peer).unwrap();
        assert_eq!(auth_error(out), (true, 58));
        assert_eq!(*principal, Principal::Anonymous);

        // Another request kind takes the normal path.
        let other = FetchRequest::default();
        assert!(intercept(&frame(&other, 12), &secret, &mut s, &mut principal, peer).is_none());
    }
}
