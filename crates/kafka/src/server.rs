//! The Kafka listener and the per-connection request pipeline.
//!
//! A reader decodes frames and runs each request's handler in arrival order, so requests
//! take effect in the order sent, as Kafka (which reads a connection's next request only
//! after answering the last) guarantees. Produce, Fetch and OffsetCommit make their change
//! when handled and only wait afterwards (fsync, replication, long poll): those waits run
//! as tasks while the reader goes on, so one connection's appends share group commits.
//! Every other request runs alone: after all earlier requests of the connection have
//! completed, and before any later one is read (`handlers::runs_alone`). A writer sends the
//! responses strictly in request order, as Kafka clients require. The number of requests
//! in flight per connection is bounded, and so is every frame.

use std::net::SocketAddr;
use std::sync::Arc;

use arctern_kafka_wire::kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use arctern_kafka_wire::kafka_protocol::protocol::StrBytes;
use arctern_kafka_wire::{
    decode_request, encode_response, frame_length, unsupported_api_versions_response, DecodeError,
};
use arctern_security::{Principal, TlsPeer};
use arctern_transport::{MaybeTls, MaybeTlsWrite, ReloadableTls};
use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch, RwLock};

use crate::handlers::{dispatch, runs_alone, KafkaContext, ListenerInfo, Origin, Reply};
use crate::sasl::{Gate, SaslSession, MAX_UNAUTHENTICATED_FRAME};

#[derive(Debug, Clone)]
pub struct KafkaServerConfig {
    /// `socket.request.max.bytes`: larger frames close the connection.
    pub socket_request_max_bytes: usize,
    /// Requests a connection may have in flight before the reader stops reading.
    pub max_in_flight_per_connection: usize,
    /// `max.connections` / `max.connections.per.ip`, shared by every listener of the node.
    pub quota: arctern_transport::ConnectionQuota,
    /// The inter-broker listener's name when the node has other listeners too: exempt from
    /// `max.connections`, as in Kafka (KIP-402).
    pub inter_broker_listener: Option<String>,
    /// `connections.max.idle.ms`: a connection that sends no request for this long is
    /// closed (`None`: never).
    pub connections_max_idle: Option<std::time::Duration>,
}

impl Default for KafkaServerConfig {
    fn default() -> Self {
        KafkaServerConfig {
            socket_request_max_bytes: 104_857_600,
            max_in_flight_per_connection: 64,
            quota: arctern_transport::ConnectionQuota::new(Default::default()),
            inter_broker_listener: None,
            // Kafka's default: 10 minutes.
            connections_max_idle: Some(std::time::Duration::from_millis(600_000)),
        }
    }
}

/// Accepts connections on one PLAINTEXT listener until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    ctx: KafkaContext,
    config: KafkaServerConfig,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    serve_listener(
        listener,
        Arc::new(ListenerInfo::plaintext()),
        None,
        ctx,
        config,
        shutdown,
    )
    .await
}

/// Accepts connections on one listener until `shutdown` turns true; `tls` is set for the
/// SSL and SASL_SSL protocols.
pub async fn serve_listener(
    listener: TcpListener,
    info: Arc<ListenerInfo>,
    tls: Option<Arc<ReloadableTls>>,
    ctx: KafkaContext,
    config: KafkaServerConfig,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                match accepted {
                    Ok((stream, peer)) => {
                        let exempt = config.inter_broker_listener.as_deref() == Some(info.name.as_str());
                        let permit = match config.quota.try_admit(peer.ip(), exempt) {
                            Ok(p) => p,
                            Err(refusal) => {
                                // Kafka closes the new socket (TooManyConnectionsException).
                                tracing::warn!(%peer, listener = %info.name, "closing connection: {refusal}");
                                drop(stream);
                                continue;
                            }
                        };
                        let ctx = ctx.clone();
                        let config = config.clone();
                        let info = Arc::clone(&info);
                        let tls = tls.clone();
                        tokio::spawn(async move {
                            let Some(a) =
                                arctern_transport::accept(stream, peer, tls.as_deref(), &info.name)
                                    .await
                            else {
                                return;
                            };
                            connection(a.stream, peer, ctx, config, info, a.tls).await;
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        // Typically EMFILE; back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    return Ok(());
                }
            }
        }
    }
}

