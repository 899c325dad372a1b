//! Tests of the simulator as a whole: determinism, stream invariants,
//! ground truth, malformed records, and agreement with the foundation
//! detector and verdict policy.

use super::physics::{contamination_ramp, Contaminant, ENOSE_NOISE_RELATIVE};
use super::*;
use scent_operators::batch_verdict::{decide, BatchEvidence, VerdictPolicy};
use scent_operators::model::{Decision, RejectReason, SensorKind};
use scent_operators::rolling_anomaly::{RollingAnomalyConfig, SensorMonitor};
use scent_operators::validate::{validate_reading, ValidationRules};
use scent_operators::wire::{decode_reading, DecodeLimits};
use std::collections::BTreeMap;

fn small(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        duration_ms: 40 * 60_000,
        malformed_count: 20,
        events: EventPlan::Auto(AutoEvents {
            batch_fraction: 1.0,
            ..AutoEvents::default()
        }),
        ..SimConfig::default()
    }
}

fn readings(records: &[SimRecord]) -> impl Iterator<Item = &Reading> {
    records.iter().filter_map(|record| match record {
        SimRecord::Reading(reading) => Some(reading),
        _ => None,
    })
}

fn line_of(record: &SimRecord) -> &str {
    match record {
        SimRecord::Reading(reading) => &reading.line,
        SimRecord::Batch(event) => &event.line,
        SimRecord::Malformed { key, .. } => key.split('/').next().unwrap_or_default(),
    }
}

#[test]
fn same_seed_same_records_other_seed_other_records() {
    let first: Vec<_> = Plant::new(small(1)).unwrap().merged_stream().collect();
    let again: Vec<_> = Plant::new(small(1)).unwrap().merged_stream().collect();
    let other: Vec<_> = Plant::new(small(2)).unwrap().merged_stream().collect();
    assert!(first.len() > 40_000);
    assert_eq!(first, again);
    assert_ne!(first, other);
    assert_eq!(
        Plant::new(small(1)).unwrap().ground_truth(),
        Plant::new(small(1)).unwrap().ground_truth()
    );
}

#[test]
fn a_line_alone_equals_its_records_in_the_merged_stream() {
    let plant = Plant::new(small(3)).unwrap();
    let merged: Vec<_> = plant.merged_stream().collect();
    for (index, name) in plant.line_names().iter().enumerate() {
        let alone: Vec<_> = plant.line_stream(index).collect();
        let from_merged: Vec<_> = merged
            .iter()
            .filter(|record| line_of(record) == name)
            .cloned()
            .collect();
        assert_eq!(alone, from_merged, "line {name}");
    }
    // Lines can be generated on other threads.
    let handles: Vec<_> = (0..3)
        .map(|index| {
            let stream = plant.line_stream(index);
            std::thread::spawn(move || stream.count())
        })
        .collect();
    let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, merged.len());
}

#[test]
fn streams_are_in_time_order_and_seq_counts_emitted_readings() {
    let plant = Plant::new(small(4)).unwrap();
    let records: Vec<_> = plant.merged_stream().collect();
    assert!(records
        .windows(2)
        .all(|pair| pair[0].ts_ms() <= pair[1].ts_ms()));
    let mut last_seq: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    for reading in readings(&records) {
        let (seq, ts) = last_seq.entry(reading.key()).or_insert((0, i64::MIN));
        assert_eq!(reading.seq, *seq + 1, "{}", reading.key());
        assert!(reading.ts_ms > *ts);
        *seq = reading.seq;
        *ts = reading.ts_ms;
    }
    assert_eq!(last_seq.len(), 21);
    // Batch events: start before end, and readings inside carry the batch.
    let truth = plant.ground_truth();
    for reading in readings(&records) {
        let inside = truth.batches.iter().find(|batch| {
            batch.line == reading.line
                && batch.start_ms <= reading.ts_ms
                && reading.ts_ms < batch.end_ms
        });
        assert_eq!(
            reading.batch.as_deref(),
            inside.map(|batch| batch.batch.as_str())
        );
        assert_eq!(
            reading.product.as_deref(),
            inside.map(|batch| batch.product.as_str())
        );
    }
}

#[test]
fn random_access_readings_equal_streamed_readings() {
    let plant = Plant::new(small(5)).unwrap();
    let config = plant.config().clone();
    let names = plant.sensor_names();
    let mut checked = 0;
    for line in 0..config.lines {
        for reading in plant.line_stream(line).filter_map(|record| match record {
            SimRecord::Reading(reading) => Some(reading),
            _ => None,
        }) {
            let sensor = names
                .iter()
                .position(|name| *name == reading.sensor)
                .unwrap();
            let step = ((reading.ts_ms - config.start_ts_ms) / config.sample_interval_ms) as u64;
            assert_eq!(
                plant.reading_at(line, sensor, step).as_ref(),
                Some(&reading)
            );
            checked += 1;
        }
    }
    assert_eq!(checked as u64, plant.reading_count());
}

