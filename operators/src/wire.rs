//! The JSON wire format of `scent.readings` and `scent.batches`
//! (`docs/wire-format.md`, schemas under `deploy/schemas/`).
//!
//! Decoding is the first stage of every dataflow and the one that meets the
//! outside world, so it never panics and classifies every failure with a
//! stable [`RejectReason`]: bytes that are not UTF-8, text that is not JSON,
//! missing fields, fields of the wrong type, unknown sensor kinds,
//! unparseable timestamps and oversized payloads. Range, finiteness and
//! channel-count checks belong to [`crate::validate`], which sees decoded
//! values; decoding only guarantees the shape.
//!
//! `ts` accepts an RFC 3339 string (any offset, normalised to UTC) or an
//! integer number of milliseconds since the Unix epoch. Encoding always
//! writes RFC 3339 in UTC with millisecond precision.
//!
//! Cost: well-formed records are deserialised straight into a [`Reading`]
//! (one pass, allocations only for the output); a rejected record is parsed
//! a second time into a `serde_json::Value` to classify the failure.

use crate::model::{
    BatchEvent, BatchPhase, EventTimeMs, Reading, RejectReason, Rejection, SensorKind, Stage,
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Limits applied while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted payload, in bytes.
    pub max_payload_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_payload_bytes: 64 * 1024,
        }
    }
}

fn reject(reason: RejectReason, detail: impl Into<String>) -> Rejection {
    Rejection::new(Stage::Decode, reason, detail)
}

/// Parses bytes into a JSON object, checking size and encoding first.
fn parse_object(payload: &[u8], limits: &DecodeLimits) -> Result<Map<String, Value>, Rejection> {
    if payload.len() > limits.max_payload_bytes {
        return Err(reject(
            RejectReason::Oversized,
            format!(
                "payload of {} bytes exceeds the limit of {} bytes",
                payload.len(),
                limits.max_payload_bytes
            ),
        ));
    }
    let text = std::str::from_utf8(payload).map_err(|error| {
        reject(
            RejectReason::InvalidUtf8,
            format!("invalid UTF-8 at byte {}", error.valid_up_to()),
        )
    })?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(reject(
            RejectReason::WrongType,
            format!("expected a JSON object, found {}", json_type(&other)),
        )),
        Err(error) => Err(reject(RejectReason::InvalidJson, error.to_string())),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn required<'a>(object: &'a Map<String, Value>, field: &str) -> Result<&'a Value, Rejection> {
    match object.get(field) {
        None | Some(Value::Null) => Err(reject(
            RejectReason::MissingField,
            format!("field `{field}` is missing"),
        )),
        Some(value) => Ok(value),
    }
}

fn wrong_type(field: &str, expected: &str, found: &Value) -> Rejection {
    reject(
        RejectReason::WrongType,
        format!(
            "field `{field}` must be {expected}, found {}",
            json_type(found)
        ),
    )
}

fn required_str<'a>(object: &'a Map<String, Value>, field: &str) -> Result<&'a str, Rejection> {
    let value = required(object, field)?;
    value
        .as_str()
        .ok_or_else(|| wrong_type(field, "a string", value))
}

fn optional_str(object: &Map<String, Value>, field: &str) -> Result<Option<String>, Rejection> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(wrong_type(field, "a string or null", other)),
    }
}

/// Parses a timestamp: RFC 3339 text or integer epoch milliseconds.
pub fn parse_timestamp(value: &Value) -> Result<EventTimeMs, Rejection> {
    match value {
        Value::String(text) => DateTime::parse_from_rfc3339(text)
            .map(|time| time.timestamp_millis())
            .map_err(|error| {
                reject(
                    RejectReason::BadTimestamp,
                    format!("`ts` {text:?} is not RFC 3339: {error}"),
                )
            }),
        Value::Number(number) => number.as_i64().ok_or_else(|| {
            reject(
                RejectReason::BadTimestamp,
                format!("`ts` {number} is not an integer number of epoch milliseconds"),
            )
        }),
        other => Err(wrong_type(
            "ts",
            "an RFC 3339 string or epoch milliseconds",
            other,
        )),
    }
}

