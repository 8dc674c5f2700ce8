//! `arctern groups list` and `arctern groups describe GROUP`: consumer groups as a Kafka
//! admin client sees them (what `kafka-consumer-groups.sh --list / --describe` shows).
//!
//! * `list` asks every broker in the Metadata response for its groups (ListGroups goes to
//!   each coordinator; v4+ carries the group state).
//! * `describe` finds the group's coordinator (FindCoordinator), asks it for the group
//!   (DescribeGroups: state, protocol, members with their assignments) and its committed
//!   offsets (OffsetFetch), then asks each partition's leader for the log end offset
//!   (ListOffsets, latest) and reports the lag.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    BrokerId, DescribeGroupsRequest, FindCoordinatorRequest, GroupId, ListGroupsRequest,
    ListOffsetsRequest, MetadataRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use crate::admin_conn::{error_name, AdminConn, SaslArgs};

const CLIENT_ID: &str = "arctern-groups";

/// Kafka error codes this tool reacts to.
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;

/// How long to keep retrying while the coordinator is moving or loading.
const COORDINATOR_WAIT: Duration = Duration::from_secs(15);

#[derive(clap::Subcommand)]
pub enum GroupsCommand {
    /// List the consumer groups (id, state, protocol type) of every broker.
    List(ListArgs),
    /// Show one group: state, protocol, members with their assigned partitions, and per
    /// partition the committed offset, the log end offset and the lag.
    Describe(DescribeArgs),
}

#[derive(clap::Args)]
pub struct Common {
    /// Any broker's Kafka listener.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap_server: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    sasl: SaslArgs,
}

#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args)]
pub struct DescribeArgs {
    /// The group id.
    group: String,
    #[command(flatten)]
    common: Common,
}

pub async fn run(cmd: GroupsCommand) -> Result<()> {
    match cmd {
        GroupsCommand::List(a) => list(a.common).await,
        GroupsCommand::Describe(a) => describe(&a.group, a.common).await,
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

#[derive(Debug, Clone, Serialize)]
struct Node {
    node_id: i32,
    host: String,
    port: i32,
}

impl Node {
    fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Metadata: the live brokers, and the leader of each partition of `topics` (all topics
/// with `None`, none with an empty slice).
struct ClusterView {
    brokers: BTreeMap<i32, Node>,
    leaders: HashMap<(String, i32), i32>,
}

async fn metadata(conn: &mut AdminConn, topics: Option<&[String]>) -> Result<ClusterView> {
    // v1+: an empty topic list means none and null means all (v0 has neither)
    let version = conn.version::<MetadataRequest>(1, 12)?;
    let req = MetadataRequest::default()
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(TopicName(s(t)))))
                .collect()
        }))
        .with_allow_auto_topic_creation(false);
    let resp = conn.call(&req, version).await?;
    let brokers = resp
        .brokers
        .iter()
        .map(|b| {
            (
                b.node_id.0,
                Node {
                    node_id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                },
            )
        })
        .collect();
    let mut leaders = HashMap::new();
    for t in &resp.topics {
        let Some(name) = t.name.as_ref() else {
            continue;
        };
        for p in &t.partitions {
            if p.error_code == 0 || p.leader_id.0 >= 0 {
                leaders.insert((name.0.to_string(), p.partition_index), p.leader_id.0);
            }
        }
    }
    Ok(ClusterView { brokers, leaders })
}

// ------------------------------------------------------------------------------ list

#[derive(Debug, Serialize)]
struct ListedGroup {
    group_id: String,
    /// `None` when the broker answers ListGroups below v4 (no state in the response).
    state: Option<String>,
    protocol_type: String,
    coordinator: i32,
}

