//! One AMQP queue: a single-partition topic of the broker core plus its delivery state.
//!
//! The log holds messages and control records (see `record`); memory holds only a small
//! `Entry` per message not settled and not out with a consumer (`ready`, in delivery
//! order: by priority, highest first, then by offset; without `x-max-priority` every
//! message has priority 0, so that is log order).
//! A message is delivered only once the high watermark has passed it (durable and
//! replicated), so a consumer never sees a message that a crash could take back.
//!
//! Messages that die (rejected, expired, over the length limit, over the delivery limit)
//! leave `ready` at once and wait in `dead` for the vhost's housekeeping, which
//! dead-letters them (when the queue has a dead-letter exchange) and only then records
//! them settled: a crash in between brings them back, it never loses them.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amq_protocol::types::FieldTable;
use arctern_core::{Acks, Appended, Partition};
use tokio::sync::{mpsc, watch, Notify};

use crate::args::{message_expiration, Overflow, QueueArgs};
use crate::codes::{core_error, AmqpError};
use crate::deadletter::DeathReason;
use crate::record::{decode_batches, encode_control, ControlKind, QueueRecord, StoredMessage};
use crate::wire;

const READ_BYTES: usize = 1 << 20;
/// How often a queue looks for fully settled segments to delete.
const RECLAIM_EVERY: Duration = Duration::from_secs(1);

/// A consumer as the queue knows it: where to wake and where to send a cancel.
#[derive(Debug, Clone)]
pub struct ConsumerReg {
    pub conn: u64,
    pub channel: u16,
    pub tag: String,
    pub exclusive: bool,
    /// `x-priority` (RabbitMQ's consumer priorities, default 0).
    pub priority: i32,
    /// Whether the consumer could take a message now (it has credit): a consumer of
    /// lower priority only takes messages while no higher one is active.
    pub active: Arc<std::sync::atomic::AtomicBool>,
    pub wake: Arc<Notify>,
    /// The connection's queue for server-initiated basic.cancel (queue deleted).
    pub cancel: mpsc::UnboundedSender<(u16, String)>,
}

/// What the queue keeps in memory about one unsettled message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub redelivered: bool,
    /// When its TTL passes (ms since the epoch), if it has one.
    pub expires_at: Option<i64>,
    /// Body size, for `x-max-length-bytes`.
    pub bytes: u64,
    /// How often it was requeued after a delivery, for `x-delivery-limit` (counted since
    /// the broker started).
    pub returns: u32,
    /// Its priority in this queue (`x-max-priority`; 0 without).
    pub priority: u8,
}

impl Entry {
    fn expired(&self, now_ms: i64) -> bool {
        self.expires_at.is_some_and(|t| t <= now_ms)
    }
}

/// When a message appended at `timestamp` expires: the queue's TTL or the message's own
/// `expiration`, whichever is shorter.
fn expiry(queue_ttl: Option<i64>, message_ttl: Option<i64>, timestamp: i64) -> Option<i64> {
    let ttl = match (queue_ttl, message_ttl) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    ttl.map(|t| timestamp.saturating_add(t))
}

/// The ready messages in delivery order: priority (highest first), then offset (FIFO
/// within a priority; a requeued message goes back to its place). Without priorities
/// everything is at level 0, which is log order.
#[derive(Debug, Default)]
struct Ready {
    map: BTreeMap<(Reverse<u8>, i64), Entry>,
    bytes: u64,
}

impl Ready {
    fn len(&self) -> usize {
        self.map.len()
    }

    /// Adds (or replaces) a message; keeps the body byte count.
    fn insert(&mut self, offset: i64, e: Entry) {
        self.bytes += e.bytes;
        if let Some(old) = self.map.insert((Reverse(e.priority), offset), e) {
            self.bytes = self.bytes.saturating_sub(old.bytes);
        }
    }

    fn remove(&mut self, offset: i64, priority: u8) -> Option<Entry> {
        let e = self.map.remove(&(Reverse(priority), offset))?;
        self.bytes = self.bytes.saturating_sub(e.bytes);
        Some(e)
    }

    /// The next message to deliver.
    fn first(&self) -> Option<(i64, Entry)> {
        self.map.iter().next().map(|(k, e)| (k.1, *e))
    }

    /// The oldest message of each priority level, highest level first (at most 256).
    fn heads(&self) -> Vec<(i64, Entry)> {
        let mut out = Vec::new();
        let mut from = Bound::Unbounded;
        while let Some((&(Reverse(p), o), e)) = self.map.range((from, Bound::Unbounded)).next() {
            out.push((o, *e));
            if p == 0 {
                break;
            }
            from = Bound::Included((Reverse(p - 1), i64::MIN));
        }
        out
    }

    /// The next message to deliver among those below `hw` (committed): the head of the
    /// highest level whose head is committed. Within a level offsets grow, so a level
    /// whose head is not committed has nothing committed after it either.
    fn first_below(&self, hw: i64) -> Option<(i64, Entry)> {
        if let Some((o, e)) = self.first() {
            if o < hw {
                return Some((o, e));
            }
            if e.priority == 0 {
                return None;
            }
        }
        self.heads().into_iter().find(|(o, _)| *o < hw)
    }

    /// The lowest offset held (what the log must keep).
    fn min_offset(&self) -> Option<i64> {
        self.heads().into_iter().map(|(o, _)| o).min()
    }

