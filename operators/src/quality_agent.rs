//! The quality-control agent: what the anomalies of a batch say about the
//! product, as opposed to the instruments.
//!
//! Every anomaly of a batch is either a **product finding** or an
//! **instrument finding** ([`split_findings`]):
//!
//! * fingerprint rules (`t2`, `spe`, `similarity`, `contaminant`) judge
//!   the array's response pattern against the product's reference: product
//!   findings;
//! * `flat_line` and `gap` are failures of the sensor to measure:
//!   instrument findings (the maintenance agent's business);
//! * a `zscore` outlier is a product finding when it belongs to a run of at
//!   least `min_zscore_run` consecutive readings of its sensor (a real
//!   change of the process or the aroma lasts: a contamination rises over
//!   seconds and stays for minutes), and an instrument finding when it is
//!   isolated (a single-sample spike cannot be the product: the product
//!   cannot change and change back within one sampling period);
//! * any finding of a sensor within `fault_margin_ms` of that sensor's own
//!   flat-line or gap findings (a gap counted from its start) is an
//!   instrument finding: a stuck array's cycles leave the fingerprint
//!   because the array is stuck, not because the product changed. A
//!   contamination still shows on the line's other arrays.
//!
//! The verdict ([`assess_quality`]) counts product findings per
//! `(sensor, rule)` into [`Reason`]s: **fail** when a reason reaches the
//! rule's minimum count ([`VerdictPolicy`]), **suspect** when product
//! findings exist below it, **pass** otherwise. A contaminant reason that
//! reaches its minimum is **critical**: an identified contamination, which
//! escalates at once ([`critical_onset`] gives the moment and the findings
//! that made it critical, so the line-hold it triggers does not change as
//! more cycles of the same contamination arrive).
//!
//! Pure functions over one batch's anomalies; the dataflow calls them from
//! a differential reduce keyed by `(line, batch)`, so the verdict is
//! revised whenever a late anomaly arrives.

use crate::batch_verdict::{summarise, VerdictPolicy};
use crate::model::{Agent, AgentVerdict, Anomaly, AnomalyRule, Assessment, EventTimeMs, Reason};
use std::collections::BTreeMap;

/// Whether an anomaly speaks about the product or about its instrument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    /// The product (or the process) changed.
    Product,
    /// The sensor misbehaved.
    Instrument,
}

/// Classifies every anomaly of one batch (any order), see the module docs.
pub fn split_findings<'a>(
    anomalies: &[&'a Anomaly],
    policy: &VerdictPolicy,
) -> (Vec<&'a Anomaly>, Vec<&'a Anomaly>) {
    let mut product = Vec::new();
    let mut instrument = Vec::new();
    let mut zscores: BTreeMap<&str, Vec<&'a Anomaly>> = BTreeMap::new();
    // Per sensor, the event-time spans of its own faults, widened by the margin.
    let mut faults: BTreeMap<&str, Vec<(EventTimeMs, EventTimeMs)>> = BTreeMap::new();
    let margin = policy.fault_margin_ms.max(0);
    for &anomaly in anomalies {
        let since = match anomaly.rule {
            AnomalyRule::FlatLine => anomaly.ts_ms,
            // A gap's statistic is its length in seconds, ending at the reading.
            AnomalyRule::Gap => anomaly.ts_ms - (anomaly.statistic * 1_000.0) as EventTimeMs,
            _ => continue,
        };
        faults.entry(&anomaly.sensor).or_default().push((
            since.saturating_sub(margin),
            anomaly.ts_ms.saturating_add(margin),
        ));
    }
    let during_fault = |anomaly: &Anomaly| {
        faults.get(anomaly.sensor.as_str()).is_some_and(|spans| {
            spans
                .iter()
                .any(|(from, to)| (*from..=*to).contains(&anomaly.ts_ms))
        })
    };
    for &anomaly in anomalies {
        match anomaly.rule {
            AnomalyRule::FlatLine | AnomalyRule::Gap => instrument.push(anomaly),
            _ if during_fault(anomaly) => instrument.push(anomaly),
            AnomalyRule::HotellingT2
            | AnomalyRule::Spe
            | AnomalyRule::Similarity
            | AnomalyRule::Contaminant => product.push(anomaly),
            AnomalyRule::ZScore => zscores.entry(&anomaly.sensor).or_default().push(anomaly),
        }
    }
    let min_run = policy.min_zscore_run.max(1) as usize;
    for (_, mut outliers) in zscores {
        outliers.sort_by_key(|anomaly| (anomaly.seq, anomaly.ts_ms));
        outliers.dedup_by_key(|anomaly| anomaly.seq);
        let mut start = 0;
        while start < outliers.len() {
            let mut end = start + 1;
            while end < outliers.len() && outliers[end].seq == outliers[end - 1].seq + 1 {
                end += 1;
            }
            let run = &outliers[start..end];
            if run.len() >= min_run {
                product.extend_from_slice(run);
            } else {
                instrument.extend_from_slice(run);
            }
            start = end;
        }
    }
    (product, instrument)
}

