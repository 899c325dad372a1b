//! Univariate statistical process control: Shewhart individuals chart with
//! the Western Electric rules, EWMA, tabular CUSUM and a windowed z-score,
//! per channel of a stream, with Phase I estimation or self-starting limits.
//!
//! # Phase I and Phase II
//!
//! A chart compares each new value `x` with the *in-control* mean `μ0` and
//! standard deviation `σ` of its channel, held in [`ControlLimits`]
//! (`center`, `sigma`). Every chart works on the standardised value
//! `z = (x - μ0) / σ`, so statistics and limits are in units of σ and
//! independent of the channel's scale. The limits come from one of:
//!
//! * **Phase I on reference data** ([`ControlLimits::estimate`]): `μ0` is
//!   the sample mean and `σ = MR̄ / d2` with the average moving range
//!   `MR̄ = Σ|x_i - x_{i-1}| / (n - 1)` and `d2 = 1.128` for ranges of two
//!   (Montgomery, *Introduction to Statistical Quality Control*, 7th ed.,
//!   §6.4). The moving range is the recommended estimator for
//!   individual observations: a slow drift inside the reference data
//!   inflates it far less than the sample standard deviation.
//! * **Self-starting** ([`PhaseOneEstimator`], and [`SpcMonitor::new`]):
//!   the first `learn_count` values of each channel are taken as in-control
//!   reference data, the same estimate is formed from them in O(1) memory
//!   (running mean and running sum of moving ranges), floored by
//!   [`SigmaFloor`] so that a channel that never moved still gets a usable
//!   σ, and frozen; charting starts with the next value. This is the plain
//!   "learn, then freeze" scheme, not the sequentially updated self-starting
//!   CUSUM of Hawkins (1987, *The Statistician* 36, 165-173). Estimated
//!   limits make the in-control ARL a random variable that differs from the
//!   tabulated one, the more so the shorter the reference (Quesenberry 1993,
//!   *J. Quality Technology* 25, 237-247; Jensen et al. 2006, *JQT* 38,
//!   349-364): with 100 reference values the realised ARL0 of a 3σ chart
//!   scatters by tens of percent from stream to stream, and on average
//!   rule 1 fires on 0.40 % of values instead of 0.27 % (0.33 % with 200,
//!   0.28 % with 1000; simulated over 320 streams of 5000 values). Use
//!   several hundred reference values when the process allows it.
//!
//! # The charts (all in σ units, `z_i` the standardised value)
//!
//! * [`ShewhartChart`], individuals chart with limits `±L` (`L = 3`) and the
//!   Western Electric rules (Western Electric *Statistical Quality Control
//!   Handbook*, 1956; Montgomery §5.3.6). With zones at `L/3` and `2L/3`:
//!   1. one point beyond `L` (rule name `shewhart`);
//!   2. two of three consecutive points beyond `2L/3`, same side (`we_rule_2`);
//!   3. four of five consecutive points beyond `L/3`, same side (`we_rule_3`);
//!   4. eight consecutive points on one side of the centre line (`we_rule_4`).
//!
//!   A rule fires at the point that completes its pattern, and only if that
//!   point is itself part of it (beyond the zone, on the same side), so a
//!   pattern is not reported again by the quiet points that follow it.
//!   Rules 2 and 3 report the number of qualifying points in the window as
//!   statistic (limit 2 or 4), rule 4 the length of the run (limit 8). The
//!   state is three 8-bit shift registers per side and two run counters.
//!   The Nelson (1984) rules 5-8 (six points trending, fourteen
//!   alternating, fifteen within `L/3`, eight beyond `L/3` on both sides)
//!   are not implemented.
//! * [`EwmaChart`] (Roberts 1959; Montgomery §9.2):
//!   `w_i = λ z_i + (1 - λ) w_{i-1}`, `w_0 = 0`, signal when
//!   `|w_i| > L sqrt(λ / (2 - λ) · (1 - (1 - λ)^(2i)))`, the exact
//!   time-varying limits, which are narrower for the first points so that
//!   an early shift is caught sooner (Montgomery §9.2.1); with
//!   `time_varying_limits = false`, the asymptotic limit from the first
//!   point, as in the ARL tables. The statistic is not reset after a
//!   signal: it keeps signalling while the shift lasts.
//! * [`CusumChart`], the tabular CUSUM (Page 1954; Montgomery §9.1.2):
//!   `C⁺_i = max(0, z_i - k + C⁺_{i-1})`,
//!   `C⁻_i = max(0, -z_i - k + C⁻_{i-1})`, with reference value `k` and
//!   decision interval `h` in σ. A side signals when its sum exceeds `h`
//!   and then restarts from the head start (0 by default; `h/2` is the
//!   fast initial response of Lucas & Crosier 1982). On a signal the chart
//!   also estimates the new mean, `μ0 + σ(k + C⁺/N⁺)` (Montgomery §9.1.2),
//!   with `N⁺` the number of points since `C⁺` was last zero.
//! * [`WindowedZScore`], no Phase I: `z = (x - m) / s` against the mean `m`
//!   and sample standard deviation `s` of the last `window` accepted values
//!   (at least `warmup` of them), `s` floored by [`SigmaFloor`]. The window
//!   keeps sliding Welford sums (mean and `M2 = Σ(x - m)²`, updated in O(1)
//!   for each insertion or replacement; Welford 1962, Chan, Golub & LeVeque
//!   1983), which avoid the cancellation of `Σx² - (Σx)²/n` when the mean
//!   is large against the spread, and are recomputed from the window once
//!   per turnover so rounding cannot accumulate. Outliers are kept out of
//!   the window by default, so a persistent excursion stays visible.
//!
//! # Average run lengths of the defaults
//!
//! For independent normal data with known `μ0` and `σ` (zero-state ARL,
//! the shift present from the first point); "sim." is the figure the
//! seeded simulations in the tests reach:
//!
//! | chart | ARL0 (in control) | ARL at a 1σ shift | anchor |
//! |---|---|---|---|
//! | Shewhart, `L = 3` | 370.4 (sim. 376) | 43.9 | `1 / (2 (1 - Φ(3)))` |
//! | Shewhart + WE rules 2-4 | 91.75 (sim. 90) | | Champ & Woodall 1987, *Technometrics* 29, 393-399 |
//! | EWMA `λ = 0.2`, `L = 2.962`, asymptotic limits | 500 (sim. 488) | 10.5 (sim. 10.5) | Lucas & Saccucci 1990, *Technometrics* 32, 1-12; Montgomery Table 9.11 |
//! | EWMA, same, exact limits (default) | sim. 509 | sim. 9.5 | |
//! | CUSUM `k = 0.5`, `h = 5`, two-sided | 465 (sim. 472) | 10.4 (sim. 10.3) | Montgomery Table 9.3 |
//! | default monitor: Shewhart 3σ + EWMA + CUSUM | sim. 207 | | |
//!
//! `λ = 0.2` with `L = 2.86` gives ARL0 ≈ 370 (the Shewhart figure), not
//! 500: a Brook & Evans (1972) Markov chain gives 370.5 for 2.86 and 498.8
//! for 2.962. The exact time-varying limits leave ARL0 near 500 but catch
//! a shift present from the start sooner (9.5 instead of 10.5 points at
//! 1σ), which is their purpose (Montgomery §9.2.1).
//!
//! Charts running side by side on one channel alarm more often than any
//! one of them: the default configuration (Shewhart rule 1, EWMA and
//! CUSUM; Western Electric rules 2-4 and z-score off) has an in-control
//! ARL of about 207 per channel, and a monitor of `c` independent channels
//! raises a false alarm about `c` times as often (16 e-nose channels: one
//! every 13 observations or so). Scale `c` into the limits (e.g. `h`, `L`)
//! when that is too often. All of this assumes independent observations:
//! autocorrelated data (most sensor streams sampled fast) need wider
//! limits, a sparser sampling, or a chart on model residuals (Montgomery
//! §10.4).
//!
//! # Cost and state
//!
//! Per value and channel: one standardisation and O(1) work per chart, no
//! allocation. [`SpcMonitor::observe`] allocates only for the alarms it
//! returns. State per channel: the fixed-size charts (a few hundred bytes) plus
//! `8 · window` bytes for the z-score, if enabled; see
//! [`SpcMonitor::state_bytes`].

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fmt;

/// `d2` of the range of two observations: `E[|X1 - X2|] = d2 · σ` for
/// independent normal `X1`, `X2` (`2/√π`; Montgomery Appendix Table VI).
pub const D2_MOVING_RANGE: f64 = 1.128;

/// Errors of the SPC kernels.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpcError {
    /// A configuration key holds an unusable value.
    #[error("invalid spc configuration `{key}`: {reason}")]
    InvalidConfig {
        /// The key, dotted from the `spc` section, e.g. `ewma.lambda`.
        key: &'static str,
        /// What the value must be.
        reason: &'static str,
    },
    /// Control limits with a non-finite centre or a non-positive σ.
    #[error("control limits need a finite center and a positive finite sigma, got center {center}, sigma {sigma}")]
    InvalidLimits {
        /// The centre line given.
        center: f64,
        /// The σ given.
        sigma: f64,
    },
    /// Too little reference data for a Phase I estimate.
    #[error("phase I estimation needs at least {needed} values, got {got}")]
    TooFewValues {
        /// Values needed.
        needed: usize,
        /// Values given.
        got: usize,
    },
    /// A reference or observed value is NaN or infinite.
    #[error("value at position {index} is not finite")]
    NonFinite {
        /// Position in the reference data, or channel of the observation.
        index: usize,
    },
    /// The reference data never move, so σ cannot be estimated.
    #[error("reference data have no spread: every moving range is zero")]
    NoSpread,
    /// A monitor was asked for no channels or more than `u16` can number.
    #[error("a monitor needs 1 to 65536 channels, got {got}")]
    ChannelRange {
        /// Channels asked for.
        got: usize,
    },
    /// An observation has another number of channels than the monitor.
    #[error("observation has {got} channels, the monitor has {expected}")]
    ChannelCount {
        /// Channels of the monitor.
        expected: usize,
        /// Channels of the observation.
        got: usize,
    },
}

