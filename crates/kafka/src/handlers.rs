//! Kafka request handlers: typed request in, typed response out, over the broker core.
//!
//! Each handler returns either a ready response or a future. Produce, Fetch and
//! OffsetCommit do their side effects immediately (so requests on one connection take
//! effect in the order sent) and defer only the part that waits: the fsync and replication
//! of an append, the long poll of a fetch. Every other request runs alone on its
//! connection (`runs_alone`), so its future may do anything.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use arctern_security::Principal;
use std::time::Duration;

use arctern_core::{Acks, Appended, Broker, CoreError, Partition};
use arctern_kafka_wire::kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use arctern_kafka_wire::kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use arctern_kafka_wire::kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use arctern_kafka_wire::kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, PartitionData as FetchResponsePartitionData,
};
use arctern_kafka_wire::kafka_protocol::messages::find_coordinator_response::Coordinator;
use arctern_kafka_wire::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use arctern_kafka_wire::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use arctern_kafka_wire::kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, TopicProduceResponse,
};
use arctern_kafka_wire::kafka_protocol::messages::*;
use arctern_kafka_wire::kafka_protocol::protocol::StrBytes;
use arctern_kafka_wire::kafka_protocol::records::RecordBatchDecoder;
use arctern_kafka_wire::ResponseError;
use bytes::Bytes;
use tokio::time::Instant;

use crate::admin;
use crate::authz::{self, Authz};
use crate::errors::error_code;
use crate::groups;
use arctern_security::acl::{AclOperation, ResourceType};

pub type Deferred = Pin<Box<dyn Future<Output = ResponseKind> + Send>>;

pub enum Reply {
    Now(Box<ResponseKind>),
    Later(Deferred),
    /// Produce with acks=0: Kafka sends nothing back.
    Nothing,
}

/// Longest long poll honoured, whatever the client asks.
const MAX_FETCH_WAIT: Duration = Duration::from_secs(300);
const CLUSTER_ID: &str = "arctern";

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

fn topic_name(v: &str) -> TopicName {
    TopicName(s(v))
}

fn now(response: ResponseKind) -> Reply {
    Reply::Now(Box::new(response))
}

/// What handlers work on: the broker core and the group coordinator.
#[derive(Debug, Clone)]
pub struct KafkaContext {
    pub broker: Arc<Broker>,
    pub groups: Arc<arctern_groups::GroupCoordinator>,
    /// `cluster.secret`: when set, other nodes prove membership with it (SASL mechanism
    /// ARCTERN-CLUSTER) and replica fetches need that proof.
    pub cluster_secret: Option<Arc<arctern_security::ClusterSecret>>,
    /// `authorizer.class.name`: when set, requests are checked against the Kafka ACLs.
    pub authorizer: Option<Arc<crate::authz::Authorizer>>,
    /// `sasl.enabled.mechanisms` and the SASL server's own keys.
    pub sasl: Arc<crate::sasl::SaslConfig>,
    /// Failed logins per source address, shared with the AMQP listener.
    pub login_limiter: Arc<arctern_security::ratelimit::LoginLimiter>,
    /// The metadata quorum member, for the user database's admin APIs.
    pub metadata: crate::scram_admin::MetadataHandle,
}

/// Who sent a request (group membership records the client id and host; authorization
/// looks at the principal).
#[derive(Debug, Clone)]
pub struct Origin {
    pub peer: std::net::SocketAddr,
    pub client_id: Option<StrBytes>,
    /// Who the connection authenticated as (`Anonymous` until SASL or a client
    /// certificate says otherwise).
    pub principal: Arc<Principal>,
    /// The listener the request arrived on: Metadata answers with that listener's
    /// endpoints; SASL listeners authenticate first.
    pub listener: Arc<ListenerInfo>,
}

/// A Kafka listener's name (`PLAINTEXT`, `SSL`, `CLIENT`...) and security protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerInfo {
    pub name: String,
    pub protocol: arctern_security::SecurityProtocol,
}

impl ListenerInfo {
    /// Today's default: one PLAINTEXT listener named PLAINTEXT.
    pub fn plaintext() -> ListenerInfo {
        ListenerInfo {
            name: "PLAINTEXT".into(),
            protocol: arctern_security::SecurityProtocol::Plaintext,
        }
    }
}

/// Whether a request must run alone on its connection: after every earlier request has
/// completed, and before any later one is handled, as Kafka processes a connection's
/// requests one at a time. Only requests whose handler makes its change at once and whose
/// deferred part merely waits (a produce's fsync and replication, a fetch's long poll, an
/// offset commit's replication) overlap with the requests after them; that keeps
/// pipelined produces sharing group commits. A request added later runs alone unless
/// listed here.
pub fn runs_alone(api_key: ApiKey) -> bool {
    !matches!(
        api_key,
        ApiKey::ApiVersions | ApiKey::Produce | ApiKey::Fetch | ApiKey::OffsetCommit
    )
}

