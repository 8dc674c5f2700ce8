//! State-machine tests over an in-memory offsets log, on tokio's paused clock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use crate::log::{AppendWait, KeyValue, OffsetsLog};
use crate::*;

#[derive(Debug, Default)]
struct MemLog {
    parts: Mutex<HashMap<i32, Vec<KeyValue>>>,
    fail: AtomicBool,
    /// Acknowledgement delays (ms) for the next appends, in order (default: none).
    ack_delays_ms: Mutex<std::collections::VecDeque<u64>>,
}

impl OffsetsLog for MemLog {
    fn append(
        &self,
        partition: i32,
        _: i32,
        records: Vec<KeyValue>,
    ) -> Result<AppendWait, GroupError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        self.parts
            .lock()
            .unwrap()
            .entry(partition)
            .or_default()
            .extend(records);
        let delay = self.ack_delays_ms.lock().unwrap().pop_front().unwrap_or(0);
        Ok(Box::pin(async move {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            Ok(())
        }))
    }
    fn read_all(&self, partition: i32) -> Result<Vec<KeyValue>, GroupError> {
        Ok(self
            .parts
            .lock()
            .unwrap()
            .get(&partition)
            .cloned()
            .unwrap_or_default())
    }
}

fn config(delay_ms: u64) -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: delay_ms,
        offsets_topic_num_partitions: 1,
        ..GroupConfig::default()
    }
}

fn coordinator(delay_ms: u64) -> (Arc<GroupCoordinator>, Arc<MemLog>) {
    let log = Arc::new(MemLog::default());
    let c = GroupCoordinator::with_log(config(delay_ms), log.clone());
    c.load_partition(0, 1).unwrap();
    (c, log)
}

fn join_req(member: &str, instance: Option<&str>, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        group_id: "g".into(),
        member_id: member.into(),
        group_instance_id: instance.map(String::from),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
            .collect(),
        require_known_member_id: true,
    }
}

fn sync_req(member: &str, generation: i32, assignments: &[(&str, &str)]) -> SyncRequest {
    SyncRequest {
        group_id: "g".into(),
        generation_id: generation,
        member_id: member.into(),
        group_instance_id: None,
        protocol_type: None,
        protocol_name: None,
        assignments: assignments
            .iter()
            .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
            .collect(),
    }
}

