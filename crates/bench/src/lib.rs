//! `arctern bench`: a produce/consume benchmark for any Kafka-protocol broker.
//!
//! The client is written directly on the `kafka-protocol` crate: pre-encoded RecordBatch v2
//! batches, several connections with several pipelined Produce requests each, and a consumer
//! that reads batch headers only, so the broker rather than the client sets the pace.
//!
//! Figures: MB means 10^6 bytes. Produce throughput is given for record values (payload)
//! and for encoded batches (what the broker writes); fetch throughput for batch bytes
//! received. Produce latency is the time from writing a Produce request to reading its
//! response, per request.

mod admin;
pub mod amqp;
mod conn;
mod consume;
mod produce;
pub mod security;

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use kafka_protocol::records::Compression;

pub use amqp::AmqpBenchArgs;
pub use consume::ConsumeStats;
pub use produce::ProduceStats;

/// Arguments of `arctern bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Broker address (host:port). All requests go to it (single-node benchmark).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,

    /// Topic to use. Created if missing (produce/both). Default: a new `arctern-bench-*` topic.
    /// Required with `--mode consume`.
    #[arg(long)]
    pub topic: Option<String>,

    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,

    /// Replication factor of the topic the bench creates. Every partition gets the
    /// bootstrap broker as its (preferred) leader, so the bench talks to one leader.
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i16,

    /// Topic config for the created topic, `key=value` (repeatable), e.g.
    /// `--topic-config min.insync.replicas=2`.
    #[arg(long = "topic-config", value_parser = parse_key_value)]
    pub topic_configs: Vec<(String, String)>,

    /// Records to produce.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,

    /// Bytes of each record's value (no key, no headers).
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,

    /// Records per RecordBatch (one batch per Produce request).
    #[arg(long, default_value_t = 1000)]
    pub batch_records: usize,

    /// Concurrent producer connections.
    #[arg(long, default_value_t = 4)]
    pub producers: usize,

    /// Produce requests in flight (pipelined) per producer connection.
    #[arg(long, default_value_t = 2)]
    pub inflight: usize,

    /// acks: all (= -1), 1 or 0.
    #[arg(long, default_value = "all", value_parser = parse_acks, allow_hyphen_values = true)]
    pub acks: i16,

    /// Batch compression codec.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    pub compression: CompressionArg,

    /// What to run: produce, consume (the whole topic from its earliest offset), or both.
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    pub mode: Mode,

    /// Consumer connections (partitions are spread over them).
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,

    /// max_bytes of each Fetch request (Kafka consumer default `fetch.max.bytes`).
    #[arg(long, default_value_t = 52_428_800)]
    pub fetch_max_bytes: i32,

    /// Per-partition max bytes of each Fetch request (Kafka consumer default
    /// `max.partition.fetch.bytes`).
    #[arg(long, default_value_t = 1_048_576)]
    pub partition_max_bytes: i32,

    /// Check the CRC32C of every fetched batch (costs client CPU).
    #[arg(long)]
    pub verify_crc: bool,

    /// Produce request timeout (ms) sent to the broker.
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: i32,

    /// Print one JSON line with the results on stdout (the human summary goes to stderr).
    #[arg(long)]
    pub json: bool,

    /// Connect with TLS (the SSL / SASL_SSL listener), trusting this CA file (PEM).
    #[arg(long)]
    pub tls_ca: Option<std::path::PathBuf>,

    /// SASL mechanism (the SASL_PLAINTEXT / SASL_SSL listener); needs --sasl-username.
    #[arg(long, value_enum)]
    pub sasl_mechanism: Option<security::SaslMechanism>,

    #[arg(long)]
    pub sasl_username: Option<String>,

    /// The SASL password (or the environment variable ARCTERN_BENCH_SASL_PASSWORD).
    #[arg(long, env = "ARCTERN_BENCH_SASL_PASSWORD", hide_env_values = true)]
    pub sasl_password: Option<String>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Produce,
    Consume,
    Both,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl CompressionArg {
    fn codec(self) -> Compression {
        match self {
            Self::None => Compression::None,
            Self::Gzip => Compression::Gzip,
            Self::Snappy => Compression::Snappy,
            Self::Lz4 => Compression::Lz4,
            Self::Zstd => Compression::Zstd,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

fn parse_acks(s: &str) -> Result<i16, String> {
    match s {
        "all" | "-1" => Ok(-1),
        "1" => Ok(1),
        "0" => Ok(0),
        _ => Err(format!("acks must be all, -1, 1 or 0, not {s:?}")),
    }
}

const MB: f64 = 1e6;

fn per_sec(n: f64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 {
        n / s
    } else {
        0.0
    }
}

/// Runs the benchmark described by `args` and prints its figures.
pub async fn run(args: BenchArgs) -> Result<()> {
    let sasl = match (args.sasl_mechanism, &args.sasl_username) {
        (Some(mechanism), Some(user)) => Some(security::Sasl {
            mechanism,
            username: user.clone(),
            password: args.sasl_password.clone().unwrap_or_default(),
        }),
        (Some(_), None) => bail!("--sasl-mechanism needs --sasl-username"),
        (None, _) => None,
    };
    security::configure(args.tls_ca.as_deref(), sasl)?;
    if args.partitions <= 0 {
        bail!("--partitions must be at least 1");
    }
    let topic = match (&args.topic, args.mode) {
        (Some(t), _) => t.clone(),
        (None, Mode::Consume) => bail!("--mode consume needs --topic"),
        (None, _) => {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            format!(
                "arctern-bench-{}-{}",
                std::process::id(),
                nanos % 1_000_000_000
            )
        }
    };

    let mut admin = conn::Conn::connect(&args.bootstrap).await?;
    let mut partitions = args.partitions;
    let mut created = false;
    if args.mode != Mode::Consume {
        created = admin::create_topic(
            &mut admin,
            &args.bootstrap,
            &topic,
            args.partitions,
            args.replication_factor,
            &args.topic_configs,
        )
        .await?;
        if !created {
            eprintln!("note: topic {topic} already exists; producing into it");
        }
    }
    let actual = admin::wait_for_topic(&mut admin, &topic, Duration::from_secs(30)).await?;
    if actual != partitions {
        if args.mode != Mode::Consume {
            eprintln!("note: topic {topic} has {actual} partitions, not {partitions}");
        }
        partitions = actual;
    }
    drop(admin);

    let mut header = String::new();
    let _ = write!(
        header,
        "arctern bench: {} topic {topic} ({partitions} partitions)",
        args.bootstrap
    );
    if args.mode != Mode::Consume {
        let _ = write!(
            header,
            "; {} records x {} B, {} records/batch, {} producers x {} in flight, acks={}, compression {}",
            args.records,
            args.record_size,
            args.batch_records,
            args.producers,
            args.inflight,
            args.acks,
            args.compression.name()
        );
    }
    let mut report = vec![header];

    let mut produce_stats = None;
    if args.mode != Mode::Consume {
        eprintln!("producing {} records to {topic} ...", args.records);
        let stats = produce::run(produce::ProduceConfig {
            addr: args.bootstrap.clone(),
            topic: topic.clone(),
            partitions,
            records: args.records,
            record_size: args.record_size,
            batch_records: args.batch_records,
            producers: args.producers,
            inflight: args.inflight,
            acks: args.acks,
            compression: args.compression.codec(),
            timeout_ms: args.timeout_ms,
        })
        .await
        .context("produce phase")?;
        report.extend(produce_lines(&stats, args.acks));
        produce_stats = Some(stats);
    }

    if let (Some(p), 0, Mode::Both) = (&produce_stats, args.acks, args.mode) {
        // acks=0: nothing says when the broker has appended everything; wait for it.
        let mut conn = conn::Conn::connect(&args.bootstrap).await?;
        let expected = created.then_some(p.records as i64);
        let end = admin::wait_for_log_end(
            &mut conn,
            &topic,
            partitions,
            expected,
            Duration::from_secs(30),
        )
        .await?;
        if let Some(want) = expected {
            if end != want {
                bail!("acks=0: the log holds {end} records 30 s after sending {want}");
            }
        }
    }

    let mut consume_stats = None;
    if args.mode != Mode::Produce {
        eprintln!("consuming {topic} from the earliest offsets ...");
        let stats = consume::run(consume::ConsumeConfig {
            addr: args.bootstrap.clone(),
            topic: topic.clone(),
            partitions,
            consumers: args.consumers,
            fetch_max_bytes: args.fetch_max_bytes,
            partition_max_bytes: args.partition_max_bytes,
            verify_crc: args.verify_crc,
        })
        .await
        .context("consume phase")?;
        if let Some(p) = &produce_stats {
            if created && stats.records != p.records {
                bail!(
                    "consumed {} records but produced {} into the new topic {topic}",
                    stats.records,
                    p.records
                );
            }
        }
        report.push(format!(
            "consume: {} records, {:.1} MB of batches in {:.3} s: {:.0} msgs/s, {:.1} MB/s, {} fetches",
            stats.records,
            stats.batch_bytes as f64 / MB,
            stats.elapsed.as_secs_f64(),
            per_sec(stats.records as f64, stats.elapsed),
            per_sec(stats.batch_bytes as f64, stats.elapsed) / MB,
            stats.fetches
        ));
        consume_stats = Some(stats);
    }

    let human = report.join("\n");
    if args.json {
        eprintln!("{human}");
        let line = json_summary(
            &args,
            &topic,
            partitions,
            produce_stats.as_ref(),
            consume_stats.as_ref(),
        );
        println!("{line}");
    } else {
        println!("{human}");
    }
    Ok(())
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn produce_lines(s: &ProduceStats, acks: i16) -> Vec<String> {
    let mut out = vec![format!(
        "produce: {} records in {:.3} s: {:.0} msgs/s, {:.1} MB/s payload ({:.1} MB/s of batches), {} requests",
        s.records,
        s.elapsed.as_secs_f64(),
        per_sec(s.records as f64, s.elapsed),
        per_sec(s.payload_bytes as f64, s.elapsed) / MB,
        per_sec(s.batch_bytes as f64, s.elapsed) / MB,
        s.requests
    )];
    if acks == 0 {
        out.push("  produce latency: not measured with acks=0 (no responses)".to_string());
    } else {
        let h = &s.latency_us;
        out.push(format!(
            "  produce request latency (ms): p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}",
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            ms(h.value_at_quantile(0.999)),
            ms(h.max()),
            h.mean() / 1000.0
        ));
    }
    out
}

fn json_summary(
    args: &BenchArgs,
    topic: &str,
    partitions: i32,
    produce: Option<&ProduceStats>,
    consume: Option<&ConsumeStats>,
) -> String {
    let produce = produce.map(|s| {
        let h = &s.latency_us;
        let latency = if args.acks == 0 || h.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::json!({
                "p50": ms(h.value_at_quantile(0.5)),
                "p99": ms(h.value_at_quantile(0.99)),
                "p999": ms(h.value_at_quantile(0.999)),
                "max": ms(h.max()),
                "mean": h.mean() / 1000.0,
            })
        };
        serde_json::json!({
            "records": s.records,
            "payload_bytes": s.payload_bytes,
            "batch_bytes": s.batch_bytes,
            "requests": s.requests,
            "seconds": s.elapsed.as_secs_f64(),
            "msgs_per_sec": per_sec(s.records as f64, s.elapsed),
            "mb_per_sec": per_sec(s.payload_bytes as f64, s.elapsed) / MB,
            "batch_mb_per_sec": per_sec(s.batch_bytes as f64, s.elapsed) / MB,
            "latency_ms": latency,
        })
    });
    let consume = consume.map(|s| {
        serde_json::json!({
            "records": s.records,
            "batch_bytes": s.batch_bytes,
            "fetches": s.fetches,
            "seconds": s.elapsed.as_secs_f64(),
            "msgs_per_sec": per_sec(s.records as f64, s.elapsed),
            "mb_per_sec": per_sec(s.batch_bytes as f64, s.elapsed) / MB,
        })
    });
    serde_json::json!({
        "bootstrap": args.bootstrap,
        "topic": topic,
        "partitions": partitions,
        "record_size": args.record_size,
        "batch_records": args.batch_records,
        "producers": args.producers,
        "inflight": args.inflight,
        "acks": args.acks,
        "compression": args.compression.name(),
        "produce": produce,
        "consume": consume,
    })
    .to_string()
}

fn parse_key_value(s: &str) -> std::result::Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}
