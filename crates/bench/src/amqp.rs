//! `arctern bench-amqp`: AMQP 0-9-1 scenarios for any broker that speaks the protocol
//! (Arctern, RabbitMQ), written on `lapin`.
//!
//! Every scenario declares a new durable queue with a unique name (`x-queue-type` classic or
//! quorum), publishes persistent messages (delivery_mode 2) to it through the default
//! exchange, and deletes it at the end. Each publisher has its own connection and channel.
//!
//! - `publish-confirm`: publisher confirms with at most `--confirm-window` unconfirmed
//!   messages per publisher. Confirm latency: from `basic.publish` to its `basic.ack`.
//! - `tx`: `tx.select`, then `--tx-size` publishes and a `tx.commit`, repeated. Commit
//!   latency: from sending `tx.commit` to `commit-ok`.
//! - `consume`: fills the queue (confirmed publishes, not timed), then one consumer with
//!   manual acks (`--prefetch`, an ack with `multiple` every `--ack-every` deliveries)
//!   drains it.
//! - `latency`: one publisher at a fixed `--rate` with confirms and one consumer (manual
//!   ack) in the same process; each body carries its send time, so the consumer gets the
//!   end-to-end latency (publish to delivery).
//!
//! MB means 10^6 bytes of message body.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use futures::stream::FuturesOrdered;
use futures::StreamExt;
use hdrhistogram::Histogram;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::{ms, per_sec, MB};

/// Arguments of `arctern bench-amqp`.
#[derive(clap::Args, Debug, Clone)]
pub struct AmqpBenchArgs {
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Scenario::PublishConfirm)]
    pub scenario: Scenario,

    /// Broker URI (vhost `/` is `%2f`).
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub uri: String,

    /// `x-queue-type` of the durable queue the scenario declares.
    #[arg(long, value_enum, default_value_t = QueueType::Classic)]
    pub queue_type: QueueType,

    /// Bytes of each message body.
    #[arg(long, default_value_t = 1024)]
    pub message_size: usize,

    /// Messages to publish (publish-confirm, tx), or to fill the queue with and consume
    /// (consume). Shared among the publishers.
    #[arg(long, default_value_t = 100_000)]
    pub messages: u64,

    /// Stop publishing after this many seconds even if `--messages` are not all sent
    /// (publish-confirm, tx); 0 = no limit. Figures count what was sent.
    #[arg(long, default_value_t = 0.0)]
    pub time_limit: f64,

    /// Concurrent publishers, each with its own connection and channel.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,

    /// Unconfirmed messages allowed per publisher (publish-confirm, latency, consume fill).
    #[arg(long, default_value_t = 256)]
    pub confirm_window: usize,

    /// Publishes per transaction (tx).
    #[arg(long, default_value_t = 1)]
    pub tx_size: u64,

    /// Consumer prefetch (basic.qos prefetch-count) for consume and latency.
    #[arg(long, default_value_t = 1000)]
    pub prefetch: u16,

    /// The consumer acks every this many deliveries, with `multiple` (1 = each delivery
    /// on its own).
    #[arg(long, default_value_t = 1)]
    pub ack_every: u64,

    /// Publish rate in messages per second (latency).
    #[arg(long, default_value_t = 5000)]
    pub rate: u64,

    /// Seconds to publish at `--rate` (latency).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,

    /// Print one JSON line with the results on stdout (the human summary goes to stderr).
    #[arg(long)]
    pub json: bool,

    /// The CA (PEM) that signs the broker's certificate, for an `amqps://` URI (lapin
    /// clients only). User and password are the URI's.
    #[arg(long)]
    pub tls_ca: Option<std::path::PathBuf>,

    /// The client library of the consumer (consume) or of the publishers (tx): a second
    /// client shows whether the client is the bound. The consume fill always uses lapin.
    #[arg(long, value_enum, default_value_t = ClientLib::Lapin)]
    pub client: ClientLib,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientLib {
    Lapin,
    Amqprs,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    PublishConfirm,
    Tx,
    Consume,
    Latency,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::PublishConfirm => "publish-confirm",
            Self::Tx => "tx",
            Self::Consume => "consume",
            Self::Latency => "latency",
        }
    }
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueType {
    Classic,
    Quorum,
}

impl QueueType {
    fn name(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Quorum => "quorum",
        }
    }
}

/// Header of every message body: sequence number and send time (ns after the run's
/// clock origin), little-endian. The rest of the body is filler.
pub const STAMP_LEN: usize = 16;

