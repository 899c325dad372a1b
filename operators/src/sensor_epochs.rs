//! The shape every per-sensor operator shares: readings routed by
//! `line/sensor`, held until the frontier has passed their epoch, then
//! handed over one complete epoch at a time.
//!
//! Holding each epoch until it is complete is what makes per-sensor
//! kernels deterministic: the kernel sees all of an epoch's readings at
//! once and sorts them, so arrival order within the allowed lateness never
//! changes its output. Outputs are emitted at the epoch of the readings
//! that produced them; the operator holds a capability only for epochs
//! with readings still pending.

use crate::event_clock::Epoch;
use crate::model::Reading;
use crate::rolling_anomaly::sensor_route;
use std::collections::{BTreeMap, HashMap};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

/// State per sensor, keyed by line then sensor. A reading finds its entry
/// without allocating (the key strings are copied once, when a sensor is
/// first seen), and the kernels see readings sorted by sensor, so a run of
/// readings of one sensor finds it by comparing with the last key, without
/// hashing.
#[derive(Debug, Clone)]
pub struct SensorMap<V> {
    index: HashMap<String, HashMap<String, usize>>,
    entries: Vec<(String, String, V)>,
    last: Option<usize>,
}

impl<V> Default for SensorMap<V> {
    fn default() -> Self {
        SensorMap {
            index: HashMap::new(),
            entries: Vec::new(),
            last: None,
        }
    }
}

impl<V: Default> SensorMap<V> {
    /// The state of `line/sensor`, created empty when first asked for.
    pub fn entry(&mut self, line: &str, sensor: &str) -> &mut V {
        let position = match self.last {
            Some(last) if self.entries[last].0 == line && self.entries[last].1 == sensor => last,
            _ => {
                let found = self
                    .index
                    .get(line)
                    .and_then(|sensors| sensors.get(sensor))
                    .copied();
                let position = found.unwrap_or_else(|| {
                    let position = self.entries.len();
                    self.entries
                        .push((line.to_owned(), sensor.to_owned(), V::default()));
                    self.index
                        .entry(line.to_owned())
                        .or_default()
                        .insert(sensor.to_owned(), position);
                    position
                });
                self.last = Some(position);
                position
            }
        };
        &mut self.entries[position].2
    }
}

impl<V> SensorMap<V> {
    /// Sensors with state.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no sensor has state.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The states, in the order the sensors were first seen.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, _, state)| state)
    }
}

/// Extension trait: complete epochs of readings, per sensor.
pub trait SensorEpochs<'scope> {
    /// Routes readings by `line/sensor`; once the frontier has passed an
    /// epoch, calls `logic` with that epoch's readings (in arrival order,
    /// for the kernel to sort) and emits what it appended, at that epoch.
    fn sensor_epochs<O, L>(self, name: &str, logic: L) -> StreamVec<'scope, Epoch, O>
    where
        O: 'static,
        L: FnMut(&mut Vec<Reading>, &mut Vec<O>) + 'static;
}

impl<'scope> SensorEpochs<'scope> for StreamVec<'scope, Epoch, Reading> {
    fn sensor_epochs<O, L>(self, name: &str, mut logic: L) -> StreamVec<'scope, Epoch, O>
    where
        O: 'static,
        L: FnMut(&mut Vec<Reading>, &mut Vec<O>) + 'static,
    {
        let route = Exchange::new(|reading: &Reading| sensor_route(&reading.line, &reading.sensor));
        self.unary_frontier(route, name, move |_capability, _info| {
            let mut pending = BTreeMap::new();
            let mut produced = Vec::new();
            move |(input, frontier), output| {
                input.for_each_stamp(|capability, data| {
                    if let Some(capability) = capability.retain_least(output.output_index()) {
                        let (_, stash) = pending
                            .entry(*capability.time())
                            .or_insert_with(|| (capability, Vec::<Reading>::new()));
                        for batch in data {
                            stash.append(batch);
                        }
                    }
                });
                while let Some(entry) = pending.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let (capability, mut readings) = entry.remove();
                    logic(&mut readings, &mut produced);
                    if !produced.is_empty() {
                        output
                            .session(&capability)
                            .give_iterator(produced.drain(..));
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::SensorMap;

    #[test]
    fn each_sensor_has_one_state_whatever_the_order_of_lookups() {
        let mut map: SensorMap<u32> = SensorMap::default();
        for (line, sensor) in [
            ("L1", "a"),
            ("L1", "a"),
            ("L1", "b"),
            ("L2", "a"),
            ("L1", "a"),
        ] {
            *map.entry(line, sensor) += 1;
        }
        assert_eq!(map.len(), 3);
        assert_eq!(*map.entry("L1", "a"), 3);
        assert_eq!(*map.entry("L1", "b"), 1);
        assert_eq!(*map.entry("L2", "a"), 1);
        assert_eq!(map.values().sum::<u32>(), 5);
    }
}
