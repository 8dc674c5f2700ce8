//! Kafka's ACL model and its authorization decision, as Kafka's `StandardAuthorizer`
//! (KRaft) and `AclAuthorizer` (ZooKeeper) decide it. No I/O: the Kafka session passes the
//! ACLs of the current metadata, the principal and the client's address.
//!
//! The rules (`StandardAuthorizerData.findAclRule`/`findResult`):
//! - a super user (`super.users`) and another node of the cluster may do anything;
//! - the ACLs that apply to a resource are its LITERAL ones, the LITERAL `*` ones of its
//!   type and the PREFIXED ones whose name starts the resource's name;
//! - among those, an ACL matches when its principal is the client's or `User:*`, its host
//!   is `*` or the client's address, and its operation is the one asked, or `ALL`, or (ALLOW
//!   only) one that implies it: READ, WRITE, DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS
//!   implies DESCRIBE_CONFIGS;
//! - any matching DENY refuses; else any matching ALLOW allows; else, when no ACL at all
//!   applies to the resource, `allow.everyone.if.no.acl.found` decides; else refused.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::Principal;

/// The name of the one CLUSTER resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// A LITERAL resource name that matches every resource of its type.
pub const WILDCARD_RESOURCE: &str = "*";
/// The principal that matches every principal.
pub const WILDCARD_PRINCIPAL: &str = "User:*";
/// The host that matches every client address.
pub const WILDCARD_HOST: &str = "*";

