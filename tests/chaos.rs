//! Exactly-once output across crashes. One seeded plant (200,000 readings
//! over three lines, 20 malformed records) is read by two `scent run`
//! processes over the same input topics, each with its own configuration
//! file, group id and output topics (actions, dead letters, progress):
//!
//! - The **subject** archives to PostgreSQL and runs under a supervisor while
//!   the plant is being produced (5,000 readings/s, about 40 s). The
//!   supervisor `kill -9`s it twelve times and restarts it at once, a seeded
//!   0.2-3 s after an incarnation started (it is then starting up or
//!   replaying) or, every other time while input remains, 0.2-3 s after its
//!   first commit (it is then writing new output). Early on, PostgreSQL is
//!   stopped and started under a running incarnation, which must go on
//!   committing while the archive waits. In the middle, under an incarnation
//!   that is committing new output, the broker is crash-restarted
//!   (`$SCENT_KAFKA_CTL restart`); the incarnation must recover in-process.
//!   The last incarnation runs until the output is complete and it has itself
//!   regenerated every action up to the committed frontier (its `/metrics`),
//!   so that a replay writing anything twice would show.
//! - The **oracle** starts once the plant is produced and the broker restart
//!   is over, and runs undisturbed over the complete input until every batch
//!   is decided and every malformed record is a dead letter.
//!
//! Then [`compare`] holds the subject's committed output (read with
//! `read_committed`: actions with kcat, dead letters with rdkafka) against
//! the oracle's: every action exactly once, by id, partition, key and payload
//! bytes; every dead letter exactly once, by source coordinates, original
//! bytes and headers; and per partition and key the same sequence. The
//! subject's archive must hold exactly the oracle's actions and dead letters
//! and every valid reading once. A summary (kills, recovery from each kill to
//! the next commit on the progress topic, the service restarts, counts) goes
//! to stderr; records that differ are reported with the incarnation that
//! wrote them.
//!
//! Needs `SCENT_KAFKA_BROKERS`, `SCENT_DATABASE_URL`, `SCENT_KAFKA_CTL`,
//! `SCENT_PG_CTL` and kcat, which `deploy/test.sh` provides with private
//! services. The test restarts the broker and the database server, so never
//! point it at services other people use. Without them it says why and
//! passes, unless `SCENT_REQUIRE_SERVICES=1`. `SCENT_CHAOS_SEED` chooses
//! another kill schedule. The engines' logs go to a temporary directory,
//! removed after a clean run and kept (and their tails printed) otherwise.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use scent::archive::Archive;
use scent::sim::{GroundTruth, Plant};
use scent::simulate::{produce, sim_config, ProduceStats};
use scent_kafka::admin::{create_topics, default_topics, partition_count};
use scent_kafka::codec::{decode_action, decode_dead_letter};
use scent_kafka::progress::ProgressRecord;
use scent_kafka::{KafkaSettings, Topics};
use scent_operators::model::ActionKind;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::{free_local_address, fresh_database, log_tail, metric_sum, Engine};

mod support;

/// Seed of the simulated plant.
const PLANT_SEED: u64 = 41;
/// Valid readings, lines and malformed records of the plant.
const READINGS: u64 = 200_000;
const LINES: usize = 3;
const MALFORMED: usize = 20;
/// Production pace: the plant takes about 40 s to produce, about as long
/// as the kills last, so most incarnations have new input to commit after
/// their replay (an incarnation needs a few seconds to start and replay
/// what came before).
const READINGS_PER_SECOND: f64 = 5_000.0;
/// Readings partitions of the input topic.
const READINGS_PARTITIONS: i32 = 4;
/// Kills of the subject (the broker restart comes after half of them).
const KILLS: usize = 12;
/// Life of an incarnation before it is killed, in ms.
const LIFETIME_MS: std::ops::RangeInclusive<u64> = 200..=3_000;
/// Kill schedule unless `SCENT_CHAOS_SEED` says otherwise.
const DEFAULT_CHAOS_SEED: u64 = 20_261_124;

// ---------------------------------------------------------------------------------------
// Services

/// Runs a service control script (`deploy/dev/kafka.sh`, `postgres.sh`)
/// with `verb`; returns how long it took.
fn control(script: &Path, verb: &str) -> Duration {
    let started = Instant::now();
    let output = Command::new(script)
        .arg(verb)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("{} {verb}: {error}", script.display()));
    assert!(
        output.status.success(),
        "{} {verb} failed ({}): {}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    started.elapsed()
}

/// Starts the database server again if the test ends while it is stopped.
struct DatabaseStopped<'a> {
    pg_ctl: &'a Path,
    stopped: bool,
}

impl DatabaseStopped<'_> {
    fn start(&mut self) -> Duration {
        self.stopped = false;
        control(self.pg_ctl, "start")
    }
}

impl Drop for DatabaseStopped<'_> {
    fn drop(&mut self) {
        if self.stopped {
            let _ = Command::new(self.pg_ctl).arg("start").output();
        }
    }
}

async fn drop_database(admin_url: &str, name: &str) {
    if let Ok(admin) = sqlx::PgPool::connect(admin_url).await {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&admin)
        .await;
        admin.close().await;
    }
}

// ---------------------------------------------------------------------------------------
// Engines

/// The output topics of one engine over the shared input topics.
fn engine_topics(input: &Topics, prefix: &str) -> Topics {
    Topics {
        readings: input.readings.clone(),
        batches: input.batches.clone(),
        actions: format!("{prefix}.actions"),
        dead_letters: format!("{prefix}.dlq"),
        progress: format!("{prefix}.progress"),
        models: input.models.clone(),
    }
}

/// Writes the configuration file of one engine: two workers, exactly-once
/// delivery (the default), `/metrics` on `listen` (empty: none), and the
/// archive if given.
fn write_config(
    path: &Path,
    brokers: &str,
    group_id: &str,
    topics: &Topics,
    listen: &str,
    database_url: Option<&str>,
) {
    let mut text = format!(
        "[engine]\nworkers = 2\n\n\
         [kafka]\nbrokers = \"{brokers}\"\ngroup_id = \"{group_id}\"\n\
         delivery = \"exactly_once\"\n\n\
         [kafka.topics]\nreadings = \"{}\"\nbatches = \"{}\"\nactions = \"{}\"\n\
         dead_letters = \"{}\"\nprogress = \"{}\"\n\n\
         [http]\nlisten = \"{listen}\"\n",
        topics.readings, topics.batches, topics.actions, topics.dead_letters, topics.progress
    );
    if let Some(url) = database_url {
        text.push_str(&format!(
            "\n[archive]\nenabled = true\ndatabase_url = \"{url}\"\n"
        ));
    }
    std::fs::write(path, text).expect("write the engine configuration");
}

