//! Sensor QC flags: QARTOD tests per reading and per sensor stream, with the
//! flag scheme and the semantics of the `ioos_qc` package.
//!
//! [`crate::validate`] rejects records that cannot be measurements at all
//! (non-finite values, wrong channel counts, physically impossible values);
//! those become dead letters. The flags here annotate the *valid* readings
//! with their data quality, so that downstream detectors can skip or
//! down-weight questionable values. A sensor fault should lead to
//! maintenance, not to a rejected product.
//!
//! # Flags
//!
//! [`QcFlag`] carries the QARTOD numeric codes (IOOS, *Manual for Real-Time
//! Quality Control of In-situ Data*, and `ioos_qc.qartod.QartodFlags`):
//! pass = 1, not evaluated = 2, suspect = 3, fail = 4, missing = 9. Flags are
//! aggregated by the precedence of `ioos_qc.qartod.qartod_compare`:
//! missing < not evaluated < pass < suspect < fail, i.e. the worst flag
//! wins, and a missing or not-evaluated test never hides a pass.
//!
//! # Tests per channel (value tests)
//!
//! Each follows the function of the same name in `ioos_qc/qartod.py`
//! (version 3.0.0), and the oracle test `tests/ioos_qc_oracle.rs` compares
//! the flags with that package on generated series.
//!
//! * **gross range** (`gross_range_test`): fail outside `fail_span`, suspect
//!   outside the optional `suspect_span` (which must lie inside the fail
//!   span), both bounds inclusive.
//! * **spike** (`spike_test`, QARTOD test 9): centred on the value, so it
//!   needs the *next* reading. Method `average`: `|x[n] - (x[n-1] + x[n+1])/2|`;
//!   method `differential`: `min(|x[n] - x[n-1]|, |x[n+1] - x[n]|)` when the
//!   two steps have opposite signs, else 0. Above `suspect_threshold`:
//!   suspect; above `fail_threshold`: fail. The first and last values of a
//!   stream and the neighbours of a missing value are not evaluated.
//! * **rate of change** (`rate_of_change_test`): `|x[n] - x[n-1]| / Δt`
//!   in units per second against `suspect_threshold` and the optional
//!   `fail_threshold`. (ioos_qc 3.0 uses fixed rates; the older QARTOD
//!   manual's `n_dev · σ` over a window is not what the package does.)
//! * **flat line** (`flat_line_test`): the value is flagged when the values
//!   of the last `suspect_after_ms` (or `fail_after_ms`) of event time,
//!   counting back to and including the last reading at or before that
//!   instant, all lie within a range smaller than `tolerance`. Missing
//!   values inside the window are ignored, as by ioos_qc. The kernel keeps
//!   the start of the current run of values within tolerance (running
//!   maximum and minimum in monotonic deques, the sliding-window extremum
//!   technique) and flags when `ts - run start` reaches a threshold, which
//!   is the same condition (a proptest checks it against the window).
//!
//! # Tests per reading (stream tests)
//!
//! * **time gap** (ioos_qc `time_gap_test`): the reading follows the
//!   sensor's previous one by more than `fail_after_ms` (fail) or the
//!   optional `suspect_after_ms` (suspect). Beyond ioos_qc, a repeated
//!   timestamp is suspect and a timestamp earlier than the previous one is
//!   a fail (the kernel expects event-time order; a stream that runs
//!   backwards has a broken clock).
//! * **sequence**: `seq` is the previous `seq + 1`: pass; a jump forward
//!   means `seq - prev - 1` readings were lost on the way (suspect); `seq`
//!   going backwards means a counter reset (gateway restart) or a reordered
//!   replay (suspect); the same `seq` again is a replay that the ingest
//!   duplicate filter no longer remembers, or a gateway that stopped
//!   counting (fail: the values may not be a new measurement). [`QcResult::lost_readings`]
//!   counts the readings a jump skipped. Exact duplicates never get here:
//!   [`crate::ingest`] rejects them as dead letters.
//! * **timestamp skew** (lag side as ioos_qc `data_reception_test`): the
//!   reading's event time is compared with a reference time given with it,
//!   e.g. the Kafka record timestamp or the ingest time. A lag
//!   (`reference - ts`) above `suspect_lag_ms`/`fail_lag_ms` or a lead
//!   (`ts - reference`, a clock running ahead) above
//!   `suspect_lead_ms`/`fail_lead_ms` is suspect/fail. Without a reference
//!   the test is not evaluated.
//!
//! # Missing values
//!
//! A NaN value is missing, as ioos_qc masks invalid values: every value
//! test flags it 9. It does not break a flat line (ioos_qc ignores masked
//! values in the window), and it makes its neighbours' spike test and the
//! next value's rate of change not evaluated.
//!
//! # Latency: one reading
//!
//! The spike test needs `x[n+1]`, so [`SensorQc::observe`] returns the
//! complete result of the *previous* reading, and [`SensorQc::finish`] the
//! result of the last one (spike not evaluated, as ioos_qc flags the last
//! value of a series). At 1 Hz the flags lag the readings by one second.
//!
//! # Quality score
//!
//! Per channel: 0 if the value is missing or any value test fails,
//! otherwise `2^-k` for `k` suspect value tests. Per reading: the same rule
//! over the stream tests (time gap, sequence, skew) gives the stream factor,
//! and `score = stream factor × mean over channels of the channel score`.
//! Not-evaluated tests count as passed (no evidence against the value). A
//! 16-channel e-nose reading with one failed channel scores 15/16.
//!
//! # Differences from ioos_qc (deliberate, asserted by the oracle test)
//!
//! 1. Rate of change of the first reading, of a value after a missing one,
//!    and across a non-positive time step: not evaluated (2). ioos_qc flags
//!    the first and the after-missing value pass (1), and through a masked
//!    division compares `|Δx|` itself with the per-second thresholds when
//!    `Δt` is 0.
//! 2. Time steps are exact milliseconds. ioos_qc truncates `Δt` to whole
//!    seconds in the rate of change and the flat-line interval.
//! 3. The flat-line window is event time, not a count: ioos_qc turns the
//!    thresholds into `int(threshold) / median(Δt)` readings of the whole
//!    series, which a stream cannot know. On regular series whose
//!    thresholds are multiples of the interval both windows hold the same
//!    readings and the flags agree; on irregular series they differ exactly
//!    where the windows hold different readings. When a threshold is not a
//!    multiple of the interval, ioos_qc rounds the window down and flags
//!    one reading earlier: here a flat line must last the whole threshold.
//!    ioos_qc also passes every value of a series shorter than 3 readings.
//! 4. Time gap of the first reading: not evaluated; ioos_qc copies the flag
//!    of the second. Repeated and backwards timestamps are flagged here and
//!    pass in ioos_qc.
//! 5. Thresholds of 0 disable a spike test in ioos_qc (Python truthiness);
//!    here a disabled threshold is `None` and `0` is a configuration error.
//!
//! # State and cost
//!
//! Per stream: the previous reading's time and sequence number and its
//! pending result (five bytes of flags per channel). Per channel: the two
//! previous values and the flat-line run: two monotonic deques (running maximum and
//! minimum of the current within-tolerance run) of at most
//! [`FLAT_LINE_MAX_EXTREMES`] entries of 24 bytes each. That is at most
//! `size_of::<ChannelState>() + 2 · 32 · 24` ≈ 1.6 KiB per channel
//! (asserted by a unit test), and in practice a few entries: a stuck value
//! keeps one entry per deque, noise a logarithmic number. When a deque is
//! full, its oldest extreme is dropped and the run restarts after it,
//! which can only shorten a flat line (never a false flag). Cost per
//! reading: O(channels), amortised O(1) per channel for the flat line.

