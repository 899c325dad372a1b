//! The vocabulary of scent: readings, batch lifecycle events, anomalies,
//! verdicts, actions and dead letters.
//!
//! These types are plain data. They cross timely channels (so they are
//! `Clone + Ord + Serialize + Deserialize`), they are what the Kafka codecs
//! read and write (see `docs/wire-format.md`), and they are what the archive
//! stores. Event time is always integer milliseconds since the Unix epoch
//! (`*_ms` fields); wall-clock time never enters a decision.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Implements `PartialEq`, `Eq` and `PartialOrd` from a type's `Ord`, so
/// all four agree. Types with `f64` fields order them with
/// `f64::total_cmp`: the dataflows sort and consolidate these records, which
/// needs a total order, and validated values are never NaN.
macro_rules! total_order_from_ord {
    ($type:ty) => {
        impl PartialEq for $type {
            fn eq(&self, other: &Self) -> bool {
                self.cmp(other) == std::cmp::Ordering::Equal
            }
        }
        impl Eq for $type {}
        impl PartialOrd for $type {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
    };
}
pub(crate) use total_order_from_ord;

/// Orders two value vectors element by element with `f64::total_cmp`, a
/// shorter prefix first: the total order of records that carry readings'
/// values.
pub fn total_cmp_values(a: &[f64], b: &[f64]) -> std::cmp::Ordering {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.total_cmp(y))
        .find(|order| order.is_ne())
        .unwrap_or_else(|| a.len().cmp(&b.len()))
}

/// Milliseconds since the Unix epoch, UTC: the event time of every record.
pub type EventTimeMs = i64;

/// The physical quantity a sensor measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SensorKind {
    /// An electronic-nose array of gas sensors (metal-oxide or similar),
    /// one value per channel, in arbitrary conductance/resistance units.
    Enose,
    /// Process temperature in degrees Celsius.
    Temperature,
    /// Relative humidity in percent.
    Humidity,
    /// Absolute pressure in kilopascal.
    Pressure,
    /// Acidity, pH units.
    Ph,
    /// Volumetric flow in litres per minute.
    Flow,
}

impl SensorKind {
    /// Every kind, in wire order.
    pub const ALL: [SensorKind; 6] = [
        SensorKind::Enose,
        SensorKind::Temperature,
        SensorKind::Humidity,
        SensorKind::Pressure,
        SensorKind::Ph,
        SensorKind::Flow,
    ];

    /// The name used on the wire and in labels.
    pub fn as_str(self) -> &'static str {
        match self {
            SensorKind::Enose => "enose",
            SensorKind::Temperature => "temperature",
            SensorKind::Humidity => "humidity",
            SensorKind::Pressure => "pressure",
            SensorKind::Ph => "ph",
            SensorKind::Flow => "flow",
        }
    }

    /// Parses a wire name; `None` for an unknown kind.
    pub fn parse(name: &str) -> Option<SensorKind> {
        SensorKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }

    /// Whether readings of this kind carry exactly one value.
    pub fn is_scalar(self) -> bool {
        self != SensorKind::Enose
    }
}

impl fmt::Display for SensorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One measurement of one sensor: the unit of `scent.readings`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reading {
    /// Plant identifier.
    pub plant: String,
    /// Production line within the plant.
    pub line: String,
    /// Sensor identifier, unique within its line.
    pub sensor: String,
    /// What the sensor measures.
    pub kind: SensorKind,
    /// Event time of the measurement.
    pub ts_ms: EventTimeMs,
    /// Per-sensor sequence number assigned by the gateway; strictly increasing.
    pub seq: u64,
    /// The batch in production on the line when the reading was taken, if any.
    pub batch: Option<String>,
    /// The product of that batch, if any.
    pub product: Option<String>,
    /// One value for scalar sensors, one per channel for an e-nose array.
    pub values: Vec<f64>,
}

impl Reading {
    /// The Kafka key of the reading: `line/sensor`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.line, self.sensor)
    }
}

