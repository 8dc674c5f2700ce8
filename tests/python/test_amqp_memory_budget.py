"""Bounded memory under a hostile AMQP publisher: many channels, each holding a partial
large body. Measured before the budget: 2 connections x 200 channels x partial 16 MiB took
the broker to 1.75 GB RSS. With the body budget (`amqp.max_buffered_body_bytes_per_connection`,
`amqp.max_buffered_body_bytes`) a connection whose partial bodies fill its budget is not
read further at its next basic.publish, so RSS stays near the budget, and other clients are
served meanwhile."""
from __future__ import annotations

import socket
import struct
import threading
import time

import pika

from test_amqp_conformance import RawConn, _frame, _method, _shortstr

MIB = 1 << 20
FRAME_PAYLOAD = 131072 - 8          # frame_max minus the frame's own overhead


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def partial_publishes(channels: range, queue: str, declared: int, sent: int) -> bytes:
    """On each channel: basic.publish, a header declaring `declared` body bytes, then only
    `sent` of them."""
    out = []
    body = b"x" * FRAME_PAYLOAD
    for ch in channels:
        out.append(_method(ch, 20, 10, _shortstr("")))                       # channel.open
        out.append(_method(ch, 60, 40, struct.pack(">H", 0) + _shortstr("")
                           + _shortstr(queue) + b"\x00"))                    # basic.publish
        out.append(_frame(2, ch, struct.pack(">HHQH", 60, 0, declared, 0)))  # header
        left = sent
        while left > 0:
            n = min(left, FRAME_PAYLOAD)
            out.append(_frame(3, ch, body[:n]))
            left -= n
    return b"".join(out)


def hostile_growth(b) -> tuple[int, list]:
    """Runs the hostile pattern; returns (RSS growth, the hostile connections)."""
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.amqp_port))
    conn.channel().queue_declare("budget-q")
    conn.close()
    time.sleep(0.5)
    before = rss_bytes(b.proc.pid)
    # 2 connections x 100 channels x 4 MiB bodies of which all but the last frame is sent:
    # ~800 MB buffered without a budget.
    declared = 4 * MIB
    sent = declared - FRAME_PAYLOAD
    hostile = []
    writers = []
    for _ in range(2):
        raw = RawConn(b.amqp_port)
        raw.open()                      # channel 1 opened by open()
        raw.s.settimeout(8)
        payload = partial_publishes(range(2, 102), "budget-q", declared, sent)

        def write(sock=raw.s, data=payload):
            try:
                sock.sendall(data)
            except (socket.timeout, OSError):
                pass                    # the broker stopped reading: expected

        t = threading.Thread(target=write, daemon=True)
        t.start()
        hostile.append(raw)
        writers.append(t)
    for t in writers:
        t.join(30)
    time.sleep(0.5)
    return rss_bytes(b.proc.pid) - before, hostile


def test_negative_control_without_a_budget_the_broker_grows(broker_factory):
    """The same pattern with budgets larger than it needs: the scenario must show growth,
    or it proves nothing."""
    b = broker_factory({"amqp.max_buffered_body_bytes_per_connection": 4096 * MIB,
                        "amqp.max_buffered_body_bytes": 8192 * MIB})
    grown, hostile = hostile_growth(b)
    print(f"without a budget: RSS grew by {grown / MIB:.0f} MiB")
    assert grown > 500 * MIB, f"RSS grew by only {grown / MIB:.0f} MiB"
    for raw in hostile:
        raw.s.close()


def test_partial_bodies_cannot_grow_the_broker(broker_factory):
    b = broker_factory({"amqp.max_buffered_body_bytes_per_connection": 8 * MIB,
                        "amqp.max_buffered_body_bytes": 64 * MIB})
    grown, hostile = hostile_growth(b)
    print(f"with a budget of 8 MiB per connection: RSS grew by {grown / MIB:.0f} MiB")
    # Two connections' budgets (8 MiB each, plus the publish in progress when it ran
    # out) and their read buffers; far below the ~800 MB the bodies would take.
    assert grown < 120 * MIB, f"RSS grew by {grown / MIB:.0f} MiB"

    # Other clients are served meanwhile: publish with confirms and consume.
    other = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.amqp_port))
    ch = other.channel()
    ch.confirm_delivery()
    ch.queue_declare("budget-other")
    for i in range(20):
        ch.basic_publish("", "budget-other", f"m{i}".encode())
    got = [ch.basic_get("budget-other", auto_ack=True)[2] for _ in range(20)]
    assert got == [f"m{i}".encode() for i in range(20)]
    other.close()

    # The hostile connections end; their budget is given back and publishing goes on.
    for raw in hostile:
        raw.s.close()
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.amqp_port))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("", "budget-q", b"after")
    assert ch.queue_declare("budget-q", passive=True).method.message_count == 1
    conn.close()
