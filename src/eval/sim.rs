//! `scent eval sim`: the whole quality-control dataflow scored against the
//! plant simulator's ground truth.
//!
//! Each seed is a simulated plant (three lines of two 16-channel e-nose
//! arrays and five process sensors, 10-minute batches) run in-process
//! through the same dataflow as `scent run`, with the plant's contaminant
//! library. About one batch in four carries an event (contamination,
//! stuck, spike or dropout sensor, process drift; see `sim`). Measures,
//! pooled over seeds:
//!
//! * `recall`: contaminated batches whose decision names a contaminant
//!   (a `contaminant` reason), over all contaminated batches;
//! * `precision`: batches whose decision names a contaminant that were
//!   contaminated, over all batches naming one;
//! * `identification_accuracy`: detected contaminations that name the
//!   injected contaminant (the library holds the simulator's own
//!   signatures, as a lab would measure them, so this checks the matching,
//!   not a lab's accuracy);
//! * `detection_delay_cycles`: from the contamination's onset to the end of
//!   the first cycle flagged on the line's arrays (T², SPE, similarity or
//!   contaminant), in cycles of `quality_control.cycles.cycle_ms`; mean and
//!   max;
//! * `false_holds`: batches the ground truth expects released (clean, or a
//!   process drift too gentle to matter) that were held; `false_hold_rate`
//!   over those batches; `decision_accuracy` over all batches.
//!
//! A ratio whose denominator is zero (no contaminated batch in the run) is
//! `null`.

use super::EvalError;
use crate::demo::{engine_config, plant, run_in_process, DemoOptions};
use crate::sim::EventKind;
use scent_operators::model::{Action, AnomalyRule, Decision, SensorKind};
use serde_json::json;
use std::collections::BTreeMap;

/// Arguments of `scent eval sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Seeds of the simulated plants, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4,5,6,7,8")]
    pub seeds: Vec<u64>,
    /// Valid readings per seed (1,000,000 is about 13 hours of plant time).
    #[arg(long, default_value_t = 1_000_000)]
    pub readings: u64,
    /// Production lines.
    #[arg(long, default_value_t = 3)]
    pub lines: usize,
    /// Timely worker threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
}

/// Tallies over one or more runs.
#[derive(Debug, Default)]
struct Tally {
    batches: u64,
    decided_as_expected: u64,
    contaminated: u64,
    detected: u64,
    identified: u64,
    contaminant_calls: u64,
    true_calls: u64,
    expected_release: u64,
    false_holds: u64,
    undecided: u64,
    delays: Vec<f64>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.batches += other.batches;
        self.decided_as_expected += other.decided_as_expected;
        self.contaminated += other.contaminated;
        self.detected += other.detected;
        self.identified += other.identified;
        self.contaminant_calls += other.contaminant_calls;
        self.true_calls += other.true_calls;
        self.expected_release += other.expected_release;
        self.false_holds += other.false_holds;
        self.undecided += other.undecided;
        self.delays.extend(other.delays);
    }

    fn report(&self) -> serde_json::Value {
        // A ratio with nothing to count is undefined (null), not perfect.
        let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
        let mean_delay = if self.delays.is_empty() {
            0.0
        } else {
            self.delays.iter().sum::<f64>() / self.delays.len() as f64
        };
        let max_delay = self.delays.iter().copied().fold(0.0, f64::max);
        json!({
            "recall": ratio(self.detected, self.contaminated),
            "precision": ratio(self.true_calls, self.contaminant_calls),
            "identification_accuracy": ratio(self.identified, self.detected),
            "detection_delay_cycles": {"mean": mean_delay, "max": max_delay},
            "false_holds": self.false_holds,
            "false_hold_rate": ratio(self.false_holds, self.expected_release),
            "decision_accuracy": ratio(self.decided_as_expected, self.batches),
            "batches": self.batches,
            "contaminated_batches": self.contaminated,
            "undecided_batches": self.undecided,
        })
    }
}

