"""Start/stop a real `arctern serve` process for the tests.

Only processes started here are ever signalled, always by PID.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO / "target" / "release" / "arctern"

# Every broker PID we started, so a crashed test session can still clean up.
_STARTED: set[int] = set()


def arctern_bin() -> Path:
    return Path(os.environ.get("ARCTERN_BIN", str(DEFAULT_BIN))).resolve()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (all bound at once, so no two are the same)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, config: dict) -> Path:
    lines = [f'"{k}" = {toml_value(v)}' for k, v in config.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class BrokerError(RuntimeError):
    pass


class Broker:
    """One single-node broker on a loopback port with its own data dir.

    `host` and `cmd_prefix` (class defaults: loopback, nothing) let the fault harness run a
    node inside a network namespace: host is the namespace's address, cmd_prefix
    `ip netns exec NS` (which execs the broker, so the PID stays the broker's)."""

    host = "127.0.0.1"
    cmd_prefix: list[str] = []

    def __init__(self, workdir: Path, config: dict | None = None, port: int | None = None,
                 amqp_port: int | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.port = port or free_port()
        # Every broker also listens for AMQP; on its own free port, never the default 5672.
        self.amqp_port = amqp_port or free_port()
        while self.amqp_port == self.port:      # two free_port() calls may agree
            self.amqp_port = free_port()
        self.config = dict(config or {})
        self.config_path = write_config(self.workdir / "arctern.toml", self.config) if self.config else None
        self.proc: subprocess.Popen | None = None
        self.stopped_by_us = False
        self.starts = 0
        self.last_returncode: int | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"broker-{self.starts}.log"

    def cmd(self) -> list[str]:
        c = [str(arctern_bin()), "serve", "--data-dir", str(self.data_dir),
             "--kafka-listen", self.bootstrap,
             "--amqp-listen", f"{self.host}:{self.amqp_port}"]
        if self.config_path:
            c += ["--config", str(self.config_path)]
        return c

    def start(self, timeout: float = 30.0) -> "Broker":
        self.launch()
        return self.wait_listening(timeout)

    def env(self) -> dict:
        """The process environment (subclasses add to it)."""
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        return env

    def launch(self) -> "Broker":
        """Start the process without waiting for its listener (see wait_listening)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        self.stopped_by_us = False
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([*self.cmd_prefix, *self.cmd()], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self.env(),
                                     start_new_session=True)
        log.close()
        _STARTED.add(self.proc.pid)
        return self

    def wait_listening(self, timeout: float = 30.0) -> "Broker":
        """Wait until the Kafka port accepts connections; kill the process if it does not."""
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                _STARTED.discard(self.proc.pid)
                raise BrokerError(f"broker exited with {rc} during startup:\n{self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise BrokerError(f"broker did not accept connections on {self.bootstrap} "
                                  f"within {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`. Returns the exit code after SIGTERM,
        or None if SIGKILL was needed."""
        if self.proc is None:
            return None
        self.stopped_by_us = True
        rc = self.proc.poll()
        if rc is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            rc = self._wait(timeout)
            if rc is None:
                os.kill(self.proc.pid, signal.SIGKILL)
                self._wait(30)
        _STARTED.discard(self.proc.pid)
        self.last_returncode = rc
        return rc

    def kill(self) -> None:
        """SIGKILL (crash), and reap."""
        if self.proc is None:
            return
        self.stopped_by_us = True
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self._wait(30)
        _STARTED.discard(self.proc.pid)
        self.last_returncode = self.proc.returncode

    def restart(self, kill: bool = False, timeout: float = 60.0) -> "Broker":
        """Restart on the same data dir and port (SIGKILL first if kill=True)."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start(timeout=timeout)

    def died_unexpectedly(self) -> bool:
        return self.proc is not None and not self.stopped_by_us and self.proc.poll() is not None

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])


def kill_leftovers() -> None:
    for pid in list(_STARTED):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _STARTED.discard(pid)
