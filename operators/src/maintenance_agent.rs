//! The maintenance agent: what a batch's instrument findings and the
//! arrays' health say about the sensors, and when to service them.
//!
//! Inputs per batch: its anomalies (the instrument findings among them,
//! see [`crate::quality_agent::split_findings`]), the sensors that reported
//! during it ([`SensorPresence`]) and the health reports of its e-nose
//! arrays ([`HealthReport`], one per clean-air sample taken just before the
//! batch; see [`crate::sensor_health`]). Outputs:
//!
//! * **maintenance orders**, one per sensor and work:
//!   - `repair` for a sensor that stopped measuring (`flat_line` or `gap`
//!     findings reaching the policy minimum);
//!   - `inspect` for isolated spikes (at least `min_zscore_count`
//!     isolated z-score outliers), rising noise or stuck channels;
//!   - `calibrate` when the clean-air baseline crossed the calibration
//!     shift;
//!   - `replace` when the array is critical (replacement shift, loss of
//!     response, half its channels stuck).
//!
//!   Health orders are raised when the status gets worse than at the
//!   previous sample, so one drift episode gives one calibration proposal,
//!   not one per batch. **Coordination with the batch schedule**: the
//!   window of an order opens at the end of the batch during which the
//!   need was found (the line's next batch waits for the work: its start is
//!   not known in advance); the order is issued when that end event
//!   arrives, with the time the work takes. Only
//!   an array whose data cannot be trusted now (half its channels stuck, or
//!   its response lost) is serviced at once (`urgent`), during the batch; a
//!   baseline shift alone, even past the replacement limit, waits for the
//!   gap (the fingerprints are refitted batch by batch and follow it).
//! * **a verdict** on the batch: `fail` when a measurement was lost with
//!   no healthy sensor of the same kind on the line to cover it (a process
//!   parameter unmonitored for part of the batch needs a QA review),
//!   `suspect` when instrument findings or orders exist but every
//!   measurement stayed covered, `pass` otherwise. It is `critical` when no
//!   e-nose array of the line was usable (each stopped measuring, or cannot
//!   be trusted): the line runs blind.
//!
//! A pure function of one batch's inputs, called from a differential
//! reduce keyed by `(line, batch)`.

use crate::batch_verdict::{summarise, VerdictPolicy};
use crate::model::{
    Agent, AgentVerdict, Anomaly, AnomalyRule, Assessment, EventTimeMs, MaintenanceOrder,
    MaintenanceWork, SensorKind,
};
use crate::quality_agent::{rank_reasons, split_findings};
use crate::sensor_health::{Finding, HealthStatus, SensorHealth};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// How long each kind of work takes, ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaintenanceConfig {
    /// Duration of an inspection.
    pub inspect_ms: i64,
    /// Duration of a calibration.
    pub calibrate_ms: i64,
    /// Duration of a repair.
    pub repair_ms: i64,
    /// Duration of a replacement.
    pub replace_ms: i64,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        MaintenanceConfig {
            inspect_ms: 5 * 60_000,
            calibrate_ms: 15 * 60_000,
            repair_ms: 30 * 60_000,
            replace_ms: 45 * 60_000,
        }
    }
}

impl MaintenanceConfig {
    /// Checks the durations; the error names the key.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        for (key, value) in [
            ("inspect_ms", self.inspect_ms),
            ("calibrate_ms", self.calibrate_ms),
            ("repair_ms", self.repair_ms),
            ("replace_ms", self.replace_ms),
        ] {
            if value <= 0 {
                return Err((key, format!("must be positive, got {value}")));
            }
        }
        Ok(())
    }

    fn duration(&self, work: MaintenanceWork) -> i64 {
        match work {
            MaintenanceWork::Inspect => self.inspect_ms,
            MaintenanceWork::Calibrate => self.calibrate_ms,
            MaintenanceWork::Repair => self.repair_ms,
            MaintenanceWork::Replace => self.replace_ms,
        }
    }
}

/// A sensor that reported during a batch.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SensorPresence {
    /// The line.
    pub line: String,
    /// The batch.
    pub batch: String,
    /// The sensor.
    pub sensor: String,
    /// Its kind.
    pub kind: SensorKind,
}

/// An e-nose array's health, assessed at a clean-air sample taken before
/// `batch`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HealthReport {
    /// The line.
    pub line: String,
    /// The array.
    pub sensor: String,
    /// The batch that followed the sample.
    pub batch: String,
    /// The health at the sample.
    pub health: SensorHealth,
    /// The status at the array's previous sample.
    pub previous: HealthStatus,
}

