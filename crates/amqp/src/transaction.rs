//! One channel's transaction (sans-IO): after tx.select, publishes and settlements are
//! buffered until tx.commit (routed, stored and applied then) or dropped by tx.rollback
//! (settled deliveries are unacked again); commit-oks go out in commit order, each only
//! once all of its publishes are durable.

use std::collections::BTreeMap;

use crate::codes::AmqpError;
use crate::publish::Complete;

/// Most message bytes one transaction may buffer before tx.commit.
pub const TX_MAX_BYTES: usize = 64 << 20;

/// `S`: a settlement taken out of the channel's unacked deliveries.
#[derive(Debug)]
pub struct Transaction<S> {
    active: bool,
    publishes: Vec<Complete>,
    bytes: usize,
    settles: Vec<S>,
    next_commit: u64,
    /// Outcome per commit number: None while its publishes are being stored.
    commits: BTreeMap<u64, Option<bool>>,
}

impl<S> Default for Transaction<S> {
    fn default() -> Self {
        Transaction {
            active: false,
            publishes: Vec::new(),
            bytes: 0,
            settles: Vec::new(),
            next_commit: 0,
            commits: BTreeMap::new(),
        }
    }
}

impl<S> Transaction<S> {
    /// tx.select.
    pub fn select(&mut self) {
        self.active = true;
    }

    /// tx.select was used: publishes and settlements wait for tx.commit.
    pub fn active(&self) -> bool {
        self.active
    }

    /// Body bytes of the publishes waiting for tx.commit.
    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    /// Publishes and settlements waiting for tx.commit.
    pub fn uncommitted(&self) -> (usize, usize) {
        (self.publishes.len(), self.settles.len())
    }

    /// Buffers a publish; more than `TX_MAX_BYTES` of bodies is PRECONDITION_FAILED.
    pub fn publish(&mut self, p: Complete) -> Result<(), AmqpError> {
        self.bytes += p.body.len();
        if self.bytes > TX_MAX_BYTES {
            return Err(AmqpError::precondition(format!(
                "transaction holds more than {TX_MAX_BYTES} bytes of messages"
            )));
        }
        self.publishes.push(p);
        Ok(())
    }

    pub fn settle(&mut self, s: impl IntoIterator<Item = S>) {
        self.settles.extend(s);
    }

    /// tx.commit: the buffered publishes and settlements, and the commit's number (see
    /// `decide`).
    pub fn commit(&mut self) -> (u64, Vec<Complete>, Vec<S>) {
        self.bytes = 0;
        self.next_commit += 1;
        self.commits.insert(self.next_commit, None);
        let publishes = std::mem::take(&mut self.publishes);
        (
            self.next_commit,
            publishes,
            std::mem::take(&mut self.settles),
        )
    }

    /// tx.rollback (or the channel closing): publishes are dropped; the settlements are
    /// returned, to be unacked again.
    pub fn rollback(&mut self) -> Vec<S> {
        self.publishes.clear();
        self.bytes = 0;
        std::mem::take(&mut self.settles)
    }

    /// Whether commit `n`'s publishes were all stored.
    pub fn decide(&mut self, n: u64, ok: bool) {
        if let Some(slot) = self.commits.get_mut(&n) {
            *slot = Some(ok);
        }
    }

    /// How many commit-oks to send now, in commit order. A commit whose publishes could
    /// not be stored is an error (the connection closes: the client cannot tell which
    /// of them are there).
    pub fn decided(&mut self) -> Result<usize, AmqpError> {
        let mut oks = 0;
        while let Some((&n, &Some(ok))) = self.commits.iter().next() {
            self.commits.remove(&n);
            if !ok {
                return Err(AmqpError::internal(
                    "a committed publish could not be stored",
                ));
            }
            oks += 1;
        }
        Ok(oks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::{INTERNAL_ERROR, PRECONDITION_FAILED};
    use amq_protocol::protocol::basic;

    fn publish(size: usize) -> Complete {
        Complete {
            publish: basic::Publish::default(),
            properties: Default::default(),
            body: vec![0; size],
        }
    }

    #[test]
    fn commit_hands_out_what_was_buffered_once() {
        let mut t = Transaction::<u64>::default();
        assert!(!t.active());
        t.select();
        assert!(t.active());
        t.publish(publish(3)).unwrap();
        t.publish(publish(4)).unwrap();
        t.settle([7, 8]);
        let (n, p, s) = t.commit();
        assert_eq!(n, 1);
        assert_eq!(
            p.iter().map(|p| p.body.len()).collect::<Vec<_>>(),
            vec![3, 4]
        );
        assert_eq!(s, vec![7, 8]);
        let (n, p, s) = t.commit();
        assert_eq!(n, 2);
        assert!(p.is_empty() && s.is_empty());
        assert!(t.active(), "a channel stays transactional");
    }

    #[test]
    fn rollback_drops_publishes_and_returns_settlements() {
        let mut t = Transaction::<u64>::default();
        t.select();
        t.publish(publish(3)).unwrap();
        t.settle([5]);
        assert_eq!(t.rollback(), vec![5]);
        let (_, p, s) = t.commit();
        assert!(p.is_empty() && s.is_empty());
    }

    #[test]
    fn byte_limit_counts_until_commit_or_rollback() {
        let mut t = Transaction::<u64>::default();
        t.select();
        t.publish(publish(TX_MAX_BYTES - 1)).unwrap();
        t.rollback();
        t.publish(publish(TX_MAX_BYTES)).unwrap();
        let e = t.publish(publish(1)).unwrap_err();
        assert_eq!(e.code, PRECONDITION_FAILED);
        assert_eq!(
            e.text,
            format!("transaction holds more than {TX_MAX_BYTES} bytes of messages")
        );
    }

    #[test]
    fn commit_oks_go_out_in_commit_order() {
        let mut t = Transaction::<u64>::default();
        t.select();
        let (a, _, _) = t.commit();
        let (b, _, _) = t.commit();
        t.decide(b, true);
        assert_eq!(
            t.decided().unwrap(),
            0,
            "the first commit is not durable yet"
        );
        t.decide(a, true);
        assert_eq!(t.decided().unwrap(), 2);
        assert_eq!(t.decided().unwrap(), 0);
    }

    #[test]
    fn a_failed_commit_is_an_internal_error() {
        let mut t = Transaction::<u64>::default();
        t.select();
        let (a, _, _) = t.commit();
        t.decide(a, false);
        assert_eq!(t.decided().unwrap_err().code, INTERNAL_ERROR);
        t.decide(99, true);
        assert_eq!(t.decided().unwrap(), 0);
    }
}
