//! Determinism through a real broker: the action stream is a function of
//! the input alone.
//!
//! One seeded plant is produced twice to Apache Kafka: once in event-time
//! order, once with the readings shuffled within windows shorter than the
//! allowed lateness (as gateways with jittery clocks deliver them). Then
//! `scent run` processes them as separate engines (own group, own output
//! topics), and the committed action streams, read with `kcat` as a
//! `read_committed` consumer, must be:
//! - byte-identical for two runs of the same input with 2 workers;
//! - identical for the shuffled input, but for the offsets of the input
//!   spans the actions name (and the ids, which hash them);
//! - the same actions in the same order per key with 1 and with 4 workers
//!   (across keys, a batch event that arrives behind the frontier enters
//!   at the frontier, which depends on how the workers' partitions
//!   interleave; per key the order is fixed).
//!
//! Needs `SCENT_KAFKA_BROKERS` and `kcat` (provided by `deploy/test.sh`);
//! skips with a message without them unless `SCENT_REQUIRE_SERVICES=1`.

use scent::sim::{Plant, SimRecord};
use scent::simulate::{prefixed_topics, produce_records, sim_config};
use scent_kafka::admin::{create_topics, default_topics};
use scent_kafka::KafkaSettings;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use support::{block_on, Engine};

mod support;

const SEED: u64 = 23;
const READINGS: u64 = 40_000;
/// Shuffle windows span less than the default allowed lateness (2 s).
const SHUFFLE_WINDOW_MS: i64 = 1_500;

/// The plant's records with every window of `SHUFFLE_WINDOW_MS` of
/// readings permuted by a seeded generator; batch events keep their place.
fn shuffled_within_lateness(plant: &Plant) -> Vec<SimRecord> {
    let mut out = Vec::new();
    let mut window: Vec<SimRecord> = Vec::new();
    let mut window_start: Option<i64> = None;
    let mut state = SEED.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next_random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut flush = |window: &mut Vec<SimRecord>, out: &mut Vec<SimRecord>| {
        for i in (1..window.len()).rev() {
            let j = (next_random() % (i as u64 + 1)) as usize;
            window.swap(i, j);
        }
        out.append(window);
    };
    for record in plant.merged_stream() {
        match record {
            SimRecord::Reading(_) => {
                if window_start.is_none_or(|start| record.ts_ms() - start >= SHUFFLE_WINDOW_MS) {
                    flush(&mut window, &mut out);
                    window_start = Some(record.ts_ms());
                }
                window.push(record);
            }
            other => out.push(other),
        }
    }
    flush(&mut window, &mut out);
    out
}

/// Input topics with `prefix`, holding `records`.
fn produce_input(brokers: &str, prefix: &str, records: Vec<SimRecord>) -> KafkaSettings {
    let settings = KafkaSettings {
        brokers: brokers.to_owned(),
        topics: prefixed_topics(prefix),
        ..KafkaSettings::default()
    };
    block_on(create_topics(&settings, &default_topics(&settings, 4))).expect("create topics");
    produce_records(records, &settings, 0.0, &AtomicBool::new(false)).expect("produce");
    settings
}

