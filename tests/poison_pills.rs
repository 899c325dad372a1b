//! Poison pills through the real engine. One line of four sensors, each on
//! its own readings partition, sends 40 s of valid readings and two
//! batches; between them, at partitions and offsets the test knows, sit
//! records of every class the ingest stages reject (every reason code of
//! `docs/wire-format.md` but `unarchivable`, which only the archive gives):
//! invalid UTF-8, invalid JSON (including a bare `NaN` and an empty value),
//! wrong types, missing fields, non-finite values, wrong channel counts,
//! absurd and unparseable timestamps, an oversized value, unknown sensor
//! kinds, an impossible value, a bad identifier, a re-sent sequence number,
//! a reading behind the watermark, and malformed batch events.
//!
//! `scent run` (a child process, `read_committed` exactly-once output) must
//! turn each pill into exactly one dead letter carrying the pill's original
//! key and bytes, its reason code, its stage and the topic, partition and
//! offset it was produced to, put nothing else on the dead-letter topic, and
//! still decide both batches as the valid readings say (one released, one
//! held by a temperature excursion).
//!
//! Then the engine is killed with SIGKILL and started again on the same
//! group, and a second stretch of readings with a third batch and fresh
//! pills is produced. The restarted engine replays the input, must not
//! crash or loop on any pill, and the dead-letter topic, read by `kcat`
//! (a client scent did not write) with `read_committed`, holds every pill of
//! both stretches exactly once; the actions topic holds each decision once.
//!
//! Needs `SCENT_KAFKA_BROKERS` and `kcat`, which `deploy/test.sh` provides.
//! Without them the test says why and passes, unless
//! `SCENT_REQUIRE_SERVICES=1` (set by the test script).

use rdkafka::producer::{FutureProducer, FutureRecord};
use scent_kafka::KafkaSettings;
use scent_operators::model::{BatchEvent, BatchPhase, Reading, SensorKind};
use scent_operators::wire::{encode_batch_event, encode_reading};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::{Engine, Metrics};

mod support;

/// 2026-11-24T10:00:00Z: plant time of the first reading.
const START_MS: i64 = 1_795_514_400_000;
/// Every sensor reads every 200 ms.
const STEP_MS: i64 = 200;
/// Timely workers of the engine: partition `p` is read by worker
/// `p % WORKERS`.
const WORKERS: usize = 2;
/// Steps before the engine is killed (0 s ..< 40 s of plant time).
const FIRST_STRETCH: std::ops::Range<i64> = 0..200;
/// Steps produced after the restart (40 s ..< 60 s).
const SECOND_STRETCH: std::ops::Range<i64> = 200..300;
/// Steps at which `t-1` reads 150 °C instead of about 90 °C: five z-score
/// outliers inside B-2, enough to hold it (three are).
const EXCURSION_STEPS: std::ops::Range<i64> = 110..115;
/// Added to the step of a pill built from a valid reading, so that its
/// sequence number repeats no valid one and it fails for its own reason only.
const PILL_SEQ_BASE: u64 = 1_000_000;

struct SensorSpec {
    name: &'static str,
    kind: SensorKind,
    /// Its readings partition, chosen by the test.
    partition: i32,
}

const SENSORS: [SensorSpec; 4] = [
    SensorSpec {
        name: "t-1",
        kind: SensorKind::Temperature,
        partition: 0,
    },
    SensorSpec {
        name: "rh-1",
        kind: SensorKind::Humidity,
        partition: 1,
    },
    SensorSpec {
        name: "p-1",
        kind: SensorKind::Pressure,
        partition: 2,
    },
    SensorSpec {
        name: "enose-1",
        kind: SensorKind::Enose,
        partition: 3,
    },
];

struct BatchSpec {
    batch: &'static str,
    product: &'static str,
    start_step: i64,
    end_step: i64,
    /// What the valid readings say about it.
    expected: &'static str,
}

const BATCHES: [BatchSpec; 3] = [
    BatchSpec {
        batch: "B-1",
        product: "espresso",
        start_step: 5,
        end_step: 75,
        expected: "release",
    },
    BatchSpec {
        batch: "B-2",
        product: "espresso",
        start_step: 80,
        end_step: 150,
        expected: "hold",
    },
    BatchSpec {
        batch: "B-3",
        product: "decaf",
        start_step: 205,
        end_step: 260,
        expected: "release",
    },
];

fn sensor(name: &str) -> &'static SensorSpec {
    SENSORS
        .iter()
        .find(|sensor| sensor.name == name)
        .expect("a sensor of the line")
}

fn ts_of(step: i64) -> i64 {
    START_MS + step * STEP_MS
}

