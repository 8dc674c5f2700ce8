//! Kafka objects under `/api/kafka`: cluster nodes and controller, topics with partitions,
//! leaders, ISR and configs, consumer groups with members, committed offsets and lag.
//!
//! Everything is read from this node: the replicated metadata (`ClusterState`, the same
//! view Metadata and DescribeCluster answer from), the local replicas (offsets and sizes
//! where this node has the log) and the group coordinator (groups whose offsets partition
//! this node leads, as ListGroups/DescribeGroups/OffsetFetch answer). Lag is known where this
//! node leads the partition (its high watermark is the log end consumers see), as in
//! `/metrics`.

use std::collections::BTreeMap;

use arctern_groups::{GroupError, MemberDescription, OFFSETS_TOPIC};
use arctern_metadata::{ClusterState, PartitionState, NO_LEADER};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::Decodable;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::{ApiError, Caller};
use crate::auth::Need;
use crate::HttpContext;

/// The cluster id every Kafka response carries (Metadata, DescribeCluster).
pub const CLUSTER_ID: &str = "arctern";

pub fn routes() -> OpenApiRouter<HttpContext> {
    OpenApiRouter::new()
        .routes(routes!(kafka_cluster))
        .routes(routes!(kafka_topics))
        .routes(routes!(kafka_topic))
        .routes(routes!(kafka_groups))
        .routes(routes!(kafka_group, kafka_delete_group))
}

/// Kafka's internal topics, and the topics Arctern stores AMQP queues in: internal to a
/// Kafka user (kafka-ui and AKHQ hide them by default).
pub fn is_internal(topic: &str) -> bool {
    topic == OFFSETS_TOPIC || topic == "__transaction_state" || topic.starts_with("__amqp_")
}

// ---- cluster ----

/// `GET /api/kafka/cluster`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KafkaCluster {
    pub cluster_id: String,
    /// The metadata quorum's (Raft) leader, Kafka's "controller"; -1 while there is none.
    pub controller: i32,
    /// Every registered broker, fenced ones included (`alive: false`).
    pub nodes: Vec<KafkaNode>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KafkaNode {
    pub node_id: i32,
    /// The advertised host and port of the broker's first Kafka listener.
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    /// Registered and not fenced (what Metadata lists as a broker).
    pub alive: bool,
}

/// The cluster's id, controller and brokers (Kafka's DescribeCluster).
#[utoipa::path(
    get,
    path = "/api/kafka/cluster",
    tag = "kafka",
    responses(
        (status = 200, body = KafkaCluster),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)
    )
)]
async fn kafka_cluster(
    caller: Caller,
    State(ctx): State<HttpContext>,
) -> Result<Json<KafkaCluster>, ApiError> {
    caller.require(Need::Monitoring)?;
    let state = ctx.broker.cluster();
    let nodes = state
        .brokers
        .values()
        .map(|b| KafkaNode {
            node_id: b.broker_id,
            host: b.host.clone(),
            port: b.port,
            rack: b.rack.clone(),
            alive: !b.fenced,
        })
        .collect();
    Ok(Json(KafkaCluster {
        cluster_id: CLUSTER_ID.to_string(),
        controller: ctx.broker.controller_id(),
        nodes,
    }))
}

// ---- topics ----

/// One row of `GET /api/kafka/topics`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TopicSummary {
    pub name: String,
    pub internal: bool,
    pub partitions: i32,
    pub replication_factor: i32,
    /// Partitions whose ISR is smaller than their replica set.
    pub under_replicated_partitions: i32,
    /// Partitions without a live leader.
    pub offline_partitions: i32,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TopicsQuery {
    /// `false` hides internal topics (`__consumer_offsets`, `__transaction_state`, and the
    /// `__amqp_*` topics that hold AMQP queues). Default `true`.
    pub internal: Option<bool>,
}

fn offline(state: &ClusterState, p: &PartitionState) -> bool {
    p.leader == NO_LEADER || state.brokers.get(&p.leader).is_none_or(|b| b.fenced)
}

fn under_replicated(p: &PartitionState) -> bool {
    p.isr.len() < p.replicas.len()
}

