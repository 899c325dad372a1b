//! The per-sensor stage: every kernel that keeps state per sensor stream,
//! behind one exchange.
//!
//! Readings are routed by `line/sensor` once, and each completed epoch's
//! readings are sorted into `(line, sensor, ts, seq)` order once; then
//! every per-sensor kernel sees them in that order: the QARTOD quality
//! flags (`scent_operators::qc_flags`), the rolling detectors (z-score,
//! flat line, gap: `scent_operators::rolling_anomaly`) and the cycle builder
//! of the e-nose arrays (`scent_operators::exposure_cycles`), the
//! clean-air health of the arrays (`scent_operators::sensor_health`: a
//! baseline sample per gap between batches, assessed against the array's
//! history) and the record of which sensors reported in which batch.
//!
//! The quality flags gate the fingerprints: a reading whose aggregate flag
//! is `fail` (out of its gross range, a spike, a stuck channel, a jump back
//! in time) does not enter a cycle, so one bad reading does not move a
//! fingerprint. Because the spike test needs the next reading, a reading
//! reaches the cycle builder one reading of its sensor later; readings
//! flagged `suspect` or worse are also emitted as [`FlaggedReading`]s. The
//! rolling detectors see every reading at once: they are the alarms, the
//! flags are the data-quality annotations.
//! Running them in one operator instead of one operator each saves a copy
//! and an exchange of every reading per kernel, which is most of their cost
//! at a million readings a second. The output is a function of the input
//! alone, as for each kernel by itself.

use scent_operators::event_clock::Epoch;
use scent_operators::exposure_cycles::{Cycle, CycleBuilder, CycleConfig};
use scent_operators::maintenance_agent::{HealthReport, SensorPresence};
use scent_operators::model::{Anomaly, EventTimeMs, Reading, SensorKind};
use scent_operators::qc_flags::{QcConfig, QcFlag, QcInput, QcResult, SensorQc};
use scent_operators::rolling_anomaly::{RollingAnomalyConfig, RollingAnomalyDetector};
use scent_operators::sensor_epochs::{SensorEpochs, SensorMap};
use scent_operators::sensor_health::{
    assess, BaselineSample, CleanAirSample, CleanAirSampler, HealthConfig, HealthStatus,
    ResponseSample,
};
use serde::Serialize;
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::StreamVec;

/// A reading whose quality flags are `suspect` or worse.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlaggedReading {
    /// Line of the sensor.
    pub line: String,
    /// The sensor.
    pub sensor: String,
    /// Its kind.
    pub kind: SensorKind,
    /// Batch in production, if any.
    pub batch: Option<String>,
    /// Event time of the reading.
    pub ts_ms: EventTimeMs,
    /// Its sequence number.
    pub seq: u64,
    /// The worst flag of the reading.
    pub flag: QcFlag,
    /// Its quality score in [0, 1].
    pub score: f64,
    /// The tests that flagged it `suspect` or worse, e.g. `spike`, each
    /// with its own worst flag.
    pub tests: Vec<(&'static str, QcFlag)>,
}

impl FlaggedReading {
    fn new(reading: &Reading, result: &QcResult) -> FlaggedReading {
        let bad = |flag: QcFlag| matches!(flag, QcFlag::Suspect | QcFlag::Fail | QcFlag::Missing);
        // Each test that flagged the reading, with its own worst flag over
        // the channels.
        let mut tests: Vec<(&'static str, QcFlag)> = Vec::new();
        let mut note = |name: &'static str, flag: QcFlag| {
            if !bad(flag) {
                return;
            }
            match tests.iter_mut().find(|(test, _)| *test == name) {
                Some((_, worst)) => *worst = QcFlag::aggregate([*worst, flag]),
                None => tests.push((name, flag)),
            }
        };
        note("time_gap", result.time_gap);
        note("sequence", result.sequence);
        note("timestamp_skew", result.timestamp_skew);
        for channel in &result.channels {
            note("gross_range", channel.gross_range);
            note("spike", channel.spike);
            note("rate_of_change", channel.rate_of_change);
            note("flat_line", channel.flat_line);
        }
        FlaggedReading {
            line: reading.line.clone(),
            sensor: reading.sensor.clone(),
            kind: reading.kind,
            batch: reading.batch.clone(),
            ts_ms: reading.ts_ms,
            seq: reading.seq,
            flag: result.aggregate,
            score: result.score,
            tests,
        }
    }
}

