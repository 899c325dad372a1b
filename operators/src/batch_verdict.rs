//! Batch verdicts: release or hold a batch when it ends, with the reasons.
//!
//! A differential `reduce` keyed by `(line, batch)` over two kinds of
//! evidence: the batch's lifecycle events and the anomalies raised on
//! readings taken during the batch. Once the batch's `end` event is present,
//! the reduction yields one [`Action`] of kind `batch_release`:
//!
//! * anomalies are grouped by `(sensor, rule)` into [`Reason`]s (count,
//!   strongest statistic, first and last event time, contributing channels);
//! * a reason **holds** the batch when its count reaches the rule's minimum
//!   ([`VerdictPolicy`]): a few z-score outliers may be noise, a single gap
//!   or flat line is a fault;
//! * the decision is `hold` with the holding reasons (strongest first), or
//!   `release` with none.
//!
//! The action id is a hash of everything the decision says, so the same
//! input always produces the same id. Because this is a differential
//! collection, anomalies that arrive for a batch after its verdict retract
//! the old action and produce a new one (with a new id); the sink reports
//! only additions. Memory: the anomalies and the two lifecycle events of
//! every batch seen, in the reduce's arrangement.

use crate::event_clock::Epoch;
use crate::model::{
    Action, ActionKind, Anomaly, AnomalyRule, BatchEvent, BatchPhase, Decision, Evidence, Reason,
};
use differential_dataflow::{AsCollection, VecCollection};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::StreamVec;

/// How anomalies turn into decisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerdictPolicy {
    /// Plant identifier written into actions.
    pub plant: String,
    /// z-score outliers on one sensor that hold a batch.
    pub min_zscore_count: u64,
    /// Flat-line readings on one sensor that hold a batch.
    pub min_flat_line_count: u64,
    /// Gaps on one sensor that hold a batch.
    pub min_gap_count: u64,
    /// Cycles of one e-nose array beyond a fingerprint limit (T², SPE or
    /// similarity, counted per rule) that hold a batch.
    pub min_fingerprint_count: u64,
    /// Cycles of one array matched to a contaminant that hold a batch: a
    /// single matching cycle is more often a sensor spike than a
    /// contamination, which lasts minutes.
    pub min_contaminant_count: u64,
    /// Version of the detection rules, recorded as evidence.
    pub rules_version: String,
}

impl Default for VerdictPolicy {
    fn default() -> Self {
        VerdictPolicy {
            plant: "p1".into(),
            min_zscore_count: 3,
            min_flat_line_count: 1,
            min_gap_count: 1,
            min_fingerprint_count: 2,
            min_contaminant_count: 2,
            rules_version: String::new(),
        }
    }
}

impl VerdictPolicy {
    fn minimum(&self, rule: AnomalyRule) -> u64 {
        match rule {
            AnomalyRule::ZScore => self.min_zscore_count,
            AnomalyRule::FlatLine => self.min_flat_line_count,
            AnomalyRule::Gap => self.min_gap_count,
            AnomalyRule::HotellingT2 | AnomalyRule::Spe | AnomalyRule::Similarity => {
                self.min_fingerprint_count
            }
            AnomalyRule::Contaminant => self.min_contaminant_count,
        }
        .max(1)
    }
}

/// One piece of evidence about a batch.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum BatchEvidence {
    /// A lifecycle event.
    Lifecycle(BatchEvent),
    /// An anomaly raised during the batch.
    Anomaly(Anomaly),
}