/// The valid reading of `sensor` at `step`: a slow sine around a plausible
/// level (noise enough to never look stuck, far too little for a z-score),
/// tagged with the batch running at the time.
fn reading(sensor: &SensorSpec, step: i64) -> Reading {
    let phase = 0.37 * step as f64;
    let values = match sensor.kind {
        SensorKind::Temperature if EXCURSION_STEPS.contains(&step) => vec![150.0],
        SensorKind::Temperature => vec![90.0 + 0.3 * phase.sin()],
        SensorKind::Humidity => vec![45.0 + 1.0 * phase.sin()],
        SensorKind::Pressure => vec![101.3 + 0.2 * phase.sin()],
        _ => (0..16)
            .map(|channel| 1.0 + 0.1 * channel as f64 + 0.02 * (phase + channel as f64).sin())
            .collect(),
    };
    let batch = BATCHES
        .iter()
        .find(|batch| (batch.start_step..batch.end_step).contains(&step));
    Reading {
        plant: "p1".into(),
        line: "L1".into(),
        sensor: sensor.name.into(),
        kind: sensor.kind,
        ts_ms: ts_of(step),
        seq: step as u64,
        batch: batch.map(|batch| batch.batch.to_owned()),
        product: batch.map(|batch| batch.product.to_owned()),
        values,
    }
}

fn batch_event(batch: &BatchSpec, event: BatchPhase) -> Vec<u8> {
    let step = match event {
        BatchPhase::Start => batch.start_step,
        BatchPhase::End => batch.end_step,
    };
    encode_batch_event(&BatchEvent {
        batch: batch.batch.into(),
        line: "L1".into(),
        product: batch.product.into(),
        event,
        ts_ms: ts_of(step),
    })
}

/// Which input topic a record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    Readings,
    Batches,
}

impl Input {
    /// The value of the `__scent.errors.stream` header.
    fn stream(self) -> &'static str {
        match self {
            Input::Readings => "readings",
            Input::Batches => "batches",
        }
    }
}

/// What the engine must say about a pill.
#[derive(Debug, Clone, Copy)]
struct Verdict {
    what: &'static str,
    stage: &'static str,
    code: &'static str,
}

/// A record to produce, valid or a pill.
#[derive(Debug, Clone)]
struct Outgoing {
    input: Input,
    partition: i32,
    key: Vec<u8>,
    payload: Vec<u8>,
    pill: Option<Verdict>,
}

impl Outgoing {
    fn valid_reading(sensor: &SensorSpec, step: i64) -> Self {
        let reading = reading(sensor, step);
        Outgoing {
            input: Input::Readings,
            partition: sensor.partition,
            key: reading.key().into_bytes(),
            payload: encode_reading(&reading),
            pill: None,
        }
    }

    fn valid_batch_event(payload: Vec<u8>) -> Self {
        Outgoing {
            input: Input::Batches,
            partition: 0,
            key: b"L1".to_vec(),
            payload,
            pill: None,
        }
    }

    fn reading_pill(sensor: &SensorSpec, payload: Vec<u8>, verdict: Verdict) -> Self {
        Outgoing {
            input: Input::Readings,
            partition: sensor.partition,
            key: format!("L1/{}", sensor.name).into_bytes(),
            payload,
            pill: Some(verdict),
        }
    }

    fn batch_pill(payload: Vec<u8>, verdict: Verdict) -> Self {
        Outgoing {
            input: Input::Batches,
            partition: 0,
            key: b"L1".to_vec(),
            payload,
            pill: Some(verdict),
        }
    }
}

fn verdict(what: &'static str, stage: &'static str, code: &'static str) -> Verdict {
    Verdict { what, stage, code }
}

/// The valid reading of `sensor` at `step` with a fresh sequence number,
/// as a JSON object to break.
fn reading_object(sensor: &SensorSpec, step: i64) -> Map<String, Value> {
    let mut reading = reading(sensor, step);
    reading.seq = PILL_SEQ_BASE + step as u64;
    match serde_json::from_slice(&encode_reading(&reading)) {
        Ok(Value::Object(object)) => object,
        other => panic!("a reading encodes as a JSON object, got {other:?}"),
    }
}

fn with(sensor: &SensorSpec, step: i64, change: impl FnOnce(&mut Map<String, Value>)) -> Vec<u8> {
    let mut object = reading_object(sensor, step);
    change(&mut object);
    serde_json::to_vec(&Value::Object(object)).unwrap()
}

fn text_of(sensor: &SensorSpec, step: i64) -> String {
    serde_json::to_string(&Value::Object(reading_object(sensor, step))).unwrap()
}

fn batch_object(event: &str, ts: Value) -> Map<String, Value> {
    match json!({"batch": "B-1", "line": "L1", "product": "espresso", "event": event, "ts": ts}) {
        Value::Object(object) => object,
        _ => unreachable!("a JSON object literal"),
    }
}

