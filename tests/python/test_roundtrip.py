"""Produce with each client and each compression codec; read back with every client.

Checks byte-identical keys, values (incl. NULL and empty), headers (order, duplicates,
empty and NULL values), explicit CreateTime timestamps, order and contiguous offsets.
Also checks via a raw Fetch that the broker keeps the batch exactly as the producer
compressed it (topic compression.type=producer, Kafka's default)."""
from __future__ import annotations

import re
import subprocess

import pytest

import kclients as kc
import kwire

N = 120

CODEC_ID = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def _messages(producer: str) -> list[kc.Msg]:
    if producer == "kcat":
        return kc.kcat_messages(N)
    # kafka-python refuses NULL header values on the producer side
    return kc.make_messages(N, seed=10 + kc.CLIENTS.index(producer),
                            null_header_values=producer != "kafka-python")


def _api_versions(bs: str) -> dict:
    with kwire.Conn(bs) as c:
        r = kwire.parse_api_versions_v0(c.roundtrip(kwire.api_versions_v0(1)))
    return {k: (lo, hi) for k, lo, hi in r["api_keys"]}


def _kcat_librdkafka_version() -> tuple:
    out = subprocess.run([kc.kcat_path(), "-V"], capture_output=True, text=True).stdout
    m = re.search(r"librdkafka (\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in m.groups()) if m else (0, 0, 0)


def _expected_codec_on_wire(producer: str, codec: str, bs: str) -> str:
    """librdkafka before 2.12 (kcat 1.7.1 ships 2.0.2) only uses gzip/snappy/lz4 if the
    broker advertises Produce v0, which Kafka 4.x no longer does (KIP-896): it then sends
    those batches uncompressed. That is the client's choice, and the same happens against
    Apache Kafka 4.x, so it is expected here too."""
    if producer == "kcat" and codec in ("gzip", "snappy", "lz4"):
        produce_min = _api_versions(bs).get(kwire.API_PRODUCE, (0, 0))[0]
        if produce_min > 0 and _kcat_librdkafka_version() < (2, 12, 0):
            return "none"
    return codec


def _lz4_hint(producer: str, codec: str, bs: str) -> str:
    if producer in ("confluent", "kcat") and codec == "lz4" and 10 not in _api_versions(bs):
        return (" -- librdkafka enables LZ4 only if the broker advertises FindCoordinator "
                "(api key 10) v0 in ApiVersions (rdkafka_feature.c); it is not advertised, so "
                "librdkafka logs 'Broker does not support compression type lz4: not "
                "compressing batch'")
    return ""


def _raw_batches(bootstrap: str, topic: str) -> list[dict]:
    out = []
    offset = 0
    with kwire.Conn(bootstrap) as c:
        for corr in range(1, 200):
            resp = kwire.parse_fetch_v4(c.roundtrip(kwire.fetch_v4(corr, topic, 0, offset)))
            p = resp["partitions"][(topic, 0)]
            assert p["error_code"] == 0, p
            batches = kwire.parse_record_batches(p["records"])
            if not batches:
                break
            out += batches
            offset = batches[-1]["base_offset"] + batches[-1]["last_offset_delta"] + 1
            if offset >= p["high_watermark"]:
                break
    return out


@pytest.mark.parametrize("codec", kc.CODECS)
@pytest.mark.parametrize("producer", kc.CLIENTS)
def test_produce_consume_roundtrip(shared_broker, topic_name, producer, codec):
    bs = shared_broker.bootstrap
    kc.create_topic(bs, topic_name, partitions=1)
    msgs = _messages(producer)
    t0 = kc.now_ms()
    offsets = kc.produce(producer, bs, topic_name, msgs, partition=0, compression=codec)
    t1 = kc.now_ms()
    if offsets is not None:       # kcat does not report offsets
        assert offsets == list(range(N)), f"{producer}: acked offsets {offsets[:10]}..."

    for consumer in kc.CLIENTS:
        got = kc.consume(consumer, bs, topic_name, partition=0, n=N)
        kc.assert_same_records(msgs, got, base_offset=0, ts_window=(t0, t1),
                               who=f"{producer}/{codec} -> {consumer}")

    # Stored as sent: every batch the broker serves has a valid CRC and carries the
    # producer's codec (Kafka: topic compression.type defaults to "producer").
    batches = _raw_batches(bs, topic_name)
    assert batches, "raw Fetch returned no record batches"
    assert all(b["magic"] == 2 for b in batches)
    assert all(b["crc_ok"] for b in batches), "a fetched batch failed CRC32C"
    want = _expected_codec_on_wire(producer, codec, bs)
    codecs = [b["compression"] for b in batches]
    # kafka-python sends a batch uncompressed when compressing it saves nothing
    # (DefaultRecordBatchBuilder._maybe_compress): a small last batch can be.
    allowed = {CODEC_ID[want]} | ({CODEC_ID["none"]} if producer == "kafka-python" else set())
    assert set(codecs) <= allowed and CODEC_ID[want] in codecs, \
        f"batches carry codecs {codecs}, producer asked for " \
        f"{codec}, expected {want} on the wire" + _lz4_hint(producer, want, bs)
    assert batches[-1]["base_offset"] + batches[-1]["last_offset_delta"] == N - 1

    # A second round appends after the first, offsets continue.
    more = _messages(producer)[:10]
    kc.produce(producer, bs, topic_name, more, partition=0, compression=codec)
    got = kc.consume("confluent", bs, topic_name, partition=0, start=N, n=10)
    kc.assert_same_records(more, got, base_offset=N, who=f"{producer}/{codec} second round")


def test_multi_partition_keys_and_offsets(shared_broker, topic_name):
    """Three partitions, explicit partition per record: each partition has its own dense
    offsets starting at 0 and holds exactly the records sent to it, in order."""
    bs = shared_broker.bootstrap
    kc.create_topic(bs, topic_name, partitions=3)
    msgs = kc.make_messages(90, seed=7)
    per_part = {p: msgs[p::3] for p in range(3)}
    for p, ms in per_part.items():
        kc.produce_confluent(bs, topic_name, ms, partition=p, compression="lz4")
    for p, ms in per_part.items():
        got = kc.consume_kafka_python(bs, topic_name, partition=p, n=len(ms))
        kc.assert_same_records(ms, got, base_offset=0, who=f"partition {p}")
        assert kc.watermarks(bs, topic_name, p) == (0, len(ms))


def test_large_record_roundtrip(shared_broker, topic_name):
    """A ~900 KB record (under the default 1 MB message.max.bytes) round-trips intact."""
    import os
    bs = shared_broker.bootstrap
    kc.create_topic(bs, topic_name)
    big = kc.Msg(value=os.urandom(900_000), key=b"big", headers=[("h", b"1")],
                 timestamp=kc.now_ms() - 1000)
    kc.produce_confluent(bs, topic_name, [big], compression="none")
    for consumer in ("confluent", "kafka-python", "aiokafka"):
        got = kc.consume(consumer, bs, topic_name, n=1)
        kc.assert_same_records([big], got, who=consumer)


def test_long_poll_fetch_returns_new_data(shared_broker, topic_name):
    """A Fetch waiting at the end of the log (max_wait 5 s) is answered as soon as a record
    arrives, not only after max_wait."""
    import threading
    import time

    bs = shared_broker.bootstrap
    kc.create_topic(bs, topic_name)
    kc.produce_confluent(bs, topic_name, [kc.Msg(value=b"first")])
    result = {}

    def fetch():
        with kwire.Conn(bs, timeout=20) as c:
            t = time.monotonic()
            resp = kwire.parse_fetch_v4(c.roundtrip(kwire.fetch_v4(1, topic_name, 0, 1,
                                                                   max_wait_ms=5000)))
            result["elapsed"] = time.monotonic() - t
            result["resp"] = resp

    th = threading.Thread(target=fetch)
    th.start()
    time.sleep(0.5)
    kc.produce_confluent(bs, topic_name, [kc.Msg(value=b"second")])
    th.join(30)
    p = result["resp"]["partitions"][(topic_name, 0)]
    assert p["error_code"] == 0
    batches = kwire.parse_record_batches(p["records"])
    assert batches and batches[0]["base_offset"] == 1, p
    assert result["elapsed"] < 4.0, f"long poll answered only after {result['elapsed']:.1f}s"


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_consume_from_middle_of_compressed_batch(shared_broker, topic_name, codec):
    """Fetch at an offset inside a compressed batch: Kafka serves the whole batch and the
    client skips the records before the requested offset."""
    bs = shared_broker.bootstrap
    kc.create_topic(bs, topic_name)
    msgs = kc.make_messages(100, seed=21)
    kc.produce_confluent(bs, topic_name, msgs, compression=codec, conf={"linger.ms": 100})
    assert len(_raw_batches(bs, topic_name)) < 5, "expected a few large batches"
    for consumer in kc.CLIENTS:
        got = kc.consume(consumer, bs, topic_name, start=37, n=63)
        kc.assert_same_records(msgs[37:], got, base_offset=37, who=f"{consumer} from 37")


def test_concurrent_producers_same_partition(shared_broker, topic_name):
    """Four producers write to one partition at once (acks=all): offsets are dense, each
    record is stored once, each producer's records keep their order, and every delivery
    report's offset holds that record."""
    import threading

    bs = shared_broker.bootstrap
    kc.create_topic(bs, topic_name)
    per = 5000
    results, errors = {}, []

    def run(pid):
        try:
            msgs = [kc.Msg(value=b"%d:%06d" % (pid, i)) for i in range(per)]
            results[pid] = kc.produce_confluent(bs, topic_name, msgs,
                                                compression=kc.CODECS[pid % 5],
                                                conf={"batch.num.messages": 100})
        except Exception as e:      # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(pid,)) for pid in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    recs = kc.consume_confluent(bs, topic_name, conf={"check.crcs": True})
    assert [r.offset for r in recs] == list(range(4 * per))
    by_off = {r.offset: r.value for r in recs}
    assert len(set(by_off.values())) == 4 * per, "a record is stored twice"
    for pid, offs in results.items():
        assert offs == sorted(offs), f"producer {pid}: acked offsets out of order"
        for i, off in enumerate(offs):
            assert by_off[off] == b"%d:%06d" % (pid, i)
