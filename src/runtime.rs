//! The engine runtime: timely workers that read their input partitions,
//! run the quality-control dataflow, and hand completed epochs to a sink.
//!
//! Each worker thread owns a [`RecordSource`] (its share of the input
//! partitions) and an [`OutputSink`]. Its loop:
//!
//! 1. unless backpressure applies, polls up to `poll_batch` records and
//!    runs each through the ingest stages (decode, validate, duplicate
//!    check, event-time admission), sending it into the dataflow at its
//!    epoch (rejections at the current frontier);
//! 2. advances the event clock and downgrades the source capability to the
//!    new frontier, which lets epochs complete downstream;
//! 3. steps the dataflow, whose epoch sink passes each completed epoch's
//!    actions and dead letters to the sink.
//!
//! **Backpressure**: timely has none of its own, so a worker stops
//! polling while its decisions lag more than `max_epochs_in_flight` epochs
//! behind its source frontier; unread input then waits in Kafka, not in
//! memory.
//!
//! **Ending**: a finite source (the demo) drops its capability when it is
//! exhausted, every epoch then completes and the run ends. On shutdown the
//! dataflow is dropped without completing open epochs: decisions are only
//! ever made on complete input.

use crate::api::metrics::{EngineMetrics, LatencyStage};
use scent_dataflows::quality_control::{quality_control, QualityControlConfig};
use scent_operators::epoch_sink::{EpochOutput, EpochSink};
use scent_operators::event_clock::{Epoch, EventClock, EventClockConfig, PartitionId};
use scent_operators::ingest::{Ingested, Ingestor};
use scent_operators::model::RawRecord;
use scent_operators::validate::ValidationRules;
use scent_operators::wire::DecodeLimits;
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::core::UnorderedInput;
use timely::dataflow::operators::{Inspect, Probe};

/// Errors of sources and sinks, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a run failed.
#[derive(Debug, Error)]
pub enum EngineError {
    /// A source could not be created or read.
    #[error("source failed on worker {worker}: {message}")]
    Source {
        /// The worker.
        worker: usize,
        /// What happened.
        message: String,
    },
    /// A sink could not be created or written.
    #[error("sink failed on worker {worker}: {message}")]
    Sink {
        /// The worker.
        worker: usize,
        /// What happened.
        message: String,
    },
    /// The timely runtime failed (e.g. a worker panicked).
    #[error("dataflow runtime failed: {0}")]
    Runtime(String),
}

/// The input partitions of one worker.
pub trait RecordSource {
    /// The partitions this worker reads.
    fn partitions(&self) -> Vec<PartitionId>;
    /// Appends up to `max` records to `out`; never blocks for long.
    fn poll_into(
        &mut self,
        max: usize,
        out: &mut Vec<(PartitionId, RawRecord)>,
    ) -> Result<usize, BoxError>;
    /// Partitions that must not hold the event-time frontier back (sparse
    /// control streams such as batch lifecycle events).
    fn followers(&self) -> Vec<PartitionId> {
        Vec::new()
    }
    /// Whether each partition has been read to its current end.
    fn caught_up(&self) -> Vec<(PartitionId, bool)>;
    /// Whether the input is finite and fully read.
    fn finished(&self) -> bool;
    /// Publishes source-specific metrics (e.g. consumer lag).
    fn report(&self, _metrics: &EngineMetrics) {}
}

/// Where completed epochs go.
pub trait OutputSink {
    /// Writes one completed epoch.
    fn emit(&mut self, output: &EpochOutput) -> Result<(), BoxError>;
    /// Flushes everything written so far.
    fn finish(&mut self) -> Result<(), BoxError>;
}

/// Creates the source of worker `index` of `peers`.
pub type SourceFactory =
    Arc<dyn Fn(usize, usize) -> Result<Box<dyn RecordSource>, BoxError> + Send + Sync>;

