"""Idempotent producer (KIP-98): a retried batch is stored once.

The client-level tests put produce_proxy.DroppingProxy between the producer and the
broker: it lets the broker store a batch and then swallows the response and drops the
connection, so the client retries a batch the broker already has. With idempotence on
(librdkafka `enable.idempotence=true`, kafka-python's and aiokafka's idempotent producers)
every record must be stored exactly once and in order; with it off, the same proxy must
produce duplicates (the negative control that shows the test can see them).

The protocol-level tests build batches by hand (kwire) to check the broker's sequence
rules: a retried batch is acknowledged at its original offset, a gap gets
OUT_OF_ORDER_SEQUENCE_NUMBER, an older epoch INVALID_PRODUCER_EPOCH, and the producer
state survives kill -9 of a single node and a leader failover on a cluster.
"""
from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import kclients as kc
import kwire
from produce_proxy import DroppingProxy

pytestmark = pytest.mark.idempotence

OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47
INVALID_RECORD = 87
NOT_LEADER_OR_FOLLOWER = 6


# ----------------------------------------------------------------------------- helpers

def proxied_broker(broker_factory, drop_every: int, max_drops: int | None = None):
    """A broker advertising a response-dropping proxy in front of it."""
    proxy = DroppingProxy(upstream_port=0, drop_every=drop_every, max_drops=max_drops)
    b = broker_factory({"advertised.listeners": f"PLAINTEXT://{proxy.address}"}, start=False)
    proxy.upstream_port = b.port
    b.start()
    return b, proxy


def read_values(bootstrap: str, topic: str, expect_at_least: int, timeout: float = 60):
    """Every record value of partition 0, in offset order, read until the high watermark."""
    _, end = kc.watermarks(bootstrap, topic)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "idem-reader",
                  "enable.auto.commit": False, "log_level": 0})
    c.assign([TopicPartition(topic, 0, 0)])
    out: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while (not out or out[-1][0] < end - 1) and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            out.append((m.offset(), m.value()))
    finally:
        c.close()
    assert end >= expect_at_least, f"log end {end} < {expect_at_least} records sent"
    assert out and out[-1][0] == end - 1, f"read {len(out)} records, log end {end}"
    return [v for _, v in out]


