//! The replicated cluster metadata: [`ClusterState`], the commands that change it and their
//! results.
//!
//! `apply` must be deterministic: every node applies the same committed commands in the same
//! order and must reach the same state and the same [`CommandResult`]. So nothing in here reads
//! a clock, a random source or the environment; ids (topic uuids) come inside the command, and
//! the only "time" is the Raft log index passed in by the caller.

use std::collections::{BTreeMap, BTreeSet};

pub use imbl::ordmap::DiffItem;
pub use imbl::OrdMap;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Kafka broker id (`node.id`), the type Kafka uses for replicas, leaders and ISR members.
pub type BrokerId = i32;

/// Leader value meaning "no leader" (Kafka's `-1`).
pub const NO_LEADER: BrokerId = -1;

/// Topic config (Arctern's own): every partition of the topic is led by the leader of
/// partition 0 of the named topic whenever that broker is an unfenced member of the
/// partition's ISR. Creation, fencing, elections of the followed topic and the controller
/// all keep to it, and the controller never moves a followed or following topic to its
/// preferred replica. AMQP uses it so that one node leads every queue of the vhost.
pub const LEADER_FOLLOWS_CONFIG: &str = "leader.follows";

/// The whole replicated metadata document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    pub brokers: BTreeMap<BrokerId, BrokerRegistration>,
    /// Persistent map: publishing the state after each command clones it in O(1), and the
    /// broker finds the changed topics with `OrdMap::diff` (see `Broker::reconcile_now`).
    pub topics: OrdMap<String, TopicState>,
    /// The first producer id not yet handed out (KIP-98 idempotent producers): brokers take
    /// blocks of ids from here, so ids are unique across the cluster and across restarts.
    #[serde(default)]
    pub next_producer_id: i64,
    /// AMQP 0-9-1 durable definitions of the vhost `/` (durable exchanges, durable
    /// queues, bindings between durable ones).
    #[serde(default)]
    pub amqp: AmqpDefinitions,
    /// Dynamic broker configs (Kafka's IncrementalAlterConfigs/AlterConfigs on the BROKER
    /// resource), by resource name: "" = the cluster-wide default, "<id>" = one broker.
    /// Names and values are Kafka's; the broker core validates and interprets them.
    #[serde(default)]
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// The one user database of both protocols: Kafka SASL and AMQP logins check it.
    #[serde(default)]
    pub users: BTreeMap<String, UserRecord>,
    /// Kafka ACLs (CreateAcls/DeleteAcls), checked when an authorizer is configured.
    #[serde(default)]
    pub acls: BTreeSet<arctern_security::acl::AclBinding>,
    /// AMQP virtual hosts. "/" is created by [`MetadataCommand::Initialize`] and cannot be
    /// deleted.
    #[serde(default)]
    pub vhosts: BTreeMap<String, VhostRecord>,
    /// RabbitMQ permissions: vhost -> user -> configure/write/read patterns.
    #[serde(default)]
    pub permissions: BTreeMap<String, BTreeMap<String, Permission>>,
    /// Whether the first start's defaults (the default user, "/") were applied.
    #[serde(default)]
    pub initialized: bool,
    /// AMQP durable definitions of the vhosts other than "/" (whose are `amqp`), by vhost
    /// name. Their `endpoints` stay empty: endpoints are per node, kept in `amqp`.
    #[serde(default)]
    pub amqp_vhosts: BTreeMap<String, AmqpDefinitions>,
}

impl ClusterState {
    /// The durable AMQP definitions of `vhost` (None: none yet, or no such vhost).
    pub fn amqp_definitions(&self, vhost: &str) -> Option<&AmqpDefinitions> {
        if vhost == DEFAULT_VHOST {
            Some(&self.amqp)
        } else {
            self.amqp_vhosts.get(vhost)
        }
    }
}

fn default_vhost_name() -> String {
    DEFAULT_VHOST.to_string()
}

pub use arctern_security::ScramCredential;

/// The vhost every node has.
pub const DEFAULT_VHOST: &str = "/";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VhostRecord {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// RabbitMQ's three permission regexes of one user in one vhost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    pub configure: String,
    pub write: String,
    pub read: String,
}

impl Permission {
    /// `.*` for all three.
    pub fn full() -> Permission {
        Permission {
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        }
    }
}

impl UserRecord {
    /// A user with `password`: RabbitMQ's hash plus SCRAM-SHA-256 and SCRAM-SHA-512
    /// credentials, so it logs in over either protocol with any mechanism.
    pub fn with_password(password: &str, tags: Vec<String>) -> UserRecord {
        use arctern_security::scram::{ScramMechanism, DEFAULT_ITERATIONS};
        UserRecord {
            password_hash: Some(arctern_security::password::hash_password(password)),
            scram: ScramMechanism::ALL
                .iter()
                .map(|m| {
                    (
                        m.name().to_string(),
                        m.derive_fresh(password, DEFAULT_ITERATIONS),
                    )
                })
                .collect(),
            tags,
        }
    }

    /// Whether `password` is this user's: against the password hash if there is one, else
    /// against any SCRAM credential.
    pub fn check_password(&self, password: &str) -> bool {
        if let Some(hash) = &self.password_hash {
            return arctern_security::password::verify_password(hash, password);
        }
        self.scram.iter().any(|(name, cred)| {
            arctern_security::ScramMechanism::parse(name)
                .is_some_and(|m| m.verify_password(cred, password))
        })
    }
}

/// A user. Never a password: a salted hash for PLAIN-style logins and SCRAM credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// RabbitMQ's `rabbit_password_hashing_sha256` form:
    /// base64(salt (4 bytes) ++ sha256(salt ++ password)). `None`: only SCRAM credentials
    /// (a user made with Kafka's AlterUserScramCredentials).
    #[serde(default)]
    pub password_hash: Option<String>,
    /// SCRAM credentials by mechanism ("SCRAM-SHA-256", "SCRAM-SHA-512"), RFC 5802.
    #[serde(default)]
    pub scram: BTreeMap<String, ScramCredential>,
    /// RabbitMQ user tags (administrator, monitoring, management, ...).
    #[serde(default)]
    pub tags: Vec<String>,
}

