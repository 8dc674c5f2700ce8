"""AMQP logins against the one user database, managed with `arctern users` (the
rabbitmqctl add_user / delete_user / list_users / change_password / set_user_tags /
authenticate_user equivalents), with real clients: pika and aio-pika (PLAIN), py-amqp and
kombu (AMQPLAIN).

What the client sees follows RabbitMQ 3.x: a refused login is connection.close 403
ACCESS_REFUSED "Login was refused using authentication mechanism PLAIN. For details see
the broker logfile.", the same for an unknown user and a wrong password."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import socket
import subprocess
import time

import aio_pika
import aiormq
import amqp
import kombu
import pika
import pytest

from broker import Broker, arctern_bin

pytestmark = pytest.mark.timeout(120)

# Failed logins in these tests must not throttle the loopback address, except where the
# throttling itself is under test.
LENIENT = {"auth.failed_login.free_failures": 1000}

REFUSED_PLAIN = ("ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
                 "For details see the broker logfile.")


def users_cli(b: Broker, *args: str, stdin: str | None = None, check: bool = True):
    p = subprocess.run([str(arctern_bin()), "users", *args, "--data-dir", str(b.data_dir)],
                       input=stdin, capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise AssertionError(f"arctern users {args} failed ({p.returncode}):\n"
                             f"{p.stdout}\n{p.stderr}")
    return p


def pika_connect(b: Broker, user: str, password: str, host: str = "127.0.0.1"):
    return pika.BlockingConnection(pika.ConnectionParameters(
        host=host, port=b.amqp_port, credentials=pika.PlainCredentials(user, password),
        connection_attempts=1))


def pika_refused(b: Broker, user: str, password: str):
    """Asserts a refused login and returns pika's exception."""
    with pytest.raises((pika.exceptions.ProbableAuthenticationError,
                        pika.exceptions.AuthenticationError,
                        pika.exceptions.ConnectionClosedByBroker)) as e:
        pika_connect(b, user, password).close()
    text = str(e.value)
    assert "403" in text and "ACCESS_REFUSED" in text, text
    return e.value


def py_amqp_connect(b: Broker, user: str, password: str):
    c = amqp.Connection(f"127.0.0.1:{b.amqp_port}", userid=user, password=password,
                        login_method="AMQPLAIN", connect_timeout=5)
    c.connect()
    return c


def admin_call(b: Broker, request: dict) -> dict:
    """One raw request on the node's admin socket (the JSON line protocol)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(b.data_dir / "admin.sock"))
        s.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def grant_all(b: Broker, user: str, vhost: str = "/") -> None:
    """rabbitmqctl set_permissions -p / USER ".*" ".*" ".*", through the admin socket (a
    user needs permissions on a vhost to open it, as in RabbitMQ)."""
    answer = admin_call(b, {"Propose": {"SetPermissions": {
        "vhost": vhost, "user": user,
        "permission": {"configure": ".*", "write": ".*", "read": ".*"}}}})
    assert answer == {"Result": "Ok"}, answer


def add_user(b: Broker, name: str, password: str, *extra: str):
    """`arctern users add` plus full permissions on "/"."""
    p = users_cli(b, "add", name, "--password-stdin", *extra, stdin=password + "\n")
    grant_all(b, name)
    return p


def scram_credential(password: str, salt: bytes, iterations: int = 4096) -> dict:
    """RFC 5802 stored form for SCRAM-SHA-256: StoredKey = H(HMAC(salted, "Client Key"))."""
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return {"salt": list(salt), "iterations": iterations,
            "stored_key": list(hashlib.sha256(client_key).digest()),
            "server_key": list(server_key)}


def wait_amqp(b: Broker, user="guest", password="guest", timeout=30.0):
    """Until the broker serves AMQP logins (the vhost loads after the Kafka port opens)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            pika_connect(b, user, password).close()
            return
        except pika.exceptions.AMQPConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def ubroker(broker_factory) -> Broker:
    b = broker_factory(LENIENT)
    wait_amqp(b)
    return b


