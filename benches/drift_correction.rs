//! Drift-compensated gas classification of 128-feature e-nose vectors
//! (16 sensors x 8 features, the layout of the UCI drift array):
//! `DriftCorrector::correct_into`, `DriftCompensatedClassifier::correct`
//! and `DriftCompensatedClassifier::classify`, plus one recalibration.
//!
//! The fingerprint operator corrects and classifies every exposure cycle
//! of every array, so these are per-measurement costs: `correct_into` is
//! the pure offset removal on a standardised vector (O(d)), `correct` adds
//! the signed-log standardisation of a raw vector, and `classify` adds the
//! shrinkage-LDA discriminants of 6 classes (O(k d)) and the forward-only
//! tracking update. Recalibration (10 reference measurements) runs once
//! per sensor recalibration and is shown for scale. The model is trained on
//! a synthetic set shaped like batch 1 of the UCI data (6 gases, 15
//! concentrations, 5 repeats); the vectors are aged copies with changed
//! sensitivities. Throughput is in measurements.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use scent_operators::drift_correction::{
    DriftCompensatedClassifier, DriftCompensationConfig, KnownMeasurement,
};
use std::hint::black_box;

const SENSORS: usize = 16;
const FEATURES_PER_SENSOR: usize = 8;
const FEATURES: usize = SENSORS * FEATURES_PER_SENSOR;
const CLASSES: usize = 6;
/// Distinct measurements cycled through.
const POOL: usize = 256;

/// A small deterministic generator (xorshift64*), uniform in [0, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The raw features of gas `class` at `concentration` on sensors with the
/// given sensitivities: ΔR-like magnitudes in the thousands, transient
/// features of a few units with the decaying ones negative, 2 % noise.
fn measurement(rng: &mut Rng, class: usize, concentration: f64, sensitivity: &[f64]) -> Vec<f64> {
    (0..FEATURES)
        .map(|feature| {
            let sensor = feature / FEATURES_PER_SENSOR;
            let kind = feature % FEATURES_PER_SENSOR;
            let affinity = 1.0 + ((class * 7 + sensor * 3) % 11) as f64 / 5.0;
            let scale = match kind {
                0 => 100.0,
                1 => 0.1,
                2..=4 => 0.01 * kind as f64,
                _ => -0.01 * (kind - 3) as f64,
            };
            let noise = 1.0 + 0.02 * (rng.next() - 0.5);
            scale * affinity * sensitivity[sensor] * concentration.powf(0.8) * noise
        })
        .collect()
}

fn fixtures() -> (DriftCompensatedClassifier, Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let mut rng = Rng(0x5ce7_00d1);
    let fresh = [1.0; SENSORS];
    let levels: Vec<f64> = (1..=15).map(|i| 20.0 * i as f64).collect();
    let mut training = Vec::new();
    for class in 0..CLASSES {
        for &level in &levels {
            for _ in 0..5 {
                training.push((class, level, measurement(&mut rng, class, level, &fresh)));
            }
        }
    }
    let known: Vec<KnownMeasurement<'_>> = training
        .iter()
        .map(|(class, concentration, features)| KnownMeasurement {
            class: *class,
            concentration: *concentration,
            features,
        })
        .collect();
    let matcher =
        DriftCompensatedClassifier::fit(&known, CLASSES, DriftCompensationConfig::default())
            .expect("a valid training set");
    let aged: Vec<f64> = (0..SENSORS).map(|_| 0.5 + rng.next()).collect();
    let references: Vec<Vec<f64>> = (0..10)
        .map(|_| measurement(&mut rng, 0, 100.0, &aged))
        .collect();
    let pool: Vec<Vec<f64>> = (0..POOL)
        .map(|i| {
            let level = levels[i % levels.len()];
            measurement(&mut rng, i % CLASSES, level, &aged)
        })
        .collect();
    (matcher, references, pool)
}

fn drift_correction(c: &mut Criterion) {
    let (mut matcher, references, pool) = fixtures();
    let known: Vec<KnownMeasurement<'_>> = references
        .iter()
        .map(|features| KnownMeasurement {
            class: 0,
            concentration: 100.0,
            features,
        })
        .collect();
    matcher.recalibrate(&known).expect("references in range");
    let standardised: Vec<Vec<f64>> = pool
        .iter()
        .map(|raw| {
            matcher
                .classifier()
                .standardizer()
                .transform(raw)
                .expect("128 finite features")
        })
        .collect();

    let mut group = c.benchmark_group("drift_correction");
    group.throughput(Throughput::Elements(1));
    group.bench_function("correct_into/standardised_128", |b| {
        let corrector = matcher.corrector().clone();
        let mut out = vec![0.0; FEATURES];
        let mut cycle = standardised.iter().cycle();
        b.iter(|| {
            corrector
                .correct_into(black_box(cycle.next().expect("a non-empty pool")), &mut out)
                .expect("matching dimensions");
            black_box(out[0])
        })
    });
    group.bench_function("correct/raw_128", |b| {
        let mut cycle = pool.iter().cycle();
        b.iter(|| matcher.correct(black_box(cycle.next().expect("a non-empty pool"))))
    });
    group.bench_function("classify/raw_128_6_classes", |b| {
        let mut tracking = matcher.clone();
        let mut cycle = pool.iter().cycle();
        b.iter(|| tracking.classify(black_box(cycle.next().expect("a non-empty pool"))))
    });
    group.finish();

    let mut group = c.benchmark_group("drift_correction/recalibrate");
    group.throughput(Throughput::Elements(known.len() as u64));
    group.bench_function("10_references", |b| {
        let mut recalibrated = matcher.clone();
        b.iter(|| recalibrated.recalibrate(black_box(&known)))
    });
    group.finish();
}

criterion_group!(benches, drift_correction);
criterion_main!(benches);
