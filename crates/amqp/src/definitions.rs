//! RabbitMQ's definitions JSON (what `rabbitmqctl export_definitions` /
//! `import_definitions`, `arctern definitions` and the management API's `/api/definitions`
//! exchange): users (salted SHA-256 hashes, `rabbit_password_hashing_sha256`), vhosts,
//! permissions, and the durable queues, exchanges and bindings of every vhost. One
//! implementation for the CLI (over the admin socket) and the HTTP API (in-process):
//! [`export`] renders the metadata, [`import_plan`] turns a document into metadata commands
//! and [`amqp_declares`] into declares for [`crate::manage::declare`].

use arctern_metadata::{AmqpDefinitions, ClusterState, MetadataCommand, UserRecord, DEFAULT_VHOST};
use serde_json::{json, Value};

use crate::manage::Declare;

/// The product name exports (and the management API's overview) report.
pub const PRODUCT_NAME: &str = "Arctern";
/// The RabbitMQ version whose definitions format (and management API) Arctern speaks.
pub const RABBITMQ_VERSION: &str = "3.13.0";

/// Why a definitions document cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DefinitionsError(pub String);

type Result<T> = std::result::Result<T, DefinitionsError>;

macro_rules! bail {
    ($($t:tt)*) => {
        return Err(DefinitionsError(format!($($t)*)))
    };
}

trait Context<T> {
    fn context(self, msg: &str) -> Result<T>;
    fn with_context<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> Context<T> for Option<T> {
    fn context(self, msg: &str) -> Result<T> {
        self.ok_or_else(|| DefinitionsError(msg.to_string()))
    }
    fn with_context<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.ok_or_else(|| DefinitionsError(f()))
    }
}

/// What a definitions file turns into.
#[derive(Debug, Default)]
pub struct Imported {
    pub commands: Vec<MetadataCommand>,
    pub users: usize,
    pub vhosts: usize,
    pub permissions: usize,
    pub skipped: Vec<(String, usize)>,
}

/// RabbitMQ's definitions JSON -> metadata commands: vhosts first, then users, then
/// permissions. A user's `password_hash` must be `rabbit_password_hashing_sha256` (the
/// default since RabbitMQ 3.6); such a user has no SCRAM credentials (they cannot be
/// derived from a hash), so it logs in over AMQP and Kafka SASL/PLAIN, not SCRAM.
pub fn import_plan(json: &serde_json::Value) -> Result<Imported> {
    use arctern_metadata::{Permission, VhostRecord};
    use serde_json::Value;
    let obj = json
        .as_object()
        .context("a definitions file is a JSON object")?;
    let list = |key: &str| -> Result<Vec<&serde_json::Map<String, Value>>> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_object()
                        .with_context(|| format!("an entry of \"{key}\" is not an object"))
                })
                .collect(),
            Some(_) => bail!("\"{key}\" is not a list"),
        }
    };
    let text = |o: &serde_json::Map<String, Value>, k: &str| -> Option<String> {
        o.get(k).and_then(Value::as_str).map(str::to_string)
    };
    let names = |v: Option<&Value>| -> Vec<String> {
        match v {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            // Older exports: "administrator,management".
            Some(Value::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        }
    };
    let mut out = Imported::default();
    for v in list("vhosts")? {
        let name = text(v, "name").context("a vhost without a name")?;
        // RabbitMQ 3.8+ exports these under "metadata"; older ones at the top.
        let meta = v.get("metadata").and_then(Value::as_object);
        let record = VhostRecord {
            description: text(v, "description")
                .or_else(|| meta.and_then(|m| text(m, "description")))
                .unwrap_or_default(),
            tags: match v.get("tags") {
                Some(t) => names(Some(t)),
                None => names(meta.and_then(|m| m.get("tags"))),
            },
        };
        out.commands
            .push(MetadataCommand::PutVhost { name, record });
        out.vhosts += 1;
    }
    for u in list("users")? {
        let name = text(u, "name").context("a user without a name")?;
        let algorithm = text(u, "hashing_algorithm")
            .unwrap_or_else(|| "rabbit_password_hashing_sha256".to_string());
        if algorithm != "rabbit_password_hashing_sha256" {
            bail!("user '{name}': hashing_algorithm {algorithm} is not supported (only rabbit_password_hashing_sha256)");
        }
        let hash = text(u, "password_hash").unwrap_or_default();
        let password_hash = if hash.is_empty() {
            // A user without a password (RabbitMQ: it can only log in by other means).
            None
        } else {
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(hash.trim())
                .ok()
                .filter(|r| r.len() == 36);
            if raw.is_none() {
                bail!("user '{name}': password_hash is not a rabbit_password_hashing_sha256 hash");
            }
            Some(hash)
        };
        let user = UserRecord {
            password_hash,
            scram: Default::default(),
            tags: names(u.get("tags")),
        };
        out.commands.push(MetadataCommand::PutUser { name, user });
        out.users += 1;
    }
    for p in list("permissions")? {
        let (Some(user), Some(vhost)) = (text(p, "user"), text(p, "vhost")) else {
            bail!("a permission without user or vhost");
        };
        let permission = Permission {
            configure: text(p, "configure").unwrap_or_default(),
            write: text(p, "write").unwrap_or_default(),
            read: text(p, "read").unwrap_or_default(),
        };
        out.commands.push(MetadataCommand::SetPermissions {
            vhost,
            user,
            permission,
        });
        out.permissions += 1;
    }
    for key in [
        "queues",
        "exchanges",
        "bindings",
        "policies",
        "parameters",
        "global_parameters",
        "topic_permissions",
    ] {
        let n = obj.get(key).and_then(Value::as_array).map_or(0, Vec::len);
        if n > 0 {
            out.skipped.push((key.to_string(), n));
        }
    }
    Ok(out)
}

