//! Malformed records: realistic broken gateway messages, each derived from
//! a real reading of the stream so that it carries that reading's key and
//! lands on that sensor's partition.
//!
//! | class | how the reading is broken | rejected at |
//! |---|---|---|
//! | `invalid_utf8` | two bytes of the sensor name replaced by `0xff 0xfe` | decode |
//! | `invalid_json` | cut after two thirds of its bytes | decode |
//! | `wrong_type` | `seq` sent as a string | decode |
//! | `missing_field` | no `sensor` field | decode |
//! | `non_finite` | one value sent as the string `"NaN"` | decode |
//! | `channel_count` | an e-nose reading with only 3 values | validate |
//! | `out_of_range` | humidity 180 % (or another impossible value) | validate |
//! | `unknown_sensor_kind` | `kind` is `"sonar"` | decode |
//! | `bad_timestamp` | `ts` is `"yesterday"` | decode |
//! | `oversized` | a 70 000-byte debug dump appended (limit 64 KiB) | decode |

use scent_operators::model::{Reading, RejectReason, SensorKind};
use scent_operators::wire::encode_reading;
use serde_json::Value;

/// The classes cycled through, in order: malformed record `i` has class
/// `MALFORMED_CLASSES[i % 10]`.
pub const MALFORMED_CLASSES: [RejectReason; 10] = [
    RejectReason::InvalidUtf8,
    RejectReason::InvalidJson,
    RejectReason::WrongType,
    RejectReason::MissingField,
    RejectReason::NonFinite,
    RejectReason::ChannelCount,
    RejectReason::OutOfRange,
    RejectReason::UnknownSensorKind,
    RejectReason::BadTimestamp,
    RejectReason::Oversized,
];

/// Size of the debug dump of an oversized record.
const OVERSIZED_DUMP_BYTES: usize = 70_000;

/// A value outside the physical range of `kind`.
pub(crate) fn impossible_value(kind: SensorKind) -> f64 {
    match kind {
        SensorKind::Humidity => 180.0,
        SensorKind::Temperature => 999.0,
        SensorKind::Pressure => -5.0,
        SensorKind::Ph => 15.5,
        SensorKind::Flow => -1.0,
        SensorKind::Enose => -1.0,
    }
}

/// The bytes of a malformed record of class `class`, derived from `reading`.
///
/// Classes outside [`MALFORMED_CLASSES`] yield the reading unchanged (the
/// simulator never asks for them).
pub(crate) fn malformed_payload(class: RejectReason, reading: &Reading) -> Vec<u8> {
    let encoded = encode_reading(reading);
    match class {
        RejectReason::InvalidUtf8 => corrupt_sensor_name(encoded),
        RejectReason::InvalidJson => {
            let mut cut = encoded.len() * 2 / 3;
            // Keep the truncated text valid UTF-8 (names may be non-ASCII),
            // so the record fails as JSON, not as UTF-8.
            while cut > 0 && (encoded[cut] & 0b1100_0000) == 0b1000_0000 {
                cut -= 1;
            }
            encoded[..cut].to_vec()
        }
        _ => {
            let mut object = match serde_json::from_slice::<Value>(&encoded) {
                Ok(Value::Object(object)) => object,
                _ => return encoded,
            };
            match class {
                RejectReason::WrongType => {
                    object.insert("seq".into(), Value::from(reading.seq.to_string()));
                }
                RejectReason::MissingField => {
                    object.remove("sensor");
                }
                RejectReason::NonFinite => {
                    let mut values: Vec<Value> =
                        reading.values.iter().map(|&v| Value::from(v)).collect();
                    let middle = values.len() / 2;
                    values[middle] = Value::from("NaN");
                    object.insert("values".into(), Value::Array(values));
                }
                RejectReason::ChannelCount => {
                    let first = reading.values.first().copied().unwrap_or(1.0);
                    let three: Vec<f64> = (0..3)
                        .map(|index| reading.values.get(index).copied().unwrap_or(first))
                        .collect();
                    object.insert("values".into(), Value::from(three));
                }
                RejectReason::OutOfRange => {
                    let mut values = reading.values.clone();
                    values[0] = impossible_value(reading.kind);
                    object.insert("values".into(), Value::from(values));
                }
                RejectReason::UnknownSensorKind => {
                    object.insert("kind".into(), Value::from("sonar"));
                }
                RejectReason::BadTimestamp => {
                    object.insert("ts".into(), Value::from("yesterday"));
                }
                RejectReason::Oversized => {
                    object.insert(
                        "debug_dump".into(),
                        Value::from("0123456789abcdef".repeat(OVERSIZED_DUMP_BYTES / 16)),
                    );
                }
                _ => {}
            }
            serde_json::to_vec(&Value::Object(object)).expect("a JSON value always serialises")
        }
    }
}

/// Replaces two bytes of the sensor name (or, failing that, of the payload
/// start) with `0xff 0xfe`, as a flipped bit on a serial line would.
fn corrupt_sensor_name(mut bytes: Vec<u8>) -> Vec<u8> {
    let marker = b"\"sensor\":\"";
    let at = bytes
        .windows(marker.len())
        .position(|window| window == marker)
        .map(|position| position + marker.len())
        .filter(|&position| position + 2 <= bytes.len())
        .unwrap_or(0);
    if bytes.len() >= at + 2 {
        bytes[at] = 0xff;
        bytes[at + 1] = 0xfe;
    } else {
        bytes.extend_from_slice(&[0xff, 0xfe]);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use scent_operators::validate::{validate_reading, ValidationRules};
    use scent_operators::wire::{decode_reading, DecodeLimits};

    fn reading(kind: SensorKind, values: Vec<f64>) -> Reading {
        Reading {
            plant: "p1".into(),
            line: "L1".into(),
            sensor: format!("{kind}-1"),
            kind,
            ts_ms: 1_795_514_400_125,
            seq: 42,
            batch: Some("B-L1-0001".into()),
            product: Some("café".into()),
            values,
        }
    }

    #[test]
    fn every_class_fails_with_its_reason() {
        let enose = reading(
            SensorKind::Enose,
            (0..16).map(|c| 1.0 + c as f64 / 100.0).collect(),
        );
        let humidity = reading(SensorKind::Humidity, vec![45.2]);
        let limits = DecodeLimits::default();
        let rules = ValidationRules::default();
        for class in MALFORMED_CLASSES {
            for source in [&enose, &humidity] {
                let payload = malformed_payload(class, source);
                let reason = match decode_reading(&payload, &limits) {
                    Ok(decoded) => {
                        validate_reading(&decoded, &rules)
                            .expect_err("a malformed record must be rejected")
                            .reason
                    }
                    Err(rejection) => rejection.reason,
                };
                assert_eq!(reason, class, "{} from {}", class, source.kind);
            }
        }
    }
}
