"""Restart without load: clean shutdown (SIGTERM / SIGINT) and kill -9 after the writes were
acknowledged. Data, topics and topic configs survive; appends continue at the right offset;
ListOffsets (incl. by timestamp) and Fetch from the middle work on the recovered log."""
from __future__ import annotations

import signal

import pytest

import kclients as kc


def _seed_topics(bs, topic):
    """Two topics, several batches with different codecs; returns {(topic, p): [Msg]}."""
    kc.create_topic(bs, topic, partitions=1, config={"retention.ms": "86400000"})
    kc.create_topic(bs, topic + "-3p", partitions=3)
    data = {}
    msgs = []
    for j, codec in enumerate(kc.CODECS):
        batch = kc.make_messages(40, seed=100 + j, base_ts=kc.now_ms() - 3_600_000 + j * 1000)
        kc.produce_confluent(bs, topic, batch, compression=codec)
        msgs += batch
    data[(topic, 0)] = msgs
    for p in range(3):
        ms = kc.make_messages(30, seed=200 + p)
        kc.produce_confluent(bs, topic + "-3p", ms, partition=p, compression="snappy")
        data[(topic + "-3p", p)] = ms
    return data


def _check(bs, data):
    for (t, p), msgs in data.items():
        assert kc.watermarks(bs, t, p) == (0, len(msgs)), (t, p)
        got = kc.consume_confluent(bs, t, partition=p, conf={"check.crcs": True})
        kc.assert_same_records(msgs, got, who=f"{t}[{p}] after restart")


def _append_more(bs, data):
    for (t, p), msgs in data.items():
        more = kc.make_messages(5, seed=999)
        offs = kc.produce_confluent(bs, t, more, partition=p)
        assert offs == list(range(len(msgs), len(msgs) + 5)), f"{t}[{p}] appended at {offs}"
        msgs += more


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "SIGKILL"])
def test_restart_keeps_data(broker, topic_name, how):
    bs = broker.bootstrap
    data = _seed_topics(bs, topic_name)
    if how == "SIGKILL":
        broker.kill()
    else:
        sig = signal.SIGTERM if how == "SIGTERM" else signal.SIGINT
        broker.stopped_by_us = True
        broker.proc.send_signal(sig)
        try:
            rc = broker.proc.wait(15)
        except Exception:
            broker.kill()
            pytest.fail(f"broker did not exit within 15s of {how}")
        assert rc == 0, f"broker exit code {rc} after {how} (expected a clean exit)"
    broker.start()
    _check(bs, data)
    from test_admin import describe
    assert describe(bs, topic_name)["retention.ms"].value == "86400000"
    assert kc.topic_partitions(bs, topic_name + "-3p") == 3
    _append_more(bs, data)
    broker.restart(kill=True)
    _check(bs, data)


def test_repeated_restarts(broker, topic_name):
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name)
    all_msgs = []
    for cycle in range(6):
        ms = kc.make_messages(50, seed=cycle, base_ts=kc.now_ms() - 1000)
        offs = kc.produce_confluent(bs, topic_name, ms, compression=kc.CODECS[cycle % 5])
        assert offs == list(range(len(all_msgs), len(all_msgs) + 50)), f"cycle {cycle}: {offs[:3]}"
        all_msgs += ms
        broker.restart(kill=cycle % 2 == 0)
    got = kc.consume_confluent(bs, topic_name)
    kc.assert_same_records(all_msgs, got)


def test_restart_with_many_segments(broker, topic_name):
    """1 MiB segments (Kafka's minimum segment.bytes), ~3.5 MiB of data: the recovered
    log serves fetches from the middle and timestamp lookups in every segment."""
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name, config={"segment.bytes": str(1 << 20)})
    base = kc.now_ms() - 3_600_000
    msgs = [kc.Msg(value=b"%08d" % i + b"." * 240, key=b"%d" % i, timestamp=base + i)
            for i in range(14000)]
    kc.produce_confluent(bs, topic_name, msgs, compression="none",
                         conf={"batch.num.messages": 500})
    broker.restart(kill=True)
    assert kc.watermarks(bs, topic_name) == (0, len(msgs))
    for start in (0, 3333, 7001, 13999):
        got = kc.consume_confluent(bs, topic_name, start=start, n=min(50, len(msgs) - start))
        kc.assert_same_records(msgs[start:start + len(got)], got, base_offset=start)
    from test_list_offsets import confluent_offset_for_time
    for target in (0, 1, 4000, 9999, 13999):
        assert confluent_offset_for_time(bs, topic_name, base + target) == target
    assert confluent_offset_for_time(bs, topic_name, base + 14000) == -1
    offs = kc.produce_confluent(bs, topic_name, [kc.Msg(value=b"after")])
    assert offs == [len(msgs)]


