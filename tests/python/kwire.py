"""Hand-built Kafka wire bytes for the raw-socket tests (no client library involved).

Covers just what the tests need: request headers v1/v2, ApiVersions v0 / unsupported
version, Produce v3 with a hand-built RecordBatch v2 (CRC32C computed here, or corrupted on
purpose), Metadata v1, Fetch v4, and their responses.
"""
from __future__ import annotations

import socket
import struct
import time

# ---------------------------------------------------------------- CRC32C (Castagnoli)

_CRC_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283

# ---------------------------------------------------------------- primitives


def i8(v): return struct.pack(">b", v)
def i16(v): return struct.pack(">h", v)
def i32(v): return struct.pack(">i", v)
def i64(v): return struct.pack(">q", v)
def u32(v): return struct.pack(">I", v)


def string(s: str | None) -> bytes:
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def nbytes(b: bytes | None) -> bytes:
    if b is None:
        return i32(-1)
    return i32(len(b)) + b


def array(items: list[bytes]) -> bytes:
    return i32(len(items)) + b"".join(items)


def uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def varint(v: int) -> bytes:          # zigzag, as in record fields
    return uvarint((v << 1) ^ (v >> 63))


def compact_string(s: str) -> bytes:
    b = s.encode()
    return uvarint(len(b) + 1) + b


class Reader:
    def __init__(self, buf: bytes):
        self.buf = buf
        self.pos = 0

    def take(self, n: int) -> bytes:
        assert self.pos + n <= len(self.buf), f"short read: need {n} at {self.pos}/{len(self.buf)}"
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def i8(self): return struct.unpack(">b", self.take(1))[0]
    def i16(self): return struct.unpack(">h", self.take(2))[0]
    def i32(self): return struct.unpack(">i", self.take(4))[0]
    def i64(self): return struct.unpack(">q", self.take(8))[0]
    def u32(self): return struct.unpack(">I", self.take(4))[0]

    def string(self):
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def nbytes(self):
        n = self.i32()
        return None if n < 0 else self.take(n)

    def uvarint(self):
        shift = v = 0
        while True:
            b = self.take(1)[0]
            v |= (b & 0x7F) << shift
            if not b & 0x80:
                return v
            shift += 7

    def varint(self):
        v = self.uvarint()
        return (v >> 1) ^ -(v & 1)

    def remaining(self) -> int:
        return len(self.buf) - self.pos


# ---------------------------------------------------------------- record batch v2

def record_batch(records: list[tuple[bytes | None, bytes | None, list]], base_ts: int,
                 base_offset: int = 0, corrupt_crc: bool = False, producer_id: int = -1,
                 producer_epoch: int = -1, base_sequence: int = -1) -> bytes:
    """An uncompressed RecordBatch v2; producerId -1 (non-idempotent) unless given."""
    recs = b""
    for i, (k, v, headers) in enumerate(records):
        body = i8(0) + varint(0) + varint(i)            # attributes, tsDelta, offsetDelta
        body += varint(-1) if k is None else varint(len(k)) + k
        body += varint(-1) if v is None else varint(len(v)) + v
        body += varint(len(headers))
        for hk, hv in headers:
            hkb = hk.encode()
            body += varint(len(hkb)) + hkb
            body += varint(-1) if hv is None else varint(len(hv)) + hv
        recs += varint(len(body)) + body
    after_crc = (i16(0)                                  # attributes: no compression, CreateTime
                 + i32(len(records) - 1)                 # lastOffsetDelta
                 + i64(base_ts) + i64(base_ts)           # baseTimestamp, maxTimestamp
                 + i64(producer_id) + i16(producer_epoch) + i32(base_sequence)
                 + i32(len(records)) + recs)
    crc = crc32c(after_crc)
    if corrupt_crc:
        crc ^= 0xDEADBEEF
    after_len = i32(-1) + i8(2) + u32(crc) + after_crc   # partitionLeaderEpoch, magic, crc
    return i64(base_offset) + i32(len(after_len)) + after_len


def parse_record_batches(buf: bytes) -> list[dict]:
    """Parse (possibly truncated at the end) record batches; verifies every CRC32C."""
    out = []
    r = Reader(buf)
    while r.remaining() >= 12:
        base_offset = r.i64()
        length = r.i32()
        if r.remaining() < length:
            break                                   # partial batch at the end is allowed
        body = r.take(length)
        br = Reader(body)
        leader_epoch = br.i32()
        magic = br.i8()
        crc = br.u32()
        crc_ok = crc32c(body[9:]) == crc
        attributes = br.i16()
        last_offset_delta = br.i32()
        base_ts = br.i64()
        max_ts = br.i64()
        out.append(dict(base_offset=base_offset, length=length, leader_epoch=leader_epoch,
                        magic=magic, crc_ok=crc_ok, attributes=attributes,
                        compression=attributes & 0x7, last_offset_delta=last_offset_delta,
                        base_ts=base_ts, max_ts=max_ts, raw=body))
    return out


# ---------------------------------------------------------------- requests

API_PRODUCE, API_FETCH, API_METADATA, API_API_VERSIONS = 0, 1, 3, 18
API_INIT_PRODUCER_ID = 22


def request(api_key: int, version: int, corr: int, body: bytes, client_id: str = "raw-test",
            flexible_header: bool = False) -> bytes:
    hdr = i16(api_key) + i16(version) + i32(corr) + string(client_id)
    if flexible_header:
        hdr += uvarint(0)                              # empty tagged fields (header v2)
    msg = hdr + body
    return i32(len(msg)) + msg


def api_versions_v0(corr: int) -> bytes:
    return request(API_API_VERSIONS, 0, corr, b"")


