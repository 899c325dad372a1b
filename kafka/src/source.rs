//! The Kafka source: the input partitions of one worker, read in order.
//!
//! Partition `p` of each input topic (readings, batch events) belongs to
//! worker `p % peers`. Each worker `assign()`s its partitions (no consumer-group
//! rebalancing, which would fight timely's fixed dataflow) and polls them
//! without blocking from its own thread. A worker with no partitions reads
//! nothing and its source releases its capability at once.
//!
//! Caught-up partitions are detected with librdkafka's partition-EOF
//! events; consumer lag per partition comes from librdkafka's statistics
//! and is published through [`LagReport`] for metrics.

use crate::error::KafkaError;
use crate::settings::{KafkaSettings, StartFrom};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use scent_operators::event_clock::PartitionId;
use scent_operators::model::{InputStream, RawRecord, SourceCoord};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One input partition and the stream it carries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AssignedPartition {
    /// Which input stream.
    pub stream: InputStream,
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
}

impl AssignedPartition {
    /// The identifier used by the event clock.
    pub fn id(&self) -> PartitionId {
        (stream_index(self.stream), self.partition)
    }
}

/// The event-clock index of an input stream.
pub fn stream_index(stream: InputStream) -> u8 {
    match stream {
        InputStream::Readings => 0,
        InputStream::Batches => 1,
        InputStream::Models => 2,
    }
}

/// Spreads the partitions of the input topics over `peers` workers and
/// returns those of `worker`: partition `p` of every topic belongs to
/// worker `p % peers`, so the few batch-event partitions sit with readings
/// partitions (whose clocks move the frontier) on the first workers.
pub fn assign_partitions(
    inputs: &[(InputStream, String, i32)],
    worker: usize,
    peers: usize,
) -> Vec<AssignedPartition> {
    inputs
        .iter()
        .flat_map(|(stream, topic, count)| {
            (0..*count)
                .filter(move |partition| *partition as usize % peers.max(1) == worker)
                .map(move |partition| AssignedPartition {
                    stream: *stream,
                    topic: topic.clone(),
                    partition,
                })
        })
        .collect()
}

/// Consumer lag per `(topic, partition)`, as last reported by librdkafka.
#[derive(Debug, Clone, Default)]
pub struct LagReport {
    lag: Arc<Mutex<BTreeMap<(String, i32), i64>>>,
}

impl LagReport {
    /// The latest lag of every partition reported so far.
    pub fn snapshot(&self) -> BTreeMap<(String, i32), i64> {
        self.lag.lock().expect("lag lock").clone()
    }
}

/// Records between what this consumer has handed to the application and
/// the partition's last stable offset. librdkafka's own `consumer_lag` is
/// measured from the committed offset, which scent does not use (offsets
/// live with the outputs), so it is derived here from the positions.
pub fn partition_lag(stats: &rdkafka::statistics::Partition) -> Option<i64> {
    if stats.partition < 0 || stats.ls_offset < 0 {
        return None;
    }
    let position = if stats.app_offset >= 0 {
        stats.app_offset
    } else {
        stats.lo_offset.max(0)
    };
    Some((stats.ls_offset - position).max(0))
}

/// Partitions confirmed caught up by the latest statistics, shared between
/// librdkafka's callbacks and the source.
#[derive(Debug, Clone, Default)]
pub struct CaughtUpReport {
    caught_up: Arc<Mutex<BTreeMap<(String, i32), bool>>>,
    last_error: Arc<Mutex<Option<std::time::Instant>>>,
}

/// How long after a client error no partition counts as caught up. After a
/// broker outage the producers feeding the input are recovering too, and
/// their backlogs arrive partition by partition; a partition whose backlog
/// is late must not look idle meanwhile.
pub const OUTAGE_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

impl CaughtUpReport {
    fn get(&self, topic: &str, partition: i32) -> bool {
        if self
            .last_error
            .lock()
            .expect("error time lock")
            .is_some_and(|at| at.elapsed() < OUTAGE_GRACE)
        {
            return false;
        }
        self.caught_up
            .lock()
            .expect("caught-up lock")
            .get(&(topic.to_owned(), partition))
            .copied()
            .unwrap_or(false)
    }

    fn set(&self, snapshot: BTreeMap<(String, i32), bool>) {
        *self.caught_up.lock().expect("caught-up lock") = snapshot;
    }

