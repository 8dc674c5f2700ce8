//! Management operations on queues (what rabbitmqctl's `list_queues`, `purge_queue` and
//! `delete_queue` and the management API's `/api/queues` do): one place that the local
//! admin socket and the HTTP API both call. They act on the node serving the vhosts
//! (the AMQP home), waiting a moment for a fresh node to take that role; on another node
//! they fail naming the home's AMQP endpoint.

use std::sync::Arc;
use std::time::Duration;

use arctern_metadata::DEFAULT_VHOST;
use serde::{Deserialize, Serialize};

use amq_protocol::types::{AMQPValue, FieldTable};

pub use amq_protocol::protocol::BasicProperties;
use bytes::Bytes;

use crate::codes::{AmqpError, NOT_ALLOWED};
use crate::queue::{Enqueued, Queue};
use crate::record::{encode_message, StoredMessage};
use crate::vhost::{Binding, Exchange, QueueSpec, Route, Vhost};

/// One queue as `rabbitmqctl list_queues` / `GET /api/queues` report it (RabbitMQ's keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueInfo {
    pub vhost: String,
    pub name: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub exclusive: bool,
    pub messages_ready: u64,
    pub messages_unacknowledged: u64,
    pub messages: u64,
    pub consumers: u64,
}

/// The queues of `vhost` (all vhosts with `None`), sorted by vhost then name.
pub async fn list_queues(
    root: &Arc<Vhost>,
    vhost: Option<&str>,
) -> Result<Vec<QueueInfo>, AmqpError> {
    let names: Vec<String> = match vhost {
        Some(v) => vec![v.to_string()],
        None => {
            let cluster = root.subscribe_metadata().borrow().clone();
            let mut names: Vec<String> = cluster.vhosts.keys().cloned().collect();
            if !names.iter().any(|n| n == DEFAULT_VHOST) {
                names.push(DEFAULT_VHOST.to_string());
            }
            names
        }
    };
    serving(root).await?;
    let mut out = Vec::new();
    for name in names {
        let Some(vh) = root.vhost_instance(&name).await? else {
            if vhost.is_some() {
                return Err(AmqpError::not_found(format!("no vhost '{name}'")));
            }
            continue;
        };
        for q in vh.queues() {
            let ready = u64::from(q.message_count());
            let unacked = u64::from(q.unacked_count());
            out.push(QueueInfo {
                vhost: name.clone(),
                name: q.name.clone(),
                durable: q.durable,
                auto_delete: q.auto_delete,
                exclusive: q.exclusive_owner.is_some(),
                messages_ready: ready,
                messages_unacknowledged: unacked,
                messages: ready + unacked,
                consumers: u64::from(q.consumer_count()),
            });
        }
    }
    out.sort_by(|a, b| (&a.vhost, &a.name).cmp(&(&b.vhost, &b.name)));
    Ok(out)
}

/// How long an operation waits for this node to start serving the vhosts (a fresh node
/// takes the AMQP home role a moment after start).
const SERVE_WAIT: Duration = Duration::from_secs(15);

/// Waits until this node serves the vhosts; an error naming the node that does when
/// another one holds the home role (its queues live there).
async fn serving(root: &Arc<Vhost>) -> Result<(), AmqpError> {
    match root.route_connection(SERVE_WAIT, false).await {
        Some(Route::Here(_)) => Ok(()),
        Some(Route::Forward(endpoint)) => Err(AmqpError::new(
            NOT_ALLOWED,
            format!("the vhosts are served by the node at {endpoint}; run this against that node"),
        )),
        None => Err(AmqpError::new(
            NOT_ALLOWED,
            "no node serves the vhosts yet (try again in a moment)",
        )),
    }
}

async fn instance(root: &Arc<Vhost>, vhost: &str) -> Result<Arc<Vhost>, AmqpError> {
    serving(root).await?;
    root.vhost_instance(vhost)
        .await?
        .ok_or_else(|| AmqpError::not_found(format!("no vhost '{vhost}'")))
}

