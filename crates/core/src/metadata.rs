//! Persistent cluster metadata for a single node: topics, their ids, partition counts and
//! config overrides, in one JSON document replaced atomically (write temp, fsync, rename,
//! fsync dir). The replication work moves this behind a Raft state machine; the shape of
//! `TopicRecord` is what that state machine will hold.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{CoreError, Result};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicRecord {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    pub replication_factor: i16,
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Document {
    version: u32,
    topics: Vec<TopicRecord>,
}

#[derive(Debug)]
pub struct MetadataStore {
    path: PathBuf,
}

impl MetadataStore {
    pub fn new(data_dir: &Path) -> Self {
        MetadataStore {
            path: data_dir.join("__cluster_metadata").join("topics.json"),
        }
    }

    pub fn load(&self) -> Result<Vec<TopicRecord>> {
        match fs::read(&self.path) {
            Ok(bytes) => {
                let doc: Document = serde_json::from_slice(&bytes).map_err(|e| {
                    CoreError::Storage(format!(
                        "cannot parse metadata {}: {e}",
                        self.path.display()
                    ))
                })?;
                Ok(doc.topics)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(CoreError::Storage(format!(
                "reading {}: {e}",
                self.path.display()
            ))),
        }
    }

    pub fn save(&self, topics: &[TopicRecord]) -> Result<()> {
        let io = |what: &str, e: std::io::Error| {
            CoreError::Storage(format!("{what} {}: {e}", self.path.display()))
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| io("creating dir for", e))?;
        let doc = Document {
            version: 1,
            topics: topics.to_vec(),
        };
        let bytes =
            serde_json::to_vec_pretty(&doc).map_err(|e| CoreError::Storage(e.to_string()))?;
        let tmp = self.path.with_extension("json.tmp");
        let mut f = File::create(&tmp).map_err(|e| io("creating temp for", e))?;
        f.write_all(&bytes).map_err(|e| io("writing", e))?;
        f.sync_all().map_err(|e| io("fsync", e))?;
        fs::rename(&tmp, &self.path).map_err(|e| io("renaming into", e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("fsync dir of", e))?;
        Ok(())
    }
}
