"""Replication (issue 3): three real `arctern serve` processes on loopback, all raft voters,
real clients (confluent-kafka / librdkafka, kafka-python).

Who is killed or paused is always chosen from what the Kafka Metadata API says (partition
leader, replicas, ISR, controller id), never assumed. Timeouts are short
(cluster.CLUSTER_TEST_CONFIG: replica.lag.time.max.ms 3000, broker.session.timeout.ms 3000,
broker.heartbeat.interval.ms 500, leader.imbalance.check.interval.seconds 3).

The acknowledged-records check is acklog.check_topic, the same one the single-node crash
test uses: every acked record at its acked offset, dense offsets, nothing foreign, records
acked before the first disruption exactly once, no reordering (one request in flight). The
negative control (unclean election) asserts that this checker DOES report the loss.

"All replicas hold identical logs up to the high watermark" is checked on disk: once the
ISR is full again and the load has stopped, each node's segment files for the partition are
parsed into record batches and the batches below the high watermark are compared byte for
byte across the nodes (Cluster.compare_replica_logs). That is the one Arctern-specific part
(it reads the data dirs); everything else goes through the Kafka protocol. Comparing the
bytes is stronger than reading each replica through the Kafka API (which would need each
node to be made leader in turn) and does not disturb the cluster.

ARCTERN_REPL_SEED=<int> replays the kill points of the load test; ARCTERN_REPL_RECORDS
changes its record count (default 100000).
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import threading
import time

import pytest
from confluent_kafka import KafkaError, Producer

import acklog
import kclients as kc
import kwire
from broker import arctern_bin
from cluster import (INVALID_REPLICATION_FACTOR, NOT_ENOUGH_REPLICAS,
                     NOT_ENOUGH_REPLICAS_AFTER_APPEND, NOT_LEADER_OR_FOLLOWER, Cluster)

pytestmark = pytest.mark.replication

N_LOAD = int(os.environ.get("ARCTERN_REPL_RECORDS", "100000"))
LAG_MS = 3000
# A follower paused with a fetch pending on the leader still receives that fetch's answer
# (the leader writes it into the socket; the follower reads it after SIGCONT). Waiting
# longer than replica.fetch.wait.max.ms (default 500 ms) after SIGSTOP lets every pending
# long poll expire first, so records produced afterwards really are on the leader only.
PENDING_FETCH_S = 1.5
# Before reading back after a failover, wait up to this long for the high watermark to pass
# the highest acknowledged offset (a new leader's HW catches up once its ISR has fetched);
# a real loss still shows after it.
WAIT_HW = 15
NER_CODES = {NOT_ENOUGH_REPLICAS, NOT_ENOUGH_REPLICAS_AFTER_APPEND}


# ----------------------------------------------------------------------------- helpers

class Deliveries:
    """Delivery-report bookkeeping for records value_of(i)."""

    def __init__(self):
        self.acked: dict[int, tuple[int, int]] = {}   # index -> (partition, offset)
        self.failed: dict[int, KafkaError] = {}
        self.last_ack_at = 0.0
        self.errors: list[str] = []                  # error_cb (client-level, informational)

    def on_delivery(self, err, msg):
        i = acklog.index_of(msg.value())
        assert i is not None, f"delivery report for a foreign value {msg.value()[:20]!r}"
        if err is not None:
            self.failed[i] = err
        else:
            self.acked[i] = (msg.partition(), msg.offset())
            self.last_ack_at = time.monotonic()

    def on_error(self, err):
        self.errors.append(str(err))

    @property
    def done(self) -> int:
        return len(self.acked) + len(self.failed)

    def codes(self) -> dict:
        out: dict = {}
        for e in self.failed.values():
            out[e.name()] = out.get(e.name(), 0) + 1
        return out


def make_producer(bootstrap: str, d: Deliveries, **conf) -> Producer:
    """acks=all, idempotence off, unlimited retries, one request in flight, small batches."""
    c = {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": False,
         "retries": 2147483647, "max.in.flight.requests.per.connection": 1,
         "linger.ms": 5, "batch.num.messages": 200, "compression.type": "none",
         "message.timeout.ms": 180000, "request.timeout.ms": 10000,
         "retry.backoff.ms": 50, "retry.backoff.max.ms": 500,
         "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500,
         "queue.buffering.max.messages": 500000, "queue.buffering.max.kbytes": 1 << 20,
         "log_level": 2, "error_cb": d.on_error}
    c.update(conf)
    return Producer(c)


def send(p: Producer, d: Deliveries, topic: str, indexes, partition: int = 0) -> None:
    for i in indexes:
        while True:
            try:
                p.produce(topic, value=acklog.value_of(i), partition=partition,
                          on_delivery=d.on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)


def send_all(p: Producer, d: Deliveries, topic: str, indexes, timeout: float = 60,
             partition: int = 0) -> None:
    """Send and wait for every delivery report."""
    send(p, d, topic, indexes, partition)
    left = p.flush(timeout)
    assert left == 0, f"{left} records still undelivered after {timeout}s"


def top_offset(acked: dict, partition: int = 0) -> int:
    """The highest acknowledged offset in the partition (-1 if none)."""
    return max((off for p, off in acked.values() if p == partition), default=-1)


def offsets_of(d: Deliveries, indexes) -> list[int]:
    return [d.acked[i][1] for i in indexes]


class Trickle:
    """A slow background load for the wait loops: a few records per tick()."""

    def __init__(self, cluster: Cluster, topic: str, start: int, per_tick: int = 5, **conf):
        self.d = Deliveries()
        self.topic = topic
        self.next = start
        self.first = start
        self.per_tick = per_tick
        self.cluster = cluster
        self.p = make_producer(cluster.bootstrap, self.d, **conf)

    def tick(self):
        send(self.p, self.d, self.topic, range(self.next, self.next + self.per_tick))
        self.next += self.per_tick
        self.p.poll(0)

    @property
    def indexes(self):
        return range(self.first, self.next)

    def finish(self, timeout: float = 60):
        left = self.p.flush(timeout)
        assert left == 0, f"trickle: {left} records undelivered after {timeout}s"


def wait_with_load(c: Cluster, trickle: Trickle, fn, timeout: float, what: str):
    """c.wait_until(fn) while trickle keeps producing."""
    def step():
        trickle.tick()
        return fn()
    return c.wait_until(step, timeout, what)


def wait_replicas_identical(c: Cluster, topic: str, partition: int = 0, nodes=None,
                            timeout: float = 30) -> int:
    """Until every node in `nodes` (default all) holds byte-identical batches for all offsets
    below the high watermark and nothing beyond it (the load has stopped, so followers must
    converge on the leader). Returns the high watermark."""
    ids = list(nodes) if nodes is not None else c.ids()
    last = {}

    def same():
        hw = kc.watermarks(c.live_bootstrap(), topic, partition)[1]
        probs = c.compare_replica_logs(topic, partition, hw, nodes=ids)
        for i in ids:
            beyond = [b for b in c.partition_log_batches(i, topic, partition)
                      if b.last_offset >= hw]
            if beyond:
                probs.append(f"node {i}: {len(beyond)} batches at or beyond the high "
                             f"watermark {hw} (first at {beyond[0].base_offset})")
        last["hw"], last["problems"] = hw, probs
        return hw if not probs else None
    try:
        return c.wait_until(same, timeout, "replica logs identical", interval=0.5)
    except AssertionError:
        raise AssertionError(f"replica logs of {topic}/{partition} on nodes {ids} differ "
                             f"(high watermark {last.get('hw')}):\n  "
                             + "\n  ".join(last.get("problems") or ["(no comparison made)"]))


def pick_non_leader(c: Cluster, st) -> int:
    """A replica that is not the partition leader, preferably not the controller either."""
    followers = [r for r in st.replicas if r != st.leader]
    assert followers, f"no follower in {st}"
    ctrl = c.controller_id()
    neither = [r for r in followers if r != ctrl]
    return (neither or followers)[0]


# ----------------------------------------------------------------------------- (a) load

@pytest.mark.timeout(600)
def test_leader_sigkill_under_acks_all_load_loses_nothing(cluster_factory, topic_name):
    """RF=3, min.insync.replicas=2, acks=all, unlimited retries, one request in flight:
    SIGKILL the partition leader 3 times during a 100k-record produce, restarting it each
    time (once after the session timeout, once before it, once in between) and waiting
    for it to rejoin the ISR before the next kill. Every acknowledged record is read back,
    in order, at its acked offset, from the final leader; all three replicas hold
    byte-identical logs up to the high watermark."""
    seed = int(os.environ.get("ARCTERN_REPL_SEED", str(random.randrange(1 << 30))))
    print(f"\nreplication seed: ARCTERN_REPL_SEED={seed}")
    rnd = random.Random(seed)
    c = cluster_factory(3)
    topic = topic_name
    c.create_topic(topic, rf=3, config={"min.insync.replicas": 2})

    down_for = [4.5, 0.5, 2.0]          # seconds from SIGKILL to restart (session: 3 s)
    kill_points = [int(N_LOAD * f) + rnd.randrange(N_LOAD // 20)
                   for f in (0.08, 0.30, 0.52)]
    max_outstanding = max(1000, N_LOAD // 20)
    trickle_per_iter = 10               # records per ~10 ms while a kill cycle is running

    d = Deliveries()
    p = make_producer(c.bootstrap, d)
    snapshots: list[set] = []
    kills: list[dict] = []
    pending = None                      # (node, restart_at) while the killed node is down
    waiting_isr_since = None            # restarted, waiting for the full ISR
    next_isr_check = 0.0
    sent = 0
    t0 = time.monotonic()
    deadline = t0 + 420
    while d.done < N_LOAD:
        now = time.monotonic()
        in_cycle = pending is not None or (kill_points and len(d.acked) >= kill_points[0])
        outstanding = sent - d.done
        if in_cycle:
            n = min(trickle_per_iter, N_LOAD - sent) if outstanding < 2000 else 0
        else:
            n = min(500, N_LOAD - sent) if outstanding < max_outstanding else 0
        if n > 0:
            send(p, d, topic, range(sent, sent + n))
            sent += n
        p.poll(0.01 if in_cycle else (0 if n > 0 else 0.002))

        if pending is not None and now >= pending[1]:
            node = pending[0]
            node.start(timeout=60)
            kills[-1]["restarted_after_s"] = round(time.monotonic() - kills[-1]["t"], 1)
            pending = None
            waiting_isr_since = time.monotonic()
        elif pending is None and kill_points and len(d.acked) >= kill_points[0] \
                and now >= next_isr_check:
            next_isr_check = now + 0.5
            try:
                st = c.agreed_state(topic, 0)
            except OSError:
                st = None
            if st is not None and st.leader >= 0 and len(st.replicas) == 3 \
                    and set(st.isr) == set(st.replicas):
                if waiting_isr_since is not None:
                    kills[-1]["isr_full_after_restart_s"] = round(now - waiting_isr_since, 1)
                    waiting_isr_since = None
                kill_points.pop(0)
                snapshots.append(set(d.acked))
                victim = c.node(st.leader)
                kills.append({"node": st.leader, "acked": len(d.acked),
                              "unacked": sent - d.done, "t": time.monotonic(),
                              "controller_before": st.controller})
                victim.kill()
                pending = (victim, time.monotonic() + down_for[len(kills) - 1])
            elif waiting_isr_since is not None and now - waiting_isr_since > 90:
                raise AssertionError(f"restarted node {kills[-1]['node']} did not rejoin the "
                                     f"ISR within 90 s; now: {st}")
        assert time.monotonic() < deadline, \
            f"producer stuck: {len(d.acked)} acked, {len(d.failed)} failed of {N_LOAD}; " \
            f"kills so far {kills}"
    assert p.flush(60) == 0
    elapsed = time.monotonic() - t0
    assert len(kills) == 3, \
        f"the load ended after only {len(kills)} kills (the restarted node took too long to " \
        f"rejoin the ISR?): {kills}"

    final = c.wait_isr(topic, 0, timeout=60)
    check = acklog.check_topic(c.bootstrap, topic, 1, d.acked, range(N_LOAD), wait_hw=WAIT_HW,
                               acked_early=snapshots[0], check_order=True, failed=d.failed)
    report = dict(check.report)
    report.update(produce_seconds=round(elapsed, 1), final_leader=final.leader,
                  kills=[{k: v for k, v in x.items() if k != "t"} for x in kills],
                  client_errors=len(d.errors))
    print(f"replication load report: {report}")
    assert not d.failed, f"{len(d.failed)} deliveries failed: {d.codes()}"
    assert len(d.acked) == N_LOAD
    check.assert_ok()
    hw = wait_replicas_identical(c, topic, 0)
    assert hw == check.partitions[0].high_watermark


# ----------------------------------------------------------------------------- (b) 2 of 3 down

@pytest.mark.timeout(300)
def test_two_of_three_down_acks_all_refused_acks_1_accepted(cluster_factory, topic_name):
    """RF=3, min.insync.replicas=2. Both followers SIGKILLed (which also takes the metadata
    quorum): once they are past replica.lag.time.max.ms every acks=all produce fails with
    NOT_ENOUGH_REPLICAS (or ..._AFTER_APPEND) and none is acknowledged; acks=1 is still
    accepted (the documented trade-off). After the two come back, the acks=1 records are
    there, the refused (NOT_ENOUGH_REPLICAS, never appended) ones are not, and acks=all
    works again."""
    c = cluster_factory(3)
    topic = topic_name
    st = c.create_topic(topic, rf=3, config={"min.insync.replicas": 2})[0]
    d = Deliveries()
    p = make_producer(c.bootstrap, d)
    base = range(0, 200)
    send_all(p, d, topic, base)
    assert not d.failed

    leader = st.leader
    followers = st.followers
    for f in followers:
        c.node(f).kill()
    t_down = time.monotonic()

    # retries=0, so each delivery report carries the broker's error code as is
    dn = Deliveries()
    pn = make_producer(c.node(leader).bootstrap, dn, retries=0, **{
        "request.timeout.ms": 5000, "message.timeout.ms": 20000, "linger.ms": 0})
    probe = iter(range(10_000, 11_000))

    def refused():
        i = next(probe)
        send_all(pn, dn, topic, [i], timeout=30)
        assert i not in dn.acked, \
            f"acks=all record {i} ACKNOWLEDGED with both followers down " \
            f"{time.monotonic() - t_down:.1f}s ago"
        return dn.failed[i].code() in NER_CODES
    c.wait_until(refused, 30, "acks=all refused with NOT_ENOUGH_REPLICAS", interval=0.5)
    print(f"\nacks=all refused {time.monotonic() - t_down:.1f}s after the followers died; "
          f"probe errors: {dn.codes()}")

    ner = range(20_000, 20_100)
    send_all(pn, dn, topic, ner, timeout=60)
    acked_ner = [i for i in ner if i in dn.acked]
    assert not acked_ner, f"{len(acked_ner)} acks=all records acknowledged with 2 of 3 down"
    codes = {i: dn.failed[i].code() for i in ner}
    bad = {i: dn.failed[i].name() for i, code in codes.items() if code not in NER_CODES}
    assert not bad, f"acks=all failed with other errors than NOT_ENOUGH_REPLICAS: {bad}"

    d1 = Deliveries()
    p1 = make_producer(c.node(leader).bootstrap, d1, acks="1")
    ones = range(30_000, 30_100)
    send_all(p1, d1, topic, ones)
    assert not d1.failed, f"acks=1 failed with 2 of 3 down: {d1.codes()}"
    assert offsets_of(d1, ones) == sorted(offsets_of(d1, ones))

    for f in followers:
        c.node(f).start()
    c.wait_ready(timeout=60)
    c.wait_isr(topic, 0, timeout=60)
    after = range(40_000, 40_100)
    send_all(p, d, topic, after)
    assert not d.failed, f"acks=all after recovery failed: {d.codes()}"

    acked = dict(d.acked)
    acked.update(d1.acked)
    sent = set(base) | set(range(10_000, next(probe))) | set(ner) | set(ones) | set(after)
    lo, hi, recs = acklog.read_partition(c.bootstrap, topic, 0, wait_for=top_offset(acked) + 1,
                                         wait_timeout=WAIT_HW)
    check = acklog.check_partition(recs, 0, acked, sent, log_start=lo, high_watermark=hi)
    assert not check.problems, check.problems
    present = {acklog.index_of(r.value) for r in recs}
    never_appended = [i for i, code in codes.items() if code == NOT_ENOUGH_REPLICAS]
    stored = [i for i in never_appended if i in present]
    assert not stored, f"records refused with NOT_ENOUGH_REPLICAS are in the log: {stored[:5]}"
    wait_replicas_identical(c, topic, 0)


# ----------------------------------------------------------------------------- (c) ISR

@pytest.mark.timeout(300)
@pytest.mark.parametrize("session_ms", [
    pytest.param(30000, id="lag-only"),        # the paused node stays registered
    pytest.param(3000, id="also-fenced"),      # it is also fenced by the controller
])
def test_paused_follower_leaves_isr_and_rejoins(cluster_factory, topic_name, session_ms):
    """A follower SIGSTOPped past replica.lag.time.max.ms leaves the ISR (not before the lag
    time), stays a replica, acks=all with min.insync.replicas=2 keeps working, and after
    SIGCONT the follower catches up and rejoins the ISR. The paused node is neither the
    partition leader nor (if possible) the controller."""
    c = cluster_factory(3, config={"broker.session.timeout.ms": session_ms})
    topic = topic_name
    st = c.create_topic(topic, rf=3, config={"min.insync.replicas": 2})[0]
    d = Deliveries()
    p = make_producer(c.bootstrap, d)
    send_all(p, d, topic, range(0, 1000))
    victim = pick_non_leader(c, st)
    others = set(st.replicas) - {victim}

    tr = Trickle(c, topic, 100_000)
    c.node(victim).pause()
    t_pause = time.monotonic()
    shrunk = wait_with_load(
        c, tr, lambda: (lambda s: s if s and set(s.isr) == others else None)(
            c.agreed_state(topic, 0)),
        LAG_MS / 1000 + 20, f"node {victim} out of the ISR")
    t_out = time.monotonic() - t_pause
    assert victim in shrunk.replicas, f"paused node {victim} dropped from replicas: {shrunk}"
    assert t_out >= LAG_MS / 1000 - 1.0, \
        f"node {victim} left the ISR {t_out:.1f}s after the pause, before the lag time"
    # acks=all (min.insync 2) still completes with the 2-member ISR
    mid = range(200_000, 200_200)
    send_all(p, d, topic, mid, timeout=30)
    assert not d.failed, d.codes()

    c.node(victim).resume()
    t_resume = time.monotonic()
    wait_with_load(c, tr, lambda: (lambda s: s if s and set(s.isr) == set(s.replicas)
                                   else None)(c.agreed_state(topic, 0)),
                   40, f"node {victim} back in the ISR")
    t_in = time.monotonic() - t_resume
    tr.finish()
    print(f"\nnode {victim}: out of ISR {t_out:.1f}s after SIGSTOP, back {t_in:.1f}s after "
          f"SIGCONT; trickle {len(tr.d.acked)} acked")
    assert not tr.d.failed, f"trickle deliveries failed: {tr.d.codes()}"
    acked = dict(d.acked)
    acked.update(tr.d.acked)
    sent = set(range(0, 1000)) | set(mid) | set(tr.indexes)
    check = acklog.check_topic(c.bootstrap, topic, 1, acked, sent, check_order=False,
                               wait_hw=WAIT_HW)
    check.assert_ok()
    wait_replicas_identical(c, topic, 0)


# ----------------------------------------------------------------------------- (d) divergence

@pytest.mark.timeout(300)
def test_deposed_leader_truncates_unreplicated_tail(cluster_factory, topic_name):
    """The divergent-log case. Both followers paused; the leader takes 200 acks=1 records
    only it has; it is SIGKILLed; the followers resume and elect a new leader, which takes
    500 acks=all records at the same offsets. The old leader restarts: it must truncate its
    un-replicated tail (by leader epoch) before fetching, so all three replicas end up
    byte-identical and the acks=1 records are gone from every node's files."""
    c = cluster_factory(3)
    topic = topic_name
    st = c.create_topic(topic, rf=3, config={"min.insync.replicas": 2})[0]
    d = Deliveries()
    p = make_producer(c.bootstrap, d)
    base = range(0, 1000)
    send_all(p, d, topic, base)
    n0 = len(base)
    assert offsets_of(d, base) == list(range(n0))
    c.wait_isr(topic, 0)
    old = st.leader
    followers = st.followers

    for f in followers:
        c.node(f).pause()
    time.sleep(PENDING_FETCH_S)
    dd = Deliveries()
    pd = make_producer(c.node(old).bootstrap, dd, acks="1")
    divergent = range(1_000_000, 1_000_200)
    send_all(pd, dd, topic, divergent, timeout=20)
    assert not dd.failed, f"acks=1 to the leader failed: {dd.codes()}"
    assert offsets_of(dd, divergent) == list(range(n0, n0 + len(divergent)))
    c.node(old).kill()
    for f in followers:
        c.node(f).resume()
    assert c.log_contains(old, topic, 0, acklog.value_of(divergent[-1])), \
        "setup: the old leader's files do not hold the acks=1 records"

    new = c.wait_leader(topic, 0, not_in={old}, timeout=40)
    got = [f for f in followers if c.log_contains(f, topic, 0, acklog.value_of(divergent[0]))]
    assert not got, f"setup: followers {got} received the acks=1 records while paused"
    after = range(2_000_000, 2_000_500)
    send_all(p, d, topic, after, timeout=60)
    assert not d.failed, d.codes()
    assert offsets_of(d, after) == list(range(n0, n0 + len(after))), \
        "the new leader did not continue at the old high watermark"

    c.node(old).start()
    c.wait_ready(timeout=60)
    c.wait_isr(topic, 0, timeout=60)
    hw = wait_replicas_identical(c, topic, 0)
    assert hw == n0 + len(after)
    still = [i for i in divergent if c.log_contains(old, topic, 0, acklog.value_of(i))]
    assert not still, f"old leader {old} still holds {len(still)} un-replicated records"

    acked = dict(d.acked)
    sent = set(base) | set(divergent) | set(after)
    lo, hi, recs = acklog.read_partition(c.bootstrap, topic, 0, wait_for=top_offset(acked) + 1,
                                         wait_timeout=WAIT_HW)
    check = acklog.check_partition(recs, 0, acked, sent, log_start=lo, high_watermark=hi)
    assert not check.problems, check.problems
    assert [acklog.index_of(r.value) for r in recs] == list(base) + list(after)
    print(f"\nold leader {old}, new leader {new.leader}; truncated {len(divergent)} records")

    # if the old leader is the preferred replica it gets leadership back: read through it
    if new.replicas and new.replicas[0] == old:
        c.wait_leader(topic, 0, leader=old, timeout=30)
        recs2 = kc.consume_confluent(c.bootstrap, topic, 0, n=None)
        assert [acklog.index_of(r.value) for r in recs2] == list(base) + list(after)


