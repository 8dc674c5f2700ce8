//! The replicated cluster metadata: [`ClusterState`], the commands that change it and their
//! results.
//!
//! `apply` must be deterministic: every node applies the same committed commands in the same
//! order and must reach the same state and the same [`CommandResult`]. So nothing in here reads
//! a clock, a random source or the environment; ids (topic uuids) come inside the command, and
//! the only "time" is the Raft log index passed in by the caller.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Kafka broker id (`node.id`), the type Kafka uses for replicas, leaders and ISR members.
pub type BrokerId = i32;

/// Leader value meaning "no leader" (Kafka's `-1`).
pub const NO_LEADER: BrokerId = -1;

/// The whole replicated metadata document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    pub brokers: BTreeMap<BrokerId, BrokerRegistration>,
    pub topics: BTreeMap<String, TopicState>,
}

/// A broker's registration: where Kafka clients reach it and whether it may lead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub broker_id: BrokerId,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    /// A fenced broker is registered but must not be chosen as a leader. Liveness
    /// (heartbeats) will drive this later; for now only `FenceBroker`/`UnfenceBroker` do.
    pub fenced: bool,
    /// Raft log index of the registration record, as KRaft's broker epoch: it grows on every
    /// re-registration, so a stale incarnation of a broker can be told apart.
    pub broker_epoch: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicState {
    pub name: String,
    pub id: Uuid,
    /// Topic-level config overrides (Kafka key names).
    pub configs: BTreeMap<String, String>,
    /// Indexed by partition id.
    pub partitions: Vec<PartitionState>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    pub replicas: Vec<BrokerId>,
    /// [`NO_LEADER`] when there is none.
    pub leader: BrokerId,
    pub leader_epoch: i32,
    pub isr: Vec<BrokerId>,
    /// Bumped on every leader or ISR change; `ChangeIsr` compares against it (Kafka's
    /// AlterPartition partition epoch).
    pub partition_epoch: i32,
}

/// Replica placement of one new partition; the first replica is the preferred leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionAssignment {
    pub replicas: Vec<BrokerId>,
}

/// A change to the cluster metadata, proposed through Raft.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataCommand {
    /// Registers (or re-registers) a broker, unfenced.
    RegisterBroker {
        broker_id: BrokerId,
        host: String,
        port: u16,
        rack: Option<String>,
    },
    UnregisterBroker {
        broker_id: BrokerId,
    },
    FenceBroker {
        broker_id: BrokerId,
    },
    UnfenceBroker {
        broker_id: BrokerId,
    },
    /// Each partition starts with its first replica as leader, all replicas in the ISR and
    /// epochs 0.
    CreateTopic {
        name: String,
        id: Uuid,
        partitions: Vec<PartitionAssignment>,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
    },
    /// Appends partitions after the existing ones.
    CreatePartitions {
        topic: String,
        new_partitions: Vec<PartitionAssignment>,
    },
    /// Sets then deletes config overrides.
    AlterTopicConfigs {
        topic: String,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    },
    /// Replaces the ISR if `expected_partition_epoch` is current (compare-and-set).
    ChangeIsr {
        topic: String,
        partition: i32,
        expected_partition_epoch: i32,
        new_isr: Vec<BrokerId>,
    },
    /// Makes `new_leader` the leader (or [`NO_LEADER`]) and bumps the leader epoch. The new
    /// leader must be in the ISR unless `allow_unclean`; an unclean leader becomes the sole
    /// ISR member.
    ElectLeader {
        topic: String,
        partition: i32,
        new_leader: BrokerId,
        allow_unclean: bool,
    },
}

/// Outcome of applying one command. Errors are results, not failures: the command was
/// committed and every node rejected it the same way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    Ok,
    TopicExists { name: String },
    TopicIdExists { id: Uuid },
    UnknownTopic { name: String },
    UnknownPartition { topic: String, partition: i32 },
    UnknownBroker { broker_id: BrokerId },
    InvalidReplicaAssignment { reason: String },
    InvalidIsr { reason: String },
    InvalidRequest { reason: String },
    StaleEpoch { current_partition_epoch: i32 },
    NotInIsr { broker_id: BrokerId },
    NotAReplica { broker_id: BrokerId },
}

impl CommandResult {
    pub fn is_ok(&self) -> bool {
        matches!(self, CommandResult::Ok)
    }
}

impl ClusterState {
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionState> {
        let p = usize::try_from(partition).ok()?;
        self.topics.get(topic)?.partitions.get(p)
    }