/// The exchanges, then queues, then bindings of a definitions file, to declare in that
/// order (a binding needs both ends). Missing `vhost` means "/", missing `durable` true.
pub fn amqp_declares(json: &Value) -> Result<Vec<Declare>> {
    let list = |key: &str| -> Vec<&serde_json::Map<String, Value>> {
        json.get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_object).collect())
            .unwrap_or_default()
    };
    let text = |o: &serde_json::Map<String, Value>, k: &str| -> Option<String> {
        o.get(k).and_then(Value::as_str).map(str::to_string)
    };
    let flag = |o: &serde_json::Map<String, Value>, k: &str, default: bool| -> bool {
        o.get(k).and_then(Value::as_bool).unwrap_or(default)
    };
    let vhost = |o: &serde_json::Map<String, Value>| {
        text(o, "vhost").unwrap_or_else(|| DEFAULT_VHOST.into())
    };
    let args =
        |o: &serde_json::Map<String, Value>| o.get("arguments").cloned().unwrap_or(json!({}));
    let mut out = Vec::new();
    for e in list("exchanges") {
        out.push(Declare::Exchange {
            vhost: vhost(e),
            name: text(e, "name").context("an exchange without a name")?,
            kind: text(e, "type").unwrap_or_else(|| "direct".into()),
            durable: flag(e, "durable", true),
            auto_delete: flag(e, "auto_delete", false),
            internal: flag(e, "internal", false),
            arguments: args(e),
        });
    }
    for q in list("queues") {
        out.push(Declare::Queue {
            vhost: vhost(q),
            name: text(q, "name").context("a queue without a name")?,
            durable: flag(q, "durable", true),
            auto_delete: flag(q, "auto_delete", false),
            arguments: args(q),
        });
    }
    for b in list("bindings") {
        out.push(Declare::Binding {
            vhost: vhost(b),
            source: text(b, "source").context("a binding without a source")?,
            destination: text(b, "destination").context("a binding without a destination")?,
            to_exchange: text(b, "destination_type").as_deref() == Some("exchange"),
            routing_key: text(b, "routing_key").unwrap_or_default(),
            arguments: args(b),
        });
    }
    Ok(out)
}

/// AMQP arguments as stored (amq-protocol's tagged JSON of a field table) -> plain JSON
/// values as RabbitMQ exports them (`{"x-max-length": 10}`).
fn plain_arguments(stored: &str) -> Value {
    fn plain(v: &Value) -> Value {
        match v {
            Value::Object(o) if o.len() == 1 => {
                let (tag, inner) = o.iter().next().expect("one entry");
                match (tag.as_str(), inner) {
                    ("LongString", Value::Array(bytes)) => {
                        let raw: Vec<u8> = bytes
                            .iter()
                            .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                            .collect();
                        Value::String(String::from_utf8_lossy(&raw).into_owned())
                    }
                    ("FieldTable", Value::Object(t)) => {
                        Value::Object(t.iter().map(|(k, v)| (k.clone(), plain(v))).collect())
                    }
                    ("FieldArray", Value::Array(a)) => Value::Array(a.iter().map(plain).collect()),
                    ("Void", _) => Value::Null,
                    (_, inner) => inner.clone(),
                }
            }
            other => other.clone(),
        }
    }
    match serde_json::from_str::<Value>(stored) {
        Ok(Value::Object(o)) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), plain(v))).collect())
        }
        _ => json!({}),
    }
}

