//! One AMQP connection: the socket (frames read by this task through `FrameSource`,
//! bounded by `frame_max`; a writer task for frames out and heartbeats), the handshake and
//! the select loop. A channel's protocol state lives in sans-IO state machines
//! (`publish::PublishAssembly`, `deliveries::Deliveries`, `confirms::Confirms`,
//! `transaction::Transaction`); the submodules are the glue that feeds them and performs
//! the I/O they ask for: `handlers` (channel methods), `publishing` (routing, appends,
//! confirms, commit-oks), `delivering` (the pump, settlements, ack timeouts).

use std::collections::HashMap;
use std::net::SocketAddr;

use std::sync::Arc;
use std::time::{Duration, Instant};

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::protocol::{basic, channel, confirm, connection, exchange, queue, tx, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use arctern_security::TlsPeer;
use arctern_transport::{MaybeTls, MaybeTlsRead, MaybeTlsWrite};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};

use crate::alarm::AlarmState;
use crate::codes::*;
use crate::confirms::{Confirm, Confirms};
use crate::deliveries::{Deliveries, Delivery};
use crate::forward;
use crate::methods::{MethodId, BASIC_PUBLISH, TX_COMMIT};
use crate::permissions::{self as perm, Access, Compiled, Resource};
use crate::publish::{self, Content, PublishAssembly};
use crate::queue::{ConsumerReg, Enqueued, Entry, Queue, QueuedMessage, StoredWait, Taker};
use crate::record::{encode_message, StoredMessage};
use crate::server::AmqpServerConfig;
use crate::transaction::Transaction;
use crate::vhost::{QueueSpec, Route, Vhost};
use crate::wire::{self, FrameError, FRAME_HEADER_LEN, PROTOCOL_HEADER};
use arctern_core::Appended;

mod delivering;
mod handlers;
mod publishing;

use delivering::{apply_settle, requeue, settle_or_buffer};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closed connection's input is drained, waiting for the client to close the
/// socket: the heartbeat interval, at most RabbitMQ's 30 s (`CLOSING_TIMEOUT`); a
/// connection closed during the handshake waits at least a second.
const CLOSE_LINGER_MAX: Duration = Duration::from_secs(30);
const CLOSE_LINGER_MIN: Duration = Duration::from_secs(1);
/// The read buffer: a publish is three small frames, read in one syscall.
const READ_BUFFER: usize = 64 << 10;
/// Routed publishes are appended at the end of a burst of frames, or once this many
/// bytes or publishes wait.
const FLUSH_BYTES: usize = 1 << 20;
const FLUSH_PUBLISHES: usize = 512;
/// Acks recorded at the latest after this many (else at the end of a read burst).
const FLUSH_ACKS: usize = 1024;

/// Deliveries one consumer gets per pump round before others get a turn.
const PUMP_BATCH: usize = 128;

/// Bytes queued for the socket per connection: a slow reader stalls deliveries instead of
/// buffering them (a frame larger than this takes the whole budget).
const OUT_BUDGET: usize = 4 << 20;
/// The writer joins queued frames into one write up to this many bytes.
const WRITE_COALESCE: usize = 256 << 10;
/// How often a publish waiting for the body budget looks again.
const BUDGET_RECHECK: Duration = Duration::from_millis(20);

/// How long the client must be quiet before a consumer held back for a batched refill
/// (`Deliveries::should_wait_for_refill`) is sent what it has credit for.
const REFILL_IDLE: Duration = Duration::from_millis(1);

enum Out {
    /// Frames and the share of the output budget they hold until written.
    Bytes(Vec<u8>, tokio::sync::OwnedSemaphorePermit),
    Heartbeat(u16),
}

/// An inbound frame, with what `amq-protocol` does not decode: `basic.qos`'s
/// prefetch-size (RabbitMQ's spec marks it reserved, so the crate drops it).
struct Inbound {
    frame: AMQPFrame,
    prefetch_size: u32,
}

type ReadResult = Result<Inbound, FrameError>;

/// The connection's inbound frames, read by the connection task itself: bytes are
/// buffered and only whole frames are taken out, so `recv` is cancel-safe in `select!`
/// and no task hop sits between the socket and the session. The buffer holds at most one
/// frame (bounded by `frame_max`) plus one read.
struct FrameSource {
    r: MaybeTlsRead,
    buf: BytesMut,
    frame_max: usize,
    /// When the last whole frame arrived (heartbeat check).
    last_frame: Instant,
    /// After EOF, a read error or a bad frame nothing more is returned.
    done: bool,
    /// The peer closed its side (or the socket failed): nothing more will arrive.
    eof: bool,
    /// Bytes and reads, for the management API.
    counters: Arc<crate::registry::Counters>,
}

impl FrameSource {
    fn new(
        r: MaybeTlsRead,
        frame_max: usize,
        counters: Arc<crate::registry::Counters>,
    ) -> FrameSource {
        FrameSource {
            counters,
            r,
            buf: BytesMut::with_capacity(READ_BUFFER),
            frame_max,
            last_frame: Instant::now(),
            done: false,
            eof: false,
        }
    }

    /// Bytes of the whole frame at the head of the buffer: `Ok(None)` while incomplete.
    fn whole_frame_len(&self) -> Result<Option<usize>, FrameError> {
        let Some(h) = self.buf.get(..FRAME_HEADER_LEN) else {
            return Ok(None);
        };
        let mut header = [0u8; FRAME_HEADER_LEN];
        header.copy_from_slice(h);
        let fh = wire::parse_frame_header(header, self.frame_max)?;
        let total = FRAME_HEADER_LEN + fh.size + 1;
        Ok((self.buf.len() >= total).then_some(total))
    }

    /// Whether no whole frame is buffered (the end of a burst).
    fn is_empty(&self) -> bool {
        !matches!(self.whole_frame_len(), Ok(Some(_)) | Err(_))
    }

