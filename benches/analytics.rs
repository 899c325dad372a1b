//! The per-reading analytics of the quality-control dataflow on one core:
//! validation, QARTOD quality flags, the rolling detectors, exposure cycles
//! and fingerprint scoring, for 16-channel e-nose readings.
//!
//! This is the work the sensor stage and the fingerprint join do per
//! reading, without timely around it: readings of 64 arrays arrive in
//! one-second epochs (64 readings each), every reading is validated
//! (`validate_reading`), every epoch goes through the sensor stage's
//! kernels exactly as the dataflow runs them (`SensorKernels::process`:
//! sort, rolling detectors, QARTOD flags, flag-gated cycle building, the
//! arrays' clean-air health and the batch-presence record), and
//! every completed 10-second cycle is scored against a product fingerprint
//! with a three-contaminant library. The target of the analytics is a million
//! readings a second per core; the figure is in readings. JSON decoding is
//! not included (see `benches/wire.rs`), nor the exchange between workers.

mod support;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use scent_dataflows::sensor_stage::{SensorKernels, SensorOutputs, SensorStageConfig};
use scent_operators::exposure_cycles::{Cycle, CycleBuilder, CycleConfig};
use scent_operators::fingerprint::{ContaminantSignature, FingerprintConfig, FingerprintModel};
use scent_operators::model::{Reading, SensorKind};
use scent_operators::validate::{validate_reading, ValidationRules};
use std::hint::black_box;
use support::{enose_values, reading, Rng};

const ARRAYS: usize = 64;
const SECONDS: i64 = 600;

/// One batch of ten minutes of 64 arrays, one reading per array and second.
fn epochs() -> Vec<Vec<Reading>> {
    let mut rng = Rng(0x5ce7_00a1);
    (0..SECONDS)
        .map(|second| {
            (0..ARRAYS)
                .map(|array| {
                    let sensor = format!("enose-{}", array % 2 + 1);
                    let line = format!("L{}", array / 2 + 1);
                    reading(
                        &line,
                        &sensor,
                        SensorKind::Enose,
                        second,
                        enose_values(&mut rng, 16, 0.12),
                    )
                })
                .collect()
        })
        .collect()
}

fn fingerprint(readings: &[Vec<Reading>]) -> FingerprintModel {
    let mut builder = CycleBuilder::new(CycleConfig::default());
    let mut cycles: Vec<Cycle> = Vec::new();
    for epoch in readings {
        for r in epoch
            .iter()
            .filter(|r| r.line == "L1" && r.sensor == "enose-1")
        {
            builder.observe(r, &mut cycles);
        }
    }
    let refs: Vec<&Cycle> = cycles.iter().collect();
    FingerprintModel::fit(
        "L1",
        "enose-1",
        "espresso",
        &refs,
        &FingerprintConfig::default(),
    )
    .expect("a clean reference batch fits")
}

fn library() -> Vec<ContaminantSignature> {
    let mut rng = Rng(7);
    ["ethanol", "mould", "solvent"]
        .iter()
        .map(|name| ContaminantSignature {
            name: (*name).to_owned(),
            response: (0..16).map(|_| (rng.below(100) as f64) / 100.0).collect(),
        })
        .collect()
}

fn analytics(c: &mut Criterion) {
    let epochs = epochs();
    let model = fingerprint(&epochs);
    let library = library();
    let rules = ValidationRules::default();
    let mut group = c.benchmark_group("analytics");
    group.throughput(Throughput::Elements((ARRAYS as i64 * SECONDS) as u64));
    group.sample_size(20);
    group.bench_function("enose16_per_reading", |b| {
        b.iter_batched(
            || epochs.clone(),
            |mut epochs| {
                let mut kernels = SensorKernels::new(SensorStageConfig::default());
                let mut out = SensorOutputs::default();
                let mut alarms = 0usize;
                for epoch in &mut epochs {
                    for r in epoch.iter() {
                        black_box(validate_reading(r, &rules).is_ok());
                    }
                    kernels.process(epoch, &mut out);
                    for cycle in out.cycles.drain(..) {
                        let score = model
                            .score(&cycle.values, &library, 0.8)
                            .expect("16 channels");
                        alarms += usize::from(score.alarm(&model));
                    }
                }
                black_box((
                    out.anomalies.len(),
                    out.flagged.len(),
                    out.health.len(),
                    alarms,
                ))
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, analytics);
criterion_main!(benches);