/// Drops the ready messages of a queue (an operator's purge works on exclusive queues
/// too); returns how many.
pub async fn purge_queue(root: &Arc<Vhost>, vhost: &str, name: &str) -> Result<u32, AmqpError> {
    let vh = instance(root, vhost).await?;
    let q = vh
        .queues()
        .into_iter()
        .find(|q| q.name == name)
        .ok_or_else(|| AmqpError::not_found(format!("no queue '{name}' in vhost '{vhost}'")))?;
    Ok(q.purge())
}

/// Deletes a queue (its consumers are cancelled); returns how many messages it held.
pub async fn delete_queue(root: &Arc<Vhost>, vhost: &str, name: &str) -> Result<u32, AmqpError> {
    let vh = instance(root, vhost).await?;
    let q = vh
        .queues()
        .into_iter()
        .find(|q| q.name == name)
        .ok_or_else(|| AmqpError::not_found(format!("no queue '{name}' in vhost '{vhost}'")))?;
    // As its owner, so an exclusive queue goes too (as auto-delete does).
    vh.queue_delete(q.exclusive_owner.unwrap_or(0), name, false, false)
        .await
}

/// One durable definition to declare (an import of RabbitMQ's definitions JSON), with
/// RabbitMQ's plain JSON arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Declare {
    Exchange {
        vhost: String,
        name: String,
        kind: String,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: serde_json::Value,
    },
    Queue {
        vhost: String,
        name: String,
        durable: bool,
        auto_delete: bool,
        arguments: serde_json::Value,
    },
    Binding {
        vhost: String,
        source: String,
        destination: String,
        /// `destination` names an exchange (exchange-to-exchange binding).
        to_exchange: bool,
        routing_key: String,
        arguments: serde_json::Value,
    },
}

