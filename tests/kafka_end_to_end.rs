//! The whole data path against real servers: simulated readings and
//! malformed records to Apache Kafka, `scent run --workers 2` in its own
//! process, actions read back with `kcat` (a client we did not write) and
//! compared with the simulator's ground truth, dead letters read back with
//! their headers, and the PostgreSQL archive checked row by row.
//!
//! Needs `SCENT_KAFKA_BROKERS`, `SCENT_DATABASE_URL` and `kcat`, which
//! `deploy/test.sh` provides. Without them the test says why and passes,
//! unless `SCENT_REQUIRE_SERVICES=1` (set by the test script).

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use scent::archive::Archive;
use scent::sim::{GroundTruth, Plant};
use scent::simulate::{prefixed_topics, produce, sim_config};
use scent_kafka::admin::{create_topics, default_topics};
use scent_kafka::codec::{decode_action, decode_dead_letter};
use scent_kafka::KafkaSettings;
use scent_operators::model::{Action, DeadLetter, Decision};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use support::{block_on, free_local_address, fresh_database, http_get, metric_sum, Engine};

mod support;

/// Reads every dead letter of the DLQ topic with its headers.
fn read_dead_letters(settings: &KafkaSettings, expected: usize) -> Vec<DeadLetter> {
    let consumer: BaseConsumer = settings
        .client_config()
        .set("group.id", "e2e-dlq-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&settings.topics.dead_letters, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut letters = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while letters.len() < expected && Instant::now() < deadline {
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = result.expect("consume the DLQ");
        let headers: Vec<(String, Vec<u8>)> = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        letters.push(
            decode_dead_letter(
                message.topic(),
                message.key(),
                message.payload().unwrap_or_default(),
                &headers,
            )
            .expect("dead letters carry every header"),
        );
    }
    letters
}

fn check_decisions(actions: &[Action], truth: &GroundTruth) {
    let by_batch = support::final_decisions(actions);
    assert_eq!(
        by_batch.len(),
        truth.batches.len(),
        "one final decision per batch"
    );
    let mut held = 0;
    for batch in &truth.batches {
        let action = &by_batch[&batch.batch];
        assert_eq!(
            action.decision,
            Some(batch.expected_decision),
            "decision for {}",
            batch.batch
        );
        for expected in &batch.expected_reasons {
            assert!(
                action
                    .reasons
                    .iter()
                    .any(|r| r.sensor == expected.sensor && r.rule == expected.rule),
                "{}: expected reason {:?} among {:?}",
                batch.batch,
                expected,
                action.reasons
            );
        }
        held += usize::from(action.decision == Some(Decision::Hold));
    }
    let expected_holds = truth
        .batches
        .iter()
        .filter(|batch| batch.expected_decision == Decision::Hold)
        .count();
    assert!(held >= 1, "the injected events hold batches ({held})");
    assert_eq!(held, expected_holds);
}

