//! The predictive agent: where each line's quality index is heading, and
//! whether it will cross its limit before the batch ends.
//!
//! ```text
//! cycles ⋈ fingerprint models ─▶ per (line, batch, window): max T²/limit, SPE/limit ─▶ quality index
//! quality index (by line) ─┬▶ LineForecasts (per line, in event-time order) ─▶ forecasts
//! forecast models ─────────┘      (broadcast; a new version applies from its epoch on)
//! forecasts ⋈ batch lifecycle ─▶ per (line, batch) ─▶ predictive verdict, alert
//! ```
//!
//! **Quality index.** Each exposure cycle scored against its fingerprint
//! gives `max(T²/T²-limit, SPE/SPE-limit)`; the line's index for a cycle
//! window is the largest over its arrays, so 1 is the alarm limit
//! (`scent_operators::forecast`); it saturates at ten times the limit.
//!
//! **Forecasts.** [`LineForecaster`] keeps the recent index of each line
//! and, for every new sample, asks the random-forest model of the batch's
//! product (`scent train`, published on `scent.models`) for the index 5
//! minutes, 30 minutes and 2 hours ahead, with the features that drive the
//! forecast. Forecasts are a differential collection: one per line and
//! origin, replaced when the sample at the origin is revised (a second
//! array's cycle raising the window's maximum). A forecast is made from the
//! index as known at its origin; a later revision of older samples does not
//! revise it (forecasts are advice about the future, not evidence about
//! the past).
//!
//! **Verdict.** Per batch, `suspect` when a forecast made during the batch
//! crossed the limit at a horizon that ends before the batch does (the end
//! event once known, else `expected_batch_ms` after the start), `pass`
//! otherwise; never `fail` or critical: a forecast is not a finding. The
//! first crossing also raises an `alert` action at its origin, so operators
//! can act before the index gets there. Without a model for the product
//! the agent gives no verdict.

use differential_dataflow::{AsCollection, VecCollection};
use scent_operators::consensus::finish;
use scent_operators::event_clock::Epoch;
use scent_operators::exposure_cycles::Cycle;
use scent_operators::fingerprint::FingerprintModel;
use scent_operators::forecast::{Forecast, ForecastModel, QualitySample};
use scent_operators::model::{
    Action, ActionKind, Agent, AgentVerdict, Assessment, BatchEvent, BatchPhase, EventTimeMs,
    Evidence,
};
use scent_operators::wire::format_timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::StreamVec;

/// Parameters of the predictive agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PredictiveConfig {
    /// Batch length assumed before a batch's end event is known, ms.
    pub expected_batch_ms: i64,
    /// Index samples kept per line (at least the models' history).
    pub history_samples: usize,
}

impl Default for PredictiveConfig {
    fn default() -> Self {
        PredictiveConfig {
            expected_batch_ms: 600_000,
            history_samples: 720,
        }
    }
}

/// One sample of a line's quality index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexPoint {
    /// The line.
    pub line: String,
    /// The batch of the cycle window.
    pub batch: String,
    /// Its product.
    pub product: String,
    /// Start of the cycle window.
    pub ts_ms: EventTimeMs,
    /// The index: largest fingerprint statistic over its limit.
    pub index: f64,
}

/// A forecast model for one product, as published (the model as JSON:
/// parsed once per worker).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ForecastModelUpdate {
    /// The product the model forecasts.
    pub product: String,
    /// The model's version.
    pub version: String,
    /// `ForecastModel` as JSON.
    pub model_json: String,
}

/// A forecast of one line's index from one origin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LineForecast {
    /// The line.
    pub line: String,
    /// The batch at the origin.
    pub batch: String,
    /// The model version used, `forecast:<product>:<version>`.
    pub model: String,
    /// The index at the origin.
    pub index: f64,
    /// The forecast.
    pub forecast: Forecast,
}

