//! The immutable model of a run: configuration, schedule, sensor parameters
//! and ground truth, shared (behind an `Arc`) by every stream of the run.
//!
//! [`Model::values`] is the one place where a measurement is computed; both
//! the sequential [`LineStream`](super::LineStream) and the random-access
//! [`Model::reading_at`] go through it with a noise generator positioned at
//! the same word, so they agree bit for bit.

use super::malformed::{malformed_payload, MALFORMED_CLASSES};
use super::physics::{
    derive_seed, enose_values, finish, noise_rng_at, scalar_value, ProductModel, SensorModel,
    TAG_NOISE,
};
use super::physics::{Conditions, Contaminant, LineClimate};
use super::schedule::{
    contaminant_library, schedule_auto_drifts, schedule_events, Effect, Emission, Grid, LineModel,
};
use super::truth::{GroundTruth, MalformedTruth};
use super::{EventPlan, SimConfig, SimError};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scent_operators::model::{Reading, RejectReason, SensorKind};

/// Where a malformed record goes: right after the reading of `sensor` at
/// `step` on its line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MalformedSlot {
    pub step: u64,
    pub sensor: usize,
    pub record: usize,
}

/// Everything about a run that does not change while it is generated.
#[derive(Debug)]
pub(crate) struct Model {
    pub config: SimConfig,
    pub grid: Grid,
    pub products: Vec<ProductModel>,
    pub contaminants: Vec<Contaminant>,
    pub lines: Vec<LineModel>,
    pub noise_key: [u8; 32],
    /// Per line, in stream order.
    pub malformed_slots: Vec<Vec<MalformedSlot>>,
    pub truth: GroundTruth,
}

impl Model {
    /// Validates `config` and computes the schedule, the sensor parameters,
    /// the ground truth and the malformed records.
    pub fn build(config: SimConfig) -> Result<Model, SimError> {
        config.validate()?;
        let grid = Grid::new(&config);
        let channels = config.enose_channels;
        let products: Vec<ProductModel> = config
            .products
            .iter()
            .enumerate()
            .map(|(index, name)| ProductModel::new(config.seed, index, name, channels))
            .collect();
        let contaminants = contaminant_library(config.seed, channels);
        let mut lines = (0..config.lines)
            .map(|index| build_line(&config, index, &grid, &products))
            .collect::<Result<Vec<_>, _>>()?;
        if let EventPlan::Auto(auto) = &config.events {
            schedule_auto_drifts(config.seed, auto.drifting_sensors, &mut lines, &grid);
        }
        let mut noise_key = [0u8; 32];
        ChaCha8Rng::seed_from_u64(derive_seed(config.seed, TAG_NOISE)).fill_bytes(&mut noise_key);

        let mut truth = GroundTruth::default();
        for line in &lines {
            let line_truth = line.truth(&products, &grid);
            truth.events.extend(line_truth.events);
            truth.batches.extend(line_truth.batches);
            truth.maintenance.extend(line_truth.maintenance);
        }
        // Stable sorts: ties keep line order (and sensor order within a line).
        truth.events.sort_by_key(|event| event.start_ms);
        truth.batches.sort_by_key(|batch| batch.start_ms);
        truth.maintenance.sort_by_key(|item| item.due_ms);

        let mut model = Model {
            malformed_slots: vec![Vec::new(); lines.len()],
            config,
            grid,
            products,
            contaminants,
            lines,
            noise_key,
            truth,
        };
        model.inject_malformed();
        Ok(model)
    }

    /// What the sensors of a line are exposed to at grid step `step`.
    ///
    /// The process is evaluated at the step's grid time, once for all
    /// sensors of the line: the sensors' phase jitter only shifts their
    /// timestamps (and decides batch membership and faults).
    pub fn conditions(&self, line_index: usize, step: u64) -> Conditions {
        self.lines[line_index].conditions(
            self.grid.ts(step, 0),
            &self.products,
            self.config.aroma_lead_ms,
        )
    }

