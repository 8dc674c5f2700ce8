//! The node's HTTP listener (`management.listen`, RabbitMQ's port 15672 by default):
//! Prometheus metrics on `/metrics`, the management API under `/api` (its OpenAPI
//! description at `/api/openapi.json`) and the web console at `/`, behind HTTP basic auth
//! against the cluster's users.
//!
//! The handlers are thin: `auth::authorize` and `metrics::render` are pure functions, and
//! `collect` gathers a `metrics::Snapshot` object by object (no lock across the scrape).

pub mod api;
pub mod auth;
pub mod console;
pub mod metrics;
pub mod prom_port;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arctern_core::Broker;
use arctern_groups::GroupCoordinator;
use arctern_metadata::{MetadataNode, NO_LEADER};
use arctern_security::ratelimit::{Admission, LoginLimiter};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::{Need, Refusal, CHALLENGE};
use crate::metrics::{
    AmqpTotals, GroupOffsetSample, Latencies, PartitionSample, QueueSample, Snapshot, Traffic,
};

/// What the handlers read.
#[derive(Clone)]
pub struct HttpContext {
    pub broker: Arc<Broker>,
    pub groups: Arc<GroupCoordinator>,
    pub vhost: Arc<arctern_amqp::Vhost>,
    pub metadata: Arc<MetadataNode>,
    pub alarm: arctern_amqp::alarm::AlarmState,
    pub login_limiter: Arc<LoginLimiter>,
    /// What this node listens on (RabbitMQ's `listeners` in `/api/overview`; health checks).
    pub listeners: Vec<ListenerInfo>,
    /// When the node started (uptime).
    pub started: std::time::SystemTime,
}

/// One bound listener of this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerInfo {
    /// RabbitMQ's protocol names: `amqp`, `amqp/ssl`, `http`; Kafka listeners as `kafka`
    /// (or `kafka/<listener name>` for named listeners other than the first).
    pub protocol: String,
    pub addr: SocketAddr,
}

/// The router (also used by tests).
pub fn router(ctx: HttpContext) -> Router {
    let (api, description) = api::routes().split_for_parts();
    let description = Arc::new(description);
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route(
            "/api/openapi.json",
            get(move || {
                let d = Arc::clone(&description);
                async move { axum::Json((*d).clone()) }
            }),
        )
        .merge(api)
        // Unknown `/api` paths answer RabbitMQ's JSON 404, as described for every object path
        // (e.g. an empty name: `/api/kafka/topics/`).
        .route("/api/{*rest}", axum::routing::any(api_not_found))
        .merge(console::routes())
        .with_state(ctx)
}

async fn api_not_found() -> api::ApiError {
    api::ApiError::NotFound
}

/// Serves until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    ctx: HttpContext,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    serve_router(listener, router(ctx), stop).await
}

/// Serves `app` on a plain listener (with the peer's address for the login limiter) until
/// `stop` turns true.
pub(crate) async fn serve_router(
    listener: TcpListener,
    app: Router,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            while !*stop.borrow() {
                if stop.changed().await.is_err() {
                    return;
                }
            }
        })
        .await
}

/// Refusals are JSON bodies, and say so (as RabbitMQ's, and as the API's description has it).
const JSON: [(header::HeaderName, &str); 1] = [(header::CONTENT_TYPE, "application/json")];

/// Serves the same router over TLS (RabbitMQ's `management.ssl.*`) until `stop` turns
/// true: each accepted socket goes through the node's TLS handshake (with its timeout and
/// certificate reload), then hyper serves HTTP/1.1 on it.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<arctern_transport::ReloadableTls>,
    ctx: HttpContext,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = router(ctx);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "HTTPS accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let app = app.clone().layer(axum::Extension(ConnectInfo(peer)));
                let tls = Arc::clone(&tls);
                let mut stop = stop.clone();
                tokio::spawn(async move {
                    let Some(a) = arctern_transport::accept(stream, peer, Some(&tls), "management/ssl").await else {
                        return;
                    };
                    let io = hyper_util::rt::TokioIo::new(a.stream);
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let builder = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    );
                    let conn = builder.serve_connection(io, service);
                    tokio::pin!(conn);
                    tokio::select! {
                        r = conn.as_mut() => {
                            if let Err(e) = r {
                                tracing::debug!(%peer, error = %e, "HTTPS connection ended with an error");
                            }
                        }
                        _ = stop.changed() => {}
                    }
                });
            }
            _ = stop.changed() => {
                if *stop.borrow() {
                    return Ok(());
                }
            }
        }
    }
}

