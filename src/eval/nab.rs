//! `scent eval nab`: the Numenta Anomaly Benchmark score of the streaming
//! univariate detector.
//!
//! Every series under `data/<category>/<file>.csv` that also has anomaly
//! windows in `labels/combined_windows.json` (or, when that file is absent,
//! `labels/combined_windows_dev.json`) is streamed, row by row, through a
//! fresh [`UnivariateDetector`] with the hyper-parameters frozen in
//! [`UnivariateDetectorConfig::default`]. The anomaly scores are then scored
//! with NAB's own algorithm, re-implemented here after `nab/sweeper.py`,
//! `nab/scorer.py` and `nab/runner.py` of github.com/numenta/NAB (v1.1;
//! A. Lavin, S. Ahmad, "Evaluating Real-time Anomaly Detection Algorithms –
//! the Numenta Anomaly Benchmark", arXiv:1510.03336, 2015):
//!
//! * **Probationary period.** The first `min(floor(0.15·n), 750)` rows of
//!   a file of `n` rows are not scored (detectors are still learning).
//! * **Windows.** A window `[first, last]` of `w = last - first + 1` rows
//!   is centred on each labelled anomaly. A detection at row `i` inside it
//!   is worth `σ(-(last - i + 1)/w) · A_TP / σ(-1)`, where
//!   `σ(x) = 2/(1 + e^{5x}) - 1` is the scaled sigmoid (−1 beyond `x > 3`):
//!   1 at the left edge, close to 0 at the right edge. Only the best, that
//!   is the earliest, detection of a window counts; a window without one
//!   costs `-A_FN`.
//! * **False positives.** A detection outside every window costs
//!   `σ(|i - last_prev| / (w_prev - 1)) · A_FP`, relative to the end of the
//!   preceding window (a detection just after a window is cheap, one far
//!   after it costs the full `A_FP`); with no preceding window it costs
//!   `A_FP`. Every detection outside a window counts.
//! * **Profiles.** standard `A_TP = 1, A_FP = 0.11, A_FN = 1`;
//!   reward_low_FP `A_FP = 0.22`; reward_low_FN `A_FN = 2`.
//! * **Threshold.** A row is a detection when its anomaly score is `>= θ`.
//!   As NAB's `optimize_threshold.py` does, ONE threshold per profile is
//!   chosen for the whole corpus by an exact sweep over every distinct
//!   score (the detector's hyper-parameters stay frozen in code; only this
//!   global operating point is optimised, as for every published NAB
//!   result). The thresholds are reported, and so are the scores at the
//!   threshold [`FROZEN_THRESHOLD`] fixed in code.
//! * **Normalisation.** `score = 100 · (S - S_null) / (S_perfect - S_null)`
//!   with `S` the corpus sum of the per-file raw scores, `S_null` the score
//!   of the null detector that never fires (`-A_FN` per scored window) and
//!   `S_perfect = A_TP · windows`.
//!
//! Per-file `tp` and `fn` count windows (detected or missed), `fp` counts
//! detections outside windows and `detections` every scored row at or above
//! the threshold; NAB's own csv counts rows instead.

use super::EvalError;
use chrono::NaiveDateTime;
use scent_operators::univariate_detector::{UnivariateDetector, UnivariateDetectorConfig};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Arguments of `scent eval nab`.
#[derive(Debug, clap::Args)]
pub struct NabArgs {
    /// Directory with the data set's files, in its distribution layout.
    #[arg(long)]
    pub data: PathBuf,
}

/// The weights of one NAB application profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// Name used in the report (`score_<name>`).
    pub name: &'static str,
    /// Reward of a detected window (its earliest detection at the left edge).
    pub tp_weight: f64,
    /// Cost of a detection far from any window (a positive number).
    pub fp_weight: f64,
    /// Cost of a missed window (a positive number).
    pub fn_weight: f64,
}

/// NAB's standard profile.
pub const STANDARD: Profile = Profile {
    name: "standard",
    tp_weight: 1.0,
    fp_weight: 0.11,
    fn_weight: 1.0,
};

