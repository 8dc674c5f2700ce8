"""AMQP 0-9-1 conformance regressions found by the client libraries' own suites (issue 17),
with real clients (pika, aio-pika, kombu/py-amqp) and, where a client hides the wire, a raw
socket. Every assertion is what RabbitMQ does, so each test also passes against it."""
from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
import uuid

import aio_pika
import pika
import pytest

pytestmark = pytest.mark.timeout(180)


def connect(b, **kw):
    creds = kw.pop("credentials", pika.PlainCredentials("guest", "guest"))
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=b.amqp_port, credentials=creds, **kw))


def url(b) -> str:
    return f"amqp://guest:guest@127.0.0.1:{b.amqp_port}/"


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def ready_count(b, queue: str) -> int:
    conn = connect(b)
    try:
        return conn.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        conn.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ------------------------------------------------ basic.get after basic.publish, one channel

PERSISTENT = pika.BasicProperties(delivery_mode=2)


@pytest.mark.parametrize("mode", ["plain", "confirm", "tx"])
def test_basic_get_right_after_publish_on_the_same_channel_returns_it(shared_broker, mode):
    """Requests on a channel take effect in order (RabbitMQ: 0 of 100 get-empty): the
    get may wait for the group commit of the publish before it, but then sees it."""
    q = unique(f"get-after-publish-{mode}")
    conn = connect(shared_broker)
    ch = conn.channel()
    ch.queue_declare(q, durable=True)
    if mode == "confirm":
        ch.confirm_delivery()
    elif mode == "tx":
        ch.tx_select()
    empty = 0
    for i in range(100):
        body = f"m{i}".encode()
        ch.basic_publish("", q, body, PERSISTENT)
        if mode == "tx":
            ch.tx_commit()
        m, _, got = ch.basic_get(q, auto_ack=(i % 2 == 0))
        if m is None:
            empty += 1
            continue
        assert got == body and not m.redelivered
        if i % 2:
            ch.basic_ack(m.delivery_tag)
            if mode == "tx":
                ch.tx_commit()
    assert empty == 0, f"{empty} of 100 basic.get right after basic.publish were empty"
    ch.queue_delete(q)
    conn.close()


def test_basic_get_after_a_fanout_publish_sees_it_in_every_queue(shared_broker):
    """One publish routed to two queues, then a get on each: both see it."""
    x, qa, qb = unique("fan"), unique("fan-a"), unique("fan-b")
    conn = connect(shared_broker)
    ch = conn.channel()
    ch.exchange_declare(x, "fanout", durable=True)
    for q in (qa, qb):
        ch.queue_declare(q, durable=True)
        ch.queue_bind(q, x)
    for i in range(30):
        ch.basic_publish(x, "", f"{i}".encode(), PERSISTENT)
        for q in (qa, qb):
            m, _, body = ch.basic_get(q, auto_ack=True)
            assert m is not None, f"basic.get on {q} empty right after publish {i}"
            assert body == f"{i}".encode()
    ch.exchange_delete(x)
    conn.close()
