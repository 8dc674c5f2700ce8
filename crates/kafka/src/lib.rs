//! Kafka session layer: accepts connections, runs each connection's request pipeline
//! (requests handled concurrently, answered in order), and maps Kafka requests onto the
//! broker core.

mod admin;
mod errors;
mod groups;
mod handlers;
mod server;

pub use handlers::{KafkaContext, ListenerInfo};
pub use server::{serve, serve_listener, KafkaServerConfig};
