//! The schedule of a run: the sampling grid, the batches of every line and
//! the events placed in them, plus the exposure conditions they imply.
//!
//! Everything here is computed once, up front, in O(batches + events) time
//! and memory; readings are generated later from it.

use super::config::{EventClass, EventPlan, EventSpec, SimConfig};
use super::physics::{
    aroma_decay, aroma_rise, contamination_ramp, drift_offset, noise_sigma, rng_for,
    sensor_drift_fraction, wander, Conditions, Contaminant, LineClimate, ProductModel, SensorModel,
    CALIBRATION_DUE_PCT, CONTAMINANTS, SENSOR_DRIFT_RATE_PCT_PER_HOUR, TAG_LATE_CONTAMINATION,
    TAG_SCHEDULE, TAG_SENSOR_DRIFT, TEMPERATURE_TAU_MS,
};
use super::truth::{
    BatchTruth, EventKind, ExpectedMaintenance, ExpectedReason, FaultMode, LabelledEvent,
    MaintenanceKind,
};
use super::SimError;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use scent_operators::model::{AnomalyRule, BatchEvent, BatchPhase, Decision, SensorKind};

/// Events start at least this long after their batch starts.
const EVENT_EARLIEST_OFFSET_MS: i64 = 180_000;
/// Events end at least this long before their batch ends.
const EVENT_END_MARGIN_MS: i64 = 60_000;
/// A late contamination covers the last this-long of its batch.
const LATE_CONTAMINATION_MS: i64 = 15_000;

/// The sampling grid shared by all lines: step `n` is at
/// `start + n·interval`, and a sensor samples at that time plus its jitter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid {
    pub start_ms: i64,
    pub interval_ms: i64,
    /// Number of steps: those with `start + n·interval < end`.
    pub steps: u64,
    pub end_ms: i64,
}

impl Grid {
    pub fn new(config: &SimConfig) -> Grid {
        let steps = ceil_div(config.duration_ms, config.sample_interval_ms);
        Grid {
            start_ms: config.start_ts_ms,
            interval_ms: config.sample_interval_ms,
            steps: steps as u64,
            end_ms: config.start_ts_ms + config.duration_ms,
        }
    }

    /// Event time of `step` for a sensor with `jitter_ms`.
    pub fn ts(&self, step: u64, jitter_ms: i64) -> i64 {
        self.start_ms + step as i64 * self.interval_ms + jitter_ms
    }

    /// The first step whose sample (with `jitter_ms`) is at or after `ts`,
    /// capped at `steps`.
    pub fn first_step_at_or_after(&self, ts: i64, jitter_ms: i64) -> u64 {
        let relative = ts - self.start_ms - jitter_ms;
        if relative <= 0 {
            return 0;
        }
        (ceil_div(relative, self.interval_ms) as u64).min(self.steps)
    }
}

/// `⌈a / b⌉` for `a >= 0`, `b > 0`.
fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

