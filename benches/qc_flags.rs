//! QC flags: readings per second through `qc_flags::SensorQc::observe` for
//! a 16-channel e-nose stream and a scalar temperature stream.
//!
//! Every valid reading gets its QARTOD flags before the detectors see it,
//! so the kernel runs once per reading on the hot path: gross range, spike,
//! rate of change and flat line per channel, time gap, sequence and skew
//! per reading, the aggregate and the score, and one small allocation (the
//! result's channel vector). The stream is a pool of consecutive readings
//! at 1 Hz with noise, a spike every 50 readings and a stuck stretch, with
//! default thresholds, so every test walks its usual path and the flat-line
//! deques see both noise and a stuck value. Time and sequence keep
//! advancing across pool cycles so the stream stays a plausible one.
//! Throughput is in readings.

mod support;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use scent_operators::model::SensorKind;
use scent_operators::qc_flags::{QcConfig, QcInput, SensorQc};
use std::hint::black_box;
use support::{enose_values, Rng, BASE_MS};

/// Distinct readings cycled through.
const POOL: usize = 1_000;

/// The values of `POOL` consecutive readings of one sensor.
fn pool(kind: SensorKind) -> Vec<Vec<f64>> {
    let mut rng = Rng(0x5ce7_0004);
    (0..POOL)
        .map(|second| {
            let mut values = match kind {
                SensorKind::Enose => enose_values(&mut rng, 16, 0.12),
                _ => vec![92.5 + 0.05 * rng.noise()],
            };
            if second % 50 == 25 {
                values[0] *= 1.5;
            }
            if (600..660).contains(&second) {
                // A stuck stretch: the first channel repeats its value.
                values[0] = 1.25;
            }
            values
        })
        .collect()
}

fn observe(c: &mut Criterion) {
    let config = QcConfig::default();
    let mut group = c.benchmark_group("qc_flags/observe");
    group.throughput(Throughput::Elements(1));
    for (name, kind) in [
        ("enose16", SensorKind::Enose),
        ("temperature", SensorKind::Temperature),
    ] {
        let readings = pool(kind);
        let kind_config = config.kind(kind);
        group.bench_with_input(
            BenchmarkId::from_parameter(name),
            &readings,
            |b, readings| {
                let mut qc = SensorQc::new();
                let mut step: u64 = 0;
                b.iter(|| {
                    let values = &readings[step as usize % POOL];
                    let ts_ms = BASE_MS + step as i64 * 1_000;
                    let input = QcInput {
                        ts_ms,
                        seq: step,
                        reference_ts_ms: Some(ts_ms + 120),
                        values,
                    };
                    step += 1;
                    black_box(qc.observe(black_box(&input), kind_config))
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, observe);
criterion_main!(benches);