use crate::model::{EventTimeMs, SensorKind};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fmt;

/// Longest monotonic deque kept per channel for the flat-line test.
pub const FLAT_LINE_MAX_EXTREMES: usize = 32;

/// A QARTOD quality flag with its numeric code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
#[repr(u8)]
pub enum QcFlag {
    /// The value passed the test.
    Pass = 1,
    /// The test could not be run (not enough context, disabled).
    NotEvaluated = 2,
    /// The value is of questionable quality.
    Suspect = 3,
    /// The value is bad.
    Fail = 4,
    /// The value is missing (NaN).
    Missing = 9,
}

impl QcFlag {
    /// The QARTOD numeric code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The flag of a QARTOD code, `None` for an unknown code.
    pub fn from_code(code: u8) -> Option<QcFlag> {
        match code {
            1 => Some(QcFlag::Pass),
            2 => Some(QcFlag::NotEvaluated),
            3 => Some(QcFlag::Suspect),
            4 => Some(QcFlag::Fail),
            9 => Some(QcFlag::Missing),
            _ => None,
        }
    }

    /// Rank in `qartod_compare`: missing < not evaluated < pass < suspect
    /// < fail. The aggregate is the flag of the highest rank.
    pub fn precedence(self) -> u8 {
        match self {
            QcFlag::Missing => 0,
            QcFlag::NotEvaluated => 1,
            QcFlag::Pass => 2,
            QcFlag::Suspect => 3,
            QcFlag::Fail => 4,
        }
    }

    /// The aggregate of several flags, as `qartod_compare`: the flag of the
    /// highest precedence; missing for no flags at all.
    pub fn aggregate(flags: impl IntoIterator<Item = QcFlag>) -> QcFlag {
        flags
            .into_iter()
            .max_by_key(|flag| flag.precedence())
            .unwrap_or(QcFlag::Missing)
    }

    /// The lowercase name, for labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            QcFlag::Pass => "pass",
            QcFlag::NotEvaluated => "not_evaluated",
            QcFlag::Suspect => "suspect",
            QcFlag::Fail => "fail",
            QcFlag::Missing => "missing",
        }
    }
}

impl From<QcFlag> for u8 {
    fn from(flag: QcFlag) -> u8 {
        flag.code()
    }
}

impl TryFrom<u8> for QcFlag {
    type Error = String;
    fn try_from(code: u8) -> Result<QcFlag, String> {
        QcFlag::from_code(code).ok_or_else(|| format!("{code} is no QARTOD flag code"))
    }
}

impl fmt::Display for QcFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configuration value that makes no sense; `key` names it, e.g.
/// `temperature.spike.fail_threshold`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("qc.{key}: {problem}")]
pub struct QcConfigError {
    /// Dotted path of the offending key below the QC section.
    pub key: String,
    /// What is wrong with it.
    pub problem: String,
}

fn invalid(kind: &str, key: &str, problem: impl Into<String>) -> QcConfigError {
    QcConfigError {
        key: format!("{kind}.{key}"),
        problem: problem.into(),
    }
}

/// An inclusive `[min, max]` interval of values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Span {
    /// Lower bound.
    pub min: f64,
    /// Upper bound.
    pub max: f64,
}

impl Span {
    /// A span from its bounds.
    pub const fn new(min: f64, max: f64) -> Span {
        Span { min, max }
    }

    fn excludes(&self, value: f64) -> bool {
        value < self.min || value > self.max
    }

    fn check(&self, kind: &str, key: &str) -> Result<(), QcConfigError> {
        if !(self.min.is_finite() && self.max.is_finite() && self.min <= self.max) {
            return Err(invalid(
                kind,
                key,
                format!(
                    "min and max must be finite with min <= max, got {}..{}",
                    self.min, self.max
                ),
            ));
        }
        Ok(())
    }
}

/// Gross range test (`ioos_qc.qartod.gross_range_test`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrossRangeConfig {
    /// Values outside fail: the sensor's measurement range.
    pub fail_span: Span,
    /// Values outside are suspect: the expected operating range.
    #[serde(default)]
    pub suspect_span: Option<Span>,
}

/// How the spike test measures a spike (`method` of `spike_test`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpikeMethod {
    /// Distance of the value from the mean of its two neighbours.
    Average,
    /// The smaller of the two steps when they go opposite ways, else 0.
    Differential,
}

/// Spike test (`ioos_qc.qartod.spike_test`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpikeConfig {
    /// Spike size above which the value is suspect, in value units.
    pub suspect_threshold: Option<f64>,
    /// Spike size above which the value fails, in value units.
    pub fail_threshold: Option<f64>,
    /// How the spike is measured.
    #[serde(default = "default_spike_method")]
    pub method: SpikeMethod,
}

fn default_spike_method() -> SpikeMethod {
    SpikeMethod::Average
}

/// Rate of change test (`ioos_qc.qartod.rate_of_change_test`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateOfChangeConfig {
    /// Rate above which the value is suspect, in value units per second.
    pub suspect_threshold: f64,
    /// Rate above which the value fails, in value units per second.
    #[serde(default)]
    pub fail_threshold: Option<f64>,
}

/// Flat line test (`ioos_qc.qartod.flat_line_test`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlatLineConfig {
    /// Values whose range stays below this count as unchanged.
    pub tolerance: f64,
    /// Unchanged for this long: suspect.
    pub suspect_after_ms: i64,
    /// Unchanged for this long: fail.
    pub fail_after_ms: i64,
}

/// Time gap test (`ioos_qc.qartod.time_gap_test`, plus repeated and
/// backwards timestamps).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeGapConfig {
    /// A longer silence before a reading makes it suspect.
    #[serde(default)]
    pub suspect_after_ms: Option<i64>,
    /// A longer silence before a reading makes it fail.
    pub fail_after_ms: i64,
}

/// Timestamp skew against a reference time (lag side as
/// `ioos_qc.qartod.data_reception_test`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampSkewConfig {
    /// Reference minus event time above this: suspect.
    pub suspect_lag_ms: i64,
    /// Reference minus event time above this: fail.
    pub fail_lag_ms: i64,
    /// Event time minus reference above this: suspect.
    pub suspect_lead_ms: i64,
    /// Event time minus reference above this: fail.
    pub fail_lead_ms: i64,
}

/// The tests of one sensor kind. A test set to `None` is not run: its flag
/// is always "not evaluated".
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindQcConfig {
    /// Gross range test.
    pub gross_range: Option<GrossRangeConfig>,
    /// Spike test.
    pub spike: Option<SpikeConfig>,
    /// Rate of change test.
    pub rate_of_change: Option<RateOfChangeConfig>,
    /// Flat line test.
    pub flat_line: Option<FlatLineConfig>,
    /// Time gap test.
    pub time_gap: Option<TimeGapConfig>,
    /// Timestamp skew test.
    pub timestamp_skew: Option<TimestampSkewConfig>,
}

fn positive(kind: &str, key: &str, value: f64) -> Result<(), QcConfigError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(invalid(
            kind,
            key,
            format!("must be a positive number, got {value}"),
        ))
    }
}

fn positive_ms(kind: &str, key: &str, value: i64) -> Result<(), QcConfigError> {
    if value > 0 {
        Ok(())
    } else {
        Err(invalid(
            kind,
            key,
            format!("must be a positive duration, got {value}"),
        ))
    }
}

