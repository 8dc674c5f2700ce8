"""The operator CLI (`arctern topics / queues / users / vhosts / permissions / definitions`)
run as the real binary against a real broker; results are checked with clients nobody here
wrote (confluent-kafka's AdminClient, pika)."""
from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pika
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from broker import Broker, arctern_bin

pytestmark = pytest.mark.timeout(180)


def cli(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run([str(arctern_bin()), *args], capture_output=True, text=True, timeout=60,
                       env={**os.environ, **(env or {})})
    if check and p.returncode != 0:
        raise AssertionError(f"arctern {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def wait_admin(b, timeout=60.0):
    """The admin socket exists and the first start's defaults (guest, "/") are applied."""
    deadline = time.monotonic() + timeout
    sock = b.data_dir / "admin.sock"
    while time.monotonic() < deadline:
        if sock.exists():
            p = cli("users", "list", "--json", "--data-dir", str(b.data_dir), check=False)
            if p.returncode == 0 and any(u["name"] == "guest" for u in json.loads(p.stdout)):
                return
        time.sleep(0.2)
    raise AssertionError("admin socket not ready")


def amqp(b) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=b.amqp_port, connection_attempts=30, retry_delay=0.5))


def test_topics_round_trip(broker):
    boot = ["--bootstrap", broker.bootstrap]
    name = f"cli-{uuid.uuid4().hex[:8]}"
    out = cli("topics", "create", name, "--partitions", "3", "--replication-factor", "1",
              "--config", "retention.ms=3600000", *boot).stdout
    assert f"Created topic {name}." in out
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    md = admin.list_topics(timeout=10)
    assert name in md.topics and len(md.topics[name].partitions) == 3

    assert name in cli("topics", "list", *boot).stdout.split()
    assert name in json.loads(cli("topics", "list", "--json", *boot).stdout)

    lines = cli("topics", "describe", name, *boot).stdout.splitlines()
    head = lines[0].split("\t")
    assert head[0] == f"Topic: {name}"
    assert head[1].startswith("TopicId: ") and len(head[1]) > len("TopicId: ")
    assert head[2] == "PartitionCount: 3"
    assert head[3] == "ReplicationFactor: 1"
    assert head[4] == "Configs: retention.ms=3600000"
    assert len(lines) == 4
    for i, line in enumerate(lines[1:]):
        assert line == f"\tTopic: {name}\tPartition: {i}\tLeader: 1\tReplicas: 1\tIsr: 1"

    doc = json.loads(cli("topics", "describe", name, "--json", *boot).stdout)
    assert doc["name"] == name and doc["partition_count"] == 3
    assert doc["configs"]["retention.ms"] == "3600000"
    assert [p["leader"] for p in doc["partitions"]] == [1, 1, 1]

    cli("topics", "alter-config", name, "--set", "retention.bytes=1048576",
        "--delete", "retention.ms", *boot)
    res = ConfigResource(ConfigResource.Type.TOPIC, name)
    configs = admin.describe_configs([res])[res].result(timeout=10)
    assert configs["retention.bytes"].value == "1048576"
    assert configs["retention.ms"].value != "3600000"

    assert f"Deleted topic {name}." in cli("topics", "delete", name, *boot).stdout
    deadline = time.monotonic() + 10
    while name in admin.list_topics(timeout=10).topics:
        assert time.monotonic() < deadline, "topic still listed after delete"
        time.sleep(0.2)

    err = cli("topics", "describe", name, *boot, check=False)
    assert err.returncode != 0


def test_queues_list_purge_delete(broker):
    wait_admin(broker)
    dd = ["--data-dir", str(broker.data_dir)]
    qname = f"q-{uuid.uuid4().hex[:8]}"
    conn = amqp(broker)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare(qname, durable=True)
    for i in range(5):
        ch.basic_publish("", qname, f"m{i}".encode(),
                         pika.BasicProperties(delivery_mode=2))

    rows = json.loads(cli("queues", "list", "--json", *dd).stdout)
    q = next(r for r in rows if r["name"] == qname)
    assert q["vhost"] == "/" and q["durable"] is True
    assert q["messages_ready"] == 5 and q["messages_unacknowledged"] == 0
    assert q["consumers"] == 0

    text = cli("queues", "list", "--vhost", "/", *dd).stdout.splitlines()
    assert "vhost\tname\tdurable\tmessages_ready\tmessages_unacknowledged\tconsumers" in text
    assert f"/\t{qname}\ttrue\t5\t0\t0" in text

    out = cli("queues", "purge", qname, *dd).stdout
    assert "5 messages affected" in out
    assert ch.queue_declare(qname, passive=True).method.message_count == 0

    ch.basic_publish("", qname, b"again", pika.BasicProperties(delivery_mode=2))
    cli("queues", "delete", qname, *dd)
    assert all(r["name"] != qname for r in json.loads(cli("queues", "list", "--json", *dd).stdout))
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare(qname, passive=True)
    assert e.value.reply_code == 404
    conn.close()


