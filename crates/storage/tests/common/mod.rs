//! Shared by the storage-fault tests: a log in sealed segments, bit flips in its files, and a
//! reader that behaves as a Kafka consumer does (it takes each batch's base offset at its
//! word and moves on past the last batch it got).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use arctern_storage::batch::{build_batch, parse_header, SimpleRecord};
use arctern_storage::{Log, LogConfig};

pub const NOW: i64 = 1_700_000_000_000;
pub const EPOCH: i32 = 3;

pub fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        ..LogConfig::default()
    }
}

/// A closed log of `batches` batches of 5 records each (several sealed segments); returns
/// the stored bytes of every batch (offsets and epoch stamped), in offset order.
pub fn write_log(dir: &Path, batches: usize) -> Vec<Vec<u8>> {
    let mut log = Log::open(dir, config(), NOW).expect("open");
    let mut stored = Vec::new();
    for i in 0..batches {
        let values: Vec<Vec<u8>> = (0..5).map(|k| format!("v{i}-{k}").into_bytes()).collect();
        let recs: Vec<SimpleRecord> = values
            .iter()
            .map(|v| (None, Some(&v[..]), NOW + i as i64))
            .collect();
        let mut b = build_batch(0, 0, NOW + i as i64, &recs);
        log.append_as_leader(&mut b, EPOCH, NOW).expect("append");
        stored.push(b);
    }
    log.close().expect("close");
    stored
}

/// The segment files (`.log`), oldest first.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

/// Where each batch starts in a segment file.
pub fn batch_positions(file: &Path) -> Vec<usize> {
    let bytes = std::fs::read(file).expect("read segment");
    let mut at = 0;
    let mut out = Vec::new();
    while let Ok(h) = parse_header(&bytes[at..]) {
        out.push(at);
        at += h.size;
        if at >= bytes.len() {
            break;
        }
    }
    out
}

/// A deterministic xorshift64 stream: the same flips on every run.
pub fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

pub fn flip(file: &Path, position: usize, mask: u8) {
    let mut bytes = std::fs::read(file).expect("read");
    bytes[position] ^= mask;
    std::fs::write(file, &bytes).expect("write");
}

/// What a consumer reading from offset 0 ends with.
#[derive(Debug, Default)]
pub struct Consumed {
    /// Record offsets delivered, in order.
    pub offsets: Vec<i64>,
    /// Batches delivered whose bytes differ from what was stored at their offset.
    pub wrong_batches: usize,
    /// The offset at which reads failed (the consumer is stuck there, as it should be).
    pub stopped_at: Option<i64>,
}

impl Consumed {
    /// Every record up to where reading stopped, each once, in order.
    pub fn gapless(&self) -> bool {
        self.offsets.iter().enumerate().all(|(i, o)| *o == i as i64)
    }
}

/// Reads like a Kafka consumer: fetch at `next`, deliver each batch's records at or past
/// `next` with the offsets the batch header states, continue after the last one.
pub fn consume(log: &Log, stored: &[Vec<u8>]) -> Consumed {
    let by_base: std::collections::HashMap<i64, &Vec<u8>> = stored
        .iter()
        .map(|b| (parse_header(b).expect("stored header").base_offset, b))
        .collect();
    let mut out = Consumed::default();
    let mut next = 0i64;
    let end = log.log_end_offset();
    while next < end {
        let fetched = match log.read(next, 1500, i64::MAX) {
            Ok(f) => f,
            Err(_) => {
                out.stopped_at = Some(next);
                break;
            }
        };
        if fetched.bytes.is_empty() {
            break;
        }
        let mut at = 0;
        let before = next;
        while at < fetched.bytes.len() {
            let Ok(h) = parse_header(&fetched.bytes[at..]) else {
                break;
            };
            let bytes = &fetched.bytes[at..at + h.size];
            if by_base
                .get(&h.base_offset)
                .is_none_or(|s| s.as_slice() != bytes)
            {
                out.wrong_batches += 1;
            }
            for o in h.base_offset..=h.last_offset() {
                if o >= next {
                    out.offsets.push(o);
                }
            }
            next = next.max(h.last_offset() + 1);
            at += h.size;
        }
        if next == before {
            break;
        }
    }
    out
}
