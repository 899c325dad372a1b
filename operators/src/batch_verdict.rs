//! Verdict policy and reasons: how many findings of a rule hold a batch,
//! and how anomalies are summarised into the reasons a decision names.
//!
//! * [`VerdictPolicy`]: per rule, the findings on one sensor that hold a
//!   batch: a few z-score outliers may be noise, a single gap or flat line
//!   is a fault, a fingerprint alarm or a contaminant match must repeat
//!   (a single cycle is more often a spike than a contamination);
//! * [`summarise`]: anomalies grouped by `(sensor, rule)` into
//!   [`Reason`]s (count, strongest statistic, first and last event time,
//!   contributing channels, the contaminant matched most often);
//! * [`action_id`]: the deterministic id of an action, a hash of its
//!   content;
//! * [`IntoCollection`]: a timely stream as a differential collection of
//!   insertions.
//!
//! The agents that apply the policy are `crate::quality_agent` (product
//! findings), `crate::maintenance_agent` (instrument findings) and
//! `crate::consensus` (the release decision).

use crate::event_clock::Epoch;
use crate::model::{Action, Anomaly, AnomalyRule, Reason};
use differential_dataflow::{AsCollection, VecCollection};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use timely::dataflow::StreamVec;

/// How anomalies turn into decisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerdictPolicy {
    /// Plant identifier written into actions.
    pub plant: String,
    /// z-score outliers on one sensor that hold a batch (counting only
    /// outliers in runs of at least `min_zscore_run`).
    pub min_zscore_count: u64,
    /// Consecutive z-score outliers of one sensor that make a product
    /// finding; shorter runs are isolated spikes of the instrument.
    pub min_zscore_run: u64,
    /// Findings of a sensor within this time of its own flat-line or gap
    /// findings are attributed to that fault, not to the product (a stuck
    /// array's cycles leave the fingerprint because the array is stuck).
    pub fault_margin_ms: i64,
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
            min_zscore_run: 3,
            fault_margin_ms: 60_000,
            min_flat_line_count: 1,
            min_gap_count: 1,
            min_fingerprint_count: 2,
            min_contaminant_count: 2,
            rules_version: String::new(),
        }
    }
}

impl VerdictPolicy {
    /// The findings of `rule` on one sensor that hold a batch (at least 1).
    pub fn minimum(&self, rule: AnomalyRule) -> u64 {
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

/// A deterministic id: the first 128 bits of SHA-256 over the action's
/// content (everything but the id itself), hex-encoded.
pub fn action_id(action: &Action) -> String {
    let content = serde_json::to_vec(&Action {
        action_id: String::new(),
        ..action.clone()
    })
    .expect("actions always serialise");
    hex::encode(&Sha256::digest(&content)[..16])
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

    fn anomaly(sensor: &str, rule: AnomalyRule, seq: u64, statistic: f64) -> Anomaly {
        Anomaly {
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
            contaminant: (rule == AnomalyRule::Contaminant).then(|| "mould".into()),
        }
    }

    #[test]
    fn reasons_group_by_sensor_and_rule_with_counts_extremes_and_channels() {
        let anomalies = [
            anomaly("enose-1", AnomalyRule::ZScore, 10, 7.0),
            anomaly("enose-1", AnomalyRule::ZScore, 12, 9.0),
            anomaly("enose-1", AnomalyRule::Contaminant, 11, 0.9),
            anomaly("t-1", AnomalyRule::Gap, 40, 31.0),
        ];
        let reasons = summarise(&anomalies);
        assert_eq!(reasons.len(), 3);
        let zscore = &reasons[0];
        assert_eq!(
            (zscore.sensor.as_str(), zscore.rule),
            ("enose-1", AnomalyRule::ZScore)
        );
        assert_eq!(zscore.count, 2);
        assert_eq!(zscore.max_statistic, 9.0);
        assert_eq!((zscore.first_ts_ms, zscore.last_ts_ms), (10_000, 12_000));
        assert_eq!(zscore.channels, vec![2, 4]);
        assert_eq!(reasons[1].contaminant.as_deref(), Some("mould"));
    }

    #[test]
    fn ids_are_deterministic_and_cover_every_field() {
        let action = Action {
            action_id: String::new(),
            kind: crate::model::ActionKind::BatchRelease,
            plant: "p1".into(),
            line: "L1".into(),
            batch: Some("B-1".into()),
            product: Some("espresso".into()),
            decision: Some(crate::model::Decision::Release),
            reasons: vec![],
            evidence: Default::default(),
            ts_ms: 600_000,
            maintenance: None,
            revision: 1,
            supersedes: None,
            withdrawn: false,
            sealed: false,
        };
        let id = action_id(&action);
        assert_eq!(id.len(), 32);
        assert_eq!(
            id,
            action_id(&Action {
                action_id: "x".into(),
                ..action.clone()
            })
        );
        let sealed = Action {
            sealed: true,
            ..action.clone()
        };
        assert_ne!(id, action_id(&sealed));
        let revised = Action {
            revision: 2,
            ..action
        };
        assert_ne!(id, action_id(&revised));
    }
}