macro_rules! coded_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $code:literal => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            /// From Kafka's wire code; codes Kafka does not define are `Unknown`.
            pub fn from_code(code: i8) -> $name {
                match code {
                    $($code => $name::$variant,)+
                    _ => $name::Unknown,
                }
            }

            /// Kafka's wire code.
            pub fn code(self) -> i8 {
                match self {
                    $($name::$variant => $code),+
                }
            }

            /// Kafka's name (`TOPIC`, `PREFIXED`, `DESCRIBE_CONFIGS`, `ALLOW`).
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// From Kafka's name, case-insensitively.
            pub fn parse(text: &str) -> Option<$name> {
                let upper = text.to_ascii_uppercase();
                match upper.as_str() {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

coded_enum!(
    /// Kafka's `ResourceType`.
    ResourceType {
        Unknown = 0 => "UNKNOWN",
        Any = 1 => "ANY",
        Topic = 2 => "TOPIC",
        Group = 3 => "GROUP",
        Cluster = 4 => "CLUSTER",
        TransactionalId = 5 => "TRANSACTIONAL_ID",
        DelegationToken = 6 => "DELEGATION_TOKEN",
        User = 7 => "USER",
    }
);

coded_enum!(
    /// Kafka's `PatternType`: bindings are LITERAL or PREFIXED; filters may also say ANY
    /// (either, name compared exactly) or MATCH (every binding that would apply to the name).
    PatternType {
        Unknown = 0 => "UNKNOWN",
        Any = 1 => "ANY",
        Match = 2 => "MATCH",
        Literal = 3 => "LITERAL",
        Prefixed = 4 => "PREFIXED",
    }
);

coded_enum!(
    /// Kafka's `AclOperation`.
    AclOperation {
        Unknown = 0 => "UNKNOWN",
        Any = 1 => "ANY",
        All = 2 => "ALL",
        Read = 3 => "READ",
        Write = 4 => "WRITE",
        Create = 5 => "CREATE",
        Delete = 6 => "DELETE",
        Alter = 7 => "ALTER",
        Describe = 8 => "DESCRIBE",
        ClusterAction = 9 => "CLUSTER_ACTION",
        DescribeConfigs = 10 => "DESCRIBE_CONFIGS",
        AlterConfigs = 11 => "ALTER_CONFIGS",
        IdempotentWrite = 12 => "IDEMPOTENT_WRITE",
        CreateTokens = 13 => "CREATE_TOKENS",
        DescribeTokens = 14 => "DESCRIBE_TOKENS",
    }
);

coded_enum!(
    /// Kafka's `AclPermissionType`.
    PermissionType {
        Unknown = 0 => "UNKNOWN",
        Any = 1 => "ANY",
        Deny = 2 => "DENY",
        Allow = 3 => "ALLOW",
    }
);

/// One ACL: Kafka's `AclBinding` (a resource pattern and an access control entry).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    /// `User:alice`, or `User:*` for everyone.
    pub principal: String,
    /// `*`, or a client IP address.
    pub host: String,
    pub operation: AclOperation,
    pub permission_type: PermissionType,
}

impl AclBinding {
    /// Whether this ACL's resource pattern applies to the resource `name` of its type.
    fn applies_to(&self, resource_type: ResourceType, name: &str) -> bool {
        if self.resource_type != resource_type {
            return false;
        }
        match self.pattern_type {
            PatternType::Literal => {
                self.resource_name == name || self.resource_name == WILDCARD_RESOURCE
            }
            PatternType::Prefixed => name.starts_with(self.resource_name.as_str()),
            _ => false,
        }
    }
}

/// The reason Kafka gives for refusing an ACL in CreateAcls (INVALID_REQUEST).
pub fn validate_new(b: &AclBinding) -> Result<(), String> {
    if matches!(b.resource_type, ResourceType::Unknown | ResourceType::Any) {
        return Err(format!("Invalid resourceType {}", b.resource_type.name()));
    }
    if !matches!(b.pattern_type, PatternType::Literal | PatternType::Prefixed) {
        return Err(format!("Invalid patternType {}", b.pattern_type.name()));
    }
    if matches!(b.operation, AclOperation::Unknown | AclOperation::Any) {
        return Err(format!("Invalid operation {}", b.operation.name()));
    }
    if !matches!(
        b.permission_type,
        PermissionType::Allow | PermissionType::Deny
    ) {
        return Err(format!(
            "Invalid permissionType {}",
            b.permission_type.name()
        ));
    }
    if b.resource_name.is_empty() {
        return Err("Invalid empty resource name".to_string());
    }
    if b.resource_type == ResourceType::Cluster && b.resource_name != CLUSTER_NAME {
        return Err(format!(
            "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
        ));
    }
    // SecurityUtils.parseKafkaPrincipal: "principalType:principalName".
    match b.principal.split_once(':') {
        Some((kind, _)) if !kind.is_empty() => {}
        _ => {
            return Err(format!(
                "expected a string in format principalType:principalName but got {}",
                b.principal
            ))
        }
    }
    if b.host.is_empty() {
        return Err("Invalid empty host".to_string());
    }
    Ok(())
}

/// Kafka's `AclBindingFilter`, used by DescribeAcls and DeleteAcls. `None` fields match
/// anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclBindingFilter {
    pub resource_type: ResourceType,
    pub resource_name: Option<String>,
    pub pattern_type: PatternType,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: AclOperation,
    pub permission_type: PermissionType,
}

impl AclBindingFilter {
    /// Matches every ACL.
    pub fn any() -> AclBindingFilter {
        AclBindingFilter {
            resource_type: ResourceType::Any,
            resource_name: None,
            pattern_type: PatternType::Any,
            principal: None,
            host: None,
            operation: AclOperation::Any,
            permission_type: PermissionType::Any,
        }
    }

    /// A filter with an UNKNOWN field is refused (`AclControlManager.validateFilter`).
    pub fn is_unknown(&self) -> bool {
        self.resource_type == ResourceType::Unknown
            || self.pattern_type == PatternType::Unknown
            || self.operation == AclOperation::Unknown
            || self.permission_type == PermissionType::Unknown
    }

    /// `ResourcePatternFilter.matches` and `AccessControlEntryFilter.matches`.
    pub fn matches(&self, b: &AclBinding) -> bool {
        self.matches_pattern(b) && self.matches_entry(b)
    }