    /// Empties the set; returns the offsets it held.
    fn take_all(&mut self) -> Vec<i64> {
        self.bytes = 0;
        std::mem::take(&mut self.map)
            .into_keys()
            .map(|(_, o)| o)
            .collect()
    }
}

/// Who takes a message from `Queue::take_next`: a consumer's priority and identity (its
/// shared `active` flag), for consumer priorities and single active consumer.
#[derive(Debug, Clone, Copy)]
pub struct Taker<'a> {
    pub priority: i32,
    pub active: &'a Arc<std::sync::atomic::AtomicBool>,
}

/// Resolves once a stored message is durable and replicated (or failed to be).
pub type StoredWait =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), AmqpError>> + Send>>;

/// One message for `Queue::append_many`: its one-record batch, body size and own TTL.
#[derive(Debug, Clone)]
pub struct QueuedMessage {
    pub batch: Vec<u8>,
    pub bytes: u64,
    pub own_ttl: Option<i64>,
    /// The `priority` property as published (the queue caps it, see `QueueArgs`).
    pub priority: Option<u8>,
}

/// The outcome of an append.
#[derive(Debug)]
pub enum Enqueued {
    Stored(Appended),
    /// Refused by `x-overflow=reject-publish(-dlx)`: the queue is full.
    Refused,
}

#[derive(Debug)]
struct Inner {
    ready: Ready,
    /// Messages that died, waiting to be dead-lettered (or dropped) by housekeeping.
    dead: Vec<(i64, DeathReason)>,
    /// Taken out of `ready` and not settled yet: with a consumer, dying, or being
    /// dead-lettered. With `ready` it bounds what the log must keep.
    out: BTreeSet<i64>,
    /// In registration order.
    consumers: Vec<ConsumerReg>,
    /// With `x-single-active-consumer`: the consumer that receives (its `active` flag).
    single_active: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// Offsets out with the single active consumer and not settled, requeued or rejected
    /// yet: a consumer of higher priority takes over only once this is empty.
    active_out: BTreeSet<i64>,
    had_consumer: bool,
    deleted: bool,
    /// Last declare, basic.get or consumer change, for `x-expires`.
    last_used: Instant,
    /// Last look for settled segments to reclaim.
    reclaimed_at: Instant,
    /// Reused to join the messages of one `append_many`.
    join_buf: Vec<u8>,
}

/// The largest join buffer a queue keeps between appends (a connection flushes its
/// publishes at about 1 MiB).
const JOIN_BUF_KEEP: usize = 2 << 20;

impl Inner {
    fn take(&mut self, offset: i64, priority: u8) -> Option<Entry> {
        let e = self.ready.remove(offset, priority)?;
        self.out.insert(offset);
        Some(e)
    }
    fn put(&mut self, offset: i64, e: Entry) {
        self.out.remove(&offset);
        self.active_out.remove(&offset);
        self.ready.insert(offset, e);
    }

    /// Offsets the single active consumer no longer holds; true when it now holds none
    /// (a waiting consumer of higher priority may take over).
    fn release_active(&mut self, offsets: &[i64]) -> bool {
        if self.active_out.is_empty() {
            return false;
        }
        for o in offsets {
            self.active_out.remove(o);
        }
        self.active_out.is_empty()
    }

    /// Single active consumer with priorities (RabbitMQ's quorum queues since 3.12): a
    /// registered consumer of higher priority than the active one becomes active once the
    /// active one holds no unsettled message; until then the active one gets no more.
    /// Returns whether the active consumer changed.
    fn switch_single_active(&mut self) -> bool {
        let Some(best) = next_single_active(&self.consumers) else {
            return false;
        };
        let current = self.single_active.as_ref().and_then(|a| {
            self.consumers
                .iter()
                .find(|c| Arc::ptr_eq(&c.active, a))
                .map(|c| c.priority)
        });
        let best_priority = self
            .consumers
            .iter()
            .find(|c| Arc::ptr_eq(&c.active, &best))
            .map_or(i32::MIN, |c| c.priority);
        let outranked = current.is_none_or(|p| best_priority > p);
        if outranked && self.active_out.is_empty() {
            self.single_active = Some(best);
            return true;
        }
        false
    }

    /// Whether a consumer of higher priority waits to take over from the active one.
    fn single_active_outranked(&self) -> bool {
        let Some(a) = self.single_active.as_ref() else {
            return false;
        };
        let Some(p) = self
            .consumers
            .iter()
            .find(|c| Arc::ptr_eq(&c.active, a))
            .map(|c| c.priority)
        else {
            return false;
        };
        self.consumers.iter().any(|c| c.priority > p)
    }
}

#[derive(Debug)]
pub struct Queue {
    pub name: String,
    pub topic: String,
    pub durable: bool,
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    pub args: QueueArgs,
    partition: Arc<Partition>,
    /// The leader epoch the queue was opened in: its memory is only right within it.
    leader_epoch: i32,
    inner: Mutex<Inner>,
    /// The vhost's housekeeping, woken when messages die.
    housekeeping: Arc<Notify>,
    /// Whether the queue has consumers: the task that wakes them on new messages only
    /// listens to the log while it does, so an unconsumed queue's appends wake nobody.
    consumers_present: watch::Sender<bool>,
    /// Message counts since the queue opened here (the management API's `message_stats`).
    pub counters: QueueCounters,
    /// The delivery horizon known durable and replicated: messages below it may go out
    /// at once; one at or past it waits for `cover_delivery` (see `record`).
    horizon: std::sync::atomic::AtomicI64,
    /// A background `extend_horizon` is running.
    extending_horizon: std::sync::atomic::AtomicBool,
}

