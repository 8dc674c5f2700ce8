#!/usr/bin/env python3
"""Arctern's fault harness: real brokers in network namespaces, real clients, injected
faults, and checkers that count every acknowledged message. Run it with scripts/faults.sh
(root and /dev/fuse needed: namespaces, FUSE and tmpfs mounts).

    scripts/faults.sh                          # every scenario once (the CI set)
    scripts/faults.sh --scenario leader-paused --runs 20 --seed 7
    scripts/faults.sh --list

Each broker node runs in its own network namespace (netlab.NetLab), the clients in another;
partitions are blackhole routes, so nothing here touches the host's network. Power cuts
run the node's data dir on lossyfs (crates/lossyfs): kill -9, then drop everything the
broker had not fsynced, then restart. Disk-full runs the node's data dir on a small tmpfs.

Workloads and what their checkers count (a negative control must count a loss, or the
scenario beside it proves nothing):
  kafka   two acks=all producers, one without idempotence (one request in flight: no
          reordering allowed) and one idempotent (five in flight; no duplicates allowed);
          acklog.check_topic: every acknowledged record at its acknowledged offset, dense
          offsets, nothing foreign, records acknowledged before the fault exactly once,
          first occurrences in send order. Clusters: replicas byte-identical below the
          high watermark once the ISR is whole again.
  offsets a consumer-group member committing its position synchronously; an observer reads
          the committed offset; after the fault the committed offset is at least the last
          acknowledged commit and never went backwards.
  amqp    confirmed persistent publishes, transactions (committed and rolled back) and a
          manual-ack consumer; after the fault every confirmed message is consumed (acked
          before, or delivered now), committed transactions are whole, rolled-back ones never
          appear, and a message the consumer had received comes back with redelivered=true.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import acklog  # noqa: E402
import kclients as kc  # noqa: E402
from broker import Broker, arctern_bin  # noqa: E402
from cluster import CLUSTER_TEST_CONFIG, Cluster  # noqa: E402
from lossy import Lossyfs, lossyfs_bin  # noqa: E402
from netlab import NetLab  # noqa: E402

RUN_TIMEOUT_S = 240           # a run longer than this is a hang
# Every run reuses the lab's addresses: a client of an earlier run that is still being torn
# down must not auto-create its topics in the next run's cluster.
NODE_CONFIG = {"auto.create.topics.enable": False}
SESSION_S = CLUSTER_TEST_CONFIG["broker.session.timeout.ms"] / 1000


# ----------------------------------------------------------------------------- results

@dataclass
class Counts:
    acked: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    problems: list[str] = field(default_factory=list)
    notes: dict = field(default_factory=dict)

    def add(self, other: "Counts", label: str) -> "Counts":
        self.acked += other.acked
        self.lost += other.lost
        self.duplicated += other.duplicated
        self.reordered += other.reordered
        self.problems += [f"{label}: {p}" for p in other.problems]
        self.notes[label] = other.notes
        return self


@dataclass
class Scenario:
    name: str
    run: object                    # fn(Run) -> Counts
    models: str
    negative_control_of: str | None = None   # a negative control must count a loss


SCENARIOS: dict[str, Scenario] = {}


DEFINED: list[str] = []       # scenario names in source order (decorators run bottom-up)


def scenario(name: str, models: str, negative_control_of: str | None = None, **kw):
    DEFINED.append(name)

    def deco(fn):
        SCENARIOS[name] = Scenario(name, lambda r: fn(r, **kw), models, negative_control_of)
        return fn
    return deco


# ----------------------------------------------------------------------------- one run

class Run:
    """The world of one scenario run: a fresh work dir, nodes in the lab's namespaces,
    mounts; everything is stopped, unmounted and healed by close()."""

    def __init__(self, lab: NetLab, workdir: Path, rnd: random.Random, log):
        self.lab, self.workdir, self.rnd, self.log = lab, workdir, rnd, log
        self.nodes: list[Broker] = []
        self.lossy: dict[int, Lossyfs] = {}
        self.tmpfs: list[Path] = []
        self.cluster: Cluster | None = None

    # --- nodes ---------------------------------------------------------------------------
    def _mount_lossy(self, i: int, data_dir: Path, fsync_delay_ms: int = 0) -> Lossyfs:
        extra = ("--fsync-delay-ms", str(fsync_delay_ms)) if fsync_delay_ms else ()
        fs = Lossyfs(self.workdir / f"backing-{i}", data_dir, self.workdir / f"lossyfs-{i}.log",
                     extra)
        self.lossy[i] = fs
        return fs

    def _mount_tmpfs(self, data_dir: Path, size_mb: int):
        data_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(data_dir)],
                       check=True)
        self.tmpfs.append(data_dir)

    def single(self, config: dict | None = None, lossy: bool = False,
               fsync_delay_ms: int = 0) -> Broker:
        """One single-node broker (no cluster) in node 1's namespace."""
        b = Broker(self.workdir / "node-1", config={**NODE_CONFIG, **(config or {})},
                   port=9092, amqp_port=5672)
        b.host = self.lab.addr(1)
        b.cmd_prefix = self.lab.prefix_cmd(1)
        if lossy:
            self._mount_lossy(1, b.data_dir, fsync_delay_ms)
        self.nodes.append(b)
        return b.start(timeout=60)

    def make_cluster(self, config: dict | None = None, lossy: bool = False,
                     tmpfs_mb: dict[int, int] | None = None) -> Cluster:
        n = self.lab.nodes
        c = Cluster(self.workdir, n, config={**NODE_CONFIG, **(config or {})},
                    hosts=[self.lab.addr(i) for i in range(1, n + 1)],
                    cmd_prefixes=[self.lab.prefix_cmd(i) for i in range(1, n + 1)])
        for i, nd in c.nodes.items():
            if lossy:
                self._mount_lossy(i, nd.data_dir)
            if tmpfs_mb and i in tmpfs_mb:
                self._mount_tmpfs(nd.data_dir, tmpfs_mb[i])
        self.cluster = c
        self.nodes.extend(c.nodes.values())
        c.start(timeout=60)
        return c

    # --- faults --------------------------------------------------------------------------
    def power_cut(self, nodes: list[Broker], ids: list[int]) -> dict:
        """kill -9 every node in `nodes` (at once), then drop what they had not fsynced."""
        pending = {i: self.lossy[i].status() for i in ids}
        for b in nodes:
            if b.proc is not None and b.proc.poll() is None:
                os.kill(b.proc.pid, signal.SIGKILL)
        for b in nodes:
            b.kill()                              # reap (and bookkeeping)
        for i in ids:
            self.lossy[i].drop()
        return pending

    def close(self):
        self.lab.heal()
        if self.cluster is not None:
            for nd in self.cluster.nodes.values():
                nd.resume()
        for b in self.nodes:
            b.kill()
        for fs in self.lossy.values():
            fs.close()
        for d in self.tmpfs:
            subprocess.run(["umount", "-l", str(d)], check=False)


