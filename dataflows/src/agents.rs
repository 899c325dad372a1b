//! The agents: quality control, maintenance, predictive, and the
//! orchestrator's consensus on batch release, as differential joins.
//!
//! ```text
//! lifecycle ─┐
//! anomalies ─┤                       ┌▶ quality verdict ────────────┐
//! presence ──┼▶ per (line, batch) ───┼▶ maintenance verdict ────────┤
//! health ────┤   (one arrangement)   ├▶ hold_line (critical onset) ─┼──────────────┐
//! models ────┘                       ├▶ maintenance orders ─────────┼──────────────┤
//!                                    └▶ batch facts ────────────────┤              │
//! quality index ─▶ per (line, batch) ─▶ predictive verdict ─────────┤              │
//! input spans ──────────────────────────────────────────────────────┴▶ orchestrator ─▶ changelog ─▶ actions
//! ```
//!
//! No agent is a loop that polls: each is a function of the evidence of
//! one batch, evaluated by a differential `reduce` keyed by `(line, batch)`,
//! so it is re-evaluated exactly when that batch's evidence changes, and
//! its output (a verdict, an order) is retracted and replaced when late
//! evidence or a new model version changes it. The quality and
//! maintenance agents read the same evidence (the batch's anomalies split
//! into product and instrument findings), so they share one arrangement
//! and one reduce; the predictive agent reads the line's quality index.
//!
//! The **orchestrator** joins the verdicts of a batch with its facts
//! (start, end, product, anomaly count) and its input spans, and once the
//! batch has ended applies the [`ConsensusPolicy`]. **Escalation** does not
//! wait for the end: the quality agent's critical onset (an identified
//! contamination) is a `hold_line` action at the event time it became
//! critical; an urgent maintenance order likewise. All actions pass
//! through the [changelog](scent_operators::action_changelog), which turns
//! the collection's retractions into superseding revisions and seals each
//! batch once its end plus the allowed lateness has passed.

use crate::predictive::{predictive_verdicts, LineForecast, PredictiveConfig};
use differential_dataflow::VecCollection;
use scent_operators::action_changelog::{ActionChangelog, ChangelogConfig, LateRevision};
use scent_operators::batch_verdict::VerdictPolicy;
use scent_operators::consensus::{
    hold_line_action, maintenance_action, release_action, BatchFacts, ConsensusPolicy,
};
use scent_operators::event_clock::Epoch;
use scent_operators::fingerprint::FingerprintModel;
use scent_operators::maintenance_agent::{
    assess_maintenance, HealthReport, MaintenanceConfig, MaintenanceInputs, SensorPresence,
};
use scent_operators::model::{
    Action, AgentVerdict, Anomaly, BatchEvent, BatchPhase, EventTimeMs, InputSpan,
};
use scent_operators::quality_agent::{assess_quality, critical_onset};
use serde::{Deserialize, Serialize};

/// Parameters of the agents and the orchestrator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsConfig {
    /// Runs the agents. Without them the engine detects anomalies but
    /// makes no decision and sends no action: for measuring what the
    /// agents cost, never for production.
    pub enabled: bool,
    /// The orchestrator's consensus policy.
    pub consensus: ConsensusPolicy,
    /// Maintenance durations.
    pub maintenance: MaintenanceConfig,
    /// The predictive agent.
    pub predictive: PredictiveConfig,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        AgentsConfig {
            enabled: true,
            consensus: ConsensusPolicy::default(),
            maintenance: MaintenanceConfig::default(),
            predictive: PredictiveConfig::default(),
        }
    }
}

/// What the agents see of a batch.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum Evidence {
    Lifecycle(BatchEvent),
    Anomaly(Anomaly),
    Present(SensorPresence),
    Health(HealthReport),
    Model(String),
}

/// What the quality and maintenance agents conclude about a batch.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum Conclusion {
    Facts(Facts),
    Verdict(AgentVerdict),
    Action(Box<Action>),
}

/// A batch's facts, for the orchestrator.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Facts {
    product: String,
    start_ms: Option<EventTimeMs>,
    end_ms: Option<EventTimeMs>,
    anomalies: u64,
}

/// What the orchestrator joins per batch.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum Ballot {
    Facts(Facts),
    Verdict(AgentVerdict),
    Span(InputSpan),
}

