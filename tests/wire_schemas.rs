//! The wire format three ways: as documented (`docs/wire-format.md`), as
//! specified (the JSON Schemas in `deploy/schemas/`) and as implemented (the
//! codecs in `scent_operators::wire` and `scent_kafka::codec`). These tests
//! keep the three in agreement:
//!
//! * records written by the real encoders validate against the schemas;
//! * every tagged example in the document (an HTML comment
//!   `<!-- example: TAG -->` before a fenced `json` block) decodes with the
//!   real decoder and validates against its schema, and rejected examples are
//!   refused by both with the documented reason code;
//! * malformed documents are refused by both the schema and the decoder;
//! * the document's reject-reason and dead-letter header tables, and the
//!   schemas' enumerations and default limits, match the code.
//!
//! No services needed; the whole file runs in well under a second.

use jsonschema::Validator;
use scent_kafka::codec::{
    dead_letter_headers, decode_action, encode_action, ACTION_SCHEMA, DLQ_HEADER_PREFIX,
};
use scent_kafka::settings::Topics;
use scent_operators::batch_verdict::action_id;
use scent_operators::model::{
    Action, ActionKind, AnomalyRule, BatchEvent, BatchPhase, DeadLetter, Decision, Evidence,
    InputStream, RawRecord, Reading, Reason, RejectReason, Rejection, SensorKind, SourceCoord,
    Stage,
};
use scent_operators::validate::{validate_reading, ValidationRules};
use scent_operators::wire::{
    decode_batch_event, decode_reading, encode_batch_event, encode_reading, DecodeLimits,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// 2026-11-24T10:00:00.000Z.
const T0: i64 = 1_795_514_400_000;

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read_json(relative: &str) -> Value {
    let path = repo_path(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("{} is not JSON: {error}", path.display()))
}

struct Schema {
    name: &'static str,
    document: Value,
    validator: Validator,
}

impl Schema {
    fn load(name: &'static str) -> Schema {
        let file = format!("{name}.schema.json");
        let document = read_json(&format!("deploy/schemas/{file}"));
        if let Err(error) = jsonschema::draft202012::meta::validate(&document) {
            panic!("{file} is not a valid draft 2020-12 schema: {error}");
        }
        assert_eq!(
            document["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{file}: $schema"
        );
        assert_eq!(
            document["$id"],
            format!("https://scent.invalid/schemas/{file}"),
            "{file}: $id"
        );
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&document)
            .unwrap_or_else(|error| panic!("{file} does not compile: {error}"));
        Schema {
            name,
            document,
            validator,
        }
    }

    fn violations(&self, instance: &Value) -> Vec<String> {
        self.validator
            .iter_errors(instance)
            .map(|error| format!("{} at `{}`", error, error.instance_path()))
            .collect()
    }

    #[track_caller]
    fn assert_valid(&self, instance: &Value, what: &str) {
        let violations = self.violations(instance);
        assert!(
            violations.is_empty(),
            "{what} violates {}.schema.json: {violations:#?}\n{instance:#}",
            self.name
        );
    }

    #[track_caller]
    fn assert_invalid(&self, instance: &Value, what: &str) {
        assert!(
            !self.validator.is_valid(instance),
            "{what} should violate {}.schema.json:\n{instance:#}",
            self.name
        );
    }
}

struct Schemas {
    reading: Schema,
    batch_event: Schema,
    action: Schema,
}

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| Schemas {
        reading: Schema::load("reading"),
        batch_event: Schema::load("batch-event"),
        action: Schema::load("action"),
    })
}

fn doc() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        std::fs::read_to_string(repo_path("docs/wire-format.md"))
            .expect("docs/wire-format.md is readable")
    })
}

fn to_value(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("encoders write JSON")
}

fn to_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("a JSON value always serialises")
}

