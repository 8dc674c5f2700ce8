//! AMQP 0-9-1 for Arctern.
//!
//! Sans-IO parts (`wire`, `codes`, `methods`, `publish`, `deliveries`, `confirms`,
//! `transaction`, `topic`, `record`, `args`, `deadletter`) know the protocol's bytes and do no IO;
//! `vhost` and `queue` hold exchanges, queues and bindings over the broker core;
//! `connection` and `server` run one task per client connection; `forward` relays a
//! connection to the node serving the vhost.

pub mod alarm;
pub mod args;
pub mod auth;
pub mod budget;
pub mod codes;
pub mod confirms;
pub mod connection;
pub mod deadletter;
pub mod deliveries;
pub mod forward;
pub mod manage;
pub mod methods;
pub mod permissions;
pub mod publish;
pub mod queue;
pub mod record;
pub mod server;
pub mod stats;
pub mod topic;
pub mod transaction;
pub mod vhost;
pub mod wire;

pub use alarm::AlarmConfig;
pub use server::{serve, AmqpServerConfig, CertLoginFrom};
pub use vhost::{Vhost, VhostConfig};
