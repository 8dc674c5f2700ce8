//! The TOML config file: Kafka's broker key names, every key optional. Environment
//! variables override the file: `ARCTERN_` + the key upper-cased with dots as underscores
//! (e.g. `ARCTERN_LOG_RETENTION_MS=60000`). Command-line flags override both.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use arctern_core::{BrokerConfig, TopicDefaults};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(rename = "node.id")]
    pub node_id: Option<i32>,
    #[serde(rename = "log.dirs")]
    pub log_dirs: Option<PathBuf>,
    /// `PLAINTEXT://host:port` or `host:port`.
    pub listeners: Option<String>,
    #[serde(rename = "advertised.listeners")]
    pub advertised_listeners: Option<String>,
    #[serde(rename = "auto.create.topics.enable")]
    pub auto_create_topics_enable: Option<bool>,
    #[serde(rename = "num.partitions")]
    pub num_partitions: Option<i32>,
    #[serde(rename = "default.replication.factor")]
    pub default_replication_factor: Option<i16>,
    #[serde(rename = "message.max.bytes")]
    pub message_max_bytes: Option<i64>,
    #[serde(rename = "socket.request.max.bytes")]
    pub socket_request_max_bytes: Option<i64>,
    #[serde(rename = "log.segment.bytes")]
    pub log_segment_bytes: Option<i64>,
    #[serde(rename = "log.roll.ms")]
    pub log_roll_ms: Option<i64>,
    #[serde(rename = "log.retention.ms")]
    pub log_retention_ms: Option<i64>,
    #[serde(rename = "log.retention.bytes")]
    pub log_retention_bytes: Option<i64>,
    #[serde(rename = "log.retention.check.interval.ms")]
    pub log_retention_check_interval_ms: Option<i64>,
    #[serde(rename = "log.index.interval.bytes")]
    pub log_index_interval_bytes: Option<i64>,
    #[serde(rename = "log.flush.interval.messages")]
    pub log_flush_interval_messages: Option<i64>,
    #[serde(rename = "log.flush.interval.ms")]
    pub log_flush_interval_ms: Option<i64>,
    #[serde(rename = "min.insync.replicas")]
    pub min_insync_replicas: Option<i64>,
    #[serde(rename = "unclean.leader.election.enable")]
    pub unclean_leader_election_enable: Option<bool>,
    /// `1@host:port,2@host:port,...`: the metadata quorum (each node's Raft address).
    #[serde(rename = "controller.quorum.voters")]
    pub controller_quorum_voters: Option<String>,
    #[serde(rename = "replica.lag.time.max.ms")]
    pub replica_lag_time_max_ms: Option<i64>,
    #[serde(rename = "replica.fetch.max.bytes")]
    pub replica_fetch_max_bytes: Option<i32>,
    #[serde(rename = "replica.fetch.wait.max.ms")]
    pub replica_fetch_wait_max_ms: Option<i32>,
    #[serde(rename = "broker.session.timeout.ms")]
    pub broker_session_timeout_ms: Option<i64>,
    #[serde(rename = "broker.heartbeat.interval.ms")]
    pub broker_heartbeat_interval_ms: Option<i64>,
    #[serde(rename = "auto.leader.rebalance.enable")]
    pub auto_leader_rebalance_enable: Option<bool>,
    #[serde(rename = "leader.imbalance.check.interval.seconds")]
    pub leader_imbalance_check_interval_seconds: Option<i64>,
    #[serde(rename = "controlled.shutdown.enable")]
    pub controlled_shutdown_enable: Option<bool>,
    #[serde(rename = "producer.id.expiration.ms")]
    pub producer_id_expiration_ms: Option<i64>,
    #[serde(rename = "group.initial.rebalance.delay.ms")]
    pub group_initial_rebalance_delay_ms: Option<i64>,
    #[serde(rename = "group.min.session.timeout.ms")]
    pub group_min_session_timeout_ms: Option<i32>,
    #[serde(rename = "group.max.session.timeout.ms")]
    pub group_max_session_timeout_ms: Option<i32>,
    #[serde(rename = "offsets.topic.num.partitions")]
    pub offsets_topic_num_partitions: Option<i32>,
    #[serde(rename = "offsets.topic.replication.factor")]
    pub offsets_topic_replication_factor: Option<i16>,
    #[serde(rename = "offset.metadata.max.bytes")]
    pub offset_metadata_max_bytes: Option<i64>,
    /// AMQP 0-9-1 listener `host:port`.
    #[serde(rename = "amqp.listen")]
    pub amqp_listen: Option<String>,
    #[serde(rename = "amqp.frame_max")]
    pub amqp_frame_max: Option<i64>,
    #[serde(rename = "amqp.channel_max")]
    pub amqp_channel_max: Option<i64>,
    #[serde(rename = "amqp.heartbeat")]
    pub amqp_heartbeat: Option<i64>,
    #[serde(rename = "amqp.max_message_size")]
    pub amqp_max_message_size: Option<i64>,
    #[serde(rename = "amqp.consumer_timeout")]
    pub amqp_consumer_timeout: Option<i64>,
    /// Bytes the data directory's file system must keep free, else publishers are blocked.
    #[serde(rename = "amqp.disk_free_limit")]
    pub amqp_disk_free_limit: Option<i64>,
    /// Fraction of the machine's memory above which publishers are blocked.
    #[serde(rename = "amqp.vm_memory_high_watermark")]
    pub amqp_vm_memory_high_watermark: Option<f64>,
    /// `segment.bytes` of queue logs, the unit in which settled messages are reclaimed.
    #[serde(rename = "amqp.queue_segment_bytes")]
    pub amqp_queue_segment_bytes: Option<i64>,
    /// RabbitMQ's `default_user` / `default_pass` / `default_user_tags`: the user the
    /// first start creates (also `RABBITMQ_DEFAULT_USER` / `RABBITMQ_DEFAULT_PASS`).
    pub default_user: Option<String>,
    pub default_pass: Option<String>,
    pub default_user_tags: Option<NameSet>,
    /// RabbitMQ's `loopback_users`: users allowed only from loopback addresses.
    pub loopback_users: Option<NameSet>,
    /// Failed-login limiting per source address (AMQP and Kafka logins).
    #[serde(rename = "auth.failed_login.free_failures")]
    pub auth_failed_login_free_failures: Option<i64>,
    #[serde(rename = "auth.failed_login.base_delay_ms")]
    pub auth_failed_login_base_delay_ms: Option<i64>,
    #[serde(rename = "auth.failed_login.max_delay_ms")]
    pub auth_failed_login_max_delay_ms: Option<i64>,
}

