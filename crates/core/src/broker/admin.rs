//! Config administration beyond IncrementalAlterConfigs on topics: dynamic broker configs
//! (kept in the replicated metadata, so every broker applies them and they survive
//! restarts), the legacy AlterConfigs replace semantics, and DeleteRecords.

use std::collections::BTreeMap;

use arctern_metadata::{ClusterState, CommandResult, MetadataCommand};

use super::{command_error, metadata_error, AlterOp, Broker};
use crate::config::{
    describe_dynamic_broker_configs, dynamic_broker_config_default, dynamic_broker_config_type,
    is_dynamic_broker_config, validate_dynamic_broker_config, validate_topic_config, ConfigEntry,
    ConfigSource, ConfigSynonym, ConfigType, TopicDefaults,
};
use crate::error::{CoreError, Result};

/// Kafka's internal topics (`Topic.isInternal`).
const INTERNAL_TOPICS: &[&str] = &["__consumer_offsets", "__transaction_state"];

/// Topic configs Arctern sets for its own use, kept when a client replaces a topic's configs.
const INTERNAL_TOPIC_CONFIGS: &[&str] = &["leader.follows"];

impl Broker {
    /// The topic defaults in force here under `state`: static settings overlaid with the
    /// dynamic cluster-wide and then this broker's dynamic configs.
    pub(super) fn topic_defaults_in(&self, state: &ClusterState) -> TopicDefaults {
        self.config.topic_defaults.with_dynamic(
            state.broker_configs.get(""),
            state.broker_configs.get(&self.config.node_id.to_string()),
        )
    }

    /// The topic defaults in force now (see [`Broker::topic_defaults_in`]).
    pub fn topic_defaults(&self) -> TopicDefaults {
        self.topic_defaults_in(&self.cluster())
    }

