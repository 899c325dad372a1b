//! Ground truth of a simulated run: what happened, when, and what the
//! foundation rule set is expected to decide about every batch.
//!
//! The truth is computed from the schedule alone, before any reading is
//! generated. Expected decisions follow the foundation rules (rolling
//! z-score, flat line and gap detectors with their default parameters, and
//! the default verdict policy):
//!
//! | event | expected decision | expected reasons |
//! |---|---|---|
//! | contamination | hold | `zscore` on every e-nose array of the line |
//! | sensor fault `stuck` | hold | `flat_line` on the sensor |
//! | sensor fault `spike` | hold | `zscore` on the sensor |
//! | sensor fault `dropout` | hold | `gap` on the sensor |
//! | process drift | release | none (too gentle for a rolling z-score) |
//! | none | release | none |

use scent_operators::model::{AnomalyRule, Decision, EventTimeMs, RejectReason};
use scent_operators::wire::format_timestamp;
use serde::{Deserialize, Serialize};

/// Everything a run contains that a perfect detector should find.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    /// Scheduled events, by start time then line.
    pub events: Vec<LabelledEvent>,
    /// Complete batches, by start time then line.
    pub batches: Vec<BatchTruth>,
    /// Malformed records, by index.
    pub malformed: Vec<MalformedTruth>,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// End of the event (exclusive).
    pub end_ms: EventTimeMs,
    /// The batch the event lies in.
    pub batch: String,
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