def test_fresh_data_dir_is_created(broker_factory, topic_name):
    b = broker_factory(start=False)
    assert not b.data_dir.exists()
    b.start()
    kc.create_topic(b.bootstrap, topic_name)
    kc.produce_confluent(b.bootstrap, topic_name, [kc.Msg(value=b"x")])
    assert b.data_dir.is_dir()


@pytest.mark.timeout(300)
def test_sigterm_under_load(broker, topic_name):
    """SIGTERM while an acks=all producer is sending: the broker exits cleanly, and after a
    restart every acknowledged record is there, once, at its acknowledged offset."""
    import time

    from confluent_kafka import Producer
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name)
    p = Producer({"bootstrap.servers": bs, "acks": "all", "enable.idempotence": False,
                  "linger.ms": 2, "batch.num.messages": 100, "log_level": 0,
                  "max.in.flight.requests.per.connection": 1,
                  "message.timeout.ms": 5000, "retries": 0})
    acked = {}

    def cb(err, m):
        if err is None:
            acked[int(m.value())] = m.offset()

    t_end = time.monotonic() + 1.0
    i = 0
    while time.monotonic() < t_end:
        try:
            p.produce(topic_name, value=b"%d" % i, on_delivery=cb)
            i += 1
        except BufferError:
            pass
        p.poll(0)
    assert acked, "nothing acknowledged before the shutdown"
    broker.stopped_by_us = True
    broker.proc.send_signal(signal.SIGTERM)
    rc = broker.proc.wait(20)
    p.flush(10)
    assert rc == 0, f"exit code {rc} after SIGTERM under load"
    broker.start()
    recs = kc.consume_confluent(bs, topic_name)
    assert [r.offset for r in recs] == list(range(len(recs)))
    vals = [int(r.value) for r in recs]
    assert vals == sorted(vals) and len(set(vals)) == len(vals), "reordered or duplicated"
    for v, off in acked.items():
        assert off < len(vals) and vals[off] == v, f"acked {v}@{off} missing after restart"
    print(f"sent {i}, acked {len(acked)}, stored {len(vals)}")


@pytest.mark.parametrize("tail", ["garbage", "partial-batch", "bad-crc-batch", "zeros"])
def test_torn_tail_is_truncated(broker, topic_name, tail):
    """After a crash the end of the active segment may hold a torn write. Like Kafka's
    recovery of an uncleanly shut down log, the broker must drop the invalid tail, keep
    every complete valid batch, and append after it. (Kafka's on-disk layout is assumed:
    <data-dir>/<topic>-<partition>/<base offset>.log.)"""
    import os

    import kwire
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name)
    msgs = kc.make_messages(50, seed=5)
    kc.produce_confluent(bs, topic_name, msgs, compression="zstd", conf={"linger.ms": 0,
                                                                        "batch.num.messages": 7})
    broker.kill()
    segs = sorted((broker.data_dir / f"{topic_name}-0").glob("*.log"))
    assert segs, f"no segment files under {broker.data_dir}/{topic_name}-0"
    ts = kc.now_ms()
    batch = kwire.record_batch([(b"k", b"torn-write", [])], ts, base_offset=50)
    junk = {"garbage": os.urandom(100),
            "partial-batch": batch[:len(batch) // 2],
            "bad-crc-batch": kwire.record_batch([(b"k", b"torn-write", [])], ts,
                                                base_offset=50, corrupt_crc=True),
            "zeros": b"\0" * 4096}[tail]
    with open(segs[-1], "ab") as f:
        f.write(junk)
    broker.start()
    assert kc.watermarks(bs, topic_name) == (0, 50)
    kc.assert_same_records(msgs, kc.consume_confluent(bs, topic_name, conf={"check.crcs": True}))
    assert kc.produce_confluent(bs, topic_name, [kc.Msg(value=b"after", timestamp=ts)]) == [50]
    broker.restart(kill=True)
    got = kc.consume_confluent(bs, topic_name, conf={"check.crcs": True})
    kc.assert_same_records(msgs + [kc.Msg(value=b"after", timestamp=ts)], got)