async fn list(args: Common) -> Result<()> {
    let mut boot = args.sasl.connect(&args.bootstrap_server, CLIENT_ID).await?;
    let view = metadata(&mut boot, Some(&[])).await?;
    if view.brokers.is_empty() {
        bail!("{} reported no live brokers", args.bootstrap_server);
    }
    let mut groups: BTreeMap<String, ListedGroup> = BTreeMap::new();
    for node in view.brokers.values() {
        let mut conn = args
            .sasl
            .connect(&node.addr(), CLIENT_ID)
            .await
            .with_context(|| format!("broker {}", node.node_id))?;
        let version = conn.version::<ListGroupsRequest>(0, 5)?;
        let resp = conn.call(&ListGroupsRequest::default(), version).await?;
        if resp.error_code != 0 {
            bail!(
                "ListGroups on broker {} ({}) failed: {}",
                node.node_id,
                node.addr(),
                error_name(resp.error_code)
            );
        }
        for g in resp.groups {
            let id = g.group_id.0.to_string();
            groups.insert(
                id.clone(),
                ListedGroup {
                    group_id: id,
                    state: (version >= 4).then(|| g.group_state.to_string()),
                    protocol_type: g.protocol_type.to_string(),
                    coordinator: node.node_id,
                },
            );
        }
    }
    let groups: Vec<ListedGroup> = groups.into_values().collect();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "groups": groups }))?
        );
        return Ok(());
    }
    println!(
        "{:<40} {:<20} {:<14} {:>11}",
        "GROUP", "STATE", "PROTOCOL-TYPE", "COORDINATOR"
    );
    for g in &groups {
        println!(
            "{:<40} {:<20} {:<14} {:>11}",
            g.group_id,
            g.state.as_deref().unwrap_or("-"),
            if g.protocol_type.is_empty() {
                "-"
            } else {
                &g.protocol_type
            },
            g.coordinator
        );
    }
    Ok(())
}

// ------------------------------------------------------------------------------ describe

#[derive(Debug, Serialize)]
struct TopicAssignment {
    topic: String,
    partitions: Vec<i32>,
}

#[derive(Debug, Serialize)]
struct Member {
    member_id: String,
    group_instance_id: Option<String>,
    client_id: String,
    host: String,
    /// Decoded from the consumer protocol assignment (`None` if the group does not use
    /// the consumer protocol or the bytes do not parse).
    assignment: Option<Vec<TopicAssignment>>,
    /// Why the assignment could not be decoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    assignment_error: Option<String>,
}

#[derive(Debug, Serialize)]
struct PartitionOffsets {
    topic: String,
    partition: i32,
    /// `None`: no committed offset.
    committed_offset: Option<i64>,
    metadata: Option<String>,
    /// `None`: the leader could not be asked (error in `error`).
    log_end_offset: Option<i64>,
    /// log end offset - committed offset, when both are known.
    lag: Option<i64>,
    member_id: Option<String>,
    client_id: Option<String>,
    host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct GroupDescription {
    group_id: String,
    coordinator: Node,
    state: String,
    protocol_type: String,
    protocol: String,
    members: Vec<Member>,
    offsets: Vec<PartitionOffsets>,
}

/// The consumer protocol's assignment (`ConsumerProtocolAssignment`): version i16, then
/// an array of (topic string, array of i32 partitions), then nullable user data bytes
/// (the same layout in every version so far; fields added later would follow it).
fn decode_assignment(bytes: &[u8]) -> Result<Vec<TopicAssignment>, String> {
    struct R<'a>(&'a [u8]);
    impl R<'_> {
        fn take(&mut self, n: usize) -> Result<&[u8], String> {
            if self.0.len() < n {
                return Err(format!("truncated: need {n} bytes, {} left", self.0.len()));
            }
            let (a, b) = self.0.split_at(n);
            self.0 = b;
            Ok(a)
        }
        fn i16(&mut self) -> Result<i16, String> {
            let b = self.take(2)?;
            Ok(i16::from_be_bytes([b[0], b[1]]))
        }
        fn i32(&mut self) -> Result<i32, String> {
            let b = self.take(4)?;
            Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }
        fn count(&mut self, what: &str) -> Result<usize, String> {
            let n = self.i32()?;
            let n = usize::try_from(n).map_err(|_| format!("negative {what} count {n}"))?;
            if n > self.0.len() {
                return Err(format!("{what} count {n} exceeds the remaining bytes"));
            }
            Ok(n)
        }
    }
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut r = R(bytes);
    let version = r.i16()?;
    if version < 0 {
        return Err(format!("negative assignment version {version}"));
    }
    let n = r.count("topic")?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let len = r.i16()?;
        let len = usize::try_from(len).map_err(|_| format!("bad topic name length {len}"))?;
        let topic = String::from_utf8(r.take(len)?.to_vec())
            .map_err(|_| "topic name is not UTF-8".to_string())?;
        let np = r.count("partition")?;
        let mut partitions = Vec::with_capacity(np);
        for _ in 0..np {
            partitions.push(r.i32()?);
        }
        partitions.sort_unstable();
        out.push(TopicAssignment { topic, partitions });
    }
    // user data (nullable bytes) follows; its content is the assignor's business
    out.sort_by(|a, b| a.topic.cmp(&b.topic));
    Ok(out)
}

