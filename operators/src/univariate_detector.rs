//! Streaming anomaly detection on one univariate series: range novelty plus
//! contextual sequence novelty, with calm gating and a rest after alerts.
//!
//! The detector sees one value at a time, never looks ahead, and keeps a
//! bounded state per series. It returns an anomaly score in `[0, 1]`; a
//! caller alerts when the score reaches a threshold (the NAB evaluation
//! chooses one threshold for a whole corpus). Two kinds of evidence are
//! combined, after the ideas behind the two best-known detectors of the
//! Numenta Anomaly Benchmark (Numenta HTM and CAD OSE, ~70 on the NAB
//! scoreboard), without their look-ahead: both receive the whole file's
//! minimum and maximum from NAB, this detector only the range seen so far.
//!
//! 1. **Range novelty** (score 1). After a warm-up of
//!    [`UnivariateDetectorConfig::warmup`] values, a value beyond the range
//!    seen so far by more than `range_margin · (max - min)` is anomalous.
//!    Numenta's NAB detector adds exactly this "spatial anomaly" check to
//!    its HTM score (S. Ahmad, A. Lavin, S. Purdy, Z. Agha, "Unsupervised
//!    real-time anomaly detection for streaming data", Neurocomputing 262,
//!    2017, §5; `nab/detectors/numenta/numenta_detector.py`). It catches
//!    spikes and level shifts at their first value.
//! 2. **Sequence novelty** (score in `[0, ½]`). The value is quantised
//!    into `levels` equal bins over the range seen so far, `q_t ∈ {0, …,
//!    levels-1}`. A set of the transitions met so far, `(q_{t-k}, …,
//!    q_{t-1}) → q_t` for every order `k = 1..=max_order`, is a
//!    variable-order Markov memory (R. Begleiter, R. El-Yaniv, G. Yona,
//!    "On prediction using variable order Markov models", JAIR 22, 2004).
//!    The raw novelty `ν_t` is the share of orders whose transition was
//!    never seen: 0 for a familiar pattern, 1 when even the first-order
//!    step is new. Since a new transition of order `k` makes every longer
//!    one new too, `ν_t = (K - k* + 1)/K` with `k*` the shortest new order
//!    and `K` the orders available. This is the contextual idea of
//!    M. Smirnov's CAD OSE detector (NAB `context_ose`), which learns
//!    contexts of quantised values and scores unconfirmed predictions and
//!    new contexts, with a much smaller memory.
//!
//!    **Dwell novelty** extends the memory to durations, which a short
//!    context cannot see on slowly sampled cycles (a daily cycle spends
//!    dozens of values in one bin): when the run of values in one bin
//!    grows past `dwell_factor` times the longest run that bin has ever
//!    had, `ν_t = 1` once for that run. A cycle whose peak fails to come,
//!    or a signal stuck mid-range, shows up this way.
//!
//!    **Calm gating.** As in CAD OSE, novelty only counts when the
//!    detector was calm before: if any of the last `calm_rows` raw
//!    novelties reached `calm_level`, the series is still being learnt (or
//!    an anomaly is still running) and `ν_t` is reported as 0. Then the
//!    score is `ν_t / 2`, so range novelty always ranks above it.
//!
//! **Rest after an alert.** After a score of at least `alert_level` the
//! next `rest_rows` scores are 0 (the state keeps learning): one event
//! raises one alert, which is what an operator wants and what NAB rewards
//! (only the earliest detection in an anomaly window counts, every other
//! detection is a false positive).
//!
//! State per series: running `min`/`max`, the last `max_order` symbols,
//! the current dwell and the longest dwell of each of the `levels` bins, a
//! ring of `calm_rows` flags and the transition set, capped at
//! `memory_limit` entries (when full it is cleared and relearnt, so memory
//! stays bounded). Cost per value: `O(max_order)` hash-set operations.
//! Non-finite values are skipped (score 0, state unchanged).

use serde::{Deserialize, Serialize};
use std::collections::{HashSet, VecDeque};

/// Longest finished dwell a bin needs before its dwells can be novel:
/// shorter histories are noise-driven flicker between neighbouring bins.
pub const MIN_DWELL_HISTORY: usize = 3;

/// Parameters of the detector, frozen in [`Default`] after a sweep on the
/// NAB corpus (see `scent eval nab`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnivariateDetectorConfig {
    /// Values learnt before any score above 0 is returned.
    pub warmup: usize,
    /// Margin beyond the seen range, relative to its width, for range novelty.
    pub range_margin: f64,
    /// Quantisation bins of the sequence memory.
    pub levels: usize,
    /// Longest context of the sequence memory.
    pub max_order: usize,
    /// Raw novelties that must stay below `calm_level` before novelty counts.
    pub calm_rows: usize,
    /// Raw novelty that breaks the calm.
    pub calm_level: f64,
    /// Score at or above which an alert starts a rest.
    pub alert_level: f64,
    /// Scores muted after an alert.
    pub rest_rows: usize,
    /// Transitions kept before the memory is cleared.
    pub memory_limit: usize,
    /// A dwell in one bin longer than this many times the longest dwell
    /// seen in that bin is novel.
    pub dwell_factor: f64,
}