    fn matches_pattern(&self, b: &AclBinding) -> bool {
        if self.resource_type != ResourceType::Any && self.resource_type != b.resource_type {
            return false;
        }
        if !matches!(self.pattern_type, PatternType::Any | PatternType::Match)
            && self.pattern_type != b.pattern_type
        {
            return false;
        }
        let Some(name) = &self.resource_name else {
            return true;
        };
        if self.pattern_type == PatternType::Any || self.pattern_type == b.pattern_type {
            return *name == b.resource_name;
        }
        // MATCH: every binding that would apply to a resource called `name`.
        match b.pattern_type {
            PatternType::Literal => {
                *name == b.resource_name || b.resource_name == WILDCARD_RESOURCE
            }
            PatternType::Prefixed => name.starts_with(b.resource_name.as_str()),
            _ => false,
        }
    }

    fn matches_entry(&self, b: &AclBinding) -> bool {
        if self.principal.as_ref().is_some_and(|p| *p != b.principal) {
            return false;
        }
        if self.host.as_ref().is_some_and(|h| *h != b.host) {
            return false;
        }
        if self.operation != AclOperation::Any && self.operation != b.operation {
            return false;
        }
        self.permission_type == PermissionType::Any || self.permission_type == b.permission_type
    }
}

/// The authorizer's settings (Kafka's keys).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// `super.users`: principals allowed everything (`User:admin`).
    pub super_users: Vec<String>,
    /// `allow.everyone.if.no.acl.found`: allow when no ACL applies to the resource.
    pub allow_everyone_if_no_acl_found: bool,
}

impl AuthorizerConfig {
    /// `super.users` is a semicolon-separated list: `User:alice;User:bob`.
    pub fn parse_super_users(value: &str) -> Vec<String> {
        value
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn is_super(&self, principal: &Principal) -> bool {
        match principal {
            Principal::Node(_) => true,
            p => {
                let name = p.kafka_name();
                self.super_users.contains(&name)
            }
        }
    }
}

/// Who asks, from where.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    pub principal: &'a Principal,
    pub host: IpAddr,
}

impl Requester<'_> {
    fn matches_principal(&self, acl_principal: &str, name: &str) -> bool {
        acl_principal == WILDCARD_PRINCIPAL || acl_principal == name
    }

    fn matches_host(&self, acl_host: &str) -> bool {
        // Kafka compares strings with InetAddress.getHostAddress(); parsing makes "::1"
        // and "0:0:0:0:0:0:0:1" the same address.
        acl_host == WILDCARD_HOST
            || acl_host
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip == self.host || ip.to_canonical() == self.host.to_canonical())
    }
}

/// `StandardAuthorizerData.findResult`: what one applicable ACL says (None: nothing).
fn verdict(
    acl: &AclBinding,
    who: &Requester<'_>,
    name: &str,
    op: AclOperation,
) -> Option<PermissionType> {
    if !who.matches_principal(&acl.principal, name) || !who.matches_host(&acl.host) {
        return None;
    }
    if acl.operation != AclOperation::All {
        let matches = if acl.permission_type == PermissionType::Allow {
            match op {
                AclOperation::Describe => matches!(
                    acl.operation,
                    AclOperation::Describe
                        | AclOperation::Read
                        | AclOperation::Write
                        | AclOperation::Delete
                        | AclOperation::Alter
                ),
                AclOperation::DescribeConfigs => matches!(
                    acl.operation,
                    AclOperation::DescribeConfigs | AclOperation::AlterConfigs
                ),
                _ => acl.operation == op,
            }
        } else {
            acl.operation == op
        };
        if !matches {
            return None;
        }
    }
    match acl.permission_type {
        p @ (PermissionType::Allow | PermissionType::Deny) => Some(p),
        _ => None,
    }
}

