//! Helpers shared by the integration tests that run against real services:
//! the check that skips a test without its services (or fails it when
//! `SCENT_REQUIRE_SERVICES=1`), a `scent run` child process that is killed
//! however the test ends, plain HTTP and `/metrics` reading, a database of
//! the test's own, and a one-off tokio runtime.
//!
//! Each test file includes this module with `mod support;`, so every test
//! binary compiles its own copy and only the helpers that test needs run.

// Each test binary compiles this module and uses only a part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The values of `variables`, if each is set and not empty and, when
/// `kcat` is true, the `kcat` client runs. Otherwise the test named `test`
/// is skipped with a message saying what it needs, or fails when
/// `SCENT_REQUIRE_SERVICES=1` (as `deploy/test.sh` sets it).
pub fn services<const N: usize>(
    test: &str,
    variables: [&str; N],
    kcat: bool,
) -> Option<[String; N]> {
    let values = variables.map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()));
    let kcat_runs = !kcat || Command::new("kcat").arg("-V").output().is_ok();
    if values.iter().all(Option::is_some) && kcat_runs {
        return Some(values.map(Option::unwrap));
    }
    let mut needs: Vec<&str> = variables.to_vec();
    if kcat {
        needs.push("kcat");
    }
    missing(test, &enumeration(&needs));
    None
}

/// Reports that the test named `test` lacks `needs`: fails it when
/// `SCENT_REQUIRE_SERVICES=1`, otherwise says that it is skipped.
pub fn missing(test: &str, needs: &str) {
    if std::env::var("SCENT_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{test}: needs {needs}, and SCENT_REQUIRE_SERVICES=1 forbids skipping");
    }
    eprintln!(
        "skipping {test}: needs {needs} (run deploy/test.sh, or deploy/dev/up.sh and \
         eval \"$(deploy/dev/env.sh)\")"
    );
}

