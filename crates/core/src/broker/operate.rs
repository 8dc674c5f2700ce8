//! What Kafka's operator tools and UIs ask a broker: the replicas in its log directory with
//! their sizes (DescribeLogDirs), and leader elections on demand (ElectLeaders).

use std::collections::BTreeMap;
use std::path::PathBuf;

use arctern_metadata::{
    ClusterState, CommandResult, MetadataCommand, PartitionState, LEADER_FOLLOWS_CONFIG, NO_LEADER,
};

use super::Broker;

/// One replica hosted in this broker's log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaUsage {
    pub topic: String,
    pub partition: i32,
    /// Bytes of the partition's segment files.
    pub size_bytes: u64,
    /// Kafka's `offset_lag`: how far the log end is behind the high watermark (0 on a
    /// leader; on a follower, what it has yet to copy of what is committed).
    pub offset_lag: i64,
}

/// ElectLeaders' election types (Kafka's `ElectionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionType {
    /// Move leadership to the first replica, if it is live and in sync.
    Preferred,
    /// Give a leaderless partition a leader, from outside the ISR if need be.
    Unclean,
}

/// The outcome of one partition's election, as Kafka reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElectionOutcome {
    Elected,
    /// ELECTION_NOT_NEEDED: the preferred replica leads already (or, unclean, a live
    /// leader exists).
    NotNeeded,
    /// PREFERRED_LEADER_NOT_AVAILABLE: the preferred replica is fenced or out of the ISR.
    PreferredNotAvailable(String),
    /// ELIGIBLE_LEADERS_NOT_AVAILABLE: no live replica to elect.
    EligibleNotAvailable(String),
    UnknownPartition,
    /// The metadata quorum could not commit the change (retriable for the client).
    Failed(String),
}

/// Who should lead a partition of a topic with `configs`: the first replica, or for a
/// topic whose leadership follows another (`leader.follows`, AMQP's queues of one vhost),
/// the followed topic's leader, as the controller keeps them.
fn preferred_replica(
    state: &ClusterState,
    configs: &BTreeMap<String, String>,
    p: &PartitionState,
) -> Result<i32, ElectionOutcome> {
    match configs.get(LEADER_FOLLOWS_CONFIG) {
        Some(followed) => state.followed_leader(configs).ok_or_else(|| {
            ElectionOutcome::PreferredNotAvailable(format!(
                "leadership follows topic {followed}, which has no live leader"
            ))
        }),
        None => p.replicas.first().copied().ok_or_else(|| {
            ElectionOutcome::PreferredNotAvailable("the partition has no replicas".into())
        }),
    }
}

/// The election to propose for `p` under `state`, or the reason there is none.
fn plan(
    state: &ClusterState,
    configs: &BTreeMap<String, String>,
    p: &PartitionState,
    kind: ElectionType,
) -> Result<(i32, bool), ElectionOutcome> {
    match kind {
        ElectionType::Preferred => {
            let preferred = preferred_replica(state, configs, p)?;
            if p.leader == preferred {
                return Err(ElectionOutcome::NotNeeded);
            }
            if !p.replicas.contains(&preferred) || !state.is_unfenced(preferred) {
                return Err(ElectionOutcome::PreferredNotAvailable(format!(
                    "preferred replica {preferred} is not alive"
                )));
            }
            if !p.isr.contains(&preferred) {
                return Err(ElectionOutcome::PreferredNotAvailable(format!(
                    "preferred replica {preferred} is not in the ISR {:?}",
                    p.isr
                )));
            }
            Ok((preferred, false))
        }
        ElectionType::Unclean => {
            if p.leader != NO_LEADER && state.is_unfenced(p.leader) {
                return Err(ElectionOutcome::NotNeeded);
            }
            // An ISR member first: electing it loses nothing.
            let live = |b: &&i32| state.is_unfenced(**b);
            if let Some(&b) = p.replicas.iter().filter(|b| p.isr.contains(b)).find(live) {
                return Ok((b, false));
            }
            match p.replicas.iter().find(live) {
                Some(&b) => Ok((b, true)),
                None => Err(ElectionOutcome::EligibleNotAvailable(format!(
                    "no live replica among {:?}",
                    p.replicas
                ))),
            }
        }
    }
}

impl Broker {
    /// The data directory as an absolute path (DescribeLogDirs' `log_dir`).
    pub fn log_dir(&self) -> PathBuf {
        std::path::absolute(&self.config.data_dir).unwrap_or_else(|_| self.config.data_dir.clone())
    }

