//! Queues, exchanges and bindings as RabbitMQ 3.10's management plugin serves them:
//! `/api/queues`, `/api/exchanges`, `/api/bindings` with RabbitMQ's paths, methods, status
//! codes and JSON keys (what rabbitmqadmin, Terraform's provider and Flower use).
//!
//! The operations are `arctern_amqp::manage`'s (the AMQP engine's own declare, delete, get
//! and publish), so they behave as the same AMQP methods would. Permissions are RabbitMQ's:
//! reading a vhost's objects needs permissions in it (users tagged `monitoring` or
//! `administrator` read every vhost); a write checks the vhost permission a client's AMQP
//! method would need (configure to declare or delete, read to get or purge, write to
//! publish; write on the destination and read on the source to bind), for every user.
//!
//! Message rates (`*_details.rate`) are computed at request time from the counters of the
//! previous look (see [`rates`]): no background sampling.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Instant;

use arctern_amqp::codes::{self, AmqpError};
use arctern_amqp::manage::{self, GetMode};
use arctern_amqp::permissions::{self as perm, Access, Compiled, Resource};
use arctern_amqp::queue::Queue;
use arctern_amqp::vhost::{Binding, Exchange};
use arctern_metadata::Permission;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiError, Caller};
use crate::HttpContext;

pub fn routes() -> OpenApiRouter<HttpContext> {
    OpenApiRouter::new()
        .routes(routes!(list_queues))
        .routes(routes!(list_vhost_queues))
        .routes(routes!(get_queue, put_queue, delete_queue))
        .routes(routes!(purge_queue))
        .routes(routes!(get_messages))
        .routes(routes!(queue_bindings))
        .routes(routes!(list_exchanges))
        .routes(routes!(list_vhost_exchanges))
        .routes(routes!(get_exchange, put_exchange, delete_exchange))
        .routes(routes!(publish))
        .routes(routes!(exchange_bindings_source))
        .routes(routes!(exchange_bindings_destination))
        .routes(routes!(list_bindings))
        .routes(routes!(list_vhost_bindings))
        .routes(routes!(list_queue_bindings_between, create_queue_binding))
        .routes(routes!(get_queue_binding, delete_queue_binding))
        .routes(routes!(
            list_exchange_bindings_between,
            create_exchange_binding
        ))
        .routes(routes!(get_exchange_binding, delete_exchange_binding))
}

// ---- shared pieces ----

/// The default exchange's name in URLs (its real name is empty).
const DEFAULT_EXCHANGE_URL: &str = "amq.default";

fn exchange_name(url_name: &str) -> &str {
    if url_name == DEFAULT_EXCHANGE_URL {
        ""
    } else {
        url_name
    }
}

fn node_name(ctx: &HttpContext) -> String {
    format!("arctern@{}", ctx.broker.node_id())
}

/// An engine failure as RabbitMQ's management plugin answers the same AMQP error: 404 for
/// NOT_FOUND, 403 for ACCESS_REFUSED, 503 while no node serves the vhosts, else 400 with
/// the reply text (PRECONDITION_FAILED's "inequivalent arg ...", RESOURCE_LOCKED, ...).
fn amqp_error(e: AmqpError) -> ApiError {
    match e.code {
        codes::NOT_FOUND => ApiError::NotFound,
        codes::ACCESS_REFUSED => ApiError::Forbidden,
        codes::NOT_ALLOWED => ApiError::Unavailable(e.text),
        codes::INTERNAL_ERROR => ApiError::Internal(e.text),
        _ => ApiError::BadRequest(e.text),
    }
}

/// The caller's permissions in `vhost` (all of them before the cluster's first-start
/// defaults exist, as for AMQP logins).
fn permissions(ctx: &HttpContext, vhost: &str, user: &str) -> Option<Compiled> {
    let cluster = ctx.broker.cluster();
    if !cluster.initialized {
        return Some(Compiled::new(&Permission::full()));
    }
    cluster
        .permissions
        .get(vhost)
        .and_then(|users| users.get(user))
        .map(Compiled::new)
}

/// Whether the caller may read `vhost`'s objects.
fn sees(ctx: &HttpContext, caller: &Caller, vhost: &str) -> bool {
    caller.sees_all() || permissions(ctx, vhost, &caller.name).is_some()
}

/// 403 unless the caller may read `vhost`; 404 for a vhost that does not exist.
fn require_sees(ctx: &HttpContext, caller: &Caller, vhost: &str) -> Result<(), ApiError> {
    let cluster = ctx.broker.cluster();
    if cluster.initialized
        && vhost != arctern_metadata::DEFAULT_VHOST
        && !cluster.vhosts.contains_key(vhost)
    {
        return Err(ApiError::NotFound);
    }
    if sees(ctx, caller, vhost) {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

/// The AMQP permission check a client's method would pass (403 when refused).
fn permit(
    ctx: &HttpContext,
    caller: &Caller,
    vhost: &str,
    access: Access,
    kind: Resource,
    name: &str,
) -> Result<(), ApiError> {
    let p = permissions(ctx, vhost, &caller.name);
    perm::check(p.as_ref(), access, kind, name, vhost, &caller.name).map_err(|e| {
        tracing::info!(user = %caller.name, reason = %e.text, "management API write refused");
        ApiError::Forbidden
    })
}

/// A request body as RabbitMQ reads it: JSON object, an empty body meaning `{}`; anything
/// else is a 400.
fn body_object(body: &Bytes) -> Result<serde_json::Map<String, Value>, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(ApiError::BadRequest("body must be a JSON object".into())),
        Err(e) => Err(ApiError::BadRequest(format!("cannot parse JSON: {e}"))),
    }
}

/// A boolean field: RabbitMQ accepts JSON booleans and the strings "true"/"false".
fn get_bool(
    o: &serde_json::Map<String, Value>,
    key: &str,
    default: bool,
) -> Result<bool, ApiError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" => Ok(true),
        Some(Value::String(s)) if s == "false" => Ok(false),
        Some(_) => Err(ApiError::BadRequest(format!("{key} must be a boolean"))),
    }
}

fn get_arguments(o: &serde_json::Map<String, Value>) -> Result<Value, ApiError> {
    match o.get("arguments") {
        None | Some(Value::Null) => Ok(Value::Object(Default::default())),
        Some(Value::Object(a)) => Ok(Value::Object(a.clone())),
        // rabbitmqadmin sends `[]` for "no arguments" in some versions.
        Some(Value::Array(a)) if a.is_empty() => Ok(Value::Object(Default::default())),
        Some(_) => Err(ApiError::BadRequest("arguments must be an object".into())),
    }
}

fn get_string(o: &serde_json::Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::BadRequest(format!("{key} must be a string"))),
    }
}

/// `?if-empty=true`, `?if-unused=true` on deletes.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteConditions {
    /// Delete only if the queue has no ready messages (else 400).
    #[serde(rename = "if-empty")]
    #[param(rename = "if-empty")]
    pub if_empty: Option<String>,
    /// Delete only if the queue has no consumers / the exchange has no bindings (else 400).
    #[serde(rename = "if-unused")]
    #[param(rename = "if-unused")]
    pub if_unused: Option<String>,
}

fn flag(v: &Option<String>) -> bool {
    v.as_deref() == Some("true")
}

/// `?columns=name,messages,message_stats.publish` on lists: keep only those keys (dotted for
/// nested ones), as RabbitMQ does (rabbitmqadmin asks for its table's columns).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Comma-separated keys to keep; all keys without it.
    pub columns: Option<String>,
}

fn pick(src: &Value, path: &[&str], dst: &mut serde_json::Map<String, Value>) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let Some(v) = src.get(*first) else {
        return;
    };
    if rest.is_empty() {
        dst.insert(first.to_string(), v.clone());
    } else if let Value::Object(m) = dst
        .entry(first.to_string())
        .or_insert_with(|| Value::Object(Default::default()))
    {
        pick(v, rest, m);
    }
}