/// FindCoordinator for a group, retried while the answer is "not available yet".
async fn find_coordinator(boot: &mut AdminConn, group: &str) -> Result<Node> {
    let version = boot.version::<FindCoordinatorRequest>(0, 4)?;
    let deadline = Instant::now() + COORDINATOR_WAIT;
    loop {
        let mut req = FindCoordinatorRequest::default().with_key_type(0);
        if version >= 4 {
            req = req.with_coordinator_keys(vec![s(group)]);
        } else {
            req = req.with_key(s(group));
        }
        let resp = boot.call(&req, version).await?;
        let (code, msg, node) = if version >= 4 {
            let c = resp
                .coordinators
                .iter()
                .find(|c| c.key.as_str() == group)
                .ok_or_else(|| anyhow!("FindCoordinator response has no entry for {group}"))?;
            (
                c.error_code,
                c.error_message.as_ref().map(|m| m.to_string()),
                Node {
                    node_id: c.node_id.0,
                    host: c.host.to_string(),
                    port: c.port,
                },
            )
        } else {
            (
                resp.error_code,
                resp.error_message.as_ref().map(|m| m.to_string()),
                Node {
                    node_id: resp.node_id.0,
                    host: resp.host.to_string(),
                    port: resp.port,
                },
            )
        };
        match code {
            0 => return Ok(node),
            COORDINATOR_NOT_AVAILABLE | COORDINATOR_LOAD_IN_PROGRESS | NOT_COORDINATOR
                if Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            _ => bail!(
                "FindCoordinator for group {group} via {}: {}{}",
                boot.addr(),
                error_name(code),
                msg.map(|m| format!(": {m}")).unwrap_or_default()
            ),
        }
    }
}

/// What the coordinator says about the group: (DescribeGroups entry, committed offsets).
struct CoordinatorAnswer {
    state: String,
    protocol_type: String,
    protocol: String,
    members: Vec<Member>,
    committed: BTreeMap<(String, i32), (i64, Option<String>)>,
}

/// A retriable coordinator error (the group moved or is loading): find it again.
#[derive(Debug, thiserror::Error)]
#[error("coordinator not ready: {0}")]
struct Retriable(String);

fn retriable(code: i16) -> bool {
    matches!(
        code,
        COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE | NOT_COORDINATOR
    )
}

/// An OffsetFetch group-level error: retriable ones (coordinator moving or loading) are
/// retried by the caller.
fn check_offset_fetch_error(group: &str, code: i16) -> Result<()> {
    if retriable(code) {
        return Err(Retriable(error_name(code)).into());
    }
    if code != 0 {
        bail!("OffsetFetch {group}: {}", error_name(code));
    }
    Ok(())
}

