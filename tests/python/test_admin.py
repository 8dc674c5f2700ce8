"""Topic administration through confluent-kafka's AdminClient, kafka-python's
KafkaAdminClient and kcat -L: CreateTopics, DeleteTopics, CreatePartitions,
DescribeConfigs, IncrementalAlterConfigs, Metadata."""
from __future__ import annotations

import subprocess
import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   NewPartitions, NewTopic, ResourceType)

import kclients as kc

KAFKA_DEFAULT_RETENTION_MS = "604800000"   # Kafka's documented default (7 days)


def _err(excinfo) -> KafkaError:
    e = excinfo.value
    return e.args[0] if isinstance(e, KafkaException) else e


def _src(entry) -> int:
    s = entry.source
    return int(getattr(s, "value", s))


def describe(bs, topic) -> dict:
    a = kc.admin_client(bs)
    fs = a.describe_configs([ConfigResource(ResourceType.TOPIC, topic)], request_timeout=15)
    (f,) = fs.values()
    return f.result(15)


def incremental_alter(bs, topic, entries: list[tuple[str, str | None, AlterConfigOpType]]):
    a = kc.admin_client(bs)
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=op) for k, v, op in entries])
    fs = a.incremental_alter_configs([res], request_timeout=15)
    (f,) = fs.values()
    return f.result(15)


def wait_gone(bs, topic, timeout=30):
    deadline = time.monotonic() + timeout
    while kc.topic_partitions(bs, topic) is not None:
        assert time.monotonic() < deadline, f"topic {topic} still listed {timeout}s after delete"
        time.sleep(0.1)


def test_create_topic_with_partitions_and_configs(broker, topic_name):
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name, partitions=3,
                    config={"retention.ms": "86400000", "cleanup.policy": "delete",
                            "segment.bytes": "1048576", "max.message.bytes": "2000000"})
    assert kc.topic_partitions(bs, topic_name) == 3
    cfg = describe(bs, topic_name)
    assert cfg["retention.ms"].value == "86400000"
    assert cfg["cleanup.policy"].value == "delete"
    assert cfg["segment.bytes"].value == "1048576"
    assert cfg["max.message.bytes"].value == "2000000"
    assert _src(cfg["retention.ms"]) == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    # every partition usable
    for p in range(3):
        kc.produce_confluent(bs, topic_name, [kc.Msg(value=b"p%d" % p)], partition=p)
        assert kc.watermarks(bs, topic_name, p) == (0, 1)


def test_create_existing_topic_fails(broker, topic_name):
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name, partitions=2)
    kc.produce_confluent(bs, topic_name, [kc.Msg(value=b"keep me")], partition=1)
    a = kc.admin_client(bs)
    fs = a.create_topics([NewTopic(topic_name, num_partitions=5, replication_factor=1)],
                         request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        fs[topic_name].result(15)
    assert _err(ei).code() == KafkaError.TOPIC_ALREADY_EXISTS
    # the existing topic is untouched
    assert kc.topic_partitions(bs, topic_name) == 2
    assert [r.value for r in kc.consume_confluent(bs, topic_name, partition=1)] == [b"keep me"]


def test_create_topics_validate_only(broker, topic_name):
    bs = broker.bootstrap
    a = kc.admin_client(bs)
    fs = a.create_topics([NewTopic(topic_name, num_partitions=2, replication_factor=1)],
                         validate_only=True, request_timeout=15)
    fs[topic_name].result(15)
    time.sleep(0.5)
    assert kc.topic_partitions(bs, topic_name) is None, "validate_only created the topic"


def test_delete_topic_and_recreate(broker, topic_name):
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name, partitions=2)
    kc.produce_confluent(bs, topic_name, kc.make_messages(20), partition=0)
    a = kc.admin_client(bs)
    fs = a.delete_topics([topic_name], operation_timeout=30, request_timeout=30)
    fs[topic_name].result(30)
    wait_gone(bs, topic_name)
    # deleting again: UNKNOWN_TOPIC_OR_PARTITION
    fs = a.delete_topics([topic_name], operation_timeout=30, request_timeout=30)
    with pytest.raises(KafkaException) as ei:
        fs[topic_name].result(30)
    assert _err(ei).code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    # a re-created topic of the same name starts empty
    kc.create_topic(bs, topic_name, partitions=1)
    assert kc.watermarks(bs, topic_name, 0) == (0, 0)
    kc.produce_confluent(bs, topic_name, [kc.Msg(value=b"new")])
    assert [(r.offset, r.value) for r in kc.consume_confluent(bs, topic_name)] == [(0, b"new")]


