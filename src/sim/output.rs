//! File output of `scent simulate --out DIR`.
//!
//! | file | content |
//! |---|---|
//! | `readings.jsonl` | valid readings in merged order, each exactly the bytes of `encode_reading`, one per line |
//! | `batches.jsonl` | batch events in merged order, each exactly the bytes of `encode_batch_event` |
//! | `malformed.jsonl` | `{"index", "key", "ts_ms", "payload_hex", "expected"}` per malformed record (raw payloads would break line framing) |
//! | `ground-truth.json` | the [`GroundTruth`](super::GroundTruth), pretty-printed |

use super::truth::encode_hex;
use super::{Plant, SimError, SimRecord};
use scent_operators::wire::{encode_batch_event, encode_reading};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// What [`write_jsonl`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputSummary {
    /// Lines of `readings.jsonl`.
    pub readings: u64,
    /// Lines of `batches.jsonl`.
    pub batch_events: u64,
    /// Lines of `malformed.jsonl`.
    pub malformed: u64,
}

/// A buffered output file that remembers its path for error messages.
struct Output {
    path: PathBuf,
    writer: BufWriter<File>,
}

impl Output {
    fn create(dir: &Path, name: &str) -> Result<Output, SimError> {
        let path = dir.join(name);
        let file = File::create(&path).map_err(|source| SimError::io(&path, source))?;
        Ok(Output {
            writer: BufWriter::with_capacity(1 << 20, file),
            path,
        })
    }

    fn line(&mut self, bytes: &[u8]) -> Result<(), SimError> {
        self.writer
            .write_all(bytes)
            .and_then(|()| self.writer.write_all(b"\n"))
            .map_err(|source| SimError::io(&self.path, source))
    }

    fn finish(mut self) -> Result<(), SimError> {
        self.writer
            .flush()
            .map_err(|source| SimError::io(&self.path, source))
    }
}

/// Writes the whole run of `plant` into `dir` (created if missing); see the
/// module docs for the files.
pub fn write_jsonl(plant: &Plant, dir: &Path) -> Result<OutputSummary, SimError> {
    std::fs::create_dir_all(dir).map_err(|source| SimError::io(dir, source))?;
    let mut readings = Output::create(dir, "readings.jsonl")?;
    let mut batches = Output::create(dir, "batches.jsonl")?;
    let mut malformed = Output::create(dir, "malformed.jsonl")?;
    let mut summary = OutputSummary::default();
    for record in plant.merged_stream() {
        match record {
            SimRecord::Reading(reading) => {
                readings.line(&encode_reading(&reading))?;
                summary.readings += 1;
            }
            SimRecord::Batch(event) => {
                batches.line(&encode_batch_event(&event))?;
                summary.batch_events += 1;
            }
            SimRecord::Malformed {
                index,
                key,
                ts_ms,
                payload,
                expected,
            } => {
                let line = serde_json::json!({
                    "index": index,
                    "key": key,
                    "ts_ms": ts_ms,
                    "payload_hex": encode_hex(&payload),
                    "expected": expected,
                });
                malformed.line(line.to_string().as_bytes())?;
                summary.malformed += 1;
            }
        }
    }
    readings.finish()?;
    batches.finish()?;
    malformed.finish()?;

    let mut truth = Output::create(dir, "ground-truth.json")?;
    serde_json::to_writer_pretty(&mut truth.writer, plant.ground_truth())
        .map_err(|error| SimError::io(&truth.path, error.into()))?;
    truth.line(b"")?;
    truth.finish()?;
    Ok(summary)
}
