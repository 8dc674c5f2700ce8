"""/metrics on the HTTP listener (`management.listen`): Prometheus text with RabbitMQ's and
kafka_exporter's metric names, checked after a scripted workload by real clients
(confluent-kafka, pika) and parsed with the official Python Prometheus client's parser.
Also the auth rules of RabbitMQ's management listener: 401 without or with wrong
credentials, 403 for a user without the monitoring/administrator tag."""

from __future__ import annotations

import base64
import subprocess
import time
import urllib.error
import urllib.request

import pika
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from broker import Broker, arctern_bin, free_port

pytestmark = pytest.mark.timeout(180)


def get(b: Broker, port: int, user: str | None, password: str | None):
    """(status, headers, body) of GET /metrics."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value}."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(m: dict, name: str, **labels) -> float | None:
    return m.get((name, tuple(sorted((k, str(v)) for k, v in labels.items()))))


def wait_admin_socket(b: Broker, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not (b.data_dir / "admin.sock").exists():
        assert time.monotonic() < deadline, "admin socket never appeared"
        time.sleep(0.1)


def add_user(b: Broker, name: str, password: str, *tags: str) -> None:
    args = [str(arctern_bin()), "users", "add", name, "--password", password,
            "--data-dir", str(b.data_dir)]
    if tags:
        args += ["--tags", ",".join(tags)]
    p = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.fixture
def metrics_broker(broker_factory):
    port = free_port()
    b = broker_factory({"management.listen": f"127.0.0.1:{port}"})
    b.http_port = port
    return b


def test_auth_refusals_as_rabbitmq(metrics_broker):
    b = metrics_broker
    wait_admin_socket(b)
    add_user(b, "watcher", "w-pass", "monitoring")
    add_user(b, "plain", "p-pass")
    status, headers, _ = get(b, b.http_port, None, None)
    assert status == 401
    assert headers.get("WWW-Authenticate") == 'Basic realm="RabbitMQ Management"'
    assert get(b, b.http_port, "guest", "wrong")[0] == 401
    assert get(b, b.http_port, "nobody", "guest")[0] == 401
    assert get(b, b.http_port, "plain", "p-pass")[0] == 403
    status, headers, body = get(b, b.http_port, "watcher", "w-pass")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert get(b, b.http_port, "guest", "guest")[0] == 200


def scrape_until(b: Broker, check, timeout: float = 20.0) -> dict:
    """Scrapes until `check(metrics)` holds (counts settle a moment after the clients)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, _, body = get(b, b.http_port, "guest", "guest")
        except urllib.error.URLError:
            # The HTTP listener binds a moment after the Kafka one the fixture waits for.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
            continue
        assert status == 200
        m = samples(body)
        try:
            check(m)
            return m
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.3)


