"""RabbitMQ's queue arguments and dead-lettering, with pika against the real broker.

Each assertion is RabbitMQ's documented behaviour (TTL and dead-lettering guides, queue
length limits, quorum queue delivery limits, queue expiry): x-death entries, reasons,
which messages a length limit drops, basic.nack for reject-publish."""
from __future__ import annotations

import time

import pika
import pytest

from test_amqp import connect, drain

pytestmark = pytest.mark.timeout(120)

PERSISTENT = pika.BasicProperties(delivery_mode=2)


def wait_count(ch, queue, n, timeout=10.0):
    """Waits until queue.declare(passive) reports n ready messages; returns the last count."""
    deadline = time.monotonic() + timeout
    count = -1
    while time.monotonic() < deadline:
        count = ch.queue_declare(queue, passive=True).method.message_count
        if count == n:
            return count
        time.sleep(0.05)
    return count


def dead_queue(ch, name="dead", exchange="dlx"):
    """A fanout dead-letter exchange with one queue bound to it."""
    ch.exchange_declare(exchange, exchange_type="fanout", durable=True)
    ch.queue_declare(name, durable=True)
    ch.queue_bind(name, exchange)


def death(props):
    xd = props.headers["x-death"]
    assert isinstance(xd, list) and xd, props.headers
    return xd[0]


def test_message_ttl_expires_into_the_dead_letter_exchange(broker):
    conn = connect(broker)
    ch = conn.channel()
    dead_queue(ch)
    ch.queue_declare("ttl", durable=True, arguments={
        "x-message-ttl": 200, "x-dead-letter-exchange": "dlx"})
    ch.confirm_delivery()
    for i in range(3):
        ch.basic_publish("", "ttl", f"m{i}".encode(), PERSISTENT)
    assert wait_count(ch, "ttl", 0) == 0, "expired messages still counted as ready"
    assert wait_count(ch, "dead", 3) == 3
    got = drain(ch, "dead", 3)
    assert [b for _, _, b in got] == [b"m0", b"m1", b"m2"], "dead-lettering keeps order"
    m, props, _ = got[0]
    assert m.exchange == "dlx" and m.routing_key == "ttl"
    d = death(props)
    assert d["reason"] == "expired" and d["queue"] == "ttl" and d["count"] == 1
    assert d["exchange"] == "" and list(d["routing-keys"]) == ["ttl"]
    assert props.headers["x-first-death-reason"] == "expired"
    assert props.headers["x-first-death-queue"] == "ttl"
    assert props.delivery_mode == 2
    conn.close()