/// The pills of the first stretch, each after the valid records of its
/// step.
fn first_stretch_pills() -> Vec<(i64, Outgoing)> {
    let (t, rh, p, nose) = (
        sensor("t-1"),
        sensor("rh-1"),
        sensor("p-1"),
        sensor("enose-1"),
    );
    let utf8 = {
        // Two bytes of the sensor name replaced by 0xff 0xfe, as a flipped
        // bit on a serial line would.
        let mut bytes = text_of(t, 12).into_bytes();
        let at = bytes.windows(3).position(|w| w == b"t-1").unwrap();
        bytes[at] = 0xff;
        bytes[at + 1] = 0xfe;
        bytes
    };
    let truncated = {
        let text = text_of(rh, 20);
        text.as_bytes()[..text.len() * 2 / 3].to_vec()
    };
    let bare_nan = {
        // JSON has no NaN; a gateway that prints floats with C's printf
        // sends it anyway.
        let text = text_of(p, 25);
        let values = text.find("\"values\":[").unwrap() + "\"values\":[".len();
        let end = values + text[values..].find(']').unwrap();
        format!("{}NaN{}", &text[..values], &text[end..]).into_bytes()
    };
    let oversized = with(p, 65, |o| {
        o.insert(
            "x_debug_dump".into(),
            Value::from("0123456789abcdef".repeat(4_375)),
        );
    });
    assert!(oversized.len() > 70_000);
    let reading_pills = vec![
        (
            12,
            Outgoing::reading_pill(
                t,
                utf8,
                verdict("sensor name with 0xff 0xfe", "decode", "invalid_utf8"),
            ),
        ),
        (
            20,
            Outgoing::reading_pill(
                rh,
                truncated,
                verdict("object cut after two thirds", "decode", "invalid_json"),
            ),
        ),
        (
            25,
            Outgoing::reading_pill(
                p,
                bare_nan,
                verdict("bare NaN in values", "decode", "invalid_json"),
            ),
        ),
        (
            30,
            Outgoing::reading_pill(
                t,
                with(t, 30, |o| {
                    o.insert("values".into(), json!(["Infinity"]));
                }),
                verdict("\"Infinity\" in values", "validate", "non_finite"),
            ),
        ),
        (
            33,
            Outgoing::reading_pill(
                rh,
                with(rh, 33, |o| {
                    o.insert("values".into(), json!([null]));
                }),
                verdict("null in values", "validate", "non_finite"),
            ),
        ),
        (
            38,
            Outgoing::reading_pill(
                p,
                with(p, 38, |o| {
                    o.insert("seq".into(), json!("1000038"));
                }),
                verdict("seq as a string", "decode", "wrong_type"),
            ),
        ),
        (
            41,
            Outgoing::reading_pill(
                nose,
                b"[1.02, 0.98, 1.11]".to_vec(),
                verdict("an array, not an object", "decode", "wrong_type"),
            ),
        ),
        (
            44,
            Outgoing::reading_pill(
                nose,
                with(nose, 44, |o| {
                    o.remove("sensor");
                }),
                verdict("no sensor field", "decode", "missing_field"),
            ),
        ),
        (
            47,
            Outgoing::reading_pill(
                t,
                with(t, 47, |o| {
                    o.insert("ts".into(), Value::Null);
                }),
                verdict("ts null", "decode", "missing_field"),
            ),
        ),
        (
            50,
            Outgoing::reading_pill(
                nose,
                with(nose, 50, |o| {
                    o.insert("values".into(), json!([1.0, 1.1, 1.2, 1.3]));
                }),
                verdict("e-nose with 4 channels", "validate", "channel_count"),
            ),
        ),
        (
            53,
            Outgoing::reading_pill(
                t,
                with(t, 53, |o| {
                    o.insert("values".into(), json!([90.1, 90.2]));
                }),
                verdict("temperature with 2 values", "validate", "channel_count"),
            ),
        ),
        (
            56,
            Outgoing::reading_pill(
                rh,
                with(rh, 56, |o| {
                    o.insert("ts".into(), json!(0));
                }),
                verdict("ts 0 (1970)", "validate", "timestamp_out_of_range"),
            ),
        ),
        (
            59,
            Outgoing::reading_pill(
                p,
                with(p, 59, |o| {
                    o.insert("ts".into(), json!("3000-01-01T00:00:00Z"));
                }),
                verdict("ts in the year 3000", "validate", "timestamp_out_of_range"),
            ),
        ),
        (
            62,
            Outgoing::reading_pill(
                nose,
                with(nose, 62, |o| {
                    o.insert("ts".into(), json!("yesterday"));
                }),
                verdict("ts \"yesterday\"", "decode", "bad_timestamp"),
            ),
        ),
        (
            65,
            Outgoing::reading_pill(
                p,
                oversized,
                verdict("70 000-byte value", "decode", "oversized"),
            ),
        ),
        (
            68,
            Outgoing::reading_pill(
                rh,
                with(rh, 68, |o| {
                    o.insert("kind".into(), json!("sonar"));
                }),
                verdict("kind \"sonar\"", "decode", "unknown_sensor_kind"),
            ),
        ),
        (
            71,
            Outgoing::reading_pill(
                nose,
                with(nose, 71, |o| {
                    o.insert("kind".into(), json!("Enose"));
                }),
                verdict("kind \"Enose\"", "decode", "unknown_sensor_kind"),
            ),
        ),
        (
            74,
            Outgoing::reading_pill(
                rh,
                with(rh, 74, |o| {
                    o.insert("values".into(), json!([180.0]));
                }),
                verdict("humidity 180 %", "validate", "out_of_range"),
            ),
        ),
        (
            77,
            Outgoing::reading_pill(
                nose,
                with(nose, 77, |o| {
                    o.insert("sensor".into(), json!("enose/1"));
                }),
                verdict("sensor \"enose/1\"", "validate", "bad_identifier"),
            ),
        ),
        (
            80,
            Outgoing::reading_pill(
                rh,
                encode_reading(&reading(rh, 80)),
                verdict(
                    "the reading of step 80 sent twice",
                    "duplicate",
                    "duplicate_sequence",
                ),
            ),
        ),
        (
            90,
            Outgoing::reading_pill(
                t,
                {
                    // 13.0 s, read after 18.0 s: 3 s behind the newest
                    // reading of its partition, the allowed lateness is 2 s.
                    let mut late = reading(t, 65);
                    late.seq = PILL_SEQ_BASE + 90;
                    encode_reading(&late)
                },
                verdict("13 s reading after the 18 s one", "late", "late"),
            ),
        ),
        (
            95,
            Outgoing::reading_pill(
                p,
                Vec::new(),
                verdict("empty value", "decode", "invalid_json"),
            ),
        ),
        (
            120,
            Outgoing::reading_pill(
                t,
                with(t, 120, |o| {
                    o.insert("ts".into(), json!(1_795_514_424_000.5));
                }),
                verdict("fractional epoch milliseconds", "decode", "bad_timestamp"),
            ),
        ),
    ];
    let batch_pills = vec![
        (
            3,
            Outgoing::batch_pill(
                serde_json::to_vec(&batch_object("stop", json!(ts_of(3)))).unwrap(),
                verdict("batch event \"stop\"", "decode", "wrong_type"),
            ),
        ),
        (
            40,
            Outgoing::batch_pill(
                {
                    let mut object = batch_object("start", json!(ts_of(40)));
                    object.remove("product");
                    serde_json::to_vec(&object).unwrap()
                },
                verdict("batch event without product", "decode", "missing_field"),
            ),
        ),
        (
            85,
            Outgoing::batch_pill(
                {
                    let mut object = batch_object("end", json!(ts_of(85)));
                    object.insert("line".into(), json!("L1/a"));
                    serde_json::to_vec(&object).unwrap()
                },
                verdict("batch event on line \"L1/a\"", "validate", "bad_identifier"),
            ),
        ),
        (
            100,
            Outgoing::batch_pill(
                serde_json::to_vec(&batch_object("end", json!(0))).unwrap(),
                verdict("batch event at ts 0", "validate", "timestamp_out_of_range"),
            ),
        ),
        (
            130,
            Outgoing::batch_pill(
                br#"{"batch":"B-2","line":"L1","product":"espresso","event":"e"#.to_vec(),
                verdict("batch event cut short", "decode", "invalid_json"),
            ),
        ),
    ];
    reading_pills.into_iter().chain(batch_pills).collect()
}

