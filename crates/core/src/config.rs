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
    /// Every listener's advertised endpoint (`advertised.listeners`), registered with the
    /// metadata so Metadata answers with the endpoints of the listener asked; empty: only
    /// `advertised_host`/`advertised_port` (the inter-broker listener's).
    pub advertised_listeners: Vec<arctern_metadata::ListenerEndpoint>,
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
    /// Dynamic broker configs in force on this broker (set with AlterConfigs or
    /// IncrementalAlterConfigs on the BROKER resource), by broker config name, with where
    /// each came from: they take precedence over the static settings above.
    pub dynamic: BTreeMap<String, (String, ConfigSource)>,
    /// The cluster-wide dynamic configs (also those a broker's own value hides).
    pub dynamic_cluster: BTreeMap<String, String>,
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
            dynamic: BTreeMap::new(),
            dynamic_cluster: BTreeMap::new(),
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
            advertised_listeners: Vec::new(),
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
    /// A topic's own override (Kafka's DYNAMIC_TOPIC_CONFIG).
    TopicOverride,
    /// A dynamic config of this broker (DYNAMIC_BROKER_CONFIG).
    DynamicBroker,
    /// A dynamic cluster-wide default (DYNAMIC_DEFAULT_BROKER_CONFIG).
    DynamicDefaultBroker,
    /// The broker's own settings file (STATIC_BROKER_CONFIG).
    BrokerDefault,
    /// Kafka's default (DEFAULT_CONFIG).
    Default,
}

impl ConfigSource {
    /// Kafka's DescribeConfigs source id.
    pub fn kafka_id(self) -> i8 {
        match self {
            ConfigSource::TopicOverride => 1,
            ConfigSource::DynamicBroker => 2,
            ConfigSource::DynamicDefaultBroker => 3,
            ConfigSource::BrokerDefault => 4,
            ConfigSource::Default => 5,
        }
    }
}

/// A config's type as DescribeConfigs (v3+) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean,
    String,
    Int,
    Long,
    Double,
    List,
}

impl ConfigType {
    /// Kafka's DescribeConfigs `config_type` id.
    pub fn kafka_id(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
        }
    }
}

/// One value a config could take, in precedence order (DescribeConfigs synonyms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSynonym {
    pub name: String,
    pub value: String,
    pub source: ConfigSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: String,
    pub source: ConfigSource,
    pub read_only: bool,
    pub sensitive: bool,
    pub config_type: ConfigType,
    /// The value and every lower-precedence value that would apply without it.
    pub synonyms: Vec<ConfigSynonym>,
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

/// How a config value is checked (Kafka's ConfigDef validators).
#[derive(Debug, Clone, Copy)]
enum Check {
    Bool,
    /// A Java int within the bounds.
    Int(i64, i64),
    /// A Java long of at least the bound.
    LongAtLeast(i64),
    /// Any Java long.
    Long,
    /// A double within the bounds.
    Double(f64, f64),
    /// Exactly one of these strings.
    OneOf(&'static [&'static str]),
    /// A comma-separated list of these strings.
    ListOf(&'static [&'static str]),
    /// -1 or 1..=9.
    GzipLevel,
    /// "", "*" or a list of `partition:broker` pairs.
    ThrottledReplicas,
    /// A Kafka version such as `3.0` or `3.0-IV1`.
    KafkaVersion,
    /// A string Kafka does not check.
    Any,
}

/// A topic-level config Kafka defines (`LogConfig`), with its Kafka default.
#[derive(Debug)]
pub struct TopicConfigDef {
    pub name: &'static str,
    pub config_type: ConfigType,
    /// Kafka's default; Arctern's own default for configs it enforces comes from
    /// [`TopicDefaults`] (e.g. `flush.messages` = 1).
    pub kafka_default: &'static str,
    check: Check,
    /// The broker configs that supply the default, highest priority first (Kafka's
    /// `ServerTopicConfigSynonyms`); the first one is the one settable dynamically.
    pub synonyms: &'static [&'static str],
    /// Whether Arctern acts on the config; the rest are stored and reported only.
    pub enforced: bool,
}

const LONG_MAX: &str = "9223372036854775807";
const INT_MAX: i64 = i32::MAX as i64;

macro_rules! def {
    ($name:expr, $ty:ident, $default:expr, $check:expr, [$($syn:expr),*], $enforced:expr) => {
        TopicConfigDef {
            name: $name,
            config_type: ConfigType::$ty,
            kafka_default: $default,
            check: $check,
            synonyms: &[$($syn),*],
            enforced: $enforced,
        }
    };
}

