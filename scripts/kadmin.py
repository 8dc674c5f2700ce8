#!/usr/bin/env python3
"""Tiny Kafka admin helper for the scripts (scripts/cluster.sh, scripts/bench.sh): Python
standard library only, raw Kafka protocol (Metadata v4, CreateTopics v2), so it needs no
client library and works against Arctern or Kafka.

  kadmin.py wait-brokers --bootstrap H:P[,H:P..] --count 3 [--timeout 60]
      wait until a node's Metadata lists COUNT brokers and a controller
  kadmin.py create-topic --bootstrap .. --topic T [--partitions 1] [--replication-factor 3]
                         [--config k=v ..] [--leader N]
      CreateTopics; --leader N asks for an explicit assignment with node N first (the
      preferred leader) in every partition, falling back to a plain replication factor if
      the broker refuses assignments; an existing topic is kept
  kadmin.py leaders --bootstrap .. --topic T [--wait-isr] [--timeout 60]
      wait until every partition has a leader (and, with --wait-isr, a full ISR), then print
      one line per partition: `<partition> <leader> <leader host:port> <replicas> <isr>`
Exit status 1 with a message on stderr on failure.
"""
from __future__ import annotations

import argparse
import socket
import struct
import sys
import time


def _s(v: str | None) -> bytes:
    if v is None:
        return struct.pack(">h", -1)
    b = v.encode()
    return struct.pack(">h", len(b)) + b


def _arr(items: list[bytes]) -> bytes:
    return struct.pack(">i", len(items)) + b"".join(items)


class R:
    def __init__(self, b: bytes):
        self.b, self.p = b, 0

    def take(self, n):
        v = self.b[self.p:self.p + n]
        if len(v) != n:
            raise ValueError("short response")
        self.p += n
        return v

    def i8(self): return struct.unpack(">b", self.take(1))[0]
    def i16(self): return struct.unpack(">h", self.take(2))[0]
    def i32(self): return struct.unpack(">i", self.take(4))[0]

    def s(self):
        n = self.i16()
        return None if n < 0 else self.take(n).decode()


def call(addr: str, api: int, ver: int, body: bytes, timeout: float = 10.0) -> bytes:
    host, port = addr.rsplit(":", 1)
    hdr = struct.pack(">hhi", api, ver, 1) + _s("arctern-kadmin")
    msg = hdr + body
    with socket.create_connection((host, int(port)), timeout=timeout) as sk:
        sk.settimeout(timeout)
        sk.sendall(struct.pack(">i", len(msg)) + msg)
        buf = b""
        while len(buf) < 4:
            c = sk.recv(4 - len(buf))
            if not c:
                raise ConnectionError("closed")
            buf += c
        (n,) = struct.unpack(">i", buf)
        buf = b""
        while len(buf) < n:
            c = sk.recv(n - len(buf))
            if not c:
                raise ConnectionError("closed")
            buf += c
    return buf[4:]          # drop the correlation id


def metadata(addr: str, topics: list[str] | None) -> dict:
    body = struct.pack(">i", -1) if topics is None else _arr([_s(t) for t in topics])
    body += b"\x00"                                 # allow_auto_topic_creation = false
    r = R(call(addr, 3, 4, body))
    r.i32()                                         # throttle
    brokers = {}
    for _ in range(r.i32()):
        nid, host, port, _rack = r.i32(), r.s(), r.i32(), r.s()
        brokers[nid] = f"{host}:{port}"
    r.s()                                           # cluster id
    controller = r.i32()
    out = {}
    for _ in range(r.i32()):
        err, name, _internal = r.i16(), r.s(), r.i8()
        parts = []
        for _ in range(r.i32()):
            perr, pid, leader = r.i16(), r.i32(), r.i32()
            replicas = [r.i32() for _ in range(r.i32())]
            isr = [r.i32() for _ in range(r.i32())]
            parts.append(dict(error=perr, partition=pid, leader=leader, replicas=replicas,
                              isr=isr))
        out[name] = dict(error=err, partitions=sorted(parts, key=lambda p: p["partition"]))
    return dict(brokers=brokers, controller=controller, topics=out)