/// Writes the sequence number and send time into the first `STAMP_LEN` bytes of `body`
/// (a body shorter than that gets what fits).
pub fn encode_stamp(body: &mut [u8], seq: u64, sent_ns: u64) {
    let mut stamp = [0u8; STAMP_LEN];
    stamp[..8].copy_from_slice(&seq.to_le_bytes());
    stamp[8..].copy_from_slice(&sent_ns.to_le_bytes());
    let n = body.len().min(STAMP_LEN);
    body[..n].copy_from_slice(&stamp[..n]);
}

/// Reads `(sequence number, send time ns)` back from a body; None if it is too short.
pub fn decode_stamp(body: &[u8]) -> Option<(u64, u64)> {
    let seq = u64::from_le_bytes(body.get(..8)?.try_into().ok()?);
    let sent = u64::from_le_bytes(body.get(8..STAMP_LEN)?.try_into().ok()?);
    Some((seq, sent))
}

/// When message `i` is due, counted from the start of a run at `rate` messages per
/// second: i / rate seconds. The schedule is absolute, so a late message does not delay
/// the ones after it.
pub fn due_after(i: u64, rate: u64) -> Duration {
    if rate == 0 {
        return Duration::ZERO;
    }
    let nanos = (i as u128) * 1_000_000_000 / rate as u128;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

fn new_histogram() -> Result<Histogram<u64>> {
    // microseconds, 1 us .. 10 min, 3 significant digits
    Histogram::new_with_bounds(1, 600_000_000, 3).context("creating a histogram")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Results of one scenario run.
#[derive(Debug)]
pub struct AmqpStats {
    /// Messages published and confirmed / committed (or consumed, for consume).
    pub messages: u64,
    pub body_bytes: u64,
    pub elapsed: Duration,
    pub nacks: u64,
    pub transactions: u64,
    /// Publisher confirm latency, us.
    pub confirm_us: Option<Histogram<u64>>,
    /// tx.commit round trip, us.
    pub commit_us: Option<Histogram<u64>>,
    /// Publish to delivery, us (latency).
    pub e2e_us: Option<Histogram<u64>>,
    /// Messages the consumer received (latency).
    pub delivered: u64,
    /// Seconds the fill took (consume).
    pub fill_seconds: Option<f64>,
}

impl AmqpStats {
    fn new() -> Self {
        Self {
            messages: 0,
            body_bytes: 0,
            elapsed: Duration::ZERO,
            nacks: 0,
            transactions: 0,
            confirm_us: None,
            commit_us: None,
            e2e_us: None,
            delivered: 0,
            fill_seconds: None,
        }
    }
}

async fn connect(uri: &str) -> Result<Connection> {
    let connected = match TLS_CA.get() {
        Some(pem) => {
            let tls = lapin::tcp::OwnedTLSConfig {
                identity: None,
                cert_chain: Some(pem.clone()),
            };
            let runtime = lapin::runtime::default_runtime()?;
            Connection::connect_with_config(uri, ConnectionProperties::default(), tls, runtime)
                .await
        }
        None => Connection::connect(uri, ConnectionProperties::default()).await,
    };
    connected.with_context(|| format!("connecting to {}", redact(uri)))
}

/// The URI without its password.
fn redact(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &uri[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &uri[..s + 3], &uri[at..])
        }
        _ => uri.to_string(),
    }
}

fn queue_args(queue_type: QueueType) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(queue_type.name().into()),
    );
    args
}

fn properties() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