/// One `scent run` process logging at `info` level, without colours, to
/// `log`; killed when dropped.
fn start_engine(config: &Path, log: PathBuf) -> Engine {
    let mut command = support::run_command(config);
    command.env("SCENT_LOG", "info").env("NO_COLOR", "1");
    Engine::spawn(command, Some(log))
}

/// Lines of a log file containing `needle`.
fn count_lines(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(needle))
        .count()
}

/// When the supervisor kills an incarnation: a random time after it
/// started (it is then starting up or replaying), or after its first
/// commit (it is then writing new output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillPoint {
    AfterStart,
    AfterFirstCommit,
}

/// A kill by the supervisor.
struct Kill {
    incarnation: usize,
    point: KillPoint,
    lifetime: Duration,
    at: Instant,
}

/// How long after its start an incarnation is certainly not committing
/// yet (starting takes over a second), while whatever its killed
/// predecessor still had in flight has landed.
const SETTLED_AFTER_START: Duration = Duration::from_millis(300);

/// Starts, kills and restarts the subject, and notices when it ends by
/// itself (which the engine should never do: it recovers in-process).
struct Supervisor {
    config: PathBuf,
    dir: PathBuf,
    commits: CommitWatch,
    current: Engine,
    incarnation: usize,
    /// When each incarnation started, in ms since the Unix epoch (to
    /// attribute output records to incarnations).
    started_ms: Vec<i64>,
    /// End offset of the progress topic shortly after each incarnation
    /// started: its own commits lie at or beyond it.
    progress_start: Vec<Option<i64>>,
    logs: Vec<PathBuf>,
    kills: Vec<Kill>,
    unexpected_exits: Vec<(usize, ExitStatus)>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

impl Supervisor {
    fn start(config: PathBuf, dir: PathBuf, commits: CommitWatch) -> Supervisor {
        let log = dir.join("subject-00.log");
        Supervisor {
            started_ms: vec![now_ms()],
            current: start_engine(&config, log.clone()),
            config,
            dir,
            commits,
            incarnation: 0,
            progress_start: vec![None],
            logs: vec![log],
            kills: Vec::new(),
            unexpected_exits: Vec::new(),
        }
    }

    fn spawn_next(&mut self) {
        self.incarnation += 1;
        self.progress_start.push(None);
        self.started_ms.push(now_ms());
        let log = self
            .dir
            .join(format!("subject-{:02}.log", self.incarnation));
        self.current = start_engine(&self.config, log.clone());
        self.logs.push(log);
    }

    /// The incarnation that was running at `ms` (ms since the Unix epoch).
    fn incarnation_at(&self, ms: i64) -> Option<usize> {
        self.started_ms.iter().rposition(|&started| started <= ms)
    }

    /// Notes where the current incarnation's commits will start, once it
    /// has run for [`SETTLED_AFTER_START`].
    fn note_progress_start(&mut self) {
        if self.progress_start[self.incarnation].is_none()
            && self.current.started().elapsed() >= SETTLED_AFTER_START
        {
            self.progress_start[self.incarnation] = self.commits.end_offset(Duration::from_secs(2));
        }
    }

    /// When the current incarnation's first commit was seen.
    fn first_commit(&self) -> Option<Instant> {
        self.progress_start[self.incarnation].and_then(|start| self.commits.first_seen_from(start))
    }

    /// Restarts the subject if it ended by itself.
    fn restart_if_exited(&mut self) {
        if let Some(status) = self.current.exited() {
            self.unexpected_exits.push((self.incarnation, status));
            self.spawn_next();
        }
    }

