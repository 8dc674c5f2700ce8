"""Thin, uniform wrappers over the real Kafka clients used by the tests:
confluent-kafka (librdkafka), kafka-python, aiokafka and the kcat CLI.

Every producer here turns idempotence OFF explicitly and uses acks=all; every consumer uses
manual partition assignment (no group membership, no offset commits).
"""
from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
import time
from dataclasses import dataclass, field

BIN_ALPHABET = bytes([0, 3, 9, 10, 13, 32, 44, 61, 92, 127, 128, 200, 254, 255])
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
CLIENTS = ["confluent", "kafka-python", "aiokafka", "kcat"]

# librdkafka / confluent-kafka: no group membership is used (manual assign), but a group.id
# is required by the Consumer constructor.
DUMMY_GROUP = "arctern-tests-unused-group"


class ProduceFailed(AssertionError):
    pass


@dataclass
class Msg:
    value: bytes | None
    key: bytes | None = None
    headers: list = field(default_factory=list)   # [(str, bytes | None)]
    timestamp: int | None = None                   # CreateTime in ms; None: client sets "now"


@dataclass
class Rec:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list
    timestamp: int
    ts_type: str | None   # "create" | "logappend" | None when the client does not say


def now_ms() -> int:
    return int(time.time() * 1000)


def make_messages(n: int, seed: int = 1, *, binary: bool = True, null_header_values: bool = True,
                  timestamps: bool = True, base_ts: int | None = None) -> list[Msg]:
    """A varied message set: null keys, null values (not both), empty values, binary and
    highly compressible values, duplicate / empty / null headers, explicit non-monotonic
    CreateTime timestamps (recent, so no retention policy can remove them)."""
    rnd = random.Random(seed)
    base_ts = base_ts if base_ts is not None else now_ms() - 3_600_000
    out = []
    for i in range(n):
        key = None if i % 7 == 3 else f"key-{i}".encode()
        if i % 10 == 0:
            value = (b"compressible-%d-" % i) * 300
        elif i % 13 == 5 and key is not None:
            value = None
        elif i % 17 == 8:
            value = b""
        elif binary:
            # binary, but from a small alphabet so that every codec actually shrinks the
            # batch (librdkafka sends a batch uncompressed when compression does not help)
            value = bytes(rnd.choice(BIN_ALPHABET) for _ in range(rnd.randrange(1, 600)))
        else:
            value = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789 -_:;.")
                            for _ in range(rnd.randrange(1, 200))).encode()
        if i % 3 == 0:
            headers = []
        elif i % 3 == 1:
            headers = [("h1", f"v1-{i}".encode())]
        else:
            headers = [("dup", b"a"), ("dup", b"b"), ("empty", b"")]
            if null_header_values:
                headers.append(("nullv", None))
        ts = None
        if timestamps:
            ts = base_ts + i * 10 - (25 if i % 5 == 3 else 0)
        out.append(Msg(value=value, key=key, headers=headers, timestamp=ts))
    return out


