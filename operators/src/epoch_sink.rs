//! Epoch sink: hands each completed epoch's actions and dead letters to
//! the outside world, in a deterministic order, exactly once per worker.
//!
//! The operator buffers both inputs per epoch. When the frontier of both
//! inputs has passed an epoch, nothing more can arrive for it: the epoch's
//! actions (sorted by key and id) and dead letters (sorted by source
//! coordinates) are passed to the `emit` callback, in epoch order. That is
//! the natural unit of an atomic commit. Holding back until completion
//! costs latency of one epoch plus the allowed lateness, and keeps the
//! output a function of the input alone.
//!
//! The epoch's action updates are consolidated and only net additions are
//! emitted: a retraction in the action collection means an addition in the
//! same epoch replaces it (see [`crate::batch_verdict`]). Dead letters
//! arrive as plain records.

use crate::event_clock::Epoch;
use crate::model::{Action, DeadLetter};
use differential_dataflow::VecCollection;
use std::collections::BTreeMap;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

/// What one completed epoch produced on one worker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochOutput {
    /// The epoch.
    pub epoch: Epoch,
    /// New actions, sorted by key and id.
    pub actions: Vec<Action>,
    /// Dead letters, sorted by source coordinates.
    pub dead_letters: Vec<DeadLetter>,
}

/// Extension trait: emit completed epochs of actions and dead letters.
pub trait EpochSink<'scope> {
    /// Calls `emit` once per completed epoch that produced output, in
    /// epoch order, on the worker that holds the records.
    fn epoch_sink<F>(self, dead_letters: StreamVec<'scope, Epoch, DeadLetter>, emit: F)
    where
        F: FnMut(EpochOutput) + 'static;
}

/// An epoch's action updates (consolidated at emission) and dead letters.
type PendingEpoch = (Vec<(Action, isize)>, Vec<DeadLetter>);

impl<'scope> EpochSink<'scope> for VecCollection<'scope, Epoch, Action> {
    fn epoch_sink<F>(self, dead_letters: StreamVec<'scope, Epoch, DeadLetter>, mut emit: F)
    where
        F: FnMut(EpochOutput) + 'static,
    {
        let mut pending: BTreeMap<Epoch, PendingEpoch> = BTreeMap::new();
        self.inner
            .binary_frontier::<_, timely::container::CapacityContainerBuilder<Vec<()>>, _, _, _, _>(
                dead_letters,
                Pipeline,
                Pipeline,
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
                                slot.1.append(batch);
                            }
                        });
                        while let Some(entry) = pending.first_entry() {
                            let epoch = *entry.key();
                            if actions_frontier.less_equal(&epoch)
                                || letters_frontier.less_equal(&epoch)
                            {
                                break;
                            }
                            let (mut updates, mut dead_letters) = entry.remove();
                            differential_dataflow::consolidation::consolidate(&mut updates);
                            let mut actions: Vec<Action> = updates
                                .into_iter()
                                .filter(|(_, diff)| *diff > 0)
                                .flat_map(|(action, diff)| {
                                    std::iter::repeat_n(action, diff as usize)
                                })
                                .collect();
                            actions.sort_by(|a, b| {
                                (a.key(), &a.action_id).cmp(&(b.key(), &b.action_id))
                            });
                            dead_letters.sort_by(|a, b| a.record.source.cmp(&b.record.source));
                            emit(EpochOutput {
                                epoch,
                                actions,
                                dead_letters,
                            });
                        }
                    }
                },
            );
    }
}
