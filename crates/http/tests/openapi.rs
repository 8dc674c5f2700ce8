//! The management API's OpenAPI description (`/api/openapi.json`): valid JSON, every route
//! the `/api` router registers is described, and the committed copy `docs/openapi.json` is
//! current (`UPDATE_OPENAPI=1 cargo test -p arctern-http --test openapi` rewrites it).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The description as served (the same `split_for_parts` the router uses).
fn description() -> serde_json::Value {
    let (_, openapi) = arctern_http::api::routes().split_for_parts();
    let text = openapi.to_pretty_json().expect("description serializes");
    serde_json::from_str(&text).expect("description is valid JSON")
}

/// Handler names registered with `routes!(...)` in the `/api` modules' sources, and any
/// plain `.route(` call (a route the description would not know).
fn registered_handlers(dir: &Path) -> (BTreeSet<String>, Vec<String>) {
    let mut handlers = BTreeSet::new();
    let mut plain = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("api dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    for file in files {
        let src = std::fs::read_to_string(&file).expect("api source");
        let mut rest = src.as_str();
        while let Some(i) = rest.find("routes!(") {
            rest = &rest[i + "routes!(".len()..];
            let end = rest.find(')').expect("routes! closes");
            for name in rest[..end].split(',') {
                let name = name.trim();
                // `routes!(a, b)`; a path such as `super::x::y` is named by its last part.
                let name = name.rsplit("::").next().unwrap_or(name);
                if !name.is_empty() {
                    handlers.insert(name.to_string());
                }
            }
        }
        for (n, line) in src.lines().enumerate() {
            let code = line.trim_start();
            if !code.starts_with("//") && code.contains(".route(") {
                plain.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    (handlers, plain)
}

#[test]
fn description_is_valid_and_complete() {
    let d = description();
    assert!(
        d["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "not an OpenAPI 3 document"
    );
    let paths = d["paths"].as_object().expect("paths");
    let mut operations = BTreeSet::new();
    for (path, item) in paths {
        assert!(path.starts_with("/api/"), "{path} outside /api");
        for (method, op) in item.as_object().expect("path item") {
            if !["get", "put", "post", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                continue;
            }
            let id = op["operationId"].as_str().expect("operationId");
            assert!(
                operations.insert(id.to_string()),
                "operationId {id} is not unique"
            );
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|c| c.starts_with('2')),
                "{method} {path} describes no success response"
            );
        }
    }
    assert!(d["components"]["securitySchemes"]["basic"].is_object());

    let (handlers, plain) = registered_handlers(&manifest_dir().join("src/api"));
    assert!(
        plain.is_empty(),
        "routes registered without a description (use .routes(routes!(handler))): {plain:#?}"
    );
    let missing: Vec<&String> = handlers.difference(&operations).collect();
    assert!(
        missing.is_empty(),
        "handlers registered but not in the description: {missing:?}"
    );
    for id in [
        "whoami",
        "kafka_cluster",
        "kafka_topics",
        "kafka_topic",
        "kafka_groups",
        "kafka_group",
    ] {
        assert!(operations.contains(id), "{id} missing");
    }
}

#[test]
fn committed_copy_is_current() {
    let file = manifest_dir().join("../../docs/openapi.json");
    let want = format!(
        "{}\n",
        serde_json::to_string_pretty(&description()).expect("pretty JSON")
    );
    if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| v == "1") {
        std::fs::write(&file, &want).expect("writing docs/openapi.json");
        return;
    }
    let have = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        have == want,
        "docs/openapi.json is stale; regenerate it with \
         `UPDATE_OPENAPI=1 cargo test -p arctern-http --test openapi`"
    );
}
