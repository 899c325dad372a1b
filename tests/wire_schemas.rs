//! The wire format three ways: as documented (`docs/wire-format.md`), as
//! specified (the JSON Schemas in `deploy/schemas/`) and as implemented (the
//! codecs in `scent_operators::wire`, `scent_operators::model_registry` and
//! `scent_kafka::codec`). These tests keep the three in agreement:
//!
//! * records written by the real encoders validate against the schemas:
//!   readings, batch events, model records (a small forecast model trained
//!   here, and contaminant signatures) and actions of every kind, built by
//!   the orchestrator's builders and numbered and sealed by the action
//!   changelog, as the engine does;
//! * every tagged example in the document (an HTML comment
//!   `<!-- example: TAG -->` before a fenced `json` block) decodes with the
//!   real decoder and validates against its schema, and rejected examples are
//!   refused by both with the documented reason code; the action examples
//!   are exactly what the builders produce for the story they tell;
//! * malformed documents are refused by both the schema and the decoder;
//!   the action invariants the decoder leaves to the engine (a maintenance
//!   order exactly for `schedule_maintenance`, `supersedes` exactly after
//!   revision 1, ...) are refused by the schema, and the model checks the
//!   schema cannot make (the content hash, a name that matches the content)
//!   by the decoder;
//! * the document's reject-reason and dead-letter header tables, and the
//!   schemas' enumerations and default limits, match the code.
//!
//! No services needed; the whole file runs in well under a second.

