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
//! spans and reports the spans of a batch once its end event is in, then
//! every later change (a late record). Only a decision made at the end
//! needs them, and reporting a running batch's spans at every epoch would
//! re-evaluate its decision as often. [`BatchInputSpans`] runs it in two
//! stages: where the records are, each epoch's records fold into partial
//! spans (one record per batch, partition and epoch leaves the worker, not
//! one per reading); routed by batch, each completed epoch's partials merge
//! into the batch's spans, whose reported changes form a differential
//! collection `((line, batch), span)`: at most one span per batch and
//! partition at any time. State: one span per batch and partition.

use crate::event_clock::Epoch;
use crate::ingest::Ingested;
use crate::model::{BatchPhase, InputSpan, SourceCoord};
use differential_dataflow::{AsCollection, VecCollection};
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

/// A batch: `(line, batch)`.
pub type BatchKey = (String, String);

/// One partition's span of a batch: its current extent, and the extent
/// last reported to the collection.
#[derive(Debug, Clone)]
struct PartitionSpan {
    current: InputSpan,
    reported: Option<InputSpan>,
}

/// Spans of record coordinates per batch and partition, reported once the
/// batch has ended (see the module docs).
#[derive(Debug, Default)]
pub struct SpanTracker {
    spans: BTreeMap<BatchKey, BTreeMap<(String, i32), PartitionSpan>>,
    ended: HashSet<BatchKey>,
    /// Batches whose spans changed since the last drain.
    changed: BTreeSet<BatchKey>,
}

impl SpanTracker {
    /// Folds one record of `batch` on `line`, read at `source`, into its span.
    pub fn observe(&mut self, line: &str, batch: &str, source: &SourceCoord) {
        self.merge(line, batch, &point(source));
    }

    /// Folds a partial span of `batch` on `line` into its span.
    pub fn merge(&mut self, line: &str, batch: &str, partial: &InputSpan) {
        let key = (line.to_owned(), batch.to_owned());
        let partition = (partial.topic.clone(), partial.partition);
        match self.spans.entry(key.clone()).or_default().entry(partition) {
            Entry::Occupied(mut entry) => widen(&mut entry.get_mut().current, partial),
            Entry::Vacant(entry) => {
                entry.insert(PartitionSpan {
                    current: partial.clone(),
                    reported: None,
                });
            }
        }
        self.changed.insert(key);
    }

    /// Marks `batch` on `line` ended: its spans are reported from the next
    /// drain on.
    pub fn end(&mut self, line: &str, batch: &str) {
        let key = (line.to_owned(), batch.to_owned());
        self.ended.insert(key.clone());
        self.changed.insert(key);
    }

    /// The changes of ended batches since the last call, as differential
    /// updates: the span last reported retracted, the current one inserted.
    pub fn drain_updates(&mut self, updates: &mut Vec<((BatchKey, InputSpan), isize)>) {
        for key in std::mem::take(&mut self.changed) {
            if !self.ended.contains(&key) {
                continue;
            }
            let Some(partitions) = self.spans.get_mut(&key) else {
                continue;
            };
            for span in partitions.values_mut() {
                if span.reported.as_ref() == Some(&span.current) {
                    continue;
                }
                if let Some(before) = span.reported.replace(span.current.clone()) {
                    updates.push(((key.clone(), before), -1));
                }
                updates.push(((key.clone(), span.current.clone()), 1));
            }
        }
    }
}

/// The span of one record.
fn point(source: &SourceCoord) -> InputSpan {
    InputSpan {
        topic: source.topic.clone(),
        partition: source.partition,
        first_offset: source.offset,
        last_offset: source.offset,
        records: 1,
    }
}

/// Widens `span` to cover `partial`.
fn widen(span: &mut InputSpan, partial: &InputSpan) {
    span.first_offset = span.first_offset.min(partial.first_offset);
    span.last_offset = span.last_offset.max(partial.last_offset);
    span.records += partial.records;
}

/// Extension trait: the input spans of every ended batch.
pub trait BatchInputSpans<'scope> {
    /// `((line, batch), span)`, one span per batch and partition, from the
    /// epoch of the batch's end event on.
    fn batch_input_spans(self) -> VecCollection<'scope, Epoch, (BatchKey, InputSpan)>;
}

