//! Multivariate streaming process monitoring on a PCA model: Hotelling's
//! T², the squared prediction error (SPE, Q) and their combined index, with
//! optional dynamic (lagged) variables, exponential smoothing, empirical
//! control limits and a persistence rule. Every alarm names its rule, the
//! statistic, the limit and the channels that contribute most.
//!
//! # Method
//!
//! A [`MultivariateMonitor`] is fitted on in-control reference rows of `p`
//! variables and then fed one observation at a time, in time order. At each
//! step it uses only the present and past observations (no look-ahead):
//!
//! 1. **Dynamic PCA** (Ku, Storer & Georgakis 1995, "Disturbance detection
//!    and isolation by dynamic principal component analysis", *Chemometrics
//!    and Intelligent Laboratory Systems* 30): with `lags = l`, the monitored
//!    vector is `[x_t, x_{t−1}, …, x_{t−l}]` (`p (l + 1)` variables), so the
//!    model captures serial as well as cross correlation. `l = 0` is static
//!    PCA. The first `l` observations of a stream only fill the lag buffer.
//! 2. **Exponential smoothing** (multivariate EWMA, Lowry, Woodall, Champ &
//!    Rigdon 1992, "A multivariate exponentially weighted moving average
//!    control chart", *Technometrics* 34): the monitored vector is smoothed,
//!    `w_t = λ v_t + (1 − λ) w_{t−1}`, starting at the reference mean, and
//!    T² and SPE are computed on `w_t`. Averaging shrinks the noise by
//!    about `λ / (2 − λ)` while a persistent shift keeps its size, so small
//!    sustained faults stand out. `λ = 1` switches smoothing off.
//!    The rules [`MonitorRule::T2Unsmoothed`] and
//!    [`MonitorRule::SpeUnsmoothed`] also watch the present, unsmoothed
//!    vector `v_t`: a Shewhart chart beside the EWMA one (Lucas & Saccucci
//!    1990, "Exponentially weighted moving average control schemes:
//!    properties and enhancements", *Technometrics* 32, combined
//!    Shewhart–EWMA), so a large sudden change is not delayed by the
//!    smoothing while small sustained ones still build up.
//! 3. **Statistics**: T² and SPE of [`crate::pca`], and the combined index
//!    of Yue & Qin (2001, "Reconstruction-based fault identification using a
//!    combined index", *Industrial & Engineering Chemistry Research* 40),
//!    `φ = T² / T²_α + SPE / Q_α` (the theoretical limits at the monitor's
//!    nominal rate `α` normalise the two parts).
//! 4. **Limits.** [`LimitMethod::Theoretical`]: the F-distribution limit of
//!    T² (Tracy, Young & Mason 1992), the Jackson–Mudholkar limit of SPE and,
//!    for φ, Yue & Qin's `g χ²_h(α)` with
//!    `g = (k / T²_α² + θ₂ / Q_α²) / (k / T²_α + θ₁ / Q_α)` and
//!    `h = (k / T²_α + θ₁ / Q_α)² / (k / T²_α² + θ₂ / Q_α²)`. They assume
//!    independent, unsmoothed observations, so they are only accepted with
//!    `λ = 1`. [`LimitMethod::Empirical`]: the `q` quantile of the statistic
//!    over the reference rows, times a safety factor. With `folds > 1` the
//!    quantile is taken over **held-out** statistics: the reference rows are
//!    cut into that many contiguous blocks, each block is scored by a model
//!    fitted without it (the stream state, lags and smoothing, runs over all
//!    reference rows in order), so the limit reflects how the model sees new
//!    data rather than the rows it was fitted on (cross-validated control
//!    limits; the in-sample statistics of a model with many variables and
//!    few rows are optimistic). [`LimitMethod::Calibrated`] gives the
//!    false-alarm budget to the monitor as a whole rather than to each
//!    statistic: every monitored statistic gets its `q` quantile (held out
//!    as above), with the one `q` at which the share of reference rows
//!    where *any* of them is over its limit equals the budget (found by
//!    bisection; the joint rate falls as `q` rises). Monitors watching
//!    different numbers of correlated statistics are so compared at the
//!    same overall false-alarm rate, without a Bonferroni split that
//!    ignores their correlation.
//! 5. **Persistence**: a statistic over its limit alarms only when at least
//!    `required` of the last `window` observations were over a limit
//!    (a k-of-m run rule; Western Electric, *Statistical Quality Control
//!    Handbook*, 1956). `1 of 1` alarms on every exceedance.
//!
//! When several statistics exceed their limits at once, the alarm carries
//! the one furthest beyond its limit (largest `statistic / limit`).
//!
//! # Contributions
//!
//! T² and SPE contributions are those of [`crate::pca::PcaModel`] (Alcala &
//! Qin 2009 complete decomposition for T², squared residuals for SPE), on
//! the smoothed vector; φ contributions are the same mix as φ. With lags the
//! contributions of the lagged copies of a variable are summed, so an alarm
//! always names original channels. Shares are fractions of the total.
//!
//! # Cost
//!
//! Fitting is one PCA fit (`O(n m² + m³)` with `m = p (l + 1)`) plus, for
//! cross-validated limits, one more per fold and `O(n m k)` projections.
//! Each observation costs one projection, `O(m k)` (two with an unsmoothed
//! rule and `λ < 1`), plus `O(m)` for the
//! lag buffer and smoothing; contributions are computed only for alarms.
//! State per stream: `l` past observations, the smoothed vector and the
//! last `window` exceedance flags.

