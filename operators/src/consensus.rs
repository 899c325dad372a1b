//! The orchestrator's consensus: one release decision per batch from the
//! agents' verdicts, under a configurable policy.
//!
//! Each agent judges the batch `pass`, `suspect` or `fail`, possibly
//! `critical` (see [`crate::model::AgentVerdict`]). The policy
//! ([`ConsensusPolicy`]) turns the verdicts of the agents it requires into
//! `release`, `hold` or `reject`:
//!
//! | mode | release when | otherwise |
//! |---|---|---|
//! | `veto` (default) | no required agent fails | hold |
//! | `quorum` | at least `quorum` required agents pass and none fails | hold |
//! | `unanimous` | every required agent passes | hold |
//!
//! A required agent without a verdict counts as not passing (it cannot
//! have seen the batch). In every mode a critical finding vetoes the
//! release; with `reject_on_critical` a critical finding about the product
//! (the quality agent's) rejects the batch outright, otherwise it holds it
//! for a human disposition (the default: an automated reject destroys
//! product, which GMP practice leaves to QA). An instrument failure (the
//! maintenance agent's critical verdict: no usable array) only ever holds.
//!
//! The action names, strongest first, the reasons of every failing or
//! critical verdict, and carries every verdict as evidence (a suspect
//! verdict's findings are there), so a reviewer sees who said what. [`action_id`](crate::batch_verdict::action_id) makes the id
//! a hash of the content: the same evidence always yields the same id.

use crate::batch_verdict::action_id;
use crate::model::{
    Action, ActionKind, Agent, AgentVerdict, Assessment, Decision, EventTimeMs, Evidence,
    InputSpan, MaintenanceOrder, Reason,
};
use crate::quality_agent::rank_reasons;
use serde::{Deserialize, Serialize};

/// How the verdicts of the agents combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsensusMode {
    /// Release unless a required agent fails.
    Veto,
    /// Release when at least `quorum` required agents pass and none fails.
    Quorum,
    /// Release only when every required agent passes.
    Unanimous,
}

/// The orchestrator's policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsensusPolicy {
    /// How verdicts combine.
    pub mode: ConsensusMode,
    /// Passing agents needed in `quorum` mode.
    pub quorum: usize,
    /// The agents whose verdicts count.
    pub agents: Vec<Agent>,
    /// Reject (instead of hold) a batch with a critical finding.
    pub reject_on_critical: bool,
}

impl Default for ConsensusPolicy {
    fn default() -> Self {
        ConsensusPolicy {
            mode: ConsensusMode::Veto,
            quorum: 2,
            agents: Agent::ALL.to_vec(),
            reject_on_critical: false,
        }
    }
}

impl ConsensusPolicy {
    /// Checks the policy; the error names the key.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.agents.is_empty() {
            return Err(("agents", "must name at least one agent".into()));
        }
        if self.mode == ConsensusMode::Quorum && !(1..=self.agents.len()).contains(&self.quorum) {
            return Err((
                "quorum",
                format!(
                    "must lie in 1..={} (the required agents), got {}",
                    self.agents.len(),
                    self.quorum
                ),
            ));
        }
        Ok(())
    }

    /// The decision from the verdicts of a batch (any agents, any order).
    pub fn decide(&self, verdicts: &[&AgentVerdict]) -> Decision {
        let required = |verdict: &&&AgentVerdict| self.agents.contains(&verdict.agent);
        let critical: Vec<&&AgentVerdict> = verdicts
            .iter()
            .filter(required)
            .filter(|v| v.critical)
            .collect();
        if !critical.is_empty() {
            // Only a finding about the product can reject it; an instrument
            // that failed (the maintenance agent's critical verdict) holds
            // the batch for review.
            let product = critical.iter().any(|v| v.agent == Agent::Quality);
            return match self.reject_on_critical && product {
                true => Decision::Reject,
                false => Decision::Hold,
            };
        }
        let assessment = |agent: Agent| {
            verdicts
                .iter()
                .filter(|verdict| verdict.agent == agent)
                .map(|verdict| verdict.assessment)
                .max()
        };
        let assessments: Vec<Option<Assessment>> =
            self.agents.iter().map(|&agent| assessment(agent)).collect();
        let passing = assessments
            .iter()
            .filter(|a| **a == Some(Assessment::Pass))
            .count();
        let failing = assessments.contains(&Some(Assessment::Fail));
        let release = match self.mode {
            ConsensusMode::Veto => !failing,
            ConsensusMode::Quorum => !failing && passing >= self.quorum,
            ConsensusMode::Unanimous => passing == self.agents.len(),
        };
        match release {
            true => Decision::Release,
            false => Decision::Hold,
        }
    }
}