/// One worker's records of one batch and partition in one epoch, and
/// whether they include the batch's end event.
type Partial = (BatchKey, InputSpan, bool);

impl<'scope> BatchInputSpans<'scope> for StreamVec<'scope, Epoch, Ingested> {
    fn batch_input_spans(self) -> VecCollection<'scope, Epoch, (BatchKey, InputSpan)> {
        // Stage 1, where the records are: fold each epoch's records into
        // partial spans per batch and partition (one record per batch,
        // partition and epoch leaves the worker, not one per reading).
        let partials = self.unary(Pipeline, "BatchSpanPartials", |_capability, _info| {
            move |input, output| {
                input.for_each_stamp(|capability, data| {
                    let mut folded: BTreeMap<(BatchKey, String, i32), (InputSpan, bool)> =
                        BTreeMap::new();
                    let mut fold = |line: &str, batch: &str, source: &SourceCoord, ends: bool| {
                        let key = (
                            (line.to_owned(), batch.to_owned()),
                            source.topic.clone(),
                            source.partition,
                        );
                        match folded.entry(key) {
                            Entry::Occupied(mut entry) => {
                                let (span, ended) = entry.get_mut();
                                widen(span, &point(source));
                                *ended |= ends;
                            }
                            Entry::Vacant(entry) => {
                                entry.insert((point(source), ends));
                            }
                        }
                    };
                    for batch in data {
                        for item in batch.iter() {
                            match item {
                                Ingested::Reading {
                                    reading, source, ..
                                } => {
                                    if let Some(batch) = &reading.batch {
                                        fold(&reading.line, batch, source, false);
                                    }
                                }
                                Ingested::Batch { event, source, .. } => fold(
                                    &event.line,
                                    &event.batch,
                                    source,
                                    event.event == BatchPhase::End,
                                ),
                                Ingested::Model { .. } | Ingested::Rejected(_) => {}
                            }
                        }
                    }
                    output.session(&capability).give_iterator(
                        folded
                            .into_iter()
                            .map(|((batch, _, _), (span, ends))| (batch, span, ends)),
                    );
                });
            }
        });
        // Stage 2, by batch: merge the partials of each completed epoch
        // into the batch's spans and report the changes of ended batches.
        let route = Exchange::new(|(batch, _, _): &Partial| {
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
                        for (batch, span, ends) in &partials {
                            tracker.merge(&batch.0, &batch.1, span);
                            if *ends {
                                tracker.end(&batch.0, &batch.1);
                            }
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
    fn spans_grow_per_partition_and_are_reported_from_the_batch_end_on() {
        let mut tracker = SpanTracker::default();
        let mut updates = Vec::new();
        tracker.observe("L1", "B-1", &coord(0, 10));
        tracker.observe("L1", "B-1", &coord(0, 7));
        tracker.observe("L1", "B-1", &coord(1, 3));
        tracker.drain_updates(&mut updates);
        assert!(
            updates.is_empty(),
            "a running batch's spans are not reported"
        );
        tracker.observe("L1", "B-1", &coord(0, 12));
        tracker.end("L1", "B-1");
        tracker.drain_updates(&mut updates);
        assert_eq!(updates.len(), 2, "both partitions at the end");
        assert!(updates.iter().all(|(_, diff)| *diff == 1));
        let first = &updates[0].0 .1;
        assert_eq!(
            (
                first.partition,
                first.first_offset,
                first.last_offset,
                first.records
            ),
            (0, 7, 12, 3)
        );
        updates.clear();
        // A late record of the ended batch: one retraction, one insertion.
        tracker.observe("L1", "B-1", &coord(0, 13));
        tracker.drain_updates(&mut updates);
        assert_eq!(updates.len(), 2);
        assert_eq!((updates[0].0 .1.last_offset, updates[0].1), (12, -1));
        assert_eq!(
            (updates[1].0 .1.last_offset, updates[1].0 .1.records),
            (13, 4)
        );
        updates.clear();
        tracker.drain_updates(&mut updates);
        assert!(updates.is_empty());
    }
}