def test_metrics_after_a_workload(metrics_broker):
    b = metrics_broker
    topic, group = "metrics-t", "metrics-g"
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)]).values():
        f.result(30)
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all"})
    for i in range(10):
        p.produce(topic, f"m{i}".encode(), partition=0)
    for i in range(3):
        p.produce(topic, f"n{i}".encode(), partition=1)
    assert p.flush(30) == 0
    # A consumer group that reads and commits part of partition 0 and all of partition 1.
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)])
    got = 0
    deadline = time.monotonic() + 30
    while got < 13 and time.monotonic() < deadline:
        msg = c.poll(1.0)
        if msg is not None and msg.error() is None:
            got += 1
    assert got == 13
    c.commit(offsets=[TopicPartition(topic, 0, 4), TopicPartition(topic, 1, 3)],
             asynchronous=False)
    c.close()
    leaders = {p.id: p.leader for p in
               admin.list_topics(topic, timeout=10).topics[topic].partitions.values()}

    # AMQP: a queue left with ready messages, one with a consumer holding one unacked
    # delivery (another acked), and one redelivery.
    conn = pika.BlockingConnection(pika.ConnectionParameters(host="127.0.0.1", port=b.amqp_port))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("metrics-ready")
    ch.queue_declare("metrics-consumed")
    for i in range(5):
        ch.basic_publish("", "metrics-ready", f"r{i}".encode())
    for i in range(2):
        ch.basic_publish("", "metrics-consumed", f"c{i}".encode())
    # A redelivery: taken without ack on a channel that closes, then taken again.
    ch2 = conn.channel()
    ch2.queue_declare("metrics-redeliver")
    ch.basic_publish("", "metrics-redeliver", b"x")
    method, _, _ = ch2.basic_get("metrics-redeliver", auto_ack=False)
    assert method is not None and not method.redelivered
    ch2.close()
    ch3 = conn.channel()
    method = None
    deadline = time.monotonic() + 10
    while method is None and time.monotonic() < deadline:
        method, _, _ = ch3.basic_get("metrics-redeliver", auto_ack=False)
    assert method is not None and method.redelivered
    ch3.basic_ack(method.delivery_tag)
    # The consumer stays open while we scrape.
    cons = conn.channel()
    cons.basic_qos(prefetch_count=10)
    tags = []
    cons.basic_consume("metrics-consumed", lambda c, m, p, body: tags.append(m.delivery_tag))
    deadline = time.monotonic() + 10
    while len(tags) < 2 and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.2)
    assert len(tags) == 2
    cons.basic_ack(tags[0])
    conn.process_data_events(time_limit=0.2)

    def check(m):
        q = dict(vhost="/", queue="metrics-ready")
        assert value(m, "rabbitmq_queue_messages_ready", **q) == 5
        assert value(m, "rabbitmq_queue_messages_unacked", **q) == 0
        assert value(m, "rabbitmq_queue_consumers", **q) == 0
        q = dict(vhost="/", queue="metrics-consumed")
        assert value(m, "rabbitmq_queue_messages_ready", **q) == 0
        assert value(m, "rabbitmq_queue_messages_unacked", **q) == 1
        assert value(m, "rabbitmq_queue_consumers", **q) == 1
        assert value(m, "rabbitmq_connections") >= 1
        assert value(m, "rabbitmq_channels") >= 2
        assert value(m, "rabbitmq_global_messages_received_total") >= 8
        assert value(m, "rabbitmq_global_messages_confirmed_total") >= 8
        assert value(m, "rabbitmq_global_messages_delivered_total") >= 4
        assert value(m, "rabbitmq_global_messages_acknowledged_total") >= 2
        assert value(m, "rabbitmq_global_messages_redelivered_total") >= 1
        assert value(m, "rabbitmq_alarms_memory_used_watermark") in (0, 1)
        assert value(m, "rabbitmq_alarms_free_disk_space_watermark") in (0, 1)
        for part, end, committed in ((0, 10, 4), (1, 3, 3)):
            tp = dict(topic=topic, partition=part)
            assert value(m, "kafka_topic_partition_current_offset", **tp) == end
            assert value(m, "kafka_topic_partition_oldest_offset", **tp) == 0
            assert value(m, "kafka_topic_partition_in_sync_replica", **tp) == 1
            assert value(m, "kafka_topic_partition_replicas", **tp) == 1
            assert value(m, "kafka_topic_partition_under_replicated_partition", **tp) == 0
            assert value(m, "kafka_topic_partition_leader", **tp) == leaders[part]
            gp = dict(consumergroup=group, topic=topic, partition=part)
            assert value(m, "kafka_consumergroup_current_offset", **gp) == committed
            # Lag is log end minus committed.
            assert value(m, "kafka_consumergroup_lag", **gp) == end - committed
        assert value(m, "arctern_connections", protocol="amqp") >= 1
        assert value(m, "arctern_kafka_requests_total", api="Produce") >= 1
        assert value(m, "arctern_kafka_requests_total", api="OffsetCommit") >= 1
        assert value(m, "arctern_log_fsyncs_total") is not None
        assert value(m, "arctern_raft_term") >= 1
        assert value(m, "arctern_raft_commit_index") >= 1
        assert value(m, "arctern_disk_free_bytes") > 0

    scrape_until(b, check)
    conn.close()


