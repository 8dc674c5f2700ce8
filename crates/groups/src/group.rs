//! One classic group's state machine (Kafka's GroupMetadata + the classic parts of
//! GroupCoordinator): Empty -> PreparingRebalance -> CompletingRebalance -> Stable, Dead
//! when deleted. Methods run under the group's mutex and never await; what must wait
//! (a rebalance, a write to the offsets topic) is returned as a channel or a future.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use indexmap::IndexMap;
use tokio::sync::oneshot;
use tokio::time::{Duration, Instant};

use crate::api::*;
use crate::config::GroupConfig;
use crate::error::GroupError;
use crate::log::{AppendWait, KeyValue, OffsetsLog};
use crate::records::{self, GroupValue, MemberValue, OffsetValue};

/// What a group method may touch besides the group: the offsets partition it lives in.
pub(crate) struct Ctx<'a> {
    pub log: &'a dyn OffsetsLog,
    pub partition: i32,
    pub epoch: i32,
    pub config: &'a GroupConfig,
}

impl Ctx<'_> {
    pub fn append(&self, records: Vec<KeyValue>) -> Result<AppendWait, GroupError> {
        self.log.append(self.partition, self.epoch, records)
    }
}

#[derive(Debug)]
pub(crate) struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    join_waiter: Option<oneshot::Sender<JoinResponse>>,
    sync_waiter: Option<oneshot::Sender<SyncResponse>>,
    session_deadline: Instant,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    fn session(&self) -> Duration {
        Duration::from_millis(self.session_timeout_ms.max(0) as u64)
    }
}

#[derive(Debug, Clone, Copy)]
struct Rebalance {
    deadline: Instant,
    /// The initial delay of a group that was empty (Kafka's InitialDelayedJoin): it never
    /// completes early, and is extended while new members arrive.
    initial: bool,
    remaining: Duration,
}

/// Outcome of a join: answered now, or when the rebalance completes, or once a write of
/// the group's metadata is acknowledged.
pub(crate) enum JoinStep {
    Done(JoinResponse),
    Wait(oneshot::Receiver<JoinResponse>),
    AfterWrite(AppendWait, JoinResponse),
}

pub(crate) enum SyncStep {
    Done(SyncResponse),
    Wait(oneshot::Receiver<SyncResponse>),
    /// The leader's assignment is being written; apply it with [`Group::on_assignment_written`].
    Write {
        wait: AppendWait,
        generation: i32,
        assignments: HashMap<String, Bytes>,
        rx: oneshot::Receiver<SyncResponse>,
    },
}

#[derive(Debug)]
pub(crate) struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// In join order: the first joiner leads.
    pub members: IndexMap<String, Member>,
    /// group.instance.id -> member id (KIP-345).
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until they rejoin or time out (KIP-394).
    pending: HashMap<String, Instant>,
    rebalance: Option<Rebalance>,
    new_member_added: bool,
    pub offsets: BTreeMap<(String, i32), OffsetValue>,
    /// Commits are appended in this order (under the group lock) but their acks=all waits
    /// may finish out of order: each commit takes a number at append time and a partition's
    /// offset is only replaced by a later-appended commit, so the cache follows the log.
    pub commit_seq: u64,
    pub offset_commit_seq: HashMap<(String, i32), u64>,
    /// Unloaded or deleted: the handle is gone from its shard.
    pub closed: bool,
}

fn join_error(member_id: &str, e: GroupError) -> JoinResponse {
    JoinResponse {
        error: Some(e),
        generation_id: -1,
        protocol_type: None,
        protocol_name: None,
        leader: String::new(),
        member_id: member_id.to_string(),
        members: Vec::new(),
    }
}

fn sync_error(e: GroupError) -> SyncResponse {
    SyncResponse {
        error: Some(e),
        protocol_type: None,
        protocol_name: None,
        assignment: Bytes::new(),
    }
}