type Pending = oneshot::Receiver<Option<BytesMut>>;

/// Kafka's default `ssl.principal.mapping.rules`: a verified client certificate's subject
/// DN in RFC 2253 form is the principal; no certificate, `ANONYMOUS`.
fn tls_principal(tls: Option<&TlsPeer>) -> Principal {
    match tls.and_then(|t| t.client_subject.clone()) {
        Some(subject) => Principal::User(subject),
        None => Principal::Anonymous,
    }
}

async fn connection(
    stream: MaybeTls,
    peer: SocketAddr,
    ctx: KafkaContext,
    config: KafkaServerConfig,
    listener: Arc<ListenerInfo>,
    tls: Option<TlsPeer>,
) {
    let _counted = crate::stats::ConnectionCount::new();
    let (mut reader, writer) = stream.into_split();
    let (queue, pending) = mpsc::channel::<Pending>(config.max_in_flight_per_connection.max(1));
    let writer_task = tokio::spawn(write_responses(writer, pending, peer));
    let max = config.socket_request_max_bytes;
    // Each deferred wait holds a read guard until it completes; a request that runs alone
    // takes the write lock first, i.e. waits until every earlier request has completed.
    let in_flight = Arc::new(RwLock::new(()));
    // SASL replaces it once the client has authenticated.
    let mut principal = Arc::new(tls_principal(tls.as_ref()));
    let mut sasl = SaslSession::new(
        listener.protocol.uses_sasl(),
        ctx.sasl
            .offered(listener.protocol.uses_sasl(), ctx.cluster_secret.is_some()),
        ctx.sasl.reauth_ms,
    );
    loop {
        let mut prefix = [0u8; 4];
        let read = reader.read_exact(&mut prefix);
        let read = match config.connections_max_idle {
            Some(idle) => match tokio::time::timeout(idle, read).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::info!(%peer, idle_ms = idle.as_millis() as u64, "closing idle connection (connections.max.idle.ms)");
                    break;
                }
            },
            None => read.await,
        };
        if let Err(e) = read {
            if e.kind() != std::io::ErrorKind::UnexpectedEof {
                tracing::debug!(%peer, error = %e, "connection read failed");
            }
            break;
        }
        // Kafka's `sasl.server.max.receive.size`: small frames until authenticated.
        let max = if sasl.pending() {
            max.min(MAX_UNAUTHENTICATED_FRAME)
        } else {
            max
        };
        let len = match frame_length(prefix, max) {
            Ok(len) => len,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection: bad frame size");
                break;
            }
        };
        // Grow the buffer as bytes arrive, so a claimed size costs nothing until sent.
        let mut frame = BytesMut::with_capacity(len.min(64 * 1024));
        while frame.len() < len {
            let want = (len - frame.len()).min(1 << 20);
            let mut chunk = (&mut reader).take(want as u64);
            match chunk.read_buf(&mut frame).await {
                Ok(0) => {
                    tracing::debug!(%peer, "connection closed mid-frame");
                    return finish(queue, writer_task).await;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "connection read failed mid-frame");
                    return finish(queue, writer_task).await;
                }
            }
        }
        if sasl.expects_raw() {
            // After SaslHandshake v0 the client sends bare, size-prefixed SASL tokens.
            let answer = sasl_authenticate(&ctx, &mut sasl, &frame, peer);
            if answer.close {
                // Kafka closes without an answer when a v0 exchange fails.
                break;
            }
            if let Some(p) = answer.principal {
                principal = Arc::new(p);
            }
            let mut out = BytesMut::with_capacity(4 + answer.auth_bytes.len());
            out.put_u32(answer.auth_bytes.len() as u32);
            out.put_slice(&answer.auth_bytes);
            let (tx, rx) = oneshot::channel();
            let _ = tx.send(Some(out));
            if queue.send(rx).await.is_err() {
                break;
            }
            continue;
        }
        let mut request = match decode_request(frame.freeze()) {
            Ok(r) => r,
            Err(DecodeError::UnsupportedApiVersionsVersion {
                version,
                correlation_id,
            }) => {
                tracing::debug!(%peer, version, "ApiVersions at unsupported version; answering in v0");
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(Some(unsupported_api_versions_response(correlation_id)));
                if queue.send(rx).await.is_err() {
                    break;
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection: undecodable request");
                break;
            }
        };
        let correlation_id = request.header.correlation_id;
        let version = request.header.request_api_version;
        let api_key = request.api_key;
        tracing::trace!(%peer, ?api_key, version, correlation_id, "request");
        crate::stats::count_request(api_key);
        match sasl.gate(api_key, std::time::Instant::now()) {
            Gate::Serve => {}
            Gate::Close(why) => {
                tracing::warn!(%peer, ?api_key, "closing connection: {why}");
                break;
            }
            Gate::Sasl => {
                // Changes the connection's state: after every earlier request completed.
                let all_done = in_flight.write().await;
                let (body, close) = match request.body {
                    RequestKind::SaslHandshake(r) => {
                        let a = sasl.handshake(r.mechanism.as_str(), version);
                        if a.error_code != 0 {
                            tracing::warn!(%peer, mechanism = %r.mechanism.as_str(), error_code = a.error_code, "SASL handshake refused");
                        }
                        let body = SaslHandshakeResponse::default()
                            .with_error_code(a.error_code)
                            .with_mechanisms(
                                a.mechanisms
                                    .into_iter()
                                    .map(StrBytes::from_string)
                                    .collect(),
                            );
                        (ResponseKind::SaslHandshake(body), a.close)
                    }
                    RequestKind::SaslAuthenticate(r) => {
                        let a = sasl_authenticate(&ctx, &mut sasl, &r.auth_bytes, peer);
                        if let Some(p) = a.principal {
                            principal = Arc::new(p);
                        }
                        let mut body = SaslAuthenticateResponse::default()
                            .with_error_code(a.error_code)
                            .with_error_message(a.error_message.map(StrBytes::from_string))
                            .with_auth_bytes(a.auth_bytes.into());
                        if version >= 1 {
                            body.session_lifetime_ms = a.session_lifetime_ms;
                        }
                        (ResponseKind::SaslAuthenticate(body), a.close)
                    }
                    _ => break,
                };
                drop(all_done);
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(encode(correlation_id, api_key, version, &body, peer));
                if queue.send(rx).await.is_err() || close {
                    break;
                }
                continue;
            }
        }
        let origin = Origin {
            peer,
            // A refcounted view of the decoded frame: no copy on the produce/fetch path.
            client_id: request.header.client_id.take(),
            principal: Arc::clone(&principal),
            listener: Arc::clone(&listener),
        };
        let alone = runs_alone(api_key);
        let all_done = if alone {
            Some(in_flight.write().await)
        } else {
            None
        };
        let reply = dispatch(&ctx, request.body, version, origin);
        let (tx, rx) = oneshot::channel();
        match reply {
            Reply::Nothing => continue,
            Reply::Now(body) => {
                let _ = tx.send(encode(
                    correlation_id,
                    api_key,
                    version,
                    body.as_ref(),
                    peer,
                ));
            }
            Reply::Later(fut) if alone => {
                let body = fut.await;
                let _ = tx.send(encode(correlation_id, api_key, version, &body, peer));
            }
            Reply::Later(fut) => {
                // Never contended: only this task takes the write lock, and not now.
                let guard = Arc::clone(&in_flight).try_read_owned();
                tokio::spawn(async move {
                    let body = fut.await;
                    let _ = tx.send(encode(correlation_id, api_key, version, &body, peer));
                    drop(guard);
                });
            }
        }
        drop(all_done);
        if queue.send(rx).await.is_err() {
            break;
        }
    }
    finish(queue, writer_task).await
}