total_order_from_ord!(Reading);
impl Ord for Reading {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.line, &self.sensor, self.ts_ms, self.seq)
            .cmp(&(&other.line, &other.sensor, other.ts_ms, other.seq))
            .then_with(|| self.plant.cmp(&other.plant))
            .then_with(|| self.kind.cmp(&other.kind))
            .then_with(|| self.batch.cmp(&other.batch))
            .then_with(|| self.product.cmp(&other.product))
            .then_with(|| total_cmp_values(&self.values, &other.values))
    }
}

/// Whether a batch starts or ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchPhase {
    /// Production of the batch begins on its line.
    Start,
    /// Production of the batch is complete; a release decision is due.
    End,
}

/// A batch lifecycle event from the MES: the unit of `scent.batches`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BatchEvent {
    /// Batch identifier, unique within the plant.
    pub batch: String,
    /// Line producing the batch.
    pub line: String,
    /// Product being made.
    pub product: String,
    /// Start or end.
    pub event: BatchPhase,
    /// Event time.
    pub ts_ms: EventTimeMs,
}

/// Where a record came from: enough to find it again in Kafka or a file.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SourceCoord {
    /// Topic (or input name for in-process sources).
    pub topic: String,
    /// Partition within the topic.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
}

impl fmt::Display for SourceCoord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.topic, self.partition, self.offset)
    }
}

/// A record as it arrives, before decoding: the input of every dataflow.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RawRecord {
    /// Which input stream the record belongs to.
    pub stream: InputStream,
    /// Its origin.
    pub source: SourceCoord,
    /// The record key, if any.
    pub key: Option<Vec<u8>>,
    /// The record value, exactly as received.
    pub payload: Vec<u8>,
}

/// The input streams of the quality-control dataflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputStream {
    /// Sensor readings (`scent.readings`).
    Readings,
    /// Batch lifecycle events (`scent.batches`).
    Batches,
    /// Trained models (`scent.models`, compacted).
    Models,
}

impl InputStream {
    /// The name used in DLQ headers and the archive.
    pub fn as_str(self) -> &'static str {
        match self {
            InputStream::Readings => "readings",
            InputStream::Batches => "batches",
            InputStream::Models => "models",
        }
    }

    /// Parses a stream name.
    pub fn parse(name: &str) -> Option<InputStream> {
        [
            InputStream::Readings,
            InputStream::Batches,
            InputStream::Models,
        ]
        .into_iter()
        .find(|stream| stream.as_str() == name)
    }
}

/// The stage of the pipeline that rejected a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Bytes to structure: UTF-8, JSON, field types.
    Decode,
    /// Structure to meaning: ranges, finiteness, channel counts, timestamps.
    Validate,
    /// Arrival later than the allowed lateness.
    Late,
    /// A sequence number seen before for the same sensor.
    Duplicate,
    /// A record that passed ingest but could not be processed or stored
    /// downstream (for example refused by the archive database).
    Process,
}

impl Stage {
    /// The name used in DLQ headers and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Validate => "validate",
            Stage::Late => "late",
            Stage::Duplicate => "duplicate",
            Stage::Process => "process",
        }
    }

    /// Every stage.
    pub const ALL: [Stage; 5] = [
        Stage::Decode,
        Stage::Validate,
        Stage::Late,
        Stage::Duplicate,
        Stage::Process,
    ];

    /// Parses a stage name.
    pub fn parse(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|stage| stage.as_str() == name)
    }
}

