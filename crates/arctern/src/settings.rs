//! The TOML config file: Kafka's broker key names, every key optional. Environment
//! variables override the file: `ARCTERN_` + the key upper-cased with dots as underscores
//! (e.g. `ARCTERN_LOG_RETENTION_MS=60000`). Command-line flags override both.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use arctern_core::{BrokerConfig, TopicDefaults};
use arctern_security::SecurityProtocol;
use arctern_transport::{ClientAuth, PemSource, TlsSettings};
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
    /// Kafka's `sasl.enabled.mechanisms` (comma-separated): what a SASL listener offers.
    #[serde(rename = "sasl.enabled.mechanisms")]
    pub sasl_enabled_mechanisms: Option<String>,
    /// Kafka's `connections.max.reauth.ms`: SASL sessions last this long unless the
    /// client re-authenticates (KIP-368); 0 (the default) disables it.
    #[serde(rename = "connections.max.reauth.ms")]
    pub connections_max_reauth_ms: Option<i64>,
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
    /// Kafka's `max.connections`: the node's Kafka connections (the inter-broker listener
    /// exempt); more are closed on accept.
    #[serde(rename = "max.connections")]
    pub max_connections: Option<i64>,
    /// Kafka's `max.connections.per.ip`.
    #[serde(rename = "max.connections.per.ip")]
    pub max_connections_per_ip: Option<i64>,
    /// Kafka's `connections.max.idle.ms` (default 600000; -1 never).
    #[serde(rename = "connections.max.idle.ms")]
    pub connections_max_idle_ms: Option<i64>,
    /// RabbitMQ's `connection_max`: the node's AMQP connections; more are closed on accept.
    #[serde(rename = "connection_max")]
    pub connection_max: Option<i64>,
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
    /// Arctern's own: the structural checks on every batch read (default true). False only
    /// for the storage-fault tests' negative control (`arctern_storage::set_verify_reads`).
    #[serde(rename = "storage.verify.reads")]
    pub storage_verify_reads: Option<bool>,
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
    /// RabbitMQ's `management.ssl.*`: the management listener over TLS (off by default).
    #[serde(rename = "management.ssl.port")]
    pub management_ssl_port: Option<u16>,
    #[serde(rename = "management.ssl.ip")]
    pub management_ssl_ip: Option<String>,
    #[serde(rename = "management.ssl.certfile")]
    pub management_ssl_certfile: Option<PathBuf>,
    #[serde(rename = "management.ssl.keyfile")]
    pub management_ssl_keyfile: Option<PathBuf>,
    #[serde(rename = "management.ssl.cacertfile")]
    pub management_ssl_cacertfile: Option<PathBuf>,
    #[serde(rename = "management.ssl.verify")]
    pub management_ssl_verify: Option<String>,
    #[serde(rename = "management.ssl.fail_if_no_peer_cert")]
    pub management_ssl_fail_if_no_peer_cert: Option<bool>,
    /// The HTTP listener (metrics), `host:port`; RabbitMQ's management port by default.
    #[serde(rename = "management.listen")]
    pub management_listen: Option<String>,
    /// RabbitMQ's Prometheus listener (rabbitmq_prometheus): `/metrics` without auth on
    /// this port (RabbitMQ's is 15692). Not started unless set.
    #[serde(rename = "prometheus.tcp.port")]
    pub prometheus_tcp_port: Option<toml::Value>,
    /// The Prometheus listener's address; loopback unless set.
    #[serde(rename = "prometheus.tcp.ip")]
    pub prometheus_tcp_ip: Option<String>,
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
    /// Message bodies being received on one AMQP connection before its next publish waits.
    #[serde(rename = "amqp.max_buffered_body_bytes_per_connection")]
    pub amqp_max_buffered_body_bytes_per_connection: Option<i64>,
    /// The same over all AMQP connections of the node.
    #[serde(rename = "amqp.max_buffered_body_bytes")]
    pub amqp_max_buffered_body_bytes: Option<i64>,
    /// Kafka ACLs are checked when set (Kafka's StandardAuthorizer or AclAuthorizer name).
    #[serde(rename = "authorizer.class.name")]
    pub authorizer_class_name: Option<String>,
    /// `User:a;User:b`: principals the authorizer allows everything.
    #[serde(rename = "super.users")]
    pub super_users: Option<String>,
    #[serde(rename = "allow.everyone.if.no.acl.found")]
    pub allow_everyone_if_no_acl_found: Option<bool>,
    /// The shared secret cluster members prove membership with (at least 16 bytes).
    #[serde(rename = "cluster.secret")]
    pub cluster_secret: Option<String>,
    /// A file holding `cluster.secret` (kept out of the config file; mode 0600).
    #[serde(rename = "cluster.secret.file")]
    pub cluster_secret_file: Option<PathBuf>,
    /// `NAME:PROTOCOL,...`: the security protocol of each listener name.
    #[serde(rename = "listener.security.protocol.map")]
    pub listener_security_protocol_map: Option<String>,
    /// The listener other brokers fetch from (its advertised endpoint is the registered
    /// host and port).
    #[serde(rename = "inter.broker.listener.name")]
    pub inter_broker_listener_name: Option<String>,
    /// RabbitMQ's TLS listener: a port or `host:port`.
    #[serde(rename = "listeners.ssl.default")]
    pub listeners_ssl_default: Option<toml::Value>,
    /// RabbitMQ's name for the plain AMQP listener (an alias of `amqp.listen`).
    #[serde(rename = "listeners.tcp.default")]
    pub listeners_tcp_default: Option<toml::Value>,
    #[serde(rename = "ssl_options.cacertfile")]
    pub ssl_options_cacertfile: Option<PathBuf>,
    #[serde(rename = "ssl_options.certfile")]
    pub ssl_options_certfile: Option<PathBuf>,
    #[serde(rename = "ssl_options.keyfile")]
    pub ssl_options_keyfile: Option<PathBuf>,
    /// `verify_peer` or `verify_none`.
    #[serde(rename = "ssl_options.verify")]
    pub ssl_options_verify: Option<String>,
    #[serde(rename = "ssl_options.fail_if_no_peer_cert")]
    pub ssl_options_fail_if_no_peer_cert: Option<bool>,
    /// `distinguished_name` or `common_name`: the EXTERNAL user of a client certificate.
    #[serde(rename = "ssl_cert_login_from")]
    pub ssl_cert_login_from: Option<String>,
    /// Kafka's `ssl.*` keys and their per-listener `listener.name.<name>.ssl.*` overrides,
    /// as written (see [`SSL_KEYS`]).
    #[serde(skip)]
    pub ssl: BTreeMap<String, String>,
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
    "prometheus.tcp.ip",
    "cluster.secret",
    "cluster.secret.file",
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