/// A list as JSON, filtered by `columns`.
fn listed<T: Serialize>(items: Vec<T>, params: &ListParams) -> Result<Json<Value>, ApiError> {
    let all = serde_json::to_value(items).map_err(|e| ApiError::Internal(e.to_string()))?;
    let Some(columns) = params.columns.as_deref().filter(|c| !c.is_empty()) else {
        return Ok(Json(all));
    };
    let paths: Vec<Vec<&str>> = columns
        .split(',')
        .map(|c| c.trim().split('.').collect())
        .collect();
    let Value::Array(items) = all else {
        return Ok(Json(all));
    };
    Ok(Json(Value::Array(
        items
            .iter()
            .map(|item| {
                let mut out = serde_json::Map::new();
                for p in &paths {
                    pick(item, p, &mut out);
                }
                Value::Object(out)
            })
            .collect(),
    )))
}

// ---- rates ----

/// Per-second rates from counters sampled at request time (RabbitMQ samples every 5 s in
/// the background; here each look at an object records a sample and the rate is the change
/// since the newest sample that is at least [`rates::WINDOW`] old, or the oldest younger
/// one). Pure: the caller passes the time.
pub mod rates {
    use std::collections::{HashMap, VecDeque};
    use std::time::{Duration, Instant};

    /// How far back a rate looks (RabbitMQ's default sample interval).
    pub const WINDOW: Duration = Duration::from_secs(5);
    /// Samples closer together than this are not kept (rapid polling).
    const MIN_GAP: Duration = Duration::from_millis(100);
    /// A series nobody looked at for this long is dropped (its object is likely gone).
    const FORGET: Duration = Duration::from_secs(300);

    #[derive(Debug)]
    struct Series<const N: usize> {
        samples: VecDeque<(Instant, [f64; N])>,
        seen: Instant,
    }

    /// Series of `N` counters per object key.
    #[derive(Debug, Default)]
    pub struct RateTracker<const N: usize> {
        series: HashMap<String, Series<N>>,
    }

    impl<const N: usize> RateTracker<N> {
        pub fn new() -> Self {
            RateTracker {
                series: HashMap::new(),
            }
        }

        /// Records `values` of `key` at `now`; returns the per-second rates (zeros on the
        /// first look).
        pub fn observe(&mut self, key: &str, now: Instant, values: [f64; N]) -> [f64; N] {
            let s = self
                .series
                .entry(key.to_string())
                .or_insert_with(|| Series {
                    samples: VecDeque::new(),
                    seen: now,
                });
            s.seen = now;
            // Keep one sample older than the window as the base.
            while s.samples.len() >= 2 && now.saturating_duration_since(s.samples[1].0) >= WINDOW {
                s.samples.pop_front();
            }
            let mut rates = [0.0; N];
            if let Some((t, base)) = s.samples.front() {
                let dt = now.saturating_duration_since(*t).as_secs_f64();
                if dt > 0.0 {
                    for i in 0..N {
                        rates[i] = (values[i] - base[i]) / dt;
                    }
                }
            }
            let keep = s
                .samples
                .back()
                .is_none_or(|(t, _)| now.saturating_duration_since(*t) >= MIN_GAP);
            if keep {
                s.samples.push_back((now, values));
            }
            rates
        }

        /// Drops the series not looked at for a while.
        pub fn forget_idle(&mut self, now: Instant) {
            self.series
                .retain(|_, s| now.saturating_duration_since(s.seen) < FORGET);
        }

        pub fn len(&self) -> usize {
            self.series.len()
        }

        pub fn is_empty(&self) -> bool {
            self.series.is_empty()
        }
    }
}

/// Queue counters: publish, deliver_get, redeliver, ack, messages, ready, unacked.
const QUEUE_SERIES: usize = 7;

static QUEUE_RATES: LazyLock<Mutex<rates::RateTracker<QUEUE_SERIES>>> =
    LazyLock::new(|| Mutex::new(rates::RateTracker::new()));

// ---- queues ----

/// A rate next to a counter (`*_details`).
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct RateDetails {
    /// Per second, over about the last five seconds (since the previous look at the object).
    pub rate: f64,
}

fn rate(r: f64) -> RateDetails {
    // Tiny float noise would print as e.g. 1e-17.
    RateDetails {
        rate: (r * 100.0).round() / 100.0,
    }
}

/// A queue's `message_stats` (counts since the queue was opened on this node).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueMessageStats {
    /// Messages stored into the queue.
    pub publish: u64,
    pub publish_details: RateDetails,
    /// Messages delivered to consumers or taken by basic.get.
    pub deliver_get: u64,
    pub deliver_get_details: RateDetails,
    /// Of those, redelivered ones.
    pub redeliver: u64,
    pub redeliver_details: RateDetails,
    /// Acknowledged deliveries.
    pub ack: u64,
    pub ack_details: RateDetails,
}

/// One queue (`GET /api/queues`), RabbitMQ's keys.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueJson {
    pub name: String,
    pub vhost: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub exclusive: bool,
    /// The declare arguments, as plain JSON.
    #[schema(value_type = Object)]
    pub arguments: Value,
    /// The node holding the queue.
    pub node: String,
    /// Always `running`.
    pub state: String,
    /// `classic` or `quorum`, as declared (`x-queue-type`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Ready plus unacknowledged.
    pub messages: u64,
    pub messages_details: RateDetails,
    pub messages_ready: u64,
    pub messages_ready_details: RateDetails,
    pub messages_unacknowledged: u64,
    pub messages_unacknowledged_details: RateDetails,
    pub consumers: u64,
    /// Always null (no policies).
    pub policy: Option<String>,
    /// Always null.
    pub exclusive_consumer_tag: Option<String>,
    pub message_stats: QueueMessageStats,
}

fn queue_json(ctx: &HttpContext, vhost: &str, q: &Queue, now: Instant) -> QueueJson {
    let (publish, deliver_get, redeliver, ack) = q.counters.read();
    let ready = u64::from(q.message_count());
    let unacked = u64::from(q.unacked_count());
    let values = [
        publish as f64,
        deliver_get as f64,
        redeliver as f64,
        ack as f64,
        (ready + unacked) as f64,
        ready as f64,
        unacked as f64,
    ];
    // The topic is unique per queue incarnation: a re-declared queue starts a new series.
    let key = format!("{vhost}\u{0}{}\u{0}{}", q.name, q.topic);
    let r = QUEUE_RATES
        .lock()
        .map(|mut t| t.observe(&key, now, values))
        .unwrap_or([0.0; QUEUE_SERIES]);
    let kind = match q.arguments.inner().get("x-queue-type") {
        Some(v) if manage::plain_value(v) == Value::String("quorum".into()) => "quorum",
        _ => "classic",
    };
    QueueJson {
        name: q.name.clone(),
        vhost: vhost.to_string(),
        durable: q.durable,
        auto_delete: q.auto_delete,
        exclusive: q.exclusive_owner.is_some(),
        arguments: manage::plain_table(&q.arguments),
        node: node_name(ctx),
        state: "running".into(),
        kind: kind.into(),
        messages: ready + unacked,
        messages_details: rate(r[4]),
        messages_ready: ready,
        messages_ready_details: rate(r[5]),
        messages_unacknowledged: unacked,
        messages_unacknowledged_details: rate(r[6]),
        consumers: u64::from(q.consumer_count()),
        policy: None,
        exclusive_consumer_tag: None,
        message_stats: QueueMessageStats {
            publish,
            publish_details: rate(r[0].max(0.0)),
            deliver_get,
            deliver_get_details: rate(r[1].max(0.0)),
            redeliver,
            redeliver_details: rate(r[2].max(0.0)),
            ack,
            ack_details: rate(r[3].max(0.0)),
        },
    }
}

async fn queues_json(
    ctx: &HttpContext,
    caller: &Caller,
    vhost: Option<&str>,
) -> Result<Vec<QueueJson>, ApiError> {
    let list = manage::queues(&ctx.vhost, vhost)
        .await
        .map_err(amqp_error)?;
    let now = Instant::now();
    let mut visible: HashMap<String, bool> = HashMap::new();
    let out = list
        .iter()
        .filter(|(v, _)| {
            *visible
                .entry(v.clone())
                .or_insert_with(|| sees(ctx, caller, v))
        })
        .map(|(v, q)| queue_json(ctx, v, q, now))
        .collect();
    if let Ok(mut t) = QUEUE_RATES.lock() {
        t.forget_idle(now);
    }
    Ok(out)
}