/// Decode and validate a reading as ingest does, without the stateful checks.
fn ingest_reading(payload: &[u8]) -> Result<Reading, Rejection> {
    let reading = decode_reading(payload, &DecodeLimits::default())?;
    validate_reading(&reading, &ValidationRules::default())?;
    Ok(reading)
}

// ---------------------------------------------------------------------------
// Samples built with the real types.

fn reading(kind: SensorKind, values: Vec<f64>) -> Reading {
    Reading {
        plant: "p1".into(),
        line: "L1".into(),
        sensor: format!("{kind}-1"),
        kind,
        ts_ms: T0 + 125,
        seq: 1042,
        batch: Some("B-1124-01".into()),
        product: Some("espresso".into()),
        values,
    }
}

fn sample_readings() -> Vec<Reading> {
    let rules = ValidationRules::default();
    let mut samples = Vec::new();
    for kind in SensorKind::ALL {
        let range = rules.range(kind);
        let channels: Vec<usize> = if kind.is_scalar() {
            vec![1]
        } else {
            vec![
                *rules.enose_channels.start(),
                16,
                *rules.enose_channels.end(),
            ]
        };
        for count in channels {
            for value in [range.min, (range.min + range.max) / 2.0, range.max] {
                samples.push(reading(kind, vec![value; count]));
            }
        }
    }
    let mut between_batches = reading(SensorKind::Humidity, vec![41.5]);
    between_batches.batch = None;
    between_batches.product = None;
    samples.push(between_batches);
    let mut earliest = reading(SensorKind::Temperature, vec![21.5]);
    earliest.ts_ms = *rules.ts_range_ms.start();
    samples.push(earliest);
    let mut latest = reading(SensorKind::Temperature, vec![21.5]);
    latest.ts_ms = *rules.ts_range_ms.end();
    latest.seq = i64::MAX as u64;
    samples.push(latest);
    let mut long_names = reading(SensorKind::Ph, vec![6.8]);
    long_names.plant = "p".repeat(rules.max_identifier_len);
    long_names.sensor = "Düse-ü".into();
    samples.push(long_names);
    samples
}

fn batch_event(event: BatchPhase, ts_ms: i64) -> BatchEvent {
    BatchEvent {
        batch: "B-1124-01".into(),
        line: "L1".into(),
        product: "espresso".into(),
        event,
        ts_ms,
    }
}

fn with_id(mut action: Action) -> Action {
    action.action_id = action_id(&action);
    action
}

fn sample_actions() -> Vec<Action> {
    let evidence = Evidence {
        batch_start_ms: Some(T0 - 1_800_000),
        batch_end_ms: T0 + 1_800_000,
        anomalies: 9,
        rules_version: "rolling-v1:w120:u30:z6:f15:g10000".into(),
    };
    let hold = with_id(Action {
        action_id: String::new(),
        kind: ActionKind::BatchRelease,
        plant: "p1".into(),
        line: "L1".into(),
        batch: Some("B-1124-01".into()),
        product: Some("espresso".into()),
        decision: Some(Decision::Hold),
        reasons: vec![
            Reason {
                sensor: "t-1".into(),
                kind: SensorKind::Temperature,
                rule: AnomalyRule::Gap,
                count: 1,
                max_statistic: 31.0,
                limit: 10.0,
                first_ts_ms: T0 + 1_200_000,
                last_ts_ms: T0 + 1_200_000,
                channels: vec![],
                contaminant: None,
            },
            Reason {
                sensor: "enose-1".into(),
                kind: SensorKind::Enose,
                rule: AnomalyRule::ZScore,
                count: 7,
                max_statistic: 9.4,
                limit: 6.0,
                first_ts_ms: T0 + 723_500,
                last_ts_ms: T0 + 729_125,
                channels: vec![3, 11, 4],
                contaminant: None,
            },
            Reason {
                sensor: "enose-2".into(),
                kind: SensorKind::Enose,
                rule: AnomalyRule::FlatLine,
                count: 2,
                max_statistic: 15.0,
                limit: 15.0,
                first_ts_ms: T0 + 100_000,
                last_ts_ms: T0 + 101_000,
                channels: vec![u16::MAX, 0],
                contaminant: None,
            },
            Reason {
                sensor: "enose-1".into(),
                kind: SensorKind::Enose,
                rule: AnomalyRule::Contaminant,
                count: 14,
                max_statistic: 0.99,
                limit: 0.8,
                first_ts_ms: T0 + 724_000,
                last_ts_ms: T0 + 854_000,
                channels: vec![3, 11, 4],
                contaminant: Some("ethanol".into()),
            },
            Reason {
                sensor: "enose-1".into(),
                kind: SensorKind::Enose,
                rule: AnomalyRule::Spe,
                count: 14,
                max_statistic: 2_345.6,
                limit: 23.9,
                first_ts_ms: T0 + 724_000,
                last_ts_ms: T0 + 854_000,
                channels: vec![3, 11, 4],
                contaminant: None,
            },
        ],
        evidence: evidence.clone(),
        ts_ms: T0 + 1_800_000,
    });
    let release = with_id(Action {
        decision: Some(Decision::Release),
        reasons: vec![],
        evidence: Evidence {
            batch_start_ms: None,
            anomalies: 0,
            ..evidence
        },
        ..hold.clone()
    });
    let reject = with_id(Action {
        decision: Some(Decision::Reject),
        ..hold.clone()
    });
    let alert = with_id(Action {
        kind: ActionKind::Alert,
        batch: None,
        product: None,
        decision: None,
        ..hold.clone()
    });
    vec![hold, release, reject, alert]
}

