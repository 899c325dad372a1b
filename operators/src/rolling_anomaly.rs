//! Rolling per-sensor anomaly detection: windowed z-score, flat line, gap.
//!
//! For every sensor the operator keeps, per production context (the product
//! being made, or none during changeover), a sliding window of the last
//! [`RollingAnomalyConfig::window`] accepted values of every channel, with
//! running sums `S1 = Σx` and `S2 = Σx²`. A reading raises:
//!
//! * **z-score** when, once the window holds at least `warmup` values,
//!   some channel has `|x - μ| / max(σ, σ_min) > z_limit`, with
//!   `μ = S1/n`, `σ² = (S2 - S1²/n)/(n - 1)` and the floor
//!   `σ_min = max(min_sigma_relative · |μ|, min_sigma_absolute)` guarding
//!   against windows with no spread (the statistic is always finite). Outlying readings do not enter the window, so a persistent
//!   excursion (a contamination) stays visible; after
//!   `max_consecutive_outliers` outliers in a row the window is cleared
//!   and relearned, accepting a genuine level shift;
//! * **flat line** when some channel has not changed (beyond a relative
//!   tolerance of 1e-12) for `flat_line_readings` consecutive readings:
//!   real gas sensors always carry noise, so identical values mean a stuck
//!   channel or a frozen gateway. Flat readings stay out of the window;
//! * **gap** when the reading follows the sensor's previous one by more
//!   than `gap_limit_ms` of event time (dropout).
//!
//! Within an epoch, readings are processed in `(line, sensor, ts, seq)`
//! order once the epoch is complete, so the output is a function of the
//! input alone, whatever the arrival order. State per sensor and context:
//! `window x channels` values plus O(channels); sensors are exchanged by
//! `line/sensor` so each lives on one worker.

use crate::event_clock::Epoch;
use crate::model::{Anomaly, AnomalyRule, Reading};
use crate::sensor_epochs::{SensorEpochs, SensorMap};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use timely::dataflow::StreamVec;

/// Parameters of the rolling detectors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RollingAnomalyConfig {
    /// Values kept per channel and context.
    pub window: usize,
    /// Values needed before the z-score test starts.
    pub warmup: usize,
    /// |z| above which a channel is an outlier.
    pub z_limit: f64,
    /// Floor of σ relative to |μ|.
    pub min_sigma_relative: f64,
    /// Absolute floor of σ, for channels whose mean is near zero.
    pub min_sigma_absolute: f64,
    /// Consecutive identical values that make a flat line.
    pub flat_line_readings: usize,
    /// Longest accepted silence between two readings of a sensor.
    pub gap_limit_ms: i64,
    /// Consecutive outliers after which the window is relearned.
    pub max_consecutive_outliers: usize,
}

impl Default for RollingAnomalyConfig {
    fn default() -> Self {
        RollingAnomalyConfig {
            window: 120,
            warmup: 30,
            z_limit: 6.0,
            min_sigma_relative: 1e-4,
            min_sigma_absolute: 1e-9,
            flat_line_readings: 15,
            gap_limit_ms: 10_000,
            max_consecutive_outliers: 600,
        }
    }
}

impl RollingAnomalyConfig {
    /// Checks the parameters; the error names the offending field.
    pub fn check(&self) -> Result<(), String> {
        if self.window < 2 {
            return Err("window must be at least 2".into());
        }
        if self.warmup < 2 || self.warmup > self.window {
            return Err("warmup must lie in 2..=window".into());
        }
        if !(self.z_limit.is_finite() && self.z_limit > 0.0) {
            return Err("z_limit must be a positive number".into());
        }
        if !(self.min_sigma_relative.is_finite() && self.min_sigma_relative >= 0.0) {
            return Err("min_sigma_relative must be a non-negative number".into());
        }
        if !(self.min_sigma_absolute.is_finite() && self.min_sigma_absolute > 0.0) {
            return Err("min_sigma_absolute must be a positive number".into());
        }
        if self.flat_line_readings < 2 {
            return Err("flat_line_readings must be at least 2".into());
        }
        if self.gap_limit_ms <= 0 {
            return Err("gap_limit_ms must be positive".into());
        }
        if self.max_consecutive_outliers == 0 {
            return Err("max_consecutive_outliers must be at least 1".into());
        }
        Ok(())
    }

    /// A short stable description, recorded as evidence with decisions.
    pub fn version(&self) -> String {
        format!(
            "rolling-v1:w{}:u{}:z{}:f{}:g{}",
            self.window, self.warmup, self.z_limit, self.flat_line_readings, self.gap_limit_ms
        )
    }
}

