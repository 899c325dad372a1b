//! Integration tests of the PostgreSQL archive (`scent::archive`) against a real server.
//!
//! The server comes from `SCENT_DATABASE_URL` (set by `deploy/test.sh` via
//! `deploy/dev/env.sh`); its role needs CREATEDB. Each test creates its own database
//! (`scent_test_<test>_<pid>_<n>`), applies the migrations there and drops it at the end, so
//! tests run in parallel without seeing each other. Without `SCENT_DATABASE_URL` each test
//! prints why it is skipped and passes, unless `SCENT_REQUIRE_SERVICES=1`, which makes a
//! missing database a failure (the project test script sets it).
//!
//! What is checked: migrations apply to an empty database and re-apply as a no-op; a batch
//! of 10,000 readings with actions and dead letters round-trips exactly (float bits, text,
//! bytes); committing a batch twice inserts nothing and offsets only move forward; a failing
//! statement rolls back the whole batch, offsets included (the transaction boundary that
//! makes the archive exactly-once); awkward text survives COPY; errors are classified.
//! `copy_throughput_of_16_channel_readings` prints the rows/s of the COPY path
//! (`cargo test --release --test archive copy_throughput -- --nocapture`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use scent::archive::{
    Archive, ArchiveBatch, ArchiveError, ArchivedDeadLetter, ConsumerOffset, MIGRATOR,
};
use scent_operators::model::{
    Action, ActionKind, AnomalyRule, DeadLetter, Decision, Evidence, InputStream, RawRecord,
    Reading, Reason, RejectReason, Rejection, SensorKind, SourceCoord, Stage,
};
use sqlx::{Connection, Executor, PgConnection};

// ---------------------------------------------------------------------------------------
// A fresh database per test

/// A database created for one test, dropped by [`TestDb::drop_database`].
struct TestDb {
    admin_url: String,
    name: String,
    url: String,
}

static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// Creates an empty database for `test`, or returns `None` (after saying so) when no
/// server is configured and services are optional.
async fn fresh_db(test: &str) -> Option<TestDb> {
    let Ok(admin_url) = std::env::var("SCENT_DATABASE_URL") else {
        if std::env::var("SCENT_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("SCENT_DATABASE_URL is not set but SCENT_REQUIRE_SERVICES=1");
        }
        eprintln!(
            "skipping archive test {test}: SCENT_DATABASE_URL is not set \
             (run deploy/test.sh, or deploy/dev/postgres.sh start and source deploy/dev/env.sh)"
        );
        return None;
    };
    let name = format!(
        "scent_test_{test}_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .expect("connect to SCENT_DATABASE_URL");
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .await
        .expect("create test database (the role needs CREATEDB)");
    admin.close().await.ok();
    let url = with_database(&admin_url, &name);
    Some(TestDb {
        admin_url,
        name,
        url,
    })
}

/// `url` with its database name replaced by `name` (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{}", &base[..authority_end], name);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

impl TestDb {
    async fn archive(&self) -> Archive {
        let archive = Archive::connect(&self.url).await.expect("connect archive");
        archive.migrate().await.expect("migrate");
        archive
    }

    async fn drop_database(self) {
        let mut admin = PgConnection::connect(&self.admin_url)
            .await
            .expect("connect to SCENT_DATABASE_URL");
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            )))
            .await
            .expect("drop test database");
        admin.close().await.ok();
    }
}

// ---------------------------------------------------------------------------------------
// Deterministic test data

/// xorshift64*: enough randomness for test data, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Any finite f64, with extremes, signed zeros and subnormals over-represented.
    fn finite_f64(&mut self) -> f64 {
        const SPECIAL: [f64; 8] = [
            0.0,
            -0.0,
            f64::MIN_POSITIVE,
            5e-324,
            -5e-324,
            f64::MAX,
            f64::MIN,
            1.0 / 3.0,
        ];
        if self.below(16) == 0 {
            return SPECIAL[self.below(SPECIAL.len() as u64) as usize];
        }
        loop {
            let value = f64::from_bits(self.next());
            if value.is_finite() {
                return value;
            }
        }
    }

    /// A value a sensor could report: a few hundred with 17 significant digits.
    fn plausible_f64(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 * 500.0 - 100.0
    }
}

