"""A power cut under a real broker, on the project's lose-unsynced filesystem (lossyfs).

The broker's data dir is an arctern-lossyfs mount: whatever the broker has not fsynced (file
data) or whose directory it has not fsynced (names) is pending, and `drop` discards all of it,
as a power cut would. kill -9 alone keeps the page cache, so it cannot tell a broker that
fsyncs before acking from one that does not; this can.

  * acks=all with Arctern's default flush.messages=1: every acknowledged record survives
    kill -9 + drop + restart, at its acknowledged offset, byte for byte;
  * negative control: a topic with flush.messages high (fsync relaxed, Kafka's topic
    config) loses acknowledged records under the same cut. If it lost nothing, the cut
    would not be a real test.

The broker is killed (and reaped) BEFORE the drop, so that nothing it does after the cut
can write or fsync: the order of a real power cut, where the process dies with the disk's
cache. Needs /dev/fuse and root; skipped otherwise. LOSSYFS_BIN points at the binary
(default: arctern-lossyfs next to ARCTERN_BIN)."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

import kclients as kc
from broker import arctern_bin


def lossyfs_bin() -> Path:
    return Path(os.environ.get("LOSSYFS_BIN", str(arctern_bin().parent / "arctern-lossyfs")))


def mounted(path: Path) -> bool:
    want = str(path.resolve())
    with open("/proc/self/mounts") as f:
        return any(line.split(" ")[1] == want for line in f)


class Lossyfs:
    """One arctern-lossyfs daemon serving `backing` at `mountpoint`; signalled only by PID."""

    def __init__(self, backing: Path, mountpoint: Path, log: Path):
        backing.mkdir(parents=True, exist_ok=True)
        mountpoint.mkdir(parents=True, exist_ok=True)
        self.backing, self.mountpoint = backing, mountpoint
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([str(lossyfs_bin()), "mount", str(backing), str(mountpoint)],
                                         stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while not (mounted(mountpoint) and (backing / ".lossyfs.sock").exists()):
            assert self.proc.poll() is None, f"lossyfs exited: {log.read_text()}"
            assert time.monotonic() < deadline, "lossyfs did not mount"
            time.sleep(0.02)

    def ctl(self, *args: str) -> str:
        out = subprocess.run([str(lossyfs_bin()), *args, str(self.backing)], check=True,
                             capture_output=True, text=True, timeout=30)
        return out.stdout.strip()

    def drop(self) -> None:
        assert self.ctl("drop") == "ok"

    def status(self) -> dict[str, int]:
        return {k: int(v) for k, v in (kv.split("=") for kv in self.ctl("status").split())}

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        if mounted(self.mountpoint):
            subprocess.run(["umount", "-l", str(self.mountpoint)], check=False)


@pytest.fixture
def lossyfs_factory(tmp_path):
    if not Path("/dev/fuse").exists() or os.geteuid() != 0:
        pytest.skip("lossyfs needs /dev/fuse and root")
    if not lossyfs_bin().is_file():
        pytest.skip(f"{lossyfs_bin()} not built (cargo build -p arctern-lossyfs, or set LOSSYFS_BIN)")
    made: list[Lossyfs] = []

    def make(mountpoint: Path) -> Lossyfs:
        fs = Lossyfs(tmp_path / f"backing{len(made)}", mountpoint, tmp_path / f"lossyfs{len(made)}.log")
        made.append(fs)
        return fs

    yield make
    for fs in made:
        fs.close()


def produce_acked(bootstrap: str, topic: str, n: int) -> dict[int, bytes]:
    """n records with acks=all; returns offset -> value for every acknowledged one."""
    acked: dict[int, bytes] = {}
    errors: list[str] = []

    def on_delivery(err, msg):
        if err is None:
            acked[msg.offset()] = msg.value()
        else:
            errors.append(str(err))

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2,
                  "batch.num.messages": 100, "log_level": 3})
    for i in range(n):
        p.produce(topic, value=f"{topic}-{i:06d}".encode(), partition=0, on_delivery=on_delivery)
        p.poll(0)
    assert p.flush(60) == 0
    assert not errors, errors[:5]
    return acked


def read_all(bootstrap: str, topic: str) -> dict[int, bytes]:
    return {r.offset: r.value for r in kc.consume_confluent(bootstrap, topic, timeout=60)}


def test_acknowledged_records_survive_a_power_cut_and_relaxed_fsync_loses_some(
        broker_factory, lossyfs_factory):
    b = broker_factory(start=False)
    fs = lossyfs_factory(b.data_dir)
    try:
        b.start()
        kc.create_topic(b.bootstrap, "durable")
        kc.create_topic(b.bootstrap, "relaxed", config={"flush.messages": "1000000"})
        n = 3000
        durable = produce_acked(b.bootstrap, "durable", n)
        relaxed = produce_acked(b.bootstrap, "relaxed", n)
        assert len(durable) == n and len(relaxed) == n
        pending = fs.status()

        b.kill()            # the process dies with the cut ...
        fs.drop()           # ... and so does everything it had not fsynced
        b.start(timeout=60)

        got = read_all(b.bootstrap, "durable")
        lost = {o: v for o, v in durable.items() if got.get(o) != v}
        assert not lost, f"{len(lost)} of {n} acknowledged records lost, e.g. {sorted(lost)[:5]}"
        assert sorted(got) == list(range(n))

        # Negative control: relaxed fsync acknowledged what it had not made durable.
        got_relaxed = read_all(b.bootstrap, "relaxed")
        lost_relaxed = sum(1 for o, v in relaxed.items() if got_relaxed.get(o) != v)
        print(f"pending before the cut: {pending}; relaxed topic lost {lost_relaxed} of {n}")
        assert pending["pending_bytes"] > 0
        assert lost_relaxed > 0, "the negative control lost nothing: the power cut is not real"

        # And the broker keeps working on the same mount after recovery.
        more = produce_acked(b.bootstrap, "durable", 10)
        assert sorted(more) == list(range(n, n + 10))
    finally:
        b.stop()
