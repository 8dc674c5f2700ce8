//! The management HTTP API under `/api`: RabbitMQ's paths and JSON shapes (the subset tools
//! use: rabbitmqadmin, Celery/Flower, Terraform's provider) and Arctern's Kafka objects under
//! `/api/kafka`. Handlers are annotated with `utoipa`, so the OpenAPI description served at
//! `/api/openapi.json` is generated from the same code that answers.
//!
//! One file per area: `admin` (overview, users, vhosts, permissions, definitions, health),
//! `amqp` (queues, exchanges, bindings), `connections` (connections, channels, consumers),
//! `kafka`.

pub mod admin;
pub mod admin_defs;
pub mod admin_users;
pub mod amqp;
pub mod connections;
pub mod error;
pub mod kafka;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::auth::{tags_allow, Need};
use crate::HttpContext;
pub use error::ApiError;

/// The description's frame; the paths come from the routers below.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Arctern management API",
        description = "RabbitMQ's management HTTP API (the subset tools use) and Arctern's Kafka objects under /api/kafka. HTTP basic auth with the cluster's users; user tags grade access as RabbitMQ does."
    ),
    modifiers(&BasicAuth),
    security(("basic" = []))
)]
pub struct ApiDoc;

struct BasicAuth;

impl Modify for BasicAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
    }
}

/// Every `/api` route, with its description.
pub fn routes() -> OpenApiRouter<HttpContext> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(admin::routes())
        .merge(amqp::routes())
        .merge(connections::routes())
        .merge(kafka::routes())
}

/// `Query` whose rejection is RabbitMQ's JSON 400 (axum's own is plain text).
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(t)| ApiQuery(t))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// The authenticated user of a request: any user the management plugin lets in
/// (tags `management`, `policymaker`, `monitoring` or `administrator`). Handlers that need
/// more call [`Caller::require`].
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub tags: Vec<String>,
}

impl Caller {
    /// 403 unless the caller's tags grant `need`.
    pub fn require(&self, need: Need) -> Result<(), ApiError> {
        if tags_allow(&self.tags, need) {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }

    pub fn is_administrator(&self) -> bool {
        tags_allow(&self.tags, Need::Administrator)
    }

    /// Monitoring users and administrators see every vhost's objects; others only vhosts
    /// they have permissions on (RabbitMQ's rule).
    pub fn sees_all(&self) -> bool {
        tags_allow(&self.tags, Need::Monitoring)
    }
}

impl FromRequestParts<HttpContext> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &HttpContext,
    ) -> Result<Self, Self::Rejection> {
        // Tests drive the router without a socket; the limiter then keys on loopback.
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let name =
            crate::check(ctx, peer, &parts.headers, Need::Management).map_err(ApiError::Refused)?;
        let tags = ctx
            .broker
            .cluster()
            .users
            .get(&name)
            .map(|u| u.tags.clone())
            .unwrap_or_default();
        Ok(Caller { name, tags })
    }
}
