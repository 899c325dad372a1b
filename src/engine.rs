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
use prometheus_client::registry::Registry;
use scent_kafka::admin::partition_count;
use scent_kafka::sink::KafkaEpochSink;
use scent_kafka::source::KafkaSource;
use scent_kafka::KafkaSettings;
use scent_operators::model::InputStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The input topics with their partition counts, as the source needs them.
pub fn input_partitions(
    settings: &KafkaSettings,
) -> Result<Vec<(InputStream, String, i32)>, BoxError> {
    let wait = Duration::from_secs(30);
    let readings = partition_count(settings, &settings.topics.readings, wait)?;
    let batches = partition_count(settings, &settings.topics.batches, wait)?;
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
    ])
}

/// Source and sink factories for Kafka.
pub fn kafka_factories(settings: &KafkaSettings) -> Result<(SourceFactory, SinkFactory), BoxError> {
    let inputs = input_partitions(settings)?;
    let source_settings = settings.clone();
    let sources: SourceFactory = Arc::new(move |worker, peers| {
        let source = KafkaSource::new(&source_settings, &inputs, worker, peers)?;
        Ok(Box::new(source) as Box<dyn RecordSource>)
    });
    let sink_settings = settings.clone();
    let sinks: SinkFactory = Arc::new(move |worker| {
        let sink = KafkaEpochSink::new(&sink_settings, worker)?;
        Ok(Box::new(sink) as Box<dyn OutputSink>)
    });
    Ok((sources, sinks))
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

    let (sources, sinks) = kafka_factories(&config.kafka)?;
    tracing::info!(
        workers = config.engine.workers,
        brokers = %config.kafka.brokers,
        "engine starting"
    );
    let result = runtime::run(
        RuntimeConfig::from_config(&config),
        sources,
        sinks,
        metrics,
        Arc::clone(&shutdown),
    );
    if let Err(error) = &result {
        health.fail(error.to_string());
    }
    shutdown.store(true, Ordering::Relaxed);
    tokio.shutdown_timeout(Duration::from_secs(10));
    tracing::info!("engine stopped");
    Ok(result?)
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
