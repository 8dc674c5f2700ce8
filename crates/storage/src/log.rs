//! A partition's log: an ordered list of segments, the last one active.
//!
//! Durability contract: `append_*` writes to the page cache only; the caller makes data
//! durable with `sync_point().sync()` (group commit) according to its flush policy.
//! Sealed segments are always fsynced when they roll, so after a crash only the active
//! segment can hold unsynced bytes, and recovery validates exactly that segment by CRC.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::batch::{self, BatchHeader};
use crate::epoch::LeaderEpochCache;
use crate::error::{IoContext, Result, StorageError};
use crate::open_files::SegmentFile;
use crate::segment::{read_new, sync_dir, Segment};

const CLEAN_SHUTDOWN_FILE: &str = ".clean-shutdown";
/// The log start offset when DeleteRecords moved it inside the first segment (Kafka keeps
/// it in `log-start-offset-checkpoint`); one decimal number.
const LOG_START_FILE: &str = "log-start-offset";

/// Per-log settings, with Kafka's topic-config semantics and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment before it would exceed this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment once it is this old.
    pub segment_ms: i64,
    /// `retention.bytes`: delete oldest segments while the log is larger; -1 = no limit.
    pub retention_bytes: i64,
    /// `retention.ms`: delete segments whose newest record is older; -1 = keep forever.
    pub retention_ms: i64,
    /// `max.message.bytes`: largest record batch accepted.
    pub max_message_bytes: usize,
    /// `index.interval.bytes`: bytes between sparse offset index entries.
    pub index_interval_bytes: u64,
    /// `preallocate`: keep the active segment's file zero-filled ahead of its end (see
    /// `Segment::write`), so a group commit's fdatasync writes data only. Kafka's
    /// `preallocate` allocates the whole segment up front; this keeps at most
    /// a quarter of a megabyte of zeros per active segment.
    pub preallocate: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            retention_ms: 7 * 24 * 3600 * 1000,
            max_message_bytes: 1_048_588,
            index_interval_bytes: 4096,
            preallocate: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendInfo {
    pub first_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub batches: usize,
    pub records: u64,
    pub bytes: usize,
    /// The log start offset at the time of the append (for the produce response).
    pub log_start_offset: i64,
}

/// What a caller needs to make everything appended so far durable: fdatasync of the
/// active segment covers every offset below `end_offset`.
#[derive(Debug, Clone)]
pub struct SyncPoint {
    file: SegmentFile,
    path: PathBuf,
    pub end_offset: i64,
}

impl SyncPoint {
    pub fn sync(&self) -> Result<()> {
        let started = std::time::Instant::now();
        // Counted before the fsync: a write that lands during it stays dirty.
        let writes = self.file.writes();
        let r = self
            .file
            .get()
            .and_then(|f| f.sync_data())
            .ctx(|| format!("fdatasync {}", self.path.display()));
        crate::stats::FSYNC_SECONDS.observe_duration(started.elapsed());
        if r.is_ok() {
            self.file.synced(writes);
        }
        r
    }
}

/// Whole batches read from one segment, as stored.
#[derive(Debug, Default, Clone)]
pub struct FetchedBatches {
    pub bytes: Vec<u8>,
    /// Offset after the last returned batch (unchanged from the request when empty).
    pub next_offset: i64,
}

#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    /// Sorted by base offset; never empty; the last is the active segment.
    segments: Vec<Segment>,
    epochs: LeaderEpochCache,
    /// A log start set by DeleteRecords, possibly inside the first segment; the log
    /// starts at the larger of it and the first segment's base offset.
    start_floor: i64,
    /// The last run closed this log cleanly (`close`): nothing written before it was lost.
    opened_clean: bool,
}