/// Every topic config of Kafka 3.9 (`LogConfig`), in name order.
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    def!(
        "cleanup.policy",
        List,
        "delete",
        Check::ListOf(&["compact", "delete"]),
        ["log.cleanup.policy"],
        true
    ),
    def!(
        "compression.gzip.level",
        Int,
        "-1",
        Check::GzipLevel,
        ["compression.gzip.level"],
        false
    ),
    def!(
        "compression.lz4.level",
        Int,
        "9",
        Check::Int(1, 17),
        ["compression.lz4.level"],
        false
    ),
    def!(
        "compression.type",
        String,
        "producer",
        Check::OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        ["compression.type"],
        false
    ),
    def!(
        "compression.zstd.level",
        Int,
        "3",
        Check::Int(-131_072, 22),
        ["compression.zstd.level"],
        false
    ),
    def!(
        "delete.retention.ms",
        Long,
        "86400000",
        Check::LongAtLeast(0),
        ["log.cleaner.delete.retention.ms"],
        false
    ),
    def!(
        "file.delete.delay.ms",
        Long,
        "60000",
        Check::LongAtLeast(0),
        ["log.segment.delete.delay.ms"],
        false
    ),
    def!(
        "flush.messages",
        Long,
        LONG_MAX,
        Check::LongAtLeast(1),
        ["log.flush.interval.messages"],
        true
    ),
    def!(
        "flush.ms",
        Long,
        LONG_MAX,
        Check::LongAtLeast(0),
        ["log.flush.interval.ms", "log.flush.scheduler.interval.ms"],
        true
    ),
    def!(
        "follower.replication.throttled.replicas",
        List,
        "",
        Check::ThrottledReplicas,
        [],
        false
    ),
    def!(
        "index.interval.bytes",
        Int,
        "4096",
        Check::Int(0, INT_MAX),
        ["log.index.interval.bytes"],
        true
    ),
    def!(
        "leader.replication.throttled.replicas",
        List,
        "",
        Check::ThrottledReplicas,
        [],
        false
    ),
    def!(
        "local.retention.bytes",
        Long,
        "-2",
        Check::LongAtLeast(-2),
        ["log.local.retention.bytes"],
        false
    ),
    def!(
        "local.retention.ms",
        Long,
        "-2",
        Check::LongAtLeast(-2),
        ["log.local.retention.ms"],
        false
    ),
    def!(
        "max.compaction.lag.ms",
        Long,
        LONG_MAX,
        Check::LongAtLeast(1),
        ["log.cleaner.max.compaction.lag.ms"],
        false
    ),
    def!(
        "max.message.bytes",
        Int,
        "1048588",
        Check::Int(0, INT_MAX),
        ["message.max.bytes"],
        true
    ),
    def!(
        "message.downconversion.enable",
        Boolean,
        "true",
        Check::Bool,
        ["log.message.downconversion.enable"],
        false
    ),
    def!(
        "message.format.version",
        String,
        "3.0-IV1",
        Check::KafkaVersion,
        ["log.message.format.version"],
        false
    ),
    def!(
        "message.timestamp.after.max.ms",
        Long,
        LONG_MAX,
        Check::LongAtLeast(0),
        ["log.message.timestamp.after.max.ms"],
        false
    ),
    def!(
        "message.timestamp.before.max.ms",
        Long,
        LONG_MAX,
        Check::LongAtLeast(0),
        ["log.message.timestamp.before.max.ms"],
        false
    ),
    def!(
        "message.timestamp.difference.max.ms",
        Long,
        LONG_MAX,
        Check::LongAtLeast(0),
        ["log.message.timestamp.difference.max.ms"],
        false
    ),
    def!(
        "message.timestamp.type",
        String,
        "CreateTime",
        Check::OneOf(&["CreateTime", "LogAppendTime"]),
        ["log.message.timestamp.type"],
        true
    ),
    def!(
        "min.cleanable.dirty.ratio",
        Double,
        "0.5",
        Check::Double(0.0, 1.0),
        ["log.cleaner.min.cleanable.ratio"],
        false
    ),
    def!(
        "min.compaction.lag.ms",
        Long,
        "0",
        Check::LongAtLeast(0),
        ["log.cleaner.min.compaction.lag.ms"],
        false
    ),
    def!(
        "min.insync.replicas",
        Int,
        "1",
        Check::Int(1, INT_MAX),
        ["min.insync.replicas"],
        true
    ),
    def!(
        "preallocate",
        Boolean,
        "false",
        Check::Bool,
        ["log.preallocate"],
        true
    ),
    def!(
        "remote.log.copy.disable",
        Boolean,
        "false",
        Check::Bool,
        [],
        false
    ),
    def!(
        "remote.log.delete.on.disable",
        Boolean,
        "false",
        Check::Bool,
        [],
        false
    ),
    def!(
        "remote.storage.enable",
        Boolean,
        "false",
        Check::Bool,
        [],
        false
    ),
    def!(
        "retention.bytes",
        Long,
        "-1",
        Check::Long,
        ["log.retention.bytes"],
        true
    ),
    def!(
        "retention.ms",
        Long,
        "604800000",
        Check::LongAtLeast(-1),
        [
            "log.retention.ms",
            "log.retention.minutes",
            "log.retention.hours"
        ],
        true
    ),
    def!(
        "segment.bytes",
        Int,
        "1073741824",
        Check::Int(14, INT_MAX),
        ["log.segment.bytes"],
        true
    ),
    def!(
        "segment.index.bytes",
        Int,
        "10485760",
        Check::Int(4, INT_MAX),
        ["log.index.size.max.bytes"],
        false
    ),
    def!(
        "segment.jitter.ms",
        Long,
        "0",
        Check::LongAtLeast(0),
        ["log.roll.jitter.ms", "log.roll.jitter.hours"],
        false
    ),
    def!(
        "segment.ms",
        Long,
        "604800000",
        Check::LongAtLeast(1),
        ["log.roll.ms", "log.roll.hours"],
        true
    ),
    def!(
        "unclean.leader.election.enable",
        Boolean,
        "false",
        Check::Bool,
        ["unclean.leader.election.enable"],
        true
    ),
];

