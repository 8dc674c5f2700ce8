//! Broker core behaviour: group commit, flush policy, metadata persistence, topic admin.

use std::sync::Arc;

use arctern_core::{
    Acks, AlterOp, Broker, BrokerConfig, CoreError, FollowerFetcher, Partition, ReplicaEndpoint,
};
use arctern_metadata::{MetadataConfig, MetadataNode};
use arctern_storage::batch::{build_batch, validate_all};

/// Single-node tests never follow anyone.
#[derive(Debug)]
struct NoFetcher;

impl FollowerFetcher for NoFetcher {
    fn start(&self, _: Arc<Partition>, _: ReplicaEndpoint, _: i32) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async {})
    }
}

/// A broker on a quorum of one, as `arctern serve` runs it without voters.
async fn try_open(config: BrokerConfig) -> Result<(Arc<Broker>, Arc<MetadataNode>), String> {
    let metadata = MetadataNode::start(MetadataConfig {
        node_id: config.node_id as u64,
        voters: Default::default(),
        listen: String::new(),
        data_dir: config.data_dir.join("__cluster_metadata-0"),
    })
    .await
    .map_err(|e| e.to_string())?;
    let metadata = Arc::new(metadata);
    let broker = Broker::start(config, Arc::clone(&metadata), Arc::new(NoFetcher))
        .await
        .map_err(|e| e.to_string())?;
    Ok((broker, metadata))
}

async fn open(config: BrokerConfig) -> (Arc<Broker>, Arc<MetadataNode>) {
    try_open(config).await.unwrap()
}

/// Stops the metadata node so the data dir can be opened again; `clean` also closes logs.
async fn close(broker: Arc<Broker>, metadata: Arc<MetadataNode>, clean: bool) {
    if clean {
        broker.shutdown();
    }
    drop(broker);
    Arc::try_unwrap(metadata)
        .ok()
        .expect("test holds the only metadata handle")
        .shutdown()
        .await;
}

fn config(dir: &std::path::Path) -> BrokerConfig {
    BrokerConfig {
        data_dir: dir.to_path_buf(),
        ..BrokerConfig::default()
    }
}

fn one_record(tag: u32) -> Vec<u8> {
    let v = tag.to_be_bytes();
    build_batch(
        0,
        0,
        1_700_000_000_000,
        &[(None, Some(&v[..]), 1_700_000_000_000)],
    )
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_producers_share_one_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(config(dir.path())).await.0;
    broker.create_topic("t", 1, 1, &[], false).await.unwrap();
    let p = broker.partition("t", 0).unwrap();
    let before = p.fsync_count();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let p = Arc::clone(&p);
            tokio::spawn(async move { p.produce(one_record(i), Acks::All).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let fsyncs = p.fsync_count() - before;
    assert!(
        fsyncs <= 2,
        "200 concurrent acks=all appends took {fsyncs} fsyncs"
    );
    assert_eq!(p.high_watermark(), 200);
    let data = p.read(0, 1 << 20).unwrap();
    assert_eq!(validate_all(&data.bytes).unwrap().len(), 200);
}

#[tokio::test]
async fn fsync_policy_gates_the_high_watermark_and_relaxed_policy_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(config(dir.path())).await.0;
    broker
        .create_topic("strict", 1, 1, &[], false)
        .await
        .unwrap();
    broker
        .create_topic(
            "relaxed",
            1,
            1,
            &[("flush.messages".into(), "1000000".into())],
            false,
        )
        .await
        .unwrap();
    let strict = broker.partition("strict", 0).unwrap();
    let out = strict.produce(one_record(1), Acks::All).await.unwrap();
    assert_eq!(out.base_offset, 0);
    assert_eq!(
        strict.high_watermark(),
        1,
        "acked only once fsynced, and then visible"
    );
    let relaxed = broker.partition("relaxed", 0).unwrap();
    let before = relaxed.fsync_count();
    relaxed.produce(one_record(1), Acks::All).await.unwrap();
    assert_eq!(relaxed.high_watermark(), 1);
    assert_eq!(
        relaxed.fsync_count(),
        before,
        "relaxed flush.messages acks without fsync"
    );
}

#[tokio::test]
async fn metadata_and_data_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (broker, metadata) = open(config(dir.path())).await;
        broker
            .create_topic("a", 3, -1, &[("retention.ms".into(), "1000".into())], false)
            .await
            .unwrap();
        broker.create_partitions("a", 5, false).await.unwrap();
        broker
            .alter_configs(
                "a",
                &[AlterOp::Set("segment.bytes".into(), "100000".into())],
                false,
            )
            .await
            .unwrap();
        let p = broker.partition("a", 4).unwrap();
        p.produce(one_record(7), Acks::All).await.unwrap();
        // No log shutdown: like kill -9 after the ack.
        close(broker, metadata, false).await;
    }
    let broker = open(config(dir.path())).await.0;
    let t = broker.topic("a").unwrap();
    assert_eq!(t.partition_count(), 5);
    let o = t.overrides();
    assert_eq!(o.get("retention.ms").map(String::as_str), Some("1000"));
    assert_eq!(o.get("segment.bytes").map(String::as_str), Some("100000"));
    assert_eq!(broker.partition("a", 4).unwrap().high_watermark(), 1);
}

