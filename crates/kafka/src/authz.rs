//! Kafka authorization: the per-request view of the ACLs the handlers consult (where
//! Kafka's `KafkaApis` checks them), and the ACL admin APIs (CreateAcls, DescribeAcls,
//! DeleteAcls). The decision itself is `arctern_security::acl` (sans-IO).
//!
//! Without an authorizer (`authorizer.class.name` unset, the default) every check passes
//! and the ACL APIs answer SECURITY_DISABLED, as Kafka does.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use arctern_kafka_wire::kafka_protocol::messages::create_acls_response::AclCreationResult;
use arctern_kafka_wire::kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use arctern_kafka_wire::kafka_protocol::messages::describe_acls_response::{
    AclDescription, DescribeAclsResource,
};
use arctern_kafka_wire::kafka_protocol::messages::*;
use arctern_kafka_wire::kafka_protocol::protocol::StrBytes;
use arctern_kafka_wire::ResponseError;
use arctern_metadata::{ClusterState, CommandResult, MetadataCommand, MetadataNode};
use arctern_security::acl::{
    self, AclBinding, AclBindingFilter, AclOperation, AuthorizerConfig, PatternType,
    PermissionType, Requester, ResourceType, CLUSTER_NAME,
};
use arctern_security::Principal;

use crate::handlers::{KafkaContext, Origin};

/// The configured authorizer: its settings, and the metadata quorum the ACLs live in.
pub struct Authorizer {
    pub config: AuthorizerConfig,
    metadata: Arc<MetadataNode>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Authorizer {
    pub fn new(config: AuthorizerConfig, metadata: Arc<MetadataNode>) -> Authorizer {
        Authorizer { config, metadata }
    }
}

/// One request's view: who asks, from where, and the ACLs of the metadata as applied when
/// the request arrived. Everything passes when no authorizer is configured.
#[derive(Clone)]
pub(crate) struct Authz {
    enabled: Option<(Arc<Authorizer>, Arc<ClusterState>)>,
    principal: Arc<Principal>,
    host: IpAddr,
}

impl Authz {
    pub(crate) fn new(ctx: &KafkaContext, origin: &Origin) -> Authz {
        Authz {
            enabled: ctx
                .authorizer
                .as_ref()
                .map(|a| (Arc::clone(a), ctx.broker.cluster())),
            principal: Arc::clone(&origin.principal),
            host: origin.peer.ip(),
        }
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled.is_some()
    }

    fn requester(&self) -> Requester<'_> {
        Requester {
            principal: &self.principal,
            host: self.host,
        }
    }

    pub(crate) fn allows(&self, op: AclOperation, resource_type: ResourceType, name: &str) -> bool {
        match &self.enabled {
            None => true,
            Some((auth, state)) => acl::authorize(
                &auth.config,
                &state.acls,
                &self.requester(),
                op,
                resource_type,
                name,
            ),
        }
    }

    pub(crate) fn topic(&self, op: AclOperation, name: &str) -> bool {
        self.allows(op, ResourceType::Topic, name)
    }

    pub(crate) fn group(&self, op: AclOperation, name: &str) -> bool {
        self.allows(op, ResourceType::Group, name)
    }

