//! Validation: per-record checks that a decoded reading means something.
//!
//! Decoding ([`crate::wire`]) guarantees the shape of a record; validation
//! guarantees its meaning, one record at a time and without state:
//!
//! * identifiers (`plant`, `line`, `sensor`, `batch`, `product`) are
//!   non-empty, at most [`ValidationRules::max_identifier_len`] bytes and
//!   free of control characters and `/` where a key is built from them;
//! * every value is finite;
//! * the channel count fits the kind: exactly one for scalar sensors,
//!   [`ValidationRules::enose_channels`] for e-nose arrays;
//! * every value lies inside the physical range of its kind
//!   ([`KindRange`]): a humidity of 180 % or a negative absolute pressure is
//!   a broken gateway, not a process excursion;
//! * the event time lies inside [`ValidationRules::ts_range_ms`], which
//!   rejects the epoch-zero and year-3000 timestamps of misconfigured clocks.
//!
//! Batch lifecycle events get the identifier and time checks
//! ([`validate_batch_event`]).
//!
//! Stateful checks (duplicate sequence numbers, lateness) live with the state
//! they need. Cost: O(channels) per record, no allocation on success.

use crate::model::{BatchEvent, EventTimeMs, Reading, RejectReason, Rejection, SensorKind, Stage};
use serde::{Deserialize, Serialize};
use std::ops::RangeInclusive;

/// The physical range accepted for one sensor kind.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindRange {
    /// Smallest plausible value.
    pub min: f64,
    /// Largest plausible value.
    pub max: f64,
}

impl KindRange {
    fn contains(&self, value: f64) -> bool {
        self.min <= value && value <= self.max
    }
}

/// The rules applied by [`validate_reading`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationRules {
    /// Accepted channel counts of e-nose arrays.
    pub enose_channels: RangeInclusive<usize>,
    /// e-nose channel values (resistance ratio or conductance, > 0).
    pub enose: KindRange,
    /// Temperature in degrees Celsius.
    pub temperature: KindRange,
    /// Relative humidity in percent.
    pub humidity: KindRange,
    /// Absolute pressure in kilopascal.
    pub pressure: KindRange,
    /// pH units.
    pub ph: KindRange,
    /// Flow in litres per minute.
    pub flow: KindRange,
    /// Longest accepted identifier, in bytes.
    pub max_identifier_len: usize,
    /// Accepted event times (inclusive), epoch milliseconds.
    pub ts_range_ms: RangeInclusive<EventTimeMs>,
}

impl Default for ValidationRules {
    fn default() -> Self {
        ValidationRules {
            enose_channels: 8..=32,
            enose: KindRange {
                min: 0.0,
                max: 1.0e6,
            },
            temperature: KindRange {
                min: -50.0,
                max: 400.0,
            },
            humidity: KindRange {
                min: 0.0,
                max: 100.0,
            },
            pressure: KindRange {
                min: 0.0,
                max: 10_000.0,
            },
            ph: KindRange {
                min: 0.0,
                max: 14.0,
            },
            flow: KindRange {
                min: 0.0,
                max: 100_000.0,
            },
            max_identifier_len: 128,
            // 2000-01-01T00:00:00Z ..= 2100-01-01T00:00:00Z
            ts_range_ms: 946_684_800_000..=4_102_444_800_000,
        }
    }
}

impl ValidationRules {
    /// The physical range of a kind.
    pub fn range(&self, kind: SensorKind) -> &KindRange {
        match kind {
            SensorKind::Enose => &self.enose,
            SensorKind::Temperature => &self.temperature,
            SensorKind::Humidity => &self.humidity,
            SensorKind::Pressure => &self.pressure,
            SensorKind::Ph => &self.ph,
            SensorKind::Flow => &self.flow,
        }
    }

