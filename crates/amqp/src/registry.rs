//! The AMQP connections open on this node, for the management API (RabbitMQ's
//! `/api/connections`, `/api/channels`, `/api/consumers`).
//!
//! A connection registers once its handshake is done and stays registered while its
//! [`Registration`] lives (dropped when the connection task ends, also on an error or a
//! panic). What never changes (name, peer, user, client properties) is stored at
//! registration; byte and socket-operation counters are atomics the socket halves bump;
//! the channels' state belongs to the connection task, which answers a
//! [`ConnEntry::channels`] request in its select loop (the last answer is kept for a task
//! too busy to answer in time). No lock here is held across an `.await`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use amq_protocol::types::{AMQPValue, FieldTable};
use tokio::sync::{mpsc, oneshot, watch};

/// RabbitMQ's reason when the management plugin closes a connection.
pub const DEFAULT_CLOSE_REASON: &str = "Closed via management plugin";

/// How long a request for a connection's channels waits for the connection task.
const CHANNELS_WAIT: Duration = Duration::from_millis(500);

/// Socket traffic of one connection: bytes and read/write operations (RabbitMQ's
/// `recv_oct`, `send_oct`, `recv_cnt`, `send_cnt`).
#[derive(Debug, Default)]
pub struct Counters {
    recv_oct: AtomicU64,
    send_oct: AtomicU64,
    recv_cnt: AtomicU64,
    send_cnt: AtomicU64,
}

impl Counters {
    pub fn received(&self, bytes: usize) {
        self.recv_oct.fetch_add(bytes as u64, Ordering::Relaxed);
        self.recv_cnt.fetch_add(1, Ordering::Relaxed);
    }

    pub fn sent(&self, bytes: usize) {
        self.send_oct.fetch_add(bytes as u64, Ordering::Relaxed);
        self.send_cnt.fetch_add(1, Ordering::Relaxed);
    }

    /// `(recv_oct, send_oct, recv_cnt, send_cnt)`.
    pub fn get(&self) -> (u64, u64, u64, u64) {
        (
            self.recv_oct.load(Ordering::Relaxed),
            self.send_oct.load(Ordering::Relaxed),
            self.recv_cnt.load(Ordering::Relaxed),
            self.send_cnt.load(Ordering::Relaxed),
        )
    }
}

/// What a connection is, fixed at registration.
#[derive(Debug, Clone)]
pub struct ConnMeta {
    /// The client's address (the original client's for a forwarded connection).
    pub peer: SocketAddr,
    /// This node's address the client connected to.
    pub local: SocketAddr,
    pub user: String,
    pub vhost: String,
    pub ssl: bool,
    /// The verified client certificate's subject DN (TLS with client certificates).
    pub peer_cert_subject: Option<String>,
    /// The SASL mechanism the client logged in with (`PLAIN`, `AMQPLAIN`, `EXTERNAL`).
    pub auth_mechanism: String,
    /// `connection.start-ok`'s client properties.
    pub client_properties: FieldTable,
    pub frame_max: u32,
    pub channel_max: u16,
    /// The negotiated heartbeat in seconds.
    pub heartbeat: u16,
}

/// One channel as its connection task reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelInfo {
    pub number: u16,
    /// confirm.select was used.
    pub confirm: bool,
    /// tx.select was used.
    pub transactional: bool,
    /// basic.qos prefetch for new consumers (global=false) and for the channel (global=true).
    pub prefetch_count: u16,
    pub global_prefetch_count: u16,
    pub messages_unacknowledged: u64,
    pub messages_unconfirmed: u64,
    pub messages_uncommitted: u64,
    pub acks_uncommitted: u64,
    pub consumers: Vec<ConsumerInfo>,
}

/// One consumer of a channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerInfo {
    pub tag: String,
    pub queue: String,
    /// The consumer was started without no-ack.
    pub ack_required: bool,
    pub exclusive: bool,
    pub prefetch_count: u16,
    pub active: bool,
    pub arguments: FieldTable,
}

/// A request for a connection's channels, answered by its task.
pub type ChannelsRequest = oneshot::Sender<Vec<ChannelInfo>>;

