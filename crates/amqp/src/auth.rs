//! AMQP logins (PLAIN, AMQPLAIN) against the cluster's one user database.
//!
//! [`decide`] is the sans-IO rule: the failed-login limiter first (a throttled address is
//! refused without looking at the password), then the user and password, then
//! RabbitMQ's `loopback_users` (those users only from a loopback peer). Every refusal
//! looks the same to the client; only the broker's log says why.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arctern_metadata::{ClusterState, UserRecord};
use arctern_security::ratelimit::{Admission, LoginLimiter};
use tokio::sync::watch;

/// Why a login was refused (for the log line; the client sees one message for all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many recent failures from this address; retry after this long.
    Throttled(Duration),
    /// No such user, or a wrong password: indistinguishable on purpose.
    BadCredentials,
    /// A `loopback_users` user from a non-loopback address.
    NotLoopback,
}

impl Refusal {
    pub fn reason(self) -> String {
        match self {
            Refusal::Throttled(d) => {
                format!("too many failed logins from this address; retry in {d:?}")
            }
            Refusal::BadCredentials => "unknown user or wrong password".to_string(),
            Refusal::NotLoopback => "user can only connect via localhost".to_string(),
        }
    }
}

/// Whether `ip` counts as loopback: 127.0.0.0/8, ::1, and IPv4-mapped 127.x.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The whole login rule. `check` verifies a password against a user record (the caller
/// may run it off the async threads: SCRAM-only users cost a PBKDF2 run).
pub fn decide(
    users: &BTreeMap<String, UserRecord>,
    loopback_users: &[String],
    limiter: &LoginLimiter,
    peer: IpAddr,
    user: &str,
    pass: &str,
    now: Instant,
) -> Result<(), Refusal> {
    if let Admission::Throttled(d) = limiter.check(peer, now) {
        return Err(Refusal::Throttled(d));
    }
    let verdict = match users.get(user) {
        Some(record) if record.check_password(pass) => {
            if loopback_users.iter().any(|u| u == user) && !is_loopback(peer) {
                Err(Refusal::NotLoopback)
            } else {
                Ok(())
            }
        }
        _ => Err(Refusal::BadCredentials),
    };
    match verdict {
        Ok(()) => limiter.succeeded(peer),
        Err(_) => limiter.failed(peer, now),
    }
    verdict
}

/// What a connection needs to log a client in; cheap to clone.
#[derive(Debug, Clone)]
pub struct Authenticator {
    /// The applied cluster metadata (its `users`).
    pub metadata: watch::Receiver<Arc<ClusterState>>,
    pub limiter: Arc<LoginLimiter>,
}

/// How long a login waits for the first start's defaults (the default user) to commit.
const INITIALIZE_WAIT: Duration = Duration::from_secs(5);