/// Formats event time as RFC 3339 in UTC with millisecond precision.
pub fn format_timestamp(ts_ms: EventTimeMs) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ts_ms) {
        Some(time) => time.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => ts_ms.to_string(),
    }
}

/// The shape of a well-formed reading, for the fast path of
/// [`decode_reading`].
#[derive(Deserialize)]
struct WellFormedReading<'a> {
    plant: String,
    line: String,
    sensor: String,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    ts: WellFormedTimestamp<'a>,
    seq: u64,
    #[serde(default)]
    batch: Option<String>,
    #[serde(default)]
    product: Option<String>,
    values: Vec<f64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WellFormedTimestamp<'a> {
    // Text first: it is the common case, and a failed variant costs an error.
    Text(#[serde(borrow)] Cow<'a, str>),
    Millis(i64),
}

/// Decodes a well-formed reading straight into its fields; `None` for
/// anything unusual, which the classifying path then explains.
fn decode_well_formed(text: &str) -> Option<Reading> {
    let wire: WellFormedReading<'_> = serde_json::from_str(text).ok()?;
    let kind = SensorKind::parse(&wire.kind)?;
    let ts_ms = match wire.ts {
        WellFormedTimestamp::Millis(millis) => millis,
        WellFormedTimestamp::Text(text) => {
            DateTime::parse_from_rfc3339(&text).ok()?.timestamp_millis()
        }
    };
    Some(Reading {
        plant: wire.plant,
        line: wire.line,
        sensor: wire.sensor,
        kind,
        ts_ms,
        seq: wire.seq,
        batch: wire.batch,
        product: wire.product,
        values: wire.values,
    })
}

/// Decodes one `scent.readings` record.
///
/// Well-formed records take a fast path that deserialises straight into
/// the reading; anything it refuses is parsed again into a JSON value and
/// examined field by field, so every rejection names its reason precisely.
/// Both paths accept exactly the same records.
pub fn decode_reading(payload: &[u8], limits: &DecodeLimits) -> Result<Reading, Rejection> {
    if payload.len() <= limits.max_payload_bytes {
        if let Some(reading) = std::str::from_utf8(payload)
            .ok()
            .and_then(decode_well_formed)
        {
            return Ok(reading);
        }
    }
    decode_reading_classified(payload, limits)
}

/// The classifying path of [`decode_reading`].
fn decode_reading_classified(payload: &[u8], limits: &DecodeLimits) -> Result<Reading, Rejection> {
    let object = parse_object(payload, limits)?;
    let plant = required_str(&object, "plant")?.to_owned();
    let line = required_str(&object, "line")?.to_owned();
    let sensor = required_str(&object, "sensor")?.to_owned();
    let kind_name = required_str(&object, "kind")?;
    let kind = SensorKind::parse(kind_name).ok_or_else(|| {
        reject(
            RejectReason::UnknownSensorKind,
            format!("unknown sensor kind {kind_name:?}"),
        )
    })?;
    let ts_ms = parse_timestamp(required(&object, "ts")?)?;
    let seq_value = required(&object, "seq")?;
    let seq = seq_value
        .as_u64()
        .ok_or_else(|| wrong_type("seq", "a non-negative integer", seq_value))?;
    let batch = optional_str(&object, "batch")?;
    let product = optional_str(&object, "product")?;
    let values_value = required(&object, "values")?;
    let entries = values_value
        .as_array()
        .ok_or_else(|| wrong_type("values", "an array of numbers", values_value))?;
    let mut values = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        match entry.as_f64() {
            Some(value) => values.push(value),
            // JSON has no NaN or Infinity; producers that send them as
            // strings or nulls are told so plainly.
            None if is_non_finite_spelling(entry) => {
                return Err(Rejection::new(
                    Stage::Validate,
                    RejectReason::NonFinite,
                    format!("values[{index}] is {entry}, not a finite number"),
                ))
            }
            None => {
                return Err(wrong_type(&format!("values[{index}]"), "a number", entry));
            }
        }
    }
    Ok(Reading {
        plant,
        line,
        sensor,
        kind,
        ts_ms,
        seq,
        batch,
        product,
        values,
    })
}