def test_histograms_traffic_and_memory_after_a_workload(metrics_broker):
    """The broker's own families: latency histograms whose counts match the requests the
    clients made, bytes per protocol, fsyncs and their batches, resident memory."""
    b = metrics_broker
    topic, group = "hist-t", "hist-g"
    before = scrape_until(b, lambda m: None)
    fsyncs_before = value(before, "arctern_fsync_duration_seconds_count") or 0
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).values():
        f.result(30)
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 0})
    for i in range(20):
        p.produce(topic, f"m{i}".encode())
        p.flush(30)
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = 0
    deadline = time.monotonic() + 30
    while got < 20 and time.monotonic() < deadline:
        msg = c.poll(1.0)
        if msg is not None and msg.error() is None:
            got += 1
    assert got == 20
    c.commit(asynchronous=False)
    c.close()

    conn = pika.BlockingConnection(pika.ConnectionParameters(host="127.0.0.1", port=b.amqp_port))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("hist-q")
    ch.queue_declare("hist-q2")
    for i in range(7):
        ch.basic_publish("", "hist-q", f"r{i}".encode())
    acked = 0
    deadline = time.monotonic() + 10
    while acked < 7 and time.monotonic() < deadline:
        method, _, _ = ch.basic_get("hist-q", auto_ack=False)
        if method is not None:
            ch.basic_ack(method.delivery_tag)
            acked += 1
    assert acked == 7
    conn.close()

    def check(m):
        # Every Kafka request observed once: the histogram's count is the request count.
        for api in ("Produce", "Fetch", "OffsetCommit", "Metadata", "ApiVersions"):
            n = value(m, "arctern_kafka_requests_total", api=api)
            assert n and n >= 1, api
            assert value(m, "arctern_kafka_request_duration_seconds_count", api=api) == n, api
            assert value(m, "arctern_kafka_request_duration_seconds_bucket", api=api,
                         le="+Inf") == n, api
            assert value(m, "arctern_kafka_request_duration_seconds_sum", api=api) > 0, api
        # confluent-kafka with acks=all: every Produce request waits for the ISR.
        produces = value(m, "arctern_kafka_requests_total", api="Produce")
        assert produces >= 20
        assert value(m, "arctern_kafka_produce_duration_seconds_count", acks="all") == produces
        # AMQP: two queue.declare, one confirm.select, one channel.open; seven publishes
        # confirmed (basic.publish is timed publish-to-confirm).
        meth = "arctern_amqp_method_duration_seconds_count"
        assert value(m, meth, method="queue.declare") == 2
        assert value(m, meth, method="confirm.select") == 1
        assert value(m, meth, method="channel.open") == 1
        assert value(m, meth, method="basic.get") >= 7
        assert value(m, meth, method="basic.publish") == 7
        assert value(m, "arctern_amqp_confirm_duration_seconds_count") == 7
        assert value(m, "arctern_amqp_confirm_duration_seconds_sum") > 0
        assert value(m, "rabbitmq_global_messages_confirmed_total") == 7
        # Bytes per protocol; RabbitMQ's totals are the AMQP ones.
        for proto in ("kafka", "amqp"):
            assert value(m, "arctern_bytes_received_total", protocol=proto) > 0, proto
            assert value(m, "arctern_bytes_sent_total", protocol=proto) > 0, proto
        assert value(m, "rabbitmq_connection_incoming_bytes_total") == value(
            m, "arctern_bytes_received_total", protocol="amqp")
        assert value(m, "rabbitmq_connection_outgoing_bytes_total") == value(
            m, "arctern_bytes_sent_total", protocol="amqp")
        # fsyncs: the histogram grew, and group-commit batches cover what was written.
        fsyncs = value(m, "arctern_fsync_duration_seconds_count")
        assert fsyncs > fsyncs_before
        assert value(m, "arctern_group_commit_batch_records_count") >= 1
        assert value(m, "arctern_group_commit_batch_records_sum") >= 20
        assert value(m, "arctern_group_commit_batch_bytes_sum") > 0
        assert value(m, "arctern_log_fsyncs_total") >= 1
        # A single node: no ISR changes or elections, but the counters are there.
        assert value(m, "arctern_isr_shrinks_total") == 0
        assert value(m, "arctern_isr_expands_total") == 0
        assert value(m, "arctern_leader_elections_total") == 0
        rss = value(m, "arctern_process_resident_memory_bytes")
        assert rss > 1 << 20
        assert value(m, "rabbitmq_process_resident_memory_bytes") == rss

    m = scrape_until(b, check)
    # The produce histogram is cumulative over its buckets.
    buckets = sorted(
        (float(dict(k[1])["le"]), v) for k, v in m.items()
        if k[0] == "arctern_kafka_produce_duration_seconds_bucket")
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)


def test_prometheus_port_serves_metrics_without_auth(broker_factory):
    """RabbitMQ's `prometheus.tcp.port`: /metrics with no credentials (as RabbitMQ's
    15692), while the management listener still asks for them."""
    mgmt, prom = free_port(), free_port()
    b = broker_factory({"management.listen": f"127.0.0.1:{mgmt}", "prometheus.tcp.port": prom})
    b.http_port = mgmt
    scrape_until(b, lambda m: None)
    deadline = time.monotonic() + 10
    while True:
        try:
            status, headers, body = get(b, prom, None, None)
            break
        except urllib.error.URLError:
            assert time.monotonic() < deadline, "the Prometheus port never answered"
            time.sleep(0.2)
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain")
    m = samples(body)
    assert value(m, "rabbitmq_process_resident_memory_bytes") > 0
    assert value(m, "arctern_raft_term") is not None
    assert get(b, mgmt, None, None)[0] == 401
