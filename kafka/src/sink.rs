//! The Kafka sink: each completed epoch's actions and dead letters go to
//! `scent.actions` and `scent.readings.dlq`.
//!
//! Records of one epoch are queued in their deterministic order (actions by
//! key and id, dead letters by source coordinates); the idempotent producer
//! keeps per-partition order across retries. Delivery is at least once:
//! after a restart the engine replays its input and regenerates the same
//! actions with the same ids, so consumers and the archive deduplicate by
//! `action_id`.

use crate::codec::{dead_letter_headers, encode_action};
use crate::error::KafkaError;
use crate::producer::{OutgoingRecord, RecordProducer};
use crate::settings::KafkaSettings;
use scent_operators::epoch_sink::EpochOutput;

/// Writes completed epochs to the output topics.
pub struct KafkaEpochSink {
    producer: RecordProducer,
    actions_topic: String,
    dead_letters_topic: String,
    worker: usize,
}

impl KafkaEpochSink {
    /// A sink for `worker`, with its own producer.
    pub fn new(settings: &KafkaSettings, worker: usize) -> Result<Self, KafkaError> {
        Ok(KafkaEpochSink {
            producer: RecordProducer::new(settings)?,
            actions_topic: settings.topics.actions.clone(),
            dead_letters_topic: settings.topics.dead_letters.clone(),
            worker,
        })
    }

    /// Queues one epoch's output.
    pub fn emit(&mut self, output: &EpochOutput) -> Result<(), KafkaError> {
        for action in &output.actions {
            let payload = encode_action(action);
            self.producer.send(OutgoingRecord {
                topic: &self.actions_topic,
                key: Some(action.key().as_bytes()),
                payload: &payload,
                headers: &[],
                timestamp_ms: None,
            })?;
        }
        for letter in &output.dead_letters {
            let headers = dead_letter_headers(letter, self.worker);
            self.producer.send(OutgoingRecord {
                topic: &self.dead_letters_topic,
                key: letter.record.key.as_deref(),
                payload: &letter.record.payload,
                headers: &headers,
                timestamp_ms: None,
            })?;
        }
        self.producer.poll();
        self.producer.take_failure().map_or(Ok(()), Err)
    }

    /// Waits for every queued record to be delivered.
    pub fn flush(&self, timeout: std::time::Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }
}
