//! The shared contaminant library: learning a signature from a confirmed
//! contamination, and the library as a collection every line matches
//! against.
//!
//! # Knowledge sharing
//!
//! A contamination that no signature of the library explains still raises
//! fingerprint alarms (T², SPE, similarity), and the quality agent holds
//! the batch, but nobody names it and the line runs on: the contaminant is
//! unknown. Once QA has confirmed what it was, `scent train contaminant`
//! learns its signature from the held batch's alarming cycles
//! ([`learn_signature`]) and publishes it to `scent.models` as
//! `contaminant/<name>`. Every engine reading the topic adds it to the
//! library ([`LatestSignatures`]) from the epoch it reads it at, and from
//! then on every line's arrays name it, and the quality agent escalates it
//! like any configured contaminant.
//!
//! # Learning
//!
//! A contaminated cycle's log deviation from its product's reference mean
//! is `d = ln(1 + m·s)` for the contaminant's relative response `s` and a
//! magnitude `m` that varies over the event (see [`crate::fingerprint`]).
//! The learned signature is the relative response of the mean deviation of
//! the batch's alarming cycles, `ŝ = exp(mean d) − 1`: at the event's mean
//! magnitude, and matched by direction only (the cosine), so the
//! magnitude does not matter. The signature is relative to each array's own
//! reference, so it carries from the array that learned it to every array
//! of the same channel layout; arrays of another channel count skip it.
//!
//! Learning refuses a batch that does not show one pattern: fewer than
//! `min_cycles` alarming cycles, or cycles whose mean cosine to their
//! common direction (the *coherence*) is below `min_coherence`: two
//! overlapping events, or alarms of another cause, would teach a direction
//! nothing real has.
//!
//! # The library as a collection
//!
//! The configured signatures enter at the first epoch; learned ones are
//! model records without event time, applied from the epoch they are read
//! at. A later record of the same name replaces the earlier learned one
//! (the collection retracts the old signature and adds the new one), so a
//! corrected signature, or a rollback with `scent train publish`, takes
//! effect the same way; in open batches, a line hold that rested on the old
//! signature alone is withdrawn. A learned signature does not replace a
//! configured one of the same name: both stay, and the better match wins.
//! Within one epoch, records of one name apply in the order they arrive
//! (the models topic's offset order).

use crate::event_clock::Epoch;
use crate::fingerprint::{cosine, ContaminantSignature};
use crate::rolling_anomaly::sensor_route;
use differential_dataflow::{AsCollection, VecCollection};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::StreamVec;

/// Why a signature cannot be learned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LearnError {
    /// Too few alarming cycles to learn from.
    #[error("{found} alarming cycles, at least {needed} are needed")]
    TooFewCycles {
        /// Alarming cycles given.
        found: usize,
        /// `min_cycles`.
        needed: usize,
    },
    /// The cycles do not share a direction.
    #[error(
        "the alarming cycles do not show one pattern: coherence {coherence:.3} < {min_coherence}"
    )]
    Incoherent {
        /// Mean cosine of the cycles to their mean direction.
        coherence: f64,
        /// `min_coherence`.
        min_coherence: f64,
    },
    /// The cycles have different channel counts.
    #[error("the cycles have {0} and {1} channels")]
    ChannelCount(usize, usize),
    /// The learned signature is not usable (bad name, no direction).
    #[error("{0}")]
    Signature(String),
}

/// Parameters of learning.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearnConfig {
    /// Alarming cycles a signature needs.
    pub min_cycles: usize,
    /// Smallest mean cosine of the cycles to their common direction.
    pub min_coherence: f64,
}

impl Default for LearnConfig {
    fn default() -> Self {
        LearnConfig {
            min_cycles: 3,
            min_coherence: 0.8,
        }
    }
}

/// A learned signature with what learning measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearnedSignature {
    /// The signature.
    pub signature: ContaminantSignature,
    /// Alarming cycles it was learned from.
    pub cycles: usize,
    /// Mean cosine of those cycles to the signature's pattern.
    pub coherence: f64,
}

