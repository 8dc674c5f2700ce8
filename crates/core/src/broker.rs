//! The broker: this node's replicas of the partitions, driven by the cluster metadata.
//!
//! Topics, partition assignments, leaders, ISRs and configs live in the Raft-replicated
//! metadata (`arctern-metadata`). Admin operations are proposals to it; a reconcile pass
//! runs on every applied metadata change and makes the local replicas match: it opens
//! logs for partitions assigned here, makes each a leader or a follower (starting a fetcher
//! through [`FollowerFetcher`]), and removes the logs of deleted topics. Leaders propose ISR
//! changes from a periodic task.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use arctern_metadata::{
    assign_replicas, ClusterState, CommandResult, DiffItem, HeartbeatHandle, MetadataCommand,
    MetadataError, MetadataNode, PartitionState, TopicState, NO_LEADER,
};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::config::{
    is_list_config, is_topic_config, validate_topic_config, validate_topic_name, BrokerConfig,
    ConfigEntry, TopicDefaults, TopicSettings,
};
use crate::error::{CoreError, Result};
use crate::metadata::LegacyTopicStore;
use crate::partition::Partition;

mod admin;
mod operate;

pub use operate::{ElectionOutcome, ElectionType, ReplicaUsage};

/// Upper bound on a topic's partitions, so one request cannot open unbounded files.
const MAX_PARTITIONS: i32 = 100_000;

/// How long a stopping broker waits for the quorum to move its leaderships away.
const CONTROLLED_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Producer ids a broker takes from the metadata quorum at a time (Kafka's block size).
const PRODUCER_ID_BLOCK: i64 = 1000;

/// File in each partition dir naming the topic id, so a topic deleted and re-created under
/// the same name while this node was down is not mistaken for the old one.
const PARTITION_METADATA_FILE: &str = "partition.metadata";

fn check_partition_limit(count: i32) -> Result<()> {
    if count > MAX_PARTITIONS {
        return Err(CoreError::InvalidPartitions(format!(
            "{count} partitions is more than this broker allows ({MAX_PARTITIONS})"
        )));
    }
    Ok(())
}

fn poisoned() -> CoreError {
    CoreError::Storage("broker lock poisoned by an earlier panic".into())
}

fn metadata_error(e: MetadataError) -> CoreError {
    CoreError::MetadataUnavailable(e.to_string())
}

/// Where a partition leader accepts Kafka connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaEndpoint {
    pub id: i32,
    pub host: String,
    pub port: u16,
}

/// Starts a follower's replication from its leader; implemented over the Kafka protocol by
/// `arctern-replication`. The task runs until aborted (leadership changes restart it).
pub trait FollowerFetcher: Send + Sync + std::fmt::Debug + 'static {
    fn start(
        &self,
        partition: Arc<Partition>,
        leader: ReplicaEndpoint,
        leader_epoch: i32,
    ) -> JoinHandle<()>;
}

/// A topic as the metadata describes it.
#[derive(Debug, Clone)]
pub struct Topic {
    pub name: String,
    pub id: Uuid,
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionState>,
}

impl Topic {
    fn from_state(t: &arctern_metadata::TopicState) -> Topic {
        Topic {
            name: t.name.clone(),
            id: t.id,
            replication_factor: t.partitions.first().map_or(0, |p| p.replicas.len() as i16),
            configs: t.configs.clone(),
            partitions: t.partitions.clone(),
        }
    }

    pub fn partition_count(&self) -> i32 {
        self.partitions.len() as i32
    }

    pub fn overrides(&self) -> BTreeMap<String, String> {
        self.configs.clone()
    }
}

/// One step of IncrementalAlterConfigs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterOp {
    Set(String, String),
    Delete(String),
    /// Add items to a list-typed config (only `cleanup.policy` here).
    Append(String, String),
    /// Remove items from a list-typed config.
    Subtract(String, String),
}

#[derive(Debug)]
struct LocalReplica {
    topic_id: Uuid,
    partition: Arc<Partition>,
}

#[derive(Debug)]
struct RunningFetcher {
    leader: i32,
    leader_epoch: i32,
    task: JoinHandle<()>,
}

