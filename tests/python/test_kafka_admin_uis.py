"""The admin APIs Kafka's CLI and UIs (kafka-ui, AKHQ) call, through real clients:
DescribeLogDirs and DescribeProducers (kafka-python's KafkaAdminClient), ElectLeaders
(confluent-kafka's AdminClient.elect_leaders and kafka-python's), with the error codes and
authorization refusals Kafka documents."""
from __future__ import annotations

import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka import ElectionType
from confluent_kafka.admin import AdminClient

import kclients as kc

TIMEOUT = 20
STANDARD = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


def uniq(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def kp_admin(bs: str):
    from kafka.admin import KafkaAdminClient
    return KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=TIMEOUT * 1000)


def produce(bs: str, topic: str, partition: int, values: list[bytes], idempotent=False) -> None:
    p = Producer({"bootstrap.servers": bs, "enable.idempotence": idempotent,
                  "linger.ms": 50, "log_level": 0})
    for v in values:
        p.produce(topic, v, partition=partition)
    assert p.flush(TIMEOUT) == 0


def segment_bytes(partition_dir) -> int:
    return sum(f.stat().st_size for f in partition_dir.glob("*.log"))


# ---------------------------------------------------------------- DescribeLogDirs

def test_describe_log_dirs_reports_the_data_dir_and_partition_sizes(broker):
    bs = broker.bootstrap
    t, other = uniq("logdirs-"), uniq("logdirs-other-")
    kc.create_topic(bs, t, partitions=2)
    kc.create_topic(bs, other, partitions=1)
    produce(bs, t, 0, [b"x" * 1000 for _ in range(20)])
    a = kp_admin(bs)
    try:
        [answer] = a.describe_log_dirs()
        [d] = answer["log_dirs"]
        assert d["error_code"] == 0
        assert d["log_dir"] == str(broker.data_dir.resolve())
        # v4: the file system's size and free space.
        assert d["total_bytes"] > 0 and 0 < d["usable_bytes"] <= d["total_bytes"]
        sizes = {(tp["name"], p["partition_index"]): p for tp in d["topics"]
                 for p in tp["partitions"]}
        p0, p1 = sizes[(t, 0)], sizes[(t, 1)]
        assert p0["partition_size"] >= 20 * 1000
        assert p0["partition_size"] == segment_bytes(broker.data_dir / f"{t}-0")
        assert p1["partition_size"] == 0
        assert (other, 0) in sizes
        assert p0["offset_lag"] == 0 and p0["is_future_key"] is False

        # A topic filter: only the partitions named.
        [answer] = a.describe_log_dirs({t: [1]})
        [d] = answer["log_dirs"]
        assert [(tp["name"], [p["partition_index"] for p in tp["partitions"]])
                for tp in d["topics"]] == [(t, [1])]
    finally:
        a.close()


# ---------------------------------------------------------------- DescribeProducers

def test_describe_producers_lists_the_idempotent_producer(broker):
    from kafka import TopicPartition as KTP
    from kafka.errors import UnknownTopicOrPartitionError
    bs = broker.bootstrap
    t = uniq("producers-")
    kc.create_topic(bs, t, partitions=2)
    produce(bs, t, 0, [b"a", b"b", b"c"], idempotent=True)
    produce(bs, t, 1, [b"plain"])      # not idempotent: no producer state
    a = kp_admin(bs)
    try:
        states = a.describe_producers([KTP(t, 0), KTP(t, 1)])
        [p] = states[KTP(t, 0)].active_producers
        assert p.producer_id >= 0
        assert p.producer_epoch == 0
        assert p.last_sequence == 2        # three records from sequence 0
        assert p.last_timestamp > 0
        assert p.coordinator_epoch == -1
        assert p.current_transaction_start_offset == -1
        assert states[KTP(t, 1)].active_producers == []
        with pytest.raises(UnknownTopicOrPartitionError):
            a.describe_producers([KTP(t, 7)], broker_id=1)
    finally:
        a.close()


# ---------------------------------------------------------------- authorization

