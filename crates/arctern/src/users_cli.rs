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
            let imported = arctern_amqp::definitions::import_plan(&json)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_print_like_rabbitmqctl() {
        assert_eq!(format_tags(&[]), "[]");
        assert_eq!(
            format_tags(&["administrator".into(), "monitoring".into()]),
            "[administrator, monitoring]"
        );
    }
}
