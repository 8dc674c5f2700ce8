"""The management HTTP API's queues, exchanges and bindings (`/api/queues`, `/api/exchanges`,
`/api/bindings`), checked with `requests` and pika against Arctern and a real RabbitMQ 3.10
alike (the `mgmt` fixture), and driven with RabbitMQ's own `rabbitmqadmin`: the paths,
status codes and JSON keys are RabbitMQ's, so every assertion here holds for both brokers.
Only the permission test is Arctern-only (its users come from Arctern's CLI)."""
from __future__ import annotations

import json
import subprocess
import time
import uuid
from urllib.parse import quote

import pika
import pytest
import requests

from broker import arctern_bin

pytestmark = pytest.mark.timeout(180)


def api(m, method: str, path: str, auth=None, **kw) -> requests.Response:
    return requests.request(method, f"{m.http}/api{path}", auth=auth or m.auth, timeout=30, **kw)


def q(name: str) -> str:
    return quote(name, safe="")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def connect(m) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=m.amqp_port,
        credentials=pika.PlainCredentials(m.user, m.password)))


def wait_for(fn, timeout: float = 30.0, what: str = "condition"):
    """Polls fn() until it returns a truthy value (RabbitMQ's stats lag a second or so)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def passive_count(ch, name: str) -> int:
    return ch.queue_declare(queue=name, passive=True).method.message_count


QUEUE_KEYS = {"name", "vhost", "durable", "auto_delete", "exclusive", "arguments", "node",
              "state", "type", "messages", "messages_ready", "messages_unacknowledged",
              "consumers"}


def test_queue_counts_and_rates(mgmt):
    name = unique("counts")
    conn = connect(mgmt)
    ch = conn.channel()
    ch.queue_declare(queue=name, durable=True)
    # A first look before the publishes: rates compare with the previous sample.
    r = api(mgmt, "GET", f"/queues/%2F/{q(name)}")
    assert r.status_code == 200, r.text
    for i in range(10):
        ch.basic_publish("", name, f"m{i}".encode())
    ch.basic_qos(prefetch_count=1)
    got = []
    ch.basic_consume(name, lambda c, m, p, b: got.append(m.delivery_tag))
    conn.process_data_events(time_limit=1)
    assert len(got) == 1

    def counts():
        d = api(mgmt, "GET", f"/queues/%2F/{q(name)}").json()
        ok = (d.get("messages_ready") == 9 and d.get("messages_unacknowledged") == 1
              and d.get("consumers") == 1 and d.get("messages") == 10
              and d.get("message_stats", {}).get("publish", 0) >= 10)
        return d if ok else None

    d = wait_for(counts, what="queue counts")
    assert QUEUE_KEYS <= d.keys()
    assert d["vhost"] == "/" and d["name"] == name
    assert d["durable"] is True and d["auto_delete"] is False and d["exclusive"] is False
    assert d["state"] == "running" and d["type"] == "classic"
    assert isinstance(d["node"], str) and d["node"]
    assert d["arguments"] == {}
    assert "rate" in d["messages_details"]
    assert d["message_stats"]["deliver_get"] >= 1
    assert "rate" in d["message_stats"]["publish_details"]

    # While messages keep coming, the publish rate is positive (RabbitMQ's rate is over its
    # last stats samples, so keep publishing while looking).
    def publishing_rate():
        for i in range(5):
            ch.basic_publish("", name, b"more")
        conn.process_data_events(time_limit=0.2)
        d = api(mgmt, "GET", f"/queues/%2F/{q(name)}").json()
        return d.get("message_stats", {}).get("publish_details", {}).get("rate", 0) > 0

    wait_for(publishing_rate, what="a positive publish rate")
    # The same queue in the lists.
    for path in ("/queues", "/queues/%2F"):
        listed = api(mgmt, "GET", path).json()
        mine = [x for x in listed if x["name"] == name]
        assert len(mine) == 1 and QUEUE_KEYS <= mine[0].keys()
    conn.close()
    assert api(mgmt, "DELETE", f"/queues/%2F/{q(name)}").status_code == 204


def test_quorum_type_is_reported(mgmt):
    name = unique("quorum")
    r = api(mgmt, "PUT", f"/queues/%2F/{q(name)}",
            json={"durable": True, "auto_delete": False, "arguments": {"x-queue-type": "quorum"}})
    assert r.status_code == 201, r.text
    d = wait_for(lambda: api(mgmt, "GET", f"/queues/%2F/{q(name)}").json().get("type"),
                 what="queue type")
    assert d == "quorum"
    assert api(mgmt, "DELETE", f"/queues/%2F/{q(name)}").status_code == 204


def test_put_and_delete_queue_as_pika_sees_them(mgmt):
    name = unique("put")
    path = f"/queues/%2F/{q(name)}"
    body = {"durable": True, "auto_delete": False, "arguments": {"x-max-length": 10}}
    assert api(mgmt, "GET", path).status_code == 404
    r = api(mgmt, "PUT", path, json=body)
    assert r.status_code == 201, r.text
    assert api(mgmt, "PUT", path, json=body).status_code == 204
    # A different declaration: PRECONDITION_FAILED becomes a 400.
    r = api(mgmt, "PUT", path, json={**body, "durable": False})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "bad_request"
    assert "durable" in r.json()["reason"]
    d = api(mgmt, "GET", path).json()
    assert d["durable"] is True and d["arguments"] == {"x-max-length": 10}

    conn = connect(mgmt)
    ch = conn.channel()
    ch.queue_declare(queue=name, passive=True)
    ch.basic_publish("", name, b"x")
    wait_for(lambda: passive_count(ch, name) == 1, what="the publish")
    # Not empty: refused with if-empty, then purged, then deleted.
    r = api(mgmt, "DELETE", path, params={"if-empty": "true"})
    assert r.status_code == 400, r.text
    assert api(mgmt, "DELETE", f"{path}/contents").status_code == 204
    assert passive_count(ch, name) == 0
    assert api(mgmt, "DELETE", path, params={"if-empty": "true"}).status_code == 204
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as e:
        ch.queue_declare(queue=name, passive=True)
    assert e.value.reply_code == 404
    conn.close()
    assert api(mgmt, "DELETE", path).status_code == 404
    assert api(mgmt, "DELETE", f"{path}/contents").status_code == 404


def test_delete_if_unused(mgmt):
    name = unique("unused")
    path = f"/queues/%2F/{q(name)}"
    assert api(mgmt, "PUT", path, json={"durable": False}).status_code == 201
    conn = connect(mgmt)
    ch = conn.channel()
    tag = ch.basic_consume(name, lambda *a: None)
    r = api(mgmt, "DELETE", path, params={"if-unused": "true"})
    assert r.status_code == 400, r.text
    ch.basic_cancel(tag)
    wait_for(lambda: api(mgmt, "GET", path).json().get("consumers") == 0, what="no consumers")
    assert api(mgmt, "DELETE", path, params={"if-unused": "true"}).status_code == 204
    conn.close()


def get(m, name, count, ackmode, encoding="auto", **extra):
    r = api(m, "POST", f"/queues/%2F/{q(name)}/get",
            json={"count": count, "ackmode": ackmode, "encoding": encoding, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def test_get_with_each_ackmode(mgmt):
    name = unique("get")
    conn = connect(mgmt)
    ch = conn.channel()
    ch.queue_declare(queue=name)
    for i in range(4):
        ch.basic_publish("", name, f"m{i}".encode(),
                         pika.BasicProperties(content_type="text/plain", headers={"n": i}))
    wait_for(lambda: passive_count(ch, name) == 4, what="4 messages")

    two = get(mgmt, name, 2, "ack_requeue_true")
    assert [m["payload"] for m in two] == ["m0", "m1"]
    m0 = two[0]
    assert {"payload", "payload_bytes", "payload_encoding", "redelivered", "exchange",
            "routing_key", "message_count", "properties"} <= m0.keys()
    assert m0["payload_encoding"] == "string" and m0["payload_bytes"] == 2
    assert m0["redelivered"] is False and m0["exchange"] == "" and m0["routing_key"] == name
    assert m0["message_count"] == 3
    assert m0["properties"]["content_type"] == "text/plain"
    assert m0["properties"]["headers"] == {"n": 0}
    assert passive_count(ch, name) == 4

    back = get(mgmt, name, 1, "reject_requeue_true")
    assert back[0]["payload"] == "m0" and back[0]["redelivered"] is True
    assert passive_count(ch, name) == 4

    acked = get(mgmt, name, 1, "ack_requeue_false")
    assert acked[0]["payload"] == "m0"
    assert passive_count(ch, name) == 3

    b64 = get(mgmt, name, 1, "ack_requeue_false", encoding="base64")
    assert b64[0]["payload"] == "bTE=" and b64[0]["payload_encoding"] == "base64"

    rest = get(mgmt, name, 10, "reject_requeue_false")
    assert [m["payload"] for m in rest] == ["m2", "m3"]
    assert passive_count(ch, name) == 0
    assert get(mgmt, name, 1, "ack_requeue_true") == []

    r = api(mgmt, "POST", f"/queues/%2F/{q(unique('missing'))}/get",
            json={"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"})
    assert r.status_code == 404
    conn.close()
    api(mgmt, "DELETE", f"/queues/%2F/{q(name)}")


def test_exchanges_and_publish(mgmt):
    ex = unique("ex")
    name = unique("pubq")
    listed = api(mgmt, "GET", "/exchanges/%2F").json()
    names = {e["name"]: e for e in listed}
    for builtin in ("", "amq.direct", "amq.fanout", "amq.topic", "amq.headers"):
        assert builtin in names, builtin
    assert names[""]["type"] == "direct" and names[""]["durable"] is True
    d = api(mgmt, "GET", "/exchanges/%2F/amq.default").json()
    assert d["name"] == "" and d["vhost"] == "/"

    r = api(mgmt, "PUT", f"/exchanges/%2F/{q(ex)}",
            json={"type": "direct", "durable": True, "auto_delete": False, "internal": False,
                  "arguments": {}})
    assert r.status_code == 201, r.text
    assert api(mgmt, "PUT", f"/exchanges/%2F/{q(ex)}",
               json={"type": "direct", "durable": True}).status_code == 204
    r = api(mgmt, "PUT", f"/exchanges/%2F/{q(ex)}", json={"type": "fanout", "durable": True})
    assert r.status_code == 400, r.text
    e = api(mgmt, "GET", f"/exchanges/%2F/{q(ex)}").json()
    assert {k: e[k] for k in ("name", "vhost", "type", "durable", "auto_delete", "internal",
                              "arguments")} == {
        "name": ex, "vhost": "/", "type": "direct", "durable": True, "auto_delete": False,
        "internal": False, "arguments": {}}
    assert any(x["name"] == ex for x in api(mgmt, "GET", "/exchanges").json())

    assert api(mgmt, "PUT", f"/queues/%2F/{q(name)}", json={"durable": False}).status_code == 201
    r = api(mgmt, "POST", f"/bindings/%2F/e/{q(ex)}/q/{q(name)}", json={"routing_key": "rk"})
    assert r.status_code == 201, r.text

    def publish(exchange, key, payload, **kw):
        r = api(mgmt, "POST", f"/exchanges/%2F/{q(exchange)}/publish",
                json={"properties": kw.get("properties", {}), "routing_key": key,
                      "payload": payload, "payload_encoding": kw.get("encoding", "string")})
        assert r.status_code == 200, r.text
        return r.json()

    assert publish(ex, "rk", "hello", properties={"delivery_mode": 2,
                                                  "headers": {"h": "v"}}) == {"routed": True}
    assert publish(ex, "other", "lost") == {"routed": False}
    assert publish("amq.default", name, "aGk=", encoding="base64") == {"routed": True}
    # A missing exchange closes RabbitMQ's publishing channel: a 400.
    r = api(mgmt, "POST", f"/exchanges/%2F/{q(unique('nope'))}/publish",
            json={"properties": {}, "routing_key": "", "payload": "", "payload_encoding": "string"})
    assert r.status_code == 400, r.text

    conn = connect(mgmt)
    ch = conn.channel()
    wait_for(lambda: passive_count(ch, name) == 2, what="2 routed messages")
    method, props, body = ch.basic_get(name, auto_ack=True)
    assert body == b"hello" and method.routing_key == "rk" and method.exchange == ex
    assert props.delivery_mode == 2 and props.headers == {"h": "v"}
    method, props, body = ch.basic_get(name, auto_ack=True)
    assert body == b"hi"
    conn.close()

    assert api(mgmt, "DELETE", f"/exchanges/%2F/{q(ex)}", params={"if-unused": "true"}).status_code == 400
    assert api(mgmt, "DELETE", f"/exchanges/%2F/{q(ex)}").status_code == 204
    assert api(mgmt, "GET", f"/exchanges/%2F/{q(ex)}").status_code == 404
    assert api(mgmt, "DELETE", f"/exchanges/%2F/{q(ex)}").status_code == 404
    api(mgmt, "DELETE", f"/queues/%2F/{q(name)}")


BINDING_KEYS = {"source", "vhost", "destination", "destination_type", "routing_key",
                "arguments", "properties_key"}


def test_bindings_create_list_delete(mgmt):
    ex = unique("bex")
    ex2 = unique("bex2")
    name = unique("bq")
    for e, t in ((ex, "topic"), (ex2, "fanout")):
        assert api(mgmt, "PUT", f"/exchanges/%2F/{q(e)}", json={"type": t}).status_code == 201
    assert api(mgmt, "PUT", f"/queues/%2F/{q(name)}", json={}).status_code == 201

    base = f"/bindings/%2F/e/{q(ex)}/q/{q(name)}"
    r = api(mgmt, "POST", base, json={"routing_key": "a.*", "arguments": {}})
    assert r.status_code == 201, r.text
    # `*` is quoted (mochiweb's quote_plus keeps only letters, digits and `.-~_`), and the
    # Location quotes the whole key once more.
    assert r.headers["Location"] == f"{q(name)}/a.%252A"
    r = api(mgmt, "POST", base, json={"routing_key": "", "arguments": {}})
    assert r.status_code == 201
    assert r.headers["Location"] == f"{q(name)}/~"

    between = api(mgmt, "GET", base).json()
    assert sorted(b["properties_key"] for b in between) == ["a.%2A", "~"]
    b = next(b for b in between if b["routing_key"] == "a.*")
    assert BINDING_KEYS <= b.keys()
    assert (b["source"], b["destination"], b["destination_type"], b["vhost"],
            b["arguments"]) == (ex, name, "queue", "/", {})
    assert api(mgmt, "GET", f"{base}/a.%2A").json()["routing_key"] == "a.*"
    assert api(mgmt, "GET", f"{base}/nope").status_code == 404

    qb = api(mgmt, "GET", f"/queues/%2F/{q(name)}/bindings").json()
    # The default exchange's implicit binding is listed too.
    assert any(x["source"] == "" and x["routing_key"] == name for x in qb)
    assert sum(1 for x in qb if x["source"] == ex) == 2
    src = api(mgmt, "GET", f"/exchanges/%2F/{q(ex)}/bindings/source").json()
    assert sorted(x["routing_key"] for x in src) == ["", "a.*"]
    assert any(x["source"] == ex and x["destination"] == name
               for x in api(mgmt, "GET", "/bindings/%2F").json())
    assert any(x["source"] == ex for x in api(mgmt, "GET", "/bindings").json())

    # Exchange to exchange.
    eb = f"/bindings/%2F/e/{q(ex)}/e/{q(ex2)}"
    r = api(mgmt, "POST", eb, json={"routing_key": "x.y"})
    assert r.status_code == 201, r.text
    dest = api(mgmt, "GET", f"/exchanges/%2F/{q(ex2)}/bindings/destination").json()
    assert [(x["source"], x["destination_type"], x["routing_key"]) for x in dest] == [
        (ex, "exchange", "x.y")]
    assert api(mgmt, "DELETE", f"{eb}/x.y").status_code == 204
    assert api(mgmt, "GET", eb).json() == []

    assert api(mgmt, "DELETE", f"{base}/a.%2A").status_code == 204
    assert api(mgmt, "DELETE", f"{base}/~").status_code == 204
    assert api(mgmt, "GET", base).json() == []
    assert api(mgmt, "DELETE", f"{base}/~").status_code == 404
    assert api(mgmt, "POST", f"/bindings/%2F/e/{q(ex)}/q/{q(unique('no'))}",
               json={"routing_key": ""}).status_code == 404
    for e in (ex, ex2):
        api(mgmt, "DELETE", f"/exchanges/%2F/{q(e)}")
    api(mgmt, "DELETE", f"/queues/%2F/{q(name)}")


def test_binding_with_arguments_has_a_hashed_key(mgmt):
    ex = unique("hex")
    name = unique("hq")
    assert api(mgmt, "PUT", f"/exchanges/%2F/{q(ex)}", json={"type": "headers"}).status_code == 201
    assert api(mgmt, "PUT", f"/queues/%2F/{q(name)}", json={}).status_code == 201
    base = f"/bindings/%2F/e/{q(ex)}/q/{q(name)}"
    r = api(mgmt, "POST", base, json={"routing_key": "", "arguments": {"x-match": "all", "k": "v"}})
    assert r.status_code == 201, r.text
    [b] = api(mgmt, "GET", base).json()
    assert b["arguments"] == {"x-match": "all", "k": "v"}
    assert b["properties_key"].startswith("~") and len(b["properties_key"]) > 1
    assert r.headers["Location"].endswith("/" + quote(b["properties_key"], safe="~"))
    assert api(mgmt, "DELETE", f"{base}/{b['properties_key']}").status_code == 204
    assert api(mgmt, "GET", base).json() == []
    api(mgmt, "DELETE", f"/exchanges/%2F/{q(ex)}")
    api(mgmt, "DELETE", f"/queues/%2F/{q(name)}")


def rows(m, *args) -> list[dict]:
    return json.loads(m.rabbitmqadmin("-f", "raw_json", *args).stdout)


def test_rabbitmqadmin_drives_queues_exchanges_bindings(mgmt):
    ex = unique("adminx")
    name = unique("adminq")
    out = mgmt.rabbitmqadmin("declare", "queue", f"name={name}", "durable=true").stdout
    assert "queue declared" in out
    assert any(r["name"] == name and r["durable"]
               for r in rows(mgmt, "list", "queues", "name", "durable", "messages"))
    assert "exchange declared" in mgmt.rabbitmqadmin(
        "declare", "exchange", f"name={ex}", "type=fanout").stdout
    assert any(r["name"] == ex and r["type"] == "fanout"
               for r in rows(mgmt, "list", "exchanges", "name", "type"))
    assert "binding declared" in mgmt.rabbitmqadmin(
        "declare", "binding", f"source={ex}", f"destination={name}", "routing_key=k").stdout
    assert any(r["source"] == ex and r["destination"] == name and r["properties_key"] == "k"
               for r in rows(mgmt, "list", "bindings", "source", "destination",
                             "properties_key"))
    # The table output parses too.
    assert name in mgmt.rabbitmqadmin("list", "queues").stdout

    assert "Message published" in mgmt.rabbitmqadmin(
        "publish", f"exchange={ex}", "routing_key=k", "payload=hello").stdout
    assert "NOT routed" in mgmt.rabbitmqadmin(
        "publish", "exchange=amq.default", f"routing_key={unique('none')}", "payload=x").stdout
    assert "Message published" in mgmt.rabbitmqadmin(
        "publish", "exchange=amq.default", f"routing_key={name}", "payload=second").stdout
    wait_for(lambda: any(r["name"] == name and r.get("messages") == 2
                         for r in rows(mgmt, "list", "queues", "name", "messages")),
             what="2 messages listed")

    got = rows(mgmt, "get", f"queue={name}", "ackmode=ack_requeue_true")
    assert got[0]["payload"] == "hello" and got[0]["exchange"] == ex
    got = rows(mgmt, "get", f"queue={name}", "count=2", "ackmode=ack_requeue_false")
    assert [g["payload"] for g in got] == ["hello", "second"]
    assert got[0]["redelivered"] is True
    assert "hello" not in mgmt.rabbitmqadmin("get", f"queue={name}").stdout

    mgmt.rabbitmqadmin("publish", f"exchange={ex}", "routing_key=k", "payload=third")
    assert "queue purged" in mgmt.rabbitmqadmin("purge", "queue", f"name={name}").stdout
    assert rows(mgmt, "get", f"queue={name}") == []

    assert "binding deleted" in mgmt.rabbitmqadmin(
        "delete", "binding", f"source={ex}", "destination_type=queue", f"destination={name}",
        "properties_key=k").stdout
    assert not any(r["source"] == ex for r in rows(mgmt, "list", "bindings", "source"))
    assert "exchange deleted" in mgmt.rabbitmqadmin("delete", "exchange", f"name={ex}").stdout
    assert "queue deleted" in mgmt.rabbitmqadmin("delete", "queue", f"name={name}").stdout
    assert not any(r["name"] == name for r in rows(mgmt, "list", "queues", "name"))


def test_openapi_describes_the_routes(mgmt):
    if mgmt.name != "arctern":
        pytest.skip("RabbitMQ publishes no OpenAPI description")
    doc = requests.get(f"{mgmt.http}/api/openapi.json", auth=mgmt.auth, timeout=10).json()
    paths = doc["paths"]
    for p, methods in {
        "/api/queues/{vhost}/{name}": {"get", "put", "delete"},
        "/api/queues/{vhost}/{name}/get": {"post"},
        "/api/queues/{vhost}/{name}/contents": {"delete"},
        "/api/exchanges/{vhost}/{name}/publish": {"post"},
        "/api/bindings/{vhost}/e/{source}/q/{destination}": {"get", "post"},
        "/api/bindings/{vhost}/e/{source}/q/{destination}/{props}": {"get", "delete"},
    }.items():
        assert methods <= paths[p].keys(), p


# --- permissions (Arctern: users from its CLI) ---------------------------------------------

def cli(b, *args):
    p = subprocess.run([str(arctern_bin()), *args, "--data-dir", str(b.data_dir)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr


def test_permissions_as_rabbitmq(broker_factory):
    from conftest import arctern_with_management
    from rabbit import MgmtTarget
    b, port = arctern_with_management(broker_factory)
    m = MgmtTarget("arctern", port, b.amqp_port, None)
    wait_for(lambda: (b.data_dir / "admin.sock").exists(), what="admin socket")
    cli(b, "users", "add", "mgr", "--password", "pw", "--tags", "management")
    cli(b, "users", "add", "mon", "--password", "pw", "--tags", "monitoring")
    mine = unique("mine")
    other = unique("other")
    assert api(m, "PUT", f"/queues/%2F/{q(other)}", json={}).status_code == 201
    mgr = ("mgr", "pw")
    # No permissions in "/": nothing visible, and no writes.
    assert api(m, "GET", "/queues", auth=mgr).json() == []
    assert api(m, "GET", "/queues/%2F", auth=mgr).status_code == 403
    assert api(m, "PUT", f"/queues/%2F/{q(mine)}", auth=mgr, json={}).status_code == 403
    # monitoring reads every vhost.
    assert any(x["name"] == other for x in api(m, "GET", "/queues", auth=("mon", "pw")).json())
    assert api(m, "PUT", f"/queues/%2F/{q(mine)}", auth=("mon", "pw"), json={}).status_code == 403

    cli(b, "permissions", "set", "mgr", "/", "^mine-", "^amq\\.default$", "^mine-")
    wait_for(lambda: api(m, "GET", "/queues/%2F", auth=mgr).status_code == 200,
             what="permissions to apply")
    assert any(x["name"] == other for x in api(m, "GET", "/queues", auth=mgr).json())
    assert api(m, "PUT", f"/queues/%2F/{q(mine)}", auth=mgr, json={}).status_code == 201
    assert api(m, "PUT", f"/queues/%2F/{q(unique('x'))}", auth=mgr, json={}).status_code == 403
    assert api(m, "DELETE", f"/queues/%2F/{q(other)}", auth=mgr).status_code == 403
    assert api(m, "DELETE", f"/queues/%2F/{q(other)}/contents", auth=mgr).status_code == 403
    r = api(m, "POST", "/exchanges/%2F/amq.default/publish", auth=mgr,
            json={"properties": {}, "routing_key": mine, "payload": "p",
                  "payload_encoding": "string"})
    assert r.status_code == 200 and r.json() == {"routed": True}
    assert api(m, "POST", "/exchanges/%2F/amq.direct/publish", auth=mgr,
               json={"properties": {}, "routing_key": mine, "payload": "p",
                     "payload_encoding": "string"}).status_code == 403
    got = api(m, "POST", f"/queues/%2F/{q(mine)}/get", auth=mgr,
              json={"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"})
    assert got.status_code == 200 and got.json()[0]["payload"] == "p"
    assert api(m, "POST", f"/queues/%2F/{q(other)}/get", auth=mgr,
               json={"count": 1, "ackmode": "ack_requeue_false",
                     "encoding": "auto"}).status_code == 403
    # Binding needs write on the queue: refused here.
    assert api(m, "POST", f"/bindings/%2F/e/amq.direct/q/{q(mine)}", auth=mgr,
               json={"routing_key": "k"}).status_code == 403
    assert api(m, "DELETE", f"/queues/%2F/{q(mine)}", auth=mgr).status_code == 204
    # Unauthenticated: 401.
    assert requests.get(f"{m.http}/api/queues", timeout=10).status_code == 401
