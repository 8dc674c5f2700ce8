"""Fixtures: a real `arctern serve` per test (or per module), on a free loopback port
with a tmp data dir, stopped by PID at teardown (SIGTERM, then SIGKILL)."""
from __future__ import annotations

import re
import shutil
import uuid

import pytest

from broker import Broker, arctern_bin, kill_leftovers
from cluster import Cluster, summarize_rcs
from groups import kill_workers


def pytest_sessionstart(session):
    b = arctern_bin()
    if not b.is_file():
        raise pytest.UsageError(
            f"broker binary not found at {b}; build it (cargo build --release -p arctern) "
            f"or set ARCTERN_BIN")


def pytest_sessionfinish(session, exitstatus):
    kill_workers()
    kill_leftovers()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep


def _finish(request, brokers: list[Broker]):
    failed = any(getattr(request.node, "rep_" + w, None) is not None
                 and getattr(request.node, "rep_" + w).failed for w in ("setup", "call"))
    died = [b for b in brokers if b.died_unexpectedly()]
    for b in brokers:
        if failed or b in died:
            print(f"\n----- broker {b.bootstrap} log ({b.log_path}) -----\n{b.log_tail()}")
        b.stop()
    if died:
        codes = ", ".join(f"{b.bootstrap} rc={b.proc.returncode}" for b in died)
        pytest.fail(f"broker process died during the test (not killed by the test): {codes}")


@pytest.fixture
def broker_factory(request, tmp_path):
    """broker_factory(config: dict | None = None) -> started Broker (own data dir)."""
    brokers: list[Broker] = []

    def make(config: dict | None = None, start: bool = True) -> Broker:
        b = Broker(tmp_path / f"broker{len(brokers)}", config=config)
        brokers.append(b)
        if start:
            b.start()
        return b

    yield make
    _finish(request, brokers)


@pytest.fixture
def cluster_factory(request, tmp_path):
    """cluster_factory(n=3, config=None, env=None, via_toml=False, start=True) -> Cluster
    of n `arctern serve` nodes (all raft voters) on loopback, each with its own data dir,
    config and logs under tmp_path/cluster<k>/node-<id>. At teardown paused nodes are
    resumed and every node is stopped (SIGTERM, SIGKILL after 10 s); on a failure, or if a
    node died without the test killing it, every node's log tail is printed."""
    clusters: list[Cluster] = []

    def make(n: int = 3, config: dict | None = None, env: dict | None = None,
             via_toml: bool = False, start: bool = True) -> Cluster:
        c = Cluster(tmp_path / f"cluster{len(clusters)}", n=n, config=config, env=env,
                    via_toml=via_toml)
        clusters.append(c)
        if start:
            c.start()
        return c

    yield make
    failed = any(getattr(request.node, "rep_" + w, None) is not None
                 and getattr(request.node, "rep_" + w).failed for w in ("setup", "call"))
    died = {id(c): c.died_unexpectedly() for c in clusters}
    for c in clusters:
        if failed or died[id(c)]:
            print(f"\n===== cluster {c.workdir} logs =====\n{c.log_tails()}")
        rcs = c.stop_all(timeout=10)
        if any(v is None for v in rcs.values()):
            print(f"\nteardown: {summarize_rcs(rcs)}")
    dead = [nd for c in clusters for nd in died[id(c)]]
    if dead:
        codes = ", ".join(f"node {nd.node_id} ({nd.bootstrap}) rc={nd.proc.returncode}"
                          for nd in dead)
        pytest.fail(f"cluster node died during the test (not killed by the test): {codes}")


@pytest.fixture
def broker(broker_factory) -> Broker:
    """A fresh broker with default config."""
    return broker_factory()


@pytest.fixture(scope="module")
def shared_broker(request, tmp_path_factory) -> Broker:
    """One broker for a whole module (tests use distinct topics)."""
    b = Broker(tmp_path_factory.mktemp("shared-broker"))
    b.start()
    yield b
    died = b.died_unexpectedly()
    if died:
        print(f"\n----- shared broker log -----\n{b.log_tail()}")
    b.stop()
    if died:
        pytest.fail(f"shared broker died during the module: rc={b.proc.returncode}")


@pytest.fixture
def topic_name(request) -> str:
    base = re.sub(r"[^a-zA-Z0-9._-]", "_", request.node.name)[:150]
    return f"{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def kcat_bin() -> str:
    for name in ("kcat", "kafkacat"):
        p = shutil.which(name)
        if p:
            return p
    pytest.fail("kcat is not installed (scripts/test.sh installs it)")


# --- RabbitMQ beside Arctern (management API tests) ----------------------------------------

@pytest.fixture(scope="session")
def rabbitmq():
    """One RabbitMQ node (management plugin on) for the whole session; tests use unique
    object names. See rabbit.py."""
    from rabbit import RabbitMQ, rabbit_workdir
    node = RabbitMQ(rabbit_workdir()).start()
    yield node
    node.stop()
    shutil.rmtree(node.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def rabbitmqadmin_path(rabbitmq, tmp_path_factory):
    """RabbitMQ's own rabbitmqadmin, saved once from the node's /cli/rabbitmqadmin."""
    return rabbitmq.save_rabbitmqadmin(tmp_path_factory.mktemp("rabbitmqadmin") / "rabbitmqadmin")


def arctern_with_management(broker_factory, config: dict | None = None):
    """A fresh Arctern with its HTTP listener on a free port; returns (broker, http_port)."""
    import socket
    import time
    from broker import free_port
    http_port = free_port()
    b = broker_factory({"management.listen": f"127.0.0.1:{http_port}", **(config or {})})
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", http_port), timeout=0.5):
                break
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"Arctern's HTTP listener did not open on {http_port}")
            time.sleep(0.05)
    return b, http_port


@pytest.fixture(params=["arctern", "rabbitmq"])
def mgmt(request, broker_factory, rabbitmqadmin_path):
    """A broker with a management API, once Arctern (fresh) and once RabbitMQ (the session
    node): `.name`, `.http`, `.amqp_port`, `.auth`, `.rabbitmqadmin(*args)`."""
    from rabbit import MgmtTarget
    if request.param == "arctern":
        b, http_port = arctern_with_management(broker_factory)
        return MgmtTarget("arctern", http_port, b.amqp_port, rabbitmqadmin_path)
    node = request.getfixturevalue("rabbitmq")
    return MgmtTarget("rabbitmq", node.http_port, node.amqp_port, rabbitmqadmin_path)