// ---------------------------------------------------------------------------
// (a) The encoders write what the schemas describe.

#[test]
fn encoded_readings_validate_and_round_trip() {
    for sample in sample_readings() {
        let bytes = encode_reading(&sample);
        schemas()
            .reading
            .assert_valid(&to_value(&bytes), &format!("encoded {sample:?}"));
        let decoded = ingest_reading(&bytes)
            .unwrap_or_else(|rejection| panic!("{sample:?} rejected: {rejection}"));
        assert_eq!(decoded, sample);
    }
}

#[test]
fn encoded_batch_events_validate_and_round_trip() {
    for event in [
        batch_event(BatchPhase::Start, T0 - 1_800_000),
        batch_event(BatchPhase::End, T0 + 1_800_000),
    ] {
        let bytes = encode_batch_event(&event);
        schemas()
            .batch_event
            .assert_valid(&to_value(&bytes), &format!("encoded {event:?}"));
        assert_eq!(
            decode_batch_event(&bytes, &DecodeLimits::default()).unwrap(),
            event
        );
    }
}

#[test]
fn encoded_actions_validate_and_round_trip() {
    for action in sample_actions() {
        let bytes = encode_action(&action);
        let value = to_value(&bytes);
        schemas()
            .action
            .assert_valid(&value, &format!("encoded {action:?}"));
        assert_eq!(value["schema"], ACTION_SCHEMA);
        assert_eq!(decode_action("scent.actions", &bytes).unwrap(), action);
    }
}

// ---------------------------------------------------------------------------
// (b) The examples in the document are what the code reads and writes.

struct Example {
    tag: String,
    line: usize,
    json: String,
}

/// Every fenced `json` block preceded by `<!-- example: TAG -->`.
fn doc_examples() -> Vec<Example> {
    let lines: Vec<&str> = doc().lines().collect();
    let mut examples = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index].trim();
        index += 1;
        let Some(tag) = line
            .strip_prefix("<!-- example:")
            .and_then(|rest| rest.strip_suffix("-->"))
        else {
            continue;
        };
        while index < lines.len() && lines[index].trim().is_empty() {
            index += 1;
        }
        assert_eq!(
            lines.get(index).map(|l| l.trim()),
            Some("```json"),
            "example `{}` at line {index} must be followed by a ```json block",
            tag.trim()
        );
        let start = index + 1;
        let end = (start..lines.len())
            .find(|&i| lines[i].trim() == "```")
            .unwrap_or_else(|| panic!("unterminated example at line {start}"));
        examples.push(Example {
            tag: tag.trim().to_owned(),
            line: start,
            json: lines[start..end].join("\n"),
        });
        index = end + 1;
    }
    examples
}

