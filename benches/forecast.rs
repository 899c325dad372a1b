//! Quality-index forecasts: `forecast::ForecastModel::forecast` for one
//! line, and `ForecastModel::train` on 20,000 samples.
//!
//! The predictive agent forecasts every line once per exposure cycle
//! (10 s), so `forecast` runs on the streaming path: the features of the
//! last 180 samples (lags, rolling mean, standard deviation and slope over
//! 30 and 180 samples, one covariate) and one walk down each of the
//! 40 trees of depth 8 of the three horizons (5 min, 30 min, 2 h), the
//! default configuration. `train` runs offline (`scent train`): 20,000
//! samples are 55 hours of one line; it builds the supervised rows and fits
//! two forests per horizon (one to measure skill on the held-out tail, one
//! on every row), so its figure is what retraining a line costs. The series
//! is an index that follows a process temperature with a 30 min delay plus
//! an 8 h cycle and noise, the temperature being the covariate: the trees
//! grow to their full depth, as on a line with structure. Throughput is in
//! forecasts and in samples.

mod support;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use scent_operators::forecast::{ForecastConfig, ForecastModel, QualitySample};
use std::hint::black_box;
use support::{Rng, BASE_MS};

/// Samples of the training series: 55 hours at 10 s.
const TRAINING_SAMPLES: usize = 20_000;

/// Histories cycled through by the forecast bench.
const POOL: usize = 512;

/// A slowly wandering process temperature deviation, hours from the start.
fn temperature(hours: f64) -> f64 {
    let tau = std::f64::consts::TAU;
    (tau * hours / 2.7).sin() + 0.6 * (tau * hours / 4.9 + 1.0).sin()
}

/// `count` samples of 10 s of a line whose index follows the temperature
/// 30 minutes later.
fn series(count: usize, seed: u64) -> Vec<QualitySample> {
    let mut rng = Rng(seed);
    let tau = std::f64::consts::TAU;
    (0..count)
        .map(|step| {
            let hours = step as f64 * 10.0 / 3_600.0;
            let index = 0.5
                + 0.2 * temperature(hours - 0.5)
                + 0.05 * (tau * hours / 8.0).sin()
                + 0.02 * rng.noise();
            QualitySample {
                ts_ms: BASE_MS + step as i64 * 10_000,
                index,
                covariates: vec![temperature(hours) + 0.03 * rng.noise()],
            }
        })
        .collect()
}

fn config() -> ForecastConfig {
    ForecastConfig {
        covariates: vec!["temperature".into()],
        ..ForecastConfig::default()
    }
}

fn forecast(c: &mut Criterion) {
    let config = config();
    let model = ForecastModel::train(&[series(TRAINING_SAMPLES, 0x5ce7_0f01)], &config)
        .expect("the bench series trains");
    let live = series(config.history_len() + POOL, 0x5ce7_0f02);
    let mut group = c.benchmark_group("forecast");
    group.throughput(Throughput::Elements(1));
    group.bench_function("one_line", |b| {
        let mut step = 0;
        b.iter(|| {
            let end = config.history_len() + step % POOL;
            step += 1;
            black_box(model.forecast(black_box(&live[..end])))
        })
    });
    group.finish();
}

fn train(c: &mut Criterion) {
    let config = config();
    let training = vec![series(TRAINING_SAMPLES, 0x5ce7_0f01)];
    let mut group = c.benchmark_group("forecast/train");
    group.sample_size(10);
    group.throughput(Throughput::Elements(TRAINING_SAMPLES as u64));
    group.bench_function("samples_20000", |b| {
        b.iter(|| ForecastModel::train(black_box(&training), &config).expect("trains"))
    });
    group.finish();
}

criterion_group!(benches, forecast, train);
criterion_main!(benches);
