//! The Raft log and vote, on disk.
//!
//! The log is one append-only journal file of records, each `[len u32 LE][crc32c u32 LE]
//! [JSON payload]`. A record appends an entry, truncates the tail or purges the head; replaying
//! the journal in order rebuilds the log. Every record is fsynced before the call returns (the
//! append callback fires only after that), so nothing Raft counted as persisted is lost on
//! kill -9. A torn or corrupt tail is cut at the last valid record on open, the way the
//! partition logs recover. After purges the journal is rewritten (atomically) when dead records
//! dominate, so it does not grow without bound.
//!
//! Metadata logs are small, so all live entries are also kept in memory; readers never touch
//! the file.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use serde::{Deserialize, Serialize};

use crate::fsutil::{sync_dir, write_atomic};
use crate::{MetadataError, NodeId, TypeConfig};

const LOG_FILE: &str = "raft-log";
const VOTE_FILE: &str = "raft-vote.json";
/// A record larger than this is treated as corruption (a metadata entry is far smaller).
const MAX_RECORD: usize = 64 << 20;
const HEADER: usize = 8;

#[derive(Serialize, Deserialize)]
enum Record {
    /// Appends an entry; any entry at or after its index is gone (a later append after a
    /// truncation supersedes the old tail).
    Append(Entry<TypeConfig>),
    /// Removes every entry with index >= this.
    Truncate(u64),
    /// Removes every entry up to and including this log id.
    Purge(LogId<NodeId>),
}

#[derive(Default)]
struct LogMem {
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    last_purged: Option<LogId<NodeId>>,
}

impl LogMem {
    fn apply(&mut self, rec: Record) {
        match rec {
            Record::Append(e) => {
                let idx = e.log_id.index;
                self.entries.split_off(&idx);
                self.entries.insert(idx, e);
            }
            Record::Truncate(idx) => {
                self.entries.split_off(&idx);
            }
            Record::Purge(log_id) => {
                self.entries = self.entries.split_off(&(log_id.index + 1));
                if self.last_purged.is_none_or(|p| p.index < log_id.index) {
                    self.last_purged = Some(log_id);
                }
            }
        }
    }
}

/// The log store given to openraft (single writer).
pub struct LogStore {
    dir: PathBuf,
    file: Arc<File>,
    mem: Arc<Mutex<LogMem>>,
    /// Records in the journal file, live or dead; drives compaction.
    records_in_file: usize,
    vote: Option<Vote<NodeId>>,
    /// The data dir lock lives as long as the store, i.e. until the Raft core has stopped.
    _lock: File,
}

/// A read-only view of the log, for openraft's replication tasks.
#[derive(Clone)]
pub struct LogReader {
    mem: Arc<Mutex<LogMem>>,
}

fn lock_mem(m: &Mutex<LogMem>) -> MutexGuard<'_, LogMem> {
    // The map is only mutated by whole-record operations, so a panic elsewhere cannot leave
    // it half-updated: a poisoned lock is safe to reuse.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn encode(rec: &Record, out: &mut Vec<u8>) -> io::Result<()> {
    let payload = serde_json::to_vec(rec).map_err(io::Error::other)?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| (*l as usize) <= MAX_RECORD)
        .ok_or_else(|| io::Error::other("raft log record too large"))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// Decodes records from the start of `buf`; returns them and the length of the valid prefix.
fn decode_all(buf: &[u8]) -> (Vec<Record>, usize) {
    let mut recs = Vec::new();
    let mut pos = 0;
    while buf.len() - pos >= HEADER {
        let len = u32::from_le_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]) as usize;
        let crc = u32::from_le_bytes([buf[pos + 4], buf[pos + 5], buf[pos + 6], buf[pos + 7]]);
        if len > MAX_RECORD || buf.len() - pos - HEADER < len {
            break;
        }
        let payload = &buf[pos + HEADER..pos + HEADER + len];
        if crc32c::crc32c(payload) != crc {
            break;
        }
        match serde_json::from_slice::<Record>(payload) {
            Ok(r) => recs.push(r),
            Err(_) => break,
        }
        pos += HEADER + len;
    }
    (recs, pos)
}

/// What `LogStore::open` does with journal bytes from disk, for the fuzz target
/// (`fuzzing::raft_log`): decode the valid prefix and replay it. Returns (records, valid bytes).
pub(crate) fn replay_for_fuzzing(buf: &[u8]) -> (usize, usize) {
    let (recs, valid) = decode_all(buf);
    let n = recs.len();
    let mut mem = LogMem::default();
    for r in recs {
        mem.apply(r);
    }
    (n, valid)
}

