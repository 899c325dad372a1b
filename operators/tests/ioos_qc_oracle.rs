//! Oracle test: the QC flags of `scent_operators::qc_flags` against the
//! `ioos_qc` Python package (3.0.0), the reference implementation of the
//! QARTOD tests.
//!
//! The test generates seeded random series of several shapes (noise, level
//! steps, spikes, flat runs, time gaps, missing values, irregular sampling,
//! all of them mixed), runs them through [`SensorQc`] and, via
//! `tests/oracle/ioos_qc_flags.py`, through ioos_qc's `gross_range_test`,
//! `spike_test` (both methods), `rate_of_change_test`, `flat_line_test`,
//! `qartod_compare`, `time_gap_test` and `data_reception_test`. Every flag
//! of every value must agree, except for the deliberate differences listed
//! in the module documentation of `qc_flags`, each of which is asserted
//! here precisely (where and what it is) and counted in the summary:
//!
//! * rate of change, first value and value after a missing one: we say
//!   not evaluated (2), ioos_qc says pass (1);
//! * flat line on irregular series: differences only where our event-time
//!   window and ioos_qc's count window (`int(threshold) / median Δt`
//!   readings) hold different readings;
//! * time gap, first value: we say not evaluated, ioos_qc copies the
//!   second value's flag;
//! * the aggregate differs only where one of the four value tests does.
//!
//! * rate of change on the `subsecond` series: differences only across
//!   steps that are not whole seconds, which ioos_qc truncates (a 0.5 s
//!   step becomes 0 s, and its masked division compares `|Δx|` itself).
//!
//! All other series have whole-second timestamps.
//!
//! The Python interpreter comes from `SCENT_IOOS_QC_PYTHON`
//! (`export SCENT_IOOS_QC_PYTHON=$(deploy/dev/ioos-qc.sh)`). Without it the
//! test is skipped, except under CI (`CI` set), where it fails.

use scent_operators::qc_flags::{
    ChannelQc, FlatLineConfig, GrossRangeConfig, KindQcConfig, QcFlag, QcInput, QcResult,
    RateOfChangeConfig, SensorQc, Span, SpikeConfig, SpikeMethod, TimeGapConfig,
    TimestampSkewConfig,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// SplitMix64 (Steele, Lea, Flood 2014): a small, seedable generator.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }

    /// Uniform integer in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u = 1.0 - self.uniform();
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }
}

const SHAPES: [&str; 9] = [
    "noise",
    "steps",
    "spikes",
    "flat",
    "gaps",
    "missing",
    "irregular",
    "mixed",
    "subsecond",
];

/// Start of every series: 2026-11-24T00:00:00Z.
const START_MS: i64 = 1_795_478_400_000;

struct Series {
    name: String,
    t_ms: Vec<i64>,
    x: Vec<f64>,
    config: KindQcConfig,
    /// Reference time for the skew test (ioos_qc's `from_time`).
    reference_ms: i64,
}

