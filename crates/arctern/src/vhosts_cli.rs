//! `arctern vhosts` and `arctern permissions`: AMQP virtual hosts and RabbitMQ
//! permissions, through the node's admin socket (what `rabbitmqctl add_vhost /
//! delete_vhost / list_vhosts / set_permissions / clear_permissions / list_permissions`
//! do, printed the same way: a progress line, then a header and tab-separated rows).

use std::path::PathBuf;

use anyhow::{bail, Result};
use arctern_metadata::{CommandResult, MetadataCommand, Permission, VhostRecord, DEFAULT_VHOST};

use crate::admin_socket::{self, AdminRequest, AdminResponse};

#[derive(clap::Args)]
pub struct Node {
    /// The data directory of the running node to talk to (its admin socket
    /// `<data dir>/admin.sock`) [default: ./arctern-data]
    #[arg(long, default_value = "arctern-data")]
    data_dir: PathBuf,
}

#[derive(clap::Subcommand)]
pub enum VhostsCommand {
    /// Create a vhost (usable at once, no restart).
    Add {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        node: Node,
    },
    /// Delete a vhost: its queues, exchanges and permissions go, its connections close
    /// with 320 CONNECTION_FORCED.
    Delete {
        name: String,
        #[command(flatten)]
        node: Node,
    },
    /// List the vhosts.
    List {
        /// Print JSON (RabbitMQ's definitions shape) instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        node: Node,
    },
}

#[derive(clap::Subcommand)]
pub enum PermissionsCommand {
    /// Set a user's configure, write and read patterns (regular expressions) in a vhost.
    Set {
        user: String,
        vhost: String,
        configure: String,
        write: String,
        read: String,
        #[command(flatten)]
        node: Node,
    },
    /// Remove a user's permissions in a vhost.
    Clear {
        user: String,
        vhost: String,
        #[command(flatten)]
        node: Node,
    },
    /// List the permissions in a vhost.
    List {
        /// The vhost [default: /, as rabbitmqctl]
        #[arg(long, default_value = DEFAULT_VHOST)]
        vhost: String,
        /// Print JSON (RabbitMQ's definitions shape) instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        node: Node,
    },
}

/// Proposes `cmd`, with clear errors for the refusals these tools can meet.
async fn propose(node: &Node, cmd: MetadataCommand) -> Result<()> {
    match admin_socket::call(&node.data_dir, &AdminRequest::Propose(cmd)).await? {
        AdminResponse::Result(CommandResult::Ok) => Ok(()),
        AdminResponse::Result(CommandResult::UnknownVhost { name }) => {
            bail!("virtual host \"{name}\" does not exist")
        }
        AdminResponse::Result(CommandResult::UnknownUser { name }) => {
            bail!("user \"{name}\" does not exist")
        }
        AdminResponse::Result(CommandResult::InvalidRequest { reason }) => bail!("{reason}"),
        AdminResponse::Result(other) => bail!("refused: {other:?}"),
        AdminResponse::Error(e) => bail!("{e}"),
        _ => bail!("unexpected answer from the node"),
    }
}

pub async fn vhosts(cmd: VhostsCommand) -> Result<()> {
    match cmd {
        VhostsCommand::Add {
            name,
            description,
            node,
        } => {
            println!("Adding vhost \"{name}\" ...");
            let record = VhostRecord {
                description,
                tags: Vec::new(),
            };
            propose(&node, MetadataCommand::PutVhost { name, record }).await
        }
        VhostsCommand::Delete { name, node } => {
            println!("Deleting vhost \"{name}\" ...");
            propose(&node, MetadataCommand::DeleteVhost { name }).await
        }
        VhostsCommand::List { json, node } => {
            let state = admin_socket::state(&node.data_dir).await?;
            if json {
                let list: Vec<_> = state
                    .vhosts
                    .iter()
                    .map(|(name, v)| {
                        serde_json::json!({"name": name, "description": v.description, "tags": v.tags})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            println!("Listing vhosts ...");
            println!("name\tdescription");
            for (name, v) in &state.vhosts {
                println!("{name}\t{}", v.description);
            }
            Ok(())
        }
    }
}

pub async fn permissions(cmd: PermissionsCommand) -> Result<()> {
    match cmd {
        PermissionsCommand::Set {
            user,
            vhost,
            configure,
            write,
            read,
            node,
        } => {
            println!("Setting permissions for user \"{user}\" in vhost \"{vhost}\" ...");
            for p in [&configure, &write, &read] {
                // The empty pattern is allowed (it grants nothing).
                if !p.is_empty() {
                    arctern_amqp::permissions::validate(p).map_err(anyhow::Error::msg)?;
                }
            }
            let permission = Permission {
                configure,
                write,
                read,
            };
            propose(
                &node,
                MetadataCommand::SetPermissions {
                    vhost,
                    user,
                    permission,
                },
            )
            .await
        }
        PermissionsCommand::Clear { user, vhost, node } => {
            println!("Clearing permissions for user \"{user}\" in vhost \"{vhost}\" ...");
            let state = admin_socket::state(&node.data_dir).await?;
            if !state.vhosts.contains_key(&vhost) {
                bail!("virtual host \"{vhost}\" does not exist");
            }
            if !state.users.contains_key(&user) {
                bail!("user \"{user}\" does not exist");
            }
            propose(&node, MetadataCommand::ClearPermissions { vhost, user }).await
        }
        PermissionsCommand::List { vhost, json, node } => {
            let state = admin_socket::state(&node.data_dir).await?;
            if !state.vhosts.contains_key(&vhost) {
                bail!("virtual host \"{vhost}\" does not exist");
            }
            if json {
                let list: Vec<_> = state
                    .permissions
                    .get(&vhost)
                    .into_iter()
                    .flatten()
                    .map(|(user, p)| {
                        serde_json::json!({"user": user, "vhost": vhost,
                            "configure": p.configure, "write": p.write, "read": p.read})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            println!("Listing permissions for vhost \"{vhost}\" ...");
            println!("user\tconfigure\twrite\tread");
            for (user, p) in state.permissions.get(&vhost).into_iter().flatten() {
                println!("{user}\t{}\t{}\t{}", p.configure, p.write, p.read);
            }
            Ok(())
        }
    }
}