    pub(crate) fn cluster(&self, op: AclOperation) -> bool {
        self.allows(op, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// `authorizeByResourceType`: `op` on at least one resource of the type.
    pub(crate) fn any_of_type(&self, op: AclOperation, resource_type: ResourceType) -> bool {
        match &self.enabled {
            None => true,
            Some((auth, state)) => acl::authorize_by_resource_type(
                &auth.config,
                &state.acls,
                &self.requester(),
                op,
                resource_type,
            ),
        }
    }

    /// The authorized-operations bitfield of a resource: every supported operation without
    /// an authorizer, else those this requester may do.
    pub(crate) fn operations(&self, resource_type: ResourceType, name: &str) -> i32 {
        match &self.enabled {
            None => {
                acl::operations_bitfield(acl::supported_operations(resource_type).iter().copied())
            }
            Some((auth, state)) => acl::authorized_operations(
                &auth.config,
                &state.acls,
                &self.requester(),
                resource_type,
                name,
            ),
        }
    }
}

/// Whether the request's principal may do `op` on the resource: the check other handlers
/// (e.g. AlterUserScramCredentials: ALTER on the cluster) call. Always true without an
/// authorizer.
pub fn allowed(
    ctx: &KafkaContext,
    origin: &Origin,
    op: AclOperation,
    resource_type: ResourceType,
    name: &str,
) -> bool {
    Authz::new(ctx, origin).allows(op, resource_type, name)
}

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

fn opt(v: &Option<StrBytes>) -> Option<String> {
    v.as_ref().map(|x| x.to_string())
}

fn filter_from_wire(
    resource_type: i8,
    name: &Option<StrBytes>,
    pattern_type: i8,
    principal: &Option<StrBytes>,
    host: &Option<StrBytes>,
    operation: i8,
    permission_type: i8,
) -> AclBindingFilter {
    AclBindingFilter {
        resource_type: ResourceType::from_code(resource_type),
        resource_name: opt(name),
        pattern_type: PatternType::from_code(pattern_type),
        principal: opt(principal),
        host: opt(host),
        operation: AclOperation::from_code(operation),
        permission_type: PermissionType::from_code(permission_type),
    }
}

fn disabled_message() -> StrBytes {
    s("No Authorizer is configured on the broker")
}

/// CreateAcls and DeleteAcls run only with an authorizer and ALTER on the cluster; else
/// every entry of the request fails with this code and message.
#[allow(clippy::type_complexity)]
fn acl_change_gate(authz: &Authz) -> Result<(&Arc<Authorizer>, &Arc<ClusterState>), (i16, String)> {
    let Some((auth, state)) = &authz.enabled else {
        return Err((
            ResponseError::SecurityDisabled.code(),
            disabled_message().to_string(),
        ));
    };
    if !authz.cluster(AclOperation::Alter) {
        return Err((
            ResponseError::ClusterAuthorizationFailed.code(),
            ResponseError::ClusterAuthorizationFailed.to_string(),
        ));
    }
    Ok((auth, state))
}

/// CreateAcls (key 30): needs ALTER on the cluster. Each creation is validated as Kafka
/// does (its own INVALID_REQUEST); the valid ones are committed in one metadata command.
pub(crate) async fn create_acls(authz: Authz, req: CreateAclsRequest) -> CreateAclsResponse {
    let refuse_all = |code: i16, message: String| {
        CreateAclsResponse::default().with_results(
            req.creations
                .iter()
                .map(|_| {
                    AclCreationResult::default()
                        .with_error_code(code)
                        .with_error_message(Some(s(message.clone())))
                })
                .collect(),
        )
    };
    let (auth, _) = match acl_change_gate(&authz) {
        Ok(enabled) => enabled,
        Err((code, message)) => return refuse_all(code, message),
    };
    let mut results: Vec<Option<String>> = Vec::with_capacity(req.creations.len());
    let mut valid = Vec::new();
    for c in &req.creations {
        let binding = AclBinding {
            resource_type: ResourceType::from_code(c.resource_type),
            resource_name: c.resource_name.to_string(),
            pattern_type: PatternType::from_code(c.resource_pattern_type),
            principal: c.principal.to_string(),
            host: c.host.to_string(),
            operation: AclOperation::from_code(c.operation),
            permission_type: PermissionType::from_code(c.permission_type),
        };
        match acl::validate_new(&binding) {
            Ok(()) => {
                valid.push(binding);
                results.push(None);
            }
            Err(reason) => results.push(Some(reason)),
        }
    }
    let committed: Result<(), (i16, String)> = if valid.is_empty() {
        Ok(())
    } else {
        let count = valid.len();
        match auth
            .metadata
            .propose(MetadataCommand::CreateAcls { bindings: valid })
            .await
        {
            Ok(CommandResult::Ok) => {
                tracing::info!(count, "created ACLs");
                Ok(())
            }
            Ok(CommandResult::InvalidRequest { reason }) => {
                Err((ResponseError::InvalidRequest.code(), reason))
            }
            Ok(other) => Err((
                ResponseError::UnknownServerError.code(),
                format!("{other:?}"),
            )),
            Err(e) => Err((ResponseError::RequestTimedOut.code(), e.to_string())),
        }
    };
    CreateAclsResponse::default().with_results(
        results
            .into_iter()
            .map(|r| match (r, &committed) {
                (Some(reason), _) => AclCreationResult::default()
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(s(reason))),
                (None, Ok(())) => AclCreationResult::default(),
                (None, Err((code, message))) => AclCreationResult::default()
                    .with_error_code(*code)
                    .with_error_message(Some(s(message.clone()))),
            })
            .collect(),
    )
}

/// DescribeAcls (key 29): needs DESCRIBE on the cluster; the ACLs matching the filter,
/// grouped by resource pattern.
pub(crate) fn describe_acls(authz: &Authz, req: DescribeAclsRequest) -> DescribeAclsResponse {
    let Some((_, state)) = &authz.enabled else {
        return DescribeAclsResponse::default()
            .with_error_code(ResponseError::SecurityDisabled.code())
            .with_error_message(Some(disabled_message()));
    };
    if !authz.cluster(AclOperation::Describe) {
        return DescribeAclsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(s(
                ResponseError::ClusterAuthorizationFailed.to_string()
            )));
    }
    let filter = filter_from_wire(
        req.resource_type_filter,
        &req.resource_name_filter,
        req.pattern_type_filter,
        &req.principal_filter,
        &req.host_filter,
        req.operation,
        req.permission_type,
    );
    if filter.is_unknown() {
        return DescribeAclsResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(s("The filter contains UNKNOWN elements")));
    }
    let mut by_resource: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for b in state.acls.iter().filter(|b| filter.matches(b)) {
        by_resource
            .entry((
                b.resource_type.code(),
                b.resource_name.clone(),
                b.pattern_type.code(),
            ))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(s(b.principal.clone()))
                    .with_host(s(b.host.clone()))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission_type.code()),
            );
    }
    DescribeAclsResponse::default().with_resources(
        by_resource
            .into_iter()
            .map(|((rt, name, pt), acls)| {
                DescribeAclsResource::default()
                    .with_resource_type(rt)
                    .with_resource_name(s(name))
                    .with_pattern_type(pt)
                    .with_acls(acls)
            })
            .collect(),
    )
}

