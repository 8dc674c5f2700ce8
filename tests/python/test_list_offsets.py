"""ListOffsets: earliest, latest and by timestamp, through confluent-kafka, kafka-python,
aiokafka and kcat -Q.

Kafka's contract for a timestamp query: the earliest offset whose timestamp is >= the target
(in offset order, also when timestamps are not monotonic), and "none" (-1 / None) when no
record has such a timestamp."""
from __future__ import annotations

import asyncio
import re
import subprocess

import pytest

import kclients as kc


def confluent_offset_for_time(bs, topic, ts, partition=0):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bs, "group.id": kc.DUMMY_GROUP,
                  "enable.auto.commit": False, "log_level": 3})
    try:
        (tp,) = c.offsets_for_times([TopicPartition(topic, partition, ts)], timeout=10)
        assert tp.error is None, tp.error
        return tp.offset
    finally:
        c.close()


def kafka_python_offsets(bs, topic, ts_list, partition=0):
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(bootstrap_servers=bs, group_id=None, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, partition)
        res = {}
        for ts in ts_list:
            r = c.offsets_for_times({tp: ts})[tp]
            res[ts] = None if r is None else (r.offset, r.timestamp)
        return c.beginning_offsets([tp])[tp], c.end_offsets([tp])[tp], res
    finally:
        c.close()


def aiokafka_offsets(bs, topic, ts_list, partition=0):
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    async def run():
        c = AIOKafkaConsumer(bootstrap_servers=bs, group_id=None, enable_auto_commit=False)
        await c.start()
        try:
            tp = TopicPartition(topic, partition)
            res = {}
            for ts in ts_list:
                r = (await c.offsets_for_times({tp: ts}))[tp]
                res[ts] = None if r is None else (r.offset, r.timestamp)
            return ((await c.beginning_offsets([tp]))[tp], (await c.end_offsets([tp]))[tp], res)
        finally:
            await c.stop()

    return asyncio.run(run())


def kcat_offset_for_time(bs, topic, ts, partition=0):
    r = subprocess.run([kc.kcat_path(), "-Q", "-b", bs, "-t", f"{topic}:{partition}:{ts}"],
                       capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    m = re.search(rb"offset (-?\d+)", r.stdout)
    assert m, r.stdout
    return int(m.group(1))


def _expected(timestamps, target):
    for off, ts in enumerate(timestamps):
        if ts >= target:
            return off
    return None


@pytest.mark.parametrize("layout", ["one-batch-per-record", "single-batch"])
def test_offsets_for_times(broker, topic_name, layout):
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name)
    base = kc.now_ms() - 600_000
    # not monotonic on purpose: Kafka returns the FIRST offset (in log order) with ts >= target
    deltas = [100, 300, 200, 400, 50, 1000, 1000, 1500, 1200, 2000]
    timestamps = [base + d for d in deltas]
    msgs = [kc.Msg(value=b"v%d" % i, key=b"k", timestamp=t) for i, t in enumerate(timestamps)]
    if layout == "single-batch":
        kc.produce_confluent(bs, topic_name, msgs, conf={"linger.ms": 200})
    else:
        for m in msgs:
            kc.produce_confluent(bs, topic_name, [m], conf={"linger.ms": 0})

    targets = [0, base, base + 50, base + 100, base + 101, base + 250, base + 300, base + 350,
               base + 999, base + 1000, base + 1300, base + 1600, base + 2000, base + 2001,
               base + 10**9]
    expected = {t: _expected(timestamps, t) for t in targets}

    for t in targets:
        exp = expected[t]
        got = confluent_offset_for_time(bs, topic_name, t)
        assert got == (-1 if exp is None else exp), f"confluent target +{t - base}: {got} != {exp}"

    lo, hi, res = kafka_python_offsets(bs, topic_name, targets)
    assert (lo, hi) == (0, 10)
    for t in targets:
        exp = expected[t]
        want = None if exp is None else (exp, timestamps[exp])
        assert res[t] == want, f"kafka-python target +{t - base}: {res[t]} != {want}"

    lo, hi, res = aiokafka_offsets(bs, topic_name, targets)
    assert (lo, hi) == (0, 10)
    for t in targets:
        exp = expected[t]
        want = None if exp is None else (exp, timestamps[exp])
        assert res[t] == want, f"aiokafka target +{t - base}: {res[t]} != {want}"

    for t in (base + 250, base + 1300, base + 2001):
        exp = expected[t]
        assert kcat_offset_for_time(bs, topic_name, t) == (-1 if exp is None else exp)


def test_earliest_latest(broker, topic_name):
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name, partitions=2)
    assert kc.watermarks(bs, topic_name, 0) == (0, 0)
    assert kc.watermarks(bs, topic_name, 1) == (0, 0)
    # empty partition: nothing has a timestamp >= anything
    assert confluent_offset_for_time(bs, topic_name, 0) == -1
    kc.produce_confluent(bs, topic_name, kc.make_messages(25), partition=0, compression="zstd")
    assert kc.watermarks(bs, topic_name, 0) == (0, 25)
    assert kc.watermarks(bs, topic_name, 1) == (0, 0)
    kc.produce_kafka_python(bs, topic_name, kc.make_messages(5, null_header_values=False),
                            partition=0)
    kc.produce_kafka_python(bs, topic_name, kc.make_messages(3, null_header_values=False),
                            partition=1)
    assert kc.watermarks(bs, topic_name, 0) == (0, 30)
    lo, hi, _ = kafka_python_offsets(bs, topic_name, [], partition=1)
    assert (lo, hi) == (0, 3)
    lo, hi, _ = aiokafka_offsets(bs, topic_name, [], partition=0)
    assert (lo, hi) == (0, 30)


def test_list_offsets_unknown_partition(broker, topic_name):
    """Querying a partition that does not exist is an error, not offset 0."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name, partitions=1)
    c = Consumer({"bootstrap.servers": bs, "group.id": kc.DUMMY_GROUP, "log_level": 3})
    try:
        with pytest.raises(KafkaException):
            c.get_watermark_offsets(TopicPartition(topic_name, 5), timeout=5, cached=False)
    finally:
        c.close()