fn generate(shape: &str, seed: u64, method: SpikeMethod) -> Series {
    let mut rng = SplitMix64(seed);
    let len = 150 + rng.below(250) as usize;
    let level = 50.0 + 20.0 * rng.normal();
    let noise = 0.2 + rng.uniform();
    let mut t_ms = Vec::with_capacity(len);
    let mut x = Vec::with_capacity(len);
    let mut t = START_MS;
    let mut current = level;
    let mut flat_left = 0_usize;
    let irregular = matches!(shape, "irregular" | "mixed");
    let gaps = matches!(shape, "gaps" | "mixed");
    for index in 0..len {
        if index > 0 {
            let dt_ms = if shape == "subsecond" {
                500 * (1 + rng.below(3))
            } else if irregular {
                1_000 * (1 + rng.below(3))
            } else {
                1_000
            };
            let dt_ms = if gaps && rng.chance(0.03) {
                dt_ms + 1_000 * (20 + rng.below(40))
            } else {
                dt_ms
            };
            t += dt_ms as i64;
        }
        if matches!(shape, "steps" | "mixed") && rng.chance(0.03) {
            current = level + 30.0 * rng.normal();
        }
        let mut value = current + noise * rng.normal();
        if matches!(shape, "flat" | "steps" | "mixed" | "missing") {
            if flat_left == 0 && rng.chance(0.04) {
                flat_left = 3 + rng.below(25) as usize;
            }
            if flat_left > 0 {
                flat_left -= 1;
                // Stuck exactly, or stuck with a jitter below the tolerance.
                value = if flat_left.is_multiple_of(2) || shape != "mixed" {
                    current
                } else {
                    current + 0.001 * rng.normal()
                };
            }
        }
        if matches!(shape, "spikes" | "mixed") && rng.chance(0.05) {
            value += (2.0 + 12.0 * rng.uniform()) * if rng.chance(0.5) { 1.0 } else { -1.0 };
        }
        if matches!(shape, "missing" | "mixed") && rng.chance(0.06) {
            value = f64::NAN;
        }
        if shape == "missing" && rng.chance(0.01) {
            // A run of missing values.
            for _ in 0..rng.below(6) {
                t_ms.push(t);
                x.push(f64::NAN);
                t += 1_000;
            }
        }
        t_ms.push(t);
        x.push(value);
    }
    let config = KindQcConfig {
        gross_range: Some(GrossRangeConfig {
            fail_span: Span::new(level - 40.0, level + 40.0),
            suspect_span: Some(Span::new(level - 25.0, level + 25.0)),
        }),
        spike: Some(SpikeConfig {
            suspect_threshold: Some(1.5 + rng.uniform()),
            fail_threshold: Some(5.0 + 3.0 * rng.uniform()),
            method,
        }),
        rate_of_change: Some(RateOfChangeConfig {
            suspect_threshold: 2.0 + rng.uniform(),
            fail_threshold: if rng.chance(0.8) {
                Some(8.0 + 4.0 * rng.uniform())
            } else {
                None
            },
        }),
        flat_line: Some(FlatLineConfig {
            tolerance: 0.01,
            suspect_after_ms: (3 + rng.below(4) as i64) * 1_000,
            fail_after_ms: (8 + rng.below(8) as i64) * 1_000,
        }),
        time_gap: Some(TimeGapConfig {
            suspect_after_ms: None,
            fail_after_ms: 30_000,
        }),
        timestamp_skew: Some(TimestampSkewConfig {
            suspect_lag_ms: 3_600_000,
            fail_lag_ms: 3_600_000,
            suspect_lead_ms: i64::MAX / 4,
            fail_lead_ms: i64::MAX / 4,
        }),
    };
    // The reference lies an hour after a random point of the series, so
    // the older part of the series lags by more than the limit.
    let reference_ms = t_ms[rng.below(len as u64) as usize] + 3_600_000;
    Series {
        name: format!("{shape}-{seed}-{method:?}").to_lowercase(),
        t_ms,
        x,
        config,
        reference_ms,
    }
}

fn ioos_request(series: &[Series]) -> Value {
    let entries: Vec<Value> = series
        .iter()
        .map(|s| {
            let gross = s.config.gross_range.expect("gross range");
            let spike = s.config.spike.expect("spike");
            let rate = s.config.rate_of_change.expect("rate of change");
            let flat = s.config.flat_line.expect("flat line");
            let span = |span: Span| json!([span.min, span.max]);
            json!({
                "name": s.name,
                "t_ms": s.t_ms,
                "x": s.x.iter().map(|v| if v.is_nan() { None } else { Some(*v) }).collect::<Vec<_>>(),
                "gross_range": {
                    "fail_span": span(gross.fail_span),
                    "suspect_span": gross.suspect_span.map(span),
                },
                "spike": {
                    "suspect_threshold": spike.suspect_threshold,
                    "fail_threshold": spike.fail_threshold,
                    "method": match spike.method {
                        SpikeMethod::Average => "average",
                        SpikeMethod::Differential => "differential",
                    },
                },
                "rate_of_change": {
                    "threshold": rate.suspect_threshold,
                    "fail_threshold": rate.fail_threshold,
                },
                "flat_line": {
                    "suspect_threshold_s": flat.suspect_after_ms / 1_000,
                    "fail_threshold_s": flat.fail_after_ms / 1_000,
                    "tolerance": flat.tolerance,
                },
                "time_gap": {"fail_span_ms": s.config.time_gap.expect("time gap").fail_after_ms},
                "data_reception": {
                    "fail_span_ms": s.config.timestamp_skew.expect("skew").fail_lag_ms,
                    "from_ms": s.reference_ms,
                },
            })
        })
        .collect();
    json!({ "series": entries })
}

fn ours(series: &Series) -> Vec<QcResult> {
    let mut qc = SensorQc::new();
    let mut results = Vec::with_capacity(series.x.len());
    for (index, (&ts_ms, &value)) in series.t_ms.iter().zip(&series.x).enumerate() {
        let values = [value];
        let input = QcInput {
            ts_ms,
            seq: index as u64,
            reference_ts_ms: Some(series.reference_ms),
            values: &values,
        };
        results.extend(qc.observe(&input, &series.config));
    }
    results.extend(qc.finish(&series.config));
    assert_eq!(
        results.len(),
        series.x.len(),
        "{}: one result per reading",
        series.name
    );
    results
}

