//! The agents on one batch: the quality agent, the maintenance agent and
//! the orchestrator's consensus, with 0, 100 and 10,000 anomalies as
//! evidence.
//!
//! The dataflow's per-batch `reduce`s call these pure functions whenever
//! the evidence of a batch changes: once per new anomaly while the batch
//! runs, again at its end and for every late anomaly. They split the
//! anomalies into product and instrument findings (z-score runs, fault
//! windows), group them into reasons per `(sensor, rule)`, find the critical
//! onset, decide coverage and maintenance orders, and build and hash the
//! release action (SHA-256 over its JSON). The three sizes are a clean
//! batch (release), a batch with a short contamination (hold), and a
//! 10-minute batch during which a whole array misbehaved, the worst case a
//! reduce must absorb. Time is per evaluation of all three.

mod support;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use scent_operators::batch_verdict::VerdictPolicy;
use scent_operators::consensus::{release_action, BatchFacts, ConsensusPolicy};
use scent_operators::maintenance_agent::{
    assess_maintenance, MaintenanceConfig, MaintenanceInputs, SensorPresence,
};
use scent_operators::model::{Action, Anomaly, AnomalyRule, Decision, InputSpan, SensorKind};
use scent_operators::quality_agent::{assess_quality, critical_onset};
use scent_operators::rolling_anomaly::RollingAnomalyConfig;
use std::hint::black_box;
use support::{Rng, BASE_MS};

/// The batch starts at `BASE_MS` and lasts this long.
const BATCH_MS: i64 = 570_000;
const LINE: &str = "L1";
const BATCH: &str = "B-20261124-L1-03";

/// Anomaly `index` of `count`, spread over the batch: mostly z-score
/// outliers on the two e-noses (up to three of 16 channels), some on the
/// thermometer, a few flat lines on the hygrometer and gaps on the
/// pressure gauge, and fingerprint SPE alarms on the e-noses' cycles.
fn anomaly(rng: &mut Rng, index: usize, count: usize) -> Anomaly {
    let (sensor, kind, rule, channels) = match index % 20 {
        0..=10 => ("enose-1", SensorKind::Enose, AnomalyRule::ZScore, 3),
        11..=15 => ("enose-2", SensorKind::Enose, AnomalyRule::ZScore, 2),
        16 | 17 => ("t-1", SensorKind::Temperature, AnomalyRule::ZScore, 1),
        18 => ("rh-1", SensorKind::Humidity, AnomalyRule::FlatLine, 1),
        19 if index % 40 == 19 => ("enose-1", SensorKind::Enose, AnomalyRule::Spe, 3),
        _ => ("p-1", SensorKind::Pressure, AnomalyRule::Gap, 0),
    };
    // The limits of the default rules: |z| > 6, 15 identical readings, 10 s,
    // and a typical fingerprint SPE limit.
    let (statistic, limit) = match rule {
        AnomalyRule::ZScore => (6.0 + rng.below(3_000) as f64 / 100.0, 6.0),
        AnomalyRule::FlatLine => (15.0, 15.0),
        AnomalyRule::Gap => (10.0 + rng.below(60) as f64, 10.0),
        _ => (24.0 + rng.below(10_000) as f64, 24.0),
    };
    let channels = (0..channels)
        .map(|_| {
            if kind == SensorKind::Enose {
                rng.below(16) as u16
            } else {
                0
            }
        })
        .collect();
    let offset_ms = BATCH_MS * index as i64 / count.max(1) as i64;
    Anomaly {
        line: LINE.into(),
        sensor: sensor.into(),
        kind,
        batch: Some(BATCH.into()),
        ts_ms: BASE_MS + offset_ms + 37,
        seq: 18_000 + offset_ms as u64 / 1_000,
        rule,
        statistic,
        limit,
        channels,
        contaminant: None,
    }
}

fn evidence(anomalies: usize) -> Vec<Anomaly> {
    let mut rng = Rng(0x5ce7_0005);
    let mut items: Vec<Anomaly> = (0..anomalies)
        .map(|index| anomaly(&mut rng, index, anomalies))
        .collect();
    items.sort();
    items
}

/// Every agent and the orchestrator on one ended batch.
fn decide(anomalies: &[&Anomaly], present: &[&SensorPresence], policy: &VerdictPolicy) -> Action {
    let facts = BatchFacts {
        plant: "p1",
        line: LINE,
        batch: BATCH,
        product: "espresso",
        start_ms: Some(BASE_MS),
        end_ms: Some(BASE_MS + BATCH_MS),
        anomalies: anomalies.len() as u64,
        rules_version: &policy.rules_version,
    };
    let quality = assess_quality(
        LINE,
        BATCH,
        anomalies,
        policy,
        vec!["fingerprint:enose-1:fp-0".into()],
    );
    black_box(critical_onset(anomalies, policy));
    let (maintenance, orders) = assess_maintenance(
        &MaintenanceInputs {
            line: LINE,
            batch: BATCH,
            end_ms: facts.end_ms,
            anomalies,
            present,
            health: &[],
        },
        policy,
        &MaintenanceConfig::default(),
    );
    black_box(orders);
    let span = InputSpan {
        topic: "scent.readings".into(),
        partition: 0,
        first_offset: 1_000,
        last_offset: 9_000,
        records: 4_200,
    };
    release_action(
        &facts,
        &[&quality, &maintenance],
        vec![span],
        &ConsensusPolicy::default(),
    )
}

fn decide_batches(c: &mut Criterion) {
    let policy = VerdictPolicy {
        rules_version: RollingAnomalyConfig::default().version(),
        ..VerdictPolicy::default()
    };
    let present: Vec<SensorPresence> = [
        ("enose-1", SensorKind::Enose),
        ("enose-2", SensorKind::Enose),
        ("t-1", SensorKind::Temperature),
        ("rh-1", SensorKind::Humidity),
        ("p-1", SensorKind::Pressure),
    ]
    .into_iter()
    .map(|(sensor, kind)| SensorPresence {
        line: LINE.into(),
        batch: BATCH.into(),
        sensor: sensor.into(),
        kind,
    })
    .collect();
    let present: Vec<&SensorPresence> = present.iter().collect();
    let mut group = c.benchmark_group("agents/decide");
    for anomalies in [0, 100, 10_000] {
        let items = evidence(anomalies);
        let refs: Vec<&Anomaly> = items.iter().collect();
        let action = decide(&refs, &present, &policy);
        let expected = if anomalies == 0 {
            Decision::Release
        } else {
            Decision::Hold
        };
        assert_eq!(action.decision, Some(expected));
        assert_eq!(action.evidence.anomalies, anomalies as u64);
        group.bench_with_input(
            BenchmarkId::new("anomalies", anomalies),
            &refs,
            |b, refs| b.iter(|| decide(black_box(refs), &present, &policy)),
        );
    }
    group.finish();
}

criterion_group!(benches, decide_batches);
criterion_main!(benches);
