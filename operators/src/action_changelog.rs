//! The action changelog: what MES consumers read on `scent.actions`.
//!
//! The agents' decisions are a differential collection: a late anomaly or
//! a new model version retracts a decision and inserts a new one. MES
//! systems need something simpler and stricter: a sequence of actions per
//! **subject** (a batch's release decision, its line hold, one sensor's
//! maintenance order; see [`ActionSubject`]) in which
//!
//! * the first action of a subject has `revision` 1;
//! * a changed decision is a new revision that names the `action_id` it
//!   `supersedes`; a decision whose evidence went away entirely is a
//!   `withdrawn` revision;
//! * when the batch is **sealed** (its end event plus `seal_after_ms`, the
//!   allowed lateness, has passed the event-time frontier), its release
//!   decision is repeated once with `sealed: true`: that revision is final;
//! * after the seal nothing about the batch changes: a change the
//!   collection still produces (for example a model update re-scoring an
//!   old batch) is refused and reported as a [`LateRevision`], never sent.
//!
//! [`Changelog`] is the pure state machine; [`ActionChangelog`] runs it in
//! the dataflow, routed by batch, one completed epoch at a time, and keeps
//! a capability at the earliest pending seal so that sealing revisions
//! carry the seal's epoch. The output is a function of the input alone.
//! State: the last revision of every subject of open batches, and the key
//! of every sealed batch.

use crate::batch_verdict::action_id;
use crate::event_clock::Epoch;
use crate::model::{Action, ActionKind, ActionSubject, EventTimeMs};
use differential_dataflow::{AsCollection, VecCollection};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

/// When batches seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangelogConfig {
    /// Event time after a batch's end at which it seals (the allowed
    /// lateness: no reading of the batch can be admitted after it).
    pub seal_after_ms: u64,
    /// Width of an epoch, to turn seal times into epochs.
    pub epoch_ms: u64,
}

impl ChangelogConfig {
    fn seal_epoch(&self, end_ms: EventTimeMs) -> Epoch {
        let sealed_at = end_ms.saturating_add(self.seal_after_ms as i64).max(0) as u64;
        sealed_at / self.epoch_ms.max(1)
    }
}

/// A change of a sealed batch's decisions that was not sent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LateRevision {
    /// The subject.
    pub subject: ActionSubject,
    /// The epoch of the refused change.
    pub epoch: Epoch,
    /// The action the collection would have sent (absent for a retraction).
    pub refused: Option<Box<Action>>,
}

/// The open state of one subject.
#[derive(Debug, Clone)]
struct Subject {
    /// Content id of the collection's current action (`None` after a
    /// retraction).
    content: Option<String>,
    /// The last revision sent.
    last: Action,
}

/// One open batch: its subjects and, once its end is known, its seal.
#[derive(Debug, Default)]
struct OpenBatch {
    subjects: BTreeMap<ActionSubject, Subject>,
    seal: Option<Epoch>,
}

/// The changelog state machine (see the module docs).
#[derive(Debug)]
pub struct Changelog {
    config: ChangelogConfig,
    open: BTreeMap<(String, Option<String>), OpenBatch>,
    seals: BTreeMap<Epoch, BTreeSet<(String, Option<String>)>>,
    sealed: BTreeSet<(String, Option<String>)>,
}

impl Changelog {
    /// An empty changelog.
    pub fn new(config: ChangelogConfig) -> Self {
        Changelog {
            config,
            open: BTreeMap::new(),
            seals: BTreeMap::new(),
            sealed: BTreeSet::new(),
        }
    }

    /// The earliest epoch at which a batch seals.
    pub fn next_seal(&self) -> Option<Epoch> {
        self.seals.keys().next().copied()
    }

