//! `arctern`: the broker binary.

mod admin_conn;
#[allow(dead_code)] // the client half serves the user, vhost and permission tools
mod admin_socket;
mod cluster_status;
mod groups_cli;
mod settings;
mod vhosts_cli;

// glibc's allocator spent about a fifth of the broker's CPU under a publish load (many
// short-lived message buffers across threads); mimalloc is built for that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use arctern_core::Broker;
use arctern_kafka::KafkaServerConfig;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    name = "arctern",
    version,
    about = "A message broker that never loses an acknowledged message"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a broker node (Kafka protocol); alone, or one of a cluster with
    /// --node-id and --controller-quorum-voters.
    Serve(ServeArgs),
    /// Cluster tools.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Consumer group tools: list the groups, describe one (members, assignments,
    /// committed offsets, lag).
    #[command(subcommand)]
    Groups(groups_cli::GroupsCommand),
    /// Produce and consume against a running broker and print throughput and latency.
    Bench(arctern_bench::BenchArgs),
    /// AMQP 0-9-1 scenarios (publisher confirms, transactions, consume, end-to-end
    /// latency) against a running broker (Arctern or RabbitMQ).
    BenchAmqp(arctern_bench::AmqpBenchArgs),
    /// AMQP virtual hosts of a running node (rabbitmqctl's add_vhost, delete_vhost,
    /// list_vhosts).
    #[command(subcommand)]
    Vhosts(vhosts_cli::VhostsCommand),
    /// AMQP permissions of a running node (rabbitmqctl's set_permissions,
    /// clear_permissions, list_permissions).
    #[command(subcommand)]
    Permissions(vhosts_cli::PermissionsCommand),
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Show the nodes, the controller, and each partition's leader, replicas and ISR.
    Status(cluster_status::StatusArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// This node's id (`node.id`) [default: 1]
    #[arg(long)]
    node_id: Option<i32>,
    /// The metadata quorum, Kafka's syntax: `1@host:port,2@host:port,3@host:port`; each
    /// node's Raft listener is its own entry [default: none, a quorum of one]
    #[arg(long)]
    controller_quorum_voters: Option<String>,
    /// Data directory [default: ./arctern-data, or `log.dirs` from the config]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Kafka listener address [default: 127.0.0.1:9092, or `listeners` from the config]
    #[arg(long)]
    kafka_listen: Option<String>,
    /// AMQP 0-9-1 listener address [default: 127.0.0.1:5672, or `amqp.listen` from the config]
    #[arg(long)]
    amqp_listen: Option<String>,
    /// TOML config file (see config/arctern.example.toml)
    #[arg(long)]
    config: Option<PathBuf>,
}

fn main() -> Result<()> {
    let thp = disable_transparent_huge_pages();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = thp {
        tracing::debug!(error = %e, "cannot turn transparent huge pages off; running with them");
    }
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        Command::Bench(args) => runtime.block_on(arctern_bench::run(args)),
        Command::BenchAmqp(args) => runtime.block_on(arctern_bench::amqp::run(args)),
        Command::Cluster(ClusterCommand::Status(args)) => {
            runtime.block_on(cluster_status::run(args))
        }
        Command::Groups(cmd) => runtime.block_on(groups_cli::run(cmd)),
        Command::Vhosts(cmd) => runtime.block_on(vhosts_cli::vhosts(cmd)),
        Command::Permissions(cmd) => runtime.block_on(vhosts_cli::permissions(cmd)),
    }
}

/// Turns transparent huge pages off for this process, before anything else allocates, as
/// Redis and MongoDB advise for themselves. With THP, a fresh allocator page faulted in
/// a 2 MiB page that the kernel zeroes whole: about a tenth of the broker's CPU under a
/// publish load (see docs/benchmarks.md). Page-cache I/O is not affected.
fn disable_transparent_huge_pages() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    rustix::thread::disable_transparent_huge_pages(true)?;
    Ok(())
}

