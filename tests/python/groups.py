"""Helpers for the consumer group tests (test_groups.py): group-member worker processes
(group_worker.py), committed-offset look-ups through the Kafka admin APIs, raw
FindCoordinator / OffsetFetch, waiting.

Only processes started here are ever signalled, always by PID.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import kwire

HERE = Path(__file__).resolve().parent

# Consumer settings shared by the tests: Kafka's group.min.session.timeout.ms is 6000.
SESSION_MS = 6000
HEARTBEAT_MS = 500
# A group member that stops heartbeating is dropped after the session timeout; the
# rebalance that follows and the new assignment take a little longer.
REBALANCE_SLACK_S = 10

OFFSET_INVALID = -1001      # confluent-kafka's "no offset"

# Kafka error codes
COORDINATOR_LOAD_IN_PROGRESS = 14
COORDINATOR_NOT_AVAILABLE = 15
NOT_COORDINATOR = 16
NON_EMPTY_GROUP = 68
GROUP_ID_NOT_FOUND = 69
FENCED_INSTANCE_ID = 82
GROUP_SUBSCRIBED_TO_TOPIC = 86
COORDINATOR_RETRIABLE = {COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE,
                         NOT_COORDINATOR}

_WORKERS: set[int] = set()


def wait_until(pred, timeout: float, what: str, interval: float = 0.1):
    """Poll pred() until truthy (returned); AssertionError inside fails at once."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
            last_exc = None
        except AssertionError:
            raise
        except Exception as e:      # noqa: BLE001 - a broker may be restarting
            last_exc = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f"; last exception {last_exc!r}" if last_exc else ""))
        time.sleep(interval)


class Worker:
    """One group_worker.py process."""

    def __init__(self, workdir: Path, name: str, bootstrap: str, group: str, topic: str,
                 **opts):
        self.name = name
        self.out = Path(workdir) / f"worker-{name}.jsonl"
        self.stderr_path = Path(workdir) / f"worker-{name}.stderr"
        self.cmd = [sys.executable, str(HERE / "group_worker.py"), "--bootstrap", bootstrap,
                    "--group", group, "--topic", topic, "--out", str(self.out),
                    "--client-id", opts.pop("client_id", f"worker-{name}")]
        for k, v in opts.items():
            self.cmd += [f"--{k.replace('_', '-')}", str(v)]
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Worker":
        err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=err,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        err.close()
        _WORKERS.add(self.proc.pid)
        return self

    def events(self, ev: str | None = None) -> list[dict]:
        try:
            lines = self.out.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for ln in lines:
            try:
                e = json.loads(ln)
            except json.JSONDecodeError:
                continue        # a line being written
            if ev is None or e["ev"] == ev:
                out.append(e)
        return out

    def processed(self) -> list[tuple[int, int, str]]:
        return [(e["p"], e["o"], e["v"]) for e in self.events("processed")]

    def assignment(self) -> set[int] | None:
        """Partitions currently assigned (per the last assigned/revoked/lost callbacks of
        an eager assignor), None before the first assignment."""
        cur = None
        for e in self.events():
            if e["ev"] == "assigned":
                cur = (cur or set()) | {p for _, p in e["partitions"]}
            elif e["ev"] in ("revoked", "lost"):
                cur = (cur or set()) - {p for _, p in e["partitions"]}
        return cur

    def last_committed(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for e in self.events("committed"):
            for p, o in e["offsets"].items():
                out[int(p)] = o
        return out

    def wait_event(self, ev: str, timeout: float = 30, n: int = 1) -> dict:
        def check():
            self.assert_alive_or_closed(ev)
            es = self.events(ev)
            return es[n - 1] if len(es) >= n else None
        return wait_until(check, timeout, f"worker {self.name}: event {ev!r} x{n}")

    def assert_alive_or_closed(self, waiting_for: str = ""):
        if self.proc is not None and self.proc.poll() is not None \
                and self.proc.returncode not in (0, -signal.SIGKILL, -signal.SIGTERM):
            raise AssertionError(
                f"worker {self.name} exited rc={self.proc.returncode} "
                f"(waiting for {waiting_for}); stderr:\n{self.stderr_tail()}\n"
                f"events:\n{self.events_tail()}")

    def stderr_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""

    def events_tail(self, n: int = 15) -> str:
        return "\n".join(json.dumps(e) for e in self.events()[-n:])

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL: a crash (no LeaveGroup, no commit)."""
        if self.running():
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if self.proc is not None:
            _WORKERS.discard(self.proc.pid)

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM: the worker closes its consumer (LeaveGroup) and exits; SIGKILL after
        `timeout`."""
        if self.proc is None:
            return None
        if self.running():
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        _WORKERS.discard(self.proc.pid)
        return self.proc.returncode


def kill_workers():
    for pid in list(_WORKERS):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _WORKERS.discard(pid)


# ------------------------------------------------------------------- admin look-ups

def admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: list[int],
                      timeout: float = 10) -> dict[int, int]:
    """Committed offsets through the admin API (kafka-python KafkaAdminClient
    .list_group_offsets: FindCoordinator + OffsetFetch): partition -> offset, -1001
    (OFFSET_INVALID, as confluent-kafka names it) when none. Retriable coordinator errors
    are retried for up to `timeout` seconds, as clients do.

    Not confluent-kafka's AdminClient.list_consumer_group_offsets: librdkafka 2.16
    crashes (SIGSEGV in rd_kafka_cgrp_op, called from rd_kafka_handle_OffsetFetch) when an
    admin OffsetFetch is answered NOT_COORDINATOR, since an admin client has no consumer
    group handle to re-query the coordinator with -- and a crash would end the whole test
    session."""
    from kafka import TopicPartition as KTP
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError as KPError
    deadline = time.monotonic() + timeout
    while True:
        a = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
        try:
            res = a.list_group_offsets({group: [KTP(topic, p) for p in partitions]})[group]
            break
        except KPError as e:
            if not getattr(e, "retriable", False) or time.monotonic() > deadline:
                raise
        finally:
            a.close()
        time.sleep(0.2)
    out = {p: OFFSET_INVALID for p in partitions}
    for tp, om in res.items():
        if tp.topic == topic and om is not None and om.offset >= 0:
            out[tp.partition] = om.offset
    return out


