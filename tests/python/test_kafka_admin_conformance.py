"""Kafka admin conformance with real clients: every topic config Kafka defines (CreateTopics,
DescribeConfigs, AlterConfigs, IncrementalAlterConfigs), the legacy AlterConfigs API
(confluent-kafka and kafka-python), dynamic broker configs (the BROKER resource),
DeleteRecords, DescribeCluster and authorized operations.

The cluster-default broker resource (name "") cannot be named by confluent-kafka or
kafka-python (both route a BROKER resource to the broker id in its name), so those two
tests speak AlterConfigs v0 / DescribeConfigs v1 on a raw socket, as kafka-configs.sh
--entity-default does through the Java client."""
from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import (AclOperation, AlterConfigOpType, ConfigEntry,
                                   ConfigResource, ConfigSource, NewTopic, ResourceType)

import kclients as kc
import kwire as kw

# Kafka 3.9's topic config defaults (LogConfig); flush.messages/flush.ms are left out:
# Arctern fsyncs before acknowledging by default (docs/kafka-compatibility.md).
KAFKA_TOPIC_DEFAULTS = {
    "cleanup.policy": "delete",
    "compression.gzip.level": "-1",
    "compression.lz4.level": "9",
    "compression.type": "producer",
    "compression.zstd.level": "3",
    "delete.retention.ms": "86400000",
    "file.delete.delay.ms": "60000",
    "follower.replication.throttled.replicas": "",
    "index.interval.bytes": "4096",
    "leader.replication.throttled.replicas": "",
    "local.retention.bytes": "-2",
    "local.retention.ms": "-2",
    "max.compaction.lag.ms": "9223372036854775807",
    "max.message.bytes": "1048588",
    "message.downconversion.enable": "true",
    "message.format.version": "3.0-IV1",
    "message.timestamp.after.max.ms": "9223372036854775807",
    "message.timestamp.before.max.ms": "9223372036854775807",
    "message.timestamp.difference.max.ms": "9223372036854775807",
    "message.timestamp.type": "CreateTime",
    "min.cleanable.dirty.ratio": "0.5",
    "min.compaction.lag.ms": "0",
    "min.insync.replicas": "1",
    "preallocate": "false",
    "remote.storage.enable": "false",
    "retention.bytes": "-1",
    "retention.ms": "604800000",
    "segment.bytes": "1073741824",
    "segment.index.bytes": "10485760",
    "segment.jitter.ms": "0",
    "segment.ms": "604800000",
    "unclean.leader.election.enable": "false",
}

# A non-default, valid value for every topic config Arctern accepts (compaction, tiered
# storage and LogAppendTime are refused; see test_refused_values_keep_protecting_data).
NON_DEFAULT_VALUES = {
    "compression.gzip.level": "5",
    "compression.lz4.level": "10",
    "compression.type": "zstd",
    "compression.zstd.level": "7",
    "delete.retention.ms": "1000",
    "file.delete.delay.ms": "2000",
    "flush.messages": "1",
    "flush.ms": "1000",
    "follower.replication.throttled.replicas": "*",
    "index.interval.bytes": "8192",
    "leader.replication.throttled.replicas": "0:1",
    "local.retention.bytes": "1000000",
    "local.retention.ms": "100000",
    "max.compaction.lag.ms": "100000",
    "max.message.bytes": "2000000",
    "message.downconversion.enable": "false",
    "message.format.version": "3.0-IV1",
    "message.timestamp.after.max.ms": "3600000",
    "message.timestamp.before.max.ms": "3600000",
    "message.timestamp.difference.max.ms": "3600000",
    "min.cleanable.dirty.ratio": "0.25",
    "min.compaction.lag.ms": "500",
    "min.insync.replicas": "1",
    "preallocate": "true",
    "retention.bytes": "100000000",
    "retention.ms": "86400000",
    "segment.bytes": "10485760",
    "segment.index.bytes": "1048576",
    "segment.jitter.ms": "10",
    "segment.ms": "3600000",
    "unclean.leader.election.enable": "false",
}


def _err(excinfo) -> KafkaError:
    e = excinfo.value
    return e.args[0] if isinstance(e, KafkaException) else e


def _src(entry) -> int:
    s = entry.source
    return int(getattr(s, "value", s))