/// Every queue of the vhosts the caller may see.
#[utoipa::path(
    get,
    path = "/api/queues",
    params(ListParams),
    tag = "queues",
    responses(
        (status = 200, body = [QueueJson]),
        (status = 400, description = "Bad paging or query parameters", body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody),
        (status = 503, description = "No node serves the vhosts yet, or another node does", body = super::error::ErrorBody)
    )
)]
async fn list_queues(
    State(ctx): State<HttpContext>,
    caller: Caller,
    super::ApiQuery(params): super::ApiQuery<ListParams>,
) -> Result<Json<Value>, ApiError> {
    listed(queues_json(&ctx, &caller, None).await?, &params)
}

/// The queues of one vhost.
#[utoipa::path(
    get,
    path = "/api/queues/{vhost}",
    tag = "queues",
    params(("vhost" = String, Path, description = "The vhost (`%2F` for `/`)"), ListParams),
    responses(
        (status = 200, body = [QueueJson]),
        (status = 400, description = "Bad paging or query parameters", body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, description = "No permissions in the vhost", body = super::error::ErrorBody),
        (status = 404, description = "No such vhost", body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)
    )
)]
async fn list_vhost_queues(
    State(ctx): State<HttpContext>,
    caller: Caller,
    super::ApiQuery(params): super::ApiQuery<ListParams>,
    Path(vhost): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_sees(&ctx, &caller, &vhost)?;
    listed(queues_json(&ctx, &caller, Some(&vhost)).await?, &params)
}

/// One queue.
#[utoipa::path(
    get,
    path = "/api/queues/{vhost}/{name}",
    tag = "queues",
    params(
        ("vhost" = String, Path, description = "The vhost (`%2F` for `/`)"),
        ("name" = String, Path, description = "The queue")
    ),
    responses(
        (status = 200, body = QueueJson),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody),
        (status = 404, description = "No such vhost or queue", body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)
    )
)]
async fn get_queue(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> Result<Json<QueueJson>, ApiError> {
    require_sees(&ctx, &caller, &vhost)?;
    let q = manage::queue(&ctx.vhost, &vhost, &name)
        .await
        .map_err(amqp_error)?;
    Ok(Json(queue_json(&ctx, &vhost, &q, Instant::now())))
}

/// `PUT /api/queues/{vhost}/{name}` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct QueueDeclare {
    /// Default false.
    pub durable: Option<bool>,
    /// Default false.
    pub auto_delete: Option<bool>,
    /// Queue arguments (`x-message-ttl`, `x-queue-type`, ...).
    #[schema(value_type = Object)]
    pub arguments: Option<Value>,
    /// Ignored (accepted for RabbitMQ clients that send it).
    pub node: Option<String>,
}

/// Declares a queue as queue.declare would (needs configure permission on it).
#[utoipa::path(
    put,
    path = "/api/queues/{vhost}/{name}",
    tag = "queues",
    params(
        ("vhost" = String, Path, description = "The vhost (`%2F` for `/`)"),
        ("name" = String, Path, description = "The queue")
    ),
    request_body(content = QueueDeclare, content_type = "application/json"),
    responses(
        (status = 201, description = "Created"),
        (status = 204, description = "An equivalent queue already existed"),
        (status = 400, description = "Bad body, bad arguments, or a different queue of that name exists (PRECONDITION_FAILED's text)", body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, description = "No configure permission, or a reserved `amq.` name", body = super::error::ErrorBody),
        (status = 404, description = "No such vhost", body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)
    )
)]
async fn put_queue(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let o = body_object(&body)?;
    let durable = get_bool(&o, "durable", false)?;
    let auto_delete = get_bool(&o, "auto_delete", false)?;
    let arguments = get_arguments(&o)?;
    if name.is_empty() {
        return Err(ApiError::BadRequest("queue name must not be empty".into()));
    }
    permit(
        &ctx,
        &caller,
        &vhost,
        Access::Configure,
        Resource::Queue,
        &name,
    )?;
    let created =
        manage::declare_queue(&ctx.vhost, &vhost, &name, durable, auto_delete, &arguments)
            .await
            .map_err(amqp_error)?;
    Ok(if created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    })
}