# ----------------------------------------------------------------------------- (d2) KIP-101

@pytest.mark.timeout(300)
def test_restarted_follower_does_not_truncate_to_its_high_watermark(cluster_factory,
                                                                    topic_name):
    """KIP-101's scenario. RF=2 (leader A, follower B) on 3 nodes, min.insync.replicas=2,
    acks=all under load. Right after an acknowledgement, B is SIGKILLed and A SIGSTOPped
    at once, and B restarts immediately: B's log holds every acknowledged record, but its
    high watermark lags (it learns the HW only from its next fetch). A follower that
    truncated to its local HW on restart would now drop acknowledged records; then A is
    fenced (session timeout) and B, still in the ISR, may be elected. If it is, it must
    serve every acknowledged record. (A controller may instead keep the partition leaderless
    until A returns, as KRaft does for a broker that re-registered; then nothing may be lost
    either.) Finally A resumes, truncates to B's log if needed, rejoins, and the replicas
    agree."""
    c = cluster_factory(3)
    topic = topic_name
    st = c.create_topic(topic, rf=2, config={"min.insync.replicas": 2})[0]
    a = st.leader
    b = next(r for r in st.replicas if r != a)
    d = Deliveries()
    p = make_producer(c.bootstrap, d)
    sent = 0
    n_total = 20_000
    end = time.monotonic() + 60
    while len(d.acked) < 3000:
        if sent - d.done < 2000:
            send(p, d, topic, range(sent, sent + 200))
            sent += 200
        p.poll(0.001)
        assert time.monotonic() < end, "load stalled before the kill"
    acked_at_kill = set(d.acked)
    c.node(b).kill()
    c.node(a).pause()
    t0 = time.monotonic()
    c.node(b).start()
    try:
        elected = c.wait_leader(topic, 0, leader=b, timeout=10)
    except AssertionError:
        elected = None
    outcome = f"node {b} elected after {time.monotonic() - t0:.1f}s" if elected else \
        f"no leader while {a} was paused"
    if elected:
        acked_now = {i: v for i, v in d.acked.items() if i in acked_at_kill}
        lo, hi, recs = acklog.read_partition(c.live_bootstrap(), topic, 0,
                                             wait_for=top_offset(acked_now) + 1,
                                             wait_timeout=WAIT_HW)
        check = acklog.check_partition(recs, 0, acked_now, range(sent), log_start=lo,
                                       high_watermark=hi)
        assert not check.problems, \
            f"after {b} restarted and was elected: {check.problems}"
    c.node(a).resume()
    c.wait_leader(topic, 0, timeout=40)
    while sent < n_total:
        send(p, d, topic, range(sent, min(n_total, sent + 500)))
        sent = min(n_total, sent + 500)
        p.poll(0.01)
    assert p.flush(90) == 0
    print(f"\n{outcome}; acked {len(d.acked)}, failed {len(d.failed)}")
    assert not d.failed, d.codes()
    check = acklog.check_topic(c.bootstrap, topic, 1, d.acked, range(n_total), wait_hw=WAIT_HW,
                               acked_early=acked_at_kill)
    check.assert_ok()
    c.wait_isr(topic, 0, timeout=60)
    wait_replicas_identical(c, topic, 0, nodes=[a, b])


