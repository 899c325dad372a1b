//! Where the broker is, what the topics are called, and extra client
//! properties.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The topics scent reads and writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    /// Sensor readings (input).
    pub readings: String,
    /// Batch lifecycle events (input).
    pub batches: String,
    /// Decisions for MES consumers (output).
    pub actions: String,
    /// Rejected input records (output).
    pub dead_letters: String,
    /// What the engine has committed, and from where it replays (one
    /// partition, infinite retention).
    pub progress: String,
    /// Trained models (input; compacted: the latest version per model).
    pub models: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            readings: "scent.readings".into(),
            batches: "scent.batches".into(),
            actions: "scent.actions".into(),
            dead_letters: "scent.readings.dlq".into(),
            progress: "scent.progress".into(),
            models: "scent.models".into(),
        }
    }
}

/// Where to start reading input partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    /// The oldest retained record: a restart replays the whole topic and
    /// regenerates the same actions, with the same ids.
    Earliest,
    /// Only records produced after start.
    Latest,
}

/// The delivery guarantee of the output topics (see [`crate::sink`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Transactions with progress records; restarts suppress what was
    /// committed and continue with identical output.
    ExactlyOnce,
    /// Idempotent producer only; restarts re-send regenerated output,
    /// which consumers deduplicate by action id.
    AtLeastOnce,
}

/// Kafka connection settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSettings {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Consumer group id (used for offset bookkeeping and lag dashboards).
    pub group_id: String,
    /// Topic names.
    pub topics: Topics,
    /// Where to start reading.
    pub start_from: StartFrom,
    /// Delivery guarantee of the output topics.
    pub delivery: Delivery,
    /// Least time between two output transactions; 0 commits after every
    /// step that completed an epoch (lowest decision latency).
    pub min_commit_interval_ms: u64,
    /// How long a transaction may stay open before the broker aborts it
    /// (`transaction.timeout.ms`); also bounds how long `read_committed`
    /// consumers can be held up by a crashed engine that is not restarted.
    pub transaction_timeout_ms: u64,
    /// Extra librdkafka properties, applied to every client.
    pub client: BTreeMap<String, String>,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        KafkaSettings {
            brokers: "127.0.0.1:19092".into(),
            group_id: "scent".into(),
            topics: Topics::default(),
            start_from: StartFrom::Earliest,
            delivery: Delivery::ExactlyOnce,
            min_commit_interval_ms: 0,
            transaction_timeout_ms: 30_000,
            client: BTreeMap::new(),
        }
    }
}

impl KafkaSettings {
    /// A librdkafka configuration with the brokers and extra properties.
    pub fn client_config(&self) -> rdkafka::ClientConfig {
        let mut config = rdkafka::ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        config.set("broker.address.family", "v4");
        for (key, value) in &self.client {
            config.set(key, value);
        }
        config
    }

    /// Checks the settings; the error names the offending key.
    pub fn check(&self) -> Result<(), String> {
        if self.brokers.trim().is_empty() {
            return Err("kafka.brokers must not be empty".into());
        }
        if self.group_id.trim().is_empty() {
            return Err("kafka.group_id must not be empty".into());
        }
        let topics = [
            ("kafka.topics.readings", &self.topics.readings),
            ("kafka.topics.batches", &self.topics.batches),
            ("kafka.topics.models", &self.topics.models),
            ("kafka.topics.actions", &self.topics.actions),
            ("kafka.topics.dead_letters", &self.topics.dead_letters),
            ("kafka.topics.progress", &self.topics.progress),
        ];
        for (key, topic) in topics {
            if topic.is_empty() || topic.len() > 249 {
                return Err(format!("{key} must be a topic name of 1 to 249 characters"));
            }
        }
        if !(1_000..=900_000).contains(&self.transaction_timeout_ms) {
            return Err(
                "kafka.transaction_timeout_ms must lie between 1000 and 900000 \
                 (the broker's transaction.max.timeout.ms)"
                    .into(),
            );
        }
        Ok(())
    }
}