def kcat_messages(n: int, seed: int = 2) -> list[Msg]:
    """Messages kcat can produce: per-message key + value (no 0x01/0x02 bytes), one NULL
    value (-Z), the same headers on every message, client-side timestamps."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        key = None if i % 7 == 3 else f"kkey-{i}".encode()
        if i % 10 == 0:
            value = (b"kcat-compressible-%d " % i) * 200
        elif i % 13 == 5 and key is not None:
            value = None
        else:
            value = bytes(rnd.choice(BIN_ALPHABET) for _ in range(rnd.randrange(1, 400)))
        out.append(Msg(value=value, key=key, headers=list(KCAT_HEADERS), timestamp=None))
    return out


KCAT_HEADERS = [("hk", b"hv"), ("dup", b"1"), ("dup", b"2")]


# ----------------------------------------------------------------------------- producers

def produce_confluent(bootstrap: str, topic: str, msgs: list[Msg], partition: int = 0,
                      compression: str = "none", conf: dict | None = None,
                      timeout: float = 60) -> list[int]:
    """Produce and wait for every delivery report; return the offsets. Raises on any error."""
    from confluent_kafka import Producer
    c = {"bootstrap.servers": bootstrap, "compression.type": compression,
         "enable.idempotence": False, "acks": "all", "linger.ms": 5,
         "message.timeout.ms": int(timeout * 1000) - 5000}
    c.update(conf or {})
    p = Producer(c)
    results: list = [None] * len(msgs)

    def cb_for(i):
        def cb(err, m):
            results[i] = err if err is not None else m.offset()
        return cb

    for i, m in enumerate(msgs):
        kw = {}
        if m.timestamp is not None:
            kw["timestamp"] = m.timestamp
        if m.headers:
            kw["headers"] = list(m.headers)
        if partition is not None:
            kw["partition"] = partition
        while True:
            try:
                p.produce(topic, value=m.value, key=m.key, on_delivery=cb_for(i), **kw)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    left = p.flush(timeout)
    if left:
        raise ProduceFailed(f"confluent-kafka: {left} messages still undelivered after {timeout}s")
    errs = [(i, r) for i, r in enumerate(results) if not isinstance(r, int)]
    if errs:
        raise ProduceFailed(f"confluent-kafka: {len(errs)} delivery errors, first: {errs[0]}")
    return results


def produce_kafka_python(bootstrap: str, topic: str, msgs: list[Msg], partition: int = 0,
                         compression: str = "none", timeout: float = 60, **extra) -> list[int]:
    from kafka import KafkaProducer
    cfg = dict(bootstrap_servers=bootstrap,
               compression_type=None if compression == "none" else compression,
               enable_idempotence=False, acks="all", linger_ms=5, retries=5,
               request_timeout_ms=30000, max_block_ms=30000)
    cfg.update(extra)
    p = KafkaProducer(**cfg)
    try:
        futs = [p.send(topic, value=m.value, key=m.key, headers=list(m.headers),
                       partition=partition, timestamp_ms=m.timestamp) for m in msgs]
        p.flush(timeout)
        return [f.get(timeout=timeout).offset for f in futs]
    finally:
        p.close(timeout=10)


def produce_aiokafka(bootstrap: str, topic: str, msgs: list[Msg], partition: int = 0,
                     compression: str = "none", timeout: float = 60) -> list[int]:
    from aiokafka import AIOKafkaProducer

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=bootstrap,
                             compression_type=None if compression == "none" else compression,
                             enable_idempotence=False, acks="all", linger_ms=5,
                             request_timeout_ms=30000)
        await p.start()
        try:
            futs = [await p.send(topic, value=m.value, key=m.key, partition=partition,
                                 timestamp_ms=m.timestamp, headers=list(m.headers))
                    for m in msgs]
            mds = await asyncio.wait_for(asyncio.gather(*futs), timeout)
            return [md.offset for md in mds]
        finally:
            await p.stop()

    return asyncio.run(run())


def kcat_path() -> str:
    p = shutil.which("kcat") or shutil.which("kafkacat")
    assert p, "kcat is not installed"
    return p


def produce_kcat(bootstrap: str, topic: str, msgs: list[Msg], partition: int = 0,
                 compression: str = "none", timeout: float = 60) -> None:
    """kcat -P: messages separated by 0x01, key/value by 0x02, -Z: empty value = NULL.
    All messages must carry the same headers (kcat -H applies to every message)."""
    hdrs = msgs[0].headers if msgs else []
    parts = []
    for m in msgs:
        assert m.headers == hdrs and m.timestamp is None
        assert m.value is None or (m.value and b"\x01" not in m.value and b"\x02" not in m.value)
        v = m.value or b""
        parts.append(v if m.key is None else m.key + b"\x02" + v)
    data = b"\x01".join(parts)
    cmd = [kcat_path(), "-P", "-b", bootstrap, "-t", topic, "-p", str(partition),
           "-D", "\\x01", "-K", "\\x02", "-Z",
           "-X", f"compression.codec={compression}", "-X", "enable.idempotence=false",
           "-X", "acks=all", "-X", "linger.ms=5"]
    for k, v in hdrs:
        cmd += ["-H", f"{k}={v.decode()}"]
    r = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout)
    if r.returncode != 0 or b"ERROR" in r.stderr or b"failed" in r.stderr.lower():
        raise ProduceFailed(f"kcat -P rc={r.returncode}: {r.stderr.decode(errors='replace')}")


def produce(client: str, bootstrap: str, topic: str, msgs: list[Msg], partition: int = 0,
            compression: str = "none"):
    fn = {"confluent": produce_confluent, "kafka-python": produce_kafka_python,
          "aiokafka": produce_aiokafka, "kcat": produce_kcat}[client]
    return fn(bootstrap, topic, msgs, partition=partition, compression=compression)


# ----------------------------------------------------------------------------- consumers

def _confluent_ts_type(t: int) -> str | None:
    from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME
    return {TIMESTAMP_CREATE_TIME: "create", TIMESTAMP_LOG_APPEND_TIME: "logappend"}.get(t)


def consume_confluent(bootstrap: str, topic: str, partition: int = 0, n: int | None = None,
                      start: int | None = None, timeout: float = 60,
                      conf: dict | None = None) -> list[Rec]:
    """Read n records (or, with n=None, until the partition end (EOF at the high
    watermark)) starting at `start` (default: beginning)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
    c = {"bootstrap.servers": bootstrap, "group.id": DUMMY_GROUP,
         "enable.auto.commit": False, "enable.auto.offset.store": False,
         "enable.partition.eof": True, "auto.offset.reset": "error",
         "fetch.wait.max.ms": 100, "log_level": 3}
    c.update(conf or {})
    cons = Consumer(c)
    out: list[Rec] = []
    try:
        cons.assign([TopicPartition(topic, partition, OFFSET_BEGINNING if start is None else start)])
        deadline = time.monotonic() + timeout
        while n is None or len(out) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"confluent consumer: timed out after {len(out)} records "
                                     f"(wanted {n if n is not None else 'EOF'})")
            msgs = cons.consume(num_messages=1000, timeout=0.5)
            eof = False
            for m in msgs:
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        eof = True
                        continue
                    raise AssertionError(f"confluent consumer error: {m.error()}")
                t, ts = m.timestamp()
                out.append(Rec(m.partition(), m.offset(), m.key(), m.value(),
                               list(m.headers() or []), ts, _confluent_ts_type(t)))
            if eof and n is None:
                break
    finally:
        cons.close()
    return out


