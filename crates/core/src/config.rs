//! Broker settings and per-topic configs, with Kafka's key names and semantics.

use std::collections::BTreeMap;
use std::path::PathBuf;

use arctern_storage::LogConfig;

use crate::error::CoreError;

/// Broker-wide settings (the `[broker]`-level keys of the TOML config).
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub data_dir: PathBuf,
    pub node_id: i32,
    /// Host and port advertised in Metadata responses.
    pub advertised_host: String,
    pub advertised_port: i32,
    /// `auto.create.topics.enable`
    pub auto_create_topics: bool,
    /// `num.partitions`: partitions of an auto-created topic or CreateTopics with -1.
    pub num_partitions: i32,
    /// `default.replication.factor`
    pub default_replication_factor: i16,
    /// `log.retention.check.interval.ms`
    pub retention_check_interval_ms: u64,
    /// Defaults for topic configs (`log.segment.bytes`, `log.retention.ms`, ...).
    pub topic_defaults: TopicDefaults,
    /// Follower fetching (`replica.fetch.*`).
    pub replica_fetch_max_bytes: i32,
    pub replica_fetch_wait_max_ms: i32,
    /// `controlled.shutdown.enable`: move leadership away before stopping.
    pub controlled_shutdown: bool,
}

/// Broker-level defaults that each topic config falls back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDefaults {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub retention_bytes: i64,
    pub retention_ms: i64,
    pub max_message_bytes: i64,
    pub index_interval_bytes: i64,
    /// Arctern's default is 1: fsync before acknowledging (Kafka's is Long.MAX_VALUE,
    /// leaving durability to replication).
    pub flush_messages: i64,
    pub flush_ms: i64,
    pub min_insync_replicas: i64,
    pub unclean_leader_election: bool,
    /// `replica.lag.time.max.ms` (a broker setting in Kafka; every partition uses it).
    pub replica_lag_time_max_ms: i64,
    /// `producer.id.expiration.ms` (a broker setting in Kafka): an idempotent producer
    /// silent this long is forgotten by every partition.
    pub producer_id_expiration_ms: i64,
}

impl Default for TopicDefaults {
    fn default() -> Self {
        let log = LogConfig::default();
        TopicDefaults {
            segment_bytes: log.segment_bytes,
            segment_ms: log.segment_ms,
            retention_bytes: log.retention_bytes,
            retention_ms: log.retention_ms,
            max_message_bytes: log.max_message_bytes as i64,
            index_interval_bytes: log.index_interval_bytes as i64,
            flush_messages: 1,
            flush_ms: i64::MAX,
            min_insync_replicas: 1,
            unclean_leader_election: false,
            replica_lag_time_max_ms: 30_000,
            producer_id_expiration_ms: 86_400_000,
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            data_dir: PathBuf::from("arctern-data"),
            node_id: 1,
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            auto_create_topics: true,
            num_partitions: 1,
            default_replication_factor: 1,
            retention_check_interval_ms: 300_000,
            topic_defaults: TopicDefaults::default(),
            replica_fetch_max_bytes: 1_048_576,
            replica_fetch_wait_max_ms: 500,
            controlled_shutdown: true,
        }
    }
}

/// How a config's value was determined (DescribeConfigs `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    TopicOverride,
    BrokerDefault,
    Default,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: String,
    pub source: ConfigSource,
    pub read_only: bool,
}

/// The effective settings of one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSettings {
    pub log: LogConfig,
    pub flush_messages: i64,
    pub flush_ms: i64,
    pub min_insync_replicas: i64,
    pub replica_lag_time_max_ms: i64,
    pub producer_id_expiration_ms: i64,
}

impl TopicSettings {
    /// True when every acknowledged write must be fsynced first (`flush.messages` <= 1).
    pub fn fsync_before_ack(&self) -> bool {
        self.flush_messages <= 1
    }
}

/// Config keys a topic accepts, and whether a value is valid for each.
const TOPIC_KEYS: &[&str] = &[
    "cleanup.policy",
    "compression.type",
    "flush.messages",
    "flush.ms",
    "index.interval.bytes",
    "max.message.bytes",
    "message.timestamp.type",
    "min.insync.replicas",
    "preallocate",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.ms",
    "unclean.leader.election.enable",
];

fn parse_long(key: &str, v: &str, min: i64) -> Result<i64, CoreError> {
    let n: i64 = v
        .trim()
        .parse()
        .map_err(|_| CoreError::InvalidConfig(format!("{key}: '{v}' is not a number")))?;
    if n < min {
        return Err(CoreError::InvalidConfig(format!(
            "{key}: {n} is below the minimum {min}"
        )));
    }
    Ok(n)
}

/// Configs whose value is a comma-separated list (IncrementalAlterConfigs APPEND/SUBTRACT).
pub fn is_list_config(key: &str) -> bool {
    key == "cleanup.policy"
}

pub fn is_topic_config(key: &str) -> bool {
    TOPIC_KEYS.contains(&key)
}

