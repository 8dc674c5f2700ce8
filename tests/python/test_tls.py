"""TLS on the Kafka and AMQP listeners (docs/security.md, "TLS and listeners").

Certificates are made here with the openssl CLI: a CA, a server certificate for IP
127.0.0.1, client certificates. Every assertion is what Kafka's SSL listeners and
RabbitMQ's TLS listener do for the same configuration.
"""
import asyncio
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from broker import Broker, BrokerError, free_port

pytestmark = pytest.mark.timeout(120) if hasattr(pytest.mark, "timeout") else []


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class Pki:
    """A throwaway CA in `dir` that issues EC P-256 certificates."""

    def __init__(self, dir: Path):
        self.dir = Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                "-subj", "/CN=Arctern Test CA",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.dir)
        self.ca = self.dir / "ca.pem"

    def issue(self, name: str, subject: str, serial: int, server: bool,
              client_too: bool = False) -> tuple[Path, Path]:
        """(certificate, key) files; a server certificate is for IP 127.0.0.1."""
        ext = self.dir / f"{name}.ext"
        usage = "serverAuth,clientAuth" if client_too else ("serverAuth" if server else "clientAuth")
        lines = ["basicConstraints=CA:FALSE",
                 "keyUsage=critical,digitalSignature",
                 f"extendedKeyUsage={usage}"]
        if server:
            lines.append("subjectAltName=IP:127.0.0.1")
        ext.write_text("\n".join(lines) + "\n")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=self.dir)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-set_serial", str(serial), "-days", "2", "-out", f"{name}.pem",
                "-extfile", ext.name, cwd=self.dir)
        return self.dir / f"{name}.pem", self.dir / f"{name}.key"

    def keystore(self, cert: Path, key: Path, name: str = "keystore.pem") -> Path:
        """Kafka's PEM keystore: the private key and the certificate chain in one file."""
        p = self.dir / name
        p.write_text(key.read_text() + cert.read_text())
        return p


class TlsBroker(Broker):
    """A broker with `listeners` (Kafka syntax, `{plain}`/`{ssl}` port placeholders)."""

    def __init__(self, workdir, config, listeners="PLAINTEXT://127.0.0.1:{plain},SSL://127.0.0.1:{ssl}"):
        super().__init__(workdir, config=config)
        self.ssl_port = free_port()
        while self.ssl_port in (self.port, self.amqp_port):
            self.ssl_port = free_port()
        self.listeners = listeners.format(plain=self.port, ssl=self.ssl_port)

    def cmd(self):
        c = super().cmd()
        c[c.index("--kafka-listen") + 1] = self.listeners
        return c

    @property
    def ssl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ssl_port}"

    def log_text(self) -> str:
        return re.sub(r"\x1b\[[0-9;]*m", "", self.log_path.read_text(errors="replace"))


@pytest.fixture
def pki(tmp_path) -> Pki:
    return Pki(tmp_path / "pki")


@pytest.fixture
def tls_factory(request, tmp_path):
    brokers: list[Broker] = []

    def make(config: dict, start: bool = True, **kw) -> TlsBroker:
        b = TlsBroker(tmp_path / f"broker{len(brokers)}", config, **kw)
        brokers.append(b)
        if start:
            b.start()
        return b

    yield make
    for b in brokers:
        if b.proc is not None and b.proc.poll() is None:
            b.stop()


def server_config(pki: Pki, serial: int = 1, **extra) -> dict:
    cert, key = pki.issue("server", "/O=Test/CN=localhost", serial, server=True)
    return {"ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(pki.keystore(cert, key)),
            "ssl.truststore.location": str(pki.ca), **extra}