/// How far past the message about to go out a new delivery horizon reaches, in offsets:
/// one durable write per about this many deliveries, and at most this many messages
/// flagged redelivered without having been delivered after an unclean restart.
pub const HORIZON_AHEAD: i64 = 1024;

/// Longest a delivery waits for its horizon to become durable; past it, it goes out
/// anyway (the flag is a hint: a consumer must not stall behind a slow disk forever).
const HORIZON_WAIT: Duration = Duration::from_secs(10);

/// Per-queue message counters (RabbitMQ's queue `message_stats`): relaxed atomic adds next
/// to the node-wide ones in `stats`; rates are computed by the reader from samples.
#[derive(Debug, Default)]
pub struct QueueCounters {
    /// Messages stored into the queue (`publish`).
    pub publish: std::sync::atomic::AtomicU64,
    /// Delivered to consumers or taken by basic.get (`deliver_get`).
    pub deliver_get: std::sync::atomic::AtomicU64,
    /// Of those, flagged redelivered (`redeliver`).
    pub redeliver: std::sync::atomic::AtomicU64,
    /// Acknowledged (`ack`).
    pub ack: std::sync::atomic::AtomicU64,
}

impl QueueCounters {
    /// One delivery (to a consumer or basic.get).
    pub fn delivered(&self, redelivered: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        self.deliver_get.fetch_add(1, Relaxed);
        if redelivered {
            self.redeliver.fetch_add(1, Relaxed);
        }
    }

    pub fn acked(&self, n: u64) {
        self.ack.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// (publish, deliver_get, redeliver, ack).
    pub fn read(&self) -> (u64, u64, u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.publish.load(Relaxed),
            self.deliver_get.load(Relaxed),
            self.redeliver.load(Relaxed),
            self.ack.load(Relaxed),
        )
    }
}

fn poisoned() -> AmqpError {
    AmqpError::internal("queue lock poisoned")
}

/// Opening arguments of a queue.
#[derive(Debug)]
pub struct QueueSetup {
    pub name: String,
    pub topic: String,
    pub durable: bool,
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    pub args: QueueArgs,
    pub housekeeping: Arc<Notify>,
}

