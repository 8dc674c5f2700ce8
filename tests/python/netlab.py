"""Network namespaces for the fault harness: one namespace per broker node and one for the
clients, joined by veth pairs to a bridge in a hub namespace, all made (and removed) here.

    lab = NetLab(3)            # ns <prefix>-hub (bridge), <prefix>-n1..n3, <prefix>-c
    lab.enter_client()         # this process's sockets now live in the client namespace
    lab.isolate(1)             # node 1 reaches nobody, nobody reaches it
    lab.cut(1, 3)              # 1 and 3 do not see each other (2 still sees both)
    lab.heal()
    lab.close()

A cut is a pair of permanent neighbour entries that give each side a MAC address nobody
has for the other (`ip neigh replace ADDR lladdr 02:de:ad:.. nud permanent`, iproute2 only):
the bridge floods those frames and every port drops them, so packets vanish silently, like
a pulled cable or a partitioned switch. Nothing is refused: a connect() hangs and an
established connection stalls until its own timeouts fire, as in a real partition (a
blackhole route would fail connect() at once with EINVAL; tc and iptables actions are not
available in every kernel). Nothing here touches the root namespace's interfaces, routes
or firewall.

enter_client() switches the calling process with setns(2); it must run before any thread
is started (each thread keeps the namespace it was created in, and threads started later
inherit the caller's)."""
from __future__ import annotations

import ctypes
import os
import subprocess

CLONE_NEWNET = 0x40000000


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


class NetLab:
    def __init__(self, nodes: int, prefix: str | None = None, subnet: int | None = None):
        self.prefix = prefix or f"arcf{os.getpid() % 100000}"
        # 10.<a>.<b>.0/24 from the PID, so two harnesses on one machine do not collide
        sub = subnet if subnet is not None else os.getpid() % 60000
        self.net = f"10.{100 + sub // 250 % 150}.{sub % 250}"
        self.nodes = nodes
        self.hub = f"{self.prefix}-hub"
        self.client = f"{self.prefix}-c"
        self.cuts: set[tuple[int, int]] = set()      # (a, b) a < b; 0 is the client
        self.made: list[str] = []
        try:
            self._build()
        except Exception:
            self.close()
            raise

    def ns(self, i: int) -> str:
        """The namespace of node i (1-based); 0 is the client."""
        return self.client if i == 0 else f"{self.prefix}-n{i}"

    def addr(self, i: int) -> str:
        """Node i's address; 0 is the client's."""
        return f"{self.net}.{200 if i == 0 else i}"

    def prefix_cmd(self, i: int) -> list[str]:
        return ["ip", "netns", "exec", self.ns(i)]

    def _build(self):
        ip("netns", "add", self.hub)
        self.made.append(self.hub)
        ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        ip("-n", self.hub, "link", "set", "br0", "up")
        for i in range(0, self.nodes + 1):
            ns = self.ns(i)
            ip("netns", "add", ns)
            self.made.append(ns)
            inner, outer = f"{self.prefix}i{i}", f"{self.prefix}o{i}"
            ip("link", "add", inner, "type", "veth", "peer", "name", outer)
            ip("link", "set", inner, "netns", ns)
            ip("link", "set", outer, "netns", self.hub)
            ip("-n", self.hub, "link", "set", outer, "master", "br0")
            ip("-n", self.hub, "link", "set", outer, "up")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", inner, "name", "eth0")
            ip("-n", ns, "addr", "add", f"{self.addr(i)}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")

    # --- the client side ---------------------------------------------------------------
    def enter_client(self) -> None:
        """Move this process (its main thread, before any other exists) into the client
        namespace, so every client socket it opens goes through the bridge."""
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{self.client}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns({self.client}): {os.strerror(err)}")
        finally:
            os.close(fd)

    # --- faults --------------------------------------------------------------------------
    def _misdirect(self, a: int, b: int, add: bool):
        for x, y in ((a, b), (b, a)):
            if add:
                ip("-n", self.ns(x), "neigh", "replace", self.addr(y), "lladdr",
                   f"02:de:ad:00:00:{y:02x}", "dev", "eth0", "nud", "permanent")
            else:
                ip("-n", self.ns(x), "neigh", "del", self.addr(y), "dev", "eth0", check=False)

    def cut(self, a: int, b: int) -> None:
        """a and b (node ids; 0 = the client) stop seeing each other, both ways."""
        key = (min(a, b), max(a, b))
        if key not in self.cuts:
            self._misdirect(a, b, True)
            self.cuts.add(key)

    def isolate(self, i: int, keep: tuple[int, ...] = ()) -> None:
        """Node i is cut from every other node and the client, except those in `keep`."""
        for j in range(0, self.nodes + 1):
            if j != i and j not in keep:
                self.cut(i, j)

    def heal(self) -> None:
        for a, b in sorted(self.cuts):
            self._misdirect(a, b, False)
        self.cuts.clear()

    def close(self) -> None:
        """Remove every namespace made here (their veths go with them)."""
        for ns in reversed(self.made):
            ip("netns", "del", ns, check=False)
        self.made.clear()
