//! The plant simulator: records generated per second on one thread.
//!
//! The simulator feeds the demo and the load tests, so it must outrun the
//! engine by a wide margin. `line/default` generates one line of the default
//! plant (two 16-channel e-noses and five process sensors), `line/enose_only`
//! one line of seven 16-channel e-noses; both lazily, as `scent demo` and
//! `scent simulate` consume them. Throughput is in records.

mod support;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use scent::sim::{Plant, SimConfig};
use std::hint::black_box;

const RECORDS: u64 = 100_000;

fn generate(c: &mut Criterion) {
    let mut group = c.benchmark_group("simulator");
    group.sample_size(10);
    let plants = [
        ("line/default", SimConfig::default()),
        (
            "line/enose_only",
            SimConfig {
                enose_per_line: 7,
                process_sensors: Vec::new(),
                ..SimConfig::default()
            },
        ),
    ];
    for (name, config) in plants {
        let plant = Plant::new(SimConfig::for_readings_with(config, 3 * RECORDS)).unwrap();
        group.throughput(Throughput::Elements(RECORDS));
        group.bench_function(name, |b| {
            b.iter(|| black_box(plant.line_stream(0).take(RECORDS as usize).count()))
        });
    }
    group.finish();
}

criterion_group!(benches, generate);
criterion_main!(benches);
