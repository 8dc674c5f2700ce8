//! Frame bytes (sans-IO): the 7-byte frame header is checked against `frame_max` before any
//! payload is read, so a claimed size costs nothing until the bytes arrive; the parsing and
//! generation of frame payloads is the `amq-protocol` crate's.

use amq_protocol::frame::{gen_frame, parse_frame, AMQPContentHeader, AMQPFrame};
use amq_protocol::protocol::basic::{gen_properties, parse_properties, AMQPProperties};
use amq_protocol::protocol::{basic, AMQPClass};

use crate::methods::BASIC_CLASS;

/// `AMQP` 0 0 9 1.
pub const PROTOCOL_HEADER: [u8; 8] = *b"AMQP\x00\x00\x09\x01";
pub const FRAME_HEADER_LEN: usize = 7;
pub const FRAME_END: u8 = 206;
/// Frame type octets.
pub const FRAME_METHOD: u8 = 1;
pub const FRAME_CONTENT_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;
/// Bytes of frame overhead: header + frame-end.
pub const FRAME_OVERHEAD: usize = FRAME_HEADER_LEN + 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds frame_max {max}")]
    TooLarge { size: usize, max: usize },
    #[error("unknown frame type {0}")]
    BadType(u8),
    #[error("frame end octet is {0:#x}, not 0xce")]
    BadEnd(u8),
    #[error("malformed frame payload: {0}")]
    Malformed(String),
}

/// The parsed 7-byte frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: u8,
    pub channel: u16,
    /// Payload size (without header and frame-end octet).
    pub size: usize,
}

/// Checks a frame header. `frame_max` bounds the whole frame, header and end octet
/// included, as the spec defines it.
pub fn parse_frame_header(
    b: [u8; FRAME_HEADER_LEN],
    frame_max: usize,
) -> Result<FrameHeader, FrameError> {
    let kind = b[0];
    if !matches!(
        kind,
        FRAME_METHOD | FRAME_CONTENT_HEADER | FRAME_BODY | FRAME_HEARTBEAT
    ) {
        return Err(FrameError::BadType(kind));
    }
    let channel = u16::from_be_bytes([b[1], b[2]]);
    let size = u32::from_be_bytes([b[3], b[4], b[5], b[6]]) as usize;
    if size.saturating_add(FRAME_OVERHEAD) > frame_max {
        return Err(FrameError::TooLarge {
            size: size + FRAME_OVERHEAD,
            max: frame_max,
        });
    }
    Ok(FrameHeader {
        kind,
        channel,
        size,
    })
}

/// `basic.qos`'s prefetch-size, read from the raw payload (`rest`: class, method,
/// prefetch-size, ...): the frame crate drops the field. 0 for any other frame.
pub fn qos_prefetch_size(frame: &AMQPFrame, rest: &[u8]) -> u32 {
    let is_qos = matches!(
        frame,
        AMQPFrame::Method(_, AMQPClass::Basic(basic::AMQPMethod::Qos(_)))
    );
    match rest.get(4..8) {
        Some(b) if is_qos => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        _ => 0,
    }
}

/// Decodes one whole frame (header, payload, end octet) from contiguous bytes.
pub fn decode_whole_frame(bytes: &[u8]) -> Result<AMQPFrame, FrameError> {
    if let Some(&end) = bytes.last() {
        if end != FRAME_END {
            return Err(FrameError::BadEnd(end));
        }
    }
    // A body frame is its header and raw payload: no parser needed (most frames of a
    // publish load are these).
    if bytes.len() > FRAME_HEADER_LEN && bytes[0] == FRAME_BODY {
        let size = u32::from_be_bytes([bytes[3], bytes[4], bytes[5], bytes[6]]) as usize;
        if size == bytes.len() - FRAME_OVERHEAD {
            let channel = u16::from_be_bytes([bytes[1], bytes[2]]);
            return Ok(AMQPFrame::Body(
                channel,
                bytes[FRAME_HEADER_LEN..bytes.len() - 1].to_vec(),
            ));
        }
    }
    match parse_frame(bytes) {
        Ok(([], frame)) => Ok(frame),
        Ok(_) => Err(FrameError::Malformed("trailing bytes".into())),
        Err(e) => Err(FrameError::Malformed(
            format!("{e:?}").chars().take(200).collect(),
        )),
    }
}

