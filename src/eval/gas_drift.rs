//! `scent eval gas-drift`: gas classification across sensor ageing on the
//! UCI "Gas Sensor Array Drift Dataset (at Different Concentrations)"
//! (Vergara et al., Sens. Actuators B 166-167 (2012) 320-329;
//! Rodriguez-Lujan et al., Chemom. Intell. Lab. Syst. 130 (2014) 123-134).
//!
//! **Data.** `batchN.dat`, N = 1..10 in chronological order, one
//! measurement per line: `<gas code>;<concentration ppmv> 1:<f1> ... 128:<f128>`
//! (16 metal-oxide sensors x 8 features). Gas codes follow the UCI code
//! list: 1 ethanol, 2 ethylene, 3 ammonia, 4 acetaldehyde, 5 acetone,
//! 6 toluene. Class `c` of the classifier is gas code `c + 1`.
//!
//! **Protocol.** Train on the `--train` batches (default batch 1); the
//! batches are months apart, so training always precedes testing. Each
//! `--test` batch (default 2, 3, 4, 5, those present) is a recalibration
//! period: its first K measurements in file order
//! (`--calibration-samples`, K <= 10, default 10) are the reference
//! measurements a plant runs after recalibrating, used with their gas class
//! and concentration; the remaining measurements are scored. Within a batch
//! the file order is **not** time order: each file is grouped by gas code
//! into long runs of one gas (hundreds of rows), ordered by concentration
//! within a run, so the K reference rows are ethanol measurements.
//!
//! **Headline: reference-gas calibration only.** `accuracy` and
//! `balanced_accuracy` score [`scent_operators::drift_correction`] with the
//! offset measured on the K reference samples and no tracking. The matcher
//! then keeps no state between measurements, so the headline does not
//! depend on the order of the scored rows (the integration test checks this
//! on a copy of the data with the scored rows permuted). Hyper-parameters
//! are the frozen [`DriftCompensationConfig::default`].
//!
//! **Drift tracking, reported beside the headline.** The self-training
//! tracking of the remaining common drift adapts as it classifies, so its
//! score depends on the order of the scored rows. `tracking_in_file_order`
//! scores it in file order; because the files are grouped by class, tracking
//! there adapts to long runs of one class and the figure (0.864) is
//! optimistic. `tracking_shuffled` scores it with the scored rows of each
//! batch shuffled (calibration rows first) under each of the frozen
//! [`TRACKING_SHUFFLE_SEEDS`] and reports the mean and the minimum over the
//! seeds. In a random order tracking does not beat calibration alone on
//! the mean over batches (it helps batch 5, hurts batches 3 and 4).
//!
//! **Report.** Per test batch and their unweighted `mean` over batches, as
//! in the literature: `accuracy` and `balanced_accuracy` (mean per-class
//! recall over the classes present in the scored part) of the headline;
//! `baseline_without_correction` (the same classifier, same scored samples,
//! no correction); `tracking_in_file_order` and `tracking_shuffled`
//! (`mean_over_seeds`, `min_over_seeds`, `per_seed_mean`); and `per_batch`
//! sample counts and confusion matrices (rows: true gas code 1..6, columns:
//! predicted) of the headline, without correction, and of tracking in file
//! order.
//!
//! Anchor figures on batches 1-5 (K = 10), headline: mean accuracy 0.799
//! (0.890, 0.778, 0.795, 0.733), balanced accuracy 0.772; without
//! correction 0.739. Tracking over five shuffled orders: mean 0.789
//! (0.874, 0.736, 0.760, 0.785; worst seed 0.781); tracking in file order
//! (grouped by class): 0.864. **The target of 0.85 is not reached** by an
//! order-independent figure: the 0.864 of earlier reports came from the
//! class-grouped file order. The
//! frozen parameters (λ = 0.02, η = 0.02, posterior >= 0.99) were chosen on
//! these batches in file order as one global set, before the order effect
//! was known; they were not re-tuned on the shuffled orders.
//! Published means over batches 2-10 (train on batch 1): SVM without drift
//! compensation 38.9 %, best methods 83-92 %.

