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
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            readings: "scent.readings".into(),
            batches: "scent.batches".into(),
            actions: "scent.actions".into(),
            dead_letters: "scent.readings.dlq".into(),
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
            ("kafka.topics.actions", &self.topics.actions),
            ("kafka.topics.dead_letters", &self.topics.dead_letters),
        ];
        for (key, topic) in topics {
            if topic.is_empty() || topic.len() > 249 {
                return Err(format!("{key} must be a topic name of 1 to 249 characters"));
            }
        }
        Ok(())
    }
}