impl Queue {
    /// Opens a queue over its (leader) partition, rebuilding the ready set from the log:
    /// every message not settled is ready; those marked delivered come back redelivered.
    pub fn open(setup: QueueSetup, partition: Arc<Partition>) -> Result<Arc<Queue>, AmqpError> {
        let QueueSetup {
            name,
            topic,
            durable,
            exclusive_owner,
            auto_delete,
            arguments,
            args,
            housekeeping,
        } = setup;
        let leader_epoch = partition.leader_epoch();
        let mut ready: BTreeMap<i64, Entry> = BTreeMap::new();
        let log_start = partition.log_start_offset().map_err(|e| core_error(&e))?;
        let mut offset = log_start;
        let mut delivered = std::collections::HashSet::new();
        let mut settled = std::collections::HashSet::new();
        let mut horizon = -1i64;
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
                    QueueRecord::Message(m) => {
                        let props = wire::decode_properties(&m.properties);
                        let own_ttl = props
                            .as_ref()
                            .and_then(|p| p.expiration().clone())
                            .and_then(|e| message_expiration(Some(e.as_str())).ok().flatten());
                        // The same priority as at publish: the order after a restart is
                        // the order before it.
                        let priority = args.priority_of(props.as_ref().and_then(|p| *p.priority()));
                        let entry = Entry {
                            redelivered: false,
                            expires_at: expiry(args.message_ttl, own_ttl, m.timestamp),
                            bytes: m.body.len() as u64,
                            returns: 0,
                            priority,
                        };
                        ready.insert(o, entry);
                    }
                    QueueRecord::Control(ControlKind::Settled, os) => settled.extend(os),
                    QueueRecord::Control(ControlKind::Delivered, os) => delivered.extend(os),
                    QueueRecord::Control(ControlKind::Horizon, os) => {
                        horizon = os.into_iter().fold(horizon, i64::max)
                    }
                }
            }
            if last < offset {
                break;
            }
            offset = last + 1;
        }
        ready.retain(|o, _| !settled.contains(o));
        // A log whose whole history survived holds every delivery mark. Otherwise the
        // last marks may be gone: whatever lies below the durable horizon may have gone
        // out. The horizon record itself may have been reclaimed with its segment, but it
        // lay below the log start and reached at most HORIZON_AHEAD past itself.
        let horizon = horizon.max(log_start + HORIZON_AHEAD);
        let marks_complete = partition.holds_whole_history();
        let may_have_gone_out = |o: i64| !marks_complete && o < horizon;
        let mut ready_set = Ready::default();
        for (o, mut e) in ready {
            e.redelivered = delivered.contains(&o) || may_have_gone_out(o);
            ready_set.insert(o, e);
        }
        let q = Arc::new(Queue {
            name,
            topic,
            durable,
            exclusive_owner,
            auto_delete,
            arguments,
            args,
            partition,
            leader_epoch,
            inner: Mutex::new(Inner {
                ready: ready_set,
                dead: Vec::new(),
                out: BTreeSet::new(),
                consumers: Vec::new(),
                single_active: None,
                active_out: BTreeSet::new(),
                had_consumer: false,
                deleted: false,
                last_used: Instant::now(),
                reclaimed_at: Instant::now(),
                join_buf: Vec::new(),
            }),
            housekeeping,
            consumers_present: watch::Sender::new(false),
            counters: QueueCounters::default(),
            horizon: std::sync::atomic::AtomicI64::new(horizon),
            extending_horizon: std::sync::atomic::AtomicBool::new(false),
        });
        // Wake consumers when the high watermark moves (newly committed messages). The
        // task ends when the queue is dropped (`present` closes) or its log closes.
        let weak = Arc::downgrade(&q);
        let mut changes = q.partition.subscribe_changes();
        let mut present = q.consumers_present.subscribe();
        tokio::spawn(async move {
            loop {
                if !*present.borrow_and_update() {
                    if present.changed().await.is_err() {
                        return;
                    }
                    continue;
                }
                tokio::select! {
                    changed = changes.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let Some(q) = weak.upgrade() else { return };
                        if q.is_deleted() {
                            return;
                        }
                        q.wake_consumers();
                    }
                    changed = present.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(q)
    }

    pub fn is_deleted(&self) -> bool {
        self.inner.lock().map(|i| i.deleted).unwrap_or(true)
    }

    /// Appends a message (ordered with other appends under the queue lock) and makes it
    /// ready; it is delivered once committed. The caller awaits `stored` for confirms.
    /// Length limits apply here: drop-head makes room by killing the oldest ready
    /// messages, reject-publish refuses the new one.
    pub fn append(
        &self,
        batch: Vec<u8>,
        bytes: u64,
        own_ttl: Option<i64>,
        priority: Option<u8>,
    ) -> Result<Enqueued, AmqpError> {
        let mut out = self.append_many(
            vec![QueuedMessage {
                batch,
                bytes,
                own_ttl,
                priority,
            }],
            false,
        )?;
        Ok(out.pop().unwrap_or(Enqueued::Refused))
    }

    /// Appends several messages with one log write (they take consecutive offsets), each
    /// checked against the length limits in turn; one outcome per message, in order.
    /// With `sync_now_next`, the caller calls `sync_now` right after (a transaction
    /// commit) and the flusher is not woken.
    pub fn append_many(
        &self,
        messages: Vec<QueuedMessage>,
        sync_now_next: bool,
    ) -> Result<Vec<Enqueued>, AmqpError> {
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        if inner.deleted {
            return Err(AmqpError::not_found(format!(
                "queue '{}' was deleted",
                self.name
            )));
        }
        let over = |i: &Inner, extra_msgs: usize, extra_bytes: u64| {
            self.args
                .max_length
                .is_some_and(|m| (i.ready.len() + extra_msgs) as u64 > m)
                || self
                    .args
                    .max_length_bytes
                    .is_some_and(|m| i.ready.bytes + extra_bytes > m)
        };
        let drop_head = self.args.overflow == Overflow::DropHead;
        let (mut n, mut n_bytes) = (0usize, 0u64);
        let accepted: Vec<bool> = messages
            .iter()
            .map(|m| {
                if !drop_head && over(&inner, n + 1, n_bytes + m.bytes) {
                    return false;
                }
                n += 1;
                n_bytes += m.bytes;
                true
            })
            .collect();
        if n == 0 {
            return Ok(messages.iter().map(|_| Enqueued::Refused).collect());
        }
        // One message (the common case) is appended as is; several are joined.
        let mut kept: Vec<(Vec<u8>, u64, Option<i64>, u8)> = messages
            .into_iter()
            .zip(&accepted)
            .filter(|(_, a)| **a)
            .map(|(m, _)| {
                (
                    m.batch,
                    m.bytes,
                    m.own_ttl,
                    self.args.priority_of(m.priority),
                )
            })
            .collect();
        // Several are joined in a buffer the queue keeps: a fresh one of this size would
        // come from the allocator as new pages, which the kernel zeroes first.
        let mut join_buf = std::mem::take(&mut inner.join_buf);
        let batches: &mut [u8] = if kept.len() == 1 {
            &mut kept[0].0
        } else {
            join_buf.clear();
            for k in &kept {
                join_buf.extend_from_slice(&k.0);
            }
            &mut join_buf
        };
        let appended = if sync_now_next {
            self.partition.append_for_sync_now(batches, Acks::All)
        } else {
            self.partition.append(batches, Acks::All)
        };
        if join_buf.capacity() <= JOIN_BUF_KEEP {
            inner.join_buf = join_buf;
        }
        let appended = appended.map_err(|e| core_error(&e))?;
        let now = arctern_core::now_ms();
        // Every message is a one-record batch, so they hold consecutive offsets.
        for (offset, (_, bytes, own_ttl, priority)) in (appended.outcome.base_offset..).zip(&kept) {
            inner.put(
                offset,
                Entry {
                    redelivered: false,
                    expires_at: expiry(self.args.message_ttl, *own_ttl, now),
                    bytes: *bytes,
                    returns: 0,
                    priority: *priority,
                },
            );
        }
        let mut died = false;
        // The head is the next message to deliver: with priorities, the oldest of the
        // highest priority (as RabbitMQ's priority queues drop).
        while drop_head && over(&inner, 0, 0) {
            let Some((o, e)) = inner.ready.first() else {
                break;
            };
            inner.take(o, e.priority);
            inner.dead.push((o, DeathReason::MaxLen));
            died = true;
        }
        drop(inner);
        if died {
            self.housekeeping.notify_one();
        }
        let stored = accepted.iter().filter(|a| **a).count() as u64;
        self.counters
            .publish
            .fetch_add(stored, std::sync::atomic::Ordering::Relaxed);
        Ok(accepted
            .into_iter()
            .map(|a| {
                if a {
                    Enqueued::Stored(appended)
                } else {
                    Enqueued::Refused
                }
            })
            .collect())
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

    /// Waits (at most `limit`) until everything appended so far is committed, so a reader
    /// from outside the publishing connection (the management API's `get`) sees what
    /// `message_count` counts.
    pub async fn committed_so_far(&self, limit: std::time::Duration) {
        let Ok(end) = self.partition.log_end_offset() else {
            return;
        };
        let deadline = tokio::time::Instant::now() + limit;
        while self.partition.high_watermark() < end && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Whether the high watermark has passed an append (it is durable and replicated).
    pub fn committed(&self, appended: &Appended) -> bool {
        self.partition.high_watermark() >= appended.end_offset
    }

    /// The next ready message that is committed (highest priority, then oldest), taken
    /// out of the ready set. Expired messages met on the way die (TTL is enforced at the
    /// head, as RabbitMQ does). A head whose body is larger than `max_bytes` (room left
    /// under `prefetch_size`) stays. A consumer (`taker`) takes nothing while a consumer
    /// of higher priority is active, nor, with `x-single-active-consumer`, unless it is
    /// the active one (basic.get passes `None`).
    pub fn take_next(&self, max_bytes: u64, taker: Option<Taker<'_>>) -> Option<(i64, Entry)> {
        let hw = self.partition.high_watermark();
        let now = arctern_core::now_ms();
        let mut inner = self.inner.lock().ok()?;
        let mut switched = false;
        let sac = taker.is_some() && self.args.single_active_consumer;
        if let Some(t) = taker {
            if sac {
                switched = inner.switch_single_active();
                let mine = inner
                    .single_active
                    .as_ref()
                    .is_some_and(|a| Arc::ptr_eq(a, t.active));
                if !mine || inner.single_active_outranked() {
                    drop(inner);
                    if switched {
                        self.wake_consumers();
                    }
                    return None;
                }
            } else {
                let outranked = inner.consumers.iter().any(|c| {
                    c.priority > t.priority && c.active.load(std::sync::atomic::Ordering::Acquire)
                });
                if outranked {
                    return None;
                }
            }
        }
        let mut died = false;
        let next = loop {
            let Some((o, head)) = inner.ready.first_below(hw) else {
                break None;
            };
            let e = inner.take(o, head.priority)?;
            if e.expired(now) {
                inner.dead.push((o, DeathReason::Expired));
                died = true;
                continue;
            }
            if e.bytes > max_bytes {
                inner.put(o, e);
                break None;
            }
            if sac {
                inner.active_out.insert(o);
            }
            break Some((o, e));
        };
        drop(inner);
        if died {
            self.housekeeping.notify_one();
        }
        if switched {
            self.wake_consumers();
        }
        next
    }

    /// Expires the committed messages at the head whose TTL has passed (housekeeping, so
    /// that a queue nobody consumes from still drops them). Returns whether any died.
    pub fn expire_head(&self) -> bool {
        let hw = self.partition.high_watermark();
        let now = arctern_core::now_ms();
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        // In delivery order, up to the first live message: with priorities, an expired
        // message waits behind a live one of higher priority (RabbitMQ's priority queues
        // do the same: their dropwhile stops at the first level with a live head).
        let mut died = false;
        while let Some((o, e)) = inner.ready.first_below(hw) {
            if !e.expired(now) {
                break;
            }
            inner.take(o, e.priority);
            inner.dead.push((o, DeathReason::Expired));
            died = true;
        }
        died
    }

    /// The messages that died since the last call, for dead-lettering.
    pub fn take_dead(&self) -> Vec<(i64, DeathReason)> {
        self.inner
            .lock()
            .map(|mut i| std::mem::take(&mut i.dead))
            .unwrap_or_default()
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

    /// The messages stored from `offset` on, as far as one read of about `max_bytes`
    /// reaches (at least the batch at `offset`): a consumer taking messages in log order
    /// reads many with one read instead of one read each.
    pub fn read_ahead(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<Vec<(i64, StoredMessage)>, AmqpError> {
        let fetched = self
            .partition
            .read_to_log_end(offset, max_bytes)
            .map_err(|e| core_error(&e))?;
        let records = decode_batches(fetched.bytes)
            .map_err(|e| AmqpError::internal(format!("queue '{}' log: {e}", self.name)))?;
        Ok(records
            .into_iter()
            .filter_map(|(o, r)| match r {
                QueueRecord::Message(m) if o >= offset => Some((o, m)),
                _ => None,
            })
            .collect())
    }

    /// Puts delivered messages back (redelivered) and wakes consumers. With
    /// `x-delivery-limit`, a message requeued more often than the limit dies instead.
    pub fn requeue(&self, items: &[(i64, Entry)]) {
        if items.is_empty() {
            return;
        }
        let mut died = false;
        if let Ok(mut inner) = self.inner.lock() {
            if inner.deleted {
                return;
            }
            for (o, e) in items {
                inner.active_out.remove(o);
                let returns = e.returns.saturating_add(1);
                if self.args.delivery_limit.is_some_and(|l| returns > l) {
                    inner.dead.push((*o, DeathReason::DeliveryLimit));
                    died = true;
                    continue;
                }
                inner.put(
                    *o,
                    Entry {
                        redelivered: true,
                        returns,
                        ..*e
                    },
                );
            }
        }
        if died {
            self.housekeeping.notify_one();
        }
        self.wake_consumers();
    }

    /// Rejected without requeue (basic.reject / nack): dead-lettered when the queue has a
    /// dead-letter exchange, else settled.
    pub fn reject(&self, offsets: &[i64]) {
        if self.args.dead_letter_exchange.is_none() {
            self.settle(offsets);
            return;
        }
        let mut released = false;
        if let Ok(mut inner) = self.inner.lock() {
            if inner.deleted {
                return;
            }
            released = inner.release_active(offsets);
            inner
                .dead
                .extend(offsets.iter().map(|o| (*o, DeathReason::Rejected)));
        }
        self.housekeeping.notify_one();
        if released {
            self.wake_consumers();
        }
    }

    /// Records settlements (acks, rejects without requeue) in the log. Not awaited: a
    /// settlement lost to a crash only means a redelivery (at-least-once).
    pub fn settle(&self, offsets: &[i64]) {
        self.control(ControlKind::Settled, offsets);
    }

    /// Makes sure the message at `offset` may go out: below the durable delivery
    /// horizon at once; within half of `HORIZON_AHEAD` of it, a new horizon is written in
    /// the background (a steady consumer never waits); at or past it, this waits until a
    /// new one (`HORIZON_AHEAD` further) is durable on every in-sync replica. Whatever
    /// happens next, a restart or a new leader flags the message redelivered if it is not
    /// settled.
    pub async fn cover_delivery(self: &Arc<Self>, offset: i64) {
        use std::sync::atomic::Ordering;
        let horizon = self.horizon.load(Ordering::Acquire);
        if offset + HORIZON_AHEAD / 2 < horizon {
            return;
        }
        if offset < horizon {
            if !self.extending_horizon.swap(true, Ordering::AcqRel) {
                let q = Arc::clone(self);
                tokio::spawn(async move {
                    q.extend_horizon(offset).await;
                    q.extending_horizon.store(false, Ordering::Release);
                });
            }
            return;
        }
        self.extend_horizon(offset).await;
    }

    /// Writes the horizon `offset + HORIZON_AHEAD` and waits until it is acknowledgeable
    /// (acks=all). Gives up (logged) after `HORIZON_WAIT` or if the log refuses it: the
    /// flag is a hint, deliveries do not stall behind it.
    async fn extend_horizon(&self, offset: i64) {
        let new = offset + HORIZON_AHEAD;
        let mut batch = match encode_control(ControlKind::Horizon, &[new], arctern_core::now_ms()) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(queue = %self.name, error = %e, "cannot encode a delivery horizon");
                return;
            }
        };
        let waited = match self.partition.append(&mut batch, Acks::All) {
            Ok(appended) => {
                tokio::time::timeout(HORIZON_WAIT, self.partition.wait_acknowledgeable(&appended))
                    .await
            }
            Err(e) => Ok(Err(e)),
        };
        match waited {
            Ok(Ok(())) => {
                self.horizon
                    .fetch_max(new, std::sync::atomic::Ordering::AcqRel);
            }
            Ok(Err(e)) => {
                tracing::debug!(queue = %self.name, error = %e, "delivery horizon not durable; delivering anyway")
            }
            Err(_) => {
                tracing::warn!(queue = %self.name, "delivery horizon not durable after {HORIZON_WAIT:?}; delivering anyway")
            }
        }
    }

    /// Records that messages went out, so a restart redelivers them with redelivered=true.
    pub fn mark_delivered(&self, offsets: &[i64]) {
        self.control(ControlKind::Delivered, offsets);
    }

    fn control(&self, kind: ControlKind, offsets: &[i64]) {
        if offsets.is_empty() {
            return;
        }
        let released = match self.inner.lock() {
            Ok(mut inner) if !inner.deleted => {
                if kind == ControlKind::Settled {
                    for o in offsets {
                        inner.out.remove(o);
                    }
                    inner.release_active(offsets)
                } else {
                    false
                }
            }
            _ => return,
        };
        if released {
            self.wake_consumers();
        }
        match encode_control(kind, offsets, arctern_core::now_ms()) {
            Ok(mut b) => {
                if let Err(e) = self.partition.append_lazily(&mut b) {
                    tracing::warn!(queue = %self.name, error = %e, "cannot record delivery state");
                }
            }
            Err(e) => {
                tracing::error!(queue = %self.name, error = %e, "cannot encode delivery state")
            }
        }
    }

    /// Makes settlements and delivery marks written since the last group commit durable
    /// (housekeeping calls this every tick, bounding what a crash can make redeliver).
    pub fn flush_pending(&self) {
        self.partition.flush_pending();
    }

    /// Makes this queue's appends durable now, on the calling thread, unless a group
    /// commit is already in flight; then the flusher covers them (see
    /// `Partition::sync_now`).
    pub fn sync_now(&self) {
        self.partition.sync_now();
    }

    /// Still led here in the epoch it was opened in.
    pub fn still_led(&self) -> bool {
        self.partition.is_leader()
            && self.partition.leader_epoch() == self.leader_epoch
            && !self.partition.is_closed()
    }

    /// Deletes the log's whole segments below the oldest unsettled message (and the high
    /// watermark), at most once per `RECLAIM_EVERY`. A settlement record always comes after
    /// the message it settles, so the log that remains replays to the same queue.
    pub fn reclaim(&self) {
        let hw = self.partition.high_watermark();
        let floor = match self.inner.lock() {
            Ok(mut inner) if !inner.deleted => {
                if inner.reclaimed_at.elapsed() < RECLAIM_EVERY {
                    return;
                }
                inner.reclaimed_at = Instant::now();
                let oldest = [inner.ready.min_offset(), inner.out.first().copied()];
                oldest.into_iter().flatten().fold(hw, |f, o| f.min(o))
            }
            _ => return,
        };
        match self.partition.delete_segments_below(floor) {
            Ok(0) => {}
            Ok(n) => {
                tracing::debug!(queue = %self.name, segments = n, floor, "reclaimed settled segments")
            }
            Err(e) => {
                tracing::warn!(queue = %self.name, error = %e, "cannot reclaim settled segments")
            }
        }
    }

    /// Drops every ready message (queue.purge, never dead-lettered), recording it;
    /// returns how many.
    pub fn purge(&self) -> u32 {
        let purged: Vec<i64> = match self.inner.lock() {
            Ok(mut inner) => inner.ready.take_all(),
            Err(_) => return 0,
        };
        self.settle(&purged);
        purged.len() as u32
    }

    pub fn message_count(&self) -> u32 {
        self.inner.lock().map(|i| i.ready.len() as u32).unwrap_or(0)
    }

    /// Delivered to a consumer (or dying) and not settled yet: RabbitMQ's
    /// `messages_unacknowledged`.
    pub fn unacked_count(&self) -> u32 {
        self.inner.lock().map(|i| i.out.len() as u32).unwrap_or(0)
    }

    pub fn consumer_count(&self) -> u32 {
        self.inner
            .lock()
            .map(|i| i.consumers.len() as u32)
            .unwrap_or(0)
    }

    /// Renews the `x-expires` lease (declare, basic.get, consumer changes).
    pub fn touch(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.last_used = Instant::now();
        }
    }

    /// Whether `x-expires` has passed: no consumers, and unused for that long.
    pub fn idle_expired(&self) -> bool {
        let Some(ms) = self.args.expires else {
            return false;
        };
        self.inner.lock().is_ok_and(|i| {
            !i.deleted && i.consumers.is_empty() && i.last_used.elapsed().as_millis() >= ms as u128
        })
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
        // RabbitMQ refuses an exclusive consumer on a single-active-consumer queue the same
        // way (exclusive_consume_unavailable).
        if c.exclusive && (!inner.consumers.is_empty() || self.args.single_active_consumer) {
            return Err(AmqpError::refused(format!(
                "queue '{}' in vhost '/' in exclusive use",
                self.name
            )));
        }
        if self.args.single_active_consumer && inner.single_active.is_none() {
            inner.single_active = Some(Arc::clone(&c.active));
        }
        inner.consumers.push(c);
        inner.had_consumer = true;
        inner.last_used = Instant::now();
        self.consumers_present
            .send_if_modified(|p| !std::mem::replace(p, true));
        Ok(())
    }

    /// Removes a consumer; returns whether the queue is now auto-deletable.
    pub fn remove_consumer(&self, conn: u64, channel: u16, tag: &str) -> bool {
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        let gone = |c: &ConsumerReg| c.conn == conn && c.channel == channel && c.tag == tag;
        let was_active = inner.consumers.iter().any(|c| {
            gone(c)
                && inner
                    .single_active
                    .as_ref()
                    .is_some_and(|a| Arc::ptr_eq(a, &c.active))
        });
        inner.consumers.retain(|c| !gone(c));
        if was_active {
            // The old consumer's unacked deliveries stay with its channel (or were
            // requeued): they no longer hold up the next one.
            inner.single_active = next_single_active(&inner.consumers);
            inner.active_out.clear();
        }
        inner.last_used = Instant::now();
        let any = !inner.consumers.is_empty();
        self.consumers_present
            .send_if_modified(|p| std::mem::replace(p, any) != any);
        // Consumers of lower priority may have been waiting for this one.
        for c in &inner.consumers {
            c.wake.notify_one();
        }
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
                inner.ready.take_all();
                inner.single_active = None;
                inner.active_out.clear();
                inner.dead.clear();
                self.consumers_present.send_replace(false);
                (std::mem::take(&mut inner.consumers), n)
            }
            Err(_) => (Vec::new(), 0),
        }
    }
}

