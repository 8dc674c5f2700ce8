//! Definitions export/import (`/api/definitions`, one implementation with `arctern
//! definitions`: `arctern_amqp::definitions`) and RabbitMQ's health checks
//! (`/api/health/checks/*`, `/api/aliveness-test/{vhost}`).

use std::time::Duration;

use arctern_amqp::definitions::{amqp_declares, export, export_vhost, import_plan};
use arctern_amqp::manage;
use arctern_amqp::vhost::Route;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::admin::{local_node_name, propose};
use super::error::ErrorBody;
use super::{ApiError, Caller};
use crate::auth::Need;
use crate::HttpContext;

pub fn routes() -> OpenApiRouter<HttpContext> {
    OpenApiRouter::new()
        .routes(routes!(get_definitions, post_definitions))
        .routes(routes!(get_vhost_definitions, post_vhost_definitions))
        .routes(routes!(alarms))
        .routes(routes!(local_alarms))
        .routes(routes!(port_listener))
        .routes(routes!(protocol_listener))
        .routes(routes!(virtual_hosts))
        .routes(routes!(aliveness_test))
}

/// The body of a definitions upload: JSON, or a multipart form's `file` field (the
/// management UI's upload form).
fn definitions_body(body: &[u8], content_type: Option<&str>) -> Result<Value, ApiError> {
    let text: &[u8] = match content_type.and_then(multipart_boundary) {
        Some(boundary) => multipart_field(body, &boundary, "file").ok_or_else(|| {
            ApiError::BadRequest("a multipart upload needs a field named \"file\"".into())
        })?,
        None => body,
    };
    match serde_json::from_slice::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(ApiError::BadRequest(
            "definitions must be a JSON object".into(),
        )),
        Err(e) => {
            tracing::debug!(error = %e, "management API: unreadable definitions");
            Err(ApiError::BadRequest("failed_to_parse_json".into()))
        }
    }
}

/// The boundary of a `multipart/form-data` content type.
fn multipart_boundary(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.eq_ignore_ascii_case("boundary")
            .then(|| v.trim_matches('"').to_string())
    })
}

/// The content of form field `name` in a multipart body.
fn multipart_field<'a>(body: &'a [u8], boundary: &str, name: &str) -> Option<&'a [u8]> {
    let delimiter = format!("--{boundary}");
    let d = delimiter.as_bytes();
    let find = |hay: &[u8], needle: &[u8], from: usize| -> Option<usize> {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let mut pos = find(body, d, 0)?;
    loop {
        let start = pos + d.len();
        let next = find(body, d, start)?;
        let part = &body[start..next];
        if let Some(h) = find(part, b"\r\n\r\n", 0) {
            let headers = String::from_utf8_lossy(&part[..h]).to_ascii_lowercase();
            if headers.contains(&format!("name=\"{name}\"")) {
                let content = &part[h + 4..];
                return Some(content.strip_suffix(b"\r\n").unwrap_or(content));
            }
        }
        pos = next;
    }
}

fn content_type(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

/// Applies a definitions document: users, vhosts and permissions through the metadata,
/// then exchanges, queues and bindings on the node serving the vhosts.
async fn import(ctx: &HttpContext, doc: &Value) -> Result<(), ApiError> {
    let plan = import_plan(doc).map_err(|e| ApiError::BadRequest(e.0))?;
    let declares = amqp_declares(doc).map_err(|e| ApiError::BadRequest(e.0))?;
    for cmd in plan.commands {
        match propose(ctx, cmd).await {
            Err(ApiError::NotFound) => {
                return Err(ApiError::BadRequest(
                    "a permission names an unknown user or vhost".into(),
                ))
            }
            other => other?,
        }
    }
    for d in declares {
        manage::declare(&ctx.vhost, &d)
            .await
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    }
    Ok(())
}

/// Everything but messages, in RabbitMQ's definitions format (administrator).
#[utoipa::path(get, path = "/api/definitions", tag = "definitions",
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn get_definitions(
    State(ctx): State<HttpContext>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Need::Administrator)?;
    Ok(Json(export(&ctx.broker.cluster())))
}

