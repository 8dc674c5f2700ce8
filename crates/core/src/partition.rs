//! One topic-partition: its log, the group-commit flusher, and the high watermark.
//!
//! Group commit: producers append under the log's write lock (a page-cache write), then
//! wake the partition's flusher and wait for the durable offset to pass their batch. The
//! flusher takes one `fdatasync` for everything appended so far; appends that arrive while
//! it runs are covered by the next one. So N concurrent producers cost ~1 fsync, not N.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use arctern_storage::{BatchHeader, Log, SyncPoint};
use tokio::sync::{watch, Notify};

use crate::config::TopicSettings;
use crate::error::{CoreError, Result};
use crate::now_ms;
use crate::producer_state::{ProducerStates, SequenceCheck, NO_PRODUCER_ID};
use crate::replica::LeaderReplicaState;

/// Lazily appended records (see `Partition::append_lazily`) that make an append ask for a
/// group commit itself; fewer wait for the next one or for `flush_pending`.
const LAZY_FLUSH_RECORDS: u64 = 1024;

/// Producer acknowledgement level (Kafka `acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// acks=0: no response is sent.
    None,
    /// acks=1: the leader has it (durable per the flush policy).
    Leader,
    /// acks=all: every in-sync replica has it (each durable per the flush policy), and
    /// there were at least `min.insync.replicas` of them.
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceOutcome {
    pub base_offset: i64,
    pub log_start_offset: i64,
}

/// An append that has been written but not necessarily acknowledged yet.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    pub outcome: ProduceOutcome,
    pub end_offset: i64,
    leader_epoch: i32,
    acks: Acks,
    min_insync_replicas: i64,
    wait_for_fsync: bool,
}

#[derive(Debug, Clone, Default)]
pub struct FetchedData {
    /// Whole record batches as stored.
    pub bytes: Vec<u8>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

#[derive(Debug, Clone, Copy)]
struct Durable {
    offset: i64,
    /// An fsync failed: the page cache can no longer be trusted, nothing more is acked.
    failed: bool,
}

/// What acks=all waiters watch: they resolve when the high watermark passes their batch
/// and fail when leadership or the in-sync replica count changes under them.
#[derive(Debug, Clone, Copy)]
struct AckState {
    high_watermark: i64,
    leader_epoch: i32,
    is_leader: bool,
    /// ISR members caught up within the lag time (see `LeaderReplicaState::in_sync_count`).
    in_sync: usize,
}

/// This broker's part in the partition, as the metadata quorum last said.
#[derive(Debug)]
enum Role {
    /// Not (yet) told: serves nothing.
    None,
    Leader(Box<LeaderReplicaState>),
    Follower {
        leader: i32,
    },
}

#[derive(Debug)]
struct ReplicaInfo {
    role: Role,
    leader_epoch: i32,
    /// Kafka's partition epoch, the compare-and-set value of ISR changes.
    partition_epoch: i32,
}

/// An ISR change this leader wants the metadata quorum to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

/// At most one log line per partition this often for reads refused as corrupt.
const CORRUPTION_LOG_EVERY_MS: i64 = 10_000;

#[derive(Debug)]
pub struct Partition {
    pub topic: String,
    pub index: i32,
    local_id: i32,
    log: RwLock<Log>,
    settings: RwLock<TopicSettings>,
    replica: Mutex<ReplicaInfo>,
    /// Idempotent producers' sequences; changed only with the log (under the role lock on
    /// the leader, the log lock on followers), derived from the log on open and truncation.
    producers: Mutex<ProducerStates>,
    durable: watch::Sender<Durable>,
    acks: watch::Sender<AckState>,
    high_watermark: AtomicI64,
    /// Bumped by every truncation, so a flush that started before one cannot publish a
    /// durable offset covering data written after it.
    truncations: AtomicU64,
    unflushed_records: AtomicU64,
    /// fdatasync calls made by the flusher (group-commit effectiveness; metrics later).
    fsyncs: AtomicU64,
    /// Bytes appended to the log since open, and the count the last fdatasync covered:
    /// their difference is one group-commit batch's size (metrics).
    appended_bytes: AtomicU64,
    synced_bytes: AtomicU64,
    /// When a read refused corrupt stored data was last logged (ms; at most one line per
    /// `CORRUPTION_LOG_EVERY_MS`, as a consumer retries the same offset).
    corruption_logged_ms: AtomicI64,
    flush_needed: Notify,
    /// Set while an fdatasync of this log is in flight, by the flusher or by a caller
    /// leading the group commit itself (`sync_now`), so two never run at once.
    syncing: AtomicBool,
    /// The flusher found a sync in flight and left; whoever holds `syncing` wakes it on
    /// release, for what was appended meanwhile.
    flusher_turned_away: AtomicBool,
    /// The last caller-led fdatasync was quick, so the next one runs on the caller's
    /// worker thread (see `INLINE_SYNC_LIMIT`).
    sync_inline: AtomicBool,
    closed: AtomicBool,
    /// See `holds_whole_history`.
    whole_history: AtomicBool,
    /// Bumped on every high-watermark or log-end advance of this partition: wakes the
    /// long-poll fetches (consumers and followers) waiting on it, and only those.
    data_changed: watch::Sender<u64>,
}

/// Runs blocking I/O on this thread. Inside a multi-threaded tokio runtime the worker
/// first hands its other tasks to another thread.
fn off_the_runtime<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// A caller-led fdatasync slower than this moves the next one off the runtime
/// (`block_in_place`), so a slow disk stalls only the committing connection. A quick one
/// runs on the worker itself: handing the worker's other tasks to another thread costs
/// more wake-ups than a fast disk's flush takes.
const INLINE_SYNC_LIMIT: Duration = Duration::from_millis(1);

/// Who asks for the group commit that makes an append durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    /// Wake the flusher now.
    Now,
    /// Nobody waits: the flusher is woken once enough records are pending.
    Lazy,
    /// The caller runs `sync_now` itself.
    Caller,
}

/// Holds `Partition::syncing`; on release, wakes a flusher that was turned away.
struct SyncSlot<'a> {
    partition: &'a Partition,
}

impl Drop for SyncSlot<'_> {
    fn drop(&mut self) {
        let p = self.partition;
        p.syncing.store(false, Ordering::SeqCst);
        if p.flusher_turned_away.swap(false, Ordering::SeqCst) {
            p.flush_needed.notify_one();
        }
    }
}