/// Sorts reasons strongest first: by how far the strongest statistic went
/// past its limit, then by content (a total order, for determinism).
pub fn rank_reasons(reasons: &mut [Reason]) {
    reasons.sort_by(|a, b| {
        let strength = |r: &Reason| r.max_statistic / r.limit.max(f64::MIN_POSITIVE);
        strength(b).total_cmp(&strength(a)).then_with(|| a.cmp(b))
    });
}

/// The quality agent's verdict on one batch from all its anomalies so far.
pub fn assess_quality(
    line: &str,
    batch: &str,
    anomalies: &[&Anomaly],
    policy: &VerdictPolicy,
    models: Vec<String>,
) -> AgentVerdict {
    let (product, _instrument) = split_findings(anomalies, policy);
    let mut reasons = summarise(product.iter().copied());
    let holding = |reason: &Reason| reason.count >= policy.minimum(reason.rule);
    let fails = reasons.iter().any(holding);
    let critical = reasons
        .iter()
        .any(|reason| reason.rule == AnomalyRule::Contaminant && holding(reason));
    let assessment = if fails {
        // A failing verdict names only what holds; the rest is noise next to it.
        reasons.retain(holding);
        Assessment::Fail
    } else if reasons.is_empty() {
        Assessment::Pass
    } else {
        Assessment::Suspect
    };
    rank_reasons(&mut reasons);
    AgentVerdict {
        agent: Agent::Quality,
        line: line.to_owned(),
        batch: batch.to_owned(),
        assessment,
        critical,
        reasons,
        notes: Vec::new(),
        models,
    }
}

