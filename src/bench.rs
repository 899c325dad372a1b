//! `scent bench`: end-to-end measures of the engine against a real Kafka
//! broker.
//!
//! | measure | question | target |
//! |---|---|---|
//! | `latency` | how long after a batch ends is its decision visible to MES, at a live input rate? | p99 < 100 ms at 50,000 readings/s |
//! | `recovery` | how long after `kill -9` until the restarted engine commits a new decision? | < 5 s |
//! | `throughput` | how fast does the engine consume a backlog, with and without transactions? | — |
//! | `poison` | how much do malformed records slow valid ones down? | within 5 % |
//!
//! Every measure creates its own topics and group id under a unique prefix
//! (`bench-<measure>-<pid>-<ms>.`), runs the engine as its own process
//! (`scent run --config FILE`, the production entry point, spawned from this
//! executable with a configuration file written for the run), and watches
//! the engine's output the way an MES does: a `read_committed` consumer of
//! the actions topic. It prints one JSON object to stdout, progress to
//! stderr, and deletes its topics and groups at the end unless
//! `--keep-topics`. The engine configuration is the one `scent run` would
//! load (defaults, `--config FILE`, `SCENT__SECTION__KEY` variables), with
//! the brokers, topics, group id and worker count of the run; the JSON
//! report states the settings that shape the result. `docs/benchmarks.md`
//! describes each measure and how to read its figures.
//!
//! The live measures (`latency`, `recovery`) produce from a paced generator
//! whose event time is the wall clock, as at a running plant: many lines of
//! seven sensors (two 16-channel e-nose arrays and five process sensors)
//! sampled round robin at the requested rate, with a batch starting and
//! ending on every line every few seconds. The backlog measures
//! (`throughput`, `poison`) produce the deterministic simulated plant first,
//! as `scent demo --kafka --speed 0` does, and time the engine consuming it.

use crate::config::{Config, ENV_PREFIX};
use crate::runtime::BoxError;
use crate::sim::{Plant, SimRecord};
use crate::simulate::{prefixed_topics, produce, sim_config};
use clap::{Args, Subcommand};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use scent_kafka::admin::{create_topics, default_topics, partition_count};
use scent_kafka::codec::decode_action;
use scent_kafka::producer::{OutgoingRecord, RecordProducer};
use scent_kafka::settings::StartFrom;
use scent_kafka::{Delivery, KafkaSettings, Topics};
use scent_operators::model::{ActionKind, BatchEvent, BatchPhase, Reading, SensorKind};
use scent_operators::wire::{encode_batch_event, encode_reading};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The measures of `scent bench`.
#[derive(Debug, Clone, Subcommand)]
pub enum BenchCommand {
    /// Decision latency at a live input rate (batch end produced to action
    /// visible to a read_committed consumer).
    Latency(LatencyOptions),
    /// Recovery time after `kill -9` of the engine (kill to the first new
    /// committed action).
    Recovery(RecoveryOptions),
    /// Consumption throughput of a produced backlog, exactly once versus
    /// at least once.
    Throughput(ThroughputOptions),
    /// Valid-reading throughput with malformed records versus a clean run.
    Poison(PoisonOptions),
}

/// Options every measure has.
#[derive(Debug, Clone, Args)]
pub struct CommonOptions {
    /// Kafka bootstrap servers.
    #[arg(long, value_name = "HOST:PORT", env = "SCENT_KAFKA_BROKERS")]
    pub kafka: String,
    /// Engine configuration file to start from (as `scent run --config`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Timely worker threads of the engine, overriding `engine.workers`.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Keep the topics and the run directory's files (the topics and
    /// consumer groups are deleted at the end otherwise).
    #[arg(long)]
    pub keep_topics: bool,
}

/// Options of `scent bench latency`.
#[derive(Debug, Clone, Args)]
pub struct LatencyOptions {
    #[command(flatten)]
    pub common: CommonOptions,
    /// Input rate in readings per second.
    #[arg(long, default_value_t = 50_000.0)]
    pub rate: f64,
    /// Measured window in seconds (batch ends produced in it are measured).
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    /// Input before the window, in seconds, while the engine starts.
    #[arg(long, default_value_t = 5.0)]
    pub warmup_seconds: f64,
    /// Production lines of seven sensors each.
    #[arg(long, default_value_t = 50)]
    pub lines: usize,
    /// Length of every batch, in milliseconds.
    #[arg(long, default_value_t = 4_000)]
    pub batch_ms: u64,
    /// Pause between two batches of a line, in milliseconds.
    #[arg(long, default_value_t = 1_000)]
    pub changeover_ms: u64,
}

/// Options of `scent bench recovery`.
#[derive(Debug, Clone, Args)]
pub struct RecoveryOptions {
    #[command(flatten)]
    pub common: CommonOptions,
    /// Times the engine is killed with SIGKILL and restarted.
    #[arg(long, default_value_t = 10)]
    pub kills: usize,
    /// Input rate in readings per second.
    #[arg(long, default_value_t = 2_000.0)]
    pub rate: f64,
    /// Production lines of seven sensors each.
    #[arg(long, default_value_t = 20)]
    pub lines: usize,
    /// Length of every batch, in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    pub batch_ms: u64,
    /// Pause between two batches of a line, in milliseconds.
    #[arg(long, default_value_t = 1_000)]
    pub changeover_ms: u64,
    /// Steady running between a recovery and the next kill, in
    /// milliseconds.
    #[arg(long, default_value_t = 2_000)]
    pub steady_ms: u64,
}

/// Options of `scent bench throughput`.
#[derive(Debug, Clone, Args)]
pub struct ThroughputOptions {
    #[command(flatten)]
    pub common: CommonOptions,
    /// Approximate number of valid readings in the backlog.
    #[arg(long, default_value_t = 1_000_000)]
    pub readings: u64,
    /// Production lines of the simulated plant.
    #[arg(long, default_value_t = 3)]
    pub lines: usize,
    /// Seed of the simulated plant.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Runs of each delivery mode, alternating which goes first; the
    /// report gives the median.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

/// Options of `scent bench poison`.
#[derive(Debug, Clone, Args)]
pub struct PoisonOptions {
    #[command(flatten)]
    pub common: CommonOptions,
    /// Approximate number of valid readings.
    #[arg(long, default_value_t = 500_000)]
    pub readings: u64,
    /// Malformed records per valid reading, cycling through every class
    /// the simulator injects.
    #[arg(long, default_value_t = 0.01)]
    pub poison_fraction: f64,
    /// Production lines of the simulated plant.
    #[arg(long, default_value_t = 3)]
    pub lines: usize,
    /// Seed of the simulated plant.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Runs of each input, alternating which goes first; the report gives
    /// the median.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

/// Runs one measure and prints its JSON report to stdout.
pub fn run(command: BenchCommand) -> Result<(), BoxError> {
    let report = match command {
        BenchCommand::Latency(options) => latency(&options)?,
        BenchCommand::Recovery(options) => recovery(&options)?,
        BenchCommand::Throughput(options) => throughput(&options)?,
        BenchCommand::Poison(options) => poison(&options)?,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

// ---------------------------------------------------------------------------
// Pure parts: statistics, pacing, the live plant's rhythm, the event-time
// bound of a decision, metric parsing.
// ---------------------------------------------------------------------------

/// Order statistics of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Values in the sample.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value.
    pub max: f64,
    /// Smallest value.
    pub min: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

/// The nearest-rank percentile `p` (0..=100) of `sorted` (ascending): the
/// smallest value with at least `p` % of the sample at or below it.
/// `None` for an empty sample.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The order statistics of `values` (any order); `None` when empty.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |p| percentile(&sorted, p);
    Some(Summary {
        count: sorted.len(),
        p50: at(50.0)?,
        p90: at(90.0)?,
        p95: at(95.0)?,
        p99: at(99.0)?,
        max: *sorted.last()?,
        min: *sorted.first()?,
        mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
    })
}

/// Readings a paced producer should have sent `elapsed` after it started
/// at `rate` readings per second.
pub fn readings_due(rate: f64, elapsed: Duration) -> u64 {
    (rate.max(0.0) * elapsed.as_secs_f64()).floor() as u64
}

/// The batch rhythm of the live plant: every line runs batches of
/// `batch_ms` separated by `changeover_ms`, line `k`'s rhythm shifted by
/// `k / lines` of a period so batch ends are spread evenly in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRhythm {
    /// Production lines.
    pub lines: usize,
    /// Length of a batch, in milliseconds.
    pub batch_ms: u64,
    /// Pause between batches, in milliseconds.
    pub changeover_ms: u64,
}

impl BatchRhythm {
    /// One batch and one changeover.
    pub fn period_ms(&self) -> u64 {
        self.batch_ms + self.changeover_ms
    }