/// A registered connection.
#[derive(Debug)]
pub struct ConnEntry {
    pub id: u64,
    /// RabbitMQ's connection name: `"<peer> -> <local>"`.
    pub name: String,
    pub meta: ConnMeta,
    /// Milliseconds since the Unix epoch when the connection was opened.
    pub connected_at: u64,
    pub counters: Arc<Counters>,
    channel_count: AtomicUsize,
    close: watch::Sender<Option<String>>,
    requests: mpsc::Sender<ChannelsRequest>,
    /// The last channels the task reported.
    last_channels: Mutex<Vec<ChannelInfo>>,
    rates: Mutex<RateSample>,
}

/// The counters at the last look, and the rates computed then.
#[derive(Debug)]
struct RateSample {
    at: Instant,
    recv_oct: u64,
    send_oct: u64,
    recv_rate: f64,
    send_rate: f64,
}

/// Rates are recomputed at most this often (RabbitMQ's `collect_statistics_interval` is 5 s).
const RATE_MIN_INTERVAL: Duration = Duration::from_secs(1);

/// `(later - earlier) / seconds`, 0 for no time or a counter that went back.
pub fn rate(earlier: u64, later: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    later.saturating_sub(earlier) as f64 / secs
}

impl ConnEntry {
    /// Channels open on the connection (as of its last frame).
    pub fn channel_count(&self) -> usize {
        self.channel_count.load(Ordering::Relaxed)
    }

    /// Asks the connection to close with 320 CONNECTION_FORCED and `reason`.
    pub fn close(&self, reason: &str) {
        self.close.send_replace(Some(reason.to_string()));
    }

    /// The connection's channels, asked of its task; the last answer if it does not
    /// answer in time (a connection stalled writing to a client that does not read).
    pub async fn channels(&self) -> Vec<ChannelInfo> {
        let (tx, rx) = oneshot::channel();
        if self.requests.try_send(tx).is_ok() {
            if let Ok(Ok(fresh)) = tokio::time::timeout(CHANNELS_WAIT, rx).await {
                if let Ok(mut last) = self.last_channels.lock() {
                    *last = fresh.clone();
                }
                return fresh;
            }
        }
        self.last_channels
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// Bytes per second received and sent, over the time since the previous look at
    /// least [`RATE_MIN_INTERVAL`] ago (since the connection opened for the first look).
    pub fn rates(&self) -> (f64, f64) {
        let (recv, send, _, _) = self.counters.get();
        let Ok(mut s) = self.rates.lock() else {
            return (0.0, 0.0);
        };
        let elapsed = s.at.elapsed();
        if elapsed >= RATE_MIN_INTERVAL {
            s.recv_rate = rate(s.recv_oct, recv, elapsed);
            s.send_rate = rate(s.send_oct, send, elapsed);
            s.at = Instant::now();
            s.recv_oct = recv;
            s.send_oct = send;
        }
        (s.recv_rate, s.send_rate)
    }
}

/// RabbitMQ's connection name: `"127.0.0.1:54321 -> 127.0.0.1:5672"` (IPv6 in brackets).
pub fn connection_name(peer: SocketAddr, local: SocketAddr) -> String {
    format!("{peer} -> {local}")
}

/// RabbitMQ's channel name: `"<connection name> (<number>)"`.
pub fn channel_name(connection: &str, number: u16) -> String {
    format!("{connection} ({number})")
}

/// The connections open on this node (one per node, shared by every vhost instance).
#[derive(Debug, Default)]
pub struct Registry {
    conns: Mutex<BTreeMap<u64, Arc<ConnEntry>>>,
}

/// The connection task's side of a registration: it deregisters on drop.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<Registry>,
    entry: Arc<ConnEntry>,
    /// Turns `Some(reason)` when the connection is to be closed.
    pub close: watch::Receiver<Option<String>>,
    /// Requests for the channels.
    pub requests: mpsc::Receiver<ChannelsRequest>,
}

impl Registration {
    /// Records how many channels are open.
    pub fn set_channel_count(&self, n: usize) {
        self.entry.channel_count.store(n, Ordering::Relaxed);
    }

