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
use std::collections::BTreeMap;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

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
