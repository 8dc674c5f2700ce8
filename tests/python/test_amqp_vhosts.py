"""AMQP virtual hosts and RabbitMQ permissions, with pika, against the real `arctern serve`
(vhosts and permissions made with `arctern vhosts` / `arctern permissions`, users through
the admin socket).

Everything asserted is RabbitMQ's documented behaviour, reply codes and reply texts; set
AMQP_VHOSTS_RABBITMQ=1 to run the same tests against a local RabbitMQ too (Debian's
rabbitmq-server, started here on free loopback ports as scripts/bench-amqp.sh does).
The restricted user is `guest` (it may log in from loopback on both brokers): it starts
with permissions on "/" only."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pika
import pytest

from broker import arctern_bin, free_ports

pytestmark = pytest.mark.timeout(180)

RMQ_LIB = Path("/usr/lib/rabbitmq/bin")


def rabbit_password_hash(password: str) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt4 ++ sha256(salt4 ++ pw))."""
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


class ArcternTarget:
    name = "arctern"
    # RabbitMQ 3.x wrote refusals without the permission ("access to queue ..."), and
    # closed a deleted vhost's connections with "vhost 'x' is deleted" or (a race) "vhost
    # 'x' is down"; Arctern uses the 4.x texts.
    legacy_texts = False

    def __init__(self, broker):
        self.b = broker
        self.amqp_port = broker.amqp_port
        self.wait_initialized()

    def wait_initialized(self, timeout=60.0):
        """The first start's defaults (guest, "/") are applied shortly after start."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.admin("State")["State"].get("initialized"):
                    return
            except OSError:
                pass
            assert time.monotonic() < deadline, "defaults not initialized"
            time.sleep(0.1)

    def tool(self, *args, check=True) -> subprocess.CompletedProcess:
        r = subprocess.run([str(arctern_bin()), *args, "--data-dir", str(self.b.data_dir)],
                           capture_output=True, text=True, timeout=30)
        if check:
            assert r.returncode == 0, f"arctern {args}: rc={r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    def admin(self, request: dict) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(str(self.b.data_dir / "admin.sock"))
            s.sendall(json.dumps(request).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                assert chunk, "admin socket closed"
                buf += chunk
        return json.loads(buf)

    def add_user(self, name, password):
        user = {"password_hash": rabbit_password_hash(password), "scram": {}, "tags": []}
        r = self.admin({"Propose": {"PutUser": {"name": name, "user": user}}})
        assert r == {"Result": "Ok"}, r

    def add_vhost(self, name):
        self.tool("vhosts", "add", name)

    def delete_vhost(self, name):
        self.tool("vhosts", "delete", name)

    def set_permissions(self, user, vhost, c, w, r):
        self.tool("permissions", "set", user, vhost, c, w, r)

    def clear_permissions(self, user, vhost):
        self.tool("permissions", "clear", user, vhost)


class RabbitTarget:
    name = "rabbitmq"
    legacy_texts = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "rabbitmq-server"],
                                  capture_output=True, text=True).stdout.startswith("3.")

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.amqp_port, dist, epmd_port = free_ports(3)
        # Our own epmd on a free loopback port, in the foreground so its PID is ours to stop
        # (as scripts/bench-amqp.sh), and our own HOME for the Erlang cookie.
        (workdir / "home").mkdir()
        self.epmd = subprocess.Popen(["epmd", "-address", "127.0.0.1", "-port", str(epmd_port)],
                                     stdout=open(workdir / "epmd.log", "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.node = f"vhosttest-{os.getpid()}@localhost"
        (workdir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            "loopback_users.guest = true\n")
        (workdir / "enabled_plugins").write_text("[].\n")
        self.env = dict(os.environ,
                        HOME=str(workdir / "home"),
                        ERL_EPMD_ADDRESS="127.0.0.1",
                        ERL_EPMD_PORT=str(epmd_port),
                        RABBITMQ_NODENAME=self.node,
                        RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
                        RABBITMQ_NODE_PORT=str(self.amqp_port),
                        RABBITMQ_DIST_PORT=str(dist),
                        RABBITMQ_MNESIA_BASE=str(workdir / "mnesia"),
                        RABBITMQ_LOG_BASE=str(workdir / "log"),
                        RABBITMQ_CONFIG_FILE=str(workdir / "rabbitmq.conf"),
                        RABBITMQ_CONF_ENV_FILE=str(workdir / "rabbitmq-env.conf"),
                        RABBITMQ_ENABLED_PLUGINS_FILE=str(workdir / "enabled_plugins"),
                        RABBITMQ_PLUGINS_EXPAND_DIR=str(workdir / "plugins-expand"))
        self.proc = subprocess.Popen([str(RMQ_LIB / "rabbitmq-server")], env=self.env,
                                     stdout=open(workdir / "stdout.log", "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.amqp_port), timeout=0.5):
                    break
            except OSError:
                assert self.proc.poll() is None, "rabbitmq-server exited"
                assert time.monotonic() < deadline, "rabbitmq-server did not come up"
                time.sleep(0.2)

    def ctl(self, *args):
        r = subprocess.run([str(RMQ_LIB / "rabbitmqctl"), "-n", self.node, *args],
                           env=self.env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"rabbitmqctl {args}: {r.stdout}{r.stderr}"

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self.epmd.poll() is None:
            self.epmd.terminate()
            self.epmd.wait(10)

    def add_user(self, name, password):
        self.ctl("add_user", name, password)

    def add_vhost(self, name):
        self.ctl("add_vhost", name)

    def delete_vhost(self, name):
        self.ctl("delete_vhost", name)

    def set_permissions(self, user, vhost, c, w, r):
        self.ctl("set_permissions", "-p", vhost, user, c, w, r)

    def clear_permissions(self, user, vhost):
        self.ctl("clear_permissions", "-p", vhost, user)


TARGETS = ["arctern"] + (["rabbitmq"] if os.environ.get("AMQP_VHOSTS_RABBITMQ") else [])


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory):
    if "rabbitmq" not in TARGETS:
        yield None
        return
    if not (RMQ_LIB / "rabbitmq-server").exists():
        pytest.skip("rabbitmq-server is not installed")
    t = RabbitTarget(tmp_path_factory.mktemp("rabbitmq"))
    yield t
    t.stop()


@pytest.fixture(params=TARGETS)
def target(request, broker_factory, rabbit):
    global CURRENT_TARGET
    CURRENT_TARGET = rabbit if request.param == "rabbitmq" else ArcternTarget(broker_factory())
    yield CURRENT_TARGET
    CURRENT_TARGET = None


def vname(prefix="v") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def connect(t, vhost="/", user="guest", password="guest"):
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=t.amqp_port, virtual_host=vhost,
        credentials=pika.PlainCredentials(user, password), connection_attempts=1))


CURRENT_TARGET = None


def refused(excinfo, text):
    e = excinfo.value
    if CURRENT_TARGET is not None and CURRENT_TARGET.legacy_texts:
        text = text.split(" ", 1)[1] if text.split(" ", 1)[0] in (
            "configure", "write", "read") else text
    assert (e.reply_code, e.reply_text) == (403, f"ACCESS_REFUSED - {text}"), e


def channel_refused(conn, fn, text):
    """Runs fn(channel) on a fresh channel, expecting 403 with `text`."""
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as ei:
        fn(ch)
    refused(ei, text)


def wait_perms(t, conn_vhost, check, timeout=10.0):
    """Permission changes reach open connections with the metadata: retry briefly."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (pika.exceptions.ChannelClosedByBroker, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_cli_prints_like_rabbitmqctl(broker_factory):
    t = ArcternTarget(broker_factory())
    r = t.tool("vhosts", "add", "sales", "--description", "the sales team")
    assert r.stdout == 'Adding vhost "sales" ...\n'
    lines = t.tool("vhosts", "list").stdout.splitlines()
    assert lines[0] == "Listing vhosts ..."
    assert lines[1] == "name\tdescription"
    assert set(lines[2:]) == {"/\t", "sales\tthe sales team"}
    t.add_user("bob", "s3cret")
    r = t.tool("permissions", "set", "bob", "sales", "^bob-.*", "^bob-.*", ".*")
    assert r.stdout == 'Setting permissions for user "bob" in vhost "sales" ...\n'
    lines = t.tool("permissions", "list", "--vhost", "sales").stdout.splitlines()
    assert lines == ['Listing permissions for vhost "sales" ...', "user\tconfigure\twrite\tread",
                     "bob\t^bob-.*\t^bob-.*\t.*"]
    # rabbitmqctl's default vhost is "/": the default user has everything there
    lines = t.tool("permissions", "list").stdout.splitlines()
    assert lines[2:] == ["guest\t.*\t.*\t.*"]
    r = t.tool("permissions", "clear", "bob", "sales")
    assert r.stdout == 'Clearing permissions for user "bob" in vhost "sales" ...\n'
    assert t.tool("permissions", "list", "--vhost", "sales").stdout.splitlines()[2:] == []
    # clear errors
    r = t.tool("permissions", "set", "bob", "nowhere", ".*", ".*", ".*", check=False)
    assert r.returncode != 0 and 'virtual host "nowhere" does not exist' in r.stderr
    r = t.tool("permissions", "set", "nobody", "sales", ".*", ".*", ".*", check=False)
    assert r.returncode != 0 and 'user "nobody" does not exist' in r.stderr
    r = t.tool("permissions", "set", "bob", "sales", "(", ".*", ".*", check=False)
    assert r.returncode != 0 and "invalid regular expression" in r.stderr
    r = t.tool("permissions", "list", "--vhost", "nowhere", check=False)
    assert r.returncode != 0 and 'virtual host "nowhere" does not exist' in r.stderr
    r = t.tool("vhosts", "delete", "nowhere", check=False)
    assert r.returncode != 0 and 'virtual host "nowhere" does not exist' in r.stderr
    r = t.tool("vhosts", "delete", "/", check=False)
    assert r.returncode != 0 and "cannot be deleted" in r.stderr
    r = t.tool("vhosts", "delete", "sales")
    assert r.stdout == 'Deleting vhost "sales" ...\n'
    assert t.tool("vhosts", "list").stdout.splitlines()[2:] == ["/\t"]