pub struct Broker {
    config: BrokerConfig,
    metadata: Arc<MetadataNode>,
    /// This process's registration id: a restart is a new incarnation, which the quorum
    /// fences (moving leaderships away) before admitting it again.
    incarnation: Uuid,
    replicas: RwLock<BTreeMap<(String, i32), LocalReplica>>,
    fetchers: Mutex<HashMap<(String, i32), RunningFetcher>>,
    fetcher: Arc<dyn FollowerFetcher>,
    /// Serializes reconcile passes; holds the metadata the local replicas last fully matched
    /// (None: never, or the last pass hit an error and the next one must redo everything).
    reconcile_lock: Mutex<Option<Arc<ClusterState>>>,
    isr_check: Arc<Notify>,
    shutting_down: AtomicBool,
    heartbeats: Mutex<Option<HeartbeatHandle>>,
    /// The rest of this broker's block of producer ids (taken from the quorum when empty).
    producer_ids: tokio::sync::Mutex<std::ops::Range<i64>>,
    /// Held (flock) for the broker's lifetime.
    _dir_lock: std::fs::File,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("node_id", &self.config.node_id)
            .field("data_dir", &self.config.data_dir)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Registers with the metadata quorum, opens (recovering) this node's replicas and
    /// starts heartbeats, reconciliation, ISR maintenance and retention. Call inside tokio.
    pub async fn start(
        config: BrokerConfig,
        metadata: Arc<MetadataNode>,
        fetcher: Arc<dyn FollowerFetcher>,
    ) -> Result<Arc<Broker>> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            CoreError::Storage(format!(
                "creating data dir {}: {e}",
                config.data_dir.display()
            ))
        })?;
        // One broker per data dir: a second one would interleave writes into the same logs.
        let lock_path = config.data_dir.join(".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| CoreError::Storage(format!("opening {}: {e}", lock_path.display())))?;
        lock.try_lock().map_err(|_| {
            CoreError::Storage(format!(
                "data dir {} is in use by another broker",
                config.data_dir.display()
            ))
        })?;
        let broker = Arc::new(Broker {
            config,
            metadata,
            incarnation: Uuid::new_v4(),
            replicas: RwLock::new(BTreeMap::new()),
            fetchers: Mutex::new(HashMap::new()),
            fetcher,
            reconcile_lock: Mutex::new(None),
            isr_check: Arc::new(Notify::new()),
            shutting_down: AtomicBool::new(false),
            heartbeats: Mutex::new(None),
            producer_ids: tokio::sync::Mutex::new(0..0),
            _dir_lock: lock,
        });
        broker.remove_deleted_dirs();
        let port = u16::try_from(broker.config.advertised_port).map_err(|_| {
            CoreError::InvalidConfig(format!(
                "advertised port {} is not a TCP port",
                broker.config.advertised_port
            ))
        })?;
        broker
            .metadata
            .register_broker_with_listeners(
                broker.config.node_id,
                broker.config.advertised_host.clone(),
                port,
                broker.incarnation,
                broker.config.advertised_listeners.clone(),
            )
            .await
            .map_err(metadata_error)?;
        tracing::info!(node_id = broker.config.node_id, incarnation = %broker.incarnation, "registered with the metadata quorum");
        broker.import_legacy_topics().await?;
        broker.remove_orphan_partition_dirs();
        broker.reconcile_now();
        *broker.heartbeats.lock().map_err(|_| poisoned())? = Some(
            broker
                .metadata
                .start_heartbeats(broker.config.node_id, broker.incarnation),
        );
        broker.spawn_reconciler();
        broker.spawn_isr_maintenance();
        broker.spawn_retention();
        tracing::info!(
            data_dir = %broker.config.data_dir.display(),
            replicas = broker.replicas.read().map_or(0, |r| r.len()),
            "broker started"
        );
        Ok(broker)
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// The metadata as last applied on this node.
    pub fn cluster(&self) -> Arc<ClusterState> {
        Arc::clone(&self.metadata.state().borrow())
    }

    /// The metadata quorum's leader (Kafka's "controller"), if known.
    pub fn controller_id(&self) -> i32 {
        self.metadata
            .leader()
            .and_then(|id| i32::try_from(id).ok())
            .unwrap_or(-1)
    }

    /// Receives every applied metadata change (leaderships move on these; the local
    /// replicas follow once `reconcile_now` has run).
    pub fn subscribe_metadata(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.metadata.state()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    fn partition_dir(&self, topic: &str, index: i32) -> PathBuf {
        self.config.data_dir.join(format!("{topic}-{index}"))
    }

    // ---- reconciliation ----

    fn spawn_reconciler(self: &Arc<Self>) {
        let broker = Arc::downgrade(self);
        let mut changes = self.metadata.state();
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let Some(broker) = broker.upgrade() else {
                    break;
                };
                if broker.shutting_down.load(Ordering::Acquire) {
                    break;
                }
                broker.reconcile_now();
            }
        });
    }

    /// Makes the local replicas match the applied metadata. Incremental: after a clean pass,
    /// only the topics that changed since (`OrdMap::diff`, which skips the shared parts) are
    /// visited, so declaring the N-th queue does not re-apply the N-1 before it (that made
    /// declares O(N^2)). A change of brokers or broker configs, or an error in the last
    /// pass, makes the pass visit everything.
    pub fn reconcile_now(&self) {
        let Ok(mut reconciled) = self.reconcile_lock.lock() else {
            return;
        };
        if self.shutting_down.load(Ordering::Acquire) {
            return;
        }
        let state = self.cluster();
        let me = self.config.node_id;
        // Until this incarnation's registration is applied here, the local metadata may be
        // stale (a restart): serve nothing on it.
        if state
            .brokers
            .get(&me)
            .is_none_or(|b| b.incarnation != self.incarnation)
        {
            return;
        }
        let previous = reconciled.take();
        // The direct call after a proposal often races the background reconciler.
        if previous.as_ref().is_some_and(|p| Arc::ptr_eq(p, &state)) {
            *reconciled = previous;
            return;
        }
        let previous = previous
            .filter(|p| p.broker_configs == state.broker_configs && p.brokers == state.brokers);
        let defaults = self.topic_defaults_in(&state);
        let mut clean = true;
        match previous {
            Some(previous) => {
                for change in previous.topics.diff(&state.topics) {
                    match change {
                        DiffItem::Add(_, t) => {
                            clean &= self.reconcile_topic(&state, &defaults, t, 0);
                        }
                        DiffItem::Update {
                            old: (_, old),
                            new: (_, t),
                        } => {
                            let before = old.partitions.len();
                            clean &= self.reconcile_topic(&state, &defaults, t, before);
                        }
                        DiffItem::Remove(name, old) => {
                            for index in 0..old.partitions.len() {
                                self.remove_replica(&(name.clone(), index as i32));
                            }
                        }
                    }
                }
            }
            None => {
                for t in state.topics.values() {
                    clean &= self.reconcile_topic(&state, &defaults, t, 0);
                }
                let unwanted: Vec<(String, i32)> = self
                    .replicas
                    .read()
                    .map(|r| {
                        r.keys()
                            .filter(|(topic, index)| {
                                !state.topics.get(topic).is_some_and(|t| {
                                    usize::try_from(*index)
                                        .ok()
                                        .and_then(|i| t.partitions.get(i))
                                        .is_some_and(|p| p.replicas.contains(&me))
                                })
                            })
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                for key in unwanted {
                    self.remove_replica(&key);
                }
            }
        }
        if clean {
            *reconciled = Some(state);
        }
    }

    /// Makes the local replicas of one topic match `t`: opens, leads, follows or drops each.
    /// `partitions_before` is how many partitions the topic had at the last pass (replicas
    /// past the current count are dropped). False if something failed (the next pass
    /// retries everything).
    fn reconcile_topic(
        &self,
        state: &ClusterState,
        defaults: &TopicDefaults,
        t: &TopicState,
        partitions_before: usize,
    ) -> bool {
        let me = self.config.node_id;
        let mut clean = true;
        let settings = defaults.settings(&t.configs);
        for index in t.partitions.len()..partitions_before {
            self.remove_replica(&(t.name.clone(), index as i32));
        }
        for (index, p) in t.partitions.iter().enumerate() {
            let index = index as i32;
            let key = (t.name.clone(), index);
            if !p.replicas.contains(&me) {
                self.remove_replica(&key);
                continue;
            }
            let partition = match self.local_replica(&t.name, t.id, index, &settings) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(topic = %t.name, partition = index, error = %e, "cannot open replica");
                    clean = false;
                    continue;
                }
            };
            if let Err(e) = partition.apply_settings(settings.clone()) {
                tracing::warn!(topic = %t.name, partition = index, error = %e, "applying topic configs");
                clean = false;
            }
            if crate::stats::is_leader_change(partition.leader_epoch(), p.leader_epoch, p.leader) {
                crate::stats::add(&crate::stats::LEADER_ELECTIONS, 1);
            }
            if p.leader == me {
                self.stop_fetcher(&key);
                if let Err(e) =
                    partition.become_leader(p.leader_epoch, p.partition_epoch, &p.replicas, &p.isr)
                {
                    tracing::error!(topic = %t.name, partition = index, error = %e, "becoming leader");
                    clean = false;
                }
            } else if p.leader == NO_LEADER {
                self.stop_fetcher(&key);
                partition.become_offline(p.leader_epoch);
            } else {
                let changed =
                    partition.become_follower(p.leader, p.leader_epoch, p.partition_epoch);
                clean &= self.ensure_fetcher(state, key, partition, p, changed);
            }
        }
        clean
    }

    fn ensure_fetcher(
        &self,
        state: &ClusterState,
        key: (String, i32),
        partition: Arc<Partition>,
        p: &PartitionState,
        changed: bool,
    ) -> bool {
        let Ok(mut fetchers) = self.fetchers.lock() else {
            return false;
        };
        let current = fetchers.get(&key).is_some_and(|f| {
            f.leader == p.leader && f.leader_epoch == p.leader_epoch && !f.task.is_finished()
        });
        if current && !changed {
            return true;
        }
        let Some(leader) = state.brokers.get(&p.leader) else {
            tracing::warn!(topic = %key.0, partition = key.1, leader = p.leader, "leader is not a registered broker");
            return false;
        };
        if let Some(old) = fetchers.remove(&key) {
            old.task.abort();
        }
        let endpoint = ReplicaEndpoint {
            id: p.leader,
            host: leader.host.clone(),
            port: leader.port,
        };
        let task = self.fetcher.start(partition, endpoint, p.leader_epoch);
        fetchers.insert(
            key,
            RunningFetcher {
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                task,
            },
        );
        true
    }

    fn stop_fetcher(&self, key: &(String, i32)) {
        if let Ok(mut fetchers) = self.fetchers.lock() {
            if let Some(f) = fetchers.remove(key) {
                f.task.abort();
            }
        }
    }

    /// The open replica, opening (and recovering) it if needed. A replica left from an
    /// older topic of the same name is replaced.
    fn local_replica(
        &self,
        topic: &str,
        topic_id: Uuid,
        index: i32,
        settings: &TopicSettings,
    ) -> Result<Arc<Partition>> {
        let key = (topic.to_string(), index);
        if let Some(r) = self.replicas.read().map_err(|_| poisoned())?.get(&key) {
            if r.topic_id == topic_id {
                return Ok(Arc::clone(&r.partition));
            }
        }
        self.remove_replica(&key);
        let dir = self.partition_dir(topic, index);
        match read_partition_topic_id(&dir) {
            Some(id) if id != topic_id => {
                tracing::info!(dir = %dir.display(), "replica belongs to an older topic of the same name; removing it");
                self.remove_dir(&dir, topic, index);
            }
            _ => {}
        }
        let partition = Partition::open(topic, index, &dir, settings.clone(), self.config.node_id)?;
        write_partition_topic_id(&dir, topic_id)?;
        self.replicas.write().map_err(|_| poisoned())?.insert(
            key,
            LocalReplica {
                topic_id,
                partition: Arc::clone(&partition),
            },
        );
        Ok(partition)
    }

    fn remove_replica(&self, key: &(String, i32)) {
        self.stop_fetcher(key);
        let removed = self.replicas.write().ok().and_then(|mut r| r.remove(key));
        if let Some(r) = removed {
            if let Err(e) = r.partition.close() {
                tracing::warn!(topic = %key.0, partition = key.1, error = %e, "closing removed replica");
            }
            self.remove_dir(&self.partition_dir(&key.0, key.1), &key.0, key.1);
            tracing::info!(topic = %key.0, partition = key.1, "removed replica");
        }
    }

    /// Renames then removes a log dir, so a crash midway leaves a `*.deleted` dir that the
    /// next start finishes removing.
    fn remove_dir(&self, dir: &Path, topic: &str, index: i32) {
        if !dir.exists() {
            return;
        }
        let doomed = dir.with_file_name(format!(
            "{topic}-{index}.{}.deleted",
            Uuid::new_v4().simple()
        ));
        if let Err(e) = std::fs::rename(dir, &doomed).and_then(|_| std::fs::remove_dir_all(&doomed))
        {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove log dir");
        }
    }

    /// Finishes deletions interrupted by a crash (dirs renamed to `*.deleted`).
    fn remove_deleted_dirs(&self) {
        let Ok(entries) = std::fs::read_dir(&self.config.data_dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".deleted") {
                if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                    tracing::warn!(dir = %entry.path().display(), error = %e, "could not remove deleted log dir");
                }
            }
        }
    }

    /// Removes partition dirs of topics deleted (or moved) while this node was down.
    fn remove_orphan_partition_dirs(&self) {
        let state = self.cluster();
        let me = self.config.node_id;
        let Ok(entries) = std::fs::read_dir(&self.config.data_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() || !path.join(PARTITION_METADATA_FILE).exists() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().to_string();
            let Some((topic, index)) = name
                .rsplit_once('-')
                .and_then(|(t, i)| i.parse::<i32>().ok().map(|i| (t.to_string(), i)))
            else {
                continue;
            };
            let assigned = state.topics.get(&topic).is_some_and(|t| {
                Some(t.id) == read_partition_topic_id(&path)
                    && usize::try_from(index)
                        .ok()
                        .and_then(|i| t.partitions.get(i))
                        .is_some_and(|p| p.replicas.contains(&me))
            });
            if !assigned {
                tracing::info!(dir = %path.display(), "removing replica of a deleted or reassigned topic");
                self.remove_dir(&path, &topic, index);
            }
        }
    }

    /// Brings topics of a pre-replication single-node data dir into the metadata quorum.
    async fn import_legacy_topics(&self) -> Result<()> {
        let store = LegacyTopicStore::new(&self.config.data_dir);
        let Some(records) = store.load()? else {
            return Ok(());
        };
        let me = self.config.node_id;
        for rec in records {
            if self.cluster().topics.contains_key(&rec.name) {
                continue;
            }
            let cmd = MetadataCommand::CreateTopic {
                name: rec.name.clone(),
                id: rec.id,
                partitions: (0..rec.partitions)
                    .map(|_| arctern_metadata::PartitionAssignment { replicas: vec![me] })
                    .collect(),
                configs: rec.configs.clone(),
            };
            let result = self.metadata.propose(cmd).await.map_err(metadata_error)?;
            tracing::info!(topic = %rec.name, ?result, "imported topic from the single-node metadata file");
        }
        store.mark_imported()
    }

    // ---- leaders' ISR maintenance ----

    fn spawn_isr_maintenance(self: &Arc<Self>) {
        let broker = Arc::downgrade(self);
        let lag = self.config.topic_defaults.replica_lag_time_max_ms.max(100);
        let every = Duration::from_millis((lag / 4).clamp(50, 1000) as u64);
        let wakeup = Arc::clone(&self.isr_check);
        tokio::spawn(async move {
            loop {
                // Only a weak reference while idle, so dropping the broker ends the task.
                let _ = tokio::time::timeout(every, wakeup.notified()).await;
                let Some(b) = broker.upgrade() else { break };
                if b.shutting_down.load(Ordering::Acquire) {
                    break;
                }
                b.propose_isr_changes().await;
            }
        });
    }

    /// Asks for an ISR re-evaluation soon (a follower may have caught up).
    pub fn request_isr_check(&self) {
        self.isr_check.notify_one();
    }

    /// Every replica open on this node.
    fn local_partitions(&self) -> Vec<Arc<Partition>> {
        self.replicas
            .read()
            .map(|r| r.values().map(|l| Arc::clone(&l.partition)).collect())
            .unwrap_or_default()
    }

    async fn propose_isr_changes(&self) {
        let led = self.local_partitions();
        // Read once per round (this runs over every local partition several times a
        // second), and again after each proposal's round trip.
        let mut state = self.cluster();
        for p in led {
            let Some(proposal) = p.isr_proposal(|id| state.is_unfenced(id)) else {
                continue;
            };
            tracing::info!(topic = %p.topic, partition = p.index, new_isr = ?proposal.new_isr, "proposing ISR change");
            let old_isr = state
                .topics
                .get(&p.topic)
                .and_then(|t| t.partitions.get(p.index as usize))
                .map_or(0, |s| s.isr.len());
            let new_isr = proposal.new_isr.len();
            let cmd = MetadataCommand::ChangeIsr {
                topic: p.topic.clone(),
                partition: p.index,
                leader_id: self.config.node_id,
                leader_epoch: proposal.leader_epoch,
                expected_partition_epoch: proposal.partition_epoch,
                new_isr: proposal.new_isr.clone(),
            };
            let outcome = self.metadata.propose(cmd).await;
            state = self.cluster();
            match outcome {
                Ok(CommandResult::Ok) => crate::stats::count_isr_change(old_isr, new_isr),
                // The quorum checks the partition epoch first: an InvalidIsr refusal means
                // the ISR this leader knows is the committed one, so the joiner is in no
                // committed ISR and may stop holding the watermark. Not so after StaleEpoch:
                // an earlier proposal of the same joiner may have committed, and the HW
                // must keep waiting for it until this node applies that ISR.
                Ok(refused @ CommandResult::InvalidIsr { .. }) => {
                    tracing::info!(topic = %p.topic, partition = p.index, result = ?refused, "ISR change refused");
                    p.abandon_isr_proposal(&proposal);
                }
                Ok(other) => {
                    tracing::info!(topic = %p.topic, partition = p.index, result = ?other, "ISR change refused")
                }
                Err(e) => {
                    tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "ISR change not committed")
                }
            }
        }
    }

    // ---- idempotent producers ----

    /// A producer id unique in the cluster (InitProducerId). Ids come in blocks from the
    /// metadata quorum, so a restarted or another broker never hands out the same id.
    pub async fn allocate_producer_id(&self) -> Result<i64> {
        let mut block = self.producer_ids.lock().await;
        if block.is_empty() {
            let cmd = MetadataCommand::AllocateProducerIds {
                broker_id: self.config.node_id,
                count: PRODUCER_ID_BLOCK,
            };
            match self.metadata.propose(cmd).await.map_err(metadata_error)? {
                CommandResult::ProducerIds { first, count } => *block = first..first + count,
                other => return Err(command_error(other)),
            }
        }
        let id = block.start;
        block.start += 1;
        Ok(id)
    }

    // ---- lookups ----

    pub fn topic(&self, name: &str) -> Option<Topic> {
        self.cluster().topics.get(name).map(Topic::from_state)
    }

    pub fn topics(&self) -> Vec<Topic> {
        self.cluster()
            .topics
            .values()
            .map(Topic::from_state)
            .collect()
    }

    /// This node's replica of a partition. A partition that exists elsewhere gets
    /// NOT_LEADER_OR_FOLLOWER, so clients refresh their metadata.
    pub fn partition(&self, topic: &str, index: i32) -> Result<Arc<Partition>> {
        if let Some(r) = self
            .replicas
            .read()
            .map_err(|_| poisoned())?
            .get(&(topic.to_string(), index))
        {
            return Ok(Arc::clone(&r.partition));
        }
        let exists = self.cluster().partition(topic, index).is_some();
        if exists {
            Err(CoreError::NotLeaderOrFollower(format!(
                "{topic}-{index} has no replica on broker {}",
                self.config.node_id
            )))
        } else {
            Err(CoreError::UnknownTopicOrPartition(format!(
                "{topic}-{index}"
            )))
        }
    }

    /// The topic, auto-creating it (with `num.partitions`) if `auto.create.topics.enable`
    /// and the caller allows it, as Kafka does for Metadata requests.
    pub async fn topic_or_auto_create(&self, name: &str, allow: bool) -> Result<Topic> {
        if let Some(t) = self.topic(name) {
            return Ok(t);
        }
        if !(allow && self.config.auto_create_topics) {
            return Err(CoreError::UnknownTopicOrPartition(name.to_string()));
        }
        match self.create_topic(name, -1, -1, &[], false).await {
            Ok(t) => {
                tracing::info!(topic = name, "auto-created topic");
                Ok(t)
            }
            Err(CoreError::TopicAlreadyExists(_)) => self
                .topic(name)
                .ok_or_else(|| CoreError::UnknownTopicOrPartition(name.to_string())),
            Err(e) => Err(e),
        }
    }

    // ---- admin ----

    /// CreateTopics. `partitions` / `replication_factor` of -1 mean the broker defaults.
    /// Replicas are spread over the live brokers; the first of each is its preferred leader.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(String, String)],
        validate_only: bool,
    ) -> Result<Topic> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(CoreError::ShuttingDown);
        }
        validate_topic_name(name)?;
        let partitions = if partitions == -1 {
            self.config.num_partitions
        } else {
            partitions
        };
        if partitions < 1 {
            return Err(CoreError::InvalidPartitions(format!(
                "number of partitions must be at least 1, got {partitions}"
            )));
        }
        check_partition_limit(partitions)?;
        let rf = if replication_factor == -1 {
            self.config.default_replication_factor
        } else {
            replication_factor
        };
        if rf < 1 {
            return Err(CoreError::InvalidReplicationFactor(format!(
                "replication factor must be at least 1, got {rf}"
            )));
        }
        let mut overrides = BTreeMap::new();
        for (k, v) in configs {
            validate_topic_config(k, v)?;
            overrides.insert(k.clone(), v.clone());
        }
        let state = self.cluster();
        if state.topics.contains_key(name) {
            return Err(CoreError::TopicAlreadyExists(name.to_string()));
        }
        let start = rand_start(state.brokers.len());
        let assignments = assign_replicas(&state, partitions, rf, start)
            .map_err(CoreError::InvalidReplicationFactor)?;
        let id = Uuid::new_v4();
        let topic = Topic {
            name: name.to_string(),
            id,
            replication_factor: rf,
            configs: overrides.clone(),
            partitions: Vec::new(),
        };
        if validate_only {
            return Ok(topic);
        }
        let cmd = MetadataCommand::CreateTopic {
            name: name.to_string(),
            id,
            partitions: assignments,
            configs: overrides,
        };
        self.propose_creation(name, id, cmd).await
    }

    /// CreateTopics with an explicit replica assignment (one broker list per partition).
    pub async fn create_topic_with_assignments(
        &self,
        name: &str,
        assignments: Vec<Vec<i32>>,
        configs: &[(String, String)],
        validate_only: bool,
    ) -> Result<Topic> {
        validate_topic_name(name)?;
        check_partition_limit(assignments.len() as i32)?;
        let state = self.cluster();
        let rf = assignments.first().map_or(0, Vec::len);
        for replicas in &assignments {
            if replicas.is_empty() || replicas.len() != rf {
                return Err(CoreError::InvalidReplicaAssignment(
                    "every partition needs the same, non-zero number of replicas".into(),
                ));
            }
            if let Some(b) = replicas.iter().find(|b| !state.brokers.contains_key(b)) {
                return Err(CoreError::InvalidReplicaAssignment(format!(
                    "replica assignment names unknown broker {b}"
                )));
            }
            let unique: BTreeSet<_> = replicas.iter().collect();
            if unique.len() != replicas.len() {
                return Err(CoreError::InvalidReplicaAssignment(format!(
                    "duplicate broker in replica assignment {replicas:?}"
                )));
            }
        }
        let mut overrides = BTreeMap::new();
        for (k, v) in configs {
            validate_topic_config(k, v)?;
            overrides.insert(k.clone(), v.clone());
        }
        if state.topics.contains_key(name) {
            return Err(CoreError::TopicAlreadyExists(name.to_string()));
        }
        let id = Uuid::new_v4();
        if validate_only {
            return Ok(Topic {
                name: name.to_string(),
                id,
                replication_factor: rf as i16,
                configs: overrides,
                partitions: Vec::new(),
            });
        }
        let cmd = MetadataCommand::CreateTopic {
            name: name.to_string(),
            id,
            partitions: assignments
                .into_iter()
                .map(|replicas| arctern_metadata::PartitionAssignment { replicas })
                .collect(),
            configs: overrides,
        };
        self.propose_creation(name, id, cmd).await
    }

    async fn propose_creation(&self, name: &str, id: Uuid, cmd: MetadataCommand) -> Result<Topic> {
        match self.metadata.propose(cmd).await.map_err(metadata_error)? {
            CommandResult::Ok => {}
            CommandResult::TopicExists { .. } => {
                // Our own retried proposal, or a concurrent creation.
                if self.topic(name).is_some_and(|t| t.id != id) {
                    return Err(CoreError::TopicAlreadyExists(name.to_string()));
                }
            }
            other => return Err(command_error(other)),
        }
        self.reconcile_now();
        tracing::info!(topic = name, "created topic");
        self.topic(name)
            .ok_or_else(|| CoreError::UnknownTopicOrPartition(name.to_string()))
    }

    pub async fn delete_topic(&self, name: &str) -> Result<Uuid> {
        let topic = self
            .topic(name)
            .ok_or_else(|| CoreError::UnknownTopicOrPartition(name.to_string()))?;
        let cmd = MetadataCommand::DeleteTopic {
            name: name.to_string(),
        };
        match self.metadata.propose(cmd).await.map_err(metadata_error)? {
            CommandResult::Ok | CommandResult::UnknownTopic { .. } => {}
            other => return Err(command_error(other)),
        }
        self.reconcile_now();
        tracing::info!(topic = name, "deleted topic");
        Ok(topic.id)
    }

    /// Commits a change to the AMQP durable definitions through the metadata quorum
    /// (returns once it is committed and applied here).
    pub async fn amqp_define(&self, change: arctern_metadata::AmqpChange) -> Result<()> {
        self.amqp_define_in(arctern_metadata::DEFAULT_VHOST, change)
            .await
    }

    /// [`Broker::amqp_define`] for the definitions of one vhost.
    pub async fn amqp_define_in(
        &self,
        vhost: &str,
        change: arctern_metadata::AmqpChange,
    ) -> Result<()> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(CoreError::ShuttingDown);
        }
        let cmd = MetadataCommand::AmqpDefine {
            change,
            vhost: vhost.to_string(),
        };
        match self.metadata.propose(cmd).await.map_err(metadata_error)? {
            CommandResult::Ok => Ok(()),
            other => Err(command_error(other)),
        }
    }

    /// CreatePartitions: grow a topic to `count` partitions.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<()> {
        let state = self.cluster();
        let topic = state
            .topics
            .get(name)
            .ok_or_else(|| CoreError::UnknownTopicOrPartition(name.to_string()))?;
        let current = topic.partitions.len() as i32;
        if count <= current {
            return Err(CoreError::InvalidPartitions(format!(
                "topic currently has {current} partitions, which is higher than or equal to the requested {count}"
            )));
        }
        check_partition_limit(count)?;
        let rf = topic
            .partitions
            .first()
            .map_or(1, |p| p.replicas.len() as i16);
        let mut assignments =
            assign_replicas(&state, count, rf, 0).map_err(CoreError::InvalidReplicationFactor)?;
        let new_partitions = assignments.split_off(current as usize);
        if validate_only {
            return Ok(());
        }
        let cmd = MetadataCommand::CreatePartitions {
            topic: name.to_string(),
            new_partitions,
        };
        match self.metadata.propose(cmd).await.map_err(metadata_error)? {
            CommandResult::Ok => {}
            other => return Err(command_error(other)),
        }
        self.reconcile_now();
        tracing::info!(
            topic = name,
            from = current,
            to = count,
            "created partitions"
        );
        Ok(())
    }

    pub fn describe_configs(&self, name: &str) -> Result<Vec<ConfigEntry>> {
        let topic = self
            .topic(name)
            .ok_or_else(|| CoreError::UnknownTopicOrPartition(name.to_string()))?;
        Ok(self.topic_defaults().describe(&topic.configs))
    }

    /// The broker's static settings by Kafka name (DescribeConfigs on the BROKER resource).
    fn static_broker_configs(&self) -> Vec<(&'static str, String)> {
        let c = &self.config;
        let d = &c.topic_defaults;
        let entries: [(&str, String); 21] = [
            ("node.id", c.node_id.to_string()),
            ("log.dirs", c.data_dir.display().to_string()),
            (
                "auto.create.topics.enable",
                c.auto_create_topics.to_string(),
            ),
            ("num.partitions", c.num_partitions.to_string()),
            (
                "default.replication.factor",
                c.default_replication_factor.to_string(),
            ),
            (
                "log.retention.check.interval.ms",
                c.retention_check_interval_ms.to_string(),
            ),
            ("log.segment.bytes", d.segment_bytes.to_string()),
            ("log.roll.ms", d.segment_ms.to_string()),
            ("log.retention.ms", d.retention_ms.to_string()),
            ("log.retention.bytes", d.retention_bytes.to_string()),
            ("message.max.bytes", d.max_message_bytes.to_string()),
            (
                "log.index.interval.bytes",
                d.index_interval_bytes.to_string(),
            ),
            ("log.flush.interval.messages", d.flush_messages.to_string()),
            ("log.flush.interval.ms", d.flush_ms.to_string()),
            ("min.insync.replicas", d.min_insync_replicas.to_string()),
            (
                "unclean.leader.election.enable",
                d.unclean_leader_election.to_string(),
            ),
            (
                "replica.lag.time.max.ms",
                d.replica_lag_time_max_ms.to_string(),
            ),
            (
                "replica.fetch.max.bytes",
                c.replica_fetch_max_bytes.to_string(),
            ),
            (
                "replica.fetch.wait.max.ms",
                c.replica_fetch_wait_max_ms.to_string(),
            ),
            (
                "controlled.shutdown.enable",
                c.controlled_shutdown.to_string(),
            ),
            (
                "producer.id.expiration.ms",
                d.producer_id_expiration_ms.to_string(),
            ),
        ];
        entries.into()
    }

    /// IncrementalAlterConfigs on a topic: all ops are validated before any is applied.
    pub async fn alter_configs(
        &self,
        name: &str,
        ops: &[AlterOp],
        validate_only: bool,
    ) -> Result<()> {
        let topic = self
            .topic(name)
            .ok_or_else(|| CoreError::UnknownTopicOrPartition(name.to_string()))?;
        let mut overrides = topic.configs.clone();
        for op in ops {
            match op {
                AlterOp::Set(k, v) => {
                    validate_topic_config(k, v)?;
                    overrides.insert(k.clone(), v.clone());
                }
                AlterOp::Delete(k) => {
                    if !is_topic_config(k) {
                        return Err(CoreError::InvalidConfig(format!(
                            "unknown topic config '{k}'"
                        )));
                    }
                    overrides.remove(k);
                }
                AlterOp::Append(k, v) | AlterOp::Subtract(k, v) => {
                    if !is_list_config(k) {
                        return Err(CoreError::InvalidConfig(format!(
                            "{k} is not a list config; APPEND and SUBTRACT apply only to list configs"
                        )));
                    }
                    let current = overrides
                        .get(k)
                        .cloned()
                        .unwrap_or_else(|| self.topic_defaults().default_value(k));
                    let mut items: Vec<String> = current
                        .split(',')
                        .map(str::trim)
                        .filter(|i| !i.is_empty())
                        .map(String::from)
                        .collect();
                    for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                        if matches!(op, AlterOp::Append(..)) {
                            if !items.iter().any(|i| i == item) {
                                items.push(item.to_string());
                            }
                        } else {
                            items.retain(|i| i != item);
                        }
                    }
                    let joined = items.join(",");
                    validate_topic_config(k, &joined)?;
                    overrides.insert(k.clone(), joined);
                }
            }
        }
        if validate_only {
            return Ok(());
        }
        let delete = topic
            .configs
            .keys()
            .filter(|k| !overrides.contains_key(*k))
            .cloned()
            .collect();
        let cmd = MetadataCommand::AlterTopicConfigs {
            topic: name.to_string(),
            set: overrides,
            delete,
        };
        match self.metadata.propose(cmd).await.map_err(metadata_error)? {
            CommandResult::Ok => {}
            other => return Err(command_error(other)),
        }
        self.reconcile_now();
        tracing::info!(topic = name, ?ops, "altered topic configs");
        Ok(())
    }

    // ---- background tasks and shutdown ----

    /// Starts the retention task (`log.retention.check.interval.ms`).
    fn spawn_retention(self: &Arc<Self>) {
        let broker = Arc::downgrade(self);
        let every = Duration::from_millis(self.config.retention_check_interval_ms.max(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(broker) = broker.upgrade() else {
                    break;
                };
                if broker.shutting_down.load(Ordering::Acquire) {
                    break;
                }
                broker.run_retention();
            }
        });
    }

    pub fn run_retention(&self) {
        let all = self.local_partitions();
        for p in all {
            if let Err(e) = p.apply_retention() {
                tracing::error!(topic = %p.topic, partition = p.index, error = %e, "retention failed");
            }
        }
    }

    /// Controlled shutdown (`controlled.shutdown.enable`): asks the quorum to fence this
    /// broker, which moves its leaderships to other in-sync replicas, before it stops. Skipped
    /// when no other broker is registered. Bounded: without a quorum the broker stops anyway.
    pub async fn controlled_shutdown(&self) {
        let others = self.cluster().brokers.len() > 1;
        if !self.config.controlled_shutdown || !others {
            return;
        }
        tracing::info!("controlled shutdown: moving leadership away");
        match self
            .metadata
            .controlled_shutdown(
                self.config.node_id,
                self.incarnation,
                CONTROLLED_SHUTDOWN_TIMEOUT,
            )
            .await
        {
            Ok(()) => {
                self.reconcile_now();
                tracing::info!("controlled shutdown: leadership moved");
            }
            Err(e) => tracing::warn!(error = %e, "controlled shutdown incomplete; stopping anyway"),
        }
    }

    /// Stops replication, flushes and closes every log, marking each clean so restart skips
    /// recovery.
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        if let Ok(mut h) = self.heartbeats.lock() {
            h.take();
        }
        if let Ok(mut fetchers) = self.fetchers.lock() {
            for (_, f) in fetchers.drain() {
                f.task.abort();
            }
        }
        let all = self.local_partitions();
        for p in all {
            if let Err(e) = p.close() {
                tracing::error!(topic = %p.topic, partition = p.index, error = %e, "closing partition");
            }
        }
        tracing::info!("broker storage closed");
    }
}

