//! The broker: the set of topics, their persistent metadata, and background retention.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use crate::config::{
    is_list_config, is_topic_config, validate_topic_config, validate_topic_name, BrokerConfig,
    ConfigEntry, TopicSettings,
};
use crate::error::{CoreError, Result};
use crate::metadata::{MetadataStore, TopicRecord};
use crate::partition::Partition;

/// Upper bound on a topic's partitions, so one request cannot open unbounded files.
const MAX_PARTITIONS: i32 = 100_000;

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

#[derive(Debug)]
pub struct Topic {
    pub name: String,
    pub id: Uuid,
    pub replication_factor: i16,
    overrides: RwLock<BTreeMap<String, String>>,
    partitions: RwLock<Vec<Arc<Partition>>>,
}

impl Topic {
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .map(|p| p.clone())
            .unwrap_or_default()
    }

    pub fn partition(&self, index: i32) -> Option<Arc<Partition>> {
        let parts = self.partitions.read().ok()?;
        usize::try_from(index)
            .ok()
            .and_then(|i| parts.get(i).cloned())
    }

    pub fn partition_count(&self) -> i32 {
        self.partitions.read().map_or(0, |p| p.len() as i32)
    }

    pub fn overrides(&self) -> BTreeMap<String, String> {
        self.overrides.read().map(|o| o.clone()).unwrap_or_default()
    }

    fn record(&self) -> TopicRecord {
        TopicRecord {
            name: self.name.clone(),
            id: self.id,
            partitions: self.partition_count(),
            replication_factor: self.replication_factor,
            configs: self.overrides(),
        }
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
pub struct Broker {
    config: BrokerConfig,
    store: MetadataStore,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serializes metadata changes so the persisted document matches memory.
    metadata_lock: Mutex<()>,
    data_changed: Arc<watch::Sender<u64>>,
    shutting_down: AtomicBool,
    /// Held (flock) for the broker's lifetime.
    _dir_lock: std::fs::File,
}

impl Broker {
    /// Loads metadata and opens (recovering) every partition log. Call inside tokio.
    pub fn open(config: BrokerConfig) -> Result<Arc<Broker>> {
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
        let store = MetadataStore::new(&config.data_dir);
        let records = store.load()?;
        let (data_changed, _) = watch::channel(0u64);
        let broker = Arc::new(Broker {
            config,
            store,
            topics: RwLock::new(BTreeMap::new()),
            metadata_lock: Mutex::new(()),
            data_changed: Arc::new(data_changed),
            shutting_down: AtomicBool::new(false),
            _dir_lock: lock,
        });
        broker.remove_deleted_dirs();
        for rec in records {
            let topic = broker.open_topic(&rec)?;
            broker
                .topics
                .write()
                .map_err(|_| poisoned())?
                .insert(rec.name.clone(), topic);
        }
        tracing::info!(
            data_dir = %broker.config.data_dir.display(),
            topics = broker.topics.read().map_or(0, |t| t.len()),
            "broker opened"
        );
        Ok(broker)
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// Receives a new value whenever any partition's high watermark advances.
    pub fn subscribe_data_changes(&self) -> watch::Receiver<u64> {
        self.data_changed.subscribe()
    }

    fn partition_dir(&self, topic: &str, index: i32) -> PathBuf {
        self.config.data_dir.join(format!("{topic}-{index}"))
    }

    fn open_topic(&self, rec: &TopicRecord) -> Result<Arc<Topic>> {
        let settings = self.config.topic_defaults.settings(&rec.configs);
        let mut partitions = Vec::with_capacity(rec.partitions.max(0) as usize);
        for index in 0..rec.partitions {
            partitions.push(self.open_partition(&rec.name, index, &settings)?);
        }
        Ok(Arc::new(Topic {
            name: rec.name.clone(),
            id: rec.id,
            replication_factor: rec.replication_factor,
            overrides: RwLock::new(rec.configs.clone()),
            partitions: RwLock::new(partitions),
        }))
    }

    fn open_partition(
        &self,
        topic: &str,
        index: i32,
        settings: &TopicSettings,
    ) -> Result<Arc<Partition>> {
        Partition::open(
            topic,
            index,
            &self.partition_dir(topic, index),
            settings.clone(),
            Arc::clone(&self.data_changed),
        )
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

    /// The persisted form of every topic, as held in memory now.
    fn records(&self) -> Result<Vec<TopicRecord>> {
        Ok(self
            .topics
            .read()
            .map_err(|_| poisoned())?
            .values()
            .map(|t| t.record())
            .collect())
    }

    fn persist(&self) -> Result<()> {
        let records = self.records()?;
        self.store.save(&records)
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().ok()?.get(name).cloned()
    }

    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics
            .read()
            .map(|t| t.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn partition(&self, topic: &str, index: i32) -> Result<Arc<Partition>> {
        self.topic(topic)
            .and_then(|t| t.partition(index))
            .ok_or_else(|| CoreError::UnknownTopicOrPartition(format!("{topic}-{index}")))
    }

    /// The topic, auto-creating it (with `num.partitions`) if `auto.create.topics.enable`
    /// and the caller allows it, as Kafka does for Metadata requests.
    pub fn topic_or_auto_create(&self, name: &str, allow: bool) -> Result<Arc<Topic>> {
        if let Some(t) = self.topic(name) {
            return Ok(t);
        }
        if !(allow && self.config.auto_create_topics) {
            return Err(CoreError::UnknownTopicOrPartition(name.to_string()));
        }
        match self.create_topic(name, -1, -1, &[], false) {
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

    /// CreateTopics. `partitions` / `replication_factor` of -1 mean the broker defaults.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(String, String)],
        validate_only: bool,
    ) -> Result<Arc<Topic>> {
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
        if rf > 1 {
            return Err(CoreError::InvalidReplicationFactor(format!(
                "replication factor {rf} is larger than the number of available brokers (1)"
            )));
        }
        let mut overrides = BTreeMap::new();
        for (k, v) in configs {
            validate_topic_config(k, v)?;
            overrides.insert(k.clone(), v.clone());
        }
        let _guard = self.metadata_lock.lock().map_err(|_| poisoned())?;
        if self.topic(name).is_some() {
            return Err(CoreError::TopicAlreadyExists(name.to_string()));
        }
        let rec = TopicRecord {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partitions,
            replication_factor: rf,
            configs: overrides,
        };
        let provisional = Arc::new(Topic {
            name: rec.name.clone(),
            id: rec.id,
            replication_factor: rf,
            overrides: RwLock::new(rec.configs.clone()),
            partitions: RwLock::new(Vec::new()),
        });
        if validate_only {
            return Ok(provisional);
        }
        // Metadata first: a crash after this reopens the topic with empty logs.
        let mut records = self.records()?;
        records.push(rec.clone());
        self.store.save(&records)?;
        let topic = self.open_topic(&rec)?;
        self.topics
            .write()
            .map_err(|_| poisoned())?
            .insert(name.to_string(), Arc::clone(&topic));
        tracing::info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    pub fn delete_topic(&self, name: &str) -> Result<Uuid> {
        let _guard = self.metadata_lock.lock().map_err(|_| poisoned())?;
        let topic = self
            .topics
            .write()
            .map_err(|_| poisoned())?
            .remove(name)
            .ok_or_else(|| CoreError::UnknownTopicOrPartition(name.to_string()))?;
        self.persist()?;
        for p in topic.partitions() {
            if let Err(e) = p.close() {
                tracing::warn!(topic = name, partition = p.index, error = %e, "closing partition of deleted topic");
            }
            let dir = self.partition_dir(name, p.index);
            let doomed =
                dir.with_file_name(format!("{name}-{}.{}.deleted", p.index, topic.id.simple()));
            if let Err(e) =
                std::fs::rename(&dir, &doomed).and_then(|_| std::fs::remove_dir_all(&doomed))
            {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove log dir of deleted topic");
            }
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(topic.id)
    }

    /// CreatePartitions: grow a topic to `count` partitions.
    pub fn create_partitions(&self, name: &str, count: i32, validate_only: bool) -> Result<()> {
        let _guard = self.metadata_lock.lock().map_err(|_| poisoned())?;
        let topic = self
            .topic(name)
            .ok_or_else(|| CoreError::UnknownTopicOrPartition(name.to_string()))?;
        let current = topic.partition_count();
        if count <= current {
            return Err(CoreError::InvalidPartitions(format!(
                "topic currently has {current} partitions, which is higher than or equal to the requested {count}"
            )));
        }
        check_partition_limit(count)?;
        if validate_only {
            return Ok(());
        }
        let mut records = self.records()?;
        if let Some(r) = records.iter_mut().find(|r| r.name == name) {
            r.partitions = count;
        }
        self.store.save(&records)?;
        let settings = self.config.topic_defaults.settings(&topic.overrides());
        let mut added = Vec::new();
        for index in current..count {
            added.push(self.open_partition(name, index, &settings)?);
        }
        topic
            .partitions
            .write()
            .map_err(|_| poisoned())?
            .extend(added);
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
        Ok(self.config.topic_defaults.describe(&topic.overrides()))
    }

    /// DescribeConfigs on the broker resource: the static broker settings, read-only
    /// (dynamic broker configs are not supported).
    pub fn describe_broker_configs(&self) -> Vec<ConfigEntry> {
        let c = &self.config;
        let d = &c.topic_defaults;
        let entries: [(&str, String); 16] = [
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
        ];
        entries
            .into_iter()
            .map(|(name, value)| ConfigEntry {
                name: name.to_string(),
                value,
                source: crate::config::ConfigSource::BrokerDefault,
                read_only: true,
            })
            .collect()
    }

    /// IncrementalAlterConfigs on a topic: all ops are validated before any is applied.
    pub fn alter_configs(&self, name: &str, ops: &[AlterOp], validate_only: bool) -> Result<()> {
        let _guard = self.metadata_lock.lock().map_err(|_| poisoned())?;
        let topic = self
            .topic(name)
            .ok_or_else(|| CoreError::UnknownTopicOrPartition(name.to_string()))?;
        let mut overrides = topic.overrides();
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
                        .unwrap_or_else(|| self.config.topic_defaults.default_value(k));
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
        *topic.overrides.write().map_err(|_| poisoned())? = overrides.clone();
        self.persist()?;
        let settings = self.config.topic_defaults.settings(&overrides);
        for p in topic.partitions() {
            p.apply_settings(settings.clone())?;
        }
        tracing::info!(topic = name, ?ops, "altered topic configs");
        Ok(())
    }

    /// Starts the retention task (`log.retention.check.interval.ms`).
    pub fn start_background_tasks(self: &Arc<Self>) {
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
        for topic in self.topics() {
            for p in topic.partitions() {
                if let Err(e) = p.apply_retention() {
                    tracing::error!(topic = %topic.name, partition = p.index, error = %e, "retention failed");
                }
            }
        }
    }

    /// Flushes and closes every log, marking each clean so restart skips recovery.
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        for topic in self.topics() {
            for p in topic.partitions() {
                if let Err(e) = p.close() {
                    tracing::error!(topic = %topic.name, partition = p.index, error = %e, "closing partition");
                }
            }
        }
        tracing::info!("broker storage closed");
    }
}