fn ordered<T: PartialOrd + fmt::Display>(
    kind: &str,
    key: &str,
    suspect: T,
    fail: T,
) -> Result<(), QcConfigError> {
    if suspect <= fail {
        Ok(())
    } else {
        Err(invalid(
            kind,
            key,
            format!("must not be below the suspect limit {suspect}, got {fail}"),
        ))
    }
}

impl KindQcConfig {
    /// Checks the parameters; the error names the offending key below
    /// `kind` (e.g. `ph.spike.fail_threshold`).
    pub fn check(&self, kind: &str) -> Result<(), QcConfigError> {
        if let Some(range) = &self.gross_range {
            range.fail_span.check(kind, "gross_range.fail_span")?;
            if let Some(suspect) = &range.suspect_span {
                suspect.check(kind, "gross_range.suspect_span")?;
                if suspect.min < range.fail_span.min || suspect.max > range.fail_span.max {
                    return Err(invalid(
                        kind,
                        "gross_range.suspect_span",
                        "must lie inside fail_span",
                    ));
                }
            }
        }
        if let Some(spike) = &self.spike {
            if let Some(suspect) = spike.suspect_threshold {
                positive(kind, "spike.suspect_threshold", suspect)?;
            }
            if let Some(fail) = spike.fail_threshold {
                positive(kind, "spike.fail_threshold", fail)?;
                if let Some(suspect) = spike.suspect_threshold {
                    ordered(kind, "spike.fail_threshold", suspect, fail)?;
                }
            }
        }
        if let Some(rate) = &self.rate_of_change {
            positive(
                kind,
                "rate_of_change.suspect_threshold",
                rate.suspect_threshold,
            )?;
            if let Some(fail) = rate.fail_threshold {
                positive(kind, "rate_of_change.fail_threshold", fail)?;
                ordered(
                    kind,
                    "rate_of_change.fail_threshold",
                    rate.suspect_threshold,
                    fail,
                )?;
            }
        }
        if let Some(flat) = &self.flat_line {
            positive(kind, "flat_line.tolerance", flat.tolerance)?;
            positive_ms(kind, "flat_line.suspect_after_ms", flat.suspect_after_ms)?;
            positive_ms(kind, "flat_line.fail_after_ms", flat.fail_after_ms)?;
            ordered(
                kind,
                "flat_line.fail_after_ms",
                flat.suspect_after_ms,
                flat.fail_after_ms,
            )?;
        }
        if let Some(gap) = &self.time_gap {
            positive_ms(kind, "time_gap.fail_after_ms", gap.fail_after_ms)?;
            if let Some(suspect) = gap.suspect_after_ms {
                positive_ms(kind, "time_gap.suspect_after_ms", suspect)?;
                ordered(kind, "time_gap.fail_after_ms", suspect, gap.fail_after_ms)?;
            }
        }
        if let Some(skew) = &self.timestamp_skew {
            positive_ms(kind, "timestamp_skew.suspect_lag_ms", skew.suspect_lag_ms)?;
            positive_ms(kind, "timestamp_skew.fail_lag_ms", skew.fail_lag_ms)?;
            positive_ms(kind, "timestamp_skew.suspect_lead_ms", skew.suspect_lead_ms)?;
            positive_ms(kind, "timestamp_skew.fail_lead_ms", skew.fail_lead_ms)?;
            ordered(
                kind,
                "timestamp_skew.fail_lag_ms",
                skew.suspect_lag_ms,
                skew.fail_lag_ms,
            )?;
            ordered(
                kind,
                "timestamp_skew.fail_lead_ms",
                skew.suspect_lead_ms,
                skew.fail_lead_ms,
            )?;
        }
        Ok(())
    }

    /// Every test with the given parameters and the stream-level defaults
    /// shared by all kinds (sampling at about 1 Hz).
    fn with_value_tests(
        gross_range: GrossRangeConfig,
        spike: SpikeConfig,
        rate_of_change: RateOfChangeConfig,
        flat_line: FlatLineConfig,
    ) -> KindQcConfig {
        KindQcConfig {
            gross_range: Some(gross_range),
            spike: Some(spike),
            rate_of_change: Some(rate_of_change),
            flat_line: Some(flat_line),
            time_gap: Some(TimeGapConfig {
                suspect_after_ms: Some(5_000),
                fail_after_ms: 30_000,
            }),
            timestamp_skew: Some(TimestampSkewConfig {
                suspect_lag_ms: 60_000,
                fail_lag_ms: 900_000,
                suspect_lead_ms: 5_000,
                fail_lead_ms: 60_000,
            }),
        }
    }
}

/// QC configuration of every sensor kind.
///
/// The defaults assume about one reading per second (the simulator's
/// `sample_interval_ms`), e-nose channels as resistance ratios R/R0 near 1,
/// and process values in the units of [`SensorKind`]. The suspect spans
/// are deliberately wide: they mark values outside any sane operating
/// point, not a product-specific specification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QcConfig {
    /// e-nose arrays, per channel.
    pub enose: KindQcConfig,
    /// Temperature, °C.
    pub temperature: KindQcConfig,
    /// Relative humidity, %.
    pub humidity: KindQcConfig,
    /// Absolute pressure, kPa.
    pub pressure: KindQcConfig,
    /// pH.
    pub ph: KindQcConfig,
    /// Flow, L/min.
    pub flow: KindQcConfig,
}

fn value_tests(
    fail_span: Span,
    suspect_span: Span,
    spike: (f64, f64),
    rate: (f64, f64),
    flat_tolerance: f64,
    flat_after_ms: (i64, i64),
) -> KindQcConfig {
    KindQcConfig::with_value_tests(
        GrossRangeConfig {
            fail_span,
            suspect_span: Some(suspect_span),
        },
        SpikeConfig {
            suspect_threshold: Some(spike.0),
            fail_threshold: Some(spike.1),
            method: SpikeMethod::Average,
        },
        RateOfChangeConfig {
            suspect_threshold: rate.0,
            fail_threshold: Some(rate.1),
        },
        FlatLineConfig {
            tolerance: flat_tolerance,
            suspect_after_ms: flat_after_ms.0,
            fail_after_ms: flat_after_ms.1,
        },
    )
}

impl Default for QcConfig {
    fn default() -> Self {
        // Process sensors often report at a resolution of 0.1 unit, so a
        // stable process can repeat a value for minutes: their flat-line
        // limits are 5 and 15 minutes. Gas sensors always carry noise: a
        // channel unchanged for 30 s is stuck.
        QcConfig {
            enose: value_tests(
                Span::new(0.001, 1_000.0),
                Span::new(0.05, 50.0),
                (0.1, 0.5),
                (0.2, 1.0),
                1e-6,
                (30_000, 120_000),
            ),
            temperature: value_tests(
                Span::new(-40.0, 300.0),
                Span::new(-10.0, 150.0),
                (1.0, 5.0),
                (2.0, 10.0),
                1e-3,
                (300_000, 900_000),
            ),
            humidity: value_tests(
                Span::new(0.0, 100.0),
                Span::new(5.0, 95.0),
                (3.0, 10.0),
                (5.0, 20.0),
                1e-2,
                (300_000, 900_000),
            ),
            pressure: value_tests(
                Span::new(0.0, 2_000.0),
                Span::new(80.0, 700.0),
                (2.0, 10.0),
                (5.0, 50.0),
                1e-3,
                (300_000, 900_000),
            ),
            ph: value_tests(
                Span::new(0.0, 14.0),
                Span::new(2.0, 12.0),
                (0.3, 1.0),
                (0.5, 2.0),
                1e-3,
                (300_000, 900_000),
            ),
            flow: value_tests(
                Span::new(0.0, 10_000.0),
                Span::new(0.0, 5_000.0),
                (50.0, 200.0),
                (100.0, 500.0),
                1e-2,
                (300_000, 900_000),
            ),
        }
    }
}

