//! kill -9 of a single-node quorum under load: every acknowledged command survives.
//!
//! The test re-runs its own binary as a child (selecting `crash_child`, which does nothing
//! unless `ARCTERN_METADATA_CRASH_DIR` is set). The child proposes commands and prints each
//! one after `propose` returned; the parent SIGKILLs it mid-stream, reopens the data dir and
//! checks that every printed command is in the state.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use arctern_metadata::{
    CommandResult, MetadataCommand, MetadataConfig, MetadataNode, NodeOptions, PartitionAssignment,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use uuid::Uuid;

const DIR_ENV: &str = "ARCTERN_METADATA_CRASH_DIR";
const ROUND_ENV: &str = "ARCTERN_METADATA_CRASH_ROUND";
const WAIT: Duration = Duration::from_secs(30);

fn options() -> NodeOptions {
    NodeOptions {
        // Snapshots (and log purges) happen during the run too.
        snapshot_logs_since_last: 7,
        max_in_snapshot_log_to_keep: 0,
        propose_timeout: WAIT,
        ..NodeOptions::default()
    }
}

fn config(dir: &std::path::Path) -> MetadataConfig {
    MetadataConfig {
        node_id: 1,
        voters: BTreeMap::new(),
        listen: String::new(),
        data_dir: dir.to_path_buf(),
    }
}

fn name(round: u64, i: u64) -> String {
    format!("r{round}-t{i}")
}

fn topic(round: u64, i: u64) -> MetadataCommand {
    MetadataCommand::CreateTopic {
        name: name(round, i),
        id: Uuid::new_v4(),
        partitions: vec![PartitionAssignment { replicas: vec![1] }],
        configs: BTreeMap::new(),
    }
}

#[tokio::test]
async fn crash_child() -> Result<()> {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return Ok(()); // only meaningful as the child of `kill_9_loses_no_acknowledged_command`
    };
    let round: u64 = std::env::var(ROUND_ENV)?.parse()?;
    let node = MetadataNode::start_with(config(dir.as_ref()), options()).await?;
    let register = MetadataCommand::RegisterBroker {
        broker_id: 1,
        host: "127.0.0.1".into(),
        port: 9092,
        rack: None,
        incarnation: Uuid::new_v4(),
        listeners: Vec::new(),
    };
    if node.propose(register).await? != CommandResult::Ok {
        bail!("register failed");
    }
    let mut out = std::io::stdout();
    for i in 0.. {
        let r = node.propose(topic(round, i)).await?;
        if r != CommandResult::Ok {
            bail!("t{i}: {r:?}");
        }
        writeln!(out, "ACK {i}")?;
        out.flush()?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_command() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut acked: Vec<String> = Vec::new();
    for round in 0..3u64 {
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(DIR_ENV, dir.path())
            .env(ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("spawn child")?;
        let stdout = child.stdout.take().context("child stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut this_round = 0;
        // Kill at a different point each round.
        let kill_after = 15 + 11 * round;
        let read = async {
            while let Some(line) = lines.next_line().await? {
                if let Some(i) = line.strip_prefix("ACK ") {
                    acked.push(name(round, i.parse()?));
                    this_round += 1;
                    if this_round == kill_after {
                        child.start_kill()?; // SIGKILL
                    }
                }
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(WAIT, read)
            .await
            .context("child produced too few acks")??;
        child.wait().await?;
        if this_round < kill_after {
            bail!("child exited after {this_round} acks, before the kill");
        }

        // Reopen in-process: everything acknowledged so far must be there.
        let node = MetadataNode::start_with(config(dir.path()), options()).await?;
        let mut rx = node.state();
        tokio::time::timeout(
            WAIT,
            rx.wait_for(|s| acked.iter().all(|t| s.topics.contains_key(t))),
        )
        .await
        .with_context(|| {
            format!(
                "round {round}: some of {} acknowledged topics missing",
                acked.len()
            )
        })??;
        eprintln!(
            "round {round}: {} acknowledged topics survived",
            acked.len()
        );
        node.shutdown().await;
    }
    Ok(())
}