def end_offsets(bootstrap: str, topic: str, partitions: list[int]) -> dict[int, int]:
    import kclients as kc
    return {p: kc.watermarks(bootstrap, topic, p)[1] for p in partitions}


def produce_values(bootstrap: str, topic: str, values: list[str],
                   partition_of=lambda i: None) -> list[tuple[int, int, str]]:
    """Produce (acks=all) and return [(partition, offset, value)] in ack order."""
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": False,
                  "linger.ms": 5, "log_level": 3})
    acked, errs = [], []

    def cb(err, m):
        if err is not None:
            errs.append(err)
        else:
            acked.append((m.partition(), m.offset(), m.value().decode()))

    for i, v in enumerate(values):
        kw = {}
        part = partition_of(i)
        if part is not None:
            kw["partition"] = part
        while True:
            try:
                p.produce(topic, value=v.encode(), on_delivery=cb, **kw)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    left = p.flush(30)
    assert left == 0 and not errs, f"produce: {left} undelivered, errors {errs[:3]}"
    return acked


# ------------------------------------------------------------------- raw protocol

API_OFFSET_FETCH, API_FIND_COORDINATOR = 9, 10


def find_coordinator_v1(corr: int, group: str) -> bytes:
    return kwire.request(API_FIND_COORDINATOR, 1, corr, kwire.string(group) + kwire.i8(0))


def parse_find_coordinator_v1(payload: bytes) -> dict:
    r = kwire.Reader(payload)
    corr = r.i32()
    r.i32()                                        # throttle_time_ms
    err = r.i16()
    msg = r.string()
    node, host, port = r.i32(), r.string(), r.i32()
    return dict(correlation_id=corr, error_code=err, error_message=msg, node_id=node,
                host=host, port=port)


def raw_find_coordinator(bootstrap: str, group: str, timeout: float = 3) -> dict:
    """FindCoordinator v1 (key type 0: group) sent to one broker."""
    with kwire.Conn(bootstrap, timeout=timeout) as c:
        return parse_find_coordinator_v1(c.roundtrip(find_coordinator_v1(1, group)))


def offset_fetch_v3(corr: int, group: str, topic: str, partitions: list[int]) -> bytes:
    body = kwire.string(group) + kwire.array(
        [kwire.string(topic) + kwire.array([kwire.i32(p) for p in partitions])])
    return kwire.request(API_OFFSET_FETCH, 3, corr, body)


def parse_offset_fetch_v3(payload: bytes) -> dict:
    r = kwire.Reader(payload)
    corr = r.i32()
    r.i32()                                        # throttle_time_ms
    parts = {}
    for _ in range(r.i32()):
        t = r.string()
        for _ in range(r.i32()):
            p = r.i32()
            parts[(t, p)] = dict(offset=r.i64(), metadata=r.string(), error_code=r.i16())
    err = r.i16()
    return dict(correlation_id=corr, partitions=parts, error_code=err)


def raw_offset_fetch(bootstrap: str, group: str, topic: str, partitions: list[int],
                     timeout: float = 5) -> dict:
    with kwire.Conn(bootstrap, timeout=timeout) as c:
        return parse_offset_fetch_v3(c.roundtrip(offset_fetch_v3(1, group, topic, partitions)))


API_JOIN_GROUP = 11
MEMBER_ID_REQUIRED = 79


def join_group_v4(corr: int, group: str, topic: str, member_id: str = "",
                  session_ms: int = SESSION_MS, rebalance_ms: int = 10000) -> bytes:
    """JoinGroup v4, protocol type "consumer", one protocol "range" whose metadata is a
    ConsumerProtocolSubscription v0 for `topic`."""
    sub = kwire.i16(0) + kwire.array([kwire.string(topic)]) + kwire.nbytes(None)
    body = (kwire.string(group) + kwire.i32(session_ms) + kwire.i32(rebalance_ms)
            + kwire.string(member_id) + kwire.string("consumer")
            + kwire.array([kwire.string("range") + kwire.nbytes(sub)]))
    return kwire.request(API_JOIN_GROUP, 4, corr, body)


def parse_join_group_v4(payload: bytes) -> dict:
    r = kwire.Reader(payload)
    corr = r.i32()
    r.i32()                                        # throttle_time_ms
    err = r.i16()
    gen = r.i32()
    proto, leader, member = r.string(), r.string(), r.string()
    return dict(correlation_id=corr, error_code=err, generation_id=gen, protocol=proto,
                leader=leader, member_id=member)