pub fn dispatch(ctx: &KafkaContext, request: RequestKind, version: i16, origin: Origin) -> Reply {
    let broker = &ctx.broker;
    let authz = Authz::new(ctx, &origin);
    match request {
        RequestKind::ApiVersions(_) => now(ResponseKind::ApiVersions(api_versions())),
        RequestKind::Metadata(r) => {
            let broker = Arc::clone(broker);
            Reply::Later(Box::pin(async move {
                ResponseKind::Metadata(
                    metadata(&broker, r, version, &authz, &origin.listener.name).await,
                )
            }))
        }
        RequestKind::Produce(r) => produce(broker, r, &authz),
        RequestKind::Fetch(r) => {
            match crate::cluster_sasl::refuse_fetch(ctx.cluster_secret.as_ref(), &origin, &r) {
                Some(refused) => now(ResponseKind::Fetch(refused)),
                None => fetch_authorized(Arc::clone(broker), r, &authz),
            }
        }
        RequestKind::ListOffsets(r) => now(ResponseKind::ListOffsets(list_offsets(
            broker, r, version, &authz,
        ))),
        RequestKind::CreateTopics(r) => {
            let broker = Arc::clone(broker);
            Reply::Later(Box::pin(async move {
                ResponseKind::CreateTopics(create_topics(&broker, r, &authz).await)
            }))
        }
        RequestKind::DeleteTopics(r) => {
            let broker = Arc::clone(broker);
            Reply::Later(Box::pin(async move {
                ResponseKind::DeleteTopics(delete_topics(&broker, r, &authz).await)
            }))
        }
        RequestKind::CreatePartitions(r) => {
            let broker = Arc::clone(broker);
            Reply::Later(Box::pin(async move {
                ResponseKind::CreatePartitions(create_partitions(&broker, r, &authz).await)
            }))
        }
        RequestKind::OffsetForLeaderEpoch(r) => now(ResponseKind::OffsetForLeaderEpoch(
            crate::cluster_sasl::refuse_offset_for_leader_epoch(
                ctx.cluster_secret.as_ref(),
                &origin,
                &r,
            )
            .unwrap_or_else(|| offset_for_leader_epoch(broker, r, &authz)),
        )),
        RequestKind::DescribeConfigs(r) => now(ResponseKind::DescribeConfigs(
            admin::describe_configs(broker, r, version, &authz),
        )),
        RequestKind::IncrementalAlterConfigs(r) => {
            let broker = Arc::clone(broker);
            Reply::Later(Box::pin(async move {
                ResponseKind::IncrementalAlterConfigs(
                    admin::incremental_alter_configs(&broker, r, &authz).await,
                )
            }))
        }
        RequestKind::AlterConfigs(r) => {
            let broker = Arc::clone(broker);
            Reply::Later(Box::pin(async move {
                ResponseKind::AlterConfigs(admin::alter_configs(&broker, r, &authz).await)
            }))
        }
        RequestKind::DeleteRecords(r) => now(ResponseKind::DeleteRecords(admin::delete_records(
            broker, r, &authz,
        ))),
        RequestKind::DescribeCluster(r) => {
            now(ResponseKind::DescribeCluster(admin::describe_cluster(
                broker,
                r,
                version,
                CLUSTER_ID,
                &authz,
                &origin.listener.name,
            )))
        }
        RequestKind::DescribeLogDirs(r) => now(ResponseKind::DescribeLogDirs(
            crate::operate::describe_log_dirs(broker, r, &authz),
        )),
        RequestKind::ElectLeaders(r) => {
            let broker = Arc::clone(broker);
            Reply::Later(Box::pin(async move {
                ResponseKind::ElectLeaders(crate::operate::elect_leaders(&broker, r, &authz).await)
            }))
        }
        RequestKind::DescribeProducers(r) => now(ResponseKind::DescribeProducers(
            crate::operate::describe_producers(broker, r, &authz),
        )),
        RequestKind::FindCoordinator(r) => {
            let groups = Arc::clone(&ctx.groups);
            let broker = Arc::clone(broker);
            Reply::Later(Box::pin(async move {
                ResponseKind::FindCoordinator(
                    find_coordinator(&groups, &broker, r, version, &authz, &origin.listener.name)
                        .await,
                )
            }))
        }
        RequestKind::JoinGroup(r) => {
            if !authz.group(AclOperation::Read, &r.group_id.0) {
                return now(ResponseKind::JoinGroup(groups::join_group_refused(
                    version,
                    ResponseError::GroupAuthorizationFailed.code(),
                )));
            }
            let groups = Arc::clone(&ctx.groups);
            Reply::Later(Box::pin(async move {
                ResponseKind::JoinGroup(groups::join_group(groups, r, version, origin).await)
            }))
        }
        RequestKind::SyncGroup(r) => {
            if !authz.group(AclOperation::Read, &r.group_id.0) {
                return now(ResponseKind::SyncGroup(
                    SyncGroupResponse::default()
                        .with_error_code(ResponseError::GroupAuthorizationFailed.code()),
                ));
            }
            let groups = Arc::clone(&ctx.groups);
            Reply::Later(Box::pin(async move {
                ResponseKind::SyncGroup(groups::sync_group(groups, r, version).await)
            }))
        }
        RequestKind::Heartbeat(r) => {
            if !authz.group(AclOperation::Read, &r.group_id.0) {
                return now(ResponseKind::Heartbeat(
                    HeartbeatResponse::default()
                        .with_error_code(ResponseError::GroupAuthorizationFailed.code()),
                ));
            }
            now(ResponseKind::Heartbeat(groups::heartbeat(
                &ctx.groups,
                r,
                version,
            )))
        }
        RequestKind::InitProducerId(r) => {
            let broker = Arc::clone(&ctx.broker);
            Reply::Later(Box::pin(async move {
                ResponseKind::InitProducerId(init_producer_id(&broker, r, &authz).await)
            }))
        }
        RequestKind::LeaveGroup(r) => {
            if !authz.group(AclOperation::Read, &r.group_id.0) {
                return now(ResponseKind::LeaveGroup(
                    LeaveGroupResponse::default()
                        .with_error_code(ResponseError::GroupAuthorizationFailed.code()),
                ));
            }
            now(ResponseKind::LeaveGroup(groups::leave_group(
                &ctx.groups,
                r,
                version,
            )))
        }
        RequestKind::OffsetCommit(r) => {
            let commit = groups::offset_commit(ctx, r, version, &authz);
            Reply::Later(Box::pin(
                async move { ResponseKind::OffsetCommit(commit.await) },
            ))
        }
        RequestKind::OffsetFetch(r) => now(ResponseKind::OffsetFetch(groups::offset_fetch(
            &ctx.groups,
            r,
            version,
            &authz,
        ))),
        RequestKind::ListGroups(r) => now(ResponseKind::ListGroups(groups::list_groups(
            &ctx.groups,
            r,
            version,
            &authz,
        ))),
        RequestKind::DescribeGroups(r) => now(ResponseKind::DescribeGroups(
            groups::describe_groups(&ctx.groups, r, version, &authz),
        )),
        RequestKind::DeleteGroups(r) => {
            let groups = Arc::clone(&ctx.groups);
            Reply::Later(Box::pin(async move {
                ResponseKind::DeleteGroups(groups::delete_groups(groups, r, &authz).await)
            }))
        }
        RequestKind::OffsetDelete(r) => {
            let groups = Arc::clone(&ctx.groups);
            Reply::Later(Box::pin(async move {
                ResponseKind::OffsetDelete(groups::offset_delete(groups, r, &authz).await)
            }))
        }
        RequestKind::CreateAcls(r) => Reply::Later(Box::pin(async move {
            ResponseKind::CreateAcls(authz::create_acls(authz, r).await)
        })),
        RequestKind::DescribeAcls(r) => {
            now(ResponseKind::DescribeAcls(authz::describe_acls(&authz, r)))
        }
        RequestKind::DeleteAcls(r) => Reply::Later(Box::pin(async move {
            ResponseKind::DeleteAcls(authz::delete_acls(authz, r).await)
        })),
        RequestKind::AlterUserScramCredentials(r) if !authz.cluster(AclOperation::Alter) => now(
            ResponseKind::AlterUserScramCredentials(crate::scram_admin::refuse_alter(&r)),
        ),
        RequestKind::AlterUserScramCredentials(r) => {
            let metadata = Arc::clone(&ctx.metadata.0);
            let broker = Arc::clone(broker);
            Reply::Later(Box::pin(async move {
                let state = broker.cluster();
                ResponseKind::AlterUserScramCredentials(
                    crate::scram_admin::alter(&metadata, &state, r).await,
                )
            }))
        }
        RequestKind::DescribeUserScramCredentials(_) if !authz.cluster(AclOperation::Describe) => {
            now(ResponseKind::DescribeUserScramCredentials(
                crate::scram_admin::refuse_describe(),
            ))
        }
        RequestKind::DescribeUserScramCredentials(r) => {
            now(ResponseKind::DescribeUserScramCredentials(
                crate::scram_admin::describe(&broker.cluster(), r),
            ))
        }
        // The wire layer only lets advertised APIs through; this is a safety net.
        other => {
            tracing::warn!(request = ?std::mem::discriminant(&other), "request type without a handler");
            now(ResponseKind::ApiVersions(
                ApiVersionsResponse::default()
                    .with_error_code(ResponseError::UnsupportedVersion.code()),
            ))
        }
    }
}

