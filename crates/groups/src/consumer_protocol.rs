//! Reads the topics out of a member's "consumer" protocol metadata
//! (ConsumerProtocolSubscription: an int16 version, then the message body).

use bytes::{Buf, Bytes};
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;

/// The subscribed topics, or `None` if the metadata does not parse.
pub fn subscribed_topics(metadata: &Bytes) -> Option<Vec<String>> {
    let mut buf = metadata.clone();
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16();
    // Newer versions are readable as the newest we know (fields are only added).
    let version = version.clamp(0, 3);
    let sub = ConsumerProtocolSubscription::decode(&mut buf, version).ok()?;
    Some(sub.topics.iter().map(|t| t.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    #[test]
    fn reads_topics() {
        let sub = ConsumerProtocolSubscription::default().with_topics(vec![
            StrBytes::from_static_str("a"),
            StrBytes::from_static_str("b"),
        ]);
        for version in 0..=3 {
            let mut b = BytesMut::new();
            b.put_i16(version);
            sub.encode(&mut b, version).unwrap();
            assert_eq!(
                subscribed_topics(&b.freeze()),
                Some(vec!["a".to_string(), "b".to_string()])
            );
        }
        assert_eq!(subscribed_topics(&Bytes::from_static(b"\x00")), None);
    }
}