/// One SASL token through the session, with the shared failed-login limiter around it.
fn sasl_authenticate(
    ctx: &KafkaContext,
    sasl: &mut SaslSession,
    token: &[u8],
    peer: SocketAddr,
) -> crate::sasl::AuthAnswer {
    use arctern_security::ratelimit::Admission;
    let now = std::time::Instant::now();
    let throttled = sasl.mechanism().is_some()
        && matches!(
            ctx.login_limiter.check(peer.ip(), now),
            Admission::Throttled(_)
        );
    let mechanism = sasl.mechanism().unwrap_or("none");
    let state = ctx.broker.cluster();
    let answer = sasl.authenticate(
        token,
        &state.users,
        &ctx.sasl,
        ctx.cluster_secret.as_deref(),
        throttled,
        now,
    );
    if answer.error_code == 58 {
        // A refused (throttled) attempt does not extend the wait: a client retrying
        // gets in once the back-off has passed.
        if !throttled {
            ctx.login_limiter.failed(peer.ip(), now);
        }
        tracing::warn!(%peer, mechanism, throttled, reason = answer.error_message.as_deref().unwrap_or(""), "SASL authentication failed; closing connection");
    } else if answer.error_code != 0 {
        tracing::warn!(%peer, mechanism, reason = answer.error_message.as_deref().unwrap_or(""), "SASL request out of order");
    } else if let Some(p) = &answer.principal {
        ctx.login_limiter.succeeded(peer.ip());
        tracing::info!(%peer, mechanism, principal = %p.kafka_name(), "SASL authentication succeeded");
    }
    answer
}