/// Why a record was rejected: a stable code for machines, plus detail text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The payload is not valid UTF-8.
    InvalidUtf8,
    /// The payload is not valid JSON.
    InvalidJson,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong JSON type.
    WrongType,
    /// The `kind` names no known sensor kind.
    UnknownSensorKind,
    /// The timestamp is neither RFC 3339 nor integer epoch milliseconds.
    BadTimestamp,
    /// The timestamp lies outside the accepted range (2000 to 2100 by default).
    TimestampOutOfRange,
    /// The payload exceeds the configured size limit.
    Oversized,
    /// A value is NaN or infinite.
    NonFinite,
    /// A value is outside the physical range of its sensor kind.
    OutOfRange,
    /// The number of values does not fit the sensor kind.
    ChannelCount,
    /// An identifier (plant, line, sensor, batch, product) is empty, too
    /// long, holds control characters, or holds `/` where keys are built.
    BadIdentifier,
    /// The record arrived after its event time was sealed.
    Late,
    /// The sensor's sequence number was already seen.
    DuplicateSequence,
    /// The archive database refused a record that passed ingest.
    Unarchivable,
}

impl RejectReason {
    /// Every reason, for metric pre-registration and documentation.
    pub const ALL: [RejectReason; 15] = [
        RejectReason::InvalidUtf8,
        RejectReason::InvalidJson,
        RejectReason::MissingField,
        RejectReason::WrongType,
        RejectReason::UnknownSensorKind,
        RejectReason::BadTimestamp,
        RejectReason::TimestampOutOfRange,
        RejectReason::Oversized,
        RejectReason::NonFinite,
        RejectReason::OutOfRange,
        RejectReason::ChannelCount,
        RejectReason::BadIdentifier,
        RejectReason::Late,
        RejectReason::DuplicateSequence,
        RejectReason::Unarchivable,
    ];

    /// The stable code used in DLQ headers and metric labels.
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::MissingField => "missing_field",
            RejectReason::WrongType => "wrong_type",
            RejectReason::UnknownSensorKind => "unknown_sensor_kind",
            RejectReason::BadTimestamp => "bad_timestamp",
            RejectReason::TimestampOutOfRange => "timestamp_out_of_range",
            RejectReason::Oversized => "oversized",
            RejectReason::NonFinite => "non_finite",
            RejectReason::OutOfRange => "out_of_range",
            RejectReason::ChannelCount => "channel_count",
            RejectReason::BadIdentifier => "bad_identifier",
            RejectReason::Late => "late",
            RejectReason::DuplicateSequence => "duplicate_sequence",
            RejectReason::Unarchivable => "unarchivable",
        }
    }

    /// Parses a stable code.
    pub fn parse(code: &str) -> Option<RejectReason> {
        RejectReason::ALL.into_iter().find(|r| r.code() == code)
    }

    /// The stage that detects this reason.
    pub fn stage(self) -> Stage {
        match self {
            RejectReason::InvalidUtf8
            | RejectReason::InvalidJson
            | RejectReason::MissingField
            | RejectReason::WrongType
            | RejectReason::UnknownSensorKind
            | RejectReason::BadTimestamp
            | RejectReason::Oversized => Stage::Decode,
            RejectReason::TimestampOutOfRange
            | RejectReason::NonFinite
            | RejectReason::OutOfRange
            | RejectReason::ChannelCount
            | RejectReason::BadIdentifier => Stage::Validate,
            RejectReason::Late => Stage::Late,
            RejectReason::DuplicateSequence => Stage::Duplicate,
            RejectReason::Unarchivable => Stage::Process,
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A rejection: which stage refused a record, the reason code, and detail.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Rejection {
    /// The stage that refused the record.
    pub stage: Stage,
    /// The stable reason code.
    pub reason: RejectReason,
    /// Human-readable detail, e.g. the field and the offending value.
    pub detail: String,
}

impl Rejection {
    /// A rejection at `stage` for `reason`, with detail text.
    pub fn new(stage: Stage, reason: RejectReason, detail: impl Into<String>) -> Self {
        Rejection {
            stage,
            reason,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}: {}",
            self.stage.as_str(),
            self.reason,
            self.detail
        )
    }
}

/// A rejected record with everything needed to find, explain and replay it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The original record, bytes untouched.
    pub record: RawRecord,
    /// Why it was rejected.
    pub rejection: Rejection,
}

