//! Overload: input arrives at Kafka several times faster than `scent run`
//! can process it, and the engine must neither run out of memory nor lose
//! anything.
//!
//! The engine (a child process, default configuration, two workers) is
//! started on empty topics; then a simulated plant of one million readings
//! is produced as fast as the producer goes. While the engine works off the
//! backlog, its resident memory (`VmRSS` of `/proc/PID/status`) is sampled
//! every 50 ms and its `/metrics` every 500 ms. The test asserts that
//!
//! 1. the peak resident memory stays under [`RSS_CAP_BYTES`];
//! 2. the backlog waited in Kafka, not in the engine: the consumer lag rose
//!    to a large share of the input, and the workers paused reading
//!    because too many records were in flight (backpressure);
//! 3. everything was processed in the end: one committed action per batch
//!    of the simulator's ground truth, with the decision it expects, and
//!    every valid reading counted in once.
//!
//! `scent::simulate::produce` encodes each record as it sends it; in a
//! debug build that runs at about 40 000 records/s, no faster than a debug
//! engine, so the test encodes the plant first (in the plant's order, with
//! the same keys) and then sends it with the same producer, which keeps the
//! input at several times the processing rate in debug and release builds
//! alike.
//!
//! Needs `SCENT_KAFKA_BROKERS` and `kcat`, which `deploy/test.sh` provides;
//! Linux for `/proc`. Without them the test says why and passes, unless
//! `SCENT_REQUIRE_SERVICES=1` (set by the test script).

use scent::sim::{Plant, SimRecord};
use scent::simulate::{prefixed_topics, sim_config};
use scent_kafka::producer::{OutgoingRecord, RecordProducer};
use scent_kafka::KafkaSettings;
use scent_operators::wire::{encode_batch_event, encode_reading};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{http_get, Engine, Metrics};

mod support;

/// Valid readings produced: three lines of seven sensors. A debug engine
/// works them off in about half a minute, a release engine in about ten
/// seconds; either way the producer is done within a few seconds.
const READINGS: u64 = 1_000_000;

/// The engine's resident memory must stay below this while one million
/// records wait for it.
///
/// What bounds it: each worker stops polling while
/// `engine.max_records_in_flight` (100 000) of its records sit in epochs
/// that have not completed (the rolling detectors keep an epoch's readings
/// until it completes), and each worker's consumer prefetches at most
/// librdkafka's `queued.max.messages.kbytes` (16 MiB, set by the Kafka
/// source) ahead of it; the rest of the backlog waits in Kafka. Measured on
/// a 2-core machine with two workers, in debug and release builds: peaks of
/// 280 to 340 MiB, about 40 % of it librdkafka's C heap (fetch buffers and
/// prefetched messages), the rest the Rust heap (records in flight, timely
/// buffers, allocator caches). The cap is half again the highest peak, and
/// below what holding the backlog would take: decoded, a reading occupies
/// about 400 bytes (the struct, its strings and values, its source
/// coordinates), some 380 MiB for the million on top of the working set.
const RSS_CAP_BYTES: u64 = 512 * 1024 * 1024;

/// How often the engine's resident memory is read.
const RSS_EVERY: Duration = Duration::from_millis(50);

/// How often `/metrics` is scraped.
const METRICS_EVERY: Duration = Duration::from_millis(500);

/// The whole plant, encoded: every record's topic, key and value, in the
/// order `scent::simulate::produce` sends them.
struct EncodedPlant {
    bytes: Vec<u8>,
    records: Vec<EncodedRecord>,
    readings: u64,
    batch_events: u64,
}

struct EncodedRecord {
    to_batches: bool,
    key: Range<usize>,
    payload: Range<usize>,
}

impl EncodedPlant {
    fn encode(plant: &Plant) -> EncodedPlant {
        let mut encoded = EncodedPlant {
            bytes: Vec::new(),
            records: Vec::new(),
            readings: 0,
            batch_events: 0,
        };
        for record in plant.merged_stream() {
            match record {
                SimRecord::Reading(reading) => {
                    encoded.push(false, reading.key().as_bytes(), &encode_reading(&reading));
                    encoded.readings += 1;
                }
                SimRecord::Batch(event) => {
                    encoded.push(true, event.line.as_bytes(), &encode_batch_event(&event));
                    encoded.batch_events += 1;
                }
                SimRecord::Malformed { .. } => panic!("the plant has no malformed records"),
            }
        }
        encoded
    }

    fn push(&mut self, to_batches: bool, key: &[u8], payload: &[u8]) {
        let key_at = self.bytes.len();
        self.bytes.extend_from_slice(key);
        let payload_at = self.bytes.len();
        self.bytes.extend_from_slice(payload);
        self.records.push(EncodedRecord {
            to_batches,
            key: key_at..payload_at,
            payload: payload_at..self.bytes.len(),
        });
    }

