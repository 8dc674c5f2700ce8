//! AMQP connections (list, inspect, close), their channels and consumers, as RabbitMQ's
//! management plugin serves them: `/api/connections`, `/api/vhosts/{vhost}/connections`,
//! `/api/connections/{name}` (GET, DELETE), `/api/connections/{name}/channels`,
//! `/api/channels`, `/api/vhosts/{vhost}/channels`, `/api/channels/{name}`,
//! `/api/consumers`, `/api/consumers/{vhost}`.
//!
//! The objects are this node's (`arctern_amqp::registry`): a client connected to another
//! node is forwarded to the node serving the vhosts and is listed there. Users tagged
//! `monitoring` or `administrator` see every connection; other management users only
//! their own (RabbitMQ's rule); closing another user's connection needs `administrator`.

use std::sync::Arc;

use arctern_amqp::registry::{self, ChannelInfo, ConnEntry, ConsumerInfo};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiError, Caller};
use crate::HttpContext;

pub fn routes() -> OpenApiRouter<HttpContext> {
    OpenApiRouter::new()
        .routes(routes!(list_connections))
        .routes(routes!(list_vhost_connections))
        .routes(routes!(get_connection, delete_connection))
        .routes(routes!(connection_channels))
        .routes(routes!(list_channels))
        .routes(routes!(list_vhost_channels))
        .routes(routes!(get_channel))
        .routes(routes!(list_consumers))
        .routes(routes!(list_vhost_consumers))
}

/// RabbitMQ's `protocol` of an AMQP 0-9-1 connection.
const PROTOCOL: &str = "AMQP 0-9-1";

/// A rate as RabbitMQ reports it next to a counter (`*_details`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Rate {
    /// Per second, over the time since the previous look at the object (at least a second).
    pub rate: f64,
}

/// One AMQP connection (`GET /api/connections`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Connection {
    /// `"<peer host>:<peer port> -> <host>:<port>"`.
    pub name: String,
    /// The node serving the connection.
    pub node: String,
    /// Always `network` (a client socket).
    #[serde(rename = "type")]
    pub kind: String,
    /// `running` while open.
    pub state: String,
    /// `AMQP 0-9-1`.
    pub protocol: String,
    pub vhost: String,
    pub user: String,
    pub user_who_performed_action: String,
    /// The client's `connection_name` property, when it set one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_provided_name: Option<String>,
    /// `PLAIN`, `AMQPLAIN` or `EXTERNAL`.
    pub auth_mechanism: String,
    /// This node's address and port the client connected to.
    pub host: String,
    pub port: u16,
    /// The client's address and port.
    pub peer_host: String,
    pub peer_port: u16,
    /// Whether the connection is over TLS.
    pub ssl: bool,
    /// TLS details are not reported: empty strings, as RabbitMQ shows for plain TCP.
    pub ssl_protocol: String,
    pub ssl_key_exchange: String,
    pub ssl_cipher: String,
    pub ssl_hash: String,
    /// The verified client certificate's subject DN (empty without one).
    pub peer_cert_subject: String,
    pub peer_cert_issuer: String,
    pub peer_cert_validity: String,
    /// `connection.start-ok`'s client properties.
    #[schema(value_type = Object)]
    pub client_properties: Value,
    /// Milliseconds since the Unix epoch.
    pub connected_at: u64,
    pub frame_max: u32,
    pub channel_max: u16,
    /// The negotiated heartbeat in seconds (0: none).
    pub timeout: u16,
    /// Open channels.
    pub channels: u64,
    /// Bytes received and socket reads.
    pub recv_oct: u64,
    pub recv_oct_details: Rate,
    pub recv_cnt: u64,
    /// Bytes sent and socket writes.
    pub send_oct: u64,
    pub send_oct_details: Rate,
    pub send_cnt: u64,
    /// Bytes queued for the socket (not tracked: 0).
    pub send_pend: u64,
}

/// The owning connection of a channel.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConnectionDetails {
    pub name: String,
    pub peer_host: String,
    pub peer_port: u16,
}