/// The detection rule that raised an anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyRule {
    /// A value far from its rolling mean, in rolling standard deviations.
    #[serde(rename = "zscore")]
    ZScore,
    /// A channel whose value has not changed over the whole window.
    FlatLine,
    /// A gap in the sensor's readings longer than the configured limit.
    Gap,
    /// An e-nose cycle's Hotelling T² beyond its product fingerprint's limit.
    #[serde(rename = "t2")]
    HotellingT2,
    /// An e-nose cycle's squared prediction error beyond its fingerprint's limit.
    Spe,
    /// An e-nose cycle's cosine similarity to its product fingerprint below the floor
    /// (the statistic is the dissimilarity `1 − cos`).
    Similarity,
    /// An alarming e-nose cycle matched a contaminant of the library
    /// (the statistic is the cosine of the match).
    Contaminant,
}

impl AnomalyRule {
    /// The name used in reasons, labels and evidence.
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyRule::ZScore => "zscore",
            AnomalyRule::FlatLine => "flat_line",
            AnomalyRule::Gap => "gap",
            AnomalyRule::HotellingT2 => "t2",
            AnomalyRule::Spe => "spe",
            AnomalyRule::Similarity => "similarity",
            AnomalyRule::Contaminant => "contaminant",
        }
    }
}

impl fmt::Display for AnomalyRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One anomalous reading, with the rule, statistic and channels behind it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Anomaly {
    /// Line of the sensor.
    pub line: String,
    /// The sensor.
    pub sensor: String,
    /// Its kind.
    pub kind: SensorKind,
    /// Batch in production, if any.
    pub batch: Option<String>,
    /// Event time of the anomalous reading.
    pub ts_ms: EventTimeMs,
    /// Sequence number of the anomalous reading.
    pub seq: u64,
    /// The rule that fired.
    pub rule: AnomalyRule,
    /// The rule's statistic (|z| for z-score, the run of identical values for flat line,
    /// gap length in seconds for gaps).
    pub statistic: f64,
    /// The limit the statistic crossed.
    pub limit: f64,
    /// Channels contributing most, strongest first (at most a few).
    pub channels: Vec<u16>,
    /// The contaminant matched, for `contaminant` anomalies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contaminant: Option<String>,
}

total_order_from_ord!(Anomaly);
impl Ord for Anomaly {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.line, &self.sensor, self.ts_ms, self.seq, self.rule)
            .cmp(&(
                &other.line,
                &other.sensor,
                other.ts_ms,
                other.seq,
                other.rule,
            ))
            .then_with(|| self.kind.cmp(&other.kind))
            .then_with(|| self.batch.cmp(&other.batch))
            .then_with(|| self.statistic.total_cmp(&other.statistic))
            .then_with(|| self.limit.total_cmp(&other.limit))
            .then_with(|| self.channels.cmp(&other.channels))
            .then_with(|| self.contaminant.cmp(&other.contaminant))
    }
}

/// What kind of decision an action carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Release, hold or reject a completed batch.
    BatchRelease,
    /// Stop a line now.
    HoldLine,
    /// Calibrate or replace a sensor.
    ScheduleMaintenance,
    /// Inform operators; no product decision.
    Alert,
}

/// The decision of a `batch_release` action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The batch may ship.
    Release,
    /// The batch waits for a human review.
    Hold,
    /// The batch must not ship.
    Reject,
}

impl Decision {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Release => "release",
            Decision::Hold => "hold",
            Decision::Reject => "reject",
        }
    }
}

/// One reason behind a decision: a rule that fired on a sensor, how often
/// and how strongly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reason {
    /// The sensor the rule fired on.
    pub sensor: String,
    /// Its kind.
    pub kind: SensorKind,
    /// The rule.
    pub rule: AnomalyRule,
    /// How many readings of the batch the rule flagged.
    pub count: u64,
    /// Strongest statistic seen.
    pub max_statistic: f64,
    /// The limit of the rule.
    pub limit: f64,
    /// Event time of the first flagged reading.
    pub first_ts_ms: EventTimeMs,
    /// Event time of the last flagged reading.
    pub last_ts_ms: EventTimeMs,
    /// Channels that contributed most across the flagged readings.
    pub channels: Vec<u16>,
    /// The contaminant most often matched, for `contaminant` reasons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contaminant: Option<String>,
}