    /// Forgets every caught-up partition, for [`OUTAGE_GRACE`].
    fn clear(&self) {
        self.caught_up.lock().expect("caught-up lock").clear();
        *self.last_error.lock().expect("error time lock") = Some(std::time::Instant::now());
    }
}

/// Consumer context that captures lag and caught-up partitions from
/// statistics, and forgets every caught-up partition on a client error.
///
/// A partition only counts as caught up when a statistics report says so
/// positively: its fetcher is active, its leader's connection is up, and
/// nothing is left between the application's position and the last stable
/// offset; and not within [`OUTAGE_GRACE`] of a client error. A broker
/// outage therefore never looks like a quiet partition (whose idleness
/// would let the frontier move on and turn the records delivered after the
/// outage into late ones).
#[derive(Debug, Clone, Default)]
pub struct SourceContext {
    lag: LagReport,
    caught_up: CaughtUpReport,
}

impl ClientContext for SourceContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        // End-of-partition events are how caught-up partitions are found,
        // not failures.
        use rdkafka::error::KafkaError as ClientError;
        use rdkafka::types::RDKafkaErrorCode;
        let end_of_partition = matches!(
            error,
            ClientError::PartitionEOF(_) | ClientError::Global(RDKafkaErrorCode::PartitionEOF)
        );
        if !end_of_partition {
            self.caught_up.clear();
            tracing::error!(%error, reason, "kafka consumer error");
        }
    }

    fn stats(&self, statistics: Statistics) {
        let brokers_up: std::collections::BTreeSet<i32> = statistics
            .brokers
            .values()
            .filter(|broker| broker.state == "UP")
            .map(|broker| broker.nodeid)
            .collect();
        let mut lag = self.lag.lag.lock().expect("lag lock");
        let mut caught_up = BTreeMap::new();
        for (name, topic) in statistics.topics {
            for (partition, stats) in topic.partitions {
                if let Some(records) = partition_lag(&stats) {
                    lag.insert((name.clone(), partition), records);
                    let confirmed = records == 0
                        && stats.fetch_state == "active"
                        && brokers_up.contains(&stats.leader);
                    caught_up.insert((name.clone(), partition), confirmed);
                }
            }
        }
        self.caught_up.set(caught_up);
    }
}

impl ConsumerContext for SourceContext {}

/// The partitions of one worker.
pub struct KafkaSource {
    consumer: Option<BaseConsumer<SourceContext>>,
    partitions: Vec<AssignedPartition>,
    /// The offset each partition was first read from.
    starts: Vec<i64>,
    streams: BTreeMap<(String, i32), InputStream>,
    /// Partitions whose last event was an end-of-partition.
    at_end: BTreeMap<PartitionId, bool>,
    lag: LagReport,
    confirmed: CaughtUpReport,
}