/// When the batch's product findings first became critical, and the
/// findings up to that moment: the contaminant matches of the first array
/// to reach `min_contaminant_count`, in event-time order. `None` while no
/// contamination is identified.
pub fn critical_onset(
    anomalies: &[&Anomaly],
    policy: &VerdictPolicy,
) -> Option<(EventTimeMs, Vec<Reason>)> {
    let needed = policy.minimum(AnomalyRule::Contaminant) as usize;
    let mut matches: BTreeMap<&str, Vec<&Anomaly>> = BTreeMap::new();
    for &anomaly in anomalies {
        if anomaly.rule == AnomalyRule::Contaminant {
            matches.entry(&anomaly.sensor).or_default().push(anomaly);
        }
    }
    let (onset, sensor) = matches
        .iter_mut()
        .filter(|(_, found)| found.len() >= needed)
        .map(|(sensor, found)| {
            found.sort();
            (found[needed - 1].ts_ms, *sensor)
        })
        .min()?;
    let mut reasons = summarise(matches[sensor][..needed].iter().copied().chain(
        anomalies.iter().copied().filter(|anomaly| {
            // The fingerprint alarms of every array up to the onset.
            anomaly.ts_ms <= onset
                && matches!(
                    anomaly.rule,
                    AnomalyRule::HotellingT2 | AnomalyRule::Spe | AnomalyRule::Similarity
                )
        }),
    ));
    rank_reasons(&mut reasons);
    Some((onset, reasons))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SensorKind;

    fn anomaly(sensor: &str, rule: AnomalyRule, seq: u64) -> Anomaly {
        Anomaly {
            line: "L1".into(),
            sensor: sensor.into(),
            kind: SensorKind::Enose,
            batch: Some("B-1".into()),
            ts_ms: 1_000 * seq as i64,
            seq,
            rule,
            statistic: 10.0 + seq as f64,
            limit: 6.0,
            channels: vec![1],
            contaminant: (rule == AnomalyRule::Contaminant).then(|| "mould".into()),
        }
    }

    /// `(sensor, seq)` of findings, sorted.
    fn seqs(found: &[&Anomaly]) -> Vec<(String, u64)> {
        let mut seqs: Vec<_> = found.iter().map(|a| (a.sensor.clone(), a.seq)).collect();
        seqs.sort();
        seqs
    }

    fn assess(anomalies: &[Anomaly]) -> AgentVerdict {
        let refs: Vec<_> = anomalies.iter().collect();
        assess_quality("L1", "B-1", &refs, &VerdictPolicy::default(), vec![])
    }

    #[test]
    fn isolated_outliers_are_instrument_findings_and_runs_are_product_findings() {
        let anomalies = [
            anomaly("enose-1", AnomalyRule::ZScore, 10),
            anomaly("enose-1", AnomalyRule::ZScore, 20),
            anomaly("enose-1", AnomalyRule::ZScore, 30),
            anomaly("enose-1", AnomalyRule::ZScore, 31),
            anomaly("enose-2", AnomalyRule::ZScore, 40),
            anomaly("enose-2", AnomalyRule::ZScore, 41),
            anomaly("enose-2", AnomalyRule::ZScore, 42),
            anomaly("t-1", AnomalyRule::Gap, 5),
            anomaly("enose-1", AnomalyRule::Spe, 7),
        ];
        let refs: Vec<_> = anomalies.iter().collect();
        let (product, instrument) = split_findings(&refs, &VerdictPolicy::default());
        assert_eq!(
            seqs(&product),
            vec![
                ("enose-1".into(), 7),
                ("enose-2".into(), 40),
                ("enose-2".into(), 41),
                ("enose-2".into(), 42)
            ]
        );
        assert_eq!(instrument.len(), 5);
    }

    #[test]
    fn findings_of_a_sensor_during_its_own_fault_are_the_instruments() {
        let mut stuck = anomaly("enose-1", AnomalyRule::FlatLine, 100);
        stuck.statistic = 20.0;
        let mut gap = anomaly("enose-2", AnomalyRule::Gap, 300);
        gap.statistic = 120.0;
        let anomalies = [
            stuck,
            anomaly("enose-1", AnomalyRule::Spe, 90),
            anomaly("enose-1", AnomalyRule::Spe, 150),
            anomaly("enose-1", AnomalyRule::Spe, 200),
            gap,
            anomaly("enose-2", AnomalyRule::HotellingT2, 170),
            anomaly("enose-2", AnomalyRule::HotellingT2, 100),
        ];
        let refs: Vec<_> = anomalies.iter().collect();
        let (product, instrument) = split_findings(&refs, &VerdictPolicy::default());
        // Within 60 s of enose-1's flat line (100 s) and of enose-2's gap
        // (180 s to 300 s): instrument; further away: product.
        assert_eq!(
            seqs(&product),
            vec![("enose-1".into(), 200), ("enose-2".into(), 100)]
        );
        assert_eq!(instrument.len(), 5);
    }

    #[test]
    fn verdicts_pass_suspect_fail_and_critical() {
        assert_eq!(assess(&[]).assessment, Assessment::Pass);
        let spikes = [
            anomaly("enose-1", AnomalyRule::ZScore, 10),
            anomaly("enose-1", AnomalyRule::ZScore, 20),
            anomaly("enose-1", AnomalyRule::ZScore, 30),
            anomaly("enose-1", AnomalyRule::FlatLine, 40),
        ];
        let verdict = assess(&spikes);
        assert_eq!(verdict.assessment, Assessment::Pass, "{verdict:?}");
        let one_cycle = [anomaly("enose-1", AnomalyRule::Spe, 10)];
        assert_eq!(assess(&one_cycle).assessment, Assessment::Suspect);
        let two_cycles = [
            anomaly("enose-1", AnomalyRule::Spe, 10),
            anomaly("enose-1", AnomalyRule::Spe, 20),
            anomaly("enose-2", AnomalyRule::HotellingT2, 20),
        ];
        let verdict = assess(&two_cycles);
        assert_eq!(verdict.assessment, Assessment::Fail);
        assert!(!verdict.critical);
        assert_eq!(verdict.reasons.len(), 1, "only holding reasons are named");
        let matched = [
            anomaly("enose-1", AnomalyRule::Contaminant, 10),
            anomaly("enose-1", AnomalyRule::Contaminant, 20),
        ];
        let verdict = assess(&matched);
        assert!(verdict.critical);
        assert_eq!(verdict.reasons[0].contaminant.as_deref(), Some("mould"));
    }

    #[test]
    fn the_critical_onset_is_the_match_that_reached_the_minimum_and_stays_put() {
        let mut anomalies = vec![
            anomaly("enose-1", AnomalyRule::Spe, 9),
            anomaly("enose-1", AnomalyRule::Contaminant, 10),
            anomaly("enose-2", AnomalyRule::Contaminant, 12),
        ];
        let refs: Vec<_> = anomalies.iter().collect();
        assert_eq!(critical_onset(&refs, &VerdictPolicy::default()), None);
        anomalies.push(anomaly("enose-2", AnomalyRule::Contaminant, 14));
        anomalies.push(anomaly("enose-1", AnomalyRule::Contaminant, 20));
        let refs: Vec<_> = anomalies.iter().collect();
        let (onset, reasons) = critical_onset(&refs, &VerdictPolicy::default()).unwrap();
        assert_eq!(onset, 14_000, "enose-2 reached two matches first");
        assert!(reasons.iter().any(|r| r.rule == AnomalyRule::Spe));
        // Later matches do not move the onset or its findings.
        anomalies.push(anomaly("enose-2", AnomalyRule::Contaminant, 30));
        let refs: Vec<_> = anomalies.iter().collect();
        assert_eq!(
            critical_onset(&refs, &VerdictPolicy::default()),
            Some((onset, reasons))
        );
    }
}
