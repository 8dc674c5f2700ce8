//! Segment files opened on demand. Every segment keeps its path; its file handle lives in
//! a process-wide set of at most `capacity` open segment files, and past that the least
//! recently used clean ones are closed (a second-chance clock), so a node with 50,000 queue
//! logs holds open only those in use instead of one descriptor each.
//!
//! A file with writes not yet fsynced is never closed: after a writeback error, Linux
//! reports it only to descriptors open when it happened, so the descriptor that wrote must
//! be the one that fsyncs. A closed file reopens on its next use; fsync applies to the
//! inode, so a reopened descriptor syncs what an earlier one wrote.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// Open segment files allowed before the least recently used clean ones are closed.
pub const DEFAULT_CAPACITY: usize = 4096;

static CAPACITY: AtomicUsize = AtomicUsize::new(DEFAULT_CAPACITY);
static OPEN_COUNT: AtomicUsize = AtomicUsize::new(0);
/// Every file opened here and possibly still open, oldest first (dead entries are dropped
/// as they are met).
static OPEN: Mutex<VecDeque<Weak<Inner>>> = Mutex::new(VecDeque::new());

/// Sets how many segment files may be open at once (at least 16).
pub fn set_capacity(n: usize) {
    CAPACITY.store(n.max(16), Ordering::Relaxed);
    evict(None);
}

/// The current limit.
pub fn capacity() -> usize {
    CAPACITY.load(Ordering::Relaxed)
}

/// Segment files open now (a reader may still hold a closed one's descriptor briefly).
pub fn open_count() -> usize {
    OPEN_COUNT.load(Ordering::Relaxed)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    file: Mutex<Option<Arc<File>>>,
    /// Used since the clock hand last passed (second chance).
    used: AtomicBool,
    /// Writes made and writes known synced: dirty while `written > synced`.
    written: AtomicU64,
    synced: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let open = self
            .file
            .get_mut()
            .map_or_else(|p| p.into_inner().is_some(), |f| f.is_some());
        if open {
            OPEN_COUNT.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A segment's file: opened on use, closed when idle and clean under pressure.
#[derive(Debug, Clone)]
pub(crate) struct SegmentFile(Arc<Inner>);

impl SegmentFile {
    /// Creates (or truncates) the file and keeps it open.
    pub(crate) fn create(path: &Path) -> std::io::Result<Self> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Self::with(path, f))
    }

    /// Opens an existing file and keeps it open.
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Self::with(path, f))
    }

    fn with(path: &Path, f: File) -> Self {
        let inner = Arc::new(Inner {
            path: path.to_path_buf(),
            file: Mutex::new(Some(Arc::new(f))),
            used: AtomicBool::new(true),
            written: AtomicU64::new(0),
            synced: AtomicU64::new(0),
        });
        register(&inner);
        SegmentFile(inner)
    }

    /// The open file, reopened if it was closed.
    pub(crate) fn get(&self) -> std::io::Result<Arc<File>> {
        self.0.used.store(true, Ordering::Relaxed);
        let mut slot = lock(&self.0.file);
        if let Some(f) = &*slot {
            return Ok(Arc::clone(f));
        }
        let f = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.0.path)?,
        );
        *slot = Some(Arc::clone(&f));
        drop(slot);
        register(&self.0);
        Ok(f)
    }

    /// Call after writing (or truncating): the file stays open until `synced`.
    pub(crate) fn wrote(&self) {
        self.0.written.fetch_add(1, Ordering::AcqRel);
    }

    /// What `synced` needs: the write count before an fsync starts.
    pub(crate) fn writes(&self) -> u64 {
        self.0.written.load(Ordering::Acquire)
    }

    /// An fsync that started after `writes` writes succeeded.
    pub(crate) fn synced(&self, writes: u64) {
        self.0.synced.fetch_max(writes, Ordering::AcqRel);
    }

    fn dirty(inner: &Inner) -> bool {
        inner.written.load(Ordering::Acquire) > inner.synced.load(Ordering::Acquire)
    }
}

fn register(inner: &Arc<Inner>) {
    OPEN_COUNT.fetch_add(1, Ordering::Relaxed);
    lock(&OPEN).push_back(Arc::downgrade(inner));
    evict(Some(inner));
}

/// Closes clean, least recently used files while more than `capacity` are open.
fn evict(keep: Option<&Arc<Inner>>) {
    let cap = capacity();
    let mut q = lock(&OPEN);
    // Two passes of the clock at most: the first clears `used` marks, the second closes.
    let mut budget = 2 * q.len();
    while OPEN_COUNT.load(Ordering::Relaxed) > cap && budget > 0 {
        budget -= 1;
        let Some(w) = q.pop_front() else { break };
        let Some(victim) = w.upgrade() else { continue };
        if keep.is_some_and(|k| Arc::ptr_eq(k, &victim))
            || victim.used.swap(false, Ordering::Relaxed)
            || SegmentFile::dirty(&victim)
        {
            q.push_back(w);
            continue;
        }
        // Busy (being used right now): leave it for the next pass.
        let Ok(mut slot) = victim.file.try_lock() else {
            q.push_back(w);
            continue;
        };
        if slot.take().is_some() {
            OPEN_COUNT.fetch_sub(1, Ordering::Relaxed);
        }
    }
    // Entries of dropped segments pile up only while nothing is evicted; drop them now and then.
    if q.len() > 2 * OPEN_COUNT.load(Ordering::Relaxed) + 64 {
        q.retain(|w| w.upgrade().is_some_and(|i| lock(&i.file).is_some()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::FileExt;

    /// The cache is process-wide and other tests use it at the same time, so this one
    /// checks its own files' states rather than the global count.
    #[test]
    fn idle_clean_files_close_past_capacity_and_reopen_on_use_dirty_ones_stay_open() {
        let dir = tempfile::tempdir().unwrap();
        let before = capacity();
        set_capacity(16);
        let files: Vec<SegmentFile> = (0..40)
            .map(|i| SegmentFile::create(&dir.path().join(format!("{i}.log"))).unwrap())
            .collect();
        // One with an unsynced write must stay open whatever happens.
        let dirty = &files[0];
        dirty.get().unwrap().write_all_at(b"unsynced", 0).unwrap();
        dirty.wrote();
        for f in &files[1..] {
            f.get().unwrap().write_all_at(b"x", 0).unwrap();
            f.wrote();
            let w = f.writes();
            f.get().unwrap().sync_data().unwrap();
            f.synced(w);
        }
        // Touch nothing for two clock passes, then open more: the idle ones close.
        for i in 40..80 {
            SegmentFile::create(&dir.path().join(format!("{i}.log"))).unwrap();
        }
        let open = |f: &SegmentFile| lock(&f.0.file).is_some();
        assert!(open(dirty), "a file with unsynced writes was closed");
        let closed = files[1..].iter().filter(|f| !open(f)).count();
        assert!(closed > 0, "no idle clean file was closed");
        // A closed one reopens and still reads what was written.
        let f = files[1..].iter().find(|f| !open(f)).unwrap();
        let mut s = String::new();
        (&*f.get().unwrap()).read_to_string(&mut s).unwrap();
        assert_eq!(s, "x");
        assert!(open(f));
        set_capacity(before);
    }
}
