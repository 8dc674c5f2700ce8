#!/usr/bin/env python3
"""Seed corpora for the cargo-fuzz targets (fuzz/corpus/<target>/) from real clients.

Starts a broker (ARCTERN_BIN, as the Python tests do) behind a tiny recording TCP proxy per
protocol, runs confluent-kafka (admin, idempotent and plain produce in every codec,
group consume with commits) and pika (declares with arguments, confirmed publishes with
properties, consume/ack, get, qos, transactions) through it, and writes every
client->broker frame as one seed file named by its hash:

  kafka_request   each Kafka request frame, size prefix included
  amqp_frame      each AMQP frame (plus the protocol header + first frames of a connection)
  record_batch    each stored record batch of the broker's segments (as clients sent them,
                  offsets assigned)
  log_recovery    the broker's segment files (capped at 64 KiB, cut at a batch boundary),
                  behind the target's mode byte
  metadata_frame  the broker's Raft log journal, and its records' payloads (with the target's
                  selector byte in front)

Usage: ARCTERN_BIN=path/to/arctern scripts/fuzz-seed.py [--out fuzz/corpus]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import socket
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "python"))
from broker import Broker, free_port  # noqa: E402

MAX_SEED = 64 * 1024


class Corpus:
    def __init__(self, root: Path):
        self.root = root
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def add(self, target: str, data: bytes) -> None:
        if not data or len(data) > MAX_SEED:
            return
        d = self.root / target
        d.mkdir(parents=True, exist_ok=True)
        p = d / hashlib.sha1(data).hexdigest()[:16]
        with self.lock:
            if not p.exists():
                p.write_bytes(data)
                self.counts[target] = self.counts.get(target, 0) + 1


def kafka_frames(buf: bytearray):
    while len(buf) >= 4:
        (n,) = struct.unpack(">i", buf[:4])
        if len(buf) < 4 + n:
            return
        yield bytes(buf[: 4 + n])
        del buf[: 4 + n]


def amqp_frames(buf: bytearray, state: dict):
    if not state.get("header"):
        if len(buf) < 8:
            return
        state["header"] = bytes(buf[:8])
        del buf[:8]
    while len(buf) >= 7:
        (n,) = struct.unpack(">I", buf[3:7])
        if len(buf) < 8 + n:
            return
        yield bytes(buf[: 8 + n])
        del buf[: 8 + n]


class Proxy:
    """Forwards 127.0.0.1:port to the broker; records what clients send."""

    def __init__(self, upstream: int, kind: str, corpus: Corpus):
        self.upstream, self.kind, self.corpus = upstream, kind, corpus
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:  # the broker is gone (a client reconnecting at the end)
                c.close()
                continue
            threading.Thread(target=self.pump, args=(c, u, True), daemon=True).start()
            threading.Thread(target=self.pump, args=(u, c, False), daemon=True).start()

    def pump(self, src, dst, record):
        buf, state, first = bytearray(), {}, []
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
                if not record:
                    continue
                buf += data
                if self.kind == "kafka":
                    for f in kafka_frames(buf):
                        self.corpus.add("kafka_request", f)
                else:
                    for f in amqp_frames(buf, state):
                        self.corpus.add("amqp_frame", f)
                        if len(first) < 6:
                            first.append(f)
                            if len(first) == 6:
                                self.corpus.add("amqp_frame", state["header"] + b"".join(first))
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def kafka_workload(bootstrap: str) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = ["seed-a", "seed-b"]
    for f in admin.create_topics([NewTopic(t, 2, 1) for t in topics]).values():
        f.result(20)
    for f in admin.describe_configs([ConfigResource("topic", "seed-a")]).values():
        f.result(20)
    admin.list_topics(timeout=20)
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
        p = Producer({"bootstrap.servers": bootstrap, "compression.type": codec,
                      "enable.idempotence": codec in ("none", "zstd"), "linger.ms": 5})
        for i in range(50):
            p.produce("seed-a", key=f"k{i}".encode(), value=(f"{codec} value {i} " * (1 + i % 5)).encode(),
                      headers=[("h", b"v"), ("n", None)] if i % 7 == 0 else None, partition=i % 2)
        p.flush(30)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "seed-group",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "isolation.level": "read_committed"})
    c.subscribe(topics)
    got, deadline = 0, time.time() + 30
    while got < 250 and time.time() < deadline:
        m = c.poll(1.0)
        if m is not None and not m.error():
            got += 1
            if got % 50 == 0:
                c.commit(m, asynchronous=False)
    c.committed([TopicPartition("seed-a", 0)], timeout=10)
    c.close()
    admin.create_partitions([NewPartitions("seed-b", 3)])["seed-b"].result(20)
    admin.list_consumer_groups().result(20)
    for f in admin.delete_topics(["seed-b"]).values():
        f.result(20)


def amqp_workload(port: int) -> None:
    import pika

    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.exchange_declare("seed-topic", "topic", durable=True)
    ch.exchange_declare("seed-headers", "headers", arguments={"alternate-exchange": "seed-topic"})
    ch.queue_declare("seed-q", durable=True, arguments={
        "x-message-ttl": 60000, "x-max-length": 1000, "x-overflow": "reject-publish",
        "x-dead-letter-exchange": "seed-topic", "x-dead-letter-routing-key": "dead",
        "x-max-priority": 5, "x-queue-type": "classic"})
    ch.queue_bind("seed-q", "seed-topic", "a.*.#")
    ch.queue_bind("seed-q", "seed-headers", "", arguments={"x-match": "any", "k": "v", "n": 1})
    props = pika.BasicProperties(content_type="text/plain", content_encoding="utf-8",
                                 headers={"k": "v", "n": 1, "l": [1, "a"], "t": {"x": True, "big": 2**40}},
                                 delivery_mode=2, priority=3, correlation_id="c1", reply_to="r",
                                 expiration="30000", message_id="m1", timestamp=1700000000,
                                 type="t", user_id="guest", app_id="seed")
    for i in range(20):
        ch.basic_publish("seed-topic", f"a.b.{i}", f"body {i}".encode() * (1 + i), props)
    ch.basic_publish("seed-headers", "", b"headers body", props)
    ch.basic_publish("", "seed-q", b"x" * 200_000, pika.BasicProperties(delivery_mode=2))
    ch.basic_qos(prefetch_count=10)
    ch.basic_get("seed-q", auto_ack=False)
    n = 0
    for method, _p, _b in ch.consume("seed-q", inactivity_timeout=2):
        if method is None:
            break
        n += 1
        if n % 3 == 0:
            ch.basic_nack(method.delivery_tag, requeue=False)
        else:
            ch.basic_ack(method.delivery_tag)
    ch.cancel()
    tx = conn.channel()
    tx.tx_select()
    tx.basic_publish("", "seed-q", b"tx committed")
    tx.tx_commit()
    tx.basic_publish("", "seed-q", b"tx rolled back")
    tx.tx_rollback()
    tx.queue_purge("seed-q")
    tx.queue_unbind("seed-q", "seed-topic", "a.*.#")
    tx.exchange_delete("seed-headers")
    tx.queue_delete("seed-q")
    conn.close()


def storage_seeds(data_dir: Path, corpus: Corpus) -> None:
    for log in sorted(data_dir.rglob("*.log")):
        b = log.read_bytes()
        pos, cut = 0, 0
        while pos + 12 <= len(b):
            (n,) = struct.unpack(">i", b[pos + 8:pos + 12])
            if n <= 0 or pos + 12 + n > len(b):
                break
            batch = b[pos:pos + 12 + n]
            corpus.add("record_batch", b"\x00" + batch)  # the target's mode byte
            corpus.add("record_batch", b"\x01" + batch)
            pos += 12 + n
            if pos <= MAX_SEED:
                cut = pos
        if cut:
            # The target's first byte: 0 = bytes as stored, 1 = CRCs rewritten.
            corpus.add("log_recovery", b"\x00" + b[:cut])
            corpus.add("log_recovery", b"\x01" + b[:cut])
    for journal in data_dir.rglob("raft-log"):
        b = journal.read_bytes()
        corpus.add("metadata_frame", b"\x01" + b[:MAX_SEED - 1])
        pos = 0
        while pos + 8 <= len(b):
            (n,) = struct.unpack("<I", b[pos:pos + 4])
            payload = b[pos + 8:pos + 8 + n]
            corpus.add("metadata_frame", b"\x02" + payload)
            corpus.add("metadata_frame", b"\x01" + b[pos:pos + 8 + n])
            pos += 8 + n


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "fuzz" / "corpus"))
    args = ap.parse_args()
    corpus = Corpus(Path(args.out))
    with tempfile.TemporaryDirectory(prefix="arctern-fuzz-seed-") as tmp:
        kafka_port = free_port()
        broker = Broker(Path(tmp), port=kafka_port)
        kproxy = Proxy(kafka_port, "kafka", corpus)
        broker.config["advertised.listeners"] = f"PLAINTEXT://127.0.0.1:{kproxy.port}"
        from broker import write_config
        broker.config_path = write_config(broker.workdir / "arctern.toml", broker.config)
        broker.start()
        aproxy = Proxy(broker.amqp_port, "amqp", corpus)
        try:
            kafka_workload(f"127.0.0.1:{kproxy.port}")
            amqp_workload(aproxy.port)
            time.sleep(1)
        finally:
            broker.stop()
        storage_seeds(broker.data_dir, corpus)
    for t, n in sorted(corpus.counts.items()):
        print(f"{t}: {n} new seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