/// Deletes a queue (its consumers are cancelled); `if-empty` / `if-unused` as
/// queue.delete's flags. Needs configure permission.
#[utoipa::path(
    delete,
    path = "/api/queues/{vhost}/{name}",
    tag = "queues",
    params(
        ("vhost" = String, Path, description = "The vhost (`%2F` for `/`)"),
        ("name" = String, Path, description = "The queue"),
        DeleteConditions
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The queue is not empty / in use", body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody),
        (status = 404, description = "No such vhost or queue", body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)
    )
)]
async fn delete_queue(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    super::ApiQuery(cond): super::ApiQuery<DeleteConditions>,
) -> Result<StatusCode, ApiError> {
    require_sees(&ctx, &caller, &vhost)?;
    permit(
        &ctx,
        &caller,
        &vhost,
        Access::Configure,
        Resource::Queue,
        &name,
    )?;
    manage::delete_queue_if(
        &ctx.vhost,
        &vhost,
        &name,
        flag(&cond.if_unused),
        flag(&cond.if_empty),
    )
    .await
    .map_err(amqp_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Purges a queue's ready messages (needs read permission, as queue.purge).
#[utoipa::path(
    delete,
    path = "/api/queues/{vhost}/{name}/contents",
    tag = "queues",
    params(
        ("vhost" = String, Path, description = "The vhost (`%2F` for `/`)"),
        ("name" = String, Path, description = "The queue")
    ),
    responses(
        (status = 204, description = "Purged"),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody),
        (status = 404, description = "No such vhost or queue", body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)
    )
)]
async fn purge_queue(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    require_sees(&ctx, &caller, &vhost)?;
    permit(&ctx, &caller, &vhost, Access::Read, Resource::Queue, &name)?;
    manage::purge_queue(&ctx.vhost, &vhost, &name)
        .await
        .map_err(amqp_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/queues/{vhost}/{name}/get` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct GetRequest {
    /// How many messages at most.
    pub count: u64,
    /// `ack_requeue_true`, `ack_requeue_false`, `reject_requeue_true` or
    /// `reject_requeue_false`.
    pub ackmode: String,
    /// `auto` (text when the body is UTF-8, else base64) or `base64`.
    pub encoding: String,
    /// Cut payloads to this many bytes.
    pub truncate: Option<u64>,
}

/// One message taken by `POST .../get`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GotMessageJson {
    pub payload_bytes: u64,
    pub redelivered: bool,
    pub exchange: String,
    pub routing_key: String,
    /// Ready messages left after this one was taken.
    pub message_count: u64,
    /// The message properties (RabbitMQ's keys; `[]` when none are set).
    #[schema(value_type = Object)]
    pub properties: Value,
    pub payload: String,
    /// `string` or `base64`.
    pub payload_encoding: String,
}

fn got_json(m: &manage::GotMessage, base64_only: bool, truncate: Option<u64>) -> GotMessageJson {
    let mut body: &[u8] = &m.body;
    if let Some(t) = truncate {
        body = &body[..body.len().min(usize::try_from(t).unwrap_or(usize::MAX))];
    }
    let (payload, encoding) = match std::str::from_utf8(body) {
        Ok(s) if !base64_only => (s.to_string(), "string"),
        _ => (
            base64::engine::general_purpose::STANDARD.encode(body),
            "base64",
        ),
    };
    let props = manage::properties_json(&m.properties);
    GotMessageJson {
        payload_bytes: m.body.len() as u64,
        redelivered: m.redelivered,
        exchange: m.exchange.clone(),
        routing_key: m.routing_key.clone(),
        message_count: u64::from(m.message_count),
        // RabbitMQ renders an empty property list as `[]`.
        properties: if props.is_empty() {
            Value::Array(Vec::new())
        } else {
            Value::Object(props)
        },
        payload,
        payload_encoding: encoding.into(),
    }
}

/// Parses a get request body (400s with RabbitMQ's meaning).
fn parse_get(
    o: &serde_json::Map<String, Value>,
) -> Result<(usize, GetMode, bool, Option<u64>), ApiError> {
    let count = o
        .get("count")
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .ok_or_else(|| ApiError::BadRequest("count must be a non-negative integer".into()))?;
    let ackmode = get_string(o, "ackmode")?
        .ok_or_else(|| ApiError::BadRequest("ackmode is required".into()))?;
    let mode = GetMode::parse(&ackmode)
        .ok_or_else(|| ApiError::BadRequest(format!("unknown ackmode '{ackmode}'")))?;
    let encoding = get_string(o, "encoding")?.unwrap_or_else(|| "auto".into());
    let base64_only = match encoding.as_str() {
        "auto" => false,
        "base64" => true,
        other => {
            return Err(ApiError::BadRequest(format!(
                "unsupported encoding '{other}' (auto or base64)"
            )))
        }
    };
    let truncate = match o.get("truncate") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| ApiError::BadRequest("truncate must be an integer".into()))?,
        ),
    };
    Ok((
        usize::try_from(count).unwrap_or(usize::MAX),
        mode,
        base64_only,
        truncate,
    ))
}

/// Takes messages as basic.get would, then acknowledges or rejects them, requeued or
/// not, per `ackmode` (needs read permission). Requeued messages come back redelivered.
#[utoipa::path(
    post,
    path = "/api/queues/{vhost}/{name}/get",
    tag = "queues",
    params(
        ("vhost" = String, Path, description = "The vhost (`%2F` for `/`)"),
        ("name" = String, Path, description = "The queue")
    ),
    request_body(content = GetRequest, content_type = "application/json"),
    responses(
        (status = 200, body = [GotMessageJson]),
        (status = 400, description = "Bad body, or an exclusive queue of a connection", body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody),
        (status = 404, description = "No such vhost or queue", body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)
    )
)]
async fn get_messages(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Vec<GotMessageJson>>, ApiError> {
    let o = body_object(&body)?;
    let (count, mode, base64_only, truncate) = parse_get(&o)?;
    require_sees(&ctx, &caller, &vhost)?;
    permit(&ctx, &caller, &vhost, Access::Read, Resource::Queue, &name)?;
    // The queue must exist (404) before the exclusive check (400).
    manage::queue(&ctx.vhost, &vhost, &name)
        .await
        .map_err(amqp_error)?;
    let got = manage::get_messages(&ctx.vhost, &vhost, &name, count, mode)
        .await
        .map_err(amqp_error)?;
    Ok(Json(
        got.iter()
            .map(|m| got_json(m, base64_only, truncate))
            .collect(),
    ))
}

// ---- exchanges ----

/// One exchange (`GET /api/exchanges`), RabbitMQ's keys.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExchangeJson {
    /// `""` for the default exchange.
    pub name: String,
    pub vhost: String,
    /// `direct`, `fanout`, `topic` or `headers`.
    #[serde(rename = "type")]
    pub kind: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    #[schema(value_type = Object)]
    pub arguments: Value,
    /// `rmq-internal` for the built-in exchanges, else empty (not recorded).
    pub user_who_performed_action: String,
    /// Always null (no policies).
    pub policy: Option<String>,
}

fn exchange_json(vhost: &str, e: &Exchange) -> ExchangeJson {
    let builtin = e.name.is_empty() || e.name.starts_with("amq.");
    ExchangeJson {
        name: e.name.clone(),
        vhost: vhost.to_string(),
        kind: e.kind.name().to_string(),
        durable: e.durable,
        auto_delete: e.auto_delete,
        internal: e.internal,
        arguments: manage::plain_table(&e.arguments),
        user_who_performed_action: if builtin {
            "rmq-internal".into()
        } else {
            String::new()
        },
        policy: None,
    }
}

async fn exchanges_json(
    ctx: &HttpContext,
    caller: &Caller,
    vhost: Option<&str>,
) -> Result<Vec<ExchangeJson>, ApiError> {
    let list = manage::exchanges(&ctx.vhost, vhost)
        .await
        .map_err(amqp_error)?;
    let mut visible: HashMap<String, bool> = HashMap::new();
    Ok(list
        .iter()
        .filter(|(v, _)| {
            *visible
                .entry(v.clone())
                .or_insert_with(|| sees(ctx, caller, v))
        })
        .map(|(v, e)| exchange_json(v, e))
        .collect())
}

/// Every exchange of the vhosts the caller may see (the default exchange has name `""`).
#[utoipa::path(
    get,
    path = "/api/exchanges",
    params(ListParams),
    tag = "exchanges",
    responses(
        (status = 200, body = [ExchangeJson]),
        (status = 400, description = "Bad paging or query parameters", body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)
    )
)]
async fn list_exchanges(
    State(ctx): State<HttpContext>,
    caller: Caller,
    super::ApiQuery(params): super::ApiQuery<ListParams>,
) -> Result<Json<Value>, ApiError> {
    listed(exchanges_json(&ctx, &caller, None).await?, &params)
}

/// The exchanges of one vhost.
#[utoipa::path(
    get,
    path = "/api/exchanges/{vhost}",
    tag = "exchanges",
    params(("vhost" = String, Path, description = "The vhost (`%2F` for `/`)"), ListParams),
    responses(
        (status = 200, body = [ExchangeJson]),
        (status = 400, description = "Bad paging or query parameters", body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody),
        (status = 404, description = "No such vhost", body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)
    )
)]
async fn list_vhost_exchanges(
    State(ctx): State<HttpContext>,
    caller: Caller,
    super::ApiQuery(params): super::ApiQuery<ListParams>,
    Path(vhost): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_sees(&ctx, &caller, &vhost)?;
    listed(exchanges_json(&ctx, &caller, Some(&vhost)).await?, &params)
}

/// One exchange (`amq.default` names the default exchange).
#[utoipa::path(
    get,
    path = "/api/exchanges/{vhost}/{name}",
    tag = "exchanges",
    params(
        ("vhost" = String, Path, description = "The vhost (`%2F` for `/`)"),
        ("name" = String, Path, description = "The exchange (`amq.default` for the default one)")
    ),
    responses(
        (status = 200, body = ExchangeJson),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody),
        (status = 404, description = "No such vhost or exchange", body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)
    )
)]
async fn get_exchange(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> Result<Json<ExchangeJson>, ApiError> {
    require_sees(&ctx, &caller, &vhost)?;
    let name = exchange_name(&name);
    let list = manage::exchanges(&ctx.vhost, Some(&vhost))
        .await
        .map_err(amqp_error)?;
    list.iter()
        .find(|(_, e)| e.name == name)
        .map(|(v, e)| Json(exchange_json(v, e)))
        .ok_or(ApiError::NotFound)
}

/// `PUT /api/exchanges/{vhost}/{name}` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ExchangeDeclare {
    /// `direct` (the default), `fanout`, `topic` or `headers`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Default false.
    pub durable: Option<bool>,
    /// Default false.
    pub auto_delete: Option<bool>,
    /// Default false.
    pub internal: Option<bool>,
    /// `alternate-exchange`.
    #[schema(value_type = Object)]
    pub arguments: Option<Value>,
}

/// Declares an exchange as exchange.declare would (needs configure permission).
#[utoipa::path(
    put,
    path = "/api/exchanges/{vhost}/{name}",
    tag = "exchanges",
    params(
        ("vhost" = String, Path, description = "The vhost (`%2F` for `/`)"),
        ("name" = String, Path, description = "The exchange")
    ),
    request_body(content = ExchangeDeclare, content_type = "application/json"),
    responses(
        (status = 201, description = "Created"),
        (status = 204, description = "An equivalent exchange already existed"),
        (status = 400, description = "Bad body or type, or a different exchange of that name exists", body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, description = "No configure permission, or a reserved `amq.` name", body = super::error::ErrorBody),
        (status = 404, description = "No such vhost", body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)
    )
)]
async fn put_exchange(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let o = body_object(&body)?;
    let kind = get_string(&o, "type")?.unwrap_or_else(|| "direct".into());
    let durable = get_bool(&o, "durable", false)?;
    let auto_delete = get_bool(&o, "auto_delete", false)?;
    let internal = get_bool(&o, "internal", false)?;
    let arguments = get_arguments(&o)?;
    let name = exchange_name(&name);
    permit(
        &ctx,
        &caller,
        &vhost,
        Access::Configure,
        Resource::Exchange,
        name,
    )?;
    let created = manage::declare_exchange(
        &ctx.vhost,
        &vhost,
        name,
        &kind,
        durable,
        auto_delete,
        internal,
        &arguments,
    )
    .await
    .map_err(amqp_error)?;
    Ok(if created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    })
}

/// Deletes an exchange and its bindings; `if-unused` as exchange.delete's flag. Needs
/// configure permission; the built-in exchanges cannot be deleted (403).
#[utoipa::path(
    delete,
    path = "/api/exchanges/{vhost}/{name}",
    tag = "exchanges",
    params(
        ("vhost" = String, Path, description = "The vhost (`%2F` for `/`)"),
        ("name" = String, Path, description = "The exchange"),
        DeleteConditions
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The exchange has bindings (with `if-unused=true`)", body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody),
        (status = 404, description = "No such vhost or exchange", body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)
    )
)]
async fn delete_exchange(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    super::ApiQuery(cond): super::ApiQuery<DeleteConditions>,
) -> Result<StatusCode, ApiError> {
    require_sees(&ctx, &caller, &vhost)?;
    let name = exchange_name(&name);
    permit(
        &ctx,
        &caller,
        &vhost,
        Access::Configure,
        Resource::Exchange,
        name,
    )?;
    manage::delete_exchange(&ctx.vhost, &vhost, name, flag(&cond.if_unused))
        .await
        .map_err(amqp_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/exchanges/{vhost}/{name}/publish` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PublishRequest {
    /// Message properties (RabbitMQ's keys: `delivery_mode`, `headers`, `content_type`, ...).
    #[schema(value_type = Object)]
    pub properties: Value,
    pub routing_key: String,
    pub payload: String,
    /// `string` or `base64`.
    pub payload_encoding: String,
}

/// Whether a published message reached a queue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Routed {
    pub routed: bool,
}

/// Parses a publish body: (routing key, properties, body bytes).
fn parse_publish(
    o: &serde_json::Map<String, Value>,
) -> Result<(String, manage::BasicProperties, Vec<u8>), ApiError> {
    let missing = |k: &str| ApiError::BadRequest(format!("{k} is required"));
    let key = get_string(o, "routing_key")?.ok_or_else(|| missing("routing_key"))?;
    let payload = get_string(o, "payload")?.ok_or_else(|| missing("payload"))?;
    let encoding = get_string(o, "payload_encoding")?.ok_or_else(|| missing("payload_encoding"))?;
    let body = match encoding.as_str() {
        "string" => payload.into_bytes(),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(payload.trim())
            .map_err(|e| ApiError::BadRequest(format!("payload is not base64: {e}")))?,
        other => {
            return Err(ApiError::BadRequest(format!(
                "unsupported payload_encoding '{other}' (string or base64)"
            )))
        }
    };
    let props = o.get("properties").cloned().unwrap_or(Value::Null);
    let props = manage::properties_from_json(&props).map_err(ApiError::BadRequest)?;
    Ok((key, props, body))
}

/// Publishes one message through the exchange (needs write permission on it) and waits
/// until it is stored in every queue it reached; `routed` says whether it reached any.
#[utoipa::path(
    post,
    path = "/api/exchanges/{vhost}/{name}/publish",
    tag = "exchanges",
    params(
        ("vhost" = String, Path, description = "The vhost (`%2F` for `/`)"),
        ("name" = String, Path, description = "The exchange (`amq.default` for the default one)")
    ),
    request_body(content = PublishRequest, content_type = "application/json"),
    responses(
        (status = 200, body = Routed),
        (status = 400, description = "Bad body or properties, no such exchange, an internal exchange, a message too large, a full queue refusing it (x-overflow=reject-publish)", body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, description = "No write permission on the exchange", body = super::error::ErrorBody),
        (status = 404, description = "No such vhost", body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)
    )
)]
async fn publish(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Routed>, ApiError> {
    let o = body_object(&body)?;
    let (key, props, payload) = parse_publish(&o)?;
    require_sees(&ctx, &caller, &vhost)?;
    let name = exchange_name(&name);
    permit(
        &ctx,
        &caller,
        &vhost,
        Access::Write,
        Resource::Exchange,
        name,
    )?;
    // RabbitMQ publishes on a channel and reports what closes it (a missing exchange, an
    // internal one) or a nack (a full queue) as a 400.
    let routed = manage::publish(&ctx.vhost, &vhost, name, &key, &props, payload)
        .await
        .map_err(|e| match e.code {
            codes::NOT_ALLOWED | codes::INTERNAL_ERROR => amqp_error(e),
            codes::RESOURCE_ERROR => ApiError::BadRequest(e.text),
            _ => ApiError::BadRequest(e.reply_text()),
        })?;
    Ok(Json(Routed { routed }))
}

// ---- bindings ----

/// One binding (`GET /api/bindings`), RabbitMQ's keys.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BindingJson {
    /// The exchange (`""`: the default exchange's implicit binding).
    pub source: String,
    pub vhost: String,
    pub destination: String,
    /// `queue` or `exchange`.
    pub destination_type: String,
    pub routing_key: String,
    #[schema(value_type = Object)]
    pub arguments: Value,
    /// Names the binding in `/api/bindings/.../{props}` URLs.
    pub properties_key: String,
}