impl Reason {
    /// A one-line human summary, e.g. `enose-1 zscore x12 (max 9.1 > 6)` or
    /// `enose-2 contaminant solvent x14 (max 0.998 > 0.8)`.
    pub fn summary(&self) -> String {
        let rule = match &self.contaminant {
            Some(name) => format!("{} {name}", self.rule),
            None => self.rule.to_string(),
        };
        format!(
            "{} {rule} x{} (max {} > {})",
            self.sensor,
            self.count,
            significant(self.max_statistic),
            significant(self.limit)
        )
    }
}

/// A number with three significant digits, for people: `94852`, `47.2`,
/// `0.998`, `8.70e-6`.
fn significant(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value}");
    }
    let magnitude = value.abs().log10().floor() as i32;
    if magnitude < -3 {
        format!("{value:.2e}")
    } else {
        let decimals = (2 - magnitude).max(0) as usize;
        format!("{value:.decimals$}")
    }
}

total_order_from_ord!(Reason);
impl Ord for Reason {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (
            &self.sensor,
            self.rule,
            self.kind,
            self.count,
            self.first_ts_ms,
        )
            .cmp(&(
                &other.sensor,
                other.rule,
                other.kind,
                other.count,
                other.first_ts_ms,
            ))
            .then_with(|| self.max_statistic.total_cmp(&other.max_statistic))
            .then_with(|| self.limit.total_cmp(&other.limit))
            .then_with(|| self.last_ts_ms.cmp(&other.last_ts_ms))
            .then_with(|| self.channels.cmp(&other.channels))
            .then_with(|| self.contaminant.cmp(&other.contaminant))
    }
}

/// The agents that judge a batch (see `scent_dataflows::agents`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Agent {
    /// Judges the product: fingerprints, contaminant matches, sustained
    /// excursions.
    Quality,
    /// Judges where the line's quality index is heading: forecasts.
    Predictive,
    /// Judges the instruments: sensor faults and health.
    Maintenance,
}

impl Agent {
    /// Every agent, in consensus order.
    pub const ALL: [Agent; 3] = [Agent::Quality, Agent::Predictive, Agent::Maintenance];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Agent::Quality => "quality",
            Agent::Predictive => "predictive",
            Agent::Maintenance => "maintenance",
        }
    }
}

impl fmt::Display for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An agent's judgement of a batch, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Assessment {
    /// Nothing found that speaks against the batch.
    Pass,
    /// Something found that a reviewer should see, not enough to hold.
    Suspect,
    /// Enough found to hold the batch.
    Fail,
}

impl Assessment {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Assessment::Pass => "pass",
            Assessment::Suspect => "suspect",
            Assessment::Fail => "fail",
        }
    }
}

/// One agent's verdict on one batch, with what it rests on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AgentVerdict {
    /// The agent.
    pub agent: Agent,
    /// The line.
    pub line: String,
    /// The batch.
    pub batch: String,
    /// Pass, suspect or fail.
    pub assessment: Assessment,
    /// A critical finding: escalates (holds the line, vetoes the release)
    /// without waiting for the batch to end.
    pub critical: bool,
    /// The findings behind the verdict, strongest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Reason>,
    /// Figures and explanations that are not anomaly counts (forecasts,
    /// sensor health), one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Versions of the models the verdict used, e.g. `fingerprint:3f2a…`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
}

/// A contiguous range of input offsets a decision rests on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InputSpan {
    /// Topic (or input name for in-process sources).
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Smallest offset of a record of the batch.
    pub first_offset: i64,
    /// Largest offset of a record of the batch.
    pub last_offset: i64,
    /// Records of the batch in the range (the range may interleave other
    /// batches' records).
    pub records: u64,
}