    /// The measured values of `sensor` at `step` (event time `ts`) under
    /// `conditions`, with `rng` positioned at the step's noise words.
    /// Ignores stuck and dropout faults, which decide whether and what the
    /// gateway sends.
    #[allow(clippy::too_many_arguments)]
    pub fn values(
        &self,
        line_index: usize,
        sensor_index: usize,
        step: u64,
        ts: i64,
        conditions: &Conditions,
        rng: &mut ChaCha8Rng,
        out: &mut Vec<f64>,
    ) {
        let line = &self.lines[line_index];
        let sensor = &line.sensors[sensor_index];
        out.clear();
        if sensor.kind == SensorKind::Enose {
            let grid_ts = self.grid.ts(step, 0);
            let hours = (grid_ts - self.grid.start_ms) as f64 / 3_600_000.0;
            let drift = line.sensor_drift(sensor_index, grid_ts);
            enose_values(
                sensor,
                conditions,
                hours,
                drift,
                &self.contaminants,
                rng,
                out,
            );
        } else {
            out.push(scalar_value(sensor.kind, conditions, &line.climate, rng));
        }
        if let Some(event) = line.event_at(ts) {
            if let Effect::Spike {
                sensor: faulty,
                spikes,
            } = &event.effect
            {
                if *faulty == sensor_index {
                    if let Ok(index) = spikes.binary_search_by_key(&step, |spike| spike.step) {
                        let spike = &spikes[index];
                        for &(channel, factor) in &spike.factors {
                            out[channel] *= factor;
                        }
                        if spike.factors.is_empty() {
                            out[0] += spike.offset;
                        }
                    }
                }
            }
        }
        for value in out.iter_mut() {
            *value = finish(sensor.kind, *value);
        }
    }

    /// A reading with its labels (batch and product at `ts`).
    pub fn reading(
        &self,
        line_index: usize,
        sensor_index: usize,
        ts: i64,
        seq: u64,
        values: Vec<f64>,
    ) -> Reading {
        let line = &self.lines[line_index];
        let batch = line.batch_at(ts);
        Reading {
            plant: self.config.plant.clone(),
            line: line.name.clone(),
            sensor: line.sensors[sensor_index].name.clone(),
            kind: line.sensors[sensor_index].kind,
            ts_ms: ts,
            seq,
            batch: batch.map(|batch| batch.id.clone()),
            product: batch.map(|batch| self.products[batch.product].name.clone()),
            values,
        }
    }

    /// The reading `sensor` emits at `step`, computed on its own; `None`
    /// if it emits nothing then (dropout, or past the end of the run).
    pub fn reading_at(&self, line_index: usize, sensor_index: usize, step: u64) -> Option<Reading> {
        if step >= self.grid.steps {
            return None;
        }
        let line = &self.lines[line_index];
        let sensor = &line.sensors[sensor_index];
        let ts = self.grid.ts(step, sensor.jitter_ms);
        if let Emission::Dropped = line.emission(sensor_index, ts) {
            return None;
        }
        let source = self.value_source(line_index, sensor_index, step);
        let mut rng = noise_rng_at(self.noise_key, sensor, source);
        let mut values = Vec::with_capacity(sensor.channels.len().max(1));
        let source_ts = self.grid.ts(source, sensor.jitter_ms);
        let conditions = self.conditions(line_index, source);
        self.values(
            line_index,
            sensor_index,
            source,
            source_ts,
            &conditions,
            &mut rng,
            &mut values,
        );
        let seq = step + 1 - line.dropped_before(sensor_index, step, &self.grid);
        Some(self.reading(line_index, sensor_index, ts, seq, values))
    }

    /// The step whose measurement the reading at `step` carries: itself,
    /// or, for a stuck sensor, the last reading emitted before it got stuck
    /// (the first stuck sample when there is none).
    fn value_source(&self, line_index: usize, sensor_index: usize, step: u64) -> u64 {
        let line = &self.lines[line_index];
        let jitter = line.sensors[sensor_index].jitter_ms;
        let mut step = step;
        loop {
            let Emission::Stuck(event) = line.emission(sensor_index, self.grid.ts(step, jitter))
            else {
                return step;
            };
            let first = self.grid.first_step_at_or_after(event.start_ms, jitter);
            let previous = (0..first).rev().find(|&earlier| {
                !matches!(
                    line.emission(sensor_index, self.grid.ts(earlier, jitter)),
                    Emission::Dropped
                )
            });
            match previous {
                Some(earlier) => step = earlier,
                None => return first,
            }
        }
    }