def describe(bs, rtype, name) -> dict:
    a = kc.admin_client(bs)
    (f,) = a.describe_configs([ConfigResource(rtype, name)], request_timeout=15).values()
    return f.result(15)


def incremental(bs, rtype, name, entries, validate_only=False):
    a = kc.admin_client(bs)
    res = ConfigResource(rtype, name, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=op) for k, v, op in entries])
    (f,) = a.incremental_alter_configs([res], request_timeout=15,
                                       validate_only=validate_only).values()
    return f.result(15)


def kafka_python_admin(bs):
    from kafka.admin import KafkaAdminClient
    return KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=15000)


# ------------------------------------------------------------------ every topic config


def test_describe_reports_every_kafka_topic_config_with_its_default(broker, topic_name):
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name)
    cfg = describe(bs, ResourceType.TOPIC, topic_name)
    for key, default in KAFKA_TOPIC_DEFAULTS.items():
        assert key in cfg, f"DescribeConfigs lacks {key}"
        assert cfg[key].value == default, (key, cfg[key].value)
        assert _src(cfg[key]) != ConfigSource.DYNAMIC_TOPIC_CONFIG.value, key
        assert not cfg[key].is_read_only and not cfg[key].is_sensitive, key
    # Configs without a static broker setting come from Kafka's defaults.
    assert _src(cfg["delete.retention.ms"]) == ConfigSource.DEFAULT_CONFIG.value
    # Synonyms (DescribeConfigs v1+): the broker config that supplies the default.
    syn = cfg["delete.retention.ms"].synonyms
    assert "log.cleaner.delete.retention.ms" in syn, syn


def test_create_topic_with_every_config(broker, topic_name):
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name, config=NON_DEFAULT_VALUES)
    cfg = describe(bs, ResourceType.TOPIC, topic_name)
    for key, value in NON_DEFAULT_VALUES.items():
        assert cfg[key].value == value, (key, cfg[key].value)
        assert _src(cfg[key]) == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, key
    # The topic still works with all of them set.
    kc.produce_confluent(bs, topic_name, [kc.Msg(value=b"x" * 100)])
    assert kc.watermarks(bs, topic_name) == (0, 1)


def test_incremental_alter_accepts_every_config(broker, topic_name):
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name)
    incremental(bs, ResourceType.TOPIC, topic_name,
                [(k, v, AlterConfigOpType.SET) for k, v in NON_DEFAULT_VALUES.items()])
    cfg = describe(bs, ResourceType.TOPIC, topic_name)
    for key, value in NON_DEFAULT_VALUES.items():
        assert cfg[key].value == value, (key, cfg[key].value)
    incremental(bs, ResourceType.TOPIC, topic_name,
                [("delete.retention.ms", None, AlterConfigOpType.DELETE)])
    cfg = describe(bs, ResourceType.TOPIC, topic_name)
    assert cfg["delete.retention.ms"].value == "86400000"
    assert _src(cfg["delete.retention.ms"]) == ConfigSource.DEFAULT_CONFIG.value


@pytest.mark.parametrize("key,value", [
    ("delete.retention.ms", "-1"),
    ("delete.retention.ms", "soon"),
    ("segment.bytes", "13"),
    ("segment.bytes", "4294967296"),
    ("segment.ms", "0"),
    ("min.cleanable.dirty.ratio", "2"),
    ("compression.type", "brotli"),
    ("compression.zstd.level", "99"),
    ("message.downconversion.enable", "maybe"),
    ("leader.replication.throttled.replicas", "broker-1"),
    ("no.such.config", "1"),
])
def test_bad_values_are_invalid_config(broker, topic_name, key, value):
    bs = broker.bootstrap
    a = kc.admin_client(bs)
    fs = a.create_topics([NewTopic(topic_name, 1, 1, config={key: value})], request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        fs[topic_name].result(15)
    assert _err(ei).code() == KafkaError.INVALID_CONFIG
    assert kc.topic_partitions(bs, topic_name) is None
    kc.create_topic(bs, topic_name)
    with pytest.raises(KafkaException) as ei:
        incremental(bs, ResourceType.TOPIC, topic_name, [(key, value, AlterConfigOpType.SET)])
    assert _err(ei).code() == KafkaError.INVALID_CONFIG


@pytest.mark.parametrize("key,value", [
    ("cleanup.policy", "compact"),
    ("cleanup.policy", "compact,delete"),
    ("message.timestamp.type", "LogAppendTime"),
    ("remote.storage.enable", "true"),
])
def test_refused_values_keep_protecting_data(broker, topic_name, key, value):
    """Values Kafka accepts but Arctern cannot honour are refused with a clear message
    rather than stored and ignored (docs/kafka-compatibility.md)."""
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name)
    with pytest.raises(KafkaException) as ei:
        incremental(bs, ResourceType.TOPIC, topic_name, [(key, value, AlterConfigOpType.SET)])
    assert _err(ei).code() == KafkaError.INVALID_CONFIG
    assert "not" in _err(ei).str()


