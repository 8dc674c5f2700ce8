//! Broker liveness and the controller over real TCP on loopback: each metadata node also
//! registers as a broker and heartbeats, as the broker process will.
//!
//! Timings are short (session 1 s, heartbeats every 200 ms); waits are generous so a loaded
//! machine slows the tests down rather than failing them. The tests take a shared lock so
//! that the three-node clusters do not compete for CPU with each other.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use arctern_metadata::{
    parse_voters, ClusterState, CommandResult, ControllerOptions, HeartbeatHandle, MetadataCommand,
    MetadataConfig, MetadataError, MetadataNode, NodeOptions, PartitionAssignment, PartitionState,
    NO_LEADER, UNCLEAN_LEADER_ELECTION_CONFIG,
};
use tokio::time::Instant;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(15);
const SESSION: Duration = Duration::from_secs(1);

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn options(rebalance: Option<Duration>) -> NodeOptions {
    NodeOptions {
        heartbeat_interval: Duration::from_millis(100),
        election_timeout_min: Duration::from_millis(300),
        election_timeout_max: Duration::from_millis(600),
        propose_timeout: WAIT,
        controller: ControllerOptions {
            session_timeout: SESSION,
            broker_heartbeat_interval: Duration::from_millis(200),
            unclean_leader_election: false,
            auto_leader_rebalance: rebalance.is_some(),
            leader_imbalance_check_interval: rebalance.unwrap_or(Duration::from_secs(300)),
        },
        ..NodeOptions::default()
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
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
        Ok(Err(_)) => bail!("state channel closed waiting for {what}"),
        Err(_) => bail!(
            "timed out waiting for {what}; state: {:?}",
            node.state().borrow()
        ),
    }
}

fn partition(s: &ClusterState, topic: &str) -> Result<PartitionState> {
    s.partition(topic, 0)
        .cloned()
        .with_context(|| format!("{topic}-0 missing"))
}

/// (leader, leader_epoch, isr)
fn summary(s: &ClusterState, topic: &str) -> Result<(i32, i32, Vec<i32>)> {
    let p = partition(s, topic)?;
    Ok((p.leader, p.leader_epoch, p.isr))
}

fn fenced(s: &ClusterState, broker: i32) -> bool {
    s.brokers.get(&broker).is_some_and(|b| b.fenced)
}

fn create_topic(name: &str, replicas: &[i32], unclean: Option<&str>) -> MetadataCommand {
    MetadataCommand::CreateTopic {
        name: name.into(),
        id: Uuid::new_v4(),
        partitions: vec![PartitionAssignment {
            replicas: replicas.to_vec(),
        }],
        configs: unclean
            .map(|v| (UNCLEAN_LEADER_ELECTION_CONFIG.to_string(), v.to_string()))
            .into_iter()
            .collect(),
    }
}

async fn ok(node: &MetadataNode, cmd: MetadataCommand) -> Result<()> {
    match node.propose(cmd.clone()).await? {
        CommandResult::Ok => Ok(()),
        r => Err(anyhow!("{cmd:?} gave {r:?}")),
    }
}

/// ChangeIsr as the partition's current leader (what the leader broker will propose).
fn change_isr_as_leader(s: &ClusterState, topic: &str, new_isr: &[i32]) -> Result<MetadataCommand> {
    let p = partition(s, topic)?;
    Ok(MetadataCommand::ChangeIsr {
        topic: topic.into(),
        partition: 0,
        leader_id: p.leader,
        leader_epoch: p.leader_epoch,
        expected_partition_epoch: p.partition_epoch,
        new_isr: new_isr.to_vec(),
    })
}

struct Cluster {
    voters: BTreeMap<u64, String>,
    _dirs: Vec<tempfile::TempDir>,
    nodes: BTreeMap<u64, MetadataNode>,
}

/// The broker side of each node: its incarnation and heartbeat loop.
#[derive(Default)]
struct Brokers {
    incarnations: BTreeMap<i32, Uuid>,
    heartbeats: BTreeMap<i32, HeartbeatHandle>,
}

impl Brokers {
    fn resume_heartbeats(&mut self, c: &Cluster, broker: i32) {
        let h = c
            .node(broker)
            .start_heartbeats(broker, self.incarnations[&broker]);
        self.heartbeats.insert(broker, h);
    }
}