#[test]
fn document_examples_decode_and_validate() {
    let examples = doc_examples();
    let tags: BTreeSet<&str> = examples.iter().map(|e| e.tag.as_str()).collect();
    for required in [
        "reading",
        "batch-event-start",
        "batch-event-end",
        "action-hold",
        "action-release",
    ] {
        assert!(tags.contains(required), "example `{required}` is missing");
    }
    let mut rejected_codes = BTreeSet::new();
    for example in &examples {
        let what = format!("example `{}` (line {})", example.tag, example.line);
        let value: Value = serde_json::from_str(&example.json)
            .unwrap_or_else(|error| panic!("{what} is not JSON: {error}"));
        let bytes = example.json.as_bytes();
        let tag = example.tag.as_str();
        if let Some(code) = tag.strip_prefix("rejected-reading ") {
            let expected = RejectReason::parse(code.trim())
                .unwrap_or_else(|| panic!("{what}: unknown reason code {code:?}"));
            let Err(rejection) = ingest_reading(bytes) else {
                panic!("{what} must be rejected");
            };
            assert_eq!(rejection.reason, expected, "{what}: {rejection}");
            schemas().reading.assert_invalid(&value, &what);
            rejected_codes.insert(expected);
        } else if tag == "reading" || tag.starts_with("reading-") {
            schemas().reading.assert_valid(&value, &what);
            let reading =
                ingest_reading(bytes).unwrap_or_else(|rejection| panic!("{what}: {rejection}"));
            let again = encode_reading(&reading);
            assert_eq!(
                decode_reading(&again, &DecodeLimits::default()).unwrap(),
                reading
            );
            if tag == "reading" {
                // The issue's example: a 16-channel e-nose reading, written
                // exactly as the encoder writes it.
                assert_eq!(reading.kind, SensorKind::Enose);
                assert_eq!(reading.values.len(), 16, "{what}");
                assert_eq!(
                    to_value(&again),
                    value,
                    "{what} differs from the encoder's output"
                );
            }
        } else if tag.starts_with("batch-event-") {
            schemas().batch_event.assert_valid(&value, &what);
            let event = decode_batch_event(bytes, &DecodeLimits::default())
                .unwrap_or_else(|rejection| panic!("{what}: {rejection}"));
            assert!(ValidationRules::default()
                .ts_range_ms
                .contains(&event.ts_ms));
            let phase = if tag.ends_with("start") {
                BatchPhase::Start
            } else {
                BatchPhase::End
            };
            assert_eq!(event.event, phase, "{what}");
        } else if tag.starts_with("action-") {
            schemas().action.assert_valid(&value, &what);
            let action = decode_action("scent.actions", bytes)
                .unwrap_or_else(|error| panic!("{what}: {error}"));
            assert_eq!(
                action.action_id,
                action_id(&action),
                "{what}: action_id is not the hash of the content"
            );
            let strength = |r: &Reason| r.max_statistic / r.limit;
            assert!(
                action
                    .reasons
                    .windows(2)
                    .all(|pair| strength(&pair[0]) >= strength(&pair[1])),
                "{what}: reasons must be strongest first"
            );
            assert_eq!(
                to_value(&encode_action(&action)),
                value,
                "{what} differs from the encoder's output"
            );
        } else {
            panic!("{what}: no check for this tag");
        }
    }
    assert!(!rejected_codes.is_empty(), "no rejected-reading examples");
}

// ---------------------------------------------------------------------------
// (c) Malformed documents are refused by both the schema and the decoder.

