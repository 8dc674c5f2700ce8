//! Broker liveness and the controller (KRaft's active-controller duties).
//!
//! Brokers heartbeat to the Raft leader (`BrokerHeartbeat`, over the metadata RPC
//! transport, or recorded in memory when the broker runs on the leader itself). Only the
//! leader keeps heartbeats, and only in memory: a new leader starts by treating every
//! registered broker as just seen (a grace period of one session timeout).
//!
//! The controller task runs on every node and acts only while its node is the Raft leader.
//! Each tick it reads the applied [`ClusterState`] and proposes, one command at a time:
//! - `FenceBroker` for an unfenced broker silent for `session_timeout`, or whose latest
//!   heartbeat (from its registered incarnation) asks for a controlled shutdown;
//! - `UnfenceBroker` for a fenced broker heartbeating again with its registered incarnation;
//! - `ElectLeader` for leaderless partitions: from the ISR when a member is unfenced, else
//!   from any unfenced replica if unclean election is enabled for the topic;
//! - `ElectLeader` of the preferred (first) replica, every `leader_imbalance_check_interval`,
//!   when it is unfenced and in the ISR but not leading;
//! - `ElectLeader` of the followed topic's leader for a `leader.follows` topic led
//!   elsewhere, every tick (such topics and the ones they follow skip the preferred rule).
//!
//! Decisions read clocks, proposals do not: every command carries its outcome's inputs, so
//! `apply` stays deterministic. A failed proposal is not retried as such; a later tick plans
//! again from the then current state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use openraft::{Raft, RaftMetrics};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use uuid::Uuid;

use crate::network::{self, CallError, ForwardError, RpcClient};
use crate::{
    BasicNode, BrokerId, ClusterState, CommandResult, MetadataCommand, NodeId, TopicState,
    TypeConfig, LEADER_FOLLOWS_CONFIG, NO_LEADER,
};

/// Topic config key for unclean leader election (Kafka's name).
pub const UNCLEAN_LEADER_ELECTION_CONFIG: &str = "unclean.leader.election.enable";

/// Liveness and leader-election knobs, with Kafka's broker config defaults.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// `broker.session.timeout.ms`: a broker silent this long is fenced.
    pub session_timeout: Duration,
    /// `broker.heartbeat.interval.ms`: how often a broker heartbeats.
    pub broker_heartbeat_interval: Duration,
    /// `unclean.leader.election.enable`, the default for topics without the override.
    pub unclean_leader_election: bool,
    /// `auto.leader.rebalance.enable`: move leadership back to preferred replicas.
    pub auto_leader_rebalance: bool,
    /// `leader.imbalance.check.interval.seconds`.
    pub leader_imbalance_check_interval: Duration,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            session_timeout: Duration::from_secs(9),
            broker_heartbeat_interval: Duration::from_secs(2),
            unclean_leader_election: false,
            auto_leader_rebalance: true,
            leader_imbalance_check_interval: Duration::from_secs(300),
        }
    }
}

impl ControllerOptions {
    // Several ticks per heartbeat interval, so fencing lags the timeout by little.
    fn tick(&self) -> Duration {
        (self.broker_heartbeat_interval / 2)
            .min(Duration::from_millis(250))
            .max(Duration::from_millis(10))
    }
}

/// A broker's heartbeat to the controller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BrokerHeartbeat {
    pub broker_id: BrokerId,
    pub incarnation: Uuid,
    pub want_shut_down: bool,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    at: Instant,
    incarnation: Uuid,
    want_shut_down: bool,
}

/// The latest heartbeat of each broker, as received by this node while it leads.
#[derive(Default)]
pub(crate) struct Liveness {
    seen: Mutex<BTreeMap<BrokerId, Seen>>,
}

impl Liveness {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<BrokerId, Seen>> {
        // Each update is a single insert: a poisoned map is still consistent.
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, hb: &BrokerHeartbeat, at: Instant) {
        self.lock().insert(
            hb.broker_id,
            Seen {
                at,
                incarnation: hb.incarnation,
                want_shut_down: hb.want_shut_down,
            },
        );
    }

