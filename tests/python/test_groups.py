"""Consumer groups end to end: real `arctern serve` processes and real clients
(confluent-kafka / librdkafka, kafka-python, aiokafka) using Kafka's group coordinator APIs
(FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch,
ListGroups, DescribeGroups, DeleteGroups, OffsetDelete) and committed offsets kept in the
internal topic `__consumer_offsets`.

Every assertion is what Kafka documents, so these tests pass against Apache Kafka too:
  * process, then commit (manual commit) gives at-least-once: a consumer that crashes
    between processing and committing has its records redelivered to the next member,
    which starts exactly at the last committed offset;
  * offsets committed before processing (auto commit at poll time) lose the records of a
    crash: the same checker that finds nothing missing with manual commit reports them
    (negative control; the reason to commit manually after processing);
  * a member that stops heartbeating is removed after session.timeout.ms and its
    partitions go to the others; committed offsets never move backwards;
  * committed offsets (and their metadata strings) survive kill -9 of a single broker and
    of the group coordinator in a 3-node cluster;
  * auto.offset.reset applies only when the group has no committed offset;
  * range / roundrobin / cooperative-sticky assignments are complete and disjoint;
  * static membership (KIP-345): a static member restarted within the session timeout
    gets its partitions back without a rebalance; a second process with the same
    group.instance.id fences the first (FENCED_INSTANCE_ID, fatal in librdkafka);
  * the admin APIs: list / describe / delete groups (NON_EMPTY_GROUP while a member is
    active), delete offsets (GROUP_SUBSCRIBED_TO_TOPIC while subscribed), list offsets;
  * group.initial.rebalance.delay.ms delays the first rebalance of an empty group.

Timeouts are short: session.timeout.ms 6000 (Kafka's group.min.session.timeout.ms),
heartbeat.interval.ms 500, and brokers run with group.initial.rebalance.delay.ms=0 except
in the test of that delay. Group members that the tests crash run as separate processes
(group_worker.py) and are SIGKILLed by PID.
"""
from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time

import pytest
from confluent_kafka import (OFFSET_INVALID, Consumer, ConsumerGroupState, KafkaError,
                             KafkaException, TopicPartition)

import groups as g
import kclients as kc
import kwire
from broker import arctern_bin
from groups import HEARTBEAT_MS, REBALANCE_SLACK_S, SESSION_MS, Worker, wait_until

pytestmark = pytest.mark.groups

GCONF = {"group.initial.rebalance.delay.ms": 0}


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture
def gbroker(broker_factory):
    """A single broker with group.initial.rebalance.delay.ms=0."""
    return broker_factory(GCONF)


@pytest.fixture
def workers(request, tmp_path):
    """workers(name, bootstrap, group, topic, **opts) -> started Worker. All are stopped
    (SIGTERM, then SIGKILL) at teardown; on a failure their last events are printed."""
    made: list[Worker] = []

    def make(name, bootstrap, group, topic, start=True, **opts) -> Worker:
        w = Worker(tmp_path, name, bootstrap, group, topic, **opts)
        made.append(w)
        if start:
            w.start()
        return w

    yield make
    failed = any(getattr(request.node, "rep_" + w, None) is not None
                 and getattr(request.node, "rep_" + w).failed for w in ("setup", "call"))
    for w in made:
        if failed:
            print(f"\n----- worker {w.name} rc={w.proc.returncode if w.proc else None} "
                  f"events -----\n{w.events_tail(25)}\n----- stderr -----\n{w.stderr_tail()}")
        w.stop(timeout=10)


def cconf(bootstrap: str, group: str, **extra) -> dict:
    c = {"bootstrap.servers": bootstrap, "group.id": group,
         "session.timeout.ms": SESSION_MS, "heartbeat.interval.ms": HEARTBEAT_MS,
         "max.poll.interval.ms": 10000, "enable.auto.commit": False,
         "auto.offset.reset": "earliest", "fetch.wait.max.ms": 100, "log_level": 3}
    c.update(extra)
    return c


def values(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i}" for i in range(n)]


def wait_processed(ws: list[Worker], want: set[tuple[int, int]], timeout: float, what: str):
    """Until the workers together have processed every (partition, offset) in `want`."""
    def check():
        for w in ws:
            w.assert_alive_or_closed(what)
        got = {(p, o) for w in ws for p, o, _ in w.processed()}
        return want <= got
    try:
        wait_until(check, timeout, what, interval=0.2)
    except AssertionError as e:
        got = {(p, o) for w in ws for p, o, _ in w.processed()}
        missing = sorted(want - got)
        raise AssertionError(f"{e}; {len(missing)} not processed, e.g. {missing[:10]}") from None


def wait_committed(bootstrap, group, topic, want: dict[int, int], timeout: float = 20):
    return wait_until(
        lambda: g.committed_offsets(bootstrap, group, topic, list(want)) == want, timeout,
        f"committed offsets of {group} == {want} "
        f"(now {_safe(lambda: g.committed_offsets(bootstrap, group, topic, list(want)))})")


def _safe(fn):
    try:
        return fn()
    except Exception as e:      # noqa: BLE001 - only for messages
        return repr(e)


# ----------------------------------------------------------------------------- 1, 2

