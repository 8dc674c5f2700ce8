//! Connection limits shared by a node's listeners: Kafka's `max.connections` and
//! `max.connections.per.ip`, RabbitMQ's `connection_max`. A listener asks for a
//! [`ConnectionPermit`] for each accepted socket and closes the socket when refused; the
//! permit gives its slot back when the connection ends (dropped), whatever ended it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The limits; `usize::MAX` means none (Kafka's and RabbitMQ's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLimits {
    pub max_total: usize,
    pub max_per_ip: usize,
}

impl Default for QuotaLimits {
    fn default() -> Self {
        QuotaLimits {
            max_total: usize::MAX,
            max_per_ip: usize::MAX,
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuotaRefusal {
    #[error("the node has reached its connection limit ({0})")]
    Total(usize),
    #[error("this address has reached its connection limit ({0})")]
    PerIp(usize),
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Live connection counts against limits (cheap to clone; one per listener group).
#[derive(Debug, Clone)]
pub struct ConnectionQuota {
    limits: QuotaLimits,
    counts: Arc<Mutex<Counts>>,
}

/// One admitted connection's slot.
#[derive(Debug)]
pub struct ConnectionPermit {
    ip: IpAddr,
    counted_in_total: bool,
    counts: Arc<Mutex<Counts>>,
}

impl ConnectionQuota {
    pub fn new(limits: QuotaLimits) -> Self {
        ConnectionQuota {
            limits,
            counts: Arc::new(Mutex::new(Counts::default())),
        }
    }

    pub fn limits(&self) -> QuotaLimits {
        self.limits
    }

    /// Admits a connection from `ip`, or says which limit refuses it. `exempt_from_total`
    /// is Kafka's rule for the inter-broker listener: replication must always connect.
    pub fn try_admit(
        &self,
        ip: IpAddr,
        exempt_from_total: bool,
    ) -> Result<ConnectionPermit, QuotaRefusal> {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if !exempt_from_total && c.total >= self.limits.max_total {
            return Err(QuotaRefusal::Total(self.limits.max_total));
        }
        let from_ip = c.per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= self.limits.max_per_ip {
            return Err(QuotaRefusal::PerIp(self.limits.max_per_ip));
        }
        c.per_ip.insert(ip, from_ip + 1);
        if !exempt_from_total {
            c.total += 1;
        }
        Ok(ConnectionPermit {
            ip,
            counted_in_total: !exempt_from_total,
            counts: Arc::clone(&self.counts),
        })
    }

    /// Connections counted against `max_total` now.
    pub fn total(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if self.counted_in_total {
            c.total = c.total.saturating_sub(1);
        }
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn no_limits_by_default() {
        let q = ConnectionQuota::new(QuotaLimits::default());
        let permits: Vec<_> = (0..1000)
            .map(|_| q.try_admit(ip(1), false).unwrap())
            .collect();
        assert_eq!(q.total(), 1000);
        drop(permits);
        assert_eq!(q.total(), 0);
    }

    #[test]
    fn total_limit_refuses_then_frees_on_drop() {
        let q = ConnectionQuota::new(QuotaLimits {
            max_total: 2,
            max_per_ip: usize::MAX,
        });
        let a = q.try_admit(ip(1), false).unwrap();
        let _b = q.try_admit(ip(2), false).unwrap();
        assert_eq!(
            q.try_admit(ip(3), false).unwrap_err(),
            QuotaRefusal::Total(2)
        );
        // The inter-broker listener is exempt from the node-wide limit.
        let _replica = q.try_admit(ip(3), true).unwrap();
        drop(a);
        assert!(q.try_admit(ip(3), false).is_ok());
    }

    #[test]
    fn per_ip_limit_counts_each_address() {
        let q = ConnectionQuota::new(QuotaLimits {
            max_total: usize::MAX,
            max_per_ip: 1,
        });
        let a = q.try_admit(ip(1), false).unwrap();
        assert_eq!(
            q.try_admit(ip(1), false).unwrap_err(),
            QuotaRefusal::PerIp(1)
        );
        // Exempt connections still count per address (Kafka applies per-IP to all).
        assert_eq!(
            q.try_admit(ip(1), true).unwrap_err(),
            QuotaRefusal::PerIp(1)
        );
        let _b = q.try_admit(ip(2), false).unwrap();
        drop(a);
        let _c = q.try_admit(ip(1), false).unwrap();
        assert_eq!(q.total(), 2);
    }
}