impl QcConfig {
    /// The configuration of one kind.
    pub fn kind(&self, kind: SensorKind) -> &KindQcConfig {
        match kind {
            SensorKind::Enose => &self.enose,
            SensorKind::Temperature => &self.temperature,
            SensorKind::Humidity => &self.humidity,
            SensorKind::Pressure => &self.pressure,
            SensorKind::Ph => &self.ph,
            SensorKind::Flow => &self.flow,
        }
    }

    /// Checks every kind; the error names the key, e.g.
    /// `qc.ph.spike.fail_threshold`.
    pub fn check(&self) -> Result<(), QcConfigError> {
        for kind in SensorKind::ALL {
            self.kind(kind).check(kind.as_str())?;
        }
        Ok(())
    }
}

/// One reading as the QC kernel sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QcInput<'a> {
    /// Event time of the reading.
    pub ts_ms: EventTimeMs,
    /// The gateway's sequence number.
    pub seq: u64,
    /// A reference time for the skew test (Kafka record or ingest time).
    pub reference_ts_ms: Option<EventTimeMs>,
    /// One value per channel; NaN marks a missing value.
    pub values: &'a [f64],
}

/// The value-test flags of one channel of one reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelQc {
    /// Gross range test.
    pub gross_range: QcFlag,
    /// Spike test.
    pub spike: QcFlag,
    /// Rate of change test.
    pub rate_of_change: QcFlag,
    /// Flat line test.
    pub flat_line: QcFlag,
    /// The aggregate of the four (`qartod_compare`).
    pub aggregate: QcFlag,
}

impl ChannelQc {
    fn tests(&self) -> [QcFlag; 4] {
        [
            self.gross_range,
            self.spike,
            self.rate_of_change,
            self.flat_line,
        ]
    }

    /// 0 when missing or failed, else `2^-k` for `k` suspect tests.
    fn score(&self) -> f64 {
        if self.gross_range == QcFlag::Missing {
            return 0.0;
        }
        flags_score(&self.tests())
    }
}

fn flags_score(flags: &[QcFlag]) -> f64 {
    let mut score = 1.0;
    for flag in flags {
        match flag {
            QcFlag::Fail | QcFlag::Missing => return 0.0,
            QcFlag::Suspect => score *= 0.5,
            QcFlag::Pass | QcFlag::NotEvaluated => {}
        }
    }
    score
}

/// Every flag of one reading, its aggregate and its quality score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QcResult {
    /// Event time of the reading the flags belong to.
    pub ts_ms: EventTimeMs,
    /// Its sequence number.
    pub seq: u64,
    /// Time gap test.
    pub time_gap: QcFlag,
    /// Sequence test.
    pub sequence: QcFlag,
    /// Readings lost before this one, from the jump of the sequence number.
    pub lost_readings: u64,
    /// Timestamp skew test.
    pub timestamp_skew: QcFlag,
    /// The value tests, one entry per channel.
    pub channels: Vec<ChannelQc>,
    /// The worst flag of the reading: the `qartod_compare` aggregate of the
    /// channel aggregates and the stream tests.
    pub aggregate: QcFlag,
    /// Quality score in [0, 1] (see the module documentation).
    pub score: f64,
}

impl QcResult {
    fn finalise(&mut self) {
        for channel in &mut self.channels {
            channel.aggregate = QcFlag::aggregate(channel.tests());
        }
        let stream = [self.time_gap, self.sequence, self.timestamp_skew];
        self.aggregate = QcFlag::aggregate(
            stream
                .iter()
                .copied()
                .chain(self.channels.iter().map(|channel| channel.aggregate)),
        );
        let channel_score = if self.channels.is_empty() {
            1.0
        } else {
            self.channels.iter().map(ChannelQc::score).sum::<f64>() / self.channels.len() as f64
        };
        self.score = flags_score(&stream) * channel_score;
    }
}

/// An extreme of the flat-line run: a value, the stream index of its
/// reading, and the event time of the reading after it (once known).
#[derive(Debug, Clone, Copy)]
struct Extreme {
    value: f64,
    index: u64,
    /// [`NOT_YET`] until the next reading arrives.
    next_ts_ms: EventTimeMs,
}

/// `Extreme::next_ts_ms` of the newest reading (a sentinel rather than an
/// `Option` keeps an extreme at 24 bytes).
const NOT_YET: EventTimeMs = EventTimeMs::MIN;

/// The current run of values within tolerance of one channel: monotonic
/// deques of its running maximum and minimum, and where it starts.
#[derive(Debug, Clone, Default)]
struct FlatRun {
    maxima: VecDeque<Extreme>,
    minima: VecDeque<Extreme>,
    start_index: u64,
    start_ts_ms: EventTimeMs,
}

impl FlatRun {
    /// Restarts the run just after `extreme`, dropping older extremes.
    fn restart_after(&mut self, extreme: Extreme, ts_ms: EventTimeMs) {
        self.start_index = extreme.index + 1;
        // The reading after `extreme` exists (at the latest it is the
        // current one), so its time is known.
        self.start_ts_ms = if extreme.next_ts_ms == NOT_YET {
            ts_ms
        } else {
            extreme.next_ts_ms
        };
        let start = self.start_index;
        while self.maxima.front().is_some_and(|e| e.index < start) {
            self.maxima.pop_front();
        }
        while self.minima.front().is_some_and(|e| e.index < start) {
            self.minima.pop_front();
        }
    }

    /// Adds reading `index` and returns how long (ms of event time) the
    /// values have stayed within `tolerance`, counted from the run's first
    /// reading.
    fn push(&mut self, index: u64, ts_ms: EventTimeMs, value: f64, tolerance: f64) -> i64 {
        for deque in [&mut self.maxima, &mut self.minima] {
            if let Some(back) = deque.back_mut() {
                if back.next_ts_ms == NOT_YET {
                    back.next_ts_ms = ts_ms;
                }
            }
        }
        if index == 0 {
            self.start_index = 0;
            self.start_ts_ms = ts_ms;
        }
        if !value.is_nan() {
            loop {
                if let Some(&max) = self.maxima.front().filter(|m| m.value - value >= tolerance) {
                    self.restart_after(max, ts_ms);
                } else if let Some(&min) =
                    self.minima.front().filter(|m| value - m.value >= tolerance)
                {
                    self.restart_after(min, ts_ms);
                } else {
                    break;
                }
            }
            let extreme = Extreme {
                value,
                index,
                next_ts_ms: NOT_YET,
            };
            while self.maxima.back().is_some_and(|e| e.value <= value) {
                self.maxima.pop_back();
            }
            while self.minima.back().is_some_and(|e| e.value >= value) {
                self.minima.pop_back();
            }
            // Bounded memory: forgetting the oldest extreme would hide a
            // value that breaks the run, so the run restarts after it. Made
            // room before the push, a deque never outgrows its capacity.
            while self.maxima.len() >= FLAT_LINE_MAX_EXTREMES {
                self.restart_after(self.maxima[0], ts_ms);
            }
            while self.minima.len() >= FLAT_LINE_MAX_EXTREMES {
                self.restart_after(self.minima[0], ts_ms);
            }
            self.maxima.push_back(extreme);
            self.minima.push_back(extreme);
        }
        ts_ms.saturating_sub(self.start_ts_ms)
    }
}