/// The cluster metadata in RabbitMQ's definitions shape.
pub fn export(state: &ClusterState) -> Value {
    let users: Vec<Value> = state
        .users
        .iter()
        .map(|(name, u)| {
            json!({
                "name": name,
                "password_hash": u.password_hash.clone().unwrap_or_default(),
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": u.tags,
                "limits": {},
            })
        })
        .collect();
    let vhosts: Vec<Value> = state
        .vhosts
        .iter()
        .map(|(name, v)| {
            json!({
                "name": name,
                "description": v.description,
                "tags": v.tags,
                "metadata": {"description": v.description, "tags": v.tags},
            })
        })
        .collect();
    let mut permissions = Vec::new();
    for (vhost, users) in &state.permissions {
        for (user, p) in users {
            permissions.push(json!({
                "user": user, "vhost": vhost,
                "configure": p.configure, "write": p.write, "read": p.read,
            }));
        }
    }
    let mut defs: Vec<(&str, &AmqpDefinitions)> = vec![(DEFAULT_VHOST, &state.amqp)];
    defs.extend(state.amqp_vhosts.iter().map(|(n, d)| (n.as_str(), d)));
    let (queues, exchanges, bindings) = amqp_objects(&defs, true);
    json!({
        "product_name": PRODUCT_NAME,
        "product_version": env!("CARGO_PKG_VERSION"),
        "rabbit_version": RABBITMQ_VERSION,
        "rabbitmq_version": RABBITMQ_VERSION,
        "users": users,
        "vhosts": vhosts,
        "permissions": permissions,
        "topic_permissions": [],
        "parameters": [],
        "global_parameters": [],
        "policies": [],
        "queues": queues,
        "exchanges": exchanges,
        "bindings": bindings,
    })
}

type Objects = (Vec<Value>, Vec<Value>, Vec<Value>);

/// The queues, exchanges and bindings of `defs`, each object naming its vhost when
/// `with_vhost` (a one-vhost export leaves it out, as RabbitMQ's does).
fn amqp_objects(defs: &[(&str, &AmqpDefinitions)], with_vhost: bool) -> Objects {
    let (mut queues, mut exchanges, mut bindings) = (Vec::new(), Vec::new(), Vec::new());
    for &(vhost, d) in defs {
        for (name, q) in &d.queues {
            queues.push(json!({
                "name": name, "vhost": vhost, "durable": true,
                "auto_delete": q.auto_delete, "arguments": plain_arguments(&q.arguments),
            }));
        }
        for (name, e) in &d.exchanges {
            // The default and amq.* exchanges exist in every vhost; RabbitMQ leaves them out.
            if name.is_empty() || name.starts_with("amq.") {
                continue;
            }
            exchanges.push(json!({
                "name": name, "vhost": vhost, "type": e.kind, "durable": true,
                "auto_delete": e.auto_delete, "internal": e.internal,
                "arguments": plain_arguments(&e.arguments),
            }));
        }
        for b in &d.bindings {
            bindings.push(json!({
                "source": b.exchange, "vhost": vhost, "destination": b.queue,
                "destination_type": if b.to_exchange { "exchange" } else { "queue" },
                "routing_key": b.key, "arguments": plain_arguments(&b.arguments),
            }));
        }
    }
    if !with_vhost {
        for o in queues.iter_mut().chain(&mut exchanges).chain(&mut bindings) {
            if let Value::Object(m) = o {
                m.remove("vhost");
            }
        }
    }
    (queues, exchanges, bindings)
}