/// Whether `who` may do `op` on the resource (`resource_type`, `name`).
pub fn authorize<'a>(
    config: &AuthorizerConfig,
    acls: impl IntoIterator<Item = &'a AclBinding>,
    who: &Requester<'_>,
    op: AclOperation,
    resource_type: ResourceType,
    name: &str,
) -> bool {
    if config.is_super(who.principal) {
        return true;
    }
    let principal = who.principal.kafka_name();
    let mut applicable = false;
    let mut allowed = false;
    for acl in acls {
        if !acl.applies_to(resource_type, name) {
            continue;
        }
        applicable = true;
        match verdict(acl, who, &principal, op) {
            Some(PermissionType::Deny) => return false,
            Some(_) => allowed = true,
            None => {}
        }
    }
    allowed || (!applicable && config.allow_everyone_if_no_acl_found)
}

/// `Authorizer.authorizeByResourceType`: whether `who` may do `op` on at least one resource
/// of the type (InitProducerId asks for WRITE on any topic). Allowed when a LITERAL or
/// PREFIXED ALLOW ACL for the operation (or ALL) is not covered by a DENY: a LITERAL DENY of
/// the same name, a PREFIXED DENY starting its name, or a LITERAL `*` DENY.
pub fn authorize_by_resource_type<'a>(
    config: &AuthorizerConfig,
    acls: impl IntoIterator<Item = &'a AclBinding> + Clone,
    who: &Requester<'_>,
    op: AclOperation,
    resource_type: ResourceType,
) -> bool {
    // As Kafka: a hard-coded name, so super users (and the no-ACL default) pass.
    if authorize(config, acls.clone(), who, op, resource_type, "hardcode") {
        return true;
    }
    let principal = who.principal.kafka_name();
    let mut deny_literal: Vec<&str> = Vec::new();
    let mut deny_prefixed: Vec<&str> = Vec::new();
    let mut allows: Vec<(PatternType, &str)> = Vec::new();
    for acl in acls {
        if acl.resource_type != resource_type
            || !who.matches_host(&acl.host)
            || !who.matches_principal(&acl.principal, &principal)
            || (acl.operation != op && acl.operation != AclOperation::All)
        {
            continue;
        }
        let name = acl.resource_name.as_str();
        match (acl.permission_type, acl.pattern_type) {
            (PermissionType::Deny, PatternType::Literal) if name == WILDCARD_RESOURCE => {
                return false
            }
            (PermissionType::Deny, PatternType::Literal) => deny_literal.push(name),
            (PermissionType::Deny, PatternType::Prefixed) => deny_prefixed.push(name),
            (PermissionType::Allow, PatternType::Literal) if name == WILDCARD_RESOURCE => {
                return true
            }
            (PermissionType::Allow, p @ (PatternType::Literal | PatternType::Prefixed)) => {
                allows.push((p, name))
            }
            _ => {}
        }
    }
    allows.iter().any(|(pattern, name)| {
        if *pattern == PatternType::Literal && deny_literal.contains(name) {
            return false;
        }
        !deny_prefixed.iter().any(|d| name.starts_with(d))
    })
}

/// The operations Kafka defines on a resource type (`AclEntry.supportedOperations`).
pub fn supported_operations(resource_type: ResourceType) -> &'static [AclOperation] {
    use AclOperation::*;
    match resource_type {
        ResourceType::Topic => &[
            Read,
            Write,
            Create,
            Describe,
            Delete,
            Alter,
            DescribeConfigs,
            AlterConfigs,
        ],
        ResourceType::Group => &[Read, Describe, Delete],
        ResourceType::Cluster => &[
            Create,
            ClusterAction,
            DescribeConfigs,
            AlterConfigs,
            IdempotentWrite,
            Alter,
            Describe,
        ],
        ResourceType::TransactionalId => &[Describe, Write],
        ResourceType::DelegationToken => &[Describe],
        ResourceType::User => &[CreateTokens, DescribeTokens],
        _ => &[],
    }
}