def test_unknown_vhost_and_vhost_without_permissions_are_530(target):
    with pytest.raises(pika.exceptions.AMQPConnectionError) as ei:
        connect(target, vhost="no-such-vhost")
    assert "530" in str(ei.value) and "vhost no-such-vhost not found" in str(ei.value), ei.value
    v = vname()
    target.add_vhost(v)
    with pytest.raises(pika.exceptions.AMQPConnectionError) as ei:
        connect(target, vhost=v)
    assert "530" in str(ei.value), ei.value
    assert f"access to vhost '{v}' refused for user 'guest'" in str(ei.value), ei.value
    # a vhost made at runtime is usable at once with permissions
    target.set_permissions("guest", v, ".*", ".*", ".*")
    c = connect(target, vhost=v)
    c.channel().queue_declare("q")
    c.close()


def test_permission_refusals_and_narrow_grants(target):
    v = vname()
    target.add_vhost(v)
    target.set_permissions("guest", v, ".*", ".*", ".*")
    c = connect(target, vhost=v)
    ch = c.channel()
    ch.queue_declare("q-open")
    ch.exchange_declare("x-open", "direct")
    ch.queue_bind("q-open", "x-open", "k")
    ch.confirm_delivery()
    ch.basic_publish("x-open", "k", b"m")
    ch.close()
    # narrow: configure / write / read only on bob-* names; the open connection follows
    target.set_permissions("guest", v, "^bob-.*", "^bob-.*", "^bob-.*")

    def refuses_declare():
        channel_refused(c, lambda ch: ch.queue_declare("other"),
                        f"configure access to queue 'other' in vhost '{v}' refused for user 'guest'")
    wait_perms(target, v, refuses_declare)
    channel_refused(c, lambda ch: ch.exchange_declare("x-other", "fanout"),
                    f"configure access to exchange 'x-other' in vhost '{v}' refused for user 'guest'")
    channel_refused(c, lambda ch: ch.queue_delete("q-open"),
                    f"configure access to queue 'q-open' in vhost '{v}' refused for user 'guest'")
    channel_refused(c, lambda ch: ch.exchange_delete("x-open"),
                    f"configure access to exchange 'x-open' in vhost '{v}' refused for user 'guest'")

    # allowed: the bob-* resources
    ch = c.channel()
    ch.queue_declare("bob-q")
    ch.exchange_declare("bob-x", "direct")
    ch.queue_bind("bob-q", "bob-x", "k")
    ch.exchange_declare("bob-x2", "fanout")
    ch.exchange_bind("bob-x2", "bob-x", "k")
    ch.confirm_delivery()
    ch.basic_publish("bob-x", "k", b"hello")
    m, _, body = ch.basic_get("bob-q", auto_ack=True)
    assert body == b"hello"
    ch.basic_publish("bob-x", "k", b"again")
    assert ch.queue_purge("bob-q").method.message_count == 1
    ch.basic_consume("bob-q", lambda *a: None)

    # queue.bind: write on the queue, read on the exchange
    channel_refused(c, lambda ch: ch.queue_bind("bob-q", "x-open", "k"),
                    f"read access to exchange 'x-open' in vhost '{v}' refused for user 'guest'")
    channel_refused(c, lambda ch: ch.queue_bind("q-open", "bob-x", "k"),
                    f"write access to queue 'q-open' in vhost '{v}' refused for user 'guest'")
    channel_refused(c, lambda ch: ch.queue_unbind("q-open", "x-open", "k"),
                    f"write access to queue 'q-open' in vhost '{v}' refused for user 'guest'")
    # exchange.bind: write on the destination, read on the source
    channel_refused(c, lambda ch: ch.exchange_bind("bob-x2", "x-open", "k"),
                    f"read access to exchange 'x-open' in vhost '{v}' refused for user 'guest'")
    channel_refused(c, lambda ch: ch.exchange_bind("x-open", "bob-x", "k"),
                    f"write access to exchange 'x-open' in vhost '{v}' refused for user 'guest'")

    # basic.publish: write on the exchange; the default exchange is amq.default
    def publish(ex):
        def f(ch):
            ch.confirm_delivery()
            ch.basic_publish(ex, "q-open", b"x")
        return f
    channel_refused(c, publish("x-open"),
                    f"write access to exchange 'x-open' in vhost '{v}' refused for user 'guest'")
    channel_refused(c, publish(""),
                    f"write access to exchange 'amq.default' in vhost '{v}' refused for user 'guest'")
    # consume, get, purge: read on the queue
    channel_refused(c, lambda ch: ch.basic_consume("q-open", lambda *a: None),
                    f"read access to queue 'q-open' in vhost '{v}' refused for user 'guest'")
    channel_refused(c, lambda ch: ch.basic_get("q-open"),
                    f"read access to queue 'q-open' in vhost '{v}' refused for user 'guest'")
    channel_refused(c, lambda ch: ch.queue_purge("q-open"),
                    f"read access to queue 'q-open' in vhost '{v}' refused for user 'guest'")
    # a new queue with a dead-letter exchange: write on that exchange too
    channel_refused(c, lambda ch: ch.queue_declare(
        "bob-dl", arguments={"x-dead-letter-exchange": "x-open"}),
        f"write access to exchange 'x-open' in vhost '{v}' refused for user 'guest'")
    ch = c.channel()
    ch.queue_declare("bob-dl2", arguments={"x-dead-letter-exchange": "bob-x"})
    # a new exchange with an alternate exchange: write on the alternate
    channel_refused(c, lambda ch: ch.exchange_declare(
        "bob-ae", "direct", arguments={"alternate-exchange": "x-open"}),
        f"write access to exchange 'x-open' in vhost '{v}' refused for user 'guest'")
    ch.queue_delete("bob-dl2")
    ch.queue_delete("bob-q")
    ch.exchange_delete("bob-x2")
    ch.exchange_delete("bob-x")
    c.close()

    # the empty pattern grants nothing
    target.set_permissions("guest", v, "", "", "")
    c = connect(target, vhost=v)
    channel_refused(c, lambda ch: ch.queue_declare("bob-q"),
                    f"configure access to queue 'bob-q' in vhost '{v}' refused for user 'guest'")
    c.close()
    # permissions cleared: the vhost itself is refused
    target.clear_permissions("guest", v)
    with pytest.raises(pika.exceptions.AMQPConnectionError) as ei:
        connect(target, vhost=v)
    assert "530" in str(ei.value)