/// The state of one sensor: its flagger, the reading waiting for the next
/// one (the spike test's look-ahead), the batch it last reported in, and
/// for an e-nose array its clean-air health.
#[derive(Default)]
struct SensorQuality {
    qc: SensorQc,
    waiting: Option<Reading>,
    batch: Option<String>,
    health: Option<ArrayHealth>,
}

/// The clean-air history of one e-nose array.
struct ArrayHealth {
    sampler: CleanAirSampler,
    baselines: Vec<BaselineSample>,
    responses: Vec<ResponseSample>,
    status: HealthStatus,
}

impl ArrayHealth {
    fn new(config: &HealthConfig) -> Self {
        ArrayHealth {
            sampler: CleanAirSampler::new(config),
            baselines: Vec::new(),
            responses: Vec::new(),
            status: HealthStatus::Healthy,
        }
    }

    /// Folds a reading in; on the first reading of a batch after a usable
    /// clean-air window, the array's health as of that window.
    fn observe(&mut self, reading: &Reading, config: &HealthConfig) -> Option<HealthReport> {
        let sample =
            self.sampler
                .observe(reading.ts_ms, reading.product.as_deref(), &reading.values)?;
        match sample {
            CleanAirSample::Response(response) => {
                self.responses.push(response);
                None
            }
            CleanAirSample::Baseline(baseline) => {
                let now_ms = baseline.end_ms;
                self.baselines.push(baseline);
                // The sample closes with a batch's first reading; without a
                // batch to attach it to, the status is not moved, so the
                // next report still compares with the last one made.
                let batch = reading.batch.clone()?;
                let health = assess(&self.baselines, &self.responses, now_ms, config);
                let previous = std::mem::replace(&mut self.status, health.status);
                Some(HealthReport {
                    line: reading.line.clone(),
                    sensor: reading.sensor.clone(),
                    batch,
                    health,
                    previous,
                })
            }
        }
    }
}

/// Everything the per-sensor kernels produce from one epoch.
#[derive(Default)]
pub struct SensorOutputs {
    /// Anomalies of the rolling detectors.
    pub anomalies: Vec<Anomaly>,
    /// Completed e-nose cycles.
    pub cycles: Vec<Cycle>,
    /// Readings flagged `suspect` or worse.
    pub flagged: Vec<FlaggedReading>,
    /// A sensor's first reading in a batch.
    pub presence: Vec<SensorPresence>,
    /// An e-nose array's health, at each clean-air sample.
    pub health: Vec<HealthReport>,
}

/// The per-sensor kernels of one worker, run together over one completed
/// epoch's readings: the pure core of [`sensor_stage`], callable without
/// timely (benches, tests).
pub struct SensorKernels {
    detector: RollingAnomalyDetector,
    builder: CycleBuilder,
    quality: QcConfig,
    health: HealthConfig,
    sensors: SensorMap<SensorQuality>,
}

/// Parameters of the per-sensor kernels.
#[derive(Debug, Clone, Default)]
pub struct SensorStageConfig {
    /// Rolling detectors.
    pub anomaly: RollingAnomalyConfig,
    /// Exposure cycles.
    pub cycles: CycleConfig,
    /// QARTOD flags.
    pub quality: QcConfig,
    /// Clean-air health of the e-nose arrays.
    pub health: HealthConfig,
}

impl SensorKernels {
    /// Kernels with the given parameters and no state.
    pub fn new(config: SensorStageConfig) -> Self {
        SensorKernels {
            detector: RollingAnomalyDetector::new(config.anomaly),
            builder: CycleBuilder::new(config.cycles),
            quality: config.quality,
            health: config.health,
            sensors: SensorMap::default(),
        }
    }

