//! [`MetadataNode`]: one member of the metadata Raft group.
//!
//! Bootstrap: a node whose log is empty does nothing until a leader contacts it, except the
//! voter with the lowest id, which calls openraft's `initialize` with the full voter set (the
//! same document every node was configured with). One deterministic initializer keeps startup
//! free of competing first elections; and because openraft's `initialize` is a no-op on an
//! initialized node and safe to repeat with the same membership, restarting the lowest node
//! with a wiped data dir does not split the group. The price: the group forms only once the
//! lowest-id voter has started at least once. A quorum of one (no voters, or only itself)
//! initializes itself the same way.
//!
//! Brokers: [`MetadataNode::register_broker`] at startup, [`MetadataNode::start_heartbeats`]
//! while running, [`MetadataNode::controlled_shutdown`] before stopping. Every node runs the
//! controller task ([`crate::controller`]), which acts only while its node leads.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arctern_security::ClusterSecret;
use openraft::error::{InitializeError, RaftError};
use openraft::metrics::WaitError;
use openraft::{Config, Raft, RaftMetrics, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use crate::controller::{
    self, BrokerHeartbeat, Controller, ControllerOptions, HeartbeatHandle, HeartbeatSender,
    Liveness, ShutdownRequests,
};
use crate::log_store::LogStore;
use crate::network::{self, CallError, ForwardError, Membership, NetworkFactory, RpcClient};
use crate::state_machine::StateMachineStore;
use crate::{
    BasicNode, BrokerId, ClusterState, CommandResult, MetadataCommand, MetadataError, NodeId,
    TypeConfig,
};

/// Total time [`MetadataNode::register_broker`] keeps retrying.
const REGISTER_DEADLINE: Duration = Duration::from_secs(60);

/// Where a node is and who the voters are.
#[derive(Clone, Debug)]
pub struct MetadataConfig {
    pub node_id: NodeId,
    /// Voter id -> Raft RPC address (`host:port`); see [`parse_voters`]. Empty means a quorum
    /// of one (this node alone).
    pub voters: BTreeMap<NodeId, String>,
    /// Address to listen on for Raft RPCs. May be empty for a quorum of one, which then
    /// opens no port.
    pub listen: String,
    pub data_dir: PathBuf,
}

/// Timing and retention knobs. The defaults suit a real cluster; tests shrink them.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub heartbeat_interval: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// Build a snapshot after this many entries since the last one.
    pub snapshot_logs_since_last: u64,
    /// Entries kept in the log behind the snapshot, so a briefly lagging follower can catch up
    /// from the log rather than from a snapshot.
    pub max_in_snapshot_log_to_keep: u64,
    /// Bound on [`MetadataNode::propose`], leader election and forwarding included.
    pub propose_timeout: Duration,
    /// Broker liveness and leader election.
    pub controller: ControllerOptions,
}

impl Default for NodeOptions {
    fn default() -> Self {
        // Election timeout like KRaft's default (1 s), heartbeats well inside it.
        NodeOptions {
            heartbeat_interval: Duration::from_millis(150),
            election_timeout_min: Duration::from_millis(1000),
            election_timeout_max: Duration::from_millis(2000),
            snapshot_logs_since_last: 5000,
            max_in_snapshot_log_to_keep: 1000,
            propose_timeout: Duration::from_secs(15),
            controller: ControllerOptions::default(),
        }
    }
}

/// Parses Kafka's `controller.quorum.voters` syntax: `1@host:9093,2@host:9094`.
pub fn parse_voters(s: &str) -> Result<BTreeMap<NodeId, String>, MetadataError> {
    let mut voters = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = |why: &str| MetadataError::Config(format!("voter {part:?}: {why}"));
        let (id, addr) = part
            .split_once('@')
            .ok_or_else(|| bad("expected id@host:port"))?;
        let id: NodeId = id.trim().parse().map_err(|_| bad("id is not a number"))?;
        let addr = addr.trim();
        match addr.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => return Err(bad("address is not host:port")),
        }
        if voters.insert(id, addr.to_string()).is_some() {
            return Err(bad("duplicate id"));
        }
    }
    Ok(voters)
}

