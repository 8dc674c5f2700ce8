"""The security pieces together, as a deployment uses them (docs/security.md): SASL over
TLS, ACLs for an authenticated user, and one user database behind TLS for both protocols.

Each assertion is what Kafka (SASL_SSL listener, StandardAuthorizer) or RabbitMQ (amqps,
internal users, permissions) does for the same setup.
"""
import ssl
import subprocess
import time
import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient,
                                   NewTopic, ResourcePatternType, ResourceType,
                                   ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialUpsertion)

from broker import arctern_bin, free_port
from test_tls import Pki, TlsBroker, amqp_tls_config, server_config

SASL_SSL = "PLAINTEXT://127.0.0.1:{plain},SASL_SSL://127.0.0.1:{ssl}"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


@pytest.fixture
def pki(tmp_path) -> Pki:
    return Pki(tmp_path / "pki")


@pytest.fixture
def brokers(tmp_path):
    made: list[TlsBroker] = []

    def make(config: dict, listeners: str = SASL_SSL) -> TlsBroker:
        b = TlsBroker(tmp_path / f"b{len(made)}", config, listeners=listeners)
        made.append(b)
        return b.start()

    yield make
    for b in made:
        if b.proc is not None and b.proc.poll() is None:
            b.stop()


def arctern(b: TlsBroker, *args: str) -> str:
    # The admin socket appears once the node has committed its first-start defaults,
    # shortly after the listeners are bound.
    deadline = time.monotonic() + 20
    while not (b.data_dir / "admin.sock").exists():
        assert time.monotonic() < deadline, "no admin socket"
        time.sleep(0.1)
    p = subprocess.run([str(arctern_bin()), *args, "--data-dir", str(b.data_dir)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


def sasl_ssl(b: TlsBroker, pki: Pki, user: str, password: str,
             mechanism: str = "SCRAM-SHA-512", **extra) -> dict:
    return {"bootstrap.servers": b.ssl_bootstrap, "security.protocol": "SASL_SSL",
            "ssl.ca.location": str(pki.ca), "sasl.mechanisms": mechanism,
            "sasl.username": user, "sasl.password": password, "log_level": 3, **extra}


def produce(conf: dict, topic: str, n: int = 3) -> list:
    """Delivery errors (None for each delivered message)."""
    errors = []
    p = Producer({**conf, "message.timeout.ms": 15000, "acks": "all"})
    for i in range(n):
        p.produce(topic, f"m{i}".encode(), on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(30) == 0
    return errors


def test_confluent_sasl_ssl_scram_sha512(brokers, pki, topic_name):
    """The issue's first client test: SASL_SSL + SCRAM-SHA-512, with the user created
    through Kafka's own admin API (KIP-554)."""
    b = brokers(server_config(pki))
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    upsert = UserScramCredentialUpsertion(
        "alice", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), b"alice-secret")
    for f in admin.alter_user_scram_credentials([upsert]).values():
        f.result(15)
    assert produce(sasl_ssl(b, pki, "alice", "alice-secret"), topic_name) == [None] * 3

    from confluent_kafka import Consumer
    c = Consumer(sasl_ssl(b, pki, "alice", "alice-secret", **{
        "group.id": "g-" + topic_name, "auto.offset.reset": "earliest"}))
    try:
        c.subscribe([topic_name])
        got = []
        for _ in range(60):
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got.append(m.value())
            if len(got) == 3:
                break
        assert got == [b"m0", b"m1", b"m2"]
    finally:
        c.close()

    # The wrong password over the same TLS listener is an authentication failure.
    p = Producer({**sasl_ssl(b, pki, "alice", "wrong"), "message.timeout.ms": 5000})
    with pytest.raises(KafkaException) as ei:
        p.list_topics(timeout=10)
    assert ei.value.args[0].code() in (KafkaError._AUTHENTICATION, KafkaError._TRANSPORT,
                                       KafkaError._TIMED_OUT)


def test_acls_apply_to_the_authenticated_user(brokers, pki):
    """A user made with `arctern users add` authenticates with SCRAM over TLS; ACLs that a
    super user creates decide what it may do, and each refusal has Kafka's code."""
    b = brokers(server_config(pki, **{"authorizer.class.name": AUTHORIZER,
                                      "super.users": "User:admin"}))
    arctern(b, "users", "add", "admin", "--password", "admin-pw")
    arctern(b, "users", "add", "alice", "--password", "alice-pw")
    admin = AdminClient(sasl_ssl(b, pki, "admin", "admin-pw", "SCRAM-SHA-256"))
    ok, denied = f"ok-{uuid.uuid4().hex[:8]}", f"no-{uuid.uuid4().hex[:8]}"
    for f in admin.create_topics([NewTopic(ok, 1, 1), NewTopic(denied, 1, 1)]).values():
        f.result(30)
    allow = [AclBinding(ResourceType.TOPIC, "ok-", ResourcePatternType.PREFIXED, "User:alice",
                        "*", op, AclPermissionType.ALLOW)
             for op in (AclOperation.WRITE, AclOperation.DESCRIBE)]
    for f in admin.create_acls(allow).values():
        f.result(15)

    alice = sasl_ssl(b, pki, "alice", "alice-pw")
    assert produce(alice, ok, 2) == [None, None]
    errors = produce(alice, denied, 1)
    assert [e.code() for e in errors] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    # Creating a topic needs CREATE, which alice lacks.
    alice_admin = AdminClient(alice)
    (f,) = alice_admin.create_topics([NewTopic("ok-new", 1, 1)]).values()
    with pytest.raises(KafkaException) as ei:
        f.result(15)
    assert ei.value.args[0].code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                       KafkaError.CLUSTER_AUTHORIZATION_FAILED)
    # And managing ACLs needs ALTER on the cluster.
    (f,) = alice_admin.create_acls(allow[:1]).values()
    with pytest.raises(KafkaException) as ei:
        f.result(15)
    assert ei.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED


def test_a_kafka_made_user_uses_amqps_within_its_permissions(brokers, pki):
    """One user database: a user created with Kafka's AlterUserScramCredentials logs in
    over AMQP with TLS (pika), within the permissions `arctern permissions` gives it; a
    refusal is RabbitMQ's 403 ACCESS_REFUSED."""
    import pika

    amqps = free_port()
    b = brokers(amqp_tls_config(pki, amqps), listeners="PLAINTEXT://127.0.0.1:{plain}")
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    upsert = UserScramCredentialUpsertion(
        "bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"bob-secret")
    for f in admin.alter_user_scram_credentials([upsert]).values():
        f.result(15)
    arctern(b, "permissions", "set", "bob", "/", "^bob-.*", ".*", ".*")

    ctx = ssl.create_default_context(cafile=str(pki.ca))

    def connect(password: str):
        return pika.BlockingConnection(pika.ConnectionParameters(
            host="127.0.0.1", port=amqps, ssl_options=pika.SSLOptions(ctx, "127.0.0.1"),
            credentials=pika.PlainCredentials("bob", password), connection_attempts=1))

    with pytest.raises((pika.exceptions.ProbableAuthenticationError,
                        pika.exceptions.AuthenticationError,
                        pika.exceptions.ConnectionClosedByBroker)) as ei:
        connect("wrong")
    assert "403" in str(ei.value) and "ACCESS_REFUSED" in str(ei.value)
    conn = connect("bob-secret")
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("bob-work")
        ch.basic_publish("", "bob-work", b"over tls")
        method, _, body = ch.basic_get("bob-work", auto_ack=True)
        assert body == b"over tls"
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as ei:
            ch.queue_declare("someone-else")
        assert ei.value.reply_code == 403
    finally:
        if conn.is_open:
            conn.close()
