//! Input spans: which records of which topic partitions a batch's
//! decision rests on.
//!
//! A QA reviewer tracing a decision back to readings needs to know where
//! they are: for every batch, per topic and partition, the smallest and
//! largest offset of a record of the batch (its readings and lifecycle
//! events) and how many there were. With these a reviewer (or `kcat -o`)
//! reads exactly the batch's input again.
//!
//! [`SpanTracker`] is the pure kernel: it folds record coordinates into
//! spans and reports which spans changed. [`BatchInputSpans`] runs it in
//! two stages: where the records are, each epoch's records fold into
//! partial spans (one record per batch, partition and epoch leaves the
//! worker, not one per reading); routed by batch, each completed epoch's
//! partials merge into the batch's spans, whose changes form a
//! differential collection `((line, batch), span)`: at most one span per
//! batch and partition at any time. State: one span per batch and
//! partition.

use crate::event_clock::Epoch;
use crate::ingest::Ingested;
use crate::model::{InputSpan, SourceCoord};
use differential_dataflow::{AsCollection, VecCollection};
use std::collections::{BTreeMap, HashMap};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

/// A batch: `(line, batch)`.
pub type BatchKey = (String, String);

/// Spans of record coordinates per batch and partition.
#[derive(Debug, Default)]
pub struct SpanTracker {
    spans: HashMap<(BatchKey, String, i32), InputSpan>,
    /// Spans changed since the last drain, with their value before.
    changed: BTreeMap<(BatchKey, String, i32), Option<InputSpan>>,
}

impl SpanTracker {
    /// Folds one record of `batch` on `line`, read at `source`, into its span.
    pub fn observe(&mut self, line: &str, batch: &str, source: &SourceCoord) {
        self.merge(
            line,
            batch,
            &InputSpan {
                topic: source.topic.clone(),
                partition: source.partition,
                first_offset: source.offset,
                last_offset: source.offset,
                records: 1,
            },
        );
    }

    /// Folds a partial span of `batch` on `line` into its span.
    pub fn merge(&mut self, line: &str, batch: &str, partial: &InputSpan) {
        let key = (
            (line.to_owned(), batch.to_owned()),
            partial.topic.clone(),
            partial.partition,
        );
        match self.spans.get_mut(&key) {
            Some(span) => {
                if !self.changed.contains_key(&key) {
                    self.changed.insert(key.clone(), Some(span.clone()));
                }
                span.first_offset = span.first_offset.min(partial.first_offset);
                span.last_offset = span.last_offset.max(partial.last_offset);
                span.records += partial.records;
            }
            None => {
                self.changed.insert(key.clone(), None);
                self.spans.insert(key, partial.clone());
            }
        }
    }

    /// The changes since the last call, as differential updates: the old
    /// span retracted, the new one inserted.
    pub fn drain_updates(&mut self, updates: &mut Vec<((BatchKey, InputSpan), isize)>) {
        for ((batch, topic, partition), before) in std::mem::take(&mut self.changed) {
            let key = (batch, topic, partition);
            let now = self.spans[&key].clone();
            if let Some(before) = before {
                updates.push(((key.0.clone(), before), -1));
            }
            updates.push(((key.0, now), 1));
        }
    }
}

/// Extension trait: the input spans of every batch.
pub trait BatchInputSpans<'scope> {
    /// `((line, batch), span)`, one span per batch and partition.
    fn batch_input_spans(self) -> VecCollection<'scope, Epoch, (BatchKey, InputSpan)>;
}

/// One worker's records of one batch and partition in one epoch.
type Partial = (BatchKey, InputSpan);

