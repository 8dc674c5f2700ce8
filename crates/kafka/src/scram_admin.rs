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

/// Without ALTER on the cluster: every named user fails with CLUSTER_AUTHORIZATION_FAILED,
/// as Kafka's ControllerApis answers.
pub fn refuse_alter(req: &AlterUserScramCredentialsRequest) -> AlterUserScramCredentialsResponse {
    let mut users: Vec<String> = req
        .deletions
        .iter()
        .map(|d| d.name.to_string())
        .chain(req.upsertions.iter().map(|u| u.name.to_string()))
        .collect();
    users.sort();
    users.dedup();
    AlterUserScramCredentialsResponse::default().with_results(
        users
            .into_iter()
            .map(|u| {
                AlterUserScramCredentialsResult::default()
                    .with_user(s(u))
                    .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            })
            .collect(),
    )
}

/// Without DESCRIBE on the cluster: a top-level CLUSTER_AUTHORIZATION_FAILED.
pub fn refuse_describe() -> DescribeUserScramCredentialsResponse {
    DescribeUserScramCredentialsResponse::default()
        .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
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

#[cfg(test)]
mod tests {
    use super::*;
    use arctern_kafka_wire::kafka_protocol::messages::alter_user_scram_credentials_request::{
        ScramCredentialDeletion, ScramCredentialUpsertion,
    };
    use arctern_kafka_wire::kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
    use arctern_metadata::UserRecord;

    fn state() -> ClusterState {
        let mut st = ClusterState::default();
        st.users
            .insert("alice".into(), UserRecord::with_password("pw", vec![]));
        st
    }

    fn upsert(name: &str, mechanism: i8, iterations: i32) -> ScramCredentialUpsertion {
        ScramCredentialUpsertion::default()
            .with_name(s(name))
            .with_mechanism(mechanism)
            .with_iterations(iterations)
            .with_salt(bytes::Bytes::from_static(b"salt"))
            .with_salted_password(bytes::Bytes::from(
                ScramMechanism::Sha256.salted_password(b"pw", b"salt", 4096),
            ))
    }

    fn delete(name: &str, mechanism: i8) -> ScramCredentialDeletion {
        ScramCredentialDeletion::default()
            .with_name(s(name))
            .with_mechanism(mechanism)
    }

    #[test]
    fn alter_validation_matches_kafka() {
        let req = AlterUserScramCredentialsRequest::default()
            .with_deletions(vec![
                delete("alice", 1),
                delete("nobody", 2),
                delete("", 1),
                delete("bob", 9),
            ])
            .with_upsertions(vec![
                upsert("alice", 2, 4096),
                upsert("carol", 1, 4095),
                upsert("dave", 1, 16385),
                upsert("erin", 1, 8192),
                upsert("erin", 2, 8192),
                upsert("frank", 1, 4096),
            ]);
        let (changes, errors) = plan(&state(), &req);
        let code = |n: &str| errors.get(n).map(|e| e.0);
        assert_eq!(code("alice"), Some(92)); // deleted and upserted in one request
        assert_eq!(code("nobody"), Some(91));
        assert_eq!(code(""), Some(93));
        assert_eq!(code("bob"), Some(33));
        assert_eq!(code("carol"), Some(93));
        assert_eq!(code("dave"), Some(93));
        assert_eq!(code("erin"), Some(92));
        assert_eq!(changes.keys().collect::<Vec<_>>(), vec!["frank"]);
        // StoredKey/ServerKey are derived as from the password itself.
        let cred = &changes["frank"].upsert["SCRAM-SHA-256"];
        assert_eq!(*cred, ScramMechanism::Sha256.derive("pw", b"salt", 4096));
    }

    #[test]
    fn describe_matches_kafka() {
        let st = state();
        let all = describe(&st, DescribeUserScramCredentialsRequest::default());
        assert_eq!(all.results.len(), 1);
        assert_eq!(all.results[0].credential_infos.len(), 2);
        let req = DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
            UserName::default().with_name(s("alice")),
            UserName::default().with_name(s("zed")),
            UserName::default().with_name(s("zed")),
            UserName::default().with_name(s("nobody")),
        ]));
        let r = describe(&st, req);
        let code = |n: &str| {
            r.results
                .iter()
                .find(|x| x.user.as_str() == n)
                .map(|x| x.error_code)
        };
        assert_eq!(code("alice"), Some(0));
        assert_eq!(code("zed"), Some(92));
        assert_eq!(code("nobody"), Some(91));
    }
}