/// A set of names written as RabbitMQ allows: a list (`["guest"]`), `"none"` or a
/// comma-separated string, or new-style flags (`loopback_users.guest = false`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NameSet {
    List(Vec<String>),
    Text(String),
    Flags(std::collections::BTreeMap<String, bool>),
}

impl NameSet {
    pub fn names(&self) -> Vec<String> {
        match self {
            NameSet::List(v) => v.clone(),
            NameSet::Text(t) if t.trim() == "none" => Vec::new(),
            NameSet::Text(t) => t
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(String::from)
                .collect(),
            NameSet::Flags(m) => m
                .iter()
                .filter(|(_, on)| **on)
                .map(|(n, _)| n.clone())
                .collect(),
        }
    }
}

/// Keys whose values are names (a set written as a table may use these as prefixes).
const NAME_SET_KEYS: &[&str] = &["loopback_users", "default_user_tags"];
/// Keys that stay strings even when they look like numbers (a password "1234").
const STRING_KEYS: &[&str] = &[
    "default_user",
    "default_pass",
    "default_user_tags",
    "loopback_users",
];
/// RabbitMQ's environment variables (overridden by the `ARCTERN_` ones).
const RABBITMQ_ENV: &[(&str, &str)] = &[
    ("RABBITMQ_DEFAULT_USER", "default_user"),
    ("RABBITMQ_DEFAULT_PASS", "default_pass"),
];

