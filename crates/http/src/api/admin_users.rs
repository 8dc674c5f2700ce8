//! Users, vhosts and permissions (RabbitMQ 3.10's `/api/users`, `/api/vhosts`,
//! `/api/permissions`). Writes are metadata commands committed through Raft, as the
//! `arctern users|vhosts|permissions` CLI proposes them.

use arctern_metadata::{MetadataCommand, Permission, UserRecord, VhostRecord};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use base64::Engine;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::admin::{local_node_name, propose, visible_vhosts};
use super::error::ErrorBody;
use super::{ApiError, Caller};
use crate::auth::Need;
use crate::HttpContext;

pub fn routes() -> OpenApiRouter<HttpContext> {
    OpenApiRouter::new()
        .routes(routes!(list_users))
        .routes(routes!(users_without_permissions))
        .routes(routes!(bulk_delete_users))
        .routes(routes!(get_user, put_user, delete_user))
        .routes(routes!(user_permissions))
        .routes(routes!(list_vhosts))
        .routes(routes!(get_vhost, put_vhost, delete_vhost))
        .routes(routes!(vhost_permissions))
        .routes(routes!(list_permissions))
        .routes(routes!(get_permission, put_permission, delete_permission))
}

/// The only password hash Arctern keeps (RabbitMQ's default since 3.6).
pub const SHA256: &str = "rabbit_password_hashing_sha256";

/// A user as `GET /api/users` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    pub name: String,
    /// base64(salt ++ sha256(salt ++ password)); empty without a password.
    pub password_hash: String,
    pub hashing_algorithm: String,
    pub tags: Vec<String>,
    #[schema(value_type = Object)]
    pub limits: Value,
}

fn user_view(name: &str, u: &UserRecord) -> User {
    User {
        name: name.to_string(),
        password_hash: u.password_hash.clone().unwrap_or_default(),
        hashing_algorithm: SHA256.into(),
        tags: u.tags.clone(),
        limits: json!({}),
    }
}

/// Body of `PUT /api/users/{name}`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // describes the body; parsed by `parse_user_body`
pub struct UserBody {
    /// The password (Arctern hashes it and derives SCRAM credentials).
    pub password: Option<String>,
    /// A `rabbit_password_hashing_sha256` hash instead of a password ("" for none).
    pub password_hash: Option<String>,
    /// Only `rabbit_password_hashing_sha256`.
    pub hashing_algorithm: Option<String>,
    /// Comma-separated string or list.
    #[schema(value_type = Object)]
    pub tags: Value,
}

/// One permission.
#[derive(Debug, Serialize, ToSchema)]
pub struct PermissionView {
    pub user: String,
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

/// Body of `PUT /api/permissions/{vhost}/{user}`: all three keys are mandatory.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // describes the body; parsed by `parse_permission_body`
pub struct PermissionBody {
    pub configure: String,
    pub write: String,
    pub read: String,
}

/// Body of `POST /api/users/bulk-delete`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct BulkDelete {
    pub users: Vec<String>,
}

/// A vhost as `GET /api/vhosts` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct VhostView {
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub default_queue_type: String,
    pub tracing: bool,
    /// `{node: "running"}`.
    #[schema(value_type = Object)]
    pub cluster_state: Value,
    pub messages: u64,
    pub messages_ready: u64,
    pub messages_unacknowledged: u64,
}

/// Body of `PUT /api/vhosts/{name}` (optional).
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // describes the body; parsed by `parse_vhost_body`
pub struct VhostBody {
    pub description: Option<String>,
    /// Comma-separated string or list.
    #[schema(value_type = Object)]
    pub tags: Option<Value>,
    /// Accepted and ignored (Arctern has no firehose tracer).
    pub tracing: Option<bool>,
}

/// RabbitMQ's tags: a comma-separated string or a list of strings.
pub fn parse_tags(v: &Value) -> Result<Vec<String>, String> {
    let raw: Vec<String> = match v {
        Value::Null => Vec::new(),
        Value::String(s) => s.split(',').map(str::to_string).collect(),
        Value::Array(a) => a
            .iter()
            .map(|t| t.as_str().map(str::to_string).ok_or("tags must be strings"))
            .collect::<Result<_, _>>()?,
        _ => return Err("tags must be a comma-separated string or a list".into()),
    };
    let mut out: Vec<String> = Vec::new();
    for t in raw {
        let t = t.trim();
        if !t.is_empty() && !out.iter().any(|x| x == t) {
            out.push(t.to_string());
        }
    }
    Ok(out)
}