/// NAB's profile that punishes false positives twice as hard.
pub const REWARD_LOW_FP: Profile = Profile {
    name: "reward_low_fp",
    tp_weight: 1.0,
    fp_weight: 0.22,
    fn_weight: 1.0,
};

/// NAB's profile that punishes missed windows twice as hard.
pub const REWARD_LOW_FN: Profile = Profile {
    name: "reward_low_fn",
    tp_weight: 1.0,
    fp_weight: 0.11,
    fn_weight: 2.0,
};

/// The detection threshold frozen in code, reported next to the swept
/// ones: the detector's scores take few values (1 for range novelty,
/// `ν/2` for sequence novelty), and 0.4 means "range novelty, or a new
/// transition at order 1 or 2" for the frozen defaults.
pub const FROZEN_THRESHOLD: f64 = 0.4;

/// Share of each file that is the probationary period.
pub const PROBATIONARY_SHARE: f64 = 0.15;

/// Rows in the probationary period of a file of `rows` rows:
/// `min(floor(0.15·rows), 0.15·5000)`.
pub fn probationary_rows(rows: usize) -> usize {
    let share = (PROBATIONARY_SHARE * rows as f64).floor();
    share.min(PROBATIONARY_SHARE * 5000.0) as usize
}

/// NAB's scaled sigmoid `2/(1 + e^{5x}) - 1`, with −1 for `x > 3`.
pub fn scaled_sigmoid(relative_position: f64) -> f64 {
    if relative_position > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * relative_position).exp()) - 1.0
    }
}

/// An anomaly window as inclusive row indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First row inside the window.
    pub first: usize,
    /// Last row inside the window.
    pub last: usize,
}

/// Maps window limits (timestamps) onto rows: the first row at or after the
/// start and the last row at or before the end. NAB's windows start and end
/// on rows of the file, where this is an exact match. Windows holding no row
/// are dropped.
pub fn window_rows(timestamps: &[i64], limits: &[(i64, i64)]) -> Vec<Window> {
    limits
        .iter()
        .filter_map(|&(start, end)| {
            let first = timestamps.partition_point(|&t| t < start);
            let after = timestamps.partition_point(|&t| t <= end);
            (after > first).then(|| Window {
                first,
                last: after - 1,
            })
        })
        .collect()
}

/// What a detection at one row is worth, before the profile's weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RowWorth {
    /// In the probationary period: not scored.
    Probationary,
    /// Inside window number `window` of its file; `sigmoid` in `(0, σ(-1)]`.
    InWindow {
        /// Index of the window in its file.
        window: usize,
        /// `σ(-(last - i + 1)/w)`.
        sigmoid: f64,
    },
    /// Outside every window; `sigmoid` in `[-1, 0]`.
    Outside {
        /// `σ` of the distance past the preceding window, or −1.
        sigmoid: f64,
    },
}

impl RowWorth {
    /// The weighted score of a detection at this row under `profile`.
    pub fn weighted(&self, profile: &Profile) -> f64 {
        match *self {
            RowWorth::Probationary => 0.0,
            RowWorth::InWindow { sigmoid, .. } => {
                sigmoid * profile.tp_weight / scaled_sigmoid(-1.0)
            }
            RowWorth::Outside { sigmoid } => sigmoid * profile.fp_weight,
        }
    }
}