    fn snapshot(&self) -> BTreeMap<BrokerId, Seen> {
        self.lock().clone()
    }

    fn clear(&self) {
        self.lock().clear();
    }
}

/// Records a heartbeat if this node is the Raft leader; otherwise says who is.
pub(crate) fn receive_heartbeat(
    raft: &Raft<TypeConfig>,
    liveness: &Liveness,
    hb: &BrokerHeartbeat,
) -> Result<(), ForwardError> {
    let (leading, leader_id) = {
        let m = raft.metrics();
        let m = m.borrow();
        (m.state.is_leader(), m.current_leader)
    };
    if !leading {
        return Err(ForwardError::NotLeader { leader_id });
    }
    liveness.record(hb, Instant::now());
    Ok(())
}

/// Brokers (by incarnation) that asked for a controlled shutdown through this node: their
/// heartbeats say so from then on.
#[derive(Default)]
pub(crate) struct ShutdownRequests {
    set: Mutex<BTreeSet<(BrokerId, Uuid)>>,
}

impl ShutdownRequests {
    fn lock(&self) -> MutexGuard<'_, BTreeSet<(BrokerId, Uuid)>> {
        self.set.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn insert(&self, broker_id: BrokerId, incarnation: Uuid) {
        self.lock().insert((broker_id, incarnation));
    }

    fn contains(&self, broker_id: BrokerId, incarnation: Uuid) -> bool {
        self.lock().contains(&(broker_id, incarnation))
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum HeartbeatError {
    #[error("no metadata leader known")]
    NoLeader,
    #[error("not the metadata leader (leader: {0:?})")]
    NotLeader(Option<NodeId>),
    #[error("metadata leader {0} has no address in the membership")]
    NoAddress(NodeId),
    #[error("metadata leader failed the heartbeat: {0}")]
    Failed(String),
    #[error(transparent)]
    Call(#[from] CallError),
}

/// Sends heartbeats to the current Raft leader, found as proposals find it.
pub(crate) struct HeartbeatSender {
    pub node_id: NodeId,
    pub metrics: watch::Receiver<RaftMetrics<NodeId, BasicNode>>,
    pub liveness: Arc<Liveness>,
    pub client: RpcClient,
    pub ttl: Duration,
}

impl HeartbeatSender {
    pub(crate) async fn send(&mut self, hb: &BrokerHeartbeat) -> Result<(), HeartbeatError> {
        let (leader, addr, leading) = {
            let m = self.metrics.borrow();
            let addr = m.current_leader.and_then(|l| {
                m.membership_config
                    .membership()
                    .get_node(&l)
                    .map(|n| n.addr.clone())
            });
            (m.current_leader, addr, m.state.is_leader())
        };
        match leader {
            None => Err(HeartbeatError::NoLeader),
            Some(l) if l == self.node_id => {
                if !leading {
                    return Err(HeartbeatError::NotLeader(None));
                }
                self.liveness.record(hb, Instant::now());
                Ok(())
            }
            Some(l) => {
                let addr = addr.ok_or(HeartbeatError::NoAddress(l))?;
                match self
                    .client
                    .heartbeat(&addr, l, hb.clone(), self.ttl)
                    .await?
                {
                    Ok(()) => Ok(()),
                    Err(ForwardError::NotLeader { leader_id }) => {
                        Err(HeartbeatError::NotLeader(leader_id))
                    }
                    Err(ForwardError::Failed(reason)) => Err(HeartbeatError::Failed(reason)),
                }
            }
        }
    }
}

/// Keeps a broker's heartbeat loop running; dropping it stops the loop (and so, after the
/// session timeout, gets the broker fenced).
#[derive(Debug)]
pub struct HeartbeatHandle {
    task: JoinHandle<()>,
}

impl HeartbeatHandle {
    /// Stops the loop (the same as dropping the handle).
    pub fn stop(self) {}
}

impl Drop for HeartbeatHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Spawns the heartbeat loop; it also ends when the node is shut down or dropped (`stop`).
pub(crate) fn spawn_heartbeats(
    mut sender: HeartbeatSender,
    broker_id: BrokerId,
    incarnation: Uuid,
    interval: Duration,
    requests: Arc<ShutdownRequests>,
    mut stop: watch::Receiver<()>,
) -> HeartbeatHandle {
    let task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = ticker.tick() => {}
            }
            let hb = BrokerHeartbeat {
                broker_id,
                incarnation,
                want_shut_down: requests.contains(broker_id, incarnation),
            };
            if let Err(e) = sender.send(&hb).await {
                tracing::debug!(broker = broker_id, error = %e, "broker heartbeat failed; retrying next interval");
            }
        }
    });
    HeartbeatHandle { task }
}

