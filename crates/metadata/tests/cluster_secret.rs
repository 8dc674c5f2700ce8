//! The Raft port with a cluster secret: members form a quorum; strangers (no proof, a wrong
//! secret) are refused before anything reaches Raft, and a node with another secret cannot
//! join. Real TCP on loopback, on-disk state in temp dirs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use arctern_metadata::{
    parse_voters, CommandResult, ControllerOptions, MetadataCommand, MetadataConfig, MetadataNode,
    NodeOptions, TypeConfig,
};
use arctern_security::cluster::now_ms;
use arctern_security::ClusterSecret;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::{CommittedLeaderId, LogId, Vote};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);
const SECRET: &[u8] = b"the-cluster-secret-of-this-test";
const OTHER: &[u8] = b"some-other-cluster-secret-entirely";

fn options() -> NodeOptions {
    NodeOptions {
        heartbeat_interval: Duration::from_millis(100),
        election_timeout_min: Duration::from_millis(600),
        election_timeout_max: Duration::from_millis(1200),
        propose_timeout: WAIT,
        controller: ControllerOptions {
            session_timeout: Duration::from_secs(3600),
            auto_leader_rebalance: false,
            ..ControllerOptions::default()
        },
        ..NodeOptions::default()
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

async fn start(
    id: u64,
    voters: &BTreeMap<u64, String>,
    dir: &Path,
    secret: &[u8],
) -> Result<MetadataNode> {
    let cfg = MetadataConfig {
        node_id: id,
        voters: voters.clone(),
        listen: voters[&id].clone(),
        data_dir: dir.to_path_buf(),
    };
    let secret = Arc::new(ClusterSecret::new(secret)?);
    MetadataNode::start_secured(cfg, options(), Some(secret))
        .await
        .with_context(|| format!("start node {id}"))
}

fn register(id: i32) -> MetadataCommand {
    MetadataCommand::RegisterBroker {
        broker_id: id,
        host: "127.0.0.1".into(),
        port: 9092 + id as u16,
        rack: None,
        incarnation: Uuid::from_u128(id as u128),
        listeners: Vec::new(),
    }
}

async fn agreed_leader(nodes: &[&MetadataNode]) -> Result<u64> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let leaders: Vec<Option<u64>> = nodes.iter().map(|n| n.leader()).collect();
        if let Some(Some(l)) = leaders.first() {
            if leaders.iter().all(|x| *x == Some(*l)) {
                return Ok(*l);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("no agreed leader; saw {leaders:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a stranger must not change: term, leader, role, applied log, state.
fn snapshot(n: &MetadataNode) -> (u64, Option<u64>, String, Option<u64>, usize) {
    let m = n.raft_metrics().borrow().clone();
    (
        m.current_term,
        m.current_leader,
        format!("{:?}", m.state),
        m.last_applied.map(|l| l.index),
        n.state().borrow().brokers.len(),
    )
}

fn frame(v: &serde_json::Value) -> Vec<u8> {
    let body = serde_json::to_vec(v).expect("json");
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(&body);
    f
}

/// Sends `frames` on a fresh connection and returns every byte the server sent before
/// closing it (a refused connection is closed; an accepted one would answer each frame).
async fn talk(addr: &str, frames: &[serde_json::Value]) -> Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await?;
    for f in frames {
        // The server may close after the first frame: later writes may fail, which is fine.
        if s.write_all(&frame(f)).await.is_err() {
            break;
        }
    }
    let mut got = Vec::new();
    match tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut got)).await {
        Ok(_) => Ok(got),
        Err(_) => Err(anyhow!("{addr} kept the stranger's connection open")),
    }
}

/// A Vote and an AppendEntries that would depose the leader (a far higher term) and, for
/// AppendEntries, install a bogus leader `1`, if they reached Raft.
fn hostile_rpcs(term: u64) -> Vec<serde_json::Value> {
    let vote = VoteRequest::<u64>::new(
        Vote::new(term + 100, 4),
        Some(LogId::new(CommittedLeaderId::new(term + 100, 4), 1_000_000)),
    );
    let append = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(term + 200, 1),
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    };
    vec![
        serde_json::json!({ "Vote": vote }),
        serde_json::json!({ "AppendEntries": append }),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_form_a_quorum_and_strangers_are_refused() -> Result<()> {
    let spec = (1..=3)
        .map(|id| format!("{id}@127.0.0.1:{}", free_port()))
        .collect::<Vec<_>>()
        .join(",");
    let voters = parse_voters(&spec)?;
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?;
    let mut nodes = Vec::new();
    for id in [3u64, 2, 1] {
        nodes.push(start(id, &voters, dirs[id as usize - 1].path(), SECRET).await?);
    }
    let all: Vec<&MetadataNode> = nodes.iter().collect();
    let leader = agreed_leader(&all).await?;
    // Forwarded proposals (a follower to the leader) pass the proof too.
    let follower = all
        .iter()
        .find(|n| n.node_id() != leader)
        .expect("a follower");
    assert_eq!(follower.propose(register(1)).await?, CommandResult::Ok);
    for n in &all {
        let mut rx = n.state();
        tokio::time::timeout(WAIT, rx.wait_for(|s| s.brokers.contains_key(&1))).await??;
    }
    // Raft metrics trail the state machine: wait until every node reports the same applied
    // index before taking the picture the strangers must not change.
    let deadline = tokio::time::Instant::now() + WAIT;
    let before: Vec<_> = loop {
        let s: Vec<_> = all.iter().map(|n| snapshot(n)).collect();
        if s.windows(2).all(|w| w[0].3 == w[1].3) || tokio::time::Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let term = before[0].0;

    let other = ClusterSecret::new(OTHER)?;
    for addr in voters.values() {
        // No proof at all: closed before any RPC is read, nothing answered.
        let got = talk(addr, &hostile_rpcs(term)).await?;
        assert!(got.is_empty(), "{addr} answered a stranger: {got:?}");

        // A proof made with another secret (claiming to be voter 1): refused, and the
        // RPCs after it never answered.
        let mut frames = vec![serde_json::json!({ "Hello": {
            "node_id": 1, "token": other.prove(1, "raft", now_ms()) } })];
        frames.extend(hostile_rpcs(term));
        let got = talk(addr, &frames).await?;
        let text = String::from_utf8_lossy(&got);
        // (The refusal itself may be lost to the reset that unread RPCs cause.)
        assert!(
            (text.is_empty() || text.contains("refused"))
                && !text.contains("Vote")
                && !text.contains("AppendEntries"),
            "{addr} answered a wrong secret with {text}"
        );
        let hello = serde_json::json!({ "Hello": {
            "node_id": 1, "token": other.prove(1, "raft", now_ms()) } });
        let got = talk(addr, &[hello]).await?;
        assert!(
            String::from_utf8_lossy(&got).contains("refused"),
            "{addr}: no refusal for a wrong secret"
        );

        // A good token replayed, or proving a node that is no voter: refused too.
        let secret = ClusterSecret::new(SECRET)?;
        let stranger_token = secret.prove(9, "raft", now_ms());
        let got = talk(
            addr,
            &[serde_json::json!({ "Hello": { "node_id": 9, "token": stranger_token } })],
        )
        .await?;
        assert!(String::from_utf8_lossy(&got).contains("refused"));
    }

    // Give anything that slipped through time to show; then nothing changed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after: Vec<_> = all.iter().map(|n| snapshot(n)).collect();
    assert_eq!(before, after, "a stranger changed the metadata");
    assert_eq!(agreed_leader(&all).await?, leader);
    for n in nodes {
        n.shutdown().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_secret_cannot_join() -> Result<()> {
    let spec = (1..=3)
        .map(|id| format!("{id}@127.0.0.1:{}", free_port()))
        .collect::<Vec<_>>()
        .join(",");
    let voters = parse_voters(&spec)?;
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?;
    let n3 = start(3, &voters, dirs[2].path(), OTHER).await?;
    let n2 = start(2, &voters, dirs[1].path(), SECRET).await?;
    let n1 = start(1, &voters, dirs[0].path(), SECRET).await?;
    let leader = agreed_leader(&[&n1, &n2]).await?;
    let term = n1.raft_metrics().borrow().current_term;
    assert_eq!(n1.propose(register(1)).await?, CommandResult::Ok);
    assert_eq!(n2.propose(register(2)).await?, CommandResult::Ok);

    // Node 3 times out and calls elections; none of its votes reach the members.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(n3.state().borrow().brokers.is_empty(), "node 3 got state");
    assert_ne!(n3.leader(), Some(leader), "node 3 follows the leader");
    assert_eq!(n1.raft_metrics().borrow().current_term, term);
    assert_eq!(agreed_leader(&[&n1, &n2]).await?, leader);
    // Its proposals go nowhere either.
    let r = tokio::time::timeout(Duration::from_secs(2), n3.propose(register(3))).await;
    assert!(
        !matches!(r, Ok(Ok(CommandResult::Ok))),
        "node 3 committed a proposal: {r:?}"
    );
    assert!(!n1.state().borrow().brokers.contains_key(&3));
    for n in [n1, n2, n3] {
        n.shutdown().await;
    }
    Ok(())
}
