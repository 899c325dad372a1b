//! Sinks for completed epochs: Kafka topics, JSON-lines files, memory.

use crate::api::metrics::{EngineMetrics, LatencyStage};
use crate::engine::Fatal;
use crate::runtime::{BoxError, OutputSink};
use scent_kafka::codec::encode_action;
use scent_kafka::sink::{KafkaEpochSink, SinkCounts};
use scent_kafka::KafkaError;
use scent_operators::epoch_sink::EpochOutput;
use scent_operators::model::{Action, ActionKind, DeadLetter};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The Kafka sink, reporting what it does to the engine's metrics.
pub struct MeteredKafkaSink {
    sink: KafkaEpochSink,
    metrics: EngineMetrics,
    reported: SinkCounts,
}

impl MeteredKafkaSink {
    /// Wraps `sink`.
    pub fn new(sink: KafkaEpochSink, metrics: EngineMetrics) -> Self {
        MeteredKafkaSink {
            sink,
            metrics,
            reported: SinkCounts::default(),
        }
    }

    fn report(&mut self) {
        let counts = self.sink.counts();
        self.metrics
            .transactions
            .inc_by(counts.transactions - self.reported.transactions);
        self.metrics
            .suppressed_epochs
            .inc_by(counts.suppressed_epochs - self.reported.suppressed_epochs);
        self.reported = counts;
    }
}

impl OutputSink for MeteredKafkaSink {
    fn emit(&mut self, output: &EpochOutput) -> Result<(), BoxError> {
        self.sink.emit(output).map_err(fenced_is_fatal)?;
        self.report();
        Ok(())
    }

    fn commit(&mut self) -> Result<(), BoxError> {
        let begun = std::time::Instant::now();
        self.sink.commit(false).map_err(fenced_is_fatal)?;
        if self.sink.counts().transactions > self.reported.transactions {
            self.metrics
                .observe_latency(LatencyStage::commit, begun.elapsed().as_secs_f64());
        }
        self.report();
        Ok(())
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        self.sink
            .flush(Duration::from_secs(30))
            .map_err(fenced_is_fatal)?;
        self.report();
        Ok(())
    }
}

/// A fenced producer means a newer engine of the same group took over:
/// this one must stop, not recover and fence it back.
fn fenced_is_fatal(error: KafkaError) -> BoxError {
    if error.is_fenced() {
        Box::new(Fatal(format!(
            "another scent engine with the same group id took over the output \
             ({error}); this one stops"
        )))
    } else {
        Box::new(error)
    }
}

/// Everything the engine emitted, collected in memory (shared by workers).
#[derive(Debug, Clone, Default)]
pub struct Collected {
    inner: Arc<Mutex<CollectedOutput>>,
}

/// The collected actions and dead letters.
#[derive(Debug, Clone, Default)]
pub struct CollectedOutput {
    /// Actions with the epoch they were emitted at.
    pub actions: Vec<(u64, Action)>,
    /// Dead letters with their epoch.
    pub dead_letters: Vec<(u64, DeadLetter)>,
}

impl Collected {
    /// A sink that appends to this collection.
    pub fn sink(&self) -> CollectingSink {
        CollectingSink {
            target: self.clone(),
        }
    }

    /// How many batches have a sealed (final) decision among the actions
    /// collected so far, and how many dead letters were collected.
    pub fn counts(&self) -> (usize, usize) {
        let collected = self.inner.lock().expect("collected lock");
        let sealed = collected
            .actions
            .iter()
            .filter(|(_, action)| action.kind == ActionKind::BatchRelease && action.sealed)
            .count();
        (sealed, collected.dead_letters.len())
    }

    /// Everything collected, in a deterministic order (epoch, key, revision).
    pub fn take_sorted(&self) -> CollectedOutput {
        let mut output = std::mem::take(&mut *self.inner.lock().expect("collected lock"));
        output.actions.sort_by(|(e1, a1), (e2, a2)| {
            (e1, a1.key(), a1.revision, &a1.action_id).cmp(&(
                e2,
                a2.key(),
                a2.revision,
                &a2.action_id,
            ))
        });
        output
            .dead_letters
            .sort_by(|(e1, d1), (e2, d2)| (e1, &d1.record.source).cmp(&(e2, &d2.record.source)));
        output
    }
}

/// Appends completed epochs to a [`Collected`].
pub struct CollectingSink {
    target: Collected,
}

impl OutputSink for CollectingSink {
    fn emit(&mut self, output: &EpochOutput) -> Result<(), BoxError> {
        let mut collected = self.target.inner.lock().expect("collected lock");
        collected
            .actions
            .extend(output.actions.iter().map(|a| (output.epoch, a.clone())));
        collected.dead_letters.extend(
            output
                .dead_letters
                .iter()
                .map(|d| (output.epoch, d.clone())),
        );
        Ok(())
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
}

/// One dead letter as a JSON line: the original bytes (as UTF-8 text when
/// they are, else hex), the source and the rejection.
pub fn dead_letter_json(letter: &DeadLetter) -> serde_json::Value {
    let payload = match std::str::from_utf8(&letter.record.payload) {
        Ok(text) => serde_json::json!({ "text": text }),
        Err(_) => serde_json::json!({ "hex": hex::encode(&letter.record.payload) }),
    };
    serde_json::json!({
        "source": letter.record.source,
        "key": letter.record.key.as_deref().map(String::from_utf8_lossy),
        "stage": letter.rejection.stage,
        "reason_code": letter.rejection.reason.code(),
        "reason": letter.rejection.detail,
        "payload": payload,
    })
}

/// Writes collected output to `DIR/actions.jsonl` (the exact message
/// values of `scent.actions`) and `DIR/dead-letters.jsonl`.
pub fn write_jsonl(output: &CollectedOutput, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut actions = BufWriter::new(File::create(dir.join("actions.jsonl"))?);
    for (_, action) in &output.actions {
        actions.write_all(&encode_action(action))?;
        actions.write_all(b"\n")?;
    }
    actions.flush()?;
    let mut letters = BufWriter::new(File::create(dir.join("dead-letters.jsonl"))?);
    for (_, letter) in &output.dead_letters {
        serde_json::to_writer(&mut letters, &dead_letter_json(letter))?;
        letters.write_all(b"\n")?;
    }
    letters.flush()
}
