//! Oracle tests of the quality-control dataflow: its incremental output
//! equals a from-scratch recomputation with the pure kernels (rolling
//! detectors, QARTOD flags gating the exposure cycles, fingerprints fitted
//! on each batch's predecessor, verdicts), for any number of workers and any arrival order
//! within an epoch.

use scent_dataflows::quality_control::{quality_control, QualityControlConfig};
use scent_operators::batch_verdict::{decide, BatchEvidence};
use scent_operators::event_clock::Epoch;
use scent_operators::exposure_cycles::{Cycle, CycleBuilder};
use scent_operators::fingerprint::{cycle_anomalies, FingerprintModel};
use scent_operators::ingest::Ingested;
use scent_operators::model::{
    Action, AnomalyRule, BatchEvent, BatchPhase, Decision, Reading, SensorKind, SourceCoord,
};
use scent_operators::qc_flags::{QcFlag, QcInput, SensorQc};
use scent_operators::rolling_anomaly::RollingAnomalyDetector;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::core::UnorderedInput;
use timely::dataflow::operators::Inspect;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Roughly normal noise: the sum of four uniforms, centred.
    fn noise(&mut self) -> f64 {
        (0..4)
            .map(|_| (self.next() >> 11) as f64 / (1u64 << 53) as f64)
            .sum::<f64>()
            - 2.0
    }
}

const BASE_MS: i64 = 1_795_514_400_000;

/// Sampling rate of the generated sensors.
const READINGS_PER_SECOND: i64 = 4;

/// Two lines, one 8-channel e-nose and one thermometer each, four readings
/// per second for 40 minutes, 5-minute batches with 30 s changeovers, and
/// a handful of injected excursions.
fn plant(seed: u64) -> (Vec<(Epoch, Ingested)>, Vec<BatchEvent>) {
    let mut rng = Rng(seed | 1);
    let mut items = Vec::new();
    let mut events = Vec::new();
    for line in ["L1", "L2"] {
        let mut batch_index = 0;
        let mut t = 0;
        while t + 330 <= 2_400 {
            batch_index += 1;
            let batch = format!("B-{line}-{batch_index}");
            for (phase, at) in [(BatchPhase::Start, t), (BatchPhase::End, t + 300)] {
                events.push(BatchEvent {
                    batch: batch.clone(),
                    line: line.into(),
                    product: "espresso".into(),
                    event: phase,
                    ts_ms: BASE_MS + at * 1_000,
                });
            }
            t += 330;
        }
        for (sensor, kind, channels) in [
            ("enose-1", SensorKind::Enose, 8),
            ("t-1", SensorKind::Temperature, 1),
        ] {
            let excursion_at = 400 + (rng.next() % 1_600) as i64;
            // Four readings per second, so every epoch holds several readings
            // of each sensor and arrival order within an epoch matters.
            for step in 0..(2_400i64 * READINGS_PER_SECOND) {
                let second = step / READINGS_PER_SECOND;
                let cycle = second % 330;
                let batch = (cycle < 300).then(|| format!("B-{line}-{}", second / 330 + 1));
                let mut values: Vec<f64> = (0..channels)
                    .map(|c| 1.0 + c as f64 * 0.1 + 0.005 * rng.noise())
                    .collect();
                if (excursion_at..excursion_at + 20).contains(&second) {
                    values[0] += 0.5;
                }
                let reading = Reading {
                    plant: "p1".into(),
                    line: line.into(),
                    sensor: sensor.into(),
                    kind,
                    ts_ms: BASE_MS + step * 1_000 / READINGS_PER_SECOND + 7,
                    seq: step as u64 + 1,
                    batch: batch.clone(),
                    product: batch.as_ref().map(|_| "espresso".to_owned()),
                    values,
                };
                let epoch = (reading.ts_ms / 1_000) as Epoch;
                items.push((
                    epoch,
                    Ingested::Reading {
                        epoch,
                        reading,
                        source: SourceCoord::default(),
                    },
                ));
            }
        }
    }
    for event in &events {
        let epoch = (event.ts_ms / 1_000) as Epoch;
        items.push((
            epoch,
            Ingested::Batch {
                epoch,
                event: event.clone(),
                source: SourceCoord::default(),
            },
        ));
    }
    (items, events)
}

