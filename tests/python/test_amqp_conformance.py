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


# ---------------------------------------------- unbind of what no longer exists answers ok

def test_unbind_naming_missing_queue_exchange_or_binding_is_ok_pika(shared_broker):
    """RabbitMQ (rabbit_binding:remove): unbinding from or to a queue or exchange that is
    gone answers unbind-ok, as does a binding that does not exist; the channel stays
    open. The default exchange stays refused (403)."""
    conn = connect(shared_broker)
    ch = conn.channel()
    x, q, gone = unique("ux"), unique("uq"), unique("gone")
    ch.exchange_declare(x, "direct")
    ch.queue_declare(q)
    ch.queue_bind(q, x, "k")
    ch.queue_unbind(gone, x, "k")          # missing queue
    ch.queue_unbind(q, gone, "k")          # missing exchange
    ch.queue_unbind(gone, gone, "k")       # both missing
    ch.queue_unbind(q, x, "other-key")     # missing binding
    ch.exchange_unbind(gone, x, "k")       # missing destination exchange
    ch.exchange_unbind(x, gone, "k")       # missing source exchange
    ch.exchange_unbind("amq.direct", x, "k")  # both there, no binding
    ch.queue_unbind(q, x, "k")             # the real one
    ch.queue_unbind(q, x, "k")             # again: gone now
    ch.queue_delete(q)
    ch.queue_unbind(q, x, "k")             # after the queue was deleted
    ch.exchange_delete(x)
    ch.queue_unbind(q, x, "k")             # and its exchange
    assert ch.is_open
    # Still a real channel: a declare works.
    assert ch.queue_declare(q).method.message_count == 0
    ch.queue_delete(q)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_unbind(q, "", q)
    assert e.value.reply_code == 403
    conn.close()


def test_unbind_on_another_connections_exclusive_queue(shared_broker):
    """RabbitMQ checks exclusive access only when there is a binding to remove: a missing
    binding answers ok, a real one is 405 RESOURCE_LOCKED."""
    owner = connect(shared_broker)
    q = owner.channel().queue_declare("", exclusive=True).method.queue
    owner.channel().queue_bind(q, "amq.direct", "k")
    other = connect(shared_broker)
    ch = other.channel()
    ch.queue_unbind(q, "amq.direct", "not-bound")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_unbind(q, "amq.direct", "k")
    assert e.value.reply_code == 405
    other.close()
    owner.close()


def test_unbind_to_an_auto_deleted_destination_exchange_is_ok_pika(shared_broker):
    """aio-pika's test_simple_publish_and_receive_to_bound_exchange cleanup: an auto-delete
    exchange bound to another goes when its own last binding goes, and the bindings to it go
    with it (as on exchange.delete), so unbinding it from its source afterwards is ok."""
    conn = connect(shared_broker)
    ch = conn.channel()
    src, dst, q = unique("src"), unique("dst"), unique("q")
    ch.exchange_declare(src, "direct", auto_delete=True)
    ch.exchange_declare(dst, "direct", auto_delete=True)
    ch.queue_declare(q, exclusive=True)
    ch.queue_bind(q, dst, "k")
    ch.exchange_bind(destination=dst, source=src, routing_key="k")
    ch.basic_publish(src, "k", b"through")
    _, _, body = ch.basic_get(q, auto_ack=True)   # same channel: sees its own publish
    assert body == b"through"
    ch.queue_unbind(q, dst, "k")            # dst's last binding: dst is auto-deleted
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        conn.channel().exchange_declare(dst, passive=True)
    assert e.value.reply_code == 404
    ch.exchange_unbind(destination=dst, source=src, routing_key="k")
    assert ch.is_open
    conn.close()


