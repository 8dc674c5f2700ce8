//! Leader-epoch checkpoint: which leader epoch started at which offset. Replication uses it
//! to truncate a returning replica by epoch (OffsetsForLeaderEpoch), never by high watermark.
//!
//! File format (Kafka's `leader-epoch-checkpoint`): a version line `0`, a count line, then
//! one `epoch start_offset` line per entry. Written to a temp file, fsynced, renamed.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

pub const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

#[derive(Debug)]
pub struct LeaderEpochCache {
    path: PathBuf,
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// Loads the checkpoint in `dir`; a missing or unreadable file yields an empty cache
    /// (the log scan on recovery re-adds epochs it sees).
    pub fn load(dir: &Path) -> Self {
        let path = dir.join(CHECKPOINT_FILE);
        let entries = fs::read_to_string(&path).ok().and_then(|s| parse(&s)).unwrap_or_else(|| {
            if path.exists() {
                tracing::warn!(path = %path.display(), "unreadable leader-epoch checkpoint, rebuilding from log");
            }
            Vec::new()
        });
        LeaderEpochCache { path, entries }
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// The epoch the batch starting at `offset` must carry: the latest entry starting at
    /// or before it (None below the first entry).
    pub fn epoch_at(&self, offset: i64) -> Option<i32> {
        let i = self.entries.partition_point(|e| e.start_offset <= offset);
        i.checked_sub(1).map(|i| self.entries[i].epoch)
    }

    /// Records that `epoch` starts at `start_offset`, if it is newer than the latest.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<()> {
        if epoch < 0 || self.latest_epoch().is_some_and(|latest| epoch <= latest) {
            return Ok(());
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        self.persist()
    }

    /// Drops entries that start at or beyond `end_offset` (after truncating the log).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> Result<()> {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        if self.entries.len() != before {
            self.persist()?;
        }
        Ok(())
    }

    /// Forgets every entry (the log was emptied and restarts elsewhere, as Kafka's
    /// `clearAndFlush` on a full truncation): the next batch appended starts the history.
    pub fn clear(&mut self) -> Result<()> {
        if self.entries.is_empty() {
            return Ok(());
        }
        self.entries.clear();
        self.persist()
    }

    /// Drops entries wholly below `start_offset` (after retention), keeping the one that
    /// covers it.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> Result<()> {
        let covering = self
            .entries
            .iter()
            .rposition(|e| e.start_offset <= start_offset);
        if let Some(i) = covering {
            if i > 0 {
                self.entries.drain(..i);
                self.persist()?;
            }
        }
        Ok(())
    }

    /// OffsetsForLeaderEpoch: the largest epoch <= `requested` and the offset where it
    /// ended (the start of the next epoch, or `log_end_offset` if it is the latest).
    /// `None` when no epoch <= `requested` is known.
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        let i = self.entries.iter().rposition(|e| e.epoch <= requested)?;
        let end = self
            .entries
            .get(i + 1)
            .map_or(log_end_offset, |next| next.start_offset);
        Some((self.entries[i].epoch, end))
    }

    fn persist(&self) -> Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut text = format!("0\n{}\n", self.entries.len());
        for e in &self.entries {
            text.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        let ctx = || format!("writing {}", tmp.display());
        let mut f = File::create(&tmp).ctx(ctx)?;
        f.write_all(text.as_bytes()).ctx(ctx)?;
        f.sync_data().ctx(ctx)?;
        fs::rename(&tmp, &self.path).ctx(|| format!("renaming to {}", self.path.display()))?;
        if let Some(dir) = self.path.parent() {
            crate::segment::sync_dir(dir)?;
        }
        Ok(())
    }
}

fn parse(s: &str) -> Option<Vec<EpochEntry>> {
    let mut lines = s.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut entries = Vec::with_capacity(count.min(1024));
    for line in lines.take(count) {
        let mut it = line.split_whitespace();
        let epoch = it.next()?.parse().ok()?;
        let start_offset = it.next()?.parse().ok()?;
        entries.push(EpochEntry {
            epoch,
            start_offset,
        });
    }
    (entries.len() == count).then_some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assign_persist_reload_and_lookup() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = LeaderEpochCache::load(dir.path());
        c.assign(0, 0).expect("assign");
        c.assign(0, 5).expect("same epoch ignored");
        c.assign(3, 10).expect("assign");
        c.assign(5, 20).expect("assign");
        let c2 = LeaderEpochCache::load(dir.path());
        assert_eq!(c2.entries(), c.entries());
        assert_eq!(c2.end_offset_for(0, 30), Some((0, 10)));
        assert_eq!(c2.end_offset_for(4, 30), Some((3, 20)));
        assert_eq!(c2.end_offset_for(9, 30), Some((5, 30)));
        let mut c3 = c2;
        c3.truncate_from_end(15).expect("truncate");
        assert_eq!(c3.latest_epoch(), Some(3));
        c3.truncate_from_start(12).expect("truncate start");
        assert_eq!(
            c3.entries(),
            &[EpochEntry {
                epoch: 3,
                start_offset: 10
            }]
        );
    }
}
