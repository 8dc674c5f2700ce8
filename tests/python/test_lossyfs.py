"""A power cut under a real broker, on the project's lose-unsynced filesystem (lossyfs).

The broker's data dir is an arctern-lossyfs mount: whatever the broker has not fsynced (file
data) or whose directory it has not fsynced (names) is pending, and `drop` discards all of it,
as a power cut would. kill -9 alone keeps the page cache, so it cannot tell a broker that
fsyncs before acking from one that does not; this can.

  * acks=all with Arctern's default flush.messages=1: every acknowledged record survives
    kill -9 + drop + restart, at its acknowledged offset, byte for byte;
  * negative control: a topic with flush.messages high (fsync relaxed, Kafka's topic
    config) loses acknowledged records under the same cut. If it lost nothing, the cut
    would not be a real test.

The broker is killed (and reaped) BEFORE the drop, so that nothing it does after the cut
can write or fsync: the order of a real power cut, where the process dies with the disk's
cache. Needs /dev/fuse and root; skipped otherwise. LOSSYFS_BIN points at the binary
(default: arctern-lossyfs next to ARCTERN_BIN)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from confluent_kafka import Producer

import kclients as kc
from lossy import Lossyfs, lossyfs_bin


@pytest.fixture
def lossyfs_factory(tmp_path):
    if not Path("/dev/fuse").exists() or os.geteuid() != 0:
        pytest.skip("lossyfs needs /dev/fuse and root")
    if not lossyfs_bin().is_file():
        pytest.skip(f"{lossyfs_bin()} not built (cargo build -p arctern-lossyfs, or set LOSSYFS_BIN)")
    made: list[Lossyfs] = []

    def make(mountpoint: Path) -> Lossyfs:
        fs = Lossyfs(tmp_path / f"backing{len(made)}", mountpoint, tmp_path / f"lossyfs{len(made)}.log")
        made.append(fs)
        return fs

    yield make
    for fs in made:
        fs.close()


def produce_acked(bootstrap: str, topic: str, n: int) -> dict[int, bytes]:
    """n records with acks=all; returns offset -> value for every acknowledged one."""
    acked: dict[int, bytes] = {}
    errors: list[str] = []

    def on_delivery(err, msg):
        if err is None:
            acked[msg.offset()] = msg.value()
        else:
            errors.append(str(err))

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2,
                  "batch.num.messages": 100, "log_level": 3})
    for i in range(n):
        p.produce(topic, value=f"{topic}-{i:06d}".encode(), partition=0, on_delivery=on_delivery)
        p.poll(0)
    assert p.flush(60) == 0
    assert not errors, errors[:5]
    return acked


def read_all(bootstrap: str, topic: str) -> dict[int, bytes]:
    return {r.offset: r.value for r in kc.consume_confluent(bootstrap, topic, timeout=60)}


def test_acknowledged_records_survive_a_power_cut_and_relaxed_fsync_loses_some(
        broker_factory, lossyfs_factory):
    b = broker_factory(start=False)
    fs = lossyfs_factory(b.data_dir)
    try:
        b.start()
        kc.create_topic(b.bootstrap, "durable")
        kc.create_topic(b.bootstrap, "relaxed", config={"flush.messages": "1000000"})
        n = 3000
        durable = produce_acked(b.bootstrap, "durable", n)
        relaxed = produce_acked(b.bootstrap, "relaxed", n)
        assert len(durable) == n and len(relaxed) == n
        pending = fs.status()

        b.kill()            # the process dies with the cut ...
        fs.drop()           # ... and so does everything it had not fsynced
        b.start(timeout=60)

        got = read_all(b.bootstrap, "durable")
        lost = {o: v for o, v in durable.items() if got.get(o) != v}
        assert not lost, f"{len(lost)} of {n} acknowledged records lost, e.g. {sorted(lost)[:5]}"
        assert sorted(got) == list(range(n))

        # Negative control: relaxed fsync acknowledged what it had not made durable.
        got_relaxed = read_all(b.bootstrap, "relaxed")
        lost_relaxed = sum(1 for o, v in relaxed.items() if got_relaxed.get(o) != v)
        print(f"pending before the cut: {pending}; relaxed topic lost {lost_relaxed} of {n}")
        assert pending["pending_bytes"] > 0
        assert lost_relaxed > 0, "the negative control lost nothing: the power cut is not real"

        # And the broker keeps working on the same mount after recovery.
        more = produce_acked(b.bootstrap, "durable", 10)
        assert sorted(more) == list(range(n, n + 10))
    finally:
        b.stop()


def test_amqp_messages_delivered_before_a_power_cut_come_back_redelivered(
        broker_factory, lossyfs_factory):
    """Regression (found by the fault harness, power-cut-amqp): delivery marks are written
    lazily, so a power cut within ~100 ms of a delivery dropped them and the message came
    back with redelivered=false. The durable delivery horizon flags it. A clean restart
    keeps the exact marks: messages never delivered come back unflagged."""
    import pika

    b = broker_factory(start=False)
    fs = lossyfs_factory(b.data_dir)

    def channel():
        conn = pika.BlockingConnection(pika.ConnectionParameters(
            host=b.host, port=b.amqp_port, heartbeat=0))
        return conn, conn.channel()

    try:
        b.start()
        conn, ch = channel()
        ch.queue_declare("horizon", durable=True)
        ch.confirm_delivery()
        for i in range(200):
            ch.basic_publish("", "horizon", b"m%03d" % i, pika.BasicProperties(delivery_mode=2))
        ch.basic_qos(prefetch_count=50)
        got = []
        for method, _props, body in ch.consume("horizon", inactivity_timeout=10):
            assert method is not None, "deliveries stopped"
            assert not method.redelivered
            got.append(body)
            if len(got) == 50:
                break
        b.kill()            # at once: the lazy delivery marks are still unsynced
        fs.drop()
        b.start(timeout=60)

        conn, ch = channel()
        again = []
        for _ in range(50):
            method, _props, body = ch.basic_get("horizon")
            assert method is not None
            again.append((body, method.redelivered))
            ch.basic_ack(method.delivery_tag)
        assert [body for body, _ in again] == got
        unflagged = [body for body, flagged in again if not flagged]
        assert not unflagged, f"delivered before the cut, redelivered=false after: {unflagged}"
        conn.close()

        b.stop()            # a clean shutdown keeps every mark: no guessing after it
        b.start(timeout=60)
        conn, ch = channel()
        rest = []
        while (r := ch.basic_get("horizon", auto_ack=True))[0] is not None:
            rest.append((r[2], r[0].redelivered))
        assert [body for body, _ in rest] == [b"m%03d" % i for i in range(50, 200)]
        assert not any(flagged for _, flagged in rest), \
            "never delivered, yet flagged redelivered after a clean restart"
        conn.close()
    finally:
        b.stop()