def produce_through_proxy(proxy_addr: str, topic: str, n: int, idempotent: bool) -> dict:
    acked, failed = {}, {}

    def on_delivery(err, msg):
        i = int(msg.value())
        if err is None:
            acked[i] = msg.offset()
        else:
            failed[i] = err

    p = Producer({"bootstrap.servers": proxy_addr, "enable.idempotence": idempotent,
                  "acks": "all", "retries": 1_000_000, "retry.backoff.ms": 50,
                  "linger.ms": 2, "batch.num.messages": 50, "log_level": 0,
                  "max.in.flight.requests.per.connection": 5})
    for i in range(n):
        while True:
            try:
                p.produce(topic, str(i).encode(), on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    remaining = p.flush(120)
    assert remaining == 0, f"{remaining} records never delivered"
    assert not failed, f"delivery failures: {list(failed.items())[:5]}"
    return acked


# ----------------------------------------------------------------------------- client tests

def test_librdkafka_idempotent_retries_store_every_record_once(broker_factory):
    b, proxy = proxied_broker(broker_factory, drop_every=7)
    try:
        kc.create_topic(b.bootstrap, "idem")
        n = 5000
        acked = produce_through_proxy(proxy.address, "idem", n, idempotent=True)
        assert proxy.dropped > 0, "the proxy dropped no produce response"
        values = read_values(b.bootstrap, "idem", n)
        got = [int(v) for v in values]
        assert got == list(range(n)), (
            f"not exactly once in order: {len(got)} records for {n} sent; "
            f"first mismatch at {next((i for i, (a, e) in enumerate(zip(got, range(n))) if a != e), None)}")
        # Each acknowledged offset holds that record.
        assert all(acked[i] == i for i in range(n))
    finally:
        proxy.close()


def test_without_idempotence_the_same_retries_duplicate(broker_factory):
    """Negative control: the proxy's lost responses do create duplicates without KIP-98."""
    b, proxy = proxied_broker(broker_factory, drop_every=7)
    try:
        kc.create_topic(b.bootstrap, "dups")
        n = 3000
        produce_through_proxy(proxy.address, "dups", n, idempotent=False)
        assert proxy.dropped > 0
        got = [int(v) for v in read_values(b.bootstrap, "dups", n)]
        duplicates = len(got) - len(set(got))
        assert set(got) == set(range(n)), "a record is missing altogether"
        assert duplicates > 0, "expected duplicates from retries without idempotence"
        print(f"{duplicates} duplicates from {proxy.dropped} lost produce responses")
    finally:
        proxy.close()


def test_kafka_python_idempotent_by_default(broker_factory):
    from kafka import KafkaProducer
    b, proxy = proxied_broker(broker_factory, drop_every=3, max_drops=20)
    try:
        kc.create_topic(b.bootstrap, "kp-idem")
        p = KafkaProducer(bootstrap_servers=proxy.address, linger_ms=2,
                          request_timeout_ms=10000, retry_backoff_ms=50)
        assert p.config["enable_idempotence"], "kafka-python's default changed"
        n = 1000
        futures = []
        for i in range(n):
            futures.append(p.send("kp-idem", str(i).encode(), partition=0))
            if i % 40 == 39:
                p.flush(60)     # many small produce requests, so some responses are lost
        p.flush(120)
        offsets = [f.get(timeout=60).offset for f in futures]
        p.close()
        assert proxy.dropped > 0
        assert offsets == list(range(n))
        got = [int(v) for v in read_values(b.bootstrap, "kp-idem", n)]
        assert got == list(range(n))
    finally:
        proxy.close()


def test_aiokafka_idempotent(broker_factory):
    import asyncio

    from aiokafka import AIOKafkaProducer
    b, proxy = proxied_broker(broker_factory, drop_every=3, max_drops=20)

    async def run(n):
        p = AIOKafkaProducer(bootstrap_servers=proxy.address, enable_idempotence=True,
                             linger_ms=2, request_timeout_ms=10000, retry_backoff_ms=50)
        await p.start()
        try:
            futs = []
            for i in range(n):
                futs.append(await p.send("aio-idem", str(i).encode(), partition=0))
                if i % 40 == 39:
                    await p.flush()     # many small produce requests
            return [(await f).offset for f in futs]
        finally:
            await p.stop()

    try:
        kc.create_topic(b.bootstrap, "aio-idem")
        n = 1000
        offsets = asyncio.run(run(n))
        assert proxy.dropped > 0
        assert offsets == list(range(n))
        got = [int(v) for v in read_values(b.bootstrap, "aio-idem", n)]
        assert got == list(range(n))
    finally:
        proxy.close()


# ----------------------------------------------------------------------------- protocol rules

class RawProducer:
    """Hand-built idempotent produce requests over one connection."""

    def __init__(self, bootstrap: str, topic: str):
        self.conn = kwire.Conn(bootstrap)
        self.topic = topic
        self.corr = 0
        r = kwire.parse_init_producer_id_v0(self.conn.roundtrip(
            kwire.init_producer_id_v0(self._next())))
        assert r["error_code"] == 0, r
        self.pid, self.epoch = r["producer_id"], r["producer_epoch"]
        assert self.pid >= 0 and self.epoch == 0

    def _next(self) -> int:
        self.corr += 1
        return self.corr

    def send(self, seq: int, count: int = 1, epoch: int | None = None, tag: str = "") -> dict:
        recs = [(None, f"{tag}{seq + i}".encode(), []) for i in range(count)]
        batch = kwire.record_batch(recs, int(time.time() * 1000), producer_id=self.pid,
                                   producer_epoch=self.epoch if epoch is None else epoch,
                                   base_sequence=seq)
        return self.send_raw([batch])

    def send_to_leader(self, seq: int, count: int = 1, timeout: float = 15) -> dict:
        """send(), retried while the node has not taken leadership yet (as clients do on
        NOT_LEADER_OR_FOLLOWER)."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.send(seq, count)
            if r["error_code"] != NOT_LEADER_OR_FOLLOWER or time.monotonic() > deadline:
                return r
            time.sleep(0.2)

    def send_raw(self, batches: list[bytes]) -> dict:
        payload = self.conn.roundtrip(kwire.produce_v3(self._next(), self.topic, 0,
                                                       b"".join(batches)))
        return kwire.parse_produce_v3(payload)["partitions"][(self.topic, 0)]

    def close(self):
        self.conn.close()


def test_sequence_rules(broker_factory):
    b = broker_factory()
    kc.create_topic(b.bootstrap, "seq")
    p = RawProducer(b.bootstrap, "seq")
    try:
        assert p.send(0, 3) == dict(error_code=0, base_offset=0, log_append_time=-1)
        assert p.send(3, 2)["base_offset"] == 3
        # A retry of either batch is acknowledged at its original offset, not written.
        assert p.send(0, 3) == dict(error_code=0, base_offset=0, log_append_time=-1)
        assert p.send(3, 2)["base_offset"] == 3
        # A gap: the batch at sequence 5 is missing.
        assert p.send(6, 1)["error_code"] == OUT_OF_ORDER_SEQUENCE_NUMBER
        assert p.send(5, 1)["base_offset"] == 5
        # A zombie with an older epoch is fenced once a newer epoch has written.
        assert p.send(0, 1, epoch=1)["base_offset"] == 6
        assert p.send(6, 1, epoch=0)["error_code"] == INVALID_PRODUCER_EPOCH
        # A new epoch must restart at sequence 0.
        assert p.send(4, 1, epoch=2)["error_code"] == OUT_OF_ORDER_SEQUENCE_NUMBER
        # Two batches of one producer in one partition's records: Kafka refuses (v3+).
        two = [kwire.record_batch([(None, b"x", [])], 0, producer_id=p.pid, producer_epoch=1,
                                  base_sequence=s) for s in (1, 2)]
        assert p.send_raw(two)["error_code"] == INVALID_RECORD
        # Two ids from InitProducerId differ.
        q = RawProducer(b.bootstrap, "seq")
        assert q.pid != p.pid
        q.close()
    finally:
        p.close()
    assert kc.watermarks(b.bootstrap, "seq") == (0, 7)


def test_producer_state_survives_kill9(broker_factory):
    b = broker_factory()
    kc.create_topic(b.bootstrap, "seq-crash")
    p = RawProducer(b.bootstrap, "seq-crash")
    for seq in range(0, 30, 3):
        assert p.send(seq, 3)["error_code"] == 0
    p.close()
    b.kill()
    b.start()
    kc.wait_topic(b.bootstrap, "seq-crash", 1)
    p.conn = kwire.Conn(b.bootstrap)
    try:
        # The last batches are still recognised as duplicates after the crash...
        assert p.send(27, 3) == dict(error_code=0, base_offset=27, log_append_time=-1)
        assert p.send(24, 3)["base_offset"] == 24
        # ...the sequence continues where the log ends, and gaps are still refused.
        assert p.send(31, 1)["error_code"] == OUT_OF_ORDER_SEQUENCE_NUMBER
        assert p.send(30, 1)["base_offset"] == 30
        # Producer ids are never handed out twice, across restarts too.
        q = RawProducer(b.bootstrap, "seq-crash")
        assert q.pid != p.pid
        q.close()
    finally:
        p.close()
    assert kc.watermarks(b.bootstrap, "seq-crash") == (0, 31)


@pytest.mark.replication
def test_producer_state_on_new_leader_after_failover(cluster_factory):
    c = cluster_factory(3)
    (st,) = c.create_topic("seq-fail", partitions=1, rf=3, config={"min.insync.replicas": 2})
    leader = c.node(st.leader)
    p = RawProducer(leader.bootstrap, "seq-fail")
    for seq in range(0, 12, 3):
        assert p.send_to_leader(seq, 3)["error_code"] == 0
    pid = p.pid
    p.close()
    leader.kill()
    new = c.wait_leader("seq-fail", not_in=[st.leader], timeout=30)
    p.conn = kwire.Conn(c.node(new.leader).bootstrap)
    try:
        # acks=all put every batch on the ISR, so the new leader knows the sequences.
        assert p.send_to_leader(9, 3) == dict(error_code=0, base_offset=9, log_append_time=-1)
        assert p.send(13, 1)["error_code"] == OUT_OF_ORDER_SEQUENCE_NUMBER
        assert p.send(12, 1)["base_offset"] == 12
        q = RawProducer(c.node(new.leader).bootstrap, "seq-fail")
        assert q.pid != pid, "a producer id was handed out twice"
        q.close()
    finally:
        p.close()
