//! Management operations on queues (what rabbitmqctl's `list_queues`, `purge_queue` and
//! `delete_queue` and the management API's `/api/queues` do): one place that the local
//! admin socket and the HTTP API both call. They act on the node serving the vhosts
//! (the home); elsewhere the vhosts hold no queues and the list is empty.

use std::sync::Arc;

use arctern_metadata::DEFAULT_VHOST;
use serde::{Deserialize, Serialize};

use crate::codes::AmqpError;
use crate::vhost::Vhost;

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

async fn instance(root: &Arc<Vhost>, vhost: &str) -> Result<Arc<Vhost>, AmqpError> {
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