/// A running member of the metadata group.
pub struct MetadataNode {
    id: NodeId,
    raft: Raft<TypeConfig>,
    state: watch::Receiver<Arc<ClusterState>>,
    server: Option<JoinHandle<()>>,
    controller: Option<JoinHandle<()>>,
    liveness: Arc<Liveness>,
    shutdown_requests: Arc<ShutdownRequests>,
    /// Dropped (or sent) when the node stops: heartbeat loops end with it.
    stop: watch::Sender<()>,
    options: NodeOptions,
    /// With `cluster.secret`: how this node proves membership and checks others'.
    membership: Option<Membership>,
}

impl MetadataNode {
    pub async fn start(cfg: MetadataConfig) -> Result<MetadataNode, MetadataError> {
        Self::start_with(cfg, NodeOptions::default()).await
    }

    pub async fn start_with(
        cfg: MetadataConfig,
        options: NodeOptions,
    ) -> Result<MetadataNode, MetadataError> {
        Self::start_secured(cfg, options, None).await
    }

    /// Like [`start_with`](Self::start_with); with `secret`, every connection on the Raft
    /// port (Raft RPCs, forwarded proposals, broker heartbeats) must open with a proof of
    /// membership from a voter, and this node proves itself to the peers it calls.
    pub async fn start_secured(
        cfg: MetadataConfig,
        options: NodeOptions,
        secret: Option<Arc<ClusterSecret>>,
    ) -> Result<MetadataNode, MetadataError> {
        let id = cfg.node_id;
        let mut voters = cfg.voters.clone();
        if voters.is_empty() {
            voters.insert(id, cfg.listen.clone());
        }
        if !voters.contains_key(&id) {
            return Err(MetadataError::Config(format!(
                "node {id} is not among the voters {:?}",
                voters.keys().collect::<Vec<_>>()
            )));
        }
        let alone = voters.len() == 1;
        let membership = secret.map(|secret| Membership {
            secret,
            local: id,
            voters: Arc::new(voters.keys().copied().collect::<BTreeSet<_>>()),
        });
        if cfg.listen.is_empty() && !alone {
            return Err(MetadataError::Config(
                "listen address is required with more than one voter".into(),
            ));
        }

        let dir = &cfg.data_dir;
        if !dir.is_dir() {
            std::fs::create_dir_all(dir)
                .map_err(|e| MetadataError::io(format!("create {}", dir.display()), e))?;
            // A new directory's name is durable only once its parent is fsynced.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                crate::fsutil::sync_dir(parent)
                    .map_err(|e| MetadataError::io(format!("fsync {}", parent.display()), e))?;
            }
        }
        let lock_path = dir.join(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| MetadataError::io(format!("open {}", lock_path.display()), e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(MetadataError::Locked(dir.clone()))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(MetadataError::io(
                    format!("lock {}", lock_path.display()),
                    e,
                ))
            }
        }
        let log_store = LogStore::open(dir, lock)?;
        let (sm, state) = StateMachineStore::open(dir)?;

        let listener = if cfg.listen.is_empty() {
            None
        } else {
            Some(
                TcpListener::bind(&cfg.listen)
                    .await
                    .map_err(|e| MetadataError::io(format!("listen on {}", cfg.listen), e))?,
            )
        };

        let config = Config {
            cluster_name: "arctern-metadata".into(),
            heartbeat_interval: millis(options.heartbeat_interval),
            election_timeout_min: millis(options.election_timeout_min),
            election_timeout_max: millis(options.election_timeout_max),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(options.snapshot_logs_since_last),
            max_in_snapshot_log_to_keep: options.max_in_snapshot_log_to_keep,
            // JSON triples the bytes of a chunk; keep frames well under the frame limit.
            snapshot_max_chunk_size: 1 << 20,
            ..Config::default()
        }
        .validate()
        .map_err(|e| MetadataError::Config(e.to_string()))?;

