//! Config and record administration handlers: DescribeConfigs, AlterConfigs (legacy, full
//! replace), IncrementalAlterConfigs (topics and the BROKER resource), DeleteRecords,
//! DescribeCluster, and the authorized-operations bitfields of Metadata/DescribeCluster.

use arctern_core::{AlterOp, Broker, ConfigEntry, CoreError};
use arctern_kafka_wire::kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse as LegacyResourceResponse;
use arctern_kafka_wire::kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use arctern_kafka_wire::kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use arctern_kafka_wire::kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use arctern_kafka_wire::kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use arctern_kafka_wire::kafka_protocol::messages::*;
use arctern_kafka_wire::kafka_protocol::protocol::StrBytes;

use crate::authz::Authz;
use crate::errors::error_code;
use arctern_kafka_wire::ResponseError;
use arctern_security::acl::{AclOperation, ResourceType};

/// Kafka's check for a config resource: `op` on the topic (TOPIC_AUTHORIZATION_FAILED) or on
/// the cluster for a broker (CLUSTER_AUTHORIZATION_FAILED). `None` when allowed (or when the
/// resource type is unknown: the handler refuses that itself).
fn config_refusal(
    authz: &Authz,
    op: AclOperation,
    resource_type: i8,
    name: &str,
) -> Option<ResponseError> {
    match resource_type {
        RESOURCE_TOPIC if !authz.topic(op, name) => Some(ResponseError::TopicAuthorizationFailed),
        RESOURCE_BROKER if !authz.cluster(op) => Some(ResponseError::ClusterAuthorizationFailed),
        _ => None,
    }
}

pub(crate) const RESOURCE_TOPIC: i8 = 2;
pub(crate) const RESOURCE_BROKER: i8 = 4;

/// Kafka's "authorized operations not requested" value.
pub(crate) const OPS_NOT_REQUESTED: i32 = i32::MIN;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

fn config_result(e: ConfigEntry, version: i16, synonyms: bool) -> DescribeConfigsResourceResult {
    let r = DescribeConfigsResourceResult::default()
        .with_name(s(e.name))
        .with_value(Some(s(e.value)))
        .with_read_only(e.read_only)
        .with_is_sensitive(e.sensitive)
        .with_config_source(e.source.kafka_id());
    let r = if synonyms {
        r.with_synonyms(
            e.synonyms
                .into_iter()
                .map(|syn| {
                    DescribeConfigsSynonym::default()
                        .with_name(s(syn.name))
                        .with_value(Some(s(syn.value)))
                        .with_source(syn.source.kafka_id())
                })
                .collect(),
        )
    } else {
        r
    };
    if version >= 3 {
        r.with_config_type(e.config_type.kafka_id())
    } else {
        r
    }
}