    async fn recv(&mut self) -> Option<ReadResult> {
        loop {
            if self.done {
                return None;
            }
            match self.whole_frame_len() {
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Ok(Some(total)) => {
                    let bytes = self.buf.split_to(total);
                    self.last_frame = Instant::now();
                    let frame = wire::decode_whole_frame(&bytes).map(|frame| Inbound {
                        prefetch_size: wire::qos_prefetch_size(&frame, &bytes[FRAME_HEADER_LEN..]),
                        frame,
                    });
                    self.done = frame.is_err();
                    return Some(frame);
                }
                Ok(None) => {}
            }
            // Grows as bytes arrive: a claimed frame size costs nothing until it is sent.
            if self.buf.capacity() - self.buf.len() < READ_BUFFER / 4 {
                self.buf.reserve(READ_BUFFER);
            }
            match self.r.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => {
                    self.done = true;
                    self.eof = true;
                    return None;
                }
                Ok(n) => {
                    crate::stats::add(&crate::stats::BYTES_RECEIVED, n as u64);
                    self.counters.received(n);
                }
            }
        }
    }
}

impl FrameSource {
    /// Reads and drops input until the peer closes (or `limit` passes), so the socket is
    /// not closed with unread bytes.
    async fn discard_until_eof(&mut self, limit: Duration) {
        if self.eof {
            return;
        }
        let mut scratch = vec![0u8; READ_BUFFER];
        let _ = tokio::time::timeout(limit, async {
            while let Ok(n) = self.r.read(&mut scratch).await {
                if n == 0 {
                    return;
                }
            }
        })
        .await;
    }
}

async fn writer(
    mut w: MaybeTlsWrite,
    mut rx: mpsc::Receiver<Out>,
    counters: Arc<crate::registry::Counters>,
) {
    let mut heartbeat = 0u16;
    loop {
        let next = if heartbeat > 0 {
            // RabbitMQ sends a heartbeat when nothing was sent for half the interval.
            match tokio::time::timeout(Duration::from_millis(u64::from(heartbeat) * 500), rx.recv())
                .await
            {
                Ok(m) => m,
                Err(_) => {
                    // TLS buffers records until flushed (a no-op on plain TCP).
                    let hb = wire::heartbeat();
                    if w.write_all(&hb).await.is_err() || w.flush().await.is_err() {
                        return;
                    }
                    counters.sent(hb.len());
                    continue;
                }
            }
        } else {
            rx.recv().await
        };
        match next {
            Some(Out::Bytes(mut b, permit)) => {
                // Coalesce what is already queued into one write (acks, deliveries).
                let mut permits = vec![permit];
                let mut closed = false;
                while b.len() < WRITE_COALESCE {
                    match rx.try_recv() {
                        Ok(Out::Bytes(more, p)) => {
                            b.extend_from_slice(&more);
                            permits.push(p);
                        }
                        Ok(Out::Heartbeat(h)) => heartbeat = h,
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                }
                if w.write_all(&b).await.is_err() || w.flush().await.is_err() {
                    return;
                }
                crate::stats::add(&crate::stats::BYTES_SENT, b.len() as u64);
                counters.sent(b.len());
                drop(permits);
                if closed {
                    let _ = w.shutdown().await;
                    return;
                }
            }
            Some(Out::Heartbeat(h)) => heartbeat = h,
            None => {
                let _ = w.shutdown().await;
                return;
            }
        }
    }
}

/// Where a delivery sits in its queue.
struct Delivered {
    queue: Arc<Queue>,
    offset: i64,
    entry: Entry,
}

type Unacked = Delivery<Delivered>;

/// How a client settled a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    Ack,
    Requeue,
    /// Rejected without requeue: dead-lettered when the queue has a dead-letter exchange.
    Reject,
}

/// A consumer's queue side.
struct ConsumerLink {
    queue: Arc<Queue>,
    priority: i32,
    /// Shared with the queue's registration (see `ConsumerReg::active`).
    active: Arc<std::sync::atomic::AtomicBool>,
    /// basic.consume's exclusive flag and arguments (management API).
    exclusive: bool,
    arguments: FieldTable,
}

impl ConsumerLink {
    /// Records whether the consumer has credit; losing it lets lower priorities take over.
    fn set_active(&self, active: bool) {
        let was = self
            .active
            .swap(active, std::sync::atomic::Ordering::AcqRel);
        if was && !active {
            self.queue.wake_consumers();
        }
    }
}

/// A routed publish not yet appended: publishes that arrive together are stored with one
/// log write per queue (`Conn::flush_publishes`), not one each.
struct PendingPublish {
    ch: u16,
    seq: Option<u64>,
    queues: Vec<Arc<Queue>>,
    msg: StoredMessage,
    batch: Vec<u8>,
    own_ttl: Option<i64>,
    /// The `priority` property (for `x-max-priority` queues).
    priority: Option<u8>,
}

#[derive(Default)]
struct Channel {
    closing: bool,
    publishing: PublishAssembly,
    /// Publisher confirms (confirm.select).
    confirms: Confirms,
    /// When each confirm-mode publish arrived, in sequence order, until confirmed (the
    /// publish-to-confirm latency metric).
    confirm_started: std::collections::VecDeque<(u64, Instant)>,
    /// channel.flow active=false from the client: no deliveries until it resumes.
    paused: bool,
    /// tx.select's buffer of publishes and settlements (with their delivery tags, to
    /// restore on rollback), and the commits awaiting their stores.
    tx: Transaction<(u64, Unacked, Settle)>,
    /// Delivery tags, unacked deliveries, consumers and their prefetch credit.
    deliveries: Deliveries<Delivered, ConsumerLink>,
    /// This channel's latest append per queue, until the high watermark passes it: a
    /// `basic.get` waits for it, so requests on a channel take effect in order.
    appended: Vec<(Arc<Queue>, Appended)>,
    /// Counted in `stats::CHANNELS` while open.
    _counted: crate::stats::ChannelCount,
}