impl<'scope> BatchInputSpans<'scope> for StreamVec<'scope, Epoch, Ingested> {
    fn batch_input_spans(self) -> VecCollection<'scope, Epoch, (BatchKey, InputSpan)> {
        // Stage 1, where the records are: fold each epoch's records into
        // partial spans per batch and partition (one record per batch,
        // partition and epoch leaves the worker, not one per reading).
        let partials = self.unary(Pipeline, "BatchSpanPartials", |_capability, _info| {
            move |input, output| {
                input.for_each_stamp(|capability, data| {
                    let mut tracker = SpanTracker::default();
                    for batch in data {
                        for item in batch.iter() {
                            match item {
                                Ingested::Reading {
                                    reading, source, ..
                                } => {
                                    if let Some(batch) = &reading.batch {
                                        tracker.observe(&reading.line, batch, source);
                                    }
                                }
                                Ingested::Batch { event, source, .. } => {
                                    tracker.observe(&event.line, &event.batch, source)
                                }
                                Ingested::Model { .. } | Ingested::Rejected(_) => {}
                            }
                        }
                    }
                    let spans: Vec<Partial> = tracker
                        .spans
                        .into_iter()
                        .map(|((batch, _, _), span)| (batch, span))
                        .collect();
                    output.session(&capability).give_iterator(spans.into_iter());
                });
            }
        });
        // Stage 2, by batch: merge the partials of each completed epoch
        // into the batch's spans and report the changes.
        let route = Exchange::new(|(batch, _): &Partial| {
            crate::rolling_anomaly::sensor_route(&batch.0, &batch.1)
        });
        partials
            .unary_frontier(route, "BatchInputSpans", |_capability, _info| {
                let mut tracker = SpanTracker::default();
                let mut pending = BTreeMap::new();
                let mut updates = Vec::new();
                move |(input, frontier), output| {
                    input.for_each_stamp(|capability, data| {
                        if let Some(capability) = capability.retain_least(output.output_index()) {
                            let (_, stash) = pending
                                .entry(*capability.time())
                                .or_insert_with(|| (capability, Vec::<Partial>::new()));
                            for batch in data {
                                stash.append(batch);
                            }
                        }
                    });
                    while let Some(entry) = pending.first_entry() {
                        if frontier.less_equal(entry.key()) {
                            break;
                        }
                        let epoch = *entry.key();
                        let (capability, partials) = entry.remove();
                        for (batch, span) in &partials {
                            tracker.merge(&batch.0, &batch.1, span);
                        }
                        tracker.drain_updates(&mut updates);
                        output.session(&capability).give_iterator(
                            updates.drain(..).map(|(data, diff)| (data, epoch, diff)),
                        );
                    }
                }
            })
            .as_collection()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coord(partition: i32, offset: i64) -> SourceCoord {
        SourceCoord {
            topic: "scent.readings".into(),
            partition,
            offset,
        }
    }

    #[test]
    fn spans_grow_per_partition_and_report_each_change_once() {
        let mut tracker = SpanTracker::default();
        let mut updates = Vec::new();
        tracker.observe("L1", "B-1", &coord(0, 10));
        tracker.observe("L1", "B-1", &coord(0, 7));
        tracker.observe("L1", "B-1", &coord(1, 3));
        tracker.drain_updates(&mut updates);
        assert_eq!(updates.len(), 2);
        assert!(updates.iter().all(|(_, diff)| *diff == 1));
        let first = &updates[0].0 .1;
        assert_eq!(
            (
                first.partition,
                first.first_offset,
                first.last_offset,
                first.records
            ),
            (0, 7, 10, 2)
        );
        updates.clear();
        tracker.observe("L1", "B-1", &coord(0, 12));
        tracker.observe("L1", "B-1", &coord(0, 13));
        tracker.drain_updates(&mut updates);
        assert_eq!(updates.len(), 2, "one retraction, one insertion");
        assert_eq!(updates[0].0 .1.last_offset, 10);
        assert_eq!(updates[0].1, -1);
        assert_eq!(updates[1].0 .1.last_offset, 13);
        assert_eq!(updates[1].0 .1.records, 4);
        updates.clear();
        tracker.drain_updates(&mut updates);
        assert!(updates.is_empty());
    }
}
