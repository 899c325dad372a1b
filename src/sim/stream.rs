//! Lazily generated record streams: one per line, and their merge.
//!
//! A [`LineStream`] walks the sampling grid one step at a time. Within a
//! step its sensors sample in a fixed order (by phase jitter, then sensor
//! index), batch lifecycle events are placed before the first reading at or
//! after their time, and a malformed record follows the reading it was
//! derived from. The stream is therefore in non-decreasing event-time
//! order. The process conditions of a step are computed once for all
//! sensors of the line. Memory: the last values and a noise generator per
//! sensor.
//!
//! [`MergedStream`] merges the line streams by `(event time, line index)`,
//! which keeps each line's own order and breaks ties deterministically.

use super::model::Model;
use super::physics::{noise_rng_at, seek_noise, Conditions};
use super::schedule::Emission;
use super::SimRecord;
use rand_chacha::ChaCha8Rng;
use scent_operators::model::Reading;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

/// Generation state of one sensor.
#[derive(Debug, Clone)]
struct SensorState {
    noise: ChaCha8Rng,
    /// Readings emitted so far: the `seq` of the last one.
    seq: u64,
    /// Values of the last emitted reading (what a stuck sensor repeats).
    last_values: Vec<f64>,
}

/// Where a line stream stands within the current grid step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the reading of the sensor at `position`: batch events due.
    Lifecycle,
    /// The reading itself.
    Reading,
    /// After an emitted reading: malformed records derived from it.
    Malformed,
}

/// The records of one line, in event-time order; see the module docs.
///
/// Owns a handle on the run's model, so it is `Send + 'static`: lines can be
/// generated on separate threads.
#[derive(Debug, Clone)]
pub struct LineStream {
    model: Arc<Model>,
    line: usize,
    step: u64,
    /// Position in the line's emission order within the step.
    position: usize,
    phase: Phase,
    /// Conditions of the current step, computed on its first reading.
    conditions: Option<Conditions>,
    sensors: Vec<SensorState>,
    next_lifecycle: usize,
    next_malformed: usize,
}

impl LineStream {
    pub(crate) fn new(model: Arc<Model>, line: usize) -> LineStream {
        let sensors = model.lines[line]
            .sensors
            .iter()
            .map(|sensor| SensorState {
                noise: noise_rng_at(model.noise_key, sensor, 0),
                seq: 0,
                last_values: Vec::new(),
            })
            .collect();
        LineStream {
            model,
            line,
            step: 0,
            position: 0,
            phase: Phase::Lifecycle,
            conditions: None,
            sensors,
            next_lifecycle: 0,
            next_malformed: 0,
        }
    }

    /// Name of the line, e.g. `L1`.
    pub fn line_name(&self) -> &str {
        &self.model.lines[self.line].name
    }

    /// The next batch event, if it comes before `before`.
    fn lifecycle_before(&mut self, before: i64) -> Option<SimRecord> {
        let event = self.model.lines[self.line]
            .lifecycle
            .get(self.next_lifecycle)?;
        if event.ts_ms >= before {
            return None;
        }
        self.next_lifecycle += 1;
        Some(SimRecord::Batch(event.clone()))
    }

    /// The next malformed record derived from the reading of `sensor` at
    /// the current step, if any.
    fn malformed_after(&mut self, sensor: usize) -> Option<SimRecord> {
        let slot = self.model.malformed_slots[self.line].get(self.next_malformed)?;
        if slot.step != self.step || slot.sensor != sensor {
            return None;
        }
        self.next_malformed += 1;
        let record = &self.model.truth.malformed[slot.record];
        Some(SimRecord::Malformed {
            index: record.index,
            key: record.key.clone(),
            ts_ms: record.ts_ms,
            payload: record.payload.clone(),
            expected: record.expected_reason,
        })
    }

    /// The reading of `sensor` at the current step, unless it is silent.
    fn emit(&mut self, sensor: usize, ts: i64) -> Option<Reading> {
        let model = &*self.model;
        let line = &model.lines[self.line];
        let parameters = &line.sensors[sensor];
        let state = &mut self.sensors[sensor];
        let values = match line.emission(sensor, ts) {
            Emission::Dropped => return None,
            Emission::Stuck(_) if !state.last_values.is_empty() => state.last_values.clone(),
            Emission::Stuck(_) | Emission::Normal => {
                let conditions = *self
                    .conditions
                    .get_or_insert_with(|| model.conditions(self.line, self.step));
                seek_noise(&mut state.noise, parameters, self.step);
                let mut values = Vec::with_capacity(parameters.channels.len().max(1));
                model.values(
                    self.line,
                    sensor,
                    self.step,
                    ts,
                    &conditions,
                    &mut state.noise,
                    &mut values,
                );
                values
            }
        };
        state.seq += 1;
        state.last_values.clone_from(&values);
        Some(model.reading(self.line, sensor, ts, state.seq, values))
    }
}

impl Iterator for LineStream {
    type Item = SimRecord;

    fn next(&mut self) -> Option<SimRecord> {
        let grid = self.model.grid;
        loop {
            if self.step >= grid.steps {
                return self.lifecycle_before(i64::MAX);
            }
            let line = &self.model.lines[self.line];
            let Some(&sensor) = line.emission_order.get(self.position) else {
                // End of the step: batch events up to the next step.
                if let Some(record) = self.lifecycle_before(grid.ts(self.step + 1, 0)) {
                    return Some(record);
                }
                self.step += 1;
                self.position = 0;
                self.conditions = None;
                continue;
            };
            let ts = grid.ts(self.step, line.sensors[sensor].jitter_ms);
            match self.phase {
                Phase::Lifecycle => {
                    if let Some(record) = self.lifecycle_before(ts + 1) {
                        return Some(record);
                    }
                    self.phase = Phase::Reading;
                }
                Phase::Reading => {
                    if let Some(reading) = self.emit(sensor, ts) {
                        self.phase = Phase::Malformed;
                        return Some(SimRecord::Reading(reading));
                    }
                    self.phase = Phase::Lifecycle;
                    self.position += 1;
                }
                Phase::Malformed => {
                    if let Some(record) = self.malformed_after(sensor) {
                        return Some(record);
                    }
                    self.phase = Phase::Lifecycle;
                    self.position += 1;
                }
            }
        }
    }
}

/// All lines of a run merged by `(event time, line index)`.
#[derive(Debug, Clone)]
pub struct MergedStream {
    lines: Vec<LineStream>,
    heads: Vec<Option<SimRecord>>,
    queue: BinaryHeap<Reverse<(i64, usize)>>,
}

impl MergedStream {
    pub(crate) fn new(mut lines: Vec<LineStream>) -> MergedStream {
        let mut queue = BinaryHeap::with_capacity(lines.len());
        let heads = lines
            .iter_mut()
            .enumerate()
            .map(|(index, stream)| {
                let head = stream.next();
                if let Some(record) = &head {
                    queue.push(Reverse((record.ts_ms(), index)));
                }
                head
            })
            .collect();
        MergedStream {
            lines,
            heads,
            queue,
        }
    }
}

impl Iterator for MergedStream {
    type Item = SimRecord;

    fn next(&mut self) -> Option<SimRecord> {
        let Reverse((_, line)) = self.queue.pop()?;
        let record = self.heads[line].take();
        if let Some(next) = self.lines[line].next() {
            self.queue.push(Reverse((next.ts_ms(), line)));
            self.heads[line] = Some(next);
        }
        record
    }
}