struct Conn {
    id: u64,
    vhost: Arc<Vhost>,
    out: mpsc::Sender<Out>,
    out_budget: Arc<tokio::sync::Semaphore>,
    /// A consumer with credit was held back by the last pump (batched refill).
    withheld: bool,
    frame_max: usize,
    channel_max: u16,
    channels: HashMap<u16, Channel>,
    wake: Arc<Notify>,
    confirm_tx: mpsc::UnboundedSender<(u16, u64, bool)>,
    cancel_tx: mpsc::UnboundedSender<(u16, String)>,
    commit_tx: mpsc::UnboundedSender<(u16, u64, bool)>,
    max_message_size: usize,
    consumer_timeout: Option<Duration>,
    /// The resource alarm (see `alarm`).
    alarm: AlarmState,
    /// The client announced the `connection.blocked` capability.
    wants_blocked: bool,
    /// A `connection.blocked` was sent and not yet followed by `unblocked`.
    blocked_sent: bool,
    /// A basic.publish that arrived during an alarm: it and everything after it wait
    /// (frames are not read) until the alarm clears.
    held: Option<AMQPFrame>,
    /// `held` waits for the body budget (not an alarm): re-checked on a short timer.
    held_for_budget: bool,
    /// This connection's buffered body bytes, in the node's budget.
    bodies: crate::budget::BodyAccount,
    /// prefetch-size of the `basic.qos` being handled (see `Inbound`).
    qos_prefetch_size: u32,
    /// Publishes routed but not appended yet, and their batch bytes.
    pending: Vec<PendingPublish>,
    pending_bytes: usize,
    /// Acked deliveries whose settlement is not recorded yet: the acks of one read burst
    /// share one settlement record per queue (`flush_acks`).
    acked: Vec<Unacked>,
    /// The user that logged in.
    user: String,
    /// Set on a TLS connection (see `external_user`).
    tls: Option<TlsPeer>,
    /// The user's permissions in the vhost, compiled; refreshed when the metadata changes.
    perms: PermCache,
    /// connection.start-ok's client properties and mechanism (management API).
    client_properties: FieldTable,
    auth_mechanism: String,
}

/// How a frame's handling ended.
enum Flow {
    Continue,
    /// The connection is done (close handshake finished).
    Closed,
}

/// A connection exception (close the connection) or a channel one.
enum Fail {
    Connection(AmqpError, MethodId),
    Channel(u16, AmqpError, MethodId),
}

