//! The single-node metadata file of Arctern before replication
//! (`__cluster_metadata/topics.json`). Topics are now in the Raft-replicated metadata;
//! this is read once, at the first start on such a data dir, to import its topics.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use uuid::Uuid;

use crate::error::{CoreError, Result};

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct TopicRecord {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    pub replication_factor: i16,
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct Document {
    topics: Vec<TopicRecord>,
}

#[derive(Debug)]
pub struct LegacyTopicStore {
    path: PathBuf,
}

impl LegacyTopicStore {
    pub fn new(data_dir: &Path) -> Self {
        LegacyTopicStore {
            path: data_dir.join("__cluster_metadata").join("topics.json"),
        }
    }

    /// The topics of a legacy file, or None if there is none (or it was imported).
    pub fn load(&self) -> Result<Option<Vec<TopicRecord>>> {
        match fs::read(&self.path) {
            Ok(bytes) => {
                let doc: Document = serde_json::from_slice(&bytes).map_err(|e| {
                    CoreError::Storage(format!(
                        "cannot parse metadata {}: {e}",
                        self.path.display()
                    ))
                })?;
                Ok(Some(doc.topics))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CoreError::Storage(format!(
                "reading {}: {e}",
                self.path.display()
            ))),
        }
    }

    /// Renames the file so it is not imported again (kept for inspection).
    pub fn mark_imported(&self) -> Result<()> {
        let done = self.path.with_extension("json.imported");
        fs::rename(&self.path, &done)
            .map_err(|e| CoreError::Storage(format!("renaming {}: {e}", self.path.display())))
    }
}