/// What the orchestrator knows of a batch besides the verdicts.
#[derive(Debug, Clone, Copy)]
pub struct BatchFacts<'a> {
    /// Plant of the line.
    pub plant: &'a str,
    /// The line.
    pub line: &'a str,
    /// The batch.
    pub batch: &'a str,
    /// Its product.
    pub product: &'a str,
    /// Event time of its start event, if seen.
    pub start_ms: Option<EventTimeMs>,
    /// Event time of its end event, if seen.
    pub end_ms: Option<EventTimeMs>,
    /// Anomalies counted for the batch, over all rules.
    pub anomalies: u64,
    /// Version of the rule set.
    pub rules_version: &'a str,
}

/// The `batch_release` action of an ended batch.
pub fn release_action(
    facts: &BatchFacts<'_>,
    verdicts: &[&AgentVerdict],
    input: Vec<InputSpan>,
    policy: &ConsensusPolicy,
) -> Action {
    let decision = policy.decide(verdicts);
    let mut reasons: Vec<Reason> = match decision {
        Decision::Release => Vec::new(),
        Decision::Hold | Decision::Reject => verdicts
            .iter()
            // The reasons of the verdicts that hold: failing or critical
            // ones (a suspect verdict's reasons stay in its evidence).
            .filter(|verdict| verdict.assessment == Assessment::Fail || verdict.critical)
            .flat_map(|verdict| verdict.reasons.iter().cloned())
            .collect(),
    };
    rank_reasons(&mut reasons);
    let mut sorted: Vec<AgentVerdict> = verdicts.iter().map(|v| (*v).clone()).collect();
    sorted.sort();
    let mut input = input;
    input.sort();
    finish(Action {
        action_id: String::new(),
        kind: ActionKind::BatchRelease,
        plant: facts.plant.to_owned(),
        line: facts.line.to_owned(),
        batch: Some(facts.batch.to_owned()),
        product: Some(facts.product.to_owned()),
        decision: Some(decision),
        reasons,
        evidence: evidence(facts, sorted, input),
        ts_ms: facts.end_ms.unwrap_or_default(),
        maintenance: None,
        revision: 1,
        supersedes: None,
        withdrawn: false,
        sealed: false,
    })
}

/// The `hold_line` action of a critical finding at `onset`, during the
/// batch: stop the line now, do not wait for the batch to end.
pub fn hold_line_action(
    facts: &BatchFacts<'_>,
    onset_ms: EventTimeMs,
    reasons: Vec<Reason>,
    verdict: &AgentVerdict,
) -> Action {
    let findings = reasons.iter().map(|reason| reason.count).sum();
    finish(Action {
        action_id: String::new(),
        kind: ActionKind::HoldLine,
        plant: facts.plant.to_owned(),
        line: facts.line.to_owned(),
        batch: Some(facts.batch.to_owned()),
        product: Some(facts.product.to_owned()),
        decision: None,
        reasons,
        evidence: evidence(
            &BatchFacts {
                end_ms: None,
                // The findings up to the onset, not the batch's running count:
                // the hold does not change as the contamination goes on.
                anomalies: findings,
                ..*facts
            },
            vec![AgentVerdict {
                reasons: Vec::new(),
                ..verdict.clone()
            }],
            Vec::new(),
        ),
        ts_ms: onset_ms,
        maintenance: None,
        revision: 1,
        supersedes: None,
        withdrawn: false,
        sealed: false,
    })
}

/// The `schedule_maintenance` action of a maintenance order for the batch.
pub fn maintenance_action(facts: &BatchFacts<'_>, order: MaintenanceOrder) -> Action {
    finish(Action {
        action_id: String::new(),
        kind: ActionKind::ScheduleMaintenance,
        plant: facts.plant.to_owned(),
        line: facts.line.to_owned(),
        batch: Some(facts.batch.to_owned()),
        product: Some(facts.product.to_owned()),
        decision: None,
        reasons: Vec::new(),
        evidence: Evidence {
            batch_start_ms: facts.start_ms,
            // An urgent order is issued during the batch: it does not
            // change when the batch ends.
            batch_end_ms: facts.end_ms.filter(|_| !order.urgent),
            // The findings behind the order, not the batch's running count.
            anomalies: order.findings.len() as u64,
            rules_version: facts.rules_version.to_owned(),
            verdicts: Vec::new(),
            input: Vec::new(),
        },
        ts_ms: order.window_start_ms,
        maintenance: Some(order),
        revision: 1,
        supersedes: None,
        withdrawn: false,
        sealed: false,
    })
}