/// One complete batch of a line.
#[derive(Debug, Clone)]
pub(crate) struct BatchSpan {
    pub id: String,
    /// Index into the plant's products.
    pub product: usize,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// One spike of a spike fault, on one sample of the faulty sensor.
#[derive(Debug, Clone)]
pub(crate) struct Spike {
    pub step: u64,
    /// e-nose: `(channel, factor)` pairs.
    pub factors: Vec<(usize, f64)>,
    /// Process sensors: the value added.
    pub offset: f64,
}

/// What an event does to the line.
#[derive(Debug, Clone)]
pub(crate) enum Effect {
    Contamination { contaminant: usize, magnitude: f64 },
    Stuck { sensor: usize },
    Spike { sensor: usize, spikes: Vec<Spike> },
    Dropout { sensor: usize },
    Drift { sensor: usize },
}

impl Effect {
    /// The one sensor a fault or drift is attributed to.
    pub fn sensor(&self) -> Option<usize> {
        match self {
            Effect::Contamination { .. } => None,
            Effect::Stuck { sensor }
            | Effect::Spike { sensor, .. }
            | Effect::Dropout { sensor }
            | Effect::Drift { sensor } => Some(*sensor),
        }
    }
}

/// An event placed in a batch.
#[derive(Debug, Clone)]
pub(crate) struct ScheduledEvent {
    pub id: String,
    /// Index into the line's batches.
    pub batch: usize,
    pub start_ms: i64,
    pub end_ms: i64,
    pub effect: Effect,
}

/// A persistent drift of one e-nose array's clean-air baseline, from
/// `start_ms` to the end of the run.
#[derive(Debug, Clone)]
pub(crate) struct SensorDrift {
    pub id: String,
    pub sensor: usize,
    pub start_ms: i64,
    /// Rise of the baseline, in percent of the baseline per hour.
    pub rate_pct_per_hour: f64,
    /// Index into the line's batches: the batch the drift starts in, or the
    /// first one after its start.
    pub batch: usize,
}

/// The ground truth of one line.
pub(crate) struct LineTruth {
    pub events: Vec<LabelledEvent>,
    pub batches: Vec<BatchTruth>,
    pub maintenance: Vec<ExpectedMaintenance>,
}

/// Everything known about one line before generation.
#[derive(Debug, Clone)]
pub(crate) struct LineModel {
    pub name: String,
    pub sensors: Vec<SensorModel>,
    /// Sensor indices in sampling order within a step (by jitter, then index).
    pub emission_order: Vec<usize>,
    pub climate: LineClimate,
    /// Product made when no batch has run yet.
    pub first_product: usize,
    pub batches: Vec<BatchSpan>,
    /// Start and end of every batch, in time order.
    pub lifecycle: Vec<BatchEvent>,
    /// Non-overlapping events, by start time.
    pub events: Vec<ScheduledEvent>,
    /// Persistent sensor drifts, at most one per array, by start time; they
    /// overlap each other and the events.
    pub drifts: Vec<SensorDrift>,
}

/// How a sensor behaves at an instant.
pub(crate) enum Emission<'a> {
    Normal,
    Stuck(&'a ScheduledEvent),
    Dropped,
}

impl LineModel {
    /// The line's batches: line `k` starts `changeover + k·stagger` into the
    /// run, with `stagger` spreading batch ends evenly over the lines, and
    /// runs batch after batch while they end `tail_ms` before the run ends.
    pub fn build_batches(
        config: &SimConfig,
        line: usize,
        name: &str,
        grid: &Grid,
    ) -> Vec<BatchSpan> {
        let cycle = config.batch_duration_ms + config.changeover_ms;
        let stagger = cycle / config.lines as i64 / grid.interval_ms * grid.interval_ms;
        let first = grid.start_ms + config.changeover_ms + line as i64 * stagger;
        let last_end = grid.end_ms - config.tail_ms;
        let products = config.products.len();
        (0..)
            .map(|number: i64| (number, first + number * cycle))
            .take_while(|(_, start)| start + config.batch_duration_ms <= last_end)
            .map(|(number, start)| BatchSpan {
                id: format!("B-{name}-{:04}", number + 1),
                product: (line + number as usize) % products,
                start_ms: start,
                end_ms: start + config.batch_duration_ms,
            })
            .collect()
    }

    /// Start and end events of `batches`, in time order.
    pub fn lifecycle(
        name: &str,
        batches: &[BatchSpan],
        products: &[ProductModel],
    ) -> Vec<BatchEvent> {
        batches
            .iter()
            .flat_map(|batch| {
                [
                    (BatchPhase::Start, batch.start_ms),
                    (BatchPhase::End, batch.end_ms),
                ]
                .map(|(event, ts_ms)| BatchEvent {
                    batch: batch.id.clone(),
                    line: name.to_owned(),
                    product: products[batch.product].name.clone(),
                    event,
                    ts_ms,
                })
            })
            .collect()
    }

    /// The batch running at `ts`, if any.
    pub fn batch_at(&self, ts: i64) -> Option<&BatchSpan> {
        let next = self.batches.partition_point(|batch| batch.end_ms <= ts);
        self.batches.get(next).filter(|batch| batch.start_ms <= ts)
    }

    /// The event active at `ts`, if any.
    pub fn event_at(&self, ts: i64) -> Option<&ScheduledEvent> {
        let after = self.events.partition_point(|event| event.start_ms <= ts);
        after
            .checked_sub(1)
            .map(|index| &self.events[index])
            .filter(|event| ts < event.end_ms)
    }

    /// Whether sensor `sensor` emits normally, repeats itself or is silent
    /// at `ts`.
    pub fn emission(&self, sensor: usize, ts: i64) -> Emission<'_> {
        match self.event_at(ts) {
            Some(event) => match event.effect {
                Effect::Stuck { sensor: faulty } if faulty == sensor => Emission::Stuck(event),
                Effect::Dropout { sensor: faulty } if faulty == sensor => Emission::Dropped,
                _ => Emission::Normal,
            },
            None => Emission::Normal,
        }
    }

    /// Accumulated baseline drift of `sensor` at `ts`, as a fraction of its
    /// baseline (0 for a sensor that does not drift).
    pub fn sensor_drift(&self, sensor: usize, ts: i64) -> f64 {
        self.drifts
            .iter()
            .filter(|drift| drift.sensor == sensor)
            .map(|drift| sensor_drift_fraction(ts, drift.start_ms, drift.rate_pct_per_hour))
            .sum()
    }

