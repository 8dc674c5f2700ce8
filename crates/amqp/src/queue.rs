//! One AMQP queue: a single-partition topic of the broker core plus its delivery state.
//!
//! The log holds messages and control records (see `record`); memory holds only offsets:
//! `ready` (offset -> redelivered) for messages not settled and not out with a consumer.
//! A message is delivered only once the high watermark has passed it (durable and
//! replicated), so a consumer never sees a message that a crash could take back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use amq_protocol::types::FieldTable;
use arctern_core::{Acks, Appended, Partition};
use tokio::sync::{mpsc, Notify};

use crate::codes::{core_error, AmqpError};
use crate::record::{decode_batches, encode_control, ControlKind, QueueRecord, StoredMessage};

const READ_BYTES: usize = 1 << 20;

/// A consumer as the queue knows it: where to wake and where to send a cancel.
#[derive(Debug, Clone)]
pub struct ConsumerReg {
    pub conn: u64,
    pub channel: u16,
    pub tag: String,
    pub exclusive: bool,
    pub wake: Arc<Notify>,
    /// The connection's queue for server-initiated basic.cancel (queue deleted).
    pub cancel: mpsc::UnboundedSender<(u16, String)>,
}

#[derive(Debug, Default)]
struct Inner {
    ready: BTreeMap<i64, bool>,
    consumers: Vec<ConsumerReg>,
    had_consumer: bool,
    deleted: bool,
}

#[derive(Debug)]
pub struct Queue {
    pub name: String,
    pub topic: String,
    pub durable: bool,
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    partition: Arc<Partition>,
    inner: Mutex<Inner>,
}

fn poisoned() -> AmqpError {
    AmqpError::internal("queue lock poisoned")
}