/// Groups anomalies into reasons, one per `(sensor, rule)`.
pub fn summarise<'a>(anomalies: impl IntoIterator<Item = &'a Anomaly>) -> Vec<Reason> {
    // Per (sensor, rule): the reason so far and how often each channel contributed.
    type ChannelCounts = BTreeMap<u16, u64>;
    type MatchCounts<'a> = BTreeMap<&'a str, u64>;
    let mut grouped: BTreeMap<(&str, AnomalyRule), (Reason, ChannelCounts, MatchCounts<'a>)> =
        BTreeMap::new();
    for anomaly in anomalies {
        let (reason, channels, matches) = grouped
            .entry((anomaly.sensor.as_str(), anomaly.rule))
            .or_insert_with(|| {
                let reason = Reason {
                    sensor: anomaly.sensor.clone(),
                    kind: anomaly.kind,
                    rule: anomaly.rule,
                    count: 0,
                    max_statistic: anomaly.statistic,
                    limit: anomaly.limit,
                    first_ts_ms: anomaly.ts_ms,
                    last_ts_ms: anomaly.ts_ms,
                    channels: Vec::new(),
                    contaminant: None,
                };
                (reason, BTreeMap::new(), BTreeMap::new())
            });
        reason.count += 1;
        reason.max_statistic = reason.max_statistic.max(anomaly.statistic);
        reason.first_ts_ms = reason.first_ts_ms.min(anomaly.ts_ms);
        reason.last_ts_ms = reason.last_ts_ms.max(anomaly.ts_ms);
        for &channel in &anomaly.channels {
            *channels.entry(channel).or_default() += 1;
        }
        if let Some(name) = &anomaly.contaminant {
            *matches.entry(name.as_str()).or_default() += 1;
        }
    }
    grouped
        .into_values()
        .map(|(mut reason, channels, matches)| {
            reason.contaminant = matches
                .into_iter()
                .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
                .map(|(name, _)| name.to_owned());
            let mut ranked: Vec<_> = channels.into_iter().collect();
            ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            reason.channels = ranked.into_iter().take(3).map(|(c, _)| c).collect();
            reason
        })
        .collect()
}

/// The pure decision for one batch, from all its evidence; `None` until
/// the batch has ended.
pub fn decide(
    line: &str,
    batch: &str,
    evidence: &[&BatchEvidence],
    policy: &VerdictPolicy,
) -> Option<Action> {
    let mut start = None;
    let mut end = None;
    let mut anomalies = Vec::new();
    for item in evidence {
        match item {
            BatchEvidence::Lifecycle(event) if event.event == BatchPhase::Start => {
                start = Some(start.map_or(event.ts_ms, |s: i64| s.min(event.ts_ms)))
            }
            BatchEvidence::Lifecycle(event) => {
                if end
                    .as_ref()
                    .is_none_or(|e: &&BatchEvent| event.ts_ms < e.ts_ms)
                {
                    end = Some(event);
                }
            }
            BatchEvidence::Anomaly(anomaly) => anomalies.push(anomaly),
        }
    }
    let end = end?;
    let mut reasons: Vec<Reason> = summarise(anomalies.iter().copied())
        .into_iter()
        .filter(|reason| reason.count >= policy.minimum(reason.rule))
        .collect();
    reasons.sort_by(|a, b| {
        let strength = |r: &Reason| r.max_statistic / r.limit.max(f64::MIN_POSITIVE);
        strength(b).total_cmp(&strength(a)).then_with(|| a.cmp(b))
    });
    let decision = if reasons.is_empty() {
        Decision::Release
    } else {
        Decision::Hold
    };
    let evidence = Evidence {
        batch_start_ms: start,
        batch_end_ms: end.ts_ms,
        anomalies: anomalies.len() as u64,
        rules_version: policy.rules_version.clone(),
    };
    let mut action = Action {
        action_id: String::new(),
        kind: ActionKind::BatchRelease,
        plant: policy.plant.clone(),
        line: line.to_owned(),
        batch: Some(batch.to_owned()),
        product: Some(end.product.clone()),
        decision: Some(decision),
        reasons,
        evidence,
        ts_ms: end.ts_ms,
    };
    action.action_id = action_id(&action);
    Some(action)
}

/// A deterministic id: the first 128 bits of SHA-256 over the action's
/// content (everything but the id itself), hex-encoded.
pub fn action_id(action: &Action) -> String {
    let content = serde_json::to_vec(&(
        action.kind,
        &action.plant,
        &action.line,
        &action.batch,
        &action.product,
        action.decision,
        &action.reasons,
        &action.evidence,
        action.ts_ms,
    ))
    .expect("actions always serialise");
    hex::encode(&Sha256::digest(&content)[..16])
}

/// Extension trait: batch verdicts from anomalies and lifecycle events.
pub trait BatchVerdicts<'scope> {
    /// Decides every batch whose end event has arrived, at the epoch of
    /// that event; returns the collection of `batch_release` actions.
    fn batch_verdicts(
        self,
        batch_events: StreamVec<'scope, Epoch, BatchEvent>,
        policy: VerdictPolicy,
    ) -> VecCollection<'scope, Epoch, Action>;
}

impl<'scope> BatchVerdicts<'scope> for VecCollection<'scope, Epoch, Anomaly> {
    fn batch_verdicts(
        self,
        batch_events: StreamVec<'scope, Epoch, BatchEvent>,
        policy: VerdictPolicy,
    ) -> VecCollection<'scope, Epoch, Action> {
        let anomalies = self.flat_map(|anomaly| {
            let batch = anomaly.batch.clone()?;
            Some((
                (anomaly.line.clone(), batch),
                BatchEvidence::Anomaly(anomaly),
            ))
        });
        let lifecycle = batch_events
            .map(|event| {
                let key = (event.line.clone(), event.batch.clone());
                (key, BatchEvidence::Lifecycle(event))
            })
            .into_collection();
        anomalies
            .concat(lifecycle)
            .reduce_named("BatchVerdicts", move |(line, batch), evidence, output| {
                let items: Vec<&BatchEvidence> = evidence
                    .iter()
                    .filter(|(_, count)| *count > 0)
                    .map(|(item, _)| *item)
                    .collect();
                if let Some(action) = decide(line, batch, &items, &policy) {
                    output.push((action, 1));
                }
            })
            .map(|(_key, action)| action)
    }
}