/// `a`, `a and b`, `a, b and c`.
fn enumeration(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [only] => (*only).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Runs `future` to completion on a runtime of its own.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// A database of its own for this test, created (or emptied by dropping
/// and creating it again) through the admin URL; returns its URL.
pub async fn fresh_database(admin_url: &str, name: &str) -> String {
    let admin = sqlx::PgPool::connect(admin_url)
        .await
        .expect("connect to SCENT_DATABASE_URL");
    // The name is built by the test from its process id, never from input.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let (base, _) = admin_url.rsplit_once('/').expect("URL names a database");
    format!("{base}/{name}")
}

/// A loopback address with a port that was free a moment ago.
pub fn free_local_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// A plain HTTP/1.1 GET, returning status and body; retries for up to
/// 30 s while the server does not answer yet.
pub fn http_get(address: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match std::net::TcpStream::connect(address) {
            Ok(mut stream) => {
                write!(
                    stream,
                    "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
                let mut response = String::new();
                stream.read_to_string(&mut response).unwrap();
                let status = response
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let body = response
                    .split_once("\r\n\r\n")
                    .map(|(_, b)| b.to_owned())
                    .unwrap_or_default();
                return (status, body);
            }
            Err(error) if Instant::now() >= deadline => panic!("{address}: {error}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The sum of every sample of a `/metrics` exposition whose series starts
/// with `prefix` (name and labels as written).
pub fn metric_sum(exposition: &str, prefix: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| line.starts_with(prefix) && !line.starts_with('#'))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The samples of a `/metrics` exposition: `(name, labels, value)`.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Metrics {
    /// Reads `/metrics` at `address`, which must answer 200.
    pub fn scrape(address: &str) -> Metrics {
        let (status, body) = http_get(address, "/metrics");
        assert_eq!(status, 200, "{body}");
        Metrics::parse(&body)
    }

    pub fn parse(exposition: &str) -> Metrics {
        let samples = exposition
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let value = value.parse().ok()?;
                let (name, labels) = match series.split_once('{') {
                    Some((name, labels)) => (name, labels.trim_end_matches('}')),
                    None => (series, ""),
                };
                let labels = labels
                    .split(',')
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
                    .collect();
                Some((name.to_owned(), labels, value))
            })
            .collect();
        Metrics { samples }
    }

    /// The sum of `name` over the samples whose labels include `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(sample, sample_labels, _)| {
                sample == name
                    && labels
                        .iter()
                        .all(|(k, v)| sample_labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, value)| value)
            .sum()
    }
}

/// The last `lines` lines of a log file (empty if it cannot be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `scent run --config CONFIG`, to be adjusted and given to
/// [`Engine::spawn`].
/// Creates the topics `config` names (readings and actions with 4
/// partitions) with `scent topics create`, failing the test with its error.
pub fn create_topics(config: &Path, brokers: &str) {
    let created = Command::new(env!("CARGO_BIN_EXE_scent"))
        .args(["topics", "create", "--config"])
        .arg(config)
        .args(["--kafka", brokers, "--partitions", "4"])
        .output()
        .expect("scent topics create runs");
    assert!(
        created.status.success(),
        "scent topics create: {}",
        String::from_utf8_lossy(&created.stderr)
    );
}

pub fn run_command(config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_scent"));
    command.args(["run", "--config"]).arg(config);
    command
}

/// A `scent run` child process, its stdout discarded and its stderr in a
/// log file (or the test's own stderr); killed when dropped, however the
/// test ends.
pub struct Engine {
    child: Child,
    log: Option<PathBuf>,
    listen: Option<String>,
    started: Instant,
}

impl Engine {
    /// Starts `command` (a `scent run` command line) with stdin and stdout
    /// closed and stderr to `log` (`None`: the test's stderr).
    pub fn spawn(mut command: Command, log: Option<PathBuf>) -> Engine {
        command.stdin(Stdio::null()).stdout(Stdio::null());
        if let Some(log) = &log {
            command.stderr(std::fs::File::create(log).expect("create the engine log"));
        }
        let child = command.spawn().expect("start scent run");
        Engine {
            child,
            log,
            listen: None,
            started: Instant::now(),
        }
    }

    /// `scent run --config CONFIG` in the environment the test runs in,
    /// stderr to `log`.
    pub fn start(config: &Path, log: PathBuf) -> Engine {
        Engine::spawn(run_command(config), Some(log))
    }

    /// `scent run --config CONFIG` serving HTTP on a free loopback address
    /// (see [`Engine::listen`]) and logging warnings to `log`. The defaults
    /// and the configuration file alone decide: `SCENT__*` overrides in
    /// the environment the test runs in are removed.
    pub fn start_isolated(config: &Path, log: PathBuf) -> Engine {
        let listen = free_local_address();
        let mut command = run_command(config);
        command.args(["--listen", &listen]).env("SCENT_LOG", "warn");
        for (name, _) in std::env::vars() {
            if name.starts_with("SCENT__") {
                command.env_remove(name);
            }
        }
        let mut engine = Engine::spawn(command, Some(log));
        engine.listen = Some(listen);
        engine
    }

    /// The address its HTTP server listens on.
    pub fn listen(&self) -> &str {
        self.listen
            .as_deref()
            .expect("the engine was started with an HTTP address")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// When the process was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The exit status, if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("query the engine process")
    }

    /// Panics with the end of the engine's log if it has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.exited() {
            panic!(
                "scent run exited with {status}; its log ends:\n{}",
                self.log_tail()
            );
        }
    }

    /// GET `path` from its HTTP server, which must still be running.
    pub fn get(&mut self, path: &str) -> (u16, String) {
        self.assert_running();
        http_get(self.listen(), path)
    }

    /// Its `/metrics`, which must answer 200.
    pub fn metrics(&mut self) -> Metrics {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "{body}");
        Metrics::parse(&body)
    }

    /// The last 30 lines of its log.
    pub fn log_tail(&self) -> String {
        match &self.log {
            Some(log) => log_tail(log, 30),
            None => "(the engine logs to the test's stderr)".to_owned(),
        }
    }

    /// SIGKILL, then reap; returns the moment it was dead.
    pub fn kill(&mut self) -> Instant {
        let _ = self.child.kill();
        let _ = self.child.wait();
        Instant::now()
    }

    /// SIGKILL, as `kill -9`: no shutdown path runs. The process must not
    /// have exited before.
    pub fn kill_hard(mut self) {
        self.child.kill().expect("SIGKILL the engine");
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "killed, not exited: {status}");
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The public data set `name` under `../shared/data`, or `None` after a
/// skip message for `test` when the folder is absent (the data sets are
/// not part of the repository).
pub fn shared_data(test: &str, name: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name);
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipped {test}: data set {name} not found at {}",
            dir.display()
        );
        None
    }
}