def test_manual_commit_crash_between_process_and_commit_redelivers(gbroker, workers,
                                                                  topic_name):
    """Consumer A processes, then commits each batch; it is SIGKILLed after processing
    record #125 but before committing its batch. Consumer B (same group) must start
    exactly at A's last committed offset, so the records A processed but did not commit
    are processed again: every record at least once, none skipped."""
    bs, group, n = gbroker.bootstrap, f"g-{topic_name}", 200
    kc.create_topic(bs, topic_name, 1)
    acked = g.produce_values(bs, topic_name, values("rec", n), lambda i: 0)
    assert [o for _, o, _ in acked] == list(range(n))

    a = workers("A", bs, group, topic_name, batch=10, hang_after=125)
    a.wait_event("hang", timeout=30)
    a.kill()
    a_proc = a.processed()
    a_committed = a.last_committed().get(0)
    assert a_proc and a_committed is not None, "A processed and committed before the crash"
    assert [o for _, o, _ in a_proc] == list(range(len(a_proc))), "A processed in order"
    last_a = a_proc[-1][1]
    assert a_committed <= last_a, "A crashed before committing its last batch"
    # the acknowledged commit is what the coordinator returns
    assert g.committed_offsets(bs, group, topic_name, [0]) == {0: a_committed}

    b = workers("B", bs, group, topic_name, batch=50)
    # A's member is still in the group until its session times out
    wait_processed([a, b], {(0, o) for o in range(n)},
                   SESSION_MS / 1000 + REBALANCE_SLACK_S + 20,
                   "every record processed by A or B")
    b_proc = b.processed()
    assert b_proc[0][1] == a_committed, \
        f"B must start at A's last committed offset {a_committed}, started at {b_proc[0][1]}"
    assert [o for _, o, _ in b_proc] == list(range(a_committed, n)), \
        "B processes every record from the committed offset on, in order, once"
    redelivered = {o for _, o, _ in a_proc} & {o for _, o, _ in b_proc}
    assert redelivered == set(range(a_committed, last_a + 1)), \
        "exactly the records A processed without committing are processed again"
    seen = {v for _, _, v in a_proc} | {v for _, _, v in b_proc}
    missing = set(values("rec", n)) - seen
    assert not missing, f"records never processed: {sorted(missing)[:10]}"
    for _, o, v in a_proc + b_proc:
        assert v == f"rec-{o}", f"offset {o} carried {v!r}"
    wait_committed(bs, group, topic_name, {0: n})


def test_auto_commit_before_processing_loses_records_negative_control(gbroker, workers,
                                                                      topic_name):
    """Negative control, the reason to commit manually after processing: with
    enable.auto.commit=true, offsets are stored when a record is polled and committed by
    the auto-commit timer, whether or not it was processed. A consumer that crashes after
    that commit and before processing loses those records: the next member starts after
    them. The checker used by the manual-commit test must report them missing."""
    bs, group, n = gbroker.bootstrap, f"g-{topic_name}", 100
    kc.create_topic(bs, topic_name, 1)
    g.produce_values(bs, topic_name, values("rec", n), lambda i: 0)

    a = workers("A", bs, group, topic_name, mode="autocommit", batch=30,
                auto_commit_interval_ms=200)
    polled = a.wait_event("polled_unprocessed", timeout=30)["offsets"]
    a.wait_event("hang", timeout=5)
    polled_end = max(o for _, o in polled) + 1
    # the auto-commit timer commits the polled (unprocessed) offsets
    wait_committed(bs, group, topic_name, {0: polled_end}, timeout=10)
    a.kill()

    b = workers("B", bs, group, topic_name, batch=50)
    wait_processed([b], {(0, o) for o in range(polled_end, n)},
                   SESSION_MS / 1000 + REBALANCE_SLACK_S + 20, "B processes up to the end")
    time.sleep(1)
    b_proc = b.processed()
    assert b_proc[0][1] == polled_end, "B starts at the auto-committed offset"
    seen = {v for _, _, v in a.processed()} | {v for _, _, v in b_proc}
    missing = sorted(set(values("rec", n)) - seen, key=lambda v: int(v.split("-")[1]))
    assert len(missing) > 0, "the loss must be detected"
    assert missing == [f"rec-{o}" for o in range(polled_end)], \
        "exactly the records polled (and auto-committed) but never processed are lost"


# ----------------------------------------------------------------------------- 3

