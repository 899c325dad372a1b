//! Exposure cycles: e-nose readings averaged over fixed event-time windows
//! of one batch, the observations that fingerprints are fitted on and
//! scored.
//!
//! An in-line e-nose on a continuous process samples the headspace once a
//! second; one reading carries 0.5 % noise per channel, too much to compare
//! fingerprints reading by reading. The plant's unit of observation is the
//! *cycle*: the readings of one array within one window of `cycle_ms` of
//! event time (the grid `⌊ts / cycle_ms⌋`, the same for every array, so
//! cycles of one line line up) and within one batch. A cycle's vector is
//! the per-channel mean of its readings; averaging `n` readings divides the
//! noise by `√n`. (Arrays that run discrete sniff cycles, purge, exposure,
//! recovery, are segmented by the sniff-feature kernel; feeding its cycles
//! into fingerprints is not wired yet.)
//!
//! A cycle is emitted when the first reading of a later window (or of
//! another batch) arrives for its array, so its delay is one window plus the
//! epoch it closes in. Readings outside batches (changeovers) make no
//! cycles. Cycles with fewer than `min_readings` readings (dropouts, cut by
//! a batch boundary) are dropped and counted.
//!
//! State: one open cycle per array (`channels` running sums). The kernel
//! runs in the dataflow's sensor stage (`scent_dataflows::sensor_stage`),
//! after the quality flags, on readings exchanged by `line/sensor` and
//! processed in `(line, sensor, ts, seq)` order per completed epoch, which
//! makes the output a function of the input alone.

use crate::model::{EventTimeMs, Reading, SensorKind};
use crate::sensor_epochs::SensorMap;
use serde::{Deserialize, Serialize};

/// Parameters of cycle formation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CycleConfig {
    /// Width of a cycle, event-time milliseconds.
    pub cycle_ms: i64,
    /// Readings a cycle needs to be emitted.
    pub min_readings: usize,
}

impl Default for CycleConfig {
    fn default() -> Self {
        CycleConfig {
            cycle_ms: 10_000,
            min_readings: 5,
        }
    }
}

impl CycleConfig {
    /// Checks the parameters; the error names the offending key.
    pub fn check(&self) -> Result<(), String> {
        if self.cycle_ms <= 0 {
            return Err(format!("cycle_ms must be positive, got {}", self.cycle_ms));
        }
        if self.min_readings == 0 {
            return Err("min_readings must be at least 1".into());
        }
        Ok(())
    }
}

/// One observation of one e-nose array: the mean of its readings in one
/// window of one batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cycle {
    /// Line of the array.
    pub line: String,
    /// The array.
    pub sensor: String,
    /// The batch the readings belong to.
    pub batch: String,
    /// The product of the batch.
    pub product: String,
    /// Start of the window (inclusive), event time.
    pub start_ms: EventTimeMs,
    /// Event time of the last reading in the cycle.
    pub last_ms: EventTimeMs,
    /// Sequence number of the first reading in the cycle.
    pub first_seq: u64,
    /// Sequence number of the last reading in the cycle.
    pub last_seq: u64,
    /// Readings averaged.
    pub readings: u32,
    /// Mean value per channel.
    pub values: Vec<f64>,
}

impl PartialEq for Cycle {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for Cycle {}
impl PartialOrd for Cycle {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Cycle {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (
            &self.line,
            &self.sensor,
            self.start_ms,
            &self.batch,
            &self.product,
        )
            .cmp(&(
                &other.line,
                &other.sensor,
                other.start_ms,
                &other.batch,
                &other.product,
            ))
            .then_with(|| {
                (self.last_ms, self.first_seq, self.last_seq, self.readings).cmp(&(
                    other.last_ms,
                    other.first_seq,
                    other.last_seq,
                    other.readings,
                ))
            })
            .then_with(|| {
                self.values
                    .iter()
                    .zip(&other.values)
                    .map(|(a, b)| a.total_cmp(b))
                    .find(|order| order.is_ne())
                    .unwrap_or_else(|| self.values.len().cmp(&other.values.len()))
            })
    }
}

/// The open cycle of one array.
#[derive(Debug, Clone)]
struct OpenCycle {
    window: i64,
    batch: String,
    product: String,
    last_ms: EventTimeMs,
    first_seq: u64,
    last_seq: u64,
    readings: u32,
    sums: Vec<f64>,
}

/// The cycle builder of one worker: the open cycle of every array, by line
/// then sensor (so a reading finds its array without allocating).
#[derive(Debug, Clone, Default)]
pub struct CycleBuilder {
    config: CycleConfig,
    open: SensorMap<Option<OpenCycle>>,
    dropped: u64,
}

impl CycleBuilder {
    /// A builder with the given parameters.
    pub fn new(config: CycleConfig) -> Self {
        CycleBuilder {
            config,
            open: SensorMap::default(),
            dropped: 0,
        }
    }

    /// Cycles dropped for having too few readings.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Arrays with an open cycle.
    pub fn arrays(&self) -> usize {
        self.open.values().filter(|open| open.is_some()).count()
    }

