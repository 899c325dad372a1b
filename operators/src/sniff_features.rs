//! Sniff-cycle features of an e-nose array: streaming segmentation of each
//! exposure into baseline, rise, steady state and recovery, and one feature
//! record per completed cycle; plus linear temperature/humidity
//! compensation of the raw channels.
//!
//! # Segmentation
//!
//! [`SniffSegmenter`] receives the samples of one array one by one
//! (timestamp plus one value per channel) and runs the state machine
//! `Baseline -> Rise -> Steady -> Recovery -> Baseline` ([`Phase`]) on one
//! scalar, the *score*
//!
//! ```text
//! s(t) = (1/C) · Σ_c clip_p( ln(x_c(t) / R0_c) )
//! ```
//!
//! the mean over the `C` channels of the log ratio to the baseline,
//! clipped to the configured [`Polarity`] (`positive`: `max(·, 0)`,
//! `negative`: `max(-·, 0)`, `both`: `|·|`). `ln(x/R0) = ln(1 + ΔR/R0)` is
//! monotone in the relative response of each channel, so a threshold of
//! 0.05 means "about 5 % on average"; unlike the plain sum of `ΔR/R0` it
//! is not dominated by the channel with the smallest baseline (a response
//! of ×40 on one channel counts 3.7, not 39), it is the same for a
//! resistance and its conductance up to the sign, and it is invariant to
//! any gain on any channel. Dividing by `C` keeps the thresholds
//! independent of the array size. The readings must be positive
//! (resistances, conductances or load-resistor voltages); ratios are
//! clamped to `[1e-12, 1e12]` (0/0 counts as 1) so the score stays finite.
//!
//! * **Baseline**: every sample that is not a candidate onset enters a
//!   guard of the newest [`SniffConfig::baseline_guard_samples`] samples,
//!   and from there a ring of the [`SniffConfig::baseline_samples`] before
//!   them; `R0_c` is the ring's mean per channel (running sums, O(C) per
//!   sample; the guard's mean while the ring is empty) and the noise `σ =
//!   (1/C) Σ_c sd_c / |R0_c|` its mean relative standard deviation. The
//!   guard keeps the first samples of a slow rise, still below the onset
//!   threshold, out of `R0`; so does a hold level: a sample whose score
//!   lies between `max(offset_threshold, onset_noise_sigmas/2 · σ)` and the
//!   onset threshold is held out of the baseline, unless such samples go
//!   on for more than `baseline_samples` in a row (a drift, which the
//!   baseline then follows). Once the baseline holds
//!   [`SniffConfig::min_baseline_samples`] samples, a
//!   sample whose score exceeds `max(onset_threshold, onset_noise_sigmas ·
//!   σ)` is a candidate onset; [`SniffConfig::onset_confirm_samples`]
//!   candidates in a row start a cycle (from the first of them, with `R0`
//!   frozen as it was before it), while a shorter run is discarded as an
//!   outlier and never enters the ring, which makes the mean robust to
//!   spikes.
//! * **Rise**: the score is still growing. Each time it exceeds the last
//!   growth reference by the factor `1 + plateau_tolerance`, the reference
//!   moves there; after `plateau_confirm_samples` samples without such a
//!   growth the plateau is declared, starting at the last growth sample.
//! * **Steady**: the plateau. The rise or the plateau ends when the score
//!   stays below `(1 - recovery_drop) ·` its peak for
//!   `recovery_confirm_samples` samples in a row (a pulse too short for a
//!   plateau goes straight from Rise to Recovery).
//! * **Recovery**: the cycle completes, with [`CycleEnd::Recovered`], once
//!   the score stays below `max(offset_threshold, recovered_fraction ·
//!   peak)` for `offset_confirm_samples` samples in a row. `offset_threshold
//!   < onset_threshold` is the hysteresis. The ring is then relearned from
//!   the following samples, so a baseline that moved during the exposure
//!   (drift, slow recovery) is not compared with the old one.
//!
//! A cycle that reaches [`SniffConfig::max_cycle_samples`] samples is
//! emitted with [`CycleEnd::MaxDuration`] and the baseline is relearned;
//! [`SniffSegmenter::finish`] emits a cycle in progress at the end of a
//! stream with [`CycleEnd::EndOfStream`]. All thresholds are counted in
//! samples, so the segmentation does not depend on the sampling rate;
//! only the time features (in seconds) read the timestamps.
//!
//! # Features of a cycle
//!
//! Per channel `c`, with the relative response `r_c(t) = (x_c(t) - R0_c) /
//! R0_c` (ΔR/R0, the "fractional" baseline manipulation of
//! Gutierrez-Osuna, *Pattern analysis for machine olfaction: a review*,
//! IEEE Sensors J. 2 (2002) 189-202, which also reviews the transient
//! features used here: rise and decay times, areas, spectral
//! descriptors). **Sign convention**: `r` is computed on whatever the
//! channel reports. A metal-oxide sensor's *resistance* falls under a
//! reducing gas, so `r < 0` (use [`Polarity::Negative`]); its
//! *conductance*, or the voltage across a load resistor in series (the
//! usual Figaro circuit, as in the UMA data), rises, so `r > 0`
//! ([`Polarity::Positive`], the default). No sign is flipped.
//!
//! * `baseline` `R0_c` and `steady_level` (mean of `x_c` over the second
//!   half of the plateau, the first half absorbing the slow end of the
//!   rise), in the channel's unit;
//! * `response` `S`: the steady-state ΔR/R0, mean of `r_c` over the same
//!   samples (the peak response when the cycle had no plateau);
//! * `peak`: the extreme of `r_c` in the polarity direction (largest `|r|`
//!   for [`Polarity::Both`]);
//! * `tau_rise_s`, `tau_decay_s`: first-order time constants by the two-level
//!   method. For `y(t) = S·(1 - e^{-(t - t0)/τ})` the progress
//!   `p = y/S` reaches 10 % at `t0 + τ·ln(1/0.9)` and 63.2 % at `t0 + τ`,
//!   so `τ = (t63 - t10) / ln(0.9/0.368)`, whatever the (unknown) onset
//!   time `t0`. `t63` is the first crossing of 63.2 %, `t10` the last
//!   crossing of 10 % before it (robust to noise on the baseline), both
//!   linearly interpolated between samples. The decay uses the same
//!   formula with `p = 1 - r/S`, searched from the channel's peak (or the
//!   plateau start, whichever is later, but no later than the recovery
//!   start). When
//!   the 63.2 % level is never reached (a recovery cut short) `τ` is
//!   extrapolated from the last sample, `τ = (t_last - t10) / ln(0.9 / (1 -
//!   p_last))`; `τ` is clamped to `[0, 10 · span]` and is 0 for a channel
//!   whose `|S|` is below `min_channel_response` or when the cycle has no
//!   recovery. This is a two-point identification of a first-order lag
//!   from a step response, like Smith's method (28.3 % and 63.2 %; Seborg,
//!   Edgar & Mellichamp, *Process Dynamics and Control*), with a lower
//!   first point so that fast MOX rises still span a few samples.
//! * `area_s`: `∫ r_c dt` by the trapezoid rule, in seconds, from the
//!   first pre-onset sample the cycle keeps (`max(baseline_guard_samples,
//!   1)` of them) to the end of the cycle;
//! * `band_energy`: the transient `r_c(t)` of the whole cycle is resampled
//!   linearly onto `fft_resample_len` uniform points spanning the cycle,
//!   zero-padded to `fft_len`, and transformed with rustfft. The one-sided
//!   energy of bin `k` is `w_k |X_k|² / fft_len` (`w = 1` at DC and Nyquist,
//!   2 elsewhere), so by Parseval the bins sum to `Σ_n x_n²` of the padded
//!   sequence — the tests check exactly this. Bin `k` has the relative
//!   frequency `f = 2k / fft_len` (fraction of the resampled Nyquist
//!   frequency, so the bands follow the cycle's length) and belongs to the
//!   band `[e_i, e_{i+1})` of [`SniffConfig::fft_band_edges`] (the last band
//!   includes 1). The features are each band's fraction of the total
//!   energy (they sum to 1; all 0 for a channel with no energy).
//!
//! [`SniffCycle::feature_vector`] flattens the features for downstream
//! fingerprints (PCA) in **feature-major** order: `response[0..C]`,
//! `peak[0..C]`, `tau_rise_s[0..C]`, `tau_decay_s[0..C]`, `area_s[0..C]`,
//! then for each band `b`, `band_energy[b][0..C]`; length `C · (5 + B)`.
//! [`SniffCycle::feature_names`] gives the matching names. The baseline
//! and the steady level (raw units) are left out: they carry the drift of
//! the sensors, not the odour.
//!
//! # Temperature and humidity compensation
//!
//! Metal-oxide sensors respond to temperature `T` and humidity `H` roughly
//! multiplicatively around an operating point (the scent simulator uses
//! exactly `x = x_true · (1 + α_c (T - T_ref) + β_c (H - H_ref))`), so
//! [`ClimateCompensation::apply`] divides every channel by that factor,
//! given the latest `T` and `H` of the same line; the coefficients are
//! fitted by [`ClimateCompensation::fit`] from clean-air reference samples,
//! where `x_c = b_c + b_c α_c ΔT + b_c β_c ΔH` is linear in `(1, ΔT, ΔH)`:
//! ordinary least squares per channel gives `(b_c, b_c α_c, b_c β_c)`,
//! hence `α_c` and `β_c` without approximation. The segmenter applies the
//! model to each sample given `Some(climate)`; samples without a climate
//! are used raw and counted in [`SniffCycle::uncompensated_samples`].
//!
//! # Example
//!
//! ```
//! use scent_operators::sniff_features::{CycleEnd, SniffConfig, SniffSegmenter};
//!
//! // Two channels at 1 Hz: 20 s of clean air, 60 s of odour (+50 % and
//! // +20 %, first order with τ = 3 s), then recovery (τ = 5 s).
//! let level = |t: f64, response: f64| {
//!     let at = |t: f64| response * (1.0 - (-(t - 20.0) / 3.0).exp());
//!     if t < 20.0 { 0.0 } else if t < 80.0 { at(t) } else { at(80.0) * (-(t - 80.0) / 5.0).exp() }
//! };
//! let mut segmenter = SniffSegmenter::new(2, SniffConfig::default(), None).unwrap();
//! let mut cycles = Vec::new();
//! for second in 0..200 {
//!     let t = second as f64;
//!     let values = [1.0 + level(t, 0.5), 3.0 * (1.0 + level(t, 0.2))];
//!     cycles.extend(segmenter.push(second * 1000, &values, None).unwrap());
//! }
//! cycles.extend(segmenter.finish());
//! assert_eq!(cycles.len(), 1);
//! assert_eq!(cycles[0].end, CycleEnd::Recovered);
//! assert!((cycles[0].channels[0].response - 0.5).abs() < 0.01);
//! assert!((cycles[0].channels[1].baseline - 3.0).abs() < 1e-9);
//! assert_eq!(cycles[0].feature_vector().len(), 2 * (5 + 5));
//! ```
//!
//! # State and cost
//!
//! Per array: the baseline ring and guard (`(baseline_samples +
//! baseline_guard_samples) · C` values), the pre-onset history
//! (`baseline_guard_samples · (C + 1)`), the onset candidates
//! (`onset_confirm_samples · (C + 2)`), O(C) sums, the current cycle (at
//! most `max_cycle_samples` timestamps and `· C` values), and the
//! extractor's buffers: two of `fft_len` complex values (the plan itself
//! is shared) and two of the cycle's length. The cycle buffers keep their
//! capacity from one cycle to the next, so they stay at the longest cycle
//! seen, never above `max_cycle_samples`. Measured with
//! [`SniffSegmenter::state_bytes`] for the defaults (ring 32, guard 5,
//! cycles of at most 2,048 samples, FFT 256): 15.8 kB for an idle
//! 16-channel array, 327 kB at the longest cycle (4 channels: 10.9 kB and
//! 126 kB; 32 channels: 22.3 kB and 596 kB). A sample costs O(C); a
//! cycle's features cost O(n·C) plus C FFTs of `fft_len` points.