/// The pills of the second stretch, produced to the restarted engine.
fn second_stretch_pills() -> Vec<(i64, Outgoing)> {
    let (t, rh, p, nose) = (
        sensor("t-1"),
        sensor("rh-1"),
        sensor("p-1"),
        sensor("enose-1"),
    );
    vec![
        (
            210,
            Outgoing::reading_pill(
                t,
                br#"{"plant":"p1","line":"L1","sensor":"t-1","kind":"temperature","ts":"#.to_vec(),
                verdict("object cut after ts", "decode", "invalid_json"),
            ),
        ),
        (
            215,
            Outgoing::batch_pill(
                serde_json::to_vec(&batch_object("pause", json!(ts_of(215)))).unwrap(),
                verdict("batch event \"pause\"", "decode", "wrong_type"),
            ),
        ),
        (
            220,
            Outgoing::reading_pill(
                nose,
                encode_reading(&reading(nose, 220)),
                verdict(
                    "the e-nose reading of step 220 sent twice",
                    "duplicate",
                    "duplicate_sequence",
                ),
            ),
        ),
        (
            230,
            Outgoing::reading_pill(
                p,
                {
                    let mut late = reading(p, 212);
                    late.seq = PILL_SEQ_BASE + 230;
                    encode_reading(&late)
                },
                verdict("42.4 s reading after the 46 s one", "late", "late"),
            ),
        ),
        (
            240,
            Outgoing::reading_pill(
                rh,
                with(rh, 240, |o| {
                    o.insert("values".into(), json!(["-Infinity"]));
                }),
                verdict("\"-Infinity\" in values", "validate", "non_finite"),
            ),
        ),
    ]
}

