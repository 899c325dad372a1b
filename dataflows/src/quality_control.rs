//! The quality-control dataflow: from ingested records to actions.
//!
//! ```text
//! ingested ──┬─ rejected ───────────────────────────────────────────────────────────────▶ dead letters
//!            ├─ (all) ─▶ input spans per batch ──────────────────────────────────────┐
//!            ├─ readings ─▶ sensor stage ┬▶ flagged readings (QARTOD suspect/fail)    │
//!            │   (by sensor)             ├▶ rolling anomalies ─────────────────────┐  │
//!            │                           ├▶ presence, array health ────────────────┤  │
//!            │                           └▶ e-nose cycles ─┬▶ score fingerprints ──┤  │
//!            │                                            ├▶ training ─▶ models ──┤  │
//!            │                                            └▶ quality index ─┐     │  │
//!            ├─ models (scent.models) ┬▶ forecast models ─────▶ forecasts ──┴─────┤  │
//!            │                        └▶ learned contaminants ─▶ library (joined with the alarms)
//!            └─ batch events ─────────────────────────────────────────────────────┴──┴▶ agents ─▶ actions
//! ```
//!
//! Logical time is the event-time epoch assigned by the source
//! (`scent_operators::event_clock`). Readings are routed by `line/sensor`
//! so every sensor's state lives on one worker. From the exposure cycles
//! on, everything is a differential collection: the fingerprint models
//! (fitted by [`crate::training`]), the cycles joined with them, the
//! anomalies, the agents' verdicts and the orchestrator's decisions
//! ([`crate::agents`]), so a new model version re-scores cycles and
//! revises decisions incrementally, until the batch seals. The output is a
//! function of the input alone: the number of workers and the arrival
//! order within the allowed lateness do not change it. Model records are
//! the exception: having no event time, one applies from the frontier at
//! which it is read.

use crate::agents::{agents, AgentInputs, Agents, AgentsConfig};
use crate::predictive::{
    line_forecasts, quality_index, ForecastModelUpdate, IndexPoint, LineForecast,
};
use crate::sensor_stage::{sensor_stage, FlaggedReading, SensorStageConfig};
use crate::training::{fingerprint_models, TrainingConfig};
use differential_dataflow::VecCollection;
use scent_operators::action_changelog::{ChangelogConfig, LateRevision};
use scent_operators::batch_verdict::{IntoCollection, VerdictPolicy};
use scent_operators::contaminant_library::LatestSignatures;
use scent_operators::event_clock::Epoch;
use scent_operators::exposure_cycles::{Cycle, CycleConfig};
use scent_operators::fingerprint::{
    ContaminantSignature, FingerprintConfig, FingerprintModel, ScoreFingerprints,
};
use scent_operators::ingest::Ingested;
use scent_operators::input_spans::BatchInputSpans;
use scent_operators::model::{Action, AgentVerdict, Anomaly, BatchEvent, DeadLetter, Reading};
use scent_operators::model_registry::{ModelContent, ModelRecord};
use scent_operators::qc_flags::QcConfig;
use scent_operators::rolling_anomaly::RollingAnomalyConfig;
use scent_operators::sensor_health::HealthConfig;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::StreamVec;

/// Parameters of the quality-control dataflow.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QualityControlConfig {
    /// QARTOD quality flags per sensor kind.
    pub quality: QcConfig,
    /// Rolling anomaly detectors.
    pub anomaly: RollingAnomalyConfig,
    /// Exposure cycles of the e-nose arrays.
    pub cycles: CycleConfig,
    /// Product fingerprints: model, limits, contaminant library.
    pub fingerprint: FingerprintConfig,
    /// Which batches train the fingerprints.
    pub training: TrainingConfig,
    /// How many findings of a rule hold a batch.
    pub verdict: VerdictPolicy,
    /// Clean-air health of the e-nose arrays.
    pub sensor_health: HealthConfig,
    /// The agents and the orchestrator.
    pub agents: AgentsConfig,
}

impl QualityControlConfig {
    /// The version of the rule set, recorded as evidence in every decision:
    /// the detector parameters that change what is decided.
    pub fn rules_version(&self) -> String {
        // The readable part names the detectors; the hash covers every
        // parameter (quality flags, cycles, fingerprints and their library,
        // training, verdict thresholds, sensor health, consensus policy),
        // so two decisions with the same version were made by the same
        // rules.
        let everything = serde_json::to_vec(self).expect("the configuration serialises");
        format!(
            "{}+fingerprint-v1+agents-v1+{}",
            self.anomaly.version(),
            &hex::encode(Sha256::digest(everything))[..12]
        )
    }
}

/// The streams and collections of the dataflow, for sinks and probes.
pub struct QualityControl<'scope> {
    /// Valid readings, as they entered.
    pub readings: StreamVec<'scope, Epoch, Reading>,
    /// Readings whose QARTOD flags are `suspect` or worse.
    pub flagged: StreamVec<'scope, Epoch, FlaggedReading>,
    /// Exposure cycles of the e-nose arrays.
    pub cycles: VecCollection<'scope, Epoch, Cycle>,
    /// The fingerprint model each batch is scored against, per array:
    /// `(batch, model)`.
    pub models: VecCollection<'scope, Epoch, (String, FingerprintModel)>,
    /// Anomalies of every detector.
    pub anomalies: VecCollection<'scope, Epoch, Anomaly>,
    /// The quality index of every line, per cycle window.
    pub index: VecCollection<'scope, Epoch, IndexPoint>,
    /// The predictive agent's forecasts.
    pub forecasts: VecCollection<'scope, Epoch, LineForecast>,
    /// Every agent's current verdict on every batch.
    pub verdicts: VecCollection<'scope, Epoch, AgentVerdict>,
    /// The actions to send (the changelog: revisions, seals).
    pub actions: VecCollection<'scope, Epoch, Action>,
    /// Changes of sealed batches that were refused.
    pub late_revisions: StreamVec<'scope, Epoch, LateRevision>,
    /// Records rejected at ingest.
    pub dead_letters: StreamVec<'scope, Epoch, DeadLetter>,
}