use jsonschema::Validator;
use scent_kafka::codec::{
    dead_letter_headers, decode_action, encode_action, ACTION_SCHEMA, DLQ_HEADER_PREFIX,
};
use scent_kafka::settings::Topics;
use scent_operators::action_changelog::{Changelog, ChangelogConfig};
use scent_operators::batch_verdict::action_id;
use scent_operators::consensus::{
    finish, hold_line_action, maintenance_action, release_action, BatchFacts, ConsensusPolicy,
};
use scent_operators::fingerprint::ContaminantSignature;
use scent_operators::forecast::{ForecastConfig, ForecastModel, ForestConfig, QualitySample};
use scent_operators::model::{
    Action, ActionKind, Agent, AgentVerdict, AnomalyRule, Assessment, BatchEvent, BatchPhase,
    DeadLetter, Decision, Evidence, InputSpan, InputStream, MaintenanceOrder, MaintenanceWork,
    RawRecord, Reading, Reason, RejectReason, Rejection, SensorKind, SourceCoord, Stage,
};
use scent_operators::model_registry::{
    decode_model_record, encode_model_record, ModelContent, ModelRecord,
};
use scent_operators::validate::{validate_reading, ValidationRules};
use scent_operators::wire::{
    decode_batch_event, decode_reading, encode_batch_event, encode_reading, format_timestamp,
    DecodeLimits,
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
    model_record: Schema,
}

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| Schemas {
        reading: Schema::load("reading"),
        batch_event: Schema::load("batch-event"),
        action: Schema::load("action"),
        model_record: Schema::load("model-record"),
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

// Actions are built the way the engine builds them: the orchestrator's
// builders (`scent_operators::consensus`) and the changelog that numbers
// revisions and seals batches (`scent_operators::action_changelog`). The
// story of batch B-1124-01 (espresso on L1, 09:30 to 10:30): at 10:05 a
// forecast says the quality index will cross its limit before the end (an
// alert) and the maintenance agent finds enose-2's baseline drifting (a
// calibration, planned at the batch end); at 10:12:14 the second ethanol
// match on enose-1 makes the batch critical (a line hold); at 10:30 the
// batch is held, and the seal 2 s later makes the hold final.

const BATCH: &str = "B-1124-01";
/// 2026-11-24T09:30:00.000Z.
const BATCH_START_MS: i64 = T0 - 1_800_000;
/// 2026-11-24T10:30:00.000Z.
const BATCH_END_MS: i64 = T0 + 1_800_000;
/// 2026-11-24T10:05:00.000Z: the forecast and the health assessment.
const NOTICED_MS: i64 = T0 + 300_000;
/// 2026-11-24T10:12:04.000Z: the first cycle matching ethanol.
const CONTAMINATION_MS: i64 = T0 + 724_000;
/// 2026-11-24T10:12:14.000Z: the second, which makes the batch critical.
const ONSET_MS: i64 = T0 + 734_000;
const RULES_VERSION: &str = "rolling-v1:w120:u30:z6:f15:g10000";
const FINGERPRINT_MODEL: &str = "fingerprint:enose-1:fp-3f2a9c0d1e2b";
const FORECAST_MODEL: &str = "forecast:espresso:9b1e4f7a2c3d5e60";
const CHANGELOG: ChangelogConfig = ChangelogConfig {
    seal_after_ms: 2_000,
    epoch_ms: 50,
};

fn facts(batch: &'static str, anomalies: u64) -> BatchFacts<'static> {
    BatchFacts {
        plant: "p1",
        line: "L1",
        batch,
        product: "espresso",
        start_ms: Some(BATCH_START_MS),
        end_ms: Some(BATCH_END_MS),
        anomalies,
        rules_version: RULES_VERSION,
    }
}

/// enose-1's fingerprint findings: SPE alarms and ethanol matches on the
/// cycles from 10:12:04 to `last_ts_ms`, every 10 s.
fn contamination(last_ts_ms: i64, max_spe: f64, max_match: f64) -> Vec<Reason> {
    let cycles = ((last_ts_ms - CONTAMINATION_MS) / 10_000 + 1) as u64;
    let finding = |rule, max_statistic, limit, contaminant: Option<&str>| Reason {
        sensor: "enose-1".into(),
        kind: SensorKind::Enose,
        rule,
        count: cycles,
        max_statistic,
        limit,
        first_ts_ms: CONTAMINATION_MS,
        last_ts_ms,
        channels: vec![3, 11, 4],
        contaminant: contaminant.map(str::to_owned),
    };
    vec![
        finding(AnomalyRule::Spe, max_spe, 23.9, None),
        finding(AnomalyRule::Contaminant, max_match, 0.8, Some("ethanol")),
    ]
}

fn verdict(agent: Agent, assessment: Assessment, critical: bool) -> AgentVerdict {
    AgentVerdict {
        agent,
        line: "L1".into(),
        batch: BATCH.into(),
        assessment,
        critical,
        reasons: Vec::new(),
        notes: Vec::new(),
        models: Vec::new(),
    }
}

const CALIBRATION_FINDING: &str =
    "enose-2 calibration_due: baseline +1.21 %, drift +0.31 %/h, RUL 11.9 h";
const FORECAST_NOTE: &str = "crosses the limit within 30 min (1.08) before the batch ends: \
    index 0.74 at 2026-11-24T10:05:00.000Z; forecast +5 min 0.79, +30 min 1.08, +120 min 1.21; \
    drivers index_lag_1 0.38, slope_30 0.21";

/// The three verdicts on B-1124-01 at its end.
fn verdicts_at_the_end() -> Vec<AgentVerdict> {
    let quality = AgentVerdict {
        reasons: contamination(CONTAMINATION_MS + 130_000, 2_345.6, 0.99),
        models: vec![FINGERPRINT_MODEL.into()],
        ..verdict(Agent::Quality, Assessment::Fail, true)
    };
    let predictive = AgentVerdict {
        notes: vec![
            FORECAST_NOTE.into(),
            "latest: index 1.64 at 2026-11-24T10:29:50.000Z; forecast +5 min 1.58, \
             +30 min 1.21, +120 min 0.86; drivers index_lag_1 0.52, mean_30 0.17"
                .into(),
        ],
        models: vec![FORECAST_MODEL.into()],
        ..verdict(Agent::Predictive, Assessment::Suspect, false)
    };
    let maintenance = AgentVerdict {
        notes: vec![CALIBRATION_FINDING.into()],
        ..verdict(Agent::Maintenance, Assessment::Suspect, false)
    };
    vec![quality, predictive, maintenance]
}

fn input_spans() -> Vec<InputSpan> {
    let span = |topic: &str, partition, first_offset, last_offset, records| InputSpan {
        topic: topic.into(),
        partition,
        first_offset,
        last_offset,
        records,
    };
    vec![
        span("scent.readings", 0, 48_210, 61_377, 7_200),
        span("scent.readings", 2, 45_932, 59_118, 7_200),
        span("scent.batches", 0, 312, 313, 2),
    ]
}

/// The release decision on B-1124-01 under `policy`, before the seal.
fn release_decision(policy: &ConsensusPolicy) -> Action {
    let verdicts = verdicts_at_the_end();
    let refs: Vec<&AgentVerdict> = verdicts.iter().collect();
    release_action(&facts(BATCH, 31), &refs, input_spans(), policy)
}

/// The revisions the changelog sends for `decision`: revision 1 when the
/// batch is decided, then the sealed repeat.
fn provisional_and_sealed(decision: Action) -> (Action, Action) {
    let mut changelog = Changelog::new(CHANGELOG);
    let (mut sent, mut refused) = (Vec::new(), Vec::new());
    let decided = (BATCH_END_MS as u64).div_ceil(CHANGELOG.epoch_ms);
    changelog.apply(decided, vec![(decision, 1)], &mut sent, &mut refused);
    let seal = changelog.next_seal().expect("a decided batch seals");
    changelog.seal_through(seal, &mut sent);
    assert!(refused.is_empty());
    let [provisional, sealed]: [Action; 2] = sent.try_into().expect("two revisions");
    (provisional, sealed)
}

/// The `hold_line` of B-1124-01: the second ethanol match.
fn line_hold() -> Action {
    let quality = AgentVerdict {
        reasons: contamination(ONSET_MS, 1_870.2, 0.97),
        models: vec![FINGERPRINT_MODEL.into()],
        ..verdict(Agent::Quality, Assessment::Fail, true)
    };
    hold_line_action(
        &facts(BATCH, 9),
        ONSET_MS,
        contamination(ONSET_MS, 1_870.2, 0.97),
        &quality,
    )
}

/// enose-2's calibration, planned at the end of B-1124-01.
fn calibration() -> Action {
    maintenance_action(
        &facts(BATCH, 31),
        MaintenanceOrder {
            sensor: "enose-2".into(),
            kind: SensorKind::Enose,
            work: MaintenanceWork::Calibrate,
            window_start_ms: BATCH_END_MS,
            duration_ms: 15 * 60_000,
            urgent: false,
            found_ms: NOTICED_MS,
            findings: vec![CALIBRATION_FINDING.into()],
            baseline_shift_pct: Some(1.21),
            drift_pct_per_hour: Some(0.31),
            remaining_useful_life_h: Some(11.9),
        },
    )
}

/// An urgent replacement: a sensor whose health went critical mid-batch.
fn urgent_replacement() -> Action {
    maintenance_action(
        &facts(BATCH, 31),
        MaintenanceOrder {
            sensor: "enose-2".into(),
            kind: SensorKind::Enose,
            work: MaintenanceWork::Replace,
            window_start_ms: T0 + 1_000_000,
            duration_ms: 45 * 60_000,
            urgent: true,
            found_ms: T0 + 1_000_000,
            findings: vec!["enose-2 critical: baseline +5.40 %, drift +0.35 %/h, RUL 0.0 h".into()],
            baseline_shift_pct: Some(5.4),
            drift_pct_per_hour: Some(0.35),
            remaining_useful_life_h: Some(0.0),
        },
    )
}

/// The predictive agent's alert at 10:05, as `scent_dataflows::predictive`
/// raises it.
fn forecast_alert() -> Action {
    finish(Action {
        action_id: String::new(),
        kind: ActionKind::Alert,
        plant: "p1".into(),
        line: "L1".into(),
        batch: Some(BATCH.into()),
        product: Some("espresso".into()),
        decision: None,
        reasons: Vec::new(),
        evidence: Evidence {
            batch_start_ms: Some(BATCH_START_MS),
            batch_end_ms: None,
            anomalies: 0,
            rules_version: RULES_VERSION.into(),
            verdicts: vec![AgentVerdict {
                notes: vec![FORECAST_NOTE.into()],
                models: vec![FORECAST_MODEL.into()],
                ..verdict(Agent::Predictive, Assessment::Suspect, false)
            }],
            input: Vec::new(),
        },
        ts_ms: NOTICED_MS,
        maintenance: None,
        revision: 1,
        supersedes: None,
        withdrawn: false,
        sealed: false,
    })
}

/// The next batch, released by all three agents.
fn release_of_the_next_batch() -> Action {
    let pass = |agent| AgentVerdict {
        batch: "B-1124-02".into(),
        ..verdict(agent, Assessment::Pass, false)
    };
    let quality = AgentVerdict {
        models: vec!["fingerprint:enose-1:fp-8d04be71c5a9".into()],
        ..pass(Agent::Quality)
    };
    let predictive = AgentVerdict {
        notes: vec![
            "latest: index 0.41 at 2026-11-24T11:34:50.000Z; forecast +5 min 0.42, \
                     +30 min 0.45, +120 min 0.52; drivers index_lag_1 0.47, mean_30 0.19"
                .into(),
        ],
        models: vec![FORECAST_MODEL.into()],
        ..pass(Agent::Predictive)
    };
    let maintenance = pass(Agent::Maintenance);
    let next = BatchFacts {
        start_ms: Some(T0 + 2_100_000),
        end_ms: Some(T0 + 5_700_000),
        ..facts("B-1124-02", 2)
    };
    release_action(
        &next,
        &[&quality, &predictive, &maintenance],
        vec![
            InputSpan {
                topic: "scent.readings".into(),
                partition: 0,
                first_offset: 62_790,
                last_offset: 75_942,
                records: 7_200,
            },
            InputSpan {
                topic: "scent.readings".into(),
                partition: 2,
                first_offset: 60_511,
                last_offset: 73_689,
                records: 7_200,
            },
            InputSpan {
                topic: "scent.batches".into(),
                partition: 0,
                first_offset: 314,
                last_offset: 315,
                records: 2,
            },
        ],
        &ConsensusPolicy::default(),
    )
}

/// The actions the document shows, by example tag.
fn document_actions() -> Vec<(&'static str, Action)> {
    let (provisional, sealed) =
        provisional_and_sealed(release_decision(&ConsensusPolicy::default()));
    vec![
        ("action-hold", provisional),
        ("action-hold-sealed", sealed),
        ("action-release", release_of_the_next_batch()),
        ("action-hold-line", line_hold()),
        ("action-schedule-maintenance", calibration()),
        ("action-alert", forecast_alert()),
    ]
}

/// A withdrawal: the changelog's answer to a retracted decision.
fn withdrawn_hold_line() -> Action {
    let mut changelog = Changelog::new(CHANGELOG);
    let (mut sent, mut refused) = (Vec::new(), Vec::new());
    let hold = line_hold();
    let onset = (ONSET_MS as u64).div_ceil(CHANGELOG.epoch_ms);
    changelog.apply(onset, vec![(hold.clone(), 1)], &mut sent, &mut refused);
    changelog.apply(onset + 1, vec![(hold, -1)], &mut sent, &mut refused);
    let withdrawal = sent.pop().expect("a withdrawal");
    assert!(withdrawal.withdrawn && withdrawal.revision == 2);
    withdrawal
}

/// Every action sample: the document's, a reject, an urgent order and a
/// withdrawal.
fn sample_actions() -> Vec<Action> {
    let rejecting = ConsensusPolicy {
        reject_on_critical: true,
        ..ConsensusPolicy::default()
    };
    let reject = release_decision(&rejecting);
    assert_eq!(reject.decision, Some(Decision::Reject));
    let mut samples: Vec<Action> = document_actions()
        .into_iter()
        .map(|(_, action)| action)
        .collect();
    samples.extend([reject, urgent_replacement(), withdrawn_hold_line()]);
    samples
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
        assert_eq!(action.action_id, action_id(&action), "{action:?}");
        assert_eq!(decode_action("scent.actions", &bytes).unwrap(), action);
    }
}

/// A forecast model trained on a short synthetic series with small forests:
/// tens of milliseconds in a debug build.
fn tiny_forecast_model() -> &'static ForecastModel {
    static MODEL: OnceLock<ForecastModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let minute = 60_000;
        let config = ForecastConfig {
            horizons_ms: vec![minute, 3 * minute],
            sample_period_ms: minute,
            max_gap_ms: 2 * minute,
            lags: vec![1, 2],
            windows: vec![3],
            covariates: Vec::new(),
            time_of_day: false,
            forest: ForestConfig {
                trees: 3,
                max_depth: 3,
                min_samples_leaf: 2,
                max_features: None,
                seed: 7,
            },
            holdout_fraction: 0.25,
            min_training_rows: 20,
            refit_on_all_rows: false,
            limit: 1.0,
        };
        let series: Vec<QualitySample> = (0..80)
            .map(|step| QualitySample {
                ts_ms: T0 + step * minute,
                index: 0.5 + 0.3 * (step as f64 / 7.0).sin(),
                covariates: Vec::new(),
            })
            .collect();
        ForecastModel::train(&[series], &config).expect("the tiny model trains")
    })
}