use super::EvalError;
use scent_operators::drift_correction::{
    DriftCompensatedClassifier, DriftCompensationConfig, DriftError, KnownMeasurement,
};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// Features per measurement: 16 sensors x 8 features.
pub const FEATURES: usize = 128;
/// Gas classes (UCI codes 1..=6).
pub const CLASSES: usize = 6;
/// Largest number of calibration samples the protocol allows.
pub const MAX_CALIBRATION_SAMPLES: usize = 10;
/// Gas names by class (code - 1).
const GAS_NAMES: [&str; CLASSES] = [
    "ethanol",
    "ethylene",
    "ammonia",
    "acetaldehyde",
    "acetone",
    "toluene",
];

/// Arguments of `scent eval gas-drift`.
#[derive(Debug, clap::Args)]
pub struct GasDriftArgs {
    /// Directory with the data set's files (`batch1.dat` ... `batch10.dat`).
    #[arg(long)]
    pub data: PathBuf,
    /// Training batches, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub train: Vec<usize>,
    /// Test batches, comma-separated, all later than the training batches
    /// [default: 2,3,4,5, those whose file is present].
    #[arg(long, value_delimiter = ',')]
    pub test: Option<Vec<usize>>,
    /// Reference measurements at the start of each test batch (at most 10),
    /// used with their labels for calibration and not scored.
    #[arg(long, default_value_t = MAX_CALIBRATION_SAMPLES)]
    pub calibration_samples: usize,
}

/// One measurement: gas class (code - 1), concentration and features.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// Gas class in `0..CLASSES`.
    pub class: usize,
    /// Concentration in ppmv.
    pub concentration: f64,
    /// The 128 features.
    pub features: Vec<f64>,
}

impl Measurement {
    fn known(&self) -> KnownMeasurement<'_> {
        KnownMeasurement {
            class: self.class,
            concentration: self.concentration,
            features: &self.features,
        }
    }
}

/// Parses one batch file.
pub fn parse_batch(path: &Path, text: &str) -> Result<Vec<Measurement>, EvalError> {
    let mut measurements = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        measurements.push(parse_line(line).map_err(|p| EvalError::format(path, line_number, p))?);
    }
    if measurements.is_empty() {
        return Err(EvalError::format(path, 0, "no measurements"));
    }
    Ok(measurements)
}

fn parse_line(line: &str) -> Result<Measurement, String> {
    let mut fields = line.split_whitespace();
    let head = fields.next().ok_or("empty line")?;
    let (code, concentration) = head
        .split_once(';')
        .ok_or_else(|| format!("expected `<gas code>;<concentration>`, found `{head}`"))?;
    let code: usize = code
        .parse()
        .map_err(|_| format!("gas code `{code}` is not an integer"))?;
    if !(1..=CLASSES).contains(&code) {
        return Err(format!("gas code {code} is outside 1..={CLASSES}"));
    }
    let concentration: f64 = concentration
        .parse()
        .map_err(|_| format!("concentration `{concentration}` is not a number"))?;
    if !(concentration.is_finite() && concentration > 0.0) {
        return Err(format!("concentration {concentration} is not positive"));
    }
    // LibSVM convention: indices increase, an absent index is zero.
    let mut features = vec![0.0; FEATURES];
    let mut previous = 0;
    for field in fields {
        let (index, value) = field
            .split_once(':')
            .ok_or_else(|| format!("expected `<index>:<value>`, found `{field}`"))?;
        let index: usize = index
            .parse()
            .map_err(|_| format!("feature index `{index}` is not an integer"))?;
        if !(1..=FEATURES).contains(&index) {
            return Err(format!("feature index {index} is outside 1..={FEATURES}"));
        }
        if index <= previous {
            return Err(format!("feature index {index} follows {previous}"));
        }
        previous = index;
        let value: f64 = value
            .parse()
            .map_err(|_| format!("feature {index} value `{value}` is not a number"))?;
        if !value.is_finite() {
            return Err(format!("feature {index} is not finite"));
        }
        features[index - 1] = value;
    }
    Ok(Measurement {
        class: code - 1,
        concentration,
        features,
    })
}