def test_cli_user_logs_in_with_pika_aio_pika_and_py_amqp(ubroker):
    p = add_user(ubroker, "bob", "s3cret", "--tags", "monitoring")
    assert 'Adding user "bob" ...' in p.stdout
    # PLAIN with pika.
    conn = pika_connect(ubroker, "bob", "s3cret")
    ch = conn.channel()
    ch.queue_declare("bob-q")
    ch.confirm_delivery()
    ch.basic_publish("", "bob-q", b"hi")
    conn.close()

    # PLAIN with aio-pika.
    async def aio():
        c = await aio_pika.connect(f"amqp://bob:s3cret@127.0.0.1:{ubroker.amqp_port}/")
        try:
            ch = await c.channel()
            q = await ch.declare_queue("bob-q")
            for _ in range(50):
                m = await q.get(timeout=5, fail=False)
                if m is not None:
                    break
                await asyncio.sleep(0.1)
            await m.ack()
            return m.body
        finally:
            await c.close()
    assert asyncio.run(aio()) == b"hi"

    # AMQPLAIN with py-amqp, and kombu on top of it.
    c = py_amqp_connect(ubroker, "bob", "s3cret")
    assert c.connected
    c.close()
    with kombu.Connection(f"amqp://bob:s3cret@127.0.0.1:{ubroker.amqp_port}//",
                          login_method="AMQPLAIN", connect_timeout=5) as k:
        k.connect()
        q = k.SimpleQueue("bob-kombu")
        q.put({"n": 1})
        assert q.get(timeout=5).payload == {"n": 1}
        q.close()


BAD = "not-the-pw-7Q"


def test_wrong_password_and_unknown_user_look_the_same(ubroker):
    add_user(ubroker, "bob", "right")
    wrong = pika_refused(ubroker, "bob", BAD)
    unknown = pika_refused(ubroker, "nobody", "right")
    assert str(wrong) == str(unknown)
    assert REFUSED_PLAIN in str(wrong)

    # py-amqp exposes the reply code of connection.close.
    for user, pw in (("bob", BAD), ("nobody", "right")):
        with pytest.raises(amqp.exceptions.AccessRefused) as e:
            py_amqp_connect(ubroker, user, pw)
        assert e.value.reply_code == 403
        assert "Login was refused using authentication mechanism AMQPLAIN" in str(e.value)

    # aio-pika (aiormq) likewise.
    async def aio():
        await aio_pika.connect(f"amqp://bob:{BAD}@127.0.0.1:{ubroker.amqp_port}/")
    with pytest.raises((aiormq.exceptions.ProbableAuthenticationError,
                        aiormq.exceptions.ConnectionClosed)) as e:
        asyncio.run(aio())
    assert "ACCESS_REFUSED" in str(e.value) or "403" in str(e.value)

    # The log names the peer and the user, never the password.
    log = ubroker.log_path.read_text(errors="replace")
    assert "AMQP login refused" in log and "127.0.0.1" in log and "nobody" in log
    assert BAD not in log.replace("unknown user or wrong password", "")


