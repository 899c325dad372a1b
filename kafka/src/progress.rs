//! The progress topic: what the engine has committed, and from where a
//! restarted engine rebuilds its state.
//!
//! Every output transaction carries one [`ProgressRecord`] on the progress
//! topic (one partition, never compacted or expired). It says that every
//! epoch below `frontier` is committed, names the input offsets the run
//! began at (`origin`: a restart replays from there to rebuild operator
//! state), and lists the source advances of the epochs it commits (see
//! `scent_operators::source_progress`). Read with `read_committed`, the
//! topic holds exactly the committed transactions, so the last record's
//! frontier is where output resumes and the concatenated advances are the
//! replay script.

use crate::error::KafkaError;
use crate::settings::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use scent_operators::event_clock::Epoch;
use scent_operators::source_progress::{PartitionPosition, SourceAdvance};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The `schema` field of progress records.
pub const PROGRESS_SCHEMA: &str = "scent.progress/v1";

/// One committed transaction's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressRecord {
    /// Always [`PROGRESS_SCHEMA`].
    pub schema: String,
    /// Every epoch below this one is committed.
    pub frontier: Epoch,
    /// Timely workers of the run (a restart must use as many).
    pub workers: usize,
    /// Width of an epoch in ms of event time (a restart must use the same:
    /// the recorded frontier moves are epochs).
    pub epoch_ms: u64,
    /// Version of the engine that committed.
    pub engine_version: String,
    /// Where the run began reading each input partition.
    pub origin: Vec<PartitionPosition>,
    /// Source advances emitted at the epochs this transaction commits.
    pub advances: Vec<SourceAdvance>,
}

impl ProgressRecord {
    /// The record as a message value.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("progress records always serialise")
    }

    /// Decodes a message value.
    pub fn decode(topic: &str, payload: &[u8]) -> Result<Self, KafkaError> {
        let malformed = |reason: String| KafkaError::Malformed {
            topic: topic.to_owned(),
            reason,
        };
        let record: ProgressRecord =
            serde_json::from_slice(payload).map_err(|error| malformed(error.to_string()))?;
        if record.schema != PROGRESS_SCHEMA {
            return Err(malformed(format!("unknown schema {:?}", record.schema)));
        }
        Ok(record)
    }
}

/// Everything committed so far, folded from the progress topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommittedProgress {
    /// Every epoch below this one is committed: regenerated output below
    /// it must be suppressed.
    pub frontier: Epoch,
    /// Workers of the committing run.
    pub workers: usize,
    /// Epoch width of the committing run.
    pub epoch_ms: u64,
    /// Where replay starts, per `(topic, partition)`.
    pub origin: BTreeMap<(String, i32), i64>,
    /// The committed advances of each worker, in order.
    pub advances: BTreeMap<usize, Vec<SourceAdvance>>,
    /// Progress records read.
    pub transactions: u64,
}

impl CommittedProgress {
    /// Folds one more committed record in.
    pub fn apply(&mut self, record: ProgressRecord) {
        self.frontier = self.frontier.max(record.frontier);
        self.workers = record.workers;
        self.epoch_ms = record.epoch_ms;
        for position in record.origin {
            self.origin
                .entry((position.topic, position.partition))
                .or_insert(position.next_offset);
        }
        for advance in record.advances {
            self.advances
                .entry(advance.worker)
                .or_default()
                .push(advance);
        }
        self.transactions += 1;
    }
}

