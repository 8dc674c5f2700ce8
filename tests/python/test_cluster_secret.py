"""`cluster.secret`: cluster traffic accepts only nodes that prove they know the secret.

A three-node cluster with a secret forms and replicates (acks=all, followers in the ISR)
with confluent-kafka; a raw replica Fetch / OffsetsForLeaderEpoch (replica_id >= 0) from a
connection that did not prove membership is refused as Kafka refuses a follower without
CLUSTER_ACTION, and changes nothing; a stranger on the Raft port is closed and logged.
The secret comes from `cluster.secret.file` in one test and `ARCTERN_CLUSTER_SECRET` in
the other. AMQP: pika through the non-home node still works (the forwarding carries a proof); a
forged PROXY line to the home is refused and logged. Without a secret, a multi-node
cluster warns once at start."""
from __future__ import annotations

import json
import socket
import struct
import time

import pika
import pytest
from confluent_kafka import Consumer, Producer

import kwire
from kwire import Reader, array, i8, i16, i32, i64, string

pytestmark = [pytest.mark.replication, pytest.mark.timeout(300)]

SECRET = "test-cluster-secret-0123456789"
CLUSTER_AUTHORIZATION_FAILED = 31
TOPIC_AUTHORIZATION_FAILED = 29


def fetch_v7(corr: int, topic: str, partition: int, offset: int, replica_id: int) -> bytes:
    part = i32(partition) + i64(offset) + i64(-1) + i32(1 << 20)
    body = (i32(replica_id) + i32(100) + i32(1) + i32(1 << 20) + i8(0) + i32(0) + i32(-1)
            + array([string(topic) + array([part])]) + array([]))
    return kwire.request(kwire.API_FETCH, 7, corr, body)


def parse_fetch_v7(payload: bytes) -> tuple[int, list[int]]:
    r = Reader(payload)
    r.i32()                                     # correlation id
    r.i32()                                     # throttle
    top = r.i16()
    r.i32()                                     # session id
    errors = []
    for _ in range(r.i32()):
        r.string()
        for _ in range(r.i32()):
            r.i32()
            errors.append(r.i16())
            r.i64(), r.i64(), r.i64()
            n = r.i32()
            for _ in range(max(n, 0)):
                r.i64(), r.i64()
            r.nbytes()
    return top, errors


def offsets_for_leader_epoch_v3(corr: int, topic: str, partition: int, replica_id: int) -> bytes:
    body = i32(replica_id) + array([string(topic) + array([i32(partition) + i32(-1) + i32(0)])])
    return kwire.request(23, 3, corr, body)


def parse_offsets_for_leader_epoch_v3(payload: bytes) -> list[int]:
    r = Reader(payload)
    r.i32(), r.i32()
    errors = []
    for _ in range(r.i32()):
        r.string()
        for _ in range(r.i32()):
            errors.append(r.i16())
            r.i32(), r.i32(), r.i64()
    return errors


def log_text(node) -> str:
    return "\n".join(p.read_text(errors="replace") for p in node.all_logs())


def wait_log(node, needle: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = log_text(node)
        if needle in text:
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"node {node.node_id} never logged {needle!r}:\n{node.log_tail()}")
        time.sleep(0.2)


