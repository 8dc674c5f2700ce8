"""Kafka ACLs (issue 18): CreateAcls/DescribeAcls/DeleteAcls through confluent-kafka's
AdminClient, and the refusals Kafka's authorizer gives real clients (confluent-kafka,
kafka-python) on a broker started with `authorizer.class.name`.

Clients here are `User:ANONYMOUS` (PLAINTEXT). The broker runs with
`allow.everyone.if.no.acl.found=true`, so a resource without ACLs stays open; each test
first gives ANONYMOUS ALTER and DESCRIBE on the cluster (needed to manage ACLs once the
cluster resource has any), then adds the ACLs under test. Every assertion is what Kafka
itself answers."""
from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
                                   AclPermissionType, NewTopic, ResourcePatternType,
                                   ResourceType)

import kclients as kc

STANDARD = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
ANON = "User:ANONYMOUS"
TIMEOUT = 15


@pytest.fixture
def secured(broker_factory):
    """A broker with ACLs on, open where no ACL applies, ANONYMOUS managing the ACLs."""
    b = broker_factory({"authorizer.class.name": STANDARD,
                        "allow.everyone.if.no.acl.found": True})
    create(b.bootstrap, [
        binding(ResourceType.BROKER, "kafka-cluster", AclOperation.ALTER, principal=ANON),
        binding(ResourceType.BROKER, "kafka-cluster", AclOperation.DESCRIBE, principal=ANON),
    ])
    return b


_ADMINS: dict = {}


@pytest.fixture(autouse=True)
def _drop_admins():
    yield
    _ADMINS.clear()


def admin(bs: str):
    """One AdminClient per broker, kept alive (a collected client fails its futures)."""
    if bs not in _ADMINS:
        from confluent_kafka.admin import AdminClient
        _ADMINS[bs] = AdminClient({"bootstrap.servers": bs, "log_level": 0})
    return _ADMINS[bs]