# ------------------------------------------------------------------ legacy AlterConfigs


def test_legacy_alter_configs_replaces_topic_configs_confluent(broker, topic_name):
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name, config={"retention.ms": "3600000", "segment.ms": "7200000"})
    a = kc.admin_client(bs)
    res = ConfigResource(ResourceType.TOPIC, topic_name,
                         set_config={"delete.retention.ms": "5000", "retention.bytes": "1000000"})
    # validate_only changes nothing
    (f,) = a.alter_configs([res], request_timeout=15, validate_only=True).values()
    f.result(15)
    cfg = describe(bs, ResourceType.TOPIC, topic_name)
    assert cfg["retention.ms"].value == "3600000"
    assert cfg["delete.retention.ms"].value == "86400000"
    (f,) = a.alter_configs([res], request_timeout=15).values()
    f.result(15)
    cfg = describe(bs, ResourceType.TOPIC, topic_name)
    assert cfg["delete.retention.ms"].value == "5000"
    assert cfg["retention.bytes"].value == "1000000"
    # Full replace: what was not named goes back to its default.
    assert cfg["retention.ms"].value == "604800000"
    assert _src(cfg["retention.ms"]) != ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert cfg["segment.ms"].value == "604800000"
    # A bad value fails the whole resource and changes nothing.
    bad = ConfigResource(ResourceType.TOPIC, topic_name,
                         set_config={"retention.ms": "1", "segment.bytes": "1"})
    (f,) = a.alter_configs([bad], request_timeout=15).values()
    with pytest.raises(KafkaException) as ei:
        f.result(15)
    assert _err(ei).code() == KafkaError.INVALID_CONFIG
    assert describe(bs, ResourceType.TOPIC, topic_name)["delete.retention.ms"].value == "5000"


def test_legacy_alter_configs_kafka_python(broker, topic_name):
    from kafka.admin import ConfigResource as KConfigResource
    from kafka.admin import ConfigResourceType
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name, config={"retention.ms": "3600000"})
    a = kafka_python_admin(bs)
    try:
        res = KConfigResource(ConfigResourceType.TOPIC, topic_name,
                              configs={"delete.retention.ms": "7000",
                                       "min.compaction.lag.ms": "100"})
        # incremental=False forces the legacy AlterConfigs API (key 33); kafka-python
        # first adds the other dynamic configs, as AlterConfigs replaces them all.
        out = a.alter_configs([res], incremental=False, raise_on_unknown=False)
        assert out["topic"][topic_name] == "OK", out
        cfg = a.describe_configs([KConfigResource(ConfigResourceType.TOPIC, topic_name)],
                                 config_filter="all")["topic"][topic_name]
        assert cfg["delete.retention.ms"]["value"] == "7000"
        assert cfg["min.compaction.lag.ms"]["value"] == "100"
        assert cfg["retention.ms"]["value"] == "3600000"
        bad = KConfigResource(ConfigResourceType.TOPIC, topic_name,
                              configs={"delete.retention.ms": "-5"})
        out = a.alter_configs([bad], incremental=False, raise_on_unknown=False)
        assert "InvalidConfig" in out["topic"][topic_name], out
    finally:
        a.close()


# ------------------------------------------------------------------ dynamic broker configs


