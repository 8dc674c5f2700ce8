//! The AMQP listener: one task per connection (see `connection`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arctern_transport::ReloadableTls;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::alarm::AlarmState;
use crate::vhost::Vhost;

/// Connection limits, RabbitMQ's names and defaults unless noted.
#[derive(Debug, Clone)]
pub struct AmqpServerConfig {
    /// `frame_max`: the largest frame the server accepts and proposes (131072).
    pub frame_max: u32,
    /// `channel_max` (2047).
    pub channel_max: u16,
    /// `heartbeat` in seconds (60); 0 disables.
    pub heartbeat: u16,
    /// `max_message_size` in bytes. RabbitMQ's default is 128 MiB; Arctern's is 16 MiB
    /// because a message is assembled in memory before it is appended.
    pub max_message_size: usize,
    /// `default_user` / `default_pass` (guest / guest): the user the first start creates.
    /// Without [`AmqpServerConfig::auth`] (unit tests) the only login, from loopback only.
    pub default_user: String,
    pub default_pass: String,
    /// `default_user_tags` (administrator).
    pub default_user_tags: Vec<String>,
    /// RabbitMQ's `loopback_users` (["guest"]): users that may log in only from a
    /// loopback address.
    pub loopback_users: Vec<String>,
    /// Logins against the cluster's user database, with the shared failed-login limiter.
    pub auth: Option<crate::auth::Authenticator>,
    /// `consumer_timeout` in ms (30 min): a delivery unacknowledged for longer closes its
    /// channel with 406 PRECONDITION_FAILED; 0 disables.
    pub consumer_timeout_ms: u64,
    /// `segment.bytes` of a queue's log (64 MiB): a queue deletes whole segments once every
    /// message in them is settled, so this bounds what settled messages still occupy.
    pub queue_segment_bytes: u64,
    /// `ssl_cert_login_from`: which part of a client certificate names the EXTERNAL user.
    pub ssl_cert_login_from: CertLoginFrom,
    /// `connection_max`: the node's AMQP connections (both listeners); more are closed on
    /// accept with a log line.
    pub connection_quota: arctern_transport::ConnectionQuota,
    /// Message bodies being received, per connection and per node (see `budget`).
    pub body_budget: crate::budget::BodyBudget,
}

/// RabbitMQ's `ssl_cert_login_from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertLoginFrom {
    /// The subject DN in RFC 2253 form (`CN=alice,O=Test`), RabbitMQ's default.
    #[default]
    DistinguishedName,
    CommonName,
}

impl Default for AmqpServerConfig {
    fn default() -> Self {
        AmqpServerConfig {
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat: 60,
            max_message_size: 16 << 20,
            default_user: "guest".into(),
            default_pass: "guest".into(),
            default_user_tags: vec!["administrator".into()],
            loopback_users: vec!["guest".into()],
            auth: None,
            consumer_timeout_ms: 1_800_000,
            queue_segment_bytes: 64 << 20,
            ssl_cert_login_from: CertLoginFrom::DistinguishedName,
            connection_quota: arctern_transport::ConnectionQuota::new(Default::default()),
            body_budget: crate::budget::BodyBudget::default(),
        }
    }
}

/// Accepts connections until `shutdown` turns true; over TLS when `tls` is set.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ReloadableTls>>,
    vhost: Arc<Vhost>,
    config: AmqpServerConfig,
    alarm: AlarmState,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let name = if tls.is_some() { "amqp/ssl" } else { "amqp" };
    let ids = AtomicU64::new(1);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let permit = match config.connection_quota.try_admit(peer.ip(), false) {
                        Ok(p) => p,
                        Err(refusal) => {
                            tracing::warn!(%peer, listener = name, "closing connection: {refusal} (connection_max)");
                            drop(stream);
                            continue;
                        }
                    };
                    let id = ids.fetch_add(1, Ordering::Relaxed);
                    let vhost = Arc::clone(&vhost);
                    let config = config.clone();
                    let alarm = alarm.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let Some(a) = arctern_transport::accept(stream, peer, tls.as_deref(), name).await else {
                            return;
                        };
                        crate::connection::run(a.stream, peer, id, vhost, config, alarm, a.tls).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "AMQP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    return Ok(());
                }
            }
        }
    }
}