def test_json_lists(broker):
    wait_admin(broker)
    dd = ["--data-dir", str(broker.data_dir)]
    assert any(u["name"] == "guest" and "administrator" in u["tags"]
               for u in json.loads(cli("users", "list", "--json", *dd).stdout))
    assert any(v["name"] == "/" for v in json.loads(cli("vhosts", "list", "--json", *dd).stdout))
    perms = json.loads(cli("permissions", "list", "--json", *dd).stdout)
    assert {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"} in perms
    status = json.loads(cli("cluster", "status", "--json",
                            "--bootstrap-server", broker.bootstrap).stdout)
    assert [b["node_id"] for b in status["brokers"]] == [1]
    groups = json.loads(cli("groups", "list", "--json", "--bootstrap-server", broker.bootstrap).stdout)
    assert groups["groups"] == [] or isinstance(groups["groups"], list)


def test_definitions_export_import(broker_factory, tmp_path):
    src = broker_factory()
    dst = broker_factory()
    wait_admin(src)
    wait_admin(dst)
    s = ["--data-dir", str(src.data_dir)]
    d = ["--data-dir", str(dst.data_dir)]
    cli("vhosts", "add", "shop", *s)
    cli("users", "add", "alice", "s3cret", "--tags", "monitoring", *s)
    cli("permissions", "set", "alice", "shop", "^a", "^b", "^c", *s)
    conn = amqp(src)
    ch = conn.channel()
    ch.exchange_declare("orders", "topic", durable=True)
    ch.queue_declare("orders-eu", durable=True, arguments={"x-max-length": 10})
    ch.queue_bind("orders-eu", "orders", "eu.#")
    conn.close()

    path = tmp_path / "defs.json"
    cli("definitions", "export", str(path), *s)
    doc = json.loads(path.read_text())
    alice = next(u for u in doc["users"] if u["name"] == "alice")
    assert alice["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert alice["tags"] == ["monitoring"] and alice["password_hash"]
    assert {"name": "shop"}.items() <= next(v for v in doc["vhosts"] if v["name"] == "shop").items()
    assert {"user": "alice", "vhost": "shop", "configure": "^a", "write": "^b", "read": "^c"} in doc["permissions"]
    q = next(q for q in doc["queues"] if q["name"] == "orders-eu")
    assert q["vhost"] == "/" and q["durable"] and q["arguments"] == {"x-max-length": 10}
    e = next(e for e in doc["exchanges"] if e["name"] == "orders")
    assert e["type"] == "topic"
    assert {"source": "orders", "vhost": "/", "destination": "orders-eu",
            "destination_type": "queue", "routing_key": "eu.#", "arguments": {}} in doc["bindings"]
    assert not any(e["name"].startswith("amq.") or e["name"] == "" for e in doc["exchanges"])
    # stdout export parses too
    assert json.loads(cli("definitions", "export", *s).stdout)["users"]

    cli("definitions", "import", str(path), *d)
    again = json.loads(cli("definitions", "export", *d).stdout)
    for key in ("users", "vhosts", "permissions", "queues", "exchanges", "bindings"):
        assert sorted(map(json.dumps, again[key])) == sorted(map(json.dumps, doc[key])), key
    # the imported exchange routes to the imported queue through the imported binding
    conn = amqp(dst)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("orders", "eu.fr", b"bonjour", pika.BasicProperties(delivery_mode=2))
    assert ch.queue_declare("orders-eu", durable=True, passive=True).method.message_count == 1
    conn.close()
    # the imported hash logs in over AMQP
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=dst.amqp_port, virtual_host="shop",
        credentials=pika.PlainCredentials("alice", "s3cret"), connection_attempts=10, retry_delay=0.5))
    conn.close()


class SaslBroker(Broker):
    """A broker whose Kafka listener is SASL_PLAINTEXT."""

    def cmd(self) -> list[str]:
        c = super().cmd()
        i = c.index("--kafka-listen")
        c[i + 1] = f"SASL_PLAINTEXT://{self.bootstrap}"
        return c


def test_topics_over_sasl_plain(tmp_path):
    b = SaslBroker(tmp_path / "sasl")
    b.start()
    try:
        wait_admin(b)
        boot = ["--bootstrap", b.bootstrap]
        name = f"cli-sasl-{uuid.uuid4().hex[:6]}"
        refused = cli("topics", "list", *boot, "--sasl-username", "guest",
                      "--sasl-password", "wrong", check=False)
        assert refused.returncode != 0 and "SASL authentication" in refused.stderr
        cli("topics", "create", name, "--partitions", "1", *boot,
            "--sasl-username", "guest", "--sasl-password", "guest")
        admin = AdminClient({"bootstrap.servers": b.bootstrap, "security.protocol": "SASL_PLAINTEXT",
                             "sasl.mechanism": "PLAIN", "sasl.username": "guest",
                             "sasl.password": "guest"})
        assert name in admin.list_topics(timeout=10).topics
        auth = ["--bootstrap-server", b.bootstrap, "--sasl-username", "guest"]
        env = {"ARCTERN_SASL_PASSWORD": "guest"}
        status = json.loads(cli("cluster", "status", "--json", *auth, env=env).stdout)
        assert any(t["name"] == name for t in status["topics"])
        assert "groups" in json.loads(cli("groups", "list", "--json", *auth, env=env).stdout)
    finally:
        b.stop()
