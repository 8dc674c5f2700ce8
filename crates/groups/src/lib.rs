//! Kafka's classic consumer-group coordinator (JoinGroup/SyncGroup/Heartbeat/LeaveGroup,
//! offset commit and fetch, group admin) over the `__consumer_offsets` partitions of the
//! broker core.
//!
//! The coordinator of a group is the leader of the offsets partition its id hashes to.
//! State lives in memory and is rebuilt from that partition on leadership gain; every
//! change that must survive (committed offsets, a completed rebalance's assignment, a
//! deleted group) is appended with acks=all and answered only once replicated.
//! Operations speak domain types and [`GroupError`]; the Kafka layer translates.

mod api;
mod config;
mod consumer_protocol;
mod coordinator;
mod error;
mod group;
pub mod log;
pub mod records;

pub use api::*;
pub use config::GroupConfig;
pub use coordinator::GroupCoordinator;
pub use error::GroupError;
pub use log::{KeyValue, OffsetsLog, OFFSETS_TOPIC};

#[cfg(test)]
mod tests;