impl fmt::Display for InputSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}@{}..={} ({} records)",
            self.topic, self.partition, self.first_offset, self.last_offset, self.records
        )
    }
}

/// What a decision rests on.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Evidence {
    /// Event time of the batch start, when it was seen.
    pub batch_start_ms: Option<EventTimeMs>,
    /// Event time of the batch end; `None` for actions taken while the
    /// batch runs (line holds, urgent maintenance).
    pub batch_end_ms: Option<EventTimeMs>,
    /// Anomalous readings counted for the batch, over all rules.
    pub anomalies: u64,
    /// Version of the rule set that produced the decision.
    pub rules_version: String,
    /// The agents' verdicts the decision was formed from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<AgentVerdict>,
    /// The input the batch's evidence was read from: one span per topic
    /// and partition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input: Vec<InputSpan>,
}

/// What a maintenance order asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaintenanceWork {
    /// Look at the sensor: isolated spikes, rising noise.
    Inspect,
    /// Recalibrate: the clean-air baseline has drifted.
    Calibrate,
    /// Repair: the sensor stopped reporting or got stuck.
    Repair,
    /// Replace: the sensor is worn out (drift or response loss past limits).
    Replace,
}

impl MaintenanceWork {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            MaintenanceWork::Inspect => "inspect",
            MaintenanceWork::Calibrate => "calibrate",
            MaintenanceWork::Repair => "repair",
            MaintenanceWork::Replace => "replace",
        }
    }
}

/// A proposed maintenance window for one sensor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MaintenanceOrder {
    /// The sensor.
    pub sensor: String,
    /// Its kind.
    pub kind: SensorKind,
    /// The work.
    pub work: MaintenanceWork,
    /// When the window opens: the end of the batch during which the need
    /// was found, or the moment of the finding when it is urgent.
    pub window_start_ms: EventTimeMs,
    /// How long the work takes; the line's next batch should start after
    /// `window_start_ms + duration_ms`.
    pub duration_ms: i64,
    /// Whether the work cannot wait for the batch to end (critical health):
    /// the window opens during the batch.
    pub urgent: bool,
    /// Event time the need was found.
    pub found_ms: EventTimeMs,
    /// What was found, one line each, with figures.
    pub findings: Vec<String>,
    /// Baseline shift from the calibration reference, in percent, when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_shift_pct: Option<f64>,
    /// Baseline drift rate, in percent per hour, when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_pct_per_hour: Option<f64>,
    /// Remaining useful life until replacement, in hours, when the sensor
    /// drifts toward the replacement limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_useful_life_h: Option<f64>,
}

total_order_from_ord!(MaintenanceOrder);
impl Ord for MaintenanceOrder {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (
            &self.sensor,
            self.work,
            self.kind,
            self.window_start_ms,
            self.duration_ms,
            self.urgent,
            self.found_ms,
            &self.findings,
        )
            .cmp(&(
                &other.sensor,
                other.work,
                other.kind,
                other.window_start_ms,
                other.duration_ms,
                other.urgent,
                other.found_ms,
                &other.findings,
            ))
            .then_with(|| option_total_cmp(self.baseline_shift_pct, other.baseline_shift_pct))
            .then_with(|| option_total_cmp(self.drift_pct_per_hour, other.drift_pct_per_hour))
            .then_with(|| {
                option_total_cmp(self.remaining_useful_life_h, other.remaining_useful_life_h)
            })
    }
}

fn option_total_cmp(a: Option<f64>, b: Option<f64>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.total_cmp(&b),
        (a, b) => a.is_some().cmp(&b.is_some()),
    }
}