/// Merges a definitions document into the cluster (administrator): JSON, or a multipart
/// form with the field `file`.
#[utoipa::path(post, path = "/api/definitions", tag = "definitions",
    request_body(content = Object, description = "RabbitMQ's definitions JSON"),
    responses((status = 204, description = "applied"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn post_definitions(
    State(ctx): State<HttpContext>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    caller.require(Need::Administrator)?;
    let doc = definitions_body(&body, content_type(&headers))?;
    import(&ctx, &doc).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One vhost's queues, exchanges and bindings (administrator).
#[utoipa::path(get, path = "/api/definitions/{vhost}", tag = "definitions",
    params(("vhost" = String, Path)),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody, description = "unknown vhost"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn get_vhost_definitions(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Need::Administrator)?;
    export_vhost(&ctx.broker.cluster(), &vhost)
        .map(Json)
        .ok_or_else(|| ApiError::BadRequest("vhost_not_found".into()))
}

/// Declares a one-vhost definitions document's exchanges, queues and bindings in `vhost`
/// (administrator); users, vhosts and permissions in it are ignored, as RabbitMQ does.
#[utoipa::path(post, path = "/api/definitions/{vhost}", tag = "definitions",
    params(("vhost" = String, Path)),
    request_body(content = Object, description = "RabbitMQ's definitions JSON"),
    responses((status = 204, description = "applied"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn post_vhost_definitions(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path(vhost): Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    caller.require(Need::Administrator)?;
    if !ctx.broker.cluster().vhosts.contains_key(&vhost) {
        return Err(ApiError::BadRequest("vhost_not_found".into()));
    }
    let mut doc = definitions_body(&body, content_type(&headers))?;
    let mut only = serde_json::Map::new();
    for key in ["queues", "exchanges", "bindings"] {
        let mut items = doc.get_mut(key).map(Value::take).unwrap_or(json!([]));
        if let Value::Array(a) = &mut items {
            for o in a.iter_mut().filter_map(Value::as_object_mut) {
                o.insert("vhost".into(), json!(vhost));
            }
        }
        only.insert(key.into(), items);
    }
    let declares = amqp_declares(&Value::Object(only)).map_err(|e| ApiError::BadRequest(e.0))?;
    for d in declares {
        manage::declare(&ctx.vhost, &d)
            .await
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    }
    Ok(StatusCode::NO_CONTENT)
}

fn ok(extra: Value) -> Response {
    let mut body = json!({"status": "ok"});
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    (StatusCode::OK, Json(body)).into_response()
}

fn failed(reason: &str, extra: Value) -> Response {
    let mut body = json!({"status": "failed", "reason": reason});
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// The alarms in effect on this node, as RabbitMQ lists them.
fn alarm_list(ctx: &HttpContext) -> Vec<Value> {
    let alarm = ctx.alarm.borrow().clone().unwrap_or_default();
    let node = local_node_name(ctx);
    ["memory", "disk"]
        .iter()
        .filter(|r| alarm.contains(*r))
        .map(|r| json!({"node": node, "resource": r}))
        .collect()
}

/// 200 unless a resource alarm is in effect in the cluster (503). Arctern's alarms are
/// per node and the node serving the vhosts is the one that blocks publishers, so this
/// node's alarms are the cluster's as far as this node knows.
#[utoipa::path(get, path = "/api/health/checks/alarms", tag = "health",
    responses((status = 200, body = Object, description = "{\"status\":\"ok\"}"),
        (status = 401, body = ErrorBody),
        (status = 503, body = Object, description = "{\"status\":\"failed\",\"reason\":...,\"alarms\":[...]}")))]
async fn alarms(State(ctx): State<HttpContext>, _caller: Caller) -> Response {
    let list = alarm_list(&ctx);
    if list.is_empty() {
        ok(json!({}))
    } else {
        failed(
            "There are alarms in effect in the cluster",
            json!({"alarms": list}),
        )
    }
}

/// 200 unless a resource alarm is in effect on this node (503).
#[utoipa::path(get, path = "/api/health/checks/local-alarms", tag = "health",
    responses((status = 200, body = Object, description = "{\"status\":\"ok\"}"),
        (status = 401, body = ErrorBody),
        (status = 503, body = Object, description = "{\"status\":\"failed\",\"reason\":...,\"alarms\":[...]}")))]
async fn local_alarms(State(ctx): State<HttpContext>, _caller: Caller) -> Response {
    let list = alarm_list(&ctx);
    if list.is_empty() {
        ok(json!({}))
    } else {
        failed(
            "There are alarms in effect on the node",
            json!({"alarms": list}),
        )
    }
}

/// 200 if this node listens on `port` (any protocol), else 503.
#[utoipa::path(get, path = "/api/health/checks/port-listener/{port}", tag = "health",
    params(("port" = u16, Path)),
    responses((status = 200, body = Object, description = "{\"status\":\"ok\",\"port\":N}"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 503, body = Object, description = "{\"status\":\"failed\",\"reason\":...,\"missing\":N,\"ports\":[...]}")))]
async fn port_listener(
    State(ctx): State<HttpContext>,
    _caller: Caller,
    Path(port): Path<String>,
) -> Result<Response, ApiError> {
    let port: u16 = port
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("invalid port: {port}")))?;
    let ports: Vec<u16> = ctx.listeners.iter().map(|l| l.addr.port()).collect();
    Ok(if ports.contains(&port) {
        ok(json!({"port": port}))
    } else {
        failed(
            "No active listener",
            json!({"missing": port, "ports": ports}),
        )
    })
}