impl Default for UnivariateDetectorConfig {
    fn default() -> Self {
        UnivariateDetectorConfig {
            warmup: 150,
            range_margin: 0.02,
            levels: 5,
            max_order: 5,
            calm_rows: 100,
            calm_level: 0.5,
            alert_level: 0.5,
            rest_rows: 25,
            memory_limit: 1 << 16,
            dwell_factor: 2.0,
        }
    }
}

impl UnivariateDetectorConfig {
    /// Checks the parameters; the error names the offending field.
    pub fn check(&self) -> Result<(), String> {
        if !(self.range_margin.is_finite() && self.range_margin >= 0.0) {
            return Err("range_margin must be a non-negative number".into());
        }
        if self.levels < 2 {
            return Err("levels must be at least 2".into());
        }
        if self.max_order == 0 {
            return Err("max_order must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.calm_level) {
            return Err("calm_level must lie in [0, 1]".into());
        }
        if !(0.0..=1.0).contains(&self.alert_level) {
            return Err("alert_level must lie in [0, 1]".into());
        }
        if !(self.dwell_factor.is_finite() && self.dwell_factor >= 1.0) {
            return Err("dwell_factor must be a number of at least 1".into());
        }
        if self.memory_limit < self.max_order {
            return Err("memory_limit must be at least max_order".into());
        }
        Ok(())
    }

    /// A short stable description, recorded with results.
    pub fn version(&self) -> String {
        format!(
            "univariate-v1:u{}:m{}:l{}:o{}:d{}:c{}@{}:a{}:r{}",
            self.warmup,
            self.range_margin,
            self.levels,
            self.max_order,
            self.dwell_factor,
            self.calm_rows,
            self.calm_level,
            self.alert_level,
            self.rest_rows
        )
    }
}

/// The detector state of one series.
#[derive(Debug, Clone)]
pub struct UnivariateDetector {
    config: UnivariateDetectorConfig,
    /// Finite values seen.
    seen: usize,
    min: f64,
    max: f64,
    /// The last `max_order` symbols, oldest first.
    symbols: VecDeque<u32>,
    /// Hashes of the transitions met, of every order.
    transitions: HashSet<u64>,
    /// Whether each of the last `calm_rows` raw novelties broke the calm.
    unrest: VecDeque<bool>,
    /// How many entries of `unrest` are true.
    unrest_count: usize,
    /// Scores still to mute after an alert.
    rest: usize,
    /// Values in a row in the current symbol's bin.
    dwell: usize,
    /// Whether the current dwell was already found novel.
    dwell_reported: bool,
    /// The longest finished dwell per bin.
    longest_dwell: Vec<usize>,
}

impl UnivariateDetector {
    /// A fresh detector; panics if `config.check()` fails (a programming error).
    pub fn new(config: UnivariateDetectorConfig) -> Self {
        if let Err(problem) = config.check() {
            panic!("invalid UnivariateDetectorConfig: {problem}");
        }
        UnivariateDetector {
            config,
            seen: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            symbols: VecDeque::with_capacity(config.max_order + 1),
            transitions: HashSet::new(),
            unrest: VecDeque::with_capacity(config.calm_rows + 1),
            unrest_count: 0,
            rest: 0,
            dwell: 0,
            dwell_reported: false,
            longest_dwell: vec![0; config.levels],
        }
    }

    /// Values seen so far (non-finite ones excluded).
    pub fn seen(&self) -> usize {
        self.seen
    }

    /// Observes the next value of the series and returns its anomaly score
    /// in `[0, 1]`: 1 for range novelty, `ν/2` for calm sequence novelty
    /// `ν`, 0 otherwise, during the warm-up and during a rest.
    pub fn observe(&mut self, value: f64) -> f64 {
        if !value.is_finite() {
            return 0.0;
        }
        let config = self.config;
        self.seen += 1;
        let range_novelty = self.seen > config.warmup && {
            let margin = config.range_margin * (self.max - self.min);
            value > self.max + margin || value < self.min - margin
        };
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        let novelty = self.sequence_novelty(value);
        let calm = self.unrest_count == 0;
        self.remember_unrest(novelty >= config.calm_level);

        let score = if self.seen <= config.warmup {
            0.0
        } else if range_novelty {
            1.0
        } else if calm {
            novelty / 2.0
        } else {
            0.0
        };
        if self.rest > 0 {
            self.rest -= 1;
            return 0.0;
        }
        if score >= config.alert_level && score > 0.0 {
            self.rest = config.rest_rows;
        }
        score
    }