/// RabbitMQ's refusal: 401 with a challenge, or 403.
fn refused(r: Refusal) -> Response {
    match r {
        Refusal::Unauthorized | Refusal::BadPassword => {
            let mut resp = (
                StatusCode::UNAUTHORIZED,
                JSON,
                "{\"error\":\"not_authorized\",\"reason\":\"Not_Authorized\"}",
            )
                .into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(CHALLENGE),
            );
            resp
        }
        Refusal::Forbidden => (
            StatusCode::FORBIDDEN,
            JSON,
            "{\"error\":\"not_authorized\",\"reason\":\"Not management user\"}",
        )
            .into_response(),
    }
}

/// Authenticates a request, with the node's failed-login limiter.
fn check(
    ctx: &HttpContext,
    peer: SocketAddr,
    headers: &HeaderMap,
    need: Need,
) -> Result<String, Response> {
    let now = Instant::now();
    if let Admission::Throttled(_) = ctx.login_limiter.check(peer.ip(), now) {
        tracing::warn!(%peer, "HTTP login throttled after failed attempts");
        return Err(refused(Refusal::Unauthorized));
    }
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let cluster = ctx.broker.cluster();
    match auth::authorize(&cluster, value, need) {
        Ok(user) => {
            ctx.login_limiter.succeeded(peer.ip());
            Ok(user)
        }
        Err(r) => {
            if r == Refusal::BadPassword {
                tracing::warn!(%peer, "HTTP login failed");
                ctx.login_limiter.failed(peer.ip(), now);
            }
            Err(refused(r))
        }
    }
}

async fn metrics_handler(
    State(ctx): State<HttpContext>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Err(resp) = check(&ctx, peer, &headers, Need::Monitoring) {
        return resp;
    }
    scrape(ctx).await
}