/// The AMQP definitions the metadata keeps. Protocol details stay opaque: argument tables
/// are the AMQP session's own encoding (a JSON string), exchange types are names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmqpDefinitions {
    pub exchanges: BTreeMap<String, AmqpExchangeDef>,
    pub queues: OrdMap<String, AmqpQueueDef>,
    pub bindings: BTreeSet<AmqpBindingDef>,
    /// Where each broker accepts AMQP connections (`host:port`), so any node can forward a
    /// client to the node serving the vhost.
    #[serde(default)]
    pub endpoints: BTreeMap<BrokerId, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmqpExchangeDef {
    pub kind: String,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmqpQueueDef {
    /// The single-partition topic holding the queue's log.
    pub topic: String,
    pub auto_delete: bool,
    pub arguments: String,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AmqpBindingDef {
    pub exchange: String,
    pub queue: String,
    pub key: String,
    /// Binding arguments, opaque (the AMQP session's JSON).
    #[serde(default)]
    pub arguments: String,
    /// `queue` names a destination exchange (exchange-to-exchange binding).
    #[serde(default)]
    pub to_exchange: bool,
}

/// One change to [`AmqpDefinitions`]. Deleting an exchange or queue drops its bindings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AmqpChange {
    PutExchange {
        name: String,
        def: AmqpExchangeDef,
    },
    DeleteExchange {
        name: String,
    },
    PutQueue {
        name: String,
        def: AmqpQueueDef,
    },
    DeleteQueue {
        name: String,
    },
    Bind(AmqpBindingDef),
    Unbind(AmqpBindingDef),
    PutEndpoint {
        broker_id: BrokerId,
        endpoint: String,
    },
}

impl AmqpDefinitions {
    pub fn apply(&mut self, change: &AmqpChange) {
        match change {
            AmqpChange::PutExchange { name, def } => {
                self.exchanges.insert(name.clone(), def.clone());
            }
            AmqpChange::DeleteExchange { name } => {
                self.exchanges.remove(name);
                self.bindings
                    .retain(|b| &b.exchange != name && !(b.to_exchange && &b.queue == name));
            }
            AmqpChange::PutQueue { name, def } => {
                self.queues.insert(name.clone(), def.clone());
            }
            AmqpChange::DeleteQueue { name } => {
                self.queues.remove(name);
                self.bindings.retain(|b| b.to_exchange || &b.queue != name);
            }
            AmqpChange::Bind(b) => {
                self.bindings.insert(b.clone());
            }
            AmqpChange::Unbind(b) => {
                self.bindings.remove(b);
            }
            AmqpChange::PutEndpoint {
                broker_id,
                endpoint,
            } => {
                self.endpoints.insert(*broker_id, endpoint.clone());
            }
        }
    }
}

/// A broker's registration: where Kafka clients reach it and whether it may lead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub broker_id: BrokerId,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    /// A fenced broker is registered but must not lead nor join an ISR. The controller
    /// ([`crate::controller`]) fences a broker whose heartbeats stop and unfences it when
    /// they resume.
    pub fenced: bool,
    /// Raft log index of the registration record, as KRaft's broker epoch: it grows on every
    /// re-registration, so a stale incarnation of a broker can be told apart.
    pub broker_epoch: u64,
    /// Random id the broker process picks at startup (KRaft's incarnation id): the same id
    /// means a retried registration, a different one a restarted process.
    #[serde(default)]
    pub incarnation: Uuid,
    /// One advertised endpoint per listener name (Kafka's `advertised.listeners`); `host`
    /// and `port` are the inter-broker listener's. Empty in records written before
    /// listeners existed: every listener then answers with `host`/`port`.
    #[serde(default)]
    pub listeners: Vec<ListenerEndpoint>,
}

/// Where a broker's listener of one name is reached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerEndpoint {
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl BrokerRegistration {
    /// The endpoint clients of `listener` use, as Kafka answers Metadata with the
    /// endpoints of the listener the request arrived on; `host`/`port` when the broker has
    /// no listener of that name.
    pub fn endpoint(&self, listener: &str) -> (&str, u16) {
        self.listeners
            .iter()
            .find(|l| l.name == listener)
            .map_or((self.host.as_str(), self.port), |l| {
                (l.host.as_str(), l.port)
            })
    }
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
    /// Registers a broker, unfenced. The same `incarnation` again is a retried proposal and a
    /// no-op. A different one is a restarted process: the old incarnation is fenced first
    /// (its leaderships and ISR places move away), then the new one is stored unfenced and
    /// takes the leaderless partitions whose ISR holds it. `broker_epoch` = log index.
    RegisterBroker {
        broker_id: BrokerId,
        host: String,
        port: u16,
        rack: Option<String>,
        #[serde(default)]
        incarnation: Uuid,
        /// Per-listener endpoints (see [`BrokerRegistration::listeners`]).
        #[serde(default)]
        listeners: Vec<ListenerEndpoint>,
    },
    /// Removes a broker, after applying the fencing effects to its partitions.
    UnregisterBroker {
        broker_id: BrokerId,
    },
    /// Marks the broker fenced and moves it out of the way: it leaves every ISR that has other
    /// members, and each partition it leads gets the first unfenced ISR member (in replicas
    /// order) as leader, or [`NO_LEADER`] if there is none (the ISR then keeps its last member,
    /// as in KRaft).
    FenceBroker {
        broker_id: BrokerId,
    },
    /// Marks the broker unfenced; it becomes leader of every leaderless partition whose ISR
    /// contains it.
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
    /// Sets then deletes dynamic broker configs of `resource` ("" = cluster default, or a
    /// broker id); a resource left without configs is removed.
    AlterBrokerConfigs {
        resource: String,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    },
    /// Replaces the ISR, proposed by the partition leader (Kafka's AlterPartition). Rejected
    /// with `FencedLeaderEpoch` unless `leader_id`/`leader_epoch` are the current ones (a
    /// deposed leader), with `StaleEpoch` unless `expected_partition_epoch` is current
    /// (compare-and-set), and with `InvalidIsr` if it adds a fenced or unregistered broker.
    ChangeIsr {
        topic: String,
        partition: i32,
        leader_id: BrokerId,
        leader_epoch: i32,
        expected_partition_epoch: i32,
        new_isr: Vec<BrokerId>,
    },
    /// Makes `new_leader` the leader (or [`NO_LEADER`]) and bumps the leader epoch. The new
    /// leader must be a registered, unfenced replica, and in the ISR unless `allow_unclean`;
    /// an unclean leader becomes the sole ISR member.
    ElectLeader {
        topic: String,
        partition: i32,
        new_leader: BrokerId,
        allow_unclean: bool,
    },
    /// Hands `count` producer ids to a broker (Kafka's AllocateProducerIds); the result is
    /// [`CommandResult::ProducerIds`].
    AllocateProducerIds {
        broker_id: BrokerId,
        count: i64,
    },
    /// Changes the AMQP durable definitions (always succeeds).
    AmqpDefine {
        change: AmqpChange,
        /// The vhost whose definitions change ("/" in entries written before vhosts).
        #[serde(default = "default_vhost_name")]
        vhost: String,
    },
    /// Creates or replaces a user.
    PutUser {
        name: String,
        user: UserRecord,
    },
    /// Removes a user; [`CommandResult::UnknownUser`] if there is none.
    DeleteUser {
        name: String,
    },
    /// Kafka's AlterUserScramCredentials for one user: sets then removes SCRAM credentials
    /// by mechanism. Creates the user if needed; a user left with no credential and no
    /// password hash is removed.
    AlterUserScram {
        name: String,
        upsert: BTreeMap<String, ScramCredential>,
        delete: Vec<String>,
    },
    /// Replaces a user's tags; [`CommandResult::UnknownUser`] if there is none.
    SetUserTags {
        name: String,
        tags: Vec<String>,
    },
    /// Adds Kafka ACLs (an existing one is kept once). Every binding must pass
    /// `acl::validate_new`, or nothing is added ([`CommandResult::InvalidRequest`]).
    CreateAcls {
        bindings: Vec<arctern_security::acl::AclBinding>,
    },
    /// Removes exactly these Kafka ACLs (the proposer resolved its filters against its
    /// state); absent ones are ignored.
    DeleteAcls {
        bindings: Vec<arctern_security::acl::AclBinding>,
    },
    /// The first start's defaults: creates "/" and, unless a user database exists, these
    /// users and permissions. Applied once; later proposals are no-ops.
    Initialize {
        users: BTreeMap<String, UserRecord>,
        permissions: BTreeMap<String, BTreeMap<String, Permission>>,
    },
    /// Creates or updates a vhost.
    PutVhost {
        name: String,
        record: VhostRecord,
    },
    /// Deletes a vhost and every permission in it ("/" cannot be deleted).
    DeleteVhost {
        name: String,
    },
    /// Sets a user's permissions in a vhost (both must exist).
    SetPermissions {
        vhost: String,
        user: String,
        permission: Permission,
    },
    /// Removes a user's permissions in a vhost.
    ClearPermissions {
        vhost: String,
        user: String,
    },
}

