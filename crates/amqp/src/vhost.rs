//! The virtual host `/`: exchanges, queues and bindings over the broker core.
//!
//! Durable definitions (durable exchanges, durable non-exclusive queues, bindings between
//! durable ones) are commands in the Raft metadata (`ClusterState::amqp`), committed
//! before the declaration is answered and rebuilt from the metadata at start. Each queue's messages live in its own topic `__amqp_q_<uuid>`: a fresh id
//! per declaration, so a queue deleted and declared again never sees old records, and
//! any AMQP queue name (up to 255 bytes of UTF-8) maps onto a legal Kafka topic name.
//!
//! On a cluster one node serves the vhost: the leader of the `__amqp_home` topic (its
//! "home"). Every queue topic carries `leader.follows=__amqp_home`, so the metadata keeps
//! each queue led by that same node; other nodes forward their AMQP connections to it
//! (`forward.rs`). A node becomes home by loading the definitions from the metadata and
//! opening every queue from its log; it stops being home (closing its connections with
//! 320 CONNECTION_FORCED) as soon as it loses the home or any open queue's leadership.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amq_protocol::types::{AMQPValue, FieldTable};
use arctern_core::{Broker, Partition};
use arctern_metadata::{
    AmqpBindingDef, AmqpChange, AmqpDefinitions, AmqpExchangeDef, AmqpQueueDef, ClusterState,
    DEFAULT_VHOST, LEADER_FOLLOWS_CONFIG, NO_LEADER,
};
use bytes::Bytes;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::args::QueueArgs;
use crate::codes::{core_error, AmqpError, COMMAND_INVALID};
use crate::deadletter::{is_cycle, mark_dead, Death, DeathReason};
use crate::queue::{Enqueued, Queue, QueueSetup, StoredWait};
use crate::record::{encode_message, StoredMessage};
use crate::topic::topic_matches;
use crate::wire;

pub const QUEUE_TOPIC_PREFIX: &str = "__amqp_q_";

/// The topic whose partition 0 leader serves the vhost. It holds no records.
pub const HOME_TOPIC: &str = "__amqp_home";