def wait_for_log(b: TlsBroker, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = b.log_text()
        if text in log:
            return log
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the broker log:\n{b.log_tail()}")


def server_serial(port: int, ca: Path) -> int:
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
            return int(t.getpeercert()["serialNumber"], 16)


# ---------------------------------------------------------------- Kafka over TLS


def test_kcat_produces_and_consumes_over_ssl(tls_factory, pki, kcat_bin, topic_name):
    b = tls_factory(server_config(pki))
    ssl_args = ["-b", b.ssl_bootstrap, "-X", "security.protocol=ssl",
                "-X", f"ssl.ca.location={pki.ca}"]
    values = [f"tls-{i}" for i in range(5)]
    subprocess.run([kcat_bin, *ssl_args, "-P", "-t", topic_name],
                   input="\n".join(values) + "\n", text=True, check=True, timeout=30)
    out = subprocess.run([kcat_bin, *ssl_args, "-C", "-t", topic_name, "-o", "beginning",
                          "-e", "-q"], capture_output=True, text=True, check=True, timeout=30)
    assert out.stdout.split() == values
    # Metadata on the SSL listener named the SSL port (kcat connected to it for the
    # partition leader); on the plain listener it names the plain port.
    meta = subprocess.run([kcat_bin, *ssl_args, "-L", "-J"], capture_output=True, text=True,
                          check=True, timeout=30)
    brokers = json.loads(meta.stdout)["brokers"]
    assert [br["name"] for br in brokers] == [f"127.0.0.1:{b.ssl_port}"]
    meta = subprocess.run([kcat_bin, "-b", b.bootstrap, "-L", "-J"], capture_output=True,
                          text=True, check=True, timeout=30)
    assert [br["name"] for br in json.loads(meta.stdout)["brokers"]] == [f"127.0.0.1:{b.port}"]


def test_aiokafka_over_ssl(tls_factory, pki, topic_name):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.helpers import create_ssl_context

    b = tls_factory(server_config(pki))

    async def run():
        ctx = create_ssl_context(cafile=str(pki.ca))
        producer = AIOKafkaProducer(bootstrap_servers=b.ssl_bootstrap,
                                    security_protocol="SSL", ssl_context=ctx)
        await producer.start()
        try:
            for i in range(3):
                await producer.send_and_wait(topic_name, f"m{i}".encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic_name, bootstrap_servers=b.ssl_bootstrap,
                                    security_protocol="SSL", ssl_context=ctx,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            got = []
            while len(got) < 3:
                batch = await consumer.getmany(timeout_ms=5000)
                assert batch, "no records within 5 s"
                for records in batch.values():
                    got += [r.value for r in records]
            return got
        finally:
            await consumer.stop()

    assert asyncio.run(run()) == [b"m0", b"m1", b"m2"]


def test_confluent_with_required_client_certificate(tls_factory, pki, topic_name):
    from confluent_kafka import KafkaException, Producer
    from confluent_kafka.admin import AdminClient

    # Kafka's per-listener override: only the SSL listener asks for certificates.
    b = tls_factory(server_config(pki, **{"listener.name.ssl.ssl.client.auth": "required"}))
    cert, key = pki.issue("alice", "/O=Test/CN=alice", 10, server=False)
    base = {"bootstrap.servers": b.ssl_bootstrap, "security.protocol": "SSL",
            "ssl.ca.location": str(pki.ca)}
    p = Producer({**base, "ssl.certificate.location": str(cert),
                  "ssl.key.location": str(key)})
    delivered = []
    p.produce(topic_name, b"with-cert", on_delivery=lambda err, msg: delivered.append(err))
    assert p.flush(30) == 0
    assert delivered == [None]

    # Without a certificate the handshake is refused, as Kafka's ssl.client.auth=required.
    admin = AdminClient({**base, "socket.timeout.ms": 3000})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)
    wait_for_log(b, "TLS handshake failed")
    # The plain listener is not affected.
    assert topic_name in AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=10).topics


def test_tls_mismatches_are_closed_and_logged(tls_factory, pki):
    b = tls_factory(server_config(pki))
    # A TLS client on the plaintext Kafka listener.
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    with socket.create_connection(("127.0.0.1", b.port), timeout=5) as s:
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            ctx.wrap_socket(s, server_hostname="127.0.0.1")
    log = wait_for_log(b, "TLS handshake on a plaintext listener")
    assert "peer=127.0.0.1:" in log
    # Plaintext Kafka on the TLS listener: ApiVersions v0 is not a ClientHello.
    with socket.create_connection(("127.0.0.1", b.ssl_port), timeout=5) as s:
        s.sendall(b"\x00\x00\x00\x0c\x00\x12\x00\x00\x00\x00\x00\x01\x00\x02id")
        s.settimeout(5)
        try:
            data = s.recv(100)
        except ConnectionError:
            data = b""
        assert not data.startswith(b"\x00\x00"), "a plaintext answer on the TLS listener"
    wait_for_log(b, "TLS handshake failed")
    # Both listeners still serve.
    assert server_serial(b.ssl_port, pki.ca) == 1