/// `mochiweb_util:quote_plus`: letters, digits and `.-~_` stay, a space is `+`, the rest
/// `%XX`.
fn quote_plus(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// RabbitMQ's quoting of a binding key part: `quote_plus`, then `~` as `%7E` (`~` splits
/// the key from the arguments' hash).
fn quote_binding(s: &str) -> String {
    quote_plus(s).replace('~', "%7E")
}

/// A 32-bit digest of binding arguments, base64url without padding (RabbitMQ hashes the
/// Erlang term with `phash2`, which only Erlang computes; the key is opaque to clients).
fn args_hash(arguments: &Value) -> String {
    let text = arguments.to_string();
    let mut h: u32 = 0x811c_9dc5;
    for b in text.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.to_be_bytes())
}

/// RabbitMQ's `properties_key` (`rabbit_mgmt_format:pack_binding_props`): `~` for an
/// empty key without arguments, the quoted key without arguments, else `key~hash`.
pub fn properties_key(routing_key: &str, arguments: &Value) -> String {
    let no_args = arguments.as_object().is_none_or(|o| o.is_empty());
    match (routing_key.is_empty(), no_args) {
        (true, true) => "~".into(),
        (_, true) => quote_binding(routing_key),
        _ => format!(
            "{}~{}",
            quote_binding(routing_key),
            quote_binding(&args_hash(arguments))
        ),
    }
}

/// Percent-decoding (what the router did to the path segment holding a properties key).
fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn binding_json(vhost: &str, b: &Binding) -> BindingJson {
    let arguments = manage::plain_table(&manage::binding_arguments(b));
    BindingJson {
        source: b.exchange.clone(),
        vhost: vhost.to_string(),
        destination: b.queue.clone(),
        destination_type: if b.to_exchange { "exchange" } else { "queue" }.into(),
        routing_key: b.key.clone(),
        properties_key: properties_key(&b.key, &arguments),
        arguments,
    }
}

/// The default exchange's implicit binding to a queue (RabbitMQ lists it).
fn default_binding(vhost: &str, queue: &str) -> BindingJson {
    BindingJson {
        source: String::new(),
        vhost: vhost.to_string(),
        destination: queue.to_string(),
        destination_type: "queue".into(),
        routing_key: queue.to_string(),
        arguments: Value::Object(Default::default()),
        properties_key: properties_key(queue, &Value::Null),
    }
}

