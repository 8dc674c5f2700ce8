//! The records of `__consumer_offsets`, in Kafka's own encodings, so the topic's contents
//! read the same as a Kafka cluster's (tools that decode it work unchanged).
//!
//! Keys: an int16 record type, then the classic non-flexible fields:
//! - type 0/1 `OffsetCommitKey`: group (string), topic (string), partition (int32);
//! - type 2 `GroupMetadataKey`: group (string).
//!
//! Values: an int16 version, then the fields of that version:
//! - `OffsetCommitValue` v3: offset (int64), leaderEpoch (int32), metadata (string),
//!   commitTimestamp (int64). v0-v2 are read too (v1 carries an expire timestamp).
//! - `GroupMetadataValue` v3: protocolType (string), generation (int32), protocol
//!   (nullable string), leader (nullable string), currentStateTimestamp (int64), members
//!   (memberId, groupInstanceId (nullable), clientId, clientHost, rebalanceTimeout,
//!   sessionTimeout, subscription (bytes), assignment (bytes)). v0-v2 are read too.
//!
//! A null value is a tombstone. Record types above 2 (Kafka 4's new group types) are
//! skipped when loading.

use bytes::{BufMut, Bytes, BytesMut};

pub const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
pub const GROUP_METADATA_KEY_VERSION: i16 = 2;
pub const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
pub const GROUP_METADATA_VALUE_VERSION: i16 = 3;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record truncated: {0}")]
    Truncated(&'static str),
    #[error("invalid {0}")]
    Invalid(&'static str),
    #[error("unsupported {what} version {version}")]
    UnsupportedVersion { what: &'static str, version: i16 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
    /// A record type this coordinator does not use (Kafka 4's consumer-protocol groups).
    Other(i16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub current_state_timestamp: i64,
    pub members: Vec<MemberValue>,
}

fn put_str(b: &mut BytesMut, s: &str) {
    // Strings longer than i16::MAX cannot be represented; callers bound them (group ids,
    // topics and metadata are checked before they get here), so truncation never happens
    // in practice and is preferable to a panic.
    let bytes = s.as_bytes();
    let len = bytes.len().min(i16::MAX as usize);
    b.put_i16(len as i16);
    b.put_slice(&bytes[..len]);
}

fn put_nullable_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

pub fn encode_offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + group.len() + topic.len());
    b.put_i16(OFFSET_COMMIT_KEY_VERSION);
    put_str(&mut b, group);
    put_str(&mut b, topic);
    b.put_i32(partition);
    b.freeze()
}

pub fn encode_group_key(group: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + group.len());
    b.put_i16(GROUP_METADATA_KEY_VERSION);
    put_str(&mut b, group);
    b.freeze()
}

pub fn encode_offset_value(v: &OffsetValue) -> Bytes {
    let mut b = BytesMut::with_capacity(24 + v.metadata.len());
    b.put_i16(OFFSET_COMMIT_VALUE_VERSION);
    b.put_i64(v.offset);
    b.put_i32(v.leader_epoch);
    put_str(&mut b, &v.metadata);
    b.put_i64(v.commit_timestamp);
    b.freeze()
}

pub fn encode_group_value(v: &GroupValue) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    b.put_i16(GROUP_METADATA_VALUE_VERSION);
    put_str(&mut b, &v.protocol_type);
    b.put_i32(v.generation);
    put_nullable_str(&mut b, v.protocol.as_deref());
    put_nullable_str(&mut b, v.leader.as_deref());
    b.put_i64(v.current_state_timestamp);
    b.put_i32(v.members.len() as i32);
    for m in &v.members {
        put_str(&mut b, &m.member_id);
        put_nullable_str(&mut b, m.group_instance_id.as_deref());
        put_str(&mut b, &m.client_id);
        put_str(&mut b, &m.client_host);
        b.put_i32(m.rebalance_timeout_ms);
        b.put_i32(m.session_timeout_ms);
        put_bytes(&mut b, &m.subscription);
        put_bytes(&mut b, &m.assignment);
    }
    b.freeze()
}

