"""A Kafka-aware TCP proxy that loses produce responses.

Sits between a client and one broker on loopback. Requests go through untouched; for some
Produce requests (every `drop_every`-th, counting all connections) the broker's response
is swallowed and the client connection is closed: the broker stored the batch, the client
never hears and must retry. That is exactly the case the idempotent producer (KIP-98)
exists for. The broker must advertise the proxy's address (`advertised.listeners`) so the
client keeps talking through it after bootstrap.
"""
from __future__ import annotations

import socket
import struct
import threading

API_PRODUCE = 0


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _recv_frame(sock: socket.socket) -> bytes | None:
    head = _recv_exact(sock, 4)
    if head is None:
        return None
    (n,) = struct.unpack(">i", head)
    body = _recv_exact(sock, n)
    return None if body is None else head + body


class DroppingProxy:
    def __init__(self, upstream_port: int, drop_every: int, max_drops: int | None = None):
        self.upstream_port = upstream_port
        self.drop_every = drop_every
        self.max_drops = max_drops
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.produce_requests = 0
        self.dropped = 0
        self.closed = False
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self):
        self.closed = True
        try:
            self.listener.close()
        except OSError:
            pass
        with self.lock:
            for s in self.conns:
                try:
                    s.close()
                except OSError:
                    pass

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            # Correlation ids of this connection's produce requests whose response is lost.
            doomed: set[int] = set()
            threading.Thread(target=self._requests, args=(client, upstream, doomed),
                             daemon=True).start()
            threading.Thread(target=self._responses, args=(client, upstream, doomed),
                             daemon=True).start()

    def _shut(self, *socks: socket.socket):
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass

    def _requests(self, client, upstream, doomed: set[int]):
        while True:
            frame = _recv_frame(client)
            if frame is None:
                break
            api_key, _version, corr = struct.unpack(">hhi", frame[4:12])
            if api_key == API_PRODUCE:
                with self.lock:
                    self.produce_requests += 1
                    under_cap = self.max_drops is None or self.dropped < self.max_drops
                    if under_cap and self.produce_requests % self.drop_every == 0:
                        doomed.add(corr)
                        self.dropped += 1
            try:
                upstream.sendall(frame)
            except OSError:
                break
        self._shut(client, upstream)

    def _responses(self, client, upstream, doomed: set[int]):
        while True:
            frame = _recv_frame(upstream)
            if frame is None:
                break
            (corr,) = struct.unpack(">i", frame[4:8])
            if corr in doomed:
                # The broker answered (so it stored the batch); the client never hears.
                break
            try:
                client.sendall(frame)
            except OSError:
                break
        self._shut(client, upstream)