/// A journal record holding `payload` with a correct length and CRC, so the fuzzer reaches
/// the JSON decoding behind the checksum.
pub(crate) fn frame_record_for_fuzzing(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn write_sync(file: &File, bytes: &[u8]) -> io::Result<()> {
    let mut f = file;
    f.write_all(bytes)?;
    f.sync_data()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("blocking I/O task failed: {e}")))?
}

impl LogStore {
    /// Opens (or creates) the log and vote in `dir`, recovering a torn journal tail.
    pub fn open(dir: &Path, lock: File) -> Result<LogStore, MetadataError> {
        let path = dir.join(LOG_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| MetadataError::io(format!("open {}", path.display()), e))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)
            .map_err(|e| MetadataError::io(format!("read {}", path.display()), e))?;
        let (recs, valid) = decode_all(&buf);
        if valid < buf.len() {
            tracing::warn!(
                path = %path.display(),
                valid,
                len = buf.len(),
                "raft log has a torn or corrupt tail; truncating at the last valid record"
            );
            file.set_len(valid as u64)
                .and_then(|_| file.sync_all())
                .map_err(|e| MetadataError::io(format!("truncate {}", path.display()), e))?;
        }
        let records_in_file = recs.len();
        let mut mem = LogMem::default();
        for r in recs {
            mem.apply(r);
        }
        // Make a freshly created journal's directory entry durable.
        sync_dir(dir).map_err(|e| MetadataError::io(format!("fsync {}", dir.display()), e))?;

        let vote_path = dir.join(VOTE_FILE);
        let vote = match std::fs::read(&vote_path) {
            Ok(b) => Some(
                serde_json::from_slice(&b).map_err(|e| MetadataError::Corrupt {
                    path: vote_path.clone(),
                    reason: e.to_string(),
                })?,
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(MetadataError::io(
                    format!("read {}", vote_path.display()),
                    e,
                ))
            }
        };
        Ok(LogStore {
            dir: dir.to_path_buf(),
            file: Arc::new(file),
            mem: Arc::new(Mutex::new(mem)),
            records_in_file,
            vote,
            _lock: lock,
        })
    }

    async fn write_records(&mut self, recs: &[Record]) -> io::Result<()> {
        let mut bytes = Vec::new();
        for r in recs {
            encode(r, &mut bytes)?;
        }
        let file = self.file.clone();
        blocking(move || write_sync(&file, &bytes)).await?;
        self.records_in_file += recs.len();
        Ok(())
    }

    /// Rewrites the journal with only the live entries once dead records dominate.
    async fn maybe_compact(&mut self) -> io::Result<()> {
        let (live, purged) = {
            let m = lock_mem(&self.mem);
            if self.records_in_file <= 2 * m.entries.len() + 256 {
                return Ok(());
            }
            (
                m.entries.values().cloned().collect::<Vec<_>>(),
                m.last_purged,
            )
        };
        let mut bytes = Vec::new();
        let mut count = 0;
        if let Some(p) = purged {
            encode(&Record::Purge(p), &mut bytes)?;
            count += 1;
        }
        for e in live {
            encode(&Record::Append(e), &mut bytes)?;
            count += 1;
        }
        let path = self.dir.join(LOG_FILE);
        let file = blocking(move || {
            write_atomic(&path, &bytes)?;
            OpenOptions::new().read(true).append(true).open(&path)
        })
        .await?;
        self.file = Arc::new(file);
        self.records_in_file = count;
        Ok(())
    }
}