/// RabbitMQ's protocol names for the listener protocols Arctern reports.
fn protocol_matches(asked: &str, listener: &str) -> bool {
    let asked = asked.to_ascii_lowercase();
    let canonical = match asked.as_str() {
        "amqp091" | "amqp0.9.1" | "amqp0-9-1" | "amqp" => "amqp",
        "amqps" | "amqp/ssl" => "amqp/ssl",
        "http" | "management" => "http",
        other => other,
    };
    listener == canonical || listener.split('/').next() == Some(canonical) && canonical == "kafka"
}

/// 200 if this node has a listener for `protocol` (`amqp091`, `amqp/ssl`, `http`,
/// `kafka`), else 503.
#[utoipa::path(get, path = "/api/health/checks/protocol-listener/{protocol}", tag = "health",
    params(("protocol" = String, Path)),
    responses((status = 200, body = Object, description = "{\"status\":\"ok\",\"protocol\":...}"),
        (status = 401, body = ErrorBody),
        (status = 503, body = Object, description = "{\"status\":\"failed\",\"reason\":...,\"missing\":...,\"protocols\":[...]}")))]
async fn protocol_listener(
    State(ctx): State<HttpContext>,
    _caller: Caller,
    Path(protocol): Path<String>,
) -> Response {
    if ctx
        .listeners
        .iter()
        .any(|l| protocol_matches(&protocol, &l.protocol))
    {
        ok(json!({"protocol": protocol}))
    } else {
        let protocols: Vec<&str> = ctx.listeners.iter().map(|l| l.protocol.as_str()).collect();
        failed(
            "No active listener",
            json!({"missing": protocol, "protocols": protocols}),
        )
    }
}

/// How long a health check waits for the node serving the vhosts.
const CHECK_WAIT: Duration = Duration::from_secs(5);

/// 200 if the vhosts are served (by this node or the cluster's AMQP home), else 503.
#[utoipa::path(get, path = "/api/health/checks/virtual-hosts", tag = "health",
    responses((status = 200, body = Object, description = "{\"status\":\"ok\"}"),
        (status = 401, body = ErrorBody),
        (status = 503, body = Object, description = "{\"status\":\"failed\",\"reason\":...,\"virtual-hosts\":[...]}")))]
async fn virtual_hosts(State(ctx): State<HttpContext>, _caller: Caller) -> Response {
    match ctx.vhost.route_connection(CHECK_WAIT, false).await {
        Some(_) => ok(json!({})),
        None => {
            let names: Vec<String> = ctx.broker.cluster().vhosts.keys().cloned().collect();
            failed(
                "Some virtual hosts are down",
                json!({"virtual-hosts": names}),
            )
        }
    }
}

/// Declares the queue `aliveness-test` in `vhost`, publishes `test_message` to it and gets
/// it back (administrator, as RabbitMQ): 200 `{"status":"ok"}`, else 503.
#[utoipa::path(get, path = "/api/aliveness-test/{vhost}", tag = "health",
    params(("vhost" = String, Path)),
    responses((status = 200, body = Object, description = "{\"status\":\"ok\"}"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = Object, description = "{\"status\":\"failed\",\"reason\":...}")))]
async fn aliveness_test(
    State(ctx): State<HttpContext>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Need::Administrator)?;
    if !ctx.broker.cluster().vhosts.contains_key(&vhost) {
        return Err(ApiError::NotFound);
    }
    match ctx.vhost.route_connection(CHECK_WAIT, false).await {
        Some(Route::Here(_)) => {}
        Some(Route::Forward(endpoint)) => {
            return Ok(failed(
                &format!("the vhosts are served by the node at {endpoint}"),
                json!({}),
            ))
        }
        None => return Ok(failed("no node serves the vhosts", json!({}))),
    }
    Ok(
        match arctern_amqp::aliveness::aliveness(
            &ctx.vhost,
            &vhost,
            "aliveness-test",
            b"test_message",
        )
        .await
        {
            Ok(()) => ok(json!({})),
            Err(e) => failed(&e.to_string(), json!({})),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_uploads_carry_the_file_field() {
        let ct = "multipart/form-data; boundary=XyZ";
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"d.json\"\r\n\
Content-Type: application/json\r\n\r\n{\"users\":[]}\r\n--XyZ--\r\n";
        let v = definitions_body(body, Some(ct)).unwrap();
        assert_eq!(v, json!({"users": []}));
        assert!(definitions_body(b"--XyZ--\r\n", Some(ct)).is_err());
        assert_eq!(
            definitions_body(b"{\"vhosts\":[]}", Some("application/json")).unwrap(),
            json!({"vhosts": []})
        );
        assert!(definitions_body(b"[1]", None).is_err());
    }

    #[test]
    fn protocol_names_as_rabbitmq_spells_them() {
        assert!(protocol_matches("amqp091", "amqp"));
        assert!(protocol_matches("AMQP", "amqp"));
        assert!(!protocol_matches("amqp091", "amqp/ssl"));
        assert!(protocol_matches("amqps", "amqp/ssl"));
        assert!(protocol_matches("kafka", "kafka/internal"));
        assert!(!protocol_matches("mqtt", "amqp"));
    }
}
