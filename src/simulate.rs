//! `scent simulate`: the deterministic plant to Kafka topics or files, at
//! a target rate or as fast as possible; and the broker path of
//! `scent demo --kafka`.

use crate::api::metrics::EngineMetrics;
use crate::demo::{engine_config, run_with_progress, DemoOptions, DemoReport, TeeSink};
use crate::runtime::{BoxError, OutputSink, SinkFactory};
use crate::sim::{Plant, SimConfig, SimRecord};
use crate::sinks::Collected;
use clap::Args;
use prometheus_client::registry::Registry;
use scent_kafka::admin::{create_topics, default_topics};
use scent_kafka::producer::{OutgoingRecord, RecordProducer};
use scent_kafka::{KafkaSettings, Topics};
use scent_operators::wire::{encode_batch_event, encode_reading};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `scent simulate`.
#[derive(Debug, Clone, Args)]
pub struct SimulateOptions {
    /// Seed of the simulated plant.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Approximate number of valid readings.
    #[arg(long, default_value_t = 100_000)]
    pub readings: u64,
    /// Production lines.
    #[arg(long, default_value_t = 3)]
    pub lines: usize,
    /// Malformed records to inject into the readings.
    #[arg(long, default_value_t = 0)]
    pub malformed: usize,
    /// Write readings.jsonl, batches.jsonl, malformed.jsonl and
    /// ground-truth.json to DIR.
    #[arg(long, value_name = "DIR", conflicts_with = "kafka")]
    pub out: Option<PathBuf>,
    /// Produce to the Kafka broker at HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub kafka: Option<String>,
    /// Prefix of the topic names (`PREFIX` + `scent.readings` ...).
    #[arg(long, default_value = "")]
    pub topic_prefix: String,
    /// Create the topics first, with this many readings partitions.
    #[arg(long)]
    pub create_topics: Option<i32>,
    /// Target rate in readings per second; 0 is as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Also write the ground truth to FILE.
    #[arg(long, value_name = "FILE")]
    pub ground_truth: Option<PathBuf>,
}

/// Topic names with a prefix.
pub fn prefixed_topics(prefix: &str) -> Topics {
    let defaults = Topics::default();
    Topics {
        readings: format!("{prefix}{}", defaults.readings),
        batches: format!("{prefix}{}", defaults.batches),
        actions: format!("{prefix}{}", defaults.actions),
        dead_letters: format!("{prefix}{}", defaults.dead_letters),
        progress: format!("{prefix}{}", defaults.progress),
        models: format!("{prefix}{}", defaults.models),
    }
}

/// The simulator configuration for `readings` valid readings over
/// `lines` lines with `malformed` injected records.
pub fn sim_config(seed: u64, readings: u64, lines: usize, malformed: usize) -> SimConfig {
    let mut config = SimConfig {
        lines,
        ..SimConfig::for_readings(readings, seed)
    };
    config.malformed_count = malformed;
    let steps = readings.div_ceil(config.readings_per_step().max(1)).max(1);
    config.duration_ms = (steps as i64).saturating_mul(config.sample_interval_ms);
    config
}

fn plant_of(options: &SimulateOptions) -> Result<Plant, BoxError> {
    let config = sim_config(
        options.seed,
        options.readings,
        options.lines,
        options.malformed,
    );
    Ok(Plant::new(config)?)
}

/// Runs `scent simulate`.
pub fn run(options: SimulateOptions) -> Result<(), BoxError> {
    let plant = plant_of(&options)?;
    if let Some(path) = &options.ground_truth {
        std::fs::write(path, serde_json::to_vec_pretty(plant.ground_truth())?)?;
    }
    if let Some(dir) = &options.out {
        crate::sim::write_jsonl(&plant, dir)?;
        eprintln!("wrote the simulated plant to {}", dir.display());
        return Ok(());
    }
    let Some(brokers) = &options.kafka else {
        return Err("give --out DIR or --kafka HOST:PORT".into());
    };
    let settings = KafkaSettings {
        brokers: brokers.clone(),
        topics: prefixed_topics(&options.topic_prefix),
        ..KafkaSettings::default()
    };
    if let Some(partitions) = options.create_topics {
        block_on(create_topics(
            &settings,
            &default_topics(&settings, partitions),
        ))?;
    }
    let started = Instant::now();
    let stats = produce(&plant, &settings, options.rate, &AtomicBool::new(false))?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "produced {} readings, {} batch events, {} malformed records in {:.1} s ({:.0} records/s)",
        stats.readings,
        stats.batch_events,
        stats.malformed,
        seconds,
        stats.total() as f64 / seconds.max(1e-9)
    );
    Ok(())
}

/// Counts of produced records.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProduceStats {
    /// Valid readings.
    pub readings: u64,
    /// Batch lifecycle events.
    pub batch_events: u64,
    /// Malformed records.
    pub malformed: u64,
}

impl ProduceStats {
    /// All records.
    pub fn total(&self) -> u64 {
        self.readings + self.batch_events + self.malformed
    }
}

/// Produces the whole plant, in event-time order, at `rate` readings per
/// second (0: as fast as possible), and waits for every delivery.
pub fn produce(
    plant: &Plant,
    settings: &KafkaSettings,
    rate: f64,
    stop: &AtomicBool,
) -> Result<ProduceStats, BoxError> {
    produce_records(plant.merged_stream(), settings, rate, stop)
}