fn is_non_finite_spelling(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => matches!(
            text.to_ascii_lowercase().as_str(),
            "nan" | "inf" | "+inf" | "-inf" | "infinity" | "+infinity" | "-infinity"
        ),
        _ => false,
    }
}

#[derive(Serialize)]
struct ReadingOut<'a> {
    plant: &'a str,
    line: &'a str,
    sensor: &'a str,
    kind: SensorKind,
    ts: String,
    seq: u64,
    batch: Option<&'a str>,
    product: Option<&'a str>,
    values: &'a [f64],
}

/// Encodes a reading in the wire format, fields in documented order.
/// Non-finite values (which validation never lets through) become `null`.
pub fn encode_reading(reading: &Reading) -> Vec<u8> {
    let out = ReadingOut {
        plant: &reading.plant,
        line: &reading.line,
        sensor: &reading.sensor,
        kind: reading.kind,
        ts: format_timestamp(reading.ts_ms),
        seq: reading.seq,
        batch: reading.batch.as_deref(),
        product: reading.product.as_deref(),
        values: &reading.values,
    };
    serde_json::to_vec(&out).expect("a reading always serialises")
}

/// Decodes one `scent.batches` record.
pub fn decode_batch_event(payload: &[u8], limits: &DecodeLimits) -> Result<BatchEvent, Rejection> {
    let object = parse_object(payload, limits)?;
    let batch = required_str(&object, "batch")?.to_owned();
    let line = required_str(&object, "line")?.to_owned();
    let product = required_str(&object, "product")?.to_owned();
    let event = match required_str(&object, "event")? {
        "start" => BatchPhase::Start,
        "end" => BatchPhase::End,
        other => {
            return Err(reject(
                RejectReason::WrongType,
                format!("field `event` must be \"start\" or \"end\", found {other:?}"),
            ))
        }
    };
    let ts_ms = parse_timestamp(required(&object, "ts")?)?;
    Ok(BatchEvent {
        batch,
        line,
        product,
        event,
        ts_ms,
    })
}

#[derive(Serialize)]
struct BatchEventOut<'a> {
    batch: &'a str,
    line: &'a str,
    product: &'a str,
    event: BatchPhase,
    ts: String,
}