#[test]
fn for_readings_hits_the_target_and_leaves_a_tail() {
    let plant = Plant::new(SimConfig::for_readings(100_000, 7)).unwrap();
    let records: Vec<_> = plant.merged_stream().collect();
    let count = readings(&records).count() as u64;
    assert_eq!(count, plant.reading_count());
    assert!((99_000..=100_021).contains(&count), "{count} readings");
    let truth = plant.ground_truth();
    assert!(!truth.batches.is_empty());
    let last_end = truth
        .batches
        .iter()
        .map(|batch| batch.end_ms)
        .max()
        .unwrap();
    assert!(last_end + 120_000 <= plant.end_ts_ms());
    let last_reading = readings(&records).map(|r| r.ts_ms).max().unwrap();
    assert!(last_reading >= last_end + 119_000);
    // Batch events: exactly one start and one end per batch in the stream.
    let batch_events = records
        .iter()
        .filter(|record| matches!(record, SimRecord::Batch(_)))
        .count();
    assert_eq!(batch_events, 2 * truth.batches.len());
}

#[test]
fn every_clean_reading_is_valid() {
    let config = SimConfig {
        events: EventPlan::None,
        ..small(6)
    };
    let plant = Plant::new(config).unwrap();
    let rules = ValidationRules::default();
    for reading in plant.merged_stream().filter_map(|record| match record {
        SimRecord::Reading(reading) => Some(reading),
        _ => None,
    }) {
        validate_reading(&reading, &rules).unwrap();
        if reading.kind == SensorKind::Enose {
            assert_eq!(reading.values.len(), 16);
            assert!(reading.values.iter().all(|&v| v > 0.0));
        }
    }
    assert!(plant
        .ground_truth()
        .batches
        .iter()
        .all(|batch| batch.expected_decision == Decision::Release));
}

#[test]
fn events_lie_inside_batches_after_the_warm_up() {
    let plant = Plant::new(SimConfig {
        duration_ms: 8 * 3_600_000,
        ..SimConfig::default()
    })
    .unwrap();
    let truth = plant.ground_truth();
    let eligible = truth.batches.len() - 2 * 3;
    assert!(
        truth.events.len() * 4 >= eligible - 12 && truth.events.len() * 4 <= eligible + 12,
        "{} events for {eligible} eligible batches",
        truth.events.len()
    );
    let mut per_kind: BTreeMap<(EventKind, Option<FaultMode>), usize> = BTreeMap::new();
    let mut per_line: BTreeMap<&str, usize> = BTreeMap::new();
    for event in &truth.events {
        let batch = truth
            .batches
            .iter()
            .find(|b| b.batch == event.batch)
            .unwrap();
        assert_eq!(batch.line, event.line);
        assert!(event.start_ms >= batch.start_ms + 180_000, "{}", event.id);
        assert!(event.end_ms <= batch.end_ms - 60_000, "{}", event.id);
        assert!(batch.events.contains(&event.id));
        let earlier_same_product = truth.batches.iter().any(|b| {
            b.line == batch.line && b.product == batch.product && b.start_ms < batch.start_ms
        });
        assert!(earlier_same_product, "{} is in a warm-up batch", event.id);
        *per_kind.entry((event.kind, event.mode)).or_default() += 1;
        *per_line.entry(&event.line).or_default() += 1;
    }
    assert_eq!(per_kind.len(), 5, "{per_kind:?}");
    assert_eq!(per_line.len(), 3, "{per_line:?}");
    let (fewest, most) = (
        per_kind.values().min().unwrap(),
        per_kind.values().max().unwrap(),
    );
    assert!(most - fewest <= 3, "{per_kind:?}");
}