impl KafkaSource {
    /// Connects and assigns this worker's share of the input partitions.
    /// A partition named in `start_at` is read from that offset (a restart
    /// replaying from where the first run began); any other from the
    /// oldest or newest retained offset, as `settings.start_from` says.
    pub fn new(
        settings: &KafkaSettings,
        inputs: &[(InputStream, String, i32)],
        worker: usize,
        peers: usize,
        start_at: &BTreeMap<(String, i32), i64>,
    ) -> Result<Self, KafkaError> {
        let partitions = assign_partitions(inputs, worker, peers);
        let context = SourceContext::default();
        let lag = context.lag.clone();
        let confirmed = context.caught_up.clone();
        let streams = partitions
            .iter()
            .map(|p| ((p.topic.clone(), p.partition), p.stream))
            .collect();
        let at_end = partitions.iter().map(|p| (p.id(), false)).collect();
        if partitions.is_empty() {
            return Ok(KafkaSource {
                consumer: None,
                partitions,
                starts: Vec::new(),
                streams,
                at_end,
                lag,
                confirmed,
            });
        }
        let consumer: BaseConsumer<SourceContext> = settings
            .client_config()
            .set("group.id", &settings.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", "1000")
            .set("queued.max.messages.kbytes", "16384")
            .create_with_context(context)
            .map_err(|error| KafkaError::Config(error.to_string()))?;
        let mut list = TopicPartitionList::new();
        let mut starts = Vec::with_capacity(partitions.len());
        for partition in &partitions {
            let key = (partition.topic.clone(), partition.partition);
            let start = match start_at.get(&key) {
                Some(&offset) => offset,
                None => {
                    let (low, high) = consumer
                        .fetch_watermarks(&key.0, key.1, Duration::from_secs(30))
                        .map_err(|error| KafkaError::broker("fetch watermarks", error))?;
                    // Models are read whole whatever the start: the
                    // compacted topic is the current set of models.
                    match (partition.stream, settings.start_from) {
                        (InputStream::Models, _) | (_, StartFrom::Earliest) => low,
                        (_, StartFrom::Latest) => high,
                    }
                }
            };
            starts.push(start);
            list.add_partition_offset(&partition.topic, partition.partition, Offset::Offset(start))
                .map_err(|error| KafkaError::broker("assign", error))?;
        }
        consumer
            .assign(&list)
            .map_err(|error| KafkaError::broker("assign", error))?;
        Ok(KafkaSource {
            consumer: Some(consumer),
            partitions,
            starts,
            streams,
            at_end,
            lag,
            confirmed,
        })
    }

    /// The partitions of this worker.
    pub fn partitions(&self) -> &[AssignedPartition] {
        &self.partitions
    }

    /// Every partition with the offset it was first read from.
    pub fn start_positions(&self) -> Vec<(PartitionId, String, i64)> {
        self.partitions
            .iter()
            .zip(&self.starts)
            .map(|(partition, &start)| (partition.id(), partition.topic.clone(), start))
            .collect()
    }

    /// Lag reports, for metrics.
    pub fn lag(&self) -> LagReport {
        self.lag.clone()
    }

    /// Whether each partition has been read up to its end: its last event
    /// was an end-of-partition, and the latest statistics confirm it (see
    /// [`SourceContext`]). librdkafka's end-of-partition event names only
    /// the partition number, so it is marked on every topic of this worker
    /// with that number; the statistics, which name the topic, tell them
    /// apart.
    pub fn caught_up(&self) -> BTreeMap<PartitionId, bool> {
        self.partitions
            .iter()
            .map(|assigned| {
                let at_end = self.at_end.get(&assigned.id()).copied().unwrap_or(false);
                let confirmed = self.confirmed.get(&assigned.topic, assigned.partition);
                (assigned.id(), at_end && confirmed)
            })
            .collect()
    }

    /// Appends up to `max` records to `out`, waiting at most `wait` for
    /// the first one. Returns the number appended.
    pub fn poll_into(
        &mut self,
        max: usize,
        wait: Duration,
        out: &mut Vec<(PartitionId, RawRecord)>,
    ) -> Result<usize, KafkaError> {
        let Some(consumer) = &self.consumer else {
            return Ok(0);
        };
        let mut appended = 0;
        let mut timeout = wait;
        while appended < max {
            let Some(result) = consumer.poll(timeout) else {
                break;
            };
            timeout = Duration::ZERO;
            match result {
                Ok(message) => {
                    let key = (message.topic().to_owned(), message.partition());
                    let Some(&stream) = self.streams.get(&key) else {
                        continue;
                    };
                    let id = (stream_index(stream), message.partition());
                    self.at_end.insert(id, false);
                    out.push((
                        id,
                        RawRecord {
                            stream,
                            source: SourceCoord {
                                topic: key.0,
                                partition: key.1,
                                offset: message.offset(),
                            },
                            key: message.key().map(<[u8]>::to_vec),
                            payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                        },
                    ));
                    appended += 1;
                }
                Err(rdkafka::error::KafkaError::PartitionEOF(partition)) => {
                    for assigned in &self.partitions {
                        if assigned.partition == partition {
                            // See `caught_up` for partitions of two topics
                            // that share this number.
                            self.at_end.insert(assigned.id(), true);
                        }
                    }
                }
                // librdkafka retries transient failures (a broker restart, a
                // lost connection) by itself; only a fatal error ends the
                // source, which stops the engine for a restart.
                Err(error @ rdkafka::error::KafkaError::MessageConsumptionFatal(_)) => {
                    return Err(KafkaError::broker("consume", error))
                }
                Err(error) => {
                    // Nothing is caught up until statistics confirm it again.
                    self.confirmed.clear();
                    tracing::warn!(%error, "kafka consume error, librdkafka retries");
                    break;
                }
            }
        }
        Ok(appended)
    }
}
