"""Retention deletes whole old segments, by size (`retention.bytes`) and by time
(`retention.ms`), as Kafka does: the log start offset moves forward, consumers starting
from the earliest offset get the retained records only, and new appends are unaffected."""
from __future__ import annotations

import time

import kclients as kc

CHECK_EVERY_MS = 300


def wait_for(cond, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_retention_bytes_deletes_oldest_segments(broker_factory, topic_name):
    b = broker_factory({"log.retention.check.interval.ms": CHECK_EVERY_MS})
    bs = b.bootstrap
    seg, keep = 256 * 1024, 1024 * 1024
    kc.create_topic(bs, topic_name, config={"segment.bytes": str(seg), "retention.bytes": str(keep)})
    msgs = [kc.Msg(value=b"%06d" % i + b"x" * 994) for i in range(3000)]  # ~3 MB
    # Batches must fit in a segment (else RECORD_LIST_TOO_LARGE, as in Kafka).
    kc.produce_confluent(bs, topic_name, msgs, conf={"batch.size": 64 * 1024})
    lo = wait_for(lambda: kc.watermarks(bs, topic_name)[0] or None, 20, "log start to advance")
    lo, hi = kc.watermarks(bs, topic_name)
    assert hi == 3000 and 0 < lo < hi
    # Kept: at least retention.bytes worth, at most that plus one segment (plus the active).
    kept_bytes = (hi - lo) * 1000
    assert keep * 0.8 <= kept_bytes <= (keep + 2 * seg) * 1.2, (lo, hi)
    recs = kc.consume_confluent(bs, topic_name)
    assert [r.offset for r in recs] == list(range(lo, hi))
    assert all(r.value == msgs[r.offset].value for r in recs)
    more = kc.produce_confluent(bs, topic_name, [kc.Msg(value=b"after")])
    assert more == [hi]


def test_retention_ms_expires_everything_old(broker_factory, topic_name):
    b = broker_factory({"log.retention.check.interval.ms": CHECK_EVERY_MS})
    bs = b.bootstrap
    kc.create_topic(bs, topic_name, config={"retention.ms": "1000"})
    old = int(time.time() * 1000) - 60_000
    kc.produce_confluent(bs, topic_name, [kc.Msg(value=b"old-%d" % i, timestamp=old) for i in range(50)])
    # Everything is older than retention.ms: even the active segment is rolled and deleted.
    wait_for(lambda: kc.watermarks(bs, topic_name)[0] == 50, 20, "expired records to be deleted")
    assert kc.watermarks(bs, topic_name) == (50, 50)
    offs = kc.produce_confluent(bs, topic_name, [kc.Msg(value=b"new")])
    assert offs == [50]
    recs = kc.consume_confluent(bs, topic_name)
    assert [(r.offset, r.value) for r in recs] == [(50, b"new")]