/// Plain JSON -> an AMQP value (integers as signed 64-bit, as RabbitMQ's import does).
fn amqp_value(v: &serde_json::Value) -> AMQPValue {
    use serde_json::Value;
    match v {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AMQPValue::LongLongInt(i),
            None => AMQPValue::Double(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => AMQPValue::LongString(s.as_str().into()),
        Value::Array(a) => {
            AMQPValue::FieldArray(a.iter().map(amqp_value).collect::<Vec<_>>().into())
        }
        Value::Object(_) => AMQPValue::FieldTable(field_table(v)),
    }
}

/// Plain JSON object -> a field table (anything else: empty).
pub fn field_table(v: &serde_json::Value) -> FieldTable {
    let mut t = FieldTable::default();
    if let serde_json::Value::Object(o) = v {
        for (k, v) in o {
            t.insert(k.as_str().into(), amqp_value(v));
        }
    }
    t
}

/// Declares one definition (idempotent like a client's declare: an equivalent one
/// already there is fine; a different one is a 406).
pub async fn declare(root: &Arc<Vhost>, d: &Declare) -> Result<(), AmqpError> {
    match d {
        Declare::Exchange {
            vhost,
            name,
            kind,
            durable,
            auto_delete,
            internal,
            arguments,
        } => {
            instance(root, vhost)
                .await?
                .exchange_declare(
                    name,
                    kind,
                    false,
                    *durable,
                    *auto_delete,
                    *internal,
                    field_table(arguments),
                )
                .await
        }
        Declare::Queue {
            vhost,
            name,
            durable,
            auto_delete,
            arguments,
        } => {
            let spec = QueueSpec {
                name: name.clone(),
                generated: false,
                passive: false,
                durable: *durable,
                exclusive: false,
                auto_delete: *auto_delete,
                arguments: field_table(arguments),
            };
            instance(root, vhost)
                .await?
                .queue_declare(0, spec)
                .await
                .map(|_| ())
        }
        Declare::Binding {
            vhost,
            source,
            destination,
            to_exchange,
            routing_key,
            arguments,
        } => {
            instance(root, vhost)
                .await?
                .bind(
                    0,
                    destination,
                    source,
                    routing_key,
                    &field_table(arguments),
                    false,
                    *to_exchange,
                )
                .await
        }
    }
}

// ---- the management API's operations (`/api/queues`, `/api/exchanges`, `/api/bindings`) ----

/// The vhost names to look at: `Some(v)` alone, else every vhost of the metadata.
fn vhost_names(root: &Arc<Vhost>, vhost: Option<&str>) -> Vec<String> {
    match vhost {
        Some(v) => vec![v.to_string()],
        None => {
            let cluster = root.subscribe_metadata().borrow().clone();
            let mut names: Vec<String> = cluster.vhosts.keys().cloned().collect();
            if !names.iter().any(|n| n == DEFAULT_VHOST) {
                names.push(DEFAULT_VHOST.to_string());
            }
            names.sort();
            names
        }
    }
}

/// The instances of `vhost` (every vhost with `None`; a named missing one is a 404).
async fn instances(
    root: &Arc<Vhost>,
    vhost: Option<&str>,
) -> Result<Vec<(String, Arc<Vhost>)>, AmqpError> {
    serving(root).await?;
    let mut out = Vec::new();
    for name in vhost_names(root, vhost) {
        match root.vhost_instance(&name).await? {
            Some(vh) => out.push((name, vh)),
            None if vhost.is_some() => {
                return Err(AmqpError::not_found(format!("no vhost '{name}'")))
            }
            None => {}
        }
    }
    Ok(out)
}

/// The live queues of `vhost` (all with `None`), with their vhost, sorted by vhost and name.
pub async fn queues(
    root: &Arc<Vhost>,
    vhost: Option<&str>,
) -> Result<Vec<(String, Arc<Queue>)>, AmqpError> {
    let mut out = Vec::new();
    for (name, vh) in instances(root, vhost).await? {
        for q in vh.queues() {
            if !q.is_deleted() {
                out.push((name.clone(), q));
            }
        }
    }
    out.sort_by(|a, b| (&a.0, &a.1.name).cmp(&(&b.0, &b.1.name)));
    Ok(out)
}

/// One queue (404 when missing).
pub async fn queue(root: &Arc<Vhost>, vhost: &str, name: &str) -> Result<Arc<Queue>, AmqpError> {
    instance(root, vhost)
        .await?
        .queues()
        .into_iter()
        .find(|q| q.name == name && !q.is_deleted())
        .ok_or_else(|| AmqpError::not_found(format!("no queue '{name}' in vhost '{vhost}'")))
}

/// Declares a queue as a client's queue.declare would (not exclusive); returns whether it
/// is new (`false`: an equivalent one was there; a different one is a 406).
pub async fn declare_queue(
    root: &Arc<Vhost>,
    vhost: &str,
    name: &str,
    durable: bool,
    auto_delete: bool,
    arguments: &serde_json::Value,
) -> Result<bool, AmqpError> {
    let vh = instance(root, vhost).await?;
    let existed = vh.has_queue(name);
    let spec = QueueSpec {
        name: name.to_string(),
        generated: false,
        passive: false,
        durable,
        exclusive: false,
        auto_delete,
        arguments: field_table(arguments),
    };
    vh.queue_declare(0, spec).await?;
    Ok(!existed)
}

/// Deletes a queue with queue.delete's conditions; a missing queue is a 404 here (the
/// management API's answer, unlike queue.delete's).
pub async fn delete_queue_if(
    root: &Arc<Vhost>,
    vhost: &str,
    name: &str,
    if_unused: bool,
    if_empty: bool,
) -> Result<u32, AmqpError> {
    let vh = instance(root, vhost).await?;
    let q = queue(root, vhost, name).await?;
    vh.queue_delete(q.exclusive_owner.unwrap_or(0), name, if_unused, if_empty)
        .await
}

/// What `POST /api/queues/{vhost}/{name}/get` does with the messages it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetMode {
    /// `ack_requeue_true`: back in the queue, redelivered.
    AckRequeue,
    /// `ack_requeue_false`: acknowledged (gone).
    Ack,
    /// `reject_requeue_true`: back in the queue, redelivered.
    RejectRequeue,
    /// `reject_requeue_false`: rejected (dead-lettered when the queue has a DLX).
    Reject,
}

