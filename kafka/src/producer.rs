//! A producer that waits instead of failing when its queue is full, and
//! remembers the first delivery failure.
//!
//! librdkafka queues messages and delivers them from its own threads; a
//! full queue (`QueueFull`) means the broker is slower than we are. This
//! wrapper then serves delivery reports for a moment and tries again, so
//! the caller slows down instead of losing records. The first delivery
//! failure is kept for [`RecordProducer::take_failure`].

use crate::error::KafkaError;
use crate::settings::KafkaSettings;
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The first delivery failure, as `(topic, reason)`, shared between
/// librdkafka's delivery callback and the caller.
type FirstFailure = Arc<Mutex<Option<(String, String)>>>;

/// Producer context recording the first delivery failure.
#[derive(Debug, Clone, Default)]
pub struct FailureContext {
    first_failure: FirstFailure,
}

impl ClientContext for FailureContext {}

impl ProducerContext for FailureContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        if let Err((error, message)) = result {
            let mut first = self.first_failure.lock().expect("failure lock");
            first.get_or_insert_with(|| (message.topic().to_owned(), error.to_string()));
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

/// The largest message scent writes: a model record of the largest size
/// the engine accepts (`scent_operators::model_registry::MAX_MODEL_BYTES`),
/// dead-lettered whole, plus room for headers. The dead-letter and models
/// topics are created to accept it.
pub const MAX_MESSAGE_BYTES: usize = scent_operators::model_registry::MAX_MODEL_BYTES + 64 * 1024;

/// A producer with backpressure on a full queue.
pub struct RecordProducer {
    producer: BaseProducer<FailureContext>,
    first_failure: FirstFailure,
}

impl RecordProducer {
    /// Creates an idempotent producer (`acks=all`, ordered retries).
    pub fn new(settings: &KafkaSettings) -> Result<Self, KafkaError> {
        let mut config = settings.client_config();
        config.set("linger.ms", "5");
        Self::create(config)
    }

    /// Creates a transactional producer with a stable `transactional_id`
    /// (idempotence implied). Call [`RecordProducer::init_transactions`]
    /// before the first transaction.
    pub fn transactional(
        settings: &KafkaSettings,
        transactional_id: &str,
    ) -> Result<Self, KafkaError> {
        let mut config = settings.client_config();
        config
            .set("transactional.id", transactional_id)
            .set(
                "transaction.timeout.ms",
                settings.transaction_timeout_ms.to_string(),
            )
            .set("linger.ms", "1")
            // A transaction begun right after a commit finds the broker
            // still writing the previous one's markers: AddOffsetsToTxn is
            // answered CONCURRENT_TRANSACTIONS and retried after this
            // backoff (default 100 ms, which back-to-back commits would pay
            // every time).
            .set("retry.backoff.ms", "10");
        Self::create(config)
    }

    /// An idempotent, lz4-compressing producer from `config`. Messages may
    /// be as large as a dead-lettered model record
    /// ([`MAX_MESSAGE_BYTES`]): a rejected record is kept whole.
    fn create(mut config: rdkafka::ClientConfig) -> Result<Self, KafkaError> {
        let context = FailureContext::default();
        let first_failure = Arc::clone(&context.first_failure);
        let producer = config
            .set("enable.idempotence", "true")
            .set("compression.type", "lz4")
            .set("message.max.bytes", MAX_MESSAGE_BYTES.to_string())
            .create_with_context(context)
            .map_err(|error| KafkaError::Config(error.to_string()))?;
        Ok(RecordProducer {
            producer,
            first_failure,
        })
    }

    /// Registers the transactional id with the broker: completes or aborts
    /// whatever an earlier producer with this id left open and fences it.
    pub fn init_transactions(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer
            .init_transactions(timeout)
            .map_err(|error| KafkaError::broker("init transactions", error))
    }

    /// Opens a transaction.
    pub fn begin_transaction(&self) -> Result<(), KafkaError> {
        self.producer
            .begin_transaction()
            .map_err(|error| KafkaError::broker("begin transaction", error))
    }

    /// Adds consumer-group offsets (next offsets to read) to the open
    /// transaction.
    pub fn send_offsets_to_transaction(
        &self,
        offsets: &rdkafka::TopicPartitionList,
        group: &rdkafka::consumer::ConsumerGroupMetadata,
        timeout: Duration,
    ) -> Result<(), KafkaError> {
        self.producer
            .send_offsets_to_transaction(offsets, group, timeout)
            .map_err(|error| KafkaError::broker("send offsets to transaction", error))
    }

    /// Commits the open transaction, flushing everything queued in it.
    ///
    /// The records are delivered first, serving delivery reports every
    /// millisecond: rdkafka's own flush before the commit serves them in
    /// waits of up to 100 ms, which would add 100 ms to every transaction.
    pub fn commit_transaction(&self, timeout: Duration) -> Result<(), KafkaError> {
        let deadline = std::time::Instant::now() + timeout;
        while self.producer.in_flight_count() > 0 && std::time::Instant::now() < deadline {
            self.producer.poll(Duration::from_millis(1));
        }
        self.producer
            .commit_transaction(timeout)
            .map_err(|error| KafkaError::broker("commit transaction", error))?;
        self.take_failure().map_or(Ok(()), Err)
    }

    /// The first delivery failure since the last call, if any.
    pub fn take_failure(&self) -> Option<KafkaError> {
        let failure = self.first_failure.lock().expect("failure lock").take();
        failure.map(|(topic, reason)| KafkaError::Delivery { topic, reason })
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
                    // rdkafka's poll waits out its whole timeout: wait in
                    // short steps so sending resumes as soon as there is room.
                    self.producer.poll(Duration::from_millis(1));
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
        self.take_failure().map_or(Ok(()), Err)
    }
}