def test_deleted_topic_stays_deleted_after_restart(broker, topic_name):
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name)
    keep = topic_name + "-keep"
    kc.create_topic(bs, keep)
    kc.produce_confluent(bs, topic_name, [kc.Msg(value=b"x")])
    kc.produce_confluent(bs, keep, [kc.Msg(value=b"y")])
    a = kc.admin_client(bs)
    a.delete_topics([topic_name], operation_timeout=30)[topic_name].result(30)
    wait_gone(bs, topic_name)
    broker.restart()
    assert kc.topic_partitions(bs, topic_name) is None
    assert [r.value for r in kc.consume_confluent(bs, keep)] == [b"y"]


def test_create_partitions(broker, topic_name):
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name, partitions=1)
    kc.produce_confluent(bs, topic_name, [kc.Msg(value=b"p0")], partition=0)
    a = kc.admin_client(bs)
    a.create_partitions([NewPartitions(topic_name, 4)], request_timeout=15)[topic_name].result(15)
    kc.wait_topic(bs, topic_name, 4)
    kc.produce_confluent(bs, topic_name, [kc.Msg(value=b"p3")], partition=3)
    assert [r.value for r in kc.consume_confluent(bs, topic_name, partition=3)] == [b"p3"]
    assert [r.value for r in kc.consume_confluent(bs, topic_name, partition=0)] == [b"p0"]
    # decreasing (or keeping) the count is INVALID_PARTITIONS
    fs = a.create_partitions([NewPartitions(topic_name, 2)], request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        fs[topic_name].result(15)
    assert _err(ei).code() == KafkaError.INVALID_PARTITIONS
    assert kc.topic_partitions(bs, topic_name) == 4
    # survives a restart
    broker.restart()
    assert kc.topic_partitions(bs, topic_name) == 4
    assert [r.value for r in kc.consume_confluent(bs, topic_name, partition=3)] == [b"p3"]


def test_create_partitions_unknown_topic(broker):
    a = kc.admin_client(broker.bootstrap)
    fs = a.create_partitions([NewPartitions("no-such-topic", 3)], request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        fs["no-such-topic"].result(15)
    assert _err(ei).code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_describe_configs_defaults(broker, topic_name):
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name)
    cfg = describe(bs, topic_name)
    for key in ("retention.ms", "retention.bytes", "segment.bytes", "segment.ms",
                "max.message.bytes", "cleanup.policy", "flush.messages", "flush.ms"):
        assert key in cfg, f"DescribeConfigs lacks {key}: has {sorted(cfg)}"
        assert _src(cfg[key]) != ConfigSource.DYNAMIC_TOPIC_CONFIG.value, (key, cfg[key])
    assert cfg["retention.ms"].value == KAFKA_DEFAULT_RETENTION_MS
    assert cfg["cleanup.policy"].value == "delete"


def test_describe_configs_unknown_topic(broker):
    with pytest.raises(KafkaException) as ei:
        describe(broker.bootstrap, "no-such-topic-xyz")
    assert _err(ei).code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_incremental_alter_configs(broker, topic_name):
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name, config={"segment.ms": "3600000"})
    incremental_alter(bs, topic_name, [("retention.ms", "3600000", AlterConfigOpType.SET),
                                       ("max.message.bytes", "500000", AlterConfigOpType.SET)])
    cfg = describe(bs, topic_name)
    assert cfg["retention.ms"].value == "3600000"
    assert _src(cfg["retention.ms"]) == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert cfg["max.message.bytes"].value == "500000"
    assert cfg["segment.ms"].value == "3600000", "SET of other keys must not reset segment.ms"
    # DELETE reverts to the default
    incremental_alter(bs, topic_name, [("retention.ms", None, AlterConfigOpType.DELETE)])
    cfg = describe(bs, topic_name)
    assert cfg["retention.ms"].value == KAFKA_DEFAULT_RETENTION_MS
    assert _src(cfg["retention.ms"]) != ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert cfg["max.message.bytes"].value == "500000"
    # configs survive a restart
    broker.restart()
    cfg = describe(bs, topic_name)
    assert cfg["max.message.bytes"].value == "500000"
    assert cfg["segment.ms"].value == "3600000"
    assert cfg["retention.ms"].value == KAFKA_DEFAULT_RETENTION_MS


def test_incremental_alter_configs_invalid(broker, topic_name):
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name)
    with pytest.raises(KafkaException) as ei:
        incremental_alter(bs, topic_name, [("retention.ms", "not-a-number",
                                            AlterConfigOpType.SET)])
    assert _err(ei).code() == KafkaError.INVALID_CONFIG
    with pytest.raises(KafkaException) as ei:
        incremental_alter(bs, topic_name, [("no.such.config", "1", AlterConfigOpType.SET)])
    assert _err(ei).code() == KafkaError.INVALID_CONFIG
    assert describe(bs, topic_name)["retention.ms"].value == KAFKA_DEFAULT_RETENTION_MS


