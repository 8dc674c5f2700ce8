//! The one table from core errors to Kafka error codes.

use arctern_core::CoreError;
use arctern_groups::GroupError;
use arctern_kafka_wire::ResponseError;

/// The group coordinator's errors (each is one of Kafka's group error codes).
pub fn group_error_code(e: GroupError) -> i16 {
    let code = match e {
        GroupError::OffsetMetadataTooLarge => ResponseError::OffsetMetadataTooLarge,
        GroupError::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
        GroupError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        GroupError::NotCoordinator => ResponseError::NotCoordinator,
        GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
        GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
        GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
        GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        GroupError::InvalidCommitOffsetSize => ResponseError::InvalidCommitOffsetSize,
        GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup,
        GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound,
        GroupError::MemberIdRequired => ResponseError::MemberIdRequired,
        GroupError::FencedInstanceId => ResponseError::FencedInstanceId,
        GroupError::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
        GroupError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
    };
    code.code()
}

pub fn error_code(e: &CoreError) -> i16 {
    let code = match e {
        CoreError::UnknownTopicOrPartition(_) => ResponseError::UnknownTopicOrPartition,
        CoreError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
        CoreError::InvalidTopic(_) => ResponseError::InvalidTopicException,
        CoreError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        CoreError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        CoreError::InvalidConfig(_) => ResponseError::InvalidConfig,
        CoreError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
        CoreError::InvalidRequest(_) => ResponseError::InvalidRequest,
        CoreError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        CoreError::RecordBatchTooLarge(_) => ResponseError::RecordListTooLarge,
        CoreError::CorruptMessage(_) => ResponseError::CorruptMessage,
        CoreError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        CoreError::Storage(_) => ResponseError::KafkaStorageError,
        CoreError::ShuttingDown => ResponseError::NotLeaderOrFollower,
        CoreError::NotLeaderOrFollower(_) => ResponseError::NotLeaderOrFollower,
        CoreError::LeaderNotAvailable(_) => ResponseError::LeaderNotAvailable,
        CoreError::NotEnoughReplicas(_) => ResponseError::NotEnoughReplicas,
        CoreError::NotEnoughReplicasAfterAppend(_) => ResponseError::NotEnoughReplicasAfterAppend,
        CoreError::FencedLeaderEpoch(_) => ResponseError::FencedLeaderEpoch,
        CoreError::UnknownLeaderEpoch(_) => ResponseError::UnknownLeaderEpoch,
        // Retriable for clients (admin calls and produce retry on it).
        CoreError::MetadataUnavailable(_) => ResponseError::RequestTimedOut,
    };
    code.code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_codes_match_the_kafka_protocol_table() {
        assert_eq!(group_error_code(GroupError::OffsetMetadataTooLarge), 12);
        assert_eq!(group_error_code(GroupError::CoordinatorLoadInProgress), 14);
        assert_eq!(group_error_code(GroupError::CoordinatorNotAvailable), 15);
        assert_eq!(group_error_code(GroupError::NotCoordinator), 16);
        assert_eq!(group_error_code(GroupError::IllegalGeneration), 22);
        assert_eq!(group_error_code(GroupError::InconsistentGroupProtocol), 23);
        assert_eq!(group_error_code(GroupError::UnknownMemberId), 25);
        assert_eq!(group_error_code(GroupError::InvalidSessionTimeout), 26);
        assert_eq!(group_error_code(GroupError::RebalanceInProgress), 27);
        assert_eq!(group_error_code(GroupError::InvalidCommitOffsetSize), 28);
        assert_eq!(group_error_code(GroupError::NonEmptyGroup), 68);
        assert_eq!(group_error_code(GroupError::GroupIdNotFound), 69);
        assert_eq!(group_error_code(GroupError::MemberIdRequired), 79);
        assert_eq!(group_error_code(GroupError::FencedInstanceId), 82);
        assert_eq!(group_error_code(GroupError::GroupSubscribedToTopic), 86);
    }

    #[test]
    fn codes_match_the_kafka_protocol_table() {
        assert_eq!(
            error_code(&CoreError::UnknownTopicOrPartition("t".into())),
            3
        );
        assert_eq!(error_code(&CoreError::CorruptMessage("crc".into())), 2);
        assert_eq!(
            error_code(&CoreError::MessageTooLarge { size: 2, max: 1 }),
            10
        );
        assert_eq!(error_code(&CoreError::InvalidTopic("x".into())), 17);
        assert_eq!(error_code(&CoreError::TopicAlreadyExists("x".into())), 36);
        assert_eq!(
            error_code(&CoreError::OffsetOutOfRange {
                requested: 9,
                start: 0,
                end: 1
            }),
            1
        );
        assert_eq!(error_code(&CoreError::Storage("eio".into())), 56);
        assert_eq!(error_code(&CoreError::NotLeaderOrFollower("x".into())), 6);
        assert_eq!(error_code(&CoreError::NotEnoughReplicas("x".into())), 19);
        assert_eq!(
            error_code(&CoreError::NotEnoughReplicasAfterAppend("x".into())),
            20
        );
        assert_eq!(error_code(&CoreError::FencedLeaderEpoch("x".into())), 74);
    }
}
