"""The RabbitMQ fixture itself: both brokers answer /api/whoami for guest, and RabbitMQ's
own rabbitmqadmin reads it from both."""
from __future__ import annotations

import json
import urllib.request
import base64


def get_json(url: str, user: str = "guest", password: str = "guest"):
    req = urllib.request.Request(url)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    req.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_whoami_on_both_brokers(mgmt):
    me = get_json(f"{mgmt.http}/api/whoami")
    assert me["name"] == "guest"
    assert "administrator" in me["tags"]


def test_rabbitmqadmin_runs(rabbitmq, rabbitmqadmin_path):
    from rabbit import MgmtTarget
    target = MgmtTarget("rabbitmq", rabbitmq.http_port, rabbitmq.amqp_port, rabbitmqadmin_path)
    out = target.rabbitmqadmin("-f", "raw_json", "list", "users").stdout
    assert any(u["name"] == "guest" for u in json.loads(out))