/// A decision for MES consumers: the unit of `scent.actions`.
///
/// Actions form a changelog per subject (a batch's release, its line
/// hold, a sensor's maintenance order): a later revision names the action
/// it supersedes, until the batch is sealed; the sealed revision is final.
/// See `docs/mes-contract.md`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Action {
    /// Deterministic identifier: the same input always gives the same id.
    pub action_id: String,
    /// The kind of action.
    pub kind: ActionKind,
    /// Plant of the line.
    pub plant: String,
    /// The line.
    pub line: String,
    /// The batch, for batch-scoped actions.
    pub batch: Option<String>,
    /// The product of the batch.
    pub product: Option<String>,
    /// Release, hold or reject, for `batch_release`.
    pub decision: Option<Decision>,
    /// Reasons, strongest first; empty for a release.
    pub reasons: Vec<Reason>,
    /// The evidence the decision rests on.
    pub evidence: Evidence,
    /// Event time the decision refers to (the batch end for releases, the
    /// critical finding for line holds, the window start for maintenance).
    pub ts_ms: EventTimeMs,
    /// The maintenance order, for `schedule_maintenance`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<MaintenanceOrder>,
    /// Revision of this subject's decision, from 1.
    #[serde(default = "first_revision")]
    pub revision: u32,
    /// The `action_id` of the revision this one replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<String>,
    /// The earlier revision is void and nothing replaces it (late evidence
    /// removed the finding).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub withdrawn: bool,
    /// The batch is sealed: this revision is final.
    #[serde(default)]
    pub sealed: bool,
}

fn first_revision() -> u32 {
    1
}

impl Action {
    /// The Kafka key: the batch for batch-scoped actions, else the line.
    pub fn key(&self) -> &str {
        self.batch.as_deref().unwrap_or(&self.line)
    }

    /// What the action decides about, across revisions: its kind, line,
    /// batch, and for maintenance the sensor and the work.
    pub fn subject(&self) -> ActionSubject {
        ActionSubject {
            kind: self.kind,
            line: self.line.clone(),
            batch: self.batch.clone(),
            sensor: self.maintenance.as_ref().map(|order| order.sensor.clone()),
            work: self.maintenance.as_ref().map(|order| order.work),
        }
    }
}

/// What a chain of action revisions is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ActionSubject {
    /// The kind of action.
    pub kind: ActionKind,
    /// The line.
    pub line: String,
    /// The batch.
    pub batch: Option<String>,
    /// The sensor, for maintenance.
    pub sensor: Option<String>,
    /// The work, for maintenance.
    pub work: Option<MaintenanceWork>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_summaries_show_three_significant_digits_and_the_contaminant() {
        let reason = |rule, max_statistic, limit, contaminant: Option<&str>| Reason {
            sensor: "enose-2".into(),
            kind: SensorKind::Enose,
            rule,
            count: 14,
            max_statistic,
            limit,
            first_ts_ms: 0,
            last_ts_ms: 0,
            channels: vec![],
            contaminant: contaminant.map(str::to_owned),
        };
        assert_eq!(
            reason(AnomalyRule::ZScore, 9.1234, 6.0, None).summary(),
            "enose-2 zscore x14 (max 9.12 > 6.00)"
        );
        assert_eq!(
            reason(AnomalyRule::Spe, 94_852.04, 47.2071, None).summary(),
            "enose-2 spe x14 (max 94852 > 47.2)"
        );
        assert_eq!(
            reason(AnomalyRule::Similarity, 0.0421, 0.000_008_701, None).summary(),
            "enose-2 similarity x14 (max 0.0421 > 8.70e-6)"
        );
        assert_eq!(
            reason(AnomalyRule::Contaminant, 0.998, 0.8, Some("solvent")).summary(),
            "enose-2 contaminant solvent x14 (max 0.998 > 0.800)"
        );
    }

    #[test]
    fn sensor_kinds_round_trip_through_their_names() {
        for kind in SensorKind::ALL {
            assert_eq!(SensorKind::parse(kind.as_str()), Some(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        assert_eq!(SensorKind::parse("sonar"), None);
    }

    #[test]
    fn reject_reason_codes_are_unique_and_parse_back() {
        let mut codes: Vec<_> = RejectReason::ALL.iter().map(|r| r.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), RejectReason::ALL.len());
        for reason in RejectReason::ALL {
            assert_eq!(RejectReason::parse(reason.code()), Some(reason));
        }
    }
}