use nalgebra::DMatrix;
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// The direction in which a channel responds to the odour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Polarity {
    /// Readings rise with the odour: conductance, load-resistor voltage.
    Positive,
    /// Readings fall with the odour: MOX resistance under reducing gases.
    Negative,
    /// Either direction counts (mixed arrays).
    Both,
}

/// Parameters of the segmenter and of the features. Sample counts, not
/// durations, so the segmentation does not depend on the sampling rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SniffConfig {
    /// Direction of the response that makes an exposure.
    pub polarity: Polarity,
    /// Capacity of the baseline ring `R0` is the mean of.
    pub baseline_samples: usize,
    /// Baseline samples needed before an onset can be detected.
    pub min_baseline_samples: usize,
    /// The newest baseline samples, held back from `R0` so that the first
    /// samples of a slow rise (still below the onset threshold) do not
    /// bias it; `R0` uses them only while the ring is empty.
    pub baseline_guard_samples: usize,
    /// Least mean log ratio to the baseline that makes an onset candidate.
    pub onset_threshold: f64,
    /// The onset threshold is at least this many baseline noise sigmas.
    pub onset_noise_sigmas: f64,
    /// Onset candidates in a row that start a cycle.
    pub onset_confirm_samples: usize,
    /// Relative growth of the score that still counts as rising.
    pub plateau_tolerance: f64,
    /// Samples without growth that declare the plateau.
    pub plateau_confirm_samples: usize,
    /// Fraction of the peak score the score must lose to start recovery.
    pub recovery_drop: f64,
    /// Samples below the recovery level in a row that start recovery.
    pub recovery_confirm_samples: usize,
    /// Absolute score below which the array counts as recovered (hysteresis:
    /// below `onset_threshold`).
    pub offset_threshold: f64,
    /// The recovered level is at least this fraction of the peak score.
    pub recovered_fraction: f64,
    /// Recovered samples in a row that complete the cycle.
    pub offset_confirm_samples: usize,
    /// Longest cycle, in samples; bounds the state per array.
    pub max_cycle_samples: usize,
    /// Uniform points the transient is resampled to before the FFT.
    pub fft_resample_len: usize,
    /// FFT length (power of two, at least `fft_resample_len`; zero padding).
    pub fft_len: usize,
    /// Band edges in relative frequency (fraction of Nyquist), from 0 to 1.
    pub fft_band_edges: Vec<f64>,
    /// Below this `|steady response|` a channel's time constants are 0.
    pub min_channel_response: f64,
}

impl Default for SniffConfig {
    fn default() -> Self {
        SniffConfig {
            polarity: Polarity::Positive,
            baseline_samples: 32,
            min_baseline_samples: 8,
            baseline_guard_samples: 5,
            onset_threshold: 0.05,
            onset_noise_sigmas: 6.0,
            onset_confirm_samples: 3,
            plateau_tolerance: 0.02,
            plateau_confirm_samples: 5,
            recovery_drop: 0.1,
            recovery_confirm_samples: 3,
            offset_threshold: 0.02,
            recovered_fraction: 0.1,
            offset_confirm_samples: 5,
            max_cycle_samples: 2048,
            fft_resample_len: 128,
            fft_len: 256,
            fft_band_edges: vec![0.0, 0.02, 0.05, 0.1, 0.25, 1.0],
            min_channel_response: 1e-3,
        }
    }
}

/// A configuration value out of its range; names the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("sniff features config `{key}`: {reason}")]
pub struct SniffConfigError {
    /// The offending key, as spelled in the config file.
    pub key: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn config_error(key: &'static str, reason: &str) -> SniffConfigError {
    SniffConfigError {
        key,
        reason: reason.to_string(),
    }
}

impl SniffConfig {
    /// Checks every parameter; the error names the first offending key.
    pub fn check(&self) -> Result<(), SniffConfigError> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if self.baseline_samples < 1 {
            return Err(config_error("baseline_samples", "must be at least 1"));
        }
        if self.min_baseline_samples < 1
            || self.min_baseline_samples > self.baseline_samples + self.baseline_guard_samples
        {
            return Err(config_error(
                "min_baseline_samples",
                "must lie in 1..=baseline_samples + baseline_guard_samples",
            ));
        }
        if !positive(self.onset_threshold) {
            return Err(config_error("onset_threshold", "must be a positive number"));
        }
        if !(self.onset_noise_sigmas.is_finite() && self.onset_noise_sigmas >= 0.0) {
            return Err(config_error(
                "onset_noise_sigmas",
                "must be a non-negative number",
            ));
        }
        if self.onset_confirm_samples < 1 {
            return Err(config_error("onset_confirm_samples", "must be at least 1"));
        }
        if !positive(self.plateau_tolerance) {
            return Err(config_error(
                "plateau_tolerance",
                "must be a positive number",
            ));
        }
        if self.plateau_confirm_samples < 1 {
            return Err(config_error(
                "plateau_confirm_samples",
                "must be at least 1",
            ));
        }
        if !(positive(self.recovery_drop) && self.recovery_drop < 1.0) {
            return Err(config_error("recovery_drop", "must lie in (0, 1)"));
        }
        if self.recovery_confirm_samples < 1 {
            return Err(config_error(
                "recovery_confirm_samples",
                "must be at least 1",
            ));
        }
        if !(positive(self.offset_threshold) && self.offset_threshold < self.onset_threshold) {
            return Err(config_error(
                "offset_threshold",
                "must be positive and below onset_threshold (hysteresis)",
            ));
        }
        if !(self.recovered_fraction.is_finite()
            && self.recovered_fraction >= 0.0
            && self.recovered_fraction < 1.0 - self.recovery_drop)
        {
            return Err(config_error(
                "recovered_fraction",
                "must lie in [0, 1 - recovery_drop)",
            ));
        }
        if self.offset_confirm_samples < 1 {
            return Err(config_error("offset_confirm_samples", "must be at least 1"));
        }
        let shortest_cycle = self.onset_confirm_samples + self.offset_confirm_samples + 2;
        if self.max_cycle_samples < shortest_cycle {
            return Err(config_error(
                "max_cycle_samples",
                "must exceed onset_confirm_samples + offset_confirm_samples + 1",
            ));
        }
        if self.fft_resample_len < 2 {
            return Err(config_error("fft_resample_len", "must be at least 2"));
        }
        if !self.fft_len.is_power_of_two() || self.fft_len < self.fft_resample_len {
            return Err(config_error(
                "fft_len",
                "must be a power of two, at least fft_resample_len",
            ));
        }
        let edges = &self.fft_band_edges;
        if edges.len() < 2
            || edges[0] != 0.0
            || edges[edges.len() - 1] != 1.0
            || edges.iter().any(|edge| !edge.is_finite())
            || edges.windows(2).any(|pair| pair[0] >= pair[1])
        {
            return Err(config_error(
                "fft_band_edges",
                "must increase strictly from 0 to 1",
            ));
        }
        if !(self.min_channel_response.is_finite() && self.min_channel_response >= 0.0) {
            return Err(config_error(
                "min_channel_response",
                "must be a non-negative number",
            ));
        }
        Ok(())
    }

    /// Number of FFT bands.
    pub fn bands(&self) -> usize {
        self.fft_band_edges.len() - 1
    }
}

/// Where the segmenter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Learning or tracking the baseline; watching for an onset.
    Baseline,
    /// The response is growing.
    Rise,
    /// The response is on its plateau.
    Steady,
    /// The response is returning to the baseline.
    Recovery,
}

/// Why a cycle was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CycleEnd {
    /// The score returned to the baseline: a complete cycle.
    Recovered,
    /// The cycle reached `max_cycle_samples`.
    MaxDuration,
    /// The stream ended during the cycle ([`SniffSegmenter::finish`]).
    #[default]
    EndOfStream,
}

/// Features of one channel over one cycle (see the module doc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelFeatures {
    /// `R0`, the baseline before the onset, in the channel's unit.
    pub baseline: f64,
    /// Mean reading over the plateau, in the channel's unit.
    pub steady_level: f64,
    /// Steady-state relative response ΔR/R0.
    pub response: f64,
    /// Extreme relative response in the polarity direction.
    pub peak: f64,
    /// First-order rise time constant, seconds.
    pub tau_rise_s: f64,
    /// First-order decay time constant, seconds.
    pub tau_decay_s: f64,
    /// Area under ΔR/R0, seconds.
    pub area_s: f64,
    /// Fraction of the transient's energy in each configured band.
    pub band_energy: Vec<f64>,
}