    pub fn entry(&self) -> &Arc<ConnEntry> {
        &self.entry
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut conns) = self.registry.conns.lock() {
            conns.remove(&self.entry.id);
        }
    }
}

impl Registry {
    /// Registers an open connection until the returned guard drops.
    pub fn register(
        self: &Arc<Self>,
        id: u64,
        meta: ConnMeta,
        counters: Arc<Counters>,
    ) -> Registration {
        let (close_tx, close_rx) = watch::channel(None);
        let (req_tx, req_rx) = mpsc::channel(8);
        let connected_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let (recv_oct, send_oct, _, _) = counters.get();
        let entry = Arc::new(ConnEntry {
            id,
            name: connection_name(meta.peer, meta.local),
            meta,
            connected_at,
            counters,
            channel_count: AtomicUsize::new(0),
            close: close_tx,
            requests: req_tx,
            last_channels: Mutex::new(Vec::new()),
            rates: Mutex::new(RateSample {
                at: Instant::now(),
                recv_oct,
                send_oct,
                recv_rate: 0.0,
                send_rate: 0.0,
            }),
        });
        if let Ok(mut conns) = self.conns.lock() {
            conns.insert(id, Arc::clone(&entry));
        }
        Registration {
            registry: Arc::clone(self),
            entry,
            close: close_rx,
            requests: req_rx,
        }
    }

    /// Every registered connection, oldest first.
    pub fn list(&self) -> Vec<Arc<ConnEntry>> {
        self.conns
            .lock()
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The connection of that name.
    pub fn find(&self, name: &str) -> Option<Arc<ConnEntry>> {
        self.conns
            .lock()
            .ok()?
            .values()
            .find(|c| c.name == name)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.conns.lock().map(|c| c.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Channels open on registered connections (as of their last frames).
    pub fn channel_count(&self) -> usize {
        self.list().iter().map(|c| c.channel_count()).sum()
    }
}

/// A field table as JSON, as RabbitMQ's management API renders client properties and
/// arguments (nested tables as objects, arrays as arrays, byte arrays as strings).
pub fn table_json(t: &FieldTable) -> serde_json::Value {
    serde_json::Value::Object(
        t.inner()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), value_json(v)))
            .collect(),
    )
}

