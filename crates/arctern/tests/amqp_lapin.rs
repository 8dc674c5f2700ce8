//! AMQP 0-9-1 end to end with a Rust client nobody here wrote: lapin against the real
//! `arctern` binary.
//!
//! Declares a durable queue, publishes persistent messages with publisher confirms and
//! awaits every confirm, checks a mandatory unroutable publish comes back (312) and is still
//! confirmed, consumes with manual acks under a prefetch limit, nacks some with requeue and
//! gets them again with `redelivered`, and checks confirmed messages survive a SIGKILL of
//! the broker. Everything asserted is documented RabbitMQ behaviour, so the test passes
//! against RabbitMQ too.

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use lapin::message::{Delivery, DeliveryResult};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use tokio::sync::mpsc;

/// The broker under test, on free loopback ports with a temp data dir; killed (and reaped)
/// when dropped, even if the test fails.
struct Broker {
    child: Option<Child>,
    kafka: String,
    amqp: String,
    data: PathBuf,
    dir: tempfile::TempDir,
    starts: u32,
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

impl Broker {
    fn start() -> Result<Self> {
        let dir = tempfile::tempdir().context("creating temp dir")?;
        let data = dir.path().join("data");
        let kafka = free_port()?;
        let mut amqp = free_port()?;
        while amqp == kafka {
            amqp = free_port()?;
        }
        let mut broker = Self {
            child: None,
            kafka: format!("127.0.0.1:{kafka}"),
            amqp: format!("127.0.0.1:{amqp}"),
            data,
            dir,
            starts: 0,
        };
        broker.launch()?;
        Ok(broker)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("broker-{}.log", self.starts))
    }

    /// Starts the process on the same data dir and ports, and waits for both listeners.
    fn launch(&mut self) -> Result<()> {
        self.starts += 1;
        let out = File::create(self.log_path()).context("creating broker log")?;
        let err = out.try_clone().context("cloning broker log handle")?;
        let child = Command::new(env!("CARGO_BIN_EXE_arctern"))
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--kafka-listen")
            .arg(&self.kafka)
            .arg("--amqp-listen")
            .arg(&self.amqp)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("starting arctern")?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(30))
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().context("polling broker")? {
                    bail!(
                        "broker exited early with {status}; log:\n{}",
                        self.log_text()
                    );
                }
            }
            if TcpStream::connect(&self.kafka).is_ok() && TcpStream::connect(&self.amqp).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "broker not listening on {} / {} after {timeout:?}; log:\n{}",
                    self.kafka,
                    self.amqp,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL (a crash) and reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    fn uri(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.amqp)
    }

    async fn connect(&self) -> Result<Connection> {
        Connection::connect(&self.uri(), ConnectionProperties::default())
            .await
            .context("lapin connect")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

const QUEUE: &str = "lapin-durable";
const N: usize = 300;

fn s(v: &str) -> ShortString {
    v.into()
}

fn persistent(i: usize) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(format!("id-{i}").into())
        .with_content_type(s("text/plain"))
}

fn body(i: usize) -> Vec<u8> {
    format!("lapin message {i:05}").into_bytes()
}

/// Consumes from QUEUE on a new channel (manual ack, prefetch `prefetch`); deliveries
/// arrive on the returned receiver (the delegate runs per delivery, so the order in which
/// they arrive there is not the delivery order: sort by delivery tag).
async fn consume(
    conn: &Connection,
    prefetch: u16,
) -> Result<(Channel, mpsc::UnboundedReceiver<Delivery>)> {
    let ch = conn.create_channel().await?;
    ch.basic_qos(prefetch, BasicQosOptions::default()).await?;
    let consumer = ch
        .basic_consume(
            s(QUEUE),
            s("lapin-consumer"),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let (tx, rx) = mpsc::unbounded_channel();
    consumer.set_delegate(move |d: DeliveryResult| {
        let tx = tx.clone();
        async move {
            if let Ok(Some(d)) = d {
                let _ = tx.send(d);
            }
        }
    });
    Ok((ch, rx))
}

/// Receives `n` deliveries (at most `timeout`), sorted by delivery tag.
async fn recv_n(
    rx: &mut mpsc::UnboundedReceiver<Delivery>,
    n: usize,
    timeout: Duration,
) -> Result<Vec<Delivery>> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(d)) => out.push(d),
            Ok(None) => bail!("consumer gone after {} of {n} deliveries", out.len()),
            Err(_) => bail!("only {} of {n} deliveries within {timeout:?}", out.len()),
        }
    }
    out.sort_by_key(|d| d.delivery_tag);
    Ok(out)
}

/// Nothing more arrives within `quiet`.
async fn no_more(rx: &mut mpsc::UnboundedReceiver<Delivery>, quiet: Duration) -> Result<()> {
    if let Ok(Some(d)) = tokio::time::timeout(quiet, rx.recv()).await {
        bail!(
            "unexpected delivery {:?} (tag {})",
            String::from_utf8_lossy(&d.data),
            d.delivery_tag
        );
    }
    Ok(())
}