// ---------------------------------------------------------------------------------------
// Decisions (pure: state, heartbeats and "now" in, commands out)

#[derive(Clone, Debug, PartialEq, Eq)]
struct BrokerAction {
    broker_id: BrokerId,
    fence: bool,
    reason: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ElectionKind {
    /// A leaderless partition gets an unfenced ISR member.
    Clean,
    /// A leaderless partition gets an unfenced replica outside the ISR.
    Unclean,
    /// The first replica takes leadership back.
    Preferred,
    /// A `leader.follows` topic moves to the leader of the topic it follows.
    Follow,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct PartitionAction {
    topic: String,
    topic_id: Uuid,
    partition: i32,
    /// (leader, partition epoch) the plan was made from; checked again before proposing.
    planned_at: (BrokerId, i32),
    new_leader: BrokerId,
    kind: ElectionKind,
}

impl PartitionAction {
    fn command(&self) -> MetadataCommand {
        MetadataCommand::ElectLeader {
            topic: self.topic.clone(),
            partition: self.partition,
            new_leader: self.new_leader,
            allow_unclean: self.kind == ElectionKind::Unclean,
        }
    }

    fn still_applies(&self, state: &ClusterState) -> bool {
        state.topics.get(&self.topic).is_some_and(|t| {
            t.id == self.topic_id
                && usize::try_from(self.partition)
                    .ok()
                    .and_then(|i| t.partitions.get(i))
                    .is_some_and(|p| (p.leader, p.partition_epoch) == self.planned_at)
        })
    }
}

/// Controller memory that survives between ticks of one leadership term.
struct Decider {
    options: ControllerOptions,
    /// Broker -> (broker epoch, when the grace period started): a broker is alive until
    /// `session_timeout` after this even without a heartbeat (new leader, new registration).
    grace: BTreeMap<BrokerId, (u64, Instant)>,
    last_rebalance: Instant,
}

impl Decider {
    fn new(options: ControllerOptions, now: Instant) -> Self {
        Decider {
            options,
            grace: BTreeMap::new(),
            last_rebalance: now,
        }
    }

    /// On gaining leadership: every registered broker is given a full session.
    fn elected(&mut self, state: &ClusterState, now: Instant) {
        self.grace.clear();
        self.last_rebalance = now;
        self.note_registrations(state, now);
    }

    fn note_registrations(&mut self, state: &ClusterState, now: Instant) {
        self.grace.retain(|id, _| state.brokers.contains_key(id));
        for b in state.brokers.values() {
            if self.grace.get(&b.broker_id).map(|g| g.0) != Some(b.broker_epoch) {
                self.grace.insert(b.broker_id, (b.broker_epoch, now));
            }
        }
    }

    fn broker_action(
        &self,
        state: &ClusterState,
        seen: &BTreeMap<BrokerId, Seen>,
        now: Instant,
    ) -> Option<BrokerAction> {
        let timeout = self.options.session_timeout;
        state.brokers.values().find_map(|b| {
            // Heartbeats of another incarnation say nothing about this registration.
            let hb = seen
                .get(&b.broker_id)
                .filter(|s| s.incarnation == b.incarnation);
            let action = |fence, reason| {
                Some(BrokerAction {
                    broker_id: b.broker_id,
                    fence,
                    reason,
                })
            };
            if !b.fenced {
                if hb.is_some_and(|s| s.want_shut_down) {
                    return action(true, "controlled shutdown");
                }
                let grace = self.grace.get(&b.broker_id).map(|g| g.1);
                let last = hb.map(|s| s.at).max(grace)?;
                if now.saturating_duration_since(last) >= timeout {
                    return action(true, "session timed out");
                }
            } else if hb
                .is_some_and(|s| !s.want_shut_down && now.saturating_duration_since(s.at) < timeout)
            {
                return action(false, "heartbeating again");
            }
            None
        })
    }
}

fn unclean_enabled(topic: &TopicState, default: bool) -> bool {
    match topic.configs.get(UNCLEAN_LEADER_ELECTION_CONFIG) {
        Some(v) if v.trim().eq_ignore_ascii_case("true") => true,
        Some(v) if v.trim().eq_ignore_ascii_case("false") => false,
        _ => default,
    }
}

fn partition_actions(
    state: &ClusterState,
    default_unclean: bool,
    rebalance: bool,
) -> Vec<PartitionAction> {
    let mut out = Vec::new();
    // Topics others follow keep their leader: moving it moves every follower too.
    let followed: BTreeSet<&String> = state
        .topics
        .values()
        .filter_map(|t| t.configs.get(LEADER_FOLLOWS_CONFIG))
        .collect();
    for (name, t) in &state.topics {
        let follow = state.followed_leader(&t.configs);
        let following = t.configs.contains_key(LEADER_FOLLOWS_CONFIG);
        for (i, p) in t.partitions.iter().enumerate() {
            let Ok(partition) = i32::try_from(i) else {
                break;
            };
            let elect = |new_leader, kind| PartitionAction {
                topic: name.clone(),
                topic_id: t.id,
                partition,
                planned_at: (p.leader, p.partition_epoch),
                new_leader,
                kind,
            };
            let live = |b: &&BrokerId| state.is_unfenced(**b);
            let follow = follow.filter(|l| p.isr.contains(l));
            if p.leader == NO_LEADER {
                let clean = follow.or_else(|| {
                    p.replicas
                        .iter()
                        .filter(|b| p.isr.contains(b))
                        .find(live)
                        .copied()
                });
                if let Some(b) = clean {
                    out.push(elect(b, ElectionKind::Clean));
                } else if unclean_enabled(t, default_unclean) {
                    if let Some(b) = p.replicas.iter().find(live) {
                        out.push(elect(*b, ElectionKind::Unclean));
                    }
                }
            } else if let Some(l) = follow.filter(|l| *l != p.leader) {
                // Checked every tick, not only on rebalance: AMQP needs its queues together.
                out.push(elect(l, ElectionKind::Follow));
            } else if rebalance && !following && !followed.contains(name) {
                if let Some(&preferred) = p.replicas.first() {
                    if preferred != p.leader
                        && state.is_unfenced(preferred)
                        && p.isr.contains(&preferred)
                    {
                        out.push(elect(preferred, ElectionKind::Preferred));
                    }
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The task

/// Bound on proposals per tick, so one tick never monopolises the leader.
const MAX_PROPOSALS_PER_TICK: usize = 256;

pub(crate) struct Controller {
    pub node_id: NodeId,
    pub raft: Raft<TypeConfig>,
    pub state: watch::Receiver<Arc<ClusterState>>,
    pub liveness: Arc<Liveness>,
    pub options: ControllerOptions,
    pub propose_timeout: Duration,
}

impl Controller {
    pub(crate) fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(self.run())
    }

    async fn run(self) {
        let tick = self.options.tick();
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut decider = Decider::new(self.options.clone(), Instant::now());
        let mut leading = false;
        let mut metrics = self.raft.metrics();
        loop {
            ticker.tick().await;
            let is_leader = metrics.borrow_and_update().state.is_leader();
            if !is_leader {
                if leading {
                    tracing::info!(node = self.node_id, "no longer the metadata controller");
                    leading = false;
                    self.liveness.clear();
                }
                continue;
            }
            if !leading {
                // Plan only from a state that includes everything committed before this term.
                let caught_up = tokio::time::timeout(
                    self.options.session_timeout,
                    self.raft.ensure_linearizable(),
                )
                .await;
                if !matches!(caught_up, Ok(Ok(_))) {
                    continue;
                }
                let state = self.state.borrow().clone();
                decider.elected(&state, Instant::now());
                leading = true;
                tracing::info!(
                    node = self.node_id,
                    brokers = state.brokers.len(),
                    "acting as metadata controller; every registered broker gets a full session"
                );
            }
            self.tick(&mut decider).await;
        }
    }

    async fn tick(&self, decider: &mut Decider) {
        // Brokers first, one at a time from fresh state: fencing moves leaderships.
        for _ in 0..MAX_PROPOSALS_PER_TICK {
            let state = self.state.borrow().clone();
            let now = Instant::now();
            decider.note_registrations(&state, now);
            let seen = self.liveness.snapshot();
            let Some(a) = decider.broker_action(&state, &seen, now) else {
                break;
            };
            let cmd = if a.fence {
                tracing::info!(broker = a.broker_id, reason = a.reason, "fencing broker");
                MetadataCommand::FenceBroker {
                    broker_id: a.broker_id,
                }
            } else {
                tracing::info!(broker = a.broker_id, reason = a.reason, "unfencing broker");
                MetadataCommand::UnfenceBroker {
                    broker_id: a.broker_id,
                }
            };
            if !self.propose(cmd).await {
                return;
            }
        }

        let now = Instant::now();
        let rebalance = self.options.auto_leader_rebalance
            && now.saturating_duration_since(decider.last_rebalance)
                >= self.options.leader_imbalance_check_interval;
        let state = self.state.borrow().clone();
        // A dynamic cluster-wide `unclean.leader.election.enable` overrides the static one.
        let default_unclean = state
            .broker_configs
            .get("")
            .and_then(|c| c.get(UNCLEAN_LEADER_ELECTION_CONFIG))
            .map_or(self.options.unclean_leader_election, |v| {
                v.trim().eq_ignore_ascii_case("true")
            });
        let actions = partition_actions(&state, default_unclean, rebalance);
        let mut all_done = true;
        for a in actions.into_iter().take(MAX_PROPOSALS_PER_TICK) {
            if !a.still_applies(&self.state.borrow()) {
                continue;
            }
            match a.kind {
                ElectionKind::Clean => tracing::info!(
                    topic = %a.topic, partition = a.partition, leader = a.new_leader,
                    "electing a leader for a leaderless partition from its ISR"
                ),
                ElectionKind::Unclean => tracing::warn!(
                    topic = %a.topic, partition = a.partition, leader = a.new_leader,
                    "unclean leader election: no ISR member is available; acknowledged \
                     records the new leader lacks are lost"
                ),
                ElectionKind::Follow => tracing::info!(
                    topic = %a.topic, partition = a.partition, leader = a.new_leader,
                    from = a.planned_at.0, "moving a partition to the leader of the topic it follows"
                ),
                ElectionKind::Preferred => tracing::info!(
                    topic = %a.topic, partition = a.partition, leader = a.new_leader,
                    from = a.planned_at.0, "preferred leader election"
                ),
            }
            if !self.propose(a.command()).await {
                all_done = false;
                break;
            }
        }
        // A failed rebalance pass is tried again on the next tick, not a whole interval later.
        if rebalance && all_done {
            decider.last_rebalance = now;
        }
    }

    /// Proposes on this (leader) node; false if the tick should stop.
    async fn propose(&self, cmd: MetadataCommand) -> bool {
        let res = tokio::time::timeout(
            self.propose_timeout,
            network::propose_local(&self.raft, cmd),
        )
        .await;
        match res {
            Ok(Ok(w)) if w.result == CommandResult::Ok => true,
            Ok(Ok(w)) => {
                // The state moved under the plan; the next tick plans again.
                tracing::info!(result = ?w.result, "controller proposal rejected");
                false
            }
            Ok(Err(ForwardError::NotLeader { .. })) => false,
            Ok(Err(ForwardError::Failed(e))) => {
                tracing::warn!(error = %e, "controller proposal failed");
                false
            }
            Err(_) => {
                tracing::warn!(timeout = ?self.propose_timeout, "controller proposal timed out");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BrokerRegistration, PartitionState};

    fn broker(id: BrokerId, epoch: u64, fenced: bool) -> BrokerRegistration {
        BrokerRegistration {
            broker_id: id,
            host: "h".into(),
            port: 1,
            rack: None,
            fenced,
            broker_epoch: epoch,
            incarnation: Uuid::from_u128(epoch as u128),
            listeners: Vec::new(),
        }
    }

    fn state(brokers: &[BrokerRegistration], parts: &[PartitionState]) -> ClusterState {
        let mut s = ClusterState::default();
        for b in brokers {
            s.brokers.insert(b.broker_id, b.clone());
        }
        s.topics.insert(
            "t".into(),
            TopicState {
                name: "t".into(),
                id: Uuid::from_u128(7),
                configs: BTreeMap::new(),
                partitions: parts.to_vec(),
            },
        );
        s
    }

    fn part(replicas: &[BrokerId], leader: BrokerId, isr: &[BrokerId]) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            leader,
            leader_epoch: 3,
            isr: isr.to_vec(),
            partition_epoch: 5,
        }
    }

    fn seen(at: Instant, inc: u128, want_shut_down: bool) -> Seen {
        Seen {
            at,
            incarnation: Uuid::from_u128(inc),
            want_shut_down,
        }
    }

    fn opts() -> ControllerOptions {
        ControllerOptions {
            session_timeout: Duration::from_secs(1),
            ..ControllerOptions::default()
        }
    }

    #[test]
    fn fences_silent_brokers_after_the_grace_period() {
        let t0 = Instant::now();
        let s = state(&[broker(1, 10, false), broker(2, 11, false)], &[]);
        let mut d = Decider::new(opts(), t0);
        d.elected(&s, t0);
        let hb = BTreeMap::from([(2, seen(t0 + Duration::from_millis(900), 11, false))]);
        assert_eq!(
            d.broker_action(&s, &hb, t0 + Duration::from_millis(999)),
            None
        );
        let at = t0 + Duration::from_secs(1);
        assert_eq!(
            d.broker_action(&s, &hb, at),
            Some(BrokerAction {
                broker_id: 1,
                fence: true,
                reason: "session timed out"
            })
        );
        // A heartbeat from another incarnation (a restarted process not yet registered)
        // does not keep the old registration alive.
        let other = BTreeMap::from([(1, seen(at, 99, false))]);
        assert!(d.broker_action(&s, &other, at).is_some_and(|a| a.fence));
        // A re-registration (new broker epoch) starts a fresh grace period.
        let s2 = state(&[broker(1, 20, false)], &[]);
        d.note_registrations(&s2, at);
        assert_eq!(d.broker_action(&s2, &BTreeMap::new(), at), None);
    }

    #[test]
    fn controlled_shutdown_fences_and_only_live_heartbeats_unfence() {
        let t0 = Instant::now();
        let mut d = Decider::new(opts(), t0);
        let up = state(&[broker(1, 10, false)], &[]);
        d.elected(&up, t0);
        let bye = BTreeMap::from([(1, seen(t0, 10, true))]);
        assert_eq!(
            d.broker_action(&up, &bye, t0).map(|a| (a.fence, a.reason)),
            Some((true, "controlled shutdown"))
        );
        let fenced = state(&[broker(1, 10, true)], &[]);
        // Still asking to shut down, stale, or another incarnation: stays fenced.
        assert_eq!(d.broker_action(&fenced, &bye, t0), None);
        let stale = BTreeMap::from([(1, seen(t0, 10, false))]);
        assert_eq!(
            d.broker_action(&fenced, &stale, t0 + Duration::from_secs(1)),
            None
        );
        let other = BTreeMap::from([(1, seen(t0, 11, false))]);
        assert_eq!(d.broker_action(&fenced, &other, t0), None);
        assert_eq!(
            d.broker_action(&fenced, &stale, t0 + Duration::from_millis(10))
                .map(|a| a.fence),
            Some(false)
        );
    }

    #[test]
    fn elections_for_leaderless_and_imbalanced_partitions() {
        let brokers = [broker(1, 1, true), broker(2, 2, false), broker(3, 3, false)];
        let parts = [
            // Leaderless, ISR member 3 is live: clean election.
            part(&[1, 2, 3], NO_LEADER, &[1, 3]),
            // Leaderless, only fenced ISR: unclean candidate 2.
            part(&[1, 2], NO_LEADER, &[1]),
            // Preferred replica 2 in the ISR but not leading.
            part(&[2, 3], 3, &[3, 2]),
            // Preferred replica 1 fenced: no rebalance.
            part(&[1, 3], 3, &[3]),
        ];
        let mut s = state(&brokers, &parts);
        let kinds = |s: &ClusterState, unclean, rebalance| {
            partition_actions(s, unclean, rebalance)
                .into_iter()
                .map(|a| (a.partition, a.new_leader, a.kind))
                .collect::<Vec<_>>()
        };
        assert_eq!(kinds(&s, false, false), vec![(0, 3, ElectionKind::Clean)]);
        assert_eq!(
            kinds(&s, true, true),
            vec![
                (0, 3, ElectionKind::Clean),
                (1, 2, ElectionKind::Unclean),
                (2, 2, ElectionKind::Preferred)
            ]
        );
        // The topic config overrides the broker default, both ways.
        let cfg = &mut s.topics.get_mut("t").expect("topic").configs;
        cfg.insert(UNCLEAN_LEADER_ELECTION_CONFIG.into(), "false".into());
        assert_eq!(kinds(&s, true, false), vec![(0, 3, ElectionKind::Clean)]);
        let cfg = &mut s.topics.get_mut("t").expect("topic").configs;
        cfg.insert(UNCLEAN_LEADER_ELECTION_CONFIG.into(), "true".into());
        assert_eq!(kinds(&s, false, false).len(), 2);

        // A follower led elsewhere moves to the followed leader every tick; neither it nor
        // the followed topic is moved to its preferred replica.
        let mut f = state(&brokers, &[part(&[2, 3], 2, &[2, 3])]);
        let mut home = f.topics["t"].clone();
        home.name = "home".into();
        home.partitions = vec![part(&[2, 3], 3, &[2, 3])];
        f.topics.insert("home".into(), home);
        f.topics
            .get_mut("t")
            .expect("topic")
            .configs
            .insert(LEADER_FOLLOWS_CONFIG.into(), "home".into());
        assert_eq!(kinds(&f, false, true), vec![(0, 3, ElectionKind::Follow)]);
        f.topics.get_mut("t").expect("topic").partitions[0].leader = 3;
        assert_eq!(kinds(&f, false, true), vec![]);

        // A plan is dropped once the partition moved on.
        let a = &partition_actions(&s, false, false)[0];
        assert!(a.still_applies(&s));
        s.topics.get_mut("t").expect("topic").partitions[0].partition_epoch += 1;
        assert!(!a.still_applies(&s));
        assert_eq!(
            a.command(),
            MetadataCommand::ElectLeader {
                topic: "t".into(),
                partition: 0,
                new_leader: 3,
                allow_unclean: false
            }
        );
    }
}