@pytest.mark.timeout(300)
def test_follower_of_new_leader_truncates_by_epoch_not_high_watermark(cluster_factory,
                                                                     topic_name):
    """KIP-101 through a leader change. RF=3 (A leader, B, C), min.insync.replicas=2, acks=all
    under load. A is SIGKILLed right after an acknowledgement; as soon as B is elected, B is
    SIGSTOPped (and A restarted, so the metadata quorum has two nodes). C, following B now,
    cannot reach it: a follower that truncated to its local high watermark on the leader
    change (rather than asking the leader for its epoch's end offset) would drop
    acknowledged records it holds beyond its lagging HW. B's session then expires and C,
    the last ISR member, is elected: it must serve every acknowledged record. Then B
    resumes and everything converges."""
    c = cluster_factory(3)
    topic = topic_name
    st = c.create_topic(topic, rf=3, config={"min.insync.replicas": 2})[0]
    a = st.leader
    d = Deliveries()
    p = make_producer(c.bootstrap, d)
    sent, n_total = 0, 20_000
    end = time.monotonic() + 60
    while len(d.acked) < 3000:
        if sent - d.done < 2000:
            send(p, d, topic, range(sent, sent + 200))
            sent += 200
        p.poll(0.001)
        assert time.monotonic() < end, "load stalled before the kill"
    c.node(a).kill()
    acked_at_kill = dict(d.acked)
    new = c.wait_leader(topic, 0, not_in={a}, timeout=30, agreed=False)
    b = new.leader
    c.node(b).pause()
    cc = next(r for r in st.replicas if r not in (a, b))
    c.node(a).start()
    p.poll(0)
    elected = c.wait_leader(topic, 0, leader=cc, timeout=40)
    lo, hi, recs = acklog.read_partition(c.live_bootstrap(), topic, 0,
                                         wait_for=top_offset(acked_at_kill) + 1,
                                         wait_timeout=WAIT_HW)
    check = acklog.check_partition(recs, 0, acked_at_kill, range(sent), log_start=lo,
                                   high_watermark=hi)
    assert not check.problems, \
        f"node {cc} elected after {a} died and {b} was paused: {check.problems}"
    c.node(b).resume()
    # B wakes up believing it still leads (epoch e+1, stale metadata) until it catches up
    # with the quorum; a client asking B meanwhile would read B's stale log. Wait until
    # every live node agrees (see /tmp/repl-test-findings.md, "stale deposed leader").
    t_resume = time.monotonic()
    settled = c.wait_leader(topic, 0, timeout=30)
    print(f"\nafter SIGCONT, node {b} agreed with the others after "
          f"{time.monotonic() - t_resume:.1f}s: {settled}")
    while sent < n_total:
        send(p, d, topic, range(sent, min(n_total, sent + 500)))
        sent = min(n_total, sent + 500)
        p.poll(0.01)
    assert p.flush(90) == 0
    c.wait_leader(topic, 0, timeout=30)
    print(f"A={a} killed, B={b} elected then paused, C={cc} elected: {elected}; "
          f"acked {len(d.acked)}, failed {len(d.failed)}")
    assert not d.failed, d.codes()
    check = acklog.check_topic(c.bootstrap, topic, 1, d.acked, range(n_total), wait_hw=WAIT_HW,
                               acked_early=set(acked_at_kill))
    check.assert_ok()
    c.wait_isr(topic, 0, timeout=60)
    wait_replicas_identical(c, topic, 0)


