//! AMQP connections (list, inspect, close), channels and consumers, with message rates.

use utoipa_axum::router::OpenApiRouter;

use crate::HttpContext;

pub fn routes() -> OpenApiRouter<HttpContext> {
    OpenApiRouter::new()
}