fn index_of(d: &Delivery) -> Result<usize> {
    let text = std::str::from_utf8(&d.data).context("utf-8 body")?;
    text.strip_prefix("lapin message ")
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("unexpected body {text:?}"))
}

async fn scenario(broker: &mut Broker) -> Result<()> {
    let conn = broker.connect().await?;
    let ch = conn.create_channel().await?;
    let declared = ch
        .queue_declare(
            s(QUEUE),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await?;
    ensure!(declared.message_count() == 0);

    // Publisher confirms: every persistent publish is acked by the broker.
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let mut confirms = Vec::with_capacity(N);
    for i in 0..N {
        confirms.push(
            ch.basic_publish(
                s(""),
                s(QUEUE),
                BasicPublishOptions::default(),
                &body(i),
                persistent(i),
            )
            .await?,
        );
    }
    for (i, c) in confirms.into_iter().enumerate() {
        let c = c.await.with_context(|| format!("confirm of message {i}"))?;
        ensure!(
            matches!(c, Confirmation::Ack(None)),
            "message {i}: {c:?}, want a plain ack"
        );
    }
    // A mandatory publish nobody can route: basic.return (312 NO_ROUTE), then confirmed.
    let c = ch
        .basic_publish(
            s(""),
            s("lapin-no-such-queue"),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            b"unroutable",
            BasicProperties::default(),
        )
        .await?
        .await?;
    match c {
        Confirmation::Ack(Some(ret)) => {
            ensure!(ret.reply_code == 312, "reply code {}", ret.reply_code);
            ensure!(ret.data == b"unroutable");
        }
        other => bail!("unroutable mandatory publish: {other:?}, want an ack with the return"),
    }
    let passive = QueueDeclareOptions {
        passive: true,
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let q = ch
        .queue_declare(s(QUEUE), passive, FieldTable::default())
        .await?;
    ensure!(
        q.message_count() as usize == N,
        "{} ready, want {N}",
        q.message_count()
    );

    // Confirmed messages survive kill -9.
    drop(ch);
    let _ = conn.close(200, s("bye")).await;
    broker.kill();
    broker.launch()?;
    let conn = broker.connect().await?;
    let ch = conn.create_channel().await?;
    let q = ch
        .queue_declare(s(QUEUE), passive, FieldTable::default())
        .await?;
    ensure!(
        q.message_count() as usize == N,
        "{} ready after SIGKILL and restart, want {N}",
        q.message_count()
    );

    // Manual-ack consumer under prefetch 50: never more than 50 unacked deliveries; the
    // first 10 messages are nacked with requeue on their first delivery, everything else
    // is acked. So N + 10 deliveries: each message once in publish order, with its
    // properties, and the 10 nacked ones once more with `redelivered`. (After the kill -9
    // the first deliveries may carry `redelivered` too: every unsettled message below the
    // delivery horizon does after an unclean restart, docs/amqp-compatibility.md.)
    let (cch, mut rx) = consume(&conn, 50).await?;
    let total = N + 10;
    let mut fresh = Vec::with_capacity(N);
    let mut redelivered = Vec::new();
    let mut received = 0;
    while received < total {
        let want = 50.min(total - received);
        let batch = recv_n(&mut rx, want, Duration::from_secs(20)).await?;
        // the prefetch limit holds: nothing more until some are settled
        no_more(&mut rx, Duration::from_millis(100)).await?;
        received += batch.len();
        for d in &batch {
            let i = index_of(d)?;
            if i < 10 && fresh.contains(&i) {
                ensure!(
                    d.redelivered,
                    "message {i}: requeued, not flagged redelivered"
                );
                redelivered.push(i);
                d.acker.ack(BasicAckOptions::default()).await?;
                continue;
            }
            ensure!(
                d.properties.delivery_mode() == &Some(2),
                "message {i}: delivery mode"
            );
            ensure!(
                d.properties.message_id().as_ref().map(|m| m.as_str()) == Some(&*format!("id-{i}")),
                "message {i}: message id"
            );
            fresh.push(i);
            if i < 10 {
                d.acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        multiple: false,
                    })
                    .await?;
            } else {
                d.acker.ack(BasicAckOptions::default()).await?;
            }
        }
    }
    ensure!(
        fresh.iter().copied().eq(0..N),
        "first deliveries not exactly the published messages in order"
    );
    redelivered.sort_unstable();
    ensure!(
        redelivered == (0..10).collect::<Vec<_>>(),
        "redelivered: {redelivered:?}, want the 10 nacked ones"
    );
    no_more(&mut rx, Duration::from_millis(300)).await?;
    cch.close(200, s("done")).await?;

    // Everything was acked: the queue is empty.
    let get = ch
        .basic_get(s(QUEUE), BasicGetOptions { no_ack: true })
        .await?;
    ensure!(get.is_none(), "queue not empty after acking everything");
    let _ = conn.close(200, s("bye")).await;
    Ok(())
}

#[tokio::test]
async fn lapin_confirms_kill_9_manual_ack_prefetch_nack_requeue() -> Result<()> {
    let mut broker = Broker::start()?;
    let result = scenario(&mut broker).await;
    if result.is_err() {
        eprintln!("broker log:\n{}", broker.log_text());
    }
    result
}
