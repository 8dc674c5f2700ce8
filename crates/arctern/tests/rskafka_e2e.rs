//! End to end with a client nobody here wrote: rskafka against the real `arctern` binary.
//!
//! Creates a topic through rskafka's ControllerClient, produces records with keys, headers
//! and timestamps in every compression codec rskafka supports, fetches them back and checks
//! they are identical, and checks ListOffsets (earliest/latest) through `get_offset`.
//! Everything asserted here is documented Kafka behaviour, so the test passes against Kafka too.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rskafka::chrono::{DateTime, TimeZone, Utc};
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::{Record, RecordAndOffset};
use rskafka::BackoffConfig;

/// The broker under test; killed (and reaped) when dropped, even if the test fails.
struct Broker {
    child: Child,
    addr: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Broker {
    fn start() -> Result<Self> {
        let dir = tempfile::tempdir().context("creating temp dir")?;
        let data = dir.path().join("data");
        let log = dir.path().join("broker.log");
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
            l.local_addr()?.port()
        };
        let addr = format!("127.0.0.1:{port}");
        let out = File::create(&log).context("creating broker log")?;
        let err = out.try_clone().context("cloning broker log handle")?;
        let child = Command::new(env!("CARGO_BIN_EXE_arctern"))
            .arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .arg("--kafka-listen")
            .arg(&addr)
            // An ephemeral AMQP port: several test brokers run at once.
            .arg("--amqp-listen")
            .arg("127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("starting arctern")?;
        let mut broker = Self {
            child,
            addr,
            log,
            _dir: dir,
        };
        broker.wait_ready(Duration::from_secs(30))?;
        Ok(broker)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().context("polling broker")? {
                bail!(
                    "broker exited early with {status}; log:\n{}",
                    self.log_text()
                );
            }
            if TcpStream::connect(&self.addr).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "broker not listening on {} after {timeout:?}; log:\n{}",
                    self.addr,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    async fn client(&self) -> Result<Client> {
        ClientBuilder::new(vec![self.addr.clone()])
            .backoff_config(BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(1),
                base: 2.0,
                deadline: Some(Duration::from_secs(20)),
            })
            .build()
            .await
            .context("rskafka client")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn codecs() -> Vec<(&'static str, Compression)> {
    vec![
        ("none", Compression::NoCompression),
        ("gzip", Compression::Gzip),
        ("lz4", Compression::Lz4),
        ("snappy", Compression::Snappy),
        ("zstd", Compression::Zstd),
    ]
}

fn ts(ms: i64) -> Result<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .context("timestamp out of range")
}

/// Records for one produce call: keys, headers (including an empty header value), binary and
/// compressible values, a tombstone (null value), an empty value and a null key; timestamps
/// are distinct and not in order.
fn records_for(codec: &str, n: usize) -> Result<Vec<Record>> {
    let base_ms = 1_700_000_000_000i64;
    (0..n)
        .map(|i| {
            let mut headers = BTreeMap::new();
            headers.insert("codec".to_string(), codec.as_bytes().to_vec());
            headers.insert("index".to_string(), i.to_le_bytes().to_vec());
            headers.insert("empty".to_string(), Vec::new());
            let key = match i {
                3 => None,
                _ => Some(format!("key-{codec}-{i}").into_bytes()),
            };
            let value = match i {
                1 => None,         // tombstone
                2 => Some(vec![]), // empty, not null
                _ => {
                    let mut v = format!("value {codec} {i} ").repeat(40).into_bytes();
                    v.extend((0..=255u8).map(|b| b.wrapping_mul(i as u8 + 7)));
                    Some(v)
                }
            };
            Ok(Record {
                key,
                value,
                headers,
                timestamp: ts(base_ms + ((i as i64 * 7919) % 1000))?,
            })
        })
        .collect()
}

/// Fetches `[from, to)` from `pc`, however many fetches that takes.
async fn fetch_range(pc: &PartitionClient, from: i64, to: i64) -> Result<Vec<RecordAndOffset>> {
    let mut out: Vec<RecordAndOffset> = Vec::new();
    let mut offset = from;
    let deadline = Instant::now() + Duration::from_secs(30);
    while offset < to {
        let (batch, high_watermark) = pc
            .fetch_records(offset, 1..1_000_000, 1_000)
            .await
            .with_context(|| format!("fetch at offset {offset}"))?;
        ensure!(
            high_watermark >= to,
            "high watermark {high_watermark} is below the {to} records acknowledged"
        );
        for r in batch {
            if r.offset >= offset && r.offset < to {
                offset = r.offset + 1;
                out.push(r);
            }
        }
        ensure!(
            Instant::now() < deadline,
            "fetch stuck at offset {offset} (want up to {to})"
        );
    }
    Ok(out)
}

#[tokio::test]
async fn rskafka_produce_fetch_every_codec_and_list_offsets() -> Result<()> {
    let broker = Broker::start()?;
    let result = produce_fetch_list_offsets(&broker).await;
    if result.is_err() {
        eprintln!("broker log:\n{}", broker.log_text());
    }
    result
}

async fn produce_fetch_list_offsets(broker: &Broker) -> Result<()> {
    let client = broker.client().await?;
    let topic = "rskafka-e2e";

    client
        .controller_client()?
        .create_topic(topic, 2, 1, 10_000)
        .await
        .context("create_topic")?;
    let topics = client.list_topics().await.context("list_topics")?;
    let listed = topics
        .iter()
        .find(|t| t.name == topic)
        .with_context(|| format!("{topic} missing from metadata: {topics:?}"))?;
    ensure!(
        listed.partitions.len() == 2,
        "expected 2 partitions, metadata shows {:?}",
        listed.partitions
    );

    let p0 = client
        .partition_client(topic, 0, UnknownTopicHandling::Retry)
        .await
        .context("partition client 0")?;
    let p1 = client
        .partition_client(topic, 1, UnknownTopicHandling::Retry)
        .await
        .context("partition client 1")?;

    // An empty partition: earliest = latest = 0.
    ensure!(
        p0.get_offset(OffsetAt::Earliest).await? == 0,
        "earliest of empty partition"
    );
    ensure!(
        p0.get_offset(OffsetAt::Latest).await? == 0,
        "latest of empty partition"
    );

    // One produce (one batch) per codec, offsets contiguous across batches.
    let mut expected: Vec<Record> = Vec::new();
    for (name, codec) in codecs() {
        let records = records_for(name, 6)?;
        let offsets = p0
            .produce(records.clone(), codec)
            .await
            .with_context(|| format!("produce with {name}"))?;
        let first = expected.len() as i64;
        let want: Vec<i64> = (first..first + records.len() as i64).collect();
        ensure!(
            offsets == want,
            "{name}: offsets {offsets:?}, expected {want:?}"
        );
        expected.extend(records);
    }
    let total = expected.len() as i64;

    // Partition 1 is independent: its offsets start at 0.
    let other = records_for("p1", 3)?;
    let offsets = p1
        .produce(other.clone(), Compression::NoCompression)
        .await?;
    ensure!(offsets == vec![0, 1, 2], "partition 1 offsets {offsets:?}");

    // Everything back, byte for byte.
    let fetched = fetch_range(&p0, 0, total).await?;
    ensure!(
        fetched.len() == expected.len(),
        "fetched {} records, produced {}",
        fetched.len(),
        expected.len()
    );
    for (i, (got, want)) in fetched.iter().zip(&expected).enumerate() {
        ensure!(
            got.offset == i as i64,
            "record {i} came back at offset {}",
            got.offset
        );
        if got.record != *want {
            bail!(
                "record at offset {i} differs:\n  got  {:?}\n  want {want:?}",
                got.record
            );
        }
    }
    let fetched1 = fetch_range(&p1, 0, 3).await?;
    let got1: Vec<Record> = fetched1.into_iter().map(|r| r.record).collect();
    ensure!(got1 == other, "partition 1 records differ");

    // A fetch starting inside a compressed batch still yields that record first.
    let mid = 6 * 2 + 4; // inside the lz4 batch
    let from_mid = fetch_range(&p0, mid, mid + 1).await?;
    ensure!(
        from_mid.first().map(|r| (r.offset, &r.record)) == Some((mid, &expected[mid as usize])),
        "fetch from offset {mid} returned {from_mid:?}"
    );

    // ListOffsets.
    ensure!(
        p0.get_offset(OffsetAt::Earliest).await? == 0,
        "earliest offset of partition 0"
    );
    let latest = p0.get_offset(OffsetAt::Latest).await?;
    ensure!(latest == total, "latest offset {latest}, expected {total}");
    ensure!(
        p1.get_offset(OffsetAt::Latest).await? == 3,
        "latest offset of partition 1"
    );

    // Fetching at the end waits out max_wait and returns nothing, with the high watermark.
    let (none, hw) = p0.fetch_records(total, 1..1_000_000, 200).await?;
    ensure!(none.is_empty(), "fetch at the log end returned {none:?}");
    ensure!(hw == total, "high watermark {hw}, expected {total}");
    Ok(())
}
