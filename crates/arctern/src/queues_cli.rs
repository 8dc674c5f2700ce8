//! `arctern queues`: AMQP queues of a running node through its admin socket, what
//! `rabbitmqctl list_queues / purge_queue / delete_queue` do (the same operations the
//! management API calls, in `arctern_amqp::manage`).

use std::path::PathBuf;

use anyhow::Result;
use arctern_metadata::DEFAULT_VHOST;

use crate::admin_socket;

#[derive(clap::Args)]
pub struct Node {
    /// The data directory of the running node to talk to (its admin socket
    /// `<data dir>/admin.sock`) [default: ./arctern-data]
    #[arg(long, default_value = "arctern-data")]
    data_dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand)]
pub enum QueuesCommand {
    /// List the queues: vhost, name, durable, messages ready and unacknowledged,
    /// consumers (all vhosts unless --vhost).
    List {
        #[arg(long, short = 'p')]
        vhost: Option<String>,
        #[command(flatten)]
        node: Node,
    },
    /// Drop a queue's ready messages.
    Purge {
        name: String,
        #[arg(long, short = 'p', default_value = DEFAULT_VHOST)]
        vhost: String,
        #[command(flatten)]
        node: Node,
    },
    /// Delete a queue (its consumers are cancelled).
    Delete {
        name: String,
        #[arg(long, short = 'p', default_value = DEFAULT_VHOST)]
        vhost: String,
        #[command(flatten)]
        node: Node,
    },
}

pub async fn run(cmd: QueuesCommand) -> Result<()> {
    match cmd {
        QueuesCommand::List { vhost, node } => {
            let queues = admin_socket::queues(&node.data_dir, vhost).await?;
            if node.json {
                println!("{}", serde_json::to_string_pretty(&queues)?);
                return Ok(());
            }
            println!("Timeout: 60.0 seconds ...\nListing queues ...");
            println!("vhost\tname\tdurable\tmessages_ready\tmessages_unacknowledged\tconsumers");
            for q in queues {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    q.vhost,
                    q.name,
                    q.durable,
                    q.messages_ready,
                    q.messages_unacknowledged,
                    q.consumers
                );
            }
            Ok(())
        }
        QueuesCommand::Purge { name, vhost, node } => {
            if !node.json {
                println!("Purging queue '{name}' in vhost '{vhost}' ...");
            }
            let n = admin_socket::queue_op(&node.data_dir, &vhost, &name, false).await?;
            done(node.json, "purged", &vhost, &name, n)
        }
        QueuesCommand::Delete { name, vhost, node } => {
            if !node.json {
                println!("Deleting queue '{name}' in vhost '{vhost}' ...");
            }
            let n = admin_socket::queue_op(&node.data_dir, &vhost, &name, true).await?;
            done(node.json, "deleted", &vhost, &name, n)
        }
    }
}

fn done(json: bool, action: &str, vhost: &str, name: &str, n: u32) -> Result<()> {
    if json {
        println!(
            "{}",
            serde_json::json!({"vhost": vhost, "name": name, "result": action, "messages": n})
        );
    } else {
        println!("Queue was successfully {action}. {n} messages affected");
    }
    Ok(())
}
