//! RabbitMQ's aliveness test (`/api/aliveness-test/{vhost}`), in-process: declare a queue,
//! publish a message to it through the default exchange, wait until it is stored, and get
//! it back — the path a client's publish and basic.get take, without a connection.

use std::sync::Arc;

use amq_protocol::protocol::BasicProperties;
use bytes::Bytes;

use crate::codes::AmqpError;
use crate::queue::Enqueued;
use crate::record::{encode_message, StoredMessage};
use crate::vhost::{QueueSpec, Vhost};

/// How many older messages the test drops looking for its own (a previous test that
/// failed half-way may have left some).
const MAX_STALE: usize = 100;

/// Runs the test in `vhost` on the node serving the vhosts (the caller checked it is this
/// one): `Ok` once `payload` went through `queue` and back.
pub async fn aliveness(
    root: &Arc<Vhost>,
    vhost: &str,
    queue: &str,
    payload: &[u8],
) -> Result<(), AmqpError> {
    let vh = root
        .vhost_instance(vhost)
        .await?
        .ok_or_else(|| AmqpError::not_found(format!("no vhost '{vhost}'")))?;
    // RabbitMQ declares it non-durable and leaves it in place for the next test.
    let spec = QueueSpec {
        name: queue.to_string(),
        generated: false,
        passive: false,
        durable: false,
        exclusive: false,
        auto_delete: false,
        arguments: Default::default(),
    };
    vh.queue_declare(0, spec).await?;
    let q = vh.queue(0, queue)?;
    let msg = StoredMessage {
        exchange: String::new(),
        routing_key: queue.to_string(),
        properties: Bytes::from(crate::wire::encode_properties(&BasicProperties::default())),
        body: Bytes::copy_from_slice(payload),
        timestamp: arctern_core::now_ms(),
    };
    let batch = encode_message(&msg, msg.timestamp);
    match q.append(batch, payload.len() as u64, None, None)? {
        Enqueued::Stored(appended) => q.stored(appended).await?,
        Enqueued::Refused => {
            return Err(AmqpError::internal(format!(
                "queue '{queue}' refused the test message (it is full)"
            )))
        }
    }
    for _ in 0..=MAX_STALE {
        let Some((offset, entry)) = q.take_next(u64::MAX, None) else {
            break;
        };
        let got = match q.read(offset) {
            Ok(m) => m,
            Err(e) => {
                q.requeue(&[(offset, entry)]);
                return Err(e);
            }
        };
        q.settle(&[offset]);
        if got.body.as_ref() == payload {
            return Ok(());
        }
    }
    Err(AmqpError::internal(format!(
        "the test message did not come back from queue '{queue}'"
    )))
}
