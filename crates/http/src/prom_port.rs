//! RabbitMQ's Prometheus port (rabbitmq_prometheus, `prometheus.tcp.port`, 15692 in
//! RabbitMQ): the same `/metrics` as the management listener, without authentication,
//! as RabbitMQ serves it. Started only when configured, on loopback unless
//! `prometheus.tcp.ip` says otherwise.

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::HttpContext;

/// The Prometheus port's router (also used by tests).
pub fn router(ctx: HttpContext) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(ctx)
}

async fn metrics(State(ctx): State<HttpContext>) -> Response {
    crate::scrape(ctx).await
}

/// Serves until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    ctx: HttpContext,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    crate::serve_router(listener, router(ctx), stop).await
}
