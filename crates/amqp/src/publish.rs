//! Publish assembly (sans-IO): a `basic.publish` method frame, then a content header, then
//! body frames until the header's body size is reached. Each channel has one
//! `PublishAssembly`; the connection feeds it frames and stores what comes out complete.

use amq_protocol::frame::AMQPContentHeader;
use amq_protocol::protocol::basic::{self, AMQPProperties};

use crate::codes::{AmqpError, FRAME_ERROR, UNEXPECTED_FRAME};

/// A content frame of a publish.
// Not boxed: boxing the header would allocate once per publish.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Content {
    Header(AMQPContentHeader),
    Body(Vec<u8>),
}

/// A publish whose method, header and whole body arrived.
#[derive(Debug)]
pub struct Complete {
    pub publish: basic::Publish,
    pub properties: AMQPProperties,
    pub body: Vec<u8>,
}

/// A frame out of order or too large: `connection` tells whether it closes the connection
/// (frame errors) or only the channel (a body larger than the configured maximum).
#[derive(Debug)]
pub struct AssemblyError {
    pub error: AmqpError,
    pub connection: bool,
}

impl AssemblyError {
    fn connection(code: u16, text: &str) -> AssemblyError {
        AssemblyError {
            error: AmqpError::new(code, text),
            connection: true,
        }
    }
}

struct Publishing {
    publish: basic::Publish,
    header: Option<AMQPContentHeader>,
    body: Vec<u8>,
}

/// One channel's publish being assembled, if any.
#[derive(Default)]
pub struct PublishAssembly {
    current: Option<Publishing>,
}

impl PublishAssembly {
    /// A publish waits for its header or body: any other method is a frame error.
    pub fn in_progress(&self) -> bool {
        self.current.is_some()
    }

    /// Bytes this channel's body buffer holds now (what the memory budget counts).
    pub fn buffered(&self) -> usize {
        self.current.as_ref().map_or(0, |p| p.body.capacity())
    }

    /// `basic.publish`: its content header and body follow.
    pub fn start(&mut self, publish: basic::Publish) {
        self.current = Some(Publishing {
            publish,
            header: None,
            body: Vec::new(),
        });
    }

    /// Drops a publish half received (the channel closes).
    pub fn abort(&mut self) {
        self.current = None;
    }

    /// A content header; `max_message_size` bounds its declared body size. A publish with
    /// an empty body is complete here.
    pub fn header(
        &mut self,
        h: AMQPContentHeader,
        max_message_size: usize,
    ) -> Result<Option<Complete>, AssemblyError> {
        let Some(p) = self.current.as_mut().filter(|p| p.header.is_none()) else {
            return Err(AssemblyError::connection(
                UNEXPECTED_FRAME,
                "content header without basic.publish",
            ));
        };
        if h.body_size > max_message_size as u64 {
            self.current = None;
            return Err(AssemblyError {
                error: AmqpError::precondition(format!(
                    "message size {} is larger than configured max size {max_message_size}",
                    h.body_size
                )),
                connection: false,
            });
        }
        // Allocated by the first body frame unless that frame holds the whole body.
        p.body = Vec::new();
        let done = h.body_size == 0;
        p.header = Some(h);
        Ok(if done { self.take() } else { None })
    }

    /// A content frame: `header` or `body`.
    pub fn content(
        &mut self,
        part: Content,
        max_message_size: usize,
    ) -> Result<Option<Complete>, AssemblyError> {
        match part {
            Content::Header(h) => self.header(h, max_message_size),
            Content::Body(b) => self.body(b),
        }
    }

    /// A body frame: complete once the declared size is reached.
    pub fn body(&mut self, b: Vec<u8>) -> Result<Option<Complete>, AssemblyError> {
        let Some((p, size)) = self
            .current
            .as_mut()
            .and_then(|p| p.header.as_ref().map(|h| h.body_size).map(|s| (p, s)))
        else {
            return Err(AssemblyError::connection(
                UNEXPECTED_FRAME,
                "content body without a content header",
            ));
        };
        if p.body.len() as u64 + b.len() as u64 > size {
            return Err(AssemblyError::connection(
                FRAME_ERROR,
                "content body exceeds the declared body size",
            ));
        }
        if p.body.is_empty() && b.len() as u64 == size {
            // The whole body in one frame (the usual case): keep its buffer, no copy.
            p.body = b;
        } else {
            p.body.extend_from_slice(&b);
        }
        Ok(if p.body.len() as u64 == size {
            self.take()
        } else {
            None
        })
    }