/// The records of `steps` in production order: per step, the batch events
/// due, the four readings, then the pills of that step.
fn stretch(steps: std::ops::Range<i64>, pills: Vec<(i64, Outgoing)>) -> Vec<Outgoing> {
    let mut records = Vec::new();
    for step in steps {
        for batch in &BATCHES {
            if batch.start_step == step {
                records.push(Outgoing::valid_batch_event(batch_event(
                    batch,
                    BatchPhase::Start,
                )));
            }
            if batch.end_step == step {
                records.push(Outgoing::valid_batch_event(batch_event(
                    batch,
                    BatchPhase::End,
                )));
            }
        }
        for sensor in &SENSORS {
            records.push(Outgoing::valid_reading(sensor, step));
        }
        records.extend(
            pills
                .iter()
                .filter(|(at, _)| *at == step)
                .map(|(_, pill)| pill.clone()),
        );
    }
    records
}

/// A record as delivered: where the broker put it.
#[derive(Debug, Clone)]
struct Delivered {
    record: Outgoing,
    partition: i32,
    offset: i64,
}

struct Topics {
    readings: String,
    batches: String,
    actions: String,
    dead_letters: String,
    progress: String,
}

impl Topics {
    fn of(&self, input: Input) -> &str {
        match input {
            Input::Readings => &self.readings,
            Input::Batches => &self.batches,
        }
    }
}

/// Produces `records` in order, each to its chosen partition, and returns
/// where each one landed, from the delivery reports.
fn produce(brokers: &str, topics: &Topics, records: Vec<Outgoing>) -> Vec<Delivered> {
    let settings = KafkaSettings {
        brokers: brokers.to_owned(),
        ..KafkaSettings::default()
    };
    let producer: FutureProducer = settings
        .client_config()
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("create the test producer");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pending: Vec<_> = records
        .iter()
        .map(|record| {
            let message = FutureRecord::to(topics.of(record.input))
                .partition(record.partition)
                .key(&record.key)
                .payload(&record.payload);
            producer
                .send_result(message)
                .map_err(|(error, _)| error)
                .expect("enqueue a record")
        })
        .collect();
    records
        .into_iter()
        .zip(pending)
        .map(|(record, delivery)| {
            let delivery = runtime
                .block_on(delivery)
                .expect("the producer delivers")
                .map_err(|(error, _)| error)
                .expect("the broker accepts the record");
            assert_eq!(delivery.partition, record.partition);
            Delivered {
                record,
                partition: delivery.partition,
                offset: delivery.offset,
            }
        })
        .collect()
}

/// A pill as produced: the dead letter it must become.
#[derive(Debug, Clone)]
struct ExpectedLetter {
    verdict: Verdict,
    stream: &'static str,
    topic: String,
    partition: i32,
    offset: i64,
    key: Vec<u8>,
    payload: Vec<u8>,
}

fn expected_letters(delivered: &[Delivered], topics: &Topics) -> Vec<ExpectedLetter> {
    delivered
        .iter()
        .filter_map(|d| {
            d.record.pill.map(|verdict| ExpectedLetter {
                verdict,
                stream: d.record.input.stream(),
                topic: topics.of(d.record.input).to_owned(),
                partition: d.partition,
                offset: d.offset,
                key: d.record.key.clone(),
                payload: d.record.payload.clone(),
            })
        })
        .collect()
}

/// One record of the dead-letter topic, as `kcat` printed it.
#[derive(Debug, Clone)]
struct DlqRecord {
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    /// `__scent.errors.*` headers, without the prefix.
    headers: BTreeMap<String, String>,
}

impl DlqRecord {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("<absent>", String::as_str)
    }

    fn coordinates(&self) -> (String, String, String) {
        (
            self.header("topic").to_owned(),
            self.header("partition").to_owned(),
            self.header("offset").to_owned(),
        )
    }
}