/// The definition of a Kafka topic config.
pub fn topic_config_def(key: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == key)
}

fn invalid(key: &str, value: &str, why: impl std::fmt::Display) -> CoreError {
    CoreError::InvalidConfig(format!(
        "Invalid value {value} for configuration {key}: {why}"
    ))
}

fn parse_i64(key: &str, value: &str, type_name: &str) -> Result<i64, CoreError> {
    value
        .trim()
        .parse::<i64>()
        .map_err(|_| invalid(key, value, format!("Not a number of type {type_name}")))
}

fn at_least(key: &str, value: &str, n: i64, min: i64) -> Result<(), CoreError> {
    if n < min {
        return Err(invalid(key, value, format!("Value must be at least {min}")));
    }
    Ok(())
}

fn check_value(key: &str, check: Check, value: &str) -> Result<(), CoreError> {
    let v = value.trim();
    match check {
        Check::Bool => {
            if v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false") {
                Ok(())
            } else {
                Err(invalid(
                    key,
                    value,
                    "Expected value to be either true or false",
                ))
            }
        }
        Check::Int(min, max) => {
            let n = parse_i64(key, value, "INT")?;
            if n > INT_MAX || n < i64::from(i32::MIN) {
                return Err(invalid(key, value, "Not a number of type INT"));
            }
            at_least(key, value, n, min)?;
            if n > max {
                return Err(invalid(
                    key,
                    value,
                    format!("Value must be no more than {max}"),
                ));
            }
            Ok(())
        }
        Check::LongAtLeast(min) => at_least(key, value, parse_i64(key, value, "LONG")?, min),
        Check::Long => parse_i64(key, value, "LONG").map(drop),
        Check::Double(min, max) => {
            let n: f64 = v
                .parse()
                .map_err(|_| invalid(key, value, "Not a number of type DOUBLE"))?;
            if !(min..=max).contains(&n) {
                return Err(invalid(
                    key,
                    value,
                    format!("Value must be in [{min}, {max}]"),
                ));
            }
            Ok(())
        }
        Check::OneOf(allowed) => {
            if allowed.contains(&v) {
                Ok(())
            } else {
                Err(invalid(
                    key,
                    value,
                    format!("String must be one of: {}", allowed.join(", ")),
                ))
            }
        }
        Check::ListOf(allowed) => {
            for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                if !allowed.contains(&item) {
                    return Err(invalid(
                        key,
                        value,
                        format!("String must be one of: {}", allowed.join(", ")),
                    ));
                }
            }
            Ok(())
        }
        Check::GzipLevel => {
            let n = parse_i64(key, value, "INT")?;
            if n == -1 || (1..=9).contains(&n) {
                Ok(())
            } else {
                Err(invalid(key, value, "Value must be -1 or in [1, 9]"))
            }
        }
        Check::ThrottledReplicas => {
            if v.is_empty() || v == "*" {
                return Ok(());
            }
            let pair_ok = |item: &str| {
                item.split_once(':').is_some_and(|(p, b)| {
                    p.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok()
                })
            };
            if v.split(',').map(str::trim).all(pair_ok) {
                Ok(())
            } else {
                Err(invalid(
                    key,
                    value,
                    "must be the literal '*' or a list of replicas in the following format: [partitionId]:[brokerId],[partitionId]:[brokerId],...",
                ))
            }
        }
        Check::KafkaVersion => {
            let (num, iv) = v.split_once("-IV").unwrap_or((v, "0"));
            let num_ok = !num.is_empty()
                && num
                    .split('.')
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            if num_ok && iv.parse::<u32>().is_ok() {
                Ok(())
            } else {
                Err(invalid(
                    key,
                    value,
                    "Version string is not a valid Kafka version",
                ))
            }
        }
        Check::Any => Ok(()),
    }
}

/// Values Kafka accepts that Arctern refuses because accepting them would misrepresent
/// what it does to the data.
fn arctern_refusal(key: &str, value: &str) -> Result<(), CoreError> {
    let v = value.trim();
    match key {
        "cleanup.policy" => {
            let items: Vec<&str> = v
                .split(',')
                .map(str::trim)
                .filter(|i| !i.is_empty())
                .collect();
            if items.contains(&"compact") {
                return Err(CoreError::InvalidConfig(format!(
                    "cleanup.policy={v} is not supported: log compaction is not implemented (only 'delete')"
                )));
            }
            if items.is_empty() {
                return Err(CoreError::InvalidConfig(
                    "cleanup.policy must be 'delete' (an empty policy is not supported)".into(),
                ));
            }
            Ok(())
        }
        "message.timestamp.type" if v != "CreateTime" => Err(CoreError::InvalidConfig(format!(
            "message.timestamp.type={v} is not supported (only CreateTime)"
        ))),
        "remote.storage.enable" if v.eq_ignore_ascii_case("true") => Err(CoreError::InvalidConfig(
            "remote.storage.enable=true: tiered storage is not supported".into(),
        )),
        _ => Ok(()),
    }
}