/// What one channel remembers.
#[derive(Debug, Clone, Default)]
struct ChannelState {
    /// Value of the reading before the pending one (NaN if missing).
    before_pending: f64,
    /// Value of the pending reading.
    pending_value: f64,
    flat: FlatRun,
}

/// The QC state of one sensor stream. Feed its readings in event-time
/// order; each call returns the complete flags of the previous reading.
#[derive(Debug, Clone, Default)]
pub struct SensorQc {
    channels: Vec<ChannelState>,
    /// Readings seen since the channel layout last changed.
    index: u64,
    /// The previous reading's event time and sequence number.
    previous: Option<(EventTimeMs, u64)>,
    /// The pending reading's result (spike flags still open).
    pending: Option<QcResult>,
    /// Whether the pending reading has a predecessor with the same layout.
    pending_has_predecessor: bool,
}

impl SensorQc {
    /// A stream that has seen nothing yet.
    pub fn new() -> SensorQc {
        SensorQc::default()
    }

    /// Runs the tests on the stream's next reading and returns the complete
    /// result of the previous reading (`None` for the first one): the spike
    /// test of a value needs the value after it.
    pub fn observe(&mut self, input: &QcInput<'_>, config: &KindQcConfig) -> Option<QcResult> {
        let completed = if input.values.len() == self.channels.len() {
            self.complete_pending(Some(input.values), config)
        } else {
            // A new channel layout starts the value tests afresh.
            let completed = self.complete_pending(None, config);
            self.channels = vec![ChannelState::default(); input.values.len()];
            self.index = 0;
            completed
        };
        let mut result = QcResult {
            ts_ms: input.ts_ms,
            seq: input.seq,
            time_gap: time_gap_flag(self.previous.map(|p| p.0), input.ts_ms, config),
            sequence: sequence_flag(self.previous, input.seq),
            lost_readings: self.previous.map_or(0, |(_, previous_seq)| {
                lost_readings(previous_seq, input.seq)
            }),
            timestamp_skew: skew_flag(input.ts_ms, input.reference_ts_ms, config),
            channels: Vec::with_capacity(input.values.len()),
            aggregate: QcFlag::NotEvaluated,
            score: 1.0,
        };
        let previous_ts_ms = self.previous.map(|p| p.0).filter(|_| self.index > 0);
        for (channel, &value) in self.channels.iter_mut().zip(input.values) {
            let missing = value.is_nan();
            let gross_range = match (&config.gross_range, missing) {
                (_, true) => QcFlag::Missing,
                (None, false) => QcFlag::NotEvaluated,
                (Some(range), false) => gross_range_flag(value, range),
            };
            let rate_of_change = match (&config.rate_of_change, missing) {
                (_, true) => QcFlag::Missing,
                (None, false) => QcFlag::NotEvaluated,
                (Some(rate), false) => match previous_ts_ms {
                    Some(previous_ts_ms) => rate_of_change_flag(
                        channel.pending_value,
                        previous_ts_ms,
                        value,
                        input.ts_ms,
                        rate,
                    ),
                    None => QcFlag::NotEvaluated,
                },
            };
            let flat_line = match &config.flat_line {
                None if missing => QcFlag::Missing,
                None => QcFlag::NotEvaluated,
                Some(flat) => {
                    let unchanged_ms =
                        channel
                            .flat
                            .push(self.index, input.ts_ms, value, flat.tolerance);
                    if missing {
                        QcFlag::Missing
                    } else if unchanged_ms >= flat.fail_after_ms {
                        QcFlag::Fail
                    } else if unchanged_ms >= flat.suspect_after_ms {
                        QcFlag::Suspect
                    } else {
                        QcFlag::Pass
                    }
                }
            };
            let spike = if missing {
                QcFlag::Missing
            } else {
                QcFlag::NotEvaluated
            };
            let flags = ChannelQc {
                gross_range,
                spike,
                rate_of_change,
                flat_line,
                aggregate: QcFlag::NotEvaluated,
            };
            channel.before_pending = channel.pending_value;
            channel.pending_value = value;
            result.channels.push(flags);
        }
        self.pending_has_predecessor = self.index > 0;
        self.index += 1;
        self.previous = Some((input.ts_ms, input.seq));
        self.pending = Some(result);
        completed
    }

    /// The complete result of the last reading, whose spike test cannot be
    /// evaluated (no next value), as at the end of an ioos_qc series. The
    /// stream's history stays: later readings continue it.
    pub fn finish(&mut self, config: &KindQcConfig) -> Option<QcResult> {
        self.complete_pending(None, config)
    }

    /// Closes the spike test of the pending reading with the next values
    /// (`None`: there is no next value with the same layout).
    fn complete_pending(
        &mut self,
        next: Option<&[f64]>,
        config: &KindQcConfig,
    ) -> Option<QcResult> {
        let mut result = self.pending.take()?;
        for (index, (channel, flags)) in self
            .channels
            .iter()
            .zip(result.channels.iter_mut())
            .enumerate()
        {
            if flags.spike == QcFlag::Missing {
                continue;
            }
            flags.spike = match (&config.spike, next, self.pending_has_predecessor) {
                (Some(spike), Some(next), true) => spike_flag(
                    channel.before_pending,
                    channel.pending_value,
                    next[index],
                    spike,
                ),
                _ => QcFlag::NotEvaluated,
            };
        }
        result.finalise();
        Some(result)
    }
}

fn gross_range_flag(value: f64, config: &GrossRangeConfig) -> QcFlag {
    if config.fail_span.excludes(value) {
        QcFlag::Fail
    } else if config.suspect_span.is_some_and(|span| span.excludes(value)) {
        QcFlag::Suspect
    } else {
        QcFlag::Pass
    }
}

fn threshold_flag(statistic: f64, suspect: Option<f64>, fail: Option<f64>) -> QcFlag {
    if fail.is_some_and(|fail| statistic > fail) {
        QcFlag::Fail
    } else if suspect.is_some_and(|suspect| statistic > suspect) {
        QcFlag::Suspect
    } else {
        QcFlag::Pass
    }
}

/// The spike flag of `value` between `before` and `after` (none missing
/// for an evaluation).
fn spike_flag(before: f64, value: f64, after: f64, config: &SpikeConfig) -> QcFlag {
    if before.is_nan() || after.is_nan() {
        return QcFlag::NotEvaluated;
    }
    let size = match config.method {
        SpikeMethod::Average => (value - (before + after) / 2.0).abs(),
        SpikeMethod::Differential => {
            let (rise, fall) = (value - before, after - value);
            if rise * fall < 0.0 {
                rise.abs().min(fall.abs())
            } else {
                0.0
            }
        }
    };
    threshold_flag(size, config.suspect_threshold, config.fail_threshold)
}

fn rate_of_change_flag(
    previous: f64,
    previous_ts_ms: EventTimeMs,
    value: f64,
    ts_ms: EventTimeMs,
    config: &RateOfChangeConfig,
) -> QcFlag {
    let dt_ms = ts_ms.saturating_sub(previous_ts_ms);
    if previous.is_nan() || dt_ms <= 0 {
        return QcFlag::NotEvaluated;
    }
    let rate = (value - previous).abs() / (dt_ms as f64 / 1_000.0);
    threshold_flag(rate, Some(config.suspect_threshold), config.fail_threshold)
}

fn time_gap_flag(
    previous_ts_ms: Option<EventTimeMs>,
    ts_ms: EventTimeMs,
    config: &KindQcConfig,
) -> QcFlag {
    let (Some(gap), Some(previous)) = (&config.time_gap, previous_ts_ms) else {
        return QcFlag::NotEvaluated;
    };
    let dt_ms = ts_ms.saturating_sub(previous);
    if dt_ms < 0 || dt_ms > gap.fail_after_ms {
        QcFlag::Fail
    } else if dt_ms == 0 || gap.suspect_after_ms.is_some_and(|limit| dt_ms > limit) {
        QcFlag::Suspect
    } else {
        QcFlag::Pass
    }
}

