//! `scent eval tep` on the Tennessee Eastman files in `../shared/data/tep`:
//! the streaming monitor (dynamic PCA, MEWMA, held-out limits) fitted on
//! `d00.dat` and run over each `dNN_te.dat` (fault after sample 160),
//! against static PCA T²/Q, both calibrated to the same 2 % false-alarm
//! budget on held-out blocks of `d00.dat`.
//!
//! Anchor figures (d01_te, d02_te): detection rate 0.99625 / 0.99 (mean
//! 0.993125), false-alarm rate 0.028 on the 320 normal rows, confirmed
//! delay 3 / 8 samples (mean 5.5); baseline 0.9975 / 0.98625 (mean
//! 0.991875), false-alarm rate 0.034, delay 2 / 11 (mean 6.5). Training
//! files d01–d21: mean detection rate 0.741 against 0.679.

mod support;

use serde_json::Value;

#[test]
fn tep_detection_within_the_false_alarm_budget() {
    let Some(data) = support::shared_data("tep_detection_within_the_false_alarm_budget", "tep")
    else {
        return;
    };
    let report = support::eval_report(["tep".as_ref(), "--data".as_ref(), data.as_os_str()]);
    assert_eq!(report["dataset"], "tep");
    let rate = |value: &Value| -> f64 {
        let v = value
            .as_f64()
            .unwrap_or_else(|| panic!("not a number: {value}"));
        assert!((0.0..=1.0).contains(&v), "{v}");
        v
    };

    let ours = &report["detection_rate"];
    let theirs = &report["baseline_pca"]["detection_rate"];
    let far = rate(&report["false_alarm_rate"]);
    let baseline_far = rate(&report["baseline_pca"]["false_alarm_rate"]);
    assert!(far <= 0.035, "false-alarm rate {far} (reached 0.028)");
    assert!(
        baseline_far <= 0.05,
        "baseline false-alarm rate {baseline_far}"
    );
    // The monitor beats the baseline at the same budget: more detections
    // with no more false alarms, and a shorter mean confirmed delay.
    assert!(far <= baseline_far, "{far} vs {baseline_far}");
    assert_eq!(
        report["alpha"], report["baseline_pca"]["alpha"],
        "same calibrated budget"
    );
    assert!(rate(&report["baseline_pca_99"]["false_alarm_rate"]) > 0.05);
    assert!(
        rate(&ours["d01"]) >= 0.99,
        "d01 {} (reached 0.99625)",
        ours["d01"]
    );
    assert!(
        rate(&ours["d02"]) >= 0.985,
        "d02 {} (reached 0.99)",
        ours["d02"]
    );
    assert!(
        rate(&ours["mean"]) >= 0.992,
        "mean {} (reached 0.993125)",
        ours["mean"]
    );
    assert!(
        rate(&ours["mean"]) > rate(&theirs["mean"]),
        "{} vs {}",
        ours["mean"],
        theirs["mean"]
    );
    assert!(rate(&ours["d02"]) > rate(&theirs["d02"]));

    let delay = |value: &Value| {
        value
            .as_u64()
            .unwrap_or_else(|| panic!("no delay: {value}"))
    };
    assert!(delay(&report["detection_delay"]["d01"]) <= 4);
    assert!(delay(&report["detection_delay"]["d02"]) <= 9);
    assert!(
        delay(&report["detection_delay"]["d02"])
            < delay(&report["baseline_pca"]["detection_delay"]["d02"])
    );
    let mean_delay = |value: &Value| value.as_f64().expect("every fault confirmed");
    assert!(
        mean_delay(&report["mean_detection_delay"])
            < mean_delay(&report["baseline_pca"]["mean_detection_delay"])
    );

    // The comparison holds at every budget of the sweep: the monitor
    // detects at least as much, and never at a higher false-alarm rate
    // than the ceiling.
    let sweep = report["budget_sweep"].as_array().unwrap();
    assert_eq!(sweep.len(), 4);
    for entry in sweep {
        let ours = &entry["monitor"];
        let theirs = &entry["baseline_pca"];
        assert!(rate(&ours["false_alarm_rate"]) <= 0.05, "{entry}");
        assert!(
            rate(&ours["mean_detection_rate"]) >= rate(&theirs["mean_detection_rate"]),
            "{entry}"
        );
        assert!(
            mean_delay(&ours["mean_detection_delay"])
                <= mean_delay(&theirs["mean_detection_delay"]),
            "{entry}"
        );
    }

    // Over all 21 faults of the training files the monitor detects more.
    let training = &report["training_files"];
    let ours = rate(&training["detection_rate"]["mean"]);
    let theirs = rate(&training["baseline_pca_detection_rate"]["mean"]);
    assert!(
        ours >= 0.73,
        "training-file detection {ours} (reached 0.741)"
    );
    assert!(ours > theirs + 0.04, "{ours} vs {theirs}");
    assert_eq!(
        training["detection_rate"].as_object().unwrap().len(),
        22,
        "21 faults and the mean"
    );
    let files = report["files"].as_object().unwrap();
    assert!(files.contains_key("d01_te.dat") && files.contains_key("d02_te.dat"));
}