/// The rule behind a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SpcRule {
    /// Western Electric rule 1: one point beyond the Shewhart limit.
    #[serde(rename = "shewhart")]
    Shewhart,
    /// Western Electric rule 2: two of three beyond `2L/3`, same side.
    #[serde(rename = "we_rule_2")]
    WeRule2,
    /// Western Electric rule 3: four of five beyond `L/3`, same side.
    #[serde(rename = "we_rule_3")]
    WeRule3,
    /// Western Electric rule 4: eight consecutive on one side.
    #[serde(rename = "we_rule_4")]
    WeRule4,
    /// The EWMA beyond its time-varying limit.
    #[serde(rename = "ewma")]
    Ewma,
    /// The upper CUSUM beyond its decision interval.
    #[serde(rename = "cusum_upper")]
    CusumUpper,
    /// The lower CUSUM beyond its decision interval.
    #[serde(rename = "cusum_lower")]
    CusumLower,
    /// The windowed z-score beyond its limit.
    #[serde(rename = "zscore")]
    ZScore,
}

impl SpcRule {
    /// Every rule, in reporting order.
    pub const ALL: [SpcRule; 8] = [
        SpcRule::Shewhart,
        SpcRule::WeRule2,
        SpcRule::WeRule3,
        SpcRule::WeRule4,
        SpcRule::Ewma,
        SpcRule::CusumUpper,
        SpcRule::CusumLower,
        SpcRule::ZScore,
    ];

    /// The stable name used in reasons, labels and evidence.
    pub fn as_str(self) -> &'static str {
        match self {
            SpcRule::Shewhart => "shewhart",
            SpcRule::WeRule2 => "we_rule_2",
            SpcRule::WeRule3 => "we_rule_3",
            SpcRule::WeRule4 => "we_rule_4",
            SpcRule::Ewma => "ewma",
            SpcRule::CusumUpper => "cusum_upper",
            SpcRule::CusumLower => "cusum_lower",
            SpcRule::ZScore => "zscore",
        }
    }

    /// Parses a stable name.
    pub fn parse(name: &str) -> Option<SpcRule> {
        SpcRule::ALL.into_iter().find(|rule| rule.as_str() == name)
    }
}

impl fmt::Display for SpcRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The side of the centre line a signal points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Above the centre line: the mean has risen.
    Upper,
    /// Below the centre line: the mean has fallen.
    Lower,
}

impl Side {
    fn of(deviation: f64) -> Side {
        if deviation >= 0.0 {
            Side::Upper
        } else {
            Side::Lower
        }
    }
}

/// One rule firing on one value of one channel.
///
/// `statistic` and `limit` are non-negative and `statistic > limit` for
/// the distance rules (Shewhart, EWMA, CUSUM, z-score: in units of σ from
/// the centre line) and `statistic >= limit` for the counting rules
/// (Western Electric 2-4: qualifying points, or run length).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// The rule.
    pub rule: SpcRule,
    /// The side of the centre line.
    pub side: Side,
    /// The chart statistic.
    pub statistic: f64,
    /// The limit it reached.
    pub limit: f64,
}

/// The signals one chart raised on one value (at most four, no allocation).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Signals {
    slots: [Option<Signal>; 4],
}

impl Signals {
    fn push(&mut self, signal: Signal) {
        if let Some(slot) = self.slots.iter_mut().find(|slot| slot.is_none()) {
            *slot = Some(signal);
        }
    }

    /// The signals, in rule order.
    pub fn iter(&self) -> impl Iterator<Item = Signal> + '_ {
        self.slots.iter().flatten().copied()
    }

    /// Whether no rule fired.
    pub fn is_empty(&self) -> bool {
        self.slots[0].is_none()
    }

    /// Number of rules that fired.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether `rule` fired.
    pub fn contains(&self, rule: SpcRule) -> bool {
        self.iter().any(|signal| signal.rule == rule)
    }
}

/// In-control centre line and standard deviation of one channel.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlLimits {
    /// In-control mean `μ0`.
    pub center: f64,
    /// In-control standard deviation `σ`, positive.
    pub sigma: f64,
}

impl ControlLimits {
    /// Known limits; `sigma` must be positive and both finite.
    pub fn new(center: f64, sigma: f64) -> Result<ControlLimits, SpcError> {
        if center.is_finite() && sigma.is_finite() && sigma > 0.0 {
            Ok(ControlLimits { center, sigma })
        } else {
            Err(SpcError::InvalidLimits { center, sigma })
        }
    }

    /// Phase I estimate from in-control reference data: the mean and the
    /// moving-range σ, `MR̄ / 1.128`. Needs at least two finite values that
    /// are not all equal.
    pub fn estimate(reference: &[f64]) -> Result<ControlLimits, SpcError> {
        let mut estimator = PhaseOneEstimator::default();
        for (index, &value) in reference.iter().enumerate() {
            if !value.is_finite() {
                return Err(SpcError::NonFinite { index });
            }
            estimator.push(value);
        }
        let (center, sigma) = estimator.moments().ok_or(SpcError::TooFewValues {
            needed: 2,
            got: reference.len(),
        })?;
        if sigma > 0.0 {
            ControlLimits::new(center, sigma)
        } else {
            Err(SpcError::NoSpread)
        }
    }

    /// The standardised deviation `(x - center) / sigma`.
    pub fn standardise(&self, value: f64) -> f64 {
        (value - self.center) / self.sigma
    }

    /// A position `z` in σ units back in data units: `center + z · sigma`.
    pub fn to_data_units(&self, z: f64) -> f64 {
        self.center + z * self.sigma
    }
}

/// Lower bound of an estimated σ, so that a channel without spread still
/// has finite statistics: `max(σ, relative · |mean|, absolute)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SigmaFloor {
    /// Floor relative to the magnitude of the mean.
    pub relative: f64,
    /// Absolute floor, positive.
    pub absolute: f64,
}

impl SigmaFloor {
    /// The floored σ.
    pub fn apply(&self, sigma: f64, mean: f64) -> f64 {
        sigma.max(self.relative * mean.abs()).max(self.absolute)
    }
}

/// Running Phase I estimate of one channel: count, mean (Welford) and the
/// sum of moving ranges. O(1) memory, exact for a constant stream.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PhaseOneEstimator {
    count: u64,
    mean: f64,
    last: f64,
    moving_range_sum: f64,
}

impl PhaseOneEstimator {
    /// Adds a reference value (finite; a non-finite one is ignored).
    pub fn push(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        if self.count > 0 {
            self.moving_range_sum += (value - self.last).abs();
        }
        self.count += 1;
        self.mean += (value - self.mean) / self.count as f64;
        self.last = value;
    }

    /// Values seen.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// `(mean, MR̄ / d2)` once two values are in, unfloored.
    pub fn moments(&self) -> Option<(f64, f64)> {
        (self.count >= 2).then(|| {
            let average_moving_range = self.moving_range_sum / (self.count - 1) as f64;
            (self.mean, average_moving_range / D2_MOVING_RANGE)
        })
    }

    /// The limits, with σ floored; `None` before two values.
    pub fn limits(&self, floor: SigmaFloor) -> Option<ControlLimits> {
        let (center, sigma) = self.moments()?;
        ControlLimits::new(center, floor.apply(sigma, center)).ok()
    }
}

/// A chart over the values of one channel.
pub trait ControlChart {
    /// Feeds the next value and returns the rules it made fire. A
    /// non-finite value is skipped: no signal, no change of state.
    fn observe(&mut self, value: f64) -> Signals;
    /// Forgets the history, as after a restart of the process.
    fn reset(&mut self);
}

/// Parameters of the Shewhart individuals chart and the Western Electric
/// rules.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShewhartConfig {
    /// Run the chart (rule 1).
    pub enabled: bool,
    /// Control limit `L` in σ; the Western Electric zones lie at `L/3`
    /// and `2L/3`.
    pub limit: f64,
    /// Also apply the Western Electric rules 2-4 (in-control ARL of rules
    /// 1-4 together: 91.75 against 370 for rule 1 alone).
    pub western_electric: bool,
}

impl Default for ShewhartConfig {
    fn default() -> Self {
        ShewhartConfig {
            enabled: true,
            limit: 3.0,
            western_electric: false,
        }
    }
}

/// Shewhart individuals chart with the Western Electric rules 1-4.
#[derive(Debug, Clone, PartialEq)]
pub struct ShewhartChart {
    limits: ControlLimits,
    limit: f64,
    western_electric: bool,
    /// Shift registers of the last eight points, bit 0 the newest: beyond
    /// `2L/3` above / below, beyond `L/3` above / below.
    beyond_two_thirds: [u8; 2],
    beyond_one_third: [u8; 2],
    /// Consecutive points strictly above / below the centre line.
    runs: [u32; 2],
}

impl ShewhartChart {
    /// A chart for a channel with the given limits.
    pub fn new(limits: ControlLimits, config: &ShewhartConfig) -> ShewhartChart {
        ShewhartChart {
            limits,
            limit: config.limit,
            western_electric: config.western_electric,
            beyond_two_thirds: [0; 2],
            beyond_one_third: [0; 2],
            runs: [0; 2],
        }
    }