use crate::pca::{PcaConfig, PcaError, PcaModel, Projection};
use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF};
use std::collections::VecDeque;

/// Why a monitor cannot be fitted or fed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MonitorError {
    /// The underlying PCA model failed.
    #[error(transparent)]
    Pca(#[from] PcaError),
    /// A parameter is out of range; the message names it.
    #[error("invalid monitor configuration: {0}")]
    Config(String),
    /// An observation has the wrong number of variables.
    #[error("observation has {got} variables, the monitor expects {expected}")]
    DimensionMismatch {
        /// Variables expected.
        expected: usize,
        /// Variables given.
        got: usize,
    },
    /// An observation has a NaN or infinite value.
    #[error("observation has a non-finite value in variable {variable}")]
    NonFinite {
        /// The variable.
        variable: usize,
    },
    /// Too few reference rows for the lags and folds asked for.
    #[error("monitor needs at least {needed} reference observations, got {got}")]
    TooFewObservations {
        /// The minimum.
        needed: usize,
        /// What was given.
        got: usize,
    },
}

/// The statistic behind an alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MonitorRule {
    /// Hotelling's T² (variation inside the model plane).
    T2,
    /// Squared prediction error, Q (variation off the model plane).
    Spe,
    /// Yue & Qin's combined index φ.
    Combined,
    /// T² of the present, unsmoothed monitored vector (a Shewhart chart
    /// beside the MEWMA one; the same as [`MonitorRule::T2`] when
    /// `smoothing = 1`).
    T2Unsmoothed,
    /// SPE of the present, unsmoothed monitored vector.
    SpeUnsmoothed,
}

impl MonitorRule {
    /// Whether the rule looks at the unsmoothed monitored vector.
    pub fn is_unsmoothed(self) -> bool {
        matches!(self, MonitorRule::T2Unsmoothed | MonitorRule::SpeUnsmoothed)
    }
}

/// How the control limits are set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitMethod {
    /// Distributional limits at false-alarm rate `alpha` (unsmoothed only).
    Theoretical {
        /// Nominal false-alarm rate per statistic, in (0, 1).
        alpha: f64,
    },
    /// `factor` times the `quantile` of the statistic over the reference
    /// rows, held out in `folds` contiguous blocks when `folds > 1`.
    Empirical {
        /// Quantile in (0, 1].
        quantile: f64,
        /// Safety factor, positive.
        factor: f64,
        /// Cross-validation blocks; 0 or 1 for in-sample statistics.
        folds: usize,
    },
    /// One quantile `q` shared by every monitored statistic, chosen so
    /// that the share of reference rows on which at least one of them
    /// exceeds its limit is `false_alarm_rate`: the monitor as a whole,
    /// not each statistic, gets the false-alarm budget. Statistics held out
    /// in `folds` contiguous blocks when `folds > 1`.
    Calibrated {
        /// Alarm rate of the whole monitor on the reference, in (0, 1).
        false_alarm_rate: f64,
        /// Cross-validation blocks; 0 or 1 for in-sample statistics.
        folds: usize,
    },
}

/// A k-of-m run rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persistence {
    /// Exceedances needed (k), at least 1.
    pub required: usize,
    /// Recent observations looked at (m), at least `required`.
    pub window: usize,
}

/// Parameters of a multivariate monitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    /// The PCA model (components kept, standardisation).
    pub pca: PcaConfig,
    /// Past observations appended to the present one (dynamic PCA).
    pub lags: usize,
    /// EWMA weight λ of the newest observation, in (0, 1]; 1 = no smoothing.
    pub smoothing: f64,
    /// Statistics monitored, at least one.
    pub rules: Vec<MonitorRule>,
    /// Nominal false-alarm rate of the theoretical limits; also normalises
    /// the two parts of the combined index.
    pub alpha: f64,
    /// How limits are set.
    pub limits: LimitMethod,
    /// Run rule applied to exceedances.
    pub persistence: Persistence,
    /// Channels named in an alarm, at most.
    pub contributors: usize,
}

impl Default for MonitorConfig {
    /// Static PCA, T² and SPE with their 99 % theoretical limits: the
    /// textbook monitor.
    fn default() -> Self {
        MonitorConfig {
            pca: PcaConfig::default(),
            lags: 0,
            smoothing: 1.0,
            rules: vec![MonitorRule::T2, MonitorRule::Spe],
            alpha: 0.01,
            limits: LimitMethod::Theoretical { alpha: 0.01 },
            persistence: Persistence {
                required: 1,
                window: 1,
            },
            contributors: 3,
        }
    }
}

