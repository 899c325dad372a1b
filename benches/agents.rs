//! Batch verdicts: `batch_verdict::decide`, the pure decision for one ended
//! batch, with 0, 100 and 10,000 anomalies as evidence.
//!
//! The dataflow's differential `reduce` calls `decide` whenever the evidence
//! of an ended batch changes, so its cost is paid once per batch end and
//! again for every late anomaly. It groups the anomalies into reasons per
//! `(sensor, rule)`, ranks channels, sorts reasons by strength and hashes
//! the action (SHA-256 over its JSON) into a deterministic id. The three
//! sizes are a clean batch (release), a batch with a short contamination
//! (hold), and a 10-minute batch during which a whole array misbehaved,
//! the worst case the reduce must absorb. Evidence is in the order the
//! reduce presents it (sorted). Time is per decision.

mod support;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use scent_operators::batch_verdict::{decide, BatchEvidence, VerdictPolicy};
use scent_operators::model::{
    Anomaly, AnomalyRule, BatchEvent, BatchPhase, Decision, EventTimeMs, SensorKind,
};
use scent_operators::rolling_anomaly::RollingAnomalyConfig;
use std::hint::black_box;
use support::{Rng, BASE_MS};

/// The batch starts at `BASE_MS` and lasts this long.
const BATCH_MS: i64 = 570_000;
const LINE: &str = "L1";
const BATCH: &str = "B-20261124-L1-03";

fn lifecycle(event: BatchPhase, ts_ms: EventTimeMs) -> BatchEvidence {
    BatchEvidence::Lifecycle(BatchEvent {
        batch: BATCH.into(),
        line: LINE.into(),
        product: "espresso".into(),
        event,
        ts_ms,
    })
}

/// Anomaly `index` of `count`, spread over the batch: mostly z-score
/// outliers on the two e-noses (up to three of 16 channels), some on the
/// thermometer, a few flat lines on the hygrometer and gaps on the
/// pressure gauge, and fingerprint SPE alarms on the e-noses' cycles.
fn anomaly(rng: &mut Rng, index: usize, count: usize) -> BatchEvidence {
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
    BatchEvidence::Anomaly(Anomaly {
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
    })
}

fn evidence(anomalies: usize) -> Vec<BatchEvidence> {
    let mut rng = Rng(0x5ce7_0005);
    let mut items = vec![
        lifecycle(BatchPhase::Start, BASE_MS),
        lifecycle(BatchPhase::End, BASE_MS + BATCH_MS),
    ];
    items.extend((0..anomalies).map(|index| anomaly(&mut rng, index, anomalies)));
    items.sort();
    items
}

fn decide_batches(c: &mut Criterion) {
    let policy = VerdictPolicy {
        rules_version: RollingAnomalyConfig::default().version(),
        ..VerdictPolicy::default()
    };
    let mut group = c.benchmark_group("batch_verdict/decide");
    for anomalies in [0, 100, 10_000] {
        let items = evidence(anomalies);
        let refs: Vec<&BatchEvidence> = items.iter().collect();
        let action = decide(LINE, BATCH, &refs, &policy).expect("the batch has ended");
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
            |b, refs| b.iter(|| decide(LINE, BATCH, black_box(refs), &policy)),
        );
    }
    group.finish();
}

criterion_group!(benches, decide_batches);
criterion_main!(benches);
