//! Sensor health: `sensor_health::CleanAirSampler::observe` per reading of
//! a 16-channel e-nose array, and `sensor_health::assess` over all the
//! samples of one array.
//!
//! The sampler sees every e-nose reading, so it runs on the hot path: in a
//! batch it adds the reading to the batch level (O(channels)); between
//! batches it queues the reading for the lead (one copy into a reused
//! vector) and folds the readings older than the lead into the window's
//! Welford sums; at a batch boundary it emits a sample (one allocation per
//! vector). The stream is a plant cycle at 1 Hz, 600 s batches alternating
//! two products and 60 s changeovers, with 0.4 % noise, so one reading in
//! eleven is a gap reading and every 660th closes a window; time keeps
//! advancing across pool cycles. Throughput is in readings.
//!
//! `assess` runs when a sample arrives, inside a differential reduce over
//! all samples of the array, so its cost is per clean-air sample and grows
//! with the history: 80 baseline and 80 response samples are about 15
//! hours of production (one sample per changeover), 320 about 2.5 days.
//! The fits read only each context's reference samples and the last
//! `trend_samples` (the array's and each of its 16 channels' Theil–Sen
//! slopes, 66 pairs each), so the cost grows slowly with the history:
//! what grows is sorting, grouping and the per-sample noise medians.

mod support;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use scent_operators::sensor_health::{
    assess, BaselineSample, CleanAirSample, CleanAirSampler, HealthConfig, ResponseSample,
};
use std::hint::black_box;
use support::{enose_values, Rng, BASE_MS};

const CHANNELS: usize = 16;
const BATCH_S: i64 = 600;
const CHANGEOVER_S: i64 = 60;
const CYCLE_S: i64 = BATCH_S + CHANGEOVER_S;
const PRODUCTS: [&str; 2] = ["espresso", "lungo"];

/// Second `t` of the plant cycle: its product (`None` in the changeover)
/// and whether the array sees aroma (in the batch or its 30 s lead).
fn phase(t: i64) -> (Option<&'static str>, bool) {
    let k = t.div_euclid(CYCLE_S);
    let into = t.rem_euclid(CYCLE_S);
    if into < BATCH_S {
        (Some(PRODUCTS[(k % 2) as usize]), true)
    } else {
        (None, into >= CYCLE_S - 30)
    }
}

/// The values of `seconds` consecutive readings: clean air near the
/// baseline, aroma raising each channel by half.
fn readings(seconds: i64) -> Vec<Vec<f64>> {
    let mut rng = Rng(0x5ce7_0011);
    (0..seconds)
        .map(|t| {
            let mut values = enose_values(&mut rng, CHANNELS, 0.05);
            if phase(t).1 {
                values.iter_mut().for_each(|v| *v *= 1.5);
            }
            values
        })
        .collect()
}

fn observe(c: &mut Criterion) {
    let config = HealthConfig::default();
    let pool = readings(2 * CYCLE_S);
    let mut group = c.benchmark_group("sensor_health/observe");
    group.throughput(Throughput::Elements(1));
    group.bench_function("enose16", |b| {
        let mut sampler = CleanAirSampler::new(&config);
        let mut step: i64 = 0;
        b.iter(|| {
            let values = &pool[(step % (2 * CYCLE_S)) as usize];
            let (product, _) = phase(step);
            let ts_ms = BASE_MS + step * 1_000 + 37;
            step += 1;
            black_box(sampler.observe(black_box(ts_ms), product, black_box(values)))
        })
    });
    group.finish();
}

/// The samples of `gaps` changeovers of one array.
fn history(gaps: i64) -> (Vec<BaselineSample>, Vec<ResponseSample>) {
    let seconds = gaps * CYCLE_S + BATCH_S + 1;
    let pool = readings(seconds);
    let mut sampler = CleanAirSampler::new(&HealthConfig::default());
    let (mut samples, mut responses) = (Vec::new(), Vec::new());
    for (t, values) in pool.iter().enumerate() {
        let t = t as i64;
        // A slow drift, so the fits have a trend to find.
        let drift = 1.0 + 0.01 * t as f64 / 3_600.0;
        let values: Vec<f64> = values.iter().map(|v| v * drift).collect();
        match sampler.observe(BASE_MS + t * 1_000 + 37, phase(t).0, &values) {
            Some(CleanAirSample::Baseline(sample)) => samples.push(sample),
            Some(CleanAirSample::Response(sample)) => responses.push(sample),
            None => {}
        }
    }
    (samples, responses)
}

fn assessment(c: &mut Criterion) {
    let config = HealthConfig::default();
    let mut group = c.benchmark_group("sensor_health/assess");
    for gaps in [80, 320] {
        let (samples, responses) = history(gaps);
        assert_eq!(samples.len() as i64, gaps);
        let now = samples.last().expect("samples").end_ms;
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("{gaps}_samples")),
            &(samples, responses),
            |b, (samples, responses)| {
                b.iter(|| black_box(assess(black_box(samples), responses, now, &config)))
            },
        );
    }
    group.finish();
}

criterion_group!(benches, observe, assessment);
criterion_main!(benches);