    /// Valid readings in the whole run.
    pub fn reading_count(&self) -> u64 {
        self.lines
            .iter()
            .map(|line| {
                (0..line.sensors.len())
                    .map(|sensor| {
                        self.grid.steps - line.dropped_before(sensor, self.grid.steps, &self.grid)
                    })
                    .sum::<u64>()
            })
            .sum()
    }

    /// Derives `malformed_count` malformed records from real readings,
    /// spread evenly over the run and the lines, and records them in the
    /// ground truth and the per-line slots.
    fn inject_malformed(&mut self) {
        let count = self.config.malformed_count;
        let steps = self.grid.steps;
        for index in 0..count {
            let class = MALFORMED_CLASSES[index % MALFORMED_CLASSES.len()];
            let line_index = index % self.lines.len();
            let target = ((2 * index as u128 + 1) * u128::from(steps) / (2 * count as u128)) as u64;
            let sensor = self.malformed_sensor(class, line_index, index);
            let found = (target..steps)
                .chain((0..target).rev())
                .find_map(|step| Some((step, self.reading_at(line_index, sensor, step)?)));
            let Some((step, reading)) = found else {
                continue;
            };
            let record = self.truth.malformed.len();
            self.truth.malformed.push(MalformedTruth {
                index,
                key: reading.key(),
                ts_ms: reading.ts_ms,
                payload: malformed_payload(class, &reading),
                expected_reason: class,
            });
            self.malformed_slots[line_index].push(MalformedSlot {
                step,
                sensor,
                record,
            });
        }
        for (line, slots) in self.lines.iter().zip(&mut self.malformed_slots) {
            let mut rank = vec![0; line.sensors.len()];
            for (position, &sensor) in line.emission_order.iter().enumerate() {
                rank[sensor] = position;
            }
            slots.sort_by_key(|slot| (slot.step, rank[slot.sensor], slot.record));
        }
    }

    /// The sensor a malformed record of `class` is derived from: an e-nose
    /// array for a channel-count error, the humidity sensor for an
    /// out-of-range value, otherwise the line's sensors in turn.
    fn malformed_sensor(&self, class: RejectReason, line_index: usize, index: usize) -> usize {
        let sensors = &self.lines[line_index].sensors;
        let turn = index / MALFORMED_CLASSES.len();
        let of_kind = |wanted: fn(SensorKind) -> bool| -> Vec<usize> {
            (0..sensors.len())
                .filter(|&s| wanted(sensors[s].kind))
                .collect()
        };
        let candidates = match class {
            RejectReason::ChannelCount => of_kind(|kind| kind == SensorKind::Enose),
            RejectReason::OutOfRange => of_kind(|kind| kind == SensorKind::Humidity),
            _ => Vec::new(),
        };
        match candidates.len() {
            0 => turn % sensors.len(),
            n => candidates[turn % n],
        }
    }
}

fn build_line(
    config: &SimConfig,
    index: usize,
    grid: &Grid,
    products: &[ProductModel],
) -> Result<LineModel, SimError> {
    let name = format!("L{}", index + 1);
    let channels = config.enose_channels;
    let names = (1..=config.enose_per_line)
        .map(|number| (SensorKind::Enose, format!("enose-{number}")))
        .chain(
            config
                .process_sensors
                .iter()
                .map(|&kind| (kind, format!("{kind}-1"))),
        );
    let sensors: Vec<SensorModel> = names
        .enumerate()
        .map(|(sensor, (kind, sensor_name))| {
            SensorModel::new(
                config.seed,
                index,
                sensor,
                kind,
                sensor_name,
                channels,
                products,
            )
        })
        .collect();
    let mut emission_order: Vec<usize> = (0..sensors.len()).collect();
    emission_order.sort_by_key(|&sensor| (sensors[sensor].jitter_ms, sensor));
    let batches = LineModel::build_batches(config, index, &name, grid);
    let lifecycle = LineModel::lifecycle(&name, &batches, products);
    let mut line = LineModel {
        name,
        sensors,
        emission_order,
        climate: LineClimate::new(config.seed, index),
        first_product: index % products.len(),
        batches,
        lifecycle,
        events: Vec::new(),
        drifts: Vec::new(),
    };
    (line.events, line.drifts) = schedule_events(config, index, &line, grid)?;
    Ok(line)
}
