//! The coordinator's settings, with Kafka's broker key names and defaults.

/// Group coordinator settings (Kafka broker keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group
    /// waits for more members (extended by this much per new member, up to the
    /// rebalance timeout).
    pub initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms`
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`
    pub max_session_timeout_ms: i32,
    /// `offsets.topic.num.partitions`, used when the offsets topic is created.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.replication.factor`; capped at the number of registered brokers.
    pub offsets_topic_replication_factor: i16,
    /// `offset.metadata.max.bytes`: longer commit metadata gets OFFSET_METADATA_TOO_LARGE.
    pub offset_metadata_max_bytes: usize,
    /// Kafka's `offsets.commit.timeout.ms`: how long a write to the offsets topic may wait
    /// for replication before the request fails (COORDINATOR_NOT_AVAILABLE).
    pub offsets_commit_timeout_ms: u64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            offsets_topic_num_partitions: 50,
            offsets_topic_replication_factor: 3,
            offset_metadata_max_bytes: 4096,
            offsets_commit_timeout_ms: 5000,
        }
    }
}
