//! Ingest: the source-side stages every record passes before it enters the
//! dataflow: decode, validate, duplicate check and event-time admission.
//!
//! These stages run where the original bytes are at hand, inside the
//! source of each worker, in partition order. That keeps rejections
//! deterministic (they depend on the bytes and the order of one partition
//! only) and means the dataflow itself carries decoded values, never
//! payloads. Every record ends as exactly one [`Ingested`]: a reading or a
//! batch event with the epoch to send it at, or a [`DeadLetter`] with the
//! original bytes, its source coordinates and the stage and reason of the
//! rejection. Nothing is dropped.
//!
//! Duplicate detection remembers, per `line/sensor`, the sequence numbers
//! delivered within the allowed lateness (plus one epoch) of event time: a
//! reading that repeats one of them is a duplicate. Readings reordered
//! within the lateness are accepted, and so is a gateway that restarted its
//! counter (its low numbers were forgotten long ago). A repeat older than
//! that lies behind the watermark and is rejected as late.
//!
//! Batch lifecycle events are never late: behind the frontier they enter
//! at the frontier, because a batch whose end event arrives late must still
//! be decided. Model records have no event time: they enter at the
//! frontier and apply from there on (`crate::model_registry`).

use crate::event_clock::{Admission, Epoch, EventClock, PartitionId};
use crate::model::{
    BatchEvent, DeadLetter, EventTimeMs, InputStream, RawRecord, Reading, RejectReason, Rejection,
    SourceCoord, Stage,
};
use crate::model_registry::{decode_model_record, ModelRecord};
use crate::validate::{validate_batch_event, validate_reading, ValidationRules};
use crate::wire::{decode_batch_event, decode_reading, DecodeLimits};
use std::collections::{HashMap, VecDeque};

/// The outcome of ingesting one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Ingested {
    /// A valid reading, to be sent at `epoch`.
    Reading {
        /// Logical time to send at.
        epoch: Epoch,
        /// The reading.
        reading: Reading,
        /// Where it came from.
        source: SourceCoord,
    },
    /// A valid batch lifecycle event, to be sent at `epoch`.
    Batch {
        /// Logical time to send at.
        epoch: Epoch,
        /// The event.
        event: BatchEvent,
        /// Where it came from.
        source: SourceCoord,
    },
    /// A valid model record, to be sent at the current frontier (a model
    /// applies from when it is read).
    Model {
        /// Logical time to send at.
        epoch: Epoch,
        /// The record.
        record: ModelRecord,
        /// Where it came from.
        source: SourceCoord,
    },
    /// A rejected record, to be sent to the dead-letter queue at the
    /// current frontier.
    Rejected(DeadLetter),
}

/// The sequence numbers each sensor delivered recently.
///
/// A reading repeats an earlier one when its sensor delivered the same
/// sequence number at an event time less than `retain_ms` away. Older
/// repeats need no memory: they lie behind the watermark and are rejected
/// as late. Memory per sensor: the readings of `retain_ms`.
#[derive(Debug, Clone, Default)]
pub struct SequenceTracker {
    retain_ms: EventTimeMs,
    /// By line, then sensor: looked up with borrowed names, so the check
    /// of a known sensor allocates nothing.
    sensors: HashMap<String, HashMap<String, RecentSequences>>,
}

#[derive(Debug, Clone, Default)]
struct RecentSequences {
    /// `(event time, seq)` in arrival order.
    order: VecDeque<(EventTimeMs, u64)>,
    /// Event time of each remembered sequence number.
    seen: HashMap<u64, EventTimeMs>,
    newest_ts_ms: EventTimeMs,
}

impl SequenceTracker {
    /// A tracker remembering `retain_ms` of event time per sensor.
    pub fn new(retain_ms: EventTimeMs) -> Self {
        SequenceTracker {
            retain_ms,
            sensors: HashMap::new(),
        }
    }