fn sequence_flag(previous: Option<(EventTimeMs, u64)>, seq: u64) -> QcFlag {
    let Some((_, previous_seq)) = previous else {
        return QcFlag::NotEvaluated;
    };
    if seq == previous_seq {
        QcFlag::Fail
    } else if seq == previous_seq.wrapping_add(1) {
        QcFlag::Pass
    } else {
        // A jump forward (lost readings) or backwards (counter reset).
        QcFlag::Suspect
    }
}

fn skew_flag(ts_ms: EventTimeMs, reference: Option<EventTimeMs>, config: &KindQcConfig) -> QcFlag {
    let (Some(skew), Some(reference)) = (&config.timestamp_skew, reference) else {
        return QcFlag::NotEvaluated;
    };
    let lag = reference.saturating_sub(ts_ms);
    let lead = ts_ms.saturating_sub(reference);
    if lag > skew.fail_lag_ms || lead > skew.fail_lead_ms {
        QcFlag::Fail
    } else if lag > skew.suspect_lag_ms || lead > skew.suspect_lead_ms {
        QcFlag::Suspect
    } else {
        QcFlag::Pass
    }
}

/// The number of readings lost between two sequence numbers of a stream in
/// order (0 when `seq` follows `previous_seq` or goes backwards).
pub fn lost_readings(previous_seq: u64, seq: u64) -> u64 {
    seq.saturating_sub(previous_seq).saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use QcFlag::{Fail as F, Missing as M, NotEvaluated as N, Pass as P, Suspect as S};

    fn none() -> KindQcConfig {
        KindQcConfig {
            gross_range: None,
            spike: None,
            rate_of_change: None,
            flat_line: None,
            time_gap: None,
            timestamp_skew: None,
        }
    }

    /// Runs a scalar series with timestamps in seconds through a fresh
    /// stream and returns every result, in order.
    fn run(times_s: &[i64], values: &[f64], config: &KindQcConfig) -> Vec<QcResult> {
        let mut qc = SensorQc::new();
        let mut results = Vec::new();
        for (index, (&t, &x)) in times_s.iter().zip(values).enumerate() {
            let input = QcInput {
                ts_ms: t * 1_000,
                seq: index as u64,
                reference_ts_ms: None,
                values: &[x],
            };
            results.extend(qc.observe(&input, config));
        }
        results.extend(qc.finish(config));
        assert_eq!(results.len(), values.len());
        results
    }

    fn channel_flags(results: &[QcResult], test: impl Fn(&ChannelQc) -> QcFlag) -> Vec<QcFlag> {
        results.iter().map(|r| test(&r.channels[0])).collect()
    }

    fn seconds(n: usize) -> Vec<i64> {
        (0..n as i64).collect()
    }

    #[test]
    fn flags_carry_the_qartod_codes_and_aggregate_like_qartod_compare() {
        assert_eq!([P, N, S, F, M].map(QcFlag::code), [1, 2, 3, 4, 9]);
        for flag in [P, N, S, F, M] {
            assert_eq!(QcFlag::from_code(flag.code()), Some(flag));
            assert_eq!(
                serde_json::to_string(&flag).unwrap(),
                flag.code().to_string()
            );
        }
        assert_eq!(QcFlag::from_code(5), None);
        assert!(serde_json::from_str::<QcFlag>("5").is_err());
        // qartod_compare([[9, 1, 2, 3], [1, 9, 9, 9]]) == [1, 1, 2, 3]
        let pairs = [(M, P), (P, M), (N, M), (S, M)];
        let expected = [P, P, N, S];
        for ((a, b), want) in pairs.into_iter().zip(expected) {
            assert_eq!(QcFlag::aggregate([a, b]), want);
        }
        assert_eq!(QcFlag::aggregate([P, S, F, N]), F);
        assert_eq!(QcFlag::aggregate([]), M);
    }

    #[test]
    fn default_config_is_consistent_and_errors_name_the_key() {
        let config = QcConfig::default();
        config.check().unwrap();
        let mut broken = config.clone();
        broken.ph.spike = Some(SpikeConfig {
            suspect_threshold: Some(1.0),
            fail_threshold: Some(0.5),
            method: SpikeMethod::Average,
        });
        let error = broken.check().unwrap_err();
        assert_eq!(error.key, "ph.spike.fail_threshold");
        assert!(error
            .to_string()
            .starts_with("qc.ph.spike.fail_threshold: "));
        let mut broken = config.clone();
        broken.humidity.gross_range = Some(GrossRangeConfig {
            fail_span: Span::new(0.0, 100.0),
            suspect_span: Some(Span::new(-5.0, 95.0)),
        });
        assert_eq!(
            broken.check().unwrap_err().key,
            "humidity.gross_range.suspect_span"
        );
        let mut broken = config.clone();
        broken.enose.flat_line = Some(FlatLineConfig {
            tolerance: 0.0,
            suspect_after_ms: 1,
            fail_after_ms: 2,
        });
        assert_eq!(broken.check().unwrap_err().key, "enose.flat_line.tolerance");
        let mut broken = config;
        broken.flow.timestamp_skew = Some(TimestampSkewConfig {
            suspect_lag_ms: 10,
            fail_lag_ms: 5,
            suspect_lead_ms: 1,
            fail_lead_ms: 1,
        });
        assert_eq!(
            broken.check().unwrap_err().key,
            "flow.timestamp_skew.fail_lag_ms"
        );
    }

    #[test]
    fn config_round_trips_and_refuses_unknown_keys() {
        let config = QcConfig::default();
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(serde_json::from_str::<QcConfig>(&json).unwrap(), config);
        let partial: QcConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(partial, config);
        let typo = json.replacen("\"tolerance\"", "\"tolerence\"", 1);
        assert!(serde_json::from_str::<QcConfig>(&typo).is_err());
        assert!(serde_json::from_str::<QcConfig>(r#"{"sonar": {}}"#).is_err());
    }

    #[test]
    fn gross_range_follows_the_ioos_qc_docstring() {
        // gross_range_test([1, 2, 3, 4, 8], fail_span=(0, 5), suspect_span=(1, 4))
        // == [1, 1, 1, 1, 4]; plus a suspect and a missing value.
        let config = KindQcConfig {
            gross_range: Some(GrossRangeConfig {
                fail_span: Span::new(0.0, 5.0),
                suspect_span: Some(Span::new(1.0, 4.0)),
            }),
            ..none()
        };
        let values = [1.0, 2.0, 3.0, 4.0, 8.0, 4.5, f64::NAN, -0.1];
        let results = run(&seconds(values.len()), &values, &config);
        assert_eq!(
            channel_flags(&results, |c| c.gross_range),
            [P, P, P, P, F, S, M, F]
        );
    }

    #[test]
    fn spike_flags_arrive_one_reading_late_and_match_both_methods() {
        let average = KindQcConfig {
            spike: Some(SpikeConfig {
                suspect_threshold: Some(1.0),
                fail_threshold: Some(5.0),
                method: SpikeMethod::Average,
            }),
            ..none()
        };
        let mut qc = SensorQc::new();
        fn input(ts_ms: i64, value: &[f64; 1]) -> QcInput<'_> {
            QcInput {
                ts_ms,
                seq: ts_ms as u64,
                reference_ts_ms: None,
                values: &value[..],
            }
        }
        assert_eq!(qc.observe(&input(0, &[1.0]), &average), None);
        let first = qc.observe(&input(1, &[9.0]), &average).unwrap();
        assert_eq!((first.ts_ms, first.channels[0].spike), (0, N));
        let spike = qc.observe(&input(2, &[1.0]), &average).unwrap();
        assert_eq!((spike.ts_ms, spike.channels[0].spike), (1, F));
        let last = qc.finish(&average).unwrap();
        assert_eq!((last.ts_ms, last.channels[0].spike), (2, N));
        assert_eq!(qc.finish(&average), None);

        // The series probed against ioos_qc 3.0.0 spike_test(x, 1, 5).
        let x = [1.0, 2.0, f64::NAN, 2.0, 10.0, 3.0, 3.0, 3.0, 3.0, 3.0];
        let results = run(&seconds(x.len()), &x, &average);
        assert_eq!(
            channel_flags(&results, |c| c.spike),
            [N, N, M, N, F, S, P, P, P, N]
        );
        // spike_test(y, 1, 3, method="differential")
        let differential = KindQcConfig {
            spike: Some(SpikeConfig {
                suspect_threshold: Some(1.0),
                fail_threshold: Some(3.0),
                method: SpikeMethod::Differential,
            }),
            ..none()
        };
        let y = [1.0, 5.0, 1.0, f64::NAN, 1.0, 5.0, 1.0, 1.0, 9.0, 1.0];
        let results = run(&seconds(y.len()), &y, &differential);
        assert_eq!(
            channel_flags(&results, |c| c.spike),
            [N, F, N, M, N, F, P, P, F, N]
        );
    }

    #[test]
    fn rate_of_change_is_per_second_and_needs_a_previous_value() {
        let config = KindQcConfig {
            rate_of_change: Some(RateOfChangeConfig {
                suspect_threshold: 0.5,
                fail_threshold: Some(5.0),
            }),
            ..none()
        };
        let times = [0, 1, 2, 3, 4, 5, 7, 7];
        let x = [1.0, 2.0, f64::NAN, 2.0, 10.0, 10.4, 11.0, 12.0];
        let results = run(&times, &x, &config);
        // ioos_qc gives [1, 3, 9, 1, 4, 1, 1, 3]: it passes the first value and
        // the one after a missing value, and compares |Δx| itself when Δt = 0.
        assert_eq!(
            channel_flags(&results, |c| c.rate_of_change),
            [N, S, M, N, F, P, P, N]
        );
    }

    #[test]
    fn flat_line_counts_event_time_and_ignores_missing_values() {
        let config = KindQcConfig {
            flat_line: Some(FlatLineConfig {
                tolerance: 0.1,
                suspect_after_ms: 3_000,
                fail_after_ms: 5_000,
            }),
            ..none()
        };
        // ioos_qc flat_line_test(x, t, 3, 5, 0.1) == [1 1 9 1 1 1 1 1 3 3]
        let x = [1.0, 2.0, f64::NAN, 2.0, 10.0, 3.0, 3.0, 3.0, 3.0, 3.0];
        let results = run(&seconds(x.len()), &x, &config);
        assert_eq!(
            channel_flags(&results, |c| c.flat_line),
            [P, P, M, P, P, P, P, P, S, S]
        );
        // A stuck value through a missing one: suspect after 3 s, fail after 5 s.
        let x = [7.0, 7.0, f64::NAN, 7.05, 7.0, 7.0, 7.0, 7.2, 7.2];
        let results = run(&seconds(x.len()), &x, &config);
        assert_eq!(
            channel_flags(&results, |c| c.flat_line),
            [P, P, M, S, S, F, F, P, P]
        );
        // Slow sampling: two readings 10 s apart are a flat line of 10 s.
        let results = run(&[0, 10], &[1.0, 1.0], &config);
        assert_eq!(channel_flags(&results, |c| c.flat_line), [P, F]);
    }

    #[test]
    fn time_gap_flags_silences_and_broken_clocks() {
        let config = KindQcConfig {
            time_gap: Some(TimeGapConfig {
                suspect_after_ms: Some(5_000),
                fail_after_ms: 30_000,
            }),
            ..none()
        };
        let times = [0, 1, 7, 40, 40, 39, 41];
        let results = run(&times, &[1.0; 7], &config);
        let flags: Vec<_> = results.iter().map(|r| r.time_gap).collect();
        assert_eq!(flags, [N, P, S, F, S, F, P]);
    }

    #[test]
    fn sequence_flags_lost_repeated_and_reset_counters() {
        let mut qc = SensorQc::new();
        let config = none();
        let mut results = Vec::new();
        for (ts_ms, seq) in [(0, 10), (1, 11), (2, 14), (3, 14), (4, 2), (5, 3)] {
            let input = QcInput {
                ts_ms,
                seq,
                reference_ts_ms: None,
                values: &[1.0],
            };
            results.extend(qc.observe(&input, &config));
        }
        results.extend(qc.finish(&config));
        let flags: Vec<_> = results.iter().map(|r| r.sequence).collect();
        assert_eq!(flags, [N, P, S, F, S, P]);
        let lost: Vec<_> = results.iter().map(|r| r.lost_readings).collect();
        assert_eq!(lost, [0, 0, 2, 0, 0, 0]);
    }

    #[test]
    fn timestamp_skew_compares_with_the_reference_time() {
        let config = QcConfig::default().temperature;
        let skew = |reference: Option<i64>| {
            let mut qc = SensorQc::new();
            let input = QcInput {
                ts_ms: 1_000_000,
                seq: 1,
                reference_ts_ms: reference,
                values: &[20.0],
            };
            assert!(qc.observe(&input, &config).is_none());
            qc.finish(&config).unwrap().timestamp_skew
        };
        assert_eq!(skew(None), N);
        assert_eq!(skew(Some(1_000_500)), P);
        assert_eq!(skew(Some(1_000_000 + 60_001)), S);
        assert_eq!(skew(Some(1_000_000 + 900_001)), F);
        assert_eq!(skew(Some(1_000_000 - 5_001)), S);
        assert_eq!(skew(Some(1_000_000 - 60_001)), F);
    }

    #[test]
    fn score_and_aggregate_summarise_a_reading() {
        let config = QcConfig::default().enose;
        let mut qc = SensorQc::new();
        let mut values = vec![1.0; 16];
        let mut results = Vec::new();
        for second in 0..3_i64 {
            values[0] = 1.0 + 0.01 * second as f64;
            values[1] = if second == 1 { 2_000.0 } else { 1.0 };
            for (channel, value) in values.iter_mut().enumerate().skip(2) {
                *value = 1.0 + 0.001 * ((second as usize * 7 + channel) % 5) as f64;
            }
            values[2] = if second == 1 { 60.0 } else { 1.0 };
            let input = QcInput {
                ts_ms: second * 1_000,
                seq: second as u64,
                reference_ts_ms: Some(second * 1_000),
                values: &values,
            };
            results.extend(qc.observe(&input, &config));
        }
        results.extend(qc.finish(&config));
        let middle = &results[1];
        // Channel 1 fails its gross range (and spikes); channel 2 is outside
        // the suspect span and spikes beyond the fail threshold.
        assert_eq!(middle.channels[1].gross_range, F);
        assert_eq!(middle.channels[1].aggregate, F);
        assert_eq!(middle.channels[2].gross_range, S);
        assert_eq!(middle.aggregate, F);
        assert_eq!(middle.score, 14.0 / 16.0);
        assert_eq!(results[0].aggregate, P);
        assert_eq!(results[0].score, 1.0);
    }

    #[test]
    fn a_new_channel_layout_restarts_the_value_tests() {
        let config = QcConfig::default().enose;
        let mut qc = SensorQc::new();
        let sixteen = vec![1.0; 16];
        let eight = vec![1.0; 8];
        let mut results = Vec::new();
        for (ts_ms, values) in [(0, &sixteen), (1_000, &sixteen), (2_000, &eight)] {
            let input = QcInput {
                ts_ms,
                seq: ts_ms as u64 / 1_000,
                reference_ts_ms: None,
                values,
            };
            results.extend(qc.observe(&input, &config));
        }
        results.extend(qc.finish(&config));
        let channels: Vec<_> = results.iter().map(|r| r.channels.len()).collect();
        assert_eq!(channels, [16, 16, 8]);
        assert_eq!(results[1].channels[0].spike, N);
        assert_eq!(results[2].channels[0].rate_of_change, N);
        assert_eq!(results[2].time_gap, P);
    }

    #[test]
    fn memory_per_channel_stays_bounded() {
        let per_channel = std::mem::size_of::<ChannelState>()
            + 2 * FLAT_LINE_MAX_EXTREMES * std::mem::size_of::<Extreme>();
        assert_eq!(std::mem::size_of::<Extreme>(), 24);
        assert!(per_channel <= 1_650, "{per_channel} bytes per channel");
        // A slow monotone drift inside the tolerance is the worst case for
        // the deques; they never grow past the cap.
        let config = KindQcConfig {
            flat_line: Some(FlatLineConfig {
                tolerance: 1.0,
                suspect_after_ms: 10_000,
                fail_after_ms: 20_000,
            }),
            ..none()
        };
        let mut qc = SensorQc::new();
        for step in 0..10_000_i64 {
            let value = [1.0 - 1e-5 * step as f64];
            let input = QcInput {
                ts_ms: step * 1_000,
                seq: step as u64,
                reference_ts_ms: None,
                values: &value,
            };
            let _ = qc.observe(&input, &config);
            let flat = &qc.channels[0].flat;
            assert!(flat.maxima.capacity() <= FLAT_LINE_MAX_EXTREMES);
            assert!(flat.minima.capacity() <= FLAT_LINE_MAX_EXTREMES);
        }
    }

    /// The flat-line definition by brute force: the values from the last
    /// reading at or before `t - threshold` up to `t` (missing ones
    /// ignored) span less than the tolerance.
    fn flat_line_reference(times: &[i64], x: &[f64], flat: &FlatLineConfig) -> Vec<QcFlag> {
        (0..x.len())
            .map(|n| {
                if x[n].is_nan() {
                    return M;
                }
                let flat_for = |threshold: i64| {
                    let Some(anchor) = (0..=n).rev().find(|&k| times[k] <= times[n] - threshold)
                    else {
                        return false;
                    };
                    let window = x[anchor..=n].iter().filter(|v| !v.is_nan());
                    let (lo, hi) = window
                        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                            (lo.min(v), hi.max(v))
                        });
                    hi - lo < flat.tolerance
                };
                if flat_for(flat.fail_after_ms) {
                    F
                } else if flat_for(flat.suspect_after_ms) {
                    S
                } else {
                    P
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn streaming_flat_line_equals_the_windowed_definition(
            steps in proptest::collection::vec((1_i64..4, 0_u8..8), 1..120),
            tolerance in 0.5_f64..3.0,
            suspect_s in 1_i64..8,
            extra_s in 0_i64..8,
        ) {
            let mut times = Vec::new();
            let mut t = 0;
            for (dt, _) in &steps {
                t += dt * 1_000;
                times.push(t);
            }
            // Few distinct levels keep runs long; level 7 is a missing value.
            let x: Vec<f64> = steps
                .iter()
                .map(|&(_, level)| if level == 7 { f64::NAN } else { f64::from(level % 4) })
                .collect();
            let flat = FlatLineConfig {
                tolerance,
                suspect_after_ms: suspect_s * 1_000,
                fail_after_ms: (suspect_s + extra_s) * 1_000,
            };
            let config = KindQcConfig { flat_line: Some(flat), ..none() };
            let seconds: Vec<i64> = times.iter().map(|t| t / 1_000).collect();
            let results = run(&seconds, &x, &config);
            prop_assert_eq!(
                channel_flags(&results, |c| c.flat_line),
                flat_line_reference(&times, &x, &flat)
            );
        }

        #[test]
        fn a_full_flat_line_deque_only_shortens_runs(
            steps in proptest::collection::vec(-1.0_f64..1.0, 1..300),
            trend in -1.0_f64..1.0,
        ) {
            // Slow drifts with noise well inside the tolerance fill the
            // deques past their cap; the flags may then be weaker than the
            // windowed definition, never stronger.
            let x: Vec<f64> = steps
                .iter()
                .scan(0.0, |level, step| {
                    *level += 1e-4 * (trend + 0.2 * step);
                    Some(*level)
                })
                .collect();
            let times: Vec<i64> = (1..=x.len() as i64).map(|s| s * 1_000).collect();
            let flat = FlatLineConfig {
                tolerance: 1.0,
                suspect_after_ms: 20_000,
                fail_after_ms: 60_000,
            };
            let config = KindQcConfig { flat_line: Some(flat), ..none() };
            let seconds: Vec<i64> = times.iter().map(|t| t / 1_000).collect();
            let results = run(&seconds, &x, &config);
            let reference = flat_line_reference(&times, &x, &flat);
            for (ours, reference) in channel_flags(&results, |c| c.flat_line).into_iter().zip(reference) {
                prop_assert!(ours.precedence() <= reference.precedence());
            }
        }

        #[test]
        fn every_reading_gets_one_consistent_result(
            readings in proptest::collection::vec(
                (0_i64..3_000, 0_u64..3, proptest::collection::vec(-10.0_f64..200.0, 3)),
                1..60,
            ),
            missing in proptest::collection::vec(any::<bool>(), 60),
        ) {
            let config = QcConfig::default().temperature;
            let mut qc = SensorQc::new();
            let mut results = Vec::new();
            let (mut ts_ms, mut seq) = (1_000_000_i64, 0_u64);
            for (index, (dt, dseq, values)) in readings.iter().enumerate() {
                ts_ms += dt;
                seq += dseq;
                let mut values = values.clone();
                if missing[index] {
                    values[index % 3] = f64::NAN;
                }
                let input = QcInput { ts_ms, seq, reference_ts_ms: Some(ts_ms + 10), values: &values };
                results.extend(qc.observe(&input, &config));
            }
            results.extend(qc.finish(&config));
            prop_assert_eq!(results.len(), readings.len());
            for result in &results {
                prop_assert!((0.0..=1.0).contains(&result.score));
                for channel in &result.channels {
                    let worst = QcFlag::aggregate([
                        channel.gross_range, channel.spike, channel.rate_of_change, channel.flat_line,
                    ]);
                    prop_assert_eq!(channel.aggregate, worst);
                    if channel.gross_range == M {
                        prop_assert_eq!(
                            [channel.spike, channel.rate_of_change, channel.flat_line], [M, M, M]
                        );
                    }
                }
                if result.aggregate == F {
                    prop_assert!(result.score < 1.0);
                }
                let clean = |flag: QcFlag| flag == P || flag == N;
                if result.channels.iter().all(|c| clean(c.aggregate))
                    && [result.time_gap, result.sequence, result.timestamp_skew].into_iter().all(clean)
                {
                    prop_assert_eq!(result.score, 1.0);
                }
            }
        }
    }
}