const AWKWARD_TEXT: [&str; 8] = [
    "plain",
    "with, comma",
    "with \"double\" quotes and 'single'",
    "line one\nline two\r\nline three\rend",
    "\\.",
    "x\n\\.\ny",
    "ünïcödé ⚗️ 嗅覚 \u{1F443} \u{200B}",
    "trailing backslash \\",
];

fn reading_coord(offset: i64) -> SourceCoord {
    SourceCoord {
        topic: "scent.readings".into(),
        partition: (offset % 4) as i32,
        offset,
    }
}

/// `n` readings, a tenth of them 16-channel e-nose arrays, the rest scalars; every 97th
/// carries awkward text.
fn readings(rng: &mut Rng, n: usize, first_offset: i64) -> Vec<(Reading, SourceCoord)> {
    (0..n)
        .map(|i| {
            let kind = if i % 10 == 0 {
                SensorKind::Enose
            } else {
                SensorKind::ALL[1 + i % 5]
            };
            let channels = if kind == SensorKind::Enose { 16 } else { 1 };
            let awkward = (i % 97 == 0).then(|| AWKWARD_TEXT[(i / 97) % AWKWARD_TEXT.len()]);
            let reading = Reading {
                plant: "plant-1".into(),
                line: format!("line-{}", i % 3),
                sensor: match awkward {
                    Some(text) => format!("{}-{text}", kind.as_str()),
                    None => format!("{}-{}", kind.as_str(), i % 7),
                },
                kind,
                ts_ms: 1_700_000_000_000 + i as i64 * 250 + rng.below(250) as i64,
                seq: i as u64,
                batch: (i % 5 != 0).then(|| format!("B-{}", i / 1000)),
                product: match awkward {
                    Some(text) => Some(text.to_owned()),
                    None => (i % 5 != 0).then(|| "cocoa, \"dark\"".to_owned()),
                },
                values: (0..channels).map(|_| rng.finite_f64()).collect(),
            };
            (reading, reading_coord(first_offset + i as i64))
        })
        .collect()
}

/// Reason statistics with at most 4 decimals parse back exactly even with serde_json's
/// default float parser; see `action_statistics_round_trip_bit_exact` for full precision.
fn short_decimal(rng: &mut Rng) -> f64 {
    rng.below(200_000) as f64 / 10_000.0
}

fn actions(rng: &mut Rng, n: usize) -> Vec<(Action, Option<SourceCoord>)> {
    (0..n)
        .map(|i| {
            let kind = [
                ActionKind::BatchRelease,
                ActionKind::HoldLine,
                ActionKind::ScheduleMaintenance,
                ActionKind::Alert,
            ][i % 4];
            let decision = (kind == ActionKind::BatchRelease)
                .then(|| [Decision::Release, Decision::Hold, Decision::Reject][i % 3]);
            let reasons = (0..i % 4)
                .map(|r| Reason {
                    sensor: format!("enose-{r} {}", AWKWARD_TEXT[(i + r) % AWKWARD_TEXT.len()]),
                    kind: SensorKind::Enose,
                    rule: [AnomalyRule::ZScore, AnomalyRule::FlatLine, AnomalyRule::Gap][r % 3],
                    count: rng.below(1000),
                    max_statistic: short_decimal(rng),
                    limit: 6.0,
                    first_ts_ms: 1_700_000_000_000 + i as i64,
                    last_ts_ms: 1_700_000_100_000 + i as i64,
                    channels: (0..(r as u16 % 3)).collect(),
                    contaminant: None,
                })
                .collect();
            let action = Action {
                action_id: format!("act-{i:05}"),
                kind,
                plant: "plant-1".into(),
                line: format!("line-{}", i % 3),
                batch: (kind == ActionKind::BatchRelease || i % 2 == 0)
                    .then(|| format!("B-{}", i / 4)),
                product: (i % 3 != 0).then(|| AWKWARD_TEXT[i % AWKWARD_TEXT.len()].to_owned()),
                decision,
                reasons,
                evidence: Evidence {
                    batch_start_ms: (i % 2 == 0).then_some(1_699_999_000_000),
                    batch_end_ms: (i % 7 != 0).then_some(1_700_000_200_000 + i as i64),
                    anomalies: rng.below(50),
                    rules_version: "rules-v1 \"θ\"".into(),
                    verdicts: Vec::new(),
                    input: Vec::new(),
                },
                // Several actions share a timestamp, so the read order needs action_id too.
                ts_ms: 1_700_000_200_000 + (i / 3) as i64 * 1000,
                maintenance: None,
                revision: 1 + (i % 3) as u32,
                supersedes: (i % 3 != 0).then(|| format!("act-{:05}", i.saturating_sub(1))),
                withdrawn: false,
                sealed: i % 3 == 2,
            };
            let coord = (i % 5 != 0).then(|| SourceCoord {
                topic: "scent.actions".into(),
                partition: (i % 2) as i32,
                offset: i as i64,
            });
            (action, coord)
        })
        .collect()
}

