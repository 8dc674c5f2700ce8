//! Arctern's broker core: this node's partition replicas over the log storage, driven by
//! the Raft-replicated cluster metadata; group commit (many producers share one fsync);
//! leaders' high watermark over the in-sync replicas; acks and `min.insync.replicas`.
//! It speaks domain types only; protocol crates translate to and from their wire formats,
//! and the follower fetcher is plugged in (`FollowerFetcher`) by `arctern-replication`.

mod broker;
pub mod config;
mod error;
pub mod metadata;
mod partition;
pub mod producer_state;
pub mod replica;
pub mod stats;

pub use broker::{
    AlterOp, Broker, ElectionOutcome, ElectionType, FollowerFetcher, ReplicaEndpoint, ReplicaUsage,
    Topic,
};
pub use config::{
    BrokerConfig, ConfigEntry, ConfigSource, ConfigSynonym, ConfigType, TopicDefaults,
    TopicSettings,
};
pub use error::{CoreError, Result};
pub use partition::{Acks, Appended, FetchedData, IsrProposal, Partition, ProduceOutcome};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
