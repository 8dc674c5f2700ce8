//! `arctern topics ...`: what `kafka-topics.sh` and `kafka-configs.sh --entity-type topics`
//! do, over the Kafka protocol (Metadata, CreateTopics, DeleteTopics, DescribeConfigs,
//! IncrementalAlterConfigs), so it works against any node and goes through the same
//! authorization as every other Kafka client.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Result};
use base64::Engine;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use crate::admin_conn::{error_name, AdminConn, SaslArgs};

const CLIENT_ID: &str = "arctern-topics";
/// Kafka's ConfigResource type for a topic.
const RESOURCE_TOPIC: i8 = 2;
/// DescribeConfigs sources `describe` shows: DYNAMIC_TOPIC_CONFIG, DYNAMIC_BROKER_CONFIG,
/// DYNAMIC_DEFAULT_BROKER_CONFIG. kafka-topics.sh also shows STATIC_BROKER_CONFIG (4),
/// but Arctern's broker reports every built-in default of its own as static, which would
/// bury the topic's overrides.
const SHOWN_SOURCES: [i8; 3] = [1, 2, 3];
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

#[derive(clap::Subcommand)]
pub enum TopicsCommand {
    /// List the topic names (internal topics too, like kafka-topics.sh --list).
    List(Common),
    /// Show a topic (or every topic): id, partition count, replication factor, the
    /// configs that are not defaults, then each partition's leader, replicas and ISR.
    Describe {
        /// Topic name; all topics when left out.
        name: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Create a topic.
    Create {
        name: String,
        /// Number of partitions [default: the broker's num.partitions]
        #[arg(long)]
        partitions: Option<i32>,
        /// Replicas per partition [default: the broker's default.replication.factor]
        #[arg(long)]
        replication_factor: Option<i16>,
        /// A topic config, `key=value` (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Delete a topic.
    Delete {
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// Change a topic's configs: `--set key=value` and `--delete key` (back to the
    /// default), both repeatable, applied as one IncrementalAlterConfigs request.
    AlterConfig {
        name: String,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(clap::Args)]
pub struct Common {
    /// Any broker's Kafka listener.
    #[arg(
        long,
        visible_alias = "bootstrap-server",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    sasl: SaslArgs,
}

impl Common {
    async fn connect(&self) -> Result<AdminConn> {
        self.sasl.connect(&self.bootstrap, CLIENT_ID).await
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn key_value(kv: &str) -> Result<(String, String)> {
    let (k, v) = kv
        .split_once('=')
        .ok_or_else(|| anyhow!("expected key=value, got {kv:?}"))?;
    if k.is_empty() {
        bail!("empty config name in {kv:?}");
    }
    Ok((k.to_string(), v.to_string()))
}

pub async fn run(cmd: TopicsCommand) -> Result<()> {
    match cmd {
        TopicsCommand::List(c) => list(c).await,
        TopicsCommand::Describe { name, common } => describe(name, common).await,
        TopicsCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
            common,
        } => create(&name, partitions, replication_factor, &configs, common).await,
        TopicsCommand::Delete { name, common } => delete(&name, common).await,
        TopicsCommand::AlterConfig {
            name,
            set,
            delete,
            common,
        } => alter(&name, &set, &delete, common).await,
    }
}

async fn metadata(conn: &mut AdminConn, topic: Option<&str>) -> Result<MetadataResponse> {
    // v1+: null means all topics
    let version = conn.version::<MetadataRequest>(1, 12)?;
    let req = MetadataRequest::default()
        .with_topics(
            topic.map(|t| vec![MetadataRequestTopic::default().with_name(Some(TopicName(s(t))))]),
        )
        .with_allow_auto_topic_creation(false);
    conn.call(&req, version).await
}

async fn list(c: Common) -> Result<()> {
    let mut conn = c.connect().await?;
    let resp = metadata(&mut conn, None).await?;
    let mut names: Vec<String> = resp
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect();
    names.sort();
    if c.json {
        println!("{}", serde_json::to_string_pretty(&names)?);
    } else {
        for n in names {
            println!("{n}");
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct PartitionView {
    partition: i32,
    leader: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
}

#[derive(Serialize)]
struct TopicView {
    name: String,
    topic_id: String,
    is_internal: bool,
    partition_count: usize,
    replication_factor: usize,
    configs: BTreeMap<String, String>,
    partitions: Vec<PartitionView>,
}

/// Kafka prints a topic id as URL-safe base64 without padding (`Uuid.toString()`).
fn topic_id(id: &[u8; 16]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
}

async fn describe(name: Option<String>, c: Common) -> Result<()> {
    let mut conn = c.connect().await?;
    let resp = metadata(&mut conn, name.as_deref()).await?;
    let mut topics = Vec::new();
    for t in &resp.topics {
        let tname = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        if t.error_code != 0 {
            bail!("topic {tname:?}: {}", error_name(t.error_code));
        }
        let mut partitions: Vec<PartitionView> = t
            .partitions
            .iter()
            .map(|p| PartitionView {
                partition: p.partition_index,
                leader: p.leader_id.0,
                replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                isr: p.isr_nodes.iter().map(|b| b.0).collect(),
            })
            .collect();
        partitions.sort_by_key(|p| p.partition);
        topics.push(TopicView {
            topic_id: topic_id(t.topic_id.as_bytes()),
            is_internal: t.is_internal,
            partition_count: partitions.len(),
            replication_factor: partitions.first().map_or(0, |p| p.replicas.len()),
            configs: BTreeMap::new(),
            partitions,
            name: tname,
        });
    }
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    if !topics.is_empty() {
        let version = conn.version::<DescribeConfigsRequest>(1, 4)?;
        let req = DescribeConfigsRequest::default().with_resources(
            topics
                .iter()
                .map(|t| {
                    DescribeConfigsResource::default()
                        .with_resource_type(RESOURCE_TOPIC)
                        .with_resource_name(s(&t.name))
                        .with_configuration_keys(None)
                })
                .collect(),
        );
        let cresp = conn.call(&req, version).await?;
        for r in cresp.results {
            if r.error_code != 0 {
                bail!(
                    "DescribeConfigs for topic {:?}: {}",
                    r.resource_name.as_str(),
                    error_name(r.error_code)
                );
            }
            if let Some(t) = topics
                .iter_mut()
                .find(|t| t.name == r.resource_name.as_str())
            {
                for cfg in r.configs {
                    if !SHOWN_SOURCES.contains(&cfg.config_source) || cfg.is_sensitive {
                        continue;
                    }
                    if let Some(v) = cfg.value {
                        t.configs.insert(cfg.name.to_string(), v.to_string());
                    }
                }
            }
        }
    }
    if c.json {
        if name.is_some() {
            if let Some(t) = topics.first() {
                println!("{}", serde_json::to_string_pretty(t)?);
                return Ok(());
            }
        }
        println!("{}", serde_json::to_string_pretty(&topics)?);
        return Ok(());
    }
    let list = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    for t in &topics {
        let configs = t
            .configs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        println!(
            "Topic: {}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}",
            t.name, t.topic_id, t.partition_count, t.replication_factor, configs
        );
        for p in &t.partitions {
            let leader = if p.leader < 0 {
                "none".to_string()
            } else {
                p.leader.to_string()
            };
            println!(
                "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
                t.name,
                p.partition,
                leader,
                list(&p.replicas),
                list(&p.isr)
            );
        }
    }
    Ok(())
}

fn print_done(json: bool, action: &str, name: &str) -> Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string(&serde_json::json!({ "topic": name, "result": action }))?
        );
    } else {
        let verb = match action {
            "created" => "Created topic",
            "deleted" => "Deleted topic",
            _ => "Updated the configs of topic",
        };
        println!("{verb} {name}.");
    }
    Ok(())
}

async fn create(
    name: &str,
    partitions: Option<i32>,
    replication_factor: Option<i16>,
    configs: &[String],
    c: Common,
) -> Result<()> {
    let mut conn = c.connect().await?;
    let mut cfgs = Vec::new();
    for kv in configs {
        let (k, v) = key_value(kv)?;
        cfgs.push(
            CreatableTopicConfig::default()
                .with_name(s(&k))
                .with_value(Some(s(&v))),
        );
    }
    // v4+ takes -1 for "the broker's default" partitions / replication factor.
    let version = conn.version::<CreateTopicsRequest>(2, 7)?;
    if version < 4 && (partitions.is_none() || replication_factor.is_none()) {
        bail!("this broker needs --partitions and --replication-factor");
    }
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(s(name)))
            .with_num_partitions(partitions.unwrap_or(-1))
            .with_replication_factor(replication_factor.unwrap_or(-1))
            .with_configs(cfgs)])
        .with_timeout_ms(30_000);
    let resp = conn.call(&req, version).await?;
    for t in resp.topics {
        if t.error_code != 0 {
            bail!(
                "creating topic {name:?}: {}{}",
                error_name(t.error_code),
                t.error_message
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
        }
    }
    wait_for_leaders(&mut conn, name).await?;
    print_done(c.json, "created", name)
}

/// After a create: waits (up to 30 s) until every partition has a leader, showing the
/// count on stderr, so a script may use the topic as soon as this returns.
async fn wait_for_leaders(conn: &mut AdminConn, name: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut shown = false;
    loop {
        let resp = metadata(conn, Some(name)).await?;
        let (total, led) = resp
            .topics
            .iter()
            .filter(|t| t.error_code == 0)
            .flat_map(|t| t.partitions.iter())
            .fold((0, 0), |(n, l), p| {
                (n + 1, l + usize::from(p.leader_id.0 >= 0))
            });
        if total > 0 && led == total {
            if shown {
                eprintln!();
            }
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            if shown {
                eprintln!();
            }
            bail!("topic {name:?} created, but only {led} of {total} partitions have a leader after 30 s");
        }
        eprint!("\rWaiting for partition leaders: {led}/{total}");
        shown = true;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn delete(name: &str, c: Common) -> Result<()> {
    let mut conn = c.connect().await?;
    let version = conn.version::<DeleteTopicsRequest>(1, 6)?;
    let mut req = DeleteTopicsRequest::default().with_timeout_ms(30_000);
    if version >= 6 {
        req.topics = vec![
            kafka_protocol::messages::delete_topics_request::DeleteTopicState::default()
                .with_name(Some(TopicName(s(name)))),
        ];
    } else {
        req.topic_names = vec![TopicName(s(name))];
    }
    let resp = conn.call(&req, version).await?;
    for r in resp.responses {
        if r.error_code != 0 {
            bail!(
                "deleting topic {name:?}: {}{}",
                error_name(r.error_code),
                r.error_message
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
        }
    }
    print_done(c.json, "deleted", name)
}

async fn alter(name: &str, set: &[String], delete: &[String], c: Common) -> Result<()> {
    if set.is_empty() && delete.is_empty() {
        bail!("nothing to change: give --set key=value and/or --delete key");
    }
    let mut configs = Vec::new();
    for kv in set {
        let (k, v) = key_value(kv)?;
        configs.push(
            AlterableConfig::default()
                .with_name(s(&k))
                .with_config_operation(OP_SET)
                .with_value(Some(s(&v))),
        );
    }
    for k in delete {
        configs.push(
            AlterableConfig::default()
                .with_name(s(k))
                .with_config_operation(OP_DELETE)
                .with_value(None),
        );
    }
    let mut conn = c.connect().await?;
    let version = conn.version::<IncrementalAlterConfigsRequest>(0, 1)?;
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(s(name))
            .with_configs(configs),
    ]);
    let resp = conn.call(&req, version).await?;
    for r in resp.responses {
        if r.error_code != 0 {
            bail!(
                "altering topic {name:?}: {}{}",
                error_name(r.error_code),
                r.error_message
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
        }
    }
    print_done(c.json, "altered", name)
}
