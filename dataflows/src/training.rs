//! The training dataflow: the product fingerprint each batch is scored
//! against, fitted from the batches of the same product that preceded it.
//!
//! ```text
//! batch starts ─▶ per (line, product): the `reference_batches` batches before each batch ─┐
//! batch ends ──▶ ended batches ─┐                                                         │
//! cycles ─▶ semijoin ended ─────┴▶ join (line, reference batch) ◀─────────────────────────┘
//!        ─▶ reduce per (line, sensor, product, scored batch) ─▶ fit ─▶ (scored batch, model)
//! ```
//!
//! **Moving-window reference.** Metal-oxide arrays drift: baselines move by
//! a few hundredths of a percent an hour, so a fingerprint fitted at
//! commissioning flags clean product after a day. Each batch is therefore
//! scored against a model fitted on the cycles of the `reference_batches`
//! batches of the same product that ran just before it on the same line
//! (the moving-window PCA of Wang, Kruger & Irwin, "Process monitoring
//! approach using fast moving window PCA", *Ind. Eng. Chem. Res.* 44, 2005,
//! with batches as the window). Drift between neighbouring batches is far
//! below the noise of a cycle; a fault or contamination inside a reference
//! batch is trimmed from the fit by its robust distance (see
//! `FingerprintModel::fit`), and a reference batch disturbed in more than
//! `max_trimmed_share` of its cycles fails the fit, which leaves the next
//! batch unscored by fingerprints rather than scored against a disturbed
//! model. The reference is the preceding batch whatever its verdict: a held
//! batch disturbed in a minority of its cycles still stands for the product
//! once trimmed. What a moving window cannot see is a change slower than
//! one batch to the next (a contamination creeping in over many batches);
//! the rolling z-score covers the fast side, and the first batch of a
//! product on a line (no predecessor) is scored by the rolling detectors
//! alone.
//!
//! A model is fitted once every reference batch has ended. Models are a
//! differential collection: a reference cycle that closes after its batch's
//! end event, or a late batch event, refits the model, and the new version
//! retracts the old one's scores downstream and re-scores the batch.
//!
//! State: the start and end events of every batch, and every cycle
//! (`reference_batches + 1` times, in the joins' arrangements).

use differential_dataflow::VecCollection;
use scent_operators::event_clock::Epoch;
use scent_operators::exposure_cycles::Cycle;
use scent_operators::fingerprint::{FingerprintConfig, FingerprintModel};
use scent_operators::model::{BatchEvent, BatchPhase};
use serde::{Deserialize, Serialize};

/// Parameters of the training dataflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    /// Preceding batches of the same product and line whose cycles form
    /// the reference of a batch.
    pub reference_batches: usize,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        TrainingConfig {
            reference_batches: 1,
        }
    }
}

/// For every batch that has predecessors, the fingerprint of each array
/// fitted on the cycles of those predecessors: `(scored batch, model)`.
pub fn fingerprint_models<'scope>(
    cycles: VecCollection<'scope, Epoch, Cycle>,
    batch_events: VecCollection<'scope, Epoch, BatchEvent>,
    training: TrainingConfig,
    fingerprint: &FingerprintConfig,
) -> VecCollection<'scope, Epoch, (String, FingerprintModel)> {
    let window = training.reference_batches.max(1);
    // ((line, reference batch), scored batch) for every batch and each of
    // its `window` predecessors of the same product on the same line.
    let references = batch_events
        .clone()
        .filter(|event| event.event == BatchPhase::Start)
        .map(|event| ((event.line, event.product), (event.ts_ms, event.batch)))
        .reduce_named("ReferenceBatches", move |_key, starts, output| {
            let mut batches: Vec<&(i64, String)> = starts
                .iter()
                .filter(|(_, count)| *count > 0)
                .map(|(start, _)| *start)
                .collect();
            // Values arrive sorted by (start, batch); a batch with two
            // start events counts once, at its first.
            let mut seen = std::collections::BTreeSet::new();
            batches.retain(|(_, batch)| seen.insert(batch));
            for (index, (_, scored)) in batches.iter().enumerate() {
                for (_, reference) in &batches[index.saturating_sub(window)..index] {
                    output.push(((reference.clone(), scored.clone()), 1));
                }
            }
        })
        .map(|((line, _product), (reference, scored))| ((line, reference), scored));
    let ended = batch_events
        .filter(|event| event.event == BatchPhase::End)
        .map(|event| (event.line, event.batch))
        .distinct();
    let config = fingerprint.clone();
    cycles
        .map(|cycle| ((cycle.line.clone(), cycle.batch.clone()), cycle))
        .semijoin(ended)
        .join_map(references, |_key, cycle, scored| {
            (
                (
                    cycle.line.clone(),
                    cycle.sensor.clone(),
                    cycle.product.clone(),
                    scored.clone(),
                ),
                cycle.clone(),
            )
        })
        .reduce_named(
            "FitFingerprints",
            move |(line, sensor, product, _scored), cycles, output| {
                let reference: Vec<&Cycle> = cycles
                    .iter()
                    .filter(|(_, count)| *count > 0)
                    .map(|(cycle, _)| *cycle)
                    .collect();
                if let Ok(model) = FingerprintModel::fit(line, sensor, product, &reference, &config)
                {
                    output.push((model, 1));
                }
            },
        )
        .map(|((_line, _sensor, _product, scored), model)| (scored, model))
}