fn model_record_json() -> Value {
    let record = ModelRecord::forecast("espresso", tiny_forecast_model(), T0);
    to_value(&encode_model_record(&record))
}

#[test]
fn encoded_model_records_validate_and_decode() {
    let record = ModelRecord::forecast("espresso", tiny_forecast_model(), T0);
    let bytes = encode_model_record(&record);
    let value = to_value(&bytes);
    schemas()
        .model_record
        .assert_valid(&value, "an encoded forecast model record");
    assert_eq!(value["name"], "forecast/espresso");
    assert_eq!(value["trained_at"], "2026-11-24T10:00:00.000Z");
    let decoded = decode_model_record(&bytes).unwrap_or_else(|rejection| panic!("{rejection}"));
    assert_eq!(decoded, record);
}

/// 2026-11-25T04:00:00.000Z: the morning after B-1124-01, when QA has
/// confirmed what contaminated a batch and `scent train contaminant` runs.
const LEARNED_MS: i64 = T0 + 18 * 3_600_000;

/// The learned signature the document shows: mould, on a 16-channel array.
fn mould() -> ContaminantSignature {
    ContaminantSignature {
        name: "mould".into(),
        response: vec![
            0.42, 0.05, 0.61, 0.02, -0.03, 0.18, 0.07, 0.01, 0.33, 0.04, 0.12, 0.0, 0.09, 0.27,
            0.03, -0.02,
        ],
    }
}