def test_vhosts_are_isolated(target):
    a, b = vname("a"), vname("b")
    for v in (a, b):
        target.add_vhost(v)
        target.set_permissions("guest", v, ".*", ".*", ".*")
    ca, cb = connect(target, vhost=a), connect(target, vhost=b)
    cha, chb = ca.channel(), cb.channel()
    cha.queue_declare("only-a")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as ei:
        chb.queue_declare("only-a", passive=True)
    assert ei.value.reply_code == 404
    assert ei.value.reply_text == f"NOT_FOUND - no queue 'only-a' in vhost '{b}'"
    chb = cb.channel()
    # the same queue name in both vhosts: two queues
    for ch, body in ((cha, b"in a"), (chb, b"in b")):
        ch.queue_declare("shared", durable=True)
        ch.confirm_delivery()
        ch.basic_publish("", "shared", body)
    assert cha.basic_get("shared", auto_ack=True)[2] == b"in a"
    assert chb.basic_get("shared", auto_ack=True)[2] == b"in b"
    assert cha.basic_get("shared")[0] is None
    # exchanges too: amq.* exist in every vhost, declared ones only where declared
    chb.exchange_declare("amq.topic", "topic", passive=True)
    cha.exchange_declare("ex-a", "fanout")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as ei:
        chb.exchange_declare("ex-a", "fanout", passive=True)
    assert ei.value.reply_code == 404
    ca.close()
    cb.close()
    # "/" is untouched
    c = connect(target)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as ei:
        c.channel().queue_declare("shared", passive=True)
    assert ei.value.reply_code == 404
    c.close()