impl HealthReport {
    /// The work the report asks for: only when the status got worse.
    pub fn work(&self) -> Option<MaintenanceWork> {
        if self.health.status <= self.previous {
            return None;
        }
        match self.health.status {
            HealthStatus::Healthy => None,
            HealthStatus::CalibrationDue => Some(MaintenanceWork::Calibrate),
            HealthStatus::Degraded => Some(MaintenanceWork::Inspect),
            HealthStatus::Critical => Some(MaintenanceWork::Replace),
        }
    }

    /// Whether the array's data cannot be trusted now: half its channels
    /// stuck, or its response lost. A baseline shift alone, even past the
    /// replacement limit, leaves it usable: the product fingerprints are
    /// refitted batch by batch and follow a drifting baseline.
    pub fn unusable(&self) -> bool {
        self.health.findings.iter().any(|finding| match finding {
            Finding::StuckChannels { channels, of } => channels.len() * 2 >= usize::from(*of),
            Finding::ResponseLoss { .. } => true,
            _ => false,
        })
    }

    /// One line of figures, e.g. `enose-1 calibration_due: baseline +1.21 %, drift 1.52 %/h, RUL 2.5 h`.
    pub fn summary(&self) -> String {
        let health = &self.health;
        let mut text = format!("{} {}", self.sensor, health.status.as_str());
        if let Some(drift) = &health.drift {
            text.push_str(&format!(
                ": baseline {:+.2} %, drift {:+.2} %/h",
                drift.shift_pct, drift.rate_pct_per_hour
            ));
        }
        if let Some(hours) = health.remaining_useful_life_h {
            text.push_str(&format!(", RUL {hours:.1} h"));
        }
        if let Some(noise) = health.noise.as_ref().filter(|noise| noise.rising) {
            text.push_str(&format!(", noise x{:.1}", noise.ratio));
        }
        if !health.stuck_channels.is_empty() {
            text.push_str(&format!(", stuck channels {:?}", health.stuck_channels));
        }
        text
    }
}

/// Everything the agent knows of one batch.
#[derive(Debug, Clone, Copy)]
pub struct MaintenanceInputs<'a> {
    /// The line.
    pub line: &'a str,
    /// The batch.
    pub batch: &'a str,
    /// Its end, once known.
    pub end_ms: Option<EventTimeMs>,
    /// Its anomalies, any order.
    pub anomalies: &'a [&'a Anomaly],
    /// The sensors that reported during it.
    pub present: &'a [&'a SensorPresence],
    /// Health reports of its arrays.
    pub health: &'a [&'a HealthReport],
}