/// Joins as a new dynamic member through MEMBER_ID_REQUIRED; returns the pending join.
async fn join_new(
    c: &Arc<GroupCoordinator>,
    protocols: &[&str],
) -> (String, tokio::task::JoinHandle<JoinResponse>) {
    let first = c.join_group(join_req("", None, protocols)).await;
    assert_eq!(first.error, Some(GroupError::MemberIdRequired));
    assert!(first.member_id.starts_with("client-"));
    let id = first.member_id.clone();
    let c2 = Arc::clone(c);
    let req = join_req(&id, None, protocols);
    (id, tokio::spawn(async move { c2.join_group(req).await }))
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn member_id_required_then_join_sync_heartbeat() {
    let (c, _) = coordinator(3000);
    let (id, pending) = join_new(&c, &["range"]).await;
    let joined = pending.await.unwrap();
    assert_eq!(joined.error, None);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader, id);
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    assert_eq!(joined.members.len(), 1);
    assert_eq!(joined.members[0].metadata, Bytes::from("meta-range"));
    assert_eq!(c.heartbeat("g", 1, &id, None), Ok(()));
    let synced = c.sync_group(sync_req(&id, 1, &[(&id, "A")])).await;
    assert_eq!(synced.error, None);
    assert_eq!(synced.assignment, Bytes::from("A"));
    assert_eq!(c.describe_group("g").unwrap().state, GroupState::Stable);
    assert_eq!(
        c.heartbeat("g", 0, &id, None),
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(
        c.heartbeat("g", 1, "nobody", None),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        c.heartbeat("other", 1, &id, None),
        Err(GroupError::UnknownMemberId)
    );
    // Leave: the group empties.
    let left = c
        .leave_group(
            "g",
            &[LeavingMember {
                member_id: id.clone(),
                group_instance_id: None,
            }],
        )
        .unwrap();
    assert_eq!(left, vec![Ok(())]);
    let d = c.describe_group("g").unwrap();
    assert_eq!(d.state, GroupState::Empty);
    assert!(d.members.is_empty());
}

#[tokio::test(start_paused = true)]
async fn old_join_versions_get_a_member_id_directly() {
    let (c, _) = coordinator(0);
    let mut req = join_req("", None, &["range"]);
    req.require_known_member_id = false;
    let r = c.join_group(req).await;
    assert_eq!(r.error, None);
    assert!(!r.member_id.is_empty());
    assert_eq!(r.leader, r.member_id);
}

#[tokio::test(start_paused = true)]
async fn session_timeout_bounds() {
    let (c, _) = coordinator(0);
    let mut req = join_req("", None, &["range"]);
    req.session_timeout_ms = 1000;
    assert_eq!(
        c.join_group(req).await.error,
        Some(GroupError::InvalidSessionTimeout)
    );
}

#[tokio::test(start_paused = true)]
async fn two_members_protocol_vote_and_follower_waits_for_leader() {
    let (c, _) = coordinator(0);
    let (a, ja) = join_new(&c, &["roundrobin", "range"]).await;
    let ra = ja.await.unwrap();
    assert_eq!(ra.generation_id, 1);
    c.sync_group(sync_req(&a, 1, &[(&a, "all")])).await;
    // A different protocol type is refused.
    let mut other = join_req("", None, &["range"]);
    other.protocol_type = "connect".into();
    assert_eq!(
        c.join_group(other).await.error,
        Some(GroupError::InconsistentGroupProtocol)
    );
    // So is a protocol nobody else supports.
    assert_eq!(
        c.join_group(join_req("", None, &["sticky"])).await.error,
        Some(GroupError::InconsistentGroupProtocol)
    );
    // B prefers range; A prefers roundrobin but B's join makes range... a tie broken by
    // the first member's preference order.
    let (b, jb) = join_new(&c, &["range", "roundrobin"]).await;
    settle().await;
    assert_eq!(
        c.heartbeat("g", 1, &a, None),
        Err(GroupError::RebalanceInProgress)
    );
    let ca = Arc::clone(&c);
    let a2 = a.clone();
    let ja = tokio::spawn(async move {
        ca.join_group(join_req(&a2, None, &["roundrobin", "range"]))
            .await
    });
    let (ra, rb) = (ja.await.unwrap(), jb.await.unwrap());
    assert_eq!(ra.generation_id, 2);
    assert_eq!(rb.generation_id, 2);
    assert_eq!(ra.leader, a);
    assert_eq!(ra.members.len(), 2);
    assert!(rb.members.is_empty());
    assert_eq!(ra.protocol_name.as_deref(), Some("roundrobin"));
    // B syncs first and waits for the leader.
    let cb = Arc::clone(&c);
    let b2 = b.clone();
    let sb = tokio::spawn(async move { cb.sync_group(sync_req(&b2, 2, &[])).await });
    settle().await;
    assert!(!sb.is_finished());
    let sa = c
        .sync_group(sync_req(&a, 2, &[(&a, "p0"), (&b, "p1")]))
        .await;
    assert_eq!(sa.assignment, Bytes::from("p0"));
    assert_eq!(sb.await.unwrap().assignment, Bytes::from("p1"));
    assert_eq!(
        c.sync_group(sync_req(&a, 1, &[])).await.error,
        Some(GroupError::IllegalGeneration)
    );
}

#[tokio::test(start_paused = true)]
async fn vote_picks_the_most_preferred_protocol() {
    let (c, _) = coordinator(0);
    let mut j = join_req("", None, &["a", "b"]);
    j.require_known_member_id = false;
    let c1 = Arc::clone(&c);
    let m1 = tokio::spawn(async move { c1.join_group(j).await });
    let mut j2 = join_req("", None, &["b", "a"]);
    j2.require_known_member_id = false;
    let c2 = Arc::clone(&c);
    let m2 = tokio::spawn(async move { c2.join_group(j2).await });
    let mut j3 = join_req("", None, &["b"]);
    j3.require_known_member_id = false;
    let c3 = Arc::clone(&c);
    let m3 = tokio::spawn(async move { c3.join_group(j3).await });
    // The initial delay is 0, but all three arrive before the timer fires.
    let (r1, r2, r3) = (m1.await.unwrap(), m2.await.unwrap(), m3.await.unwrap());
    assert_eq!(r1.generation_id, r2.generation_id);
    assert_eq!(r2.generation_id, r3.generation_id);
    assert_eq!(r1.protocol_name.as_deref(), Some("b"));
}

#[tokio::test(start_paused = true)]
async fn expired_session_triggers_rebalance() {
    let (c, _) = coordinator(0);
    let (a, ja) = join_new(&c, &["range"]).await;
    ja.await.unwrap();
    c.sync_group(sync_req(&a, 1, &[])).await;
    let (b, jb) = join_new(&c, &["range"]).await;
    settle().await;
    let ca = Arc::clone(&c);
    let a2 = a.clone();
    let ja = tokio::spawn(async move { ca.join_group(join_req(&a2, None, &["range"])).await });
    assert_eq!(jb.await.unwrap().generation_id, 2);
    ja.await.unwrap();
    c.sync_group(sync_req(&a, 2, &[])).await;
    // A keeps heartbeating; B goes silent for longer than its session (10 s).
    for _ in 0..4 {
        tokio::time::advance(Duration::from_secs(3)).await;
        settle().await;
        let r = c.heartbeat("g", 2, &a, None);
        if r.is_err() {
            assert_eq!(r, Err(GroupError::RebalanceInProgress));
            break;
        }
    }
    assert_eq!(
        c.heartbeat("g", 2, &b, None),
        Err(GroupError::UnknownMemberId)
    );
    let r = c.join_group(join_req(&a, None, &["range"])).await;
    assert_eq!(r.generation_id, 3);
    assert_eq!(r.members.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn rebalance_timeout_removes_members_that_do_not_rejoin() {
    let (c, _) = coordinator(0);
    let (a, ja) = join_new(&c, &["range"]).await;
    ja.await.unwrap();
    c.sync_group(sync_req(&a, 1, &[])).await;
    // B joins; A never rejoins (but its session would still be alive: it heartbeats).
    let (_b, jb) = join_new(&c, &["range"]).await;
    let ca = Arc::clone(&c);
    let a2 = a.clone();
    let hb = tokio::spawn(async move {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let _ = ca.heartbeat("g", 1, &a2, None);
        }
    });
    let rb = jb.await.unwrap();
    assert_eq!(rb.generation_id, 2);
    assert_eq!(
        rb.members.len(),
        1,
        "A was dropped after the 30 s rebalance timeout"
    );
    hb.abort();
}

#[tokio::test(start_paused = true)]
async fn initial_delay_extends_while_members_arrive() {
    let (c, _) = coordinator(3000);
    let start = tokio::time::Instant::now();
    let (_a, ja) = join_new(&c, &["range"]).await;
    settle().await;
    tokio::time::advance(Duration::from_secs(2)).await;
    let (_b, jb) = join_new(&c, &["range"]).await;
    settle().await;
    tokio::time::advance(Duration::from_millis(1500)).await;
    settle().await;
    assert!(
        !ja.is_finished(),
        "still waiting for more members after the first delay"
    );
    let (ra, rb) = (ja.await.unwrap(), jb.await.unwrap());
    assert_eq!(ra.generation_id, 1);
    assert_eq!(rb.generation_id, 1);
    assert_eq!(ra.members.len() + rb.members.len(), 2);
    assert_eq!(start.elapsed(), Duration::from_secs(6));
}

#[tokio::test(start_paused = true)]
async fn static_member_rejoin_replaces_and_fences_the_old_id() {
    let (c, log) = coordinator(0);
    let mut req = join_req("", Some("i-1"), &["range"]);
    req.require_known_member_id = true;
    let r = c.join_group(req.clone()).await;
    assert_eq!(r.error, None, "static members skip MEMBER_ID_REQUIRED");
    let old = r.member_id.clone();
    let s = c.sync_group(sync_req(&old, 1, &[(&old, "mine")])).await;
    assert_eq!(s.assignment, Bytes::from("mine"));
    // Restarted process: same instance id, no member id. No rebalance.
    let r2 = c.join_group(req.clone()).await;
    assert_eq!(r2.error, None);
    assert_ne!(r2.member_id, old);
    assert_eq!(r2.generation_id, 1);
    assert_eq!(
        r2.leader, old,
        "the old leader id keeps it from re-assigning"
    );
    assert!(r2.members.is_empty());
    let s2 = c.sync_group(sync_req(&r2.member_id, 1, &[])).await;
    assert_eq!(s2.error, None);
    assert_eq!(s2.assignment, Bytes::from("mine"));
    assert_eq!(
        c.heartbeat("g", 1, &old, Some("i-1")),
        Err(GroupError::FencedInstanceId)
    );
    assert_eq!(c.heartbeat("g", 1, &r2.member_id, Some("i-1")), Ok(()));
    // The replacement was persisted: a reload knows the new member id.
    let c2 = GroupCoordinator::with_log(config(0), log.clone());
    c2.load_partition(0, 2).unwrap();
    let d = c2.describe_group("g").unwrap();
    assert_eq!(d.state, GroupState::Stable);
    assert_eq!(d.members[0].member_id, r2.member_id);
    assert_eq!(d.members[0].group_instance_id.as_deref(), Some("i-1"));
    // Its session still expires.
    c.unload_partition(0);
    tokio::time::advance(Duration::from_secs(11)).await;
    settle().await;
    let d = c2.describe_group("g").unwrap();
    assert_eq!(d.state, GroupState::Empty);
}

#[tokio::test(start_paused = true)]
async fn commit_generation_checks_and_reload() {
    let (c, log) = coordinator(0);
    let off = |p: i32, o: i64| OffsetToCommit {
        topic: "t".into(),
        partition: p,
        offset: o,
        leader_epoch: 4,
        metadata: Some("m".into()),
    };
    let simple = |g: &str| CommitRequest {
        group_id: g.into(),
        generation_id: -1,
        member_id: String::new(),
        group_instance_id: None,
    };
    // A group that does not exist: a simple commit creates it.
    assert_eq!(
        c.commit_offsets(simple("s"), vec![off(0, 10)]).await,
        vec![Ok(())]
    );
    let mut big = off(1, 1);
    big.metadata = Some("x".repeat(5000));
    assert_eq!(
        c.commit_offsets(simple("s"), vec![big, off(2, 7)]).await,
        vec![Err(GroupError::OffsetMetadataTooLarge), Ok(())]
    );
    let got = c
        .fetch_offsets("s", Some(&[("t".into(), vec![0, 1, 2])]))
        .unwrap();
    assert_eq!(got[0].offset, 10);
    assert_eq!(got[0].leader_epoch, 4);
    assert_eq!(got[0].metadata, "m");
    assert_eq!(got[1].offset, -1);
    assert_eq!(got[2].offset, 7);
    // A generation >= 0 on an unknown group is stale.
    let stale = CommitRequest {
        group_id: "nope".into(),
        generation_id: 3,
        member_id: "x".into(),
        group_instance_id: None,
    };
    assert_eq!(
        c.commit_offsets(stale, vec![off(0, 1)]).await,
        vec![Err(GroupError::IllegalGeneration)]
    );
    // A managed group.
    let (a, ja) = join_new(&c, &["range"]).await;
    ja.await.unwrap();
    let member = |gen: i32, id: &str| CommitRequest {
        group_id: "g".into(),
        generation_id: gen,
        member_id: id.into(),
        group_instance_id: None,
    };
    assert_eq!(
        c.commit_offsets(member(1, &a), vec![off(0, 1)]).await,
        vec![Err(GroupError::RebalanceInProgress)],
        "CompletingRebalance"
    );
    c.sync_group(sync_req(&a, 1, &[])).await;
    assert_eq!(
        c.commit_offsets(simple("g"), vec![off(0, 1)]).await,
        vec![Err(GroupError::UnknownMemberId)]
    );
    assert_eq!(
        c.commit_offsets(member(0, &a), vec![off(0, 1)]).await,
        vec![Err(GroupError::IllegalGeneration)]
    );
    assert_eq!(
        c.commit_offsets(member(1, &a), vec![off(0, 42)]).await,
        vec![Ok(())]
    );
    // Failed writes are not applied.
    log.fail.store(true, Ordering::SeqCst);
    assert_eq!(
        c.commit_offsets(member(1, &a), vec![off(0, 43)]).await,
        vec![Err(GroupError::CoordinatorNotAvailable)]
    );
    log.fail.store(false, Ordering::SeqCst);
    assert_eq!(c.fetch_offsets("g", None).unwrap()[0].offset, 42);
    // Reload from the log (a new leader): offsets and the stable group come back.
    c.unload_partition(0);
    assert_eq!(c.fetch_offsets("g", None), Err(GroupError::NotCoordinator));
    let c2 = GroupCoordinator::with_log(config(0), log.clone());
    c2.load_partition(0, 2).unwrap();
    let all = c2.fetch_offsets("g", None).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].offset, all[0].leader_epoch), (42, 4));
    assert_eq!(c2.fetch_offsets("s", None).unwrap().len(), 2);
    assert_eq!(c2.describe_group("g").unwrap().state, GroupState::Stable);
    assert_eq!(c2.heartbeat("g", 1, &a, None), Ok(()));
    // Listing and deletion.
    let (err, groups) = c2.list_groups(&[]);
    assert_eq!(err, None);
    assert_eq!(
        groups
            .iter()
            .map(|g| g.group_id.as_str())
            .collect::<Vec<_>>(),
        vec!["g", "s"]
    );
    let (_, stable) = c2.list_groups(&["stable".into()]);
    assert_eq!(stable.len(), 1);
    assert_eq!(c2.delete_group("g").await, Err(GroupError::NonEmptyGroup));
    assert_eq!(c2.delete_group("s").await, Ok(()));
    assert_eq!(c2.delete_group("s").await, Err(GroupError::GroupIdNotFound));
    let c3 = GroupCoordinator::with_log(config(0), log.clone());
    c3.load_partition(0, 3).unwrap();
    assert!(c3.fetch_offsets("s", None).unwrap().is_empty());
    assert_eq!(c3.describe_group("s").unwrap().state, GroupState::Dead);
}

