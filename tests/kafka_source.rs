//! The Kafka source against a real broker: partitions are spread over
//! workers, records come back in partition order with their coordinates,
//! and a partition read to its end is reported caught up (which lets the
//! event clock treat a silent partition as idle).

use scent_kafka::admin::{create_topics, TopicSpec};
use scent_kafka::producer::{OutgoingRecord, RecordProducer};
use scent_kafka::source::KafkaSource;
use scent_kafka::{KafkaSettings, Topics};
use scent_operators::model::InputStream;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn brokers() -> Option<String> {
    match std::env::var("SCENT_KAFKA_BROKERS") {
        Ok(brokers) => Some(brokers),
        Err(_) if std::env::var("SCENT_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("SCENT_KAFKA_BROKERS is required")
        }
        Err(_) => {
            eprintln!("skipping: SCENT_KAFKA_BROKERS is not set (run deploy/test.sh)");
            None
        }
    }
}

#[test]
fn partitions_are_read_in_order_and_reported_caught_up() {
    let Some(brokers) = brokers() else {
        return;
    };
    let prefix = format!("src{}.", std::process::id());
    let settings = KafkaSettings {
        brokers,
        group_id: prefix.clone(),
        topics: Topics {
            readings: format!("{prefix}readings"),
            batches: format!("{prefix}batches"),
            ..Topics::default()
        },
        ..KafkaSettings::default()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(create_topics(
            &settings,
            &[
                TopicSpec {
                    name: settings.topics.readings.clone(),
                    partitions: 3,
                    config: Vec::new(),
                },
                TopicSpec {
                    name: settings.topics.batches.clone(),
                    partitions: 1,
                    config: Vec::new(),
                },
            ],
        ))
        .unwrap();
    let producer = RecordProducer::new(&settings).unwrap();
    for i in 0..30 {
        let payload = format!("record {i}");
        producer
            .send(OutgoingRecord {
                topic: &settings.topics.readings,
                key: Some(format!("key-{}", i % 5).as_bytes()),
                payload: payload.as_bytes(),
                headers: &[],
                timestamp_ms: None,
            })
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let inputs = vec![
        (InputStream::Readings, settings.topics.readings.clone(), 3),
        (InputStream::Batches, settings.topics.batches.clone(), 1),
    ];
    // Two workers: worker 0 owns readings 0 and 2 and the (empty) batches
    // partition 0, worker 1 readings 1.
    let mut sources: Vec<KafkaSource> = (0..2)
        .map(|w| KafkaSource::new(&settings, &inputs, w, 2, &BTreeMap::new()).unwrap())
        .collect();
    assert_eq!(sources[0].partitions().len(), 3);
    assert_eq!(sources[1].partitions().len(), 1);

    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for source in &mut sources {
            source
                .poll_into(1_000, Duration::from_millis(50), &mut records)
                .unwrap();
        }
        let all_caught_up = sources
            .iter()
            .all(|s| s.caught_up().values().all(|&caught_up| caught_up));
        if records.len() == 30 && all_caught_up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "read {} of 30 records; caught up: {:?}",
            records.len(),
            sources.iter().map(|s| s.caught_up()).collect::<Vec<_>>()
        );
    }
    // Offsets are dense and increasing within each partition.
    for partition in 0..3 {
        let offsets: Vec<i64> = records
            .iter()
            .filter(|(_, r)| r.source.partition == partition)
            .map(|(_, r)| r.source.offset)
            .collect();
        assert_eq!(offsets, (0..offsets.len() as i64).collect::<Vec<_>>());
    }
    // A new record clears the caught-up flag of its partition.
    producer
        .send(OutgoingRecord {
            topic: &settings.topics.readings,
            key: Some(b"key-1"),
            payload: b"late arrival",
            headers: &[],
            timestamp_ms: None,
        })
        .unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
    let mut more = Vec::new();
    while more.is_empty() {
        assert!(Instant::now() < deadline + Duration::from_secs(30));
        for source in &mut sources {
            source
                .poll_into(1_000, Duration::from_millis(50), &mut more)
                .unwrap();
        }
    }
    let (id, _) = more[0];
    let owner = sources
        .iter()
        .find(|s| s.caught_up().contains_key(&id))
        .unwrap();
    assert!(
        !owner.caught_up()[&id],
        "a partition that just delivered is not caught up"
    );
}