/// The worth of a detection at every row of a file of `rows` rows with
/// `windows` (sorted, disjoint), as NAB's `Sweeper.calcSweepScore`.
pub fn row_worths(rows: usize, windows: &[Window]) -> Vec<RowWorth> {
    let probation = probationary_rows(rows);
    let mut worths = Vec::with_capacity(rows);
    let mut next_window = 0;
    let mut current: Option<(usize, Window)> = None;
    let mut previous: Option<Window> = None;
    for row in 0..rows {
        if current.is_none() && next_window < windows.len() && windows[next_window].first == row {
            current = Some((next_window, windows[next_window]));
            next_window += 1;
        }
        let worth = match current {
            Some((index, window)) => {
                let width = (window.last - window.first + 1) as f64;
                let position = -((window.last - row + 1) as f64) / width;
                RowWorth::InWindow {
                    window: index,
                    sigmoid: scaled_sigmoid(position),
                }
            }
            None => match previous {
                None => RowWorth::Outside { sigmoid: -1.0 },
                Some(window) => {
                    let width = (window.last - window.first + 1) as f64;
                    let past = row.abs_diff(window.last) as f64 / (width - 1.0).max(1.0);
                    RowWorth::Outside {
                        sigmoid: scaled_sigmoid(past),
                    }
                }
            },
        };
        worths.push(if row < probation {
            RowWorth::Probationary
        } else {
            worth
        });
        if let Some((_, window)) = current {
            if window.last == row {
                previous = Some(window);
                current = None;
            }
        }
    }
    worths
}

/// One file's anomaly scores with the worth of a detection at each row.
#[derive(Debug, Clone)]
pub struct ScoredSeries {
    /// `<category>/<file>.csv`.
    pub name: String,
    /// The detector's anomaly score of every row.
    pub scores: Vec<f64>,
    /// The worth of a detection at every row.
    pub worths: Vec<RowWorth>,
    /// Windows in the labels of this file.
    pub windows: usize,
}

impl ScoredSeries {
    /// Scores a file: `scores` per row, `windows` in rows.
    pub fn new(name: impl Into<String>, scores: Vec<f64>, windows: &[Window]) -> ScoredSeries {
        let worths = row_worths(scores.len(), windows);
        ScoredSeries {
            name: name.into(),
            scores,
            worths,
            windows: windows.len(),
        }
    }

    /// Windows with at least one scored row (NAB's null detector is charged
    /// `A_FN` for each of these).
    pub fn scored_windows(&self) -> usize {
        let mut seen = vec![false; self.windows];
        for worth in &self.worths {
            if let RowWorth::InWindow { window, .. } = worth {
                seen[*window] = true;
            }
        }
        seen.iter().filter(|&&s| s).count()
    }
}

/// The outcome of one file at one threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FileOutcome {
    /// NAB's raw score of the file.
    pub raw_score: f64,
    /// Scored rows at or above the threshold.
    pub detections: usize,
    /// Windows with a detection.
    pub true_positives: usize,
    /// Detections outside every window.
    pub false_positives: usize,
    /// Scored windows without a detection.
    pub false_negatives: usize,
}

/// Scores one file with detections at `score >= threshold`.
pub fn score_series(series: &ScoredSeries, threshold: f64, profile: &Profile) -> FileOutcome {
    let mut best: Vec<Option<f64>> = vec![None; series.windows];
    let mut scored = vec![false; series.windows];
    let mut outcome = FileOutcome {
        raw_score: 0.0,
        detections: 0,
        true_positives: 0,
        false_positives: 0,
        false_negatives: 0,
    };
    for (worth, &score) in series.worths.iter().zip(&series.scores) {
        if let RowWorth::InWindow { window, .. } = worth {
            scored[*window] = true;
        }
        if *worth == RowWorth::Probationary || score < threshold {
            continue;
        }
        outcome.detections += 1;
        let value = worth.weighted(profile);
        match worth {
            RowWorth::InWindow { window, .. } => {
                best[*window] = Some(best[*window].map_or(value, |b: f64| b.max(value)))
            }
            RowWorth::Outside { .. } => {
                outcome.false_positives += 1;
                outcome.raw_score += value;
            }
            RowWorth::Probationary => {}
        }
    }
    for (best, scored) in best.iter().zip(&scored) {
        match (best, scored) {
            (Some(value), _) => {
                outcome.true_positives += 1;
                outcome.raw_score += value.max(-profile.fn_weight);
            }
            (None, true) => {
                outcome.false_negatives += 1;
                outcome.raw_score -= profile.fn_weight;
            }
            (None, false) => {}
        }
    }
    outcome
}

