//! Oracle tests of the quality-control dataflow: its incremental output
//! equals a from-scratch recomputation with the pure kernels (rolling
//! detectors, QARTOD flags gating the exposure cycles, fingerprints fitted
//! on each batch's predecessor, contaminants matched against the shared
//! library, the quality and maintenance agents, the orchestrator's
//! consensus, input spans), for any number of workers and any arrival
//! order within an epoch; and the action changelog turns late evidence
//! into superseding revisions until the batch seals.
//!
//! The library is the configured signatures plus the learned ones, which
//! arrive as model records (`contaminant/<name>` on the models topic).
//! The oracle gives every batch the library in force when it seals: the
//! latest learned signature of each name read by then. So the tests prove
//! knowledge sharing end to end: a signature learned at startup names the
//! plant's excursions (which nothing configured names); one learned mid-run
//! names them in every line's batches still open, leaves sealed decisions
//! as they were (the changelog refuses the change), and a later record of
//! the same name replaces it, withdrawing the line holds it caused in
//! batches still open.

use scent_dataflows::quality_control::{quality_control, QualityControlConfig};
use scent_operators::action_changelog::{ChangelogConfig, LateRevision};
use scent_operators::consensus::{
    hold_line_action, maintenance_action, release_action, BatchFacts,
};
use scent_operators::event_clock::Epoch;
use scent_operators::exposure_cycles::{Cycle, CycleBuilder};
use scent_operators::fingerprint::{cycle_anomalies, ContaminantSignature, FingerprintModel};
use scent_operators::ingest::Ingested;
use scent_operators::maintenance_agent::{assess_maintenance, MaintenanceInputs, SensorPresence};
use scent_operators::model::{
    Action, ActionKind, ActionSubject, Anomaly, AnomalyRule, BatchEvent, BatchPhase, Decision,
    InputSpan, Reading, SensorKind, SourceCoord,
};
use scent_operators::model_registry::{ModelContent, ModelRecord};
use scent_operators::qc_flags::{QcFlag, QcInput, SensorQc};
use scent_operators::quality_agent::{assess_quality, critical_onset};
use scent_operators::rolling_anomaly::RollingAnomalyDetector;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::core::UnorderedInput;
use timely::dataflow::operators::Inspect;

/// Batches seal two seconds of event time after their end (one-second
/// epochs).
const CHANGELOG: ChangelogConfig = ChangelogConfig {
    seal_after_ms: 2_000,
    epoch_ms: 1_000,
};

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
/// a handful of injected excursions: 20 s of +0.5 on channel 0 of every
/// sensor, at a random second of each.
fn plant(seed: u64) -> (Vec<(Epoch, Ingested)>, Vec<BatchEvent>) {
    plant_with(seed, &[])
}

/// [`plant`] with more e-nose excursions, `(line, second)`, on top of the
/// random ones (which stay where the seed puts them).
fn plant_with(
    seed: u64,
    enose_excursions: &[(&str, i64)],
) -> (Vec<(Epoch, Ingested)>, Vec<BatchEvent>) {
    let mut rng = Rng(seed | 1);
    let mut items = Vec::new();
    let mut events = Vec::new();
    let mut offsets: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    let mut source = |topic: &'static str, partition: i32| {
        let offset = offsets.entry((topic, partition)).or_default();
        *offset += 1;
        SourceCoord {
            topic: topic.into(),
            partition,
            offset: *offset - 1,
        }
    };
    for (partition, line) in ["L1", "L2"].into_iter().enumerate() {
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
            let mut excursions = vec![400 + (rng.next() % 1_600) as i64];
            if kind == SensorKind::Enose {
                excursions.extend(
                    enose_excursions
                        .iter()
                        .filter(|(at_line, _)| *at_line == line)
                        .map(|(_, second)| *second),
                );
            }
            // Four readings per second, so every epoch holds several readings
            // of each sensor and arrival order within an epoch matters.
            for step in 0..(2_400i64 * READINGS_PER_SECOND) {
                let second = step / READINGS_PER_SECOND;
                let cycle = second % 330;
                let batch = (cycle < 300).then(|| format!("B-{line}-{}", second / 330 + 1));
                let mut values: Vec<f64> = (0..channels)
                    .map(|c| 1.0 + c as f64 * 0.1 + 0.005 * rng.noise())
                    .collect();
                if excursions
                    .iter()
                    .any(|at| (*at..*at + 20).contains(&second))
                {
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
                        source: source("readings", partition as i32),
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
                source: source("batches", 0),
            },
        ));
    }
    (items, events)
}