fn is_fingerprint_rule(rule: AnomalyRule) -> bool {
    matches!(
        rule,
        AnomalyRule::HotellingT2
            | AnomalyRule::Spe
            | AnomalyRule::Similarity
            | AnomalyRule::Contaminant
    )
}

/// Runs every seed and returns the JSON report.
pub fn run(args: &SimArgs) -> Result<serde_json::Value, EvalError> {
    if args.seeds.is_empty() {
        return Err(EvalError::Usage("--seeds needs at least one seed".into()));
    }
    let mut total = Tally::default();
    let mut per_seed = serde_json::Map::new();
    let mut cycle_ms = 0;
    for &seed in &args.seeds {
        let options = DemoOptions {
            seed,
            readings: args.readings,
            lines: args.lines,
            workers: args.workers,
            speed: 0.0,
            malformed: 0,
            out: None,
            kafka: None,
            quiet: true,
        };
        let failed = |e: Box<dyn std::error::Error + Send + Sync>| {
            EvalError::Usage(format!("simulated run of seed {seed} failed: {e}"))
        };
        let plant = plant(&options).map_err(failed)?;
        cycle_ms = engine_config(&options, &plant)
            .map_err(failed)?
            .quality_control
            .cycles
            .cycle_ms;
        let report = run_in_process(&options).map_err(failed)?;
        let tally = score(&report.output.actions, &report.truth, cycle_ms);
        per_seed.insert(seed.to_string(), tally.report());
        total.add(tally);
    }
    let mut report = total.report();
    let object = report.as_object_mut().expect("the report is an object");
    object.insert("dataset".into(), json!("sim"));
    object.insert("seeds".into(), json!(args.seeds));
    object.insert("readings_per_seed".into(), json!(args.readings));
    object.insert("cycle_ms".into(), json!(cycle_ms));
    object.insert("per_seed".into(), serde_json::Value::Object(per_seed));
    Ok(report)
}

/// Scores one run's actions (the latest per batch counts) against its truth.
fn score(actions: &[(u64, Action)], truth: &crate::sim::GroundTruth, cycle_ms: i64) -> Tally {
    let mut latest: BTreeMap<&str, &Action> = BTreeMap::new();
    for (_, action) in actions {
        if let Some(batch) = action.batch.as_deref() {
            latest.insert(batch, action);
        }
    }
    let events: BTreeMap<&str, &crate::sim::LabelledEvent> =
        truth.events.iter().map(|e| (e.id.as_str(), e)).collect();
    let mut tally = Tally::default();
    for batch in &truth.batches {
        tally.batches += 1;
        let contamination = batch
            .events
            .iter()
            .filter_map(|id| events.get(id.as_str()))
            .find(|e| e.kind == EventKind::Contamination);
        let Some(action) = latest.get(batch.batch.as_str()) else {
            tally.undecided += 1;
            tally.contaminated += u64::from(contamination.is_some());
            continue;
        };
        if action.decision == Some(batch.expected_decision) {
            tally.decided_as_expected += 1;
        }
        if batch.expected_decision == Decision::Release {
            tally.expected_release += 1;
            if action.decision == Some(Decision::Hold) {
                tally.false_holds += 1;
            }
        }
        let named = action
            .reasons
            .iter()
            .find(|r| r.rule == AnomalyRule::Contaminant);
        if named.is_some() {
            tally.contaminant_calls += 1;
            tally.true_calls += u64::from(contamination.is_some());
        }
        let Some(event) = contamination else {
            continue;
        };
        tally.contaminated += 1;
        let Some(named) = named else {
            continue;
        };
        tally.detected += 1;
        if named.contaminant.is_some() && named.contaminant == event.contaminant {
            tally.identified += 1;
        }
        let first = action
            .reasons
            .iter()
            .filter(|r| r.kind == SensorKind::Enose && is_fingerprint_rule(r.rule))
            .map(|r| r.first_ts_ms)
            .min();
        if let Some(first) = first {
            tally
                .delays
                .push((first - event.start_ms).max(0) as f64 / cycle_ms as f64);
        }
    }
    tally
}
