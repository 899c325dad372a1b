//! Multivariate monitoring: `MultivariateMonitor::observe` on 16 and 52
//! variables, static and dynamic.
//!
//! Every observation of a monitored stream (an e-nose array of 16 channels,
//! a process unit of 52 variables as in the Tennessee Eastman benchmark)
//! goes through the monitor: lag buffer, EWMA smoothing, one PCA projection
//! (`O(m k)` for `m` monitored variables and `k` components), T² and SPE
//! against their limits, and contributions when it alarms. Two set-ups:
//! `static` (no lags, no smoothing, theoretical limits: the textbook chart)
//! and `dynamic` (2 lags, so `m = 3 p`, λ = 0.3 and held-out limits: the
//! configuration `scent eval tep` scores). The stream is in control, the
//! common case; a few observations alarm at the 1 % level and pay for
//! their contributions. Throughput is in observations.

mod support;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use scent_operators::multivariate::{
    LimitMethod, MonitorConfig, MonitorRule, MultivariateMonitor, Persistence,
};
use scent_operators::pca::{Components, PcaConfig};
use std::hint::black_box;
use support::Rng;

/// Distinct observations cycled through.
const POOL: usize = 1_024;

/// Reference observations the monitor is fitted on.
const REFERENCE: usize = 2_000;

/// Observations of `variables` channels driven by four latent factors, each
/// channel with its own loadings, level and 5 % noise.
fn observations(variables: usize, count: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = Rng(seed);
    let mut loadings = Rng(0x5ce7_0007);
    let weights: Vec<[f64; 4]> = (0..variables)
        .map(|_| std::array::from_fn(|_| loadings.noise()))
        .collect();
    (0..count)
        .map(|_| {
            let factors: [f64; 4] = std::array::from_fn(|_| rng.noise());
            weights
                .iter()
                .enumerate()
                .map(|(j, w)| {
                    let signal: f64 = w.iter().zip(&factors).map(|(a, f)| a * f).sum();
                    10.0 + j as f64 + signal + 0.05 * rng.noise()
                })
                .collect()
        })
        .collect()
}

fn dynamic() -> MonitorConfig {
    MonitorConfig {
        pca: PcaConfig {
            components: Components::VarianceExplained(0.9),
            standardise: true,
        },
        lags: 2,
        smoothing: 0.3,
        rules: vec![MonitorRule::T2, MonitorRule::Spe],
        alpha: 0.01,
        limits: LimitMethod::Empirical {
            quantile: 0.98,
            factor: 1.0,
            folds: 5,
        },
        persistence: Persistence {
            required: 1,
            window: 1,
        },
        contributors: 3,
    }
}

fn observe(c: &mut Criterion) {
    let mut group = c.benchmark_group("multivariate/observe");
    group.throughput(Throughput::Elements(1));
    for variables in [16, 52] {
        let reference = observations(variables, REFERENCE, 0x5ce7_0005);
        let stream = observations(variables, POOL, 0x5ce7_0006);
        for (name, config) in [("static", MonitorConfig::default()), ("dynamic", dynamic())] {
            let mut monitor =
                MultivariateMonitor::fit(&reference, &config).expect("a monitor fits");
            group.bench_with_input(BenchmarkId::new(name, variables), &stream, |b, stream| {
                let mut cycle = stream.iter().cycle();
                b.iter(|| {
                    monitor
                        .observe(black_box(cycle.next().expect("a non-empty pool")))
                        .expect("a valid observation")
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, observe);
criterion_main!(benches);
