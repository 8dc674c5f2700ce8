use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Errors of the metadata layer. A rejected command is not an error: it is a
/// [`CommandResult`](crate::CommandResult) variant.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("invalid metadata config: {0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("metadata data dir {} is in use by another process", .0.display())]
    Locked(PathBuf),
    #[error("corrupt metadata file {}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("raft: {0}")]
    Raft(String),
    /// No answer in time. If the command had reached a leader it may still commit later.
    #[error("metadata command not confirmed within {0:?} (it may still commit)")]
    Timeout(Duration),
    /// The forwarded request reached the leader but its answer was lost: the command may or
    /// may not be committed, so it is not retried automatically.
    #[error(
        "forwarding to leader {leader} at {addr} failed after sending; outcome unknown: {reason}"
    )]
    Indeterminate {
        leader: u64,
        addr: String,
        reason: String,
    },
    #[error("metadata node is shut down")]
    Shutdown,
    /// The command was committed and rejected (e.g. an invalid broker registration).
    #[error("metadata command rejected: {0:?}")]
    Rejected(crate::CommandResult),
}

impl MetadataError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        MetadataError::Io {
            context: context.into(),
            source,
        }
    }
}
