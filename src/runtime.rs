//! The engine runtime: timely workers that read their input partitions,
//! run the quality-control dataflow, and hand completed epochs to the sink.
//!
//! Each worker thread owns a [`RecordSource`] (its share of the input
//! partitions); worker 0 also owns the [`OutputSink`], to which every
//! output is routed (see `scent_operators::epoch_sink`). A worker's loop:
//!
//! 1. unless backpressure applies, polls up to `poll_batch` records and
//!    runs each through the ingest stages (decode, validate, duplicate
//!    check, event-time admission), sending it into the dataflow at its
//!    epoch (rejections at the current frontier);
//! 2. moves its source capability to the new frontier, emitting a
//!    `SourceAdvance` (the frontier and each partition's next offset) at
//!    the old one, so that the move is committed with the output it
//!    completes;
//! 3. steps the dataflow; on worker 0, the epoch sink passes each completed
//!    epoch to the sink, which then commits.
//!
//! **Replay**: a restarted engine gives each worker the advances its
//! predecessor committed ([`RuntimeConfig::replay`]). Until they are used
//! up, the worker reads each partition exactly up to the next advance's
//! offsets (records read beyond wait in a buffer) and then moves its
//! frontier as recorded, instead of by its live clock, so every record is
//! admitted as it was before the crash.
//!
//! **Backpressure**: timely has none of its own, so a worker stops
//! polling while more than `max_records_in_flight` of the records it sent
//! belong to frontier moves the output has not passed yet; unread input
//! then waits in Kafka, not in memory.
//!
//! **Ending**: a finite source (the demo) drops its capability when it is
//! exhausted, every epoch then completes and the run ends. On shutdown or
//! failure the dataflow is dropped without completing open epochs:
//! decisions are only ever made on complete input.

use crate::api::metrics::{EngineMetrics, LatencyStage};
use scent_dataflows::quality_control::{quality_control, QualityControlConfig};
use scent_operators::action_changelog::ChangelogConfig;
use scent_operators::epoch_sink::{EpochOutput, EpochSink};
use scent_operators::event_clock::{Epoch, EventClock, EventClockConfig, PartitionId};
use scent_operators::ingest::{Ingested, Ingestor};
use scent_operators::model::RawRecord;
use scent_operators::source_progress::{PartitionPosition, ReplayScript, SourceAdvance};
use scent_operators::validate::ValidationRules;
use scent_operators::wire::DecodeLimits;
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::operators::core::UnorderedInput;
use timely::dataflow::operators::{Inspect, Probe};