/// A JSON object body (an empty body reads as `{}`), whatever its content type: rabbitmqadmin
/// and curl users do not always send one.
pub fn json_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(ApiError::BadRequest(
            "the body must be a JSON object".into(),
        )),
        Err(e) => {
            tracing::debug!(error = %e, "management API: unreadable JSON body");
            Err(ApiError::BadRequest("failed_to_parse_json".into()))
        }
    }
}

/// What a user PUT asks for.
#[derive(Debug, PartialEq)]
pub enum Credential {
    /// Neither `password` nor `password_hash`: no password (RabbitMQ 3.10 clears an
    /// existing one too; the user may still log in by other means, e.g. a certificate).
    None,
    Password(String),
    /// A validated `rabbit_password_hashing_sha256` hash; `None` clears the password.
    Hash(Option<String>),
}

/// Parses `PUT /api/users/{name}`: the credential and the tags.
pub fn parse_user_body(
    o: &serde_json::Map<String, Value>,
) -> Result<(Credential, Vec<String>), String> {
    let tags = parse_tags(o.get("tags").ok_or("tags_not_present")?)?;
    let text = |k: &str| o.get(k).and_then(Value::as_str);
    let cred = if let Some(pw) = text("password") {
        Credential::Password(pw.to_string())
    } else if let Some(hash) = text("password_hash") {
        let algorithm = text("hashing_algorithm").unwrap_or(SHA256);
        if algorithm != SHA256 {
            return Err(format!(
                "hashing_algorithm {algorithm} is not supported (only {SHA256})"
            ));
        }
        if hash.is_empty() {
            Credential::Hash(None)
        } else {
            let ok = base64::engine::general_purpose::STANDARD
                .decode(hash.trim())
                .is_ok_and(|raw| raw.len() == 36);
            if !ok {
                return Err(format!("password_hash is not a {SHA256} hash"));
            }
            Credential::Hash(Some(hash.trim().to_string()))
        }
    } else {
        Credential::None
    };
    Ok((cred, tags))
}

/// Parses `PUT /api/permissions/{vhost}/{user}`.
pub fn parse_permission_body(o: &serde_json::Map<String, Value>) -> Result<Permission, String> {
    let get = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
    match (get("configure"), get("write"), get("read")) {
        (Some(configure), Some(write), Some(read)) => Ok(Permission {
            configure,
            write,
            read,
        }),
        _ => {
            // RabbitMQ's reason lists every missing key.
            let missing: Vec<String> = ["configure", "write", "read"]
                .iter()
                .filter(|k| get(k).is_none())
                .map(|k| format!("{{key_missing,{k}}}"))
                .collect();
            Err(format!("[{}]", missing.join(",")))
        }
    }
}

fn created(existed: bool) -> StatusCode {
    if existed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CREATED
    }
}