fn valid_reading_json() -> Value {
    to_value(&encode_reading(&reading(SensorKind::Enose, vec![1.0; 16])))
}

/// `base` with the values at JSON pointers replaced (or, for a top-level
/// `/field`, inserted).
fn with(base: &Value, edits: &[(&str, Value)]) -> Value {
    let mut value = base.clone();
    for (pointer, replacement) in edits {
        match value.pointer_mut(pointer) {
            Some(slot) => *slot = replacement.clone(),
            None => {
                let field = pointer.strip_prefix('/').expect("a JSON pointer");
                assert!(!field.contains('/'), "{pointer} does not exist");
                value[field] = replacement.clone();
            }
        }
    }
    value
}

/// `base` without the value at a JSON pointer.
fn without(base: &Value, pointer: &str) -> Value {
    let mut value = base.clone();
    let (parent, field) = pointer.rsplit_once('/').expect("a JSON pointer");
    let removed = value
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .and_then(|object| object.remove(field));
    assert!(removed.is_some(), "{pointer} does not exist");
    value
}

#[test]
fn malformed_readings_are_refused_by_schema_and_decoder() {
    use RejectReason::*;
    let base = valid_reading_json();
    let set = |pointer: &str, value: Value| with(&base, &[(pointer, value)]);
    let scalar =
        |kind: &str, values: Value| with(&base, &[("/kind", json!(kind)), ("/values", values)]);
    #[rustfmt::skip]
    let cases = [
        ("not an object", json!([1, 2]), WrongType),
        ("missing seq", without(&base, "/seq"), MissingField),
        ("null sensor", set("/sensor", Value::Null), MissingField),
        ("seq as a string", set("/seq", json!("1042")), WrongType),
        ("negative seq", set("/seq", json!(-1)), WrongType),
        ("values not an array", set("/values", json!(1.02)), WrongType),
        ("a boolean value", set("/values/3", json!(true)), WrongType),
        ("ts a boolean", set("/ts", json!(true)), WrongType),
        ("unknown kind", set("/kind", json!("sonar")), UnknownSensorKind),
        ("kind in capitals", set("/kind", json!("Enose")), UnknownSensorKind),
        ("ts without offset", set("/ts", json!("2026-11-24T10:00:00")), BadTimestamp),
        ("ts in another format", set("/ts", json!("24.11.2026 10:00")), BadTimestamp),
        ("ts with a fraction", set("/ts", json!(1_795_514_400.125)), BadTimestamp),
        ("NaN spelled as a string", set("/values/0", json!("NaN")), NonFinite),
        ("null value", set("/values/0", Value::Null), NonFinite),
        ("ts at epoch zero", set("/ts", json!(0)), TimestampOutOfRange),
        ("too few channels", set("/values", json!(vec![1.0; 4])), ChannelCount),
        ("too many channels", set("/values", json!(vec![1.0; 33])), ChannelCount),
        ("negative e-nose channel", set("/values/5", json!(-0.5)), OutOfRange),
        ("slash in sensor", set("/sensor", json!("enose/1")), BadIdentifier),
        ("slash in line", set("/line", json!("L/1")), BadIdentifier),
        ("empty line", set("/line", json!("")), BadIdentifier),
        ("control character", set("/batch", json!("B-1\n")), BadIdentifier),
        ("C1 control character", set("/product", json!("espresso\u{85}")), BadIdentifier),
        ("plant too long", set("/plant", json!("p".repeat(129))), BadIdentifier),
        ("scalar with two values", scalar("temperature", json!([21.5, 21.6])), ChannelCount),
        ("scalar with no value", scalar("ph", json!([])), ChannelCount),
        ("humidity above 100", scalar("humidity", json!([180.0])), OutOfRange),
    ];
    for (what, value, expected) in cases {
        let Err(rejection) = ingest_reading(&to_bytes(&value)) else {
            panic!("{what}: the engine must reject");
        };
        assert_eq!(rejection.reason, expected, "{what}: {rejection}");
        assert_eq!(rejection.stage, expected.stage(), "{what}: stage");
        schemas().reading.assert_invalid(&value, what);
    }
}

