//! Pure kernels and timely/differential operators of scent.
//!
//! Every operator lives in its own module and comes in two layers: a pure
//! kernel over plain data (unit-tested and benchmarked alone) and a thin
//! dataflow wrapper. This crate does no I/O: no Kafka, no database, no
//! async runtime, so it builds and tests quickly.
//!
//! | module | what it does |
//! |---|---|
//! | [`model`] | readings, batch events, anomalies, actions, dead letters |
//! | [`wire`] | JSON wire format: decode with classified rejections, encode |
//! | [`validate`] | per-record checks: identifiers, ranges, finiteness, channel counts |
//! | [`event_clock`] | event time to epochs, watermarks, lateness, idle partitions |
//! | [`ingest`] | the source-side stages: decode, validate, duplicates, admission |
//! | [`rolling_anomaly`] | per-sensor rolling z-score, flat line and gap detection |
//! | [`batch_verdict`] | release or hold each batch when it ends, with reasons |
//! | [`source_progress`] | where sources stood when their clocks moved; exact replay |
//! | [`epoch_sink`] | completed epochs of actions, dead letters and source progress to the sink |

#![deny(missing_docs)]

pub mod batch_verdict;
pub mod epoch_sink;
pub mod event_clock;
pub mod ingest;
pub mod model;
pub mod rolling_anomaly;
pub mod source_progress;
pub mod validate;
pub mod wire;
