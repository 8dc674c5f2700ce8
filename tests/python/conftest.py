"""Fixtures: a real `arctern serve` per test (or per module), on a free loopback port
with a tmp data dir, stopped by PID at teardown (SIGTERM, then SIGKILL)."""
from __future__ import annotations

import re
import shutil
import uuid

import pytest

from broker import Broker, arctern_bin, kill_leftovers


def pytest_sessionstart(session):
    b = arctern_bin()
    if not b.is_file():
        raise pytest.UsageError(
            f"broker binary not found at {b}; build it (cargo build --release -p arctern) "
            f"or set ARCTERN_BIN")


def pytest_sessionfinish(session, exitstatus):
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