/// Kafka's TLS keys, each also accepted as `listener.name.<name lower-case>.<key>`.
pub const SSL_KEYS: &[&str] = &[
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.key.password",
    "ssl.keystore.password",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.certificates",
    "ssl.client.auth",
];

/// Every key the file accepts, for the environment overlay.
const KEYS: &[&str] = &[
    "node.id",
    "log.dirs",
    "listeners",
    "advertised.listeners",
    "sasl.enabled.mechanisms",
    "connections.max.reauth.ms",
    "max.connections",
    "max.connections.per.ip",
    "connections.max.idle.ms",
    "connection_max",
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
    "storage.verify.reads",
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
    "management.listen",
    "management.ssl.port",
    "management.ssl.ip",
    "management.ssl.certfile",
    "management.ssl.keyfile",
    "management.ssl.cacertfile",
    "management.ssl.verify",
    "management.ssl.fail_if_no_peer_cert",
    "prometheus.tcp.port",
    "prometheus.tcp.ip",
    "amqp.listen",
    "amqp.frame_max",
    "amqp.channel_max",
    "amqp.heartbeat",
    "amqp.max_message_size",
    "amqp.consumer_timeout",
    "amqp.disk_free_limit",
    "amqp.vm_memory_high_watermark",
    "amqp.queue_segment_bytes",
    "amqp.max_buffered_body_bytes_per_connection",
    "amqp.max_buffered_body_bytes",
    "authorizer.class.name",
    "super.users",
    "allow.everyone.if.no.acl.found",
    "cluster.secret",
    "cluster.secret.file",
    "listener.security.protocol.map",
    "inter.broker.listener.name",
    "listeners.ssl.default",
    "listeners.tcp.default",
    "ssl_options.cacertfile",
    "ssl_options.certfile",
    "ssl_options.keyfile",
    "ssl_options.verify",
    "ssl_options.fail_if_no_peer_cert",
    "ssl_cert_login_from",
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.certificates",
    "ssl.client.auth",
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
        FileConfig::from_table(table)
    }

    /// Takes the `ssl.*` and `listener.name.*` keys out (their set is open-ended), then
    /// deserializes the rest.
    pub fn from_table(mut table: toml::Table) -> Result<FileConfig> {
        let mut ssl = BTreeMap::new();
        let keys: Vec<String> = table
            .keys()
            .filter(|k| k.starts_with("ssl.") || k.starts_with("listener.name."))
            .cloned()
            .collect();
        for key in keys {
            let base = match key.strip_prefix("listener.name.") {
                Some(rest) => rest.split_once('.').map_or("", |(_, k)| k),
                None => key.as_str(),
            };
            if !SSL_KEYS.contains(&base) {
                bail!("invalid config: unknown key '{key}'");
            }
            let value = match table.remove(&key) {
                Some(toml::Value::String(s)) => s,
                Some(other) => other.to_string(),
                None => continue,
            };
            ssl.insert(key, value);
        }
        let mut file: FileConfig =
            FileConfig::deserialize(toml::Value::Table(table)).context("invalid config")?;
        file.ssl = ssl;
        Ok(file)
    }

    /// A Kafka `ssl.*` key for `listener`: its `listener.name.<listener>.` override first.
    fn ssl_key(&self, listener: &str, key: &str) -> Option<&str> {
        let prefixed = format!("listener.name.{}.{key}", listener.to_ascii_lowercase());
        self.ssl
            .get(&prefixed)
            .or_else(|| self.ssl.get(key))
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// The Kafka SASL settings: `sasl.enabled.mechanisms`, `connections.max.reauth.ms`.
pub fn sasl_config(file: &FileConfig) -> Result<arctern_kafka::sasl::SaslConfig> {
    let mut config = arctern_kafka::sasl::SaslConfig::new(sasl_enabled_mechanisms(file)?);
    if let Some(v) = file.connections_max_reauth_ms {
        config.reauth_ms = non_negative("connections.max.reauth.ms", v)?;
    }
    Ok(config)
}

/// `sasl.enabled.mechanisms` (default PLAIN,SCRAM-SHA-256,SCRAM-SHA-512).
pub fn sasl_enabled_mechanisms(file: &FileConfig) -> Result<Vec<String>> {
    let Some(list) = &file.sasl_enabled_mechanisms else {
        return Ok(arctern_kafka::sasl::DEFAULT_MECHANISMS
            .iter()
            .map(|m| m.to_string())
            .collect());
    };
    let mut out = Vec::new();
    for m in list.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let m = m.to_ascii_uppercase();
        if !arctern_kafka::sasl::is_known_mechanism(&m) {
            bail!("sasl.enabled.mechanisms: {m} is not supported (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)");
        }
        if !out.contains(&m) {
            out.push(m);
        }
    }
    Ok(out)
}