#[tokio::test]
async fn a_second_broker_cannot_open_the_same_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(config(dir.path())).await;
    assert!(try_open(config(dir.path())).await.is_err());
}

#[tokio::test]
async fn topic_admin_errors_match_kafka_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(config(dir.path())).await.0;
    assert!(matches!(
        broker.create_topic("bad/name", 1, 1, &[], false).await,
        Err(CoreError::InvalidTopic(_))
    ));
    assert!(matches!(
        broker
            .create_topic(&"x".repeat(250), 1, 1, &[], false)
            .await,
        Err(CoreError::InvalidTopic(_))
    ));
    assert!(matches!(
        broker.create_topic("ok", 0, 1, &[], false).await,
        Err(CoreError::InvalidPartitions(_))
    ));
    assert!(matches!(
        broker.create_topic("ok", 1, 3, &[], false).await,
        Err(CoreError::InvalidReplicationFactor(_))
    ));
    assert!(matches!(
        broker
            .create_topic("ok", 1, 1, &[("no.such".into(), "1".into())], false)
            .await,
        Err(CoreError::InvalidConfig(_))
    ));
    broker.create_topic("ok", 1, 1, &[], true).await.unwrap();
    assert!(
        broker.topic("ok").is_none(),
        "validate_only creates nothing"
    );
    broker.create_topic("ok", 2, 1, &[], false).await.unwrap();
    assert!(matches!(
        broker.create_topic("ok", 1, 1, &[], false).await,
        Err(CoreError::TopicAlreadyExists(_))
    ));
    assert!(matches!(
        broker.create_partitions("ok", 2, false).await,
        Err(CoreError::InvalidPartitions(_))
    ));
    let p = broker.partition("ok", 0).unwrap();
    broker.delete_topic("ok").await.unwrap();
    assert!(broker.topic("ok").is_none());
    assert!(!dir.path().join("ok-0").exists());
    assert!(
        p.produce(one_record(1), Acks::All).await.is_err(),
        "a deleted partition takes no writes"
    );
    assert!(matches!(
        broker.delete_topic("ok").await,
        Err(CoreError::UnknownTopicOrPartition(_))
    ));
}

#[tokio::test]
async fn auto_create_follows_config() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.num_partitions = 4;
    let (broker, metadata) = open(cfg).await;
    assert_eq!(
        broker
            .topic_or_auto_create("auto", true)
            .await
            .unwrap()
            .partition_count(),
        4
    );
    assert!(broker.topic_or_auto_create("nope", false).await.is_err());
    close(broker, metadata, true).await;
    let mut cfg = config(dir.path());
    cfg.auto_create_topics = false;
    let broker = open(cfg).await.0;
    assert!(matches!(
        broker.topic_or_auto_create("other", true).await,
        Err(CoreError::UnknownTopicOrPartition(_))
    ));
}