/// DeleteAcls (key 31): needs ALTER on the cluster. Each filter is resolved against this
/// node's ACLs; the union of the matches is removed in one metadata command, and each
/// filter reports what it matched.
pub(crate) async fn delete_acls(authz: Authz, req: DeleteAclsRequest) -> DeleteAclsResponse {
    let refuse_all = |code: i16, message: String| {
        DeleteAclsResponse::default().with_filter_results(
            req.filters
                .iter()
                .map(|_| {
                    DeleteAclsFilterResult::default()
                        .with_error_code(code)
                        .with_error_message(Some(s(message.clone())))
                })
                .collect(),
        )
    };
    let (auth, state) = match acl_change_gate(&authz) {
        Ok(enabled) => enabled,
        Err((code, message)) => return refuse_all(code, message),
    };
    // Per filter: Err(message) for an UNKNOWN filter, else the ACLs it matches.
    let matched: Vec<Result<Vec<AclBinding>, &'static str>> = req
        .filters
        .iter()
        .map(|f| {
            let filter = filter_from_wire(
                f.resource_type_filter,
                &f.resource_name_filter,
                f.pattern_type_filter,
                &f.principal_filter,
                &f.host_filter,
                f.operation,
                f.permission_type,
            );
            if filter.is_unknown() {
                return Err("The filter contains UNKNOWN elements");
            }
            Ok(state
                .acls
                .iter()
                .filter(|b| filter.matches(b))
                .cloned()
                .collect())
        })
        .collect();
    let mut doomed: Vec<AclBinding> = matched
        .iter()
        .filter_map(|m| m.as_ref().ok())
        .flatten()
        .cloned()
        .collect();
    doomed.sort();
    doomed.dedup();
    let committed: Result<(), (i16, String)> = if doomed.is_empty() {
        Ok(())
    } else {
        let count = doomed.len();
        match auth
            .metadata
            .propose(MetadataCommand::DeleteAcls { bindings: doomed })
            .await
        {
            Ok(CommandResult::Ok) => {
                tracing::info!(count, "deleted ACLs");
                Ok(())
            }
            Ok(other) => Err((
                ResponseError::UnknownServerError.code(),
                format!("{other:?}"),
            )),
            Err(e) => Err((ResponseError::RequestTimedOut.code(), e.to_string())),
        }
    };
    DeleteAclsResponse::default().with_filter_results(
        matched
            .into_iter()
            .map(|m| match (m, &committed) {
                (Err(message), _) => DeleteAclsFilterResult::default()
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(s(message))),
                (Ok(_), Err((code, message))) => DeleteAclsFilterResult::default()
                    .with_error_code(*code)
                    .with_error_message(Some(s(message.clone()))),
                (Ok(bindings), Ok(())) => DeleteAclsFilterResult::default().with_matching_acls(
                    bindings
                        .into_iter()
                        .map(|b| {
                            DeleteAclsMatchingAcl::default()
                                .with_resource_type(b.resource_type.code())
                                .with_resource_name(s(b.resource_name))
                                .with_pattern_type(b.pattern_type.code())
                                .with_principal(s(b.principal))
                                .with_host(s(b.host))
                                .with_operation(b.operation.code())
                                .with_permission_type(b.permission_type.code())
                        })
                        .collect(),
                ),
            })
            .collect(),
    )
}