fn api_versions() -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(arctern_kafka_wire::advertised_versions())
}

async fn metadata(
    broker: &Arc<Broker>,
    req: MetadataRequest,
    version: i16,
    authz: &Authz,
    listener: &str,
) -> MetadataResponse {
    // v0 and a null topic list (v1+) mean "all topics"; v4+ carries the auto-create flag.
    let allow_auto_create = version < 4 || req.allow_auto_topic_creation;
    // Authorized operations (v8+; the cluster's only up to v10): what the principal may do
    // (everything without an authorizer); the cluster's are 0 without DESCRIBE on it.
    let want_topic_ops = version >= 8 && req.include_topic_authorized_operations;
    let cluster_ops = if (8..=10).contains(&version) && req.include_cluster_authorized_operations {
        if authz.cluster(AclOperation::Describe) {
            authz.operations(ResourceType::Cluster, arctern_security::acl::CLUSTER_NAME)
        } else {
            0
        }
    } else {
        admin::OPS_NOT_REQUESTED
    };
    let requested: Option<Vec<String>> = match req.topics {
        None => None,
        Some(t) if version == 0 && t.is_empty() => None,
        Some(t) => Some(
            t.into_iter()
                .filter_map(|t| t.name.map(|n| n.0.to_string()))
                .collect(),
        ),
    };
    let mut topics = Vec::new();
    // Named topics the principal may not see (or not auto-create): TOPIC_AUTHORIZATION_FAILED,
    // without disclosing whether they exist.
    let mut refused = Vec::new();
    match requested {
        None => {
            // Kafka leaves the topics the principal may not DESCRIBE out of a full listing.
            for t in broker.topics() {
                if authz.topic(AclOperation::Describe, &t.name) {
                    topics.push(Ok(t));
                }
            }
        }
        Some(names) => {
            let auto_create = allow_auto_create && broker.config().auto_create_topics;
            for name in names {
                if !authz.topic(AclOperation::Describe, &name) {
                    refused.push(name);
                    continue;
                }
                if auto_create
                    && authz.is_enabled()
                    && broker.topic(&name).is_none()
                    && !authz.cluster(AclOperation::Create)
                    && !authz.topic(AclOperation::Create, &name)
                {
                    refused.push(name);
                    continue;
                }
                let t = broker.topic_or_auto_create(&name, allow_auto_create).await;
                topics.push(t.map_err(|e| (name, e)));
            }
        }
    }
    // Taken after any auto-creation, so the new topic's leaders are in it.
    let cluster = broker.cluster();
    let brokers = cluster
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| {
            let (host, port) = b.endpoint(listener);
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.broker_id))
                .with_host(s(host.to_string()))
                .with_port(i32::from(port))
                .with_rack(b.rack.clone().map(s))
        })
        .collect();
    let topic_ops = |name: &str| {
        if want_topic_ops {
            authz.operations(ResourceType::Topic, name)
        } else {
            admin::OPS_NOT_REQUESTED
        }
    };
    let topics = topics
        .into_iter()
        .map(|t| match t {
            Ok(t) => {
                // Prefer the freshest view of the partitions.
                let t = broker.topic(&t.name).unwrap_or(t);
                let ops = topic_ops(&t.name);
                topic_metadata(&cluster, &t).with_topic_authorized_operations(ops)
            }
            Err((name, e)) => MetadataResponseTopic::default()
                .with_name(Some(topic_name(&name)))
                .with_error_code(error_code(&e)),
        })
        .chain(refused.into_iter().map(|name| {
            MetadataResponseTopic::default()
                .with_name(Some(topic_name(&name)))
                .with_error_code(ResponseError::TopicAuthorizationFailed.code())
        }))
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(s(CLUSTER_ID)))
        .with_controller_id(BrokerId(broker.controller_id()))
        .with_topics(topics)
        .with_cluster_authorized_operations(cluster_ops)
}

