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

use crate::codes::{AmqpError, NOT_ALLOWED};
use crate::vhost::{QueueSpec, Route, Vhost};

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

#[cfg(test)]
mod tests {
    use super::*;

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