fn lock_poisoned() -> CoreError {
    CoreError::Storage("partition lock poisoned by an earlier panic".into())
}

impl Partition {
    /// Opens (recovering) the log and starts the flusher. Must run inside a tokio runtime.
    /// The partition serves nothing until the metadata makes it a leader or follower.
    pub fn open(
        topic: &str,
        index: i32,
        dir: &std::path::Path,
        settings: TopicSettings,
        local_id: i32,
    ) -> Result<Arc<Partition>> {
        let log = Log::open(dir, settings.log.clone(), now_ms())?;
        let opened_clean = log.opened_clean();
        // Whatever survived in the page cache is made durable before it is exposed.
        log.sync_point().sync()?;
        let end = log.log_end_offset();
        let start = log.log_start_offset();
        let leader_epoch = log.epochs().latest_epoch().unwrap_or(-1);
        let producers = producer_states_of(&log)?;
        let (durable, _) = watch::channel(Durable {
            offset: end,
            failed: false,
        });
        // The high watermark is not persisted: it restarts at the log start and is
        // re-established by the leader from its in-sync replicas (a lone replica at once).
        let (acks, _) = watch::channel(AckState {
            high_watermark: start,
            leader_epoch,
            is_leader: false,
            in_sync: 0,
        });
        let partition = Arc::new(Partition {
            topic: topic.to_string(),
            index,
            local_id,
            log: RwLock::new(log),
            settings: RwLock::new(settings),
            replica: Mutex::new(ReplicaInfo {
                role: Role::None,
                leader_epoch,
                partition_epoch: -1,
            }),
            producers: Mutex::new(producers),
            durable,
            acks,
            high_watermark: AtomicI64::new(start),
            truncations: AtomicU64::new(0),
            unflushed_records: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            appended_bytes: AtomicU64::new(0),
            synced_bytes: AtomicU64::new(0),
            corruption_logged_ms: AtomicI64::new(i64::MIN),
            flush_needed: Notify::new(),
            syncing: AtomicBool::new(false),
            sync_inline: AtomicBool::new(true),
            flusher_turned_away: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            whole_history: AtomicBool::new(opened_clean),
            data_changed: watch::channel(0u64).0,
        });
        tokio::spawn(Arc::clone(&partition).run_flusher());
        Ok(partition)
    }