fn topic_metadata(
    cluster: &arctern_metadata::ClusterState,
    t: &arctern_core::Topic,
) -> MetadataResponseTopic {
    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&t.name)))
        .with_topic_id(t.id)
        .with_is_internal(t.name == arctern_groups::OFFSETS_TOPIC)
        .with_partitions(
            t.partitions
                .iter()
                .enumerate()
                .map(|(index, p)| {
                    let offline: Vec<i32> = p
                        .replicas
                        .iter()
                        .filter(|r| cluster.brokers.get(r).is_none_or(|b| b.fenced))
                        .copied()
                        .collect();
                    let error = if p.leader == arctern_metadata::NO_LEADER {
                        ResponseError::LeaderNotAvailable.code()
                    } else {
                        0
                    };
                    MetadataResponsePartition::default()
                        .with_error_code(error)
                        .with_partition_index(index as i32)
                        .with_leader_id(BrokerId(p.leader))
                        .with_leader_epoch(p.leader_epoch)
                        .with_replica_nodes(ids(&p.replicas))
                        .with_isr_nodes(ids(&p.isr))
                        .with_offline_replicas(ids(&offline))
                })
                .collect(),
        )
}

/// A partition's part of a produce request: written (awaiting ack) or failed.
/// A refusal is (error code, message).
type PendingAppend = (i32, Result<(Arc<Partition>, Appended), (i16, String)>);

/// Whether a produce storage failure should be logged now: at most once per 10 s, so a
/// full disk under retrying producers gives a steady line, not a flood.
fn storage_warning_due() -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST_MS: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let last = LAST_MS.load(Ordering::Relaxed);
    now.saturating_sub(last) >= 10_000
        && LAST_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

