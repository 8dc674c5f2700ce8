//! Produce phase: several connections, each with several pipelined Produce requests in flight,
//! sending pre-encoded RecordBatch v2 batches (so encoding and compression cost nothing during
//! the timed run and the client is not the bottleneck).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rand::distributions::Alphanumeric;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, Semaphore};

use crate::admin::{error_name, topic_name};
use crate::conn::{decode_response, Conn};

/// How many distinct full batches are pre-encoded and cycled through.
const BATCH_POOL: usize = 8;

pub struct ProduceConfig {
    pub addr: String,
    pub topic: String,
    pub partitions: i32,
    pub records: u64,
    pub record_size: usize,
    pub batch_records: usize,
    pub producers: usize,
    pub inflight: usize,
    pub acks: i16,
    pub compression: Compression,
    pub timeout_ms: i32,
}

pub struct ProduceStats {
    pub records: u64,
    /// Record values only (`records * record_size`).
    pub payload_bytes: u64,
    /// Encoded RecordBatch bytes sent (what the broker appends to its log).
    pub batch_bytes: u64,
    pub requests: u64,
    pub elapsed: Duration,
    /// Produce request latency in microseconds (empty with acks=0).
    pub latency_us: Histogram<u64>,
}

/// A pre-encoded batch.
struct Batch {
    bytes: Bytes,
    records: u64,
}

fn new_histogram() -> Result<Histogram<u64>> {
    // 1 µs .. 10 min, 3 significant figures.
    Histogram::new_with_bounds(1, 600_000_000, 3).map_err(|e| anyhow!("histogram: {e}"))
}

/// Encodes one RecordBatch of `n` records with random alphanumeric values of `size` bytes.
fn encode_batch(
    rng: &mut impl Rng,
    n: usize,
    size: usize,
    compression: Compression,
) -> Result<Batch> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let records: Vec<Record> = (0..n)
        .map(|i| {
            let value: Vec<u8> = (&mut *rng).sample_iter(Alphanumeric).take(size).collect();
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // offset - sequence is constant so all records land in one batch, and the
                // batch's base sequence comes out as -1 (no idempotence).
                sequence: i as i32 - 1,
                timestamp: now_ms,
                key: None,
                value: Some(Bytes::from(value)),
                headers: Default::default(),
            }
        })
        .collect();
    let mut buf = BytesMut::with_capacity(n * (size + 16) + 128);
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .context("encoding record batch")?;
    Ok(Batch {
        bytes: buf.freeze(),
        records: n as u64,
    })
}

struct Plan {
    cfg: ProduceConfig,
    full: Vec<Batch>,
    tail: Option<Batch>,
    total_batches: u64,
    next_batch: AtomicU64,
}

impl Plan {
    /// Batch number `idx` and the partition it goes to.
    fn batch(&self, idx: u64) -> (&Batch, i32) {
        let partition = (idx % self.cfg.partitions as u64) as i32;
        if idx + 1 == self.total_batches {
            if let Some(tail) = &self.tail {
                return (tail, partition);
            }
        }
        (
            &self.full[(idx % self.full.len() as u64) as usize],
            partition,
        )
    }
}

struct Sent {
    correlation_id: i32,
    at: Instant,
}

#[derive(Default)]
struct Counts {
    records: u64,
    batch_bytes: u64,
    requests: u64,
}

pub async fn run(cfg: ProduceConfig) -> Result<ProduceStats> {
    if cfg.batch_records == 0 || cfg.record_size == 0 || cfg.partitions <= 0 {
        bail!("--batch-records, --record-size and --partitions must be positive");
    }
    let mut rng = rand::rngs::StdRng::from_entropy();
    let full_batches = cfg.records / cfg.batch_records as u64;
    let tail_records = (cfg.records % cfg.batch_records as u64) as usize;
    let pool = (full_batches as usize).clamp(1, BATCH_POOL);
    let full = (0..pool)
        .map(|_| {
            encode_batch(
                &mut rng,
                cfg.batch_records,
                cfg.record_size,
                cfg.compression,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let tail = if tail_records > 0 {
        Some(encode_batch(
            &mut rng,
            tail_records,
            cfg.record_size,
            cfg.compression,
        )?)
    } else {
        None
    };
    let total_batches = full_batches + u64::from(tail.is_some());

    let mut conns = Vec::with_capacity(cfg.producers);
    for _ in 0..cfg.producers.max(1) {
        conns.push(Conn::connect(&cfg.addr).await?);
    }
    let plan = Arc::new(Plan {
        cfg,
        full,
        tail,
        total_batches,
        next_batch: AtomicU64::new(0),
    });

    let start = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|conn| tokio::spawn(producer(conn, Arc::clone(&plan))))
        .collect();
    let mut hist = new_histogram()?;
    let mut counts = Counts::default();
    let mut first_err = None;
    for t in tasks {
        match t.await.context("producer task panicked")? {
            Ok((h, c)) => {
                hist.add(&h)
                    .map_err(|e| anyhow!("merging histograms: {e}"))?;
                counts.records += c.records;
                counts.batch_bytes += c.batch_bytes;
                counts.requests += c.requests;
            }
            Err(e) => {
                // Stop the other producers from taking more work.
                plan.next_batch.store(u64::MAX / 2, Ordering::Relaxed);
                first_err.get_or_insert(e);
            }
        }
    }
    let elapsed = start.elapsed();
    if let Some(e) = first_err {
        return Err(e);
    }
    Ok(ProduceStats {
        records: counts.records,
        payload_bytes: counts.records * plan.cfg.record_size as u64,
        batch_bytes: counts.batch_bytes,
        requests: counts.requests,
        elapsed,
        latency_us: hist,
    })
}

fn produce_request(plan: &Plan, batch: &Batch, partition: i32) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(plan.cfg.acks)
        .with_timeout_ms(plan.cfg.timeout_ms)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(&plan.cfg.topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch.bytes.clone()))])])
}

