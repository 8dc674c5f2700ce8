"""A local multi-node Arctern cluster for the replication tests: N `arctern serve` processes
on 127.0.0.1, each its own node id, Kafka port, Raft (metadata quorum) port, data dir,
config file and log files.

    c = Cluster(tmp_path, n=3, config={"min.insync.replicas": 2})
    c.start()
    c.create_topic("t", rf=3, config={"min.insync.replicas": "2"})
    st = c.partition_state("t", 0)          # PState(leader, replicas, isr, controller, ...)
    c.node(st.leader).kill()                # SIGKILL by PID
    c.wait_leader("t", 0, not_in={st.leader})

Every node is a raft voter: `--controller-quorum-voters 1@127.0.0.1:P1,2@...,3@...`
(Kafka's naming); the node's own entry is its Raft listener. Only processes started here
are ever signalled, always by PID; a paused (SIGSTOP) node is resumed before it is stopped
or killed.

Cluster state is read through the Kafka Metadata API: `metadata()` / `partition_state()`
with confluent-kafka's AdminClient (what a client sees), `node_view()` with a raw Metadata
v4 request to one node (that node's own view), `agreed_state()` when every live node gives
the same answer. Those are Kafka semantics, so the tests would also pass against Kafka; only
`partition_log_batches()` reads Arctern's files (`<data>/<topic>-<p>/<base>.log`, record
batches back to back) to compare replicas byte for byte.
"""
from __future__ import annotations

import os
import signal
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import kwire
from broker import Broker, free_ports, write_config

# Short timeouts so that failure detection fits in a test (all overridable per test).
CLUSTER_TEST_CONFIG = {
    "replica.lag.time.max.ms": 3000,
    "broker.session.timeout.ms": 3000,
    "broker.heartbeat.interval.ms": 500,
    "leader.imbalance.check.interval.seconds": 3,
    "auto.leader.rebalance.enable": True,
}

# Kafka error codes the tests look for
NONE = 0
NOT_LEADER_OR_FOLLOWER = 6
NOT_ENOUGH_REPLICAS = 19
NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20
INVALID_REPLICATION_FACTOR = 38
LEADER_NOT_AVAILABLE = 5


class ClusterNode(Broker):
    """One cluster member. Broker's start/stop/kill/restart plus pause/resume and the
    node-id / voters arguments."""

    def __init__(self, cluster: "Cluster", node_id: int, kafka_port: int, raft_port: int,
                 config: dict, host: str = "127.0.0.1", cmd_prefix: list[str] | None = None,
                 amqp_port: int | None = None):
        self.cluster = cluster
        self.host = host
        self.cmd_prefix = list(cmd_prefix or [])
        self.node_id = node_id
        self.raft_port = raft_port
        self.paused = False
        workdir = Path(cluster.workdir) / f"node-{node_id}"
        cfg = dict(config)
        if cluster.via_toml:
            cfg["node.id"] = node_id
            cfg["controller.quorum.voters"] = cluster.voters
        super().__init__(workdir, config=cfg, port=kafka_port, amqp_port=amqp_port)
        # the config file is always written (Broker only writes a non-empty one)
        if self.config_path is None:
            self.config_path = write_config(self.workdir / "arctern.toml", self.config)

    def __repr__(self):
        state = "paused" if self.paused else ("up" if self.running() else "down")
        return f"<node {self.node_id} {self.bootstrap} {state}>"

    @property
    def raft_addr(self) -> str:
        return f"{self.host}:{self.raft_port}"

    def cmd(self) -> list[str]:
        c = super().cmd()
        if not self.cluster.via_toml:
            c += ["--node-id", str(self.node_id),
                  "--controller-quorum-voters", self.cluster.voters]
        return c

    def env(self) -> dict:
        env = super().env()
        env.update(self.cluster.env)
        return env

    # --- signals ------------------------------------------------------------------------
    def pause(self) -> None:
        """SIGSTOP: the process stays, its sockets stay open, it answers nothing."""
        assert self.running(), f"node {self.node_id} is not running"
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT."""
        if self.paused and self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (controlled shutdown), SIGKILL after `timeout`; resumes a paused node
        first."""
        self.resume()
        return super().stop(timeout)

    def terminate(self) -> None:
        """Send SIGTERM and return at once (see wait_exit)."""
        self.resume()
        assert self.running(), f"node {self.node_id} is not running"
        self.stopped_by_us = True
        os.kill(self.proc.pid, signal.SIGTERM)

    def wait_exit(self, timeout: float) -> int | None:
        rc = self._wait(timeout)
        if rc is not None:
            self.last_returncode = rc
        return rc

    def kill(self) -> None:
        self.resume()
        super().kill()

    def start(self, timeout: float = 60.0) -> "ClusterNode":
        super().start(timeout)
        self.paused = False
        return self

    def restart(self, kill: bool = False, timeout: float = 60.0) -> "ClusterNode":
        return super().restart(kill=kill, timeout=timeout)

    @property
    def alive(self) -> bool:
        """Running and not paused: can answer requests."""
        return self.running() and not self.paused

    # --- views --------------------------------------------------------------------------
    def raw_metadata(self, topics: list[str] | None, timeout: float = 3.0) -> dict:
        """This node's own Metadata (v4, raw socket): brokers, controller, topics."""
        with kwire.Conn(self.bootstrap, timeout=timeout) as c:
            return kwire.parse_metadata_v4(c.roundtrip(kwire.metadata_v4(1, topics)))

    def partition_dir(self, topic: str, partition: int) -> Path:
        return self.data_dir / f"{topic}-{partition}"

    def all_logs(self) -> list[Path]:
        return sorted(self.workdir.glob("broker-*.log"),
                      key=lambda p: int(p.stem.split("-")[1]))


