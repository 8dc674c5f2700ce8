"""A real RabbitMQ node (Debian's rabbitmq-server, with the management plugin) for tests that
must pass against RabbitMQ and Arctern alike: the management API's shapes, and RabbitMQ's
own `rabbitmqadmin` CLI, which the plugin serves at /cli/rabbitmqadmin.

The node runs on free loopback ports with its own epmd, data dir and Erlang cookie (HOME),
started once per test session and stopped by PID at the end. `scripts/test.sh` installs the
package; `ensure_installed()` does it too when run as root.

Use `mgmt_targets` (conftest.py) to parametrize a test over both brokers: each target has
`.name`, `.http` (base URL), `.amqp_port`, `.user`/`.password` and `.rabbitmqadmin(*args)`.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from broker import free_port

RMQ_LIB = Path("/usr/lib/rabbitmq/bin")
RMQ_SERVER = RMQ_LIB / "rabbitmq-server"


class RabbitError(RuntimeError):
    pass


def ensure_installed() -> None:
    """apt-get install rabbitmq-server if missing, without starting the system service."""
    if RMQ_SERVER.exists():
        return
    if os.geteuid() != 0:
        raise RabbitError("rabbitmq-server is not installed and we are not root; "
                          "run scripts/test.sh (it installs it)")
    policy = Path("/usr/sbin/policy-rc.d")
    added = False
    if not policy.exists():
        # The package's postinst would start the system service; policy-rc.d says no.
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        added = True
    try:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                        "rabbitmq-server"], check=True, env=env, stdout=subprocess.DEVNULL)
    finally:
        if added:
            policy.unlink(missing_ok=True)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


def _distinct_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        p = free_port()
        if p not in ports:
            ports.append(p)
    return ports


@dataclass
class RabbitMQ:
    """One RabbitMQ node with the management plugin."""
    workdir: Path
    amqp_port: int = 0
    http_port: int = 0
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 120.0) -> "RabbitMQ":
        ensure_installed()
        for attempt in range(3):
            try:
                return self._start_once(timeout)
            except RabbitError:
                self.stop()
                if attempt == 2:
                    raise
        return self

    def _start_once(self, timeout: float) -> "RabbitMQ":
        d = self.workdir
        if d.exists():
            shutil.rmtree(d)
        for sub in ("mnesia", "log", "home"):
            (d / sub).mkdir(parents=True)
        self.amqp_port, self.http_port, dist, epmd_port = _distinct_ports(4)
        (d / "enabled_plugins").write_text("[rabbitmq_management].\n")
        (d / "rabbitmq-env.conf").write_text("")
        (d / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            f"management.tcp.port = {self.http_port}\n"
            f"management.tcp.ip = 127.0.0.1\n"
            # Stats every second (default 5 s), so tests see counts soon.
            "collect_statistics_interval = 1000\n"
            "loopback_users.guest = true\n")
        epmd = subprocess.Popen(["epmd", "-address", "127.0.0.1", "-port", str(epmd_port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        self.procs.append(epmd)
        deadline = time.monotonic() + 10
        while not _port_open(epmd_port):
            if epmd.poll() is not None or time.monotonic() > deadline:
                raise RabbitError("epmd did not start")
            time.sleep(0.05)
        env = dict(os.environ,
                   HOME=str(d / "home"),
                   ERL_EPMD_ADDRESS="127.0.0.1", ERL_EPMD_PORT=str(epmd_port),
                   RABBITMQ_NODENAME=f"test-{os.getpid()}@localhost",
                   RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
                   RABBITMQ_NODE_PORT=str(self.amqp_port),
                   RABBITMQ_DIST_PORT=str(dist),
                   RABBITMQ_MNESIA_BASE=str(d / "mnesia"),
                   RABBITMQ_LOG_BASE=str(d / "log"),
                   RABBITMQ_CONFIG_FILE=str(d / "rabbitmq.conf"),
                   RABBITMQ_ADVANCED_CONFIG_FILE=str(d / "advanced.config"),
                   RABBITMQ_CONF_ENV_FILE=str(d / "rabbitmq-env.conf"),
                   RABBITMQ_ENABLED_PLUGINS_FILE=str(d / "enabled_plugins"),
                   RABBITMQ_PLUGINS_EXPAND_DIR=str(d / "plugins-expand"),
                   RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}")
        log = open(d / "stdout.log", "wb")
        server = subprocess.Popen([str(RMQ_SERVER)], stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        log.close()
        self.procs.append(server)
        # The management listener opens after the AMQP one, once the plugin booted.
        deadline = time.monotonic() + timeout
        while not (_port_open(self.amqp_port) and _port_open(self.http_port)):
            if server.poll() is not None:
                raise RabbitError(f"rabbitmq-server exited:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RabbitError(f"rabbitmq-server did not come up:\n{self.log_tail()}")
            time.sleep(0.2)
        return self

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = (self.workdir / "stdout.log").read_text(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        # The server is a shell wrapper whose session holds the Erlang VM: stop the whole
        # session we created (its process group), server first, epmd last.
        for p in reversed(self.procs):
            if p.poll() is not None:
                continue
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=10)
        self.procs.clear()

    def save_rabbitmqadmin(self, dest: Path) -> Path:
        """RabbitMQ's own CLI, as the management plugin serves it."""
        with urllib.request.urlopen(f"{self.http}/cli/rabbitmqadmin", timeout=10) as r:
            dest.write_bytes(r.read())
        dest.chmod(0o755)
        return dest


@dataclass
class MgmtTarget:
    """A broker with a management API: Arctern or RabbitMQ."""
    name: str
    http_port: int
    amqp_port: int
    rabbitmqadmin_path: Path
    user: str = "guest"
    password: str = "guest"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def auth(self) -> tuple[str, str]:
        return (self.user, self.password)

    def rabbitmqadmin(self, *args: str, user: str | None = None, password: str | None = None,
                      check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """Runs RabbitMQ's rabbitmqadmin against this broker; text output in .stdout."""
        cmd = [sys.executable, str(self.rabbitmqadmin_path),
               "-H", "127.0.0.1", "-P", str(self.http_port),
               "-u", user or self.user, "-p", password or self.password, *args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{self.name}: rabbitmqadmin {' '.join(args)} failed "
                                 f"({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r


def rabbit_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="arctern-test-rabbit-"))