/// Runs `scent run` with `workers` over `input` until `expected` batches
/// have a committed, sealed decision; returns the committed stream as `partition key value`
/// lines, partition by partition, in offset order.
fn run_engine(
    dir: &Path,
    input: &KafkaSettings,
    name: &str,
    workers: usize,
    expected: usize,
) -> Vec<String> {
    let out = prefixed_topics(&format!("{}.{name}.", input.topics.readings));
    let config = format!(
        r#"
[engine]
workers = {workers}
[kafka]
brokers = "{brokers}"
group_id = "{group}"
[kafka.topics]
readings = "{readings}"
batches = "{batches}"
actions = "{actions}"
dead_letters = "{dead_letters}"
progress = "{progress}"
[http]
listen = ""
"#,
        brokers = input.brokers,
        group = out.actions,
        readings = input.topics.readings,
        batches = input.topics.batches,
        actions = out.actions,
        dead_letters = out.dead_letters,
        progress = out.progress,
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config).unwrap();
    support::create_topics(&path, &input.brokers);
    let _engine = Engine::start(&path, dir.join(format!("{name}.log")));
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let lines = committed_actions(&input.brokers, &out.actions);
        let sealed = sealed_decisions(&lines);
        if sealed >= expected {
            // Nothing more may follow: the input is complete and every
            // batch sealed.
            std::thread::sleep(Duration::from_millis(1_500));
            let again = committed_actions(&input.brokers, &out.actions);
            assert_eq!(again, lines, "{name}: actions after every batch sealed");
            assert_eq!(sealed, expected, "{name}: one sealed decision per batch");
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: {sealed} of {expected} decisions sealed after 240 s; log: {}",
            std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The lines with what depends on input offsets taken out: the input
/// spans, and the ids that hash them (and name predecessors).
fn without_offsets(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|line| {
            let mut fields = line.splitn(3, ' ');
            let (partition, key) = (fields.next().unwrap(), fields.next().unwrap());
            let mut action: serde_json::Value =
                serde_json::from_str(fields.next().unwrap()).unwrap();
            let object = action.as_object_mut().unwrap();
            object.remove("action_id");
            object.remove("supersedes");
            object["evidence"].as_object_mut().unwrap().remove("input");
            format!("{partition} {key} {action}")
        })
        .collect()
}

/// Sealed release decisions among `partition key value` lines.
fn sealed_decisions(lines: &[String]) -> usize {
    lines
        .iter()
        .filter(|line| {
            let value = line.splitn(3, ' ').nth(2).unwrap_or_default();
            let action: serde_json::Value = serde_json::from_str(value).unwrap_or_default();
            action["kind"] == "batch_release" && action["sealed"] == true
        })
        .count()
}

/// The committed actions as `partition key value` lines, read by `kcat`.
fn committed_actions(brokers: &str, topic: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for partition in 0..4 {
        let output = Command::new("kcat")
            .args(["-b", brokers, "-C", "-t", topic, "-e", "-q"])
            .args(["-p", &partition.to_string()])
            .args(["-X", "isolation.level=read_committed"])
            .args(["-f", "%p %k %s\\n"])
            .output()
            .expect("kcat runs");
        assert!(output.status.success(), "kcat: {:?}", output);
        lines.extend(
            String::from_utf8(output.stdout)
                .unwrap()
                .lines()
                .map(str::to_owned),
        );
    }
    lines
}

/// The actions of each key, in stream order.
fn per_key(lines: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in lines {
        let mut fields = line.splitn(3, ' ');
        let (_partition, key) = (fields.next().unwrap(), fields.next().unwrap());
        keys.entry(key.to_owned()).or_default().push(line.clone());
    }
    keys
}

#[test]
fn the_action_stream_depends_on_the_input_alone() {
    let Some([brokers]) = support::services(
        "the_action_stream_depends_on_the_input_alone",
        ["SCENT_KAFKA_BROKERS"],
        true,
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let plant = Plant::new(sim_config(SEED, READINGS, 3, 0)).unwrap();
    let batches = plant.ground_truth().batches.len();
    let run = format!("det-{}-{}.", std::process::id(), SEED);
    let sorted = produce_input(
        &brokers,
        &format!("{run}sorted."),
        plant.merged_stream().collect(),
    );
    let shuffled_records = shuffled_within_lateness(&plant);
    let reordered = shuffled_records
        .windows(2)
        .filter(|pair| pair[1].ts_ms() < pair[0].ts_ms())
        .count();
    assert!(reordered > 1_000, "the shuffle reorders ({reordered})");
    let shuffled = produce_input(&brokers, &format!("{run}shuffled."), shuffled_records);

    let first = run_engine(dir.path(), &sorted, "first", 2, batches);
    let second = run_engine(dir.path(), &sorted, "second", 2, batches);
    assert_eq!(first, second, "same input, same seed: byte-identical");

    // Shuffled input sits at other offsets, so the input spans the actions
    // name (and with them the ids) differ; everything else is identical.
    let from_shuffled = run_engine(dir.path(), &shuffled, "shuffled", 2, batches);
    assert_eq!(
        without_offsets(&first),
        without_offsets(&from_shuffled),
        "input shuffled within the lateness gives the sorted input's decisions"
    );

    for workers in [1, 4] {
        let other = run_engine(
            dir.path(),
            &sorted,
            &format!("workers{workers}"),
            workers,
            batches,
        );
        assert_eq!(
            per_key(&first),
            per_key(&other),
            "{workers} workers: same actions, same order per key"
        );
    }
}
