//! The engine's configuration: one TOML file, overridden by environment
//! variables, validated with errors that name the offending key.
//!
//! Precedence, lowest first: the defaults embedded from
//! `deploy/config/defaults.toml`, the file given with `--config`, then
//! `SCENT__SECTION__KEY=value` environment variables (a double underscore
//! separates path segments, e.g. `SCENT__KAFKA__BROKERS=10.0.0.5:9092` or
//! `SCENT__ENGINE__WORKERS=4`), then command-line flags. Values of
//! environment variables are read as TOML scalars when they parse as one
//! (numbers, booleans) and as strings otherwise. Unknown keys are errors.

use scent_dataflows::quality_control::QualityControlConfig;
use scent_kafka::KafkaSettings;
use scent_operators::event_clock::EventClockConfig;
use scent_operators::validate::ValidationRules;
use scent_operators::wire::DecodeLimits;
use serde::{Deserialize, Serialize};
use std::path::Path;
use thiserror::Error;

/// The defaults, embedded at build time.
pub const DEFAULTS_TOML: &str = include_str!("../deploy/config/defaults.toml");

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "SCENT__";

/// A configuration error, naming the file or key at fault.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TOML does not parse or does not fit the schema.
    #[error("invalid configuration in {origin}: {message}")]
    Parse {
        /// Where the text came from.
        origin: String,
        /// The parser's message, naming the key.
        message: String,
    },
    /// An environment override names no setting or has a bad value.
    #[error("invalid environment override {variable}: {message}")]
    Env {
        /// The variable.
        variable: String,
        /// What is wrong.
        message: String,
    },
    /// A value is out of its allowed range.
    #[error("invalid value for `{key}`: {message}")]
    Invalid {
        /// The dotted key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Engine parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Timely worker threads in this process.
    pub workers: usize,
    /// Largest number of records a worker ingests per step.
    pub poll_batch: usize,
    /// Records a worker may have admitted into the dataflow whose epochs
    /// have not completed yet; above this it stops reading input
    /// (backpressure: unread input waits in Kafka, memory stays bounded).
    pub max_records_in_flight: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 2,
            poll_batch: 4_096,
            max_records_in_flight: 100_000,
        }
    }
}

/// Ingest parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest accepted payload, in bytes.
    pub max_payload_bytes: usize,
    /// Per-record validation rules.
    pub validation: ValidationRules,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_payload_bytes: DecodeLimits::default().max_payload_bytes,
            validation: ValidationRules::default(),
        }
    }
}

impl IngestConfig {
    /// The decode limits.
    pub fn limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_payload_bytes: self.max_payload_bytes,
        }
    }
}

/// Archive parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// Whether `scent run` archives to PostgreSQL.
    pub enabled: bool,
    /// PostgreSQL connection URL.
    pub database_url: String,
    /// Consumer name under which archive offsets are stored.
    pub consumer: String,
    /// Largest number of records per database transaction.
    pub max_batch_records: usize,
    /// Longest wait before a partial batch is committed, in milliseconds.
    pub max_batch_delay_ms: u64,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            enabled: false,
            database_url: "postgres://scent:scent@127.0.0.1:15432/scent".into(),
            consumer: "scent-archive".into(),
            max_batch_records: 20_000,
            max_batch_delay_ms: 500,
        }
    }
}

/// HTTP endpoint parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of `/metrics` and `/health`; empty disables the endpoint.
    pub listen: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Engine parameters.
    pub engine: EngineConfig,
    /// Kafka connection and topics.
    pub kafka: KafkaSettings,
    /// Event time: epochs, lateness, idleness.
    pub time: EventClockConfig,
    /// Decoding and validation.
    pub ingest: IngestConfig,
    /// Operators of the quality-control dataflow.
    pub quality_control: QualityControlConfig,
    /// PostgreSQL archive.
    pub archive: ArchiveConfig,
    /// Metrics and health endpoint.
    pub http: HttpConfig,
}

