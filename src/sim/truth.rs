//! Ground truth of a simulated run: what happened, when, what the decision
//! layer is expected to decide about every batch, and which maintenance the
//! sensors need.
//!
//! The truth is computed from the schedule alone, before any reading is
//! generated. A finding that comes from an instrument (a sensor fault or a
//! sensor drift) leads to maintenance, not to a product hold, as long as
//! the product stays monitored by a healthy sensor; a contamination of the
//! product holds it:
//!
//! | event | expected decision | expected reasons | expected maintenance |
//! |---|---|---|---|
//! | contamination | hold | `zscore` on every e-nose array of the line (see below) | none |
//! | `stuck` / `dropout` on a sensor with a sibling of its kind on the line (an e-nose array beside another) | release | none | `repair` of the sensor |
//! | `stuck` / `dropout` on the only sensor of its kind on the line (every process sensor; the e-nose array of a one-array line) | hold: monitoring was lost, QA reviews the batch | `flat_line` / `gap` on the sensor | `repair` of the sensor |
//! | `spike` (any sensor) | release: isolated spikes are instrument noise | none | `inspect` of the sensor |
//! | process drift | release (too gentle for a rolling z-score) | none | none |
//! | sensor drift | release | none | `calibrate` of the array, due when the drift reaches 1 % of the baseline, in a gap between batches |
//! | none | release | none | none |
//!
//! Expected reasons name the rules of the foundation detectors (rolling
//! z-score, flat line, gap, with their default parameters) on the sensor
//! they fire on. A contamination is listed as `zscore` on every e-nose
//! array of the line; the fingerprint dataflow flags the same arrays with
//! its fingerprint rules (`t2`, `spe`, `similarity`) and names the
//! contaminant with `contaminant`, which `scent eval sim` scores from the
//! event's [`LabelledEvent::contaminant`]. A batch with several events is
//! held when any of them holds it, with the union of their reasons.
//!
//! Each sensor fault and each sensor drift gives one
//! [`ExpectedMaintenance`], due when the fault starts, or for a drift
//! `start + 1 % / rate` (when the accumulated drift reaches 1 % of the
//! baseline); its window is the first gap between batches of the line (a
//! changeover, or the time before the first or after the last batch) that
//! ends after the due time, from the later of its start and the due time.

use scent_operators::model::{AnomalyRule, Decision, EventTimeMs, RejectReason};
use scent_operators::wire::format_timestamp;
use serde::{Deserialize, Serialize};

/// Everything a run contains that a perfect detector should find.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    /// Scheduled events and sensor drifts, by start time then line.
    pub events: Vec<LabelledEvent>,
    /// Complete batches, by start time then line.
    pub batches: Vec<BatchTruth>,
    /// Malformed records, by index.
    pub malformed: Vec<MalformedTruth>,
    /// Maintenance the sensors need: one per sensor fault and per sensor
    /// drift, by due time, then line, then sensor (plant order).
    #[serde(default)]
    pub maintenance: Vec<ExpectedMaintenance>,
}

/// What kind of event happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A contaminant reached the e-nose arrays of a line.
    Contamination,
    /// A sensor misbehaved; see [`FaultMode`].
    SensorFault,
    /// The process temperature drifted.
    ProcessDrift,
    /// The clean-air baseline of an e-nose array drifted upwards from
    /// `start_ms` to the end of the run; see
    /// [`LabelledEvent::rate_pct_per_hour`].
    SensorDrift,
}

/// How a faulty sensor misbehaved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultMode {
    /// It repeated its last emitted values exactly.
    Stuck,
    /// It emitted isolated spikes.
    Spike,
    /// It emitted nothing.
    Dropout,
}

/// One scheduled event and its extent in plant time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelledEvent {
    /// Identifier, unique within the run, e.g. `EV-L2-0003`.
    pub id: String,
    /// What happened.
    pub kind: EventKind,
    /// How the sensor failed, for sensor faults.
    pub mode: Option<FaultMode>,
    /// The line.
    pub line: String,
    /// The affected sensor; `None` for a contamination (every e-nose array
    /// of the line is affected).
    pub sensor: Option<String>,
    /// The contaminant, for a contamination.
    pub contaminant: Option<String>,
    /// First affected plant time (inclusive).
    pub start_ms: EventTimeMs,
    /// End of the event (exclusive); for a sensor drift, the end of the run.
    pub end_ms: EventTimeMs,
    /// The batch the event lies in; for a sensor drift, the batch it starts
    /// in, or the first batch after its start when it starts outside a
    /// batch (in a changeover).
    pub batch: String,
    /// For a sensor drift: the baseline's rise, in percent of the baseline
    /// per hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_pct_per_hour: Option<f64>,
}

