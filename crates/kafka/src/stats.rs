//! Node-wide Kafka counters for metrics: process statics, a relaxed add per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arctern_storage::stats::{Histogram, HistogramSnapshot};
use kafka_protocol::messages::ApiKey;

/// Client connections open on this node's Kafka listeners.
pub static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

const SLOTS: usize = 128;
#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);
static REQUESTS: [AtomicU64; SLOTS] = [ZERO; SLOTS];
#[allow(clippy::declare_interior_mutable_const)]
const LATENCY: Histogram = Histogram::latency();
/// Request received (whole frame read) to response encoded and queued for writing, by API.
static DURATIONS: [Histogram; SLOTS] = [LATENCY; SLOTS];
/// Produce requests with acks=all: in until the response is ready (replicated and,
/// with fsync-before-ack, durable).
pub static PRODUCE_ACKS_ALL: Histogram = Histogram::latency();
/// Bytes read from and written to Kafka clients (with the 4-byte size prefixes; after TLS
/// decryption): Kafka's BytesInPerSec/BytesOutPerSec as counters.
pub static BYTES_RECEIVED: AtomicU64 = AtomicU64::new(0);
pub static BYTES_SENT: AtomicU64 = AtomicU64::new(0);

pub(crate) fn count_request(api_key: ApiKey) {
    let i = api_key as i16;
    if let Some(c) = usize::try_from(i).ok().and_then(|i| REQUESTS.get(i)) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// A request's time from receipt to its response being ready.
pub(crate) fn observe_request(api_key: ApiKey, started: Instant, acks_all: bool) {
    let elapsed = started.elapsed();
    let i = api_key as i16;
    if let Some(h) = usize::try_from(i).ok().and_then(|i| DURATIONS.get(i)) {
        h.observe_duration(elapsed);
    }
    if acks_all {
        PRODUCE_ACKS_ALL.observe_duration(elapsed);
    }
}

/// Request latency histograms by API name, only the APIs seen at least once.
pub fn request_durations() -> Vec<(String, HistogramSnapshot)> {
    DURATIONS
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let key = ApiKey::try_from(i16::try_from(i).ok()?).ok()?;
            let s = h.snapshot();
            (s.count > 0).then(|| (format!("{key:?}"), s))
        })
        .collect()
}

pub(crate) fn add(c: &AtomicU64, n: usize) {
    c.fetch_add(n as u64, Ordering::Relaxed);
}

pub fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Requests served so far, by API name (Kafka's request names: `Produce`, `Fetch`, ...),
/// only the APIs seen at least once.
pub fn requests() -> Vec<(String, u64)> {
    REQUESTS
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let n = c.load(Ordering::Relaxed);
            let key = ApiKey::try_from(i16::try_from(i).ok()?).ok()?;
            (n > 0).then(|| (format!("{key:?}"), n))
        })
        .collect()
}

pub fn connections() -> u64 {
    CONNECTIONS.load(Ordering::Relaxed)
}

/// Counts a connection while it lives.
pub(crate) struct ConnectionCount;

impl ConnectionCount {
    pub(crate) fn new() -> ConnectionCount {
        CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        ConnectionCount
    }
}

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
    }
}
