//! The JSON wire codec, one record at a time: `wire::decode_reading` and
//! `wire::encode_reading`.
//!
//! Decoding is the first stage every record meets on its worker, so its cost
//! caps what one core can ingest. It is measured on a 16-channel e-nose
//! reading and on a scalar temperature reading, as producers write them
//! (`encode_reading`: RFC 3339 timestamps, batch and product present, full
//! `f64` precision). Because bad records go to the dead-letter queue and are
//! not dropped, two malformed payloads show what a rejection costs: an e-nose
//! reading cut off halfway, which the parser reads to the end before it
//! fails, and bytes that are not JSON at all, which fail on the first byte.
//! Encoding is the write path of the plant simulator and the in-process demo
//! source. Throughput is in records.

mod support;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use scent_operators::model::{Reading, SensorKind};
use scent_operators::wire::{decode_reading, encode_reading, DecodeLimits};
use std::hint::black_box;
use support::{reading, values, Rng};

/// Distinct readings cycled through, so one cached payload does not flatter
/// the parser.
const POOL: usize = 256;

fn payloads(sensor: &str, kind: SensorKind) -> (Vec<Reading>, Vec<Vec<u8>>) {
    let mut rng = Rng(0x5ce7_0001);
    // Seconds of the sensor on line L1 during batch B-20261124-L1-03, with
    // five-digit sequence numbers from 18,000.
    let readings: Vec<Reading> = (0..POOL as i64)
        .map(|second| Reading {
            seq: 18_000 + second as u64,
            ..reading("L1", sensor, kind, second, values(&mut rng, kind))
        })
        .collect();
    let encoded = readings.iter().map(encode_reading).collect();
    (readings, encoded)
}

fn decode(c: &mut Criterion) {
    let limits = DecodeLimits::default();
    let (_, enose) = payloads("enose-1", SensorKind::Enose);
    let (_, temperature) = payloads("t-1", SensorKind::Temperature);
    let truncated: Vec<Vec<u8>> = enose
        .iter()
        .map(|payload| payload[..payload.len() / 2].to_vec())
        .collect();
    let garbage: Vec<Vec<u8>> = vec![b"\x00\x01 gateway reboot \x02".to_vec()];
    for payload in &enose {
        decode_reading(payload, &limits).expect("valid e-nose payload");
    }
    for payload in truncated.iter().chain(&garbage) {
        decode_reading(payload, &limits).expect_err("malformed payload");
    }

    let mut group = c.benchmark_group("wire/decode_reading");
    group.throughput(Throughput::Elements(1));
    let cases = [
        ("enose16", &enose),
        ("temperature", &temperature),
        ("invalid_json_truncated_enose16", &truncated),
        ("invalid_json_garbage", &garbage),
    ];
    for (name, pool) in cases {
        group.bench_function(name, |b| {
            let mut cycle = pool.iter().cycle();
            b.iter(|| {
                let payload = cycle.next().expect("a non-empty pool");
                decode_reading(black_box(payload), &limits)
            })
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let (enose, _) = payloads("enose-1", SensorKind::Enose);
    let (temperature, _) = payloads("t-1", SensorKind::Temperature);
    let mut group = c.benchmark_group("wire/encode_reading");
    group.throughput(Throughput::Elements(1));
    for (name, pool) in [("enose16", &enose), ("temperature", &temperature)] {
        group.bench_function(name, |b| {
            let mut cycle = pool.iter().cycle();
            b.iter(|| encode_reading(black_box(cycle.next().expect("a non-empty pool"))))
        });
    }
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
