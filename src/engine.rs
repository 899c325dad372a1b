//! `scent run`: the production entry point. Reads the input topics, runs
//! the quality-control dataflow on timely workers, writes actions and dead
//! letters to Kafka, archives to PostgreSQL, and serves `/metrics` and
//! `/health`, until SIGINT or SIGTERM.

use crate::api::metrics::EngineMetrics;
use crate::api::{self, Health};
use crate::config::Config;
use crate::runtime::{
    self, BoxError, OutputSink, RecordSource, RuntimeConfig, SinkFactory, SourceFactory,
};
use crate::sinks::MeteredKafkaSink;
use prometheus_client::registry::Registry;
use rdkafka::consumer::{BaseConsumer, Consumer};
use scent_kafka::admin::partition_count;
use scent_kafka::progress::read_committed_progress;
use scent_kafka::settings::StartFrom;
use scent_kafka::sink::{KafkaEpochSink, Resume};
use scent_kafka::source::KafkaSource;
use scent_kafka::{Delivery, KafkaError, KafkaSettings};
use scent_operators::model::InputStream;
use scent_operators::source_progress::{PartitionPosition, SourceAdvance};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A topic that does not exist will not appear by retrying.
fn missing_is_fatal(error: KafkaError) -> BoxError {
    match error {
        KafkaError::MissingTopic(_) => Box::new(Fatal(error.to_string())),
        other => Box::new(other),
    }
}

/// The input topics with their partition counts, as the source needs them.
pub fn input_partitions(
    settings: &KafkaSettings,
) -> Result<Vec<(InputStream, String, i32)>, BoxError> {
    let wait = Duration::from_secs(30);
    let readings =
        partition_count(settings, &settings.topics.readings, wait).map_err(missing_is_fatal)?;
    let batches =
        partition_count(settings, &settings.topics.batches, wait).map_err(missing_is_fatal)?;
    let models =
        partition_count(settings, &settings.topics.models, wait).map_err(missing_is_fatal)?;
    Ok(vec![
        (
            InputStream::Readings,
            settings.topics.readings.clone(),
            readings,
        ),
        (
            InputStream::Batches,
            settings.topics.batches.clone(),
            batches,
        ),
        (InputStream::Models, settings.topics.models.clone(), models),
    ])
}

/// A run of the dataflow over Kafka, ready to start: sources positioned at
/// the origin, the sink fenced and resumed, the replay script loaded.
pub struct Prepared {
    /// Sources of the workers.
    pub sources: SourceFactory,
    /// The sink (worker 0's only).
    pub sinks: SinkFactory,
    /// Committed source advances to replay, by worker.
    pub replay: Arc<BTreeMap<usize, Vec<SourceAdvance>>>,
}

/// A condition no restart can fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Fatal(pub String);

/// Prepares a run of `config` over Kafka: connects the sink (fencing any
/// older engine with the same group), reads the committed progress, and
/// positions the sources to replay it.
pub fn prepare(config: &Config, metrics: &EngineMetrics) -> Result<Prepared, BoxError> {
    let settings = &config.kafka;
    let (workers, epoch_ms) = (config.engine.workers, config.time.epoch_ms);
    let inputs = input_partitions(settings)?;
    let mut sink = KafkaEpochSink::new(settings, workers)?;
    let wait = Duration::from_millis(settings.transaction_timeout_ms);
    let committed = match settings.delivery {
        Delivery::ExactlyOnce => {
            read_committed_progress(settings, wait).map_err(missing_is_fatal)?
        }
        Delivery::AtLeastOnce => None,
    }
    .unwrap_or_default();
    if committed.transactions > 0 && committed.workers != workers {
        return Err(Box::new(Fatal(format!(
            "the committed progress on `{}` was made by {} workers; restart with \
             --workers {} (changing the worker count needs a new group id)",
            settings.topics.progress, committed.workers, committed.workers
        ))));
    }
    if committed.transactions > 0 && committed.epoch_ms != epoch_ms {
        return Err(Box::new(Fatal(format!(
            "the committed progress on `{}` counts epochs of {} ms; restart with \
             time.epoch_ms = {} (changing the epoch width needs a new group id)",
            settings.topics.progress, committed.epoch_ms, committed.epoch_ms
        ))));
    }
    let origin = resolve_origin(settings, &inputs, &committed.origin)?;
    if committed.transactions > 0 {
        tracing::info!(
            frontier = committed.frontier,
            transactions = committed.transactions,
            "resuming after committed progress"
        );
    }
    sink.resume(Resume {
        frontier: committed.frontier,
        workers,
        epoch_ms,
        origin: origin
            .iter()
            .map(|((topic, partition), next_offset)| PartitionPosition {
                topic: topic.clone(),
                partition: *partition,
                next_offset: *next_offset,
            })
            .collect(),
    });
    let source_settings = settings.clone();
    let sources: SourceFactory = Arc::new(move |worker, peers| {
        let source = KafkaSource::new(&source_settings, &inputs, worker, peers, &origin)?;
        Ok(Box::new(source) as Box<dyn RecordSource>)
    });
    let sink = Mutex::new(Some(MeteredKafkaSink::new(sink, metrics.clone())));
    let sinks: SinkFactory = Arc::new(move |_worker| {
        let sink = sink
            .lock()
            .expect("sink lock")
            .take()
            .ok_or("the Kafka sink of a run is created once")?;
        Ok(Box::new(sink) as Box<dyn OutputSink>)
    });
    Ok(Prepared {
        sources,
        sinks,
        replay: Arc::new(committed.advances),
    })
}