/// Runs the scenario described by `args` and prints its figures.
/// The `--tls-ca` PEM, for every lapin connection of the run.
static TLS_CA: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub async fn run(args: AmqpBenchArgs) -> Result<()> {
    if let Some(ca) = &args.tls_ca {
        let pem = std::fs::read_to_string(ca)
            .with_context(|| format!("reading TLS CA {}", ca.display()))?;
        let _ = TLS_CA.set(pem);
    }
    if args.publishers == 0 {
        bail!("--publishers must be at least 1");
    }
    if args.confirm_window == 0 {
        bail!("--confirm-window must be at least 1");
    }
    if args.tx_size == 0 || args.ack_every == 0 {
        bail!("--tx-size and --ack-every must be at least 1");
    }
    if args.scenario == Scenario::Latency && (args.rate == 0 || args.duration <= 0.0) {
        bail!("--rate and --duration must be positive");
    }
    if args.scenario == Scenario::Latency && args.message_size < STAMP_LEN {
        bail!("latency needs --message-size of at least {STAMP_LEN} bytes");
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let queue = format!(
        "arctern-bench-{}-{}-{}",
        args.scenario.name(),
        std::process::id(),
        nanos % 1_000_000_000
    );

    let admin = connect(&args.uri).await?;
    let admin_ch = admin.create_channel().await.context("opening a channel")?;
    admin_ch
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            queue_args(args.queue_type),
        )
        .await
        .with_context(|| format!("declaring {} queue {queue}", args.queue_type.name()))?;

    let result = match args.scenario {
        Scenario::PublishConfirm => publish_confirm(&args, &queue).await,
        Scenario::Tx => tx(&args, &queue).await,
        Scenario::Consume => consume(&args, &queue).await,
        Scenario::Latency => latency(&args, &queue).await,
    };
    let deleted = admin_ch
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = admin.close(200, "bye".into()).await;
    let stats = result?;
    if let Err(e) = deleted {
        eprintln!("note: deleting queue {queue} failed: {e}");
    }

    let human = human_lines(&args, &queue, &stats).join("\n");
    if args.json {
        eprintln!("{human}");
        println!("{}", json_summary(&args, &queue, &stats));
    } else {
        println!("{human}");
    }
    Ok(())
}

/// Splits `total` messages among `n` publishers.
fn share(total: u64, n: usize, i: usize) -> u64 {
    let n = n as u64;
    let i = i as u64;
    total / n + u64::from(i < total % n)
}

struct Publisher {
    conn: Connection,
    ch: Channel,
}

async fn open_publisher(uri: &str) -> Result<Publisher> {
    let conn = connect(uri).await?;
    let ch = conn.create_channel().await.context("opening a channel")?;
    Ok(Publisher { conn, ch })
}

/// What one confirming publisher did.
struct ConfirmResult {
    sent: u64,
    nacks: u64,
    latency: Histogram<u64>,
}

/// Publishes up to `count` messages on `ch` (in confirm mode) with at most `window`
/// unconfirmed, stopping early at `deadline`; waits for every confirm.
async fn confirmed_publish(
    ch: &Channel,
    queue: &str,
    size: usize,
    count: u64,
    window: usize,
    deadline: Option<Instant>,
) -> Result<ConfirmResult> {
    let permits = Arc::new(Semaphore::new(window));
    let (tx, waiter) = spawn_confirm_waiter();
    let mut body = vec![b'x'; size];
    // lapin resolves a publish once its I/O loop has written the frames; awaiting each
    // one before starting the next costs a thread hand-off per message. So up to
    // HAND_OFF publishes are given to lapin at once (polled in order, so their delivery
    // tags and frames keep the call order).
    let mut handing = FuturesOrdered::new();
    let (mut queued, mut sent) = (0u64, 0u64);
    let mut failure = None;
    loop {
        let more = queued < count && deadline.is_none_or(|d| Instant::now() < d);
        if more && handing.len() < HAND_OFF {
            if let Ok(permit) = Arc::clone(&permits).try_acquire_owned() {
                encode_stamp(&mut body, queued, 0);
                queued += 1;
                let (ch, payload, t0) = (ch.clone(), body.clone(), Instant::now());
                handing.push_back(async move {
                    let r = ch
                        .basic_publish(
                            "".into(),
                            queue.into(),
                            BasicPublishOptions::default(),
                            &payload,
                            properties(),
                        )
                        .await;
                    (t0, r, permit)
                });
                continue;
            }
        }
        if handing.is_empty() {
            if !more {
                break;
            }
            // The window is full: wait until a confirm frees a slot.
            match Arc::clone(&permits).acquire_owned().await {
                Ok(p) => drop(p),
                Err(_) => break,
            }
            continue;
        }
        let Some((t0, r, permit)) = handing.next().await else {
            continue;
        };
        match r {
            Ok(confirm) => {
                sent += 1;
                if tx.send((t0, confirm, permit)).is_err() {
                    break; // the waiter failed; its error is reported below
                }
            }
            Err(e) => {
                failure = Some(anyhow!(e).context("basic.publish"));
                break;
            }
        }
    }
    drop(tx);
    let (latency, nacks) = waiter.await.context("confirm waiter panicked")??;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(ConfirmResult {
        sent,
        nacks,
        latency,
    })
}

/// How the publishers of a run put their channel.
#[derive(Clone, Copy)]
enum PublishMode {
    Confirms,
    Transactions,
}