/// Every topic, sorted by name.
#[utoipa::path(
    get,
    path = "/api/kafka/topics",
    tag = "kafka",
    params(TopicsQuery),
    responses(
        (status = 200, body = Vec<TopicSummary>),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)
    )
)]
async fn kafka_topics(
    caller: Caller,
    State(ctx): State<HttpContext>,
    query: Result<Query<TopicsQuery>, QueryRejection>,
) -> Result<Json<Vec<TopicSummary>>, ApiError> {
    caller.require(Need::Monitoring)?;
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let show_internal = query.internal.unwrap_or(true);
    let state = ctx.broker.cluster();
    // `topics` is a BTreeMap: already sorted by name.
    let out = state
        .topics
        .values()
        .filter(|t| show_internal || !is_internal(&t.name))
        .map(|t| TopicSummary {
            name: t.name.clone(),
            internal: is_internal(&t.name),
            partitions: t.partitions.len() as i32,
            replication_factor: t.partitions.first().map_or(0, |p| p.replicas.len() as i32),
            under_replicated_partitions: t.partitions.iter().filter(|p| under_replicated(p)).count()
                as i32,
            offline_partitions: t.partitions.iter().filter(|p| offline(&state, p)).count() as i32,
        })
        .collect();
    Ok(Json(out))
}

/// `GET /api/kafka/topics/{name}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TopicDetail {
    pub name: String,
    pub internal: bool,
    pub partitions: Vec<PartitionDetail>,
    /// Every effective topic config (overrides and broker defaults), as DescribeConfigs.
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PartitionDetail {
    pub partition: i32,
    /// The leader's node id; -1 without one.
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub under_replicated: bool,
    /// From this node's replica; null where this node has no replica of the partition.
    pub log_start_offset: Option<i64>,
    /// This node's high watermark (the leader's is authoritative); null without a replica.
    pub high_watermark: Option<i64>,
    /// Bytes of this node's log of the partition; null without a replica.
    pub size_bytes: Option<u64>,
}

/// One topic: partitions with leader, replicas and ISR, offsets, and configs.
#[utoipa::path(
    get,
    path = "/api/kafka/topics/{name}",
    tag = "kafka",
    params(("name" = String, Path, description = "Topic name")),
    responses(
        (status = 200, body = TopicDetail),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)
    )
)]
async fn kafka_topic(
    caller: Caller,
    State(ctx): State<HttpContext>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<TopicDetail>, ApiError> {
    caller.require(Need::Monitoring)?;
    // A name that does not decode (bad percent-encoding) names no topic.
    let Ok(Path(name)) = name else {
        return Err(ApiError::NotFound);
    };
    let state = ctx.broker.cluster();
    let Some(t) = state.topics.get(&name) else {
        return Err(ApiError::NotFound);
    };
    let partitions = t
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let local = ctx.broker.partition(&name, i as i32).ok();
            PartitionDetail {
                partition: i as i32,
                leader: p.leader,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
                under_replicated: under_replicated(p),
                log_start_offset: local.as_ref().and_then(|l| l.log_start_offset().ok()),
                high_watermark: local.as_ref().map(|l| l.high_watermark()),
                size_bytes: local.as_ref().and_then(|l| l.size_bytes().ok()),
            }
        })
        .collect();
    let configs = ctx
        .broker
        .describe_configs(&name)
        .map_err(|_| ApiError::NotFound)?
        .into_iter()
        .map(|e| (e.name, e.value))
        .collect();
    Ok(Json(TopicDetail {
        name: t.name.clone(),
        internal: is_internal(&t.name),
        partitions,
        configs,
    }))
}

// ---- groups ----

/// One row of `GET /api/kafka/groups`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GroupSummary {
    pub group_id: String,
    /// Kafka's state names: Empty, PreparingRebalance, CompletingRebalance, Stable, Dead.
    pub state: String,
    /// `consumer` for Kafka consumers; empty for groups that only commit offsets.
    pub protocol_type: String,
    pub members: i32,
    /// The sum of the known lags (partitions this node leads); null if none is known.
    pub total_lag: Option<i64>,
}

