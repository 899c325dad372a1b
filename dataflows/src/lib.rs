//! The dataflows of scent, assembled from `scent-operators`.
//!
//! One dataflow per module. A dataflow here is a pure function from input
//! streams to output streams and collections: it does no I/O, so the same
//! code runs in the embedded demo, under `scent run` against Kafka, and in
//! tests that capture its output exactly.
//!
//! | module | dataflow |
//! |---|---|
//! | [`quality_control`] | ingested records to anomalies, agent verdicts and actions |
//! | [`agents`] | the quality, maintenance and predictive agents and the orchestrator's consensus, per batch |
//! | [`predictive`] | the line quality index and its random-forest forecasts |
//! | [`sensor_stage`] | the per-sensor kernels behind one exchange: rolling anomalies, e-nose cycles |
//! | [`training`] | product fingerprints fitted from the cycles of reference batches |

#![deny(missing_docs)]

pub mod agents;
pub mod predictive;
pub mod quality_control;
pub mod sensor_stage;
pub mod training;
