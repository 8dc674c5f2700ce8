//! Node-wide Kafka counters for metrics: process statics, a relaxed add per request.

use std::sync::atomic::{AtomicU64, Ordering};

use kafka_protocol::messages::ApiKey;

/// Client connections open on this node's Kafka listeners.
pub static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

const SLOTS: usize = 128;
#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);
static REQUESTS: [AtomicU64; SLOTS] = [ZERO; SLOTS];

pub(crate) fn count_request(api_key: ApiKey) {
    let i = api_key as i16;
    if let Some(c) = usize::try_from(i).ok().and_then(|i| REQUESTS.get(i)) {
        c.fetch_add(1, Ordering::Relaxed);
    }
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