# ----------------------------------------------------------------------------- workloads

class KafkaLoad:
    """One acks=all producer thread writing numbered records (acklog.value_of) to partition
    0 of `topic`, `per_tick` records every `tick` seconds, at most `max_outstanding`
    unanswered. acked: index -> (partition, offset); failed: index -> error."""

    def __init__(self, bootstrap: str, topic: str, idempotent: bool, per_tick: int = 10,
                 tick: float = 0.01, max_outstanding: int = 2000, value_size: int | None = None):
        from confluent_kafka import Producer
        self.topic, self.idempotent = topic, idempotent
        self.per_tick, self.tick, self.max_outstanding = per_tick, tick, max_outstanding
        self.value_size = value_size
        conf = {"bootstrap.servers": bootstrap, "acks": "all",
                "enable.idempotence": idempotent,
                "max.in.flight.requests.per.connection": 5 if idempotent else 1,
                "message.timeout.ms": 150_000, "request.timeout.ms": 5000,
                "socket.timeout.ms": 5000, "retry.backoff.ms": 100, "linger.ms": 5,
                "topic.metadata.refresh.interval.ms": 1000,
                "reconnect.backoff.max.ms": 500, "log_level": 0}
        if not idempotent:
            conf["retries"] = 2_147_483_647
        self.p = Producer(conf)
        self.acked: dict[int, tuple[int, int]] = {}
        self.failed: dict[int, str] = {}
        self.sent = 0
        self.snapshot: set[int] | None = None
        self._stop = threading.Event()
        self.abandoned = False
        self.unflushed = 0
        self.fatal: str | None = None
        self.thread = threading.Thread(target=self._run, name=f"load-{topic}", daemon=True)

    def start(self) -> "KafkaLoad":
        self.thread.start()
        return self

    def value(self, i: int) -> bytes:
        v = acklog.value_of(i)
        return v if self.value_size is None else v + b"x" * (self.value_size - len(v))

    def _cb(self, i: int):
        def cb(err, msg):
            if err is None:
                self.acked[i] = (msg.partition(), msg.offset())
            else:
                self.failed[i] = err.name()
        return cb

    def _run(self):
        from confluent_kafka import KafkaException
        try:
            while not self._stop.is_set():
                if self.sent - len(self.acked) - len(self.failed) < self.max_outstanding:
                    for _ in range(self.per_tick):
                        try:
                            self.p.produce(self.topic, value=self.value(self.sent),
                                           partition=0, on_delivery=self._cb(self.sent))
                        except BufferError:
                            break
                        self.sent += 1
                self.p.poll(self.tick)
            if self.abandoned:
                self.p.purge()
            self.unflushed = self.p.flush(5 if self.abandoned else 90)
        except KafkaException as e:
            # e.g. an idempotent producer's fatal error: this producer can do no more
            self.fatal = str(e)
        finally:
            # Destroyed now, not whenever the garbage collector gets to it: its threads
            # would go on reconnecting to the same addresses in the next run.
            self.p = None

    def mark(self):
        """The fault begins: records acknowledged so far were never retried."""
        self.snapshot = set(self.acked)

    def finish(self):
        self._stop.set()
        self.thread.join(120)
        assert not self.thread.is_alive(), f"producer on {self.topic} did not finish"

    def abandon(self):
        """Stop without waiting for what is still unanswered (purged, never acknowledged)."""
        self.abandoned = True
        self.finish()

    def check(self, bootstrap: str, wait_hw: float = 30) -> Counts:
        """wait_hw: how long to wait for the high watermark to pass the highest acknowledged
        offset (a cluster's followers may still be catching up)."""
        chk = acklog.check_topic(bootstrap, self.topic, 1, self.acked, range(self.sent),
                                 acked_early=self.snapshot, check_order=True,
                                 failed=self.failed, wait_hw=wait_hw, timeout=120)
        part = chk.partitions[0]
        c = Counts(acked=len(self.acked), lost=len(part.lost) + len(part.misplaced),
                   duplicated=len(part.duplicates),
                   reordered=int(part.reordered_at is not None),
                   problems=list(chk.problems), notes=dict(chk.report))
        c.notes["sent"] = self.sent
        c.notes["unflushed"] = self.unflushed
        if self.fatal:
            c.notes["fatal"] = self.fatal
            c.problems.append(f"producer fatal error: {self.fatal[:200]}")
        if self.idempotent and part.duplicates:
            c.problems.append(f"{len(part.duplicates)} records duplicated by an idempotent "
                              f"producer")
        return c