def test_incremental_alter_broker_config_takes_effect_and_persists(broker_factory, topic_name):
    b = broker_factory()
    bs = b.bootstrap
    kc.create_topic(bs, topic_name)
    big = topic_name + "-big"
    kc.create_topic(bs, big, config={"max.message.bytes": "1000000"})
    cfg = describe(bs, ResourceType.BROKER, "1")
    assert _src(cfg["message.max.bytes"]) != ConfigSource.DYNAMIC_BROKER_CONFIG.value
    assert not cfg["message.max.bytes"].is_read_only
    assert cfg["log.dirs"].is_read_only
    # validate_only changes nothing
    incremental(bs, ResourceType.BROKER, "1",
                [("message.max.bytes", "2000", AlterConfigOpType.SET)], validate_only=True)
    assert describe(bs, ResourceType.BROKER, "1")["message.max.bytes"].value == "1048588"
    incremental(bs, ResourceType.BROKER, "1",
                [("message.max.bytes", "2000", AlterConfigOpType.SET),
                 ("log.cleaner.threads", "2", AlterConfigOpType.SET)])
    cfg = describe(bs, ResourceType.BROKER, "1")
    assert cfg["message.max.bytes"].value == "2000"
    assert _src(cfg["message.max.bytes"]) == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    assert cfg["log.cleaner.threads"].value == "2"
    # The topic default follows; a topic override still wins.
    t = describe(bs, ResourceType.TOPIC, topic_name)["max.message.bytes"]
    assert t.value == "2000"
    assert _src(t) == ConfigSource.DYNAMIC_BROKER_CONFIG.value

    def produce_big(topic):
        kc.produce_confluent(bs, topic, [kc.Msg(value=b"x" * 10_000)], timeout=20)

    with pytest.raises(Exception) as ei:
        produce_big(topic_name)
    assert "MSG_SIZE_TOO_LARGE" in str(ei.value) or "too large" in str(ei.value).lower()
    produce_big(big)
    # It survives a restart.
    b.restart()
    cfg = describe(bs, ResourceType.BROKER, "1")
    assert cfg["message.max.bytes"].value == "2000"
    assert _src(cfg["message.max.bytes"]) == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    with pytest.raises(Exception):
        produce_big(topic_name)
    # DELETE restores the static default.
    incremental(bs, ResourceType.BROKER, "1",
                [("message.max.bytes", None, AlterConfigOpType.DELETE)])
    assert describe(bs, ResourceType.BROKER, "1")["message.max.bytes"].value == "1048588"
    produce_big(topic_name)


@pytest.mark.parametrize("key,value,code", [
    ("log.dirs", "/tmp/elsewhere", KafkaError.INVALID_REQUEST),       # read-only
    ("node.id", "7", KafkaError.INVALID_REQUEST),                     # read-only
    ("log.message.format.version", "3.0", KafkaError.INVALID_REQUEST),  # not reconfigurable
    ("log.retention.ms", "soon", KafkaError.INVALID_REQUEST),         # bad value
])
def test_broker_configs_kafka_refuses_to_change(broker, key, value, code):
    with pytest.raises(KafkaException) as ei:
        incremental(broker.bootstrap, ResourceType.BROKER, "1",
                    [(key, value, AlterConfigOpType.SET)])
    assert _err(ei).code() == code


def _alter_configs_v0(bs, rtype: int, name: str, configs: dict) -> int:
    body = kw.array([kw.i8(rtype) + kw.string(name) + kw.array(
        [kw.string(k) + kw.string(v) for k, v in configs.items()])]) + kw.i8(0)
    with kw.Conn(bs) as c:
        r = kw.Reader(c.roundtrip(kw.request(33, 0, 7, body)))
    assert r.i32() == 7
    r.i32()                                    # throttle
    assert r.i32() == 1
    err = r.i16()
    r.string()
    return err


def _describe_configs_v1(bs, rtype: int, name: str) -> dict:
    body = kw.array([kw.i8(rtype) + kw.string(name) + kw.i32(-1)]) + kw.i8(1)
    with kw.Conn(bs) as c:
        r = kw.Reader(c.roundtrip(kw.request(32, 1, 8, body)))
    assert r.i32() == 8
    r.i32()
    assert r.i32() == 1
    err, _msg, _t, _n = r.i16(), r.string(), r.i8(), r.string()
    assert err == 0
    out = {}
    for _ in range(r.i32()):
        name_, value, ro, source, sens = r.string(), r.string(), r.i8(), r.i8(), r.i8()
        syns = [(r.string(), r.string(), r.i8()) for _ in range(r.i32())]
        out[name_] = dict(value=value, read_only=ro, source=source, sensitive=sens, synonyms=syns)
    return out