fn command_error(result: CommandResult) -> CoreError {
    match result {
        CommandResult::TopicExists { name } => CoreError::TopicAlreadyExists(name),
        CommandResult::UnknownTopic { name } => CoreError::UnknownTopicOrPartition(name),
        CommandResult::UnknownPartition { topic, partition } => {
            CoreError::UnknownTopicOrPartition(format!("{topic}-{partition}"))
        }
        CommandResult::InvalidReplicaAssignment { reason } => {
            CoreError::InvalidReplicaAssignment(reason)
        }
        CommandResult::UnknownBroker { broker_id } => {
            CoreError::InvalidReplicaAssignment(format!("broker {broker_id} is not registered"))
        }
        other => CoreError::InvalidRequest(format!("metadata refused the change: {other:?}")),
    }
}

/// A start index for replica placement that differs between topics (Kafka picks it at
/// random, so preferred leaders spread over the brokers).
fn rand_start(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    (Uuid::new_v4().as_u128() % n as u128) as usize
}

fn read_partition_topic_id(dir: &Path) -> Option<Uuid> {
    let text = std::fs::read_to_string(dir.join(PARTITION_METADATA_FILE)).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("topic_id:"))
        .and_then(|v| Uuid::parse_str(v.trim()).ok())
}

fn write_partition_topic_id(dir: &Path, id: Uuid) -> Result<()> {
    if read_partition_topic_id(dir) == Some(id) {
        return Ok(());
    }
    let path = dir.join(PARTITION_METADATA_FILE);
    let tmp = dir.join(format!("{PARTITION_METADATA_FILE}.tmp"));
    let io = |e: std::io::Error| CoreError::Storage(format!("writing {}: {e}", path.display()));
    // Kafka's partition.metadata format.
    let text = format!("version: 0\ntopic_id: {id}\n");
    let f = std::fs::File::create(&tmp).map_err(io)?;
    std::io::Write::write_all(&mut &f, text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    // The rename is durable only once the directory is fsynced.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}
