//! Pure kernels and timely/differential operators of scent.
//!
//! Every operator lives in its own module, with a pure kernel over plain
//! data (unit-tested and benchmarked alone). Operators on the streaming
//! path add a thin timely/differential wrapper in the same module
//! (`rolling_anomaly`, `fingerprint`, `batch_verdict`, `epoch_sink`), or
//! are driven per sensor by `scent_dataflows::sensor_stage` (`qc_flags`,
//! `exposure_cycles`). The kernels not yet wired into the quality-control
//! dataflow are checked on their own: `multivariate`,
//! `univariate_detector`, `drift_correction` and `gas_classifier` by
//! `scent eval` on public data, `sniff_features` on the UMA e-nose curves,
//! `spc` by simulated average run lengths. This crate does no I/O: no Kafka, no
//! database, no async runtime, so it builds and tests quickly.
//!
//! | module | what it does |
//! |---|---|
//! | **records** | |
//! | [`model`] | readings, batch events, anomalies, actions, dead letters |
//! | [`model_registry`] | trained models on `scent.models`: record format, checks, content-hash versions |
//! | [`wire`] | JSON wire format: decode with classified rejections, encode |
//! | [`validate`] | per-record checks: identifiers, ranges, finiteness, channel counts |
//! | [`event_clock`] | event time to epochs, watermarks, lateness, idle partitions |
//! | [`ingest`] | the source-side stages: decode, validate, duplicates, admission |
//! | **data quality** | |
//! | [`qc_flags`] | QARTOD/ioos_qc quality flags per reading and stream: range, spike, rate of change, flat line, gap, sequence, skew; score |
//! | **e-nose features and fingerprints** | |
//! | [`sniff_features`] | sniff cycles of an e-nose array: baseline/rise/steady/recovery, ΔR/R0, time constants, FFT bands; T/H compensation |
//! | [`exposure_cycles`] | e-nose readings averaged per array, window and batch: the observations of fingerprints |
//! | [`pca`] | principal components: fit, scores, Hotelling T², SPE, limits, contributions |
//! | [`fingerprint`] | product fingerprints per array: similarity, T²/SPE limits, contaminant matching |
//! | [`contaminant_library`] | the shared contaminant library: signatures learned from confirmed contaminations, latest per name |
//! | [`drift_correction`] | sensor-drift correction: reference-gas calibration, forward-only drift tracking |
//! | [`gas_classifier`] | gas classes from e-nose feature vectors: signed-log standardisation, shrinkage LDA |
//! | **anomaly detection** | |
//! | [`rolling_anomaly`] | per-sensor rolling z-score, flat line and gap detection |
//! | [`spc`] | univariate control charts per channel: Shewhart with Western Electric rules, EWMA, CUSUM, windowed z-score |
//! | [`multivariate`] | streaming T², SPE and combined-index monitor: dynamic PCA, EWMA, empirical limits, alarms with contributors |
//! | [`univariate_detector`] | streaming univariate anomaly score: range novelty, calm-gated sequence novelty, rest after alerts (NAB) |
//! | [`sensor_epochs`] | the shared shape of per-sensor operators: route by sensor, hand over complete epochs |
//! | [`sensor_health`] | e-nose array health: clean-air windows between batches, baseline drift (Theil–Sen per product context), loss of response, noise, stuck channels, calibration and RUL |
//! | **decisions and output** | |
//! | [`quality_agent`] | the quality-control agent: product versus instrument findings, verdict per batch, critical onset |
//! | [`forecast`] | the predictive agent's kernel: multi-horizon random-forest forecasts of a line's quality index, skill versus persistence, drivers |
//! | [`maintenance_agent`] | the maintenance agent: instrument findings and array health to orders in the gaps between batches, coverage verdict |
//! | [`consensus`] | the orchestrator's policy: release, hold or reject from the agents' verdicts; line holds |
//! | [`batch_verdict`] | verdict policy: how many findings of a rule hold a batch; reasons from anomalies |
//! | [`input_spans`] | per batch, the topic/partition/offset ranges its records came from |
//! | [`action_changelog`] | decisions as a changelog: revisions that supersede, sealing, refused late changes |
//! | [`source_progress`] | where sources stood when their clocks moved; exact replay |
//! | [`epoch_sink`] | completed epochs of actions, dead letters and source progress to the sink |

#![deny(missing_docs)]

pub mod action_changelog;
pub mod batch_verdict;
pub mod consensus;
pub mod contaminant_library;
pub mod drift_correction;
pub mod epoch_sink;
pub mod event_clock;
pub mod exposure_cycles;
pub mod fingerprint;
pub mod forecast;
pub mod gas_classifier;
pub mod ingest;
pub mod input_spans;
pub mod maintenance_agent;
pub mod model;
pub mod model_registry;
pub mod multivariate;
pub mod pca;
pub mod qc_flags;
pub mod quality_agent;
pub mod rolling_anomaly;
pub mod sensor_epochs;
pub mod sensor_health;
pub mod sniff_features;
pub mod source_progress;
pub mod spc;
#[cfg(test)]
mod test_support;
pub mod univariate_detector;
pub mod validate;
pub mod wire;