async fn ask_coordinator(conn: &mut AdminConn, group: &str) -> Result<CoordinatorAnswer> {
    let dv = conn.version::<DescribeGroupsRequest>(0, 5)?;
    let dreq = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
    let dresp = conn.call(&dreq, dv).await?;
    let g = dresp
        .groups
        .into_iter()
        .find(|g| g.group_id.0.as_str() == group)
        .ok_or_else(|| anyhow!("DescribeGroups response has no entry for {group}"))?;
    if retriable(g.error_code) {
        return Err(Retriable(error_name(g.error_code)).into());
    }
    if g.error_code != 0 {
        bail!(
            "DescribeGroups {group} on {}: {}",
            conn.addr(),
            error_name(g.error_code)
        );
    }
    let consumer = g.protocol_type.as_str() == "consumer";
    let members = g
        .members
        .iter()
        .map(|m| {
            let (assignment, assignment_error) = if consumer {
                match decode_assignment(&m.member_assignment) {
                    Ok(a) => (Some(a), None),
                    Err(e) => (None, Some(e)),
                }
            } else {
                (None, None)
            };
            Member {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
                client_id: m.client_id.to_string(),
                host: m.client_host.to_string(),
                assignment,
                assignment_error,
            }
        })
        .collect();

    // OffsetFetch with a null topic list: every partition with a committed offset (v2+)
    let ov = conn.version::<OffsetFetchRequest>(2, 9)?;
    let oreq = if ov >= 8 {
        OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(None)])
    } else {
        OffsetFetchRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(None)
    };
    let oresp = conn.call(&oreq, ov).await?;
    // (topic, partition, error, committed offset, metadata) from either response shape
    // (v8+ per group, older at the top level: same fields, different types).
    type Row = (String, i32, i16, i64, Option<String>);
    macro_rules! offset_rows {
        ($topics:expr) => {
            $topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(|p| {
                        let meta = p.metadata.as_ref().map(|m| m.to_string());
                        let name = t.name.0.to_string();
                        (
                            name,
                            p.partition_index,
                            p.error_code,
                            p.committed_offset,
                            meta,
                        )
                    })
                })
                .collect()
        };
    }
    let rows: Vec<Row> = if ov >= 8 {
        let og = oresp
            .groups
            .iter()
            .find(|og| og.group_id.0.as_str() == group)
            .ok_or_else(|| anyhow!("OffsetFetch response has no entry for {group}"))?;
        check_offset_fetch_error(group, og.error_code)?;
        offset_rows!(og.topics)
    } else {
        check_offset_fetch_error(group, oresp.error_code)?;
        offset_rows!(oresp.topics)
    };
    let mut committed = BTreeMap::new();
    let mut partition_errors = Vec::new();
    for (topic, partition, error, offset, meta) in rows {
        if error != 0 {
            partition_errors.push((topic, partition, error));
        } else if offset >= 0 {
            committed.insert((topic, partition), (offset, meta));
        }
    }
    if let Some((t, p, code)) = partition_errors.first() {
        if retriable(*code) {
            return Err(Retriable(error_name(*code)).into());
        }
        bail!("OffsetFetch {group}: {t}/{p}: {}", error_name(*code));
    }
    Ok(CoordinatorAnswer {
        state: g.group_state.to_string(),
        protocol_type: g.protocol_type.to_string(),
        protocol: g.protocol_data.to_string(),
        members,
        committed,
    })
}