def test_deleting_a_vhost_closes_its_connections_and_queues(target):
    v = vname("d")
    target.add_vhost(v)
    target.set_permissions("guest", v, ".*", ".*", ".*")
    c = connect(target, vhost=v)
    ch = c.channel()
    ch.queue_declare("dq", durable=True)
    ch.confirm_delivery()
    ch.basic_publish("", "dq", b"m", pika.BasicProperties(delivery_mode=2))
    ch.queue_declare("tq")
    other = connect(target)  # a connection to "/" stays open
    target.delete_vhost(v)
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as ei:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            c.process_data_events(time_limit=0.2)
    assert ei.value.reply_code == 320
    # RabbitMQ 3.x races two closers: "is deleted" or "is down"
    whys = ("is deleted", "is down") if target.legacy_texts else ("is deleted",)
    assert ei.value.reply_text in [f"CONNECTION_FORCED - vhost '{v}' {w}" for w in whys]
    assert other.is_open
    other.channel().queue_declare("still-here")
    other.close()
    target.add_vhost(v)
    target.set_permissions("guest", v, ".*", ".*", ".*")
    c = connect(target, vhost=v)
    for q in ("dq", "tq"):
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as ei:
            c.channel().queue_declare(q, passive=True)
        assert ei.value.reply_code == 404
    c.close()