    /// Whether the line has another sensor of the kind of `sensor`, which
    /// keeps the product monitored while `sensor` is faulty.
    fn has_sibling(&self, sensor: usize) -> bool {
        let kind = self.sensors[sensor].kind;
        self.sensors
            .iter()
            .enumerate()
            .any(|(index, other)| index != sensor && other.kind == kind)
    }

    /// The maintenance window for something due at `due_ms`: the first gap
    /// between batches (changeover, or before the first or after the last
    /// batch) that ends after `due_ms`, from the later of its start and
    /// `due_ms`.
    fn maintenance_window(&self, due_ms: i64, grid: &Grid) -> Option<(i64, i64)> {
        let starts = self.batches.iter().map(|batch| batch.start_ms);
        let ends = std::iter::once(grid.start_ms).chain(self.batches.iter().map(|b| b.end_ms));
        ends.zip(starts.chain(std::iter::once(grid.end_ms)))
            .find(|&(start, end)| start < end && due_ms < end)
            .map(|(start, end)| (start.max(due_ms), end))
    }

    /// Samples of `sensor` before `step` lost to dropouts.
    pub fn dropped_before(&self, sensor: usize, step: u64, grid: &Grid) -> u64 {
        let jitter = self.sensors[sensor].jitter_ms;
        self.events
            .iter()
            .filter(|event| matches!(event.effect, Effect::Dropout { sensor: s } if s == sensor))
            .map(|event| {
                let first = grid
                    .first_step_at_or_after(event.start_ms, jitter)
                    .min(step);
                let end = grid.first_step_at_or_after(event.end_ms, jitter).min(step);
                end - first
            })
            .sum()
    }

    /// What the line's sensors are exposed to at `ts` (before sensor
    /// faults, which act on the measurement, not on the process).
    pub fn conditions(&self, ts: i64, products: &[ProductModel], aroma_lead_ms: i64) -> Conditions {
        let next = self.batches.partition_point(|batch| batch.end_ms <= ts);
        let upcoming = self.batches.get(next);
        let previous = next.checked_sub(1).map(|index| &self.batches[index]);
        let setpoint = |batch: &BatchSpan| products[batch.product].setpoint_c;

        let mut aroma = [None, None];
        if let Some(batch) = upcoming {
            let onset = batch.start_ms - aroma_lead_ms;
            if ts >= onset {
                aroma[0] = Some((batch.product, aroma_rise((ts - onset) as f64)));
            }
        }
        if let Some(batch) = previous {
            let level = aroma_rise((batch.end_ms - batch.start_ms + aroma_lead_ms) as f64);
            let remaining = aroma_decay(level, (ts - batch.end_ms) as f64);
            if remaining > 0.0 {
                aroma[1] = Some((batch.product, remaining));
            }
        }

        let mut temperature_c = match (upcoming, previous) {
            (Some(batch), _) if batch.start_ms <= ts => {
                setpoint(batch)
                    + wander(
                        (ts - batch.start_ms) as f64,
                        (batch.end_ms - batch.start_ms) as f64,
                        self.climate.wander_sign,
                    )
            }
            (Some(batch), Some(before)) => {
                let elapsed = (ts - before.end_ms) as f64;
                let settling = if elapsed > 40.0 * TEMPERATURE_TAU_MS {
                    0.0
                } else {
                    (-elapsed / TEMPERATURE_TAU_MS).exp()
                };
                setpoint(batch) + (setpoint(before) - setpoint(batch)) * settling
            }
            (Some(batch), None) | (None, Some(batch)) => setpoint(batch),
            (None, None) => products[self.first_product].setpoint_c,
        } + self.climate.temperature_offset_c;

        let mut contamination = None;
        if let Some(event) = self.event_at(ts) {
            match event.effect {
                Effect::Drift { .. } => {
                    temperature_c += drift_offset(ts, event.start_ms, event.end_ms);
                }
                Effect::Contamination {
                    contaminant,
                    magnitude,
                } => {
                    let ramp = contamination_ramp(ts, event.start_ms, event.end_ms);
                    contamination = Some((contaminant, magnitude * ramp));
                }
                _ => {}
            }
        }
        Conditions {
            aroma,
            temperature_c,
            humidity_rh: self.climate.humidity_rh,
            contamination,
        }
    }