def create_topic(addr: str, name: str, partitions: int, rf: int, configs: dict,
                 assignment: list[list[int]] | None) -> tuple[int, str | None]:
    if assignment:
        assigns = _arr([struct.pack(">i", p) + _arr([struct.pack(">i", b) for b in brokers])
                        for p, brokers in enumerate(assignment)])
        head = struct.pack(">ih", -1, -1)
    else:
        assigns = _arr([])
        head = struct.pack(">ih", partitions, rf)
    cfgs = _arr([_s(k) + _s(v) for k, v in configs.items()])
    topic = _s(name) + head + assigns + cfgs
    body = _arr([topic]) + struct.pack(">i", 30000) + b"\x00"
    r = R(call(addr, 19, 2, body, timeout=40))
    r.i32()                                         # throttle
    r.i32()                                         # one topic
    r.s()
    return r.i16(), r.s()


def first_answer(bootstrap: str, fn):
    last = None
    for addr in bootstrap.split(","):
        try:
            return fn(addr.strip())
        except (OSError, ValueError) as e:
            last = e
    raise last or OSError("no bootstrap address")


def die(msg: str):
    print(f"kadmin: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wait-brokers")
    w.add_argument("--bootstrap", required=True)
    w.add_argument("--count", type=int, required=True)
    w.add_argument("--timeout", type=float, default=60)
    c = sub.add_parser("create-topic")
    c.add_argument("--bootstrap", required=True)
    c.add_argument("--topic", required=True)
    c.add_argument("--partitions", type=int, default=1)
    c.add_argument("--replication-factor", type=int, default=3)
    c.add_argument("--config", action="append", default=[])
    c.add_argument("--leader", type=int)
    ld = sub.add_parser("leaders")
    ld.add_argument("--bootstrap", required=True)
    ld.add_argument("--topic", required=True)
    ld.add_argument("--wait-isr", action="store_true")
    ld.add_argument("--timeout", type=float, default=60)
    a = ap.parse_args()

    if a.cmd == "wait-brokers":
        deadline = time.monotonic() + a.timeout
        seen = None
        while time.monotonic() < deadline:
            try:
                md = first_answer(a.bootstrap, lambda x: metadata(x, []))
                seen = md
                if len(md["brokers"]) >= a.count and md["controller"] in md["brokers"]:
                    print(f"{len(md['brokers'])} brokers, controller {md['controller']}")
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.3)
        die(f"cluster not formed after {a.timeout}s (last metadata: {seen})")

    if a.cmd == "create-topic":
        cfg = dict(kv.split("=", 1) for kv in a.config)
        assignment = None
        if a.leader is not None:
            md = first_answer(a.bootstrap, lambda x: metadata(x, []))
            ids = sorted(md["brokers"])
            if a.leader not in ids or len(ids) < a.replication_factor:
                die(f"cannot place {a.replication_factor} replicas led by {a.leader} "
                    f"on brokers {ids}")
            others = [i for i in ids if i != a.leader][:a.replication_factor - 1]
            assignment = [[a.leader] + others for _ in range(a.partitions)]
        err, msg = first_answer(a.bootstrap, lambda x: create_topic(
            x, a.topic, a.partitions, a.replication_factor, cfg, assignment))
        if err != 0 and err != 36 and assignment is not None:
            print(f"kadmin: explicit assignment refused (error {err}: {msg}); "
                  f"using replication factor {a.replication_factor}", file=sys.stderr)
            err, msg = first_answer(a.bootstrap, lambda x: create_topic(
                x, a.topic, a.partitions, a.replication_factor, cfg, None))
        if err == 36:
            print(f"topic {a.topic} already exists")
        elif err != 0:
            die(f"CreateTopics {a.topic}: error {err}: {msg}")
        return

    if a.cmd == "leaders":
        deadline = time.monotonic() + a.timeout
        last = None
        while time.monotonic() < deadline:
            try:
                md = first_answer(a.bootstrap, lambda x: metadata(x, [a.topic]))
                t = md["topics"].get(a.topic)
                last = t
                if t and t["error"] == 0 and t["partitions"] and all(
                        p["leader"] >= 0 and p["leader"] in md["brokers"]
                        and (not a.wait_isr or set(p["isr"]) == set(p["replicas"]))
                        for p in t["partitions"]):
                    for p in t["partitions"]:
                        print(p["partition"], p["leader"], md["brokers"][p["leader"]],
                              ",".join(map(str, p["replicas"])), ",".join(map(str, p["isr"])))
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        die(f"topic {a.topic} not ready after {a.timeout}s: {last}")


if __name__ == "__main__":
    main()