/// Every binding of `vhost` (all visible vhosts with `None`), the default exchange's
/// implicit ones first per vhost, as RabbitMQ orders them.
async fn all_bindings(
    ctx: &HttpContext,
    caller: &Caller,
    vhost: Option<&str>,
) -> Result<Vec<BindingJson>, ApiError> {
    let queues = manage::queues(&ctx.vhost, vhost)
        .await
        .map_err(amqp_error)?;
    let explicit = manage::bindings(&ctx.vhost, vhost)
        .await
        .map_err(amqp_error)?;
    let mut visible: HashMap<String, bool> = HashMap::new();
    let mut sees_v = |v: &str| {
        *visible
            .entry(v.to_string())
            .or_insert_with(|| sees(ctx, caller, v))
    };
    let mut out: Vec<BindingJson> = Vec::new();
    for (v, q) in &queues {
        if sees_v(v) {
            out.push(default_binding(v, &q.name));
        }
    }
    let mut rest: Vec<BindingJson> = explicit
        .iter()
        .filter(|(v, _)| sees_v(v))
        .map(|(v, b)| binding_json(v, b))
        .collect();
    rest.sort_by(|a, b| {
        (&a.vhost, &a.source, &a.destination, &a.routing_key).cmp(&(
            &b.vhost,
            &b.source,
            &b.destination,
            &b.routing_key,
        ))
    });
    out.extend(rest);
    Ok(out)
}

/// Every binding of the vhosts the caller may see (with the default exchange's).
#[utoipa::path(
    get,
    path = "/api/bindings",
    params(ListParams),
    tag = "bindings",
    responses(
        (status = 200, body = [BindingJson]),
        (status = 400, description = "Bad paging or query parameters", body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)
    )
)]
async fn list_bindings(
    State(ctx): State<HttpContext>,
    caller: Caller,
    super::ApiQuery(params): super::ApiQuery<ListParams>,
) -> Result<Json<Value>, ApiError> {
    listed(all_bindings(&ctx, &caller, None).await?, &params)
}

/// The bindings of one vhost.
#[utoipa::path(
    get,
    path = "/api/bindings/{vhost}",
    tag = "bindings",
    params(("vhost" = String, Path, description = "The vhost (`%2F` for `/`)"), ListParams),
    responses(
        (status = 200, body = [BindingJson]),
        (status = 400, description = "Bad paging or query parameters", body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody),
        (status = 404, description = "No such vhost", body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)
    )
)]
async fn list_vhost_bindings(
    State(ctx): State<HttpContext>,
    caller: Caller,
    super::ApiQuery(params): super::ApiQuery<ListParams>,
    Path(vhost): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_sees(&ctx, &caller, &vhost)?;
    listed(all_bindings(&ctx, &caller, Some(&vhost)).await?, &params)
}

/// The bindings to one queue (with the default exchange's).
#[utoipa::path(
    get,
    path = "/api/queues/{vhost}/{name}/bindings",
    tag = "bindings",
    params(
        ("vhost" = String, Path, description = "The vhost (`%2F` for `/`)"),
        ("name" = String, Path, description = "The queue")
    ),
    responses(
        (status = 200, body = [BindingJson]),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody),
        (status = 404, description = "No such vhost or queue", body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)
    )
)]
async fn queue_bindings(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> Result<Json<Vec<BindingJson>>, ApiError> {
    require_sees(&ctx, &caller, &vhost)?;
    manage::queue(&ctx.vhost, &vhost, &name)
        .await
        .map_err(amqp_error)?;
    let all = all_bindings(&ctx, &caller, Some(&vhost)).await?;
    Ok(Json(
        all.into_iter()
            .filter(|b| b.destination_type == "queue" && b.destination == name)
            .collect(),
    ))
}

async fn exchange_bindings(
    ctx: &HttpContext,
    caller: &Caller,
    vhost: &str,
    name: &str,
    as_source: bool,
) -> Result<Vec<BindingJson>, ApiError> {
    require_sees(ctx, caller, vhost)?;
    let name = exchange_name(name);
    if !manage::has_exchange(&ctx.vhost, vhost, name)
        .await
        .map_err(amqp_error)?
    {
        return Err(ApiError::NotFound);
    }
    let all = all_bindings(ctx, caller, Some(vhost)).await?;
    Ok(all
        .into_iter()
        .filter(|b| {
            if as_source {
                b.source == name
            } else {
                b.destination_type == "exchange" && b.destination == name
            }
        })
        .collect())
}

/// The bindings whose source is this exchange.
#[utoipa::path(
    get,
    path = "/api/exchanges/{vhost}/{name}/bindings/source",
    tag = "bindings",
    params(
        ("vhost" = String, Path, description = "The vhost (`%2F` for `/`)"),
        ("name" = String, Path, description = "The exchange (`amq.default` for the default one)")
    ),
    responses(
        (status = 200, body = [BindingJson]),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody),
        (status = 404, description = "No such vhost or exchange", body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)
    )
)]
async fn exchange_bindings_source(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> Result<Json<Vec<BindingJson>>, ApiError> {
    Ok(Json(
        exchange_bindings(&ctx, &caller, &vhost, &name, true).await?,
    ))
}

/// The bindings whose destination is this exchange (exchange-to-exchange).
#[utoipa::path(
    get,
    path = "/api/exchanges/{vhost}/{name}/bindings/destination",
    tag = "bindings",
    params(
        ("vhost" = String, Path, description = "The vhost (`%2F` for `/`)"),
        ("name" = String, Path, description = "The exchange")
    ),
    responses(
        (status = 200, body = [BindingJson]),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody),
        (status = 404, description = "No such vhost or exchange", body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)
    )
)]
async fn exchange_bindings_destination(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> Result<Json<Vec<BindingJson>>, ApiError> {
    Ok(Json(
        exchange_bindings(&ctx, &caller, &vhost, &name, false).await?,
    ))
}

/// The bindings between a source exchange and a destination (404 if either is missing).
async fn between(
    ctx: &HttpContext,
    caller: &Caller,
    vhost: &str,
    source: &str,
    dest: &str,
    to_exchange: bool,
) -> Result<Vec<BindingJson>, ApiError> {
    require_sees(ctx, caller, vhost)?;
    let source = exchange_name(source);
    if !manage::has_exchange(&ctx.vhost, vhost, source)
        .await
        .map_err(amqp_error)?
    {
        return Err(ApiError::NotFound);
    }
    if to_exchange {
        if !manage::has_exchange(&ctx.vhost, vhost, dest)
            .await
            .map_err(amqp_error)?
        {
            return Err(ApiError::NotFound);
        }
    } else {
        manage::queue(&ctx.vhost, vhost, dest)
            .await
            .map_err(amqp_error)?;
    }
    let kind = if to_exchange { "exchange" } else { "queue" };
    Ok(all_bindings(ctx, caller, Some(vhost))
        .await?
        .into_iter()
        .filter(|b| b.source == source && b.destination == dest && b.destination_type == kind)
        .collect())
}

/// `POST /api/bindings/{vhost}/e/{source}/q|e/{destination}` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct BindingCreate {
    /// Default `""`.
    pub routing_key: Option<String>,
    /// Binding arguments (headers exchanges match on them).
    #[schema(value_type = Object)]
    pub arguments: Option<Value>,
}

/// Creates a binding as queue.bind / exchange.bind would (write permission on the
/// destination, read on the source); answers 201 with the new binding's URL (relative to
/// the request's, as RabbitMQ) in `Location`.
async fn create_binding(
    ctx: &HttpContext,
    caller: &Caller,
    (vhost, source, dest): (String, String, String),
    to_exchange: bool,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let o = body_object(body)?;
    let key = get_string(&o, "routing_key")?.unwrap_or_default();
    let arguments = get_arguments(&o)?;
    require_sees(ctx, caller, &vhost)?;
    let source = exchange_name(&source).to_string();
    let kind = if to_exchange {
        Resource::Exchange
    } else {
        Resource::Queue
    };
    permit(ctx, caller, &vhost, Access::Write, kind, &dest)?;
    permit(
        ctx,
        caller,
        &vhost,
        Access::Read,
        Resource::Exchange,
        &source,
    )?;
    manage::declare(
        &ctx.vhost,
        &manage::Declare::Binding {
            vhost: vhost.clone(),
            source,
            destination: dest.clone(),
            to_exchange,
            routing_key: key.clone(),
            arguments: arguments.clone(),
        },
    )
    .await
    .map_err(amqp_error)?;
    // RabbitMQ's Location: the binding's URL relative to the request's (whose last segment
    // is the destination), each part quoted again as its `rabbit_mgmt_format:url` does.
    let location = format!(
        "{}/{}",
        quote_plus(&dest),
        quote_plus(&properties_key(&key, &arguments))
    );
    Ok((StatusCode::CREATED, [(header::LOCATION, location)]).into_response())
}