impl Authenticator {
    /// Checks `user`/`pass` from `peer`, off the async threads.
    pub async fn login(
        &self,
        peer: IpAddr,
        user: &str,
        pass: &str,
        loopback_users: &[String],
    ) -> Result<(), Refusal> {
        let mut rx = self.metadata.clone();
        // Right after the first start the Initialize that creates the default user may
        // not have committed yet; a login then waits for it rather than failing.
        let _ = tokio::time::timeout(INITIALIZE_WAIT, rx.wait_for(|s| s.initialized)).await;
        let state = Arc::clone(&rx.borrow());
        let limiter = Arc::clone(&self.limiter);
        let loopback = loopback_users.to_vec();
        let (user, pass) = (user.to_string(), pass.to_string());
        tokio::task::spawn_blocking(move || {
            decide(
                &state.users,
                &loopback,
                &limiter,
                peer,
                &user,
                &pass,
                Instant::now(),
            )
        })
        .await
        .unwrap_or(Err(Refusal::BadCredentials))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arctern_security::ratelimit::LimiterConfig;

    fn users() -> BTreeMap<String, UserRecord> {
        [
            (
                "guest".to_string(),
                UserRecord::with_password("guest", vec![]),
            ),
            (
                "bob".to_string(),
                UserRecord::with_password("s3cret", vec![]),
            ),
        ]
        .into()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn passwords_and_unknown_users() {
        let l = LoginLimiter::new(LimiterConfig::default());
        let u = users();
        let lb = vec!["guest".to_string()];
        let now = Instant::now();
        assert_eq!(
            decide(&u, &lb, &l, ip("127.0.0.1"), "bob", "s3cret", now),
            Ok(())
        );
        assert_eq!(
            decide(&u, &lb, &l, ip("127.0.0.1"), "bob", "wrong", now),
            Err(Refusal::BadCredentials)
        );
        assert_eq!(
            decide(&u, &lb, &l, ip("127.0.0.1"), "alice", "s3cret", now),
            Err(Refusal::BadCredentials)
        );
    }

    #[test]
    fn loopback_users_only_from_loopback() {
        let l = LoginLimiter::new(LimiterConfig::default());
        let u = users();
        let lb = vec!["guest".to_string()];
        let now = Instant::now();
        for local in ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(
                decide(&u, &lb, &l, ip(local), "guest", "guest", now),
                Ok(()),
                "{local}"
            );
        }
        for remote in ["10.0.0.7", "192.168.1.2", "::ffff:10.0.0.7", "2001:db8::1"] {
            assert_eq!(
                decide(&u, &lb, &l, ip(remote), "guest", "guest", now),
                Err(Refusal::NotLoopback),
                "{remote}"
            );
            // Other users are not restricted.
            assert_eq!(
                decide(&u, &lb, &l, ip(remote), "bob", "s3cret", now),
                Ok(())
            );
        }
        // `loopback_users = none`: guest from anywhere.
        assert_eq!(
            decide(&u, &[], &l, ip("10.0.0.7"), "guest", "guest", now),
            Ok(())
        );
    }

    #[test]
    fn throttled_address_is_refused_without_a_password_check() {
        let l = LoginLimiter::new(LimiterConfig {
            free_failures: 2,
            base_delay: Duration::from_secs(1),
            ..LimiterConfig::default()
        });
        let u = users();
        let now = Instant::now();
        let peer = ip("10.1.1.1");
        for _ in 0..2 {
            assert_eq!(
                decide(&u, &[], &l, peer, "bob", "x", now),
                Err(Refusal::BadCredentials)
            );
        }
        assert!(matches!(
            decide(&u, &[], &l, peer, "bob", "s3cret", now),
            Err(Refusal::Throttled(_))
        ));
        // Another address is not affected.
        assert_eq!(
            decide(&u, &[], &l, ip("10.1.1.2"), "bob", "s3cret", now),
            Ok(())
        );
        // Once the delay passed, the right password logs in and clears the address.
        let later = now + Duration::from_secs(2);
        assert_eq!(decide(&u, &[], &l, peer, "bob", "s3cret", later), Ok(()));
        assert_eq!(
            decide(&u, &[], &l, peer, "bob", "x", later),
            Err(Refusal::BadCredentials)
        );
    }

    #[test]
    fn scram_only_users_log_in_with_their_password() {
        use arctern_security::scram::ScramMechanism;
        let mut u = BTreeMap::new();
        u.insert(
            "k".to_string(),
            UserRecord {
                password_hash: None,
                scram: [(
                    "SCRAM-SHA-256".to_string(),
                    ScramMechanism::Sha256.derive_fresh("pw", 4096),
                )]
                .into(),
                tags: vec![],
            },
        );
        let l = LoginLimiter::new(LimiterConfig::default());
        let now = Instant::now();
        assert_eq!(decide(&u, &[], &l, ip("127.0.0.1"), "k", "pw", now), Ok(()));
        assert_eq!(
            decide(&u, &[], &l, ip("127.0.0.1"), "k", "pW", now),
            Err(Refusal::BadCredentials)
        );
    }
}