/// The agents' inputs.
pub struct AgentInputs<'scope> {
    /// Batch lifecycle events.
    pub batch_events: VecCollection<'scope, Epoch, BatchEvent>,
    /// Anomalies of every detector.
    pub anomalies: VecCollection<'scope, Epoch, Anomaly>,
    /// Which sensors reported in which batch.
    pub presence: VecCollection<'scope, Epoch, SensorPresence>,
    /// The arrays' health at each clean-air sample.
    pub health: VecCollection<'scope, Epoch, HealthReport>,
    /// The fingerprint model each batch is scored against.
    pub models: VecCollection<'scope, Epoch, (String, FingerprintModel)>,
    /// `(line, batch, reference)` of the library signatures that named the
    /// batch's findings.
    pub signatures: VecCollection<'scope, Epoch, (String, String, String)>,
    /// The predictive agent's forecasts of each line's quality index.
    pub forecasts: VecCollection<'scope, Epoch, LineForecast>,
    /// The input spans of each batch.
    pub spans: VecCollection<'scope, Epoch, ((String, String), InputSpan)>,
}

/// The agents' outputs.
pub struct Agents<'scope> {
    /// Every agent's current verdict on every batch.
    pub verdicts: VecCollection<'scope, Epoch, AgentVerdict>,
    /// The actions to send: the changelog's revisions.
    pub actions: VecCollection<'scope, Epoch, Action>,
    /// Changes refused because their batch was sealed.
    pub late_revisions: timely::dataflow::StreamVec<'scope, Epoch, LateRevision>,
}

/// Builds the agents and the orchestrator.
pub fn agents<'scope>(
    inputs: AgentInputs<'scope>,
    policy: &VerdictPolicy,
    config: &AgentsConfig,
    changelog: ChangelogConfig,
) -> Agents<'scope> {
    let key = |line: &str, batch: &str| (line.to_owned(), batch.to_owned());
    let lifecycle = inputs
        .batch_events
        .clone()
        .map(move |event| (key(&event.line, &event.batch), Evidence::Lifecycle(event)));
    let anomalies = inputs.anomalies.flat_map(move |anomaly| {
        let batch = anomaly.batch.as_deref()?;
        Some((key(&anomaly.line, batch), Evidence::Anomaly(anomaly)))
    });
    let presence = inputs.presence.map(move |present| {
        (
            key(&present.line, &present.batch),
            Evidence::Present(present),
        )
    });
    let health = inputs
        .health
        .map(move |report| (key(&report.line, &report.batch), Evidence::Health(report)));
    let models = inputs.models.flat_map(move |(batch, model)| {
        let version = format!("fingerprint:{}:{}", model.sensor, model.version);
        Some((key(&model.line, &batch), Evidence::Model(version)))
    });
    let signatures = inputs
        .signatures
        .map(move |(line, batch, reference)| (key(&line, &batch), Evidence::Model(reference)));

    let quality_policy = policy.clone();
    let maintenance = config.maintenance;
    let conclusions = lifecycle
        .concat(anomalies)
        .concat(presence)
        .concat(health)
        .concat(models)
        .concat(signatures)
        .reduce_named("BatchAgents", move |(line, batch), evidence, output| {
            for conclusion in conclude(line, batch, evidence, &quality_policy, &maintenance) {
                output.push((conclusion, 1));
            }
        });
    let facts = conclusions
        .clone()
        .flat_map(|(key, conclusion)| match conclusion {
            Conclusion::Facts(facts) => Some((key, Ballot::Facts(facts))),
            _ => None,
        });
    let immediate = conclusions
        .clone()
        .flat_map(|(_, conclusion)| match conclusion {
            Conclusion::Action(action) => Some(*action),
            _ => None,
        });
    let (predictive, alerts) = predictive_verdicts(
        inputs.forecasts,
        inputs.batch_events,
        &config.predictive,
        policy.plant.clone(),
        policy.rules_version.clone(),
    );
    let verdicts = conclusions
        .flat_map(|(_, conclusion)| match conclusion {
            Conclusion::Verdict(verdict) => Some(verdict),
            _ => None,
        })
        .concat(predictive);
    let ballots = verdicts
        .clone()
        .map(|verdict| {
            (
                (verdict.line.clone(), verdict.batch.clone()),
                Ballot::Verdict(verdict),
            )
        })
        .concat(facts)
        .concat(inputs.spans.map(|(key, span)| (key, Ballot::Span(span))));
    let plant = policy.plant.clone();
    let rules_version = policy.rules_version.clone();
    let consensus = config.consensus.clone();
    let releases = ballots
        .reduce_named("Orchestrator", move |(line, batch), ballots, output| {
            let mut facts = None;
            let mut verdicts: Vec<&AgentVerdict> = Vec::new();
            let mut spans = Vec::new();
            for (ballot, count) in ballots {
                if *count <= 0 {
                    continue;
                }
                match ballot {
                    Ballot::Facts(found) => facts = Some(found),
                    Ballot::Verdict(verdict) => verdicts.push(verdict),
                    Ballot::Span(span) => spans.push(span.clone()),
                }
            }
            let Some(facts) = facts.filter(|facts| facts.end_ms.is_some()) else {
                return;
            };
            let batch_facts = BatchFacts {
                plant: &plant,
                line,
                batch,
                product: &facts.product,
                start_ms: facts.start_ms,
                end_ms: facts.end_ms,
                anomalies: facts.anomalies,
                rules_version: &rules_version,
            };
            output.push((
                release_action(&batch_facts, &verdicts, spans, &consensus),
                1,
            ));
        })
        .map(|(_, action)| action);
    let (actions, late_revisions) = releases
        .concat(immediate)
        .concat(alerts)
        .action_changelog(changelog);
    Agents {
        verdicts,
        actions,
        late_revisions,
    }
}