/// A bitfield of operations (bit = operation code), as Metadata, DescribeCluster and
/// DescribeGroups report authorized operations.
pub fn operations_bitfield(ops: impl IntoIterator<Item = AclOperation>) -> i32 {
    ops.into_iter()
        .fold(0, |acc, op| acc | (1i32 << i32::from(op.code())))
}

/// The bitfield of the supported operations `who` may do on the resource
/// (`AuthHelper.authorizedOperations`).
pub fn authorized_operations<'a>(
    config: &AuthorizerConfig,
    acls: impl IntoIterator<Item = &'a AclBinding> + Clone,
    who: &Requester<'_>,
    resource_type: ResourceType,
    name: &str,
) -> i32 {
    operations_bitfield(
        supported_operations(resource_type)
            .iter()
            .copied()
            .filter(|op| authorize(config, acls.clone(), who, *op, resource_type, name)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(
        rt: ResourceType,
        name: &str,
        pt: PatternType,
        principal: &str,
        host: &str,
        op: AclOperation,
        perm: PermissionType,
    ) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pt,
            principal: principal.into(),
            host: host.into(),
            operation: op,
            permission_type: perm,
        }
    }

    fn topic_allow(name: &str, pt: PatternType, principal: &str, op: AclOperation) -> AclBinding {
        acl(
            ResourceType::Topic,
            name,
            pt,
            principal,
            "*",
            op,
            PermissionType::Allow,
        )
    }

    fn topic_deny(name: &str, pt: PatternType, principal: &str, op: AclOperation) -> AclBinding {
        AclBinding {
            permission_type: PermissionType::Deny,
            ..topic_allow(name, pt, principal, op)
        }
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));

    fn alice() -> Principal {
        Principal::User("alice".into())
    }

    fn can(
        config: &AuthorizerConfig,
        acls: &[AclBinding],
        p: &Principal,
        op: AclOperation,
        topic: &str,
    ) -> bool {
        let who = Requester {
            principal: p,
            host: LOCAL,
        };
        authorize(config, acls, &who, op, ResourceType::Topic, topic)
    }

    #[test]
    fn codes_round_trip() {
        for code in 0..=7 {
            assert_eq!(ResourceType::from_code(code).code(), code);
        }
        for code in 0..=14 {
            assert_eq!(AclOperation::from_code(code).code(), code);
        }
        assert_eq!(PatternType::from_code(4), PatternType::Prefixed);
        assert_eq!(PermissionType::from_code(3), PermissionType::Allow);
        assert_eq!(ResourceType::from_code(42), ResourceType::Unknown);
        assert_eq!(
            AclOperation::parse("describe_configs"),
            Some(AclOperation::DescribeConfigs)
        );
    }

    #[test]
    fn no_acl_found_follows_the_default() {
        let strict = AuthorizerConfig::default();
        let open = AuthorizerConfig {
            allow_everyone_if_no_acl_found: true,
            ..AuthorizerConfig::default()
        };
        assert!(!can(&strict, &[], &alice(), AclOperation::Read, "t"));
        assert!(can(&open, &[], &alice(), AclOperation::Read, "t"));
        // An ACL on the resource for someone else: the default no longer applies.
        let other = [topic_allow(
            "t",
            PatternType::Literal,
            "User:bob",
            AclOperation::Read,
        )];
        assert!(!can(&open, &other, &alice(), AclOperation::Read, "t"));
        // ... but only on that resource.
        assert!(can(&open, &other, &alice(), AclOperation::Read, "u"));
    }

    #[test]
    fn allow_matches_principal_wildcard_and_host() {
        let c = AuthorizerConfig::default();
        let acls = [topic_allow(
            "t",
            PatternType::Literal,
            "User:alice",
            AclOperation::Write,
        )];
        assert!(can(&c, &acls, &alice(), AclOperation::Write, "t"));
        assert!(!can(&c, &acls, &alice(), AclOperation::Read, "t"));
        assert!(!can(
            &c,
            &acls,
            &Principal::Anonymous,
            AclOperation::Write,
            "t"
        ));
        let everyone = [topic_allow(
            "t",
            PatternType::Literal,
            "User:*",
            AclOperation::Write,
        )];
        assert!(can(
            &c,
            &everyone,
            &Principal::Anonymous,
            AclOperation::Write,
            "t"
        ));
        let elsewhere = [acl(
            ResourceType::Topic,
            "t",
            PatternType::Literal,
            "User:alice",
            "10.0.0.1",
            AclOperation::Write,
            PermissionType::Allow,
        )];
        assert!(!can(&c, &elsewhere, &alice(), AclOperation::Write, "t"));
        let here = [AclBinding {
            host: "127.0.0.1".into(),
            ..elsewhere[0].clone()
        }];
        assert!(can(&c, &here, &alice(), AclOperation::Write, "t"));
    }

    #[test]
    fn resource_patterns() {
        let c = AuthorizerConfig::default();
        let acls = [
            topic_allow(
                "orders-",
                PatternType::Prefixed,
                "User:alice",
                AclOperation::Read,
            ),
            topic_allow("*", PatternType::Literal, "User:alice", AclOperation::Write),
        ];
        assert!(can(&c, &acls, &alice(), AclOperation::Read, "orders-eu"));
        assert!(!can(&c, &acls, &alice(), AclOperation::Read, "order"));
        assert!(can(&c, &acls, &alice(), AclOperation::Write, "anything"));
        // A LITERAL "orders-" is not a prefix.
        let literal = [topic_allow(
            "orders-",
            PatternType::Literal,
            "User:alice",
            AclOperation::Read,
        )];
        assert!(!can(
            &c,
            &literal,
            &alice(),
            AclOperation::Read,
            "orders-eu"
        ));
        // Other resource types do not apply.
        let group = [acl(
            ResourceType::Group,
            "t",
            PatternType::Literal,
            "User:alice",
            "*",
            AclOperation::Read,
            PermissionType::Allow,
        )];
        assert!(!can(&c, &group, &alice(), AclOperation::Read, "t"));
    }

    #[test]
    fn deny_beats_allow() {
        let c = AuthorizerConfig::default();
        let acls = [
            topic_allow("*", PatternType::Literal, "User:*", AclOperation::All),
            topic_deny(
                "secret",
                PatternType::Prefixed,
                "User:alice",
                AclOperation::Read,
            ),
        ];
        assert!(!can(&c, &acls, &alice(), AclOperation::Read, "secret-1"));
        assert!(can(&c, &acls, &alice(), AclOperation::Write, "secret-1"));
        assert!(can(&c, &acls, &alice(), AclOperation::Read, "public"));
        // A DENY READ does not deny DESCRIBE (implication is for ALLOW only).
        assert!(can(&c, &acls, &alice(), AclOperation::Describe, "secret-1"));
        // A DENY ALL denies everything.
        let all = [
            topic_allow("t", PatternType::Literal, "User:alice", AclOperation::Read),
            topic_deny("t", PatternType::Literal, "User:*", AclOperation::All),
        ];
        assert!(!can(&c, &all, &alice(), AclOperation::Read, "t"));
        assert!(!can(&c, &all, &alice(), AclOperation::Describe, "t"));
    }

    #[test]
    fn implied_operations() {
        let c = AuthorizerConfig::default();
        for op in [
            AclOperation::Read,
            AclOperation::Write,
            AclOperation::Delete,
            AclOperation::Alter,
        ] {
            let acls = [topic_allow("t", PatternType::Literal, "User:alice", op)];
            assert!(
                can(&c, &acls, &alice(), AclOperation::Describe, "t"),
                "{op:?}"
            );
            assert!(!can(
                &c,
                &acls,
                &alice(),
                AclOperation::DescribeConfigs,
                "t"
            ));
        }
        let create = [topic_allow(
            "t",
            PatternType::Literal,
            "User:alice",
            AclOperation::Create,
        )];
        assert!(!can(&c, &create, &alice(), AclOperation::Describe, "t"));
        let alter_configs = [topic_allow(
            "t",
            PatternType::Literal,
            "User:alice",
            AclOperation::AlterConfigs,
        )];
        assert!(can(
            &c,
            &alter_configs,
            &alice(),
            AclOperation::DescribeConfigs,
            "t"
        ));
        assert!(!can(
            &c,
            &alter_configs,
            &alice(),
            AclOperation::Describe,
            "t"
        ));
        let all = [topic_allow(
            "t",
            PatternType::Literal,
            "User:alice",
            AclOperation::All,
        )];
        for op in supported_operations(ResourceType::Topic) {
            assert!(can(&c, &all, &alice(), *op, "t"));
        }
    }

    #[test]
    fn super_users_and_nodes_pass_denials() {
        let c = AuthorizerConfig {
            super_users: AuthorizerConfig::parse_super_users("User:admin; User:alice ;"),
            allow_everyone_if_no_acl_found: false,
        };
        assert_eq!(c.super_users, vec!["User:admin", "User:alice"]);
        let acls = [topic_deny(
            "t",
            PatternType::Literal,
            "User:*",
            AclOperation::All,
        )];
        assert!(can(&c, &acls, &alice(), AclOperation::Write, "t"));
        assert!(can(
            &c,
            &acls,
            &Principal::Node(2),
            AclOperation::Write,
            "t"
        ));
        assert!(!can(
            &c,
            &acls,
            &Principal::User("bob".into()),
            AclOperation::Write,
            "t"
        ));
    }

    #[test]
    fn authorize_by_resource_type_as_kafka() {
        let c = AuthorizerConfig::default();
        let who_alice = alice();
        let who = Requester {
            principal: &who_alice,
            host: LOCAL,
        };
        let check = |acls: &[AclBinding]| {
            authorize_by_resource_type(&c, acls, &who, AclOperation::Write, ResourceType::Topic)
        };
        assert!(!check(&[]));
        assert!(check(&[topic_allow(
            "t",
            PatternType::Literal,
            "User:alice",
            AclOperation::Write
        )]));
        assert!(!check(&[topic_allow(
            "t",
            PatternType::Literal,
            "User:alice",
            AclOperation::Read
        )]));
        assert!(!check(&[
            topic_allow("t", PatternType::Literal, "User:alice", AclOperation::Write),
            topic_deny("t", PatternType::Literal, "User:alice", AclOperation::Write),
        ]));
        assert!(!check(&[
            topic_allow(
                "team-a",
                PatternType::Prefixed,
                "User:alice",
                AclOperation::Write
            ),
            topic_deny("team", PatternType::Prefixed, "User:*", AclOperation::Write),
        ]));
        assert!(check(&[
            topic_allow(
                "team-a",
                PatternType::Prefixed,
                "User:alice",
                AclOperation::Write
            ),
            topic_deny(
                "team-a-x",
                PatternType::Prefixed,
                "User:*",
                AclOperation::Write
            ),
        ]));
        assert!(!check(&[
            topic_allow("x", PatternType::Literal, "User:alice", AclOperation::All),
            topic_deny("*", PatternType::Literal, "User:alice", AclOperation::All),
        ]));
    }

    #[test]
    fn authorized_operations_bitfields() {
        let open = AuthorizerConfig {
            allow_everyone_if_no_acl_found: true,
            ..AuthorizerConfig::default()
        };
        let p = alice();
        let who = Requester {
            principal: &p,
            host: LOCAL,
        };
        let none: [AclBinding; 0] = [];
        // Kafka's "everything" bitfields.
        assert_eq!(
            authorized_operations(&open, &none, &who, ResourceType::Topic, "t"),
            0b1101_1111_1000
        );
        assert_eq!(
            authorized_operations(&open, &none, &who, ResourceType::Cluster, CLUSTER_NAME),
            0b1_1111_1010_0000
        );
        assert_eq!(
            authorized_operations(&open, &none, &who, ResourceType::Group, "g"),
            0b1_0100_1000
        );
        let read = [topic_allow(
            "t",
            PatternType::Literal,
            "User:alice",
            AclOperation::Read,
        )];
        assert_eq!(
            authorized_operations(&open, &read, &who, ResourceType::Topic, "t"),
            (1 << 3) | (1 << 8)
        );
    }

    #[test]
    fn validation_as_kafka() {
        let ok = topic_allow("t", PatternType::Literal, "User:alice", AclOperation::Read);
        assert_eq!(validate_new(&ok), Ok(()));
        let bad = |f: &dyn Fn(&mut AclBinding)| {
            let mut b = ok.clone();
            f(&mut b);
            validate_new(&b).is_err()
        };
        assert!(bad(&|b| b.resource_type = ResourceType::Any));
        assert!(bad(&|b| b.resource_type = ResourceType::Unknown));
        assert!(bad(&|b| b.pattern_type = PatternType::Match));
        assert!(bad(&|b| b.pattern_type = PatternType::Any));
        assert!(bad(&|b| b.operation = AclOperation::Any));
        assert!(bad(&|b| b.permission_type = PermissionType::Any));
        assert!(bad(&|b| b.resource_name = String::new()));
        assert!(bad(&|b| b.principal = "alice".into()));
        assert!(bad(&|b| {
            b.resource_type = ResourceType::Cluster;
            b.resource_name = "other".into();
        }));
        assert!(!bad(&|b| {
            b.resource_type = ResourceType::Cluster;
            b.resource_name = CLUSTER_NAME.into();
        }));
        assert!(!bad(&|b| b.pattern_type = PatternType::Prefixed));
    }

    #[test]
    fn filters_as_kafka() {
        let lit = topic_allow(
            "orders",
            PatternType::Literal,
            "User:alice",
            AclOperation::Read,
        );
        let wild = topic_allow("*", PatternType::Literal, "User:bob", AclOperation::Write);
        let pre = topic_deny(
            "ord",
            PatternType::Prefixed,
            "User:alice",
            AclOperation::Read,
        );
        let all = [lit.clone(), wild.clone(), pre.clone()];
        let pick = |f: &AclBindingFilter| -> Vec<AclBinding> {
            all.iter().filter(|b| f.matches(b)).cloned().collect()
        };
        assert_eq!(pick(&AclBindingFilter::any()).len(), 3);
        let named = |pt: PatternType, name: &str| AclBindingFilter {
            resource_type: ResourceType::Topic,
            resource_name: Some(name.into()),
            pattern_type: pt,
            ..AclBindingFilter::any()
        };
        // ANY: exact name, any pattern type.
        assert_eq!(pick(&named(PatternType::Any, "orders")), vec![lit.clone()]);
        assert_eq!(pick(&named(PatternType::Any, "ord")), vec![pre.clone()]);
        // MATCH: everything that applies to a resource called "orders".
        assert_eq!(
            pick(&named(PatternType::Match, "orders")),
            vec![lit.clone(), wild.clone(), pre.clone()]
        );
        // LITERAL/PREFIXED: that pattern type, exact name.
        assert_eq!(
            pick(&named(PatternType::Literal, "orders")),
            vec![lit.clone()]
        );
        assert!(pick(&named(PatternType::Prefixed, "orders")).is_empty());
        let by_entry = AclBindingFilter {
            principal: Some("User:alice".into()),
            permission_type: PermissionType::Deny,
            ..AclBindingFilter::any()
        };
        assert_eq!(pick(&by_entry), vec![pre.clone()]);
        let by_op = AclBindingFilter {
            operation: AclOperation::Write,
            host: Some("*".into()),
            ..AclBindingFilter::any()
        };
        assert_eq!(pick(&by_op), vec![wild]);
        assert!(AclBindingFilter {
            operation: AclOperation::Unknown,
            ..AclBindingFilter::any()
        }
        .is_unknown());
    }
}