# ----------------------------------------------------------------------------- (e) control

@pytest.mark.timeout(300)
@pytest.mark.parametrize("unclean", [pytest.param(True, id="unclean-on"),
                                     pytest.param(False, id="unclean-off")])
def test_unclean_election_negative_control(cluster_factory, topic_name, unclean):
    """Negative control. RF=2 on a 3-node cluster (the metadata quorum survives one death),
    min.insync.replicas=1. The follower is paused until it leaves the ISR; records are
    acknowledged by the leader alone; the leader is SIGKILLed and the follower resumed.
      unclean on : the out-of-sync follower is elected and the SAME checker as the other
                   tests reports the acknowledged records as lost (proving it can see a loss);
      unclean off: the partition stays leaderless (never the out-of-sync replica) until the
                   old leader returns, and nothing acknowledged is lost."""
    c = cluster_factory(3)
    topic = topic_name
    cfg = {"min.insync.replicas": 1, "unclean.leader.election.enable": str(unclean).lower()}
    st = c.create_topic(topic, rf=2, config=cfg)[0]
    assert len(st.replicas) == 2, st
    a = st.leader
    b = next(r for r in st.replicas if r != a)

    d = Deliveries()
    p = make_producer(c.bootstrap, d)
    base = range(0, 500)
    send_all(p, d, topic, base)
    c.wait_isr(topic, 0)

    c.node(b).pause()
    time.sleep(PENDING_FETCH_S)
    tr = Trickle(c, topic, 100_000)
    wait_with_load(c, tr, lambda: (lambda s: s if s and set(s.isr) == {a} else None)(
        c.agreed_state(topic, 0)), LAG_MS / 1000 + 20, f"node {b} out of the ISR")
    tr.finish(30)
    only_a = range(200_000, 200_300)
    send_all(p, d, topic, only_a, timeout=30)
    assert not d.failed and not tr.d.failed, (d.codes(), tr.d.codes())
    acked = dict(d.acked)
    acked.update(tr.d.acked)
    sent = set(base) | set(tr.indexes) | set(only_a)
    acked_on_a_only = sorted(set(acked) - set(base))
    assert acked_on_a_only, "setup: nothing was acknowledged by the leader alone"

    c.node(a).kill()
    c.node(b).resume()
    if unclean:
        new = c.wait_leader(topic, 0, leader=b, timeout=40)
        print(f"\nunclean election: out-of-sync node {b} is leader: {new}")
        check = acklog.check_topic(c.live_bootstrap(), topic, 1, acked, sent, wait_hw=3)
        print(f"negative control: checker report {check.report}; problems: {check.problems}")
        assert not check.ok, "the checker did not detect the loss after an unclean election"
        # the records acked after the ISR shrank to {a} are certainly lost; trickle records
        # from just before may or may not have reached b
        assert set(only_a) <= set(check.lost) <= set(acked_on_a_only), \
            f"expected the records acknowledged by the old leader alone ({len(only_a)} to " \
            f"{len(acked_on_a_only)}) to be reported lost, got {len(check.lost)}: " \
            f"{check.lost[:5]}..."
    else:
        seen_leaders = set()
        t_end = time.monotonic() + 2 * 3.0 + 4

        while time.monotonic() < t_end:
            for nd in c.live_nodes():
                try:
                    v = c.node_view(nd.node_id, topic, 0)
                except OSError:
                    continue
                if v is not None:
                    seen_leaders.add(v.leader)
                    assert v.leader != b, f"out-of-sync node {b} elected with unclean " \
                                          f"election disabled: {v}"
            time.sleep(0.2)
        st2 = c.wait_partition(topic, 0, lambda s: s.leader == -1, 10,
                               "leaderless partition", agreed=True)
        print(f"\nleaders seen while {a} was down: {sorted(seen_leaders)}; now {st2}")
        c.node(a).start()
        c.wait_leader(topic, 0, leader=a, timeout=40)
        check = acklog.check_topic(c.bootstrap, topic, 1, acked, sent, wait_hw=WAIT_HW)
        check.assert_ok()
        c.wait_isr(topic, 0, timeout=60)
        wait_replicas_identical(c, topic, 0, nodes=[a, b])