    /// Sends every record and waits for every delivery.
    fn produce(&self, settings: &KafkaSettings) {
        let producer = RecordProducer::new(settings).expect("create the producer");
        for record in &self.records {
            let topic = match record.to_batches {
                true => &settings.topics.batches,
                false => &settings.topics.readings,
            };
            producer
                .send(OutgoingRecord {
                    topic,
                    key: Some(&self.bytes[record.key.clone()]),
                    payload: &self.bytes[record.payload.clone()],
                    headers: &[],
                    timestamp_ms: None,
                })
                .expect("produce a record");
            producer.poll();
        }
        producer
            .flush(Duration::from_secs(120))
            .expect("every record is delivered");
        assert!(producer.take_failure().is_none(), "no delivery failed");
    }
}

/// Resident memory of process `pid` in bytes, `None` once it is gone.
fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kilobytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes * 1024)
}

/// What the sampler saw of the engine.
#[derive(Debug, Default)]
struct Observed {
    peak_rss_bytes: u64,
    rss_samples: usize,
    /// Largest consumer lag of the readings topic, summed over partitions.
    peak_readings_lag: f64,
    /// `(seconds since sampling began, readings ingested)` per scrape.
    ingested: Vec<(f64, f64)>,
    latest: Metrics,
}

impl Observed {
    /// Readings per second from the first ingested reading to the last.
    fn processing_rate(&self, total: f64) -> f64 {
        let first = self.ingested.iter().find(|(_, readings)| *readings > 0.0);
        let last = self
            .ingested
            .iter()
            .find(|(_, readings)| *readings >= total);
        match (first, last) {
            (Some((from, _)), Some((to, _))) if to > from => total / (to - from),
            _ => f64::NAN,
        }
    }
}

/// Samples the engine's memory and metrics until `stop` is set.
fn sample(pid: u32, listen: String, readings_topic: String, stop: Arc<AtomicBool>) -> Observed {
    let began = Instant::now();
    let mut observed = Observed::default();
    let mut last_scrape: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let Some(rss) = resident_bytes(pid) else {
            break;
        };
        observed.peak_rss_bytes = observed.peak_rss_bytes.max(rss);
        observed.rss_samples += 1;
        if last_scrape.is_none_or(|at| at.elapsed() >= METRICS_EVERY) {
            last_scrape = Some(Instant::now());
            let metrics = Metrics::scrape(&listen);
            observed.peak_readings_lag = observed.peak_readings_lag.max(metrics.sum(
                "scent_ingest_consumer_lag",
                &[("topic", readings_topic.as_str())],
            ));
            observed.ingested.push((
                began.elapsed().as_secs_f64(),
                metrics.sum("scent_ingest_readings_total", &[]),
            ));
            observed.latest = metrics;
        }
        std::thread::sleep(RSS_EVERY);
    }
    observed
}

/// Reads the actions topic with kcat, `read_committed`, one JSON value per
/// line.
fn kcat_actions(brokers: &str, topic: &str) -> Vec<serde_json::Value> {
    support::kcat_read(brokers, topic)
        .iter()
        .map(|(_, value)| serde_json::from_str(value).expect("actions are JSON"))
        .collect()
}