pub async fn run(
    stream: MaybeTls,
    peer: SocketAddr,
    id: u64,
    vhost: Arc<Vhost>,
    config: AmqpServerConfig,
    alarm: AlarmState,
    tls: Option<TlsPeer>,
) {
    let mut stream = stream;
    let mut peer = peer;
    let mut header = [0u8; 8];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.read_exact(&mut header)).await {
        Ok(Ok(_)) => {}
        _ => return,
    }
    let mut proven = None;
    if forward::is_proof_line(&header) {
        let start = header;
        let secret = vhost.cluster_secret();
        proven = forward::accept_proof(&mut stream, &start, &mut header, secret, peer).await;
        if proven.is_none() {
            return;
        }
    }
    let forwarded = forward::is_proxy_line(&header);
    if proven.is_some() && !forwarded {
        tracing::warn!(%peer, "cluster membership line without a PROXY line; closing");
        return;
    }
    if forwarded {
        if !vhost.trusts_forwarder(peer.ip(), proven) {
            tracing::warn!(%peer, "PROXY header from a peer that is no proven cluster node; closing");
            return;
        }
        let line = tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            forward::read_proxy_line(&mut stream, &header),
        );
        match line.await {
            Ok(Ok(Some(client))) => peer = client,
            _ => {
                tracing::warn!(%peer, "bad PROXY header; closing");
                return;
            }
        }
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.read_exact(&mut header)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
    }
    if header != PROTOCOL_HEADER {
        // The spec: reply with the supported protocol header and close.
        tracing::debug!(%peer, "bad AMQP protocol header");
        let _ = stream.write_all(&PROTOCOL_HEADER).await;
        let _ = stream.shutdown().await;
        return;
    }
    let Some((stream, term)) = route(stream, peer, &vhost, &header, forwarded).await else {
        return;
    };
    let _served = vhost.connection_guard();
    let mut terms = vhost.subscribe_term();
    let local = stream
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let counters = Arc::new(crate::registry::Counters::default());
    let (r, w) = stream.into_split();
    let mut frames = FrameSource::new(r, config.frame_max as usize, Arc::clone(&counters));
    let (out, orx) = mpsc::channel(256);
    let writer_task = tokio::spawn(writer(w, orx, Arc::clone(&counters)));
    let (confirm_tx, mut confirm_rx) = mpsc::unbounded_channel();
    let (cancel_tx, mut cancel_rx) = mpsc::unbounded_channel();
    let (commit_tx, mut commit_rx) = mpsc::unbounded_channel();
    let mut conn = Conn {
        id,
        vhost,
        out,
        out_budget: Arc::new(tokio::sync::Semaphore::new(OUT_BUDGET)),
        withheld: false,
        frame_max: config.frame_max as usize,
        channel_max: config.channel_max,
        channels: HashMap::new(),
        wake: Arc::new(Notify::new()),
        confirm_tx,
        cancel_tx,
        commit_tx,
        max_message_size: config.max_message_size,
        consumer_timeout: (config.consumer_timeout_ms > 0)
            .then(|| Duration::from_millis(config.consumer_timeout_ms)),
        alarm,
        wants_blocked: false,
        blocked_sent: false,
        held: None,
        held_for_budget: false,
        bodies: config.body_budget.account(),
        qos_prefetch_size: 0,
        pending: Vec::new(),
        pending_bytes: 0,
        acked: Vec::new(),
        user: String::new(),
        tls,
        perms: PermCache::default(),
        client_properties: FieldTable::default(),
        auth_mechanism: String::new(),
    };
    let heartbeat = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        conn.handshake(&mut frames, peer, &config),
    )
    .await
    {
        Ok(Ok(h)) => Some(h),
        Ok(Err(Some(e))) => {
            conn.close_connection(&mut frames, e, MethodId::NONE).await;
            None
        }
        _ => None,
    };
    // After the close handshake the socket stays open, its input read and discarded,
    // until the client closes it (RabbitMQ's closing state): closing with unread input
    // makes the kernel send a reset, which can destroy the close-ok before the client
    // reads it (a publisher that wrote far ahead of the server, then closed).
    let mut linger = CLOSE_LINGER_MIN;
    if let Some(heartbeat) = heartbeat {
        if heartbeat > 0 {
            linger = Duration::from_secs(u64::from(heartbeat)).min(CLOSE_LINGER_MAX);
        } else {
            linger = CLOSE_LINGER_MAX;
        }
        frames.frame_max = conn.frame_max;
        let _ = conn.out.send(Out::Heartbeat(heartbeat)).await;
        tracing::debug!(%peer, conn = id, heartbeat, frame_max = conn.frame_max, "AMQP connection open");
        frames.last_frame = Instant::now();
        // Listed by the management API until this block ends (or the task fails).
        let mut reg = conn.vhost.registry().register(
            id,
            crate::registry::ConnMeta {
                peer,
                local,
                user: conn.user.clone(),
                vhost: conn.vhost.name().to_string(),
                ssl: conn.tls.is_some(),
                peer_cert_subject: conn.tls.as_ref().and_then(|t| t.client_subject.clone()),
                auth_mechanism: std::mem::take(&mut conn.auth_mechanism),
                client_properties: std::mem::take(&mut conn.client_properties),
                frame_max: conn.frame_max as u32,
                channel_max: conn.channel_max,
                heartbeat,
            },
            Arc::clone(&counters),
        );
        let mut deleted = conn.vhost.subscribe_deleted();
        let mut tick = tokio::time::interval(Duration::from_secs(u64::from(heartbeat.max(1))));
        let mut ack_check = tokio::time::interval(
            conn.consumer_timeout
                .map_or(Duration::from_secs(3600), |t| {
                    (t / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
                }),
        );
        loop {
            tokio::select! {
                _ = ack_check.tick(), if conn.consumer_timeout.is_some() => conn.check_ack_timeouts().await,
                f = frames.recv(), if conn.held.is_none() => {
                    match f {
                        None => break,
                        Some(Err(e)) => {
                            let code = match e {
                                FrameError::Malformed(_) => SYNTAX_ERROR,
                                _ => FRAME_ERROR,
                            };
                            conn.close_connection(&mut frames, AmqpError::new(code, e.to_string()), MethodId::NONE).await;
                            break;
                        }
                        Some(Ok(Inbound { frame, prefetch_size })) => {
                            conn.qos_prefetch_size = prefetch_size;
                            let alarm = conn.alarm.borrow().clone();
                            let spent = conn.bodies.spent().filter(|_| is_publish(&frame));
                            if let (Some(reason), true) = (alarm, is_publish(&frame)) {
                                conn.hold(frame, reason).await;
                            } else if let Some(spent) = spent {
                                // Flow control, not an alarm: no connection.blocked.
                                tracing::debug!(%peer, conn = id, ?spent, buffered = conn.bodies.mine(), "body budget spent; publish waits");
                                conn.flush_publishes().await;
                                conn.held = Some(frame);
                                conn.held_for_budget = true;
                            } else if conn.on_frame(&mut frames, frame).await {
                                break;
                            }
                            // Publishes that arrived together are stored together; the
                            // last of a burst (nothing more to read) flushes them.
                            if frames.is_empty()
                                || conn.pending_bytes >= FLUSH_BYTES
                                || conn.pending.len() >= FLUSH_PUBLISHES
                            {
                                conn.flush_publishes().await;
                            }
                            if frames.is_empty() || conn.acked.len() >= FLUSH_ACKS {
                                conn.flush_acks();
                            }
                            reg.set_channel_count(conn.channels.len());
                        }
                    }
                }
                Some(request) = reg.requests.recv() => {
                    let _ = request.send(conn.channel_infos());
                }
                Ok(()) = reg.close.changed() => {
                    let reason = reg.close.borrow_and_update().clone();
                    if let Some(reason) = reason {
                        tracing::info!(%peer, conn = id, reason = %reason, "closing AMQP connection at the management API's request");
                        let e = AmqpError::new(CONNECTION_FORCED, reason);
                        conn.close_connection(&mut frames, e, MethodId::NONE).await;
                        break;
                    }
                }
                Ok(()) = conn.alarm.changed() => {
                    if conn.alarm.borrow_and_update().is_none() {
                        if conn.blocked_sent {
                            conn.blocked_sent = false;
                            let m = connection::AMQPMethod::Unblocked(connection::Unblocked {});
                            conn.reply(0, AMQPClass::Connection(m)).await;
                        }
                        if conn.held_for_budget {
                            // Still waiting for the body budget: its timer releases it.
                        } else if let Some(frame) = conn.held.take() {
                            if conn.on_frame(&mut frames, frame).await {
                                break;
                            }
                        }
                        if frames.is_empty() {
                            conn.flush_publishes().await;
                        }
                    }
                }
                _ = tokio::time::sleep(BUDGET_RECHECK), if conn.held_for_budget => {
                    if conn.bodies.spent().is_none() && conn.alarm.borrow().is_none() {
                        conn.held_for_budget = false;
                        if let Some(frame) = conn.held.take() {
                            if conn.on_frame(&mut frames, frame).await {
                                break;
                            }
                        }
                        if frames.is_empty() {
                            conn.flush_publishes().await;
                        }
                    }
                }
                _ = conn.wake.notified() => conn.pump(false).await,
                // Made anew by every other event, so it fires once the client is quiet.
                _ = tokio::time::sleep(REFILL_IDLE), if conn.withheld => conn.pump(true).await,
                Ok(()) = deleted.changed() => {
                    if *deleted.borrow_and_update() {
                        let e = AmqpError::new(
                            CONNECTION_FORCED,
                            format!("vhost '{}' is deleted", conn.vhost.name()),
                        );
                        conn.close_connection(&mut frames, e, MethodId::NONE).await;
                        break;
                    }
                }
                Ok(()) = terms.changed() => {
                    if *terms.borrow_and_update() != Some(term) {
                        let e = AmqpError::new(
                            CONNECTION_FORCED,
                            "the node serving this vhost changed; reconnect",
                        );
                        conn.close_connection(&mut frames, e, MethodId::NONE).await;
                        break;
                    }
                }
                Some(first) = confirm_rx.recv() => {
                    // A group commit makes many publishes durable at once: take every
                    // outcome already known, so one `multiple` ack covers them.
                    let mut touched = Vec::new();
                    let mut next = Some(first);
                    while let Some((ch, seq, ok)) = next {
                        if let Some(c) = conn.channels.get_mut(&ch) {
                            c.confirms.decide(seq, ok);
                        }
                        if !touched.contains(&ch) {
                            touched.push(ch);
                        }
                        next = confirm_rx.try_recv().ok();
                    }
                    for ch in touched {
                        conn.flush_confirms(ch).await;
                    }
                }
                Some((ch, tag)) = cancel_rx.recv() => conn.server_cancel(ch, tag).await,
                Some((ch, n, ok)) = commit_rx.recv() => {
                    if let Some(c) = conn.channels.get_mut(&ch) {
                        c.tx.decide(n, ok);
                    }
                    if let Err(e) = conn.flush_commits(ch).await {
                        conn.close_connection(&mut frames, e, TX_COMMIT).await;
                        break;
                    }
                }
                // A blocked connection's frames are not read, so its silence means nothing.
                _ = tick.tick(), if heartbeat > 0 && conn.held.is_none() => {
                    let silent = frames.last_frame.elapsed();
                    if silent > Duration::from_secs(2 * u64::from(heartbeat)) {
                        tracing::info!(%peer, conn = id, "missed heartbeats from client, closing");
                        linger = Duration::ZERO;
                        break;
                    }
                }
            }
        }
    }
    conn.cleanup().await;
    drop(conn);
    drop(_served);
    // The writer sends what is queued (close-ok), then FIN.
    let _ = writer_task.await;
    if !linger.is_zero() {
        frames.discard_until_eof(linger).await;
    }
}

