//! Node-wide AMQP counters for metrics (RabbitMQ's global counters): process statics, so
//! the hot paths only do a relaxed atomic add.

use std::sync::atomic::{AtomicU64, Ordering};

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