/// Every user (administrator).
#[utoipa::path(get, path = "/api/users", tag = "users",
    responses((status = 200, body = Vec<User>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_users(
    State(ctx): State<HttpContext>,
    caller: Caller,
) -> Result<Json<Vec<User>>, ApiError> {
    caller.require(Need::Administrator)?;
    let cluster = ctx.broker.cluster();
    Ok(Json(
        cluster.users.iter().map(|(n, u)| user_view(n, u)).collect(),
    ))
}

/// Users with no permissions in any vhost (administrator).
#[utoipa::path(get, path = "/api/users/without-permissions", tag = "users",
    responses((status = 200, body = Vec<User>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn users_without_permissions(
    State(ctx): State<HttpContext>,
    caller: Caller,
) -> Result<Json<Vec<User>>, ApiError> {
    caller.require(Need::Administrator)?;
    let cluster = ctx.broker.cluster();
    Ok(Json(
        cluster
            .users
            .iter()
            .filter(|(n, _)| !cluster.permissions.values().any(|p| p.contains_key(*n)))
            .map(|(n, u)| user_view(n, u))
            .collect(),
    ))
}

/// Deletes the listed users in order; an unknown one stops it with a 400 (administrator).
#[utoipa::path(post, path = "/api/users/bulk-delete", tag = "users",
    request_body = BulkDelete,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn bulk_delete_users(
    State(ctx): State<HttpContext>,
    caller: Caller,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    caller.require(Need::Administrator)?;
    let o = json_object(&body)?;
    let names: Vec<String> = match o.get("users") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => return Err(ApiError::BadRequest("[{key_missing,users}]".into())),
    };
    for name in names {
        match propose(&ctx, MetadataCommand::DeleteUser { name: name.clone() }).await {
            Ok(()) => {}
            Err(ApiError::NotFound) => {
                return Err(ApiError::BadRequest(format!("no_such_user: {name}")))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// One user (administrator).
#[utoipa::path(get, path = "/api/users/{name}", tag = "users",
    params(("name" = String, Path)),
    responses((status = 200, body = User), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn get_user(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<User>, ApiError> {
    caller.require(Need::Administrator)?;
    let cluster = ctx.broker.cluster();
    let u = cluster.users.get(&name).ok_or(ApiError::NotFound)?;
    Ok(Json(user_view(&name, u)))
}

/// Creates (201) or updates (204) a user (administrator). `tags` is mandatory; without
/// `password` or `password_hash` the user has no password (as RabbitMQ 3.10).
#[utoipa::path(put, path = "/api/users/{name}", tag = "users",
    params(("name" = String, Path)),
    request_body = UserBody,
    responses((status = 201, description = "created"), (status = 204, description = "updated"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
async fn put_user(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    caller.require(Need::Administrator)?;
    if name.is_empty() {
        return Err(ApiError::BadRequest("a user name must not be empty".into()));
    }
    let (cred, tags) = parse_user_body(&json_object(&body)?).map_err(ApiError::BadRequest)?;
    let existed = ctx.broker.cluster().users.contains_key(&name);
    let user = match cred {
        // Hashing (with SCRAM derivation) is CPU work: off the async workers.
        Credential::Password(pw) => {
            let tags = tags.clone();
            tokio::task::spawn_blocking(move || UserRecord::with_password(&pw, tags))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
        }
        Credential::Hash(password_hash) => UserRecord {
            password_hash,
            scram: Default::default(),
            tags,
        },
        Credential::None => UserRecord {
            password_hash: None,
            scram: Default::default(),
            tags,
        },
    };
    propose(&ctx, MetadataCommand::PutUser { name, user }).await?;
    Ok(created(existed))
}

/// Deletes a user and its permissions (administrator).
#[utoipa::path(delete, path = "/api/users/{name}", tag = "users",
    params(("name" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn delete_user(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Need::Administrator)?;
    propose(&ctx, MetadataCommand::DeleteUser { name }).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn permission_views(ctx: &HttpContext, keep: impl Fn(&str, &str) -> bool) -> Vec<PermissionView> {
    let cluster = ctx.broker.cluster();
    let mut out = Vec::new();
    for (vhost, users) in &cluster.permissions {
        for (user, p) in users {
            if keep(vhost, user) {
                out.push(PermissionView {
                    user: user.clone(),
                    vhost: vhost.clone(),
                    configure: p.configure.clone(),
                    write: p.write.clone(),
                    read: p.read.clone(),
                });
            }
        }
    }
    out
}

/// A user's permissions in every vhost (administrator).
#[utoipa::path(get, path = "/api/users/{name}/permissions", tag = "users",
    params(("name" = String, Path)),
    responses((status = 200, body = Vec<PermissionView>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn user_permissions(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Vec<PermissionView>>, ApiError> {
    caller.require(Need::Administrator)?;
    if !ctx.broker.cluster().users.contains_key(&name) {
        return Err(ApiError::NotFound);
    }
    Ok(Json(permission_views(&ctx, |_, u| u == name)))
}

fn vhost_view(ctx: &HttpContext, name: &str, r: &VhostRecord) -> VhostView {
    let (mut ready, mut unacked) = (0u64, 0u64);
    for q in ctx.vhost.queue_stats() {
        if q.vhost == name {
            ready += u64::from(q.ready);
            unacked += u64::from(q.unacked);
        }
    }
    VhostView {
        name: name.to_string(),
        description: r.description.clone(),
        tags: r.tags.clone(),
        metadata: json!({"description": r.description, "tags": r.tags}),
        // RabbitMQ 3.10's value for a vhost without one set.
        default_queue_type: "undefined".into(),
        tracing: false,
        cluster_state: json!({ local_node_name(ctx): "running" }),
        messages: ready + unacked,
        messages_ready: ready,
        messages_unacknowledged: unacked,
    }
}

/// The vhosts the caller may see (all for monitoring users and administrators, else those
/// it has permissions in).
#[utoipa::path(get, path = "/api/vhosts", tag = "vhosts",
    responses((status = 200, body = Vec<VhostView>), (status = 401, body = ErrorBody)))]
async fn list_vhosts(State(ctx): State<HttpContext>, caller: Caller) -> Json<Vec<VhostView>> {
    let visible = visible_vhosts(&ctx, &caller);
    let cluster = ctx.broker.cluster();
    Json(
        visible
            .iter()
            .filter_map(|n| cluster.vhosts.get(n).map(|r| vhost_view(&ctx, n, r)))
            .collect(),
    )
}

/// One vhost (404 also for a vhost the caller may not see).
#[utoipa::path(get, path = "/api/vhosts/{name}", tag = "vhosts",
    params(("name" = String, Path, description = "The vhost (\"/\" as %2F)")),
    responses((status = 200, body = VhostView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_vhost(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<VhostView>, ApiError> {
    if !visible_vhosts(&ctx, &caller).contains(&name) {
        return Err(ApiError::NotFound);
    }
    let cluster = ctx.broker.cluster();
    let r = cluster.vhosts.get(&name).ok_or(ApiError::NotFound)?;
    Ok(Json(vhost_view(&ctx, &name, r)))
}

/// Creates (201) or updates (204) a vhost (administrator); the body is optional. A new
/// vhost gives its creator full permissions in it, as RabbitMQ does.
#[utoipa::path(put, path = "/api/vhosts/{name}", tag = "vhosts",
    params(("name" = String, Path)),
    request_body = VhostBody,
    responses((status = 201, description = "created"), (status = 204, description = "updated"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
async fn put_vhost(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    caller.require(Need::Administrator)?;
    let o = json_object(&body)?;
    let old = ctx.broker.cluster().vhosts.get(&name).cloned();
    let existed = old.is_some();
    let mut record = old.unwrap_or_default();
    if let Some(d) = o.get("description") {
        record.description = d.as_str().unwrap_or_default().to_string();
    }
    if let Some(t) = o.get("tags") {
        record.tags = parse_tags(t).map_err(ApiError::BadRequest)?;
    }
    propose(
        &ctx,
        MetadataCommand::PutVhost {
            name: name.clone(),
            record,
        },
    )
    .await?;
    if !existed {
        // As RabbitMQ's management plugin: whoever creates a vhost may use it.
        propose(
            &ctx,
            MetadataCommand::SetPermissions {
                vhost: name,
                user: caller.name,
                permission: Permission::full(),
            },
        )
        .await?;
    }
    Ok(created(existed))
}

/// Deletes a vhost, its permissions and its objects (administrator). "/" stays (400).
#[utoipa::path(delete, path = "/api/vhosts/{name}", tag = "vhosts",
    params(("name" = String, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn delete_vhost(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Need::Administrator)?;
    propose(&ctx, MetadataCommand::DeleteVhost { name }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every permission in a vhost (administrator).
#[utoipa::path(get, path = "/api/vhosts/{name}/permissions", tag = "vhosts",
    params(("name" = String, Path)),
    responses((status = 200, body = Vec<PermissionView>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn vhost_permissions(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Vec<PermissionView>>, ApiError> {
    caller.require(Need::Administrator)?;
    if !ctx.broker.cluster().vhosts.contains_key(&name) {
        return Err(ApiError::NotFound);
    }
    Ok(Json(permission_views(&ctx, |v, _| v == name)))
}

/// Every permission (administrator).
#[utoipa::path(get, path = "/api/permissions", tag = "permissions",
    responses((status = 200, body = Vec<PermissionView>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
async fn list_permissions(
    State(ctx): State<HttpContext>,
    caller: Caller,
) -> Result<Json<Vec<PermissionView>>, ApiError> {
    caller.require(Need::Administrator)?;
    Ok(Json(permission_views(&ctx, |_, _| true)))
}

/// One user's permission in one vhost (administrator).
#[utoipa::path(get, path = "/api/permissions/{vhost}/{user}", tag = "permissions",
    params(("vhost" = String, Path), ("user" = String, Path)),
    responses((status = 200, body = PermissionView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_permission(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> Result<Json<PermissionView>, ApiError> {
    caller.require(Need::Administrator)?;
    permission_views(&ctx, |v, u| v == vhost && u == user)
        .pop()
        .map(Json)
        .ok_or(ApiError::NotFound)
}

/// Sets a user's permission in a vhost (administrator): 201 new, 204 replaced; 400 when the
/// user or vhost does not exist.
#[utoipa::path(put, path = "/api/permissions/{vhost}/{user}", tag = "permissions",
    params(("vhost" = String, Path), ("user" = String, Path)),
    request_body = PermissionBody,
    responses((status = 201, description = "created"), (status = 204, description = "updated"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
async fn put_permission(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    caller.require(Need::Administrator)?;
    let permission = parse_permission_body(&json_object(&body)?).map_err(ApiError::BadRequest)?;
    let existed = {
        let cluster = ctx.broker.cluster();
        if !cluster.vhosts.contains_key(&vhost) || !cluster.users.contains_key(&user) {
            return Err(ApiError::BadRequest("vhost_or_user_not_found".into()));
        }
        cluster
            .permissions
            .get(&vhost)
            .is_some_and(|p| p.contains_key(&user))
    };
    match propose(
        &ctx,
        MetadataCommand::SetPermissions {
            vhost,
            user,
            permission,
        },
    )
    .await
    {
        Err(ApiError::NotFound) => Err(ApiError::BadRequest("vhost_or_user_not_found".into())),
        other => other.map(|()| created(existed)),
    }
}

/// Removes a user's permission in a vhost (administrator).
#[utoipa::path(delete, path = "/api/permissions/{vhost}/{user}", tag = "permissions",
    params(("vhost" = String, Path), ("user" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn delete_permission(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require(Need::Administrator)?;
    let exists = ctx
        .broker
        .cluster()
        .permissions
        .get(&vhost)
        .is_some_and(|p| p.contains_key(&user));
    if !exists {
        return Err(ApiError::NotFound);
    }
    propose(&ctx, MetadataCommand::ClearPermissions { vhost, user }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> serde_json::Map<String, Value> {
        match v {
            Value::Object(o) => o,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn tags_come_as_a_string_or_a_list() {
        assert_eq!(
            parse_tags(&json!("administrator, monitoring,,")).unwrap(),
            vec!["administrator", "monitoring"]
        );
        assert_eq!(
            parse_tags(&json!(["management", "management"])).unwrap(),
            vec!["management"]
        );
        assert_eq!(parse_tags(&json!("")).unwrap(), Vec::<String>::new());
        assert!(parse_tags(&json!(3)).is_err());
        assert!(parse_tags(&json!([1])).is_err());
    }

    #[test]
    fn user_bodies() {
        let (c, t) =
            parse_user_body(&obj(json!({"password": "pw", "tags": "administrator"}))).unwrap();
        assert_eq!(c, Credential::Password("pw".into()));
        assert_eq!(t, vec!["administrator"]);
        let hash = arctern_security::password::hash_password("x");
        let (c, _) = parse_user_body(&obj(json!({"password_hash": hash, "tags": []}))).unwrap();
        assert_eq!(c, Credential::Hash(Some(hash.clone())));
        let (c, _) = parse_user_body(&obj(json!({"password_hash": "", "tags": ""}))).unwrap();
        assert_eq!(c, Credential::Hash(None));
        let (c, t) = parse_user_body(&obj(json!({"tags": ["a", "b"]}))).unwrap();
        assert_eq!((c, t), (Credential::None, vec!["a".into(), "b".into()]));
        assert!(parse_user_body(&obj(json!({"password": "pw"}))).is_err());
        assert!(parse_user_body(&obj(json!({"password_hash": "bm9wZQ==", "tags": ""}))).is_err());
        assert!(
            parse_user_body(&obj(json!({"password_hash": hash, "tags": "",
            "hashing_algorithm": "rabbit_password_hashing_md5"})))
            .is_err()
        );
    }

    #[test]
    fn permission_bodies_need_all_three_keys() {
        let p = parse_permission_body(&obj(json!({"configure": ".*", "write": "", "read": "^a"})))
            .unwrap();
        assert_eq!(
            (p.configure.as_str(), p.write.as_str(), p.read.as_str()),
            (".*", "", "^a")
        );
        assert!(parse_permission_body(&obj(json!({"configure": ".*", "write": ".*"}))).is_err());
    }

    #[test]
    fn bodies_are_json_objects_or_empty() {
        assert!(json_object(b"").unwrap().is_empty());
        assert!(json_object(b" \n").unwrap().is_empty());
        assert!(json_object(b"[]").is_err());
        assert!(json_object(b"{").is_err());
    }
}