/// How long a new connection waits for a node to serve the vhost (a failover).
const ROUTE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a forwarded connection waits for this node to serve the vhost.
const FORWARDED_ROUTE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the connection here (`Some((stream, term))`) or relays it to the home node (`None` once
/// that relay ends, or when no node serves the vhost in time).
async fn route(
    stream: MaybeTls,
    peer: SocketAddr,
    vhost: &Arc<Vhost>,
    header: &[u8],
    forwarded: bool,
) -> Option<(MaybeTls, u64)> {
    // A forwarded client reconnects through its own node if this one is not the home.
    let wait = if forwarded {
        FORWARDED_ROUTE_TIMEOUT
    } else {
        ROUTE_TIMEOUT
    };
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match vhost.route_connection(left, forwarded).await {
            None => {
                tracing::warn!(%peer, "no node serves the AMQP vhost; closing the connection");
                return None;
            }
            Some(Route::Here(term)) => return Some((stream, term)),
            Some(Route::Forward(endpoint)) => {
                let local = stream.local_addr().ok()?;
                match forward::connect(&endpoint, peer, local, header, vhost.forward_proof()).await
                {
                    Ok(up) => {
                        tracing::debug!(%peer, %endpoint, "forwarding AMQP connection to the node serving the vhost");
                        forward::relay(stream, up).await;
                        return None;
                    }
                    Err(e) => {
                        // The home may have just died: wait for the metadata to move it.
                        tracing::debug!(%peer, %endpoint, error = %e, "cannot reach the node serving the vhost");
                        if tokio::time::Instant::now() >= deadline {
                            return None;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
    }
}

/// A connection's compiled permissions and the metadata they were read from.
#[derive(Default)]
struct PermCache {
    /// Tells (an atomic version check, no lock) when the metadata changed.
    metadata: Option<tokio::sync::watch::Receiver<Arc<arctern_metadata::ClusterState>>>,
    /// `None`: the user has no permissions in the vhost.
    compiled: Option<Compiled>,
}

/// The user's compiled permissions in `vhost` (`None`: none), read again only when the
/// metadata changed since the last check, compiled again only when they changed. Until
/// the first start's `Initialize` is applied everything is allowed (the default user's
/// `.*`).
fn permissions_now<'a>(
    cache: &'a mut PermCache,
    vhost: &Vhost,
    user: &str,
) -> Option<&'a Compiled> {
    let rx = cache.metadata.get_or_insert_with(|| {
        let mut rx = vhost.subscribe_metadata();
        rx.mark_changed();
        rx
    });
    if rx.has_changed().unwrap_or(false) {
        let cluster = Arc::clone(&rx.borrow_and_update());
        let current = if cluster.initialized {
            cluster
                .permissions
                .get(vhost.name())
                .and_then(|users| users.get(user))
                .cloned()
        } else {
            Some(arctern_metadata::Permission::full())
        };
        cache.compiled = match (current, cache.compiled.take()) {
            (Some(p), Some(c)) if c.is_from(&p) => Some(c),
            (Some(p), _) => Some(Compiled::new(&p)),
            (None, _) => None,
        };
    }
    cache.compiled.as_ref()
}

fn close_method(e: &AmqpError, cause: MethodId) -> AMQPClass {
    AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
        reply_code: e.code,
        reply_text: e.reply_text().into(),
        class_id: cause.class,
        method_id: cause.method,
    }))
}

