//! The coordinator's errors. Each is one of Kafka's group error codes; the Kafka layer
//! maps them in its error table (`arctern-kafka`, errors.rs).

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("offset metadata too large")]
    OffsetMetadataTooLarge,
    #[error("the coordinator is loading")]
    CoordinatorLoadInProgress,
    #[error("the coordinator is not available")]
    CoordinatorNotAvailable,
    #[error("this broker is not the group's coordinator")]
    NotCoordinator,
    #[error("illegal generation")]
    IllegalGeneration,
    #[error("inconsistent group protocol")]
    InconsistentGroupProtocol,
    #[error("invalid group id")]
    InvalidGroupId,
    #[error("unknown member id")]
    UnknownMemberId,
    #[error("invalid session timeout")]
    InvalidSessionTimeout,
    #[error("rebalance in progress")]
    RebalanceInProgress,
    #[error("invalid commit offset size")]
    InvalidCommitOffsetSize,
    #[error("the group is not empty")]
    NonEmptyGroup,
    #[error("group id not found")]
    GroupIdNotFound,
    #[error("member id required")]
    MemberIdRequired,
    #[error("fenced instance id")]
    FencedInstanceId,
    #[error("the group is subscribed to the topic")]
    GroupSubscribedToTopic,
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
}
