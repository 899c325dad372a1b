//! `scent eval sim`: the whole quality-control dataflow against the plant
//! simulator's ground truth, through the binary as an operator runs it.
//!
//! Anchor (`scent eval sim`, defaults: seeds 1-8, 1,000,000 readings each,
//! 1,704 batches, 88 contaminated): every contaminated batch held and its
//! line held before the batch end, contaminant named with precision 1.0,
//! detection delay mean 0.55 and max 1.07 cycles of 10 s, 1 false hold of
//! 1,492, no sensor fault rejected, maintenance orders for 264 of 264 faults
//! and drifts, 8 of 8 calibrations at a batch end. This test runs two other
//! seeds for about 5 hours of plant time each (debug builds are slow) and
//! asserts the targets: contaminated batches held >= 0.99, false
//! holds <= 1 %, sensor faults lead to maintenance and not to rejection,
//! drift leads to calibration proposals at a batch end.

mod support;

use std::process::Command;

#[test]
fn contamination_is_found_fast_and_clean_batches_are_released() {
    let report = support::eval_report(["sim", "--seeds", "21,22", "--readings", "400000"]);
    let number = |key: &str| {
        report[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing in {report}"))
    };
    assert_eq!(report["dataset"], "sim");
    assert!(
        number("contaminated_batches") >= 4.0,
        "the run must contain contaminations to score: {report}"
    );
    assert_eq!(number("undecided_batches"), 0.0, "{report}");
    assert!(number("recall") >= 0.99, "{report}");
    assert!(number("precision") >= 0.99, "{report}");
    assert!(number("identification_accuracy") >= 0.99, "{report}");
    let delay = &report["detection_delay_cycles"];
    assert!(delay["max"].as_f64().expect("max delay") <= 2.0, "{report}");
    assert!(number("false_hold_rate") <= 0.01, "{report}");
    assert!(number("decision_accuracy") >= 0.99, "{report}");
    assert!(number("hold_recall") >= 0.99, "{report}");
    assert!(number("line_hold_rate") >= 0.99, "{report}");
    // Sensor faults: maintenance orders, no rejection, nothing unexpected.
    assert!(number("fault_batches") >= 4.0, "{report}");
    assert_eq!(number("faults_rejected"), 0.0, "{report}");
    assert!(number("maintenance_recall") >= 0.99, "{report}");
    assert_eq!(number("unexpected_orders"), 0.0, "{report}");
    // Sensor drift: calibration proposed, at a batch end.
    let calibration = &report["calibration"];
    assert!(calibration["drifts_due"].as_f64() >= Some(1.0), "{report}");
    assert_eq!(calibration["recall"].as_f64(), Some(1.0), "{report}");
    assert_eq!(
        calibration["between_batches"].as_f64(),
        Some(1.0),
        "{report}"
    );
    let seeds = report["per_seed"].as_object().expect("per-seed reports");
    assert_eq!(seeds.len(), 2);
}

#[test]
fn an_empty_seed_list_is_a_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_scent"))
        .args(["eval", "sim", "--seeds", ""])
        .output()
        .expect("scent runs");
    assert!(!output.status.success());
}