#[test]
fn readings_through_kafka_to_actions_dead_letters_and_archive() {
    let Some([brokers, admin_database_url]) = support::services(
        "readings_through_kafka_to_actions_dead_letters_and_archive",
        ["SCENT_KAFKA_BROKERS", "SCENT_DATABASE_URL"],
        true,
    ) else {
        return;
    };
    let run_id = format!("e2e{}", std::process::id());
    let settings = KafkaSettings {
        brokers: brokers.clone(),
        topics: prefixed_topics(&format!("{run_id}.")),
        group_id: run_id.clone(),
        ..KafkaSettings::default()
    };
    block_on(create_topics(&settings, &default_topics(&settings, 4))).unwrap();
    let database_url = block_on(fresh_database(
        &admin_database_url,
        &format!("scent_{run_id}"),
    ));

    // 100,000 readings over three lines, plus malformed records of every class.
    let plant = Plant::new(sim_config(11, 100_000, 3, 20)).unwrap();
    let truth = plant.ground_truth().clone();
    let stats = produce(&plant, &settings, 0.0, &AtomicBool::new(false)).unwrap();
    assert!(stats.readings >= 100_000);
    let malformed_kinds: std::collections::BTreeSet<_> =
        truth.malformed.iter().map(|m| m.expected_reason).collect();
    assert!(
        malformed_kinds.len() >= 6,
        "at least six kinds of malformed records"
    );

    let topics = &settings.topics;
    let listen = free_local_address();
    let mut engine = Command::new(env!("CARGO_BIN_EXE_scent"));
    engine
        .args(["run", "--workers", "2", "--listen", &listen])
        .args(["--kafka", &brokers, "--database-url", &database_url])
        .env("SCENT__KAFKA__GROUP_ID", &run_id)
        .env("SCENT__KAFKA__TOPICS__READINGS", &topics.readings)
        .env("SCENT__KAFKA__TOPICS__BATCHES", &topics.batches)
        .env("SCENT__KAFKA__TOPICS__ACTIONS", &topics.actions)
        .env("SCENT__KAFKA__TOPICS__DEAD_LETTERS", &topics.dead_letters)
        .env("SCENT__KAFKA__TOPICS__MODELS", &topics.models)
        .env("SCENT_LOG", "warn");
    let _engine = Engine::spawn(engine, None);

    // Actions, read with kcat until every batch's decision is sealed.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut actions: Vec<Action> = Vec::new();
    while Instant::now() < deadline {
        actions = support::kcat_read(&brokers, &topics.actions)
            .iter()
            .map(|(key, value)| {
                let action =
                    decode_action(&topics.actions, value.as_bytes()).expect("actions decode");
                assert_eq!(key, action.key(), "actions are keyed by batch");
                action
            })
            .collect();
        if support::sealed_batches(&actions) >= truth.batches.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    check_decisions(&actions, &truth);

    // The engine's own account: /health and /metrics agree with the input.
    let (status, health) = http_get(&listen, "/health");
    assert_eq!(status, 200, "{health}");
    assert!(health.contains("\"ok\""), "{health}");
    // Consumer lag comes from librdkafka's statistics, reported once a
    // second: a run this short may finish before the first report.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, metrics) = loop {
        let (status, metrics) = http_get(&listen, "/metrics");
        if metrics.contains("scent_ingest_consumer_lag{") || Instant::now() >= deadline {
            break (status, metrics);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status, 200);
    assert_eq!(
        metric_sum(&metrics, "scent_ingest_readings_total"),
        stats.readings as f64
    );
    assert_eq!(
        metric_sum(&metrics, "scent_dataflow_actions_total"),
        actions.len() as f64
    );
    for reason in &malformed_kinds {
        let expected = truth
            .malformed
            .iter()
            .filter(|m| m.expected_reason == *reason)
            .count();
        let series = format!(
            "scent_ingest_rejected_total{{stage=\"{}\",reason=\"{}\"}}",
            reason.stage().as_str(),
            reason.code()
        );
        assert_eq!(metric_sum(&metrics, &series), expected as f64, "{series}");
    }
    assert!(metrics.contains("scent_dataflow_stage_latency_seconds_bucket"));
    assert!(metrics.contains("scent_ingest_consumer_lag{"));

    // Dead letters: every malformed record, with its reason, original bytes
    // and source coordinates.
    let letters = read_dead_letters(&settings, truth.malformed.len());
    assert_eq!(
        letters.len(),
        truth.malformed.len(),
        "every malformed record is a dead letter"
    );
    let mut expected: Vec<_> = truth
        .malformed
        .iter()
        .map(|m| (m.payload.clone(), m.expected_reason))
        .collect();
    let mut got: Vec<_> = letters
        .iter()
        .map(|l| (l.record.payload.clone(), l.rejection.reason))
        .collect();
    expected.sort();
    got.sort();
    assert_eq!(
        got, expected,
        "dead letters carry the original bytes and the expected reason"
    );
    for letter in &letters {
        assert_eq!(letter.record.source.topic, topics.readings);
        assert!(letter.record.source.offset >= 0);
        assert_eq!(letter.rejection.stage, letter.rejection.reason.stage());
    }

    // The archive: every valid reading, every action, every dead letter.
    block_on(async {
        let archive = Archive::connect(&database_url).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let readings = archive.count_readings().await.unwrap_or(0);
            let archived_actions = archive.actions().await.map(|a| a.len()).unwrap_or(0);
            let archived_letters = archive.dead_letters().await.map(|d| d.len()).unwrap_or(0);
            if readings as u64 == stats.readings
                && archived_actions == actions.len()
                && archived_letters == letters.len()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "archive incomplete: {readings}/{} readings, {archived_actions}/{} actions, {archived_letters}/{} dead letters",
                stats.readings,
                actions.len(),
                letters.len()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let mut archived = archive.actions().await.unwrap();
        let mut produced = actions.clone();
        archived.sort();
        produced.sort();
        assert_eq!(
            archived, produced,
            "the archive holds exactly the actions on the topic"
        );
        archive.close().await;
    });
}