def test_per_message_expiration(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("pm")
    ch.confirm_delivery()
    ch.basic_publish("", "pm", b"short", pika.BasicProperties(expiration="100"))
    ch.basic_publish("", "pm", b"keep")
    time.sleep(0.5)
    got = drain(ch, "pm", 2, timeout=1.0)
    assert [b for _, _, b in got] == [b"keep"]
    # An expiration that is not a non-negative integer is refused (406), as RabbitMQ.
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.basic_publish("", "pm", b"x", pika.BasicProperties(expiration="soon"))
        ch.queue_declare("pm", passive=True)
    assert e.value.reply_code == 406
    conn.close()


def test_reject_and_nack_dead_letter_with_the_routing_key_override(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("parking", durable=True)
    ch.queue_declare("work", durable=True, arguments={
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "parking"})
    ch.confirm_delivery()
    for i in range(4):
        ch.basic_publish("", "work", f"w{i}".encode(), PERSISTENT)
    wait_count(ch, "work", 4)
    m0, _, _ = ch.basic_get("work")
    ch.basic_reject(m0.delivery_tag, requeue=False)
    ch.basic_get("work")
    m2, _, _ = ch.basic_get("work")
    ch.basic_nack(m2.delivery_tag, multiple=True, requeue=False)
    m3, _, _ = ch.basic_get("work")
    ch.basic_nack(m3.delivery_tag, requeue=True)   # requeued, not dead-lettered
    assert wait_count(ch, "parking", 3) == 3
    got = drain(ch, "parking", 3)
    assert [b for _, _, b in got] == [b"w0", b"w1", b"w2"]
    m, props, _ = got[0]
    assert m.routing_key == "parking" and m.exchange == ""
    d = death(props)
    assert d["reason"] == "rejected" and d["queue"] == "work"
    assert list(d["routing-keys"]) == ["work"]
    assert ch.queue_declare("work", passive=True).method.message_count == 1
    conn.close()


def test_max_length_drops_the_oldest_and_dead_letters_them(broker):
    conn = connect(broker)
    ch = conn.channel()
    dead_queue(ch)
    ch.queue_declare("bounded", arguments={"x-max-length": 3, "x-dead-letter-exchange": "dlx"})
    ch.confirm_delivery()
    for i in range(5):
        ch.basic_publish("", "bounded", f"b{i}".encode(), PERSISTENT)
    assert wait_count(ch, "bounded", 3) == 3
    assert [b for _, _, b in drain(ch, "bounded", 3)] == [b"b2", b"b3", b"b4"]
    assert wait_count(ch, "dead", 2) == 2
    got = drain(ch, "dead", 2)
    assert [b for _, _, b in got] == [b"b0", b"b1"]
    assert death(got[0][1])["reason"] == "maxlen"
    conn.close()


def test_max_length_bytes_counts_body_bytes(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("bytes", arguments={"x-max-length-bytes": 10})
    ch.confirm_delivery()
    for i in range(3):
        ch.basic_publish("", "bytes", f"abc{i}".encode())
    assert wait_count(ch, "bytes", 2) == 2
    assert [b for _, _, b in drain(ch, "bytes", 2)] == [b"abc1", b"abc2"]
    conn.close()


def test_length_limits_hold_inside_a_burst_of_publishes(broker):
    """Publishes that arrive together are stored together; each still meets the length
    limit in turn: the first three fit, the rest are refused (reject-publish), and
    drop-head keeps the last three."""
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("burst-reject", arguments={"x-max-length": 3, "x-overflow": "reject-publish"})
    ch.queue_declare("burst-drop", arguments={"x-max-length": 3})
    for q in ("burst-reject", "burst-drop"):
        for i in range(10):                  # no confirms: one burst of frames
            ch.basic_publish("", q, f"m{i}".encode())
    assert wait_count(ch, "burst-reject", 3) == 3
    assert [b for _, _, b in drain(ch, "burst-reject", 3)] == [b"m0", b"m1", b"m2"]
    assert wait_count(ch, "burst-drop", 3) == 3
    assert [b for _, _, b in drain(ch, "burst-drop", 3)] == [b"m7", b"m8", b"m9"]
    conn.close()


def test_reject_publish_nacks_and_reject_publish_dlx_dead_letters(broker):
    conn = connect(broker)
    ch = conn.channel()
    dead_queue(ch)
    ch.queue_declare("full", arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    ch.queue_declare("full-dlx", arguments={
        "x-max-length": 1, "x-overflow": "reject-publish-dlx", "x-dead-letter-exchange": "dlx"})
    ch.confirm_delivery()
    ch.basic_publish("", "full", b"1")
    ch.basic_publish("", "full", b"2")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", "full", b"3")
    assert [b for _, _, b in drain(ch, "full", 2)] == [b"1", b"2"]
    assert ch.queue_declare("full", passive=True).method.message_count == 0
    ch.basic_publish("", "full", b"4")   # room again after consuming
    ch.basic_publish("", "full-dlx", b"kept")
    with pytest.raises(pika.exceptions.NackError):
        ch.basic_publish("", "full-dlx", b"refused")
    assert wait_count(ch, "dead", 1) == 1
    m, props, body = drain(ch, "dead", 1)[0]
    assert body == b"refused" and death(props)["reason"] == "maxlen"
    assert [b for _, _, b in drain(ch, "full-dlx", 1)] == [b"kept"]
    conn.close()


def test_delivery_limit_dead_letters_after_too_many_requeues(broker):
    conn = connect(broker)
    ch = conn.channel()
    dead_queue(ch)
    ch.queue_declare("poison", durable=True, arguments={
        "x-queue-type": "quorum", "x-delivery-limit": 2, "x-dead-letter-exchange": "dlx"})
    ch.confirm_delivery()
    ch.basic_publish("", "poison", b"p", PERSISTENT)
    wait_count(ch, "poison", 1)
    deliveries = 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        m, _, _ = ch.basic_get("poison")
        if m is None:
            if ch.queue_declare("dead", passive=True).method.message_count == 1:
                break
            time.sleep(0.05)
            continue
        deliveries += 1
        assert m.redelivered == (deliveries > 1)
        ch.basic_nack(m.delivery_tag, requeue=True)
    # Delivered limit + 1 times: the limit counts unsuccessful returns.
    assert deliveries == 3
    m, props, body = drain(ch, "dead", 1)[0]
    assert body == b"p" and death(props)["reason"] == "delivery_limit"
    conn.close()


def test_unused_queue_expires_and_a_consumed_one_does_not(broker):
    conn = connect(broker)
    ch = conn.channel()
    ch.queue_declare("lease", arguments={"x-expires": 300})
    ch.queue_declare("held", arguments={"x-expires": 300})
    holder = conn.channel()
    holder.basic_consume("held", lambda *a: None)
    time.sleep(1.0)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("lease", passive=True)
    assert e.value.reply_code == 404
    ch = conn.channel()
    assert ch.queue_declare("held", passive=True).method.consumer_count == 1
    conn.close()


@pytest.mark.parametrize("args,text", [
    ({"x-message-ttl": -1}, "value_negative"),
    ({"x-expires": 0}, "value_zero"),
    ({"x-max-length": "ten"}, "unacceptable_type"),
    ({"x-overflow": "sometimes"}, "unknown_value"),
    ({"x-dead-letter-routing-key": "k"}, "x-dead-letter-exchange"),
    ({"x-max-priority": 256}, "max_value_exceeded"),
])
def test_invalid_queue_arguments_are_406(broker, args, text):
    conn = connect(broker)
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("bad", arguments=args)
    assert e.value.reply_code == 406 and text in e.value.reply_text
    conn.close()


def test_expiry_cycle_back_to_the_same_queue_is_broken(broker):
    conn = connect(broker)
    ch = conn.channel()
    # Expired messages go back to the same queue once; the second time RabbitMQ drops them.
    ch.queue_declare("loop", arguments={
        "x-message-ttl": 100, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "loop"})
    ch.basic_publish("", "loop", b"x")
    time.sleep(1.5)
    assert ch.queue_declare("loop", passive=True).method.message_count == 0
    conn.close()


def test_arguments_ttl_and_dead_letters_survive_kill_9(broker):
    conn = connect(broker)
    ch = conn.channel()
    dead_queue(ch)
    args = {"x-message-ttl": 1500, "x-dead-letter-exchange": "dlx", "x-max-length": 100}
    ch.queue_declare("slow", durable=True, arguments=args)
    ch.confirm_delivery()
    for i in range(5):
        ch.basic_publish("", "slow", f"s{i}".encode(), PERSISTENT)
    conn.close()
    broker.restart(kill=True)
    conn = connect(broker)
    ch = conn.channel()
    # Redeclaring with the same arguments is fine; other arguments are 406.
    assert ch.queue_declare("slow", durable=True, arguments=args).method.message_count <= 5
    assert wait_count(ch, "dead", 5, timeout=15) == 5, "TTL counted from the publish, across restart"
    assert [b for _, _, b in drain(ch, "dead", 5)] == [f"s{i}".encode() for i in range(5)]
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare("slow", durable=True, arguments={"x-message-ttl": 10})
    assert e.value.reply_code == 406
    conn.close()
