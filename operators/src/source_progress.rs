//! Source progress: where each worker's source stood whenever its event
//! clock moved, and how a restarted worker replays those moves exactly.
//!
//! Admission at the source depends on the record, on its own partition's
//! history, and on the frontier at the moment the record was read: a record
//! behind the frontier is late, and a batch event behind it enters at the
//! frontier. The frontier in turn depends on wall time (idle partitions)
//! and on how reads of different partitions interleaved. A replay that
//! recomputed the frontier could therefore admit differently and produce a
//! different action stream.
//!
//! So the frontier is *reclocked*, as Materialize binds source offsets to
//! timestamps: every time a worker's source moves its capability, it emits
//! a [`SourceAdvance`] naming the new frontier and the next offset of each
//! of its partitions at that moment. Advances travel through the dataflow
//! to the transactional sink and are committed with the outputs they
//! produced. A restarted worker reads its committed advances back as a
//! [`ReplayScript`]: it reads each partition exactly up to the recorded
//! offsets, then sets the frontier to the recorded value, and so admits
//! every record at the same epoch (or rejects it for the same reason) as
//! the run that committed. After the script it continues on its live
//! clock.

use crate::event_clock::{Epoch, PartitionId};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// The next offset a source will read in one input partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionPosition {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
    /// Offset of the next record to read (last read + 1).
    pub next_offset: i64,
}

/// One move of a worker's source capability, from `from` to `to` (a
/// capability dropped at the end of a finite input moves to `Epoch::MAX`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SourceAdvance {
    /// The worker whose source moved.
    pub worker: usize,
    /// The frontier before the move; the advance is emitted at this epoch.
    pub from: Epoch,
    /// The frontier after the move.
    pub to: Epoch,
    /// Where each of the worker's partitions stood at the move.
    pub positions: Vec<PartitionPosition>,
}

/// A worker's committed advances, replayed in order.
#[derive(Debug, Clone, Default)]
pub struct ReplayScript {
    /// Each pending advance as (target offset per partition, new frontier).
    pending: VecDeque<(Vec<(PartitionId, i64)>, Epoch)>,
}

/// Why a script cannot be replayed by this source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPartition {
    /// Topic of the partition the script names.
    pub topic: String,
    /// Its number.
    pub partition: i32,
}

impl std::fmt::Display for UnknownPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "committed progress names {}/{}, which this worker does not read",
            self.topic, self.partition
        )
    }
}

impl std::error::Error for UnknownPartition {}

impl ReplayScript {
    /// A script of `advances` (in commit order), with partitions resolved
    /// to the worker's clock identifiers by `resolve`.
    pub fn new(
        advances: impl IntoIterator<Item = SourceAdvance>,
        resolve: impl Fn(&str, i32) -> Option<PartitionId>,
    ) -> Result<Self, UnknownPartition> {
        let mut pending = VecDeque::new();
        for advance in advances {
            let mut targets = Vec::with_capacity(advance.positions.len());
            for position in &advance.positions {
                let id = resolve(&position.topic, position.partition).ok_or_else(|| {
                    UnknownPartition {
                        topic: position.topic.clone(),
                        partition: position.partition,
                    }
                })?;
                targets.push((id, position.next_offset));
            }
            pending.push_back((targets, advance.to));
        }
        Ok(ReplayScript { pending })
    }

    /// Whether every scripted advance has been replayed.
    pub fn is_done(&self) -> bool {
        self.pending.is_empty()
    }

    /// Scripted advances still to replay.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is scripted.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Whether a record at `offset` of `partition` was read before the next
    /// scripted advance (and may be ingested now). Without a script every
    /// record may.
    pub fn admits(&self, partition: PartitionId, offset: i64) -> bool {
        let Some((targets, _)) = self.pending.front() else {
            return true;
        };
        targets
            .iter()
            .find(|(id, _)| *id == partition)
            .is_none_or(|&(_, target)| offset < target)
    }

    /// If every partition has been read up to the next scripted advance
    /// (`next_offset` gives the next offset to be ingested), removes that
    /// advance and returns its frontier.
    pub fn take_due(&mut self, next_offset: impl Fn(PartitionId) -> i64) -> Option<Epoch> {
        let (targets, _) = self.pending.front()?;
        if targets
            .iter()
            .all(|&(id, target)| next_offset(id) >= target)
        {
            self.pending.pop_front().map(|(_, to)| to)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P0: PartitionId = (0, 0);
    const P1: PartitionId = (0, 1);

    fn advance(to: Epoch, p0: i64, p1: i64) -> SourceAdvance {
        let position = |partition, next_offset| PartitionPosition {
            topic: "readings".into(),
            partition,
            next_offset,
        };
        SourceAdvance {
            worker: 0,
            from: 0,
            to,
            positions: vec![position(0, p0), position(1, p1)],
        }
    }

    fn resolve(topic: &str, partition: i32) -> Option<PartitionId> {
        (topic == "readings").then_some((0, partition))
    }

    #[test]
    fn records_wait_for_the_advance_that_followed_their_reading() {
        let mut script =
            ReplayScript::new([advance(5, 10, 3), advance(9, 12, 8)], resolve).unwrap();
        assert!(script.admits(P0, 9));
        assert!(!script.admits(P0, 10), "read after the move to epoch 5");
        assert_eq!(script.take_due(|id| if id == P0 { 10 } else { 2 }), None);
        assert_eq!(script.take_due(|id| if id == P0 { 10 } else { 3 }), Some(5));
        assert!(script.admits(P0, 11));
        assert!(!script.admits(P1, 8));
        assert_eq!(script.take_due(|_| 12), Some(9));
        assert!(script.is_done());
        assert!(script.admits(P1, 1_000), "live after the script");
    }

    #[test]
    fn a_script_naming_a_foreign_partition_is_refused() {
        let mut foreign = advance(5, 1, 1);
        foreign.positions[1].topic = "other".into();
        let error = ReplayScript::new([foreign], resolve).unwrap_err();
        assert_eq!(error.topic, "other");
    }
}
