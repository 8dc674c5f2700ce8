"""RabbitMQ features beyond AMQP 0-9-1 that client code relies on: alternate exchanges,
single active consumer, priority queues. pika and kombu against the real broker.

Each assertion is RabbitMQ's documented behaviour (the "Alternate Exchanges",
"Consumers — single active consumer" and "Priority Queue Support" guides), so these tests
pass against RabbitMQ too."""
from __future__ import annotations

import time

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