    /// Lets the subject run until `deadline`, calling `tick` about every
    /// 50 ms.
    fn run_until(&mut self, deadline: Instant, tick: &mut dyn FnMut()) {
        loop {
            self.restart_if_exited();
            self.note_progress_start();
            tick();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }

    /// `kill -9`, then a new incarnation at once.
    fn kill_and_restart(&mut self, point: KillPoint) {
        let lifetime = self.current.started().elapsed();
        let at = self.current.kill();
        self.kills.push(Kill {
            incarnation: self.incarnation,
            point,
            lifetime,
            at,
        });
        self.spawn_next();
    }
}

/// The engine's `/metrics` exposition, if it answers.
fn scrape_metrics(address: &str) -> Option<String> {
    use std::io::{Read, Write};
    let address: std::net::SocketAddr = address.parse().ok()?;
    let mut stream =
        std::net::TcpStream::connect_timeout(&address, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// What the running incarnation has regenerated, from its `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
struct Regenerated {
    /// Actions its dataflow emitted to the sink (suppressed or written).
    actions: f64,
    /// Its source frontier, in epochs.
    frontier: f64,
    /// Epochs its sink suppressed as committed before.
    suppressed_epochs: f64,
    /// Transactions it committed.
    transactions: f64,
}

fn regenerated(address: &str) -> Option<Regenerated> {
    let exposition = scrape_metrics(address)?;
    Some(Regenerated {
        actions: metric_sum(&exposition, "scent_dataflow_actions_total"),
        frontier: metric_sum(&exposition, "scent_dataflow_frontier_epoch"),
        suppressed_epochs: metric_sum(&exposition, "scent_output_suppressed_epochs_total"),
        transactions: metric_sum(&exposition, "scent_output_transactions_total"),
    })
}

/// The frontier of the last committed progress record.
fn committed_frontier(brokers: &str, topic: &str, reader: &str) -> Option<u64> {
    rdkafka_read(brokers, topic, reader)
        .iter()
        .filter_map(|record| ProgressRecord::decode(topic, &record.value).ok())
        .map(|record| record.frontier)
        .max()
}

// ---------------------------------------------------------------------------------------
// Reading the output topics

/// A record of an output topic.
#[derive(Debug, Clone)]
struct TopicRecord {
    partition: i32,
    offset: i64,
    /// The record's create time, ms since the Unix epoch.
    timestamp_ms: Option<i64>,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
}

/// Reads a topic to its end with kcat as a `read_committed` consumer. The
/// format gives key and value lengths, so any bytes survive.
fn kcat_read(brokers: &str, topic: &str) -> Vec<TopicRecord> {
    let output = Command::new("kcat")
        .args(["-b", brokers, "-C", "-t", topic, "-e", "-q"])
        .args(["-X", "isolation.level=read_committed"])
        .args(["-f", "%p %o %T %K %S\n%k%s"])
        .stdin(Stdio::null())
        .output()
        .expect("kcat runs");
    assert!(
        output.status.success(),
        "kcat {topic} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bytes = output.stdout;
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let end = at
            + bytes[at..]
                .iter()
                .position(|&b| b == b'\n')
                .expect("kcat record header ends in a newline");
        let header = std::str::from_utf8(&bytes[at..end]).expect("kcat header is text");
        let fields: Vec<i64> = header
            .split(' ')
            .map(|field| field.parse().expect("kcat header holds numbers"))
            .collect();
        let [partition, offset, timestamp, key_len, value_len] = fields[..] else {
            panic!("kcat header {header:?}");
        };
        at = end + 1;
        let key = usize::try_from(key_len).ok().map(|len| {
            let key = bytes[at..at + len].to_vec();
            at += len;
            key
        });
        let value_len = usize::try_from(value_len).unwrap_or(0);
        let value = bytes[at..at + value_len].to_vec();
        at += value_len;
        records.push(TopicRecord {
            partition: partition as i32,
            offset,
            timestamp_ms: (timestamp > 0).then_some(timestamp),
            key,
            value,
            headers: Vec::new(),
        });
    }
    records
}

/// Reads every partition of a topic to its end with rdkafka as a
/// `read_committed` consumer, headers included.
fn rdkafka_read(brokers: &str, topic: &str, group: &str) -> Vec<TopicRecord> {
    let settings = KafkaSettings {
        brokers: brokers.to_owned(),
        ..KafkaSettings::default()
    };
    let partitions = partition_count(&settings, topic, Duration::from_secs(30))
        .unwrap_or_else(|error| panic!("{topic}: {error}"));
    let consumer: BaseConsumer = settings
        .client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .expect("create a consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut open: BTreeSet<i32> = (0..partitions).collect();
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !open.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{topic}: partitions {open:?} not read to their end within 60 s"
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(message)) => records.push(TopicRecord {
                partition: message.partition(),
                offset: message.offset(),
                timestamp_ms: message.timestamp().to_millis(),
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().unwrap_or_default().to_vec(),
                headers: message
                    .headers()
                    .map(|headers| {
                        headers
                            .iter()
                            .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                open.remove(&partition);
            }
            // Transient: librdkafka retries.
            Some(Err(_)) => {}
        }
    }
    records
}

/// Batches with a committed sealed decision, and distinct dead-letter
/// coordinates, of an engine; the dead letters are read only once every
/// batch has sealed.
fn committed_counts(
    brokers: &str,
    topics: &Topics,
    reader: &str,
    batches: usize,
) -> (usize, usize) {
    let sealed: BTreeSet<String> = kcat_read(brokers, &topics.actions)
        .iter()
        .filter_map(|record| decode_action(&topics.actions, &record.value).ok())
        .filter(|action| action.kind == ActionKind::BatchRelease && action.sealed)
        .filter_map(|action| action.batch)
        .collect();
    if sealed.len() < batches {
        return (sealed.len(), 0);
    }
    let letters: BTreeSet<String> = rdkafka_read(brokers, &topics.dead_letters, reader)
        .iter()
        .map(|record| dead_letter_identity(&topics.dead_letters, record))
        .collect();
    (sealed.len(), letters.len())
}

/// Follows the subject's progress topic (`read_committed`): one record per
/// committed transaction, with the time it was seen.
struct CommitWatch {
    topic: String,
    seen: Arc<Mutex<Vec<(i64, Instant)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    metadata: BaseConsumer,
}

impl CommitWatch {
    fn start(brokers: &str, topic: &str, group: &str) -> CommitWatch {
        let settings = KafkaSettings {
            brokers: brokers.to_owned(),
            ..KafkaSettings::default()
        };
        let consumer: BaseConsumer = settings
            .client_config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()
            .expect("create the progress watcher");
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, 0, Offset::Beginning)
            .unwrap();
        consumer.assign(&assignment).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let seen = Arc::clone(&seen);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
                        seen.lock()
                            .unwrap()
                            .push((message.offset(), Instant::now()));
                    }
                }
            })
        };
        CommitWatch {
            topic: topic.to_owned(),
            seen,
            stop,
            thread: Some(thread),
            metadata: settings
                .client_config()
                .set("group.id", group)
                .create()
                .expect("create a metadata client"),
        }
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// The progress topic's end offset now.
    fn end_offset(&self, timeout: Duration) -> Option<i64> {
        self.metadata
            .fetch_watermarks(&self.topic, 0, timeout)
            .ok()
            .map(|(_, high)| high)
    }

    /// When the first committed record at or after `offset` was seen.
    fn first_seen_from(&self, offset: i64) -> Option<Instant> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .find(|(at, _)| *at >= offset)
            .map(|(_, seen)| *seen)
    }

    fn seen_between(&self, from: Instant, to: Instant) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, seen)| *seen >= from && *seen < to)
            .count()
    }
}

impl Drop for CommitWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The checker

/// One output record, reduced to what the comparison needs.
#[derive(Debug, Clone)]
struct Entry {
    /// What identifies the record across runs: the action id, or the dead
    /// letter's source coordinates.
    identity: String,
    /// Records in one group must come in the same order in both runs
    /// (partition and key); `None` where order means nothing (the archive).
    order_group: Option<String>,
    /// Everything else that must be equal, printable.
    content: String,
    /// Where the record came from, for the report only (never compared).
    note: String,
}

/// Bytes as printable text, exactly (non-ASCII bytes escaped).
fn printable(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

fn printable_key(key: Option<&[u8]>) -> String {
    key.map_or_else(|| "<none>".to_owned(), printable)
}

/// Actions of a topic: by id, ordered per partition and key, compared by
/// partition, key and payload bytes.
fn action_entries(
    topic: &str,
    records: &[TopicRecord],
    note: &dyn Fn(&TopicRecord) -> String,
) -> Vec<Entry> {
    records
        .iter()
        .map(|record| {
            let key = printable_key(record.key.as_deref());
            let identity = match decode_action(topic, &record.value) {
                Ok(action) => action.action_id,
                Err(error) => format!(
                    "<undecodable action at {}@{}: {error}>",
                    record.partition, record.offset
                ),
            };
            Entry {
                identity,
                order_group: Some(format!("partition {} key {key}", record.partition)),
                content: format!(
                    "partition {} key {key} value {}",
                    record.partition,
                    printable(&record.value)
                ),
                note: note(record),
            }
        })
        .collect()
}

fn header_value<'a>(record: &'a TopicRecord, name: &str) -> Option<&'a [u8]> {
    record
        .headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_slice())
}

