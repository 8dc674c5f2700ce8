//! Node-wide AMQP counters for metrics (RabbitMQ's global counters): process statics, so
//! the hot paths only do a relaxed atomic add.

use std::sync::atomic::{AtomicU64, Ordering};

use arctern_storage::stats::{Histogram, HistogramSnapshot};

use crate::methods::MethodId;

/// Messages published (basic.publish completed with its body).
pub static RECEIVED: AtomicU64 = AtomicU64::new(0);
/// Publishes confirmed to publishers (basic.ack in confirm mode).
pub static CONFIRMED: AtomicU64 = AtomicU64::new(0);
/// Messages delivered to consumers and basic.get.
pub static DELIVERED: AtomicU64 = AtomicU64::new(0);
/// Of those, deliveries flagged redelivered.
pub static REDELIVERED: AtomicU64 = AtomicU64::new(0);
/// Deliveries acknowledged by consumers.
pub static ACKNOWLEDGED: AtomicU64 = AtomicU64::new(0);
/// Channels open on this node.
pub static CHANNELS: AtomicU64 = AtomicU64::new(0);

/// Bytes read from and written to AMQP clients (after TLS decryption): RabbitMQ's
/// `rabbitmq_connection_incoming_bytes_total` / `_outgoing_` summed over connections.
pub static BYTES_RECEIVED: AtomicU64 = AtomicU64::new(0);
pub static BYTES_SENT: AtomicU64 = AtomicU64::new(0);
/// basic.publish in confirm mode: the publish's body received to its basic.ack (or nack)
/// written to the connection — store, replication and fsync included.
pub static PUBLISH_TO_CONFIRM: Histogram = Histogram::latency();

/// The methods answered synchronously (a `-ok` reply), timed from the method frame to
/// the handler's return (reply sent). basic.publish is `PUBLISH_TO_CONFIRM` instead.
pub const TIMED_METHODS: [(MethodId, &str); 21] = [
    (MethodId::new(20, 10), "channel.open"),
    (MethodId::new(20, 20), "channel.flow"),
    (MethodId::new(20, 40), "channel.close"),
    (MethodId::new(40, 10), "exchange.declare"),
    (MethodId::new(40, 20), "exchange.delete"),
    (MethodId::new(40, 30), "exchange.bind"),
    (MethodId::new(40, 40), "exchange.unbind"),
    (MethodId::new(50, 10), "queue.declare"),
    (MethodId::new(50, 20), "queue.bind"),
    (MethodId::new(50, 30), "queue.purge"),
    (MethodId::new(50, 40), "queue.delete"),
    (MethodId::new(50, 50), "queue.unbind"),
    (MethodId::new(60, 10), "basic.qos"),
    (MethodId::new(60, 20), "basic.consume"),
    (MethodId::new(60, 30), "basic.cancel"),
    (MethodId::new(60, 70), "basic.get"),
    (MethodId::new(60, 110), "basic.recover"),
    (MethodId::new(85, 10), "confirm.select"),
    (MethodId::new(90, 10), "tx.select"),
    (MethodId::new(90, 20), "tx.commit"),
    (MethodId::new(90, 30), "tx.rollback"),
];
#[allow(clippy::declare_interior_mutable_const)]
const LATENCY: Histogram = Histogram::latency();
static METHOD_DURATIONS: [Histogram; TIMED_METHODS.len()] = [LATENCY; TIMED_METHODS.len()];

/// The histogram a method is timed in, if it is one answered synchronously.
pub(crate) fn timed_method(id: MethodId) -> Option<&'static Histogram> {
    TIMED_METHODS
        .iter()
        .position(|(m, _)| *m == id)
        .map(|i| &METHOD_DURATIONS[i])
}

/// Method latency histograms by RabbitMQ's method name, only methods seen at least once.
pub fn method_durations() -> Vec<(&'static str, HistogramSnapshot)> {
    TIMED_METHODS
        .iter()
        .zip(METHOD_DURATIONS.iter())
        .filter_map(|((_, name), h)| {
            let s = h.snapshot();
            (s.count > 0).then_some((*name, s))
        })
        .collect()
}

pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

pub fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Counts an open channel while it lives.
#[derive(Debug)]
pub(crate) struct ChannelCount;

impl Default for ChannelCount {
    fn default() -> Self {
        CHANNELS.fetch_add(1, Ordering::Relaxed);
        ChannelCount
    }
}

impl Drop for ChannelCount {
    fn drop(&mut self) {
        CHANNELS.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::protocol::{basic, queue, AMQPClass};

    #[test]
    fn synchronous_methods_are_timed_and_publish_is_not() {
        let declare = AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare::default()));
        assert!(timed_method(MethodId::of(&declare)).is_some());
        let publish = AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish::default()));
        assert!(timed_method(MethodId::of(&publish)).is_none());
        let ack = AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack::default()));
        assert!(timed_method(MethodId::of(&ack)).is_none());
        let names: std::collections::HashSet<_> = TIMED_METHODS.iter().map(|m| m.1).collect();
        assert_eq!(names.len(), TIMED_METHODS.len());
    }
}