    /// Whether `reading` repeats a sequence number its sensor delivered
    /// recently.
    pub fn check(&self, reading: &Reading) -> Result<(), Rejection> {
        let recent = self
            .sensors
            .get(&reading.line)
            .and_then(|line| line.get(&reading.sensor));
        match recent {
            Some(recent)
                if recent
                    .seen
                    .get(&reading.seq)
                    .is_some_and(|&ts_ms| (reading.ts_ms - ts_ms).abs() <= self.retain_ms) =>
            {
                Err(Rejection::new(
                    Stage::Duplicate,
                    RejectReason::DuplicateSequence,
                    format!("{} already delivered seq {}", reading.key(), reading.seq),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Remembers an admitted reading.
    pub fn record(&mut self, reading: &Reading) {
        let line = match self.sensors.get_mut(&reading.line) {
            Some(line) => line,
            None => self.sensors.entry(reading.line.clone()).or_default(),
        };
        let recent = match line.get_mut(&reading.sensor) {
            Some(recent) => recent,
            None => line.entry(reading.sensor.clone()).or_default(),
        };
        recent.order.push_back((reading.ts_ms, reading.seq));
        recent.seen.insert(reading.seq, reading.ts_ms);
        recent.newest_ts_ms = recent.newest_ts_ms.max(reading.ts_ms);
        let horizon = recent.newest_ts_ms.saturating_sub(self.retain_ms);
        while let Some(&(ts_ms, seq)) = recent.order.front() {
            if ts_ms >= horizon {
                break;
            }
            recent.order.pop_front();
            if recent.seen.get(&seq) == Some(&ts_ms) {
                recent.seen.remove(&seq);
            }
        }
    }

    /// Number of sensors tracked.
    pub fn len(&self) -> usize {
        self.sensors.values().map(HashMap::len).sum()
    }

    /// Whether no sensor is tracked yet.
    pub fn is_empty(&self) -> bool {
        self.sensors.is_empty()
    }
}

/// The ingest stages of one worker.
#[derive(Debug, Clone)]
pub struct Ingestor {
    limits: DecodeLimits,
    rules: ValidationRules,
    clock: EventClock,
    sequences: SequenceTracker,
}

impl Ingestor {
    /// An ingestor with the given limits, rules and clock.
    pub fn new(limits: DecodeLimits, rules: ValidationRules, clock: EventClock) -> Self {
        // Anything older than the lateness (plus the epoch it may share) is
        // rejected as late before duplicates matter.
        let config = clock.config();
        let retain_ms = (config.allowed_lateness_ms + config.epoch_ms) as EventTimeMs;
        Ingestor {
            limits,
            rules,
            clock,
            sequences: SequenceTracker::new(retain_ms),
        }
    }

    /// The event clock, to read or advance the frontier.
    pub fn clock(&self) -> &EventClock {
        &self.clock
    }

    /// The event clock, mutably.
    pub fn clock_mut(&mut self) -> &mut EventClock {
        &mut self.clock
    }

    /// Runs one record through decode, validate, duplicate check and
    /// admission.
    pub fn ingest(&mut self, record: RawRecord, partition: PartitionId, now_ms: u64) -> Ingested {
        let ingested = match record.stream {
            InputStream::Readings => self.ingest_reading(record, partition, now_ms),
            InputStream::Batches => self.ingest_batch_event(record, partition, now_ms),
            InputStream::Models => self.ingest_model(record),
        };
        if matches!(ingested, Ingested::Rejected(_)) {
            // Dead letters are sent at the frontier.
            self.clock.note_sent_at_frontier();
        }
        ingested
    }

    fn ingest_reading(
        &mut self,
        record: RawRecord,
        partition: PartitionId,
        now_ms: u64,
    ) -> Ingested {
        let reading = match decode_reading(&record.payload, &self.limits)
            .and_then(|reading| validate_reading(&reading, &self.rules).map(|()| reading))
            .and_then(|reading| self.sequences.check(&reading).map(|()| reading))
        {
            Ok(reading) => reading,
            Err(rejection) => return dead_letter(record, rejection),
        };
        match self.clock.admit(partition, reading.ts_ms, now_ms) {
            Admission::OnTime(epoch) => {
                self.sequences.record(&reading);
                Ingested::Reading {
                    epoch,
                    reading,
                    source: record.source,
                }
            }
            Admission::Late { watermark_ms, .. } => {
                dead_letter(record, late(reading.ts_ms, watermark_ms))
            }
        }
    }

    fn ingest_batch_event(
        &mut self,
        record: RawRecord,
        partition: PartitionId,
        now_ms: u64,
    ) -> Ingested {
        let event = match decode_batch_event(&record.payload, &self.limits)
            .and_then(|event| validate_batch_event(&event, &self.rules).map(|()| event))
        {
            Ok(event) => event,
            Err(rejection) => return dead_letter(record, rejection),
        };
        // A lifecycle event is never late: the decision it triggers depends
        // on the batch, not on the epoch, and a batch whose end arrives late
        // must still be decided. Behind the frontier it enters at the
        // frontier.
        let epoch = match self.clock.admit(partition, event.ts_ms, now_ms) {
            Admission::OnTime(epoch) => epoch,
            Admission::Late { .. } => {
                self.clock.note_sent_at_frontier();
                self.clock.frontier()
            }
        };
        Ingested::Batch {
            epoch,
            event,
            source: record.source,
        }
    }
}

impl Ingestor {
    fn ingest_model(&mut self, record: RawRecord) -> Ingested {
        match decode_model_record(&record.payload) {
            Ok(model) => {
                self.clock.note_sent_at_frontier();
                Ingested::Model {
                    epoch: self.clock.frontier(),
                    record: model,
                    source: record.source,
                }
            }
            Err(rejection) => dead_letter(record, rejection),
        }
    }
}

fn dead_letter(record: RawRecord, rejection: Rejection) -> Ingested {
    Ingested::Rejected(DeadLetter { record, rejection })
}

fn late(ts_ms: EventTimeMs, watermark_ms: EventTimeMs) -> Rejection {
    Rejection::new(
        Stage::Late,
        RejectReason::Late,
        format!(
            "event time {ts_ms} is {} ms behind the watermark {watermark_ms}",
            watermark_ms - ts_ms
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_clock::EventClockConfig;
    use crate::model::SensorKind;
    use crate::wire::encode_reading;

    fn reading(seq: u64, ts_ms: EventTimeMs) -> Reading {
        Reading {
            plant: "p1".into(),
            line: "L1".into(),
            sensor: "t-1".into(),
            kind: SensorKind::Temperature,
            ts_ms,
            seq,
            batch: None,
            product: None,
            values: vec![90.0],
        }
    }

    fn raw(payload: Vec<u8>, offset: i64) -> RawRecord {
        RawRecord {
            stream: InputStream::Readings,
            source: SourceCoord {
                topic: "scent.readings".into(),
                partition: 0,
                offset,
            },
            key: Some(b"L1/t-1".to_vec()),
            payload,
        }
    }

    fn ingestor() -> Ingestor {
        let clock = EventClock::new(EventClockConfig::default(), [(0, 0)], 0, 0);
        Ingestor::new(DecodeLimits::default(), ValidationRules::default(), clock)
    }

    fn stage_of(outcome: &Ingested) -> Option<(Stage, RejectReason)> {
        match outcome {
            Ingested::Rejected(letter) => Some((letter.rejection.stage, letter.rejection.reason)),
            _ => None,
        }
    }

    #[test]
    fn valid_readings_enter_at_their_epoch() {
        let mut ingestor = ingestor();
        let base = 1_795_514_400_000;
        let outcome = ingestor.ingest(raw(encode_reading(&reading(1, base + 1_500)), 0), (0, 0), 0);
        match outcome {
            Ingested::Reading { epoch, source, .. } => {
                let config = EventClockConfig::default();
                assert_eq!(epoch, (base as u64 + 1_500) / config.epoch_ms);
                assert_eq!(source.offset, 0);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn rejections_keep_the_original_bytes_and_name_their_stage() {
        let mut ingestor = ingestor();
        let base = 1_795_514_400_000;
        let garbage = b"{not json".to_vec();
        match ingestor.ingest(raw(garbage.clone(), 7), (0, 0), 0) {
            Ingested::Rejected(letter) => {
                assert_eq!(letter.record.payload, garbage);
                assert_eq!(letter.record.source.offset, 7);
                assert_eq!(letter.rejection.stage, Stage::Decode);
                assert_eq!(letter.rejection.reason, RejectReason::InvalidJson);
            }
            other => panic!("unexpected {other:?}"),
        }
        let mut hot = reading(1, base);
        hot.values = vec![900.0];
        let outcome = ingestor.ingest(raw(encode_reading(&hot), 8), (0, 0), 0);
        assert_eq!(
            stage_of(&outcome),
            Some((Stage::Validate, RejectReason::OutOfRange))
        );
    }

    #[test]
    fn batch_events_are_never_late() {
        let mut ingestor = ingestor();
        let base = 1_795_514_400_000;
        let reading = encode_reading(&reading(1, base + 60_000));
        ingestor.ingest(raw(reading, 0), (0, 0), 0);
        let frontier = ingestor.clock_mut().advance(0);
        let end = crate::model::BatchEvent {
            batch: "B-1".into(),
            line: "L1".into(),
            product: "espresso".into(),
            event: crate::model::BatchPhase::End,
            ts_ms: base + 30_000,
        };
        let record = RawRecord {
            stream: InputStream::Batches,
            payload: crate::wire::encode_batch_event(&end),
            ..raw(Vec::new(), 1)
        };
        match ingestor.ingest(record, (0, 0), 0) {
            Ingested::Batch { epoch, event, .. } => {
                assert_eq!(epoch, frontier, "enters at the frontier");
                assert_eq!(event, end, "keeps its own event time");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn duplicates_and_late_records_are_dead_letters() {
        let mut ingestor = ingestor();
        let base = 1_795_514_400_000;
        let first = encode_reading(&reading(1, base + 10_000));
        assert_eq!(
            stage_of(&ingestor.ingest(raw(first.clone(), 0), (0, 0), 0)),
            None
        );
        assert_eq!(
            stage_of(&ingestor.ingest(raw(first, 1), (0, 0), 0)),
            Some((Stage::Duplicate, RejectReason::DuplicateSequence))
        );
        // Readings reordered within the lateness are not duplicates.
        for (seq, ts) in [(3, 10_900), (2, 10_400)] {
            let reading = encode_reading(&reading(seq, base + ts));
            assert_eq!(stage_of(&ingestor.ingest(raw(reading, 2), (0, 0), 0)), None);
        }
        // A gateway that restarted its counter, once the old numbers are
        // older than the lateness, is accepted.
        let restarted = encode_reading(&reading(1, base + 14_000));
        assert_eq!(
            stage_of(&ingestor.ingest(raw(restarted, 2), (0, 0), 0)),
            None
        );
        // A duplicate that is also late is reported late.
        let stale = encode_reading(&reading(3, base + 10_900));
        assert_eq!(
            stage_of(&ingestor.ingest(raw(stale, 2), (0, 0), 0)),
            Some((Stage::Late, RejectReason::Late))
        );
        // Behind the partition watermark (14 s - 2 s lateness): late.
        let old = encode_reading(&reading(5, base + 11_000));
        assert_eq!(
            stage_of(&ingestor.ingest(raw(old, 3), (0, 0), 0)),
            Some((Stage::Late, RejectReason::Late))
        );
    }
}