/// The consumer that becomes active when the single active one leaves: the highest
/// `x-priority`, the earliest registered among equals.
fn next_single_active(consumers: &[ConsumerReg]) -> Option<Arc<std::sync::atomic::AtomicBool>> {
    let mut best: Option<&ConsumerReg> = None;
    for c in consumers {
        if best.is_none_or(|b| c.priority > b.priority) {
            best = Some(c);
        }
    }
    best.map(|c| Arc::clone(&c.active))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(priority: u8) -> Entry {
        Entry {
            redelivered: false,
            expires_at: None,
            bytes: 10,
            returns: 0,
            priority,
        }
    }

    fn order(r: &Ready) -> Vec<i64> {
        r.map.keys().map(|k| k.1).collect()
    }

    #[test]
    fn ready_set_orders_by_priority_then_offset() {
        let mut r = Ready::default();
        for (o, p) in [(0, 0), (1, 5), (2, 1), (3, 5), (4, 0), (5, 9)] {
            r.insert(o, entry(p));
        }
        assert_eq!(order(&r), vec![5, 1, 3, 2, 0, 4]);
        assert_eq!(r.len(), 6);
        assert_eq!(r.bytes, 60);
        assert_eq!(r.first().map(|f| f.0), Some(5));
        let heads: Vec<i64> = r.heads().iter().map(|h| h.0).collect();
        assert_eq!(heads, vec![5, 1, 2, 0]);
        assert_eq!(r.min_offset(), Some(0));
        // committed below 5: the highest level with a committed head
        assert_eq!(r.first_below(5).map(|f| f.0), Some(1));
        assert_eq!(r.first_below(1).map(|f| f.0), Some(0));
        assert_eq!(r.first_below(0), None);
        // a requeued message goes back to its place within its level
        let e = r.remove(1, 5).unwrap();
        assert_eq!(r.bytes, 50);
        assert_eq!(r.first_below(5).map(|f| f.0), Some(3));
        r.insert(
            1,
            Entry {
                redelivered: true,
                ..e
            },
        );
        assert_eq!(order(&r), vec![5, 1, 3, 2, 0, 4]);
        assert!(r.remove(1, 0).is_none(), "removal needs the right level");
        let mut all = r.take_all();
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!((r.len(), r.bytes), (0, 0));
        assert_eq!(r.first_below(i64::MAX), None);
    }

    #[test]
    fn without_priorities_the_ready_set_is_log_order() {
        let mut r = Ready::default();
        for o in [3, 1, 2] {
            r.insert(o, entry(0));
        }
        assert_eq!(order(&r), vec![1, 2, 3]);
        assert_eq!(r.first_below(2).map(|f| f.0), Some(1));
        assert_eq!(r.first_below(1), None);
        assert_eq!(r.heads().len(), 1);
        // highest level 255 and lowest 0 both reachable
        r.insert(9, entry(255));
        let heads: Vec<i64> = r.heads().iter().map(|h| h.0).collect();
        assert_eq!(heads, vec![9, 1]);
    }

    fn reg(tag: &str, priority: i32) -> ConsumerReg {
        ConsumerReg {
            conn: 1,
            channel: 1,
            tag: tag.into(),
            exclusive: false,
            priority,
            active: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            wake: Arc::new(Notify::new()),
            cancel: mpsc::unbounded_channel().0,
        }
    }

    #[test]
    fn next_single_active_consumer_is_the_highest_priority_then_the_earliest() {
        assert!(next_single_active(&[]).is_none());
        let cs = [reg("a", 0), reg("b", 0), reg("c", 5), reg("d", 5)];
        let next = next_single_active(&cs).unwrap();
        assert!(Arc::ptr_eq(&next, &cs[2].active));
        let next = next_single_active(&cs[..2]).unwrap();
        assert!(Arc::ptr_eq(&next, &cs[0].active));
    }

    #[test]
    fn a_higher_priority_consumer_takes_over_once_the_active_one_holds_nothing() {
        let mut inner = Inner {
            ready: Ready::default(),
            dead: Vec::new(),
            out: BTreeSet::new(),
            consumers: vec![reg("a", 0)],
            single_active: None,
            active_out: BTreeSet::new(),
            had_consumer: true,
            deleted: false,
            last_used: Instant::now(),
            reclaimed_at: Instant::now(),
            join_buf: Vec::new(),
        };
        let a = Arc::clone(&inner.consumers[0].active);
        inner.single_active = Some(Arc::clone(&a));
        inner.active_out.extend([1, 2]);
        assert!(!inner.switch_single_active(), "nobody outranks a");
        assert!(!inner.single_active_outranked());
        inner.consumers.push(reg("b", 5));
        let b = Arc::clone(&inner.consumers[1].active);
        // b waits while a holds messages, and a gets no more meanwhile
        assert!(!inner.switch_single_active());
        assert!(inner.single_active_outranked());
        assert!(!inner.release_active(&[1]));
        inner.put(2, entry(0)); // a requeue releases it too
        assert!(inner.active_out.is_empty());
        assert!(inner.switch_single_active());
        assert!(Arc::ptr_eq(inner.single_active.as_ref().unwrap(), &b));
        assert!(!inner.single_active_outranked());
        // an equal priority does not take over
        inner.consumers.push(reg("c", 5));
        assert!(!inner.switch_single_active());
        assert!(Arc::ptr_eq(inner.single_active.as_ref().unwrap(), &b));
    }

    #[test]
    fn the_shorter_ttl_wins() {
        assert_eq!(expiry(None, None, 100), None);
        assert_eq!(expiry(Some(50), None, 100), Some(150));
        assert_eq!(expiry(None, Some(20), 100), Some(120));
        assert_eq!(expiry(Some(50), Some(20), 100), Some(120));
        assert_eq!(expiry(Some(10), Some(20), 100), Some(110));
    }
}
