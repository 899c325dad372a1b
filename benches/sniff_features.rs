//! Sniff-cycle features: `SniffSegmenter::push` per sample of a 16-channel
//! e-nose array, and `FeatureExtractor::extract` per completed cycle.
//!
//! Every e-nose sample of a line goes through the segmenter, so its
//! per-sample cost bounds how many arrays one worker can follow; the
//! feature extraction (ΔR/R0, plateau, two time constants, area and 16
//! FFTs of 256 points) runs once per exposure.
//!
//! * `push/baseline`: clean air only, the common path between exposures:
//!   baseline ring and guard, score, onset test. Throughput in samples.
//! * `push/exposures`: a stream of exposures, 600 samples each (60 s of
//!   clean air, 120 s of odour, 420 s of recovery at 1 Hz, first-order
//!   responses of 0.2 to 1.7 ΔR/R0 with τ 2-9 s up and 20-60 s down); about
//!   one cycle is emitted per 600 samples, so this includes the feature
//!   extraction. Throughput in samples.
//! * `extract/600_samples`: the features of one such cycle alone, from
//!   its trace. Throughput in cycles.
//!
//! All values carry 0.4 % relative noise; each iteration continues the
//! stream where the previous one stopped (timestamps keep increasing).

mod support;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use scent_operators::sniff_features::{
    CycleEnd, CycleTrace, FeatureExtractor, SniffConfig, SniffSegmenter,
};
use std::hint::black_box;
use support::{Rng, BASE_MS};

const CHANNELS: usize = 16;
/// Samples of one exposure period (1 Hz).
const PERIOD: usize = 600;
/// Exposure periods in the pool.
const PERIODS: usize = 4;

/// Clean-air level of channel `c`: 0.6 to 2.4.
fn clean_air(channel: usize) -> f64 {
    0.6 + 0.12 * channel as f64
}

/// ΔR/R0 of channel `c` at second `t` of an exposure period.
fn response(channel: usize, t: f64) -> f64 {
    let (on, off) = (60.0, 180.0);
    let amplitude = 0.2 + 0.1 * channel as f64;
    let tau_rise = 2.0 + 0.5 * (channel % 15) as f64;
    let tau_decay = 20.0 + 2.5 * channel as f64;
    let rise = |t: f64| amplitude * (1.0 - (-(t - on) / tau_rise).exp());
    if t < on {
        0.0
    } else if t < off {
        rise(t)
    } else {
        rise(off) * (-(t - off) / tau_decay).exp()
    }
}

/// `PERIODS` exposure periods of samples, or clean air only.
fn pool(exposures: bool) -> Vec<Vec<f64>> {
    let mut rng = Rng(0x5ce7_0005);
    (0..PERIODS * PERIOD)
        .map(|k| {
            let t = (k % PERIOD) as f64;
            (0..CHANNELS)
                .map(|c| {
                    let relative = if exposures { response(c, t) } else { 0.0 };
                    clean_air(c) * (1.0 + relative) * (1.0 + 0.004 * rng.noise())
                })
                .collect()
        })
        .collect()
}

fn push(c: &mut Criterion) {
    let mut group = c.benchmark_group("sniff_features/push");
    group.throughput(Throughput::Elements((PERIODS * PERIOD) as u64));
    for (name, exposures) in [("baseline", false), ("exposures", true)] {
        let samples = pool(exposures);
        let mut segmenter =
            SniffSegmenter::new(CHANNELS, SniffConfig::default(), None).expect("a valid config");
        let mut ts_ms = BASE_MS;
        let mut cycles = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                for values in &samples {
                    ts_ms += 1000;
                    let cycle = segmenter
                        .push(ts_ms, black_box(values), None)
                        .expect("a valid sample");
                    cycles += usize::from(cycle.is_some());
                }
            })
        });
        assert_eq!(cycles > 0, exposures, "cycles only with exposures");
    }
    group.finish();
}

fn extract(c: &mut Criterion) {
    let samples = pool(true);
    let config = SniffConfig::default();
    let guard = config.baseline_guard_samples;
    // One exposure period, as the segmenter hands it over: the guard
    // before the onset at 60 s, the plateau from 100 s, recovery from 185 s.
    let onset = 60;
    let start = onset - guard;
    let trace = CycleTrace {
        channels: CHANNELS,
        ts_ms: (start..PERIOD).map(|k| BASE_MS + 1000 * k as i64).collect(),
        values: samples[start..PERIOD].concat(),
        onset_index: guard,
        baseline: (0..CHANNELS).map(clean_air).collect(),
        plateau_start: Some(100 - start),
        recovery_start: Some(185 - start),
        end: CycleEnd::Recovered,
        uncompensated_samples: 0,
    };
    let mut extractor = FeatureExtractor::new(config).expect("a valid config");
    let mut group = c.benchmark_group("sniff_features/extract");
    group.throughput(Throughput::Elements(1));
    group.bench_function("600_samples", |b| {
        b.iter(|| extractor.extract(black_box(&trace)))
    });
    group.finish();
}

criterion_group!(benches, push, extract);
criterion_main!(benches);