impl Log {
    /// Opens (creating if needed) the log in `dir`, recovering from an unclean shutdown.
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<Log> {
        if !dir.is_dir() {
            fs::create_dir_all(dir).ctx(|| format!("creating log dir {}", dir.display()))?;
            // A new directory's name is durable only once its parent is fsynced.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean = marker.exists();
        let mut bases = Vec::new();
        for entry in fs::read_dir(dir).ctx(|| format!("listing {}", dir.display()))? {
            let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(stem) = name.strip_suffix(".log") {
                match stem.parse::<i64>() {
                    Ok(base) if base >= 0 => bases.push(base),
                    _ => tracing::warn!(file = %name, "ignoring unexpected file in log dir"),
                }
            } else if name.ends_with(".tmp") {
                let _ = fs::remove_file(entry.path());
            }
        }
        bases.sort_unstable();
        let mut segments = Vec::with_capacity(bases.len().max(1));
        let last = bases.len().saturating_sub(1);
        for (i, base) in bases.iter().enumerate() {
            // Only the active segment can hold unsynced bytes after a crash.
            let recover = !clean && i == last;
            let sealed = i < last;
            let seg = Segment::open(dir, *base, config.index_interval_bytes, recover, sealed)?;
            if recover {
                seg.remove_index_files(dir);
            }
            segments.push(seg);
        }
        for w in segments.windows(2) {
            if w[0].next_offset > w[1].base_offset {
                return Err(StorageError::CorruptStoredData {
                    path: w[1].log_path.clone(),
                    position: 0,
                    reason: format!(
                        "segment overlaps the previous one, which ends at offset {}",
                        w[0].next_offset
                    ),
                });
            }
        }
        if segments.is_empty() {
            segments.push(Segment::create(
                dir,
                0,
                config.index_interval_bytes,
                now_ms,
            )?);
        }
        if let Some(active) = segments.last_mut() {
            if active.created_ms < 0 {
                active.created_ms = now_ms;
            }
        }
        if clean {
            fs::remove_file(&marker).ctx(|| format!("removing {}", marker.display()))?;
            sync_dir(dir)?;
        }
        let start_floor = read_log_start(dir);
        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            segments,
            epochs: LeaderEpochCache::load(dir),
            start_floor: 0,
            opened_clean: clean,
        };
        let end = log.log_end_offset();
        log.epochs.truncate_from_end(end)?;
        if start_floor > end {
            // The log start was moved past what survived (a relaxed flush policy): start
            // there, as a follower does when its leader's log starts past its end.
            log.truncate_fully_and_start_at(start_floor)?;
        } else {
            log.start_floor = start_floor;
        }
        tracing::debug!(dir = %dir.display(), clean, start = log.log_start_offset(), end = log.log_end_offset(), "log opened");
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the previous run closed this log cleanly, so every record written before
    /// (durable or not at the time) survived; false after kill -9 or a power cut.
    pub fn opened_clean(&self) -> bool {
        self.opened_clean
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn log_start_offset(&self) -> i64 {
        self.segments
            .first()
            .map_or(0, |s| s.base_offset)
            .max(self.start_floor)
    }

    /// Moves the log start offset up to `offset` (DeleteRecords; a follower following its
    /// leader's log start), at most to the log end: records below it are no longer served,
    /// and whole segments below it are deleted. The new start is persisted before it takes
    /// effect. Returns the log start offset.
    pub fn advance_log_start(&mut self, offset: i64) -> Result<i64> {
        let offset = offset.min(self.log_end_offset());
        if offset <= self.log_start_offset() {
            return Ok(self.log_start_offset());
        }
        write_log_start(&self.dir, offset)?;
        self.start_floor = offset;
        self.delete_segments_below(offset)?;
        self.epochs.truncate_from_start(self.log_start_offset())?;
        tracing::info!(dir = %self.dir.display(), log_start_offset = offset, "log start offset advanced");
        Ok(self.log_start_offset())
    }

    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn epochs(&self) -> &LeaderEpochCache {
        &self.epochs
    }

    fn active(&self) -> &Segment {
        // `segments` is never empty (see `open`, `truncate_to`, `apply_retention`).
        &self.segments[self.segments.len() - 1]
    }

    fn active_mut(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    /// Appends batches from a producer: validates them (CRC32C, size limits), stamps
    /// consecutive offsets from the log end and the leader epoch, and writes them.
    pub fn append_as_leader(
        &mut self,
        bytes: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        let headers = batch::validate_all(bytes)?;
        if headers.is_empty() {
            return Err(batch::BatchError::Truncated {
                have: 0,
                need: batch::HEADER_LEN,
            }
            .into());
        }
        for h in &headers {
            if h.size > self.config.max_message_bytes {
                return Err(StorageError::BatchTooLarge {
                    size: h.size,
                    max: self.config.max_message_bytes,
                });
            }
            if i64::from(h.last_offset_delta) + 1 != i64::from(h.records_count) {
                return Err(batch::BatchError::BadOffsets {
                    last_offset_delta: h.last_offset_delta,
                    records_count: h.records_count,
                }
                .into());
            }
        }
        let first_offset = self.log_end_offset();
        let mut next = first_offset;
        let mut at = 0;
        let mut stamped = Vec::with_capacity(headers.len());
        for h in &headers {
            batch::assign_offset_and_epoch(&mut bytes[at..at + h.size], next, leader_epoch);
            stamped.push(BatchHeader {
                base_offset: next,
                partition_leader_epoch: leader_epoch,
                ..*h
            });
            next += i64::from(h.last_offset_delta) + 1;
            at += h.size;
        }
        self.epochs.assign(leader_epoch, first_offset)?;
        self.write_batches(bytes, &stamped, now_ms)
    }

    /// Appends batches copied from a leader, keeping their offsets and epochs.
    pub fn append_replicated(&mut self, bytes: &[u8], now_ms: i64) -> Result<AppendInfo> {
        let headers = batch::validate_all(bytes)?;
        let mut expected = self.log_end_offset();
        for h in &headers {
            if h.base_offset != expected {
                return Err(StorageError::NonSequentialAppend {
                    expected,
                    got: h.base_offset,
                });
            }
            expected = h.last_offset() + 1;
        }
        for h in &headers {
            self.epochs
                .assign(h.partition_leader_epoch, h.base_offset)?;
        }
        self.write_batches(bytes, &headers, now_ms)
    }

    fn write_batches(
        &mut self,
        bytes: &[u8],
        headers: &[BatchHeader],
        now_ms: i64,
    ) -> Result<AppendInfo> {
        if bytes.len() as u64 > self.config.segment_bytes {
            return Err(StorageError::BatchesLargerThanSegment {
                size: bytes.len(),
                max: self.config.segment_bytes,
            });
        }
        self.maybe_roll(bytes.len() as u64, now_ms)?;
        let (zero_ahead, limit) = (self.config.preallocate, self.config.segment_bytes);
        let seg = self.active_mut();
        let start = seg.size;
        if let Err(e) = seg.write(bytes, zero_ahead, limit) {
            // Cut off any partial write so the file never holds bytes beyond `size`.
            seg.cut(start);
            return Err(e);
        }
        let mut pos = start;
        for h in headers {
            seg.note_appended(h, pos as u32);
            pos += h.size as u64;
        }
        let first = headers.first().map_or(seg.next_offset, |h| h.base_offset);
        Ok(AppendInfo {
            first_offset: first,
            last_offset: seg.next_offset - 1,
            max_timestamp: headers.iter().map(|h| h.max_timestamp).max().unwrap_or(-1),
            batches: headers.len(),
            records: headers.iter().map(|h| h.records_count.max(0) as u64).sum(),
            bytes: bytes.len(),
            log_start_offset: self.log_start_offset(),
        })
    }

    fn maybe_roll(&mut self, incoming: u64, now_ms: i64) -> Result<()> {
        let active = self.active();
        let too_big = active.size + incoming > self.config.segment_bytes;
        let too_old = now_ms - active.created_ms >= self.config.segment_ms;
        // Positions and relative offsets in the indexes are u32.
        let offsets_full = active.next_offset - active.base_offset > i64::from(i32::MAX);
        if active.size > 0 && (too_big || too_old || offsets_full) {
            self.roll(now_ms)?;
        }
        Ok(())
    }

    /// Seals the active segment (fsync + index files) and starts a new one at the log end.
    pub fn roll(&mut self, now_ms: i64) -> Result<()> {
        // A sealed segment ends at its last batch (its index trailer says so).
        self.active_mut().trim()?;
        let active = self.active();
        active.sync()?;
        active.write_indexes(&self.dir)?;
        let base = active.next_offset;
        tracing::debug!(dir = %self.dir.display(), base, "rolling segment");
        let seg = Segment::create(&self.dir, base, self.config.index_interval_bytes, now_ms)?;
        self.segments.push(seg);
        Ok(())
    }

    pub fn sync_point(&self) -> SyncPoint {
        let a = self.active();
        SyncPoint {
            file: a.file.clone(),
            path: a.log_path.clone(),
            end_offset: a.next_offset,
        }
    }

    /// Reads whole batches starting with the one that contains `offset`, up to `max_bytes`
    /// (but always at least one whole batch, as Kafka does so a large batch cannot stall a
    /// consumer), never including a batch that ends at or beyond `upper_bound` (the high
    /// watermark). Every batch returned has passed its CRC check.
    pub fn read(&self, offset: i64, max_bytes: usize, upper_bound: i64) -> Result<FetchedBatches> {
        self.read_within(offset, max_bytes, upper_bound, true)
    }

    /// As [`Log::read`], but with `min_one` false a first batch larger than `max_bytes` is
    /// not returned either (nothing is): KIP-74 lets only the first partition of a fetch
    /// response with data exceed the limits.
    pub fn read_within(
        &self,
        offset: i64,
        max_bytes: usize,
        upper_bound: i64,
        min_one: bool,
    ) -> Result<FetchedBatches> {
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        if offset < start || offset > end {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                start,
                end,
            });
        }
        let empty = FetchedBatches {
            bytes: Vec::new(),
            next_offset: offset,
        };
        if offset >= upper_bound.min(end) {
            return Ok(empty);
        }
        let first_seg = self
            .segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1);
        for seg in &self.segments[first_seg..] {
            let Some((pos, first)) = seg.find_batch(offset)? else {
                continue;
            };
            if first.last_offset() >= upper_bound || (!min_one && first.size > max_bytes) {
                return Ok(empty);
            }
            let want = (max_bytes as u64)
                .max(first.size as u64)
                .min(seg.size - pos) as usize;
            let mut buf = read_new(&*seg.handle()?, pos, want)
                .ctx(|| format!("reading {}", seg.log_path.display()))?;
            let verify = crate::verify_reads();
            let mut used = 0;
            let mut next_offset = offset;
            // The base offset each batch must have: the one found, then contiguous.
            let mut continues_at = first.base_offset;
            while used < buf.len() {
                let rest = &buf[used..];
                let Some((_, size)) = batch::peek_offset_and_size(rest) else {
                    break;
                };
                if size > rest.len() {
                    break;
                }
                let checked = batch::validate(&rest[..size])
                    .map_err(|e| e.to_string())
                    .and_then(|h| match verify {
                        true => self.check_structure(&h, continues_at).map(|()| h),
                        false => Ok(h),
                    });
                let header = match checked {
                    Ok(h) => h,
                    Err(reason) if used == 0 => {
                        return Err(StorageError::CorruptStoredData {
                            path: seg.log_path.clone(),
                            position: pos,
                            reason,
                        })
                    }
                    Err(reason) => {
                        // Serve the good prefix; the next fetch starts at the bad batch and errors.
                        tracing::error!(segment = %seg.log_path.display(), position = pos + used as u64, error = %reason, "corrupt batch in log");
                        break;
                    }
                };
                continues_at = header.last_offset() + 1;
                if header.last_offset() >= upper_bound {
                    break;
                }
                used += size;
                next_offset = header.last_offset() + 1;
            }
            buf.truncate(used);
            return Ok(FetchedBatches {
                bytes: buf,
                next_offset,
            });
        }
        Ok(empty)
    }

