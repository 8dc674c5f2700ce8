//! Metadata quorum tests over real TCP on loopback, with on-disk state in temp dirs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use arctern_metadata::{
    parse_voters, ClusterState, CommandResult, ControllerOptions, MetadataCommand, MetadataConfig,
    MetadataError, MetadataNode, NodeOptions, PartitionAssignment,
};
use uuid::Uuid;

/// Generous: the machine may be loaded with other builds.
const WAIT: Duration = Duration::from_secs(30);

fn options() -> NodeOptions {
    NodeOptions {
        heartbeat_interval: Duration::from_millis(100),
        election_timeout_min: Duration::from_millis(600),
        election_timeout_max: Duration::from_millis(1200),
        // Small, so that snapshots and log purges happen within a test.
        snapshot_logs_since_last: 10,
        max_in_snapshot_log_to_keep: 0,
        propose_timeout: WAIT,
        // These tests drive fencing and elections by hand: keep the controller out of it
        // (no heartbeats run here, so a real session timeout would fence every broker).
        controller: ControllerOptions {
            session_timeout: Duration::from_secs(3600),
            auto_leader_rebalance: false,
            ..ControllerOptions::default()
        },
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

async fn start(
    id: u64,
    voters: &BTreeMap<u64, String>,
    listen: &str,
    dir: &Path,
) -> Result<MetadataNode> {
    // After a drop, the old Raft core releases the data dir asynchronously: retry on Locked.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let cfg = MetadataConfig {
            node_id: id,
            voters: voters.clone(),
            listen: listen.to_string(),
            data_dir: dir.to_path_buf(),
        };
        match MetadataNode::start_with(cfg, options()).await {
            Err(MetadataError::Locked(_)) | Err(MetadataError::Io { .. })
                if tokio::time::Instant::now() < deadline =>
            {
                // Io covers the listen port still held by the previous incarnation.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            r => return r.with_context(|| format!("start node {id}")),
        }
    }
}

async fn wait_state(
    node: &MetadataNode,
    what: &str,
    pred: impl Fn(&ClusterState) -> bool,
) -> Result<Arc<ClusterState>> {
    let mut rx = node.state();
    let res = tokio::time::timeout(WAIT, rx.wait_for(|s| pred(s))).await;
    match res {
        Ok(Ok(s)) => Ok(s.clone()),
        Ok(Err(_)) => bail!(
            "node {}: state channel closed waiting for {what}",
            node.node_id()
        ),
        Err(_) => bail!("node {}: timed out waiting for {what}", node.node_id()),
    }
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

fn create_topic(name: &str, replicas: &[i32]) -> MetadataCommand {
    MetadataCommand::CreateTopic {
        name: name.into(),
        id: Uuid::new_v4(),
        partitions: vec![PartitionAssignment {
            replicas: replicas.to_vec(),
        }],
        configs: BTreeMap::from([("retention.ms".to_string(), "60000".to_string())]),
    }
}

async fn ok(node: &MetadataNode, cmd: MetadataCommand) -> Result<()> {
    match node.propose(cmd.clone()).await? {
        CommandResult::Ok => Ok(()),
        r => Err(anyhow!("{cmd:?} on node {} gave {r:?}", node.node_id())),
    }
}

/// ChangeIsr is compare-and-set on the partition epoch; ElectLeader needs an ISR member
/// unless unclean.
async fn check_isr_and_election_rules(node: &MetadataNode, topic: &str) -> Result<()> {
    let change = |epoch, isr: Vec<i32>| MetadataCommand::ChangeIsr {
        topic: topic.into(),
        partition: 0,
        leader_id: 1,
        leader_epoch: 0,
        expected_partition_epoch: epoch,
        new_isr: isr,
    };
    let elect = |leader, unclean| MetadataCommand::ElectLeader {
        topic: topic.into(),
        partition: 0,
        new_leader: leader,
        allow_unclean: unclean,
    };
    ok(node, change(0, vec![1, 2])).await?;
    assert_eq!(
        node.propose(change(0, vec![1])).await?,
        CommandResult::StaleEpoch {
            current_partition_epoch: 1
        }
    );
    assert_eq!(
        node.propose(elect(3, false)).await?,
        CommandResult::NotInIsr { broker_id: 3 }
    );
    // propose() returns after the local apply, so the state is already there.
    let p = node
        .state()
        .borrow()
        .partition(topic, 0)
        .cloned()
        .context("partition")?;
    assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (1, 0, 1));
    assert_eq!(p.isr, vec![1, 2]);

    ok(node, elect(2, false)).await?;
    ok(node, elect(3, true)).await?;
    let p = node
        .state()
        .borrow()
        .partition(topic, 0)
        .cloned()
        .context("partition")?;
    assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (3, 2, 3));
    assert_eq!(p.isr, vec![3]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_quorum_survives_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let voters = BTreeMap::new();
    let node = start(1, &voters, "", dir.path()).await?;
    for b in 1..=3 {
        ok(&node, register(b)).await?;
    }
    ok(&node, create_topic("orders", &[1, 2, 3])).await?;
    assert!(matches!(
        node.propose(create_topic("orders", &[1])).await?,
        CommandResult::TopicExists { .. }
    ));
    check_isr_and_election_rules(&node, "orders").await?;
    // Enough entries to cross the snapshot threshold, so restart replays snapshot + log.
    for i in 0..12 {
        ok(&node, create_topic(&format!("t{i}"), &[1])).await?;
    }
    let before = node.state().borrow().clone();
    node.shutdown().await;

    let node = start(1, &voters, "", dir.path()).await?;
    let after = wait_state(&node, "state restored", |s| *s == *before).await?;
    assert_eq!(after.topics.len(), 13);
    assert!(node.raft_metrics().borrow().snapshot.is_some());
    ok(&node, MetadataCommand::DeleteTopic { name: "t0".into() }).await?;
    assert!(!node.state().borrow().topics.contains_key("t0"));

    // A dropped (not shut down) node also comes back intact.
    let before = node.state().borrow().clone();
    drop(node);
    let node = start(1, &voters, "", dir.path()).await?;
    wait_state(&node, "state restored after drop", |s| *s == *before).await?;
    node.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_node_on_same_dir_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = start(1, &BTreeMap::new(), "", dir.path()).await?;
    let cfg = MetadataConfig {
        node_id: 1,
        voters: BTreeMap::new(),
        listen: String::new(),
        data_dir: dir.path().to_path_buf(),
    };
    let err = MetadataNode::start_with(cfg, options()).await.err();
    assert!(matches!(err, Some(MetadataError::Locked(_))), "{err:?}");
    node.shutdown().await;
    Ok(())
}

struct Cluster {
    voters: BTreeMap<u64, String>,
    dirs: BTreeMap<u64, tempfile::TempDir>,
    nodes: BTreeMap<u64, MetadataNode>,
}

impl Cluster {
    async fn start() -> Result<Cluster> {
        let spec = (1..=3)
            .map(|id| format!("{id}@127.0.0.1:{}", free_port()))
            .collect::<Vec<_>>()
            .join(",");
        let voters = parse_voters(&spec)?;
        let mut c = Cluster {
            voters,
            dirs: BTreeMap::new(),
            nodes: BTreeMap::new(),
        };
        // Highest id first: the initializer (node 1) comes last, the others must wait.
        for id in [3, 2, 1] {
            c.dirs.insert(id, tempfile::tempdir()?);
            c.start_node(id).await?;
        }
        Ok(c)
    }

    async fn start_node(&mut self, id: u64) -> Result<()> {
        let node = start(id, &self.voters, &self.voters[&id], self.dirs[&id].path()).await?;
        self.nodes.insert(id, node);
        Ok(())
    }

    /// Waits until every running node agrees on one leader, among the running nodes.
    async fn agreed_leader(&self, not: Option<u64>) -> Result<u64> {
        let mut rxs: Vec<_> = self.nodes.values().map(|n| n.raft_metrics()).collect();
        let running: Vec<u64> = self.nodes.keys().copied().collect();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let leaders: Vec<Option<u64>> = rxs
                .iter_mut()
                .map(|rx| rx.borrow_and_update().current_leader)
                .collect();
            if let Some(Some(l)) = leaders.first() {
                if leaders.iter().all(|x| *x == Some(*l)) && running.contains(l) && not != Some(*l)
                {
                    return Ok(*l);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("no agreed leader among {running:?} (excluding {not:?}); saw {leaders:?}");
            }
            // Polling: the nodes' metrics change independently of each other.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn follower(&self, leader: u64) -> &MetadataNode {
        self.nodes
            .iter()
            .find(|(id, _)| **id != leader)
            .map(|(_, n)| n)
            .expect("a follower is running")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_forward_fail_over_and_catch_up() -> Result<()> {
    let mut c = Cluster::start().await?;
    let leader = c.agreed_leader(None).await?;

    // A proposal on a follower is forwarded, committed, and applied on all three.
    let follower = c.follower(leader);
    for b in 1..=3 {
        ok(follower, register(b)).await?;
    }
    ok(follower, create_topic("orders", &[1, 2, 3])).await?;
    assert!(follower.state().borrow().topics.contains_key("orders"));
    for n in c.nodes.values() {
        wait_state(n, "orders on every node", |s| {
            s.topics.contains_key("orders")
        })
        .await?;
    }
    check_isr_and_election_rules(follower, "orders").await?;
    let converged = follower.state().borrow().clone();
    for n in c.nodes.values() {
        wait_state(n, "same state everywhere", |s| *s == *converged).await?;
    }

    // Stop the leader; the other two elect a new one and keep committing.
    let stopped_last_log = c.nodes[&leader].raft_metrics().borrow().last_log_index;
    let old = c.nodes.remove(&leader).context("leader node")?;
    old.shutdown().await;
    let new_leader = c.agreed_leader(Some(leader)).await?;
    assert_ne!(new_leader, leader);
    for i in 0..25 {
        // Alternate the entry node: both the leader path and the forwarding path.
        let node = c.nodes.values().nth(i % 2).context("survivor")?;
        ok(node, create_topic(&format!("after-{i}"), &[1, 2])).await?;
    }

    // Leader has snapshotted and purged past what the stopped node has: it can only catch
    // up through InstallSnapshot.
    let mut m = c.nodes[&new_leader].raft_metrics();
    let purged = tokio::time::timeout(
        WAIT,
        m.wait_for(|m| m.purged.map(|p| p.index) > stopped_last_log),
    )
    .await
    .context("leader never purged its log past the stopped node's end")?
    .map_err(|_| anyhow!("metrics closed"))?
    .purged;
    let expected = c.nodes[&new_leader].state().borrow().clone();
    assert_eq!(expected.topics.len(), 26);

    // Restart the stopped node: it catches up, and can propose again.
    c.start_node(leader).await?;
    let back = &c.nodes[&leader];
    wait_state(back, "restarted node caught up", |s| *s == *expected).await?;
    let snap = back.raft_metrics().borrow().snapshot;
    assert!(
        snap.map(|s| s.index) >= purged.map(|p| p.index),
        "restarted node has snapshot {snap:?}, leader purged {purged:?}"
    );
    ok(
        back,
        MetadataCommand::DeleteTopic {
            name: "after-0".into(),
        },
    )
    .await?;
    for n in c.nodes.values() {
        wait_state(n, "delete applied everywhere", |s| {
            !s.topics.contains_key("after-0")
        })
        .await?;
    }

    // A leader lost by drop (not shutdown) is also replaced.
    let leader = c.agreed_leader(None).await?;
    drop(c.nodes.remove(&leader));
    let next = c.agreed_leader(Some(leader)).await?;
    ok(&c.nodes[&next], create_topic("after-drop", &[1])).await?;
    c.start_node(leader).await?;
    for n in c.nodes.values() {
        wait_state(n, "after-drop everywhere", |s| {
            s.topics.contains_key("after-drop")
        })
        .await?;
    }

    for (_, n) in std::mem::take(&mut c.nodes) {
        n.shutdown().await;
    }
    Ok(())
}