/// The offset every input partition is read from: where the committed run
/// began, or, for partitions it never read, the oldest or newest retained
/// offset. Replay needs the committed origin to still be retained.
fn resolve_origin(
    settings: &KafkaSettings,
    inputs: &[(InputStream, String, i32)],
    committed: &BTreeMap<(String, i32), i64>,
) -> Result<BTreeMap<(String, i32), i64>, BoxError> {
    let consumer: BaseConsumer = settings.client_config().create()?;
    let mut origin = BTreeMap::new();
    for (stream, topic, partitions) in inputs {
        for partition in 0..*partitions {
            let (low, high) =
                consumer.fetch_watermarks(topic, partition, Duration::from_secs(30))?;
            let key = (topic.clone(), partition);
            let start = match committed.get(&key) {
                Some(&start) if start < low => {
                    return Err(Box::new(Fatal(format!(
                        "{topic}/{partition}: the input from offset {start}, which the \
                         committed state was built from, is no longer retained (oldest \
                         offset {low}); state cannot be rebuilt exactly"
                    ))))
                }
                Some(&start) => start,
                // Models are read whole whatever the start: the compacted
                // topic is the current set of models.
                None => match (stream, settings.start_from) {
                    (InputStream::Models, _) | (_, StartFrom::Earliest) => low,
                    (_, StartFrom::Latest) => high,
                },
            };
            origin.insert(key, start);
        }
    }
    Ok(origin)
}

/// Runs the engine with `config` until a shutdown signal.
pub fn run(config: Config) -> Result<(), BoxError> {
    let mut registry = Registry::with_prefix("scent");
    let metrics = EngineMetrics::register(&mut registry);
    let health = Arc::new(Health::default());
    let shutdown = Arc::new(AtomicBool::new(false));

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("scent-io")
        .build()?;

    let archive_metrics = crate::archiver::ArchiveMetrics::register(&mut registry);
    let registry = Arc::new(registry);
    if !config.http.listen.is_empty() {
        let router = api::router(Arc::clone(&registry), Arc::clone(&health));
        let listen = config.http.listen.clone();
        let health = Arc::clone(&health);
        tokio.spawn(async move {
            if let Err(error) = api::serve(&listen, router).await {
                tracing::error!(%error, %listen, "metrics endpoint failed");
                health.fail(format!("metrics endpoint: {error}"));
            }
        });
    }
    {
        let shutdown = Arc::clone(&shutdown);
        tokio.spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested");
            shutdown.store(true, Ordering::Relaxed);
        });
    }
    if config.archive.enabled {
        let archive_config = config.archive.clone();
        let kafka = config.kafka.clone();
        let ingest = config.ingest.clone();
        let shutdown = Arc::clone(&shutdown);
        let health = Arc::clone(&health);
        tokio.spawn(async move {
            let result = crate::archiver::run_archiver(
                archive_config,
                kafka,
                ingest,
                archive_metrics,
                shutdown,
            )
            .await;
            if let Err(error) = result {
                tracing::error!(%error, "archiver stopped");
                health.fail(format!("archiver: {error}"));
            }
        });
    }

    tracing::info!(
        workers = config.engine.workers,
        brokers = %config.kafka.brokers,
        delivery = ?config.kafka.delivery,
        "engine starting"
    );
    let result = run_with_restarts(&config, &metrics, &shutdown);
    if let Err(error) = &result {
        health.fail(error.to_string());
    }
    shutdown.store(true, Ordering::Relaxed);
    tokio.shutdown_timeout(Duration::from_secs(10));
    tracing::info!("engine stopped");
    result
}

/// Runs the dataflow until shutdown; after a failure (a broker outage, a
/// fenced or aborted transaction) recovers from the committed progress and
/// runs again, backing off from 0.5 s to 10 s. Only [`Fatal`] conditions
/// end the engine.
fn run_with_restarts(
    config: &Config,
    metrics: &EngineMetrics,
    shutdown: &Arc<AtomicBool>,
) -> Result<(), BoxError> {
    let mut backoff = Duration::from_millis(500);
    loop {
        let started = Instant::now();
        let outcome = prepare(config, metrics).and_then(|prepared| {
            let mut runtime = RuntimeConfig::from_config(config);
            runtime.replay = prepared.replay;
            runtime::run(
                runtime,
                prepared.sources,
                prepared.sinks,
                metrics.clone(),
                Arc::clone(shutdown),
            )
            .map_err(BoxError::from)
        });
        let error = match outcome {
            Ok(()) => return Ok(()),
            Err(error) if is_fatal(error.as_ref()) => return Err(error),
            Err(error) => error,
        };
        if shutdown.load(Ordering::Relaxed) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_millis(500);
        }
        tracing::error!(%error, retry_in = ?backoff, "engine failed; recovering from committed progress");
        metrics.engine_restarts.inc();
        let deadline = Instant::now() + backoff;
        while Instant::now() < deadline && !shutdown.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Whether `error` or any error it wraps is [`Fatal`].
fn is_fatal(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<Fatal>() {
            return true;
        }
        current = error.source();
    }
    false
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = match signal(SignalKind::terminate()) {
            Ok(stream) => stream,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