/// Creates the sink of worker `index`.
pub type SinkFactory = Arc<dyn Fn(usize) -> Result<Box<dyn OutputSink>, BoxError> + Send + Sync>;

/// Parameters of a run.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Worker threads.
    pub workers: usize,
    /// Records per poll.
    pub poll_batch: usize,
    /// Backpressure threshold in epochs.
    pub max_epochs_in_flight: u64,
    /// Event clock.
    pub clock: EventClockConfig,
    /// Decode limits.
    pub limits: DecodeLimits,
    /// Validation rules.
    pub rules: ValidationRules,
    /// The dataflow's operators.
    pub quality_control: QualityControlConfig,
}

impl RuntimeConfig {
    /// The runtime part of a full configuration.
    pub fn from_config(config: &crate::config::Config) -> Self {
        RuntimeConfig {
            workers: config.engine.workers,
            poll_batch: config.engine.poll_batch,
            max_epochs_in_flight: config.engine.max_epochs_in_flight,
            clock: config.time,
            limits: config.ingest.limits(),
            rules: config.ingest.validation.clone(),
            quality_control: config.quality_control.clone(),
        }
    }
}

/// Runs the engine until every source is finished or `shutdown` is set.
pub fn run(
    config: RuntimeConfig,
    sources: SourceFactory,
    sinks: SinkFactory,
    metrics: EngineMetrics,
    shutdown: Arc<AtomicBool>,
) -> Result<(), EngineError> {
    let timely_config = timely::Config::process(config.workers);
    let guards = timely::execute(timely_config, move |worker| {
        let result = run_worker(worker, &config, &sources, &sinks, &metrics, &shutdown);
        if result.is_err() {
            // A failed worker stops the whole run: its share of the keys can
            // no longer be decided. Every worker drops its dataflow, so none
            // waits for progress from the others.
            shutdown.store(true, Ordering::Relaxed);
            drop_dataflows(worker);
        }
        result
    })
    .map_err(EngineError::Runtime)?;
    let mut first_error = None;
    for result in guards.join() {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                first_error.get_or_insert(error);
            }
            Err(panic) => {
                first_error.get_or_insert(EngineError::Runtime(panic));
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn run_worker(
    worker: &mut timely::worker::Worker,
    config: &RuntimeConfig,
    sources: &SourceFactory,
    sinks: &SinkFactory,
    metrics: &EngineMetrics,
    shutdown: &AtomicBool,
) -> Result<(), EngineError> {
    let index = worker.index();
    let source_error = |error: BoxError| EngineError::Source {
        worker: index,
        message: error.to_string(),
    };
    let sink_error = |error: BoxError| EngineError::Sink {
        worker: index,
        message: error.to_string(),
    };
    let mut source = sources(index, worker.peers()).map_err(source_error)?;
    let sink = Rc::new(RefCell::new(sinks(index).map_err(sink_error)?));
    let failed_emit: Rc<RefCell<Option<BoxError>>> = Rc::default();

    let started = Instant::now();
    let now_ms = || started.elapsed().as_millis() as u64;
    let partitions = source.partitions();
    let mut clock = EventClock::new(config.clock, partitions.iter().copied(), 0, now_ms());
    for follower in source.followers() {
        clock.follow(follower);
    }
    let mut ingestor = Ingestor::new(config.limits, config.rules.clone(), clock);

    let (mut input, capability, anomaly_probe, verdict_probe) = {
        let sink = Rc::clone(&sink);
        let failed_emit = Rc::clone(&failed_emit);
        let metrics = metrics.clone();
        let qc_config = config.quality_control.clone();
        worker.dataflow::<Epoch, _, _>(move |scope| {
            let ((input, capability), ingested) =
                scope.new_unordered_input::<CapacityContainerBuilder<Vec<Ingested>>>();
            let flow = quality_control(ingested, &qc_config);
            let anomaly_metrics = metrics.clone();
            let (anomaly_probe, _) = flow
                .anomalies
                .inspect(move |anomaly| anomaly_metrics.anomaly(anomaly.rule))
                .probe();
            let (verdict_probe, _) = flow.actions.inner.clone().probe();
            flow.actions.epoch_sink(flow.dead_letters, move |output| {
                if failed_emit.borrow().is_some() {
                    return;
                }
                let begun = Instant::now();
                if let Err(error) = sink.borrow_mut().emit(&output) {
                    *failed_emit.borrow_mut() = Some(error);
                    return;
                }
                metrics.observe_latency(LatencyStage::sink, begun.elapsed().as_secs_f64());
                for action in &output.actions {
                    metrics.action(action);
                }
            });
            (input, capability, anomaly_probe, verdict_probe)
        })
    };

    // A worker without partitions must not hold the frontier back.
    let mut capability = (!partitions.is_empty()).then_some(capability);
    let mut polled = Vec::with_capacity(config.poll_batch);
    let mut by_epoch: BTreeMap<Epoch, Vec<Ingested>> = BTreeMap::new();
    let mut anomaly_releases: VecDeque<(Epoch, Instant)> = VecDeque::new();
    let mut verdict_releases: VecDeque<(Epoch, Instant)> = VecDeque::new();
    let mut last_report = Instant::now();
    let mut last_caught_up = Instant::now();

    loop {
        if shutdown.load(Ordering::Relaxed) {
            drop_dataflows(worker);
            break;
        }
        if let Some(error) = failed_emit.borrow_mut().take() {
            return Err(sink_error(error));
        }
        let mut received = 0;
        if let Some(cap) = capability.as_mut() {
            let frontier = *cap.time();
            let lagging =
                verdict_probe.less_than(&frontier.saturating_sub(config.max_epochs_in_flight));
            if lagging {
                metrics.backpressure_pauses.inc();
                ingestor.clock_mut().hold_idleness(now_ms());
            } else {
                polled.clear();
                received = source
                    .poll_into(config.poll_batch, &mut polled)
                    .map_err(source_error)?;
                let now = now_ms();
                for (partition, record) in polled.drain(..) {
                    metrics.records_in.inc();
                    let ingested = ingestor.ingest(record, partition, now);
                    let epoch = match &ingested {
                        Ingested::Reading { epoch, .. } => {
                            metrics.readings_in.inc();
                            *epoch
                        }
                        Ingested::Batch { epoch, .. } => {
                            metrics.batch_events_in.inc();
                            *epoch
                        }
                        Ingested::Rejected(letter) => {
                            metrics.reject(letter.rejection.stage, letter.rejection.reason);
                            frontier
                        }
                    };
                    by_epoch.entry(epoch).or_default().push(ingested);
                }
                if !by_epoch.is_empty() {
                    let mut handle = input.activate();
                    for (epoch, items) in std::mem::take(&mut by_epoch) {
                        handle
                            .session(&cap.delayed(&epoch))
                            .give_iterator(items.into_iter());
                    }
                }
            }
            // Idleness is a matter of seconds: refreshing the caught-up
            // flags ten times a second is plenty, and keeps the source's
            // bookkeeping off the per-poll path.
            if last_caught_up.elapsed() >= Duration::from_millis(100) {
                for (partition, caught_up) in source.caught_up() {
                    ingestor.clock_mut().set_caught_up(partition, caught_up);
                }
                last_caught_up = Instant::now();
            }
            let next = ingestor.clock_mut().advance(now_ms());
            if next > frontier {
                cap.downgrade(&next);
                let released = Instant::now();
                anomaly_releases.push_back((next, released));
                verdict_releases.push_back((next, released));
                if index == 0 {
                    metrics.frontier_epoch.set(next as i64);
                }
            }
            if source.finished() {
                capability = None;
            }
        }

        let park = if received == 0 {
            Duration::from_millis(1)
        } else {
            Duration::ZERO
        };
        worker.step_or_park(Some(park));

        observe_releases(
            &mut anomaly_releases,
            |e| anomaly_probe.less_than(e),
            metrics,
            LatencyStage::anomaly,
        );
        observe_releases(
            &mut verdict_releases,
            |e| verdict_probe.less_than(e),
            metrics,
            LatencyStage::verdict,
        );
        if last_report.elapsed() >= Duration::from_secs(1) {
            source.report(metrics);
            last_report = Instant::now();
        }
        if capability.is_none() && anomaly_probe.done() && verdict_probe.done() {
            // Every epoch is complete; run the dataflow (and its sink) out.
            while worker.has_dataflows() {
                worker.step_or_park(Some(Duration::from_millis(1)));
            }
            break;
        }
    }
    if let Some(error) = failed_emit.borrow_mut().take() {
        return Err(sink_error(error));
    }
    let mut sink = sink.borrow_mut();
    sink.finish().map_err(sink_error)
}

/// Drops every dataflow of `worker` without completing its open epochs.
fn drop_dataflows(worker: &mut timely::worker::Worker) {
    for dataflow in worker.installed_dataflows() {
        worker.drop_dataflow(dataflow);
    }
}

/// Records the latency of every released epoch boundary a stage has passed.
fn observe_releases(
    releases: &mut VecDeque<(Epoch, Instant)>,
    stage_before: impl Fn(&Epoch) -> bool,
    metrics: &EngineMetrics,
    stage: LatencyStage,
) {
    while let Some((epoch, released)) = releases.front() {
        if stage_before(epoch) {
            break;
        }
        metrics.observe_latency(stage, released.elapsed().as_secs_f64());
        releases.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{Plant, SimConfig};
    use crate::sources::PlantSource;
    use prometheus_client::registry::Registry;
    use scent_operators::epoch_sink::EpochOutput;

    /// A source that never reports itself finished, like a Kafka topic.
    struct Endless(PlantSource);

    impl RecordSource for Endless {
        fn partitions(&self) -> Vec<PartitionId> {
            self.0.partitions()
        }
        fn poll_into(
            &mut self,
            max: usize,
            out: &mut Vec<(PartitionId, RawRecord)>,
        ) -> Result<usize, BoxError> {
            self.0.poll_into(max, out)
        }
        fn caught_up(&self) -> Vec<(PartitionId, bool)> {
            self.0.caught_up()
        }
        fn finished(&self) -> bool {
            false
        }
    }

    /// A sink whose first write fails.
    struct Broken;

    impl OutputSink for Broken {
        fn emit(&mut self, _output: &EpochOutput) -> Result<(), BoxError> {
            Err("broker unreachable".into())
        }
        fn finish(&mut self) -> Result<(), BoxError> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_worker_stops_the_whole_run_with_its_error() {
        let plant = Arc::new(Plant::new(SimConfig::for_readings(20_000, 5)).unwrap());
        let sources: SourceFactory = Arc::new(move |worker, peers| {
            Ok(
                Box::new(Endless(PlantSource::new(&plant, worker, peers, None)))
                    as Box<dyn RecordSource>,
            )
        });
        // Whichever worker decides a batch first fails; the others, whose
        // sources never end, must stop too.
        let sinks: SinkFactory = Arc::new(|_worker| Ok(Box::new(Broken) as Box<dyn OutputSink>));
        let config = crate::config::Config::default();
        let mut runtime = RuntimeConfig::from_config(&config);
        runtime.workers = 2;
        let metrics = EngineMetrics::register(&mut Registry::default());
        let (done, outcome) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let result = run(
                runtime,
                sources,
                sinks,
                metrics,
                Arc::new(AtomicBool::new(false)),
            );
            let _ = done.send(result);
        });
        let result = outcome
            .recv_timeout(Duration::from_secs(60))
            .expect("the run ends instead of hanging");
        match result {
            Err(EngineError::Sink { message, .. }) => {
                assert!(message.contains("broker unreachable"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