/// One Kafka listener: `NAME://host:port` with its security protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaListener {
    pub name: String,
    pub protocol: SecurityProtocol,
    /// `host:port` to bind (an empty host binds every interface, as Kafka does).
    pub bind: String,
    /// Set for SSL and SASL_SSL.
    pub tls: Option<TlsSettings>,
}

/// Every Kafka listener, where each is advertised, and the inter-broker one.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaListeners {
    pub listeners: Vec<KafkaListener>,
    /// `host:port` per listener name from `advertised.listeners` (others advertise their
    /// bound address).
    pub advertised: BTreeMap<String, String>,
    pub inter_broker: String,
}

/// Splits `NAME://host:port` (or a bare `host:port`, which is `default_name`).
fn split_listener<'a>(s: &'a str, default_name: &'a str) -> Result<(String, &'a str)> {
    match s.split_once("://") {
        Some((name, addr)) if !name.is_empty() => Ok((name.to_ascii_uppercase(), addr)),
        Some(_) => bail!("listener '{s}' has no name"),
        None => Ok((default_name.to_string(), s)),
    }
}

/// Kafka's listener keys: `listeners` (or the `--kafka-listen` flag, same syntax, which
/// wins), `listener.security.protocol.map`, `advertised.listeners`,
/// `inter.broker.listener.name`, and the TLS keys of each SSL/SASL_SSL listener.
pub fn kafka_listeners(file: &FileConfig, flag: Option<&str>) -> Result<KafkaListeners> {
    let spec = flag
        .or(file.listeners.as_deref())
        .unwrap_or("PLAINTEXT://127.0.0.1:9092");
    let mut map: BTreeMap<String, SecurityProtocol> = BTreeMap::new();
    if let Some(m) = &file.listener_security_protocol_map {
        for entry in m.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, proto) = entry.split_once(':').with_context(|| {
                format!("listener.security.protocol.map entry '{entry}' is not NAME:PROTOCOL")
            })?;
            let proto = SecurityProtocol::parse(proto.trim()).with_context(|| {
                format!("listener.security.protocol.map: unknown security protocol '{proto}'")
            })?;
            map.insert(name.trim().to_ascii_uppercase(), proto);
        }
    }
    let mut listeners: Vec<KafkaListener> = Vec::new();
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, addr) = split_listener(entry, "PLAINTEXT")?;
        let protocol = map
            .get(&name)
            .copied()
            .or_else(|| SecurityProtocol::parse(&name))
            .with_context(|| format!("listener {name} is not in listener.security.protocol.map"))?;
        if listeners.iter().any(|l| l.name == name) {
            bail!("listener name {name} appears twice in listeners");
        }
        let (host, port) = addr
            .rsplit_once(':')
            .with_context(|| format!("listener '{entry}' has no port"))?;
        port.parse::<u16>()
            .with_context(|| format!("bad port in listener '{entry}'"))?;
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        let tls = if protocol.uses_tls() {
            Some(kafka_tls(file, &name)?)
        } else {
            None
        };
        listeners.push(KafkaListener {
            name,
            protocol,
            bind: format!("{host}:{port}"),
            tls,
        });
    }
    let first = listeners
        .first()
        .context("listeners is empty")?
        .name
        .clone();
    let mut advertised = BTreeMap::new();
    if let Some(a) = &file.advertised_listeners {
        for entry in a.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, addr) = split_listener(entry, &first)?;
            if !listeners.iter().any(|l| l.name == name) {
                bail!("advertised.listeners names {name}, which is not in listeners");
            }
            advertised.insert(name, addr.to_string());
        }
    }
    let inter_broker = match &file.inter_broker_listener_name {
        Some(n) => {
            let n = n.to_ascii_uppercase();
            if !listeners.iter().any(|l| l.name == n) {
                bail!("inter.broker.listener.name {n} is not in listeners");
            }
            n
        }
        // Kafka's default, security.inter.broker.protocol = PLAINTEXT, picks the listener
        // named PLAINTEXT; without one, the first listener.
        None => listeners
            .iter()
            .find(|l| l.name == "PLAINTEXT")
            .map_or(first, |l| l.name.clone()),
    };
    Ok(KafkaListeners {
        listeners,
        advertised,
        inter_broker,
    })
}

