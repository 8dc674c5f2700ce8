"""Kafka behaviours that librdkafka's own test suite checks and that Arctern once got
wrong, each re-checked here with a real client (confluent-kafka) the way that suite does.

  * requests on one connection take effect in the order they were sent, also when their
    replies are deferred: a burst of asynchronous OffsetCommits ends with the last one
    committed (librdkafka 0030);
  * a Fetch response stays within the request's max_bytes and each partition within its
    partition_max_bytes, except that the first non-empty partition may return one batch
    larger than the limits so the consumer always progresses (KIP-74; librdkafka 0082);
  * a transactional producer fails fast and clearly while transactions are not supported.

Every assertion is what Kafka documents, so these tests pass against Apache Kafka too
(except the transactions one, which Kafka supports).
"""
from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

import kclients as kc

GCONF = {"group.initial.rebalance.delay.ms": 0}


@pytest.fixture(scope="module")
def gbroker(request, tmp_path_factory):
    from broker import Broker
    b = Broker(tmp_path_factory.mktemp("conformance-broker"), config=GCONF)
    b.start()
    yield b
    died = b.died_unexpectedly()
    if died:
        print(f"\n----- broker log -----\n{b.log_tail()}")
    b.stop()
    if died:
        pytest.fail(f"broker died during the module: rc={b.proc.returncode}")


# ------------------------------------------------------------ per-connection request order

def test_async_commits_on_one_connection_apply_in_order(gbroker, topic_name):
    """librdkafka 0030: offsets 1..N committed asynchronously in a burst on one connection;
    once every callback has reported success, the committed offset is N, never an earlier
    one that a reordered commit left behind."""
    bs = gbroker.bootstrap
    kc.create_topic(bs, topic_name, partitions=1)
    rounds, per_round = 5, 50
    for r in range(rounds):
        group = f"{topic_name}-g{r}"
        done = threading.Event()
        results: list[tuple[object, list]] = []

        def on_commit(err, partitions):
            results.append((err, partitions))
            if len(results) == per_round:
                done.set()

        c = Consumer({"bootstrap.servers": bs, "group.id": group,
                      "enable.auto.commit": False, "log_level": 3,
                      "on_commit": on_commit})
        try:
            tp = TopicPartition(topic_name, 0)
            c.assign([tp])
            # Make sure the coordinator is known, so the burst really goes out pipelined.
            c.committed([TopicPartition(topic_name, 0)], timeout=30)
            base = r * 1000
            for i in range(1, per_round + 1):
                c.commit(offsets=[TopicPartition(topic_name, 0, base + i)], asynchronous=True)
            deadline = time.monotonic() + 30
            while not done.is_set():
                assert time.monotonic() < deadline, \
                    f"only {len(results)} of {per_round} commit callbacks in 30 s"
                c.poll(0.05)
            errs = [e for e, _ in results if e is not None]
            assert not errs, f"commit callbacks reported errors: {errs[:3]}"
            for _, parts in results:
                for p in parts:
                    assert p.error is None, p
            (got,) = c.committed([TopicPartition(topic_name, 0)], timeout=30)
            assert got.offset == base + per_round, \
                f"round {r}: committed offset {got.offset}, expected {base + per_round}"
        finally:
            c.close()