impl MonitorConfig {
    /// Checks the parameters; the error names the offending field.
    pub fn check(&self) -> Result<(), MonitorError> {
        let bad = |message: &str| Err(MonitorError::Config(message.into()));
        if !(self.smoothing > 0.0 && self.smoothing <= 1.0) {
            return bad("smoothing must lie in (0, 1]");
        }
        if self.rules.is_empty() {
            return bad("rules must name at least one statistic");
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return bad("alpha must lie in (0, 1)");
        }
        match self.limits {
            LimitMethod::Theoretical { alpha } => {
                if !(alpha > 0.0 && alpha < 1.0) {
                    return bad("limits.alpha must lie in (0, 1)");
                }
                if self.smoothing < 1.0 {
                    return bad(
                        "theoretical limits hold for unsmoothed statistics only (smoothing = 1)",
                    );
                }
            }
            LimitMethod::Empirical {
                quantile, factor, ..
            } => {
                if !(quantile > 0.0 && quantile <= 1.0) {
                    return bad("limits.quantile must lie in (0, 1]");
                }
                if !(factor.is_finite() && factor > 0.0) {
                    return bad("limits.factor must be a positive number");
                }
            }
            LimitMethod::Calibrated {
                false_alarm_rate, ..
            } => {
                if !(false_alarm_rate > 0.0 && false_alarm_rate < 1.0) {
                    return bad("limits.false_alarm_rate must lie in (0, 1)");
                }
            }
        }
        if self.persistence.required == 0 || self.persistence.window < self.persistence.required {
            return bad("persistence needs 1 <= required <= window");
        }
        Ok(())
    }
}

/// One channel named by an alarm.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    /// Index of the variable in the observation.
    pub variable: usize,
    /// Its share of the statistic, in [0, 1].
    pub share: f64,
}

/// An out-of-control observation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultivariateAlarm {
    /// The statistic that fired (the one furthest beyond its limit).
    pub rule: MonitorRule,
    /// Its value.
    pub statistic: f64,
    /// Its control limit.
    pub limit: f64,
    /// The channels contributing most, largest share first.
    pub contributors: Vec<Contribution>,
}

/// The statistics of one observation, whatever the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Statistics {
    /// Hotelling's T² of the (smoothed) monitored vector.
    pub t2: f64,
    /// Its SPE.
    pub spe: f64,
    /// Combined index φ.
    pub combined: f64,
    /// T² of the unsmoothed monitored vector (the same as `t2` when
    /// `smoothing = 1`; NaN when no unsmoothed rule is monitored).
    pub t2_unsmoothed: f64,
    /// SPE of the unsmoothed monitored vector (as `t2_unsmoothed`).
    pub spe_unsmoothed: f64,
}

impl Statistics {
    fn get(&self, rule: MonitorRule) -> f64 {
        match rule {
            MonitorRule::T2 => self.t2,
            MonitorRule::Spe => self.spe,
            MonitorRule::Combined => self.combined,
            MonitorRule::T2Unsmoothed => self.t2_unsmoothed,
            MonitorRule::SpeUnsmoothed => self.spe_unsmoothed,
        }
    }
}

/// Control limits of the three statistics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Limit of T².
    pub t2: f64,
    /// Limit of SPE.
    pub spe: f64,
    /// Limit of φ.
    pub combined: f64,
    /// Limit of the unsmoothed T² (NaN for empirical limits when no
    /// unsmoothed rule is monitored and `smoothing < 1`).
    pub t2_unsmoothed: f64,
    /// Limit of the unsmoothed SPE.
    pub spe_unsmoothed: f64,
}

impl Limits {
    fn get(&self, rule: MonitorRule) -> f64 {
        match rule {
            MonitorRule::T2 => self.t2,
            MonitorRule::Spe => self.spe,
            MonitorRule::Combined => self.combined,
            MonitorRule::T2Unsmoothed => self.t2_unsmoothed,
            MonitorRule::SpeUnsmoothed => self.spe_unsmoothed,
        }
    }
}

/// The part of the stream the statistics depend on: lag buffer, present
/// and smoothed monitored vectors.
#[derive(Debug, Clone)]
struct StreamState {
    /// Most recent observation first.
    past: VecDeque<Vec<f64>>,
    present: Vec<f64>,
    smoothed: Vec<f64>,
}

/// The monitored vector of one step, as it is and smoothed.
struct Monitored<'a> {
    present: &'a [f64],
    smoothed: &'a [f64],
}

impl StreamState {
    fn new(start: &[f64]) -> StreamState {
        StreamState {
            past: VecDeque::new(),
            present: start.to_vec(),
            smoothed: start.to_vec(),
        }
    }

    /// Takes the next observation; returns the monitored vector, present
    /// and smoothed, once the lag buffer is full.
    fn push(&mut self, x: &[f64], lags: usize, smoothing: f64) -> Option<Monitored<'_>> {
        let ready = self.past.len() == lags;
        if ready {
            let mut position = 0;
            for block in std::iter::once(x).chain(self.past.iter().map(Vec::as_slice)) {
                for &value in block {
                    let w = &mut self.smoothed[position];
                    *w = smoothing * value + (1.0 - smoothing) * *w;
                    self.present[position] = value;
                    position += 1;
                }
            }
        }
        if lags > 0 {
            if self.past.len() == lags {
                self.past.pop_back();
            }
            self.past.push_front(x.to_vec());
        }
        ready.then_some(Monitored {
            present: &self.present,
            smoothed: &self.smoothed,
        })
    }
}