        let raft = Raft::new(
            id,
            Arc::new(config),
            NetworkFactory {
                local: id,
                membership: membership.clone(),
            },
            log_store,
            sm,
        )
        .await
        .map_err(|e| MetadataError::Raft(format!("start raft node {id}: {e}")))?;
        let liveness = Arc::new(Liveness::default());
        let server = listener.map(|l| {
            tokio::spawn(network::serve(
                l,
                raft.clone(),
                liveness.clone(),
                membership.clone(),
            ))
        });
        let controller = Controller {
            node_id: id,
            raft: raft.clone(),
            state: state.clone(),
            liveness: liveness.clone(),
            options: options.controller.clone(),
            propose_timeout: options.propose_timeout,
        }
        .spawn();
        let node = MetadataNode {
            id,
            raft,
            state,
            server,
            controller: Some(controller),
            liveness,
            shutdown_requests: Arc::default(),
            stop: watch::channel(()).0,
            options,
            membership,
        };

        if voters.keys().next() == Some(&id) && !node.is_initialized().await? {
            let members: BTreeMap<NodeId, BasicNode> = voters
                .iter()
                .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
                .collect();
            tracing::info!(node = id, voters = ?voters, "initializing metadata quorum");
            match node.raft.initialize(members).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(MetadataError::Raft(format!("initialize: {e}"))),
            }
        }
        Ok(node)
    }

    async fn is_initialized(&self) -> Result<bool, MetadataError> {
        self.raft
            .is_initialized()
            .await
            .map_err(|e| MetadataError::Raft(e.to_string()))
    }

    pub fn node_id(&self) -> NodeId {
        self.id
    }

    /// Commits `cmd` through the leader (forwarding it if this node is a follower) and returns
    /// once it is applied on this node, so [`state`](Self::state) already reflects it.
    ///
    /// A command is retried only when it certainly was not proposed (no leader yet, leader
    /// unreachable, leader stepped down before accepting it). If a leader fails after taking
    /// it, the outcome is unknown ([`MetadataError::Indeterminate`]) and, as in any Raft
    /// client, the command may still commit later: callers retry with idempotent intent
    /// (e.g. treat `TopicExists` with the same topic id as success).
    pub async fn propose(&self, cmd: MetadataCommand) -> Result<CommandResult, MetadataError> {
        let timeout = self.options.propose_timeout;
        let deadline = Instant::now() + timeout;
        let mut metrics = self.raft.metrics();
        loop {
            let (leader, leader_addr) = {
                let m = metrics.borrow_and_update();
                let addr = m.current_leader.and_then(|l| {
                    m.membership_config
                        .membership()
                        .get_node(&l)
                        .map(|n| n.addr.clone())
                });
                (m.current_leader, addr)
            };
            match leader {
                None => {}
                Some(l) if l == self.id => {
                    match network::propose_local(&self.raft, cmd.clone()).await {
                        Ok(w) => return Ok(w.result),
                        Err(ForwardError::NotLeader { .. }) => {}
                        Err(ForwardError::Failed(e)) => return Err(MetadataError::Raft(e)),
                    }
                }
                Some(l) => {
                    let Some(addr) = leader_addr else {
                        return Err(MetadataError::Raft(format!(
                            "leader {l} has no address in the membership"
                        )));
                    };
                    let ttl = deadline.saturating_duration_since(Instant::now());
                    match network::forward(&addr, l, self.membership.as_ref(), cmd.clone(), ttl)
                        .await
                    {
                        Ok(Ok(w)) => {
                            self.wait_applied(w.log_id.index, deadline, timeout).await?;
                            return Ok(w.result);
                        }
                        Ok(Err(ForwardError::NotLeader { .. })) => {}
                        Err(CallError::Connect { addr, source }) => {
                            tracing::debug!(leader = l, %addr, error = %source, "leader unreachable; retrying");
                        }
                        Err(CallError::Timeout { .. }) => {
                            return Err(MetadataError::Timeout(timeout))
                        }
                        Ok(Err(ForwardError::Failed(reason))) => {
                            return Err(MetadataError::Indeterminate {
                                leader: l,
                                addr,
                                reason,
                            })
                        }
                        Err(e) => {
                            return Err(MetadataError::Indeterminate {
                                leader: l,
                                addr,
                                reason: e.to_string(),
                            })
                        }
                    }
                }
            }
            // Wait for a leader change, or retry soon: a stale leader hint may not change
            // the metrics until the next election.
            if Instant::now() >= deadline {
                return Err(MetadataError::Timeout(timeout));
            }
            let retry_at = deadline.min(Instant::now() + Duration::from_millis(100));
            if let Ok(Err(_)) = tokio::time::timeout_at(retry_at, metrics.changed()).await {
                return Err(MetadataError::Shutdown);
            }
        }
    }

    async fn wait_applied(
        &self,
        index: u64,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), MetadataError> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self
            .raft
            .wait(Some(left))
            .applied_index_at_least(Some(index), "forwarded proposal applied locally")
            .await
        {
            Ok(_) => Ok(()),
            Err(WaitError::Timeout(..)) => Err(MetadataError::Timeout(timeout)),
            Err(WaitError::ShuttingDown) => Err(MetadataError::Shutdown),
        }
    }

    /// The applied state; updated on every apply (and on snapshot install).
    pub fn state(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.state.clone()
    }

    /// The current leader as this node knows it.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// Whether this node is the Raft leader, and so the active controller.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state.is_leader()
    }

    /// Registers this process as broker `broker_id` (unfenced), retrying until committed or
    /// 60 s have passed. Retrying is safe even after an indeterminate outcome: the same
    /// `incarnation` again is a no-op. Pick a new incarnation (`Uuid::new_v4()`) per process
    /// start; a different one tells the controller the broker restarted, so partitions it led
    /// get a new leader epoch. Returns once [`state`](Self::state) shows the registration.
    pub async fn register_broker(
        &self,
        broker_id: BrokerId,
        host: String,
        port: u16,
        incarnation: Uuid,
    ) -> Result<(), MetadataError> {
        self.register_broker_with_listeners(broker_id, host, port, incarnation, Vec::new())
            .await
    }

    /// [`register_broker`](Self::register_broker) with one endpoint per listener name.
    pub async fn register_broker_with_listeners(
        &self,
        broker_id: BrokerId,
        host: String,
        port: u16,
        incarnation: Uuid,
        listeners: Vec<crate::state::ListenerEndpoint>,
    ) -> Result<(), MetadataError> {
        let deadline = Instant::now() + REGISTER_DEADLINE;
        let cmd = MetadataCommand::RegisterBroker {
            broker_id,
            host,
            port,
            rack: None,
            incarnation,
            listeners,
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.propose(cmd.clone())).await {
                Ok(Ok(CommandResult::Ok)) => break,
                Ok(Ok(rejected)) => return Err(MetadataError::Rejected(rejected)),
                Ok(Err(e @ MetadataError::Timeout(_)))
                | Ok(Err(e @ MetadataError::Indeterminate { .. }))
                | Ok(Err(e @ MetadataError::Raft(_))) => {
                    tracing::debug!(broker = broker_id, error = %e, "broker registration not confirmed; retrying");
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(MetadataError::Timeout(REGISTER_DEADLINE)),
            }
            if Instant::now() >= deadline {
                return Err(MetadataError::Timeout(REGISTER_DEADLINE));
            }
            tokio::time::sleep(Duration::from_millis(200).min(left)).await;
        }
        let mut rx = self.state();
        let shown = rx.wait_for(|s| {
            s.brokers
                .get(&broker_id)
                .is_some_and(|b| b.incarnation == incarnation)
        });
        // Drop the state borrow before matching.
        let shown = tokio::time::timeout_at(deadline, shown)
            .await
            .map(|r| r.map(|_| ()));
        match shown {
            Ok(Ok(())) => {
                tracing::info!(broker = broker_id, %incarnation, "broker registered");
                Ok(())
            }
            Ok(Err(_)) => Err(MetadataError::Shutdown),
            Err(_) => Err(MetadataError::Timeout(REGISTER_DEADLINE)),
        }
    }

    /// Starts heartbeating for broker `broker_id` to the controller every
    /// `broker_heartbeat_interval`. Failures are logged at debug and retried next interval.
    /// The loop runs until the handle is dropped or the node stops.
    pub fn start_heartbeats(&self, broker_id: BrokerId, incarnation: Uuid) -> HeartbeatHandle {
        let interval = self.options.controller.broker_heartbeat_interval;
        controller::spawn_heartbeats(
            self.heartbeat_sender(),
            broker_id,
            incarnation,
            interval,
            self.shutdown_requests.clone(),
            self.stop.subscribe(),
        )
    }

    /// Asks the controller to fence broker `broker_id` (moving its leaderships to other ISR
    /// members) and waits until this node's state shows it fenced. From now on this node's
    /// heartbeats for this incarnation carry the request, so the broker stays fenced until
    /// it registers with a new incarnation. On error (e.g. timeout) the caller just stops:
    /// the session timeout fences the broker anyway.
    pub async fn controlled_shutdown(
        &self,
        broker_id: BrokerId,
        incarnation: Uuid,
        timeout: Duration,
    ) -> Result<(), MetadataError> {
        let deadline = Instant::now() + timeout;
        self.shutdown_requests.insert(broker_id, incarnation);
        let mut sender = self.heartbeat_sender();
        let hb = BrokerHeartbeat {
            broker_id,
            incarnation,
            want_shut_down: true,
        };
        // Re-sent often: the request may hit a leader that is just stepping down.
        let resend = (self.options.controller.broker_heartbeat_interval / 2)
            .clamp(Duration::from_millis(10), Duration::from_millis(500));
        let mut rx = self.state();
        loop {
            let fenced = match rx.borrow_and_update().brokers.get(&broker_id) {
                Some(b) if b.incarnation == incarnation => b.fenced,
                // Not (or no longer) this incarnation's registration: nothing to hand over.
                _ => true,
            };
            if fenced {
                tracing::info!(broker = broker_id, "controlled shutdown: broker is fenced");
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(MetadataError::Timeout(timeout));
            }
            if let Err(e) = sender.send(&hb).await {
                tracing::debug!(broker = broker_id, error = %e, "controlled shutdown heartbeat failed; retrying");
            }
            let wake = deadline.min(Instant::now() + resend);
            if let Ok(Err(_)) = tokio::time::timeout_at(wake, rx.changed()).await {
                return Err(MetadataError::Shutdown);
            }
        }
    }

    fn heartbeat_sender(&self) -> HeartbeatSender {
        HeartbeatSender {
            node_id: self.id,
            metrics: self.raft.metrics(),
            liveness: self.liveness.clone(),
            client: RpcClient::new(self.membership.clone()),
            // One interval: a slower answer is useless, the next heartbeat is due.
            ttl: self
                .options
                .controller
                .broker_heartbeat_interval
                .max(Duration::from_millis(100)),
        }
    }

    /// Waits until this node knows a leader.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, MetadataError> {
        match self
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await
        {
            Ok(m) => m.current_leader.ok_or(MetadataError::Timeout(timeout)),
            Err(WaitError::Timeout(..)) => Err(MetadataError::Timeout(timeout)),
            Err(WaitError::ShuttingDown) => Err(MetadataError::Shutdown),
        }
    }

    /// openraft's metrics (role, term, log and snapshot positions), for status and tests.
    pub fn raft_metrics(&self) -> watch::Receiver<RaftMetrics<NodeId, BasicNode>> {
        self.raft.metrics()
    }

    /// Stops the RPC server and the Raft core, and waits for them. Dropping the node instead
    /// also stops both, without waiting.
    pub async fn shutdown(mut self) {
        // Heartbeat loops stop with the node, as if the process were gone.
        let _ = self.stop.send(());
        if let Some(controller) = self.controller.take() {
            controller.abort();
            let _ = controller.await;
        }
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(node = self.id, error = %e, "metadata raft shutdown");
        }
    }
}

impl Drop for MetadataNode {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
        if let Some(controller) = self.controller.take() {
            controller.abort();
        }
        // The Raft core stops once its last handle (here and in the server and controller
        // tasks) is gone; heartbeat loops end when `stop` is dropped.
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_voters() {
        let v = parse_voters("1@127.0.0.1:19091, 2@localhost:19092,3@[::1]:19093").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[&3], "[::1]:19093");
        assert!(parse_voters("").unwrap().is_empty());
        assert!(parse_voters("1@a:1,1@b:2").is_err());
        assert!(parse_voters("x@a:1").is_err());
        assert!(parse_voters("1@a").is_err());
        assert!(parse_voters("1@:99").is_err());
    }
}