/// `args.publishers` connections with a channel each, in `mode`.
async fn open_publishers(args: &AmqpBenchArgs, mode: PublishMode) -> Result<Vec<Publisher>> {
    let mut pubs = Vec::with_capacity(args.publishers);
    for _ in 0..args.publishers {
        let p = open_publisher(&args.uri).await?;
        match mode {
            PublishMode::Confirms => {
                p.ch.confirm_select(ConfirmSelectOptions::default())
                    .await
                    .context("confirm.select")?
            }
            PublishMode::Transactions => p.ch.tx_select().await.context("tx.select")?,
        }
        pubs.push(p);
    }
    Ok(pubs)
}

/// When a run that started at `start` stops publishing (`--time-limit`, 0 = never).
fn run_deadline(args: &AmqpBenchArgs, start: Instant) -> Option<Instant> {
    (args.time_limit > 0.0).then(|| start + Duration::from_secs_f64(args.time_limit))
}

async fn publish_confirm(args: &AmqpBenchArgs, queue: &str) -> Result<AmqpStats> {
    let pubs = open_publishers(args, PublishMode::Confirms).await?;
    let start = Instant::now();
    let deadline = run_deadline(args, start);
    let mut tasks = Vec::new();
    for (i, p) in pubs.iter().enumerate() {
        let ch = p.ch.clone();
        let queue = queue.to_string();
        let (size, count, window) = (
            args.message_size,
            share(args.messages, args.publishers, i),
            args.confirm_window,
        );
        tasks.push(tokio::spawn(async move {
            confirmed_publish(&ch, &queue, size, count, window, deadline).await
        }));
    }
    let mut stats = AmqpStats::new();
    let mut hist = new_histogram()?;
    for t in tasks {
        let r = t.await.context("publisher panicked")??;
        stats.messages += r.sent;
        stats.nacks += r.nacks;
        hist.add(&r.latency).context("merging histograms")?;
    }
    stats.elapsed = start.elapsed();
    stats.body_bytes = stats.messages * args.message_size as u64;
    stats.confirm_us = Some(hist);
    close_all(pubs).await;
    Ok(stats)
}

async fn close_all(pubs: Vec<Publisher>) {
    for p in pubs {
        let _ = p.conn.close(200, "bye".into()).await;
    }
}

async fn tx(args: &AmqpBenchArgs, queue: &str) -> Result<AmqpStats> {
    if args.client == ClientLib::Amqprs {
        return tx_amqprs(args, queue).await;
    }
    let pubs = open_publishers(args, PublishMode::Transactions).await?;
    let start = Instant::now();
    let deadline = run_deadline(args, start);
    let mut tasks = Vec::new();
    for (i, p) in pubs.iter().enumerate() {
        let ch = p.ch.clone();
        let queue = queue.to_string();
        let (size, count, k) = (
            args.message_size,
            share(args.messages, args.publishers, i),
            args.tx_size,
        );
        tasks.push(tokio::spawn(async move {
            let mut hist = new_histogram()?;
            let mut body = vec![b'x'; size];
            let (mut sent, mut txs) = (0u64, 0u64);
            while sent < count && deadline.is_none_or(|d| Instant::now() < d) {
                let n = k.min(count - sent);
                for j in 0..n {
                    encode_stamp(&mut body, sent + j, 0);
                    ch.basic_publish(
                        "".into(),
                        queue.as_str().into(),
                        BasicPublishOptions::default(),
                        &body,
                        properties(),
                    )
                    .await
                    .context("basic.publish")?;
                }
                let t0 = Instant::now();
                ch.tx_commit().await.context("tx.commit")?;
                let _ = hist.record(micros(t0.elapsed()));
                sent += n;
                txs += 1;
            }
            anyhow::Ok((sent, txs, hist))
        }));
    }
    let stats = tx_stats(tasks, start, args.message_size).await;
    close_all(pubs).await;
    stats
}

/// What a transaction publisher task returns: messages, transactions, commit latencies.
type TxTask = tokio::task::JoinHandle<Result<(u64, u64, Histogram<u64>)>>;

/// Adds up the publishers of a `tx` run (lapin's or amqprs's).
async fn tx_stats(tasks: Vec<TxTask>, start: Instant, message_size: usize) -> Result<AmqpStats> {
    let mut stats = AmqpStats::new();
    let mut hist = new_histogram()?;
    for t in tasks {
        let (sent, txs, h) = t.await.context("publisher panicked")??;
        stats.messages += sent;
        stats.transactions += txs;
        hist.add(&h).context("merging histograms")?;
    }
    stats.elapsed = start.elapsed();
    stats.body_bytes = stats.messages * message_size as u64;
    stats.commit_us = Some(hist);
    Ok(stats)
}