fn produce(broker: &Arc<Broker>, req: ProduceRequest, authz: &Authz) -> Reply {
    let acks = req.acks;
    if !(-1..=1).contains(&acks) {
        let responses = req
            .topic_data
            .iter()
            .map(|t| {
                TopicProduceResponse::default()
                    .with_name(t.name.clone())
                    .with_partition_responses(
                        t.partition_data
                            .iter()
                            .map(|p| {
                                PartitionProduceResponse::default()
                                    .with_index(p.index)
                                    .with_error_code(ResponseError::InvalidRequiredAcks.code())
                            })
                            .collect(),
                    )
            })
            .collect();
        return now(ResponseKind::Produce(
            ProduceResponse::default().with_responses(responses),
        ));
    }
    // Append everything now, in request order; wait for durability later.
    let mut pending: Vec<(TopicName, Vec<PendingAppend>)> = Vec::new();
    for topic in req.topic_data {
        let mut parts = Vec::with_capacity(topic.partition_data.len());
        let writable = authz.topic(AclOperation::Write, &topic.name.0);
        for p in topic.partition_data {
            if !writable {
                let e = ResponseError::TopicAuthorizationFailed;
                parts.push((p.index, Err((e.code(), e.to_string()))));
                continue;
            }
            let result = broker
                .partition(&topic.name.0, p.index)
                .and_then(|partition| {
                    let records = p.records.unwrap_or_default();
                    let acks = if acks == -1 { Acks::All } else { Acks::Leader };
                    let appended = partition.append(&mut records.to_vec(), acks)?;
                    Ok((partition, appended))
                });
            match &result {
                // A failing disk (full, read-only, broken) is the operator's to see, not only
                // the client's (it retries KAFKA_STORAGE_ERROR quietly); once per interval.
                Err(e @ CoreError::Storage(_)) if storage_warning_due() => {
                    tracing::warn!(topic = %topic.name.0, partition = p.index, error = %e, "produce failed: the log could not be written");
                }
                Err(e) => {
                    tracing::debug!(topic = %topic.name.0, partition = p.index, error = %e, "produce rejected");
                }
                Ok(_) => {}
            }
            parts.push((p.index, result.map_err(|e| (error_code(&e), e.to_string()))));
        }
        pending.push((topic.name, parts));
    }
    if acks == 0 {
        return Reply::Nothing;
    }
    let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64);
    Reply::Later(Box::pin(async move {
        let mut responses = Vec::with_capacity(pending.len());
        for (name, parts) in pending {
            let mut out = Vec::with_capacity(parts.len());
            for (index, result) in parts {
                let resp = PartitionProduceResponse::default()
                    .with_index(index)
                    .with_log_append_time_ms(-1);
                let resp = match result {
                    Ok((partition, appended)) => {
                        match tokio::time::timeout(
                            timeout,
                            partition.wait_acknowledgeable(&appended),
                        )
                        .await
                        {
                            Ok(Ok(())) => resp
                                .with_base_offset(appended.outcome.base_offset)
                                .with_log_start_offset(appended.outcome.log_start_offset),
                            Ok(Err(e)) => resp
                                .with_error_code(error_code(&e))
                                .with_error_message(Some(s(e.to_string())))
                                .with_base_offset(-1),
                            Err(_) => resp
                                .with_error_code(ResponseError::RequestTimedOut.code())
                                .with_base_offset(-1),
                        }
                    }
                    Err((code, message)) => resp
                        .with_error_code(code)
                        .with_error_message(Some(s(message)))
                        .with_base_offset(-1)
                        .with_log_start_offset(-1),
                };
                out.push(resp);
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(name)
                    .with_partition_responses(out),
            );
        }
        ResponseKind::Produce(ProduceResponse::default().with_responses(responses))
    }))
}

/// Fetch with Kafka's checks: a follower (replica_id >= 0) needs CLUSTER_ACTION on the
/// cluster, a consumer READ on each topic. Refused partitions get TOPIC_AUTHORIZATION_FAILED
/// and take no part in the fetch (nor in its long poll).
fn fetch_authorized(broker: Arc<Broker>, mut req: FetchRequest, authz: &Authz) -> Reply {
    if !authz.is_enabled() {
        return Reply::Later(Box::pin(fetch(broker, req)));
    }
    let denied: Vec<_> = if req.replica_id.0 >= 0 {
        if authz.cluster(AclOperation::ClusterAction) {
            Vec::new()
        } else {
            std::mem::take(&mut req.topics)
        }
    } else {
        let (allowed, denied) = std::mem::take(&mut req.topics)
            .into_iter()
            .partition(|t| authz.topic(AclOperation::Read, &t.topic.0));
        req.topics = allowed;
        denied
    };
    if denied.is_empty() {
        return Reply::Later(Box::pin(fetch(broker, req)));
    }
    let refused: Vec<FetchableTopicResponse> = denied
        .into_iter()
        .map(|t| {
            FetchableTopicResponse::default()
                .with_topic(t.topic)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            FetchResponsePartitionData::default()
                                .with_partition_index(p.partition)
                                .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                                .with_high_watermark(-1)
                                .with_last_stable_offset(-1)
                                .with_log_start_offset(-1)
                                .with_preferred_read_replica(BrokerId(-1))
                        })
                        .collect(),
                )
        })
        .collect();
    Reply::Later(Box::pin(async move {
        match fetch(broker, req).await {
            ResponseKind::Fetch(mut r) => {
                r.responses.extend(refused);
                ResponseKind::Fetch(r)
            }
            other => other,
        }
    }))
}

async fn fetch(broker: Arc<Broker>, req: FetchRequest) -> ResponseKind {
    let max_wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_FETCH_WAIT);
    let deadline = Instant::now() + max_wait;
    let min_bytes = req.min_bytes.max(0) as usize;
    // Woken only by the partitions asked for (an append elsewhere wakes no one here).
    let mut changes: Vec<_> = req
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (&t.topic.0, p.partition)))
        .filter_map(|(topic, index)| broker.partition(topic, index).ok())
        .map(|p| p.subscribe_changes())
        .collect();
    loop {
        for c in &mut changes {
            c.borrow_and_update();
        }
        let (response, bytes, errors) = fetch_once(&broker, &req);
        if bytes >= min_bytes || errors || changes.is_empty() || Instant::now() >= deadline {
            return ResponseKind::Fetch(response);
        }
        let any_change =
            futures::future::select_all(changes.iter_mut().map(|c| Box::pin(c.changed())));
        tokio::select! {
            (changed, _, _) = any_change => {
                if changed.is_err() {
                    return ResponseKind::Fetch(response);
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                let (response, _, _) = fetch_once(&broker, &req);
                return ResponseKind::Fetch(response);
            }
        }
    }
}