    /// Labels, expected decisions and expected maintenance of the line,
    /// from its schedule (see the table in [`super::truth`]).
    pub fn truth(&self, products: &[ProductModel], grid: &Grid) -> LineTruth {
        let sensor_name = |index: usize| self.sensors[index].name.clone();
        let mut events: Vec<LabelledEvent> = self
            .events
            .iter()
            .map(|event| {
                let (kind, mode, contaminant) = match &event.effect {
                    Effect::Contamination { contaminant, .. } => (
                        EventKind::Contamination,
                        None,
                        Some(CONTAMINANTS[*contaminant].to_owned()),
                    ),
                    Effect::Stuck { .. } => (EventKind::SensorFault, Some(FaultMode::Stuck), None),
                    Effect::Spike { .. } => (EventKind::SensorFault, Some(FaultMode::Spike), None),
                    Effect::Dropout { .. } => {
                        (EventKind::SensorFault, Some(FaultMode::Dropout), None)
                    }
                    Effect::Drift { .. } => (EventKind::ProcessDrift, None, None),
                };
                LabelledEvent {
                    id: event.id.clone(),
                    kind,
                    mode,
                    line: self.name.clone(),
                    sensor: event.effect.sensor().map(sensor_name),
                    contaminant,
                    start_ms: event.start_ms,
                    end_ms: event.end_ms,
                    batch: self.batches[event.batch].id.clone(),
                    rate_pct_per_hour: None,
                }
            })
            .collect();
        events.extend(self.drifts.iter().map(|drift| LabelledEvent {
            id: drift.id.clone(),
            kind: EventKind::SensorDrift,
            mode: None,
            line: self.name.clone(),
            sensor: Some(sensor_name(drift.sensor)),
            contaminant: None,
            start_ms: drift.start_ms,
            end_ms: grid.end_ms,
            batch: self.batches[drift.batch].id.clone(),
            rate_pct_per_hour: Some(drift.rate_pct_per_hour),
        }));
        events.sort_by_key(|event| event.start_ms);

        let batches = self
            .batches
            .iter()
            .enumerate()
            .map(|(index, batch)| {
                let mut ids: Vec<(i64, String)> = self
                    .events
                    .iter()
                    .filter(|event| event.batch == index)
                    .map(|event| (event.start_ms, event.id.clone()))
                    .chain(
                        self.drifts
                            .iter()
                            .filter(|drift| drift.batch == index)
                            .map(|drift| (drift.start_ms, drift.id.clone())),
                    )
                    .collect();
                ids.sort();
                let mut reasons: Vec<ExpectedReason> = self
                    .events
                    .iter()
                    .filter(|event| event.batch == index)
                    .flat_map(|event| self.expected_reasons(&event.effect))
                    .collect();
                reasons.sort();
                reasons.dedup();
                BatchTruth {
                    batch: batch.id.clone(),
                    line: self.name.clone(),
                    product: products[batch.product].name.clone(),
                    start_ms: batch.start_ms,
                    end_ms: batch.end_ms,
                    events: ids.into_iter().map(|(_, id)| id).collect(),
                    expected_decision: if reasons.is_empty() {
                        Decision::Release
                    } else {
                        Decision::Hold
                    },
                    expected_reasons: reasons,
                }
            })
            .collect();

        let faults = self.events.iter().filter_map(|event| {
            let kind = match event.effect {
                Effect::Stuck { .. } | Effect::Dropout { .. } => MaintenanceKind::Repair,
                Effect::Spike { .. } => MaintenanceKind::Inspect,
                Effect::Contamination { .. } | Effect::Drift { .. } => return None,
            };
            Some((event.effect.sensor()?, kind, &event.id, event.start_ms))
        });
        let calibrations = self.drifts.iter().map(|drift| {
            let due_hours = CALIBRATION_DUE_PCT / drift.rate_pct_per_hour;
            let due_ms = drift.start_ms + (due_hours * 3_600_000.0).round() as i64;
            (drift.sensor, MaintenanceKind::Calibrate, &drift.id, due_ms)
        });
        let mut maintenance: Vec<(usize, ExpectedMaintenance)> = faults
            .chain(calibrations)
            .map(|(sensor, kind, event, due_ms)| {
                let window = self.maintenance_window(due_ms, grid);
                (
                    sensor,
                    ExpectedMaintenance {
                        line: self.name.clone(),
                        sensor: sensor_name(sensor),
                        kind,
                        event: event.clone(),
                        due_ms,
                        window_start_ms: window.map(|(start, _)| start),
                        window_end_ms: window.map(|(_, end)| end),
                    },
                )
            })
            .collect();
        maintenance.sort_by_key(|(sensor, item)| (item.due_ms, *sensor));
        LineTruth {
            events,
            batches,
            maintenance: maintenance.into_iter().map(|(_, item)| item).collect(),
        }
    }