/// One AMQP channel (`GET /api/channels`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Channel {
    /// `"<connection name> (<number>)"`.
    pub name: String,
    pub node: String,
    pub number: u16,
    pub vhost: String,
    pub user: String,
    pub user_who_performed_action: String,
    /// `running` while open.
    pub state: String,
    pub connection_details: ConnectionDetails,
    /// Publisher confirms are on (confirm.select).
    pub confirm: bool,
    /// tx.select was used.
    pub transactional: bool,
    /// basic.qos prefetch for each new consumer (global=false).
    pub prefetch_count: u16,
    /// basic.qos prefetch for the whole channel (global=true).
    pub global_prefetch_count: u16,
    pub consumer_count: u64,
    /// Deliveries sent and not yet acknowledged.
    pub messages_unacknowledged: u64,
    /// Publishes not yet confirmed (confirm mode).
    pub messages_unconfirmed: u64,
    /// Publishes and acknowledgements waiting for tx.commit.
    pub messages_uncommitted: u64,
    pub acks_uncommitted: u64,
    pub pending_raft_commands: u64,
    /// The channel's consumers (`GET /api/channels/{name}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer_details: Option<Vec<Consumer>>,
    /// Per-queue delivery and per-exchange publish stats (`GET /api/channels/{name}`
    /// only): not tracked, always empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub deliveries: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub publishes: Option<Vec<Value>>,
}

/// The channel a consumer belongs to.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChannelDetails {
    pub name: String,
    pub number: u16,
    pub node: String,
    pub connection_name: String,
    pub peer_host: String,
    pub peer_port: u16,
    pub user: String,
}

/// A queue named by vhost and name.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueRef {
    pub name: String,
    pub vhost: String,
}

/// One consumer (`GET /api/consumers`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Consumer {
    pub consumer_tag: String,
    pub queue: QueueRef,
    pub channel_details: ChannelDetails,
    /// The consumer acknowledges deliveries (basic.consume without no-ack).
    pub ack_required: bool,
    pub exclusive: bool,
    /// Its prefetch limit (0: none).
    pub prefetch_count: u16,
    /// Always true: every consumer gets deliveries (no single-active-consumer queues).
    pub active: bool,
    /// `up`.
    pub activity_status: String,
    /// basic.consume's arguments.
    #[schema(value_type = Object)]
    pub arguments: Value,
}

/// RabbitMQ's list parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Comma-separated keys to return (dotted for nested ones, e.g. `recv_oct_details.rate`).
    pub columns: Option<String>,
    /// The key to sort by (dotted for nested ones); default `vhost` then `name`.
    pub sort: Option<String>,
    pub sort_reverse: Option<bool>,
    /// With `page`, the answer is a page object: `items`, `page`, `page_count`,
    /// `page_size`, `item_count`, `filtered_count`, `total_count`.
    pub page: Option<u64>,
    /// Items per page (default 100, at most 500).
    pub page_size: Option<u64>,
    /// With `page`: only items whose name contains this.
    pub name: Option<String>,
}

/// The node name shown in `node` fields.
fn node_name(ctx: &HttpContext) -> String {
    format!("arctern@{}", ctx.broker.node_id())
}

/// The registered connections `caller` may see.
fn visible(ctx: &HttpContext, caller: &Caller) -> Vec<Arc<ConnEntry>> {
    let all = ctx.vhost.registry().list();
    if caller.sees_all() {
        all
    } else {
        all.into_iter()
            .filter(|c| c.meta.user == caller.name)
            .collect()
    }
}

/// 404 unless the vhost exists.
fn check_vhost(ctx: &HttpContext, vhost: &str) -> Result<(), ApiError> {
    let c = ctx.broker.cluster();
    if c.vhosts.contains_key(vhost) || (!c.initialized && vhost == arctern_metadata::DEFAULT_VHOST)
    {
        Ok(())
    } else {
        Err(ApiError::NotFound)
    }
}

/// RabbitMQ 3.10's refusal of another user's connection or channel
/// (`is_authorized_user`): 401 without a challenge.
fn not_authorised_for_object() -> ApiError {
    ApiError::Refused(
        (
            StatusCode::UNAUTHORIZED,
            Json(super::error::ErrorBody {
                error: "not_authorised".into(),
                reason: "User not authorised to access object".into(),
            }),
        )
            .into_response(),
    )
}