#[tokio::test]
async fn list_config_append_and_subtract_follow_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(config(dir.path())).await.0;
    broker.create_topic("l", 1, 1, &[], false).await.unwrap();
    broker
        .alter_configs(
            "l",
            &[AlterOp::Append("cleanup.policy".into(), "delete".into())],
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        broker
            .topic("l")
            .unwrap()
            .overrides()
            .get("cleanup.policy")
            .map(String::as_str),
        Some("delete")
    );
    // Compaction is not implemented, so the resulting list is refused, not silently kept.
    assert!(matches!(
        broker
            .alter_configs(
                "l",
                &[AlterOp::Append("cleanup.policy".into(), "compact".into())],
                false
            )
            .await,
        Err(CoreError::InvalidConfig(_))
    ));
    assert!(matches!(
        broker
            .alter_configs(
                "l",
                &[AlterOp::Append("retention.ms".into(), "5".into())],
                false
            )
            .await,
        Err(CoreError::InvalidConfig(_))
    ));
    assert!(broker
        .describe_broker_configs(&broker.node_id().to_string())
        .unwrap()
        .iter()
        .any(|c| c.name == "log.retention.ms"));
}

#[tokio::test]
async fn dynamic_broker_configs_apply_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (broker, metadata) = open(config(dir.path())).await;
        broker.create_topic("d", 1, -1, &[], false).await.unwrap();
        // Another broker's id, a read-only config, a bad value: INVALID_REQUEST, as Kafka.
        for (name, key, value) in [
            ("2", "log.retention.ms", "1000"),
            ("1", "log.dirs", "/x"),
            ("", "log.retention.ms", "soon"),
        ] {
            assert!(matches!(
                broker
                    .alter_broker_configs(name, &[AlterOp::Set(key.into(), value.into())], false)
                    .await,
                Err(CoreError::InvalidRequest(_))
            ));
        }
        broker
            .alter_broker_configs(
                "",
                &[AlterOp::Set("message.max.bytes".into(), "100".into())],
                false,
            )
            .await
            .unwrap();
        let p = broker.partition("d", 0).unwrap();
        let mut big = build_batch(0, 0, 1, &[(None, Some(&[7u8; 500][..]), 1)]);
        assert!(matches!(
            p.append(&mut big, Acks::Leader),
            Err(CoreError::MessageTooLarge { .. })
        ));
        close(broker, metadata, true).await;
    }
    let broker = open(config(dir.path())).await.0;
    let d = broker.topic_defaults();
    assert_eq!(d.max_message_bytes, 100);
    let p = broker.partition("d", 0).unwrap();
    let mut big = build_batch(0, 0, 1, &[(None, Some(&[7u8; 500][..]), 1)]);
    assert!(p.append(&mut big, Acks::Leader).is_err());
    // Legacy replace with nothing clears the cluster default.
    broker.replace_broker_configs("", &[], false).await.unwrap();
    assert_eq!(broker.topic_defaults().max_message_bytes, 1_048_588);
}

#[tokio::test]
async fn delete_records_moves_the_log_start_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (broker, metadata) = open(config(dir.path())).await;
        broker.create_topic("r", 1, -1, &[], false).await.unwrap();
        let p = broker.partition("r", 0).unwrap();
        for i in 0..5 {
            p.produce(one_record(i), Acks::All).await.unwrap();
        }
        assert!(matches!(
            broker.delete_records("r", 0, 6),
            Err(CoreError::OffsetOutOfRange { .. })
        ));
        assert_eq!(broker.delete_records("r", 0, 3).unwrap(), 3);
        assert_eq!(broker.delete_records("r", 0, 1).unwrap(), 3);
        assert!(matches!(
            p.read(2, 1000),
            Err(CoreError::OffsetOutOfRange { .. })
        ));
        close(broker, metadata, false).await;
    }
    let broker = open(config(dir.path())).await.0;
    let p = broker.partition("r", 0).unwrap();
    assert_eq!(p.log_start_offset().unwrap(), 3);
    assert_eq!(
        broker.delete_records("r", 0, -1).unwrap(),
        p.high_watermark()
    );
}
