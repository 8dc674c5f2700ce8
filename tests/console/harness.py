"""The console tests' broker side: starts a real Arctern (tests/python/broker.py, a fresh data
dir, free loopback ports, `"management.listen"` in its TOML config) and makes state with real
clients (pika, confluent-kafka) on commands from the Node test, one JSON object per line on
stdin, answered one JSON object per line on stdout. The broker is stopped (by PID) when stdin
closes.

With CONSOLE_TARGET=rabbitmq it starts a real RabbitMQ 3.10 with its management plugin
(tests/python/rabbit.py) instead, and a small proxy that serves the console's files (from
crates/http/console, the same files the binary embeds) at / and /console/ and forwards
everything else to RabbitMQ: the AMQP half of the tests then runs against RabbitMQ's own
management API, which shows the page reads RabbitMQ's shapes. The Kafka commands are
unavailable in that mode.

Commands ({"cmd": name, ...}):
  publish        {queue, count}           declare a durable queue, publish `count` messages
  depth          {queue}                  the queue's ready count, as pika sees it
  open_conn      {name}                   open and keep an AMQP connection (connection_name)
  conn_closed    {name}                   has the broker closed it? {closed, reason}
  produce        {topic, partitions, count}  create a topic, produce `count` messages
  degraded_cluster {topic}               a 3-node cluster with an under-replicated
                                          partition of `topic`; node 1's console URL
  consume_commit {group, topic, count}    a consumer in `group` reads `count` messages and
                                          commits synchronously (kept open between calls)
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "python"))

import pika  # noqa: E402
from confluent_kafka import Consumer, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from broker import Broker, free_port  # noqa: E402


CONSOLE_DIR = REPO / "crates" / "http" / "console"
TYPES = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml",
         "html": "text/html"}


def console_proxy(upstream: str):
    """A ThreadingHTTPServer on a free port: the console's files, the rest to `upstream`."""
    import http.client
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    up_host, up_port = upstream.rsplit("//", 1)[1].split(":")

    class Proxy(BaseHTTPRequestHandler):
        def _serve_file(self) -> bool:
            p = self.path.split("?", 1)[0]
            if p == "/":
                name = "index.html"
            elif p.startswith("/console/") and "/" not in p[len("/console/"):]:
                name = p[len("/console/"):]
            else:
                return False
            f = CONSOLE_DIR / name
            if not f.is_file():
                self.send_error(404)
                return True
            body = f.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", TYPES.get(name.rsplit(".", 1)[-1], "text/plain"))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return True

        def _forward(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else None
            conn = http.client.HTTPConnection(up_host, int(up_port), timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            conn.request(self.command, self.path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            self.send_response(r.status)
            for k, v in r.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            conn.close()
            if self.command != "GET" or r.status >= 400:
                print(f"proxy: {self.command} {self.path} -> {r.status} {data[:200]!r}",
                      file=sys.stderr, flush=True)

        def do_GET(self):
            if not self._serve_file():
                self._forward()

        do_DELETE = do_PUT = do_POST = _forward

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class AmqpCommands:
    """The AMQP commands (pika), for either broker."""
    amqp_port: int
    conns: dict

    def params(self, name: str | None = None) -> pika.ConnectionParameters:
        props = {"connection_name": name} if name else None
        return pika.ConnectionParameters(
            "127.0.0.1", self.amqp_port,
            credentials=pika.PlainCredentials("guest", "guest"),
            client_properties=props, heartbeat=0, blocked_connection_timeout=30)

    def publish(self, queue: str, count: int) -> dict:
        with pika.BlockingConnection(self.params()) as conn:
            ch = conn.channel()
            ch.confirm_delivery()
            ch.queue_declare(queue, durable=True)
            for i in range(count):
                ch.basic_publish("", queue, f"message {i}".encode(),
                                 pika.BasicProperties(delivery_mode=2))
            depth = ch.queue_declare(queue, passive=True).method.message_count
        return {"message_count": depth}

    def depth(self, queue: str) -> dict:
        with pika.BlockingConnection(self.params()) as conn:
            depth = conn.channel().queue_declare(queue, passive=True).method.message_count
        return {"message_count": depth}

    def open_conn(self, name: str) -> dict:
        conn = pika.BlockingConnection(self.params(name))
        conn.channel()
        self.conns[name] = conn
        return {"ok": True}

    def conn_closed(self, name: str) -> dict:
        conn = self.conns[name]
        try:
            conn.process_data_events(time_limit=1)
        except pika.exceptions.AMQPConnectionError as e:
            return {"closed": True, "reason": repr(e)}
        return {"closed": not conn.is_open, "reason": None}


class RabbitHarness(AmqpCommands):
    """RabbitMQ instead of Arctern (AMQP commands only)."""

    def __init__(self, workdir: Path):
        from rabbit import RabbitMQ
        self.rabbit = RabbitMQ(workdir / "rabbit")
        self.conns = {}
        self.proxy = None

    def start(self) -> dict:
        self.rabbit.start()
        self.amqp_port = self.rabbit.amqp_port
        self.proxy = console_proxy(self.rabbit.http)
        return {"http": f"http://127.0.0.1:{self.proxy.server_address[1]}", "kafka": None,
                "amqp_port": self.amqp_port, "target": "rabbitmq"}

    def close(self) -> None:
        for conn in self.conns.values():
            try:
                if conn.is_open:
                    conn.close()
            except Exception:
                pass
        if self.proxy:
            self.proxy.shutdown()
        self.rabbit.stop()


class Harness(AmqpCommands):
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.http_port = free_port()
        self.broker = Broker(workdir, config={"management.listen": f"127.0.0.1:{self.http_port}"})
        while self.broker.port == self.http_port or self.broker.amqp_port == self.http_port:
            self.http_port = free_port()
            self.broker = Broker(workdir, config={"management.listen": f"127.0.0.1:{self.http_port}"})
        self.conns: dict[str, pika.BlockingConnection] = {}
        self.consumers: dict[str, Consumer] = {}

    def start(self) -> dict:
        self.broker.start()
        self.amqp_port = self.broker.amqp_port
        # The HTTP listener binds next to the Kafka one; wait until it answers.
        import urllib.error
        import urllib.request
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/", timeout=2).read()
                break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        return {"http": f"http://127.0.0.1:{self.http_port}", "kafka": self.broker.bootstrap,
                "amqp_port": self.broker.amqp_port, "log": str(self.broker.log_path),
                "target": "arctern"}

    def produce(self, topic: str, partitions: int, count: int) -> dict:
        admin = AdminClient({"bootstrap.servers": self.broker.bootstrap})
        fut = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        for f in fut.values():
            try:
                f.result(30)
            except Exception as e:  # already exists is fine for a re-run
                if "TOPIC_ALREADY_EXISTS" not in str(e):
                    raise
        p = Producer({"bootstrap.servers": self.broker.bootstrap, "acks": "all"})
        for i in range(count):
            p.produce(topic, value=f"record {i}".encode(), partition=i % partitions)
        left = p.flush(30)
        assert left == 0, f"{left} records not delivered"
        return {"produced": count}

    def consume_commit(self, group: str, topic: str, count: int) -> dict:
        c = self.consumers.get(group)
        if c is None:
            c = Consumer({"bootstrap.servers": self.broker.bootstrap, "group.id": group,
                          "auto.offset.reset": "earliest", "enable.auto.commit": False})
            c.subscribe([topic])
            self.consumers[group] = c
        got = 0
        deadline = time.monotonic() + 60
        while got < count:
            assert time.monotonic() < deadline, f"only {got} of {count} messages consumed"
            m = c.poll(1.0)
            if m is None or m.error():
                continue
            got += 1
        committed = c.commit(asynchronous=False)
        return {"consumed": got,
                "committed": [[tp.topic, tp.partition, tp.offset] for tp in committed or []]}

    def degraded_cluster(self, topic: str) -> dict:
        """A second broker set: three nodes (each with its own HTTP listener), a topic with
        replication factor 3 whose partition leader is node 1, then node 3 killed: once
        replica.lag.time.max.ms (3 s here) passes, the partition is under-replicated.
        Returns node 1's console URL."""
        from cluster import Cluster
        from broker import write_config
        c = Cluster(self.workdir / "cluster", n=3)
        self.cluster = c
        ports = {}
        for nd in c.nodes.values():
            port = free_port()
            while port in ports.values() or port in (nd.port, nd.amqp_port, nd.raft_port):
                port = free_port()
            ports[nd.node_id] = port
            nd.config["management.listen"] = f"127.0.0.1:{port}"
            nd.config_path = write_config(nd.workdir / "arctern.toml", nd.config)
        c.start()
        c.create_topic(topic, partitions=1, rf=3, assignment=[[1, 2, 3]])
        c.node(3).kill()
        c.wait_until(lambda: 3 not in c.partition_state(topic, 0).isr, 60,
                     "node 3 to leave the ISR")
        return {"http": f"http://127.0.0.1:{ports[1]}"}

    def close(self) -> None:
        if getattr(self, "cluster", None) is not None:
            self.cluster.stop_all()
        for c in self.consumers.values():
            try:
                c.close()
            except Exception:
                pass
        for conn in self.conns.values():
            try:
                if conn.is_open:
                    conn.close()
            except Exception:
                pass
        self.broker.stop()


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="arctern-console-"))
    if os.environ.get("CONSOLE_TARGET", "arctern") == "rabbitmq":
        h = RabbitHarness(workdir)
    else:
        h = Harness(workdir)
    try:
        print(json.dumps(h.start()), flush=True)
        for line in sys.stdin:
            if not line.strip():
                continue
            req = json.loads(line)
            cmd = req.pop("cmd")
            try:
                out = getattr(h, cmd)(**req)
            except Exception as e:
                out = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()}
            print(json.dumps(out), flush=True)
    finally:
        h.close()
        # Keep the brokers' logs beside the screenshots; drop the data.
        logs = os.environ.get("CONSOLE_ARTIFACTS")
        if logs:
            dest = Path(logs) / "broker-logs"
            dest.mkdir(parents=True, exist_ok=True)
            for f in workdir.rglob("*.log"):
                if f.is_file() and "data" not in f.relative_to(workdir).parts:
                    shutil.copy(f, dest / "-".join(f.relative_to(workdir).parts))
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
