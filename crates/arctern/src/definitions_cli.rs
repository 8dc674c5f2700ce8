//! `arctern definitions export [FILE]` / `import FILE`: RabbitMQ's definitions JSON
//! (what `rabbitmqctl export_definitions` / `import_definitions` and the management
//! API's `/api/definitions` exchange): users (salted SHA-256 hashes,
//! `rabbit_password_hashing_sha256`), vhosts, permissions, and the durable queues,
//! exchanges and bindings of every vhost, read from the node's metadata through its admin
//! socket. Import applies users, vhosts and permissions (as `users import-definitions`),
//! then declares the exchanges, queues and bindings on the node serving the vhosts.

use std::path::PathBuf;

use anyhow::{Context, Result};
use arctern_amqp::manage::Declare;
use arctern_metadata::{AmqpDefinitions, ClusterState, DEFAULT_VHOST};
use serde_json::{json, Value};

use crate::admin_socket;
use crate::users_cli::NodeArgs;

#[derive(clap::Subcommand)]
pub enum DefinitionsCommand {
    /// Write the definitions as JSON to FILE (stdout without FILE or with `-`).
    Export {
        file: Option<PathBuf>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Apply a definitions file (RabbitMQ's or Arctern's export): vhosts, users,
    /// permissions, then exchanges, queues and bindings, with a progress count.
    Import {
        file: PathBuf,
        #[command(flatten)]
        node: NodeArgs,
    },
}

pub async fn run(cmd: DefinitionsCommand) -> Result<()> {
    match cmd {
        DefinitionsCommand::Export { file, node } => {
            let state = admin_socket::state(&node.data_dir()?).await?;
            let doc = export(&state);
            let text = serde_json::to_string_pretty(&doc)? + "\n";
            match file.filter(|f| f.as_os_str() != "-") {
                Some(path) => {
                    eprintln!(
                        "Exporting definitions in JSON to a file at \"{}\" ...",
                        path.display()
                    );
                    std::fs::write(&path, text)
                        .with_context(|| format!("writing {}", path.display()))?;
                }
                None => print!("{text}"),
            }
            Ok(())
        }
        DefinitionsCommand::Import { file, node } => {
            let dir = node.data_dir()?;
            println!(
                "Importing definitions in JSON from a file at \"{}\" ...",
                file.display()
            );
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let json: Value = serde_json::from_str(&text)
                .with_context(|| format!("parsing {} as JSON", file.display()))?;
            let imported = crate::users_cli::definitions(&json)?;
            let declares = amqp_definitions(&json)?;
            let total = imported.commands.len() + declares.len();
            let mut done = 0;
            // Progress on stderr, so stdout stays the summary.
            for cmd in imported.commands {
                admin_socket::propose(&dir, cmd).await?;
                done += 1;
                eprint!("\r[{done}/{total}] applied");
            }
            let (mut queues, mut exchanges, mut bindings) = (0, 0, 0);
            for d in declares {
                match &d {
                    Declare::Exchange { .. } => exchanges += 1,
                    Declare::Queue { .. } => queues += 1,
                    Declare::Binding { .. } => bindings += 1,
                }
                admin_socket::declare(&dir, d).await?;
                done += 1;
                eprint!("\r[{done}/{total}] applied");
            }
            if total > 0 {
                eprintln!();
            }
            println!(
                "Imported {} user(s), {} vhost(s), {} permission(s), {queues} queue(s), {exchanges} exchange(s), {bindings} binding(s).",
                imported.users, imported.vhosts, imported.permissions
            );
            for (key, n) in imported.skipped {
                if !["queues", "exchanges", "bindings"].contains(&key.as_str()) {
                    println!("Skipped {n} {key} (not imported by this tool).");
                }
            }
            Ok(())
        }
    }
}

/// The exchanges, then queues, then bindings of a definitions file, to declare in that
/// order (a binding needs both ends). Missing `vhost` means "/", missing `durable` true.
fn amqp_definitions(json: &Value) -> Result<Vec<Declare>> {
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
    let (mut queues, mut exchanges, mut bindings) = (Vec::new(), Vec::new(), Vec::new());
    let mut defs: Vec<(&str, &AmqpDefinitions)> = vec![(DEFAULT_VHOST, &state.amqp)];
    defs.extend(state.amqp_vhosts.iter().map(|(n, d)| (n.as_str(), d)));
    for (vhost, d) in defs {
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
    json!({
        "product_name": "Arctern",
        "product_version": env!("CARGO_PKG_VERSION"),
        "rabbit_version": "3.13.0",
        "rabbitmq_version": "3.13.0",
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let imported = crate::users_cli::definitions(&doc).unwrap();
        assert_eq!(imported.users, 1);
        assert_eq!(imported.vhosts, 1);
    }
}
