use arctern_storage::StorageError;

/// Domain errors of the broker core. Each protocol maps them to its own codes in one
/// table (for Kafka: `arctern_kafka_wire::errors`).
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("unknown topic or partition: {0}")]
    UnknownTopicOrPartition(String),
    #[error("topic '{0}' already exists")]
    TopicAlreadyExists(String),
    #[error("invalid topic: {0}")]
    InvalidTopic(String),
    #[error("invalid partitions: {0}")]
    InvalidPartitions(String),
    #[error("invalid replication factor: {0}")]
    InvalidReplicationFactor(String),
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge { size: usize, max: usize },
    #[error("record batches too large for a segment: {0}")]
    RecordBatchTooLarge(String),
    #[error("corrupt message: {0}")]
    CorruptMessage(String),
    #[error("offset {requested} out of range [{start}, {end}]")]
    OffsetOutOfRange {
        requested: i64,
        start: i64,
        end: i64,
    },
    /// Disk failure or corruption found in stored data; the partition may be offline.
    #[error("storage error: {0}")]
    Storage(String),
    #[error("the partition is closed (broker shutting down or topic deleted)")]
    ShuttingDown,
    #[error("not the leader: {0}")]
    NotLeaderOrFollower(String),
    #[error("leader not available: {0}")]
    LeaderNotAvailable(String),
    #[error("not enough replicas: {0}")]
    NotEnoughReplicas(String),
    #[error("not enough replicas after append: {0}")]
    NotEnoughReplicasAfterAppend(String),
    #[error("fenced leader epoch: {0}")]
    FencedLeaderEpoch(String),
    #[error("unknown leader epoch: {0}")]
    UnknownLeaderEpoch(String),
    /// An idempotent producer's batch does not follow its previous one (a batch was lost).
    #[error("out of order sequence number: {0}")]
    OutOfOrderSequence(String),
    /// An idempotent producer with an older epoch than the partition has seen (a zombie).
    #[error("invalid producer epoch: {0}")]
    InvalidProducerEpoch(String),
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// The metadata quorum did not answer in time (no quorum, or an election under way).
    #[error("metadata quorum unavailable: {0}")]
    MetadataUnavailable(String),
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;

impl From<StorageError> for CoreError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::InvalidBatch(b) => CoreError::CorruptMessage(b.to_string()),
            StorageError::BatchTooLarge { size, max } => CoreError::MessageTooLarge { size, max },
            StorageError::BatchesLargerThanSegment { .. } => {
                CoreError::RecordBatchTooLarge(e.to_string())
            }
            StorageError::OffsetOutOfRange {
                requested,
                start,
                end,
            } => CoreError::OffsetOutOfRange {
                requested,
                start,
                end,
            },
            StorageError::NonSequentialAppend { .. } => CoreError::InvalidRequest(e.to_string()),
            StorageError::Io { .. } | StorageError::CorruptStoredData { .. } => {
                CoreError::Storage(e.to_string())
            }
        }
    }
}
