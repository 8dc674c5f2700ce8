//! Overview, users, vhosts, permissions, definitions and health checks.

use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiError, Caller};
use crate::HttpContext;

pub fn routes() -> OpenApiRouter<HttpContext> {
    OpenApiRouter::new().routes(routes!(whoami))
}

/// `GET /api/whoami`.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    pub name: String,
    pub tags: Vec<String>,
}

/// The authenticated user and its tags.
#[utoipa::path(
    get,
    path = "/api/whoami",
    tag = "admin",
    responses(
        (status = 200, body = WhoAmI),
        (status = 401, body = super::error::ErrorBody)
    )
)]
async fn whoami(caller: Caller) -> Result<Json<WhoAmI>, ApiError> {
    Ok(Json(WhoAmI {
        name: caller.name,
        tags: caller.tags,
    }))
}