fn contaminant_record_json() -> Value {
    to_value(&encode_model_record(&ModelRecord::contaminant(
        mould(),
        LEARNED_MS,
    )))
}

#[test]
fn encoded_contaminant_records_validate_and_decode() {
    let signature = |name: &str, response: Vec<f64>| ContaminantSignature {
        name: name.into(),
        response,
    };
    let samples = [
        mould(),
        signature("ethanol", vec![0.9, 0.1, 0.0, -0.2]),
        signature("one channel", vec![-0.999]),
        signature("Schimmel-ü", vec![1e-9, 0.0, 250.0]),
    ];
    for sample in samples {
        let record = ModelRecord::contaminant(sample.clone(), LEARNED_MS);
        let bytes = encode_model_record(&record);
        let value = to_value(&bytes);
        schemas()
            .model_record
            .assert_valid(&value, &format!("an encoded record of {sample:?}"));
        assert_eq!(value["name"], format!("contaminant/{}", sample.name));
        assert_eq!(value["kind"], "contaminant");
        assert_eq!(value["trained_at"], "2026-11-25T04:00:00.000Z");
        let decoded = decode_model_record(&bytes).unwrap_or_else(|rejection| panic!("{rejection}"));
        assert_eq!(decoded, record);
        assert_eq!(
            decoded.content,
            ModelContent::Contaminant { signature: sample }
        );
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
        "action-hold-sealed",
        "action-release",
        "action-hold-line",
        "action-schedule-maintenance",
        "action-alert",
        "model-record-contaminant",
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
        } else if tag.starts_with("model-record-") {
            schemas().model_record.assert_valid(&value, &what);
            let record = decode_model_record(bytes)
                .unwrap_or_else(|rejection| panic!("{what}: {rejection}"));
            assert_eq!(
                to_value(&encode_model_record(&record)),
                value,
                "{what} differs from the encoder's output"
            );
            if tag == "model-record-contaminant" {
                let expected = ModelRecord::contaminant(mould(), LEARNED_MS);
                assert_eq!(
                    record,
                    expected,
                    "{what} is not the record of `mould()`; it should read:\n{}",
                    serde_json::to_string_pretty(&to_value(&encode_model_record(&expected)))
                        .unwrap()
                );
            }
        } else {
            panic!("{what}: no check for this tag");
        }
    }
    assert!(!rejected_codes.is_empty(), "no rejected-reading examples");
}

/// An action as `encode_action` writes it, pretty-printed in the encoder's
/// field order: what a document example should look like.
fn pretty_action(action: &Action) -> String {
    #[derive(serde::Serialize)]
    struct Message<'a> {
        schema: &'static str,
        #[serde(flatten)]
        action: &'a Action,
        ts: String,
    }
    let message = Message {
        schema: ACTION_SCHEMA,
        action,
        ts: format_timestamp(action.ts_ms),
    };
    let text =
        compact_number_arrays(&serde_json::to_string_pretty(&message).expect("actions serialise"));
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        to_value(&encode_action(action)),
        "the pretty form differs from the encoder's"
    );
    text
}