impl Cluster {
    /// Three nodes, each also registered as broker `node id` and heartbeating.
    async fn start(options: NodeOptions) -> Result<(Cluster, Brokers)> {
        let spec = (1..=3)
            .map(|id| format!("{id}@127.0.0.1:{}", free_port()))
            .collect::<Vec<_>>()
            .join(",");
        let voters = parse_voters(&spec)?;
        let mut c = Cluster {
            voters,
            _dirs: Vec::new(),
            nodes: BTreeMap::new(),
        };
        let mut b = Brokers::default();
        for id in [3u64, 2, 1] {
            let dir = tempfile::tempdir()?;
            let cfg = MetadataConfig {
                node_id: id,
                voters: c.voters.clone(),
                listen: c.voters[&id].clone(),
                data_dir: dir.path().to_path_buf(),
            };
            let node = MetadataNode::start_with(cfg, options.clone())
                .await
                .with_context(|| format!("start node {id}"))?;
            c._dirs.push(dir);
            c.nodes.insert(id, node);
        }
        for (id, node) in &c.nodes {
            let broker = *id as i32;
            let inc = Uuid::new_v4();
            node.register_broker(broker, "127.0.0.1".into(), 9092 + broker as u16, inc)
                .await
                .with_context(|| format!("register broker {broker}"))?;
            b.incarnations.insert(broker, inc);
            b.heartbeats
                .insert(broker, node.start_heartbeats(broker, inc));
        }
        Ok((c, b))
    }

    fn node(&self, broker: i32) -> &MetadataNode {
        &self.nodes[&(broker as u64)]
    }

    fn any(&self) -> Result<&MetadataNode> {
        self.nodes.values().next().context("no node running")
    }

