//! Leader-side replica bookkeeping for one partition, following Kafka's rules:
//!
//! - A follower's log end offset is the offset it asks for in its next fetch.
//! - A follower is *caught up* at time T if it fetched up to the leader's log end offset as
//!   it was when that fetch arrived; `last_caught_up_ms` records the latest such time.
//! - ISR shrink: a follower in the ISR not caught up for `replica.lag.time.max.ms` leaves.
//! - ISR expand: a follower outside the ISR rejoins once its log end offset reaches the
//!   high watermark and the start of the leader's current epoch (so it holds no divergent
//!   tail from an older epoch), if it fetched within the lag time and the metadata shows its
//!   broker unfenced (KIP-841: a broker that stopped, or is shutting down, is not proposed).
//! - High watermark: the minimum log end offset over the ISR (the leader counting only
//!   what it has made durable); it never moves backwards.
//! - acks=all is acknowledged once the high watermark passes the batch AND the ISR had at
//!   least `min.insync.replicas` members; with fewer, the produce fails with
//!   NOT_ENOUGH_REPLICAS before appending (or NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR
//!   shrank while waiting).
//!
//! - While an ISR expansion is proposed but not yet committed, the high watermark is
//!   computed over the *maximal* ISR (committed plus pending members, KIP-497), so the
//!   joining follower already holds everything below it when the quorum commits. A
//!   proposal the quorum refuses is abandoned: the maximal ISR falls back to the committed
//!   one (a refused joiner that stopped fetching would otherwise hold the watermark forever).
//! - For `min.insync.replicas`, only ISR members that are caught up within the lag time
//!   count: a leader whose followers died refuses acks=all at once, even before the
//!   (quorum-committed) ISR shrink lands, or when the quorum is unreachable.
//!
//! Pure state, no I/O and no clocks of its own: callers pass `now_ms`, so every rule is
//! unit-tested here. ISR changes are proposals for the metadata quorum; this struct is
//! updated only when the quorum has accepted them (`apply_isr`).

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    pub log_end_offset: i64,
    pub last_caught_up_ms: i64,
    pub last_fetch_ms: i64,
}

#[derive(Debug, Clone)]
pub struct LeaderReplicaState {
    pub leader_id: i32,
    pub leader_epoch: i32,
    /// Offset at which this leader's epoch began (its log end when it became leader).
    pub epoch_start_offset: i64,
    pub isr: Vec<i32>,
    /// Committed ISR plus members of a pending (proposed, uncommitted) expansion.
    maximal_isr: Vec<i32>,
    followers: BTreeMap<i32, FollowerProgress>,
    high_watermark: i64,
}

