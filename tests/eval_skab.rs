//! `scent eval skab` on the SKAB files in `../shared/data/skab`: the
//! streaming multivariate monitor under the SKAB protocol (per file: fit on
//! the first 400 rows, test on the rest; point-wise F1, FAR, MAR on the
//! `anomaly` label, pooled over files), with its baselines.
//!
//! Anchor figures (25 anomaly files, subset of SKAB v0.9): monitor F1 0.818,
//! FAR 0.193, MAR 0.192; plain Hotelling T² F1 0.743 and PCA T² + Q 0.740
//! under the same protocol (published: 0.66, 0.76; best Conv-AE 0.78).

mod support;

use serde_json::Value;

#[test]
fn skab_f1_beats_the_published_leaderboard() {
    let Some(data) = support::shared_data("skab_f1_beats_the_published_leaderboard", "skab") else {
        return;
    };
    let report = support::eval_report(["skab".as_ref(), "--data".as_ref(), data.as_os_str()]);
    assert_eq!(report["dataset"], "skab");

    let metric = |value: &Value, key: &str| -> f64 {
        let v = value[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing"));
        assert!((0.0..=1.0).contains(&v), "{key} = {v}");
        v
    };
    let (f1, far, mar) = (
        metric(&report, "f1"),
        metric(&report, "far"),
        metric(&report, "mar"),
    );
    assert!(f1 >= 0.80, "F1 {f1} (reached 0.818)");
    assert!(far <= 0.21, "FAR {far} (reached 0.193)");
    assert!(mar <= 0.21, "MAR {mar} (reached 0.192)");

    for baseline in [
        "t2",
        "t2_q",
        "t2_q_monitored_channels",
        "monitor_all_channels",
    ] {
        let b = &report["baselines"][baseline];
        for key in ["f1", "far", "mar"] {
            metric(b, key);
        }
        assert!(metric(b, "f1") < f1, "{baseline} is not below the monitor");
    }
    let t2_q = metric(&report["baselines"]["t2_q"], "f1");
    assert!(
        (0.72..0.76).contains(&t2_q),
        "T² + Q F1 {t2_q} (reached 0.740)"
    );

    // Every anomaly file present has its counts, and they add up.
    let files = report["files"].as_object().unwrap();
    assert_eq!(files.len(), 25, "{:?}", files.keys());
    let mut tp = 0;
    for (name, counts) in files {
        let count = |key: &str| counts[key].as_u64().unwrap();
        assert_eq!(
            count("tp") + count("fp") + count("fn") + count("tn"),
            count("rows") - 400,
            "{name}"
        );
        tp += count("tp");
    }
    assert_eq!(tp, report["tp"].as_u64().unwrap());
    assert!(files.contains_key("valve1/0.csv") && files.contains_key("other/14.csv"));
    // Alarms name their channels.
    assert!(
        report["alarm_top_channels"]["Volume Flow RateRMS"]
            .as_u64()
            .unwrap()
            > 0
    );
}