    /// When `line`'s first batch starts, in milliseconds after the run
    /// starts: one changeover, plus the line's share of a period.
    pub fn first_start_ms(&self, line: usize) -> u64 {
        self.changeover_ms + line as u64 * self.period_ms() / self.lines.max(1) as u64
    }

    /// The `index`-th lifecycle event of `line`: `(milliseconds after the
    /// run starts, phase, batch number from 1)`. Even indices start a
    /// batch, odd ones end it.
    pub fn event(&self, line: usize, index: u64) -> (u64, BatchPhase, u64) {
        let batch = index / 2;
        let start = self.first_start_ms(line) + batch * self.period_ms();
        if index.is_multiple_of(2) {
            (start, BatchPhase::Start, batch + 1)
        } else {
            (start + self.batch_ms, BatchPhase::End, batch + 1)
        }
    }

    /// Batch decisions due per second over the whole plant.
    pub fn decisions_per_second(&self) -> f64 {
        self.lines as f64 * 1_000.0 / self.period_ms().max(1) as f64
    }
}

/// The least time, in milliseconds, between a batch end at event time
/// `end_ts_ms` and its decision when event time is wall time: the end's
/// epoch completes once every readings partition's watermark (its newest
/// event time minus `lateness_ms`) reaches the start of the next epoch.
pub fn decision_bound_ms(end_ts_ms: i64, epoch_ms: u64, lateness_ms: u64) -> i64 {
    let epoch_ms = epoch_ms.max(1) as i64;
    let next_epoch_start = (end_ts_ms.div_euclid(epoch_ms) + 1) * epoch_ms;
    next_epoch_start + lateness_ms as i64 - end_ts_ms
}

/// The samples of `name` in a Prometheus text exposition, as `(labels,
/// value)`; `labels` is the text between the braces (empty without).
pub fn metric_samples<'a>(exposition: &'a str, name: &'a str) -> Vec<(&'a str, f64)> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(labelled) => {
                    let (labels, value) = labelled.split_once('}')?;
                    (labels, value)
                }
                None if rest.starts_with(' ') => ("", rest),
                None => return None,
            };
            let value = value.split_whitespace().next()?.parse().ok()?;
            Some((labels, value))
        })
        .collect()
}

/// The sum of every sample of `name`; `None` if it has none.
pub fn metric_total(exposition: &str, name: &str) -> Option<f64> {
    let samples = metric_samples(exposition, name);
    (!samples.is_empty()).then(|| samples.iter().map(|(_, value)| value).sum())
}

// ---------------------------------------------------------------------------
// A run: its id, directory, topics and engine configuration.
// ---------------------------------------------------------------------------

/// What a measure creates and must clean up: topics, consumer groups and
/// a directory for the engine's configuration and log.
struct BenchRun {
    id: String,
    dir: PathBuf,
    base: Config,
    keep: bool,
    /// Set when the measure completed: the directory's logs are no longer
    /// needed.
    completed: bool,
    /// The host's load average when the measure started.
    load_at_start: Option<Vec<f64>>,
    topics: BTreeSet<String>,
    groups: BTreeSet<String>,
}

impl BenchRun {
    fn new(measure: &str, common: &CommonOptions) -> Result<BenchRun, BoxError> {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let id = format!("bench-{measure}-{}-{millis}", std::process::id());
        let dir = std::env::temp_dir().join(&id);
        std::fs::create_dir_all(&dir)?;
        let mut base = Config::load(common.config.as_deref())?;
        base.kafka.brokers = common.kafka.clone();
        base.kafka.start_from = StartFrom::Earliest;
        if let Some(workers) = common.workers {
            base.engine.workers = workers;
        }
        base.archive.enabled = false;
        base.validate()?;
        eprintln!(
            "{measure}: run {id}, broker {}, {} workers, files in {}",
            base.kafka.brokers,
            base.engine.workers,
            dir.display()
        );
        Ok(BenchRun {
            id,
            dir,
            base,
            keep: common.keep_topics,
            completed: false,
            load_at_start: load_average(),
            topics: BTreeSet::new(),
            groups: BTreeSet::new(),
        })
    }

    /// Topic names under this run's prefix, with `part` added (`""` for
    /// the plain prefix).
    fn topics(&self, part: &str) -> Topics {
        prefixed_topics(&format!("{}.{part}", self.id))
    }

    /// An engine configuration reading and writing `topics` under the
    /// group id `<run id>.<label>`, with `delivery` if given.
    fn engine_config(&self, label: &str, topics: Topics, delivery: Option<Delivery>) -> Config {
        let mut config = self.base.clone();
        config.kafka.topics = topics;
        config.kafka.group_id = format!("{}.{label}", self.id);
        if let Some(delivery) = delivery {
            config.kafka.delivery = delivery;
        }
        config
    }

    /// Creates the topics `config` names (readings and actions with four
    /// partitions) and remembers them and its group for deletion.
    fn create_topics(&mut self, config: &Config) -> Result<(), BoxError> {
        let specs = default_topics(&config.kafka, 4);
        block_on(create_topics(&config.kafka, &specs))?;
        self.topics.extend(specs.into_iter().map(|spec| spec.name));
        self.groups.insert(config.kafka.group_id.clone());
        Ok(())
    }

    /// Writes `config` as the engine's configuration file.
    fn write_config(&self, label: &str, config: &Config) -> Result<PathBuf, BoxError> {
        let path = self.dir.join(format!("{label}.toml"));
        std::fs::write(&path, toml::to_string(config)?)?;
        Ok(path)
    }

    fn log_path(&self, label: &str) -> PathBuf {
        self.dir.join(format!("{label}.log"))
    }

    /// Marks the measure complete and returns its report, with what the
    /// host was doing: other load on a shared machine moves every figure.
    fn complete(&mut self, mut report: Value) -> Value {
        self.completed = true;
        report["host"] = json!({
            "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "load_average_at_start": self.load_at_start,
            "load_average_at_end": load_average(),
        });
        report
    }
}

impl Drop for BenchRun {
    fn drop(&mut self) {
        if self.keep || !self.completed {
            eprintln!(
                "kept the engine's configuration and log in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        if self.keep {
            eprintln!("kept topics {}.*", self.id);
            return;
        }
        let settings = &self.base.kafka;
        let admin: Result<AdminClient<DefaultClientContext>, _> = settings.client_config().create();
        let Ok(admin) = admin else {
            return;
        };
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        let groups: Vec<&str> = self.groups.iter().map(String::as_str).collect();
        let (deleted_topics, deleted_groups) = block_on(async {
            let topics = admin.delete_topics(&topics, &options).await;
            let groups = admin.delete_groups(&groups, &options).await;
            (topics, groups)
        });
        let ok_topics = deleted_topics.map_or(0, |r| r.iter().filter(|r| r.is_ok()).count());
        let ok_groups = deleted_groups.map_or(0, |r| r.iter().filter(|r| r.is_ok()).count());
        // Only engines that committed offsets (exactly once) have a group.
        eprintln!(
            "deleted {ok_topics} of {} topics and {ok_groups} consumer groups of {}",
            self.topics.len(),
            self.id
        );
    }
}

/// The 1, 5 and 15 minute load averages, where the system reports them.
fn load_average() -> Option<Vec<f64>> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace()
        .take(3)
        .map(|field| field.parse().ok())
        .collect()
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime always builds")
        .block_on(future)
}

/// The settings of a run that shape its figures, for the report.
fn config_report(config: &Config) -> Value {
    json!({
        "workers": config.engine.workers,
        "delivery": config.kafka.delivery,
        "epoch_ms": config.time.epoch_ms,
        "allowed_lateness_ms": config.time.allowed_lateness_ms,
        "idle_timeout_ms": config.time.idle_timeout_ms,
        "min_commit_interval_ms": config.kafka.min_commit_interval_ms,
        "poll_batch": config.engine.poll_batch,
        "max_records_in_flight": config.engine.max_records_in_flight,
    })
}

