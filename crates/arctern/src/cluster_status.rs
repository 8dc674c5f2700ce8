//! `arctern cluster status`: the cluster as a Kafka client sees it (a Metadata request),
//! so it works against any node and shows what clients are told.

use anyhow::{bail, Result};
use kafka_protocol::messages::MetadataRequest;

use crate::admin_conn::SaslArgs;

#[derive(clap::Args)]
pub struct StatusArgs {
    /// Any node's Kafka listener.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap_server: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    sasl: SaslArgs,
}

pub async fn run(args: StatusArgs) -> Result<()> {
    let mut conn = args
        .sasl
        .connect(&args.bootstrap_server, "arctern-cluster-status")
        .await?;
    // v1+: a null topic list means all topics (v0 has no null)
    let version = conn.version::<MetadataRequest>(1, 12)?;
    let req = MetadataRequest::default()
        .with_topics(None)
        .with_allow_auto_topic_creation(false);
    let resp = conn.call(&req, version).await?;
    let mut brokers: Vec<_> = resp.brokers.iter().collect();
    brokers.sort_by_key(|b| b.node_id.0);
    let mut topics: Vec<_> = resp.topics.iter().collect();
    topics.sort_by(|a, b| {
        a.name
            .as_ref()
            .map(|n| n.0.as_str())
            .cmp(&b.name.as_ref().map(|n| n.0.as_str()))
    });
    let ids = |v: &[kafka_protocol::messages::BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
    if args.json {
        let doc = serde_json::json!({
            "controller_id": resp.controller_id.0,
            "brokers": brokers.iter().map(|b| serde_json::json!({
                "node_id": b.node_id.0, "host": b.host.as_str(), "port": b.port,
            })).collect::<Vec<_>>(),
            "topics": topics.iter().map(|t| serde_json::json!({
                "name": t.name.as_ref().map(|n| n.0.as_str()).unwrap_or(""),
                "partitions": t.partitions.iter().map(|p| serde_json::json!({
                    "partition": p.partition_index,
                    "leader": p.leader_id.0,
                    "leader_epoch": p.leader_epoch,
                    "replicas": ids(&p.replica_nodes),
                    "isr": ids(&p.isr_nodes),
                    "offline_replicas": ids(&p.offline_replicas),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    if brokers.is_empty() {
        bail!("the broker reported no live nodes");
    }
    println!("controller: {}", resp.controller_id.0);
    println!("nodes:");
    for b in &brokers {
        let role = if b.node_id == resp.controller_id {
            "  (controller)"
        } else {
            ""
        };
        println!("  {:>4}  {}:{}{role}", b.node_id.0, b.host.as_str(), b.port);
    }
    println!("partitions:");
    println!(
        "  {:<32} {:>9} {:>6} {:>6}  {:<12} {:<12}",
        "TOPIC", "PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR"
    );
    let list = |v: Vec<i32>| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    for t in &topics {
        let name = t.name.as_ref().map(|n| n.0.as_str()).unwrap_or("");
        let mut parts: Vec<_> = t.partitions.iter().collect();
        parts.sort_by_key(|p| p.partition_index);
        for p in parts {
            let leader = if p.leader_id.0 < 0 {
                "none".to_string()
            } else {
                p.leader_id.0.to_string()
            };
            println!(
                "  {:<32} {:>9} {:>6} {:>6}  {:<12} {:<12}",
                name,
                p.partition_index,
                leader,
                p.leader_epoch,
                list(ids(&p.replica_nodes)),
                list(ids(&p.isr_nodes)),
            );
        }
    }
    Ok(())
}
