//! The model lifecycle against real servers: `scent train forecast` on a
//! simulated plant history (through the real quality-control dataflow),
//! every version stored in PostgreSQL and published to a fresh models
//! topic, read back with `kcat` (a client we did not write) and decoded;
//! `scent train publish` rolling back to an older version and forward to
//! the latest; training from the readings of the archive; `scent train
//! contaminant` learning a confirmed contaminant's signature from the
//! alarming cycles of the batch it contaminated, stored and published
//! the same way; and knowledge sharing through the running engine: a
//! contamination nothing names is held on one line, learned from the
//! archive, published, read by `scent run` while it runs, and from then on
//! names the contaminant and holds the line on every line, while the
//! sealed decision stays as it was.
//!
//! Needs `SCENT_KAFKA_BROKERS`, `SCENT_DATABASE_URL` and `kcat` (the
//! archive test only the database), which
//! `deploy/test.sh` provides. Without them each test says why and passes,
//! unless `SCENT_REQUIRE_SERVICES=1` (set by the test script) or `CI` is
//! set, which make a missing service a failure.
//!
//! The histories are small enough for a debug build (2 lines, 60-minute
//! batches, 300,000 and 450,000 readings: 6 and 9 hours of plant time), so
//! the tests train with a smaller forecast configuration than the default
//! (horizons of 1, 5 and 15 minutes, windows of 6 and 30 cycles, 10 trees):
//! the default looks 2 hours ahead from 30 minutes of history, which needs
//! runs longer than these batches.

use scent::archive::{Archive, ArchiveBatch};
use scent::sim::{EventClass, EventPlan, EventSpec, Plant, SimRecord};
use scent::simulate::{prefixed_topics, produce_records};
use scent_kafka::admin::{create_topics, default_topics};
use scent_kafka::codec::decode_action;
use scent_kafka::KafkaSettings;
use scent_operators::model::{Action, ActionKind, Agent, Decision, SourceCoord};
use scent_operators::model_registry::{decode_model_record, ModelContent};
use serde_json::Value;
use sqlx::Row;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use support::{block_on, fresh_database};

mod support;

/// The values of `variables`, or `None` when the test is skipped (a
/// failure instead when `CI` is set).
fn services<const N: usize>(test: &str, variables: [&str; N], kcat: bool) -> Option<[String; N]> {
    let found = support::services(test, variables, kcat);
    if found.is_none() && std::env::var_os("CI").is_some() {
        panic!(
            "{test}: CI is set, and the test needs {variables:?}{}",
            if kcat { " and kcat" } else { "" }
        );
    }
    found
}

/// The forecast configuration of these tests and a fresh models topic.
fn write_config(dir: &Path, models_topic: &str) -> std::path::PathBuf {
    let path = dir.join("train.toml");
    std::fs::write(
        &path,
        format!(
            "[forecast]\n\
             horizons_ms = [60000, 300000, 900000]\n\
             lags = [1, 2, 6]\n\
             windows = [6, 30]\n\
             min_training_rows = 100\n\
             [forecast.forest]\n\
             trees = 10\n\
             max_depth = 6\n\
             [kafka.topics]\n\
             models = \"{models_topic}\"\n"
        ),
    )
    .unwrap();
    path
}

/// Runs `scent train ARGS` and returns its JSON report.
fn scent_train(args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_scent"))
        .arg("train")
        .args(args)
        .env("SCENT_LOG", "warn")
        .output()
        .expect("scent runs");
    assert!(
        output.status.success(),
        "scent train {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON object on stdout")
}