def test_the_admin_apis_need_their_cluster_and_topic_permissions(broker_factory):
    from kafka import TopicPartition as KTP
    from kafka.errors import ClusterAuthorizationFailedError, TopicAuthorizationFailedError
    from kafka.protocol.admin import DescribeLogDirsRequest
    # Kafka's default with an authorizer: no ACL, no access.
    b = broker_factory({"authorizer.class.name": STANDARD})
    a = kp_admin(b.bootstrap)
    try:
        # kafka-python's describe_log_dirs drops the top-level error: send it raw.
        resp = a._manager.run(a._manager.send, DescribeLogDirsRequest(topics=None), 1)
        assert resp.error_code == 31       # CLUSTER_AUTHORIZATION_FAILED
        assert resp.results == []
        with pytest.raises(ClusterAuthorizationFailedError):
            a.elect_leaders(0, {"t": [0]})
        with pytest.raises(TopicAuthorizationFailedError):
            a.describe_producers([KTP("t", 0)], broker_id=1)
        # confluent-kafka: every partition (null) refused at the top level.
        with pytest.raises(KafkaException) as e:
            elect(AdminClient({"bootstrap.servers": b.bootstrap, "log_level": 0}),
                  ElectionType.PREFERRED, None)
        assert e.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    finally:
        a.close()


# ---------------------------------------------------------------- ElectLeaders

def elect(ac: AdminClient, kind, partitions):
    """confluent-kafka's elect_leaders. (2.16.1 raises SystemError when given any keyword
    argument such as request_timeout, so none is passed.)"""
    return ac.elect_leaders(kind, partitions).result(TIMEOUT)


def election_errors(result: dict) -> dict:
    """confluent-kafka's elect_leaders result: {(topic, partition): error code or None}."""
    out = {}
    for tp, e in result.items():
        code = None
        if e is not None:
            err = e.args[0] if isinstance(e, KafkaException) else e
            code = err.code() if isinstance(err, KafkaError) else err
        out[(tp.topic, tp.partition)] = code
    return out


