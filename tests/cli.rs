//! The `scent` command line as a user runs it: the embedded demo with its
//! summary and output files, the simulator's file output, configuration
//! errors that name the bad key, and the demo through a real broker.

use std::process::Command;

fn scent() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_scent"));
    command.env("SCENT_LOG", "warn");
    command
}

/// Runs the in-process demo (seed 3, 100,000 readings, as fast as possible)
/// with `--out dir`, and returns its standard output.
fn demo_to(dir: &std::path::Path, workers: &str) -> String {
    let output = scent()
        .args(["demo", "--quiet", "--speed", "0", "--readings", "100000"])
        .args(["--seed", "3", "--workers", workers])
        .arg("--out")
        .arg(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn the_demo_decides_every_batch_as_the_ground_truth_expects_and_writes_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = demo_to(dir.path(), "2");
    assert!(
        stdout.contains("decisions match the simulator's ground truth"),
        "{stdout}"
    );
    assert!(stdout.contains("dead letters:"), "{stdout}");
    // The injected events hold batches, each shown with every agent's
    // verdict, its reasons, the input it rests on and the event that caused
    // it; the contamination is escalated as a line hold before its batch
    // ended; sensor faults get maintenance windows after their batch.
    let section = |title: &str| -> Vec<&str> {
        stdout
            .lines()
            .skip_while(|line| !line.starts_with(title))
            .skip(1)
            .take_while(|line| !line.is_empty())
            .collect()
    };
    let held = section("held batches");
    let entries = held.iter().filter(|line| line.starts_with("  B-")).count();
    assert!(entries >= 2, "{stdout}");
    for label in ["reasons:", "input:", "injected:"] {
        let count = held
            .iter()
            .filter(|line| line.trim_start().starts_with(label))
            .count();
        assert_eq!(count, entries, "{label} for every held batch: {stdout}");
    }
    assert!(
        held.iter()
            .any(|line| line.contains("quality fail (critical)")),
        "{stdout}"
    );
    let line_holds = section("line holds");
    assert!(
        line_holds
            .iter()
            .any(|line| line.contains("before the batch end") && line.contains("contaminant")),
        "{stdout}"
    );
    let maintenance = section("maintenance windows");
    assert!(
        maintenance
            .iter()
            .any(|line| line.contains(" repair: ") && line.contains(" after B-")),
        "{stdout}"
    );

    let actions = std::fs::read_to_string(dir.path().join("actions.jsonl")).unwrap();
    let decided: Vec<serde_json::Value> = actions
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(decided.len() >= 15, "{} actions", decided.len());
    assert!(decided
        .iter()
        .any(|a| a["decision"] == "hold" && a["sealed"] == true));
    assert!(decided.iter().any(|a| a["kind"] == "hold_line"));
    assert!(decided.iter().any(|a| a["kind"] == "schedule_maintenance"));
    assert!(decided.iter().all(|a| a["schema"] == "scent.action/v2"));
    let letters = std::fs::read_to_string(dir.path().join("dead-letters.jsonl")).unwrap();
    assert_eq!(
        letters.lines().count(),
        12,
        "the demo injects twelve malformed records"
    );
    for line in letters.lines() {
        let letter: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(letter["reason_code"].is_string() && letter["stage"].is_string());
    }

    // The same seed gives byte-identical actions.
    let again = tempfile::tempdir().unwrap();
    demo_to(again.path(), "1");
    assert_eq!(
        std::fs::read(again.path().join("actions.jsonl")).unwrap(),
        actions.as_bytes(),
        "one worker or two, the same actions"
    );
}

#[test]
fn simulate_writes_records_and_ground_truth() {
    let dir = tempfile::tempdir().unwrap();
    let status = scent()
        .args(["simulate", "--readings", "5000", "--malformed", "10"])
        .arg("--out")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let readings = std::fs::read_to_string(dir.path().join("readings.jsonl")).unwrap();
    assert!(readings.lines().count() >= 4_900);
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("ground-truth.json")).unwrap())
            .unwrap();
    assert_eq!(truth["malformed"].as_array().unwrap().len(), 10);
}

#[test]
fn configuration_errors_name_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[engine]\nworkers = 2\npoll_bacth = 10\n").unwrap();
    let output = scent()
        .arg("run")
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("poll_bacth"), "{stderr}");

    let output = scent()
        .args(["run"])
        .env("SCENT__TIME__EPOCH_MS", "0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("time.epoch_ms"), "{stderr}");
}

#[test]
fn the_demo_runs_through_a_real_broker() {
    let Ok(brokers) = std::env::var("SCENT_KAFKA_BROKERS") else {
        assert_ne!(
            std::env::var("SCENT_REQUIRE_SERVICES").as_deref(),
            Ok("1"),
            "SCENT_KAFKA_BROKERS is required"
        );
        eprintln!("skipping the_demo_runs_through_a_real_broker: SCENT_KAFKA_BROKERS is not set (run deploy/test.sh)");
        return;
    };
    let output = scent()
        .args([
            "demo",
            "--quiet",
            "--speed",
            "0",
            "--readings",
            "100000",
            "--kafka",
            &brokers,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("through Kafka"), "{stdout}");
    assert!(
        stdout.contains("decisions match the simulator's ground truth"),
        "{stdout}"
    );
    assert!(stdout.contains("held batches"), "{stdout}");
    assert!(stdout.contains(", 12 dead letters,"), "{stdout}");
}