def test_delete_change_password_set_tags_list_and_authenticate(ubroker):
    users_cli(ubroker, "add", "carol", "pw1")
    grant_all(ubroker, "carol")
    pika_connect(ubroker, "carol", "pw1").close()

    p = users_cli(ubroker, "authenticate", "carol", "pw1")
    assert 'Authenticating user "carol" ...' in p.stdout and "Success" in p.stdout
    p = users_cli(ubroker, "authenticate", "carol", "nope", check=False)
    assert p.returncode != 0

    p = users_cli(ubroker, "change-password", "carol", "--password-stdin", stdin="pw2\n")
    assert 'Changing password for user "carol" ...' in p.stdout
    pika_refused(ubroker, "carol", "pw1")
    pika_connect(ubroker, "carol", "pw2").close()

    p = users_cli(ubroker, "set-tags", "carol", "administrator", "monitoring")
    assert 'Setting tags for user "carol" to [administrator, monitoring] ...' in p.stdout
    p = users_cli(ubroker, "list")
    lines = p.stdout.splitlines()
    assert lines[0] == "Listing users ..." and lines[1] == "user\ttags"
    assert "carol\t[administrator, monitoring]" in lines
    assert "guest\t[administrator]" in lines
    # change-password keeps the tags.
    users_cli(ubroker, "change-password", "carol", "pw3")
    assert "carol\t[administrator, monitoring]" in users_cli(ubroker, "list").stdout.splitlines()

    p = users_cli(ubroker, "delete", "carol")
    assert 'Deleting user "carol" ...' in p.stdout
    pika_refused(ubroker, "carol", "pw3")
    assert not any(l.startswith("carol\t") for l in users_cli(ubroker, "list").stdout.splitlines())

    for args in (("delete", "carol"), ("set-tags", "carol", "x"),
                 ("change-password", "carol", "pw")):
        p = users_cli(ubroker, *args, check=False)
        assert p.returncode != 0 and "user 'carol' does not exist" in p.stderr, (args, p.stderr)
    users_cli(ubroker, "add", "dave", "a")
    p = users_cli(ubroker, "add", "dave", "b", check=False)
    assert p.returncode != 0 and "already exists" in p.stderr


