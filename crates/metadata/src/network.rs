//! Raft RPCs, proposal forwarding and broker heartbeats over TCP.
//!
//! A frame is a u32 big-endian length and a JSON body; a connection carries one request at a
//! time, each answered by one response. openraft opens one client per peer and purpose
//! (replication stream, vote round), each with its own pooled connection. Any I/O failure drops
//! the connection and becomes an `RPCError` that openraft retries; nothing here panics on
//! network input.
//!
//! With a cluster secret ([`Membership`]), every connection opens with a `Hello` frame
//! carrying a membership token (purpose "raft") and the caller's node id. The server checks
//! it (signature, freshness, replay, and that the id is a voter) before it reads any RPC,
//! and answers with its own token (purpose "raft-ack") that the caller checks in turn, so
//! neither side talks to an impostor. A refused connection is logged and closed; nothing
//! from it reaches openraft, the proposal path or the controller.

use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arctern_security::cluster::now_ms;
use arctern_security::ClusterSecret;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{LogId, RPCTypes, Raft};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::controller::{self, BrokerHeartbeat, Liveness};
use crate::{BasicNode, CommandResult, MetadataCommand, NodeId, TypeConfig};

/// Bound on a frame's declared length; the largest frame is a snapshot chunk, far smaller.
const MAX_FRAME: usize = 64 << 20;
/// How long a server waits for a connection's membership proof.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Token purposes on the Raft port.
const PURPOSE: &str = "raft";
const ACK_PURPOSE: &str = "raft-ack";

/// This node's means to prove membership on the Raft port and to check others' proofs.
#[derive(Clone)]
pub(crate) struct Membership {
    pub secret: Arc<ClusterSecret>,
    pub local: NodeId,
    /// Only voters may talk to the metadata quorum.
    pub voters: Arc<BTreeSet<NodeId>>,
}

impl Membership {
    /// The node id `token` proves for `purpose`, if it is a voter and the one `claimed`.
    fn check(&self, token: &str, purpose: &str, claimed: NodeId) -> Result<NodeId, String> {
        let id = self
            .secret
            .verify(token, purpose, now_ms())
            .map_err(|e| e.to_string())?;
        let id = NodeId::try_from(id).map_err(|_| format!("node id {id} is negative"))?;
        if id != claimed {
            return Err(format!(
                "token proves node {id}, frame claims node {claimed}"
            ));
        }
        if !self.voters.contains(&id) {
            return Err(format!("node {id} is not a voter"));
        }
        Ok(id)
    }

    fn prove(&self, purpose: &str) -> String {
        // Node ids are node.id values, which main.rs keeps within i32.
        let id = i32::try_from(self.local).unwrap_or(i32::MAX);
        self.secret.prove(id, purpose, now_ms())
    }
}

/// A node's membership proof, the first frame each way on a connection (with a secret).
#[derive(Serialize, Deserialize)]
pub(crate) struct Hello {
    node_id: NodeId,
    token: String,
}

#[derive(Serialize, Deserialize)]
enum RpcRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A client proposal forwarded from a follower to the leader.
    Propose(MetadataCommand),
    /// A broker's liveness heartbeat to the leader (the controller).
    Heartbeat(BrokerHeartbeat),
    /// The caller's membership proof; first frame of a connection when a secret is set.
    Hello(Hello),
}

#[derive(Serialize, Deserialize)]
enum RpcResponse {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    Propose(Result<ForwardedWrite, ForwardError>),
    Heartbeat(Result<(), ForwardError>),
    /// The server's own proof, or why the caller's was refused.
    Hello(Result<Hello, String>),
}