    fn replica(&self) -> Result<std::sync::MutexGuard<'_, ReplicaInfo>> {
        self.replica.lock().map_err(|_| lock_poisoned())
    }

    pub fn leader_epoch(&self) -> i32 {
        self.replica().map_or(-1, |r| r.leader_epoch)
    }

    /// Whether this replica holds every record appended to its log, durable or not: the
    /// log was closed cleanly last time and has not followed another leader since. False
    /// after kill -9, a power cut or a failover, when records nobody waited for (an AMQP
    /// queue's lazy delivery marks) may be missing.
    pub fn holds_whole_history(&self) -> bool {
        self.whole_history.load(Ordering::Acquire)
    }

    pub fn is_leader(&self) -> bool {
        self.replica()
            .is_ok_and(|r| matches!(r.role, Role::Leader(_)))
    }

    /// The leader this replica follows, if it is a follower.
    pub fn followed_leader(&self) -> Option<(i32, i32)> {
        let r = self.replica().ok()?;
        match r.role {
            Role::Follower { leader } => Some((leader, r.leader_epoch)),
            _ => None,
        }
    }

    /// Checks this replica leads the partition and, if the client named one (>= 0), that
    /// it is at the client's leader epoch (KIP-320 fencing).
    pub fn check_leader(&self, current_leader_epoch: i32) -> Result<()> {
        let r = self.replica()?;
        if !matches!(r.role, Role::Leader(_)) {
            return Err(CoreError::NotLeaderOrFollower(format!(
                "{}-{}: this broker is not the leader",
                self.topic, self.index
            )));
        }
        check_epoch(
            &self.topic,
            self.index,
            r.leader_epoch,
            current_leader_epoch,
        )
    }

    /// Applies leadership from the metadata quorum. Idempotent: the same epoch only
    /// refreshes the committed ISR.
    pub fn become_leader(
        &self,
        leader_epoch: i32,
        partition_epoch: i32,
        replicas: &[i32],
        isr: &[i32],
    ) -> Result<()> {
        let end = self.log_end_offset()?;
        {
            let mut r = self.replica()?;
            let current_epoch = r.leader_epoch;
            match &mut r.role {
                Role::Leader(state) if current_epoch == leader_epoch => {
                    state.apply_isr(isr);
                }
                _ => {
                    let state = LeaderReplicaState::become_leader(
                        self.local_id,
                        leader_epoch,
                        replicas,
                        isr,
                        end,
                        self.high_watermark(),
                        now_ms(),
                    );
                    tracing::info!(topic = %self.topic, partition = self.index, leader_epoch, log_end_offset = end, ?isr, "became leader");
                    r.role = Role::Leader(Box::new(state));
                    r.leader_epoch = leader_epoch;
                }
            }
            r.partition_epoch = partition_epoch;
        }
        self.refresh_high_watermark();
        Ok(())
    }

    /// Applies followership from the metadata quorum. Returns true if the leader or epoch
    /// changed (the caller restarts the fetcher, which truncates first).
    pub fn become_follower(&self, leader: i32, leader_epoch: i32, partition_epoch: i32) -> bool {
        let Ok(mut r) = self.replica() else {
            return false;
        };
        r.partition_epoch = partition_epoch;
        let same = matches!(r.role, Role::Follower { leader: l } if l == leader)
            && r.leader_epoch == leader_epoch;
        if same {
            return false;
        }
        tracing::info!(topic = %self.topic, partition = self.index, leader, leader_epoch, "became follower");
        self.whole_history.store(false, Ordering::Release);
        r.role = Role::Follower { leader };
        r.leader_epoch = leader_epoch;
        drop(r);
        self.publish_ack_state();
        true
    }

    /// Stops serving (no leader known, or no longer a replica here).
    pub fn become_offline(&self, leader_epoch: i32) {
        if let Ok(mut r) = self.replica() {
            if !matches!(r.role, Role::None) {
                tracing::info!(topic = %self.topic, partition = self.index, leader_epoch, "no leader; replica idle");
            }
            r.role = Role::None;
            r.leader_epoch = r.leader_epoch.max(leader_epoch);
        }
        self.publish_ack_state();
    }

    fn publish_ack_state(&self) {
        let Ok(r) = self.replica() else { return };
        let (is_leader, in_sync) = match &r.role {
            Role::Leader(s) => (true, s.in_sync_count(now_ms(), self.lag_max_ms())),
            _ => (false, 0),
        };
        let state = AckState {
            high_watermark: self.high_watermark(),
            leader_epoch: r.leader_epoch,
            is_leader,
            in_sync,
        };
        drop(r);
        self.acks.send_replace(state);
    }

    fn lag_max_ms(&self) -> i64 {
        self.settings()
            .map_or(30_000, |s| s.replica_lag_time_max_ms)
    }

    /// Changes whenever this partition's high watermark or log end advances (for long
    /// polls).
    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.data_changed.subscribe()
    }

    pub fn fsync_count(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    pub fn log_start_offset(&self) -> Result<i64> {
        Ok(self
            .log
            .read()
            .map_err(|_| lock_poisoned())?
            .log_start_offset())
    }

    pub fn log_end_offset(&self) -> Result<i64> {
        Ok(self
            .log
            .read()
            .map_err(|_| lock_poisoned())?
            .log_end_offset())
    }

    pub fn size_bytes(&self) -> Result<u64> {
        Ok(self.log.read().map_err(|_| lock_poisoned())?.size_bytes())
    }

    pub fn apply_settings(&self, settings: TopicSettings) -> Result<()> {
        if *self.settings.read().map_err(|_| lock_poisoned())? == settings {
            return Ok(());
        }
        self.log
            .write()
            .map_err(|_| lock_poisoned())?
            .set_config(settings.log.clone());
        *self.settings.write().map_err(|_| lock_poisoned())? = settings;
        self.flush_needed.notify_one();
        Ok(())
    }

    fn settings(&self) -> Result<TopicSettings> {
        Ok(self.settings.read().map_err(|_| lock_poisoned())?.clone())
    }

    /// Appends producer batches and waits for them to be acknowledgeable per `acks` and
    /// the topic's flush policy.
    pub async fn produce(&self, mut batches: Vec<u8>, acks: Acks) -> Result<ProduceOutcome> {
        let appended = self.append(&mut batches, acks)?;
        if acks != Acks::None {
            self.wait_acknowledgeable(&appended).await?;
        }
        Ok(appended.outcome)
    }

    /// The ordered half of a produce: check leadership (and `min.insync.replicas` for
    /// acks=all), validate, assign offsets, write to the page cache. Callers that
    /// pipeline requests run this in arrival order and only defer the wait.
    pub fn append(&self, batches: &mut [u8], acks: Acks) -> Result<Appended> {
        self.append_with(batches, acks, Flush::Now)
    }

    /// `append` for a caller that leads the group commit itself: it must call `sync_now`
    /// next (which hands over to the flusher when it cannot sync). The flusher is not
    /// woken, which spares a cross-thread wake-up per commit.
    pub fn append_for_sync_now(&self, batches: &mut [u8], acks: Acks) -> Result<Appended> {
        self.append_with(batches, acks, Flush::Caller)
    }

    /// Appends records nobody waits for (an AMQP queue's settlements and delivery marks):
    /// under fsync-before-ack they become durable with the next group commit, which this
    /// append asks for only once `LAZY_FLUSH_RECORDS` are pending (see `flush_pending`).
    /// Losing them to a crash means a redelivery, never a loss.
    pub fn append_lazily(&self, batches: &mut [u8]) -> Result<Appended> {
        self.append_with(batches, Acks::None, Flush::Lazy)
    }

    /// Asks for a group commit if lazily appended records are waiting for one. A relaxed
    /// log (no fsync before ack) is left to its own policy, `flush.messages` and
    /// `flush.ms`: its counter also holds acknowledged records, and flushing them on every
    /// AMQP housekeeping tick would quietly override the policy the user chose.
    pub fn flush_pending(&self) {
        if self.fsync_before_ack() && self.unflushed_records.load(Ordering::Acquire) > 0 {
            self.flush_needed.notify_one();
        }
    }

    fn append_with(&self, batches: &mut [u8], acks: Acks, flush: Flush) -> Result<Appended> {
        if self.closed.load(Ordering::Acquire) {
            // Retriable for clients: they refresh metadata and retry against the
            // restarted broker (or learn that the topic was deleted).
            return Err(CoreError::ShuttingDown);
        }
        let settings = self.settings()?;
        let (info, leader_epoch) = {
            // Holding the role lock across the append orders it against leadership
            // changes: a batch is stamped with the epoch of a leader that was current.
            let r = self.replica()?;
            let Role::Leader(state) = &r.role else {
                return Err(CoreError::NotLeaderOrFollower(format!(
                    "{}-{}: this broker is not the leader",
                    self.topic, self.index
                )));
            };
            if acks == Acks::All {
                let in_sync = state.in_sync_count(now_ms(), settings.replica_lag_time_max_ms);
                if (in_sync as i64) < settings.min_insync_replicas {
                    return Err(CoreError::NotEnoughReplicas(format!(
                        "{}-{}: {in_sync} in-sync replicas, min.insync.replicas is {}",
                        self.topic, self.index, settings.min_insync_replicas
                    )));
                }
            }
            let idempotent = idempotent_batch(batches)?;
            let mut producers = self.producers.lock().map_err(|_| lock_poisoned())?;
            if let Some(h) = &idempotent {
                match producers.check(h) {
                    SequenceCheck::Append => {}
                    SequenceCheck::Duplicate {
                        first_offset,
                        last_offset,
                    } => {
                        let epoch = r.leader_epoch;
                        drop(producers);
                        drop(r);
                        tracing::debug!(topic = %self.topic, partition = self.index, producer_id = h.producer_id, base_sequence = h.base_sequence, first_offset, "duplicate batch from an idempotent producer; acknowledged at its original offset");
                        return self.appended_duplicate(
                            first_offset,
                            last_offset,
                            epoch,
                            acks,
                            &settings,
                        );
                    }
                    SequenceCheck::OutOfOrder { expected, got } => {
                        return Err(CoreError::OutOfOrderSequence(format!(
                            "{}-{}: producer {} expected sequence {expected}, got {got}",
                            self.topic, self.index, h.producer_id
                        )));
                    }
                    SequenceCheck::StaleEpoch { current, got } => {
                        return Err(CoreError::InvalidProducerEpoch(format!(
                            "{}-{}: producer {} epoch {got} is older than {current}",
                            self.topic, self.index, h.producer_id
                        )));
                    }
                }
            }
            let mut log = self.log.write().map_err(|_| lock_poisoned())?;
            let now = now_ms();
            let info = log.append_as_leader(batches, r.leader_epoch, now)?;
            self.appended_bytes
                .fetch_add(info.bytes as u64, Ordering::Relaxed);
            if let Some(h) = idempotent {
                producers.record(
                    &BatchHeader {
                        base_offset: info.first_offset,
                        ..h
                    },
                    now,
                );
            }
            (info, r.leader_epoch)
        };
        let end = info.last_offset + 1;
        // Wakes followers' long-poll fetches.
        self.data_changed.send_modify(|v| *v = v.wrapping_add(1));
        let fsync_first = settings.fsync_before_ack();
        if fsync_first && flush == Flush::Lazy {
            let pending = self
                .unflushed_records
                .fetch_add(info.records, Ordering::AcqRel)
                + info.records;
            if pending >= LAZY_FLUSH_RECORDS {
                self.flush_needed.notify_one();
            }
        } else if fsync_first {
            if flush == Flush::Now {
                self.flush_needed.notify_one();
            }
        } else {
            self.on_local_progress(end);
            let pending = self
                .unflushed_records
                .fetch_add(info.records, Ordering::AcqRel)
                + info.records;
            if pending >= settings.flush_messages.max(1) as u64 {
                self.flush_needed.notify_one();
            }
        }
        Ok(Appended {
            outcome: ProduceOutcome {
                base_offset: info.first_offset,
                log_start_offset: info.log_start_offset,
            },
            end_offset: end,
            leader_epoch,
            acks,
            min_insync_replicas: settings.min_insync_replicas,
            wait_for_fsync: fsync_first,
        })
    }

    /// A retried batch already in the log: acknowledged like the original, once that is
    /// durable / replicated as `acks` requires.
    fn appended_duplicate(
        &self,
        first_offset: i64,
        last_offset: i64,
        leader_epoch: i32,
        acks: Acks,
        settings: &TopicSettings,
    ) -> Result<Appended> {
        Ok(Appended {
            outcome: ProduceOutcome {
                base_offset: first_offset,
                log_start_offset: self.log_start_offset()?,
            },
            end_offset: last_offset + 1,
            leader_epoch,
            acks,
            min_insync_replicas: settings.min_insync_replicas,
            wait_for_fsync: settings.fsync_before_ack(),
        })
    }

    /// The deferred half. acks=1: resolves once the leader holds the batch per the flush
    /// policy. acks=all: once the high watermark passes it (every ISR member has it);
    /// fails with NOT_LEADER_OR_FOLLOWER if leadership moved, or
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND if the in-sync replicas fell below
    /// `min.insync.replicas` while waiting.
    pub async fn wait_acknowledgeable(&self, appended: &Appended) -> Result<()> {
        match appended.acks {
            Acks::None => Ok(()),
            Acks::Leader => {
                if appended.wait_for_fsync {
                    self.wait_durable(appended.end_offset).await
                } else {
                    Ok(())
                }
            }
            Acks::All => self.wait_replicated(appended).await,
        }
    }

    async fn wait_replicated(&self, appended: &Appended) -> Result<()> {
        let mut rx = self.acks.subscribe();
        loop {
            let a = *rx.borrow_and_update();
            if self.durable.borrow().failed {
                return Err(self.fsync_failed());
            }
            if !a.is_leader || a.leader_epoch != appended.leader_epoch {
                return Err(CoreError::NotLeaderOrFollower(format!(
                    "{}-{}: leadership moved before the batch was replicated",
                    self.topic, self.index
                )));
            }
            if a.high_watermark >= appended.end_offset {
                return Ok(());
            }
            if (a.in_sync as i64) < appended.min_insync_replicas {
                return Err(CoreError::NotEnoughReplicasAfterAppend(format!(
                    "{}-{}: {} in-sync replicas, min.insync.replicas is {}",
                    self.topic, self.index, a.in_sync, appended.min_insync_replicas
                )));
            }
            if rx.changed().await.is_err() {
                return Err(CoreError::ShuttingDown);
            }
        }
    }

    fn fsync_failed(&self) -> CoreError {
        CoreError::Storage(format!(
            "{}-{}: fsync failed earlier; partition is read-only until restart",
            self.topic, self.index
        ))
    }

    /// Waits until the local log is durable up to `end` (per the fsync-before-ack policy).
    pub async fn wait_durable(&self, end: i64) -> Result<()> {
        let mut rx = self.durable.subscribe();
        loop {
            let d = *rx.borrow_and_update();
            if d.failed {
                return Err(self.fsync_failed());
            }
            if d.offset >= end {
                return Ok(());
            }
            if rx.changed().await.is_err() {
                return Err(CoreError::ShuttingDown);
            }
        }
    }

    /// Whether appends must be fsynced before they count (the default flush policy).
    pub fn fsync_before_ack(&self) -> bool {
        // Read in place: this runs on every flush and follower fetch; no settings clone.
        self.settings.read().map_or(true, |s| s.fsync_before_ack())
    }

    fn set_high_watermark(&self, hw: i64) {
        if self.high_watermark.fetch_max(hw, Ordering::AcqRel) < hw {
            self.data_changed.send_modify(|v| *v = v.wrapping_add(1));
        }
        self.acks.send_if_modified(|a| {
            if a.high_watermark < hw {
                a.high_watermark = hw;
                true
            } else {
                false
            }
        });
    }

    /// The local log counts up to `offset` (fsynced, or written under a relaxed policy).
    fn on_local_progress(&self, offset: i64) {
        let hw = {
            let Ok(mut r) = self.replica() else { return };
            match &mut r.role {
                Role::Leader(state) => state.update_high_watermark(offset),
                _ => None,
            }
        };
        if let Some(hw) = hw {
            self.set_high_watermark(hw);
        }
    }

    /// Recomputes the leader's high watermark from what it holds now.
    fn refresh_high_watermark(&self) {
        let local = if self.fsync_before_ack() {
            self.durable.borrow().offset
        } else {
            self.log_end_offset().unwrap_or(0)
        };
        self.on_local_progress(local);
        self.publish_ack_state();
    }

    async fn run_flusher(self: Arc<Self>) {
        while !self.closed.load(Ordering::Acquire) {
            let flush_ms = self.settings().map(|s| {
                if s.fsync_before_ack() {
                    i64::MAX
                } else {
                    s.flush_ms
                }
            });
            match flush_ms {
                Ok(ms) if ms < i64::MAX => {
                    let _ = tokio::time::timeout(
                        Duration::from_millis(ms as u64),
                        self.flush_needed.notified(),
                    )
                    .await;
                }
                _ => self.flush_needed.notified().await,
            }
            if self.closed.load(Ordering::Acquire) {
                break;
            }
            self.flush_once().await;
        }
    }

    /// One group-commit round: fdatasync the active segment and publish the new durable
    /// offset (and, under the fsync-before-ack policy, advance the high watermark).
    async fn flush_once(&self) {
        let slot = match self.begin_sync() {
            Some(slot) => slot,
            None => {
                // A caller is syncing (`sync_now`); it wakes the flusher again when done.
                // It may have released before seeing the flag, hence the second try.
                self.flusher_turned_away.store(true, Ordering::SeqCst);
                match self.begin_sync() {
                    Some(slot) => slot,
                    None => return,
                }
            }
        };
        let Some((point, generation)) = self.sync_target() else {
            return;
        };
        let end = point.end_offset;
        let synced = match tokio::task::spawn_blocking(move || point.sync()).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("fsync task failed: {e}")),
        };
        self.finish_sync(end, generation, synced);
        drop(slot);
    }

    /// Group commit led by the caller: when no fdatasync is in flight, syncs the log on
    /// this thread and publishes the new durable offset. A caller that would only wait
    /// for the flusher (a transaction commit) saves the hand-offs to the flusher and the
    /// blocking pool; with a sync already in flight it returns false and the flusher
    /// covers the caller's records as usual. Blocks the calling task for one fdatasync,
    /// on its worker thread while syncs are quick; after one slower than
    /// `INLINE_SYNC_LIMIT`, the next runs in `block_in_place` (the worker's other tasks
    /// move to another thread), so a slow disk stalls only this caller.
    pub fn sync_now(&self) -> bool {
        if !self.fsync_before_ack() || self.durable.borrow().failed {
            return false;
        }
        let Some(_slot) = self.begin_sync() else {
            // The sync in flight may have started before this caller's append: the
            // flusher runs another round after it.
            self.flush_needed.notify_one();
            return false;
        };
        if let Some((point, generation)) = self.sync_target() {
            let end = point.end_offset;
            let started = Instant::now();
            let synced = if self.sync_inline.load(Ordering::Relaxed) {
                point.sync()
            } else {
                off_the_runtime(|| point.sync())
            };
            self.sync_inline
                .store(started.elapsed() < INLINE_SYNC_LIMIT, Ordering::Relaxed);
            self.finish_sync(end, generation, synced.map_err(|e| e.to_string()));
        }
        true
    }

    fn begin_sync(&self) -> Option<SyncSlot<'_>> {
        self.syncing
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .ok()
            .map(|_| SyncSlot { partition: self })
    }

    /// What the next fdatasync covers, if anything is unsynced, with the truncation
    /// generation it was taken at.
    fn sync_target(&self) -> Option<(SyncPoint, u64)> {
        if self.durable.borrow().failed {
            return None;
        }
        let (point, generation, bytes) = match self.log.read() {
            // Read under the log lock, so the byte count matches the sync point.
            Ok(log) => (
                log.sync_point(),
                self.truncations.load(Ordering::Acquire),
                self.appended_bytes.load(Ordering::Relaxed),
            ),
            Err(_) => return None,
        };
        let durable = self.durable.borrow().offset;
        if point.end_offset <= durable {
            return None;
        }
        self.unflushed_records.store(0, Ordering::Release);
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        // The group commit's batch: offsets (records, plus control markers) and bytes
        // that this one fdatasync makes durable.
        let batch_bytes = bytes.saturating_sub(self.synced_bytes.swap(bytes, Ordering::Relaxed));
        let records = u64::try_from(point.end_offset - durable.max(0)).unwrap_or(0);
        arctern_storage::stats::SYNC_BATCH_RECORDS.observe(records);
        arctern_storage::stats::SYNC_BATCH_BYTES.observe(batch_bytes);
        Some((point, generation))
    }

    fn finish_sync(&self, end: i64, generation: u64, synced: std::result::Result<(), String>) {
        match synced {
            Ok(()) => {
                // Under the log lock, so no truncation runs between the check and the send.
                let Ok(_log) = self.log.read() else { return };
                if self.truncations.load(Ordering::Acquire) != generation {
                    // The log was cut while syncing; the next round covers what is there now.
                    self.flush_needed.notify_one();
                    return;
                }
                self.durable.send_modify(|d| d.offset = d.offset.max(end));
                drop(_log);
                if self.fsync_before_ack() {
                    self.on_local_progress(end);
                }
            }
            Err(e) => {
                tracing::error!(topic = %self.topic, partition = self.index, error = %e, "fsync failed; partition stops acknowledging writes");
                self.durable.send_modify(|d| d.failed = true);
            }
        }
    }

    /// A read's result; stored data that failed verification is counted and logged (the
    /// reader gets KAFKA_STORAGE_ERROR, or the AMQP equivalent, for that range).
    fn checked<T>(&self, read: arctern_storage::Result<T>) -> Result<T> {
        if let Err(e @ arctern_storage::StorageError::CorruptStoredData { .. }) = &read {
            crate::stats::add(&crate::stats::STORAGE_CORRUPTIONS, 1);
            let now = now_ms();
            let last = self.corruption_logged_ms.load(Ordering::Relaxed);
            if now.saturating_sub(last) >= CORRUPTION_LOG_EVERY_MS
                && self
                    .corruption_logged_ms
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                tracing::error!(topic = %self.topic, partition = self.index, error = %e, "stored data failed verification; the range is not served");
            }
        }
        Ok(read?)
    }

    /// Whole batches from `offset` for a consumer, never past the high watermark.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<FetchedData> {
        self.read_within(offset, max_bytes, true)
    }

    /// As [`Partition::read`]; with `min_one` false a first batch larger than `max_bytes`
    /// is not returned (KIP-74: only a fetch's first partition with data may exceed).
    pub fn read_within(&self, offset: i64, max_bytes: usize, min_one: bool) -> Result<FetchedData> {
        let high_watermark = self.high_watermark();
        let log = self.log.read().map_err(|_| lock_poisoned())?;
        let fetched = self.checked(log.read_within(offset, max_bytes, high_watermark, min_one))?;
        Ok(FetchedData {
            bytes: fetched.bytes,
            high_watermark,
            log_start_offset: log.log_start_offset(),
        })
    }

    /// The leader's own read up to its log end, past the high watermark: for state a leader
    /// rebuilds from its partition (the group coordinator loading `__consumer_offsets`).
    /// Everything in a leader's log will be committed or the leader deposed.
    pub fn read_to_log_end(&self, offset: i64, max_bytes: usize) -> Result<FetchedData> {
        self.check_leader(-1)?;
        let log = self.log.read().map_err(|_| lock_poisoned())?;
        let fetched = self.checked(log.read(offset, max_bytes, log.log_end_offset()))?;
        Ok(FetchedData {
            bytes: fetched.bytes,
            high_watermark: self.high_watermark(),
            log_start_offset: log.log_start_offset(),
        })
    }

    /// A follower's fetch on the leader: records its progress (its fetch offset is what it
    /// holds durably), advances the high watermark, and returns batches up to the log end
    /// (`min_one` as in [`Partition::read_within`]).
    /// Returns whether the ISR should be re-evaluated (the follower may rejoin it).
    pub fn read_for_follower(
        &self,
        replica_id: i32,
        current_leader_epoch: i32,
        fetch_offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<(FetchedData, bool)> {
        let log_end = self.log_end_offset()?;
        let (hw, recheck_isr) = {
            let mut r = self.replica()?;
            let epoch = r.leader_epoch;
            let Role::Leader(state) = &mut r.role else {
                return Err(CoreError::NotLeaderOrFollower(format!(
                    "{}-{}: this broker is not the leader",
                    self.topic, self.index
                )));
            };
            check_epoch(&self.topic, self.index, epoch, current_leader_epoch)?;
            if fetch_offset > log_end {
                // Not a prefix of our log (it has not truncated yet): never count it.
                let start = self.log_start_offset()?;
                return Err(CoreError::OffsetOutOfRange {
                    requested: fetch_offset,
                    start,
                    end: log_end,
                });
            }
            if !state.on_follower_fetch(replica_id, fetch_offset, log_end, now_ms()) {
                return Err(CoreError::NotLeaderOrFollower(format!(
                    "{}-{}: broker {replica_id} is not a replica",
                    self.topic, self.index
                )));
            }
            let local = if self.fsync_before_ack() {
                self.durable.borrow().offset
            } else {
                log_end
            };
            let hw = state.update_high_watermark(local);
            let recheck =
                !state.isr.contains(&replica_id) && fetch_offset >= state.high_watermark();
            (hw, recheck)
        };
        if let Some(hw) = hw {
            self.set_high_watermark(hw);
        }
        let log = self.log.read().map_err(|_| lock_poisoned())?;
        let fetched =
            self.checked(log.read_within(fetch_offset, max_bytes, log.log_end_offset(), min_one))?;
        Ok((
            FetchedData {
                bytes: fetched.bytes,
                high_watermark: self.high_watermark(),
                log_start_offset: log.log_start_offset(),
            },
            recheck_isr,
        ))
    }

    /// OffsetsForLeaderEpoch on the leader: the largest epoch <= `epoch` this log knows and
    /// the offset where it ends; `(-1, -1)` if it knows none (Kafka's UNDEFINED values).
    pub fn end_offset_for_epoch(
        &self,
        current_leader_epoch: i32,
        epoch: i32,
    ) -> Result<(i32, i64)> {
        self.check_leader(current_leader_epoch)?;
        let log = self.log.read().map_err(|_| lock_poisoned())?;
        Ok(log
            .epochs()
            .end_offset_for(epoch, log.log_end_offset())
            .unwrap_or((-1, -1)))
    }

    /// The ISR change this leader should propose now, if any; marks proposed joiners so the
    /// high watermark waits for them (KIP-497). Also refreshes the in-sync count acks=all
    /// waiters watch.
    /// `eligible` says which brokers may join (unfenced in the metadata).
    pub fn isr_proposal(&self, eligible: impl Fn(i32) -> bool) -> Option<IsrProposal> {
        let lag = self.lag_max_ms();
        let proposal = {
            let mut r = self.replica().ok()?;
            let (leader_epoch, partition_epoch) = (r.leader_epoch, r.partition_epoch);
            let Role::Leader(state) = &mut r.role else {
                return None;
            };
            state.isr_change(now_ms(), lag, eligible).map(|new_isr| {
                state.propose_isr(&new_isr);
                IsrProposal {
                    leader_epoch,
                    partition_epoch,
                    new_isr,
                }
            })
        };
        self.publish_ack_state();
        proposal
    }

    /// Drops a proposal the metadata quorum refused as invalid for the ISR it holds, which
    /// is then the one this leader knows (not after a stale-epoch refusal or an unknown
    /// outcome: an expansion may have committed, and the joiner must keep holding the
    /// watermark until the committed ISR is applied here). A no-op if leadership or the
    /// partition epoch moved since.
    pub fn abandon_isr_proposal(&self, proposal: &IsrProposal) {
        if let Ok(mut r) = self.replica() {
            let current = r.leader_epoch == proposal.leader_epoch
                && r.partition_epoch == proposal.partition_epoch;
            if let (true, Role::Leader(state)) = (current, &mut r.role) {
                state.abandon_proposal();
            }
        }
    }

    // ---- follower side ----

    /// The latest leader epoch in the local log and the offset where it ends locally.
    pub fn latest_epoch(&self) -> Result<Option<i32>> {
        Ok(self
            .log
            .read()
            .map_err(|_| lock_poisoned())?
            .epochs()
            .latest_epoch())
    }

    /// The largest local epoch <= `epoch` and where it ends locally, or None if none.
    pub fn local_epoch_end(&self, epoch: i32) -> Result<Option<(i32, i64)>> {
        let log = self.log.read().map_err(|_| lock_poisoned())?;
        Ok(log.epochs().end_offset_for(epoch, log.log_end_offset()))
    }

    /// Cuts the local log back to `offset` (a follower's divergent or unconfirmed tail).
    pub fn truncate_to(&self, offset: i64) -> Result<()> {
        let mut log = self.log.write().map_err(|_| lock_poisoned())?;
        if offset >= log.log_end_offset() {
            return Ok(());
        }
        self.truncations.fetch_add(1, Ordering::AcqRel);
        log.truncate_to(offset)?;
        self.rebuild_producer_states(&log)?;
        let end = log.log_end_offset();
        self.durable.send_modify(|d| d.offset = d.offset.min(end));
        self.high_watermark.fetch_min(end, Ordering::AcqRel);
        Ok(())
    }

    /// Replaces the whole local log with an empty one starting at `offset` (the leader's log
    /// start moved past everything this replica has).
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<()> {
        let mut log = self.log.write().map_err(|_| lock_poisoned())?;
        self.truncations.fetch_add(1, Ordering::AcqRel);
        log.truncate_fully_and_start_at(offset)?;
        self.rebuild_producer_states(&log)?;
        self.durable.send_modify(|d| d.offset = offset);
        self.high_watermark.store(offset, Ordering::Release);
        Ok(())
    }

    /// Appends batches fetched from the leader (offsets and epochs as the leader stamped
    /// them) and returns the new log end. The caller waits for durability before it tells
    /// the leader (by its next fetch offset) that it holds them.
    pub fn append_replicated(&self, bytes: &[u8], expected_leader_epoch: i32) -> Result<i64> {
        if self.closed.load(Ordering::Acquire) {
            return Err(CoreError::ShuttingDown);
        }
        let r = self.replica()?;
        if !matches!(r.role, Role::Follower { .. }) || r.leader_epoch != expected_leader_epoch {
            return Err(CoreError::NotLeaderOrFollower(format!(
                "{}-{}: no longer following at epoch {expected_leader_epoch}",
                self.topic, self.index
            )));
        }
        let mut log = self.log.write().map_err(|_| lock_poisoned())?;
        let now = now_ms();
        let info = log.append_replicated(bytes, now)?;
        self.appended_bytes
            .fetch_add(info.bytes as u64, Ordering::Relaxed);
        let end = info.last_offset + 1;
        if let Ok(mut producers) = self.producers.lock() {
            for h in batch_headers(bytes) {
                producers.record(&h, now);
            }
        }
        drop(log);
        drop(r);
        if self.fsync_before_ack() {
            self.flush_needed.notify_one();
        } else {
            let pending = self
                .unflushed_records
                .fetch_add(info.records, Ordering::AcqRel)
                + info.records;
            if pending >= self.settings().map_or(1, |s| s.flush_messages.max(1)) as u64 {
                self.flush_needed.notify_one();
            }
        }
        Ok(end)
    }

    /// A follower adopts the leader's high watermark, capped by its own log end.
    pub fn update_follower_high_watermark(&self, leader_high_watermark: i64) {
        let end = self.log_end_offset().unwrap_or(0);
        self.set_high_watermark(leader_high_watermark.min(end));
    }

    /// The first batch below the high watermark with a record at or after `timestamp`.
    pub fn batch_for_timestamp(&self, timestamp: i64) -> Result<Option<(BatchHeader, Vec<u8>)>> {
        let high_watermark = self.high_watermark();
        let log = self.log.read().map_err(|_| lock_poisoned())?;
        Ok(log
            .batch_for_timestamp(timestamp)?
            .filter(|(h, _)| h.base_offset < high_watermark))
    }

    /// Deletes segments past retention and forgets idempotent producers silent for
    /// `producer.id.expiration.ms`.
    pub fn apply_retention(&self) -> Result<usize> {
        let expiration = self.settings()?.producer_id_expiration_ms;
        if let Ok(mut producers) = self.producers.lock() {
            let expired = producers.expire(now_ms(), expiration);
            if expired > 0 {
                tracing::debug!(topic = %self.topic, partition = self.index, expired, "expired idempotent producer ids");
            }
        }
        Ok(self
            .log
            .write()
            .map_err(|_| lock_poisoned())?
            .apply_retention(now_ms())?)
    }

    /// DeleteRecords on the leader: the log start moves up to `offset` (-1 = the high
    /// watermark); beyond the high watermark is OFFSET_OUT_OF_RANGE. Returns the new log
    /// start offset (the low watermark).
    pub fn delete_records(&self, offset: i64) -> Result<i64> {
        self.check_leader(-1)?;
        let hw = self.high_watermark();
        let target = if offset == -1 { hw } else { offset };
        let mut log = self.log.write().map_err(|_| lock_poisoned())?;
        if target < 0 || target > hw {
            return Err(CoreError::OffsetOutOfRange {
                requested: offset,
                start: log.log_start_offset(),
                end: hw,
            });
        }
        Ok(log.advance_log_start(target)?)
    }

    /// A follower follows its leader's log start (never past its own log end).
    pub fn follow_log_start(&self, leader_log_start: i64) -> Result<()> {
        let mut log = self.log.write().map_err(|_| lock_poisoned())?;
        if leader_log_start > log.log_start_offset() {
            log.advance_log_start(leader_log_start)?;
        }
        Ok(())
    }

    /// Deletes the whole segments below `offset` (see `Log::delete_segments_below`): an
    /// AMQP queue's settled prefix on its leader, the leader's log start on a follower.
    pub fn delete_segments_below(&self, offset: i64) -> Result<usize> {
        let mut log = self.log.write().map_err(|_| lock_poisoned())?;
        if log.segment_count() < 2 {
            return Ok(0);
        }
        Ok(log.delete_segments_below(offset)?)
    }

    /// DescribeProducers: the idempotent producers this replica tracks, on the leader only.
    pub fn active_producers(&self) -> Result<Vec<crate::producer_state::ActiveProducer>> {
        self.check_leader(-1)?;
        Ok(self.producers.lock().map_err(|_| lock_poisoned())?.active())
    }

    /// Idempotent producers known to this replica (for tests and metrics).
    pub fn producer_count(&self) -> usize {
        self.producers.lock().map_or(0, |p| p.len())
    }

    fn rebuild_producer_states(&self, log: &Log) -> Result<()> {
        let rebuilt = producer_states_of(log)?;
        *self.producers.lock().map_err(|_| lock_poisoned())? = rebuilt;
        Ok(())
    }

    /// Stops the flusher, syncs, and marks the log clean.
    pub fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        self.flush_needed.notify_one();
        if let Ok(mut r) = self.replica() {
            r.role = Role::None;
        }
        self.publish_ack_state();
        let mut log = self.log.write().map_err(|_| lock_poisoned())?;
        log.close()?;
        let end = log.log_end_offset();
        self.durable.send_modify(|d| d.offset = d.offset.max(end));
        Ok(())
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// The producer state a log implies: every stored batch header, in order.
fn producer_states_of(log: &Log) -> Result<ProducerStates> {
    let mut states = ProducerStates::default();
    let now = now_ms();
    log.scan_headers(|h| states.record(h, now))?;
    Ok(states)
}

/// Headers of the well-formed batches at the start of `bytes` (already validated).
fn batch_headers(mut bytes: &[u8]) -> impl Iterator<Item = BatchHeader> + '_ {
    std::iter::from_fn(move || {
        let (_, size) = arctern_storage::batch::peek_offset_and_size(bytes)?;
        let h = arctern_storage::batch::parse_header(bytes).ok()?;
        bytes = bytes.get(size..)?;
        Some(h)
    })
}

