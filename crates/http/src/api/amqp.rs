//! Queues, exchanges, bindings, connections, channels and consumers.

use utoipa_axum::router::OpenApiRouter;

use crate::HttpContext;

pub fn routes() -> OpenApiRouter<HttpContext> {
    OpenApiRouter::new()
}