fn codes(value: &Value, key: &str) -> Vec<QcFlag> {
    value[key]
        .as_array()
        .unwrap_or_else(|| panic!("ioos_qc output lacks {key}"))
        .iter()
        .map(|code| {
            let code = code.as_u64().expect("a flag code") as u8;
            QcFlag::from_code(code).unwrap_or_else(|| panic!("unknown flag {code}"))
        })
        .collect()
}

/// Explained differences per test, for the summary.
#[derive(Default)]
struct Tally {
    compared: usize,
    explained: BTreeMap<&'static str, usize>,
}

impl Tally {
    fn explain(&mut self, why: &'static str) {
        *self.explained.entry(why).or_default() += 1;
    }
}

/// Index of the last reading at or before `t[n] - threshold_ms`.
fn time_anchor(t_ms: &[i64], n: usize, threshold_ms: i64) -> Option<usize> {
    (0..=n).rev().find(|&k| t_ms[k] <= t_ms[n] - threshold_ms)
}

/// Start of ioos_qc's window of `count + 1` readings ending at `n`.
fn count_anchor(n: usize, count: usize) -> Option<usize> {
    n.checked_sub(count)
}

fn compare(series: &Series, ours: &[QcResult], theirs: &Value, tally: &mut Tally) {
    let name = &series.name;
    let x = &series.x;
    let regular = series.t_ms.windows(2).all(|w| w[1] - w[0] == 1_000);
    let gross = codes(theirs, "gross_range");
    let spike = codes(theirs, "spike");
    let rate = codes(theirs, "rate_of_change");
    let flat = codes(theirs, "flat_line");
    let aggregate = codes(theirs, "aggregate");
    let gap = codes(theirs, "time_gap");
    let reception = codes(theirs, "data_reception");
    let counts = &theirs["flat_line_counts"];
    let suspect_count = counts["suspect"].as_u64().expect("suspect count") as usize;
    let fail_count = counts["fail"].as_u64().expect("fail count") as usize;
    let flat_config = series.config.flat_line.expect("flat line");
    for n in 0..x.len() {
        tally.compared += 1;
        let here = |test: &str, mine: QcFlag, theirs: QcFlag| {
            format!(
                "{name}[{n}] {test}: ours {} ioos_qc {} (x = {:?}, previous {:?}, next {:?}, t = {})",
                mine.code(),
                theirs.code(),
                x[n],
                n.checked_sub(1).map(|p| x[p]),
                x.get(n + 1),
                series.t_ms[n] - START_MS
            )
        };
        let channel = &ours[n].channels[0];
        let mut differs = false;

        assert_eq!(
            channel.gross_range,
            gross[n],
            "{}",
            here("gross_range", channel.gross_range, gross[n])
        );
        assert_eq!(
            channel.spike,
            spike[n],
            "{}",
            here("spike", channel.spike, spike[n])
        );

        if channel.rate_of_change != rate[n] {
            differs = true;
            let after_missing = n > 0 && x[n - 1].is_nan() && !x[n].is_nan();
            let not_evaluated_here =
                (channel.rate_of_change, rate[n]) == (QcFlag::NotEvaluated, QcFlag::Pass);
            let fractional_step = n > 0 && (series.t_ms[n] - series.t_ms[n - 1]) % 1_000 != 0;
            let why = if not_evaluated_here && n == 0 {
                "rate_of_change: first value (ours 2, ioos_qc 1)"
            } else if not_evaluated_here && after_missing {
                "rate_of_change: value after a missing one (ours 2, ioos_qc 1)"
            } else if fractional_step && !after_missing {
                "rate_of_change: step of a fractional second (ioos_qc truncates it)"
            } else {
                panic!(
                    "{}",
                    here("rate_of_change", channel.rate_of_change, rate[n])
                );
            };
            tally.explain(why);
        }

        if channel.flat_line != flat[n] {
            differs = true;
            let windows_differ = [
                (flat_config.suspect_after_ms, suspect_count),
                (flat_config.fail_after_ms, fail_count),
            ]
            .into_iter()
            .any(|(threshold_ms, count)| {
                time_anchor(&series.t_ms, n, threshold_ms) != count_anchor(n, count)
            });
            assert!(
                !regular && windows_differ,
                "{} (window counts {suspect_count}/{fail_count}, regular: {regular})",
                here("flat_line", channel.flat_line, flat[n])
            );
            tally.explain("flat_line: irregular series, event-time window != count window");
        }

        if channel.aggregate != aggregate[n] {
            assert!(
                differs,
                "{}",
                here("aggregate", channel.aggregate, aggregate[n])
            );
            tally.explain("aggregate: follows a component difference");
        }

        let mine = ours[n].time_gap;
        if mine != gap[n] {
            assert!(
                n == 0 && mine == QcFlag::NotEvaluated && gap[0] == gap[1],
                "{}",
                here("time_gap", mine, gap[n])
            );
            tally.explain("time_gap: first value (ours 2, ioos_qc copies the second)");
        }

        let mine = ours[n].timestamp_skew;
        assert_eq!(
            mine,
            reception[n],
            "{}",
            here("timestamp_skew/data_reception", mine, reception[n])
        );
    }
}