/// Sliding window of one channel with running sums.
#[derive(Debug, Clone, Default)]
struct ChannelWindow {
    values: VecDeque<f64>,
    sum: f64,
    sum_squares: f64,
    evictions: usize,
}

impl ChannelWindow {
    fn push(&mut self, value: f64, capacity: usize) {
        if self.values.len() == capacity {
            if let Some(old) = self.values.pop_front() {
                self.sum -= old;
                self.sum_squares -= old * old;
                self.evictions += 1;
            }
        }
        self.values.push_back(value);
        self.sum += value;
        self.sum_squares += value * value;
        // Running sums accumulate rounding error; recompute them exactly
        // once per window turnover.
        if self.evictions >= capacity {
            self.evictions = 0;
            self.sum = self.values.iter().sum();
            self.sum_squares = self.values.iter().map(|v| v * v).sum();
        }
    }

    /// The z-score of `value`, finite for any finite input: σ is floored
    /// and the quotient clamped, so the statistic always serialises.
    fn z(&self, value: f64, config: &RollingAnomalyConfig) -> f64 {
        let n = self.values.len() as f64;
        let mean = self.sum / n;
        let variance = ((self.sum_squares - self.sum * self.sum / n) / (n - 1.0)).max(0.0);
        let sigma = variance
            .sqrt()
            .max(config.min_sigma_relative * mean.abs())
            .max(config.min_sigma_absolute);
        ((value - mean) / sigma).clamp(-f64::MAX, f64::MAX)
    }
}

/// The windows of one sensor in one production context.
#[derive(Debug, Clone, Default)]
struct ContextWindows {
    channels: Vec<ChannelWindow>,
    consecutive_outliers: usize,
}

/// Everything remembered about one sensor.
#[derive(Debug, Clone, Default)]
pub struct SensorMonitor {
    contexts: HashMap<Option<String>, ContextWindows>,
    last_values: Vec<f64>,
    flat_runs: Vec<usize>,
    last_ts_ms: Option<i64>,
}

impl SensorMonitor {
    /// Runs the detectors on the sensor's next reading (in event-time
    /// order) and appends the anomalies it raises to `anomalies`.
    pub fn observe(
        &mut self,
        reading: &Reading,
        config: &RollingAnomalyConfig,
        anomalies: &mut Vec<Anomaly>,
    ) {
        let anomaly = |rule, statistic, limit, channels| Anomaly {
            line: reading.line.clone(),
            sensor: reading.sensor.clone(),
            kind: reading.kind,
            batch: reading.batch.clone(),
            ts_ms: reading.ts_ms,
            seq: reading.seq,
            rule,
            statistic,
            limit,
            channels,
            contaminant: None,
        };

        if let Some(last_ts) = self.last_ts_ms {
            let gap = reading.ts_ms - last_ts;
            if gap > config.gap_limit_ms {
                anomalies.push(anomaly(
                    AnomalyRule::Gap,
                    gap as f64 / 1_000.0,
                    config.gap_limit_ms as f64 / 1_000.0,
                    Vec::new(),
                ));
            }
        }
        self.last_ts_ms = Some(
            self.last_ts_ms
                .map_or(reading.ts_ms, |t| t.max(reading.ts_ms)),
        );

        let flat_channels = self.track_flat_lines(&reading.values, config.flat_line_readings);
        if !flat_channels.is_empty() {
            let longest_run = flat_channels
                .iter()
                .map(|&channel| self.flat_runs[usize::from(channel)])
                .max()
                .unwrap_or(config.flat_line_readings);
            anomalies.push(anomaly(
                AnomalyRule::FlatLine,
                longest_run as f64,
                config.flat_line_readings as f64,
                flat_channels,
            ));
            return;
        }

        let context = self.contexts.entry(reading.product.clone()).or_default();
        if context.channels.len() != reading.values.len() {
            // A new context, or an array that changed its channel count:
            // start learning afresh.
            *context = ContextWindows {
                channels: vec![ChannelWindow::default(); reading.values.len()],
                consecutive_outliers: 0,
            };
        }
        let learned = context.channels.first().map_or(0, |w| w.values.len());
        if learned >= config.warmup {
            let mut outliers: Vec<(f64, u16)> = context
                .channels
                .iter()
                .zip(&reading.values)
                .enumerate()
                .map(|(channel, (window, &value))| (window.z(value, config).abs(), channel as u16))
                .filter(|(z, _)| *z > config.z_limit)
                .collect();
            if !outliers.is_empty() {
                outliers.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                let strongest = outliers[0].0;
                let channels = outliers.iter().take(3).map(|(_, c)| *c).collect();
                anomalies.push(anomaly(
                    AnomalyRule::ZScore,
                    strongest,
                    config.z_limit,
                    channels,
                ));
                context.consecutive_outliers += 1;
                if context.consecutive_outliers >= config.max_consecutive_outliers {
                    *context = ContextWindows::default();
                }
                return;
            }
        }
        context.consecutive_outliers = 0;
        for (window, &value) in context.channels.iter_mut().zip(&reading.values) {
            window.push(value, config.window);
        }
    }