/// `GET /api/kafka/groups/{id}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GroupDetail {
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
    /// The chosen assignor (e.g. `range`, `cooperative-sticky`); empty when not Stable.
    pub protocol: String,
    /// The node id of the group's coordinator (the leader of its offsets partition).
    pub coordinator: i32,
    pub members: Vec<GroupMember>,
    pub offsets: Vec<GroupOffset>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GroupMember {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    /// Decoded from the consumer protocol's assignment; empty for other protocol types.
    pub assignments: Vec<TopicPartition>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GroupOffset {
    pub topic: String,
    pub partition: i32,
    pub committed_offset: i64,
    /// The partition's high watermark where this node leads it; null elsewhere.
    pub log_end_offset: Option<i64>,
    /// `log_end_offset - committed_offset` (at least 0); null when the end is unknown.
    pub lag: Option<i64>,
    pub metadata: String,
}

/// The high watermark of a partition this node leads.
fn log_end(ctx: &HttpContext, state: &ClusterState, topic: &str, partition: i32) -> Option<i64> {
    let p = state.partition(topic, partition)?;
    if p.leader != ctx.broker.node_id() {
        return None;
    }
    let local = ctx.broker.partition(topic, partition).ok()?;
    local.is_leader().then(|| local.high_watermark())
}

/// The group's committed offsets with log end and lag, sorted by topic and partition.
fn group_offsets(ctx: &HttpContext, state: &ClusterState, group_id: &str) -> Vec<GroupOffset> {
    let Ok(committed) = ctx.groups.fetch_offsets(group_id, None) else {
        return Vec::new();
    };
    let mut out: Vec<GroupOffset> = committed
        .into_iter()
        .filter(|o| o.offset >= 0)
        .map(|o| {
            let end = log_end(ctx, state, &o.topic, o.partition);
            GroupOffset {
                lag: end.map(|e| crate::metrics::lag(e, o.offset)),
                log_end_offset: end,
                topic: o.topic,
                partition: o.partition,
                committed_offset: o.offset,
                metadata: o.metadata,
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    out
}

/// The partitions in a member's consumer-protocol assignment (version i16, then the body).
fn assignments(protocol_type: &str, m: &MemberDescription) -> Vec<TopicPartition> {
    if protocol_type != "consumer" || m.assignment.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([m.assignment[0], m.assignment[1]]);
    // Newer versions read as the newest known one (fields are only ever appended).
    let version = version.clamp(0, 3);
    let mut body: &[u8] = &m.assignment[2..];
    let Ok(a) = ConsumerProtocolAssignment::decode(&mut body, version) else {
        return Vec::new();
    };
    let mut out: Vec<TopicPartition> = a
        .assigned_partitions
        .iter()
        .flat_map(|tp| {
            tp.partitions.iter().map(|p| TopicPartition {
                topic: tp.topic.to_string(),
                partition: *p,
            })
        })
        .collect();
    out.sort();
    out
}

/// The consumer groups this node coordinates (a single node coordinates all), sorted by id.
#[utoipa::path(
    get,
    path = "/api/kafka/groups",
    tag = "kafka",
    responses(
        (status = 200, body = Vec<GroupSummary>),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)
    )
)]
async fn kafka_groups(
    caller: Caller,
    State(ctx): State<HttpContext>,
) -> Result<Json<Vec<GroupSummary>>, ApiError> {
    caller.require(Need::Monitoring)?;
    let state = ctx.broker.cluster();
    let (_, listings) = ctx.groups.list_groups(&[]);
    let out = listings
        .into_iter()
        .map(|g| {
            let members = ctx
                .groups
                .describe_group(&g.group_id)
                .map_or(0, |d| d.members.len() as i32);
            let lags: Vec<i64> = group_offsets(&ctx, &state, &g.group_id)
                .into_iter()
                .filter_map(|o| o.lag)
                .collect();
            GroupSummary {
                total_lag: (!lags.is_empty()).then(|| lags.iter().sum()),
                group_id: g.group_id,
                state: g.state.name().to_string(),
                protocol_type: g.protocol_type,
                members,
            }
        })
        .collect();
    Ok(Json(out))
}

/// One consumer group: state, members with their assignments, committed offsets and lag.
#[utoipa::path(
    get,
    path = "/api/kafka/groups/{id}",
    tag = "kafka",
    params(("id" = String, Path, description = "Group id")),
    responses(
        (status = 200, body = GroupDetail),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, description = "Another node coordinates the group, or its coordinator is loading", body = ErrorBody)
    )
)]
async fn kafka_group(
    caller: Caller,
    State(ctx): State<HttpContext>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<GroupDetail>, ApiError> {
    caller.require(Need::Monitoring)?;
    let Ok(Path(id)) = id else {
        return Err(ApiError::NotFound);
    };
    let state = ctx.broker.cluster();
    let coordinator = state
        .partition(OFFSETS_TOPIC, ctx.groups.partition_for(&id))
        .map_or(NO_LEADER, |p| p.leader);
    let d = match ctx.groups.describe_group(&id) {
        Ok(d) => d,
        Err(e) => return Err(group_error(&ctx, coordinator, e)),
    };
    if d.state == arctern_groups::GroupState::Dead {
        return Err(ApiError::NotFound);
    }
    let members = d
        .members
        .iter()
        .map(|m| GroupMember {
            member_id: m.member_id.clone(),
            client_id: m.client_id.clone(),
            client_host: m.client_host.clone(),
            assignments: assignments(&d.protocol_type, m),
        })
        .collect();
    Ok(Json(GroupDetail {
        offsets: group_offsets(&ctx, &state, &id),
        group_id: d.group_id,
        state: d.state.name().to_string(),
        protocol_type: d.protocol_type,
        protocol: d.protocol,
        coordinator,
        members,
    }))
}

/// Deletes an empty consumer group: its committed offsets and metadata (Kafka's
/// DeleteGroups; `kafka-consumer-groups.sh --delete`). Administrators only.
#[utoipa::path(
    delete,
    path = "/api/kafka/groups/{id}",
    tag = "kafka",
    params(("id" = String, Path, description = "Group id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The group has members", body = ErrorBody),
        (status = 503, description = "Another node coordinates the group, or its coordinator is loading", body = ErrorBody)
    )
)]
async fn kafka_delete_group(
    caller: Caller,
    State(ctx): State<HttpContext>,
    id: Result<Path<String>, PathRejection>,
) -> Result<axum::http::StatusCode, ApiError> {
    caller.require(Need::Administrator)?;
    let Ok(Path(id)) = id else {
        return Err(ApiError::NotFound);
    };
    let coordinator = ctx
        .broker
        .cluster()
        .partition(OFFSETS_TOPIC, ctx.groups.partition_for(&id))
        .map_or(NO_LEADER, |p| p.leader);
    match ctx.groups.delete_group(&id).await {
        Ok(()) => {
            tracing::info!(group = %id, user = %caller.name, "consumer group deleted over HTTP");
            Ok(axum::http::StatusCode::NO_CONTENT)
        }
        Err(GroupError::NonEmptyGroup) => Err(ApiError::Conflict(
            "The group is not empty: stop its consumers first".to_string(),
        )),
        Err(e) => Err(group_error(&ctx, coordinator, e)),
    }
}

