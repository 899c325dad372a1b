//! `scent eval gas-drift` on the UCI gas-sensor-array drift batches in
//! `../shared/data/gas-sensor-array-drift`: classification accuracy across
//! sensor ageing with reference-gas calibration (the headline, independent
//! of the order of the scored rows), against the same classifier without
//! correction, with self-training drift tracking reported beside it.
//!
//! Anchor (batches 1-5 present, train 1, test 2-5, 10 calibration samples,
//! frozen `DriftCompensationConfig::default()`): headline accuracy 0.890 /
//! 0.778 / 0.795 / 0.733, mean 0.799 (target 0.85 not reached); balanced
//! accuracy mean 0.772; without correction mean 0.739; tracking over five
//! shuffled orders mean 0.789 (worst seed 0.781); tracking in the
//! class-grouped file order 0.864 (optimistic). Published means over batches
//! 2-10: SVM without drift compensation 0.389, best methods 0.83-0.92.
//! Skipped when the data set is absent.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Reference rows at the start of each test batch (the default).
const CALIBRATION_SAMPLES: usize = 10;

fn run_eval(data: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_scent"))
        .args(["eval", "gas-drift", "--data"])
        .arg(data)
        .args(extra)
        .output()
        .expect("scent runs")
}

fn report_of(data: &Path) -> Value {
    let output = run_eval(data, &[]);
    assert!(
        output.status.success(),
        "scent eval gas-drift failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON object")
}

fn data_dir() -> Option<PathBuf> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/gas-sensor-array-drift");
    if data.join("batch1.dat").is_file() {
        Some(data)
    } else {
        eprintln!(
            "skipped: gas-sensor-array-drift data not found at {}",
            data.display()
        );
        None
    }
}

fn present_test_batches(data: &Path) -> Vec<u64> {
    (2..=5)
        .filter(|b| data.join(format!("batch{b}.dat")).is_file())
        .collect()
}

fn number(value: &Value, what: &str) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {value}"))
}

/// Checks a `{batchN: x, mean: x}` object with fractions in [0, 1].
fn check_metric_object(metric: &Value, present: &[u64]) {
    let object = metric.as_object().expect("a metric object");
    assert_eq!(object.len(), present.len() + 1, "{metric}");
    for batch in present {
        assert!(object.contains_key(&format!("batch{batch}")), "{metric}");
    }
    for (key, value) in object {
        let value = number(value, key);
        assert!((0.0..=1.0).contains(&value), "{key} = {value}");
    }
}

#[test]
fn gas_drift_accuracy_with_drift_correction() {
    let Some(data) = data_dir() else { return };
    let report = report_of(&data);
    assert_eq!(report["dataset"], "gas-drift");
    assert_eq!(report["train"], serde_json::json!([1]));
    assert_eq!(report["calibration_samples"], CALIBRATION_SAMPLES);
    assert!(report["headline_method"].is_string());

    let present = present_test_batches(&data);
    assert_eq!(report["test"], serde_json::json!(present));
    let shuffled = &report["tracking_shuffled"];
    let seeds = shuffled["seeds"].as_array().expect("seeds").len();
    assert!(seeds >= 3, "tracking is scored on several shuffled orders");
    for metric in [
        &report["accuracy"],
        &report["balanced_accuracy"],
        &report["baseline_without_correction"]["accuracy"],
        &report["baseline_without_correction"]["balanced_accuracy"],
        &report["tracking_in_file_order"]["accuracy"],
        &report["tracking_in_file_order"]["balanced_accuracy"],
        &shuffled["accuracy"]["mean_over_seeds"],
        &shuffled["accuracy"]["min_over_seeds"],
        &shuffled["balanced_accuracy"]["mean_over_seeds"],
        &shuffled["balanced_accuracy"]["min_over_seeds"],
    ] {
        check_metric_object(metric, &present);
    }
    let note = report["tracking_in_file_order"]["note"]
        .as_str()
        .expect("a note on the file order");
    assert!(note.contains("optimistic"), "{note}");
    assert!(shuffled["note"].is_string());
    let per_seed = shuffled["accuracy"]["per_seed_mean"]
        .as_array()
        .expect("per-seed means");
    assert_eq!(per_seed.len(), seeds);
    let worst = number(&shuffled["accuracy"]["min_over_seeds"]["mean"], "worst");
    let average = number(&shuffled["accuracy"]["mean_over_seeds"]["mean"], "average");
    assert!(worst <= average + 1e-12, "min {worst} above mean {average}");

    for batch in &present {
        let entry = &report["per_batch"][format!("batch{batch}")];
        let samples = entry["samples"].as_u64().expect("samples");
        let evaluated = entry["evaluated"].as_u64().expect("evaluated");
        assert_eq!(
            evaluated + CALIBRATION_SAMPLES as u64,
            samples,
            "batch {batch}"
        );
        for key in [
            "confusion",
            "confusion_without_correction",
            "confusion_tracking_in_file_order",
        ] {
            let confusion = entry[key].as_array().expect("confusion");
            assert_eq!(confusion.len(), 6);
            let total: u64 = confusion
                .iter()
                .flat_map(|row| row.as_array().expect("a row"))
                .map(|cell| cell.as_u64().expect("a count"))
                .sum();
            assert_eq!(total, evaluated, "batch {batch} {key}");
        }
    }

    // The figures, asserted only on the full set of batches 2-5.
    if present == [2, 3, 4, 5] {
        let accuracy = |key: &str| number(&report["accuracy"][key], key);
        // Headline (calibration only) reached 0.799 (0.890, 0.778, 0.795,
        // 0.733); the target of 0.85 is not reached.
        assert!(accuracy("mean") >= 0.78, "mean {}", accuracy("mean"));
        assert!(accuracy("batch2") >= 0.87);
        assert!(accuracy("batch3") >= 0.76);
        assert!(accuracy("batch4") >= 0.77);
        assert!(accuracy("batch5") >= 0.71);
        // Reached 0.772.
        let balanced = number(&report["balanced_accuracy"]["mean"], "balanced mean");
        assert!(balanced >= 0.75, "balanced mean {balanced}");
        // The correction must pay: reached 0.739 without it.
        let baseline = number(
            &report["baseline_without_correction"]["accuracy"]["mean"],
            "baseline mean",
        );
        assert!(baseline <= 0.76, "baseline mean {baseline}");
        assert!(accuracy("mean") >= baseline + 0.04);
        // Tracking over shuffled orders reached 0.789 (worst seed 0.781).
        assert!(average >= 0.77, "tracking shuffled mean {average}");
        assert!(worst >= 0.76, "tracking shuffled worst {worst}");
        // Tracking in the class-grouped file order reached 0.864: optimistic.
        let in_file_order = number(
            &report["tracking_in_file_order"]["accuracy"]["mean"],
            "tracking in file order",
        );
        assert!(
            in_file_order >= 0.84,
            "tracking in file order {in_file_order}"
        );
    }
}