/// Configs whose value is a comma-separated list (IncrementalAlterConfigs APPEND/SUBTRACT).
pub fn is_list_config(key: &str) -> bool {
    topic_config_def(key).is_some_and(|d| d.config_type == ConfigType::List)
}

pub fn is_topic_config(key: &str) -> bool {
    topic_config_def(key).is_some()
}

/// Checks one topic config key/value pair: Kafka's type and range rules, then the values
/// Arctern refuses.
pub fn validate_topic_config(key: &str, value: &str) -> Result<(), CoreError> {
    // Arctern's own (see `arctern_metadata::LEADER_FOLLOWS_CONFIG`).
    if key == "leader.follows" && !value.is_empty() {
        return Ok(());
    }
    let def = topic_config_def(key)
        .ok_or_else(|| CoreError::InvalidConfig(format!("Unknown topic config name: {key}")))?;
    check_value(key, def.check, value)?;
    arctern_refusal(key, value)
}

fn parse_bool(v: &str) -> bool {
    v.trim().eq_ignore_ascii_case("true")
}

impl TopicDefaults {
    /// These defaults with the dynamic broker configs in force: the cluster-wide ones
    /// (resource "") under this broker's own.
    pub fn with_dynamic(
        &self,
        cluster: Option<&BTreeMap<String, String>>,
        this_broker: Option<&BTreeMap<String, String>>,
    ) -> TopicDefaults {
        let mut d = self.clone();
        d.dynamic.clear();
        d.dynamic_cluster = cluster.cloned().unwrap_or_default();
        for (k, v) in cluster.into_iter().flatten() {
            d.dynamic
                .insert(k.clone(), (v.clone(), ConfigSource::DynamicDefaultBroker));
        }
        for (k, v) in this_broker.into_iter().flatten() {
            d.dynamic
                .insert(k.clone(), (v.clone(), ConfigSource::DynamicBroker));
        }
        let long = |name: &str| {
            d.dynamic
                .get(name)
                .and_then(|(v, _)| v.trim().parse::<i64>().ok())
        };
        let overlay = |field: &mut i64, name: &str| {
            if let Some(n) = long(name) {
                *field = n;
            }
        };
        let mut out = d.clone();
        if let Some(n) = long("log.segment.bytes") {
            out.segment_bytes = n.max(14) as u64;
        }
        overlay(&mut out.segment_ms, "log.roll.ms");
        overlay(&mut out.retention_bytes, "log.retention.bytes");
        overlay(&mut out.retention_ms, "log.retention.ms");
        overlay(&mut out.max_message_bytes, "message.max.bytes");
        overlay(&mut out.index_interval_bytes, "log.index.interval.bytes");
        overlay(&mut out.flush_messages, "log.flush.interval.messages");
        overlay(&mut out.flush_ms, "log.flush.interval.ms");
        overlay(&mut out.min_insync_replicas, "min.insync.replicas");
        overlay(
            &mut out.producer_id_expiration_ms,
            "producer.id.expiration.ms",
        );
        if let Some((v, _)) = d.dynamic.get("unclean.leader.election.enable") {
            out.unclean_leader_election = parse_bool(v);
        }
        out
    }

    /// The dynamic values of broker config `name`: this broker's, then the cluster's.
    pub fn dynamic_synonyms(&self, name: &str) -> Vec<ConfigSynonym> {
        let mut out = Vec::new();
        if let Some((v, ConfigSource::DynamicBroker)) = self.dynamic.get(name) {
            out.push(ConfigSynonym {
                name: name.to_string(),
                value: v.clone(),
                source: ConfigSource::DynamicBroker,
            });
        }
        if let Some(v) = self.dynamic_cluster.get(name) {
            out.push(ConfigSynonym {
                name: name.to_string(),
                value: v.clone(),
                source: ConfigSource::DynamicDefaultBroker,
            });
        }
        out
    }

    /// The broker's static setting for a topic config, where Arctern has one.
    fn static_value(&self, key: &str) -> Option<String> {
        Some(match key {
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
            _ => return None,
        })
    }

    /// The dynamic broker config that supplies the default of topic config `key`.
    fn dynamic_value(&self, key: &str) -> Option<(&str, &String, ConfigSource)> {
        let syn = topic_config_def(key)?.synonyms.first()?;
        self.dynamic.get(*syn).map(|(v, source)| (*syn, v, *source))
    }

    /// The value a topic without an override gets, and where it comes from.
    fn default_with_source(&self, key: &str) -> (String, ConfigSource) {
        if let Some((_, v, source)) = self.dynamic_value(key) {
            return (v.clone(), source);
        }
        if let Some(v) = self.static_value(key) {
            return (v, ConfigSource::BrokerDefault);
        }
        let v = topic_config_def(key).map_or("", |d| d.kafka_default);
        (v.to_string(), ConfigSource::Default)
    }