async fn consume(args: &AmqpBenchArgs, queue: &str) -> Result<AmqpStats> {
    // Fill (not timed).
    let fill_start = Instant::now();
    let fill = publish_confirm(
        &AmqpBenchArgs {
            time_limit: 0.0,
            ..args.clone()
        },
        queue,
    )
    .await
    .context("filling the queue")?;
    if fill.nacks > 0 {
        bail!("{} messages of the fill were nacked", fill.nacks);
    }
    let fill_seconds = fill_start.elapsed().as_secs_f64();
    let total = fill.messages;

    if args.client == ClientLib::Amqprs {
        let mut stats = consume_amqprs(args, queue, total).await?;
        stats.fill_seconds = Some(fill_seconds);
        return Ok(stats);
    }
    let conn = connect(&args.uri).await?;
    let ch = conn.create_channel().await.context("opening a channel")?;
    ch.basic_qos(args.prefetch, BasicQosOptions::default())
        .await
        .context("basic.qos")?;
    let start = Instant::now();
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .context("basic.consume")?;
    let mut got = 0u64;
    let mut bytes = 0u64;
    while got < total {
        let next = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .map_err(|_| anyhow!("no delivery for 30 s after {got} of {total} messages"))?;
        let delivery = match next {
            Some(d) => d.context("consumer")?,
            None => bail!("the consumer was cancelled after {got} of {total} messages"),
        };
        got += 1;
        bytes += delivery.data.len() as u64;
        if got.is_multiple_of(args.ack_every) || got == total {
            delivery
                .acker
                .ack(BasicAckOptions {
                    multiple: args.ack_every > 1,
                })
                .await
                .context("basic.ack")?;
        }
    }
    let elapsed = start.elapsed();
    let _ = conn.close(200, "bye".into()).await;
    let mut stats = AmqpStats::new();
    stats.messages = got;
    stats.body_bytes = bytes;
    stats.elapsed = elapsed;
    stats.fill_seconds = Some(fill_seconds);
    Ok(stats)
}

/// `tx` with amqprs publishers: the same transactions as lapin's.
async fn tx_amqprs(args: &AmqpBenchArgs, queue: &str) -> Result<AmqpStats> {
    use amqprs::channel::BasicPublishArguments;
    let conn_args = amqprs_args(&args.uri)?;
    let start = Instant::now();
    let deadline = run_deadline(args, start);
    let mut tasks = Vec::new();
    for i in 0..args.publishers {
        let conn_args = conn_args.clone();
        let queue = queue.to_string();
        let (size, count, k) = (
            args.message_size,
            share(args.messages, args.publishers, i),
            args.tx_size,
        );
        tasks.push(tokio::spawn(async move {
            let conn = amqprs::connection::Connection::open(&conn_args)
                .await
                .map_err(|e| anyhow!("amqprs connect: {e}"))?;
            let ch = conn
                .open_channel(None)
                .await
                .map_err(|e| anyhow!("amqprs channel: {e}"))?;
            ch.tx_select()
                .await
                .map_err(|e| anyhow!("tx.select: {e}"))?;
            let props = amqprs::BasicProperties::default()
                .with_delivery_mode(2)
                .finish();
            let mut hist = new_histogram()?;
            let mut body = vec![b'x'; size];
            let (mut sent, mut txs) = (0u64, 0u64);
            while sent < count && deadline.is_none_or(|d| Instant::now() < d) {
                let n = k.min(count - sent);
                for j in 0..n {
                    encode_stamp(&mut body, sent + j, 0);
                    ch.basic_publish(
                        props.clone(),
                        body.clone(),
                        BasicPublishArguments::new("", &queue),
                    )
                    .await
                    .map_err(|e| anyhow!("basic.publish: {e}"))?;
                }
                let t0 = Instant::now();
                ch.tx_commit()
                    .await
                    .map_err(|e| anyhow!("tx.commit: {e}"))?;
                let _ = hist.record(micros(t0.elapsed()));
                sent += n;
                txs += 1;
            }
            let _ = ch.close().await;
            let _ = conn.close().await;
            anyhow::Ok((sent, txs, hist))
        }));
    }
    tx_stats(tasks, start, args.message_size).await
}