fn batch_path(dir: &Path, batch: usize) -> PathBuf {
    dir.join(format!("batch{batch}.dat"))
}

/// Reads and parses `batchN.dat` under `dir`.
pub fn read_batch(dir: &Path, batch: usize) -> Result<Vec<Measurement>, EvalError> {
    let path = batch_path(dir, batch);
    let text = std::fs::read_to_string(&path).map_err(|e| EvalError::io(&path, e))?;
    parse_batch(&path, &text)
}

fn drift_error(error: DriftError) -> EvalError {
    EvalError::Usage(format!("drift compensation: {error}"))
}

/// Accuracy, balanced accuracy and confusion of one scored batch.
#[derive(Debug, Clone, PartialEq)]
struct Scores {
    confusion: [[usize; CLASSES]; CLASSES],
}

impl Scores {
    fn new() -> Scores {
        Scores {
            confusion: [[0; CLASSES]; CLASSES],
        }
    }

    fn add(&mut self, truth: usize, predicted: usize) {
        self.confusion[truth][predicted] += 1;
    }

    fn total(&self) -> usize {
        self.confusion.iter().flatten().sum()
    }

    fn accuracy(&self) -> f64 {
        let correct: usize = (0..CLASSES).map(|c| self.confusion[c][c]).sum();
        correct as f64 / self.total().max(1) as f64
    }

    /// Mean recall over the classes that occur.
    fn balanced_accuracy(&self) -> f64 {
        let recalls: Vec<f64> = (0..CLASSES)
            .filter_map(|c| {
                let support: usize = self.confusion[c].iter().sum();
                (support > 0).then(|| self.confusion[c][c] as f64 / support as f64)
            })
            .collect();
        recalls.iter().sum::<f64>() / recalls.len().max(1) as f64
    }
}

/// Seeds of the in-file shuffles under which drift tracking is scored,
/// frozen here: the scored rows of each test batch are permuted with
/// `ChaCha8Rng::seed_from_u64(seed)` on stream `batch`, the calibration rows
/// stay first.
pub const TRACKING_SHUFFLE_SEEDS: [u64; 5] = [1, 2, 3, 4, 5];

/// The scores of one test batch under every treatment.
struct BatchResult {
    batch: usize,
    samples: usize,
    /// Headline: reference-gas calibration only (order-independent).
    calibration_only: Scores,
    uncorrected: Scores,
    /// Calibration plus tracking, scored rows in file order (grouped by class).
    tracking_in_file_order: Scores,
    /// Calibration plus tracking, one entry per [`TRACKING_SHUFFLE_SEEDS`].
    tracking_shuffled: Vec<Scores>,
}

/// The scored rows of `batch` permuted with a frozen seed.
fn shuffled(scored: &[Measurement], batch: usize, seed: u64) -> Vec<&Measurement> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(batch as u64);
    let mut order: Vec<&Measurement> = scored.iter().collect();
    order.shuffle(&mut rng);
    order
}

/// Scores a matcher that adapts as it goes (drift tracking) on the scored
/// rows in the given order, after a fresh recalibration.
fn score_in_order<'a>(
    tracking: &DriftCompensatedClassifier,
    references: &[KnownMeasurement<'_>],
    order: impl IntoIterator<Item = &'a Measurement>,
) -> Result<Scores, EvalError> {
    let mut matcher = tracking.clone();
    matcher.recalibrate(references).map_err(drift_error)?;
    let mut scores = Scores::new();
    for measurement in order {
        let prediction = matcher
            .classify(&measurement.features)
            .map_err(drift_error)?;
        scores.add(measurement.class, prediction.class);
    }
    Ok(scores)
}

