//! One topic-partition: its log, the group-commit flusher, and the high watermark.
//!
//! Group commit: producers append under the log's write lock (a page-cache write), then
//! wake the partition's flusher and wait for the durable offset to pass their batch. The
//! flusher takes one `fdatasync` for everything appended so far; appends that arrive while
//! it runs are covered by the next one. So N concurrent producers cost ~1 fsync, not N.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arctern_storage::{BatchHeader, Log};
use tokio::sync::{watch, Notify};

use crate::config::TopicSettings;
use crate::error::{CoreError, Result};
use crate::now_ms;

/// Producer acknowledgement level (Kafka `acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// acks=0: no response is sent.
    None,
    /// acks=1: the leader has it (on a single node, durable per the flush policy).
    Leader,
    /// acks=all: every in-sync replica has it (single node: same as Leader).
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

#[derive(Debug)]
pub struct Partition {
    pub topic: String,
    pub index: i32,
    leader_epoch: i32,
    log: RwLock<Log>,
    settings: RwLock<TopicSettings>,
    durable: watch::Sender<Durable>,
    high_watermark: AtomicI64,
    unflushed_records: AtomicU64,
    /// fdatasync calls made by the flusher (group-commit effectiveness; metrics later).
    fsyncs: AtomicU64,
    flush_needed: Notify,
    closed: AtomicBool,
    /// Broker-wide counter bumped on every high-watermark advance (wakes long-poll fetches).
    data_changed: Arc<watch::Sender<u64>>,
}

fn lock_poisoned() -> CoreError {
    CoreError::Storage("partition lock poisoned by an earlier panic".into())
}

impl Partition {
    /// Opens (recovering) the log and starts the flusher. Must run inside a tokio runtime.
    pub fn open(
        topic: &str,
        index: i32,
        dir: &std::path::Path,
        settings: TopicSettings,
        data_changed: Arc<watch::Sender<u64>>,
    ) -> Result<Arc<Partition>> {
        let log = Log::open(dir, settings.log.clone(), now_ms())?;
        // Whatever survived in the page cache is made durable before it is exposed.
        log.sync_point().sync()?;
        let end = log.log_end_offset();
        let leader_epoch = log.epochs().latest_epoch().unwrap_or(0);
        let (durable, _) = watch::channel(Durable {
            offset: end,
            failed: false,
        });
        let partition = Arc::new(Partition {
            topic: topic.to_string(),
            index,
            leader_epoch,
            log: RwLock::new(log),
            settings: RwLock::new(settings),
            durable,
            high_watermark: AtomicI64::new(end),
            unflushed_records: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            flush_needed: Notify::new(),
            closed: AtomicBool::new(false),
            data_changed,
        });
        tokio::spawn(Arc::clone(&partition).run_flusher());
        Ok(partition)
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
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
    pub async fn produce(&self, batches: Vec<u8>, acks: Acks) -> Result<ProduceOutcome> {
        let appended = self.append(batches)?;
        if acks != Acks::None {
            self.wait_acknowledgeable(&appended).await?;
        }
        Ok(appended.outcome)
    }

    /// The ordered half of a produce: validate, assign offsets, write to the page cache.
    /// Callers that pipeline requests run this in arrival order and only defer the wait.
    pub fn append(&self, mut batches: Vec<u8>) -> Result<Appended> {
        if self.closed.load(Ordering::Acquire) {
            // Retriable for clients: they refresh metadata and retry against the
            // restarted broker (or learn that the topic was deleted).
            return Err(CoreError::ShuttingDown);
        }
        let settings = self.settings()?;
        let info = {
            let mut log = self.log.write().map_err(|_| lock_poisoned())?;
            log.append_as_leader(&mut batches, self.leader_epoch, now_ms())?
        };
        let end = info.last_offset + 1;
        let fsync_first = settings.fsync_before_ack();
        if fsync_first {
            self.flush_needed.notify_one();
        } else {
            self.advance_high_watermark(end);
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
            wait_for_fsync: fsync_first,
        })
    }

    /// The deferred half: resolves once the append may be acknowledged (fsynced under the
    /// default policy; at once under a relaxed `flush.messages`).
    pub async fn wait_acknowledgeable(&self, appended: &Appended) -> Result<()> {
        if appended.wait_for_fsync {
            self.wait_durable(appended.end_offset).await
        } else {
            Ok(())
        }
    }

    async fn wait_durable(&self, end: i64) -> Result<()> {
        let mut rx = self.durable.subscribe();
        loop {
            let d = *rx.borrow_and_update();
            if d.failed {
                return Err(CoreError::Storage(format!(
                    "{}-{}: fsync failed earlier; partition is read-only until restart",
                    self.topic, self.index
                )));
            }
            if d.offset >= end {
                return Ok(());
            }
            if rx.changed().await.is_err() {
                return Err(CoreError::ShuttingDown);
            }
        }
    }

    fn advance_high_watermark(&self, end: i64) {
        if self.high_watermark.fetch_max(end, Ordering::AcqRel) < end {
            self.data_changed.send_modify(|v| *v = v.wrapping_add(1));
        }
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
    /// offset (and, under the fsync-before-ack policy, the high watermark).
    async fn flush_once(&self) {
        if self.durable.borrow().failed {
            return;
        }
        let point = match self.log.read() {
            Ok(log) => log.sync_point(),
            Err(_) => return,
        };
        if point.end_offset <= self.durable.borrow().offset {
            return;
        }
        self.unflushed_records.store(0, Ordering::Release);
        let end = point.end_offset;
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        let synced = tokio::task::spawn_blocking(move || point.sync()).await;
        match synced {
            Ok(Ok(())) => {
                self.durable.send_modify(|d| d.offset = d.offset.max(end));
                if self
                    .settings()
                    .map(|s| s.fsync_before_ack())
                    .unwrap_or(true)
                {
                    self.advance_high_watermark(end);
                }
            }
            Ok(Err(e)) => {
                tracing::error!(topic = %self.topic, partition = self.index, error = %e, "fsync failed; partition stops acknowledging writes");
                self.durable.send_modify(|d| d.failed = true);
            }
            Err(e) => {
                tracing::error!(topic = %self.topic, partition = self.index, error = %e, "fsync task failed");
                self.durable.send_modify(|d| d.failed = true);
            }
        }
    }

    /// Whole batches from `offset`, never past the high watermark.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<FetchedData> {
        let high_watermark = self.high_watermark();
        let log = self.log.read().map_err(|_| lock_poisoned())?;
        let fetched = log.read(offset, max_bytes, high_watermark)?;
        Ok(FetchedData {
            bytes: fetched.bytes,
            high_watermark,
            log_start_offset: log.log_start_offset(),
        })
    }

    /// The first batch below the high watermark with a record at or after `timestamp`.
    pub fn batch_for_timestamp(&self, timestamp: i64) -> Result<Option<(BatchHeader, Vec<u8>)>> {
        let high_watermark = self.high_watermark();
        let log = self.log.read().map_err(|_| lock_poisoned())?;
        Ok(log
            .batch_for_timestamp(timestamp)?
            .filter(|(h, _)| h.base_offset < high_watermark))
    }

    pub fn apply_retention(&self) -> Result<usize> {
        Ok(self
            .log
            .write()
            .map_err(|_| lock_poisoned())?
            .apply_retention(now_ms())?)
    }

    /// Stops the flusher, syncs, and marks the log clean.
    pub fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        self.flush_needed.notify_one();
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