/// Reads the whole dead-letter topic with kcat, `read_committed`: the value
/// length-prefixed (it may be any bytes), then the key, then the headers.
fn kcat_dead_letters(brokers: &str, topic: &str) -> Vec<DlqRecord> {
    let out = support::kcat(brokers, topic, "%R%s%K\t%k%h\n");
    let mut records = Vec::new();
    let mut at = 0;
    let take_until = |at: &mut usize, stop: u8| -> Vec<u8> {
        let end = *at
            + out[*at..]
                .iter()
                .position(|&b| b == stop)
                .expect("kcat output is framed");
        let field = out[*at..end].to_vec();
        *at = end + 1;
        field
    };
    while at < out.len() {
        let length = i32::from_be_bytes(out[at..at + 4].try_into().unwrap());
        at += 4;
        let payload = (length >= 0).then(|| {
            let value = out[at..at + length as usize].to_vec();
            at += length as usize;
            value
        });
        let key_length: i64 = String::from_utf8(take_until(&mut at, b'\t'))
            .unwrap()
            .parse()
            .expect("kcat prints the key length");
        let key = (key_length >= 0).then(|| {
            let key = out[at..at + key_length as usize].to_vec();
            at += key_length as usize;
            key
        });
        let header_line = String::from_utf8(take_until(&mut at, b'\n')).expect("UTF-8 headers");
        // kcat prints headers as `name=value` joined by commas; values (the
        // human-readable reason) may hold commas, names all start with the
        // prefix.
        let headers = header_line
            .split(",__scent.errors.")
            .map(|field| field.strip_prefix("__scent.errors.").unwrap_or(field))
            .filter_map(|field| field.split_once('='))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        records.push(DlqRecord {
            key,
            payload,
            headers,
        });
    }
    records
}

/// Reads the actions topic with kcat, `read_committed`, one JSON value per
/// line.
fn kcat_actions(brokers: &str, topic: &str) -> Vec<Value> {
    String::from_utf8(support::kcat(brokers, topic, "%s\n"))
        .expect("actions are UTF-8")
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_str(line).expect("actions are JSON"))
        .collect()
}

/// Every pill is on the dead-letter topic exactly once, as it was produced
/// and with the verdict it deserves, and nothing else is.
fn assert_dead_letters(records: &[DlqRecord], expected: &[ExpectedLetter], when: &str) {
    let mut by_coordinates: BTreeMap<(String, String, String), Vec<&DlqRecord>> = BTreeMap::new();
    for record in records {
        by_coordinates
            .entry(record.coordinates())
            .or_default()
            .push(record);
    }
    for letter in expected {
        let coordinates = (
            letter.topic.clone(),
            letter.partition.to_string(),
            letter.offset.to_string(),
        );
        let found = by_coordinates.remove(&coordinates).unwrap_or_default();
        let what = letter.verdict.what;
        assert_eq!(
            found.len(),
            1,
            "{when}: pill `{what}` at {coordinates:?} must be on the DLQ exactly once"
        );
        let record = found[0];
        assert_eq!(
            record.payload.as_deref(),
            Some(letter.payload.as_slice()),
            "{when}: `{what}` keeps its bytes"
        );
        assert_eq!(
            record.key.as_deref(),
            Some(letter.key.as_slice()),
            "{when}: `{what}` keeps its key"
        );
        assert_eq!(
            record.header("reason.code"),
            letter.verdict.code,
            "{when}: reason of `{what}` ({})",
            record.header("reason")
        );
        assert_eq!(
            record.header("stage"),
            letter.verdict.stage,
            "{when}: stage of `{what}`"
        );
        assert_eq!(
            record.header("stream"),
            letter.stream,
            "{when}: stream of `{what}`"
        );
        assert_eq!(record.header("schema.version"), "1");
        assert_eq!(
            record.header("worker"),
            (letter.partition as usize % WORKERS).to_string(),
            "{when}: `{what}` was rejected by the worker reading its partition"
        );
        assert!(
            !record.header("reason").is_empty(),
            "{when}: `{what}` explains itself"
        );
    }
    assert!(
        by_coordinates.is_empty(),
        "{when}: dead letters that are no pill: {:?}",
        by_coordinates.keys().collect::<Vec<_>>()
    );
    assert_eq!(records.len(), expected.len(), "{when}: nothing else");
}

/// The final (sealed) release decisions among `actions`.
fn sealed(actions: &[Value]) -> Vec<&Value> {
    actions
        .iter()
        .filter(|action| action["kind"] == "batch_release" && action["sealed"] == true)
        .collect()
}

