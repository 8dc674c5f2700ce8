//! Consume phase: read every partition of the topic from its earliest offset up to the end
//! offset seen at the start, with large Fetch requests, counting records from the RecordBatch
//! headers (no decompression or per-record decoding, so the client stays cheap).

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bytes::{Buf, Bytes};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::FetchRequest;

use crate::admin::{error_name, list_offsets, topic_name};
use crate::conn::Conn;

/// RecordBatch v2 header size: baseOffset(8) batchLength(4) partitionLeaderEpoch(4) magic(1)
/// crc(4) attributes(2) lastOffsetDelta(4) baseTimestamp(8) maxTimestamp(8) producerId(8)
/// producerEpoch(2) baseSequence(4) recordCount(4).
const BATCH_HEADER: usize = 61;
/// How long a partition may make no progress before the run is declared stuck.
const STALL_TIMEOUT: Duration = Duration::from_secs(15);

pub struct ConsumeConfig {
    pub addr: String,
    pub topic: String,
    pub partitions: i32,
    pub consumers: usize,
    pub fetch_max_bytes: i32,
    pub partition_max_bytes: i32,
    pub verify_crc: bool,
}

#[derive(Debug, Default, Clone)]
pub struct ConsumeStats {
    pub records: u64,
    /// RecordBatch bytes received (log bytes, headers included).
    pub batch_bytes: u64,
    pub fetches: u64,
    pub elapsed: Duration,
}

#[derive(Debug, Clone)]
struct PartitionState {
    partition: i32,
    offset: i64,
    end: i64,
}