impl<'scope> BatchVerdicts<'scope> for StreamVec<'scope, Epoch, Anomaly> {
    fn batch_verdicts(
        self,
        batch_events: StreamVec<'scope, Epoch, BatchEvent>,
        policy: VerdictPolicy,
    ) -> VecCollection<'scope, Epoch, Action> {
        self.into_collection().batch_verdicts(batch_events, policy)
    }
}

/// Turns a timely stream of records into a differential collection: each
/// record is an insertion (`+1`) at the epoch of its message.
pub trait IntoCollection<'scope, D> {
    /// The stream as a collection of insertions.
    fn into_collection(self) -> VecCollection<'scope, Epoch, D>;
}

impl<'scope, D: Clone + 'static> IntoCollection<'scope, D> for StreamVec<'scope, Epoch, D> {
    fn into_collection(self) -> VecCollection<'scope, Epoch, D> {
        use timely::dataflow::channels::pact::Pipeline;
        use timely::dataflow::operators::generic::Operator;
        self.unary(Pipeline, "WithTime", |_capability, _info| {
            move |input, output| {
                input.for_each_stamp(|capability, data| {
                    // Every message of a totally ordered stream carries a
                    // non-empty stamp; its least element is the message time.
                    let Some(&epoch) = capability.least() else {
                        return;
                    };
                    output.session(&capability).give_iterator(
                        data.flat_map(|batch| batch.drain(..))
                            .map(|item| (item, epoch, 1)),
                    );
                });
            }
        })
        .as_collection()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SensorKind;

    fn event(phase: BatchPhase, ts_ms: i64) -> BatchEvidence {
        BatchEvidence::Lifecycle(BatchEvent {
            batch: "B-1".into(),
            line: "L1".into(),
            product: "espresso".into(),
            event: phase,
            ts_ms,
        })
    }

    fn anomaly(sensor: &str, rule: AnomalyRule, seq: u64, statistic: f64) -> BatchEvidence {
        BatchEvidence::Anomaly(Anomaly {
            line: "L1".into(),
            sensor: sensor.into(),
            kind: SensorKind::Enose,
            batch: Some("B-1".into()),
            ts_ms: 1_000 * seq as i64,
            seq,
            rule,
            statistic,
            limit: 6.0,
            channels: vec![2, 4],
            contaminant: None,
        })
    }

    fn decide_all(items: &[BatchEvidence]) -> Option<Action> {
        let refs: Vec<_> = items.iter().collect();
        decide("L1", "B-1", &refs, &VerdictPolicy::default())
    }

    #[test]
    fn no_decision_before_the_end() {
        assert_eq!(decide_all(&[event(BatchPhase::Start, 0)]), None);
    }

    #[test]
    fn a_clean_batch_is_released() {
        let action =
            decide_all(&[event(BatchPhase::Start, 0), event(BatchPhase::End, 600_000)]).unwrap();
        assert_eq!(action.decision, Some(Decision::Release));
        assert!(action.reasons.is_empty());
        assert_eq!(action.evidence.batch_start_ms, Some(0));
        assert_eq!(action.action_id.len(), 32);
    }

    #[test]
    fn isolated_outliers_do_not_hold_but_repeated_ones_do() {
        let mut items = vec![
            event(BatchPhase::Start, 0),
            event(BatchPhase::End, 600_000),
            anomaly("enose-1", AnomalyRule::ZScore, 10, 7.0),
            anomaly("enose-1", AnomalyRule::ZScore, 11, 9.0),
        ];
        assert_eq!(
            decide_all(&items).unwrap().decision,
            Some(Decision::Release)
        );
        items.push(anomaly("enose-1", AnomalyRule::ZScore, 12, 8.0));
        items.push(anomaly("t-1", AnomalyRule::Gap, 40, 31.0));
        let action = decide_all(&items).unwrap();
        assert_eq!(action.decision, Some(Decision::Hold));
        assert_eq!(action.reasons.len(), 2);
        assert_eq!(action.reasons[1].sensor, "enose-1");
        assert_eq!(action.reasons[1].count, 3);
        assert_eq!(action.reasons[1].max_statistic, 9.0);
        assert_eq!(action.reasons[1].channels, vec![2, 4]);
        assert_eq!(action.evidence.anomalies, 4);
    }

    #[test]
    fn ids_are_deterministic_and_depend_on_content() {
        let items = [event(BatchPhase::End, 600_000)];
        let first = decide_all(&items).unwrap();
        assert_eq!(first.action_id, decide_all(&items).unwrap().action_id);
        let other = [event(BatchPhase::End, 600_001)];
        assert_ne!(first.action_id, decide_all(&other).unwrap().action_id);
    }
}
