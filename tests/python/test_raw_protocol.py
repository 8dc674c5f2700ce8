"""Hand-made bytes on a raw socket: garbage frames, oversized frames, corrupted CRCs,
unsupported ApiVersions, acks=0, pipelining. After each, the broker must keep serving a
normal client, and what it stored before must be intact."""
from __future__ import annotations

import socket
import struct

import pytest

import kclients as kc
import kwire

CORRUPT_MESSAGE = 2
UNSUPPORTED_VERSION = 35


@pytest.fixture
def seeded(broker, topic_name):
    """A broker with a topic holding 20 known records (mixed codecs)."""
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name)
    msgs = kc.make_messages(10, seed=3)
    kc.produce_confluent(bs, topic_name, msgs, compression="gzip")
    more = kc.make_messages(10, seed=4)
    kc.produce_confluent(bs, topic_name, more, compression="zstd")
    return broker, topic_name, msgs + more


def assert_healthy(broker, topic, expected: list[kc.Msg]):
    """Stored records intact, and a normal client can still produce and read."""
    bs = broker.bootstrap
    assert broker.running(), f"broker exited: rc={broker.proc.returncode}\n{broker.log_tail()}"
    got = kc.consume_confluent(bs, topic)
    kc.assert_same_records(expected, got, who="after bad input")
    extra = kc.Msg(value=b"still-serving", key=b"k", timestamp=kc.now_ms())
    kc.produce_confluent(bs, topic, [extra])
    got = kc.consume_confluent(bs, topic, start=len(expected))
    kc.assert_same_records([extra], got, base_offset=len(expected), who="new append")


def test_api_versions_v0(broker):
    with kwire.Conn(broker.bootstrap) as c:
        r = kwire.parse_api_versions_v0(c.roundtrip(kwire.api_versions_v0(42)))
    assert r["correlation_id"] == 42
    assert r["error_code"] == 0
    assert r["trailing"] == 0
    keys = {k: (lo, hi) for k, lo, hi in r["api_keys"]}
    for k, lo, hi in r["api_keys"]:
        assert 0 <= lo <= hi, (k, lo, hi)
    # the versions this suite speaks by hand must be advertised
    for api, v in ((kwire.API_PRODUCE, 3), (kwire.API_FETCH, 4), (kwire.API_METADATA, 4),
                   (kwire.API_API_VERSIONS, 0)):
        assert api in keys and keys[api][0] <= v <= keys[api][1], (api, keys.get(api))
    for api in (2, 19, 20, 32, 37, 44):   # ListOffsets, Create/DeleteTopics, DescribeConfigs,
        assert api in keys, f"api key {api} not advertised"   # CreatePartitions, IncrAlter


def test_api_versions_unsupported_version(seeded):
    broker, topic, msgs = seeded
    with kwire.Conn(broker.bootstrap) as c:
        payload = c.roundtrip(kwire.api_versions_unsupported(77, version=99))
        r = kwire.parse_api_versions_v0(payload)
        assert r["correlation_id"] == 77
        assert r["error_code"] == UNSUPPORTED_VERSION, r
        assert r["trailing"] == 0, f"not a v0-format response: {r['trailing']} trailing bytes"
        keys = {k: (lo, hi) for k, lo, hi in r["api_keys"]}
        assert kwire.API_API_VERSIONS in keys, r
        # the client may now retry with a supported version on the same connection
        r2 = kwire.parse_api_versions_v0(c.roundtrip(kwire.api_versions_v0(78)))
        assert r2["correlation_id"] == 78 and r2["error_code"] == 0
    assert_healthy(broker, topic, msgs)