/// The name of the contaminant the plant's excursions stand for. The
/// default configuration's library is empty, so only a learned record can
/// name it.
const LEARNED: &str = "degreaser";

/// The signature of [`LEARNED`] as `scent train contaminant` would learn it
/// from one of the plant's excursions: channel 0 reads +50 %, the other
/// channels move by a percent or less.
fn learned_signature() -> ContaminantSignature {
    ContaminantSignature {
        name: LEARNED.into(),
        response: vec![0.5, 0.01, -0.01, 0.0, 0.01, 0.0, -0.01, 0.0],
    }
}

/// A corrected signature of the same name that no excursion of the plant
/// matches: channel 7 instead of channel 0.
fn corrected_signature() -> ContaminantSignature {
    ContaminantSignature {
        name: LEARNED.into(),
        response: vec![0.0, 0.0, 0.01, 0.0, 0.0, 0.0, 0.0, 0.5],
    }
}

/// A learned signature as it arrives from the models topic, read at
/// `epoch` (model records have no event time).
fn model_record(epoch: Epoch, signature: ContaminantSignature, offset: i64) -> (Epoch, Ingested) {
    (
        epoch,
        Ingested::Model {
            epoch,
            record: ModelRecord::contaminant(signature, BASE_MS - 3_600_000),
            source: SourceCoord {
                topic: "models".into(),
                partition: 0,
                offset,
            },
        },
    )
}

/// The epoch of the plant's second `second`.
fn epoch_at(second: i64) -> Epoch {
    ((BASE_MS + second * 1_000) / 1_000) as Epoch
}

/// The epoch at which the changelog seals a batch that ended at `end_ms`.
fn seal_epoch(end_ms: i64) -> Epoch {
    ((end_ms + CHANGELOG.seal_after_ms as i64) / CHANGELOG.epoch_ms as i64) as Epoch
}

/// Every action the dataflow sends, in the order of its epochs.
fn run_dataflow(items: Vec<(Epoch, Ingested)>, workers: usize) -> Vec<(Epoch, Action)> {
    run_dataflow_with_refusals(items, workers).0
}

