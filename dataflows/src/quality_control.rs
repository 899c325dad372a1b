//! The quality-control dataflow: from ingested records to batch decisions.
//!
//! ```text
//! ingested ──┬─ rejected ───────────────────────────────────────────▶ dead letters
//!            ├─ readings ─▶ exchange by sensor ─▶ rolling anomalies ─┐
//!            └─ batch events ────────────────────────────────────────┴▶ batch verdicts ─▶ actions
//! ```
//!
//! Logical time is the event-time epoch assigned by the source
//! (`scent_operators::event_clock`). Readings are routed by `line/sensor`
//! so every sensor's state lives on one worker; batch verdicts are a
//! differential reduce keyed by `(line, batch)`. The output is a function
//! of the input alone: the number of workers and the arrival order within
//! the allowed lateness do not change it.

use differential_dataflow::VecCollection;
use scent_operators::batch_verdict::{BatchVerdicts, VerdictPolicy};
use scent_operators::event_clock::Epoch;
use scent_operators::ingest::Ingested;
use scent_operators::model::{Action, Anomaly, BatchEvent, DeadLetter, Reading};
use scent_operators::rolling_anomaly::{RollingAnomalies, RollingAnomalyConfig};
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::StreamVec;

/// Parameters of the quality-control dataflow.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QualityControlConfig {
    /// Rolling anomaly detectors.
    pub anomaly: RollingAnomalyConfig,
    /// How anomalies become batch decisions.
    pub verdict: VerdictPolicy,
}

/// The streams and collections of the dataflow, for sinks and probes.
pub struct QualityControl<'scope> {
    /// Valid readings, as they entered.
    pub readings: StreamVec<'scope, Epoch, Reading>,
    /// Anomalies raised by the rolling detectors.
    pub anomalies: StreamVec<'scope, Epoch, Anomaly>,
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
        policy.rules_version = config.anomaly.version();
    }
    let anomalies = readings.clone().rolling_anomalies(config.anomaly);
    let actions = anomalies.clone().batch_verdicts(batch_events, policy);
    QualityControl {
        readings,
        anomalies,
        actions,
        dead_letters,
    }
}