    /// The reasons the decision layer should hold a batch for because of
    /// `effect`: none for instrument findings while a sibling sensor keeps
    /// the product monitored, nor for spikes or a process drift.
    fn expected_reasons(&self, effect: &Effect) -> Vec<ExpectedReason> {
        let reason = |sensor: usize, rule| ExpectedReason {
            sensor: self.sensors[sensor].name.clone(),
            rule,
        };
        match effect {
            Effect::Contamination { .. } => self
                .sensors
                .iter()
                .enumerate()
                .filter(|(_, sensor)| sensor.kind == SensorKind::Enose)
                .map(|(index, _)| reason(index, AnomalyRule::ZScore))
                .collect(),
            Effect::Stuck { sensor } if !self.has_sibling(*sensor) => {
                vec![reason(*sensor, AnomalyRule::FlatLine)]
            }
            Effect::Dropout { sensor } if !self.has_sibling(*sensor) => {
                vec![reason(*sensor, AnomalyRule::Gap)]
            }
            Effect::Stuck { .. }
            | Effect::Dropout { .. }
            | Effect::Spike { .. }
            | Effect::Drift { .. } => Vec::new(),
        }
    }
}

/// An event to place: the class plus whatever the config fixed.
#[derive(Debug, Clone, Default)]
struct Draft {
    sensor: Option<usize>,
    contaminant: Option<usize>,
    start_offset_ms: Option<i64>,
    duration_ms: Option<i64>,
    /// The event may run to the batch's end (no end margin).
    to_batch_end: bool,
}

/// Places the events of one line, and its explicit sensor drifts. Auto
/// events that do not fit their batch are skipped; explicit ones that do
/// not fit are errors. Automatic sensor drifts are placed over the whole
/// plant by [`schedule_auto_drifts`].
pub(crate) fn schedule_events(
    config: &SimConfig,
    line_index: usize,
    line: &LineModel,
    grid: &Grid,
) -> Result<(Vec<ScheduledEvent>, Vec<SensorDrift>), SimError> {
    let mut rng = rng_for(config.seed, TAG_SCHEDULE, line_index as u64);
    let mut events = Vec::new();
    let mut drifts: Vec<SensorDrift> = Vec::new();
    match &config.events {
        EventPlan::None => {}
        EventPlan::Auto(auto) => {
            let mut seen = vec![false; config.products.len()];
            let eligible: Vec<usize> = line
                .batches
                .iter()
                .enumerate()
                .filter_map(|(index, batch)| {
                    std::mem::replace(&mut seen[batch.product], true).then_some(index)
                })
                .collect();
            let phase = line_index as f64 / config.lines as f64;
            let mut selected = 0;
            for (position, &batch) in eligible.iter().enumerate() {
                let before = (position as f64 * auto.batch_fraction + phase).floor();
                let after = ((position + 1) as f64 * auto.batch_fraction + phase).floor();
                if after <= before {
                    continue;
                }
                let class = auto.classes[(selected + line_index) % auto.classes.len()];
                selected += 1;
                let id = format!("EV-{}-{:04}", line.name, events.len() + 1);
                if let Ok(event) = place(class, batch, Draft::default(), id, line, grid, &mut rng) {
                    events.push(event);
                }
            }
            // Late contaminations: line `k % lines` gets the k-th, in the
            // first batch from the middle of its run on that has no event.
            // They draw from their own generator, so that adding one moves
            // no other event.
            let mut late_rng = rng_for(config.seed, TAG_LATE_CONTAMINATION, line_index as u64);
            let late = (line_index..auto.late_contaminations).step_by(config.lines.max(1));
            let busy: Vec<usize> = events.iter().map(|event| event.batch).collect();
            let mut free =
                (line.batches.len() / 2..line.batches.len()).filter(|batch| !busy.contains(batch));
            for _ in late {
                let Some(batch) = free.next() else {
                    break;
                };
                let span = &line.batches[batch];
                let draft = Draft {
                    start_offset_ms: Some(span.end_ms - span.start_ms - LATE_CONTAMINATION_MS),
                    duration_ms: Some(LATE_CONTAMINATION_MS),
                    to_batch_end: true,
                    ..Draft::default()
                };
                let id = format!("EV-{}-{:04}", line.name, events.len() + 1);
                let class = EventClass::Contamination;
                if let Ok(event) = place(class, batch, draft, id, line, grid, &mut late_rng) {
                    events.push(event);
                }
            }
            events.sort_by_key(|event| event.start_ms);
        }
        EventPlan::Explicit(specs) => {
            // Drifts draw from their own generator, so that adding one moves
            // no other event.
            let mut drift_rng = rng_for(config.seed, TAG_SENSOR_DRIFT, 1 + line_index as u64);
            let mut placed = Vec::new();
            for (index, spec) in specs.iter().enumerate() {
                if spec.line != line.name {
                    continue;
                }
                let bad = |problem: String| SimError::Event { index, problem };
                if spec.class == EventClass::SensorDrift {
                    let id = format!("SD-{}-{:04}", line.name, drifts.len() + 1);
                    let drift = resolve_drift(spec, id, line, &mut drift_rng).map_err(bad)?;
                    if drifts.iter().any(|other| other.sensor == drift.sensor) {
                        return Err(bad(format!(
                            "`sensor`: {}/{} already drifts; an array has one drift at most",
                            line.name, line.sensors[drift.sensor].name
                        )));
                    }
                    drifts.push(drift);
                    continue;
                }
                let (batch, draft) = resolve(spec, line).map_err(bad)?;
                let id = format!("EV-{}-{:04}", line.name, placed.len() + 1);
                let event =
                    place(spec.class, batch, draft, id, line, grid, &mut rng).map_err(bad)?;
                placed.push((index, event));
            }
            placed.sort_by_key(|(_, event)| event.start_ms);
            for pair in placed.windows(2) {
                let ((first, earlier), (index, later)) = (&pair[0], &pair[1]);
                if later.start_ms < earlier.end_ms {
                    return Err(SimError::Event {
                        index: *index,
                        problem: format!(
                            "overlaps event {first} on line {}; a line has one event at a time",
                            line.name
                        ),
                    });
                }
            }
            events = placed.into_iter().map(|(_, event)| event).collect();
            drifts.sort_by_key(|drift| drift.start_ms);
        }
    }
    Ok((events, drifts))
}