/// The leader's answer to a forwarded proposal.
#[derive(Debug, Serialize, Deserialize)]
pub struct ForwardedWrite {
    pub log_id: LogId<NodeId>,
    pub result: CommandResult,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ForwardError {
    /// The receiver is not (or no longer) the leader; the command was not proposed.
    NotLeader { leader_id: Option<NodeId> },
    /// The leader failed to commit it (e.g. it is shutting down).
    Failed(String),
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Nothing was sent.
    #[error("connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    /// The request may have been sent.
    #[error("rpc to {addr}: {source}")]
    Io { addr: String, source: io::Error },
    #[error("rpc to {addr} timed out after {ttl:?}")]
    Timeout { addr: String, ttl: Duration },
    #[error("rpc to {addr}: unexpected response kind")]
    Unexpected { addr: String },
}

fn encode_frame<T: Serialize>(msg: &T) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 4];
    serde_json::to_writer(&mut buf, msg).map_err(io::Error::other)?;
    let len = u32::try_from(buf.len() - 4)
        .ok()
        .filter(|l| (*l as usize) <= MAX_FRAME)
        .ok_or_else(|| io::Error::other("rpc frame too large"))?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

/// Reads one frame; `None` on a clean end of stream between frames.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds {MAX_FRAME}"),
        ));
    }
    // Grows as bytes arrive rather than trusting the declared length up front.
    let mut body = Vec::new();
    r.take(len as u64).read_to_end(&mut body).await?;
    if body.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "truncated frame",
        ));
    }
    Ok(Some(body))
}

/// The server's and the client's decoding of peer bytes, for the fuzz target
/// (`fuzzing::rpc_frames`): frames as `read_frame` cuts them from a stream, each parsed as a
/// request and as a response, and a `Hello` checked against a membership as the server does.
pub(crate) fn decode_frames_for_fuzzing(mut bytes: &[u8]) -> usize {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let membership = Membership {
        secret: Arc::new(
            ClusterSecret::new(b"fuzzing-cluster-secret-32-bytes!").expect("a valid secret"),
        ),
        local: 1,
        voters: Arc::new([1, 2, 3].into_iter().collect()),
    };
    let mut frames = 0;
    loop {
        // A slice reader never pends, so one poll completes the read.
        let mut fut = std::pin::pin!(read_frame(&mut bytes));
        let Poll::Ready(Ok(Some(body))) =
            fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
        else {
            return frames;
        };
        frames += 1;
        if let Ok(RpcRequest::Hello(h)) = serde_json::from_slice::<RpcRequest>(&body) {
            let _ = membership.check(&h.token, PURPOSE, h.node_id);
        }
        let _ = serde_json::from_slice::<RpcResponse>(&body);
    }
}

// ---------------------------------------------------------------------------------------
// Server