def test_certificates_reload_on_sighup_and_on_file_change(tls_factory, pki):
    b = tls_factory(server_config(pki, serial=1))
    assert server_serial(b.ssl_port, pki.ca) == 1
    cert, key = pki.issue("server", "/O=Test/CN=localhost", 2, server=True)
    pki.keystore(cert, key)
    os.kill(b.proc.pid, signal.SIGHUP)
    wait_for_log(b, "TLS certificates reloaded")
    assert server_serial(b.ssl_port, pki.ca) == 2
    # A bad replacement is refused and the current certificate stays.
    (pki.dir / "keystore.pem").write_text("garbage\n")
    os.kill(b.proc.pid, signal.SIGHUP)
    wait_for_log(b, "TLS reload failed")
    assert server_serial(b.ssl_port, pki.ca) == 2
    # Without a signal: the file's modification time changes (polled every 3 s).
    cert, key = pki.issue("server", "/O=Test/CN=localhost", 3, server=True)
    time.sleep(1.1)  # a distinct mtime even on coarse clocks
    pki.keystore(cert, key)
    deadline = time.monotonic() + 15
    while server_serial(b.ssl_port, pki.ca) != 3:
        assert time.monotonic() < deadline, "the changed keystore was not reloaded"
        time.sleep(0.5)
    assert b.running()


@pytest.mark.parametrize("damage", ["missing", "mismatch"])
def test_bad_certificate_or_key_fails_the_start(tls_factory, pki, damage):
    config = server_config(pki)
    if damage == "missing":
        config["ssl.keystore.location"] = str(pki.dir / "nope.pem")
        expect = "nope.pem"
    else:
        cert, _ = pki.issue("server", "/O=Test/CN=localhost", 5, server=True)
        _, other = pki.issue("other", "/CN=other", 6, server=True)
        config["ssl.keystore.location"] = str(pki.keystore(cert, other, "bad.pem"))
        expect = "does not match"
    b = tls_factory(config, start=False)
    with pytest.raises(BrokerError):
        b.start(timeout=20)
    assert b.proc.returncode != 0
    assert expect in b.log_text()


# ---------------------------------------------------------------- AMQP over TLS


PLAIN_ONLY = "PLAINTEXT://127.0.0.1:{plain}"


def amqp_tls_config(pki: Pki, ssl_port: int, **extra) -> dict:
    cert, key = pki.issue("amqp-server", "/O=Test/CN=localhost", 1, server=True)
    return {"listeners.ssl.default": ssl_port,
            "ssl_options.certfile": str(cert), "ssl_options.keyfile": str(key),
            "ssl_options.cacertfile": str(pki.ca), **extra}


def test_pika_over_tls_as_guest(tls_factory, pki):
    import pika

    port = free_port()
    b = tls_factory(amqp_tls_config(pki, port), listeners=PLAIN_ONLY)
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    params = pika.ConnectionParameters(host="127.0.0.1", port=port,
                                       ssl_options=pika.SSLOptions(ctx, "127.0.0.1"),
                                       connection_attempts=20, retry_delay=0.25)
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        q = f"tls-{uuid.uuid4().hex[:8]}"
        ch.queue_declare(q)
        ch.confirm_delivery()
        ch.basic_publish("", q, b"over tls")
        method, _, body = ch.basic_get(q, auto_ack=True)
        assert body == b"over tls"
    finally:
        conn.close()
    # The plain AMQP listener serves beside it.
    conn = pika.BlockingConnection(pika.ConnectionParameters(host="127.0.0.1", port=b.amqp_port))
    conn.close()


def test_aio_pika_over_tls(tls_factory, pki):
    import aio_pika

    port = free_port()
    tls_factory(amqp_tls_config(pki, port), listeners=PLAIN_ONLY)

    async def run():
        conn = await aio_pika.connect(f"amqps://guest:guest@127.0.0.1:{port}/?cafile={pki.ca}")
        async with conn:
            ch = await conn.channel()
            q = await ch.declare_queue(f"aio-tls-{uuid.uuid4().hex[:8]}")
            await ch.default_exchange.publish(aio_pika.Message(b"aio tls"), routing_key=q.name)
            msg = await q.get(timeout=5)
            await msg.ack()
            return msg.body

    assert asyncio.run(run()) == b"aio tls"


