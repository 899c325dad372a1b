//! The source-side stages end to end: `ingest::Ingestor::ingest` per record,
//! i.e. decode, validate, duplicate check and event-time admission of one
//! raw 16-channel e-nose reading.
//!
//! Every record of `scent.readings` passes these stages inside the source of
//! its worker before the dataflow sees it, so this is the per-core ceiling
//! of the ingest path (compare with `benches/wire.rs` and
//! `benches/validate.rs` for the parts). The records are pre-encoded, as
//! they arrive from Kafka: six e-noses on three lines, one reading per
//! second each, interleaved in time order with strictly increasing `seq`
//! and `ts`, so every one is accepted on time. Cloning a record (done by
//! the source when it copies the payload out of the consumer) is outside
//! the measurement. When the pool runs out, the ingestor starts afresh,
//! once per 60,000 records. Throughput is in records.

mod support;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use scent_operators::event_clock::{EventClock, EventClockConfig, PartitionId};
use scent_operators::ingest::{Ingested, Ingestor};
use scent_operators::model::{InputStream, RawRecord, SensorKind, SourceCoord};
use scent_operators::validate::ValidationRules;
use scent_operators::wire::{encode_reading, DecodeLimits};
use support::{reading, values, Rng};

const PARTITION: PartitionId = (0, 0);
/// Seconds of readings in the pool.
const SECONDS: i64 = 10_000;

/// Encoded readings of two 16-channel e-noses on each of three lines, in
/// time order, with the source coordinates a single partition gives them.
fn records() -> Vec<RawRecord> {
    let mut rng = Rng(0x5ce7_0006);
    let mut records = Vec::new();
    for second in 0..SECONDS {
        for line in ["L1", "L2", "L3"] {
            for (index, sensor) in ["enose-1", "enose-2"].into_iter().enumerate() {
                let kind = SensorKind::Enose;
                let mut reading = reading(line, sensor, kind, second, values(&mut rng, kind));
                // Gateways stamp with some jitter within the second.
                reading.ts_ms += 211 * index as i64;
                // Batches last 600 s.
                reading.batch = Some(format!("B-20261124-{line}-{:02}", second / 600 + 1));
                let offset = records.len() as i64;
                records.push(RawRecord {
                    stream: InputStream::Readings,
                    source: SourceCoord {
                        topic: "scent.readings".into(),
                        partition: PARTITION.1,
                        offset,
                    },
                    key: Some(reading.key().into_bytes()),
                    payload: encode_reading(&reading),
                });
            }
        }
    }
    records
}

fn fresh_ingestor() -> Ingestor {
    let clock = EventClock::new(EventClockConfig::default(), [PARTITION], 0, 0);
    Ingestor::new(DecodeLimits::default(), ValidationRules::default(), clock)
}

fn ingest(c: &mut Criterion) {
    let pool = records();
    let mut check = fresh_ingestor();
    for record in &pool {
        match check.ingest(record.clone(), PARTITION, 0) {
            Ingested::Reading { .. } => {}
            other => panic!("every pooled record is accepted, not {other:?}"),
        }
    }

    let fresh = fresh_ingestor();
    let mut ingestor = fresh.clone();
    let mut cursor = 0;
    let mut rejected = 0u64;
    let mut group = c.benchmark_group("ingest/ingest");
    group.throughput(Throughput::Elements(1));
    group.bench_function("enose16", |b| {
        b.iter_batched(
            || {
                let index = cursor % pool.len();
                cursor += 1;
                (index == 0, pool[index].clone())
            },
            |(restart, record)| {
                if restart {
                    ingestor = fresh.clone();
                }
                let outcome = ingestor.ingest(record, PARTITION, 0);
                if matches!(outcome, Ingested::Rejected(_)) {
                    rejected += 1;
                }
                outcome
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
    assert_eq!(rejected, 0, "every measured record was accepted");
}

criterion_group!(benches, ingest);
criterion_main!(benches);