/// The connection `name`: 404 if none, 401 if the caller may not see it (RabbitMQ's
/// `is_authorized_user`: monitoring users and the connection's own user).
fn find_visible(
    ctx: &HttpContext,
    caller: &Caller,
    name: &str,
) -> Result<Arc<ConnEntry>, ApiError> {
    let e = ctx.vhost.registry().find(name).ok_or(ApiError::NotFound)?;
    if caller.sees_all() || e.meta.user == caller.name {
        Ok(e)
    } else {
        Err(not_authorised_for_object())
    }
}

fn connection_json(node: &str, e: &ConnEntry) -> Connection {
    let (recv_oct, send_oct, recv_cnt, send_cnt) = e.counters.get();
    let (recv_rate, send_rate) = e.rates();
    let m = &e.meta;
    let client_properties = registry::table_json(&m.client_properties);
    let user_provided_name = client_properties
        .get("connection_name")
        .and_then(Value::as_str)
        .map(str::to_string);
    Connection {
        name: e.name.clone(),
        node: node.to_string(),
        kind: "network".into(),
        state: "running".into(),
        protocol: PROTOCOL.into(),
        vhost: m.vhost.clone(),
        user: m.user.clone(),
        user_who_performed_action: m.user.clone(),
        user_provided_name,
        auth_mechanism: m.auth_mechanism.clone(),
        host: m.local.ip().to_string(),
        port: m.local.port(),
        peer_host: m.peer.ip().to_string(),
        peer_port: m.peer.port(),
        ssl: m.ssl,
        ssl_protocol: String::new(),
        ssl_key_exchange: String::new(),
        ssl_cipher: String::new(),
        ssl_hash: String::new(),
        peer_cert_subject: m.peer_cert_subject.clone().unwrap_or_default(),
        peer_cert_issuer: String::new(),
        peer_cert_validity: String::new(),
        client_properties,
        connected_at: e.connected_at,
        frame_max: m.frame_max,
        channel_max: m.channel_max,
        timeout: m.heartbeat,
        channels: e.channel_count() as u64,
        recv_oct,
        recv_oct_details: Rate { rate: recv_rate },
        recv_cnt,
        send_oct,
        send_oct_details: Rate { rate: send_rate },
        send_cnt,
        send_pend: 0,
    }
}

fn consumer_json(node: &str, e: &ConnEntry, ch: &ChannelInfo, c: &ConsumerInfo) -> Consumer {
    Consumer {
        consumer_tag: c.tag.clone(),
        queue: QueueRef {
            name: c.queue.clone(),
            vhost: e.meta.vhost.clone(),
        },
        channel_details: ChannelDetails {
            name: registry::channel_name(&e.name, ch.number),
            number: ch.number,
            node: node.to_string(),
            connection_name: e.name.clone(),
            peer_host: e.meta.peer.ip().to_string(),
            peer_port: e.meta.peer.port(),
            user: e.meta.user.clone(),
        },
        ack_required: c.ack_required,
        exclusive: c.exclusive,
        prefetch_count: c.prefetch_count,
        active: true,
        activity_status: "up".into(),
        arguments: registry::table_json(&c.arguments),
    }
}

fn channel_json(node: &str, e: &ConnEntry, ch: &ChannelInfo, consumers: bool) -> Channel {
    Channel {
        name: registry::channel_name(&e.name, ch.number),
        node: node.to_string(),
        number: ch.number,
        vhost: e.meta.vhost.clone(),
        user: e.meta.user.clone(),
        user_who_performed_action: e.meta.user.clone(),
        state: "running".into(),
        connection_details: ConnectionDetails {
            name: e.name.clone(),
            peer_host: e.meta.peer.ip().to_string(),
            peer_port: e.meta.peer.port(),
        },
        confirm: ch.confirm,
        transactional: ch.transactional,
        prefetch_count: ch.prefetch_count,
        global_prefetch_count: ch.global_prefetch_count,
        consumer_count: ch.consumers.len() as u64,
        messages_unacknowledged: ch.messages_unacknowledged,
        messages_unconfirmed: ch.messages_unconfirmed,
        messages_uncommitted: ch.messages_uncommitted,
        acks_uncommitted: ch.acks_uncommitted,
        pending_raft_commands: 0,
        deliveries: consumers.then(Vec::new),
        publishes: consumers.then(Vec::new),
        consumer_details: consumers.then(|| {
            ch.consumers
                .iter()
                .map(|c| consumer_json(node, e, ch, c))
                .collect()
        }),
    }
}