/// The corpus raw score at one threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdScore {
    /// Detections are rows with `score >= threshold`.
    pub threshold: f64,
    /// Sum of the files' raw scores.
    pub score: f64,
}

/// The threshold that maximises the corpus raw score, found as NAB's
/// `calcScoreByThreshold` does: rows sorted by descending anomaly score,
/// the corpus score recorded at every distinct score, starting from 1.1
/// (no detection). Ties keep the highest threshold.
pub fn best_threshold(corpus: &[ScoredSeries], profile: &Profile) -> ThresholdScore {
    let mut window_base = Vec::with_capacity(corpus.len());
    let mut windows = 0;
    for series in corpus {
        window_base.push(windows);
        windows += series.windows;
    }
    // (score, worth, global window)
    let mut rows: Vec<(f64, f64, Option<usize>)> = Vec::new();
    let mut best_in_window = vec![0.0; windows];
    let mut total = 0.0;
    for (series, base) in corpus.iter().zip(&window_base) {
        for (worth, &score) in series.worths.iter().zip(&series.scores) {
            match worth {
                RowWorth::Probationary => {}
                RowWorth::InWindow { window, .. } => {
                    rows.push((score, worth.weighted(profile), Some(base + window)))
                }
                RowWorth::Outside { .. } => rows.push((score, worth.weighted(profile), None)),
            }
        }
        for window in 0..series.windows {
            best_in_window[base + window] = f64::NEG_INFINITY;
        }
    }
    // A window is charged −A_FN once it has a scored row.
    for &(_, _, window) in &rows {
        if let Some(window) = window {
            if best_in_window[window] == f64::NEG_INFINITY {
                best_in_window[window] = -profile.fn_weight;
                total -= profile.fn_weight;
            }
        }
    }
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut best = ThresholdScore {
        threshold: 1.1,
        score: total,
    };
    let mut start = 0;
    while start < rows.len() {
        let threshold = rows[start].0;
        let mut end = start;
        while end < rows.len() && rows[end].0 == threshold {
            let (_, value, window) = rows[end];
            match window {
                Some(window) => {
                    let improved = best_in_window[window].max(value);
                    total += improved - best_in_window[window];
                    best_in_window[window] = improved;
                }
                None => total += value,
            }
            end += 1;
        }
        if total > best.score {
            best = ThresholdScore {
                threshold,
                score: total,
            };
        }
        start = end;
    }
    best
}

/// The corpus score of the null detector: `-A_FN` per scored window.
pub fn null_score(corpus: &[ScoredSeries], profile: &Profile) -> f64 {
    -profile.fn_weight
        * corpus
            .iter()
            .map(ScoredSeries::scored_windows)
            .sum::<usize>() as f64
}

/// The corpus score of the perfect detector: `A_TP` per labelled window.
pub fn perfect_score(corpus: &[ScoredSeries], profile: &Profile) -> f64 {
    profile.tp_weight * corpus.iter().map(|s| s.windows).sum::<usize>() as f64
}

/// NAB's normalised score, 0 for the null detector and 100 for the perfect one.
pub fn normalised_score(raw: f64, null: f64, perfect: f64) -> f64 {
    if perfect == null {
        return 0.0;
    }
    100.0 * (raw - null) / (perfect - null)
}

/// A series as read from its csv: milliseconds since the epoch and values.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// Row timestamps (UTC milliseconds), non-decreasing.
    pub timestamps: Vec<i64>,
    /// Row values.
    pub values: Vec<f64>,
}

fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim().trim_matches('"');
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .map(|time| time.and_utc().timestamp_millis())
}

/// Reads a NAB csv: header `timestamp,value`, then one row per line.
pub fn read_series(path: &Path) -> Result<Series, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
    let mut series = Series::default();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if index == 0 || line.is_empty() {
            continue;
        }
        let (time, value) = line
            .split_once(',')
            .ok_or_else(|| EvalError::format(path, index + 1, "expected `timestamp,value`"))?;
        let time = parse_timestamp(time)
            .ok_or_else(|| EvalError::format(path, index + 1, "bad timestamp"))?;
        let value: f64 = value
            .trim()
            .parse()
            .map_err(|_| EvalError::format(path, index + 1, "bad value"))?;
        if series.timestamps.last().is_some_and(|&last| time < last) {
            return Err(EvalError::format(path, index + 1, "timestamps go back"));
        }
        series.timestamps.push(time);
        series.values.push(value);
    }
    Ok(series)
}