def test_vhost_definitions_survive_restart(broker_factory):
    b = broker_factory()
    t = ArcternTarget(b)
    t.add_vhost("keep")
    t.set_permissions("guest", "keep", ".*", ".*", ".*")
    for vhost, body in (("keep", b"kept"), ("/", b"root")):
        c = connect(t, vhost=vhost)
        ch = c.channel()
        ch.queue_declare("dur", durable=True)
        ch.exchange_declare("dx", "direct", durable=True)
        ch.queue_bind("dur", "dx", "k")
        ch.confirm_delivery()
        ch.basic_publish("dx", "k", body, pika.BasicProperties(delivery_mode=2))
        c.close()
    b.stop()
    b.start()
    t.wait_initialized()
    for vhost, body in (("keep", b"kept"), ("/", b"root")):
        c = connect(t, vhost=vhost)
        ch = c.channel()
        assert ch.queue_declare("dur", durable=True, passive=True).method.message_count == 1
        assert ch.basic_get("dur", auto_ack=True)[2] == body
        ch.confirm_delivery()
        ch.basic_publish("dx", "k", b"after")  # the binding survived too
        assert ch.basic_get("dur", auto_ack=True)[2] == b"after"
        c.close()


def test_named_user_gets_its_own_permissions(target):
    """Logs in as a user of the user database (needs its AMQP login; skipped without)."""
    user = f"bob{uuid.uuid4().hex[:6]}"
    target.add_user(user, "s3cret")
    v = vname()
    target.add_vhost(v)
    target.set_permissions(user, v, "^bob-", "^bob-", "^bob-")
    try:
        c = connect(target, vhost=v, user=user, password="s3cret")
    except pika.exceptions.ProbableAuthenticationError:
        pytest.skip("this build's AMQP login accepts only the default user")
    channel_refused(c, lambda ch: ch.queue_declare("q"),
                    f"configure access to queue 'q' in vhost '{v}' refused for user '{user}'")
    c.channel().queue_declare("bob-q")
    c.close()
    with pytest.raises(pika.exceptions.AMQPConnectionError) as ei:
        connect(target, vhost="/", user=user, password="s3cret")
    assert "530" in str(ei.value)



