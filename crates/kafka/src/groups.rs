//! The group APIs (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch,
//! ListGroups, DescribeGroups, DeleteGroups, OffsetDelete): wire types in, coordinator
//! calls, wire types out. Version differences are handled here; the semantics live in
//! `arctern-groups`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arctern_groups::{
    CommitRequest, GroupCoordinator, GroupError, JoinRequest, LeavingMember, OffsetToCommit,
    SyncRequest,
};
use arctern_kafka_wire::kafka_protocol::messages::describe_groups_response::{
    DescribedGroup, DescribedGroupMember,
};
use arctern_kafka_wire::kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use arctern_kafka_wire::kafka_protocol::messages::leave_group_response::MemberResponse;
use arctern_kafka_wire::kafka_protocol::messages::list_groups_response::ListedGroup;
use arctern_kafka_wire::kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use arctern_kafka_wire::kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use arctern_kafka_wire::kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use arctern_kafka_wire::kafka_protocol::messages::*;
use arctern_kafka_wire::kafka_protocol::protocol::StrBytes;

use crate::authz::Authz;
use crate::errors::group_error_code;
use crate::handlers::{KafkaContext, Origin};
use arctern_kafka_wire::ResponseError;
use arctern_security::acl::{AclOperation, ResourceType};

const GROUP_AUTHORIZATION_FAILED: i16 = ResponseError::GroupAuthorizationFailed.code();
const TOPIC_AUTHORIZATION_FAILED: i16 = ResponseError::TopicAuthorizationFailed.code();

/// Kafka's "authorized operations not requested/available" value.
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

fn code(r: Result<(), GroupError>) -> i16 {
    match r {
        Ok(()) => 0,
        Err(e) => group_error_code(e),
    }
}

fn client_host(peer: &SocketAddr) -> String {
    // Kafka reports the client's address as InetAddress.toString(): "/1.2.3.4".
    format!("/{}", peer.ip())
}

/// A JoinGroup refused before reaching the coordinator (Kafka's `getErrorResponse`).
pub fn join_group_refused(version: i16, error: i16) -> JoinGroupResponse {
    let resp = JoinGroupResponse::default()
        .with_error_code(error)
        .with_generation_id(-1)
        .with_leader(s(""))
        .with_member_id(s(""));
    if version >= 7 {
        resp.with_protocol_name(None)
    } else {
        resp.with_protocol_name(Some(s("")))
    }
}

