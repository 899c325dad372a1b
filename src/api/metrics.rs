//! Prometheus metrics of the engine, registered on an explicit registry.
//!
//! Names follow `scent_<subsystem>_<noun>_<unit>`; counters are registered
//! without `_total`, which the OpenMetrics encoder appends. Labels are
//! bounded: stage, reason, rule, kind, decision, topic and partition
//! number, never sensor serials or messages.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use scent_operators::model::{Action, AnomalyRule, Decision, RejectReason, Stage};

/// Labels of rejected records.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// Stage that rejected the record.
    pub stage: String,
    /// Stable reason code.
    pub reason: String,
}

/// Labels of actions.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// Action kind.
    pub kind: String,
    /// Decision, or `none`.
    pub decision: String,
}

/// Labels of anomalies.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    /// Detection rule.
    pub rule: String,
}

/// Labels of QARTOD quality flags.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QualityLabels {
    /// The test that flagged the reading, e.g. `spike`.
    pub test: String,
    /// The test's flag: `suspect`, `fail` or `missing`.
    pub flag: String,
}

/// Pipeline stages whose latency is measured.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum LatencyStage {
    /// From an epoch's release by the source to its anomalies being complete.
    anomaly,
    /// From an epoch's release by the source to its decisions being complete.
    verdict,
    /// Time to hand one epoch's output to the sink.
    sink,
    /// Time to commit one output transaction.
    commit,
}

/// Labels of latency histograms.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    /// The stage.
    pub stage: LatencyStage,
}

/// Labels of per-partition gauges.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// Topic.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
}

/// The engine's metrics. Cloning shares the underlying values.
#[derive(Debug, Clone)]
pub struct EngineMetrics {
    /// Records read from the inputs.
    pub records_in: Counter,
    /// Valid readings that entered the dataflow.
    pub readings_in: Counter,
    /// Batch lifecycle events that entered the dataflow.
    pub batch_events_in: Counter,
    /// Model records that entered the dataflow.
    pub model_records_in: Counter,
    /// Changes of sealed batches' decisions that were refused.
    pub late_revisions: Counter,
    /// Rejected records by stage and reason.
    pub rejected: Family<RejectLabels, Counter>,
    /// Anomalies by rule.
    pub anomalies: Family<RuleLabels, Counter>,
    /// Readings flagged `suspect` or worse, by test and flag.
    pub quality_flags: Family<QualityLabels, Counter>,
    /// Actions emitted by kind and decision.
    pub actions_out: Family<ActionLabels, Counter>,
    /// Stage latency in seconds.
    pub stage_latency: Family<StageLabels, Histogram>,
    /// Consumer lag in records per input partition.
    pub consumer_lag: Family<PartitionLabels, Gauge>,
    /// Current event-time frontier (epoch) of worker 0's source.
    pub frontier_epoch: Gauge,
    /// Times a worker skipped reading input because output lagged behind.
    pub backpressure_pauses: Counter,
    /// Output transactions committed.
    pub transactions: Counter,
    /// Completed epochs not written because an earlier run committed them.
    pub suppressed_epochs: Counter,
    /// Times the dataflow was rebuilt from committed progress after a
    /// failure.
    pub engine_restarts: Counter,
    /// Totals over all labels, for progress displays (not exported).
    pub totals: Totals,
}

/// Label-free totals, for progress displays; not exported.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Rejected records.
    pub rejected: Counter,
    /// Anomalies.
    pub anomalies: Counter,
    /// Actions.
    pub actions: Counter,
    /// Batches held or rejected, by their sealed (final) decision.
    pub held: Counter,
    /// Batches whose decision is sealed.
    pub sealed: Counter,
}

