//! `arctern`: the broker binary.

mod admin_conn;
mod admin_socket;
mod cluster_status;
mod definitions_cli;
mod groups_cli;
mod queues_cli;
mod settings;
mod topics_cli;
mod users_cli;
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
use arctern_security::SecurityProtocol;
use arctern_transport::{ReloadableTls, TlsSettings};
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
    /// User tools (rabbitmqctl's add_user, delete_user, list_users, change_password,
    /// set_user_tags, authenticate_user) through a running node's admin socket.
    #[command(subcommand)]
    Users(users_cli::UsersCommand),
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
    /// Kafka topics (kafka-topics.sh's list, describe, create, delete; kafka-configs.sh's
    /// alter) over the Kafka protocol.
    #[command(subcommand)]
    Topics(topics_cli::TopicsCommand),
    /// AMQP queues of a running node (rabbitmqctl's list_queues, purge_queue,
    /// delete_queue) through its admin socket.
    #[command(subcommand)]
    Queues(queues_cli::QueuesCommand),
    /// RabbitMQ definitions JSON (users, vhosts, permissions, queues, exchanges,
    /// bindings): export from / import into a running node.
    #[command(subcommand)]
    Definitions(definitions_cli::DefinitionsCommand),
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
    /// Kafka listeners, `host:port` (PLAINTEXT) or Kafka's `NAME://host:port,...`
    /// [default: 127.0.0.1:9092, or `listeners` from the config]
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
        Command::Users(cmd) => runtime.block_on(users_cli::run(cmd)),
        Command::Vhosts(cmd) => runtime.block_on(vhosts_cli::vhosts(cmd)),
        Command::Permissions(cmd) => runtime.block_on(vhosts_cli::permissions(cmd)),
        Command::Topics(cmd) => runtime.block_on(topics_cli::run(cmd)),
        Command::Queues(cmd) => runtime.block_on(queues_cli::run(cmd)),
        Command::Definitions(cmd) => runtime.block_on(definitions_cli::run(cmd)),
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

/// Raises the soft open-file limit to the hard one (as Go's runtime and the JVM do: the soft
/// default of 1024 is a relic) and lets at most half of it be segment files, the rest left
/// for connections: a node with more queue and partition logs than that keeps only the
/// recently used ones open (`arctern_storage::open_files`).
fn size_open_files() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if let (Some(soft), Some(hard)) = (limit.current, limit.maximum) {
        if soft < hard {
            let mut raised = limit;
            raised.current = Some(hard);
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => limit = raised,
                Err(e) => {
                    tracing::warn!(soft, hard, error = %e, "could not raise the open-file limit")
                }
            }
        }
    }
    let soft = limit.current.unwrap_or(1 << 20);
    let segments = usize::try_from(soft / 2).unwrap_or(usize::MAX).min(1 << 20);
    arctern_storage::open_files::set_capacity(segments);
    tracing::info!(
        open_file_limit = soft,
        segment_files = arctern_storage::open_files::capacity(),
        "open files"
    );
}