/// Where a new connection is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Here, in this home term (connections close when it ends).
    Here(u64),
    /// At the home node's AMQP endpoint.
    Forward(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    pub fn parse(s: &str) -> Result<ExchangeKind, AmqpError> {
        match s {
            "direct" => Ok(ExchangeKind::Direct),
            "fanout" => Ok(ExchangeKind::Fanout),
            "topic" => Ok(ExchangeKind::Topic),
            "headers" => Ok(ExchangeKind::Headers),
            // RabbitMQ answers an unknown type with this connection exception.
            other => Err(AmqpError::new(
                COMMAND_INVALID,
                format!("invalid exchange type '{other}' (Arctern supports direct, fanout, topic, headers)"),
            )),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    pub name: String,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Binding {
    pub exchange: String,
    pub queue: String,
    pub key: String,
    /// Binding arguments as JSON (part of a binding's identity, as in RabbitMQ; the
    /// headers exchange matches on them).
    pub arguments: String,
    /// The destination (`queue`) is an exchange (exchange.bind).
    pub to_exchange: bool,
}

/// One change to the durable definitions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op")]
enum DefEvent {
    PutExchange(Exchange),
    DeleteExchange {
        name: String,
    },
    PutQueue {
        name: String,
        topic: String,
        auto_delete: bool,
        arguments: FieldTable,
    },
    DeleteQueue {
        name: String,
    },
    Bind(Binding),
    Unbind(Binding),
}

#[derive(Debug, Default)]
struct State {
    exchanges: HashMap<String, Exchange>,
    queues: HashMap<String, Arc<Queue>>,
    bindings: HashSet<Binding>,
}

impl State {
    /// Only the built-in exchanges.
    fn fresh() -> State {
        let mut state = State::default();
        for e in builtin_exchanges() {
            state.exchanges.insert(e.name.clone(), e);
        }
        state
    }
}

/// Counts a connection served here (see `Vhost::connection_guard`).
#[derive(Debug)]
pub struct ConnectionGuard(Arc<Vhost>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The node leading the home topic, if any.
fn home_leader(cluster: &ClusterState) -> Option<i32> {
    let leader = cluster.topics.get(HOME_TOPIC)?.partitions.first()?.leader;
    (leader != NO_LEADER && cluster.is_unfenced(leader)).then_some(leader)
}

/// One queue's counts as `Vhost::queue_stats` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    pub vhost: String,
    pub name: String,
    pub ready: u32,
    pub unacked: u32,
    pub consumers: u32,
}

/// Settings the vhost needs from the server config.
#[derive(Debug, Clone)]
pub struct VhostConfig {
    pub max_message_size: usize,
    /// `segment.bytes` of queue logs (see `AmqpServerConfig::queue_segment_bytes`).
    pub queue_segment_bytes: u64,
    /// Where other nodes reach this node's AMQP listener (`host:port`).
    pub endpoint: String,
    /// `cluster.secret`: when set, forwarded connections carry a membership proof and the
    /// home accepts a PROXY line only after a valid one.
    pub cluster_secret: Option<Arc<arctern_security::ClusterSecret>>,
}

#[derive(Debug)]
pub struct Vhost {
    /// The vhost's name ("/" for the root instance, which also drives the home role).
    name: String,
    broker: Arc<Broker>,
    /// Serializes definition changes, so they commit in the order they were applied here.
    order: tokio::sync::Mutex<()>,
    state: Mutex<State>,
    config: VhostConfig,
    /// `Some(term)` while this node serves the vhost; each time it starts to, the term
    /// grows. Connections of an ended term close.
    term: tokio::sync::watch::Sender<Option<u64>>,
    /// The last term served here (terms never repeat).
    last_term: AtomicUsize,
    /// Set once a client asked for the vhost: the home topic is then created if missing.
    wanted: AtomicBool,
    /// Connections being served here (all terms); a new term waits for the old ones.
    connections: AtomicUsize,
    /// Wakes the housekeeping task (dead-lettering, TTL, `x-expires`).
    housekeeping: Arc<tokio::sync::Notify>,
    /// The root ("/") only: the other vhosts of `ClusterState::vhosts`, by name. They
    /// share the root's home role and term; `term`, `wanted` and `connections` of a
    /// child are unused.
    children: Mutex<BTreeMap<String, Arc<Vhost>>>,
    /// A child only: its definitions are loaded in the current home term.
    ready: AtomicBool,
    /// Turns true when the vhost is deleted: its connections close.
    deleted: tokio::sync::watch::Sender<bool>,
    /// The node's open connections (the root's, shared by its children).
    registry: Arc<crate::registry::Registry>,
    /// When `watch_home` last checked every queue's leadership: at most once per
    /// `HOME_CHECK`, not on every metadata change (a declare is two or three changes, so
    /// scanning each time made declaring the N-th queue cost O(N)).
    queues_checked_at: Mutex<Option<tokio::time::Instant>>,
}

/// How often housekeeping looks at every queue even when nothing woke it (expiry by TTL
/// and `x-expires` are found this way).
const HOUSEKEEPING_TICK: Duration = Duration::from_millis(100);

/// How often the home role is checked even without a metadata change (a replica's role
/// follows the metadata a moment later).
const HOME_CHECK: Duration = Duration::from_millis(200);

fn poisoned() -> AmqpError {
    AmqpError::internal("vhost lock poisoned")
}

/// The local leader replica of a single-partition topic, waiting for the metadata to make
/// this node its leader (topic creation is a metadata commit, then a reconcile).
pub async fn leader_partition(broker: &Broker, topic: &str) -> Result<Arc<Partition>, AmqpError> {
    for _ in 0..1000 {
        if let Ok(p) = broker.partition(topic, 0) {
            if p.is_leader() {
                return Ok(p);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(AmqpError::internal(format!(
        "queue topic {topic} is not led by this node, which serves the vhost (its replicas are not in sync yet)"
    )))
}

fn queue_topic_configs(config: &VhostConfig) -> Vec<(String, String)> {
    let max_message_size = config.max_message_size;
    vec![
        // A queue keeps messages until they are settled, never by age or size; settled
        // segments are deleted by `Queue::reclaim`.
        ("retention.ms".into(), "-1".into()),
        ("retention.bytes".into(), "-1".into()),
        (
            "segment.bytes".into(),
            config.queue_segment_bytes.to_string(),
        ),
        (
            "max.message.bytes".into(),
            (max_message_size + 4096).to_string(),
        ),
        // Every queue is led by the node serving the vhost.
        (LEADER_FOLLOWS_CONFIG.into(), HOME_TOPIC.into()),
        // Publishes wait for their fdatasync: keep it to one data write (see
        // `LogConfig::preallocate`).
        ("preallocate".into(), "true".into()),
    ]
}

fn builtin_exchanges() -> Vec<Exchange> {
    [
        ("", ExchangeKind::Direct),
        ("amq.direct", ExchangeKind::Direct),
        ("amq.fanout", ExchangeKind::Fanout),
        ("amq.topic", ExchangeKind::Topic),
        ("amq.headers", ExchangeKind::Headers),
        ("amq.match", ExchangeKind::Headers),
    ]
    .into_iter()
    .map(|(n, k)| Exchange {
        name: n.into(),
        kind: k,
        durable: true,
        auto_delete: false,
        internal: false,
        arguments: FieldTable::default(),
    })
    .collect()
}

/// A server-named queue's name (RabbitMQ's `amq.gen-` form).
pub fn server_named() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::thread_rng();
    let s: String = (0..22)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("amq.gen-{s}")
}

fn inequivalent(
    vh: &str,
    what: &str,
    name: &str,
    arg: &str,
    got: impl std::fmt::Display,
    cur: impl std::fmt::Display,
) -> AmqpError {
    AmqpError::precondition(format!(
        "inequivalent arg '{arg}' for {what} '{name}' in vhost '{vh}': received '{got}' but current is '{cur}'"
    ))
}

/// What queue.declare asked for.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub name: String,
    /// `name` was made by the server (`server_named`) for a declare without one.
    pub generated: bool,
    pub passive: bool,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub arguments: FieldTable,
}

impl Vhost {
    /// A vhost whose home role is driven in the background (see `watch_home`): startup
    /// never waits for AMQP, and the Kafka side is never affected by it.
    pub fn start(broker: Arc<Broker>, config: VhostConfig) -> Arc<Vhost> {
        let v = Vhost::new(DEFAULT_VHOST, broker, config, Arc::default());
        let weak = Arc::downgrade(&v);
        let mut changes = v.broker.subscribe_metadata();
        tokio::spawn(async move {
            let mut attempt = 0u32;
            loop {
                let Some(v) = weak.upgrade() else { return };
                if v.broker.is_shutting_down() {
                    return;
                }
                if let Err(e) = v.watch_home().await {
                    if attempt.is_multiple_of(10) {
                        tracing::warn!(error = %e, "AMQP vhost not served here yet; retrying");
                    }
                    attempt += 1;
                } else {
                    attempt = 0;
                }
                drop(v);
                let _ = tokio::time::timeout(HOME_CHECK, changes.changed()).await;
            }
        });
        v
    }

    /// An instance with its housekeeping task (ends when the instance is dropped).
    fn new(
        name: &str,
        broker: Arc<Broker>,
        config: VhostConfig,
        registry: Arc<crate::registry::Registry>,
    ) -> Arc<Vhost> {
        let v = Arc::new(Vhost {
            name: name.to_string(),
            broker,
            order: tokio::sync::Mutex::new(()),
            state: Mutex::new(State::fresh()),
            config,
            term: tokio::sync::watch::channel(None).0,
            last_term: AtomicUsize::new(0),
            wanted: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            housekeeping: Arc::new(tokio::sync::Notify::new()),
            children: Mutex::new(BTreeMap::new()),
            ready: AtomicBool::new(false),
            deleted: tokio::sync::watch::channel(false).0,
            registry,
            queues_checked_at: Mutex::new(None),
        });
        let weak = Arc::downgrade(&v);
        let wake = Arc::clone(&v.housekeeping);
        tokio::spawn(async move {
            loop {
                let _ = tokio::time::timeout(HOUSEKEEPING_TICK, wake.notified()).await;
                let Some(v) = weak.upgrade() else { return };
                v.housekeep().await;
            }
        });
        v
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Turns true once the vhost is deleted (its connections close with 320).
    pub fn subscribe_deleted(&self) -> tokio::sync::watch::Receiver<bool> {
        self.deleted.subscribe()
    }

    /// The metadata as applied on this node (users, permissions), and its changes.
    pub fn subscribe_metadata(&self) -> tokio::sync::watch::Receiver<Arc<ClusterState>> {
        self.broker.subscribe_metadata()
    }

    /// The vhost a connection.open names, ready to serve (called on the root, in a
    /// home term): `None` if `ClusterState::vhosts` has no such vhost. Before the first
    /// start's `Initialize` is applied, "/" exists.
    pub async fn open(self: &Arc<Self>, name: &str) -> Result<Option<Arc<Vhost>>, AmqpError> {
        let cluster = self.broker.cluster();
        if name == DEFAULT_VHOST {
            let exists = cluster.vhosts.contains_key(name) || !cluster.initialized;
            return Ok(exists.then(|| Arc::clone(self)));
        }
        if !cluster.vhosts.contains_key(name) {
            return Ok(None);
        }
        self.sync_children().await?;
        let child = self
            .children
            .lock()
            .map_err(|_| poisoned())?
            .get(name)
            .cloned();
        Ok(child)
    }

    /// The root only: makes the child instances follow `ClusterState::vhosts` (a vhost
    /// made at runtime is served at once; a deleted one closes its connections and
    /// deletes its queues) and, in a home term, loads each child not loaded yet.
    async fn sync_children(&self) -> Result<(), AmqpError> {
        let cluster = self.broker.cluster();
        let (removed, children) = {
            let mut children = self.children.lock().map_err(|_| poisoned())?;
            let gone: Vec<String> = children
                .keys()
                .filter(|n| !cluster.vhosts.contains_key(*n))
                .cloned()
                .collect();
            let removed: Vec<Arc<Vhost>> = gone.iter().filter_map(|n| children.remove(n)).collect();
            for name in cluster.vhosts.keys() {
                if name != DEFAULT_VHOST && !children.contains_key(name) {
                    let child = Vhost::new(
                        name,
                        Arc::clone(&self.broker),
                        self.config.clone(),
                        Arc::clone(&self.registry),
                    );
                    children.insert(name.clone(), child);
                }
            }
            (removed, children.values().cloned().collect::<Vec<_>>())
        };
        for child in removed {
            // Not awaited here: removal waits for the child's definition changes in
            // flight, and this loop must go on watching the home.
            tokio::spawn(async move { child.remove().await });
        }
        if self.term.borrow().is_some() {
            for child in children {
                child.ensure_loaded().await?;
            }
        }
        Ok(())
    }

    /// A child: loads its definitions once per home term.
    async fn ensure_loaded(&self) -> Result<(), AmqpError> {
        // Loaded children are passed without their lock (a declare may hold it while its
        // definition commits).
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let _order = self.order.lock().await;
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let defs = self
            .broker
            .cluster()
            .amqp_definitions(&self.name)
            .cloned()
            .unwrap_or_default();
        self.load_defs(&defs).await?;
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// A deleted child: closes its connections and deletes its queues (their durable
    /// definitions went with the vhost in the metadata).
    async fn remove(&self) {
        tracing::info!(vhost = %self.name, "AMQP vhost deleted; closing its connections and deleting its queues");
        self.deleted.send_replace(true);
        let _order = self.order.lock().await;
        self.ready.store(false, Ordering::Release);
        let old = match self.state.lock() {
            Ok(mut st) => std::mem::replace(&mut *st, State::fresh()),
            Err(_) => return,
        };
        for q in old.queues.values() {
            let (consumers, _) = q.mark_deleted();
            for c in consumers {
                let _ = c.cancel.send((c.channel, c.tag));
            }
            self.drop_topic(q.topic.clone());
        }
    }

    /// Every child instance (root only).
    fn child_list(&self) -> Vec<Arc<Vhost>> {
        self.children
            .lock()
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default()
    }

    /// One look at the metadata: registers this node's endpoint, creates the home topic
    /// once wanted, and starts or stops serving the vhost.
    async fn watch_home(&self) -> Result<(), AmqpError> {
        let cluster = self.broker.cluster();
        let me = self.broker.node_id();
        if cluster.amqp.endpoints.get(&me) != Some(&self.config.endpoint) {
            self.broker
                .amqp_define(AmqpChange::PutEndpoint {
                    broker_id: me,
                    endpoint: self.config.endpoint.clone(),
                })
                .await
                .map_err(|e| core_error(&e))?;
        }
        let defined = [&cluster.amqp]
            .into_iter()
            .chain(cluster.amqp_vhosts.values())
            .any(|d| !d.queues.is_empty() || !d.exchanges.is_empty());
        if !cluster.topics.contains_key(HOME_TOPIC)
            && (defined || self.wanted.load(Ordering::Acquire))
        {
            self.create_home(&cluster).await?;
        }
        let leads_home = home_leader(&self.broker.cluster()) == Some(me)
            && self
                .broker
                .partition(HOME_TOPIC, 0)
                .is_ok_and(|p| p.is_leader());
        let serving = self.term.borrow().is_some();
        if serving {
            let lost = if !leads_home {
                Some("this node no longer leads the AMQP home".to_string())
            } else if !self.queue_check_due()? {
                None
            } else {
                let mut lost = None;
                for v in std::iter::once(self).chain(self.child_list().iter().map(|c| &**c)) {
                    lost = v
                        .state
                        .lock()
                        .map_err(|_| poisoned())?
                        .queues
                        .values()
                        .find(|q| !q.still_led())
                        .map(|q| format!("queue '{}' is no longer led here", q.name));
                    if lost.is_some() {
                        break;
                    }
                }
                lost
            };
            if let Some(why) = lost {
                self.stop_serving(&why)?;
            } else {
                self.sync_children().await?;
            }
        } else if leads_home {
            // Connections of an earlier term may still be settling; their late appends
            // must not race the queues about to be rebuilt from the logs.
            for _ in 0..100 {
                if self.connections.load(Ordering::Acquire) == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            self.load_all().await?;
            let term = self.last_term.fetch_add(1, Ordering::AcqRel) as u64 + 1;
            self.term.send_replace(Some(term));
            tracing::info!(term, "serving the AMQP vhost on this node");
        }
        Ok(())
    }

    /// Whether `HOME_CHECK` has passed since the last scan of every queue's leadership (and
    /// if so, starts the next period).
    fn queue_check_due(&self) -> Result<bool, AmqpError> {
        let mut at = self.queues_checked_at.lock().map_err(|_| poisoned())?;
        let now = tokio::time::Instant::now();
        if at.is_some_and(|t| now.duration_since(t) < HOME_CHECK) {
            return Ok(false);
        }
        *at = Some(now);
        Ok(true)
    }

    async fn create_home(&self, cluster: &ClusterState) -> Result<(), AmqpError> {
        let live = cluster.brokers.values().filter(|b| !b.fenced).count();
        let rf = self
            .broker
            .config()
            .default_replication_factor
            .min(i16::try_from(live).unwrap_or(i16::MAX))
            .max(1);
        match self
            .broker
            .create_topic(HOME_TOPIC, 1, rf, &[], false)
            .await
        {
            Ok(_) | Err(arctern_core::CoreError::TopicAlreadyExists(_)) => Ok(()),
            Err(e) => Err(core_error(&e)),
        }
    }

    fn stop_serving(&self, why: &str) -> Result<(), AmqpError> {
        tracing::warn!(
            reason = why,
            "no longer serving the AMQP vhost here; closing its connections"
        );
        self.term.send_replace(None);
        for v in std::iter::once(self).chain(self.child_list().iter().map(|c| &**c)) {
            v.ready.store(false, Ordering::Release);
            let old = std::mem::replace(
                &mut *v.state.lock().map_err(|_| poisoned())?,
                State::fresh(),
            );
            for q in old.queues.values() {
                q.flush_pending();
            }
        }
        Ok(())
    }

    /// Where a new connection is served: waits (up to `timeout`) for a home to exist and,
    /// when it is this node, for the vhost to be loaded. With `local_only` (a connection
    /// another node forwarded here) it only waits to serve it here: two nodes with stale
    /// metadata must not pass a connection back and forth.
    pub async fn route_connection(&self, timeout: Duration, local_only: bool) -> Option<Route> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut term = self.term.subscribe();
        let mut changes = self.broker.subscribe_metadata();
        loop {
            if let Some(t) = *term.borrow_and_update() {
                return Some(Route::Here(t));
            }
            let cluster = self.broker.cluster();
            if !cluster.topics.contains_key(HOME_TOPIC) {
                self.wanted.store(true, Ordering::Release);
            }
            let elsewhere = home_leader(&cluster).filter(|h| *h != self.broker.node_id());
            if let Some(home) = elsewhere.filter(|_| !local_only) {
                if let Some(endpoint) = cluster.amqp.endpoints.get(&home) {
                    return Some(Route::Forward(endpoint.clone()));
                }
            }
            let wait = async {
                tokio::select! {
                    _ = term.changed() => {}
                    _ = changes.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            };
            if tokio::time::timeout_at(deadline, wait).await.is_err() {
                return None;
            }
        }
    }

    /// Receives the home term (see `route_connection`).
    /// Whether the user database (the metadata's `users`) has `name`.
    pub fn user_exists(&self, name: &str) -> bool {
        self.broker.cluster().users.contains_key(name)
    }

    pub fn subscribe_term(&self) -> tokio::sync::watch::Receiver<Option<u64>> {
        self.term.subscribe()
    }

    /// Connections served here (for metrics).
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Per-queue counts of this vhost and (on the root) its children, for metrics: each
    /// queue is read under its own lock only, so a scrape never stalls the vhost.
    pub fn queue_stats(&self) -> Vec<QueueStats> {
        let mut vhosts: Vec<(String, Vec<Arc<Queue>>)> = Vec::new();
        let own: Vec<Arc<Queue>> = self
            .state
            .lock()
            .map(|s| s.queues.values().cloned().collect())
            .unwrap_or_default();
        vhosts.push((self.name.clone(), own));
        let children: Vec<Arc<Vhost>> = self
            .children
            .lock()
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default();
        for c in children {
            let qs = c
                .state
                .lock()
                .map(|s| s.queues.values().cloned().collect())
                .unwrap_or_default();
            vhosts.push((c.name.clone(), qs));
        }
        let mut out = Vec::new();
        for (vhost, queues) in vhosts {
            for q in queues {
                if q.is_deleted() {
                    continue;
                }
                out.push(QueueStats {
                    vhost: vhost.clone(),
                    name: q.name.clone(),
                    ready: q.message_count(),
                    unacked: q.unacked_count(),
                    consumers: q.consumer_count(),
                });
            }
        }
        out
    }

    /// The AMQP connections open on this node (management API).
    pub fn registry(&self) -> &Arc<crate::registry::Registry> {
        &self.registry
    }

    /// Counts a connection served here until the guard drops.
    pub fn connection_guard(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::AcqRel);
        ConnectionGuard(Arc::clone(self))
    }

    /// The cluster secret, if configured.
    pub fn cluster_secret(&self) -> Option<&arctern_security::ClusterSecret> {
        self.config.cluster_secret.as_deref()
    }

    /// A fresh membership proof for forwarding a connection to the home (with a secret).
    pub fn forward_proof(&self) -> Option<String> {
        let secret = self.config.cluster_secret.as_ref()?;
        let now = arctern_security::cluster::now_ms();
        Some(secret.prove(self.broker.config().node_id, crate::forward::PURPOSE, now))
    }

    /// Whether a connection from `ip` may send a PROXY header. With a cluster secret: only
    /// after a valid membership proof (`proven` names the node). Without: from loopback or
    /// from a node of this cluster's address.
    pub fn trusts_forwarder(&self, ip: std::net::IpAddr, proven: Option<i32>) -> bool {
        if self.config.cluster_secret.is_some() {
            return proven.is_some();
        }
        if ip.is_loopback() {
            return true;
        }
        let cluster = self.broker.cluster();
        let host_is = |h: &str| h.trim_matches(['[', ']']).parse::<std::net::IpAddr>() == Ok(ip);
        cluster.brokers.values().any(|b| host_is(&b.host))
            || cluster
                .amqp
                .endpoints
                .values()
                .any(|e| e.rsplit_once(':').is_some_and(|(h, _)| host_is(h)))
    }

    /// The root, starting a home term: rebuilds every vhost from the metadata. Non-durable
    /// queues do not survive their home, nor do the queues of a vhost deleted while no
    /// node served it: their leftover topics are deleted.
    async fn load_all(&self) -> Result<(), AmqpError> {
        let cluster = self.broker.cluster();
        self.load_defs(&cluster.amqp).await?;
        // The term has not started: children are created here and loaded explicitly, all
        // of them again (a load of the last term may have finished after it ended).
        self.sync_children().await?;
        for child in self.child_list() {
            child.ready.store(false, Ordering::Release);
            child.ensure_loaded().await?;
        }
        let live: HashSet<&str> = std::iter::once(&cluster.amqp)
            .chain(cluster.amqp_vhosts.values())
            .flat_map(|d| d.queues.values().map(|q| q.topic.as_str()))
            .collect();
        // Only the home creates queue topics and it has no connections yet: a topic of no
        // durable queue belonged to a non-durable queue of an earlier home.
        for t in self.broker.topics() {
            if t.name.starts_with(QUEUE_TOPIC_PREFIX) && !live.contains(t.name.as_str()) {
                tracing::info!(topic = %t.name, "deleting the topic of a non-durable AMQP queue");
                if let Err(e) = self.broker.delete_topic(&t.name).await {
                    tracing::warn!(topic = %t.name, error = %e, "cannot delete leftover queue topic");
                }
            }
        }
        Ok(())
    }

    /// Rebuilds this vhost's durable definitions and opens every durable queue.
    async fn load_defs(&self, defs: &AmqpDefinitions) -> Result<(), AmqpError> {
        let table = |json: &str| serde_json::from_str::<FieldTable>(json).unwrap_or_default();
        let mut exchanges = HashMap::new();
        for (name, e) in &defs.exchanges {
            let kind = match ExchangeKind::parse(&e.kind) {
                Ok(k) => k,
                Err(_) => {
                    tracing::error!(exchange = %name, kind = %e.kind, "skipping a stored exchange of unknown type");
                    continue;
                }
            };
            exchanges.insert(
                name.clone(),
                Exchange {
                    name: name.clone(),
                    kind,
                    durable: true,
                    auto_delete: e.auto_delete,
                    internal: e.internal,
                    arguments: table(&e.arguments),
                },
            );
        }
        let bindings: HashSet<Binding> = defs
            .bindings
            .iter()
            .map(|b| Binding {
                exchange: b.exchange.clone(),
                queue: b.queue.clone(),
                key: b.key.clone(),
                arguments: b.arguments.clone(),
                to_exchange: b.to_exchange,
            })
            .collect();
        let queue_topics: HashMap<String, (String, bool, FieldTable)> = defs
            .queues
            .iter()
            .map(|(n, q)| {
                (
                    n.clone(),
                    (q.topic.clone(), q.auto_delete, table(&q.arguments)),
                )
            })
            .collect();
        let mut queues = HashMap::new();
        for (name, (topic, auto_delete, arguments)) in queue_topics {
            let p = leader_partition(&self.broker, &topic).await?;
            let setup = QueueSetup {
                name: name.clone(),
                topic,
                durable: true,
                exclusive_owner: None,
                auto_delete,
                args: QueueArgs::parse_stored(&name, &arguments),
                arguments,
                housekeeping: Arc::clone(&self.housekeeping),
            };
            let q = Queue::open(setup, p)?;
            tracing::info!(vhost = %self.name, queue = %name, messages = q.message_count(), "recovered durable AMQP queue");
            queues.insert(name, q);
        }
        {
            let mut st = self.state.lock().map_err(|_| poisoned())?;
            *st = State::fresh();
            st.exchanges.extend(exchanges);
            st.queues.extend(queues);
            st.bindings.extend(bindings);
            let State {
                exchanges,
                queues,
                bindings,
            } = &mut *st;
            bindings.retain(|b| {
                exchanges.contains_key(&b.exchange)
                    && if b.to_exchange {
                        exchanges.contains_key(&b.queue)
                    } else {
                        queues.contains_key(&b.queue)
                    }
            });
        }
        Ok(())
    }

    pub fn max_message_size(&self) -> usize {
        self.config.max_message_size
    }

    /// Commits a definition change through the metadata quorum (Raft); the returned
    /// future resolves once it is committed. Callers hold `order`.
    fn persist(
        &self,
        ev: &DefEvent,
    ) -> Result<impl std::future::Future<Output = Result<(), AmqpError>> + Send + 'static, AmqpError>
    {
        let json = |t: &FieldTable| serde_json::to_string(t).unwrap_or_else(|_| "{}".into());
        let bind = |b: &Binding| AmqpBindingDef {
            exchange: b.exchange.clone(),
            queue: b.queue.clone(),
            key: b.key.clone(),
            arguments: b.arguments.clone(),
            to_exchange: b.to_exchange,
        };
        let change = match ev {
            DefEvent::PutExchange(e) => AmqpChange::PutExchange {
                name: e.name.clone(),
                def: AmqpExchangeDef {
                    kind: e.kind.name().into(),
                    auto_delete: e.auto_delete,
                    internal: e.internal,
                    arguments: json(&e.arguments),
                },
            },
            DefEvent::DeleteExchange { name } => AmqpChange::DeleteExchange { name: name.clone() },
            DefEvent::PutQueue {
                name,
                topic,
                auto_delete,
                arguments,
            } => AmqpChange::PutQueue {
                name: name.clone(),
                def: AmqpQueueDef {
                    topic: topic.clone(),
                    auto_delete: *auto_delete,
                    arguments: json(arguments),
                },
            },
            DefEvent::DeleteQueue { name } => AmqpChange::DeleteQueue { name: name.clone() },
            DefEvent::Bind(b) => AmqpChange::Bind(bind(b)),
            DefEvent::Unbind(b) => AmqpChange::Unbind(bind(b)),
        };
        let broker = Arc::clone(&self.broker);
        let vhost = self.name.clone();
        Ok(async move {
            broker
                .amqp_define_in(&vhost, change)
                .await
                .map_err(|e| core_error(&e))
        })
    }

    // ---- exchanges ----

    #[allow(clippy::too_many_arguments)]
    pub async fn exchange_declare(
        &self,
        name: &str,
        kind: &str,
        passive: bool,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: FieldTable,
    ) -> Result<(), AmqpError> {
        let vh = self.name.as_str();
        let _order = self.order.lock().await;
        let wait = {
            let mut st = self.state.lock().map_err(|_| poisoned())?;
            if let Some(e) = st.exchanges.get(name) {
                if passive {
                    return Ok(());
                }
                let kind = ExchangeKind::parse(kind)?;
                if e.kind != kind {
                    return Err(inequivalent(
                        vh,
                        "exchange",
                        name,
                        "type",
                        kind.name(),
                        e.kind.name(),
                    ));
                }
                if e.durable != durable {
                    return Err(inequivalent(
                        vh, "exchange", name, "durable", durable, e.durable,
                    ));
                }
                if e.auto_delete != auto_delete {
                    return Err(inequivalent(
                        vh,
                        "exchange",
                        name,
                        "auto_delete",
                        auto_delete,
                        e.auto_delete,
                    ));
                }
                if e.internal != internal {
                    return Err(inequivalent(
                        vh, "exchange", name, "internal", internal, e.internal,
                    ));
                }
                // RabbitMQ compares only this argument on redeclare.
                let (got, cur) = (
                    alternate_exchange(&arguments),
                    alternate_exchange(&e.arguments),
                );
                if got != cur {
                    return Err(inequivalent(
                        vh,
                        "exchange",
                        name,
                        ALTERNATE_EXCHANGE,
                        got.unwrap_or("none"),
                        cur.unwrap_or("none"),
                    ));
                }
                return Ok(());
            }
            if passive {
                return Err(AmqpError::not_found(format!(
                    "no exchange '{name}' in vhost '{vh}'"
                )));
            }
            if name.is_empty() || name.starts_with("amq.") {
                return Err(AmqpError::refused(format!(
                    "exchange name '{name}' contains reserved prefix 'amq.*'"
                )));
            }
            check_exchange_args(vh, name, &arguments)?;
            let e = Exchange {
                name: name.to_string(),
                kind: ExchangeKind::parse(kind)?,
                durable,
                auto_delete,
                internal,
                arguments,
            };
            let wait = if durable {
                Some(self.persist(&DefEvent::PutExchange(e.clone()))?)
            } else {
                None
            };
            st.exchanges.insert(name.to_string(), e);
            wait
        };
        if let Some(w) = wait {
            w.await?;
        }
        Ok(())
    }

    pub async fn exchange_delete(&self, name: &str, if_unused: bool) -> Result<(), AmqpError> {
        let vh = self.name.as_str();
        let _order = self.order.lock().await;
        let wait = {
            let mut st = self.state.lock().map_err(|_| poisoned())?;
            let Some(e) = st.exchanges.get(name) else {
                // Deleting a missing exchange succeeds (RabbitMQ since 3.2).
                return Ok(());
            };
            if name.is_empty() || name.starts_with("amq.") {
                return Err(AmqpError::refused(format!(
                    "operation not permitted on the default exchange or '{name}'"
                )));
            }
            if if_unused && st.bindings.iter().any(|b| b.exchange == name) {
                return Err(AmqpError::precondition(format!(
                    "exchange '{name}' in vhost '{vh}' in use"
                )));
            }
            let wait = if e.durable {
                Some(self.persist(&DefEvent::DeleteExchange { name: name.into() })?)
            } else {
                None
            };
            st.exchanges.remove(name);
            st.bindings
                .retain(|b| b.exchange != name && !(b.to_exchange && b.queue == name));
            wait
        };
        if let Some(w) = wait {
            w.await?;
        }
        Ok(())
    }

    // ---- queues ----

    /// Whether the exchange exists (a permission check depends on it).
    pub fn has_exchange(&self, name: &str) -> bool {
        self.state
            .lock()
            .is_ok_and(|st| st.exchanges.contains_key(name))
    }

    /// Every exchange of this vhost, built-ins included (snapshot; for the management tools).
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.state
            .lock()
            .map(|st| st.exchanges.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Every explicit binding of this vhost (snapshot; for the management tools).
    pub fn bindings(&self) -> Vec<Binding> {
        self.state
            .lock()
            .map(|st| st.bindings.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every queue of this vhost (read-only snapshot; for the management tools).
    pub fn queues(&self) -> Vec<Arc<Queue>> {
        self.state
            .lock()
            .map(|st| st.queues.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The root only: the instance serving vhost `name` ("/" is the root itself), if
    /// `ClusterState::vhosts` has it (for the management tools).
    pub async fn vhost_instance(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<Option<Arc<Vhost>>, AmqpError> {
        if name == DEFAULT_VHOST {
            return Ok(Some(Arc::clone(self)));
        }
        self.open(name).await
    }

    /// Whether this node serves the vhosts now (it holds the home role).
    pub fn is_serving(&self) -> bool {
        self.term.borrow().is_some()
    }

    /// Whether the queue exists (a permission check depends on it).
    pub fn has_queue(&self, name: &str) -> bool {
        self.state
            .lock()
            .is_ok_and(|st| st.queues.contains_key(name))
    }

    /// A queue this connection may use: 404 if missing, 405 if another connection's
    /// exclusive queue.
    pub fn queue(&self, conn: u64, name: &str) -> Result<Arc<Queue>, AmqpError> {
        let vh = self.name.as_str();
        let st = self.state.lock().map_err(|_| poisoned())?;
        let q = st
            .queues
            .get(name)
            .ok_or_else(|| AmqpError::not_found(format!("no queue '{name}' in vhost '{vh}'")))?;
        check_owner(vh, q, conn)?;
        Ok(Arc::clone(q))
    }

    /// queue.declare: returns (name, message count, consumer count).
    pub async fn queue_declare(
        &self,
        conn: u64,
        spec: QueueSpec,
    ) -> Result<(String, u32, u32), AmqpError> {
        let vh = self.name.as_str();
        let _order = self.order.lock().await;
        let name = if spec.name.is_empty() && !spec.passive {
            server_named()
        } else {
            spec.name.clone()
        };
        let generated = spec.generated || spec.name.is_empty();
        if let Some(r) = self.existing_queue(conn, &name, &spec)? {
            return Ok(r);
        }
        if spec.passive {
            return Err(AmqpError::not_found(format!(
                "no queue '{name}' in vhost '{vh}'"
            )));
        }
        if name.starts_with("amq.") && !generated {
            return Err(AmqpError::refused(format!(
                "queue name '{name}' contains reserved prefix 'amq.*'"
            )));
        }
        let args = QueueArgs::parse(&name, &spec.arguments).map_err(|e| in_vhost(e, vh))?;
        let topic = format!("{QUEUE_TOPIC_PREFIX}{}", uuid::Uuid::new_v4().simple());
        self.broker
            .create_topic(&topic, 1, -1, &queue_topic_configs(&self.config), false)
            .await
            .map_err(|e| core_error(&e))?;
        let p = leader_partition(&self.broker, &topic).await?;
        let owner = spec.exclusive.then_some(conn);
        let setup = QueueSetup {
            name: name.clone(),
            topic: topic.clone(),
            durable: spec.durable,
            exclusive_owner: owner,
            auto_delete: spec.auto_delete,
            arguments: spec.arguments.clone(),
            args,
            housekeeping: Arc::clone(&self.housekeeping),
        };
        let q = Queue::open(setup, p)?;
        let wait = {
            let mut st = self.state.lock().map_err(|_| poisoned())?;
            if st.queues.contains_key(&name) {
                drop(st);
                self.drop_topic(topic);
                return self
                    .existing_queue(conn, &name, &spec)?
                    .ok_or_else(|| AmqpError::internal("queue vanished while declaring"));
            }
            let wait = if spec.durable && !spec.exclusive {
                Some(self.persist(&DefEvent::PutQueue {
                    name: name.clone(),
                    topic,
                    auto_delete: spec.auto_delete,
                    arguments: spec.arguments.clone(),
                })?)
            } else {
                None
            };
            st.queues.insert(name.clone(), q);
            wait
        };
        if let Some(w) = wait {
            w.await?;
        }
        Ok((name, 0, 0))
    }

    fn existing_queue(
        &self,
        conn: u64,
        name: &str,
        spec: &QueueSpec,
    ) -> Result<Option<(String, u32, u32)>, AmqpError> {
        let vh = self.name.as_str();
        let st = self.state.lock().map_err(|_| poisoned())?;
        let Some(q) = st.queues.get(name) else {
            return Ok(None);
        };
        check_owner(vh, q, conn)?;
        if !spec.passive {
            if q.durable != spec.durable {
                return Err(inequivalent(
                    vh,
                    "queue",
                    name,
                    "durable",
                    spec.durable,
                    q.durable,
                ));
            }
            if q.exclusive_owner.is_some() != spec.exclusive {
                return Err(inequivalent(
                    vh,
                    "queue",
                    name,
                    "exclusive",
                    spec.exclusive,
                    q.exclusive_owner.is_some(),
                ));
            }
            if q.auto_delete != spec.auto_delete {
                return Err(inequivalent(
                    vh,
                    "queue",
                    name,
                    "auto_delete",
                    spec.auto_delete,
                    q.auto_delete,
                ));
            }
            for (k, v) in &spec.arguments {
                if !q
                    .arguments
                    .inner()
                    .get(k)
                    .is_some_and(|c| arg_equivalent(c, v))
                {
                    return Err(inequivalent(
                        vh,
                        "queue",
                        name,
                        k.as_str(),
                        format!("{v:?}"),
                        format!("{:?}", q.arguments.inner().get(k)),
                    ));
                }
            }
            for (k, v) in &q.arguments {
                if !spec.arguments.contains_key(k.as_str()) {
                    return Err(inequivalent(
                        vh,
                        "queue",
                        name,
                        k.as_str(),
                        "none",
                        format!("{v:?}"),
                    ));
                }
            }
        }
        q.touch();
        Ok(Some((
            name.to_string(),
            q.message_count(),
            q.consumer_count(),
        )))
    }

    fn drop_topic(&self, topic: String) {
        let broker = Arc::clone(&self.broker);
        tokio::spawn(async move {
            if let Err(e) = broker.delete_topic(&topic).await {
                tracing::warn!(topic = %topic, error = %e, "cannot delete a queue topic");
            }
        });
    }

    /// queue.delete: returns the number of ready messages it held; its consumers are
    /// cancelled (basic.cancel sent by their connections).
    pub async fn queue_delete(
        &self,
        conn: u64,
        name: &str,
        if_unused: bool,
        if_empty: bool,
    ) -> Result<u32, AmqpError> {
        let vh = self.name.as_str();
        let (q, wait) = {
            let _order = self.order.lock().await;
            let mut st = self.state.lock().map_err(|_| poisoned())?;
            let Some(q) = st.queues.get(name) else {
                // Deleting a missing queue succeeds (RabbitMQ since 3.2).
                return Ok(0);
            };
            check_owner(vh, q, conn)?;
            if if_unused && q.consumer_count() > 0 {
                return Err(AmqpError::precondition(format!(
                    "queue '{name}' in vhost '{vh}' in use"
                )));
            }
            if if_empty && q.message_count() > 0 {
                return Err(AmqpError::precondition(format!(
                    "queue '{name}' in vhost '{vh}' is not empty"
                )));
            }
            let wait = if q.durable && q.exclusive_owner.is_none() {
                Some(self.persist(&DefEvent::DeleteQueue { name: name.into() })?)
            } else {
                None
            };
            let q = st
                .queues
                .remove(name)
                .ok_or_else(|| AmqpError::internal("queue vanished"))?;
            st.bindings.retain(|b| b.to_exchange || b.queue != name);
            (q, wait)
        };
        let (consumers, n) = q.mark_deleted();
        for c in consumers {
            let _ = c.cancel.send((c.channel, c.tag));
        }
        if let Some(w) = wait {
            w.await?;
        }
        self.drop_topic(q.topic.clone());
        Ok(n)
    }

    pub fn queue_purge(&self, conn: u64, name: &str) -> Result<u32, AmqpError> {
        Ok(self.queue(conn, name)?.purge())
    }

    /// After a consumer left: deletes an auto-delete queue that has no consumers left.
    pub async fn consumer_gone(&self, queue: &Queue, auto_deletable: bool) {
        if auto_deletable {
            let owner = queue.exclusive_owner.unwrap_or(0);
            if let Err(e) = self.queue_delete(owner, &queue.name, false, false).await {
                tracing::warn!(queue = %queue.name, error = %e, "auto-delete failed");
            }
        }
    }

    /// Deletes the exclusive queues of a closed connection.
    pub async fn connection_closed(&self, conn: u64) {
        let names: Vec<String> = match self.state.lock() {
            Ok(st) => st
                .queues
                .values()
                .filter(|q| q.exclusive_owner == Some(conn))
                .map(|q| q.name.clone())
                .collect(),
            Err(_) => return,
        };
        for n in names {
            let _ = self.queue_delete(conn, &n, false, false).await;
        }
    }

    // ---- bindings ----

    /// queue.bind / unbind, and exchange.bind / unbind with `to_exchange` (then `queue`
    /// names the destination exchange).
    #[allow(clippy::too_many_arguments)]
    pub async fn bind(
        &self,
        conn: u64,
        queue: &str,
        exchange: &str,
        key: &str,
        arguments: &FieldTable,
        unbind: bool,
        to_exchange: bool,
    ) -> Result<(), AmqpError> {
        let vh = self.name.as_str();
        let _order = self.order.lock().await;
        let wait = {
            let mut st = self.state.lock().map_err(|_| poisoned())?;
            // RabbitMQ refuses the default exchange before looking anything up.
            if exchange.is_empty() || (to_exchange && queue.is_empty()) {
                return Err(AmqpError::refused(
                    "operation not permitted on the default exchange",
                ));
            }
            let b = Binding {
                exchange: exchange.into(),
                queue: queue.into(),
                key: key.into(),
                arguments: serde_json::to_string(arguments).unwrap_or_else(|_| "{}".into()),
                to_exchange,
            };
            // As RabbitMQ (rabbit_binding:remove): unbinding from or to a queue or
            // exchange that is gone succeeds, as does a missing binding (before the
            // exclusive-queue check, which only guards a real removal).
            if unbind && !st.bindings.contains(&b) {
                return Ok(());
            }
            let q_durable = if to_exchange {
                st.exchanges
                    .get(queue)
                    .ok_or_else(|| {
                        AmqpError::not_found(format!("no exchange '{queue}' in vhost '{vh}'"))
                    })?
                    .durable
            } else {
                let q = st.queues.get(queue).ok_or_else(|| {
                    AmqpError::not_found(format!("no queue '{queue}' in vhost '{vh}'"))
                })?;
                check_owner(vh, q, conn)?;
                q.durable && q.exclusive_owner.is_none()
            };
            let e = st.exchanges.get(exchange).ok_or_else(|| {
                AmqpError::not_found(format!("no exchange '{exchange}' in vhost '{vh}'"))
            })?;
            let durable = q_durable && e.durable;
            let (e_auto, e_durable) = (e.auto_delete, e.durable);
            if unbind {
                st.bindings.remove(&b);
                let mut waits = Vec::new();
                if durable {
                    waits.push(self.persist(&DefEvent::Unbind(b))?);
                }
                if e_auto && !st.bindings.iter().any(|b| b.exchange == exchange) {
                    // As an explicit delete (and the replicated definitions): the bindings
                    // to the exchange go with it, so a later unbind of them is a no-op.
                    st.exchanges.remove(exchange);
                    st.bindings
                        .retain(|b| !(b.to_exchange && b.queue == exchange));
                    if e_durable {
                        waits.push(self.persist(&DefEvent::DeleteExchange {
                            name: exchange.into(),
                        })?);
                    }
                }
                waits
            } else {
                if st.bindings.contains(&b) {
                    return Ok(());
                }
                let wait = if durable {
                    vec![self.persist(&DefEvent::Bind(b.clone()))?]
                } else {
                    Vec::new()
                };
                st.bindings.insert(b);
                wait
            }
        };
        for w in wait {
            w.await?;
        }
        Ok(())
    }

    // ---- housekeeping: expiry and dead-lettering ----

    /// One round: expires TTL'd messages at every queue's head, dead-letters (or drops)
    /// the messages that died, and deletes queues unused past their `x-expires`.
    async fn housekeep(&self) {
        let queues: Vec<Arc<Queue>> = match self.state.lock() {
            Ok(st) => st.queues.values().cloned().collect(),
            Err(_) => return,
        };
        for q in queues {
            q.expire_head();
            q.reclaim();
            q.flush_pending();
            let dead = q.take_dead();
            if !dead.is_empty() {
                self.dead_letter_stored(&q, dead).await;
            }
            if q.idle_expired() {
                tracing::info!(queue = %q.name, "deleting a queue unused for longer than its x-expires");
                let owner = q.exclusive_owner.unwrap_or(0);
                if let Err(e) = self.queue_delete(owner, &q.name, false, false).await {
                    tracing::warn!(queue = %q.name, error = %e, "x-expires delete failed");
                }
            }
        }
    }

    /// Dead-letters messages that died in `q` (or drops them when it has no dead-letter
    /// exchange). The copies are stored (acks=all) before the originals are recorded
    /// settled, so a crash in between duplicates a dead letter, never loses one.
    async fn dead_letter_stored(&self, q: &Arc<Queue>, dead: Vec<(i64, DeathReason)>) {
        const CHUNK: usize = 1024;
        let Some(dlx) = q.args.dead_letter_exchange.clone() else {
            let offsets: Vec<i64> = dead.iter().map(|d| d.0).collect();
            q.settle(&offsets);
            return;
        };
        for chunk in dead.chunks(CHUNK) {
            let mut waits = Vec::new();
            let mut done = Vec::with_capacity(chunk.len());
            for &(offset, reason) in chunk {
                match q.read(offset) {
                    Ok(m) => waits.extend(self.republish_dead(q, &dlx, m, reason)),
                    Err(e) => {
                        tracing::error!(queue = %q.name, offset, error = %e, "cannot read a dead message; dropping it");
                    }
                }
                done.push(offset);
            }
            let mut stored = true;
            for w in waits {
                if let Err(e) = w.await {
                    tracing::warn!(queue = %q.name, error = %e, "dead letter not stored; the original stays unsettled until restart");
                    stored = false;
                }
            }
            if stored {
                q.settle(&done);
            }
        }
    }

    /// A publish refused by `x-overflow=reject-publish-dlx` goes to the dead-letter
    /// exchange (the publisher still gets basic.nack).
    pub fn dead_letter_refused(&self, q: &Queue, m: StoredMessage) {
        if let Some(dlx) = q.args.dead_letter_exchange.clone() {
            // The copies are stored on their own; nobody waits for them.
            drop(self.republish_dead(q, &dlx, m, DeathReason::MaxLen));
        }
    }

    /// Routes the dead-lettered copy of `m` through `dlx` (with the queue's
    /// `x-dead-letter-routing-key` or the original key) and appends it to every queue it
    /// reaches, except where that closes a cycle RabbitMQ would break.
    fn republish_dead(
        &self,
        q: &Queue,
        dlx: &str,
        m: StoredMessage,
        reason: DeathReason,
    ) -> Vec<StoredWait> {
        let props = wire::decode_properties(&m.properties).unwrap_or_default();
        let key = q
            .args
            .dead_letter_routing_key
            .clone()
            .unwrap_or_else(|| m.routing_key.clone());
        let now = arctern_core::now_ms();
        let marked = mark_dead(
            &props,
            Death {
                queue: &q.name,
                reason,
                exchange: &m.exchange,
                routing_key: &m.routing_key,
                time: (now / 1000).max(0) as u64,
            },
        );
        let targets = match self.route_from(dlx, &key, marked.headers().as_ref(), false) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(queue = %q.name, error = %e, "dead-letter exchange unusable; message dropped");
                return Vec::new();
            }
        };
        let bytes = m.body.len() as u64;
        let copy = StoredMessage {
            exchange: dlx.to_string(),
            routing_key: key,
            properties: Bytes::from(wire::encode_properties(&marked)),
            body: m.body,
            timestamp: now,
        };
        let batch = encode_message(&copy, now);
        let mut waits: Vec<StoredWait> = Vec::new();
        for t in targets {
            if reason != DeathReason::Rejected && is_cycle(props.headers().as_ref(), &t.name) {
                tracing::debug!(queue = %t.name, "dead-letter cycle; message dropped for this queue");
                continue;
            }
            match t.append(batch.clone(), bytes, None, *marked.priority()) {
                Ok(Enqueued::Stored(a)) => waits.push(Box::pin(t.stored(a))),
                Ok(Enqueued::Refused) => {}
                Err(e) => waits.push(Box::pin(async move { Err(e) })),
            }
        }
        waits
    }

    // ---- routing ----

    /// The queues a message published to `exchange` with `key` goes to.
    pub fn route(
        &self,
        exchange: &str,
        key: &str,
        headers: Option<&FieldTable>,
    ) -> Result<Vec<Arc<Queue>>, AmqpError> {
        self.route_from(exchange, key, headers, true)
    }

    /// Routing; `from_client` refuses internal exchanges (dead-lettering may use them).
    fn route_from(
        &self,
        exchange: &str,
        key: &str,
        headers: Option<&FieldTable>,
        from_client: bool,
    ) -> Result<Vec<Arc<Queue>>, AmqpError> {
        let vh = self.name.as_str();
        let st = self.state.lock().map_err(|_| poisoned())?;
        let e = st.exchanges.get(exchange).ok_or_else(|| {
            AmqpError::not_found(format!("no exchange '{exchange}' in vhost '{vh}'"))
        })?;
        if e.internal && from_client {
            return Err(AmqpError::refused(format!(
                "cannot publish to internal exchange '{exchange}' in vhost '{vh}'"
            )));
        }
        if exchange.is_empty() {
            return Ok(st.queues.get(key).into_iter().cloned().collect());
        }
        Ok(route_names(&st, exchange, key, headers)
            .into_iter()
            .filter_map(|n| st.queues.get(n).cloned())
            .collect())
    }
}

/// The names of the queues a message published to `exchange` (not the default one)
/// reaches, sorted and unique. Bindings to queues that no longer exist do not occur
/// (deleting a queue removes them).
fn route_names<'a>(
    st: &'a State,
    exchange: &'a str,
    key: &str,
    headers: Option<&FieldTable>,
) -> Vec<&'a str> {
    {
        // Follows exchange-to-exchange bindings and alternate exchanges; each exchange is
        // visited once (cycles).
        let mut visited: HashSet<&str> = HashSet::new();
        let mut pending = vec![exchange];
        let mut names: Vec<&str> = Vec::new();
        while let Some(x) = pending.pop() {
            if !visited.insert(x) {
                continue;
            }
            let Some(e) = st.exchanges.get(x) else {
                warn_missing_alternate(x);
                continue;
            };
            let mut routed = false;
            for b in st.bindings.iter().filter(|b| b.exchange == x) {
                let hit = match e.kind {
                    ExchangeKind::Direct => b.key == key,
                    ExchangeKind::Fanout => true,
                    ExchangeKind::Topic => topic_matches(&b.key, key),
                    ExchangeKind::Headers => {
                        let args: FieldTable =
                            serde_json::from_str(&b.arguments).unwrap_or_default();
                        headers_match(&args, headers)
                    }
                };
                if hit {
                    routed = true;
                    if b.to_exchange {
                        pending.push(b.queue.as_str());
                    } else {
                        names.push(b.queue.as_str());
                    }
                }
            }
            // RabbitMQ's rule: an exchange whose own bindings match nothing hands the
            // message to its alternate exchange (a match to an exchange that then routes
            // nowhere does not count as unroutable here; that exchange's own AE applies).
            if !routed {
                if let Some(ae) = alternate_exchange(&e.arguments) {
                    pending.push(ae);
                }
            }
        }
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// Whether two argument values are equivalent on redeclare: integers of any width by
/// value, long and short strings by content (RabbitMQ compares by type class, so a
/// client encoding 10 as a signed 32-bit int and another as a byte agree), others exactly.
fn arg_equivalent(a: &AMQPValue, b: &AMQPValue) -> bool {
    if let (Some(x), Some(y)) = (crate::args::integer(a), crate::args::integer(b)) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (crate::args::string(a), crate::args::string(b)) {
        return x == y;
    }
    a == b
}

/// Logs a missing alternate exchange (as RabbitMQ warns), at most every 10 s: a
/// publisher hitting it with every message must not flood the log.
fn warn_missing_alternate(name: &str) {
    static LAST: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(i64::MIN);
    let now = arctern_core::now_ms();
    let last = LAST.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= 10_000
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(exchange = %name, "alternate exchange does not exist; messages it should take are unroutable");
    }
}

/// The `alternate-exchange` argument of an exchange (checked to be a string at declare).
fn alternate_exchange(arguments: &FieldTable) -> Option<&str> {
    match arguments.inner().get(ALTERNATE_EXCHANGE)? {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        _ => None,
    }
}

/// The exchange argument naming the alternate exchange (RabbitMQ's, no `x-` prefix).
pub const ALTERNATE_EXCHANGE: &str = "alternate-exchange";

/// Checks an exchange declaration's arguments: `alternate-exchange` must be a string, as
/// RabbitMQ requires; other arguments are stored as given.
pub fn check_exchange_args(vh: &str, name: &str, arguments: &FieldTable) -> Result<(), AmqpError> {
    match arguments.inner().get(ALTERNATE_EXCHANGE) {
        None | Some(AMQPValue::LongString(_)) | Some(AMQPValue::ShortString(_)) => Ok(()),
        Some(v) => Err(AmqpError::precondition(format!(
            "invalid arg '{ALTERNATE_EXCHANGE}' for exchange '{name}' in vhost '{vh}': {{unacceptable_type,{}}}",
            crate::args::type_name(v)
        ))),
    }
}

/// The headers exchange: `x-match` = `all` (default) / `any` over the binding's
/// arguments, ignoring those starting with `x-` (RabbitMQ also has `all-with-x` /
/// `any-with-x`, which include them). A binding argument of type void matches the
/// header's presence; any other must equal the header's value.
pub fn headers_match(binding: &FieldTable, headers: Option<&FieldTable>) -> bool {
    let mode = match binding.inner().get("x-match") {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(s)) => s.as_str().to_string(),
        _ => "all".to_string(),
    };
    let with_x = mode.ends_with("-with-x");
    let any = mode.starts_with("any");
    let empty = FieldTable::default();
    let headers = headers.unwrap_or(&empty);
    let mut considered = binding
        .into_iter()
        .filter(|(k, _)| k.as_str() != "x-match" && (with_x || !k.as_str().starts_with("x-")))
        .peekable();
    if considered.peek().is_none() {
        return !any;
    }
    let mut matches = considered.map(|(k, v)| match (v, headers.inner().get(k)) {
        (_, None) => false,
        (AMQPValue::Void, Some(_)) => true,
        (v, Some(h)) => v == h,
    });
    if any {
        matches.any(|m| m)
    } else {
        matches.all(|m| m)
    }
}

/// An error of a vhost-less part (queue arguments, consumers), whose text names "/",
/// made to name the vhost it happened in.
pub fn in_vhost(mut e: AmqpError, vh: &str) -> AmqpError {
    if vh != DEFAULT_VHOST {
        e.text = e.text.replace("in vhost '/'", &format!("in vhost '{vh}'"));
    }
    e
}

fn check_owner(vh: &str, q: &Queue, conn: u64) -> Result<(), AmqpError> {
    match q.exclusive_owner {
        Some(owner) if owner != conn => Err(AmqpError::locked(format!(
            "cannot obtain exclusive access to locked queue '{}' in vhost '{vh}'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.",
            q.name
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::wire::field_table as table;

    fn exchange(name: &str, kind: ExchangeKind, ae: Option<&str>) -> Exchange {
        let arguments = match ae {
            Some(a) => table(&[(ALTERNATE_EXCHANGE, AMQPValue::LongString(a.into()))]),
            None => FieldTable::default(),
        };
        Exchange {
            name: name.into(),
            kind,
            durable: true,
            auto_delete: false,
            internal: false,
            arguments,
        }
    }

    fn bind(st: &mut State, exchange: &str, dest: &str, key: &str, to_exchange: bool) {
        st.bindings.insert(Binding {
            exchange: exchange.into(),
            queue: dest.into(),
            key: key.into(),
            arguments: "{}".into(),
            to_exchange,
        });
    }

    #[test]
    fn alternate_exchanges_take_what_an_exchange_cannot_route() {
        let mut st = State::fresh();
        for e in [
            exchange("main", ExchangeKind::Direct, Some("ae1")),
            exchange("ae1", ExchangeKind::Direct, Some("ae2")),
            exchange("ae2", ExchangeKind::Fanout, None),
            // A cycle of alternates ends once every exchange was visited.
            exchange("loop1", ExchangeKind::Direct, Some("loop2")),
            exchange("loop2", ExchangeKind::Direct, Some("loop1")),
            exchange("dangling", ExchangeKind::Direct, Some("missing")),
            exchange("via", ExchangeKind::Direct, Some("ae2")),
        ] {
            st.exchanges.insert(e.name.clone(), e);
        }
        bind(&mut st, "main", "q-main", "k", false);
        bind(&mut st, "ae1", "q-ae1", "k2", false);
        bind(&mut st, "ae2", "q-ae2", "", false);
        bind(&mut st, "via", "loop1", "x", true);
        // routed by the exchange itself: the alternate is not used
        assert_eq!(route_names(&st, "main", "k", None), vec!["q-main"]);
        // unroutable: the alternate routes it
        assert_eq!(route_names(&st, "main", "k2", None), vec!["q-ae1"]);
        // a chain of alternates is followed
        assert_eq!(route_names(&st, "main", "other", None), vec!["q-ae2"]);
        assert!(route_names(&st, "loop1", "k", None).is_empty());
        assert!(route_names(&st, "dangling", "k", None).is_empty());
        // "via" matched a binding (to loop1, which routes nowhere): its own alternate
        // is not used, as in RabbitMQ
        assert!(route_names(&st, "via", "x", None).is_empty());
        assert_eq!(route_names(&st, "via", "y", None), vec!["q-ae2"]);
    }

    #[test]
    fn redeclared_arguments_compare_by_type_class() {
        use AMQPValue::*;
        assert!(arg_equivalent(&LongInt(10), &ShortShortUInt(10)));
        assert!(arg_equivalent(&LongLongInt(10), &ShortInt(10)));
        assert!(!arg_equivalent(&LongInt(10), &LongInt(9)));
        assert!(arg_equivalent(
            &LongString("a".into()),
            &ShortString("a".into())
        ));
        assert!(!arg_equivalent(&LongString("10".into()), &LongInt(10)));
        assert!(arg_equivalent(&Boolean(true), &Boolean(true)));
        assert!(!arg_equivalent(&Boolean(true), &Boolean(false)));
    }

    #[test]
    fn alternate_exchange_argument_must_be_a_string() {
        let ok = table(&[(ALTERNATE_EXCHANGE, AMQPValue::LongString("ae".into()))]);
        assert!(check_exchange_args("/", "x", &ok).is_ok());
        let bad = table(&[(ALTERNATE_EXCHANGE, AMQPValue::LongInt(1))]);
        let e = check_exchange_args("/", "x", &bad).unwrap_err();
        assert_eq!(e.code, crate::codes::PRECONDITION_FAILED);
        assert_eq!(alternate_exchange(&ok), Some("ae"));
    }

    #[test]
    fn headers_all_and_any() {
        let s = |v: &str| AMQPValue::LongString(v.into());
        let h = table(&[("format", s("pdf")), ("type", s("report"))]);
        let all = table(&[
            ("x-match", s("all")),
            ("format", s("pdf")),
            ("type", s("report")),
        ]);
        assert!(headers_match(&all, Some(&h)));
        let all_miss = table(&[("format", s("pdf")), ("type", s("log"))]);
        assert!(!headers_match(&all_miss, Some(&h)));
        let any = table(&[
            ("x-match", s("any")),
            ("format", s("zip")),
            ("type", s("report")),
        ]);
        assert!(headers_match(&any, Some(&h)));
        let any_miss = table(&[("x-match", s("any")), ("format", s("zip"))]);
        assert!(!headers_match(&any_miss, Some(&h)));
        assert!(!headers_match(&all, None));
        let presence = table(&[("format", AMQPValue::Void)]);
        assert!(headers_match(&presence, Some(&h)));
        // no arguments to match: all matches everything, any nothing
        assert!(headers_match(&FieldTable::default(), Some(&h)));
        assert!(!headers_match(&table(&[("x-match", s("any"))]), Some(&h)));
        // x- arguments are ignored unless *-with-x
        let x = table(&[("x-match", s("all")), ("x-foo", s("1"))]);
        assert!(headers_match(&x, Some(&h)));
        let xw = table(&[("x-match", s("all-with-x")), ("x-foo", s("1"))]);
        assert!(!headers_match(&xw, Some(&h)));
    }
}