impl Config {
    /// Loads the defaults, then `path` if given, then the environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_with_env(path, std::env::vars())
    }

    /// As [`Config::load`], with the environment given explicitly.
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut merged = parse_table(DEFAULTS_TOML, "the embedded defaults")?;
        if let Some(path) = path {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            let file = parse_table(&text, &path.display().to_string())?;
            merge(&mut merged, file);
        }
        let mut overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .collect();
        overrides.sort();
        for (variable, value) in overrides {
            apply_env(&mut merged, &variable, &value)?;
        }
        let origin = path.map_or_else(
            || "the embedded defaults and environment".to_owned(),
            |p| format!("{} (with defaults and environment)", p.display()),
        );
        // Deserialising from text (not from the value) keeps spans, so the
        // error quotes the offending key and value (as a line of the merged
        // configuration, not of the user's file).
        let merged_text = toml::to_string(&merged).map_err(|error| ConfigError::Parse {
            origin: origin.clone(),
            message: error.to_string(),
        })?;
        let config: Config =
            toml::from_str(&merged_text).map_err(|error: toml::de::Error| ConfigError::Parse {
                origin,
                message: error.to_string(),
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value against its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.to_owned(),
            message,
        };
        if self.engine.workers == 0 || self.engine.workers > 256 {
            return Err(invalid("engine.workers", "must lie in 1..=256".into()));
        }
        if self.engine.poll_batch == 0 {
            return Err(invalid("engine.poll_batch", "must be at least 1".into()));
        }
        if self.engine.max_records_in_flight == 0 {
            return Err(invalid(
                "engine.max_records_in_flight",
                "must be at least 1".into(),
            ));
        }
        if self.time.epoch_ms == 0 {
            return Err(invalid("time.epoch_ms", "must be at least 1".into()));
        }
        if self.ingest.max_payload_bytes < 256 {
            return Err(invalid(
                "ingest.max_payload_bytes",
                "must be at least 256".into(),
            ));
        }
        self.ingest
            .validation
            .check()
            .map_err(|message| invalid("ingest.validation", message))?;
        self.quality_control
            .anomaly
            .check()
            .map_err(|message| invalid("quality_control.anomaly", message))?;
        self.quality_control.quality.check().map_err(|error| {
            invalid(
                &format!("quality_control.quality.{}", error.key),
                error.problem,
            )
        })?;
        self.quality_control
            .cycles
            .check()
            .map_err(|message| invalid("quality_control.cycles", message))?;
        self.quality_control
            .fingerprint
            .check()
            .map_err(|message| invalid("quality_control.fingerprint", message))?;
        if self.quality_control.verdict.plant.is_empty() {
            return Err(invalid(
                "quality_control.verdict.plant",
                "must not be empty".into(),
            ));
        }
        self.quality_control
            .sensor_health
            .check()
            .map_err(|error| invalid("quality_control.sensor_health", error.to_string()))?;
        let agents = &self.quality_control.agents;
        agents.consensus.check().map_err(|(key, message)| {
            invalid(&format!("quality_control.agents.consensus.{key}"), message)
        })?;
        agents.maintenance.check().map_err(|(key, message)| {
            invalid(
                &format!("quality_control.agents.maintenance.{key}"),
                message,
            )
        })?;
        if agents.predictive.expected_batch_ms <= 0 || agents.predictive.history_samples == 0 {
            return Err(invalid(
                "quality_control.agents.predictive",
                "expected_batch_ms and history_samples must be positive".into(),
            ));
        }
        self.kafka
            .check()
            .map_err(|message| invalid("kafka", message))?;
        if self.archive.enabled && self.archive.database_url.is_empty() {
            return Err(invalid(
                "archive.database_url",
                "must be set when the archive is enabled".into(),
            ));
        }
        if self.archive.max_batch_records == 0 {
            return Err(invalid(
                "archive.max_batch_records",
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

fn parse_table(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|error| ConfigError::Parse {
            origin: origin.to_owned(),
            message: error.to_string(),
        })
}

/// Merges `overlay` into `base`, table by table.
fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(overlay_table)) => {
                merge(base_table, overlay_table)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn apply_env(table: &mut toml::Table, variable: &str, value: &str) -> Result<(), ConfigError> {
    let path: Vec<String> = variable[ENV_PREFIX.len()..]
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    if path.iter().any(String::is_empty) {
        return Err(ConfigError::Env {
            variable: variable.to_owned(),
            message: "empty path segment".into(),
        });
    }
    let parsed = format!("value = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("value"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let (last, parents) = path.split_last().expect("path has at least one segment");
    let mut cursor = table;
    for segment in parents {
        cursor = match cursor
            .entry(segment.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(inner) => inner,
            _ => {
                return Err(ConfigError::Env {
                    variable: variable.to_owned(),
                    message: format!("`{segment}` is not a section"),
                })
            }
        };
    }
    cursor.insert(last.clone(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_and_validate() {
        let config = Config::load_with_env(None, env(&[])).unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn environment_overrides_win_and_are_typed() {
        let config = Config::load_with_env(
            None,
            env(&[
                ("SCENT__ENGINE__WORKERS", "4"),
                ("SCENT__KAFKA__BROKERS", "10.1.2.3:9092"),
                ("SCENT__ARCHIVE__ENABLED", "true"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(config.engine.workers, 4);
        assert_eq!(config.kafka.brokers, "10.1.2.3:9092");
        assert!(config.archive.enabled);
    }

    #[test]
    fn errors_name_the_bad_key() {
        let error = Config::load_with_env(None, env(&[("SCENT__ENGINE__WROKERS", "4")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("wrokers"), "{error}");
        let error = Config::load_with_env(None, env(&[("SCENT__ENGINE__WORKERS", "0")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("engine.workers"), "{error}");
        let error = Config::load_with_env(None, env(&[("SCENT__TIME__EPOCH_MS", "\"soon\"")]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("epoch_ms") || error.contains("integer"),
            "{error}"
        );
    }

    #[test]
    fn every_shipped_config_file_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/config");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Config::load_with_env(Some(&path), env(&[]))
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
        assert!(
            seen >= 2,
            "expected the shipped examples in {}",
            dir.display()
        );
    }
}