# ----------------------------------------------------------------------------- (f) shutdown

@pytest.mark.timeout(300)
def test_controlled_shutdown_moves_leadership_and_preferred_leader_returns(
        cluster_factory, topic_name):
    """SIGTERM to the partition leader under an acks=all load: leadership moves to another
    replica before the process exits (the session timeout is 10 s here, so only a
    controlled shutdown can move it that fast), exit code 0, no delivery fails. The node
    restarts, catches up, rejoins the ISR, and becomes leader again as the preferred
    replica (leader.imbalance.check.interval.seconds=3)."""
    c = cluster_factory(3, config={"broker.session.timeout.ms": 10000})
    topic = topic_name
    st = c.create_topic(topic, rf=3, config={"min.insync.replicas": 2})[0]
    pref = st.replicas[0]
    st = c.wait_leader(topic, 0, leader=pref, timeout=30)
    d = Deliveries()
    p = make_producer(c.bootstrap, d)
    n_total = 30_000
    sent = 0

    def step():
        """One non-blocking step of the load: top up to 1000 outstanding, serve reports."""
        nonlocal sent
        if sent - d.done < 1000 and sent < n_total:
            send(p, d, topic, range(sent, min(n_total, sent + 100)))
            sent = min(n_total, sent + 100)
        p.poll(0.005)

    def pump(more: int, timeout: float = 60):
        """Run the load until `more` further records are acknowledged (or all are done)."""
        until = len(d.acked) + more
        end = time.monotonic() + timeout
        while len(d.acked) < until and d.done < n_total:
            step()
            assert time.monotonic() < end, f"load stalled at {len(d.acked)} acked"

    def moved() -> bool:
        """Every other live node shows a leader that is not the stopping node."""
        views = []
        for o in c.live_nodes():
            if o is node:
                continue
            try:
                views.append(c.node_view(o.node_id, topic, 0))
            except OSError:
                return False
        return bool(views) and all(v is not None and v.leader not in (-1, pref)
                                   for v in views)

    pump(5000)
    node = c.node(pref)
    node.terminate()
    t_term = time.monotonic()
    moved_at = None
    next_look = 0.0
    while node.running():
        step()
        if moved_at is None and time.monotonic() >= next_look:
            next_look = time.monotonic() + 0.1
            if moved():
                moved_at = time.monotonic() - t_term
        assert time.monotonic() - t_term < 30, "node did not exit within 30 s of SIGTERM"
    exited_at = time.monotonic() - t_term
    rc = node.wait_exit(5)
    while moved_at is None and time.monotonic() - t_term < exited_at + 15:
        step()
        if moved():
            moved_at = time.monotonic() - t_term
    st2 = c.agreed_state(topic, 0)
    print(f"\nSIGTERM to leader {pref}: exited after {exited_at:.2f}s (rc {rc}), leadership "
          f"seen moved after {moved_at}s: {st2}")
    assert rc == 0, f"controlled shutdown exit code {rc}"
    assert moved_at is not None, "leadership did not move within 15 s of the exit"
    assert moved_at <= exited_at + 1.0, \
        f"leadership moved {moved_at:.1f}s after SIGTERM but the node exited after " \
        f"{exited_at:.1f}s: not a controlled shutdown"

    pump(5000)
    node.start()
    t_start = time.monotonic()
    c.wait_ready(timeout=60)
    pump(1000)
    c.wait_isr(topic, 0, timeout=60)
    t_isr = time.monotonic() - t_start
    c.wait_leader(topic, 0, leader=pref, timeout=30)
    t_pref = time.monotonic() - t_start
    pump(n_total, timeout=120)
    assert p.flush(60) == 0
    print(f"restarted node {pref}: back in the ISR after {t_isr:.1f}s, preferred leader again "
          f"after {t_pref:.1f}s")
    assert not d.failed, f"deliveries failed: {d.codes()}"
    check = acklog.check_topic(c.bootstrap, topic, 1, d.acked, range(n_total),
                               wait_hw=WAIT_HW)
    check.assert_ok()
    wait_replicas_identical(c, topic, 0)