#[test]
fn malformed_batch_events_are_refused_by_schema_and_decoder() {
    use RejectReason::*;
    let base = to_value(&encode_batch_event(&batch_event(BatchPhase::Start, T0)));
    let set = |pointer: &str, value: Value| with(&base, &[(pointer, value)]);
    #[rustfmt::skip]
    let cases = [
        ("missing event", without(&base, "/event"), MissingField),
        ("null batch", set("/batch", Value::Null), MissingField),
        ("unknown phase", set("/event", json!("stop")), WrongType),
        ("product a number", set("/product", json!(7)), WrongType),
        ("ts an object", set("/ts", json!({})), WrongType),
        ("ts without seconds and offset", set("/ts", json!("2026-11-24 10:00")), BadTimestamp),
    ];
    for (what, value, expected) in cases {
        let Err(rejection) = decode_batch_event(&to_bytes(&value), &DecodeLimits::default()) else {
            panic!("{what}: the decoder must reject");
        };
        assert_eq!(rejection.reason, expected, "{what}: {rejection}");
        schemas().batch_event.assert_invalid(&value, what);
    }
}

#[test]
fn malformed_actions_are_refused_by_schema_and_decoder() {
    let base = to_value(&encode_action(&sample_actions().remove(0)));
    let set = |pointer: &str, value: Value| with(&base, &[(pointer, value)]);
    #[rustfmt::skip]
    let cases = [
        ("missing action_id", without(&base, "/action_id")),
        ("missing schema", without(&base, "/schema")),
        ("another schema version", set("/schema", json!("scent.action/v2"))),
        ("unknown kind", set("/kind", json!("recall"))),
        ("unknown decision", set("/decision", json!("ship"))),
        ("reasons not an array", set("/reasons", json!("none"))),
        ("ts_ms a string", set("/ts_ms", json!("1795516200000"))),
        ("evidence without batch end", without(&base, "/evidence/batch_end_ms")),
        ("reason with unknown rule", set("/reasons/0/rule", json!("drift"))),
        ("negative channel", set("/reasons/1/channels/0", json!(-1))),
    ];
    for (what, value) in cases {
        assert!(
            decode_action("scent.actions", &to_bytes(&value)).is_err(),
            "{what}: the decoder must reject"
        );
        schemas().action.assert_invalid(&value, what);
    }
}

#[test]
fn unknown_fields_are_tolerated_by_schema_and_decoder() {
    let extra = json!({"firmware": "2.4.1"});
    let reading = with(&valid_reading_json(), &[("/x_gateway", extra)]);
    schemas()
        .reading
        .assert_valid(&reading, "reading with an extra field");
    ingest_reading(&to_bytes(&reading)).expect("extra fields are ignored");

    let event = to_value(&encode_batch_event(&batch_event(BatchPhase::End, T0)));
    let event = with(&event, &[("/x_order", json!("4711"))]);
    schemas()
        .batch_event
        .assert_valid(&event, "batch event with an extra field");
    decode_batch_event(&to_bytes(&event), &DecodeLimits::default())
        .expect("extra fields are ignored");

    let action = sample_actions().remove(0);
    let mut extended = with(
        &to_value(&encode_action(&action)),
        &[("/supersedes", Value::Null)],
    );
    extended["evidence"]["readings"] = json!(12_000);
    extended["reasons"][0]["detail"] = json!("later, additive");
    schemas()
        .action
        .assert_valid(&extended, "action with additive fields");
    assert_eq!(
        decode_action("scent.actions", &to_bytes(&extended)).unwrap(),
        action
    );
}

// ---------------------------------------------------------------------------
// (d) Tables and enumerations match the code.

