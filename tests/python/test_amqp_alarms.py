"""Resource alarms, as RabbitMQ documents them (alarms guide, connection.blocked
extension): while free disk space is below `disk_free_limit` or memory is above the high
watermark, publishing connections are blocked and told so with connection.blocked; other
work (declares, gets, consumers) goes on; when the alarm clears they get
connection.unblocked and what they published meanwhile is routed."""
from __future__ import annotations

import os
import shutil
import time

import pika
import pytest

from test_amqp import connect, drain, spin

pytestmark = pytest.mark.timeout(120)


def blocked_events(conn):
    """Records connection.blocked / unblocked as ("blocked", reason) / ("unblocked", None)."""
    events = []
    conn.add_on_connection_blocked_callback(
        lambda _c, frame: events.append(("blocked", frame.method.reason)))
    conn.add_on_connection_unblocked_callback(
        lambda _c, _frame: events.append(("unblocked", None)))
    return events


def wait_for(conn, events, n, timeout=10.0):
    deadline = time.monotonic() + timeout
    while len(events) < n and time.monotonic() < deadline:
        spin(conn, 0.1)
    return events


def ready(broker, queue):
    """Ready messages in `queue`, asked on a fresh connection (not blocked: it never publishes)."""
    c = connect(broker)
    try:
        return c.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        c.close()


def test_disk_alarm_blocks_publishers_but_not_consumers(broker_factory):
    # No disk has an exabyte free: the alarm is up from the start.
    b = broker_factory({"amqp.disk_free_limit": 10**18})
    conn = connect(b)
    events = blocked_events(conn)
    ch = conn.channel()
    ch.queue_declare("alarmed", durable=True)     # not a publish: still served
    spin(conn, 0.5)
    assert events == [], "connection.blocked goes to publishing connections only"
    ch.basic_publish("", "alarmed", b"held back")
    assert wait_for(conn, events, 1) == [("blocked", "low on disk")]
    spin(conn, 0.5)
    assert ready(b, "alarmed") == 0, "a publish was routed during a disk alarm"
    # Consuming is what frees resources, so a connection that only gets is served.
    other = connect(b)
    assert other.channel().basic_get("alarmed", auto_ack=True) == (None, None, None)
    other.close()


def test_memory_alarm_reason(broker_factory):
    # A watermark of a few kilobytes is below what any running broker holds.
    b = broker_factory({"amqp.vm_memory_high_watermark": 1e-7, "amqp.disk_free_limit": 0})
    conn = connect(b)
    events = blocked_events(conn)
    conn.channel().basic_publish("", "nowhere", b"x")
    assert wait_for(conn, events, 1) == [("blocked", "low on memory")]


def test_client_without_the_capability_is_still_held_back(broker_factory):
    b = broker_factory({"amqp.disk_free_limit": 10**18})
    params = pika.ConnectionParameters("127.0.0.1", b.amqp_port,
                                       client_properties={"capabilities": {}})
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.queue_declare("quiet")
    ch.basic_publish("", "quiet", b"x")
    spin(conn, 1.0)
    assert ready(b, "quiet") == 0
    # No conn.close(): like RabbitMQ, a blocked connection's frames (channel.close too)
    # are not read until the alarm clears; the broker's stop closes the socket.


def test_alarm_clears_and_the_held_publish_is_routed(broker_factory, tmp_path):
    free = shutil.disk_usage(tmp_path).free
    if free < 4 * 2**30:
        pytest.skip("needs 4 GiB free to move free space across the limit")
    # The limit sits 512 MiB below today's free space; a 2 GiB file crosses it even if
    # other work on the machine frees up to 1.5 GiB meanwhile.
    b = broker_factory({"amqp.disk_free_limit": free - 512 * 2**20})
    conn = connect(b)
    events = blocked_events(conn)
    ch = conn.channel()
    ch.queue_declare("later", durable=True)
    ch.confirm_delivery()
    ch.basic_publish("", "later", b"before", pika.BasicProperties(delivery_mode=2))
    assert events == []
    filler = tmp_path / "filler"
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY)
    try:
        os.posix_fallocate(fd, 0, 2 * 2**30)
    finally:
        os.close(fd)
    try:
        time.sleep(2.5)             # the monitor looks once a second
        raw = conn.channel()        # no confirms: the publish returns while held back
        raw.basic_publish("", "later", b"during", pika.BasicProperties(delivery_mode=2))
        assert wait_for(conn, events, 1) == [("blocked", "low on disk")]
        spin(conn, 0.5)
        assert ready(b, "later") == 1
    finally:
        filler.unlink()
    assert wait_for(conn, events, 2) == [("blocked", "low on disk"), ("unblocked", None)]
    got = drain(ch, "later", 2)
    assert [body for _, _, body in got] == [b"before", b"during"]
    conn.close()
