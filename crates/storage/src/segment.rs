//! One segment: `<base>.log` holding batches back to back, plus a sparse offset index and a
//! time index. Indexes live in memory while the segment is active and are written out when
//! it is sealed (rolled) or the log is closed cleanly; after a crash the active segment's
//! indexes are rebuilt by the recovery scan, and a sealed segment's indexes are rebuilt
//! if their files fail a sanity check.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{self, BatchHeader, HEADER_LEN};
use crate::error::{IoContext, Result, StorageError};
use crate::open_files::SegmentFile;

const OFFSET_INDEX_ENTRY: usize = 8;
/// The offset index's last entry, since issue 21: this marker in place of a relative
/// offset, then the CRC32C of everything before it and of the time index. A file without
/// it (written before) is loaded on its sanity checks alone, as it used to be.
const INDEX_CRC_MARKER: u32 = u32::MAX;
const TIME_INDEX_ENTRY: usize = 12;
/// Batches are scanned in chunks of this size during recovery and index rebuilds.
const SCAN_CHUNK: usize = 1 << 20;
/// With `preallocate`, how far past the last batch the file is kept zero-filled.
pub(crate) const ZERO_AHEAD: u64 = 256 << 10;
static ZEROS: [u8; ZERO_AHEAD as usize] = [0; ZERO_AHEAD as usize];
/// Only an append this small zero-fills ahead. A larger one means a busy log whose group
/// commits carry many bytes each: there the metadata write the zeros save is small next
/// to the data, and the zeros would double the bytes each commit flushes.
pub(crate) const ZERO_AHEAD_MAX_APPEND: usize = 16 << 10;
/// Zeros are written only once a segment holds this much: a log that stores a message or
/// two (an idle queue among tens of thousands) takes the disk its data takes.
pub(crate) const ZERO_AHEAD_MIN_SIZE: u64 = 64 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub rel_offset: u32,
    pub position: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub timestamp: i64,
    pub rel_offset: u32,
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub base_offset: i64,
    /// Offset after the last batch in this segment.
    pub next_offset: i64,
    /// Opened on demand (`open_files`): closed when idle and clean under fd pressure.
    pub file: SegmentFile,
    pub log_path: PathBuf,
    /// Bytes of whole batches. With `preallocate` the file is longer: zeros follow.
    pub size: u64,
    /// End of the file's zero-filled tail (`size` when there is none).
    pub zeroed_to: u64,
    pub index: Vec<OffsetEntry>,
    pub time_index: Vec<TimeEntry>,
    pub max_timestamp: i64,
    /// Wall-clock time the segment was created (or its first timestamp after a restart),
    /// for `segment.ms` rolls.
    pub created_ms: i64,
    bytes_since_index: u64,
    index_interval: u64,
}

pub(crate) fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

/// Reads `len` bytes at `pos` into a new buffer, without zero-filling it first (the
/// fetch path reads up to megabytes per request; zeroing doubled its cost).
pub(crate) fn read_new(file: &File, pos: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let at = pos + buf.len() as u64;
        let n = rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), at)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    // The allocator may have given more capacity than asked, so more may have been read.
    buf.truncate(len);
    Ok(buf)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("fsync of directory {}", dir.display()))
}

/// Outcome of scanning a segment's batches.
struct Scan {
    valid_size: u64,
    /// Why the scan stopped before the end of the file, if it did.
    stopped: Option<String>,
}

impl Segment {
    pub fn create(dir: &Path, base_offset: i64, index_interval: u64, now_ms: i64) -> Result<Self> {
        let log_path = dir.join(format!("{}.log", file_stem(base_offset)));
        let file = SegmentFile::create(&log_path)
            .ctx(|| format!("creating segment {}", log_path.display()))?;
        sync_dir(dir)?;
        Ok(Segment {
            base_offset,
            next_offset: base_offset,
            file,
            log_path,
            size: 0,
            zeroed_to: 0,
            index: Vec::new(),
            time_index: Vec::new(),
            max_timestamp: -1,
            created_ms: now_ms,
            bytes_since_index: 0,
            index_interval: index_interval.max(1),
        })
    }

