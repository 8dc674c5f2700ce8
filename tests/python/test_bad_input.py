"""Client-visible errors for bad input: unknown topics (auto-create off / on), records over
max.message.bytes, invalid topic names."""
from __future__ import annotations

import os
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import NewTopic

import kclients as kc
import kwire

UNKNOWN_TOPIC_OR_PARTITION = 3
MESSAGE_TOO_LARGE = 10
INVALID_TOPIC_EXCEPTION = 17


def _metadata(bs, topics, allow_auto_create=False):
    with kwire.Conn(bs) as c:
        return kwire.parse_metadata_v4(c.roundtrip(kwire.metadata_v4(7, topics,
                                                                     allow_auto_create)))


def _produce_errors(bs, topic, msgs, conf=None, timeout=30):
    """Produce with confluent-kafka, return the per-message delivery errors (None = ok)."""
    c = {"bootstrap.servers": bs, "enable.idempotence": False, "acks": "all",
         "message.timeout.ms": 15000, "topic.metadata.propagation.max.ms": 1000,
         "retries": 2, "log_level": 3}
    c.update(conf or {})
    p = Producer(c)
    errs = [None] * len(msgs)

    def cb_for(i):
        def cb(err, m):
            errs[i] = err if err is not None else "ok"
        return cb

    for i, m in enumerate(msgs):
        p.produce(topic, value=m.value, key=m.key, on_delivery=cb_for(i))
    assert p.flush(timeout) == 0
    return errs


def test_unknown_topic_autocreate_off(broker_factory, topic_name):
    b = broker_factory({"auto.create.topics.enable": False})
    bs = b.bootstrap
    # Metadata (even when the client allows auto-creation) reports UNKNOWN_TOPIC_OR_PARTITION
    md = _metadata(bs, [topic_name], allow_auto_create=True)
    assert md["topics"][topic_name]["error_code"] == UNKNOWN_TOPIC_OR_PARTITION, md
    # a raw Produce to it gets UNKNOWN_TOPIC_OR_PARTITION
    with kwire.Conn(bs) as c:
        resp = kwire.parse_produce_v3(c.roundtrip(kwire.produce_v3(
            1, topic_name, 0, kwire.record_batch([(b"k", b"v", [])], kc.now_ms()))))
    assert resp["partitions"][(topic_name, 0)]["error_code"] == UNKNOWN_TOPIC_OR_PARTITION, resp
    # librdkafka reports the message as failed for an unknown topic
    errs = _produce_errors(bs, topic_name, [kc.Msg(value=b"x")])
    assert isinstance(errs[0], KafkaError), errs
    assert errs[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC), errs[0]
    # and the topic was not created by any of that
    assert kc.topic_partitions(bs, topic_name) is None
    # explicit creation still works
    kc.create_topic(bs, topic_name)
    kc.produce_confluent(bs, topic_name, [kc.Msg(value=b"now it exists")])


def test_autocreate_on_by_default_uses_num_partitions(broker_factory, topic_name):
    b = broker_factory({"num.partitions": 3})
    bs = b.bootstrap
    # Metadata v4 with allow_auto_topic_creation=false must not create it
    md = _metadata(bs, [topic_name], allow_auto_create=False)
    assert md["topics"][topic_name]["error_code"] == UNKNOWN_TOPIC_OR_PARTITION, md
    assert kc.topic_partitions(bs, topic_name) is None
    # a producer (allow_auto_topic_creation=true) creates it with num.partitions
    errs = _produce_errors(bs, topic_name, [kc.Msg(value=b"auto")],
                           conf={"topic.metadata.propagation.max.ms": 30000})
    assert errs == ["ok"], errs
    assert kc.wait_topic(bs, topic_name) == 3
    total = sum(kc.watermarks(bs, topic_name, p)[1] for p in range(3))
    assert total == 1


def test_invalid_name_not_autocreated(broker, topic_name):
    md = _metadata(broker.bootstrap, ["bad/name"], allow_auto_create=True)
    assert md["topics"]["bad/name"]["error_code"] == INVALID_TOPIC_EXCEPTION, md
    assert kc.topic_partitions(broker.bootstrap, "bad/name") is None


@pytest.mark.parametrize("name", ["bad/name", "a" * 250, "..", ".", "with space", "bad:name"])
def test_create_topic_invalid_name(broker, name):
    a = kc.admin_client(broker.bootstrap)
    fs = a.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)],
                         request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        fs[name].result(15)
    assert ei.value.args[0].code() == KafkaError.TOPIC_EXCEPTION, ei.value
    assert kc.topic_partitions(broker.bootstrap, name) is None