    pub fn default_value(&self, key: &str) -> String {
        self.default_with_source(key).0
    }

    /// Every lower-precedence value of topic config `def` (DescribeConfigs synonyms).
    fn synonyms(&self, def: &TopicConfigDef) -> Vec<ConfigSynonym> {
        let mut out = Vec::new();
        let Some(syn) = def.synonyms.first() else {
            return out;
        };
        out.extend(self.dynamic_synonyms(syn));
        match self.static_value(def.name) {
            Some(v) => out.push(ConfigSynonym {
                name: (*syn).to_string(),
                value: v,
                source: ConfigSource::BrokerDefault,
            }),
            None => out.push(ConfigSynonym {
                name: (*syn).to_string(),
                value: def.kafka_default.to_string(),
                source: ConfigSource::Default,
            }),
        }
        out
    }

    /// All topic configs: overrides where set, else broker defaults.
    pub fn describe(&self, overrides: &BTreeMap<String, String>) -> Vec<ConfigEntry> {
        TOPIC_CONFIGS
            .iter()
            .map(|def| {
                let mut synonyms = self.synonyms(def);
                let (value, source) = match overrides.get(def.name) {
                    Some(v) => {
                        synonyms.insert(
                            0,
                            ConfigSynonym {
                                name: def.name.to_string(),
                                value: v.clone(),
                                source: ConfigSource::TopicOverride,
                            },
                        );
                        (v.clone(), ConfigSource::TopicOverride)
                    }
                    None => self.default_with_source(def.name),
                };
                ConfigEntry {
                    name: def.name.to_string(),
                    value,
                    source,
                    read_only: false,
                    sensitive: false,
                    config_type: def.config_type,
                    synonyms,
                }
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
        let preallocate = overrides
            .get("preallocate")
            .cloned()
            .or_else(|| self.dynamic_value("preallocate").map(|(_, v, _)| v.clone()))
            .is_some_and(|v| parse_bool(&v));
        TopicSettings {
            log: LogConfig {
                segment_bytes: long("segment.bytes", self.segment_bytes as i64).max(14) as u64,
                segment_ms: long("segment.ms", self.segment_ms).max(1),
                retention_bytes: long("retention.bytes", self.retention_bytes),
                retention_ms: long("retention.ms", self.retention_ms),
                max_message_bytes: long("max.message.bytes", self.max_message_bytes).max(0)
                    as usize,
                index_interval_bytes: long("index.interval.bytes", self.index_interval_bytes).max(1)
                    as u64,
                preallocate,
            },
            flush_messages: long("flush.messages", self.flush_messages),
            // 0 (Kafka allows it) would make the flusher spin: 1 ms is as good.
            flush_ms: long("flush.ms", self.flush_ms).max(1),
            min_insync_replicas: long("min.insync.replicas", self.min_insync_replicas),
            replica_lag_time_max_ms: self.replica_lag_time_max_ms,
            producer_id_expiration_ms: self.producer_id_expiration_ms,
        }
    }
}

/// A broker config Arctern reports, and whether Kafka lets it change at runtime.
#[derive(Debug)]
struct BrokerConfigDef {
    name: &'static str,
    config_type: ConfigType,
    kafka_default: &'static str,
    check: Check,
}

/// Broker configs Kafka lets IncrementalAlterConfigs/AlterConfigs change at runtime
/// (`DynamicBrokerConfig.AllDynamicConfigs`), besides the first synonym of each topic
/// config (`DynamicLogConfig`); the TLS, SASL and listener ones are left out.
const DYNAMIC_BROKER_CONFIGS: &[BrokerConfigDef] = &[
    BrokerConfigDef {
        name: "background.threads",
        config_type: ConfigType::Int,
        kafka_default: "10",
        check: Check::Int(1, INT_MAX),
    },
    BrokerConfigDef {
        name: "log.cleaner.backoff.ms",
        config_type: ConfigType::Long,
        kafka_default: "15000",
        check: Check::LongAtLeast(0),
    },
    BrokerConfigDef {
        name: "log.cleaner.dedupe.buffer.size",
        config_type: ConfigType::Long,
        kafka_default: "134217728",
        check: Check::Long,
    },
    BrokerConfigDef {
        name: "log.cleaner.io.buffer.load.factor",
        config_type: ConfigType::Double,
        kafka_default: "0.9",
        check: Check::Double(f64::MIN, f64::MAX),
    },
    BrokerConfigDef {
        name: "log.cleaner.io.buffer.size",
        config_type: ConfigType::Int,
        kafka_default: "524288",
        check: Check::Int(0, INT_MAX),
    },
    BrokerConfigDef {
        name: "log.cleaner.io.max.bytes.per.second",
        config_type: ConfigType::Double,
        kafka_default: "1.7976931348623157E308",
        check: Check::Double(f64::MIN, f64::MAX),
    },
    BrokerConfigDef {
        name: "log.cleaner.threads",
        config_type: ConfigType::Int,
        kafka_default: "1",
        check: Check::Int(0, INT_MAX),
    },
    BrokerConfigDef {
        name: "max.connection.creation.rate",
        config_type: ConfigType::Int,
        kafka_default: "2147483647",
        check: Check::Int(0, INT_MAX),
    },
    BrokerConfigDef {
        name: "max.connections",
        config_type: ConfigType::Int,
        kafka_default: "2147483647",
        check: Check::Int(0, INT_MAX),
    },
    BrokerConfigDef {
        name: "max.connections.per.ip",
        config_type: ConfigType::Int,
        kafka_default: "2147483647",
        check: Check::Int(0, INT_MAX),
    },
    BrokerConfigDef {
        name: "max.connections.per.ip.overrides",
        config_type: ConfigType::String,
        kafka_default: "",
        check: Check::Any,
    },
    BrokerConfigDef {
        name: "metric.reporters",
        config_type: ConfigType::List,
        kafka_default: "",
        check: Check::Any,
    },
    BrokerConfigDef {
        name: "num.io.threads",
        config_type: ConfigType::Int,
        kafka_default: "8",
        check: Check::Int(1, INT_MAX),
    },
    BrokerConfigDef {
        name: "num.network.threads",
        config_type: ConfigType::Int,
        kafka_default: "3",
        check: Check::Int(1, INT_MAX),
    },
    BrokerConfigDef {
        name: "num.recovery.threads.per.data.dir",
        config_type: ConfigType::Int,
        kafka_default: "1",
        check: Check::Int(1, INT_MAX),
    },
    BrokerConfigDef {
        name: "num.replica.fetchers",
        config_type: ConfigType::Int,
        kafka_default: "1",
        check: Check::Int(1, INT_MAX),
    },
    BrokerConfigDef {
        name: "producer.id.expiration.ms",
        config_type: ConfigType::Int,
        kafka_default: "86400000",
        check: Check::Int(1, INT_MAX),
    },
    BrokerConfigDef {
        name: "transaction.partition.verification.enable",
        config_type: ConfigType::Boolean,
        kafka_default: "true",
        check: Check::Bool,
    },
];

/// Dynamic broker configs Kafka allows only per broker, never as the cluster default
/// (`DynamicListenerConfig`'s SASL ones; the listener and TLS ones are left out). Arctern has
/// no SASL yet: they are stored and reported only.
const PER_BROKER_CONFIGS: &[BrokerConfigDef] = &[
    BrokerConfigDef {
        name: "sasl.enabled.mechanisms",
        config_type: ConfigType::List,
        kafka_default: "GSSAPI",
        check: Check::Any,
    },
    BrokerConfigDef {
        name: "sasl.kerberos.kinit.cmd",
        config_type: ConfigType::String,
        kafka_default: "/usr/bin/kinit",
        check: Check::Any,
    },
    BrokerConfigDef {
        name: "sasl.kerberos.min.time.before.relogin",
        config_type: ConfigType::Long,
        kafka_default: "60000",
        check: Check::Long,
    },
    BrokerConfigDef {
        name: "sasl.kerberos.principal.to.local.rules",
        config_type: ConfigType::List,
        kafka_default: "DEFAULT",
        check: Check::Any,
    },
    BrokerConfigDef {
        name: "sasl.kerberos.service.name",
        config_type: ConfigType::String,
        kafka_default: "",
        check: Check::Any,
    },
    BrokerConfigDef {
        name: "sasl.kerberos.ticket.renew.jitter",
        config_type: ConfigType::Double,
        kafka_default: "0.05",
        check: Check::Double(f64::MIN, f64::MAX),
    },
    BrokerConfigDef {
        name: "sasl.kerberos.ticket.renew.window.factor",
        config_type: ConfigType::Double,
        kafka_default: "0.8",
        check: Check::Double(f64::MIN, f64::MAX),
    },
    BrokerConfigDef {
        name: "sasl.login.refresh.buffer.seconds",
        config_type: ConfigType::Int,
        kafka_default: "300",
        check: Check::Int(0, 3600),
    },
    BrokerConfigDef {
        name: "sasl.login.refresh.min.period.seconds",
        config_type: ConfigType::Int,
        kafka_default: "60",
        check: Check::Int(0, 900),
    },
    BrokerConfigDef {
        name: "sasl.login.refresh.window.factor",
        config_type: ConfigType::Double,
        kafka_default: "0.8",
        check: Check::Double(0.5, 1.0),
    },
    BrokerConfigDef {
        name: "sasl.login.refresh.window.jitter",
        config_type: ConfigType::Double,
        kafka_default: "0.05",
        check: Check::Double(0.0, 0.25),
    },
    BrokerConfigDef {
        name: "sasl.mechanism.inter.broker.protocol",
        config_type: ConfigType::String,
        kafka_default: "GSSAPI",
        check: Check::Any,
    },
];

fn broker_config_def(name: &str) -> Option<&'static BrokerConfigDef> {
    DYNAMIC_BROKER_CONFIGS
        .iter()
        .chain(PER_BROKER_CONFIGS)
        .find(|d| d.name == name)
}

/// Dynamic broker configs Arctern acts on (the rest are stored and reported only).
pub const ENFORCED_DYNAMIC_BROKER_CONFIGS: &[&str] = &[
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "log.index.interval.bytes",
    "log.preallocate",
    "log.retention.bytes",
    "log.retention.ms",
    "log.roll.ms",
    "log.segment.bytes",
    "message.max.bytes",
    "min.insync.replicas",
    "producer.id.expiration.ms",
    "unclean.leader.election.enable",
];

/// The topic config whose default a dynamic broker config sets (`log.retention.ms` ->
/// `retention.ms`); `message.format.version` is not reconfigurable in Kafka.
fn topic_config_for_broker_config(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS
        .iter()
        .filter(|d| d.name != "message.format.version")
        .find(|d| d.synonyms.first() == Some(&name))
}

/// The type of a dynamic broker config.
pub fn dynamic_broker_config_type(name: &str) -> Option<ConfigType> {
    topic_config_for_broker_config(name)
        .map(|d| d.config_type)
        .or_else(|| broker_config_def(name).map(|d| d.config_type))
}

/// Kafka's default of a dynamic broker config (what APPEND/SUBTRACT start from when unset).
pub fn dynamic_broker_config_default(name: &str) -> Option<&'static str> {
    topic_config_for_broker_config(name)
        .map(|d| d.kafka_default)
        .or_else(|| broker_config_def(name).map(|d| d.kafka_default))
}