    /// Applies one committed command. `log_index` is the command's Raft log index.
    pub fn apply(&mut self, cmd: &MetadataCommand, log_index: u64) -> CommandResult {
        match self.try_apply(cmd, log_index) {
            Ok(()) => CommandResult::Ok,
            Err(e) => e,
        }
    }

    // Validates everything before mutating, so a rejected command changes nothing.
    fn try_apply(&mut self, cmd: &MetadataCommand, log_index: u64) -> Result<(), CommandResult> {
        match cmd {
            MetadataCommand::RegisterBroker {
                broker_id,
                host,
                port,
                rack,
            } => {
                if *broker_id < 0 {
                    return Err(invalid(format!("broker id {broker_id} is negative")));
                }
                self.brokers.insert(
                    *broker_id,
                    BrokerRegistration {
                        broker_id: *broker_id,
                        host: host.clone(),
                        port: *port,
                        rack: rack.clone(),
                        fenced: false,
                        broker_epoch: log_index,
                    },
                );
            }
            MetadataCommand::UnregisterBroker { broker_id } => {
                self.brokers
                    .remove(broker_id)
                    .ok_or(CommandResult::UnknownBroker {
                        broker_id: *broker_id,
                    })?;
            }
            MetadataCommand::FenceBroker { broker_id }
            | MetadataCommand::UnfenceBroker { broker_id } => {
                let b = self
                    .brokers
                    .get_mut(broker_id)
                    .ok_or(CommandResult::UnknownBroker {
                        broker_id: *broker_id,
                    })?;
                b.fenced = matches!(cmd, MetadataCommand::FenceBroker { .. });
            }
            MetadataCommand::CreateTopic {
                name,
                id,
                partitions,
                configs,
            } => {
                if name.is_empty() {
                    return Err(invalid("topic name is empty".into()));
                }
                if self.topics.contains_key(name) {
                    return Err(CommandResult::TopicExists { name: name.clone() });
                }
                if id.is_nil() {
                    return Err(invalid("topic id is nil".into()));
                }
                if self.topics.values().any(|t| t.id == *id) {
                    return Err(CommandResult::TopicIdExists { id: *id });
                }
                if partitions.is_empty() {
                    return Err(invalid("a topic needs at least one partition".into()));
                }
                let parts = self.new_partitions(partitions)?;
                self.topics.insert(
                    name.clone(),
                    TopicState {
                        name: name.clone(),
                        id: *id,
                        configs: configs.clone(),
                        partitions: parts,
                    },
                );
            }
            MetadataCommand::DeleteTopic { name } => {
                self.topics
                    .remove(name)
                    .ok_or_else(|| CommandResult::UnknownTopic { name: name.clone() })?;
            }
            MetadataCommand::CreatePartitions {
                topic,
                new_partitions,
            } => {
                if !self.topics.contains_key(topic) {
                    return Err(unknown_topic(topic));
                }
                if new_partitions.is_empty() {
                    return Err(invalid("no partitions to add".into()));
                }
                let parts = self.new_partitions(new_partitions)?;
                let t = self.topic_mut(topic)?;
                if t.partitions.len() + parts.len() > i32::MAX as usize {
                    return Err(invalid("too many partitions".into()));
                }
                t.partitions.extend(parts);
            }
            MetadataCommand::AlterTopicConfigs { topic, set, delete } => {
                let t = self.topic_mut(topic)?;
                for (k, v) in set {
                    t.configs.insert(k.clone(), v.clone());
                }
                for k in delete {
                    t.configs.remove(k);
                }
            }
            MetadataCommand::ChangeIsr {
                topic,
                partition,
                expected_partition_epoch,
                new_isr,
            } => {
                let p = self.partition_mut(topic, *partition)?;
                if p.partition_epoch != *expected_partition_epoch {
                    return Err(CommandResult::StaleEpoch {
                        current_partition_epoch: p.partition_epoch,
                    });
                }
                if new_isr.is_empty() {
                    return Err(CommandResult::InvalidIsr {
                        reason: "ISR is empty".into(),
                    });
                }
                if has_duplicates(new_isr) {
                    return Err(CommandResult::InvalidIsr {
                        reason: format!("ISR {new_isr:?} has duplicates"),
                    });
                }
                if let Some(b) = new_isr.iter().find(|b| !p.replicas.contains(b)) {
                    return Err(CommandResult::InvalidIsr {
                        reason: format!("broker {b} is not a replica"),
                    });
                }
                // As in Kafka, the leader never drops itself from the ISR.
                if p.leader != NO_LEADER && !new_isr.contains(&p.leader) {
                    return Err(CommandResult::InvalidIsr {
                        reason: format!("ISR must contain the leader {}", p.leader),
                    });
                }
                p.isr = new_isr.clone();
                p.partition_epoch = p.partition_epoch.wrapping_add(1);
            }
            MetadataCommand::ElectLeader {
                topic,
                partition,
                new_leader,
                allow_unclean,
            } => {
                let p = self.partition_mut(topic, *partition)?;
                if *new_leader != NO_LEADER {
                    if !p.replicas.contains(new_leader) {
                        return Err(CommandResult::NotAReplica {
                            broker_id: *new_leader,
                        });
                    }
                    if !p.isr.contains(new_leader) {
                        if !allow_unclean {
                            return Err(CommandResult::NotInIsr {
                                broker_id: *new_leader,
                            });
                        }
                        // Unclean: the new leader's log is the only truth from now on.
                        p.isr = vec![*new_leader];
                    }
                }
                p.leader = *new_leader;
                p.leader_epoch = p.leader_epoch.wrapping_add(1);
                p.partition_epoch = p.partition_epoch.wrapping_add(1);
            }
        }
        Ok(())
    }

