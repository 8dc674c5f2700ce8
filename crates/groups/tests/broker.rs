//! The coordinator over a real single-node broker: the offsets topic is created on first
//! use, a commit is durable, and a restarted broker reloads it from `__consumer_offsets`.

use std::sync::Arc;
use std::time::Duration;

use arctern_core::{Broker, BrokerConfig, FollowerFetcher, Partition, ReplicaEndpoint};
use arctern_groups::{
    CommitRequest, GroupConfig, GroupCoordinator, GroupError, OffsetToCommit, OFFSETS_TOPIC,
};
use arctern_metadata::{MetadataConfig, MetadataNode};

#[derive(Debug)]
struct NoFetcher;

impl FollowerFetcher for NoFetcher {
    fn start(&self, _: Arc<Partition>, _: ReplicaEndpoint, _: i32) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async {})
    }
}

async fn open(dir: &std::path::Path) -> (Arc<Broker>, Arc<MetadataNode>) {
    let config = BrokerConfig {
        data_dir: dir.to_path_buf(),
        ..BrokerConfig::default()
    };
    let metadata = Arc::new(
        MetadataNode::start(MetadataConfig {
            node_id: config.node_id as u64,
            voters: Default::default(),
            listen: String::new(),
            data_dir: config.data_dir.join("__cluster_metadata-0"),
        })
        .await
        .unwrap(),
    );
    let broker = Broker::start(config, Arc::clone(&metadata), Arc::new(NoFetcher))
        .await
        .unwrap();
    (broker, metadata)
}

async fn close(broker: Arc<Broker>, metadata: Arc<MetadataNode>) {
    broker.shutdown();
    drop(broker);
    Arc::try_unwrap(metadata)
        .ok()
        .expect("test holds the only metadata handle")
        .shutdown()
        .await;
}

fn config() -> GroupConfig {
    GroupConfig {
        offsets_topic_num_partitions: 3,
        ..GroupConfig::default()
    }
}

/// Waits until the group's offsets partition is loaded here.
async fn wait_loaded(c: &GroupCoordinator, group: &str) {
    for _ in 0..200 {
        match c.fetch_offsets(group, None) {
            Ok(_) => return,
            Err(GroupError::NotCoordinator | GroupError::CoordinatorLoadInProgress) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    panic!("offsets partition never loaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, metadata) = open(dir.path()).await;
    let c = GroupCoordinator::start(Arc::clone(&broker), config());
    // The first call creates the offsets topic and, as in Kafka, says "not available yet".
    assert!(matches!(
        c.find_coordinator("g").await,
        Err(GroupError::CoordinatorNotAvailable)
    ));
    let mut node = None;
    for _ in 0..200 {
        match c.find_coordinator("g").await {
            Ok(n) => {
                node = Some(n);
                break;
            }
            Err(GroupError::CoordinatorNotAvailable) => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    let node = node.expect("a coordinator once the offsets topic has leaders");
    assert_eq!(node.node_id, broker.node_id());
    let topic = broker.topic(OFFSETS_TOPIC).expect("created on first use");
    assert_eq!(topic.partition_count(), 3);
    assert_eq!(
        topic.replication_factor, 1,
        "capped at the registered brokers"
    );
    assert_eq!(
        topic.configs.get("retention.ms").map(String::as_str),
        Some("-1")
    );
    wait_loaded(&c, "g").await;
    let results = c
        .commit_offsets(
            CommitRequest {
                group_id: "g".into(),
                generation_id: -1,
                member_id: String::new(),
                group_instance_id: None,
            },
            vec![OffsetToCommit {
                topic: "t".into(),
                partition: 0,
                offset: 1234,
                leader_epoch: 2,
                metadata: Some("meta".into()),
            }],
        )
        .await;
    assert_eq!(results, vec![Ok(())]);
    drop(c);
    close(broker, metadata).await;

    let (broker, metadata) = open(dir.path()).await;
    let c = GroupCoordinator::start(Arc::clone(&broker), config());
    wait_loaded(&c, "g").await;
    let got = c.fetch_offsets("g", None).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].offset, got[0].leader_epoch, got[0].metadata.as_str()),
        (1234, 2, "meta")
    );
    drop(c);
    close(broker, metadata).await;
}
