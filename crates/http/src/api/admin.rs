//! Overview, nodes, cluster name and whoami; users, vhosts and permissions live in
//! `admin_users`, definitions and health checks in `admin_defs`. RabbitMQ 3.10's paths,
//! status codes and JSON shapes.

use std::time::SystemTime;

use arctern_metadata::{CommandResult, MetadataCommand};
use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiError, Caller};
use crate::auth::Need;
use crate::HttpContext;

pub use arctern_amqp::definitions::{PRODUCT_NAME, RABBITMQ_VERSION};

/// The cluster's name (the Kafka cluster id Arctern reports too); RabbitMQ's default is the
/// first node's name, and `PUT /api/cluster-name` (not served) would change it.
pub const CLUSTER_NAME: &str = "arctern";

pub fn routes() -> OpenApiRouter<HttpContext> {
    OpenApiRouter::new()
        .routes(routes!(whoami))
        .routes(routes!(overview))
        .routes(routes!(cluster_name))
        .routes(routes!(nodes))
        .routes(routes!(node))
        .merge(super::admin_users::routes())
        .merge(super::admin_defs::routes())
}

/// The name of node `id` in RabbitMQ's `name@host` form.
pub fn node_name(id: i32, host: &str) -> String {
    format!("arctern-{id}@{host}")
}

/// This node's name.
pub fn local_node_name(ctx: &HttpContext) -> String {
    let id = ctx.broker.node_id();
    let cluster = ctx.broker.cluster();
    let host = cluster
        .brokers
        .get(&id)
        .map(|b| b.host.clone())
        .unwrap_or_else(|| ctx.broker.config().advertised_host.clone());
    node_name(id, &host)
}

/// Commits one metadata change; rejections become RabbitMQ's statuses.
pub(crate) async fn propose(ctx: &HttpContext, cmd: MetadataCommand) -> Result<(), ApiError> {
    match ctx.metadata.propose(cmd).await {
        Ok(CommandResult::Ok) => Ok(()),
        Ok(CommandResult::UnknownUser { .. } | CommandResult::UnknownVhost { .. }) => {
            Err(ApiError::NotFound)
        }
        Ok(CommandResult::InvalidRequest { reason }) => Err(ApiError::BadRequest(reason)),
        Ok(other) => Err(ApiError::Internal(format!("metadata refused: {other:?}"))),
        Err(e) => Err(ApiError::Unavailable(e.to_string())),
    }
}

/// `GET /api/whoami`.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    pub name: String,
    pub tags: Vec<String>,
}

/// The authenticated user and its tags.
#[utoipa::path(
    get,
    path = "/api/whoami",
    tag = "admin",
    responses(
        (status = 200, body = WhoAmI),
        (status = 401, body = super::error::ErrorBody)
    )
)]
async fn whoami(caller: Caller) -> Result<Json<WhoAmI>, ApiError> {
    Ok(Json(WhoAmI {
        name: caller.name,
        tags: caller.tags,
    }))
}

/// `object_totals` of the overview.
#[derive(Debug, Serialize, ToSchema)]
pub struct ObjectTotals {
    pub connections: u64,
    pub channels: u64,
    pub exchanges: u64,
    pub queues: u64,
    pub consumers: u64,
}

/// `queue_totals` of the overview.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueTotals {
    pub messages: u64,
    pub messages_ready: u64,
    pub messages_unacknowledged: u64,
}

/// One network listener.
#[derive(Debug, Serialize, ToSchema)]
pub struct Listener {
    pub node: String,
    /// `amqp`, `amqp/ssl`, `kafka`, ...
    pub protocol: String,
    pub ip_address: String,
    pub port: u16,
    #[schema(value_type = Object)]
    pub socket_opts: Value,
}

/// One HTTP listener (`contexts`).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebContext {
    pub node: String,
    pub description: String,
    pub path: String,
    /// A string, as RabbitMQ reports it.
    pub port: String,
    pub ip: String,
}

/// `GET /api/overview`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Overview {
    pub management_version: String,
    pub rates_mode: String,
    pub rabbitmq_version: String,
    pub product_name: String,
    pub product_version: String,
    pub cluster_name: String,
    pub node: String,
    pub statistics_db_node: String,
    #[schema(value_type = Vec<Object>)]
    pub exchange_types: Vec<Value>,
    /// Cumulative counts since the node started (`publish`, `confirm`, `deliver_get`,
    /// `redeliver`, `ack`), each with its `_details` (rate 0: Arctern keeps no samples here).
    #[schema(value_type = Object)]
    pub message_stats: Value,
    pub object_totals: ObjectTotals,
    pub queue_totals: QueueTotals,
    pub listeners: Vec<Listener>,
    pub contexts: Vec<WebContext>,
}