/// The channels of each connection, asked of the connections at once.
async fn channels_of(conns: Vec<Arc<ConnEntry>>) -> Vec<(Arc<ConnEntry>, Vec<ChannelInfo>)> {
    let mut set = tokio::task::JoinSet::new();
    for (i, e) in conns.into_iter().enumerate() {
        set.spawn(async move {
            let chs = e.channels().await;
            (i, e, chs)
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(x) = r {
            out.push(x);
        }
    }
    out.sort_by_key(|x| x.0);
    out.into_iter().map(|(_, e, c)| (e, c)).collect()
}

/// The value at a dotted path.
fn at_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

/// Keeps only `columns` (dotted paths keep their nesting), as RabbitMQ's `columns=`.
fn select_columns(v: &Value, columns: &[&str]) -> Value {
    fn put(obj: &mut serde_json::Map<String, Value>, keys: &[&str], value: Value) {
        match keys {
            [] => {}
            [last] => {
                obj.insert(last.to_string(), value);
            }
            [first, rest @ ..] => {
                let slot = obj
                    .entry(first.to_string())
                    .or_insert_with(|| Value::Object(serde_json::Map::new()));
                if let Value::Object(next) = slot {
                    put(next, rest, value);
                }
            }
        }
    }
    let mut out = serde_json::Map::new();
    for col in columns {
        if let Some(found) = at_path(v, col) {
            let keys: Vec<&str> = col.split('.').collect();
            put(&mut out, &keys, found.clone());
        }
    }
    Value::Object(out)
}

/// Orders JSON values: numbers numerically, strings as text, missing first.
fn compare(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

const MAX_PAGE_SIZE: u64 = 500;

/// Sorts, pages and selects columns as RabbitMQ's `reply_list` does.
fn reply_list<T: Serialize>(items: Vec<T>, q: &ListQuery) -> Result<Json<Value>, ApiError> {
    let mut items: Vec<Value> = items
        .into_iter()
        .map(|i| serde_json::to_value(i).map_err(|e| ApiError::Internal(e.to_string())))
        .collect::<Result<_, _>>()?;
    match q.sort.as_deref().filter(|s| !s.is_empty()) {
        Some(key) => items.sort_by(|a, b| compare(at_path(a, key), at_path(b, key))),
        None => items.sort_by(|a, b| {
            compare(a.get("vhost"), b.get("vhost")).then(compare(a.get("name"), b.get("name")))
        }),
    }
    if q.sort_reverse == Some(true) {
        items.reverse();
    }
    let columns: Option<Vec<&str>> = q
        .columns
        .as_deref()
        .map(|c| c.split(',').filter(|c| !c.is_empty()).collect());
    let select = |items: Vec<Value>| -> Vec<Value> {
        match &columns {
            Some(cols) => items.iter().map(|i| select_columns(i, cols)).collect(),
            None => items,
        }
    };
    let Some(page) = q.page else {
        return Ok(Json(Value::Array(select(items))));
    };
    let page_size = q.page_size.unwrap_or(100);
    if page == 0 || page_size == 0 || page_size > MAX_PAGE_SIZE {
        return Err(ApiError::BadRequest(format!(
            "page and page_size must be positive, page_size at most {MAX_PAGE_SIZE}"
        )));
    }
    let total = items.len() as u64;
    if let Some(name) = q.name.as_deref().filter(|n| !n.is_empty()) {
        items.retain(|i| {
            i.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.contains(name))
        });
    }
    let filtered = items.len() as u64;
    let page_count = filtered.div_ceil(page_size).max(1);
    if page > page_count {
        return Err(ApiError::BadRequest(format!(
            "page {page} is beyond the last page {page_count}"
        )));
    }
    let start = ((page - 1) * page_size) as usize;
    let page_items: Vec<Value> = items
        .into_iter()
        .skip(start)
        .take(page_size as usize)
        .collect();
    Ok(Json(serde_json::json!({
        "filtered_count": filtered,
        "item_count": page_items.len(),
        "items": select(page_items),
        "page": page,
        "page_count": page_count,
        "page_size": page_size,
        "total_count": total,
    })))
}

/// Every open AMQP connection on this node the caller may see (monitoring and
/// administrator users: all; management users: their own).
#[utoipa::path(
    get,
    path = "/api/connections",
    tag = "connections",
    params(ListQuery),
    responses(
        (status = 200, description = "The connections (a page object with `page`)", body = Vec<Connection>),
        (status = 400, description = "Bad paging parameters", body = super::error::ErrorBody),
        (status = 401, description = "No or wrong credentials", body = super::error::ErrorBody),
        (status = 403, description = "The user has no management tag", body = super::error::ErrorBody)
    )
)]
async fn list_connections(
    State(ctx): State<HttpContext>,
    caller: Caller,
    super::ApiQuery(q): super::ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let node = node_name(&ctx);
    let list: Vec<Connection> = visible(&ctx, &caller)
        .iter()
        .map(|e| connection_json(&node, e))
        .collect();
    reply_list(list, &q)
}