/// Checks one topic config key/value pair.
pub fn validate_topic_config(key: &str, value: &str) -> Result<(), CoreError> {
    match key {
        "cleanup.policy" => match value {
            "delete" => Ok(()),
            _ => Err(CoreError::InvalidConfig(format!(
                "cleanup.policy={value} is not supported (only 'delete'; compaction is not implemented)"
            ))),
        },
        "compression.type" => match value {
            "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd" => Ok(()),
            _ => Err(CoreError::InvalidConfig(format!("compression.type: unknown codec '{value}'"))),
        },
        "message.timestamp.type" => match value {
            "CreateTime" => Ok(()),
            _ => Err(CoreError::InvalidConfig(format!(
                "message.timestamp.type={value} is not supported (only CreateTime)"
            ))),
        },
        "unclean.leader.election.enable" | "preallocate" => match value {
            "true" | "false" => Ok(()),
            _ => Err(CoreError::InvalidConfig(format!("{key}: expected true or false"))),
        },
        "segment.bytes" => parse_long(key, value, 14).and_then(|n| {
            if n > i64::from(i32::MAX) {
                Err(CoreError::InvalidConfig(format!("segment.bytes: {n} exceeds {}", i32::MAX)))
            } else {
                Ok(())
            }
        }),
        "segment.ms" | "max.message.bytes" | "index.interval.bytes" => parse_long(key, value, 0).map(drop),
        "flush.messages" | "flush.ms" | "min.insync.replicas" => parse_long(key, value, 1).map(drop),
        "retention.bytes" | "retention.ms" => parse_long(key, value, -1).map(drop),
        // Arctern's own (see `arctern_metadata::LEADER_FOLLOWS_CONFIG`).
        "leader.follows" if !value.is_empty() => Ok(()),
        _ => Err(CoreError::InvalidConfig(format!("unknown topic config '{key}'"))),
    }
}

impl TopicDefaults {
    pub fn default_value(&self, key: &str) -> String {
        match key {
            "cleanup.policy" => "delete".into(),
            "compression.type" => "producer".into(),
            "message.timestamp.type" => "CreateTime".into(),
            "flush.messages" => self.flush_messages.to_string(),
            "flush.ms" => self.flush_ms.to_string(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "min.insync.replicas" => self.min_insync_replicas.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "retention.ms" => self.retention_ms.to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "unclean.leader.election.enable" => self.unclean_leader_election.to_string(),
            "preallocate" => "false".into(),
            _ => String::new(),
        }
    }

    /// All topic configs: overrides where set, else broker defaults.
    pub fn describe(&self, overrides: &BTreeMap<String, String>) -> Vec<ConfigEntry> {
        TOPIC_KEYS
            .iter()
            .map(|key| match overrides.get(*key) {
                Some(v) => ConfigEntry {
                    name: (*key).into(),
                    value: v.clone(),
                    source: ConfigSource::TopicOverride,
                    read_only: false,
                },
                None => ConfigEntry {
                    name: (*key).into(),
                    value: self.default_value(key),
                    source: ConfigSource::BrokerDefault,
                    read_only: false,
                },
            })
            .collect()
    }

    /// Effective settings for a topic with `overrides` (already validated).
    pub fn settings(&self, overrides: &BTreeMap<String, String>) -> TopicSettings {
        let long = |key: &str, default: i64| {
            overrides
                .get(key)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(default)
        };
        TopicSettings {
            log: LogConfig {
                segment_bytes: long("segment.bytes", self.segment_bytes as i64).max(14) as u64,
                segment_ms: long("segment.ms", self.segment_ms),
                retention_bytes: long("retention.bytes", self.retention_bytes),
                retention_ms: long("retention.ms", self.retention_ms),
                max_message_bytes: long("max.message.bytes", self.max_message_bytes).max(0)
                    as usize,
                index_interval_bytes: long("index.interval.bytes", self.index_interval_bytes).max(1)
                    as u64,
                preallocate: overrides.get("preallocate").is_some_and(|v| v == "true"),
            },
            flush_messages: long("flush.messages", self.flush_messages),
            flush_ms: long("flush.ms", self.flush_ms),
            min_insync_replicas: long("min.insync.replicas", self.min_insync_replicas),
            replica_lag_time_max_ms: self.replica_lag_time_max_ms,
            producer_id_expiration_ms: self.producer_id_expiration_ms,
        }
    }
}

/// Kafka's topic name rule: 1..=249 chars of [a-zA-Z0-9._-], not "." or "..".
pub fn validate_topic_name(name: &str) -> Result<(), CoreError> {
    if name.is_empty() || name.len() > 249 {
        return Err(CoreError::InvalidTopic(format!(
            "topic name length {} is not in 1..=249",
            name.len()
        )));
    }
    if name == "__cluster_metadata" {
        return Err(CoreError::InvalidTopic(
            "__cluster_metadata is reserved for the metadata quorum".into(),
        ));
    }
    if name == "." || name == ".." {
        return Err(CoreError::InvalidTopic(format!(
            "topic name cannot be '{name}'"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(CoreError::InvalidTopic(format!(
            "topic name '{name}' contains '{c}'; only ASCII alphanumerics, '.', '_' and '-' are allowed"
        )));
    }
    Ok(())
}