/// Every key the file accepts, for the environment overlay.
const KEYS: &[&str] = &[
    "node.id",
    "log.dirs",
    "listeners",
    "advertised.listeners",
    "auto.create.topics.enable",
    "num.partitions",
    "default.replication.factor",
    "message.max.bytes",
    "socket.request.max.bytes",
    "log.segment.bytes",
    "log.roll.ms",
    "log.retention.ms",
    "log.retention.bytes",
    "log.retention.check.interval.ms",
    "log.index.interval.bytes",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "min.insync.replicas",
    "unclean.leader.election.enable",
    "controller.quorum.voters",
    "replica.lag.time.max.ms",
    "replica.fetch.max.bytes",
    "replica.fetch.wait.max.ms",
    "broker.session.timeout.ms",
    "broker.heartbeat.interval.ms",
    "auto.leader.rebalance.enable",
    "leader.imbalance.check.interval.seconds",
    "controlled.shutdown.enable",
    "producer.id.expiration.ms",
    "group.initial.rebalance.delay.ms",
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "offsets.topic.num.partitions",
    "offsets.topic.replication.factor",
    "offset.metadata.max.bytes",
    "amqp.listen",
    "amqp.frame_max",
    "amqp.channel_max",
    "amqp.heartbeat",
    "amqp.max_message_size",
    "amqp.consumer_timeout",
    "amqp.disk_free_limit",
    "amqp.vm_memory_high_watermark",
    "amqp.queue_segment_bytes",
    "default_user",
    "default_pass",
    "default_user_tags",
    "loopback_users",
    "auth.failed_login.free_failures",
    "auth.failed_login.base_delay_ms",
    "auth.failed_login.max_delay_ms",
];

pub fn env_name(key: &str) -> String {
    format!("ARCTERN_{}", key.to_ascii_uppercase().replace('.', "_"))
}

impl FileConfig {
    /// Reads the file (if given) and overlays environment variables.
    pub fn load(path: Option<&Path>) -> Result<FileConfig> {
        let mut table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading config {}", p.display()))?;
                text.parse::<toml::Table>()
                    .with_context(|| format!("parsing config {}", p.display()))?
            }
            None => toml::Table::new(),
        };
        // `"loopback_users.guest" = false` (quoted, as RabbitMQ's new-style key) is the
        // same as the unquoted TOML form, a table.
        for prefix in NAME_SET_KEYS {
            let dotted: Vec<String> = table
                .keys()
                .filter(|k| k.strip_prefix(prefix).is_some_and(|r| r.starts_with('.')))
                .cloned()
                .collect();
            for k in dotted {
                if let Some(v) = table.remove(&k) {
                    let name = k[prefix.len() + 1..].to_string();
                    let entry = table
                        .entry(prefix.to_string())
                        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                    if !entry.is_table() {
                        *entry = toml::Value::Table(toml::Table::new());
                    }
                    if let Some(t) = entry.as_table_mut() {
                        t.insert(name, v);
                    }
                }
            }
        }
        for (var, key) in RABBITMQ_ENV {
            if let Ok(raw) = std::env::var(var) {
                table.insert((*key).to_string(), toml::Value::String(raw));
            }
        }
        for key in KEYS {
            if let Ok(raw) = std::env::var(env_name(key)) {
                let value = if STRING_KEYS.contains(key) {
                    toml::Value::String(raw)
                } else if let Ok(n) = raw.parse::<i64>() {
                    toml::Value::Integer(n)
                } else if let Ok(f) = raw.parse::<f64>() {
                    toml::Value::Float(f)
                } else if let Ok(b) = raw.parse::<bool>() {
                    toml::Value::Boolean(b)
                } else {
                    toml::Value::String(raw)
                };
                table.insert((*key).to_string(), value);
            }
        }
        FileConfig::deserialize(toml::Value::Table(table)).context("invalid config")
    }
}

/// Parses `PLAINTEXT://host:port` or `host:port`.
pub fn parse_listener(s: &str) -> Result<String> {
    let s = s.split(',').next().unwrap_or(s).trim();
    let addr = match s.split_once("://") {
        Some(("PLAINTEXT", rest)) => rest,
        Some((proto, _)) => bail!("listener protocol {proto} is not supported (only PLAINTEXT)"),
        None => s,
    };
    Ok(addr.to_string())
}

fn non_negative(key: &str, v: i64) -> Result<u64> {
    u64::try_from(v).with_context(|| format!("{key} must not be negative"))
}