/// Pretty JSON with arrays of numbers on one line (`"channels": [3, 11, 4]`).
fn compact_number_arrays(pretty: &str) -> String {
    let lines: Vec<&str> = pretty.lines().collect();
    let mut out = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index];
        if line.ends_with('[') {
            let items: Vec<&str> = lines[index + 1..]
                .iter()
                .map(|item| item.trim())
                .take_while(|item| !item.starts_with(']'))
                .collect();
            let closing = lines.get(index + 1 + items.len()).map(|l| l.trim());
            let numeric = items
                .iter()
                .all(|item| item.trim_end_matches(',').parse::<f64>().is_ok());
            if !items.is_empty() && numeric {
                let closing = closing.expect("a closing bracket");
                out.push(format!("{line}{}{}", items.join(" "), closing));
                index += items.len() + 2;
                continue;
            }
        }
        out.push(line.to_owned());
        index += 1;
    }
    out.join("\n")
}

#[test]
fn document_action_examples_are_what_the_engine_builds() {
    let examples = doc_examples();
    let mut mismatches = Vec::new();
    for (tag, action) in document_actions() {
        let example = examples
            .iter()
            .find(|example| example.tag == tag)
            .unwrap_or_else(|| panic!("example `{tag}` is missing"));
        let documented: Option<Value> = serde_json::from_str(&example.json).ok();
        if documented != Some(to_value(&encode_action(&action))) {
            mismatches.push(format!(
                "example `{tag}` (line {}) is not what the engine builds; it should read:\n\
                 <!-- example: {tag} -->\n```json\n{}\n```",
                example.line,
                pretty_action(&action)
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
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

fn document_action(tag: &str) -> Value {
    let (_, action) = document_actions()
        .into_iter()
        .find(|(t, _)| *t == tag)
        .unwrap_or_else(|| panic!("no action `{tag}`"));
    to_value(&encode_action(&action))
}

#[test]
fn malformed_actions_are_refused_by_schema_and_decoder() {
    let hold = document_action("action-hold");
    let order = document_action("action-schedule-maintenance");
    let set = |pointer: &str, value: Value| with(&hold, &[(pointer, value)]);
    let set_order = |pointer: &str, value: Value| with(&order, &[(pointer, value)]);
    #[rustfmt::skip]
    let cases = [
        ("missing action_id", without(&hold, "/action_id")),
        ("missing schema", without(&hold, "/schema")),
        ("another schema version", set("/schema", json!("scent.action/v3"))),
        ("unknown kind", set("/kind", json!("recall"))),
        ("unknown decision", set("/decision", json!("ship"))),
        ("reasons not an array", set("/reasons", json!("none"))),
        ("ts_ms a string", set("/ts_ms", json!("1795516200000"))),
        ("reason with unknown rule", set("/reasons/0/rule", json!("drift"))),
        ("negative channel", set("/reasons/1/channels/0", json!(-1))),
        ("negative revision", set("/revision", json!(-1))),
        ("revision a string", set("/revision", json!("1"))),
        ("sealed a string", set("/sealed", json!("no"))),
        ("unknown agent", set("/evidence/verdicts/0/agent", json!("operator"))),
        ("unknown assessment", set("/evidence/verdicts/1/assessment", json!("ok"))),
        ("verdict without critical", without(&hold, "/evidence/verdicts/2/critical")),
        ("verdict notes not strings", set("/evidence/verdicts/1/notes/0", json!(1.08))),
        ("input span without offsets", without(&hold, "/evidence/input/0/last_offset")),
        ("input partition a string", set("/evidence/input/1/partition", json!("2"))),
        ("unknown work", set_order("/maintenance/work", json!("clean"))),
        ("order without sensor", without(&order, "/maintenance/sensor")),
        ("order without urgency", without(&order, "/maintenance/urgent")),
        ("window start a string", set_order("/maintenance/window_start_ms", json!("1795516200000"))),
        ("findings not an array", set_order("/maintenance/findings", json!("drift"))),
    ];
    for (what, value) in cases {
        assert!(
            decode_action("scent.actions", &to_bytes(&value)).is_err(),
            "{what}: the decoder must reject"
        );
        schemas().action.assert_invalid(&value, what);
    }
}

/// A `scent.action/v1` record of an earlier release (in a topic being
/// replayed) still decodes, as revision 1, not sealed; the schema describes
/// the current version only.
#[test]
fn version_1_actions_still_decode() {
    let v1 = json!({
        "schema": "scent.action/v1",
        "action_id": "4cce4dc77306e29a120373648e1d2dfb",
        "kind": "batch_release",
        "plant": "p1",
        "line": "L1",
        "batch": "B-1124-02",
        "product": "espresso",
        "decision": "release",
        "reasons": [],
        "evidence": {
            "batch_start_ms": 1_795_516_500_000_i64,
            "batch_end_ms": 1_795_520_100_000_i64,
            "anomalies": 2,
            "rules_version": RULES_VERSION
        },
        "ts_ms": 1_795_520_100_000_i64,
        "ts": "2026-11-24T11:35:00.000Z"
    });
    let action = decode_action("scent.actions", &to_bytes(&v1)).expect("v1 decodes");
    assert_eq!((action.revision, action.sealed), (1, false));
    assert_eq!((action.supersedes, action.withdrawn), (None, false));
    assert_eq!(action.evidence.batch_end_ms, Some(1_795_520_100_000));
    assert!(action.evidence.verdicts.is_empty() && action.maintenance.is_none());
    schemas().action.assert_invalid(&v1, "a v1 action");
}

/// Rules the changelog and the builders guarantee and the schema states;
/// scent's decoder does not check them (it reads its own output), so only
/// the schema refuses these.
#[test]
fn broken_action_invariants_are_refused_by_the_schema() {
    let hold = document_action("action-hold");
    let sealed = document_action("action-hold-sealed");
    let line_hold = document_action("action-hold-line");
    let order = document_action("action-schedule-maintenance");
    let alert = document_action("action-alert");
    let some_id = json!("0123456789abcdef0123456789abcdef");
    let quality_verdict = hold["evidence"]["verdicts"][0].clone();
    #[rustfmt::skip]
    let cases = [
        ("schedule_maintenance without maintenance", without(&order, "/maintenance")),
        ("maintenance on a batch release", with(&hold, &[("/maintenance", order["maintenance"].clone())])),
        ("maintenance on a line hold", with(&line_hold, &[("/maintenance", order["maintenance"].clone())])),
        ("revision 0", with(&hold, &[("/revision", json!(0))])),
        ("revision 1 superseding", with(&hold, &[("/supersedes", some_id.clone())])),
        ("revision 2 superseding nothing", without(&sealed, "/supersedes")),
        ("supersedes not an action id", with(&sealed, &[("/supersedes", json!("revision-1"))])),
        ("batch release without decision", with(&hold, &[("/decision", Value::Null)])),
        ("batch release without batch", with(&hold, &[("/batch", Value::Null)])),
        ("batch release without batch end", with(&hold, &[("/evidence/batch_end_ms", Value::Null)])),
        ("batch release missing batch end", without(&hold, "/evidence/batch_end_ms")),
        ("line hold with a decision", with(&line_hold, &[("/decision", json!("hold"))])),
        ("line hold with a batch end", with(&line_hold, &[("/evidence/batch_end_ms", json!(1_795_516_200_000_i64))])),
        ("line hold without reasons", with(&line_hold, &[("/reasons", json!([]))])),
        ("urgent order with a batch end", with(&order, &[("/maintenance/urgent", json!(true))])),
        ("planned order without batch end", with(&order, &[("/evidence/batch_end_ms", Value::Null)])),
        ("order with reasons", with(&order, &[("/reasons", hold["reasons"].clone())])),
        ("order of zero duration", with(&order, &[("/maintenance/duration_ms", json!(0))])),
        ("negative remaining life", with(&order, &[("/maintenance/remaining_useful_life_h", json!(-1.5))])),
        ("alert without verdicts", without(&alert, "/evidence/verdicts")),
        ("alert without a predictive verdict", with(&alert, &[("/evidence/verdicts", json!([quality_verdict]))])),
        ("alert with a batch end", with(&alert, &[("/evidence/batch_end_ms", json!(1_795_516_200_000_i64))])),
        ("empty verdicts", with(&hold, &[("/evidence/verdicts", json!([]))])),
        ("empty input", with(&hold, &[("/evidence/input", json!([]))])),
        ("empty notes", with(&alert, &[("/evidence/verdicts/0/notes", json!([]))])),
        ("sealed line hold", with(&line_hold, &[("/sealed", json!(true)), ("/revision", json!(2)), ("/supersedes", some_id.clone())])),
        ("sealed first revision", with(&hold, &[("/sealed", json!(true))])),
        ("sealed withdrawal", with(&sealed, &[("/withdrawn", json!(true))])),
        ("withdrawn first revision", with(&line_hold, &[("/withdrawn", json!(true))])),
        ("missing sealed", without(&hold, "/sealed")),
        ("missing revision", without(&hold, "/revision")),
    ];
    for (what, value) in cases {
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

    for (tag, action) in document_actions() {
        let mut extended = with(
            &to_value(&encode_action(&action)),
            &[("/x_ticket", json!("QA-4711"))],
        );
        extended["evidence"]["readings"] = json!(12_000);
        // `pointer_mut`, not indexing: indexing would insert the absent
        // arrays as `null`.
        let additions = [
            ("/reasons/0", "detail", json!("later, additive")),
            ("/evidence/verdicts/0", "confidence", json!(0.93)),
            ("/evidence/input/0", "leader_epoch", json!(7)),
            ("/maintenance", "work_order", json!("WO-2231")),
        ];
        for (pointer, field, value) in additions {
            if let Some(object) = extended.pointer_mut(pointer) {
                object[field] = value;
            }
        }
        schemas()
            .action
            .assert_valid(&extended, &format!("{tag} with additive fields"));
        assert_eq!(
            decode_action("scent.actions", &to_bytes(&extended)).unwrap(),
            action,
            "{tag}"
        );
    }

    let record = with(&model_record_json(), &[("/x_trained_by", json!("ci"))]);
    schemas()
        .model_record
        .assert_valid(&record, "model record with an extra field");
    decode_model_record(&to_bytes(&record)).expect("extra fields are ignored");

    let record = with(
        &contaminant_record_json(),
        &[("/x_trained_by", json!("ci")), ("/x_batch", json!(BATCH))],
    );
    schemas()
        .model_record
        .assert_valid(&record, "contaminant record with extra fields");
    assert_eq!(
        decode_model_record(&to_bytes(&record)).expect("extra fields are ignored"),
        ModelRecord::contaminant(mould(), LEARNED_MS)
    );
}

#[test]
fn malformed_model_records_are_refused_by_schema_and_decoder() {
    use RejectReason::*;
    let base = model_record_json();
    let set = |pointer: &str, value: Value| with(&base, &[(pointer, value)]);
    #[rustfmt::skip]
    let cases = [
        ("not an object", json!(["forecast/espresso"]), WrongType),
        ("missing version", without(&base, "/version"), MissingField),
        ("null version", set("/version", Value::Null), WrongType),
        ("missing name", without(&base, "/name"), MissingField),
        ("missing product", without(&base, "/product"), MissingField),
        ("missing model", without(&base, "/model"), MissingField),
        ("missing trained_at", without(&base, "/trained_at"), MissingField),
        ("unknown kind", set("/kind", json!("classifier")), WrongType),
        ("name without its kind", set("/name", json!("espresso")), OutOfRange),
        ("model not an object", set("/model", json!("opaque")), WrongType),
        ("trained_at in another format", set("/trained_at", json!("25.11.2026 04:00")), BadTimestamp),
    ];
    for (what, value, expected) in cases {
        let Err(rejection) = decode_model_record(&to_bytes(&value)) else {
            panic!("{what}: the decoder must reject");
        };
        assert_eq!(rejection.reason, expected, "{what}: {rejection}");
        schemas().model_record.assert_invalid(&value, what);
    }
}

#[test]
fn malformed_contaminant_records_are_refused_by_schema_and_decoder() {
    use RejectReason::*;
    let base = contaminant_record_json();
    let set = |pointer: &str, value: Value| with(&base, &[(pointer, value)]);
    let forecast = model_record_json();
    let mut with_source = base.clone();
    with_source["signature"]["source"] = json!("L1");
    #[rustfmt::skip]
    let cases = [
        ("missing signature", without(&base, "/signature"), MissingField),
        ("missing version", without(&base, "/version"), MissingField),
        ("missing trained_at", without(&base, "/trained_at"), MissingField),
        ("null signature", set("/signature", Value::Null), WrongType),
        ("signature not an object", set("/signature", json!("mould")), WrongType),
        ("signature without response", without(&base, "/signature/response"), WrongType),
        ("signature without name", without(&base, "/signature/name"), WrongType),
        ("signature with an unknown field", with_source, WrongType),
        ("response not an array", set("/signature/response", json!(0.42)), WrongType),
        ("response value a string", set("/signature/response/0", json!("0.42")), WrongType),
        ("response value null", set("/signature/response/0", Value::Null), WrongType),
        ("a forecast without product and model", set("/kind", json!("forecast")), MissingField),
        ("a forecast record called contaminant", with(&forecast, &[("/kind", json!("contaminant"))]), MissingField),
        ("name without its kind", set("/name", json!("mould")), OutOfRange),
        ("name of the other kind", set("/name", json!("forecast/mould")), OutOfRange),
        ("version not hex", set("/version", json!("MOULD-0000000001")), OutOfRange),
        ("short version", set("/version", json!("3f2a9c0d")), OutOfRange),
        ("response value -1", set("/signature/response/4", json!(-1.0)), OutOfRange),
        ("response value below -1", set("/signature/response/4", json!(-1.5)), OutOfRange),
        ("empty response", set("/signature/response", json!([])), OutOfRange),
        ("response of zeros", set("/signature/response", json!([0.0, 0, -0.0])), OutOfRange),
        ("empty signature name", with(&base, &[("/signature/name", json!("")), ("/name", json!("contaminant/"))]), OutOfRange),
        ("blank signature name", with(&base, &[("/signature/name", json!(" \t")), ("/name", json!("contaminant/ \t"))]), OutOfRange),
        ("slash in signature name", with(&base, &[("/signature/name", json!("a/b")), ("/name", json!("contaminant/a/b"))]), OutOfRange),
    ];
    for (what, value, expected) in cases {
        let Err(rejection) = decode_model_record(&to_bytes(&value)) else {
            panic!("{what}: the decoder must reject");
        };
        assert_eq!(rejection.reason, expected, "{what}: {rejection}");
        assert_eq!(rejection.stage, expected.stage(), "{what}: stage");
        schemas().model_record.assert_invalid(&value, what);
    }
}

/// The checks of a model record only the engine can make: the schema
/// treats the model as opaque and cannot recompute its hash.
#[test]
fn model_records_are_checked_beyond_the_schema() {
    let base = model_record_json();
    let mut altered = base.clone();
    altered["model"]["config"]["limit"] = json!(2.0);
    let cases = [
        (
            "version of another model",
            with(&base, &[("/version", json!("0123456789abcdef"))]),
        ),
        ("model altered after hashing", altered),
        (
            "name of another product",
            with(&base, &[("/name", json!("forecast/ristretto"))]),
        ),
    ];
    for (what, value) in cases {
        schemas().model_record.assert_valid(&value, what);
        let Err(rejection) = decode_model_record(&to_bytes(&value)) else {
            panic!("{what}: the decoder must reject");
        };
        assert_eq!(rejection.stage, Stage::Validate, "{what}: {rejection}");
        assert_eq!(rejection.reason, RejectReason::OutOfRange, "{what}");
    }
}

/// The same for a contaminant record: the schema describes the signature
/// but cannot hash it, nor compare `name` with the signature's name.
#[test]
fn contaminant_records_are_checked_beyond_the_schema() {
    let base = contaminant_record_json();
    let ethanol = ModelRecord::contaminant(
        ContaminantSignature {
            name: "ethanol".into(),
            response: vec![0.9, 0.1, 0.0, -0.2],
        },
        LEARNED_MS,
    );
    #[rustfmt::skip]
    let cases = [
        ("version of another signature", with(&base, &[("/version", json!(ethanol.version))])),
        ("version not the hash", with(&base, &[("/version", json!("0123456789abcdef"))])),
        ("signature altered after hashing", with(&base, &[("/signature/response/0", json!(0.43))])),
        ("signature renamed after hashing", with(&base, &[("/signature/name", json!("mold")), ("/name", json!("contaminant/mold"))])),
        ("name of another contaminant", with(&base, &[("/name", json!("contaminant/ethanol"))])),
        ("name with the signature's name in capitals", with(&base, &[("/name", json!("contaminant/Mould"))])),
    ];
    for (what, value) in cases {
        schemas().model_record.assert_valid(&value, what);
        let Err(rejection) = decode_model_record(&to_bytes(&value)) else {
            panic!("{what}: the decoder must reject");
        };
        assert_eq!(rejection.stage, Stage::Validate, "{what}: {rejection}");
        assert_eq!(rejection.reason, RejectReason::OutOfRange, "{what}");
    }
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

    let stream_row = table_rows("## `scent.readings.dlq`")
        .into_iter()
        .find(|row| {
            row.first().and_then(|c| code_cell(c))
                == Some(&format!("{DLQ_HEADER_PREFIX}stream") as &str)
        })
        .expect("the stream header is documented");
    for stream in [
        InputStream::Readings,
        InputStream::Batches,
        InputStream::Models,
    ] {
        assert!(
            stream_row[1].contains(&format!("`{}`", stream.as_str())),
            "stream `{}` is missing from the stream header's row",
            stream.as_str()
        );
    }
}

#[test]
fn document_names_the_configured_topics_and_schema() {
    let topics = table_rows("## Topics");
    let defaults = Topics::default();
    for topic in [
        &defaults.readings,
        &defaults.batches,
        &defaults.models,
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
    assert!(
        doc().contains("[MES contract](mes-contract.md)"),
        "the document links the consumer contract"
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

fn all_agents() -> Vec<Agent> {
    for agent in Agent::ALL {
        match agent {
            Agent::Quality | Agent::Predictive | Agent::Maintenance => {}
        }
    }
    Agent::ALL.to_vec()
}

fn all_assessments() -> Vec<Assessment> {
    let all = [Assessment::Pass, Assessment::Suspect, Assessment::Fail];
    for assessment in all {
        match assessment {
            Assessment::Pass | Assessment::Suspect | Assessment::Fail => {}
        }
    }
    all.to_vec()
}

fn all_maintenance_work() -> Vec<MaintenanceWork> {
    let all = [
        MaintenanceWork::Inspect,
        MaintenanceWork::Calibrate,
        MaintenanceWork::Repair,
        MaintenanceWork::Replace,
    ];
    for work in all {
        match work {
            MaintenanceWork::Inspect
            | MaintenanceWork::Calibrate
            | MaintenanceWork::Repair
            | MaintenanceWork::Replace => {}
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

fn all_model_kinds() -> Vec<&'static str> {
    // Exhaustive: a new kind of model fails to compile here until the
    // schema and the document are updated.
    let samples = [
        ModelRecord::forecast("espresso", tiny_forecast_model(), T0),
        ModelRecord::contaminant(mould(), LEARNED_MS),
    ];
    samples
        .iter()
        .map(|record| {
            let kind = match record.content {
                ModelContent::Forecast { .. } => "forecast",
                ModelContent::Contaminant { .. } => "contaminant",
            };
            assert_eq!(to_value(&encode_model_record(record))["kind"], kind);
            kind
        })
        .collect()
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
        action["$defs"]["maintenance"]["properties"]["kind"]["enum"],
        kinds
    );
    assert_eq!(
        action["$defs"]["maintenance"]["properties"]["work"]["enum"],
        Value::from(wire_names(&all_maintenance_work()))
    );
    assert_eq!(
        action["$defs"]["verdict"]["properties"]["agent"]["enum"],
        Value::from(wire_names(&all_agents()))
    );
    assert_eq!(
        action["$defs"]["verdict"]["properties"]["assessment"]["enum"],
        Value::from(wire_names(&all_assessments()))
    );
    assert_eq!(
        schemas().batch_event.document["properties"]["event"]["enum"],
        Value::from(wire_names(&[BatchPhase::Start, BatchPhase::End]))
    );
    let model_record = &schemas().model_record.document;
    let model_kinds = all_model_kinds();
    assert_eq!(
        model_record["properties"]["kind"]["enum"],
        json!(model_kinds)
    );
    let branches = model_record["allOf"]
        .as_array()
        .expect("allOf of kind rules");
    assert_eq!(branches.len(), model_kinds.len());
    for kind in model_kinds {
        let branch = branches
            .iter()
            .find(|b| b["if"]["properties"]["kind"]["const"] == kind)
            .unwrap_or_else(|| panic!("no rule for model kind {kind}"));
        assert_eq!(
            branch["then"]["properties"]["name"]["pattern"],
            format!("^{kind}/"),
            "{kind}: name pattern"
        );
        assert!(
            doc().contains(&format!("`{kind}/")),
            "model kind `{kind}` is missing from the document"
        );
    }
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
