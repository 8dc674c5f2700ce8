//! The group coordinator: the groups of the `__consumer_offsets` partitions this node
//! leads. Each led partition is a shard, loaded by replaying the partition when this node
//! becomes its leader (COORDINATOR_LOAD_IN_PROGRESS meanwhile) and dropped when it stops
//! leading it (NOT_COORDINATOR). Every group has its own mutex and timer task; no lock is
//! held across an await.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use arctern_core::{Broker, CoreError};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::api::*;
use crate::config::GroupConfig;
use crate::error::GroupError;
use crate::group::{Ctx, Group, JoinStep, SyncStep};
use crate::log::{AppendWait, BrokerOffsetsLog, KeyValue, OffsetsLog, OFFSETS_TOPIC};
use crate::records::{self, OffsetValue, RecordKey};

/// How often leadership is re-checked besides metadata changes (reconcile runs after
/// the metadata change is applied, so the first look may be too early).
const LEADERSHIP_TICK: Duration = Duration::from_millis(500);

/// Kafka's limit on group ids is the string encoding's (i16 length).
const MAX_GROUP_ID_BYTES: usize = i16::MAX as usize;

pub(crate) struct GroupHandle {
    group: Mutex<Group>,
    wake: Notify,
}

impl GroupHandle {
    fn lock(&self) -> MutexGuard<'_, Group> {
        // A panic while holding a group lock leaves the group as it was; keep serving.
        self.group.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Shard {
    partition: i32,
    epoch: i32,
    groups: Mutex<HashMap<String, Arc<GroupHandle>>>,
}

impl Shard {
    fn groups(&self) -> MutexGuard<'_, HashMap<String, Arc<GroupHandle>>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }
}

enum ShardState {
    Loading { epoch: i32 },
    Active(Arc<Shard>),
}

pub struct GroupCoordinator {
    config: GroupConfig,
    log: Arc<dyn OffsetsLog>,
    broker: Option<Arc<Broker>>,
    /// Partitions of the offsets topic, for group placement.
    partitions: AtomicI32,
    shards: Mutex<HashMap<i32, ShardState>>,
    /// Serializes creation of the offsets topic.
    creating: tokio::sync::Mutex<()>,
    /// Wakes the leadership loop (a request found a partition led here but not loaded).
    leadership_check: Arc<Notify>,
}

impl std::fmt::Debug for GroupCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCoordinator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl GroupCoordinator {
    /// The coordinator over a broker: follows the leadership of `__consumer_offsets`
    /// partitions. Call inside tokio.
    pub fn start(broker: Arc<Broker>, config: GroupConfig) -> Arc<GroupCoordinator> {
        let log = Arc::new(BrokerOffsetsLog::new(
            Arc::clone(&broker),
            Duration::from_millis(config.offsets_commit_timeout_ms),
        ));
        let partitions = broker
            .topic(OFFSETS_TOPIC)
            .map_or(config.offsets_topic_num_partitions, |t| t.partition_count());
        let coordinator = Arc::new(GroupCoordinator {
            partitions: AtomicI32::new(partitions.max(1)),
            config,
            log,
            broker: Some(Arc::clone(&broker)),
            shards: Mutex::new(HashMap::new()),
            creating: tokio::sync::Mutex::new(()),
            leadership_check: Arc::new(Notify::new()),
        });
        let weak = Arc::downgrade(&coordinator);
        let wake = Arc::clone(&coordinator.leadership_check);
        let mut changes = broker.subscribe_metadata();
        tokio::spawn(async move {
            loop {
                {
                    let Some(c) = weak.upgrade() else { return };
                    if c.broker.as_ref().is_some_and(|b| b.is_shutting_down()) {
                        return;
                    }
                    c.reconcile_leadership();
                }
                tokio::select! {
                    changed = changes.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                    _ = tokio::time::sleep(LEADERSHIP_TICK) => {}
                    _ = wake.notified() => {}
                }
            }
        });
        coordinator
    }

