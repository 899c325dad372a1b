//! `scent eval sim`: the whole quality-control dataflow against the plant
//! simulator's ground truth, through the binary as an operator runs it.
//!
//! Anchor (`scent eval sim`, defaults: seeds 1-8, 1,000,000 readings each,
//! 1,704 batches, 80 contaminated): recall 1.0, precision 1.0,
//! identification 1.0, detection delay mean 0.56 and max 1.07 cycles of
//! 10 s, no false holds, every batch decided as the truth expects. This test
//! runs two other seeds for about 5 hours of plant time each (debug builds
//! are slow) and asserts the targets: recall and precision >= 0.99,
//! delay <= 2 cycles, false holds <= 1 %.

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