/// A coordinator refusal: 503 where another node (or a loading one) coordinates the group,
/// 404 where no group can be (no offsets topic yet, an invalid id).
fn group_error(ctx: &HttpContext, coordinator: i32, e: GroupError) -> ApiError {
    match e {
        GroupError::CoordinatorLoadInProgress | GroupError::CoordinatorNotAvailable => {
            ApiError::Unavailable("the group coordinator is not available now; retry".to_string())
        }
        GroupError::NotCoordinator
            if coordinator != NO_LEADER && coordinator != ctx.broker.node_id() =>
        {
            ApiError::Unavailable(format!(
                "the group is coordinated by node {coordinator}; ask its management listener"
            ))
        }
        _ => ApiError::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as WireTp;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn member(assignment: Vec<u8>) -> MemberDescription {
        MemberDescription {
            member_id: "m".into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            metadata: Bytes::new(),
            assignment: Bytes::from(assignment),
        }
    }

    #[test]
    fn decodes_consumer_assignments() {
        let a =
            ConsumerProtocolAssignment::default().with_assigned_partitions(vec![WireTp::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![2, 0])]);
        for version in 0..=3i16 {
            let mut b = version.to_be_bytes().to_vec();
            a.encode(&mut b, version).unwrap();
            let got = assignments("consumer", &member(b));
            assert_eq!(
                got,
                vec![
                    TopicPartition {
                        topic: "t".into(),
                        partition: 0
                    },
                    TopicPartition {
                        topic: "t".into(),
                        partition: 2
                    }
                ]
            );
        }
        // Garbage and other protocols decode to nothing rather than failing the request.
        assert!(assignments("consumer", &member(vec![0, 0, 0xff, 0xff, 0xff])).is_empty());
        assert!(assignments("consumer", &member(vec![0])).is_empty());
        assert!(assignments("connect", &member(vec![0, 0, 0, 0, 0, 0])).is_empty());
    }

    #[test]
    fn internal_topics() {
        assert!(is_internal("__consumer_offsets"));
        assert!(is_internal("__amqp_q_orders"));
        assert!(!is_internal("orders"));
    }
}