/// Whether Kafka lets `name` change at runtime.
pub fn is_dynamic_broker_config(name: &str) -> bool {
    topic_config_for_broker_config(name).is_some() || broker_config_def(name).is_some()
}

/// Checks a dynamic broker config change as Kafka does: a config that cannot change at
/// runtime is INVALID_REQUEST ("Cannot update these configs dynamically"), a bad value
/// INVALID_REQUEST too (Kafka wraps the broker's ConfigException so, KAFKA-13609).
/// `cluster_level`: the resource is the cluster default ("").
pub fn validate_dynamic_broker_config(
    name: &str,
    value: &str,
    cluster_level: bool,
) -> Result<(), CoreError> {
    if cluster_level && PER_BROKER_CONFIGS.iter().any(|d| d.name == name) {
        return Err(CoreError::InvalidRequest(format!(
            "Cannot update these configs at default cluster level, broker id must be specified: Set({name})"
        )));
    }
    if let Some(def) = topic_config_for_broker_config(name) {
        return check_value(name, def.check, value)
            .and_then(|()| arctern_refusal(def.name, value))
            .map_err(invalid_request);
    }
    if let Some(def) = broker_config_def(name) {
        return check_value(name, def.check, value).map_err(invalid_request);
    }
    Err(CoreError::InvalidRequest(format!(
        "Cannot update these configs dynamically: Set({name})"
    )))
}

