//! Node-wide replication counters for metrics (Kafka's ReplicaManager IsrShrinksPerSec /
//! IsrExpandsPerSec and leader changes), as process statics: a relaxed add per event.

use std::sync::atomic::{AtomicU64, Ordering};

/// ISR changes this node (as leader) got committed that removed replicas.
pub static ISR_SHRINKS: AtomicU64 = AtomicU64::new(0);
/// ISR changes this node (as leader) got committed that added replicas.
pub static ISR_EXPANDS: AtomicU64 = AtomicU64::new(0);
/// Leader changes of partitions this node holds a replica of: the metadata named a new
/// leader (a higher leader epoch than the replica had) after the replica knew an earlier
/// one. A partition's first leader at creation is not counted.
pub static LEADER_ELECTIONS: AtomicU64 = AtomicU64::new(0);
/// Reads refused because stored data failed verification (batch CRC, or the structure
/// checks: base offsets, leader epochs). A client retrying the same range counts again.
pub static STORAGE_CORRUPTIONS: AtomicU64 = AtomicU64::new(0);

pub fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Which counter an ISR change moves: by size, as Kafka counts a shrink or an expand.
pub(crate) fn count_isr_change(old: usize, new: usize) {
    match new.cmp(&old) {
        std::cmp::Ordering::Less => add(&ISR_SHRINKS, 1),
        std::cmp::Ordering::Greater => add(&ISR_EXPANDS, 1),
        std::cmp::Ordering::Equal => {}
    }
}

/// Whether a replica moving from `before` to `after` leader epoch saw an election.
pub(crate) fn is_leader_change(before: i32, after: i32, new_leader: i32) -> bool {
    before >= 0 && after > before && new_leader >= 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_change_needs_a_known_earlier_epoch_and_a_leader() {
        assert!(!is_leader_change(-1, 0, 1), "creation");
        assert!(is_leader_change(0, 1, 2));
        assert!(!is_leader_change(1, 1, 2), "same epoch");
        assert!(!is_leader_change(1, 2, -1), "went offline");
    }
}