/// The feature record of one sniff cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SniffCycle {
    /// Timestamp of the first sample of the exposure (the onset).
    pub start_ts_ms: i64,
    /// Timestamp of the first plateau sample, if a plateau was seen.
    pub plateau_start_ts_ms: Option<i64>,
    /// Timestamp of the first recovery sample, if recovery was seen.
    pub recovery_start_ts_ms: Option<i64>,
    /// Timestamp of the last sample of the cycle.
    pub end_ts_ms: i64,
    /// Why the cycle was emitted.
    pub end: CycleEnd,
    /// Samples of the cycle, from the onset to the end.
    pub samples: usize,
    /// Samples used without climate compensation (no climate given).
    pub uncompensated_samples: usize,
    /// Per channel features, in channel order.
    pub channels: Vec<ChannelFeatures>,
}

/// Names of the per-channel features in [`SniffCycle::feature_vector`], in
/// order, before the bands.
pub const SCALAR_FEATURES: [&str; 5] = ["response", "peak", "tau_rise_s", "tau_decay_s", "area_s"];

impl SniffCycle {
    /// The features flattened feature-major: `response[0..C]`, `peak[0..C]`,
    /// `tau_rise_s[0..C]`, `tau_decay_s[0..C]`, `area_s[0..C]`, then
    /// `band_energy[b][0..C]` for each band `b`. Length `C · (5 + B)`.
    pub fn feature_vector(&self) -> Vec<f64> {
        let bands = self.channels.first().map_or(0, |c| c.band_energy.len());
        let mut vector = Vec::with_capacity(self.channels.len() * (SCALAR_FEATURES.len() + bands));
        let scalars: [fn(&ChannelFeatures) -> f64; 5] = [
            |c| c.response,
            |c| c.peak,
            |c| c.tau_rise_s,
            |c| c.tau_decay_s,
            |c| c.area_s,
        ];
        for scalar in scalars {
            vector.extend(self.channels.iter().map(scalar));
        }
        for band in 0..bands {
            vector.extend(self.channels.iter().map(|c| c.band_energy[band]));
        }
        vector
    }

    /// Names of [`SniffCycle::feature_vector`]'s entries, e.g.
    /// `response[c0]` or `band_energy[b2][c3]`.
    pub fn feature_names(channels: usize, bands: usize) -> Vec<String> {
        let mut names = Vec::with_capacity(channels * (SCALAR_FEATURES.len() + bands));
        for scalar in SCALAR_FEATURES {
            names.extend((0..channels).map(|c| format!("{scalar}[c{c}]")));
        }
        for band in 0..bands {
            names.extend((0..channels).map(|c| format!("band_energy[b{band}][c{c}]")));
        }
        names
    }
}

/// Process climate of the line at a sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Climate {
    /// Process temperature, °C.
    pub temperature_c: f64,
    /// Relative humidity, %RH.
    pub humidity_pct: f64,
}

/// Why a compensation model could not be fitted or used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompensationError {
    /// Fewer reference samples than the three coefficients per channel.
    #[error("compensation fit needs at least 3 reference samples, got {0}")]
    TooFewSamples(usize),
    /// A reference sample has another channel count than the first.
    #[error("reference sample {index} has {got} channels, expected {expected}")]
    ChannelCount {
        /// Index of the sample.
        index: usize,
        /// Channels of the first sample.
        expected: usize,
        /// Channels of this one.
        got: usize,
    },
    /// A reference value or climate is NaN or infinite.
    #[error("reference sample {0} has a non-finite value")]
    NonFinite(usize),
    /// Temperature and humidity do not vary independently in the reference
    /// data, so their coefficients cannot be told apart.
    #[error("reference climate does not vary enough to separate temperature and humidity")]
    Degenerate,
    /// A channel's fitted clean-air level is zero.
    #[error("channel {0} has a zero clean-air level")]
    ZeroLevel(usize),
}

/// Linear multiplicative temperature/humidity model per channel:
/// `x_comp = x / (1 + a_c (T - t_ref) + b_c (H - h_ref))`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClimateCompensation {
    /// Reference temperature, °C.
    pub t_ref: f64,
    /// Reference humidity, %RH.
    pub h_ref: f64,
    /// `a_c`, relative sensitivity per °C.
    pub temperature_coefficient: Vec<f64>,
    /// `b_c`, relative sensitivity per %RH.
    pub humidity_coefficient: Vec<f64>,
}

/// The compensation factor is clamped at this floor: below it the linear
/// model is used far outside its range.
const MIN_COMPENSATION_FACTOR: f64 = 0.1;

impl ClimateCompensation {
    /// A model that changes nothing.
    pub fn identity(channels: usize, t_ref: f64, h_ref: f64) -> Self {
        ClimateCompensation {
            t_ref,
            h_ref,
            temperature_coefficient: vec![0.0; channels],
            humidity_coefficient: vec![0.0; channels],
        }
    }

    /// Channels of the model.
    pub fn channels(&self) -> usize {
        self.temperature_coefficient.len()
    }

    /// Fits the coefficients by least squares on clean-air reference
    /// samples (readings with the climate they were taken in), around the
    /// reference point `(t_ref, h_ref)`.
    pub fn fit(
        reference: &[(Vec<f64>, Climate)],
        t_ref: f64,
        h_ref: f64,
    ) -> Result<Self, CompensationError> {
        let rows = reference.len();
        if rows < 3 {
            return Err(CompensationError::TooFewSamples(rows));
        }
        let channels = reference[0].0.len();
        let mut design = DMatrix::<f64>::zeros(rows, 3);
        let mut targets = DMatrix::<f64>::zeros(rows, channels);
        for (index, (values, climate)) in reference.iter().enumerate() {
            if values.len() != channels {
                return Err(CompensationError::ChannelCount {
                    index,
                    expected: channels,
                    got: values.len(),
                });
            }
            if !(climate.temperature_c.is_finite()
                && climate.humidity_pct.is_finite()
                && values.iter().all(|v| v.is_finite()))
            {
                return Err(CompensationError::NonFinite(index));
            }
            design[(index, 0)] = 1.0;
            design[(index, 1)] = climate.temperature_c - t_ref;
            design[(index, 2)] = climate.humidity_pct - h_ref;
            for (channel, value) in values.iter().enumerate() {
                targets[(index, channel)] = *value;
            }
        }
        // Column scaling keeps the rank test meaningful whatever the units.
        let scales: Vec<f64> = (0..3)
            .map(|j| design.column(j).norm().max(f64::MIN_POSITIVE))
            .collect();
        for (j, scale) in scales.iter().enumerate() {
            design.column_mut(j).unscale_mut(*scale);
        }
        let svd = design.svd(true, true);
        let largest = svd.singular_values.max();
        if svd.singular_values.min() <= 1e-9 * largest {
            return Err(CompensationError::Degenerate);
        }
        let solution = svd
            .solve(&targets, 0.0)
            .map_err(|_| CompensationError::Degenerate)?;
        let mut model = ClimateCompensation::identity(channels, t_ref, h_ref);
        for channel in 0..channels {
            let level = solution[(0, channel)] / scales[0];
            if level == 0.0 || !level.is_finite() {
                return Err(CompensationError::ZeroLevel(channel));
            }
            model.temperature_coefficient[channel] = solution[(1, channel)] / scales[1] / level;
            model.humidity_coefficient[channel] = solution[(2, channel)] / scales[2] / level;
        }
        Ok(model)
    }

    /// The factor `1 + a_c ΔT + b_c ΔH` of one channel, clamped at 0.1.
    pub fn factor(&self, channel: usize, climate: Climate) -> f64 {
        let factor = 1.0
            + self.temperature_coefficient[channel] * (climate.temperature_c - self.t_ref)
            + self.humidity_coefficient[channel] * (climate.humidity_pct - self.h_ref);
        factor.max(MIN_COMPENSATION_FACTOR)
    }

    /// Writes the compensated values of `values` into `out`.
    ///
    /// # Panics
    /// When `values` or `out` do not have the model's channel count (the
    /// segmenter checks this when it is built).
    pub fn apply(&self, values: &[f64], climate: Climate, out: &mut [f64]) {
        assert_eq!(values.len(), self.channels(), "channel count of the model");
        assert_eq!(out.len(), self.channels(), "channel count of the output");
        for (channel, (value, slot)) in values.iter().zip(out.iter_mut()).enumerate() {
            *slot = value / self.factor(channel, climate);
        }
    }
}

/// Why a sample was rejected by the segmenter (the state is unchanged).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SniffError {
    /// The sample has another channel count than the array.
    #[error("sample has {got} channels, the array has {expected}")]
    ChannelCount {
        /// Channels of the array.
        expected: usize,
        /// Channels of the sample.
        got: usize,
    },
    /// A value or the climate is NaN or infinite.
    #[error("sample has a non-finite value or climate")]
    NonFinite,
    /// The timestamp does not follow the previous sample's.
    #[error("timestamp {ts_ms} does not follow the previous sample at {previous_ms}")]
    NotIncreasing {
        /// The previous sample's timestamp.
        previous_ms: i64,
        /// This sample's.
        ts_ms: i64,
    },
}

/// The samples of one cycle as the segmenter hands them to the feature
/// extractor: plain data, so extraction can be tested and benchmarked alone.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CycleTrace {
    /// Channels of the array.
    pub channels: usize,
    /// Timestamps, strictly increasing.
    pub ts_ms: Vec<i64>,
    /// Values, row-major: sample `i`, channel `c` at `i · channels + c`.
    pub values: Vec<f64>,
    /// Index of the onset: the samples before it are the newest
    /// `max(baseline_guard_samples, 1)` baseline-phase samples, kept so
    /// the start of the rise can be read.
    pub onset_index: usize,
    /// Baseline `R0` per channel.
    pub baseline: Vec<f64>,
    /// First plateau sample, if any.
    pub plateau_start: Option<usize>,
    /// First recovery sample, if any (the plateau ends there).
    pub recovery_start: Option<usize>,
    /// Why the cycle ended.
    pub end: CycleEnd,
    /// Samples used without climate compensation.
    pub uncompensated_samples: usize,
}

impl CycleTrace {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.ts_ms.len()
    }

    /// Whether the trace has no sample.
    pub fn is_empty(&self) -> bool {
        self.ts_ms.is_empty()
    }

    fn clear(&mut self) {
        self.ts_ms.clear();
        self.values.clear();
        self.onset_index = 0;
        self.baseline.clear();
        self.plateau_start = None;
        self.recovery_start = None;
        self.end = CycleEnd::EndOfStream;
        self.uncompensated_samples = 0;
    }

    fn push(&mut self, ts_ms: i64, values: &[f64]) {
        self.ts_ms.push(ts_ms);
        self.values.extend_from_slice(values);
    }
}

