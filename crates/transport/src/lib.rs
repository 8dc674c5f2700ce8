//! Listener transports: a connection is plain TCP or TLS (rustls, `ring` provider).
//! No protocol here: the Kafka and AMQP servers accept through [`accept`] and then read and
//! write a [`MaybeTls`] as they did a `TcpStream`.
//!
//! - [`TlsSettings`] names the PEM material (files or inline text) and the client
//!   authentication policy; [`ReloadableTls`] builds the rustls config from it and swaps in a
//!   new one on SIGHUP or when a file's mtime changes ([`spawn_reloader`]); a failed reload
//!   keeps the old config.
//! - [`accept`] runs the TLS handshake (bounded by [`HANDSHAKE_TIMEOUT`]) and returns the
//!   peer's verified certificate identity ([`arctern_security::TlsPeer`]); on a plaintext
//!   listener it refuses a TLS ClientHello with a log line.
//! - [`ConnectionQuota`] counts a node's connections against its limits (Kafka's
//!   `max.connections`, `max.connections.per.ip`; RabbitMQ's `connection_max`).

mod accept;
mod peer;
pub mod quota;
mod stream;
mod tls;

pub use accept::{accept, Accepted, HANDSHAKE_TIMEOUT};
pub use peer::{peer_from_der, rfc2253_subject};
pub use quota::{ConnectionPermit, ConnectionQuota, QuotaLimits, QuotaRefusal};
pub use stream::{MaybeTls, MaybeTlsRead, MaybeTlsWrite};
pub use tls::{
    provider, spawn_reloader, ClientAuth, PemSource, ReloadableTls, TlsError, TlsSettings,
    RELOAD_POLL,
};