    fn take(&mut self) -> Option<Complete> {
        let p = self.current.take()?;
        Some(Complete {
            publish: p.publish,
            properties: p.header.map(|h| h.properties).unwrap_or_default(),
            body: p.body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::PRECONDITION_FAILED;
    use crate::methods::BASIC_CLASS;

    fn header(size: u64) -> AMQPContentHeader {
        AMQPContentHeader {
            class_id: BASIC_CLASS,
            body_size: size,
            properties: AMQPProperties::default().with_content_type("text/plain".into()),
        }
    }

    fn publish(key: &str) -> basic::Publish {
        basic::Publish {
            routing_key: key.into(),
            ..Default::default()
        }
    }

    #[test]
    fn method_header_body_in_one_frame_keeps_the_body_buffer() {
        let mut a = PublishAssembly::default();
        a.start(publish("k"));
        assert!(a.in_progress());
        assert!(a.header(header(5), 100).unwrap().is_none());
        let body = b"hello".to_vec();
        let ptr = body.as_ptr();
        let c = a.body(body).unwrap().expect("complete");
        assert_eq!(c.publish.routing_key.as_str(), "k");
        assert_eq!(c.body, b"hello");
        assert_eq!(c.body.as_ptr(), ptr, "no copy of a one-frame body");
        assert_eq!(
            c.properties.content_type().as_ref().unwrap().as_str(),
            "text/plain"
        );
        assert!(!a.in_progress());
    }

    #[test]
    fn body_split_over_frames() {
        let mut a = PublishAssembly::default();
        a.start(publish("k"));
        a.header(header(6), 100).unwrap();
        assert!(a.body(b"ab".to_vec()).unwrap().is_none());
        assert!(a.body(b"cd".to_vec()).unwrap().is_none());
        let c = a.body(b"ef".to_vec()).unwrap().expect("complete");
        assert_eq!(c.body, b"abcdef");
    }

    #[test]
    fn empty_body_completes_at_the_header() {
        let mut a = PublishAssembly::default();
        a.start(publish("k"));
        let c = a.header(header(0), 100).unwrap().expect("complete");
        assert!(c.body.is_empty());
        assert!(!a.in_progress());
    }

    #[test]
    fn header_without_publish_is_unexpected_frame() {
        let mut a = PublishAssembly::default();
        let e = a.header(header(1), 100).unwrap_err();
        assert!(e.connection);
        assert_eq!(e.error.code, UNEXPECTED_FRAME);
        assert_eq!(e.error.text, "content header without basic.publish");
    }

    #[test]
    fn second_header_is_unexpected_frame() {
        let mut a = PublishAssembly::default();
        a.start(publish("k"));
        a.header(header(3), 100).unwrap();
        let e = a.header(header(3), 100).unwrap_err();
        assert!(e.connection);
        assert_eq!(e.error.code, UNEXPECTED_FRAME);
    }

    #[test]
    fn body_without_header_is_unexpected_frame() {
        let mut a = PublishAssembly::default();
        let e = a.body(b"x".to_vec()).unwrap_err();
        assert!(e.connection);
        assert_eq!(e.error.code, UNEXPECTED_FRAME);
        assert_eq!(e.error.text, "content body without a content header");
        a.start(publish("k"));
        let e = a.body(b"x".to_vec()).unwrap_err();
        assert_eq!(e.error.code, UNEXPECTED_FRAME);
    }

    #[test]
    fn body_past_the_declared_size_is_frame_error() {
        let mut a = PublishAssembly::default();
        a.start(publish("k"));
        a.header(header(3), 100).unwrap();
        a.body(b"ab".to_vec()).unwrap();
        let e = a.body(b"cd".to_vec()).unwrap_err();
        assert!(e.connection);
        assert_eq!(e.error.code, FRAME_ERROR);
        assert_eq!(e.error.text, "content body exceeds the declared body size");
    }

    #[test]
    fn oversize_message_closes_the_channel_and_drops_the_publish() {
        let mut a = PublishAssembly::default();
        a.start(publish("k"));
        let e = a.header(header(101), 100).unwrap_err();
        assert!(!e.connection);
        assert_eq!(e.error.code, PRECONDITION_FAILED);
        assert_eq!(
            e.error.text,
            "message size 101 is larger than configured max size 100"
        );
        assert!(!a.in_progress());
        // At the limit is fine.
        a.start(publish("k"));
        assert!(a.header(header(100), 100).unwrap().is_none());
    }

    #[test]
    fn content_dispatches_header_and_body() {
        let mut a = PublishAssembly::default();
        a.start(publish("k"));
        assert!(a
            .content(Content::Header(header(1)), 100)
            .unwrap()
            .is_none());
        let c = a.content(Content::Body(b"x".to_vec()), 100).unwrap();
        assert_eq!(c.expect("complete").body, b"x");
    }

    #[test]
    fn abort_drops_the_publish() {
        let mut a = PublishAssembly::default();
        a.start(publish("k"));
        a.abort();
        assert!(!a.in_progress());
        assert_eq!(
            a.body(b"x".to_vec()).unwrap_err().error.code,
            UNEXPECTED_FRAME
        );
    }
}