/// Builds the broker config from the file; listener addresses are resolved by the caller.
pub fn broker_config(file: &FileConfig, data_dir: PathBuf) -> Result<BrokerConfig> {
    let mut d = TopicDefaults::default();
    if let Some(v) = file.log_segment_bytes {
        d.segment_bytes = non_negative("log.segment.bytes", v)?;
    }
    if let Some(v) = file.log_roll_ms {
        d.segment_ms = v;
    }
    if let Some(v) = file.log_retention_ms {
        d.retention_ms = v;
    }
    if let Some(v) = file.log_retention_bytes {
        d.retention_bytes = v;
    }
    if let Some(v) = file.message_max_bytes {
        d.max_message_bytes = v;
    }
    if let Some(v) = file.log_index_interval_bytes {
        d.index_interval_bytes = v;
    }
    if let Some(v) = file.log_flush_interval_messages {
        d.flush_messages = v;
    }
    if let Some(v) = file.log_flush_interval_ms {
        d.flush_ms = v;
    }
    if let Some(v) = file.min_insync_replicas {
        d.min_insync_replicas = v;
    }
    if let Some(v) = file.unclean_leader_election_enable {
        d.unclean_leader_election = v;
    }
    if let Some(v) = file.replica_lag_time_max_ms {
        if v < 1 {
            bail!("replica.lag.time.max.ms must be positive");
        }
        d.replica_lag_time_max_ms = v;
    }
    if let Some(v) = file.producer_id_expiration_ms {
        if v < 1 {
            bail!("producer.id.expiration.ms must be positive");
        }
        d.producer_id_expiration_ms = v;
    }
    let mut c = BrokerConfig {
        data_dir,
        topic_defaults: d,
        ..BrokerConfig::default()
    };
    if let Some(v) = file.node_id {
        c.node_id = v;
    }
    if let Some(v) = file.auto_create_topics_enable {
        c.auto_create_topics = v;
    }
    if let Some(v) = file.num_partitions {
        if v < 1 {
            bail!("num.partitions must be at least 1");
        }
        c.num_partitions = v;
    }
    if let Some(v) = file.default_replication_factor {
        c.default_replication_factor = v;
    }
    if let Some(v) = file.log_retention_check_interval_ms {
        c.retention_check_interval_ms = non_negative("log.retention.check.interval.ms", v)?;
    }
    if let Some(v) = file.replica_fetch_max_bytes {
        if v < 1 {
            bail!("replica.fetch.max.bytes must be positive");
        }
        c.replica_fetch_max_bytes = v;
    }
    if let Some(v) = file.replica_fetch_wait_max_ms {
        c.replica_fetch_wait_max_ms = v.max(0);
    }
    if let Some(v) = file.controlled_shutdown_enable {
        c.controlled_shutdown = v;
    }
    Ok(c)
}

/// The group coordinator's settings.
pub fn group_config(file: &FileConfig) -> Result<arctern_groups::GroupConfig> {
    let mut g = arctern_groups::GroupConfig::default();
    if let Some(v) = file.group_initial_rebalance_delay_ms {
        g.initial_rebalance_delay_ms = non_negative("group.initial.rebalance.delay.ms", v)?;
    }
    if let Some(v) = file.group_min_session_timeout_ms {
        g.min_session_timeout_ms = v;
    }
    if let Some(v) = file.group_max_session_timeout_ms {
        g.max_session_timeout_ms = v;
    }
    if g.min_session_timeout_ms > g.max_session_timeout_ms {
        bail!("group.min.session.timeout.ms must not exceed group.max.session.timeout.ms");
    }
    if let Some(v) = file.offsets_topic_num_partitions {
        if v < 1 {
            bail!("offsets.topic.num.partitions must be at least 1");
        }
        g.offsets_topic_num_partitions = v;
    }
    if let Some(v) = file.offsets_topic_replication_factor {
        if v < 1 {
            bail!("offsets.topic.replication.factor must be at least 1");
        }
        g.offsets_topic_replication_factor = v;
    }
    if let Some(v) = file.offset_metadata_max_bytes {
        g.offset_metadata_max_bytes =
            usize::try_from(non_negative("offset.metadata.max.bytes", v)?)
                .context("offset.metadata.max.bytes is too large")?;
    }
    Ok(g)
}

