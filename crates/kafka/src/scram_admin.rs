//! KIP-554: AlterUserScramCredentials and DescribeUserScramCredentials, with the
//! validation and error codes of Kafka's `ScramControlManager` and `ScramImage`.
//!
//! The client sends salt, iterations and SaltedPassword; the server keeps only
//! StoredKey = H(HMAC(SaltedPassword, "Client Key")) and ServerKey, like Kafka.

use std::collections::{BTreeMap, HashMap};

use arctern_kafka_wire::kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use arctern_kafka_wire::kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use arctern_kafka_wire::kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use arctern_kafka_wire::kafka_protocol::protocol::StrBytes;
use arctern_kafka_wire::ResponseError;
use arctern_metadata::{ClusterState, CommandResult, MetadataCommand, MetadataNode};
use arctern_security::scram::{MAX_ITERATIONS, MIN_ITERATIONS};
use arctern_security::{ScramCredential, ScramMechanism};

/// The metadata quorum member, where user changes are proposed.
#[derive(Clone)]
pub struct MetadataHandle(pub std::sync::Arc<MetadataNode>);

impl std::fmt::Debug for MetadataHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetadataHandle(..)")
    }
}

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

struct ApiError(i16, String);

impl ApiError {
    fn new(e: ResponseError, message: &str) -> ApiError {
        ApiError(e.code(), message.to_string())
    }
}

const TWICE: &str = "A user credential cannot be altered twice in the same request";

fn validate_name_and_mechanism(name: &str, mechanism: i8) -> Result<ScramMechanism, ApiError> {
    if name.is_empty() {
        return Err(ApiError::new(
            ResponseError::UnacceptableCredential,
            "Username must not be empty",
        ));
    }
    ScramMechanism::from_kafka_code(mechanism).ok_or_else(|| {
        ApiError::new(
            ResponseError::UnsupportedSaslMechanism,
            "Unknown SCRAM mechanism",
        )
    })
}

/// One user's accepted change.
#[derive(Default)]
struct Change {
    upsert: BTreeMap<String, ScramCredential>,
    delete: Vec<String>,
}

/// Validates the request against `state` the way Kafka's controller does; returns the
/// per-user commands to propose and the per-user errors.
fn plan(
    state: &ClusterState,
    req: &AlterUserScramCredentialsRequest,
) -> (BTreeMap<String, Change>, HashMap<String, ApiError>) {
    let mut changes: BTreeMap<String, Change> = BTreeMap::new();
    let mut errors: HashMap<String, ApiError> = HashMap::new();
    for d in &req.deletions {
        let name = d.name.to_string();
        if errors.contains_key(&name) {
            continue;
        }
        if changes.remove(&name).is_some() {
            errors.insert(name, ApiError::new(ResponseError::DuplicateResource, TWICE));
            continue;
        }
        match validate_name_and_mechanism(&name, d.mechanism) {
            Err(e) => {
                errors.insert(name, e);
            }
            Ok(m) => {
                let exists = state
                    .users
                    .get(&name)
                    .is_some_and(|u| u.scram.contains_key(m.name()));
                if !exists {
                    errors.insert(
                        name,
                        ApiError::new(
                            ResponseError::ResourceNotFound,
                            "Attempt to delete a user credential that does not exist",
                        ),
                    );
                } else {
                    changes
                        .entry(name)
                        .or_default()
                        .delete
                        .push(m.name().into());
                }
            }
        }
    }
    for u in &req.upsertions {
        let name = u.name.to_string();
        if errors.contains_key(&name) {
            continue;
        }
        if changes.remove(&name).is_some() {
            errors.insert(name, ApiError::new(ResponseError::DuplicateResource, TWICE));
            continue;
        }
        let m = match validate_name_and_mechanism(&name, u.mechanism) {
            Ok(m) => m,
            Err(e) => {
                errors.insert(name, e);
                continue;
            }
        };
        let iterations = u32::try_from(u.iterations).unwrap_or(0);
        if iterations < MIN_ITERATIONS {
            errors.insert(
                name,
                ApiError::new(ResponseError::UnacceptableCredential, "Too few iterations"),
            );
            continue;
        }
        if iterations > MAX_ITERATIONS {
            errors.insert(
                name,
                ApiError::new(ResponseError::UnacceptableCredential, "Too many iterations"),
            );
            continue;
        }
        let salted = &u.salted_password;
        if salted.is_empty() || salted.len() > 1024 || u.salt.is_empty() || u.salt.len() > 1024 {
            errors.insert(
                name,
                ApiError::new(
                    ResponseError::UnacceptableCredential,
                    "Salt and salted password must be 1 to 1024 bytes",
                ),
            );
            continue;
        }
        let client_key = m.hmac(salted, b"Client Key");
        let credential = ScramCredential {
            salt: u.salt.to_vec(),
            iterations,
            stored_key: m.hash(&client_key),
            server_key: m.hmac(salted, b"Server Key"),
        };
        changes
            .entry(name)
            .or_default()
            .upsert
            .insert(m.name().into(), credential);
    }
    (changes, errors)
}