/// `ln(1/0.9) … ln(1/0.368)`: the time between the 10 % and 63.2 %
/// crossings of a first-order step, in time constants.
fn two_level_span() -> f64 {
    (0.9f64 / (-1.0f64).exp()).ln()
}

/// The first-order time constant of the transition of `value(i)` from
/// `from` to `to` over the samples `range` (see the module doc).
fn first_order_tau(
    ts_s: &[f64],
    value: impl Fn(usize) -> f64,
    range: std::ops::Range<usize>,
    from: f64,
    to: f64,
) -> f64 {
    if range.len() < 2 {
        return 0.0;
    }
    let change = to - from;
    let span = ts_s[range.end - 1] - ts_s[range.start];
    let progress = |i: usize| (value(i) - from) / change;
    let crossing = |i: usize, level: f64| {
        // Interpolated time at which the progress crosses `level` between
        // samples i - 1 and i.
        if i == range.start {
            return ts_s[i];
        }
        let (p0, p1) = (progress(i - 1), progress(i));
        let fraction = if p1 != p0 {
            ((level - p0) / (p1 - p0)).clamp(0.0, 1.0)
        } else {
            1.0
        };
        ts_s[i - 1] + fraction * (ts_s[i] - ts_s[i - 1])
    };
    let high = 1.0 - (-1.0f64).exp();
    let end_index = range.clone().find(|&i| progress(i) >= high);
    let search_end = end_index.unwrap_or(range.end - 1);
    // The last sample at or below 10 % before the end index; the crossing
    // is between it and its successor.
    let below = (range.start..=search_end)
        .rev()
        .find(|&i| progress(i) < 0.1);
    let t10 = match below {
        Some(i) if i < search_end => crossing(i + 1, 0.1),
        Some(_) => return (10.0 * span).max(0.0),
        None => ts_s[range.start],
    };
    let tau = match end_index {
        Some(i) => (crossing(i, high) - t10) / two_level_span(),
        None => {
            let last = range.end - 1;
            let p_last = progress(last);
            if p_last <= 0.1 || ts_s[last] <= t10 {
                10.0 * span
            } else {
                (ts_s[last] - t10) / (0.9 / (1.0 - p_last)).ln()
            }
        }
    };
    tau.clamp(0.0, (10.0 * span).max(0.0))
}

/// Computes [`SniffCycle`] records from [`CycleTrace`]s; holds the FFT plan
/// and buffers so extraction allocates only the record.
pub struct FeatureExtractor {
    config: SniffConfig,
    fft: Arc<dyn Fft<f64>>,
    spectrum: Vec<Complex<f64>>,
    scratch: Vec<Complex<f64>>,
    ts_s: Vec<f64>,
    response: Vec<f64>,
}