    /// Feeds a standardised value `z = (x - μ0) / σ`.
    pub fn observe_standardised(&mut self, z: f64) -> Signals {
        let mut signals = Signals::default();
        if !z.is_finite() {
            return signals;
        }
        if z.abs() > self.limit {
            signals.push(Signal {
                rule: SpcRule::Shewhart,
                side: Side::of(z),
                statistic: z.abs(),
                limit: self.limit,
            });
        }
        let sides = [z > 0.0, z < 0.0];
        let magnitude = z.abs();
        let (beyond_two_thirds, beyond_one_third) = (
            magnitude > 2.0 * self.limit / 3.0,
            magnitude > self.limit / 3.0,
        );
        for (side, &on_side) in sides.iter().enumerate() {
            let bit = |beyond: bool| u8::from(on_side && beyond);
            self.beyond_two_thirds[side] =
                (self.beyond_two_thirds[side] << 1) | bit(beyond_two_thirds);
            self.beyond_one_third[side] =
                (self.beyond_one_third[side] << 1) | bit(beyond_one_third);
            self.runs[side] = if on_side {
                self.runs[side].saturating_add(1)
            } else {
                0
            };
        }
        if !self.western_electric {
            return signals;
        }
        // Only the side the current point lies on can complete a pattern.
        let (side, side_index) = match (sides[0], sides[1]) {
            (true, _) => (Side::Upper, 0),
            (_, true) => (Side::Lower, 1),
            _ => return signals,
        };
        let two_thirds = self.beyond_two_thirds[side_index];
        if two_thirds & 1 == 1 {
            let count = (two_thirds & 0b111).count_ones();
            if count >= 2 {
                signals.push(Signal {
                    rule: SpcRule::WeRule2,
                    side,
                    statistic: f64::from(count),
                    limit: 2.0,
                });
            }
        }
        let one_third = self.beyond_one_third[side_index];
        if one_third & 1 == 1 {
            let count = (one_third & 0b1_1111).count_ones();
            if count >= 4 {
                signals.push(Signal {
                    rule: SpcRule::WeRule3,
                    side,
                    statistic: f64::from(count),
                    limit: 4.0,
                });
            }
        }
        let run = self.runs[side_index];
        if run >= 8 {
            signals.push(Signal {
                rule: SpcRule::WeRule4,
                side,
                statistic: f64::from(run),
                limit: 8.0,
            });
        }
        signals
    }

    /// The limits the chart was built with.
    pub fn limits(&self) -> ControlLimits {
        self.limits
    }
}

impl ControlChart for ShewhartChart {
    fn observe(&mut self, value: f64) -> Signals {
        self.observe_standardised(self.limits.standardise(value))
    }

    fn reset(&mut self) {
        self.beyond_two_thirds = [0; 2];
        self.beyond_one_third = [0; 2];
        self.runs = [0; 2];
    }
}

/// Parameters of the EWMA chart.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EwmaConfig {
    /// Run the chart.
    pub enabled: bool,
    /// Smoothing weight `λ` of the newest value, in (0, 1].
    pub lambda: f64,
    /// Width `L` of the limits, in asymptotic standard deviations of the
    /// EWMA.
    pub limit: f64,
    /// Use the exact limits, narrower for the first points (default);
    /// `false` uses the asymptotic limit from the start, as the ARL
    /// tables of Lucas & Saccucci (1990) do.
    pub time_varying_limits: bool,
}

impl Default for EwmaConfig {
    fn default() -> Self {
        EwmaConfig {
            enabled: true,
            lambda: 0.2,
            limit: 2.962,
            time_varying_limits: true,
        }
    }
}

/// EWMA chart with exact time-varying limits.
#[derive(Debug, Clone, PartialEq)]
pub struct EwmaChart {
    limits: ControlLimits,
    lambda: f64,
    /// `L · sqrt(λ / (2 - λ))`, the asymptotic limit in σ.
    asymptotic_limit: f64,
    /// `(1 - λ)²`.
    decay_step: f64,
    /// `(1 - λ)^(2i)` after `i` points (held at 0 for asymptotic limits).
    decay: f64,
    /// `w_i`, in σ from the centre line.
    statistic: f64,
}

impl EwmaChart {
    /// A chart for a channel with the given limits.
    pub fn new(limits: ControlLimits, config: &EwmaConfig) -> EwmaChart {
        let lambda = config.lambda;
        EwmaChart {
            limits,
            lambda,
            asymptotic_limit: config.limit * (lambda / (2.0 - lambda)).sqrt(),
            decay_step: if config.time_varying_limits {
                (1.0 - lambda) * (1.0 - lambda)
            } else {
                0.0
            },
            decay: 1.0,
            statistic: 0.0,
        }
    }

    /// Feeds a standardised value `z = (x - μ0) / σ`.
    pub fn observe_standardised(&mut self, z: f64) -> Signals {
        let mut signals = Signals::default();
        if !z.is_finite() {
            return signals;
        }
        self.statistic = self.lambda * z + (1.0 - self.lambda) * self.statistic;
        self.decay *= self.decay_step;
        if self.decay < f64::EPSILON / 4.0 {
            // `1 - decay` rounds to 1 from here on: the limit has reached
            // its asymptote exactly, and the square root can be skipped.
            self.decay = 0.0;
        }
        let limit = self.current_limit();
        if self.statistic.abs() > limit {
            signals.push(Signal {
                rule: SpcRule::Ewma,
                side: Side::of(self.statistic),
                statistic: self.statistic.abs(),
                limit,
            });
        }
        signals
    }

    /// The current limit, `L sqrt(λ/(2-λ) (1 - (1-λ)^(2i)))`, in σ.
    pub fn current_limit(&self) -> f64 {
        if self.decay == 0.0 {
            self.asymptotic_limit
        } else {
            self.asymptotic_limit * (1.0 - self.decay).sqrt()
        }
    }

    /// The EWMA `w_i` in σ from the centre line.
    pub fn statistic(&self) -> f64 {
        self.statistic
    }
}

impl ControlChart for EwmaChart {
    fn observe(&mut self, value: f64) -> Signals {
        self.observe_standardised(self.limits.standardise(value))
    }

    fn reset(&mut self) {
        self.decay = 1.0;
        self.statistic = 0.0;
    }
}

/// Parameters of the tabular CUSUM.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CusumConfig {
    /// Run the chart.
    pub enabled: bool,
    /// Reference value `k` in σ: half the shift to detect fastest.
    pub k: f64,
    /// Decision interval `h` in σ.
    pub h: f64,
    /// Value both sums start and restart from, in `[0, h)`; `h/2` is the
    /// fast initial response.
    pub headstart: f64,
}

impl Default for CusumConfig {
    fn default() -> Self {
        CusumConfig {
            enabled: true,
            k: 0.5,
            h: 5.0,
            headstart: 0.0,
        }
    }
}

/// Two-sided tabular CUSUM with restart after a signal.
#[derive(Debug, Clone, PartialEq)]
pub struct CusumChart {
    limits: ControlLimits,
    k: f64,
    h: f64,
    headstart: f64,
    /// `C⁺` and `C⁻`, in σ.
    sums: [f64; 2],
    /// `N⁺` and `N⁻`: points since each sum was last zero.
    runs: [u32; 2],
    last_shift_estimate: Option<f64>,
}

impl CusumChart {
    /// A chart for a channel with the given limits.
    pub fn new(limits: ControlLimits, config: &CusumConfig) -> CusumChart {
        CusumChart {
            limits,
            k: config.k,
            h: config.h,
            headstart: config.headstart,
            sums: [config.headstart; 2],
            runs: [0; 2],
            last_shift_estimate: None,
        }
    }

    /// Feeds a standardised value `z = (x - μ0) / σ`.
    pub fn observe_standardised(&mut self, z: f64) -> Signals {
        let mut signals = Signals::default();
        if !z.is_finite() {
            return signals;
        }
        for (side, deviation) in [(0, z), (1, -z)] {
            let sum = (self.sums[side] + deviation - self.k).max(0.0);
            self.sums[side] = sum;
            self.runs[side] = if sum > 0.0 {
                self.runs[side].saturating_add(1)
            } else {
                0
            };
            if sum > self.h {
                let (rule, sign) = if side == 0 {
                    (SpcRule::CusumUpper, 1.0)
                } else {
                    (SpcRule::CusumLower, -1.0)
                };
                let shift = self.k + sum / f64::from(self.runs[side].max(1));
                self.last_shift_estimate = Some(self.limits.to_data_units(sign * shift));
                signals.push(Signal {
                    rule,
                    side: if side == 0 { Side::Upper } else { Side::Lower },
                    statistic: sum,
                    limit: self.h,
                });
                self.sums[side] = self.headstart;
                self.runs[side] = 0;
            }
        }
        signals
    }

    /// `C⁺` and `C⁻`, in σ.
    pub fn sums(&self) -> (f64, f64) {
        (self.sums[0], self.sums[1])
    }

    /// The new process mean estimated at the last signal, in data units:
    /// `μ0 ± σ(k + C/N)` (Montgomery §9.1.2).
    pub fn last_shift_estimate(&self) -> Option<f64> {
        self.last_shift_estimate
    }
}

impl ControlChart for CusumChart {
    fn observe(&mut self, value: f64) -> Signals {
        self.observe_standardised(self.limits.standardise(value))
    }

    fn reset(&mut self) {
        self.sums = [self.headstart; 2];
        self.runs = [0; 2];
        self.last_shift_estimate = None;
    }
}