fn spawn_logged(wait: AppendWait, group: String, what: &'static str) {
    tokio::spawn(async move {
        if let Err(e) = wait.await {
            tracing::warn!(group, error = %e, "writing {what} to the offsets topic failed");
        }
    });
}

impl Group {
    pub fn new(id: &str) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: IndexMap::new(),
            static_members: HashMap::new(),
            pending: HashMap::new(),
            rebalance: None,
            new_member_added: false,
            offsets: BTreeMap::new(),
            commit_seq: 0,
            offset_commit_seq: HashMap::new(),
            closed: false,
        }
    }

    // ---- loading ----

    /// Applies a group metadata record (or tombstone) while loading.
    pub fn load_metadata(&mut self, v: Option<GroupValue>, now: Instant) {
        self.members.clear();
        self.static_members.clear();
        let Some(v) = v else {
            self.state = GroupState::Empty;
            self.generation = 0;
            self.protocol_type = None;
            self.protocol = None;
            self.leader = None;
            return;
        };
        self.generation = v.generation;
        self.protocol_type = Some(v.protocol_type.clone());
        self.protocol = v.protocol.clone();
        self.leader = v.leader;
        let protocol = v.protocol.unwrap_or_default();
        for m in v.members {
            if let Some(iid) = &m.group_instance_id {
                self.static_members.insert(iid.clone(), m.member_id.clone());
            }
            let session = Duration::from_millis(m.session_timeout_ms.max(0) as u64);
            self.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id,
                    instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    protocols: vec![(protocol.clone(), m.subscription)],
                    assignment: m.assignment,
                    join_waiter: None,
                    sync_waiter: None,
                    session_deadline: now + session,
                },
            );
        }
        self.state = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
    }

    /// Answers every waiting request with NOT_COORDINATOR (dropping the senders does that)
    /// and stops the group's timers.
    pub fn close(&mut self) {
        self.closed = true;
        for m in self.members.values_mut() {
            m.join_waiter = None;
            m.sync_waiter = None;
        }
    }

    // ---- records ----

    fn metadata_record(&self, assignments: Option<&HashMap<String, Bytes>>) -> KeyValue {
        let protocol = self.protocol.clone().unwrap_or_default();
        let value = GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            current_state_timestamp: arctern_core::now_ms(),
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(&protocol),
                    assignment: match assignments {
                        Some(a) => a.get(&m.id).cloned().unwrap_or_default(),
                        None => m.assignment.clone(),
                    },
                })
                .collect(),
        };
        KeyValue {
            key: records::encode_group_key(&self.id),
            value: Some(records::encode_group_value(&value)),
        }
    }

    // ---- protocol helpers ----

    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.state == GroupState::Empty || self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    /// Kafka's vote: among the protocols every member supports, each member votes for the
    /// first of its own list; most votes wins (ties: the earlier member's preference).
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(x, _)| x == *n))
            })
            .collect();
        let mut votes: Vec<(&String, usize)> = candidates.iter().map(|c| (*c, 0)).collect();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
                if let Some(v) = votes.iter_mut().find(|(c, _)| *c == name) {
                    v.1 += 1;
                }
            }
        }
        let mut best: Option<(&String, usize)> = None;
        for (c, n) in votes {
            if best.is_none_or(|(_, b)| n > b) {
                best = Some((c, n));
            }
        }
        best.map(|(c, _)| c.clone())
    }

    fn rebalance_timeout(&self) -> Duration {
        let ms = self
            .members
            .values()
            .map(|m| m.rebalance_timeout_ms.max(0))
            .max()
            .unwrap_or(0);
        Duration::from_millis(ms as u64)
    }

    fn is_static_fenced(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        instance_id
            .and_then(|iid| self.static_members.get(iid))
            .is_some_and(|known| known != member_id)
    }

    fn current_join_response(&self, member_id: &str, with_members: bool) -> JoinResponse {
        let protocol = self.protocol.clone().unwrap_or_default();
        JoinResponse {
            error: None,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if with_members {
                self.members
                    .values()
                    .map(|m| JoinedMember {
                        member_id: m.id.clone(),
                        group_instance_id: m.instance_id.clone(),
                        metadata: m.metadata(&protocol),
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    // ---- rebalance ----

    fn maybe_prepare_rebalance(&mut self, ctx: &Ctx, now: Instant) {
        if matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        ) {
            self.prepare_rebalance(ctx, now);
        }
        self.try_complete_join(ctx, now);
    }

    fn prepare_rebalance(&mut self, ctx: &Ctx, now: Instant) {
        if self.state == GroupState::CompletingRebalance {
            self.reset_assignments(GroupError::RebalanceInProgress);
        }
        let timeout = self.rebalance_timeout();
        self.rebalance = Some(if self.state == GroupState::Empty {
            let delay = Duration::from_millis(ctx.config.initial_rebalance_delay_ms);
            Rebalance {
                deadline: now + delay,
                initial: true,
                remaining: timeout.saturating_sub(delay),
            }
        } else {
            Rebalance {
                deadline: now + timeout,
                initial: false,
                remaining: Duration::ZERO,
            }
        });
        self.state = GroupState::PreparingRebalance;
    }

    /// Clears every member's assignment and answers waiting SyncGroups with `e`.
    fn reset_assignments(&mut self, e: GroupError) {
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(sync_error(e));
            }
        }
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.join_waiter.is_some())
    }

    fn try_complete_join(&mut self, ctx: &Ctx, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        match self.rebalance {
            Some(r) if !r.initial && self.all_joined() => self.complete_join(ctx, now),
            _ => {}
        }
    }

    fn complete_join(&mut self, ctx: &Ctx, now: Instant) {
        self.rebalance = None;
        self.new_member_added = false;
        // Dynamic members that did not rejoin in time are out; static ones stay until their
        // session expires.
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            tracing::info!(group = %self.id, member = %id, "member did not rejoin in time; removed");
            self.remove_member_only(&id);
        }
        let leader_joined = self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .is_some_and(|m| m.join_waiter.is_some());
        if !leader_joined {
            self.leader = self
                .members
                .values()
                .find(|m| m.join_waiter.is_some())
                .or_else(|| self.members.values().next())
                .map(|m| m.id.clone());
        }
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.state = GroupState::Empty;
            tracing::info!(group = %self.id, generation = self.generation, "group is empty");
            match ctx.append(vec![self.metadata_record(None)]) {
                Ok(wait) => spawn_logged(wait, self.id.clone(), "empty group metadata"),
                Err(e) => {
                    tracing::warn!(group = %self.id, error = %e, "cannot write empty group metadata")
                }
            }
            return;
        }
        self.protocol = self.select_protocol();
        self.state = GroupState::CompletingRebalance;
        tracing::info!(group = %self.id, generation = self.generation, members = self.members.len(), protocol = ?self.protocol, "rebalance completed; awaiting assignment");
        let leader = self.leader.clone().unwrap_or_default();
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let response = self.current_join_response(&id, id == leader);
            if let Some(m) = self.members.get_mut(&id) {
                m.session_deadline = now + m.session();
                if let Some(w) = m.join_waiter.take() {
                    let _ = w.send(response);
                }
            }
        }
    }

    /// Removes a member without rebalancing; answers its waiting requests.
    fn remove_member_only(&mut self, id: &str) {
        let Some(mut m) = self.members.shift_remove(id) else {
            return;
        };
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(join_error(id, GroupError::UnknownMemberId));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(sync_error(GroupError::UnknownMemberId));
        }
        if let Some(iid) = &m.instance_id {
            if self.static_members.get(iid).is_some_and(|x| x == id) {
                self.static_members.remove(iid);
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = self.members.keys().next().cloned();
        }
    }

    /// Removes a member (left or expired) and rebalances as Kafka does.
    fn remove_member(&mut self, ctx: &Ctx, now: Instant, id: &str) {
        self.remove_member_only(id);
        match self.state {
            GroupState::Dead | GroupState::Empty => {}
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance(ctx, now)
            }
            GroupState::PreparingRebalance => self.try_complete_join(ctx, now),
        }
    }

    // ---- timers ----

    /// The earliest time something may expire.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut next = self.rebalance.map(|r| r.deadline);
        let mut consider = |t: Instant| {
            if next.is_none_or(|n| t < n) {
                next = Some(t);
            }
        };
        for t in self.pending.values() {
            consider(*t);
        }
        for m in self.members.values() {
            if m.join_waiter.is_none() {
                consider(m.session_deadline);
            }
        }
        next
    }

    pub fn on_timer(&mut self, ctx: &Ctx, now: Instant) {
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.pending.remove(&id);
            tracing::debug!(group = %self.id, member = %id, "pending member did not rejoin");
            self.try_complete_join(ctx, now);
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.session_deadline <= now)
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            self.remove_member(ctx, now, &id);
        }
        if let Some(r) = self.rebalance {
            if r.deadline <= now && self.state == GroupState::PreparingRebalance {
                if r.initial && self.new_member_added && !r.remaining.is_zero() {
                    self.new_member_added = false;
                    let delay = Duration::from_millis(ctx.config.initial_rebalance_delay_ms)
                        .min(r.remaining);
                    // From the deadline, not from a late wake-up.
                    self.rebalance = Some(Rebalance {
                        deadline: r.deadline + delay,
                        initial: true,
                        remaining: r.remaining.saturating_sub(delay),
                    });
                } else {
                    self.complete_join(ctx, now);
                }
            }
        }
    }

    // ---- JoinGroup ----

    pub fn join(&mut self, ctx: &Ctx, now: Instant, req: &JoinRequest) -> JoinStep {
        if self.state == GroupState::Dead {
            return JoinStep::Done(join_error(
                &req.member_id,
                GroupError::CoordinatorNotAvailable,
            ));
        }
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            return JoinStep::Done(join_error(
                &req.member_id,
                GroupError::InconsistentGroupProtocol,
            ));
        }
        if req.member_id.is_empty() {
            let new_id = format!("{}-{}", req.client_id, uuid::Uuid::new_v4());
            if let Some(iid) = &req.group_instance_id {
                if let Some(old) = self.static_members.get(iid).cloned() {
                    if self.members.contains_key(&old) {
                        return self.replace_static_member(ctx, now, &old, new_id, req);
                    }
                }
                return self.add_member_and_rebalance(ctx, now, new_id, req);
            }
            if req.require_known_member_id {
                let session = Duration::from_millis(req.session_timeout_ms.max(0) as u64);
                self.pending.insert(new_id.clone(), now + session);
                return JoinStep::Done(join_error(&new_id, GroupError::MemberIdRequired));
            }
            return self.add_member_and_rebalance(ctx, now, new_id, req);
        }
        if self.pending.remove(&req.member_id).is_some() {
            return self.add_member_and_rebalance(ctx, now, req.member_id.clone(), req);
        }
        if self.is_static_fenced(req.group_instance_id.as_deref(), &req.member_id) {
            return JoinStep::Done(join_error(&req.member_id, GroupError::FencedInstanceId));
        }
        let Some(member) = self.members.get(&req.member_id) else {
            return JoinStep::Done(join_error(&req.member_id, GroupError::UnknownMemberId));
        };
        let is_leader = self.leader.as_deref() == Some(req.member_id.as_str());
        let same = member.matches(&req.protocols);
        match self.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(ctx, now, req),
            GroupState::CompletingRebalance if same => {
                // Same metadata: repeat this generation's answer.
                JoinStep::Done(self.current_join_response(&req.member_id, is_leader))
            }
            GroupState::CompletingRebalance => self.update_member_and_rebalance(ctx, now, req),
            // A leader's join forces a rebalance (it may have seen metadata change).
            GroupState::Stable if is_leader || !same => {
                self.update_member_and_rebalance(ctx, now, req)
            }
            GroupState::Stable => JoinStep::Done(self.current_join_response(&req.member_id, false)),
            GroupState::Empty | GroupState::Dead => {
                JoinStep::Done(join_error(&req.member_id, GroupError::UnknownMemberId))
            }
        }
    }

    fn new_member(&self, id: String, req: &JoinRequest, now: Instant) -> Member {
        Member {
            id,
            instance_id: req.group_instance_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            session_timeout_ms: req.session_timeout_ms,
            protocols: req.protocols.clone(),
            assignment: Bytes::new(),
            join_waiter: None,
            sync_waiter: None,
            session_deadline: now + Duration::from_millis(req.session_timeout_ms.max(0) as u64),
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        ctx: &Ctx,
        now: Instant,
        id: String,
        req: &JoinRequest,
    ) -> JoinStep {
        let (tx, rx) = oneshot::channel();
        let mut member = self.new_member(id.clone(), req, now);
        member.join_waiter = Some(tx);
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(id.clone());
        }
        if self.state == GroupState::PreparingRebalance && self.generation == 0 {
            self.new_member_added = true;
        }
        if let Some(iid) = &req.group_instance_id {
            self.static_members.insert(iid.clone(), id.clone());
        }
        self.members.insert(id, member);
        self.maybe_prepare_rebalance(ctx, now);
        JoinStep::Wait(rx)
    }

    fn update_member_and_rebalance(
        &mut self,
        ctx: &Ctx,
        now: Instant,
        req: &JoinRequest,
    ) -> JoinStep {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(&req.member_id) {
            m.protocols = req.protocols.clone();
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            m.session_timeout_ms = req.session_timeout_ms;
            m.client_id = req.client_id.clone();
            m.client_host = req.client_host.clone();
            if let Some(old) = m.join_waiter.replace(tx) {
                // A repeated join (the client gave up on the first): answer the old one.
                let _ = old.send(join_error(&req.member_id, GroupError::RebalanceInProgress));
            }
        }
        self.maybe_prepare_rebalance(ctx, now);
        JoinStep::Wait(rx)
    }

    /// KIP-345: a known group.instance.id joins with an empty member id: the new member id
    /// replaces the old one, which is fenced from now on.
    fn replace_static_member(
        &mut self,
        ctx: &Ctx,
        now: Instant,
        old_id: &str,
        new_id: String,
        req: &JoinRequest,
    ) -> JoinStep {
        let Some(mut member) = self.members.shift_remove(old_id) else {
            return self.add_member_and_rebalance(ctx, now, new_id, req);
        };
        let old_leader = self.leader.clone().unwrap_or_default();
        if let Some(w) = member.join_waiter.take() {
            let _ = w.send(join_error(old_id, GroupError::FencedInstanceId));
        }
        if let Some(w) = member.sync_waiter.take() {
            let _ = w.send(sync_error(GroupError::FencedInstanceId));
        }
        member.id = new_id.clone();
        member.protocols = req.protocols.clone();
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.session_timeout_ms = req.session_timeout_ms;
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        member.session_deadline = now + member.session();
        if let Some(iid) = &req.group_instance_id {
            self.static_members.insert(iid.clone(), new_id.clone());
        }
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        tracing::info!(group = %self.id, old = %old_id, new = %new_id, instance = ?req.group_instance_id, "static member replaced");
        match self.state {
            GroupState::Stable => {
                self.members.insert(new_id.clone(), member);
                if self.protocol.is_some() && self.select_protocol() == self.protocol {
                    // No rebalance: persist the new member id, then hand back the current
                    // generation; the old leader id keeps this member from assigning.
                    let mut response = self.current_join_response(&new_id, false);
                    response.leader = old_leader;
                    return match ctx.append(vec![self.metadata_record(None)]) {
                        Ok(wait) => JoinStep::AfterWrite(wait, response),
                        Err(e) => JoinStep::Done(join_error(&new_id, e)),
                    };
                }
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.members.get_mut(&new_id) {
                    m.join_waiter = Some(tx);
                }
                self.maybe_prepare_rebalance(ctx, now);
                JoinStep::Wait(rx)
            }
            _ => {
                let (tx, rx) = oneshot::channel();
                member.join_waiter = Some(tx);
                self.members.insert(new_id, member);
                if self.state == GroupState::CompletingRebalance {
                    // The leader may be assigning to the old member id: start over.
                    self.prepare_rebalance(ctx, now);
                }
                self.maybe_prepare_rebalance(ctx, now);
                JoinStep::Wait(rx)
            }
        }
    }

    // ---- SyncGroup ----

    pub fn sync(&mut self, ctx: &Ctx, now: Instant, req: &SyncRequest) -> SyncStep {
        if self.state == GroupState::Dead {
            return SyncStep::Done(sync_error(GroupError::CoordinatorNotAvailable));
        }
        if self.is_static_fenced(req.group_instance_id.as_deref(), &req.member_id) {
            return SyncStep::Done(sync_error(GroupError::FencedInstanceId));
        }
        if !self.members.contains_key(&req.member_id) {
            return SyncStep::Done(sync_error(GroupError::UnknownMemberId));
        }
        if req.generation_id != self.generation {
            return SyncStep::Done(sync_error(GroupError::IllegalGeneration));
        }
        let type_mismatch = req
            .protocol_type
            .as_ref()
            .is_some_and(|t| self.protocol_type.as_ref() != Some(t));
        let name_mismatch = req
            .protocol_name
            .as_ref()
            .is_some_and(|n| self.protocol.as_ref() != Some(n));
        if type_mismatch || name_mismatch {
            return SyncStep::Done(sync_error(GroupError::InconsistentGroupProtocol));
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => {
                SyncStep::Done(sync_error(GroupError::UnknownMemberId))
            }
            GroupState::PreparingRebalance => {
                SyncStep::Done(sync_error(GroupError::RebalanceInProgress))
            }
            GroupState::Stable => {
                let m = &mut self.members[&req.member_id];
                m.session_deadline = now + m.session();
                SyncStep::Done(SyncResponse {
                    error: None,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol.clone(),
                    assignment: m.assignment.clone(),
                })
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                let m = &mut self.members[&req.member_id];
                m.session_deadline = now + m.session();
                if let Some(old) = m.sync_waiter.replace(tx) {
                    let _ = old.send(sync_error(GroupError::RebalanceInProgress));
                }
                if self.leader.as_deref() != Some(req.member_id.as_str()) {
                    return SyncStep::Wait(rx);
                }
                let assignments: HashMap<String, Bytes> = req
                    .assignments
                    .iter()
                    .filter(|(id, _)| self.members.contains_key(id))
                    .cloned()
                    .collect();
                match ctx.append(vec![self.metadata_record(Some(&assignments))]) {
                    Ok(wait) => SyncStep::Write {
                        wait,
                        generation: self.generation,
                        assignments,
                        rx,
                    },
                    Err(e) => {
                        self.reset_assignments(e);
                        self.maybe_prepare_rebalance(ctx, now);
                        SyncStep::Wait(rx)
                    }
                }
            }
        }
    }

    /// The leader's assignment write finished: on success every member gets its share and
    /// the group is Stable; on failure everyone gets the error and the group rebalances.
    pub fn on_assignment_written(
        &mut self,
        ctx: &Ctx,
        now: Instant,
        generation: i32,
        assignments: HashMap<String, Bytes>,
        result: Result<(), GroupError>,
    ) {
        if self.state != GroupState::CompletingRebalance || self.generation != generation {
            return;
        }
        match result {
            Ok(()) => {
                let protocol_type = self.protocol_type.clone();
                let protocol = self.protocol.clone();
                for m in self.members.values_mut() {
                    m.assignment = assignments.get(&m.id).cloned().unwrap_or_default();
                    if let Some(w) = m.sync_waiter.take() {
                        let _ = w.send(SyncResponse {
                            error: None,
                            protocol_type: protocol_type.clone(),
                            protocol_name: protocol.clone(),
                            assignment: m.assignment.clone(),
                        });
                    }
                }
                self.state = GroupState::Stable;
                tracing::info!(group = %self.id, generation, "group is stable");
            }
            Err(e) => {
                self.reset_assignments(e);
                self.maybe_prepare_rebalance(ctx, now);
            }
        }
    }

    // ---- Heartbeat / LeaveGroup ----

    pub fn heartbeat(
        &mut self,
        now: Instant,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if self.is_static_fenced(instance_id, member_id) {
            return Err(GroupError::FencedInstanceId);
        }
        let Some(m) = self.members.get_mut(member_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
            GroupState::CompletingRebalance | GroupState::Stable => {
                m.session_deadline = now + m.session();
                Ok(())
            }
            GroupState::PreparingRebalance => {
                m.session_deadline = now + m.session();
                Err(GroupError::RebalanceInProgress)
            }
        }
    }

    pub fn leave(
        &mut self,
        ctx: &Ctx,
        now: Instant,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if let Some(iid) = instance_id {
            let Some(known) = self.static_members.get(iid).cloned() else {
                return Err(GroupError::UnknownMemberId);
            };
            if !member_id.is_empty() && known != member_id {
                return Err(GroupError::FencedInstanceId);
            }
            tracing::info!(group = %self.id, member = %known, instance = iid, "static member left");
            self.remove_member(ctx, now, &known);
            return Ok(());
        }
        if self.pending.remove(member_id).is_some() {
            self.try_complete_join(ctx, now);
            return Ok(());
        }
        if !self.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        tracing::info!(group = %self.id, member = %member_id, "member left");
        self.remove_member(ctx, now, member_id);
        Ok(())
    }

    // ---- offsets ----

    /// Kafka's generation checks for OffsetCommit. `Ok` means the commit may be written.
    pub fn check_commit(
        &mut self,
        now: Instant,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if self.is_static_fenced(instance_id, member_id) {
            return Err(GroupError::FencedInstanceId);
        }
        if generation < 0 && self.state == GroupState::Empty {
            // Not using Kafka's group management: offsets storage only.
            return Ok(());
        }
        let Some(m) = self.members.get_mut(member_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        match self.state {
            // Allowed while preparing: the heartbeat tells the member to rejoin.
            GroupState::Stable | GroupState::PreparingRebalance => {
                m.session_deadline = now + m.session();
                Ok(())
            }
            GroupState::CompletingRebalance => Err(GroupError::RebalanceInProgress),
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
        }
    }

    /// Topics the members subscribe to, from their consumer-protocol metadata; `None` if
    /// that cannot be known (another protocol type, or unparsable metadata).
    pub fn subscribed_topics(&self) -> Option<Vec<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return if self.members.is_empty() {
                Some(Vec::new())
            } else {
                None
            };
        }
        let protocol = self.protocol.clone().unwrap_or_default();
        let mut topics = Vec::new();
        for m in self.members.values() {
            topics.extend(crate::consumer_protocol::subscribed_topics(
                &m.metadata(&protocol),
            )?);
        }
        Some(topics)
    }

    pub fn describe(&self) -> GroupDescription {
        let stable = self.state == GroupState::Stable;
        let protocol = self.protocol.clone().unwrap_or_default();
        GroupDescription {
            group_id: self.id.clone(),
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: self
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        }
    }
}
