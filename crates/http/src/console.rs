//! The web console: a page of plain HTML, CSS and JavaScript modules embedded in the binary
//! (`include_str!`, no CDN, no build step), served at `/` and `/console/*`. The assets carry
//! no data and need no login; the page asks for the user's credentials and calls the
//! management API (`/api/...`) itself with `Authorization: Basic`, so every number it shows
//! passes the same auth and tag rules as any other API client.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::HttpContext;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const INDEX: &str = include_str!("../console/index.html");

/// Everything under `/console/`.
const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../console/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../console/api.js"),
    },
    Asset {
        name: "chart.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../console/chart.js"),
    },
    Asset {
        name: "dom.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../console/dom.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../console/style.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("../console/favicon.svg"),
    },
];

/// The page only loads its own files and talks only to this origin; no framing.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

pub fn routes() -> Router<HttpContext> {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/console/{file}", get(asset))
}

fn respond(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Assets change with the binary; always revalidate so an upgrade shows at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

async fn index() -> Response {
    respond("text/html; charset=utf-8", INDEX)
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == file) {
        Some(a) => respond(a.content_type, a.body),
        None => (StatusCode::NOT_FOUND, "Not Found").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_references_is_embedded() {
        // index.html and the modules refer to each other by name; a typo would only show
        // in a browser, so check the names here.
        let mut referenced = Vec::new();
        for text in std::iter::once(INDEX).chain(ASSETS.iter().map(|a| a.body)) {
            for part in text.split(['"', '\'']) {
                let name = part
                    .strip_prefix("/console/")
                    .or_else(|| part.strip_prefix("./"));
                if let Some(name) = name {
                    if name.ends_with(".js") || name.ends_with(".css") || name.ends_with(".svg") {
                        referenced.push(name.to_string());
                    }
                }
            }
        }
        assert!(referenced.iter().any(|n| n == "app.js"));
        for name in referenced {
            assert!(
                ASSETS.iter().any(|a| a.name == name),
                "{name} is referenced but not embedded"
            );
        }
    }

    #[tokio::test]
    async fn unknown_asset_is_404_and_known_has_its_type() {
        let resp = asset(Path("nope.js".to_string())).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let resp = asset(Path("style.css".to_string())).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "text/css; charset=utf-8"
        );
        assert!(resp.headers().contains_key(header::CONTENT_SECURITY_POLICY));
    }
}