# ----------------------------------------------------------------------------- (g) kafka-python

@pytest.mark.timeout(300)
def test_kafka_python_through_leader_changes(cluster_factory, topic_name):
    """kafka-python with its ordinary retry settings: a producer keeps going through a
    SIGKILL of the leader, a consumer keeps going through a SIGTERM of the next leader."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    c = cluster_factory(3)
    topic = topic_name
    st = c.create_topic(topic, rf=3, config={"min.insync.replicas": 2})[0]
    prod = KafkaProducer(bootstrap_servers=c.bootstrap, acks="all", enable_idempotence=False,
                         retries=2147483647, max_in_flight_requests_per_connection=1,
                         linger_ms=5, request_timeout_ms=10000, retry_backoff_ms=100,
                         delivery_timeout_ms=120000)
    n = 3000
    futs = []
    first_leader = st.leader
    try:
        for i in range(n):
            futs.append(prod.send(topic, value=acklog.value_of(i), partition=0))
            if i == n // 3:
                prod.flush(30)
                c.node(first_leader).kill()
            if i % 100 == 0:
                time.sleep(0.01)
        prod.flush(120)
        offsets = [f.get(timeout=60).offset for f in futs]
    finally:
        prod.close(timeout=10)
    assert offsets[: n // 3 + 1] == list(range(n // 3 + 1))
    acked = {i: (0, o) for i, o in enumerate(offsets)}
    c.node(first_leader).start()
    c.wait_ready(timeout=60)
    st2 = c.wait_isr(topic, 0, timeout=60)

    hw = kc.watermarks(c.bootstrap, topic, 0)[1]
    assert hw >= n
    cons = KafkaConsumer(bootstrap_servers=c.bootstrap, group_id=None,
                         enable_auto_commit=False, auto_offset_reset="earliest",
                         fetch_max_wait_ms=100, request_timeout_ms=10000,
                         max_poll_records=200, retry_backoff_ms=100)
    tp = TopicPartition(topic, 0)
    recs = []
    stopped, stopper = None, None
    try:
        cons.assign([tp])
        cons.seek_to_beginning(tp)
        end = time.monotonic() + 120
        while not recs or recs[-1].offset < hw - 1:
            if stopped is None and len(recs) >= 1000:
                stopped = c.wait_leader(topic, 0, timeout=10).leader
                stopper = threading.Thread(target=c.node(stopped).stop, daemon=True)
                stopper.start()
            for batch in cons.poll(timeout_ms=500).values():
                for r in batch:
                    recs.append(kc.Rec(r.partition, r.offset, r.key, r.value, [],
                                       r.timestamp, None))
            assert time.monotonic() < end, f"kafka-python consumer stuck at {len(recs)} " \
                                           f"records (high watermark {hw})"
    finally:
        cons.close()
        if stopper is not None:
            stopper.join(30)
    assert stopped is not None
    check = acklog.check_partition(recs, 0, acked, range(n), high_watermark=hw,
                                   acked_early=set(range(n // 3)))
    assert not check.problems, check.problems
    print(f"\nkafka-python: produced {n} through SIGKILL of {first_leader}; consumed "
          f"{len(recs)} through SIGTERM of {stopped} (ISR before: {st2.isr})")


# ----------------------------------------------------------------------------- basics

@pytest.mark.timeout(180)
def test_cluster_metadata_placement_not_leader_and_status(cluster_factory, topic_name):
    """node.id / controller.quorum.voters from the TOML file; Metadata lists the three
    brokers at their addresses and a controller; default.replication.factor spreads 3
    replicas over the nodes; RF 4 is INVALID_REPLICATION_FACTOR; produce and fetch to a
    follower get NOT_LEADER_OR_FOLLOWER; every node gives the same partition state; and
    `arctern cluster status` (text and --json) shows the same."""
    c = cluster_factory(3, config={"default.replication.factor": 3}, via_toml=True)
    md = c.metadata()
    assert sorted(md.brokers) == [1, 2, 3]
    for i, b in md.brokers.items():
        assert (b.host, b.port) == ("127.0.0.1", c.node(i).port), b
    assert md.controller_id in (1, 2, 3)

    topic = topic_name
    from confluent_kafka.admin import AdminClient, NewTopic
    adm = AdminClient({"bootstrap.servers": c.bootstrap, "log_level": 0})
    adm.create_topics([NewTopic(topic, num_partitions=3, replication_factor=-1)])[topic] \
        .result(30)
    states = [c.wait_isr(topic, p, timeout=30) for p in range(3)]
    for s in states:
        assert len(s.replicas) == 3 and sorted(s.replicas) == [1, 2, 3], s
        assert s.leader in s.replicas
    assert len({s.replicas[0] for s in states}) > 1, \
        f"preferred leaders not spread: {[s.replicas for s in states]}"

    bad = f"{topic}-rf4"
    fs = adm.create_topics([NewTopic(bad, num_partitions=1, replication_factor=4)])
    with pytest.raises(Exception) as ei:
        fs[bad].result(30)
    assert ei.value.args[0].code() == INVALID_REPLICATION_FACTOR, ei.value

    st = c.wait_isr(topic, 0, timeout=30)
    follower = st.followers[0]
    batch = kwire.record_batch([(b"k", b"v", [])], base_ts=kc.now_ms())
    with kwire.Conn(c.node(follower).bootstrap) as conn:
        r = kwire.parse_produce_v3(conn.roundtrip(kwire.produce_v3(1, topic, 0, batch)))
        assert r["partitions"][(topic, 0)]["error_code"] == NOT_LEADER_OR_FOLLOWER, r
        f = kwire.parse_fetch_v4(conn.roundtrip(kwire.fetch_v4(2, topic, 0, 0)))
        assert f["partitions"][(topic, 0)]["error_code"] == NOT_LEADER_OR_FOLLOWER, f
    with kwire.Conn(c.node(st.leader).bootstrap) as conn:
        r = kwire.parse_produce_v3(conn.roundtrip(kwire.produce_v3(3, topic, 0, batch)))
        assert r["partitions"][(topic, 0)]["error_code"] == 0, r

    agreed = c.wait_partition(topic, 0, lambda s: True, 10, "all nodes agree")
    assert (agreed.replicas, sorted(agreed.isr)) == (st.replicas, sorted(st.isr))

    # arctern cluster status
    out = subprocess.run([str(arctern_bin()), "cluster", "status", "--bootstrap-server",
                          c.node(1).bootstrap, "--json"], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    js = json.loads(out.stdout)
    assert js["controller_id"] in (1, 2, 3)
    assert sorted(b["node_id"] for b in js["brokers"]) == [1, 2, 3]
    for b in js["brokers"]:
        assert (b["host"], b["port"]) == ("127.0.0.1", c.node(b["node_id"]).port), b
    t = next(x for x in js["topics"] if x["name"] == topic)
    by_p = {x["partition"]: x for x in t["partitions"]}
    for p, s in enumerate(states):
        now = c.agreed_state(topic, p)
        x = by_p[p]
        assert (x["leader"], x["replicas"], sorted(x["isr"])) == \
            (now.leader, now.replicas, sorted(now.isr)), (x, now)
        assert isinstance(x["leader_epoch"], int) and x["leader_epoch"] >= 0
    txt = subprocess.run([str(arctern_bin()), "cluster", "status", "--bootstrap-server",
                          c.node(2).bootstrap], capture_output=True, timeout=30)
    assert txt.returncode == 0, txt.stderr.decode(errors="replace")
    assert topic in txt.stdout.decode()
