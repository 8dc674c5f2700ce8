"""The lose-unsynced filesystem (crates/lossyfs) as the tests drive it: one
arctern-lossyfs daemon per mount, controlled through its CLI (drop, status), stopped by
PID. LOSSYFS_BIN points at the binary (default: arctern-lossyfs next to ARCTERN_BIN)."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from broker import arctern_bin


def lossyfs_bin() -> Path:
    return Path(os.environ.get("LOSSYFS_BIN", str(arctern_bin().parent / "arctern-lossyfs")))


def mounted(path: Path) -> bool:
    want = str(path.resolve())
    with open("/proc/self/mounts") as f:
        return any(line.split(" ")[1] == want for line in f)


class Lossyfs:
    """One arctern-lossyfs daemon serving `backing` at `mountpoint`; signalled only by PID."""

    def __init__(self, backing: Path, mountpoint: Path, log: Path, extra_args: tuple = ()):
        backing.mkdir(parents=True, exist_ok=True)
        mountpoint.mkdir(parents=True, exist_ok=True)
        self.backing, self.mountpoint = backing, mountpoint
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([str(lossyfs_bin()), "mount", str(backing), str(mountpoint), *extra_args],
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
