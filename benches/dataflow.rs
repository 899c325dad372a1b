//! The whole quality-control dataflow in process:
//! `scent_dataflows::quality_control::quality_control` plus the epoch sink,
//! on 1 and 2 timely workers, over 100,000 ingested readings.
//!
//! This is the engine's throughput without Kafka or the ingest stages (see
//! `benches/ingest.rs` for those): readings routed by sensor, rolling
//! anomaly detection per completed epoch, the differential reduce that
//! decides batches, and the sink that hands out each completed epoch. The
//! input is a plant of 3 lines with 7 sensors each (two 16-channel e-noses,
//! temperature, humidity, pressure, pH and flow) reading at 1 Hz for about
//! 79 minutes, with 10-minute batch cycles (570 s of production, 30 s of
//! changeover) staggered across the lines, one contamination on an e-nose
//! and one stuck hygrometer, so some batches are held and most released.
//!
//! Each worker feeds its share (readings split by sensor, batch events by
//! line, as Kafka partitions would split them) the way the runtime does:
//! polls of 4,096 records sent at their epochs through `new_unordered_input`,
//! then the capability downgraded to the event-time watermark (newest
//! event time minus the 2 s allowed lateness) and one worker step. At the
//! end the capability is dropped and the dataflow runs out. Measured per
//! run: starting the workers, building the dataflow, feeding, and running
//! it to completion; cloning the pre-built input is not. Throughput is in
//! readings. The allocator is the binary's (mimalloc): records are freed
//! on other workers than the one that allocated them, and with glibc's
//! allocator two workers come out slower than one.

mod support;

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use scent_dataflows::quality_control::{quality_control, QualityControlConfig};
use scent_operators::action_changelog::ChangelogConfig;
use scent_operators::epoch_sink::EpochSink;
use scent_operators::event_clock::{Epoch, EventClockConfig};
use scent_operators::ingest::Ingested;
use scent_operators::model::{
    BatchEvent, BatchPhase, Decision, EventTimeMs, SensorKind, SourceCoord,
};
use scent_operators::source_progress::SourceAdvance;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{reading, values, Rng, BASE_MS};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::core::UnorderedInput;
use timely::dataflow::operators::vec::ToStream;
use timely::dataflow::operators::Inspect;

const READINGS: usize = 100_000;
/// Records a worker polls before it steps the dataflow (the runtime's
/// `engine.poll_batch` default).
const POLL_BATCH: usize = 4_096;
const LINES: [&str; 3] = ["L1", "L2", "L3"];
const SENSORS: [(&str, SensorKind); 7] = [
    ("enose-1", SensorKind::Enose),
    ("enose-2", SensorKind::Enose),
    ("t-1", SensorKind::Temperature),
    ("rh-1", SensorKind::Humidity),
    ("p-1", SensorKind::Pressure),
    ("ph-1", SensorKind::Ph),
    ("flow-1", SensorKind::Flow),
];
/// A batch cycle: production, then changeover.
const CYCLE_S: i64 = 600;
const PRODUCTION_S: i64 = 570;

/// The pre-built input, split among workers.
struct Plant {
    /// Per worker, its records in time order.
    shares: Vec<Vec<Ingested>>,
    /// Batch end events in the input: one decision is due for each.
    batch_ends: u64,
}

/// The plant's records, readings split by sensor and batch events by line
/// over `workers` (as keyed Kafka partitions would be).
fn plant(workers: usize) -> Plant {
    let clock = EventClockConfig::default();
    let mut rng = Rng(0x5ce7_0007);
    let mut shares: Vec<Vec<Ingested>> = vec![Vec::new(); workers];
    let mut readings = 0;
    let mut batch_ends = 0;
    let mut stuck = None;
    let mut second = 0;
    while readings < READINGS {
        for (line_index, line) in LINES.into_iter().enumerate() {
            // Lines start 200 s apart, so batch ends do not coincide.
            let position = second - 200 * line_index as i64;
            let batch_number = position.div_euclid(CYCLE_S) + 1;
            let batch_name = format!("B-20261124-{line}-{batch_number:02}");
            let phase = [(0, BatchPhase::Start), (PRODUCTION_S, BatchPhase::End)]
                .into_iter()
                .find(|(at, _)| position >= 0 && position % CYCLE_S == *at);
            if let Some((_, event)) = phase {
                batch_ends += u64::from(event == BatchPhase::End);
                let event = BatchEvent {
                    batch: batch_name.clone(),
                    line: line.into(),
                    product: "espresso".into(),
                    event,
                    ts_ms: BASE_MS + second * 1_000,
                };
                shares[line_index % workers].push(Ingested::Batch {
                    epoch: clock.epoch_of(event.ts_ms),
                    event,
                    source: SourceCoord::default(),
                });
            }
            let in_batch = position >= 0 && position % CYCLE_S < PRODUCTION_S;
            for (sensor_index, (sensor, kind)) in SENSORS.into_iter().enumerate() {
                if readings == READINGS {
                    break;
                }
                let mut values = values(&mut rng, kind);
                // A contamination: two channels of one e-nose rise by half
                // for a minute.
                if line == "L2" && sensor == "enose-1" && (1_500..1_560).contains(&second) {
                    values[3] *= 1.5;
                    values[5] *= 1.5;
                }
                // A hygrometer whose gateway repeats its last value.
                if line == "L3" && sensor == "rh-1" && (3_000..3_060).contains(&second) {
                    values = stuck.get_or_insert(values).clone();
                }
                let mut reading = reading(line, sensor, kind, second, values);
                // The sensors of a line report in turn within the second.
                reading.ts_ms += 97 * sensor_index as i64;
                reading.batch = in_batch.then(|| batch_name.clone());
                reading.product = in_batch.then(|| "espresso".to_owned());
                let partition = line_index * SENSORS.len() + sensor_index;
                shares[partition % workers].push(Ingested::Reading {
                    epoch: clock.epoch_of(reading.ts_ms),
                    reading,
                    source: SourceCoord::default(),
                });
                readings += 1;
            }
        }
        second += 1;
    }
    Plant { shares, batch_ends }
}

