"""RabbitMQ features beyond AMQP 0-9-1 that client code relies on: alternate exchanges,
single active consumer, priority queues. pika and kombu against the real broker.

Each assertion is RabbitMQ's documented behaviour (the "Alternate Exchanges",
"Consumers — single active consumer" and "Priority Queue Support" guides), so these tests
pass against RabbitMQ too."""
from __future__ import annotations

import asyncio
import time

import aio_pika
import pika
import pytest

from test_amqp import connect, drain

pytestmark = pytest.mark.timeout(120)

PERSISTENT = pika.BasicProperties(delivery_mode=2)


def bodies(got):
    return [b for _, _, b in got]


# ---- alternate exchanges ----


def declare_ae_topology(ch):
    """main (direct, AE=ae1) -> q-main on 'k'; ae1 (direct, AE=ae2) -> q-ae1 on 'k2';
    ae2 (fanout) -> q-ae2. All durable."""
    ch.exchange_declare("ae2", exchange_type="fanout", durable=True)
    ch.exchange_declare("ae1", exchange_type="direct", durable=True,
                        arguments={"alternate-exchange": "ae2"})
    ch.exchange_declare("main", exchange_type="direct", durable=True,
                        arguments={"alternate-exchange": "ae1"})
    for q, x, k in (("q-main", "main", "k"), ("q-ae1", "ae1", "k2"), ("q-ae2", "ae2", "")):
        ch.queue_declare(q, durable=True)
        ch.queue_bind(q, x, k)


def test_alternate_exchange_takes_unroutable_messages(broker):
    conn = connect(broker)
    ch = conn.channel()
    declare_ae_topology(ch)
    ch.confirm_delivery()
    ch.basic_publish("main", "k", b"routed", PERSISTENT)
    # Unroutable by main, routed by its AE: mandatory gets no basic.return (pika would
    # raise UnroutableError) and the confirm is a plain ack.
    ch.basic_publish("main", "k2", b"to-ae1", PERSISTENT, mandatory=True)
    # Unroutable by main and ae1: the chain goes on to ae2.
    ch.basic_publish("main", "nowhere", b"to-ae2", PERSISTENT, mandatory=True)
    assert bodies(drain(ch, "q-main", 1)) == [b"routed"]
    got = drain(ch, "q-ae1", 1)
    assert bodies(got) == [b"to-ae1"]
    # The message keeps the exchange and routing key it was published with.
    assert got[0][0].exchange == "main" and got[0][0].routing_key == "k2"
    assert bodies(drain(ch, "q-ae2", 1)) == [b"to-ae2"]
    assert ch.basic_get("q-main")[0] is None
    conn.close()