def test_cluster_default_broker_config(broker_factory, topic_name):
    """Resource name "" sets the cluster-wide default (DYNAMIC_DEFAULT_BROKER_CONFIG); a
    broker's own value takes precedence over it."""
    b = broker_factory()
    bs = b.bootstrap
    kc.create_topic(bs, topic_name)
    assert _alter_configs_v0(bs, 4, "", {"log.retention.ms": "3600000",
                                         "log.cleaner.delete.retention.ms": "1234"}) == 0
    d = _describe_configs_v1(bs, 4, "")
    assert d["log.retention.ms"]["value"] == "3600000"
    assert d["log.retention.ms"]["source"] == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
    t = describe(bs, ResourceType.TOPIC, topic_name)
    assert t["retention.ms"].value == "3600000"
    assert _src(t["retention.ms"]) == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
    assert t["delete.retention.ms"].value == "1234"
    incremental(bs, ResourceType.BROKER, "1",
                [("log.retention.ms", "7200000", AlterConfigOpType.SET)])
    t = describe(bs, ResourceType.TOPIC, topic_name)
    assert t["retention.ms"].value == "7200000"
    assert _src(t["retention.ms"]) == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    # A read-only config is refused at the cluster level too.
    assert _alter_configs_v0(bs, 4, "", {"log.dirs": "/x"}) == KafkaError.INVALID_REQUEST
    # Legacy AlterConfigs replaces the whole set: naming nothing clears it.
    assert _alter_configs_v0(bs, 4, "", {}) == 0
    b.restart()
    assert _describe_configs_v1(bs, 4, "") == {}
    assert describe(bs, ResourceType.TOPIC, topic_name)["retention.ms"].value == "7200000"


def test_broker_resource_for_another_broker_id_is_invalid_request(broker):
    assert _alter_configs_v0(broker.bootstrap, 4, "42", {"log.retention.ms": "1000"}) \
        == KafkaError.INVALID_REQUEST


# ------------------------------------------------------------------ DeleteRecords


def _consume_offsets(bs, topic, n_expected, timeout=20):
    c = Consumer({"bootstrap.servers": bs, "group.id": "dr-" + topic, "log_level": 3,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic, 0, -2)])    # OFFSET_BEGINNING
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < n_expected and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got.append(m.offset())
        return got
    finally:
        c.close()


def test_delete_records(broker, topic_name):
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name)
    kc.produce_confluent(bs, topic_name, kc.make_messages(10))
    a = kc.admin_client(bs)
    (f,) = a.delete_records([TopicPartition(topic_name, 0, 4)], request_timeout=15).values()
    assert f.result(15).low_watermark == 4
    assert kc.watermarks(bs, topic_name) == (4, 10)
    assert _consume_offsets(bs, topic_name, 6) == list(range(4, 10))
    # Beyond the high watermark: OFFSET_OUT_OF_RANGE, nothing changes.
    (f,) = a.delete_records([TopicPartition(topic_name, 0, 11)], request_timeout=15).values()
    with pytest.raises(KafkaException) as ei:
        f.result(15)
    assert _err(ei).code() == KafkaError.OFFSET_OUT_OF_RANGE
    # An offset below the current start is a no-op that reports the start.
    (f,) = a.delete_records([TopicPartition(topic_name, 0, 2)], request_timeout=15).values()
    assert f.result(15).low_watermark == 4
    # It survives a restart (and a kill -9).
    broker.restart(kill=True)
    assert kc.watermarks(bs, topic_name) == (4, 10)
    # -1 = up to the high watermark.
    a = kc.admin_client(bs)
    (f,) = a.delete_records([TopicPartition(topic_name, 0, -1)], request_timeout=15).values()
    assert f.result(15).low_watermark == 10
    assert kc.watermarks(bs, topic_name) == (10, 10)
    kc.produce_confluent(bs, topic_name, [kc.Msg(value=b"after")])
    assert _consume_offsets(bs, topic_name, 1) == [10]


def test_delete_records_kafka_python(broker, topic_name):
    from kafka.structs import TopicPartition as KTP
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name)
    kc.produce_confluent(bs, topic_name, kc.make_messages(5))
    a = kafka_python_admin(bs)
    try:
        out = a.delete_records({KTP(topic_name, 0): 3})
        assert out[KTP(topic_name, 0)]["low_watermark"] == 3, out
    finally:
        a.close()
    assert kc.watermarks(bs, topic_name) == (3, 5)