/// Encodes a batch event in the wire format, fields in documented order.
pub fn encode_batch_event(event: &BatchEvent) -> Vec<u8> {
    let out = BatchEventOut {
        batch: &event.batch,
        line: &event.line,
        product: &event.product,
        event: event.event,
        ts: format_timestamp(event.ts_ms),
    };
    serde_json::to_vec(&out).expect("a batch event always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Reading {
        Reading {
            plant: "p1".into(),
            line: "L1".into(),
            sensor: "enose-1".into(),
            kind: SensorKind::Enose,
            ts_ms: 1_795_514_400_125,
            seq: 1042,
            batch: Some("B-1124-01".into()),
            product: Some("espresso".into()),
            values: vec![1.02, 0.98, 1.5],
        }
    }

    fn reason_of(payload: &[u8]) -> RejectReason {
        decode_reading(payload, &DecodeLimits::default())
            .expect_err("payload must be rejected")
            .reason
    }

    #[test]
    fn readings_round_trip() {
        let reading = sample();
        let bytes = encode_reading(&reading);
        assert_eq!(
            decode_reading(&bytes, &DecodeLimits::default()).unwrap(),
            reading
        );
    }

    #[test]
    fn timestamps_accept_rfc3339_with_offsets_and_epoch_millis() {
        let utc = parse_timestamp(&Value::from("2026-11-24T10:00:00.125Z")).unwrap();
        let offset = parse_timestamp(&Value::from("2026-11-24T11:00:00.125+01:00")).unwrap();
        let millis = parse_timestamp(&Value::from(utc)).unwrap();
        assert_eq!(utc, offset);
        assert_eq!(utc, millis);
        assert_eq!(format_timestamp(utc), "2026-11-24T10:00:00.125Z");
    }

    #[test]
    fn every_malformed_shape_gets_its_reason() {
        assert_eq!(reason_of(&[0xff, 0xfe, b'{']), RejectReason::InvalidUtf8);
        assert_eq!(reason_of(b"{\"plant\": "), RejectReason::InvalidJson);
        assert_eq!(reason_of(b"[1,2]"), RejectReason::WrongType);
        let mut object: Value = serde_json::from_slice(&encode_reading(&sample())).unwrap();
        object.as_object_mut().unwrap().remove("sensor");
        assert_eq!(
            reason_of(&serde_json::to_vec(&object).unwrap()),
            RejectReason::MissingField
        );
        let mut object: Value = serde_json::from_slice(&encode_reading(&sample())).unwrap();
        object["seq"] = Value::from("many");
        assert_eq!(
            reason_of(&serde_json::to_vec(&object).unwrap()),
            RejectReason::WrongType
        );
        object["seq"] = Value::from(1);
        object["kind"] = Value::from("sonar");
        assert_eq!(
            reason_of(&serde_json::to_vec(&object).unwrap()),
            RejectReason::UnknownSensorKind
        );
        object["kind"] = Value::from("enose");
        object["ts"] = Value::from("yesterday");
        assert_eq!(
            reason_of(&serde_json::to_vec(&object).unwrap()),
            RejectReason::BadTimestamp
        );
        object["ts"] = Value::from(5);
        object["values"] = serde_json::json!([1.0, "NaN"]);
        assert_eq!(
            reason_of(&serde_json::to_vec(&object).unwrap()),
            RejectReason::NonFinite
        );
        let huge = vec![b' '; DecodeLimits::default().max_payload_bytes + 1];
        assert_eq!(reason_of(&huge), RejectReason::Oversized);
    }

    #[test]
    fn both_paths_accept_the_same_readings() {
        let text = String::from_utf8(encode_reading(&sample())).unwrap();
        let variants = [
            text.clone(),
            text.replace("\"batch\":\"B-1124-01\"", "\"batch\":null"),
            text.replace(",\"product\":\"espresso\"", ""),
            text.replace(
                "\"ts\":\"2026-11-24T10:00:00.125Z\"",
                "\"ts\":1795514400125",
            ),
            text.replace("\"line\":\"L1\"", "\"line\":\"L\\u0031\""),
            text.replace("\"seq\":1042", "\"seq\":1042,\"extra\":[1,{\"a\":2}]"),
        ];
        for variant in variants {
            let fast = decode_well_formed(&variant);
            let classified =
                decode_reading_classified(variant.as_bytes(), &DecodeLimits::default());
            assert!(fast.is_some(), "fast path accepts {variant}");
            assert_eq!(fast, classified.ok(), "{variant}");
        }
        for refused in [
            text.replace("\"seq\":1042", "\"seq\":1042.5"),
            text.replace("\"ts\":\"2026-11-24T10:00:00.125Z\"", "\"ts\":1.5"),
            text.replace("\"kind\":\"enose\"", "\"kind\":\"sonar\""),
        ] {
            assert_eq!(decode_well_formed(&refused), None, "{refused}");
            assert!(decode_reading(refused.as_bytes(), &DecodeLimits::default()).is_err());
        }
    }

    #[test]
    fn batch_events_round_trip() {
        let event = BatchEvent {
            batch: "B-1".into(),
            line: "L1".into(),
            product: "espresso".into(),
            event: BatchPhase::End,
            ts_ms: 1_795_514_400_000,
        };
        let bytes = encode_batch_event(&event);
        assert_eq!(
            decode_batch_event(&bytes, &DecodeLimits::default()).unwrap(),
            event
        );
    }
}