impl Conn {
    async fn send(&self, bytes: Vec<u8>) {
        let want = bytes.len().clamp(1, OUT_BUDGET) as u32;
        let Ok(permit) = Arc::clone(&self.out_budget).acquire_many_owned(want).await else {
            return;
        };
        let _ = self.out.send(Out::Bytes(bytes, permit)).await;
    }

    async fn reply(&self, ch: u16, m: AMQPClass) {
        self.send(wire::method(ch, m)).await;
    }

    async fn expect(frames: &mut FrameSource) -> Result<AMQPClass, Option<AmqpError>> {
        match frames.recv().await {
            Some(Ok(Inbound {
                frame: AMQPFrame::Method(0, m),
                ..
            })) => Ok(m),
            Some(Ok(Inbound {
                frame: AMQPFrame::Heartbeat,
                ..
            })) => Box::pin(Self::expect(frames)).await,
            Some(Ok(_)) => Err(Some(AmqpError::new(
                UNEXPECTED_FRAME,
                "unexpected frame during handshake",
            ))),
            Some(Err(e)) => Err(Some(AmqpError::new(FRAME_ERROR, e.to_string()))),
            None => Err(None),
        }
    }

    /// What `connection.start` offers: EXTERNAL only on TLS with a verified client
    /// certificate (RabbitMQ's rabbitmq_auth_mechanism_ssl).
    fn mechanisms(&self) -> String {
        match &self.tls {
            Some(t) if t.client_subject.is_some() => {
                format!("{} {}", wire::SASL_MECHANISMS, wire::EXTERNAL)
            }
            _ => wire::SASL_MECHANISMS.to_string(),
        }
    }

    /// The EXTERNAL login: the user named by the client certificate
    /// (`ssl_cert_login_from`), who must exist in the user database.
    fn external_user(
        &self,
        peer: SocketAddr,
        config: &AmqpServerConfig,
    ) -> Result<String, AmqpError> {
        let tls = self.tls.as_ref();
        let name = match config.ssl_cert_login_from {
            crate::server::CertLoginFrom::DistinguishedName => {
                tls.and_then(|t| t.client_subject.clone())
            }
            crate::server::CertLoginFrom::CommonName => tls.and_then(|t| t.client_cn.clone()),
        };
        match name {
            Some(user) if self.vhost.user_exists(&user) => Ok(user),
            name => {
                tracing::info!(%peer, user = ?name, mechanism = wire::EXTERNAL, "AMQP login refused");
                Err(AmqpError::refused(
                    "Login was refused using authentication mechanism EXTERNAL. For details see the broker logfile.",
                ))
            }
        }
    }

