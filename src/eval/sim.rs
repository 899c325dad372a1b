//! `scent eval sim`: the whole quality-control dataflow, agents included,
//! scored against the plant simulator's ground truth.
//!
//! Each seed is a simulated plant (three lines of two 16-channel e-nose
//! arrays and five process sensors, 10-minute batches) run in-process
//! through the same dataflow as `scent run`, with the plant's contaminant
//! library. About one batch in four carries an event (contamination,
//! stuck, spike or dropout sensor, process drift; see `sim`), and one
//! e-nose array per run drifts fast enough to need calibration. The final
//! (sealed) decision of each batch counts. Measures, pooled over seeds:
//!
//! * `hold_recall`: contaminated batches held (or rejected), over all
//!   contaminated batches; `false_hold_rate`: batches the truth expects
//!   released that were held, over those batches; `decision_accuracy` over
//!   all batches;
//! * `recall`, `precision`, `identification_accuracy`: contaminated batches
//!   whose decision names a contaminant (a `contaminant` reason), over all
//!   contaminated batches; batches naming one that were contaminated; named
//!   contaminants that are the injected one (the library holds the
//!   simulator's own signatures, as a lab would measure them, so this checks
//!   the matching, not a lab's accuracy);
//! * `detection_delay_cycles`: from the contamination's onset to the end of
//!   the first cycle flagged on the line's arrays, in cycles; mean and max;
//! * `line_holds`: contaminated batches escalated with a `hold_line` before
//!   their end, and how long before (`line_hold_lead_s`, mean and min);
//! * `faults_rejected`: batches with a sensor fault whose decision is
//!   `reject` (the target is none: faults lead to maintenance; with the
//!   default policy nothing is ever rejected, so `fault_batches_held` says
//!   more: fault batches held, each expected by the truth only where a
//!   measurement was lost without a sibling to cover it);
//!   `maintenance_recall`: expected maintenance (one per sensor fault, per
//!   drift due within the run) with a matching order for the sensor
//!   (`repair`/`replace` for stuck and dropout, `inspect` for spikes,
//!   `calibrate`/`replace` for drift); `unexpected_orders`: orders for a
//!   sensor with no fault or drift;
//! * `calibration`: drift calibrations proposed, their delay after the
//!   truth's due time (hours), and the share whose window opens at a batch
//!   end rather than during a batch (the agent places every non-urgent order
//!   there, so this guards against urgent calibrations; whether the next
//!   batch leaves room for the work is the MES's to plan).
//!
//! A ratio whose denominator is zero is `null`.