def admin_put_user(data_dir: Path, name: str) -> dict:
    """A user without a password (EXTERNAL only), with all permissions on "/"."""
    r = admin_propose(data_dir, {"PutUser": {"name": name, "user": {
        "password_hash": None, "scram": {}, "tags": []}}})
    if r != {"Result": "Ok"}:
        return r
    return admin_propose(data_dir, {"SetPermissions": {"vhost": "/", "user": name, "permission": {
        "configure": ".*", "write": ".*", "read": ".*"}}})


def admin_propose(data_dir: Path, command: dict) -> dict:
    line = json.dumps({"Propose": command}) + "\n"
    path = data_dir / "admin.sock"
    deadline = time.monotonic() + 10
    while not path.exists():  # made just after the Kafka listener accepts
        assert time.monotonic() < deadline, "no admin socket"
        time.sleep(0.1)
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(line.encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            assert chunk, "admin socket closed"
            buf += chunk
    return json.loads(buf)


def test_amqp_external_with_a_client_certificate(tls_factory, pki):
    import pika
    from pika.credentials import ExternalCredentials

    port = free_port()
    b = tls_factory(amqp_tls_config(pki, port, **{"ssl_options.verify": "verify_peer",
                                                  "ssl_options.fail_if_no_peer_cert": False}),
                    listeners=PLAIN_ONLY)
    assert admin_put_user(b.data_dir, "CN=alice,O=Test") == {"Result": "Ok"}
    alice = pki.issue("alice", "/O=Test/CN=alice", 20, server=False)
    mallory = pki.issue("mallory", "/O=Test/CN=mallory", 21, server=False)

    def params(client):
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        if client:
            ctx.load_cert_chain(str(client[0]), str(client[1]))
        return pika.ConnectionParameters(host="127.0.0.1", port=port,
                                         ssl_options=pika.SSLOptions(ctx, "127.0.0.1"),
                                         credentials=ExternalCredentials())

    conn = pika.BlockingConnection(params(alice))
    try:
        ch = conn.channel()
        ch.queue_declare("", exclusive=True)
    finally:
        conn.close()
    # A certificate for a user that does not exist: 403 ACCESS_REFUSED, as RabbitMQ.
    # (pika reports a close during the login as ProbableAuthenticationError.)
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as e:
        pika.BlockingConnection(params(mallory))
    assert "(403) 'ACCESS_REFUSED" in str(e.value)
    # Without a client certificate EXTERNAL is not offered at all.
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(params(None))


def tls_listen_addr(node, timeout: float = 30.0) -> int:
    """The port a node's AMQP TLS listener bound (configured as port 0)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = re.sub(r"\x1b\[[0-9;]*m", "", node.log_path.read_text(errors="replace"))
        m = re.search(r"amqp TLS listener ready listen=127\.0\.0\.1:(\d+)", text)
        if m:
            return int(m.group(1))
        time.sleep(0.1)
    raise AssertionError(f"no AMQP TLS listener in node {node.node_id}'s log")


def test_amqp_tls_connection_to_another_node_is_relayed_to_the_home(cluster_factory, pki):
    """A TLS client of a node that is not the vhost's home: TLS ends at that node and the
    decrypted bytes are relayed to the home, as for a plain connection."""
    import pika
    from test_amqp_cluster import CONFIG, home_of

    cert, key = pki.issue("amqp-server", "/O=Test/CN=localhost", 1, server=True)
    c = cluster_factory(3, config={**CONFIG, "listeners.ssl.default": "127.0.0.1:0",
                                   "ssl_options.certfile": str(cert),
                                   "ssl_options.keyfile": str(key)})
    # The first plain connection makes a home.
    first = pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=c.node(1).amqp_port, connection_attempts=40, retry_delay=0.5))
    first.close()
    home = home_of(c)
    other = next(n for n in c.ids() if n != home)
    port = tls_listen_addr(c.node(other))
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=port, ssl_options=pika.SSLOptions(ctx, "127.0.0.1"),
        connection_attempts=20, retry_delay=0.5))
    try:
        ch = conn.channel()
        ch.queue_declare("relayed", durable=True)
        ch.confirm_delivery()
        for i in range(20):
            ch.basic_publish("", "relayed", f"r{i}".encode(),
                             pika.BasicProperties(delivery_mode=2))
        got = []
        while len(got) < 20:
            m, _, b = ch.basic_get("relayed", auto_ack=True)
            assert m is not None, f"only {len(got)} of 20 messages back"
            got.append(b)
        assert got == [f"r{i}".encode() for i in range(20)]
    finally:
        conn.close()


def test_followers_fetch_over_an_ssl_inter_broker_listener(cluster_factory, pki, topic_name):
    """inter.broker.listener.name = SSL with client certificates required: followers
    connect to the leader's SSL endpoint with the broker's own keystore, as Kafka's do."""
    from confluent_kafka import Producer

    cert, key = pki.issue("broker", "/O=Test/CN=broker", 1, server=True, client_too=True)
    c = cluster_factory(3, start=False, config={
        "default.replication.factor": 3, "min.insync.replicas": 2,
        "inter.broker.listener.name": "SSL",
        "ssl.keystore.location": str(pki.keystore(cert, key)),
        "ssl.truststore.location": str(pki.ca),
        "listener.name.ssl.ssl.client.auth": "required"})
    for n in c.ids():
        node = c.node(n)

        def cmd(node=node, base=type(node).cmd):
            args = base(node)
            # the SSL listener on a free port of its own; it advertises what it bound
            args[args.index("--kafka-listen") + 1] = \
                f"PLAINTEXT://127.0.0.1:{node.port},SSL://127.0.0.1:0"
            return args
        node.cmd = cmd
    c.start()
    c.create_topic(topic_name, rf=3)
    p = Producer({"bootstrap.servers": c.node(1).bootstrap, "acks": "all"})
    delivered = []
    for i in range(50):
        p.produce(topic_name, f"v{i}".encode(), on_delivery=lambda e, m: delivered.append(e))
    assert p.flush(60) == 0
    assert delivered == [None] * 50
    st = c.wait_partition(topic_name, 0, lambda s: len(s.isr) == 3, timeout=60)
    assert sorted(st.isr) == c.ids()


def test_management_api_over_https(tls_factory, pki):
    """RabbitMQ's `management.ssl.*`: the management API, /metrics and the console over
    TLS on their own port, beside the plain listener; requests and rabbitmqadmin-style
    basic auth work the same; a plain-HTTP request to the TLS port gets no answer."""
    import requests

    # Two free_port() calls may return the same port: draw until they differ.
    https_port = free_port()
    http_port = free_port()
    while http_port == https_port:
        http_port = free_port()
    cert, key = pki.issue("mgmt-server", "/O=Test/CN=localhost", 1, server=True)
    b = tls_factory({"management.listen": f"127.0.0.1:{http_port}",
                     "management.ssl.port": https_port,
                     "management.ssl.certfile": str(cert),
                     "management.ssl.keyfile": str(key)}, listeners=PLAIN_ONLY)
    base = f"https://127.0.0.1:{https_port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            r = requests.get(f"{base}/api/whoami", auth=("guest", "guest"),
                             verify=str(pki.ca), timeout=5)
            break
        except requests.ConnectionError:
            assert time.monotonic() < deadline, "HTTPS listener never answered"
            time.sleep(0.2)
    assert r.status_code == 200 and r.json()["name"] == "guest"
    assert requests.get(f"{base}/api/whoami", verify=str(pki.ca), timeout=5).status_code == 401
    overview = requests.get(f"{base}/api/overview", auth=("guest", "guest"),
                            verify=str(pki.ca), timeout=5).json()
    protocols = {(x["protocol"], x["port"]) for x in overview["listeners"]}
    assert ("https", https_port) in protocols and ("http", http_port) in protocols
    metrics = requests.get(f"{base}/metrics", auth=("guest", "guest"),
                           verify=str(pki.ca), timeout=5)
    assert metrics.status_code == 200 and "rabbitmq_connections" in metrics.text
    assert "<html" in requests.get(f"{base}/", verify=str(pki.ca), timeout=5).text.lower()
    # The certificate is checked by the client: an unknown CA fails the handshake.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{base}/api/whoami", auth=("guest", "guest"), timeout=5)
    # Plain HTTP to the TLS port is refused (closed, logged), never answered in clear.
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{https_port}/api/whoami", auth=("guest", "guest"),
                     timeout=5)