    /// Updates the per-channel runs of unchanged values; returns the
    /// channels whose run has reached `limit`.
    fn track_flat_lines(&mut self, values: &[f64], limit: usize) -> Vec<u16> {
        if self.last_values.len() != values.len() {
            self.last_values = values.to_vec();
            self.flat_runs = vec![1; values.len()];
            return Vec::new();
        }
        let mut flat = Vec::new();
        for (channel, (&value, last)) in values.iter().zip(self.last_values.iter_mut()).enumerate()
        {
            let tolerance = 1e-12 * value.abs().max(1.0);
            if (value - *last).abs() <= tolerance {
                self.flat_runs[channel] += 1;
            } else {
                self.flat_runs[channel] = 1;
            }
            *last = value;
            if self.flat_runs[channel] >= limit {
                flat.push(channel as u16);
            }
        }
        flat
    }
}

/// All monitors of one worker, by line then sensor (so a reading finds its
/// monitor without allocating).
#[derive(Debug, Clone, Default)]
pub struct RollingAnomalyDetector {
    config: RollingAnomalyConfig,
    monitors: SensorMap<SensorMonitor>,
}

impl RollingAnomalyDetector {
    /// A detector with the given parameters.
    pub fn new(config: RollingAnomalyConfig) -> Self {
        RollingAnomalyDetector {
            config,
            monitors: SensorMap::default(),
        }
    }

    /// Processes readings (sorted here into `(line, sensor, ts, seq)` order)
    /// and appends their anomalies to `anomalies`.
    pub fn process(&mut self, readings: &mut [Reading], anomalies: &mut Vec<Anomaly>) {
        // `Reading`'s order starts with (line, sensor, ts, seq) and covers
        // every field, so even exact ties are broken by content.
        readings.sort();
        for reading in readings.iter() {
            let monitor = self.monitors.entry(&reading.line, &reading.sensor);
            monitor.observe(reading, &self.config, anomalies);
        }
    }

    /// Number of sensors with state.
    pub fn sensors(&self) -> usize {
        self.monitors.len()
    }
}

/// Hash of a sensor's key, to route its readings to one worker.
pub fn sensor_route(line: &str, sensor: &str) -> u64 {
    // FNV-1a: stable across processes and builds, unlike `DefaultHasher`.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in line.bytes().chain([b'/']).chain(sensor.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Extension trait: rolling anomaly detection on a stream of readings.
pub trait RollingAnomalies<'scope> {
    /// Routes readings by sensor, runs the detectors on each completed
    /// epoch, and returns the anomalies at the epoch of their reading.
    ///
    /// ```
    /// use scent_operators::model::{Reading, SensorKind};
    /// use scent_operators::rolling_anomaly::{RollingAnomalies, RollingAnomalyConfig};
    /// use timely::dataflow::operators::{ToStream, Capture, capture::Extract};
    ///
    /// let reading = |seq: u64, value: f64| Reading {
    ///     plant: "p1".into(), line: "L1".into(), sensor: "t-1".into(),
    ///     kind: SensorKind::Temperature, ts_ms: seq as i64 * 1_000, seq,
    ///     batch: Some("B-1".into()), product: Some("espresso".into()),
    ///     values: vec![value],
    /// };
    /// let captured = timely::example(move |scope| {
    ///     // Forty readings of alternating noise, then a spike.
    ///     let mut readings: Vec<_> = (0..40)
    ///         .map(|i| reading(i, 90.0 + if i % 2 == 0 { 0.1 } else { -0.1 }))
    ///         .collect();
    ///     readings.push(reading(40, 95.0));
    ///     readings.to_stream(scope)
    ///         .rolling_anomalies(RollingAnomalyConfig::default())
    ///         .capture()
    /// });
    /// let anomalies: Vec<_> = captured.extract().into_iter().flat_map(|(_, a)| a).collect();
    /// assert_eq!(anomalies.len(), 1);
    /// assert_eq!(anomalies[0].seq, 40);
    /// ```
    fn rolling_anomalies(self, config: RollingAnomalyConfig) -> StreamVec<'scope, Epoch, Anomaly>;
}