impl PartialEq for LineForecast {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for LineForecast {}
impl PartialOrd for LineForecast {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
/// Ordered by line, origin, batch and model, then every figure with
/// `f64::total_cmp`: a total order, for consolidation.
impl Ord for LineForecast {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let (a, b) = (&self.forecast, &other.forecast);
        (&self.line, a.ts_ms, &self.batch, &self.model)
            .cmp(&(&other.line, b.ts_ms, &other.batch, &other.model))
            .then_with(|| self.index.total_cmp(&other.index))
            .then_with(|| a.horizons.len().cmp(&b.horizons.len()))
            .then_with(|| {
                a.horizons
                    .iter()
                    .zip(&b.horizons)
                    .map(|(x, y)| {
                        (x.horizon_ms, x.crosses_limit)
                            .cmp(&(y.horizon_ms, y.crosses_limit))
                            .then_with(|| x.value.total_cmp(&y.value))
                    })
                    .find(|order| order.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
            .then_with(|| a.drivers_horizon_ms.cmp(&b.drivers_horizon_ms))
            .then_with(|| a.drivers.len().cmp(&b.drivers.len()))
            .then_with(|| {
                a.drivers
                    .iter()
                    .zip(&b.drivers)
                    .map(|(x, y)| x.0.cmp(&y.0).then_with(|| x.1.total_cmp(&y.1)))
                    .find(|order| order.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
    }
}

impl PartialEq for IndexPoint {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for IndexPoint {}
impl PartialOrd for IndexPoint {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for IndexPoint {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.line, self.ts_ms, &self.batch, &self.product)
            .cmp(&(&other.line, other.ts_ms, &other.batch, &other.product))
            .then_with(|| self.index.total_cmp(&other.index))
    }
}

/// Where the quality index saturates: ten times the alarm limit. How far
/// past the limit a contaminated cycle lands (ratios of 10⁴ are common) says
/// nothing about when the next crossing comes, and unbounded targets would
/// dominate the forests' leaves.
pub const INDEX_CEILING: f64 = 10.0;

/// The line quality index: per line, batch and cycle window, the largest
/// ratio of a fingerprint statistic to its limit over the line's arrays,
/// saturated at [`INDEX_CEILING`].
pub fn quality_index<'scope>(
    cycles: VecCollection<'scope, Epoch, Cycle>,
    models: VecCollection<'scope, Epoch, (String, FingerprintModel)>,
    cycle_ms: i64,
) -> VecCollection<'scope, Epoch, IndexPoint> {
    let cycles = cycles
        .map(|c| ((c.line.clone(), c.sensor.clone(), c.batch.clone()), c))
        .arrange_by_key();
    let models = models
        .map(|(batch, m)| ((m.line.clone(), m.sensor.clone(), batch), m))
        .arrange_by_key();
    let window = cycle_ms.max(1);
    cycles
        .join_core(models, move |_key, cycle, model| {
            let score = model.score(&cycle.values, &[], 1.0).ok()?;
            let ratio = |value: f64, limit: f64| value / limit.max(f64::MIN_POSITIVE);
            let index = ratio(score.t2, model.t2_limit)
                .max(ratio(score.spe, model.spe_limit))
                .min(INDEX_CEILING);
            Some((
                (
                    cycle.line.clone(),
                    cycle.batch.clone(),
                    cycle.product.clone(),
                    cycle.start_ms.div_euclid(window) * window,
                ),
                IndexOrd(index),
            ))
        })
        .reduce_named("QualityIndex", |_key, ratios, output| {
            let highest = ratios
                .iter()
                .filter(|(_, count)| *count > 0)
                .map(|(ratio, _)| ratio.0)
                .fold(f64::NEG_INFINITY, f64::max);
            if highest.is_finite() {
                output.push((IndexOrd(highest), 1));
            }
        })
        .map(|((line, batch, product, ts_ms), index)| IndexPoint {
            line,
            batch,
            product,
            ts_ms,
            index: index.0,
        })
}

/// An `f64` with `total_cmp` order, for collections.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct IndexOrd(f64);
impl PartialEq for IndexOrd {
    fn eq(&self, other: &Self) -> bool {
        self.0.total_cmp(&other.0).is_eq()
    }
}
impl Eq for IndexOrd {}
impl PartialOrd for IndexOrd {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for IndexOrd {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The forecasting state of one worker: the models by product, and the
/// recent index of each line routed to it.
#[derive(Default)]
pub struct LineForecaster {
    models: BTreeMap<String, (String, Rc<ForecastModel>)>,
    lines: HashMap<String, BTreeMap<EventTimeMs, IndexPoint>>,
    /// The forecast in the collection per line and origin.
    made: HashMap<String, BTreeMap<EventTimeMs, LineForecast>>,
    history: usize,
    /// Model updates that did not parse, with the reason.
    pub rejected_models: Vec<(String, String)>,
}

impl LineForecaster {
    /// A forecaster keeping `history` samples per line.
    pub fn new(history: usize) -> Self {
        LineForecaster {
            history: history.max(1),
            ..LineForecaster::default()
        }
    }

    /// Takes a new model version for its product.
    pub fn update_model(&mut self, update: &ForecastModelUpdate) {
        match serde_json::from_str::<ForecastModel>(&update.model_json)
            .map_err(|error| error.to_string())
            .and_then(|model| model.check().map(|()| model).map_err(|e| e.to_string()))
        {
            Ok(model) => {
                self.models.insert(
                    update.product.clone(),
                    (update.version.clone(), Rc::new(model)),
                );
            }
            Err(reason) => self
                .rejected_models
                .push((format!("{}:{}", update.product, update.version), reason)),
        }
    }

    /// Applies one epoch's index updates (any order) and appends the
    /// forecast updates: one forecast per new or revised sample that has
    /// a model and enough history.
    pub fn apply(
        &mut self,
        mut updates: Vec<(IndexPoint, isize)>,
        out: &mut Vec<(LineForecast, isize)>,
    ) {
        differential_dataflow::consolidation::consolidate(&mut updates);
        let mut origins: Vec<(String, EventTimeMs)> = Vec::new();
        for (point, diff) in updates {
            let series = self.lines.entry(point.line.clone()).or_default();
            if diff > 0 {
                origins.push((point.line.clone(), point.ts_ms));
                series.insert(point.ts_ms, point);
            } else if series.get(&point.ts_ms) == Some(&point) {
                series.remove(&point.ts_ms);
            }
        }
        origins.sort();
        origins.dedup();
        for (line, origin) in origins {
            let series = &self.lines[&line];
            let made = self.made.entry(line.clone()).or_default();
            if let Some(old) = made.remove(&origin) {
                out.push((old, -1));
            }
            let Some(point) = series.get(&origin) else {
                continue;
            };
            let Some((version, model)) = self.models.get(&point.product) else {
                continue;
            };
            // The history the model was trained on: the run of this
            // product on this line (`scent train` cuts series at product
            // changes and at gaps longer than the model's `max_gap_ms`,
            // which `forecast` checks).
            let mut history: Vec<QualitySample> = series
                .range(..=origin)
                .rev()
                .take_while(|(_, earlier)| earlier.product == point.product)
                .take(model.config().history_len())
                .map(|(ts_ms, point)| QualitySample {
                    ts_ms: *ts_ms,
                    index: point.index,
                    covariates: Vec::new(),
                })
                .collect();
            history.reverse();
            if let Some(forecast) = model.forecast(&history) {
                let made_forecast = LineForecast {
                    line: line.clone(),
                    batch: point.batch.clone(),
                    model: format!("forecast:{}:{version}", point.product),
                    index: point.index,
                    forecast,
                };
                out.push((made_forecast.clone(), 1));
                made.insert(origin, made_forecast);
            }
        }
        for (line, series) in self.lines.iter_mut() {
            while series.len() > self.history {
                series.pop_first();
            }
            if let Some(made) = self.made.get_mut(line) {
                let oldest = series.keys().next().copied().unwrap_or(EventTimeMs::MAX);
                made.retain(|origin, _| *origin >= oldest);
            }
        }
    }
}

/// The forecasts of every line, from the index and the model updates.
pub fn line_forecasts<'scope>(
    index: VecCollection<'scope, Epoch, IndexPoint>,
    models: StreamVec<'scope, Epoch, ForecastModelUpdate>,
    config: &PredictiveConfig,
) -> VecCollection<'scope, Epoch, LineForecast> {
    let history = config.history_samples;
    let route = Exchange::new(|(point, _, _): &(IndexPoint, Epoch, isize)| {
        scent_operators::rolling_anomaly::sensor_route(&point.line, "")
    });
    index
        .inner
        .binary_frontier(
            models.broadcast(),
            route,
            Pipeline,
            "LineForecasts",
            move |_capability, _info| {
                let mut forecaster = LineForecaster::new(history);
                let mut pending: BTreeMap<Epoch, (_, Vec<(IndexPoint, isize)>)> = BTreeMap::new();
                let mut pending_models: BTreeMap<Epoch, Vec<ForecastModelUpdate>> = BTreeMap::new();
                let mut out = Vec::new();
                move |(points, points_frontier), (updates, models_frontier), output| {
                    points.for_each_stamp(|capability, data| {
                        // A collection's message holds updates at its
                        // capability's time or later: file each at its own.
                        if let Some(capability) = capability.retain_least(output.output_index()) {
                            for batch in data {
                                for (point, time, diff) in batch.drain(..) {
                                    pending
                                        .entry(time)
                                        .or_insert_with(|| (capability.delayed(&time), Vec::new()))
                                        .1
                                        .push((point, diff));
                                }
                            }
                        }
                    });
                    updates.for_each_stamp(|capability, data| {
                        let Some(&epoch) = capability.least() else {
                            return;
                        };
                        let stash = pending_models.entry(epoch).or_default();
                        for batch in data {
                            stash.append(batch);
                        }
                    });
                    // A model applies from its epoch on: apply the model
                    // updates of every epoch the points' turn has reached.
                    let complete = |epoch: &Epoch| {
                        !points_frontier.less_equal(epoch) && !models_frontier.less_equal(epoch)
                    };
                    while let Some(entry) = pending_models.first_entry() {
                        let next_points = pending.keys().next();
                        if !complete(entry.key()) || next_points.is_some_and(|p| p < entry.key()) {
                            break;
                        }
                        for update in entry.remove() {
                            forecaster.update_model(&update);
                        }
                    }
                    while let Some(entry) = pending.first_entry() {
                        let epoch = *entry.key();
                        if !complete(&epoch) {
                            break;
                        }
                        let (capability, updates) = entry.remove();
                        if let Some(models) = pending_models.remove(&epoch) {
                            for update in models {
                                forecaster.update_model(&update);
                            }
                        }
                        while let Some(earlier) = pending_models.first_entry() {
                            if *earlier.key() > epoch {
                                break;
                            }
                            for update in earlier.remove() {
                                forecaster.update_model(&update);
                            }
                        }
                        forecaster.apply(updates, &mut out);
                        output.session(&capability).give_iterator(
                            out.drain(..)
                                .map(|(forecast, diff)| (forecast, epoch, diff)),
                        );
                    }
                }
            },
        )
        .as_collection()
}

/// A forecast or a lifecycle event of a batch.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum Outlook {
    Lifecycle(BatchEvent),
    Forecast(LineForecast),
}

/// The predictive agent's verdicts and alerts per batch.
pub fn predictive_verdicts<'scope>(
    forecasts: VecCollection<'scope, Epoch, LineForecast>,
    batch_events: VecCollection<'scope, Epoch, BatchEvent>,
    config: &PredictiveConfig,
    plant: String,
    rules_version: String,
) -> (
    VecCollection<'scope, Epoch, AgentVerdict>,
    VecCollection<'scope, Epoch, Action>,
) {
    let expected = config.expected_batch_ms;
    let outputs = forecasts
        .map(|forecast| {
            (
                (forecast.line.clone(), forecast.batch.clone()),
                Outlook::Forecast(forecast),
            )
        })
        .concat(batch_events.map(|event| {
            (
                (event.line.clone(), event.batch.clone()),
                Outlook::Lifecycle(event),
            )
        }))
        .reduce_named("PredictiveAgent", move |(line, batch), outlook, output| {
            let items: Vec<&Outlook> = outlook
                .iter()
                .filter(|(_, count)| *count > 0)
                .map(|(item, _)| *item)
                .collect();
            let (verdict, alert) = judge(line, batch, &items, expected, &plant, &rules_version);
            output.extend(verdict.map(|v| (Ok(v), 1)));
            output.extend(alert.map(|a| (Err(a), 1)));
        });
    let verdicts = outputs.clone().flat_map(|(_, item)| item.ok());
    let alerts = outputs.flat_map(|(_, item)| item.err());
    (verdicts, alerts)
}

/// The verdict and alert of one batch from its forecasts.
fn judge(
    line: &str,
    batch: &str,
    items: &[&Outlook],
    expected_batch_ms: i64,
    plant: &str,
    rules_version: &str,
) -> (Option<AgentVerdict>, Option<Action>) {
    let mut start: Option<&BatchEvent> = None;
    let mut end: Option<&BatchEvent> = None;
    let mut forecasts: Vec<&LineForecast> = Vec::new();
    for item in items {
        match item {
            Outlook::Lifecycle(event) => {
                let slot = match event.event {
                    BatchPhase::Start => &mut start,
                    BatchPhase::End => &mut end,
                };
                if slot.is_none_or(|seen| event.ts_ms < seen.ts_ms) {
                    *slot = Some(event);
                }
            }
            Outlook::Forecast(forecast) => forecasts.push(forecast),
        }
    }
    let product = start.or(end).map(|event| event.product.clone());
    if forecasts.is_empty() || product.is_none() {
        return (None, None);
    }
    forecasts.sort_by_key(|f| f.forecast.ts_ms);
    let horizon_end = match (end, start) {
        (Some(end), _) => end.ts_ms,
        (None, Some(start)) => start.ts_ms + expected_batch_ms,
        (None, None) => EventTimeMs::MAX,
    };
    let crossing = forecasts.iter().find_map(|forecast| {
        forecast
            .forecast
            .horizons
            .iter()
            .find(|h| h.crosses_limit && forecast.forecast.ts_ms + h.horizon_ms <= horizon_end)
            .map(|h| (*forecast, h))
    });
    let describe = |forecast: &LineForecast| {
        let horizons: Vec<String> = forecast
            .forecast
            .horizons
            .iter()
            .map(|h| format!("+{} min {:.2}", h.horizon_ms / 60_000, h.value))
            .collect();
        let drivers: Vec<String> = forecast
            .forecast
            .drivers
            .iter()
            .map(|(name, share)| format!("{name} {share:.2}"))
            .collect();
        format!(
            "index {:.2} at {}; forecast {}; drivers {}",
            forecast.index,
            format_timestamp(forecast.forecast.ts_ms),
            horizons.join(", "),
            drivers.join(", ")
        )
    };
    let latest = forecasts.last().expect("forecasts is not empty");
    let mut notes = vec![format!("latest: {}", describe(latest))];
    let mut models: Vec<String> = forecasts.iter().map(|f| f.model.clone()).collect();
    models.sort();
    models.dedup();
    let alert = crossing.map(|(forecast, horizon)| {
        let note = format!(
            "crosses the limit within {} min ({:.2}) before the batch ends: {}",
            horizon.horizon_ms / 60_000,
            horizon.value,
            describe(forecast)
        );
        notes.insert(0, note.clone());
        finish(Action {
            action_id: String::new(),
            kind: ActionKind::Alert,
            plant: plant.to_owned(),
            line: line.to_owned(),
            batch: Some(batch.to_owned()),
            product: product.clone(),
            decision: None,
            reasons: Vec::new(),
            evidence: Evidence {
                batch_start_ms: start.map(|s| s.ts_ms),
                batch_end_ms: None,
                anomalies: 0,
                rules_version: rules_version.to_owned(),
                verdicts: vec![AgentVerdict {
                    agent: Agent::Predictive,
                    line: line.to_owned(),
                    batch: batch.to_owned(),
                    assessment: Assessment::Suspect,
                    critical: false,
                    reasons: Vec::new(),
                    notes: vec![note],
                    models: vec![forecast.model.clone()],
                }],
                input: Vec::new(),
            },
            ts_ms: forecast.forecast.ts_ms,
            maintenance: None,
            revision: 1,
            supersedes: None,
            withdrawn: false,
            sealed: false,
        })
    });
    let verdict = AgentVerdict {
        agent: Agent::Predictive,
        line: line.to_owned(),
        batch: batch.to_owned(),
        assessment: match crossing {
            Some(_) => Assessment::Suspect,
            None => Assessment::Pass,
        },
        critical: false,
        reasons: Vec::new(),
        notes,
        models,
    };
    (Some(verdict), alert)
}