pub async fn join_group(
    groups: Arc<GroupCoordinator>,
    req: JoinGroupRequest,
    version: i16,
    origin: Origin,
) -> JoinGroupResponse {
    let request = JoinRequest {
        group_id: req.group_id.0.to_string(),
        member_id: req.member_id.to_string(),
        group_instance_id: if version >= 5 {
            req.group_instance_id.map(|i| i.to_string())
        } else {
            None
        },
        client_id: origin
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        client_host: client_host(&origin.peer),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let r = groups.join_group(request).await;
    let resp = JoinGroupResponse::default()
        .with_error_code(r.error.map_or(0, group_error_code))
        .with_generation_id(r.generation_id)
        .with_leader(s(r.leader))
        .with_member_id(s(r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|m| {
                    let member = JoinGroupResponseMember::default()
                        .with_member_id(s(m.member_id))
                        .with_metadata(m.metadata);
                    if version >= 5 {
                        member.with_group_instance_id(m.group_instance_id.map(s))
                    } else {
                        member
                    }
                })
                .collect(),
        );
    if version >= 7 {
        resp.with_protocol_type(r.protocol_type.map(s))
            .with_protocol_name(r.protocol_name.map(s))
    } else {
        // Not nullable before v7.
        resp.with_protocol_name(Some(s(r.protocol_name.unwrap_or_default())))
    }
}

pub async fn sync_group(
    groups: Arc<GroupCoordinator>,
    req: SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    let request = SyncRequest {
        group_id: req.group_id.0.to_string(),
        generation_id: req.generation_id,
        member_id: req.member_id.to_string(),
        group_instance_id: if version >= 3 {
            req.group_instance_id.map(|i| i.to_string())
        } else {
            None
        },
        protocol_type: if version >= 5 {
            req.protocol_type.map(|p| p.to_string())
        } else {
            None
        },
        protocol_name: if version >= 5 {
            req.protocol_name.map(|p| p.to_string())
        } else {
            None
        },
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let r = groups.sync_group(request).await;
    let resp = SyncGroupResponse::default()
        .with_error_code(r.error.map_or(0, group_error_code))
        .with_assignment(r.assignment);
    if version >= 5 {
        resp.with_protocol_type(r.protocol_type.map(s))
            .with_protocol_name(r.protocol_name.map(s))
    } else {
        resp
    }
}

pub fn heartbeat(
    groups: &GroupCoordinator,
    req: HeartbeatRequest,
    version: i16,
) -> HeartbeatResponse {
    let instance = if version >= 3 {
        req.group_instance_id.as_ref().map(|i| i.as_str())
    } else {
        None
    };
    let r = groups.heartbeat(&req.group_id.0, req.generation_id, &req.member_id, instance);
    HeartbeatResponse::default().with_error_code(code(r))
}

pub fn leave_group(
    groups: &GroupCoordinator,
    req: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let members: Vec<LeavingMember> = if version >= 3 {
        req.members
            .iter()
            .map(|m| LeavingMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: req.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    match groups.leave_group(&req.group_id.0, &members) {
        Err(e) => LeaveGroupResponse::default().with_error_code(group_error_code(e)),
        Ok(results) if version >= 3 => LeaveGroupResponse::default().with_members(
            members
                .into_iter()
                .zip(results)
                .map(|(m, r)| {
                    MemberResponse::default()
                        .with_member_id(s(m.member_id))
                        .with_group_instance_id(m.group_instance_id.map(s))
                        .with_error_code(code(r))
                })
                .collect(),
        ),
        Ok(results) => LeaveGroupResponse::default()
            .with_error_code(results.into_iter().next().map_or(0, code)),
    }
}

/// The commit is appended now (requests on a connection take effect in the order sent);
/// the returned future waits for it to be replicated and builds the response.
pub fn offset_commit(
    ctx: &KafkaContext,
    req: OffsetCommitRequest,
    version: i16,
    authz: &Authz,
) -> impl Future<Output = OffsetCommitResponse> + Send + 'static {
    let cluster = ctx.broker.cluster();
    // Kafka: READ on the group (else every partition fails), then READ on each topic.
    let group_ok = authz.group(AclOperation::Read, &req.group_id.0);
    // (topic index, partition, pre-decided error) in request order.
    let mut slots: Vec<(usize, i32, Option<i16>)> = Vec::new();
    let mut offsets = Vec::new();
    for (ti, t) in req.topics.iter().enumerate() {
        let topic_ok = group_ok && authz.topic(AclOperation::Read, &t.name.0);
        for p in &t.partitions {
            if !topic_ok {
                let code = if group_ok {
                    TOPIC_AUTHORIZATION_FAILED
                } else {
                    GROUP_AUTHORIZATION_FAILED
                };
                slots.push((ti, p.partition_index, Some(code)));
                continue;
            }
            if cluster.partition(&t.name.0, p.partition_index).is_none() {
                slots.push((
                    ti,
                    p.partition_index,
                    Some(group_error_code(GroupError::UnknownTopicOrPartition)),
                ));
                continue;
            }
            slots.push((ti, p.partition_index, None));
            offsets.push(OffsetToCommit {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if version >= 6 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            });
        }
    }
    let pending = (!offsets.is_empty()).then(|| {
        ctx.groups.commit_offsets(
            CommitRequest {
                group_id: req.group_id.0.to_string(),
                generation_id: req.generation_id_or_member_epoch,
                member_id: req.member_id.to_string(),
                group_instance_id: if version >= 7 {
                    req.group_instance_id.as_ref().map(|i| i.to_string())
                } else {
                    None
                },
            },
            offsets,
        )
    });
    async move {
        let results = match pending {
            Some(commit) => commit.await,
            None => Vec::new(),
        };
        commit_response(&req, slots, results)
    }
}

fn commit_response(
    req: &OffsetCommitRequest,
    slots: Vec<(usize, i32, Option<i16>)>,
    results: Vec<Result<(), GroupError>>,
) -> OffsetCommitResponse {
    let mut results = results.into_iter();
    let mut topics: Vec<OffsetCommitResponseTopic> = req
        .topics
        .iter()
        .map(|t| OffsetCommitResponseTopic::default().with_name(t.name.clone()))
        .collect();
    for (ti, partition, decided) in slots {
        let error = match decided {
            Some(c) => c,
            None => results
                .next()
                .map_or(group_error_code(GroupError::CoordinatorNotAvailable), code),
        };
        topics[ti].partitions.push(
            OffsetCommitResponsePartition::default()
                .with_partition_index(partition)
                .with_error_code(error),
        );
    }
    OffsetCommitResponse::default().with_topics(topics)
}

/// Topics with their partitions, as named in a request.
type TopicPartitions = Vec<(String, Vec<i32>)>;

/// One group's fetch: (group error, topics as (name, [(partition, offset, epoch, metadata, error)])).
type FetchedTopics = Vec<(String, Vec<(i32, i64, i32, String, i16)>)>;

/// Kafka's checks: DESCRIBE on the group (else the group's error), then DESCRIBE on each
/// topic: a named topic without it gets TOPIC_AUTHORIZATION_FAILED on each partition, and
/// "all topics" leaves it out. Errors are Kafka codes.
fn fetch_group(
    groups: &GroupCoordinator,
    group_id: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
    authz: &Authz,
) -> Result<FetchedTopics, i16> {
    if !authz.group(AclOperation::Describe, group_id) {
        return Err(GROUP_AUTHORIZATION_FAILED);
    }
    let (topics, refused): (Option<TopicPartitions>, TopicPartitions) = match topics {
        None => (None, Vec::new()),
        Some(ts) => {
            let (ok, refused) = ts
                .into_iter()
                .partition(|(t, _)| authz.topic(AclOperation::Describe, t));
            (Some(ok), refused)
        }
    };
    let fetched = if topics.as_ref().is_some_and(|t| t.is_empty()) && !refused.is_empty() {
        Vec::new()
    } else {
        groups
            .fetch_offsets(group_id, topics.as_deref())
            .map_err(group_error_code)?
    };
    let mut out: FetchedTopics = Vec::new();
    for o in fetched {
        if !authz.topic(AclOperation::Describe, &o.topic) {
            continue;
        }
        let entry = (o.partition, o.offset, o.leader_epoch, o.metadata, 0);
        match out.iter_mut().find(|(t, _)| *t == o.topic) {
            Some((_, parts)) => parts.push(entry),
            None => out.push((o.topic, vec![entry])),
        }
    }
    for (topic, partitions) in refused {
        out.push((
            topic,
            partitions
                .into_iter()
                .map(|p| (p, -1, -1, String::new(), TOPIC_AUTHORIZATION_FAILED))
                .collect(),
        ));
    }
    Ok(out)
}

pub fn offset_fetch(
    groups: &GroupCoordinator,
    req: OffsetFetchRequest,
    version: i16,
    authz: &Authz,
) -> OffsetFetchResponse {
    if version >= 8 {
        let results = req
            .groups
            .into_iter()
            .map(|g| {
                let topics = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let base = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                match fetch_group(groups, &g.group_id.0, topics, authz) {
                    Err(e) => base.with_error_code(e),
                    Ok(topics) => base.with_topics(
                        topics
                            .into_iter()
                            .map(|(name, parts)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(s(name)))
                                    .with_partitions(
                                        parts
                                            .into_iter()
                                            .map(|(p, o, e, m, c)| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_committed_offset(o)
                                                    .with_committed_leader_epoch(e)
                                                    .with_metadata(Some(s(m)))
                                                    .with_error_code(c)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
                }
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(results);
    }
    let requested: Option<Vec<(String, Vec<i32>)>> = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let to_topics = |topics: FetchedTopics| -> Vec<OffsetFetchResponseTopic> {
        topics
            .into_iter()
            .map(|(name, parts)| {
                OffsetFetchResponseTopic::default()
                    .with_name(TopicName(s(name)))
                    .with_partitions(
                        parts
                            .into_iter()
                            .map(|(p, o, e, m, c)| {
                                let part = OffsetFetchResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(o)
                                    .with_metadata(Some(s(m)))
                                    .with_error_code(c);
                                if version >= 5 {
                                    part.with_committed_leader_epoch(e)
                                } else {
                                    part
                                }
                            })
                            .collect(),
                    )
            })
            .collect()
    };
    match fetch_group(groups, &req.group_id.0, requested.clone(), authz) {
        Ok(topics) => OffsetFetchResponse::default().with_topics(to_topics(topics)),
        Err(e) if version >= 2 => OffsetFetchResponse::default().with_error_code(e),
        // v1 has no top-level error: every requested partition carries it.
        Err(e) => {
            let c = e;
            let topics = requested
                .unwrap_or_default()
                .into_iter()
                .map(|(t, ps)| {
                    (
                        t,
                        ps.into_iter()
                            .map(|p| (p, -1, -1, String::new(), c))
                            .collect(),
                    )
                })
                .collect();
            OffsetFetchResponse::default().with_topics(to_topics(topics))
        }
    }
}

pub fn list_groups(
    groups: &GroupCoordinator,
    req: ListGroupsRequest,
    version: i16,
    authz: &Authz,
) -> ListGroupsResponse {
    // Kafka: every group with DESCRIBE on the cluster, else those with DESCRIBE on them.
    let all = authz.cluster(AclOperation::Describe);
    let states: Vec<String> = if version >= 4 {
        req.states_filter.iter().map(|s| s.to_string()).collect()
    } else {
        Vec::new()
    };
    let (error, listed) = groups.list_groups(&states);
    ListGroupsResponse::default()
        .with_error_code(error.map_or(0, group_error_code))
        .with_groups(
            listed
                .into_iter()
                .filter(|g| all || authz.group(AclOperation::Describe, &g.group_id))
                .map(|g| {
                    let l = ListedGroup::default()
                        .with_group_id(GroupId(s(g.group_id)))
                        .with_protocol_type(s(g.protocol_type));
                    if version >= 4 {
                        l.with_group_state(s(g.state.name()))
                    } else {
                        l
                    }
                })
                .collect(),
        )
}

pub fn describe_groups(
    groups: &GroupCoordinator,
    req: DescribeGroupsRequest,
    version: i16,
    authz: &Authz,
) -> DescribeGroupsResponse {
    let described = req
        .groups
        .iter()
        .map(|id| {
            let base = DescribedGroup::default().with_group_id(id.clone());
            if !authz.group(AclOperation::Describe, &id.0) {
                let base = base
                    .with_error_code(GROUP_AUTHORIZATION_FAILED)
                    .with_group_state(s(""))
                    .with_protocol_type(s(""))
                    .with_protocol_data(s(""));
                return if version >= 3 {
                    base.with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
                } else {
                    base
                };
            }
            // Asked for (v3+): what the principal may do on the group.
            let base = if version >= 3 && req.include_authorized_operations {
                base.with_authorized_operations(authz.operations(ResourceType::Group, &id.0))
            } else if version >= 3 {
                base.with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
            } else {
                base
            };
            match groups.describe_group(&id.0) {
                Err(e) => base.with_error_code(group_error_code(e)),
                Ok(d) => base
                    .with_group_state(s(d.state.name()))
                    .with_protocol_type(s(d.protocol_type))
                    .with_protocol_data(s(d.protocol))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|m| {
                                let member = DescribedGroupMember::default()
                                    .with_member_id(s(m.member_id))
                                    .with_client_id(s(m.client_id))
                                    .with_client_host(s(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment);
                                if version >= 4 {
                                    member.with_group_instance_id(m.group_instance_id.map(s))
                                } else {
                                    member
                                }
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(described)
}

pub async fn delete_groups(
    groups: Arc<GroupCoordinator>,
    req: DeleteGroupsRequest,
    authz: &Authz,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(req.groups_names.len());
    for id in req.groups_names {
        let error = if authz.group(AclOperation::Delete, &id.0) {
            code(groups.delete_group(&id.0).await)
        } else {
            GROUP_AUTHORIZATION_FAILED
        };
        results.push(
            arctern_kafka_wire::kafka_protocol::messages::delete_groups_response::DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(error),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

pub async fn offset_delete(
    groups: Arc<GroupCoordinator>,
    req: OffsetDeleteRequest,
    authz: &Authz,
) -> OffsetDeleteResponse {
    // Kafka: DELETE on the group, then READ on each topic.
    if !authz.group(AclOperation::Delete, &req.group_id.0) {
        return OffsetDeleteResponse::default().with_error_code(GROUP_AUTHORIZATION_FAILED);
    }
    let (topics, refused): (TopicPartitions, TopicPartitions) = req
        .topics
        .iter()
        .map(|t| {
            (
                t.name.0.to_string(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .partition(|(t, _)| authz.topic(AclOperation::Read, t));
    let deleted = if topics.is_empty() && !refused.is_empty() {
        Ok(Vec::new())
    } else {
        groups.delete_offsets(&req.group_id.0, &topics).await
    };
    match deleted {
        Err(e) => OffsetDeleteResponse::default().with_error_code(group_error_code(e)),
        Ok(results) => {
            let mut out: Vec<OffsetDeleteResponseTopic> = Vec::new();
            for (topic, partitions) in refused {
                out.push(
                    OffsetDeleteResponseTopic::default()
                        .with_name(TopicName(s(topic)))
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|p| {
                                    OffsetDeleteResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                                })
                                .collect(),
                        ),
                );
            }
            for (topic, partition, r) in results {
                let part = OffsetDeleteResponsePartition::default()
                    .with_partition_index(partition)
                    .with_error_code(code(r));
                match out.iter_mut().find(|t| t.name.0.as_str() == topic) {
                    Some(t) => t.partitions.push(part),
                    None => out.push(
                        OffsetDeleteResponseTopic::default()
                            .with_name(TopicName(s(topic)))
                            .with_partitions(vec![part]),
                    ),
                }
            }
            OffsetDeleteResponse::default().with_topics(out)
        }
    }
}