@pytest.mark.parametrize("name", ["a" * 249, "Valid.name_with-chars.0"])
def test_create_topic_valid_edge_names(broker, name):
    bs = broker.bootstrap
    kc.create_topic(bs, name)
    kc.produce_confluent(bs, name, [kc.Msg(value=b"ok")])
    assert [r.value for r in kc.consume_confluent(bs, name)] == [b"ok"]
    broker.restart()
    assert [r.value for r in kc.consume_confluent(bs, name)] == [b"ok"]


def test_kafka_python_create_invalid_topic(broker):
    from kafka.admin import KafkaAdminClient
    from kafka.errors import InvalidTopicError
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        with pytest.raises(InvalidTopicError):
            a.create_topics({"bad/name": {"num_partitions": 1, "replication_factor": 1}})
    finally:
        a.close()


def test_message_too_large_topic_config(broker, topic_name):
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name, config={"max.message.bytes": "1024"})
    kc.produce_confluent(bs, topic_name, [kc.Msg(value=b"small-1")])
    big = os.urandom(4000)       # incompressible, so the batch stays > 1024 bytes
    # confluent-kafka: client limit (message.max.bytes) is 1 MB, the broker must reject
    errs = _produce_errors(bs, topic_name, [kc.Msg(value=big)],
                           conf={"compression.type": "none", "message.max.bytes": 1_000_000})
    assert isinstance(errs[0], KafkaError), errs
    assert errs[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, errs[0]
    # kafka-python (client limit max_request_size 1 MB)
    from kafka.errors import MessageSizeTooLargeError
    with pytest.raises(MessageSizeTooLargeError):
        kc.produce_kafka_python(bs, topic_name, [kc.Msg(value=big)], retries=0)
    # raw Produce: error code 10
    with kwire.Conn(bs) as c:
        resp = kwire.parse_produce_v3(c.roundtrip(kwire.produce_v3(
            1, topic_name, 0, kwire.record_batch([(None, big, [])], kc.now_ms()))))
    assert resp["partitions"][(topic_name, 0)]["error_code"] == MESSAGE_TOO_LARGE, resp
    # under the limit still fine; nothing of the rejected ones was stored
    kc.produce_confluent(bs, topic_name, [kc.Msg(value=b"small-2")])
    got = kc.consume_confluent(bs, topic_name)
    assert [(r.offset, r.value) for r in got] == [(0, b"small-1"), (1, b"small-2")]


def test_message_too_large_after_alter(broker, topic_name):
    """Lowering max.message.bytes with IncrementalAlterConfigs applies to later produces."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name)
    big = os.urandom(4000)
    kc.produce_confluent(bs, topic_name, [kc.Msg(value=big)], conf={"compression.type": "none"})
    a = kc.admin_client(bs)
    res = ConfigResource(ResourceType.TOPIC, topic_name, incremental_configs=[
        ConfigEntry("max.message.bytes", "1024", incremental_operation=AlterConfigOpType.SET)])
    list(a.incremental_alter_configs([res]).values())[0].result(15)
    errs = _produce_errors(bs, topic_name, [kc.Msg(value=big)], conf={"compression.type": "none"})
    assert isinstance(errs[0], KafkaError) and errs[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, errs
    assert kc.watermarks(bs, topic_name) == (0, 1)


def test_message_too_large_broker_default(broker_factory, topic_name):
    """The broker-wide message.max.bytes is the default for topics without an override."""
    b = broker_factory({"message.max.bytes": 2048})
    bs = b.bootstrap
    kc.create_topic(bs, topic_name)
    errs = _produce_errors(bs, topic_name, [kc.Msg(value=os.urandom(5000)),
                                             kc.Msg(value=b"tiny")],
                           conf={"compression.type": "none", "linger.ms": 0,
                                 "batch.num.messages": 1})
    assert isinstance(errs[0], KafkaError) and errs[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, errs
    assert errs[1] == "ok", errs
    assert [r.value for r in kc.consume_confluent(bs, topic_name)] == [b"tiny"]


def test_produce_to_nonexistent_partition(broker, topic_name):
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name, partitions=2)
    with kwire.Conn(bs) as c:
        resp = kwire.parse_produce_v3(c.roundtrip(kwire.produce_v3(
            1, topic_name, 7, kwire.record_batch([(b"k", b"v", [])], kc.now_ms()))))
    assert resp["partitions"][(topic_name, 7)]["error_code"] == UNKNOWN_TOPIC_OR_PARTITION, resp
    time.sleep(0.1)
    assert kc.topic_partitions(bs, topic_name) == 2
