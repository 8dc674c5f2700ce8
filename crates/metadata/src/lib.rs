//! Cluster metadata as a Raft-replicated state machine, on openraft.
//!
//! - [`state`]: the replicated document ([`ClusterState`]), its commands and results.
//! - `log_store`: the Raft log (append-only journal with per-record CRC32C) and the vote.
//! - `state_machine`: applies committed commands, builds and installs snapshots.
//! - `network`: Raft RPCs, proposal forwarding and broker heartbeats over TCP
//!   (length-prefixed JSON frames).
//! - [`controller`]: broker liveness (heartbeats, fencing) and leader elections, run by the
//!   Raft leader.
//! - [`node`]: [`MetadataNode`], what the rest of the broker uses.

pub mod controller;
mod error;
mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
mod log_store;
mod network;
pub mod node;
pub mod state;
mod state_machine;

use std::io::Cursor;

pub use controller::{ControllerOptions, HeartbeatHandle, UNCLEAN_LEADER_ELECTION_CONFIG};
pub use error::MetadataError;
pub use node::{parse_voters, MetadataConfig, MetadataNode, NodeOptions};
pub use openraft::BasicNode;
pub use state::{
    assign_replicas, assign_replicas_from, AmqpBindingDef, AmqpChange, AmqpDefinitions,
    AmqpExchangeDef, AmqpQueueDef, BrokerId, BrokerRegistration, ClusterState, CommandResult,
    DiffItem, ListenerEndpoint, MetadataCommand, OrdMap, PartitionAssignment, PartitionState,
    Permission, ScramCredential, TopicState, UserRecord, VhostRecord, DEFAULT_VHOST,
    LEADER_FOLLOWS_CONFIG, NO_LEADER,
};

openraft::declare_raft_types!(
    /// openraft type parameters for the metadata group.
    pub TypeConfig:
        D = MetadataCommand,
        R = CommandResult,
        NodeId = u64,
        Node = BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// Raft node id (`node.id` of a controller / voter).
pub type NodeId = u64;
