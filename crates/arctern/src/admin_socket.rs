//! The node's local admin socket, `<data dir>/admin.sock` (mode 0600): how `arctern
//! users`, `vhosts`, `permissions`, `queues` and `definitions` reach a running node, the way
//! rabbitmqctl reaches its node. Access is the file system's: whoever may open the socket
//! administers the cluster. The tools build metadata commands themselves (hashing
//! passwords on their side, as Kafka's tools do for SCRAM), so the secret never reaches
//! the node; the node proposes them through Raft like any other change. Queue listing,
//! purge, delete and definition declares act on the node's AMQP vhosts
//! (`arctern_amqp::manage`).
//!
//! Protocol: one JSON [`AdminRequest`] per line, answered by one JSON [`AdminResponse`]
//! line. A line longer than [`MAX_LINE`] closes the connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use arctern_amqp::manage::{self, QueueInfo};
use arctern_amqp::Vhost;
use arctern_metadata::{ClusterState, CommandResult, MetadataCommand, MetadataNode};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

pub const SOCKET_NAME: &str = "admin.sock";
const MAX_LINE: u64 = 4 << 20;

#[derive(Debug, Serialize, Deserialize)]
pub enum AdminRequest {
    /// Commit one metadata change and answer its result.
    Propose(MetadataCommand),
    /// The node's current view of the cluster metadata.
    State,
    /// The AMQP queues with live counts (one vhost, or all with `None`).
    Queues { vhost: Option<String> },
    /// Drops a queue's ready messages; answers `Count` (how many).
    PurgeQueue { vhost: String, name: String },
    /// Deletes a queue; answers `Count` (how many messages it held).
    DeleteQueue { vhost: String, name: String },
    /// Declares a durable exchange, queue or binding (definitions import); answers
    /// `Count(0)`.
    Declare(manage::Declare),
}

#[derive(Debug, Serialize, Deserialize)]
pub enum AdminResponse {
    Result(CommandResult),
    State(Box<ClusterState>),
    Error(String),
    Queues(Vec<QueueInfo>),
    Count(u32),
}

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_NAME)
}

/// Binds the socket (replacing a stale one: the data dir lock says no other node runs
/// here) and serves it until `shutdown` turns true.
pub fn start(
    data_dir: &Path,
    metadata: Arc<MetadataNode>,
    amqp: Option<Arc<Vhost>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>> {
    let path = socket_path(data_dir);
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(serve_conn(stream, Arc::clone(&metadata), amqp.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "admin socket accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
        let _ = std::fs::remove_file(&path);
    }))
}

async fn serve_conn(stream: UnixStream, metadata: Arc<MetadataNode>, amqp: Option<Arc<Vhost>>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut line = Vec::new();
        match (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) => return,
            Ok(_) if !line.ends_with(b"\n") => {
                tracing::warn!("admin socket: request line too long or cut off; closing");
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "admin socket read failed");
                return;
            }
        }
        let response = match serde_json::from_slice::<AdminRequest>(&line) {
            Ok(AdminRequest::Propose(cmd)) => match metadata.propose(cmd).await {
                Ok(result) => AdminResponse::Result(result),
                Err(e) => AdminResponse::Error(e.to_string()),
            },
            Ok(AdminRequest::State) => {
                AdminResponse::State(Box::new((**metadata.state().borrow()).clone()))
            }
            Ok(AdminRequest::Queues { vhost }) => match &amqp {
                Some(root) => match manage::list_queues(root, vhost.as_deref()).await {
                    Ok(qs) => AdminResponse::Queues(qs),
                    Err(e) => AdminResponse::Error(e.to_string()),
                },
                None => AdminResponse::Error("AMQP is not running on this node".into()),
            },
            Ok(AdminRequest::PurgeQueue { vhost, name }) => match &amqp {
                Some(root) => match manage::purge_queue(root, &vhost, &name).await {
                    Ok(n) => AdminResponse::Count(n),
                    Err(e) => AdminResponse::Error(e.to_string()),
                },
                None => AdminResponse::Error("AMQP is not running on this node".into()),
            },
            Ok(AdminRequest::DeleteQueue { vhost, name }) => match &amqp {
                Some(root) => match manage::delete_queue(root, &vhost, &name).await {
                    Ok(n) => AdminResponse::Count(n),
                    Err(e) => AdminResponse::Error(e.to_string()),
                },
                None => AdminResponse::Error("AMQP is not running on this node".into()),
            },
            Ok(AdminRequest::Declare(d)) => match &amqp {
                Some(root) => match manage::declare(root, &d).await {
                    Ok(()) => AdminResponse::Count(0),
                    Err(e) => AdminResponse::Error(e.to_string()),
                },
                None => AdminResponse::Error("AMQP is not running on this node".into()),
            },
            Err(e) => AdminResponse::Error(format!("bad admin request: {e}")),
        };
        let mut out = match serde_json::to_vec(&response) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "admin socket: cannot encode response");
                return;
            }
        };
        out.push(b'\n');
        if write.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// Sends one request to the node whose data dir is `data_dir`.