    /// Sorts one epoch's readings into `(line, sensor, ts, seq)` order, runs
    /// them through every kernel and appends the outputs; drains `readings`
    /// (each sensor's last reading waits for the next one's spike test).
    pub fn process(&mut self, readings: &mut Vec<Reading>, out: &mut SensorOutputs) {
        let SensorOutputs {
            anomalies,
            cycles,
            flagged,
            presence,
            health,
        } = out;
        // `process` sorts the readings into (line, sensor, ts, seq) order.
        self.detector.process(readings, anomalies);
        for reading in readings.drain(..) {
            let state = self.sensors.entry(&reading.line, &reading.sensor);
            if reading.batch.is_some() && state.batch != reading.batch {
                state.batch = reading.batch.clone();
                presence.push(SensorPresence {
                    line: reading.line.clone(),
                    batch: reading.batch.clone().unwrap_or_default(),
                    sensor: reading.sensor.clone(),
                    kind: reading.kind,
                });
            }
            if reading.kind == SensorKind::Enose {
                let config = &self.health;
                let array = state.health.get_or_insert_with(|| ArrayHealth::new(config));
                health.extend(array.observe(&reading, config));
            }
            let input = QcInput {
                ts_ms: reading.ts_ms,
                seq: reading.seq,
                reference_ts_ms: None,
                values: &reading.values,
            };
            let result = state.qc.observe(&input, self.quality.kind(reading.kind));
            let previous = state.waiting.replace(reading);
            if let (Some(previous), Some(result)) = (previous, result) {
                if result.aggregate != QcFlag::Fail {
                    self.builder.observe(&previous, cycles);
                }
                if matches!(
                    result.aggregate,
                    QcFlag::Suspect | QcFlag::Fail | QcFlag::Missing
                ) {
                    flagged.push(FlaggedReading::new(&previous, &result));
                }
            }
        }
    }
}

/// What the per-sensor stage emits.
enum SensorOutput {
    Anomaly(Anomaly),
    Cycle(Cycle),
    Flagged(FlaggedReading),
    Presence(SensorPresence),
    Health(HealthReport),
}

/// The outputs of the per-sensor stage.
pub struct SensorStage<'scope> {
    /// Anomalies of the rolling detectors.
    pub anomalies: StreamVec<'scope, Epoch, Anomaly>,
    /// Completed e-nose cycles.
    pub cycles: StreamVec<'scope, Epoch, Cycle>,
    /// Readings flagged `suspect` or worse.
    pub flagged: StreamVec<'scope, Epoch, FlaggedReading>,
    /// Each sensor's first reading in each batch.
    pub presence: StreamVec<'scope, Epoch, SensorPresence>,
    /// The e-nose arrays' health, at each clean-air sample.
    pub health: StreamVec<'scope, Epoch, HealthReport>,
}

/// Runs the per-sensor kernels; every output is at the epoch of the
/// reading that completed it.
// The `Result`s built for `ok_err` are routed at once, never stored or
// propagated: boxing the records would only add an allocation.
#[allow(clippy::result_large_err)]
pub fn sensor_stage<'scope>(
    readings: StreamVec<'scope, Epoch, Reading>,
    config: SensorStageConfig,
) -> SensorStage<'scope> {
    let mut kernel = SensorKernels::new(config);
    let mut outputs = SensorOutputs::default();
    let output: StreamVec<'scope, Epoch, SensorOutput> =
        readings.sensor_epochs("SensorStage", move |readings, output| {
            kernel.process(readings, &mut outputs);
            let SensorOutputs {
                anomalies,
                cycles,
                flagged,
                presence,
                health,
            } = &mut outputs;
            output.extend(
                anomalies
                    .drain(..)
                    .map(SensorOutput::Anomaly)
                    .chain(cycles.drain(..).map(SensorOutput::Cycle))
                    .chain(flagged.drain(..).map(SensorOutput::Flagged))
                    .chain(presence.drain(..).map(SensorOutput::Presence))
                    .chain(health.drain(..).map(SensorOutput::Health)),
            );
        });
    let (anomalies, rest): (_, StreamVec<'scope, Epoch, SensorOutput>) =
        output.ok_err(|item| match item {
            SensorOutput::Anomaly(anomaly) => Ok(anomaly),
            other => Err(other),
        });
    let (cycles, rest): (_, StreamVec<'scope, Epoch, SensorOutput>) =
        rest.ok_err(|item| match item {
            SensorOutput::Cycle(cycle) => Ok(cycle),
            other => Err(other),
        });
    let (flagged, rest): (_, StreamVec<'scope, Epoch, SensorOutput>) =
        rest.ok_err(|item| match item {
            SensorOutput::Flagged(flagged) => Ok(flagged),
            other => Err(other),
        });
    let (presence, health) = rest.ok_err(|item| match item {
        SensorOutput::Presence(presence) => Ok(presence),
        SensorOutput::Health(report) => Err(report),
        _ => unreachable!("anomalies, cycles and flags were split off above"),
    });
    SensorStage {
        anomalies,
        cycles,
        flagged,
        presence,
        health,
    }
}