/// Learns the signature of contaminant `name` from the log deviations of a
/// confirmed contamination's alarming cycles
/// ([`crate::fingerprint::FingerprintModel::deviation`]); see the module
/// docs.
pub fn learn_signature(
    name: &str,
    deviations: &[Vec<f64>],
    config: &LearnConfig,
) -> Result<LearnedSignature, LearnError> {
    let needed = config.min_cycles.max(1);
    if deviations.len() < needed {
        return Err(LearnError::TooFewCycles {
            found: deviations.len(),
            needed,
        });
    }
    let channels = deviations[0].len();
    if let Some(other) = deviations.iter().find(|d| d.len() != channels) {
        return Err(LearnError::ChannelCount(channels, other.len()));
    }
    let mut mean = vec![0.0; channels];
    for deviation in deviations {
        for (sum, d) in mean.iter_mut().zip(deviation) {
            *sum += d;
        }
    }
    for sum in &mut mean {
        *sum /= deviations.len() as f64;
    }
    let coherence =
        deviations.iter().map(|d| cosine(d, &mean)).sum::<f64>() / deviations.len() as f64;
    if coherence.is_nan() || coherence < config.min_coherence {
        return Err(LearnError::Incoherent {
            coherence,
            min_coherence: config.min_coherence,
        });
    }
    let signature = ContaminantSignature {
        name: name.to_owned(),
        response: mean.iter().map(|d| d.exp_m1()).collect(),
    };
    signature.check().map_err(LearnError::Signature)?;
    Ok(LearnedSignature {
        signature,
        cycles: deviations.len(),
        coherence,
    })
}

/// The exchange key of a signature: all records of one name meet on one
/// worker (the stable key hash the sensor operators route by).
fn name_route(signature: &ContaminantSignature) -> u64 {
    sensor_route(&signature.name, "")
}

/// Extension trait: the library collection from a stream of signatures.
pub trait LatestSignatures<'scope> {
    /// The latest signature of every name, as a collection: a signature
    /// retracts the one of its name before it (see the module docs).
    fn latest_signatures(self) -> VecCollection<'scope, Epoch, ContaminantSignature>;
}