/// Serializes one frame.
pub fn encode_frame(frame: &AMQPFrame) -> Vec<u8> {
    match cookie_factory::gen_simple(gen_frame(frame), Vec::new()) {
        Ok(v) => v,
        Err(e) => {
            // Only oversize short strings can fail; every caller bounds them.
            tracing::error!(error = ?e, "cannot serialize an AMQP frame");
            Vec::new()
        }
    }
}

pub fn method(channel: u16, m: AMQPClass) -> Vec<u8> {
    encode_frame(&AMQPFrame::Method(channel, m))
}

/// A method followed by its content (header + body frames split at `frame_max`).
pub fn method_with_content(
    channel: u16,
    m: AMQPClass,
    properties: &AMQPProperties,
    body: &[u8],
    frame_max: usize,
) -> Vec<u8> {
    let mut out = method(channel, m);
    out.extend(encode_frame(&AMQPFrame::Header(
        channel,
        AMQPContentHeader {
            class_id: BASIC_CLASS,
            body_size: body.len() as u64,
            properties: properties.clone(),
        },
    )));
    let chunk = frame_max.saturating_sub(FRAME_OVERHEAD).max(1);
    for part in body.chunks(chunk) {
        out.extend(encode_frame(&AMQPFrame::Body(channel, part.to_vec())));
    }
    out
}

/// The `basic.deliver` method id (class 60, method 60).
const BASIC_DELIVER: u16 = 60;

/// What `append_delivery` writes: a `basic.deliver` and its message as stored.
pub struct Delivery<'a> {
    pub channel: u16,
    pub consumer_tag: &'a str,
    pub delivery_tag: u64,
    pub redelivered: bool,
    pub exchange: &'a str,
    pub routing_key: &'a str,
    /// The content properties in their wire encoding (flags + fields), as stored; empty
    /// means none.
    pub properties: &'a [u8],
    pub body: &'a [u8],
}

/// Appends a `basic.deliver` with its content header and body frames to `out`: the same
/// bytes as `method_with_content`, written straight from the stored property bytes and
/// body (no decode and re-encode of the properties, no per-frame buffers), so many
/// deliveries share one buffer and one write. False (nothing written) if a short string
/// is over 255 bytes; the caller then uses `method_with_content`, which reports it.
pub fn append_delivery(out: &mut Vec<u8>, d: &Delivery<'_>, frame_max: usize) -> bool {
    if d.consumer_tag.len() > 255 || d.exchange.len() > 255 || d.routing_key.len() > 255 {
        return false;
    }
    let short = |out: &mut Vec<u8>, s: &str| {
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    };
    // Method frame; its size is patched in once the arguments are written.
    let start = out.len();
    out.push(FRAME_METHOD);
    out.extend_from_slice(&d.channel.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&BASIC_CLASS.to_be_bytes());
    out.extend_from_slice(&BASIC_DELIVER.to_be_bytes());
    short(out, d.consumer_tag);
    out.extend_from_slice(&d.delivery_tag.to_be_bytes());
    out.push(u8::from(d.redelivered));
    short(out, d.exchange);
    short(out, d.routing_key);
    let size = (out.len() - start - FRAME_HEADER_LEN) as u32;
    out[start + 3..start + FRAME_HEADER_LEN].copy_from_slice(&size.to_be_bytes());
    out.push(FRAME_END);
    // Content header: class, weight 0, body size, then the stored properties.
    let props: &[u8] = if d.properties.is_empty() {
        &[0, 0]
    } else {
        d.properties
    };
    out.push(FRAME_CONTENT_HEADER);
    out.extend_from_slice(&d.channel.to_be_bytes());
    out.extend_from_slice(&((12 + props.len()) as u32).to_be_bytes());
    out.extend_from_slice(&BASIC_CLASS.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&(d.body.len() as u64).to_be_bytes());
    out.extend_from_slice(props);
    out.push(FRAME_END);
    let chunk = frame_max.saturating_sub(FRAME_OVERHEAD).max(1);
    for part in d.body.chunks(chunk) {
        out.push(FRAME_BODY);
        out.extend_from_slice(&d.channel.to_be_bytes());
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part);
        out.push(FRAME_END);
    }
    true
}