/// One connection: a writer loop here and a reader task matching responses in order.
async fn producer(conn: Conn, plan: Arc<Plan>) -> Result<(Histogram<u64>, Counts)> {
    let version = conn.versions.get::<ProduceRequest>()?;
    let Conn {
        mut writer,
        mut reader,
        ..
    } = conn;
    let mut counts = Counts::default();

    if plan.cfg.acks == 0 {
        // No responses at all: just send.
        loop {
            let idx = plan.next_batch.fetch_add(1, Ordering::Relaxed);
            if idx >= plan.total_batches {
                break;
            }
            let (batch, partition) = plan.batch(idx);
            writer
                .send(&produce_request(&plan, batch, partition), version)
                .await?;
            counts.records += batch.records;
            counts.batch_bytes += batch.bytes.len() as u64;
            counts.requests += 1;
        }
        return Ok((new_histogram()?, counts));
    }

    let window = Arc::new(Semaphore::new(plan.cfg.inflight.max(1)));
    let (tx, mut rx) = mpsc::unbounded_channel::<Sent>();
    let reader_window = Arc::clone(&window);
    let topic = plan.cfg.topic.clone();
    let reader_task = tokio::spawn(async move {
        let result = async {
            let mut hist = new_histogram()?;
            while let Some(sent) = rx.recv().await {
                let frame = reader.recv_frame().await?;
                let resp: ProduceResponse =
                    decode_response::<ProduceRequest>(frame, version, sent.correlation_id)?;
                hist.saturating_record(sent.at.elapsed().as_micros().max(1) as u64);
                check_produce_response(&resp, &topic)?;
                reader_window.add_permits(1);
            }
            Ok::<_, anyhow::Error>(hist)
        }
        .await;
        if result.is_err() {
            // Unblock the writer.
            reader_window.close();
        }
        result
    });

    let write_result = async {
        loop {
            let idx = plan.next_batch.fetch_add(1, Ordering::Relaxed);
            if idx >= plan.total_batches {
                break;
            }
            match window.acquire().await {
                Ok(permit) => permit.forget(),
                Err(_) => break, // the reader failed; its error is reported below
            }
            let (batch, partition) = plan.batch(idx);
            let req = produce_request(&plan, batch, partition);
            let at = Instant::now();
            let correlation_id = writer.send(&req, version).await?;
            if tx.send(Sent { correlation_id, at }).is_err() {
                break;
            }
            counts.records += batch.records;
            counts.batch_bytes += batch.bytes.len() as u64;
            counts.requests += 1;
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    drop(tx);
    let read_result = reader_task.await.context("response reader panicked")?;
    let hist = read_result?;
    write_result?;
    Ok((hist, counts))
}

fn check_produce_response(resp: &ProduceResponse, topic: &str) -> Result<()> {
    let mut partitions = 0;
    for t in &resp.responses {
        for p in &t.partition_responses {
            partitions += 1;
            if p.error_code != 0 {
                bail!(
                    "produce to {topic}-{} failed: {}{}",
                    p.index,
                    error_name(p.error_code),
                    p.error_message
                        .as_ref()
                        .map(|m| format!(": {}", m.as_str()))
                        .unwrap_or_default()
                );
            }
        }
    }
    if partitions != 1 {
        bail!("produce response has {partitions} partition results, expected 1");
    }
    Ok(())
}