def test_create_topic_invalid_config(broker, topic_name):
    a = kc.admin_client(broker.bootstrap)
    fs = a.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=1,
                                   config={"no.such.config": "1"})], request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        fs[topic_name].result(15)
    assert _err(ei).code() == KafkaError.INVALID_CONFIG
    assert kc.topic_partitions(broker.bootstrap, topic_name) is None


def test_create_topic_invalid_partitions(broker, topic_name):
    a = kc.admin_client(broker.bootstrap)
    fs = a.create_topics([NewTopic(topic_name, num_partitions=0, replication_factor=1)],
                         request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        fs[topic_name].result(15)
    assert _err(ei).code() == KafkaError.INVALID_PARTITIONS


def test_list_topics_metadata(broker, topic_name):
    bs = broker.bootstrap
    names = [f"{topic_name}-{i}" for i in range(3)]
    for i, n in enumerate(names):
        kc.create_topic(bs, n, partitions=i + 1)
    md = kc.admin_client(bs).list_topics(timeout=10)
    for i, n in enumerate(names):
        assert n in md.topics
        t = md.topics[n]
        assert t.error is None
        assert sorted(t.partitions) == list(range(i + 1))
        for p in t.partitions.values():
            assert p.leader in md.brokers, f"partition {p.id} leader {p.leader} not a listed broker"
            assert p.error is None
    assert len(md.brokers) == 1
    (b,) = md.brokers.values()
    assert (b.host, b.port) == ("127.0.0.1", broker.port), \
        f"advertised {b.host}:{b.port}, listening on {bs}"


def test_kcat_metadata_list(broker, topic_name, kcat_bin):
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name, partitions=3)
    r = subprocess.run([kcat_bin, "-L", "-b", bs], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert f'topic "{topic_name}" with 3 partitions' in out, out
    assert "1 brokers:" in out, out
    r = subprocess.run([kcat_bin, "-L", "-b", bs, "-t", topic_name, "-J"], capture_output=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    import json
    md = json.loads(r.stdout)
    (t,) = md["topics"]
    assert t["topic"] == topic_name and len(t["partitions"]) == 3


def test_kafka_python_admin(broker, topic_name):
    from kafka.admin import ConfigResource as KConfigResource
    from kafka.admin import ConfigResourceType, KafkaAdminClient
    from kafka.errors import TopicAlreadyExistsError
    bs = broker.bootstrap
    a = KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=15000)
    try:
        a.create_topics({topic_name: {"num_partitions": 2, "replication_factor": 1,
                                      "configs": {"retention.ms": "7200000"}}})
        kc.wait_topic(bs, topic_name, 2)
        assert topic_name in a.list_topics()
        with pytest.raises(TopicAlreadyExistsError):
            a.create_topics({topic_name: {"num_partitions": 1, "replication_factor": 1}})
        res = a.describe_configs([KConfigResource(ConfigResourceType.TOPIC, topic_name)],
                                 config_filter="all")
        cfg = res["topic"][topic_name]
        assert cfg["retention.ms"]["value"] == "7200000", cfg["retention.ms"]
        a.delete_topics([topic_name])
        wait_gone(bs, topic_name)
        assert topic_name not in a.list_topics()
    finally:
        a.close()


def test_create_topic_broker_default_partitions(broker_factory, topic_name):
    """CreateTopics with num_partitions / replication_factor -1 uses the broker defaults."""
    b = broker_factory({"num.partitions": 2})
    a = kc.admin_client(b.bootstrap)
    a.create_topics([NewTopic(topic_name)], request_timeout=15)[topic_name].result(15)
    assert kc.wait_topic(b.bootstrap, topic_name) == 2


def test_create_topic_replication_factor_too_large(broker, topic_name):
    a = kc.admin_client(broker.bootstrap)
    fs = a.create_topics([NewTopic(topic_name, num_partitions=1, replication_factor=3)],
                         request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        fs[topic_name].result(15)
    assert _err(ei).code() == KafkaError.INVALID_REPLICATION_FACTOR
    assert kc.topic_partitions(broker.bootstrap, topic_name) is None


def test_incremental_alter_list_config_append(broker, topic_name):
    """KIP-339: APPEND / SUBTRACT apply to list-type configs; cleanup.policy is one.
    Appending a value already present leaves the list unchanged."""
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name)
    incremental_alter(bs, topic_name, [("cleanup.policy", "delete", AlterConfigOpType.APPEND)])
    assert describe(bs, topic_name)["cleanup.policy"].value == "delete"


def test_cluster_metadata(broker):
    md = kc.admin_client(broker.bootstrap).list_topics(timeout=10)
    assert md.cluster_id, "Metadata must carry a cluster id"
    assert md.controller_id in md.brokers, (md.controller_id, md.brokers)