impl LeaderReplicaState {
    /// State when `leader_id` becomes leader of `replicas` at `leader_epoch`. Followers start
    /// as never caught up at `now_ms`, so they have a full lag window to fetch.
    pub fn become_leader(
        leader_id: i32,
        leader_epoch: i32,
        replicas: &[i32],
        isr: &[i32],
        leader_log_end: i64,
        high_watermark: i64,
        now_ms: i64,
    ) -> Self {
        let followers = replicas
            .iter()
            .filter(|r| **r != leader_id)
            .map(|r| {
                (
                    *r,
                    FollowerProgress {
                        log_end_offset: -1,
                        last_caught_up_ms: now_ms,
                        last_fetch_ms: -1,
                    },
                )
            })
            .collect();
        LeaderReplicaState {
            leader_id,
            leader_epoch,
            epoch_start_offset: leader_log_end,
            isr: isr.to_vec(),
            maximal_isr: isr.to_vec(),
            followers,
            high_watermark,
        }
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    pub fn follower(&self, id: i32) -> Option<&FollowerProgress> {
        self.followers.get(&id)
    }

    /// Records a follower fetch at `fetch_offset` when the leader's log end was
    /// `leader_log_end`. Returns false for a replica that is not a follower here.
    pub fn on_follower_fetch(
        &mut self,
        id: i32,
        fetch_offset: i64,
        leader_log_end: i64,
        now_ms: i64,
    ) -> bool {
        let Some(f) = self.followers.get_mut(&id) else {
            return false;
        };
        f.log_end_offset = fetch_offset;
        f.last_fetch_ms = now_ms;
        if fetch_offset >= leader_log_end {
            f.last_caught_up_ms = now_ms;
        }
        true
    }

    /// Recomputes the high watermark from the leader's durable offset and the ISR
    /// followers' log end offsets. Returns the new value if it advanced.
    pub fn update_high_watermark(&mut self, leader_durable_offset: i64) -> Option<i64> {
        let mut hw = leader_durable_offset;
        for id in &self.maximal_isr {
            if *id == self.leader_id {
                continue;
            }
            match self.followers.get(id) {
                Some(f) => hw = hw.min(f.log_end_offset),
                // An ISR member we know nothing about holds the watermark still.
                None => hw = hw.min(self.high_watermark),
            }
        }
        if hw > self.high_watermark {
            self.high_watermark = hw;
            Some(hw)
        } else {
            None
        }
    }

    /// ISR members that have not caught up within `lag_max_ms` (never the leader).
    pub fn shrink_candidates(&self, now_ms: i64, lag_max_ms: i64) -> Vec<i32> {
        self.isr
            .iter()
            .filter(|id| **id != self.leader_id)
            .filter(|id| {
                self.followers
                    .get(id)
                    .is_some_and(|f| now_ms - f.last_caught_up_ms > lag_max_ms)
            })
            .copied()
            .collect()
    }

    /// Followers outside the ISR that may rejoin it: caught up to the high watermark and the
    /// epoch start, fetching within `lag_max_ms`, and `eligible` (an unfenced broker).
    pub fn expand_candidates(
        &self,
        now_ms: i64,
        lag_max_ms: i64,
        eligible: impl Fn(i32) -> bool,
    ) -> Vec<i32> {
        self.followers
            .iter()
            .filter(|(id, _)| !self.isr.contains(id))
            .filter(|(id, f)| {
                f.log_end_offset >= self.high_watermark
                    && f.log_end_offset >= self.epoch_start_offset
                    && f.last_fetch_ms >= 0
                    && now_ms - f.last_fetch_ms <= lag_max_ms
                    && eligible(**id)
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Adopts an ISR the metadata quorum has committed.
    pub fn apply_isr(&mut self, isr: &[i32]) {
        self.isr = isr.to_vec();
        self.maximal_isr = isr.to_vec();
    }

    /// Forgets a proposal the quorum refused: only the committed ISR holds the watermark.
    pub fn abandon_proposal(&mut self) {
        self.maximal_isr = self.isr.clone();
    }

    /// Records a proposed ISR: members it adds count for the high watermark at once.
    pub fn propose_isr(&mut self, proposed: &[i32]) {
        for id in proposed {
            if !self.maximal_isr.contains(id) {
                self.maximal_isr.push(*id);
            }
        }
    }

    /// The ISR the leader should propose now (shrinks and expansions applied), if it
    /// differs from the committed one.
    pub fn isr_change(
        &self,
        now_ms: i64,
        lag_max_ms: i64,
        eligible: impl Fn(i32) -> bool,
    ) -> Option<Vec<i32>> {
        let shrink = self.shrink_candidates(now_ms, lag_max_ms);
        let expand = self.expand_candidates(now_ms, lag_max_ms, eligible);
        if shrink.is_empty() && expand.is_empty() {
            return None;
        }
        let mut isr: Vec<i32> = self
            .isr
            .iter()
            .filter(|id| !shrink.contains(id))
            .copied()
            .collect();
        isr.extend(expand);
        Some(isr)
    }

    /// ISR members (the leader included) caught up within `lag_max_ms`.
    pub fn in_sync_count(&self, now_ms: i64, lag_max_ms: i64) -> usize {
        self.isr
            .iter()
            .filter(|id| {
                **id == self.leader_id
                    || self
                        .followers
                        .get(id)
                        .is_some_and(|f| now_ms - f.last_caught_up_ms <= lag_max_ms)
            })
            .count()
    }

    /// Whether an acks=all produce may be appended now (`min.insync.replicas`).
    pub fn enough_replicas(&self, min_insync_replicas: i64) -> bool {
        self.isr.len() as i64 >= min_insync_replicas
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(_: i32) -> bool {
        true
    }

    fn leader() -> LeaderReplicaState {
        LeaderReplicaState::become_leader(1, 5, &[1, 2, 3], &[1, 2, 3], 100, 90, 0)
    }

    #[test]
    fn high_watermark_is_the_isr_minimum_and_never_moves_back() {
        let mut s = leader();
        assert_eq!(
            s.update_high_watermark(100),
            None,
            "followers unknown yet: HW holds"
        );
        s.on_follower_fetch(2, 95, 100, 10);
        s.on_follower_fetch(3, 98, 100, 10);
        assert_eq!(s.update_high_watermark(100), Some(95));
        s.on_follower_fetch(2, 100, 100, 20);
        assert_eq!(
            s.update_high_watermark(99),
            Some(98),
            "leader's durable offset counts too"
        );
        s.on_follower_fetch(3, 50, 100, 30); // a follower that truncated
        assert_eq!(s.update_high_watermark(100), None);
        assert_eq!(s.high_watermark(), 98);
    }

    #[test]
    fn lagging_follower_leaves_isr_and_rejoins_after_catching_up() {
        let mut s = leader();
        s.on_follower_fetch(2, 100, 100, 1_000);
        s.on_follower_fetch(3, 80, 100, 1_000); // behind: not caught up
        assert!(s.shrink_candidates(20_000, 30_000).is_empty());
        assert_eq!(s.shrink_candidates(31_000, 30_000), vec![3]);
        s.apply_isr(&[1, 2]);
        assert!(s.enough_replicas(2) && !s.enough_replicas(3));
        s.update_high_watermark(100);
        assert_eq!(
            s.high_watermark(),
            100,
            "HW no longer waits for the removed follower"
        );
        assert!(s.expand_candidates(31_000, 30_000, any).is_empty());
        s.on_follower_fetch(3, 100, 100, 32_000);
        assert_eq!(s.expand_candidates(32_000, 30_000, any), vec![3]);
    }

    #[test]
    fn rejoin_requires_reaching_the_current_epoch_start() {
        let mut s = LeaderReplicaState::become_leader(1, 6, &[1, 2], &[1], 200, 150, 0);
        s.on_follower_fetch(2, 160, 200, 5);
        assert!(
            s.expand_candidates(5, 30_000, any).is_empty(),
            "past HW but before this epoch's start"
        );
        s.on_follower_fetch(2, 200, 200, 6);
        assert_eq!(s.expand_candidates(6, 30_000, any), vec![2]);
    }

    #[test]
    fn pending_expansion_holds_the_high_watermark_for_the_joiner() {
        let mut s = LeaderReplicaState::become_leader(1, 1, &[1, 2], &[1], 100, 100, 0);
        s.on_follower_fetch(2, 100, 100, 1);
        assert_eq!(s.isr_change(1, 30_000, any), Some(vec![1, 2]));
        s.propose_isr(&[1, 2]);
        assert_eq!(s.update_high_watermark(120), None, "joiner at 100 holds HW");
        s.on_follower_fetch(2, 120, 120, 2);
        assert_eq!(s.update_high_watermark(120), Some(120));
        s.apply_isr(&[1, 2]);
        assert_eq!(s.isr_change(2, 30_000, any), None);
    }

    // The controlled-shutdown deadlock: the old leader fetched once from the new leader
    // before exiting, so it sat at the (then stalled) watermark; proposing it (refused: it
    // is fenced) put it in the maximal ISR, which held the watermark at its offset forever.
    #[test]
    fn a_fenced_or_silent_follower_is_not_proposed_and_a_refusal_releases_the_watermark() {
        let mut s = LeaderReplicaState::become_leader(2, 1, &[1, 2, 3], &[2, 3], 100, 100, 0);
        s.on_follower_fetch(1, 100, 100, 10);
        s.on_follower_fetch(3, 100, 100, 10);
        let unfenced = |id: i32| id != 1;
        assert_eq!(
            s.isr_change(20, 30_000, unfenced),
            None,
            "broker 1 is fenced"
        );
        assert_eq!(
            s.isr_change(40_000, 30_000, any),
            Some(vec![2]),
            "1 did not fetch within the lag time: not proposed (3 lags: shrunk)"
        );

        // Proposed while eligible, then refused by the quorum.
        assert_eq!(s.isr_change(20, 30_000, any), Some(vec![2, 3, 1]));
        s.propose_isr(&[2, 3, 1]);
        s.on_follower_fetch(3, 150, 150, 30);
        assert_eq!(
            s.update_high_watermark(150),
            None,
            "the joiner holds the HW"
        );
        s.abandon_proposal();
        assert_eq!(s.update_high_watermark(150), Some(150));
    }

    #[test]
    fn lagging_members_do_not_count_for_min_insync() {
        let mut s = leader();
        s.on_follower_fetch(2, 100, 100, 1_000);
        assert_eq!(s.in_sync_count(1_000, 30_000), 3);
        assert_eq!(s.in_sync_count(31_500, 30_000), 1);
    }

    #[test]
    fn unknown_replica_fetch_is_refused() {
        let mut s = leader();
        assert!(!s.on_follower_fetch(9, 0, 100, 0));
    }
}