    /// Checks the rules themselves; the error names the offending field.
    pub fn check(&self) -> Result<(), String> {
        if self.enose_channels.is_empty() || *self.enose_channels.start() == 0 {
            return Err("enose_channels must be a non-empty range starting at 1 or more".into());
        }
        for kind in SensorKind::ALL {
            let range = self.range(kind);
            if !(range.min.is_finite() && range.max.is_finite() && range.min <= range.max) {
                return Err(format!(
                    "{kind}: min and max must be finite with min <= max"
                ));
            }
        }
        if self.max_identifier_len == 0 {
            return Err("max_identifier_len must be at least 1".into());
        }
        if self.ts_range_ms.is_empty() {
            return Err("ts_range_ms must not be empty".into());
        }
        Ok(())
    }
}

fn reject(reason: RejectReason, detail: String) -> Rejection {
    Rejection::new(Stage::Validate, reason, detail)
}

fn check_identifier(
    field: &str,
    value: &str,
    rules: &ValidationRules,
    in_key: bool,
) -> Result<(), Rejection> {
    let problem = if value.is_empty() {
        Some("is empty")
    } else if value.len() > rules.max_identifier_len {
        Some("is too long")
    } else if value.chars().any(char::is_control) {
        Some("contains control characters")
    } else if in_key && value.contains('/') {
        Some("contains `/`, which separates key parts")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(reject(
            RejectReason::BadIdentifier,
            format!(
                "`{field}` {problem} (at most {} bytes)",
                rules.max_identifier_len
            ),
        )),
        None => Ok(()),
    }
}

/// Validates one decoded batch lifecycle event against `rules`: its
/// identifiers must be able to match readings, its time must be plausible.
pub fn validate_batch_event(event: &BatchEvent, rules: &ValidationRules) -> Result<(), Rejection> {
    check_identifier("batch", &event.batch, rules, false)?;
    check_identifier("line", &event.line, rules, true)?;
    check_identifier("product", &event.product, rules, false)?;
    check_time(event.ts_ms, rules)
}

fn check_time(ts_ms: EventTimeMs, rules: &ValidationRules) -> Result<(), Rejection> {
    if rules.ts_range_ms.contains(&ts_ms) {
        return Ok(());
    }
    Err(reject(
        RejectReason::TimestampOutOfRange,
        format!(
            "`ts` {ts_ms} lies outside the accepted range {}..={}",
            rules.ts_range_ms.start(),
            rules.ts_range_ms.end()
        ),
    ))
}