    /// What Kafka's batch CRC leaves out, checked against the log itself: the batch starts
    /// where the log continues, and carries the leader epoch the checkpoint gives that
    /// offset (where the checkpoint covers it).
    fn check_structure(
        &self,
        h: &BatchHeader,
        continues_at: i64,
    ) -> std::result::Result<(), String> {
        if h.base_offset != continues_at {
            return Err(format!(
                "batch base offset {} where the log continues at {continues_at}",
                h.base_offset
            ));
        }
        match self.epochs.epoch_at(h.base_offset) {
            Some(epoch) if epoch != h.partition_leader_epoch => Err(format!(
                "batch at offset {} has leader epoch {}, the epoch checkpoint says {epoch}",
                h.base_offset, h.partition_leader_epoch
            )),
            _ => Ok(()),
        }
    }

    /// Calls `visit` with every stored batch header in offset order (header reads only):
    /// for state rebuilt from the log, such as the idempotent producers' sequences.
    pub fn scan_headers(&self, mut visit: impl FnMut(&BatchHeader)) -> Result<()> {
        for seg in &self.segments {
            seg.scan_from(0, |h| {
                visit(h);
                false
            })?;
        }
        Ok(())
    }

    /// The first stored batch holding a record with timestamp >= `timestamp` (by the
    /// batch's max timestamp), with its header; the caller picks the exact record.
    pub fn batch_for_timestamp(&self, timestamp: i64) -> Result<Option<(BatchHeader, Vec<u8>)>> {
        for seg in &self.segments {
            if seg.max_timestamp < timestamp {
                continue;
            }
            let start = seg.time_position_for(timestamp);
            if let Some((pos, header)) = seg.scan_from(start, |h| h.max_timestamp >= timestamp)? {
                let mut buf = vec![0u8; header.size];
                seg.handle()?
                    .read_exact_at(&mut buf, pos)
                    .ctx(|| format!("reading {}", seg.log_path.display()))?;
                batch::validate(&buf).map_err(|e| StorageError::CorruptStoredData {
                    path: seg.log_path.clone(),
                    position: pos,
                    reason: e.to_string(),
                })?;
                return Ok(Some((header, buf)));
            }
        }
        Ok(None)
    }