/// ListOffsets (latest) for `parts`, grouped by leader. Returns per partition the offset
/// or the reason it is unknown.
async fn log_end_offsets(
    sasl: &SaslArgs,
    view: &ClusterView,
    parts: &BTreeSet<(String, i32)>,
) -> HashMap<(String, i32), Result<i64, String>> {
    let mut out = HashMap::new();
    let mut by_leader: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
    for tp in parts {
        match view.leaders.get(tp) {
            Some(&l) if l >= 0 => by_leader.entry(l).or_default().push(tp.clone()),
            _ => {
                out.insert(tp.clone(), Err("no leader".to_string()));
            }
        }
    }
    for (leader, tps) in by_leader {
        let res = async {
            let node = view
                .brokers
                .get(&leader)
                .ok_or_else(|| anyhow!("leader {leader} is not among the live brokers"))?;
            let mut conn = sasl.connect(&node.addr(), CLIENT_ID).await?;
            let v = conn.version::<ListOffsetsRequest>(1, 7)?;
            let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for (t, p) in &tps {
                topics.entry(t.as_str()).or_default().push(*p);
            }
            let req = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(
                    topics
                        .iter()
                        .map(|(t, ps)| {
                            ListOffsetsTopic::default()
                                .with_name(TopicName(s(t)))
                                .with_partitions(
                                    ps.iter()
                                        .map(|p| {
                                            ListOffsetsPartition::default()
                                                .with_partition_index(*p)
                                                .with_current_leader_epoch(-1)
                                                .with_timestamp(-1)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                );
            conn.call(&req, v).await
        }
        .await;
        match res {
            Ok(resp) => {
                for t in &resp.topics {
                    for p in &t.partitions {
                        let r = if p.error_code == 0 {
                            Ok(p.offset)
                        } else {
                            Err(format!(
                                "ListOffsets on leader {leader}: {}",
                                error_name(p.error_code)
                            ))
                        };
                        out.insert((t.name.0.to_string(), p.partition_index), r);
                    }
                }
            }
            Err(e) => {
                for tp in tps {
                    out.insert(tp, Err(format!("{e:#}")));
                }
            }
        }
    }
    for tp in parts {
        out.entry(tp.clone())
            .or_insert_with(|| Err("not in the ListOffsets response".to_string()));
    }
    out
}

async fn describe(group: &str, args: Common) -> Result<()> {
    let mut boot = args.sasl.connect(&args.bootstrap_server, CLIENT_ID).await?;
    let deadline = Instant::now() + COORDINATOR_WAIT;
    let (coordinator, answer) = loop {
        let node = find_coordinator(&mut boot, group).await?;
        let attempt = async {
            let mut conn = args
                .sasl
                .connect(&node.addr(), CLIENT_ID)
                .await
                .with_context(|| format!("coordinator {}", node.node_id))?;
            ask_coordinator(&mut conn, group).await
        }
        .await;
        match attempt {
            Ok(a) => break (node, a),
            Err(e) if e.is::<Retriable>() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => return Err(e),
        }
    };
    if answer.state == "Dead" && answer.members.is_empty() && answer.committed.is_empty() {
        bail!("consumer group '{group}' does not exist");
    }

    // every partition that is assigned or has a committed offset
    let mut owner: HashMap<(String, i32), &Member> = HashMap::new();
    for m in &answer.members {
        for ta in m.assignment.iter().flatten() {
            for p in &ta.partitions {
                owner.insert((ta.topic.clone(), *p), m);
            }
        }
    }
    let parts: BTreeSet<(String, i32)> = answer
        .committed
        .keys()
        .cloned()
        .chain(owner.keys().cloned())
        .collect();
    let topics: Vec<String> = parts
        .iter()
        .map(|(t, _)| t.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let ends = if parts.is_empty() {
        HashMap::new()
    } else {
        let view = metadata(&mut boot, Some(&topics)).await?;
        log_end_offsets(&args.sasl, &view, &parts).await
    };
    let offsets: Vec<PartitionOffsets> = parts
        .iter()
        .map(|tp| {
            let (committed, meta) = match answer.committed.get(tp) {
                Some((o, m)) => (Some(*o), m.clone()),
                None => (None, None),
            };
            let (end, error) = match ends.get(tp) {
                Some(Ok(e)) => (Some(*e), None),
                Some(Err(e)) => (None, Some(e.clone())),
                None => (None, Some("unknown".to_string())),
            };
            let lag = match (committed, end) {
                (Some(c), Some(e)) => Some((e - c).max(0)),
                _ => None,
            };
            let m = owner.get(tp);
            PartitionOffsets {
                topic: tp.0.clone(),
                partition: tp.1,
                committed_offset: committed,
                metadata: meta,
                log_end_offset: end,
                lag,
                member_id: m.map(|m| m.member_id.clone()),
                client_id: m.map(|m| m.client_id.clone()),
                host: m.map(|m| m.host.clone()),
                error,
            }
        })
        .collect();
    let desc = GroupDescription {
        group_id: group.to_string(),
        coordinator,
        state: answer.state,
        protocol_type: answer.protocol_type,
        protocol: answer.protocol,
        members: answer.members,
        offsets,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&desc)?);
        return Ok(());
    }
    print_description(&desc);
    Ok(())
}

fn print_description(d: &GroupDescription) {
    let dash = |v: &str| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.to_string()
        }
    };
    let opt = |v: Option<i64>| v.map_or("-".to_string(), |x| x.to_string());
    println!("group:         {}", d.group_id);
    println!(
        "coordinator:   {} ({})",
        d.coordinator.node_id,
        d.coordinator.addr()
    );
    println!("state:         {}", d.state);
    println!("protocol type: {}", dash(&d.protocol_type));
    println!("protocol:      {}", dash(&d.protocol));
    println!("members:       {}", d.members.len());
    for m in &d.members {
        let assigned = match (&m.assignment, &m.assignment_error) {
            (Some(a), _) if a.is_empty() => "(none)".to_string(),
            (Some(a), _) => a
                .iter()
                .map(|ta| {
                    let ps: Vec<String> = ta.partitions.iter().map(i32::to_string).collect();
                    format!("{}:{}", ta.topic, ps.join(","))
                })
                .collect::<Vec<_>>()
                .join(" "),
            (None, Some(e)) => format!("(undecodable: {e})"),
            (None, None) => "-".to_string(),
        };
        println!("  {}", m.member_id);
        if let Some(i) = &m.group_instance_id {
            println!("    instance id: {i}");
        }
        println!("    client id:   {}", m.client_id);
        println!("    host:        {}", m.host);
        println!("    assignment:  {assigned}");
    }
    println!();
    println!(
        "{:<32} {:>9} {:>16} {:>16} {:>10}  {:<24} {:<16}",
        "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CLIENT-ID", "HOST"
    );
    for o in &d.offsets {
        println!(
            "{:<32} {:>9} {:>16} {:>16} {:>10}  {:<24} {:<16}{}",
            o.topic,
            o.partition,
            opt(o.committed_offset),
            opt(o.log_end_offset),
            opt(o.lag),
            o.client_id.as_deref().unwrap_or("-"),
            o.host.as_deref().unwrap_or("-"),
            o.error
                .as_ref()
                .map(|e| format!("  ({e})"))
                .unwrap_or_default()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(version: i16, topics: &[(&str, &[i32])], user: Option<&[u8]>) -> Vec<u8> {
        let mut b = version.to_be_bytes().to_vec();
        b.extend((topics.len() as i32).to_be_bytes());
        for (t, ps) in topics {
            b.extend((t.len() as i16).to_be_bytes());
            b.extend(t.as_bytes());
            b.extend((ps.len() as i32).to_be_bytes());
            for p in *ps {
                b.extend(p.to_be_bytes());
            }
        }
        match user {
            None => b.extend((-1i32).to_be_bytes()),
            Some(u) => {
                b.extend((u.len() as i32).to_be_bytes());
                b.extend(u);
            }
        }
        b
    }

    #[test]
    fn decodes_consumer_assignment() {
        let b = assignment(1, &[("zeta", &[3, 1]), ("alpha", &[0])], Some(b"xy"));
        let a = decode_assignment(&b).expect("decodes");
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].topic, "alpha");
        assert_eq!(a[0].partitions, vec![0]);
        assert_eq!(a[1].topic, "zeta");
        assert_eq!(a[1].partitions, vec![1, 3]);
        assert!(decode_assignment(&assignment(0, &[], None))
            .expect("empty")
            .is_empty());
        assert!(decode_assignment(&[]).expect("no bytes").is_empty());
    }

    #[test]
    fn rejects_bad_assignment_bytes() {
        let b = assignment(0, &[("t", &[0, 1, 2])], None);
        assert!(decode_assignment(&b[..b.len() - 9]).is_err());
        let mut huge = 0i16.to_be_bytes().to_vec();
        huge.extend(i32::MAX.to_be_bytes());
        assert!(decode_assignment(&huge).is_err());
        let mut neg = 0i16.to_be_bytes().to_vec();
        neg.extend((-5i32).to_be_bytes());
        assert!(decode_assignment(&neg).is_err());
    }
}
