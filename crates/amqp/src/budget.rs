//! Memory budgets for message bodies being received: a publish's body frames are buffered
//! until the body is whole, so a client that starts many large publishes (one per channel)
//! and never finishes them would grow the broker by channels x max message size. Each
//! connection's buffered body bytes count against its own budget and the node's; while
//! either is spent, the connection's next `basic.publish` waits and nothing after it is
//! read (as under a RabbitMQ alarm), until bodies in progress complete. A client that sends
//! each message's frames together (every common client) holds no partial body when it is
//! stopped, so the wait cannot deadlock it.
//!
//! Bodies buffered in open transactions (until tx.commit) count against the node's budget
//! too, and against their own per-connection budget (the same size). A transactional
//! publish past either is refused (PRECONDITION_FAILED on the channel) rather than waited
//! for: the tx.commit that would free the budget comes after it on the same connection,
//! so waiting could deadlock the client. For the same reason a connection holding
//! transaction bytes is not stopped by the node's budget (its own tx budget bounds it).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The node's budget (cheap to clone; every connection shares one).
#[derive(Debug, Clone)]
pub struct BodyBudget {
    used: Arc<AtomicUsize>,
    per_connection: usize,
    total: usize,
}

/// Which budget stops a new publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    Connection,
    Node,
}

impl BodyBudget {
    /// Defaults: 64 MiB per connection (four publishes of the default maximum size in
    /// progress), 512 MiB for the node.
    pub const DEFAULT_PER_CONNECTION: usize = 64 << 20;
    pub const DEFAULT_TOTAL: usize = 512 << 20;

    pub fn new(per_connection: usize, total: usize) -> Self {
        BodyBudget {
            used: Arc::new(AtomicUsize::new(0)),
            per_connection,
            total,
        }
    }

    /// Body bytes buffered on the node now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn account(&self) -> BodyAccount {
        BodyAccount {
            budget: self.clone(),
            mine: 0,
            tx: 0,
        }
    }
}

impl Default for BodyBudget {
    fn default() -> Self {
        BodyBudget::new(Self::DEFAULT_PER_CONNECTION, Self::DEFAULT_TOTAL)
    }
}

/// One connection's share; gives its bytes back when dropped.
#[derive(Debug)]
pub struct BodyAccount {
    budget: BodyBudget,
    /// Partial bodies being received.
    mine: usize,
    /// Whole bodies waiting in open transactions.
    tx: usize,
}

/// A transactional publish refused by the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxBudgetSpent {
    pub which: Spent,
    pub limit: usize,
}

impl BodyAccount {
    /// A buffer went from `before` to `after` bytes.
    pub fn adjust(&mut self, before: usize, after: usize) {
        if after > before {
            let d = after - before;
            self.mine += d;
            self.budget.used.fetch_add(d, Ordering::Relaxed);
        } else if before > after {
            let d = (before - after).min(self.mine);
            self.mine -= d;
            self.budget.used.fetch_sub(d, Ordering::Relaxed);
        }
    }

    /// Bytes this connection has buffered.
    pub fn mine(&self) -> usize {
        self.mine
    }

    /// Whether a new publish may start now, or which budget is spent.
    pub fn spent(&self) -> Option<Spent> {
        if self.mine >= self.budget.per_connection {
            Some(Spent::Connection)
        } else if self.budget.used() >= self.budget.total && self.tx == 0 {
            Some(Spent::Node)
        } else {
            None
        }
    }

    /// Takes `len` more bytes into this connection's open transactions, unless that
    /// passes its transaction budget or the node's is spent.
    pub fn take_tx(&mut self, len: usize) -> Result<(), TxBudgetSpent> {
        if self.tx.saturating_add(len) > self.budget.per_connection {
            return Err(TxBudgetSpent {
                which: Spent::Connection,
                limit: self.budget.per_connection,
            });
        }
        if self.budget.used().saturating_add(len) > self.budget.total {
            return Err(TxBudgetSpent {
                which: Spent::Node,
                limit: self.budget.total,
            });
        }
        self.tx += len;
        self.budget.used.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    /// Gives back `len` transaction bytes (committed, rolled back, or the channel closed).
    pub fn release_tx(&mut self, len: usize) {
        let d = len.min(self.tx);
        self.tx -= d;
        self.budget.used.fetch_sub(d, Ordering::Relaxed);
    }

    /// Bytes this connection holds in open transactions.
    pub fn tx_bytes(&self) -> usize {
        self.tx
    }
}

impl Drop for BodyAccount {
    fn drop(&mut self) {
        self.budget
            .used
            .fetch_sub(self.mine + self.tx, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_add_up_and_give_back_on_drop() {
        let b = BodyBudget::new(100, 150);
        let mut a = b.account();
        let mut c = b.account();
        a.adjust(0, 60);
        assert_eq!(a.spent(), None);
        a.adjust(60, 100);
        assert_eq!(a.spent(), Some(Spent::Connection));
        c.adjust(0, 50);
        assert_eq!(b.used(), 150);
        // c is within its own budget, but the node's is spent.
        assert_eq!(c.spent(), Some(Spent::Node));
        a.adjust(100, 0);
        assert_eq!(a.spent(), None);
        assert_eq!(c.spent(), None);
        c.adjust(50, 80);
        drop(c);
        assert_eq!(b.used(), 0);
        drop(a);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn transaction_bytes_are_refused_past_either_budget_never_waited_for() {
        let b = BodyBudget::new(100, 150);
        let mut a = b.account();
        let mut c = b.account();
        a.take_tx(90).unwrap();
        assert_eq!(
            a.take_tx(20),
            Err(TxBudgetSpent {
                which: Spent::Connection,
                limit: 100
            })
        );
        c.take_tx(60).unwrap();
        assert_eq!(b.used(), 150);
        // The node's budget is spent: c's next transactional publish is refused ...
        assert_eq!(c.take_tx(1).unwrap_err().which, Spent::Node);
        // ... a connection without transaction bytes waits for it ...
        let d = b.account();
        assert_eq!(d.spent(), Some(Spent::Node));
        // ... and one holding some is not stopped (its tx.commit must get through).
        assert_eq!(a.spent(), None);
        a.release_tx(90);
        assert_eq!(a.tx_bytes(), 0);
        assert_eq!(d.spent(), None);
        drop(c);
        assert_eq!(b.used(), 0);
    }
}
