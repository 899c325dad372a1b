//! `scent eval`: score the analytics operators on public data sets.
//!
//! Each data set has its own module with its published protocol. A command
//! reads whatever files of the data set are present under `--data DIR`
//! (the same layout as the data set's distribution), evaluates them with
//! thresholds and hyper-parameters frozen in code, and prints one JSON
//! object to stdout: the headline metrics as top-level keys, plus per-file
//! details. Rates and accuracies are fractions in `[0, 1]`.

pub mod gas_drift;
pub mod nab;
pub mod sim;
pub mod skab;
pub mod tep;

use clap::Subcommand;
use std::path::{Path, PathBuf};

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The data directory or a file in it cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file does not have the data set's format.
    #[error("{path}:{line}: {problem}")]
    Format {
        /// The file.
        path: PathBuf,
        /// 1-based line number (0 when not tied to a line).
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// None of the data set's files are present.
    #[error("no {dataset} files under {dir}")]
    NoData {
        /// The data set.
        dataset: &'static str,
        /// The directory searched.
        dir: PathBuf,
    },
    /// The arguments do not fit the data (for example a batch number without its file).
    #[error("{0}")]
    Usage(String),
}

impl EvalError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> EvalError {
        EvalError::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// A format error at `line` of `path`.
    pub fn format(path: &Path, line: usize, problem: impl Into<String>) -> EvalError {
        EvalError::Format {
            path: path.to_owned(),
            line,
            problem: problem.into(),
        }
    }
}

/// The data sets `scent eval` scores.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// SKAB valve benchmark: multivariate streaming detection (F1, FAR, MAR).
    Skab(skab::SkabArgs),
    /// Numenta Anomaly Benchmark: standard-profile score.
    Nab(nab::NabArgs),
    /// UCI gas-sensor-array drift: classification across sensor ageing.
    GasDrift(gas_drift::GasDriftArgs),
    /// Tennessee Eastman process: fault detection rate, false alarms, delay.
    Tep(tep::TepArgs),
    /// The plant simulator's ground truth: contamination recall, precision, delay.
    Sim(sim::SimArgs),
}

/// Runs one evaluation and prints its JSON report to stdout.
pub fn run(command: EvalCommand) -> Result<(), EvalError> {
    let report = match command {
        EvalCommand::Skab(args) => skab::run(&args)?,
        EvalCommand::Nab(args) => nab::run(&args)?,
        EvalCommand::GasDrift(args) => gas_drift::run(&args)?,
        EvalCommand::Tep(args) => tep::run(&args)?,
        EvalCommand::Sim(args) => sim::run(&args)?,
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&report).expect("a JSON value always serialises")
    );
    Ok(())
}