/// The open AMQP connections of one vhost the caller may see.
#[utoipa::path(
    get,
    path = "/api/vhosts/{vhost}/connections",
    tag = "connections",
    params(("vhost" = String, Path, description = "The vhost (`%2F` for `/`)"), ListQuery),
    responses(
        (status = 200, description = "The vhost's connections", body = Vec<Connection>),
        (status = 400, description = "Bad paging parameters", body = super::error::ErrorBody),
        (status = 401, description = "No or wrong credentials", body = super::error::ErrorBody),
        (status = 403, description = "The user has no management tag", body = super::error::ErrorBody),
        (status = 404, description = "No such vhost", body = super::error::ErrorBody)
    )
)]
async fn list_vhost_connections(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path(vhost): Path<String>,
    super::ApiQuery(q): super::ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    check_vhost(&ctx, &vhost)?;
    let node = node_name(&ctx);
    let list: Vec<Connection> = visible(&ctx, &caller)
        .iter()
        .filter(|e| e.meta.vhost == vhost)
        .map(|e| connection_json(&node, e))
        .collect();
    reply_list(list, &q)
}

/// One connection by name (`127.0.0.1:54321 -> 127.0.0.1:5672`, percent-encoded).
/// Monitoring and administrator users may read any; others only their own.
#[utoipa::path(
    get,
    path = "/api/connections/{name}",
    tag = "connections",
    params(("name" = String, Path, description = "The connection's name")),
    responses(
        (status = 200, body = Connection),
        (status = 401, description = "No or wrong credentials; or another user's connection and the caller is not a monitoring user (RabbitMQ 3.10's `User not authorised to access object`)", body = super::error::ErrorBody),
        (status = 404, description = "No such connection on this node", body = super::error::ErrorBody)
    )
)]
async fn get_connection(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Connection>, ApiError> {
    let e = find_visible(&ctx, &caller, &name)?;
    Ok(Json(connection_json(&node_name(&ctx), &e)))
}

/// Closes a connection: the broker sends `connection.close` with 320 CONNECTION_FORCED
/// and the reason (the `X-Reason` header, default "Closed via management plugin"), then
/// closes the socket. Administrators may close any connection, other users their own.
#[utoipa::path(
    delete,
    path = "/api/connections/{name}",
    tag = "connections",
    params(
        ("name" = String, Path, description = "The connection's name"),
        ("X-Reason" = Option<String>, Header, description = "The reason sent to the client")
    ),
    responses(
        (status = 204, description = "The connection is being closed"),
        (status = 401, description = "No or wrong credentials; or another user's connection and the caller is not an administrator (RabbitMQ 3.10's `User not authorised to access object`)", body = super::error::ErrorBody),
        (status = 404, description = "No such connection on this node", body = super::error::ErrorBody)
    )
)]
async fn delete_connection(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let e = ctx.vhost.registry().find(&name).ok_or(ApiError::NotFound)?;
    if !caller.is_administrator() && e.meta.user != caller.name {
        return Err(not_authorised_for_object());
    }
    let reason = headers
        .get("x-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(registry::DEFAULT_CLOSE_REASON);
    tracing::info!(connection = %e.name, by = %caller.name, reason, "closing AMQP connection via the management API");
    e.close(reason);
    Ok(StatusCode::NO_CONTENT)
}

/// The channels of one connection.
#[utoipa::path(
    get,
    path = "/api/connections/{name}/channels",
    tag = "connections",
    params(("name" = String, Path, description = "The connection's name"), ListQuery),
    responses(
        (status = 200, body = Vec<Channel>),
        (status = 400, description = "Bad paging or query parameters", body = super::error::ErrorBody),
        (status = 401, description = "No or wrong credentials; or another user's connection and the caller is not a monitoring user (RabbitMQ 3.10's `User not authorised to access object`)", body = super::error::ErrorBody),
        (status = 404, description = "No such connection on this node", body = super::error::ErrorBody)
    )
)]
async fn connection_channels(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path(name): Path<String>,
    super::ApiQuery(q): super::ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let e = find_visible(&ctx, &caller, &name)?;
    let node = node_name(&ctx);
    let list: Vec<Channel> = e
        .channels()
        .await
        .iter()
        .map(|ch| channel_json(&node, &e, ch, false))
        .collect();
    reply_list(list, &q)
}

