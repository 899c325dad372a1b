//! A producer that waits instead of failing when its queue is full, and
//! counts what was delivered and what failed.
//!
//! librdkafka queues messages and delivers them from its own threads; a
//! full queue (`QueueFull`) means the broker is slower than we are. This
//! wrapper then serves delivery reports for a moment and tries again, so
//! the caller slows down instead of losing records. Delivery failures are
//! counted and the first one is kept for [`RecordProducer::take_failure`].

use crate::error::KafkaError;
use crate::settings::KafkaSettings;
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Delivery outcomes, shared between librdkafka's callback and the caller.
#[derive(Debug, Default)]
pub struct DeliveryTally {
    /// Messages acknowledged by the broker.
    pub delivered: AtomicU64,
    /// Messages that could not be delivered.
    pub failed: AtomicU64,
    first_failure: Mutex<Option<String>>,
}

/// Producer context recording delivery outcomes.
#[derive(Debug, Clone, Default)]
pub struct TallyContext {
    tally: Arc<DeliveryTally>,
}

impl ClientContext for TallyContext {}

impl ProducerContext for TallyContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        match result {
            Ok(_) => {
                self.tally.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, message)) => {
                self.tally.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.tally.first_failure.lock().expect("tally lock");
                if first.is_none() {
                    *first = Some(format!("{} to {}", error, message.topic()));
                }
            }
        }
    }
}

/// One record to produce.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingRecord<'a> {
    /// Destination topic.
    pub topic: &'a str,
    /// Record key.
    pub key: Option<&'a [u8]>,
    /// Record value.
    pub payload: &'a [u8],
    /// Headers as `(name, value)`.
    pub headers: &'a [(String, String)],
    /// Record timestamp, epoch milliseconds; `None` lets the producer use
    /// its wall clock. Event time travels in the payload: brokers reject or
    /// expire records whose timestamps lie far from their own clock
    /// (`log.message.timestamp.after.max.ms`, time-based retention), so
    /// replayed or simulated history must not set it.
    pub timestamp_ms: Option<i64>,
}

/// A producer with backpressure on a full queue.
pub struct RecordProducer {
    producer: BaseProducer<TallyContext>,
    tally: Arc<DeliveryTally>,
}

impl RecordProducer {
    /// Creates an idempotent producer (`acks=all`, ordered retries).
    pub fn new(settings: &KafkaSettings) -> Result<Self, KafkaError> {
        let context = TallyContext::default();
        let tally = context.tally.clone();
        let producer = settings
            .client_config()
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .create_with_context(context)
            .map_err(|error| KafkaError::Config(error.to_string()))?;
        Ok(RecordProducer { producer, tally })
    }

    /// Delivery outcomes so far.
    pub fn tally(&self) -> &DeliveryTally {
        &self.tally
    }

    /// The first delivery failure since the last call, if any.
    pub fn take_failure(&self) -> Option<String> {
        self.tally.first_failure.lock().expect("tally lock").take()
    }

    /// Queues one record, waiting while the queue is full.
    pub fn send(&self, record: OutgoingRecord<'_>) -> Result<(), KafkaError> {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (name, value) in record.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value.as_bytes()),
            });
        }
        let mut base: BaseRecord<'_, [u8], [u8], ()> = BaseRecord::to(record.topic)
            .payload(record.payload)
            .headers(headers);
        if let Some(key) = record.key {
            base = base.key(key);
        }
        if let Some(timestamp) = record.timestamp_ms {
            base = base.timestamp(timestamp);
        }
        loop {
            match self.producer.send(base) {
                Ok(()) => return Ok(()),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                    back,
                )) => {
                    base = back;
                    self.producer.poll(Duration::from_millis(50));
                }
                Err((error, _)) => return Err(KafkaError::broker("produce", error)),
            }
        }
    }

    /// Serves delivery reports without blocking.
    pub fn poll(&self) {
        self.producer.poll(Duration::ZERO);
    }

    /// Waits until every queued record is delivered or `timeout` passes,
    /// then reports the first failure, if any.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer
            .flush(timeout)
            .map_err(|error| KafkaError::broker("flush", error))?;
        match self.take_failure() {
            Some(reason) => Err(KafkaError::Delivery {
                topic: String::from("(see reason)"),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Records queued but not yet delivered.
    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }
}