/// The TLS material of Kafka listener `name` (PEM only).
fn kafka_tls(file: &FileConfig, name: &str) -> Result<TlsSettings> {
    let key = |k: &str| file.ssl_key(name, k);
    for typ in ["ssl.keystore.type", "ssl.truststore.type"] {
        if let Some(t) = key(typ) {
            if !t.eq_ignore_ascii_case("PEM") {
                bail!("listener {name}: {typ} {t} is not supported (only PEM)");
            }
        }
    }
    if key("ssl.key.password").is_some() {
        bail!("listener {name}: ssl.key.password is not supported (use an unencrypted PEM key, readable only by the broker)");
    }
    let inline = |k: &str, pem: &str| PemSource::Inline {
        key: k.to_string(),
        pem: pem.to_string(),
    };
    let (cert_chain, private_key) = match (
        key("ssl.keystore.location"),
        key("ssl.keystore.certificate.chain"),
        key("ssl.keystore.key"),
    ) {
        (Some(loc), _, _) => (
            PemSource::File(PathBuf::from(loc)),
            PemSource::File(PathBuf::from(loc)),
        ),
        (None, Some(chain), Some(k)) => (
            inline("ssl.keystore.certificate.chain", chain),
            inline("ssl.keystore.key", k),
        ),
        _ => bail!(
            "listener {name} uses TLS: set ssl.keystore.location (a PEM file with the key and the certificate chain) or ssl.keystore.certificate.chain and ssl.keystore.key"
        ),
    };
    let ca = match (
        key("ssl.truststore.location"),
        key("ssl.truststore.certificates"),
    ) {
        (Some(loc), _) => Some(PemSource::File(PathBuf::from(loc))),
        (None, Some(pem)) => Some(inline("ssl.truststore.certificates", pem)),
        (None, None) => None,
    };
    let client_auth = match key("ssl.client.auth") {
        Some(v) => ClientAuth::parse(v).with_context(|| {
            format!(
                "listener {name}: ssl.client.auth must be required, requested or none, not '{v}'"
            )
        })?,
        None => ClientAuth::None,
    };
    if client_auth != ClientAuth::None && ca.is_none() {
        bail!("listener {name}: ssl.client.auth {v} needs ssl.truststore.location or ssl.truststore.certificates", v = key("ssl.client.auth").unwrap_or_default());
    }
    Ok(TlsSettings {
        cert_chain,
        key: private_key,
        ca,
        client_auth,
    })
}

/// RabbitMQ's management port, on loopback.
pub const DEFAULT_MANAGEMENT_LISTEN: &str = "127.0.0.1:15672";

/// The HTTP listener's address, and whether it was configured: only a configured one
/// must bind (several nodes on one machine share the default).
pub fn management_listen(file: &FileConfig) -> (String, bool) {
    match &file.management_listen {
        Some(a) => (a.clone(), true),
        None => (DEFAULT_MANAGEMENT_LISTEN.to_string(), false),
    }
}

/// RabbitMQ's Prometheus port (`prometheus.tcp.port`, `prometheus.tcp.ip`): the address
/// of the unauthenticated `/metrics` listener, `None` unless the port is configured.
/// The address defaults to loopback (RabbitMQ binds every interface; a broker that is
/// not configured for it should not expose its numbers).
pub fn prometheus_listen(file: &FileConfig) -> Result<Option<String>> {
    let port = match &file.prometheus_tcp_port {
        None => return Ok(None),
        Some(toml::Value::Integer(p)) => {
            u16::try_from(*p).with_context(|| format!("prometheus.tcp.port: bad port {p}"))?
        }
        Some(toml::Value::String(s)) => s
            .parse::<u16>()
            .with_context(|| format!("prometheus.tcp.port: bad port '{s}'"))?,
        Some(other) => bail!("prometheus.tcp.port must be a port number, not {other}"),
    };
    let ip = file.prometheus_tcp_ip.as_deref().unwrap_or("127.0.0.1");
    let ip: std::net::IpAddr = ip
        .parse()
        .with_context(|| format!("prometheus.tcp.ip: not an IP address: '{ip}'"))?;
    Ok(Some(std::net::SocketAddr::new(ip, port).to_string()))
}