/// Every action the dataflow sends, in the order of its epochs, and every
/// change the changelog refused because its batch had sealed.
fn run_dataflow_with_refusals(
    items: Vec<(Epoch, Ingested)>,
    workers: usize,
) -> (Vec<(Epoch, Action)>, Vec<LateRevision>) {
    let items = Arc::new(items);
    let captured = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&captured);
    let refusals = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::clone(&refusals);
    timely::execute(timely::Config::process(workers), move |worker| {
        let index = worker.index();
        let peers = worker.peers();
        let sink = Arc::clone(&sink);
        let refused = Arc::clone(&refused);
        let (mut input, capability) = worker.dataflow::<Epoch, _, _>(|scope| {
            let ((input, capability), ingested) =
                scope.new_unordered_input::<CapacityContainerBuilder<Vec<Ingested>>>();
            let flow = quality_control(ingested, &QualityControlConfig::default(), CHANGELOG);
            flow.actions.inner.inspect(move |(action, epoch, diff)| {
                assert_eq!(*diff, 1, "the changelog only inserts");
                sink.lock().unwrap().push((*epoch, action.clone()));
            });
            flow.late_revisions
                .inspect(move |late| refused.lock().unwrap().push(late.clone()));
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
    let mut refused = refusals.lock().unwrap().clone();
    refused.sort();
    (actions, refused)
}

/// Checks the changelog's chains (revisions count up from 1, each names
/// the one before, only the last may be sealed) and returns the last
/// revision of every subject that was not withdrawn, as the collection
/// produced it (revision 1, no predecessor, not sealed, its content id).
fn final_revisions(sent: &[(Epoch, Action)]) -> Vec<Action> {
    let mut chains: BTreeMap<ActionSubject, Vec<&Action>> = BTreeMap::new();
    for (_, action) in sent {
        chains.entry(action.subject()).or_default().push(action);
    }
    let mut last = Vec::new();
    for (subject, chain) in chains {
        for (position, action) in chain.iter().enumerate() {
            assert_eq!(action.revision as usize, position + 1, "{subject:?}");
            let previous = position.checked_sub(1).map(|p| chain[p].action_id.clone());
            assert_eq!(action.supersedes, previous, "{subject:?}");
            assert!(!action.sealed || position + 1 == chain.len(), "{subject:?}");
        }
        let final_revision = chain.last().unwrap();
        if final_revision.withdrawn {
            // Late evidence (or a corrected library) took the finding
            // away: nothing stands for the subject.
            continue;
        }
        if subject.kind == ActionKind::BatchRelease {
            assert!(
                final_revision.sealed,
                "every decided batch seals: {subject:?}"
            );
        }
        last.push(scent_operators::consensus::finish(Action {
            revision: 1,
            supersedes: None,
            sealed: false,
            ..(*final_revision).clone()
        }));
    }
    last.sort();
    last
}

/// The same decisions computed from scratch with the kernels: for every
/// batch its release decision, its line hold and its maintenance orders.
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
    let (fingerprint, models) = fingerprint_anomalies(&readings, items, &config);
    anomalies.extend(fingerprint);

    let mut policy = config.verdict.clone();
    policy.rules_version = config.rules_version();
    let key = |line: &str, batch: &str| (line.to_owned(), batch.to_owned());
    let mut by_batch: BTreeMap<(String, String), Vec<&Anomaly>> = BTreeMap::new();
    for anomaly in &anomalies {
        if let Some(batch) = &anomaly.batch {
            by_batch
                .entry(key(&anomaly.line, batch))
                .or_default()
                .push(anomaly);
        }
    }
    let mut present: BTreeMap<(String, String), BTreeSet<SensorPresence>> = BTreeMap::new();
    for reading in &readings {
        if let Some(batch) = &reading.batch {
            present
                .entry(key(&reading.line, batch))
                .or_default()
                .insert(SensorPresence {
                    line: reading.line.clone(),
                    batch: batch.clone(),
                    sensor: reading.sensor.clone(),
                    kind: reading.kind,
                });
        }
    }
    let mut spans: BTreeMap<(String, String), BTreeMap<(String, i32), InputSpan>> = BTreeMap::new();
    let mut lifecycle: BTreeMap<(String, String), Vec<&BatchEvent>> = BTreeMap::new();
    for (_, item) in items {
        let (line, batch, source) = match item {
            Ingested::Reading {
                reading, source, ..
            } => match &reading.batch {
                Some(batch) => (&reading.line, batch, source),
                None => continue,
            },
            Ingested::Batch { event, source, .. } => {
                lifecycle
                    .entry(key(&event.line, &event.batch))
                    .or_default()
                    .push(event);
                (&event.line, &event.batch, source)
            }
            _ => continue,
        };
        let span = spans
            .entry(key(line, batch))
            .or_default()
            .entry((source.topic.clone(), source.partition))
            .or_insert(InputSpan {
                topic: source.topic.clone(),
                partition: source.partition,
                first_offset: source.offset,
                last_offset: source.offset,
                records: 0,
            });
        span.first_offset = span.first_offset.min(source.offset);
        span.last_offset = span.last_offset.max(source.offset);
        span.records += 1;
    }

    let mut actions = Vec::new();
    for ((line, batch), events) in &lifecycle {
        let earliest = |phase| {
            events
                .iter()
                .filter(|e| e.event == phase)
                .min_by_key(|e| e.ts_ms)
        };
        let (start, end) = (earliest(BatchPhase::Start), earliest(BatchPhase::End));
        let product = start.or(end).unwrap().product.clone();
        let mut found = by_batch.get(&key(line, batch)).cloned().unwrap_or_default();
        found.sort();
        let facts = BatchFacts {
            plant: &policy.plant,
            line,
            batch,
            product: &product,
            start_ms: start.map(|e| e.ts_ms),
            end_ms: end.map(|e| e.ts_ms),
            anomalies: found.len() as u64,
            rules_version: &policy.rules_version,
        };
        let mut versions: Vec<String> = models
            .iter()
            .filter(|(l, b, _)| l == line && b == batch)
            .map(|(_, _, version)| version.clone())
            .collect();
        versions.sort();
        versions.dedup();
        let quality = assess_quality(line, batch, &found, &policy, versions);
        let sensors: Vec<SensorPresence> = present
            .get(&key(line, batch))
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default();
        let sensors: Vec<&SensorPresence> = sensors.iter().collect();
        let (maintenance, orders) = assess_maintenance(
            &MaintenanceInputs {
                line,
                batch,
                end_ms: facts.end_ms,
                anomalies: &found,
                present: &sensors,
                health: &[],
            },
            &policy,
            &config.agents.maintenance,
        );
        if let Some((onset, reasons)) = critical_onset(&found, &policy) {
            actions.push(hold_line_action(&facts, onset, reasons, &quality));
        }
        for order in orders {
            actions.push(maintenance_action(&facts, order));
        }
        if end.is_some() {
            let batch_spans = spans
                .get(&key(line, batch))
                .map(|spans| spans.values().cloned().collect())
                .unwrap_or_default();
            actions.push(release_action(
                &facts,
                &[&quality, &maintenance],
                batch_spans,
                &config.agents.consensus,
            ));
        }
    }
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
) -> (Vec<Anomaly>, Vec<(String, String, String)>) {
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
    let mut models = Vec::new();
    for pair in starts.windows(2) {
        let (reference, scored) = (pair[0], pair[1]);
        if reference.line != scored.line
            || reference.product != scored.product
            || !ended(&reference.line, &reference.batch)
        {
            continue;
        }
        let end_ms = events
            .iter()
            .filter(|e| {
                e.event == BatchPhase::End && e.line == scored.line && e.batch == scored.batch
            })
            .map(|e| e.ts_ms)
            .min();
        let library = library_at(items, config, end_ms.map(seal_epoch));
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
            // The reduce that fits the dataflow's model sees the reference
            // cycles sorted.
            let mut reference_cycles = of(&reference.batch);
            reference_cycles.sort();
            let Ok(model) = FingerprintModel::fit(
                &scored.line,
                sensor,
                &scored.product,
                &reference_cycles,
                &config.fingerprint,
            ) else {
                continue;
            };
            models.push((
                scored.line.clone(),
                scored.batch.clone(),
                format!("fingerprint:{sensor}:{}", model.version),
            ));
            for cycle in of(&scored.batch) {
                let score = model
                    .score(&cycle.values, &library, config.fingerprint.min_match)
                    .unwrap();
                let found = cycle_anomalies(cycle, &model, &score, config.fingerprint.min_match);
                // The verdict cites the signature that named a finding.
                if let Some(name) = found.iter().find_map(|a| a.contaminant.as_ref()) {
                    let signature = library
                        .iter()
                        .find(|s| s.name == *name)
                        .expect("a match names a library signature");
                    models.push((
                        scored.line.clone(),
                        scored.batch.clone(),
                        signature.reference(),
                    ));
                }
                anomalies.extend(found);
            }
        }
    }
    (anomalies, models)
}

/// The contaminant library a batch's final decision is made with: the
/// configured signatures and, of the learned ones read at or before the
/// epoch the batch seals at (every one, for a batch that never ends), the
/// latest of each name. The changelog applies an epoch's changes before it
/// seals the epoch's batches; later changes are refused. Records of one
/// name read in the same epoch apply in input order (with one worker, the
/// dataflow's arrival order).
fn library_at(
    items: &[(Epoch, Ingested)],
    config: &QualityControlConfig,
    seal: Option<Epoch>,
) -> Vec<ContaminantSignature> {
    let mut records: Vec<(Epoch, usize, &ContaminantSignature)> = items
        .iter()
        .enumerate()
        .filter_map(|(position, (_, item))| match item {
            Ingested::Model {
                epoch,
                record:
                    ModelRecord {
                        content: ModelContent::Contaminant { signature },
                        ..
                    },
                ..
            } => Some((*epoch, position, signature)),
            _ => None,
        })
        .collect();
    records.sort_by_key(|(epoch, position, _)| (*epoch, *position));
    let mut learned: BTreeMap<&str, &ContaminantSignature> = BTreeMap::new();
    for (epoch, _, signature) in records {
        if seal.is_none_or(|seal| epoch <= seal) {
            learned.insert(&signature.name, signature);
        }
    }
    config
        .fingerprint
        .contaminants
        .iter()
        .chain(learned.into_values())
        .cloned()
        .collect()
}

/// The first epoch of the input: where a record read at startup lands.
fn first_epoch(items: &[(Epoch, Ingested)]) -> Epoch {
    items.iter().map(|(epoch, _)| *epoch).min().unwrap()
}

/// Whether an action gives `contaminant` as a reason.
fn names(action: &Action, contaminant: &str) -> bool {
    action
        .reasons
        .iter()
        .any(|reason| reason.contaminant.as_deref() == Some(contaminant))
}

/// Checks that the learned signature decides something in `expected` (a
/// critical contamination: a line hold and a held batch naming it) and
/// nothing without it (the configured library does not know it), so a
/// dataflow that ignored the record could not match the oracle.
fn assert_the_learned_signature_matters(items: &[(Epoch, Ingested)], expected: &[Action]) {
    let config = QualityControlConfig::default();
    assert!(
        !config
            .fingerprint
            .contaminants
            .iter()
            .any(|signature| signature.name == LEARNED),
        "the configured library does not know {LEARNED}"
    );
    let holds = expected
        .iter()
        .filter(|a| a.kind == ActionKind::HoldLine && names(a, LEARNED))
        .count();
    let held = expected
        .iter()
        .filter(|a| a.decision == Some(Decision::Hold) && names(a, LEARNED))
        .count();
    assert!(
        holds >= 1 && held >= 1,
        "the learned signature names the excursions ({holds} line holds, {held} held batches)"
    );
    let unlearned: Vec<(Epoch, Ingested)> = items
        .iter()
        .filter(|(_, item)| !matches!(item, Ingested::Model { .. }))
        .cloned()
        .collect();
    assert!(
        oracle(&unlearned)
            .iter()
            .all(|a| a.reasons.iter().all(|r| r.contaminant.is_none())),
        "without the record nothing is named"
    );
}

#[test]
fn incremental_output_equals_the_oracle_for_one_and_three_workers() {
    let (mut items, events) = plant(42);
    items.push(model_record(first_epoch(&items), learned_signature(), 0));
    let expected = oracle(&items);
    assert_the_learned_signature_matters(&items, &expected);
    let releases: Vec<&Action> = expected
        .iter()
        .filter(|a| a.kind == ActionKind::BatchRelease)
        .collect();
    let batches = events.iter().filter(|e| e.event == BatchPhase::End).count();
    assert_eq!(releases.len(), batches, "every batch is decided once");
    let held = releases
        .iter()
        .filter(|a| a.decision == Some(Decision::Hold))
        .count();
    assert!(
        held >= 1,
        "the injected excursions hold some batches ({held})"
    );
    assert!(held < batches, "and clean batches are released");
    let fingerprint_holds = releases
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
    assert!(
        releases.iter().all(|a| !a.evidence.input.is_empty()),
        "every decision names its input"
    );
    let one = final_revisions(&run_dataflow(items.clone(), 1));
    assert_eq!(one, expected);
    assert_eq!(final_revisions(&run_dataflow(items, 3)), expected);
}

#[test]
fn arrival_order_within_an_epoch_does_not_matter() {
    let (mut items, _) = plant(7);
    items.push(model_record(first_epoch(&items), learned_signature(), 0));
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
    let oracle = oracle(&items);
    assert_the_learned_signature_matters(&items, &oracle);
    assert_eq!(oracle, final_revisions(&expected));
}

/// A batch of one thermometer: a start, a minute of readings, an end,
/// and three readings tagged with the batch but stamped 2, 3 and 4 s after
/// its end (a gateway whose clock runs behind), far off the level: a
/// sustained run once all three are in.
fn late_run() -> Vec<(Epoch, Ingested)> {
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
    items.extend((0..3).map(|i| reading(61 + i as u64, 62 + i, 120.0)));
    items
}

/// The release decisions the changelog sends for [`late_run`], and the
/// number of refused late changes, with batches sealing `seal_after_ms`
/// after their end.
fn changelog_of_late_run(seal_after_ms: u64) -> (Vec<Action>, usize) {
    use scent_operators::epoch_sink::{EpochOutput, EpochSink};
    use scent_operators::source_progress::SourceAdvance;

    let items = late_run();
    let captured = Arc::new(Mutex::new((Vec::new(), 0)));
    let sink = Arc::clone(&captured);
    timely::execute(timely::Config::process(1), move |worker| {
        let sink = Arc::clone(&sink);
        let (mut input, capability) = worker.dataflow::<Epoch, _, _>(|scope| {
            let ((input, capability), ingested) =
                scope.new_unordered_input::<CapacityContainerBuilder<Vec<Ingested>>>();
            let changelog = ChangelogConfig {
                seal_after_ms,
                epoch_ms: 1_000,
            };
            let flow = quality_control(ingested, &QualityControlConfig::default(), changelog);
            let refused = Arc::clone(&sink);
            flow.late_revisions
                .inspect(move |_| refused.lock().unwrap().1 += 1);
            let emitted = Arc::clone(&sink);
            let no_advances = timely::dataflow::operators::vec::ToStream::to_stream(
                Vec::<SourceAdvance>::new(),
                scope,
            );
            flow.actions.epoch_sink(
                flow.dead_letters,
                no_advances,
                move |output: EpochOutput| {
                    emitted.lock().unwrap().0.extend(
                        output
                            .actions
                            .into_iter()
                            .filter(|a| a.kind == ActionKind::BatchRelease),
                    );
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
    let captured = captured.lock().unwrap();
    (captured.0.clone(), captured.1)
}

/// Evidence that arrives after a batch was decided revises the decision:
/// each late outlier changes the evidence (first isolated spikes, an
/// instrument matter; then a run of three, a product finding), so the
/// changelog sends a new revision naming the one it supersedes, until the
/// third turns the release into a hold; when the batch seals, the hold is
/// repeated as final.
#[test]
fn late_evidence_supersedes_a_decision_until_the_batch_seals() {
    let (sent, refused) = changelog_of_late_run(10_000);
    assert_eq!(refused, 0);
    let decisions: Vec<_> = sent
        .iter()
        .map(|a| (a.revision, a.decision, a.sealed))
        .collect();
    assert_eq!(
        decisions,
        vec![
            (1, Some(Decision::Release), false),
            (2, Some(Decision::Release), false),
            (3, Some(Decision::Release), false),
            (4, Some(Decision::Hold), false),
            (5, Some(Decision::Hold), true),
        ]
    );
    for pair in sent.windows(2) {
        assert_eq!(pair[1].supersedes.as_ref(), Some(&pair[0].action_id));
    }
    let anomalies: Vec<_> = sent.iter().map(|a| a.evidence.anomalies).collect();
    assert_eq!(anomalies, vec![0, 1, 2, 3, 3]);
    let ids: BTreeSet<_> = sent.iter().map(|a| &a.action_id).collect();
    assert_eq!(ids.len(), 5, "every revision has its own id");
}

/// After the seal nothing changes: the late outliers that would revise the
/// decision are refused and counted, and the sealed release stands.
#[test]
fn changes_after_the_seal_are_refused() {
    let (sent, refused) = changelog_of_late_run(2_000);
    let last = sent.last().unwrap();
    assert!(last.sealed);
    assert_eq!(last.decision, Some(Decision::Release));
    assert!(
        refused >= 1,
        "the late run's revisions are refused ({refused})"
    );
    assert!(sent.iter().all(|a| a.decision == Some(Decision::Release)));
}

/// Knowledge sharing in the dataflow: a contaminant learned while the
/// plant runs names the excursions of every line's batches still open when
/// its record is read, and only theirs.
///
/// Besides the random ones, the e-nose excursions fall in L1's batch 2
/// (sealed at 632 s), L1's and L2's batch 4 (open at 700 s, sealed at
/// 1 292 s), L1's batch 5 (1 330 s, in a batch that runs from 1 320 s to
/// 1 620 s) and L2's batch 7 (1 980 s to 2 280 s). The signature is read
/// at 700 s, and replaced at 1 400 s by a corrected signature of the same
/// name that the excursions do not match.
#[test]
fn a_signature_learned_mid_run_serves_every_line_from_then_on() {
    let (mut items, events) = plant_with(
        7,
        &[
            ("L1", 500),
            ("L1", 1_000),
            ("L2", 1_100),
            ("L1", 1_330),
            ("L2", 2_000),
        ],
    );
    let unlearned = oracle(&items);
    let mut learned_from_start = items.clone();
    learned_from_start.push(model_record(first_epoch(&items), learned_signature(), 0));
    let learned_from_start = oracle(&learned_from_start);
    let (learned_at, corrected_at) = (epoch_at(700), epoch_at(1_400));
    items.push(model_record(learned_at, learned_signature(), 0));
    items.push(model_record(corrected_at, corrected_signature(), 1));

    let (sent, refused) = run_dataflow_with_refusals(items.clone(), 2);
    let finals = final_revisions(&sent);
    assert_eq!(finals, oracle(&items));

    let release = |actions: &[Action], line: &str, batch: &str| -> Action {
        actions
            .iter()
            .find(|a| {
                a.kind == ActionKind::BatchRelease
                    && a.line == line
                    && a.batch.as_deref() == Some(batch)
            })
            .cloned()
            .unwrap()
    };
    let line_hold = |line: &str, batch: &str| {
        finals.iter().find(|a| {
            a.kind == ActionKind::HoldLine && a.line == line && a.batch.as_deref() == Some(batch)
        })
    };
    // The batches the signature names when it is known from the start.
    let contaminated: Vec<&Action> = learned_from_start
        .iter()
        .filter(|a| a.kind == ActionKind::BatchRelease && names(a, LEARNED))
        .collect();
    let (mut before, mut open_lines, mut after, mut withdrawn) = (0, BTreeSet::new(), 0, 0);
    for named in contaminated {
        let (line, batch) = (named.line.as_str(), named.batch.as_deref().unwrap());
        let end_ms = events
            .iter()
            .find(|e| e.event == BatchPhase::End && e.line == line && e.batch == batch)
            .unwrap()
            .ts_ms;
        let seal = seal_epoch(end_ms);
        let decided = release(&finals, line, batch);
        if seal < learned_at {
            // Sealed before the record: the decision made without the
            // signature stands, nothing about the batch is sent after the
            // seal, and the re-matched evidence is refused.
            before += 1;
            assert_eq!(decided, release(&unlearned, line, batch), "{batch}");
            assert!(line_hold(line, batch).is_none(), "{batch}");
            assert!(
                sent.iter()
                    .filter(|(_, a)| a.line == line && a.batch.as_deref() == Some(batch))
                    .all(|(epoch, _)| *epoch <= seal),
                "{batch}: no revision after the seal"
            );
            assert!(
                refused.iter().any(|late| late.epoch == learned_at
                    && late.subject.line == line
                    && late.subject.batch.as_deref() == Some(batch)),
                "{batch}: the changelog refuses the late naming"
            );
        } else if seal < corrected_at {
            // Open when the record arrives, sealed before the
            // correction: the final decision names the contaminant, and
            // the critical finding held the line.
            open_lines.insert(line.to_owned());
            assert_eq!(decided.decision, Some(Decision::Hold), "{batch}");
            assert!(names(&decided, LEARNED), "{batch}");
            assert!(
                decided
                    .evidence
                    .verdicts
                    .iter()
                    .any(|verdict| verdict.critical
                        && verdict
                            .reasons
                            .iter()
                            .any(|r| r.contaminant.as_deref() == Some(LEARNED))),
                "{batch}: the quality agent's evidence names it"
            );
            let hold = line_hold(line, batch).expect("a critical contamination holds the line");
            assert!(names(hold, LEARNED), "{batch}");
        } else {
            // Still open when the corrected signature replaces it:
            // the excursion is no longer named.
            after += 1;
            assert!(!names(&decided, LEARNED), "{batch}");
            assert!(line_hold(line, batch).is_none(), "{batch}");
            // An excursion between the two records held the line under the
            // first signature; the correction withdraws that hold.
            let holds: Vec<&(Epoch, Action)> = sent
                .iter()
                .filter(|(_, a)| {
                    a.kind == ActionKind::HoldLine
                        && a.line == line
                        && a.batch.as_deref() == Some(batch)
                })
                .collect();
            if let [(named_at, named), (withdrawn_at, withdrawal)] = holds[..] {
                assert!(names(named, LEARNED), "{batch}");
                assert!(*named_at >= learned_at && *named_at < corrected_at);
                assert!(withdrawal.withdrawn, "{batch}");
                assert_eq!(*withdrawn_at, corrected_at, "{batch}");
                withdrawn += 1;
            } else {
                assert!(holds.is_empty(), "{batch}: {holds:?}");
            }
        }
    }
    assert!(before >= 1, "a contaminated batch sealed before the record");
    assert_eq!(
        open_lines,
        BTreeSet::from(["L1".to_owned(), "L2".to_owned()]),
        "open batches of every line take the signature up"
    );
    assert!(after >= 1, "a contaminated batch open after the correction");
    assert!(withdrawn >= 1, "a line hold withdrawn by the correction");
}
