#!/usr/bin/env python3
"""Measures what a /metrics scrape costs: starts a broker (ARCTERN_BIN, default the debug
build), creates PARTITIONS partitions (in topics of 100) and GROUPS consumer groups that each
commit an offset on one partition of every topic, then times N scrapes.

  scripts/scrape_cost.py [--partitions 1000] [--groups 100] [--scrapes 20]

Run with the venv of tests/python (confluent-kafka). Prints the median and max scrape time
and the response size; no assertions (numbers depend on the machine and the build)."""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "python"))
from broker import Broker, free_port  # noqa: E402
from confluent_kafka import Consumer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--partitions", type=int, default=1000)
    ap.add_argument("--groups", type=int, default=100)
    ap.add_argument("--scrapes", type=int, default=20)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        b = Broker(Path(tmp), config={"management.listen": f"127.0.0.1:{port}"})
        b.start()
        try:
            admin = AdminClient({"bootstrap.servers": b.bootstrap})
            topics = [f"scrape-{i}" for i in range((a.partitions + 99) // 100)]
            t0 = time.monotonic()
            for t in topics:
                n = min(100, a.partitions - 100 * topics.index(t))
                for f in admin.create_topics([NewTopic(t, num_partitions=n,
                                                       replication_factor=1)]).values():
                    f.result(120)
            print(f"created {a.partitions} partitions in {time.monotonic() - t0:.1f} s")
            t0 = time.monotonic()
            for g in range(a.groups):
                c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": f"scrape-g{g}"})
                c.commit(offsets=[TopicPartition(t, 0, 0) for t in topics], asynchronous=False)
                c.close()
            print(f"committed for {a.groups} groups in {time.monotonic() - t0:.1f} s")
            auth = "Basic " + base64.b64encode(b"guest:guest").decode()
            times, size = [], 0
            for _ in range(a.scrapes):
                req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                             headers={"Authorization": auth})
                t0 = time.perf_counter()
                with urllib.request.urlopen(req, timeout=60) as r:
                    size = len(r.read())
                times.append(time.perf_counter() - t0)
            print(f"scrape: median {statistics.median(times) * 1000:.1f} ms, "
                  f"max {max(times) * 1000:.1f} ms, {size} bytes "
                  f"({a.partitions} partitions, {a.groups} groups)")
            # With RUST_LOG=info,arctern_http=debug the broker logs each scrape's split.
            for line in b.log_path.read_text(errors="replace").splitlines():
                if "metrics scrape" in line:
                    print(line.split("arctern_http")[-1].strip())
        finally:
            admin = None  # closes the client before the broker goes
            b.stop()


if __name__ == "__main__":
    main()