    /// The share of orders whose transition into `value`'s symbol is new;
    /// learns them.
    fn sequence_novelty(&mut self, value: f64) -> f64 {
        let config = self.config;
        let width = self.max - self.min;
        let symbol = if width > 0.0 {
            let bin = ((value - self.min) / width * config.levels as f64).floor();
            (bin.max(0.0) as u32).min(config.levels as u32 - 1)
        } else {
            0
        };
        if self.transitions.len() + config.max_order > config.memory_limit {
            self.transitions.clear();
        }
        let orders = self.symbols.len();
        let mut new = 0;
        let mut hash = mix(u64::from(symbol));
        for order in 1..=orders {
            let previous = self.symbols[orders - order];
            hash = mix(hash ^ (u64::from(previous) << 8 | order as u64));
            if self.transitions.insert(hash) {
                new += 1;
            }
        }
        let dwell_novel = self.dwell_novelty(symbol);
        self.symbols.push_back(symbol);
        if self.symbols.len() > config.max_order {
            self.symbols.pop_front();
        }
        if dwell_novel {
            1.0
        } else if orders == 0 {
            0.0
        } else {
            new as f64 / orders as f64
        }
    }

    /// Whether the dwell in `symbol`'s bin, extended by this value, has just
    /// become longer than `dwell_factor` times the longest finished dwell
    /// in that bin (reported once per dwell, and only for bins with a
    /// dwell history of at least [`MIN_DWELL_HISTORY`] values).
    fn dwell_novelty(&mut self, symbol: u32) -> bool {
        if self.symbols.back() == Some(&symbol) {
            self.dwell += 1;
        } else {
            if let Some(&previous) = self.symbols.back() {
                let longest = &mut self.longest_dwell[previous as usize];
                *longest = (*longest).max(self.dwell);
            }
            self.dwell = 1;
            self.dwell_reported = false;
        }
        let longest = self.longest_dwell[symbol as usize];
        let novel = !self.dwell_reported
            && longest >= MIN_DWELL_HISTORY
            && self.dwell as f64 > self.config.dwell_factor * longest as f64;
        self.dwell_reported |= novel;
        novel
    }