def test_unbind_after_auto_delete_queue_and_exchange_are_gone_aiopika(shared_broker):
    """aio-pika's cleanup pattern: unbind after the (auto-deleted) queue and exchange went."""
    async def main():
        conn = await aio_pika.connect(url(shared_broker))
        ch = await conn.channel()
        src = await ch.declare_exchange(unique("ap-src"), aio_pika.ExchangeType.TOPIC,
                                        auto_delete=True)
        dst = await ch.declare_exchange(unique("ap-dst"), aio_pika.ExchangeType.FANOUT)
        q = await ch.declare_queue(unique("ap-q"), auto_delete=True, exclusive=True)
        await q.bind(src, "a.#")
        await dst.bind(src, "b.#")
        async def noop(_m):
            pass
        consumer = await q.consume(noop)
        await q.cancel(consumer)            # auto-delete: the queue is gone now
        await q.unbind(src, "a.#")
        # aio-pika 10.2's Exchange.unbind is broken (no `channel` attribute): its
        # aiormq channel sends exchange.unbind.
        underlay = await ch.get_underlay_channel()

        async def exchange_unbind():
            await underlay.exchange_unbind(destination=dst.name, source=src.name,
                                           routing_key="b.#")
        await exchange_unbind()             # last binding: src auto-deleted
        await q.unbind(src, "a.#")
        await exchange_unbind()
        await dst.delete()
        await exchange_unbind()
        assert not ch.is_closed
        await conn.close()
    run(main())


# ------------------------------------------- connection.close behind unread client frames

