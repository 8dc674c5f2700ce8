//! Kafka session layer: accepts connections, runs each connection's request pipeline
//! (requests handled concurrently, answered in order), and maps Kafka requests onto the
//! broker core.

mod admin;
pub mod authz;
mod cluster_sasl;
mod errors;
mod groups;
mod handlers;
pub mod sasl;
mod scram_admin;
pub use scram_admin::MetadataHandle;
mod operate;
mod server;
pub mod stats;

pub use authz::Authorizer;
pub use handlers::{KafkaContext, ListenerInfo, Origin};
pub use server::{serve, serve_listener, KafkaServerConfig};