    /// Applies the collection's updates of one completed epoch (any order;
    /// at most one current action per subject), appending the revisions to
    /// send and the refused changes.
    pub fn apply(
        &mut self,
        epoch: Epoch,
        mut updates: Vec<(Action, isize)>,
        sent: &mut Vec<Action>,
        refused: &mut Vec<LateRevision>,
    ) {
        differential_dataflow::consolidation::consolidate(&mut updates);
        // Per subject: the inserted action, and whether one was retracted.
        let mut changes: BTreeMap<ActionSubject, (Option<Action>, bool)> = BTreeMap::new();
        for (action, diff) in updates {
            let change = changes.entry(action.subject()).or_default();
            if diff > 0 {
                change.0 = Some(action);
            } else {
                change.1 = true;
            }
        }
        for (subject, (inserted, _retracted)) in changes {
            let batch_key = (subject.line.clone(), subject.batch.clone());
            if self.sealed.contains(&batch_key) {
                refused.push(LateRevision {
                    subject,
                    epoch,
                    refused: inserted.map(Box::new),
                });
                continue;
            }
            let open = self.open.entry(batch_key.clone()).or_default();
            if let Some(action) = &inserted {
                if action.kind == ActionKind::BatchRelease {
                    if let (None, Some(end)) = (open.seal, action.evidence.batch_end_ms) {
                        let seal = self.config.seal_epoch(end).max(epoch);
                        open.seal = Some(seal);
                        self.seals.entry(seal).or_default().insert(batch_key);
                    }
                }
            }
            let previous = open.subjects.get(&subject);
            // The collection's content id of the new state, and its revision.
            let next = match (inserted, previous) {
                (Some(action), None) => {
                    Some((Some(action.action_id.clone()), revise(action, None)))
                }
                (Some(action), Some(state)) => {
                    (state.content.as_deref() != Some(action.action_id.as_str())).then(|| {
                        (
                            Some(action.action_id.clone()),
                            revise(action, Some(&state.last)),
                        )
                    })
                }
                (None, Some(state)) if state.content.is_some() => {
                    let withdrawn = Action {
                        withdrawn: true,
                        ..state.last.clone()
                    };
                    Some((None, revise(withdrawn, Some(&state.last))))
                }
                (None, _) => None,
            };
            if let Some((content, action)) = next {
                sent.push(action.clone());
                open.subjects.insert(
                    subject,
                    Subject {
                        content,
                        last: action,
                    },
                );
            }
        }
    }

    /// Seals every batch whose seal epoch is at most `epoch`, appending the
    /// final revision of each release decision.
    pub fn seal_through(&mut self, epoch: Epoch, sent: &mut Vec<Action>) {
        while let Some(entry) = self.seals.first_entry() {
            if *entry.key() > epoch {
                break;
            }
            for batch_key in entry.remove() {
                let Some(open) = self.open.remove(&batch_key) else {
                    continue;
                };
                for state in open.subjects.into_values() {
                    if state.last.kind == ActionKind::BatchRelease && !state.last.withdrawn {
                        let sealed = Action {
                            sealed: true,
                            ..state.last.clone()
                        };
                        sent.push(revise(sealed, Some(&state.last)));
                    }
                }
                self.sealed.insert(batch_key);
            }
        }
    }
}

/// The next revision of a subject: `action` numbered after `previous`,
/// naming it, with its own id.
fn revise(action: Action, previous: Option<&Action>) -> Action {
    let mut revision = Action {
        revision: previous.map_or(1, |p| p.revision + 1),
        supersedes: previous.map(|p| p.action_id.clone()),
        ..action
    };
    revision.action_id = action_id(&revision);
    revision
}

/// Extension trait: the changelog of a collection of decisions.
pub trait ActionChangelog<'scope> {
    /// The revisions to send (as a collection of insertions) and the
    /// changes refused because their batch was sealed.
    fn action_changelog(
        self,
        config: ChangelogConfig,
    ) -> (
        VecCollection<'scope, Epoch, Action>,
        StreamVec<'scope, Epoch, LateRevision>,
    );
}