def kafka_loads(bootstrap: str, prefix: str, **kw) -> list[KafkaLoad]:
    return [KafkaLoad(bootstrap, f"{prefix}-plain", False, **kw),
            KafkaLoad(bootstrap, f"{prefix}-idem", True, **kw)]


def check_loads(bootstrap: str, loads: list[KafkaLoad], wait_hw: float = 30) -> Counts:
    total = Counts()
    for ld in loads:
        total.add(ld.check(bootstrap, wait_hw), ld.topic)
    return total


def check_replicas(c: Cluster, topics: list[str], out: Counts):
    """Once the ISR is whole: every replica byte-identical below the high watermark."""
    for t in topics:
        st = c.wait_isr(t, 0, timeout=90)
        hw = acklog.watermarks_while_leader_moves(c.bootstrap, t, 0)[1]
        deadline = time.monotonic() + 30
        while True:
            probs = c.compare_replica_logs(t, 0, hw, nodes=st.replicas)
            if not probs or time.monotonic() > deadline:
                break
            time.sleep(0.5)       # a follower may still be fetching the last batches
        out.problems += [f"{t} replicas: {p}" for p in probs]


class CommitLoad:
    """A consumer-group member with manual commits: reads `topic` and commits its position
    synchronously every `every` records. commits: the offsets whose commit was
    acknowledged, in order; observed: the committed offset as a fresh read saw it."""

    def __init__(self, bootstrap: str, topic: str, group: str, every: int = 20):
        from confluent_kafka import Consumer
        self.topic, self.group, self.every = topic, group, every
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                           "enable.auto.commit": False, "auto.offset.reset": "earliest",
                           "session.timeout.ms": 10_000, "socket.timeout.ms": 5000,
                           "log_level": 0})
        self.commits: list[int] = []
        self.observed: list[int] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="commits", daemon=True)

    def start(self) -> "CommitLoad":
        self.thread.start()
        return self

    def _run(self):
        from confluent_kafka import KafkaException, TopicPartition
        self.c.subscribe([self.topic])
        n = 0
        last_observe = 0.0
        while not self._stop.is_set():
            m = self.c.poll(0.1)
            if m is None or m.error():
                continue
            n += 1
            time.sleep(0.002)
            if n % self.every == 0:
                pos = m.offset() + 1
                try:
                    self.c.commit(offsets=[TopicPartition(self.topic, 0, pos)],
                                  asynchronous=False)
                    self.commits.append(pos)
                except KafkaException as e:
                    self.errors.append(str(e))
            if time.monotonic() - last_observe > 0.3:
                last_observe = time.monotonic()
                try:
                    got = self.c.committed([TopicPartition(self.topic, 0)], timeout=2)
                    if got[0].offset >= 0:
                        self.observed.append(got[0].offset)
                except KafkaException:
                    pass
        try:
            self.c.close()
        except Exception:   # noqa: BLE001 - the broker may be gone
            pass

    def finish(self):
        self._stop.set()
        self.thread.join(60)

    def check(self, bootstrap: str) -> Counts:
        from confluent_kafka import Consumer, KafkaException, TopicPartition
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": self.group,
                      "enable.auto.commit": False, "log_level": 0})
        deadline = time.monotonic() + 60
        try:
            while True:
                try:
                    final = c.committed([TopicPartition(self.topic, 0)], timeout=5)[0].offset
                    break
                except KafkaException:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
        finally:
            c.close()
        out = Counts(acked=len(self.commits))
        newest = max(self.commits, default=-1)
        out.lost = sum(1 for x in self.commits if x > final)
        backwards = [(a, b) for a, b in zip(self.observed, self.observed[1:]) if b < a]
        if out.lost:
            out.problems.append(f"committed offset after the fault is {final}, below "
                                f"{out.lost} acknowledged commits (newest {newest})")
        if backwards:
            out.problems.append(f"the committed offset went backwards: {backwards[:3]}")
            out.reordered = len(backwards)
        out.notes = {"commits": len(self.commits), "newest": newest, "after_fault": final,
                     "observations": len(self.observed), "commit_errors": len(self.errors)}
        return out