def api_versions_unsupported(corr: int, version: int = 99) -> bytes:
    """What a future client sends: header v2 and a v3-style body."""
    body = compact_string("raw-test") + compact_string("1.0") + uvarint(0)
    return request(API_API_VERSIONS, version, corr, body, flexible_header=True)


def produce_v3(corr: int, topic: str, partition: int, batch: bytes, acks: int = -1,
               timeout_ms: int = 10000) -> bytes:
    return produce_v3_multi(corr, [(topic, partition, batch)], acks, timeout_ms)


def produce_v3_multi(corr: int, parts: list[tuple[str, int, bytes]], acks: int = -1,
                     timeout_ms: int = 10000) -> bytes:
    by_topic: dict[str, list[bytes]] = {}
    for t, p, b in parts:
        by_topic.setdefault(t, []).append(i32(p) + nbytes(b))
    body = (string(None) + i16(acks) + i32(timeout_ms)
            + array([string(t) + array(ps) for t, ps in by_topic.items()]))
    return request(API_PRODUCE, 3, corr, body)


def metadata_v4(corr: int, topics: list[str] | None, allow_auto_create: bool = False) -> bytes:
    body = i32(-1) if topics is None else array([string(t) for t in topics])
    body += i8(1 if allow_auto_create else 0)
    return request(API_METADATA, 4, corr, body)


def fetch_v4(corr: int, topic: str, partition: int, offset: int, max_bytes: int = 1 << 20,
             max_wait_ms: int = 100, partition_max_bytes: int | None = None) -> bytes:
    pmax = max_bytes if partition_max_bytes is None else partition_max_bytes
    body = (i32(-1) + i32(max_wait_ms) + i32(1) + i32(max_bytes) + i8(0)
            + array([string(topic) + array([i32(partition) + i64(offset) + i32(pmax)])]))
    return request(API_FETCH, 4, corr, body)


# ---------------------------------------------------------------- responses

def parse_api_versions_v0(payload: bytes) -> dict:
    r = Reader(payload)
    corr = r.i32()
    err = r.i16()
    n = r.i32()
    keys = [(r.i16(), r.i16(), r.i16()) for _ in range(max(n, 0))]
    return dict(correlation_id=corr, error_code=err, api_keys=keys, trailing=r.remaining())


def parse_produce_v3(payload: bytes) -> dict:
    r = Reader(payload)
    corr = r.i32()
    parts = {}
    for _ in range(r.i32()):
        t = r.string()
        for _ in range(r.i32()):
            p = r.i32()
            parts[(t, p)] = dict(error_code=r.i16(), base_offset=r.i64(), log_append_time=r.i64())
    throttle = r.i32()
    return dict(correlation_id=corr, partitions=parts, throttle_ms=throttle)


def init_producer_id_v0(corr: int, transactional_id: str | None = None) -> bytes:
    return request(API_INIT_PRODUCER_ID, 0, corr, string(transactional_id) + i32(60000))


def parse_init_producer_id_v0(payload: bytes) -> dict:
    r = Reader(payload)
    corr = r.i32()
    return dict(correlation_id=corr, throttle_ms=r.i32(), error_code=r.i16(),
                producer_id=r.i64(), producer_epoch=r.i16())


def parse_metadata_v4(payload: bytes) -> dict:
    r = Reader(payload)
    corr = r.i32()
    r.i32()                                        # throttle_time_ms
    brokers = []
    for _ in range(r.i32()):
        brokers.append((r.i32(), r.string(), r.i32(), r.string()))
    r.string()                                     # cluster_id
    controller = r.i32()
    topics = {}
    for _ in range(r.i32()):
        err = r.i16()
        name = r.string()
        internal = r.i8()
        parts = []
        for _ in range(r.i32()):
            perr, pid, leader = r.i16(), r.i32(), r.i32()
            replicas = [r.i32() for _ in range(r.i32())]
            isr = [r.i32() for _ in range(r.i32())]
            parts.append(dict(error_code=perr, partition=pid, leader=leader,
                              replicas=replicas, isr=isr))
        topics[name] = dict(error_code=err, internal=internal, partitions=parts)
    return dict(correlation_id=corr, brokers=brokers, controller=controller, topics=topics)


def parse_fetch_v4(payload: bytes) -> dict:
    r = Reader(payload)
    corr = r.i32()
    throttle = r.i32()
    parts = {}
    for _ in range(r.i32()):
        t = r.string()
        for _ in range(r.i32()):
            p = r.i32()
            err = r.i16()
            hw = r.i64()
            lso = r.i64()
            na = r.i32()
            for _ in range(max(na, 0)):
                r.i64(), r.i64()
            records = r.nbytes()
            parts[(t, p)] = dict(error_code=err, high_watermark=hw, last_stable_offset=lso,
                                 records=records or b"")
    return dict(correlation_id=corr, throttle_ms=throttle, partitions=parts)


# ---------------------------------------------------------------- connection

class Conn:
    def __init__(self, bootstrap: str, timeout: float = 10.0):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.settimeout(timeout)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data: bytes):
        self.sock.sendall(data)

    def _recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError(f"connection closed after {len(buf)}/{n} bytes")
            buf += chunk
        return buf

    def recv_frame(self) -> bytes:
        (n,) = struct.unpack(">i", self._recv_exact(4))
        assert 0 <= n < 64 << 20, f"bad response frame size {n}"
        return self._recv_exact(n)

    def roundtrip(self, data: bytes) -> bytes:
        self.send(data)
        return self.recv_frame()

    def closed_by_peer(self, timeout: float = 10.0) -> bool:
        """True if the peer closes (EOF or reset) within timeout, reading and discarding
        any bytes it sends first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not chunk:
                return True
        return False
