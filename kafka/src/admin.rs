//! Topic creation and broker readiness, for `scent topics create`, the
//! simulator and tests.

use crate::error::KafkaError;
use crate::settings::KafkaSettings;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use std::time::{Duration, Instant};

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Its name.
    pub name: String,
    /// Number of partitions.
    pub partitions: i32,
    /// Topic configuration entries, e.g. `("retention.ms", "-1")`.
    pub config: Vec<(&'static str, &'static str)>,
}

/// Creates the topics that do not exist yet (replication factor 1 for a
/// single broker, or as the broker's default otherwise is out of scope).
pub async fn create_topics(
    settings: &KafkaSettings,
    topics: &[TopicSpec],
) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = settings
        .client_config()
        .create()
        .map_err(|error| KafkaError::Config(error.to_string()))?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|topic| {
            topic.config.iter().fold(
                NewTopic::new(&topic.name, topic.partitions, TopicReplication::Fixed(1)),
                |new, (key, value)| new.set(key, value),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|error| KafkaError::broker("create topics", error))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::Delivery {
                    topic,
                    reason: format!("topic creation failed: {code}"),
                })
            }
        }
    }
    Ok(())
}

/// The default topics of scent with the given readings partition count.
/// The progress topic has one partition and keeps every record: a restart
/// reads it whole (see [`crate::progress`]). The models topic is compacted:
/// it keeps the latest record of every model name.
pub fn default_topics(settings: &KafkaSettings, readings_partitions: i32) -> Vec<TopicSpec> {
    let topics = &settings.topics;
    let spec = |name: &String, partitions| TopicSpec {
        name: name.clone(),
        partitions,
        config: Vec::new(),
    };
    vec![
        spec(&topics.readings, readings_partitions),
        spec(&topics.batches, 1),
        spec(&topics.actions, readings_partitions),
        TopicSpec {
            // A rejected record is kept whole, up to the largest model record.
            config: vec![("max.message.bytes", "67174400")],
            ..spec(&topics.dead_letters, 1)
        },
        TopicSpec {
            config: vec![
                ("cleanup.policy", "delete"),
                ("retention.ms", "-1"),
                ("retention.bytes", "-1"),
            ],
            ..spec(&topics.progress, 1)
        },
        TopicSpec {
            // The latest version of every model, kept forever; a model is
            // a few megabytes.
            config: vec![
                ("cleanup.policy", "compact"),
                ("max.message.bytes", "67174400"),
            ],
            ..spec(&topics.models, 1)
        },
    ]
}

/// Partition counts of `topic`, waiting up to `timeout` for the broker.
pub fn partition_count(
    settings: &KafkaSettings,
    topic: &str,
    timeout: Duration,
) -> Result<i32, KafkaError> {
    let consumer: BaseConsumer = settings
        .client_config()
        .create()
        .map_err(|error| KafkaError::Config(error.to_string()))?;
    let deadline = Instant::now() + timeout;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match consumer.fetch_metadata(Some(topic), remaining.max(Duration::from_millis(100))) {
            Ok(metadata) => {
                let found = metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic && t.error().is_none());
                match found {
                    Some(t) if !t.partitions().is_empty() => return Ok(t.partitions().len() as i32),
                    _ if Instant::now() >= deadline => {
                        return Err(KafkaError::MissingTopic(topic.to_owned()))
                    }
                    _ => {}
                }
            }
            Err(error) if Instant::now() >= deadline => {
                return Err(KafkaError::broker("fetch metadata", error))
            }
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