/// The agent's verdict on a batch and the orders to issue now.
pub fn assess_maintenance(
    inputs: &MaintenanceInputs<'_>,
    policy: &VerdictPolicy,
    config: &MaintenanceConfig,
) -> (AgentVerdict, Vec<MaintenanceOrder>) {
    let (_, instrument) = split_findings(inputs.anomalies, policy);
    let mut by_sensor: BTreeMap<&str, Vec<&Anomaly>> = BTreeMap::new();
    for &anomaly in &instrument {
        by_sensor.entry(&anomaly.sensor).or_default().push(anomaly);
    }
    let mut needs: BTreeMap<(&str, MaintenanceWork), Need<'_>> = BTreeMap::new();
    let mut lost: BTreeSet<&str> = BTreeSet::new();
    let mut kinds: BTreeMap<&str, SensorKind> = inputs
        .present
        .iter()
        .map(|p| (p.sensor.as_str(), p.kind))
        .collect();
    for (sensor, found) in &by_sensor {
        kinds.entry(sensor).or_insert(found[0].kind);
        let count = |rule: AnomalyRule| found.iter().filter(|a| a.rule == rule).count() as u64;
        let first = |rules: &[AnomalyRule]| {
            found
                .iter()
                .filter(|a| rules.contains(&a.rule))
                .map(|a| a.ts_ms)
                .min()
        };
        let stopped = count(AnomalyRule::FlatLine) >= policy.minimum(AnomalyRule::FlatLine)
            || count(AnomalyRule::Gap) >= policy.minimum(AnomalyRule::Gap);
        if stopped {
            lost.insert(sensor);
            let reasons = summarise(
                found
                    .iter()
                    .copied()
                    .filter(|a| matches!(a.rule, AnomalyRule::FlatLine | AnomalyRule::Gap)),
            );
            needs.insert(
                (sensor, MaintenanceWork::Repair),
                Need {
                    found_ms: first(&[AnomalyRule::FlatLine, AnomalyRule::Gap]).unwrap_or(0),
                    findings: reasons.iter().map(|r| r.summary()).collect(),
                    health: None,
                    urgent: false,
                },
            );
        }
        if count(AnomalyRule::ZScore) >= policy.minimum(AnomalyRule::ZScore) {
            let reasons = summarise(
                found
                    .iter()
                    .copied()
                    .filter(|a| a.rule == AnomalyRule::ZScore),
            );
            needs.insert(
                (sensor, MaintenanceWork::Inspect),
                Need {
                    found_ms: first(&[AnomalyRule::ZScore]).unwrap_or(0),
                    findings: reasons
                        .iter()
                        .map(|r| format!("{} (isolated spikes)", r.summary()))
                        .collect(),
                    health: None,
                    urgent: false,
                },
            );
        }
    }
    let mut unusable_arrays: BTreeSet<&str> = lost
        .iter()
        .copied()
        .filter(|s| kinds.get(s) == Some(&SensorKind::Enose))
        .collect();
    let mut notes = Vec::new();
    for report in inputs.health {
        kinds.entry(&report.sensor).or_insert(SensorKind::Enose);
        if report.health.status != HealthStatus::Healthy {
            notes.push(report.summary());
        }
        if report.unusable() {
            unusable_arrays.insert(&report.sensor);
        }
        if let Some(work) = report.work() {
            let need = needs.entry((&report.sensor, work)).or_insert(Need {
                found_ms: report.health.assessed_at_ms,
                findings: Vec::new(),
                health: None,
                urgent: false,
            });
            need.findings.push(report.summary());
            need.health = Some(&report.health);
            need.urgent |= report.unusable();
        }
    }
    // A measurement is covered when another sensor of its kind on the line
    // reported during the batch and is usable.
    let usable = |kind: SensorKind| {
        kinds.iter().any(|(sensor, k)| {
            *k == kind && !lost.contains(sensor) && !unusable_arrays.contains(sensor)
        })
    };
    let uncovered: Vec<&str> = lost
        .iter()
        .copied()
        .filter(|sensor| kinds.get(sensor).is_some_and(|kind| !usable(*kind)))
        .collect();
    let arrays_seen = kinds.values().any(|kind| *kind == SensorKind::Enose);
    let critical = arrays_seen && !usable(SensorKind::Enose);
    let mut reasons = summarise(instrument.iter().copied().filter(
        |a| match uncovered.is_empty() {
            true => true,
            false => uncovered.contains(&a.sensor.as_str()),
        },
    ));
    rank_reasons(&mut reasons);
    let assessment = if !uncovered.is_empty() || critical {
        Assessment::Fail
    } else if !needs.is_empty() || !instrument.is_empty() || !notes.is_empty() {
        Assessment::Suspect
    } else {
        Assessment::Pass
    };
    let verdict = AgentVerdict {
        agent: Agent::Maintenance,
        line: inputs.line.to_owned(),
        batch: inputs.batch.to_owned(),
        assessment,
        critical,
        reasons,
        notes,
        models: Vec::new(),
    };
    let orders = needs
        .into_iter()
        .filter_map(|((sensor, work), need)| {
            let urgent = need.urgent;
            let window_start_ms = match urgent {
                true => need.found_ms,
                false => inputs.end_ms?,
            };
            let drift = need.health.and_then(|h| h.drift.as_ref());
            Some(MaintenanceOrder {
                sensor: sensor.to_owned(),
                kind: kinds.get(sensor).copied().unwrap_or(SensorKind::Enose),
                work,
                window_start_ms,
                duration_ms: config.duration(work),
                urgent,
                found_ms: need.found_ms,
                findings: need.findings,
                baseline_shift_pct: drift.map(|d| d.shift_pct),
                drift_pct_per_hour: drift.map(|d| d.rate_pct_per_hour),
                remaining_useful_life_h: need.health.and_then(|h| h.remaining_useful_life_h),
            })
        })
        .collect();
    (verdict, orders)
}