pub(crate) fn describe_configs(
    broker: &Broker,
    req: DescribeConfigsRequest,
    version: i16,
    authz: &Authz,
) -> DescribeConfigsResponse {
    let synonyms = req.include_synonyms;
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let base = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            if let Some(e) = config_refusal(
                authz,
                AclOperation::DescribeConfigs,
                r.resource_type,
                &r.resource_name,
            ) {
                return base
                    .with_error_code(e.code())
                    .with_error_message(Some(s(e.to_string())));
            }
            let entries = match r.resource_type {
                RESOURCE_TOPIC => broker.describe_configs(&r.resource_name),
                RESOURCE_BROKER => broker.describe_broker_configs(&r.resource_name),
                other => Err(CoreError::InvalidRequest(format!(
                    "unsupported resource type {other}"
                ))),
            };
            match entries {
                Ok(entries) => {
                    let wanted = r.configuration_keys.as_ref();
                    base.with_configs(
                        entries
                            .into_iter()
                            .filter(|e| {
                                wanted.is_none_or(|keys| keys.iter().any(|k| k.as_str() == e.name))
                            })
                            .map(|e| config_result(e, version, synonyms))
                            .collect(),
                    )
                }
                Err(e) => base
                    .with_error_code(error_code(&e))
                    .with_error_message(Some(s(e.to_string()))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Kafka refuses a request naming the same resource twice (every copy gets INVALID_REQUEST).
fn duplicated(resources: &[(i8, String)], i: usize) -> bool {
    resources.iter().filter(|r| **r == resources[i]).count() > 1
}

pub(crate) async fn incremental_alter_configs(
    broker: &Broker,
    req: IncrementalAlterConfigsRequest,
    authz: &Authz,
) -> IncrementalAlterConfigsResponse {
    let keys: Vec<(i8, String)> = req
        .resources
        .iter()
        .map(|r| (r.resource_type, r.resource_name.to_string()))
        .collect();
    let mut responses = Vec::with_capacity(req.resources.len());
    for (i, r) in req.resources.into_iter().enumerate() {
        let base = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        if let Some(e) = config_refusal(
            authz,
            AclOperation::AlterConfigs,
            r.resource_type,
            &r.resource_name,
        ) {
            responses.push(
                base.with_error_code(e.code())
                    .with_error_message(Some(s(e.to_string()))),
            );
            continue;
        }
        let result = if duplicated(&keys, i) {
            Err(CoreError::InvalidRequest(
                "Each resource must appear at most once.".into(),
            ))
        } else {
            let ops = incremental_ops(&r.configs);
            match (ops, r.resource_type) {
                (Err(e), _) => Err(e),
                (Ok(ops), RESOURCE_TOPIC) => {
                    broker
                        .alter_configs(&r.resource_name, &ops, req.validate_only)
                        .await
                }
                (Ok(ops), RESOURCE_BROKER) => {
                    broker
                        .alter_broker_configs(&r.resource_name, &ops, req.validate_only)
                        .await
                }
                (Ok(_), other) => Err(CoreError::InvalidRequest(format!(
                    "Unknown resource type {other}"
                ))),
            }
        };
        responses.push(match result {
            Ok(()) => base,
            Err(e) => base
                .with_error_code(error_code(&e))
                .with_error_message(Some(s(e.to_string()))),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

fn incremental_ops(
    configs: &[incremental_alter_configs_request::AlterableConfig],
) -> Result<Vec<AlterOp>, CoreError> {
    let mut seen = std::collections::BTreeSet::new();
    let mut ops = Vec::with_capacity(configs.len());
    for c in configs {
        let name = c.name.to_string();
        if !seen.insert(name.clone()) {
            return Err(CoreError::InvalidRequest(
                "Error due to duplicate config keys".into(),
            ));
        }
        let value = c.value.as_ref().map(|v| v.to_string());
        ops.push(match (c.config_operation, value) {
            (0, Some(v)) => AlterOp::Set(name, v),
            (1, _) => AlterOp::Delete(name),
            (2, Some(v)) => AlterOp::Append(name, v),
            (3, Some(v)) => AlterOp::Subtract(name, v),
            (0..=3, None) => {
                return Err(CoreError::InvalidRequest(format!(
                    "Null value not supported for : {name}"
                )))
            }
            (op, _) => {
                return Err(CoreError::InvalidRequest(format!(
                    "Unknown operations type {op}"
                )))
            }
        });
    }
    Ok(ops)
}

/// Legacy AlterConfigs (key 33): the configs given replace every dynamic config of the
/// resource; `validate_only` checks without changing anything.
pub(crate) async fn alter_configs(
    broker: &Broker,
    req: AlterConfigsRequest,
    authz: &Authz,
) -> AlterConfigsResponse {
    let keys: Vec<(i8, String)> = req
        .resources
        .iter()
        .map(|r| (r.resource_type, r.resource_name.to_string()))
        .collect();
    let mut responses = Vec::with_capacity(req.resources.len());
    for (i, r) in req.resources.into_iter().enumerate() {
        let base = LegacyResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        if let Some(e) = config_refusal(
            authz,
            AclOperation::AlterConfigs,
            r.resource_type,
            &r.resource_name,
        ) {
            responses.push(
                base.with_error_code(e.code())
                    .with_error_message(Some(s(e.to_string()))),
            );
            continue;
        }
        let configs: Result<Vec<(String, String)>, CoreError> = r
            .configs
            .iter()
            .map(|c| match &c.value {
                Some(v) => Ok((c.name.to_string(), v.to_string())),
                None => Err(CoreError::InvalidRequest(format!(
                    "Null value not supported for : {}",
                    c.name.as_str()
                ))),
            })
            .collect();
        let result = if duplicated(&keys, i) {
            Err(CoreError::InvalidRequest(
                "Each resource must appear at most once.".into(),
            ))
        } else {
            match (configs, r.resource_type) {
                (Err(e), _) => Err(e),
                (Ok(c), RESOURCE_TOPIC) => {
                    broker
                        .replace_topic_configs(&r.resource_name, &c, req.validate_only)
                        .await
                }
                (Ok(c), RESOURCE_BROKER) => {
                    broker
                        .replace_broker_configs(&r.resource_name, &c, req.validate_only)
                        .await
                }
                (Ok(_), other) => Err(CoreError::InvalidRequest(format!(
                    "Unknown resource type {other}"
                ))),
            }
        };
        responses.push(match result {
            Ok(()) => base,
            Err(e) => base
                .with_error_code(error_code(&e))
                .with_error_message(Some(s(e.to_string()))),
        });
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// DeleteRecords (key 21): each partition's log start moves up to the requested offset
/// (-1 = the high watermark) on its leader; the response carries the new low watermark.
pub(crate) fn delete_records(
    broker: &Broker,
    req: DeleteRecordsRequest,
    authz: &Authz,
) -> DeleteRecordsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let deletable = authz.topic(AclOperation::Delete, &t.name.0);
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let base =
                        DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
                    if !deletable {
                        return base
                            .with_low_watermark(-1)
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    match broker.delete_records(&t.name.0, p.partition_index, p.offset) {
                        Ok(low) => base.with_low_watermark(low),
                        Err(e) => {
                            tracing::debug!(topic = %t.name.0, partition = p.partition_index, error = %e, "delete records refused");
                            base.with_low_watermark(-1).with_error_code(error_code(&e))
                        }
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}

/// DescribeCluster (key 60, v0-v1): the live brokers, controller and cluster id.
pub(crate) fn describe_cluster(
    broker: &Broker,
    req: DescribeClusterRequest,
    version: i16,
    cluster_id: &str,
    authz: &Authz,
    listener: &str,
) -> DescribeClusterResponse {
    let base = DescribeClusterResponse::default().with_cluster_id(s(cluster_id));
    // endpoint_type 2 (controllers) is for KIP-919 clients talking to controllers.
    if version >= 1 && req.endpoint_type != 1 {
        return base
            .with_endpoint_type(req.endpoint_type)
            .with_error_code(arctern_kafka_wire::ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(s("only broker endpoints are described")));
    }
    let cluster = broker.cluster();
    let brokers = cluster
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| {
            let (host, port) = b.endpoint(listener);
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.broker_id))
                .with_host(s(host.to_string()))
                .with_port(i32::from(port))
                .with_rack(b.rack.clone().map(s))
        })
        .collect();
    // As Kafka: the principal's operations, or 0 without DESCRIBE on the cluster.
    let ops = if !req.include_cluster_authorized_operations {
        OPS_NOT_REQUESTED
    } else if authz.cluster(AclOperation::Describe) {
        authz.operations(ResourceType::Cluster, arctern_security::acl::CLUSTER_NAME)
    } else {
        0
    };
    base.with_controller_id(BrokerId(broker.controller_id()))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(ops)
}