use super::EvalError;
use crate::demo::{engine_config, plant, run_in_process, DemoOptions, DemoReport};
use crate::sim::{EventKind, MaintenanceKind};
use scent_operators::model::{
    Action, ActionKind, AnomalyRule, Decision, MaintenanceOrder, MaintenanceWork, SensorKind,
};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

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
    held_contaminated: u64,
    detected: u64,
    identified: u64,
    contaminant_calls: u64,
    true_calls: u64,
    expected_release: u64,
    false_holds: u64,
    undecided: u64,
    unsealed: u64,
    delays: Vec<f64>,
    escalated: u64,
    hold_leads_s: Vec<f64>,
    fault_batches: u64,
    faults_rejected: u64,
    fault_batches_held: u64,
    expected_maintenance: u64,
    maintenance_found: u64,
    unexpected_orders: u64,
    drifts_due: u64,
    calibrations: u64,
    calibration_delays_h: Vec<f64>,
    calibrations_between_batches: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.batches += other.batches;
        self.decided_as_expected += other.decided_as_expected;
        self.contaminated += other.contaminated;
        self.held_contaminated += other.held_contaminated;
        self.detected += other.detected;
        self.identified += other.identified;
        self.contaminant_calls += other.contaminant_calls;
        self.true_calls += other.true_calls;
        self.expected_release += other.expected_release;
        self.false_holds += other.false_holds;
        self.undecided += other.undecided;
        self.unsealed += other.unsealed;
        self.delays.extend(other.delays);
        self.escalated += other.escalated;
        self.hold_leads_s.extend(other.hold_leads_s);
        self.fault_batches += other.fault_batches;
        self.faults_rejected += other.faults_rejected;
        self.fault_batches_held += other.fault_batches_held;
        self.expected_maintenance += other.expected_maintenance;
        self.maintenance_found += other.maintenance_found;
        self.unexpected_orders += other.unexpected_orders;
        self.drifts_due += other.drifts_due;
        self.calibrations += other.calibrations;
        self.calibration_delays_h.extend(other.calibration_delays_h);
        self.calibrations_between_batches += other.calibrations_between_batches;
    }

    fn report(&self) -> serde_json::Value {
        // A ratio with nothing to count is undefined (null), not perfect.
        let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
        let mean = |values: &[f64]| {
            (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
        };
        let max = |values: &[f64]| values.iter().copied().reduce(f64::max);
        let min = |values: &[f64]| values.iter().copied().reduce(f64::min);
        json!({
            "hold_recall": ratio(self.held_contaminated, self.contaminated),
            "false_hold_rate": ratio(self.false_holds, self.expected_release),
            "false_holds": self.false_holds,
            "decision_accuracy": ratio(self.decided_as_expected, self.batches),
            "recall": ratio(self.detected, self.contaminated),
            "precision": ratio(self.true_calls, self.contaminant_calls),
            "identification_accuracy": ratio(self.identified, self.detected),
            "detection_delay_cycles": {
                "mean": mean(&self.delays).unwrap_or(0.0),
                "max": max(&self.delays).unwrap_or(0.0),
            },
            "line_holds": self.escalated,
            "line_hold_rate": ratio(self.escalated, self.contaminated),
            "line_hold_lead_s": {"mean": mean(&self.hold_leads_s), "min": min(&self.hold_leads_s)},
            "fault_batches": self.fault_batches,
            "faults_rejected": self.faults_rejected,
            "fault_batches_held": self.fault_batches_held,
            "expected_maintenance": self.expected_maintenance,
            "maintenance_recall": ratio(self.maintenance_found, self.expected_maintenance),
            "unexpected_orders": self.unexpected_orders,
            "calibration": {
                "drifts_due": self.drifts_due,
                "proposed": self.calibrations,
                "recall": ratio(self.calibrations, self.drifts_due),
                "delay_h": {"mean": mean(&self.calibration_delays_h), "max": max(&self.calibration_delays_h)},
                "between_batches": ratio(self.calibrations_between_batches, self.calibrations),
            },
            "batches": self.batches,
            "contaminated_batches": self.contaminated,
            "undecided_batches": self.undecided,
            "unsealed_batches": self.unsealed,
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
        let tally = score(&report, cycle_ms);
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

/// Scores one run's final actions against its truth.
fn score(report: &DemoReport, cycle_ms: i64) -> Tally {
    let truth = &report.truth;
    let decisions = report.decisions();
    let finals = report.final_actions();
    let events: BTreeMap<&str, &crate::sim::LabelledEvent> =
        truth.events.iter().map(|e| (e.id.as_str(), e)).collect();
    let line_holds: BTreeMap<&str, &Action> = finals
        .iter()
        .filter(|a| a.kind == ActionKind::HoldLine)
        .filter_map(|a| a.batch.as_deref().map(|b| (b, *a)))
        .collect();
    let batch_ends: BTreeSet<(&str, i64)> = truth
        .batches
        .iter()
        .map(|b| (b.line.as_str(), b.end_ms))
        .collect();
    let mut tally = Tally::default();
    for batch in &truth.batches {
        tally.batches += 1;
        let batch_events: Vec<&&crate::sim::LabelledEvent> = batch
            .events
            .iter()
            .filter_map(|id| events.get(id.as_str()))
            .collect();
        let contamination = batch_events
            .iter()
            .find(|e| e.kind == EventKind::Contamination);
        let faulty = batch_events
            .iter()
            .any(|e| e.kind == EventKind::SensorFault);
        tally.fault_batches += u64::from(faulty);
        let Some(action) = decisions.get(batch.batch.as_str()) else {
            tally.undecided += 1;
            tally.contaminated += u64::from(contamination.is_some());
            continue;
        };
        tally.unsealed += u64::from(!action.sealed);
        let held = matches!(action.decision, Some(Decision::Hold | Decision::Reject));
        tally.faults_rejected += u64::from(faulty && action.decision == Some(Decision::Reject));
        tally.fault_batches_held += u64::from(faulty && held);
        if action.decision == Some(batch.expected_decision) {
            tally.decided_as_expected += 1;
        }
        if batch.expected_decision == Decision::Release {
            tally.expected_release += 1;
            tally.false_holds += u64::from(held);
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
        tally.held_contaminated += u64::from(held);
        if let Some(hold) = line_holds.get(batch.batch.as_str()) {
            if hold.ts_ms < batch.end_ms {
                tally.escalated += 1;
                tally
                    .hold_leads_s
                    .push((batch.end_ms - hold.ts_ms) as f64 / 1_000.0);
            }
        }
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
    // Maintenance: every expected need due within the run, matched by an
    // order of fitting work for its sensor, at or after the need arose.
    let orders: Vec<(&Action, &MaintenanceOrder)> = finals
        .iter()
        .filter_map(|a| a.maintenance.as_ref().map(|order| (*a, order)))
        .collect();
    let run_end = truth.batches.iter().map(|b| b.end_ms).max().unwrap_or(0);
    let fits = |kind: MaintenanceKind, work: MaintenanceWork| match kind {
        MaintenanceKind::Repair => {
            matches!(work, MaintenanceWork::Repair | MaintenanceWork::Replace)
        }
        MaintenanceKind::Inspect => work == MaintenanceWork::Inspect,
        MaintenanceKind::Calibrate => {
            matches!(work, MaintenanceWork::Calibrate | MaintenanceWork::Replace)
        }
    };
    for need in &truth.maintenance {
        let started = events
            .get(need.event.as_str())
            .map_or(need.due_ms, |e| e.start_ms);
        if need.kind == MaintenanceKind::Calibrate && need.due_ms > run_end {
            continue;
        }
        tally.expected_maintenance += 1;
        let found = orders
            .iter()
            .filter(|(action, order)| {
                action.line == need.line
                    && order.sensor == need.sensor
                    && fits(need.kind, order.work)
                    && order.found_ms >= started
            })
            .min_by_key(|(_, order)| order.found_ms);
        let Some((_, order)) = found else {
            if need.kind == MaintenanceKind::Calibrate {
                tally.drifts_due += 1;
            }
            continue;
        };
        tally.maintenance_found += 1;
        if need.kind == MaintenanceKind::Calibrate {
            tally.drifts_due += 1;
            tally.calibrations += 1;
            tally
                .calibration_delays_h
                .push((order.found_ms - need.due_ms) as f64 / 3_600_000.0);
            let in_gap =
                !order.urgent && batch_ends.contains(&(need.line.as_str(), order.window_start_ms));
            tally.calibrations_between_batches += u64::from(in_gap);
        }
    }
    let needed: BTreeSet<(&str, &str)> = truth
        .maintenance
        .iter()
        .map(|need| (need.line.as_str(), need.sensor.as_str()))
        .collect();
    tally.unexpected_orders = orders
        .iter()
        .filter(|(action, order)| !needed.contains(&(action.line.as_str(), order.sensor.as_str())))
        .count() as u64;
    tally
}