/// Reads the whole progress topic as a `read_committed` consumer and folds
/// the records of this engine's group (the record key). `None` when nothing
/// was ever committed. Call after the
/// transactional producer's `init_transactions`, which aborts whatever a
/// crashed predecessor left open, so the read is not blocked by it.
pub fn read_committed_progress(
    settings: &KafkaSettings,
    timeout: Duration,
) -> Result<Option<CommittedProgress>, KafkaError> {
    let topic = &settings.topics.progress;
    let consumer: BaseConsumer<QuietEnd> = settings
        .client_config()
        .set("group.id", format!("{}.progress-reader", settings.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        // At the end of the topic the broker would otherwise hold each
        // fetch for 500 ms before answering that nothing is left.
        .set("fetch.wait.max.ms", "10")
        .create_with_context(QuietEnd)
        .map_err(|error| KafkaError::Config(error.to_string()))?;
    let (low, high) = match consumer.fetch_watermarks(topic, 0, timeout) {
        Ok(watermarks) => watermarks,
        Err(error)
            if matches!(
                error.rdkafka_error_code(),
                Some(
                    rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition
                        | rdkafka::types::RDKafkaErrorCode::UnknownPartition
                        | rdkafka::types::RDKafkaErrorCode::UnknownTopic
                )
            ) =>
        {
            return Err(KafkaError::MissingTopic(topic.clone()))
        }
        Err(error) => return Err(KafkaError::broker("fetch progress watermarks", error)),
    };
    if high <= low {
        return Ok(None);
    }
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, Offset::Offset(low))
        .map_err(|error| KafkaError::broker("assign progress", error))?;
    consumer
        .assign(&list)
        .map_err(|error| KafkaError::broker("assign progress", error))?;
    let deadline = Instant::now() + timeout;
    let mut progress = CommittedProgress::default();
    loop {
        if Instant::now() > deadline {
            return Err(KafkaError::Delivery {
                topic: topic.clone(),
                reason: format!("progress not read to its end within {timeout:?}"),
            });
        }
        match consumer.poll(Duration::from_millis(50)) {
            None => continue,
            Some(Ok(message)) => {
                // Engines of several groups may share the topic: each
                // keys its records by its group id.
                if message.key() != Some(settings.group_id.as_bytes()) {
                    continue;
                }
                let record = ProgressRecord::decode(topic, message.payload().unwrap_or_default())?;
                progress.apply(record);
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            Some(Err(error)) => {
                tracing::warn!(%error, "reading the progress topic, librdkafka retries")
            }
        }
    }
    Ok((progress.transactions > 0).then_some(progress))
}

/// Client context that treats reaching the end of the topic as what it
/// is here, the goal, rather than an error to log.
struct QuietEnd;

impl ClientContext for QuietEnd {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        use rdkafka::error::KafkaError as ClientError;
        if !matches!(
            error,
            ClientError::PartitionEOF(_)
                | ClientError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        ) {
            tracing::error!(%error, reason, "kafka client error reading progress");
        }
    }
}

impl ConsumerContext for QuietEnd {}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(partition: i32, next_offset: i64) -> PartitionPosition {
        PartitionPosition {
            topic: "scent.readings".into(),
            partition,
            next_offset,
        }
    }

    fn record(frontier: Epoch, advances: Vec<SourceAdvance>) -> ProgressRecord {
        ProgressRecord {
            schema: PROGRESS_SCHEMA.into(),
            frontier,
            workers: 2,
            epoch_ms: 50,
            engine_version: "0.1.0".into(),
            origin: vec![position(0, 0), position(1, 5)],
            advances,
        }
    }

    fn advance(worker: usize, from: Epoch, to: Epoch, next: i64) -> SourceAdvance {
        SourceAdvance {
            worker,
            from,
            to,
            positions: vec![position(worker as i32, next)],
        }
    }

    #[test]
    fn records_round_trip_and_foreign_schemas_are_refused() {
        let original = record(7, vec![advance(0, 0, 7, 10)]);
        let decoded = ProgressRecord::decode("p", &original.encode()).unwrap();
        assert_eq!(decoded, original);
        let mut foreign = original;
        foreign.schema = "other/v9".into();
        assert!(ProgressRecord::decode("p", &foreign.encode()).is_err());
    }

    #[test]
    fn folding_keeps_the_first_origin_and_every_advance_in_order() {
        let mut progress = CommittedProgress::default();
        progress.apply(record(3, vec![advance(0, 0, 2, 10), advance(1, 0, 3, 20)]));
        let mut later = record(5, vec![advance(0, 2, 5, 30)]);
        later.origin = vec![position(0, 99)];
        progress.apply(later);
        assert_eq!(progress.frontier, 5);
        assert_eq!(progress.origin[&("scent.readings".into(), 0)], 0);
        assert_eq!(progress.advances[&0].len(), 2);
        assert_eq!(progress.advances[&0][1].to, 5);
        assert_eq!(progress.transactions, 2);
    }
}
