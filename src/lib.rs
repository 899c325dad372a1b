//! scent: streaming quality control for electronic noses and process
//! sensors.
//!
//! This crate wires the libraries into the `scent` binary: configuration,
//! the timely runtime, sources and sinks, the PostgreSQL archive, the
//! HTTP endpoint and the plant simulator.
//!
//! | module | what it does |
//! |---|---|
//! | [`config`] | TOML configuration with environment overrides |
//! | [`engine`] | `scent run`: Kafka in, Kafka and PostgreSQL out |
//! | [`demo`] | `scent demo`: the simulated plant through the dataflow |
//! | [`simulate`] | `scent simulate`: the simulated plant to Kafka or files |
//! | [`bench`] | `scent bench`: latency, recovery and throughput against a broker |
//! | [`eval`] | `scent eval`: the analytics scored on public data sets and the simulator |
//! | [`runtime`] | timely workers: poll, ingest, step, emit |
//! | [`sources`] | Kafka partitions and the in-process plant as sources |
//! | [`sinks`] | Kafka topics, JSON-lines files and memory as sinks |
//! | [`api`] | `/metrics` and `/health` |
//! | [`archive`] | PostgreSQL archive of readings, actions and dead letters |
//! | [`archiver`] | Kafka topics into the archive, exactly once |
//! | [`sim`] | the deterministic plant simulator |

pub mod api;
pub mod archive;
pub mod archiver;
pub mod bench;
pub mod config;
pub mod demo;
pub mod engine;
pub mod eval;
pub mod runtime;
pub mod sim;
pub mod simulate;
pub mod sinks;
pub mod sources;
pub mod train;