impl<'scope> LatestSignatures<'scope> for StreamVec<'scope, Epoch, ContaminantSignature> {
    fn latest_signatures(self) -> VecCollection<'scope, Epoch, ContaminantSignature> {
        self.unary_frontier(
            Exchange::new(name_route),
            "LatestSignatures",
            |_capability, _info| {
                let mut current: BTreeMap<String, ContaminantSignature> = BTreeMap::new();
                let mut pending = BTreeMap::new();
                move |(input, frontier), output| {
                    input.for_each_stamp(|capability, data| {
                        let Some(&epoch) = capability.least() else {
                            return;
                        };
                        let Some(capability) = capability.retain_least(output.output_index())
                        else {
                            return;
                        };
                        let stash = &mut pending
                            .entry(epoch)
                            .or_insert_with(|| (capability, Vec::new()))
                            .1;
                        for batch in data {
                            stash.append(batch);
                        }
                    });
                    while let Some(entry) = pending.first_entry() {
                        let epoch = *entry.key();
                        if frontier.less_equal(&epoch) {
                            break;
                        }
                        let (capability, signatures) = entry.remove();
                        let mut session = output.session(&capability);
                        for signature in signatures {
                            let previous =
                                current.insert(signature.name.clone(), signature.clone());
                            if previous.as_ref() == Some(&signature) {
                                continue;
                            }
                            if let Some(previous) = previous {
                                session.give((previous, epoch, -1));
                            }
                            session.give((signature, epoch, 1));
                        }
                    }
                }
            },
        )
        .as_collection()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::nearest_contaminant;

    fn deviation_of(response: &[f64], magnitude: f64, wobble: f64) -> Vec<f64> {
        response
            .iter()
            .enumerate()
            .map(|(i, s)| (magnitude * s).ln_1p() + wobble * if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect()
    }

    const MOULD: [f64; 6] = [0.6, 0.05, 0.3, -0.1, 0.9, 0.2];

    #[test]
    fn a_learned_signature_matches_the_contaminant_at_any_magnitude() {
        let deviations: Vec<Vec<f64>> = [0.2, 0.5, 1.0, 1.5, 0.8]
            .iter()
            .map(|m| deviation_of(&MOULD, *m, 0.005))
            .collect();
        let learned = learn_signature("mould", &deviations, &LearnConfig::default()).unwrap();
        assert_eq!(learned.cycles, 5);
        assert!(learned.coherence > 0.98, "{}", learned.coherence);
        let truth = ContaminantSignature {
            name: "truth".into(),
            response: MOULD.to_vec(),
        };
        let cos = cosine(&learned.signature.pattern(), &truth.pattern());
        assert!(cos > 0.99, "learned pattern vs truth: {cos}");
        // A weak and a strong occurrence are both named by the learned one.
        for magnitude in [0.1, 3.0] {
            let matched = nearest_contaminant(
                &deviation_of(&MOULD, magnitude, 0.0),
                [&learned.signature],
                0.8,
            );
            assert_eq!(matched.unwrap().0, "mould");
        }
        // Another contaminant is not.
        let other = [-0.3, 0.8, 0.0, 0.6, -0.2, 0.1];
        assert!(
            nearest_contaminant(&deviation_of(&other, 1.0, 0.0), [&learned.signature], 0.8)
                .is_none()
        );
    }

    #[test]
    fn learning_refuses_what_is_not_one_pattern() {
        let config = LearnConfig::default();
        let few = vec![deviation_of(&MOULD, 1.0, 0.0); 2];
        assert_eq!(
            learn_signature("mould", &few, &config),
            Err(LearnError::TooFewCycles {
                found: 2,
                needed: 3
            })
        );
        let opposite: Vec<Vec<f64>> = (0..6)
            .map(|i| deviation_of(&MOULD, if i % 2 == 0 { 1.0 } else { -0.5 }, 0.0))
            .collect();
        assert!(matches!(
            learn_signature("mould", &opposite, &config),
            Err(LearnError::Incoherent { .. })
        ));
        let mixed = vec![vec![0.1; 6], vec![0.1; 6], vec![0.1; 5]];
        assert_eq!(
            learn_signature("mould", &mixed, &config),
            Err(LearnError::ChannelCount(6, 5))
        );
        let flat = vec![vec![0.0; 6]; 4];
        assert!(learn_signature("mould", &flat, &config).is_err());
        let unnamed = vec![deviation_of(&MOULD, 1.0, 0.0); 4];
        assert!(matches!(
            learn_signature(" ", &unnamed, &config),
            Err(LearnError::Signature(_))
        ));
    }

    #[test]
    fn versions_are_content_hashes() {
        let a = ContaminantSignature {
            name: "mould".into(),
            response: MOULD.to_vec(),
        };
        let mut b = a.clone();
        assert_eq!(a.version(), b.version());
        b.response[0] += 1e-9;
        assert_ne!(a.version(), b.version());
        assert_eq!(a.version().len(), 16);
    }

    #[test]
    fn the_latest_signature_of_a_name_replaces_the_earlier_one() {
        use timely::dataflow::operators::capture::{Capture, Extract};
        use timely::dataflow::operators::vec::ToStream;
        let first = ContaminantSignature {
            name: "mould".into(),
            response: MOULD.to_vec(),
        };
        let mut second = first.clone();
        second.response[1] = 0.4;
        let other = ContaminantSignature {
            name: "solvent".into(),
            response: vec![0.1; 6],
        };
        let records = vec![first.clone(), other.clone(), second.clone(), second.clone()];
        let captured = timely::example(move |scope| {
            records
                .to_stream(scope)
                .latest_signatures()
                .consolidate()
                .inner
                .capture()
        });
        let mut updates: Vec<(ContaminantSignature, isize)> = captured
            .extract()
            .into_iter()
            .flat_map(|(_, data)| data.into_iter().map(|(s, _, diff)| (s, diff)))
            .collect();
        differential_dataflow::consolidation::consolidate(&mut updates);
        assert_eq!(updates, vec![(second, 1), (other, 1)]);
    }
}