# ------------------------------------------------------------------ cluster / authorized ops

ALL_CLUSTER_OPS = {AclOperation.CREATE, AclOperation.CLUSTER_ACTION, AclOperation.DESCRIBE_CONFIGS,
                   AclOperation.ALTER_CONFIGS, AclOperation.IDEMPOTENT_WRITE, AclOperation.ALTER,
                   AclOperation.DESCRIBE}
ALL_TOPIC_OPS = {AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DESCRIBE,
                 AclOperation.DELETE, AclOperation.ALTER, AclOperation.DESCRIBE_CONFIGS,
                 AclOperation.ALTER_CONFIGS}


def test_describe_cluster(broker):
    a = kc.admin_client(broker.bootstrap)
    d = a.describe_cluster(include_authorized_operations=True, request_timeout=15).result(15)
    assert [n.id for n in d.nodes] == [1]
    assert d.controller is not None and d.controller.id == 1
    assert d.cluster_id
    assert set(d.authorized_operations) == ALL_CLUSTER_OPS
    d = a.describe_cluster(request_timeout=15).result(15)
    assert not d.authorized_operations


def test_describe_topics_authorized_operations(broker, topic_name):
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name, partitions=2)
    a = kc.admin_client(bs)
    (f,) = a.describe_topics(TopicCollection([topic_name]), include_authorized_operations=True,
                             request_timeout=15).values()
    d = f.result(15)
    assert len(d.partitions) == 2
    assert set(d.authorized_operations) == ALL_TOPIC_OPS
    (f,) = a.describe_topics(TopicCollection([topic_name]), request_timeout=15).values()
    assert not f.result(15).authorized_operations
    assert topic_name in a.list_topics(timeout=15).topics


def test_describe_groups_authorized_operations(broker, topic_name):
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name, partitions=1)
    group = f"g-{topic_name}"
    c = Consumer({"bootstrap.servers": bs, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(topic_name, 0, 1)], asynchronous=False)
    finally:
        c.close()
    a = kc.admin_client(bs)
    (f,) = a.describe_consumer_groups([group], include_authorized_operations=True,
                                      request_timeout=15).values()
    assert set(f.result(15).authorized_operations) == {AclOperation.READ, AclOperation.DESCRIBE,
                                                       AclOperation.DELETE}
    (f,) = a.describe_consumer_groups([group], request_timeout=15).values()
    assert not f.result(15).authorized_operations


def test_kafka_python_describe_cluster(broker):
    a = kafka_python_admin(broker.bootstrap)
    try:
        # DescribeCluster with include_cluster_authorized_operations (kafka-python asks
        # for them and decodes the bitfield).
        d = a.describe_cluster()
        assert [b["broker_id"] for b in d["brokers"]] == [1]
        assert d["controller_id"] == 1
        assert d["cluster_id"]
        ops = {getattr(o, "name", str(o)) for o in d["authorized_operations"]}
        assert {"CREATE", "ALTER", "DESCRIBE", "CLUSTER_ACTION", "DESCRIBE_CONFIGS",
                "ALTER_CONFIGS", "IDEMPOTENT_WRITE"} <= ops, d
    finally:
        a.close()


# ------------------------------------------------------------------ on a cluster


def test_cluster_followers_follow_delete_records_and_broker_defaults(cluster_factory, topic_name):
    """DeleteRecords on the leader reaches the followers (through the log start in fetch
    responses), so a new leader keeps it; a cluster-default broker config set on one node
    is in force on every node."""
    c = cluster_factory(3)
    st = c.create_topic(topic_name, rf=3)[0]
    kc.produce_confluent(c.bootstrap, topic_name, kc.make_messages(10))
    a = kc.admin_client(c.bootstrap)
    (f,) = a.delete_records([TopicPartition(topic_name, 0, 6)], request_timeout=15).values()
    assert f.result(15).low_watermark == 6
    other = st.followers[0]
    assert _alter_configs_v0(c.node(other).bootstrap, 4, "",
                             {"log.cleaner.delete.retention.ms": "4321"}) == 0
    for nd in c.live_nodes():
        # Committed on the quorum when answered; each node applies it when its copy of
        # the metadata log catches up (Kafka's brokers lag their controller the same way).
        deadline = time.monotonic() + 10
        while True:
            d = _describe_configs_v1(nd.bootstrap, 4, str(nd.node_id))
            if d["log.cleaner.delete.retention.ms"]["value"] == "4321" \
                    or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert d["log.cleaner.delete.retention.ms"]["value"] == "4321", nd
        assert d["log.cleaner.delete.retention.ms"]["source"] == \
            ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
    time.sleep(2)       # a few follower fetches carry the new log start
    c.node(st.leader).kill()
    c.wait_leader(topic_name, 0, not_in=[st.leader], timeout=60)
    assert kc.watermarks(c.live_bootstrap(), topic_name) == (6, 10)