    /// A coordinator over any log, whose partitions are loaded by [`Self::load_partition`]
    /// (tests, and tools that replay an offsets log).
    pub fn with_log(config: GroupConfig, log: Arc<dyn OffsetsLog>) -> Arc<GroupCoordinator> {
        Arc::new(GroupCoordinator {
            partitions: AtomicI32::new(config.offsets_topic_num_partitions.max(1)),
            config,
            log,
            broker: None,
            shards: Mutex::new(HashMap::new()),
            creating: tokio::sync::Mutex::new(()),
            leadership_check: Arc::new(Notify::new()),
        })
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    fn shards(&self) -> MutexGuard<'_, HashMap<i32, ShardState>> {
        self.shards.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The offsets partition holding `group_id`.
    pub fn partition_for(&self, group_id: &str) -> i32 {
        records::partition_for(group_id, self.partitions.load(Ordering::Acquire))
    }

    // ---- leadership ----

    /// Loads the offsets partitions this node now leads (or leads at a new epoch) and drops
    /// the ones it no longer leads.
    fn reconcile_leadership(self: &Arc<Self>) {
        let Some(broker) = &self.broker else { return };
        let Some(topic) = broker.topic(OFFSETS_TOPIC) else {
            self.unload_all();
            return;
        };
        self.partitions
            .store(topic.partition_count().max(1), Ordering::Release);
        let mut led = HashMap::new();
        for index in 0..topic.partition_count() {
            if let Ok(p) = broker.partition(OFFSETS_TOPIC, index) {
                if p.is_leader() {
                    led.insert(index, p.leader_epoch());
                }
            }
        }
        let mut to_load = Vec::new();
        {
            let mut shards = self.shards();
            let current: Vec<(i32, i32)> = shards
                .iter()
                .map(|(p, s)| {
                    let epoch = match s {
                        ShardState::Loading { epoch } => *epoch,
                        ShardState::Active(shard) => shard.epoch,
                    };
                    (*p, epoch)
                })
                .collect();
            for (p, epoch) in current {
                if led.get(&p) != Some(&epoch) {
                    if let Some(ShardState::Active(shard)) = shards.remove(&p) {
                        tracing::info!(
                            partition = p,
                            epoch,
                            "no longer coordinator for offsets partition; unloading"
                        );
                        close_shard(&shard);
                    } else {
                        shards.remove(&p);
                    }
                }
            }
            for (p, epoch) in led {
                if let std::collections::hash_map::Entry::Vacant(e) = shards.entry(p) {
                    e.insert(ShardState::Loading { epoch });
                    to_load.push((p, epoch));
                }
            }
        }
        for (p, epoch) in to_load {
            let c = Arc::clone(self);
            tokio::spawn(async move {
                let log = Arc::clone(&c.log);
                let read = tokio::task::spawn_blocking(move || log.read_all(p)).await;
                match read {
                    Ok(Ok(records)) => c.install_shard(p, epoch, records),
                    Ok(Err(e)) => {
                        tracing::warn!(partition = p, epoch, error = %e, "loading offsets partition failed; will retry");
                        c.forget_loading(p, epoch);
                    }
                    Err(e) => {
                        tracing::warn!(partition = p, error = %e, "offsets load task failed");
                        c.forget_loading(p, epoch);
                    }
                }
            });
        }
    }

    fn forget_loading(&self, p: i32, epoch: i32) {
        let mut shards = self.shards();
        if matches!(shards.get(&p), Some(ShardState::Loading { epoch: e }) if *e == epoch) {
            shards.remove(&p);
        }
    }

    fn unload_all(&self) {
        let drained: Vec<ShardState> = self.shards().drain().map(|(_, s)| s).collect();
        for s in drained {
            if let ShardState::Active(shard) = s {
                close_shard(&shard);
            }
        }
    }

    /// Loads a partition from the log and serves it (what a leadership gain does).
    pub fn load_partition(self: &Arc<Self>, partition: i32, epoch: i32) -> Result<(), GroupError> {
        self.shards()
            .insert(partition, ShardState::Loading { epoch });
        let records = match self.log.read_all(partition) {
            Ok(r) => r,
            Err(e) => {
                self.forget_loading(partition, epoch);
                return Err(e);
            }
        };
        self.install_shard(partition, epoch, records);
        Ok(())
    }

    /// Stops serving a partition (what a leadership loss does).
    pub fn unload_partition(&self, partition: i32) {
        if let Some(ShardState::Active(shard)) = self.shards().remove(&partition) {
            close_shard(&shard);
        }
    }

    fn install_shard(self: &Arc<Self>, partition: i32, epoch: i32, records: Vec<KeyValue>) {
        let now = Instant::now();
        let count = records.len();
        let mut groups: HashMap<String, Group> = HashMap::new();
        for kv in records {
            let key = match records::decode_key(&kv.key) {
                Ok(k) => k,
                Err(e) => {
                    tracing::warn!(partition, error = %e, "skipping undecodable offsets key");
                    continue;
                }
            };
            match key {
                RecordKey::Offset {
                    group,
                    topic,
                    partition: tp,
                } => {
                    let g = groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group));
                    match kv.value.as_deref().map(records::decode_offset_value) {
                        None => {
                            g.offsets.remove(&(topic, tp));
                        }
                        Some(Ok(v)) => {
                            g.offsets.insert((topic, tp), v);
                        }
                        Some(Err(e)) => {
                            tracing::warn!(partition, error = %e, "skipping undecodable offset value")
                        }
                    }
                }
                RecordKey::Group { group } => {
                    match kv.value.as_deref().map(records::decode_group_value) {
                        None => {
                            if let Some(g) = groups.get_mut(&group) {
                                g.load_metadata(None, now);
                                if g.offsets.is_empty() {
                                    groups.remove(&group);
                                }
                            }
                        }
                        Some(Ok(v)) => groups
                            .entry(group.clone())
                            .or_insert_with(|| Group::new(&group))
                            .load_metadata(Some(v), now),
                        Some(Err(e)) => {
                            tracing::warn!(partition, error = %e, "skipping undecodable group metadata")
                        }
                    }
                }
                RecordKey::Other(_) => {}
            }
        }
        let shard = Arc::new(Shard {
            partition,
            epoch,
            groups: Mutex::new(HashMap::new()),
        });
        let group_count = groups.len();
        {
            let mut map = shard.groups();
            for (id, g) in groups {
                map.insert(id, self.spawn_group(&shard, g));
            }
        }
        let mut shards = self.shards();
        match shards.get(&partition) {
            Some(ShardState::Loading { epoch: e }) if *e == epoch => {
                shards.insert(partition, ShardState::Active(shard));
                if group_count > 0 {
                    tracing::info!(
                        partition,
                        epoch,
                        records = count,
                        groups = group_count,
                        "loaded offsets partition; coordinating its groups"
                    );
                } else {
                    tracing::debug!(
                        partition,
                        epoch,
                        records = count,
                        "loaded offsets partition"
                    );
                }
            }
            _ => close_shard(&shard),
        }
    }

