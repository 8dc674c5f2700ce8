//! Arctern's broker core: topics and partitions over the log storage, group commit
//! (many producers share one fsync), the high watermark, and persistent metadata.
//! It speaks domain types only; protocol crates translate to and from their wire formats.

mod broker;
pub mod config;
mod error;
pub mod metadata;
mod partition;
pub mod replica;

pub use broker::{AlterOp, Broker, Topic};
pub use config::{BrokerConfig, ConfigEntry, ConfigSource, TopicDefaults, TopicSettings};
pub use error::{CoreError, Result};
pub use partition::{Acks, Appended, FetchedData, Partition, ProduceOutcome};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
