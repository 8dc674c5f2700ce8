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