async fn channels_json(ctx: &HttpContext, caller: &Caller, vhost: Option<&str>) -> Vec<Channel> {
    let node = node_name(ctx);
    let conns = visible(ctx, caller)
        .into_iter()
        .filter(|e| vhost.is_none_or(|v| e.meta.vhost == v))
        .collect();
    let mut out = Vec::new();
    for (e, chs) in channels_of(conns).await {
        out.extend(chs.iter().map(|ch| channel_json(&node, &e, ch, false)));
    }
    out
}

/// Every open channel on this node the caller may see.
#[utoipa::path(
    get,
    path = "/api/channels",
    tag = "connections",
    params(ListQuery),
    responses(
        (status = 200, body = Vec<Channel>),
        (status = 400, description = "Bad paging parameters", body = super::error::ErrorBody),
        (status = 401, description = "No or wrong credentials", body = super::error::ErrorBody),
        (status = 403, description = "The user has no management tag", body = super::error::ErrorBody)
    )
)]
async fn list_channels(
    State(ctx): State<HttpContext>,
    caller: Caller,
    super::ApiQuery(q): super::ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    reply_list(channels_json(&ctx, &caller, None).await, &q)
}

/// The open channels of one vhost the caller may see.
#[utoipa::path(
    get,
    path = "/api/vhosts/{vhost}/channels",
    tag = "connections",
    params(("vhost" = String, Path, description = "The vhost (`%2F` for `/`)"), ListQuery),
    responses(
        (status = 200, body = Vec<Channel>),
        (status = 400, description = "Bad paging parameters", body = super::error::ErrorBody),
        (status = 401, description = "No or wrong credentials", body = super::error::ErrorBody),
        (status = 403, description = "The user has no management tag", body = super::error::ErrorBody),
        (status = 404, description = "No such vhost", body = super::error::ErrorBody)
    )
)]
async fn list_vhost_channels(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path(vhost): Path<String>,
    super::ApiQuery(q): super::ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    check_vhost(&ctx, &vhost)?;
    reply_list(channels_json(&ctx, &caller, Some(&vhost)).await, &q)
}

/// Splits `"<connection name> (<number>)"`.
fn parse_channel_name(name: &str) -> Option<(&str, u16)> {
    let (conn, rest) = name.rsplit_once(" (")?;
    let number = rest.strip_suffix(')')?.parse().ok()?;
    Some((conn, number))
}

