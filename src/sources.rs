//! Sources for the runtime: Kafka partitions, and the in-process
//! simulated plant.
//!
//! In-process records carry coordinates shaped like Kafka's: the topic
//! they would be on, the line index as partition, and their position in
//! the line's stream as offset.

use crate::api::metrics::{EngineMetrics, PartitionLabels};
use crate::runtime::{BoxError, RecordSource};
use crate::sim::{LineStream, Plant, SimRecord};
use scent_kafka::source::KafkaSource;
use scent_operators::event_clock::PartitionId;
use scent_operators::model::{InputStream, RawRecord, SourceCoord};
use scent_operators::wire::{encode_batch_event, encode_reading};
use std::time::Duration;

impl RecordSource for KafkaSource {
    fn partitions(&self) -> Vec<PartitionId> {
        KafkaSource::partitions(self)
            .iter()
            .map(|p| p.id())
            .collect()
    }

    fn poll_into(
        &mut self,
        max: usize,
        out: &mut Vec<(PartitionId, RawRecord)>,
    ) -> Result<usize, BoxError> {
        Ok(KafkaSource::poll_into(self, max, Duration::ZERO, out)?)
    }

    fn followers(&self) -> Vec<PartitionId> {
        KafkaSource::partitions(self)
            .iter()
            .filter(|p| matches!(p.stream, InputStream::Batches | InputStream::Models))
            .map(|p| p.id())
            .collect()
    }

    fn start_positions(&self) -> Vec<(PartitionId, String, i64)> {
        KafkaSource::start_positions(self)
    }

    fn caught_up(&self) -> Vec<(PartitionId, bool)> {
        KafkaSource::caught_up(self).into_iter().collect()
    }

    fn finished(&self) -> bool {
        false
    }

    fn report(&self, metrics: &EngineMetrics) {
        for ((topic, partition), lag) in self.lag().snapshot() {
            metrics
                .consumer_lag
                .get_or_create(&PartitionLabels { topic, partition })
                .set(lag);
        }
    }
}

/// The in-process simulated plant as a source: worker `w` of `peers`
/// reads the lines `i` with `i % peers == w`, each line one partition
/// carrying its readings, batch events and malformed records in event-time
/// order. With a `speed`, records are released no faster than `speed`
/// times real time; without, as fast as the dataflow takes them.
pub struct PlantSource {
    lines: Vec<LineCursor>,
    speed: Option<f64>,
    started: std::time::Instant,
    start_ts_ms: i64,
    topics: scent_kafka::Topics,
}

struct LineCursor {
    partition: i32,
    stream: std::iter::Peekable<LineStream>,
    next_offset: i64,
    exhausted: bool,
}

impl PlantSource {
    /// The lines of `worker` among `peers`.
    pub fn new(plant: &Plant, worker: usize, peers: usize, speed: Option<f64>) -> Self {
        let lines = (0..plant.line_names().len())
            .filter(|line| line % peers.max(1) == worker)
            .map(|line| LineCursor {
                partition: line as i32,
                stream: plant.line_stream(line).peekable(),
                next_offset: 0,
                exhausted: false,
            })
            .collect();
        PlantSource {
            lines,
            speed,
            started: std::time::Instant::now(),
            start_ts_ms: plant.config().start_ts_ms,
            topics: scent_kafka::Topics::default(),
        }
    }

    /// Event time up to which records may be released now.
    fn release_limit(&self) -> i64 {
        match self.speed {
            None => i64::MAX,
            Some(speed) => {
                self.start_ts_ms + (self.started.elapsed().as_secs_f64() * 1_000.0 * speed) as i64
            }
        }
    }
}

impl RecordSource for PlantSource {
    fn partitions(&self) -> Vec<PartitionId> {
        self.lines.iter().map(|line| (0, line.partition)).collect()
    }

    fn poll_into(
        &mut self,
        max: usize,
        out: &mut Vec<(PartitionId, RawRecord)>,
    ) -> Result<usize, BoxError> {
        let limit = self.release_limit();
        let per_line = (max / self.lines.len().max(1)).max(1);
        let mut appended = 0;
        for line in &mut self.lines {
            for _ in 0..per_line {
                let Some(next) = line.stream.peek() else {
                    line.exhausted = true;
                    break;
                };
                if next.ts_ms() > limit {
                    break;
                }
                let record = line.stream.next().expect("peeked");
                let (stream, topic, key, payload) = match record {
                    SimRecord::Reading(reading) => (
                        InputStream::Readings,
                        &self.topics.readings,
                        reading.key(),
                        encode_reading(&reading),
                    ),
                    SimRecord::Batch(event) => (
                        InputStream::Batches,
                        &self.topics.batches,
                        event.line.clone(),
                        encode_batch_event(&event),
                    ),
                    SimRecord::Malformed { key, payload, .. } => {
                        (InputStream::Readings, &self.topics.readings, key, payload)
                    }
                };
                out.push((
                    (0, line.partition),
                    RawRecord {
                        stream,
                        source: SourceCoord {
                            topic: topic.clone(),
                            partition: line.partition,
                            offset: line.next_offset,
                        },
                        key: Some(key.into_bytes()),
                        payload,
                    },
                ));
                line.next_offset += 1;
                appended += 1;
            }
        }
        Ok(appended)
    }

    fn start_positions(&self) -> Vec<(PartitionId, String, i64)> {
        self.lines
            .iter()
            .map(|line| ((0, line.partition), self.topics.readings.clone(), 0))
            .collect()
    }

    fn caught_up(&self) -> Vec<(PartitionId, bool)> {
        // Paced lines are never idle: the plant keeps reporting.
        Vec::new()
    }

    fn finished(&self) -> bool {
        self.lines.iter().all(|line| line.exhausted)
    }
}