/// Outcome of applying one command. Errors are results, not failures: the command was
/// committed and every node rejected it the same way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    Ok,
    TopicExists {
        name: String,
    },
    TopicIdExists {
        id: Uuid,
    },
    UnknownTopic {
        name: String,
    },
    UnknownPartition {
        topic: String,
        partition: i32,
    },
    UnknownBroker {
        broker_id: BrokerId,
    },
    InvalidReplicaAssignment {
        reason: String,
    },
    InvalidIsr {
        reason: String,
    },
    InvalidRequest {
        reason: String,
    },
    StaleEpoch {
        current_partition_epoch: i32,
    },
    /// A `ChangeIsr` from someone who is not (or no longer) the leader at this leader epoch.
    FencedLeaderEpoch {
        current_leader: BrokerId,
        current_leader_epoch: i32,
    },
    /// The broker is fenced and cannot be elected.
    BrokerFenced {
        broker_id: BrokerId,
    },
    NotInIsr {
        broker_id: BrokerId,
    },
    NotAReplica {
        broker_id: BrokerId,
    },
    UnknownUser {
        name: String,
    },
    UnknownVhost {
        name: String,
    },
    /// The block `[first, first + count)` now belongs to the proposing broker.
    ProducerIds {
        first: i64,
        count: i64,
    },
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
        if let MetadataCommand::AllocateProducerIds { count, .. } = cmd {
            if !(1..=1_000_000).contains(count) {
                return invalid(format!("cannot allocate {count} producer ids"));
            }
            let first = self.next_producer_id;
            self.next_producer_id = first.saturating_add(*count);
            return CommandResult::ProducerIds {
                first,
                count: *count,
            };
        }
        match self.try_apply(cmd, log_index) {
            Ok(()) => CommandResult::Ok,
            Err(e) => e,
        }
    }

    // Validates everything before mutating, so a rejected command changes nothing.
    fn try_apply(&mut self, cmd: &MetadataCommand, log_index: u64) -> Result<(), CommandResult> {
        match cmd {
            // Has a result of its own; see `apply`.
            MetadataCommand::AllocateProducerIds { .. } => {}
            MetadataCommand::AmqpDefine { change, vhost } => {
                if vhost == DEFAULT_VHOST {
                    self.amqp.apply(change);
                } else if self.vhosts.contains_key(vhost) {
                    self.amqp_vhosts
                        .entry(vhost.clone())
                        .or_default()
                        .apply(change);
                }
                // A change to a vhost deleted meanwhile (a late declare of one of its
                // connections) is dropped: its definitions went with it.
            }
            MetadataCommand::PutUser { name, user } => {
                if name.is_empty() {
                    return Err(invalid("a user name must not be empty".to_string()));
                }
                self.users.insert(name.clone(), user.clone());
            }
            MetadataCommand::DeleteUser { name } => {
                if self.users.remove(name).is_none() {
                    return Err(CommandResult::UnknownUser { name: name.clone() });
                }
                for users in self.permissions.values_mut() {
                    users.remove(name);
                }
            }
            MetadataCommand::Initialize { users, permissions } => {
                if self.initialized {
                    return Ok(());
                }
                self.initialized = true;
                self.vhosts.entry(DEFAULT_VHOST.to_string()).or_default();
                if self.users.is_empty() {
                    self.users.extend(users.clone());
                    for (vhost, perms) in permissions {
                        if self.vhosts.contains_key(vhost) {
                            self.permissions
                                .entry(vhost.clone())
                                .or_default()
                                .extend(perms.clone());
                        }
                    }
                }
            }
            MetadataCommand::PutVhost { name, record } => {
                if name.is_empty() {
                    return Err(invalid("a vhost name must not be empty".to_string()));
                }
                self.vhosts.insert(name.clone(), record.clone());
            }
            MetadataCommand::DeleteVhost { name } => {
                if name == DEFAULT_VHOST {
                    return Err(invalid("the vhost \"/\" cannot be deleted".to_string()));
                }
                if self.vhosts.remove(name).is_none() {
                    return Err(CommandResult::UnknownVhost { name: name.clone() });
                }
                self.permissions.remove(name);
                self.amqp_vhosts.remove(name);
            }
            MetadataCommand::SetPermissions {
                vhost,
                user,
                permission,
            } => {
                if !self.vhosts.contains_key(vhost) {
                    return Err(CommandResult::UnknownVhost {
                        name: vhost.clone(),
                    });
                }
                if !self.users.contains_key(user) {
                    return Err(CommandResult::UnknownUser { name: user.clone() });
                }
                self.permissions
                    .entry(vhost.clone())
                    .or_default()
                    .insert(user.clone(), permission.clone());
            }
            MetadataCommand::ClearPermissions { vhost, user } => {
                if let Some(users) = self.permissions.get_mut(vhost) {
                    users.remove(user);
                    if users.is_empty() {
                        self.permissions.remove(vhost);
                    }
                }
            }
            MetadataCommand::AlterUserScram {
                name,
                upsert,
                delete,
            } => {
                if name.is_empty() {
                    return Err(invalid("a user name must not be empty".to_string()));
                }
                let user = self.users.entry(name.clone()).or_default();
                // A new SCRAM credential is a new password (set through Kafka): the hash
                // of the old one must no longer let it in over AMQP.
                if !upsert.is_empty() {
                    user.password_hash = None;
                }
                user.scram
                    .extend(upsert.iter().map(|(m, c)| (m.clone(), c.clone())));
                for m in delete {
                    user.scram.remove(m);
                }
                if user.scram.is_empty() && user.password_hash.is_none() {
                    self.users.remove(name);
                }
            }
            MetadataCommand::CreateAcls { bindings } => {
                for b in bindings {
                    arctern_security::acl::validate_new(b).map_err(invalid)?;
                }
                self.acls.extend(bindings.iter().cloned());
            }
            MetadataCommand::DeleteAcls { bindings } => {
                for b in bindings {
                    self.acls.remove(b);
                }
            }
            MetadataCommand::SetUserTags { name, tags } => match self.users.get_mut(name) {
                Some(user) => user.tags = tags.clone(),
                None => return Err(CommandResult::UnknownUser { name: name.clone() }),
            },
            MetadataCommand::RegisterBroker {
                broker_id,
                host,
                port,
                rack,
                incarnation,
                listeners,
            } => {
                let b = *broker_id;
                if b < 0 {
                    return Err(invalid(format!("broker id {b} is negative")));
                }
                let restarted = match self.brokers.get(&b) {
                    // A retried proposal of a registration that already committed.
                    Some(r) if r.incarnation == *incarnation => return Ok(()),
                    Some(_) => true,
                    None => false,
                };
                self.brokers.insert(
                    b,
                    BrokerRegistration {
                        broker_id: b,
                        host: host.clone(),
                        port: *port,
                        rack: rack.clone(),
                        fenced: false,
                        broker_epoch: log_index,
                        incarnation: *incarnation,
                        listeners: listeners.clone(),
                    },
                );
                // The old process may have led partitions with state the new one lacks: fence
                // it first so every leadership it held gets a new leader epoch.
                self.move_leadership(b, restarted, true);
            }
            MetadataCommand::UnregisterBroker { broker_id } => {
                if !self.brokers.contains_key(broker_id) {
                    return Err(CommandResult::UnknownBroker {
                        broker_id: *broker_id,
                    });
                }
                self.brokers.remove(broker_id);
                self.move_leadership(*broker_id, true, false);
            }
            MetadataCommand::FenceBroker { broker_id }
            | MetadataCommand::UnfenceBroker { broker_id } => {
                let fence = matches!(cmd, MetadataCommand::FenceBroker { .. });
                let b = self
                    .brokers
                    .get_mut(broker_id)
                    .ok_or(CommandResult::UnknownBroker {
                        broker_id: *broker_id,
                    })?;
                b.fenced = fence;
                self.move_leadership(*broker_id, fence, !fence);
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
                let mut parts = self.new_partitions(partitions)?;
                if let Some(l) = self.followed_leader(configs) {
                    for p in parts.iter_mut().filter(|p| p.replicas.contains(&l)) {
                        p.leader = l;
                    }
                }
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
            MetadataCommand::AlterBrokerConfigs {
                resource,
                set,
                delete,
            } => {
                let configs = self.broker_configs.entry(resource.clone()).or_default();
                for (k, v) in set {
                    configs.insert(k.clone(), v.clone());
                }
                for k in delete {
                    configs.remove(k);
                }
                if configs.is_empty() {
                    self.broker_configs.remove(resource);
                }
            }
            MetadataCommand::ChangeIsr {
                topic,
                partition,
                leader_id,
                leader_epoch,
                expected_partition_epoch,
                new_isr,
            } => {
                if !self.topics.contains_key(topic) {
                    return Err(unknown_topic(topic));
                }
                let p = self
                    .partition(topic, *partition)
                    .ok_or_else(|| unknown_partition(topic, *partition))?;
                if p.leader != *leader_id || p.leader_epoch != *leader_epoch {
                    return Err(CommandResult::FencedLeaderEpoch {
                        current_leader: p.leader,
                        current_leader_epoch: p.leader_epoch,
                    });
                }
                if p.partition_epoch != *expected_partition_epoch {
                    return Err(CommandResult::StaleEpoch {
                        current_partition_epoch: p.partition_epoch,
                    });
                }
                // Only a leader changes the ISR; a leaderless one changes by election.
                if p.leader == NO_LEADER {
                    return Err(invalid(format!(
                        "partition {topic}-{partition} has no leader"
                    )));
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
                if !new_isr.contains(&p.leader) {
                    return Err(CommandResult::InvalidIsr {
                        reason: format!("ISR must contain the leader {}", p.leader),
                    });
                }
                // A fenced broker may still be fetching, but must not count toward acks=all.
                if let Some(b) = new_isr
                    .iter()
                    .find(|b| !p.isr.contains(b) && !self.is_unfenced(**b))
                {
                    return Err(CommandResult::InvalidIsr {
                        reason: format!("broker {b} is fenced or not registered"),
                    });
                }
                let p = self.partition_mut(topic, *partition)?;
                p.isr = new_isr.clone();
                p.partition_epoch = p.partition_epoch.wrapping_add(1);
            }
            MetadataCommand::ElectLeader {
                topic,
                partition,
                new_leader,
                allow_unclean,
            } => {
                let leader_state = self.brokers.get(new_leader).map(|b| b.fenced);
                let p = self.partition_mut(topic, *partition)?;
                if *new_leader != NO_LEADER {
                    if !p.replicas.contains(new_leader) {
                        return Err(CommandResult::NotAReplica {
                            broker_id: *new_leader,
                        });
                    }
                    match leader_state {
                        None => {
                            return Err(CommandResult::UnknownBroker {
                                broker_id: *new_leader,
                            })
                        }
                        Some(true) => {
                            return Err(CommandResult::BrokerFenced {
                                broker_id: *new_leader,
                            })
                        }
                        Some(false) => {}
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
                // Topics following this one move in the same command, so they are never
                // led apart by this election.
                if *partition == 0 && *new_leader != NO_LEADER {
                    let l = *new_leader;
                    // Only the followers are touched, so the rest stays shared with the
                    // previous state.
                    let followers: Vec<String> = self
                        .topics
                        .values()
                        .filter(|t| t.configs.get(LEADER_FOLLOWS_CONFIG) == Some(topic))
                        .map(|t| t.name.clone())
                        .collect();
                    for name in &followers {
                        let Some(t) = self.topics.get_mut(name) else {
                            continue;
                        };
                        for p in t
                            .partitions
                            .iter_mut()
                            .filter(|p| p.leader != l && p.isr.contains(&l))
                        {
                            p.leader = l;
                            p.leader_epoch = p.leader_epoch.wrapping_add(1);
                            p.partition_epoch = p.partition_epoch.wrapping_add(1);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Registered and not fenced: may lead and join ISRs.
    pub fn is_unfenced(&self, broker_id: BrokerId) -> bool {
        self.brokers.get(&broker_id).is_some_and(|b| !b.fenced)
    }

    /// The broker that should lead a topic with these configs under
    /// [`LEADER_FOLLOWS_CONFIG`]: the unfenced leader of the followed topic's partition 0.
    pub fn followed_leader(&self, configs: &BTreeMap<String, String>) -> Option<BrokerId> {
        let followed = configs.get(LEADER_FOLLOWS_CONFIG)?;
        let l = self.topics.get(followed)?.partitions.first()?.leader;
        (l != NO_LEADER && self.is_unfenced(l)).then_some(l)
    }

    // Fencing and/or unfencing effects of broker `b` on every partition it replicates. Both
    // in one pass so a partition's epochs bump at most once per command. Followed topics
    // go first, so that following ones can pick the same new leader.
    fn move_leadership(&mut self, b: BrokerId, fence: bool, unfence: bool) {
        self.move_leadership_of(b, fence, unfence, false);
        self.move_leadership_of(b, fence, unfence, true);
    }

    fn move_leadership_of(&mut self, b: BrokerId, fence: bool, unfence: bool, following: bool) {
        let preferred: BTreeMap<String, BrokerId> = if following {
            self.topics
                .values()
                .filter_map(|t| Some((t.name.clone(), self.followed_leader(&t.configs)?)))
                .collect()
        } else {
            BTreeMap::new()
        };
        let brokers = &self.brokers;
        let live = |id: BrokerId| id != b && brokers.get(&id).is_some_and(|r| !r.fenced);
        // Only the topics with a replica on `b` are touched, so the rest stays shared with
        // the previous state.
        let touched: Vec<String> = self
            .topics
            .values()
            .filter(|t| t.configs.contains_key(LEADER_FOLLOWS_CONFIG) == following)
            .filter(|t| t.partitions.iter().any(|p| p.replicas.contains(&b)))
            .map(|t| t.name.clone())
            .collect();
        for name in &touched {
            let Some(t) = self.topics.get_mut(name) else {
                continue;
            };
            let preferred = preferred.get(name).copied();
            for p in t.partitions.iter_mut().filter(|p| p.replicas.contains(&b)) {
                let old_isr_len = p.isr.len();
                let mut leader_changed = false;
                if fence {
                    // The last ISR member stays: it may hold data nobody else has (KIP-841).
                    if p.isr.len() > 1 {
                        p.isr.retain(|x| *x != b);
                    }
                    if p.leader == b {
                        let isr = &p.isr;
                        p.leader = preferred
                            .into_iter()
                            .chain(p.replicas.iter().copied())
                            .find(|r| isr.contains(r) && live(*r))
                            .unwrap_or(NO_LEADER);
                        leader_changed = true;
                    }
                }
                if unfence && p.leader == NO_LEADER && p.isr.contains(&b) {
                    p.leader = b;
                    leader_changed = true;
                }
                // Also when a restarted broker is re-elected: its new process gets a new epoch.
                if leader_changed {
                    p.leader_epoch = p.leader_epoch.wrapping_add(1);
                }
                if leader_changed || p.isr.len() != old_isr_len {
                    p.partition_epoch = p.partition_epoch.wrapping_add(1);
                }
            }
        }
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
            .ok_or_else(|| unknown_partition(topic, partition))
    }
}

/// Places `partitions` new partitions with `replication_factor` replicas each over the
/// registered, unfenced brokers (sorted by id, `n` of them): partition `p` gets
/// `brokers[(start + p + j) % n]` for `j` in `0..replication_factor`, so the first replica,
/// the preferred leader, rotates. Callers pick `start` (Kafka picks it at random); the result
/// goes into `CreateTopic`, so `apply` itself stays deterministic. The error is a message in
/// Kafka's words, for an INVALID_REPLICATION_FACTOR / INVALID_PARTITIONS response.
pub fn assign_replicas(
    state: &ClusterState,
    partitions: i32,
    replication_factor: i16,
    start: usize,
) -> Result<Vec<PartitionAssignment>, String> {
    assign_replicas_from(state, 0, partitions, replication_factor, start)
}

/// [`assign_replicas`] for `CreatePartitions`: the new partitions continue the rotation after
/// the `existing_partition_count` partitions the topic has.
pub fn assign_replicas_from(
    state: &ClusterState,
    existing_partition_count: usize,
    new_count: i32,
    replication_factor: i16,
    start: usize,
) -> Result<Vec<PartitionAssignment>, String> {
    if new_count < 1 {
        return Err("Number of partitions must be larger than 0.".into());
    }
    if replication_factor < 1 {
        return Err("Replication factor must be larger than 0.".into());
    }
    let brokers: Vec<BrokerId> = state
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| b.broker_id)
        .collect();
    let n = brokers.len();
    let rf = replication_factor as usize;
    if rf > n {
        return Err(format!(
            "Replication factor: {replication_factor} larger than available brokers: {n}."
        ));
    }
    // Reduced first so that the sums below cannot overflow.
    let base = (start % n + existing_partition_count % n) % n;
    Ok((0..new_count as usize)
        .map(|p| PartitionAssignment {
            replicas: (0..rf).map(|j| brokers[(base + p % n + j) % n]).collect(),
        })
        .collect())
}

fn has_duplicates(ids: &[BrokerId]) -> bool {
    ids.iter().collect::<BTreeSet<_>>().len() != ids.len()
}

fn invalid(reason: String) -> CommandResult {
    CommandResult::InvalidRequest { reason }
}

fn unknown_partition(topic: &str, partition: i32) -> CommandResult {
    CommandResult::UnknownPartition {
        topic: topic.to_string(),
        partition,
    }
}

fn unknown_topic(topic: &str) -> CommandResult {
    CommandResult::UnknownTopic {
        name: topic.to_string(),
    }
}

#[cfg(test)]
mod amqp_tests {
    use super::*;

    #[test]
    fn amqp_definitions_apply_and_cascade() {
        let mut st = ClusterState::default();
        let q = AmqpQueueDef {
            topic: "__amqp_q_1".into(),
            auto_delete: false,
            arguments: "{}".into(),
        };
        let e = AmqpExchangeDef {
            kind: "topic".into(),
            auto_delete: false,
            internal: false,
            arguments: "{}".into(),
        };
        let b = AmqpBindingDef {
            exchange: "x".into(),
            queue: "q".into(),
            key: "a.#".into(),
            arguments: "{}".into(),
            to_exchange: false,
        };
        for change in [
            AmqpChange::PutExchange {
                name: "x".into(),
                def: e,
            },
            AmqpChange::PutQueue {
                name: "q".into(),
                def: q,
            },
            AmqpChange::Bind(b.clone()),
        ] {
            assert_eq!(
                st.apply(
                    &MetadataCommand::AmqpDefine {
                        change,
                        vhost: "/".into()
                    },
                    1
                ),
                CommandResult::Ok
            );
        }
        assert!(st.amqp.bindings.contains(&b));
        // a snapshot without the field (older format) still loads
        let mut json = serde_json::to_value(&st).unwrap();
        json.as_object_mut().unwrap().remove("amqp");
        let old: ClusterState = serde_json::from_value(json).unwrap();
        assert_eq!(old.amqp, AmqpDefinitions::default());
        let del = AmqpChange::DeleteQueue { name: "q".into() };
        st.apply(
            &MetadataCommand::AmqpDefine {
                change: del,
                vhost: "/".into(),
            },
            2,
        );
        assert!(st.amqp.bindings.is_empty() && st.amqp.queues.is_empty());
        assert!(st.amqp.exchanges.contains_key("x"));
    }

    #[test]
    fn amqp_definitions_per_vhost() {
        let mut st = ClusterState::default();
        let put = |name: &str| AmqpChange::PutQueue {
            name: name.into(),
            def: AmqpQueueDef {
                topic: format!("__amqp_q_{name}"),
                auto_delete: false,
                arguments: "{}".into(),
            },
        };
        // a log entry written before vhosts existed names none: it is "/"
        let old: MetadataCommand = serde_json::from_value(serde_json::json!({
            "AmqpDefine": {"change": serde_json::to_value(put("q")).unwrap()}
        }))
        .unwrap();
        assert_eq!(st.apply(&old, 1), CommandResult::Ok);
        assert!(st.amqp.queues.contains_key("q"));
        // a vhost that does not exist takes no definitions
        let define = |vhost: &str, change| MetadataCommand::AmqpDefine {
            change,
            vhost: vhost.into(),
        };
        assert_eq!(st.apply(&define("a", put("q")), 2), CommandResult::Ok);
        assert!(st.amqp_definitions("a").is_none());
        let vhost = MetadataCommand::PutVhost {
            name: "a".into(),
            record: VhostRecord::default(),
        };
        assert_eq!(st.apply(&vhost, 3), CommandResult::Ok);
        assert_eq!(st.apply(&define("a", put("q2")), 4), CommandResult::Ok);
        assert!(st.amqp_definitions("a").unwrap().queues.contains_key("q2"));
        assert!(!st.amqp.queues.contains_key("q2"));
        // deleting the vhost drops its definitions
        let del = MetadataCommand::DeleteVhost { name: "a".into() };
        assert_eq!(st.apply(&del, 5), CommandResult::Ok);
        assert!(st.amqp_definitions("a").is_none());
        assert!(st.amqp.queues.contains_key("q"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_id_blocks_never_overlap() {
        let mut s = ClusterState::default();
        let alloc = |b| MetadataCommand::AllocateProducerIds {
            broker_id: b,
            count: 1000,
        };
        assert_eq!(
            s.apply(&alloc(1), 1),
            CommandResult::ProducerIds {
                first: 0,
                count: 1000
            }
        );
        assert_eq!(
            s.apply(&alloc(2), 2),
            CommandResult::ProducerIds {
                first: 1000,
                count: 1000
            }
        );
        assert!(matches!(
            s.apply(
                &MetadataCommand::AllocateProducerIds {
                    broker_id: 1,
                    count: 0
                },
                3
            ),
            CommandResult::InvalidRequest { .. }
        ));
        assert_eq!(s.next_producer_id, 2000);
    }

    fn with_brokers(ids: &[BrokerId]) -> ClusterState {
        let mut s = ClusterState::default();
        for (i, id) in ids.iter().enumerate() {
            let r = s.apply(
                &MetadataCommand::RegisterBroker {
                    broker_id: *id,
                    host: "localhost".into(),
                    port: 9092,
                    rack: None,
                    incarnation: incarnation(*id),
                    listeners: Vec::new(),
                },
                i as u64 + 1,
            );
            assert!(r.is_ok());
        }
        s
    }

    // Deterministic per broker, so tests can re-register with the same one.
    fn incarnation(id: BrokerId) -> Uuid {
        Uuid::from_u128(id as u128 + 1)
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

    /// The broker reconciles only what `OrdMap::diff` reports, so a command must leave every
    /// topic it does not change untouched (shared with the state published before it).
    #[test]
    fn a_command_touches_only_the_topics_it_changes() {
        let mut s = with_brokers(&[1, 2, 3]);
        for i in 0..300 {
            let replicas: &[BrokerId] = if i % 2 == 0 { &[1, 2] } else { &[2, 3] };
            assert_eq!(
                s.apply(&create(&format!("t{i}"), &[replicas]), 10 + i),
                CommandResult::Ok
            );
        }
        let changed = |before: &ClusterState, after: &ClusterState| -> Vec<String> {
            before
                .topics
                .diff(&after.topics)
                .map(|d| match d {
                    DiffItem::Add(k, _) | DiffItem::Remove(k, _) => k.clone(),
                    DiffItem::Update { new: (k, _), .. } => k.clone(),
                })
                .collect()
        };
        let before = s.clone();
        assert_eq!(s.apply(&create("new", &[&[3]]), 400), CommandResult::Ok);
        assert_eq!(changed(&before, &s), vec!["new".to_string()]);
        // Fencing broker 3 shrinks the ISRs of the odd topics (replicas 2 and 3) and leaves
        // "new" (only on 3) leaderless; the even topics (1 and 2) stay as they were.
        let before = s.clone();
        assert_eq!(
            s.apply(&MetadataCommand::FenceBroker { broker_id: 3 }, 401),
            CommandResult::Ok
        );
        let touched = changed(&before, &s);
        assert_eq!(touched.len(), 151, "the 150 odd topics and \"new\"");
        assert!(touched
            .iter()
            .all(|t| t == "new" || t[1..].parse::<u32>().unwrap() % 2 == 1));
        let before = s.clone();
        assert_eq!(
            s.apply(&MetadataCommand::DeleteTopic { name: "t7".into() }, 402),
            CommandResult::Ok
        );
        assert_eq!(changed(&before, &s), vec!["t7".to_string()]);
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
            leader_id: 1,
            leader_epoch: 0,
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
                    leader_id: 1,
                    leader_epoch: 0,
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
                leader_id: 1,
                leader_epoch: 0,
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

    fn part(s: &ClusterState, topic: &str, p: i32) -> PartitionState {
        s.partition(topic, p).cloned().expect("partition exists")
    }

    /// (leader, leader_epoch, partition_epoch, isr)
    fn summary(s: &ClusterState, topic: &str, p: i32) -> (BrokerId, i32, i32, Vec<BrokerId>) {
        let p = part(s, topic, p);
        (p.leader, p.leader_epoch, p.partition_epoch, p.isr)
    }

    fn fence(b: BrokerId) -> MetadataCommand {
        MetadataCommand::FenceBroker { broker_id: b }
    }

    fn unfence(b: BrokerId) -> MetadataCommand {
        MetadataCommand::UnfenceBroker { broker_id: b }
    }

    fn register(b: BrokerId, inc: Uuid) -> MetadataCommand {
        MetadataCommand::RegisterBroker {
            broker_id: b,
            host: "localhost".into(),
            port: 9092,
            rack: None,
            incarnation: inc,
            listeners: Vec::new(),
        }
    }

    fn change_isr(
        s: &ClusterState,
        topic: &str,
        leader_id: BrokerId,
        isr: &[BrokerId],
    ) -> MetadataCommand {
        let p = part(s, topic, 0);
        MetadataCommand::ChangeIsr {
            topic: topic.into(),
            partition: 0,
            leader_id,
            leader_epoch: p.leader_epoch,
            expected_partition_epoch: p.partition_epoch,
            new_isr: isr.to_vec(),
        }
    }

    #[test]
    fn following_topics_are_led_by_the_followed_leader() {
        let mut s = with_brokers(&[1, 2, 3]);
        assert_eq!(
            s.apply(&create("home", &[&[1, 3, 2]]), 10),
            CommandResult::Ok
        );
        let follower = |name: &str, replicas: &[BrokerId]| MetadataCommand::CreateTopic {
            name: name.into(),
            id: Uuid::new_v4(),
            partitions: vec![PartitionAssignment {
                replicas: replicas.to_vec(),
            }],
            configs: BTreeMap::from([(LEADER_FOLLOWS_CONFIG.into(), "home".into())]),
        };
        // Created led by the followed leader, whatever the replica order.
        assert_eq!(s.apply(&follower("q1", &[2, 3, 1]), 11), CommandResult::Ok);
        assert_eq!(s.apply(&follower("q2", &[3, 1, 2]), 12), CommandResult::Ok);
        assert_eq!(part(&s, "q1", 0).leader, 1);
        assert_eq!(part(&s, "q2", 0).leader, 1);
        // Fencing the leader: "home" goes to 3 (replicas order), the followers with it,
        // although their own replicas order would pick 2.
        assert_eq!(s.apply(&fence(1), 13), CommandResult::Ok);
        assert_eq!(part(&s, "home", 0).leader, 3);
        assert_eq!(summary(&s, "q1", 0), (3, 1, 1, vec![2, 3]));
        assert_eq!(part(&s, "q2", 0).leader, 3);
        // Electing the followed partition moves the followers in the same command.
        let elect_home = |b| MetadataCommand::ElectLeader {
            topic: "home".into(),
            partition: 0,
            new_leader: b,
            allow_unclean: false,
        };
        assert_eq!(s.apply(&elect_home(2), 14), CommandResult::Ok);
        assert_eq!(summary(&s, "q1", 0), (2, 2, 2, vec![2, 3]));
        assert_eq!(part(&s, "q2", 0).leader, 2);
        // A follower whose ISR lacks the new leader stays where it is.
        let shrink = change_isr(&s, "q2", 2, &[2]);
        assert_eq!(s.apply(&shrink, 15), CommandResult::Ok);
        assert_eq!(s.apply(&elect_home(3), 16), CommandResult::Ok);
        assert_eq!(part(&s, "q1", 0).leader, 3);
        assert_eq!(part(&s, "q2", 0).leader, 2);
    }

    #[test]
    fn fence_moves_leadership_to_live_isr_members() {
        let mut s = with_brokers(&[1, 2, 3]);
        let t = create("t", &[&[1, 2, 3], &[2, 3, 1], &[3, 1, 2], &[1, 3, 2]]);
        assert_eq!(s.apply(&t, 10), CommandResult::Ok);
        assert_eq!(s.apply(&fence(1), 11), CommandResult::Ok);
        assert!(s.brokers[&1].fenced);
        // Led by 1: the next ISR member in replicas order leads, both epochs bump once.
        assert_eq!(summary(&s, "t", 0), (2, 1, 1, vec![2, 3]));
        assert_eq!(summary(&s, "t", 3), (3, 1, 1, vec![3, 2]));
        // Only followed by 1: it leaves the ISR, the leader epoch stays.
        assert_eq!(summary(&s, "t", 1), (2, 0, 1, vec![2, 3]));
        assert_eq!(summary(&s, "t", 2), (3, 0, 1, vec![3, 2]));
        // Fencing again changes nothing more.
        let before = s.clone();
        assert_eq!(s.apply(&fence(1), 12), CommandResult::Ok);
        assert_eq!(s, before);
        // A fenced broker cannot be elected, an unregistered one neither.
        let elect = |b| MetadataCommand::ElectLeader {
            topic: "t".into(),
            partition: 0,
            new_leader: b,
            allow_unclean: true,
        };
        assert_eq!(
            s.apply(&elect(1), 13),
            CommandResult::BrokerFenced { broker_id: 1 }
        );
        assert_eq!(s, before);
        // Unfencing does not give back leaderships of partitions that have a leader.
        assert_eq!(s.apply(&unfence(1), 14), CommandResult::Ok);
        assert!(!s.brokers[&1].fenced);
        assert_eq!(summary(&s, "t", 0), (2, 1, 1, vec![2, 3]));
        assert_eq!(
            s.apply(&MetadataCommand::UnregisterBroker { broker_id: 3 }, 15),
            CommandResult::Ok
        );
        assert_eq!(
            s.apply(&elect(3), 16),
            CommandResult::UnknownBroker { broker_id: 3 }
        );
        // Unregistering applies the fencing effects too.
        assert_eq!(summary(&s, "t", 2), (2, 1, 2, vec![2]));
    }

    #[test]
    fn last_isr_member_is_kept_and_unfence_elects_it() {
        let mut s = with_brokers(&[1, 2]);
        s.apply(&create("u", &[&[1, 2]]), 10);
        let shrink = change_isr(&s, "u", 1, &[1]);
        assert_eq!(s.apply(&shrink, 11), CommandResult::Ok);
        assert_eq!(summary(&s, "u", 0), (1, 0, 1, vec![1]));

        assert_eq!(s.apply(&fence(1), 12), CommandResult::Ok);
        // 2 is live but not in the ISR: no clean leader; the ISR keeps its last member.
        assert_eq!(summary(&s, "u", 0), (NO_LEADER, 1, 2, vec![1]));
        // Nothing to do for a broker outside the ISR.
        assert_eq!(s.apply(&fence(2), 13), CommandResult::Ok);
        assert_eq!(s.apply(&unfence(2), 14), CommandResult::Ok);
        assert_eq!(summary(&s, "u", 0), (NO_LEADER, 1, 2, vec![1]));
        // A leaderless partition's ISR is not changed by a "leader".
        assert!(matches!(
            s.apply(&change_isr(&s, "u", NO_LEADER, &[1, 2]), 15),
            CommandResult::InvalidRequest { .. }
        ));

        assert_eq!(s.apply(&unfence(1), 16), CommandResult::Ok);
        assert_eq!(summary(&s, "u", 0), (1, 2, 3, vec![1]));
    }

    #[test]
    fn re_register_with_new_incarnation_fences_old_then_unfences() {
        let mut s = with_brokers(&[1, 2, 3]);
        s.apply(&create("a", &[&[1, 2, 3]]), 10);
        s.apply(&create("b", &[&[1]]), 11);
        s.apply(&create("c", &[&[2, 1]]), 12);
        let new_inc = Uuid::from_u128(99);
        assert_eq!(s.apply(&register(1, new_inc), 20), CommandResult::Ok);
        let b = &s.brokers[&1];
        assert_eq!(
            (b.fenced, b.broker_epoch, b.incarnation),
            (false, 20, new_inc)
        );
        // Leadership moved to a live ISR member, and 1 left the ISR.
        assert_eq!(summary(&s, "a", 0), (2, 1, 1, vec![2, 3]));
        // Sole replica: fenced (leaderless), then re-elected; one new leader epoch.
        assert_eq!(summary(&s, "b", 0), (1, 1, 1, vec![1]));
        // Follower only: leaves the ISR.
        assert_eq!(summary(&s, "c", 0), (2, 0, 1, vec![2]));

        // A fenced broker that restarts comes back unfenced.
        assert_eq!(s.apply(&fence(3), 21), CommandResult::Ok);
        assert_eq!(
            s.apply(&register(3, Uuid::from_u128(100)), 22),
            CommandResult::Ok
        );
        assert!(!s.brokers[&3].fenced);
    }

    #[test]
    fn re_register_with_same_incarnation_is_a_no_op() {
        let mut s = with_brokers(&[1, 2]);
        s.apply(&create("a", &[&[1, 2]]), 10);
        let before = s.clone();
        assert_eq!(s.apply(&register(1, incarnation(1)), 11), CommandResult::Ok);
        assert_eq!(s, before);
        // Even when fenced since: a retried registration does not unfence.
        s.apply(&fence(1), 12);
        let before = s.clone();
        assert_eq!(s.apply(&register(1, incarnation(1)), 13), CommandResult::Ok);
        assert_eq!(s, before);
        assert!(s.brokers[&1].fenced);
        assert_eq!(s.brokers[&1].broker_epoch, 1);
        assert!(matches!(
            s.apply(&register(-1, incarnation(1)), 14),
            CommandResult::InvalidRequest { .. }
        ));
    }

    #[test]
    fn change_isr_rejects_deposed_leaders_and_fenced_additions() {
        let mut s = with_brokers(&[1, 2, 3]);
        s.apply(&create("t", &[&[1, 2, 3]]), 10);
        let stale = change_isr(&s, "t", 1, &[1, 2]);
        s.apply(&fence(1), 11);
        assert_eq!(summary(&s, "t", 0), (2, 1, 1, vec![2, 3]));
        // The deposed leader's proposal, made before it learned of the fencing.
        assert_eq!(
            s.apply(&stale, 12),
            CommandResult::FencedLeaderEpoch {
                current_leader: 2,
                current_leader_epoch: 1
            }
        );
        // Right leader, wrong epoch.
        let mut wrong_epoch = change_isr(&s, "t", 2, &[2]);
        if let MetadataCommand::ChangeIsr { leader_epoch, .. } = &mut wrong_epoch {
            *leader_epoch = 0;
        }
        assert!(matches!(
            s.apply(&wrong_epoch, 12),
            CommandResult::FencedLeaderEpoch { .. }
        ));
        // Right leader and epoch, stale partition epoch.
        let mut cas = change_isr(&s, "t", 2, &[2]);
        if let MetadataCommand::ChangeIsr {
            expected_partition_epoch,
            ..
        } = &mut cas
        {
            *expected_partition_epoch = 0;
        }
        assert_eq!(
            s.apply(&cas, 12),
            CommandResult::StaleEpoch {
                current_partition_epoch: 1
            }
        );
        // Adding a fenced broker is refused; once unfenced it may rejoin.
        assert!(matches!(
            s.apply(&change_isr(&s, "t", 2, &[2, 3, 1]), 13),
            CommandResult::InvalidIsr { .. }
        ));
        s.apply(&unfence(1), 14);
        assert_eq!(summary(&s, "t", 0), (2, 1, 1, vec![2, 3]));
        assert_eq!(
            s.apply(&change_isr(&s, "t", 2, &[2, 3, 1]), 15),
            CommandResult::Ok
        );
        assert_eq!(summary(&s, "t", 0), (2, 1, 2, vec![2, 3, 1]));
        // Shrinking is fine; adding an unregistered broker is not.
        assert_eq!(
            s.apply(&change_isr(&s, "t", 2, &[2, 1]), 16),
            CommandResult::Ok
        );
        s.apply(&MetadataCommand::UnregisterBroker { broker_id: 3 }, 17);
        assert!(matches!(
            s.apply(&change_isr(&s, "t", 2, &[2, 1, 3]), 18),
            CommandResult::InvalidIsr { .. }
        ));
        // Preferred leader back, then the ISR rule still holds for the new leader.
        let elect = MetadataCommand::ElectLeader {
            topic: "t".into(),
            partition: 0,
            new_leader: 1,
            allow_unclean: false,
        };
        assert_eq!(s.apply(&elect, 19), CommandResult::Ok);
        assert_eq!(summary(&s, "t", 0), (1, 2, 4, vec![2, 1]));
    }

    #[test]
    fn assign_replicas_rotates_over_unfenced_brokers() {
        let mut s = with_brokers(&[4, 1, 2, 3]);
        s.apply(&fence(3), 10);
        let a = assign_replicas(&s, 4, 2, 1).expect("enough brokers");
        let replicas: Vec<_> = a.into_iter().map(|a| a.replicas).collect();
        assert_eq!(
            replicas,
            vec![vec![2, 4], vec![4, 1], vec![1, 2], vec![2, 4]]
        );
        // CreatePartitions continues the rotation.
        let more = assign_replicas_from(&s, 2, 2, 2, 1).expect("enough brokers");
        assert_eq!(more[0].replicas, vec![1, 2]);
        assert_eq!(more[1].replicas, vec![2, 4]);
        // No overflow with any start.
        let all = assign_replicas(&s, 3, 3, usize::MAX).expect("enough brokers");
        assert!(all.iter().all(|a| a.replicas.len() == 3));
        assert_eq!(
            assign_replicas(&s, 1, 4, 0).unwrap_err(),
            "Replication factor: 4 larger than available brokers: 3."
        );
        assert!(assign_replicas(&s, 1, 0, 0).is_err());
        assert!(assign_replicas(&s, 0, 1, 0).is_err());
        assert!(assign_replicas(&ClusterState::default(), 1, 1, 0).is_err());
    }

    #[test]
    fn registration_without_incarnation_still_parses() {
        let old =
            r#"{"broker_id":1,"host":"h","port":1,"rack":null,"fenced":false,"broker_epoch":3}"#;
        let r: BrokerRegistration = serde_json::from_str(old).expect("old registration");
        assert!(r.incarnation.is_nil());
    }

    #[test]
    fn broker_configs_are_set_deleted_and_emptied() {
        let mut st = ClusterState::default();
        let set = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let cmd = MetadataCommand::AlterBrokerConfigs {
            resource: "".into(),
            set: set(&[("log.retention.ms", "1000"), ("num.io.threads", "4")]),
            delete: vec![],
        };
        assert!(st.apply(&cmd, 1).is_ok());
        assert_eq!(st.broker_configs[""].len(), 2);
        let cmd = MetadataCommand::AlterBrokerConfigs {
            resource: "".into(),
            set: BTreeMap::new(),
            delete: vec!["log.retention.ms".into(), "num.io.threads".into()],
        };
        assert!(st.apply(&cmd, 2).is_ok());
        assert!(st.broker_configs.is_empty());
        // Older snapshots without the field still load.
        let json = serde_json::to_string(&st)
            .unwrap()
            .replace(",\"broker_configs\":{}", "");
        assert!(!json.contains("broker_configs"));
        let back: ClusterState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, st);
    }

    #[test]
    fn acls_are_created_once_deleted_exactly_and_validated() {
        use arctern_security::acl::{
            AclBinding, AclOperation, PatternType, PermissionType, ResourceType,
        };
        let mut st = ClusterState::default();
        let b = AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: "t".into(),
            pattern_type: PatternType::Literal,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: AclOperation::Read,
            permission_type: PermissionType::Allow,
        };
        let create = MetadataCommand::CreateAcls {
            bindings: vec![b.clone(), b.clone()],
        };
        assert!(st.apply(&create, 1).is_ok());
        assert_eq!(st.acls.len(), 1);
        let bad = AclBinding {
            principal: "alice".into(),
            ..b.clone()
        };
        let other = AclBinding {
            resource_name: "u".into(),
            ..b.clone()
        };
        let create = MetadataCommand::CreateAcls {
            bindings: vec![other.clone(), bad],
        };
        assert!(matches!(
            st.apply(&create, 2),
            CommandResult::InvalidRequest { .. }
        ));
        assert_eq!(st.acls.len(), 1);
        let delete = MetadataCommand::DeleteAcls {
            bindings: vec![b, other],
        };
        assert!(st.apply(&delete, 3).is_ok());
        assert!(st.acls.is_empty());
        // Older snapshots without the field still load.
        let json = serde_json::to_string(&st)
            .unwrap()
            .replace(",\"acls\":[]", "");
        assert!(!json.contains("acls"));
        let back: ClusterState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, st);
    }
}

#[cfg(test)]
mod listener_tests {
    use super::*;

    #[test]
    fn endpoint_per_listener_falls_back_to_the_registered_one() {
        let mut s = ClusterState::default();
        let register = MetadataCommand::RegisterBroker {
            broker_id: 1,
            host: "10.0.0.1".into(),
            port: 9092,
            rack: None,
            incarnation: Uuid::from_u128(1),
            listeners: vec![
                ListenerEndpoint {
                    name: "INTERNAL".into(),
                    host: "10.0.0.1".into(),
                    port: 9092,
                },
                ListenerEndpoint {
                    name: "CLIENT".into(),
                    host: "broker1.example".into(),
                    port: 9093,
                },
            ],
        };
        assert_eq!(s.apply(&register, 1), CommandResult::Ok);
        let b = &s.brokers[&1];
        assert_eq!(b.endpoint("CLIENT"), ("broker1.example", 9093));
        assert_eq!(b.endpoint("INTERNAL"), ("10.0.0.1", 9092));
        assert_eq!(b.endpoint("OTHER"), ("10.0.0.1", 9092));
        // A registration recorded before listeners existed still reads.
        let old =
            r#"{"broker_id":2,"host":"h","port":1,"rack":null,"fenced":false,"broker_epoch":3}"#;
        let b: BrokerRegistration = serde_json::from_str(old).expect("old record");
        assert!(b.listeners.is_empty());
        assert_eq!(b.endpoint("SSL"), ("h", 1));
    }
}

#[cfg(test)]
mod user_tests {
    use super::*;
    use arctern_security::scram::ScramMechanism;

    #[test]
    fn a_password_set_through_kafka_replaces_the_amqp_one() {
        let mut st = ClusterState::default();
        let put = MetadataCommand::PutUser {
            name: "u".into(),
            user: UserRecord::with_password("old", vec!["monitoring".into()]),
        };
        assert_eq!(st.apply(&put, 1), CommandResult::Ok);
        assert!(st.users["u"].check_password("old"));
        let alter = MetadataCommand::AlterUserScram {
            name: "u".into(),
            upsert: [(
                "SCRAM-SHA-256".to_string(),
                ScramMechanism::Sha256.derive_fresh("new", 4096),
            )]
            .into(),
            delete: vec![],
        };
        assert_eq!(st.apply(&alter, 2), CommandResult::Ok);
        let u = &st.users["u"];
        assert!(u.password_hash.is_none());
        assert_eq!(u.tags, vec!["monitoring".to_string()]);
        // Each mechanism keeps its own credential, as in Kafka: SCRAM-SHA-512 still
        // holds the old password until it is replaced too.
        assert!(u.check_password("new") && u.check_password("old"));
        let alter = MetadataCommand::AlterUserScram {
            name: "u".into(),
            upsert: [(
                "SCRAM-SHA-512".to_string(),
                ScramMechanism::Sha512.derive_fresh("new", 4096),
            )]
            .into(),
            delete: vec![],
        };
        assert_eq!(st.apply(&alter, 3), CommandResult::Ok);
        let u = &st.users["u"];
        assert!(u.check_password("new") && !u.check_password("old"));
        // Only removing a mechanism keeps the password hash.
        let put = MetadataCommand::PutUser {
            name: "v".into(),
            user: UserRecord::with_password("pw", vec![]),
        };
        st.apply(&put, 3);
        let drop512 = MetadataCommand::AlterUserScram {
            name: "v".into(),
            upsert: BTreeMap::new(),
            delete: vec!["SCRAM-SHA-512".into()],
        };
        assert_eq!(st.apply(&drop512, 4), CommandResult::Ok);
        assert!(st.users["v"].check_password("pw"));
    }
}