    /// Removes everything from the batch containing `offset` onwards (a follower cutting a
    /// divergent tail). The new log end offset is at most `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        let start = self.log_start_offset();
        if offset <= start {
            return self.truncate_fully_and_start_at(offset.max(0));
        }
        while self.segments.len() > 1 && self.active().base_offset >= offset {
            if let Some(seg) = self.segments.pop() {
                seg.delete_files(&self.dir)?;
            }
        }
        let dir = self.dir.clone();
        let active = self.active_mut();
        active.remove_index_files(&dir);
        active.truncate_to(offset)?;
        let end = self.log_end_offset();
        self.epochs.truncate_from_end(end)?;
        tracing::info!(dir = %self.dir.display(), requested = offset, log_end_offset = end, "log truncated");
        Ok(())
    }

    /// Deletes all data and restarts the log empty at `offset`.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<()> {
        for seg in self.segments.drain(..) {
            seg.delete_files(&self.dir)?;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        self.segments.push(Segment::create(
            &self.dir,
            offset,
            self.config.index_interval_bytes,
            now,
        )?);
        // Nothing stored is left to describe; entries kept from a divergent history
        // would contradict the epochs of what is fetched next (and fail the read checks).
        self.epochs.clear()?;
        // The new first segment's base offset is the log start from now on.
        self.start_floor = 0;
        remove_log_start(&self.dir)?;
        Ok(())
    }

    /// Deletes whole segments past `retention.ms` / `retention.bytes`, oldest first. The
    /// active segment is rolled first if everything in it has expired. Returns how many
    /// segments were deleted.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<usize> {
        let expired = |s: &Segment, cfg: &LogConfig| {
            cfg.retention_ms >= 0
                && s.max_timestamp >= 0
                && now_ms - s.max_timestamp > cfg.retention_ms
        };
        if self.active().size > 0 && expired(self.active(), &self.config) {
            self.roll(now_ms)?;
        }
        let mut deleted = 0;
        let mut total = self.size_bytes() as i64;
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            let over_size = self.config.retention_bytes >= 0
                && total - oldest.size as i64 >= self.config.retention_bytes;
            if !(over_size || expired(oldest, &self.config)) {
                break;
            }
            total -= self.delete_oldest_segment("retention")? as i64;
            deleted += 1;
        }
        if deleted > 0 {
            self.epochs.truncate_from_start(self.log_start_offset())?;
        }
        Ok(deleted)
    }

    /// Deletes the whole segments that end at or below `offset`, oldest first, never the
    /// active one: the prefix an AMQP queue has fully settled, or what a follower may drop
    /// once its leader's log starts past it. Returns how many were deleted.
    pub fn delete_segments_below(&mut self, offset: i64) -> Result<usize> {
        let mut deleted = 0;
        while self.segments.len() > 1 && self.segments[1].base_offset <= offset {
            self.delete_oldest_segment("log start advanced")?;
            deleted += 1;
        }
        if deleted > 0 {
            self.epochs.truncate_from_start(self.log_start_offset())?;
        }
        Ok(deleted)
    }

    /// Removes the oldest segment and its files; returns its size in bytes.
    fn delete_oldest_segment(&mut self, why: &str) -> Result<u64> {
        let seg = self.segments.remove(0);
        seg.delete_files(&self.dir)?;
        tracing::info!(dir = %self.dir.display(), base = seg.base_offset, why, "deleted segment");
        Ok(seg.size)
    }

    /// Flushes everything and marks the log clean, so the next open skips recovery.
    pub fn close(&mut self) -> Result<()> {
        // No bytes past the last batch survive a clean close.
        self.active_mut().trim()?;
        let active = self.active();
        active.sync()?;
        active.write_indexes(&self.dir)?;
        let marker = self.dir.join(CLEAN_SHUTDOWN_FILE);
        fs::write(&marker, b"").ctx(|| format!("writing {}", marker.display()))?;
        sync_dir(&self.dir)
    }

    /// Deletes the log and its directory.
    pub fn delete(self) -> Result<()> {
        fs::remove_dir_all(&self.dir).ctx(|| format!("deleting {}", self.dir.display()))
    }
}

fn read_log_start(dir: &Path) -> i64 {
    fs::read_to_string(dir.join(LOG_START_FILE))
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .unwrap_or(0)
}

/// Writes the log start file durably (temp file, fsync, rename, fsync dir).
fn write_log_start(dir: &Path, offset: i64) -> Result<()> {
    let path = dir.join(LOG_START_FILE);
    let tmp = dir.join(format!("{LOG_START_FILE}.tmp"));
    {
        use std::io::Write;
        let mut f = fs::File::create(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
        f.write_all(format!("{offset}\n").as_bytes())
            .ctx(|| format!("writing {}", tmp.display()))?;
        f.sync_all().ctx(|| format!("fsync {}", tmp.display()))?;
    }
    fs::rename(&tmp, &path).ctx(|| format!("renaming {}", tmp.display()))?;
    sync_dir(dir)
}

fn remove_log_start(dir: &Path) -> Result<()> {
    let path = dir.join(LOG_START_FILE);
    match fs::remove_file(&path) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).ctx(|| format!("removing {}", path.display())),
    }
}
