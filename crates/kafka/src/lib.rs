//! Kafka session layer: accepts connections, runs each connection's request pipeline
//! (requests handled concurrently, answered in order), and maps Kafka requests onto the
//! broker core.

mod errors;
mod handlers;
mod server;

pub use server::{serve, KafkaServerConfig};