def test_rebalance_after_member_sigkill(gbroker, workers, topic_name):
    """Three members share 6 partitions while a producer writes; one is SIGKILLed. Its
    partitions move to the two others within the session timeout (+ slack); every
    produced record is processed at least once; the committed offsets, sampled all along,
    never go backwards and end at the log end offsets."""
    bs, group, parts, n = gbroker.bootstrap, f"g-{topic_name}", 6, 1800
    kc.create_topic(bs, topic_name, parts)
    ws = [workers(f"W{i}", bs, group, topic_name, batch=20) for i in range(3)]

    def balanced(members):
        asg = [w.assignment() for w in members]
        if any(not a for a in asg):
            return False
        union = set().union(*asg)
        return union == set(range(parts)) and sum(len(a) for a in asg) == parts
    wait_until(lambda: balanced(ws), 30, "3 members share the 6 partitions", interval=0.2)

    samples: list[tuple[float, dict]] = []
    sample_errors: list[str] = []
    stop_sampling = threading.Event()

    def sampler():
        while not stop_sampling.is_set():
            try:
                samples.append((time.monotonic(),
                                g.committed_offsets(bs, group, topic_name, list(range(parts)))))
            except Exception as e:      # noqa: BLE001
                sample_errors.append(repr(e))
            stop_sampling.wait(0.3)

    acked: list = []
    produce_error: list = []

    def producer():
        try:
            for k in range(6):
                chunk = [f"r-{i}" for i in range(k * n // 6, (k + 1) * n // 6)]
                acked.extend(g.produce_values(bs, topic_name, chunk,
                                              lambda i, base=k * n // 6: (base + i) % parts))
                time.sleep(0.8)
        except Exception as e:      # noqa: BLE001
            produce_error.append(e)

    st = threading.Thread(target=sampler, daemon=True)
    pt = threading.Thread(target=producer, daemon=True)
    st.start()
    pt.start()
    try:
        time.sleep(1.5)
        victim = ws[1]
        victim_parts = victim.assignment()
        assert victim_parts, "the victim owns partitions"
        victim.kill()
        t_kill = time.monotonic()
        survivors = [ws[0], ws[2]]
        wait_until(lambda: balanced(survivors), SESSION_MS / 1000 + REBALANCE_SLACK_S,
                   f"partitions {sorted(victim_parts)} of the killed member move to the others")
        took = time.monotonic() - t_kill
        pt.join(60)
        assert not pt.is_alive() and not produce_error, f"producer: {produce_error}"
        assert len(acked) == n
        wait_processed(survivors + [victim], {(p, o) for p, o, _ in acked}, 40,
                       "every produced record processed by some member")
        ends = g.end_offsets(bs, topic_name, list(range(parts)))
        assert sum(ends.values()) == n
        wait_committed(bs, group, topic_name, ends, timeout=20)
    finally:
        stop_sampling.set()
        st.join(10)
    print(f"takeover after SIGKILL: {took:.1f}s; {len(samples)} offset samples, "
          f"{len(sample_errors)} sample errors")
    assert len(samples) >= 10, f"too few committed-offset samples: errors {sample_errors[:3]}"
    for p in range(parts):
        seq = [s[p] for _, s in samples if s.get(p, OFFSET_INVALID) != OFFSET_INVALID]
        back = [(a, b) for a, b in zip(seq, seq[1:]) if b < a]
        assert not back, f"partition {p}: committed offset went backwards: {back[:5]}"
    by_value = {}
    for w in ws:
        for p, o, v in w.processed():
            by_value.setdefault((p, o), v)
    for p, o, v in acked:
        assert by_value[(p, o)] == v, f"{p}/{o}: processed {by_value[(p, o)]!r}, produced {v!r}"


# ----------------------------------------------------------------------------- 4, 5

COMMITS = {0: (5, "meta-0 second commit"), 1: (7, "meta-1 \u00e9\u00e8 unicode"), 2: (10, "")}

# Commit metadata is written and read with kafka-python and raw OffsetFetch, which carry
# the string as it is. confluent-kafka-python is only used for the offsets here: it sends
# TopicPartition.metadata with its C string terminator (a committed "m" is stored as
# "m\x00", by Apache Kafka too) and reads metadata back as a C string.


def _commit_offsets(bootstrap: str, group: str, topic: str, commits: dict):
    """Standalone commits with kafka-python (no subscription: generation -1), synchronous;
    partition 0 is committed twice (the second commit replaces the first)."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    from kafka.structs import OffsetAndMetadata
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                      request_timeout_ms=10000)
    try:
        c.commit({KTP(topic, 0): OffsetAndMetadata(3, "meta-0 first", -1)})
        c.commit({KTP(topic, p): OffsetAndMetadata(o, m, -1) for p, (o, m) in commits.items()})
    finally:
        c.close()


def _read_committed_confluent(bootstrap, group, topic, parts) -> dict:
    """Consumer.committed: partition -> offset (OFFSET_INVALID when none)."""
    c = Consumer(cconf(bootstrap, group))
    try:
        res = c.committed([TopicPartition(topic, p) for p in parts], timeout=10)
        assert all(tp.error is None for tp in res), res
        return {tp.partition: tp.offset for tp in res}
    finally:
        c.close()


def _read_committed_kafka_python(bootstrap, group, topic, parts) -> dict:
    """partition -> (offset, metadata), None when nothing is committed."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                      request_timeout_ms=10000)
    try:
        out = {}
        for p in parts:
            om = c.committed(KTP(topic, p), metadata=True)
            out[p] = None if om is None else (om.offset, om.metadata)
        return out
    finally:
        c.close()


def _read_committed_raw(bootstrap, group, topic, parts) -> dict:
    """Raw OffsetFetch v3 to one broker (the coordinator): partition -> (offset,
    metadata); None while the coordinator is not ready."""
    r = g.raw_offset_fetch(bootstrap, group, topic, parts)
    codes = {r["error_code"]} | {v["error_code"] for v in r["partitions"].values()}
    if codes & g.COORDINATOR_RETRIABLE:
        return None
    assert codes == {0}, f"OffsetFetch from {bootstrap}: {r}"
    return {p: (v["offset"], v["metadata"]) for (t, p), v in r["partitions"].items()}


def _expected(commits):
    return {p: (o, m) for p, (o, m) in commits.items()}


def test_committed_offsets_survive_broker_sigkill(gbroker, topic_name):
    bs, group = gbroker.bootstrap, f"g-{topic_name}"
    kc.create_topic(bs, topic_name, 3)
    g.produce_values(bs, topic_name, values("x", 30), lambda i: i % 3)
    _commit_offsets(bs, group, topic_name, COMMITS)
    want = _expected(COMMITS)
    want_offsets = {p: o for p, (o, _) in want.items()}
    assert _read_committed_kafka_python(bs, group, topic_name, [0, 1, 2]) == want
    assert _read_committed_raw(bs, group, topic_name, [0, 1, 2]) == want

    gbroker.restart(kill=True)

    got = wait_until(lambda: _read_committed_raw(bs, group, topic_name, [0, 1, 2]), 30,
                     "OffsetFetch answered after the restart")
    assert got == want, "raw OffsetFetch after kill -9 + restart"
    assert _read_committed_confluent(bs, group, topic_name, [0, 1, 2]) == want_offsets, \
        "confluent Consumer.committed after kill -9 + restart"
    assert _read_committed_kafka_python(bs, group, topic_name, [0, 1, 2]) == want, \
        "kafka-python KafkaConsumer.committed after kill -9 + restart"
    # a member of the group continues from them
    c = Consumer(cconf(bs, group))
    try:
        c.subscribe([topic_name])
        first = {}
        deadline = time.monotonic() + 30
        while len(first) < 2 and time.monotonic() < deadline:
            for m in c.consume(100, timeout=0.3):
                if not m.error():
                    first.setdefault(m.partition(), m.offset())
        assert first == {0: 5, 1: 7}, f"first offsets consumed per partition: {first}"
    finally:
        c.close()


def _coordinator_seen_by(cluster, group: str, node_ids) -> dict:
    out = {}
    for i in node_ids:
        r = g.raw_find_coordinator(cluster.node(i).bootstrap, group)
        out[i] = r["node_id"] if r["error_code"] == 0 else f"error {r['error_code']}"
    return out


@pytest.mark.replication
def test_committed_offsets_survive_coordinator_sigkill_3_nodes(cluster_factory, topic_name):
    c = cluster_factory(3, config=GCONF)
    group = f"g-{topic_name}"
    c.create_topic(topic_name, partitions=2, rf=3)
    g.produce_values(c.live_bootstrap(), topic_name, values("y", 40), lambda i: i % 2)
    commits = {0: (7, "m0"), 1: (12, "m1")}
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    from kafka.structs import OffsetAndMetadata
    kp = KafkaConsumer(bootstrap_servers=c.live_bootstrap(), group_id=group,
                       enable_auto_commit=False, request_timeout_ms=10000)
    try:
        kp.commit({KTP(topic_name, p): OffsetAndMetadata(o, m, -1)
                   for p, (o, m) in commits.items()})
    finally:
        kp.close()

    # every node names the same live coordinator
    views = wait_until(
        lambda: (lambda v: v if len(set(v.values())) == 1
                 and isinstance(next(iter(v.values())), int) else None)(
            _coordinator_seen_by(c, group, c.ids())),
        30, "all nodes agree on the group coordinator")
    old = next(iter(views.values()))
    assert old in c.ids()
    c.node(old).kill()
    live = [i for i in c.ids() if i != old]

    def new_coordinator():
        v = _coordinator_seen_by(c, group, live)
        vals = set(v.values())
        if len(vals) == 1:
            n = vals.pop()
            if isinstance(n, int) and n in live:
                return n
        return None
    new = wait_until(new_coordinator, 40,
                     f"a new coordinator among {live} after SIGKILL of node {old}",
                     interval=0.3)

    got = wait_until(lambda: _read_committed_raw(c.node(new).bootstrap, group, topic_name,
                                                 [0, 1]),
                     30, f"OffsetFetch from the new coordinator {new}", interval=0.3)
    assert got == _expected(commits), f"offsets on the new coordinator {new}: {got}"
    assert _read_committed_kafka_python(c.live_bootstrap(), group, topic_name, [0, 1]) == \
        _expected(commits)

    # a consumer of the group continues from the committed offsets
    cons = Consumer(cconf(c.live_bootstrap(), group))
    try:
        cons.subscribe([topic_name])
        got_recs: dict[int, list[int]] = {0: [], 1: []}
        deadline = time.monotonic() + 40
        while (len(got_recs[0]) < 13 or len(got_recs[1]) < 8) and time.monotonic() < deadline:
            for m in cons.consume(100, timeout=0.3):
                if not m.error():
                    got_recs[m.partition()].append(m.offset())
        assert got_recs == {0: list(range(7, 20)), 1: list(range(12, 20))}, got_recs
        cons.commit(asynchronous=False)
    finally:
        cons.close()
    final = _read_committed_confluent(c.live_bootstrap(), group, topic_name, [0, 1])
    assert final == {0: 20, 1: 20}, final

    # the CLI, bootstrapped from a node that is not the coordinator, finds the new one
    other = next(i for i in live if i != new)
    doc = json.loads(_cli("describe", group, "--bootstrap-server", c.node(other).bootstrap,
                          "--json").stdout)
    assert doc["coordinator"]["node_id"] == new, doc["coordinator"]
    assert doc["state"] == "Empty" and doc["members"] == [], doc
    assert [(o["partition"], o["committed_offset"], o["log_end_offset"], o["lag"])
            for o in doc["offsets"]] == [(0, 20, 20, 0), (1, 20, 20, 0)], doc["offsets"]
    listed = json.loads(_cli("list", "--bootstrap-server", c.node(other).bootstrap,
                             "--json").stdout)["groups"]
    assert [(x["state"], x["coordinator"]) for x in listed if x["group_id"] == group] == \
        [("Empty", new)], listed


# ----------------------------------------------------------------------------- 6

def _consume_n(c: Consumer, n: int, timeout: float = 30) -> list:
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        for m in c.consume(100, timeout=0.2):
            if m.error():
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                continue
            out.append(m)
    return out


def test_auto_offset_reset_earliest_and_latest(gbroker, topic_name):
    bs = gbroker.bootstrap
    kc.create_topic(bs, topic_name, 1)
    g.produce_values(bs, topic_name, values("early", 10), lambda i: 0)
    ge, gl = f"ge-{topic_name}", f"gl-{topic_name}"
    for grp in (ge, gl):
        assert g.committed_offsets(bs, grp, topic_name, [0]) == {0: OFFSET_INVALID}

    ce = Consumer(cconf(bs, ge, **{"auto.offset.reset": "earliest"}))
    cl = Consumer(cconf(bs, gl, **{"auto.offset.reset": "latest",
                                   "enable.partition.eof": True}))
    try:
        ce.subscribe([topic_name])
        got = _consume_n(ce, 10)
        assert [(m.offset(), m.value()) for m in got] == \
            [(i, f"early-{i}".encode()) for i in range(10)], "earliest: from the beginning"

        cl.subscribe([topic_name])
        early_seen = []

        def positioned():
            # the partition-EOF event carries the fetch position: where "latest" put it
            for m in cl.consume(100, timeout=0.2):
                if not m.error():
                    early_seen.append(m.offset())
                elif m.error().code() == KafkaError._PARTITION_EOF:
                    return ("eof", m.offset())
            return None
        pos = wait_until(positioned, 30, "latest consumer assigned and at the partition end")
        assert pos == ("eof", 10), f"latest: positioned at the log end (10), got {pos}"
        assert early_seen == [], f"latest consumer saw earlier records {early_seen}"
        g.produce_values(bs, topic_name, values("late", 5), lambda i: 0)
        got = _consume_n(cl, 5)
        assert [(m.offset(), m.value()) for m in got] == \
            [(10 + i, f"late-{i}".encode()) for i in range(5)], "latest: only later records"
        more = _consume_n(cl, 1, timeout=1)
        assert more == [], "nothing else"
    finally:
        ce.close()
        cl.close()


# ----------------------------------------------------------------------------- 7

@pytest.mark.parametrize("strategy", ["range", "roundrobin", "cooperative-sticky"])
def test_assignors_complete_and_disjoint(gbroker, topic_name, strategy):
    bs, group, parts = gbroker.bootstrap, f"g-{topic_name}", 6
    kc.create_topic(bs, topic_name, parts)
    cs = [Consumer(cconf(bs, group, **{"partition.assignment.strategy": strategy,
                                       "client.id": f"asg-{i}"})) for i in range(2)]
    try:
        for c in cs:
            c.subscribe([topic_name])
        stable_since = [None]

        def stable():
            for c in cs:
                c.consume(10, timeout=0.1)
            asg = [{tp.partition for tp in c.assignment()} for c in cs]
            ok = all(asg) and not (asg[0] & asg[1]) and asg[0] | asg[1] == set(range(parts))
            if not ok:
                stable_since[0] = None
                return None
            if stable_since[0] is None:
                stable_since[0] = time.monotonic()
            return asg if time.monotonic() - stable_since[0] > 1.5 else None
        asg = wait_until(stable, 40, f"{strategy}: a complete, disjoint assignment over 2 "
                                     f"members", interval=0.05)
        a = g.admin(bs)     # keep the client alive until its future resolves
        desc = a.describe_consumer_groups([group])[group].result(10)
        assert desc.state == ConsumerGroupState.STABLE
        assert desc.partition_assignor == strategy, \
            f"the group's protocol is {desc.partition_assignor!r}, not {strategy!r}"
        by_client = {m.client_id: {tp.partition for tp in m.assignment.topic_partitions}
                     for m in desc.members}
        assert by_client == {"asg-0": asg[0], "asg-1": asg[1]}
    finally:
        for c in cs:
            c.close()


# ----------------------------------------------------------------------------- 8

def test_static_membership_restart_and_fencing(gbroker, workers, topic_name):
    """KIP-345. A static member (group.instance.id) that restarts within the session
    timeout gets the same partitions back and its partner is not revoked; another process
    with the same group.instance.id fences the running one (FENCED_INSTANCE_ID, a fatal
    error in librdkafka)."""
    bs, group, parts = gbroker.bootstrap, f"g-{topic_name}", 4
    kc.create_topic(bs, topic_name, parts)
    opts = dict(session_timeout_ms=10000, max_poll_interval_ms=15000)
    a = workers("A", bs, group, topic_name, instance_id="static-a", **opts)
    b = workers("B", bs, group, topic_name, instance_id="static-b", **opts)

    def balanced(x, y):
        ax, ay = x.assignment(), y.assignment()
        return ax and ay and not (ax & ay) and ax | ay == set(range(parts)) and (ax, ay)
    a_parts, b_parts = wait_until(lambda: balanced(a, b), 30, "A and B share the partitions")
    time.sleep(1)
    b_events = len([e for e in b.events() if e["ev"] in ("assigned", "revoked", "lost")])

    a.kill()
    a2 = workers("A2", bs, group, topic_name, instance_id="static-a", **opts)
    t0 = time.monotonic()
    a2.wait_event("assigned", timeout=10)
    assert a2.assignment() == a_parts, "the restarted static member gets its partitions back"
    took = time.monotonic() - t0
    time.sleep(2)
    b_after = [e for e in b.events() if e["ev"] in ("assigned", "revoked", "lost")]
    assert len(b_after) == b_events, \
        f"the partner must not be revoked by a static member's restart: {b_after[b_events:]}"
    assert b.assignment() == b_parts
    print(f"static member got its assignment back {took:.1f}s after restart")

    # a second process with the same group.instance.id fences the running one
    c3 = workers("C", bs, group, topic_name, instance_id="static-a", **opts)

    def fenced():
        for e in a2.events("error") + a2.events("commit_failed"):
            text = f"{e.get('name', '')} {e.get('str', '')} {e.get('error', '')}"
            if "FENCED_INSTANCE_ID" in text or "fenced" in text.lower():
                return e
        return None
    e = wait_until(fenced, 20, "the first process reports FENCED_INSTANCE_ID")
    # librdkafka raises a fatal error: error_cb gets ERR__FATAL with the cause in its text
    fatal = [x for x in a2.events("error")
             if (x.get("fatal") or x.get("code") == KafkaError._FATAL) and "fenced" in x["str"]]
    assert fatal, f"FENCED_INSTANCE_ID is fatal in librdkafka; error events: {a2.events('error')}"
    c3.wait_event("assigned", timeout=15)
    wait_until(lambda: c3.assignment() == a_parts, 10, "the new process holds the "
                                                       "instance's partitions")
    print(f"fencing error: {e}")


# ----------------------------------------------------------------------------- 9

def test_kafka_python_and_aiokafka_groups(gbroker, topic_name):
    """kafka-python subscribes, consumes, commits explicit offsets, closes; aiokafka in
    the same group resumes from them, commits its position; kafka-python reads it back."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    from kafka.structs import OffsetAndMetadata
    bs, group = gbroker.bootstrap, f"g-{topic_name}"
    kc.create_topic(bs, topic_name, 2)
    g.produce_values(bs, topic_name, values("z", 40), lambda i: i % 2)

    kp = KafkaConsumer(topic_name, bootstrap_servers=bs, group_id=group,
                       enable_auto_commit=False, auto_offset_reset="earliest",
                       session_timeout_ms=SESSION_MS, heartbeat_interval_ms=HEARTBEAT_MS,
                       max_poll_interval_ms=10000, fetch_max_wait_ms=100)
    try:
        recs = []
        deadline = time.monotonic() + 30
        while len(recs) < 40 and time.monotonic() < deadline:
            for rs in kp.poll(timeout_ms=300).values():
                recs.extend(rs)
        assert sorted((r.partition, r.offset) for r in recs) == \
            sorted((p, o) for p in (0, 1) for o in range(20))
        kp.commit({KTP(topic_name, 0): OffsetAndMetadata(10, "kp-0", -1),
                   KTP(topic_name, 1): OffsetAndMetadata(5, "kp-1", -1)})
    finally:
        kp.close()

    async def aio():
        from aiokafka import AIOKafkaConsumer
        from aiokafka.structs import TopicPartition as ATP
        ac = AIOKafkaConsumer(topic_name, bootstrap_servers=bs, group_id=group,
                              enable_auto_commit=False, auto_offset_reset="earliest",
                              session_timeout_ms=SESSION_MS,
                              heartbeat_interval_ms=HEARTBEAT_MS,
                              max_poll_interval_ms=10000, fetch_max_wait_ms=100)
        await ac.start()
        try:
            assert await ac.committed(ATP(topic_name, 0)) == 10
            got = []
            deadline = time.monotonic() + 30
            while len(got) < 25 and time.monotonic() < deadline:
                for rs in (await ac.getmany(timeout_ms=300)).values():
                    got.extend((r.partition, r.offset) for r in rs)
            await ac.commit()
            return got
        finally:
            await ac.stop()
    got = asyncio.run(aio())
    assert sorted(got) == sorted([(0, o) for o in range(10, 20)] + [(1, o) for o in range(5, 20)]), \
        "aiokafka resumes exactly at kafka-python's committed offsets"
    got_c = _read_committed_kafka_python(bs, group, topic_name, [0, 1])
    assert {p: v[0] for p, v in got_c.items()} == {0: 20, 1: 20}, got_c


# ----------------------------------------------------------------------------- 10

def test_admin_list_describe_delete(gbroker, workers, topic_name):
    from kafka import TopicPartition as KTP
    from kafka.admin import KafkaAdminClient
    from kafka.errors import GroupSubscribedToTopicError, NoError
    bs, group, parts = gbroker.bootstrap, f"g-{topic_name}", 3
    kc.create_topic(bs, topic_name, parts)
    g.produce_values(bs, topic_name, values("a", 30), lambda i: i % parts)
    w = workers("W", bs, group, topic_name, client_id="admin-test-worker")
    wait_committed(bs, group, topic_name, {p: 10 for p in range(parts)}, timeout=30)
    a = g.admin(bs)
    kp = KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=10000)
    try:
        listed = a.list_consumer_groups(request_timeout=10).result(10)
        assert not listed.errors, listed.errors
        mine = [x for x in listed.valid if x.group_id == group]
        assert len(mine) == 1 and mine[0].state == ConsumerGroupState.STABLE \
            and not mine[0].is_simple_consumer_group, mine
        kp_listed = {x["group_id"]: x for x in kp.list_groups()}
        assert group in kp_listed and kp_listed[group]["protocol_type"] == "consumer", \
            kp_listed.get(group)

        d = a.describe_consumer_groups([group])[group].result(10)
        assert d.state == ConsumerGroupState.STABLE
        assert not d.is_simple_consumer_group
        assert d.partition_assignor in ("range", "roundrobin"), d.partition_assignor
        assert len(d.members) == 1
        m = d.members[0]
        assert m.client_id == "admin-test-worker" and m.member_id and m.host
        assert {(tp.topic, tp.partition) for tp in m.assignment.topic_partitions} == \
            {(topic_name, p) for p in range(parts)}
        assert d.coordinator is not None and d.coordinator.port == gbroker.port

        # NON_EMPTY_GROUP while a member is active
        with pytest.raises(KafkaException) as ei:
            a.delete_consumer_groups([group], request_timeout=10)[group].result(10)
        assert ei.value.args[0].code() == KafkaError.NON_EMPTY_GROUP, ei.value
        # OffsetDelete of a subscribed topic: GROUP_SUBSCRIBED_TO_TOPIC
        r = kp.delete_group_offsets(group, [KTP(topic_name, 0)])
        assert r[KTP(topic_name, 0)] is GroupSubscribedToTopicError, r

        w.stop()
        wait_until(lambda: a.describe_consumer_groups([group])[group].result(10).state
                   == ConsumerGroupState.EMPTY, 15, "group Empty after its member left")
        assert g.committed_offsets(bs, group, topic_name, list(range(parts))) == \
            {p: 10 for p in range(parts)}
        kp_offs = kp.list_group_offsets({group: None})[group]
        assert {tp.partition: om.offset for tp, om in kp_offs.items()
                if tp.topic == topic_name} == {p: 10 for p in range(parts)}

        # OffsetDelete on an empty group
        r = kp.delete_group_offsets(group, [KTP(topic_name, 0)])
        assert r[KTP(topic_name, 0)] is NoError, r
        assert g.committed_offsets(bs, group, topic_name, list(range(parts))) == \
            {0: OFFSET_INVALID, 1: 10, 2: 10}

        a.delete_consumer_groups([group], request_timeout=10)[group].result(10)
        listed = a.list_consumer_groups(request_timeout=10).result(10)
        assert group not in {x.group_id for x in listed.valid}
        assert g.committed_offsets(bs, group, topic_name, list(range(parts))) == \
            {p: OFFSET_INVALID for p in range(parts)}
        d = a.describe_consumer_groups([group])[group]
        try:
            st = d.result(10).state
            assert st == ConsumerGroupState.DEAD, st
        except KafkaException as e:
            assert e.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND, e
    finally:
        kp.close()


# ----------------------------------------------------------------------------- 11

def _first_join_seconds(bootstrap: str, topic: str, group: str) -> float:
    assigned = threading.Event()
    c = Consumer(cconf(bootstrap, group))
    try:
        t0 = time.monotonic()
        c.subscribe([topic], on_assign=lambda _c, ps: assigned.set())
        deadline = t0 + 30
        while not assigned.is_set() and time.monotonic() < deadline:
            c.consume(10, timeout=0.05)
        assert assigned.is_set(), "no assignment within 30 s"
        return time.monotonic() - t0
    finally:
        c.close()


def _coordinator_ready(bootstrap: str, group: str, topic: str, timeout: float = 30):
    """Until FindCoordinator names a node and that node answers OffsetFetch for the group
    without a coordinator error (the offsets topic exists and the group's partition is
    loaded). Creates no group."""
    def ready():
        fc = g.raw_find_coordinator(bootstrap, group)
        if fc["error_code"] != 0:
            return None
        return _read_committed_raw(f"{fc['host']}:{fc['port']}", group, topic, [0]) is not None
    wait_until(ready, timeout, f"coordinator of {group} ready", interval=0.2)


def test_initial_rebalance_delay(broker_factory, topic_name):
    """The first rebalance of an empty group waits group.initial.rebalance.delay.ms
    (default 3000) for more members; with 0 it completes at once. A behaviour check with
    loose bounds, not a benchmark. The coordinator is made ready first (offsets topic
    created and loaded) so that only the group's own join is timed."""
    default = broker_factory()              # Kafka's default: 3000 ms
    zero = broker_factory(GCONF)
    group = f"g-{topic_name}"
    for b in (default, zero):
        kc.create_topic(b.bootstrap, topic_name, 1)
        _coordinator_ready(b.bootstrap, group, topic_name)
    t_default = _first_join_seconds(default.bootstrap, topic_name, group)
    t_zero = _first_join_seconds(zero.bootstrap, topic_name, group)
    print(f"first join: {t_default:.2f}s with the default delay, {t_zero:.2f}s with 0")
    assert t_default >= 2.5, f"default delay (3000 ms): first join took only {t_default:.2f}s"
    assert t_zero < 2.5, f"delay 0: first join took {t_zero:.2f}s"


def test_fresh_broker_coordinator_named_by_find_coordinator_serves_join(gbroker,
                                                                       topic_name):
    """On a fresh broker the first FindCoordinator creates __consumer_offsets. Once it
    names a coordinator (error NONE), that node serves the group: a JoinGroup sent to it
    right away is answered as a join (v4, no member id: MEMBER_ID_REQUIRED) or, while the
    group's offsets partition is still loading, COORDINATOR_LOAD_IN_PROGRESS -- never
    NOT_COORDINATOR, which tells the client it asked the wrong node (librdkafka then backs
    off and rediscovers, about 3 s for the first join of every fresh cluster)."""
    bs, group = gbroker.bootstrap, f"g-{topic_name}"
    kc.create_topic(bs, topic_name, 1)
    # FindCoordinator and JoinGroup pipelined on one connection (a broker answers a
    # connection's requests in order), so the JoinGroup arrives the moment the
    # FindCoordinator answer is sent; judged only once FindCoordinator names this node.
    deadline = time.monotonic() + 30
    while True:
        with kwire.Conn(bs) as conn:
            conn.send(g.find_coordinator_v1(1, group) + g.join_group_v4(2, group, topic_name))
            fc = g.parse_find_coordinator_v1(conn.recv_frame())
            jg = g.parse_join_group_v4(conn.recv_frame())
        if fc["error_code"] == 0:
            break
        assert fc["error_code"] in g.COORDINATOR_RETRIABLE, fc
        assert time.monotonic() < deadline, f"FindCoordinator: {fc}"
        time.sleep(0.05)
    assert fc["port"] == gbroker.port, fc
    assert jg["error_code"] in (g.MEMBER_ID_REQUIRED, g.COORDINATOR_LOAD_IN_PROGRESS), \
        f"JoinGroup right after FindCoordinator named this node ({fc}): {jg}"


# ----------------------------------------------------------------------------- CLI

def _cli(*args, check=True) -> subprocess.CompletedProcess:
    r = subprocess.run([str(arctern_bin()), "groups", *args], capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    if check:
        assert r.returncode == 0, f"arctern groups {args}: rc={r.returncode}\n{r.stderr}"
    return r


def test_cli_groups_list_and_describe(gbroker, workers, topic_name):
    """`arctern groups list / describe --json` against a live group with a lag: a member
    that processed and committed 7 of 20 records, then stopped consuming."""
    bs, group = gbroker.bootstrap, f"g-{topic_name}"
    kc.create_topic(bs, topic_name, 2)
    g.produce_values(bs, topic_name, values("c", 20), lambda i: i % 2)
    w = workers("W", bs, group, topic_name, client_id="cli-worker", batch=1, stop_after=7)
    w.wait_event("idle", timeout=30)
    committed = g.committed_offsets(bs, group, topic_name, [0, 1])
    committed = {p: o for p, o in committed.items()}
    assert sum(o for o in committed.values() if o >= 0) == 7

    doc = json.loads(_cli("describe", group, "--bootstrap-server", bs, "--json").stdout)
    assert doc["group_id"] == group
    assert doc["state"] == "Stable"
    assert doc["protocol_type"] == "consumer"
    assert doc["protocol"] in ("range", "roundrobin")
    assert doc["coordinator"]["port"] == gbroker.port
    assert len(doc["members"]) == 1
    m = doc["members"][0]
    assert m["client_id"] == "cli-worker" and m["member_id"] and m["host"]
    assert m["assignment"] == [{"topic": topic_name, "partitions": [0, 1]}]
    offs = {o["partition"]: o for o in doc["offsets"] if o["topic"] == topic_name}
    assert set(offs) == {0, 1}
    for p, o in offs.items():
        want_c = committed[p] if committed[p] >= 0 else None
        assert o["committed_offset"] == want_c, (p, o, committed)
        assert o["log_end_offset"] == 10, o
        assert o["lag"] == (None if want_c is None else 10 - want_c), o
        assert o["client_id"] == "cli-worker" and o["member_id"] == m["member_id"], o

    listed = json.loads(_cli("list", "--bootstrap-server", bs, "--json").stdout)["groups"]
    mine = [x for x in listed if x["group_id"] == group]
    assert mine == [{"group_id": group, "state": "Stable", "protocol_type": "consumer",
                     "coordinator": doc["coordinator"]["node_id"]}], listed

    text = _cli("describe", group, "--bootstrap-server", bs).stdout
    assert group in text and "cli-worker" in text and "Stable" in text
    assert group in _cli("list", "--bootstrap-server", bs).stdout

    w.stop()
    wait_until(lambda: json.loads(_cli("describe", group, "--bootstrap-server", bs,
                                       "--json").stdout)["state"] == "Empty", 15,
               "the group is Empty after its member left")
    doc = json.loads(_cli("describe", group, "--bootstrap-server", bs, "--json").stdout)
    assert doc["members"] == []
    assert {o["partition"]: o["lag"] for o in doc["offsets"]} == \
        {p: 10 - c for p, c in committed.items() if c >= 0}

    r = _cli("describe", f"no-such-group-{topic_name}", "--bootstrap-server", bs, check=False)
    assert r.returncode != 0 and "does not exist" in r.stderr, (r.returncode, r.stderr)