impl GetMode {
    pub fn parse(s: &str) -> Option<GetMode> {
        match s {
            "ack_requeue_true" => Some(GetMode::AckRequeue),
            "ack_requeue_false" => Some(GetMode::Ack),
            "reject_requeue_true" => Some(GetMode::RejectRequeue),
            "reject_requeue_false" => Some(GetMode::Reject),
            _ => None,
        }
    }
}

/// One message taken by [`get_messages`].
#[derive(Debug, Clone)]
pub struct GotMessage {
    pub exchange: String,
    pub routing_key: String,
    pub redelivered: bool,
    /// Ready messages left in the queue after this one was taken.
    pub message_count: u32,
    pub properties: BasicProperties,
    pub body: Bytes,
}

/// Takes up to `count` ready messages as basic.get would, then settles them all by `mode`
/// (requeued only at the end, so one call never returns the same message twice).
pub async fn get_messages(
    root: &Arc<Vhost>,
    vhost: &str,
    name: &str,
    count: usize,
    mode: GetMode,
) -> Result<Vec<GotMessage>, AmqpError> {
    let vh = instance(root, vhost).await?;
    // Connection 0: another connection's exclusive queue is refused (RESOURCE_LOCKED).
    let q = vh.queue(0, name)?;
    q.touch();
    // Publishes stored but not yet durable are counted, not yet takeable: wait for them.
    q.committed_so_far(std::time::Duration::from_secs(5)).await;
    let mut taken = Vec::new();
    let mut out = Vec::new();
    let mut failure = None;
    while out.len() < count {
        let Some((offset, entry)) = q.take_next(u64::MAX, None) else {
            break;
        };
        let msg = match q.read(offset) {
            Ok(m) => m,
            Err(e) => {
                q.requeue(&[(offset, entry)]);
                failure = Some(e);
                break;
            }
        };
        crate::stats::add(&crate::stats::DELIVERED, 1);
        if entry.redelivered {
            crate::stats::add(&crate::stats::REDELIVERED, 1);
        }
        q.counters.delivered(entry.redelivered);
        out.push(GotMessage {
            exchange: msg.exchange,
            routing_key: msg.routing_key,
            redelivered: entry.redelivered,
            message_count: q.message_count(),
            properties: crate::wire::decode_properties(&msg.properties).unwrap_or_default(),
            body: msg.body,
        });
        taken.push((offset, entry));
    }
    let offsets: Vec<i64> = taken.iter().map(|t| t.0).collect();
    match mode {
        GetMode::AckRequeue | GetMode::RejectRequeue => q.requeue(&taken),
        GetMode::Ack => {
            crate::stats::add(&crate::stats::ACKNOWLEDGED, offsets.len() as u64);
            q.counters.acked(offsets.len() as u64);
            q.settle(&offsets);
        }
        GetMode::Reject => q.reject(&offsets),
    }
    match failure {
        Some(e) if out.is_empty() => Err(e),
        _ => Ok(out),
    }
}

/// The exchanges of `vhost` (all with `None`), sorted by vhost and name.
pub async fn exchanges(
    root: &Arc<Vhost>,
    vhost: Option<&str>,
) -> Result<Vec<(String, Exchange)>, AmqpError> {
    let mut out = Vec::new();
    for (name, vh) in instances(root, vhost).await? {
        for e in vh.exchanges() {
            out.push((name.clone(), e));
        }
    }
    out.sort_by(|a, b| (&a.0, &a.1.name).cmp(&(&b.0, &b.1.name)));
    Ok(out)
}