fn invalid_request(e: CoreError) -> CoreError {
    match e {
        CoreError::InvalidConfig(m) => CoreError::InvalidRequest(m),
        other => other,
    }
}

/// DescribeConfigs entries of the dynamic broker configs: one per updatable config, with
/// the value in force (this broker's, the cluster default, `static_values`, or Kafka's
/// default). `static_values` are the broker's own settings by Kafka name.
pub fn describe_dynamic_broker_configs(
    defaults: &TopicDefaults,
    static_values: &BTreeMap<String, String>,
) -> Vec<ConfigEntry> {
    let mut names: Vec<(&str, ConfigType, &str)> = TOPIC_CONFIGS
        .iter()
        .filter(|d| d.name != "message.format.version")
        .filter_map(|d| {
            d.synonyms
                .first()
                .map(|s| (*s, d.config_type, d.kafka_default))
        })
        .collect();
    names.extend(
        DYNAMIC_BROKER_CONFIGS
            .iter()
            .chain(PER_BROKER_CONFIGS)
            .map(|d| (d.name, d.config_type, d.kafka_default)),
    );
    names.sort_by_key(|(n, _, _)| *n);
    names.dedup_by_key(|(n, _, _)| *n);
    names
        .into_iter()
        .map(|(name, config_type, kafka_default)| {
            let mut synonyms = Vec::new();
            synonyms.extend(defaults.dynamic_synonyms(name));
            match static_values.get(name) {
                Some(v) => synonyms.push(ConfigSynonym {
                    name: name.to_string(),
                    value: v.clone(),
                    source: ConfigSource::BrokerDefault,
                }),
                None => synonyms.push(ConfigSynonym {
                    name: name.to_string(),
                    value: kafka_default.to_string(),
                    source: ConfigSource::Default,
                }),
            }
            let first = synonyms[0].clone();
            ConfigEntry {
                name: name.to_string(),
                value: first.value,
                source: first.source,
                read_only: false,
                sensitive: false,
                config_type,
                synonyms,
            }
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kafka_topic_config_is_known_with_its_default_accepted() {
        for def in TOPIC_CONFIGS {
            if matches!(
                def.name,
                "follower.replication.throttled.replicas" | "leader.replication.throttled.replicas"
            ) {
                assert!(validate_topic_config(def.name, "").is_ok());
                continue;
            }
            validate_topic_config(def.name, def.kafka_default)
                .unwrap_or_else(|e| panic!("{}={}: {e}", def.name, def.kafka_default));
        }
        assert!(validate_topic_config("delete.retention.ms", "1000").is_ok());
        assert!(TOPIC_CONFIGS.windows(2).all(|w| w[0].name < w[1].name));
    }

    #[test]
    fn values_are_checked_by_type_and_range() {
        let bad = [
            ("delete.retention.ms", "-1"),
            ("delete.retention.ms", "abc"),
            ("segment.bytes", "13"),
            ("segment.bytes", "3000000000"),
            ("segment.ms", "0"),
            ("retention.ms", "-2"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("min.insync.replicas", "0"),
            ("compression.type", "brotli"),
            ("compression.gzip.level", "0"),
            ("compression.zstd.level", "23"),
            ("preallocate", "yes"),
            ("leader.replication.throttled.replicas", "0-1"),
            ("message.format.version", "banana"),
            ("local.retention.ms", "-3"),
            ("no.such.config", "1"),
        ];
        for (k, v) in bad {
            assert!(
                matches!(
                    validate_topic_config(k, v),
                    Err(CoreError::InvalidConfig(_))
                ),
                "{k}={v} accepted"
            );
        }
        let good = [
            ("retention.bytes", "-5"),
            ("min.cleanable.dirty.ratio", "0.1"),
            ("compression.zstd.level", "-5"),
            ("leader.replication.throttled.replicas", "0:1,1:2"),
            ("follower.replication.throttled.replicas", "*"),
            ("message.format.version", "2.8-IV1"),
            ("preallocate", "TRUE"),
            ("flush.ms", "0"),
            ("cleanup.policy", "delete"),
        ];
        for (k, v) in good {
            assert!(validate_topic_config(k, v).is_ok(), "{k}={v} refused");
        }
    }

    #[test]
    fn refusals_that_protect_data_stay() {
        for (k, v) in [
            ("cleanup.policy", "compact"),
            ("cleanup.policy", "compact,delete"),
            ("message.timestamp.type", "LogAppendTime"),
            ("remote.storage.enable", "true"),
        ] {
            let e = validate_topic_config(k, v).unwrap_err();
            assert!(e.to_string().contains("not"), "{e}");
        }
    }

    #[test]
    fn dynamic_broker_configs_override_static_defaults() {
        let statics = TopicDefaults::default();
        let cluster: BTreeMap<String, String> = [
            ("log.retention.ms".to_string(), "1000".to_string()),
            (
                "log.cleaner.delete.retention.ms".to_string(),
                "5".to_string(),
            ),
        ]
        .into();
        let mine: BTreeMap<String, String> =
            [("log.retention.ms".to_string(), "2000".to_string())].into();
        let d = statics.with_dynamic(Some(&cluster), Some(&mine));
        assert_eq!(d.retention_ms, 2000);
        assert_eq!(d.settings(&BTreeMap::new()).log.retention_ms, 2000);
        let described = d.describe(&BTreeMap::new());
        let get = |n: &str| described.iter().find(|e| e.name == n).unwrap().clone();
        let r = get("retention.ms");
        assert_eq!(
            (r.value.as_str(), r.source),
            ("2000", ConfigSource::DynamicBroker)
        );
        assert_eq!(r.synonyms.len(), 3);
        let dr = get("delete.retention.ms");
        assert_eq!(
            (dr.value.as_str(), dr.source),
            ("5", ConfigSource::DynamicDefaultBroker)
        );
        let seg = get("segment.index.bytes");
        assert_eq!(
            (seg.value.as_str(), seg.source),
            ("10485760", ConfigSource::Default)
        );
        // A topic override wins.
        let o: BTreeMap<String, String> = [("retention.ms".to_string(), "7".to_string())].into();
        assert_eq!(d.settings(&o).log.retention_ms, 7);
    }

    #[test]
    fn dynamic_broker_config_names_follow_kafka() {
        assert!(validate_dynamic_broker_config("log.retention.ms", "1000", true).is_ok());
        assert!(validate_dynamic_broker_config("num.io.threads", "4", false).is_ok());
        assert!(validate_dynamic_broker_config(
            "sasl.kerberos.min.time.before.relogin",
            "58000",
            false
        )
        .is_ok());
        assert!(matches!(
            validate_dynamic_broker_config("sasl.kerberos.min.time.before.relogin", "58000", true),
            Err(CoreError::InvalidRequest(_))
        ));
        for (k, v) in [
            ("log.retention.ms", "x"),
            ("log.dirs", "/tmp"),
            ("node.id", "3"),
            ("log.message.format.version", "3.0"),
            ("log.cleanup.policy", "compact"),
        ] {
            assert!(
                matches!(
                    validate_dynamic_broker_config(k, v, false),
                    Err(CoreError::InvalidRequest(_))
                ),
                "{k}={v}"
            );
        }
    }
}