#[tokio::test(start_paused = true)]
async fn offset_delete_respects_subscriptions() {
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let (c, _) = coordinator(0);
    let mut meta = BytesMut::new();
    meta.put_i16(0);
    ConsumerProtocolSubscription::default()
        .with_topics(vec![StrBytes::from_static_str("t")])
        .encode(&mut meta, 0)
        .unwrap();
    let mut req = join_req("", None, &["range"]);
    req.require_known_member_id = false;
    req.protocols = vec![("range".into(), meta.freeze())];
    let r = c.join_group(req).await;
    c.sync_group(sync_req(&r.member_id, 1, &[])).await;
    let member = CommitRequest {
        group_id: "g".into(),
        generation_id: 1,
        member_id: r.member_id.clone(),
        group_instance_id: None,
    };
    let off = |t: &str| OffsetToCommit {
        topic: t.into(),
        partition: 0,
        offset: 5,
        leader_epoch: -1,
        metadata: None,
    };
    c.commit_offsets(member, vec![off("t"), off("u")]).await;
    let res = c
        .delete_offsets("g", &[("t".into(), vec![0]), ("u".into(), vec![0])])
        .await
        .unwrap();
    assert_eq!(res[0].2, Err(GroupError::GroupSubscribedToTopic));
    assert_eq!(res[1].2, Ok(()));
    let left = c.fetch_offsets("g", None).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].topic, "t");
    assert_eq!(
        c.delete_offsets("zzz", &[]).await,
        Err(GroupError::GroupIdNotFound)
    );
}