    /// Every replica open on this broker with its size, ordered by topic and partition.
    pub fn replica_usage(&self) -> Vec<ReplicaUsage> {
        let mut out: Vec<ReplicaUsage> = self
            .local_partitions()
            .into_iter()
            .filter_map(|p| {
                let size_bytes = p.size_bytes().ok()?;
                let end = p.log_end_offset().ok()?;
                Some(ReplicaUsage {
                    topic: p.topic.clone(),
                    partition: p.index,
                    size_bytes,
                    offset_lag: (p.high_watermark() - end).max(0),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        out
    }

    /// Every partition of the cluster (ElectLeaders with no partitions named).
    pub fn all_partitions(&self) -> Vec<(String, i32)> {
        let state = self.cluster();
        state
            .topics
            .iter()
            .flat_map(|(name, t)| {
                (0..t.partitions.len())
                    .filter_map(move |i| Some((name.clone(), i32::try_from(i).ok()?)))
            })
            .collect()
    }

    /// ElectLeaders for one partition, proposed through the metadata quorum; returns once
    /// the change is committed (or refused).
    pub async fn elect_leader(
        &self,
        topic: &str,
        partition: i32,
        kind: ElectionType,
    ) -> ElectionOutcome {
        let state = self.cluster();
        let (Some(t), Some(p)) = (state.topics.get(topic), state.partition(topic, partition))
        else {
            return ElectionOutcome::UnknownPartition;
        };
        let (new_leader, allow_unclean) = match plan(&state, &t.configs, p, kind) {
            Ok(v) => v,
            Err(outcome) => return outcome,
        };
        let cmd = MetadataCommand::ElectLeader {
            topic: topic.to_string(),
            partition,
            new_leader,
            allow_unclean,
        };
        match self.metadata.propose(cmd).await {
            Ok(CommandResult::Ok) => {
                tracing::info!(
                    topic,
                    partition,
                    new_leader,
                    ?kind,
                    "leader elected on request"
                );
                ElectionOutcome::Elected
            }
            Ok(CommandResult::UnknownTopic { .. } | CommandResult::UnknownPartition { .. }) => {
                ElectionOutcome::UnknownPartition
            }
            // The state moved between the plan and the commit.
            Ok(refused @ (CommandResult::NotInIsr { .. } | CommandResult::BrokerFenced { .. })) => {
                let reason = format!("{refused:?}");
                match kind {
                    ElectionType::Preferred => ElectionOutcome::PreferredNotAvailable(reason),
                    ElectionType::Unclean => ElectionOutcome::EligibleNotAvailable(reason),
                }
            }
            Ok(other) => {
                ElectionOutcome::Failed(format!("metadata refused the election: {other:?}"))
            }
            Err(e) => ElectionOutcome::Failed(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(replicas: &[i32], leader: i32, isr: &[i32]) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            leader,
            leader_epoch: 3,
            isr: isr.to_vec(),
            partition_epoch: 5,
        }
    }

    fn state_with_live(live: &[i32]) -> ClusterState {
        let mut s = ClusterState::default();
        for (i, &b) in live.iter().enumerate() {
            let cmd = MetadataCommand::RegisterBroker {
                broker_id: b,
                host: "127.0.0.1".into(),
                port: 9092,
                rack: None,
                incarnation: uuid::Uuid::new_v4(),
                listeners: Vec::new(),
            };
            assert_eq!(s.apply(&cmd, i as u64 + 1), CommandResult::Ok);
        }
        s
    }

    #[test]
    fn preferred_election_plans() {
        let none = BTreeMap::new();
        let s = state_with_live(&[1, 2, 3]);
        assert_eq!(
            plan(
                &s,
                &none,
                &partition(&[1, 2, 3], 1, &[1, 2, 3]),
                ElectionType::Preferred
            ),
            Err(ElectionOutcome::NotNeeded)
        );
        assert_eq!(
            plan(
                &s,
                &none,
                &partition(&[1, 2, 3], 2, &[1, 2, 3]),
                ElectionType::Preferred
            ),
            Ok((1, false))
        );
        assert!(matches!(
            plan(
                &s,
                &none,
                &partition(&[1, 2, 3], 2, &[2, 3]),
                ElectionType::Preferred
            ),
            Err(ElectionOutcome::PreferredNotAvailable(_))
        ));
        let s = state_with_live(&[2, 3]);
        assert!(matches!(
            plan(
                &s,
                &none,
                &partition(&[1, 2, 3], 2, &[1, 2, 3]),
                ElectionType::Preferred
            ),
            Err(ElectionOutcome::PreferredNotAvailable(_))
        ));
    }

    #[test]
    fn unclean_election_plans() {
        let none = BTreeMap::new();
        let s = state_with_live(&[2, 3]);
        assert_eq!(
            plan(
                &s,
                &none,
                &partition(&[1, 2], 2, &[2]),
                ElectionType::Unclean
            ),
            Err(ElectionOutcome::NotNeeded)
        );
        // Leaderless; the ISR holds only a dead replica: a live one outside it is elected.
        assert_eq!(
            plan(
                &s,
                &none,
                &partition(&[1, 2], NO_LEADER, &[1]),
                ElectionType::Unclean
            ),
            Ok((2, true))
        );
        // A live ISR member is preferred over one outside.
        assert_eq!(
            plan(
                &s,
                &none,
                &partition(&[2, 3], NO_LEADER, &[3]),
                ElectionType::Unclean
            ),
            Ok((3, false))
        );
        assert!(matches!(
            plan(
                &s,
                &none,
                &partition(&[1, 4], NO_LEADER, &[1]),
                ElectionType::Unclean
            ),
            Err(ElectionOutcome::EligibleNotAvailable(_))
        ));
    }

    #[test]
    fn a_following_topic_prefers_the_leader_of_the_topic_it_follows() {
        let mut s = state_with_live(&[1, 2, 3]);
        let followed = arctern_metadata::TopicState {
            name: "home".into(),
            id: uuid::Uuid::new_v4(),
            configs: BTreeMap::new(),
            partitions: vec![partition(&[1, 2, 3], 2, &[1, 2, 3])],
        };
        s.topics.insert("home".into(), followed);
        let follows = BTreeMap::from([(LEADER_FOLLOWS_CONFIG.to_string(), "home".to_string())]);
        let p = partition(&[1, 2, 3], 1, &[1, 2, 3]);
        assert_eq!(
            plan(&s, &follows, &p, ElectionType::Preferred),
            Ok((2, false))
        );
        let p = partition(&[1, 2, 3], 2, &[1, 2, 3]);
        assert_eq!(
            plan(&s, &follows, &p, ElectionType::Preferred),
            Err(ElectionOutcome::NotNeeded)
        );
    }
}