/// The source coordinates a dead letter names in its headers.
fn dead_letter_identity(topic: &str, record: &TopicRecord) -> String {
    let part = |name: &str| {
        header_value(record, &format!("__scent.errors.{name}"))
            .map(printable)
            .unwrap_or_else(|| "?".to_owned())
    };
    match (part("topic"), part("partition"), part("offset")) {
        (source, partition, offset) if source != "?" && partition != "?" && offset != "?" => {
            format!("{source}/{partition}@{offset}")
        }
        _ => format!(
            "<dead letter without coordinates at {topic} {}@{}>",
            record.partition, record.offset
        ),
    }
}

/// Dead letters of a topic: by source coordinates, ordered per partition
/// and original key, compared by key, original bytes and every header.
fn dead_letter_entries(
    topic: &str,
    records: &[TopicRecord],
    note: &dyn Fn(&TopicRecord) -> String,
) -> Vec<Entry> {
    records
        .iter()
        .map(|record| {
            let key = printable_key(record.key.as_deref());
            let headers: Vec<String> = record
                .headers
                .iter()
                .map(|(name, value)| format!("{name}={}", printable(value)))
                .collect();
            Entry {
                identity: dead_letter_identity(topic, record),
                order_group: Some(format!("partition {} key {key}", record.partition)),
                content: format!(
                    "partition {} key {key} payload {} headers [{}]",
                    record.partition,
                    printable(&record.value),
                    headers.join("; ")
                ),
                note: note(record),
            }
        })
        .collect()
}

/// How one stream of a run differs from the expected one.
#[derive(Debug, Default)]
struct Comparison {
    stream: String,
    expected: usize,
    received: usize,
    /// Expected and never received.
    lost: Vec<String>,
    /// Received more than once: the identity and where each copy came from.
    duplicated: Vec<(String, Vec<String>)>,
    /// Received and never expected.
    unexpected: Vec<String>,
    /// Same identity, different content: (identity, expected, received).
    differing: Vec<(String, String, String)>,
    /// Groups whose sequence of identities differs: (group, expected, received).
    out_of_order: Vec<(String, Vec<String>, Vec<String>)>,
}

impl Comparison {
    fn is_exact(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.unexpected.is_empty()
            && self.differing.is_empty()
            && self.out_of_order.is_empty()
    }
}

fn shorten(text: &str) -> String {
    const LIMIT: usize = 600;
    if text.len() <= LIMIT {
        text.to_owned()
    } else {
        let mut end = LIMIT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}... ({} bytes)", &text[..end], text.len())
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} expected, {} received: {} lost, {} duplicated, {} unexpected, \
             {} differing, {} groups out of order",
            self.stream,
            self.expected,
            self.received,
            self.lost.len(),
            self.duplicated.len(),
            self.unexpected.len(),
            self.differing.len(),
            self.out_of_order.len()
        )?;
        const SHOWN: usize = 20;
        for id in self.lost.iter().take(SHOWN) {
            writeln!(f, "  lost: {id}")?;
        }
        for (id, copies) in self.duplicated.iter().take(SHOWN) {
            writeln!(
                f,
                "  duplicated ({} copies: {}): {id}",
                copies.len(),
                copies.join(", ")
            )?;
        }
        for id in self.unexpected.iter().take(SHOWN) {
            writeln!(f, "  unexpected: {id}")?;
        }
        for (id, expected, received) in self.differing.iter().take(SHOWN) {
            writeln!(f, "  differing: {id}")?;
            writeln!(f, "    expected: {}", shorten(expected))?;
            writeln!(f, "    received: {}", shorten(received))?;
        }
        for (group, expected, received) in self.out_of_order.iter().take(SHOWN) {
            writeln!(f, "  order of {group}:")?;
            writeln!(f, "    expected: {expected:?}")?;
            writeln!(f, "    received: {received:?}")?;
        }
        Ok(())
    }
}

/// Compares a run's records with the expected ones: each expected record
/// exactly once with equal content, nothing else, and within each order
/// group the same sequence. Should `expected` repeat an identity, its
/// first record is the reference.
fn compare(stream: &str, expected: &[Entry], received: &[Entry]) -> Comparison {
    let mut comparison = Comparison {
        stream: stream.to_owned(),
        expected: expected.len(),
        received: received.len(),
        ..Comparison::default()
    };
    let mut wanted: BTreeMap<&str, &Entry> = BTreeMap::new();
    for entry in expected {
        wanted.entry(entry.identity.as_str()).or_insert(entry);
    }
    let mut got: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
    for entry in received {
        got.entry(entry.identity.as_str()).or_default().push(entry);
    }
    for (identity, want) in &wanted {
        match got.get(identity) {
            None => comparison.lost.push(format!("{identity} ({})", want.note)),
            Some(copies) => {
                for copy in copies.iter().filter(|copy| copy.content != want.content) {
                    comparison.differing.push((
                        format!("{identity} ({})", copy.note),
                        want.content.clone(),
                        copy.content.clone(),
                    ));
                }
            }
        }
    }
    for (identity, copies) in &got {
        if copies.len() > 1 {
            comparison.duplicated.push((
                (*identity).to_owned(),
                copies.iter().map(|copy| copy.note.clone()).collect(),
            ));
        }
        if !wanted.contains_key(identity) {
            comparison.unexpected.push(format!(
                "{identity} ({}): {}",
                copies[0].note,
                shorten(&copies[0].content)
            ));
        }
    }
    let sequences = |entries: &[Entry]| {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for entry in entries {
            if let Some(group) = &entry.order_group {
                groups
                    .entry(group.clone())
                    .or_default()
                    .push(entry.identity.clone());
            }
        }
        groups
    };
    let (want_order, got_order) = (sequences(expected), sequences(received));
    let groups: BTreeSet<&String> = want_order.keys().chain(got_order.keys()).collect();
    for group in groups {
        let want = want_order.get(group).cloned().unwrap_or_default();
        let have = got_order.get(group).cloned().unwrap_or_default();
        if want != have {
            comparison.out_of_order.push((group.clone(), want, have));
        }
    }
    comparison
}

// ---------------------------------------------------------------------------------------
// Summary figures