#[tokio::test(start_paused = true)]
async fn loading_and_not_coordinator() {
    let log = Arc::new(MemLog::default());
    let c = GroupCoordinator::with_log(config(0), log);
    assert_eq!(
        c.heartbeat("g", 1, "m", None),
        Err(GroupError::NotCoordinator)
    );
    let r = c.join_group(join_req("", None, &["range"])).await;
    assert_eq!(r.error, Some(GroupError::NotCoordinator));
}

#[tokio::test(start_paused = true)]
async fn an_earlier_commit_acknowledged_late_does_not_overwrite_a_later_one() {
    let (c, log) = coordinator(0);
    // The first commit's acks=all wait finishes after the second's.
    log.ack_delays_ms.lock().unwrap().extend([500, 0]);
    let commit = |o: i64| {
        let c = Arc::clone(&c);
        async move {
            let req = CommitRequest {
                group_id: "s".into(),
                generation_id: -1,
                member_id: String::new(),
                group_instance_id: None,
            };
            let off = OffsetToCommit {
                topic: "t".into(),
                partition: 0,
                offset: o,
                leader_epoch: -1,
                metadata: None,
            };
            c.commit_offsets(req, vec![off]).await
        }
    };
    let first = tokio::spawn(commit(10));
    tokio::task::yield_now().await;
    let second = tokio::spawn(commit(20));
    assert_eq!(second.await.unwrap(), vec![Ok(())]);
    assert_eq!(first.await.unwrap(), vec![Ok(())]);
    let got = c
        .fetch_offsets("s", Some(&[("t".into(), vec![0])]))
        .unwrap();
    assert_eq!(got[0].offset, 20, "the cache must follow the log order");
}