/// Runs `scent eval <args>` and returns its JSON report; fails the test
/// with the command's stderr when it does not succeed.
pub fn eval_report<I, S>(args: I) -> serde_json::Value
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let output = Command::new(env!("CARGO_BIN_EXE_scent"))
        .env("SCENT_LOG", "warn")
        .arg("eval")
        .args(args)
        .output()
        .expect("scent runs");
    assert!(
        output.status.success(),
        "scent eval failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON object on stdout")
}

/// Checks the changelog of a topic's actions (in the order read, per
/// partition) and returns each batch's final decision: its sealed
/// `batch_release`. Every subject's revisions count up from 1, each names
/// the one before, and a batch has exactly one sealed release.
#[allow(dead_code)]
pub fn final_decisions(
    actions: &[scent_operators::model::Action],
) -> BTreeMap<String, scent_operators::model::Action> {
    use scent_operators::model::ActionKind;
    let mut chains: BTreeMap<_, Vec<&scent_operators::model::Action>> = BTreeMap::new();
    for action in actions {
        chains.entry(action.subject()).or_default().push(action);
    }
    let mut finals = BTreeMap::new();
    for (subject, chain) in chains {
        for (position, action) in chain.iter().enumerate() {
            assert_eq!(
                action.revision as usize,
                position + 1,
                "revisions of {subject:?} count up from 1: {chain:?}"
            );
            let previous = position.checked_sub(1).map(|p| chain[p].action_id.clone());
            assert_eq!(
                action.supersedes, previous,
                "{subject:?} names its predecessor"
            );
        }
        if subject.kind == ActionKind::BatchRelease {
            let last = chain.last().expect("a chain has an action");
            assert!(last.sealed, "the last release of {subject:?} is sealed");
            let batch = subject.batch.clone().expect("releases name their batch");
            finals.insert(batch, (*last).clone());
        }
    }
    finals
}

/// Batches with a sealed release decision among `actions`.
#[allow(dead_code)]
pub fn sealed_batches(actions: &[scent_operators::model::Action]) -> usize {
    actions
        .iter()
        .filter(|a| a.kind == scent_operators::model::ActionKind::BatchRelease && a.sealed)
        .count()
}

/// The records of `topic` from the beginning to its current end, read with
/// kcat (a client we did not write) as a `read_committed` consumer, each
/// printed with kcat's `format` (e.g. `%k\t%s\n`).
#[allow(dead_code)]
pub fn kcat(brokers: &str, topic: &str, format: &str) -> Vec<u8> {
    let output = Command::new("kcat")
        .args([
            "-b",
            brokers,
            "-C",
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-u",
        ])
        .args(["-X", "isolation.level=read_committed", "-f", format])
        .output()
        .expect("kcat runs");
    assert!(
        output.status.success(),
        "kcat failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Every record of `topic`, in order, as `(key, value)` (see [`kcat`]).
#[allow(dead_code)]
pub fn kcat_read(brokers: &str, topic: &str) -> Vec<(String, String)> {
    String::from_utf8(kcat(brokers, topic, "%k\t%s\n"))
        .expect("records are UTF-8")
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (key, value) = line.split_once('\t').expect("key and value");
            (key.to_owned(), value.to_owned())
        })
        .collect()
}