/// `amqp://user:pass@host:port/vhost` (vhost percent-encoded, `%2f` = `/`) as amqprs's
/// connection arguments.
fn amqprs_args(uri: &str) -> Result<amqprs::connection::OpenConnectionArguments> {
    let rest = uri
        .strip_prefix("amqp://")
        .ok_or_else(|| anyhow!("only amqp:// URIs: {uri}"))?;
    let (auth, rest) = rest.split_once('@').unwrap_or(("guest:guest", rest));
    let (user, pass) = auth.split_once(':').unwrap_or((auth, ""));
    let (hostport, vhost) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().context("port")?),
        None => (hostport, 5672),
    };
    let vhost = match vhost {
        "" | "%2f" | "%2F" => "/".to_string(),
        v => v.replace("%2f", "/").replace("%2F", "/"),
    };
    let mut a = amqprs::connection::OpenConnectionArguments::new(host, port, user, pass);
    a.virtual_host(&vhost);
    Ok(a)
}

/// The consume loop of `consume` with amqprs: the same prefetch and acks as lapin's.
async fn consume_amqprs(args: &AmqpBenchArgs, queue: &str, total: u64) -> Result<AmqpStats> {
    use amqprs::channel::{BasicAckArguments, BasicConsumeArguments, BasicQosArguments};
    let conn = amqprs::connection::Connection::open(&amqprs_args(&args.uri)?)
        .await
        .map_err(|e| anyhow!("amqprs connect: {e}"))?;
    let ch = conn
        .open_channel(None)
        .await
        .map_err(|e| anyhow!("amqprs channel: {e}"))?;
    ch.basic_qos(BasicQosArguments::new(0, args.prefetch, false))
        .await
        .map_err(|e| anyhow!("basic.qos: {e}"))?;
    let start = Instant::now();
    let (_tag, mut rx) = ch
        .basic_consume_rx(BasicConsumeArguments::new(queue, ""))
        .await
        .map_err(|e| anyhow!("basic.consume: {e}"))?;
    let mut got = 0u64;
    let mut bytes = 0u64;
    while got < total {
        let msg = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .map_err(|_| anyhow!("no delivery for 30 s after {got} of {total} messages"))?
            .ok_or_else(|| anyhow!("the consumer ended after {got} of {total} messages"))?;
        let Some(deliver) = msg.deliver else {
            continue;
        };
        got += 1;
        bytes += msg.content.map_or(0, |c| c.len() as u64);
        if got.is_multiple_of(args.ack_every) || got == total {
            ch.basic_ack(BasicAckArguments::new(
                deliver.delivery_tag(),
                args.ack_every > 1,
            ))
            .await
            .map_err(|e| anyhow!("basic.ack: {e}"))?;
        }
    }
    let elapsed = start.elapsed();
    let _ = ch.close().await;
    let _ = conn.close().await;
    let mut stats = AmqpStats::new();
    stats.messages = got;
    stats.body_bytes = bytes;
    stats.elapsed = elapsed;
    Ok(stats)
}

