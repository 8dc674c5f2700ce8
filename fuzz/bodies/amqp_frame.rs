//! AMQP 0-9-1 frames as a connection reads them (`FrameSource`): the 7-byte header checked
//! against frame_max, the whole frame decoded (amq-protocol's parser behind
//! `decode_whole_frame`), then the argument decoding the handlers do on what clients send:
//! queue and exchange declare arguments, headers-exchange bindings, SASL responses, content
//! properties and the per-message TTL, topic binding patterns.
//!
//! The body of the cargo-fuzz target `amqp_frame` (fuzz/fuzz_targets), shared with CI's
//! short run on stable Rust (crates/arctern/tests/fuzz_smoke.rs).

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{basic, connection, exchange, queue, AMQPClass};
use arctern_amqp::{args, topic, vhost, wire};

/// The default negotiated frame_max (RabbitMQ's 128 KiB).
const FRAME_MAX: usize = 131_072;

fn method(m: &AMQPClass, rest: &[u8], frame: &AMQPFrame) {
    let _ = wire::qos_prefetch_size(frame, rest);
    match m {
        AMQPClass::Connection(connection::AMQPMethod::StartOk(ok)) => {
            let _ = wire::sasl_credentials(ok.mechanism.as_str(), ok.response.as_bytes());
        }
        AMQPClass::Queue(queue::AMQPMethod::Declare(d)) => {
            let _ = args::QueueArgs::parse(d.queue.as_str(), &d.arguments);
            let _ = d
                .arguments
                .inner()
                .get("x-dead-letter-exchange")
                .and_then(args::string);
        }
        AMQPClass::Queue(queue::AMQPMethod::Bind(b)) => {
            let _ = vhost::headers_match(&b.arguments, Some(&b.arguments));
            let _ = topic::topic_matches(b.routing_key.as_str(), b.queue.as_str());
        }
        AMQPClass::Exchange(exchange::AMQPMethod::Declare(d)) => {
            let _ = vhost::check_exchange_args("/", d.exchange.as_str(), &d.arguments);
        }
        AMQPClass::Exchange(exchange::AMQPMethod::Bind(b)) => {
            let _ = vhost::headers_match(&b.arguments, None);
            let _ = topic::topic_matches(b.routing_key.as_str(), b.destination.as_str());
        }
        AMQPClass::Basic(basic::AMQPMethod::Publish(p)) => {
            let _ = topic::topic_matches(p.exchange.as_str(), p.routing_key.as_str());
        }
        _ => {}
    }
}

/// One execution: `data` is the fuzzer's input.
pub fn run(data: &[u8]) {
    // The stored form of content properties (queue records) uses the same decoder.
    let _ = wire::decode_properties(data);
    let mut rest = data;
    if rest.starts_with(b"AMQP") {
        rest = &rest[rest.len().min(8)..];
    }
    while rest.len() >= wire::FRAME_HEADER_LEN {
        let mut header = [0u8; wire::FRAME_HEADER_LEN];
        header.copy_from_slice(&rest[..wire::FRAME_HEADER_LEN]);
        let Ok(fh) = wire::parse_frame_header(header, FRAME_MAX) else {
            return;
        };
        let total = (wire::FRAME_HEADER_LEN + fh.size + 1).min(rest.len());
        let bytes = &rest[..total];
        rest = &rest[total..];
        let Ok(frame) = wire::decode_whole_frame(bytes) else {
            return;
        };
        match &frame {
            AMQPFrame::Method(_, m) => method(m, &bytes[wire::FRAME_HEADER_LEN..], &frame),
            AMQPFrame::Header(_, h) => {
                let p = &h.properties;
                let _ = args::message_expiration(p.expiration().as_ref().map(|s| s.as_str()));
                let _ = vhost::headers_match(&Default::default(), p.headers().as_ref());
                let _ = wire::decode_properties(&wire::encode_properties(p));
            }
            _ => {}
        }
    }
}