fn evidence(
    facts: &BatchFacts<'_>,
    verdicts: Vec<AgentVerdict>,
    input: Vec<InputSpan>,
) -> Evidence {
    Evidence {
        batch_start_ms: facts.start_ms,
        batch_end_ms: facts.end_ms,
        anomalies: facts.anomalies,
        rules_version: facts.rules_version.to_owned(),
        verdicts,
        input,
    }
}

/// Sets the content id.
pub fn finish(mut action: Action) -> Action {
    action.action_id = action_id(&action);
    action
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(agent: Agent, assessment: Assessment, critical: bool) -> AgentVerdict {
        AgentVerdict {
            agent,
            line: "L1".into(),
            batch: "B-1".into(),
            assessment,
            critical,
            reasons: Vec::new(),
            notes: Vec::new(),
            models: Vec::new(),
        }
    }

    fn decide(policy: &ConsensusPolicy, assessments: [Assessment; 3]) -> Decision {
        let verdicts: Vec<_> = Agent::ALL
            .iter()
            .zip(assessments)
            .map(|(&agent, assessment)| verdict(agent, assessment, false))
            .collect();
        let refs: Vec<_> = verdicts.iter().collect();
        policy.decide(&refs)
    }

    use Assessment::{Fail, Pass, Suspect};

    #[test]
    fn the_three_modes_decide_as_documented() {
        let veto = ConsensusPolicy::default();
        let quorum = ConsensusPolicy {
            mode: ConsensusMode::Quorum,
            ..ConsensusPolicy::default()
        };
        let unanimous = ConsensusPolicy {
            mode: ConsensusMode::Unanimous,
            ..ConsensusPolicy::default()
        };
        let cases = [
            ([Pass, Pass, Pass], [true, true, true]),
            ([Pass, Suspect, Pass], [true, true, false]),
            ([Pass, Suspect, Suspect], [true, false, false]),
            ([Fail, Pass, Pass], [false, false, false]),
            ([Pass, Pass, Fail], [false, false, false]),
        ];
        for (assessments, [v, q, u]) in cases {
            let released = |policy| decide(policy, assessments) == Decision::Release;
            assert_eq!(released(&veto), v, "veto {assessments:?}");
            assert_eq!(released(&quorum), q, "quorum {assessments:?}");
            assert_eq!(released(&unanimous), u, "unanimous {assessments:?}");
        }
    }

    #[test]
    fn a_missing_verdict_does_not_pass_and_a_critical_one_vetoes() {
        let unanimous = ConsensusPolicy {
            mode: ConsensusMode::Unanimous,
            ..ConsensusPolicy::default()
        };
        let quality = verdict(Agent::Quality, Pass, false);
        assert_eq!(unanimous.decide(&[&quality]), Decision::Hold);
        let only_quality = ConsensusPolicy {
            agents: vec![Agent::Quality],
            ..unanimous.clone()
        };
        assert_eq!(only_quality.decide(&[&quality]), Decision::Release);
        let critical = verdict(Agent::Quality, Fail, true);
        assert_eq!(
            ConsensusPolicy::default().decide(&[&critical]),
            Decision::Hold
        );
        let rejecting = ConsensusPolicy {
            reject_on_critical: true,
            ..ConsensusPolicy::default()
        };
        assert_eq!(rejecting.decide(&[&critical]), Decision::Reject);
        // A line without a usable array is held, never rejected.
        let blind = verdict(Agent::Maintenance, Fail, true);
        assert_eq!(rejecting.decide(&[&blind]), Decision::Hold);
        // Verdicts of agents the policy does not require do not count.
        let predictive = verdict(Agent::Predictive, Fail, true);
        assert_eq!(
            only_quality.decide(&[&quality, &predictive]),
            Decision::Release
        );
    }

    #[test]
    fn policies_are_checked() {
        let bad = ConsensusPolicy {
            mode: ConsensusMode::Quorum,
            quorum: 4,
            ..ConsensusPolicy::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "quorum");
        let none = ConsensusPolicy {
            agents: vec![],
            ..ConsensusPolicy::default()
        };
        assert_eq!(none.check().unwrap_err().0, "agents");
        ConsensusPolicy::default().check().unwrap();
    }
}
