//! Streaming univariate anomaly detection: `UnivariateDetector::observe`,
//! values per second through one detector.
//!
//! Every value of a monitored series passes through `observe` once, so its
//! cost bounds how many series a worker can watch. The work per value is
//! a range check, a quantisation and `max_order` hash-set probes of the
//! sequence memory, so it should be a few tens of nanoseconds, flat in the
//! history length. Two inputs: a learnt daily cycle with 1 % noise (the
//! common case, mostly familiar transitions) and white noise over a
//! drifting level (the memory keeps growing until its cap, the worst case
//! for the hash set). Throughput is in values.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use scent_operators::univariate_detector::{UnivariateDetector, UnivariateDetectorConfig};
use std::hint::black_box;

/// Values per measured batch.
const BATCH: usize = 4096;

/// xorshift64: uniform values in `[0, 1)` without a dependency.
fn uniform(state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 11) as f64 / (1u64 << 53) as f64
}

/// A 5-minute series over one day (288 values) of a sine with 1 % noise.
fn daily_cycle(rows: usize) -> Vec<f64> {
    let mut state = 0x5ce7_0010;
    (0..rows)
        .map(|i| {
            let phase = i as f64 / 288.0 * std::f64::consts::TAU;
            50.0 + 20.0 * phase.sin() + uniform(&mut state)
        })
        .collect()
}

/// White noise whose level drifts by one noise width every 1000 values.
fn drifting_noise(rows: usize) -> Vec<f64> {
    let mut state = 0x5ce7_0011;
    (0..rows)
        .map(|i| i as f64 / 1000.0 + uniform(&mut state))
        .collect()
}

fn observe(c: &mut Criterion) {
    let mut group = c.benchmark_group("univariate_detector/observe");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, values) in [
        ("daily_cycle", daily_cycle(BATCH)),
        ("drifting_noise", drifting_noise(BATCH)),
    ] {
        group.bench_with_input(BenchmarkId::new(name, BATCH), &values, |b, values| {
            // A detector that has already seen a day of history, reused
            // across iterations so the memory reaches its steady state.
            let mut detector = UnivariateDetector::new(UnivariateDetectorConfig::default());
            for &value in values.iter().take(288) {
                detector.observe(value);
            }
            b.iter(|| {
                let mut alerts = 0.0;
                for &value in values {
                    alerts += detector.observe(black_box(value));
                }
                alerts
            })
        });
    }
    group.finish();
}

criterion_group!(benches, observe);
criterion_main!(benches);
