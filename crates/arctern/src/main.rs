//! `arctern`: the broker binary.

mod settings;

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
    /// Start a broker node (single node, Kafka protocol).
    Serve(ServeArgs),
    /// Produce and consume against a running broker and print throughput and latency.
    Bench(arctern_bench::BenchArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Data directory [default: ./arctern-data, or `log.dirs` from the config]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Kafka listener address [default: 127.0.0.1:9092, or `listeners` from the config]
    #[arg(long)]
    kafka_listen: Option<String>,
    /// TOML config file (see config/arctern.example.toml)
    #[arg(long)]
    config: Option<PathBuf>,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        Command::Bench(args) => runtime.block_on(arctern_bench::run(args)),
    }
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

    let broker = Broker::open(config).context("opening broker storage")?;
    broker.start_background_tasks();
    let server_config = KafkaServerConfig {
        socket_request_max_bytes: file
            .socket_request_max_bytes
            .map_or(Ok(104_857_600), usize::try_from)
            .context("socket.request.max.bytes must not be negative")?,
        ..KafkaServerConfig::default()
    };
    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn(arctern_kafka::serve(
        listener,
        Arc::clone(&broker),
        server_config,
        stopped,
    ));
    tracing::info!(listen = %bound, data_dir = %broker.config().data_dir.display(), "kafka listener ready");

    wait_for_signal().await?;
    tracing::info!("shutting down");
    let _ = stop.send(true);
    let _ = server.await;
    broker.shutdown();
    tracing::info!("stopped cleanly");
    Ok(())
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