fn listeners(ctx: &HttpContext, node: &str) -> (Vec<Listener>, Vec<WebContext>) {
    let mut out = Vec::new();
    let mut contexts = Vec::new();
    // RabbitMQ 3.10 lists its HTTP listener among the listeners too.
    for l in &ctx.listeners {
        if l.protocol == "http" {
            contexts.push(WebContext {
                node: node.to_string(),
                description: "RabbitMQ Management".into(),
                path: "/".into(),
                port: l.addr.port().to_string(),
                ip: l.addr.ip().to_string(),
            });
        }
        out.push(Listener {
            node: node.to_string(),
            protocol: l.protocol.clone(),
            ip_address: l.addr.ip().to_string(),
            port: l.addr.port(),
            socket_opts: json!({}),
        });
    }
    (out, contexts)
}

fn stat(n: u64) -> (u64, Value) {
    (n, json!({"rate": 0.0}))
}

/// The node-wide AMQP counters in RabbitMQ's `message_stats` shape.
pub fn message_stats() -> Value {
    use arctern_amqp::stats as s;
    let mut m = serde_json::Map::new();
    for (key, n) in [
        ("publish", s::get(&s::RECEIVED)),
        ("confirm", s::get(&s::CONFIRMED)),
        ("deliver_get", s::get(&s::DELIVERED)),
        ("redeliver", s::get(&s::REDELIVERED)),
        ("ack", s::get(&s::ACKNOWLEDGED)),
    ] {
        let (n, details) = stat(n);
        m.insert(key.into(), json!(n));
        m.insert(format!("{key}_details"), details);
    }
    Value::Object(m)
}

/// The vhosts a caller may see: all for monitoring users and administrators, else those
/// it has permissions in.
pub fn visible_vhosts(ctx: &HttpContext, caller: &Caller) -> Vec<String> {
    let cluster = ctx.broker.cluster();
    cluster
        .vhosts
        .keys()
        .filter(|v| {
            caller.sees_all()
                || cluster
                    .permissions
                    .get(*v)
                    .is_some_and(|p| p.contains_key(&caller.name))
        })
        .cloned()
        .collect()
}

/// The node, its cluster and totals of everything the caller may see.
#[utoipa::path(
    get,
    path = "/api/overview",
    tag = "admin",
    responses(
        (status = 200, body = Overview),
        (status = 401, body = super::error::ErrorBody)
    )
)]
async fn overview(State(ctx): State<HttpContext>, caller: Caller) -> Json<Overview> {
    let node = local_node_name(&ctx);
    let visible = visible_vhosts(&ctx, &caller);
    let cluster = ctx.broker.cluster();
    let (mut ready, mut unacked, mut queues, mut consumers) = (0u64, 0u64, 0u64, 0u64);
    for q in ctx.vhost.queue_stats() {
        if !visible.contains(&q.vhost) {
            continue;
        }
        ready += u64::from(q.ready);
        unacked += u64::from(q.unacked);
        consumers += u64::from(q.consumers);
        queues += 1;
    }
    let exchanges: u64 = visible
        .iter()
        .filter_map(|v| cluster.amqp_definitions(v))
        .map(|d| d.exchanges.len() as u64)
        .sum();
    let (listeners, contexts) = listeners(&ctx, &node);
    let exchange_types = ["direct", "fanout", "headers", "topic"]
        .iter()
        .map(|t| json!({"name": t, "description": format!("AMQP {t} exchange, as per the AMQP specification"), "enabled": true}))
        .collect();
    Json(Overview {
        management_version: RABBITMQ_VERSION.into(),
        rates_mode: "basic".into(),
        rabbitmq_version: RABBITMQ_VERSION.into(),
        product_name: PRODUCT_NAME.into(),
        product_version: env!("CARGO_PKG_VERSION").into(),
        cluster_name: CLUSTER_NAME.into(),
        statistics_db_node: node.clone(),
        node,
        exchange_types,
        message_stats: message_stats(),
        object_totals: ObjectTotals {
            connections: ctx.vhost.connection_count() as u64,
            channels: arctern_amqp::stats::get(&arctern_amqp::stats::CHANNELS),
            exchanges,
            queues,
            consumers,
        },
        queue_totals: QueueTotals {
            messages: ready + unacked,
            messages_ready: ready,
            messages_unacknowledged: unacked,
        },
        listeners,
        contexts,
    })
}