/// Runs the dataflow on `workers` threads; worker `w` feeds the items with
/// index `i % workers == w`, each epoch's items in the given order.
fn run_dataflow(items: Vec<(Epoch, Ingested)>, workers: usize) -> Vec<Action> {
    let items = Arc::new(items);
    let captured = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&captured);
    timely::execute(timely::Config::process(workers), move |worker| {
        let index = worker.index();
        let peers = worker.peers();
        let sink = Arc::clone(&sink);
        let (mut input, capability) = worker.dataflow::<Epoch, _, _>(|scope| {
            let ((input, capability), ingested) =
                scope.new_unordered_input::<CapacityContainerBuilder<Vec<Ingested>>>();
            let flow = quality_control(ingested, &QualityControlConfig::default());
            flow.actions.inner.inspect(move |(action, _epoch, diff)| {
                assert_eq!(*diff, 1, "no verdict is revised in this input");
                sink.lock().unwrap().push(action.clone());
            });
            (input, capability)
        });
        let mut session = input.activate();
        for (i, (epoch, item)) in items.iter().enumerate() {
            if i % peers == index {
                session
                    .session(&capability.delayed(epoch))
                    .give(item.clone());
            }
        }
        drop(session);
        drop(capability);
    })
    .unwrap();
    let mut actions = captured.lock().unwrap().clone();
    actions.sort();
    actions
}

/// The same decisions computed from scratch with the kernels.
fn oracle(items: &[(Epoch, Ingested)]) -> Vec<Action> {
    let mut readings: Vec<Reading> = items
        .iter()
        .filter_map(|(_, item)| match item {
            Ingested::Reading { reading, .. } => Some(reading.clone()),
            _ => None,
        })
        .collect();
    let config = QualityControlConfig::default();
    let mut detector = RollingAnomalyDetector::new(config.anomaly);
    let mut anomalies = Vec::new();
    detector.process(&mut readings, &mut anomalies);
    anomalies.extend(fingerprint_anomalies(&readings, items, &config));
    let mut evidence: BTreeMap<(String, String), Vec<BatchEvidence>> = BTreeMap::new();
    for anomaly in anomalies {
        if let Some(batch) = anomaly.batch.clone() {
            evidence
                .entry((anomaly.line.clone(), batch))
                .or_default()
                .push(BatchEvidence::Anomaly(anomaly));
        }
    }
    for (_, item) in items {
        if let Ingested::Batch { event, .. } = item {
            evidence
                .entry((event.line.clone(), event.batch.clone()))
                .or_default()
                .push(BatchEvidence::Lifecycle(event.clone()));
        }
    }
    let mut policy = config.verdict.clone();
    policy.rules_version = config.rules_version();
    let mut actions: Vec<Action> = evidence
        .iter()
        .filter_map(|((line, batch), items)| {
            let mut refs: Vec<&BatchEvidence> = items.iter().collect();
            refs.sort();
            decide(line, batch, &refs, &policy)
        })
        .collect();
    actions.sort();
    actions
}