def test_mandatory_is_returned_when_the_alternate_routes_nowhere_either(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.exchange_declare("empty-ae", exchange_type="direct")
    ch.exchange_declare("x", exchange_type="direct", arguments={"alternate-exchange": "empty-ae"})
    # An alternate exchange that does not exist: the message is just unroutable.
    ch.exchange_declare("x-missing", exchange_type="direct",
                        arguments={"alternate-exchange": "no-such-exchange"})
    # A cycle of alternates ends; the message is unroutable.
    ch.exchange_declare("cyc1", exchange_type="direct", arguments={"alternate-exchange": "cyc2"})
    ch.exchange_declare("cyc2", exchange_type="direct", arguments={"alternate-exchange": "cyc1"})
    ch.confirm_delivery()
    for x in ("x", "x-missing", "cyc1"):
        with pytest.raises(pika.exceptions.UnroutableError):
            ch.basic_publish(x, "k", b"m", mandatory=True)
        ch.basic_publish(x, "k", b"m")   # not mandatory: confirmed, dropped
    conn.close()


def test_alternate_exchange_argument_is_checked(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.exchange_declare("with-ae", exchange_type="direct", arguments={"alternate-exchange": "a"})
    ch.exchange_declare("with-ae", exchange_type="direct", arguments={"alternate-exchange": "a"})
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.exchange_declare("with-ae", exchange_type="direct",
                            arguments={"alternate-exchange": "b"})
    assert e.value.reply_code == 406
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.exchange_declare("bad-ae", exchange_type="direct", arguments={"alternate-exchange": 5})
    assert e.value.reply_code == 406
    conn.close()


def test_alternate_exchange_survives_restart(broker):
    conn = connect(broker)
    ch = conn.channel()
    declare_ae_topology(ch)
    conn.close()
    broker.restart()
    conn = connect(broker)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("main", "k2", b"after-restart", PERSISTENT, mandatory=True)
    ch.basic_publish("main", "other", b"after-restart-2", PERSISTENT, mandatory=True)
    assert bodies(drain(ch, "q-ae1", 1)) == [b"after-restart"]
    assert bodies(drain(ch, "q-ae2", 1)) == [b"after-restart-2"]
    conn.close()


# ---- single active consumer ----


class Collector:
    """A pika consumer callback that records (body, redelivered, delivery tag)."""

    def __init__(self):
        self.got = []

    def __call__(self, ch, method, props, body):
        self.got.append((body, method.redelivered, method.delivery_tag))


def spin_all(conns, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for c in conns:
            c.process_data_events(time_limit=0.02)


def spin_until(conns, cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not cond():
        for c in conns:
            c.process_data_events(time_limit=0.02)
    return cond()


def publish_n(ch, queue, n, prefix="m"):
    ch.confirm_delivery()
    for i in range(n):
        ch.basic_publish("", queue, f"{prefix}{i}".encode(), PERSISTENT)


def test_single_active_consumer_only_the_first_consumer_receives(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("sac", durable=True, arguments={"x-single-active-consumer": True})
    publish_n(ch, "sac", 10)
    c1, c2 = connect(broker), connect(broker)
    ch1, ch2 = c1.channel(), c2.channel()
    ch1.basic_qos(prefetch_count=3)
    ch2.basic_qos(prefetch_count=100)
    one, two = Collector(), Collector()
    ch1.basic_consume("sac", one)
    ch2.basic_consume("sac", two)      # consume-ok as usual; it waits
    assert spin_until([c1, c2], lambda: len(one.got) == 3)
    spin_all([c1, c2], 0.5)
    assert [b for b, _, _ in one.got] == [b"m0", b"m1", b"m2"]
    assert two.got == [], "a waiting consumer received messages"
    # Both count as consumers of the queue (RabbitMQ counts waiting ones too).
    assert ch.queue_declare("sac", passive=True).method.consumer_count == 2
    # The active consumer goes on; the waiting one still gets nothing.
    ch1.basic_ack(one.got[0][2])
    assert spin_until([c1, c2], lambda: len(one.got) == 4)
    spin_all([c1, c2], 0.3)
    assert one.got[3][0] == b"m3" and two.got == []
    # The active consumer's channel closes with m1..m3 unacked: they go back, in order,
    # and the next consumer becomes active and gets them (redelivered) before the rest.
    # (Not ch1.close(): pika cancels the consumer before closing, and after a cancel
    # the next consumer would start with the ready m4.. at once.) An unknown delivery
    # tag makes the broker close the channel (406), which is what a crash looks like.
    ch1.basic_ack(9999)
    assert spin_until([c2], lambda: len(two.got) == 9), two.got
    assert [b for b, _, _ in two.got] == [f"m{i}".encode() for i in range(1, 10)]
    assert [r for _, r, _ in two.got] == [True] * 3 + [False] * 6
    for _, _, tag in two.got:
        ch2.basic_ack(tag)
    c1.close()
    c2.close()
    conn.close()


def test_single_active_consumer_cancel_hands_over_the_rest(broker):
    """basic.cancel of the active consumer: the next one takes over the ready messages;
    the cancelled consumer's unacked deliveries stay with its channel (RabbitMQ: a
    cancel does not requeue) and can still be acked."""
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("sac-c", arguments={"x-single-active-consumer": True})
    publish_n(ch, "sac-c", 6)
    c1, c2 = connect(broker), connect(broker)
    ch1, ch2 = c1.channel(), c2.channel()
    ch1.basic_qos(prefetch_count=2)
    one, two = Collector(), Collector()
    tag1 = ch1.basic_consume("sac-c", one)
    ch2.basic_consume("sac-c", two)
    assert spin_until([c1, c2], lambda: len(one.got) == 2)
    ch1.basic_cancel(tag1)
    assert spin_until([c1, c2], lambda: len(two.got) == 4), two.got
    assert [b for b, _, _ in two.got] == [b"m2", b"m3", b"m4", b"m5"]
    for _, _, tag in one.got:
        ch1.basic_ack(tag)
    for _, _, tag in two.got:
        ch2.basic_ack(tag)
    spin_all([c1, c2], 0.3)
    assert ch.queue_declare("sac-c", passive=True).method.message_count == 0
    c1.close()
    c2.close()
    conn.close()


def test_single_active_consumer_higher_priority_takes_over_after_the_pending_settle(broker):
    """RabbitMQ's quorum queues (3.12+): a consumer registering with a higher x-priority
    becomes the active one once the active consumer's pending messages are settled; the
    active one gets nothing more meanwhile."""
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("sac-p", durable=True, arguments={
        "x-queue-type": "quorum", "x-single-active-consumer": True})
    publish_n(ch, "sac-p", 6)
    c1, c2 = connect(broker), connect(broker)
    ch1, ch2 = c1.channel(), c2.channel()
    ch1.basic_qos(prefetch_count=2)
    ch2.basic_qos(prefetch_count=10)
    low, high = Collector(), Collector()
    ch1.basic_consume("sac-p", low)
    assert spin_until([c1], lambda: len(low.got) == 2)
    ch2.basic_consume("sac-p", high, arguments={"x-priority": 10})
    ch1.basic_ack(low.got[0][2])
    spin_all([c1, c2], 0.5)
    assert [b for b, _, _ in low.got] == [b"m0", b"m1"], "the draining consumer got more"
    assert high.got == [], "took over before the pending message was settled"
    ch1.basic_ack(low.got[1][2])
    assert spin_until([c1, c2], lambda: len(high.got) == 4), high.got
    assert [b for b, _, _ in high.got] == [b"m2", b"m3", b"m4", b"m5"]
    assert len(low.got) == 2
    c1.close()
    c2.close()
    conn.close()


def test_single_active_consumer_arguments(broker):
    conn = connect(broker)
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("sac-bad", arguments={"x-single-active-consumer": "yes"})
    assert e.value.reply_code == 406
    ch = conn.channel()
    ch.queue_declare("sac-q", arguments={"x-single-active-consumer": True})
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("sac-q", arguments={"x-single-active-consumer": False})
    assert e.value.reply_code == 406
    # An exclusive consumer on a single-active-consumer queue: 403, as RabbitMQ.
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.basic_consume("sac-q", lambda *a: None, exclusive=True)
    assert e.value.reply_code == 403
    conn.close()


# ---- priority queues ----

# (body, priority property) in publish order; the expected delivery order is by priority
# (capped at x-max-priority=10; none = 0), FIFO within a priority.
MIXED = [(b"none-a", None), (b"p1-a", 1), (b"p5-a", 5), (b"p0", 0), (b"p10", 10),
         (b"p5-b", 5), (b"p200", 200), (b"p1-b", 1), (b"none-b", None)]
EXPECTED = [b"p10", b"p200", b"p5-a", b"p5-b", b"p1-a", b"p1-b", b"none-a", b"p0", b"none-b"]


def publish_mixed(ch, queue):
    ch.confirm_delivery()
    for body, prio in MIXED:
        ch.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2, priority=prio))


def get_all(ch, queue, n):
    out = []
    for _ in range(n):
        m, props, body = ch.basic_get(queue, auto_ack=True)
        assert m is not None, f"only got {out}"
        out.append(body)
    assert ch.basic_get(queue)[0] is None
    return out


def test_priority_queue_get_returns_the_highest_priority_first(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("prio", durable=True, arguments={"x-max-priority": 10})
    publish_mixed(ch, "prio")
    # A requeued message keeps its priority and its place.
    m, _, body = ch.basic_get("prio")
    assert body == b"p10"
    ch.basic_nack(m.delivery_tag, requeue=True)
    m, _, body = ch.basic_get("prio")
    assert body == b"p10" and m.redelivered
    ch.basic_reject(m.delivery_tag, requeue=True)
    assert get_all(ch, "prio", len(MIXED)) == EXPECTED
    # Without x-max-priority the priority property is ignored: FIFO.
    ch.queue_declare("no-prio")
    publish_mixed(ch, "no-prio")
    assert get_all(ch, "no-prio", len(MIXED)) == [b for b, _ in MIXED]
    conn.close()


def test_priority_queue_consumer_and_order_after_restart(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("prio-d", durable=True, arguments={"x-max-priority": 10})
    publish_mixed(ch, "prio-d")
    conn.close()
    broker.restart(kill=True)   # confirmed: every message survives SIGKILL, in order
    conn = connect(broker)
    ch = conn.channel()
    assert ch.queue_declare("prio-d", durable=True,
                            arguments={"x-max-priority": 10}).method.message_count == len(MIXED)
    ch.basic_qos(prefetch_count=1)
    got = []
    for m, _, body in ch.consume("prio-d", inactivity_timeout=5):
        assert m is not None, f"only got {got}"
        got.append(body)
        ch.basic_ack(m.delivery_tag)
        if len(got) == len(MIXED):
            break
    ch.cancel()
    assert got == EXPECTED
    conn.close()


def test_priority_queue_with_max_length_drops_the_head(broker):
    """With x-max-length, drop-head drops the head: the next message to deliver, i.e. the
    oldest of the highest priority (RabbitMQ's documented interaction)."""
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("prio-ml", arguments={"x-max-priority": 5, "x-max-length": 2})
    ch.confirm_delivery()
    for body, prio in ((b"low", 1), (b"high", 5), (b"mid", 3)):
        ch.basic_publish("", "prio-ml", body, pika.BasicProperties(priority=prio))
    assert get_all(ch, "prio-ml", 2) == [b"mid", b"low"]
    conn.close()


def test_priority_queue_ttl_expires_at_the_head(broker):
    """TTL expires messages at the head, in delivery order: an expired high-priority head
    goes; an expired low-priority message waits behind a live higher one (RabbitMQ
    documents that it stays counted), and goes once it reaches the head."""
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("prio-ttl", arguments={"x-max-priority": 5})
    ch.confirm_delivery()
    ch.basic_publish("", "prio-ttl", b"high-exp", pika.BasicProperties(priority=5, expiration="50"))
    ch.basic_publish("", "prio-ttl", b"low-exp", pika.BasicProperties(priority=1, expiration="50"))
    ch.basic_publish("", "prio-ttl", b"mid-live", pika.BasicProperties(priority=3))
    deadline = time.monotonic() + 10
    while ch.queue_declare("prio-ttl", passive=True).method.message_count != 2:
        assert time.monotonic() < deadline, "the expired head was not removed"
        time.sleep(0.05)
    time.sleep(0.3)
    assert ch.queue_declare("prio-ttl", passive=True).method.message_count == 2
    m, _, body = ch.basic_get("prio-ttl", auto_ack=True)
    assert body == b"mid-live"
    assert ch.basic_get("prio-ttl")[0] is None, "an expired message was delivered"
    assert ch.queue_declare("prio-ttl", passive=True).method.message_count == 0
    conn.close()


@pytest.mark.parametrize("value", [-1, 256, "ten"])
def test_invalid_max_priority_is_406(broker, value):
    conn = connect(broker)
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("prio-bad", arguments={"x-max-priority": value})
    assert e.value.reply_code == 406
    conn.close()


def test_kombu_priority_queue(broker):
    """kombu (as Celery uses it): a Queue with x-max-priority and publishes with a priority;
    the consumer sees the highest priority first."""
    from kombu import Connection, Consumer, Producer, Queue

    q = Queue("k-prio", routing_key="k-prio", queue_arguments={"x-max-priority": 9},
              durable=True)
    with Connection(f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}//", connect_timeout=10,
                    transport_options={"confirm_publish": True}) as conn:
        producer = Producer(conn.channel(), serializer="json")   # the default exchange
        for i, prio in enumerate([0, 3, 9, 3, 1]):
            producer.publish({"i": i, "p": prio}, routing_key="k-prio", declare=[q],
                             priority=prio, retry=False)
        got = []

        def on_message(body, message):
            got.append((body["p"], body["i"]))
            message.ack()

        ch = conn.channel()
        ch.basic_qos(0, 1, False)
        with Consumer(ch, queues=[q], callbacks=[on_message], accept=["json"]):
            deadline = time.monotonic() + 20
            while len(got) < 5 and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=1)
                except TimeoutError:
                    pass
        assert got == [(9, 2), (3, 1), (3, 3), (1, 4), (0, 0)]


def test_aio_pika_alternate_exchange(broker):
    """aio-pika: a topic exchange declared with an alternate exchange; a publish with
    mandatory=True that only the alternate routes is not returned."""

    async def main():
        conn = await aio_pika.connect_robust(
            f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}/")
        async with conn:
            ch = await conn.channel(publisher_confirms=True)
            ae = await ch.declare_exchange("aio-ae", aio_pika.ExchangeType.FANOUT)
            x = await ch.declare_exchange("aio-x", aio_pika.ExchangeType.TOPIC,
                                          arguments={"alternate-exchange": "aio-ae"})
            routed = await ch.declare_queue("aio-routed")
            rest = await ch.declare_queue("aio-rest")
            await routed.bind(x, "orders.*")
            await rest.bind(ae)
            await x.publish(aio_pika.Message(b"order"), "orders.new", mandatory=True)
            await x.publish(aio_pika.Message(b"other"), "audit.new", mandatory=True)
            got = {}
            for q in (routed, rest):
                m = await q.get(timeout=5)
                await m.ack()
                got[q.name] = m.body
            return got

    got = asyncio.run(asyncio.wait_for(main(), 60))
    assert got == {"aio-routed": b"order", "aio-rest": b"other"}