/// Reads the windows file: `{ "<category>/<file>.csv": [[start, end], ...] }`.
pub fn read_windows(path: &Path) -> Result<BTreeMap<String, Vec<(i64, i64)>>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
    let json: BTreeMap<String, Vec<Vec<String>>> = serde_json::from_str(&text)
        .map_err(|e| EvalError::format(path, e.line(), e.to_string()))?;
    let mut windows = BTreeMap::new();
    for (file, limits) in json {
        let mut rows = Vec::with_capacity(limits.len());
        for limit in limits {
            let parsed = match limit.as_slice() {
                [start, end] => parse_timestamp(start).zip(parse_timestamp(end)),
                _ => None,
            };
            let (start, end) = parsed.ok_or_else(|| {
                EvalError::format(path, 0, format!("bad window {limit:?} of {file}"))
            })?;
            rows.push((start, end));
        }
        rows.sort_unstable();
        windows.insert(file, rows);
    }
    Ok(windows)
}

/// The windows file: `combined_windows.json` when present, else the dev subset.
fn windows_path(data: &Path) -> PathBuf {
    let labels = data.join("labels");
    let full = labels.join("combined_windows.json");
    if full.is_file() {
        full
    } else {
        labels.join("combined_windows_dev.json")
    }
}

/// The anomaly score of every row of `series` from a fresh detector.
pub fn detect(series: &Series, config: &UnivariateDetectorConfig) -> Vec<f64> {
    let mut detector = UnivariateDetector::new(*config);
    series
        .values
        .iter()
        .map(|&value| detector.observe(value))
        .collect()
}