/// Declares an exchange (as exchange.declare); returns whether it is new.
#[allow(clippy::too_many_arguments)]
pub async fn declare_exchange(
    root: &Arc<Vhost>,
    vhost: &str,
    name: &str,
    kind: &str,
    durable: bool,
    auto_delete: bool,
    internal: bool,
    arguments: &serde_json::Value,
) -> Result<bool, AmqpError> {
    let vh = instance(root, vhost).await?;
    let existed = vh.has_exchange(name);
    vh.exchange_declare(
        name,
        kind,
        false,
        durable,
        auto_delete,
        internal,
        field_table(arguments),
    )
    .await?;
    Ok(!existed)
}

/// Deletes an exchange (404 when missing, as the management API answers).
pub async fn delete_exchange(
    root: &Arc<Vhost>,
    vhost: &str,
    name: &str,
    if_unused: bool,
) -> Result<(), AmqpError> {
    let vh = instance(root, vhost).await?;
    if !vh.has_exchange(name) {
        return Err(AmqpError::not_found(format!(
            "no exchange '{name}' in vhost '{vhost}'"
        )));
    }
    vh.exchange_delete(name, if_unused).await
}

/// Publishes one message through `exchange` as basic.publish would (not mandatory) and
/// waits until every queue it reached stored it; returns whether it reached any.
pub async fn publish(
    root: &Arc<Vhost>,
    vhost: &str,
    exchange: &str,
    routing_key: &str,
    properties: &BasicProperties,
    body: Vec<u8>,
) -> Result<bool, AmqpError> {
    let vh = instance(root, vhost).await?;
    if body.len() > vh.max_message_size() {
        return Err(AmqpError::precondition(format!(
            "message size {} is larger than configured max size {}",
            body.len(),
            vh.max_message_size()
        )));
    }
    let own_ttl =
        crate::args::message_expiration(properties.expiration().as_ref().map(|e| e.as_str()))?;
    let queues = vh.route(exchange, routing_key, properties.headers().as_ref())?;
    crate::stats::add(&crate::stats::RECEIVED, 1);
    if queues.is_empty() {
        return Ok(false);
    }
    let msg = StoredMessage {
        exchange: exchange.to_string(),
        routing_key: routing_key.to_string(),
        properties: Bytes::from(crate::wire::encode_properties(properties)),
        body: Bytes::from(body),
        timestamp: arctern_core::now_ms(),
    };
    let batch = encode_message(&msg, msg.timestamp);
    let mut waits = Vec::new();
    let mut refused = false;
    for q in &queues {
        match q.append(
            batch.clone(),
            msg.body.len() as u64,
            own_ttl,
            *properties.priority(),
        )? {
            Enqueued::Stored(a) => waits.push(q.stored(a)),
            Enqueued::Refused => {
                refused = true;
                if q.args.overflow == crate::args::Overflow::RejectPublishDlx {
                    vh.dead_letter_refused(q, msg.clone());
                }
            }
        }
    }
    for w in waits {
        w.await?;
    }
    if refused {
        // A publisher in confirm mode gets basic.nack: RabbitMQ's API says this.
        return Err(AmqpError::new(
            crate::codes::RESOURCE_ERROR,
            "Unable to publish message. Check queue limits.",
        ));
    }
    Ok(true)
}

/// The explicit bindings of `vhost` (all with `None`), with their vhost.
pub async fn bindings(
    root: &Arc<Vhost>,
    vhost: Option<&str>,
) -> Result<Vec<(String, Binding)>, AmqpError> {
    let mut out = Vec::new();
    for (name, vh) in instances(root, vhost).await? {
        for b in vh.bindings() {
            out.push((name.clone(), b));
        }
    }
    Ok(out)
}

/// Whether exchange `name` exists in `vhost` (a 404 for a missing vhost).
pub async fn has_exchange(root: &Arc<Vhost>, vhost: &str, name: &str) -> Result<bool, AmqpError> {
    Ok(instance(root, vhost).await?.has_exchange(name))
}