fn seconds(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

/// min / median / max of some durations.
fn spread(durations: &[Duration]) -> String {
    if durations.is_empty() {
        return "none".to_owned();
    }
    let mut sorted = durations.to_vec();
    sorted.sort();
    format!(
        "min {}, median {}, max {}",
        seconds(sorted[0]),
        seconds(sorted[sorted.len() / 2]),
        seconds(sorted[sorted.len() - 1])
    )
}

/// The oracle: one engine over the complete input, started once the
/// plant is produced and the broker restart is over, stopped once its
/// output is complete.
struct Oracle {
    config: PathBuf,
    log: PathBuf,
    brokers: String,
    topics: Topics,
    reader: String,
    expected: (usize, usize),
    process: Option<Engine>,
    started: Option<Instant>,
    completed_after: Option<Duration>,
    ended_by_itself: Option<ExitStatus>,
    last_check: Option<Instant>,
}

impl Oracle {
    fn done(&self) -> bool {
        self.completed_after.is_some() || self.ended_by_itself.is_some()
    }

    /// Starts the oracle once `may_start`; then checks, at most once a
    /// second, whether its output is complete, and stops it when it is.
    fn tick(&mut self, may_start: bool) {
        if self.done() {
            return;
        }
        let Some(process) = &mut self.process else {
            if may_start {
                self.process = Some(start_engine(&self.config, self.log.clone()));
                self.started = Some(Instant::now());
            }
            return;
        };
        if let Some(status) = process.exited() {
            self.ended_by_itself = Some(status);
            self.process = None;
            return;
        }
        if self
            .last_check
            .is_some_and(|last| last.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.last_check = Some(Instant::now());
        let counts = committed_counts(&self.brokers, &self.topics, &self.reader, self.expected.0);
        if counts.0 >= self.expected.0 && counts.1 >= self.expected.1 {
            self.completed_after = self.started.map(|started| started.elapsed());
            self.process = None;
        }
    }
}

/// The broker restart: when, how long, under which incarnation, and how
/// long after it the incarnation committed again.
struct BrokerRestart {
    began: Duration,
    took: Duration,
    incarnation: usize,
    input_left: bool,
    recovered: Option<Duration>,
}

/// The plant, produced at a steady pace on a thread of its own.
struct Production {
    handle: Option<JoinHandle<Result<(ProduceStats, Duration), String>>>,
    result: Option<(ProduceStats, Duration)>,
}

impl Production {
    fn start(plant: Arc<Plant>, settings: KafkaSettings) -> Production {
        let handle = std::thread::spawn(move || {
            let started = Instant::now();
            produce(
                &plant,
                &settings,
                READINGS_PER_SECOND,
                &AtomicBool::new(false),
            )
            .map(|stats| (stats, started.elapsed()))
            .map_err(|error| error.to_string())
        });
        Production {
            handle: Some(handle),
            result: None,
        }
    }

    fn finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the end of production: what was produced, and how long it took.
    fn join(&mut self) -> (ProduceStats, Duration) {
        if let Some(handle) = self.handle.take() {
            let result = handle.join().expect("the producer thread panicked");
            self.result = Some(result.expect("produce the plant"));
        }
        self.result.expect("the plant was produced")
    }
}

// ---------------------------------------------------------------------------------------
// The test

#[test]
fn output_is_exactly_once_across_kills_and_service_restarts() {
    let Some([kafka_brokers, admin_database_url, kafka_ctl, pg_ctl]) = support::services(
        "output_is_exactly_once_across_kills_and_service_restarts",
        [
            "SCENT_KAFKA_BROKERS",
            "SCENT_DATABASE_URL",
            "SCENT_KAFKA_CTL",
            "SCENT_PG_CTL",
        ],
        true,
    ) else {
        return;
    };
    let (kafka_ctl, pg_ctl) = (PathBuf::from(kafka_ctl), PathBuf::from(pg_ctl));
    let chaos_seed = std::env::var("SCENT_CHAOS_SEED")
        .ok()
        .map(|seed| seed.parse().expect("SCENT_CHAOS_SEED is a number"))
        .unwrap_or(DEFAULT_CHAOS_SEED);
    let mut rng = ChaCha8Rng::seed_from_u64(chaos_seed);
    let test_started = Instant::now();
    let test_started_ms = now_ms();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let run_id = format!("chaos{}", std::process::id());
    let dir = tempfile::Builder::new()
        .prefix("scent-chaos-")
        .tempdir()
        .expect("create a temporary directory")
        .keep();
    let reader = format!("{run_id}-reader");
    let brokers = kafka_brokers.as_str();

    // Topics: shared input, and output topics of each engine.
    let input = scent::simulate::prefixed_topics(&format!("{run_id}."));
    let oracle_topics = engine_topics(&input, &format!("{run_id}.oracle"));
    let subject_topics = engine_topics(&input, &format!("{run_id}.subject"));
    for topics in [&oracle_topics, &subject_topics] {
        let settings = KafkaSettings {
            brokers: brokers.to_owned(),
            topics: topics.clone(),
            ..KafkaSettings::default()
        };
        runtime
            .block_on(create_topics(
                &settings,
                &default_topics(&settings, READINGS_PARTITIONS),
            ))
            .expect("create the topics");
    }
    let database_name = format!("scent_{run_id}");
    let database_url = runtime.block_on(fresh_database(&admin_database_url, &database_name));
    let oracle_config = dir.join("oracle.toml");
    let subject_listen = free_local_address();
    let subject_config = dir.join("subject.toml");
    write_config(
        &oracle_config,
        brokers,
        &format!("{run_id}-oracle"),
        &oracle_topics,
        "",
        None,
    );
    write_config(
        &subject_config,
        brokers,
        &format!("{run_id}-subject"),
        &subject_topics,
        &subject_listen,
        Some(&database_url),
    );

    // The plant, produced at a steady pace while the subject is killed.
    let plant = Arc::new(Plant::new(sim_config(PLANT_SEED, READINGS, LINES, MALFORMED)).unwrap());
    let truth: GroundTruth = plant.ground_truth().clone();
    let expected = (truth.batches.len(), truth.malformed.len());
    let mut production = Production::start(
        Arc::clone(&plant),
        KafkaSettings {
            brokers: brokers.to_owned(),
            topics: input.clone(),
            ..KafkaSettings::default()
        },
    );
    // The subject starts once input is flowing, so no partition starts
    // out idle.
    {
        let settings = KafkaSettings {
            brokers: brokers.to_owned(),
            ..KafkaSettings::default()
        };
        let consumer: BaseConsumer = settings.client_config().create().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while (0..READINGS_PARTITIONS).any(|partition| {
            consumer
                .fetch_watermarks(&input.readings, partition, Duration::from_secs(5))
                .map_or(true, |(_, high)| high == 0)
        }) {
            assert!(
                Instant::now() < deadline,
                "no readings on every partition of {} after 30 s",
                input.readings
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    let commits = CommitWatch::start(
        brokers,
        &subject_topics.progress,
        &format!("{run_id}-watch"),
    );
    let mut supervisor = Supervisor::start(subject_config, dir.clone(), commits);
    let mut oracle = Oracle {
        config: oracle_config,
        log: dir.join("oracle.log"),
        brokers: brokers.to_owned(),
        topics: oracle_topics.clone(),
        reader: reader.clone(),
        expected,
        process: None,
        started: None,
        completed_after: None,
        ended_by_itself: None,
        last_check: None,
    };
    let mut problems: Vec<String> = Vec::new();

    // PostgreSQL restart, early, while the subject reads live input: the
    // engine must keep running and committing while the archive waits.
    let first_life = Duration::from_millis(rng.random_range(300..=1_500));
    supervisor.run_until(supervisor.current.started() + first_life, &mut || {});
    let incarnation_before = supervisor.incarnation;
    let mut database = DatabaseStopped {
        pg_ctl: &pg_ctl,
        stopped: true,
    };
    let stop_took = control(&pg_ctl, "stop");
    let down_since = Instant::now();
    let commits_before = supervisor.commits.count();
    let outage_deadline = down_since + Duration::from_secs(20);
    while Instant::now() < outage_deadline
        && (down_since.elapsed() < Duration::from_secs(2)
            || supervisor.commits.count() == commits_before)
    {
        supervisor.run_until(Instant::now() + Duration::from_millis(100), &mut || {});
    }
    let database_down = down_since.elapsed();
    let commits_while_down = supervisor.commits.seen_between(down_since, Instant::now());
    let kept_running = supervisor.incarnation == incarnation_before;
    let start_took = database.start();
    if commits_while_down == 0 {
        problems.push(format!(
            "the subject committed nothing while PostgreSQL was down for {}",
            seconds(database_down)
        ));
    }
    if !kept_running {
        problems.push("the subject ended while PostgreSQL was down".to_owned());
    }

    // Kills, alternately soon after a start and soon after a first commit
    // (while there is new input to commit). In the middle, while the plant
    // is still being produced, the broker is crash-restarted under a
    // running incarnation, which must recover in-process.
    let mut broker_restart: Option<BrokerRestart> = None;
    let mut no_first_commit = 0;
    for kill in 0..KILLS {
        let may_start_oracle = broker_restart.is_some() && production.finished();
        let mut tick = || oracle.tick(may_start_oracle);
        let point = if kill == KILLS / 2 || (kill % 2 == 1 && !production.finished()) {
            KillPoint::AfterFirstCommit
        } else {
            KillPoint::AfterStart
        };
        let mut from = match point {
            KillPoint::AfterStart => supervisor.current.started(),
            KillPoint::AfterFirstCommit => {
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    if let Some(first) = supervisor.first_commit() {
                        break first;
                    }
                    if Instant::now() >= deadline {
                        no_first_commit += 1;
                        break Instant::now();
                    }
                    supervisor.run_until(Instant::now() + Duration::from_millis(50), &mut tick);
                }
            }
        };
        if kill == KILLS / 2 {
            let incarnation = supervisor.incarnation;
            let began = test_started.elapsed();
            let took = control(&kafka_ctl, "restart");
            let back = Instant::now();
            let input_left = !production.finished();
            let deadline = back + Duration::from_secs(60);
            let mut end = None;
            let mut recovered = None;
            while Instant::now() < deadline && supervisor.incarnation == incarnation {
                if end.is_none() {
                    end = supervisor.commits.end_offset(Duration::from_secs(2));
                }
                if let Some(seen) = end.and_then(|end| supervisor.commits.first_seen_from(end)) {
                    recovered = Some(seen.saturating_duration_since(back));
                    break;
                }
                supervisor.run_until(Instant::now() + Duration::from_millis(50), &mut || {});
            }
            let survived = supervisor.incarnation == incarnation;
            if !survived {
                problems.push(format!(
                    "subject incarnation {incarnation} ended after the broker restart"
                ));
            } else if input_left && recovered.is_none() {
                problems.push(format!(
                    "subject incarnation {incarnation} committed nothing within 60 s of the \
                     broker restart, with input left to process"
                ));
            }
            broker_restart = Some(BrokerRestart {
                began,
                took,
                incarnation,
                input_left,
                recovered,
            });
            from = Instant::now();
        }
        let life = Duration::from_millis(rng.random_range(LIFETIME_MS));
        supervisor.run_until(from + life, &mut || {
            oracle.tick(broker_restart.is_some() && production.finished())
        });
        supervisor.kill_and_restart(point);
    }
    let last_kill = supervisor.kills.last().expect("kills happened").at;

    // The last incarnation runs until the output is complete and it has
    // itself regenerated everything (every action through its sink, its
    // frontier at the committed one), so that anything a replay wrote
    // twice is on the topics when they are read; the oracle runs over the
    // complete input meanwhile.
    let (stats, production_time) = production.join();
    let completion_timeout = Duration::from_secs(180);
    let mut subject_counts = (0, 0);
    let mut subject_complete = None;
    let mut final_frontier = None;
    let mut replayed: Option<(Duration, Regenerated)> = None;
    let mut last_check = Instant::now();
    while last_kill.elapsed() < completion_timeout {
        supervisor.run_until(Instant::now() + Duration::from_millis(50), &mut || {
            oracle.tick(true)
        });
        if replayed.is_none() && last_check.elapsed() >= Duration::from_millis(500) {
            last_check = Instant::now();
            if subject_complete.is_none() {
                subject_counts = committed_counts(brokers, &subject_topics, &reader, expected.0);
                if subject_counts.0 >= expected.0 && subject_counts.1 >= expected.1 {
                    subject_complete = Some(last_kill.elapsed());
                    final_frontier = committed_frontier(brokers, &subject_topics.progress, &reader);
                }
            }
            if let (Some(_), Some(frontier)) = (subject_complete, final_frontier) {
                if let Some(seen) = regenerated(&subject_listen) {
                    if seen.actions >= expected.0 as f64 && seen.frontier >= frontier as f64 {
                        replayed = Some((last_kill.elapsed(), seen));
                    }
                }
            }
        }
        if replayed.is_some() && oracle.done() {
            break;
        }
    }
    // Whatever the last step regenerated is committed within moments.
    supervisor.run_until(Instant::now() + Duration::from_secs(2), &mut || {});
    if subject_complete.is_some() && replayed.is_none() {
        problems.push(format!(
            "the last incarnation had not regenerated all {} actions up to the committed \
             frontier {final_frontier:?} {} after the last kill (its metrics: {:?})",
            expected.0,
            seconds(completion_timeout),
            regenerated(&subject_listen)
        ));
    }
    if subject_complete.is_none() {
        problems.push(format!(
            "the subject's output was not complete {} after the last kill: {} of {} actions, \
             {} of {} dead letters",
            seconds(completion_timeout),
            subject_counts.0,
            expected.0,
            subject_counts.1,
            expected.1
        ));
    }
    if let Some(status) = oracle.ended_by_itself {
        problems.push(format!("the oracle ended by itself: {status}"));
    } else if oracle.completed_after.is_none() {
        problems.push("the oracle's output was not complete in time".to_owned());
    }
    oracle.process = None;

    // The archive catches up with what the subject committed.
    let archive_wait = Instant::now();
    let archive_deadline = archive_wait + Duration::from_secs(120);
    let (mut archived_readings, mut archived_actions, mut archived_letters) = (0, 0, 0);
    // Every committed action, revisions included.
    let committed_actions = kcat_read(brokers, &subject_topics.actions).len();
    let archive = runtime.block_on(async {
        let archive = Archive::connect(&database_url)
            .await
            .expect("connect to the archive");
        while Instant::now() < archive_deadline {
            archived_readings = archive.count_readings().await.unwrap_or(0) as u64;
            archived_actions = archive.actions().await.map_or(0, |a| a.len());
            archived_letters = archive.dead_letters().await.map_or(0, |d| d.len());
            if archived_readings >= stats.readings
                && archived_actions >= committed_actions
                && archived_letters >= expected.1
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        archive
    });
    let archive_caught_up = archive_wait.elapsed();
    supervisor.restart_if_exited();

    // Both runs' committed output, and the archive.
    let oracle_actions = kcat_read(brokers, &oracle_topics.actions);
    let oracle_letters = rdkafka_read(brokers, &oracle_topics.dead_letters, &reader);
    let subject_actions = kcat_read(brokers, &subject_topics.actions);
    let subject_letters = rdkafka_read(brokers, &subject_topics.dead_letters, &reader);
    let (archive_actions, archive_letters, archive_readings) = runtime.block_on(async {
        let actions = archive.actions().await.expect("read archived actions");
        let letters = archive
            .dead_letters()
            .await
            .expect("read archived dead letters");
        let readings = archive
            .count_readings()
            .await
            .expect("count archived readings");
        archive.close().await;
        (actions, letters, readings as u64)
    });
    let final_incarnation = supervisor.incarnation;
    supervisor.current.kill();

    // The oracle is the reference only if it is right itself.
    let from_oracle = |_: &TopicRecord| "oracle".to_owned();
    let written = |record: &TopicRecord| {
        let Some(ms) = record.timestamp_ms else {
            return format!("at {}@{}", record.partition, record.offset);
        };
        format!(
            "at {}@{}, written {:.1} s into the test by incarnation {}",
            record.partition,
            record.offset,
            (ms - test_started_ms) as f64 / 1000.0,
            supervisor
                .incarnation_at(ms)
                .map_or("?".to_owned(), |incarnation| incarnation.to_string())
        )
    };
    let oracle_action_entries =
        action_entries(&oracle_topics.actions, &oracle_actions, &from_oracle);
    let oracle_ids: BTreeSet<&str> = oracle_action_entries
        .iter()
        .map(|entry| entry.identity.as_str())
        .collect();
    let decided: BTreeSet<String> = oracle_actions
        .iter()
        .filter_map(|record| decode_action(&oracle_topics.actions, &record.value).ok())
        .filter(|action| action.kind == ActionKind::BatchRelease && action.sealed)
        .filter_map(|action| action.batch)
        .collect();
    let batches: BTreeSet<String> = truth.batches.iter().map(|b| b.batch.clone()).collect();
    if oracle_ids.len() != oracle_actions.len() || decided != batches {
        problems.push(format!(
            "the oracle is no reference: {} actions with {} distinct ids for {} batches, \
             batches with a sealed decision {} of {}",
            oracle_actions.len(),
            oracle_ids.len(),
            expected.0,
            decided.intersection(&batches).count(),
            batches.len()
        ));
    }
    let oracle_letter_entries =
        dead_letter_entries(&oracle_topics.dead_letters, &oracle_letters, &from_oracle);
    let mut oracle_payloads: Vec<&[u8]> =
        oracle_letters.iter().map(|r| r.value.as_slice()).collect();
    let mut malformed_payloads: Vec<&[u8]> = truth
        .malformed
        .iter()
        .map(|m| m.payload.as_slice())
        .collect();
    oracle_payloads.sort();
    malformed_payloads.sort();
    if oracle_payloads != malformed_payloads {
        problems.push(format!(
            "the oracle is no reference: its {} dead letters are not the plant's {} malformed \
             records",
            oracle_payloads.len(),
            malformed_payloads.len()
        ));
    }

    // Topics: the subject against the oracle.
    let action_comparison = compare(
        "actions",
        &oracle_action_entries,
        &action_entries(&subject_topics.actions, &subject_actions, &written),
    );
    let letter_comparison = compare(
        "dead letters",
        &oracle_letter_entries,
        &dead_letter_entries(&subject_topics.dead_letters, &subject_letters, &written),
    );

    // Archive: the subject's rows against the oracle's output.
    let expected_archived_actions: Vec<Entry> = oracle_actions
        .iter()
        .map(
            |record| match decode_action(&oracle_topics.actions, &record.value) {
                Ok(action) => Entry {
                    identity: action.action_id.clone(),
                    order_group: None,
                    content: format!("{action:?}"),
                    note: "oracle".to_owned(),
                },
                Err(error) => Entry {
                    identity: format!(
                        "<undecodable oracle action at {}@{}>",
                        record.partition, record.offset
                    ),
                    order_group: None,
                    content: error.to_string(),
                    note: "oracle".to_owned(),
                },
            },
        )
        .collect();
    let archived_action_entries: Vec<Entry> = archive_actions
        .iter()
        .map(|action| Entry {
            identity: action.action_id.clone(),
            order_group: None,
            content: format!("{action:?}"),
            note: "archive".to_owned(),
        })
        .collect();
    let expected_archived_letters: Vec<Entry> = oracle_letters
        .iter()
        .map(|record| {
            match decode_dead_letter(
                &oracle_topics.dead_letters,
                record.key.as_deref(),
                &record.value,
                &record.headers,
            ) {
                Ok(letter) => Entry {
                    identity: letter.record.source.to_string(),
                    order_group: None,
                    content: format!("{letter:?}"),
                    note: "oracle".to_owned(),
                },
                Err(error) => Entry {
                    identity: dead_letter_identity(&oracle_topics.dead_letters, record),
                    order_group: None,
                    content: format!("<undecodable: {error}>"),
                    note: "oracle".to_owned(),
                },
            }
        })
        .collect();
    let archived_letter_entries: Vec<Entry> = archive_letters
        .iter()
        .map(|row| match row.to_archived() {
            Ok(archived) => Entry {
                identity: archived.dead_letter.record.source.to_string(),
                order_group: None,
                content: format!("{:?}", archived.dead_letter),
                note: format!("archive row {}", row.id),
            },
            Err(error) => Entry {
                identity: row.source.to_string(),
                order_group: None,
                content: format!("<unreadable row {}: {error}>", row.id),
                note: format!("archive row {}", row.id),
            },
        })
        .collect();
    let archive_action_comparison = compare(
        "archived actions",
        &expected_archived_actions,
        &archived_action_entries,
    );
    let archive_letter_comparison = compare(
        "archived dead letters",
        &expected_archived_letters,
        &archived_letter_entries,
    );
    if archive_readings != stats.readings {
        problems.push(format!(
            "the archive holds {archive_readings} readings, the plant produced {} valid ones",
            stats.readings
        ));
    }

    // Summary.
    let lifetimes: Vec<Duration> = supervisor.kills.iter().map(|k| k.lifetime).collect();
    let mut recoveries = Vec::new();
    let mut killed_before_commit = 0;
    let mut schedule = Vec::new();
    for (index, kill) in supervisor.kills.iter().enumerate() {
        let next_kill = supervisor.kills.get(index + 1).map(|k| k.at);
        let restarted = supervisor.progress_start[kill.incarnation + 1];
        let recovery = match restarted.map(|start| supervisor.commits.first_seen_from(start)) {
            None => "end offset of the progress topic unknown".to_owned(),
            Some(Some(seen)) if next_kill.is_none_or(|next| seen < next) => {
                let recovery = seen.saturating_duration_since(kill.at);
                recoveries.push(recovery);
                format!("next commit {} later", seconds(recovery))
            }
            Some(_) => {
                killed_before_commit += 1;
                "no commit before the next kill".to_owned()
            }
        };
        let point = match kill.point {
            KillPoint::AfterStart => "after start",
            KillPoint::AfterFirstCommit => "after its first commit",
        };
        schedule.push(format!(
            "  kill {index}: incarnation {} ({point}) lived {}; {recovery}",
            kill.incarnation,
            seconds(kill.lifetime)
        ));
    }
    let in_process_recoveries: usize = supervisor
        .logs
        .iter()
        .map(|log| count_lines(log, "recovering from committed progress"))
        .sum();
    let archive_retries: usize = supervisor
        .logs
        .iter()
        .map(|log| {
            count_lines(log, "archive commit failed")
                + count_lines(log, "archive database unavailable")
                + count_lines(log, "archive offsets unavailable")
        })
        .sum();
    eprintln!("---- chaos summary (chaos seed {chaos_seed}, plant seed {PLANT_SEED}) ----");
    eprintln!(
        "input: {} readings, {} batch events, {} malformed records produced in {} \
         ({READINGS_PER_SECOND} readings/s target)",
        stats.readings,
        stats.batch_events,
        stats.malformed,
        seconds(production_time)
    );
    eprintln!(
        "oracle: {} actions, {} dead letters, complete {} after its start over the whole input",
        oracle_actions.len(),
        oracle_letters.len(),
        oracle.completed_after.map_or("never".to_owned(), seconds)
    );
    eprintln!(
        "subject: {} incarnations, {} kills (lifetimes {}), {} ended by themselves, \
         {} in-process recoveries logged",
        final_incarnation + 1,
        supervisor.kills.len(),
        spread(&lifetimes),
        supervisor.unexpected_exits.len(),
        in_process_recoveries
    );
    eprintln!(
        "recovery, kill -> first commit of a later incarnation: {} measured ({}); \
         {killed_before_commit} kills followed by another kill before any commit",
        recoveries.len(),
        spread(&recoveries)
    );
    for line in &schedule {
        eprintln!("{line}");
    }
    if no_first_commit > 0 {
        eprintln!(
            "  ({no_first_commit} incarnations to be killed after their first commit had none \
             within 30 s and were killed anyway)"
        );
    }
    eprintln!(
        "PostgreSQL restart: stop {}, down {}, start {}; the subject committed {} \
         transactions meanwhile and {}; {} archive retries logged",
        seconds(stop_took),
        seconds(database_down),
        seconds(start_took),
        commits_while_down,
        if kept_running {
            "kept running"
        } else {
            "ended"
        },
        archive_retries
    );
    if let Some(restart) = &broker_restart {
        eprintln!(
            "broker restart: kill -9 and start took {}, {} after the test began, under \
             incarnation {} {} input left; {}",
            seconds(restart.took),
            seconds(restart.began),
            restart.incarnation,
            if restart.input_left {
                "with"
            } else {
                "without"
            },
            restart
                .recovered
                .map_or("no commit after it".to_owned(), |after| format!(
                    "it recovered in-process and committed {} after the broker was back",
                    seconds(after)
                ))
        );
    }
    if let Some((after, seen)) = replayed {
        eprintln!(
            "last incarnation: regenerated {} actions and reached the committed frontier {} \
             after the last kill; {} epochs suppressed, {} transactions of its own",
            seen.actions,
            seconds(after),
            seen.suppressed_epochs,
            seen.transactions
        );
    }
    eprintln!(
        "subject complete {} after the last kill; archive caught up {} later \
         ({archived_readings} readings, {archived_actions} actions, {archived_letters} dead \
         letters)",
        subject_complete.map_or("never".to_owned(), seconds),
        seconds(archive_caught_up)
    );
    let comparisons = [
        &action_comparison,
        &letter_comparison,
        &archive_action_comparison,
        &archive_letter_comparison,
    ];
    for comparison in comparisons {
        eprint!("{comparison}");
    }
    eprintln!("total {}", seconds(test_started.elapsed()));

    for (incarnation, status) in &supervisor.unexpected_exits {
        problems.push(format!(
            "subject incarnation {incarnation} ended by itself: {status}"
        ));
    }
    let exact = comparisons.iter().all(|comparison| comparison.is_exact());
    if !exact || !problems.is_empty() {
        eprintln!("---- logs kept in {} ----", dir.display());
        eprintln!("-- oracle.log --\n{}", log_tail(&oracle.log, 20));
        let mut shown: BTreeSet<usize> = supervisor
            .unexpected_exits
            .iter()
            .map(|(incarnation, _)| *incarnation)
            .collect();
        shown.extend(final_incarnation.saturating_sub(2)..=final_incarnation);
        for incarnation in shown {
            let log = &supervisor.logs[incarnation];
            eprintln!("-- {} --\n{}", log.display(), log_tail(log, 30));
        }
        let mut report = String::new();
        for problem in &problems {
            report.push_str(&format!("{problem}\n"));
        }
        for comparison in comparisons.iter().filter(|c| !c.is_exact()) {
            report.push_str(&comparison.to_string());
        }
        panic!(
            "the subject's output is not exactly the oracle's (logs in {}):\n{report}",
            dir.display()
        );
    }
    drop(supervisor);
    runtime.block_on(drop_database(&admin_database_url, &database_name));
    let _ = std::fs::remove_dir_all(&dir);
}