/// The AMQP listener's settings (RabbitMQ's names under `amqp.`).
pub fn amqp_config(file: &FileConfig) -> Result<arctern_amqp::AmqpServerConfig> {
    let mut c = arctern_amqp::AmqpServerConfig::default();
    if let Some(v) = file.amqp_frame_max {
        if !(4096..=i64::from(u32::MAX)).contains(&v) {
            bail!("amqp.frame_max must be between 4096 and {}", u32::MAX);
        }
        c.frame_max = v as u32;
    }
    if let Some(v) = file.amqp_channel_max {
        if !(1..=65535).contains(&v) {
            bail!("amqp.channel_max must be between 1 and 65535");
        }
        c.channel_max = v as u16;
    }
    if let Some(v) = file.amqp_heartbeat {
        if !(0..=65535).contains(&v) {
            bail!("amqp.heartbeat must be between 0 and 65535 seconds");
        }
        c.heartbeat = v as u16;
    }
    if let Some(v) = file.amqp_max_message_size {
        if !(1..=(512 << 20)).contains(&v) {
            bail!("amqp.max_message_size must be between 1 and 536870912 (512 MiB)");
        }
        c.max_message_size = v as usize;
    }
    if let Some(v) = file.amqp_consumer_timeout {
        c.consumer_timeout_ms = non_negative("amqp.consumer_timeout", v)?;
    }
    if let Some(v) = file.amqp_queue_segment_bytes {
        c.queue_segment_bytes = non_negative("amqp.queue_segment_bytes", v)?;
    }
    if let Some(v) = &file.default_user {
        if v.is_empty() {
            bail!("default_user must not be empty");
        }
        c.default_user = v.clone();
    }
    if let Some(v) = &file.default_pass {
        c.default_pass = v.clone();
    }
    if let Some(v) = &file.default_user_tags {
        c.default_user_tags = v.names();
    }
    if let Some(v) = &file.loopback_users {
        c.loopback_users = v.names();
    }
    // A segment holds at least one message's batch.
    if c.queue_segment_bytes < c.max_message_size as u64 + 8192 {
        bail!("amqp.queue_segment_bytes must be at least amqp.max_message_size + 8192");
    }
    Ok(c)
}

/// The failed-login limiter shared by the AMQP and Kafka logins.
pub fn login_limiter_config(
    file: &FileConfig,
) -> Result<arctern_security::ratelimit::LimiterConfig> {
    let mut c = arctern_security::ratelimit::LimiterConfig::default();
    if let Some(v) = file.auth_failed_login_free_failures {
        c.free_failures = u32::try_from(v)
            .context("auth.failed_login.free_failures must be between 0 and 4294967295")?;
    }
    if let Some(v) = file.auth_failed_login_base_delay_ms {
        c.base_delay =
            std::time::Duration::from_millis(non_negative("auth.failed_login.base_delay_ms", v)?);
    }
    if let Some(v) = file.auth_failed_login_max_delay_ms {
        c.max_delay =
            std::time::Duration::from_millis(non_negative("auth.failed_login.max_delay_ms", v)?);
    }
    if c.base_delay > c.max_delay {
        bail!("auth.failed_login.base_delay_ms must not exceed auth.failed_login.max_delay_ms");
    }
    Ok(c)
}

/// The AMQP resource alarms (RabbitMQ's `disk_free_limit`, `vm_memory_high_watermark`).
pub fn alarm_config(file: &FileConfig, data_dir: &Path) -> Result<arctern_amqp::AlarmConfig> {
    let mut c = arctern_amqp::AlarmConfig {
        data_dir: data_dir.to_path_buf(),
        ..arctern_amqp::AlarmConfig::default()
    };
    if let Some(v) = file.amqp_disk_free_limit {
        c.disk_free_limit = non_negative("amqp.disk_free_limit", v)?;
    }
    if let Some(v) = file.amqp_vm_memory_high_watermark {
        if !(0.0..=1.0).contains(&v) {
            bail!("amqp.vm_memory_high_watermark must be between 0 and 1 (0 = off)");
        }
        c.memory_high_watermark = v;
    }
    Ok(c)
}

