//! `arctern definitions export [FILE]` / `import FILE`: RabbitMQ's definitions JSON
//! (what `rabbitmqctl export_definitions` / `import_definitions` and the management
//! API's `/api/definitions` exchange): users (salted SHA-256 hashes,
//! `rabbit_password_hashing_sha256`), vhosts, permissions, and the durable queues,
//! exchanges and bindings of every vhost, read from the node's metadata through its admin
//! socket. Import applies users, vhosts and permissions (as `users import-definitions`),
//! then declares the exchanges, queues and bindings on the node serving the vhosts. The
//! format itself is `arctern_amqp::definitions`, shared with the HTTP API.

use std::path::PathBuf;

use anyhow::{Context, Result};
use arctern_amqp::definitions::{amqp_declares, export, import_plan};
use arctern_amqp::manage::Declare;
use serde_json::Value;

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
            let imported = import_plan(&json)?;
            let declares = amqp_declares(&json)?;
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