def consume_kafka_python(bootstrap: str, topic: str, partition: int = 0, n: int | None = None,
                         start: int | None = None, timeout: float = 60) -> list[Rec]:
    from kafka import KafkaConsumer, TopicPartition
    cons = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest", fetch_max_wait_ms=100,
                         request_timeout_ms=30000)
    out: list[Rec] = []
    try:
        tp = TopicPartition(topic, partition)
        cons.assign([tp])
        if start is None:
            cons.seek_to_beginning(tp)
        else:
            cons.seek(tp, start)
        end = cons.end_offsets([tp])[tp] if n is None else None
        deadline = time.monotonic() + timeout
        while (len(out) < n) if n is not None else (cons.position(tp) < end):
            if time.monotonic() > deadline:
                raise AssertionError(f"kafka-python consumer: timed out after {len(out)} records")
            for recs in cons.poll(timeout_ms=500).values():
                for r in recs:
                    out.append(Rec(r.partition, r.offset, r.key, r.value, list(r.headers or []),
                                   r.timestamp, {0: "create", 1: "logappend"}.get(r.timestamp_type)))
    finally:
        cons.close()
    return out


def consume_aiokafka(bootstrap: str, topic: str, partition: int = 0, n: int | None = None,
                     start: int | None = None, timeout: float = 60) -> list[Rec]:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    async def run():
        cons = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=100, request_timeout_ms=30000)
        await cons.start()
        out: list[Rec] = []
        try:
            tp = TopicPartition(topic, partition)
            cons.assign([tp])
            if start is None:
                await cons.seek_to_beginning(tp)
            else:
                cons.seek(tp, start)
            end = (await cons.end_offsets([tp]))[tp] if n is None else None
            deadline = time.monotonic() + timeout
            while (len(out) < n) if n is not None else ((await cons.position(tp)) < end):
                if time.monotonic() > deadline:
                    raise AssertionError(f"aiokafka consumer: timed out after {len(out)} records")
                batch = await cons.getmany(tp, timeout_ms=500)
                for recs in batch.values():
                    for r in recs:
                        out.append(Rec(r.partition, r.offset, r.key, r.value,
                                       list(r.headers or []), r.timestamp,
                                       {0: "create", 1: "logappend"}.get(r.timestamp_type)))
        finally:
            await cons.stop()
        return out

    return asyncio.run(run())


def consume_kcat(bootstrap: str, topic: str, partition: int = 0, n: int | None = None,
                 start: int | None = None, timeout: float = 60) -> list[Rec]:
    """kcat -C -e with a length-prefixed format so binary keys/values parse exactly.
    kcat prints headers as `n=v,n=v`, a NULL header value as `NULL`; header values must
    not contain `,` or newlines."""
    cmd = [kcat_path(), "-C", "-b", bootstrap, "-t", topic, "-p", str(partition),
           "-o", "beginning" if start is None else str(start), "-e", "-q",
           "-f", "%p %o %T %K %S\\n%k%s\\n%h\\n"]
    if n is not None:
        cmd += ["-c", str(n)]
    r = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise AssertionError(f"kcat -C rc={r.returncode}: {r.stderr.decode(errors='replace')}")
    return parse_kcat_output(r.stdout)