/// One channel by name (`"<connection name> (<number>)"`), with its consumers.
#[utoipa::path(
    get,
    path = "/api/channels/{name}",
    tag = "connections",
    params(("name" = String, Path, description = "The channel's name")),
    responses(
        (status = 200, body = Channel),
        (status = 401, description = "No or wrong credentials; or another user's channel and the caller is not a monitoring user (RabbitMQ 3.10's `User not authorised to access object`)", body = super::error::ErrorBody),
        (status = 404, description = "No such channel on this node", body = super::error::ErrorBody)
    )
)]
async fn get_channel(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Channel>, ApiError> {
    let (conn, number) = parse_channel_name(&name).ok_or(ApiError::NotFound)?;
    let e = find_visible(&ctx, &caller, conn)?;
    let chs = e.channels().await;
    let ch = chs
        .iter()
        .find(|c| c.number == number)
        .ok_or(ApiError::NotFound)?;
    Ok(Json(channel_json(&node_name(&ctx), &e, ch, true)))
}

async fn consumers_json(ctx: &HttpContext, caller: &Caller, vhost: Option<&str>) -> Vec<Consumer> {
    let node = node_name(ctx);
    let conns = visible(ctx, caller)
        .into_iter()
        .filter(|e| vhost.is_none_or(|v| e.meta.vhost == v))
        .collect();
    let mut out = Vec::new();
    for (e, chs) in channels_of(conns).await {
        for ch in &chs {
            out.extend(ch.consumers.iter().map(|c| consumer_json(&node, &e, ch, c)));
        }
    }
    out
}

/// Every consumer on this node the caller may see.
#[utoipa::path(
    get,
    path = "/api/consumers",
    tag = "connections",
    params(ListQuery),
    responses(
        (status = 200, body = Vec<Consumer>),
        (status = 400, description = "Bad paging or query parameters", body = super::error::ErrorBody),
        (status = 401, description = "No or wrong credentials", body = super::error::ErrorBody),
        (status = 403, description = "The user has no management tag", body = super::error::ErrorBody)
    )
)]
async fn list_consumers(
    State(ctx): State<HttpContext>,
    caller: Caller,
    super::ApiQuery(q): super::ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    reply_list(consumers_json(&ctx, &caller, None).await, &q)
}

/// The consumers of one vhost the caller may see.
#[utoipa::path(
    get,
    path = "/api/consumers/{vhost}",
    tag = "connections",
    params(("vhost" = String, Path, description = "The vhost (`%2F` for `/`)"), ListQuery),
    responses(
        (status = 200, body = Vec<Consumer>),
        (status = 400, description = "Bad paging or query parameters", body = super::error::ErrorBody),
        (status = 401, description = "No or wrong credentials", body = super::error::ErrorBody),
        (status = 403, description = "The user has no management tag", body = super::error::ErrorBody),
        (status = 404, description = "No such vhost", body = super::error::ErrorBody)
    )
)]
async fn list_vhost_consumers(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path(vhost): Path<String>,
    super::ApiQuery(q): super::ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    check_vhost(&ctx, &vhost)?;
    reply_list(consumers_json(&ctx, &caller, Some(&vhost)).await, &q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn channel_names_split_at_the_last_parenthesis() {
        assert_eq!(
            parse_channel_name("127.0.0.1:5000 -> 127.0.0.1:5672 (12)"),
            Some(("127.0.0.1:5000 -> 127.0.0.1:5672", 12))
        );
        assert_eq!(parse_channel_name("x (y)"), None);
        assert_eq!(parse_channel_name("nothing"), None);
    }

    #[test]
    fn columns_keep_nesting() {
        let v = json!({"name": "a", "recv_oct_details": {"rate": 1.5}, "user": "u"});
        assert_eq!(
            select_columns(&v, &["name", "recv_oct_details.rate", "missing"]),
            json!({"name": "a", "recv_oct_details": {"rate": 1.5}})
        );
    }

    #[test]
    fn lists_sort_and_page() {
        let items = vec![
            json!({"name": "b", "vhost": "/", "n": 2}),
            json!({"name": "a", "vhost": "/", "n": 10}),
            json!({"name": "c", "vhost": "/", "n": 1}),
        ];
        let Json(v) = reply_list(items.clone(), &ListQuery::default()).unwrap();
        let names: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        let q = ListQuery {
            sort: Some("n".into()),
            sort_reverse: Some(true),
            page: Some(1),
            page_size: Some(2),
            ..Default::default()
        };
        let Json(v) = reply_list(items.clone(), &q).unwrap();
        assert_eq!(v["page_count"], 2);
        assert_eq!(v["total_count"], 3);
        assert_eq!(v["items"][0]["name"], "a");
        assert_eq!(v["items"][1]["name"], "b");
        let q = ListQuery {
            page: Some(1),
            page_size: Some(501),
            ..Default::default()
        };
        assert!(reply_list(items, &q).is_err());
    }
}