/// The AMQP listeners: plain (`--amqp-listen`, `amqp.listen` or RabbitMQ's
/// `listeners.tcp.default`) and, with `listeners.ssl.default`, TLS with `ssl_options.*`.
pub fn amqp_listeners(
    file: &FileConfig,
    flag: Option<&str>,
) -> Result<(String, Option<(String, TlsSettings)>)> {
    let addr = |v: &toml::Value, key: &str, default_host: &str| -> Result<String> {
        match v {
            toml::Value::Integer(p) => {
                let p = u16::try_from(*p).with_context(|| format!("{key}: bad port {p}"))?;
                Ok(format!("{default_host}:{p}"))
            }
            toml::Value::String(s) if s.parse::<u16>().is_ok() => Ok(format!("{default_host}:{s}")),
            toml::Value::String(s) if s.contains(':') => Ok(s.clone()),
            other => bail!("{key} must be a port or host:port, not {other}"),
        }
    };
    let plain = match (flag, &file.amqp_listen, &file.listeners_tcp_default) {
        (Some(f), _, _) => f.to_string(),
        (None, Some(a), _) => a.clone(),
        (None, None, Some(v)) => addr(v, "listeners.tcp.default", "127.0.0.1")?,
        (None, None, None) => "127.0.0.1:5672".to_string(),
    };
    let Some(ssl) = &file.listeners_ssl_default else {
        return Ok((plain, None));
    };
    let host = plain
        .rsplit_once(':')
        .map_or("127.0.0.1", |(h, _)| h)
        .to_string();
    let ssl_addr = addr(ssl, "listeners.ssl.default", &host)?;
    let (Some(cert), Some(key)) = (&file.ssl_options_certfile, &file.ssl_options_keyfile) else {
        bail!("listeners.ssl.default needs ssl_options.certfile and ssl_options.keyfile");
    };
    let verify = match file.ssl_options_verify.as_deref() {
        None | Some("verify_none") => false,
        Some("verify_peer") => true,
        Some(v) => bail!("ssl_options.verify must be verify_peer or verify_none, not '{v}'"),
    };
    let client_auth = match (
        verify,
        file.ssl_options_fail_if_no_peer_cert.unwrap_or(false),
    ) {
        (false, _) => ClientAuth::None,
        (true, false) => ClientAuth::Requested,
        (true, true) => ClientAuth::Required,
    };
    let ca = file.ssl_options_cacertfile.clone().map(PemSource::File);
    if client_auth != ClientAuth::None && ca.is_none() {
        bail!("ssl_options.verify = verify_peer needs ssl_options.cacertfile");
    }
    Ok((
        plain,
        Some((
            ssl_addr,
            TlsSettings {
                cert_chain: PemSource::File(cert.clone()),
                key: PemSource::File(key.clone()),
                ca,
                client_auth,
            },
        )),
    ))
}