@pytest.mark.parametrize("frame", [
    pytest.param(struct.pack(">i", 12) + b"\xde\xad\xbe\xef" * 3, id="unknown-api-key"),
    pytest.param(struct.pack(">i", 3) + b"\x00\x00\x00", id="truncated-header"),
    pytest.param(struct.pack(">i", 0), id="empty-frame"),
    pytest.param(struct.pack(">i", 40) + struct.pack(">hhi", 0, 3, 1) + b"\xff" * 32,
                 id="produce-garbage-body"),
    pytest.param(struct.pack(">i", 30) + struct.pack(">hhi", 3, 4, 1) + b"\x00\x02ab"
                 + b"\x7f\xff\xff\xff" + b"\x00" * 14, id="metadata-huge-array-count"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="http-request"),
])
def test_garbage_frame_closes_connection(seeded, frame):
    broker, topic, msgs = seeded
    with kwire.Conn(broker.bootstrap) as c:
        c.send(frame)
        assert c.closed_by_peer(10), "broker kept the connection open after a garbage frame"
    assert_healthy(broker, topic, msgs)


@pytest.mark.parametrize("declared", [0x7FFFFFFF, 104857601, -1, -2147483648])
def test_huge_declared_length_closes_connection(seeded, declared):
    broker, topic, msgs = seeded
    with kwire.Conn(broker.bootstrap) as c:
        c.send(struct.pack(">i", declared) + b"\x00\x12\x00\x00" + b"x" * 100)
        assert c.closed_by_peer(10), f"connection still open after declared length {declared}"
    assert_healthy(broker, topic, msgs)


def test_request_decoding_bounded_by_bytes_received(seeded):
    """A 2 MB ListGroups v4 request whose states filter holds 2 million empty strings (one
    byte each on the wire, tens in memory) is refused as malformed, with the connection
    closed, instead of growing the broker by the element count times the element size."""
    broker, topic, msgs = seeded
    n = 2_000_000
    body = kwire.uvarint(n + 1) + b"\x01" * n + kwire.uvarint(0)
    frame = kwire.request(16, 4, 5, body, flexible_header=True)
    with kwire.Conn(broker.bootstrap) as c:
        c.send(frame)
        assert c.closed_by_peer(10), "broker kept the connection open"
    assert "more memory than its size allows" in broker.log_tail(200)
    assert_healthy(broker, topic, msgs)


def test_socket_request_max_bytes_config(broker_factory, topic_name):
    limit = 65536
    b = broker_factory({"socket.request.max.bytes": limit})
    bs = b.bootstrap
    kc.create_topic(bs, topic_name)
    # a request just under the limit is served
    batch = kwire.record_batch([(None, b"y" * 60000, [])], kc.now_ms())
    req = kwire.produce_v3(1, topic_name, 0, batch)
    assert len(req) - 4 <= limit
    with kwire.Conn(bs) as c:
        r = kwire.parse_produce_v3(c.roundtrip(req))
    assert r["partitions"][(topic_name, 0)]["error_code"] == 0, r
    # one over the limit: connection closed before the body is even sent
    with kwire.Conn(bs) as c:
        c.send(struct.pack(">i", limit + 1))
        assert c.closed_by_peer(10)
    assert_healthy(b, topic_name, [kc.Msg(value=b"y" * 60000, key=None, headers=[])])


def test_corrupt_crc_rejected(seeded):
    broker, topic, msgs = seeded
    n = len(msgs)
    ts = kc.now_ms()
    good1 = kwire.record_batch([(b"k1", b"good-1", [("h", b"1")])], ts)
    bad = kwire.record_batch([(b"k2", b"bad", [])], ts, corrupt_crc=True)
    good2 = kwire.record_batch([(b"k3", b"good-2", []), (None, b"good-3", [])], ts + 1)
    with kwire.Conn(broker.bootstrap) as c:
        r = kwire.parse_produce_v3(c.roundtrip(kwire.produce_v3(1, topic, 0, good1)))
        assert r["correlation_id"] == 1
        assert r["partitions"][(topic, 0)]["error_code"] == 0, r
        assert r["partitions"][(topic, 0)]["base_offset"] == n, r
        r = kwire.parse_produce_v3(c.roundtrip(kwire.produce_v3(2, topic, 0, bad)))
        assert r["partitions"][(topic, 0)]["error_code"] == CORRUPT_MESSAGE, r
        r = kwire.parse_produce_v3(c.roundtrip(kwire.produce_v3(3, topic, 0, good2)))
        assert r["partitions"][(topic, 0)]["error_code"] == 0, r
        assert r["partitions"][(topic, 0)]["base_offset"] == n + 1, \
            f"corrupt batch consumed offsets: {r}"
    expected = msgs + [kc.Msg(value=b"good-1", key=b"k1", headers=[("h", b"1")], timestamp=ts),
                       kc.Msg(value=b"good-2", key=b"k3", timestamp=ts + 1),
                       kc.Msg(value=b"good-3", key=None, timestamp=ts + 1)]
    assert_healthy(broker, topic, expected)