/// `GET /api/cluster-name`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterName {
    pub name: String,
}

/// The cluster's name.
#[utoipa::path(
    get,
    path = "/api/cluster-name",
    tag = "admin",
    responses(
        (status = 200, body = ClusterName),
        (status = 401, body = super::error::ErrorBody)
    )
)]
async fn cluster_name(_caller: Caller) -> Json<ClusterName> {
    Json(ClusterName {
        name: CLUSTER_NAME.into(),
    })
}

/// One node of `GET /api/nodes`: this node in detail, the others from the cluster metadata
/// (name, type, running).
#[derive(Debug, Serialize, ToSchema)]
pub struct Node {
    pub name: String,
    /// Always `disc`: every Arctern node keeps its data on disk.
    #[serde(rename = "type")]
    pub kind: String,
    pub running: bool,
    pub being_drained: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_used: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_alarm: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_free: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_free_alarm: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd_used: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd_total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proc_used: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processors: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contexts: Option<Vec<WebContext>>,
}

/// Resident memory of this process in bytes (Linux `/proc/self/statm`).
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Open file descriptors and their limit (Linux `/proc`).
fn fds() -> (Option<u64>, Option<u64>) {
    let used = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64);
    let total = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| parse_fd_limit(&l));
    (used, total)
}

/// The soft "Max open files" of `/proc/self/limits`.
fn parse_fd_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Threads of this process (RabbitMQ's `proc_used` counts Erlang processes).
fn threads() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

fn all_nodes(ctx: &HttpContext) -> Vec<Node> {
    let local = ctx.broker.node_id();
    let cluster = ctx.broker.cluster();
    let alarm = ctx.alarm.borrow().clone().unwrap_or_default();
    let (fd_used, fd_total) = fds();
    let local_name = local_node_name(ctx);
    let (_, contexts) = listeners(ctx, &local_name);
    let here = Node {
        name: local_name,
        kind: "disc".into(),
        running: true,
        being_drained: false,
        uptime: Some(
            SystemTime::now()
                .duration_since(ctx.started)
                .map_or(0, |d| d.as_millis() as u64),
        ),
        mem_used: rss_bytes(),
        mem_alarm: Some(alarm.contains("memory")),
        disk_free: arctern_amqp::alarm::free_bytes(&ctx.broker.config().data_dir),
        disk_free_alarm: Some(alarm.contains("disk")),
        fd_used,
        fd_total,
        proc_used: threads(),
        processors: std::thread::available_parallelism()
            .ok()
            .map(|n| n.get() as u64),
        db_dir: Some(ctx.broker.config().data_dir.display().to_string()),
        contexts: Some(contexts),
    };
    let mut out = vec![here];
    for (id, b) in &cluster.brokers {
        if *id == local {
            continue;
        }
        out.push(Node {
            name: node_name(*id, &b.host),
            kind: "disc".into(),
            running: !b.fenced,
            being_drained: false,
            uptime: None,
            mem_used: None,
            mem_alarm: None,
            disk_free: None,
            disk_free_alarm: None,
            fd_used: None,
            fd_total: None,
            proc_used: None,
            processors: None,
            db_dir: None,
            contexts: None,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The cluster's nodes (monitoring or administrator).
#[utoipa::path(
    get,
    path = "/api/nodes",
    tag = "admin",
    responses(
        (status = 200, body = Vec<Node>),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody)
    )
)]
async fn nodes(
    State(ctx): State<HttpContext>,
    caller: Caller,
) -> Result<Json<Vec<Node>>, ApiError> {
    caller.require(Need::Monitoring)?;
    Ok(Json(all_nodes(&ctx)))
}

/// One node (monitoring or administrator).
#[utoipa::path(
    get,
    path = "/api/nodes/{name}",
    tag = "admin",
    params(("name" = String, Path, description = "Node name, e.g. arctern-1@127.0.0.1")),
    responses(
        (status = 200, body = Node),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody)
    )
)]
async fn node(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Node>, ApiError> {
    caller.require(Need::Monitoring)?;
    all_nodes(&ctx)
        .into_iter()
        .find(|n| n.name == name)
        .map(Json)
        .ok_or(ApiError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fd_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_fd_limit(limits), Some(1024));
        assert_eq!(parse_fd_limit("nothing"), None);
    }

    #[test]
    fn node_names_look_like_rabbitmqs() {
        assert_eq!(node_name(1, "127.0.0.1"), "arctern-1@127.0.0.1");
    }
}
