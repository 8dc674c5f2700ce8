#!/usr/bin/env python3
"""Measures what a /metrics scrape costs: starts a broker (ARCTERN_BIN, default the debug
build), creates PARTITIONS partitions (in topics of 100) and GROUPS consumer groups that each
commit an offset on one partition of every topic, then times N scrapes.

  scripts/scrape_cost.py [--partitions 1000] [--groups 100] [--scrapes 20]
                         [--produce-runs 0] [--records 1000000]

Run with the venv of tests/python (confluent-kafka). Prints the median and max scrape time
and the response size; no assertions (numbers depend on the machine and the build).

With --produce-runs N (even), it then measures what scraping costs the data path on the
same broker: N `arctern bench --mode produce` runs (acks=all, one fresh topic each),
alternating without and with a scrape every second (a thread GETs /metrics while the run
lasts), and prints each run's throughput, the medians and their ratio."""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "python"))
from broker import Broker, arctern_bin, free_port  # noqa: E402
from confluent_kafka import Consumer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--partitions", type=int, default=1000)
    ap.add_argument("--groups", type=int, default=100)
    ap.add_argument("--scrapes", type=int, default=20)
    ap.add_argument("--produce-runs", type=int, default=0)
    ap.add_argument("--records", type=int, default=1_000_000)
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
            if a.produce_runs:
                produce_with_and_without_scrapes(b, port, auth, a)
            # With RUST_LOG=info,arctern_http=debug the broker logs each scrape's split.
            for line in b.log_path.read_text(errors="replace").splitlines():
                if "metrics scrape" in line:
                    print(line.split("arctern_http")[-1].strip())
        finally:
            admin = None  # closes the client before the broker goes
            b.stop()


def produce_with_and_without_scrapes(b: Broker, port: int, auth: str, a) -> None:
    """Alternating runs: even ones plain, odd ones with a scrape every second."""
    results = {False: [], True: []}
    scrape_times = []
    for i in range(a.produce_runs):
        scraping = i % 2 == 1
        stop = threading.Event()

        def scraper() -> None:
            while not stop.is_set():
                req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                             headers={"Authorization": auth})
                t0 = time.perf_counter()
                with urllib.request.urlopen(req, timeout=60) as r:
                    r.read()
                scrape_times.append(time.perf_counter() - t0)
                stop.wait(max(0.0, 1.0 - (time.perf_counter() - t0)))

        t = threading.Thread(target=scraper, daemon=True)
        if scraping:
            t.start()
        out = subprocess.run(
            [str(arctern_bin()), "bench", "--bootstrap", b.bootstrap, "--json",
             "--topic", f"scrape-bench-{i}", "--mode", "produce", "--records", str(a.records),
             "--record-size", "100", "--batch-records", "1000", "--producers", "4",
             "--acks", "all"],
            capture_output=True, text=True, timeout=900, env=dict(os.environ))
        stop.set()
        if scraping:
            t.join()
        if out.returncode != 0:
            raise SystemExit(f"arctern bench failed: {out.stderr[-2000:]}")
        rate = json.loads(out.stdout)["produce"]["msgs_per_sec"]
        results[scraping].append(rate)
        print(f"produce run {i + 1}/{a.produce_runs} "
              f"({'scrape every 1 s' if scraping else 'no scrapes'}): {rate:,.0f} records/s")
    plain = statistics.median(results[False])
    scraped = statistics.median(results[True]) if results[True] else float("nan")
    print(f"produce median: {plain:,.0f} records/s without scrapes, {scraped:,.0f} with "
          f"a scrape every second: ratio {scraped / plain:.3f}")
    if scrape_times:
        print(f"scrapes during the runs: {len(scrape_times)}, median "
              f"{statistics.median(scrape_times) * 1000:.1f} ms, "
              f"max {max(scrape_times) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
