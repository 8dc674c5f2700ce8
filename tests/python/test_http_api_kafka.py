"""Kafka objects over the management HTTP API (`/api/kafka/...`): what confluent-kafka's
AdminClient, Producer and Consumer did shows up as topics (partitions, leader, ISR,
configs, offsets) and consumer groups (members, assignments, committed offsets, lag).
Also the management listener's auth rules on these paths: 401 without or with wrong
credentials, 403 for a user without the monitoring/administrator tag, 404 for unknown
objects."""

from __future__ import annotations

import subprocess
import time
import urllib.parse

import pytest
import requests
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from broker import Broker, arctern_bin, free_port

pytestmark = pytest.mark.timeout(180)

GUEST = ("guest", "guest")


@pytest.fixture
def api_broker(broker_factory):
    port = free_port()
    b = broker_factory({"management.listen": f"127.0.0.1:{port}"})
    b.http = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(b.http + "/api/openapi.json", timeout=5)
            return b
        except requests.ConnectionError:
            assert time.monotonic() < deadline, "HTTP listener never answered"
            time.sleep(0.2)


def get(b: Broker, path: str, auth=GUEST) -> requests.Response:
    return requests.get(b.http + path, auth=auth, timeout=10)


def ok(b: Broker, path: str):
    r = get(b, path)
    assert r.status_code == 200, (path, r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/json")
    return r.json()


def until(fn, timeout: float = 20.0):
    """Retries `fn` (which asserts) until it passes; numbers settle a moment after clients."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.3)


def add_user(b: Broker, name: str, password: str, *tags: str) -> None:
    deadline = time.monotonic() + 30
    while not (b.data_dir / "admin.sock").exists():
        assert time.monotonic() < deadline, "admin socket never appeared"
        time.sleep(0.1)
    args = [str(arctern_bin()), "users", "add", name, "--password", password,
            "--data-dir", str(b.data_dir)]
    if tags:
        args += ["--tags", ",".join(tags)]
    p = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr


def test_cluster_and_topics(api_broker):
    b = api_broker
    cluster = ok(b, "/api/kafka/cluster")
    assert cluster["cluster_id"]
    assert len(cluster["nodes"]) == 1
    node = cluster["nodes"][0]
    assert node["alive"] is True
    assert node["port"] == b.port
    assert cluster["controller"] == node["node_id"]
    me = node["node_id"]

    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    topic = "api-orders"
    fs = admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1,
                                       config={"retention.ms": "123456",
                                               "cleanup.policy": "delete"})])
    for f in fs.values():
        f.result(30)
    # Kafka's own view, to compare leaders against.
    md = admin.list_topics(topic, timeout=10).topics[topic]

    rows = ok(b, "/api/kafka/topics")
    assert [r["name"] for r in rows] == sorted(r["name"] for r in rows)
    row = next(r for r in rows if r["name"] == topic)
    assert row == {"name": topic, "internal": False, "partitions": 3,
                   "replication_factor": 1, "under_replicated_partitions": 0,
                   "offline_partitions": 0}

    n = 7
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all"})
    for i in range(n):
        p.produce(topic, f"v{i}".encode(), partition=1)
    assert p.flush(30) == 0

    detail = ok(b, f"/api/kafka/topics/{topic}")
    assert detail["name"] == topic and detail["internal"] is False
    assert detail["configs"]["retention.ms"] == "123456"
    assert detail["configs"]["cleanup.policy"] == "delete"
    # Defaults show as well (what DescribeConfigs lists).
    assert "segment.bytes" in detail["configs"]
    parts = {x["partition"]: x for x in detail["partitions"]}
    assert sorted(parts) == [0, 1, 2]
    for i, x in parts.items():
        assert x["leader"] == md.partitions[i].leader == me
        assert x["replicas"] == [me] and x["isr"] == [me]
        assert x["under_replicated"] is False
        assert x["log_start_offset"] == 0
    assert parts[1]["high_watermark"] == n
    assert parts[0]["high_watermark"] == 0 and parts[2]["high_watermark"] == 0
    assert parts[1]["size_bytes"] > 0

    # A consumer group makes __consumer_offsets; `internal=false` hides it.
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "api-hide",
                  "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(topic, 1, 1)], asynchronous=False)
    c.close()
    everything = {r["name"]: r for r in ok(b, "/api/kafka/topics")}
    assert everything["__consumer_offsets"]["internal"] is True
    visible = [r["name"] for r in ok(b, "/api/kafka/topics?internal=false")]
    assert topic in visible and "__consumer_offsets" not in visible
    assert ok(b, "/api/kafka/topics/__consumer_offsets")["internal"] is True


def test_group_offsets_and_lag(api_broker):
    b = api_broker
    topic, group = "api-lag", "api-lag-group"
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in admin.create_topics([NewTopic(topic, num_partitions=1,
                                           replication_factor=1)]).values():
        f.result(30)
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all"})
    for i in range(10):
        p.produce(topic, f"m{i}".encode(), partition=0)
    assert p.flush(30) == 0

    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group,
                  "client.id": "api-lag-client", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = 0
    deadline = time.monotonic() + 30
    while got < 10 and time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is not None and msg.error() is None:
            got += 1
    assert got == 10
    c.commit(offsets=[TopicPartition(topic, 0, 4, metadata="api")], asynchronous=False)

    def stable_with_lag_6():
        d = ok(b, f"/api/kafka/groups/{urllib.parse.quote(group, safe='')}")
        assert d["state"] == "Stable"
        assert d["protocol_type"] == "consumer"
        assert d["protocol"]
        return d

    d = until(stable_with_lag_6)
    assert d["group_id"] == group
    assert d["coordinator"] == ok(b, "/api/kafka/cluster")["nodes"][0]["node_id"]
    assert len(d["members"]) == 1
    m = d["members"][0]
    assert m["client_id"] == "api-lag-client" and m["member_id"] and m["client_host"]
    assert m["assignments"] == [{"topic": topic, "partition": 0}]
    hw = ok(b, f"/api/kafka/topics/{topic}")["partitions"][0]["high_watermark"]
    assert hw == 10
    # confluent-kafka sends the commit metadata with librdkafka's trailing NUL; the broker
    # stores and returns the bytes as sent (so does Kafka).
    offsets = [dict(o, metadata=o["metadata"].rstrip("\x00")) for o in d["offsets"]]
    assert offsets == [{"topic": topic, "partition": 0, "committed_offset": 4,
                        "log_end_offset": hw, "lag": hw - 4, "metadata": "api"}]
    row = next(g for g in ok(b, "/api/kafka/groups") if g["group_id"] == group)
    assert row == {"group_id": group, "state": "Stable", "protocol_type": "consumer",
                   "members": 1, "total_lag": 6}

    # Another commit moves the lag.
    c.commit(offsets=[TopicPartition(topic, 0, 9)], asynchronous=False)
    o = ok(b, f"/api/kafka/groups/{group}")["offsets"][0]
    assert (o["committed_offset"], o["lag"]) == (9, 1)
    # And so does more data.
    for i in range(5):
        p.produce(topic, b"x", partition=0)
    assert p.flush(30) == 0
    o = ok(b, f"/api/kafka/groups/{group}")["offsets"][0]
    assert (o["log_end_offset"], o["lag"]) == (15, 6)

    c.close()

    def empty():
        d = ok(b, f"/api/kafka/groups/{group}")
        assert d["state"] == "Empty" and d["members"] == []
        return d

    until(empty)
    row = next(g for g in ok(b, "/api/kafka/groups") if g["group_id"] == group)
    assert row["members"] == 0 and row["total_lag"] == 6


def test_unknown_objects_and_auth(api_broker):
    b = api_broker
    add_user(b, "watcher", "w-pass", "monitoring")
    add_user(b, "plain", "p-pass", "management")
    for path in ("/api/kafka/topics/no-such-topic", "/api/kafka/groups/no-such-group"):
        r = get(b, path)
        assert r.status_code == 404, (path, r.text)
        assert r.json() == {"error": "Object Not Found", "reason": "Not Found"}
    paths = ["/api/kafka/cluster", "/api/kafka/topics", "/api/kafka/groups"]
    for path in paths:
        r = get(b, path, auth=None)
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"] == 'Basic realm="RabbitMQ Management"'
        assert r.headers["Content-Type"].startswith("application/json")
        assert get(b, path, auth=("guest", "wrong")).status_code == 401
        # A management user may log in but not see Kafka's objects (RabbitMQ's
        # monitoring rule for cluster-wide views).
        r = get(b, path, auth=("plain", "p-pass"))
        assert r.status_code == 403 and r.json()["error"] == "not_authorised"
        assert get(b, path, auth=("watcher", "w-pass")).status_code == 200
    r = get(b, "/api/kafka/topics?internal=maybe")
    assert r.status_code == 400 and r.json()["error"] == "bad_request"


def test_delete_group(api_broker):
    b = api_broker
    add_user(b, "watcher", "w-pass", "monitoring")
    topic, group = "api-del", "api-del-group"
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in admin.create_topics([NewTopic(topic, num_partitions=1,
                                           replication_factor=1)]).values():
        f.result(30)
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.subscribe([topic])

    def in_state(state: str, poll: bool = False):
        def check():
            if poll:
                c.poll(0.2)
            assert ok(b, f"/api/kafka/groups/{group}")["state"] == state
        return check

    until(in_state("Stable", poll=True))
    c.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    url = f"{b.http}/api/kafka/groups/{group}"
    # Monitoring may look, not delete; a group with members is not deleted (Kafka's
    # NON_EMPTY_GROUP).
    assert requests.delete(url, auth=("watcher", "w-pass"), timeout=10).status_code == 403
    r = requests.delete(url, auth=GUEST, timeout=10)
    assert r.status_code == 409 and r.json()["error"] == "conflict"
    c.close()
    until(in_state("Empty"))
    assert requests.delete(url, auth=GUEST, timeout=10).status_code == 204
    assert get(b, f"/api/kafka/groups/{group}").status_code == 404
    assert group not in [g["group_id"] for g in ok(b, "/api/kafka/groups")]
    assert requests.delete(url, auth=GUEST, timeout=10).status_code == 404
    # Kafka's admin client agrees: the group and its offsets are gone.
    listed = admin.list_consumer_groups().result(30)
    assert group not in [g.group_id for g in listed.valid]