/// Evaluates the data set and returns the JSON report.
pub fn run(args: &NabArgs) -> Result<Value, EvalError> {
    let no_data = || EvalError::NoData {
        dataset: "nab",
        dir: args.data.clone(),
    };
    let labels_path = windows_path(&args.data);
    if !labels_path.is_file() {
        return Err(no_data());
    }
    let labels = read_windows(&labels_path)?;
    let config = UnivariateDetectorConfig::default();
    let mut corpus = Vec::new();
    let mut rows_of = Vec::new();
    for (name, limits) in &labels {
        let path = args.data.join("data").join(name);
        if !path.is_file() {
            continue;
        }
        let series = read_series(&path)?;
        let windows = window_rows(&series.timestamps, limits);
        let scores = detect(&series, &config);
        rows_of.push(series.values.len());
        corpus.push(ScoredSeries::new(name.clone(), scores, &windows));
    }
    if corpus.is_empty() {
        return Err(no_data());
    }
    let mut report = Map::new();
    report.insert("dataset".into(), json!("nab"));
    let mut thresholds = Map::new();
    let mut frozen = Map::new();
    frozen.insert("threshold".into(), json!(FROZEN_THRESHOLD));
    for profile in [STANDARD, REWARD_LOW_FP, REWARD_LOW_FN] {
        let null = null_score(&corpus, &profile);
        let perfect = perfect_score(&corpus, &profile);
        let best = best_threshold(&corpus, &profile);
        let score = normalised_score(best.score, null, perfect);
        report.insert(format!("score_{}", profile.name), json!(score));
        thresholds.insert(profile.name.into(), json!(best.threshold));
        let at_frozen: f64 = corpus
            .iter()
            .map(|series| score_series(series, FROZEN_THRESHOLD, &profile).raw_score)
            .sum();
        frozen.insert(
            format!("score_{}", profile.name),
            json!(normalised_score(at_frozen, null, perfect)),
        );
    }
    let standard = best_threshold(&corpus, &STANDARD);
    report.insert("threshold".into(), json!(standard.threshold));
    report.insert("thresholds".into(), Value::Object(thresholds));
    report.insert("at_frozen_threshold".into(), Value::Object(frozen));
    report.insert(
        "threshold_policy".into(),
        json!("one threshold per profile for the whole corpus, swept as NAB's optimiser does"),
    );
    report.insert("detector".into(), json!(config.version()));
    report.insert("labels".into(), json!(labels_path.display().to_string()));
    let mut files = Map::new();
    let mut totals = [0usize; 5];
    for (series, rows) in corpus.iter().zip(&rows_of) {
        let outcome = score_series(series, standard.threshold, &STANDARD);
        for (total, add) in totals.iter_mut().zip([
            *rows,
            series.windows,
            outcome.true_positives,
            outcome.false_positives,
            outcome.false_negatives,
        ]) {
            *total += add;
        }
        files.insert(
            series.name.clone(),
            json!({
                "rows": rows,
                "windows": series.windows,
                "detections": outcome.detections,
                "tp": outcome.true_positives,
                "fp": outcome.false_positives,
                "fn": outcome.false_negatives,
                "raw_score_standard": outcome.raw_score,
            }),
        );
    }
    report.insert("raw_score_standard".into(), json!(standard.score));
    report.insert("rows".into(), json!(totals[0]));
    report.insert("windows".into(), json!(totals[1]));
    report.insert("tp".into(), json!(totals[2]));
    report.insert("fp".into(), json!(totals[3]));
    report.insert("fn".into(), json!(totals[4]));
    report.insert("files".into(), Value::Object(files));
    Ok(Value::Object(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-5
    }

    /// 20 rows (probation: rows 0..=2), one window on rows 10..=14 (w = 5).
    fn tiny(scores: &[(usize, f64)]) -> ScoredSeries {
        let mut values = vec![0.0; 20];
        for &(row, score) in scores {
            values[row] = score;
        }
        ScoredSeries::new(
            "tiny.csv",
            values,
            &[Window {
                first: 10,
                last: 14,
            }],
        )
    }

    #[test]
    fn probation_is_fifteen_percent_capped_at_750_rows() {
        assert_eq!(probationary_rows(4032), 604);
        assert_eq!(probationary_rows(20), 3);
        assert_eq!(probationary_rows(6), 0);
        assert_eq!(probationary_rows(100_000), 750);
    }

    #[test]
    fn scaled_sigmoid_values() {
        assert!(close(scaled_sigmoid(-1.0), 0.986614));
        assert!(close(scaled_sigmoid(0.0), 0.0));
        assert!(close(scaled_sigmoid(1.0), -0.986614));
        assert_eq!(scaled_sigmoid(3.5), -1.0);
    }

    #[test]
    fn window_limits_map_onto_rows() {
        let timestamps = [0, 10, 20, 30, 40];
        let windows = window_rows(&timestamps, &[(10, 30), (15, 25), (41, 50), (5, 5)]);
        assert_eq!(
            windows,
            vec![Window { first: 1, last: 3 }, Window { first: 2, last: 2 }]
        );
    }

    #[test]
    fn row_worths_by_hand() {
        let worths = tiny(&[]).worths;
        assert_eq!(worths[2], RowWorth::Probationary);
        // Before any window: the full false-positive cost.
        assert!(close(worths[5].weighted(&STANDARD), -0.11));
        // Left edge: σ(-5/5) / σ(-1) = 1; row 12: σ(-3/5) / σ(-1) = 0.905148 / 0.986614.
        assert!(close(worths[10].weighted(&STANDARD), 1.0));
        assert!(close(worths[12].weighted(&STANDARD), 0.917430));
        // Right edge: σ(-1/5) / σ(-1) = 0.462117 / 0.986614.
        assert!(close(worths[14].weighted(&STANDARD), 0.468387));
        // After the window, relative to its end and width: σ(1/4)·0.11, σ(4/4)·0.11.
        assert!(close(worths[15].weighted(&STANDARD), -0.061006));
        assert!(close(worths[18].weighted(&STANDARD), -0.108528));
        assert!(close(worths[18].weighted(&REWARD_LOW_FP), -0.217055));
    }

    #[test]
    fn only_the_earliest_detection_of_a_window_counts() {
        // Detections: row 1 (probation, ignored), row 5 (FP), rows 12 and 14
        // (one window, row 12 counts), row 18 (FP after the window).
        let series = tiny(&[(1, 1.0), (5, 1.0), (12, 1.0), (14, 1.0), (18, 1.0)]);
        let outcome = score_series(&series, 0.5, &STANDARD);
        assert!(close(outcome.raw_score, 0.917430 - 0.11 - 0.108528));
        assert_eq!(outcome.detections, 4);
        assert_eq!(outcome.true_positives, 1);
        assert_eq!(outcome.false_positives, 2);
        assert_eq!(outcome.false_negatives, 0);
    }

    #[test]
    fn a_missed_window_costs_the_false_negative_weight() {
        let series = tiny(&[]);
        for profile in [STANDARD, REWARD_LOW_FN] {
            let outcome = score_series(&series, 0.5, &profile);
            assert_eq!(outcome.raw_score, -profile.fn_weight);
            assert_eq!(outcome.false_negatives, 1);
        }
    }

    #[test]
    fn the_threshold_sweep_finds_the_best_operating_point() {
        // At 0.9: only row 12, 0.917430. At 0.8: + FP row 5 (−0.11). At 0.5:
        // + FP row 18 (−0.108528). At 0.3: row 10 lifts the window to 1:
        // 0.781472. At 0: every row, far worse.
        let series = tiny(&[(12, 0.9), (5, 0.8), (18, 0.5), (10, 0.3)]);
        let corpus = [series];
        let best = best_threshold(&corpus, &STANDARD);
        assert_eq!(best.threshold, 0.9);
        assert!(close(best.score, 0.917430));
        assert!(close(
            score_series(&corpus[0], 0.3, &STANDARD).raw_score,
            0.781472
        ));
        let null = null_score(&corpus, &STANDARD);
        let perfect = perfect_score(&corpus, &STANDARD);
        assert_eq!((null, perfect), (-1.0, 1.0));
        let normalised = normalised_score(best.score, null, perfect);
        assert!((normalised - 100.0 * 1.917430 / 2.0).abs() < 1e-3);
        // The sweep agrees with scoring each file at its threshold.
        assert!(close(
            score_series(&corpus[0], best.threshold, &STANDARD).raw_score,
            best.score
        ));
    }

    #[test]
    fn without_windows_the_best_is_to_never_fire() {
        let series = ScoredSeries::new("quiet.csv", vec![0.7; 20], &[]);
        let corpus = [series];
        let best = best_threshold(&corpus, &STANDARD);
        assert_eq!(best.threshold, 1.1);
        assert_eq!(best.score, 0.0);
        assert_eq!(null_score(&corpus, &STANDARD), 0.0);
        assert_eq!(normalised_score(best.score, 0.0, 0.0), 0.0);
    }

    #[test]
    fn a_window_inside_the_probation_is_not_charged() {
        let series = ScoredSeries::new("early.csv", vec![0.0; 20], &[Window { first: 0, last: 2 }]);
        assert_eq!(series.scored_windows(), 0);
        let corpus = [series];
        assert_eq!(null_score(&corpus, &STANDARD), 0.0);
        assert_eq!(perfect_score(&corpus, &STANDARD), 1.0);
        assert_eq!(score_series(&corpus[0], 0.5, &STANDARD).raw_score, 0.0);
    }

    #[test]
    fn label_and_data_timestamps_agree() {
        assert_eq!(
            parse_timestamp("2014-04-10 07:15:00.000000"),
            parse_timestamp("2014-04-10 07:15:00")
        );
        assert_eq!(parse_timestamp("1970-01-01 00:00:01"), Some(1000));
        assert_eq!(parse_timestamp("yesterday"), None);
    }
}
