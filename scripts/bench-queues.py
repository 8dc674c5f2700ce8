#!/usr/bin/env python3
"""Many durable queues: declare + one confirmed persistent publish per queue, one client,
against RabbitMQ (Debian's, classic queues) and Arctern in the same run, then Arctern's open
files, disk and memory with that many queues each holding one message.

    .venv/bin/python scripts/bench-queues.py                 # 2,000 queues on each broker
    .venv/bin/python scripts/bench-queues.py --queues 50000 --brokers arctern

Prints one line per broker: queues, declare+publish per second, and for Arctern the
broker's open descriptors, data-dir bytes (du) and RSS. ARCTERN_BIN picks the binary
(default target/release/arctern). Both brokers on free loopback ports, stopped by PID.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))

import pika  # noqa: E402

from broker import Broker  # noqa: E402
from rabbit import RabbitMQ  # noqa: E402


def declare_and_publish(port: int, n: int, user: str = "guest", password: str = "guest"):
    creds = pika.PlainCredentials(user, password)
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port,
                                                             credentials=creds))
    ch = conn.channel()
    ch.confirm_delivery()
    props = pika.BasicProperties(delivery_mode=2)
    t0 = time.monotonic()
    last = t0
    for i in range(n):
        ch.queue_declare(f"mq-{i}", durable=True)
        ch.basic_publish("", f"mq-{i}", b"x" * 100, props)
        if time.monotonic() - last > 10:
            last = time.monotonic()
            print(f"  ... {i + 1} queues, {(i + 1) / (last - t0):.0f}/s", flush=True)
    dt = time.monotonic() - t0
    conn.close()
    return n / dt


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queues", type=int, default=2000)
    ap.add_argument("--brokers", default="rabbitmq,arctern")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-queues-"))
    try:
        return run(a, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(a: argparse.Namespace, work: Path) -> int:
    for name in a.brokers.split(","):
        if name == "rabbitmq":
            r = RabbitMQ(work / "rabbit")
            r.start()
            try:
                rate = declare_and_publish(r.amqp_port, a.queues)
                print(f"rabbitmq {a.queues} queues: {rate:.0f} declare+publish/s", flush=True)
            finally:
                r.stop()
        elif name == "arctern":
            b = Broker(work / "arctern")
            b.start()
            try:
                rate = declare_and_publish(b.amqp_port, a.queues)
                time.sleep(2)
                fds = len(os.listdir(f"/proc/{b.proc.pid}/fd"))
                du = int(subprocess.run(["du", "-sb", str(b.data_dir)], capture_output=True,
                                        text=True).stdout.split()[0])
                print(f"arctern {a.queues} queues: {rate:.0f} declare+publish/s, "
                      f"{fds} open descriptors, data dir {du / 1e6:.1f} MB, "
                      f"RSS {rss(b.proc.pid) / 1e6:.0f} MB", flush=True)
                t0 = time.monotonic()
                b.stop(timeout=300)
                print(f"arctern stopped (SIGTERM) in {time.monotonic() - t0:.1f} s", flush=True)
                t0 = time.monotonic()
                b.start(timeout=600)
                print(f"arctern restarted with {a.queues} queues in "
                      f"{time.monotonic() - t0:.1f} s; {len(os.listdir(f'/proc/{b.proc.pid}/fd'))} "
                      f"open descriptors", flush=True)
                # Every queue still holds its message (most of their files were closed).
                conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1",
                                                                         b.amqp_port))
                ch = conn.channel()
                step = max(1, a.queues // 500)
                got = sum(1 for i in range(0, a.queues, step)
                          if ch.basic_get(f"mq-{i}", auto_ack=True)[2] == b"x" * 100)
                want = len(range(0, a.queues, step))
                conn.close()
                print(f"arctern after the restart: {got} of {want} sampled queues returned "
                      f"their message; {len(os.listdir(f'/proc/{b.proc.pid}/fd'))} open "
                      f"descriptors", flush=True)
                if got != want:
                    return 1
            finally:
                b.stop(timeout=300)
        else:
            print(f"unknown broker {name}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