/// `(name, version)` of every model of a report.
fn versions(report: &Value) -> Vec<(String, String)> {
    report["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|model| {
            (
                model["name"].as_str().unwrap().to_owned(),
                model["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The version of the last record keyed `name` on the topic, decoded.
fn last_published(brokers: &str, topic: &str, name: &str) -> String {
    let records = support::kcat_read(brokers, topic);
    let (_, payload) = records
        .iter()
        .rev()
        .find(|(key, _)| key == name)
        .unwrap_or_else(|| panic!("no record keyed {name} on {topic}"));
    decode_model_record(payload.as_bytes())
        .expect("the published record decodes")
        .version
}

#[test]
fn trains_stores_publishes_and_rolls_back_forecast_models() {
    let test = "trains_stores_publishes_and_rolls_back_forecast_models";
    let Some([brokers, admin_url]) =
        services(test, ["SCENT_KAFKA_BROKERS", "SCENT_DATABASE_URL"], true)
    else {
        return;
    };
    let database_url = block_on(fresh_database(
        &admin_url,
        &format!("scent_test_train_{}", std::process::id()),
    ));
    let dir = tempfile::tempdir().unwrap();
    let topic = format!("scent.test.models.{}", std::process::id());
    let config = write_config(dir.path(), &topic);
    let config = config.to_str().unwrap();
    let out = dir.path().join("models");

    // 1. Train on 450,000 simulated readings: store, publish, write.
    let first = scent_train(&[
        "forecast",
        "--from-sim",
        "--readings",
        "450000",
        "--lines",
        "2",
        "--batch-minutes",
        "60",
        "--config",
        config,
        "--database-url",
        &database_url,
        "--kafka",
        &brokers,
        "--out",
        out.to_str().unwrap(),
    ]);
    eprintln!(
        "first training: {} index points, replay {:.1} s, training {:.1} s",
        first["index_points"], first["replay_seconds"], first["training_seconds"]
    );
    let first_versions = versions(&first);
    let names: Vec<&str> = first_versions.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["forecast/decaf", "forecast/espresso"], "{first}");
    for model in first["models"].as_array().unwrap() {
        for horizon in model["horizons"].as_array().unwrap() {
            let holdout = &horizon["holdout"];
            assert!(holdout["rows"].as_u64().unwrap() > 0, "{horizon}");
            assert!(holdout["mae"].as_f64().unwrap().is_finite(), "{horizon}");
            assert!(!horizon["top_importances"].as_array().unwrap().is_empty());
        }
    }
    assert!(first["stored"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["new"] == true));

    // The rows: one per version, whose record decodes to the same version
    // and is the file written and the record published.
    let published = support::kcat_read(&brokers, &topic);
    block_on(async {
        let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
        for (name, version) in &first_versions {
            let row = sqlx::query(
                "SELECT kind, product, training, record FROM model_version \
                 WHERE name = $1 AND version = $2",
            )
            .bind(name)
            .bind(version)
            .fetch_one(&pool)
            .await
            .unwrap();
            let product: String = row.get("product");
            assert_eq!(row.get::<String, _>("kind"), "forecast");
            assert_eq!(format!("forecast/{product}"), *name);
            let training: sqlx::types::Json<Value> = row.get("training");
            assert_eq!(training.0["source"]["kind"], "sim");
            assert_eq!(training.0["version"], version.as_str());
            let record: Vec<u8> = row.get("record");
            let decoded = decode_model_record(&record).expect("the stored record decodes");
            assert_eq!(decoded.version, *version);
            let ModelContent::Forecast {
                product: decoded_product,
                ..
            } = &decoded.content
            else {
                panic!("{name} is stored as a forecast model: {decoded:?}");
            };
            assert_eq!(*decoded_product, product);
            let file = out.join(format!("{}.json", name.replace('/', "_")));
            assert_eq!(std::fs::read(&file).unwrap(), record, "{}", file.display());
            let (_, payload) = published
                .iter()
                .find(|(key, _)| key == name)
                .unwrap_or_else(|| panic!("kcat read no record keyed {name}"));
            assert_eq!(payload.as_bytes(), record.as_slice(), "{name}");
        }
        let dead_letter_streams: String = sqlx::query_scalar(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE conname = 'dead_letter_stream_check'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(
            dead_letter_streams.contains("'models'"),
            "{dead_letter_streams}"
        );
        pool.close().await;
    });

    // 2. A second training on a shorter history gives new versions, stored
    //    and published; training it again stores nothing new.
    let second_args = [
        "forecast",
        "--from-sim",
        "--readings",
        "300000",
        "--lines",
        "2",
        "--batch-minutes",
        "60",
        "--config",
        config,
        "--database-url",
        &database_url,
        "--kafka",
        &brokers,
    ];
    let second = scent_train(&second_args);
    let second_versions = versions(&second);
    for ((name, old), (_, new)) in first_versions.iter().zip(&second_versions) {
        assert_ne!(old, new, "{name}: another history, another version");
        assert_eq!(last_published(&brokers, &topic, name), *new);
    }
    let again = scent_train(&second_args[..second_args.len() - 2]);
    assert_eq!(
        versions(&again),
        second_versions,
        "training is deterministic"
    );
    assert!(
        again["stored"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["new"] == false),
        "insert-or-ignore: {}",
        again["stored"]
    );

    // 3. Roll back: `train publish --version` of the first version puts
    //    exactly that record back on the topic; without a version, the
    //    latest trained one goes out.
    let (name, old_version) = &first_versions[1];
    let (_, new_version) = &second_versions[1];
    let rollback = scent_train(&[
        "publish",
        "--database-url",
        &database_url,
        "--name",
        name,
        "--version",
        old_version,
        "--config",
        config,
        "--kafka",
        &brokers,
    ]);
    assert_eq!(rollback["published"]["version"], old_version.as_str());
    assert_eq!(last_published(&brokers, &topic, name), *old_version);
    let stored_file = std::fs::read(out.join(format!("{}.json", name.replace('/', "_")))).unwrap();
    let records = support::kcat_read(&brokers, &topic);
    let (_, last) = records.iter().rev().find(|(key, _)| key == name).unwrap();
    assert_eq!(last.as_bytes(), stored_file.as_slice(), "byte for byte");
    let forward = scent_train(&[
        "publish",
        "--database-url",
        &database_url,
        "--name",
        name,
        "--config",
        config,
        "--kafka",
        &brokers,
    ]);
    assert_eq!(forward["published"]["version"], new_version.as_str());
    assert_eq!(last_published(&brokers, &topic, name), *new_version);

    // An unknown version is an error, not a silent no-op.
    let missing = Command::new(env!("CARGO_BIN_EXE_scent"))
        .args(["train", "publish", "--database-url", &database_url])
        .args(["--name", name, "--version", "0000000000000000"])
        .args(["--config", config, "--kafka", &brokers])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no stored version"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}

/// Runs `scent train ARGS`, which must fail; returns its stderr.
fn scent_train_fails(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_scent"))
        .arg("train")
        .args(args)
        .env("SCENT_LOG", "warn")
        .output()
        .expect("scent runs");
    assert!(!output.status.success(), "scent train {args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn learns_a_confirmed_contaminant_and_publishes_it_for_every_line() {
    let test = "learns_a_confirmed_contaminant_and_publishes_it_for_every_line";
    let Some([brokers, admin_url]) =
        services(test, ["SCENT_KAFKA_BROKERS", "SCENT_DATABASE_URL"], true)
    else {
        return;
    };
    let database_url = block_on(fresh_database(
        &admin_url,
        &format!("scent_test_train_contaminant_{}", std::process::id()),
    ));
    let dir = tempfile::tempdir().unwrap();
    let topic = format!("scent.test.contaminants.{}", std::process::id());
    let config = write_config(dir.path(), &topic);
    let config = config.to_str().unwrap();
    let out = dir.path().join("models");

    // The simulated plant's first contamination in a batch with a
    // predecessor on its line (its fingerprint is fitted on that one), and
    // a batch of the same line without any event.
    let mut sim = scent::simulate::sim_config(7, 300_000, 2, 0);
    sim.batch_duration_ms = 10 * 60_000;
    let plant = Plant::new(sim).unwrap();
    let truth = plant.ground_truth();
    // Whether a batch has a fingerprint: an earlier batch of its product
    // on its line.
    let has_reference = |batch: &str| {
        let position = truth.batches.iter().position(|b| b.batch == batch);
        position.is_some_and(|i| {
            let b = &truth.batches[i];
            truth.batches[..i]
                .iter()
                .any(|p| p.line == b.line && p.product == b.product)
        })
    };
    let event = truth
        .events
        .iter()
        .find(|e| e.contaminant.is_some() && has_reference(&e.batch))
        .expect("the plant has a contamination in a batch with a fingerprint");
    let contaminant = event.contaminant.clone().unwrap();
    let clean = truth
        .batches
        .iter()
        .filter(|b| b.line == event.line && b.events.is_empty() && has_reference(&b.batch))
        .find(|b| !truth.events.iter().any(|e| e.batch == b.batch))
        .expect("a batch without events")
        .batch
        .clone();
    let name = format!("{contaminant}-confirmed");
    let history = [
        "--from-sim",
        "--readings",
        "300000",
        "--lines",
        "2",
        "--batch-minutes",
        "10",
        "--config",
        config,
    ];

    let mut args = vec!["contaminant", "--name", &name, "--line", &event.line];
    args.extend(["--batch", &event.batch]);
    args.extend(history);
    args.extend(["--database-url", &database_url, "--kafka", &brokers]);
    args.extend(["--out", out.to_str().unwrap()]);
    let report = scent_train(&args);
    let signature = &report["signature"];
    eprintln!(
        "learned from {} on {}: {signature}",
        event.batch, event.line
    );
    // The signature learned from the readings is the lab's signature of
    // the contaminant that was injected, and no other.
    let resembles = signature["resembles"].as_array().unwrap();
    assert_eq!(
        resembles[0]["contaminant"],
        contaminant.as_str(),
        "{signature}"
    );
    assert!(
        resembles[0]["cosine"].as_f64().unwrap() > 0.99,
        "{signature}"
    );
    assert!(
        resembles[1]["cosine"].as_f64().unwrap() < 0.9,
        "{signature}"
    );
    assert!(signature["cycles"].as_u64().unwrap() >= 3, "{signature}");
    assert!(
        signature["coherence"].as_f64().unwrap() >= 0.8,
        "{signature}"
    );

    // Published keyed by its name, read back by kcat, byte for byte the
    // file written and the row stored; it decodes to the signature.
    let key = format!("contaminant/{name}");
    let version = signature["version"].as_str().unwrap();
    assert_eq!(last_published(&brokers, &topic, &key), version);
    let file = std::fs::read(out.join(format!("contaminant_{name}.json"))).unwrap();
    let records = support::kcat_read(&brokers, &topic);
    let (_, payload) = records.iter().rev().find(|(k, _)| *k == key).unwrap();
    assert_eq!(payload.as_bytes(), file.as_slice());
    let decoded = decode_model_record(&file).unwrap();
    let ModelContent::Contaminant { signature: learned } = &decoded.content else {
        panic!("not a contaminant record: {decoded:?}");
    };
    assert_eq!(learned.name, name);
    assert_eq!(
        serde_json::to_value(&learned.response).unwrap(),
        signature["response"]
    );
    block_on(async {
        let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
        let row = sqlx::query(
            "SELECT kind, product, training, record FROM model_version \
             WHERE name = $1 AND version = $2",
        )
        .bind(&key)
        .bind(version)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(row.get::<String, _>("kind"), "contaminant");
        assert_eq!(row.get::<Option<String>, _>("product"), None);
        let training: sqlx::types::Json<Value> = row.get("training");
        assert_eq!(training.0["batch"], event.batch.as_str());
        assert_eq!(training.0["source"]["kind"], "sim");
        assert_eq!(row.get::<Vec<u8>, _>("record"), file);
        pool.close().await;
    });

    // Learning again from the same history gives the same version; a batch
    // without a contamination teaches nothing; a name with '/' is refused.
    let mut again = vec!["contaminant", "--name", &name, "--line", &event.line];
    again.extend(["--batch", &event.batch]);
    again.extend(history);
    assert_eq!(scent_train(&again)["signature"]["version"], version);
    let mut clean_args = vec!["contaminant", "--name", "nothing", "--line", &event.line];
    clean_args.extend(["--batch", &clean]);
    clean_args.extend(history);
    let error = scent_train_fails(&clean_args);
    assert!(error.contains("alarming cycles"), "{error}");
    let mut slash = vec!["contaminant", "--name", "a/b", "--line", &event.line];
    slash.extend(["--batch", &event.batch]);
    slash.extend(history);
    assert!(scent_train_fails(&slash).contains("'/' is not allowed"));
}

/// The sealed release of every batch and the `hold_line`s that stand,
/// from the actions topic.
fn decisions(brokers: &str, topic: &str) -> (BTreeMap<String, Action>, Vec<Action>) {
    let actions: Vec<Action> = support::kcat_read(brokers, topic)
        .iter()
        .map(|(_, value)| decode_action(topic, value.as_bytes()).expect("actions decode"))
        .collect();
    // A sealed release is final: one per batch.
    let finals = actions
        .iter()
        .filter(|a| a.sealed && a.kind == ActionKind::BatchRelease)
        .filter_map(|a| Some((a.batch.clone()?, a.clone())))
        .collect();
    let mut holds: BTreeMap<_, Action> = BTreeMap::new();
    for action in actions.iter().filter(|a| a.kind == ActionKind::HoldLine) {
        holds.insert(action.subject(), action.clone());
    }
    let holds = holds.into_values().filter(|a| !a.withdrawn).collect();
    (finals, holds)
}

/// Whether any reason of `action` names `contaminant`.
fn names(action: &Action, contaminant: &str) -> bool {
    action
        .reasons
        .iter()
        .any(|reason| reason.contaminant.as_deref() == Some(contaminant))
}

#[test]
fn a_learned_contaminant_reaches_the_running_engine_and_every_line() {
    let test = "a_learned_contaminant_reaches_the_running_engine_and_every_line";
    let Some([brokers, admin_url]) =
        services(test, ["SCENT_KAFKA_BROKERS", "SCENT_DATABASE_URL"], true)
    else {
        return;
    };
    let run_id = format!("learned-{}", std::process::id());
    let database_url = block_on(fresh_database(
        &admin_url,
        &format!("scent_test_{}", run_id.replace('-', "_")),
    ));
    let settings = KafkaSettings {
        brokers: brokers.clone(),
        group_id: run_id.clone(),
        topics: prefixed_topics(&format!("{run_id}.")),
        ..KafkaSettings::default()
    };
    block_on(create_topics(&settings, &default_topics(&settings, 2))).unwrap();
    let topics = &settings.topics;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("scent.toml");
    // The engine's contaminant library is the default: empty. Whatever names
    // a contaminant below was learned.
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"{brokers}\"\ngroup_id = \"{run_id}\"\n\
             [kafka.topics]\nreadings = \"{}\"\nbatches = \"{}\"\nactions = \"{}\"\n\
             dead_letters = \"{}\"\nprogress = \"{}\"\nmodels = \"{}\"\n\
             [archive]\nenabled = true\ndatabase_url = \"{database_url}\"\n",
            topics.readings,
            topics.batches,
            topics.actions,
            topics.dead_letters,
            topics.progress,
            topics.models,
        ),
    )
    .unwrap();

    // Two lines, 10-minute batches; mould reaches line L1 in its third
    // batch, and later both lines in their sixth.
    let mut sim = scent::simulate::sim_config(3, 60_000, 2, 0);
    sim.duration_ms = 75 * 60_000;
    let contamination = |line: &str, batch: u32| EventSpec {
        class: EventClass::Contamination,
        line: line.into(),
        batch,
        sensor: None,
        contaminant: Some("mould".into()),
        start_offset_ms: Some(150_000),
        duration_ms: Some(180_000),
        rate_pct_per_hour: None,
    };
    sim.events = EventPlan::Explicit(vec![
        contamination("L1", 3),
        contamination("L1", 6),
        contamination("L2", 6),
    ]);
    let plant = Plant::new(sim).unwrap();
    let truth = plant.ground_truth().clone();
    let batch = |line: &str, n: usize| {
        truth
            .batches
            .iter()
            .find(|b| b.batch == format!("B-{line}-{n:04}"))
            .unwrap_or_else(|| panic!("the plant has batch {n} on {line}"))
            .clone()
    };
    let (first, l1_later, l2_later) = (batch("L1", 3), batch("L1", 6), batch("L2", 6));
    // Part one ends where L1's fifth batch starts: the first contamination's
    // batch has sealed by then, the later ones have not begun.
    let split_ms = batch("L1", 5).start_ms;
    let (part_one, part_two): (Vec<SimRecord>, Vec<SimRecord>) = plant
        .merged_stream()
        .partition(|record| record.ts_ms() < split_ms);
    let stop = AtomicBool::new(false);
    let produced_one = produce_records(part_one, &settings, 0.0, &stop).unwrap();
    let mut engine = support::Engine::start_isolated(&config, dir.path().join("engine.log"));

    // 1. Unknown: the first contamination is held, but nothing names it and
    //    the line is not held.
    let deadline = Instant::now() + Duration::from_secs(180);
    let held = loop {
        engine.assert_running();
        let (finals, _) = decisions(&brokers, &topics.actions);
        if let Some(action) = finals.get(&first.batch) {
            break action.clone();
        }
        assert!(Instant::now() < deadline, "{} was not sealed", first.batch);
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_ne!(held.decision, Some(Decision::Release), "{held:?}");
    assert!(!names(&held, "mould"), "{held:?}");

    // 2. Confirmed and learned from the archive, published to the models
    //    topic the engine reads.
    block_on(async {
        let archive = Archive::connect(&database_url).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while (archive.count_readings().await.unwrap_or(0) as u64) < produced_one.readings {
            assert!(Instant::now() < deadline, "part one not archived");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        archive.close().await;
    });
    let config_arg = config.to_str().unwrap();
    let learned = scent_train(&[
        "contaminant",
        "--name",
        "mould",
        "--line",
        "L1",
        "--batch",
        &first.batch,
        "--from-archive",
        "--database-url",
        &database_url,
        "--config",
        config_arg,
        "--kafka",
        &brokers,
    ]);
    assert_eq!(
        learned["published"][0]["name"], "contaminant/mould",
        "{learned}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while engine
        .metrics()
        .sum("scent_ingest_model_records_total", &[])
        < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "the engine did not read the record"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // 3. From then on every line names it: both later contaminations are
    //    held with mould named, and their lines held.
    produce_records(part_two, &settings, 0.0, &stop).unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    let (finals, holds) = loop {
        engine.assert_running();
        let (finals, holds) = decisions(&brokers, &topics.actions);
        if finals.len() >= truth.batches.len() {
            break (finals, holds);
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} batches sealed",
            finals.len(),
            truth.batches.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    // The quality verdict cites the learned signature by its version.
    let reference = format!(
        "contaminant:mould:{}",
        learned["signature"]["version"].as_str().unwrap()
    );
    for later in [&l1_later, &l2_later] {
        let release = &finals[&later.batch];
        assert_eq!(release.decision, Some(Decision::Hold), "{release:?}");
        assert!(names(release, "mould"), "{release:?}");
        let quality = release
            .evidence
            .verdicts
            .iter()
            .find(|v| v.agent == Agent::Quality)
            .expect("a quality verdict");
        assert!(quality.critical, "{quality:?}");
        assert!(quality.models.contains(&reference), "{quality:?}");
        assert!(
            holds
                .iter()
                .any(|h| h.batch.as_deref() == Some(&later.batch) && names(h, "mould")),
            "no hold_line for {} naming mould: {holds:?}",
            later.batch
        );
    }
    // The sealed decision of the first batch stands as it was.
    assert_eq!(finals[&first.batch], held);
    assert!(!holds
        .iter()
        .any(|h| h.batch.as_deref() == Some(first.batch.as_str())));
}

#[test]
fn trains_from_the_readings_of_the_archive() {
    let test = "trains_from_the_readings_of_the_archive";
    let Some([admin_url]) = services(test, ["SCENT_DATABASE_URL"], false) else {
        return;
    };
    let database_url = block_on(fresh_database(
        &admin_url,
        &format!("scent_test_train_archive_{}", std::process::id()),
    ));
    // The readings of a simulated plant, archived as the archiver would.
    let mut sim = scent::simulate::sim_config(11, 300_000, 2, 0);
    sim.batch_duration_ms = 60 * 60_000;
    let plant = Plant::new(sim).unwrap();
    let topic = scent_kafka::Topics::default().readings;
    let mut readings = Vec::new();
    for line in 0..2 {
        for (offset, record) in plant.line_stream(line).enumerate() {
            if let SimRecord::Reading(reading) = record {
                let source = SourceCoord {
                    topic: topic.clone(),
                    partition: line as i32,
                    offset: offset as i64,
                };
                readings.push((reading, source));
            }
        }
    }
    let archived = readings.len();
    block_on(async {
        let archive = Archive::connect(&database_url).await.unwrap();
        archive.migrate().await.unwrap();
        for chunk in readings.chunks(50_000) {
            archive
                .commit(&ArchiveBatch {
                    readings: chunk.to_vec(),
                    ..ArchiveBatch::default()
                })
                .await
                .unwrap();
        }
        archive.close().await;
    });

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "scent.models");
    let report = scent_train(&[
        "forecast",
        "--from-archive",
        "--database-url",
        &database_url,
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(report["source"]["kind"], "archive");
    assert_eq!(report["source"]["readings"], archived as u64);
    let names: Vec<String> = versions(&report).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["forecast/decaf", "forecast/espresso"], "{report}");
    let stored: i64 = block_on(async {
        let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
        let count = sqlx::query_scalar(
            "SELECT count(*) FROM model_version WHERE training -> 'source' ->> 'kind' = 'archive'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        count
    });
    assert_eq!(stored, 2);
    eprintln!(
        "archive: {archived} readings, {} index points, {} series",
        report["index_points"], report["series"]
    );
}
