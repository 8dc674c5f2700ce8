"""The management HTTP API's admin half (overview, nodes, users, vhosts, permissions,
definitions, health checks), asserted as RabbitMQ 3.10 documents and answers it: every
shape test runs against Arctern and a real RabbitMQ node (the `mgmt` fixture), and
RabbitMQ's own `rabbitmqadmin` drives both. Logins that the API creates or removes are
checked with pika."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from urllib.parse import quote

import pika
import pytest
import requests

pytestmark = pytest.mark.timeout(180)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def api(mgmt, method: str, path: str, auth=None, **kw) -> requests.Response:
    return requests.request(method, f"{mgmt.http}/api{path}",
                            auth=auth if auth is not None else mgmt.auth, timeout=30, **kw)


def ok_json(resp: requests.Response):
    assert resp.status_code == 200, (resp.status_code, resp.text)
    return resp.json()


def rabbit_hash(password: str) -> str:
    """rabbit_password_hashing_sha256: base64(salt ++ sha256(salt ++ password))."""
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def pika_login(mgmt, user: str, password: str, vhost: str = "/") -> None:
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=mgmt.amqp_port, virtual_host=vhost,
        credentials=pika.PlainCredentials(user, password), connection_attempts=1))
    conn.close()


def pika_refused(mgmt, user: str, password: str) -> None:
    with pytest.raises((pika.exceptions.ProbableAuthenticationError,
                        pika.exceptions.AuthenticationError,
                        pika.exceptions.ConnectionClosedByBroker)):
        pika_login(mgmt, user, password)


@pytest.fixture
def scratch(mgmt):
    """Names to clean up (the RabbitMQ node is shared by the session)."""
    made = {"users": [], "vhosts": []}
    yield made
    for u in made["users"]:
        api(mgmt, "DELETE", f"/users/{quote(u, safe='')}")
    for v in made["vhosts"]:
        api(mgmt, "DELETE", f"/vhosts/{quote(v, safe='')}")


def make_user(mgmt, scratch, tags="", password="pw-" + uuid.uuid4().hex[:6], name=None):
    name = name or unique("u")
    r = api(mgmt, "PUT", f"/users/{name}", json={"password": password, "tags": tags})
    assert r.status_code == 201, r.text
    scratch["users"].append(name)
    return name, password


# --- overview, nodes, cluster name -----------------------------------------------------------

def test_overview_shape(mgmt):
    o = ok_json(api(mgmt, "GET", "/overview"))
    for key in ("management_version", "rabbitmq_version", "product_name", "cluster_name",
                "node", "object_totals", "queue_totals", "message_stats", "listeners",
                "contexts", "exchange_types", "rates_mode"):
        assert key in o, key
    assert set(o["object_totals"]) >= {"connections", "channels", "exchanges", "queues",
                                       "consumers"}
    assert all(isinstance(v, int) for v in o["object_totals"].values())
    # RabbitMQ leaves queue_totals empty until it has a queue.
    assert set(o["queue_totals"]) <= {"messages", "messages_ready", "messages_unacknowledged",
                                      "messages_details", "messages_ready_details",
                                      "messages_unacknowledged_details"}
    if mgmt.name == "arctern":
        assert set(o["queue_totals"]) >= {"messages", "messages_ready",
                                          "messages_unacknowledged"}
    assert isinstance(o["message_stats"], dict)
    amqp = [l for l in o["listeners"] if l["protocol"] == "amqp"]
    assert [l["port"] for l in amqp] == [mgmt.amqp_port]
    assert set(amqp[0]) >= {"node", "protocol", "ip_address", "port"}
    assert amqp[0]["node"] == o["node"]
    assert any(l["protocol"] == "http" and l["port"] == mgmt.http_port for l in o["listeners"])
    if mgmt.name == "arctern":
        assert o["product_name"] == "Arctern"


def test_overview_counts_a_queue_and_its_messages(mgmt):
    q = unique("ov")
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=mgmt.amqp_port,
        credentials=pika.PlainCredentials(*mgmt.auth)))
    try:
        ch = conn.channel()
        ch.queue_declare(q, durable=True)
        ch.confirm_delivery()
        ch.basic_publish("", q, b"x")
        import time
        deadline = time.monotonic() + 15
        while True:
            o = ok_json(api(mgmt, "GET", "/overview"))
            if o["queue_totals"].get("messages_ready", 0) >= 1 and o["object_totals"]["queues"] >= 1:
                break
            assert time.monotonic() < deadline, o
            time.sleep(0.5)
        assert o["object_totals"]["connections"] >= 1
        ch.queue_delete(q)
    finally:
        conn.close()


def test_nodes_and_cluster_name(mgmt):
    nodes = ok_json(api(mgmt, "GET", "/nodes"))
    assert len(nodes) >= 1
    for n in nodes:
        assert n["type"] == "disc" and n["running"] is True
    me = ok_json(api(mgmt, "GET", "/overview"))["node"]
    node = ok_json(api(mgmt, "GET", f"/nodes/{quote(me, safe='')}"))
    assert node["name"] == me
    for key in ("uptime", "mem_used", "disk_free", "disk_free_alarm", "mem_alarm",
                "fd_used", "fd_total", "proc_used"):
        assert key in node, key
    assert node["disk_free"] > 0 and node["mem_used"] > 0
    assert node["disk_free_alarm"] is False and node["mem_alarm"] is False
    if mgmt.name == "arctern":  # RabbitMQ 3.10 answers an unknown node with a 500
        assert api(mgmt, "GET", "/nodes/nobody@nowhere").status_code == 404
    name = ok_json(api(mgmt, "GET", "/cluster-name"))
    assert isinstance(name["name"], str) and name["name"]


# --- authentication and tags -----------------------------------------------------------------

def refused_for_tags(mgmt, r: requests.Response) -> None:
    """A known user whose tags do not allow it: RabbitMQ 3.10 answers 401 without a
    challenge ("Not administrator user"); Arctern answers 403 (see docs/operations.md)."""
    assert r.status_code == (403 if mgmt.name == "arctern" else 401), (r.status_code, r.text)
    assert "WWW-Authenticate" not in r.headers
    assert r.json()["error"] in ("not_authorised", "not_authorized")


def test_refusals(mgmt, scratch):
    r = requests.get(f"{mgmt.http}/api/overview", timeout=10)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Basic realm=")
    r = api(mgmt, "GET", "/overview", auth=(mgmt.user, "wrong-password"))
    assert r.status_code == 401
    assert "WWW-Authenticate" in r.headers

    mgr, mgr_pw = make_user(mgmt, scratch, tags="management")
    # A management user reads its own things but administers nothing.
    assert api(mgmt, "GET", "/overview", auth=(mgr, mgr_pw)).status_code == 200
    for path in ("/users", "/permissions", "/definitions", "/nodes"):
        refused_for_tags(mgmt, api(mgmt, "GET", path, auth=(mgr, mgr_pw)))
    victim = unique("v")
    refused_for_tags(mgmt, api(mgmt, "PUT", f"/users/{victim}", auth=(mgr, mgr_pw),
                               json={"password": "x", "tags": "administrator"}))
    assert api(mgmt, "GET", f"/users/{victim}").status_code == 404
    refused_for_tags(mgmt, api(mgmt, "PUT", f"/vhosts/{victim}", auth=(mgr, mgr_pw)))
    refused_for_tags(mgmt, api(mgmt, "DELETE", f"/users/{mgmt.user}", auth=(mgr, mgr_pw)))
    assert api(mgmt, "GET", f"/users/{mgmt.user}").status_code == 200

    # A user without tags may not use the management API at all.
    plain, plain_pw = make_user(mgmt, scratch, tags="")
    refused_for_tags(mgmt, api(mgmt, "GET", "/overview", auth=(plain, plain_pw)))


def test_management_user_sees_only_its_vhosts(mgmt, scratch):
    mgr, pw = make_user(mgmt, scratch, tags="management")
    mine, other = unique("mine"), unique("other")
    for v in (mine, other):
        assert api(mgmt, "PUT", f"/vhosts/{v}").status_code == 201
        scratch["vhosts"].append(v)
    assert api(mgmt, "PUT", f"/permissions/{mine}/{mgr}",
               json={"configure": ".*", "write": ".*", "read": ".*"}).status_code == 201
    names = [v["name"] for v in ok_json(api(mgmt, "GET", "/vhosts", auth=(mgr, pw)))]
    assert mine in names and other not in names
    everything = [v["name"] for v in ok_json(api(mgmt, "GET", "/vhosts"))]
    assert mine in everything and other in everything


# --- users -----------------------------------------------------------------------------------

def test_user_round_trip_reflected_in_amqp_logins(mgmt, scratch):
    name, pw = unique("alice"), "s3cret-" + uuid.uuid4().hex[:6]
    r = api(mgmt, "PUT", f"/users/{name}", json={"password": pw, "tags": "management"})
    assert r.status_code == 201, r.text
    scratch["users"].append(name)
    # An update answers 204; tags as a list are accepted too.
    r = api(mgmt, "PUT", f"/users/{name}", json={"password": pw,
                                                 "tags": ["management", "monitoring"]})
    assert r.status_code == 204, r.text
    u = ok_json(api(mgmt, "GET", f"/users/{name}"))
    assert u["name"] == name
    assert sorted(u["tags"]) == ["management", "monitoring"]
    assert u["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert base64.b64decode(u["password_hash"])  # a hash, never the password
    assert pw not in json.dumps(u)
    assert name in [x["name"] for x in ok_json(api(mgmt, "GET", "/users"))]
    assert name in [x["name"] for x in ok_json(api(mgmt, "GET", "/users/without-permissions"))]

    assert api(mgmt, "PUT", f"/permissions/%2F/{name}",
               json={"configure": ".*", "write": ".*", "read": ".*"}).status_code == 201
    perms = ok_json(api(mgmt, "GET", f"/users/{name}/permissions"))
    assert perms == [{"user": name, "vhost": "/", "configure": ".*", "write": ".*",
                      "read": ".*"}]
    pika_login(mgmt, name, pw)

    # tags are mandatory; without password or password_hash the password is gone.
    r = api(mgmt, "PUT", f"/users/{name}", json={"password": pw})
    assert r.status_code == 400 and r.json()["reason"] == "tags_not_present"
    assert api(mgmt, "PUT", f"/users/{name}", json={"tags": "monitoring"}).status_code == 204
    u = ok_json(api(mgmt, "GET", f"/users/{name}"))
    assert u["tags"] == ["monitoring"] and u["password_hash"] == ""
    pika_refused(mgmt, name, pw)
    assert api(mgmt, "PUT", f"/users/{name}",
               json={"password": pw, "tags": "monitoring"}).status_code == 204
    pika_login(mgmt, name, pw)

    assert api(mgmt, "DELETE", f"/users/{name}").status_code == 204
    assert api(mgmt, "GET", f"/users/{name}").status_code == 404
    assert api(mgmt, "DELETE", f"/users/{name}").status_code == 404
    pika_refused(mgmt, name, pw)


def test_user_with_a_password_hash_logs_in(mgmt, scratch):
    name, pw = unique("hashed"), "from-a-hash"
    r = api(mgmt, "PUT", f"/users/{name}", json={
        "password_hash": rabbit_hash(pw),
        "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ""})
    assert r.status_code == 201, r.text
    scratch["users"].append(name)
    assert ok_json(api(mgmt, "GET", f"/users/{name}"))["tags"] == []
    api(mgmt, "PUT", f"/permissions/%2F/{name}",
        json={"configure": "", "write": "", "read": ""})
    pika_login(mgmt, name, pw)


def test_bulk_delete(mgmt, scratch):
    a, _ = make_user(mgmt, scratch)
    b, _ = make_user(mgmt, scratch)
    r = api(mgmt, "POST", "/users/bulk-delete", json={"users": [a, b]})
    assert r.status_code == 204, r.text
    r = api(mgmt, "POST", "/users/bulk-delete", json={"users": ["no-such-user"]})
    assert r.status_code == 400
    assert api(mgmt, "GET", f"/users/{a}").status_code == 404
    assert api(mgmt, "GET", f"/users/{b}").status_code == 404


# --- vhosts and permissions ------------------------------------------------------------------

def test_vhost_round_trip(mgmt, scratch):
    v = unique("vh")
    r = api(mgmt, "PUT", f"/vhosts/{v}", json={"description": "for tests",
                                                "tags": "accounts,production"})
    assert r.status_code == 201, r.text
    scratch["vhosts"].append(v)
    got = ok_json(api(mgmt, "GET", f"/vhosts/{v}"))
    assert got["name"] == v
    assert got["description"] == "for tests"
    assert sorted(got["tags"]) == ["accounts", "production"]
    assert got["metadata"]["description"] == "for tests"
    assert "tracing" in got
    assert api(mgmt, "PUT", f"/vhosts/{v}", json={"description": "changed"}).status_code == 204
    assert ok_json(api(mgmt, "GET", f"/vhosts/{v}"))["description"] == "changed"
    assert v in [x["name"] for x in ok_json(api(mgmt, "GET", "/vhosts"))]
    root = ok_json(api(mgmt, "GET", "/vhosts/%2F"))
    assert root["name"] == "/"

    user, pw = make_user(mgmt, scratch, tags="")
    assert api(mgmt, "PUT", f"/permissions/{v}/{user}",
               json={"configure": "^c", "write": "^w", "read": "^r"}).status_code == 201
    assert api(mgmt, "PUT", f"/permissions/{v}/{user}",
               json={"configure": ".*", "write": "^w", "read": "^r"}).status_code == 204
    assert ok_json(api(mgmt, "GET", f"/permissions/{v}/{user}")) == {
        "user": user, "vhost": v, "configure": ".*", "write": "^w", "read": "^r"}
    # The vhost's creator got full permissions in it, as RabbitMQ's API grants them.
    assert sorted(ok_json(api(mgmt, "GET", f"/vhosts/{v}/permissions")),
                  key=lambda p: p["user"] != mgmt.user) == [
        {"user": mgmt.user, "vhost": v, "configure": ".*", "write": ".*", "read": ".*"},
        {"user": user, "vhost": v, "configure": ".*", "write": "^w", "read": "^r"}]
    assert {"user": user, "vhost": v, "configure": ".*", "write": "^w", "read": "^r"} in \
        ok_json(api(mgmt, "GET", "/permissions"))
    pika_login(mgmt, user, pw, vhost=v)

    assert api(mgmt, "DELETE", f"/permissions/{v}/{user}").status_code == 204
    assert api(mgmt, "GET", f"/permissions/{v}/{user}").status_code == 404
    assert api(mgmt, "DELETE", f"/permissions/{v}/{user}").status_code == 404

    assert api(mgmt, "DELETE", f"/vhosts/{v}").status_code == 204
    assert api(mgmt, "GET", f"/vhosts/{v}").status_code == 404
    assert api(mgmt, "DELETE", f"/vhosts/{v}").status_code == 404
    assert api(mgmt, "GET", "/vhosts/no-such-vhost/permissions").status_code == 404


def test_permission_bodies_need_all_keys(mgmt, scratch):
    user, _ = make_user(mgmt, scratch)
    r = api(mgmt, "PUT", f"/permissions/%2F/{user}", json={"configure": ".*", "write": ".*"})
    assert r.status_code == 400
    assert r.json() == {"error": "bad_request", "reason": "[{key_missing,read}]"}
    assert api(mgmt, "GET", f"/permissions/%2F/{user}").status_code == 404
    r = api(mgmt, "PUT", f"/permissions/no-such-vhost/{user}",
            json={"configure": ".*", "write": ".*", "read": ".*"})
    assert r.status_code == 400 and r.json()["reason"] == "vhost_or_user_not_found"
    r = api(mgmt, "PUT", "/permissions/%2F/no-such-user",
            json={"configure": ".*", "write": ".*", "read": ".*"})
    assert r.status_code == 400 and r.json()["reason"] == "vhost_or_user_not_found"


# --- definitions -----------------------------------------------------------------------------

def test_definitions_export_import_round_trip(mgmt, scratch):
    v, user, q = unique("defs"), unique("defuser"), unique("defq")
    pw = "pw-" + uuid.uuid4().hex[:6]
    assert api(mgmt, "PUT", f"/vhosts/{v}", json={"description": "d"}).status_code == 201
    scratch["vhosts"].append(v)
    assert api(mgmt, "PUT", f"/users/{user}",
               json={"password": pw, "tags": "monitoring"}).status_code == 201
    scratch["users"].append(user)
    assert api(mgmt, "PUT", f"/permissions/{v}/{user}",
               json={"configure": ".*", "write": ".*", "read": ".*"}).status_code == 201
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=mgmt.amqp_port, virtual_host=v,
        credentials=pika.PlainCredentials(user, pw)))
    conn.channel().queue_declare(q, durable=True, arguments={"x-max-length": 10})
    conn.close()

    defs = ok_json(api(mgmt, "GET", "/definitions"))
    for key in ("users", "vhosts", "permissions", "queues", "exchanges", "bindings",
                "policies", "parameters"):
        assert isinstance(defs[key], list), key
    assert "rabbit_version" in defs or "rabbitmq_version" in defs
    [u] = [x for x in defs["users"] if x["name"] == user]
    assert u["tags"] == ["monitoring"]
    assert u["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert any(x["name"] == v for x in defs["vhosts"])
    assert {"user": user, "vhost": v, "configure": ".*", "write": ".*",
            "read": ".*"} in defs["permissions"]
    [qd] = [x for x in defs["queues"] if x["name"] == q]
    assert qd["vhost"] == v and qd["durable"] is True
    assert qd["arguments"] == {"x-max-length": 10}

    one = ok_json(api(mgmt, "GET", f"/definitions/{v}"))
    [qv] = [x for x in one["queues"] if x["name"] == q]
    assert "vhost" not in qv
    r = api(mgmt, "GET", "/definitions/no-such-vhost")
    assert r.status_code == 400 and r.json()["reason"] == "vhost_not_found"

    # Drop it all, then import the export: the user logs in again and the queue is back.
    assert api(mgmt, "DELETE", f"/vhosts/{v}").status_code == 204
    assert api(mgmt, "DELETE", f"/users/{user}").status_code == 204
    pika_refused(mgmt, user, pw)
    mine = {k: defs[k] for k in ("rabbit_version", "parameters", "policies") if k in defs}
    mine["users"] = [u]
    mine["vhosts"] = [x for x in defs["vhosts"] if x["name"] == v]
    mine["permissions"] = [p for p in defs["permissions"] if p["vhost"] == v]
    mine["queues"] = [qd]
    mine["exchanges"], mine["bindings"] = [], []
    r = api(mgmt, "POST", "/definitions", json=mine)
    assert r.status_code in (200, 201, 204), r.text
    pika_login(mgmt, user, pw, vhost=v)
    again = ok_json(api(mgmt, "GET", f"/definitions/{v}"))
    assert [x["name"] for x in again["queues"]] == [q]

    # RabbitMQ's upload form posts a multipart body with the field "file".
    q2 = unique("multipart")
    doc = {"queues": [{"name": q2, "vhost": v, "durable": True, "auto_delete": False,
                       "arguments": {}}]}
    r = requests.post(f"{mgmt.http}/api/definitions", auth=mgmt.auth, timeout=30,
                      files={"file": ("defs.json", json.dumps(doc), "application/json")})
    assert r.status_code in (200, 201, 204), r.text
    names = [x["name"] for x in ok_json(api(mgmt, "GET", f"/definitions/{v}"))["queues"]]
    assert q2 in names


def test_bad_definitions_are_a_400(mgmt):
    r = api(mgmt, "POST", "/definitions", data=b"{not json",
            headers={"content-type": "application/json"})
    assert r.json() == {"error": "bad_request", "reason": "failed_to_parse_json"}


# --- health checks ---------------------------------------------------------------------------

def test_health_checks(mgmt):
    for path in ("/health/checks/alarms", "/health/checks/local-alarms",
                 "/health/checks/virtual-hosts", f"/health/checks/port-listener/{mgmt.amqp_port}",
                 "/health/checks/protocol-listener/amqp091"):
        assert ok_json(api(mgmt, "GET", path))["status"] == "ok", path
    r = api(mgmt, "GET", "/health/checks/port-listener/1")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "failed" and body["reason"] == "No active listener"
    assert body["missing"] == 1 and mgmt.amqp_port in body["ports"]
    assert ok_json(api(mgmt, "GET", f"/health/checks/port-listener/{mgmt.amqp_port}")) == {
        "status": "ok", "port": mgmt.amqp_port}
    r = api(mgmt, "GET", "/health/checks/protocol-listener/stomp")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "failed" and body["missing"] == "stomp"
    assert "amqp" in body["protocols"]


def test_aliveness_test(mgmt):
    assert ok_json(api(mgmt, "GET", "/aliveness-test/%2F")) == {"status": "ok"}
    # Twice: the queue stays and the second run finds its own message.
    assert ok_json(api(mgmt, "GET", "/aliveness-test/%2F")) == {"status": "ok"}
    assert api(mgmt, "GET", "/aliveness-test/no-such-vhost").status_code == 404


# --- rabbitmqadmin, RabbitMQ's own CLI, against both ----------------------------------------

def test_rabbitmqadmin_users_vhosts_permissions(mgmt, scratch, tmp_path):
    v, user, pw = unique("adm-vh"), unique("adm-user"), "pw-" + uuid.uuid4().hex[:6]
    scratch["vhosts"].append(v)
    scratch["users"].append(user)
    mgmt.rabbitmqadmin("declare", "vhost", f"name={v}")
    mgmt.rabbitmqadmin("declare", "user", f"name={user}", f"password={pw}", "tags=management")
    mgmt.rabbitmqadmin("declare", "permission", f"vhost={v}", f"user={user}",
                       "configure=.*", "write=.*", "read=.*")
    users = json.loads(mgmt.rabbitmqadmin("-f", "raw_json", "list", "users").stdout)
    assert any(u["name"] == user and u["tags"] == ["management"] for u in users)
    vhosts = json.loads(mgmt.rabbitmqadmin("-f", "raw_json", "list", "vhosts").stdout)
    assert any(x["name"] == v for x in vhosts)
    perms = json.loads(mgmt.rabbitmqadmin("-f", "raw_json", "list", "permissions").stdout)
    assert {"user": user, "vhost": v, "configure": ".*", "write": ".*", "read": ".*"} in perms
    # The table formats read the same fields.
    assert user in mgmt.rabbitmqadmin("list", "users").stdout
    assert v in mgmt.rabbitmqadmin("list", "vhosts", "name").stdout
    assert mgmt.rabbitmqadmin("show", "overview").stdout.strip()
    assert mgmt.rabbitmqadmin("list", "nodes").stdout.strip()
    pika_login(mgmt, user, pw, vhost=v)

    # export -> delete -> import
    path = tmp_path / "defs.json"
    mgmt.rabbitmqadmin("export", str(path))
    exported = json.loads(path.read_text())
    assert any(u["name"] == user for u in exported["users"])
    mgmt.rabbitmqadmin("delete", "permission", f"vhost={v}", f"user={user}")
    mgmt.rabbitmqadmin("delete", "user", f"name={user}")
    mgmt.rabbitmqadmin("delete", "vhost", f"name={v}")
    assert api(mgmt, "GET", f"/users/{user}").status_code == 404
    pika_refused(mgmt, user, pw)
    # Import only this test's objects (the shared RabbitMQ node holds other tests' too).
    mine = {"users": [u for u in exported["users"] if u["name"] == user],
            "vhosts": [x for x in exported["vhosts"] if x["name"] == v],
            "permissions": [p for p in exported["permissions"] if p["user"] == user]}
    path.write_text(json.dumps(mine))
    mgmt.rabbitmqadmin("import", str(path))
    pika_login(mgmt, user, pw, vhost=v)

    # A management user's rabbitmqadmin cannot administer users.
    r = mgmt.rabbitmqadmin("declare", "user", "name=nope", "password=x", "tags=",
                           user=user, password=pw, check=False)
    assert r.returncode != 0
    assert "403" in r.stdout + r.stderr or "Access refused" in r.stdout + r.stderr or \
        "not_authorised" in r.stdout + r.stderr


# --- Arctern only ----------------------------------------------------------------------------

def test_openapi_describes_the_admin_paths(mgmt):
    if mgmt.name != "arctern":
        pytest.skip("Arctern's own description")
    doc = ok_json(requests.get(f"{mgmt.http}/api/openapi.json", timeout=10))
    paths = doc["paths"]
    for p, methods in {
        "/api/overview": ["get"], "/api/nodes": ["get"], "/api/nodes/{name}": ["get"],
        "/api/cluster-name": ["get"], "/api/users": ["get"],
        "/api/users/{name}": ["get", "put", "delete"], "/api/users/bulk-delete": ["post"],
        "/api/vhosts/{name}": ["get", "put", "delete"],
        "/api/permissions/{vhost}/{user}": ["get", "put", "delete"],
        "/api/definitions": ["get", "post"], "/api/definitions/{vhost}": ["get", "post"],
        "/api/health/checks/alarms": ["get"], "/api/aliveness-test/{vhost}": ["get"],
    }.items():
        for m in methods:
            assert m in paths[p], (p, m)
    assert "201" in paths["/api/users/{name}"]["put"]["responses"]
    assert "503" in paths["/api/health/checks/alarms"]["get"]["responses"]