// ---------------------------------------------------------------------------
// The engine process.
// ---------------------------------------------------------------------------

/// `scent run --config FILE` as a child process; killed when dropped.
struct EngineProcess {
    child: Child,
    listen: String,
    log: PathBuf,
    spawned: Instant,
}

impl EngineProcess {
    /// Starts the engine with `config`, its log appended to `log` and its
    /// metrics endpoint on a free loopback port. `SCENT__*` variables are
    /// not passed on: the configuration file is the whole configuration.
    fn spawn(config: &Path, log: &Path) -> Result<EngineProcess, BoxError> {
        let listen = free_local_address()?;
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut command = Command::new(own_executable()?);
        command
            .arg("run")
            .arg("--config")
            .arg(config)
            .args(["--listen", &listen]);
        for (variable, _) in std::env::vars() {
            if variable.starts_with(ENV_PREFIX) {
                command.env_remove(variable);
            }
        }
        if std::env::var_os("SCENT_LOG").is_none() {
            command.env("SCENT_LOG", "info");
        }
        let spawned = Instant::now();
        let child = command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()?;
        Ok(EngineProcess {
            child,
            listen,
            log: log.to_owned(),
            spawned,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error if the engine has exited, with the end of its log.
    fn check_alive(&mut self) -> Result<(), BoxError> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(format!(
                "the engine exited ({status}); the end of {}:\n{}",
                self.log.display(),
                log_tail(&self.log, 20)
            )
            .into()),
        }
    }

    /// The engine's `/metrics` text, or `None` while it does not answer.
    fn metrics(&self) -> Option<String> {
        http_get(&self.listen, "/metrics")
    }

    /// Waits until the metrics endpoint answers.
    fn wait_until_serving(&mut self, timeout: Duration) -> Result<(), BoxError> {
        let deadline = Instant::now() + timeout;
        while self.metrics().is_none() {
            self.check_alive()?;
            if Instant::now() >= deadline {
                return Err(format!("the engine did not serve /metrics within {timeout:?}").into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// SIGKILL, then reaps the process.
    fn kill(&mut self) -> Result<(), BoxError> {
        if self.child.try_wait()?.is_none() {
            self.child.kill()?;
        }
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// This executable, to run as the engine. On Linux `/proc/self/exe`, which
/// still runs this very binary after its file was rebuilt in place (the
/// path `current_exe` reports then no longer exists).
fn own_executable() -> Result<PathBuf, BoxError> {
    let proc_self = Path::new("/proc/self/exe");
    if proc_self.exists() {
        return Ok(proc_self.to_owned());
    }
    Ok(std::env::current_exe()?)
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A loopback address with a port that was free a moment ago.
fn free_local_address() -> Result<String, BoxError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.to_string())
}

/// A plain HTTP/1.1 GET; the body of a 200 answer, else `None`.
fn http_get(address: &str, path: &str) -> Option<String> {
    let address: std::net::SocketAddr = address.parse().ok()?;
    let mut stream =
        std::net::TcpStream::connect_timeout(&address, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// What the engine's metrics say, for the reports.
#[derive(Debug, Clone, Default)]
struct EngineFigures {
    readings_in: u64,
    transactions: u64,
    restarts: u64,
    /// Mean of each stage's latency histogram, in milliseconds.
    stage_mean_ms: BTreeMap<String, f64>,
}

impl EngineFigures {
    fn parse(exposition: &str) -> EngineFigures {
        let total = |name: &str| metric_total(exposition, name).unwrap_or(0.0) as u64;
        let sums = metric_samples(exposition, "scent_dataflow_stage_latency_seconds_sum");
        let counts = metric_samples(exposition, "scent_dataflow_stage_latency_seconds_count");
        let stage_mean_ms = sums
            .iter()
            .filter_map(|(labels, sum)| {
                let (_, count) = counts.iter().find(|(other, _)| other == labels)?;
                let stage = labels
                    .split(',')
                    .find_map(|label| label.strip_prefix("stage=\""))?
                    .trim_end_matches('"');
                (*count > 0.0).then(|| (stage.to_owned(), sum / count * 1_000.0))
            })
            .collect();
        EngineFigures {
            readings_in: total("scent_ingest_readings_total"),
            transactions: total("scent_output_transactions_total"),
            restarts: total("scent_engine_restarts_total"),
            stage_mean_ms,
        }
    }
}

// ---------------------------------------------------------------------------
// The MES side: a read_committed consumer of the engine's output.
// ---------------------------------------------------------------------------

/// An action as the watcher saw it arrive.
#[derive(Debug, Clone)]
struct SeenAction {
    action_id: String,
    kind: ActionKind,
    sealed: bool,
    batch: Option<String>,
    partition: i32,
    offset: i64,
    at: Instant,
}

#[derive(Debug, Default)]
struct Observed {
    actions: Vec<SeenAction>,
    dead_letters: u64,
    undecodable: u64,
}

fn watcher_group(settings: &KafkaSettings) -> String {
    format!("{}.watcher", settings.group_id)
}

/// Reads the actions and dead-letter topics from the beginning,
/// `read_committed`, on its own thread, noting when each record arrived.
struct OutputWatcher {
    observed: Arc<Mutex<Observed>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl OutputWatcher {
    fn start(settings: &KafkaSettings) -> Result<OutputWatcher, BoxError> {
        let topics = &settings.topics;
        let consumer: BaseConsumer = settings
            .client_config()
            .set("group.id", watcher_group(settings))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            // The broker answers a fetch as soon as committed data is
            // there; this bounds the wait when it does not say so.
            .set("fetch.wait.max.ms", "10")
            .create()?;
        let mut assignment = TopicPartitionList::new();
        for topic in [&topics.actions, &topics.dead_letters] {
            let partitions = partition_count(settings, topic, Duration::from_secs(30))?;
            for partition in 0..partitions {
                assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
            }
        }
        consumer.assign(&assignment)?;
        let observed = Arc::new(Mutex::new(Observed::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let observed = Arc::clone(&observed);
            let stop = Arc::clone(&stop);
            let actions_topic = topics.actions.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) else {
                        continue;
                    };
                    let at = Instant::now();
                    let mut observed = observed.lock().expect("watcher lock");
                    if message.topic() != actions_topic {
                        observed.dead_letters += 1;
                        continue;
                    }
                    match decode_action(&actions_topic, message.payload().unwrap_or_default()) {
                        Ok(action) => observed.actions.push(SeenAction {
                            action_id: action.action_id,
                            kind: action.kind,
                            sealed: action.sealed,
                            batch: action.batch,
                            partition: message.partition(),
                            offset: message.offset(),
                            at,
                        }),
                        Err(_) => observed.undecodable += 1,
                    }
                }
            })
        };
        Ok(OutputWatcher {
            observed,
            stop,
            thread: Some(thread),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Observed) -> T) -> T {
        f(&self.observed.lock().expect("watcher lock"))
    }

    /// Batches with a final (sealed) release decision, and dead letters.
    fn counts(&self) -> (usize, u64) {
        self.with(|observed| {
            let sealed = observed
                .actions
                .iter()
                .filter(|seen| seen.kind == ActionKind::BatchRelease && seen.sealed)
                .count();
            (sealed, observed.dead_letters)
        })
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for OutputWatcher {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------
// The live plant: a paced generator whose event time is the wall clock.
// ---------------------------------------------------------------------------

/// The sensors of every line of the live plant: two e-nose arrays and one
/// process sensor of each kind.
const LIVE_SENSORS: [(&str, SensorKind, f64); 7] = [
    ("enose-1", SensorKind::Enose, 1.0),
    ("enose-2", SensorKind::Enose, 1.0),
    ("temperature-1", SensorKind::Temperature, 90.0),
    ("humidity-1", SensorKind::Humidity, 45.0),
    ("pressure-1", SensorKind::Pressure, 101.3),
    ("ph-1", SensorKind::Ph, 5.2),
    ("flow-1", SensorKind::Flow, 12.0),
];

const LIVE_ENOSE_CHANNELS: usize = 16;
const LIVE_PRODUCTS: [&str; 2] = ["espresso", "decaf"];

/// Readings generated at most per pass of the generator loop, so batch
/// events stay on time while it catches up.
const MAX_READINGS_PER_PASS: u64 = 2_000;

/// Current time as epoch milliseconds.
fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// A batch end as the generator produced it.
#[derive(Debug, Clone)]
struct ProducedEnd {
    batch: String,
    ts_ms: i64,
    at: Instant,
    measured: bool,
}

/// What the measure tells the generator, and what it reports back.
#[derive(Debug, Default)]
struct GeneratorControl {
    stop: AtomicBool,
    /// Whether batch events are produced (off for the tail of a run, so
    /// every produced end can still be decided).
    batches: AtomicBool,
    /// Whether batch ends produced now are measured.
    measuring: AtomicBool,
    readings: AtomicU64,
    batch_events: AtomicU64,
    ends: Mutex<Vec<ProducedEnd>>,
}

/// The state of the live plant: one reading template per sensor, the
/// batch each line is in.
struct LivePlant {
    line_names: Vec<String>,
    templates: Vec<Reading>,
    keys: Vec<String>,
    /// Channel levels of every sensor, around which values are drawn.
    levels: Vec<Vec<f64>>,
    current: Vec<Option<(String, String)>>,
    rng: ChaCha8Rng,
}

impl LivePlant {
    fn new(lines: usize, plant: &str, seed: u64) -> LivePlant {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let line_names: Vec<String> = (1..=lines).map(|n| format!("L{n:03}")).collect();
        let mut templates = Vec::new();
        let mut keys = Vec::new();
        let mut levels = Vec::new();
        for line in &line_names {
            for (sensor, kind, level) in LIVE_SENSORS {
                let channels = if kind == SensorKind::Enose {
                    LIVE_ENOSE_CHANNELS
                } else {
                    1
                };
                levels.push(
                    (0..channels)
                        .map(|_| level * rng.random_range(0.8..1.2))
                        .collect(),
                );
                let reading = Reading {
                    plant: plant.to_owned(),
                    line: line.clone(),
                    sensor: sensor.to_owned(),
                    kind,
                    ts_ms: 0,
                    seq: 0,
                    batch: None,
                    product: None,
                    values: vec![0.0; channels],
                };
                keys.push(reading.key());
                templates.push(reading);
            }
        }
        LivePlant {
            current: vec![None; lines],
            line_names,
            templates,
            keys,
            levels,
            rng,
        }
    }

    fn sensors(&self) -> usize {
        self.templates.len()
    }

    /// The next reading of sensor `index` at `ts_ms`: within 0.3 % of its
    /// levels, uniformly (never an outlier, never a flat line), rounded to
    /// 1e-5 as a gateway would.
    fn reading(&mut self, index: usize, ts_ms: i64) -> (&str, &Reading) {
        let line = index / LIVE_SENSORS.len();
        let reading = &mut self.templates[index];
        reading.ts_ms = ts_ms;
        reading.seq += 1;
        match &self.current[line] {
            Some((batch, product)) => {
                reading.batch = Some(batch.clone());
                reading.product = Some(product.clone());
            }
            None => {
                reading.batch = None;
                reading.product = None;
            }
        }
        for (value, level) in reading.values.iter_mut().zip(&self.levels[index]) {
            let noisy = level * (1.0 + 0.003 * self.rng.random_range(-1.0..1.0));
            *value = (noisy * 1e5).round() / 1e5;
        }
        (&self.keys[index], reading)
    }

    /// The event of `phase` for batch `number` of `line` at `ts_ms`; the
    /// line's readings carry the batch from its start to its end.
    fn batch_event(
        &mut self,
        line: usize,
        phase: BatchPhase,
        number: u64,
        ts_ms: i64,
    ) -> BatchEvent {
        let name = &self.line_names[line];
        let event = BatchEvent {
            batch: format!("B-{name}-{number:05}"),
            line: name.clone(),
            product: LIVE_PRODUCTS[(line + number as usize) % LIVE_PRODUCTS.len()].to_owned(),
            event: phase,
            ts_ms,
        };
        self.current[line] = match phase {
            BatchPhase::Start => Some((event.batch.clone(), event.product.clone())),
            BatchPhase::End => None,
        };
        event
    }
}

/// The generator thread and its controls.
struct LiveGenerator {
    control: Arc<GeneratorControl>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl LiveGenerator {
    /// Starts producing `rate` readings per second over `rhythm.lines`
    /// lines, with batch events, to the input topics of `settings`.
    fn start(
        settings: &KafkaSettings,
        plant: &str,
        rhythm: BatchRhythm,
        rate: f64,
    ) -> Result<LiveGenerator, BoxError> {
        let producer = RecordProducer::new(settings)?;
        let control = Arc::new(GeneratorControl::default());
        control.batches.store(true, Ordering::Relaxed);
        let started = Instant::now();
        let thread = {
            let control = Arc::clone(&control);
            let topics = settings.topics.clone();
            let plant = LivePlant::new(rhythm.lines, plant, 1);
            std::thread::spawn(move || {
                generate(&producer, &topics, plant, rhythm, rate, started, &control)
                    .map_err(|error| error.to_string())
            })
        };
        Ok(LiveGenerator {
            control,
            thread: Some(thread),
        })
    }

    fn readings(&self) -> u64 {
        self.control.readings.load(Ordering::Relaxed)
    }

    /// Stops producing and waits for every record to be delivered.
    fn stop(&mut self) -> Result<(), BoxError> {
        self.control.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| "the generator thread panicked")?
                .map_err(BoxError::from),
            None => Ok(()),
        }
    }

    /// An error if the generator has stopped by itself.
    fn check(&mut self) -> Result<(), BoxError> {
        if self
            .thread
            .as_ref()
            .is_some_and(|thread| thread.is_finished())
        {
            self.stop()?;
            return Err("the generator stopped".into());
        }
        Ok(())
    }
}

impl Drop for LiveGenerator {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn generate(
    producer: &RecordProducer,
    topics: &Topics,
    mut plant: LivePlant,
    rhythm: BatchRhythm,
    rate: f64,
    started: Instant,
    control: &GeneratorControl,
) -> Result<(), BoxError> {
    let sensors = plant.sensors() as u64;
    let mut next_event = vec![0_u64; rhythm.lines];
    let mut sent = 0_u64;
    while !control.stop.load(Ordering::Relaxed) {
        let elapsed = started.elapsed();
        if control.batches.load(Ordering::Relaxed) {
            let elapsed_ms = elapsed.as_millis() as u64;
            for (line, next) in next_event.iter_mut().enumerate() {
                loop {
                    let (due_ms, phase, number) = rhythm.event(line, *next);
                    if due_ms > elapsed_ms {
                        break;
                    }
                    *next += 1;
                    let ts_ms = wall_clock_ms();
                    let event = plant.batch_event(line, phase, number, ts_ms);
                    let payload = encode_batch_event(&event);
                    let at = Instant::now();
                    producer.send(OutgoingRecord {
                        topic: &topics.batches,
                        key: Some(event.line.as_bytes()),
                        payload: &payload,
                        headers: &[],
                        timestamp_ms: None,
                    })?;
                    control.batch_events.fetch_add(1, Ordering::Relaxed);
                    if phase == BatchPhase::End {
                        control.ends.lock().expect("ends lock").push(ProducedEnd {
                            batch: event.batch,
                            ts_ms,
                            at,
                            measured: control.measuring.load(Ordering::Relaxed),
                        });
                    }
                }
            }
        }
        let due = readings_due(rate, elapsed);
        let pass_end = due.min(sent + MAX_READINGS_PER_PASS);
        let ts_ms = wall_clock_ms();
        while sent < pass_end {
            let (key, reading) = plant.reading((sent % sensors) as usize, ts_ms);
            let payload = encode_reading(reading);
            producer.send(OutgoingRecord {
                topic: &topics.readings,
                key: Some(key.as_bytes()),
                payload: &payload,
                headers: &[],
                timestamp_ms: None,
            })?;
            sent += 1;
        }
        control.readings.store(sent, Ordering::Relaxed);
        producer.poll();
        if let Some(error) = producer.take_failure() {
            return Err(error.into());
        }
        if sent >= due {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    producer.flush(Duration::from_secs(60))?;
    Ok(())
}

/// Sleeps for `duration` while checking the engine and the generator.
fn run_for(
    duration: Duration,
    engine: &mut EngineProcess,
    generator: &mut LiveGenerator,
) -> Result<(), BoxError> {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        engine.check_alive()?;
        generator.check()?;
        std::thread::sleep(
            Duration::from_millis(20).min(deadline.saturating_duration_since(Instant::now())),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// latency
// ---------------------------------------------------------------------------

fn latency(options: &LatencyOptions) -> Result<Value, BoxError> {
    if options.lines == 0 || options.batch_ms == 0 || options.rate <= 0.0 {
        return Err("--lines, --batch-ms and --rate must be positive".into());
    }
    let mut run = BenchRun::new("latency", &options.common)?;
    let config = run.engine_config("engine", run.topics(""), None);
    run.create_topics(&config)?;
    let config_path = run.write_config("engine", &config)?;
    let rhythm = BatchRhythm {
        lines: options.lines,
        batch_ms: options.batch_ms,
        changeover_ms: options.changeover_ms,
    };
    let sensors = options.lines * LIVE_SENSORS.len();
    eprintln!(
        "latency: {} lines x {} sensors at {:.0} readings/s ({:.1} Hz per sensor), {:.1} decisions/s; \
         epoch {} ms, allowed lateness {} ms",
        options.lines,
        LIVE_SENSORS.len(),
        options.rate,
        options.rate / sensors as f64,
        rhythm.decisions_per_second(),
        config.time.epoch_ms,
        config.time.allowed_lateness_ms,
    );

    let mut watcher = OutputWatcher::start(&config.kafka)?;
    let mut engine = EngineProcess::spawn(&config_path, &run.log_path("engine"))?;
    engine.wait_until_serving(Duration::from_secs(30))?;
    eprintln!("latency: engine pid {} serving; producing", engine.pid());
    let mut generator = LiveGenerator::start(
        &config.kafka,
        &config.quality_control.verdict.plant,
        rhythm,
        options.rate,
    )?;

    let warmup = Duration::from_secs_f64(options.warmup_seconds.max(0.0));
    let window = Duration::from_secs_f64(options.seconds.max(0.0));
    run_for(warmup, &mut engine, &mut generator)?;
    generator.control.measuring.store(true, Ordering::Relaxed);
    let window_started = Instant::now();
    let readings_at_window_start = generator.readings();
    let mut last_progress = Instant::now();
    while window_started.elapsed() < window {
        run_for(
            Duration::from_millis(200).min(window.saturating_sub(window_started.elapsed())),
            &mut engine,
            &mut generator,
        )?;
        if last_progress.elapsed() >= Duration::from_secs(5) {
            let seconds = window_started.elapsed().as_secs_f64();
            eprintln!(
                "latency: {:.0} s, {:.0} readings/s, {} actions seen",
                seconds,
                (generator.readings() - readings_at_window_start) as f64 / seconds.max(1e-9),
                watcher.counts().0
            );
            last_progress = Instant::now();
        }
    }
    let window_seconds = window_started.elapsed().as_secs_f64();
    let window_readings = generator.readings() - readings_at_window_start;
    generator.control.measuring.store(false, Ordering::Relaxed);
    generator.control.batches.store(false, Ordering::Relaxed);
    // Readings go on past the last batch end until its epoch can complete.
    let tail =
        Duration::from_millis(config.time.allowed_lateness_ms + 2 * config.time.epoch_ms + 1_000);
    run_for(tail, &mut engine, &mut generator)?;

    let ends: Vec<ProducedEnd> = generator
        .control
        .ends
        .lock()
        .expect("ends lock")
        .iter()
        .filter(|end| end.measured)
        .cloned()
        .collect();
    let decided_at = |watcher: &OutputWatcher| -> HashMap<String, Instant> {
        watcher.with(|observed| {
            // The first release decision of each batch (line holds and
            // maintenance orders may come earlier; revisions later).
            let mut first = HashMap::new();
            for seen in &observed.actions {
                if let (ActionKind::BatchRelease, Some(batch)) = (seen.kind, &seen.batch) {
                    first.entry(batch.clone()).or_insert(seen.at);
                }
            }
            first
        })
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut decided = decided_at(&watcher);
    while ends.iter().any(|end| !decided.contains_key(&end.batch)) && Instant::now() < deadline {
        run_for(Duration::from_millis(100), &mut engine, &mut generator)?;
        decided = decided_at(&watcher);
    }
    let figures = engine
        .metrics()
        .map(|text| EngineFigures::parse(&text))
        .unwrap_or_default();
    let engine_seconds = engine.spawned.elapsed().as_secs_f64();
    generator.stop()?;
    engine.kill()?;
    watcher.stop();

    let mut latencies = Vec::new();
    let mut beyond_bound = Vec::new();
    let mut bounds = Vec::new();
    for end in &ends {
        let Some(seen) = decided.get(&end.batch) else {
            continue;
        };
        let latency_ms = seen.saturating_duration_since(end.at).as_secs_f64() * 1_000.0;
        let bound_ms = decision_bound_ms(
            end.ts_ms,
            config.time.epoch_ms,
            config.time.allowed_lateness_ms,
        ) as f64;
        latencies.push(latency_ms);
        bounds.push(bound_ms);
        beyond_bound.push(latency_ms - bound_ms);
    }
    let undecided = ends.len() - latencies.len();
    let latency = summarize(&latencies);
    let achieved_rate = window_readings as f64 / window_seconds.max(1e-9);
    let target_p99_ms = 100.0;
    let met = latency.is_some_and(|l| l.p99 < target_p99_ms)
        && achieved_rate >= 0.95 * options.rate
        && undecided == 0;
    if let Some(l) = &latency {
        eprintln!(
            "latency: {} decisions, p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms at {:.0} readings/s \
             (event-time bound {:.0}..{:.0} ms); {} undecided",
            l.count,
            l.p50,
            l.p90,
            l.p99,
            l.max,
            achieved_rate,
            bounds.iter().copied().fold(f64::INFINITY, f64::min),
            bounds.iter().copied().fold(0.0, f64::max),
            undecided
        );
    }
    Ok(run.complete(json!({
        "measure": "latency",
        "run": run.id,
        "target": {"p99_ms": target_p99_ms, "readings_per_second": options.rate},
        "met": met,
        "config": config_report(&config),
        "plant": {
            "lines": options.lines,
            "sensors": sensors,
            "batch_ms": options.batch_ms,
            "changeover_ms": options.changeover_ms,
            "decisions_per_second": rhythm.decisions_per_second(),
        },
        "input": {
            "target_readings_per_second": options.rate,
            "achieved_readings_per_second": achieved_rate,
            "window_seconds": window_seconds,
            "window_readings": window_readings,
            "readings": generator.readings(),
            "batch_events": generator.control.batch_events.load(Ordering::Relaxed),
        },
        "decisions": {"measured": ends.len(), "undecided": undecided},
        "latency_ms": latency,
        "event_time_bound_ms": summarize(&bounds),
        "beyond_event_time_bound_ms": summarize(&beyond_bound),
        "engine": {
            "transactions": figures.transactions,
            "transactions_per_second": figures.transactions as f64 / engine_seconds.max(1e-9),
            "readings_in": figures.readings_in,
            "in_process_restarts": figures.restarts,
            "stage_latency_mean_ms": figures.stage_mean_ms,
        },
    })))
}

// ---------------------------------------------------------------------------
// recovery
// ---------------------------------------------------------------------------

fn recovery(options: &RecoveryOptions) -> Result<Value, BoxError> {
    if options.lines == 0 || options.batch_ms == 0 || options.rate <= 0.0 || options.kills == 0 {
        return Err("--lines, --batch-ms, --rate and --kills must be positive".into());
    }
    let mut run = BenchRun::new("recovery", &options.common)?;
    let config = run.engine_config("engine", run.topics(""), None);
    run.create_topics(&config)?;
    let config_path = run.write_config("engine", &config)?;
    let log = run.log_path("engine");
    let rhythm = BatchRhythm {
        lines: options.lines,
        batch_ms: options.batch_ms,
        changeover_ms: options.changeover_ms,
    };
    eprintln!(
        "recovery: {} lines at {:.0} readings/s, a decision every {:.0} ms; {} kills",
        options.lines,
        options.rate,
        1_000.0 / rhythm.decisions_per_second(),
        options.kills
    );
    let mut watcher = OutputWatcher::start(&config.kafka)?;
    let offsets: BaseConsumer = config.kafka.client_config().create()?;
    let action_partitions = partition_count(
        &config.kafka,
        &config.kafka.topics.actions,
        Duration::from_secs(30),
    )?;
    let mut engine = EngineProcess::spawn(&config_path, &log)?;
    let mut generator = LiveGenerator::start(
        &config.kafka,
        &config.quality_control.verdict.plant,
        rhythm,
        options.rate,
    )?;

    // Steady state first: decisions flowing.
    let first_deadline = Instant::now() + Duration::from_secs(60);
    while watcher.counts().0 == 0 {
        if Instant::now() >= first_deadline {
            return Err("no action within 60 s of the start".into());
        }
        run_for(Duration::from_millis(50), &mut engine, &mut generator)?;
    }
    let steady = Duration::from_millis(options.steady_ms);
    let mut kills = Vec::new();
    for kill in 1..=options.kills {
        run_for(steady, &mut engine, &mut generator)?;
        let readings_before = generator.readings();
        let killed_at = Instant::now();
        engine.kill()?;
        engine = EngineProcess::spawn(&config_path, &log)?;
        // Everything at or past these offsets was written after the kill:
        // the killed engine's records lie below them (its open transaction
        // is aborted when the new one initialises).
        let mut boundary = BTreeMap::new();
        for partition in 0..action_partitions {
            let (_, high) = offsets.fetch_watermarks(
                &config.kafka.topics.actions,
                partition,
                Duration::from_secs(10),
            )?;
            boundary.insert(partition, high);
        }
        let deadline = killed_at + Duration::from_secs(120);
        // Milestones of the new engine: its metrics endpoint answers (the
        // process is up), then it ingests its first reading (the sink is
        // fenced in, the progress read and the sources positioned).
        let mut serving_at = None;
        let mut ingesting_at = None;
        let recovered_at = loop {
            if ingesting_at.is_none() {
                if let Some(text) = engine.metrics() {
                    let now = Instant::now();
                    serving_at.get_or_insert(now);
                    if EngineFigures::parse(&text).readings_in > 0 {
                        ingesting_at = Some(now);
                    }
                }
            }
            let first_new = watcher.with(|observed| {
                observed
                    .actions
                    .iter()
                    .filter(|seen| seen.at > killed_at)
                    .filter(|seen| {
                        seen.offset >= boundary.get(&seen.partition).copied().unwrap_or(0)
                    })
                    .map(|seen| seen.at)
                    .min()
            });
            if let Some(at) = first_new {
                break at;
            }
            if Instant::now() >= deadline {
                return Err(format!("kill {kill}: no new action within 120 s").into());
            }
            run_for(Duration::from_millis(5), &mut engine, &mut generator)?;
        };
        let seconds = (recovered_at - killed_at).as_secs_f64();
        let after_kill = |at: Option<Instant>| at.map(|at| (at - killed_at).as_secs_f64());
        eprintln!(
            "recovery: kill {kill}/{}: first new action {:.2} s after the kill (serving after {:.2} s, \
             ingesting after {:.2} s; {} readings in the topic)",
            options.kills,
            seconds,
            after_kill(serving_at).unwrap_or(f64::NAN),
            after_kill(ingesting_at).unwrap_or(f64::NAN),
            readings_before
        );
        kills.push(json!({
            "seconds": seconds,
            "serving_after_seconds": after_kill(serving_at),
            "ingesting_after_seconds": after_kill(ingesting_at),
            "readings_before_kill": readings_before,
        }));
    }
    run_for(steady, &mut engine, &mut generator)?;
    generator.stop()?;
    engine.kill()?;
    watcher.stop();

    let (actions, duplicates, batches) = watcher.with(|observed| {
        let ids: BTreeSet<&str> = observed
            .actions
            .iter()
            .map(|a| a.action_id.as_str())
            .collect();
        let batches: BTreeSet<&str> = observed
            .actions
            .iter()
            .filter_map(|a| a.batch.as_deref())
            .collect();
        (
            observed.actions.len(),
            observed.actions.len() - ids.len(),
            batches.len(),
        )
    });
    let seconds: Vec<f64> = kills
        .iter()
        .filter_map(|kill| kill["seconds"].as_f64())
        .collect();
    let summary = summarize(&seconds);
    let target_seconds = 5.0;
    if let Some(s) = &summary {
        eprintln!(
            "recovery: p50 {:.2} s, p95 {:.2} s, max {:.2} s over {} kills; {} actions, {} duplicates",
            s.p50, s.p95, s.max, s.count, actions, duplicates
        );
    }
    Ok(run.complete(json!({
        "measure": "recovery",
        "run": run.id,
        "target": {"max_seconds": target_seconds},
        "met": summary.is_some_and(|s| s.max < target_seconds),
        "config": config_report(&config),
        "input": {
            "readings_per_second": options.rate,
            "lines": options.lines,
            "decisions_per_second": rhythm.decisions_per_second(),
            "readings": generator.readings(),
        },
        "recovery_seconds": summary,
        "kills": kills,
        "output": {
            "actions": actions,
            "distinct_batches": batches,
            "duplicate_action_ids": duplicates,
        },
    })))
}

// ---------------------------------------------------------------------------
// throughput and poison: a produced backlog, consumed to completion
// ---------------------------------------------------------------------------

/// What a run over a backlog must produce before it is complete.
#[derive(Debug, Clone, Copy)]
struct Expected {
    readings: u64,
    actions: usize,
    dead_letters: u64,
}

/// A run over a backlog, timed from the engine's start.
#[derive(Debug, Clone, Serialize)]
struct BacklogRun {
    label: String,
    delivery: Delivery,
    readings: u64,
    /// Engine start to every reading ingested and every output committed.
    seconds: f64,
    /// Engine start to the first reading ingested.
    startup_seconds: f64,
    /// Engine start to the last reading ingested.
    ingest_seconds: f64,
    /// Readings over `seconds`.
    readings_per_second: f64,
    /// Readings over `seconds - startup_seconds`: the consumption rate.
    readings_per_second_after_startup: f64,
    transactions: u64,
    /// In-process recoveries of the engine during the run (0 normally).
    in_process_restarts: u64,
    actions: usize,
    dead_letters: u64,
}

/// Runs the engine with `config` over a produced backlog until it has
/// ingested every reading and committed every expected action and dead
/// letter.
fn consume_backlog(
    run: &BenchRun,
    label: &str,
    config: &Config,
    expected: Expected,
) -> Result<BacklogRun, BoxError> {
    let config_path = run.write_config(label, config)?;
    let mut watcher = OutputWatcher::start(&config.kafka)?;
    let mut engine = EngineProcess::spawn(&config_path, &run.log_path(label))?;
    let deadline = engine.spawned + Duration::from_secs(900);
    let mut first_reading = None;
    let mut all_readings = None;
    let mut last_progress = Instant::now();
    let complete_at = loop {
        engine.check_alive()?;
        let figures = engine.metrics().map(|text| EngineFigures::parse(&text));
        let readings_in = figures.as_ref().map_or(0, |f| f.readings_in);
        let now = Instant::now();
        if readings_in > 0 {
            first_reading.get_or_insert(now);
        }
        if readings_in >= expected.readings {
            all_readings.get_or_insert(now);
        }
        let (actions, dead_letters) = watcher.counts();
        if all_readings.is_some()
            && actions >= expected.actions
            && dead_letters >= expected.dead_letters
        {
            break now;
        }
        if now >= deadline {
            return Err(format!(
                "{label}: incomplete after 900 s: {readings_in}/{} readings, {actions}/{} actions, \
                 {dead_letters}/{} dead letters",
                expected.readings, expected.actions, expected.dead_letters
            )
            .into());
        }
        if last_progress.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "{label}: {readings_in}/{} readings ingested, {actions}/{} actions, {dead_letters}/{} dead letters",
                expected.readings, expected.actions, expected.dead_letters
            );
            last_progress = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let figures = engine
        .metrics()
        .map(|text| EngineFigures::parse(&text))
        .unwrap_or_default();
    engine.kill()?;
    watcher.stop();
    let since_spawn = |at: Option<Instant>| {
        at.map_or(0.0, |at| {
            at.saturating_duration_since(engine.spawned).as_secs_f64()
        })
    };
    let seconds = since_spawn(Some(complete_at));
    let startup_seconds = since_spawn(first_reading);
    let (actions, dead_letters) = watcher.counts();
    let result = BacklogRun {
        label: label.to_owned(),
        delivery: config.kafka.delivery,
        readings: expected.readings,
        seconds,
        startup_seconds,
        ingest_seconds: since_spawn(all_readings),
        readings_per_second: expected.readings as f64 / seconds.max(1e-9),
        readings_per_second_after_startup: expected.readings as f64
            / (seconds - startup_seconds).max(1e-9),
        transactions: figures.transactions,
        in_process_restarts: figures.restarts,
        actions,
        dead_letters,
    };
    eprintln!(
        "{label}: {} readings in {:.2} s ({:.0} readings/s; {:.0}/s after a {:.2} s start), \
         {} transactions",
        result.readings,
        result.seconds,
        result.readings_per_second,
        result.readings_per_second_after_startup,
        result.startup_seconds,
        result.transactions
    );
    Ok(result)
}

/// Produces `plant` to the input topics of `settings` as fast as possible.
fn produce_backlog(
    label: &str,
    plant: &Plant,
    settings: &KafkaSettings,
) -> Result<Value, BoxError> {
    let started = Instant::now();
    let stats = produce(plant, settings, 0.0, &AtomicBool::new(false))?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "{label}: produced {} readings, {} batch events, {} malformed records in {:.1} s",
        stats.readings, stats.batch_events, stats.malformed, seconds
    );
    Ok(json!({
        "readings": stats.readings,
        "batch_events": stats.batch_events,
        "malformed": stats.malformed,
        "seconds": seconds,
    }))
}

/// The median of `values`, for reports over rounds.
fn median(values: &[f64]) -> Option<f64> {
    summarize(values).map(|summary| summary.p50)
}

/// Runs `variants` over `rounds` rounds, alternating their order so each
/// goes first equally often.
fn alternate<T>(
    rounds: usize,
    variants: &[T],
    mut run: impl FnMut(usize, &T) -> Result<BacklogRun, BoxError>,
) -> Result<Vec<Vec<BacklogRun>>, BoxError> {
    let mut by_variant: Vec<Vec<BacklogRun>> = variants.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds.max(1) {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..variants.len()).collect()
        } else {
            (0..variants.len()).rev().collect()
        };
        for index in order {
            by_variant[index].push(run(round, &variants[index])?);
        }
    }
    Ok(by_variant)
}

fn rates(runs: &[BacklogRun]) -> Vec<f64> {
    runs.iter()
        .map(|run| run.readings_per_second_after_startup)
        .collect()
}

fn throughput(options: &ThroughputOptions) -> Result<Value, BoxError> {
    let mut run = BenchRun::new("throughput", &options.common)?;
    let plant = Plant::new(sim_config(options.seed, options.readings, options.lines, 0))?;
    let truth = plant.ground_truth();
    let input = run.topics("");
    let input_config = run.engine_config("input", input.clone(), None);
    run.create_topics(&input_config)?;
    let produced = produce_backlog("throughput", &plant, &input_config.kafka)?;
    let expected = Expected {
        readings: plant.reading_count(),
        actions: truth.batches.len(),
        dead_letters: 0,
    };
    let modes = [
        ("exactly_once", Delivery::ExactlyOnce),
        ("at_least_once", Delivery::AtLeastOnce),
    ];
    let mut configs = Vec::new();
    for round in 0..options.rounds.max(1) {
        for (name, delivery) in modes {
            let label = format!("{name}-{round}");
            let mut topics = run.topics(&format!("{label}."));
            topics.readings.clone_from(&input.readings);
            topics.batches.clone_from(&input.batches);
            let config = run.engine_config(&label, topics, Some(delivery));
            run.create_topics(&config)?;
            configs.push((label, config));
        }
    }
    let by_mode = alternate(options.rounds, &[0, 1], |round, &mode| {
        let (label, config) = &configs[round * modes.len() + mode];
        consume_backlog(&run, label, config, expected)
    })?;
    let exactly_once = median(&rates(&by_mode[0])).unwrap_or(0.0);
    let at_least_once = median(&rates(&by_mode[1])).unwrap_or(0.0);
    let ratio = exactly_once / at_least_once.max(1e-9);
    eprintln!(
        "throughput: exactly once {exactly_once:.0} readings/s, at least once {at_least_once:.0} \
         readings/s, ratio {ratio:.3}"
    );
    Ok(run.complete(json!({
        "measure": "throughput",
        "run": run.id,
        "config": config_report(&run.base),
        "plant": {
            "seed": options.seed,
            "lines": options.lines,
            "readings": expected.readings,
            "batches": expected.actions,
        },
        "produced": produced,
        "readings_per_second": {
            "exactly_once": exactly_once,
            "at_least_once": at_least_once,
            "ratio_exactly_once_to_at_least_once": ratio,
        },
        "runs": by_mode.concat(),
    })))
}

fn poison(options: &PoisonOptions) -> Result<Value, BoxError> {
    if !(0.0..1.0).contains(&options.poison_fraction) {
        return Err("--poison-fraction must lie in [0, 1)".into());
    }
    let mut run = BenchRun::new("poison", &options.common)?;
    let malformed = (options.readings as f64 * options.poison_fraction).round() as usize;
    let clean = Plant::new(sim_config(options.seed, options.readings, options.lines, 0))?;
    let poisoned = Plant::new(sim_config(
        options.seed,
        options.readings,
        options.lines,
        malformed,
    ))?;
    if clean.reading_count() != poisoned.reading_count()
        || clean.ground_truth().batches.len() != poisoned.ground_truth().batches.len()
    {
        return Err("the clean and poisoned plants differ in their valid readings".into());
    }
    let classes: BTreeMap<String, usize> =
        poisoned
            .ground_truth()
            .malformed
            .iter()
            .fold(BTreeMap::new(), |mut counts, record| {
                *counts
                    .entry(record.expected_reason.code().to_owned())
                    .or_default() += 1;
                counts
            });
    // What the poison weighs: the oversized class alone carries a 70 kB
    // dump per record, so a small share of records can be a large share of
    // the bytes read (and written back to the dead-letter topic).
    let valid_bytes: u64 = clean
        .merged_stream()
        .map(|record| match record {
            SimRecord::Reading(reading) => encode_reading(&reading).len() as u64,
            _ => 0,
        })
        .sum();
    let malformed_bytes: u64 = poisoned
        .ground_truth()
        .malformed
        .iter()
        .map(|record| record.payload.len() as u64)
        .sum();
    let variants = [("clean", &clean), ("poisoned", &poisoned)];
    let mut inputs = Vec::new();
    let mut produced = serde_json::Map::new();
    for (name, plant) in variants {
        let input = run.topics(&format!("{name}."));
        let config = run.engine_config(&format!("{name}-input"), input.clone(), None);
        run.create_topics(&config)?;
        produced.insert(
            name.to_owned(),
            produce_backlog(&format!("poison {name}"), plant, &config.kafka)?,
        );
        inputs.push(input);
    }
    let mut configs = Vec::new();
    for round in 0..options.rounds.max(1) {
        for (index, (name, _)) in variants.iter().enumerate() {
            let label = format!("{name}-{round}");
            let mut topics = run.topics(&format!("{label}."));
            topics.readings.clone_from(&inputs[index].readings);
            topics.batches.clone_from(&inputs[index].batches);
            let config = run.engine_config(&label, topics, None);
            run.create_topics(&config)?;
            configs.push((label, config));
        }
    }
    let by_input = alternate(options.rounds, &[0, 1], |round, &index| {
        let (label, config) = &configs[round * variants.len() + index];
        let plant = variants[index].1;
        let expected = Expected {
            readings: plant.reading_count(),
            actions: plant.ground_truth().batches.len(),
            dead_letters: plant.ground_truth().malformed.len() as u64,
        };
        consume_backlog(&run, label, config, expected)
    })?;
    let clean_rate = median(&rates(&by_input[0])).unwrap_or(0.0);
    let poisoned_rate = median(&rates(&by_input[1])).unwrap_or(0.0);
    let difference = (poisoned_rate - clean_rate) / clean_rate.max(1e-9);
    eprintln!(
        "poison: clean {clean_rate:.0} valid readings/s, poisoned {poisoned_rate:.0} valid readings/s, \
         difference {:+.1} %",
        difference * 100.0
    );
    Ok(run.complete(json!({
        "measure": "poison",
        "run": run.id,
        "target": {"max_slowdown": 0.05},
        "met": difference >= -0.05,
        "config": config_report(&run.base),
        "plant": {
            "seed": options.seed,
            "lines": options.lines,
            "valid_readings": clean.reading_count(),
            "batches": clean.ground_truth().batches.len(),
            "malformed": malformed,
            "malformed_by_class": classes,
            "valid_reading_bytes": valid_bytes,
            "malformed_bytes": malformed_bytes,
            "malformed_share_of_bytes": malformed_bytes as f64
                / (valid_bytes + malformed_bytes).max(1) as f64,
        },
        "produced": produced,
        "valid_readings_per_second": {
            "clean": clean_rate,
            "poisoned": poisoned_rate,
            "relative_difference": difference,
        },
        "runs": by_input.concat(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), Some(50.0));
        assert_eq!(percentile(&values, 99.0), Some(99.0));
        assert_eq!(percentile(&values, 99.5), Some(100.0));
        assert_eq!(percentile(&values, 100.0), Some(100.0));
        assert_eq!(percentile(&values, 0.0), Some(1.0));
        assert_eq!(percentile(&[7.0], 90.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        // Ten values: p90 is the 9th, p95 and p99 the 10th.
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&ten, 90.0), Some(9.0));
        assert_eq!(percentile(&ten, 95.0), Some(10.0));
    }

    #[test]
    fn summaries_sort_their_input() {
        let summary = summarize(&[30.0, 10.0, 20.0, 40.0]).unwrap();
        assert_eq!(summary.count, 4);
        assert_eq!(summary.p50, 20.0);
        assert_eq!(summary.p99, 40.0);
        assert_eq!(summary.min, 10.0);
        assert_eq!(summary.max, 40.0);
        assert_eq!(summary.mean, 25.0);
        assert!(summarize(&[]).is_none());
    }

    #[test]
    fn pacing_is_due_count_at_elapsed_time() {
        assert_eq!(readings_due(50_000.0, Duration::ZERO), 0);
        assert_eq!(readings_due(50_000.0, Duration::from_millis(1)), 50);
        assert_eq!(readings_due(50_000.0, Duration::from_millis(1_500)), 75_000);
        // Partial readings are not due yet.
        assert_eq!(readings_due(3.0, Duration::from_millis(999)), 2);
        assert_eq!(readings_due(3.0, Duration::from_millis(1_000)), 3);
        assert_eq!(readings_due(-1.0, Duration::from_secs(1)), 0);
    }

    #[test]
    fn batch_rhythm_staggers_lines_and_alternates_phases() {
        let rhythm = BatchRhythm {
            lines: 50,
            batch_ms: 4_000,
            changeover_ms: 1_000,
        };
        assert_eq!(rhythm.period_ms(), 5_000);
        assert_eq!(rhythm.decisions_per_second(), 10.0);
        assert_eq!(rhythm.event(0, 0), (1_000, BatchPhase::Start, 1));
        assert_eq!(rhythm.event(0, 1), (5_000, BatchPhase::End, 1));
        assert_eq!(rhythm.event(0, 2), (6_000, BatchPhase::Start, 2));
        assert_eq!(rhythm.event(1, 1), (5_100, BatchPhase::End, 1));
        assert_eq!(
            rhythm.event(49, 3),
            (1_000 + 4_900 + 5_000 + 4_000, BatchPhase::End, 2)
        );
        // Over any whole period every line ends exactly one batch.
        let ends_in = |from: u64, to: u64| {
            (0..rhythm.lines)
                .flat_map(|line| (0..20).map(move |index| rhythm.event(line, index)))
                .filter(|(at, phase, _)| *phase == BatchPhase::End && (from..to).contains(at))
                .count()
        };
        assert_eq!(ends_in(20_000, 25_000), 50);
        assert_eq!(ends_in(20_000, 20_500), 5);
    }

    #[test]
    fn the_decision_bound_is_the_next_epoch_plus_the_lateness() {
        assert_eq!(decision_bound_ms(1_000, 50, 2_000), 2_050);
        assert_eq!(decision_bound_ms(1_049, 50, 2_000), 2_001);
        assert_eq!(decision_bound_ms(1_050, 50, 0), 50);
        assert_eq!(decision_bound_ms(1_795_514_400_123, 1_000, 0), 877);
    }

    #[test]
    fn metrics_are_read_by_exact_name_and_labels() {
        let exposition = "\
# HELP scent_output_transactions Output transactions committed.
# TYPE scent_output_transactions counter
scent_output_transactions_total 42
scent_ingest_readings_total 1000
scent_ingest_readings_total_extra 5
scent_dataflow_stage_latency_seconds_sum{stage=\"sink\"} 0.5
scent_dataflow_stage_latency_seconds_count{stage=\"sink\"} 100
scent_dataflow_stage_latency_seconds_sum{stage=\"verdict\"} 2.0
scent_dataflow_stage_latency_seconds_count{stage=\"verdict\"} 40
scent_ingest_rejected_total{stage=\"decode\",reason=\"invalid_json\"} 3
scent_ingest_rejected_total{stage=\"late\",reason=\"late\"} 4
# EOF
";
        assert_eq!(
            metric_total(exposition, "scent_output_transactions_total"),
            Some(42.0)
        );
        assert_eq!(
            metric_total(exposition, "scent_ingest_readings_total"),
            Some(1_000.0)
        );
        assert_eq!(
            metric_total(exposition, "scent_ingest_rejected_total"),
            Some(7.0)
        );
        assert_eq!(
            metric_total(exposition, "scent_engine_restarts_total"),
            None
        );
        let figures = EngineFigures::parse(exposition);
        assert_eq!(figures.transactions, 42);
        assert_eq!(figures.readings_in, 1_000);
        assert_eq!(figures.stage_mean_ms["sink"], 5.0);
        assert_eq!(figures.stage_mean_ms["verdict"], 50.0);
    }

    #[test]
    fn the_written_engine_config_loads_back_unchanged() {
        let mut config = Config::default();
        config.kafka.topics = prefixed_topics("bench-test.");
        config.kafka.group_id = "bench-test.engine".into();
        config.kafka.delivery = Delivery::AtLeastOnce;
        config.time.allowed_lateness_ms = 123;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.toml");
        std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
        let loaded = Config::load_with_env(Some(&path), Vec::new()).unwrap();
        assert_eq!(loaded, config);
    }

    #[test]
    fn live_readings_are_valid_and_carry_their_line_batch() {
        use scent_operators::validate::{validate_reading, ValidationRules};
        use scent_operators::wire::{decode_reading, DecodeLimits};
        let mut plant = LivePlant::new(2, "p1", 3);
        assert_eq!(plant.sensors(), 14);
        let start = plant.batch_event(1, BatchPhase::Start, 7, 1_795_514_400_000);
        assert_eq!(start.batch, "B-L002-00007");
        for index in 0..plant.sensors() {
            let (key, reading) = plant.reading(index, 1_795_514_400_010);
            assert_eq!(key, reading.key());
            let decoded = decode_reading(&encode_reading(reading), &DecodeLimits::default())
                .expect("a live reading decodes");
            validate_reading(&decoded, &ValidationRules::default()).expect("and is valid");
            let expected_batch = (index >= LIVE_SENSORS.len()).then(|| start.batch.clone());
            assert_eq!(decoded.batch, expected_batch, "sensor {index}");
            assert_eq!(decoded.seq, 1);
        }
        plant.batch_event(1, BatchPhase::End, 7, 1_795_514_404_000);
        let (_, after) = plant.reading(LIVE_SENSORS.len(), 1_795_514_404_001);
        assert_eq!(after.batch, None);
        assert_eq!(after.seq, 2);
    }
}