    /// Opens an existing segment. `recover` = validate every batch by CRC and truncate at
    /// the first bad one (the active segment after an unclean shutdown); otherwise trust the
    /// index files if they pass a sanity check, else rebuild them from batch headers.
    /// `recover`: the active segment after an unclean shutdown (its unsynced tail may be
    /// torn: cut at the first invalid batch). `sealed`: a segment before the active one,
    /// synced when it was rolled; damage found in it is corruption, never cut away
    /// (cutting would leave a hole readers skip silently): the bytes stay and reads that
    /// reach the damage fail.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        index_interval: u64,
        recover: bool,
        sealed: bool,
    ) -> Result<Self> {
        let log_path = dir.join(format!("{}.log", file_stem(base_offset)));
        let file = SegmentFile::open(&log_path)
            .ctx(|| format!("opening segment {}", log_path.display()))?;
        let size = file
            .get()
            .and_then(|f| f.metadata())
            .ctx(|| format!("stat {}", log_path.display()))?
            .len();
        let mut seg = Segment {
            base_offset,
            next_offset: base_offset,
            file,
            log_path,
            size,
            zeroed_to: size,
            index: Vec::new(),
            time_index: Vec::new(),
            max_timestamp: -1,
            created_ms: 0,
            bytes_since_index: 0,
            index_interval: index_interval.max(1),
        };
        if !recover && seg.load_indexes(dir)? {
            return Ok(seg);
        }
        let file_len = seg.size;
        let scan = seg.rebuild(recover)?;
        if let Some(reason) = scan.stopped {
            if sealed && !recover && !seg.zeros_at(scan.valid_size, file_len) {
                tracing::error!(
                    segment = %seg.log_path.display(),
                    position = scan.valid_size,
                    %reason,
                    "sealed segment is damaged; reads from this position on fail until it is repaired"
                );
                seg.size = file_len;
                seg.zeroed_to = file_len;
                return Ok(seg);
            }
            if seg.zeros_at(scan.valid_size, file_len) {
                // The zero-filled tail `preallocate` keeps past the last batch.
                tracing::debug!(
                    segment = %seg.log_path.display(),
                    valid_bytes = scan.valid_size,
                    dropped_bytes = file_len - scan.valid_size,
                    "trimming the zero-filled tail of segment"
                );
            } else {
                tracing::warn!(
                    segment = %seg.log_path.display(),
                    valid_bytes = scan.valid_size,
                    dropped_bytes = file_len - scan.valid_size,
                    %reason,
                    "truncating invalid tail of segment"
                );
            }
            let f = seg.handle()?;
            f.set_len(scan.valid_size)
                .ctx(|| format!("truncating {}", seg.log_path.display()))?;
            f.sync_all()
                .ctx(|| format!("fsync {}", seg.log_path.display()))?;
            seg.size = scan.valid_size;
        }
        seg.zeroed_to = seg.size;
        Ok(seg)
    }

    /// Whether the file holds only zeros from `pos` on (up to one page is checked).
    fn zeros_at(&self, pos: u64, file_len: u64) -> bool {
        let len = (file_len.saturating_sub(pos)).min(4096) as usize;
        let mut buf = vec![1u8; len];
        len > 0
            && self
                .file
                .get()
                .and_then(|f| f.read_exact_at(&mut buf, pos))
                .is_ok()
            && buf.iter().all(|b| *b == 0)
    }

    fn index_paths(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let stem = file_stem(self.base_offset);
        (
            dir.join(format!("{stem}.index")),
            dir.join(format!("{stem}.timeindex")),
        )
    }

    /// Loads index files if they are present and consistent with the log file.
    fn load_indexes(&mut self, dir: &Path) -> Result<bool> {
        let (idx_path, tidx_path) = self.index_paths(dir);
        let (Ok(mut idx), Ok(tidx)) = (fs::read(&idx_path), fs::read(&tidx_path)) else {
            return Ok(false);
        };
        let n = idx.len();
        if n >= OFFSET_INDEX_ENTRY
            && n % OFFSET_INDEX_ENTRY == 0
            && idx[n - 8..n - 4] == INDEX_CRC_MARKER.to_be_bytes()
        {
            let stored = u32::from_be_bytes([idx[n - 4], idx[n - 3], idx[n - 2], idx[n - 1]]);
            idx.truncate(n - OFFSET_INDEX_ENTRY);
            let computed = crc32c::crc32c_append(crc32c::crc32c(&idx), &tidx);
            if computed != stored {
                tracing::warn!(segment = %self.log_path.display(), stored, computed, "index files fail their checksum; rebuilding them from the log");
                return Ok(false);
            }
        }
        // The offset index always has an entry for the first batch, and a trailer entry
        // (next_offset, size) written at seal time so the segment's extent is known without a scan.
        if idx.len() % OFFSET_INDEX_ENTRY != 0
            || tidx.len() % TIME_INDEX_ENTRY != 0
            || idx.len() < 2 * OFFSET_INDEX_ENTRY
        {
            return Ok(false);
        }
        let mut index: Vec<OffsetEntry> = idx
            .chunks_exact(OFFSET_INDEX_ENTRY)
            .map(|c| OffsetEntry {
                rel_offset: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                position: u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        let trailer = index.pop().unwrap_or(OffsetEntry {
            rel_offset: 0,
            position: 0,
        });
        let monotonic = index
            .windows(2)
            .all(|w| w[0].rel_offset < w[1].rel_offset && w[0].position < w[1].position);
        if !monotonic
            || u64::from(trailer.position) != self.size
            || index.first().is_some_and(|e| e.position != 0)
        {
            return Ok(false);
        }
        let time_index: Vec<TimeEntry> = tidx
            .chunks_exact(TIME_INDEX_ENTRY)
            .map(|c| {
                let mut ts = [0u8; 8];
                ts.copy_from_slice(&c[..8]);
                TimeEntry {
                    timestamp: i64::from_be_bytes(ts),
                    rel_offset: u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
                }
            })
            .collect();
        // Spot-check: the batch at the last index entry starts where the index says.
        if let Some(last) = index.last() {
            let mut head = [0u8; 12];
            if self
                .file
                .get()
                .and_then(|f| f.read_exact_at(&mut head, u64::from(last.position)))
                .is_err()
            {
                return Ok(false);
            }
            match batch::peek_offset_and_size(&head) {
                Some((off, _)) if off == self.base_offset + i64::from(last.rel_offset) => {}
                _ => return Ok(false),
            }
        }
        self.next_offset = self.base_offset + i64::from(trailer.rel_offset);
        self.max_timestamp = time_index.last().map_or(-1, |t| t.timestamp);
        self.created_ms = self.max_timestamp;
        self.index = index;
        self.time_index = time_index;
        Ok(true)
    }

    /// Rebuilds indexes by reading every batch header. With `check_crc`, each batch's CRC
    /// is verified too and the scan stops at the first invalid batch.
    fn rebuild(&mut self, check_crc: bool) -> Result<Scan> {
        self.index.clear();
        self.time_index.clear();
        self.max_timestamp = -1;
        self.bytes_since_index = 0;
        self.next_offset = self.base_offset;
        let mut pos: u64 = 0;
        let mut buf = Vec::new();
        let mut stopped = None;
        let mut valid_size = self.size;
        'outer: while pos < self.size {
            let want = ((self.size - pos) as usize).min(SCAN_CHUNK);
            buf.resize(want, 0);
            self.handle()?
                .read_exact_at(&mut buf, pos)
                .ctx(|| format!("reading {}", self.log_path.display()))?;
            let mut at = 0usize;
            while at < buf.len() {
                let rest = &buf[at..];
                let header = match batch::parse_header(rest) {
                    Ok(h) => h,
                    Err(_)
                        if rest.len() < HEADER_LEN
                            && pos + (at as u64) + (rest.len() as u64) < self.size =>
                    {
                        break
                    }
                    Err(e) => {
                        stopped = Some(e.to_string());
                        valid_size = pos + at as u64;
                        break 'outer;
                    }
                };
                if header.size > rest.len() {
                    if pos + at as u64 + header.size as u64 > self.size {
                        stopped = Some(format!(
                            "batch of {} bytes runs past end of file",
                            header.size
                        ));
                        valid_size = pos + at as u64;
                        break 'outer;
                    }
                    if at == 0 {
                        // A batch larger than the chunk: read it whole.
                        buf.resize(header.size, 0);
                        self.handle()?
                            .read_exact_at(&mut buf, pos)
                            .ctx(|| format!("reading {}", self.log_path.display()))?;
                        continue;
                    }
                    break;
                }
                let whole = &rest[..header.size];
                if check_crc {
                    if let Err(e) = batch::validate(whole) {
                        stopped = Some(e.to_string());
                        valid_size = pos + at as u64;
                        break 'outer;
                    }
                }
                if header
                    .base_offset
                    .checked_add(i64::from(header.last_offset_delta) + 1)
                    .is_none()
                {
                    // Only corruption gets here; found by the log_recovery fuzz target.
                    stopped = Some(format!(
                        "offsets {}+{} run past the largest offset",
                        header.base_offset, header.last_offset_delta
                    ));
                    valid_size = pos + at as u64;
                    break 'outer;
                }
                if header.base_offset < self.next_offset {
                    stopped = Some(format!(
                        "offset {} goes backwards (expected >= {})",
                        header.base_offset, self.next_offset
                    ));
                    valid_size = pos + at as u64;
                    break 'outer;
                }
                // Batches in a segment are contiguous (no compaction or transactions yet):
                // a base offset that jumps ahead is damage, and taken as it is it would
                // move the segment's end past the next segment's start.
                if !self.index.is_empty() && header.base_offset != self.next_offset {
                    stopped = Some(format!(
                        "batch base offset {} where the segment continues at {}",
                        header.base_offset, self.next_offset
                    ));
                    valid_size = pos + at as u64;
                    break 'outer;
                }
                self.note_appended(&header, (pos + at as u64) as u32);
                at += header.size;
            }
            pos += at as u64;
        }
        self.size = valid_size;
        self.created_ms = self.max_timestamp;
        Ok(Scan {
            valid_size,
            stopped,
        })
    }

    /// Updates in-memory indexes for a batch written at `position`.
    pub fn note_appended(&mut self, header: &BatchHeader, position: u32) {
        let rel = (header.base_offset - self.base_offset) as u32;
        if self.index.is_empty() || self.bytes_since_index >= self.index_interval {
            self.index.push(OffsetEntry {
                rel_offset: rel,
                position,
            });
            if header.max_timestamp > self.max_timestamp {
                self.time_index.push(TimeEntry {
                    timestamp: header.max_timestamp,
                    rel_offset: rel,
                });
            }
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += header.size as u64;
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        self.next_offset = header.last_offset() + 1;
    }

    /// Writes `bytes` (whole batches) at the end of the segment. With `zero_ahead`, the
    /// file is also kept zero-filled for `ZERO_AHEAD` bytes past them, up to `limit`:
    /// once the group commit has synced those zeros, a later write lands in blocks that
    /// are allocated and inside the file size, so its fdatasync has no metadata to write,
    /// only data (on ext4 that saves one synchronous write per fdatasync). The file grows
    /// once per `ZERO_AHEAD` instead of on every append. Only appends up to
    /// `ZERO_AHEAD_MAX_APPEND` bytes zero-fill, and only once the segment holds
    /// `ZERO_AHEAD_MIN_SIZE` bytes.
    pub fn write(&mut self, bytes: &[u8], zero_ahead: bool, limit: u64) -> Result<()> {
        let end = self.size + bytes.len() as u64;
        let f = self.handle()?;
        self.file.wrote();
        f.write_all_at(bytes, self.size)
            .ctx(|| format!("appending to {}", self.log_path.display()))?;
        self.size = end;
        self.zeroed_to = self.zeroed_to.max(end);
        if zero_ahead
            && bytes.len() <= ZERO_AHEAD_MAX_APPEND
            && end >= ZERO_AHEAD_MIN_SIZE
            && self.zeroed_to < end + ZERO_AHEAD / 2
        {
            let target = (end + ZERO_AHEAD).min(limit.max(end));
            if let Err(e) = self.zero_fill(target) {
                // The batches are written; without the zeros the next fdatasync only
                // costs more. Cut whatever part of them was written (if that fails too,
                // the next trim does it).
                tracing::debug!(segment = %self.log_path.display(), error = %e, "zero-filling ahead failed; going on without");
                let _ = self.trim();
            }
        }
        Ok(())
    }

    fn zero_fill(&mut self, target: u64) -> std::io::Result<()> {
        let f = self.file.get()?;
        self.file.wrote();
        while self.zeroed_to < target {
            let n = (target - self.zeroed_to).min(ZERO_AHEAD) as usize;
            // Counted before the write, so a failed one is still cut off by `trim`.
            let at = self.zeroed_to;
            self.zeroed_to += n as u64;
            f.write_all_at(&ZEROS[..n], at)?;
        }
        Ok(())
    }

    /// Cuts the file back to its batches: zeros, or anything else, past them go (before
    /// sealing, on a clean close, after a failed zero-fill).
    pub fn trim(&mut self) -> Result<()> {
        self.file.wrote();
        self.handle()?
            .set_len(self.size)
            .ctx(|| format!("trimming {}", self.log_path.display()))?;
        self.zeroed_to = self.size;
        Ok(())
    }

    /// Cuts the file at `len` after a failed write.
    pub fn cut(&mut self, len: u64) {
        self.file.wrote();
        let _ = self.file.get().and_then(|f| f.set_len(len));
        self.size = len;
        self.zeroed_to = len;
    }

    pub fn sync(&self) -> Result<()> {
        let writes = self.file.writes();
        self.handle()?
            .sync_data()
            .ctx(|| format!("fdatasync {}", self.log_path.display()))?;
        self.file.synced(writes);
        Ok(())
    }

    /// The open file (reopened if it was closed while idle).
    pub fn handle(&self) -> Result<Arc<File>> {
        self.file
            .get()
            .ctx(|| format!("opening segment {}", self.log_path.display()))
    }

    /// Flushes data and writes the index files (sealing, or a clean shutdown).
    pub fn write_indexes(&self, dir: &Path) -> Result<()> {
        let (idx_path, tidx_path) = self.index_paths(dir);
        let mut idx = Vec::with_capacity((self.index.len() + 1) * OFFSET_INDEX_ENTRY);
        for e in &self.index {
            idx.extend_from_slice(&e.rel_offset.to_be_bytes());
            idx.extend_from_slice(&e.position.to_be_bytes());
        }
        idx.extend_from_slice(&((self.next_offset - self.base_offset) as u32).to_be_bytes());
        idx.extend_from_slice(&(self.size as u32).to_be_bytes());
        let mut tidx = Vec::with_capacity(self.time_index.len() * TIME_INDEX_ENTRY);
        for e in &self.time_index {
            tidx.extend_from_slice(&e.timestamp.to_be_bytes());
            tidx.extend_from_slice(&e.rel_offset.to_be_bytes());
        }
        let crc = crc32c::crc32c_append(crc32c::crc32c(&idx), &tidx);
        idx.extend_from_slice(&INDEX_CRC_MARKER.to_be_bytes());
        idx.extend_from_slice(&crc.to_be_bytes());
        for (path, data) in [(idx_path, idx), (tidx_path, tidx)] {
            let ctx = || format!("writing index {}", path.display());
            let mut f = File::create(&path).ctx(ctx)?;
            f.write_all(&data).ctx(ctx)?;
            f.sync_data().ctx(ctx)?;
        }
        Ok(())
    }

    pub fn delete_files(&self, dir: &Path) -> Result<()> {
        let (idx_path, tidx_path) = self.index_paths(dir);
        for p in [&self.log_path, &idx_path, &tidx_path] {
            match fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(StorageError::Io {
                        context: format!("deleting {}", p.display()),
                        source: e,
                    })
                }
            }
        }
        Ok(())
    }

    pub fn remove_index_files(&self, dir: &Path) {
        let (idx_path, tidx_path) = self.index_paths(dir);
        let _ = fs::remove_file(idx_path);
        let _ = fs::remove_file(tidx_path);
    }

    /// Position of the sparse index entry at or before `offset`.
    pub fn index_position_for(&self, offset: i64) -> u64 {
        self.index_entry_for(offset).0
    }

    /// The sparse index entry at or before `offset`: its position and the base offset of
    /// the batch that starts there (None before the first entry, unless that is at 0).
    fn index_entry_for(&self, offset: i64) -> (u64, Option<i64>) {
        let rel = (offset - self.base_offset).max(0) as u64;
        let i = self
            .index
            .partition_point(|e| u64::from(e.rel_offset) <= rel);
        let entry = match i {
            0 => self.index.first().filter(|e| e.position == 0),
            i => self.index.get(i - 1),
        };
        entry.map_or((0, None), |e| {
            (
                u64::from(e.position),
                Some(self.base_offset + i64::from(e.rel_offset)),
            )
        })
    }

    /// Position of the time index entry to start scanning from for `timestamp`: the last
    /// entry whose timestamp is below it.
    pub fn time_position_for(&self, timestamp: i64) -> u64 {
        let i = self.time_index.partition_point(|e| e.timestamp < timestamp);
        if i == 0 {
            0
        } else {
            self.index_position_for(self.base_offset + i64::from(self.time_index[i - 1].rel_offset))
        }
    }

    /// Finds the first batch whose last offset is >= `offset`, scanning headers from the
    /// sparse index entry. Returns (position, header) or None if past the end. With
    /// `verify_reads`, the headers scanned must form the log's chain: the first starts at
    /// the entry's offset, each next one where the one before ends, all inside the
    /// segment; a header that breaks it is `CorruptStoredData`, never a batch to serve.
    pub fn find_batch(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        let (pos, expected) = self.index_entry_for(offset);
        let expected = expected.filter(|_| crate::verify_reads());
        self.scan_chain(pos, expected, |h| h.last_offset() >= offset)
    }

    /// Scans batch headers from `pos` until `stop` says so.
    pub fn scan_from(
        &self,
        pos: u64,
        stop: impl FnMut(&BatchHeader) -> bool,
    ) -> Result<Option<(u64, BatchHeader)>> {
        self.scan_chain(pos, None, stop)
    }

    /// As `scan_from`; with `expected` (the base offset of the batch at `pos`), checks the
    /// chain of base offsets and that each batch lies within the segment.
    fn scan_chain(
        &self,
        mut pos: u64,
        mut expected: Option<i64>,
        mut stop: impl FnMut(&BatchHeader) -> bool,
    ) -> Result<Option<(u64, BatchHeader)>> {
        let mut head = [0u8; HEADER_LEN];
        let f = if pos + HEADER_LEN as u64 <= self.size {
            Some(self.handle()?)
        } else {
            None
        };
        while let Some(f) = f.as_ref().filter(|_| pos + HEADER_LEN as u64 <= self.size) {
            f.read_exact_at(&mut head, pos)
                .ctx(|| format!("reading {}", self.log_path.display()))?;
            let header =
                batch::parse_header(&head).map_err(|e| StorageError::CorruptStoredData {
                    path: self.log_path.clone(),
                    position: pos,
                    reason: e.to_string(),
                })?;
            if let Some(want) = expected {
                let reason = if header.base_offset != want {
                    Some(format!(
                        "batch base offset {} where the log continues at {want}",
                        header.base_offset
                    ))
                } else if pos + header.size as u64 > self.size {
                    Some(format!(
                        "batch of {} bytes runs past the segment's {} bytes",
                        header.size, self.size
                    ))
                } else if header.last_offset() >= self.next_offset {
                    Some(format!(
                        "batch ends at offset {}, past the segment's end {}",
                        header.last_offset(),
                        self.next_offset
                    ))
                } else {
                    None
                };
                if let Some(reason) = reason {
                    return Err(StorageError::CorruptStoredData {
                        path: self.log_path.clone(),
                        position: pos,
                        reason,
                    });
                }
                expected = Some(header.last_offset() + 1);
            }
            if stop(&header) {
                return Ok(Some((pos, header)));
            }
            pos += header.size as u64;
        }
        Ok(None)
    }

    /// Truncates the segment so that it ends before the batch containing `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        let Some((pos, _)) = self.find_batch(offset)? else {
            return Ok(());
        };
        let f = self.handle()?;
        let writes = self.file.writes();
        f.set_len(pos)
            .ctx(|| format!("truncating {}", self.log_path.display()))?;
        f.sync_all()
            .ctx(|| format!("fsync {}", self.log_path.display()))?;
        self.file.synced(writes);
        self.size = pos;
        self.zeroed_to = pos;
        // Re-derive indexes and the end offset from what is left.
        self.rebuild(false)?;
        Ok(())
    }
}
