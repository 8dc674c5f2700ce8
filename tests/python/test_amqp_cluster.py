"""AMQP 0-9-1 on a three-node cluster, with pika: clients may connect to any node, and
SIGKILL of the node serving the queues loses no confirmed message.

Which node serves the vhost is read through the Kafka Metadata API (the leader of the
`__amqp_home` topic, which every queue topic follows); everything else is plain AMQP and
asserts what RabbitMQ documents for quorum queues: confirmed messages survive the loss of
the leader, unacknowledged deliveries come back with `redelivered` set, a client whose
node went away sees its connection closed and reconnects."""
from __future__ import annotations

import time

import pika
import pika.exceptions
import pytest

pytestmark = [pytest.mark.replication, pytest.mark.timeout(300)]

HOME = "__amqp_home"
CONFIG = {"default.replication.factor": 3, "min.insync.replicas": 2}
# What a dropped or refused connection raises in pika.
LOST = (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError,
        pika.exceptions.StreamLostError, ConnectionError, OSError)


def connect(node, **kw):
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=node.amqp_port, connection_attempts=1,
        socket_timeout=10, stack_timeout=40, blocked_connection_timeout=30, **kw))


def connect_retrying(node, timeout=60.0):
    """Connects, retrying while the cluster moves the vhost to another node."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return connect(node)
        except LOST:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def home_of(c) -> int:
    return c.wait_partition(HOME, 0, lambda s: s.leader >= 0, timeout=30).leader


def queue_topics(c) -> list[str]:
    md = c.metadata()
    return [t for t in md.topics if t.startswith("__amqp_q_")]


def body(i: int) -> bytes:
    return f"m-{i:07d}".encode()


def index(b: bytes) -> int:
    return int(b.decode()[2:])


def consume_acking(ch, queue: str, limit: int | None = None) -> list[int]:
    """Consumes (acking each) until `limit` messages or 5 s without one."""
    got = []
    for m, props, b in ch.consume(queue, inactivity_timeout=5):
        if m is None:
            break
        got.append(index(b))
        ch.basic_ack(m.delivery_tag)
        if len(got) == limit:
            break
    ch.cancel()
    return got


def test_clients_may_connect_to_any_node(cluster_factory):
    c = cluster_factory(3, config=CONFIG)
    conns = {n: connect_retrying(c.node(n)) for n in c.ids()}
    home = home_of(c)
    others = [n for n in c.ids() if n != home]

    # Declared through one node, published through another, consumed through the third.
    decl = conns[others[0]].channel()
    decl.queue_declare("orders", durable=True)
    decl.exchange_declare("ex", exchange_type="direct", durable=True)
    decl.queue_bind("orders", "ex", routing_key="new")
    pub = conns[others[1]].channel()
    pub.confirm_delivery()
    for i in range(50):
        pub.basic_publish("ex", "new", body(i), pika.BasicProperties(delivery_mode=2))
    with pytest.raises(pika.exceptions.UnroutableError):
        pub.basic_publish("ex", "nobody", b"x", mandatory=True)
    got = consume_acking(conns[home].channel(), "orders", limit=50)
    assert got == list(range(50))

    # The queue is replicated like a partition and led by the node serving the vhost.
    [topic] = queue_topics(c)
    st = c.wait_partition(topic, 0, lambda s: len(s.isr) == 3, timeout=30)
    assert st.leader == home and sorted(st.replicas) == c.ids()

    # An exclusive queue through a forwarding node belongs to that client's connection.
    ex = conns[others[0]].channel()
    name = ex.queue_declare("", exclusive=True).method.queue
    other = conns[others[1]].channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        other.queue_declare(name, passive=True, exclusive=False)
    assert e.value.reply_code == 405
    for conn in conns.values():
        conn.close()


def test_home_sigkill_loses_no_confirmed_message(cluster_factory):
    """A publisher with confirms and a consumer holding unacked deliveries, both connected to
    nodes that forward to the home; the home is SIGKILLed mid-stream. The clients reconnect
    (to the same nodes) and go on. Every confirmed message is then consumed exactly once;
    those unacked at the kill come back with redelivered=true."""
    c = cluster_factory(3, config=CONFIG)
    setup = connect_retrying(c.node(1))      # the first client creates the home
    home = home_of(c)
    others = [n for n in c.ids() if n != home]
    setup.channel().queue_declare("jobs", durable=True, arguments={"x-queue-type": "quorum"})
    setup.close()

    # A consumer takes 20 deliveries and leaves them unacked.
    holder = connect_retrying(c.node(others[1]))
    hch = holder.channel()
    hch.basic_qos(prefetch_count=20)
    pub = connect_retrying(c.node(others[0]))
    pch = pub.channel()
    pch.confirm_delivery()
    for i in range(20):
        pch.basic_publish("", "jobs", body(i), pika.BasicProperties(delivery_mode=2))
    confirmed = set(range(20))
    held = []
    for m, props, b in hch.consume("jobs", inactivity_timeout=10):
        assert m is not None, "the holder got fewer than 20 deliveries"
        held.append(index(b))
        if len(held) == 20:
            break
    assert sorted(held) == list(range(20))
    time.sleep(1.0)    # the delivered marks reach the followers

    # Publish with confirms; SIGKILL the home after 1000 more confirms; go on after
    # reconnecting until 1000 more are confirmed.
    next_i, killed_at, reconnects = 20, None, 0
    deadline = time.monotonic() + 180
    while True:
        assert time.monotonic() < deadline, \
            f"publisher stuck: {len(confirmed)} confirmed, killed at {killed_at}"
        if killed_at is None and len(confirmed) >= 1020:
            killed_at = len(confirmed)
            c.node(home).kill()
        if killed_at is not None and len(confirmed) >= killed_at + 1000:
            break
        i, next_i = next_i, next_i + 1
        try:
            pch.basic_publish("", "jobs", body(i), pika.BasicProperties(delivery_mode=2))
            confirmed.add(i)
        except LOST:
            # Unconfirmed: may or may not be stored.
            reconnects += 1
            try:
                pub.close()
            except Exception:
                pass
            pub = connect_retrying(c.node(others[0]))
            pch = pub.channel()
            pch.confirm_delivery()
    assert reconnects >= 1, "the publisher never noticed the home going away"
    pub.close()
    # The holder's connection went with the home.
    with pytest.raises(LOST):
        holder.process_data_events(time_limit=1)
        holder.process_data_events(time_limit=1)
        hch.basic_ack(0, multiple=True)
        holder.process_data_events(time_limit=1)

    new_home = home_of(c)
    assert new_home != home
    st = c.wait_partition(queue_topics(c)[0], 0, lambda s: s.leader >= 0, timeout=30)
    assert st.leader == new_home

    # Drain everything through the node that was the publisher's.
    conn = connect_retrying(c.node(others[0]))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=500)
    seen: dict[int, int] = {}
    redelivered: set[int] = set()
    for m, props, b in ch.consume("jobs", inactivity_timeout=5):
        if m is None:
            break
        i = index(b)
        seen[i] = seen.get(i, 0) + 1
        if m.redelivered:
            redelivered.add(i)
        ch.basic_ack(m.delivery_tag)
    conn.close()
    missing = sorted(confirmed - seen.keys())
    twice = sorted(i for i, k in seen.items() if k > 1)
    print(f"\nconfirmed {len(confirmed)}, consumed {len(seen)}, killed at {killed_at}, "
          f"reconnects {reconnects}, home {home} -> {new_home}")
    assert not missing, f"{len(missing)} confirmed messages lost, e.g. {missing[:10]}"
    assert not twice, f"consumed more than once: {twice[:10]}"
    assert set(range(20)) <= redelivered, "deliveries unacked at the kill not redelivered"

    # The killed node comes back as a follower; the vhost stays where it is (no
    # rebalancing moves it back), and the restarted node forwards to it.
    c.node(home).start()
    c.wait_isr(queue_topics(c)[0], 0, timeout=60)
    time.sleep(4)      # past leader.imbalance.check.interval.seconds (3)
    assert home_of(c) == new_home
    back = connect_retrying(c.node(home))
    bch = back.channel()
    bch.confirm_delivery()
    bch.basic_publish("", "jobs", b"after", pika.BasicProperties(delivery_mode=2))
    assert bch.queue_declare("jobs", passive=True).method.message_count == 1
    back.close()


def test_paused_home_is_replaced_and_closes_its_connections_on_resume(cluster_factory):
    """SIGSTOP the serving node: the others fence it and a new node serves the vhost, with
    every confirmed message. On SIGCONT the old node sees it lost the role and closes its
    clients' connections with 320 CONNECTION_FORCED (RabbitMQ's code for a connection
    the broker ends), so no client keeps talking to a node that no longer holds the
    queues."""
    c = cluster_factory(3, config=CONFIG)
    boot = connect_retrying(c.node(1))
    home = home_of(c)
    boot.close()
    old = connect_retrying(c.node(home))
    och = old.channel()
    och.confirm_delivery()
    och.queue_declare("work", durable=True)
    for i in range(100):
        och.basic_publish("", "work", body(i), pika.BasicProperties(delivery_mode=2))

    c.node(home).pause()
    new_home = c.wait_partition(HOME, 0, lambda s: s.leader >= 0 and s.leader != home,
                                timeout=30).leader
    other = next(n for n in c.ids() if n != home)
    conn = connect_retrying(c.node(other))
    ch = conn.channel()
    ch.confirm_delivery()
    for i in range(100, 200):
        ch.basic_publish("", "work", body(i), pika.BasicProperties(delivery_mode=2))

    c.node(home).resume()
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            old.process_data_events(time_limit=0.5)
    assert e.value.reply_code == 320

    got = consume_acking(ch, "work")
    assert sorted(got) == list(range(200))
    assert home_of(c) == new_home
    conn.close()