    /// Start/StartOk, Tune/TuneOk, Open/OpenOk. Returns the negotiated heartbeat.
    async fn handshake(
        &mut self,
        frames: &mut FrameSource,
        peer: SocketAddr,
        config: &AmqpServerConfig,
    ) -> Result<u16, Option<AmqpError>> {
        let mut caps = FieldTable::default();
        for c in [
            "publisher_confirms",
            "basic.nack",
            "consumer_cancel_notify",
            "per_consumer_qos",
            "authentication_failure_close",
            "exchange_exchange_bindings",
            "connection.blocked",
        ] {
            caps.insert(c.into(), AMQPValue::Boolean(true));
        }
        caps.insert("direct_reply_to".into(), AMQPValue::Boolean(false));
        let mut props = FieldTable::default();
        props.insert("product".into(), AMQPValue::LongString("Arctern".into()));
        props.insert(
            "version".into(),
            AMQPValue::LongString(env!("CARGO_PKG_VERSION").into()),
        );
        props.insert("platform".into(), AMQPValue::LongString("Rust".into()));
        props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
        self.reply(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Start(connection::Start {
                version_major: 0,
                version_minor: 9,
                server_properties: props,
                mechanisms: LongString::from(self.mechanisms()),
                locales: LongString::from("en_US"),
            })),
        )
        .await;
        let AMQPClass::Connection(connection::AMQPMethod::StartOk(ok)) =
            Self::expect(frames).await?
        else {
            return Err(Some(AmqpError::new(
                COMMAND_INVALID,
                "expected connection.start-ok",
            )));
        };
        self.client_properties = ok.client_properties.clone();
        self.auth_mechanism = ok.mechanism.as_str().to_string();
        self.wants_blocked = matches!(
            ok.client_properties.inner().get("capabilities"),
            Some(AMQPValue::FieldTable(t))
                if t.inner().get("connection.blocked") == Some(&AMQPValue::Boolean(true))
        );
        let mechanism = ok.mechanism.as_str();
        if !self.mechanisms().split(' ').any(|m| m == mechanism) {
            return Err(Some(AmqpError::refused(format!(
                "unsupported authentication mechanism '{mechanism}' (offered: {})",
                self.mechanisms()
            ))));
        }
        let external = if mechanism == wire::EXTERNAL {
            Some(self.external_user(peer, config).map_err(Some)?)
        } else {
            None
        };
        let (user, pass) =
            wire::sasl_credentials(mechanism, ok.response.as_bytes()).unwrap_or_default();
        let verdict = match (&external, &config.auth) {
            // EXTERNAL: the verified certificate names an existing user (checked above).
            (Some(_), _) => Ok(()),
            (None, Some(auth)) => {
                auth.login(peer.ip(), &user, &pass, &config.loopback_users)
                    .await
            }
            // No user database (unit tests): the default user, from loopback.
            (None, None) if user != config.default_user || pass != config.default_pass => {
                Err(crate::auth::Refusal::BadCredentials)
            }
            (None, None) if !crate::auth::is_loopback(peer.ip()) => {
                Err(crate::auth::Refusal::NotLoopback)
            }
            (None, None) => Ok(()),
        };
        if let Err(refusal) = verdict {
            // RabbitMQ's words to the client, whatever the reason; the reason is logged.
            tracing::warn!(%peer, user = %user, mechanism, reason = %refusal.reason(), "AMQP login refused");
            return Err(Some(AmqpError::refused(format!(
                "Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."
            ))));
        }
        self.user = external.unwrap_or(user);
        self.reply(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Tune(connection::Tune {
                channel_max: config.channel_max,
                frame_max: config.frame_max,
                heartbeat: config.heartbeat,
            })),
        )
        .await;
        let AMQPClass::Connection(connection::AMQPMethod::TuneOk(t)) = Self::expect(frames).await?
        else {
            return Err(Some(AmqpError::new(
                COMMAND_INVALID,
                "expected connection.tune-ok",
            )));
        };
        let fm = if t.frame_max == 0 {
            config.frame_max
        } else {
            t.frame_max.min(config.frame_max)
        };
        if fm < 4096 {
            return Err(Some(AmqpError::new(
                NOT_ALLOWED,
                format!("frame_max {fm} is below the minimum 4096"),
            )));
        }
        self.frame_max = fm as usize;
        self.channel_max = if t.channel_max == 0 {
            config.channel_max
        } else {
            t.channel_max.min(config.channel_max)
        };
        let heartbeat = t.heartbeat;
        let AMQPClass::Connection(connection::AMQPMethod::Open(o)) = Self::expect(frames).await?
        else {
            return Err(Some(AmqpError::new(
                COMMAND_INVALID,
                "expected connection.open",
            )));
        };
        let name = o.virtual_host.as_str();
        let Some(vhost) = self.vhost.open(name).await? else {
            return Err(Some(AmqpError::new(
                NOT_ALLOWED,
                format!("vhost {name} not found"),
            )));
        };
        // RabbitMQ's internal backend: any permissions entry grants access to the vhost.
        self.vhost = vhost;
        if !self.has_permissions() {
            tracing::info!(%peer, user = %self.user, vhost = name, "AMQP vhost access refused");
            return Err(Some(AmqpError::new(
                NOT_ALLOWED,
                format!("access to vhost '{name}' refused for user '{}'", self.user),
            )));
        }
        self.reply(
            0,
            AMQPClass::Connection(connection::AMQPMethod::OpenOk(connection::OpenOk {})),
        )
        .await;
        Ok(heartbeat)
    }

    /// Whether the user has any permissions in this connection's vhost.
    fn has_permissions(&mut self) -> bool {
        permissions_now(&mut self.perms, &self.vhost, &self.user).is_some()
    }

    /// RabbitMQ's `check_resource_access`: 403 ACCESS_REFUSED unless the user's
    /// `access` pattern matches the resource's name.
    pub(super) fn permit(
        &mut self,
        access: Access,
        kind: Resource,
        name: &str,
    ) -> Result<(), AmqpError> {
        let p = permissions_now(&mut self.perms, &self.vhost, &self.user);
        perm::check(p, access, kind, name, self.vhost.name(), &self.user)
    }

    /// A passive declare: any permission on the resource.
    pub(super) fn permit_any(&mut self, kind: Resource, name: &str) -> Result<(), AmqpError> {
        let p = permissions_now(&mut self.perms, &self.vhost, &self.user);
        perm::check_any(p, kind, name, self.vhost.name(), &self.user)
    }

    /// Sends connection.close and waits (briefly) for close-ok, discarding other frames.
    async fn close_connection(&mut self, frames: &mut FrameSource, e: AmqpError, cause: MethodId) {
        tracing::info!(conn = self.id, code = e.code, text = %e.text, "closing AMQP connection");
        self.reply(0, close_method(&e, cause)).await;
        let _ =
            tokio::time::timeout(Duration::from_secs(1), async {
                while let Some(f) = frames.recv().await {
                    if let Ok(Inbound {
                        frame:
                            AMQPFrame::Method(
                                0,
                                AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)),
                            ),
                        ..
                    }) = f
                    {
                        return;
                    }
                }
            })
            .await;
    }

    async fn close_channel(&mut self, ch: u16, e: AmqpError, cause: MethodId) {
        tracing::debug!(conn = self.id, channel = ch, code = e.code, text = %e.text, "closing AMQP channel");
        self.release_channel(ch, false).await;
        if let Some(c) = self.channels.get_mut(&ch) {
            c.closing = true;
        }
        self.reply(
            ch,
            AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
                reply_code: e.code,
                reply_text: e.reply_text().into(),
                class_id: cause.class,
                method_id: cause.method,
            })),
        )
        .await;
    }

    /// Requeues a channel's unacked deliveries and removes its consumers; `remove` drops
    /// the channel itself.
    async fn release_channel(&mut self, ch: u16, remove: bool) {
        let Some(c) = self.channels.get_mut(&ch) else {
            return;
        };
        let unacked = c.deliveries.take_all();
        // An open transaction is rolled back: its settlements never happened.
        let tx_held = c.tx.buffered_bytes();
        let tx_settles = c.tx.rollback();
        let consumers = c.deliveries.take_consumers();
        let buffered = c.publishing.buffered();
        c.publishing.abort();
        self.bodies.adjust(buffered, 0);
        self.bodies.release_tx(tx_held);
        if remove {
            self.channels.remove(&ch);
        }
        requeue(
            unacked
                .into_values()
                .chain(tx_settles.into_iter().map(|s| s.1)),
        );
        for (tag, cons) in consumers {
            let auto = cons.link.queue.remove_consumer(self.id, ch, &tag);
            self.vhost.consumer_gone(&cons.link.queue, auto).await;
        }
    }

    /// A publish during an alarm: it waits, and no frame is read after it until the alarm
    /// clears. As RabbitMQ, `connection.blocked` goes to a connection when it first
    /// publishes during the alarm, not to connections that only consume.
    async fn hold(&mut self, frame: AMQPFrame, reason: String) {
        self.flush_publishes().await;
        self.held = Some(frame);
        if self.wants_blocked && !self.blocked_sent {
            self.blocked_sent = true;
            let m = connection::AMQPMethod::Blocked(connection::Blocked {
                reason: reason.into(),
            });
            self.reply(0, AMQPClass::Connection(m)).await;
        }
    }

    /// Handles one frame from the client; true when the connection is done.
    async fn on_frame(&mut self, frames: &mut FrameSource, frame: AMQPFrame) -> bool {
        // Anything but the parts of a publish sees every earlier publish stored first.
        if !is_publish_part(&frame) {
            self.flush_publishes().await;
        }
        match self.frame(frame).await {
            Ok(Flow::Continue) => false,
            Ok(Flow::Closed) => true,
            Err(Fail::Connection(e, cause)) => {
                self.close_connection(frames, e, cause).await;
                true
            }
            Err(Fail::Channel(ch, e, cause)) => {
                self.close_channel(ch, e, cause).await;
                false
            }
        }
    }

    async fn cleanup(&mut self) {
        self.flush_publishes().await;
        self.flush_acks();
        let ids: Vec<u16> = self.channels.keys().copied().collect();
        for ch in ids {
            self.release_channel(ch, true).await;
        }
        self.vhost.connection_closed(self.id).await;
    }

    async fn frame(&mut self, frame: AMQPFrame) -> Result<Flow, Fail> {
        let conn_err =
            |code: u16, text: String| Fail::Connection(AmqpError::new(code, text), MethodId::NONE);
        match frame {
            AMQPFrame::Heartbeat => Ok(Flow::Continue),
            AMQPFrame::ProtocolHeader(_) | AMQPFrame::InvalidHeartbeat(_) => {
                Err(conn_err(UNEXPECTED_FRAME, "unexpected frame".into()))
            }
            AMQPFrame::Method(0, m) => {
                let cause = MethodId::of(&m);
                match m {
                    AMQPClass::Connection(connection::AMQPMethod::Close(_)) => {
                        self.reply(
                            0,
                            AMQPClass::Connection(connection::AMQPMethod::CloseOk(
                                connection::CloseOk {},
                            )),
                        )
                        .await;
                        Ok(Flow::Closed)
                    }
                    AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)) => Ok(Flow::Closed),
                    AMQPClass::Connection(connection::AMQPMethod::UpdateSecret(u)) => {
                        // RabbitMQ hands the secret to its auth backends; password
                        // backends (its internal one, Arctern's guest) keep no expiring
                        // state and accept it for a connection that logged in already.
                        tracing::info!(conn = self.id, user = %self.user, reason = %u.reason, "AMQP user updated secret");
                        self.reply(
                            0,
                            AMQPClass::Connection(connection::AMQPMethod::UpdateSecretOk(
                                connection::UpdateSecretOk {},
                            )),
                        )
                        .await;
                        Ok(Flow::Continue)
                    }
                    _ => Err(Fail::Connection(
                        AmqpError::new(COMMAND_INVALID, "unexpected method on channel 0"),
                        cause,
                    )),
                }
            }
            AMQPFrame::Method(ch, m) => {
                let timed = crate::stats::timed_method(MethodId::of(&m));
                let started = Instant::now();
                let r = self.method(ch, m).await;
                if let Some(h) = timed {
                    h.observe_duration(started.elapsed());
                }
                r.map(|_| Flow::Continue)
            }
            AMQPFrame::Header(ch, h) => self
                .content(ch, Content::Header(h))
                .await
                .map(|_| Flow::Continue),
            AMQPFrame::Body(ch, b) => self
                .content(ch, Content::Body(b))
                .await
                .map(|_| Flow::Continue),
        }
    }

    /// The open channels as the management API shows them.
    fn channel_infos(&self) -> Vec<crate::registry::ChannelInfo> {
        let mut out: Vec<crate::registry::ChannelInfo> = self
            .channels
            .iter()
            .filter(|(_, c)| !c.closing)
            .map(|(&number, c)| {
                let (prefetch_count, global_prefetch_count) = c.deliveries.prefetch_counts();
                let (messages_uncommitted, acks_uncommitted) = c.tx.uncommitted();
                let consumers = c
                    .deliveries
                    .consumers()
                    .map(|(tag, cons)| crate::registry::ConsumerInfo {
                        tag: tag.clone(),
                        queue: cons.link.queue.name.clone(),
                        ack_required: !cons.no_ack,
                        exclusive: cons.link.exclusive,
                        prefetch_count: cons.prefetch,
                        active: cons.link.active.load(std::sync::atomic::Ordering::Relaxed),
                        arguments: cons.link.arguments.clone(),
                    })
                    .collect();
                crate::registry::ChannelInfo {
                    number,
                    confirm: c.confirms.enabled(),
                    transactional: c.tx.active(),
                    prefetch_count,
                    global_prefetch_count,
                    messages_unacknowledged: c.deliveries.unacked_len() as u64,
                    messages_unconfirmed: c.confirms.pending() as u64,
                    messages_uncommitted: messages_uncommitted as u64,
                    acks_uncommitted: acks_uncommitted as u64,
                    consumers,
                }
            })
            .collect();
        out.sort_by_key(|c| c.number);
        out
    }

    fn channel(&mut self, ch: u16) -> Result<&mut Channel, Fail> {
        self.channels.get_mut(&ch).ok_or_else(|| {
            Fail::Connection(
                AmqpError::new(
                    CHANNEL_ERROR,
                    format!("expected 'channel.open' on channel {ch}"),
                ),
                MethodId::NONE,
            )
        })
    }
}

/// A frame of a publish (method, content header, body) or a heartbeat: these do not
/// need earlier publishes stored before them.
fn is_publish_part(frame: &AMQPFrame) -> bool {
    matches!(
        frame,
        AMQPFrame::Header(..) | AMQPFrame::Body(..) | AMQPFrame::Heartbeat
    ) || is_publish(frame)
}

fn is_publish(frame: &AMQPFrame) -> bool {
    matches!(
        frame,
        AMQPFrame::Method(_, AMQPClass::Basic(basic::AMQPMethod::Publish(_)))
    )
}