/// The cells of the Markdown table rows of `section` (up to the next `## `).
fn table_rows(section: &str) -> Vec<Vec<String>> {
    let start = doc()
        .find(&format!("\n{section}\n"))
        .unwrap_or_else(|| panic!("section {section:?} is missing"));
    let body = &doc()[start + section.len() + 2..];
    let body = &body[..body.find("\n## ").unwrap_or(body.len())];
    body.lines()
        .filter(|line| line.starts_with('|'))
        .map(|line| {
            line.trim_matches('|')
                .split(" | ")
                .map(|cell| cell.trim().to_owned())
                .collect()
        })
        .collect()
}

fn code_cell(cell: &str) -> Option<&str> {
    let inner = cell.strip_prefix('`')?.strip_suffix('`')?;
    (!inner.contains('`')).then_some(inner)
}

#[test]
fn document_reject_table_matches_reject_reason() {
    let mut documented = BTreeMap::new();
    for row in table_rows("## Rejections") {
        let (Some(code), Some(stage)) = (
            row.first().and_then(|c| code_cell(c)),
            row.get(1).and_then(|c| code_cell(c)),
        ) else {
            continue;
        };
        let reason = RejectReason::parse(code)
            .unwrap_or_else(|| panic!("documented code `{code}` is not a RejectReason"));
        assert_eq!(
            row.len(),
            4,
            "row of `{code}` needs code, stage, meaning, example"
        );
        assert!(
            documented.insert(reason, stage.to_owned()).is_none(),
            "`{code}` is documented twice"
        );
    }
    for reason in RejectReason::ALL {
        assert_eq!(
            documented.get(&reason).map(String::as_str),
            Some(reason.stage().as_str()),
            "reject table row of `{}`",
            reason.code()
        );
    }
    assert_eq!(documented.len(), RejectReason::ALL.len());
}

#[test]
fn document_dead_letter_headers_match_the_codec() {
    let documented: Vec<String> = table_rows("## `scent.readings.dlq`")
        .into_iter()
        .filter_map(|row| code_cell(row.first()?).map(str::to_owned))
        .filter(|name| name.starts_with(DLQ_HEADER_PREFIX))
        .collect();
    let letter = DeadLetter {
        record: RawRecord {
            stream: InputStream::Readings,
            source: SourceCoord {
                topic: "scent.readings".into(),
                partition: 3,
                offset: 42,
            },
            key: Some(b"L1/enose-1".to_vec()),
            payload: b"{\"plant\":".to_vec(),
        },
        rejection: Rejection::new(Stage::Decode, RejectReason::InvalidJson, "EOF"),
    };
    let written: Vec<String> = dead_letter_headers(&letter, 0)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(documented, written);
}

#[test]
fn document_names_the_configured_topics_and_schema() {
    let topics = table_rows("## Topics");
    let defaults = Topics::default();
    for topic in [
        &defaults.readings,
        &defaults.batches,
        &defaults.actions,
        &defaults.dead_letters,
    ] {
        assert!(
            topics
                .iter()
                .any(|row| row.first().and_then(|c| code_cell(c)) == Some(topic.as_str())),
            "topic `{topic}` is missing from the topic table"
        );
    }
    assert!(doc().contains(&format!("`{ACTION_SCHEMA}`")));
    assert_eq!(
        schemas().action.document["properties"]["schema"]["const"],
        ACTION_SCHEMA
    );
}

fn wire_names<T: serde::Serialize>(items: &[T]) -> Vec<Value> {
    items
        .iter()
        .map(|item| serde_json::to_value(item).unwrap())
        .collect()
}

fn all_action_kinds() -> Vec<ActionKind> {
    // Exhaustive: a new kind fails to compile here until the schema and the
    // document are updated.
    let all = [
        ActionKind::BatchRelease,
        ActionKind::HoldLine,
        ActionKind::ScheduleMaintenance,
        ActionKind::Alert,
    ];
    for kind in all {
        match kind {
            ActionKind::BatchRelease
            | ActionKind::HoldLine
            | ActionKind::ScheduleMaintenance
            | ActionKind::Alert => {}
        }
    }
    all.to_vec()
}