/// Removes a binding (queue.unbind / exchange.unbind).
pub async fn unbind(
    root: &Arc<Vhost>,
    vhost: &str,
    b: &Binding,
    arguments: &FieldTable,
) -> Result<(), AmqpError> {
    instance(root, vhost)
        .await?
        .bind(
            0,
            &b.queue,
            &b.exchange,
            &b.key,
            arguments,
            true,
            b.to_exchange,
        )
        .await
}

/// A field table as RabbitMQ's management API shows it: plain JSON (integers as numbers,
/// strings as strings; byte arrays as lossy UTF-8).
pub fn plain_table(t: &FieldTable) -> serde_json::Value {
    serde_json::Value::Object(
        t.inner()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), plain_value(v)))
            .collect(),
    )
}

pub fn plain_value(v: &AMQPValue) -> serde_json::Value {
    use serde_json::{json, Value};
    match v {
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::ShortShortInt(i) => json!(i),
        AMQPValue::ShortShortUInt(i) => json!(i),
        AMQPValue::ShortInt(i) => json!(i),
        AMQPValue::ShortUInt(i) => json!(i),
        AMQPValue::LongInt(i) => json!(i),
        AMQPValue::LongUInt(i) => json!(i),
        AMQPValue::LongLongInt(i) => json!(i),
        AMQPValue::Float(f) => json!(f),
        AMQPValue::Double(f) => json!(f),
        AMQPValue::DecimalValue(d) => {
            json!(f64::from(d.value) / 10f64.powi(i32::from(d.scale)))
        }
        AMQPValue::ShortString(s) => json!(s.as_str()),
        AMQPValue::LongString(s) => json!(String::from_utf8_lossy(s.as_bytes())),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(plain_value).collect()),
        AMQPValue::Timestamp(t) => json!(t),
        AMQPValue::FieldTable(t) => plain_table(t),
        AMQPValue::ByteArray(b) => json!(String::from_utf8_lossy(b.as_slice())),
        AMQPValue::Void => Value::Null,
    }
}

/// Binding arguments as stored in [`Binding::arguments`] -> a field table.
pub fn binding_arguments(b: &Binding) -> FieldTable {
    serde_json::from_str(&b.arguments).unwrap_or_default()
}

/// Message properties as RabbitMQ's management API shows them (only those set).
pub fn properties_json(p: &BasicProperties) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::json;
    let mut m = serde_json::Map::new();
    let mut s = |k: &str, v: &Option<amq_protocol::types::ShortString>| {
        if let Some(v) = v {
            m.insert(k.to_string(), json!(v.as_str()));
        }
    };
    s("content_type", p.content_type());
    s("content_encoding", p.content_encoding());
    s("correlation_id", p.correlation_id());
    s("reply_to", p.reply_to());
    s("expiration", p.expiration());
    s("message_id", p.message_id());
    s("type", p.kind());
    s("user_id", p.user_id());
    s("app_id", p.app_id());
    s("cluster_id", p.cluster_id());
    if let Some(h) = p.headers() {
        m.insert("headers".into(), plain_table(h));
    }
    if let Some(d) = p.delivery_mode() {
        m.insert("delivery_mode".into(), json!(d));
    }
    if let Some(d) = p.priority() {
        m.insert("priority".into(), json!(d));
    }
    if let Some(t) = p.timestamp() {
        m.insert("timestamp".into(), json!(t));
    }
    m
}