impl<'scope> ActionChangelog<'scope> for VecCollection<'scope, Epoch, Action> {
    fn action_changelog(
        self,
        config: ChangelogConfig,
    ) -> (
        VecCollection<'scope, Epoch, Action>,
        StreamVec<'scope, Epoch, LateRevision>,
    ) {
        let route = Exchange::new(|(action, _, _): &(Action, Epoch, isize)| {
            crate::rolling_anomaly::sensor_route(
                &action.line,
                action.batch.as_deref().unwrap_or(""),
            )
        });
        let entries: StreamVec<'scope, Epoch, Result<(Action, Epoch, isize), LateRevision>> = self
            .inner
            .unary_frontier(route, "ActionChangelog", move |_capability, _info| {
                let mut changelog = Changelog::new(config);
                let mut pending = BTreeMap::new();
                let mut seal_capability: Option<timely::dataflow::operators::Capability<Epoch>> =
                    None;
                let (mut sent, mut refused) = (Vec::new(), Vec::new());
                move |(input, frontier), output| {
                    input.for_each_stamp(|capability, data| {
                        // A collection's message holds updates at its
                        // capability's time or later: file each at its own.
                        if let Some(capability) = capability.retain_least(output.output_index()) {
                            for batch in data {
                                for (action, time, diff) in batch.drain(..) {
                                    pending
                                        .entry(time)
                                        .or_insert_with(|| (capability.delayed(&time), Vec::new()))
                                        .1
                                        .push((action, diff));
                                }
                            }
                        }
                    });
                    loop {
                        let next_update = pending.keys().next().copied();
                        let next_seal = changelog.next_seal();
                        let Some(epoch) = next_update.into_iter().chain(next_seal).min() else {
                            break;
                        };
                        if frontier.less_equal(&epoch) {
                            break;
                        }
                        if next_update == Some(epoch) {
                            let (capability, updates) =
                                pending.remove(&epoch).expect("the next update exists");
                            changelog.apply(epoch, updates, &mut sent, &mut refused);
                            // A new seal may precede the retained one.
                            if let Some(seal) = changelog.next_seal() {
                                if seal_capability.as_ref().is_none_or(|c| seal < *c.time()) {
                                    seal_capability = Some(capability.delayed(&seal));
                                }
                            }
                            let mut session = output.session(&capability);
                            session
                                .give_iterator(sent.drain(..).map(|action| Ok((action, epoch, 1))));
                            session.give_iterator(refused.drain(..).map(Err));
                        } else if let Some(capability) = &seal_capability {
                            changelog.seal_through(epoch, &mut sent);
                            let at = capability.delayed(&epoch);
                            output
                                .session(&at)
                                .give_iterator(sent.drain(..).map(|action| Ok((action, epoch, 1))));
                        }
                        match (changelog.next_seal(), &mut seal_capability) {
                            (Some(seal), Some(capability)) if seal > *capability.time() => {
                                capability.downgrade(&seal)
                            }
                            (None, capability) => *capability = None,
                            _ => {}
                        }
                    }
                }
            });
        let (sent, refused) = entries.ok_err(|entry| entry);
        (sent.as_collection(), refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::finish;
    use crate::model::{Decision, Evidence, MaintenanceOrder, MaintenanceWork, SensorKind};

    const CONFIG: ChangelogConfig = ChangelogConfig {
        seal_after_ms: 2_000,
        epoch_ms: 100,
    };

    fn release(batch: &str, decision: Decision, anomalies: u64) -> Action {
        finish(Action {
            action_id: String::new(),
            kind: ActionKind::BatchRelease,
            plant: "p1".into(),
            line: "L1".into(),
            batch: Some(batch.into()),
            product: Some("espresso".into()),
            decision: Some(decision),
            reasons: vec![],
            evidence: Evidence {
                batch_end_ms: Some(10_000),
                anomalies,
                ..Evidence::default()
            },
            ts_ms: 10_000,
            maintenance: None,
            revision: 1,
            supersedes: None,
            withdrawn: false,
            sealed: false,
        })
    }

    fn order(batch: &str) -> Action {
        finish(Action {
            kind: ActionKind::ScheduleMaintenance,
            decision: None,
            maintenance: Some(MaintenanceOrder {
                sensor: "enose-1".into(),
                kind: SensorKind::Enose,
                work: MaintenanceWork::Calibrate,
                window_start_ms: 10_000,
                duration_ms: 600_000,
                urgent: false,
                found_ms: 5_000,
                findings: vec![],
                baseline_shift_pct: Some(1.2),
                drift_pct_per_hour: None,
                remaining_useful_life_h: None,
            }),
            ..release(batch, Decision::Release, 0)
        })
    }

    #[test]
    fn revisions_supersede_until_the_seal_and_changes_after_it_are_refused() {
        let mut changelog = Changelog::new(CONFIG);
        let (mut sent, mut refused) = (Vec::new(), Vec::new());
        let first = release("B-1", Decision::Release, 0);
        changelog.apply(100, vec![(first.clone(), 1)], &mut sent, &mut refused);
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].revision, sent[0].supersedes.as_ref()), (1, None));
        assert_eq!(changelog.next_seal(), Some(120));
        let held = release("B-1", Decision::Hold, 3);
        changelog.apply(
            110,
            vec![(first.clone(), -1), (held.clone(), 1)],
            &mut sent,
            &mut refused,
        );
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[1].revision, 2);
        assert_eq!(sent[1].supersedes.as_ref(), Some(&sent[0].action_id));
        assert_eq!(sent[1].decision, Some(Decision::Hold));
        // The same content again sends nothing.
        changelog.apply(
            115,
            vec![(held.clone(), -1), (held.clone(), 1)],
            &mut sent,
            &mut refused,
        );
        assert_eq!(sent.len(), 2);
        changelog.seal_through(120, &mut sent);
        assert_eq!(sent.len(), 3);
        let sealed = &sent[2];
        assert!(sealed.sealed);
        assert_eq!(sealed.revision, 3);
        assert_eq!(sealed.decision, Some(Decision::Hold));
        assert_eq!(sealed.supersedes.as_ref(), Some(&sent[1].action_id));
        assert_eq!(changelog.next_seal(), None);
        changelog.apply(130, vec![(held, -1), (first, 1)], &mut sent, &mut refused);
        assert_eq!(sent.len(), 3, "nothing after the seal");
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].epoch, 130);
    }

    #[test]
    fn subjects_of_a_batch_have_their_own_chains_and_withdrawals() {
        let mut changelog = Changelog::new(CONFIG);
        let (mut sent, mut refused) = (Vec::new(), Vec::new());
        let maintenance = order("B-2");
        changelog.apply(50, vec![(maintenance.clone(), 1)], &mut sent, &mut refused);
        assert_eq!(changelog.next_seal(), None, "no release, no end: open");
        changelog.apply(
            100,
            vec![(release("B-2", Decision::Release, 0), 1)],
            &mut sent,
            &mut refused,
        );
        assert_eq!(sent.iter().map(|a| a.revision).collect::<Vec<_>>(), [1, 1]);
        changelog.apply(110, vec![(maintenance, -1)], &mut sent, &mut refused);
        let withdrawn = &sent[2];
        assert!(withdrawn.withdrawn);
        assert_eq!(withdrawn.kind, ActionKind::ScheduleMaintenance);
        assert_eq!(withdrawn.supersedes.as_ref(), Some(&sent[0].action_id));
        changelog.seal_through(500, &mut sent);
        assert_eq!(sent.len(), 4, "only the release decision is sealed");
        assert_eq!(sent[3].kind, ActionKind::BatchRelease);
        assert!(refused.is_empty());
    }
}