def test_aiopika_in_a_vhost_with_narrow_permissions(target):
    """aio-pika (vhost in the URL, percent-encoded): allowed work succeeds, a refused
    publish with confirms surfaces as aiormq's ChannelAccessRefused (403)."""
    import asyncio
    from urllib.parse import quote

    import aio_pika
    import aiormq

    v = vname("aio")
    target.add_vhost(v)
    target.set_permissions("guest", v, "^bob-", "^bob-", "^bob-")
    url = f"amqp://guest:guest@127.0.0.1:{target.amqp_port}/{quote(v, safe='')}"

    async def main():
        conn = await aio_pika.connect(url)
        async with conn:
            ch = await conn.channel(publisher_confirms=True)
            q = await ch.declare_queue("bob-aio")
            x = await ch.declare_exchange("bob-aio-x", aio_pika.ExchangeType.FANOUT)
            await q.bind(x)
            await x.publish(aio_pika.Message(b"ok"), routing_key="")
            m = await q.get(no_ack=True, fail=False)
            for _ in range(100):
                if m is not None:
                    break
                await asyncio.sleep(0.02)
                m = await q.get(no_ack=True, fail=False)
            assert m is not None and m.body == b"ok"
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused) as ei:
                await ch.default_exchange.publish(aio_pika.Message(b"no"), routing_key="bob-aio")
            assert "write access to exchange 'amq.default'" in str(ei.value) or \
                target.legacy_texts
            ch2 = await conn.channel()
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
                await ch2.declare_queue("not-bob")

    asyncio.run(asyncio.wait_for(main(), 60))

@pytest.mark.replication
def test_vhosts_on_a_cluster_forward_and_fail_over(cluster_factory):
    """All vhosts share the one serving node: a client of another node is forwarded
    whatever vhost it names, and a vhost's durable queue survives the loss of that node."""
    c = cluster_factory(3, config={"default.replication.factor": 3, "min.insync.replicas": 2})
    t1 = ArcternTarget(c.node(1))
    t1.add_vhost("team")
    t1.set_permissions("guest", "team", ".*", ".*", ".*")

    def connect_node(n, vhost, timeout=90.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                return pika.BlockingConnection(pika.ConnectionParameters(
                    host="127.0.0.1", port=c.node(n).amqp_port, virtual_host=vhost,
                    connection_attempts=1, socket_timeout=10, stack_timeout=40))
            except pika.exceptions.ProbableAccessDeniedError:
                raise
            except (pika.exceptions.AMQPConnectionError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    first = connect_node(1, "team")  # the first client makes the home exist
    first.close()
    home = c.wait_partition("__amqp_home", 0, lambda s: s.leader >= 0, timeout=30).leader
    others = [n for n in c.ids() if n != home]
    conn = connect_node(others[0], "team")
    ch = conn.channel()
    ch.queue_declare("work", durable=True)
    ch.confirm_delivery()
    for i in range(5):
        ch.basic_publish("", "work", f"m{i}".encode(), pika.BasicProperties(delivery_mode=2))
    conn.close()
    # the vhost check happens at the home, through the forwarding node
    with pytest.raises(pika.exceptions.AMQPConnectionError) as ei:
        connect_node(others[1], "nowhere")
    assert "vhost nowhere not found" in str(ei.value)

    c.node(home).kill()
    conn = connect_node(others[1], "team")
    ch = conn.channel()
    assert ch.queue_declare("work", durable=True, passive=True).method.message_count == 5
    # Right after a failover the new serving node may take a moment to make the tail
    # gettable (its high watermark follows its followers' fetches): get until 5 or 10 s.
    got, deadline = [], time.monotonic() + 10
    while len(got) < 5 and time.monotonic() < deadline:
        m, _, b = ch.basic_get("work", auto_ack=True)
        if m is None:
            time.sleep(0.1)
        else:
            got.append(b)
    assert got == [f"m{i}".encode() for i in range(5)]
    conn.close()
    root = connect_node(others[0], "/")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as ei:
        root.channel().queue_declare("work", passive=True)
    assert ei.value.reply_code == 404
    root.close()
