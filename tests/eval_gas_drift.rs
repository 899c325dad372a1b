//! `scent eval gas-drift` on the UCI gas-sensor-array drift batches in
//! `../shared/data/gas-sensor-array-drift`: classification accuracy across
//! sensor ageing with reference-gas calibration and forward-only drift
//! tracking, against the same classifier without correction.
//!
//! Anchor (batches 1-5 present, train 1, test 2-5, 10 calibration samples,
//! frozen `DriftCompensationConfig::default()`): accuracy 0.968 / 0.841 /
//! 0.762 / 0.888, mean 0.864; balanced accuracy mean 0.844; without
//! correction mean 0.739; calibration only mean 0.799. Published means over
//! batches 2-10: SVM without drift compensation 0.389, best methods
//! 0.83-0.92. Skipped when the data set is absent.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn run_eval(data: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_scent"))
        .args(["eval", "gas-drift", "--data"])
        .arg(data)
        .args(extra)
        .output()
        .expect("scent runs")
}

fn data_dir() -> Option<std::path::PathBuf> {
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

fn number(value: &Value, what: &str) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {value}"))
}

#[test]
fn gas_drift_accuracy_with_drift_correction() {
    let Some(data) = data_dir() else { return };
    let output = run_eval(&data, &[]);
    assert!(
        output.status.success(),
        "scent eval gas-drift failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(report["dataset"], "gas-drift");
    assert_eq!(report["train"], serde_json::json!([1]));
    assert_eq!(report["calibration_samples"], 10);

    let present: Vec<u64> = (2..=5)
        .filter(|b| data.join(format!("batch{b}.dat")).is_file())
        .collect();
    assert_eq!(report["test"], serde_json::json!(present));
    for metric in [
        &report["accuracy"],
        &report["balanced_accuracy"],
        &report["baseline_without_correction"]["accuracy"],
        &report["baseline_without_correction"]["balanced_accuracy"],
        &report["calibration_only"]["accuracy"],
    ] {
        let object = metric.as_object().expect("a metric object");
        assert_eq!(object.len(), present.len() + 1, "{metric}");
        for (key, value) in object {
            let value = number(value, key);
            assert!((0.0..=1.0).contains(&value), "{key} = {value}");
        }
    }
    for batch in &present {
        let entry = &report["per_batch"][format!("batch{batch}")];
        let samples = entry["samples"].as_u64().expect("samples");
        let evaluated = entry["evaluated"].as_u64().expect("evaluated");
        assert_eq!(evaluated + 10, samples, "batch {batch}");
        let confusion = entry["confusion"].as_array().expect("confusion");
        assert_eq!(confusion.len(), 6);
        let total: u64 = confusion
            .iter()
            .flat_map(|row| row.as_array().expect("a row"))
            .map(|cell| cell.as_u64().expect("a count"))
            .sum();
        assert_eq!(total, evaluated, "batch {batch}");
    }

    // The headline figures, asserted only on the full set of batches 2-5.
    if present == [2, 3, 4, 5] {
        let accuracy = |key: &str| number(&report["accuracy"][key], key);
        // Reached 0.864 (0.968, 0.841, 0.762, 0.888); target 0.85.
        assert!(accuracy("mean") >= 0.85, "mean {}", accuracy("mean"));
        assert!(accuracy("batch2") >= 0.95);
        assert!(accuracy("batch3") >= 0.82);
        assert!(accuracy("batch4") >= 0.74);
        assert!(accuracy("batch5") >= 0.87);
        // Reached 0.844.
        let balanced = number(&report["balanced_accuracy"]["mean"], "balanced mean");
        assert!(balanced >= 0.82, "balanced mean {balanced}");
        // The correction must pay: reached 0.739 without it.
        let baseline = number(
            &report["baseline_without_correction"]["accuracy"]["mean"],
            "baseline mean",
        );
        assert!(baseline <= 0.76, "baseline mean {baseline}");
        assert!(accuracy("mean") >= baseline + 0.10);
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