def uniq(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def binding(restype, name, op, *, allow=True, principal="User:*", host="*",
            pattern=ResourcePatternType.LITERAL) -> AclBinding:
    perm = AclPermissionType.ALLOW if allow else AclPermissionType.DENY
    return AclBinding(restype, name, pattern, principal, host, op, perm)


def create(bs: str, bindings: list[AclBinding]) -> None:
    fs = admin(bs).create_acls(bindings, request_timeout=TIMEOUT)
    for f in fs.values():
        f.result(TIMEOUT)


def describe(bs: str, flt: AclBindingFilter) -> list[AclBinding]:
    return admin(bs).describe_acls(flt, request_timeout=TIMEOUT).result(TIMEOUT)


def describe_refusal(bs: str):
    """kafka-python's describe_acls (librdkafka drops DescribeAcls' top-level error): the
    exception class it raises, or None."""
    from kafka.admin import (ACLFilter, ACLOperation, ACLPermissionType,
                             ACLResourcePatternType, KafkaAdminClient, ResourcePatternFilter)
    from kafka.admin import ResourceType as KPResourceType
    k = KafkaAdminClient(bootstrap_servers=bs)
    try:
        k.describe_acls(ACLFilter(principal=None, host="*", operation=ACLOperation.ANY,
                                  permission_type=ACLPermissionType.ANY,
                                  resource_pattern=ResourcePatternFilter(
                                      KPResourceType.ANY, None, ACLResourcePatternType.ANY)))
        return None
    except Exception as e:  # noqa: BLE001 - the class is the assertion
        return type(e)
    finally:
        k.close()


def err(excinfo) -> KafkaError:
    e = excinfo.value
    return e.args[0] if isinstance(e, KafkaException) else e


def any_filter(**kw) -> AclBindingFilter:
    args = dict(restype=ResourceType.ANY, name=None, resource_pattern_type=ResourcePatternType.ANY,
                principal=None, host=None, operation=AclOperation.ANY,
                permission_type=AclPermissionType.ANY)
    args.update(kw)
    return AclBindingFilter(args["restype"], args["name"], args["resource_pattern_type"],
                            args["principal"], args["host"], args["operation"],
                            args["permission_type"])


def produce_error(bs: str, topic: str, **conf) -> KafkaError | None:
    """Produce one message; the delivery error (None when delivered)."""
    p = Producer({"bootstrap.servers": bs, "log_level": 0, "message.timeout.ms": 10000,
                  "topic.metadata.refresh.interval.ms": 500, **conf})
    out = []
    p.produce(topic, b"v", on_delivery=lambda e, m: out.append(e))
    p.flush(TIMEOUT)
    assert out, "no delivery report"
    return out[0]


def consume_error(bs: str, topic: str, group: str, timeout: float = 20) -> KafkaError | None:
    """Subscribe with `group`; the first error event (None if a message arrives first)."""
    c = Consumer({"bootstrap.servers": bs, "group.id": group, "auto.offset.reset": "earliest",
                  "log_level": 0})
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                return m.error()
            return None
        pytest.fail("neither a message nor an error")
    finally:
        c.close()


def test_without_an_authorizer_the_acl_apis_answer_security_disabled(broker):
    a = admin(broker.bootstrap)
    fs = a.create_acls([binding(ResourceType.TOPIC, "t", AclOperation.READ)],
                       request_timeout=TIMEOUT)
    (f,) = fs.values()
    with pytest.raises(KafkaException) as e:
        f.result(TIMEOUT)
    assert err(e).code() == KafkaError.SECURITY_DISABLED
    from kafka.errors import SecurityDisabledError
    assert describe_refusal(broker.bootstrap) is SecurityDisabledError
    # And nothing is checked: producing works as before.
    assert produce_error(broker.bootstrap, uniq("open-")) is None


def test_an_unknown_authorizer_class_fails_the_start(tmp_path):
    from broker import Broker, BrokerError
    b = Broker(tmp_path / "b", config={"authorizer.class.name": "com.example.NoSuchAuthorizer"})
    with pytest.raises(BrokerError):
        b.start()
    log = b.log_path.read_text(errors="replace")
    assert "authorizer.class.name com.example.NoSuchAuthorizer is not supported" in log


def test_create_describe_delete_round_trip(secured):
    bs = secured.bootstrap
    t = uniq("acl-")
    created = [
        binding(ResourceType.TOPIC, t, AclOperation.READ, principal="User:alice"),
        binding(ResourceType.TOPIC, t, AclOperation.WRITE, principal="User:alice", allow=False,
                host="10.0.0.1"),
        binding(ResourceType.TOPIC, t[:5], AclOperation.DESCRIBE, principal="User:bob",
                pattern=ResourcePatternType.PREFIXED),
        binding(ResourceType.GROUP, "g-" + t, AclOperation.READ, principal="User:alice"),
        binding(ResourceType.TOPIC, "*", AclOperation.DESCRIBE, principal="User:carol"),
    ]
    create(bs, created)
    # Creating the same ACL again is a no-op success, as in Kafka.
    create(bs, created[:1])

    everything = describe(bs, any_filter())
    for b in created:
        assert b in everything
    # LITERAL: exact name and pattern type.
    got = describe(bs, any_filter(restype=ResourceType.TOPIC, name=t,
                                  resource_pattern_type=ResourcePatternType.LITERAL))
    assert sorted(got) == sorted(created[:2])
    # MATCH: every ACL that applies to a topic named t (literal, prefixed and "*").
    got = describe(bs, any_filter(restype=ResourceType.TOPIC, name=t,
                                  resource_pattern_type=ResourcePatternType.MATCH))
    assert sorted(got) == sorted([created[0], created[1], created[2], created[4]])
    # By entry.
    got = describe(bs, any_filter(principal="User:alice", permission_type=AclPermissionType.ALLOW))
    assert sorted(got) == sorted([created[0], created[3]])
    got = describe(bs, any_filter(operation=AclOperation.WRITE, host="10.0.0.1"))
    assert got == [created[1]]

    # DeleteAcls: each filter reports what it removed.
    a = admin(bs)
    f_alice = any_filter(principal="User:alice")
    f_prefixed = any_filter(resource_pattern_type=ResourcePatternType.PREFIXED, name=t[:5])
    fs = a.delete_acls([f_alice, f_prefixed], request_timeout=TIMEOUT)
    assert sorted(fs[f_alice].result(TIMEOUT)) == sorted([created[0], created[1], created[3]])
    assert fs[f_prefixed].result(TIMEOUT) == [created[2]]
    left = describe(bs, any_filter())
    for b in created[:4]:
        assert b not in left
    assert created[4] in left


def test_invalid_creations_fail_one_by_one(secured):
    a = admin(secured.bootstrap)
    good = binding(ResourceType.TOPIC, uniq("ok-"), AclOperation.READ)
    bad_cluster = binding(ResourceType.BROKER, "not-the-cluster", AclOperation.ALTER)
    bad_principal = binding(ResourceType.TOPIC, "t", AclOperation.READ, principal="alice")
    fs = a.create_acls([good, bad_cluster, bad_principal], request_timeout=TIMEOUT)
    fs[good].result(TIMEOUT)
    for b in (bad_cluster, bad_principal):
        with pytest.raises(KafkaException) as e:
            fs[b].result(TIMEOUT)
        assert err(e).code() == KafkaError.INVALID_REQUEST
    assert describe(secured.bootstrap, any_filter()).count(good) == 1


def test_produce_to_a_denied_topic_is_refused(secured):
    bs = secured.bootstrap
    denied, allowed = uniq("denied-"), uniq("allowed-")
    kc.create_topic(bs, denied)
    kc.create_topic(bs, allowed)
    create(bs, [binding(ResourceType.TOPIC, denied, AclOperation.WRITE, allow=False)])
    e = produce_error(bs, denied)
    assert e is not None and e.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert produce_error(bs, allowed) is None


def test_deny_beats_allow_and_only_for_its_operation(secured):
    bs = secured.bootstrap
    t = uniq("both-")
    kc.create_topic(bs, t)
    create(bs, [
        binding(ResourceType.TOPIC, t, AclOperation.ALL, principal=ANON),
        binding(ResourceType.TOPIC, t, AclOperation.WRITE, allow=False),
    ])
    e = produce_error(bs, t)
    assert e is not None and e.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # DESCRIBE (implied by the ALLOW ALL; the DENY is for WRITE only) is still allowed.
    assert kc.watermarks(bs, t) == (0, 0)
    assert t in admin(bs).list_topics(timeout=TIMEOUT).topics


def test_prefixed_acls(secured):
    bs = secured.bootstrap
    base = uniq("team")
    blocked, other = f"{base}-b-x", f"{base}-a-x"
    kc.create_topic(bs, blocked)
    kc.create_topic(bs, other)
    create(bs, [binding(ResourceType.TOPIC, f"{base}-b-", AclOperation.WRITE, allow=False,
                        pattern=ResourcePatternType.PREFIXED)])
    e = produce_error(bs, blocked)
    assert e is not None and e.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert produce_error(bs, other) is None


def test_metadata_hides_topics_the_principal_may_not_describe(secured):
    bs = secured.bootstrap
    visible, hidden = uniq("visible-"), uniq("hidden-")
    kc.create_topic(bs, visible)
    kc.create_topic(bs, hidden)
    create(bs, [binding(ResourceType.TOPIC, hidden, AclOperation.DESCRIBE, allow=False)])
    md = admin(bs).list_topics(timeout=TIMEOUT)
    assert visible in md.topics
    assert hidden not in md.topics
    # Named, it is refused without disclosing whether it exists.
    md = admin(bs).list_topics(topic=hidden, timeout=TIMEOUT)
    assert md.topics[hidden].error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # kafka-python sees the same.
    from kafka import KafkaConsumer
    c = KafkaConsumer(bootstrap_servers=bs)
    try:
        assert visible in c.topics()
        assert hidden not in c.topics()
    finally:
        c.close()


def test_consumer_group_denied(secured):
    bs = secured.bootstrap
    t = uniq("grp-topic-")
    kc.create_topic(bs, t)
    group = uniq("denied-group-")
    create(bs, [binding(ResourceType.GROUP, group, AclOperation.READ, allow=False)])
    e = consume_error(bs, t, group)
    assert e is not None and e.code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    # kafka-python's committed() (OffsetFetch) gets the same refusal.
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import GroupAuthorizationFailedError
    c = KafkaConsumer(bootstrap_servers=bs, group_id=group, enable_auto_commit=False)
    try:
        with pytest.raises(GroupAuthorizationFailedError):
            c.committed(TopicPartition(t, 0))
    finally:
        c.close()


def test_topic_creation_needs_create_on_the_cluster_or_the_topic(secured):
    bs = secured.bootstrap
    a = admin(bs)
    prefix = uniq("blocked-")
    create(bs, [binding(ResourceType.TOPIC, prefix, AclOperation.CREATE, allow=False,
                        pattern=ResourcePatternType.PREFIXED)])
    name = prefix + "x"
    fs = a.create_topics([NewTopic(name, 1, 1)], request_timeout=TIMEOUT)
    with pytest.raises(KafkaException) as e:
        fs[name].result(TIMEOUT)
    assert err(e).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # DENY CREATE on the cluster alone: Kafka then checks CREATE on the topic, which no ACL
    # covers, so allow.everyone.if.no.acl.found lets it through.
    create(bs, [binding(ResourceType.BROKER, "kafka-cluster", AclOperation.CREATE, allow=False)])
    ok = uniq("fine-")
    a.create_topics([NewTopic(ok, 1, 1)], request_timeout=TIMEOUT)[ok].result(TIMEOUT)
    # ... but a topic with ACLs and no ALLOW CREATE for us is refused.
    guarded = uniq("guarded-")
    create(bs, [binding(ResourceType.TOPIC, guarded, AclOperation.READ, principal="User:bob")])
    fs = a.create_topics([NewTopic(guarded, 1, 1)], request_timeout=TIMEOUT)
    with pytest.raises(KafkaException) as e:
        fs[guarded].result(TIMEOUT)
    assert err(e).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_cluster_authorized_operations_are_the_principals(secured):
    d = admin(secured.bootstrap).describe_cluster(
        include_authorized_operations=True, request_timeout=TIMEOUT).result(TIMEOUT)
    # The cluster resource has ACLs (ALTER, DESCRIBE for ANONYMOUS), so only those.
    assert sorted(op.name for op in d.authorized_operations) == ["ALTER", "DESCRIBE"]


def test_acl_apis_need_alter_and_describe_on_the_cluster(broker_factory):
    b = broker_factory({"authorizer.class.name": STANDARD,
                        "allow.everyone.if.no.acl.found": True})
    bs = b.bootstrap
    # With no ACL on the cluster, everyone may manage ACLs; this ACL takes that away.
    create(bs, [binding(ResourceType.BROKER, "kafka-cluster", AclOperation.ALTER,
                        principal="User:admin")])
    fs = admin(bs).create_acls([binding(ResourceType.TOPIC, "t", AclOperation.READ)],
                                         request_timeout=TIMEOUT)
    (f,) = fs.values()
    with pytest.raises(KafkaException) as e:
        f.result(TIMEOUT)
    assert err(e).code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    # DESCRIBE is implied by ALTER only for its principal: ANONYMOUS may not describe.
    from kafka.errors import ClusterAuthorizationFailedError
    assert describe_refusal(bs) is ClusterAuthorizationFailedError


def test_super_users_and_the_strict_default(broker_factory):
    # Kafka's default: no ACL, no access; super.users get through anyway.
    strict = broker_factory({"authorizer.class.name": STANDARD})
    e = produce_error(strict.bootstrap, uniq("strict-"))
    assert e is not None and e.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    from kafka.errors import ClusterAuthorizationFailedError
    assert describe_refusal(strict.bootstrap) is ClusterAuthorizationFailedError
    su = broker_factory({"authorizer.class.name": STANDARD, "super.users": "User:ANONYMOUS"})
    assert produce_error(su.bootstrap, uniq("super-")) is None
    assert describe(su.bootstrap, any_filter()) == []


def test_idempotent_producer_needs_idempotent_write_or_write_on_a_topic(secured):
    bs = secured.bootstrap
    t = uniq("idem-")
    kc.create_topic(bs, t)
    create(bs, [
        binding(ResourceType.BROKER, "kafka-cluster", AclOperation.IDEMPOTENT_WRITE, allow=False),
        binding(ResourceType.TOPIC, "*", AclOperation.WRITE, allow=False),
        binding(ResourceType.TOPIC, "*", AclOperation.DESCRIBE),
    ])
    p = Producer({"bootstrap.servers": bs, "enable.idempotence": True, "log_level": 0,
                  "message.timeout.ms": 8000})
    p.produce(t, b"v")
    # librdkafka turns InitProducerId's CLUSTER_AUTHORIZATION_FAILED into a fatal error.
    deadline = time.monotonic() + TIMEOUT
    fatal = None
    while fatal is None and time.monotonic() < deadline:
        try:
            p.poll(0.2)
        except KafkaException as e:
            fatal = e.args[0]
    assert fatal is not None and fatal.fatal()
    assert fatal.code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED


def commit_one(bs: str, group: str, topic: str, offset: int = 1):
    """Commit an offset for partition 0 without joining (a simple consumer's commit)."""
    from confluent_kafka import TopicPartition
    c = Consumer({"bootstrap.servers": bs, "group.id": group, "log_level": 0,
                  "enable.auto.commit": False})
    try:
        return c.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    finally:
        c.close()


def test_offset_commit_needs_read_on_the_group_and_the_topic(secured):
    bs = secured.bootstrap
    open_t, closed_t = uniq("oc-open-"), uniq("oc-closed-")
    kc.create_topic(bs, open_t)
    kc.create_topic(bs, closed_t)
    group = uniq("oc-group-")
    create(bs, [binding(ResourceType.TOPIC, closed_t, AclOperation.READ, allow=False)])
    (tp,) = commit_one(bs, group, open_t)
    assert tp.error is None
    with pytest.raises(KafkaException) as e:
        commit_one(bs, group, closed_t)
    assert err(e).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    denied_group = uniq("oc-denied-")
    # DESCRIBE stays allowed, so FindCoordinator answers and the OffsetCommit is refused.
    create(bs, [binding(ResourceType.GROUP, denied_group, AclOperation.READ, allow=False),
                binding(ResourceType.GROUP, denied_group, AclOperation.DESCRIBE)])
    with pytest.raises(KafkaException) as e:
        commit_one(bs, denied_group, open_t)
    assert err(e).code() == KafkaError.GROUP_AUTHORIZATION_FAILED


def test_list_and_delete_groups(secured):
    bs = secured.bootstrap
    t = uniq("lg-")
    kc.create_topic(bs, t)
    seen, hidden = uniq("lg-seen-"), uniq("lg-hidden-")
    for g in (seen, hidden):
        commit_one(bs, g, t)
    a = admin(bs)

    def listed():
        r = a.list_consumer_groups(request_timeout=TIMEOUT).result(TIMEOUT)
        return {g.group_id for g in r.valid}

    create(bs, [binding(ResourceType.GROUP, hidden, AclOperation.DESCRIBE, allow=False),
                binding(ResourceType.GROUP, hidden, AclOperation.DELETE, allow=False)])
    # DESCRIBE on the cluster (the fixture grants it) lists every group ...
    assert {seen, hidden} <= listed()
    # ... without it, only the groups the principal may DESCRIBE.
    create(bs, [binding(ResourceType.BROKER, "kafka-cluster", AclOperation.DESCRIBE,
                        allow=False)])
    got = listed()
    assert seen in got and hidden not in got
    fs = a.delete_consumer_groups([hidden, seen], request_timeout=TIMEOUT)
    with pytest.raises(KafkaException) as e:
        fs[hidden].result(TIMEOUT)
    assert err(e).code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    fs[seen].result(TIMEOUT)


@pytest.mark.replication
def test_acls_replicate_to_every_node(cluster_factory):
    """The ACLs live in the replicated metadata: created through one node, every node
    enforces them. Replica fetches (CLUSTER_ACTION) pass while the cluster resource has no
    ACL under allow.everyone.if.no.acl.found (the nodes connect as ANONYMOUS until the
    cluster secret authenticates them)."""
    c = cluster_factory(3, config={"authorizer.class.name": STANDARD,
                                   "allow.everyone.if.no.acl.found": True})
    t = uniq("repl-acl-")
    c.create_topic(t, rf=3)
    kc.produce_confluent(c.bootstrap, t, kc.make_messages(5))     # acks=all: followers fetch
    create(c.node(1).bootstrap,
           [binding(ResourceType.TOPIC, t, AclOperation.DESCRIBE, allow=False)])
    for nd in c.live_nodes():
        c.wait_until(lambda: nd.raw_metadata([t])["topics"][t]["error_code"] == 29, 15,
                     f"node {nd.node_id} refuses DESCRIBE on {t}")