/// Parameters of the windowed z-score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZScoreConfig {
    /// Run the chart.
    pub enabled: bool,
    /// Values kept in the window.
    pub window: usize,
    /// Values needed before the first score.
    pub warmup: usize,
    /// |z| above which a value is an outlier.
    pub limit: f64,
    /// Keep outliers out of the window, so a persistent excursion stays
    /// visible instead of being learned.
    pub exclude_outliers: bool,
}

impl Default for ZScoreConfig {
    fn default() -> Self {
        ZScoreConfig {
            enabled: false,
            window: 120,
            warmup: 30,
            limit: 6.0,
            exclude_outliers: true,
        }
    }
}

/// Windowed z-score with sliding Welford sums.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowedZScore {
    window: usize,
    warmup: usize,
    limit: f64,
    exclude_outliers: bool,
    floor: SigmaFloor,
    values: VecDeque<f64>,
    mean: f64,
    /// `Σ (x - mean)²` over the window.
    m2: f64,
    replacements: usize,
}

impl WindowedZScore {
    /// A z-score over the last `config.window` accepted values.
    pub fn new(config: &ZScoreConfig, floor: SigmaFloor) -> WindowedZScore {
        WindowedZScore {
            window: config.window.max(2),
            warmup: config.warmup.max(2),
            limit: config.limit,
            exclude_outliers: config.exclude_outliers,
            floor,
            values: VecDeque::with_capacity(config.window.max(2)),
            mean: 0.0,
            m2: 0.0,
            replacements: 0,
        }
    }

    /// The z-score of `value` against the window, `None` during warm-up.
    /// Finite for finite input: σ is floored and the quotient clamped.
    pub fn score(&self, value: f64) -> Option<f64> {
        if self.values.len() < self.warmup || !value.is_finite() {
            return None;
        }
        let sigma = self.floor.apply(self.sigma(), self.mean);
        Some(((value - self.mean) / sigma).clamp(-f64::MAX, f64::MAX))
    }

    /// Adds `value` to the window, dropping the oldest when full.
    pub fn push(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        if self.values.len() < self.window {
            self.values.push_back(value);
            let n = self.values.len() as f64;
            let delta = value - self.mean;
            self.mean += delta / n;
            self.m2 += delta * (value - self.mean);
        } else {
            let old = self.values.pop_front().unwrap_or(value);
            self.values.push_back(value);
            // Replacement keeps n: mean' = mean + (x - y)/n and
            // M2' = M2 + (x - y)(x - mean' + y - mean).
            let n = self.values.len() as f64;
            let old_mean = self.mean;
            self.mean += (value - old) / n;
            self.m2 += (value - old) * (value - self.mean + old - old_mean);
            self.replacements += 1;
            if self.replacements >= self.window {
                self.recompute();
            }
        }
        self.m2 = self.m2.max(0.0);
    }

    /// Scores `value`, signals beyond the limit, and pushes it unless it is
    /// an outlier that the configuration keeps out.
    pub fn observe_value(&mut self, value: f64) -> (Option<f64>, Signals) {
        let mut signals = Signals::default();
        let score = self.score(value);
        let outlier = score.is_some_and(|z| z.abs() > self.limit);
        if let (true, Some(z)) = (outlier, score) {
            signals.push(Signal {
                rule: SpcRule::ZScore,
                side: Side::of(z),
                statistic: z.abs(),
                limit: self.limit,
            });
        }
        if !(outlier && self.exclude_outliers) {
            self.push(value);
        }
        (score, signals)
    }

    /// Sample standard deviation of the window (0 below two values).
    pub fn sigma(&self) -> f64 {
        let n = self.values.len();
        if n < 2 {
            0.0
        } else {
            (self.m2 / (n - 1) as f64).sqrt()
        }
    }

    /// Mean of the window.
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Values in the window.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Exact Welford pass over the window, once per turnover.
    fn recompute(&mut self) {
        self.replacements = 0;
        let (mut mean, mut m2) = (0.0, 0.0);
        for (index, &value) in self.values.iter().enumerate() {
            let delta = value - mean;
            mean += delta / (index + 1) as f64;
            m2 += delta * (value - mean);
        }
        self.mean = mean;
        self.m2 = m2;
    }

    /// Heap bytes held by the window.
    fn heap_bytes(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<f64>()
    }
}

impl ControlChart for WindowedZScore {
    fn observe(&mut self, value: f64) -> Signals {
        self.observe_value(value).1
    }

    fn reset(&mut self) {
        self.values.clear();
        self.mean = 0.0;
        self.m2 = 0.0;
        self.replacements = 0;
    }
}

/// Which charts run on each channel, with their parameters.
///
/// Keys in errors are dotted from the section, e.g. `cusum.h`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpcConfig {
    /// Shewhart individuals chart and Western Electric rules.
    pub shewhart: ShewhartConfig,
    /// EWMA chart.
    pub ewma: EwmaConfig,
    /// Tabular CUSUM.
    pub cusum: CusumConfig,
    /// Windowed z-score (needs no Phase I).
    pub zscore: ZScoreConfig,
    /// Self-starting mode: values of each channel taken as in-control
    /// reference before charting starts.
    pub learn_count: usize,
    /// Floor of a learned or windowed σ relative to |mean|.
    pub min_sigma_relative: f64,
    /// Absolute floor of a learned or windowed σ.
    pub min_sigma_absolute: f64,
    /// Channels listed per alarm, strongest first.
    pub max_channels: usize,
}

impl Default for SpcConfig {
    fn default() -> Self {
        SpcConfig {
            shewhart: ShewhartConfig::default(),
            ewma: EwmaConfig::default(),
            cusum: CusumConfig::default(),
            zscore: ZScoreConfig::default(),
            learn_count: 100,
            min_sigma_relative: 1e-4,
            min_sigma_absolute: 1e-9,
            max_channels: 3,
        }
    }
}

impl SpcConfig {
    /// Checks every parameter; the error names the first bad key.
    pub fn check(&self) -> Result<(), SpcError> {
        fn require(ok: bool, key: &'static str, reason: &'static str) -> Result<(), SpcError> {
            if ok {
                Ok(())
            } else {
                Err(SpcError::InvalidConfig { key, reason })
            }
        }
        let positive = |x: f64| x.is_finite() && x > 0.0;
        require(
            positive(self.shewhart.limit),
            "shewhart.limit",
            "must be a positive number of sigmas",
        )?;
        require(
            self.ewma.lambda.is_finite() && self.ewma.lambda > 0.0 && self.ewma.lambda <= 1.0,
            "ewma.lambda",
            "must lie in (0, 1]",
        )?;
        require(
            positive(self.ewma.limit),
            "ewma.limit",
            "must be a positive number of sigmas",
        )?;
        require(
            self.cusum.k.is_finite() && self.cusum.k >= 0.0,
            "cusum.k",
            "must be a non-negative number of sigmas",
        )?;
        require(
            positive(self.cusum.h),
            "cusum.h",
            "must be a positive number of sigmas",
        )?;
        require(
            self.cusum.headstart.is_finite()
                && self.cusum.headstart >= 0.0
                && self.cusum.headstart < self.cusum.h,
            "cusum.headstart",
            "must lie in [0, h)",
        )?;
        require(
            self.zscore.window >= 2,
            "zscore.window",
            "must be at least 2",
        )?;
        require(
            self.zscore.warmup >= 2 && self.zscore.warmup <= self.zscore.window,
            "zscore.warmup",
            "must lie in 2..=window",
        )?;
        require(
            positive(self.zscore.limit),
            "zscore.limit",
            "must be a positive number of sigmas",
        )?;
        require(self.learn_count >= 2, "learn_count", "must be at least 2")?;
        require(
            self.min_sigma_relative.is_finite() && self.min_sigma_relative >= 0.0,
            "min_sigma_relative",
            "must be a non-negative number",
        )?;
        require(
            positive(self.min_sigma_absolute),
            "min_sigma_absolute",
            "must be a positive number",
        )?;
        require(self.max_channels >= 1, "max_channels", "must be at least 1")?;
        Ok(())
    }

    /// The σ floor of learned and windowed estimates.
    pub fn sigma_floor(&self) -> SigmaFloor {
        SigmaFloor {
            relative: self.min_sigma_relative,
            absolute: self.min_sigma_absolute,
        }
    }

    /// A short stable description, recorded as evidence with decisions.
    pub fn version(&self) -> String {
        let mut parts = vec![format!("spc-v1:n{}", self.learn_count)];
        if self.shewhart.enabled {
            parts.push(format!(
                "s{}{}",
                self.shewhart.limit,
                if self.shewhart.western_electric {
                    "we"
                } else {
                    ""
                }
            ));
        }
        if self.ewma.enabled {
            parts.push(format!("e{}/{}", self.ewma.lambda, self.ewma.limit));
        }
        if self.cusum.enabled {
            parts.push(format!(
                "c{}/{}/{}",
                self.cusum.k, self.cusum.h, self.cusum.headstart
            ));
        }
        if self.zscore.enabled {
            parts.push(format!(
                "z{}/{}/{}",
                self.zscore.window, self.zscore.warmup, self.zscore.limit
            ));
        }
        parts.join(":")
    }
}

/// One channel's part in an alarm.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChannelSignal {
    /// The channel.
    pub channel: u16,
    /// The side of the centre line.
    pub side: Side,
    /// The chart statistic on this channel.
    pub statistic: f64,
    /// The limit on this channel.
    pub limit: f64,
    /// Standardised deviation of the current value, `(x - μ0)/σ` (the
    /// windowed z-score for the `zscore` rule).
    pub deviation: f64,
}

