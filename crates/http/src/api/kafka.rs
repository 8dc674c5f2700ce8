//! Kafka objects under `/api/kafka`: cluster nodes and controller, topics with partitions,
//! leaders, ISR and configs, consumer groups with members, committed offsets and lag.

use utoipa_axum::router::OpenApiRouter;

use crate::HttpContext;

pub fn routes() -> OpenApiRouter<HttpContext> {
    OpenApiRouter::new()
}