async fn latency(args: &AmqpBenchArgs, queue: &str) -> Result<AmqpStats> {
    let origin = Instant::now();
    let since_origin = move || u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX);

    // Consumer first, so every message finds it waiting.
    let cconn = connect(&args.uri).await?;
    let cch = cconn.create_channel().await.context("opening a channel")?;
    cch.basic_qos(args.prefetch, BasicQosOptions::default())
        .await
        .context("basic.qos")?;
    let mut consumer = cch
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .context("basic.consume")?;
    let (expect_tx, mut expect_rx) = tokio::sync::watch::channel(u64::MAX);
    let ack_every = args.ack_every;
    let consumer_task = tokio::spawn(async move {
        let mut e2e = new_histogram()?;
        let mut got = 0u64;
        loop {
            let expected = *expect_rx.borrow_and_update();
            if got >= expected {
                break;
            }
            let next = tokio::select! {
                d = consumer.next() => d,
                r = expect_rx.changed() => {
                    if r.is_err() { break; }
                    continue;
                }
                _ = tokio::time::sleep(Duration::from_secs(30)) => {
                    bail!("no delivery for 30 s after {got} messages");
                }
            };
            let delivery = match next {
                Some(d) => d.context("consumer")?,
                None => bail!("the consumer was cancelled after {got} messages"),
            };
            let now = since_origin();
            if let Some((_, sent)) = decode_stamp(&delivery.data) {
                let _ = e2e.record((now.saturating_sub(sent) / 1000).max(1));
            }
            got += 1;
            if got.is_multiple_of(ack_every) {
                delivery
                    .acker
                    .ack(BasicAckOptions {
                        multiple: ack_every > 1,
                    })
                    .await
                    .context("basic.ack")?;
            }
        }
        anyhow::Ok((got, e2e))
    });

    let p = open_publisher(&args.uri).await?;
    p.ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .context("confirm.select")?;
    let permits = Arc::new(Semaphore::new(args.confirm_window));
    let (tx, waiter) = spawn_confirm_waiter();

    let total = (args.rate as f64 * args.duration).round() as u64;
    let mut body = vec![b'x'; args.message_size];
    let start = Instant::now();
    let mut sent = 0u64;
    let mut late = 0u64;
    let mut failure = None;
    while sent < total {
        let due = start + due_after(sent, args.rate);
        let now = Instant::now();
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        } else if now - due > Duration::from_millis(1) {
            late += 1;
        }
        let permit = match permits.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => break,
        };
        encode_stamp(&mut body, sent, since_origin());
        let t0 = Instant::now();
        match p
            .ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                &body,
                properties(),
            )
            .await
        {
            Ok(c) => {
                sent += 1;
                if tx.send((t0, c, permit)).is_err() {
                    break;
                }
            }
            Err(e) => {
                failure = Some(anyhow!(e).context("basic.publish"));
                break;
            }
        }
    }
    drop(tx);
    let (confirm_hist, nacks) = waiter.await.context("confirm waiter panicked")??;
    let publish_elapsed = start.elapsed();
    let _ = expect_tx.send(sent);
    let (delivered, e2e) = consumer_task.await.context("consumer panicked")??;
    let _ = p.conn.close(200, "bye".into()).await;
    let _ = cconn.close(200, "bye".into()).await;
    if let Some(e) = failure {
        return Err(e);
    }
    if late > 0 {
        eprintln!("note: {late} of {sent} messages left more than 1 ms after their slot");
    }
    let mut stats = AmqpStats::new();
    stats.messages = sent;
    stats.body_bytes = sent * args.message_size as u64;
    stats.elapsed = publish_elapsed;
    stats.nacks = nacks;
    stats.confirm_us = Some(confirm_hist);
    stats.e2e_us = Some(e2e);
    stats.delivered = delivered;
    Ok(stats)
}

fn lat_line(name: &str, h: &Histogram<u64>) -> String {
    format!(
        "  {name} latency (ms): p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
        h.mean() / 1000.0
    )
}

fn human_lines(args: &AmqpBenchArgs, queue: &str, s: &AmqpStats) -> Vec<String> {
    let mut out = vec![format!(
        "arctern bench-amqp {}: {} {} queue {queue}; {} B persistent messages, {} publishers",
        args.scenario.name(),
        redact(&args.uri),
        args.queue_type.name(),
        args.message_size,
        args.publishers
    )];
    let verb = if args.scenario == Scenario::Consume {
        "consumed"
    } else {
        "published"
    };
    out.push(format!(
        "{verb} {} messages in {:.3} s: {:.0} msgs/s, {:.2} MB/s{}",
        s.messages,
        s.elapsed.as_secs_f64(),
        per_sec(s.messages as f64, s.elapsed),
        per_sec(s.body_bytes as f64, s.elapsed) / MB,
        if s.nacks > 0 {
            format!(", {} NACKED", s.nacks)
        } else {
            String::new()
        }
    ));
    if let Some(f) = s.fill_seconds {
        out.push(format!(
            "  (fill: {} messages in {f:.3} s; prefetch {}, ack every {})",
            s.messages, args.prefetch, args.ack_every
        ));
    }
    if args.scenario == Scenario::Tx {
        out.push(format!(
            "  {} transactions of {} publishes",
            s.transactions, args.tx_size
        ));
    }
    if args.scenario == Scenario::Latency {
        out.push(format!(
            "  target rate {} msgs/s for {} s; consumer received {}",
            args.rate, args.duration, s.delivered
        ));
    }
    if let Some(h) = &s.confirm_us {
        out.push(lat_line("confirm", h));
    }
    if let Some(h) = &s.commit_us {
        out.push(lat_line("commit", h));
    }
    if let Some(h) = &s.e2e_us {
        out.push(lat_line("end-to-end", h));
    }
    out
}