impl ChannelSignal {
    /// How far past its limit: `statistic / limit`, the primary sort key.
    pub fn exceedance(&self) -> f64 {
        self.statistic / self.limit
    }
}

/// A rule that fired on one observation of a stream, on one or more
/// channels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpcAlarm {
    /// Index of the observation in the stream, from 0 (learning included).
    pub index: u64,
    /// The rule.
    pub rule: SpcRule,
    /// The statistic of the strongest channel.
    pub statistic: f64,
    /// The limit of the strongest channel.
    pub limit: f64,
    /// Signalling channels, strongest first: by exceedance
    /// `statistic / limit`, then by |deviation|, then by channel number;
    /// at most `max_channels`.
    pub channels: Vec<ChannelSignal>,
    /// How many channels signalled, listed or not.
    pub signalling_channels: usize,
}

/// The charts of one channel once its limits are known.
#[derive(Debug, Clone, PartialEq)]
struct ChannelCharts {
    limits: ControlLimits,
    shewhart: Option<ShewhartChart>,
    ewma: Option<EwmaChart>,
    cusum: Option<CusumChart>,
}

impl ChannelCharts {
    fn new(limits: ControlLimits, config: &SpcConfig) -> ChannelCharts {
        ChannelCharts {
            limits,
            shewhart: config
                .shewhart
                .enabled
                .then(|| ShewhartChart::new(limits, &config.shewhart)),
            ewma: config
                .ewma
                .enabled
                .then(|| EwmaChart::new(limits, &config.ewma)),
            cusum: config
                .cusum
                .enabled
                .then(|| CusumChart::new(limits, &config.cusum)),
        }
    }
}

/// Everything remembered about one channel.
#[derive(Debug, Clone, PartialEq)]
struct ChannelState {
    learner: PhaseOneEstimator,
    charts: Option<ChannelCharts>,
    zscore: Option<WindowedZScore>,
}

/// The configured charts on every channel of one stream (one sensor).
///
/// Values arrive as observations of all channels at once, in event-time
/// order. Each call returns, per rule that fired on some channel, one
/// [`SpcAlarm`] listing the channels behind it, strongest first.
#[derive(Debug, Clone)]
pub struct SpcMonitor {
    config: SpcConfig,
    channels: Vec<ChannelState>,
    observations: u64,
    /// Per-rule scratch lists of signalling channels, reused across calls.
    pending: Vec<Vec<ChannelSignal>>,
}

impl SpcMonitor {
    /// A self-starting monitor: each channel learns its limits from its
    /// first `config.learn_count` values, then charts the rest.
    pub fn new(config: SpcConfig, channels: usize) -> Result<SpcMonitor, SpcError> {
        SpcMonitor::build(config, channels, None)
    }

    /// A monitor with limits from Phase I (one per channel): charting
    /// starts with the first value.
    pub fn with_limits(
        config: SpcConfig,
        limits: &[ControlLimits],
    ) -> Result<SpcMonitor, SpcError> {
        for limit in limits {
            ControlLimits::new(limit.center, limit.sigma)?;
        }
        SpcMonitor::build(config, limits.len(), Some(limits))
    }

    fn build(
        config: SpcConfig,
        channels: usize,
        limits: Option<&[ControlLimits]>,
    ) -> Result<SpcMonitor, SpcError> {
        config.check()?;
        if channels == 0 || channels > usize::from(u16::MAX) + 1 {
            return Err(SpcError::ChannelRange { got: channels });
        }
        let floor = config.sigma_floor();
        // Each rule fires at most once per channel and observation, so the
        // scratch lists never grow past this.
        let pending = (0..SpcRule::ALL.len())
            .map(|_| Vec::with_capacity(channels))
            .collect();
        let channels = (0..channels)
            .map(|channel| ChannelState {
                learner: PhaseOneEstimator::default(),
                charts: limits.map(|limits| ChannelCharts::new(limits[channel], &config)),
                zscore: config
                    .zscore
                    .enabled
                    .then(|| WindowedZScore::new(&config.zscore, floor)),
            })
            .collect();
        Ok(SpcMonitor {
            config,
            channels,
            observations: 0,
            pending,
        })
    }

    /// Runs the charts on the next observation and appends one alarm per
    /// rule that fired to `alarms`. An observation with the wrong number of
    /// channels or a non-finite value is refused whole and changes nothing.
    pub fn observe(&mut self, values: &[f64], alarms: &mut Vec<SpcAlarm>) -> Result<(), SpcError> {
        if values.len() != self.channels.len() {
            return Err(SpcError::ChannelCount {
                expected: self.channels.len(),
                got: values.len(),
            });
        }
        if let Some(index) = values.iter().position(|value| !value.is_finite()) {
            return Err(SpcError::NonFinite { index });
        }
        let index = self.observations;
        self.observations += 1;
        let learn_count = self.config.learn_count as u64;
        let floor = self.config.sigma_floor();
        for (channel, (state, &value)) in self.channels.iter_mut().zip(values).enumerate() {
            let channel = channel as u16;
            if let Some(zscore) = state.zscore.as_mut() {
                let (score, signals) = zscore.observe_value(value);
                for signal in signals.iter() {
                    self.pending[rule_slot(signal.rule)].push(ChannelSignal {
                        channel,
                        side: signal.side,
                        statistic: signal.statistic,
                        limit: signal.limit,
                        deviation: score.unwrap_or(0.0),
                    });
                }
            }
            let Some(charts) = state.charts.as_mut() else {
                state.learner.push(value);
                if state.learner.count() >= learn_count {
                    if let Some(limits) = state.learner.limits(floor) {
                        state.charts = Some(ChannelCharts::new(limits, &self.config));
                    }
                }
                continue;
            };
            let z = charts.limits.standardise(value);
            let mut record = |signals: Signals| {
                for signal in signals.iter() {
                    self.pending[rule_slot(signal.rule)].push(ChannelSignal {
                        channel,
                        side: signal.side,
                        statistic: signal.statistic,
                        limit: signal.limit,
                        deviation: z,
                    });
                }
            };
            if let Some(chart) = charts.shewhart.as_mut() {
                record(chart.observe_standardised(z));
            }
            if let Some(chart) = charts.ewma.as_mut() {
                record(chart.observe_standardised(z));
            }
            if let Some(chart) = charts.cusum.as_mut() {
                record(chart.observe_standardised(z));
            }
        }
        for (slot, rule) in SpcRule::ALL.into_iter().enumerate() {
            let signalling = &mut self.pending[slot];
            if signalling.is_empty() {
                continue;
            }
            signalling.sort_by(|a, b| {
                b.exceedance()
                    .total_cmp(&a.exceedance())
                    .then(b.deviation.abs().total_cmp(&a.deviation.abs()))
                    .then(a.channel.cmp(&b.channel))
            });
            let strongest = signalling[0];
            alarms.push(SpcAlarm {
                index,
                rule,
                statistic: strongest.statistic,
                limit: strongest.limit,
                signalling_channels: signalling.len(),
                channels: signalling
                    .iter()
                    .take(self.config.max_channels)
                    .copied()
                    .collect(),
            });
            signalling.clear();
        }
        Ok(())
    }

    /// Clears the history of every chart and z-score window but keeps the
    /// limits, e.g. after a known intervention on the process. Channels
    /// still learning go on learning.
    pub fn restart(&mut self) {
        for state in &mut self.channels {
            if let Some(charts) = state.charts.as_mut() {
                if let Some(chart) = charts.shewhart.as_mut() {
                    chart.reset();
                }
                if let Some(chart) = charts.ewma.as_mut() {
                    chart.reset();
                }
                if let Some(chart) = charts.cusum.as_mut() {
                    chart.reset();
                }
            }
            if let Some(zscore) = state.zscore.as_mut() {
                zscore.reset();
            }
        }
    }

    /// Forgets limits and history: every channel learns its limits afresh
    /// from its next `learn_count` values (self-starting), e.g. at a
    /// product changeover.
    pub fn relearn(&mut self) {
        for state in &mut self.channels {
            state.learner = PhaseOneEstimator::default();
            state.charts = None;
            if let Some(zscore) = state.zscore.as_mut() {
                zscore.reset();
            }
        }
    }

    /// Channels of the stream.
    pub fn channels(&self) -> usize {
        self.channels.len()
    }

    /// Observations seen.
    pub fn observations(&self) -> u64 {
        self.observations
    }

    /// The limits of `channel`, once known.
    pub fn limits(&self, channel: usize) -> Option<ControlLimits> {
        self.channels
            .get(channel)?
            .charts
            .as_ref()
            .map(|c| c.limits)
    }

    /// Whether some channel is still learning its limits.
    pub fn is_learning(&self) -> bool {
        self.channels.iter().any(|state| state.charts.is_none())
    }

    /// The configuration.
    pub fn config(&self) -> &SpcConfig {
        &self.config
    }

    /// Bytes of state held now, inline and on the heap (the z-score
    /// windows reach their full size after `zscore.window` values).
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<SpcMonitor>()
            + self.channels.capacity() * std::mem::size_of::<ChannelState>()
            + self
                .channels
                .iter()
                .filter_map(|state| state.zscore.as_ref())
                .map(WindowedZScore::heap_bytes)
                .sum::<usize>()
            + self
                .pending
                .iter()
                .map(|list| {
                    std::mem::size_of::<Vec<ChannelSignal>>()
                        + list.capacity() * std::mem::size_of::<ChannelSignal>()
                })
                .sum::<usize>()
    }

    /// Upper bound of the state per channel under `config` once windows
    /// are full, scratch lists included; a monitor holds at most
    /// `size_of::<SpcMonitor>() + 8 · size_of::<Vec<_>>()` bytes more.
    pub fn state_bytes_per_channel(config: &SpcConfig) -> usize {
        let window = if config.zscore.enabled {
            config.zscore.window.max(2) * std::mem::size_of::<f64>()
        } else {
            0
        };
        std::mem::size_of::<ChannelState>()
            + window
            + SpcRule::ALL.len() * std::mem::size_of::<ChannelSignal>()
    }
}