pub async fn call(data_dir: &Path, request: &AdminRequest) -> Result<AdminResponse> {
    let path = socket_path(data_dir);
    let stream = UnixStream::connect(&path).await.with_context(|| {
        format!(
            "cannot reach a running node at {} (is `arctern serve` running with this data dir?)",
            path.display()
        )
    })?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    write
        .write_all(&line)
        .await
        .context("sending admin request")?;
    let mut answer = Vec::new();
    BufReader::new(read)
        .take(64 << 20)
        .read_until(b'\n', &mut answer)
        .await
        .context("reading admin response")?;
    if answer.is_empty() {
        bail!("the node closed the admin socket without answering");
    }
    serde_json::from_slice(&answer).context("decoding admin response")
}

/// Proposes `cmd` and turns a rejection into an error naming it.
pub async fn propose(data_dir: &Path, cmd: MetadataCommand) -> Result<()> {
    match call(data_dir, &AdminRequest::Propose(cmd)).await? {
        AdminResponse::Result(CommandResult::Ok) => Ok(()),
        AdminResponse::Result(other) => bail!("refused: {other:?}"),
        AdminResponse::Error(e) => bail!("{e}"),
        _ => bail!("unexpected answer from the node"),
    }
}

/// The node's current cluster metadata.
pub async fn state(data_dir: &Path) -> Result<ClusterState> {
    match call(data_dir, &AdminRequest::State).await? {
        AdminResponse::State(s) => Ok(*s),
        AdminResponse::Error(e) => bail!("{e}"),
        _ => bail!("unexpected answer from the node"),
    }
}

/// The AMQP queues with their live counts.
pub async fn queues(data_dir: &Path, vhost: Option<String>) -> Result<Vec<QueueInfo>> {
    match call(data_dir, &AdminRequest::Queues { vhost }).await? {
        AdminResponse::Queues(q) => Ok(q),
        AdminResponse::Error(e) => bail!("{e}"),
        _ => bail!("unexpected answer from the node"),
    }
}

/// Declares a durable exchange, queue or binding on the node.
pub async fn declare(data_dir: &Path, d: manage::Declare) -> Result<()> {
    match call(data_dir, &AdminRequest::Declare(d)).await? {
        AdminResponse::Count(_) => Ok(()),
        AdminResponse::Error(e) => bail!("{e}"),
        _ => bail!("unexpected answer from the node"),
    }
}

/// Purges (`delete == false`) or deletes a queue; returns the message count it answered.
pub async fn queue_op(data_dir: &Path, vhost: &str, name: &str, delete: bool) -> Result<u32> {
    let (vhost, name) = (vhost.to_string(), name.to_string());
    let req = if delete {
        AdminRequest::DeleteQueue { vhost, name }
    } else {
        AdminRequest::PurgeQueue { vhost, name }
    };
    match call(data_dir, &req).await? {
        AdminResponse::Count(n) => Ok(n),
        AdminResponse::Error(e) => bail!("{e}"),
        _ => bail!("unexpected answer from the node"),
    }
}