#[test]
fn every_malformed_class_is_present_and_fails_for_its_reason() {
    let plant = Plant::new(small(8)).unwrap();
    let truth = plant.ground_truth();
    assert_eq!(truth.malformed.len(), 20);
    let limits = DecodeLimits::default();
    for class in MALFORMED_CLASSES {
        let records: Vec<_> = truth
            .malformed
            .iter()
            .filter(|record| record.expected_reason == class)
            .collect();
        assert_eq!(records.len(), 2, "{class}");
        for record in records {
            let decoded = decode_reading(&record.payload, &limits);
            match class {
                RejectReason::ChannelCount => {
                    let reading = decoded.unwrap();
                    assert_eq!(reading.values.len(), 3);
                    assert_eq!(reading.kind, SensorKind::Enose);
                    assert_eq!(reading.key(), record.key);
                }
                RejectReason::OutOfRange => {
                    let reading = decoded.unwrap();
                    assert_eq!(reading.kind, SensorKind::Humidity);
                    assert_eq!(reading.values, vec![180.0]);
                }
                _ => assert_eq!(decoded.unwrap_err().reason, class),
            }
            if class == RejectReason::Oversized {
                assert!(record.payload.len() > 64 * 1024);
            }
        }
    }
    // In the stream, each malformed record follows the reading it came from.
    let records: Vec<_> = plant.merged_stream().collect();
    let mut seen = 0;
    for (position, record) in records.iter().enumerate() {
        if let SimRecord::Malformed {
            index,
            key,
            ts_ms,
            payload,
            expected,
        } = record
        {
            let labelled = &truth.malformed[*index];
            assert_eq!(
                (key, ts_ms, payload, expected),
                (
                    &labelled.key,
                    &labelled.ts_ms,
                    &labelled.payload,
                    &labelled.expected_reason
                )
            );
            let source = records[..position]
                .iter()
                .rev()
                .find_map(|earlier| match earlier {
                    SimRecord::Reading(reading) if reading.key() == *key => Some(reading),
                    _ => None,
                });
            assert_eq!(source.map(|r| r.ts_ms), Some(*ts_ms));
            seen += 1;
        }
    }
    assert_eq!(seen, 20);
}

#[test]
fn a_contamination_raises_its_channels_far_above_the_noise() {
    let spec = EventSpec {
        class: EventClass::Contamination,
        line: "L2".into(),
        batch: 3,
        sensor: None,
        contaminant: Some("mould".into()),
        start_offset_ms: Some(200_000),
        duration_ms: Some(150_000),
    };
    let with = SimConfig {
        events: EventPlan::Explicit(vec![spec]),
        ..small(9)
    };
    let without = SimConfig {
        events: EventPlan::None,
        ..with.clone()
    };
    let event = Plant::new(with.clone()).unwrap().ground_truth().events[0].clone();
    let contaminant = Contaminant::new(with.seed, "mould", with.enose_channels);
    let responding: Vec<usize> = contaminant.responding_channels().collect();
    assert!(responding.len() >= 4);
    let line: Vec<_> = Plant::new(with).unwrap().line_stream(1).collect();
    let clean: Vec<_> = Plant::new(without).unwrap().line_stream(1).collect();
    assert_eq!(line.len(), clean.len());
    let mut contaminated = 0;
    for (dirty, clean) in readings(&line).zip(readings(&clean)) {
        assert_eq!(dirty.ts_ms, clean.ts_ms);
        // The process is evaluated at the grid time of the reading's step.
        let step_ts = dirty.ts_ms - (dirty.ts_ms - DEFAULT_START_TS_MS) % 1_000;
        let ramp = contamination_ramp(step_ts, event.start_ms, event.end_ms);
        if dirty.kind != SensorKind::Enose || ramp == 0.0 {
            assert_eq!(dirty, clean);
            continue;
        }
        if ramp < 1.0 {
            continue;
        }
        contaminated += 1;
        for &channel in &responding {
            let sigma = ENOSE_NOISE_RELATIVE * clean.values[channel];
            let rise = (dirty.values[channel] - clean.values[channel]) / sigma;
            assert!(
                rise >= 10.0,
                "channel {channel} rose by only {rise:.1} sigma"
            );
        }
    }
    assert!(
        contaminated >= 2 * 140,
        "{contaminated} contaminated readings"
    );
}

#[test]
fn explicit_events_are_checked_against_the_plant() {
    let spec = |line: &str, batch: u32, sensor: Option<&str>| EventSpec {
        class: EventClass::Stuck,
        line: line.into(),
        batch,
        sensor: sensor.map(Into::into),
        contaminant: None,
        start_offset_ms: Some(200_000),
        duration_ms: Some(60_000),
    };
    let plan = |specs| SimConfig {
        events: EventPlan::Explicit(specs),
        ..small(10)
    };
    assert!(Plant::new(plan(vec![spec("L1", 2, Some("ph-1"))])).is_ok());
    for (specs, index) in [
        (vec![spec("L1", 99, None)], 0),
        (vec![spec("L1", 2, Some("sonar-1"))], 0),
        (vec![spec("L1", 2, None), spec("L1", 2, None)], 1),
    ] {
        match Plant::new(plan(specs)) {
            Err(SimError::Event { index: bad, .. }) => assert_eq!(bad, index),
            other => panic!("expected an event error, got {other:?}"),
        }
    }
    let mut late = spec("L1", 2, None);
    late.start_offset_ms = Some(590_000);
    assert!(matches!(
        Plant::new(plan(vec![late])),
        Err(SimError::Event { .. })
    ));
}