def parse_kcat_output(buf: bytes) -> list[Rec]:
    out = []
    pos = 0
    while pos < len(buf):
        nl = buf.index(b"\n", pos)
        p, o, t, klen, vlen = (int(x) for x in buf[pos:nl].split(b" "))
        pos = nl + 1
        key = None if klen < 0 else buf[pos:pos + klen]
        pos += max(klen, 0)
        val = None if vlen < 0 else buf[pos:pos + vlen]
        pos += max(vlen, 0)
        assert buf[pos:pos + 1] == b"\n", f"kcat output framing error at {pos}"
        pos += 1
        nl = buf.index(b"\n", pos)
        hline = buf[pos:nl]
        pos = nl + 1
        headers = []
        if hline:
            for item in hline.split(b","):
                k, _, v = item.partition(b"=")
                # kcat prints a NULL header value as NULL (test data never uses that text)
                headers.append((k.decode(), None if v == b"NULL" else v))
        out.append(Rec(p, o, key, val, headers, t, None))
    return out


def consume(client: str, bootstrap: str, topic: str, partition: int = 0, n: int | None = None,
            start: int | None = None, timeout: float = 60) -> list[Rec]:
    fn = {"confluent": consume_confluent, "kafka-python": consume_kafka_python,
          "aiokafka": consume_aiokafka, "kcat": consume_kcat}[client]
    return fn(bootstrap, topic, partition=partition, n=n, start=start, timeout=timeout)


# ----------------------------------------------------------------------------- checks

def _norm_headers(h, null_as_empty: bool):
    return [(k, (b"" if v is None and null_as_empty else (bytes(v) if v is not None else None)))
            for k, v in h]


def assert_same_records(expected: list[Msg], got: list[Rec], *, base_offset: int = 0,
                        null_header_as_empty: bool = False, ts_window: tuple[int, int] | None = None,
                        who: str = ""):
    """Byte-identical key/value/headers, same CreateTime, same order, contiguous offsets."""
    assert len(got) == len(expected), f"{who}: got {len(got)} records, expected {len(expected)}"
    offs = [r.offset for r in got]
    assert offs == list(range(base_offset, base_offset + len(expected))), \
        f"{who}: offsets not contiguous from {base_offset}: {offs[:10]}..."
    for i, (m, r) in enumerate(zip(expected, got)):
        ctx = f"{who}: record #{i} (offset {r.offset})"
        assert r.key == m.key, f"{ctx}: key {r.key!r} != {m.key!r}"
        assert r.value == m.value, \
            f"{ctx}: value differs (len {None if r.value is None else len(r.value)} vs " \
            f"{None if m.value is None else len(m.value)})"
        assert _norm_headers(r.headers, null_header_as_empty) == \
            _norm_headers(m.headers, null_header_as_empty), f"{ctx}: headers {r.headers!r} != {m.headers!r}"
        if m.timestamp is not None:
            assert r.timestamp == m.timestamp, f"{ctx}: timestamp {r.timestamp} != {m.timestamp}"
        elif ts_window is not None:
            assert ts_window[0] - 1000 <= r.timestamp <= ts_window[1] + 1000, \
                f"{ctx}: timestamp {r.timestamp} outside produce window {ts_window}"
        if r.ts_type is not None:
            assert r.ts_type == "create", f"{ctx}: timestamp type {r.ts_type}, expected CreateTime"


# ----------------------------------------------------------------------------- admin

def admin_client(bootstrap: str):
    from confluent_kafka.admin import AdminClient
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})


def topic_partitions(bootstrap: str, topic: str, timeout: float = 10) -> int | None:
    """Partition count per Metadata, or None if the topic is not listed."""
    md = admin_client(bootstrap).list_topics(timeout=timeout)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return None
    return len(t.partitions)


def wait_topic(bootstrap: str, topic: str, partitions: int | None = None, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        n = topic_partitions(bootstrap, topic)
        if n is not None and (partitions is None or n == partitions):
            return n
        if time.monotonic() > deadline:
            raise AssertionError(f"topic {topic} not visible in metadata with {partitions} "
                                 f"partitions after {timeout}s (saw {n})")
        time.sleep(0.1)


def create_topic(bootstrap: str, name: str, partitions: int = 1, config: dict | None = None,
                 timeout: float = 30) -> None:
    from confluent_kafka.admin import NewTopic
    a = admin_client(bootstrap)
    fs = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                   config=config or {})],
                         operation_timeout=timeout, request_timeout=timeout)
    fs[name].result(timeout)
    wait_topic(bootstrap, name, partitions)


def watermarks(bootstrap: str, topic: str, partition: int = 0, timeout: float = 10):
    """(earliest, latest) via ListOffsets."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": DUMMY_GROUP,
                  "enable.auto.commit": False, "log_level": 3})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout,
                                       cached=False)
    finally:
        c.close()