def test_corrupt_crc_survives_restart(seeded):
    """The rejected batch must not show up after a restart / recovery either."""
    broker, topic, msgs = seeded
    with kwire.Conn(broker.bootstrap) as c:
        bad = kwire.record_batch([(b"k", b"bad", [])], kc.now_ms(), corrupt_crc=True)
        r = kwire.parse_produce_v3(c.roundtrip(kwire.produce_v3(1, topic, 0, bad)))
        assert r["partitions"][(topic, 0)]["error_code"] == CORRUPT_MESSAGE, r
    broker.restart(kill=True)
    assert_healthy(broker, topic, msgs)


def test_acks0_gets_no_response(seeded):
    broker, topic, msgs = seeded
    ts = kc.now_ms()
    with kwire.Conn(broker.bootstrap) as c:
        c.send(kwire.produce_v3(5, topic, 0, kwire.record_batch([(b"a0", b"acks0", [])], ts),
                                acks=0))
        # the next frame on this connection must answer the ApiVersions, not the Produce
        r = kwire.parse_api_versions_v0(c.roundtrip(kwire.api_versions_v0(6)))
        assert r["correlation_id"] == 6, f"got a response for correlation id {r['correlation_id']}"
    got = kc.consume_confluent(broker.bootstrap, topic, start=len(msgs), n=1)
    kc.assert_same_records([kc.Msg(value=b"acks0", key=b"a0", timestamp=ts)], got,
                           base_offset=len(msgs))


def test_acks1_and_pipelined_requests(broker, topic_name):
    """Several requests written back to back are answered in order, each with its own
    correlation id."""
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name)
    ts = kc.now_ms()
    reqs = [kwire.produce_v3(100 + i, topic_name, 0,
                             kwire.record_batch([(None, b"pipelined-%d" % i, [])], ts), acks=1)
            for i in range(5)]
    reqs.insert(2, kwire.api_versions_v0(99))
    with kwire.Conn(bs) as c:
        c.send(b"".join(reqs))
        frames = [c.recv_frame() for _ in reqs]
    corrs = [struct.unpack(">i", f[:4])[0] for f in frames]
    assert corrs == [100, 101, 99, 102, 103, 104]
    offsets = [kwire.parse_produce_v3(f)["partitions"][(topic_name, 0)]["base_offset"]
               for f in frames if struct.unpack(">i", f[:4])[0] != 99]
    assert offsets == [0, 1, 2, 3, 4]


def test_many_bad_connections_then_good(seeded):
    """A burst of abusive connections (garbage, half-sent frames, abrupt resets) does not
    take the broker down."""
    broker, topic, msgs = seeded
    socks = []
    for i in range(30):
        s = socket.create_connection(("127.0.0.1", broker.port), timeout=5)
        if i % 3 == 0:
            s.sendall(struct.pack(">i", 1000) + b"half")    # never completed
        elif i % 3 == 1:
            s.sendall(b"\xff" * 64)
        else:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.sendall(struct.pack(">i", 50) + b"\x00\x00")   # then RST
            s.close()
            continue
        socks.append(s)
    assert_healthy(broker, topic, msgs)
    for s in socks:
        s.close()
    assert_healthy(broker, topic, msgs + [kc.Msg(value=b"still-serving", key=b"k")])


