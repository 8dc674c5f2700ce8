//! `arctern users`: the user database through the node's admin socket, the way
//! `rabbitmqctl add_user / delete_user / list_users / change_password / set_user_tags /
//! authenticate_user` work. Passwords are hashed here (RabbitMQ's salted SHA-256 plus
//! SCRAM-SHA-256/512 credentials), so a secret never travels to the node.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use arctern_metadata::{MetadataCommand, UserRecord};

use crate::admin_socket;

#[derive(clap::Subcommand)]
pub enum UsersCommand {
    /// Create a user (RabbitMQ password hash and SCRAM credentials: it logs in over AMQP
    /// and Kafka SASL alike). Without a password, one line is read from stdin.
    Add {
        name: String,
        /// The password (prefer --password-stdin: arguments show in `ps`).
        #[arg(conflicts_with_all = ["password", "password_stdin"])]
        password_arg: Option<String>,
        #[command(flatten)]
        password: PasswordArgs,
        /// Comma-separated tags (administrator, monitoring, management, ...).
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Delete a user and its permissions.
    Delete {
        name: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// List users and their tags.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Set a user's password (its tags stay). Without a password, one line is read
    /// from stdin.
    ChangePassword {
        name: String,
        #[arg(conflicts_with_all = ["password", "password_stdin"])]
        password_arg: Option<String>,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Replace a user's tags (none clears them).
    SetTags {
        name: String,
        tags: Vec<String>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Import the users, vhosts and permissions of a RabbitMQ definitions file (what
    /// `rabbitmqctl export_definitions` writes); password hashes import unchanged.
    ImportDefinitions {
        file: PathBuf,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Check a user's password, like rabbitmqctl authenticate_user.
    Authenticate {
        name: String,
        #[arg(conflicts_with_all = ["password", "password_stdin"])]
        password_arg: Option<String>,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        node: NodeArgs,
    },
}

#[derive(clap::Args)]
pub struct PasswordArgs {
    /// The password.
    #[arg(long)]
    password: Option<String>,
    /// Read the password from the first line of stdin.
    #[arg(long, conflicts_with = "password")]
    password_stdin: bool,
}

/// Which node: its data dir, resolved as `arctern serve` does.
#[derive(clap::Args)]
pub struct NodeArgs {
    /// The node's data directory [default: ./arctern-data, or `log.dirs` from the config]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The node's TOML config file (for `log.dirs`)
    #[arg(long)]
    config: Option<PathBuf>,
}

impl NodeArgs {
    pub(crate) fn data_dir(&self) -> Result<PathBuf> {
        if let Some(d) = &self.data_dir {
            return Ok(d.clone());
        }
        let file = crate::settings::FileConfig::load(self.config.as_deref())?;
        Ok(file
            .log_dirs
            .unwrap_or_else(|| PathBuf::from("arctern-data")))
    }
}

fn password(arg: Option<String>, p: PasswordArgs) -> Result<String> {
    if let Some(pw) = arg.or(p.password) {
        return Ok(pw);
    }
    // --password-stdin, or no password given: one line from stdin, as rabbitmqctl reads
    // a password it was not given.
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let pw = line.trim_end_matches(['\n', '\r']).to_string();
    if pw.is_empty() {
        bail!("no password given (--password, --password-stdin, or a line on stdin)");
    }
    Ok(pw)
}

fn format_tags(tags: &[String]) -> String {
    format!("[{}]", tags.join(", "))
}

async fn existing(data_dir: &std::path::Path, name: &str) -> Result<UserRecord> {
    let state = admin_socket::state(data_dir).await?;
    match state.users.get(name) {
        Some(u) => Ok(u.clone()),
        None => bail!("user '{name}' does not exist"),
    }
}

/// Turns the node's "unknown user" answer into the tool's wording.
fn unknown_user(e: anyhow::Error, name: &str) -> anyhow::Error {
    if format!("{e:#}").contains("UnknownUser") {
        anyhow::anyhow!("user '{name}' does not exist")
    } else {
        e
    }
}

pub async fn run(cmd: UsersCommand) -> Result<()> {
    match cmd {
        UsersCommand::Add {
            name,
            password_arg,
            password: p,
            tags,
            node,
        } => {
            let dir = node.data_dir()?;
            if name.is_empty() {
                bail!("a user name must not be empty");
            }
            let pw = password(password_arg, p)?;
            println!("Adding user \"{name}\" ...");
            let state = admin_socket::state(&dir).await?;
            if state.users.contains_key(&name) {
                bail!("user '{name}' already exists");
            }
            let tags: Vec<String> = tags.into_iter().filter(|t| !t.is_empty()).collect();
            let user = UserRecord::with_password(&pw, tags);
            admin_socket::propose(&dir, MetadataCommand::PutUser { name, user }).await?;
            println!(
                "Done. Don't forget to grant the user permissions to some virtual hosts! \
                 See 'arctern permissions' to learn more."
            );
        }
        UsersCommand::Delete { name, node } => {
            let dir = node.data_dir()?;
            println!("Deleting user \"{name}\" ...");
            admin_socket::propose(&dir, MetadataCommand::DeleteUser { name: name.clone() })
                .await
                .map_err(|e| unknown_user(e, &name))?;
        }
        UsersCommand::List { json, node } => {
            let dir = node.data_dir()?;
            let state = admin_socket::state(&dir).await?;
            if json {
                let list: Vec<_> = state
                    .users
                    .iter()
                    .map(|(name, u)| serde_json::json!({"name": name, "tags": u.tags}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            println!("Listing users ...");
            println!("user\ttags");
            for (name, user) in &state.users {
                println!("{name}\t{}", format_tags(&user.tags));
            }
        }
        UsersCommand::ChangePassword {
            name,
            password_arg,
            password: p,
            node,
        } => {
            let dir = node.data_dir()?;
            let pw = password(password_arg, p)?;
            println!("Changing password for user \"{name}\" ...");
            let old = existing(&dir, &name).await?;
            let user = UserRecord::with_password(&pw, old.tags);
            admin_socket::propose(&dir, MetadataCommand::PutUser { name, user }).await?;
        }
        UsersCommand::SetTags { name, tags, node } => {
            let dir = node.data_dir()?;
            println!(
                "Setting tags for user \"{name}\" to {} ...",
                format_tags(&tags)
            );
            admin_socket::propose(
                &dir,
                MetadataCommand::SetUserTags {
                    name: name.clone(),
                    tags,
                },
            )
            .await
            .map_err(|e| unknown_user(e, &name))?;
        }
        UsersCommand::ImportDefinitions { file, node } => {
            let dir = node.data_dir()?;
            println!(
                "Importing definitions in JSON from a file at \"{}\" ...",
                file.display()
            );
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("parsing {} as JSON", file.display()))?;
            let imported = definitions(&json)?;
            for cmd in imported.commands {
                admin_socket::propose(&dir, cmd).await?;
            }
            println!(
                "Imported {} user(s), {} vhost(s), {} permission(s).",
                imported.users, imported.vhosts, imported.permissions
            );
            for (key, n) in imported.skipped {
                println!("Skipped {n} {key} (not imported by this tool).");
            }
        }
        UsersCommand::Authenticate {
            name,
            password_arg,
            password: p,
            node,
        } => {
            let dir = node.data_dir()?;
            let pw = password(password_arg, p)?;
            println!("Authenticating user \"{name}\" ...");
            let state = admin_socket::state(&dir).await?;
            // An unknown user and a wrong password read the same, as on the wire.
            let ok = state
                .users
                .get(&name)
                .is_some_and(|u| u.check_password(&pw));
            if !ok {
                bail!("authentication of user '{name}' failed: unknown user or wrong password");
            }
            println!("Success");
        }
    }
    Ok(())
}

/// What a definitions file turns into.
#[derive(Debug, Default)]
pub(crate) struct Imported {
    pub(crate) commands: Vec<MetadataCommand>,
    pub(crate) users: usize,
    pub(crate) vhosts: usize,
    pub(crate) permissions: usize,
    pub(crate) skipped: Vec<(String, usize)>,
}

/// RabbitMQ's definitions JSON -> metadata commands: vhosts first, then users, then
/// permissions. A user's `password_hash` must be `rabbit_password_hashing_sha256` (the
/// default since RabbitMQ 3.6); such a user has no SCRAM credentials (they cannot be
/// derived from a hash), so it logs in over AMQP and Kafka SASL/PLAIN, not SCRAM.
pub(crate) fn definitions(json: &serde_json::Value) -> Result<Imported> {
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
        let d = definitions(&json).unwrap();
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
        let d = definitions(&real).unwrap();
        match &d.commands[..] {
            [MetadataCommand::PutVhost { record, .. }, MetadataCommand::PutUser { user, .. }] => {
                assert_eq!(record.description, "Default virtual host");
                assert!(user.check_password("from-rabbit") && !user.check_password("guest"));
            }
            other => panic!("unexpected commands {other:?}"),
        }
        let md5 = serde_json::json!({"users": [{"name": "m", "password_hash": hash,
            "hashing_algorithm": "rabbit_password_hashing_md5"}]});
        assert!(definitions(&md5).is_err());
        let bad = serde_json::json!({"users": [{"name": "b", "password_hash": "bm9wZQ=="}]});
        assert!(definitions(&bad).is_err());
    }

    #[test]
    fn tags_print_like_rabbitmqctl() {
        assert_eq!(format_tags(&[]), "[]");
        assert_eq!(
            format_tags(&["administrator".into(), "monitoring".into()]),
            "[administrator, monitoring]"
        );
    }
}
