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

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use scent_operators::model::{Reading, SensorKind};
use scent_operators::validate::{validate_reading, ValidationRules};
use std::hint::black_box;

// The allocator of the `scent` binary, so the figures are the engine's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// 2026-11-24T08:00:00Z, a production morning.
const BASE_MS: i64 = 1_795_514_400_000;

/// Distinct readings cycled through.
const POOL: usize = 256;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Roughly normal noise: the sum of four uniforms, centred (σ ≈ 0.58).
    fn noise(&mut self) -> f64 {
        (0..4)
            .map(|_| (self.next() >> 11) as f64 / (1u64 << 53) as f64)
            .sum::<f64>()
            - 2.0
    }
}

/// A pool of consecutive readings of one e-nose array: metal-oxide
/// resistance ratios R/R0 between 0.6 and 2.4 with 0.4 % noise.
fn enose_readings(channels: usize) -> Vec<Reading> {
    let mut rng = Rng(0x5ce7_0002);
    (0..POOL as i64)
        .map(|second| Reading {
            plant: "p1".into(),
            line: "L1".into(),
            sensor: "enose-1".into(),
            kind: SensorKind::Enose,
            ts_ms: BASE_MS + second * 1_000 + 37,
            seq: 18_000 + second as u64,
            batch: Some("B-20261124-L1-03".into()),
            product: Some("espresso".into()),
            values: (0..channels)
                .map(|c| (0.6 + 1.8 * c as f64 / channels as f64) * (1.0 + 0.004 * rng.noise()))
                .collect(),
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