    fn remember_unrest(&mut self, unrest: bool) {
        if self.config.calm_rows == 0 {
            return;
        }
        self.unrest.push_back(unrest);
        self.unrest_count += usize::from(unrest);
        if self.unrest.len() > self.config.calm_rows {
            let dropped = self.unrest.pop_front().unwrap_or(false);
            self.unrest_count -= usize::from(dropped);
        }
    }
}

/// SplitMix64 finaliser: a well-mixed 64-bit hash of a 64-bit key.
fn mix(key: u64) -> u64 {
    let mut z = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sawtooth 0, 1, 2, 3, 4, 0, 1, ... of `rows` values.
    fn sawtooth(rows: usize) -> Vec<f64> {
        (0..rows).map(|i| (i % 5) as f64).collect()
    }

    fn run(detector: &mut UnivariateDetector, values: &[f64]) -> Vec<f64> {
        values.iter().map(|&v| detector.observe(v)).collect()
    }

    #[test]
    fn default_config_is_valid() {
        assert_eq!(UnivariateDetectorConfig::default().check(), Ok(()));
    }

    #[test]
    fn bad_configs_name_the_field() {
        let base = UnivariateDetectorConfig::default();
        let cases = [
            (UnivariateDetectorConfig { levels: 1, ..base }, "levels"),
            (
                UnivariateDetectorConfig {
                    max_order: 0,
                    ..base
                },
                "max_order",
            ),
            (
                UnivariateDetectorConfig {
                    range_margin: -0.1,
                    ..base
                },
                "range_margin",
            ),
            (
                UnivariateDetectorConfig {
                    calm_level: 1.5,
                    ..base
                },
                "calm_level",
            ),
            (
                UnivariateDetectorConfig {
                    alert_level: f64::NAN,
                    ..base
                },
                "alert_level",
            ),
            (
                UnivariateDetectorConfig {
                    memory_limit: 2,
                    ..base
                },
                "memory_limit",
            ),
        ];
        for (config, field) in cases {
            let problem = config.check().expect_err(field);
            assert!(problem.starts_with(field), "{problem}");
        }
    }

    #[test]
    fn nothing_is_scored_during_the_warm_up() {
        let mut detector = UnivariateDetector::new(UnivariateDetectorConfig::default());
        let wild: Vec<f64> = (0..150).map(|i| ((i * 7919) % 101) as f64 * 1e3).collect();
        assert!(run(&mut detector, &wild).iter().all(|&s| s == 0.0));
    }

    #[test]
    fn a_learnt_pattern_scores_zero() {
        let mut detector = UnivariateDetector::new(UnivariateDetectorConfig::default());
        let scores = run(&mut detector, &sawtooth(1000));
        assert!(scores.iter().all(|&s| s == 0.0), "{scores:?}");
    }

    #[test]
    fn a_value_beyond_the_seen_range_scores_one_then_rests() {
        let config = UnivariateDetectorConfig::default();
        let mut detector = UnivariateDetector::new(config);
        run(&mut detector, &sawtooth(300));
        // 4 + 2 % of the range 4 is 4.08: 4.05 is inside the margin (its
        // symbol may still be new, which scores at most ½).
        assert!(detector.observe(4.05) <= 0.5);
        assert_eq!(detector.observe(10.0), 1.0);
        // The rest mutes the next `rest_rows` scores, whatever they are.
        let muted = run(&mut detector, &[100.0; 25]);
        assert_eq!(muted.len(), config.rest_rows);
        assert!(muted.iter().all(|&s| s == 0.0));
        assert_eq!(detector.observe(1000.0), 1.0);
    }

    #[test]
    fn a_new_sequence_inside_the_range_scores_half() {
        let mut detector = UnivariateDetector::new(UnivariateDetectorConfig::default());
        run(&mut detector, &sawtooth(300));
        // After 0, 1, 2 the sawtooth always goes to 3: the step 2 -> 1 is new
        // at every order, so ν = 1 and the score is ½ (no range novelty).
        assert_eq!(run(&mut detector, &[0.0, 1.0, 2.0]), vec![0.0; 3]);
        assert_eq!(detector.observe(1.0), 0.5);
    }

    #[test]
    fn a_dwell_twice_as_long_as_ever_scores_half_once() {
        let mut detector = UnivariateDetector::new(UnivariateDetectorConfig::default());
        // Ten values low, ten values high: dwells of 10 in bins 0 and 4,
        // longer than any context of the sequence memory.
        let square: Vec<f64> = (0..400).map(|i| ((i / 10) % 2 * 4) as f64).collect();
        assert!(run(&mut detector, &square).iter().all(|&s| s == 0.0));
        // The low phase lasts 20 values: still not novel (2 × 10)...
        assert!(run(&mut detector, &[0.0; 20]).iter().all(|&s| s == 0.0));
        // ...the 21st is, once.
        assert_eq!(detector.observe(0.0), 0.5);
        assert!(run(&mut detector, &[0.0; 100]).iter().all(|&s| s == 0.0));
    }

    #[test]
    fn novelty_after_unrest_is_not_scored() {
        let config = UnivariateDetectorConfig::default();
        let mut detector = UnivariateDetector::new(config);
        run(&mut detector, &sawtooth(300));
        // A burst of new steps breaks the calm (and the first one alerts).
        assert_eq!(run(&mut detector, &[0.0, 1.0, 2.0, 1.0])[3], 0.5);
        run(&mut detector, &[0.0, 2.0, 4.0, 1.0, 3.0]);
        // Past the rest but within `calm_rows` of the burst: new steps are muted.
        let scores = run(&mut detector, &[4.0, 4.0, 2.0, 0.0, 3.0, 1.0]);
        assert!(scores.iter().all(|&s| s == 0.0), "{scores:?}");
        // Once calm again, the same kind of novelty counts.
        // The sawtooth ends on 4; the step 4 -> 3 has never been seen.
        run(&mut detector, &sawtooth(config.calm_rows + 10));
        assert_eq!(detector.observe(3.0), 0.5);
    }

    #[test]
    fn non_finite_values_are_skipped() {
        let mut detector = UnivariateDetector::new(UnivariateDetectorConfig::default());
        run(&mut detector, &sawtooth(200));
        let seen = detector.seen();
        for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(detector.observe(value), 0.0);
        }
        assert_eq!(detector.seen(), seen);
        assert_eq!(detector.observe(0.0), 0.0);
    }

    #[test]
    fn scores_are_bounded_deterministic_and_memory_is_capped() {
        let config = UnivariateDetectorConfig {
            memory_limit: 500,
            ..UnivariateDetectorConfig::default()
        };
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let values: Vec<f64> = (0..20_000)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 11) as f64 / (1u64 << 53) as f64 + (i / 5000) as f64
            })
            .collect();
        let mut first = UnivariateDetector::new(config);
        let mut second = UnivariateDetector::new(config);
        for &value in &values {
            let score = first.observe(value);
            assert!((0.0..=1.0).contains(&score));
            assert_eq!(score, second.observe(value));
            assert!(first.transitions.len() <= config.memory_limit);
        }
    }
}