class AmqpLoad:
    """Three AMQP clients (pika), each its own connection and thread, until the broker
    goes away or finish() is called: a confirmed publisher of persistent messages to queue
    Q, a transactional publisher to queue Q-tx (3 messages per transaction; every 4th
    rolled back), and a manual-ack consumer on Q that acks every message it receives but
    rejects every 10th (requeue=false), which Q dead-letters to Q-dlq."""

    def __init__(self, host: str, port: int, queue: str, consumer: bool = True):
        self.host, self.port, self.q, self.qtx = host, port, queue, queue + "-tx"
        self.dlq = queue + "-dlq"
        self.rejected: set[int] = set()
        self.confirmed: set[int] = set()
        self.nacked: set[int] = set()
        self.tx_committed: set[int] = set()       # commit-ok received
        self.tx_commit_sent: set[int] = set()     # commit sent (outcome maybe unknown)
        self.received: set[int] = set()           # delivered to our consumer
        self.acked: set[int] = set()              # basic.ack sent for it
        self.errors: list[str] = []
        self._stop = threading.Event()
        ch, conn = self.channel()
        ch.queue_declare(self.dlq, durable=True)
        ch.queue_declare(self.q, durable=True,
                         arguments={"x-dead-letter-exchange": "",
                                    "x-dead-letter-routing-key": self.dlq})
        ch.queue_declare(self.qtx, durable=True)
        conn.close()
        roles = (self._publish, self._transact) + ((self._consume,) if consumer else ())
        self.threads = [threading.Thread(target=f, daemon=True, name=f.__name__) for f in roles]

    def channel(self):
        import pika
        conn = pika.BlockingConnection(pika.ConnectionParameters(
            host=self.host, port=self.port, connection_attempts=1, socket_timeout=10,
            stack_timeout=30, blocked_connection_timeout=30, heartbeat=0))
        return conn.channel(), conn

    def start(self) -> "AmqpLoad":
        for t in self.threads:
            t.start()
        return self

    def _guard(self, fn):
        try:
            fn()
        except Exception as e:   # noqa: BLE001 - the broker was cut: this client is done
            self.errors.append(f"{type(e).__name__}: {e}")

    def _publish(self):
        import pika

        def go():
            ch, conn = self.channel()
            ch.confirm_delivery()
            props = pika.BasicProperties(delivery_mode=2)
            i = 0
            while not self._stop.is_set():
                try:
                    ch.basic_publish("", self.q, acklog.value_of(i), props, mandatory=True)
                    self.confirmed.add(i)
                except (pika.exceptions.NackError, pika.exceptions.UnroutableError):
                    self.nacked.add(i)
                i += 1
            conn.close()
        self._guard(go)

    def _transact(self):
        import pika

        def go():
            ch, conn = self.channel()
            ch.tx_select()
            props = pika.BasicProperties(delivery_mode=2)
            t = 0
            while not self._stop.is_set():
                for k in range(3):
                    ch.basic_publish("", self.qtx, b"tx%07d-%d" % (t, k), props)
                if t % 4 == 3:
                    ch.tx_rollback()
                else:
                    self.tx_commit_sent.add(t)
                    ch.tx_commit()
                    self.tx_committed.add(t)
                t += 1
                time.sleep(0.005)
            conn.close()
        self._guard(go)

    def _consume(self):
        def go():
            ch, conn = self.channel()
            ch.basic_qos(prefetch_count=20)
            for method, _props, body in ch.consume(self.q, inactivity_timeout=0.2):
                if self._stop.is_set():
                    break
                if method is None:
                    continue
                i = acklog.index_of(body)
                self.received.add(i)
                time.sleep(0.001)
                if i % 10 == 0:
                    ch.basic_reject(method.delivery_tag, requeue=False)
                    self.rejected.add(i)
                else:
                    ch.basic_ack(method.delivery_tag)
                    self.acked.add(i)
            conn.close()
        self._guard(go)

    def finish(self):
        self._stop.set()
        for t in self.threads:
            t.join(30)

    def drain(self, queue: str, idle_s: float = 3.0, timeout: float = 120) -> list[tuple]:
        """(body, redelivered) of every message now in `queue`, acked; retries the
        connection while the broker comes back."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                ch, conn = self.channel()
                break
            except Exception:    # noqa: BLE001
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        out = []
        ch.basic_qos(prefetch_count=500)
        for method, _props, body in ch.consume(queue, inactivity_timeout=idle_s):
            if method is None:
                break
            out.append((body, method.redelivered))
            ch.basic_ack(method.delivery_tag)
        conn.close()
        return out

    def check(self) -> Counts:
        got = self.drain(self.q)
        seen: dict[int, int] = {}
        not_flagged = []
        for body, redelivered in got:
            i = acklog.index_of(body)
            seen[i] = seen.get(i, 0) + 1
            if i in self.received and not redelivered:
                not_flagged.append(i)
        dead = [acklog.index_of(body) for body, _ in self.drain(self.dlq)]
        foreign_dead = [i for i in dead if i not in self.rejected]
        out = Counts(acked=len(self.confirmed))
        # settled by the consumer (acked, or rejected and dead-lettered), or still queued
        lost = sorted(i for i in self.confirmed
                      if i not in seen and i not in self.acked and i not in dead)
        out.lost = len(lost)
        out.duplicated = sum(1 for n in seen.values() if n > 1)
        if lost:
            out.problems.append(f"{len(lost)} confirmed messages neither consumed nor in the "
                                f"queue, e.g. {lost[:5]}")
        if out.duplicated:
            out.problems.append(f"{out.duplicated} messages in the queue twice")
        if foreign_dead:
            out.problems.append(f"{len(foreign_dead)} dead-lettered messages that were never "
                                f"rejected, e.g. {foreign_dead[:5]}")
        if not_flagged:
            out.problems.append(f"{len(not_flagged)} messages delivered again without "
                                f"redelivered=true, e.g. {sorted(not_flagged)[:5]}")
        txs: dict[int, set[int]] = {}
        for body, _ in self.drain(self.qtx):
            t, k = body[2:].split(b"-")
            txs.setdefault(int(t), set()).add(int(k))
        partial = sorted(t for t, ks in txs.items() if ks != {0, 1, 2})
        rolled_back = sorted(t for t in txs if t not in self.tx_commit_sent)
        missing = sorted(t for t in self.tx_committed if t not in txs)
        out.acked += len(self.tx_committed) * 3
        out.lost += 3 * len(missing)
        if partial:
            out.problems.append(f"{len(partial)} transactions only partly applied: {partial[:5]}")
        if rolled_back:
            out.problems.append(f"{len(rolled_back)} rolled-back (or never committed) "
                                f"transactions appeared: {rolled_back[:5]}")
        if missing:
            out.problems.append(f"{len(missing)} committed transactions missing: {missing[:5]}")
        out.notes = {"confirmed": len(self.confirmed), "nacked": len(self.nacked),
                     "received": len(self.received), "acked": len(self.acked),
                     "rejected": len(self.rejected), "dead_lettered": len(dead),
                     "in_queue_after": len(got), "tx_committed": len(self.tx_committed),
                     "tx_in_queue_after": len(txs), "redelivered_unflagged": len(not_flagged),
                     "client_errors": self.errors[:3]}
        return out


# ----------------------------------------------------------------------------- helpers

def settle(r: Run, lo: float, hi: float):
    time.sleep(r.rnd.uniform(lo, hi))


def wait_new_leader(c: Cluster, topic: str, old: int, exclude=(), timeout: float = 40):
    """Until the nodes other than `exclude` agree on a leader other than `old`."""
    others = [i for i in c.ids() if i not in set(exclude)]

    def check():
        st = c.agreed_state(topic, 0, nodes=others)
        return st if st is not None and st.leader >= 0 and st.leader != old else None
    return c.wait_until(check, timeout, f"{topic}: a leader other than {old}")


def cluster_topics(c: Cluster, prefix: str, config: dict, assignment=None) -> list[str]:
    names = [f"{prefix}-plain", f"{prefix}-idem"]
    for t in names:
        if assignment:
            c.create_topic(t, config=config, assignment=assignment)
        else:
            c.create_topic(t, rf=3, config=config)
    return names


RELAXED = {"flush.messages": 1_000_000}


# ----------------------------------------------------------------------------- scenarios

@scenario("power-cut-kafka", "one node's power fails under acks=all load: every unsynced "
          "write and file name is lost, the process dies with it")
@scenario("nc-power-cut-kafka-relaxed", "as power-cut-kafka, topics with flush.messages "
          "1000000 (fsync relaxed): must lose", negative_control_of="power-cut-kafka",
          relaxed=True)
@scenario("power-cut-slow-fsync", "as power-cut-kafka on a disk whose fsyncs take 20 ms",
          fsync_delay_ms=20)
def power_cut_kafka(r: Run, relaxed: bool = False, fsync_delay_ms: int = 0) -> Counts:
    b = r.single(lossy=True, fsync_delay_ms=fsync_delay_ms)
    for t in ("pc-plain", "pc-idem"):
        kc.create_topic(b.bootstrap, t, config=RELAXED if relaxed else None)
    loads = [ld.start() for ld in kafka_loads(b.bootstrap, "pc", per_tick=20)]
    settle(r, 1.5, 3.0)
    for ld in loads:
        ld.mark()
    pending = r.power_cut([b], [1])
    b.start(timeout=60)
    time.sleep(1.5)
    for ld in loads:
        ld.finish()
    out = check_loads(b.bootstrap, loads, wait_hw=2)     # one node: the HW is final
    out.notes["pending_at_cut"] = pending[1]
    return out


@scenario("power-cut-offsets", "one node's power fails while a group member commits offsets")
@scenario("nc-power-cut-offsets-relaxed", "as power-cut-offsets with the broker-wide "
          "log.flush.interval.messages 1000000: must lose commits",
          negative_control_of="power-cut-offsets", relaxed=True)
def power_cut_offsets(r: Run, relaxed: bool = False) -> Counts:
    cfg = {"group.initial.rebalance.delay.ms": 0}
    if relaxed:
        cfg["log.flush.interval.messages"] = 1_000_000
    b = r.single(lossy=True, config=cfg)
    kc.create_topic(b.bootstrap, "src")
    kc.produce_confluent(b.bootstrap, "src", [kc.Msg(acklog.value_of(i)) for i in range(4000)])
    load = CommitLoad(b.bootstrap, "src", "g-faults").start()
    Cluster.wait_until(lambda: len(load.commits) >= 5, 30, "the group member's first commits")
    settle(r, 0.3, 1.5)
    pending = r.power_cut([b], [1])
    load.finish()
    b.start(timeout=60)
    out = load.check(b.bootstrap)
    out.notes["pending_at_cut"] = pending[1]
    return out


@scenario("power-cut-amqp", "one node's power fails under confirmed publishes, transactions "
          "and a manual-ack consumer", amqp=True)
@scenario("nc-power-cut-amqp-relaxed", "as power-cut-amqp with log.flush.interval.messages "
          "1000000: must lose confirmed messages", negative_control_of="power-cut-amqp",
          amqp=True, relaxed=True)
def power_cut_amqp(r: Run, relaxed: bool = False, amqp: bool = True) -> Counts:
    cfg = {"loopback_users": "none"}
    if relaxed:
        cfg["log.flush.interval.messages"] = 1_000_000
    b = r.single(lossy=True, config=cfg)
    # The control runs the same load: on a relaxed log neither settlements nor commits
    # nor the housekeeping tick ask for an fsync, only the flush policy does.
    load = AmqpLoad(b.host, b.amqp_port, "faults").start()
    settle(r, 1.5, 3.0)
    pending = r.power_cut([b], [1])
    load.finish()
    b.start(timeout=60)
    out = load.check()
    out.notes["pending_at_cut"] = pending[1]
    return out


@scenario("power-cut-rf3", "all three nodes of an RF=3 cluster lose power at once "
          "(correlated: one rack, one feed)")
@scenario("nc-power-cut-rf3-relaxed", "as power-cut-rf3 with flush.messages 1000000: must lose",
          negative_control_of="power-cut-rf3", relaxed=True)
def power_cut_rf3(r: Run, relaxed: bool = False) -> Counts:
    c = r.make_cluster(lossy=True)
    cfg = {"min.insync.replicas": 2, **(RELAXED if relaxed else {})}
    topics = cluster_topics(c, "rf3", cfg)
    loads = [ld.start() for ld in kafka_loads(c.bootstrap, "rf3")]
    settle(r, 2.0, 3.5)
    for ld in loads:
        ld.mark()
    pending = r.power_cut(list(c.nodes.values()), c.ids())
    c.start(timeout=60)
    for t in topics:
        c.wait_leader(t, 0, timeout=60)
    time.sleep(1.5)
    for ld in loads:
        ld.finish()
    out = check_loads(c.bootstrap, loads, wait_hw=10)
    check_replicas(c, topics, out)
    out.notes["pending_at_cut"] = pending
    return out


def leader_fault(r: Run, fault: str, config: dict | None = None) -> Counts:
    """RF=3, min.insync.replicas=2 (unless `config` says otherwise), two producers; `fault`
    hits the leader of the first topic, held until the others agree on a new leader and a
    little longer, then healed; the ISR must become whole again."""
    c = r.make_cluster()
    topics = cluster_topics(c, "lf", {"min.insync.replicas": 2, **(config or {})},
                            assignment=[[1, 2, 3]])
    loads = [ld.start() for ld in kafka_loads(c.bootstrap, "lf")]
    settle(r, 1.5, 3.0)
    leader = c.wait_leader(topics[0], 0).leader
    others = [i for i in c.ids() if i != leader]
    for ld in loads:
        ld.mark()
    t0 = time.monotonic()
    if fault == "isolate":
        r.lab.isolate(leader)
    elif fault == "isolate-keep-client":
        r.lab.isolate(leader, keep=(0,))
    elif fault == "bridge":
        bridge, far = r.rnd.sample(others, 2)
        r.lab.cut(leader, far)
    elif fault == "pause":
        c.node(leader).pause()
    notes = {"leader": leader, "fault": fault}
    if fault == "bridge":
        notes["bridge"] = bridge
        # a bridge partition need not move leadership: hold it past the lag time instead
        time.sleep(CLUSTER_TEST_CONFIG["replica.lag.time.max.ms"] / 1000 + 3)
    else:
        new = wait_new_leader(c, topics[0], leader, exclude=[leader])
        notes["new_leader"] = new.leader
        notes["new_leader_after_s"] = round(time.monotonic() - t0, 1)
        time.sleep(r.rnd.uniform(1.0, 3.0))
    if fault == "pause":
        c.node(leader).resume()
    r.lab.heal()
    for t in topics:
        c.wait_isr(t, 0, timeout=90)
    time.sleep(1.0)
    for ld in loads:
        ld.finish()
    out = check_loads(c.bootstrap, loads, wait_hw=5)     # the ISR is whole: HW is current
    check_replicas(c, topics, out)
    out.notes.update(notes)
    return out


@scenario("leader-isolated", "the partition leader is cut from the other nodes and the "
          "clients", fault="isolate")
@scenario("leader-isolated-client-reaches", "the leader is cut from the other nodes while the "
          "clients still reach it: it must not acknowledge what it cannot replicate",
          fault="isolate-keep-client")
@scenario("bridge-partition", "the leader and one follower stop seeing each other; the third "
          "node sees both (a bridge)", fault="bridge")
@scenario("leader-paused", "the leader is SIGSTOPped past the session timeout, then resumed "
          "(a GC pause, a frozen VM)", fault="pause")
def leader_fault_scenario(r: Run, fault: str) -> Counts:
    return leader_fault(r, fault)


@scenario("lone-leader", "RF=2 on nodes 1 and 2 (node 3 a voter only), min.insync.replicas=1: "
          "the replicas are cut apart so the leader acknowledges alone, then the leader is "
          "isolated; with unclean election off the out-of-sync replica is never elected",
          unclean=False)
@scenario("nc-lone-leader-unclean", "as lone-leader with unclean.leader.election.enable: the "
          "out-of-sync replica is elected and what the lone leader acknowledged is lost "
          "(min.insync.replicas=1 with the leader isolated)",
          negative_control_of="lone-leader", unclean=True)
def lone_leader(r: Run, unclean: bool) -> Counts:
    c = r.make_cluster()
    cfg = {"min.insync.replicas": 1, "unclean.leader.election.enable": str(unclean).lower()}
    topics = cluster_topics(c, "ll", cfg, assignment=[[1, 2]])
    loads = [ld.start() for ld in kafka_loads(c.bootstrap, "ll")]
    settle(r, 1.0, 2.0)
    a, b = 1, 2
    c.wait_leader(topics[0], 0, leader=a)
    for ld in loads:
        ld.mark()
    r.lab.cut(a, b)
    for t in topics:          # as nodes 1 and 3 see it: b is cut off from the quorum's news
        c.wait_until(lambda t=t: (lambda s: s and s.isr == [a])(c.agreed_state(t, 0, [a, 3])),
                     40, f"{t}: ISR == [{a}] on nodes {a} and 3")
    time.sleep(r.rnd.uniform(1.0, 2.0))            # acknowledged by `a` alone
    r.lab.isolate(a)
    notes = {}
    if unclean:
        st = wait_new_leader(c, topics[0], a, exclude=[a])
        notes["elected"] = st.leader
    else:
        time.sleep(SESSION_S + 3)
        views = {i: c.node_view(i, topics[0], 0) for i in (2, 3)}
        elected = [v.leader for v in views.values() if v is not None and v.leader == b]
        if elected:
            notes["unclean_elected_anyway"] = views
    r.lab.heal()
    for t in topics:
        c.wait_isr(t, 0, timeout=60)
    time.sleep(1.0)
    for ld in loads:
        ld.finish()
    out = check_loads(c.bootstrap, loads, wait_hw=5)
    if "unclean_elected_anyway" in notes:
        out.problems.append(f"out-of-sync replica elected with unclean election off: {notes}")
    out.notes.update(notes)
    return out


@scenario("disk-full", "the leader's disk fills up under load (a 64 MiB tmpfs), then space "
          "is freed")
def disk_full(r: Run) -> Counts:
    c = r.make_cluster(tmpfs_mb={1: 64})
    topics = cluster_topics(c, "df", {"min.insync.replicas": 2}, assignment=[[1, 2, 3]])
    c.create_topic("filler", config={"min.insync.replicas": 1}, assignment=[[1]])
    loads = [ld.start() for ld in kafka_loads(c.bootstrap, "df")]
    filler = KafkaLoad(c.bootstrap, "filler", False, per_tick=20, max_outstanding=200,
                       value_size=64 * 1024).start()
    data = c.node(1).data_dir
    t0 = time.monotonic()
    while shutil.disk_usage(data).free > 256 * 1024 and time.monotonic() - t0 < 90:
        time.sleep(0.2)
    full_after = round(time.monotonic() - t0, 1)
    for ld in loads:
        ld.mark()
    time.sleep(r.rnd.uniform(3.0, 5.0))             # the load runs against a full disk
    filler.abandon()
    notes = {"full_after_s": full_after, "free_bytes": shutil.disk_usage(data).free,
             "node1_alive": c.node(1).running(), "filler_failed": len(filler.failed)}
    subprocess.run(["mount", "-o", "remount,size=1024m", str(data)], check=True)
    if not c.node(1).running():
        notes["node1_exit"] = c.node(1).proc.returncode
        c.node(1).start(timeout=60)
    try:
        for t in topics:
            c.wait_isr(t, 0, timeout=45)
    except AssertionError:
        # a broker whose log dir failed stays out until restarted, as Kafka's does
        notes["restarted_after_free"] = True
        c.node(1).stop()
        c.node(1).start(timeout=60)
    time.sleep(1.0)
    for ld in loads:
        ld.finish()
    out = check_loads(c.bootstrap, loads, wait_hw=5)
    check_replicas(c, topics, out)
    logs = "".join(p.read_text(errors="replace") for p in c.node(1).all_logs())
    if "the log could not be written" not in logs:
        out.problems.append("node 1 never logged that its disk was failing")
    out.notes.update(notes)
    return out


# ----------------------------------------------------------------------------- runner

def default_order() -> list[str]:
    """Every scenario in definition order, each followed by its negative controls."""
    plain = [n for n, sc in SCENARIOS.items() if sc.negative_control_of is None]
    plain.sort(key=lambda n: DEFINED.index(n))
    out = []
    for n in plain:
        out.append(n)
        out += [m for m, sc in SCENARIOS.items() if sc.negative_control_of == n]
    return out


class Hang(Exception):
    pass


def _alarm(_sig, _frm):
    raise Hang(f"run exceeded {RUN_TIMEOUT_S} s")


def run_scenario(lab: NetLab, sc: Scenario, seed: int, base: Path, keep: bool) -> dict:
    rnd = random.Random(seed)
    workdir = Path(tempfile.mkdtemp(prefix=f"{sc.name}-", dir=base))
    r = Run(lab, workdir, rnd, None)
    t0 = time.monotonic()
    res: dict = {"scenario": sc.name, "seed": seed}
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(RUN_TIMEOUT_S)
    try:
        counts = sc.run(r)
        res.update(asdict(counts))
        crashed = [b for b in r.nodes if b.died_unexpectedly()]
        if crashed:
            res["problems"].append(f"broker(s) exited unexpectedly: "
                                   f"{[str(b.workdir) for b in crashed]}")
    except Exception as e:     # noqa: BLE001 - a failed run is a finding, reported
        res.update(asdict(Counts()))
        res["problems"].append(f"{type(e).__name__}: {e}")
        res["traceback"] = traceback.format_exc()
    finally:
        signal.alarm(0)
        try:
            r.close()
        except Exception as e:   # noqa: BLE001
            res.setdefault("problems", []).append(f"cleanup: {e!r}")
    res["seconds"] = round(time.monotonic() - t0, 1)
    res["verdict"] = verdict(sc, res)
    if keep or not res["verdict"].startswith("ok"):
        res["workdir"] = str(workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return res


def verdict(sc: Scenario, res: dict) -> str:
    errored = any(p.split(":")[0].endswith(("Error", "Hang", "Exception")) or "exited" in p
                  for p in res["problems"])
    if sc.negative_control_of is not None:
        if errored:
            return "ERROR"
        return "ok (saw loss)" if res["lost"] > 0 else "BROKEN (no loss seen)"
    return "FAIL" if res["problems"] else "ok"


def summarize(results: list[dict]) -> list[dict]:
    rows = []
    for name in dict.fromkeys(r["scenario"] for r in results):
        rs = [r for r in results if r["scenario"] == name]
        sc = SCENARIOS[name]
        rows.append({
            "scenario": name, "runs": len(rs),
            "acknowledged": sum(r["acked"] for r in rs), "lost": sum(r["lost"] for r in rs),
            "duplicated": sum(r["duplicated"] for r in rs),
            "reordered": sum(r["reordered"] for r in rs),
            "runs_with_loss": sum(1 for r in rs if r["lost"]),
            "failed_runs": sum(1 for r in rs if not r["verdict"].startswith("ok")),
            "negative_control_of": sc.negative_control_of,
            "seconds": round(sum(r["seconds"] for r in rs), 1)})
    return rows


def print_table(rows: list[dict]):
    hdr = f"{'scenario':34} {'runs':>4} {'acked':>9} {'lost':>7} {'dup':>6} {'reord':>5} " \
          f"{'bad':>4}  note"
    print(hdr)
    print("-" * len(hdr))
    for w in rows:
        if w["negative_control_of"]:
            note = (f"negative control of {w['negative_control_of']}: loss in "
                    f"{w['runs_with_loss']}/{w['runs']} runs (must be all)")
        else:
            note = "" if not w["failed_runs"] else f"{w['failed_runs']} run(s) FAILED"
        print(f"{w['scenario']:34} {w['runs']:>4} {w['acknowledged']:>9} {w['lost']:>7} "
              f"{w['duplicated']:>6} {w['reordered']:>5} {w['failed_runs']:>4}  {note}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", action="append", default=[],
                    help="a scenario name (repeatable, or comma-separated); default: all")
    ap.add_argument("--runs", type=int, default=1, help="runs per scenario")
    ap.add_argument("--seed", type=int, default=None, help="base seed (default: random)")
    ap.add_argument("--json", type=Path, help="write every run's result here")
    ap.add_argument("--workdir", type=Path, default=None, help="where runs keep their files")
    ap.add_argument("--keep", action="store_true", help="keep every run's work dir")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ap.add_argument("--time-budget", type=float, default=None, metavar="S",
                    help="start no new run after S seconds (the table covers the runs done)")
    a = ap.parse_args(argv)
    if a.list:
        for sc in (SCENARIOS[n] for n in default_order()):
            tag = f" [negative control of {sc.negative_control_of}]" \
                if sc.negative_control_of else ""
            print(f"{sc.name:34} {sc.models}{tag}")
        return 0
    names = [n for s in a.scenario for n in s.split(",") if n] or default_order()
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s): {unknown}; --list shows them", file=sys.stderr)
        return 2
    if os.geteuid() != 0 or not Path("/dev/fuse").exists():
        print("the fault harness needs root and /dev/fuse", file=sys.stderr)
        return 2
    for binary in (arctern_bin(), lossyfs_bin()):
        if not binary.is_file():
            print(f"{binary} is not built", file=sys.stderr)
            return 2
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    base = a.workdir or Path(tempfile.mkdtemp(prefix="arctern-faults-"))
    base.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=Path(__file__).parent).stdout.strip()
    print(f"fault harness: seed {seed}, {a.runs} run(s) x {len(names)} scenario(s), "
          f"commit {commit or '?'}, binary {arctern_bin()}, work dir {base}", flush=True)
    lab = NetLab(3)
    results: list[dict] = []
    stop = {"why": None}

    def on_signal(sig, _frm):
        # finish the run in progress (it cleans up after itself), then report
        stop["why"] = signal.Signals(sig).name
        print(f"\n{stop['why']}: stopping after the run in progress", flush=True)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    t_start = time.monotonic()

    def write_json():
        if a.json:
            a.json.write_text(json.dumps({"seed": seed, "commit": commit, "runs": a.runs,
                                          "stopped": stop["why"],
                                          "summary": summarize(results),
                                          "results": results}, indent=1))
    try:
        lab.enter_client()
        for k in range(a.runs):
            for j, name in enumerate(names):
                if a.time_budget is not None and time.monotonic() - t_start > a.time_budget:
                    stop["why"] = stop["why"] or f"time budget of {a.time_budget:.0f} s"
                if stop["why"]:
                    break
                run_seed = seed + 1000 * k + j
                res = run_scenario(lab, SCENARIOS[name], run_seed, base, a.keep)
                results.append(res)
                probs = "; ".join(res["problems"])[:400]
                print(f"[{len(results)}/{a.runs * len(names)}] {name} seed={run_seed} "
                      f"{res['seconds']}s acked={res['acked']} lost={res['lost']} "
                      f"dup={res['duplicated']} reord={res['reordered']} -> {res['verdict']}"
                      f"{'  ' + probs if probs else ''}"
                      f"{'  (kept ' + res['workdir'] + ')' if 'workdir' in res else ''}",
                      flush=True)
                if res.get("traceback") and not res["verdict"].startswith("ok"):
                    print(res["traceback"], flush=True)
                write_json()
            if stop["why"]:
                break
    finally:
        lab.close()
    rows = summarize(results)
    print()
    if stop["why"]:
        print(f"stopped early ({stop['why']}) after {len(results)} runs")
    print_table(rows)
    write_json()
    bad = [w["scenario"] for w in rows if w["failed_runs"]]
    print(f"\n{'FAILED: ' + ', '.join(bad) if bad else 'all scenarios passed'} "
          f"(seed {seed})")
    if not a.keep and not bad:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
