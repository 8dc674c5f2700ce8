"""Kafka behaviours that librdkafka's own test suite checks and that Arctern once got
wrong, each re-checked here with a real client (confluent-kafka) the way that suite does.

  * requests on one connection take effect in the order they were sent, also when their
    replies are deferred: a burst of asynchronous OffsetCommits ends with the last one
    committed (librdkafka 0030);
  * a Fetch response stays within the request's max_bytes and each partition within its
    partition_max_bytes, except that the first non-empty partition may return one batch
    larger than the limits so the consumer always progresses (KIP-74; librdkafka 0082);
  * the offset-commit matrix of librdkafka 0030 (auto / manual commit, auto / manual
    offset store, sync / async) commits, reports and resumes at the right offsets;
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


def test_offset_fetch_sees_the_commits_sent_before_it(gbroker, topic_name):
    """Requests on a connection take effect in the order sent, also when replies are
    deferred: committed() (OffsetFetch) sent right after a burst of asynchronous commits,
    on the same coordinator connection and without waiting for their callbacks, returns
    the last commit, as from Kafka (which reads a connection's next request only after
    answering the previous one)."""
    bs = gbroker.bootstrap
    kc.create_topic(bs, topic_name, partitions=1)
    for r in range(5):
        c = Consumer({"bootstrap.servers": bs, "group.id": f"{topic_name}-g{r}",
                      "enable.auto.commit": False, "log_level": 3})
        try:
            c.assign([TopicPartition(topic_name, 0)])
            c.committed([TopicPartition(topic_name, 0)], timeout=30)   # coordinator known
            for i in range(1, 51):
                c.commit(offsets=[TopicPartition(topic_name, 0, i)], asynchronous=True)
            (got,) = c.committed([TopicPartition(topic_name, 0)], timeout=30)
            assert got.offset == 50, f"round {r}: committed() returned {got.offset}"
        finally:
            c.close()


OFFSET_MODES = {
    # name: (enable.auto.commit, enable.auto.offset.store, async commit, subscribe)
    "auto-commit-auto-store": (True, True, False, True),
    "manual-async-auto-store": (False, True, True, True),
    "auto-commit-auto-store-assign": (True, True, False, False),
    "auto-commit-manual-store": (True, False, False, True),
    "manual-sync-auto-store": (False, True, False, True),
    "manual-async-manual-store": (False, False, True, True),
    "manual-sync-manual-store": (False, False, False, True),
}


@pytest.fixture(scope="module")
def offsets_topic(gbroker):
    topic = f"conformance-offsets-{time.monotonic_ns()}"
    kc.create_topic(gbroker.bootstrap, topic, partitions=1)
    p = Producer({"bootstrap.servers": gbroker.bootstrap, "log_level": 3})
    for i in range(100):
        p.produce(topic, b"m%03d" % i, partition=0)
    assert p.flush(30) == 0
    return topic


@pytest.mark.parametrize("mode", list(OFFSET_MODES))
def test_offset_commit_matrix(gbroker, offsets_topic, mode):
    """librdkafka 0030 do_offset_test: consume half of 100 messages storing and committing
    as the mode says, then 5 more; every commit callback reports an offset at least the
    last one (never an older offset re-committed), committed() returns the last stored
    offset, and a new consumer of the group resumes exactly there."""
    auto_commit, auto_store, asynchronous, subscribe = OFFSET_MODES[mode]
    bs, topic, msgcnt, extra = gbroker.bootstrap, offsets_topic, 100, 5
    state = {"expected": 0, "committed": -1, "errors": []}

    def on_commit(err, parts):
        if err is not None and err.code() == -168:      # _NO_OFFSET: nothing to commit
            return
        if err is not None:
            state["errors"].append(err)
            return
        for tp in parts:
            if tp.topic != topic:
                continue
            if tp.error is not None:
                state["errors"].append(tp.error)
            elif tp.offset > state["expected"]:
                state["errors"].append(f"committed {tp.offset} > expected {state['expected']}")
            elif tp.offset < state["committed"]:
                state["errors"].append(f"old offset {tp.offset} committed after "
                                       f"{state['committed']}")
            else:
                state["committed"] = tp.offset

    conf = {"bootstrap.servers": bs, "group.id": f"{topic}-{mode}", "log_level": 3,
            "session.timeout.ms": 6000, "enable.auto.commit": auto_commit,
            "enable.auto.offset.store": auto_store, "auto.commit.interval.ms": 500,
            "auto.offset.reset": "earliest", "on_commit": on_commit}

    def start(c):
        if subscribe:
            c.subscribe([topic])
        else:
            c.assign([TopicPartition(topic, 0)])

    c = Consumer(conf)
    start(c)
    cnt, next_offset = 0, -1
    deadline = time.monotonic() + 60
    while cnt - extra < msgcnt // 2:
        assert time.monotonic() < deadline, f"only {cnt} messages in 60 s"
        m = c.poll(1.0)
        if m is None:
            continue
        assert m.error() is None, m.error()
        next_offset = m.offset() + 1
        if cnt < msgcnt // 2:
            if not auto_store:
                c.store_offsets(message=m)
            state["expected"] = m.offset() + 1
            if not auto_commit and asynchronous:
                c.commit(message=m, asynchronous=True)
            elif not auto_commit:
                # confluent-kafka returns a synchronous commit's result instead of
                # calling on_commit (librdkafka's C API calls the callback).
                on_commit(None, c.commit(message=m, asynchronous=False))
        elif auto_store and auto_commit:
            state["expected"] = m.offset() + 1
        cnt += 1
    parts = c.assignment()
    (pos,) = c.position(parts)
    assert pos.offset == next_offset
    c.pause(parts)
    if not auto_commit and not asynchronous:
        c.poll(0)
        assert state["committed"] == state["expected"], state
    else:
        deadline = time.monotonic() + 30
        while state["committed"] < state["expected"]:
            assert time.monotonic() < deadline, f"commits stuck: {state}"
            c.poll(0.2)
    assert not state["errors"], state["errors"][:3]
    (got,) = c.committed([TopicPartition(topic, 0)], timeout=10)
    assert got.offset == state["expected"]
    c.close()

    # Phase 2: a new consumer of the group resumes at the committed offset.
    c = Consumer({k: v for k, v in conf.items() if k != "on_commit"})
    start(c)
    expected = state["expected"]
    deadline = time.monotonic() + 60
    while cnt < msgcnt:
        assert time.monotonic() < deadline, f"phase 2: only {cnt} of {msgcnt} in 60 s"
        m = c.poll(1.0)
        if m is None:
            continue
        assert m.error() is None, m.error()
        assert m.offset() == expected, f"resumed at {m.offset()}, expected {expected}"
        expected += 1
        cnt += 1
    c.close()


def test_commit_to_unknown_topic(gbroker):
    """librdkafka 0030 do_nonexist_commit: committing offsets of a topic that does not
    exist fails with UNKNOWN_TOPIC_OR_PART for each partition."""
    topic = f"no-such-topic-{time.monotonic_ns()}"
    c = Consumer({"bootstrap.servers": gbroker.bootstrap, "group.id": f"{topic}-g",
                  "log_level": 3, "session.timeout.ms": 60000})
    try:
        with pytest.raises(KafkaException) as ei:
            c.commit(offsets=[TopicPartition(topic, 0, 123), TopicPartition(topic, 1, 456)],
                     asynchronous=False)
        assert ei.value.args[0].code() == 3, ei.value      # UNKNOWN_TOPIC_OR_PART
    finally:
        c.close()


# ------------------------------------------------------------------- fetch size (KIP-74)

BIG = 900 * 1024          # librdkafka 0082: "less than 1 Meg to account for batch overhead"


def _produce_big(bs: str, topic: str, partitions: int, per_partition: int) -> dict:
    """per_partition ~900 KiB messages to each partition (one message per batch, as
    librdkafka sends them); returns {(partition, offset): payload tag}."""
    # librdkafka's defaults (message.max.bytes = batch.size = 1000000) put one such
    # message in each batch.
    p = Producer({"bootstrap.servers": bs, "log_level": 3, "linger.ms": 5})
    sent = {}
    failures = []

    def cb(err, m):
        if err is not None:
            failures.append(err)
        else:
            sent[(m.partition(), m.offset())] = m.value()[:16]

    for part in range(partitions):
        for i in range(per_partition):
            tag = f"p{part:02d}-m{i:04d}-".encode()
            p.produce(topic, tag + bytes([i % 251]) * (BIG - len(tag)), partition=part,
                      on_delivery=cb)
            p.poll(0)
    assert p.flush(60) == 0, "messages still unsent after 60 s"
    assert not failures, failures[:3]
    assert len(sent) == partitions * per_partition
    return sent


def _consume_all(bs: str, topic: str, expect: int, conf: dict, timeout: float = 60) -> dict:
    c = Consumer({"bootstrap.servers": bs, "group.id": f"{topic}-{time.monotonic_ns()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "log_level": 3, **conf})
    got = {}
    errors = []
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(got) < expect and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error() is not None:
                errors.append(m.error())
                continue
            got[(m.partition(), m.offset())] = m.value()[:16]
    finally:
        c.close()
    assert not errors, f"consume errors: {errors[:3]}"
    return got


@pytest.mark.parametrize("conf", [
    # librdkafka 0082 exactly: a 20 MB partition limit but a 1 MB response limit, and a
    # receive buffer only 512 bytes above it (a larger response drops the connection).
    {"fetch.max.bytes": 1_000_000, "max.partition.fetch.bytes": 20_000_000,
     "receive.message.max.bytes": 1_000_512},
    # A partition limit smaller than one message: the first batch still comes whole.
    {"fetch.max.bytes": 1_000_000, "max.partition.fetch.bytes": 10_000,
     "receive.message.max.bytes": 1_000_512},
], ids=["fetch-max-bytes", "small-partition-max-bytes"])
def test_fetch_response_respects_fetch_max_bytes(gbroker, topic_name, conf):
    """librdkafka 0082 (KIP-74): ~900 KiB messages on 3 partitions, consumed with
    fetch.max.bytes=1000000. Every message arrives; a response carrying two of them would
    exceed receive.message.max.bytes and the consumer would never progress."""
    bs = gbroker.bootstrap
    kc.create_topic(bs, topic_name, partitions=3)
    sent = _produce_big(bs, topic_name, partitions=3, per_partition=4)
    got = _consume_all(bs, topic_name, len(sent), conf)
    missing = sorted(set(sent) - set(got))
    assert not missing, f"{len(missing)} of {len(sent)} messages never arrived: {missing[:5]}"
    assert got == sent


def test_small_fetch_message_max_bytes_still_gets_large_messages(gbroker, topic_name):
    """librdkafka 0041 (scaled down): small messages, then messages five times
    fetch.message.max.bytes, on one partition; every message arrives in order (a batch
    larger than the partition limit comes alone, as the first of its response)."""
    bs, max_bytes = gbroker.bootstrap, 100_000
    kc.create_topic(bs, topic_name, partitions=1)
    p = Producer({"bootstrap.servers": bs, "log_level": 3, "linger.ms": 5})
    values = [b"s%04d" % i + b"x" * (max_bytes // 10) for i in range(100)]
    values += [b"L%04d" % i + b"y" * (max_bytes * 5) for i in range(20)]
    for v in values:
        p.produce(topic_name, v, partition=0)
    assert p.flush(60) == 0
    c = Consumer({"bootstrap.servers": bs, "group.id": f"{topic_name}-g", "log_level": 3,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "fetch.message.max.bytes": max_bytes})
    got = []
    try:
        c.assign([TopicPartition(topic_name, 0, 0)])
        deadline = time.monotonic() + 60
        while len(got) < len(values) and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is None, m.error()
            got.append((m.offset(), m.value()[:5]))
    finally:
        c.close()
    assert got == [(i, v[:5]) for i, v in enumerate(values)]


def _fetch_v4_multi(corr: int, topic: str, parts: list[tuple[int, int, int]],
                    max_bytes: int) -> bytes:
    """Fetch v4 for several (partition, offset, partition_max_bytes) of one topic."""
    from kwire import array, i8, i32, i64, request, string, API_FETCH
    body = (i32(-1) + i32(0) + i32(1) + i32(max_bytes) + i8(0)
            + array([string(topic) + array([i32(p) + i64(o) + i32(pm)
                                            for p, o, pm in parts])]))
    return request(API_FETCH, 4, corr, body)


def test_fetch_size_bounds_raw(gbroker, topic_name):
    """KIP-74 on the wire: the record bytes of a response stay within max_bytes, and each
    partition's within its partition_max_bytes, except that the first non-empty partition
    returns its first batch whole when it alone is larger than the limits."""
    import kwire
    bs = gbroker.bootstrap
    kc.create_topic(bs, topic_name, partitions=3)
    _produce_big(bs, topic_name, partitions=3, per_partition=2)
    with kwire.Conn(bs) as conn:
        def fetch(parts, max_bytes):
            r = kwire.parse_fetch_v4(conn.roundtrip(
                _fetch_v4_multi(7, topic_name, parts, max_bytes)))
            out = {}
            for (_, p), d in r["partitions"].items():
                assert d["error_code"] == 0, (p, d["error_code"])
                batches = kwire.parse_record_batches(d["records"])
                assert sum(12 + b["length"] for b in batches) == len(d["records"]), \
                    "a partial batch was returned"
                out[p] = batches
            return out

        def total(out):
            return sum(12 + b["length"] for bs_ in out.values() for b in bs_)

        # 1 MB response limit, 20 MB partition limits: one batch from partition 0 only.
        out = fetch([(0, 0, 20_000_000), (1, 0, 20_000_000), (2, 0, 20_000_000)], 1_000_000)
        assert [len(out[p]) for p in (0, 1, 2)] == [1, 0, 0]
        assert total(out) <= 1_000_000
        # A response limit below one batch: the first batch of the first partition anyway.
        out = fetch([(0, 0, 20_000_000), (1, 0, 20_000_000)], 1000)
        assert [len(out[p]) for p in (0, 1)] == [1, 0]
        # Partition limits below one batch: only the first non-empty partition gets one.
        out = fetch([(0, 2, 1000), (1, 0, 1000), (2, 0, 1000)], 50_000_000)
        assert [len(out[p]) for p in (0, 1, 2)] == [0, 1, 0], \
            "partition 0 is empty at offset 2, so partition 1 is the first non-empty one"
        # Room for three batches in total, at most one per partition by its own limit.
        out = fetch([(0, 0, 1_000_000), (1, 0, 1_000_000), (2, 0, 1_000_000)], 3_000_000)
        assert [len(out[p]) for p in (0, 1, 2)] == [1, 1, 1]
        assert total(out) <= 3_000_000
        # Room for two and a half: the third partition gets nothing.
        out = fetch([(0, 0, 2_500_000), (1, 0, 2_500_000), (2, 0, 2_500_000)], 2_500_000)
        assert [len(out[p]) for p in (0, 1, 2)] == [2, 0, 0]


# ------------------------------------------------------------- a JoinGroup that blocks

def test_blocked_join_does_not_break_the_group(gbroker, topic_name):
    """librdkafka 0093 (head-of-line blocking): a second consumer's JoinGroup waits ~10 s
    for the first consumer, which does not poll meanwhile; the join runs alone on its
    connection (as in Kafka), and with socket.timeout.ms=3000 nothing times out, the
    rebalances are the expected ones and all 100 messages are consumed."""
    bs = gbroker.bootstrap
    kc.create_topic(bs, topic_name, partitions=1)
    p = Producer({"bootstrap.servers": bs, "log_level": 3})
    for i in range(100):
        p.produce(topic_name, b"%d" % i, partition=0)
    assert p.flush(30) == 0
    rebalances = [0, 0]
    consumed = [0, 0]

    def consumer(i):
        def on_assign(c, parts):
            rebalances[i] += 1

        def on_revoke(c, parts):
            rebalances[i] += 1
        c = Consumer({"bootstrap.servers": bs, "group.id": f"{topic_name}-g", "log_level": 3,
                      "session.timeout.ms": 6000, "max.poll.interval.ms": 20000,
                      "socket.timeout.ms": 3000, "auto.offset.reset": "earliest",
                      "topic.metadata.refresh.interval.ms": 500})
        return c, on_assign, on_revoke

    def poll(c, i, sleep_s):
        m = c.poll(0.1 + sleep_s)
        if m is None:
            return
        assert m.error() is None, f"consumer {i}: {m.error()}"
        consumed[i] += 1
        if sleep_s:
            time.sleep(sleep_s)

    c0, a0, r0 = consumer(0)
    c1, a1, r1 = consumer(1)
    try:
        c0.subscribe([topic_name], on_assign=a0, on_revoke=r0)
        deadline = time.monotonic() + 30
        while not c0.assignment():
            assert time.monotonic() < deadline, "consumer 0 got no assignment"
            poll(c0, 0, 1)
        poll(c0, 0, 5)
        c1.subscribe([topic_name], on_assign=a1, on_revoke=r1)
        poll(c1, 1, 10)   # its join completes only once consumer 0 polls again
        deadline = time.monotonic() + 60
        while sum(consumed) < 100:
            assert time.monotonic() < deadline, f"consumed {consumed} in 60 s"
            poll(c0, 0, 0)
            poll(c1, 1, 0)
        assert rebalances[0] <= 3 and rebalances[1] <= 1, rebalances
    finally:
        c0.close()
        c1.close()


# ------------------------------------------------------------------------- transactions

def test_transactional_producer_fails_fast(gbroker):
    """Transactions are not supported: init_transactions() fails at once with a fatal,
    clearly worded error instead of retrying until its timeout."""
    p = Producer({"bootstrap.servers": gbroker.bootstrap, "log_level": 3,
                  "transactional.id": f"txn-{time.monotonic_ns()}"})
    start = time.monotonic()
    with pytest.raises(KafkaException) as ei:
        p.init_transactions(10)
    elapsed = time.monotonic() - start
    err = ei.value.args[0]
    assert elapsed < 5, f"init_transactions() took {elapsed:.1f} s to fail (timeout 10 s)"
    assert err.fatal(), err
    assert "transactions are not supported" in err.str().lower(), err.str()