/// The fitted part of a monitor, shared by every stream it watches.
#[derive(Debug, Clone)]
struct FittedStatistics {
    model: PcaModel,
    /// Theoretical T² and SPE limits at `alpha`, normalising φ.
    t2_scale: f64,
    spe_scale: f64,
}

impl FittedStatistics {
    fn new(model: PcaModel, alpha: f64) -> Result<FittedStatistics, MonitorError> {
        let t2_scale = model.t2_limit(alpha)?;
        // A model that keeps every variable has no residual and a zero SPE
        // limit; φ then reduces to its T² part.
        let spe_scale = model.spe_limit(alpha)?;
        Ok(FittedStatistics {
            model,
            t2_scale,
            spe_scale,
        })
    }

    fn spe_weight(&self) -> f64 {
        if self.spe_scale > 0.0 {
            1.0 / self.spe_scale
        } else {
            0.0
        }
    }

    fn evaluate(
        &self,
        monitored: &Monitored<'_>,
        mode: Present,
    ) -> Result<Evaluation, MonitorError> {
        let smoothed = self.model.project(monitored.smoothed)?;
        let present = match mode {
            Present::Project => Some(self.model.project(monitored.present)?),
            Present::Same | Present::Skip => None,
        };
        let (t2_unsmoothed, spe_unsmoothed) = match (&present, mode) {
            (Some(present), _) => (present.t2, present.spe),
            (None, Present::Same) => (smoothed.t2, smoothed.spe),
            (None, _) => (f64::NAN, f64::NAN),
        };
        let combined = smoothed.t2 / self.t2_scale + smoothed.spe * self.spe_weight();
        let statistics = Statistics {
            t2: smoothed.t2,
            spe: smoothed.spe,
            combined,
            t2_unsmoothed,
            spe_unsmoothed,
        };
        Ok(Evaluation {
            smoothed,
            present,
            statistics,
        })
    }
}

/// Whether the statistics of the unsmoothed monitored vector are needed
/// and how they are had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Present {
    /// No smoothing: the smoothed vector is the present one.
    Same,
    /// An unsmoothed rule is monitored: project the present vector too.
    Project,
    /// No unsmoothed rule is monitored.
    Skip,
}

impl Present {
    fn of(config: &MonitorConfig) -> Present {
        if config.smoothing >= 1.0 {
            Present::Same
        } else if config.rules.iter().any(|rule| rule.is_unsmoothed()) {
            Present::Project
        } else {
            Present::Skip
        }
    }
}

/// Projections and statistics of one step.
struct Evaluation {
    smoothed: Projection,
    /// The unsmoothed vector's projection, when it differs and is needed.
    present: Option<Projection>,
    statistics: Statistics,
}

/// A fitted multivariate monitor with the state of one stream.
///
/// Clone a freshly fitted monitor (or call [`MultivariateMonitor::reset`])
/// to watch another stream with the same model and limits.
#[derive(Debug, Clone)]
pub struct MultivariateMonitor {
    config: MonitorConfig,
    variables: usize,
    fitted: FittedStatistics,
    limits: Limits,
    state: StreamState,
    exceedances: VecDeque<bool>,
    last: Option<Statistics>,
}

impl MultivariateMonitor {
    /// Fits the model and the limits on in-control reference rows (in time
    /// order); the returned monitor starts a fresh stream.
    pub fn fit(
        reference: &[Vec<f64>],
        config: &MonitorConfig,
    ) -> Result<MultivariateMonitor, MonitorError> {
        config.check()?;
        let variables = reference.first().map_or(0, Vec::len);
        for row in reference {
            check_observation(row, variables)?;
        }
        let lags = config.lags;
        let folds = match config.limits {
            LimitMethod::Empirical { folds, .. } | LimitMethod::Calibrated { folds, .. } => {
                folds.max(1)
            }
            LimitMethod::Theoretical { .. } => 1,
        };
        let needed = (lags + 3) * folds.max(2);
        if reference.len() < needed {
            return Err(MonitorError::TooFewObservations {
                needed,
                got: reference.len(),
            });
        }
        let augmented = lagged_rows(reference, lags);
        let model = PcaModel::fit(&augmented, &config.pca)?;
        let fitted = FittedStatistics::new(model, config.alpha)?;
        let limits = match config.limits {
            LimitMethod::Theoretical { alpha } => theoretical_limits(&fitted, alpha)?,
            LimitMethod::Empirical {
                quantile,
                factor,
                folds,
            } => {
                let reference_statistics = if folds > 1 {
                    held_out_statistics(reference, &augmented, config, folds)?
                } else {
                    stream_statistics(reference, config, &fitted, |_| true)?
                };
                empirical_limits(&reference_statistics, quantile, factor)
            }
            LimitMethod::Calibrated {
                false_alarm_rate,
                folds,
            } => {
                let reference_statistics = if folds > 1 {
                    held_out_statistics(reference, &augmented, config, folds)?
                } else {
                    stream_statistics(reference, config, &fitted, |_| true)?
                };
                calibrated_limits(&reference_statistics, &config.rules, false_alarm_rate)
            }
        };
        let state = StreamState::new(&fitted.model.mean);
        Ok(MultivariateMonitor {
            config: config.clone(),
            variables,
            fitted,
            limits,
            state,
            exceedances: VecDeque::new(),
            last: None,
        })
    }