#[test]
fn a_backlog_waits_in_kafka_and_memory_stays_bounded() {
    let test = "a_backlog_waits_in_kafka_and_memory_stays_bounded";
    let Some([brokers]) = support::services(test, ["SCENT_KAFKA_BROKERS"], true) else {
        return;
    };
    if !Path::new("/proc/self/status").exists() {
        support::missing(test, "/proc");
        return;
    }
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let run_id = format!("overload-{}-{started}", std::process::id());
    let settings = KafkaSettings {
        brokers: brokers.clone(),
        group_id: run_id.clone(),
        topics: prefixed_topics(&format!("{run_id}.")),
        ..KafkaSettings::default()
    };
    let topics = &settings.topics;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("scent.toml");
    std::fs::write(
        &config,
        format!(
            r#"[kafka]
brokers = "{brokers}"
group_id = "{run_id}"

[kafka.topics]
readings = "{}"
batches = "{}"
actions = "{}"
dead_letters = "{}"
progress = "{}"
"#,
            topics.readings, topics.batches, topics.actions, topics.dead_letters, topics.progress
        ),
    )
    .unwrap();
    support::create_topics(&config, &brokers);

    let encoding = Instant::now();
    let plant = Plant::new(sim_config(23, READINGS, 3, 0)).unwrap();
    let truth = plant.ground_truth().clone();
    let encoded = EncodedPlant::encode(&plant);
    drop(plant);
    eprintln!(
        "encoded {} readings and {} batch events ({} MB) in {:.1} s",
        encoded.readings,
        encoded.batch_events,
        encoded.bytes.len() / 1_000_000,
        encoding.elapsed().as_secs_f64()
    );

    // The engine first, on empty topics, ready before the flood.
    let mut engine = Engine::start_isolated(&config, dir.path().join("engine.log"));
    let (status, health) = http_get(engine.listen(), "/health");
    assert_eq!(status, 200, "{health}");
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (pid, listen) = (engine.pid(), engine.listen().to_owned());
        let (readings_topic, stop) = (topics.readings.clone(), Arc::clone(&stop_sampling));
        std::thread::spawn(move || sample(pid, listen, readings_topic, stop))
    };

    let producing = Instant::now();
    encoded.produce(&settings);
    let produce_seconds = producing.elapsed().as_secs_f64();
    let (records, readings) = (encoded.records.len(), encoded.readings as f64);
    drop(encoded);
    let produce_rate = records as f64 / produce_seconds;
    eprintln!("produced {records} records in {produce_seconds:.1} s ({produce_rate:.0} records/s)");

    // Every batch decided and committed, every reading counted in.
    let deadline = Instant::now() + Duration::from_secs(240);
    let (actions, metrics) = loop {
        engine.assert_running();
        let metrics = Metrics::scrape(engine.listen());
        let ingested = metrics.sum("scent_ingest_readings_total", &[]);
        let actions = kcat_actions(&brokers, &topics.actions);
        let sealed = actions
            .iter()
            .filter(|a| a["kind"] == "batch_release" && a["sealed"] == true)
            .count();
        if sealed >= truth.batches.len() && ingested >= readings {
            break (actions, metrics);
        }
        assert!(
            Instant::now() < deadline,
            "after 240 s: {sealed} of {} batches sealed, {ingested} of {readings} readings ingested; \
             the engine's log ends:\n{}",
            truth.batches.len(),
            engine.log_tail()
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    stop_sampling.store(true, Ordering::Relaxed);
    let observed = sampler.join().expect("the sampler ends");
    engine.assert_running();
    let total_seconds = producing.elapsed().as_secs_f64();

    let processing_rate = observed.processing_rate(readings);
    let pauses = metrics.sum("scent_ingest_backpressure_pauses_total", &[]);
    eprintln!(
        "engine: peak RSS {:.0} MiB over {} samples (cap {} MiB), peak readings lag {:.0} records, \
         {pauses:.0} backpressure pauses, {processing_rate:.0} readings/s, \
         all {} batches decided {total_seconds:.1} s after the first record was sent",
        observed.peak_rss_bytes as f64 / 1_048_576.0,
        observed.rss_samples,
        RSS_CAP_BYTES / 1_048_576,
        observed.peak_readings_lag,
        truth.batches.len()
    );

    // 1. Bounded memory.
    assert!(
        observed.rss_samples >= 20,
        "memory was sampled throughout the run"
    );
    assert!(
        observed.peak_rss_bytes < RSS_CAP_BYTES,
        "peak RSS {} bytes exceeds the cap of {RSS_CAP_BYTES}",
        observed.peak_rss_bytes
    );

    // 2. The backlog waited in Kafka: lag rose to a large share of the
    //    input while the workers held back.
    assert!(
        observed.peak_readings_lag >= readings / 5.0,
        "consumer lag peaked at {} records: the backlog did not wait in Kafka",
        observed.peak_readings_lag
    );
    assert!(
        pauses > 0.0,
        "the workers never paused reading, so the in-flight bound was never reached"
    );

    // 3. Nothing lost, nothing doubled.
    assert_eq!(
        metrics.sum("scent_ingest_readings_total", &[]),
        readings,
        "every valid reading was ingested once"
    );
    assert_eq!(metrics.sum("scent_ingest_rejected_total", &[]), 0.0);
    assert_eq!(metrics.sum("scent_engine_restarts_total", &[]), 0.0);
    // Every action sent was committed once (revisions included), and each
    // batch has exactly one sealed decision.
    assert_eq!(
        metrics.sum("scent_dataflow_actions_total", &[]),
        actions.len() as f64
    );
    let ids: std::collections::BTreeSet<&str> = actions
        .iter()
        .map(|a| a["action_id"].as_str().expect("an id"))
        .collect();
    assert_eq!(ids.len(), actions.len(), "no action committed twice");
    let actions: Vec<&serde_json::Value> = actions
        .iter()
        .filter(|a| a["kind"] == "batch_release" && a["sealed"] == true)
        .collect();
    assert_eq!(
        actions.len(),
        truth.batches.len(),
        "one sealed decision per batch"
    );
    let decided: BTreeMap<&str, &str> = actions
        .iter()
        .map(|action| {
            (
                action["batch"]
                    .as_str()
                    .expect("batch releases name their batch"),
                action["decision"].as_str().expect("a decision"),
            )
        })
        .collect();
    assert_eq!(
        decided.len(),
        truth.batches.len(),
        "each batch decided once"
    );
    for batch in &truth.batches {
        assert_eq!(
            decided.get(batch.batch.as_str()).copied(),
            Some(batch.expected_decision.as_str()),
            "decision for {}",
            batch.batch
        );
    }
}