/// RabbitMQ's `management.ssl.*`: the HTTPS management listener (`ip:port`, TLS), when
/// `management.ssl.port` is set; on loopback unless `management.ssl.ip` says otherwise.
pub fn management_tls(file: &FileConfig) -> Result<Option<(String, TlsSettings)>> {
    let Some(port) = file.management_ssl_port else {
        return Ok(None);
    };
    let ip = file.management_ssl_ip.as_deref().unwrap_or("127.0.0.1");
    let (Some(cert), Some(key)) = (&file.management_ssl_certfile, &file.management_ssl_keyfile)
    else {
        bail!("management.ssl.port needs management.ssl.certfile and management.ssl.keyfile");
    };
    let verify = match file.management_ssl_verify.as_deref() {
        None | Some("verify_none") => false,
        Some("verify_peer") => true,
        Some(v) => bail!("management.ssl.verify must be verify_peer or verify_none, not '{v}'"),
    };
    let client_auth = match (
        verify,
        file.management_ssl_fail_if_no_peer_cert.unwrap_or(false),
    ) {
        (false, _) => ClientAuth::None,
        (true, false) => ClientAuth::Requested,
        (true, true) => ClientAuth::Required,
    };
    let ca = file.management_ssl_cacertfile.clone().map(PemSource::File);
    if client_auth != ClientAuth::None && ca.is_none() {
        bail!("management.ssl.verify = verify_peer needs management.ssl.cacertfile");
    }
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    Ok(Some((
        format!("{host}:{port}"),
        TlsSettings {
            cert_chain: PemSource::File(cert.clone()),
            key: PemSource::File(key.clone()),
            ca,
            client_auth,
        },
    )))
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
    let mut c = arctern_amqp::AmqpServerConfig {
        connection_quota: arctern_transport::ConnectionQuota::new(amqp_connection_limits(file)?),
        ..Default::default()
    };
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
    c.body_budget = arctern_amqp::budget::BodyBudget::new(
        positive_or(
            "amqp.max_buffered_body_bytes_per_connection",
            file.amqp_max_buffered_body_bytes_per_connection,
            arctern_amqp::budget::BodyBudget::DEFAULT_PER_CONNECTION,
        )?,
        positive_or(
            "amqp.max_buffered_body_bytes",
            file.amqp_max_buffered_body_bytes,
            arctern_amqp::budget::BodyBudget::DEFAULT_TOTAL,
        )?,
    );
    c.ssl_cert_login_from = match file.ssl_cert_login_from.as_deref() {
        None | Some("distinguished_name") => arctern_amqp::CertLoginFrom::DistinguishedName,
        Some("common_name") => arctern_amqp::CertLoginFrom::CommonName,
        Some(v) => {
            bail!("ssl_cert_login_from must be distinguished_name or common_name, not '{v}'")
        }
    };
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

/// The class names Kafka users configure; either turns on Arctern's ACL authorizer, which
/// decides as both do.
const AUTHORIZER_CLASSES: &[&str] = &[
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
];

/// The Kafka authorizer's settings, or `None` (nothing is checked) without
/// `authorizer.class.name`.
pub fn authorizer_config(
    file: &FileConfig,
) -> Result<Option<arctern_security::acl::AuthorizerConfig>> {
    let name = match file.authorizer_class_name.as_deref().map(str::trim) {
        None | Some("") => {
            if file.super_users.is_some() || file.allow_everyone_if_no_acl_found.is_some() {
                tracing::warn!(
                    "super.users/allow.everyone.if.no.acl.found are ignored without authorizer.class.name"
                );
            }
            return Ok(None);
        }
        Some(n) => n,
    };
    if !AUTHORIZER_CLASSES.contains(&name) {
        bail!(
            "authorizer.class.name {name} is not supported; use {}",
            AUTHORIZER_CLASSES.join(" or ")
        );
    }
    Ok(Some(arctern_security::acl::AuthorizerConfig {
        super_users: arctern_security::acl::AuthorizerConfig::parse_super_users(
            file.super_users.as_deref().unwrap_or(""),
        ),
        allow_everyone_if_no_acl_found: file.allow_everyone_if_no_acl_found.unwrap_or(false),
    }))
}

/// `cluster.secret` or `cluster.secret.file` (or `ARCTERN_CLUSTER_SECRET[_FILE]`), if set.
pub fn cluster_secret(file: &FileConfig) -> Result<Option<arctern_security::ClusterSecret>> {
    let inline = file.cluster_secret.as_deref().filter(|s| !s.is_empty());
    let path = file
        .cluster_secret_file
        .as_deref()
        .filter(|p| !p.as_os_str().is_empty());
    let bytes = match (inline, path) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => bail!("set cluster.secret or cluster.secret.file, not both"),
        (Some(s), None) => s.as_bytes().to_vec(),
        (None, Some(p)) => {
            warn_if_shared(p);
            std::fs::read(p)
                .with_context(|| format!("reading cluster.secret.file {}", p.display()))?
        }
    };
    arctern_security::ClusterSecret::new(&bytes)
        .map(Some)
        .with_context(|| {
            format!(
                "cluster.secret must be at least {} bytes",
                arctern_security::cluster::MIN_SECRET_LEN
            )
        })
}

/// A secret file others can read is a secret no longer (ssh refuses such keys; we warn).
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o044 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "cluster.secret.file is readable by group or others; chmod 600 it"
                );
            }
        }
    }
}

/// A size or count key that must be positive; `default` when absent.
fn positive_or(key: &str, v: Option<i64>, default: usize) -> anyhow::Result<usize> {
    match v {
        None => Ok(default),
        Some(n) if n > 0 => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        Some(n) => anyhow::bail!("{key} must be positive, got {n}"),
    }
}

/// A connection limit key: absent means none.
fn connection_limit(key: &str, v: Option<i64>) -> anyhow::Result<usize> {
    positive_or(key, v, usize::MAX)
}

/// Kafka's connection limits (`max.connections`, `max.connections.per.ip`).
pub fn kafka_connection_limits(
    file: &FileConfig,
) -> anyhow::Result<arctern_transport::QuotaLimits> {
    Ok(arctern_transport::QuotaLimits {
        max_total: connection_limit("max.connections", file.max_connections)?,
        max_per_ip: connection_limit("max.connections.per.ip", file.max_connections_per_ip)?,
    })
}

/// Kafka's `connections.max.idle.ms` (default 10 minutes; -1 or 0: never).
pub fn kafka_connections_max_idle(file: &FileConfig) -> Option<std::time::Duration> {
    match file.connections_max_idle_ms {
        None => Some(std::time::Duration::from_millis(600_000)),
        Some(ms) if ms > 0 => Some(std::time::Duration::from_millis(ms as u64)),
        Some(_) => None,
    }
}