    /// The PCA model on the monitored (lagged) vector.
    pub fn model(&self) -> &PcaModel {
        &self.fitted.model
    }

    /// The control limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The configuration the monitor was fitted with.
    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    /// Statistics of the latest observation, once the lag buffer is full.
    pub fn last_statistics(&self) -> Option<Statistics> {
        self.last
    }

    /// Forgets the stream: lag buffer, smoothing and run rule start afresh.
    pub fn reset(&mut self) {
        self.state = StreamState::new(&self.fitted.model.mean);
        self.exceedances.clear();
        self.last = None;
    }

    /// Takes the stream's next observation and returns an alarm when it is
    /// out of control. The first `lags` observations of a stream only fill
    /// the lag buffer and never alarm.
    pub fn observe(&mut self, x: &[f64]) -> Result<Option<MultivariateAlarm>, MonitorError> {
        check_observation(x, self.variables)?;
        let Some(monitored) = self.state.push(x, self.config.lags, self.config.smoothing) else {
            return Ok(None);
        };
        let evaluation = self
            .fitted
            .evaluate(&monitored, Present::of(&self.config))?;
        let statistics = evaluation.statistics;
        self.last = Some(statistics);
        let worst = self
            .config
            .rules
            .iter()
            .map(|&rule| (rule, statistics.get(rule), self.limits.get(rule)))
            .filter(|(_, statistic, limit)| statistic > limit)
            .max_by(|a, b| (a.1 / a.2).total_cmp(&(b.1 / b.2)));
        let window = self.config.persistence.window;
        if self.exceedances.len() == window {
            self.exceedances.pop_front();
        }
        self.exceedances.push_back(worst.is_some());
        let count = self.exceedances.iter().filter(|&&e| e).count();
        let Some((rule, statistic, limit)) = worst else {
            return Ok(None);
        };
        if count < self.config.persistence.required {
            return Ok(None);
        }
        let projection = match (&evaluation.present, rule.is_unsmoothed()) {
            (Some(present), true) => present,
            _ => &evaluation.smoothed,
        };
        let contributors = self.contributors(rule, projection);
        Ok(Some(MultivariateAlarm {
            rule,
            statistic,
            limit,
            contributors,
        }))
    }

    /// The variables contributing most to `rule`, lagged copies folded.
    fn contributors(&self, rule: MonitorRule, projection: &Projection) -> Vec<Contribution> {
        let model = &self.fitted.model;
        let augmented = match rule {
            MonitorRule::T2 | MonitorRule::T2Unsmoothed => model.t2_contributions(projection),
            MonitorRule::Spe | MonitorRule::SpeUnsmoothed => model.spe_contributions(projection),
            MonitorRule::Combined => {
                let spe_weight = self.fitted.spe_weight();
                model
                    .t2_contributions(projection)
                    .iter()
                    .zip(model.spe_contributions(projection))
                    .map(|(t2, spe)| t2 / self.fitted.t2_scale + spe * spe_weight)
                    .collect()
            }
        };
        let mut folded = vec![0.0; self.variables];
        for (index, value) in augmented.iter().enumerate() {
            folded[index % self.variables] += value;
        }
        top_contributors(&folded, self.config.contributors)
    }
}

/// The `count` largest entries of `contributions` as shares of their sum,
/// largest first (ties by variable index).
pub fn top_contributors(contributions: &[f64], count: usize) -> Vec<Contribution> {
    let total: f64 = contributions.iter().sum();
    let mut order: Vec<usize> = (0..contributions.len()).collect();
    order.sort_by(|&a, &b| {
        contributions[b]
            .total_cmp(&contributions[a])
            .then(a.cmp(&b))
    });
    order
        .into_iter()
        .take(count)
        .map(|variable| Contribution {
            variable,
            share: if total > 0.0 {
                contributions[variable] / total
            } else {
                0.0
            },
        })
        .collect()
}

fn check_observation(x: &[f64], expected: usize) -> Result<(), MonitorError> {
    if x.len() != expected {
        return Err(MonitorError::DimensionMismatch {
            expected,
            got: x.len(),
        });
    }
    match x.iter().position(|v| !v.is_finite()) {
        Some(variable) => Err(MonitorError::NonFinite { variable }),
        None => Ok(()),
    }
}

/// Rows `[x_t, x_{t−1}, …, x_{t−lags}]` for every `t >= lags`.
fn lagged_rows(rows: &[Vec<f64>], lags: usize) -> Vec<Vec<f64>> {
    (lags..rows.len())
        .map(|t| {
            (0..=lags)
                .flat_map(|lag| rows[t - lag].iter().copied())
                .collect()
        })
        .collect()
}