/// Checks an explicit sensor drift against the line and places it. The
/// start (when `start_offset_ms` is absent) and the rate (when
/// `rate_pct_per_hour` is absent) are drawn either way, so that overrides
/// do not move later drifts.
fn resolve_drift(
    spec: &EventSpec,
    id: String,
    line: &LineModel,
    rng: &mut ChaCha8Rng,
) -> Result<SensorDrift, String> {
    let position = rng.random::<f64>();
    let rate_draw = round_rate(rng.random_range(SENSOR_DRIFT_RATE_PCT_PER_HOUR));
    let batch = batch_index(spec, line)?;
    let name = spec.sensor.as_deref().ok_or_else(|| {
        "`sensor` is required for a sensor drift: name an e-nose array, e.g. \"enose-1\"".to_owned()
    })?;
    let sensor = line
        .sensors
        .iter()
        .position(|sensor| sensor.name == name)
        .ok_or_else(|| format!("`sensor`: line {} has no sensor {name:?}", line.name))?;
    if line.sensors[sensor].kind != SensorKind::Enose {
        return Err(format!(
            "`sensor`: a sensor drift needs an e-nose array, {name:?} is a {} sensor",
            line.sensors[sensor].kind
        ));
    }
    if spec.contaminant.is_some() {
        return Err("`contaminant` does not apply to a sensor drift".into());
    }
    let span = &line.batches[batch];
    let length = span.end_ms - span.start_ms;
    let offset = spec
        .start_offset_ms
        .unwrap_or((position * length as f64) as i64);
    if !(0..length).contains(&offset) {
        return Err(format!(
            "`start_offset_ms` must lie in 0..{length} (the drift starts inside batch {}), got {offset}",
            span.id
        ));
    }
    let rate_pct_per_hour = spec.rate_pct_per_hour.unwrap_or(rate_draw);
    if !(rate_pct_per_hour.is_finite() && rate_pct_per_hour > 0.0 && rate_pct_per_hour <= 100.0) {
        return Err(format!(
            "`rate_pct_per_hour` must lie in 0 < rate <= 100, got {rate_pct_per_hour}"
        ));
    }
    Ok(SensorDrift {
        id,
        sensor,
        start_ms: span.start_ms + offset,
        rate_pct_per_hour,
        batch,
    })
}

/// A drawn drift rate rounded to 0.001 %/h: short decimals survive a JSON
/// round trip of the ground truth exactly.
fn round_rate(rate_pct_per_hour: f64) -> f64 {
    (rate_pct_per_hour * 1_000.0).round() / 1_000.0
}