/// A maintenance need found in a batch.
struct Need<'a> {
    found_ms: EventTimeMs,
    findings: Vec<String>,
    health: Option<&'a SensorHealth>,
    /// The array cannot be trusted now: service it during the batch.
    urgent: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anomaly(sensor: &str, kind: SensorKind, rule: AnomalyRule, seq: u64) -> Anomaly {
        Anomaly {
            line: "L1".into(),
            sensor: sensor.into(),
            kind,
            batch: Some("B-1".into()),
            ts_ms: 1_000 * seq as i64,
            seq,
            rule,
            statistic: 30.0,
            limit: 6.0,
            channels: vec![],
            contaminant: None,
        }
    }

    fn present(sensors: &[(&str, SensorKind)]) -> Vec<SensorPresence> {
        sensors
            .iter()
            .map(|(sensor, kind)| SensorPresence {
                line: "L1".into(),
                batch: "B-1".into(),
                sensor: (*sensor).into(),
                kind: *kind,
            })
            .collect()
    }

    fn run(
        anomalies: &[Anomaly],
        present: &[SensorPresence],
        end_ms: Option<EventTimeMs>,
    ) -> (AgentVerdict, Vec<MaintenanceOrder>) {
        let anomalies: Vec<_> = anomalies.iter().collect();
        let present: Vec<_> = present.iter().collect();
        assess_maintenance(
            &MaintenanceInputs {
                line: "L1",
                batch: "B-1",
                end_ms,
                anomalies: &anomalies,
                present: &present,
                health: &[],
            },
            &VerdictPolicy::default(),
            &MaintenanceConfig::default(),
        )
    }

    const LINE: [(&str, SensorKind); 3] = [
        ("enose-1", SensorKind::Enose),
        ("enose-2", SensorKind::Enose),
        ("temperature-1", SensorKind::Temperature),
    ];

    #[test]
    fn a_stuck_array_with_a_healthy_sibling_is_repaired_after_the_batch() {
        let stuck = [anomaly(
            "enose-1",
            SensorKind::Enose,
            AnomalyRule::FlatLine,
            100,
        )];
        let (verdict, orders) = run(&stuck, &present(&LINE), None);
        assert_eq!(verdict.assessment, Assessment::Suspect);
        assert!(orders.is_empty(), "no window before the batch ends");
        let (_, orders) = run(&stuck, &present(&LINE), Some(600_000));
        assert_eq!(orders.len(), 1);
        let order = &orders[0];
        assert_eq!(
            (
                order.sensor.as_str(),
                order.work,
                order.window_start_ms,
                order.urgent
            ),
            ("enose-1", MaintenanceWork::Repair, 600_000, false)
        );
        assert_eq!(order.found_ms, 100_000);
    }

    #[test]
    fn a_lost_process_sensor_without_a_sibling_fails_the_batch() {
        let gap = [anomaly(
            "temperature-1",
            SensorKind::Temperature,
            AnomalyRule::Gap,
            50,
        )];
        let (verdict, orders) = run(&gap, &present(&LINE), Some(600_000));
        assert_eq!(verdict.assessment, Assessment::Fail);
        assert!(!verdict.critical);
        assert_eq!(verdict.reasons[0].sensor, "temperature-1");
        assert_eq!(orders[0].work, MaintenanceWork::Repair);
    }

    #[test]
    fn losing_every_array_is_critical_and_isolated_spikes_ask_for_an_inspection() {
        let both = [
            anomaly("enose-1", SensorKind::Enose, AnomalyRule::Gap, 10),
            anomaly("enose-2", SensorKind::Enose, AnomalyRule::FlatLine, 20),
        ];
        let (verdict, _) = run(&both, &present(&LINE), None);
        assert!(verdict.critical);
        assert_eq!(verdict.assessment, Assessment::Fail);
        let spikes =
            [10, 40, 90].map(|seq| anomaly("enose-2", SensorKind::Enose, AnomalyRule::ZScore, seq));
        let (verdict, orders) = run(&spikes, &present(&LINE), Some(600_000));
        assert_eq!(verdict.assessment, Assessment::Suspect);
        assert_eq!(orders[0].work, MaintenanceWork::Inspect);
        let (verdict, orders) = run(&spikes[..2], &present(&LINE), Some(600_000));
        assert_eq!(
            verdict.assessment,
            Assessment::Suspect,
            "noted, not ordered"
        );
        assert!(orders.is_empty());
        let (verdict, _) = run(&[], &present(&LINE), Some(600_000));
        assert_eq!(verdict.assessment, Assessment::Pass);
    }
}
