//! Follower replication over the Kafka protocol, as Kafka's replica fetcher does it:
//! a follower sends Fetch requests with its `replica_id` to the partition leader, appends
//! what it gets with the leader's offsets and epochs, makes it durable per the flush
//! policy, and only then asks for more (so its next fetch offset tells the leader what it
//! holds durably). Before fetching from a new leader it truncates by leader epoch
//! (OffsetsForLeaderEpoch, KIP-101/279), never by its local high watermark.

mod client;
mod fetcher;

pub use client::{ClientError, KafkaConnection};
pub use fetcher::{FetcherConfig, KafkaFollowerFetcher};