def _frame(kind: int, channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + b"\xce"


def _method(channel: int, cls: int, mid: int, args: bytes = b"") -> bytes:
    return _frame(1, channel, struct.pack(">HH", cls, mid) + args)


def _shortstr(s: str) -> bytes:
    b = s.encode()
    return bytes([len(b)]) + b


def _longstr(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def _publish(channel: int, queue: str, body: bytes) -> bytes:
    # basic.publish: reserved short, exchange "", routing key, bits; then header and body.
    m = _method(channel, 60, 40, struct.pack(">H", 0) + _shortstr("") + _shortstr(queue)
                + b"\x00")
    header = _frame(2, channel, struct.pack(">HHQH", 60, 0, len(body), 0))
    return m + header + _frame(3, channel, body)


class RawConn:
    """A minimal AMQP client over a socket, to put bytes on the wire no client library
    would send in that order."""

    def __init__(self, port: int):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""

    def read_frame(self):
        while True:
            if len(self.buf) >= 7:
                kind, ch, size = struct.unpack(">BHI", self.buf[:7])
                if len(self.buf) >= 8 + size:
                    payload = self.buf[7:7 + size]
                    self.buf = self.buf[8 + size:]
                    return kind, ch, payload
            data = self.s.recv(65536)
            if not data:
                raise EOFError("server closed the socket")
            self.buf += data

    def read_method(self):
        while True:
            kind, ch, payload = self.read_frame()
            if kind == 1:
                cls, mid = struct.unpack(">HH", payload[:4])
                return ch, cls, mid, payload[4:]

    def open(self):
        self.s.sendall(b"AMQP\x00\x00\x09\x01")
        assert self.read_method()[1:3] == (10, 10)          # start
        self.s.sendall(_method(0, 10, 11, struct.pack(">I", 0) + _shortstr("PLAIN")
                               + _longstr(b"\x00guest\x00guest") + _shortstr("en_US")))
        assert self.read_method()[1:3] == (10, 30)          # tune
        self.s.sendall(_method(0, 10, 31, struct.pack(">HIH", 2047, 131072, 0)))
        self.s.sendall(_method(0, 10, 40, _shortstr("/") + _shortstr("") + b"\x00"))
        assert self.read_method()[1:3] == (10, 41)          # open-ok
        self.s.sendall(_method(1, 20, 10, _shortstr("")))
        assert self.read_method()[1:3] == (20, 11)          # channel.open-ok


def test_close_behind_unread_publishes_gets_close_ok_without_reset(shared_broker):
    """A publisher writes far ahead of the server, then connection.close, and (as amqplib's
    frame multiplexer can) a few publish frames after the close. The server handles every
    frame before the close, answers close-ok, and lets the client close the socket: the
    client reads close-ok and sees an orderly end, never a reset."""
    q = unique("close-behind")
    conn = connect(shared_broker)
    conn.channel().queue_declare(q, durable=True)
    conn.close()

    n = 20000
    before = b"".join(_publish(1, q, b"x" * 200) for _ in range(n))
    close = _method(0, 10, 50, struct.pack(">H", 200) + _shortstr("bye")
                    + struct.pack(">HH", 0, 0))
    # More than the socket buffers hold: the client is still writing when the server
    # has answered the close.
    trailing = _publish(1, q, b"t" * 100_000) * 320

    raw = RawConn(shared_broker.amqp_port)
    raw.open()
    sent: list[BaseException | None] = []

    def write():
        try:
            raw.s.sendall(before + close + trailing)
            sent.append(None)
        except BaseException as e:      # noqa: BLE001 - reported by the assert below
            sent.append(e)

    writer = threading.Thread(target=write)
    writer.start()
    got = raw.read_method()
    assert got[:3] == (0, 10, 51), f"expected connection.close-ok, got {got[:3]}"
    writer.join(60)
    assert sent == [None], f"writing before/after the close failed: {sent}"
    # The server closes its side after close-ok (EOF), without a reset.
    raw.s.settimeout(30)
    assert raw.s.recv(65536) == b""
    raw.s.close()
    # Every publish before the close was handled (RabbitMQ's reader processes them in
    # order); frames after it are discarded (RabbitMQ's closing state).
    assert ready_count(shared_broker, q) == n


def test_pika_close_after_20k_unconfirmed_publishes_completes(shared_broker):
    q = unique("close-pika")
    conn = connect(shared_broker)
    ch = conn.channel()
    ch.queue_declare(q, durable=True)
    for i in range(20000):
        ch.basic_publish("", q, b"y" * 100)
    conn.close()
    assert conn.is_closed
    assert ready_count(shared_broker, q) == 20000


# ------------------------------------------------------------- connection.update-secret

def test_update_secret_is_answered_and_the_connection_goes_on_pika(shared_broker):
    q = unique("update-secret")
    conn = connect(shared_broker)
    ch = conn.channel()
    ch.queue_declare(q)
    conn.update_secret("guest", "token refresh")    # waits for update-secret-ok
    ch.basic_publish("", q, b"after")
    m, _, body = None, None, None
    deadline = time.monotonic() + 10
    while m is None and time.monotonic() < deadline:
        m, _, body = ch.basic_get(q, auto_ack=True)
    assert body == b"after"
    ch.queue_delete(q)
    conn.close()


def test_update_secret_aiormq(shared_broker):
    async def main():
        conn = await aio_pika.connect(url(shared_broker))
        ok = await conn.transport.connection.update_secret("guest", reason="rotation",
                                                           timeout=10)
        assert type(ok).__name__ == "UpdateSecretOk"
        ch = await conn.channel()
        await ch.declare_queue(unique("after-update"), auto_delete=True)
        await conn.close()
    run(main())


# ------------------------------------------------------------------------ AMQPLAIN login

def test_amqplain_login_with_py_amqp_and_wrong_password_is_refused(shared_broker):
    import amqp

    c = amqp.Connection(f"127.0.0.1:{shared_broker.amqp_port}", userid="guest",
                        password="guest", login_method="AMQPLAIN", connect_timeout=10)
    c.connect()
    assert b"AMQPLAIN" in c.mechanisms and b"PLAIN" in c.mechanisms
    ch = c.channel()
    q = unique("amqplain")
    ch.queue_declare(q, auto_delete=False)
    ch.basic_publish(amqp.Message(b"hi"), routing_key=q)
    ch.queue_delete(q)
    c.close()

    bad = amqp.Connection(f"127.0.0.1:{shared_broker.amqp_port}", userid="guest",
                          password="wrong", login_method="AMQPLAIN", connect_timeout=10)
    with pytest.raises(amqp.exceptions.AccessRefused) as e:
        bad.connect()
    assert e.value.reply_code == 403


def test_amqplain_login_through_kombu(shared_broker):
    from kombu import Connection

    with Connection(f"amqp://guest:guest@127.0.0.1:{shared_broker.amqp_port}//",
                    login_method="AMQPLAIN", connect_timeout=10) as c:
        name = unique("kombu-amqplain")
        sq = c.SimpleQueue(name)
        sq.put({"n": 1})
        msg = sq.get(timeout=10)
        assert msg.payload == {"n": 1}
        msg.ack()
        sq.close()
        c.default_channel.queue_delete(name)
    with Connection(f"amqp://guest:nope@127.0.0.1:{shared_broker.amqp_port}//",
                    login_method="AMQPLAIN", connect_timeout=10) as c:
        with pytest.raises(Exception) as e:
            c.connect()
        assert "403" in str(e.value) or "ACCESS_REFUSED" in str(e.value)