/// Produces `records` in the order given (readings and malformed records
/// keyed by `line/sensor`, batch events by line), at `rate` readings per
/// second (0: as fast as possible), and waits for every delivery.
pub fn produce_records(
    records: impl IntoIterator<Item = SimRecord>,
    settings: &KafkaSettings,
    rate: f64,
    stop: &AtomicBool,
) -> Result<ProduceStats, BoxError> {
    let producer = RecordProducer::new(settings)?;
    let mut stats = ProduceStats::default();
    let started = Instant::now();
    for record in records {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match &record {
            SimRecord::Reading(reading) => {
                let payload = encode_reading(reading);
                let key = reading.key();
                producer.send(OutgoingRecord {
                    topic: &settings.topics.readings,
                    key: Some(key.as_bytes()),
                    payload: &payload,
                    headers: &[],
                    timestamp_ms: None,
                })?;
                stats.readings += 1;
                if rate > 0.0 {
                    let due = Duration::from_secs_f64(stats.readings as f64 / rate);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
            }
            SimRecord::Batch(event) => {
                let payload = encode_batch_event(event);
                producer.send(OutgoingRecord {
                    topic: &settings.topics.batches,
                    key: Some(event.line.as_bytes()),
                    payload: &payload,
                    headers: &[],
                    timestamp_ms: None,
                })?;
                stats.batch_events += 1;
            }
            SimRecord::Malformed { key, payload, .. } => {
                producer.send(OutgoingRecord {
                    topic: &settings.topics.readings,
                    key: Some(key.as_bytes()),
                    payload,
                    headers: &[],
                    timestamp_ms: None,
                })?;
                stats.malformed += 1;
            }
        }
        producer.poll();
    }
    producer.flush(Duration::from_secs(60))?;
    Ok(stats)
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime always builds")
        .block_on(future)
}

/// `scent demo --kafka`: the demo plant produced to fresh topics, read by
/// the engine, decisions written to the actions topic.
pub fn run_demo_through_kafka(
    options: &DemoOptions,
    brokers: &str,
) -> Result<DemoReport, BoxError> {
    let plant = Arc::new(crate::demo::plant(options)?);
    let truth = plant.ground_truth().clone();
    let mut config = engine_config(options, &plant)?;
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    config.kafka.brokers = brokers.to_owned();
    config.kafka.topics = prefixed_topics(&format!("demo-{run_id}."));
    config.kafka.group_id = format!("scent-demo-{run_id}");
    block_on(create_topics(
        &config.kafka,
        &default_topics(&config.kafka, 4),
    ))?;
    eprintln!(
        "topics: demo-{run_id}.*, actions on {}",
        config.kafka.topics.actions
    );

    // Paced, the plant is produced while the engine runs, as in a plant.
    // Unpaced (`--speed 0`), it is produced first, so the run measures the
    // engine's end-to-end throughput through the broker alone.
    let stop = Arc::new(AtomicBool::new(false));
    let producer = if options.speed > 0.0 {
        let plant = Arc::clone(&plant);
        let settings = config.kafka.clone();
        let rate = options.speed * plant.readings_per_second();
        let stop = Arc::clone(&stop);
        Some(std::thread::spawn(move || {
            produce(&plant, &settings, rate, &stop).map_err(|e| e.to_string())
        }))
    } else {
        let started = Instant::now();
        let stats = produce(&plant, &config.kafka, 0.0, &stop)?;
        eprintln!(
            "produced {} records in {:.1} s ({:.0} records/s); now consuming",
            stats.total(),
            started.elapsed().as_secs_f64(),
            stats.total() as f64 / started.elapsed().as_secs_f64().max(1e-9)
        );
        None
    };

    let mut registry = Registry::with_prefix("scent");
    let metrics = EngineMetrics::register(&mut registry);
    let collected = Collected::default();
    let prepared = crate::engine::prepare(&config, &metrics)?;
    let (sources, kafka_sinks) = (prepared.sources, prepared.sinks);
    let copy = collected.clone();
    let sinks: SinkFactory = Arc::new(move |worker| {
        Ok(Box::new(TeeSink {
            inner: kafka_sinks(worker)?,
            copy: Box::new(copy.sink()),
        }) as Box<dyn OutputSink>)
    });

    // Stop once every batch is decided and every malformed record is a dead
    // letter, or after a generous timeout.
    // Also note when the last reading entered the dataflow: the run's
    // throughput, apart from the wait for the idle batch-event partition.
    let shutdown = Arc::new(AtomicBool::new(false));
    let expected = (truth.batches.len(), truth.malformed.len());
    let engine_started = Instant::now();
    let watcher = {
        let shutdown = Arc::clone(&shutdown);
        let collected = collected.clone();
        let metrics = metrics.clone();
        let readings = plant.reading_count();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            let mut ingested_after = None;
            loop {
                if ingested_after.is_none() && metrics.readings_in.get() >= readings {
                    ingested_after = Some(engine_started.elapsed());
                }
                let (actions, dead_letters) = collected.counts();
                let complete = actions >= expected.0 && dead_letters >= expected.1;
                if complete || Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            shutdown.store(true, Ordering::Relaxed);
            ingested_after
        })
    };
    let result = run_with_progress(
        &config,
        (sources, sinks),
        &metrics,
        truth.batches.len(),
        options.quiet,
        shutdown,
    );
    stop.store(true, Ordering::Relaxed);
    if let Some(producer) = producer {
        producer
            .join()
            .map_err(|_| "the producer thread panicked")??;
    }
    let elapsed = result?;
    let ingest_elapsed = watcher.join().map_err(|_| "the watcher thread panicked")?;
    Ok(DemoReport {
        output: collected.take_sorted(),
        truth,
        elapsed,
        ingest_elapsed,
        readings: metrics.readings_in.get(),
    })
}