/// RabbitMQ's JSON message properties -> AMQP properties; a value of the wrong type is an
/// error naming the key (the management API's 400).
pub fn properties_from_json(v: &serde_json::Value) -> Result<BasicProperties, String> {
    use serde_json::Value;
    let mut p = BasicProperties::default();
    let obj = match v {
        Value::Object(o) => o,
        // RabbitMQ renders empty properties as `[]`; accept it back.
        Value::Array(a) if a.is_empty() => return Ok(p),
        Value::Null => return Ok(p),
        _ => return Err("properties must be an object".into()),
    };
    let text = |k: &str, v: &Value| -> Result<amq_protocol::types::ShortString, String> {
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(format!("property '{k}' must be a string")),
        };
        if s.len() > 255 {
            return Err(format!("property '{k}' is longer than 255 bytes"));
        }
        Ok(s.into())
    };
    let small = |k: &str, v: &Value| -> Result<u8, String> {
        v.as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .ok_or_else(|| format!("property '{k}' must be an integer 0..=255"))
    };
    for (k, v) in obj {
        p = match k.as_str() {
            "content_type" => p.with_content_type(text(k, v)?),
            "content_encoding" => p.with_content_encoding(text(k, v)?),
            "correlation_id" => p.with_correlation_id(text(k, v)?),
            "reply_to" => p.with_reply_to(text(k, v)?),
            "expiration" => p.with_expiration(text(k, v)?),
            "message_id" => p.with_message_id(text(k, v)?),
            "type" => p.with_type(text(k, v)?),
            "user_id" => p.with_user_id(text(k, v)?),
            "app_id" => p.with_app_id(text(k, v)?),
            "cluster_id" => p.with_cluster_id(text(k, v)?),
            "delivery_mode" => p.with_delivery_mode(small(k, v)?),
            "priority" => p.with_priority(small(k, v)?),
            "timestamp" => p.with_timestamp(
                v.as_u64()
                    .ok_or_else(|| "property 'timestamp' must be an integer".to_string())?,
            ),
            "headers" => {
                if !v.is_object() {
                    return Err("property 'headers' must be an object".into());
                }
                p.with_headers(field_table(v))
            }
            other => return Err(format!("unknown message property '{other}'")),
        };
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_round_trip_through_rabbitmq_json() {
        let v = serde_json::json!({
            "content_type": "text/plain", "delivery_mode": 2, "priority": 3,
            "headers": {"a": 1, "b": "x"}, "timestamp": 1700000000, "type": "t",
        });
        let p = properties_from_json(&v).unwrap();
        assert_eq!(serde_json::Value::Object(properties_json(&p)), v);
        assert!(properties_from_json(&serde_json::json!([]))
            .unwrap()
            .content_type()
            .is_none());
        assert!(properties_from_json(&serde_json::json!({"delivery_mode": "x"})).is_err());
        assert!(properties_from_json(&serde_json::json!({"bogus": 1})).is_err());
    }

    #[test]
    fn get_modes_are_rabbitmqs() {
        assert_eq!(
            GetMode::parse("ack_requeue_true"),
            Some(GetMode::AckRequeue)
        );
        assert_eq!(GetMode::parse("ack_requeue_false"), Some(GetMode::Ack));
        assert_eq!(
            GetMode::parse("reject_requeue_true"),
            Some(GetMode::RejectRequeue)
        );
        assert_eq!(
            GetMode::parse("reject_requeue_false"),
            Some(GetMode::Reject)
        );
        assert_eq!(GetMode::parse("peek"), None);
    }

    #[test]
    fn field_tables_become_plain_json() {
        let t =
            field_table(&serde_json::json!({"x-max-length": 10, "s": "v", "n": {"a": [1, true]}}));
        assert_eq!(
            plain_table(&t),
            serde_json::json!({"x-max-length": 10, "s": "v", "n": {"a": [1, true]}})
        );
    }

    #[test]
    fn plain_json_arguments_become_a_field_table() {
        let t = field_table(&serde_json::json!({"x-max-length": 10, "x-queue-mode": "lazy"}));
        let m = t.inner();
        assert_eq!(m.get("x-max-length"), Some(&AMQPValue::LongLongInt(10)));
        assert_eq!(
            m.get("x-queue-mode"),
            Some(&AMQPValue::LongString("lazy".into()))
        );
        assert!(field_table(&serde_json::json!([1])).inner().is_empty());
    }
}