async fn finish(queue: mpsc::Sender<Pending>, writer_task: tokio::task::JoinHandle<()>) {
    drop(queue);
    let _ = writer_task.await;
}

fn encode(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    body: &arctern_kafka_wire::kafka_protocol::messages::ResponseKind,
    peer: SocketAddr,
) -> Option<BytesMut> {
    match encode_response(correlation_id, api_key, version, body) {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::error!(%peer, ?api_key, version, error = %e, "cannot encode response; closing connection");
            None
        }
    }
}

async fn write_responses(
    mut writer: MaybeTlsWrite,
    mut pending: mpsc::Receiver<Pending>,
    peer: SocketAddr,
) {
    let mut out = BytesMut::new();
    let mut carried: Option<Pending> = None;
    loop {
        let next = match carried.take() {
            Some(p) => p,
            None => match pending.recv().await {
                Some(p) => p,
                None => break,
            },
        };
        let Ok(Some(frame)) = next.await else {
            break;
        };
        out.put(frame);
        // Coalesce responses that are already complete into the same write.
        let mut closing = false;
        while out.len() < 1 << 20 {
            let Ok(mut p) = pending.try_recv() else { break };
            match p.try_recv() {
                Ok(Some(frame)) => out.put(frame),
                Err(oneshot::error::TryRecvError::Empty) => {
                    carried = Some(p);
                    break;
                }
                Ok(None) | Err(oneshot::error::TryRecvError::Closed) => {
                    closing = true;
                    break;
                }
            }
        }
        // TLS buffers records until flushed (a no-op on plain TCP).
        let written = match writer.write_all(&out).await {
            Ok(()) => writer.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            tracing::debug!(%peer, error = %e, "connection write failed");
            break;
        }
        out.clear();
        if closing {
            break;
        }
    }
    let _ = writer.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_principal_is_the_certificate_subject() {
        assert_eq!(tls_principal(None), Principal::Anonymous);
        assert_eq!(
            tls_principal(Some(&TlsPeer::default())),
            Principal::Anonymous
        );
        let peer = TlsPeer {
            client_cn: Some("alice".into()),
            client_subject: Some("CN=alice,O=Test".into()),
        };
        assert_eq!(
            tls_principal(Some(&peer)).kafka_name(),
            "User:CN=alice,O=Test"
        );
    }
}