/// The metadata controller's timing and election settings.
pub fn controller_options(file: &FileConfig) -> Result<arctern_metadata::ControllerOptions> {
    let mut o = arctern_metadata::ControllerOptions::default();
    let ms = |key: &str, v: i64| -> Result<std::time::Duration> {
        Ok(std::time::Duration::from_millis(
            non_negative(key, v)?.max(1),
        ))
    };
    if let Some(v) = file.broker_session_timeout_ms {
        o.session_timeout = ms("broker.session.timeout.ms", v)?;
    }
    if let Some(v) = file.broker_heartbeat_interval_ms {
        o.broker_heartbeat_interval = ms("broker.heartbeat.interval.ms", v)?;
    }
    if let Some(v) = file.unclean_leader_election_enable {
        o.unclean_leader_election = v;
    }
    if let Some(v) = file.auto_leader_rebalance_enable {
        o.auto_leader_rebalance = v;
    }
    if let Some(v) = file.leader_imbalance_check_interval_seconds {
        o.leader_imbalance_check_interval = std::time::Duration::from_secs(non_negative(
            "leader.imbalance.check.interval.seconds",
            v,
        )?);
    }
    if o.broker_heartbeat_interval >= o.session_timeout {
        bail!("broker.heartbeat.interval.ms must be below broker.session.timeout.ms");
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_every_key_is_documented() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/arctern.example.toml");
        let text = std::fs::read_to_string(&path).expect("example config exists");
        let uncommented: String = text
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|r| r.contains(" = "))
                    .unwrap_or(l)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let table: toml::Table = uncommented
            .parse()
            .expect("example parses when uncommented");
        for key in KEYS {
            assert!(
                table.contains_key(*key),
                "{key} missing from the example config"
            );
        }
        let file = FileConfig::deserialize(toml::Value::Table(table)).expect("keys are valid");
        broker_config(&file, PathBuf::from("x")).expect("values are valid");
        let amqp = amqp_config(&file).expect("amqp values are valid");
        let d = arctern_amqp::AmqpServerConfig::default();
        assert_eq!(
            (
                amqp.frame_max,
                amqp.channel_max,
                amqp.heartbeat,
                amqp.max_message_size,
                amqp.consumer_timeout_ms,
                amqp.queue_segment_bytes
            ),
            (
                d.frame_max,
                d.channel_max,
                d.heartbeat,
                d.max_message_size,
                d.consumer_timeout_ms,
                d.queue_segment_bytes
            ),
            "the example documents the AMQP defaults"
        );
        assert_eq!(
            group_config(&file).expect("group values are valid"),
            arctern_groups::GroupConfig::default(),
            "the example documents the defaults"
        );
    }

    #[test]
    fn name_sets_in_rabbitmq_forms() {
        let parse = |text: &str| -> FileConfig {
            let table: toml::Table = text.parse().unwrap();
            FileConfig::deserialize(toml::Value::Table(table)).unwrap()
        };
        let names = |f: FileConfig| amqp_config(&f).unwrap().loopback_users;
        assert_eq!(names(parse("")), vec!["guest".to_string()]);
        assert_eq!(
            names(parse(r#"loopback_users = "none""#)),
            Vec::<String>::new()
        );
        assert_eq!(
            names(parse(r#"loopback_users = ["a", "b"]"#)),
            vec!["a", "b"]
        );
        assert_eq!(
            names(parse("loopback_users.guest = false")),
            Vec::<String>::new()
        );
        assert_eq!(
            names(parse(
                "loopback_users.guest = false\nloopback_users.ops = true"
            )),
            vec!["ops"]
        );
        let tags = parse(r#"default_user_tags = "administrator, monitoring""#);
        assert_eq!(
            amqp_config(&tags).unwrap().default_user_tags,
            vec!["administrator", "monitoring"]
        );
        let l = login_limiter_config(&parse(r#""auth.failed_login.free_failures" = 2"#)).unwrap();
        assert_eq!(l.free_failures, 2);
        assert!(login_limiter_config(&parse(
            r#""auth.failed_login.base_delay_ms" = 60000
"auth.failed_login.max_delay_ms" = 1000"#
        ))
        .is_err());
    }

    #[test]
    fn quoted_dotted_name_set_keys_become_tables() {
        let dir = std::env::temp_dir().join(format!("arctern-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "\"loopback_users.guest\" = false\n\"default_pass\" = \"1234\"\n",
        )
        .unwrap();
        let f = FileConfig::load(Some(&path)).unwrap();
        let c = amqp_config(&f).unwrap();
        assert!(c.loopback_users.is_empty());
        assert_eq!(c.default_pass, "1234");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn listener_forms() {
        assert_eq!(
            parse_listener("PLAINTEXT://127.0.0.1:9092").unwrap(),
            "127.0.0.1:9092"
        );
        assert_eq!(parse_listener("127.0.0.1:1").unwrap(), "127.0.0.1:1");
        assert!(parse_listener("SSL://x:1").is_err());
    }
}
