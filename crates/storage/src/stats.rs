//! Lock-free histograms for the node's metrics, and the storage layer's own.
//!
//! Every crate on a hot path (storage, core, kafka, amqp) records into process statics of
//! [`Histogram`]: fixed bucket bounds chosen at compile time, one relaxed atomic add for the
//! bucket and one for the sum per observation, no lock, no allocation. The HTTP crate reads
//! them with [`Histogram::snapshot`] and writes Prometheus histograms. This crate is the
//! lowest one they all share, so the type lives here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The most finite buckets a histogram may have.
pub const MAX_BUCKETS: usize = 16;

/// Latency bounds in nanoseconds: 100 µs to 10 s (RabbitMQ and Kafka latencies on a
/// healthy node are sub-millisecond to tens of milliseconds; a slow disk reaches seconds).
pub const LATENCY_NANOS: &[u64] = &[
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Records per group-commit batch: powers of four from 1 to 65536.
pub const BATCH_RECORDS: &[u64] = &[1, 4, 16, 64, 256, 1024, 4096, 16384, 65536];

/// Bytes per group-commit batch: 256 B to 64 MiB, powers of four.
pub const BATCH_BYTES: &[u64] = &[
    256,
    1 << 10,
    4 << 10,
    16 << 10,
    64 << 10,
    256 << 10,
    1 << 20,
    4 << 20,
    16 << 20,
    64 << 20,
];

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);

/// A Prometheus-style histogram over integer observations (nanoseconds, records, bytes).
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds (inclusive, as Prometheus' `le`), ascending, at most `MAX_BUCKETS`.
    bounds: &'static [u64],
    /// Exported value = observed units x `scale` (1e-9 for nanoseconds as seconds).
    scale: f64,
    /// Per bucket, not cumulative; the slot after the last bound is +Inf.
    counts: [AtomicU64; MAX_BUCKETS + 1],
    sum: AtomicU64,
}

/// A histogram's numbers at one instant, as Prometheus wants them: buckets not
/// cumulative, the last one's bound `f64::MAX` (+Inf), `count` their total.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    pub sum: f64,
    pub count: u64,
    pub buckets: Vec<(f64, u64)>,
}

impl Histogram {
    /// `bounds` ascending with at most `MAX_BUCKETS` entries (checked at compile time when
    /// used in a static).
    pub const fn new(bounds: &'static [u64], scale: f64) -> Histogram {
        assert!(bounds.len() <= MAX_BUCKETS);
        Histogram {
            bounds,
            scale,
            counts: [ZERO; MAX_BUCKETS + 1],
            sum: AtomicU64::new(0),
        }
    }

    /// A latency histogram exported in seconds.
    pub const fn latency() -> Histogram {
        Histogram::new(LATENCY_NANOS, 1e-9)
    }

    pub fn observe(&self, v: u64) {
        // Bounds are few (<= 16) and sorted: a linear scan beats a binary search here.
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(v, Ordering::Relaxed);
    }

    pub fn observe_duration(&self, d: Duration) {
        self.observe(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Not atomic across buckets (a scrape racing an observation may see its bucket but
    /// not its sum): Prometheus tolerates that, and `count` is computed from the buckets
    /// so the `+Inf` bucket always equals `_count`.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut buckets = Vec::with_capacity(self.bounds.len() + 1);
        let mut count = 0u64;
        for (i, c) in self.counts[..=self.bounds.len()].iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            count += n;
            let bound = self
                .bounds
                .get(i)
                .map_or(f64::MAX, |b| *b as f64 * self.scale);
            buckets.push((bound, n));
        }
        HistogramSnapshot {
            sum: self.sum.load(Ordering::Relaxed) as f64 * self.scale,
            count,
            buckets,
        }
    }
}

/// fdatasync of partition logs (the group commit: one per batch of appends).
pub static FSYNC_SECONDS: Histogram = Histogram::latency();
/// Records (offsets) made durable by one partition-log fdatasync.
pub static SYNC_BATCH_RECORDS: Histogram = Histogram::new(BATCH_RECORDS, 1.0);
/// Bytes made durable by one partition-log fdatasync.
pub static SYNC_BATCH_BYTES: Histogram = Histogram::new(BATCH_BYTES, 1.0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_whose_bound_they_do_not_exceed() {
        static H: Histogram = Histogram::new(&[1, 10, 100], 1.0);
        for v in [0, 1, 2, 10, 11, 1000] {
            H.observe(v);
        }
        let s = H.snapshot();
        assert_eq!(
            s.buckets,
            vec![(1.0, 2), (10.0, 2), (100.0, 1), (f64::MAX, 1)]
        );
        assert_eq!(s.count, 6);
        assert_eq!(s.sum, 1024.0);
    }

    #[test]
    fn latencies_are_exported_in_seconds() {
        let h = Histogram::latency();
        h.observe_duration(Duration::from_micros(300));
        let s = h.snapshot();
        assert_eq!(s.count, 1);
        assert!((s.sum - 0.0003).abs() < 1e-12);
        assert_eq!(s.buckets.len(), LATENCY_NANOS.len() + 1);
        assert!((s.buckets[0].0 - 0.0001).abs() < 1e-12);
        // 300 µs is above 250 µs and at most 500 µs.
        assert_eq!(s.buckets[2].1, 1);
        assert_eq!(s.buckets.last().map(|b| b.0), Some(f64::MAX));
    }
}