/// Accepts peers' connections and serves them until the task is aborted (which also aborts
/// every connection task, as they live in the JoinSet).
pub(crate) async fn serve(
    listener: TcpListener,
    raft: Raft<TypeConfig>,
    liveness: Arc<Liveness>,
    membership: Option<Membership>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            acc = listener.accept() => match acc {
                Ok((stream, peer)) => {
                    let raft = raft.clone();
                    let liveness = liveness.clone();
                    let membership = membership.clone();
                    conns.spawn(async move {
                        if let Err(e) = serve_conn(stream, peer, raft, &liveness, membership.as_ref()).await {
                            tracing::debug!(%peer, error = %e, "metadata rpc connection closed");
                        }
                    });
                }
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "metadata rpc accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Checks a connection's first frame, the caller's membership proof, and answers with this
/// node's own. `Err(Some(reason))`: refuse (the caller logs it); `Err(None)`: the peer left.
async fn accept_member(
    stream: &mut TcpStream,
    membership: &Membership,
) -> Result<NodeId, Option<String>> {
    let body = match tokio::time::timeout(HELLO_TIMEOUT, read_frame(stream)).await {
        Ok(Ok(Some(body))) => body,
        Ok(Ok(None)) => return Err(None),
        Ok(Err(e)) => return Err(Some(e.to_string())),
        Err(_) => return Err(Some("no membership proof in time".into())),
    };
    let hello = match serde_json::from_slice::<RpcRequest>(&body) {
        Ok(RpcRequest::Hello(h)) => h,
        Ok(_) => return Err(Some("first frame is not a membership proof".into())),
        Err(_) => return Err(Some("first frame is not a metadata rpc frame".into())),
    };
    match membership.check(&hello.token, PURPOSE, hello.node_id) {
        Ok(id) => {
            let ack = RpcResponse::Hello(Ok(Hello {
                node_id: membership.local,
                token: membership.prove(ACK_PURPOSE),
            }));
            let frame = encode_frame(&ack).map_err(|e| Some(e.to_string()))?;
            stream.write_all(&frame).await.map_err(|_| None)?;
            Ok(id)
        }
        Err(reason) => {
            // Tell an honest but misconfigured node why; the reason names no secret.
            if let Ok(frame) = encode_frame(&RpcResponse::Hello(Err(
                "membership proof refused".to_string()
            ))) {
                let _ = stream.write_all(&frame).await;
            }
            Err(Some(reason))
        }
    }
}

async fn serve_conn(
    mut stream: TcpStream,
    peer: SocketAddr,
    raft: Raft<TypeConfig>,
    liveness: &Liveness,
    membership: Option<&Membership>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    if let Some(m) = membership {
        match accept_member(&mut stream, m).await {
            Ok(id) => tracing::debug!(%peer, node = id, "metadata rpc connection from a member"),
            Err(None) => return Ok(()),
            Err(Some(reason)) => {
                tracing::warn!(%peer, reason, "refused metadata rpc connection: no valid cluster membership proof");
                return Ok(());
            }
        }
    }
    while let Some(body) = read_frame(&mut stream).await? {
        let req: RpcRequest = serde_json::from_slice(&body)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let resp = match req {
            RpcRequest::Hello(_) => {
                // A node with a secret calling one without: it would refuse our answer anyway.
                tracing::warn!(%peer, "refused metadata rpc connection: the peer sends a cluster membership proof but this node has no cluster.secret");
                let refused = RpcResponse::Hello(Err("no cluster secret configured here".into()));
                stream.write_all(&encode_frame(&refused)?).await?;
                return Ok(());
            }
            RpcRequest::AppendEntries(r) => {
                RpcResponse::AppendEntries(raft.append_entries(r).await)
            }
            RpcRequest::Vote(r) => RpcResponse::Vote(raft.vote(r).await),
            RpcRequest::InstallSnapshot(r) => {
                RpcResponse::InstallSnapshot(raft.install_snapshot(r).await)
            }
            RpcRequest::Propose(cmd) => RpcResponse::Propose(propose_local(&raft, cmd).await),
            RpcRequest::Heartbeat(hb) => {
                RpcResponse::Heartbeat(controller::receive_heartbeat(&raft, liveness, &hb))
            }
        };
        stream.write_all(&encode_frame(&resp)?).await?;
    }
    Ok(())
}

/// Proposes on this node, which must be the leader.
pub async fn propose_local(
    raft: &Raft<TypeConfig>,
    cmd: MetadataCommand,
) -> Result<ForwardedWrite, ForwardError> {
    match raft.client_write(cmd).await {
        Ok(resp) => Ok(ForwardedWrite {
            log_id: resp.log_id,
            result: resp.data,
        }),
        Err(RaftError::APIError(openraft::error::ClientWriteError::ForwardToLeader(f))) => {
            Err(ForwardError::NotLeader {
                leader_id: f.leader_id,
            })
        }
        Err(e) => Err(ForwardError::Failed(e.to_string())),
    }
}

// ---------------------------------------------------------------------------------------
// Client

struct Peer {
    addr: String,
    conn: Option<TcpStream>,
    membership: Option<Membership>,
    /// The node expected at `addr`, when known: its proof must be for that node.
    expect: Option<NodeId>,
}

impl Peer {
    fn new(addr: &str, membership: Option<Membership>, expect: Option<NodeId>) -> Peer {
        Peer {
            addr: addr.to_string(),
            conn: None,
            membership,
            expect,
        }
    }

    /// Proves membership on a fresh connection and checks the server's proof.
    async fn hello(&self, stream: &mut TcpStream, m: &Membership) -> Result<(), String> {
        let hello = RpcRequest::Hello(Hello {
            node_id: m.local,
            token: m.prove(PURPOSE),
        });
        let frame = encode_frame(&hello).map_err(|e| e.to_string())?;
        stream.write_all(&frame).await.map_err(|e| e.to_string())?;
        let body = read_frame(stream)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the peer closed the connection: it refused our membership proof")?;
        let ack = match serde_json::from_slice::<RpcResponse>(&body) {
            Ok(RpcResponse::Hello(Ok(ack))) => ack,
            Ok(RpcResponse::Hello(Err(reason))) => {
                return Err(format!("the peer refused: {reason}"))
            }
            _ => return Err("the peer answered no membership proof".into()),
        };
        let id = m.check(&ack.token, ACK_PURPOSE, ack.node_id)?;
        match self.expect {
            Some(want) if want != id => Err(format!("expected node {want}, proof is for {id}")),
            _ => Ok(()),
        }
    }

    async fn call(&mut self, req: &RpcRequest, ttl: Duration) -> Result<RpcResponse, CallError> {
        let frame = encode_frame(req).map_err(|source| CallError::Io {
            addr: self.addr.clone(),
            source,
        })?;
        let res = tokio::time::timeout(ttl, self.call_inner(&frame)).await;
        let res = match res {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout {
                addr: self.addr.clone(),
                ttl,
            }),
        };
        if res.is_err() {
            // The stream may hold half a frame or a late answer: never reuse it.
            self.conn = None;
        }
        res
    }

    async fn call_inner(&mut self, frame: &[u8]) -> Result<RpcResponse, CallError> {
        let addr = self.addr.clone();
        let stream = match &mut self.conn {
            Some(s) => s,
            None => {
                let s = TcpStream::connect(&addr)
                    .await
                    .map_err(|source| CallError::Connect {
                        addr: addr.clone(),
                        source,
                    })?;
                // Latency matters more than packet count for small Raft messages.
                s.set_nodelay(true).map_err(|source| CallError::Connect {
                    addr: addr.clone(),
                    source,
                })?;
                let mut s = s;
                if let Some(m) = &self.membership {
                    if let Err(reason) = self.hello(&mut s, m).await {
                        tracing::warn!(%addr, expected = ?self.expect, reason, "metadata peer failed the cluster membership check");
                        // Nothing of the request was sent: callers may retry.
                        return Err(CallError::Connect {
                            addr: addr.clone(),
                            source: io::Error::new(io::ErrorKind::PermissionDenied, reason),
                        });
                    }
                }
                self.conn.insert(s)
            }
        };
        let io_err = |source| CallError::Io {
            addr: addr.clone(),
            source,
        };
        stream.write_all(frame).await.map_err(io_err)?;
        let body = read_frame(stream)
            .await
            .map_err(io_err)?
            .ok_or_else(|| io_err(io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed")))?;
        serde_json::from_slice(&body)
            .map_err(|e| io_err(io::Error::new(io::ErrorKind::InvalidData, e)))
    }
}

/// Sends one proposal to the leader at `addr` on a fresh connection.
pub(crate) async fn forward(
    addr: &str,
    leader: NodeId,
    membership: Option<&Membership>,
    cmd: MetadataCommand,
    ttl: Duration,
) -> Result<Result<ForwardedWrite, ForwardError>, CallError> {
    let mut peer = Peer::new(addr, membership.cloned(), Some(leader));
    match peer.call(&RpcRequest::Propose(cmd), ttl).await? {
        RpcResponse::Propose(r) => Ok(r),
        _ => Err(CallError::Unexpected {
            addr: addr.to_string(),
        }),
    }
}

/// A client for repeated calls to whichever node leads, keeping one connection to it.
pub(crate) struct RpcClient {
    peer: Option<Peer>,
    membership: Option<Membership>,
}

impl RpcClient {
    pub fn new(membership: Option<Membership>) -> RpcClient {
        RpcClient {
            peer: None,
            membership,
        }
    }

    pub async fn heartbeat(
        &mut self,
        addr: &str,
        leader: NodeId,
        hb: BrokerHeartbeat,
        ttl: Duration,
    ) -> Result<Result<(), ForwardError>, CallError> {
        // The pooled connection is kept only while the leader stays the same.
        let peer = match self.peer.take() {
            Some(p) if p.addr == addr && p.expect == Some(leader) => self.peer.insert(p),
            _ => self
                .peer
                .insert(Peer::new(addr, self.membership.clone(), Some(leader))),
        };
        match peer.call(&RpcRequest::Heartbeat(hb), ttl).await? {
            RpcResponse::Heartbeat(r) => Ok(r),
            _ => Err(CallError::Unexpected {
                addr: addr.to_string(),
            }),
        }
    }
}

/// Creates one [`PeerClient`] per openraft replication stream or vote round.
pub(crate) struct NetworkFactory {
    pub local: NodeId,
    pub membership: Option<Membership>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            local: self.local,
            target,
            peer: Peer::new(&node.addr, self.membership.clone(), Some(target)),
        }
    }
}

pub(crate) struct PeerClient {
    local: NodeId,
    target: NodeId,
    peer: Peer,
}

impl PeerClient {
    async fn rpc<E: std::error::Error>(
        &mut self,
        action: RPCTypes,
        req: RpcRequest,
        option: &RPCOption,
    ) -> Result<RpcResponse, RPCError<NodeId, BasicNode, E>> {
        let ttl = option.hard_ttl();
        self.peer.call(&req, ttl).await.map_err(|e| match e {
            // Openraft backs off on Unreachable and retries at once on Network.
            CallError::Connect { .. } => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Timeout { .. } => RPCError::Timeout(Timeout {
                action,
                id: self.local,
                target: self.target,
                timeout: ttl,
            }),
            CallError::Io { .. } | CallError::Unexpected { .. } => {
                RPCError::Network(NetworkError::new(&e))
            }
        })
    }

    fn unexpected<E: std::error::Error>(&self) -> RPCError<NodeId, BasicNode, E> {
        RPCError::Network(NetworkError::new(&CallError::Unexpected {
            addr: self.peer.addr.clone(),
        }))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self
            .rpc(
                RPCTypes::AppendEntries,
                RpcRequest::AppendEntries(rpc),
                &option,
            )
            .await?
        {
            RpcResponse::AppendEntries(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self
            .rpc(
                RPCTypes::InstallSnapshot,
                RpcRequest::InstallSnapshot(rpc),
                &option,
            )
            .await?
        {
            RpcResponse::InstallSnapshot(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self
            .rpc(RPCTypes::Vote, RpcRequest::Vote(rpc), &option)
            .await?
        {
            RpcResponse::Vote(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_bounded_and_eof_is_clean() {
        let frame = encode_frame(&"hello").unwrap();
        let mut r = &frame[..];
        assert_eq!(read_frame(&mut r).await.unwrap().unwrap(), b"\"hello\"");
        assert!(read_frame(&mut r).await.unwrap().is_none());

        let huge = ((MAX_FRAME + 1) as u32).to_be_bytes();
        assert!(read_frame(&mut &huge[..]).await.is_err());
        let short = [0, 0, 0, 9, b'x'];
        assert!(read_frame(&mut &short[..]).await.is_err());
    }

    #[tokio::test]
    async fn connection_refused_is_an_error() {
        // Bind then drop to get a port nobody listens on.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let cmd = MetadataCommand::DeleteTopic { name: "t".into() };
        let err = forward(&addr, 1, None, cmd, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, CallError::Connect { .. }), "{err}");
    }
}