fn all_decisions() -> Vec<Decision> {
    let all = [Decision::Release, Decision::Hold, Decision::Reject];
    for decision in all {
        match decision {
            Decision::Release | Decision::Hold | Decision::Reject => {}
        }
    }
    all.to_vec()
}

fn all_rules() -> Vec<AnomalyRule> {
    let all = [
        AnomalyRule::ZScore,
        AnomalyRule::FlatLine,
        AnomalyRule::Gap,
        AnomalyRule::HotellingT2,
        AnomalyRule::Spe,
        AnomalyRule::Similarity,
        AnomalyRule::Contaminant,
    ];
    for rule in all {
        match rule {
            AnomalyRule::ZScore
            | AnomalyRule::FlatLine
            | AnomalyRule::Gap
            | AnomalyRule::HotellingT2
            | AnomalyRule::Spe
            | AnomalyRule::Similarity
            | AnomalyRule::Contaminant => {}
        }
    }
    all.to_vec()
}

#[test]
fn schema_enumerations_match_the_model() {
    let reading = &schemas().reading.document;
    let action = &schemas().action.document;
    let kinds = Value::from(wire_names(&SensorKind::ALL));
    assert_eq!(reading["properties"]["kind"]["enum"], kinds);
    assert_eq!(
        action["$defs"]["reason"]["properties"]["kind"]["enum"],
        kinds
    );
    assert_eq!(
        action["properties"]["kind"]["enum"],
        Value::from(wire_names(&all_action_kinds()))
    );
    assert_eq!(
        action["properties"]["decision"]["oneOf"][0]["enum"],
        Value::from(wire_names(&all_decisions()))
    );
    assert_eq!(
        action["$defs"]["reason"]["properties"]["rule"]["enum"],
        Value::from(wire_names(&all_rules()))
    );
    assert_eq!(
        schemas().batch_event.document["properties"]["event"]["enum"],
        Value::from(wire_names(&[BatchPhase::Start, BatchPhase::End]))
    );
}

#[test]
fn reading_schema_limits_are_the_default_validation_rules() {
    let rules = ValidationRules::default();
    let schema = &schemas().reading.document;
    let branches = schema["allOf"].as_array().expect("allOf of kind rules");
    assert_eq!(branches.len(), SensorKind::ALL.len());
    for kind in SensorKind::ALL {
        let branch = branches
            .iter()
            .find(|b| b["if"]["properties"]["kind"]["const"] == kind.as_str())
            .unwrap_or_else(|| panic!("no rule for kind {kind}"));
        let values = &branch["then"]["properties"]["values"];
        let range = rules.range(kind);
        assert_eq!(
            values["items"]["minimum"].as_f64(),
            Some(range.min),
            "{kind} min"
        );
        assert_eq!(
            values["items"]["maximum"].as_f64(),
            Some(range.max),
            "{kind} max"
        );
        let (min_items, max_items) = if kind.is_scalar() {
            (1, 1)
        } else {
            (*rules.enose_channels.start(), *rules.enose_channels.end())
        };
        assert_eq!(
            values["minItems"].as_u64(),
            Some(min_items as u64),
            "{kind} minItems"
        );
        assert_eq!(
            values["maxItems"].as_u64(),
            Some(max_items as u64),
            "{kind} maxItems"
        );
    }
    for name in ["identifier", "keyIdentifier"] {
        assert_eq!(
            schema["$defs"][name]["maxLength"].as_u64(),
            Some(rules.max_identifier_len as u64),
            "{name} maxLength"
        );
    }
    for document in [schema, &schemas().batch_event.document] {
        let text = document.to_string();
        assert!(text.contains(&format!("\"minimum\":{}", rules.ts_range_ms.start())));
        assert!(text.contains(&format!("\"maximum\":{}", rules.ts_range_ms.end())));
    }
}
