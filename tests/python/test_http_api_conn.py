"""The management HTTP API's connections, channels and consumers (RabbitMQ's
/api/connections, /api/channels, /api/consumers): real clients (pika, aio-pika) connect,
`requests` and rabbitmqadmin read and close what they opened. The shape tests run against
Arctern and, when the RabbitMQ fixture is available, against RabbitMQ 3.10 too, so they
prove the shapes match (RabbitMQ's stats appear up to ~5 s late: every read polls)."""

from __future__ import annotations

import asyncio
import subprocess
import time
import urllib.parse

import aio_pika
import pika
import pytest
import requests

from broker import arctern_bin

pytestmark = pytest.mark.timeout(180)



def add_user(t, name: str, password: str, *tags: str) -> None:
    """A user with the tags and full permissions on "/"."""
    if t.name == "rabbitmq":
        r = requests.put(f"{t.http}/api/users/{name}", auth=t.auth, timeout=10,
                         json={"password": password, "tags": ",".join(tags)})
        assert r.status_code in (201, 204), r.text
        r = requests.put(f"{t.http}/api/permissions/%2F/{name}", auth=t.auth, timeout=10,
                         json={"configure": ".*", "write": ".*", "read": ".*"})
        assert r.status_code in (201, 204), r.text
        return

    def tool(*args):
        r = subprocess.run([str(arctern_bin()), *args, "--data-dir", str(t.broker.data_dir)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, f"arctern {args}: {r.stdout}{r.stderr}"
    tool("users", "add", name, "--password", password, *(["--tags", ",".join(tags)] if tags else []))
    tool("permissions", "set", name, "/", ".*", ".*", ".*")


def wait(check, timeout: float = 20.0, interval: float = 0.2):
    """Polls `check()` until it returns something truthy; returns that."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            got = check()
            if got:
                return got
        except (AssertionError, KeyError, IndexError, TypeError) as e:
            last = e
        assert time.monotonic() < deadline, f"condition never held (last: {last!r})"
        time.sleep(interval)


def api(t, path, user="guest", password="guest", method="GET", headers=None):
    return requests.request(method, t.http + path, auth=(user, password) if user else None,
                            headers=headers, timeout=10)


def q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def local_port(conn: pika.BlockingConnection) -> int:
    return conn._impl._transport._sock.getsockname()[1]


def pika_conn(t, name, user="guest", password="guest"):
    params = pika.ConnectionParameters(
        "127.0.0.1", t.amqp_port, "/", pika.PlainCredentials(user, password),
        client_properties={"connection_name": name}, heartbeat=60)
    return pika.BlockingConnection(params)


def find_conn(t, port, user="guest", password="guest"):
    """The connection whose peer port is `port`, once listed."""
    def look():
        r = api(t, "/api/connections", user, password)
        assert r.status_code == 200, r.text
        return next((c for c in r.json() if c["peer_port"] == port), None)
    return wait(look)


def arctern_target(broker_factory, rabbitmqadmin_path):
    from conftest import arctern_with_management
    from rabbit import MgmtTarget
    b, http_port = arctern_with_management(broker_factory)
    t = MgmtTarget("arctern", http_port, b.amqp_port, rabbitmqadmin_path)
    t.broker = b
    # The first start's defaults (guest, "/") are in place once guest can log in.
    wait(lambda: requests.get(t.http + "/api/whoami", auth=t.auth, timeout=5).status_code == 200)
    return t


@pytest.fixture(params=["arctern", "rabbitmq"])
def target(request, broker_factory, rabbitmqadmin_path):
    """Arctern (fresh) or RabbitMQ 3.10 (the session node), with `.broker` for Arctern."""
    from rabbit import MgmtTarget
    if request.param == "arctern":
        return arctern_target(broker_factory, rabbitmqadmin_path)
    node = request.getfixturevalue("rabbitmq")
    t = MgmtTarget("rabbitmq", node.http_port, node.amqp_port, rabbitmqadmin_path)
    t.broker = None
    return t


@pytest.fixture
def arctern(broker_factory, rabbitmqadmin_path):
    return arctern_target(broker_factory, rabbitmqadmin_path)


CONNECTION_KEYS = {
    "name", "node", "type", "state", "protocol", "vhost", "user", "auth_mechanism", "host",
    "port", "peer_host", "peer_port", "ssl", "client_properties", "connected_at", "frame_max",
    "channel_max", "timeout", "channels", "recv_oct", "recv_oct_details", "recv_cnt",
    "send_oct", "send_oct_details", "send_cnt", "send_pend", "user_provided_name",
    "user_who_performed_action", "ssl_protocol", "peer_cert_subject",
}


def test_a_connection_appears_with_rabbitmqs_fields(target):
    t = target
    conn = pika_conn(t, "x-conn")
    try:
        port = local_port(conn)
        c = find_conn(t, port)
        assert CONNECTION_KEYS <= set(c), CONNECTION_KEYS - set(c)
        assert c["name"] == f"127.0.0.1:{port} -> 127.0.0.1:{t.amqp_port}"
        assert c["user"] == "guest"
        assert c["vhost"] == "/"
        assert c["peer_host"] == "127.0.0.1"
        assert c["host"] == "127.0.0.1"
        assert c["port"] == t.amqp_port
        assert c["protocol"] == "AMQP 0-9-1"
        assert c["type"] == "network"
        assert c["ssl"] is False
        assert c["auth_mechanism"] == "PLAIN"
        assert c["client_properties"]["connection_name"] == "x-conn"
        assert c["client_properties"]["product"] == "Pika Python Client Library"
        assert c["client_properties"]["capabilities"]["publisher_confirms"] is True
        assert c["user_provided_name"] == "x-conn"
        assert c["timeout"] == 60
        assert c["frame_max"] == 131072
        assert isinstance(c["connected_at"], int) and c["connected_at"] > 1_600_000_000_000
        # Byte counters follow the traffic (RabbitMQ's stats: wait for them).
        def traffic():
            x = find_conn(t, port)
            return x if x["recv_oct"] > 0 and x["send_oct"] > 0 else None
        c = wait(traffic)
        assert isinstance(c["recv_oct_details"]["rate"], (int, float))
        assert c["recv_cnt"] > 0 and c["send_cnt"] > 0
        one = api(t, f"/api/connections/{q(c['name'])}")
        assert one.status_code == 200
        assert one.json()["name"] == c["name"]
        assert one.json()["client_properties"]["connection_name"] == "x-conn"
        in_vhost = api(t, "/api/vhosts/%2F/connections").json()
        assert c["name"] in [x["name"] for x in in_vhost]
        assert api(t, "/api/vhosts/no-such-vhost/connections").status_code == 404
        assert api(t, "/api/connections/" + q("1.2.3.4:1 -> 1.2.3.4:2")).status_code == 404
        # rabbitmqadmin's columns= keeps only what it asks for.
        cols = api(t, "/api/connections?columns=name,user,recv_oct_details.rate").json()
        mine = next(x for x in cols if x["name"] == c["name"])
        assert set(mine) == {"name", "user", "recv_oct_details"}
        assert set(mine["recv_oct_details"]) == {"rate"}
    finally:
        conn.close()
    wait(lambda: api(t, f"/api/connections/{q(c['name'])}").status_code == 404)


def test_channels_and_consumers(target):
    t = target
    conn = pika_conn(t, "x-chan")
    try:
        port = local_port(conn)
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_qos(prefetch_count=7)
        queue = f"api-conn-{port}"
        ch.queue_declare(queue, auto_delete=True)
        tag = ch.basic_consume(queue, lambda *a: None, arguments={"x-priority": 3})
        c = find_conn(t, port)
        cname = c["name"]

        def channels():
            r = api(t, f"/api/connections/{q(cname)}/channels")
            assert r.status_code == 200, r.text
            chs = r.json()
            assert len(chs) == 1 and chs[0]["consumer_count"] == 1 and chs[0]["confirm"]
            return chs
        (info,) = wait(channels)
        assert info["number"] == 1
        assert info["name"] == f"{cname} (1)"
        assert info["connection_details"] == {"name": cname, "peer_host": "127.0.0.1",
                                              "peer_port": port}
        assert info["user"] == "guest"
        assert info["vhost"] == "/"
        assert info["transactional"] is False
        assert info["prefetch_count"] == 7
        assert info["messages_unacknowledged"] == 0
        assert info["messages_unconfirmed"] == 0
        assert info["state"] == "running"
        assert wait(lambda: api(t, f"/api/connections/{q(cname)}").json()["channels"] == 1)
        listed = api(t, "/api/channels").json()
        assert info["name"] in [x["name"] for x in listed]
        assert info["name"] in [x["name"] for x in api(t, "/api/vhosts/%2F/channels").json()]
        one = api(t, f"/api/channels/{q(info['name'])}")
        assert one.status_code == 200
        details = one.json()["consumer_details"]
        assert [d["consumer_tag"] for d in details] == [tag]
        assert api(t, f"/api/channels/{q(cname + ' (9)')}").status_code == 404

        def consumer():
            r = api(t, "/api/consumers")
            assert r.status_code == 200, r.text
            return next((x for x in r.json() if x["consumer_tag"] == tag), None)
        cons = wait(consumer)
        assert cons["queue"] == {"name": queue, "vhost": "/"}
        assert cons["ack_required"] is True
        assert cons["exclusive"] is False
        assert cons["prefetch_count"] == 7
        assert cons["arguments"] == {"x-priority": 3}
        cd = cons["channel_details"]
        assert cd["name"] == info["name"]
        assert cd["connection_name"] == cname
        assert cd["number"] == 1
        assert cd["peer_host"] == "127.0.0.1"
        assert cd["peer_port"] == port
        assert cd["user"] == "guest"
        assert tag in [x["consumer_tag"] for x in api(t, "/api/consumers/%2F").json()]
        assert api(t, "/api/consumers/no-such-vhost").status_code == 404
        # An unacked delivery shows on the channel.
        ch.basic_publish("", queue, b"m")
        conn.process_data_events(time_limit=0.5)
        wait(lambda: channels()[0]["messages_unacknowledged"] == 1)
    finally:
        conn.close()


def test_delete_closes_with_320(target):
    t = target
    conn = pika_conn(t, "x-del")
    port = local_port(conn)
    c = find_conn(t, port)
    r = api(t, f"/api/connections/{q(c['name'])}", method="DELETE")
    assert r.status_code == 204
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.5)
    assert e.value.reply_code == 320
    assert e.value.reply_text == "CONNECTION_FORCED - Closed via management plugin"
    wait(lambda: api(t, f"/api/connections/{q(c['name'])}").status_code == 404)


def test_delete_with_x_reason_closes_an_aio_pika_connection(target):
    t = target

    async def run():
        conn = await aio_pika.connect(
            f"amqp://guest:guest@127.0.0.1:{t.amqp_port}/",
            client_properties={"connection_name": "x-aio"})
        closed = asyncio.get_running_loop().create_future()

        def on_close(_sender, exc):
            if not closed.done():
                closed.set_result(exc)
        conn.close_callbacks.add(on_close)

        def find():
            r = api(t, "/api/connections")
            return next((x for x in r.json()
                         if x["client_properties"].get("connection_name") == "x-aio"), None)
        c = await asyncio.to_thread(wait, find)
        r = await asyncio.to_thread(api, t, f"/api/connections/{q(c['name'])}",
                                    method="DELETE", headers={"X-Reason": "maintenance"})
        assert r.status_code == 204
        exc = await asyncio.wait_for(closed, 15)
        assert "320" in repr(exc) or getattr(exc, "code", None) == 320, repr(exc)
        assert "maintenance" in str(exc)
    asyncio.run(run())


def test_management_users_see_only_their_own(target):
    t = target
    add_user(t, "mgr", "mgr-pw", "management")
    add_user(t, "mon", "mon-pw", "monitoring")
    mine = pika_conn(t, "x-mgr", "mgr", "mgr-pw")
    theirs = pika_conn(t, "x-guest")
    try:
        mine_port, theirs_port = local_port(mine), local_port(theirs)
        theirs.channel()
        find_conn(t, mine_port)
        other = find_conn(t, theirs_port)
        seen = wait(lambda: api(t, "/api/connections", "mgr", "mgr-pw").json())
        assert [c["peer_port"] for c in seen] == [mine_port]
        assert all(c["user"] == "mgr" for c in api(t, "/api/channels", "mgr", "mgr-pw").json())
        seen = {c["peer_port"] for c in api(t, "/api/connections", "mon", "mon-pw").json()}
        assert {mine_port, theirs_port} <= seen
        # Another user's connection: RabbitMQ 3.10 answers 401 "not_authorised".
        r = api(t, f"/api/connections/{q(other['name'])}", "mgr", "mgr-pw")
        assert r.status_code == 401
        assert r.json()["error"] == "not_authorised"
        assert api(t, f"/api/connections/{q(other['name'])}", "mon", "mon-pw").status_code == 200
        r = api(t, f"/api/connections/{q(other['name'])}/channels", "mgr", "mgr-pw")
        assert r.status_code == 401
        # Closing another user's connection needs administrator; a monitor may not.
        for who in (("mgr", "mgr-pw"), ("mon", "mon-pw")):
            r = api(t, f"/api/connections/{q(other['name'])}", *who, method="DELETE")
            assert r.status_code == 401
        assert theirs.is_open
        # A user may close its own.
        own = find_conn(t, mine_port)
        r = api(t, f"/api/connections/{q(own['name'])}", "mgr", "mgr-pw", method="DELETE")
        assert r.status_code == 204
    finally:
        for c in (mine, theirs):
            try:
                c.close()
            except Exception:
                pass


def test_credentials_are_required(target):
    t = target
    for path in ("/api/connections", "/api/channels", "/api/consumers"):
        assert api(t, path, None).status_code == 401
        assert api(t, path, "guest", "wrong").status_code == 401


def rabbitmqadmin(t, *args):
    return t.rabbitmqadmin(*args).stdout


def test_rabbitmqadmin_lists_and_closes(target):
    t = target
    conn = pika_conn(t, "x-admin")
    try:
        port = local_port(conn)
        ch = conn.channel()
        queue = f"admin-{port}"
        ch.queue_declare(queue, auto_delete=True)
        tag = ch.basic_consume(queue, lambda *a: None)
        c = find_conn(t, port)
        wait(lambda: c["name"] in rabbitmqadmin(t, "list", "connections"))
        wait(lambda: f"{c['name']} (1)" in rabbitmqadmin(t, "list", "channels"))
        wait(lambda: tag in rabbitmqadmin(t, "list", "consumers"))
        out = rabbitmqadmin(t, "close", "connection", f"name={c['name']}")
        assert "closed" in out.lower() or out == ""
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as e:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                conn.process_data_events(time_limit=0.5)
        assert e.value.reply_code == 320
    finally:
        if conn.is_open:
            conn.close()


def test_metrics_gauges_agree_with_the_registry(arctern):
    t = arctern
    conns = [pika_conn(t, f"x-m{i}") for i in range(2)]
    try:
        conns[0].channel()
        conns[0].channel()
        conns[1].channel()
        ports = [local_port(c) for c in conns]
        for p in ports:
            find_conn(t, p)

        def gauges():
            text = api(t, "/metrics").text
            vals = {}
            for line in text.splitlines():
                for name in ("rabbitmq_connections", "rabbitmq_channels"):
                    if line.startswith(name + " "):
                        vals[name] = float(line.split()[1])
            listed = api(t, "/api/connections").json()
            chans = api(t, "/api/channels").json()
            ok = (vals.get("rabbitmq_connections") == len(listed) == 2
                  and vals.get("rabbitmq_channels") == len(chans) == 3
                  and sum(c["channels"] for c in listed) == 3)
            return ok
        wait(gauges)
    finally:
        for c in conns:
            c.close()