/// Bounds-checked reader over untrusted bytes: never panics, never allocates more than
/// the input holds.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], RecordError> {
        if self.buf.len() < n {
            return Err(RecordError::Truncated(what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn i16(&mut self, what: &'static str) -> Result<i16, RecordError> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self, what: &'static str) -> Result<i32, RecordError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self, what: &'static str) -> Result<i64, RecordError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    fn nullable_str(&mut self, what: &'static str) -> Result<Option<String>, RecordError> {
        let len = self.i16(what)?;
        if len < 0 {
            return Ok(None);
        }
        let b = self.take(len as usize, what)?;
        String::from_utf8(b.to_vec())
            .map(Some)
            .map_err(|_| RecordError::Invalid(what))
    }
    fn str(&mut self, what: &'static str) -> Result<String, RecordError> {
        self.nullable_str(what)?.ok_or(RecordError::Invalid(what))
    }
    fn bytes(&mut self, what: &'static str) -> Result<Bytes, RecordError> {
        let len = self.i32(what)?;
        if len < 0 {
            return Ok(Bytes::new());
        }
        Ok(Bytes::copy_from_slice(self.take(len as usize, what)?))
    }
}

pub fn decode_key(key: &[u8]) -> Result<RecordKey, RecordError> {
    let mut r = Reader { buf: key };
    let version = r.i16("key version")?;
    match version {
        0 | 1 => Ok(RecordKey::Offset {
            group: r.str("group")?,
            topic: r.str("topic")?,
            partition: r.i32("partition")?,
        }),
        2 => Ok(RecordKey::Group {
            group: r.str("group")?,
        }),
        other => Ok(RecordKey::Other(other)),
    }
}

pub fn decode_offset_value(value: &[u8]) -> Result<OffsetValue, RecordError> {
    let mut r = Reader { buf: value };
    let version = r.i16("offset value version")?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::UnsupportedVersion {
            what: "OffsetCommitValue",
            version,
        });
    }
    let offset = r.i64("offset")?;
    let leader_epoch = if version >= 3 {
        r.i32("leader epoch")?
    } else {
        -1
    };
    let metadata = r.str("metadata")?;
    let commit_timestamp = r.i64("commit timestamp")?;
    if version == 1 {
        r.i64("expire timestamp")?;
    }
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
    })
}

pub fn decode_group_value(value: &[u8]) -> Result<GroupValue, RecordError> {
    let mut r = Reader { buf: value };
    let version = r.i16("group value version")?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::UnsupportedVersion {
            what: "GroupMetadataValue",
            version,
        });
    }
    let protocol_type = r.str("protocol type")?;
    let generation = r.i32("generation")?;
    let protocol = r.nullable_str("protocol")?;
    let leader = r.nullable_str("leader")?;
    let current_state_timestamp = if version >= 2 {
        r.i64("current state timestamp")?
    } else {
        -1
    };
    let count = r.i32("member count")?;
    if count < 0 {
        return Err(RecordError::Invalid("member count"));
    }
    let mut members = Vec::new();
    for _ in 0..count {
        let member_id = r.str("member id")?;
        let group_instance_id = if version >= 3 {
            r.nullable_str("group instance id")?
        } else {
            None
        };
        let client_id = r.str("client id")?;
        let client_host = r.str("client host")?;
        let session_then_rebalance = version >= 1;
        let rebalance_timeout_ms = if session_then_rebalance {
            r.i32("rebalance timeout")?
        } else {
            -1
        };
        let session_timeout_ms = r.i32("session timeout")?;
        let rebalance_timeout_ms = if session_then_rebalance {
            rebalance_timeout_ms
        } else {
            session_timeout_ms
        };
        members.push(MemberValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription: r.bytes("subscription")?,
            assignment: r.bytes("assignment")?,
        });
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp,
        members,
    })
}

