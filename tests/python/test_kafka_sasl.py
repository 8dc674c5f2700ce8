"""Kafka SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) on a SASL_PLAINTEXT listener, and the
SCRAM admin APIs (KIP-554), with confluent-kafka, kafka-python and aiokafka, plus raw
sockets for the connection rules Kafka's SaslServerAuthenticator enforces.

The bootstrap user is the default guest/guest, which the first start creates with SCRAM
credentials. Tests that make logins fail start their own broker: the failed-login limiter
is per source address, and every client here is 127.0.0.1.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import socket
import struct
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

import kwire
from broker import Broker

API_SASL_HANDSHAKE = 17
API_SASL_AUTHENTICATE = 36
UNSUPPORTED_SASL_MECHANISM = 33
ILLEGAL_SASL_STATE = 34
SASL_AUTHENTICATION_FAILED = 58


class SaslBroker(Broker):
    """A broker whose Kafka listener is SASL_PLAINTEXT."""

    def cmd(self) -> list[str]:
        c = super().cmd()
        i = c.index("--kafka-listen")
        c[i + 1] = f"SASL_PLAINTEXT://{self.bootstrap}"
        return c


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory):
    b = SaslBroker(tmp_path_factory.mktemp("sasl"))
    b.start()
    wait_initialized(b)
    yield b
    if b.died_unexpectedly():
        print(b.log_tail())
    b.stop()
    assert not b.died_unexpectedly()


@pytest.fixture
def own_broker(tmp_path):
    brokers = []

    def make(config: dict | None = None):
        b = SaslBroker(tmp_path / f"b{len(brokers)}", config=config)
        brokers.append(b)
        b.start()
        wait_initialized(b)
        return b

    yield make
    for b in brokers:
        died = b.died_unexpectedly()
        if died:
            print(b.log_tail())
        b.stop()
        assert not died, "broker died"


def wait_initialized(b: Broker, timeout: float = 20.0):
    """Until the default user exists (the first start proposes it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = admin_socket(b, "State")["State"]
            if "guest" in state.get("users", {}):
                return
        except (OSError, KeyError, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError("default user never appeared")


def admin_socket(b: Broker, request) -> dict:
    """One raw JSON request on the node's admin socket (what the arctern CLI sends)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(b.data_dir / "admin.sock"))
        s.sendall(json.dumps(request).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)


def conf(b: Broker, mechanism: str, user: str, password: str, **extra) -> dict:
    c = {"bootstrap.servers": b.bootstrap, "security.protocol": "SASL_PLAINTEXT",
         "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password}
    c.update(extra)
    return c


def guest_admin(b: Broker) -> AdminClient:
    return AdminClient(conf(b, "SCRAM-SHA-512", "guest", "guest"))


def create_scram_user(b: Broker, user: str, password: str, mechanism: ScramMechanism,
                      iterations: int = 4096):
    admin = guest_admin(b)
    futs = admin.alter_user_scram_credentials([
        UserScramCredentialUpsertion(user, ScramCredentialInfo(mechanism, iterations),
                                     password.encode())])
    for f in futs.values():
        f.result(timeout=30)


def produce_consume(b: Broker, mechanism: str, user: str, password: str):
    topic = f"sasl-{uuid.uuid4().hex[:8]}"
    p = Producer(conf(b, mechanism, user, password))
    for i in range(5):
        p.produce(topic, value=f"m{i}".encode())
    assert p.flush(30) == 0
    c = Consumer(conf(b, mechanism, user, password, **{
        "group.id": f"g-{topic}", "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 5 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.close()
    assert got == [f"m{i}".encode() for i in range(5)]


# ------------------------------------------------------------------ raw wire helpers

def handshake(conn: kwire.Conn, mechanism: str, corr: int = 1, version: int = 1):
    frame = conn.roundtrip(kwire.request(API_SASL_HANDSHAKE, version, corr,
                                         kwire.string(mechanism)))
    assert struct.unpack(">i", frame[:4])[0] == corr
    body = frame[4:]
    (err,) = struct.unpack(">h", body[:2])
    (n,) = struct.unpack(">i", body[2:6])
    pos, mechs = 6, []
    for _ in range(n):
        (ln,) = struct.unpack(">h", body[pos:pos + 2])
        mechs.append(body[pos + 2:pos + 2 + ln].decode())
        pos += 2 + ln
    return err, mechs


def authenticate(conn: kwire.Conn, token: bytes, corr: int = 2):
    """SaslAuthenticate v1: (error_code, error_message, auth_bytes)."""
    frame = conn.roundtrip(kwire.request(API_SASL_AUTHENTICATE, 1, corr, kwire.nbytes(token)))
    assert struct.unpack(">i", frame[:4])[0] == corr
    body = frame[4:]
    (err,) = struct.unpack(">h", body[:2])
    (ln,) = struct.unpack(">h", body[2:4])
    pos = 4
    msg = None
    if ln >= 0:
        msg = body[pos:pos + ln].decode()
        pos += ln
    (bl,) = struct.unpack(">i", body[pos:pos + 4])
    authenticate.session_lifetime_ms = struct.unpack(">q", body[pos + 4 + bl:pos + 12 + bl])[0]
    return err, msg, body[pos + 4:pos + 4 + bl]


def raw_scram(conn: kwire.Conn, user: str, password: str, mech: str = "SCRAM-SHA-256"):
    """A complete RFC 5802 client exchange; returns the final (error, message, bytes)."""
    h = hashlib.sha256 if mech == "SCRAM-SHA-256" else hashlib.sha512
    assert handshake(conn, mech)[0] == 0
    cnonce = base64.b64encode(os.urandom(18)).decode()
    bare = f"n={user},r={cnonce}"
    err, msg, server_first = authenticate(conn, f"n,,{bare}".encode())
    if err:
        return err, msg, server_first
    fields = dict(f.split("=", 1) for f in server_first.decode().split(","))
    assert fields["r"].startswith(cnonce)
    salted = hashlib.pbkdf2_hmac(h().name, password.encode(), base64.b64decode(fields["s"]),
                                 int(fields["i"]))
    without = f"c=biws,r={fields['r']}"
    auth_message = f"{bare},{server_first.decode()},{without}".encode()
    client_key = hmac.new(salted, b"Client Key", h).digest()
    sig = hmac.new(h(client_key).digest(), auth_message, h).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, sig))
    err, msg, final = authenticate(
        conn, f"{without},p={base64.b64encode(proof).decode()}".encode(), corr=3)
    if err == 0:
        server_key = hmac.new(salted, b"Server Key", h).digest()
        expect = hmac.new(server_key, auth_message, h).digest()
        assert final == b"v=" + base64.b64encode(expect)
    return err, msg, final


# ------------------------------------------------------------------ real clients

@pytest.mark.parametrize("mech", [ScramMechanism.SCRAM_SHA_512, ScramMechanism.SCRAM_SHA_256])
def test_scram_confluent_produce_consume(sasl_broker, mech):
    name = "SCRAM-SHA-512" if mech == ScramMechanism.SCRAM_SHA_512 else "SCRAM-SHA-256"
    user = f"u{uuid.uuid4().hex[:6]}"
    create_scram_user(sasl_broker, user, "p@ss,=word", mech)
    produce_consume(sasl_broker, name, user, "p@ss,=word")


def test_plain_kafka_python(sasl_broker):
    from kafka import KafkaConsumer, KafkaProducer
    topic = f"plain-{uuid.uuid4().hex[:8]}"
    auth = dict(bootstrap_servers=sasl_broker.bootstrap, security_protocol="SASL_PLAINTEXT",
                sasl_mechanism="PLAIN", sasl_plain_username="guest",
                sasl_plain_password="guest")
    p = KafkaProducer(**auth)
    for i in range(3):
        p.send(topic, f"v{i}".encode()).get(timeout=30)
    p.close()
    c = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=10000, **auth)
    got = [m.value for m in c]
    c.close()
    assert got == [b"v0", b"v1", b"v2"]


def test_scram_aiokafka(sasl_broker):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    user = f"a{uuid.uuid4().hex[:6]}"
    create_scram_user(sasl_broker, user, "aio-secret", ScramMechanism.SCRAM_SHA_256)
    topic = f"aio-{uuid.uuid4().hex[:8]}"
    auth = dict(bootstrap_servers=sasl_broker.bootstrap, security_protocol="SASL_PLAINTEXT",
                sasl_mechanism="SCRAM-SHA-256", sasl_plain_username=user,
                sasl_plain_password="aio-secret")

    async def run():
        p = AIOKafkaProducer(**auth)
        await p.start()
        try:
            await p.send_and_wait(topic, b"hello")
        finally:
            await p.stop()
        c = AIOKafkaConsumer(topic, auto_offset_reset="earliest", **auth)
        await c.start()
        try:
            m = await asyncio.wait_for(c.getone(), 30)
        finally:
            await c.stop()
        return m.value

    assert asyncio.run(run()) == b"hello"


def test_describe_user_scram_credentials(sasl_broker):
    user = f"d{uuid.uuid4().hex[:6]}"
    create_scram_user(sasl_broker, user, "pw", ScramMechanism.SCRAM_SHA_256, iterations=8192)
    admin = guest_admin(sasl_broker)
    desc = admin.describe_user_scram_credentials([user])[user].result(timeout=30)
    infos = [(i.mechanism, i.iterations) for i in desc.scram_credential_infos]
    assert infos == [(ScramMechanism.SCRAM_SHA_256, 8192)]
    everyone = admin.describe_user_scram_credentials().result(timeout=30)
    assert user in everyone and "guest" in everyone
    assert sorted(i.mechanism for i in everyone["guest"].scram_credential_infos) == sorted(
        [ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512])
    with pytest.raises(KafkaException) as e:
        admin.describe_user_scram_credentials(["nobody-here"])["nobody-here"].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.RESOURCE_NOT_FOUND


def test_alter_validation(sasl_broker):
    admin = guest_admin(sasl_broker)
    futs = admin.alter_user_scram_credentials([
        UserScramCredentialUpsertion("few", ScramCredentialInfo(
            ScramMechanism.SCRAM_SHA_256, 100), b"pw")])
    with pytest.raises(KafkaException) as e:
        futs["few"].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.UNACCEPTABLE_CREDENTIAL
    futs = admin.alter_user_scram_credentials([
        UserScramCredentialDeletion("ghost-user", ScramMechanism.SCRAM_SHA_512)])
    with pytest.raises(KafkaException) as e:
        futs["ghost-user"].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.RESOURCE_NOT_FOUND


def test_amqp_user_logs_in_with_plain(sasl_broker):
    """One user database: a user with only a RabbitMQ password hash (as the AMQP side
    stores it) logs in over Kafka SASL PLAIN."""
    from kafka import KafkaProducer
    salt = os.urandom(4)
    pw_hash = base64.b64encode(salt + hashlib.sha256(salt + b"rabbit-pw").digest()).decode()
    r = admin_socket(sasl_broker, {"Propose": {"PutUser": {
        "name": "rabbit", "user": {"password_hash": pw_hash, "scram": {}, "tags": []}}}})
    assert r == {"Result": "Ok"}, r
    p = KafkaProducer(bootstrap_servers=sasl_broker.bootstrap,
                      security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                      sasl_plain_username="rabbit", sasl_plain_password="rabbit-pw")
    p.send(f"rabbit-{uuid.uuid4().hex[:6]}", b"x").get(timeout=30)
    p.close()


def test_raw_scram_exchange(sasl_broker):
    """The RFC 5802 exchange byte by byte, including the server signature."""
    with kwire.Conn(sasl_broker.bootstrap) as c:
        err, msg, _ = raw_scram(c, "guest", "guest", "SCRAM-SHA-512")
        assert (err, msg) == (0, None)
        # Authenticated: ordinary requests are served now.
        md = kwire.parse_metadata_v4(c.roundtrip(kwire.metadata_v4(9, None)))
        assert md["brokers"]


# ------------------------------------------------------------------ failures

def test_wrong_password_confluent(own_broker):
    b = own_broker()
    errors = []
    p = Producer(conf(b, "SCRAM-SHA-256", "guest", "not-the-password",
                      error_cb=lambda e: errors.append(e)))
    with pytest.raises(KafkaException):
        p.list_topics(timeout=5)
    p.poll(1)           # error_cb runs from poll()
    auth = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
    assert auth, errors
    assert "Authentication failed" in auth[0].str()


def test_wrong_password_and_unknown_user_look_alike(own_broker):
    b = own_broker()
    answers = []
    for user, pw in [("guest", "wrong"), ("no-such-user", "guest")]:
        with kwire.Conn(b.bootstrap) as c:
            err, msg, _ = raw_scram(c, user, pw)
            answers.append((err, msg))
            assert c.closed_by_peer(), "Kafka closes after a failed authentication"
    assert answers[0][0] == SASL_AUTHENTICATION_FAILED
    assert answers[0] == answers[1]


def test_wrong_password_aiokafka(own_broker, caplog):
    """aiokafka reports the broker's error 58 (SaslAuthenticationFailed) and gives up."""
    import logging
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaConnectionError
    b = own_broker()

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=b.bootstrap, security_protocol="SASL_PLAINTEXT",
                             sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="guest",
                             sasl_plain_password="bad")
        try:
            await p.start()
        finally:
            await p.stop()

    with caplog.at_level(logging.ERROR, logger="aiokafka"):
        with pytest.raises(KafkaConnectionError):
            asyncio.run(run())
    assert "[Error 58] SaslAuthenticationFailed" in caplog.text
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in caplog.text


def test_deleted_credential_cannot_log_in(own_broker):
    b = own_broker()
    create_scram_user(b, "temp", "temp-pw", ScramMechanism.SCRAM_SHA_256)
    with kwire.Conn(b.bootstrap) as c:
        assert raw_scram(c, "temp", "temp-pw")[0] == 0
    admin = guest_admin(b)
    for f in admin.alter_user_scram_credentials([
            UserScramCredentialDeletion("temp", ScramMechanism.SCRAM_SHA_256)]).values():
        f.result(timeout=30)
    with pytest.raises(KafkaException) as e:
        admin.describe_user_scram_credentials(["temp"])["temp"].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.RESOURCE_NOT_FOUND
    with kwire.Conn(b.bootstrap) as c:
        assert raw_scram(c, "temp", "temp-pw")[0] == SASL_AUTHENTICATION_FAILED


def test_unknown_mechanism(sasl_broker):
    with kwire.Conn(sasl_broker.bootstrap) as c:
        err, mechs = handshake(c, "GSSAPI")
        assert err == UNSUPPORTED_SASL_MECHANISM
        assert mechs == ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
        assert c.closed_by_peer()


def test_request_before_authentication_closes(sasl_broker):
    with kwire.Conn(sasl_broker.bootstrap) as c:
        # ApiVersions is allowed before authentication...
        av = kwire.parse_api_versions_v0(c.roundtrip(kwire.api_versions_v0(1)))
        assert av["error_code"] == 0
        keys = {k[0] for k in av["api_keys"]}
        assert API_SASL_HANDSHAKE in keys and API_SASL_AUTHENTICATE in keys
        # ...Metadata is not: the connection is closed without an answer.
        c.send(kwire.metadata_v4(2, None))
        assert c.closed_by_peer()


def test_out_of_order_and_oversize_sasl_frames(sasl_broker):
    # SaslAuthenticate without a handshake.
    with kwire.Conn(sasl_broker.bootstrap) as c:
        err, _, _ = authenticate(c, b"\0guest\0guest")
        assert err == ILLEGAL_SASL_STATE
        assert c.closed_by_peer()
    # A second handshake in the middle of an exchange.
    with kwire.Conn(sasl_broker.bootstrap) as c:
        assert handshake(c, "SCRAM-SHA-256")[0] == 0
        assert handshake(c, "SCRAM-SHA-256", corr=2)[0] == ILLEGAL_SASL_STATE
        assert c.closed_by_peer()
    # A frame far over sasl.server.max.receive.size before authentication.
    with kwire.Conn(sasl_broker.bootstrap) as c:
        c.send(struct.pack(">i", 50 << 20) + b"\0" * 1024)
        assert c.closed_by_peer()
    # Garbage in place of a SaslHandshake body.
    with kwire.Conn(sasl_broker.bootstrap) as c:
        c.send(kwire.request(API_SASL_HANDSHAKE, 1, 1, b"\x7f\xff"))
        assert c.closed_by_peer()
    # The broker is unharmed.
    with kwire.Conn(sasl_broker.bootstrap) as c:
        err, _, _ = raw_scram(c, "guest", "guest")
        assert err == 0


def test_oversize_token_fails(own_broker):
    b = own_broker()
    with kwire.Conn(b.bootstrap) as c:
        assert handshake(c, "PLAIN")[0] == 0
        err, msg, _ = authenticate(c, b"\0guest\0" + b"x" * (70 * 1024))
        assert err == SASL_AUTHENTICATION_FAILED
        assert c.closed_by_peer()


def test_failed_logins_are_throttled(own_broker):
    """After the free failures, an address is refused without a credential check: even
    the right password fails until the back-off has passed."""
    b = own_broker()
    for _ in range(6):
        with kwire.Conn(b.bootstrap) as c:
            assert handshake(c, "PLAIN")[0] == 0
            assert authenticate(c, b"\0guest\0wrong")[0] == SASL_AUTHENTICATION_FAILED
    with kwire.Conn(b.bootstrap) as c:
        assert handshake(c, "PLAIN")[0] == 0
        err, msg, _ = authenticate(c, b"\0guest\0guest")
        assert err == SASL_AUTHENTICATION_FAILED
    deadline = time.monotonic() + 40
    while True:
        with kwire.Conn(b.bootstrap) as c:
            assert handshake(c, "PLAIN")[0] == 0
            if authenticate(c, b"\0guest\0guest")[0] == 0:
                break
        assert time.monotonic() < deadline, "never admitted again"
        time.sleep(0.5)


def test_plaintext_listener_unchanged(broker_factory):
    """Without SASL, nothing changes; SaslHandshake gets ILLEGAL_SASL_STATE as on Kafka's
    PLAINTEXT listeners (no cluster secret configured)."""
    b = broker_factory()
    with kwire.Conn(b.bootstrap) as c:
        err, mechs = handshake(c, "PLAIN")
        assert err == ILLEGAL_SASL_STATE
        md = kwire.parse_metadata_v4(c.roundtrip(kwire.metadata_v4(5, None)))
        assert md["brokers"]


def test_handshake_v0_raw_tokens(own_broker):
    """SaslHandshake v0: the SASL tokens follow as bare size-prefixed frames."""
    b = own_broker()
    with kwire.Conn(b.bootstrap) as c:
        assert handshake(c, "PLAIN", version=0)[0] == 0
        token = b"\0guest\0guest"
        assert c.roundtrip(struct.pack(">i", len(token)) + token) == b""
        md = kwire.parse_metadata_v4(c.roundtrip(kwire.metadata_v4(5, None)))
        assert md["brokers"]
    with kwire.Conn(b.bootstrap) as c:
        assert handshake(c, "PLAIN", version=0)[0] == 0
        token = b"\0guest\0nope"
        c.send(struct.pack(">i", len(token)) + token)
        assert c.closed_by_peer()


def test_reauthentication(own_broker):
    """KIP-368: with connections.max.reauth.ms the broker announces the session lifetime;
    librdkafka re-authenticates in time and keeps working; a connection that does not is
    closed at its next request."""
    b = own_broker({"connections.max.reauth.ms": 2000})
    with kwire.Conn(b.bootstrap) as c:
        assert raw_scram(c, "guest", "guest")[0] == 0
        assert authenticate.session_lifetime_ms == 2000
        kwire.parse_metadata_v4(c.roundtrip(kwire.metadata_v4(5, None)))
        time.sleep(2.5)
        c.send(kwire.metadata_v4(6, None))
        assert c.closed_by_peer()
    topic = f"reauth-{uuid.uuid4().hex[:6]}"
    p = Producer(conf(b, "SCRAM-SHA-256", "guest", "guest"))
    p.produce(topic, b"before")
    assert p.flush(30) == 0
    time.sleep(5)
    p.produce(topic, b"after")
    assert p.flush(30) == 0
    log = b.log_path.read_text(errors="replace")
    assert "SASL session expired" in log            # the raw connection above
    # librdkafka re-authenticated on the same connection (same peer address twice).
    import collections
    import re
    peers = collections.Counter(
        re.search(r"127\.0\.0\.1:\d+", line).group(0)
        for line in log.splitlines() if "SASL authentication succeeded" in line)
    assert max(peers.values()) >= 2, peers