/// Places the automatic sensor drifts of the plant: `count` distinct
/// e-nose arrays (capped at the number of arrays), the `i`-th on line
/// `order[i % lines]` of a seeded permutation of the lines (so drifts
/// spread over the lines) and on a random array of it that does not drift
/// yet, starting at a uniform time in the first third of the run, at a
/// rate uniform in [`SENSOR_DRIFT_RATE_PCT_PER_HOUR`]. A drift with no
/// batch ending after its start is not placed (its label needs a batch).
/// Ids are `SD-<line>-<nnnn>`, numbered by start time within the line.
pub(crate) fn schedule_auto_drifts(seed: u64, count: usize, lines: &mut [LineModel], grid: &Grid) {
    let mut rng = rng_for(seed, TAG_SENSOR_DRIFT, 0);
    let arrays: Vec<Vec<usize>> = lines
        .iter()
        .map(|line| {
            (0..line.sensors.len())
                .filter(|&sensor| line.sensors[sensor].kind == SensorKind::Enose)
                .collect()
        })
        .collect();
    let total: usize = arrays.iter().map(Vec::len).sum();
    let mut order: Vec<usize> = (0..lines.len()).collect();
    order.shuffle(&mut rng);
    let mut free = arrays;
    let first_third = (grid.end_ms - grid.start_ms) / 3;
    for drift in 0..count.min(total) {
        // Lines in the seeded order, skipping those with no free array.
        let line = (0..lines.len())
            .map(|turn| order[(drift + turn) % lines.len()])
            .find(|&line| !free[line].is_empty())
            .expect("fewer drifts than arrays");
        let pick = rng.random_range(0..free[line].len());
        let sensor = free[line].remove(pick);
        let start_ms = grid.start_ms + rng.random_range(0..=first_third);
        let rate_pct_per_hour = round_rate(rng.random_range(SENSOR_DRIFT_RATE_PCT_PER_HOUR));
        let model = &mut lines[line];
        let Some(batch) = model
            .batches
            .iter()
            .position(|batch| batch.end_ms > start_ms)
        else {
            continue;
        };
        model.drifts.push(SensorDrift {
            id: String::new(),
            sensor,
            start_ms,
            rate_pct_per_hour,
            batch,
        });
    }
    for line in lines.iter_mut() {
        line.drifts
            .sort_by_key(|drift| (drift.start_ms, drift.sensor));
        for (number, drift) in line.drifts.iter_mut().enumerate() {
            drift.id = format!("SD-{}-{:04}", line.name, number + 1);
        }
    }
}

/// The index of the explicit event's batch in the line.
fn batch_index(spec: &EventSpec, line: &LineModel) -> Result<usize, String> {
    (spec.batch as usize)
        .checked_sub(1)
        .filter(|&index| index < line.batches.len())
        .ok_or_else(|| {
            format!(
                "`batch`: line {} has complete batches 1..={}, not {}",
                line.name,
                line.batches.len(),
                spec.batch
            )
        })
}

/// Checks an explicit event against the line and turns it into a draft.
fn resolve(spec: &EventSpec, line: &LineModel) -> Result<(usize, Draft), String> {
    let batch = batch_index(spec, line)?;
    let sensor = match &spec.sensor {
        Some(name) if spec.class != EventClass::Contamination => Some(
            line.sensors
                .iter()
                .position(|sensor| &sensor.name == name)
                .ok_or_else(|| format!("line {} has no sensor {name:?}", line.name))?,
        ),
        _ => None,
    };
    let contaminant = match &spec.contaminant {
        Some(name) => Some(
            CONTAMINANTS
                .iter()
                .position(|known| known == name)
                .ok_or_else(|| format!("unknown contaminant {name:?} (known: {CONTAMINANTS:?})"))?,
        ),
        None => None,
    };
    Ok((
        batch,
        Draft {
            sensor,
            contaminant,
            start_offset_ms: spec.start_offset_ms,
            duration_ms: spec.duration_ms,
            to_batch_end: false,
        },
    ))
}