fn theoretical_limits(fitted: &FittedStatistics, alpha: f64) -> Result<Limits, MonitorError> {
    let model = &fitted.model;
    let t2 = model.t2_limit(alpha)?;
    let spe = model.spe_limit(alpha)?;
    // Yue & Qin (2001): φ = T²/T²_α + SPE/Q_α is approximately g χ²_h.
    let (a, b) = (fitted.t2_scale, fitted.spe_scale);
    let k = model.components() as f64;
    let theta1: f64 = model.residual_eigenvalues.iter().sum();
    let theta2: f64 = model.residual_eigenvalues.iter().map(|l| l * l).sum();
    let (first, second) = if b > 0.0 {
        (k / a + theta1 / b, k / (a * a) + theta2 / (b * b))
    } else {
        (k / a, k / (a * a))
    };
    let g = second / first;
    let h = first * first / second;
    let combined = g * ChiSquared::new(h)
        .map_err(|e| MonitorError::Config(format!("combined index degrees of freedom: {e}")))?
        .inverse_cdf(1.0 - alpha);
    Ok(Limits {
        t2,
        spe,
        combined,
        t2_unsmoothed: t2,
        spe_unsmoothed: spe,
    })
}

/// The statistics of the reference rows streamed through a fresh stream of
/// `fitted`, kept for the rows (indices into `reference`) `keep` accepts.
fn stream_statistics(
    reference: &[Vec<f64>],
    config: &MonitorConfig,
    fitted: &FittedStatistics,
    keep: impl Fn(usize) -> bool,
) -> Result<Vec<Statistics>, MonitorError> {
    let mut state = StreamState::new(&fitted.model.mean);
    let mut statistics = Vec::with_capacity(reference.len());
    let mode = Present::of(config);
    for (t, row) in reference.iter().enumerate() {
        if let Some(monitored) = state.push(row, config.lags, config.smoothing) {
            if keep(t) {
                statistics.push(fitted.evaluate(&monitored, mode)?.statistics);
            }
        }
    }
    Ok(statistics)
}

/// Statistics of every reference row scored by a model fitted without the
/// contiguous block (of `folds`) it belongs to; the stream state of each
/// block's model runs over all reference rows in order.
fn held_out_statistics(
    reference: &[Vec<f64>],
    augmented: &[Vec<f64>],
    config: &MonitorConfig,
    folds: usize,
) -> Result<Vec<Statistics>, MonitorError> {
    let n = augmented.len();
    // Reference row `t` is augmented row `t − lags`.
    let block_of = |augmented_index: usize| augmented_index * folds / n;
    let mut statistics = Vec::with_capacity(n);
    for fold in 0..folds {
        let training: Vec<Vec<f64>> = augmented
            .iter()
            .enumerate()
            .filter(|(i, _)| block_of(*i) != fold)
            .map(|(_, row)| row.clone())
            .collect();
        let model = PcaModel::fit(&training, &config.pca)?;
        let fitted = FittedStatistics::new(model, config.alpha)?;
        statistics.extend(stream_statistics(reference, config, &fitted, |t| {
            t >= config.lags && block_of(t - config.lags) == fold
        })?);
    }
    Ok(statistics)
}

fn empirical_limits(statistics: &[Statistics], quantile: f64, factor: f64) -> Limits {
    let limit = |rule: MonitorRule| {
        let mut values: Vec<f64> = statistics.iter().map(|s| s.get(rule)).collect();
        factor * upper_quantile(&mut values, quantile)
    };
    Limits {
        t2: limit(MonitorRule::T2),
        spe: limit(MonitorRule::Spe),
        combined: limit(MonitorRule::Combined),
        t2_unsmoothed: limit(MonitorRule::T2Unsmoothed),
        spe_unsmoothed: limit(MonitorRule::SpeUnsmoothed),
    }
}

/// Limits at one quantile shared by the monitored `rules`, the smallest
/// whose joint exceedance rate ("any rule over its limit") over
/// `statistics` is at most `false_alarm_rate` (bisection on the quantile;
/// the rate falls as the quantile rises). Statistics not monitored get
/// the same quantile.
fn calibrated_limits(
    statistics: &[Statistics],
    rules: &[MonitorRule],
    false_alarm_rate: f64,
) -> Limits {
    let joint_rate = |limits: &Limits| {
        let alarms = statistics
            .iter()
            .filter(|s| rules.iter().any(|&rule| s.get(rule) > limits.get(rule)))
            .count();
        alarms as f64 / statistics.len().max(1) as f64
    };
    // Every statistic alone already alarms at about 1 − q, so the shared
    // quantile lies in [1 − rate, 1].
    let (mut low, mut high) = ((1.0 - false_alarm_rate).max(0.0), 1.0);
    for _ in 0..40 {
        let middle = 0.5 * (low + high);
        if joint_rate(&empirical_limits(statistics, middle, 1.0)) > false_alarm_rate {
            low = middle;
        } else {
            high = middle;
        }
    }
    empirical_limits(statistics, high, 1.0)
}