async fn serve(args: ServeArgs) -> Result<()> {
    let file = settings::FileConfig::load(args.config.as_deref())?;
    let data_dir = args
        .data_dir
        .or_else(|| file.log_dirs.clone())
        .unwrap_or_else(|| PathBuf::from("arctern-data"));
    let listen = match args.kafka_listen {
        Some(l) => l,
        None => settings::parse_listener(file.listeners.as_deref().unwrap_or("127.0.0.1:9092"))?,
    };
    let mut config = settings::broker_config(&file, data_dir)?;
    let group_config = settings::group_config(&file)?;
    // Bound before the Kafka listener: whoever waits for the Kafka port to accept
    // connections may then connect to AMQP too (served once the vhost is loaded).
    let amqp_listen = args
        .amqp_listen
        .or_else(|| file.amqp_listen.clone())
        .unwrap_or_else(|| "127.0.0.1:5672".to_string());
    let amqp_config = settings::amqp_config(&file)?;
    let amqp_listener = TcpListener::bind(&amqp_listen)
        .await
        .with_context(|| format!("binding AMQP listener {amqp_listen}"))?;
    let listener = TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding Kafka listener {listen}"))?;
    let bound: SocketAddr = listener.local_addr().context("reading bound address")?;
    let advertised = match &file.advertised_listeners {
        Some(a) => settings::parse_listener(a)?,
        None => bound.to_string(),
    };
    let (host, port) = advertised
        .rsplit_once(':')
        .with_context(|| format!("advertised listener '{advertised}' has no port"))?;
    config.advertised_host = host.trim_matches(['[', ']']).to_string();
    config.advertised_port = port
        .parse()
        .with_context(|| format!("bad port in '{advertised}'"))?;

    if let Some(id) = args.node_id {
        config.node_id = id;
    }
    if config.node_id < 0 {
        anyhow::bail!("node.id must not be negative");
    }
    let voters = args
        .controller_quorum_voters
        .or_else(|| file.controller_quorum_voters.clone())
        .unwrap_or_default();
    let voters =
        arctern_metadata::parse_voters(&voters).context("parsing controller.quorum.voters")?;
    let node_id = u64::try_from(config.node_id).context("node.id must not be negative")?;
    let raft_listen = if voters.is_empty() {
        String::new()
    } else {
        voters
            .get(&node_id)
            .cloned()
            .with_context(|| format!("node.id {node_id} is not among controller.quorum.voters"))?
    };
    let metadata_config = arctern_metadata::MetadataConfig {
        node_id,
        voters,
        listen: raft_listen,
        data_dir: config.data_dir.join("__cluster_metadata-0"),
    };
    let options = arctern_metadata::NodeOptions {
        controller: settings::controller_options(&file)?,
        ..arctern_metadata::NodeOptions::default()
    };
    let metadata = Arc::new(
        arctern_metadata::MetadataNode::start_with(metadata_config, options)
            .await
            .context("starting the metadata quorum member")?,
    );
    let fetcher = Arc::new(arctern_replication::KafkaFollowerFetcher::new(
        arctern_replication::FetcherConfig {
            local_id: config.node_id,
            max_bytes: config.replica_fetch_max_bytes,
            max_wait_ms: config.replica_fetch_wait_max_ms,
        },
    ));
    let broker = Broker::start(config, Arc::clone(&metadata), fetcher)
        .await
        .context("starting broker")?;
    let server_config = KafkaServerConfig {
        socket_request_max_bytes: file
            .socket_request_max_bytes
            .map_or(Ok(104_857_600), usize::try_from)
            .context("socket.request.max.bytes must not be negative")?,
        ..KafkaServerConfig::default()
    };
    tokio::spawn(initialize_defaults(
        Arc::clone(&metadata),
        amqp_config.default_user.clone(),
        amqp_config.default_pass.clone(),
    ));
    let groups = arctern_groups::GroupCoordinator::start(Arc::clone(&broker), group_config);
    let amqp_bound = amqp_listener
        .local_addr()
        .context("reading AMQP bound address")?;
    // Other nodes forward AMQP clients here: a wildcard bind is reached at the advertised
    // Kafka host.
    let amqp_endpoint = if amqp_bound.ip().is_unspecified() {
        format!("{}:{}", broker.config().advertised_host, amqp_bound.port())
    } else {
        amqp_bound.to_string()
    };
    let vhost = arctern_amqp::Vhost::start(
        Arc::clone(&broker),
        arctern_amqp::VhostConfig {
            max_message_size: amqp_config.max_message_size,
            queue_segment_bytes: amqp_config.queue_segment_bytes,
            endpoint: amqp_endpoint,
        },
    );
    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn(arctern_kafka::serve(
        listener,
        arctern_kafka::KafkaContext {
            broker: Arc::clone(&broker),
            groups: Arc::clone(&groups),
            cluster_secret: None,
        },
        server_config,
        stopped,
    ));
    let admin = match admin_socket::start(
        &broker.config().data_dir,
        Arc::clone(&metadata),
        stop.subscribe(),
    ) {
        Ok(task) => Some(task),
        Err(e) => {
            // The broker works without it; only the local admin tools need it.
            tracing::warn!(error = %format!("{e:#}"), "admin socket unavailable");
            None
        }
    };
    let alarm =
        arctern_amqp::alarm::start(settings::alarm_config(&file, &broker.config().data_dir)?);
    let amqp_server = tokio::spawn(arctern_amqp::serve(
        amqp_listener,
        vhost,
        amqp_config,
        alarm,
        stop.subscribe(),
    ));
    tracing::info!(listen = %amqp_bound, "amqp listener ready");
    tracing::info!(listen = %bound, data_dir = %broker.config().data_dir.display(), "kafka listener ready");

    wait_for_signal().await?;
    tracing::info!("shutting down");
    broker.controlled_shutdown().await;
    let _ = stop.send(true);
    let _ = server.await;
    let _ = amqp_server.await;
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    drop(groups);
    broker.shutdown();
    drop(broker);
    match Arc::try_unwrap(metadata) {
        Ok(m) => m.shutdown().await,
        Err(_) => tracing::debug!("metadata node still referenced; dropping it"),
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// The first start of a cluster creates the vhost "/" and the default user (RabbitMQ's
/// `default_user`/`default_pass`, administrator, all permissions on "/"). Every node
/// proposes it; the metadata applies it once.
async fn initialize_defaults(
    metadata: Arc<arctern_metadata::MetadataNode>,
    user: String,
    pass: String,
) {
    use arctern_metadata::{MetadataCommand, Permission, UserRecord, DEFAULT_VHOST};
    let cmd = MetadataCommand::Initialize {
        users: [(
            user.clone(),
            UserRecord::with_password(&pass, vec!["administrator".to_string()]),
        )]
        .into(),
        permissions: [(
            DEFAULT_VHOST.to_string(),
            [(user, Permission::full())].into(),
        )]
        .into(),
    };
    while !metadata.state().borrow().initialized {
        match metadata.propose(cmd.clone()).await {
            Ok(_) => break,
            Err(e) => {
                tracing::debug!(error = %e, "initializing defaults; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
}

async fn wait_for_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}