impl LabelledEvent {
    /// A one-line human description, e.g.
    /// `contamination (mould) on L2 2026-11-24T10:23:00.000Z..10:25:30.000Z`.
    pub fn describe(&self) -> String {
        let what = match (self.kind, self.mode) {
            (EventKind::Contamination, _) => format!(
                "contamination ({}) on {}",
                self.contaminant.as_deref().unwrap_or("unknown"),
                self.line
            ),
            (EventKind::SensorFault, mode) => format!(
                "{} fault on {}/{}",
                match mode {
                    Some(FaultMode::Stuck) => "stuck",
                    Some(FaultMode::Spike) => "spike",
                    Some(FaultMode::Dropout) => "dropout",
                    None => "sensor",
                },
                self.line,
                self.sensor.as_deref().unwrap_or("?")
            ),
            (EventKind::ProcessDrift, _) => format!(
                "process drift (+0.8 °C) on {}/{}",
                self.line,
                self.sensor.as_deref().unwrap_or("?")
            ),
            (EventKind::SensorDrift, _) => format!(
                "sensor drift (baseline +{:.2} %/h) on {}/{}",
                self.rate_pct_per_hour.unwrap_or(f64::NAN),
                self.line,
                self.sensor.as_deref().unwrap_or("?")
            ),
        };
        let end = format_timestamp(self.end_ms);
        let end_time = end.split_once('T').map_or(end.as_str(), |(_, time)| time);
        format!("{what} {}..{end_time}", format_timestamp(self.start_ms))
    }
}

/// A rule expected to hold a batch, on one sensor.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ExpectedReason {
    /// The sensor the rule fires on.
    pub sensor: String,
    /// The rule.
    pub rule: AnomalyRule,
}

/// One complete batch and the decision expected for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchTruth {
    /// Batch identifier, e.g. `B-L1-0004`.
    pub batch: String,
    /// Its line.
    pub line: String,
    /// Its product.
    pub product: String,
    /// Batch start (the `start` event's time).
    pub start_ms: EventTimeMs,
    /// Batch end (the `end` event's time).
    pub end_ms: EventTimeMs,
    /// Ids of the events inside the batch.
    pub events: Vec<String>,
    /// What the foundation rule set should decide.
    pub expected_decision: Decision,
    /// The reasons it should give, sorted by sensor then rule.
    pub expected_reasons: Vec<ExpectedReason>,
}

/// What a sensor needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaintenanceKind {
    /// It failed (stuck or silent): repair or replace it.
    Repair,
    /// It spiked: inspect it (wiring, contacts, electronics).
    Inspect,
    /// Its baseline drifted: calibrate it in clean air.
    Calibrate,
}

/// One maintenance action a sensor needs, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedMaintenance {
    /// The line.
    pub line: String,
    /// The sensor.
    pub sensor: String,
    /// What to do.
    pub kind: MaintenanceKind,
    /// Id of the event that calls for it (a sensor fault or drift).
    pub event: String,
    /// When it becomes due: the fault's start, or for a drift the time its
    /// accumulated drift reaches 1 % of the baseline (may lie after the end
    /// of the run).
    pub due_ms: EventTimeMs,
    /// Start of the first gap between batches of the line that ends after
    /// `due_ms`, or `due_ms` itself when that gap is already open; `None`
    /// when the run has no such gap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start_ms: Option<EventTimeMs>,
    /// End of that gap (the next batch start, or the end of the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_end_ms: Option<EventTimeMs>,
}

/// One injected malformed record and the reason it must be rejected for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MalformedTruth {
    /// Position among the malformed records of the run (records are spread
    /// evenly over plant time in index order, shifted past dropouts).
    pub index: usize,
    /// Kafka key: that of the reading the record was derived from.
    pub key: String,
    /// Event time of that reading; the record follows it in its stream.
    pub ts_ms: EventTimeMs,
    /// The exact bytes, hex-encoded in JSON.
    #[serde(with = "hex_bytes")]
    pub payload: Vec<u8>,
    /// The rejection reason the ingest stage must give.
    pub expected_reason: RejectReason,
}

/// Lower-case hex of `bytes`.
pub fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// Bytes of hex text (either case); `None` if the text is not hex.
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |digit: u8| char::from(digit).to_digit(16).map(|value| value as u8);
    digits
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

/// Serde adapter: bytes as a hex string.
mod hex_bytes {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::encode_hex(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::decode_hex(&text).ok_or_else(|| D::Error::custom("payload is not a hex string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let bytes: Vec<u8> = (0..=255).collect();
        let text = encode_hex(&bytes);
        assert_eq!(&text[..6], "000102");
        assert_eq!(decode_hex(&text).unwrap(), bytes);
        assert_eq!(decode_hex("FFfe").unwrap(), vec![0xff, 0xfe]);
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
    }

    #[test]
    fn malformed_truth_serialises_payload_as_hex() {
        let truth = MalformedTruth {
            index: 0,
            key: "L1/enose-1".into(),
            ts_ms: 1,
            payload: vec![0xff, b'{'],
            expected_reason: RejectReason::InvalidUtf8,
        };
        let json = serde_json::to_string(&truth).unwrap();
        assert!(json.contains("\"payload\":\"ff7b\""), "{json}");
        assert!(
            json.contains("\"expected_reason\":\"invalid_utf8\""),
            "{json}"
        );
        assert_eq!(
            serde_json::from_str::<MalformedTruth>(&json).unwrap(),
            truth
        );
    }
}