/// The decisions on the actions topic are exactly the expected ones: no
/// action twice, and one sealed decision per batch of `batches`.
fn assert_actions(actions: &[Value], batches: &[&BatchSpec], when: &str) {
    let ids: std::collections::BTreeSet<&str> = actions
        .iter()
        .map(|action| action["action_id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(ids.len(), actions.len(), "{when}: no action twice");
    let actions: Vec<Value> = sealed(actions).into_iter().cloned().collect();
    let decided: Vec<&str> = actions
        .iter()
        .map(|action| action["batch"].as_str().unwrap_or("<none>"))
        .collect();
    let mut expected: Vec<&str> = batches.iter().map(|batch| batch.batch).collect();
    let mut sorted = decided.clone();
    sorted.sort_unstable();
    expected.sort_unstable();
    assert_eq!(sorted, expected, "{when}: one decision per batch");
    for batch in batches {
        let action = actions
            .iter()
            .find(|action| action["batch"] == batch.batch)
            .unwrap();
        assert_eq!(action["schema"], "scent.action/v2");
        assert_eq!(action["kind"], "batch_release");
        assert_eq!(action["line"], "L1");
        assert_eq!(action["product"], batch.product);
        assert_eq!(action["ts_ms"], ts_of(batch.end_step), "{}", batch.batch);
        assert_eq!(
            action["decision"], batch.expected,
            "{when}: {} is decided on its valid readings: {action}",
            batch.batch
        );
        let reasons: Vec<(String, String, u64)> = action["reasons"]
            .as_array()
            .expect("reasons is an array")
            .iter()
            .map(|reason| {
                (
                    reason["sensor"].as_str().unwrap_or_default().to_owned(),
                    reason["rule"].as_str().unwrap_or_default().to_owned(),
                    reason["count"].as_u64().unwrap_or_default(),
                )
            })
            .collect();
        let expected_reasons = match batch.expected {
            "hold" => vec![(
                "t-1".to_owned(),
                "zscore".to_owned(),
                EXCURSION_STEPS.count() as u64,
            )],
            _ => Vec::new(),
        };
        assert_eq!(
            reasons, expected_reasons,
            "{when}: reasons of {}",
            batch.batch
        );
    }
}

/// Rejection counters by `(stage, reason)` equal the pills produced so far,
/// and no valid reading was lost or let in twice.
fn assert_counters(metrics: &Metrics, expected: &[ExpectedLetter], valid_readings: usize) {
    let mut by_reason: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for letter in expected {
        *by_reason
            .entry((letter.verdict.stage, letter.verdict.code))
            .or_default() += 1;
    }
    for ((stage, code), count) in &by_reason {
        assert_eq!(
            metrics.sum(
                "scent_ingest_rejected_total",
                &[("stage", stage), ("reason", code)]
            ),
            *count as f64,
            "scent_ingest_rejected_total{{stage={stage},reason={code}}}"
        );
    }
    assert_eq!(
        metrics.sum("scent_ingest_rejected_total", &[]),
        expected.len() as f64,
        "no rejection beyond the pills"
    );
    assert_eq!(
        metrics.sum("scent_ingest_readings_total", &[]),
        valid_readings as f64,
        "every valid reading entered the dataflow once"
    );
}

/// Polls `check` until it returns `Some`, or panics after `timeout` with
/// the engine's log.
fn wait_for<T>(
    engine: &mut Engine,
    what: &str,
    timeout: Duration,
    mut check: impl FnMut(&mut Engine) -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        engine.assert_running();
        if let Some(value) = check(engine) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; the engine's log ends:\n{}",
            engine.log_tail()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn every_poison_pill_is_one_dead_letter_across_a_kill_and_restart() {
    let test = "every_poison_pill_is_one_dead_letter_across_a_kill_and_restart";
    let Some([brokers]) = support::services(test, ["SCENT_KAFKA_BROKERS"], true) else {
        return;
    };
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let run_id = format!("pills-{}-{started}", std::process::id());
    let topics = Topics {
        readings: format!("{run_id}.readings"),
        batches: format!("{run_id}.batches"),
        actions: format!("{run_id}.actions"),
        dead_letters: format!("{run_id}.dlq"),
        progress: format!("{run_id}.progress"),
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("scent.toml");
    std::fs::write(
        &config,
        format!(
            r#"[engine]
workers = {WORKERS}

[kafka]
brokers = "{brokers}"
group_id = "{run_id}"
delivery = "exactly_once"

[kafka.topics]
readings = "{}"
batches = "{}"
actions = "{}"
dead_letters = "{}"
progress = "{}"
"#,
            topics.readings, topics.batches, topics.actions, topics.dead_letters, topics.progress
        ),
    )
    .unwrap();
    support::create_topics(&config, &brokers);

    // The first stretch: 800 valid readings, B-1 and B-2, 28 pills.
    let first = produce(
        &brokers,
        &topics,
        stretch(FIRST_STRETCH, first_stretch_pills()),
    );
    let mut letters = expected_letters(&first, &topics);
    let mut valid_readings = first
        .iter()
        .filter(|d| d.record.input == Input::Readings && d.record.pill.is_none())
        .count();
    assert_eq!(valid_readings, SENSORS.len() * FIRST_STRETCH.count());
    let distinct_codes: std::collections::BTreeSet<_> =
        letters.iter().map(|l| l.verdict.code).collect();
    eprintln!(
        "produced {} records to {run_id}.*: {valid_readings} valid readings, {} pills of {} reason codes",
        first.len(),
        letters.len(),
        distinct_codes.len()
    );
    assert!(distinct_codes.len() >= 12, "{distinct_codes:?}");

    let mut engine = Engine::start_isolated(&config, dir.path().join("engine-1.log"));
    let decided = wait_for(
        &mut engine,
        "B-1 and B-2 decided and every pill dead-lettered",
        Duration::from_secs(120),
        |engine| {
            let ingested = engine.metrics().sum("scent_ingest_records_total", &[]);
            let actions = kcat_actions(&brokers, &topics.actions);
            let dead = kcat_dead_letters(&brokers, &topics.dead_letters);
            (ingested >= first.len() as f64
                && sealed(&actions).len() >= 2
                && dead.len() >= letters.len())
            .then_some((actions, dead))
        },
    );
    let (actions, dead) = decided;
    assert_dead_letters(&dead, &letters, "first run");
    assert_actions(&actions, &[&BATCHES[0], &BATCHES[1]], "first run");
    let metrics = engine.metrics();
    assert_counters(&metrics, &letters, valid_readings);
    assert_eq!(metrics.sum("scent_engine_restarts_total", &[]), 0.0);
    let transactions = metrics.sum("scent_output_transactions_total", &[]);
    assert!(transactions >= 1.0);
    eprintln!(
        "first run: {} dead letters and {} actions committed in {transactions} transactions",
        dead.len(),
        actions.len()
    );

    // kill -9 once everything is committed, and start again.
    engine.kill_hard();
    let mut engine = Engine::start_isolated(&config, dir.path().join("engine-2.log"));
    let (status, health) = engine.get("/health");
    assert_eq!(status, 200, "{health}");
    assert!(health.contains("\"status\":\"ok\""), "{health}");

    // The second stretch: 400 more valid readings, B-3, 5 more pills, for
    // the restarted engine.
    let second = produce(
        &brokers,
        &topics,
        stretch(SECOND_STRETCH, second_stretch_pills()),
    );
    letters.extend(expected_letters(&second, &topics));
    valid_readings += second
        .iter()
        .filter(|d| d.record.input == Input::Readings && d.record.pill.is_none())
        .count();
    let (actions, dead) = wait_for(
        &mut engine,
        "B-3 decided and the new pills dead-lettered",
        Duration::from_secs(120),
        |engine| {
            let ingested = engine.metrics().sum("scent_ingest_records_total", &[]);
            let actions = kcat_actions(&brokers, &topics.actions);
            let dead = kcat_dead_letters(&brokers, &topics.dead_letters);
            (ingested >= (first.len() + second.len()) as f64
                && sealed(&actions).len() >= 3
                && dead.len() >= letters.len())
            .then_some((actions, dead))
        },
    );
    // A replayed pill written twice would be committed by now: the
    // restarted engine's frontier has moved far beyond the first stretch.
    assert_dead_letters(&dead, &letters, "after kill -9 and restart");
    assert_actions(
        &actions,
        &BATCHES.iter().collect::<Vec<_>>(),
        "after restart",
    );

    // Healthy: still running, no in-process recovery, the replay suppressed
    // what the first run committed, and it counted every record once.
    let (status, health) = engine.get("/health");
    assert_eq!(status, 200, "{health}");
    assert!(health.contains("\"status\":\"ok\""), "{health}");
    let metrics = engine.metrics();
    assert_eq!(
        metrics.sum("scent_engine_restarts_total", &[]),
        0.0,
        "no pill made the engine fail and recover"
    );
    assert!(
        metrics.sum("scent_output_suppressed_epochs_total", &[]) > 0.0,
        "the restart replayed committed epochs without writing them again"
    );
    assert_counters(&metrics, &letters, valid_readings);
    std::thread::sleep(Duration::from_secs(2));
    engine.assert_running();
    eprintln!(
        "after restart: {} dead letters (each pill once), {} actions, {} suppressed epochs",
        dead.len(),
        actions.len(),
        metrics.sum("scent_output_suppressed_epochs_total", &[])
    );
}