enum Valid {
    Reading(Reading),
    Batch(BatchEvent),
    Model(ModelRecord),
}

/// Builds the quality-control dataflow over a stream of ingested records;
/// `changelog` says when batches seal (the allowed lateness and the epoch
/// width of the event clock).
// The `Result`s built for `ok_err` are routed at once, never stored or
// propagated: boxing the dead letter would only add an allocation.
#[allow(clippy::result_large_err)]
pub fn quality_control<'scope>(
    ingested: StreamVec<'scope, Epoch, Ingested>,
    config: &QualityControlConfig,
    changelog: ChangelogConfig,
) -> QualityControl<'scope> {
    let spans = ingested.clone().batch_input_spans();
    let (valid, dead_letters): (StreamVec<'scope, Epoch, Valid>, _) =
        ingested.ok_err(|item| match item {
            Ingested::Reading { reading, .. } => Ok(Valid::Reading(reading)),
            Ingested::Batch { event, .. } => Ok(Valid::Batch(event)),
            Ingested::Model { record, .. } => Ok(Valid::Model(record)),
            Ingested::Rejected(letter) => Err(letter),
        });
    let (readings, rest): (
        StreamVec<'scope, Epoch, Reading>,
        StreamVec<'scope, Epoch, Valid>,
    ) = valid.ok_err(|item| match item {
        Valid::Reading(reading) => Ok(reading),
        other => Err(other),
    });
    let (batch_events, model_records): (
        StreamVec<'scope, Epoch, BatchEvent>,
        StreamVec<'scope, Epoch, ModelRecord>,
    ) = rest.ok_err(|item| match item {
        Valid::Batch(event) => Ok(event),
        Valid::Model(record) => Err(record),
        Valid::Reading(_) => unreachable!("readings were split off above"),
    });
    let (forecast_models, learned_contaminants): (
        StreamVec<'scope, Epoch, ForecastModelUpdate>,
        StreamVec<'scope, Epoch, ContaminantSignature>,
    ) = model_records.ok_err(|record: ModelRecord| match record.content {
        ModelContent::Forecast {
            product,
            model_json,
        } => Ok(ForecastModelUpdate {
            product,
            version: record.version,
            model_json,
        }),
        ModelContent::Contaminant { signature } => Err(signature),
    });
    // The shared library: the configured signatures (entered once, by the
    // first worker) and the latest learned signature of every name.
    let scope = forecast_models.scope();
    let configured = match scope.index() {
        0 => config.fingerprint.contaminants.clone(),
        _ => Vec::new(),
    };
    let library = timely::dataflow::operators::vec::ToStream::to_stream(configured, scope)
        .into_collection()
        .concat(learned_contaminants.latest_signatures());
    let mut policy = config.verdict.clone();
    if policy.rules_version.is_empty() {
        policy.rules_version = config.rules_version();
    }
    let stage = sensor_stage(
        readings.clone(),
        SensorStageConfig {
            anomaly: config.anomaly,
            cycles: config.cycles,
            quality: config.quality.clone(),
            health: config.sensor_health.clone(),
        },
    );
    let batch_events = batch_events.into_collection();
    let cycles = stage.cycles.into_collection();
    let models = fingerprint_models(
        cycles.clone(),
        batch_events.clone(),
        config.training,
        &config.fingerprint,
    );
    let fingerprints =
        cycles
            .clone()
            .score_fingerprints(models.clone(), library, config.fingerprint.min_match);
    let anomalies = stage
        .anomalies
        .into_collection()
        .concat(fingerprints.anomalies);
    let index = quality_index(cycles.clone(), models.clone(), config.cycles.cycle_ms);
    let forecasts = line_forecasts(index.clone(), forecast_models, &config.agents.predictive);
    let agents = match config.agents.enabled {
        true => agents(
            AgentInputs {
                batch_events,
                anomalies: anomalies.clone(),
                presence: stage.presence.into_collection(),
                health: stage.health.into_collection(),
                models: models.clone(),
                signatures: fingerprints.signatures,
                forecasts: forecasts.clone(),
                spans,
            },
            &policy,
            &config.agents,
            changelog,
        ),
        false => Agents {
            verdicts: nothing(anomalies.inner.scope()),
            actions: nothing(anomalies.inner.scope()),
            late_revisions: timely::dataflow::operators::vec::ToStream::to_stream(
                Vec::new(),
                anomalies.inner.scope(),
            ),
        },
    };
    QualityControl {
        readings,
        flagged: stage.flagged,
        cycles,
        models,
        anomalies,
        index,
        forecasts,
        verdicts: agents.verdicts,
        actions: agents.actions,
        late_revisions: agents.late_revisions,
        dead_letters,
    }
}

/// An empty collection: the outputs of the agents when they are disabled.
fn nothing<'scope, D: Clone + 'static>(
    scope: timely::dataflow::Scope<'scope, Epoch>,
) -> VecCollection<'scope, Epoch, D> {
    use differential_dataflow::AsCollection;
    timely::dataflow::operators::vec::ToStream::to_stream(Vec::<(D, Epoch, isize)>::new(), scope)
        .as_collection()
}