/// Position of a rule in [`SpcRule::ALL`].
fn rule_slot(rule: SpcRule) -> usize {
    rule as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// SplitMix64 (Steele, Lea & Flood 2014) with Box-Muller normals.
    struct Normal {
        state: u64,
        spare: Option<f64>,
    }

    impl Normal {
        fn new(seed: u64) -> Normal {
            Normal {
                state: seed,
                spare: None,
            }
        }

        fn next_u64(&mut self) -> u64 {
            self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        /// Uniform in (0, 1].
        fn uniform(&mut self) -> f64 {
            ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
        }

        fn sample(&mut self) -> f64 {
            if let Some(spare) = self.spare.take() {
                return spare;
            }
            let radius = (-2.0 * self.uniform().ln()).sqrt();
            let angle = 2.0 * std::f64::consts::PI * self.uniform();
            self.spare = Some(radius * angle.sin());
            radius * angle.cos()
        }
    }

    fn unit() -> ControlLimits {
        ControlLimits::new(0.0, 1.0).unwrap()
    }

    /// Mean zero-state run length until `fires` holds for a signal, over
    /// `runs` runs of N(shift, 1) data, each capped at `cap` values.
    fn average_run_length<C: ControlChart>(
        chart: &mut C,
        shift: f64,
        runs: usize,
        seed: u64,
        fires: impl Fn(&Signal) -> bool,
    ) -> f64 {
        let mut normal = Normal::new(seed);
        let cap = 1_000_000;
        let mut total = 0u64;
        for _ in 0..runs {
            chart.reset();
            let mut length = 0u64;
            loop {
                length += 1;
                let signals = chart.observe(shift + normal.sample());
                if signals.iter().any(|s| fires(&s)) || length >= cap {
                    break;
                }
            }
            total += length;
        }
        total as f64 / runs as f64
    }

    fn shewhart(western_electric: bool) -> ShewhartChart {
        ShewhartChart::new(
            unit(),
            &ShewhartConfig {
                enabled: true,
                limit: 3.0,
                western_electric,
            },
        )
    }

    fn assert_close(name: &str, reached: f64, anchor: f64, tolerance: f64) {
        eprintln!("{name}: {reached:.2} (anchor {anchor})");
        assert!(
            (reached - anchor).abs() <= tolerance * anchor,
            "{name}: {reached} not within {tolerance} of {anchor}"
        );
    }

    #[test]
    fn shewhart_in_control_arl_is_370() {
        let arl = average_run_length(&mut shewhart(false), 0.0, 2_000, 1, |_| true);
        assert_close("shewhart ARL0", arl, 370.4, 0.08);
    }

    #[test]
    fn western_electric_rules_together_have_arl_92() {
        let arl = average_run_length(&mut shewhart(true), 0.0, 3_000, 2, |_| true);
        assert_close("WE 1-4 ARL0", arl, 91.75, 0.08);
    }

    #[test]
    fn ewma_arls_match_the_tables() {
        // The tables (Lucas & Saccucci 1990; Montgomery Table 9.11) use the
        // asymptotic limit; a Brook-Evans Markov chain with 101 states gives
        // ARL0 498.8 and ARL1 10.54 for λ = 0.2, L = 2.962 (and 370.5 for
        // L = 2.86), 10.33 at 1σ for λ = 0.1, L = 2.814 (table: 10.3).
        let asymptotic = EwmaConfig {
            time_varying_limits: false,
            ..EwmaConfig::default()
        };
        let mut chart = EwmaChart::new(unit(), &asymptotic);
        let arl0 = average_run_length(&mut chart, 0.0, 2_000, 3, |_| true);
        assert_close("EWMA(0.2, 2.962) asymptotic ARL0", arl0, 498.8, 0.08);
        let arl1_asymptotic = average_run_length(&mut chart, 1.0, 4_000, 4, |_| true);
        assert_close(
            "EWMA(0.2, 2.962) asymptotic ARL1",
            arl1_asymptotic,
            10.54,
            0.05,
        );
        let config = EwmaConfig {
            lambda: 0.1,
            limit: 2.814,
            ..asymptotic
        };
        let mut chart = EwmaChart::new(unit(), &config);
        let arl1 = average_run_length(&mut chart, 1.0, 4_000, 5, |_| true);
        assert_close("EWMA(0.1, 2.814) asymptotic ARL1", arl1, 10.3, 0.05);
        // The default exact limits add early signals: a slightly shorter
        // ARL0 and a clearly faster start-up detection (zero state).
        let mut chart = EwmaChart::new(unit(), &EwmaConfig::default());
        let arl0 = average_run_length(&mut chart, 0.0, 2_000, 6, |_| true);
        assert_close("EWMA(0.2, 2.962) exact ARL0", arl0, 500.0, 0.10);
        let arl1 = average_run_length(&mut chart, 1.0, 4_000, 4, |_| true);
        eprintln!("EWMA(0.2, 2.962) exact ARL1: {arl1:.2}");
        assert!(arl1 < arl1_asymptotic - 0.5 && arl1 > 8.5, "{arl1}");
    }

    #[test]
    fn cusum_default_arls_match_montgomery_table_9_3() {
        let mut chart = CusumChart::new(unit(), &CusumConfig::default());
        let arl0 = average_run_length(&mut chart, 0.0, 2_000, 6, |_| true);
        assert_close("CUSUM(0.5, 5) ARL0", arl0, 465.0, 0.08);
        let arl1 = average_run_length(&mut chart, 1.0, 4_000, 7, |_| true);
        assert_close("CUSUM(0.5, 5) ARL1", arl1, 10.4, 0.05);
    }

    #[test]
    fn default_monitor_in_control_arl_of_one_channel() {
        let config = SpcConfig::default();
        let mut monitor = SpcMonitor::with_limits(config, &[unit()]).unwrap();
        let mut normal = Normal::new(8);
        let mut alarms = Vec::new();
        let (mut runs, mut length, mut total) = (0u64, 0u64, 0u64);
        while runs < 1_500 {
            length += 1;
            monitor.observe(&[normal.sample()], &mut alarms).unwrap();
            if !alarms.is_empty() {
                alarms.clear();
                total += length;
                length = 0;
                runs += 1;
                monitor = SpcMonitor::with_limits(config, &[unit()]).unwrap();
            }
        }
        let arl = total as f64 / runs as f64;
        assert_close("default monitor ARL0", arl, 205.0, 0.10);
    }

    fn fired(chart: &mut ShewhartChart, zs: &[f64]) -> Vec<(usize, SpcRule, Side, f64)> {
        zs.iter()
            .enumerate()
            .flat_map(|(i, &z)| {
                chart
                    .observe(z)
                    .iter()
                    .map(move |s| (i, s.rule, s.side, s.statistic))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn rule_1_one_point_beyond_three_sigma() {
        let mut chart = shewhart(false);
        assert_eq!(
            fired(&mut chart, &[0.0, 3.5, 3.0, -3.1]),
            vec![
                (1, SpcRule::Shewhart, Side::Upper, 3.5),
                (3, SpcRule::Shewhart, Side::Lower, 3.1)
            ]
        );
    }

    #[test]
    fn rule_2_two_of_three_beyond_two_sigma_same_side() {
        let we2 = |zs: &[f64]| -> Vec<(usize, Side, f64)> {
            fired(&mut shewhart(true), zs)
                .into_iter()
                .filter(|f| f.1 == SpcRule::WeRule2)
                .map(|f| (f.0, f.2, f.3))
                .collect()
        };
        assert_eq!(we2(&[2.5, 0.0, 2.5]), vec![(2, Side::Upper, 2.0)]);
        assert_eq!(we2(&[-2.5, -2.1]), vec![(1, Side::Lower, 2.0)]);
        // Too far apart, opposite sides, or completed by a quiet point.
        assert!(we2(&[2.5, 0.0, 0.0, 2.5]).is_empty());
        assert!(we2(&[2.5, -2.5, 0.5]).is_empty());
        assert_eq!(we2(&[2.5, 2.5, 0.0, 0.0]), vec![(1, Side::Upper, 2.0)]);
        assert_eq!(
            we2(&[2.5, 2.5, 2.5]),
            vec![(1, Side::Upper, 2.0), (2, Side::Upper, 3.0)]
        );
    }

    #[test]
    fn rule_3_four_of_five_beyond_one_sigma_same_side() {
        let we3 = |zs: &[f64]| -> Vec<(usize, Side)> {
            fired(&mut shewhart(true), zs)
                .into_iter()
                .filter(|f| f.1 == SpcRule::WeRule3)
                .map(|f| (f.0, f.2))
                .collect()
        };
        assert_eq!(we3(&[1.5, 1.5, 0.0, 1.5, 1.5]), vec![(4, Side::Upper)]);
        assert_eq!(we3(&[-1.2, -1.2, -1.2, -1.2]), vec![(3, Side::Lower)]);
        assert!(we3(&[1.5, 1.5, 0.0, 0.0, 1.5, 1.5]).is_empty());
        assert!(we3(&[1.5, 1.5, -1.5, 1.5, 0.5]).is_empty());
    }

    #[test]
    fn rule_4_eight_consecutive_on_one_side() {
        let we4 = |zs: &[f64]| -> Vec<(usize, Side, f64)> {
            fired(&mut shewhart(true), zs)
                .into_iter()
                .filter(|f| f.1 == SpcRule::WeRule4)
                .map(|f| (f.0, f.2, f.3))
                .collect()
        };
        assert_eq!(we4(&[0.5; 8]), vec![(7, Side::Upper, 8.0)]);
        assert_eq!(
            we4(&[-0.1; 9]),
            vec![(7, Side::Lower, 8.0), (8, Side::Lower, 9.0)]
        );
        let mut broken = [0.5; 8];
        broken[4] = -0.1;
        assert!(we4(&broken).is_empty());
        // A point on the centre line belongs to neither side.
        broken[4] = 0.0;
        assert!(we4(&broken).is_empty());
    }

    #[test]
    fn western_electric_zones_scale_with_the_limit() {
        let mut chart = ShewhartChart::new(
            unit(),
            &ShewhartConfig {
                enabled: true,
                limit: 4.5,
                western_electric: true,
            },
        );
        // Zones at 1.5 and 3: 2.5 is beyond L/3 but not 2L/3.
        let rules: Vec<_> = fired(&mut chart, &[2.5, 2.5, 2.5, 2.5])
            .into_iter()
            .map(|f| f.1)
            .collect();
        assert_eq!(rules, vec![SpcRule::WeRule3]);
    }

    #[test]
    fn ewma_uses_the_exact_time_varying_limits() {
        let config = EwmaConfig::default();
        let mut chart = EwmaChart::new(unit(), &config);
        // i = 1: (1 - (1-λ)²) λ/(2-λ) = λ², so the limit is L·λ.
        chart.observe(0.0);
        assert!((chart.current_limit() - config.limit * config.lambda).abs() < 1e-12);
        for _ in 0..500 {
            chart.observe(0.0);
        }
        let asymptotic = config.limit * (config.lambda / (2.0 - config.lambda)).sqrt();
        assert!((chart.current_limit() - asymptotic).abs() < 1e-12);
        // A noiseless 1.4σ step, never beyond 3σ: w_i = 1.4(1 - 0.8^i)
        // first passes L sqrt(λ/(2-λ)(1 - 0.64^i)) at i = 5 (0.941 > 0.938).
        let mut chart = EwmaChart::new(ControlLimits::new(10.0, 2.0).unwrap(), &config);
        let first = (0..100).position(|_| !chart.observe(12.8).is_empty());
        assert_eq!(first, Some(4));
        let signal = chart.observe(12.8).iter().next().unwrap();
        assert_eq!((signal.rule, signal.side), (SpcRule::Ewma, Side::Upper));
        assert!(signal.statistic > signal.limit);
        // Asymptotic limits hold 0.987 from the first point.
        let asymptotic_config = EwmaConfig {
            time_varying_limits: false,
            ..config
        };
        let mut chart = EwmaChart::new(unit(), &asymptotic_config);
        chart.observe(0.0);
        assert!((chart.current_limit() - asymptotic).abs() < 1e-12);
    }

    #[test]
    fn cusum_signals_resets_and_estimates_the_new_mean() {
        let mut chart = CusumChart::new(
            ControlLimits::new(50.0, 2.0).unwrap(),
            &CusumConfig::default(),
        );
        // z = 1.5: C⁺ grows by 1 per point and passes h = 5 at the 6th.
        let signals: Vec<_> = (0..12).map(|_| chart.observe(53.0)).collect();
        let firing: Vec<_> = signals
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_empty())
            .map(|(i, s)| (i, s.iter().next().unwrap()))
            .collect();
        assert_eq!(firing.len(), 2);
        assert_eq!(firing[0].0, 5);
        assert_eq!(firing[1].0, 11, "restarted from zero after the signal");
        let signal = firing[0].1;
        assert_eq!(signal.rule, SpcRule::CusumUpper);
        assert!((signal.statistic - 6.0).abs() < 1e-12 && signal.limit == 5.0);
        // μ0 + σ(k + C⁺/N⁺) = 50 + 2·(0.5 + 6/6) = 53.
        assert!((chart.last_shift_estimate().unwrap() - 53.0).abs() < 1e-9);
        let lower: Vec<_> = (0..6).map(|_| chart.observe(47.0)).collect();
        assert!(lower[5].contains(SpcRule::CusumLower));
        assert!((chart.last_shift_estimate().unwrap() - 47.0).abs() < 1e-9);
    }

    #[test]
    fn cusum_headstart_speeds_up_detection_of_an_initial_shift() {
        let fast = CusumConfig {
            headstart: 2.5,
            ..CusumConfig::default()
        };
        let arl_plain = average_run_length(
            &mut CusumChart::new(unit(), &CusumConfig::default()),
            1.0,
            1_000,
            9,
            |_| true,
        );
        let arl_fir =
            average_run_length(&mut CusumChart::new(unit(), &fast), 1.0, 1_000, 9, |_| true);
        // Lucas & Crosier (1982): about 10.4 -> 6.4 at a 1σ shift.
        assert!(arl_fir < 0.75 * arl_plain, "{arl_fir} vs {arl_plain}");
    }

    #[test]
    fn phase_one_estimate_uses_the_moving_range() {
        let limits = ControlLimits::estimate(&[10.0, 12.0, 11.0, 13.0]).unwrap();
        assert!((limits.center - 11.5).abs() < 1e-12);
        assert!((limits.sigma - (5.0 / 3.0) / 1.128).abs() < 1e-12);
        assert_eq!(
            ControlLimits::estimate(&[1.0]),
            Err(SpcError::TooFewValues { needed: 2, got: 1 })
        );
        assert_eq!(
            ControlLimits::estimate(&[2.0, 2.0, 2.0]),
            Err(SpcError::NoSpread)
        );
        assert_eq!(
            ControlLimits::estimate(&[2.0, f64::NAN]),
            Err(SpcError::NonFinite { index: 1 })
        );
        assert!(ControlLimits::new(0.0, 0.0).is_err());
        // The moving range estimates σ of normal data without bias.
        let mut normal = Normal::new(10);
        let data: Vec<f64> = (0..20_000).map(|_| 5.0 + 2.0 * normal.sample()).collect();
        let limits = ControlLimits::estimate(&data).unwrap();
        assert!((limits.center - 5.0).abs() < 0.05, "{limits:?}");
        assert!((limits.sigma - 2.0).abs() < 0.04, "{limits:?}");
    }

    #[test]
    fn windowed_zscore_matches_a_direct_computation() {
        let config = ZScoreConfig {
            enabled: true,
            window: 16,
            warmup: 4,
            limit: 1e9,
            exclude_outliers: false,
        };
        let floor = SigmaFloor {
            relative: 0.0,
            absolute: 1e-300,
        };
        let mut zscore = WindowedZScore::new(&config, floor);
        let mut normal = Normal::new(11);
        let data: Vec<f64> = (0..200).map(|_| 1e6 + normal.sample()).collect();
        for (i, &x) in data.iter().enumerate() {
            let window = &data[i.saturating_sub(16)..i];
            let score = zscore.score(x);
            if window.len() < 4 {
                assert_eq!(score, None);
            } else {
                let n = window.len() as f64;
                let mean = window.iter().sum::<f64>() / n;
                let var = window.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
                let expected = (x - mean) / var.sqrt();
                assert!(
                    (score.unwrap() - expected).abs() < 1e-6,
                    "{i}: {score:?} vs {expected}"
                );
            }
            zscore.push(x);
        }
    }

    #[test]
    fn windowed_zscore_keeps_outliers_out_of_the_window() {
        let config = ZScoreConfig {
            enabled: true,
            window: 20,
            warmup: 10,
            limit: 4.0,
            exclude_outliers: true,
        };
        let mut zscore = WindowedZScore::new(&config, SpcConfig::default().sigma_floor());
        let mut normal = Normal::new(12);
        for _ in 0..40 {
            assert!(zscore.observe(normal.sample()).is_empty());
        }
        // A persistent step stays visible.
        for _ in 0..30 {
            let signals = zscore.observe(25.0);
            assert!(signals.contains(SpcRule::ZScore));
        }
    }

    fn monitor_alarms(monitor: &mut SpcMonitor, rows: &[Vec<f64>]) -> Vec<SpcAlarm> {
        let mut alarms = Vec::new();
        for row in rows {
            monitor.observe(row, &mut alarms).unwrap();
        }
        alarms
    }

    #[test]
    fn monitor_learns_then_names_the_channels_that_moved() {
        let config = SpcConfig {
            learn_count: 200,
            ..SpcConfig::default()
        };
        let mut monitor = SpcMonitor::new(config, 16).unwrap();
        let mut normal = Normal::new(13);
        let mut row = |shift: &[(usize, f64)]| -> Vec<f64> {
            let mut values: Vec<f64> = (0..16)
                .map(|c| 1.0 + c as f64 * 0.1 + 0.01 * normal.sample())
                .collect();
            for &(channel, delta) in shift {
                values[channel] += delta;
            }
            values
        };
        let learning: Vec<_> = (0..200).map(|_| row(&[])).collect();
        assert!(monitor_alarms(&mut monitor, &learning[..199]).is_empty());
        assert!(monitor.is_learning());
        assert!(monitor_alarms(&mut monitor, &learning[199..]).is_empty());
        assert!(!monitor.is_learning());
        let sigma = monitor.limits(5).unwrap().sigma;
        assert!((sigma - 0.01).abs() < 0.002, "{sigma}");
        // Channel 9 jumps by 8σ, channel 5 by 5σ.
        let alarms = monitor_alarms(&mut monitor, &[row(&[(5, 0.05), (9, 0.08)])]);
        let shewhart = alarms.iter().find(|a| a.rule == SpcRule::Shewhart).unwrap();
        assert_eq!(shewhart.index, 200);
        let channels: Vec<u16> = shewhart.channels.iter().map(|c| c.channel).collect();
        assert_eq!(channels, vec![9, 5]);
        assert_eq!(shewhart.signalling_channels, 2);
        assert!(shewhart.statistic > 6.0 && shewhart.limit == 3.0);
        assert_eq!(shewhart.channels[0].side, Side::Upper);
        // A sustained 1σ drop of channel 3 is found by the CUSUM.
        let drift: Vec<_> = (0..60).map(|_| row(&[(3, -0.01)])).collect();
        let alarms = monitor_alarms(&mut monitor, &drift);
        let cusum = alarms
            .iter()
            .find(|a| a.rule == SpcRule::CusumLower)
            .unwrap();
        assert_eq!(cusum.channels[0].channel, 3);
        assert_eq!(cusum.channels[0].side, Side::Lower);
        // After a changeover the monitor learns a new level and accepts it.
        monitor.relearn();
        assert!(monitor.is_learning() && monitor.limits(3).is_none());
        let new_level: Vec<_> = (0..300).map(|_| row(&[(3, 0.5)])).collect();
        let alarms = monitor_alarms(&mut monitor, &new_level);
        assert!((monitor.limits(3).unwrap().center - 1.8).abs() < 0.01);
        // The old limits would flag all 100 charted values as 50σ away;
        // the new ones only at the false-alarm rate.
        let beyond_limits = alarms
            .iter()
            .filter(|a| a.rule == SpcRule::Shewhart && a.channels.iter().any(|c| c.channel == 3))
            .count();
        assert!(beyond_limits < 5, "{beyond_limits}");
    }

    #[test]
    fn monitor_refuses_bad_observations_without_changing_state() {
        let mut monitor = SpcMonitor::with_limits(SpcConfig::default(), &[unit(), unit()]).unwrap();
        let mut alarms = Vec::new();
        assert_eq!(
            monitor.observe(&[1.0], &mut alarms),
            Err(SpcError::ChannelCount {
                expected: 2,
                got: 1
            })
        );
        assert_eq!(
            monitor.observe(&[1.0, f64::INFINITY], &mut alarms),
            Err(SpcError::NonFinite { index: 1 })
        );
        assert_eq!(monitor.observations(), 0);
        assert_eq!(
            SpcMonitor::new(SpcConfig::default(), 0).unwrap_err(),
            SpcError::ChannelRange { got: 0 }
        );
    }

    #[test]
    fn monitor_state_is_bounded() {
        let config = SpcConfig {
            zscore: ZScoreConfig {
                enabled: true,
                ..ZScoreConfig::default()
            },
            ..SpcConfig::default()
        };
        let mut monitor = SpcMonitor::new(config, 16).unwrap();
        let mut normal = Normal::new(14);
        let mut alarms = Vec::new();
        let mut sizes = Vec::new();
        for step in 0..5_000 {
            let row: Vec<f64> = (0..16).map(|_| normal.sample()).collect();
            monitor.observe(&row, &mut alarms).unwrap();
            if step % 1_000 == 999 {
                sizes.push(monitor.state_bytes());
            }
        }
        assert!(sizes.windows(2).all(|w| w[0] == w[1]), "{sizes:?}");
        let bound = std::mem::size_of::<SpcMonitor>()
            + 16 * SpcMonitor::state_bytes_per_channel(&config)
            + SpcRule::ALL.len() * std::mem::size_of::<Vec<ChannelSignal>>();
        assert!(sizes[0] <= bound, "{} > {bound}", sizes[0]);
        eprintln!(
            "state: {} bytes for 16 channels, bound {} per channel ({} without z-score)",
            sizes[0],
            SpcMonitor::state_bytes_per_channel(&config),
            SpcMonitor::state_bytes_per_channel(&SpcConfig::default())
        );
    }

    #[test]
    fn config_defaults_parse_and_errors_name_the_key() {
        let config: SpcConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, SpcConfig::default());
        config.check().unwrap();
        let config: SpcConfig = serde_json::from_str(
            r#"{"cusum": {"h": 4.77}, "shewhart": {"western_electric": true}}"#,
        )
        .unwrap();
        assert_eq!(config.cusum.h, 4.77);
        assert_eq!(config.cusum.k, 0.5);
        assert!(config.shewhart.western_electric);
        assert!(serde_json::from_str::<SpcConfig>(r#"{"ewma": {"lamda": 0.1}}"#).is_err());
        assert!(serde_json::from_str::<SpcConfig>(r#"{"window": 3}"#).is_err());
        let key = |config: SpcConfig| match config.check() {
            Err(SpcError::InvalidConfig { key, .. }) => key,
            other => panic!("{other:?}"),
        };
        let mut bad = SpcConfig::default();
        bad.ewma.lambda = 0.0;
        assert_eq!(key(bad), "ewma.lambda");
        let mut bad = SpcConfig::default();
        bad.cusum.headstart = 5.0;
        assert_eq!(key(bad), "cusum.headstart");
        let mut bad = SpcConfig::default();
        bad.zscore.warmup = 500;
        assert_eq!(key(bad), "zscore.warmup");
        let bad = SpcConfig {
            learn_count: 1,
            ..SpcConfig::default()
        };
        assert_eq!(key(bad), "learn_count");
        assert!(matches!(
            SpcMonitor::new(bad, 4),
            Err(SpcError::InvalidConfig {
                key: "learn_count",
                ..
            })
        ));
        for rule in SpcRule::ALL {
            assert_eq!(SpcRule::parse(rule.as_str()), Some(rule));
            assert_eq!(serde_json::to_string(&rule).unwrap(), format!("\"{rule}\""));
        }
    }

    /// Alarms as comparable keys; with `mirror`, the sides and the CUSUM
    /// directions of a negated stream are flipped back.
    #[allow(clippy::type_complexity)]
    fn alarm_keys(
        alarms: &[SpcAlarm],
        mirror: bool,
    ) -> Vec<((u64, SpcRule, Vec<(u16, Side)>), f64)> {
        let flip = |side| match (mirror, side) {
            (true, Side::Upper) => Side::Lower,
            (true, Side::Lower) => Side::Upper,
            (false, side) => side,
        };
        let mut keys: Vec<_> = alarms
            .iter()
            .map(|alarm| {
                let rule = match (mirror, alarm.rule) {
                    (true, SpcRule::CusumUpper) => SpcRule::CusumLower,
                    (true, SpcRule::CusumLower) => SpcRule::CusumUpper,
                    (_, rule) => rule,
                };
                let mut channels: Vec<_> = alarm
                    .channels
                    .iter()
                    .map(|c| (c.channel, flip(c.side)))
                    .collect();
                channels.sort();
                ((alarm.index, rule, channels), alarm.statistic)
            })
            .collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        keys
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn zscore_of_a_constant_stream_never_alarms(
            value in -1e9f64..1e9,
            window in 2usize..64,
            warmup_fraction in 0.0f64..1.0,
            length in 1usize..400,
        ) {
            let warmup = 2 + ((window - 2) as f64 * warmup_fraction) as usize;
            let config = ZScoreConfig { enabled: true, window, warmup, limit: 3.0, exclude_outliers: true };
            let mut zscore = WindowedZScore::new(&config, SpcConfig::default().sigma_floor());
            for _ in 0..length {
                prop_assert!(zscore.observe(value).is_empty());
            }
        }

        #[test]
        fn charts_are_invariant_to_affine_transforms(
            seed in any::<u64>(),
            scale in 1e-3f64..1e3,
            negate in any::<bool>(),
            offset in -1e4f64..1e4,
            step in 0.0f64..2.0,
        ) {
            let config = SpcConfig {
                shewhart: ShewhartConfig { western_electric: true, ..ShewhartConfig::default() },
                zscore: ZScoreConfig { enabled: true, window: 30, warmup: 10, limit: 2.5, exclude_outliers: true },
                min_sigma_relative: 0.0,
                min_sigma_absolute: 1e-300,
                ..SpcConfig::default()
            };
            let a = if negate { -scale } else { scale };
            let mut normal = Normal::new(seed);
            let reference: Vec<Vec<f64>> =
                (0..3).map(|_| (0..100).map(|_| normal.sample()).collect()).collect();
            let stream: Vec<Vec<f64>> = (0..200)
                .map(|i| (0..3).map(|c| normal.sample() + if i >= 100 && c == 1 { step } else { 0.0 }).collect())
                .collect();
            let transform = |x: f64| a * x + offset;
            let run = |f: &dyn Fn(f64) -> f64| {
                let limits: Vec<ControlLimits> = reference
                    .iter()
                    .map(|r| ControlLimits::estimate(&r.iter().map(|&x| f(x)).collect::<Vec<_>>()).unwrap())
                    .collect();
                let mut monitor = SpcMonitor::with_limits(config, &limits).unwrap();
                let rows: Vec<Vec<f64>> = stream.iter().map(|r| r.iter().map(|&x| f(x)).collect()).collect();
                monitor_alarms(&mut monitor, &rows)
            };
            let plain = run(&|x| x);
            let transformed = run(&transform);
            let (plain, transformed) = (alarm_keys(&plain, false), alarm_keys(&transformed, negate));
            prop_assert_eq!(plain.len(), transformed.len());
            for (p, t) in plain.iter().zip(&transformed) {
                prop_assert_eq!(&p.0, &t.0);
                prop_assert!((p.1 - t.1).abs() <= 1e-6 * p.1.max(1.0), "{} vs {}", p.1, t.1);
            }
        }
    }
}