OFFSET_OUT_OF_RANGE = 1
UNKNOWN_TOPIC_OR_PARTITION = 3


def test_fetch_offset_out_of_range(seeded):
    broker, topic, msgs = seeded
    n = len(msgs)
    with kwire.Conn(broker.bootstrap) as c:
        # at the log end: no error, no records, HW reported
        r = kwire.parse_fetch_v4(c.roundtrip(kwire.fetch_v4(1, topic, 0, n)))
        p = r["partitions"][(topic, 0)]
        assert (p["error_code"], p["high_watermark"], p["records"]) == (0, n, b""), p
        # past the end / negative: OFFSET_OUT_OF_RANGE
        for off in (n + 1, n + 1000, -5):
            r = kwire.parse_fetch_v4(c.roundtrip(kwire.fetch_v4(2, topic, 0, off)))
            assert r["partitions"][(topic, 0)]["error_code"] == OFFSET_OUT_OF_RANGE, (off, r)
        # unknown partition
        r = kwire.parse_fetch_v4(c.roundtrip(kwire.fetch_v4(3, topic, 9, 0)))
        assert r["partitions"][(topic, 9)]["error_code"] == UNKNOWN_TOPIC_OR_PARTITION, r
    assert_healthy(broker, topic, msgs)


def test_fetch_returns_first_batch_even_if_over_max_bytes(broker, topic_name):
    """KIP-74: a first batch larger than max_bytes is still returned whole, so a consumer
    always makes progress."""
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name)
    big = kwire.record_batch([(b"k", b"z" * 50_000, []), (None, b"second", [])], kc.now_ms())
    with kwire.Conn(bs) as c:
        r = kwire.parse_produce_v3(c.roundtrip(kwire.produce_v3(1, topic_name, 0, big)))
        assert r["partitions"][(topic_name, 0)]["error_code"] == 0
        r = kwire.parse_fetch_v4(c.roundtrip(kwire.fetch_v4(2, topic_name, 0, 0, max_bytes=1000,
                                                            partition_max_bytes=1000)))
    p = r["partitions"][(topic_name, 0)]
    assert p["error_code"] == 0, p
    batches = kwire.parse_record_batches(p["records"])
    assert len(batches) >= 1, f"no complete batch returned ({len(p['records'])} bytes)"
    assert batches[0]["base_offset"] == 0 and batches[0]["last_offset_delta"] == 1
    assert batches[0]["crc_ok"]


def test_produce_multi_partition_partial_failure(broker, topic_name):
    """Each partition in one Produce request succeeds or fails on its own."""
    bs = broker.bootstrap
    kc.create_topic(bs, topic_name, partitions=2)
    ts = kc.now_ms()
    good0 = kwire.record_batch([(None, b"p0", [])], ts)
    bad1 = kwire.record_batch([(None, b"p1-corrupt", [])], ts, corrupt_crc=True)
    good_missing = kwire.record_batch([(None, b"nope", [])], ts)
    with kwire.Conn(bs) as c:
        r = kwire.parse_produce_v3(c.roundtrip(kwire.produce_v3_multi(
            1, [(topic_name, 0, good0), (topic_name, 1, bad1), (topic_name, 5, good_missing)])))
    parts = r["partitions"]
    assert parts[(topic_name, 0)]["error_code"] == 0, r
    assert parts[(topic_name, 1)]["error_code"] == CORRUPT_MESSAGE, r
    assert parts[(topic_name, 5)]["error_code"] == UNKNOWN_TOPIC_OR_PARTITION, r
    assert kc.watermarks(bs, topic_name, 0) == (0, 1)
    assert kc.watermarks(bs, topic_name, 1) == (0, 0)