/// RabbitMQ's `connection_max` (default: no limit).
pub fn amqp_connection_limits(file: &FileConfig) -> anyhow::Result<arctern_transport::QuotaLimits> {
    Ok(arctern_transport::QuotaLimits {
        max_total: connection_limit("connection_max", file.connection_max)?,
        max_per_ip: usize::MAX,
    })
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
        let file = FileConfig::from_table(table).expect("keys are valid");
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

    fn file(pairs: &[(&str, &str)]) -> FileConfig {
        let mut t = toml::Table::new();
        for (k, v) in pairs {
            t.insert((*k).into(), toml::Value::String((*v).into()));
        }
        FileConfig::from_table(t).expect("valid")
    }

    #[test]
    fn authorizer_settings() {
        assert_eq!(authorizer_config(&FileConfig::default()).unwrap(), None);
        let file = FileConfig {
            authorizer_class_name: Some(
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer".into(),
            ),
            super_users: Some("User:admin;User:ops".into()),
            ..FileConfig::default()
        };
        let c = authorizer_config(&file).unwrap().unwrap();
        assert_eq!(c.super_users, vec!["User:admin", "User:ops"]);
        assert!(!c.allow_everyone_if_no_acl_found);
        let file = FileConfig {
            authorizer_class_name: Some("com.example.MyAuthorizer".into()),
            ..FileConfig::default()
        };
        assert!(authorizer_config(&file).is_err());
    }

    #[test]
    fn cluster_secret_inline_file_or_none() {
        let none = FileConfig::default();
        assert!(cluster_secret(&none).unwrap().is_none());
        let short = FileConfig {
            cluster_secret: Some("too-short".into()),
            ..FileConfig::default()
        };
        assert!(cluster_secret(&short).is_err());
        let inline = FileConfig {
            cluster_secret: Some("0123456789abcdef".into()),
            ..FileConfig::default()
        };
        let s = cluster_secret(&inline).unwrap().expect("a secret");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "0123456789abcdef\n").unwrap();
        let from_file = FileConfig {
            cluster_secret_file: Some(path.clone()),
            ..FileConfig::default()
        };
        let f = cluster_secret(&from_file).unwrap().expect("a secret");
        // The same secret either way (the file's trailing newline is not part of it).
        let now = arctern_security::cluster::now_ms();
        assert_eq!(f.verify(&s.prove(2, "raft", now), "raft", now), Ok(2));
        let both = FileConfig {
            cluster_secret: Some("0123456789abcdef".into()),
            cluster_secret_file: Some(path),
            ..FileConfig::default()
        };
        assert!(cluster_secret(&both).is_err());
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
    fn default_and_flag_listeners_are_todays() {
        let l = kafka_listeners(&FileConfig::default(), None).expect("ok");
        assert_eq!(l.listeners.len(), 1);
        assert_eq!(l.listeners[0].name, "PLAINTEXT");
        assert_eq!(l.listeners[0].bind, "127.0.0.1:9092");
        assert_eq!(l.inter_broker, "PLAINTEXT");
        let l = kafka_listeners(&FileConfig::default(), Some("127.0.0.1:1")).expect("ok");
        assert_eq!(l.listeners[0].bind, "127.0.0.1:1");
        assert_eq!(l.listeners[0].protocol, SecurityProtocol::Plaintext);
        // A bare advertised address is the first listener's, as before.
        let f = file(&[("advertised.listeners", "h:5")]);
        let l = kafka_listeners(&f, Some("127.0.0.1:1")).expect("ok");
        assert_eq!(
            l.advertised.get("PLAINTEXT").map(String::as_str),
            Some("h:5")
        );
    }

    #[test]
    fn sasl_mechanisms() {
        let file = FileConfig {
            sasl_enabled_mechanisms: Some("scram-sha-512, PLAIN".into()),
            ..FileConfig::default()
        };
        assert_eq!(
            sasl_enabled_mechanisms(&file).unwrap(),
            vec!["SCRAM-SHA-512", "PLAIN"]
        );
        let file = FileConfig {
            sasl_enabled_mechanisms: Some("GSSAPI".into()),
            ..FileConfig::default()
        };
        assert!(sasl_enabled_mechanisms(&file).is_err());
    }

    #[test]
    fn kafka_listener_syntax_with_custom_names_and_overrides() {
        let f = file(&[
            (
                "listeners",
                "CLIENT://127.0.0.1:9093,INTERNAL://:9092,SASL_SSL://h:9094",
            ),
            (
                "listener.security.protocol.map",
                "CLIENT:SSL,INTERNAL:PLAINTEXT,SASL_SSL:SASL_SSL",
            ),
            ("advertised.listeners", "CLIENT://broker1:9093"),
            ("inter.broker.listener.name", "internal"),
            ("ssl.keystore.location", "/k.pem"),
            ("ssl.truststore.location", "/ca.pem"),
            ("listener.name.client.ssl.client.auth", "required"),
            ("listener.name.sasl_ssl.ssl.keystore.location", "/other.pem"),
        ]);
        let l = kafka_listeners(&f, None).expect("ok");
        let names: Vec<_> = l
            .listeners
            .iter()
            .map(|l| (l.name.as_str(), l.protocol))
            .collect();
        assert_eq!(
            names,
            vec![
                ("CLIENT", SecurityProtocol::Ssl),
                ("INTERNAL", SecurityProtocol::Plaintext),
                ("SASL_SSL", SecurityProtocol::SaslSsl)
            ]
        );
        assert_eq!(l.listeners[1].bind, "0.0.0.0:9092");
        assert_eq!(l.inter_broker, "INTERNAL");
        let client = l.listeners[0].tls.as_ref().expect("tls");
        assert_eq!(client.client_auth, ClientAuth::Required);
        assert_eq!(client.key, PemSource::File("/k.pem".into()));
        let sasl = l.listeners[2].tls.as_ref().expect("tls");
        assert_eq!(sasl.client_auth, ClientAuth::None);
        assert_eq!(sasl.cert_chain, PemSource::File("/other.pem".into()));
        assert!(l.listeners[1].tls.is_none());
    }

    #[test]
    fn listener_mistakes_are_refused() {
        let cases: &[&[(&str, &str)]] = &[
            &[("listeners", "SSL://x:1")],
            &[("listeners", "FOO://x:1")],
            &[("listeners", "PLAINTEXT://x:1,PLAINTEXT://x:2")],
            &[("listeners", "PLAINTEXT://x")],
            &[
                ("listeners", "PLAINTEXT://x:1"),
                ("inter.broker.listener.name", "SSL"),
            ],
            &[
                ("listeners", "PLAINTEXT://x:1"),
                ("advertised.listeners", "SSL://x:1"),
            ],
            &[
                ("listeners", "SSL://x:1"),
                ("ssl.keystore.location", "/k"),
                ("ssl.keystore.type", "JKS"),
            ],
            &[
                ("listeners", "SSL://x:1"),
                ("ssl.keystore.location", "/k"),
                ("ssl.client.auth", "required"),
            ],
        ];
        for c in cases {
            assert!(kafka_listeners(&file(c), None).is_err(), "{c:?}");
        }
        let mut t = toml::Table::new();
        t.insert("ssl.bogus".into(), toml::Value::String("x".into()));
        assert!(FileConfig::from_table(t).is_err());
    }

    #[test]
    fn amqp_tls_listener_from_rabbitmq_keys() {
        let mut t = toml::Table::new();
        t.insert("listeners.ssl.default".into(), toml::Value::Integer(5671));
        t.insert(
            "ssl_options.certfile".into(),
            toml::Value::String("/c.pem".into()),
        );
        t.insert(
            "ssl_options.keyfile".into(),
            toml::Value::String("/k.pem".into()),
        );
        t.insert(
            "ssl_options.cacertfile".into(),
            toml::Value::String("/ca.pem".into()),
        );
        t.insert(
            "ssl_options.verify".into(),
            toml::Value::String("verify_peer".into()),
        );
        t.insert(
            "ssl_options.fail_if_no_peer_cert".into(),
            toml::Value::Boolean(true),
        );
        let f = FileConfig::from_table(t).expect("valid");
        let (plain, ssl) = amqp_listeners(&f, Some("127.0.0.2:5000")).expect("ok");
        assert_eq!(plain, "127.0.0.2:5000");
        let (addr, tls) = ssl.expect("tls");
        assert_eq!(addr, "127.0.0.2:5671");
        assert_eq!(tls.client_auth, ClientAuth::Required);
        let (plain, ssl) = amqp_listeners(&FileConfig::default(), None).expect("ok");
        assert_eq!((plain.as_str(), ssl), ("127.0.0.1:5672", None));
    }

    #[test]
    fn prometheus_port_is_off_unless_configured_and_loopback_by_default() {
        assert_eq!(prometheus_listen(&FileConfig::default()).unwrap(), None);
        let f = |t: &str| FileConfig::from_table(t.parse().expect("toml")).expect("valid");
        assert_eq!(
            prometheus_listen(&f(r#""prometheus.tcp.port" = 15692"#)).unwrap(),
            Some("127.0.0.1:15692".to_string())
        );
        assert_eq!(
            prometheus_listen(&f(r#""prometheus.tcp.port" = "15692"
"prometheus.tcp.ip" = "0.0.0.0""#))
            .unwrap(),
            Some("0.0.0.0:15692".to_string())
        );
        assert!(prometheus_listen(&f(r#""prometheus.tcp.port" = 99999"#)).is_err());
        assert!(prometheus_listen(&f(r#""prometheus.tcp.port" = 1
"prometheus.tcp.ip" = "localhost""#))
        .is_err());
    }
}
