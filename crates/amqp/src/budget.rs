//! Memory budgets for message bodies being received: a publish's body frames are buffered
//! until the body is whole, so a client that starts many large publishes (one per channel)
//! and never finishes them would grow the broker by channels x max message size. Each
//! connection's buffered body bytes count against its own budget and the node's; while
//! either is spent, the connection's next `basic.publish` waits and nothing after it is
//! read (as under a RabbitMQ alarm), until bodies in progress complete. A client that sends
//! each message's frames together (every common client) holds no partial body when it is
//! stopped, so the wait cannot deadlock it.

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
    mine: usize,
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
        } else if self.budget.used() >= self.budget.total {
            Some(Spent::Node)
        } else {
            None
        }
    }
}

impl Drop for BodyAccount {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.mine, Ordering::Relaxed);
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
}
