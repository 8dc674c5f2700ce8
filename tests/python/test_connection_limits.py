"""Connection limits: Kafka's `max.connections`, `max.connections.per.ip` and
`connections.max.idle.ms`, RabbitMQ's `connection_max`. A connection over a limit is closed
on accept (with a log line); the ones already open keep working, and a slot frees when one
closes."""
from __future__ import annotations

import socket
import struct
import time

import pika
import pika.exceptions
import pytest
from confluent_kafka.admin import AdminClient


def api_versions_frame(correlation_id: int) -> bytes:
    client_id = b"limits-test"
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    return struct.pack(">i", len(body)) + body


def kafka_answers(sock: socket.socket, correlation_id: int) -> bool:
    """Sends ApiVersions v0; True if an answer with our correlation id arrives."""
    try:
        sock.sendall(api_versions_frame(correlation_id))
        head = recv_exact(sock, 4)
        if head is None:
            return False
        frame = recv_exact(sock, struct.unpack(">i", head)[0])
    except OSError:
        return False
    return frame is not None and struct.unpack(">i", frame[:4])[0] == correlation_id


def recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.settimeout(5)
    return s


def admitted(port: int, correlation_id: int, timeout: float = 5.0) -> socket.socket:
    """A connection the broker serves, retrying while earlier ones (the fixture's readiness
    probe) are still counted."""
    deadline = time.monotonic() + timeout
    while True:
        s = connect(port)
        if kafka_answers(s, correlation_id):
            return s
        s.close()
        assert time.monotonic() < deadline, "no connection admitted"
        time.sleep(0.1)


def closed_by_peer(sock: socket.socket, within: float = 5.0) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_kafka_max_connections_per_ip(broker_factory):
    b = broker_factory({"max.connections.per.ip": 2})
    first, second = admitted(b.port, 1), admitted(b.port, 2)
    third = connect(b.port)
    assert closed_by_peer(third), "a third connection from 127.0.0.1 must be closed"
    assert kafka_answers(first, 3), "connections within the limit keep working"
    first.close()
    admitted(b.port, 4)  # the closed connection's slot frees
    assert "this address has reached its connection limit" in b.log_tail(200)


def test_kafka_max_connections_node_wide(broker_factory):
    b = broker_factory({"max.connections": 1})
    one = admitted(b.port, 1)
    two = connect(b.port)
    assert closed_by_peer(two)
    assert "the node has reached its connection limit" in b.log_tail(200)
    one.close()
    # A real client gets in once the slot is free.
    deadline = time.monotonic() + 10
    admin = AdminClient({"bootstrap.servers": b.bootstrap, "socket.timeout.ms": 3000})
    while True:
        try:
            md = admin.list_topics(timeout=3)
            assert md.brokers
            break
        except Exception:
            assert time.monotonic() < deadline
            time.sleep(0.2)


def test_kafka_idle_connection_is_closed(broker_factory):
    b = broker_factory({"connections.max.idle.ms": 800})
    idle = admitted(b.port, 1)
    assert closed_by_peer(idle, within=5.0), "an idle connection must be closed"
    busy = connect(b.port)
    for i in range(6):
        assert kafka_answers(busy, 10 + i), "a connection sending requests stays open"
        time.sleep(0.3)
    assert "closing idle connection" in b.log_tail(200)


def test_kafka_limit_config_rejects_nonsense(broker_factory):
    b = broker_factory({"max.connections": 0}, start=False)
    b.launch()
    assert b.proc.wait(timeout=30) != 0
    b.stopped_by_us = True  # the exit is what this test expects
    assert "max.connections must be positive" in b.log_tail(400)


def test_amqp_connection_max(broker_factory):
    b = broker_factory({"connection_max": 2})
    params = pika.ConnectionParameters("127.0.0.1", b.amqp_port, connection_attempts=1,
                                       socket_timeout=5, blocked_connection_timeout=5)
    one = pika.BlockingConnection(params)
    two = pika.BlockingConnection(params)
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(params)
    # The two within the limit still work.
    ch = one.channel()
    ch.queue_declare("limits-q")
    ch.basic_publish("", "limits-q", b"x")
    assert two.channel().queue_declare("limits-q", passive=True).method.message_count == 1
    one.close()
    deadline = time.monotonic() + 5
    while True:
        try:
            pika.BlockingConnection(params).close()
            break
        except pika.exceptions.AMQPConnectionError:
            assert time.monotonic() < deadline, "the closed connection's slot never freed"
            time.sleep(0.1)
    two.close()
    assert "connection_max" in b.log_tail(200)
