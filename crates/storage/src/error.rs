use std::path::PathBuf;

/// Why a batch offered for append (or found on disk) is not a valid RecordBatch v2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch truncated: have {have} bytes, need {need}")]
    Truncated { have: usize, need: usize },
    #[error("impossible batch length {0}")]
    BadLength(i32),
    #[error("unsupported record batch magic {0} (only v2 is stored)")]
    UnsupportedMagic(i8),
    #[error("CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("bad offsets: lastOffsetDelta {last_offset_delta}, recordsCount {records_count}")]
    BadOffsets {
        last_offset_delta: i32,
        records_count: i32,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The producer sent bytes that are not valid batches; nothing was written.
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    BatchTooLarge { size: usize, max: usize },
    #[error("record batches of {size} bytes exceed segment.bytes {max}")]
    BatchesLargerThanSegment { size: usize, max: u64 },
    /// Stored data failed validation when read back: never served, always reported.
    #[error("corrupt data in {path} at position {position}: {reason}")]
    CorruptStoredData {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    #[error("offset {requested} out of range [{start}, {end}]")]
    OffsetOutOfRange {
        requested: i64,
        start: i64,
        end: i64,
    },
    #[error("replicated append at offset {got} does not follow log end offset {expected}")]
    NonSequentialAppend { expected: i64, got: i64 },
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Attaches a context line to an I/O error.
pub(crate) trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| StorageError::Io {
            context: context(),
            source,
        })
    }
}