/// Fingerprint anomalies from scratch: every cycle of every batch scored
/// against the model fitted on the cycles of the batch of the same product
/// that started just before it on its line (once that batch has ended).
fn fingerprint_anomalies(
    sorted_readings: &[Reading],
    items: &[(Epoch, Ingested)],
    config: &QualityControlConfig,
) -> Vec<scent_operators::model::Anomaly> {
    // Readings flagged `fail` by the QARTOD tests stay out of cycles; a
    // reading's flags are known once the next reading of its sensor is seen.
    let mut builder = CycleBuilder::new(config.cycles);
    let mut cycles: Vec<Cycle> = Vec::new();
    let mut flaggers: BTreeMap<(String, String), SensorQc> = BTreeMap::new();
    let mut waiting: BTreeMap<(String, String), &Reading> = BTreeMap::new();
    for reading in sorted_readings {
        let key = (reading.line.clone(), reading.sensor.clone());
        let input = QcInput {
            ts_ms: reading.ts_ms,
            seq: reading.seq,
            reference_ts_ms: None,
            values: &reading.values,
        };
        let result = flaggers
            .entry(key.clone())
            .or_default()
            .observe(&input, config.quality.kind(reading.kind));
        if let (Some(previous), Some(result)) = (waiting.insert(key, reading), result) {
            if result.aggregate != QcFlag::Fail {
                builder.observe(previous, &mut cycles);
            }
        }
    }
    let events: Vec<&BatchEvent> = items
        .iter()
        .filter_map(|(_, item)| match item {
            Ingested::Batch { event, .. } => Some(event),
            _ => None,
        })
        .collect();
    let ended = |line: &str, batch: &str| {
        events
            .iter()
            .any(|e| e.event == BatchPhase::End && e.line == line && e.batch == batch)
    };
    let mut starts: Vec<&&BatchEvent> = events
        .iter()
        .filter(|e| e.event == BatchPhase::Start)
        .collect();
    starts.sort_by_key(|e| (e.line.clone(), e.product.clone(), e.ts_ms, e.batch.clone()));
    let mut anomalies = Vec::new();
    for pair in starts.windows(2) {
        let (reference, scored) = (pair[0], pair[1]);
        if reference.line != scored.line
            || reference.product != scored.product
            || !ended(&reference.line, &reference.batch)
        {
            continue;
        }
        let mut sensors: Vec<&str> = cycles.iter().map(|c| c.sensor.as_str()).collect();
        sensors.sort_unstable();
        sensors.dedup();
        for sensor in sensors {
            let of = |batch: &str| -> Vec<&Cycle> {
                cycles
                    .iter()
                    .filter(|c| c.line == scored.line && c.sensor == sensor && c.batch == batch)
                    .collect()
            };
            let Ok(model) = FingerprintModel::fit(
                &scored.line,
                sensor,
                &scored.product,
                &of(&reference.batch),
                &config.fingerprint,
            ) else {
                continue;
            };
            for cycle in of(&scored.batch) {
                let score = model
                    .score(
                        &cycle.values,
                        &config.fingerprint.contaminants,
                        config.fingerprint.min_match,
                    )
                    .unwrap();
                anomalies.extend(cycle_anomalies(
                    cycle,
                    &model,
                    &score,
                    config.fingerprint.min_match,
                ));
            }
        }
    }
    anomalies
}

#[test]
fn incremental_output_equals_the_oracle_for_one_and_three_workers() {
    let (items, events) = plant(42);
    let expected = oracle(&items);
    let batches = events.iter().filter(|e| e.event == BatchPhase::End).count();
    assert_eq!(expected.len(), batches, "every batch is decided once");
    let held = expected
        .iter()
        .filter(|a| a.decision == Some(Decision::Hold))
        .count();
    assert!(
        held >= 2,
        "the injected excursions hold some batches ({held})"
    );
    assert!(held < batches, "and clean batches are released");
    let fingerprint_holds = expected
        .iter()
        .filter(|a| {
            a.reasons
                .iter()
                .any(|r| matches!(r.rule, AnomalyRule::Spe | AnomalyRule::HotellingT2))
        })
        .count();
    assert!(
        fingerprint_holds >= 1,
        "the fingerprint path holds some batches too ({fingerprint_holds})"
    );
    assert_eq!(run_dataflow(items.clone(), 1), expected);
    assert_eq!(run_dataflow(items, 3), expected);
}

#[test]
fn arrival_order_within_an_epoch_does_not_matter() {
    let (mut items, _) = plant(7);
    let expected = run_dataflow(items.clone(), 2);
    // Reverse the order of arrival inside every epoch.
    items.sort_by_key(|(epoch, _)| *epoch);
    let mut shuffled = Vec::with_capacity(items.len());
    let mut start = 0;
    while start < items.len() {
        let end = start
            + items[start..]
                .iter()
                .take_while(|(e, _)| *e == items[start].0)
                .count();
        shuffled.extend(items[start..end].iter().rev().cloned());
        start = end;
    }
    assert_eq!(run_dataflow(shuffled, 2), expected);
    assert_eq!(oracle(&items), expected);
}