/// Kafka's group -> `__consumer_offsets` partition: `Utils.abs(groupId.hashCode) % n`,
/// with Java's `String.hashCode` over UTF-16 code units and `Utils.abs(x) = x & 0x7fffffff`.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group_id.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    (h & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_records_round_trip() {
        let key = encode_offset_key("g", "orders", 7);
        assert_eq!(
            decode_key(&key).unwrap(),
            RecordKey::Offset {
                group: "g".into(),
                topic: "orders".into(),
                partition: 7
            }
        );
        // Exact bytes: version 1, "g", "orders", 7.
        assert_eq!(
            &key[..],
            &[0, 1, 0, 1, b'g', 0, 6, b'o', b'r', b'd', b'e', b'r', b's', 0, 0, 0, 7][..]
        );
        let v = OffsetValue {
            offset: 42,
            leader_epoch: 3,
            metadata: "meta".into(),
            commit_timestamp: 1_700_000_000_000,
        };
        let enc = encode_offset_value(&v);
        assert_eq!(&enc[..2], &[0, 3]);
        assert_eq!(enc.len(), 2 + 8 + 4 + 2 + 4 + 8);
        assert_eq!(decode_offset_value(&enc).unwrap(), v);
    }

    #[test]
    fn older_offset_values_decode() {
        // v1: offset, metadata, commit ts, expire ts.
        let mut b = BytesMut::new();
        b.put_i16(1);
        b.put_i64(5);
        put_str(&mut b, "");
        b.put_i64(10);
        b.put_i64(20);
        let v = decode_offset_value(&b).unwrap();
        assert_eq!((v.offset, v.leader_epoch, v.commit_timestamp), (5, -1, 10));
    }

    #[test]
    fn group_records_round_trip() {
        let key = encode_group_key("my-group");
        assert_eq!(
            decode_key(&key).unwrap(),
            RecordKey::Group {
                group: "my-group".into()
            }
        );
        let v = GroupValue {
            protocol_type: "consumer".into(),
            generation: 4,
            protocol: Some("range".into()),
            leader: Some("c-1".into()),
            current_state_timestamp: 99,
            members: vec![
                MemberValue {
                    member_id: "c-1".into(),
                    group_instance_id: Some("i-1".into()),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 300_000,
                    session_timeout_ms: 45_000,
                    subscription: Bytes::from_static(b"sub"),
                    assignment: Bytes::from_static(b"asg"),
                },
                MemberValue {
                    member_id: "c-2".into(),
                    group_instance_id: None,
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 1,
                    session_timeout_ms: 2,
                    subscription: Bytes::new(),
                    assignment: Bytes::new(),
                },
            ],
        };
        let enc = encode_group_value(&v);
        assert_eq!(&enc[..2], &[0, 3]);
        assert_eq!(decode_group_value(&enc).unwrap(), v);
        let empty = GroupValue {
            protocol: None,
            leader: None,
            members: vec![],
            ..v
        };
        assert_eq!(
            decode_group_value(&encode_group_value(&empty)).unwrap(),
            empty
        );
    }

    #[test]
    fn truncated_or_garbage_input_is_an_error_not_a_panic() {
        let v = encode_group_value(&GroupValue {
            protocol_type: "consumer".into(),
            generation: 1,
            protocol: None,
            leader: None,
            current_state_timestamp: 0,
            members: vec![],
        });
        for n in 0..v.len() {
            assert!(decode_group_value(&v[..n]).is_err());
        }
        assert!(decode_key(&[0]).is_err());
        assert!(decode_group_value(&[
            0, 3, 0, 1, b'x', 0, 0, 0, 1, 255, 255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 0xff,
            0xff, 0xff
        ])
        .is_err());
        assert_eq!(decode_key(&[0, 9]).unwrap(), RecordKey::Other(9));
    }

    #[test]
    fn partition_matches_java_string_hash_code() {
        // Java's String.hashCode: s[0]*31^(n-1) + ... + s[n-1], wrapping, over UTF-16.
        fn java_hash(s: &str) -> i32 {
            s.encode_utf16()
                .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
        }
        assert_eq!(java_hash(""), 0);
        assert_eq!(java_hash("a"), 97);
        assert_eq!(java_hash("ab"), 97 * 31 + 98);
        assert_eq!(partition_for("", 50), 0);
        assert_eq!(partition_for("a", 50), 97 % 50);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE; Utils.abs maps it to 0.
        assert_eq!(java_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        for g in ["console-consumer-1", "group-ü", "x"] {
            let p = partition_for(g, 50);
            assert!((0..50).contains(&p));
            assert_eq!(p, (java_hash(g) & 0x7fff_ffff) % 50);
        }
    }
}