async fn serve(args: ServeArgs) -> Result<()> {
    size_open_files();
    let file = settings::FileConfig::load(args.config.as_deref())?;
    let verify_reads = file.storage_verify_reads.unwrap_or(true);
    arctern_storage::set_verify_reads(verify_reads);
    if !verify_reads {
        tracing::warn!("storage.verify.reads is false: batches are served without checking their offsets and epochs against the log (a corrupt base offset can make consumers skip records)");
    }
    let data_dir = args
        .data_dir
        .or_else(|| file.log_dirs.clone())
        .unwrap_or_else(|| PathBuf::from("arctern-data"));
    let kafka_listeners = settings::kafka_listeners(&file, args.kafka_listen.as_deref())?;
    let mut config = settings::broker_config(&file, data_dir)?;
    let group_config = settings::group_config(&file)?;
    let sasl_config = settings::sasl_config(&file)?;
    let authorizer_config = settings::authorizer_config(&file)?;
    // TLS material is loaded before anything binds: a bad certificate stops the start.
    let mut reloadable: Vec<Arc<ReloadableTls>> = Vec::new();
    let mut load_tls = |name: &str, s: &TlsSettings| -> Result<Arc<ReloadableTls>> {
        let t = Arc::new(
            ReloadableTls::new(name, s.clone())
                .with_context(|| format!("loading the TLS material of listener {name}"))?,
        );
        reloadable.push(Arc::clone(&t));
        Ok(t)
    };
    let (amqp_listen, amqp_ssl) = settings::amqp_listeners(&file, args.amqp_listen.as_deref())?;
    let amqp_ssl = match amqp_ssl {
        Some((addr, s)) => Some((addr, load_tls("amqp/ssl", &s)?)),
        None => None,
    };
    let management_tls = match settings::management_tls(&file)? {
        Some((addr, s)) => Some((addr, load_tls("management/ssl", &s)?)),
        None => None,
    };
    let mut kafka_tls = Vec::new();
    for l in &kafka_listeners.listeners {
        kafka_tls.push(match &l.tls {
            Some(s) => Some(load_tls(&l.name, s)?),
            None => None,
        });
    }
    // Bound before the Kafka listener: whoever waits for the Kafka port to accept
    // connections may then connect to AMQP too (served once the vhost is loaded).
    let mut amqp_config = settings::amqp_config(&file)?;
    let kafka_connection_limits = settings::kafka_connection_limits(&file)?;
    // One failed-login limiter per node, shared by every protocol's logins.
    let login_limiter = Arc::new(arctern_security::ratelimit::LoginLimiter::new(
        settings::login_limiter_config(&file)?,
    ));
    let amqp_listener = TcpListener::bind(&amqp_listen)
        .await
        .with_context(|| format!("binding AMQP listener {amqp_listen}"))?;
    let amqp_ssl_listener = match amqp_ssl {
        Some((addr, tls)) => Some((
            TcpListener::bind(&addr)
                .await
                .with_context(|| format!("binding AMQP TLS listener {addr}"))?,
            tls,
        )),
        None => None,
    };
    let mut listeners = Vec::new();
    for (l, tls) in kafka_listeners.listeners.iter().zip(kafka_tls) {
        let bound = TcpListener::bind(&l.bind)
            .await
            .with_context(|| format!("binding Kafka listener {} {}", l.name, l.bind))?;
        listeners.push((l, bound, tls));
    }
    let mut inter_broker = None;
    for (l, bound, _) in &listeners {
        let addr: SocketAddr = bound.local_addr().context("reading bound address")?;
        let advertised = kafka_listeners
            .advertised
            .get(&l.name)
            .cloned()
            .unwrap_or_else(|| addr.to_string());
        let (host, port) = advertised
            .rsplit_once(':')
            .with_context(|| format!("advertised listener '{advertised}' has no port"))?;
        let host = host.trim_matches(['[', ']']).to_string();
        let port: u16 = port
            .parse()
            .with_context(|| format!("bad port in '{advertised}'"))?;
        if l.name == kafka_listeners.inter_broker {
            inter_broker = Some((host.clone(), port, l.protocol));
        }
        config
            .advertised_listeners
            .push(arctern_metadata::ListenerEndpoint {
                name: l.name.clone(),
                host,
                port,
            });
    }
    let (host, port, inter_protocol) =
        inter_broker.context("the inter-broker listener is not bound")?;
    config.advertised_host = host;
    config.advertised_port = i32::from(port);

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
    if !voters.is_empty() && inter_protocol.uses_sasl() {
        // The replica fetcher does not authenticate with SASL; a single node fetches from
        // nobody.
        anyhow::bail!(
            "inter.broker.listener.name {} uses {}: replicas fetch over PLAINTEXT or SSL only; name a PLAINTEXT or SSL listener as the inter-broker listener",
            kafka_listeners.inter_broker,
            inter_protocol.name()
        );
    }
    let fetcher_tls = match kafka_listeners
        .listeners
        .iter()
        .find(|l| l.name == kafka_listeners.inter_broker)
        .and_then(|l| l.tls.as_ref())
    {
        // A single node fetches from nobody: no client config (nor truststore) needed.
        Some(s) if inter_protocol == SecurityProtocol::Ssl && !voters.is_empty() => {
            Some(s.client_config().with_context(|| {
                format!("inter-broker listener {}", kafka_listeners.inter_broker)
            })?)
        }
        _ => None,
    };
    let raft_listen = if voters.is_empty() {
        String::new()
    } else {
        voters
            .get(&node_id)
            .cloned()
            .with_context(|| format!("node.id {node_id} is not among controller.quorum.voters"))?
    };
    let cluster_secret = settings::cluster_secret(&file)?.map(Arc::new);
    if cluster_secret.is_none() && voters.len() > 1 {
        tracing::warn!("no cluster.secret: cluster traffic (Raft, follower fetches, AMQP forwarding) is unauthenticated; anyone reaching these ports can act as a node");
    }
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
        arctern_metadata::MetadataNode::start_secured(
            metadata_config,
            options,
            cluster_secret.clone(),
        )
        .await
        .context("starting the metadata quorum member")?,
    );
    let fetcher = Arc::new(arctern_replication::KafkaFollowerFetcher::new(
        arctern_replication::FetcherConfig {
            local_id: config.node_id,
            max_bytes: config.replica_fetch_max_bytes,
            max_wait_ms: config.replica_fetch_wait_max_ms,
            cluster_secret: cluster_secret.clone(),
            tls: fetcher_tls,
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
        quota: arctern_transport::ConnectionQuota::new(kafka_connection_limits),
        // Kafka protects the inter-broker listener only when there are others.
        inter_broker_listener: (kafka_listeners.listeners.len() > 1)
            .then(|| kafka_listeners.inter_broker.clone()),
        connections_max_idle: settings::kafka_connections_max_idle(&file),
        ..KafkaServerConfig::default()
    };
    let mut init = tokio::spawn(initialize_defaults(
        Arc::clone(&metadata),
        amqp_config.default_user.clone(),
        amqp_config.default_pass.clone(),
        amqp_config.default_user_tags.clone(),
    ));
    // Nothing is served before the first start's defaults exist, so neither an early login
    // nor an early admin command sees a cluster without "/" and the default user. The
    // quorum answered the registration just now; should it stall, go on and let the task
    // finish later.
    if tokio::time::timeout(std::time::Duration::from_secs(30), &mut init)
        .await
        .is_err()
    {
        tracing::warn!("initializing the default user and vhost is taking long; serving anyway");
    }
    amqp_config.auth = Some(arctern_amqp::auth::Authenticator {
        metadata: broker.subscribe_metadata(),
        limiter: Arc::clone(&login_limiter),
    });
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
            cluster_secret: cluster_secret.clone(),
        },
    );
    let (stop, stopped) = watch::channel(false);
    let ctx = arctern_kafka::KafkaContext {
        broker: Arc::clone(&broker),
        groups: Arc::clone(&groups),
        cluster_secret: cluster_secret.clone(),
        authorizer: authorizer_config.map(|c| {
            tracing::info!(super_users = ?c.super_users, allow_everyone_if_no_acl_found = c.allow_everyone_if_no_acl_found, "Kafka ACL authorizer on");
            Arc::new(arctern_kafka::Authorizer::new(c, Arc::clone(&metadata)))
        }),
        sasl: Arc::new(sasl_config),
        // sasl helper: one limiter for every login; the AMQP listener should share it.
        login_limiter: Arc::clone(&login_limiter),
        metadata: arctern_kafka::MetadataHandle(Arc::clone(&metadata)),
    };
    let mut servers = Vec::new();
    let mut bound_names = Vec::new();
    let mut http_listeners = Vec::new();
    for (l, bound, tls) in listeners {
        let addr = bound.local_addr().context("reading bound address")?;
        bound_names.push(format!("{}://{addr}", l.name));
        http_listeners.push(arctern_http::ListenerInfo {
            protocol: if http_listeners.is_empty() {
                "kafka".to_string()
            } else {
                format!("kafka/{}", l.name.to_lowercase())
            },
            addr,
        });
        servers.push(tokio::spawn(arctern_kafka::serve_listener(
            bound,
            Arc::new(arctern_kafka::ListenerInfo {
                name: l.name.clone(),
                protocol: l.protocol,
            }),
            tls,
            ctx.clone(),
            server_config.clone(),
            stopped.clone(),
        )));
    }
    drop(stopped);
    let reloader = arctern_transport::spawn_reloader(reloadable, stop.subscribe());
    let admin = match admin_socket::start(
        &broker.config().data_dir,
        Arc::clone(&metadata),
        Some(Arc::clone(&vhost)),
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
    // metrics helper: the HTTP listener (metrics).
    let (management_listen, management_required) = settings::management_listen(&file);
    let http_server = match TcpListener::bind(&management_listen).await {
        Ok(l) => {
            let addr = l.local_addr().context("reading HTTP bound address")?;
            tracing::info!(listen = %addr, "http listener ready");
            http_listeners.push(arctern_http::ListenerInfo {
                protocol: "amqp".to_string(),
                addr: amqp_bound,
            });
            if let Some((l, _)) = &amqp_ssl_listener {
                http_listeners.push(arctern_http::ListenerInfo {
                    protocol: "amqp/ssl".to_string(),
                    addr: l.local_addr().context("reading AMQP TLS bound address")?,
                });
            }
            http_listeners.push(arctern_http::ListenerInfo {
                protocol: "http".to_string(),
                addr,
            });
            let https = match &management_tls {
                Some((listen, _)) => Some(
                    TcpListener::bind(listen)
                        .await
                        .with_context(|| format!("binding HTTPS listener {listen}"))?,
                ),
                None => None,
            };
            if let Some(l) = &https {
                http_listeners.push(arctern_http::ListenerInfo {
                    protocol: "https".to_string(),
                    addr: l.local_addr().context("reading HTTPS bound address")?,
                });
            }
            let http_ctx = arctern_http::HttpContext {
                broker: Arc::clone(&broker),
                groups: Arc::clone(&groups),
                vhost: Arc::clone(&vhost),
                metadata: Arc::clone(&metadata),
                alarm: alarm.clone(),
                login_limiter: Arc::clone(&login_limiter),
                listeners: std::mem::take(&mut http_listeners),
                started: std::time::SystemTime::now(),
            };
            if let (Some(l), Some((_, tls))) = (https, &management_tls) {
                tracing::info!(listen = %l.local_addr().context("reading HTTPS bound address")?, "https listener ready");
                tokio::spawn(arctern_http::serve_tls(
                    l,
                    Arc::clone(tls),
                    http_ctx.clone(),
                    stop.subscribe(),
                ));
            }
            Some(tokio::spawn(arctern_http::serve(
                l,
                http_ctx,
                stop.subscribe(),
            )))
        }
        Err(e) if !management_required => {
            tracing::warn!(listen = %management_listen, error = %e, "HTTP listener not started (the default port is taken; set management.listen)");
            None
        }
        Err(e) => {
            return Err(e).with_context(|| format!("binding HTTP listener {management_listen}"))
        }
    };
    // metrics helper: RabbitMQ's Prometheus port, only when `prometheus.tcp.port` is set.
    let prometheus_server = match settings::prometheus_listen(&file)? {
        Some(listen) => {
            let l = TcpListener::bind(&listen)
                .await
                .with_context(|| format!("binding Prometheus listener {listen}"))?;
            let addr = l.local_addr().context("reading Prometheus bound address")?;
            tracing::info!(listen = %addr, "prometheus listener ready");
            let ctx = arctern_http::HttpContext {
                broker: Arc::clone(&broker),
                groups: Arc::clone(&groups),
                vhost: Arc::clone(&vhost),
                metadata: Arc::clone(&metadata),
                alarm: alarm.clone(),
                login_limiter: Arc::clone(&login_limiter),
                listeners: Vec::new(),
                started: std::time::SystemTime::now(),
            };
            Some(tokio::spawn(arctern_http::prom_port::serve(
                l,
                ctx,
                stop.subscribe(),
            )))
        }
        None => None,
    };
    let mut amqp_servers = Vec::new();
    if let Some((l, tls)) = amqp_ssl_listener {
        let addr = l.local_addr().context("reading AMQP TLS bound address")?;
        amqp_servers.push(tokio::spawn(arctern_amqp::serve(
            l,
            Some(tls),
            Arc::clone(&vhost),
            amqp_config.clone(),
            alarm.clone(),
            stop.subscribe(),
        )));
        tracing::info!(listen = %addr, "amqp TLS listener ready");
    }
    amqp_servers.push(tokio::spawn(arctern_amqp::serve(
        amqp_listener,
        None,
        vhost,
        amqp_config,
        alarm,
        stop.subscribe(),
    )));
    tracing::info!(listen = %amqp_bound, "amqp listener ready");
    tracing::info!(listeners = %bound_names.join(","), data_dir = %broker.config().data_dir.display(), "kafka listener ready");

    wait_for_signal().await?;
    tracing::info!("shutting down");
    broker.controlled_shutdown().await;
    let _ = stop.send(true);
    for s in servers {
        let _ = s.await;
    }
    for s in amqp_servers {
        let _ = s.await;
    }
    if let Some(r) = reloader {
        let _ = r.await;
    }
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    if let Some(h) = http_server {
        let _ = h.await;
    }
    if let Some(h) = prometheus_server {
        let _ = h.await;
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
    tags: Vec<String>,
) {
    use arctern_metadata::{MetadataCommand, Permission, UserRecord, DEFAULT_VHOST};
    let cmd = MetadataCommand::Initialize {
        users: [(user.clone(), UserRecord::with_password(&pass, tags))].into(),
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
