//! The `scent` command line: startup only; the work lives in the library.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use scent::config::Config;
use std::path::PathBuf;

// Records are many small allocations (strings, payload buffers) freed on
// other threads; mimalloc handles that pattern markedly better than glibc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "scent",
    version,
    about = "Streaming quality control for electronic noses and process sensors"
)]
struct Cli {
    /// Log filter, e.g. `info` or `scent=debug,rdkafka=warn`.
    #[arg(long, global = true, env = "SCENT_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a simulated plant through the dataflow, in-process (or through a broker).
    Demo(scent::demo::DemoOptions),
    /// Run the engine against Kafka (the production entry point).
    Run(RunArgs),
    /// Generate a deterministic simulated plant to Kafka or files.
    Simulate(scent::simulate::SimulateOptions),
    /// Manage the Kafka topics scent uses.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Measure the engine against a Kafka broker: latency, recovery,
    /// throughput, malformed input (one JSON object per measure on stdout).
    #[command(subcommand)]
    Bench(scent::bench::BenchCommand),
    /// Score the analytics on a public data set or the simulator's ground
    /// truth (one JSON object on stdout).
    #[command(subcommand)]
    Eval(scent::eval::EvalCommand),
    /// Train, store and publish the forecast models; re-publish a stored
    /// version (one JSON object on stdout).
    Train(scent::train::TrainArgs),
}

#[derive(Subcommand)]
enum TopicsCommand {
    /// Create the topics that do not exist yet.
    Create(TopicsArgs),
}

#[derive(Args)]
struct RunArgs {
    /// TOML configuration file (see deploy/config/).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Worker threads, overriding `engine.workers`.
    #[arg(long)]
    workers: Option<usize>,
    /// Kafka bootstrap servers, overriding `kafka.brokers`.
    #[arg(long)]
    kafka: Option<String>,
    /// PostgreSQL URL; enables the archive.
    #[arg(long)]
    database_url: Option<String>,
    /// Address of /metrics and /health, overriding `http.listen`.
    #[arg(long)]
    listen: Option<String>,
}

#[derive(Args)]
struct TopicsArgs {
    /// TOML configuration file naming the topics (default names without).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Kafka bootstrap servers, overriding `kafka.brokers`.
    #[arg(long, env = "SCENT_KAFKA_BROKERS")]
    kafka: Option<String>,
    /// Partitions of the readings and actions topics.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log).context("invalid --log filter")?,
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Demo(options) => {
            scent::demo::run(options).map_err(|e| anyhow::anyhow!(e))?;
        }
        Command::Run(args) => {
            let mut config = Config::load(args.config.as_deref())?;
            if let Some(workers) = args.workers {
                config.engine.workers = workers;
            }
            if let Some(brokers) = args.kafka {
                config.kafka.brokers = brokers;
            }
            if let Some(url) = args.database_url {
                config.archive.enabled = true;
                config.archive.database_url = url;
            }
            if let Some(listen) = args.listen {
                config.http.listen = listen;
            }
            config.validate()?;
            scent::engine::run(config).map_err(|e| anyhow::anyhow!(e))?;
        }
        Command::Simulate(options) => {
            scent::simulate::run(options).map_err(|e| anyhow::anyhow!(e))?;
        }
        Command::Bench(measure) => {
            scent::bench::run(measure).map_err(|e| anyhow::anyhow!(e))?;
        }
        Command::Eval(dataset) => {
            scent::eval::run(dataset)?;
        }
        Command::Train(args) => {
            scent::train::run(args)?;
        }
        Command::Topics(TopicsCommand::Create(args)) => {
            let mut settings = Config::load(args.config.as_deref())?.kafka;
            if let Some(brokers) = args.kafka {
                settings.brokers = brokers;
            }
            let topics = scent_kafka::admin::default_topics(&settings, args.partitions);
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(scent_kafka::admin::create_topics(&settings, &topics))?;
            for topic in topics {
                let plural = if topic.partitions == 1 { "" } else { "s" };
                println!("{} ({} partition{plural})", topic.name, topic.partitions);
            }
        }
    }
    Ok(())
}