    /// Wraps a group in its handle and starts its timer task.
    fn spawn_group(self: &Arc<Self>, shard: &Arc<Shard>, group: Group) -> Arc<GroupHandle> {
        let handle = Arc::new(GroupHandle {
            group: Mutex::new(group),
            wake: Notify::new(),
        });
        let weak_handle = Arc::downgrade(&handle);
        let weak_self = Arc::downgrade(self);
        let (partition, epoch) = (shard.partition, shard.epoch);
        tokio::spawn(group_timer(weak_self, weak_handle, partition, epoch));
        handle
    }

    fn ctx(&self, partition: i32, epoch: i32) -> Ctx<'_> {
        Ctx {
            log: self.log.as_ref(),
            partition,
            epoch,
            config: &self.config,
        }
    }

    // ---- lookups ----

    fn shard_for(&self, group_id: &str) -> Result<Arc<Shard>, GroupError> {
        if group_id.len() > MAX_GROUP_ID_BYTES {
            return Err(GroupError::InvalidGroupId);
        }
        let p = self.partition_for(group_id);
        match self.shards().get(&p) {
            Some(ShardState::Active(s)) => Ok(Arc::clone(s)),
            Some(ShardState::Loading { .. }) => Err(GroupError::CoordinatorLoadInProgress),
            None => {
                // Led here but not noticed yet (the leadership loop runs after reconcile):
                // loading is imminent, so the client should retry here, not look elsewhere.
                let leads = self
                    .broker
                    .as_ref()
                    .and_then(|b| b.partition(OFFSETS_TOPIC, p).ok())
                    .is_some_and(|part| part.is_leader());
                if leads {
                    self.leadership_check.notify_one();
                    Err(GroupError::CoordinatorLoadInProgress)
                } else {
                    Err(GroupError::NotCoordinator)
                }
            }
        }
    }

    fn existing(
        &self,
        group_id: &str,
    ) -> Result<(Arc<Shard>, Option<Arc<GroupHandle>>), GroupError> {
        let shard = self.shard_for(group_id)?;
        let g = shard.groups().get(group_id).cloned();
        Ok((shard, g))
    }

    fn get_or_create(
        self: &Arc<Self>,
        group_id: &str,
    ) -> Result<(Arc<Shard>, Arc<GroupHandle>), GroupError> {
        let shard = self.shard_for(group_id)?;
        let handle = {
            let mut groups = shard.groups();
            match groups.get(group_id) {
                Some(h) => Arc::clone(h),
                None => {
                    let h = self.spawn_group(&shard, Group::new(group_id));
                    groups.insert(group_id.to_string(), Arc::clone(&h));
                    h
                }
            }
        };
        Ok((shard, handle))
    }

    // ---- FindCoordinator ----

    /// The broker leading the group's offsets partition, creating the offsets topic first
    /// if it does not exist.
    pub async fn find_coordinator(&self, group_id: &str) -> Result<CoordinatorNode, GroupError> {
        let Some(broker) = &self.broker else {
            return Err(GroupError::CoordinatorNotAvailable);
        };
        let Some(topic) = broker.topic(OFFSETS_TOPIC) else {
            // As Kafka: create the topic and answer COORDINATOR_NOT_AVAILABLE; the client
            // asks again once leaders are in place (so it never reaches a coordinator that
            // does not know yet that it is one).
            self.create_offsets_topic(broker).await?;
            return Err(GroupError::CoordinatorNotAvailable);
        };
        self.partitions
            .store(topic.partition_count().max(1), Ordering::Release);
        let p = records::partition_for(group_id, topic.partition_count());
        let state = topic
            .partitions
            .get(p as usize)
            .ok_or(GroupError::CoordinatorNotAvailable)?;
        let cluster = broker.cluster();
        let b = cluster
            .brokers
            .get(&state.leader)
            .filter(|b| !b.fenced)
            .ok_or(GroupError::CoordinatorNotAvailable)?;
        if b.broker_id == broker.node_id()
            && !broker
                .partition(OFFSETS_TOPIC, p)
                .is_ok_and(|part| part.is_leader())
        {
            // The metadata names this node but the replica has not taken leadership yet.
            return Err(GroupError::CoordinatorNotAvailable);
        }
        Ok(CoordinatorNode {
            node_id: b.broker_id,
            host: b.host.clone(),
            port: i32::from(b.port),
        })
    }

    /// Creates `__consumer_offsets` with `offsets.topic.num.partitions` partitions and a
    /// replication factor of `offsets.topic.replication.factor` capped at the registered
    /// brokers (so a single node works without configuration), never deleting by
    /// retention (`retention.ms=-1`, `retention.bytes=-1`: the log is not compacted).
    async fn create_offsets_topic(
        &self,
        broker: &Broker,
    ) -> Result<arctern_core::Topic, GroupError> {
        let _guard = self.creating.lock().await;
        if let Some(t) = broker.topic(OFFSETS_TOPIC) {
            return Ok(t);
        }
        let registered = broker.cluster().brokers.len().max(1);
        let rf = i64::from(self.config.offsets_topic_replication_factor)
            .min(registered as i64)
            .max(1) as i16;
        let configs = [
            ("retention.ms".to_string(), "-1".to_string()),
            ("retention.bytes".to_string(), "-1".to_string()),
        ];
        match broker
            .create_topic(
                OFFSETS_TOPIC,
                self.config.offsets_topic_num_partitions,
                rf,
                &configs,
                false,
            )
            .await
        {
            Ok(t) => {
                tracing::info!(
                    partitions = t.partition_count(),
                    replication_factor = rf,
                    "created {OFFSETS_TOPIC}"
                );
                Ok(broker.topic(OFFSETS_TOPIC).unwrap_or(t))
            }
            Err(CoreError::TopicAlreadyExists(_)) => broker
                .topic(OFFSETS_TOPIC)
                .ok_or(GroupError::CoordinatorNotAvailable),
            Err(e) => {
                tracing::warn!(error = %e, "cannot create {OFFSETS_TOPIC}");
                Err(GroupError::CoordinatorNotAvailable)
            }
        }
    }

    // ---- membership ----

    pub async fn join_group(self: &Arc<Self>, req: JoinRequest) -> JoinResponse {
        let fail = |e| JoinResponse {
            error: Some(e),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: req.member_id.clone(),
            members: Vec::new(),
        };
        if req.group_id.is_empty() {
            return fail(GroupError::InvalidGroupId);
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return fail(GroupError::InvalidSessionTimeout);
        }
        let found = if req.member_id.is_empty() {
            self.get_or_create(&req.group_id).map(|(s, h)| (s, Some(h)))
        } else {
            self.existing(&req.group_id)
        };
        let (shard, handle) = match found {
            Ok((s, Some(h))) => (s, h),
            Ok((_, None)) => return fail(GroupError::UnknownMemberId),
            Err(e) => return fail(e),
        };
        let step = {
            let mut g = handle.lock();
            if g.closed {
                return fail(GroupError::NotCoordinator);
            }
            g.join(
                &self.ctx(shard.partition, shard.epoch),
                Instant::now(),
                &req,
            )
        };
        handle.wake.notify_one();
        match step {
            JoinStep::Done(r) => r,
            JoinStep::Wait(rx) => rx
                .await
                .unwrap_or_else(|_| fail(GroupError::NotCoordinator)),
            JoinStep::AfterWrite(wait, r) => match wait.await {
                Ok(()) => r,
                Err(e) => fail(e),
            },
        }
    }

    pub async fn sync_group(self: &Arc<Self>, req: SyncRequest) -> SyncResponse {
        let fail = |e| SyncResponse {
            error: Some(e),
            protocol_type: None,
            protocol_name: None,
            assignment: Default::default(),
        };
        let (shard, handle) = match self.existing(&req.group_id) {
            Ok((s, Some(h))) => (s, h),
            Ok((_, None)) => return fail(GroupError::UnknownMemberId),
            Err(e) => return fail(e),
        };
        let ctx = self.ctx(shard.partition, shard.epoch);
        let step = {
            let mut g = handle.lock();
            if g.closed {
                return fail(GroupError::NotCoordinator);
            }
            g.sync(&ctx, Instant::now(), &req)
        };
        handle.wake.notify_one();
        let rx = match step {
            SyncStep::Done(r) => return r,
            SyncStep::Wait(rx) => rx,
            SyncStep::Write {
                wait,
                generation,
                assignments,
                rx,
            } => {
                let result = wait.await;
                {
                    let mut g = handle.lock();
                    if !g.closed {
                        g.on_assignment_written(
                            &ctx,
                            Instant::now(),
                            generation,
                            assignments,
                            result,
                        );
                    }
                }
                handle.wake.notify_one();
                rx
            }
        };
        rx.await
            .unwrap_or_else(|_| fail(GroupError::NotCoordinator))
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        let (_, handle) = self.existing(group_id)?;
        let handle = handle.ok_or(GroupError::UnknownMemberId)?;
        let result = {
            let mut g = handle.lock();
            if g.closed {
                return Err(GroupError::NotCoordinator);
            }
            g.heartbeat(Instant::now(), generation_id, member_id, group_instance_id)
        };
        handle.wake.notify_one();
        result
    }

    /// LeaveGroup: the group-level result, then one result per member in request order.
    pub fn leave_group(
        &self,
        group_id: &str,
        members: &[LeavingMember],
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        let (shard, handle) = self.existing(group_id)?;
        let Some(handle) = handle else {
            return Ok(members
                .iter()
                .map(|_| Err(GroupError::UnknownMemberId))
                .collect());
        };
        let ctx = self.ctx(shard.partition, shard.epoch);
        let results = {
            let mut g = handle.lock();
            if g.closed {
                return Err(GroupError::NotCoordinator);
            }
            if g.state == GroupState::Dead {
                return Err(GroupError::CoordinatorNotAvailable);
            }
            let now = Instant::now();
            members
                .iter()
                .map(|m| g.leave(&ctx, now, &m.member_id, m.group_instance_id.as_deref()))
                .collect()
        };
        handle.wake.notify_one();
        Ok(results)
    }

    // ---- offsets ----

    /// OffsetCommit: one result per offset, in request order. The commit is checked and
    /// appended to the offsets partition now, when this is called, so commits take effect
    /// in the order they are made (a connection's requests in the order sent); the
    /// returned future waits until the append is replicated to every in-sync replica,
    /// then applies it to the cache and answers.
    pub fn commit_offsets(
        self: &Arc<Self>,
        req: CommitRequest,
        offsets: Vec<OffsetToCommit>,
    ) -> impl Future<Output = Vec<Result<(), GroupError>>> + Send + 'static {
        let started = self.start_commit(req, offsets);
        async move {
            match started {
                Ok(commit) => commit.finish().await,
                Err(results) => results,
            }
        }
    }

    /// The immediate part of an OffsetCommit: validation and the append. `Err` holds the
    /// final results when nothing was appended.
    fn start_commit(
        self: &Arc<Self>,
        req: CommitRequest,
        offsets: Vec<OffsetToCommit>,
    ) -> Result<StartedCommit, Vec<Result<(), GroupError>>> {
        let all = |e: GroupError| offsets.iter().map(|_| Err(e)).collect::<Vec<_>>();
        if req.group_id.is_empty() {
            return Err(all(GroupError::InvalidGroupId));
        }
        let found = if req.generation_id < 0 {
            self.get_or_create(&req.group_id).map(|(s, h)| (s, Some(h)))
        } else {
            self.existing(&req.group_id)
        };
        let (shard, handle) = match found {
            Ok((s, Some(h))) => (s, h),
            Ok((_, None)) => return Err(all(GroupError::IllegalGeneration)),
            Err(e) => return Err(all(e)),
        };
        let ctx = self.ctx(shard.partition, shard.epoch);
        let now_ms = arctern_core::now_ms();
        let mut results: Vec<Result<(), GroupError>> = Vec::with_capacity(offsets.len());
        let mut written: Vec<(String, i32, OffsetValue)> = Vec::new();
        let wait = {
            let mut g = handle.lock();
            if g.closed {
                return Err(all(GroupError::NotCoordinator));
            }
            if let Err(e) = g.check_commit(
                Instant::now(),
                req.generation_id,
                &req.member_id,
                req.group_instance_id.as_deref(),
            ) {
                return Err(all(e));
            }
            let mut records = Vec::new();
            for o in &offsets {
                let metadata = o.metadata.clone().unwrap_or_default();
                if metadata.len() > self.config.offset_metadata_max_bytes {
                    results.push(Err(GroupError::OffsetMetadataTooLarge));
                    continue;
                }
                let value = OffsetValue {
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata,
                    commit_timestamp: now_ms,
                };
                records.push(KeyValue {
                    key: records::encode_offset_key(&req.group_id, &o.topic, o.partition),
                    value: Some(records::encode_offset_value(&value)),
                });
                written.push((o.topic.clone(), o.partition, value));
                results.push(Ok(()));
            }
            if records.is_empty() {
                return Err(results);
            }
            // The sequence follows the log order: both are taken under the group's lock.
            g.commit_seq += 1;
            ctx.append(records).map(|w| (w, g.commit_seq))
        };
        handle.wake.notify_one();
        Ok(StartedCommit {
            handle,
            wait,
            results,
            written,
        })
    }

    /// OffsetFetch: `topics` None means every committed partition of the group.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<&[(String, Vec<i32>)]>,
    ) -> Result<Vec<CommittedOffset>, GroupError> {
        let (_, handle) = self.existing(group_id)?;
        let none = |topic: &str, partition: i32| CommittedOffset {
            topic: topic.to_string(),
            partition,
            offset: -1,
            leader_epoch: -1,
            metadata: String::new(),
        };
        let found = |topic: &str, partition: i32, v: &OffsetValue| CommittedOffset {
            topic: topic.to_string(),
            partition,
            offset: v.offset,
            leader_epoch: v.leader_epoch,
            metadata: v.metadata.clone(),
        };
        let Some(handle) = handle else {
            return Ok(topics
                .unwrap_or(&[])
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |p| none(t, *p)))
                .collect());
        };
        let g = handle.lock();
        if g.closed {
            return Err(GroupError::NotCoordinator);
        }
        Ok(match topics {
            None => g
                .offsets
                .iter()
                .map(|((t, p), v)| found(t, *p, v))
                .collect(),
            Some(topics) => topics
                .iter()
                .flat_map(|(t, ps)| {
                    ps.iter().map(|p| match g.offsets.get(&(t.clone(), *p)) {
                        Some(v) => found(t, *p, v),
                        None => none(t, *p),
                    })
                })
                .collect(),
        })
    }

    /// OffsetDelete: the group-level result, then one result per (topic, partition).
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        topics: &[(String, Vec<i32>)],
    ) -> Result<Vec<(String, i32, Result<(), GroupError>)>, GroupError> {
        let (shard, handle) = self.existing(group_id)?;
        let handle = handle.ok_or(GroupError::GroupIdNotFound)?;
        let ctx = self.ctx(shard.partition, shard.epoch);
        let mut results = Vec::new();
        let mut deleted = Vec::new();
        let wait = {
            let mut g = handle.lock();
            if g.closed {
                return Err(GroupError::NotCoordinator);
            }
            if g.state == GroupState::Dead {
                return Err(GroupError::GroupIdNotFound);
            }
            let subscribed = g.subscribed_topics();
            if subscribed.is_none() && g.state != GroupState::Empty {
                return Err(GroupError::NonEmptyGroup);
            }
            let mut records = Vec::new();
            for (topic, partitions) in topics {
                let busy = subscribed.as_ref().is_some_and(|s| s.contains(topic));
                for p in partitions {
                    if busy {
                        results.push((topic.clone(), *p, Err(GroupError::GroupSubscribedToTopic)));
                        continue;
                    }
                    if g.offsets.contains_key(&(topic.clone(), *p)) {
                        records.push(KeyValue {
                            key: records::encode_offset_key(group_id, topic, *p),
                            value: None,
                        });
                        deleted.push((topic.clone(), *p));
                    }
                    results.push((topic.clone(), *p, Ok(())));
                }
            }
            if records.is_empty() {
                return Ok(results);
            }
            // Tombstones are ordered with commits: the same sequence as commit_offsets.
            g.commit_seq += 1;
            ctx.append(records).map(|w| (w, g.commit_seq))
        };
        let outcome = match wait {
            Ok((w, seq)) => w.await.map(|()| seq),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(seq) => {
                let mut g = handle.lock();
                for key in deleted {
                    if g.offset_commit_seq.get(&key).is_some_and(|s| *s > seq) {
                        continue; // a commit appended after the tombstone already landed
                    }
                    g.offset_commit_seq.insert(key.clone(), seq);
                    g.offsets.remove(&key);
                }
                Ok(results)
            }
            Err(e) => Err(e),
        }
    }

    // ---- admin ----

    /// ListGroups over the loaded partitions; the error is set while some still load.
    pub fn list_groups(&self, states: &[String]) -> (Option<GroupError>, Vec<GroupListing>) {
        let shards: Vec<Option<Arc<Shard>>> = self
            .shards()
            .values()
            .map(|s| match s {
                ShardState::Active(s) => Some(Arc::clone(s)),
                ShardState::Loading { .. } => None,
            })
            .collect();
        let error = shards
            .iter()
            .any(Option::is_none)
            .then_some(GroupError::CoordinatorLoadInProgress);
        let mut out = Vec::new();
        for shard in shards.into_iter().flatten() {
            let handles: Vec<Arc<GroupHandle>> = shard.groups().values().cloned().collect();
            for h in handles {
                let g = h.lock();
                if g.closed || g.state == GroupState::Dead {
                    continue;
                }
                let name = g.state.name();
                if !states.is_empty() && !states.iter().any(|s| s.eq_ignore_ascii_case(name)) {
                    continue;
                }
                out.push(GroupListing {
                    group_id: g.id.clone(),
                    protocol_type: g.protocol_type.clone().unwrap_or_default(),
                    state: g.state,
                });
            }
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        (error, out)
    }

    /// DescribeGroups for one group; an unknown group is described as Dead (as Kafka does).
    pub fn describe_group(&self, group_id: &str) -> Result<GroupDescription, GroupError> {
        let (_, handle) = self.existing(group_id)?;
        let dead = || GroupDescription {
            group_id: group_id.to_string(),
            state: GroupState::Dead,
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        };
        let Some(handle) = handle else {
            return Ok(dead());
        };
        let g = handle.lock();
        if g.closed {
            return Err(GroupError::NotCoordinator);
        }
        Ok(g.describe())
    }

    /// DeleteGroups for one group: only an empty group can go; its metadata and offsets
    /// are tombstoned.
    pub async fn delete_group(&self, group_id: &str) -> Result<(), GroupError> {
        let (shard, handle) = self.existing(group_id)?;
        let handle = handle.ok_or(GroupError::GroupIdNotFound)?;
        let ctx = self.ctx(shard.partition, shard.epoch);
        let wait = {
            let mut g = handle.lock();
            if g.closed {
                return Err(GroupError::NotCoordinator);
            }
            match g.state {
                GroupState::Dead => return Err(GroupError::GroupIdNotFound),
                GroupState::Empty => {}
                _ => return Err(GroupError::NonEmptyGroup),
            }
            let mut records: Vec<KeyValue> = g
                .offsets
                .keys()
                .map(|(t, p)| KeyValue {
                    key: records::encode_offset_key(group_id, t, *p),
                    value: None,
                })
                .collect();
            records.push(KeyValue {
                key: records::encode_group_key(group_id),
                value: None,
            });
            let wait = ctx.append(records)?;
            g.state = GroupState::Dead;
            g.close();
            shard.groups().remove(group_id);
            wait
        };
        handle.wake.notify_one();
        wait.await
    }
}