/// One pass over the requested partitions: (response, record bytes, any error).
fn fetch_once(broker: &Broker, req: &FetchRequest) -> (FetchResponse, usize, bool) {
    let mut budget = if req.max_bytes > 0 {
        req.max_bytes as usize
    } else {
        usize::MAX
    };
    let mut total = 0usize;
    let mut errors = false;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let base = FetchResponsePartitionData::default()
                .with_partition_index(p.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_preferred_read_replica(BrokerId(-1));
            let data = match broker.partition(&t.topic.0, p.partition) {
                Err(e) => {
                    errors = true;
                    base.with_error_code(error_code(&e))
                }
                Ok(partition) => {
                    // KIP-74: a partition gets at most its partition_max_bytes and what is
                    // left of max_bytes, in whole batches; only the first partition that
                    // returns data may exceed both, by its first batch (so a batch larger
                    // than the limits cannot stall the consumer).
                    let limit = (p.partition_max_bytes.max(0) as usize).min(budget);
                    let min_one = total == 0;
                    let read = if req.replica_id.0 >= 0 {
                        // A follower: reads to the log end; its fetch offset is its progress.
                        partition
                            .read_for_follower(
                                req.replica_id.0,
                                p.current_leader_epoch,
                                p.fetch_offset,
                                limit,
                                min_one,
                            )
                            .map(|(data, recheck_isr)| {
                                if recheck_isr {
                                    broker.request_isr_check();
                                }
                                data
                            })
                    } else if let Err(e) = partition.check_leader(p.current_leader_epoch) {
                        Err(e)
                    } else if limit == 0 && !min_one {
                        // The budget is spent: later partitions report offsets only.
                        Ok(arctern_core::FetchedData {
                            bytes: Vec::new(),
                            high_watermark: partition.high_watermark(),
                            log_start_offset: partition.log_start_offset().unwrap_or(-1),
                        })
                    } else {
                        partition.read_within(p.fetch_offset, limit, min_one)
                    };
                    match read {
                        Ok(d) => {
                            total += d.bytes.len();
                            budget = budget.saturating_sub(d.bytes.len());
                            base.with_high_watermark(d.high_watermark)
                                .with_last_stable_offset(d.high_watermark)
                                .with_log_start_offset(d.log_start_offset)
                                .with_records(Some(Bytes::from(d.bytes)))
                        }
                        Err(e) => {
                            errors = true;
                            if let CoreError::Storage(msg) = &e {
                                tracing::error!(topic = %t.topic.0, partition = p.partition, error = %msg, "fetch failed");
                            }
                            base.with_error_code(error_code(&e))
                                .with_high_watermark(partition.high_watermark())
                                .with_last_stable_offset(partition.high_watermark())
                                .with_log_start_offset(partition.log_start_offset().unwrap_or(-1))
                        }
                    }
                }
            };
            parts.push(data);
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_partitions(parts),
        );
    }
    (
        FetchResponse::default().with_responses(topics),
        total,
        errors,
    )
}