    fn new_partitions(
        &self,
        assignments: &[PartitionAssignment],
    ) -> Result<Vec<PartitionState>, CommandResult> {
        assignments
            .iter()
            .map(|a| {
                if a.replicas.is_empty() {
                    return Err(CommandResult::InvalidReplicaAssignment {
                        reason: "a partition needs at least one replica".into(),
                    });
                }
                if has_duplicates(&a.replicas) {
                    return Err(CommandResult::InvalidReplicaAssignment {
                        reason: format!("replicas {:?} have duplicates", a.replicas),
                    });
                }
                if let Some(b) = a.replicas.iter().find(|b| !self.brokers.contains_key(b)) {
                    return Err(CommandResult::UnknownBroker { broker_id: *b });
                }
                Ok(PartitionState {
                    replicas: a.replicas.clone(),
                    leader: a.replicas[0],
                    leader_epoch: 0,
                    isr: a.replicas.clone(),
                    partition_epoch: 0,
                })
            })
            .collect()
    }

    fn topic_mut(&mut self, topic: &str) -> Result<&mut TopicState, CommandResult> {
        self.topics
            .get_mut(topic)
            .ok_or_else(|| unknown_topic(topic))
    }

    fn partition_mut(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<&mut PartitionState, CommandResult> {
        let t = self.topic_mut(topic)?;
        usize::try_from(partition)
            .ok()
            .and_then(|i| t.partitions.get_mut(i))
            .ok_or_else(|| CommandResult::UnknownPartition {
                topic: topic.to_string(),
                partition,
            })
    }
}

fn has_duplicates(ids: &[BrokerId]) -> bool {
    ids.iter().collect::<BTreeSet<_>>().len() != ids.len()
}

fn invalid(reason: String) -> CommandResult {
    CommandResult::InvalidRequest { reason }
}

fn unknown_topic(topic: &str) -> CommandResult {
    CommandResult::UnknownTopic {
        name: topic.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_brokers(ids: &[BrokerId]) -> ClusterState {
        let mut s = ClusterState::default();
        for (i, id) in ids.iter().enumerate() {
            let r = s.apply(
                &MetadataCommand::RegisterBroker {
                    broker_id: *id,
                    host: "localhost".into(),
                    port: 9092,
                    rack: None,
                },
                i as u64 + 1,
            );
            assert!(r.is_ok());
        }
        s
    }

    fn create(name: &str, replicas: &[&[BrokerId]]) -> MetadataCommand {
        MetadataCommand::CreateTopic {
            name: name.into(),
            id: Uuid::new_v4(),
            partitions: replicas
                .iter()
                .map(|r| PartitionAssignment {
                    replicas: r.to_vec(),
                })
                .collect(),
            configs: BTreeMap::new(),
        }
    }

    #[test]
    fn create_and_delete_topic() {
        let mut s = with_brokers(&[1, 2, 3]);
        assert_eq!(
            s.apply(&create("t", &[&[1, 2, 3], &[2, 3, 1]]), 10),
            CommandResult::Ok
        );
        let p = s.partition("t", 1).unwrap();
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (2, 0, 0));
        assert_eq!(p.isr, vec![2, 3, 1]);
        assert!(matches!(
            s.apply(&create("t", &[&[1]]), 11),
            CommandResult::TopicExists { .. }
        ));
        assert_eq!(
            s.apply(&create("u", &[&[1, 9]]), 12),
            CommandResult::UnknownBroker { broker_id: 9 }
        );
        assert!(matches!(
            s.apply(&create("u", &[&[1, 1]]), 12),
            CommandResult::InvalidReplicaAssignment { .. }
        ));
        assert!(!s.topics.contains_key("u"));
        let del = MetadataCommand::DeleteTopic { name: "t".into() };
        assert_eq!(s.apply(&del, 13), CommandResult::Ok);
        assert!(matches!(
            s.apply(&del, 14),
            CommandResult::UnknownTopic { .. }
        ));
    }

    #[test]
    fn change_isr_is_compare_and_set() {
        let mut s = with_brokers(&[1, 2, 3]);
        s.apply(&create("t", &[&[1, 2, 3]]), 10);
        let change = |epoch, isr: &[BrokerId]| MetadataCommand::ChangeIsr {
            topic: "t".into(),
            partition: 0,
            expected_partition_epoch: epoch,
            new_isr: isr.to_vec(),
        };
        assert_eq!(s.apply(&change(0, &[1, 2]), 11), CommandResult::Ok);
        assert_eq!(s.partition("t", 0).unwrap().partition_epoch, 1);
        assert_eq!(
            s.apply(&change(0, &[1]), 12),
            CommandResult::StaleEpoch {
                current_partition_epoch: 1
            }
        );
        assert!(matches!(
            s.apply(&change(1, &[2]), 13),
            CommandResult::InvalidIsr { .. }
        ));
        assert!(matches!(
            s.apply(&change(1, &[1, 7]), 13),
            CommandResult::InvalidIsr { .. }
        ));
        assert_eq!(s.partition("t", 0).unwrap().isr, vec![1, 2]);
        assert!(matches!(
            s.apply(
                &MetadataCommand::ChangeIsr {
                    topic: "t".into(),
                    partition: 5,
                    expected_partition_epoch: 1,
                    new_isr: vec![1],
                },
                14
            ),
            CommandResult::UnknownPartition { .. }
        ));
    }

    #[test]
    fn elect_leader_respects_isr() {
        let mut s = with_brokers(&[1, 2, 3]);
        s.apply(&create("t", &[&[1, 2, 3]]), 10);
        s.apply(
            &MetadataCommand::ChangeIsr {
                topic: "t".into(),
                partition: 0,
                expected_partition_epoch: 0,
                new_isr: vec![1, 2],
            },
            11,
        );
        let elect = |leader, unclean| MetadataCommand::ElectLeader {
            topic: "t".into(),
            partition: 0,
            new_leader: leader,
            allow_unclean: unclean,
        };
        assert_eq!(
            s.apply(&elect(3, false), 12),
            CommandResult::NotInIsr { broker_id: 3 }
        );
        assert_eq!(
            s.apply(&elect(4, true), 12),
            CommandResult::NotAReplica { broker_id: 4 }
        );
        assert_eq!(s.apply(&elect(2, false), 13), CommandResult::Ok);
        let p = s.partition("t", 0).unwrap();
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (2, 1, 2));
        assert_eq!(s.apply(&elect(3, true), 14), CommandResult::Ok);
        let p = s.partition("t", 0).unwrap();
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (3, 2, 3));
        assert_eq!(p.isr, vec![3]);
    }

    #[test]
    fn partitions_and_configs() {
        let mut s = with_brokers(&[1, 2]);
        s.apply(&create("t", &[&[1]]), 10);
        let add = MetadataCommand::CreatePartitions {
            topic: "t".into(),
            new_partitions: vec![PartitionAssignment {
                replicas: vec![2, 1],
            }],
        };
        assert_eq!(s.apply(&add, 11), CommandResult::Ok);
        assert_eq!(s.topics["t"].partitions.len(), 2);
        let alter = MetadataCommand::AlterTopicConfigs {
            topic: "t".into(),
            set: BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]),
            delete: vec![],
        };
        assert_eq!(s.apply(&alter, 12), CommandResult::Ok);
        assert_eq!(s.topics["t"].configs["retention.ms"], "1000");
        let fence = MetadataCommand::FenceBroker { broker_id: 2 };
        assert_eq!(s.apply(&fence, 13), CommandResult::Ok);
        assert!(s.brokers[&2].fenced);
        assert_eq!(s.brokers[&2].broker_epoch, 2);
    }
}