fn evaluate_batch(
    tracking: &DriftCompensatedClassifier,
    calibration_only: &DriftCompensatedClassifier,
    batch: usize,
    measurements: &[Measurement],
    calibration_samples: usize,
) -> Result<BatchResult, EvalError> {
    if measurements.len() <= calibration_samples {
        return Err(EvalError::Usage(format!(
            "batch {batch} has {} measurements, not more than the {calibration_samples} calibration samples",
            measurements.len()
        )));
    }
    let (references, scored) = measurements.split_at(calibration_samples);
    let references: Vec<KnownMeasurement<'_>> = references.iter().map(Measurement::known).collect();
    // Without tracking the matcher keeps no state between measurements, so
    // these two scores do not depend on the order of the scored rows.
    let mut offset_matcher = calibration_only.clone();
    offset_matcher
        .recalibrate(&references)
        .map_err(drift_error)?;
    let mut calibration_scores = Scores::new();
    let mut uncorrected = Scores::new();
    for measurement in scored {
        let features = &measurement.features;
        let offset = offset_matcher.classify(features).map_err(drift_error)?;
        calibration_scores.add(measurement.class, offset.class);
        let raw = calibration_only
            .classifier()
            .classify_raw(features)
            .map_err(|e| drift_error(e.into()))?;
        uncorrected.add(measurement.class, raw.class);
    }
    let tracking_in_file_order = score_in_order(tracking, &references, scored)?;
    let tracking_shuffled = TRACKING_SHUFFLE_SEEDS
        .iter()
        .map(|seed| score_in_order(tracking, &references, shuffled(scored, batch, *seed)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(BatchResult {
        batch,
        samples: measurements.len(),
        calibration_only: calibration_scores,
        uncorrected,
        tracking_in_file_order,
        tracking_shuffled,
    })
}

fn metric_object(results: &[BatchResult], metric: impl Fn(&BatchResult) -> f64) -> Value {
    let mut object = Map::new();
    let values: Vec<f64> = results.iter().map(&metric).collect();
    for (result, value) in results.iter().zip(&values) {
        object.insert(format!("batch{}", result.batch), json!(value));
    }
    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
    object.insert("mean".into(), json!(mean));
    Value::Object(object)
}

/// Tracking over the shuffled orders: per batch and for the mean over
/// batches, the mean and the minimum over the seeds (the minimum of the
/// mean is the worst seed's mean over batches, not the mean of the minima).
fn shuffled_summary(results: &[BatchResult], metric: impl Fn(&Scores) -> f64) -> Value {
    let per_seed: Vec<Vec<f64>> = (0..TRACKING_SHUFFLE_SEEDS.len())
        .map(|seed| {
            results
                .iter()
                .map(|r| metric(&r.tracking_shuffled[seed]))
                .collect()
        })
        .collect();
    let mean_of = |values: &[f64]| values.iter().sum::<f64>() / values.len().max(1) as f64;
    let min_of = |values: &[f64]| values.iter().copied().fold(f64::INFINITY, f64::min);
    let seed_means: Vec<f64> = per_seed.iter().map(|v| mean_of(v)).collect();
    let mut mean = Map::new();
    let mut min = Map::new();
    for (index, result) in results.iter().enumerate() {
        let over_seeds: Vec<f64> = per_seed.iter().map(|v| v[index]).collect();
        let key = format!("batch{}", result.batch);
        mean.insert(key.clone(), json!(mean_of(&over_seeds)));
        min.insert(key, json!(min_of(&over_seeds)));
    }
    mean.insert("mean".into(), json!(mean_of(&seed_means)));
    min.insert("mean".into(), json!(min_of(&seed_means)));
    json!({
        "mean_over_seeds": mean,
        "min_over_seeds": min,
        "per_seed_mean": seed_means,
    })
}

fn check_batches(args: &GasDriftArgs) -> Result<(Vec<usize>, Vec<usize>), EvalError> {
    if args.calibration_samples > MAX_CALIBRATION_SAMPLES {
        return Err(EvalError::Usage(format!(
            "--calibration-samples is {}, the protocol allows at most {MAX_CALIBRATION_SAMPLES}",
            args.calibration_samples
        )));
    }
    let mut train = args.train.clone();
    train.sort_unstable();
    train.dedup();
    let last_train = *train
        .last()
        .ok_or_else(|| EvalError::Usage("--train needs at least one batch".into()))?;
    let test = match &args.test {
        Some(test) => test.clone(),
        None => (2..=5)
            .filter(|b| batch_path(&args.data, *b).is_file())
            .collect(),
    };
    let mut test = test;
    test.sort_unstable();
    test.dedup();
    if let Some(early) = test.iter().find(|b| **b <= last_train) {
        return Err(EvalError::Usage(format!(
            "test batch {early} is not later than training batch {last_train}: evaluation goes forward in time only"
        )));
    }
    if train.iter().chain(&test).any(|b| *b == 0) {
        return Err(EvalError::Usage("batch numbers start at 1".into()));
    }
    Ok((train, test))
}

/// Evaluates the data set and returns the JSON report.
pub fn run(args: &GasDriftArgs) -> Result<serde_json::Value, EvalError> {
    let any_present = (1..=10).any(|b| batch_path(&args.data, b).is_file());
    if !any_present {
        return Err(EvalError::NoData {
            dataset: "gas-drift",
            dir: args.data.clone(),
        });
    }
    let (train, test) = check_batches(args)?;
    if test.is_empty() {
        return Err(EvalError::Usage(format!(
            "none of the default test batches 2-5 is under {}",
            args.data.display()
        )));
    }
    let mut training = Vec::new();
    for batch in &train {
        training.extend(read_batch(&args.data, *batch)?);
    }
    let known: Vec<KnownMeasurement<'_>> = training.iter().map(Measurement::known).collect();
    let config = DriftCompensationConfig::default();
    let tracking = DriftCompensatedClassifier::fit(&known, CLASSES, config).map_err(drift_error)?;
    let calibration_only = DriftCompensatedClassifier::fit(
        &known,
        CLASSES,
        DriftCompensationConfig {
            tracking_rate: 0.0,
            ..config
        },
    )
    .map_err(drift_error)?;

    let mut results = Vec::new();
    for batch in &test {
        let measurements = read_batch(&args.data, *batch)?;
        results.push(evaluate_batch(
            &tracking,
            &calibration_only,
            *batch,
            &measurements,
            args.calibration_samples,
        )?);
    }

    let mut per_batch = Map::new();
    for result in &results {
        per_batch.insert(
            format!("batch{}", result.batch),
            json!({
                "samples": result.samples,
                "evaluated": result.calibration_only.total(),
                "confusion": result.calibration_only.confusion,
                "confusion_without_correction": result.uncorrected.confusion,
                "confusion_tracking_in_file_order": result.tracking_in_file_order.confusion,
            }),
        );
    }
    Ok(json!({
        "dataset": "gas-drift",
        "train": train,
        "test": test,
        "calibration_samples": args.calibration_samples,
        "headline_method": "reference-gas calibration only (offset from the labelled calibration \
            samples, no tracking): independent of the order of the scored rows",
        "accuracy": metric_object(&results, |r| r.calibration_only.accuracy()),
        "balanced_accuracy": metric_object(&results, |r| r.calibration_only.balanced_accuracy()),
        "baseline_without_correction": {
            "accuracy": metric_object(&results, |r| r.uncorrected.accuracy()),
            "balanced_accuracy": metric_object(&results, |r| r.uncorrected.balanced_accuracy()),
        },
        "tracking_in_file_order": {
            "accuracy": metric_object(&results, |r| r.tracking_in_file_order.accuracy()),
            "balanced_accuracy": metric_object(&results, |r| r.tracking_in_file_order.balanced_accuracy()),
            "note": "calibration plus self-training drift tracking, scored rows in file order; \
                the batch files are grouped by gas class into long runs (not time order), so \
                tracking adapts to one class at a time and this figure is optimistic: it is not a time order",
        },
        "tracking_shuffled": {
            "seeds": TRACKING_SHUFFLE_SEEDS,
            "accuracy": shuffled_summary(&results, Scores::accuracy),
            "balanced_accuracy": shuffled_summary(&results, Scores::balanced_accuracy),
            "note": "calibration plus drift tracking with the scored rows of each batch shuffled \
                (calibration rows first), one run per frozen seed: the fair figure for tracking",
        },
        "classes": GAS_NAMES,
        "config": {
            "shrinkage": config.shrinkage,
            "tracking_rate": config.tracking_rate,
            "min_posterior": config.min_posterior,
        },
        "per_batch": per_batch,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_line_and_fills_absent_features_with_zero() {
        let m = parse_line("3;250.000000 1:15596.16 2:1.868 128:-4.5").unwrap();
        assert_eq!(m.class, 2);
        assert_eq!(m.concentration, 250.0);
        assert_eq!(m.features.len(), FEATURES);
        assert_eq!(m.features[0], 15596.16);
        assert_eq!(m.features[2], 0.0);
        assert_eq!(m.features[127], -4.5);
    }

    #[test]
    fn format_errors_name_the_problem() {
        for (line, problem) in [
            ("7;10 1:1", "gas code 7"),
            ("1 1:1", "expected `<gas code>;<concentration>`"),
            ("1;abc 1:1", "concentration `abc`"),
            ("1;10 0:1", "feature index 0"),
            ("1;10 129:1", "feature index 129"),
            ("1;10 2:1 2:3", "feature index 2 follows 2"),
            ("1;10 1:x", "value `x`"),
            ("1;10 1:NaN", "not finite"),
        ] {
            let error = parse_line(line).unwrap_err();
            assert!(error.contains(problem), "{line}: {error}");
        }
        let error = parse_batch(Path::new("b.dat"), "1;10 1:1\n\n2;x 1:1\n").unwrap_err();
        assert!(error.to_string().starts_with("b.dat:3:"), "{error}");
    }

    #[test]
    fn scores_count_accuracy_and_balanced_accuracy() {
        let mut scores = Scores::new();
        for _ in 0..8 {
            scores.add(0, 0);
        }
        scores.add(1, 1);
        scores.add(1, 0);
        assert!((scores.accuracy() - 0.9).abs() < 1e-12);
        assert!((scores.balanced_accuracy() - 0.75).abs() < 1e-12);
    }

    #[test]
    fn shuffled_order_is_a_frozen_permutation() {
        let rows: Vec<Measurement> = (0..50)
            .map(|i| Measurement {
                class: i % CLASSES,
                concentration: 1.0 + i as f64,
                features: vec![i as f64],
            })
            .collect();
        let concentrations =
            |order: &[&Measurement]| order.iter().map(|m| m.concentration).collect::<Vec<_>>();
        let first = concentrations(&shuffled(&rows, 2, 1));
        assert_eq!(first, concentrations(&shuffled(&rows, 2, 1)));
        assert_ne!(first, concentrations(&shuffled(&rows, 2, 2)));
        assert_ne!(first, concentrations(&shuffled(&rows, 3, 1)));
        let mut sorted = first.clone();
        sorted.sort_by(f64::total_cmp);
        assert_eq!(sorted, concentrations(&rows.iter().collect::<Vec<_>>()));
        assert_ne!(first, sorted, "a shuffle of 50 rows moves some");
    }
}