def test_list_offsets_by_time_skips_deleted_records(broker, topic_name):
    """One batch of 10 records; DeleteRecords inside it; a time lookup older than all of
    them answers the new log start, not a deleted record."""
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name)
    base = kc.now_ms() - 60_000
    kc.produce_confluent(bs, topic_name, [kc.Msg(value=b"%d" % i, timestamp=base + i)
                                          for i in range(10)], conf={"linger.ms": 100})
    a = kc.admin_client(bs)
    (f,) = a.delete_records([TopicPartition(topic_name, 0, 5)], request_timeout=15).values()
    assert f.result(15).low_watermark == 5
    c = Consumer({"bootstrap.servers": bs, "group.id": "lo-" + topic_name, "log_level": 3})
    try:
        (tp,) = c.offsets_for_times([TopicPartition(topic_name, 0, base)], timeout=15)
        assert tp.offset == 5
        (tp,) = c.offsets_for_times([TopicPartition(topic_name, 0, base + 7)], timeout=15)
        assert tp.offset == 7
    finally:
        c.close()


def test_delete_records_on_internal_topic_refused(broker, topic_name):
    """As Kafka: INVALID_TOPIC_EXCEPTION for internal topics (here __consumer_offsets,
    created by the first FindCoordinator)."""
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name)
    kc.produce_confluent(bs, topic_name, kc.make_messages(1))
    _consume_offsets(bs, topic_name, 1)          # a group consumer creates the offsets topic
    kc.wait_topic(bs, "__consumer_offsets")
    a = kc.admin_client(bs)
    (f,) = a.delete_records([TopicPartition("__consumer_offsets", 0, -1)],
                            request_timeout=15).values()
    with pytest.raises(KafkaException) as ei:
        f.result(15)
    assert _err(ei).code() == KafkaError.TOPIC_EXCEPTION


def test_broker_configs_librdkafka_suite_sets(broker):
    """What librdkafka's 0081-admin sets on a broker: the legacy AlterConfigs with
    sasl.kerberos.min.time.before.relogin (per-broker only in Kafka), incremental SET and
    DELETE of background.threads."""
    bs = broker.bootstrap
    a = kc.admin_client(bs)
    res = ConfigResource(ResourceType.BROKER, "1",
                         set_config={"sasl.kerberos.min.time.before.relogin": "58000"})
    (f,) = a.alter_configs([res], request_timeout=15).values()
    f.result(15)
    cfg = describe(bs, ResourceType.BROKER, "1")
    assert cfg["sasl.kerberos.min.time.before.relogin"].value == "58000"
    assert _src(cfg["sasl.kerberos.min.time.before.relogin"]) == \
        ConfigSource.DYNAMIC_BROKER_CONFIG.value
    assert _alter_configs_v0(bs, 4, "", {"sasl.kerberos.min.time.before.relogin": "1"}) \
        == KafkaError.INVALID_REQUEST
    incremental(bs, ResourceType.BROKER, "1", [("background.threads", "9", AlterConfigOpType.SET)])
    assert describe(bs, ResourceType.BROKER, "1")["background.threads"].value == "9"
    incremental(bs, ResourceType.BROKER, "1", [("background.threads", None,
                                               AlterConfigOpType.DELETE)])
    cfg = describe(bs, ResourceType.BROKER, "1")
    assert cfg["background.threads"].value == "10"
    assert _src(cfg["background.threads"]) == ConfigSource.DEFAULT_CONFIG.value
    # The legacy AlterConfigs above replaced the broker's whole dynamic set; the incremental
    # calls kept it.
    assert cfg["sasl.kerberos.min.time.before.relogin"].value == "58000"