fn dead_letters(rng: &mut Rng, n: usize) -> Vec<ArchivedDeadLetter> {
    (0..n)
        .map(|i| {
            let payload: Vec<u8> = match i % 4 {
                0 => vec![0xff, 0xfe, 0x00, b'{', 0x80],
                1 => b"{\"sensor\": \"a,b\"\n}".to_vec(),
                2 => Vec::new(),
                _ => (0..rng.below(300)).map(|_| rng.next() as u8).collect(),
            };
            let (stage, reason) = [
                (Stage::Decode, RejectReason::InvalidUtf8),
                (Stage::Decode, RejectReason::InvalidJson),
                (Stage::Validate, RejectReason::NonFinite),
                (Stage::Late, RejectReason::Late),
                (Stage::Duplicate, RejectReason::DuplicateSequence),
            ][i % 5];
            ArchivedDeadLetter {
                dead_letter: DeadLetter {
                    record: RawRecord {
                        stream: if i % 3 == 0 {
                            InputStream::Batches
                        } else {
                            InputStream::Readings
                        },
                        source: SourceCoord {
                            topic: "scent.readings".into(),
                            partition: (i % 4) as i32,
                            offset: 1_000_000 + i as i64,
                        },
                        key: (i % 2 == 0).then(|| format!("line-1/s{i}").into_bytes()),
                        payload,
                    },
                    rejection: Rejection::new(
                        stage,
                        reason,
                        format!("detail {i}: {}", AWKWARD_TEXT[i % AWKWARD_TEXT.len()]),
                    ),
                },
                dlq_coord: (i % 3 != 2).then(|| SourceCoord {
                    topic: "scent.dlq".into(),
                    partition: 0,
                    offset: i as i64,
                }),
            }
        })
        .collect()
}

/// Offsets one past the highest archived offset per partition.
fn offsets_after(consumer: &str, coords: &[SourceCoord]) -> Vec<ConsumerOffset> {
    let mut highest = std::collections::BTreeMap::new();
    for coord in coords {
        let next = highest
            .entry((coord.topic.clone(), coord.partition))
            .or_insert(0);
        *next = (*next).max(coord.offset + 1);
    }
    highest
        .into_iter()
        .map(|((topic, partition), next_offset)| ConsumerOffset {
            consumer: consumer.into(),
            topic,
            partition,
            next_offset,
        })
        .collect()
}

fn full_batch(seed: u64, n_readings: usize) -> ArchiveBatch {
    let mut rng = Rng(seed);
    let readings = readings(&mut rng, n_readings, 0);
    let coords: Vec<_> = readings.iter().map(|(_, c)| c.clone()).collect();
    ArchiveBatch {
        offsets: offsets_after("archiver", &coords),
        readings,
        actions: actions(&mut rng, 200),
        dead_letters: dead_letters(&mut rng, 60),
    }
}