impl EngineMetrics {
    /// Creates the metrics and registers them under `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = EngineMetrics {
            records_in: Counter::default(),
            readings_in: Counter::default(),
            batch_events_in: Counter::default(),
            model_records_in: Counter::default(),
            late_revisions: Counter::default(),
            rejected: Family::default(),
            anomalies: Family::default(),
            quality_flags: Family::default(),
            actions_out: Family::default(),
            stage_latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_5, 2.0, 18))
            }),
            consumer_lag: Family::default(),
            frontier_epoch: Gauge::default(),
            backpressure_pauses: Counter::default(),
            transactions: Counter::default(),
            suppressed_epochs: Counter::default(),
            engine_restarts: Counter::default(),
            totals: Totals::default(),
        };
        let ingest = registry.sub_registry_with_prefix("ingest");
        ingest.register(
            "records",
            "Records read from the input topics",
            metrics.records_in.clone(),
        );
        ingest.register(
            "readings",
            "Valid readings that entered the dataflow",
            metrics.readings_in.clone(),
        );
        ingest.register(
            "batch_events",
            "Batch lifecycle events that entered the dataflow",
            metrics.batch_events_in.clone(),
        );
        ingest.register(
            "model_records",
            "Model records (scent.models) that entered the dataflow",
            metrics.model_records_in.clone(),
        );
        ingest.register(
            "rejected",
            "Records sent to the dead-letter queue, by stage and reason",
            metrics.rejected.clone(),
        );
        ingest.register(
            "consumer_lag",
            "Records not yet consumed, per input partition",
            metrics.consumer_lag.clone(),
        );
        ingest.register(
            "backpressure_pauses",
            "Worker steps that skipped reading input because output lagged behind",
            metrics.backpressure_pauses.clone(),
        );
        let output = registry.sub_registry_with_prefix("output");
        output.register(
            "transactions",
            "Output transactions committed (actions, dead letters, progress, offsets)",
            metrics.transactions.clone(),
        );
        output.register(
            "suppressed_epochs",
            "Completed epochs regenerated by a replay and not written again",
            metrics.suppressed_epochs.clone(),
        );
        registry.register(
            "engine_restarts",
            "Times the dataflow was recovered from committed progress after a failure",
            metrics.engine_restarts.clone(),
        );
        let dataflow = registry.sub_registry_with_prefix("dataflow");
        dataflow.register(
            "anomalies",
            "Anomalies raised, by rule",
            metrics.anomalies.clone(),
        );
        dataflow.register(
            "quality_flags",
            "Readings flagged suspect or worse by the QARTOD tests, by test and that test's flag",
            metrics.quality_flags.clone(),
        );
        dataflow.register(
            "actions",
            "Actions emitted (every revision), by kind and decision",
            metrics.actions_out.clone(),
        );
        dataflow.register(
            "late_revisions",
            "Changes of a sealed batch's decisions that were refused (not sent)",
            metrics.late_revisions.clone(),
        );
        dataflow.register_with_unit(
            "stage_latency",
            "Latency of each stage per epoch",
            Unit::Seconds,
            metrics.stage_latency.clone(),
        );
        dataflow.register(
            "frontier_epoch",
            "Event-time frontier of the source, in epochs",
            metrics.frontier_epoch.clone(),
        );
        // Pre-create the reject series so dashboards show zeros, not gaps.
        for reason in RejectReason::ALL {
            let _ = metrics.rejected.get_or_create(&RejectLabels {
                stage: reason.stage().as_str().to_owned(),
                reason: reason.code().to_owned(),
            });
        }
        metrics
    }

    /// Counts a rejection.
    pub fn reject(&self, stage: Stage, reason: RejectReason) {
        self.rejected
            .get_or_create(&RejectLabels {
                stage: stage.as_str().to_owned(),
                reason: reason.code().to_owned(),
            })
            .inc();
        self.totals.rejected.inc();
    }

    /// Counts an anomaly.
    pub fn anomaly(&self, rule: AnomalyRule) {
        self.anomalies
            .get_or_create(&RuleLabels {
                rule: rule.as_str().to_owned(),
            })
            .inc();
        self.totals.anomalies.inc();
    }

    /// Counts a reading flagged by the QARTOD tests, once per test that
    /// flagged it, under that test's flag.
    pub fn quality_flag<'a>(&self, tests: impl IntoIterator<Item = (&'a str, &'a str)>) {
        for (test, flag) in tests {
            self.quality_flags
                .get_or_create(&QualityLabels {
                    test: test.to_owned(),
                    flag: flag.to_owned(),
                })
                .inc();
        }
    }

    /// Counts an action.
    pub fn action(&self, action: &Action) {
        let kind = serde_json::to_value(action.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        self.actions_out
            .get_or_create(&ActionLabels {
                kind,
                decision: action.decision.map_or("none", Decision::as_str).to_owned(),
            })
            .inc();
        self.totals.actions.inc();
        if action.sealed {
            self.totals.sealed.inc();
            if matches!(action.decision, Some(Decision::Hold | Decision::Reject)) {
                self.totals.held.inc();
            }
        }
    }

    /// Records a latency observation.
    pub fn observe_latency(&self, stage: LatencyStage, seconds: f64) {
        self.stage_latency
            .get_or_create(&StageLabels { stage })
            .observe(seconds);
    }
}
