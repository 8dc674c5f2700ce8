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
import pytest

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


def test_open_transactions_are_bounded_by_the_budget_and_refused_not_waited_for(broker_factory):
    """Bodies waiting in open transactions (until tx.commit) count against the budgets: a
    hostile client opening a transaction on many channels and never committing cannot grow
    the broker past them. A transactional publish past its connection's budget closes that
    channel with PRECONDITION_FAILED (406) instead of waiting: the tx.commit that would free
    the budget comes after it on the same connection. The connection, and its other
    channels' transactions, go on; a closed channel's bytes are given back."""
    b = broker_factory({"amqp.max_buffered_body_bytes_per_connection": 4 * MIB,
                        "amqp.max_buffered_body_bytes": 64 * MIB})
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.amqp_port))
    setup = conn.channel()
    setup.queue_declare("tx-budget")
    body = b"t" * (512 * 1024)
    before = rss_bytes(b.proc.pid)

    # 7 channels x 512 KiB held in open transactions: 3.5 MiB, within 4 MiB.
    held = []
    for _ in range(7):
        ch = conn.channel()
        ch.tx_select()
        ch.basic_publish("", "tx-budget", body)
        held.append(ch)
    # The 9th half-MiB would pass 4 MiB: that channel is closed with 406.
    extra = conn.channel()
    extra.tx_select()
    extra.basic_publish("", "tx-budget", body)           # 4 MiB: still fits exactly
    over = conn.channel()
    over.tx_select()
    over.basic_publish("", "tx-budget", body)
    try:
        over.tx_commit()
        raise AssertionError("a transactional publish past the budget was accepted")
    except pika.exceptions.ChannelClosedByBroker as e:
        assert e.reply_code == 406, e
        assert "uncommitted" in e.reply_text, e
    # The others commit; their messages are stored and the budget is free again.
    for ch in held + [extra]:
        ch.tx_commit()
    assert setup.queue_declare("tx-budget", passive=True).method.message_count == 8
    again = conn.channel()
    again.tx_select()
    again.basic_publish("", "tx-budget", body)
    again.tx_commit()
    assert setup.queue_declare("tx-budget", passive=True).method.message_count == 9
    grown = rss_bytes(b.proc.pid) - before
    print(f"RSS grew by {grown / MIB:.1f} MiB")
    conn.close()


@pytest.mark.parametrize("per_connection", [pytest.param(8, id="budget"),
                                            pytest.param(4096, id="negative-control")])
def test_hostile_open_transactions_cannot_grow_the_broker(broker_factory, per_connection):
    """10 connections x 50 channels each publish 1 MiB into a transaction and never commit
    (500 MiB without a budget). With 8 MiB per connection the rest are refused; RSS stays
    near 10 x 8 MiB and another client is served meanwhile. Negative control: with budgets
    larger than the pattern needs, the broker does grow by the 500 MiB."""
    b = broker_factory({"amqp.max_buffered_body_bytes_per_connection": per_connection * MIB,
                        "amqp.max_buffered_body_bytes": 64 * per_connection * MIB})
    c0 = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.amqp_port))
    c0.channel().queue_declare("tx-hostile")
    time.sleep(0.3)
    before = rss_bytes(b.proc.pid)
    body = b"h" * MIB
    conns, refused = [], 0
    for _ in range(10):
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", b.amqp_port))
        conns.append(conn)
        chans = []
        for _ in range(50):
            ch = conn.channel()
            ch.tx_select()
            ch.basic_publish("", "tx-hostile", body)
            chans.append(ch)
        # one round trip per connection, so every publish above has been handled
        probe = conn.channel()
        probe.queue_declare("tx-hostile", passive=True)
        refused += sum(1 for ch in chans if ch.is_closed)
    grown = rss_bytes(b.proc.pid) - before
    print(f"open transactions, {per_connection} MiB per connection: RSS grew by "
          f"{grown / MIB:.0f} MiB; {refused} of 500 transactional publishes refused")
    if per_connection > 1000:
        assert grown > 400 * MIB and refused == 0, (grown, refused)
        return
    assert grown < 200 * MIB, f"RSS grew by {grown / MIB:.0f} MiB"
    assert refused >= 400, refused
    ch = c0.channel()
    ch.confirm_delivery()
    ch.basic_publish("", "tx-hostile", b"other")
    assert ch.basic_get("tx-hostile", auto_ack=True)[2] == b"other"
    for conn in conns:
        conn.close()
    c0.close()
