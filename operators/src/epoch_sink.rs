//! Epoch sink: hands each completed epoch's actions, dead letters and
//! source progress to the outside world, in a deterministic order, on one
//! worker.
//!
//! Everything is routed to worker 0, which owns the one transactional
//! writer, so an epoch commits atomically across workers (output is small
//! next to input: decisions, rejections and progress records). The
//! operator buffers its inputs per epoch. When the frontier of both inputs
//! has passed an epoch, nothing more can arrive for it: the epoch's actions
//! (sorted by key, then revision, then id), dead letters (sorted by source coordinates) and
//! source advances (by worker and epoch) are passed to the `emit`
//! callback, in epoch order. That is the natural unit of an atomic commit,
//! and it keeps the output a function of the input alone.
//!
//! The epoch's action updates are consolidated and only net additions are
//! emitted: a retraction in the action collection means an addition in the
//! same epoch replaces it (see [`crate::batch_verdict`]). Dead letters
//! arrive as plain records.

use crate::event_clock::Epoch;
use crate::model::{Action, DeadLetter};
use crate::source_progress::SourceAdvance;
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Concat;
use timely::dataflow::StreamVec;

/// What one completed epoch produced, over all workers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochOutput {
    /// The epoch.
    pub epoch: Epoch,
    /// New actions, sorted by key, revision and id.
    pub actions: Vec<Action>,
    /// Dead letters, sorted by source coordinates.
    pub dead_letters: Vec<DeadLetter>,
    /// Source capability moves emitted at this epoch, by worker.
    pub advances: Vec<SourceAdvance>,
}

/// A record for the sink other than an action.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum SinkRecord {
    DeadLetter(DeadLetter),
    Advance(SourceAdvance),
}

/// Extension trait: emit completed epochs of actions, dead letters and
/// source progress.
pub trait EpochSink<'scope> {
    /// Calls `emit` on worker 0 once per completed epoch that produced
    /// output, in epoch order.
    fn epoch_sink<F>(
        self,
        dead_letters: StreamVec<'scope, Epoch, DeadLetter>,
        advances: StreamVec<'scope, Epoch, SourceAdvance>,
        emit: F,
    ) where
        F: FnMut(EpochOutput) + 'static;
}

/// An epoch's action updates (consolidated at emission), dead letters and
/// advances.
type PendingEpoch = (Vec<(Action, isize)>, Vec<DeadLetter>, Vec<SourceAdvance>);

impl<'scope> EpochSink<'scope> for VecCollection<'scope, Epoch, Action> {
    fn epoch_sink<F>(
        self,
        dead_letters: StreamVec<'scope, Epoch, DeadLetter>,
        advances: StreamVec<'scope, Epoch, SourceAdvance>,
        mut emit: F,
    ) where
        F: FnMut(EpochOutput) + 'static,
    {
        let records = dead_letters
            .map(SinkRecord::DeadLetter)
            .concat(advances.map(SinkRecord::Advance));
        let mut pending: BTreeMap<Epoch, PendingEpoch> = BTreeMap::new();
        self.inner
            .binary_frontier::<_, timely::container::CapacityContainerBuilder<Vec<()>>, _, _, _, _>(
                records,
                Exchange::new(|_: &(Action, Epoch, isize)| 0),
                Exchange::new(|_: &SinkRecord| 0),
                "EpochSink",
                move |_capability, _info| {
                    move |(actions, actions_frontier), (letters, letters_frontier), _output| {
                        actions.for_each_stamp(|_capability, data| {
                            for batch in data {
                                for (action, epoch, diff) in batch.drain(..) {
                                    pending.entry(epoch).or_default().0.push((action, diff));
                                }
                            }
                        });
                        letters.for_each_stamp(|capability, data| {
                            let Some(&epoch) = capability.least() else {
                                return;
                            };
                            let slot = pending.entry(epoch).or_default();
                            for batch in data {
                                for record in batch.drain(..) {
                                    match record {
                                        SinkRecord::DeadLetter(letter) => slot.1.push(letter),
                                        SinkRecord::Advance(advance) => slot.2.push(advance),
                                    }
                                }
                            }
                        });
                        while let Some(entry) = pending.first_entry() {
                            let epoch = *entry.key();
                            if actions_frontier.less_equal(&epoch)
                                || letters_frontier.less_equal(&epoch)
                            {
                                break;
                            }
                            let (mut updates, mut dead_letters, mut advances) = entry.remove();
                            differential_dataflow::consolidation::consolidate(&mut updates);
                            let mut actions: Vec<Action> = updates
                                .into_iter()
                                .filter(|(_, diff)| *diff > 0)
                                .flat_map(|(action, diff)| {
                                    std::iter::repeat_n(action, diff as usize)
                                })
                                .collect();
                            // By key (one partition per key), and within a
                            // key in revision order: a subject revised and
                            // sealed in one epoch keeps its chain in order.
                            actions.sort_by(|a, b| {
                                (a.key(), a.revision, &a.action_id).cmp(&(
                                    b.key(),
                                    b.revision,
                                    &b.action_id,
                                ))
                            });
                            dead_letters.sort_by(|a, b| a.record.source.cmp(&b.record.source));
                            advances.sort();
                            emit(EpochOutput {
                                epoch,
                                actions,
                                dead_letters,
                                advances,
                            });
                        }
                    }
                },
            );
    }
}