fn close_shard(shard: &Shard) {
    let handles: Vec<Arc<GroupHandle>> = shard.groups().drain().map(|(_, h)| h).collect();
    for h in handles {
        h.lock().close();
        h.wake.notify_one();
    }
}

/// Expires sessions, pending members and rebalance deadlines of one group.
async fn group_timer(
    coordinator: Weak<GroupCoordinator>,
    handle: Weak<GroupHandle>,
    partition: i32,
    epoch: i32,
) {
    loop {
        let (deadline, notified) = {
            let Some(h) = handle.upgrade() else { return };
            let g = h.lock();
            if g.closed {
                return;
            }
            (g.next_deadline(), Arc::clone(&h))
        };
        {
            let wake = notified.wake.notified();
            tokio::pin!(wake);
            match deadline {
                Some(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(d) => {}
                        _ = &mut wake => {}
                    }
                }
                None => wake.await,
            }
        }
        drop(notified);
        let (Some(c), Some(h)) = (coordinator.upgrade(), handle.upgrade()) else {
            return;
        };
        let ctx = c.ctx(partition, epoch);
        let mut g = h.lock();
        if g.closed {
            return;
        }
        g.on_timer(&ctx, Instant::now());
    }
}

/// An OffsetCommit whose records are appended; what is left is to wait for them.
struct StartedCommit {
    handle: Arc<GroupHandle>,
    wait: Result<(AppendWait, u64), GroupError>,
    results: Vec<Result<(), GroupError>>,
    written: Vec<(String, i32, OffsetValue)>,
}

impl StartedCommit {
    async fn finish(self) -> Vec<Result<(), GroupError>> {
        let StartedCommit {
            handle,
            wait,
            results,
            written,
        } = self;
        let outcome = match wait {
            Ok((w, seq)) => w.await.map(|()| seq),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(seq) => {
                // Acknowledgements may finish out of order (across connections too); the
                // cache keeps the commit appended last, as a replay of the log would.
                let mut g = handle.lock();
                for (topic, partition, value) in written {
                    let key = (topic, partition);
                    if g.offset_commit_seq.get(&key).is_some_and(|s| *s > seq) {
                        continue; // a later commit of this partition already landed
                    }
                    g.offset_commit_seq.insert(key.clone(), seq);
                    g.offsets.insert(key, value);
                }
                results
            }
            Err(e) => results
                .into_iter()
                .map(|r| match r {
                    Ok(()) => Err(e),
                    other => other,
                })
                .collect(),
        }
    }
}
