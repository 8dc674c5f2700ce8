//! Provides compression utilities for encoding records.
//!
//! This module has implementations of gzip, Snappy, as well as a noop compression format that
//! allows encoding and decoding records into a [`Record`](crate::records::Record).

use crate::protocol::buf::{ByteBuf, ByteBufMut};
use anyhow::Result;

#[cfg(feature = "gzip")]
mod gzip;
#[cfg(feature = "lz4")]
mod lz4;
mod none;
#[cfg(feature = "snappy")]
mod snappy;
#[cfg(feature = "zstd")]
mod zstd;

#[cfg(feature = "gzip")]
pub use gzip::Gzip;
#[cfg(feature = "lz4")]
pub use lz4::Lz4;
pub use none::None;
#[cfg(feature = "snappy")]
pub use snappy::Snappy;
#[cfg(feature = "zstd")]
pub use zstd::Zstd;

/// Arctern patch: the most bytes one record batch may decompress to. A batch's compressed
/// size is bounded by the request's, but its expansion is not (a megabyte of zstd holds
/// gigabytes of zeros), so past this the batch is refused as corrupt instead of filling
/// memory. Real batches stay far below it (a producer's batch.size is 16 KiB by default
/// and message.max.bytes 1 MiB; text rarely compresses 20 to 1).
pub const MAX_DECOMPRESSED_BATCH_BYTES: usize = 64 << 20;

/// Arctern patch: a writer that refuses to take more than `MAX_DECOMPRESSED_BATCH_BYTES`.
#[allow(dead_code)]
pub(crate) struct CappedWriter<W> {
    inner: W,
    left: usize,
}

#[allow(dead_code)]
impl<W> CappedWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            left: MAX_DECOMPRESSED_BATCH_BYTES,
        }
    }
}

impl<W: std::io::Write> std::io::Write for CappedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() > self.left {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("batch decompresses to more than {MAX_DECOMPRESSED_BATCH_BYTES} bytes"),
            ));
        }
        let n = self.inner.write(buf)?;
        self.left -= n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A trait for record compression algorithms.
pub trait Compressor<B: ByteBufMut> {
    /// Target buffer type for compression.
    type BufMut: ByteBufMut;
    /// Compresses into provided [`ByteBufMut`], with records encoded by `F` into `R`.
    fn compress<R, F>(buf: &mut B, f: F) -> Result<R>
    where
        F: FnOnce(&mut Self::BufMut) -> Result<R>;
}

/// A trait for record decompression algorithms.
pub trait Decompressor<B: ByteBuf> {
    /// Target buffer type for decompression.
    type Buf: ByteBuf;
    /// Decompress records from `B` mapped using `F` into `R`.
    fn decompress<R, F>(buf: &mut B, f: F) -> Result<R>
    where
        F: FnOnce(&mut Self::Buf) -> Result<R>;
}
