"""A queue's log gives back disk once its messages are settled: whole segments below the
oldest unsettled message are deleted, and what remains replays to the same queue after
kill -9 (unacked messages come back redelivered, acked ones never)."""
from __future__ import annotations

import time

import pika
import pytest

from test_amqp import connect, drain

pytestmark = pytest.mark.timeout(180)

# Small queue segments (64 KiB) so that a few thousand 1 KiB messages span many.
CONFIG = {"amqp.queue_segment_bytes": 65536, "amqp.max_message_size": 16384}
PERSISTENT = pika.BasicProperties(delivery_mode=2)
BODY = b"x" * 1024


def queue_segments(broker):
    """Segment files of the (only) queue log in the data dir."""
    dirs = [d for d in broker.data_dir.iterdir() if d.name.startswith("__amqp_q_")]
    assert len(dirs) == 1, dirs
    return sorted(dirs[0].glob("*.log"))


def publish(ch, queue, n):
    for i in range(n):
        ch.basic_publish("", queue, b"%06d" % i + BODY, PERSISTENT)


def ack_all(ch, queue, n, timeout=30.0):
    """Consumes n messages with manual acks (prefetch 100); returns their bodies."""
    ch.basic_qos(prefetch_count=100)
    got = []
    for m, _props, body in ch.consume(queue, inactivity_timeout=timeout):
        assert m is not None, f"only {len(got)} of {n} messages arrived"
        got.append(body)
        ch.basic_ack(m.delivery_tag)
        if len(got) == n:
            break
    ch.cancel()
    return got


def wait_segments(broker, at_most, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        segs = queue_segments(broker)
        if len(segs) <= at_most:
            return segs
        time.sleep(0.2)
    return queue_segments(broker)


def test_acked_segments_are_deleted_and_the_queue_survives_restart(broker_factory):
    b = broker_factory(CONFIG)
    conn = connect(b)
    ch = conn.channel()
    ch.queue_declare("big", durable=True)
    ch.confirm_delivery()
    publish(ch, "big", 2000)
    before = len(queue_segments(b))
    assert before >= 20, f"2 MB in 64 KiB segments, got {before}"
    got = ack_all(conn.channel(), "big", 2000)
    assert got == [b"%06d" % i + BODY for i in range(2000)]
    after = wait_segments(b, 2)
    assert len(after) <= 2, f"settled segments kept: {len(after)} of {before}"
    conn.close()

    b.restart(kill=True)
    conn = connect(b)
    ch = conn.channel()
    q = ch.queue_declare("big", durable=True, passive=True)
    assert q.method.message_count == 0, "acked messages came back"
    ch.confirm_delivery()
    ch.basic_publish("", "big", b"after", PERSISTENT)
    assert [body for _, _, body in drain(ch, "big", 1)] == [b"after"]
    conn.close()


def test_an_unacked_message_keeps_its_segment_and_what_follows(broker_factory):
    b = broker_factory(CONFIG)
    conn = connect(b)
    ch = conn.channel()
    ch.queue_declare("pinned", durable=True)
    ch.confirm_delivery()
    publish(ch, "pinned", 1000)
    before = len(queue_segments(b))

    holder = conn.channel()
    m, _, body = holder.basic_get("pinned", auto_ack=False)      # held, never acked
    assert body == b"%06d" % 0 + BODY
    got = ack_all(conn.channel(), "pinned", 999)
    assert len(got) == 999
    time.sleep(2.5)                       # two reclaim rounds
    assert len(queue_segments(b)) >= before, "a segment with an unacked message was deleted"

    b.restart(kill=True)
    conn = connect(b)
    ch = conn.channel()
    got = drain(ch, "pinned", 2, timeout=3.0)
    assert [(body, m.redelivered) for m, _, body in got] == [(b"%06d" % 0 + BODY, True)]
    # Now it is settled (auto-ack get), everything but the active segment goes.
    assert len(wait_segments(b, 2)) <= 2
    conn.close()