/// The decisive test of the ground truth: the foundation detectors and
/// verdict policy, run over the simulated readings, decide exactly what
/// the ground truth expects, for every batch and every event class.
#[test]
fn the_foundation_rules_decide_what_the_ground_truth_expects() {
    let config = SimConfig {
        seed: 11,
        duration_ms: 4 * 3_600_000,
        events: EventPlan::Auto(AutoEvents {
            batch_fraction: 0.6,
            ..AutoEvents::default()
        }),
        ..SimConfig::default()
    };
    let plant = Plant::new(config).unwrap();
    let truth = plant.ground_truth();
    let kinds: std::collections::BTreeSet<_> = truth
        .events
        .iter()
        .map(|event| (event.kind, event.mode))
        .collect();
    assert_eq!(kinds.len(), 5, "every class must be exercised: {kinds:?}");

    let detector = RollingAnomalyConfig::default();
    let mut monitors: BTreeMap<String, SensorMonitor> = BTreeMap::new();
    let mut evidence: BTreeMap<String, Vec<BatchEvidence>> = BTreeMap::new();
    let mut anomalies = Vec::new();
    for record in plant.merged_stream() {
        match record {
            SimRecord::Reading(reading) => {
                monitors.entry(reading.key()).or_default().observe(
                    &reading,
                    &detector,
                    &mut anomalies,
                );
                for anomaly in anomalies.drain(..) {
                    if let Some(batch) = anomaly.batch.clone() {
                        evidence
                            .entry(batch)
                            .or_default()
                            .push(BatchEvidence::Anomaly(anomaly));
                    }
                }
            }
            SimRecord::Batch(event) => evidence
                .entry(event.batch.clone())
                .or_default()
                .push(BatchEvidence::Lifecycle(event)),
            SimRecord::Malformed { .. } => {}
        }
    }
    let policy = VerdictPolicy::default();
    let mut mismatches = Vec::new();
    for batch in &truth.batches {
        let items: Vec<&BatchEvidence> = evidence[&batch.batch].iter().collect();
        let action = decide(&batch.line, &batch.batch, &items, &policy).unwrap();
        let mut reasons: Vec<ExpectedReason> = action
            .reasons
            .iter()
            .map(|reason| ExpectedReason {
                sensor: reason.sensor.clone(),
                rule: reason.rule,
            })
            .collect();
        reasons.sort();
        if action.decision != Some(batch.expected_decision) || reasons != batch.expected_reasons {
            mismatches.push(format!(
                "{} (events {:?}): decided {:?} {:?}, expected {:?} {:?}",
                batch.batch,
                batch.events,
                action.decision,
                reasons,
                batch.expected_decision,
                batch.expected_reasons
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn write_jsonl_writes_the_wire_bytes_and_the_truth() {
    let plant = Plant::new(SimConfig {
        duration_ms: 20 * 60_000,
        ..small(12)
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let summary = write_jsonl(&plant, dir.path()).unwrap();
    assert_eq!(summary.readings, plant.reading_count());
    assert_eq!(summary.malformed, 20);
    let text = std::fs::read_to_string(dir.path().join("readings.jsonl")).unwrap();
    let limits = DecodeLimits::default();
    let first: Vec<Reading> = plant
        .merged_stream()
        .filter_map(|record| match record {
            SimRecord::Reading(reading) => Some(reading),
            _ => None,
        })
        .take(100)
        .collect();
    for (line, reading) in text.lines().zip(&first) {
        assert_eq!(&decode_reading(line.as_bytes(), &limits).unwrap(), reading);
    }
    assert_eq!(text.lines().count() as u64, summary.readings);
    let malformed = std::fs::read_to_string(dir.path().join("malformed.jsonl")).unwrap();
    let first_malformed: serde_json::Value =
        serde_json::from_str(malformed.lines().next().unwrap()).unwrap();
    let payload = decode_hex(first_malformed["payload_hex"].as_str().unwrap()).unwrap();
    assert_eq!(payload, plant.ground_truth().malformed[0].payload);
    let truth: GroundTruth =
        serde_json::from_slice(&std::fs::read(dir.path().join("ground-truth.json")).unwrap())
            .unwrap();
    assert_eq!(&truth, plant.ground_truth());
}