pub async fn alter(
    metadata: &MetadataNode,
    state: &ClusterState,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let (changes, errors) = plan(state, &req);
    let mut results = Vec::new();
    for (name, change) in changes {
        let cmd = MetadataCommand::AlterUserScram {
            name: name.clone(),
            upsert: change.upsert,
            delete: change.delete,
        };
        let (code, message) = match metadata.propose(cmd).await {
            Ok(CommandResult::Ok) => (0, None),
            Ok(other) => (
                ResponseError::UnknownServerError.code(),
                Some(format!("{other:?}")),
            ),
            Err(e) => {
                tracing::warn!(user = %name, error = %e, "AlterUserScramCredentials: proposal failed");
                (
                    ResponseError::RequestTimedOut.code(),
                    Some(format!("metadata quorum: {e}")),
                )
            }
        };
        results.push(
            AlterUserScramCredentialsResult::default()
                .with_user(s(name))
                .with_error_code(code)
                .with_error_message(message.map(s)),
        );
    }
    for (name, e) in errors {
        results.push(
            AlterUserScramCredentialsResult::default()
                .with_user(s(name))
                .with_error_code(e.0)
                .with_error_message(Some(s(e.1))),
        );
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}

pub fn describe(
    state: &ClusterState,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    // name -> named more than once
    let mut wanted: BTreeMap<String, bool> = BTreeMap::new();
    match req.users {
        Some(users) if !users.is_empty() => {
            for u in users {
                // First mention: not a duplicate; any later one makes it one.
                wanted
                    .entry(u.name.to_string())
                    .and_modify(|dup| *dup = true)
                    .or_insert(false);
            }
        }
        _ => {
            for (name, user) in &state.users {
                if !user.scram.is_empty() {
                    wanted.insert(name.clone(), false);
                }
            }
        }
    }
    let results = wanted
        .into_iter()
        .map(|(name, duplicate)| {
            let r = DescribeUserScramCredentialsResult::default().with_user(s(name.clone()));
            if duplicate {
                return r
                    .with_error_code(ResponseError::DuplicateResource.code())
                    .with_error_message(Some(s(format!(
                    "Cannot describe SCRAM credentials for the same user twice in a single request: {name}"
                ))));
            }
            let infos: Vec<CredentialInfo> = state
                .users
                .get(&name)
                .map(|u| {
                    u.scram
                        .iter()
                        .filter_map(|(m, c)| {
                            ScramMechanism::parse(m).map(|m| {
                                CredentialInfo::default()
                                    .with_mechanism(m.kafka_code())
                                    .with_iterations(i32::try_from(c.iterations).unwrap_or(i32::MAX))
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            if infos.is_empty() {
                r.with_error_code(ResponseError::ResourceNotFound.code())
                    .with_error_message(Some(s(format!(
                        "Attempt to describe a user credential that does not exist: {name}"
                    ))))
            } else {
                r.with_credential_infos(infos)
            }
        })
        .collect();
    DescribeUserScramCredentialsResponse::default().with_results(results)
}