def test_secret_cluster_replicates_and_refuses_unproven_replicas(cluster_factory, topic_name,
                                                                 tmp_path):
    # The secret from a file (as advised), left world-readable here to see the warning.
    secret_file = tmp_path / "cluster.secret"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o644)
    c = cluster_factory(3, config={"cluster.secret.file": str(secret_file)})
    for n in c.live_nodes():
        assert "cluster.secret.file is readable by group or others" in log_text(n)
    c.create_topic(topic_name, rf=3, config={"min.insync.replicas": "3"})

    # acks=all with min.insync.replicas=3: only succeeds if both followers replicate.
    p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "log_level": 0})
    errors = []
    for i in range(20):
        p.produce(topic_name, f"m{i}".encode(),
                  on_delivery=lambda err, _m: errors.append(err) if err else None)
    assert p.flush(60) == 0 and errors == []
    before = c.wait_isr(topic_name, 0, isr=[1, 2, 3])
    leader = c.node(before.leader)

    # A replica fetch from a connection that proved nothing: refused, logged.
    with kwire.Conn(leader.bootstrap) as conn:
        top, parts = parse_fetch_v7(conn.roundtrip(fetch_v7(1, topic_name, 0, 0, replica_id=5)))
        assert top == CLUSTER_AUTHORIZATION_FAILED
        assert parts == [TOPIC_AUTHORIZATION_FAILED]
        # Even claiming to be a real follower's id.
        follower = before.followers[0]
        top, parts = parse_fetch_v7(conn.roundtrip(fetch_v7(2, topic_name, 0, 1000,
                                                            replica_id=follower)))
        assert top == CLUSTER_AUTHORIZATION_FAILED
        epochs = parse_offsets_for_leader_epoch_v3(
            conn.roundtrip(offsets_for_leader_epoch_v3(3, topic_name, 0, replica_id=5)))
        assert epochs == [CLUSTER_AUTHORIZATION_FAILED]
        # A consumer's fetch on the same connection is served as before.
        top, parts = parse_fetch_v7(conn.roundtrip(fetch_v7(4, topic_name, 0, 0, replica_id=-1)))
        assert (top, parts) == (0, [0])
    wait_log(leader, "refused a replica request")
    time.sleep(1.0)
    assert c.partition_state(topic_name, 0).key() == before.key()

    # A stranger on the Raft port: a well-formed Vote with a far higher term, no proof.
    vote = {"Vote": {"vote": {"leader_id": {"term": 1000, "node_id": 9}, "committed": False},
                     "last_log_id": None}}
    body = json.dumps(vote).encode()
    with socket.create_connection(("127.0.0.1", leader.raft_port), timeout=10) as s:
        s.sendall(struct.pack(">I", len(body)) + body)
        try:
            assert s.recv(65536) == b""
        except ConnectionResetError:
            pass
    wait_log(leader, "refused metadata rpc connection")
    assert c.partition_state(topic_name, 0).key() == before.key()

    # Consumers see every message.
    cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "g", "log_level": 0,
                     "auto.offset.reset": "earliest"})
    cons.subscribe([topic_name])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 20 and time.monotonic() < deadline:
        m = cons.poll(1.0)
        if m is not None and not m.error():
            got.append(m.value())
    cons.close()
    assert got == [f"m{i}".encode() for i in range(20)]
    for n in c.live_nodes():
        assert "no cluster.secret" not in log_text(n)


def home_of(c) -> int:
    return c.wait_partition("__amqp_home", 0, lambda s: s.leader >= 0, timeout=30).leader


def connect(node):
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=node.amqp_port, connection_attempts=1,
        socket_timeout=10, stack_timeout=40, blocked_connection_timeout=30))


def connect_retrying(node, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return connect(node)
        except (pika.exceptions.AMQPConnectionError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def refused(node, data: bytes) -> bool:
    """Whether the node closes a raw connection that sends `data` without ever starting
    AMQP (Connection.Start is the server's first frame, type 1)."""
    with socket.create_connection(("127.0.0.1", node.amqp_port), timeout=10) as s:
        s.sendall(data)
        got = b""
        s.settimeout(10)
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
        except socket.timeout:
            return False
    return not got.startswith(b"\x01")


def test_amqp_forwarding_carries_a_proof(cluster_factory):
    c = cluster_factory(2, config={"default.replication.factor": 2},
                        env={"ARCTERN_CLUSTER_SECRET": SECRET})
    first = connect_retrying(c.node(1))          # the first client creates the home
    home = home_of(c)
    other = 2 if home == 1 else 1
    first.close()

    # Through the node that is not the home: forwarded with a proof, works as usual.
    conn = connect_retrying(c.node(other))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("jobs", durable=True)
    for i in range(10):
        ch.basic_publish("", "jobs", f"j{i}".encode(), pika.BasicProperties(delivery_mode=2))
    got = []
    for m, _p, b in ch.consume("jobs", inactivity_timeout=5):
        if m is None:
            break
        got.append(b)
        ch.basic_ack(m.delivery_tag)
        if len(got) == 10:
            break
    ch.cancel()
    conn.close()
    assert got == [f"j{i}".encode() for i in range(10)]

    # A forged PROXY line (from loopback, which the address check alone would trust).
    amqp = b"AMQP\x00\x00\x09\x01"
    proxy = b"PROXY TCP4 10.9.8.7 127.0.0.1 40000 5672\r\n"
    assert refused(c.node(home), proxy + amqp)
    wait_log(c.node(home), "no proven cluster node")
    # A forged membership line: right shape, wrong signature.
    now = int(time.time() * 1000)
    token = f"v1.{other}.amqp-forward.{now}.{'00' * 16}.{'11' * 32}"
    assert refused(c.node(home), f"ARCTERN-CLUSTER {token}\r\n".encode() + proxy + amqp)
    wait_log(c.node(home), "invalid cluster membership proof")


def test_multi_node_cluster_without_secret_warns_once(cluster_factory):
    c = cluster_factory(2)
    for n in c.live_nodes():
        assert log_text(n).count("no cluster.secret: cluster traffic") == 1