fn read_range<RB: RangeBounds<u64>>(mem: &Mutex<LogMem>, range: RB) -> Vec<Entry<TypeConfig>> {
    let start = match range.start_bound() {
        Bound::Included(s) => Bound::Included(*s),
        Bound::Excluded(s) => Bound::Excluded(*s),
        Bound::Unbounded => Bound::Unbounded,
    };
    let end = match range.end_bound() {
        Bound::Included(s) => Bound::Included(*s),
        Bound::Excluded(s) => Bound::Excluded(*s),
        Bound::Unbounded => Bound::Unbounded,
    };
    lock_mem(mem)
        .entries
        .range((start, end))
        .map(|(_, e)| e.clone())
        .collect()
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        Ok(read_range(&self.mem, range))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        Ok(read_range(&self.mem, range))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let m = lock_mem(&self.mem);
        let last_purged_log_id = m.last_purged;
        let last_log_id = m
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            mem: self.mem.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let bytes = serde_json::to_vec(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        let path = self.dir.join(VOTE_FILE);
        blocking(move || write_atomic(&path, &bytes))
            .await
            .map_err(|e| StorageIOError::write_vote(&e))?;
        self.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let recs: Vec<Record> = entries.into_iter().map(Record::Append).collect();
        if let Err(e) = self.write_records(&recs).await {
            let se = StorageIOError::write_logs(&e);
            callback.log_io_completed(Err(e));
            return Err(se.into());
        }
        {
            let mut m = lock_mem(&self.mem);
            for r in recs {
                m.apply(r);
            }
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let rec = Record::Truncate(log_id.index);
        self.write_records(std::slice::from_ref(&rec))
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        lock_mem(&self.mem).apply(rec);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let rec = Record::Purge(log_id);
        self.write_records(std::slice::from_ref(&rec))
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        lock_mem(&self.mem).apply(rec);
        self.maybe_compact()
            .await
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::MetadataCommand;

    fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(MetadataCommand::DeleteTopic {
                name: format!("t{index}"),
            }),
        }
    }

    fn open(dir: &Path) -> LogStore {
        let lock = File::create(dir.join(".lock")).unwrap();
        LogStore::open(dir, lock).unwrap()
    }

    async fn append(s: &mut LogStore, entries: Vec<Entry<TypeConfig>>) {
        // LogFlushed cannot be built outside openraft, so tests go through the records path.
        let recs: Vec<Record> = entries.into_iter().map(Record::Append).collect();
        s.write_records(&recs).await.unwrap();
        let mut m = lock_mem(&s.mem);
        for r in recs {
            m.apply(r);
        }
    }

    async fn indexes(s: &mut LogStore) -> Vec<(u64, u64)> {
        s.try_get_log_entries(..)
            .await
            .unwrap()
            .iter()
            .map(|e| (e.log_id.leader_id.term, e.log_id.index))
            .collect()
    }

    #[tokio::test]
    async fn replay_truncate_purge_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = open(dir.path());
            append(&mut s, (1..=5).map(|i| entry(1, i)).collect()).await;
            s.truncate(LogId::new(CommittedLeaderId::new(1, 1), 4))
                .await
                .unwrap();
            append(&mut s, vec![entry(2, 4)]).await;
            s.purge(LogId::new(CommittedLeaderId::new(1, 1), 1))
                .await
                .unwrap();
            s.save_vote(&Vote::new(2, 1)).await.unwrap();
        }
        // A torn write: half a header of garbage at the end.
        let log = dir.path().join(LOG_FILE);
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(&[9, 9, 9]).unwrap();
        drop(f);
        let len_with_garbage = std::fs::metadata(&log).unwrap().len();

        let mut s = open(dir.path());
        assert_eq!(indexes(&mut s).await, vec![(1, 2), (1, 3), (2, 4)]);
        let st = s.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id.map(|l| l.index), Some(1));
        assert_eq!(st.last_log_id.map(|l| l.index), Some(4));
        assert_eq!(s.read_vote().await.unwrap(), Some(Vote::new(2, 1)));
        assert_eq!(std::fs::metadata(&log).unwrap().len(), len_with_garbage - 3);
        assert_eq!(indexes(&mut s).await.len(), 3);
        let some: Vec<_> = s.try_get_log_entries(3..=4).await.unwrap();
        assert_eq!(some.len(), 2);
    }

    #[tokio::test]
    async fn corrupt_record_cuts_the_tail_and_purge_compacts() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = open(dir.path());
            append(&mut s, (1..=400).map(|i| entry(1, i)).collect()).await;
            s.purge(LogId::new(CommittedLeaderId::new(1, 1), 390))
                .await
                .unwrap();
            // Compaction rewrote the journal to the purge marker plus 10 live entries.
            assert_eq!(s.records_in_file, 11);
            append(&mut s, vec![entry(1, 401)]).await;
        }
        // Flip a byte inside the last record's payload: its CRC no longer matches.
        let log = dir.path().join(LOG_FILE);
        let mut bytes = std::fs::read(&log).unwrap();
        let n = bytes.len();
        bytes[n - 2] ^= 0xff;
        std::fs::write(&log, &bytes).unwrap();
        let mut s = open(dir.path());
        let idx = indexes(&mut s).await;
        assert_eq!(idx.first(), Some(&(1, 391)));
        assert_eq!(idx.last(), Some(&(1, 400)));
        let st = s.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id.map(|l| l.index), Some(390));
    }
}