fn lat_json(h: &Option<Histogram<u64>>) -> serde_json::Value {
    match h {
        Some(h) if !h.is_empty() => serde_json::json!({
            "p50": ms(h.value_at_quantile(0.5)),
            "p99": ms(h.value_at_quantile(0.99)),
            "p999": ms(h.value_at_quantile(0.999)),
            "max": ms(h.max()),
            "mean": h.mean() / 1000.0,
        }),
        _ => serde_json::Value::Null,
    }
}

fn json_summary(args: &AmqpBenchArgs, queue: &str, s: &AmqpStats) -> String {
    serde_json::json!({
        "scenario": args.scenario.name(),
        "uri": redact(&args.uri),
        "queue": queue,
        "queue_type": args.queue_type.name(),
        "message_size": args.message_size,
        "publishers": args.publishers,
        "confirm_window": args.confirm_window,
        "tx_size": args.tx_size,
        "prefetch": args.prefetch,
        "ack_every": args.ack_every,
        "rate": args.rate,
        "messages": s.messages,
        "nacks": s.nacks,
        "transactions": s.transactions,
        "delivered": s.delivered,
        "seconds": s.elapsed.as_secs_f64(),
        "fill_seconds": s.fill_seconds,
        "msgs_per_sec": per_sec(s.messages as f64, s.elapsed),
        "mb_per_sec": per_sec(s.body_bytes as f64, s.elapsed) / MB,
        "confirm_latency_ms": lat_json(&s.confirm_us),
        "commit_latency_ms": lat_json(&s.commit_us),
        "e2e_latency_ms": lat_json(&s.e2e_us),
    })
    .to_string()
}

/// Publishes handed to lapin at once by one publisher (see `confirmed_publish`).
const HAND_OFF: usize = 32;

/// A publish waiting for its confirm: when it was sent, lapin's confirm future, and the
/// window permit it holds until then.
type PendingConfirm = (Instant, lapin::PublisherConfirm, OwnedSemaphorePermit);

/// The waiter task: the confirm latency histogram and how many publishes were nacked.
type ConfirmWaiter = tokio::task::JoinHandle<Result<(Histogram<u64>, u64)>>;

/// Confirms come back in order (one queue); a task of their own takes each as soon as it
/// arrives, so a publisher busy sending does not inflate the latency.
fn spawn_confirm_waiter() -> (mpsc::UnboundedSender<PendingConfirm>, ConfirmWaiter) {
    let (tx, mut rx) = mpsc::unbounded_channel::<PendingConfirm>();
    let waiter = tokio::spawn(async move {
        let mut latency = new_histogram()?;
        let mut nacks = 0u64;
        while let Some((t0, confirm, permit)) = rx.recv().await {
            let c: Confirmation = confirm.await.context("waiting for a publisher confirm")?;
            let _ = latency.record(micros(t0.elapsed()));
            drop(permit);
            if c.is_nack() {
                nacks += 1;
            }
        }
        anyhow::Ok((latency, nacks))
    });
    (tx, waiter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trip() {
        let mut body = vec![b'x'; 1024];
        encode_stamp(&mut body, 42, 1_234_567_890_123);
        assert_eq!(decode_stamp(&body), Some((42, 1_234_567_890_123)));
        assert!(body[STAMP_LEN..].iter().all(|&b| b == b'x'));
        assert_eq!(decode_stamp(&body[..STAMP_LEN - 1]), None);
        let mut short = [0u8; 4];
        encode_stamp(&mut short, u64::MAX, 7); // does not panic; keeps what fits
        assert_eq!(short, [0xff; 4]);
    }

    #[test]
    fn pacing_is_absolute() {
        assert_eq!(due_after(0, 5000), Duration::ZERO);
        assert_eq!(due_after(1, 5000), Duration::from_micros(200));
        assert_eq!(due_after(5000, 5000), Duration::from_secs(1));
        assert_eq!(due_after(7, 3), Duration::from_nanos(2_333_333_333));
        assert_eq!(due_after(10, 0), Duration::ZERO);
    }

    #[test]
    fn shares_add_up() {
        for (total, n) in [(10u64, 3usize), (0, 2), (7, 7), (100_000, 4)] {
            let sum: u64 = (0..n).map(|i| share(total, n, i)).sum();
            assert_eq!(sum, total);
        }
        assert_eq!(share(10, 3, 0), 4);
        assert_eq!(share(10, 3, 2), 3);
    }

    #[test]
    fn redacts_password() {
        assert_eq!(
            redact("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqp://127.0.0.1"), "amqp://127.0.0.1");
    }
}
