//! Rolling anomaly detection: `SensorMonitor::observe` per reading, and
//! `RollingAnomalyDetector::process` per completed epoch batch.
//!
//! The detectors see every valid reading and keep per-sensor state, so
//! their per-reading cost bounds what one worker can monitor.
//!
//! * `observe/enose16`: one 16-channel e-nose reading through the gap,
//!   flat-line and z-score rules, in steady state: the monitor has learned
//!   two full windows first, the input is noisy (0.4 % relative) so no rule
//!   fires and every reading enters its 16 windows. This is the common
//!   path of a healthy line.
//! * `process/10000_readings_20_sensors`: what the dataflow operator does
//!   when an epoch completes: sort the epoch's readings into
//!   `(line, sensor, ts, seq)` order, look up each sensor's monitor, observe.
//!   The batch holds 500 s of a plant of 4 lines with two 16-channel e-noses
//!   and three scalar sensors each, in arrival (time-major) order; each
//!   iteration continues where the previous one stopped.
//!
//! Throughput is in readings.

mod support;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use scent_operators::model::{Reading, SensorKind};
use scent_operators::rolling_anomaly::{
    RollingAnomalyConfig, RollingAnomalyDetector, SensorMonitor,
};
use std::hint::black_box;
use support::{reading, values, Rng, BASE_MS};

fn observe(c: &mut Criterion) {
    const POOL: usize = 1_024;
    let config = RollingAnomalyConfig::default();
    let mut rng = Rng(0x5ce7_0003);
    let kind = SensorKind::Enose;
    let mut pool: Vec<Reading> = (0..POOL as i64)
        .map(|second| reading("L1", "enose-1", kind, second, values(&mut rng, kind)))
        .collect();
    let mut monitor = SensorMonitor::default();
    let mut anomalies = Vec::new();
    let mut second: i64 = 0;
    // Each reading is a pool entry stamped with the next second, so event
    // time moves forward as it does on a live line.
    let mut observe_next = |monitor: &mut SensorMonitor, anomalies: &mut Vec<_>| {
        let reading = &mut pool[second as usize % POOL];
        reading.ts_ms = BASE_MS + second * 1_000 + 37;
        reading.seq = second as u64 + 1;
        monitor.observe(black_box(reading), &config, anomalies);
        second += 1;
    };
    for _ in 0..(2 * config.window).max(POOL) {
        observe_next(&mut monitor, &mut anomalies);
    }
    // `Rng::noise` is bounded by ±2, so z never nears the limit of 6.
    assert!(anomalies.is_empty(), "noisy input raises no anomaly");

    let mut group = c.benchmark_group("rolling_anomaly/observe");
    group.throughput(Throughput::Elements(1));
    group.bench_function("enose16", |b| {
        b.iter(|| observe_next(&mut monitor, &mut anomalies))
    });
    group.finish();
    assert!(anomalies.is_empty(), "noisy input raises no anomaly");
}

fn process(c: &mut Criterion) {
    const SECONDS: i64 = 500;
    let lines = ["L1", "L2", "L3", "L4"];
    let sensors = [
        ("enose-1", SensorKind::Enose),
        ("enose-2", SensorKind::Enose),
        ("t-1", SensorKind::Temperature),
        ("rh-1", SensorKind::Humidity),
        ("p-1", SensorKind::Pressure),
    ];
    let mut rng = Rng(0x5ce7_0004);
    let mut template = Vec::new();
    for second in 0..SECONDS {
        for line in lines {
            for (sensor, kind) in sensors {
                template.push(reading(line, sensor, kind, second, values(&mut rng, kind)));
            }
        }
    }
    assert_eq!(template.len(), 10_000);
    // The `batch_index`-th 500 s of the same plant.
    let batch = |batch_index: i64| {
        let mut readings = template.clone();
        for reading in &mut readings {
            reading.ts_ms += batch_index * SECONDS * 1_000;
            reading.seq += (batch_index * SECONDS) as u64;
        }
        readings
    };

    let mut detector = RollingAnomalyDetector::new(RollingAnomalyConfig::default());
    let mut anomalies = Vec::new();
    let mut next_batch = 0;
    while next_batch < 2 {
        detector.process(&mut batch(next_batch), &mut anomalies);
        next_batch += 1;
    }
    assert_eq!(detector.sensors(), 20);
    assert!(anomalies.is_empty(), "noisy input raises no anomaly");

    let mut group = c.benchmark_group("rolling_anomaly/process");
    group.throughput(Throughput::Elements(template.len() as u64));
    group.bench_function("10000_readings_20_sensors", |b| {
        b.iter_batched(
            || {
                let readings = batch(next_batch);
                next_batch += 1;
                readings
            },
            |mut readings| {
                detector.process(&mut readings, &mut anomalies);
                readings
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
    assert!(anomalies.is_empty(), "noisy input raises no anomaly");
}

criterion_group!(benches, observe, process);
criterion_main!(benches);