/// Validates one decoded reading against `rules`.
pub fn validate_reading(reading: &Reading, rules: &ValidationRules) -> Result<(), Rejection> {
    check_identifier("plant", &reading.plant, rules, false)?;
    check_identifier("line", &reading.line, rules, true)?;
    check_identifier("sensor", &reading.sensor, rules, true)?;
    if let Some(batch) = &reading.batch {
        check_identifier("batch", batch, rules, false)?;
    }
    if let Some(product) = &reading.product {
        check_identifier("product", product, rules, false)?;
    }
    check_time(reading.ts_ms, rules)?;
    // Sequence numbers are stored as signed 64-bit integers downstream.
    if reading.seq > i64::MAX as u64 {
        return Err(reject(
            RejectReason::OutOfRange,
            format!("`seq` {} exceeds 2^63 - 1", reading.seq),
        ));
    }
    let channels = reading.values.len();
    let channels_ok = if reading.kind.is_scalar() {
        channels == 1
    } else {
        rules.enose_channels.contains(&channels)
    };
    if !channels_ok {
        let expected = if reading.kind.is_scalar() {
            "exactly 1".to_owned()
        } else {
            format!(
                "{}..={}",
                rules.enose_channels.start(),
                rules.enose_channels.end()
            )
        };
        return Err(reject(
            RejectReason::ChannelCount,
            format!(
                "{} sensor sent {channels} values, expected {expected}",
                reading.kind
            ),
        ));
    }
    let range = rules.range(reading.kind);
    for (index, &value) in reading.values.iter().enumerate() {
        if !value.is_finite() {
            return Err(reject(
                RejectReason::NonFinite,
                format!("values[{index}] is {value}"),
            ));
        }
        if !range.contains(value) {
            return Err(reject(
                RejectReason::OutOfRange,
                format!(
                    "values[{index}] = {value} lies outside the {} range {}..={}",
                    reading.kind, range.min, range.max
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn humidity(value: f64) -> Reading {
        Reading {
            plant: "p1".into(),
            line: "L1".into(),
            sensor: "rh-1".into(),
            kind: SensorKind::Humidity,
            ts_ms: 1_795_514_400_000,
            seq: 1,
            batch: None,
            product: None,
            values: vec![value],
        }
    }

    fn reason(reading: &Reading) -> Option<RejectReason> {
        validate_reading(reading, &ValidationRules::default())
            .err()
            .map(|rejection| rejection.reason)
    }

    #[test]
    fn accepts_a_plausible_reading() {
        assert_eq!(reason(&humidity(45.0)), None);
    }

    #[test]
    fn rejects_each_class_with_its_reason() {
        assert_eq!(reason(&humidity(180.0)), Some(RejectReason::OutOfRange));
        assert_eq!(reason(&humidity(f64::NAN)), Some(RejectReason::NonFinite));
        assert_eq!(
            reason(&humidity(f64::NEG_INFINITY)),
            Some(RejectReason::NonFinite)
        );
        let mut two = humidity(45.0);
        two.values.push(46.0);
        assert_eq!(reason(&two), Some(RejectReason::ChannelCount));
        let mut enose = humidity(1.0);
        enose.kind = SensorKind::Enose;
        enose.values = vec![1.0; 3];
        assert_eq!(reason(&enose), Some(RejectReason::ChannelCount));
        enose.values = vec![1.0; 16];
        assert_eq!(reason(&enose), None);
        let mut epoch_zero = humidity(45.0);
        epoch_zero.ts_ms = 0;
        assert_eq!(reason(&epoch_zero), Some(RejectReason::TimestampOutOfRange));
        let mut huge_seq = humidity(45.0);
        huge_seq.seq = u64::MAX;
        assert_eq!(reason(&huge_seq), Some(RejectReason::OutOfRange));
        let mut slash = humidity(45.0);
        slash.sensor = "rh/1".into();
        assert_eq!(reason(&slash), Some(RejectReason::BadIdentifier));
        let mut empty = humidity(45.0);
        empty.line = String::new();
        assert_eq!(reason(&empty), Some(RejectReason::BadIdentifier));
    }

    #[test]
    fn batch_events_need_matchable_identifiers_and_a_plausible_time() {
        let rules = ValidationRules::default();
        let event = BatchEvent {
            batch: "B-1".into(),
            line: "L1".into(),
            product: "espresso".into(),
            event: crate::model::BatchPhase::End,
            ts_ms: 1_795_514_400_000,
        };
        assert_eq!(validate_batch_event(&event, &rules), Ok(()));
        let reason = |event: &BatchEvent| validate_batch_event(event, &rules).unwrap_err().reason;
        let slash = BatchEvent {
            line: "L/1".into(),
            ..event.clone()
        };
        assert_eq!(reason(&slash), RejectReason::BadIdentifier);
        let empty = BatchEvent {
            batch: String::new(),
            ..event.clone()
        };
        assert_eq!(reason(&empty), RejectReason::BadIdentifier);
        let ancient = BatchEvent { ts_ms: 5, ..event };
        assert_eq!(reason(&ancient), RejectReason::TimestampOutOfRange);
    }

    #[test]
    fn default_rules_are_consistent() {
        ValidationRules::default().check().unwrap();
        let broken = ValidationRules {
            enose_channels: 0..=4,
            ..ValidationRules::default()
        };
        assert!(broken.check().is_err());
    }
}