/// Permutes the scored rows (those after the calibration rows) of every test
/// batch with a fixed permutation that breaks the class runs: odd positions
/// first, then even, each reversed.
fn permute_scored_rows(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let (calibration, scored) = lines.split_at(CALIBRATION_SAMPLES.min(lines.len()));
    let odd = scored.iter().skip(1).step_by(2).rev();
    let even = scored.iter().step_by(2).rev();
    let mut out: Vec<&str> = calibration.to_vec();
    out.extend(odd.chain(even));
    out.join("\n") + "\n"
}

#[test]
fn gas_drift_headline_does_not_depend_on_the_order_of_scored_rows() {
    let Some(data) = data_dir() else { return };
    let present = present_test_batches(&data);
    if present.is_empty() {
        eprintln!("skipped: no test batch 2-5 present");
        return;
    }
    let copy =
        std::env::temp_dir().join(format!("scent-gas-drift-permuted-{}", std::process::id()));
    std::fs::create_dir_all(&copy).expect("temporary data dir");
    std::fs::copy(data.join("batch1.dat"), copy.join("batch1.dat")).expect("copy batch 1");
    for batch in &present {
        let name = format!("batch{batch}.dat");
        let text = std::fs::read_to_string(data.join(&name)).expect("read a test batch");
        std::fs::write(copy.join(&name), permute_scored_rows(&text)).expect("write a batch");
    }
    let original = report_of(&data);
    let permuted = report_of(&copy);
    std::fs::remove_dir_all(&copy).ok();

    for key in [
        "accuracy",
        "balanced_accuracy",
        "baseline_without_correction",
    ] {
        assert_eq!(original[key], permuted[key], "{key} depends on the order");
    }
    for batch in &present {
        let entry = format!("batch{batch}");
        assert_eq!(
            original["per_batch"][&entry]["confusion"], permuted["per_batch"][&entry]["confusion"],
            "{entry}"
        );
    }
    // Tracking does depend on the order: the file-order figure changes.
    if present == [2, 3, 4, 5] {
        assert_ne!(
            original["tracking_in_file_order"]["accuracy"],
            permuted["tracking_in_file_order"]["accuracy"],
            "tracking in file order should react to the order of the rows"
        );
    }
}

#[test]
fn gas_drift_rejects_arguments_that_break_the_protocol() {
    let Some(data) = data_dir() else { return };
    for (extra, message) in [
        (&["--calibration-samples", "11"][..], "at most 10"),
        (&["--train", "2", "--test", "1"][..], "forward in time"),
        (&["--test", "11"][..], "batch11.dat"),
    ] {
        let output = run_eval(&data, extra);
        assert!(!output.status.success(), "{extra:?} must fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{extra:?}: {stderr}");
    }
}
