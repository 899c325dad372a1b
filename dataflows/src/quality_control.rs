//! The quality-control dataflow: from ingested records to batch decisions.
//!
//! ```text
//! ingested ──┬─ rejected ──────────────────────────────────────────────────────────▶ dead letters
//!            ├─ readings ─▶ sensor stage ┬▶ flagged readings (QARTOD suspect/fail)    │
//!            │                           ├▶ rolling anomalies ──────────────────────┐
//!            │   (by sensor)             └▶ e-nose cycles ─┬▶ score fingerprints ────┤
//!            │                                            └▶ training ─▶ models ──┘│
//!            └─ batch events ─────────────────────────────────────────▶ training,  ▼
//!                                                                     batch verdicts ─▶ actions
//! ```
//!
//! Logical time is the event-time epoch assigned by the source
//! (`scent_operators::event_clock`). Readings are routed by `line/sensor`
//! so every sensor's state lives on one worker. From the exposure cycles
//! on, everything is a differential collection: the fingerprint models
//! (fitted by [`crate::training`]), the cycles joined with them, the
//! anomalies, and the batch verdicts (a reduce keyed by `(line, batch)`),
//! so a new model version re-scores cycles and revises verdicts
//! incrementally. The output is a function of the input alone: the number
//! of workers and the arrival order within the allowed lateness do not
//! change it.

use crate::sensor_stage::{sensor_stage, FlaggedReading};
use crate::training::{fingerprint_models, TrainingConfig};
use differential_dataflow::VecCollection;
use scent_operators::batch_verdict::{BatchVerdicts, IntoCollection, VerdictPolicy};
use scent_operators::event_clock::Epoch;
use scent_operators::exposure_cycles::{Cycle, CycleConfig};
use scent_operators::fingerprint::{FingerprintConfig, FingerprintModel, ScoreFingerprints};
use scent_operators::ingest::Ingested;
use scent_operators::model::{Action, Anomaly, BatchEvent, DeadLetter, Reading};
use scent_operators::qc_flags::QcConfig;
use scent_operators::rolling_anomaly::RollingAnomalyConfig;
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
    /// How anomalies become batch decisions.
    pub verdict: VerdictPolicy,
}

impl QualityControlConfig {
    /// The version of the rule set, recorded as evidence in every decision:
    /// the detector parameters that change what is decided.
    pub fn rules_version(&self) -> String {
        // The readable part names the detectors; the hash covers every
        // parameter (quality flags, cycles, fingerprints and their library,
        // training, verdict thresholds), so two decisions with the same
        // version were made by the same rules.
        let everything = serde_json::to_vec(self).expect("the configuration serialises");
        format!(
            "{}+fingerprint-v1+{}",
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
    /// Batch-release actions.
    pub actions: VecCollection<'scope, Epoch, Action>,
    /// Records rejected at ingest.
    pub dead_letters: StreamVec<'scope, Epoch, DeadLetter>,
}

enum Valid {
    Reading(Reading),
    Batch(BatchEvent),
}

/// Builds the quality-control dataflow over a stream of ingested records.
// The `Result`s built for `ok_err` are routed at once, never stored or
// propagated: boxing the dead letter would only add an allocation.
#[allow(clippy::result_large_err)]
pub fn quality_control<'scope>(
    ingested: StreamVec<'scope, Epoch, Ingested>,
    config: &QualityControlConfig,
) -> QualityControl<'scope> {
    let (valid, dead_letters): (StreamVec<'scope, Epoch, Valid>, _) =
        ingested.ok_err(|item| match item {
            Ingested::Reading { reading, .. } => Ok(Valid::Reading(reading)),
            Ingested::Batch { event, .. } => Ok(Valid::Batch(event)),
            Ingested::Rejected(letter) => Err(letter),
        });
    let (readings, batch_events): (StreamVec<'scope, Epoch, Reading>, _) =
        valid.ok_err(|item| match item {
            Valid::Reading(reading) => Ok(reading),
            Valid::Batch(event) => Err(event),
        });
    let mut policy = config.verdict.clone();
    if policy.rules_version.is_empty() {
        policy.rules_version = config.rules_version();
    }
    let stage = sensor_stage(
        readings.clone(),
        config.anomaly,
        config.cycles,
        config.quality.clone(),
    );
    let rolling = stage.anomalies;
    let cycles = stage.cycles.into_collection();
    let models = fingerprint_models(
        cycles.clone(),
        batch_events.clone().into_collection(),
        config.training,
        &config.fingerprint,
    );
    let fingerprint_anomalies = cycles
        .clone()
        .score_fingerprints(models.clone(), &config.fingerprint);
    let anomalies = rolling.into_collection().concat(fingerprint_anomalies);
    let actions = anomalies.clone().batch_verdicts(batch_events, policy);
    QualityControl {
        readings,
        flagged: stage.flagged,
        cycles,
        models,
        anomalies,
        actions,
        dead_letters,
    }
}