pub async fn run(cfg: ConsumeConfig) -> Result<ConsumeStats> {
    let mut admin = Conn::connect(&cfg.addr).await?;
    let earliest = list_offsets(&mut admin, &cfg.topic, cfg.partitions, -2).await?;
    let latest = list_offsets(&mut admin, &cfg.topic, cfg.partitions, -1).await?;
    drop(admin);

    let consumers = cfg.consumers.clamp(1, cfg.partitions.max(1) as usize);
    let mut assignment: Vec<Vec<PartitionState>> = vec![Vec::new(); consumers];
    for p in 0..cfg.partitions {
        let i = p as usize;
        assignment[i % consumers].push(PartitionState {
            partition: p,
            offset: earliest[i],
            end: latest[i],
        });
    }
    let mut conns = Vec::with_capacity(consumers);
    for _ in 0..consumers {
        conns.push(Conn::connect(&cfg.addr).await?);
    }

    let start = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .zip(assignment)
        .map(|(conn, parts)| {
            tokio::spawn(consumer(
                conn,
                cfg.topic.clone(),
                parts,
                cfg.fetch_max_bytes,
                cfg.partition_max_bytes,
                cfg.verify_crc,
            ))
        })
        .collect();
    let mut total = ConsumeStats::default();
    let mut first_err = None;
    for t in tasks {
        match t.await.context("consumer task panicked")? {
            Ok(s) => {
                total.records += s.records;
                total.batch_bytes += s.batch_bytes;
                total.fetches += s.fetches;
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    total.elapsed = start.elapsed();
    match first_err {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

async fn consumer(
    mut conn: Conn,
    topic: String,
    mut parts: Vec<PartitionState>,
    fetch_max_bytes: i32,
    partition_max_bytes: i32,
    verify_crc: bool,
) -> Result<ConsumeStats> {
    let mut stats = ConsumeStats::default();
    let mut last_progress = Instant::now();
    loop {
        let active: Vec<FetchPartition> = parts
            .iter()
            .filter(|p| p.offset < p.end)
            .map(|p| {
                FetchPartition::default()
                    .with_partition(p.partition)
                    .with_fetch_offset(p.offset)
                    .with_partition_max_bytes(partition_max_bytes)
            })
            .collect();
        if active.is_empty() {
            return Ok(stats);
        }
        let req = FetchRequest::default()
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(fetch_max_bytes)
            .with_isolation_level(0)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(&topic))
                .with_partitions(active)]);
        let (_, resp) = conn.call(&req).await.context("Fetch")?;
        stats.fetches += 1;
        ensure!(
            resp.error_code == 0,
            "fetch failed: {}",
            error_name(resp.error_code)
        );
        let mut progressed = false;
        let mut last_hw = Vec::new();
        for t in resp.responses {
            for p in t.partitions {
                let Some(state) = parts.iter_mut().find(|s| s.partition == p.partition_index)
                else {
                    bail!(
                        "fetch response for unrequested partition {}",
                        p.partition_index
                    );
                };
                if p.error_code != 0 {
                    bail!(
                        "fetch {topic}-{} at offset {}: {}",
                        p.partition_index,
                        state.offset,
                        error_name(p.error_code)
                    );
                }
                last_hw.push((p.partition_index, state.offset, p.high_watermark));
                if let Some(records) = p.records {
                    let before = state.offset;
                    let (n, bytes) = walk_batches(records, &mut state.offset, verify_crc)
                        .with_context(|| format!("{topic}-{}", p.partition_index))?;
                    stats.records += n;
                    stats.batch_bytes += bytes;
                    progressed |= state.offset > before;
                }
            }
        }
        if progressed {
            last_progress = Instant::now();
        } else if last_progress.elapsed() > STALL_TIMEOUT {
            bail!(
                "fetch made no progress for {STALL_TIMEOUT:?}; (partition, offset, high watermark): {last_hw:?}"
            );
        }
    }
}

/// Walks the RecordBatches in `records`, advancing `offset` past every complete batch.
/// Returns (records at or after the starting offset, bytes of the batches walked).
/// A trailing partial batch (the broker may cut the last one at `max_bytes`) is ignored.
fn walk_batches(records: Bytes, offset: &mut i64, verify_crc: bool) -> Result<(u64, u64)> {
    let mut n = 0u64;
    let mut bytes = 0u64;
    let mut pos = 0usize;
    let buf = &records[..];
    while buf.len() - pos >= BATCH_HEADER {
        let mut h = &buf[pos..pos + BATCH_HEADER];
        let base = h.get_i64();
        let len = h.get_i32();
        let _leader_epoch = h.get_i32();
        let magic = h.get_i8();
        let crc = h.get_u32();
        let _attributes = h.get_i16();
        let last_delta = h.get_i32();
        let total = usize::try_from(len)
            .ok()
            .filter(|l| *l >= BATCH_HEADER - 12)
            .map(|l| l + 12)
            .with_context(|| format!("corrupt batch length {len} at offset {base}"))?;
        if pos + total > buf.len() {
            break; // partial batch at the end of the response
        }
        ensure!(
            magic == 2,
            "batch at offset {base} has magic {magic}, expected 2"
        );
        if verify_crc {
            let actual = crc32c::crc32c(&buf[pos + 21..pos + total]);
            ensure!(
                actual == crc,
                "CRC mismatch in batch at offset {base}: stored {crc:#010x}, computed {actual:#010x}"
            );
        }
        let count =
            i32::from_be_bytes([buf[pos + 57], buf[pos + 58], buf[pos + 59], buf[pos + 60]]);
        let last = base + i64::from(last_delta);
        if last >= *offset {
            n += if base >= *offset {
                u64::try_from(count).unwrap_or(0)
            } else {
                (last - *offset + 1) as u64
            };
            *offset = last + 1;
        }
        bytes += total as u64;
        pos += total;
    }
    Ok((n, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn batch(base: i64, n: i64) -> Bytes {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: base + i,
                sequence: (base + i) as i32 - 1,
                timestamp: 1,
                key: None,
                value: Some(Bytes::from_static(b"hello")),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .expect("encode");
        buf.freeze()
    }

    #[test]
    fn walks_complete_batches_and_skips_partial_tail() {
        let a = batch(0, 3);
        let b = batch(3, 2);
        let mut all = BytesMut::new();
        all.extend_from_slice(&a);
        all.extend_from_slice(&b);
        all.extend_from_slice(&b[..b.len() - 1]); // partial
        let mut offset = 0;
        let (n, bytes) = walk_batches(all.freeze(), &mut offset, true).expect("walk");
        assert_eq!(n, 5);
        assert_eq!(offset, 5);
        assert_eq!(bytes as usize, a.len() + b.len());
    }

    #[test]
    fn counts_only_records_from_fetch_offset() {
        let mut offset = 2;
        let (n, _) = walk_batches(batch(0, 5), &mut offset, false).expect("walk");
        assert_eq!(n, 3);
        assert_eq!(offset, 5);
    }

    #[test]
    fn detects_crc_mismatch() {
        let mut b = BytesMut::from(&batch(0, 2)[..]);
        let last = b.len() - 1;
        b[last] ^= 0xff;
        let mut offset = 0;
        assert!(walk_batches(b.freeze(), &mut offset, true).is_err());
    }
}