impl Queue {
    /// Opens a queue over its (leader) partition, rebuilding the ready set from the log:
    /// every message not settled is ready; those marked delivered come back redelivered.
    pub fn open(
        name: String,
        topic: String,
        durable: bool,
        exclusive_owner: Option<u64>,
        auto_delete: bool,
        arguments: FieldTable,
        partition: Arc<Partition>,
    ) -> Result<Arc<Queue>, AmqpError> {
        let mut ready = BTreeMap::new();
        let mut offset = partition.log_start_offset().map_err(|e| core_error(&e))?;
        let mut delivered = std::collections::HashSet::new();
        let mut settled = std::collections::HashSet::new();
        loop {
            let fetched = partition
                .read_to_log_end(offset, READ_BYTES)
                .map_err(|e| core_error(&e))?;
            if fetched.bytes.is_empty() {
                break;
            }
            let records = decode_batches(fetched.bytes)
                .map_err(|e| AmqpError::internal(format!("queue '{name}' log: {e}")))?;
            let Some(last) = records.last().map(|r| r.0) else {
                break;
            };
            for (o, r) in records {
                match r {
                    QueueRecord::Message(_) => {
                        ready.insert(o, false);
                    }
                    QueueRecord::Control(ControlKind::Settled, os) => settled.extend(os),
                    QueueRecord::Control(ControlKind::Delivered, os) => delivered.extend(os),
                }
            }
            if last < offset {
                break;
            }
            offset = last + 1;
        }
        ready.retain(|o, _| !settled.contains(o));
        for (o, r) in ready.iter_mut() {
            *r = delivered.contains(o);
        }
        let q = Arc::new(Queue {
            name,
            topic,
            durable,
            exclusive_owner,
            auto_delete,
            arguments,
            partition,
            inner: Mutex::new(Inner {
                ready,
                ..Inner::default()
            }),
        });
        // Wake consumers when the high watermark moves (newly committed messages).
        let weak = Arc::downgrade(&q);
        let mut changes = q.partition.subscribe_changes();
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let Some(q) = weak.upgrade() else { return };
                if q.is_deleted() {
                    return;
                }
                q.wake_consumers();
            }
        });
        Ok(q)
    }

    pub fn is_deleted(&self) -> bool {
        self.inner.lock().map(|i| i.deleted).unwrap_or(true)
    }

    /// Appends a message (ordered with other appends under the queue lock) and makes it
    /// ready; it is delivered once committed. The caller awaits `wait_stored` for confirms.
    pub fn append(&self, batch: Vec<u8>) -> Result<Appended, AmqpError> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        if inner.deleted {
            return Err(AmqpError::not_found(format!(
                "queue '{}' was deleted",
                self.name
            )));
        }
        let appended = self
            .partition
            .append(batch, Acks::All)
            .map_err(|e| core_error(&e))?;
        inner.ready.insert(appended.outcome.base_offset, false);
        Ok(appended)
    }

    /// Resolves once an append is durable and replicated per min.insync.replicas.
    pub fn stored(
        &self,
        appended: Appended,
    ) -> impl std::future::Future<Output = Result<(), AmqpError>> + Send + 'static {
        let p = Arc::clone(&self.partition);
        async move {
            p.wait_acknowledgeable(&appended)
                .await
                .map_err(|e| core_error(&e))
        }
    }

    /// The oldest ready message that is committed, taken out of the ready set.
    pub fn take_next(&self) -> Option<(i64, bool)> {
        let hw = self.partition.high_watermark();
        let mut inner = self.inner.lock().ok()?;
        let (&o, _) = inner.ready.iter().next()?;
        if o >= hw {
            return None;
        }
        inner.ready.remove(&o).map(|r| (o, r))
    }

    /// Reads one stored message.
    pub fn read(&self, offset: i64) -> Result<StoredMessage, AmqpError> {
        let fetched = self
            .partition
            .read_to_log_end(offset, 1)
            .map_err(|e| core_error(&e))?;
        let records = decode_batches(fetched.bytes)
            .map_err(|e| AmqpError::internal(format!("queue '{}' log: {e}", self.name)))?;
        records
            .into_iter()
            .find_map(|(o, r)| match r {
                QueueRecord::Message(m) if o == offset => Some(m),
                _ => None,
            })
            .ok_or_else(|| AmqpError::internal(format!("no message at offset {offset}")))
    }

    /// Puts delivered messages back (redelivered) and wakes consumers.
    pub fn requeue(&self, offsets: &[i64]) {
        if offsets.is_empty() {
            return;
        }
        if let Ok(mut inner) = self.inner.lock() {
            if inner.deleted {
                return;
            }
            for o in offsets {
                inner.ready.insert(*o, true);
            }
        }
        self.wake_consumers();
    }

    /// Records settlements (acks, rejects without requeue) in the log. Not awaited: a
    /// settlement lost to a crash only means a redelivery (at-least-once).
    pub fn settle(&self, offsets: &[i64]) {
        self.control(ControlKind::Settled, offsets);
    }

    /// Records that messages went out, so a restart redelivers them with redelivered=true.
    pub fn mark_delivered(&self, offsets: &[i64]) {
        self.control(ControlKind::Delivered, offsets);
    }

    fn control(&self, kind: ControlKind, offsets: &[i64]) {
        if offsets.is_empty() || self.is_deleted() {
            return;
        }
        match encode_control(kind, offsets, arctern_core::now_ms()) {
            Ok(b) => {
                if let Err(e) = self.partition.append(b, Acks::Leader) {
                    tracing::warn!(queue = %self.name, error = %e, "cannot record delivery state");
                }
            }
            Err(e) => {
                tracing::error!(queue = %self.name, error = %e, "cannot encode delivery state")
            }
        }
    }

    /// Drops every ready message (queue.purge), recording it; returns how many.
    pub fn purge(&self) -> u32 {
        let purged: Vec<i64> = match self.inner.lock() {
            Ok(mut inner) => std::mem::take(&mut inner.ready).into_keys().collect(),
            Err(_) => return 0,
        };
        self.settle(&purged);
        purged.len() as u32
    }

    pub fn message_count(&self) -> u32 {
        self.inner.lock().map(|i| i.ready.len() as u32).unwrap_or(0)
    }

    pub fn consumer_count(&self) -> u32 {
        self.inner
            .lock()
            .map(|i| i.consumers.len() as u32)
            .unwrap_or(0)
    }

    /// Registers a consumer; refuses an exclusive one when others exist and any when an
    /// exclusive one exists (ACCESS_REFUSED, as RabbitMQ).
    pub fn add_consumer(&self, c: ConsumerReg) -> Result<(), AmqpError> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        if inner.consumers.iter().any(|o| o.exclusive) {
            return Err(AmqpError::refused(format!(
                "queue '{}' in vhost '/' in exclusive use",
                self.name
            )));
        }
        if c.exclusive && !inner.consumers.is_empty() {
            return Err(AmqpError::refused(format!(
                "queue '{}' in vhost '/' in exclusive use",
                self.name
            )));
        }
        inner.consumers.push(c);
        inner.had_consumer = true;
        Ok(())
    }

    /// Removes a consumer; returns whether the queue is now auto-deletable.
    pub fn remove_consumer(&self, conn: u64, channel: u16, tag: &str) -> bool {
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        inner
            .consumers
            .retain(|c| !(c.conn == conn && c.channel == channel && c.tag == tag));
        self.auto_delete && inner.had_consumer && inner.consumers.is_empty() && !inner.deleted
    }

    pub fn wake_consumers(&self) {
        if let Ok(inner) = self.inner.lock() {
            for c in &inner.consumers {
                c.wake.notify_one();
            }
        }
    }

    /// Marks the queue deleted and returns its consumers (to be cancelled) and the number
    /// of ready messages it held.
    pub fn mark_deleted(&self) -> (Vec<ConsumerReg>, u32) {
        match self.inner.lock() {
            Ok(mut inner) => {
                inner.deleted = true;
                let n = inner.ready.len() as u32;
                inner.ready.clear();
                (std::mem::take(&mut inner.consumers), n)
            }
            Err(_) => (Vec::new(), 0),
        }
    }
}