impl fmt::Debug for FeatureExtractor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeatureExtractor")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl FeatureExtractor {
    /// An extractor for `config`, which must pass [`SniffConfig::check`].
    pub fn new(config: SniffConfig) -> Result<Self, SniffConfigError> {
        config.check()?;
        let fft = FftPlanner::<f64>::new().plan_fft_forward(config.fft_len);
        let scratch = vec![Complex::default(); fft.get_inplace_scratch_len()];
        Ok(FeatureExtractor {
            spectrum: vec![Complex::default(); config.fft_len],
            config,
            fft,
            scratch,
            ts_s: Vec::new(),
            response: Vec::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SniffConfig {
        &self.config
    }

    /// Heap bytes of the buffers (the plan is shared and not counted).
    pub fn state_bytes(&self) -> usize {
        (self.spectrum.capacity() + self.scratch.capacity()) * std::mem::size_of::<Complex<f64>>()
            + (self.ts_s.capacity() + self.response.capacity()) * std::mem::size_of::<f64>()
    }

    /// One-sided band energies of `signal`, resampled onto
    /// `fft_resample_len` uniform points over `ts_s`, zero-padded to
    /// `fft_len`; not normalised. They sum to `Σ x_n²` of the padded
    /// sequence (Parseval).
    pub fn band_energies(&mut self, ts_s: &[f64], signal: &[f64]) -> Vec<f64> {
        let resampled = self.config.fft_resample_len;
        let length = self.config.fft_len;
        self.spectrum.fill(Complex::default());
        let (first, last) = (ts_s[0], ts_s[ts_s.len() - 1]);
        let mut segment = 0;
        for n in 0..resampled {
            let t = if signal.len() == 1 {
                first
            } else {
                first + (last - first) * n as f64 / (resampled - 1) as f64
            };
            while segment + 2 < ts_s.len() && ts_s[segment + 1] < t {
                segment += 1;
            }
            let value = if signal.len() == 1 {
                signal[0]
            } else {
                let (t0, t1) = (ts_s[segment], ts_s[segment + 1]);
                let fraction = if t1 > t0 {
                    ((t - t0) / (t1 - t0)).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                signal[segment] + fraction * (signal[segment + 1] - signal[segment])
            };
            self.spectrum[n] = Complex::new(value, 0.0);
        }
        self.fft
            .process_with_scratch(&mut self.spectrum, &mut self.scratch);
        let edges = &self.config.fft_band_edges;
        let mut energies = vec![0.0; edges.len() - 1];
        let half = length / 2;
        let mut band = 0;
        for k in 0..=half {
            let weight = if k == 0 || k == half { 1.0 } else { 2.0 };
            let frequency = k as f64 / half as f64;
            while band + 1 < energies.len() && frequency >= edges[band + 1] {
                band += 1;
            }
            energies[band] += weight * self.spectrum[k].norm_sqr() / length as f64;
        }
        energies
    }

    /// The features of a cycle.
    ///
    /// # Panics
    /// When the trace is inconsistent (empty, values not `len · channels`,
    /// baseline not `channels` long, indices out of range): the segmenter
    /// never builds such a trace.
    pub fn extract(&mut self, trace: &CycleTrace) -> SniffCycle {
        let n = trace.len();
        let channels = trace.channels;
        assert!(n > trace.onset_index, "a cycle has at least one sample");
        assert_eq!(trace.values.len(), n * channels, "values of the trace");
        assert_eq!(trace.baseline.len(), channels, "baseline of the trace");
        let onset = trace.onset_index;
        let recovery_start = trace.recovery_start.map(|i| i.min(n));
        let plateau = trace
            .plateau_start
            .map(|start| start..recovery_start.unwrap_or(n))
            .filter(|range| !range.is_empty());
        // The steady state is averaged over the plateau's second half: the
        // first absorbs the slow end of the rise.
        let steady_range = plateau
            .as_ref()
            .map(|range| (range.start + range.len() / 2)..range.end);
        self.ts_s.clear();
        self.ts_s.extend(
            trace
                .ts_ms
                .iter()
                .map(|&ts| (ts - trace.ts_ms[0]) as f64 / 1000.0),
        );
        let polarity = self.config.polarity;
        let mut features = Vec::with_capacity(channels);
        for channel in 0..channels {
            let r0 = trace.baseline[channel];
            let r0_guarded = if r0.abs() < f64::MIN_POSITIVE {
                f64::MIN_POSITIVE
            } else {
                r0
            };
            self.response.clear();
            self.response
                .extend((0..n).map(|i| (trace.values[i * channels + channel] - r0) / r0_guarded));
            let response = &self.response;
            // Peak in the polarity direction, over the exposure.
            let mut peak_index = onset;
            for i in onset..n {
                let better = match polarity {
                    Polarity::Positive => response[i] > response[peak_index],
                    Polarity::Negative => response[i] < response[peak_index],
                    Polarity::Both => response[i].abs() > response[peak_index].abs(),
                };
                if better {
                    peak_index = i;
                }
            }
            let peak = response[peak_index];
            let (steady, steady_level) = match &steady_range {
                Some(range) => {
                    let count = range.len() as f64;
                    let mean_response = range.clone().map(|i| response[i]).sum::<f64>() / count;
                    let mean_level = range
                        .clone()
                        .map(|i| trace.values[i * channels + channel])
                        .sum::<f64>()
                        / count;
                    (mean_response, mean_level)
                }
                None => (peak, trace.values[peak_index * channels + channel]),
            };
            let responding = steady.abs() >= self.config.min_channel_response && steady != 0.0;
            let tau_rise_s = if responding {
                let rise_end = recovery_start.unwrap_or(n);
                first_order_tau(&self.ts_s, |i| response[i], 0..rise_end, 0.0, steady)
            } else {
                0.0
            };
            let tau_decay_s = match recovery_start {
                Some(start) if responding && start < n => {
                    let plateau_start = plateau.as_ref().map_or(onset, |range| range.start);
                    let decay_start = plateau_start.max(peak_index).min(start);
                    first_order_tau(&self.ts_s, |i| response[i], decay_start..n, steady, 0.0)
                }
                _ => 0.0,
            };
            let area_s = (1..n)
                .map(|i| 0.5 * (response[i] + response[i - 1]) * (self.ts_s[i] - self.ts_s[i - 1]))
                .sum();
            let response_copy = std::mem::take(&mut self.response);
            let ts_copy = std::mem::take(&mut self.ts_s);
            let mut band_energy = self.band_energies(&ts_copy, &response_copy);
            self.response = response_copy;
            self.ts_s = ts_copy;
            let total: f64 = band_energy.iter().sum();
            for energy in &mut band_energy {
                *energy = if total > 0.0 { *energy / total } else { 0.0 };
            }
            features.push(ChannelFeatures {
                baseline: r0,
                steady_level,
                response: steady,
                peak,
                tau_rise_s,
                tau_decay_s,
                area_s,
                band_energy,
            });
        }
        SniffCycle {
            start_ts_ms: trace.ts_ms[onset],
            plateau_start_ts_ms: plateau.as_ref().map(|range| trace.ts_ms[range.start]),
            recovery_start_ts_ms: recovery_start.filter(|&i| i < n).map(|i| trace.ts_ms[i]),
            end_ts_ms: trace.ts_ms[n - 1],
            end: trace.end,
            samples: n - onset,
            uncompensated_samples: trace.uncompensated_samples,
            channels: features,
        }
    }
}

/// The last `baseline_samples` baseline samples with running sums.
#[derive(Debug, Clone)]
struct BaselineRing {
    channels: usize,
    capacity: usize,
    values: Vec<f64>,
    head: usize,
    len: usize,
    sum: Vec<f64>,
    sum_squares: Vec<f64>,
    pushes_since_exact: usize,
}

impl BaselineRing {
    fn new(channels: usize, capacity: usize) -> Self {
        BaselineRing {
            channels,
            capacity,
            values: vec![0.0; channels * capacity],
            head: 0,
            len: 0,
            sum: vec![0.0; channels],
            sum_squares: vec![0.0; channels],
            pushes_since_exact: 0,
        }
    }

    fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
        self.sum.fill(0.0);
        self.sum_squares.fill(0.0);
        self.pushes_since_exact = 0;
    }

    fn push(&mut self, sample: &[f64]) {
        let slot = &mut self.values[self.head * self.channels..(self.head + 1) * self.channels];
        for c in 0..self.channels {
            if self.len == self.capacity {
                self.sum[c] -= slot[c];
                self.sum_squares[c] -= slot[c] * slot[c];
            }
            slot[c] = sample[c];
            self.sum[c] += sample[c];
            self.sum_squares[c] += sample[c] * sample[c];
        }
        self.head = (self.head + 1) % self.capacity;
        self.len = (self.len + 1).min(self.capacity);
        // Running sums accumulate rounding error; recompute them exactly
        // once per turnover.
        self.pushes_since_exact += 1;
        if self.pushes_since_exact >= self.capacity {
            self.pushes_since_exact = 0;
            self.sum.fill(0.0);
            self.sum_squares.fill(0.0);
            for row in 0..self.len {
                for c in 0..self.channels {
                    let v = self.values[row * self.channels + c];
                    self.sum[c] += v;
                    self.sum_squares[c] += v * v;
                }
            }
        }
    }

    /// The oldest sample, which the next push overwrites, once full.
    fn oldest(&self) -> Option<&[f64]> {
        (self.len == self.capacity && self.capacity > 0)
            .then(|| &self.values[self.head * self.channels..(self.head + 1) * self.channels])
    }

    fn mean_into(&self, out: &mut [f64]) {
        for (slot, sum) in out.iter_mut().zip(&self.sum) {
            *slot = sum / self.len as f64;
        }
    }

    /// Mean relative standard deviation over the channels.
    fn relative_noise(&self) -> f64 {
        if self.len < 2 {
            return 0.0;
        }
        let n = self.len as f64;
        let total: f64 = (0..self.channels)
            .map(|c| {
                let mean = self.sum[c] / n;
                let variance = ((self.sum_squares[c] - self.sum[c] * mean) / (n - 1.0)).max(0.0);
                if mean.abs() > 0.0 {
                    variance.sqrt() / mean.abs()
                } else {
                    0.0
                }
            })
            .sum();
        total / self.channels as f64
    }
}

/// The newest samples with their timestamps, oldest first.
#[derive(Debug, Clone)]
struct RecentSamples {
    channels: usize,
    capacity: usize,
    values: Vec<f64>,
    ts_ms: Vec<i64>,
    head: usize,
    len: usize,
}

impl RecentSamples {
    fn new(channels: usize, capacity: usize) -> Self {
        RecentSamples {
            channels,
            capacity,
            values: vec![0.0; channels * capacity],
            ts_ms: vec![0; capacity],
            head: 0,
            len: 0,
        }
    }

    fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    fn push(&mut self, ts_ms: i64, sample: &[f64]) {
        self.values[self.head * self.channels..(self.head + 1) * self.channels]
            .copy_from_slice(sample);
        self.ts_ms[self.head] = ts_ms;
        self.head = (self.head + 1) % self.capacity;
        self.len = (self.len + 1).min(self.capacity);
    }

    /// The `k`-th oldest sample.
    fn get(&self, k: usize) -> (i64, &[f64]) {
        let slot = (self.head + self.capacity - self.len + k) % self.capacity;
        (
            self.ts_ms[slot],
            &self.values[slot * self.channels..(slot + 1) * self.channels],
        )
    }
}

/// The score: mean over channels of the polarity-clipped log ratio.
fn score(values: &[f64], baseline: &[f64], polarity: Polarity) -> f64 {
    let total: f64 = values
        .iter()
        .zip(baseline)
        .map(|(x, r0)| {
            let ratio = x / r0;
            let ratio = if ratio.is_nan() { 1.0 } else { ratio };
            let log_ratio = ratio.clamp(1e-12, 1e12).ln();
            match polarity {
                Polarity::Positive => log_ratio.max(0.0),
                Polarity::Negative => (-log_ratio).max(0.0),
                Polarity::Both => log_ratio.abs(),
            }
        })
        .sum();
    total / values.len() as f64
}

/// Streaming segmenter of one e-nose array (see the module doc).
#[derive(Debug)]
pub struct SniffSegmenter {
    channels: usize,
    compensation: Option<ClimateCompensation>,
    extractor: FeatureExtractor,
    phase: Phase,
    ring: BaselineRing,
    /// The newest baseline samples, not yet in the ring.
    guard: BaselineRing,
    /// The oldest guard sample on its way to the ring.
    evicted: Vec<f64>,
    /// The compensated sample being processed.
    sample: Vec<f64>,
    /// The newest non-candidate samples of the baseline phase (accepted
    /// or held out), prepended to a cycle that starts after them.
    history: RecentSamples,
    /// Consecutive samples held out of the baseline.
    held_run: usize,
    /// Onset candidates: timestamps, scores, values (row-major), and how
    /// many of them were uncompensated.
    pending_ts: Vec<i64>,
    pending_scores: Vec<f64>,
    pending_values: Vec<f64>,
    pending_uncompensated: usize,
    trace: CycleTrace,
    peak_score: f64,
    growth_reference: f64,
    last_growth: usize,
    drop_run: usize,
    recovered_run: usize,
    last_ts: Option<i64>,
}

impl SniffSegmenter {
    /// A segmenter for an array of `channels` channels, with an optional
    /// climate compensation model of the same channel count.
    pub fn new(
        channels: usize,
        config: SniffConfig,
        compensation: Option<ClimateCompensation>,
    ) -> Result<Self, SniffConfigError> {
        if channels == 0 {
            return Err(config_error(
                "channels",
                "an array has at least one channel",
            ));
        }
        if let Some(model) = &compensation {
            if model.channels() != channels {
                return Err(config_error(
                    "compensation",
                    "the model's channel count differs from the array's",
                ));
            }
        }
        let extractor = FeatureExtractor::new(config)?;
        let config = extractor.config();
        Ok(SniffSegmenter {
            channels,
            ring: BaselineRing::new(channels, config.baseline_samples),
            guard: BaselineRing::new(channels, config.baseline_guard_samples),
            evicted: vec![0.0; channels],
            pending_ts: Vec::with_capacity(config.onset_confirm_samples),
            pending_scores: Vec::with_capacity(config.onset_confirm_samples),
            pending_values: Vec::with_capacity(config.onset_confirm_samples * channels),
            compensation,
            history: RecentSamples::new(channels, config.baseline_guard_samples.max(1)),
            extractor,
            phase: Phase::Baseline,
            sample: vec![0.0; channels],
            held_run: 0,
            pending_uncompensated: 0,
            trace: CycleTrace {
                channels,
                ..CycleTrace::default()
            },
            peak_score: 0.0,
            growth_reference: 0.0,
            last_growth: 0,
            drop_run: 0,
            recovered_run: 0,
            last_ts: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SniffConfig {
        self.extractor.config()
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The current baseline estimate `R0`, once the ring has a sample.
    pub fn baseline(&self) -> Option<Vec<f64>> {
        if self.phase != Phase::Baseline {
            return Some(self.trace.baseline.clone());
        }
        if self.ring.len + self.guard.len == 0 {
            return None;
        }
        let mut r0 = vec![0.0; self.channels];
        self.baseline_into(&mut r0);
        Some(r0)
    }

    /// Heap bytes held for this array now (buffers by capacity).
    pub fn state_bytes(&self) -> usize {
        let f = std::mem::size_of::<f64>();
        let i = std::mem::size_of::<i64>();
        std::mem::size_of::<Self>()
            + self.extractor.state_bytes()
            + (self.ring.values.capacity()
                + self.ring.sum.capacity()
                + self.ring.sum_squares.capacity()
                + self.guard.values.capacity()
                + self.guard.sum.capacity()
                + self.guard.sum_squares.capacity()
                + self.evicted.capacity())
                * f
            + (self.sample.capacity() + self.history.values.capacity()) * f
            + self.history.ts_ms.capacity() * i
            + (self.pending_scores.capacity() + self.pending_values.capacity()) * f
            + self.pending_ts.capacity() * i
            + (self.trace.values.capacity() + self.trace.baseline.capacity()) * f
            + self.trace.ts_ms.capacity() * i
            + self
                .compensation
                .as_ref()
                .map_or(0, |m| 2 * m.channels() * f)
    }

    /// Processes one sample; returns the cycle it completes, if any. A
    /// rejected sample leaves the state unchanged.
    pub fn push(
        &mut self,
        ts_ms: i64,
        values: &[f64],
        climate: Option<Climate>,
    ) -> Result<Option<SniffCycle>, SniffError> {
        if values.len() != self.channels {
            return Err(SniffError::ChannelCount {
                expected: self.channels,
                got: values.len(),
            });
        }
        if values.iter().any(|v| !v.is_finite())
            || climate.is_some_and(|c| !(c.temperature_c.is_finite() && c.humidity_pct.is_finite()))
        {
            return Err(SniffError::NonFinite);
        }
        if let Some(previous_ms) = self.last_ts {
            if ts_ms <= previous_ms {
                return Err(SniffError::NotIncreasing { previous_ms, ts_ms });
            }
        }
        self.last_ts = Some(ts_ms);
        let uncompensated = match (&self.compensation, climate) {
            (Some(model), Some(climate)) => {
                model.apply(values, climate, &mut self.sample);
                false
            }
            (Some(_), None) => {
                self.sample.copy_from_slice(values);
                true
            }
            (None, _) => {
                self.sample.copy_from_slice(values);
                false
            }
        };
        Ok(match self.phase {
            Phase::Baseline => {
                self.push_baseline(ts_ms, uncompensated);
                None
            }
            _ => self.push_cycle(ts_ms, uncompensated),
        })
    }

    /// Ends the stream: emits the cycle in progress, if any, and forgets
    /// the baseline and the last timestamp, so the segmenter can start a
    /// new stream.
    pub fn finish(&mut self) -> Option<SniffCycle> {
        let cycle = if self.phase == Phase::Baseline {
            None
        } else {
            Some(self.emit(CycleEnd::EndOfStream))
        };
        self.reset_baseline();
        self.last_ts = None;
        cycle
    }

    fn reset_baseline(&mut self) {
        self.phase = Phase::Baseline;
        self.ring.clear();
        self.guard.clear();
        self.pending_ts.clear();
        self.pending_scores.clear();
        self.pending_values.clear();
        self.pending_uncompensated = 0;
        self.history.clear();
        self.held_run = 0;
    }

    fn push_baseline(&mut self, ts_ms: i64, uncompensated: bool) {
        let config = self.extractor.config();
        if self.ring.len + self.guard.len < config.min_baseline_samples {
            self.accept_baseline(ts_ms);
            return;
        }
        let mut r0 = std::mem::take(&mut self.trace.baseline);
        r0.resize(self.channels, 0.0);
        self.baseline_into(&mut r0);
        let s = score(&self.sample, &r0, config.polarity);
        let noise = self.ring.relative_noise();
        let threshold = config
            .onset_threshold
            .max(config.onset_noise_sigmas * noise);
        if s > threshold {
            self.pending_ts.push(ts_ms);
            self.pending_scores.push(s);
            self.pending_values.extend_from_slice(&self.sample);
            self.pending_uncompensated += usize::from(uncompensated);
            if self.pending_ts.len() >= config.onset_confirm_samples {
                self.start_cycle(r0);
                return;
            }
        } else {
            // A run of candidates too short for an onset: outliers, kept
            // out of the baseline.
            self.pending_ts.clear();
            self.pending_scores.clear();
            self.pending_values.clear();
            self.pending_uncompensated = 0;
            let hold = config
                .offset_threshold
                .max(0.5 * config.onset_noise_sigmas * noise);
            if s > hold {
                self.held_run += 1;
            } else {
                self.held_run = 0;
            }
            if self.held_run == 0 || self.held_run > config.baseline_samples {
                self.accept_baseline(ts_ms);
            } else {
                self.history.push(ts_ms, &self.sample);
            }
        }
        self.trace.baseline = r0;
    }

    /// `R0`: the ring's mean, or the guard's while the ring is empty.
    fn baseline_into(&self, out: &mut [f64]) {
        if self.ring.len > 0 {
            self.ring.mean_into(out);
        } else {
            self.guard.mean_into(out);
        }
    }

    fn accept_baseline(&mut self, ts_ms: i64) {
        if self.guard.capacity == 0 {
            self.ring.push(&self.sample);
        } else {
            if let Some(oldest) = self.guard.oldest() {
                self.evicted.copy_from_slice(oldest);
                self.ring.push(&self.evicted);
            }
            self.guard.push(&self.sample);
        }
        self.history.push(ts_ms, &self.sample);
    }

    fn start_cycle(&mut self, r0: Vec<f64>) {
        self.trace.clear();
        self.trace.channels = self.channels;
        self.trace.baseline = r0;
        for k in 0..self.history.len {
            let (ts, row) = self.history.get(k);
            self.trace.ts_ms.push(ts);
            self.trace.values.extend_from_slice(row);
        }
        self.trace.onset_index = self.history.len;
        for (k, ts) in self.pending_ts.iter().enumerate() {
            self.trace.push(
                *ts,
                &self.pending_values[k * self.channels..(k + 1) * self.channels],
            );
        }
        self.trace.uncompensated_samples = self.pending_uncompensated;
        self.phase = Phase::Rise;
        self.peak_score = 0.0;
        self.growth_reference = self.pending_scores[0];
        self.last_growth = self.trace.onset_index;
        self.drop_run = 0;
        self.recovered_run = 0;
        let first = self.trace.onset_index;
        for k in 0..self.pending_scores.len() {
            let s = self.pending_scores[k];
            self.track_score(first + k, s);
        }
        self.pending_ts.clear();
        self.pending_scores.clear();
        self.pending_values.clear();
        self.pending_uncompensated = 0;
    }

    /// Updates the peak, growth and drop trackers with the score of sample
    /// `index` of the trace; moves between Rise, Steady and Recovery.
    fn track_score(&mut self, index: usize, s: f64) {
        let config = self.extractor.config();
        self.peak_score = self.peak_score.max(s);
        match self.phase {
            Phase::Rise | Phase::Steady => {
                if self.phase == Phase::Rise {
                    if s > self.growth_reference * (1.0 + config.plateau_tolerance) {
                        self.growth_reference = s;
                        self.last_growth = index;
                    } else if index - self.last_growth >= config.plateau_confirm_samples {
                        self.phase = Phase::Steady;
                        self.trace.plateau_start = Some(self.last_growth);
                    }
                }
                if s < (1.0 - config.recovery_drop) * self.peak_score {
                    self.drop_run += 1;
                } else {
                    self.drop_run = 0;
                }
                if self.drop_run >= config.recovery_confirm_samples {
                    self.phase = Phase::Recovery;
                    self.trace.recovery_start = Some(index + 1 - self.drop_run);
                    self.recovered_run = 0;
                }
            }
            Phase::Recovery => {
                let recovered = config
                    .offset_threshold
                    .max(config.recovered_fraction * self.peak_score);
                if s < recovered {
                    self.recovered_run += 1;
                } else {
                    self.recovered_run = 0;
                }
            }
            Phase::Baseline => {}
        }
    }

    fn push_cycle(&mut self, ts_ms: i64, uncompensated: bool) -> Option<SniffCycle> {
        self.trace.push(ts_ms, &self.sample);
        self.trace.uncompensated_samples += usize::from(uncompensated);
        let s = score(
            &self.sample,
            &self.trace.baseline,
            self.extractor.config().polarity,
        );
        let index = self.trace.len() - 1;
        self.track_score(index, s);
        let config = self.extractor.config();
        if self.phase == Phase::Recovery && self.recovered_run >= config.offset_confirm_samples {
            let cycle = self.emit(CycleEnd::Recovered);
            self.reset_baseline();
            return Some(cycle);
        }
        if self.trace.len() >= config.max_cycle_samples {
            let cycle = self.emit(CycleEnd::MaxDuration);
            self.reset_baseline();
            return Some(cycle);
        }
        None
    }

    fn emit(&mut self, end: CycleEnd) -> SniffCycle {
        self.trace.end = end;
        let cycle = self.extractor.extract(&self.trace);
        let baseline = std::mem::take(&mut self.trace.baseline);
        self.trace.clear();
        self.trace.baseline = baseline;
        cycle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A small deterministic generator (xorshift64*) for noise.
    struct Rng(u64);

    impl Rng {
        fn uniform(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Zero-mean noise in [-1, 1].
        fn noise(&mut self) -> f64 {
            2.0 * self.uniform() - 1.0
        }
    }

    /// One channel of a first-order exposure.
    #[derive(Debug, Clone, Copy)]
    struct Channel {
        r0: f64,
        response: f64,
        tau_rise_s: f64,
        tau_decay_s: f64,
    }

    impl Channel {
        /// ΔR/R0 at `t` for an exposure from `t0` to `t1`.
        fn relative(&self, t: f64, t0: f64, t1: f64) -> f64 {
            let rise = |t: f64| self.response * (1.0 - (-(t - t0) / self.tau_rise_s).exp());
            if t <= t0 {
                0.0
            } else if t <= t1 {
                rise(t)
            } else {
                rise(t1) * (-(t - t1) / self.tau_decay_s).exp()
            }
        }

        /// `∫ ΔR/R0 dt` from `t0` to `t_end` (after `t1`).
        fn area(&self, t0: f64, t1: f64, t_end: f64) -> f64 {
            let exposure = t1 - t0;
            let at_end = self.response * (1.0 - (-exposure / self.tau_rise_s).exp());
            self.response * exposure
                - self.response * self.tau_rise_s * (1.0 - (-exposure / self.tau_rise_s).exp())
                + at_end * self.tau_decay_s * (1.0 - (-(t_end - t1) / self.tau_decay_s).exp())
        }
    }

    /// Samples every `step_ms` from 0 to `end_s`, exposures `(t0, t1)` in
    /// seconds, relative noise `noise`.
    fn exposure_stream(
        channels: &[Channel],
        exposures: &[(f64, f64)],
        step_ms: i64,
        end_s: f64,
        noise: f64,
        seed: u64,
    ) -> Vec<(i64, Vec<f64>)> {
        let mut rng = Rng(seed | 1);
        let samples = (end_s * 1000.0 / step_ms as f64) as i64;
        (0..samples)
            .map(|k| {
                let ts_ms = k * step_ms;
                let t = ts_ms as f64 / 1000.0;
                let values = channels
                    .iter()
                    .map(|channel| {
                        let relative: f64 = exposures
                            .iter()
                            .map(|&(t0, t1)| channel.relative(t, t0, t1))
                            .sum();
                        channel.r0 * (1.0 + relative) * (1.0 + noise * rng.noise())
                    })
                    .collect();
                (ts_ms, values)
            })
            .collect()
    }

    fn run(
        segmenter: &mut SniffSegmenter,
        stream: &[(i64, Vec<f64>)],
        gain: f64,
    ) -> Vec<SniffCycle> {
        let mut cycles = Vec::new();
        for (ts, values) in stream {
            let scaled: Vec<f64> = values.iter().map(|v| v * gain).collect();
            if let Some(cycle) = segmenter.push(*ts, &scaled, None).expect("a valid sample") {
                cycles.push(cycle);
            }
        }
        cycles.extend(segmenter.finish());
        cycles
    }

    fn four_channels() -> Vec<Channel> {
        vec![
            Channel {
                r0: 1.0,
                response: 0.5,
                tau_rise_s: 2.0,
                tau_decay_s: 5.0,
            },
            Channel {
                r0: 2.0,
                response: 1.0,
                tau_rise_s: 3.0,
                tau_decay_s: 8.0,
            },
            Channel {
                r0: 0.5,
                response: 0.2,
                tau_rise_s: 1.5,
                tau_decay_s: 4.0,
            },
            Channel {
                r0: 10.0,
                response: 0.8,
                tau_rise_s: 2.5,
                tau_decay_s: 6.0,
            },
        ]
    }

    fn close(actual: f64, expected: f64, relative: f64, what: &str) {
        assert!(
            (actual - expected).abs() <= relative * expected.abs(),
            "{what}: {actual} vs {expected} (tolerance {relative})"
        );
    }

    #[test]
    fn first_order_exposure_recovers_the_true_parameters() {
        let channels = four_channels();
        let (t0, t1) = (10.05, 50.05);
        let stream = exposure_stream(&channels, &[(t0, t1)], 100, 120.0, 1e-4, 7);
        let mut segmenter = SniffSegmenter::new(4, SniffConfig::default(), None).unwrap();
        let cycles = run(&mut segmenter, &stream, 1.0);
        assert_eq!(cycles.len(), 1, "{cycles:#?}");
        let cycle = &cycles[0];
        assert_eq!(cycle.end, CycleEnd::Recovered);
        // The onset is confirmed on the first sample past the threshold.
        assert!(
            (10_100..=10_400).contains(&cycle.start_ts_ms),
            "{}",
            cycle.start_ts_ms
        );
        let plateau = cycle.plateau_start_ts_ms.expect("a plateau");
        assert!(plateau > 10_100 && plateau < 30_000, "{plateau}");
        let recovery = cycle.recovery_start_ts_ms.expect("a recovery");
        assert!(recovery > 50_000 && recovery < 52_000, "{recovery}");
        let end_s = cycle.end_ts_ms as f64 / 1000.0;
        for (features, truth) in cycle.channels.iter().zip(&channels) {
            close(features.baseline, truth.r0, 1e-3, "R0");
            close(features.response, truth.response, 0.01, "ΔR/R0");
            close(
                features.steady_level,
                truth.r0 * (1.0 + truth.response),
                0.01,
                "level",
            );
            close(features.peak, truth.response, 0.01, "peak");
            close(features.tau_rise_s, truth.tau_rise_s, 0.02, "τ rise");
            close(features.tau_decay_s, truth.tau_decay_s, 0.02, "τ decay");
            close(features.area_s, truth.area(t0, t1, end_s), 0.01, "area");
            let total: f64 = features.band_energy.iter().sum();
            close(total, 1.0, 1e-12, "band fractions");
            // A slow transient: most energy in the lowest band.
            assert!(features.band_energy[0] > 0.5, "{:?}", features.band_energy);
        }
        assert_eq!(segmenter.phase(), Phase::Baseline);
    }

    #[test]
    fn resistance_channels_fall_and_segment_with_negative_polarity() {
        let channels: Vec<Channel> = four_channels()
            .into_iter()
            .map(|c| Channel {
                response: -c.response / (1.0 + c.response),
                ..c
            })
            .collect();
        let stream = exposure_stream(&channels, &[(10.05, 50.05)], 100, 120.0, 1e-4, 8);
        let config = SniffConfig {
            polarity: Polarity::Negative,
            ..SniffConfig::default()
        };
        let mut segmenter = SniffSegmenter::new(4, config, None).unwrap();
        let cycles = run(&mut segmenter, &stream, 1.0);
        assert_eq!(cycles.len(), 1);
        for (features, truth) in cycles[0].channels.iter().zip(&channels) {
            assert!(features.response < 0.0 && features.peak < 0.0);
            close(features.response, truth.response, 0.01, "ΔR/R0");
            close(features.tau_rise_s, truth.tau_rise_s, 0.05, "τ rise");
        }
        // Either direction counts with `both`.
        let config = SniffConfig {
            polarity: Polarity::Both,
            ..SniffConfig::default()
        };
        let mut both = SniffSegmenter::new(4, config, None).unwrap();
        let cycles = run(&mut both, &stream, 1.0);
        assert_eq!(cycles.len(), 1);
        assert!(cycles[0].channels.iter().all(|c| c.response < 0.0));
        // With positive polarity the fall is no exposure: the baseline follows
        // it, and only the return to the clean-air level looks like one.
        let mut positive = SniffSegmenter::new(4, SniffConfig::default(), None).unwrap();
        let cycles = run(&mut positive, &stream, 1.0);
        assert!(
            cycles.iter().all(|cycle| cycle.start_ts_ms > 50_000),
            "{cycles:?}"
        );
    }

    #[test]
    fn consecutive_exposures_make_one_cycle_each() {
        let channels = four_channels();
        let exposures = [(10.05, 40.05), (130.0, 160.0), (250.0, 280.0)];
        let stream = exposure_stream(&channels, &exposures, 100, 360.0, 1e-4, 9);
        let mut segmenter = SniffSegmenter::new(4, SniffConfig::default(), None).unwrap();
        let cycles = run(&mut segmenter, &stream, 1.0);
        assert_eq!(cycles.len(), 3);
        for (cycle, (t0, _)) in cycles.iter().zip(exposures) {
            assert_eq!(cycle.end, CycleEnd::Recovered);
            assert!((cycle.start_ts_ms as f64 / 1000.0 - t0).abs() < 0.5);
            close(cycle.channels[1].response, 1.0, 0.02, "ΔR/R0");
        }
    }

    #[test]
    fn a_spike_neither_starts_a_cycle_nor_moves_the_baseline() {
        let mut segmenter = SniffSegmenter::new(2, SniffConfig::default(), None).unwrap();
        for k in 0..100 {
            let values = if k == 50 || k == 51 {
                [3.0, 6.0]
            } else {
                [1.0, 2.0]
            };
            assert!(segmenter.push(k * 100, &values, None).unwrap().is_none());
        }
        assert_eq!(segmenter.phase(), Phase::Baseline);
        assert_eq!(segmenter.baseline(), Some(vec![1.0, 2.0]));
    }

    #[test]
    fn an_endless_exposure_is_cut_at_the_maximum_length_and_state_stays_bounded() {
        let config = SniffConfig {
            max_cycle_samples: 300,
            ..SniffConfig::default()
        };
        let mut segmenter = SniffSegmenter::new(16, config.clone(), None).unwrap();
        let mut cycles = Vec::new();
        let mut largest_state = 0;
        for k in 0..2000i64 {
            let level = if k < 20 { 1.0 } else { 2.0 };
            if let Some(cycle) = segmenter.push(k * 1000, &[level; 16], None).unwrap() {
                cycles.push(cycle);
            }
            largest_state = largest_state.max(segmenter.state_bytes());
        }
        assert_eq!(
            cycles.len(),
            1,
            "a relearned baseline at the new level: no second cycle"
        );
        assert_eq!(cycles[0].end, CycleEnd::MaxDuration);
        assert_eq!(cycles[0].samples, 300 - config.baseline_guard_samples);
        assert!(cycles[0].recovery_start_ts_ms.is_none());
        assert_eq!(cycles[0].channels[0].tau_decay_s, 0.0);
        // Cycle buffer: 300 samples of 16 values and a timestamp, plus
        // growth slack of the vectors; ring, FFT buffers and the rest.
        let bound = 2 * 300 * 17 * 8 + 32 * 16 * 8 + 3 * 256 * 16 + 8192;
        assert!(largest_state < bound, "{largest_state} bytes");
    }

    #[test]
    fn finish_emits_the_cycle_in_progress() {
        let channels = four_channels();
        let stream = exposure_stream(&channels, &[(10.05, 50.05)], 100, 60.0, 1e-4, 10);
        let mut segmenter = SniffSegmenter::new(4, SniffConfig::default(), None).unwrap();
        let cycles = run(&mut segmenter, &stream, 1.0);
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].end, CycleEnd::EndOfStream);
        assert!(cycles[0].recovery_start_ts_ms.is_some());
        assert!(cycles[0].feature_vector().iter().all(|v| v.is_finite()));
        assert!(segmenter.finish().is_none());
    }

    #[test]
    fn rejected_samples_leave_the_state_unchanged() {
        let mut segmenter = SniffSegmenter::new(2, SniffConfig::default(), None).unwrap();
        segmenter.push(1000, &[1.0, 1.0], None).unwrap();
        assert_eq!(
            segmenter.push(2000, &[1.0], None),
            Err(SniffError::ChannelCount {
                expected: 2,
                got: 1
            })
        );
        assert_eq!(
            segmenter.push(2000, &[1.0, f64::NAN], None),
            Err(SniffError::NonFinite)
        );
        let hot = Climate {
            temperature_c: f64::INFINITY,
            humidity_pct: 40.0,
        };
        assert_eq!(
            segmenter.push(2000, &[1.0, 1.0], Some(hot)),
            Err(SniffError::NonFinite)
        );
        assert_eq!(
            segmenter.push(1000, &[1.0, 1.0], None),
            Err(SniffError::NotIncreasing {
                previous_ms: 1000,
                ts_ms: 1000
            })
        );
        assert!(segmenter.push(2000, &[1.0, 1.0], None).is_ok());
    }

    #[test]
    fn config_errors_name_the_key() {
        let key = |config: SniffConfig| config.check().unwrap_err().key;
        let base = SniffConfig::default();
        assert_eq!(base.check(), Ok(()));
        assert_eq!(
            key(SniffConfig {
                offset_threshold: 0.05,
                ..base.clone()
            }),
            "offset_threshold"
        );
        assert_eq!(
            key(SniffConfig {
                min_baseline_samples: 40,
                ..base.clone()
            }),
            "min_baseline_samples"
        );
        assert_eq!(
            key(SniffConfig {
                fft_len: 100,
                ..base.clone()
            }),
            "fft_len"
        );
        assert_eq!(
            key(SniffConfig {
                fft_band_edges: vec![0.0, 0.5, 0.4, 1.0],
                ..base.clone()
            }),
            "fft_band_edges"
        );
        assert_eq!(
            key(SniffConfig {
                recovery_drop: 1.0,
                ..base.clone()
            }),
            "recovery_drop"
        );
        assert_eq!(
            key(SniffConfig {
                max_cycle_samples: 5,
                ..base.clone()
            }),
            "max_cycle_samples"
        );
        assert_eq!(
            SniffSegmenter::new(
                3,
                base.clone(),
                Some(ClimateCompensation::identity(2, 90.0, 45.0))
            )
            .unwrap_err()
            .key,
            "compensation"
        );
        let error = key(SniffConfig {
            onset_threshold: -1.0,
            ..base
        });
        assert_eq!(error, "onset_threshold");
    }

    #[test]
    fn config_parses_with_defaults_and_rejects_unknown_keys() {
        let config: SniffConfig =
            serde_json::from_str(r#"{"polarity": "negative", "max_cycle_samples": 600}"#).unwrap();
        assert_eq!(config.polarity, Polarity::Negative);
        assert_eq!(config.max_cycle_samples, 600);
        assert_eq!(
            config.baseline_samples,
            SniffConfig::default().baseline_samples
        );
        assert!(serde_json::from_str::<SniffConfig>(r#"{"onset": 0.1}"#).is_err());
    }

    #[test]
    fn feature_vector_is_feature_major_and_matches_the_names() {
        let stream = exposure_stream(&four_channels(), &[(10.05, 50.05)], 100, 120.0, 1e-4, 11);
        let mut segmenter = SniffSegmenter::new(4, SniffConfig::default(), None).unwrap();
        let cycle = run(&mut segmenter, &stream, 1.0).remove(0);
        let vector = cycle.feature_vector();
        let names = SniffCycle::feature_names(4, 5);
        assert_eq!(vector.len(), 4 * (5 + 5));
        assert_eq!(names.len(), vector.len());
        assert_eq!(names[5], "peak[c1]");
        assert_eq!(vector[5], cycle.channels[1].peak);
        assert_eq!(names[13], "tau_decay_s[c1]");
        assert_eq!(vector[13], cycle.channels[1].tau_decay_s);
        assert_eq!(names[4 * 5 + 2 * 4 + 3], "band_energy[b2][c3]");
        assert_eq!(vector[4 * 5 + 2 * 4 + 3], cycle.channels[3].band_energy[2]);
    }

    /// Readings of clean air under a varying climate, with the simulator's
    /// multiplicative model around (90 °C, 45 %RH).
    fn clean_air(alpha: &[f64], beta: &[f64], level: &[f64]) -> Vec<(Vec<f64>, Climate)> {
        (0..200)
            .map(|k| {
                let t = k as f64;
                let climate = Climate {
                    temperature_c: 90.0 + 3.0 * (t / 17.0).sin(),
                    humidity_pct: 45.0 + 5.0 * (t / 29.0).cos(),
                };
                let values = (0..level.len())
                    .map(|c| {
                        level[c]
                            * (1.0
                                + alpha[c] * (climate.temperature_c - 90.0)
                                + beta[c] * (climate.humidity_pct - 45.0))
                    })
                    .collect();
                (values, climate)
            })
            .collect()
    }

    #[test]
    fn compensation_fit_recovers_the_coefficients_and_flattens_clean_air() {
        let alpha = [0.001, 0.002, 0.003];
        let beta = [0.0005, 0.001, 0.002];
        let level = [1.0, 0.8, 1.2];
        let reference = clean_air(&alpha, &beta, &level);
        let model = ClimateCompensation::fit(&reference, 90.0, 45.0).unwrap();
        for c in 0..3 {
            close(model.temperature_coefficient[c], alpha[c], 1e-9, "α");
            close(model.humidity_coefficient[c], beta[c], 1e-9, "β");
        }
        let mut out = [0.0; 3];
        for (values, climate) in &reference {
            model.apply(values, *climate, &mut out);
            for c in 0..3 {
                close(out[c], level[c], 1e-9, "compensated level");
            }
        }
        // Constant humidity: the coefficients cannot be told apart.
        let dry: Vec<_> = reference
            .iter()
            .map(|(values, climate)| {
                (
                    values.clone(),
                    Climate {
                        humidity_pct: 45.0,
                        ..*climate
                    },
                )
            })
            .collect();
        assert_eq!(
            ClimateCompensation::fit(&dry, 90.0, 45.0),
            Err(CompensationError::Degenerate)
        );
        assert_eq!(
            ClimateCompensation::fit(&reference[..2], 90.0, 45.0),
            Err(CompensationError::TooFewSamples(2))
        );
    }

    #[test]
    fn compensation_removes_a_climate_driven_false_onset() {
        // The process heats by 30 °C: +9 % on every channel, an onset for
        // the raw readings, nothing once compensated.
        let alpha = [0.003; 4];
        let beta = [0.001; 4];
        let model =
            ClimateCompensation::fit(&clean_air(&alpha, &beta, &[1.0; 4]), 90.0, 45.0).unwrap();
        let mut compensated = SniffSegmenter::new(4, SniffConfig::default(), Some(model)).unwrap();
        let mut raw = SniffSegmenter::new(4, SniffConfig::default(), None).unwrap();
        let mut raw_cycles = 0;
        for k in 0..600i64 {
            let temperature = 90.0 + 30.0 * ((k - 100).clamp(0, 10) as f64 / 10.0);
            let climate = Climate {
                temperature_c: temperature,
                humidity_pct: 45.0,
            };
            let value = 1.0 + 0.003 * (temperature - 90.0);
            let values = [value; 4];
            assert!(compensated
                .push(k * 1000, &values, Some(climate))
                .unwrap()
                .is_none());
            raw_cycles += usize::from(
                raw.push(k * 1000, &values, Some(climate))
                    .unwrap()
                    .is_some(),
            );
            assert_eq!(compensated.phase(), Phase::Baseline);
        }
        raw_cycles += usize::from(raw.finish().is_some());
        assert_eq!(raw_cycles, 1);
        // Without a climate the sample is used raw and counted.
        let stream = exposure_stream(&four_channels(), &[(10.05, 50.05)], 100, 120.0, 1e-4, 12);
        let identity = ClimateCompensation::identity(4, 90.0, 45.0);
        let mut segmenter = SniffSegmenter::new(4, SniffConfig::default(), Some(identity)).unwrap();
        let cycles = run(&mut segmenter, &stream, 1.0);
        assert_eq!(cycles[0].uncompensated_samples, cycles[0].samples);
    }

    /// Parameters of a random exposure for the properties.
    fn exposure_strategy() -> impl Strategy<Value = (Vec<Channel>, f64, f64, u64)> {
        let channel = (0.1f64..10.0, 0.1f64..2.0, 0.3f64..4.0, 0.5f64..8.0).prop_map(
            |(r0, response, tau_rise_s, tau_decay_s)| Channel {
                r0,
                response,
                tau_rise_s,
                tau_decay_s,
            },
        );
        (
            prop::collection::vec(channel, 1..6),
            5.0f64..15.0,
            10.0f64..40.0,
            any::<u64>(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Parseval: the one-sided band energies of a uniformly sampled
        /// sequence of exactly `fft_resample_len` points (no resampling)
        /// sum to `Σ x_n²` (zero padding adds no energy), and the
        /// normalised fractions of a cycle sum to 1.
        #[test]
        fn band_energies_satisfy_parseval(
            signal in prop::collection::vec(-10.0f64..10.0, 128),
            step_ms in 1i64..5000,
        ) {
            let mut extractor = FeatureExtractor::new(SniffConfig::default()).unwrap();
            let ts_s: Vec<f64> = (0..128).map(|n| (n as i64 * step_ms) as f64 / 1000.0).collect();
            let energies = extractor.band_energies(&ts_s, &signal);
            let time_energy: f64 = signal.iter().map(|x| x * x).sum();
            let spectral: f64 = energies.iter().sum();
            prop_assert!((spectral - time_energy).abs() <= 1e-9 * time_energy.max(1e-12),
                "{spectral} vs {time_energy}");
            prop_assert!(energies.iter().all(|e| *e >= 0.0));
        }

        /// A constant gain on every channel changes neither the segmentation
        /// nor the relative features; baselines and levels scale with it.
        #[test]
        fn segmentation_is_invariant_to_a_constant_gain(
            (channels, start, exposure, seed) in exposure_strategy(),
            gain in 1e-3f64..1e3,
        ) {
            let stream = exposure_stream(&channels, &[(start, start + exposure)], 100,
                start + exposure + 80.0, 1e-3, seed);
            let config = SniffConfig::default();
            let mut plain = SniffSegmenter::new(channels.len(), config.clone(), None).unwrap();
            let mut scaled = SniffSegmenter::new(channels.len(), config, None).unwrap();
            let a = run(&mut plain, &stream, 1.0);
            let b = run(&mut scaled, &stream, gain);
            prop_assert_eq!(a.len(), b.len());
            prop_assert!(!a.is_empty());
            for (x, y) in a.iter().zip(&b) {
                prop_assert_eq!(
                    (x.start_ts_ms, x.plateau_start_ts_ms, x.recovery_start_ts_ms, x.end_ts_ms, x.end),
                    (y.start_ts_ms, y.plateau_start_ts_ms, y.recovery_start_ts_ms, y.end_ts_ms, y.end)
                );
                for (u, v) in x.feature_vector().iter().zip(y.feature_vector()) {
                    prop_assert!((u - v).abs() <= 1e-7 * (1.0 + u.abs()), "{u} vs {v}");
                }
                for (u, v) in x.channels.iter().zip(&y.channels) {
                    prop_assert!((u.baseline * gain - v.baseline).abs() <= 1e-9 * v.baseline.abs());
                }
            }
        }

        /// Baseline correction is idempotent: the stream divided by the
        /// baseline its cycle was measured against has baseline 1 and the
        /// same cycle, and correcting it once more changes nothing.
        #[test]
        fn baseline_correction_is_idempotent(
            (channels, start, exposure, seed) in exposure_strategy(),
        ) {
            let stream = exposure_stream(&channels, &[(start, start + exposure)], 100,
                start + exposure + 80.0, 1e-3, seed);
            let config = SniffConfig::default();
            let segment = |stream: &[(i64, Vec<f64>)]| {
                let mut segmenter = SniffSegmenter::new(channels.len(), config.clone(), None).unwrap();
                run(&mut segmenter, stream, 1.0)
            };
            let correct = |stream: &[(i64, Vec<f64>)], baseline: &[f64]| -> Vec<(i64, Vec<f64>)> {
                stream
                    .iter()
                    .map(|(ts, values)| {
                        (*ts, values.iter().zip(baseline).map(|(v, r0)| v / r0).collect())
                    })
                    .collect()
            };
            let raw = segment(&stream);
            prop_assert!(!raw.is_empty());
            let baseline: Vec<f64> = raw[0].channels.iter().map(|c| c.baseline).collect();
            let once = correct(&stream, &baseline);
            let corrected = segment(&once);
            let baseline_once: Vec<f64> = corrected[0].channels.iter().map(|c| c.baseline).collect();
            prop_assert!(baseline_once.iter().all(|r0| (r0 - 1.0).abs() < 1e-9), "{baseline_once:?}");
            let twice = correct(&once, &baseline_once);
            for (a, b) in once.iter().zip(&twice) {
                for (u, v) in a.1.iter().zip(&b.1) {
                    prop_assert!((u - v).abs() <= 1e-9 * u.abs());
                }
            }
            prop_assert_eq!(raw.len(), corrected.len());
            for (x, y) in raw.iter().zip(&corrected) {
                prop_assert_eq!((x.start_ts_ms, x.end_ts_ms), (y.start_ts_ms, y.end_ts_ms));
                for (u, v) in x.feature_vector().iter().zip(y.feature_vector()) {
                    prop_assert!((u - v).abs() <= 1e-7 * (1.0 + u.abs()), "{u} vs {v}");
                }
            }
        }
    }
}
