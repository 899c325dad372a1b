//! Tests of the simulator as a whole: determinism, stream invariants,
//! ground truth, malformed records, and agreement with the foundation
//! detector and verdict policy.

use super::physics::{contamination_ramp, Contaminant, ENOSE_NOISE_RELATIVE};
use super::*;
use scent_operators::batch_verdict::VerdictPolicy;
use scent_operators::model::{Anomaly, AnomalyRule, Decision, RejectReason, SensorKind};
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
    let (drifts, events): (Vec<&LabelledEvent>, Vec<&LabelledEvent>) = truth
        .events
        .iter()
        .partition(|event| event.kind == EventKind::SensorDrift);
    assert_eq!(drifts.len(), 1, "one drifting array by default");
    let eligible = truth.batches.len() - 2 * 3;
    assert!(
        events.len() * 4 >= eligible - 12 && events.len() * 4 <= eligible + 12,
        "{} events for {eligible} eligible batches",
        events.len()
    );
    let mut per_kind: BTreeMap<(EventKind, Option<FaultMode>), usize> = BTreeMap::new();
    let mut per_line: BTreeMap<&str, usize> = BTreeMap::new();
    for event in events {
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
        rate_pct_per_hour: None,
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
        rate_pct_per_hour: None,
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

/// The foundation detectors' anomalies on the readings of every batch.
fn foundation_anomalies(plant: &Plant) -> BTreeMap<String, Vec<Anomaly>> {
    let detector = RollingAnomalyConfig::default();
    let mut monitors: BTreeMap<String, SensorMonitor> = BTreeMap::new();
    let mut per_batch: BTreeMap<String, Vec<Anomaly>> = BTreeMap::new();
    let mut anomalies = Vec::new();
    for record in plant.merged_stream() {
        if let SimRecord::Reading(reading) = record {
            monitors
                .entry(reading.key())
                .or_default()
                .observe(&reading, &detector, &mut anomalies);
            for anomaly in anomalies.drain(..) {
                if let Some(batch) = anomaly.batch.clone() {
                    per_batch.entry(batch).or_default().push(anomaly);
                }
            }
        }
    }
    per_batch
}

/// A reference reading of the foundation findings of one batch, aware of
/// instruments. A `(sensor, rule)` counts when it fires at least the
/// default verdict policy's minimum; of those, a flat line or gap on a
/// sensor with a sibling of its kind on the line is a repair (the sibling
/// keeps the product monitored), and z-score outliers that are all
/// isolated (no two consecutive samples) are instrument spikes; the rest
/// hold the batch.
fn instrument_aware_reasons(
    anomalies: &[Anomaly],
    kinds: &BTreeMap<String, SensorKind>,
) -> Vec<ExpectedReason> {
    let policy = VerdictPolicy::default();
    let mut seqs: BTreeMap<(&str, AnomalyRule), Vec<u64>> = BTreeMap::new();
    for anomaly in anomalies {
        seqs.entry((anomaly.sensor.as_str(), anomaly.rule))
            .or_default()
            .push(anomaly.seq);
    }
    let siblings = |sensor: &str| {
        let kind = kinds[sensor];
        kinds.values().filter(|other| **other == kind).count() > 1
    };
    seqs.into_iter()
        .filter(|((_, rule), seqs)| {
            let minimum = match rule {
                AnomalyRule::ZScore => policy.min_zscore_count,
                AnomalyRule::FlatLine => policy.min_flat_line_count,
                AnomalyRule::Gap => policy.min_gap_count,
                _ => 1,
            };
            seqs.len() as u64 >= minimum
        })
        .filter(|((sensor, rule), seqs)| match rule {
            AnomalyRule::FlatLine | AnomalyRule::Gap => !siblings(sensor),
            AnomalyRule::ZScore => {
                let mut seqs = seqs.clone();
                seqs.sort_unstable();
                seqs.dedup();
                seqs.windows(2).any(|pair| pair[1] == pair[0] + 1)
            }
            _ => true,
        })
        .map(|((sensor, rule), _)| ExpectedReason {
            sensor: sensor.to_owned(),
            rule,
        })
        .collect()
}

/// The decisive test of the ground truth: the foundation detectors, run
/// over the simulated readings and read with the instrument-aware
/// reference above, decide exactly what the ground truth expects for every
/// batch and event class (the persistent sensor drift included, which must
/// hold nothing), and find the evidence every expected repair or
/// inspection rests on.
#[test]
fn the_foundation_rules_decide_what_the_ground_truth_expects() {
    let config = SimConfig {
        seed: 11,
        duration_ms: 4 * 3_600_000,
        events: EventPlan::Auto(AutoEvents {
            batch_fraction: 0.6,
            drifting_sensors: 2,
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
    assert_eq!(kinds.len(), 6, "every class must be exercised: {kinds:?}");
    assert!(truth
        .batches
        .iter()
        .any(|batch| batch.expected_decision == Decision::Hold));

    let anomalies = foundation_anomalies(&plant);
    let none = Vec::new();
    let sensor_kinds: BTreeMap<String, SensorKind> = plant
        .reading_at(0, 0, 0)
        .into_iter()
        .chain((1..plant.sensor_names().len()).filter_map(|s| plant.reading_at(0, s, 0)))
        .map(|reading| (reading.sensor, reading.kind))
        .collect();
    assert_eq!(sensor_kinds.len(), 7);
    let mut mismatches = Vec::new();
    for batch in &truth.batches {
        let found = anomalies.get(&batch.batch).unwrap_or(&none);
        let reasons = instrument_aware_reasons(found, &sensor_kinds);
        let decision = if reasons.is_empty() {
            Decision::Release
        } else {
            Decision::Hold
        };
        if decision != batch.expected_decision || reasons != batch.expected_reasons {
            mismatches.push(format!(
                "{} (events {:?}): decided {decision:?} {reasons:?}, expected {:?} {:?}",
                batch.batch, batch.events, batch.expected_decision, batch.expected_reasons
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));

    // Every repair or inspection rests on a finding of the detectors on
    // that sensor in the event's batch.
    let events: BTreeMap<&str, &LabelledEvent> =
        truth.events.iter().map(|e| (e.id.as_str(), e)).collect();
    for item in &truth.maintenance {
        let rule = match item.kind {
            MaintenanceKind::Repair => match events[item.event.as_str()].mode {
                Some(FaultMode::Stuck) => AnomalyRule::FlatLine,
                _ => AnomalyRule::Gap,
            },
            MaintenanceKind::Inspect => AnomalyRule::ZScore,
            MaintenanceKind::Calibrate => continue,
        };
        let batch = &events[item.event.as_str()].batch;
        assert!(
            anomalies[batch]
                .iter()
                .any(|a| a.sensor == item.sensor && a.rule == rule),
            "{item:?}: no {rule} on {} in {batch}",
            item.sensor
        );
    }
}

/// A plant with one explicit event per case of the decision table.
fn table_plant(enose_per_line: usize, specs: Vec<(EventClass, &str, u32, Option<&str>)>) -> Plant {
    let specs = specs
        .into_iter()
        .map(|(class, line, batch, sensor)| EventSpec {
            class,
            line: line.into(),
            batch,
            sensor: sensor.map(Into::into),
            contaminant: None,
            start_offset_ms: None,
            duration_ms: None,
            rate_pct_per_hour: None,
        })
        .collect();
    Plant::new(SimConfig {
        enose_per_line,
        duration_ms: 3_600_000,
        events: EventPlan::Explicit(specs),
        ..small(13)
    })
    .unwrap()
}

#[test]
fn instrument_faults_lead_to_maintenance_and_hold_only_unmonitored_batches() {
    use EventClass::*;
    let plant = table_plant(
        2,
        vec![
            (Stuck, "L1", 2, Some("enose-1")),
            (Dropout, "L1", 3, Some("enose-2")),
            (Stuck, "L2", 2, Some("ph-1")),
            (Dropout, "L2", 3, Some("temperature-1")),
            (Spike, "L3", 2, Some("humidity-1")),
            (Spike, "L3", 3, Some("enose-2")),
            (Contamination, "L1", 4, None),
            (ProcessDrift, "L2", 1, None),
            (SensorDrift, "L3", 1, Some("enose-1")),
        ],
    );
    let truth = plant.ground_truth();
    let batch = |id: &str| truth.batches.iter().find(|b| b.batch == id).unwrap();
    let reasons = |id: &str| {
        batch(id)
            .expected_reasons
            .iter()
            .map(|r| format!("{}:{}", r.sensor, r.rule))
            .collect::<Vec<_>>()
    };
    for released in [
        "B-L1-0002",
        "B-L1-0003",
        "B-L3-0002",
        "B-L3-0003",
        "B-L2-0001",
        "B-L3-0001",
    ] {
        assert_eq!(
            batch(released).expected_decision,
            Decision::Release,
            "{released}"
        );
        assert!(reasons(released).is_empty(), "{released}");
        assert_eq!(batch(released).events.len(), 1, "{released}");
    }
    assert_eq!(batch("B-L2-0002").expected_decision, Decision::Hold);
    assert_eq!(reasons("B-L2-0002"), ["ph-1:flat_line"]);
    assert_eq!(batch("B-L2-0003").expected_decision, Decision::Hold);
    assert_eq!(reasons("B-L2-0003"), ["temperature-1:gap"]);
    assert_eq!(batch("B-L1-0004").expected_decision, Decision::Hold);
    assert_eq!(reasons("B-L1-0004"), ["enose-1:zscore", "enose-2:zscore"]);
    let held = truth
        .batches
        .iter()
        .filter(|b| b.expected_decision == Decision::Hold)
        .count();
    assert_eq!(held, 3);

    let maintenance: Vec<(String, MaintenanceKind)> = truth
        .maintenance
        .iter()
        .map(|m| (format!("{}/{}", m.line, m.sensor), m.kind))
        .collect();
    let mut sorted = maintenance.clone();
    sorted.sort();
    use MaintenanceKind::*;
    assert_eq!(
        sorted,
        [
            ("L1/enose-1".to_owned(), Repair),
            ("L1/enose-2".to_owned(), Repair),
            ("L2/ph-1".to_owned(), Repair),
            ("L2/temperature-1".to_owned(), Repair),
            ("L3/enose-1".to_owned(), Calibrate),
            ("L3/enose-2".to_owned(), Inspect),
            ("L3/humidity-1".to_owned(), Inspect),
        ]
    );
    assert!(truth
        .maintenance
        .windows(2)
        .all(|pair| pair[0].due_ms <= pair[1].due_ms));
    for item in &truth.maintenance {
        let event = truth.events.iter().find(|e| e.id == item.event).unwrap();
        assert_eq!(
            (&event.line, event.sensor.as_ref()),
            (&item.line, Some(&item.sensor))
        );
        if item.kind != Calibrate {
            assert_eq!(item.due_ms, event.start_ms, "{item:?}");
        }
        // The window is a gap between batches of the line, at or after the
        // due time; there is none when the run ends first.
        let (Some(start), Some(end)) = (item.window_start_ms, item.window_end_ms) else {
            assert!(item.due_ms >= plant.end_ts_ms(), "{item:?}");
            continue;
        };
        assert!(start >= item.due_ms && start < end, "{item:?}");
        assert!(!truth
            .batches
            .iter()
            .any(|b| b.line == item.line && b.start_ms < end && start < b.end_ms));
    }

    // With one e-nose array per line, a stuck array leaves the product
    // unmonitored: hold and repair.
    let plant = table_plant(1, vec![(Stuck, "L1", 2, Some("enose-1"))]);
    let truth = plant.ground_truth();
    let batch = truth
        .batches
        .iter()
        .find(|b| b.batch == "B-L1-0002")
        .unwrap();
    assert_eq!(batch.expected_decision, Decision::Hold);
    assert_eq!(batch.expected_reasons[0].rule, AnomalyRule::FlatLine);
    assert_eq!(truth.maintenance.len(), 1);
    assert_eq!(truth.maintenance[0].kind, Repair);
}

/// Mean over channels and samples of the readings of `sensor` taken 20..25 s
/// after each batch end of `line` (clean air: the aroma has decayed by
/// e^-8, and the next product's aroma starts 30 s later), with the hour of
/// each gap since the start of the run.
fn clean_air_levels(
    records: &[SimRecord],
    truth: &GroundTruth,
    line: &str,
    sensor: &str,
) -> Vec<(i64, Vec<f64>)> {
    truth
        .batches
        .iter()
        .filter(|batch| batch.line == line)
        .map(|batch| {
            let window = batch.end_ms + 20_000..batch.end_ms + 25_000;
            let values: Vec<f64> = readings(records)
                .filter(|r| r.sensor == sensor && window.contains(&r.ts_ms))
                .flat_map(|r| r.values.iter().copied())
                .collect();
            (batch.end_ms, values)
        })
        .filter(|(_, values)| !values.is_empty())
        .collect()
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    sxy / sxx
}

fn drift_only(seed: u64, drifting_sensors: usize, duration_ms: i64) -> SimConfig {
    SimConfig {
        seed,
        duration_ms,
        events: EventPlan::Auto(AutoEvents {
            batch_fraction: 0.0,
            drifting_sensors,
            ..AutoEvents::default()
        }),
        ..SimConfig::default()
    }
}

#[test]
fn a_sensor_drift_raises_the_clean_air_baseline_of_its_array_only() {
    let hours = 4;
    let with = Plant::new(drift_only(14, 1, hours * 3_600_000)).unwrap();
    let without = Plant::new(drift_only(14, 0, hours * 3_600_000)).unwrap();
    let truth = with.ground_truth();
    let [drift] = truth.events.as_slice() else {
        panic!("one drift expected: {:?}", truth.events);
    };
    assert_eq!(drift.kind, EventKind::SensorDrift);
    assert!(without.ground_truth().events.is_empty());
    let rate = drift.rate_pct_per_hour.unwrap();
    assert!((0.6..1.2).contains(&rate), "{rate}");
    assert_eq!(drift.end_ms, with.end_ts_ms());
    let start = with.config().start_ts_ms;
    assert!(drift.start_ms - start <= hours * 3_600_000 / 3);
    let sensor = drift.sensor.clone().unwrap();
    assert!(sensor.starts_with("enose-"));
    let line = with
        .line_names()
        .iter()
        .position(|name| *name == drift.line)
        .unwrap();

    let drifting: Vec<SimRecord> = with.line_stream(line).collect();
    let clean: Vec<SimRecord> = without.line_stream(line).collect();
    assert_eq!(drifting.len(), clean.len());
    // Other sensors, and the drifting array before the start, are untouched.
    let mut after_start = 0;
    for (a, b) in readings(&drifting).zip(readings(&clean)) {
        if a.sensor != sensor || a.ts_ms - (a.ts_ms - start) % 1_000 <= drift.start_ms {
            assert_eq!(a, b);
        } else {
            after_start += 1;
            assert!(a.values.iter().zip(&b.values).all(|(x, y)| x >= y));
        }
    }
    assert!(after_start > 3_600, "{after_start}");
    for other in with
        .line_names()
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != line)
    {
        let a: Vec<_> = with.line_stream(other.0).take(20_000).collect();
        let b: Vec<_> = without.line_stream(other.0).take(20_000).collect();
        assert_eq!(a, b, "line {}", other.1);
    }

    // In clean air the array reads its baseline: the ratio to the same
    // readings without drift is 1 + s·h_s, up to the channels' own slow
    // drift (|d_c·h| < 0.4 %) and rounding.
    let gaps_with = clean_air_levels(&drifting, truth, &drift.line, &sensor);
    let gaps_without = clean_air_levels(&clean, without.ground_truth(), &drift.line, &sensor);
    assert_eq!(gaps_with.len(), gaps_without.len());
    let mut checked = 0;
    for ((end_ms, a), (_, b)) in gaps_with.iter().zip(&gaps_without) {
        let ratio = mean(&a.iter().zip(b).map(|(x, y)| x / y).collect::<Vec<_>>());
        let expected = rate / 100.0 * (end_ms + 22_500 - drift.start_ms).max(0) as f64 / 3.6e6;
        assert!(
            (ratio - 1.0 - expected).abs() <= 0.005 * expected + 2e-4,
            "gap after {end_ms}: rise {:.5}, expected {expected:.5}",
            ratio - 1.0
        );
        checked += usize::from(*end_ms > drift.start_ms);
    }
    assert!(checked >= 10, "{checked} gaps after the drift start");

    // Measured from the readings alone: the clean-air level of the
    // drifting array rises at about the drift rate (relative to its level
    // at the start), the other array's stays nearly flat.
    let relative_slope = |name: &str| {
        let gaps = clean_air_levels(&drifting, truth, &drift.line, name);
        let after: Vec<(f64, f64)> = gaps
            .iter()
            .filter(|(end_ms, _)| *end_ms > drift.start_ms)
            .map(|(end_ms, values)| ((end_ms - drift.start_ms) as f64 / 3.6e6, mean(values)))
            .collect();
        100.0 * slope(&after) / after[0].1
    };
    let measured = relative_slope(&sensor);
    assert!(
        (measured - rate).abs() <= 0.15 * rate,
        "measured {measured:.3} %/h, drawn {rate:.3} %/h"
    );
    let other = if sensor == "enose-1" {
        "enose-2"
    } else {
        "enose-1"
    };
    let other_slope = relative_slope(other);
    assert!(other_slope.abs() < 0.25, "{other}: {other_slope:.3} %/h");

    // The truth: released batches, one calibration due at 1 % of drift.
    assert!(truth
        .batches
        .iter()
        .all(|b| b.expected_decision == Decision::Release));
    let [calibration] = truth.maintenance.as_slice() else {
        panic!("{:?}", truth.maintenance);
    };
    assert_eq!(calibration.kind, MaintenanceKind::Calibrate);
    assert_eq!(calibration.event, drift.id);
    let due = drift.start_ms + (3.6e6 / rate).round() as i64;
    assert_eq!(calibration.due_ms, due);
    // Proposed in the first changeover that ends after the due time.
    let (start, end) = (
        calibration.window_start_ms.unwrap(),
        calibration.window_end_ms.unwrap(),
    );
    assert!(start >= due && end - start <= with.config().changeover_ms);
    let next = truth
        .batches
        .iter()
        .filter(|b| b.line == drift.line && b.start_ms >= end)
        .map(|b| b.start_ms)
        .min();
    assert_eq!(next, Some(end));
    assert!(!truth
        .batches
        .iter()
        .any(|b| b.line == drift.line && b.start_ms < end && start < b.end_ms));
    let labelled = truth
        .batches
        .iter()
        .find(|b| b.batch == drift.batch)
        .unwrap();
    assert!(labelled.end_ms > drift.start_ms);
    assert!(labelled.events.contains(&drift.id));
    assert!(!truth.batches.iter().any(|b| b.line == drift.line
        && b.end_ms > drift.start_ms
        && b.start_ms < labelled.start_ms));
    assert!(drift.describe().contains(&format!(
        "sensor drift (baseline +{rate:.2} %/h) on {}/{sensor}",
        drift.line
    )));
}

#[test]
fn automatic_drifts_are_distinct_spread_and_move_no_other_event() {
    let config = |drifting_sensors| SimConfig {
        duration_ms: 6 * 3_600_000,
        events: EventPlan::Auto(AutoEvents {
            drifting_sensors,
            ..AutoEvents::default()
        }),
        ..small(15)
    };
    let none = Plant::new(config(0)).unwrap();
    let events_of = |plant: &Plant| -> Vec<LabelledEvent> {
        plant
            .ground_truth()
            .events
            .iter()
            .filter(|e| e.kind != EventKind::SensorDrift)
            .cloned()
            .collect()
    };
    for (asked, placed, lines) in [(3, 3, 3), (4, 4, 3), (10, 6, 3)] {
        let plant = Plant::new(config(asked)).unwrap();
        let truth = plant.ground_truth();
        assert_eq!(events_of(&plant), events_of(&none));
        let drifts: Vec<&LabelledEvent> = truth
            .events
            .iter()
            .filter(|e| e.kind == EventKind::SensorDrift)
            .collect();
        assert_eq!(drifts.len(), placed);
        let arrays: std::collections::BTreeSet<(&str, &str)> = drifts
            .iter()
            .map(|d| (d.line.as_str(), d.sensor.as_deref().unwrap()))
            .collect();
        assert_eq!(arrays.len(), placed, "distinct arrays");
        let on_lines: std::collections::BTreeSet<&str> =
            drifts.iter().map(|d| d.line.as_str()).collect();
        assert_eq!(on_lines.len(), lines);
        for drift in &drifts {
            assert!(drift.sensor.as_deref().unwrap().starts_with("enose-"));
            assert!(drift.start_ms - plant.config().start_ts_ms <= 2 * 3_600_000);
            assert!(drift.id.starts_with(&format!("SD-{}-", drift.line)));
        }
        let calibrations = truth
            .maintenance
            .iter()
            .filter(|m| m.kind == MaintenanceKind::Calibrate)
            .count();
        assert_eq!(calibrations, placed);
        // The drifts hold no batch: decisions are those of the plant without.
        let decisions = |plant: &Plant| -> Vec<(String, Decision)> {
            plant
                .ground_truth()
                .batches
                .iter()
                .map(|b| (b.batch.clone(), b.expected_decision))
                .collect()
        };
        assert_eq!(decisions(&plant), decisions(&none));
    }
    assert!(Plant::new(SimConfig {
        events: EventPlan::None,
        ..config(3)
    })
    .unwrap()
    .ground_truth()
    .events
    .is_empty());
    // Same seed, same drifts; another seed, other drifts.
    let again = Plant::new(config(3)).unwrap();
    assert_eq!(
        again.ground_truth(),
        Plant::new(config(3)).unwrap().ground_truth()
    );
    let other = Plant::new(SimConfig {
        seed: 16,
        ..config(3)
    })
    .unwrap();
    assert_ne!(
        other
            .ground_truth()
            .events
            .iter()
            .find(|e| e.kind == EventKind::SensorDrift)
            .map(|e| e.start_ms),
        again
            .ground_truth()
            .events
            .iter()
            .find(|e| e.kind == EventKind::SensorDrift)
            .map(|e| e.start_ms)
    );
}

#[test]
fn explicit_sensor_drifts_parse_and_errors_name_the_key() {
    let plan: EventPlan = serde_json::from_str(
        r#"{"explicit": [{"class": "sensor_drift", "line": "L2", "batch": 2,
            "sensor": "enose-2", "start_offset_ms": 30000, "rate_pct_per_hour": 1.5}]}"#,
    )
    .unwrap();
    let plant = Plant::new(SimConfig {
        events: plan.clone(),
        ..small(17)
    })
    .unwrap();
    let truth = plant.ground_truth();
    let [drift] = truth.events.as_slice() else {
        panic!("{:?}", truth.events);
    };
    let batch = truth
        .batches
        .iter()
        .find(|b| b.batch == "B-L2-0002")
        .unwrap();
    assert_eq!(drift.id, "SD-L2-0001");
    assert_eq!(drift.batch, batch.batch);
    assert_eq!(drift.start_ms, batch.start_ms + 30_000);
    assert_eq!(drift.end_ms, plant.end_ts_ms());
    assert_eq!(drift.rate_pct_per_hour, Some(1.5));
    assert_eq!(truth.maintenance[0].due_ms, drift.start_ms + 2_400_000);
    let json = serde_json::to_string(drift).unwrap();
    assert!(json.contains(r#""kind":"sensor_drift""#), "{json}");
    assert!(json.contains(r#""rate_pct_per_hour":1.5"#), "{json}");
    let json = serde_json::to_string(&truth.maintenance[0]).unwrap();
    assert!(json.contains(r#""kind":"calibrate""#), "{json}");
    let fault = serde_json::to_string(&truth.batches[0]).unwrap();
    assert!(!fault.contains("rate_pct_per_hour"));

    let error = |spec: serde_json::Value| -> (usize, String) {
        let mut specs = vec![serde_json::json!({
            "class": "sensor_drift", "line": "L1", "batch": 2, "sensor": "enose-1"
        })];
        specs.push(spec);
        let events: EventPlan =
            serde_json::from_value(serde_json::json!({ "explicit": specs })).unwrap();
        match Plant::new(SimConfig {
            events,
            ..small(17)
        }) {
            Err(SimError::Event { index, problem }) => (index, problem),
            other => panic!("expected an event error, got {other:?}"),
        }
    };
    let drift = |extra: serde_json::Value| {
        let mut spec = serde_json::json!({"class": "sensor_drift", "line": "L1", "batch": 3});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        spec
    };
    for (extra, key) in [
        (serde_json::json!({}), "`sensor`"),
        (serde_json::json!({"sensor": "ph-1"}), "`sensor`"),
        (serde_json::json!({"sensor": "enose-9"}), "`sensor`"),
        (serde_json::json!({"sensor": "enose-1"}), "`sensor`"),
        (
            serde_json::json!({"sensor": "enose-2", "rate_pct_per_hour": 0.0}),
            "`rate_pct_per_hour`",
        ),
        (
            serde_json::json!({"sensor": "enose-2", "rate_pct_per_hour": 250.0}),
            "`rate_pct_per_hour`",
        ),
        (
            serde_json::json!({"sensor": "enose-2", "start_offset_ms": 600_000}),
            "`start_offset_ms`",
        ),
        (
            serde_json::json!({"sensor": "enose-2", "start_offset_ms": -1}),
            "`start_offset_ms`",
        ),
        (
            serde_json::json!({"sensor": "enose-2", "batch": 99}),
            "`batch`",
        ),
        (
            serde_json::json!({"sensor": "enose-2", "contaminant": "mould"}),
            "`contaminant`",
        ),
    ] {
        let (index, problem) = error(drift(extra.clone()));
        assert_eq!(index, 1, "{extra}");
        assert!(problem.contains(key), "{extra}: {problem}");
    }
    let unknown = serde_json::from_str::<EventPlan>(
        r#"{"explicit": [{"class": "sensor_drift", "line": "L1", "batch": 2, "rate": 1.0}]}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(unknown.contains("rate"), "{unknown}");
    for (auto, key) in [
        (
            AutoEvents {
                classes: vec![EventClass::Stuck, EventClass::SensorDrift],
                ..AutoEvents::default()
            },
            "events.auto.classes",
        ),
        (
            AutoEvents {
                drifting_sensors: 5_000,
                ..AutoEvents::default()
            },
            "events.auto.drifting_sensors",
        ),
    ] {
        let error = SimConfig {
            events: EventPlan::Auto(auto),
            ..small(17)
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(error.contains(key), "{error}");
    }
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