/// Evidence that arrives after a batch was decided (readings stamped for a
/// batch by a gateway whose clock runs behind) revises the decision: each
/// new anomaly changes the evidence, so the action collection retracts the
/// previous action and adds a new one, with a new id, until the third
/// anomaly turns the release into a hold. The epoch sink passes on the
/// additions only.
#[test]
fn late_evidence_revises_a_decision_and_the_sink_reports_only_additions() {
    use scent_operators::epoch_sink::{EpochOutput, EpochSink};
    use scent_operators::source_progress::SourceAdvance;

    let reading = |seq: u64, second: i64, value: f64| {
        let reading = Reading {
            plant: "p1".into(),
            line: "L1".into(),
            sensor: "t-1".into(),
            kind: SensorKind::Temperature,
            ts_ms: BASE_MS + second * 1_000,
            seq,
            batch: Some("B-1".into()),
            product: Some("espresso".into()),
            values: vec![value],
        };
        let epoch = (reading.ts_ms / 1_000) as Epoch;
        (
            epoch,
            Ingested::Reading {
                epoch,
                reading,
                source: SourceCoord::default(),
            },
        )
    };
    let event = |phase: BatchPhase, second: i64| {
        let event = BatchEvent {
            batch: "B-1".into(),
            line: "L1".into(),
            product: "espresso".into(),
            event: phase,
            ts_ms: BASE_MS + second * 1_000,
        };
        let epoch = (event.ts_ms / 1_000) as Epoch;
        (
            epoch,
            Ingested::Batch {
                epoch,
                event,
                source: SourceCoord::default(),
            },
        )
    };
    let mut rng = Rng(99);
    let mut items = vec![event(BatchPhase::Start, 0)];
    items.extend((0..60).map(|s| reading(s as u64 + 1, s, 90.0 + 0.05 * rng.noise())));
    items.push(event(BatchPhase::End, 60));
    // Three spikes tagged with the batch, stamped after its end.
    items.extend((0..3).map(|i| reading(61 + i as u64, 62 + i, 120.0)));

    let captured = Arc::new(Mutex::new((Vec::new(), Vec::new())));
    let sink = Arc::clone(&captured);
    timely::execute(timely::Config::process(1), move |worker| {
        let sink = Arc::clone(&sink);
        let (mut input, capability) = worker.dataflow::<Epoch, _, _>(|scope| {
            let ((input, capability), ingested) =
                scope.new_unordered_input::<CapacityContainerBuilder<Vec<Ingested>>>();
            let flow = quality_control(ingested, &QualityControlConfig::default());
            let changes = Arc::clone(&sink);
            flow.actions
                .inner
                .clone()
                .inspect(move |(action, _, diff)| {
                    changes.lock().unwrap().0.push((action.decision, *diff))
                });
            let emitted = Arc::clone(&sink);
            let no_advances = timely::dataflow::operators::vec::ToStream::to_stream(
                Vec::<SourceAdvance>::new(),
                scope,
            );
            flow.actions.epoch_sink(
                flow.dead_letters,
                no_advances,
                move |output: EpochOutput| {
                    emitted.lock().unwrap().1.extend(output.actions);
                },
            );
            (input, capability)
        });
        let mut session = input.activate();
        for (epoch, item) in &items {
            session
                .session(&capability.delayed(epoch))
                .give(item.clone());
        }
    })
    .unwrap();
    let (changes, emitted) = captured.lock().unwrap().clone();
    let net: isize = changes.iter().map(|(_, diff)| diff).sum();
    assert_eq!(net, 1, "one decision stands: {changes:?}");
    assert_eq!(changes.iter().filter(|(_, diff)| *diff < 0).count(), 3);
    let decisions: Vec<_> = emitted.iter().map(|a| a.decision).collect();
    assert_eq!(
        decisions,
        vec![
            Some(Decision::Release),
            Some(Decision::Release),
            Some(Decision::Release),
            Some(Decision::Hold)
        ]
    );
    let anomalies: Vec<_> = emitted.iter().map(|a| a.evidence.anomalies).collect();
    assert_eq!(anomalies, vec![0, 1, 2, 3]);
    let mut ids: Vec<_> = emitted.iter().map(|a| &a.action_id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 4, "every revision has its own id");
}