/// One scrape's response (shared by the management listener and the Prometheus port).
async fn scrape(ctx: HttpContext) -> Response {
    // A large node's scrape is CPU work of many milliseconds: off the async workers, so it
    // never holds up the connections they serve.
    let body = match tokio::task::spawn_blocking(move || {
        let t0 = Instant::now();
        let snapshot = collect(&ctx);
        let t1 = Instant::now();
        let body = metrics::render_owned(snapshot);
        tracing::debug!(
            collect_ms = (t1 - t0).as_millis() as u64,
            render_ms = t1.elapsed().as_millis() as u64,
            "metrics scrape"
        );
        body
    })
    .await
    {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, "metrics scrape failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Gathers the numbers of this node, one object at a time.
pub fn collect(ctx: &HttpContext) -> Snapshot {
    let broker = &ctx.broker;
    let node = broker.node_id();
    let cluster = broker.cluster();
    let mut partitions = Vec::new();
    let mut fsyncs = 0u64;
    for (name, t) in &cluster.topics {
        for (index, p) in t.partitions.iter().enumerate() {
            if !p.replicas.contains(&node) {
                continue;
            }
            let index = index as i32;
            let Ok(local) = broker.partition(name, index) else {
                continue;
            };
            fsyncs += local.fsync_count();
            if p.leader != node || p.leader == NO_LEADER || !local.is_leader() {
                continue;
            }
            partitions.push(PartitionSample {
                topic: name.clone(),
                partition: index,
                leader: p.leader,
                replicas: p.replicas.len(),
                in_sync: p.isr.len(),
                current_offset: local.high_watermark(),
                oldest_offset: local.log_start_offset().unwrap_or(0),
            });
        }
    }
    // Lag only where this node leads the partition: its high watermark is in `partitions`.
    let log_ends: std::collections::HashMap<(&str, i32), i64> = partitions
        .iter()
        .map(|p| ((p.topic.as_str(), p.partition), p.current_offset))
        .collect();
    let mut group_offsets = Vec::new();
    let (_, listings) = ctx.groups.list_groups(&[]);
    for g in listings {
        let Ok(offsets) = ctx.groups.fetch_offsets(&g.group_id, None) else {
            continue;
        };
        for o in offsets {
            if o.offset < 0 {
                continue;
            }
            let lag = log_ends
                .get(&(o.topic.as_str(), o.partition))
                .map(|end| metrics::lag(*end, o.offset));
            group_offsets.push(GroupOffsetSample {
                group: g.group_id.clone(),
                topic: o.topic,
                partition: o.partition,
                committed: o.offset,
                lag,
            });
        }
    }
    let queues = ctx
        .vhost
        .queue_stats()
        .into_iter()
        .map(|q| QueueSample {
            vhost: q.vhost,
            queue: q.name,
            ready: u64::from(q.ready),
            unacked: u64::from(q.unacked),
            consumers: u64::from(q.consumers),
        })
        .collect();
    let alarm = ctx.alarm.borrow().clone().unwrap_or_default();
    let raft = ctx.metadata.raft_metrics().borrow().clone();
    use arctern_amqp::stats as s;
    Snapshot {
        queues,
        amqp_connections: ctx.vhost.connection_count() as u64,
        amqp_channels: s::get(&s::CHANNELS),
        kafka_connections: arctern_kafka::stats::connections(),
        amqp_totals: AmqpTotals {
            received: s::get(&s::RECEIVED),
            confirmed: s::get(&s::CONFIRMED),
            delivered: s::get(&s::DELIVERED),
            acknowledged: s::get(&s::ACKNOWLEDGED),
            redelivered: s::get(&s::REDELIVERED),
        },
        partitions,
        group_offsets,
        alarm_memory: alarm.contains("memory"),
        alarm_disk: alarm.contains("disk"),
        kafka_requests: arctern_kafka::stats::requests(),
        fsyncs,
        raft_term: raft.current_term,
        raft_commit_index: raft.last_applied.map_or(0, |l| l.index),
        disk_free_bytes: arctern_amqp::alarm::free_bytes(&broker.config().data_dir),
        latency: latencies(),
        traffic: Traffic {
            kafka_received: arctern_kafka::stats::get(&arctern_kafka::stats::BYTES_RECEIVED),
            kafka_sent: arctern_kafka::stats::get(&arctern_kafka::stats::BYTES_SENT),
            amqp_received: s::get(&s::BYTES_RECEIVED),
            amqp_sent: s::get(&s::BYTES_SENT),
        },
        isr_shrinks: arctern_core::stats::get(&arctern_core::stats::ISR_SHRINKS),
        isr_expands: arctern_core::stats::get(&arctern_core::stats::ISR_EXPANDS),
        leader_elections: arctern_core::stats::get(&arctern_core::stats::LEADER_ELECTIONS),
        storage_corruptions: arctern_core::stats::get(&arctern_core::stats::STORAGE_CORRUPTIONS),
        resident_memory_bytes: metrics::process_resident_bytes(),
    }
}

/// The process-wide histograms: atomics read one by one, no lock.
fn latencies() -> Latencies {
    use arctern_storage::stats as st;
    Latencies {
        kafka_requests: arctern_kafka::stats::request_durations(),
        kafka_produce_acks_all: arctern_kafka::stats::PRODUCE_ACKS_ALL.snapshot(),
        amqp_methods: arctern_amqp::stats::method_durations()
            .into_iter()
            .map(|(m, h)| (m.to_string(), h))
            .collect(),
        amqp_publish_to_confirm: arctern_amqp::stats::PUBLISH_TO_CONFIRM.snapshot(),
        fsync: st::FSYNC_SECONDS.snapshot(),
        sync_batch_records: st::SYNC_BATCH_RECORDS.snapshot(),
        sync_batch_bytes: st::SYNC_BATCH_BYTES.snapshot(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_401_with_a_challenge_or_403() {
        for r in [Refusal::Unauthorized, Refusal::BadPassword] {
            let resp = refused(r);
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(
                resp.headers().get(header::WWW_AUTHENTICATE),
                Some(&HeaderValue::from_static(CHALLENGE))
            );
        }
        let resp = refused(Refusal::Forbidden);
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert!(resp.headers().get(header::WWW_AUTHENTICATE).is_none());
    }
}