    /// Adds one reading (in `(ts, seq)` order per array); appends the cycle
    /// it completes, if any, to `cycles`. Readings of other kinds and
    /// readings outside batches are ignored.
    pub fn observe(&mut self, reading: &Reading, cycles: &mut Vec<Cycle>) {
        if reading.kind != SensorKind::Enose {
            return;
        }
        let window = reading.ts_ms.div_euclid(self.config.cycle_ms);
        let context = reading.batch.as_ref().zip(reading.product.as_ref());
        let slot = self.open.entry(&reading.line, &reading.sensor);
        let same = slot.as_ref().is_some_and(|open| {
            open.window == window
                && open.sums.len() == reading.values.len()
                && context.is_some_and(|(b, p)| *b == open.batch && *p == open.product)
        });
        if same {
            let open = slot.as_mut().expect("checked above");
            open.last_ms = reading.ts_ms;
            open.last_seq = reading.seq;
            open.readings += 1;
            for (sum, value) in open.sums.iter_mut().zip(&reading.values) {
                *sum += value;
            }
            return;
        }
        let done = slot.take();
        if let Some((batch, product)) = context {
            *slot = Some(OpenCycle {
                window,
                batch: batch.clone(),
                product: product.clone(),
                last_ms: reading.ts_ms,
                first_seq: reading.seq,
                last_seq: reading.seq,
                readings: 1,
                sums: reading.values.clone(),
            });
        }
        if let Some(done) = done {
            self.close(&reading.line, &reading.sensor, done, cycles);
        }
    }

    fn close(&mut self, line: &str, sensor: &str, open: OpenCycle, cycles: &mut Vec<Cycle>) {
        if (open.readings as usize) < self.config.min_readings {
            self.dropped += 1;
            return;
        }
        let n = f64::from(open.readings);
        cycles.push(Cycle {
            line: line.to_owned(),
            sensor: sensor.to_owned(),
            batch: open.batch,
            product: open.product,
            start_ms: open.window * self.config.cycle_ms,
            last_ms: open.last_ms,
            first_seq: open.first_seq,
            last_seq: open.last_seq,
            readings: open.readings,
            values: open.sums.into_iter().map(|s| s / n).collect(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(ts_ms: i64, batch: Option<&str>, values: Vec<f64>) -> Reading {
        Reading {
            plant: "p1".into(),
            line: "L1".into(),
            sensor: "enose-1".into(),
            kind: SensorKind::Enose,
            ts_ms,
            seq: ts_ms as u64 / 1_000 + 1,
            batch: batch.map(str::to_owned),
            product: batch.map(|_| "espresso".to_owned()),
            values,
        }
    }

    #[test]
    fn a_window_of_readings_becomes_one_mean_cycle() {
        let mut builder = CycleBuilder::new(CycleConfig::default());
        let mut cycles = Vec::new();
        for second in 0..25 {
            let v = (second % 2) as f64;
            builder.observe(
                &reading(second * 1_000, Some("B1"), vec![1.0 + v, 2.0]),
                &mut cycles,
            );
        }
        assert_eq!(cycles.len(), 2, "windows 0..10 s and 10..20 s are complete");
        assert_eq!(cycles[0].start_ms, 0);
        assert_eq!(cycles[0].readings, 10);
        assert_eq!(cycles[0].values, vec![1.5, 2.0]);
        assert_eq!((cycles[0].first_seq, cycles[0].last_seq), (1, 10));
        assert_eq!(cycles[1].start_ms, 10_000);
    }

    #[test]
    fn batch_boundaries_cut_cycles_and_short_ones_are_dropped() {
        let mut builder = CycleBuilder::new(CycleConfig::default());
        let mut cycles = Vec::new();
        for second in 0..13 {
            let batch = if second < 3 { Some("B1") } else { Some("B2") };
            builder.observe(&reading(second * 1_000, batch, vec![1.0]), &mut cycles);
        }
        for second in 13..20 {
            builder.observe(&reading(second * 1_000, None, vec![1.0]), &mut cycles);
        }
        // B1 had 3 readings (dropped); B2 7 readings in window 0, 3 in window 1 (dropped
        // when the changeover began).
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].batch, "B2");
        assert_eq!(cycles[0].readings, 7);
        assert_eq!(builder.dropped(), 2);
    }

    #[test]
    fn process_sensors_make_no_cycles() {
        let mut builder = CycleBuilder::new(CycleConfig::default());
        let mut cycles = Vec::new();
        for second in 0..30 {
            let mut r = reading(second * 1_000, Some("B1"), vec![90.0]);
            r.kind = SensorKind::Temperature;
            builder.observe(&r, &mut cycles);
        }
        assert!(cycles.is_empty());
        assert_eq!(builder.arrays(), 0);
    }

    #[test]
    fn configuration_errors_name_the_key() {
        let bad = CycleConfig {
            cycle_ms: 0,
            ..CycleConfig::default()
        };
        assert!(bad.check().unwrap_err().contains("cycle_ms"));
    }
}