impl<'scope> RollingAnomalies<'scope> for StreamVec<'scope, Epoch, Reading> {
    fn rolling_anomalies(self, config: RollingAnomalyConfig) -> StreamVec<'scope, Epoch, Anomaly> {
        let mut detector = RollingAnomalyDetector::new(config);
        self.sensor_epochs("RollingAnomalies", move |readings, anomalies| {
            detector.process(readings, anomalies)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SensorKind;

    fn reading(seq: u64, values: Vec<f64>) -> Reading {
        Reading {
            plant: "p1".into(),
            line: "L1".into(),
            sensor: "enose-1".into(),
            kind: SensorKind::Enose,
            ts_ms: seq as i64 * 1_000,
            seq,
            batch: Some("B-1".into()),
            product: Some("espresso".into()),
            values,
        }
    }

    /// Deterministic pseudo-noise in [-1, 1].
    fn noise(seq: u64, channel: usize) -> f64 {
        let x = (seq.wrapping_mul(2_654_435_761) ^ (channel as u64).wrapping_mul(40_503)) % 1_000;
        x as f64 / 500.0 - 1.0
    }

    fn run(readings: Vec<Reading>) -> Vec<Anomaly> {
        let mut monitor = SensorMonitor::default();
        let mut anomalies = Vec::new();
        for reading in &readings {
            monitor.observe(reading, &RollingAnomalyConfig::default(), &mut anomalies);
        }
        anomalies
    }

    fn noisy(seq: u64) -> Reading {
        reading(seq, (0..8).map(|c| 1.0 + 0.01 * noise(seq, c)).collect())
    }

    #[test]
    fn quiet_noise_raises_nothing() {
        assert!(run((0..2_000).map(noisy).collect()).is_empty());
    }

    #[test]
    fn a_persistent_shift_stays_flagged_and_names_its_channels() {
        let mut readings: Vec<_> = (0..200).map(noisy).collect();
        for seq in 200..260 {
            let mut shifted = noisy(seq);
            shifted.values[3] += 0.3;
            shifted.values[5] += 0.2;
            readings.push(shifted);
        }
        let anomalies = run(readings);
        assert_eq!(anomalies.len(), 60);
        assert!(anomalies.iter().all(|a| a.rule == AnomalyRule::ZScore));
        assert_eq!(anomalies[0].channels, vec![3, 5]);
    }

    #[test]
    fn stuck_channels_and_gaps_are_flagged() {
        let mut readings: Vec<_> = (0..100).map(noisy).collect();
        let stuck = readings[99].values.clone();
        readings.extend((100..130).map(|seq| reading(seq, stuck.clone())));
        let mut after_gap = noisy(160);
        after_gap.seq = 130;
        readings.push(after_gap);
        let anomalies = run(readings);
        let flat = anomalies
            .iter()
            .filter(|a| a.rule == AnomalyRule::FlatLine)
            .count();
        assert_eq!(flat, 30 - 13, "flagged from the 15th identical value on");
        let gaps: Vec<_> = anomalies
            .iter()
            .filter(|a| a.rule == AnomalyRule::Gap)
            .collect();
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].statistic, 31.0);
    }

    #[test]
    fn statistics_stay_finite_on_windows_without_spread() {
        // A channel that sat at exactly zero, then moves: σ is floored, the
        // z-score is huge but finite, so the action still serialises.
        let mut readings: Vec<_> = (0..40)
            .map(|seq| reading(seq, vec![0.0, 1.0 + 0.01 * noise(seq, 1)]))
            .collect();
        readings[39].values[0] = 1.0e6;
        let mut monitor = SensorMonitor::default();
        let config = RollingAnomalyConfig {
            flat_line_readings: 1_000,
            ..RollingAnomalyConfig::default()
        };
        let mut anomalies = Vec::new();
        for reading in &readings {
            monitor.observe(reading, &config, &mut anomalies);
        }
        assert_eq!(anomalies.len(), 1);
        assert!(anomalies[0].statistic.is_finite());
        assert!(anomalies[0].statistic > 1.0e14);
    }

    #[test]
    fn order_of_arrival_does_not_matter() {
        let mut readings: Vec<_> = (0..300).map(noisy).collect();
        readings[250].values[0] += 1.0;
        let mut sorted = readings.clone();
        let mut detector = RollingAnomalyDetector::new(RollingAnomalyConfig::default());
        let mut expected = Vec::new();
        detector.process(&mut sorted, &mut expected);
        readings.reverse();
        let mut detector = RollingAnomalyDetector::new(RollingAnomalyConfig::default());
        let mut actual = Vec::new();
        detector.process(&mut readings, &mut actual);
        assert_eq!(expected, actual);
        assert_eq!(actual.len(), 1);
    }
}