/// The binding named by `props` (a properties key) between source and destination.
async fn find_binding(
    ctx: &HttpContext,
    caller: &Caller,
    (vhost, source, dest, props): (String, String, String, String),
    to_exchange: bool,
) -> Result<BindingJson, ApiError> {
    between(ctx, caller, &vhost, &source, &dest, to_exchange)
        .await?
        .into_iter()
        .find(|b| b.properties_key == props || percent_decode(&b.properties_key) == props)
        .ok_or(ApiError::NotFound)
}

async fn remove_binding(
    ctx: &HttpContext,
    caller: &Caller,
    parts: (String, String, String, String),
    to_exchange: bool,
) -> Result<StatusCode, ApiError> {
    let vhost = parts.0.clone();
    let b = find_binding(ctx, caller, parts, to_exchange).await?;
    let kind = if to_exchange {
        Resource::Exchange
    } else {
        Resource::Queue
    };
    permit(ctx, caller, &vhost, Access::Write, kind, &b.destination)?;
    permit(
        ctx,
        caller,
        &vhost,
        Access::Read,
        Resource::Exchange,
        &b.source,
    )?;
    if b.source.is_empty() {
        // The default exchange's implicit bindings cannot be removed.
        return Err(ApiError::Forbidden);
    }
    let binding = Binding {
        exchange: b.source.clone(),
        queue: b.destination.clone(),
        key: b.routing_key.clone(),
        arguments: String::new(),
        to_exchange,
    };
    manage::unbind(
        &ctx.vhost,
        &vhost,
        &binding,
        &manage::field_table(&b.arguments),
    )
    .await
    .map_err(amqp_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The bindings between an exchange and a queue.
#[utoipa::path(
    get,
    path = "/api/bindings/{vhost}/e/{source}/q/{destination}",
    tag = "bindings",
    params(
        ("vhost" = String, Path, description = "The vhost (`%2F` for `/`)"),
        ("source" = String, Path, description = "The exchange"),
        ("destination" = String, Path, description = "The queue")
    ),
    responses(
        (status = 200, body = [BindingJson]),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody),
        (status = 404, description = "No such vhost, exchange or queue", body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)
    )
)]
async fn list_queue_bindings_between(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path((vhost, source, dest)): Path<(String, String, String)>,
) -> Result<Json<Vec<BindingJson>>, ApiError> {
    Ok(Json(
        between(&ctx, &caller, &vhost, &source, &dest, false).await?,
    ))
}

/// Binds a queue to an exchange (as queue.bind).
#[utoipa::path(
    post,
    path = "/api/bindings/{vhost}/e/{source}/q/{destination}",
    tag = "bindings",
    params(
        ("vhost" = String, Path, description = "The vhost (`%2F` for `/`)"),
        ("source" = String, Path, description = "The exchange"),
        ("destination" = String, Path, description = "The queue")
    ),
    request_body(content = BindingCreate, content_type = "application/json"),
    responses(
        (status = 201, description = "Created (or already there); `Location` names it", headers(("Location" = String, description = "The binding's URL, relative to the request's"))),
        (status = 400, description = "Bad body, or an exclusive queue of a connection", body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, description = "No permission, or the default exchange", body = super::error::ErrorBody),
        (status = 404, description = "No such vhost, exchange or queue", body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)
    )
)]
async fn create_queue_binding(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path(parts): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    create_binding(&ctx, &caller, parts, false, &body).await
}

/// One binding between an exchange and a queue.
#[utoipa::path(
    get,
    path = "/api/bindings/{vhost}/e/{source}/q/{destination}/{props}",
    tag = "bindings",
    params(
        ("vhost" = String, Path, description = "The vhost (`%2F` for `/`)"),
        ("source" = String, Path, description = "The exchange"),
        ("destination" = String, Path, description = "The queue"),
        ("props" = String, Path, description = "The binding's `properties_key`")
    ),
    responses(
        (status = 200, body = BindingJson),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody),
        (status = 404, description = "No such vhost, exchange, queue or binding", body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)
    )
)]
async fn get_queue_binding(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path(parts): Path<(String, String, String, String)>,
) -> Result<Json<BindingJson>, ApiError> {
    Ok(Json(find_binding(&ctx, &caller, parts, false).await?))
}

/// Removes a binding between an exchange and a queue (as queue.unbind).
#[utoipa::path(
    delete,
    path = "/api/bindings/{vhost}/e/{source}/q/{destination}/{props}",
    tag = "bindings",
    params(
        ("vhost" = String, Path, description = "The vhost (`%2F` for `/`)"),
        ("source" = String, Path, description = "The exchange"),
        ("destination" = String, Path, description = "The queue"),
        ("props" = String, Path, description = "The binding's `properties_key`")
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, description = "No permission, or the default exchange's implicit binding", body = super::error::ErrorBody),
        (status = 404, description = "No such vhost, exchange, queue or binding", body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)
    )
)]
async fn delete_queue_binding(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path(parts): Path<(String, String, String, String)>,
) -> Result<StatusCode, ApiError> {
    remove_binding(&ctx, &caller, parts, false).await
}

/// The bindings between two exchanges.
#[utoipa::path(
    get,
    path = "/api/bindings/{vhost}/e/{source}/e/{destination}",
    tag = "bindings",
    params(
        ("vhost" = String, Path, description = "The vhost (`%2F` for `/`)"),
        ("source" = String, Path, description = "The source exchange"),
        ("destination" = String, Path, description = "The destination exchange")
    ),
    responses(
        (status = 200, body = [BindingJson]),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody),
        (status = 404, description = "No such vhost or exchange", body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)
    )
)]
async fn list_exchange_bindings_between(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path((vhost, source, dest)): Path<(String, String, String)>,
) -> Result<Json<Vec<BindingJson>>, ApiError> {
    Ok(Json(
        between(&ctx, &caller, &vhost, &source, &dest, true).await?,
    ))
}

/// Binds an exchange to an exchange (as exchange.bind).
#[utoipa::path(
    post,
    path = "/api/bindings/{vhost}/e/{source}/e/{destination}",
    tag = "bindings",
    params(
        ("vhost" = String, Path, description = "The vhost (`%2F` for `/`)"),
        ("source" = String, Path, description = "The source exchange"),
        ("destination" = String, Path, description = "The destination exchange")
    ),
    request_body(content = BindingCreate, content_type = "application/json"),
    responses(
        (status = 201, description = "Created (or already there); `Location` names it", headers(("Location" = String, description = "The binding's URL, relative to the request's"))),
        (status = 400, description = "Bad body", body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, description = "No permission, or the default exchange", body = super::error::ErrorBody),
        (status = 404, description = "No such vhost or exchange", body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)
    )
)]
async fn create_exchange_binding(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path(parts): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    create_binding(&ctx, &caller, parts, true, &body).await
}

/// One binding between two exchanges.
#[utoipa::path(
    get,
    path = "/api/bindings/{vhost}/e/{source}/e/{destination}/{props}",
    tag = "bindings",
    params(
        ("vhost" = String, Path, description = "The vhost (`%2F` for `/`)"),
        ("source" = String, Path, description = "The source exchange"),
        ("destination" = String, Path, description = "The destination exchange"),
        ("props" = String, Path, description = "The binding's `properties_key`")
    ),
    responses(
        (status = 200, body = BindingJson),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody),
        (status = 404, description = "No such vhost, exchange or binding", body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)
    )
)]
async fn get_exchange_binding(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path(parts): Path<(String, String, String, String)>,
) -> Result<Json<BindingJson>, ApiError> {
    Ok(Json(find_binding(&ctx, &caller, parts, true).await?))
}

