//! Arctern's log storage: one append-only, segmented log per partition (and later per
//! queue), holding Kafka RecordBatch v2 bytes exactly as the producer sent them, with the
//! base offset and leader epoch stamped in. Crash safety comes from CRC validation of the
//! tail on recovery and explicit `fdatasync` driven by the caller's flush policy.

pub mod batch;
pub mod epoch;
mod error;
mod log;
pub mod open_files;
pub mod records;
mod segment;
pub mod stats;

pub use batch::BatchHeader;
pub use epoch::{EpochEntry, LeaderEpochCache};
pub use error::{BatchError, Result, StorageError};
pub use log::{AppendInfo, FetchedBatches, Log, LogConfig, SyncPoint};

use std::sync::atomic::{AtomicBool, Ordering};

static VERIFY_READS: AtomicBool = AtomicBool::new(true);

/// Turns the structural checks on reads off or on (process-wide; on by default): each
/// batch served must start where the log continues (the sparse index entry, then the batch
/// before it) and carry the leader epoch the epoch checkpoint gives its offset. Those are
/// the fields Kafka's batch CRC leaves out. Off only for the storage-fault tests' negative
/// control (`storage.verify.reads = false`); the CRC is checked either way.
pub fn set_verify_reads(on: bool) {
    VERIFY_READS.store(on, Ordering::Relaxed);
}

pub(crate) fn verify_reads() -> bool {
    VERIFY_READS.load(Ordering::Relaxed)
}