pub fn heartbeat() -> Vec<u8> {
    vec![FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]
}

/// Content properties in their wire encoding (flags + fields): the compact form stored
/// with each message.
pub fn encode_properties(p: &AMQPProperties) -> Vec<u8> {
    cookie_factory::gen_simple(gen_properties(p), Vec::new()).unwrap_or_default()
}

pub fn decode_properties(b: &[u8]) -> Option<AMQPProperties> {
    match parse_properties(b) {
        Ok(([], p)) => Some(p),
        _ => None,
    }
}

/// The mechanisms `connection.start` offers, as RabbitMQ does by default.
pub const SASL_MECHANISMS: &str = "PLAIN AMQPLAIN";
/// Offered besides on a TLS connection with a verified client certificate.
pub const EXTERNAL: &str = "EXTERNAL";

/// User and password from a `connection.start-ok` response, for `mechanism` `PLAIN`
/// (`[authzid] NUL authcid NUL passwd`, RFC 4616) or `AMQPLAIN` (RabbitMQ's: a field
/// table without its 4-byte size, holding the long strings `LOGIN` and `PASSWORD`).
/// `None` for another mechanism or a response without both.
pub fn sasl_credentials(mechanism: &str, response: &[u8]) -> Option<(String, String)> {
    match mechanism {
        "PLAIN" => {
            let mut parts = response.split(|b| *b == 0);
            let _authzid = parts.next()?;
            let user = parts.next()?;
            let pass = parts.next()?;
            Some((
                String::from_utf8_lossy(user).into_owned(),
                String::from_utf8_lossy(pass).into_owned(),
            ))
        }
        "AMQPLAIN" => {
            let size = u32::try_from(response.len()).ok()?;
            let mut table = Vec::with_capacity(response.len() + 4);
            table.extend_from_slice(&size.to_be_bytes());
            table.extend_from_slice(response);
            let (rest, t) = amq_protocol::types::parsing::parse_field_table(&table[..]).ok()?;
            if !rest.is_empty() {
                return None;
            }
            // RabbitMQ requires long strings (type 'S') for both.
            let field = |k: &str| match t.inner().get(k) {
                Some(amq_protocol::types::AMQPValue::LongString(s)) => {
                    Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
                }
                _ => None,
            };
            Some((field("LOGIN")?, field("PASSWORD")?))
        }
        _ => None,
    }
}