/// Removes a binding between two exchanges (as exchange.unbind).
#[utoipa::path(
    delete,
    path = "/api/bindings/{vhost}/e/{source}/e/{destination}/{props}",
    tag = "bindings",
    params(
        ("vhost" = String, Path, description = "The vhost (`%2F` for `/`)"),
        ("source" = String, Path, description = "The source exchange"),
        ("destination" = String, Path, description = "The destination exchange"),
        ("props" = String, Path, description = "The binding's `properties_key`")
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody),
        (status = 404, description = "No such vhost, exchange or binding", body = super::error::ErrorBody),
        (status = 503, body = super::error::ErrorBody)
    )
)]
async fn delete_exchange_binding(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path(parts): Path<(String, String, String, String)>,
) -> Result<StatusCode, ApiError> {
    remove_binding(&ctx, &caller, parts, true).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rates_come_from_the_previous_samples() {
        let mut t = rates::RateTracker::<2>::new();
        let t0 = Instant::now();
        assert_eq!(t.observe("q", t0, [0.0, 5.0]), [0.0, 0.0]);
        let r = t.observe("q", t0 + Duration::from_secs(2), [20.0, 1.0]);
        assert_eq!(r, [10.0, -2.0]);
        // Within the window the base stays the oldest sample.
        let r = t.observe("q", t0 + Duration::from_secs(4), [40.0, 1.0]);
        assert_eq!(r, [10.0, -1.0]);
        // Past it, the newest sample at least WINDOW old is the base (t0 + 2 s here).
        let r = t.observe("q", t0 + Duration::from_secs(8), [40.0, 1.0]);
        assert_eq!(r, [20.0 / 6.0, 0.0]);
        // Another key has its own series.
        assert_eq!(t.observe("other", t0, [1.0, 1.0]), [0.0, 0.0]);
        assert_eq!(t.len(), 2);
        t.forget_idle(t0 + Duration::from_secs(8) + Duration::from_secs(299));
        assert_eq!(t.len(), 1);
        t.forget_idle(t0 + Duration::from_secs(1000));
        assert!(t.is_empty());
    }

    #[test]
    fn rapid_looks_do_not_shrink_the_window() {
        let mut t = rates::RateTracker::<1>::new();
        let t0 = Instant::now();
        t.observe("q", t0, [0.0]);
        for i in 1..=50u64 {
            t.observe("q", t0 + Duration::from_millis(i), [i as f64]);
        }
        // Base is still t0: 50 over 50 ms.
        let r = t.observe("q", t0 + Duration::from_millis(50), [50.0]);
        assert!((r[0] - 1000.0).abs() < 1e-6);
    }

    #[test]
    fn properties_keys_are_rabbitmqs() {
        let none = serde_json::json!({});
        assert_eq!(properties_key("", &none), "~");
        assert_eq!(properties_key("a.b", &none), "a.b");
        assert_eq!(properties_key("my key/x~", &none), "my+key%2Fx%7E");
        let args = serde_json::json!({"x-match": "all"});
        let k = properties_key("k", &args);
        let (key, hash) = k.split_once('~').unwrap();
        assert_eq!(key, "k");
        assert_eq!(hash.len(), 6);
        assert_eq!(properties_key("k", &args), k, "stable");
        assert_ne!(
            properties_key("k", &serde_json::json!({"x-match": "any"})),
            k
        );
        assert!(properties_key("", &args).starts_with('~'));
        assert_eq!(percent_decode("my+key%2Fx%7E"), "my+key/x~");
        assert_eq!(properties_key("a.*", &none), "a.%2A");
        // Location quotes the key once more, as RabbitMQ's does.
        assert_eq!(quote_plus("a.%2A"), "a.%252A");
        assert_eq!(quote_plus("~"), "~");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("a%2"), "a%2");
    }

    fn obj(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn get_bodies_parse_as_rabbitmq_reads_them() {
        let (n, mode, b64, tr) = parse_get(&obj(serde_json::json!({
            "count": 5, "ackmode": "ack_requeue_false", "encoding": "auto", "truncate": 50000
        })))
        .unwrap();
        assert_eq!((n, mode, b64, tr), (5, GetMode::Ack, false, Some(50000)));
        // rabbitmqadmin sends numbers as strings
        let (n, _, b64, _) = parse_get(&obj(serde_json::json!({
            "count": "2", "ackmode": "reject_requeue_true", "encoding": "base64"
        })))
        .unwrap();
        assert_eq!((n, b64), (2, true));
        for bad in [
            serde_json::json!({"ackmode": "ack_requeue_true"}),
            serde_json::json!({"count": 1}),
            serde_json::json!({"count": 1, "ackmode": "peek"}),
            serde_json::json!({"count": 1, "ackmode": "ack_requeue_true", "encoding": "hex"}),
        ] {
            assert!(matches!(parse_get(&obj(bad)), Err(ApiError::BadRequest(_))));
        }
    }

    #[test]
    fn publish_bodies_parse() {
        let (k, p, body) = parse_publish(&obj(serde_json::json!({
            "properties": {"delivery_mode": 2}, "routing_key": "q",
            "payload": "aGk=", "payload_encoding": "base64"
        })))
        .unwrap();
        assert_eq!((k.as_str(), body.as_slice()), ("q", &b"hi"[..]));
        assert_eq!(*p.delivery_mode(), Some(2));
        assert!(parse_publish(&obj(serde_json::json!({"routing_key": "q"}))).is_err());
        assert!(parse_publish(&obj(serde_json::json!({
            "properties": {}, "routing_key": "q", "payload": "x", "payload_encoding": "hex"
        })))
        .is_err());
    }

    #[test]
    fn columns_keep_the_named_keys() {
        let items = vec![serde_json::json!({
            "name": "q", "messages": 3, "message_stats": {"publish": 5, "ack": 1}
        })];
        let all = listed(items.clone(), &ListParams::default()).unwrap().0;
        assert_eq!(all, Value::Array(items.clone()));
        let p = ListParams {
            columns: Some("name,message_stats.publish,missing".into()),
        };
        assert_eq!(
            listed(items, &p).unwrap().0,
            serde_json::json!([{"name": "q", "message_stats": {"publish": 5}}])
        );
    }

    #[test]
    fn bodies_and_flags() {
        assert!(body_object(&Bytes::from_static(b"")).unwrap().is_empty());
        assert!(body_object(&Bytes::from_static(b"[1]")).is_err());
        assert!(body_object(&Bytes::from_static(b"{")).is_err());
        let o = obj(serde_json::json!({"durable": "true", "auto_delete": false, "x": 1}));
        assert!(get_bool(&o, "durable", false).unwrap());
        assert!(!get_bool(&o, "auto_delete", true).unwrap());
        assert!(get_bool(&o, "missing", true).unwrap());
        assert!(get_bool(&o, "x", false).is_err());
        assert!(flag(&Some("true".into())));
        assert!(!flag(&Some("1".into())));
        assert!(!flag(&None));
    }

    #[test]
    fn payloads_are_text_or_base64() {
        let m = manage::GotMessage {
            exchange: String::new(),
            routing_key: "q".into(),
            redelivered: false,
            message_count: 0,
            properties: Default::default(),
            body: bytes_of(b"hello"),
        };
        let j = got_json(&m, false, None);
        assert_eq!(
            (j.payload.as_str(), j.payload_encoding.as_str()),
            ("hello", "string")
        );
        assert_eq!(j.properties, serde_json::json!([]));
        let j = got_json(&m, true, Some(2));
        assert_eq!((j.payload.as_str(), j.payload_bytes), ("aGU=", 5));
        let bin = manage::GotMessage {
            body: bytes_of(&[0xff, 0xfe]),
            ..m
        };
        assert_eq!(got_json(&bin, false, None).payload_encoding, "base64");
    }

    fn bytes_of(b: &[u8]) -> Bytes {
        Bytes::copy_from_slice(b)
    }
}
