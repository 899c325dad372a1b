//! Kafka source and sinks of scent, on rdkafka (librdkafka).
//!
//! | module | what it does |
//! |---|---|
//! | [`settings`] | broker address, topic names, client properties |
//! | [`codec`] | actions and dead letters to Kafka messages and back |
//! | [`source`] | the partitions of a worker, read with `assign()` |
//! | [`sink`] | completed epochs to the output topics, in transactions with progress |
//! | [`progress`] | the progress topic: committed frontier, origin, source advances |
//! | [`producer`] | a producer that waits instead of failing when its queue is full |
//! | [`admin`] | topic creation and broker readiness |
//! | [`error`] | typed errors, classified as retryable or not |

#![deny(missing_docs)]

pub mod admin;
pub mod codec;
pub mod error;
pub mod producer;
pub mod progress;
pub mod settings;
pub mod sink;
pub mod source;

pub use error::KafkaError;
pub use settings::{Delivery, KafkaSettings, Topics};
