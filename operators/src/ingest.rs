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
//! Duplicate detection keeps, per `line/sensor`, the newest sequence number
//! and event time seen. A reading whose sequence number *and* event time
//! are both at or below those is a re-sent duplicate. A lower sequence
//! number with a newer event time is a gateway that restarted its counter,
//! and is accepted. State: one entry per sensor.

use crate::event_clock::{Admission, Epoch, EventClock, PartitionId};
use crate::model::{
    BatchEvent, DeadLetter, EventTimeMs, InputStream, RawRecord, Reading, RejectReason, Rejection,
    SourceCoord, Stage,
};
use crate::validate::{validate_batch_event, validate_reading, ValidationRules};
use crate::wire::{decode_batch_event, decode_reading, DecodeLimits};
use std::collections::HashMap;

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
    /// A rejected record, to be sent to the dead-letter queue at the
    /// current frontier.
    Rejected(DeadLetter),
}

/// The newest (sequence number, event time) seen per sensor.
#[derive(Debug, Clone, Default)]
pub struct SequenceTracker {
    newest: HashMap<String, (u64, EventTimeMs)>,
}

impl SequenceTracker {
    /// Records `reading` and says whether it duplicates one seen before.
    pub fn observe(&mut self, reading: &Reading) -> Result<(), Rejection> {
        let key = reading.key();
        match self.newest.get_mut(&key) {
            Some((seq, ts)) if reading.seq <= *seq && reading.ts_ms <= *ts => Err(Rejection::new(
                Stage::Duplicate,
                RejectReason::DuplicateSequence,
                format!(
                    "{key} seq {} at {} repeats or precedes seq {} at {}",
                    reading.seq, reading.ts_ms, seq, ts
                ),
            )),
            Some((seq, ts)) => {
                if reading.ts_ms > *ts {
                    *seq = reading.seq;
                    *ts = reading.ts_ms;
                } else {
                    *seq = (*seq).max(reading.seq);
                }
                Ok(())
            }
            None => {
                self.newest.insert(key, (reading.seq, reading.ts_ms));
                Ok(())
            }
        }
    }

    /// Number of sensors tracked.
    pub fn len(&self) -> usize {
        self.newest.len()
    }

    /// Whether no sensor is tracked yet.
    pub fn is_empty(&self) -> bool {
        self.newest.is_empty()
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
        Ingestor {
            limits,
            rules,
            clock,
            sequences: SequenceTracker::default(),
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
        match record.stream {
            InputStream::Readings => self.ingest_reading(record, partition, now_ms),
            InputStream::Batches => self.ingest_batch_event(record, partition, now_ms),
        }
    }

    fn ingest_reading(
        &mut self,
        record: RawRecord,
        partition: PartitionId,
        now_ms: u64,
    ) -> Ingested {
        let reading = match decode_reading(&record.payload, &self.limits)
            .and_then(|reading| validate_reading(&reading, &self.rules).map(|()| reading))
            .and_then(|reading| self.sequences.observe(&reading).map(|()| reading))
        {
            Ok(reading) => reading,
            Err(rejection) => return dead_letter(record, rejection),
        };
        match self.clock.admit(partition, reading.ts_ms, now_ms) {
            Admission::OnTime(epoch) => Ingested::Reading {
                epoch,
                reading,
                source: record.source,
            },
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
        match self.clock.admit(partition, event.ts_ms, now_ms) {
            Admission::OnTime(epoch) => Ingested::Batch {
                epoch,
                event,
                source: record.source,
            },
            Admission::Late { watermark_ms, .. } => {
                dead_letter(record, late(event.ts_ms, watermark_ms))
            }
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
                assert_eq!(epoch, (base as u64 + 1_500) / 1_000);
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
        // A restarted gateway counter with a newer event time is accepted.
        let restarted = encode_reading(&reading(1, base + 11_000));
        assert_eq!(
            stage_of(&ingestor.ingest(raw(restarted, 2), (0, 0), 0)),
            None
        );
        // Behind the partition watermark (11 s - 2 s lateness): late.
        let old = encode_reading(&reading(5, base + 8_000));
        assert_eq!(
            stage_of(&ingestor.ingest(raw(old, 3), (0, 0), 0)),
            Some((Stage::Late, RejectReason::Late))
        );
    }
}
