//! `scent demo`: a simulated plant through the real dataflow, with nothing
//! else running.
//!
//! The plant simulator feeds the workers in-process (each worker reads the
//! lines it owns, paced to `--speed` times real time), the dataflow is the
//! one `scent run` uses, and the sinks collect actions and dead letters in
//! memory. A progress line shows readings per second, anomalies and
//! batches decided; the run ends with a summary per line, every held batch
//! with its reasons next to the event the simulator injected, and a check
//! of every decision against the simulator's ground truth. With
//! `--kafka HOST:PORT` the same plant goes through a broker instead:
//! produced to fresh topics, consumed by the engine, decisions written to
//! the actions topic.

use crate::api::metrics::EngineMetrics;
use crate::config::Config;
use crate::runtime::{
    self, BoxError, OutputSink, RecordSource, RuntimeConfig, SinkFactory, SourceFactory,
};
use crate::sim::{EventPlan, GroundTruth, LabelledEvent, Plant};
use crate::sinks::{write_jsonl, Collected, CollectedOutput};
use crate::sources::PlantSource;
use clap::Args;
use prometheus_client::registry::Registry;
use scent_operators::epoch_sink::EpochOutput;
use scent_operators::model::{Action, ActionKind, ActionSubject, Agent, Decision};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `scent demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoOptions {
    /// Seed of the simulated plant.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Approximate number of valid readings to simulate.
    #[arg(long, default_value_t = 150_000)]
    pub readings: u64,
    /// Production lines.
    #[arg(long, default_value_t = 3)]
    pub lines: usize,
    /// Timely worker threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Plant time per wall time; 0 runs as fast as possible.
    #[arg(long, default_value_t = 400.0)]
    pub speed: f64,
    /// Malformed records to inject into the readings.
    #[arg(long, default_value_t = 12)]
    pub malformed: usize,
    /// Write DIR/actions.jsonl and DIR/dead-letters.jsonl.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Run through a Kafka broker at HOST:PORT instead of in-process.
    #[arg(long, value_name = "HOST:PORT")]
    pub kafka: Option<String>,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

/// What a demo run produced.
#[derive(Debug)]
pub struct DemoReport {
    /// Actions and dead letters.
    pub output: CollectedOutput,
    /// The simulator's ground truth.
    pub truth: GroundTruth,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Wall time until the last reading entered the dataflow, when it was
    /// measured apart from the run's (through Kafka).
    pub ingest_elapsed: Option<Duration>,
    /// Valid readings that entered the dataflow.
    pub readings: u64,
}

impl DemoReport {
    /// The last revision of every subject (a batch's release, its line
    /// hold, a sensor's maintenance order), in epoch order of that revision.
    pub fn final_actions(&self) -> Vec<&Action> {
        let mut last: BTreeMap<ActionSubject, &Action> = BTreeMap::new();
        for (_, action) in &self.output.actions {
            let subject = action.subject();
            if last
                .get(&subject)
                .is_none_or(|seen| seen.revision < action.revision)
            {
                last.insert(subject, action);
            }
        }
        last.into_values()
            .filter(|action| !action.withdrawn)
            .collect()
    }

    /// The final release decision of every decided batch.
    pub fn decisions(&self) -> BTreeMap<&str, &Action> {
        self.final_actions()
            .into_iter()
            .filter(|action| action.kind == ActionKind::BatchRelease)
            .filter_map(|action| action.batch.as_deref().map(|batch| (batch, action)))
            .collect()
    }

    /// Batches whose decision differs from the ground truth's expectation.
    pub fn mismatches(&self) -> Vec<String> {
        let decided = self.decisions();
        let mut problems = Vec::new();
        for batch in &self.truth.batches {
            match decided.get(batch.batch.as_str()) {
                None => problems.push(format!("{}: no decision", batch.batch)),
                Some(action) if action.decision != Some(batch.expected_decision) => {
                    problems.push(format!(
                        "{}: decided {:?}, expected {:?}",
                        batch.batch, action.decision, batch.expected_decision
                    ))
                }
                Some(action) if !action.sealed => {
                    problems.push(format!("{}: decision not sealed", batch.batch))
                }
                Some(_) => {}
            }
        }
        problems
    }
}

/// Runs the demo and prints its summary.
pub fn run(options: DemoOptions) -> Result<DemoReport, BoxError> {
    let report = match &options.kafka {
        None => run_in_process(&options)?,
        Some(brokers) => crate::simulate::run_demo_through_kafka(&options, brokers)?,
    };
    print_summary(&report, &options);
    if let Some(dir) = &options.out {
        write_jsonl(&report.output, dir)?;
        println!(
            "\nwrote {} and {}",
            dir.join("actions.jsonl").display(),
            dir.join("dead-letters.jsonl").display()
        );
    }
    Ok(report)
}

/// The simulated plant of the demo options: the default events, plus one
/// contamination covering the end of a batch, whose decision the batch's
/// last exposure cycle revises after the end event.
pub fn plant(options: &DemoOptions) -> Result<Plant, BoxError> {
    let mut config = crate::simulate::sim_config(
        options.seed,
        options.readings,
        options.lines,
        options.malformed,
    );
    if let EventPlan::Auto(auto) = &mut config.events {
        auto.late_contaminations = 1;
    }
    Ok(Plant::new(config)?)
}

/// The engine configuration of the demo: defaults, the demo's worker
/// count, and the plant's contaminant library.
pub fn engine_config(options: &DemoOptions, plant: &Plant) -> Result<Config, BoxError> {
    let mut config = Config::load(None)?;
    config.engine.workers = options.workers;
    config.quality_control.fingerprint.contaminants = plant.contaminant_library();
    Ok(config)
}

/// Runs the demo plant through the dataflow in-process and returns what it
/// decided, without printing.
pub fn run_in_process(options: &DemoOptions) -> Result<DemoReport, BoxError> {
    let plant = Arc::new(plant(options)?);
    let config = engine_config(options, &plant)?;
    let truth = plant.ground_truth().clone();
    let mut registry = Registry::with_prefix("scent");
    let metrics = EngineMetrics::register(&mut registry);
    let collected = Collected::default();

    let speed = (options.speed > 0.0).then_some(options.speed);
    let source_plant = Arc::clone(&plant);
    let sources: SourceFactory = Arc::new(move |worker, peers| {
        Ok(
            Box::new(PlantSource::new(&source_plant, worker, peers, speed))
                as Box<dyn RecordSource>,
        )
    });
    let sink_target = collected.clone();
    let sinks: SinkFactory =
        Arc::new(move |_worker| Ok(Box::new(sink_target.sink()) as Box<dyn OutputSink>));

    let elapsed = run_with_progress(
        &config,
        (sources, sinks),
        &metrics,
        truth.batches.len(),
        options.quiet,
        Arc::new(AtomicBool::new(false)),
    )?;
    Ok(DemoReport {
        output: collected.take_sorted(),
        truth,
        elapsed,
        ingest_elapsed: None,
        readings: metrics.readings_in.get(),
    })
}

/// Runs the engine with a live progress line (unless `quiet`) until its
/// sources finish or `shutdown` is set; returns the wall time of the run.
pub fn run_with_progress(
    config: &Config,
    (sources, sinks): (SourceFactory, SinkFactory),
    metrics: &EngineMetrics,
    batches: usize,
    quiet: bool,
    shutdown: Arc<AtomicBool>,
) -> Result<Duration, runtime::EngineError> {
    let started = Instant::now();
    let progress = Progress::start(metrics.clone(), batches, quiet);
    let result = runtime::run(
        RuntimeConfig::from_config(config),
        sources,
        sinks,
        metrics.clone(),
        shutdown,
    );
    progress.stop();
    result.map(|()| started.elapsed())
}

/// A live progress line on stderr, redrawn four times a second.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// Starts drawing (unless `quiet`).
    pub fn start(metrics: EngineMetrics, batches: usize, quiet: bool) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = (!quiet).then(|| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut last = (Instant::now(), 0u64);
                let mut rate = 0.0;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(250));
                    let readings = metrics.readings_in.get();
                    let interval = last.0.elapsed().as_secs_f64();
                    if interval > 0.0 {
                        rate = (readings - last.1) as f64 / interval;
                    }
                    last = (Instant::now(), readings);
                    let mut err = std::io::stderr().lock();
                    let _ = write!(
                        err,
                        "\r{:>6.1}s  readings {:>9}  {:>9.0}/s  anomalies {:>6}  rejected {:>4}  batches sealed {:>3}/{} (held {})   ",
                        started.elapsed().as_secs_f64(),
                        readings,
                        rate,
                        metrics.totals.anomalies.get(),
                        metrics.totals.rejected.get(),
                        metrics.totals.sealed.get(),
                        batches,
                        metrics.totals.held.get(),
                    );
                    let _ = err.flush();
                }
                eprintln!();
            })
        });
        Progress { stop, thread }
    }

    /// Stops drawing.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn print_summary(report: &DemoReport, options: &DemoOptions) {
    let decisions = report.decisions();
    let finals = report.final_actions();
    let seconds = report.elapsed.as_secs_f64();
    println!();
    println!(
        "scent demo: seed {}, {} lines, {} workers{}",
        options.seed,
        options.lines,
        options.workers,
        options
            .kafka
            .as_deref()
            .map(|k| format!(", through Kafka at {k}"))
            .unwrap_or_default()
    );
    let ingest_seconds = report
        .ingest_elapsed
        .unwrap_or(report.elapsed)
        .as_secs_f64();
    println!(
        "{} readings in {:.1} s ({:.0} readings/s), {} dead letters, {} batches decided, {} actions sent (revisions included)",
        report.readings,
        ingest_seconds,
        report.readings as f64 / ingest_seconds.max(1e-9),
        report.output.dead_letters.len(),
        decisions.len(),
        report.output.actions.len(),
    );
    if report.ingest_elapsed.is_some() {
        println!("the last decision came {seconds:.1} s after the start");
    }
    println!();
    println!(
        "{:<6} {:>9} {:>9} {:>5}",
        "line", "released", "held", "total"
    );
    let mut per_line: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for action in decisions.values() {
        let entry = per_line.entry(action.line.as_str()).or_default();
        match action.decision {
            Some(Decision::Hold) | Some(Decision::Reject) => entry.1 += 1,
            _ => entry.0 += 1,
        }
    }
    for (line, (released, held)) in &per_line {
        println!(
            "{:<6} {:>9} {:>9} {:>5}",
            line,
            released,
            held,
            released + held
        );
    }
    print_held(report, &decisions);
    print_line_holds(report, &finals, &decisions);
    print_maintenance(report, &finals);
    print_superseded(report);
    if !report.output.dead_letters.is_empty() {
        let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, letter) in &report.output.dead_letters {
            *by_reason.entry(letter.rejection.reason.code()).or_default() += 1;
        }
        println!();
        println!(
            "dead letters: {}",
            by_reason
                .iter()
                .map(|(reason, count)| format!("{reason} {count}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mismatches = report.mismatches();
    println!();
    if mismatches.is_empty() {
        println!(
            "all {} decisions match the simulator's ground truth",
            report.truth.batches.len()
        );
    } else {
        println!(
            "{} decisions differ from the ground truth:",
            mismatches.len()
        );
        for problem in mismatches {
            println!("  {problem}");
        }
    }
}

/// The injected events of a batch, described.
fn injected(report: &DemoReport, batch: &str) -> String {
    report
        .truth
        .batches
        .iter()
        .find(|b| b.batch == batch)
        .map(|b| {
            b.events
                .iter()
                .filter_map(|id| report.truth.events.iter().find(|e| &e.id == id))
                .map(describe_event)
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

/// The time of day of an event time, e.g. `10:52:41`.
fn clock(ts_ms: i64) -> String {
    let text = scent_operators::wire::format_timestamp(ts_ms);
    text.split_once('T')
        .map_or(text.as_str(), |(_, time)| time)
        .get(..8)
        .unwrap_or_default()
        .to_owned()
}

/// Held batches with the agents' verdicts and the input they rest on.
fn print_held(report: &DemoReport, decisions: &BTreeMap<&str, &Action>) {
    let held: Vec<&&Action> = decisions
        .values()
        .filter(|a| matches!(a.decision, Some(Decision::Hold | Decision::Reject)))
        .collect();
    if held.is_empty() {
        return;
    }
    println!();
    println!("held batches (final decisions, each agent's verdict, the input they rest on):");
    for action in held {
        let batch = action.batch.as_deref().unwrap_or("-");
        let verdicts: Vec<String> = Agent::ALL
            .iter()
            .map(|agent| {
                let verdict = action.evidence.verdicts.iter().find(|v| v.agent == *agent);
                match verdict {
                    Some(v) if v.critical => {
                        format!("{agent} {} (critical)", v.assessment.as_str())
                    }
                    Some(v) => format!("{agent} {}", v.assessment.as_str()),
                    None => format!("{agent} -"),
                }
            })
            .collect();
        println!(
            "  {batch} ({}) {} at {}: {}",
            action.line,
            action.decision.map_or("-", Decision::as_str),
            clock(action.ts_ms),
            verdicts.join(", ")
        );
        println!(
            "      reasons: {}",
            action
                .reasons
                .iter()
                .map(|r| r.summary())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let input: Vec<String> = action
            .evidence
            .input
            .iter()
            .map(|s| s.to_string())
            .collect();
        if !input.is_empty() {
            println!("      input: {}", input.join(", "));
        }
        let injected = injected(report, batch);
        if !injected.is_empty() {
            println!("      injected: {injected}");
        }
    }
}

/// Line holds: critical findings escalated before the batch ended.
fn print_line_holds(report: &DemoReport, finals: &[&Action], decisions: &BTreeMap<&str, &Action>) {
    let holds: Vec<&&Action> = finals
        .iter()
        .filter(|a| a.kind == ActionKind::HoldLine)
        .collect();
    if holds.is_empty() {
        return;
    }
    println!();
    println!("line holds (escalated at the critical finding, before the batch ended):");
    for hold in holds {
        let batch = hold.batch.as_deref().unwrap_or("-");
        let ahead = decisions
            .get(batch)
            .and_then(|decision| decision.evidence.batch_end_ms)
            .map(|end| {
                format!(
                    ", {:.0} s before the batch end",
                    (end - hold.ts_ms) as f64 / 1e3
                )
            })
            .unwrap_or_default();
        println!(
            "  {} {batch} at {}{ahead}: {}",
            hold.line,
            clock(hold.ts_ms),
            hold.reasons
                .iter()
                .map(|r| r.summary())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let injected = injected(report, batch);
        if !injected.is_empty() {
            println!("      injected: {injected}");
        }
    }
}

/// Maintenance windows, in the gaps between batches.
fn print_maintenance(report: &DemoReport, finals: &[&Action]) {
    let orders: Vec<&&Action> = finals
        .iter()
        .filter(|a| a.kind == ActionKind::ScheduleMaintenance)
        .collect();
    if orders.is_empty() {
        return;
    }
    println!();
    println!("maintenance windows (after the batch during which the need was found):");
    for action in orders {
        let Some(order) = &action.maintenance else {
            continue;
        };
        let batch = action.batch.as_deref().unwrap_or("-");
        let when = match order.urgent {
            true => format!(
                "now, {} (urgent, during {batch})",
                clock(order.window_start_ms)
            ),
            false => format!("{} after {batch}", clock(order.window_start_ms)),
        };
        println!(
            "  {} {} {}: {when}, {} min; {}",
            action.line,
            order.sensor,
            order.work.as_str(),
            order.duration_ms / 60_000,
            order.findings.join("; ")
        );
        let injected = injected(report, batch);
        if !injected.is_empty() {
            println!("      injected: {injected}");
        }
    }
}

/// Decisions revised by later evidence before their batch sealed.
fn print_superseded(report: &DemoReport) {
    let revised: Vec<&Action> = report
        .output
        .actions
        .iter()
        .map(|(_, action)| action)
        .filter(|a| a.supersedes.is_some() && !a.sealed)
        .collect();
    if revised.is_empty() {
        return;
    }
    println!();
    println!("superseded decisions (revised by later evidence before the batch sealed):");
    for action in revised {
        let previous = report
            .output
            .actions
            .iter()
            .map(|(_, a)| a)
            .find(|a| Some(&a.action_id) == action.supersedes.as_ref());
        let describe = |a: &Action| match a.kind {
            ActionKind::BatchRelease => a.decision.map_or("-", Decision::as_str).to_owned(),
            _ => format!("{} ({} findings)", kind_name(a.kind), a.evidence.anomalies),
        };
        // What the revision added: reasons that are new or counted more.
        let added: Vec<String> = action
            .reasons
            .iter()
            .filter(|reason| {
                previous.is_none_or(|p| {
                    !p.reasons.iter().any(|old| {
                        old.sensor == reason.sensor
                            && old.rule == reason.rule
                            && old.count >= reason.count
                    })
                })
            })
            .map(|reason| reason.summary())
            .collect();
        println!(
            "  {} {} revision {} supersedes {}: {} -> {}{}",
            action.line,
            action.batch.as_deref().unwrap_or("-"),
            action.revision,
            action.supersedes.as_deref().unwrap_or("-"),
            previous.map_or("?".to_owned(), describe),
            describe(action),
            if action.withdrawn { ", withdrawn" } else { "" }
        );
        if !added.is_empty() {
            println!("      new evidence: {}", added.join(", "));
        }
        let injected = injected(report, action.batch.as_deref().unwrap_or("-"));
        if !injected.is_empty() {
            println!("      injected: {injected}");
        }
    }
}

fn kind_name(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::BatchRelease => "batch_release",
        ActionKind::HoldLine => "hold_line",
        ActionKind::ScheduleMaintenance => "schedule_maintenance",
        ActionKind::Alert => "alert",
    }
}

/// A sink that writes to another sink and collects a copy.
pub struct TeeSink {
    /// The real sink.
    pub inner: Box<dyn OutputSink>,
    /// The copy.
    pub copy: Box<dyn OutputSink>,
}

impl OutputSink for TeeSink {
    fn emit(&mut self, output: &EpochOutput) -> Result<(), BoxError> {
        self.inner.emit(output)?;
        self.copy.emit(output)
    }

    fn commit(&mut self) -> Result<(), BoxError> {
        self.inner.commit()?;
        self.copy.commit()
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        self.inner.finish()?;
        self.copy.finish()
    }
}

/// A one-line description of an injected event.
fn describe_event(event: &LabelledEvent) -> String {
    let what = match (&event.contaminant, event.mode) {
        (Some(contaminant), _) => format!("contamination by {contaminant}"),
        (None, Some(mode)) => format!("{mode:?} fault").to_lowercase(),
        (None, None) => format!("{:?}", event.kind).to_lowercase(),
    };
    let sensor = event.sensor.as_deref().unwrap_or("all e-nose arrays");
    format!(
        "{what} on {sensor}, {:.0} s from {}",
        (event.end_ms - event.start_ms) as f64 / 1_000.0,
        scent_operators::wire::format_timestamp(event.start_ms)
    )
}