/// The quality and maintenance agents on one batch's evidence.
fn conclude(
    line: &str,
    batch: &str,
    evidence: &[(&Evidence, isize)],
    policy: &VerdictPolicy,
    maintenance: &MaintenanceConfig,
) -> Vec<Conclusion> {
    let (mut start, mut end): (Option<&BatchEvent>, Option<&BatchEvent>) = (None, None);
    let (mut anomalies, mut present, mut health, mut models) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (item, count) in evidence {
        if *count <= 0 {
            continue;
        }
        match item {
            Evidence::Lifecycle(event) => {
                // The earliest of each phase counts (a repeated event is ignored).
                let slot = match event.event {
                    BatchPhase::Start => &mut start,
                    BatchPhase::End => &mut end,
                };
                if slot.is_none_or(|seen| event.ts_ms < seen.ts_ms) {
                    *slot = Some(event);
                }
            }
            Evidence::Anomaly(anomaly) => anomalies.push(anomaly),
            Evidence::Present(present_sensor) => present.push(present_sensor),
            Evidence::Health(report) => health.push(report),
            Evidence::Model(version) => models.push(version.clone()),
        }
    }
    // A batch is judged from its start event on (or its end, if the start
    // was never seen); anomalies of unknown batches wait for them.
    let Some(product) = start.or(end).map(|event| event.product.clone()) else {
        return Vec::new();
    };
    let facts = Facts {
        product,
        start_ms: start.map(|event| event.ts_ms),
        end_ms: end.map(|event| event.ts_ms),
        anomalies: anomalies.len() as u64,
    };
    let quality = assess_quality(line, batch, &anomalies, policy, models);
    let (maintenance_verdict, orders) = assess_maintenance(
        &MaintenanceInputs {
            line,
            batch,
            end_ms: facts.end_ms,
            anomalies: &anomalies,
            present: &present,
            health: &health,
        },
        policy,
        maintenance,
    );
    let batch_facts = BatchFacts {
        plant: &policy.plant,
        line,
        batch,
        product: &facts.product,
        start_ms: facts.start_ms,
        end_ms: facts.end_ms,
        anomalies: facts.anomalies,
        rules_version: &policy.rules_version,
    };
    let mut conclusions = Vec::new();
    if let Some((onset, reasons)) = critical_onset(&anomalies, policy) {
        conclusions.push(Conclusion::Action(Box::new(hold_line_action(
            &batch_facts,
            onset,
            reasons,
            &quality,
        ))));
    }
    for order in orders {
        conclusions.push(Conclusion::Action(Box::new(maintenance_action(
            &batch_facts,
            order,
        ))));
    }
    conclusions.push(Conclusion::Verdict(quality));
    conclusions.push(Conclusion::Verdict(maintenance_verdict));
    conclusions.push(Conclusion::Facts(facts));
    conclusions
}