def test_elect_leaders_moves_leadership_back_to_the_preferred_replica(cluster_factory):
    from kafka import TopicPartition as KTP
    from kafka.errors import NotLeaderForPartitionError
    # No automatic rebalance: only ElectLeaders moves leadership back.
    c = cluster_factory(3, config={"auto.leader.rebalance.enable": False})
    t = uniq("elect-")
    c.create_topic(t, assignment=[[1, 2, 3], [2, 3, 1]])
    c.wait_leader(t, 0, leader=1)
    ac = AdminClient({"bootstrap.servers": c.bootstrap, "log_level": 0})

    # Already preferred: ELECTION_NOT_NEEDED.
    r = elect(ac, ElectionType.PREFERRED, [TopicPartition(t, 0)])
    assert election_errors(r) == {(t, 0): KafkaError.ELECTION_NOT_NEEDED}

    # Node 1 goes: partition 0 moves away and its preferred replica is unavailable.
    c.node(1).kill()
    c.wait_leader(t, 0, not_in=[1])
    ac = AdminClient({"bootstrap.servers": c.live_bootstrap(), "log_level": 0})
    r = elect(ac, ElectionType.PREFERRED, [TopicPartition(t, 0)])
    assert election_errors(r) == {(t, 0): KafkaError.PREFERRED_LEADER_NOT_AVAILABLE}

    # Back and in sync, node 1 still does not lead until asked.
    c.node(1).start()
    c.wait_isr(t, 0)
    st = c.wait_isr(t, 1)
    assert c.partition_state(t, 0).leader != 1 and st.leader == 2

    # Unclean on a partition with a live leader: ELECTION_NOT_NEEDED.
    r = elect(ac, ElectionType.UNCLEAN, [TopicPartition(t, 0)])
    assert election_errors(r) == {(t, 0): KafkaError.ELECTION_NOT_NEEDED}

    # DescribeProducers on a replica that does not lead.
    produce(c.bootstrap, t, 0, [b"x"], idempotent=True)
    follower = next(i for i in (1, 2, 3) if i != c.partition_state(t, 0).leader)
    k = kp_admin(c.bootstrap)
    try:
        with pytest.raises(NotLeaderForPartitionError):
            k.describe_producers([KTP(t, 0)], broker_id=follower)
        assert len(k.describe_producers([KTP(t, 0)])[KTP(t, 0)].active_producers) == 1
    finally:
        k.close()

    # Every partition (null): partition 0 is elected, partition 1 (already preferred) is
    # left out of the answer, as Kafka does.
    r = elect(ac, ElectionType.PREFERRED, None)
    assert election_errors(r) == {(t, 0): None}
    c.wait_leader(t, 0, leader=1)

    # kafka-python's elect_leaders (named partitions; ELECTION_NOT_NEEDED is not an error).
    k = kp_admin(c.bootstrap)
    try:
        resp = k.elect_leaders(0, {t: [0, 1]})
        codes = {(x.topic, p.partition_id): p.error_code
                 for x in resp.replica_election_results for p in x.partition_result}
        assert codes == {(t, 0): 84, (t, 1): 84}
        resp = k.elect_leaders(0, {t: [5]}, raise_errors=False)
        [x] = resp.replica_election_results
        assert [p.error_code for p in x.partition_result] == [3]   # UNKNOWN_TOPIC_OR_PARTITION

        # DescribeLogDirs on every broker: each hosts a replica of both partitions, and the
        # replicas of partition 0 (written with acks=all) are the same size everywhere.
        dirs = {x["broker"]: x["log_dirs"] for x in k.describe_log_dirs({t: [0, 1]})}
        assert sorted(dirs) == [1, 2, 3]
        sizes = set()
        for node_id, [d] in dirs.items():
            assert d["log_dir"] == str(c.node(node_id).data_dir.resolve())
            parts = {p["partition_index"]: p for tp in d["topics"] for p in tp["partitions"]}
            assert sorted(parts) == [0, 1]
            assert all(p["offset_lag"] >= 0 for p in parts.values())
            sizes.add(parts[0]["partition_size"])
        assert len(sizes) == 1 and sizes.pop() > 0
    finally:
        k.close()


def test_unclean_election_elects_a_live_replica_outside_the_isr(cluster_factory):
    c = cluster_factory(3, config={"auto.leader.rebalance.enable": False})
    t, only2 = uniq("unclean-"), uniq("unclean-only2-")
    c.create_topic(t, assignment=[[2, 3]])
    c.create_topic(only2, assignment=[[2]])
    c.wait_leader(t, 0, leader=2)
    # Node 3 stalls and drops out of the ISR; then the only ISR member, node 2, dies.
    c.node(3).pause()
    c.wait_isr(t, 0, isr={2})
    c.node(2).kill()
    c.node(3).resume()
    # unclean.leader.election.enable is off: the partition stays leaderless.
    c.wait_partition(t, 0, lambda s: s.leader == -1 and s.isr == [2], what="leaderless")
    ac = AdminClient({"bootstrap.servers": c.live_bootstrap(), "log_level": 0})
    # Preferred replica 2 is dead.
    assert election_errors(elect(ac, ElectionType.PREFERRED, [TopicPartition(t, 0)])) == \
        {(t, 0): KafkaError.PREFERRED_LEADER_NOT_AVAILABLE}
    # Unclean: node 3 (once unfenced again) takes over, as the sole ISR member.
    c.wait_until(lambda: election_errors(elect(ac, ElectionType.UNCLEAN,
                                               [TopicPartition(t, 0)])) == {(t, 0): None},
                 30, "unclean election of node 3")
    st = c.wait_leader(t, 0, leader=3)
    assert st.isr == [3]
    # A partition whose only replica is dead: nobody is eligible.
    assert election_errors(elect(ac, ElectionType.UNCLEAN, [TopicPartition(only2, 0)])) == \
        {(only2, 0): KafkaError.ELIGIBLE_LEADERS_NOT_AVAILABLE}