/// Picks one test's flag of a channel.
type FlagOf = fn(&ChannelQc) -> QcFlag;

fn python() -> Option<PathBuf> {
    match std::env::var_os("SCENT_IOOS_QC_PYTHON") {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ if std::env::var_os("CI").is_some() => panic!(
            "SCENT_IOOS_QC_PYTHON is not set: run `export SCENT_IOOS_QC_PYTHON=$(deploy/dev/ioos-qc.sh)` \
             before the tests (CI must run the ioos_qc oracle)"
        ),
        _ => None,
    }
}

#[test]
fn qc_flags_agree_with_ioos_qc() {
    let Some(python) = python() else {
        eprintln!(
            "skipped: SCENT_IOOS_QC_PYTHON is not set; run \
             `export SCENT_IOOS_QC_PYTHON=$(deploy/dev/ioos-qc.sh)` to compare with ioos_qc"
        );
        return;
    };
    let mut series = Vec::new();
    for (shape_index, shape) in SHAPES.iter().enumerate() {
        for seed in 0..4_u64 {
            let seed = 0x5ce7_0000 + 16 * shape_index as u64 + seed;
            for method in [SpikeMethod::Average, SpikeMethod::Differential] {
                series.push(generate(shape, seed, method));
            }
        }
    }

    let dir = std::env::temp_dir().join(format!("scent-ioos-qc-oracle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let input = dir.join("series.json");
    let output = dir.join("flags.json");
    std::fs::write(
        &input,
        serde_json::to_vec(&ioos_request(&series)).expect("json"),
    )
    .expect("write the series");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/ioos_qc_flags.py");
    let status = Command::new(&python)
        .arg(&script)
        .arg(&input)
        .arg(&output)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        status.success(),
        "{} {} failed: {status}",
        python.display(),
        script.display()
    );
    let theirs: Value = serde_json::from_slice(&std::fs::read(&output).expect("read the flags"))
        .expect("flags json");
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(
        theirs["ioos_qc_version"], "3.0.0",
        "the oracle is pinned to ioos_qc 3.0.0"
    );

    let mut tally = Tally::default();
    let results = theirs["series"].as_array().expect("series");
    assert_eq!(results.len(), series.len());
    for (series, theirs) in series.iter().zip(results) {
        assert_eq!(theirs["name"], series.name.as_str());
        compare(series, &ours(series), theirs, &mut tally);
    }

    eprintln!(
        "ioos_qc oracle: {} series, {} readings compared, 8 tests each",
        series.len(),
        tally.compared
    );
    for (why, count) in &tally.explained {
        eprintln!("  explained difference: {why}: {count}");
    }
    // The shapes must exercise what they claim: flags other than pass occur.
    let all: Vec<QcResult> = series.iter().flat_map(ours).collect();
    let tests: [(&str, FlagOf); 4] = [
        ("gross_range", |c| c.gross_range),
        ("spike", |c| c.spike),
        ("rate_of_change", |c| c.rate_of_change),
        ("flat_line", |c| c.flat_line),
    ];
    for (test, pick) in tests {
        for flag in [QcFlag::Suspect, QcFlag::Fail, QcFlag::Missing] {
            assert!(
                all.iter().any(|r| pick(&r.channels[0]) == flag),
                "no {test} flag {flag} in the generated series"
            );
        }
    }
    assert!(all.iter().any(|r| r.time_gap == QcFlag::Fail));
    assert!(all.iter().any(|r| r.timestamp_skew == QcFlag::Fail));
    assert!(tally
        .explained
        .keys()
        .any(|why| why.starts_with("flat_line")));
    assert!(tally.explained.keys().any(|why| why.contains("fractional")));
}