fn value_json(v: &AMQPValue) -> serde_json::Value {
    use serde_json::Value;
    match v {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(n) => (*n).into(),
        AMQPValue::ShortShortUInt(n) => (*n).into(),
        AMQPValue::ShortInt(n) => (*n).into(),
        AMQPValue::ShortUInt(n) => (*n).into(),
        AMQPValue::LongInt(n) => (*n).into(),
        AMQPValue::LongUInt(n) => (*n).into(),
        AMQPValue::LongLongInt(n) => (*n).into(),
        AMQPValue::Timestamp(n) => (*n).into(),
        AMQPValue::Float(f) => {
            serde_json::Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number)
        }
        AMQPValue::Double(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        AMQPValue::DecimalValue(d) => {
            let x = f64::from(d.value) / 10f64.powi(i32::from(d.scale));
            serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
        }
        AMQPValue::ShortString(s) => Value::String(s.as_str().to_string()),
        AMQPValue::LongString(s) => {
            Value::String(String::from_utf8_lossy(s.as_bytes()).into_owned())
        }
        AMQPValue::ByteArray(b) => {
            Value::String(String::from_utf8_lossy(b.as_slice()).into_owned())
        }
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(value_json).collect()),
        AMQPValue::FieldTable(t) => table_json(t),
        AMQPValue::Void => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(port: u16) -> ConnMeta {
        ConnMeta {
            peer: SocketAddr::from(([127, 0, 0, 1], port)),
            local: SocketAddr::from(([127, 0, 0, 1], 5672)),
            user: "guest".into(),
            vhost: "/".into(),
            ssl: false,
            peer_cert_subject: None,
            auth_mechanism: "PLAIN".into(),
            client_properties: FieldTable::default(),
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat: 60,
        }
    }

    #[test]
    fn names_follow_rabbitmq() {
        let peer: SocketAddr = "127.0.0.1:54321".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:5672".parse().unwrap();
        assert_eq!(
            connection_name(peer, local),
            "127.0.0.1:54321 -> 127.0.0.1:5672"
        );
        let v6: SocketAddr = "[::1]:5000".parse().unwrap();
        assert_eq!(connection_name(v6, v6), "[::1]:5000 -> [::1]:5000");
        assert_eq!(channel_name("a -> b", 3), "a -> b (3)");
    }

    #[tokio::test]
    async fn registration_lives_as_long_as_its_guard() {
        let r = Arc::new(Registry::default());
        let a = r.register(1, meta(1000), Arc::default());
        let b = r.register(2, meta(1001), Arc::default());
        assert_eq!(r.len(), 2);
        a.set_channel_count(2);
        b.set_channel_count(1);
        assert_eq!(r.channel_count(), 3);
        let found = r.find("127.0.0.1:1001 -> 127.0.0.1:5672").unwrap();
        assert_eq!(found.id, 2);
        drop(b);
        assert_eq!(r.len(), 1);
        assert!(r.find("127.0.0.1:1001 -> 127.0.0.1:5672").is_none());
        // A panicking connection task deregisters too (the guard drops on unwind).
        let r2 = Arc::clone(&r);
        let t = tokio::spawn(async move {
            let _g = r2.register(3, meta(1002), Arc::default());
            panic!("connection task failed");
        });
        assert!(t.await.is_err());
        assert_eq!(r.list().iter().map(|c| c.id).collect::<Vec<_>>(), vec![1]);
        drop(a);
        assert!(r.is_empty());
    }

    #[tokio::test]
    async fn close_and_channel_requests_reach_the_task() {
        let r = Arc::new(Registry::default());
        let mut g = r.register(1, meta(1000), Arc::default());
        let entry = r.find("127.0.0.1:1000 -> 127.0.0.1:5672").unwrap();
        let info = ChannelInfo {
            number: 1,
            confirm: true,
            transactional: false,
            prefetch_count: 10,
            global_prefetch_count: 0,
            messages_unacknowledged: 2,
            messages_unconfirmed: 0,
            messages_uncommitted: 0,
            acks_uncommitted: 0,
            consumers: vec![],
        };
        let answer = info.clone();
        let task = tokio::spawn(async move {
            let req = g.requests.recv().await.unwrap();
            let _ = req.send(vec![answer]);
            g.close.changed().await.unwrap();
            let reason = g.close.borrow().clone();
            (g, reason)
        });
        assert_eq!(entry.channels().await, vec![info.clone()]);
        entry.close(DEFAULT_CLOSE_REASON);
        let (g, reason) = task.await.unwrap();
        assert_eq!(reason.as_deref(), Some(DEFAULT_CLOSE_REASON));
        // A task that no longer answers: the last answer.
        assert_eq!(entry.channels().await, vec![info]);
        drop(g);
    }

    #[test]
    fn counters_and_rates() {
        let c = Counters::default();
        c.received(100);
        c.received(50);
        c.sent(10);
        assert_eq!(c.get(), (150, 10, 2, 1));
        assert_eq!(rate(100, 300, Duration::from_secs(2)), 100.0);
        assert_eq!(rate(300, 100, Duration::from_secs(2)), 0.0);
        assert_eq!(rate(0, 10, Duration::ZERO), 0.0);
    }

    #[test]
    fn field_tables_become_json() {
        let mut caps = FieldTable::default();
        caps.insert("publisher_confirms".into(), AMQPValue::Boolean(true));
        let mut t = FieldTable::default();
        t.insert("connection_name".into(), AMQPValue::LongString("x".into()));
        t.insert("capabilities".into(), AMQPValue::FieldTable(caps));
        t.insert("n".into(), AMQPValue::LongInt(-3));
        assert_eq!(
            table_json(&t),
            serde_json::json!({
                "connection_name": "x",
                "capabilities": {"publisher_confirms": true},
                "n": -3
            })
        );
    }
}