    async fn shutdown(mut self, brokers: Brokers) {
        drop(brokers);
        for (_, n) in std::mem::take(&mut self.nodes) {
            n.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_broker_is_fenced_then_unfenced_and_preferred_leader_returns() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let (c, mut b) = Cluster::start(options(Some(Duration::from_millis(500)))).await?;
    let n = c.any()?;
    ok(n, create_topic("orders", &[1, 2, 3], None)).await?;

    // Heartbeating brokers outlive the session timeout.
    tokio::time::sleep(SESSION + SESSION / 2).await;
    let s = n.state().borrow().clone();
    assert!(s.brokers.values().all(|b| !b.fenced), "{s:?}");
    assert_eq!(summary(&s, "orders")?, (1, 0, vec![1, 2, 3]));

    // Broker 1 goes silent: fenced, leadership moves to 2, 1 leaves the ISR.
    let silent_at = Instant::now();
    b.heartbeats.remove(&1);
    let s = wait_state(c.node(2), "broker 1 fenced", |s| fenced(s, 1)).await?;
    let took = silent_at.elapsed();
    assert!(
        took >= SESSION - Duration::from_millis(300),
        "fenced after {took:?}"
    );
    assert!(took < Duration::from_secs(6), "fenced only after {took:?}");
    assert_eq!(summary(&s, "orders")?, (2, 1, vec![2, 3]));

    // Heartbeats resume: unfenced, but not leader (not in the ISR).
    b.resume_heartbeats(&c, 1);
    // Observed on the same node that saw the fencing: another may not have applied it yet.
    let s = wait_state(c.node(2), "broker 1 unfenced", |s| !fenced(s, 1)).await?;
    assert_eq!(summary(&s, "orders")?, (2, 1, vec![2, 3]));

    // The deposed leader's ISR change is refused.
    let p = partition(&s, "orders")?;
    let stale = MetadataCommand::ChangeIsr {
        topic: "orders".into(),
        partition: 0,
        leader_id: 1,
        leader_epoch: 0,
        expected_partition_epoch: p.partition_epoch,
        new_isr: vec![1, 2, 3],
    };
    assert_eq!(
        n.propose(stale).await?,
        CommandResult::FencedLeaderEpoch {
            current_leader: 2,
            current_leader_epoch: 1
        }
    );
    // The current leader (2) lets 1 back into the ISR; the preferred leader election then
    // returns leadership to 1.
    ok(n, change_isr_as_leader(&s, "orders", &[2, 3, 1])?).await?;
    let s = wait_state(n, "preferred leader 1 back", |s| {
        s.partition("orders", 0).is_some_and(|p| p.leader == 1)
    })
    .await?;
    assert_eq!(summary(&s, "orders")?, (1, 2, vec![2, 3, 1]));

    // Controlled shutdown of the leader hands leadership over and keeps it fenced, even
    // though its heartbeat loop is still running.
    c.node(1)
        .controlled_shutdown(1, b.incarnations[&1], WAIT)
        .await?;
    let s = c.node(1).state().borrow().clone();
    assert!(fenced(&s, 1));
    assert_eq!(summary(&s, "orders")?, (2, 3, vec![2, 3]));
    tokio::time::sleep(SESSION + SESSION / 2).await;
    let s = n.state().borrow().clone();
    assert!(fenced(&s, 1));
    assert_eq!(summary(&s, "orders")?, (2, 3, vec![2, 3]));

    // The "restarted" broker registers a new incarnation: unfenced and kept alive by the
    // new incarnation's heartbeats.
    let inc = Uuid::new_v4();
    b.incarnations.insert(1, inc);
    c.node(1)
        .register_broker(1, "127.0.0.1".into(), 9093, inc)
        .await?;
    b.resume_heartbeats(&c, 1);
    tokio::time::sleep(SESSION + SESSION / 2).await;
    let s = n.state().borrow().clone();
    assert!(!fenced(&s, 1), "{s:?}");
    assert_eq!(s.brokers[&1].incarnation, inc);
    c.shutdown(b).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unclean_election_only_where_enabled() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let (c, mut b) = Cluster::start(options(None)).await?;
    let n = c.any()?;
    ok(n, create_topic("safe", &[1, 2], None)).await?;
    ok(n, create_topic("off", &[1, 2], Some("false"))).await?;
    ok(n, create_topic("unsafe", &[1, 2], Some("true"))).await?;
    // Broker 2 falls out of every ISR: only 1 has the data.
    for t in ["safe", "off", "unsafe"] {
        let s = n.state().borrow().clone();
        ok(n, change_isr_as_leader(&s, t, &[1])?).await?;
    }

    b.heartbeats.remove(&1);
    let s = wait_state(n, "unclean election on 'unsafe'", |s| {
        s.partition("unsafe", 0).is_some_and(|p| p.leader == 2)
    })
    .await?;
    assert!(fenced(&s, 1));
    // Fenced (leader -1, epoch 1), then elected unclean (epoch 2) with itself as the ISR.
    assert_eq!(summary(&s, "unsafe")?, (2, 2, vec![2]));
    // Without the override the last ISR member is waited for.
    tokio::time::sleep(SESSION).await;
    let s = n.state().borrow().clone();
    assert_eq!(summary(&s, "safe")?, (NO_LEADER, 1, vec![1]));
    assert_eq!(summary(&s, "off")?, (NO_LEADER, 1, vec![1]));

    // Broker 1 comes back: it leads the partitions that waited for it.
    b.resume_heartbeats(&c, 1);
    let s = wait_state(n, "broker 1 unfenced", |s| !fenced(s, 1)).await?;
    assert_eq!(summary(&s, "safe")?, (1, 2, vec![1]));
    assert_eq!(summary(&s, "off")?, (1, 2, vec![1]));
    assert_eq!(summary(&s, "unsafe")?, (2, 2, vec![2]));
    c.shutdown(b).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_controller_gives_grace_and_fences_the_dead() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let (mut c, mut b) = Cluster::start(options(None)).await?;
    let leader = c.any()?.wait_for_leader(WAIT).await?;
    assert!(c.nodes[&leader].is_leader());
    ok(c.any()?, create_topic("orders", &[1, 2, 3], None)).await?;

    // The Raft leader's process dies, broker included.
    let broker = leader as i32;
    b.heartbeats.remove(&broker);
    drop(c.nodes.remove(&leader));
    let n = c.any()?;
    wait_state(n, "dead broker fenced by the new controller", |s| {
        fenced(s, broker)
    })
    .await?;
    let new_leader = n.leader().context("a new leader")?;
    assert_ne!(new_leader, leader);
    // The survivors, whose heartbeats now go to the new leader, stay unfenced: had one been
    // fenced even briefly, it would have left the ISR too.
    tokio::time::sleep(SESSION + SESSION / 2).await;
    let s = n.state().borrow().clone();
    let alive: Vec<i32> = s
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| b.broker_id)
        .collect();
    assert_eq!(alive.len(), 2, "{s:?}");
    assert!(!alive.contains(&broker));
    let p = partition(&s, "orders")?;
    assert_eq!(p.isr, alive, "{s:?}");
    assert!(alive.contains(&p.leader));
    // One fencing: one ISR change, plus a leader change if the dead broker (1) led.
    assert_eq!(p.partition_epoch, 1);
    assert_eq!(p.leader_epoch, i32::from(broker == 1));
    c.shutdown(b).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_registers_heartbeats_and_shuts_down() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir()?;
    let cfg = |dir: &Path| MetadataConfig {
        node_id: 1,
        voters: BTreeMap::new(),
        listen: String::new(),
        data_dir: dir.to_path_buf(),
    };
    let node = MetadataNode::start_with(cfg(dir.path()), options(None)).await?;
    let inc = Uuid::new_v4();
    node.register_broker(1, "localhost".into(), 9092, inc)
        .await?;
    // A retried registration with the same incarnation is fine.
    node.register_broker(1, "localhost".into(), 9092, inc)
        .await?;
    let err = node
        .register_broker(-1, "localhost".into(), 9092, inc)
        .await
        .err();
    assert!(matches!(err, Some(MetadataError::Rejected(_))), "{err:?}");
    let _hb = node.start_heartbeats(1, inc);
    ok(&node, create_topic("t", &[1], None)).await?;
    assert!(node.is_leader());

    tokio::time::sleep(SESSION + SESSION / 2).await;
    assert!(!fenced(&node.state().borrow(), 1));
    node.controlled_shutdown(1, inc, WAIT).await?;
    let s = node.state().borrow().clone();
    assert!(fenced(&s, 1));
    // The only replica: nobody can take over.
    assert_eq!(summary(&s, "t")?, (NO_LEADER, 1, vec![1]));
    node.shutdown().await;
    Ok(())
}
