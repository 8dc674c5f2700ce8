//! The state machine: applies committed entries to [`ClusterState`], publishes every applied
//! state on a watch channel, and builds / installs snapshots.
//!
//! The applied state itself is not written on every apply: after a restart it is the latest
//! snapshot plus a replay of the log after it, which openraft drives. A snapshot file holds the
//! snapshot meta and the state, and is replaced atomically (temp + fsync + rename).

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::fsutil::write_atomic;
use crate::{BasicNode, ClusterState, CommandResult, MetadataError, NodeId, TypeConfig};

const SNAPSHOT_FILE: &str = "snapshot.json";

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    state: ClusterState,
}

struct SmData {
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, BasicNode>,
    state: ClusterState,
    /// The latest snapshot: meta and the serialized state (what is sent to followers).
    snapshot: Option<(SnapshotMeta<NodeId, BasicNode>, Vec<u8>)>,
    snapshot_seq: u64,
}

/// Cheap to clone; the clone used as snapshot builder shares the data.
#[derive(Clone)]
pub struct StateMachineStore {
    dir: PathBuf,
    data: Arc<Mutex<SmData>>,
    state_tx: Arc<watch::Sender<Arc<ClusterState>>>,
}

fn lock(m: &Mutex<SmData>) -> MutexGuard<'_, SmData> {
    // Every mutation under this lock is completed before it is released.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl StateMachineStore {
    /// Loads the latest snapshot from `dir`, if any.
    pub fn open(
        dir: &Path,
    ) -> Result<(StateMachineStore, watch::Receiver<Arc<ClusterState>>), MetadataError> {
        let path = dir.join(SNAPSHOT_FILE);
        let stored: Option<StoredSnapshot> = match std::fs::read(&path) {
            Ok(b) => Some(
                serde_json::from_slice(&b).map_err(|e| MetadataError::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                })?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(MetadataError::io(format!("read {}", path.display()), e)),
        };
        let data = match stored {
            Some(s) => {
                let bytes = serde_json::to_vec(&s.state).map_err(|e| MetadataError::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                SmData {
                    last_applied: s.meta.last_log_id,
                    last_membership: s.meta.last_membership.clone(),
                    state: s.state,
                    snapshot: Some((s.meta, bytes)),
                    snapshot_seq: 0,
                }
            }
            None => SmData {
                last_applied: None,
                last_membership: StoredMembership::default(),
                state: ClusterState::default(),
                snapshot: None,
                snapshot_seq: 0,
            },
        };
        let (tx, rx) = watch::channel(Arc::new(data.state.clone()));
        Ok((
            StateMachineStore {
                dir: dir.to_path_buf(),
                data: Arc::new(Mutex::new(data)),
                state_tx: Arc::new(tx),
            },
            rx,
        ))
    }

    async fn persist(&self, stored: &StoredSnapshot) -> Result<(), std::io::Error> {
        let bytes = serde_json::to_vec(stored).map_err(std::io::Error::other)?;
        let path = self.dir.join(SNAPSHOT_FILE);
        tokio::task::spawn_blocking(move || write_atomic(&path, &bytes))
            .await
            .map_err(|e| std::io::Error::other(format!("snapshot write task failed: {e}")))?
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (meta, state) = {
            let mut d = lock(&self.data);
            d.snapshot_seq += 1;
            let snapshot_id = match d.last_applied {
                Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, d.snapshot_seq),
                None => format!("none-{}", d.snapshot_seq),
            };
            let meta = SnapshotMeta {
                last_log_id: d.last_applied,
                last_membership: d.last_membership.clone(),
                snapshot_id,
            };
            (meta, d.state.clone())
        };
        let bytes =
            serde_json::to_vec(&state).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            state,
        };
        self.persist(&stored)
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        lock(&self.data).snapshot = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        let d = lock(&self.data);
        Ok((d.last_applied, d.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut results = Vec::new();
        let snapshot = {
            let mut d = lock(&self.data);
            for e in entries {
                d.last_applied = Some(e.log_id);
                let r = match e.payload {
                    EntryPayload::Blank => CommandResult::Ok,
                    EntryPayload::Normal(cmd) => d.state.apply(&cmd, e.log_id.index),
                    EntryPayload::Membership(m) => {
                        d.last_membership = StoredMembership::new(Some(e.log_id), m);
                        CommandResult::Ok
                    }
                };
                results.push(r);
            }
            Arc::new(d.state.clone())
        };
        // Published before openraft reports the entries applied, so a waiter that saw the
        // applied index move also sees the state.
        self.state_tx.send_replace(snapshot);
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        let state: ClusterState = serde_json::from_slice(&bytes)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            state,
        };
        // Durable before it replaces the applied state: the log before it may be purged next.
        self.persist(&stored)
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        let published = {
            let mut d = lock(&self.data);
            d.last_applied = meta.last_log_id;
            d.last_membership = meta.last_membership.clone();
            d.state = stored.state;
            d.snapshot = Some((meta.clone(), bytes));
            Arc::new(d.state.clone())
        };
        self.state_tx.send_replace(published);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let d = lock(&self.data);
        Ok(d.snapshot.as_ref().map(|(meta, bytes)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(bytes.clone())),
        }))
    }
}