/// The header of a produce request's batch if it carries a producer id. Such a request
/// must hold exactly one batch (Kafka requires one batch per partition from Produce v3),
/// since sequence checks and duplicate answers are per batch.
fn idempotent_batch(bytes: &[u8]) -> Result<Option<BatchHeader>> {
    let mut headers = batch_headers(bytes);
    let Some(first) = headers.next() else {
        // Malformed: the log's validation reports it.
        return Ok(None);
    };
    let more = headers.next().is_some();
    if first.producer_id == NO_PRODUCER_ID && !more {
        return Ok(None);
    }
    if more {
        let any_producer = first.producer_id != NO_PRODUCER_ID
            || batch_headers(bytes).any(|h| h.producer_id != NO_PRODUCER_ID);
        if any_producer {
            return Err(CoreError::InvalidRecord(
                "a produce request must carry exactly one record batch per partition".into(),
            ));
        }
        return Ok(None);
    }
    Ok(Some(first))
}

/// KIP-320: a request naming an older epoch is fenced; a newer one means this broker has
/// not caught up with the metadata yet. -1 means the client does not say.
fn check_epoch(topic: &str, index: i32, ours: i32, theirs: i32) -> Result<()> {
    if theirs < 0 || theirs == ours {
        Ok(())
    } else if theirs < ours {
        Err(CoreError::FencedLeaderEpoch(format!(
            "{topic}-{index}: request epoch {theirs} is older than the leader's {ours}"
        )))
    } else {
        Err(CoreError::UnknownLeaderEpoch(format!(
            "{topic}-{index}: request epoch {theirs} is newer than this broker's {ours}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arctern_storage::batch::build_batch;
    use arctern_storage::LogConfig;

    fn settings() -> TopicSettings {
        TopicSettings {
            log: LogConfig::default(),
            flush_messages: 1,
            flush_ms: i64::MAX,
            min_insync_replicas: 1,
            replica_lag_time_max_ms: 30_000,
            producer_id_expiration_ms: 86_400_000,
        }
    }

    fn record() -> Vec<u8> {
        build_batch(
            0,
            0,
            1_700_000_000_000,
            &[(None, Some(&b"v"[..]), 1_700_000_000_000)],
        )
    }

    fn lone_leader(dir: &std::path::Path) -> Arc<Partition> {
        let p = Partition::open("t", 0, dir, settings(), 1).unwrap();
        p.become_leader(0, 0, &[1], &[1]).unwrap();
        p
    }

    // The flusher task cannot run in between on this runtime, so the caller leads.
    #[tokio::test(flavor = "current_thread")]
    async fn sync_now_makes_an_append_acknowledgeable_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = lone_leader(dir.path());
        let appended = p.append_for_sync_now(&mut record(), Acks::All).unwrap();
        assert!(p.high_watermark() < appended.end_offset);
        let before = p.fsync_count();
        assert!(p.sync_now());
        assert_eq!(p.fsync_count(), before + 1);
        assert_eq!(p.high_watermark(), appended.end_offset);
        p.wait_acknowledgeable(&appended).await.unwrap();
        // Nothing new: no second fdatasync.
        assert!(p.sync_now());
        assert_eq!(p.fsync_count(), before + 1);
    }

    // flush_pending serves lazily appended settlements under fsync-before-ack; on a relaxed
    // log the flush policy alone decides when acknowledged records reach the disk.
    #[tokio::test(flavor = "current_thread")]
    async fn flush_pending_leaves_a_relaxed_log_to_its_flush_policy() {
        let dir = tempfile::tempdir().unwrap();
        let relaxed = TopicSettings {
            flush_messages: 1_000_000,
            ..settings()
        };
        let p = Partition::open("t", 0, dir.path(), relaxed, 1).unwrap();
        p.become_leader(0, 0, &[1], &[1]).unwrap();
        p.append(&mut record(), Acks::All).unwrap();
        let before = p.fsync_count();
        p.flush_pending();
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(p.fsync_count(), before, "a relaxed log was flushed");

        let strict = lone_leader(&dir.path().join("strict"));
        strict.append_lazily(&mut record()).unwrap();
        let before = strict.fsync_count();
        strict.flush_pending();
        for _ in 0..100 {
            if strict.fsync_count() > before {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(
            strict.fsync_count() > before,
            "lazy records were not flushed"
        );
    }

    // There the sync runs in `block_in_place`, which panics on other runtimes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sync_now_works_on_a_multi_threaded_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let p = lone_leader(dir.path());
        let appended = p.append_for_sync_now(&mut record(), Acks::All).unwrap();
        assert!(p.sync_now());
        assert_eq!(p.high_watermark(), appended.end_offset);
    }

    // A flusher that finds a caller's sync in flight leaves; the caller's release must
    // wake it, or records appended meanwhile would wait for the next append.
    #[tokio::test(flavor = "current_thread")]
    async fn a_flusher_turned_away_runs_when_the_caller_releases() {
        let dir = tempfile::tempdir().unwrap();
        let p = lone_leader(dir.path());
        let slot = p.begin_sync().unwrap();
        let appended = p.append(&mut record(), Acks::All).unwrap();
        assert!(
            !p.sync_now(),
            "a second sync must not start while one is in flight"
        );
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(p.flusher_turned_away.load(Ordering::SeqCst));
        drop(slot);
        tokio::time::timeout(Duration::from_secs(30), p.wait_acknowledgeable(&appended))
            .await
            .expect("the flusher was not woken after the caller's sync")
            .unwrap();
    }
}
