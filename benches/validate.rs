//! Per-record validation: `validate::validate_reading` on valid 16- and
//! 32-channel e-nose readings.
//!
//! Every decoded reading is validated before it may enter the dataflow:
//! five identifiers, the timestamp range, the channel count, and finiteness
//! and physical range of every value. The check is O(channels) and
//! allocates nothing on success, so it should stay a small fraction of the
//! decode cost (see `benches/wire.rs`); the two array sizes show how it
//! scales with the channel count. Readings are valid, which is the common
//! case and the one that walks every check. Throughput is in records.

mod support;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use scent_operators::model::{Reading, SensorKind};
use scent_operators::validate::{validate_reading, ValidationRules};
use std::hint::black_box;
use support::{enose_values, reading, Rng};

/// Distinct readings cycled through.
const POOL: usize = 256;

/// A pool of consecutive readings of one e-nose array on line L1 during
/// batch B-20261124-L1-03: metal-oxide resistance ratios R/R0 between 0.6
/// and 2.4 with 0.4 % noise, and five-digit sequence numbers from 18,000.
fn enose_readings(channels: usize) -> Vec<Reading> {
    let mut rng = Rng(0x5ce7_0002);
    // The channels span 0.6 to 2.4 whatever their number.
    let step = 1.8 / channels as f64;
    (0..POOL as i64)
        .map(|second| Reading {
            seq: 18_000 + second as u64,
            ..reading(
                "L1",
                "enose-1",
                SensorKind::Enose,
                second,
                enose_values(&mut rng, channels, step),
            )
        })
        .collect()
}

fn validate(c: &mut Criterion) {
    let rules = ValidationRules::default();
    let mut group = c.benchmark_group("validate/validate_reading");
    group.throughput(Throughput::Elements(1));
    for channels in [16, 32] {
        let readings = enose_readings(channels);
        for reading in &readings {
            validate_reading(reading, &rules).expect("a valid reading");
        }
        group.bench_with_input(
            BenchmarkId::new("enose", channels),
            &readings,
            |b, readings| {
                let mut cycle = readings.iter().cycle();
                b.iter(|| {
                    validate_reading(black_box(cycle.next().expect("a non-empty pool")), &rules)
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, validate);
criterion_main!(benches);