/// Draws the parameters of one event and places it in `batch`.
fn place(
    class: EventClass,
    batch_index: usize,
    draft: Draft,
    id: String,
    line: &LineModel,
    grid: &Grid,
    rng: &mut ChaCha8Rng,
) -> Result<ScheduledEvent, String> {
    let batch = &line.batches[batch_index];
    let interval = grid.interval_ms;
    // Every random number is drawn whether or not the draft fixes it, so
    // that the draws of later events do not depend on earlier overrides.
    let sensor_draw = rng.random_range(0..line.sensors.len());
    let contaminant_draw = rng.random_range(0..CONTAMINANTS.len());
    let magnitude = rng.random_range(0.25..0.40);
    let position = rng.random::<f64>();
    let (nominal_ms, effect) = match class {
        EventClass::Contamination => {
            if !line
                .sensors
                .iter()
                .any(|sensor| sensor.kind == SensorKind::Enose)
            {
                return Err(format!(
                    "line {} has no e-nose array to contaminate",
                    line.name
                ));
            }
            let contaminant = draft.contaminant.unwrap_or(contaminant_draw);
            (
                rng.random_range(120_000..=240_000),
                Effect::Contamination {
                    contaminant,
                    magnitude,
                },
            )
        }
        EventClass::Stuck => {
            let sensor = draft.sensor.unwrap_or(sensor_draw);
            let nominal: i64 = rng.random_range(60_000..=120_000);
            (nominal.max(30 * interval), Effect::Stuck { sensor })
        }
        EventClass::Spike => {
            let sensor = draft.sensor.unwrap_or(sensor_draw);
            (
                (60_000).max(30 * interval),
                Effect::Spike {
                    sensor,
                    spikes: Vec::new(),
                },
            )
        }
        EventClass::Dropout => {
            let sensor = draft.sensor.unwrap_or(sensor_draw);
            (
                rng.random_range(30_000..=60_000),
                Effect::Dropout { sensor },
            )
        }
        EventClass::SensorDrift => {
            return Err("a sensor drift is not a batch event".into());
        }
        EventClass::ProcessDrift => {
            let temperature = line
                .sensors
                .iter()
                .position(|sensor| sensor.kind == SensorKind::Temperature)
                .ok_or_else(|| format!("line {} has no temperature sensor", line.name))?;
            if draft.sensor.is_some_and(|sensor| sensor != temperature) {
                return Err("a process drift affects the temperature sensor only".into());
            }
            (
                0,
                Effect::Drift {
                    sensor: temperature,
                },
            )
        }
    };

    let latest_end = match draft.to_batch_end {
        true => batch.end_ms,
        false => batch.end_ms - EVENT_END_MARGIN_MS,
    };
    let (start_ms, end_ms) = if class == EventClass::ProcessDrift {
        let offset = draft
            .start_offset_ms
            .unwrap_or(EVENT_EARLIEST_OFFSET_MS + (position * 60_000.0) as i64);
        (batch.start_ms + offset, latest_end)
    } else {
        let duration = draft.duration_ms.unwrap_or(nominal_ms);
        if duration <= 0 {
            return Err(format!("duration_ms must be positive, got {duration}"));
        }
        let start = match draft.start_offset_ms {
            Some(offset) => batch.start_ms + offset,
            None => {
                let earliest = batch.start_ms + EVENT_EARLIEST_OFFSET_MS;
                let room = latest_end - duration - earliest;
                if room < 0 {
                    return Err(format!("batch {} is too short for the event", batch.id));
                }
                earliest + (position * room as f64) as i64
            }
        };
        (start, start + duration)
    };
    if start_ms < batch.start_ms || end_ms > latest_end {
        return Err(format!(
            "the event ({start_ms}..{end_ms}) must lie inside batch {} and end at least {} s before it ends ({})",
            batch.id,
            EVENT_END_MARGIN_MS / 1000,
            latest_end
        ));
    }
    if class == EventClass::ProcessDrift && end_ms - start_ms < 120_000 {
        return Err(format!(
            "a process drift needs at least two minutes before the end margin of batch {}",
            batch.id
        ));
    }

    let effect = match effect {
        Effect::Spike { sensor, .. } => {
            let spikes = draw_spikes(&line.sensors[sensor], start_ms, end_ms, grid, rng)?;
            Effect::Spike { sensor, spikes }
        }
        other => other,
    };
    Ok(ScheduledEvent {
        id,
        batch: batch_index,
        start_ms,
        end_ms,
        effect,
    })
}

/// 6..=10 isolated spikes (at least two clean samples between two spikes)
/// on the samples of `sensor` inside `[start, end)`.
fn draw_spikes(
    sensor: &SensorModel,
    start_ms: i64,
    end_ms: i64,
    grid: &Grid,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<Spike>, String> {
    let first = grid.first_step_at_or_after(start_ms, sensor.jitter_ms);
    let end = grid.first_step_at_or_after(end_ms, sensor.jitter_ms);
    let samples = (end - first) as usize;
    let wanted = rng.random_range(6..=10usize);
    let count = wanted.min(samples.div_ceil(3));
    if count == 0 {
        return Err("the spike window holds no sample".into());
    }
    let mut slots = rand::seq::index::sample(rng, samples - 2 * (count - 1), count).into_vec();
    slots.sort_unstable();
    let channels = sensor.channels.len();
    Ok(slots
        .into_iter()
        .enumerate()
        .map(|(rank, slot)| {
            let step = first + (slot + 2 * rank) as u64;
            if channels == 0 {
                Spike {
                    step,
                    factors: Vec::new(),
                    offset: rng.random_range(25.0..40.0) * noise_sigma(sensor.kind),
                }
            } else {
                let hit = rng.random_range(1..=3usize).min(channels);
                let mut picked = rand::seq::index::sample(rng, channels, hit).into_vec();
                picked.sort_unstable();
                Spike {
                    step,
                    factors: picked
                        .into_iter()
                        .map(|channel| (channel, rng.random_range(1.3..1.6)))
                        .collect(),
                    offset: 0.0,
                }
            }
        })
        .collect())
}

/// The contaminant library for `channels`-channel arrays.
pub(crate) fn contaminant_library(seed: u64, channels: usize) -> Vec<Contaminant> {
    CONTAMINANTS
        .iter()
        .map(|name| Contaminant::new(seed, name, channels))
        .collect()
}