def test_cli_without_a_running_node_says_so(tmp_path):
    p = subprocess.run([str(arctern_bin()), "users", "list", "--data-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert "cannot reach a running node at" in p.stderr


def test_scram_only_user_logs_in_over_amqp_plain(ubroker):
    """A user made the way Kafka's AlterUserScramCredentials makes one (SCRAM credentials
    only, no password hash) logs in over AMQP with its password: one user database."""
    cred = scram_credential("kpass", os.urandom(16))
    answer = admin_call(ubroker, {"Propose": {"AlterUserScram": {
        "name": "kuser", "upsert": {"SCRAM-SHA-256": cred}, "delete": []}}})
    assert answer == {"Result": "Ok"}, answer
    grant_all(ubroker, "kuser")
    conn = pika_connect(ubroker, "kuser", "kpass")
    conn.channel().queue_declare("kq")
    conn.close()
    pika_refused(ubroker, "kuser", "wrong")
    assert "kuser\t[]" in users_cli(ubroker, "list").stdout.splitlines()


class EnvBroker(Broker):
    """A broker with extra environment variables."""

    def __init__(self, *a, env: dict | None = None, amqp_host: str = "127.0.0.1", **kw):
        super().__init__(*a, **kw)
        self.extra_env = dict(env or {})
        self.amqp_host = amqp_host

    def env(self) -> dict:
        e = super().env()
        for k in ("RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS",
                  "ARCTERN_DEFAULT_USER", "ARCTERN_DEFAULT_PASS"):
            e.pop(k, None)
        e.update(self.extra_env)
        return e

    def cmd(self) -> list[str]:
        c = super().cmd()
        return [a.replace(f"127.0.0.1:{self.amqp_port}", f"{self.amqp_host}:{self.amqp_port}")
                for a in c]


@pytest.fixture
def env_brokers():
    made: list[Broker] = []
    yield made
    for b in made:
        b.stop()


def test_default_user_from_env_only_on_first_start(tmp_path, env_brokers):
    b = EnvBroker(tmp_path / "b", config=LENIENT,
                  env={"RABBITMQ_DEFAULT_USER": "admin", "RABBITMQ_DEFAULT_PASS": "adminpw"})
    env_brokers.append(b)
    b.start()
    wait_amqp(b, "admin", "adminpw")
    lines = users_cli(b, "list").stdout.splitlines()
    assert "admin\t[administrator]" in lines
    assert not any(l.startswith("guest\t") for l in lines)
    pika_refused(b, "guest", "guest")

    # RabbitMQ's rule: the default user is created on the first start only.
    b.stop()
    b.extra_env = {"RABBITMQ_DEFAULT_USER": "other", "RABBITMQ_DEFAULT_PASS": "otherpw"}
    b.start()
    wait_amqp(b, "admin", "adminpw")
    pika_refused(b, "other", "otherpw")
    assert not any(l.startswith("other\t") for l in users_cli(b, "list").stdout.splitlines())


def test_arctern_env_names_override_rabbitmq_ones(tmp_path, env_brokers):
    b = EnvBroker(tmp_path / "b", config=LENIENT,
                  env={"RABBITMQ_DEFAULT_USER": "r", "RABBITMQ_DEFAULT_PASS": "rpw",
                       "ARCTERN_DEFAULT_USER": "a", "ARCTERN_DEFAULT_PASS": "12345"})
    env_brokers.append(b)
    b.start()
    wait_amqp(b, "a", "12345")
    pika_refused(b, "r", "rpw")


def test_guest_from_127_0_0_2_is_loopback(tmp_path, env_brokers):
    """loopback_users applies to 127.0.0.0/8, not just 127.0.0.1 (the non-loopback side is
    unit-tested: a test cannot connect from a non-loopback address)."""
    b = EnvBroker(tmp_path / "b", amqp_host="127.0.0.2")
    env_brokers.append(b)
    b.start()
    deadline = time.monotonic() + 30
    while True:
        try:
            conn = pika_connect(b, "guest", "guest", host="127.0.0.2")
            break
        except pika.exceptions.AMQPConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert conn.is_open
    conn.close()


def test_failed_logins_throttle_the_address(broker_factory):
    b = broker_factory({"auth.failed_login.free_failures": 2,
                        "auth.failed_login.base_delay_ms": 2000,
                        "auth.failed_login.max_delay_ms": 2000})
    wait_amqp(b)
    add_user(b, "eve", "right")
    pika_refused(b, "eve", "wrong")
    pika_refused(b, "eve", "wrong")
    # Throttled: even the right password is refused, with the same answer.
    t0 = time.monotonic()
    e = pika_refused(b, "eve", "right")
    assert REFUSED_PLAIN in str(e)
    assert "too many failed logins" in b.log_path.read_text(errors="replace")
    time.sleep(max(0.0, 2.2 - (time.monotonic() - t0)))
    pika_connect(b, "eve", "right").close()
    # The success cleared the address.
    pika_refused(b, "eve", "wrong")
    pika_connect(b, "eve", "right").close()


def rabbit_sha256_hash(password: str) -> str:
    """rabbit_password_hashing_sha256: base64(salt(4) ++ sha256(salt ++ password))."""
    import base64
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def test_import_rabbitmq_definitions(ubroker, tmp_path):
    defs = {
        "rabbit_version": "3.10.8",
        "users": [{"name": "imp", "password_hash": rabbit_sha256_hash("imported-pw"),
                   "hashing_algorithm": "rabbit_password_hashing_sha256",
                   "tags": ["monitoring"], "limits": {}}],
        "vhosts": [{"name": "/", "limits": [], "metadata": {"description": "", "tags": []}}],
        "permissions": [{"user": "imp", "vhost": "/", "configure": ".*", "write": ".*",
                         "read": ".*"}],
        "queues": [], "exchanges": [], "bindings": [],
    }
    f = tmp_path / "defs.json"
    f.write_text(json.dumps(defs))
    p = users_cli(ubroker, "import-definitions", str(f))
    assert "Imported 1 user(s)" in p.stdout
    assert "imp\t[monitoring]" in users_cli(ubroker, "list").stdout.splitlines()
    pika_connect(ubroker, "imp", "imported-pw").close()
    pika_refused(ubroker, "imp", "other")
    assert "Success" in users_cli(ubroker, "authenticate", "imp", "imported-pw").stdout