/// Errors of sources and sinks, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a run failed.
#[derive(Debug, Error)]
pub enum EngineError {
    /// A source could not be created or read.
    #[error("source failed on worker {worker}: {source}")]
    Source {
        /// The worker.
        worker: usize,
        /// What happened.
        source: BoxError,
    },
    /// A sink could not be created or written.
    #[error("sink failed on worker {worker}: {source}")]
    Sink {
        /// The worker.
        worker: usize,
        /// What happened.
        source: BoxError,
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
    /// Every partition as `(clock id, topic, offset of the first record
    /// this source will deliver)`.
    fn start_positions(&self) -> Vec<(PartitionId, String, i64)>;
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
    /// Makes everything emitted so far durable and visible as one unit
    /// (a transactional sink commits here). Called after every step.
    fn commit(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
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
    /// Backpressure threshold: records admitted whose epochs are not
    /// complete.
    pub max_records_in_flight: usize,
    /// Event clock.
    pub clock: EventClockConfig,
    /// Decode limits.
    pub limits: DecodeLimits,
    /// Validation rules.
    pub rules: ValidationRules,
    /// The dataflow's operators.
    pub quality_control: QualityControlConfig,
    /// Committed source advances to replay, by worker (empty on a fresh
    /// start).
    pub replay: Arc<BTreeMap<usize, Vec<SourceAdvance>>>,
}

impl RuntimeConfig {
    /// The runtime part of a full configuration.
    pub fn from_config(config: &crate::config::Config) -> Self {
        RuntimeConfig {
            workers: config.engine.workers,
            poll_batch: config.engine.poll_batch,
            max_records_in_flight: config.engine.max_records_in_flight,
            clock: config.time,
            limits: config.ingest.limits(),
            rules: config.ingest.validation.clone(),
            quality_control: config.quality_control.clone(),
            replay: Arc::default(),
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
    let peer_frontiers = PeerFrontiers::new(config.workers);
    let guards = timely::execute(timely_config, move |worker| {
        let shared = Shared {
            metrics: &metrics,
            shutdown: &shutdown,
            frontiers: &peer_frontiers,
        };
        let result = run_worker(worker, &config, &sources, &sinks, shared);
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

/// What a worker's source feeds into the dataflow.
#[derive(Debug, Clone)]
enum SourceItem {
    /// A record through the ingest stages.
    Ingested(Ingested),
    /// A move of the source's capability, for the progress record.
    Advance(SourceAdvance),
}

/// The input side of one worker: ingest stages, positions per partition,
/// the replay script and records read ahead of it.
struct WorkerInput {
    worker: usize,
    ingestor: Ingestor,
    /// `(clock id, topic, next offset to ingest)` of every partition.
    positions: Vec<(PartitionId, String, i64)>,
    script: ReplayScript,
    /// Records read past the next scripted advance, in arrival order.
    held: VecDeque<(PartitionId, RawRecord)>,
    /// Ingested items not yet given to the dataflow, by epoch.
    by_epoch: BTreeMap<Epoch, Vec<SourceItem>>,
    /// Frontier moves not yet timed through the dataflow, with the
    /// records sent before each.
    released: Vec<(Epoch, Instant, usize)>,
    /// Records given to the dataflow since the last frontier move.
    sent_since_move: usize,
}

impl WorkerInput {
    fn ingest(
        &mut self,
        partition: PartitionId,
        record: RawRecord,
        now_ms: u64,
        metrics: &EngineMetrics,
    ) {
        if let Some(position) = self
            .positions
            .iter_mut()
            .find(|(id, _, _)| *id == partition)
        {
            position.2 = position.2.max(record.source.offset + 1);
        }
        metrics.records_in.inc();
        let frontier = self.ingestor.clock().frontier();
        let ingested = self.ingestor.ingest(record, partition, now_ms);
        let epoch = match &ingested {
            Ingested::Reading { epoch, .. } => {
                metrics.readings_in.inc();
                *epoch
            }
            Ingested::Batch { epoch, .. } => {
                metrics.batch_events_in.inc();
                *epoch
            }
            Ingested::Model { epoch, record, .. } => {
                metrics.model_records_in.inc();
                tracing::info!(
                    worker = self.worker,
                    model = %record.name,
                    version = %record.version,
                    epoch,
                    "model record read; it applies from this epoch on"
                );
                *epoch
            }
            Ingested::Rejected(letter) => {
                metrics.reject(letter.rejection.stage, letter.rejection.reason);
                frontier
            }
        };
        self.by_epoch
            .entry(epoch)
            .or_default()
            .push(SourceItem::Ingested(ingested));
    }

    /// Ingests `polled` (and records held from earlier polls) as far as the
    /// replay script allows, replaying every scripted frontier move that
    /// becomes due; `move_to` gives each move to the dataflow.
    fn ingest_polled(
        &mut self,
        polled: &mut Vec<(PartitionId, RawRecord)>,
        now_ms: u64,
        metrics: &EngineMetrics,
        mut move_to: impl FnMut(&mut Self, Epoch),
    ) {
        if self.script.is_done() && self.held.is_empty() {
            for (partition, record) in polled.drain(..) {
                self.ingest(partition, record, now_ms, metrics);
            }
            return;
        }
        self.held.extend(polled.drain(..));
        loop {
            let mut waiting = VecDeque::with_capacity(self.held.len());
            // Records of one partition stay in offset order: once one waits,
            // the rest of its partition waits behind it.
            let mut blocked: Vec<PartitionId> = Vec::new();
            while let Some((partition, record)) = self.held.pop_front() {
                if !blocked.contains(&partition)
                    && self.script.admits(partition, record.source.offset)
                {
                    self.ingest(partition, record, now_ms, metrics);
                } else {
                    if !blocked.contains(&partition) {
                        blocked.push(partition);
                    }
                    waiting.push_back((partition, record));
                }
            }
            self.held = waiting;
            let positions = &self.positions;
            let due = self.script.take_due(|partition| {
                positions
                    .iter()
                    .find(|(id, _, _)| *id == partition)
                    .map_or(0, |(_, _, next)| *next)
            });
            match due {
                Some(to) => {
                    self.ingestor.clock_mut().force_frontier(to);
                    move_to(self, to);
                }
                None => break,
            }
        }
    }

    /// The advance record of a move from `from` to `to`.
    fn advance(&self, from: Epoch, to: Epoch) -> SourceAdvance {
        SourceAdvance {
            worker: self.worker,
            from,
            to,
            positions: self
                .positions
                .iter()
                .map(|(id, topic, next)| PartitionPosition {
                    topic: topic.clone(),
                    partition: id.1,
                    next_offset: *next,
                })
                .collect(),
        }
    }
}

/// The frontier of every worker's source, for workers whose partitions
/// are all idle: they follow the others instead of holding them back.
#[derive(Debug)]
struct PeerFrontiers(Vec<AtomicU64>);

impl PeerFrontiers {
    fn new(workers: usize) -> Self {
        PeerFrontiers((0..workers.max(1)).map(|_| AtomicU64::new(0)).collect())
    }

    fn publish(&self, worker: usize, frontier: Epoch) {
        if let Some(slot) = self.0.get(worker) {
            slot.store(frontier, Ordering::Relaxed);
        }
    }

    /// The furthest frontier of the other workers.
    fn furthest_other(&self, worker: usize) -> Epoch {
        self.0
            .iter()
            .enumerate()
            .filter(|(index, _)| *index != worker)
            .map(|(_, slot)| slot.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }
}

/// What the workers of a run share.
#[derive(Clone, Copy)]
struct Shared<'a> {
    metrics: &'a EngineMetrics,
    shutdown: &'a AtomicBool,
    frontiers: &'a PeerFrontiers,
}

fn run_worker(
    worker: &mut timely::worker::Worker,
    config: &RuntimeConfig,
    sources: &SourceFactory,
    sinks: &SinkFactory,
    shared: Shared<'_>,
) -> Result<(), EngineError> {
    let Shared {
        metrics,
        shutdown,
        frontiers,
    } = shared;
    let index = worker.index();
    let source_error = |error: BoxError| EngineError::Source {
        worker: index,
        source: error,
    };
    let sink_error = |error: BoxError| EngineError::Sink {
        worker: index,
        source: error,
    };
    let mut source = sources(index, worker.peers()).map_err(source_error)?;
    // Every output is routed to worker 0, the only one with a sink.
    let sink = match index {
        0 => Some(Rc::new(RefCell::new(sinks(index).map_err(sink_error)?))),
        _ => None,
    };
    let failed_emit: Rc<RefCell<Option<BoxError>>> = Rc::default();

    let started = Instant::now();
    let now_ms = || started.elapsed().as_millis() as u64;
    let partitions = source.partitions();
    let mut clock = EventClock::new(config.clock, partitions.iter().copied(), 0, now_ms());
    for follower in source.followers() {
        clock.follow(follower);
    }
    let positions = source.start_positions();
    let script = {
        let advances = config.replay.get(&index).cloned().unwrap_or_default();
        ReplayScript::new(advances, |topic, partition| {
            positions
                .iter()
                .find(|(id, name, _)| name == topic && id.1 == partition)
                .map(|(id, _, _)| *id)
        })
        .map_err(|error| source_error(error.into()))?
    };
    if !script.is_empty() {
        tracing::info!(
            worker = index,
            advances = script.len(),
            "replaying committed source progress"
        );
    }
    let mut reader = WorkerInput {
        worker: index,
        ingestor: Ingestor::new(config.limits, config.rules.clone(), clock),
        positions,
        script,
        held: VecDeque::new(),
        by_epoch: BTreeMap::new(),
        released: Vec::new(),
        sent_since_move: 0,
    };

    let (mut input, capability, anomaly_probe, verdict_probe) = {
        let sink = sink.clone();
        let failed_emit = Rc::clone(&failed_emit);
        let metrics = metrics.clone();
        let qc_config = config.quality_control.clone();
        let changelog = ChangelogConfig {
            seal_after_ms: config.clock.allowed_lateness_ms,
            epoch_ms: config.clock.epoch_ms,
        };
        worker.dataflow::<Epoch, _, _>(move |scope| {
            let ((input, capability), items) =
                scope.new_unordered_input::<CapacityContainerBuilder<Vec<SourceItem>>>();
            let (ingested, advances) = items.ok_err(|item| match item {
                SourceItem::Ingested(ingested) => Ok(ingested),
                SourceItem::Advance(advance) => Err(advance),
            });
            let flow = quality_control(ingested, &qc_config, changelog);
            let late_metrics = metrics.clone();
            flow.late_revisions.inspect(move |late| {
                late_metrics.late_revisions.inc();
                tracing::warn!(
                    line = %late.subject.line,
                    batch = late.subject.batch.as_deref().unwrap_or(""),
                    kind = ?late.subject.kind,
                    epoch = late.epoch,
                    "a sealed batch's decision would have changed; the change is refused"
                );
            });
            let anomaly_metrics = metrics.clone();
            let (anomaly_probe, _) = flow
                .anomalies
                .inner
                .inspect(move |(anomaly, _, diff)| {
                    // Counts raised anomalies; a retraction (a new model
                    // version re-scoring a cycle) is not a new anomaly.
                    if *diff > 0 {
                        anomaly_metrics.anomaly(anomaly.rule)
                    }
                })
                .probe();
            let quality_metrics = metrics.clone();
            flow.flagged.inspect(move |flagged| {
                quality_metrics.quality_flag(
                    flagged
                        .tests
                        .iter()
                        .map(|(test, flag)| (*test, flag.as_str())),
                )
            });
            let (verdict_probe, _) = flow.actions.inner.clone().probe();
            flow.actions
                .epoch_sink(flow.dead_letters, advances, move |output| {
                    let Some(sink) = &sink else {
                        return;
                    };
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
    let mut anomaly_releases: VecDeque<(Epoch, Instant)> = VecDeque::new();
    let mut verdict_releases: VecDeque<(Epoch, Instant)> = VecDeque::new();
    let mut last_report = Instant::now();
    let mut last_caught_up = Instant::now();
    let mut in_flight = InFlight::default();

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
            if in_flight.records >= config.max_records_in_flight {
                metrics.backpressure_pauses.inc();
                reader.ingestor.clock_mut().hold_idleness(now_ms());
            } else {
                polled.clear();
                received = source
                    .poll_into(config.poll_batch, &mut polled)
                    .map_err(source_error)?;
                let now = now_ms();
                reader.ingest_polled(&mut polled, now, metrics, |reader, to| {
                    move_capability(reader, &mut input, cap, to, index, (metrics, frontiers));
                });
            }
            if reader.script.is_done() {
                // Idleness is a matter of seconds: refreshing the caught-up
                // flags ten times a second is plenty, and keeps the
                // source's bookkeeping off the per-poll path.
                if last_caught_up.elapsed() >= Duration::from_millis(100) {
                    let now = now_ms();
                    for (partition, caught_up) in source.caught_up() {
                        reader
                            .ingestor
                            .clock_mut()
                            .set_caught_up(partition, caught_up, now);
                    }
                    last_caught_up = Instant::now();
                }
                let clock = reader.ingestor.clock_mut();
                clock.set_peer_frontier(frontiers.furthest_other(index));
                let next = clock.advance(now_ms());
                move_capability(
                    &mut reader,
                    &mut input,
                    cap,
                    next,
                    index,
                    (metrics, frontiers),
                );
            }
            if source.finished() && reader.held.is_empty() {
                flush_items(&mut reader, &mut input, cap);
                capability = None;
            }
        }
        for cap in capability.iter_mut() {
            flush_items(&mut reader, &mut input, cap);
        }
        for (epoch, at, sent) in reader.released.drain(..) {
            anomaly_releases.push_back((epoch, at));
            verdict_releases.push_back((epoch, at));
            in_flight.moved(epoch, sent);
        }

        let park = if received == 0 {
            Duration::from_millis(1)
        } else {
            Duration::ZERO
        };
        worker.step_or_park(Some(park));
        if let Some(sink) = &sink {
            if failed_emit.borrow().is_none() {
                sink.borrow_mut().commit().map_err(sink_error)?;
            }
        }

        in_flight.complete(|epoch| verdict_probe.less_than(epoch));
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
    match sink {
        Some(sink) => sink.borrow_mut().finish().map_err(sink_error),
        None => Ok(()),
    }
}

type SourceInput = timely::dataflow::operators::core::unordered_input::UnorderedHandle<
    Epoch,
    CapacityContainerBuilder<Vec<SourceItem>>,
>;
type SourceCapability = timely::dataflow::operators::ActivateCapability<Epoch>;

/// Gives the items ingested so far to the dataflow, each at its epoch.
fn flush_items(reader: &mut WorkerInput, input: &mut SourceInput, cap: &SourceCapability) {
    if reader.by_epoch.is_empty() {
        return;
    }
    let mut handle = input.activate();
    for (epoch, items) in std::mem::take(&mut reader.by_epoch) {
        reader.sent_since_move += items.len();
        handle
            .session(&cap.delayed(&epoch))
            .give_iterator(items.into_iter());
    }
}

/// Moves the source capability to `to`, if that is forward: first gives
/// everything ingested before the move to the dataflow, then the advance
/// record (at the old frontier, so it commits with what it describes).
fn move_capability(
    reader: &mut WorkerInput,
    input: &mut SourceInput,
    cap: &mut SourceCapability,
    to: Epoch,
    index: usize,
    (metrics, frontiers): (&EngineMetrics, &PeerFrontiers),
) {
    let from = *cap.time();
    if to <= from {
        return;
    }
    let advance = reader.advance(from, to);
    reader
        .by_epoch
        .entry(from)
        .or_default()
        .push(SourceItem::Advance(advance));
    flush_items(reader, input, cap);
    cap.downgrade(&to);
    frontiers.publish(index, to);
    let sent = std::mem::take(&mut reader.sent_since_move);
    reader.released.push((to, Instant::now(), sent));
    if index == 0 {
        metrics.frontier_epoch.set(to as i64);
    }
}

/// Records sent into the dataflow whose epochs have not completed: the
/// measure of backpressure.
#[derive(Debug, Default)]
struct InFlight {
    /// `(frontier after a move, records sent before it)`, oldest first.
    moves: VecDeque<(Epoch, usize)>,
    records: usize,
}

impl InFlight {
    fn moved(&mut self, to: Epoch, sent: usize) {
        self.moves.push_back((to, sent));
        self.records += sent;
    }

    /// Forgets the records of every move the output has passed.
    fn complete(&mut self, output_before: impl Fn(&Epoch) -> bool) {
        while let Some(&(to, sent)) = self.moves.front() {
            if output_before(&to) {
                break;
            }
            self.records -= sent;
            self.moves.pop_front();
        }
    }
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
    use scent_operators::model::{Action, DeadLetter};

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
        fn start_positions(&self) -> Vec<(PartitionId, String, i64)> {
            self.0.start_positions()
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

    /// A sink keeping every epoch it is given.
    #[derive(Clone, Default)]
    struct Recording {
        outputs: Arc<std::sync::Mutex<Vec<EpochOutput>>>,
    }

    impl OutputSink for Recording {
        fn emit(&mut self, output: &EpochOutput) -> Result<(), BoxError> {
            self.outputs.lock().unwrap().push(output.clone());
            Ok(())
        }
        fn finish(&mut self) -> Result<(), BoxError> {
            Ok(())
        }
    }

    /// Runs the plant to its end with `poll_batch` records per poll.
    fn run_plant(
        plant: &Arc<Plant>,
        poll_batch: usize,
        replay: BTreeMap<usize, Vec<SourceAdvance>>,
    ) -> Vec<EpochOutput> {
        let sink = Recording::default();
        let plant = Arc::clone(plant);
        let sources: SourceFactory = Arc::new(move |worker, peers| {
            Ok(Box::new(PlantSource::new(&plant, worker, peers, None)) as Box<dyn RecordSource>)
        });
        let outputs = Arc::clone(&sink.outputs);
        let sinks: SinkFactory =
            Arc::new(move |_worker| Ok(Box::new(sink.clone()) as Box<dyn OutputSink>));
        let mut runtime = RuntimeConfig::from_config(&crate::config::Config::default());
        runtime.workers = 2;
        runtime.poll_batch = poll_batch;
        runtime.replay = Arc::new(replay);
        let metrics = EngineMetrics::register(&mut Registry::default());
        run(
            runtime,
            sources,
            sinks,
            metrics,
            Arc::new(AtomicBool::new(false)),
        )
        .unwrap();
        let outputs = outputs.lock().unwrap().clone();
        outputs
    }

    /// The outputs of epochs below `epoch`, and the actions and dead
    /// letters (in source order) of the rest.
    fn split_at(
        outputs: &[EpochOutput],
        epoch: Epoch,
    ) -> (Vec<EpochOutput>, Vec<Action>, Vec<DeadLetter>) {
        let (before, after): (Vec<_>, Vec<_>) =
            outputs.iter().cloned().partition(|o| o.epoch < epoch);
        let actions = after.iter().flat_map(|o| o.actions.clone()).collect();
        let mut letters: Vec<DeadLetter> =
            after.iter().flat_map(|o| o.dead_letters.clone()).collect();
        letters.sort();
        (before, actions, letters)
    }

    #[test]
    fn a_replay_of_committed_progress_regenerates_it_exactly_and_continues_alike() {
        let mut config = SimConfig::for_readings(30_000, 11);
        config.malformed_count = 40;
        let plant = Arc::new(Plant::new(config).unwrap());
        // The first run reads in small polls, so its frontier moves often
        // and its dead letters enter at many different frontiers.
        let first = run_plant(&plant, 97, BTreeMap::new());
        assert!(first.iter().any(|output| !output.actions.is_empty()));
        let unscripted = run_plant(&plant, 4_096, BTreeMap::new());
        for cut in [first.len() / 3, first.len() / 2, first.len() - 2] {
            let committed = first[cut].epoch;
            let mut replay: BTreeMap<usize, Vec<SourceAdvance>> = BTreeMap::new();
            for output in first.iter().filter(|output| output.epoch < committed) {
                for advance in &output.advances {
                    replay
                        .entry(advance.worker)
                        .or_default()
                        .push(advance.clone());
                }
            }
            // The restarted run reads in large polls; the script makes it
            // move its frontier as the first run did up to the cut.
            let resumed = run_plant(&plant, 4_096, replay);
            let (first_before, first_actions, first_letters) = split_at(&first, committed);
            let (resumed_before, resumed_actions, resumed_letters) = split_at(&resumed, committed);
            assert_eq!(
                resumed_before, first_before,
                "what the sink suppresses below {committed} is exactly what was committed"
            );
            assert_eq!(resumed_actions, first_actions, "the same actions follow");
            assert_eq!(
                resumed_letters, first_letters,
                "the same dead letters follow"
            );
            // Without the script, the same large polls regenerate a
            // different prefix: suppressing it would lose or repeat output.
            let (unscripted_before, _, _) = split_at(&unscripted, committed);
            assert_ne!(unscripted_before, first_before, "cut at {committed}");
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
        // Worker 0's sink fails at its first epoch; the other worker, whose
        // source never ends, must stop too.
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
            Err(EngineError::Sink { source, .. }) => {
                assert!(source.to_string().contains("broker unreachable"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