/// The `q` quantile of `values` (linear interpolation between order
/// statistics, Hyndman & Fan type 7); 0 for no values.
pub fn upper_quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let position = q.clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    let weight = position - below as f64;
    values[below] * (1.0 - weight) + values[above] * weight
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pca::Components;
    use crate::test_support::Gaussian;

    /// Six channels driven by two latent factors plus noise.
    fn process(n: usize, seed: u64) -> Vec<Vec<f64>> {
        let mut rng = Gaussian(seed);
        let a = [1.0, 0.8, 0.6, 0.0, 0.1, -0.5];
        let b = [0.0, 0.3, -0.4, 1.0, 0.9, 0.2];
        (0..n)
            .map(|_| {
                let (f1, f2) = (3.0 * rng.next(), 2.0 * rng.next());
                (0..6)
                    .map(|j| 10.0 + f1 * a[j] + f2 * b[j] + 0.3 * rng.next())
                    .collect()
            })
            .collect()
    }

    fn smoothed_config() -> MonitorConfig {
        MonitorConfig {
            pca: PcaConfig {
                components: Components::VarianceExplained(0.95),
                standardise: true,
            },
            lags: 1,
            smoothing: 0.2,
            rules: vec![MonitorRule::T2, MonitorRule::Spe, MonitorRule::Combined],
            alpha: 0.01,
            limits: LimitMethod::Empirical {
                quantile: 0.99,
                factor: 1.2,
                folds: 4,
            },
            persistence: Persistence {
                required: 2,
                window: 3,
            },
            contributors: 2,
        }
    }

    fn alarm_rate(monitor: &mut MultivariateMonitor, rows: &[Vec<f64>]) -> f64 {
        let alarms = rows
            .iter()
            .filter(|x| monitor.observe(x).unwrap().is_some())
            .count();
        alarms as f64 / rows.len() as f64
    }

    #[test]
    fn theoretical_limits_hold_their_rate_on_fresh_data() {
        let config = MonitorConfig {
            pca: PcaConfig {
                components: Components::Fixed(2),
                standardise: true,
            },
            rules: vec![MonitorRule::Combined],
            ..MonitorConfig::default()
        };
        let mut monitor = MultivariateMonitor::fit(&process(2_000, 1), &config).unwrap();
        let rate = alarm_rate(&mut monitor, &process(20_000, 2));
        assert!((0.004..0.025).contains(&rate), "combined index rate {rate}");
    }

    #[test]
    fn empirical_limits_are_quiet_in_control_and_catch_a_small_sustained_shift() {
        let config = smoothed_config();
        let fitted = MultivariateMonitor::fit(&process(1_000, 3), &config).unwrap();
        let mut monitor = fitted.clone();
        let rate = alarm_rate(&mut monitor, &process(5_000, 4));
        assert!(rate < 0.02, "in-control alarm rate {rate}");

        // Channel 3 drifts off the correlation structure by four noise units
        // (under half its standard deviation): rarely beyond the limits of
        // single observations, plain after smoothing.
        let mut shifted = process(400, 5);
        for row in &mut shifted {
            row[3] += 1.2;
        }
        let mut monitor = fitted.clone();
        let alarms: Vec<MultivariateAlarm> = shifted
            .iter()
            .filter_map(|x| monitor.observe(x).unwrap())
            .collect();
        assert!(alarms.len() > 300, "{} alarms", alarms.len());
        let last = alarms.last().unwrap();
        assert!(last.statistic > last.limit);
        assert_eq!(last.contributors.len(), 2);
        assert_eq!(last.contributors[0].variable, 3, "{last:?}");
        assert!(last.contributors[0].share >= last.contributors[1].share);
        assert!(last
            .contributors
            .iter()
            .all(|c| (0.0..=1.0).contains(&c.share)));
    }

    #[test]
    fn the_first_lags_observations_only_fill_the_buffer() {
        let config = MonitorConfig {
            lags: 2,
            ..smoothed_config()
        };
        let mut monitor = MultivariateMonitor::fit(&process(500, 6), &config).unwrap();
        let wild = vec![1e6; 6];
        assert_eq!(monitor.observe(&wild).unwrap(), None);
        assert_eq!(monitor.observe(&wild).unwrap(), None);
        assert!(monitor.last_statistics().is_none());
        monitor.observe(&wild).unwrap();
        assert!(monitor.last_statistics().is_some());
        monitor.reset();
        assert!(monitor.last_statistics().is_none());
    }

    #[test]
    fn persistence_needs_enough_recent_exceedances() {
        let config = MonitorConfig {
            persistence: Persistence {
                required: 3,
                window: 4,
            },
            ..MonitorConfig::default()
        };
        let reference = process(1_000, 7);
        let mut monitor = MultivariateMonitor::fit(&reference, &config).unwrap();
        let mut wild = reference[0].clone();
        wild[0] += 100.0;
        let verdicts: Vec<bool> = (0..4)
            .map(|_| monitor.observe(&wild).unwrap().is_some())
            .collect();
        assert_eq!(verdicts, [false, false, true, true]);
        // One in-control observation does not clear the run.
        assert_eq!(monitor.observe(&reference[1]).unwrap(), None);
        assert!(monitor.observe(&wild).unwrap().is_some());
    }

    #[test]
    fn lagged_contributions_name_original_channels() {
        let config = MonitorConfig {
            lags: 2,
            smoothing: 1.0,
            limits: LimitMethod::Empirical {
                quantile: 0.99,
                factor: 1.0,
                folds: 1,
            },
            persistence: Persistence {
                required: 1,
                window: 1,
            },
            contributors: 10,
            ..smoothed_config()
        };
        let reference = process(600, 8);
        let mut monitor = MultivariateMonitor::fit(&reference, &config).unwrap();
        let mut alarm = None;
        for x in &reference[..3] {
            let mut x = x.clone();
            x[5] += 50.0;
            alarm = monitor.observe(&x).unwrap();
        }
        let alarm = alarm.expect("a gross error alarms");
        assert_eq!(alarm.contributors.len(), 6);
        assert_eq!(alarm.contributors[0].variable, 5);
        let total: f64 = alarm.contributors.iter().map(|c| c.share).sum();
        assert!((total - 1.0).abs() < 1e-9);
    }

    #[test]
    fn bad_parameters_and_observations_are_typed_errors() {
        let reference = process(200, 9);
        let smoothed_theoretical = MonitorConfig {
            smoothing: 0.5,
            ..MonitorConfig::default()
        };
        assert!(matches!(
            MultivariateMonitor::fit(&reference, &smoothed_theoretical),
            Err(MonitorError::Config(_))
        ));
        let no_rules = MonitorConfig {
            rules: vec![],
            ..MonitorConfig::default()
        };
        assert!(MultivariateMonitor::fit(&reference, &no_rules).is_err());
        assert!(matches!(
            MultivariateMonitor::fit(&reference[..5], &smoothed_config()),
            Err(MonitorError::TooFewObservations { .. })
        ));
        let mut monitor = MultivariateMonitor::fit(&reference, &MonitorConfig::default()).unwrap();
        assert!(matches!(
            monitor.observe(&[1.0]),
            Err(MonitorError::DimensionMismatch {
                expected: 6,
                got: 1
            })
        ));
        let mut nan = reference[0].clone();
        nan[2] = f64::NAN;
        assert_eq!(
            monitor.observe(&nan),
            Err(MonitorError::NonFinite { variable: 2 })
        );
    }

    #[test]
    fn calibrated_limits_give_the_whole_monitor_its_budget() {
        let config = MonitorConfig {
            lags: 0,
            smoothing: 0.3,
            rules: vec![
                MonitorRule::T2,
                MonitorRule::Spe,
                MonitorRule::SpeUnsmoothed,
            ],
            limits: LimitMethod::Calibrated {
                false_alarm_rate: 0.02,
                folds: 1,
            },
            persistence: Persistence {
                required: 1,
                window: 1,
            },
            ..smoothed_config()
        };
        let reference = process(2_000, 10);
        let mut monitor = MultivariateMonitor::fit(&reference, &config).unwrap();
        // In sample, the joint rate is the budget (up to ties).
        let rate = alarm_rate(&mut monitor, &reference);
        assert!(
            (0.018..=0.021).contains(&rate),
            "joint in-sample rate {rate}"
        );
        // Three statistics share it: each limit sits above its own 98 %
        // quantile.
        let per_statistic = MultivariateMonitor::fit(
            &reference,
            &MonitorConfig {
                limits: LimitMethod::Empirical {
                    quantile: 0.98,
                    factor: 1.0,
                    folds: 1,
                },
                ..config.clone()
            },
        )
        .unwrap();
        assert!(monitor.limits().t2 > per_statistic.limits().t2);
        assert!(monitor.limits().spe_unsmoothed > per_statistic.limits().spe_unsmoothed);
        let bad = MonitorConfig {
            limits: LimitMethod::Calibrated {
                false_alarm_rate: 1.0,
                folds: 1,
            },
            ..config
        };
        assert!(matches!(
            MultivariateMonitor::fit(&reference, &bad),
            Err(MonitorError::Config(_))
        ));
    }

    #[test]
    fn the_unsmoothed_rule_catches_a_single_gross_error_at_once() {
        let config = MonitorConfig {
            lags: 0,
            smoothing: 0.05,
            rules: vec![
                MonitorRule::T2,
                MonitorRule::Spe,
                MonitorRule::SpeUnsmoothed,
            ],
            persistence: Persistence {
                required: 1,
                window: 1,
            },
            contributors: 1,
            ..smoothed_config()
        };
        let reference = process(1_000, 11);
        let mut monitor = MultivariateMonitor::fit(&reference, &config).unwrap();
        let mut wild = reference[0].clone();
        wild[4] += 2.0;
        let alarm = monitor
            .observe(&wild)
            .unwrap()
            .expect("a gross residual alarms");
        assert_eq!(alarm.rule, MonitorRule::SpeUnsmoothed);
        assert_eq!(alarm.contributors[0].variable, 4);
        let statistics = monitor.last_statistics().unwrap();
        assert!(statistics.spe_unsmoothed > statistics.spe);
        // Without the unsmoothed rule the smoothing (λ = 0.05) hides it.
        let smoothed_only = MonitorConfig {
            rules: vec![MonitorRule::T2, MonitorRule::Spe],
            ..config
        };
        let mut monitor = MultivariateMonitor::fit(&reference, &smoothed_only).unwrap();
        assert_eq!(monitor.observe(&wild).unwrap(), None);
        assert!(monitor.last_statistics().unwrap().spe_unsmoothed.is_nan());
    }

    #[test]
    fn quantiles_interpolate_between_order_statistics() {
        let mut values = vec![4.0, 1.0, 3.0, 2.0, 5.0];
        assert_eq!(upper_quantile(&mut values, 0.5), 3.0);
        assert_eq!(upper_quantile(&mut values, 1.0), 5.0);
        assert!((upper_quantile(&mut values, 0.9) - 4.6).abs() < 1e-12);
        assert_eq!(upper_quantile(&mut [], 0.9), 0.0);
    }
}