#[tokio::test(start_paused = true)]
async fn commits_are_appended_when_made_not_when_awaited() {
    // A connection's handler makes the commits in the order sent and awaits them later, in
    // any order (each in a task of its own): the order of the calls must be the log order.
    let (c, _log) = coordinator(0);
    let commit = |o: i64| {
        let req = CommitRequest {
            group_id: "s".into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
        };
        let off = OffsetToCommit {
            topic: "t".into(),
            partition: 0,
            offset: o,
            leader_epoch: -1,
            metadata: None,
        };
        c.commit_offsets(req, vec![off])
    };
    let pending: Vec<_> = (1..=50).map(commit).collect();
    // Awaited last-made first: the first-made commit still must not win.
    for p in pending.into_iter().rev() {
        assert_eq!(p.await, vec![Ok(())]);
    }
    let got = c
        .fetch_offsets("s", Some(&[("t".into(), vec![0])]))
        .unwrap();
    assert_eq!(got[0].offset, 50);
}

#[tokio::test(start_paused = true)]
async fn a_tombstone_acknowledged_late_does_not_delete_a_later_commit() {
    // Log order: commit 5, tombstone, commit 7; the tombstone's ack comes last. A replay
    // of the log ends at 7, so must the cache.
    let (c, log) = coordinator(0);
    let commit = |o: i64| {
        let req = CommitRequest {
            group_id: "s".into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
        };
        let off = OffsetToCommit {
            topic: "t".into(),
            partition: 0,
            offset: o,
            leader_epoch: -1,
            metadata: None,
        };
        c.commit_offsets(req, vec![off])
    };
    assert_eq!(commit(5).await, vec![Ok(())]);
    log.ack_delays_ms.lock().unwrap().extend([500, 0]);
    let deleting = {
        let c = Arc::clone(&c);
        tokio::spawn(async move { c.delete_offsets("s", &[("t".into(), vec![0])]).await })
    };
    tokio::task::yield_now().await; // the tombstone is appended
    assert_eq!(commit(7).await, vec![Ok(())]);
    let res = deleting.await.unwrap().unwrap();
    assert_eq!(res[0].2, Ok(()));
    let got = c
        .fetch_offsets("s", Some(&[("t".into(), vec![0])]))
        .unwrap();
    assert_eq!(got[0].offset, 7, "the cache must follow the log order");
}