fn list_offsets(
    broker: &Broker,
    req: ListOffsetsRequest,
    version: i16,
    authz: &Authz,
) -> ListOffsetsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            if !authz.topic(AclOperation::Describe, &t.name.0) {
                let parts = t
                    .partitions
                    .iter()
                    .map(|p| {
                        ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                            .with_timestamp(-1)
                            .with_offset(-1)
                    })
                    .collect();
                return ListOffsetsTopicResponse::default()
                    .with_name(t.name)
                    .with_partitions(parts);
            }
            let parts = t
                .partitions
                .iter()
                .map(|p| {
                    let base = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1);
                    match offset_for(
                        broker,
                        &t.name.0,
                        p.partition_index,
                        p.current_leader_epoch,
                        p.timestamp,
                    ) {
                        Ok((offset, timestamp, epoch)) => {
                            let base = base.with_offset(offset).with_timestamp(timestamp);
                            // leader_epoch exists from v4; older versions reject a set value.
                            if version >= 4 {
                                base.with_leader_epoch(epoch)
                            } else {
                                base
                            }
                        }
                        Err(e) => base.with_error_code(error_code(&e)),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(parts)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// (offset, timestamp, leader epoch) for a ListOffsets query: -2 earliest, -1 latest,
/// otherwise the first record with timestamp >= the target, or (-1, -1) if none.
fn offset_for(
    broker: &Broker,
    topic: &str,
    index: i32,
    current_leader_epoch: i32,
    timestamp: i64,
) -> Result<(i64, i64, i32), CoreError> {
    let partition = broker.partition(topic, index)?;
    partition.check_leader(current_leader_epoch)?;
    match timestamp {
        -2 => Ok((partition.log_start_offset()?, -1, partition.leader_epoch())),
        -1 => Ok((partition.high_watermark(), -1, partition.leader_epoch())),
        ts if ts >= 0 => {
            let Some((header, bytes)) = partition.batch_for_timestamp(ts)? else {
                return Ok((-1, -1, -1));
            };
            let hw = partition.high_watermark();
            // Records below the log start (DeleteRecords) may share its first batch.
            let start = partition.log_start_offset()?;
            let mut buf = Bytes::from(bytes);
            let set = RecordBatchDecoder::decode(&mut buf).map_err(|e| {
                CoreError::Storage(format!(
                    "cannot decode stored batch at {}: {e}",
                    header.base_offset
                ))
            })?;
            let found = set
                .records
                .iter()
                .find(|r| r.timestamp >= ts && r.offset >= start && r.offset < hw);
            Ok(found.map_or((-1, -1, -1), |r| {
                (r.offset, r.timestamp, header.partition_leader_epoch)
            }))
        }
        other => Err(CoreError::InvalidRequest(format!(
            "unsupported ListOffsets timestamp {other}"
        ))),
    }
}

async fn create_topics(
    broker: &Broker,
    req: CreateTopicsRequest,
    authz: &Authz,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    // Kafka: CREATE on the cluster, or else on each topic.
    let cluster_create = authz.cluster(AclOperation::Create);
    for t in req.topics {
        if !cluster_create && !authz.topic(AclOperation::Create, &t.name.0) {
            let e = ResponseError::TopicAuthorizationFailed;
            results.push(
                CreatableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_error_code(e.code())
                    .with_error_message(Some(s(e.to_string())))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
                    .with_topic_config_error_code(e.code()),
            );
            continue;
        }
        // The created topic's configs are shown only with DESCRIBE_CONFIGS on it.
        let show_configs = authz.topic(AclOperation::DescribeConfigs, &t.name.0);
        results.push({
            let name = t.name.0.to_string();
            let configs: Vec<(String, String)> = t
                .configs
                .iter()
                .filter_map(|c| {
                    c.value
                        .as_ref()
                        .map(|v| (c.name.to_string(), v.to_string()))
                })
                .collect();
            let result = if !t.assignments.is_empty() {
                let assignments: Vec<Vec<i32>> = t
                    .assignments
                    .iter()
                    .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                    .collect();
                broker
                    .create_topic_with_assignments(&name, assignments, &configs, req.validate_only)
                    .await
            } else {
                broker
                    .create_topic(
                        &name,
                        t.num_partitions,
                        t.replication_factor,
                        &configs,
                        req.validate_only,
                    )
                    .await
            };
            let base = CreatableTopicResult::default().with_name(t.name.clone());
            match result {
                Ok(topic) => {
                    let described = broker
                        .describe_topic_overrides(&topic.overrides())
                        .into_iter()
                        .map(|c| {
                            CreatableTopicConfigs::default()
                                .with_name(s(c.name))
                                .with_value(Some(s(c.value)))
                                .with_read_only(c.read_only)
                                .with_is_sensitive(c.sensitive)
                                .with_config_source(c.source.kafka_id())
                        })
                        .collect();
                    let partitions = if req.validate_only {
                        if !t.assignments.is_empty() {
                            t.assignments.len() as i32
                        } else if t.num_partitions == -1 {
                            broker.config().num_partitions
                        } else {
                            t.num_partitions
                        }
                    } else {
                        topic.partition_count()
                    };
                    let base = base
                        .with_topic_id(topic.id)
                        .with_num_partitions(partitions)
                        .with_replication_factor(topic.replication_factor);
                    if show_configs {
                        base.with_configs(Some(described))
                    } else {
                        base.with_topic_config_error_code(
                            ResponseError::TopicAuthorizationFailed.code(),
                        )
                    }
                }
                Err(e) => base
                    .with_error_code(error_code(&e))
                    .with_error_message(Some(s(e.to_string())))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            }
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

async fn delete_topics(
    broker: &Broker,
    req: DeleteTopicsRequest,
    authz: &Authz,
) -> DeleteTopicsResponse {
    // v0-5 name topics in `topic_names`; v6 in `topics` by name or id.
    let mut targets: Vec<(Option<String>, uuid::Uuid)> = req
        .topic_names
        .iter()
        .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
        .collect();
    for t in &req.topics {
        targets.push((t.name.as_ref().map(|n| n.0.to_string()), t.topic_id));
    }
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        responses.push({
            let name = name.or_else(|| {
                broker
                    .topics()
                    .into_iter()
                    .find(|t| t.id == id && !id.is_nil())
                    .map(|t| t.name.clone())
            });
            let base = DeletableTopicResult::default()
                .with_name(name.as_deref().map(topic_name))
                .with_topic_id(id);
            match name {
                None => base.with_error_code(ResponseError::UnknownTopicId.code()),
                Some(name) if !authz.topic(AclOperation::Delete, &name) => {
                    base.with_error_code(ResponseError::TopicAuthorizationFailed.code())
                }
                Some(name) => match broker.delete_topic(&name).await {
                    Ok(id) => base.with_topic_id(id),
                    Err(e) => base
                        .with_error_code(error_code(&e))
                        .with_error_message(Some(s(e.to_string()))),
                },
            }
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

async fn create_partitions(
    broker: &Broker,
    req: CreatePartitionsRequest,
    authz: &Authz,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let base = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        if !authz.topic(AclOperation::Alter, &t.name.0) {
            let e = ResponseError::TopicAuthorizationFailed;
            results.push(
                base.with_error_code(e.code())
                    .with_error_message(Some(s(e.to_string()))),
            );
            continue;
        }
        results.push(
            match broker
                .create_partitions(&t.name.0, t.count, req.validate_only)
                .await
            {
                Ok(()) => base,
                Err(e) => base
                    .with_error_code(error_code(&e))
                    .with_error_message(Some(s(e.to_string()))),
            },
        );
    }
    CreatePartitionsResponse::default().with_results(results)
}

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// What a transactional producer is told: transactions are not implemented.
const NO_TRANSACTIONS: &str = "transactions are not supported by this broker (Arctern); \
     use an idempotent producer (enable.idempotence=true) without transactional.id";

/// The answer to a transactional id, in FindCoordinator and InitProducerId, while
/// transactions are not implemented. Kafka has no code for "transactions unsupported";
/// clients treat COORDINATOR_NOT_AVAILABLE (or any retriable code) as "retry", so
/// `init_transactions()` would hang until its timeout. TRANSACTIONAL_ID_AUTHORIZATION_FAILED
/// is what Kafka answers when the transactional id may not be used, and librdkafka, the Java
/// client, kafka-python and aiokafka all fail at once on it, as a fatal error (FindCoordinator
/// v1+ carries `NO_TRANSACTIONS` as its message). See docs/kafka-compatibility.md.
const NO_TRANSACTIONS_CODE: ResponseError = ResponseError::TransactionalIdAuthorizationFailed;

/// FindCoordinator: a group's coordinator is the leader of its `__consumer_offsets`
/// partition (the topic is created on first use). Transactions are not implemented: a
/// transactional key gets `NO_TRANSACTIONS_CODE`.
async fn find_coordinator(
    groups: &arctern_groups::GroupCoordinator,
    broker: &Broker,
    req: FindCoordinatorRequest,
    version: i16,
    authz: &Authz,
    listener: &str,
) -> FindCoordinatorResponse {
    // The coordinator's endpoint on the listener asked (its registered one otherwise).
    let endpoint = |node_id: i32, host: String, port: i32| -> (String, i32) {
        match broker.cluster().brokers.get(&node_id) {
            Some(b) => {
                let (h, p) = b.endpoint(listener);
                (h.to_string(), i32::from(p))
            }
            None => (host, port),
        }
    };
    let key_type = req.key_type;
    let answer = |key: StrBytes| async move {
        let refused = |code: i16, msg: String| {
            Coordinator::default()
                .with_key(key.clone())
                .with_node_id(BrokerId(-1))
                .with_host(s(""))
                .with_port(-1)
                .with_error_code(code)
                .with_error_message(Some(s(msg)))
        };
        match key_type {
            KEY_TYPE_GROUP if !authz.group(AclOperation::Describe, &key) => {
                let e = ResponseError::GroupAuthorizationFailed;
                refused(e.code(), e.to_string())
            }
            KEY_TYPE_GROUP => match groups.find_coordinator(&key).await {
                Ok(c) => {
                    let (host, port) = endpoint(c.node_id, c.host, c.port);
                    Coordinator::default()
                        .with_key(key.clone())
                        .with_node_id(BrokerId(c.node_id))
                        .with_host(s(host))
                        .with_port(port)
                }
                Err(e) => refused(crate::errors::group_error_code(e), e.to_string()),
            },
            KEY_TYPE_TRANSACTION => refused(NO_TRANSACTIONS_CODE.code(), NO_TRANSACTIONS.into()),
            _ => refused(
                ResponseError::InvalidRequest.code(),
                "unknown coordinator key type".into(),
            ),
        }
    };
    if version >= 4 {
        let mut coordinators = Vec::with_capacity(req.coordinator_keys.len());
        for key in req.coordinator_keys {
            coordinators.push(answer(key).await);
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = answer(req.key).await;
    let resp = FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port);
    // error_message exists from v1; v0 rejects a set value.
    if version >= 1 {
        resp.with_error_message(c.error_message)
    } else {
        resp
    }
}

/// InitProducerId for idempotent producers (KIP-98): a fresh cluster-unique producer id
/// at epoch 0 every time, as Kafka does without a transactional id (a retried or bumping
/// request simply gets a new id). Transactions are not implemented: a transactional id
/// gets `NO_TRANSACTIONS_CODE`, as FindCoordinator already answers for one.
async fn init_producer_id(
    broker: &Broker,
    req: InitProducerIdRequest,
    authz: &Authz,
) -> InitProducerIdResponse {
    let failed = |code: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(code.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if req.transactional_id.is_some() {
        return failed(NO_TRANSACTIONS_CODE);
    }
    // Kafka 3.x: IDEMPOTENT_WRITE on the cluster, or WRITE on at least one topic.
    if !authz.cluster(AclOperation::IdempotentWrite)
        && !authz.any_of_type(AclOperation::Write, ResourceType::Topic)
    {
        return failed(ResponseError::ClusterAuthorizationFailed);
    }
    match broker.allocate_producer_id().await {
        Ok(id) => {
            tracing::debug!(producer_id = id, "allocated producer id");
            InitProducerIdResponse::default()
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(0)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot allocate a producer id");
            // Retriable for clients: the quorum may be electing.
            failed(ResponseError::CoordinatorLoadInProgress)
        }
    }
}

/// OffsetsForLeaderEpoch (KIP-101/279): for each partition, the largest epoch <= the
/// requested one on the leader's log and the offset where it ends. Followers truncate to it.
fn offset_for_leader_epoch(
    broker: &Broker,
    req: OffsetForLeaderEpochRequest,
    authz: &Authz,
) -> OffsetForLeaderEpochResponse {
    // Followers have CLUSTER_ACTION; consumers (KIP-320) need DESCRIBE on the topic.
    let cluster_action = authz.cluster(AclOperation::ClusterAction);
    use arctern_kafka_wire::kafka_protocol::messages::offset_for_leader_epoch_response::{
        EpochEndOffset, OffsetForLeaderTopicResult,
    };
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let base = EpochEndOffset::default().with_partition(p.partition);
                    if !cluster_action && !authz.topic(AclOperation::Describe, &t.topic.0) {
                        return base
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                            .with_leader_epoch(-1)
                            .with_end_offset(-1);
                    }
                    let result = broker.partition(&t.topic.0, p.partition).and_then(|part| {
                        part.end_offset_for_epoch(p.current_leader_epoch, p.leader_epoch)
                    });
                    match result {
                        Ok((epoch, end)) => base.with_leader_epoch(epoch).with_end_offset(end),
                        Err(e) => base
                            .with_error_code(error_code(&e))
                            .with_leader_epoch(-1)
                            .with_end_offset(-1),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