/// What one run produced, over all workers.
#[derive(Debug, Default)]
struct Counts {
    anomalies: AtomicU64,
    released: AtomicU64,
    held: AtomicU64,
    dead_letters: AtomicU64,
}

fn stamp(item: &Ingested) -> (Epoch, EventTimeMs) {
    match item {
        Ingested::Reading { epoch, reading, .. } => (*epoch, reading.ts_ms),
        Ingested::Batch { epoch, event, .. } => (*epoch, event.ts_ms),
        Ingested::Model { .. } | Ingested::Rejected(_) => {
            panic!("the bench feeds readings and batch events only")
        }
    }
}

/// Runs the dataflow on `workers` threads, each feeding its own share.
fn run(shares: Vec<Vec<Ingested>>, workers: usize) -> Arc<Counts> {
    let shares: Arc<Vec<Mutex<Vec<Ingested>>>> =
        Arc::new(shares.into_iter().map(Mutex::new).collect());
    let counts = Arc::new(Counts::default());
    let totals = Arc::clone(&counts);
    timely::execute(timely::Config::process(workers), move |worker| {
        let share = std::mem::take(&mut *shares[worker.index()].lock().expect("unpoisoned"));
        let counts = Arc::clone(&totals);
        let (mut input, mut capability) = worker.dataflow::<Epoch, _, _>(|scope| {
            let ((input, capability), ingested) =
                scope.new_unordered_input::<CapacityContainerBuilder<Vec<Ingested>>>();
            let clock = EventClockConfig::default();
            let changelog = ChangelogConfig {
                seal_after_ms: clock.allowed_lateness_ms,
                epoch_ms: clock.epoch_ms,
            };
            let flow = quality_control(ingested, &QualityControlConfig::default(), changelog);
            let anomaly_counts = Arc::clone(&counts);
            flow.anomalies.inner.inspect(move |_| {
                anomaly_counts.anomalies.fetch_add(1, Ordering::Relaxed);
            });
            let no_advances = Vec::<SourceAdvance>::new().to_stream(scope);
            flow.actions
                .epoch_sink(flow.dead_letters, no_advances, move |output| {
                    // Each batch's final decision: its sealed release.
                    for action in output.actions.iter().filter(|a| a.sealed) {
                        let counter = match action.decision {
                            Some(Decision::Release) => &counts.released,
                            _ => &counts.held,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    let letters = output.dead_letters.len() as u64;
                    counts.dead_letters.fetch_add(letters, Ordering::Relaxed);
                });
            (input, capability)
        });

        let clock = EventClockConfig::default();
        let mut newest_ms = EventTimeMs::MIN;
        let mut records = share.into_iter();
        let mut by_epoch: BTreeMap<Epoch, Vec<Ingested>> = BTreeMap::new();
        loop {
            for item in records.by_ref().take(POLL_BATCH) {
                let (epoch, ts_ms) = stamp(&item);
                newest_ms = newest_ms.max(ts_ms);
                by_epoch.entry(epoch).or_default().push(item);
            }
            if by_epoch.is_empty() {
                break;
            }
            let mut handle = input.activate();
            for (epoch, items) in std::mem::take(&mut by_epoch) {
                handle
                    .session(&capability.delayed(&epoch))
                    .give_iterator(items.into_iter());
            }
            drop(handle);
            let watermark = clock.epoch_of(newest_ms - clock.allowed_lateness_ms as EventTimeMs);
            if watermark > *capability.time() {
                capability.downgrade(&watermark);
            }
            worker.step();
        }
        // The source is exhausted: every epoch can complete, and
        // `timely::execute` steps the worker until the dataflow is done.
        drop(capability);
    })
    .expect("timely workers start")
    .join()
    .into_iter()
    .collect::<Result<Vec<()>, String>>()
    .expect("no worker panicked");
    counts
}

fn dataflow(c: &mut Criterion) {
    let mut group = c.benchmark_group("dataflow/quality_control");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(READINGS as u64));
    for workers in [1, 2] {
        let plant = plant(workers);
        let check = |counts: &Counts| {
            let decided =
                counts.released.load(Ordering::Relaxed) + counts.held.load(Ordering::Relaxed);
            assert_eq!(
                decided, plant.batch_ends,
                "every ended batch is decided once"
            );
            assert!(
                counts.held.load(Ordering::Relaxed) >= 2,
                "the faults hold their batches"
            );
            assert_eq!(counts.dead_letters.load(Ordering::Relaxed), 0);
        };
        let counts = run(plant.shares.clone(), workers);
        check(&counts);
        eprintln!(
            "{workers} worker(s): {READINGS} readings, {} batch ends -> {} anomalies, {} released, {} held",
            plant.batch_ends,
            counts.anomalies.load(Ordering::Relaxed),
            counts.released.load(Ordering::Relaxed),
            counts.held.load(Ordering::Relaxed),
        );
        group.bench_function(BenchmarkId::new("workers", workers), |b| {
            b.iter_custom(|iterations| {
                let mut measured = Duration::ZERO;
                for _ in 0..iterations {
                    let shares = plant.shares.clone();
                    let started = Instant::now();
                    let counts = run(shares, workers);
                    measured += started.elapsed();
                    check(&counts);
                }
                measured
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // A run takes a sizeable fraction of a second: ten samples of one run
    // each keep `cargo bench --bench dataflow` under a minute.
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));
    targets = dataflow
}
criterion_main!(benches);