    /// Every topic config for a topic with these overrides (CreateTopics' response).
    pub fn describe_topic_overrides(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Vec<ConfigEntry> {
        self.topic_defaults().describe(overrides)
    }

    /// Kafka's rule for a BROKER resource name: "" (the cluster default) or this broker's id.
    fn check_broker_resource(&self, name: &str) -> Result<()> {
        if name.is_empty() {
            return Ok(());
        }
        let id: i32 = name.parse().map_err(|_| {
            CoreError::InvalidRequest(format!("Node id must be an integer, but it is: {name}"))
        })?;
        if id != self.config.node_id {
            return Err(CoreError::InvalidRequest(format!(
                "Unexpected broker id, expected {}, but received {name}",
                self.config.node_id
            )));
        }
        Ok(())
    }

    /// DescribeConfigs on the BROKER resource. "" lists the dynamic cluster-wide configs
    /// that are set; this broker's id lists its static settings (read-only) and every
    /// dynamically updatable config with the value in force.
    pub fn describe_broker_configs(&self, name: &str) -> Result<Vec<ConfigEntry>> {
        self.check_broker_resource(name)?;
        let state = self.cluster();
        if name.is_empty() {
            let set = state.broker_configs.get("").cloned().unwrap_or_default();
            return Ok(set
                .into_iter()
                .map(|(name, value)| ConfigEntry {
                    synonyms: vec![ConfigSynonym {
                        name: name.clone(),
                        value: value.clone(),
                        source: ConfigSource::DynamicDefaultBroker,
                    }],
                    config_type: broker_config_type(&name),
                    name,
                    value,
                    source: ConfigSource::DynamicDefaultBroker,
                    read_only: false,
                    sensitive: false,
                })
                .collect());
        }
        let defaults = self.topic_defaults_in(&state);
        let statics: BTreeMap<String, String> = self
            .static_broker_configs()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let mut entries = describe_dynamic_broker_configs(&defaults, &statics);
        for (name, value) in &statics {
            if !is_dynamic_broker_config(name) {
                entries.push(ConfigEntry {
                    name: name.clone(),
                    value: value.clone(),
                    source: ConfigSource::BrokerDefault,
                    read_only: true,
                    sensitive: false,
                    config_type: broker_config_type(name),
                    synonyms: vec![ConfigSynonym {
                        name: name.clone(),
                        value: value.clone(),
                        source: ConfigSource::BrokerDefault,
                    }],
                });
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// IncrementalAlterConfigs on the BROKER resource ("" = cluster default, or this
    /// broker's id): validated as Kafka does, then stored in the replicated metadata.
    pub async fn alter_broker_configs(
        &self,
        name: &str,
        ops: &[AlterOp],
        validate_only: bool,
    ) -> Result<()> {
        self.check_broker_resource(name)?;
        let current = self
            .cluster()
            .broker_configs
            .get(name)
            .cloned()
            .unwrap_or_default();
        let mut next = current.clone();
        for op in ops {
            match op {
                AlterOp::Set(k, v) => {
                    next.insert(k.clone(), v.clone());
                }
                AlterOp::Delete(k) => {
                    next.remove(k);
                }
                AlterOp::Append(k, v) | AlterOp::Subtract(k, v) => {
                    let append = matches!(op, AlterOp::Append(..));
                    let current = next
                        .get(k)
                        .map(String::as_str)
                        .or_else(|| dynamic_broker_config_default(k))
                        .unwrap_or("");
                    let joined = edit_list(current, v, append);
                    next.insert(k.clone(), joined);
                }
            }
        }
        for (k, v) in &next {
            if current.get(k) != Some(v) {
                validate_dynamic_broker_config(k, v, name.is_empty())?;
            }
        }
        if validate_only {
            return Ok(());
        }
        self.store_broker_configs(name, &current, next).await
    }

    /// Legacy AlterConfigs on the BROKER resource: the given configs replace all dynamic
    /// configs of the resource.
    pub async fn replace_broker_configs(
        &self,
        name: &str,
        configs: &[(String, String)],
        validate_only: bool,
    ) -> Result<()> {
        self.check_broker_resource(name)?;
        check_no_duplicates(configs)?;
        for (k, v) in configs {
            validate_dynamic_broker_config(k, v, name.is_empty())?;
        }
        if validate_only {
            return Ok(());
        }
        let current = self
            .cluster()
            .broker_configs
            .get(name)
            .cloned()
            .unwrap_or_default();
        self.store_broker_configs(name, &current, configs.iter().cloned().collect())
            .await
    }

    async fn store_broker_configs(
        &self,
        name: &str,
        current: &BTreeMap<String, String>,
        next: BTreeMap<String, String>,
    ) -> Result<()> {
        let delete = current
            .keys()
            .filter(|k| !next.contains_key(*k))
            .cloned()
            .collect();
        let cmd = MetadataCommand::AlterBrokerConfigs {
            resource: name.to_string(),
            set: next,
            delete,
        };
        match self.metadata.propose(cmd).await.map_err(metadata_error)? {
            CommandResult::Ok => {}
            other => return Err(command_error(other)),
        }
        self.reconcile_now();
        tracing::info!(resource = name, "altered dynamic broker configs");
        Ok(())
    }

    /// Legacy AlterConfigs on a topic: the given configs replace all of the topic's
    /// overrides (Arctern's internal ones stay).
    pub async fn replace_topic_configs(
        &self,
        name: &str,
        configs: &[(String, String)],
        validate_only: bool,
    ) -> Result<()> {
        let topic = self
            .topic(name)
            .ok_or_else(|| CoreError::UnknownTopicOrPartition(name.to_string()))?;
        check_no_duplicates(configs)?;
        let mut next: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in configs {
            if INTERNAL_TOPIC_CONFIGS.contains(&k.as_str()) {
                return Err(CoreError::InvalidConfig(format!(
                    "Unknown topic config name: {k}"
                )));
            }
            validate_topic_config(k, v)?;
            next.insert(k.clone(), v.clone());
        }
        for k in INTERNAL_TOPIC_CONFIGS {
            if let Some(v) = topic.configs.get(*k) {
                next.insert((*k).to_string(), v.clone());
            }
        }
        if validate_only {
            return Ok(());
        }
        let delete = topic
            .configs
            .keys()
            .filter(|k| !next.contains_key(*k))
            .cloned()
            .collect();
        let cmd = MetadataCommand::AlterTopicConfigs {
            topic: name.to_string(),
            set: next,
            delete,
        };
        match self.metadata.propose(cmd).await.map_err(metadata_error)? {
            CommandResult::Ok => {}
            other => return Err(command_error(other)),
        }
        self.reconcile_now();
        tracing::info!(topic = name, "replaced topic configs");
        Ok(())
    }

    /// DeleteRecords: moves the partition's log start offset up to `offset` (-1 = the high
    /// watermark) on its leader and returns the new log start (the low watermark).
    /// Followers follow it from the log start carried in every fetch response.
    /// Internal topics (group offsets, AMQP queues) are refused, as Kafka refuses its
    /// internal topics: their owners track what the log holds.
    pub fn delete_records(&self, topic: &str, index: i32, offset: i64) -> Result<i64> {
        let partition = self.partition(topic, index)?;
        if INTERNAL_TOPICS.contains(&topic) || topic.starts_with("__amqp_") {
            return Err(CoreError::InvalidTopic(format!(
                "Cannot delete records of internal topic {topic}"
            )));
        }
        partition.delete_records(offset)
    }
}

fn check_no_duplicates(configs: &[(String, String)]) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for (k, _) in configs {
        if !seen.insert(k.as_str()) {
            return Err(CoreError::InvalidRequest(
                "Error due to duplicate config keys".into(),
            ));
        }
    }
    Ok(())
}

/// APPEND/SUBTRACT on a comma-separated list value.
pub(super) fn edit_list(current: &str, items: &str, append: bool) -> String {
    let mut list: Vec<String> = current
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(String::from)
        .collect();
    for item in items.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        if append {
            if !list.iter().any(|i| i == item) {
                list.push(item.to_string());
            }
        } else {
            list.retain(|i| i != item);
        }
    }
    list.join(",")
}

/// The type DescribeConfigs reports for a broker config.
fn broker_config_type(name: &str) -> ConfigType {
    if let Some(t) = dynamic_broker_config_type(name) {
        return t;
    }
    match name {
        "log.dirs" => ConfigType::String,
        "auto.create.topics.enable" | "controlled.shutdown.enable" => ConfigType::Boolean,
        "node.id"
        | "num.partitions"
        | "replica.fetch.max.bytes"
        | "replica.fetch.wait.max.ms"
        | "default.replication.factor" => ConfigType::Int,
        _ => ConfigType::Long,
    }
}