/// One vhost's definitions in RabbitMQ's shape (`GET /api/definitions/{vhost}`); `None` for
/// an unknown vhost.
pub fn export_vhost(state: &ClusterState, vhost: &str) -> Option<Value> {
    if !state.vhosts.contains_key(vhost) && vhost != DEFAULT_VHOST {
        return None;
    }
    let defs = state.amqp_definitions(vhost).map(|d| vec![(vhost, d)]);
    let (queues, exchanges, bindings) = amqp_objects(&defs.unwrap_or_default(), false);
    Some(json!({
        "rabbit_version": RABBITMQ_VERSION,
        "rabbitmq_version": RABBITMQ_VERSION,
        "product_name": PRODUCT_NAME,
        "product_version": env!("CARGO_PKG_VERSION"),
        "parameters": [],
        "policies": [],
        "queues": queues,
        "exchanges": exchanges,
        "bindings": bindings,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rabbitmq_definitions_import() {
        let hash = arctern_security::password::hash_password("s3cret");
        let json = serde_json::json!({
            "rabbit_version": "3.10.8",
            "users": [
                {"name": "bob", "password_hash": hash,
                 "hashing_algorithm": "rabbit_password_hashing_sha256",
                 "tags": ["administrator"], "limits": {}},
                {"name": "old", "password_hash": hash, "tags": "management,monitoring"},
                {"name": "nopw", "password_hash": "", "tags": []}
            ],
            "vhosts": [{"name": "/"}, {"name": "prod", "description": "p"}],
            "permissions": [{"user": "bob", "vhost": "prod",
                             "configure": ".*", "write": ".*", "read": ".*"}],
            "queues": [{"name": "q", "vhost": "/"}]
        });
        let d = import_plan(&json).unwrap();
        assert_eq!((d.users, d.vhosts, d.permissions), (3, 2, 1));
        assert_eq!(d.skipped, vec![("queues".to_string(), 1)]);
        let users: Vec<&UserRecord> = d
            .commands
            .iter()
            .filter_map(|c| match c {
                MetadataCommand::PutUser { user, .. } => Some(user),
                _ => None,
            })
            .collect();
        assert!(users[0].check_password("s3cret") && !users[0].check_password("x"));
        assert_eq!(users[1].tags, vec!["management", "monitoring"]);
        assert!(!users[2].check_password(""));
        // Vhosts before users before permissions.
        assert!(matches!(d.commands[0], MetadataCommand::PutVhost { .. }));
        assert!(matches!(
            d.commands.last(),
            Some(MetadataCommand::SetPermissions { .. })
        ));
        // A user exported by RabbitMQ 3.10.8 (`rabbitmqctl add_user rmquser from-rabbit`,
        // then export_definitions).
        let real = serde_json::json!({
            "users": [{"hashing_algorithm": "rabbit_password_hashing_sha256", "limits": {},
                       "name": "rmquser",
                       "password_hash": "Ci4JAJFks+0dpD08CPbH84tr00dcRZ8ouschLLuAM1IFmb0B",
                       "tags": ["monitoring"]}],
            "vhosts": [{"limits": [], "metadata": {"description": "Default virtual host",
                        "tags": []}, "name": "/"}]
        });
        let d = import_plan(&real).unwrap();
        match &d.commands[..] {
            [MetadataCommand::PutVhost { record, .. }, MetadataCommand::PutUser { user, .. }] => {
                assert_eq!(record.description, "Default virtual host");
                assert!(user.check_password("from-rabbit") && !user.check_password("guest"));
            }
            other => panic!("unexpected commands {other:?}"),
        }
        let md5 = serde_json::json!({"users": [{"name": "m", "password_hash": hash,
            "hashing_algorithm": "rabbit_password_hashing_md5"}]});
        assert!(import_plan(&md5).is_err());
        let bad = serde_json::json!({"users": [{"name": "b", "password_hash": "bm9wZQ=="}]});
        assert!(import_plan(&bad).is_err());
    }

    #[test]
    fn arguments_become_plain_json() {
        let v = plain_arguments(
            r#"{"x-max-length":{"LongLongInt":10},"x-queue-type":{"LongString":[99,108]}}"#,
        );
        assert_eq!(v, json!({"x-max-length": 10, "x-queue-type": "cl"}));
        assert_eq!(plain_arguments(""), json!({}));
    }

    #[test]
    fn export_round_trips_through_import() {
        let mut state = ClusterState::default();
        state.users.insert(
            "alice".into(),
            arctern_metadata::UserRecord::with_password("pw", vec!["administrator".into()]),
        );
        state.vhosts.insert("v1".into(), Default::default());
        let doc = export(&state);
        let imported = import_plan(&doc).unwrap();
        assert_eq!(imported.users, 1);
        assert_eq!(imported.vhosts, 1);
    }
}