/// Readings compared field by field, values by their bits (so -0.0 != 0.0).
fn assert_readings_identical(got: &[(Reading, SourceCoord)], want: &[(Reading, SourceCoord)]) {
    assert_eq!(got.len(), want.len(), "number of readings");
    for ((g, gc), (w, wc)) in got.iter().zip(want) {
        assert_eq!(gc, wc);
        let bits = |r: &Reading| r.values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(g), bits(w), "values of the reading at {wc}");
        let mut g = g.clone();
        g.values = w.values.clone();
        assert_eq!(&g, w, "reading at {wc}");
    }
}

fn sorted_by_coord(mut readings: Vec<(Reading, SourceCoord)>) -> Vec<(Reading, SourceCoord)> {
    readings.sort_by(|a, b| a.1.cmp(&b.1));
    readings
}

async fn table_count(archive: &Archive, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(archive.pool())
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_are_idempotent() {
    let Some(db) = fresh_db("migrate").await else {
        return;
    };
    let archive = Archive::connect(&db.url).await.unwrap();
    archive.migrate().await.unwrap();
    archive.migrate().await.unwrap();
    // A second process migrating the same database is a no-op as well.
    let other = Archive::connect(&db.url).await.unwrap();
    other.migrate().await.unwrap();

    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(archive.pool())
            .await
            .unwrap();
    let embedded: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    assert_eq!(applied, embedded);
    assert!(applied.contains(&1));

    for table in ["reading", "action", "dead_letter", "archive_offset"] {
        assert_eq!(table_count(&archive, table).await, 0, "{table}");
    }
    assert_eq!(archive.count_readings().await.unwrap(), 0);
    assert!(archive.actions().await.unwrap().is_empty());
    assert!(archive.dead_letters().await.unwrap().is_empty());
    assert!(archive.offsets("archiver").await.unwrap().is_empty());
    // An empty batch is a no-op that does not even need a transaction.
    let stats = archive.commit(&ArchiveBatch::default()).await.unwrap();
    assert_eq!(stats.readings + stats.actions + stats.offsets_advanced, 0);

    archive.close().await;
    other.close().await;
    db.drop_database().await;
}

#[tokio::test]
async fn a_batch_of_ten_thousand_readings_round_trips_exactly() {
    let Some(db) = fresh_db("roundtrip").await else {
        return;
    };
    let archive = db.archive().await;
    let batch = full_batch(0x5eed_0001, 10_000);

    let stats = archive.commit(&batch).await.unwrap();
    assert_eq!(stats.readings, 10_000);
    assert_eq!(stats.readings_skipped, 0);
    assert_eq!(stats.actions, 200);
    assert_eq!(stats.dead_letters, 60);
    assert_eq!(stats.offsets_advanced, 4);
    assert_eq!(archive.count_readings().await.unwrap(), 10_000);

    // Readings: every field, float bits included.
    let got = archive.readings().await.unwrap();
    assert_readings_identical(&got, &sorted_by_coord(batch.readings.clone()));

    // Actions: rebuilt from payload, ordered by (ts, action_id).
    let mut want: Vec<Action> = batch.actions.iter().map(|(a, _)| a.clone()).collect();
    want.sort_by(|a, b| (a.ts_ms, &a.action_id).cmp(&(b.ts_ms, &b.action_id)));
    let got = archive.actions().await.unwrap();
    assert_eq!(got, want);
    for (action, source) in &batch.actions {
        let row: (
            String,
            Option<String>,
            serde_json::Value,
            serde_json::Value,
            Option<i64>,
        ) = sqlx::query_as(
            "SELECT kind, decision, reasons, evidence, source_offset FROM action \
                 WHERE action_id = $1",
        )
        .bind(&action.action_id)
        .fetch_one(archive.pool())
        .await
        .unwrap();
        assert_eq!(row.0, serde_json::to_value(action.kind).unwrap());
        assert_eq!(row.1.as_deref(), action.decision.map(|d| d.as_str()));
        let reasons: Vec<Reason> = serde_json::from_value(row.2).unwrap();
        assert_eq!(reasons, action.reasons);
        let evidence: Evidence = serde_json::from_value(row.3).unwrap();
        assert_eq!(evidence, action.evidence);
        assert_eq!(row.4, source.as_ref().map(|c| c.offset));
    }

    // Dead letters: bytes, codes, coordinates.
    let rows = archive.dead_letters().await.unwrap();
    assert_eq!(rows.len(), 60);
    let mut got: Vec<ArchivedDeadLetter> = rows.iter().map(|r| r.to_archived().unwrap()).collect();
    let mut want = batch.dead_letters.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    for row in &rows {
        assert!(RejectReason::parse(&row.reason_code).is_some());
    }

    // Offsets: one past the last reading per partition.
    let offsets = archive.offsets("archiver").await.unwrap();
    assert_eq!(offsets, batch.offsets);
    assert!(offsets.iter().all(|o| o.next_offset >= 9_997));
    assert!(archive.offsets("someone-else").await.unwrap().is_empty());

    archive.close().await;
    db.drop_database().await;
}

#[tokio::test]
async fn committing_the_same_batch_twice_inserts_nothing_and_offsets_never_rewind() {
    let Some(db) = fresh_db("idempotent").await else {
        return;
    };
    let archive = db.archive().await;
    let batch = full_batch(0x5eed_0002, 2_000);
    archive.commit(&batch).await.unwrap();
    let ids_before: Vec<i64> = sqlx::query_scalar("SELECT id FROM reading ORDER BY id")
        .fetch_all(archive.pool())
        .await
        .unwrap();

    let again = archive.commit(&batch).await.unwrap();
    assert_eq!(
        (
            again.readings,
            again.actions,
            again.dead_letters,
            again.offsets_advanced
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(again.readings_skipped, 2_000);
    assert_eq!(again.actions_skipped, 200);
    assert_eq!(again.dead_letters_skipped, 60);
    let ids_after: Vec<i64> = sqlx::query_scalar("SELECT id FROM reading ORDER BY id")
        .fetch_all(archive.pool())
        .await
        .unwrap();
    assert_eq!(
        ids_after, ids_before,
        "no reading row was added or replaced"
    );
    assert_eq!(table_count(&archive, "action").await, 200);
    assert_eq!(table_count(&archive, "dead_letter").await, 60);

    // An older batch replayed later (lower offsets, a subset of the rows) changes nothing.
    let old = ArchiveBatch {
        readings: batch.readings[..500].to_vec(),
        offsets: offsets_after(
            "archiver",
            &batch.readings[..500]
                .iter()
                .map(|(_, c)| c.clone())
                .collect::<Vec<_>>(),
        ),
        ..ArchiveBatch::default()
    };
    let stats = archive.commit(&old).await.unwrap();
    assert_eq!((stats.readings, stats.offsets_advanced), (0, 0));
    assert_eq!(archive.offsets("archiver").await.unwrap(), batch.offsets);

    // Within one batch, repeated records and repeated offsets keep the first record and
    // the highest offset.
    let mut rng = Rng(9);
    let fresh = readings(&mut rng, 10, 50_000);
    let mut repeated = fresh.clone();
    repeated.extend(fresh.iter().cloned());
    let dup = ArchiveBatch {
        readings: repeated,
        offsets: vec![
            ConsumerOffset {
                consumer: "archiver".into(),
                topic: "scent.readings".into(),
                partition: 0,
                next_offset: 50_004,
            },
            ConsumerOffset {
                consumer: "archiver".into(),
                topic: "scent.readings".into(),
                partition: 0,
                next_offset: 50_009,
            },
        ],
        ..ArchiveBatch::default()
    };
    let stats = archive.commit(&dup).await.unwrap();
    assert_eq!((stats.readings, stats.readings_skipped), (10, 10));
    assert_eq!(stats.offsets_advanced, 1);
    let offsets = archive.offsets("archiver").await.unwrap();
    assert_eq!(offsets[0].next_offset, 50_009);
    assert_eq!(archive.count_readings().await.unwrap(), 2_010);

    archive.close().await;
    db.drop_database().await;
}

#[tokio::test]
async fn a_refused_action_rolls_back_the_readings_and_offsets_of_its_batch() {
    let Some(db) = fresh_db("rollback").await else {
        return;
    };
    let archive = db.archive().await;
    let first = full_batch(0x5eed_0003, 1_000);
    archive.commit(&first).await.unwrap();

    // A second batch with new readings, dead letters and offsets, and one action that
    // violates a CHECK: only a batch release may carry a decision.
    let mut rng = Rng(0x5eed_0004);
    let new_readings = readings(&mut rng, 3_000, 10_000);
    let coords: Vec<_> = new_readings.iter().map(|(_, c)| c.clone()).collect();
    let mut bad = actions(&mut rng, 3);
    for (i, (action, coord)) in bad.iter_mut().enumerate() {
        action.action_id = format!("second-{i}");
        *coord = None;
    }
    bad[1].0.kind = ActionKind::Alert;
    bad[1].0.decision = Some(Decision::Hold);
    bad[1].0.action_id = "act-bad".into();
    let mut letters = dead_letters(&mut rng, 5);
    for (i, letter) in letters.iter_mut().enumerate() {
        // Other rejected records than the first batch's.
        letter.dead_letter.record.source.offset += 500_000;
        letter.dlq_coord = Some(SourceCoord {
            topic: "scent.dlq".into(),
            partition: 1,
            offset: i as i64,
        });
    }
    let second = ArchiveBatch {
        readings: new_readings,
        actions: bad,
        dead_letters: letters,
        offsets: offsets_after("archiver", &coords),
    };
    let err = archive.commit(&second).await.unwrap_err();
    assert!(matches!(err, ArchiveError::Data { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert_eq!(err.sqlstate(), Some("23514"));
    assert_eq!(err.constraint(), Some("action_decision_kind_check"));

    // Nothing of the second batch is visible; the first is intact.
    assert_eq!(archive.count_readings().await.unwrap(), 1_000);
    assert_eq!(table_count(&archive, "action").await, 200);
    assert_eq!(table_count(&archive, "dead_letter").await, 60);
    assert_eq!(archive.offsets("archiver").await.unwrap(), first.offsets);

    // The pool is still usable, and the batch goes through once the action is fixed.
    let mut fixed = second.clone();
    fixed.actions[1].0.decision = None;
    let stats = archive.commit(&fixed).await.unwrap();
    assert_eq!(
        (stats.readings, stats.actions, stats.dead_letters),
        (3_000, 3, 5)
    );
    assert_eq!(
        archive.offsets("archiver").await.unwrap(),
        offsets_after("archiver", &coords)
    );

    archive.close().await;
    db.drop_database().await;
}

#[tokio::test]
async fn awkward_text_survives_copy_and_unencodable_records_are_refused() {
    let Some(db) = fresh_db("text").await else {
        return;
    };
    let archive = db.archive().await;
    let mut rng = Rng(0x5eed_0005);
    let mut batch_readings = readings(&mut rng, AWKWARD_TEXT.len() * 3, 0);
    for (i, (reading, _)) in batch_readings.iter_mut().enumerate() {
        let text = AWKWARD_TEXT[i % AWKWARD_TEXT.len()];
        match i / AWKWARD_TEXT.len() {
            0 => reading.plant = text.into(),
            1 => reading.line = text.into(),
            _ => {
                reading.sensor = text.into();
                reading.batch = Some(String::new());
                reading.product = Some(text.repeat(50));
            }
        }
    }
    let mut odd_topic = batch_readings[0].clone();
    odd_topic.1.topic = "topic \"with\", comma\nand newline".into();
    batch_readings.push(odd_topic);
    let batch = ArchiveBatch {
        readings: batch_readings.clone(),
        ..ArchiveBatch::default()
    };
    archive.commit(&batch).await.unwrap();
    assert_readings_identical(
        &archive.readings().await.unwrap(),
        &sorted_by_coord(batch_readings),
    );

    // NUL cannot be stored in PostgreSQL text: refused before the database, nothing written.
    let mut nul = readings(&mut rng, 5, 100);
    nul[3].0.sensor = "bad\0sensor".into();
    let err = archive
        .commit(&ArchiveBatch {
            readings: nul,
            offsets: vec![ConsumerOffset {
                consumer: "archiver".into(),
                topic: "scent.readings".into(),
                partition: 0,
                next_offset: 200,
            }],
            ..ArchiveBatch::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, ArchiveError::Data { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("NUL"), "{err}");
    // In an action it is refused by the database (jsonb and text reject \u0000).
    let mut nul_action = actions(&mut rng, 1);
    nul_action[0].0.line = "line\0".into();
    let err = archive
        .commit(&ArchiveBatch {
            actions: nul_action,
            ..ArchiveBatch::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, ArchiveError::Data { .. }), "{err:?}");
    assert_eq!(
        archive.count_readings().await.unwrap(),
        batch.readings.len() as i64
    );
    assert!(archive.offsets("archiver").await.unwrap().is_empty());
    assert!(archive.actions().await.unwrap().is_empty());

    archive.close().await;
    db.drop_database().await;
}

/// Relies on serde_json's `float_roundtrip` feature (enabled in the workspace): without it
/// serde_json parses some 17-digit decimals one ulp off, so an Action rebuilt from the jsonb
/// payload could differ in `max_statistic` from the one produced.
#[tokio::test]
async fn action_statistics_round_trip_bit_exact() {
    let Some(db) = fresh_db("floats").await else {
        return;
    };
    let archive = db.archive().await;
    let mut rng = Rng(0x5eed_0006);
    let mut batch_actions = actions(&mut rng, 400);
    for (action, _) in &mut batch_actions {
        for reason in &mut action.reasons {
            reason.max_statistic = rng.plausible_f64();
            // jsonb keeps numbers as `numeric`, which has no negative zero, so
            // -0.0 is normalised to 0.0 here (`-0.0 + 0.0 == +0.0`); every other
            // finite value must come back bit for bit.
            reason.limit = rng.finite_f64() + 0.0;
        }
    }
    archive
        .commit(&ArchiveBatch {
            actions: batch_actions.clone(),
            ..ArchiveBatch::default()
        })
        .await
        .unwrap();
    let got = archive.actions().await.unwrap();
    let mut want: Vec<Action> = batch_actions.into_iter().map(|(a, _)| a).collect();
    want.sort_by(|a, b| (a.ts_ms, &a.action_id).cmp(&(b.ts_ms, &b.action_id)));
    for (g, w) in got.iter().zip(&want) {
        for (gr, wr) in g.reasons.iter().zip(&w.reasons) {
            assert_eq!(
                gr.max_statistic.to_bits(),
                wr.max_statistic.to_bits(),
                "{} != {}",
                gr.max_statistic,
                wr.max_statistic
            );
            assert_eq!(gr.limit.to_bits(), wr.limit.to_bits());
        }
    }
    assert_eq!(got, want);

    archive.close().await;
    db.drop_database().await;
}

#[tokio::test]
async fn connection_errors_are_classified() {
    let err = Archive::connect("not a url").await.unwrap_err();
    assert!(matches!(err, ArchiveError::Config(_)), "{err:?}");
    assert!(!err.is_retryable());

    // Nothing listens on port 1 of the loopback: sqlx retries until the acquire timeout
    // (5 s), then reports the database unavailable, which is retryable.
    let started = Instant::now();
    let err = Archive::connect("postgres://scent:scent@127.0.0.1:1/scent")
        .await
        .unwrap_err();
    assert!(matches!(err, ArchiveError::Unavailable { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(10));

    let Some(db) = fresh_db("unavailable").await else {
        return;
    };
    let archive = db.archive().await;
    archive.close().await;
    let err = archive.count_readings().await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    db.drop_database().await;
}

/// Prints the rows/s of the COPY path for 16-channel e-nose readings; asserts only that
/// everything arrived. `cargo test --release --test archive copy_throughput -- --nocapture`
#[tokio::test]
async fn copy_throughput_of_16_channel_readings() {
    let Some(db) = fresh_db("throughput").await else {
        return;
    };
    let archive = db.archive().await;
    const BATCHES: usize = 10;
    const PER_BATCH: usize = 10_000;
    let mut rng = Rng(0x5eed_0007);
    let mut batches = Vec::with_capacity(BATCHES);
    for b in 0..BATCHES {
        let mut readings = readings(&mut rng, PER_BATCH, (b * PER_BATCH) as i64);
        for (i, (reading, _)) in readings.iter_mut().enumerate() {
            reading.kind = SensorKind::Enose;
            reading.sensor = format!("enose-{}", i % 8);
            reading.values = (0..16).map(|_| rng.plausible_f64()).collect();
        }
        let coords: Vec<_> = readings.iter().map(|(_, c)| c.clone()).collect();
        batches.push(ArchiveBatch {
            offsets: offsets_after("bench", &coords),
            readings,
            ..ArchiveBatch::default()
        });
    }
    let started = Instant::now();
    let mut in_copy = Duration::ZERO;
    for batch in &batches {
        let stats = archive.commit(batch).await.unwrap();
        assert_eq!(stats.readings, PER_BATCH as u64);
        in_copy += stats.readings_elapsed;
    }
    let total = started.elapsed();
    let rows = (BATCHES * PER_BATCH) as f64;
    println!(
        "archive COPY path: {} readings x 16 channels in {BATCHES} commits: \
         {:.0} rows/s end to end ({:.2} s), {:.0} rows/s in COPY + staging insert ({:.2} s)",
        BATCHES * PER_BATCH,
        rows / total.as_secs_f64(),
        total.as_secs_f64(),
        rows / in_copy.as_secs_f64(),
        in_copy.as_secs_f64(),
    );
    assert_eq!(
        archive.count_readings().await.unwrap(),
        (BATCHES * PER_BATCH) as i64
    );
    archive.close().await;
    db.drop_database().await;
}

/// One reading the database refuses (here: no values, which the engine's
/// validation never lets through) must not stop the archive: the others are
/// archived and the refused one comes back as an `unarchivable` dead letter.
#[tokio::test]
async fn a_refused_record_is_isolated_and_the_rest_archived() {
    let Some(db) = fresh_db("refused").await else {
        return;
    };
    let archive = db.archive().await;
    let mut rng = Rng(0x5eed_0007);
    let mut batch = ArchiveBatch {
        readings: readings(&mut rng, 100, 0),
        ..ArchiveBatch::default()
    };
    batch.readings[37].0.values.clear();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = scent::archiver::ArchiveMetrics::register(&mut registry);
    let refused = scent::archiver::isolate_refused(&archive, &batch, &metrics)
        .await
        .unwrap();
    assert_eq!(archive.count_readings().await.unwrap(), 99);
    assert_eq!(refused.len(), 1);
    let letter = &refused[0].dead_letter;
    assert_eq!(letter.record.source, batch.readings[37].1);
    assert_eq!(
        letter.rejection.reason,
        scent_operators::model::RejectReason::Unarchivable
    );
    assert_eq!(metrics.unarchivable.get(), 1);
    archive
        .commit(&ArchiveBatch {
            dead_letters: refused,
            ..ArchiveBatch::default()
        })
        .await
        .unwrap();
    assert_eq!(archive.dead_letters().await.unwrap().len(), 1);
    archive.close().await;
    db.drop_database().await;
}

/// After an engine restart the same rejection reaches the DLQ again, at new
/// coordinates; the archive keeps one row per rejected source record.
#[tokio::test]
async fn a_rejection_replayed_to_new_dlq_coordinates_is_archived_once() {
    let Some(db) = fresh_db("dlq_replay").await else {
        return;
    };
    let archive = db.archive().await;
    let mut rng = Rng(0x5eed_0008);
    let original = dead_letters(&mut rng, 1).remove(0);
    let mut replayed = original.clone();
    replayed.dlq_coord = replayed.dlq_coord.map(|mut coord| {
        coord.offset += 1_000;
        coord
    });
    for letter in [original, replayed] {
        archive
            .commit(&ArchiveBatch {
                dead_letters: vec![letter],
                ..ArchiveBatch::default()
            })
            .await
            .unwrap();
    }
    assert_eq!(archive.dead_letters().await.unwrap().len(), 1);
    archive.close().await;
    db.drop_database().await;
}