/// A field table from pairs (tests).
#[cfg(test)]
pub(crate) fn field_table(
    pairs: &[(&str, amq_protocol::types::AMQPValue)],
) -> amq_protocol::types::FieldTable {
    let mut t = amq_protocol::types::FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_plain_and_amqplain_credentials() {
        assert_eq!(
            sasl_credentials("PLAIN", b"\0guest\0secret"),
            Some(("guest".into(), "secret".into()))
        );
        assert_eq!(sasl_credentials("PLAIN", b"guest"), None);
        // py-amqp's AMQPLAIN response: its table encoding minus the size prefix.
        let mut r = Vec::new();
        for (k, v) in [("LOGIN", "guest"), ("PASSWORD", "pw")] {
            r.push(k.len() as u8);
            r.extend_from_slice(k.as_bytes());
            r.push(b'S');
            r.extend_from_slice(&(v.len() as u32).to_be_bytes());
            r.extend_from_slice(v.as_bytes());
        }
        assert_eq!(
            sasl_credentials("AMQPLAIN", &r),
            Some(("guest".into(), "pw".into()))
        );
        // Missing PASSWORD, a truncated table, a short string value: refused.
        assert_eq!(sasl_credentials("AMQPLAIN", &r[..16]), None);
        assert_eq!(sasl_credentials("AMQPLAIN", &r[..r.len() - 1]), None);
        let short = [&b"\x05LOGINs\x05guest"[..], &b"\x08PASSWORDs\x02pw"[..]].concat();
        assert_eq!(sasl_credentials("AMQPLAIN", &short), None);
        assert_eq!(sasl_credentials("EXTERNAL", b""), None);
    }

    #[test]
    fn body_frames_decode_like_the_frame_parser() {
        let body: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        let bytes = encode_frame(&AMQPFrame::Body(7, body.clone()));
        assert_eq!(
            decode_whole_frame(&bytes).unwrap(),
            AMQPFrame::Body(7, body)
        );
        let empty = encode_frame(&AMQPFrame::Body(1, Vec::new()));
        assert_eq!(
            decode_whole_frame(&empty).unwrap(),
            AMQPFrame::Body(1, Vec::new())
        );
        // A size that disagrees with the bytes is left to the parser, which refuses it.
        let mut bad = bytes.clone();
        bad[6] ^= 1;
        assert!(decode_whole_frame(&bad).is_err());
    }

    #[test]
    fn reads_qos_prefetch_size_from_the_raw_payload() {
        // basic.qos: class, method, prefetch-size 2500, prefetch-count 7, global 0, frame end.
        let mut rest = [
            crate::methods::BASIC_QOS.class.to_be_bytes(),
            crate::methods::BASIC_QOS.method.to_be_bytes(),
        ]
        .concat();
        rest.extend_from_slice(&2500u32.to_be_bytes());
        rest.extend_from_slice(&[0, 7, 0, FRAME_END]);
        let size = (rest.len() - 1) as u32;
        let mut h = [1u8, 0, 1, 0, 0, 0, 0];
        h[3..7].copy_from_slice(&size.to_be_bytes());
        let frame = decode_whole_frame(&[&h[..], &rest[..]].concat()).unwrap();
        assert_eq!(qos_prefetch_size(&frame, &rest), 2500);
        assert_eq!(qos_prefetch_size(&AMQPFrame::Heartbeat, &rest), 0);
    }
    use amq_protocol::protocol::basic;
    use amq_protocol::types::{AMQPValue, FieldTable};

    #[test]
    fn append_delivery_writes_what_method_with_content_writes() {
        let mut headers = FieldTable::default();
        headers.insert("x-n".into(), AMQPValue::LongInt(7));
        let rich = AMQPProperties::default()
            .with_content_type("text/plain".into())
            .with_delivery_mode(2)
            .with_priority(9)
            .with_headers(headers);
        let big = vec![7u8; 300];
        for (props, body, frame_max) in [
            (AMQPProperties::default(), &b"hello"[..], 131_072),
            (rich.clone(), &b""[..], 131_072),
            (rich, &big[..], 100),
            (AMQPProperties::default(), &big[..], 4096),
        ] {
            for raw in [encode_properties(&props), Vec::new()] {
                let expected_props = if raw.is_empty() {
                    AMQPProperties::default()
                } else {
                    props.clone()
                };
                let m = AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
                    consumer_tag: "ctag-1".into(),
                    delivery_tag: 0x0102_0304_0506,
                    redelivered: true,
                    exchange: "ex".into(),
                    routing_key: "rk.1".into(),
                }));
                let expected = method_with_content(3, m, &expected_props, body, frame_max);
                let mut out = b"prefix".to_vec();
                let d = Delivery {
                    channel: 3,
                    consumer_tag: "ctag-1",
                    delivery_tag: 0x0102_0304_0506,
                    redelivered: true,
                    exchange: "ex",
                    routing_key: "rk.1",
                    properties: &raw,
                    body,
                };
                assert!(append_delivery(&mut out, &d, frame_max));
                assert_eq!(&out[..6], b"prefix");
                assert_eq!(out[6..], expected[..]);
            }
        }
        let long = "k".repeat(256);
        let d = Delivery {
            channel: 1,
            consumer_tag: "c",
            delivery_tag: 1,
            redelivered: false,
            exchange: "",
            routing_key: &long,
            properties: &[],
            body: b"x",
        };
        let mut out = Vec::new();
        assert!(!append_delivery(&mut out, &d, 4096));
        assert!(out.is_empty());
    }

    #[test]
    fn properties_round_trip() {
        let mut headers = FieldTable::default();
        headers.insert("x-n".into(), AMQPValue::LongInt(7));
        headers.insert("s".into(), AMQPValue::LongString("v".into()));
        let p = AMQPProperties::default()
            .with_content_type("text/plain".into())
            .with_delivery_mode(2)
            .with_priority(3)
            .with_correlation_id("c1".into())
            .with_reply_to("r".into())
            .with_message_id("m".into())
            .with_timestamp(1_700_000_000)
            .with_headers(headers);
        let b = encode_properties(&p);
        assert_eq!(decode_properties(&b), Some(p));
        let empty = AMQPProperties::default();
        assert_eq!(decode_properties(&encode_properties(&empty)), Some(empty));
        assert_eq!(encode_properties(&AMQPProperties::default()), vec![0, 0]);
    }

    #[test]
    fn garbage_properties_are_none_not_panic() {
        assert_eq!(decode_properties(&[0xff, 0xff, 1]), None);
        assert_eq!(decode_properties(&[]), None);
    }

    #[test]
    fn frame_header_bounds() {
        let h = parse_frame_header([1, 0, 1, 0, 0, 0, 10], 4096).unwrap();
        assert_eq!((h.kind, h.channel, h.size), (1, 1, 10));
        assert!(matches!(
            parse_frame_header([3, 0, 1, 0xff, 0xff, 0xff, 0xff], 131072),
            Err(FrameError::TooLarge { .. })
        ));
        assert_eq!(
            parse_frame_header([9, 0, 0, 0, 0, 0, 0], 4096),
            Err(FrameError::BadType(9))
        );
    }

    #[test]
    fn method_and_content_frames_round_trip() {
        let m = AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
            consumer_tag: "ct".into(),
            delivery_tag: 5,
            redelivered: true,
            exchange: "".into(),
            routing_key: "q".into(),
        }));
        let body = vec![7u8; 300];
        let bytes = method_with_content(1, m.clone(), &AMQPProperties::default(), &body, 128);
        let mut at = 0;
        let mut frames = Vec::new();
        while at < bytes.len() {
            let mut h = [0u8; FRAME_HEADER_LEN];
            h.copy_from_slice(&bytes[at..at + FRAME_HEADER_LEN]);
            let fh = parse_frame_header(h, 128).unwrap();
            let end = at + FRAME_HEADER_LEN + fh.size + 1;
            frames.push(decode_whole_frame(&bytes[at..end]).unwrap());
            at = end;
        }
        assert_eq!(frames[0], AMQPFrame::Method(1, m));
        assert!(matches!(&frames[1], AMQPFrame::Header(1, h) if h.body_size == 300));
        let got: Vec<u8> = frames[2..]
            .iter()
            .flat_map(|f| match f {
                AMQPFrame::Body(_, b) => b.clone(),
                _ => panic!("body expected"),
            })
            .collect();
        assert_eq!(got, body);
        assert_eq!(frames.len(), 2 + 3);
    }
}