@dataclass
class PState:
    """One partition as the Metadata API shows it."""
    leader: int
    replicas: list[int]
    isr: list[int]
    controller: int = -1
    brokers: list[int] = field(default_factory=list)
    error: object = None

    def key(self):
        return (self.leader, tuple(self.replicas), tuple(sorted(self.isr)))

    @property
    def followers(self) -> list[int]:
        return [r for r in self.replicas if r != self.leader]


@dataclass
class Batch:
    base_offset: int
    last_offset: int
    leader_epoch: int
    raw: bytes


class Cluster:
    def __init__(self, workdir: Path, n: int = 3, config: dict | None = None,
                 env: dict | None = None, via_toml: bool = False,
                 hosts: list[str] | None = None, cmd_prefixes: list[list[str]] | None = None):
        """hosts / cmd_prefixes: one address and command prefix per node (the fault
        harness's network namespaces); each node then has the whole port space of its own
        address and uses Kafka's and RabbitMQ's default ports."""
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.n = n
        self.via_toml = via_toml
        self.env = dict(env or {})
        if hosts:
            kafka_ports, raft_ports, amqp_ports = [9092] * n, [9093] * n, [5672] * n
        else:
            ports = free_ports(2 * n)
            kafka_ports, raft_ports, amqp_ports = ports[:n], ports[n:], [None] * n
        hosts = hosts or ["127.0.0.1"] * n
        prefixes = cmd_prefixes or [[]] * n
        self.voters = ",".join(f"{i + 1}@{hosts[i]}:{raft_ports[i]}" for i in range(n))
        cfg = dict(CLUSTER_TEST_CONFIG)
        cfg.update(config or {})
        cfg = {k: v for k, v in cfg.items() if v is not None}   # None: drop a default
        self.config = cfg
        self.nodes: dict[int, ClusterNode] = {
            i + 1: ClusterNode(self, i + 1, kafka_ports[i], raft_ports[i], cfg, hosts[i],
                               prefixes[i], amqp_ports[i]) for i in range(n)}

    def __repr__(self):
        return f"<Cluster {list(self.nodes.values())}>"

    # --- processes ----------------------------------------------------------------------
    def node(self, node_id: int) -> ClusterNode:
        return self.nodes[node_id]

    def start(self, timeout: float = 60.0) -> "Cluster":
        """Launch every node at once (a node may need the quorum before it listens), wait
        for the Kafka ports, then until every node lists every broker and a controller."""
        for nd in self.nodes.values():
            nd.launch()
        for nd in self.nodes.values():
            nd.wait_listening(timeout)
        self.wait_ready(timeout=timeout)
        return self

    def wait_ready(self, nodes=None, timeout: float = 60.0):
        """Until every live node's Metadata lists all live nodes' ids (or `nodes`) as
        brokers and names a controller among them."""
        want = set(nodes) if nodes is not None else {n.node_id for n in self.live_nodes()}

        def ready():
            for nd in self.live_nodes():
                md = nd.raw_metadata([])
                ids = {b[0] for b in md["brokers"]}
                if not want <= ids or md["controller"] not in ids:
                    return None
            return True
        self.wait_until(ready, timeout, f"cluster ready (brokers {sorted(want)} registered, "
                                        f"a controller known on every live node)")

    def live_nodes(self) -> list[ClusterNode]:
        return [nd for nd in self.nodes.values() if nd.alive]

    def ids(self) -> list[int]:
        return sorted(self.nodes)

    @property
    def bootstrap(self) -> str:
        """Every node (running or not)."""
        return ",".join(nd.bootstrap for nd in self.nodes.values())

    def live_bootstrap(self, exclude=()) -> str:
        """The nodes that can answer now (running, not paused), minus `exclude` ids."""
        bs = [nd.bootstrap for nd in self.live_nodes() if nd.node_id not in set(exclude)]
        assert bs, "no live node"
        return ",".join(bs)

    def stop_all(self, timeout: float = 15.0) -> dict[int, int | None]:
        """SIGTERM every running node at once, wait, SIGKILL what is left after `timeout`.
        Returns node id -> exit code (None: needed SIGKILL)."""
        rcs = {}
        running = [nd for nd in self.nodes.values() if nd.running()]
        for nd in running:
            nd.terminate()
        deadline = time.monotonic() + timeout
        for nd in running:
            rcs[nd.node_id] = nd.wait_exit(max(0.1, deadline - time.monotonic()))
        for nd in self.nodes.values():
            nd.stop(timeout=1)      # SIGKILL if still running; bookkeeping otherwise
        return rcs

    def kill_all(self) -> None:
        for nd in self.nodes.values():
            nd.kill()

    def died_unexpectedly(self) -> list[ClusterNode]:
        return [nd for nd in self.nodes.values() if nd.died_unexpectedly()]

    def log_tails(self, n: int = 40) -> str:
        out = []
        for nd in self.nodes.values():
            for lp in nd.all_logs():
                try:
                    lines = lp.read_text(errors="replace").splitlines()
                except OSError:
                    continue
                out.append(f"----- node {nd.node_id} ({nd.bootstrap}, raft {nd.raft_addr}) "
                           f"{lp} (last {min(n, len(lines))} of {len(lines)} lines) -----")
                out.extend(lines[-n:])
        return "\n".join(out)

    # --- waiting ------------------------------------------------------------------------
    @staticmethod
    def wait_until(predicate, timeout: float, what: str = "condition", interval: float = 0.2):
        """Poll predicate() until it returns something truthy (returned). Exceptions in the
        predicate count as 'not yet' (the last one is reported on timeout), except an
        AssertionError, which fails at once."""
        deadline = time.monotonic() + timeout
        last, last_exc = None, None
        while True:
            try:
                last = predicate()
                last_exc = None
                if last:
                    return last
            except AssertionError:
                raise
            except Exception as e:      # noqa: BLE001 - a node may be down or slow
                last_exc = e
            if time.monotonic() > deadline:
                detail = f"last exception: {last_exc!r}" if last_exc else f"last value: {last!r}"
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; {detail}")
            time.sleep(interval)

    # --- metadata -----------------------------------------------------------------------
    def metadata(self, topic: str | None = None, timeout: float = 5.0, exclude=()):
        """confluent-kafka AdminClient.list_topics() through the live nodes (a fresh client,
        so a paused node it once knew cannot hold the request)."""
        from confluent_kafka.admin import AdminClient
        a = AdminClient({"bootstrap.servers": self.live_bootstrap(exclude), "log_level": 0,
                         "socket.timeout.ms": int(timeout * 1000)})
        return a.list_topics(topic=topic, timeout=timeout)

    def controller_id(self) -> int:
        return self.metadata().controller_id

    def partition_state(self, topic: str, partition: int = 0, timeout: float = 5.0) -> PState:
        md = self.metadata(topic, timeout=timeout)
        t = md.topics.get(topic)
        if t is None:
            raise LookupError(f"topic {topic} not in metadata")
        p = t.partitions.get(partition)
        if p is None:
            raise LookupError(f"{topic}/{partition} not in metadata (topic error {t.error})")
        return PState(p.leader, list(p.replicas), list(p.isrs), md.controller_id,
                      sorted(md.brokers), p.error)

    def node_view(self, node_id: int, topic: str, partition: int = 0) -> PState | None:
        """The partition as one node's Metadata shows it (None if that node does not list it)."""
        md = self.node(node_id).raw_metadata([topic])
        t = md["topics"].get(topic)
        if t is None:
            return None
        for p in t["partitions"]:
            if p["partition"] == partition:
                return PState(p["leader"], p["replicas"], p["isr"], md["controller"],
                              sorted(b[0] for b in md["brokers"]), p["error_code"])
        return None

    def agreed_state(self, topic: str, partition: int = 0, nodes=None) -> PState | None:
        """The partition state if every live node (or every node in `nodes`) reports the same
        leader, replicas and ISR; else None."""
        ids = nodes if nodes is not None else [nd.node_id for nd in self.live_nodes()]
        views = [self.node_view(i, topic, partition) for i in ids]
        if not views or any(v is None for v in views):
            return None
        if len({v.key() for v in views}) != 1:
            return None
        return views[0]

    def wait_partition(self, topic: str, partition: int, pred, timeout: float = 30.0,
                       what: str = "partition state", agreed: bool = True) -> PState:
        """Until the partition state satisfies pred(state); with agreed=True every live node
        must report that same state."""
        def check():
            st = (self.agreed_state(topic, partition) if agreed
                  else self.partition_state(topic, partition))
            return st if st is not None and pred(st) else None
        return self.wait_until(check, timeout, f"{topic}/{partition}: {what} "
                                               f"(now: {self._describe(topic, partition)})")

    def _describe(self, topic, partition) -> str:
        out = []
        for nd in self.live_nodes():
            try:
                v = self.node_view(nd.node_id, topic, partition)
                out.append(f"node {nd.node_id}: {v}")
            except Exception as e:      # noqa: BLE001
                out.append(f"node {nd.node_id}: {e!r}")
        return "; ".join(out)

    def wait_leader(self, topic: str, partition: int = 0, leader: int | None = None,
                    not_in=(), timeout: float = 30.0, agreed: bool = True) -> PState:
        """Until the partition has a leader (== `leader` if given, not in `not_in`) that is
        a live node."""
        live = lambda: {nd.node_id for nd in self.live_nodes()}     # noqa: E731
        return self.wait_partition(
            topic, partition,
            lambda s: s.leader >= 0 and s.leader in live() and s.leader not in set(not_in)
            and (leader is None or s.leader == leader),
            timeout, f"leader {leader if leader is not None else 'any live'}"
                     f"{f' not in {sorted(not_in)}' if not_in else ''}", agreed)

    def wait_isr(self, topic: str, partition: int = 0, isr=None, timeout: float = 30.0,
                 agreed: bool = True) -> PState:
        """Until the ISR is exactly `isr` (a set; default: all replicas) and there is a leader."""
        def ok(s):
            want = set(s.replicas) if isr is None else set(isr)
            return s.leader >= 0 and set(s.isr) == want
        return self.wait_partition(topic, partition, ok, timeout,
                                   f"ISR == {sorted(isr) if isr is not None else 'all replicas'}",
                                   agreed)

    def create_topic(self, name: str, partitions: int = 1, rf: int = 3,
                     config: dict | None = None, assignment: list[list[int]] | None = None,
                     wait_isr: bool = True, timeout: float = 30.0) -> list[PState]:
        """CreateTopics through the AdminClient, then wait until every live node shows every
        partition with a leader (and the full ISR with wait_isr)."""
        from confluent_kafka.admin import AdminClient, NewTopic
        a = AdminClient({"bootstrap.servers": self.live_bootstrap(), "log_level": 0})
        # confluent-kafka wants the partition count beside an assignment (its default of -1
        # is refused as "mutually exclusive").
        kw = {"replica_assignment": assignment, "num_partitions": len(assignment)} \
            if assignment else \
            {"num_partitions": partitions, "replication_factor": rf}
        nt = NewTopic(name, config={k: str(v) for k, v in (config or {}).items()}, **kw)
        fs = a.create_topics([nt], operation_timeout=timeout, request_timeout=timeout)
        fs[name].result(timeout)
        n = len(assignment) if assignment else partitions
        out = []
        for p in range(n):
            if wait_isr:
                out.append(self.wait_isr(name, p, timeout=timeout))
            else:
                out.append(self.wait_leader(name, p, timeout=timeout))
        return out

    # --- on-disk logs (Arctern-specific) --------------------------------------------------
    def partition_log_batches(self, node_id: int, topic: str, partition: int = 0) -> list[Batch]:
        """The record batches in a node's partition directory, in offset order (a torn
        batch at the end is ignored). Arctern's layout: `<base offset>.log` segments
        holding Kafka RecordBatch v2 bytes back to back."""
        d = self.node(node_id).partition_dir(topic, partition)
        segs = sorted(d.glob("*.log"), key=lambda p: int(p.stem))
        out: list[Batch] = []
        for seg in segs:
            buf = seg.read_bytes()
            pos = 0
            while pos + 12 <= len(buf):
                base, length = struct.unpack_from(">qi", buf, pos)
                if length < 49 or pos + 12 + length > len(buf):
                    break
                epoch = struct.unpack_from(">i", buf, pos + 12)[0]
                last_delta = struct.unpack_from(">i", buf, pos + 23)[0]
                out.append(Batch(base, base + last_delta, epoch, buf[pos:pos + 12 + length]))
                pos += 12 + length
        return out

    def compare_replica_logs(self, topic: str, partition: int, upto: int,
                             nodes=None) -> list[str]:
        """Byte-compare the batches below offset `upto` (the high watermark) on each node.
        Returns the differences found (empty list: identical and complete up to `upto`)."""
        ids = list(nodes) if nodes is not None else self.ids()
        per = {i: [b for b in self.partition_log_batches(i, topic, partition)
                   if b.base_offset < upto] for i in ids}
        problems = []
        for i, bs in per.items():
            end = bs[-1].last_offset + 1 if bs else 0
            first = bs[0].base_offset if bs else None
            if end < upto:
                problems.append(f"node {i}: holds offsets up to {end - 1}, below the high "
                                f"watermark {upto}")
            if bs and first != 0:
                problems.append(f"node {i}: first batch at offset {first}")
            gaps = [(a.last_offset, b.base_offset) for a, b in zip(bs, bs[1:])
                    if b.base_offset != a.last_offset + 1]
            if gaps:
                problems.append(f"node {i}: batches not contiguous, e.g. {gaps[:3]}")
        ref_id = ids[0]
        ref = per[ref_id]
        for i in ids[1:]:
            other = per[i]
            for k, (a, b) in enumerate(zip(ref, other)):
                if a.raw != b.raw:
                    problems.append(
                        f"node {ref_id} vs node {i}: batch #{k} differs: "
                        f"(base {a.base_offset}, last {a.last_offset}, epoch {a.leader_epoch}, "
                        f"{len(a.raw)} B) vs (base {b.base_offset}, last {b.last_offset}, "
                        f"epoch {b.leader_epoch}, {len(b.raw)} B)")
                    break
            else:
                if len(ref) != len(other):
                    problems.append(f"node {ref_id} has {len(ref)} batches below {upto}, "
                                    f"node {i} has {len(other)}")
        return problems

    def log_contains(self, node_id: int, topic: str, partition: int, needle: bytes) -> bool:
        """Whether any segment file of the partition on that node contains these bytes."""
        d = self.node(node_id).partition_dir(topic, partition)
        return any(needle in p.read_bytes() for p in d.glob("*.log"))


def summarize_rcs(rcs: dict) -> str:
    return ", ".join(f"node {k}: {'SIGKILL needed' if v is None else f'rc={v}'}"
                     for k, v in sorted(rcs.items()))
