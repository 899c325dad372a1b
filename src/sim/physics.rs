//! Sensor physics: per-sensor parameters drawn from the seed, and the
//! measurement equations (documented in the [`super`] module docs).
//!
//! Everything here is a pure function of its arguments. Randomness comes in
//! through ChaCha8 generators derived from the seed, a purpose tag and a
//! stream number (line and sensor), so every line and every sensor has its
//! own independent stream. Measurement noise is drawn at a fixed word
//! position per sample ([`noise_rng_at`]), which makes any reading
//! computable on its own: a line generated alone equals the same line in a
//! merged run, and the ground truth can quote a reading without generating
//! the stream up to it.

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use scent_operators::model::SensorKind;

/// Purpose tags: one key per purpose, so that no two purposes share a stream.
pub(crate) const TAG_NOISE: u64 = u64::from_le_bytes(*b"noise\0\0\0");
pub(crate) const TAG_SENSOR: u64 = u64::from_le_bytes(*b"sensor\0\0");
pub(crate) const TAG_LINE: u64 = u64::from_le_bytes(*b"line\0\0\0\0");
pub(crate) const TAG_SCHEDULE: u64 = u64::from_le_bytes(*b"schedule");
pub(crate) const TAG_PRODUCT: u64 = u64::from_le_bytes(*b"product\0");
pub(crate) const TAG_CONTAMINANT: u64 = u64::from_le_bytes(*b"contamin");
pub(crate) const TAG_SENSOR_DRIFT: u64 = u64::from_le_bytes(*b"sensdrft");
pub(crate) const TAG_LATE_CONTAMINATION: u64 = u64::from_le_bytes(*b"latecont");

/// Relative noise of an e-nose channel (σ = 0.5 % of the level).
pub(crate) const ENOSE_NOISE_RELATIVE: f64 = 0.005;
/// Noise is Gaussian truncated at this many σ.
pub(crate) const NOISE_TRUNCATION: f64 = 4.0;
/// Time constant of the aroma rise and decay at the arrays (about 10 s to
/// settle), in milliseconds.
pub(crate) const AROMA_TAU_MS: f64 = 2_500.0;
/// Time constant of the temperature change between two setpoints.
pub(crate) const TEMPERATURE_TAU_MS: f64 = 10_000.0;
/// Reference conditions of the cross-sensitivity coefficients.
pub(crate) const REFERENCE_TEMPERATURE_C: f64 = 90.0;
pub(crate) const REFERENCE_HUMIDITY_RH: f64 = 45.0;
/// Amplitude and nominal period of the temperature wander.
pub(crate) const WANDER_AMPLITUDE_C: f64 = 0.3;
pub(crate) const WANDER_PERIOD_MS: f64 = 1_200_000.0;
/// Peak offset of a process drift.
pub(crate) const DRIFT_PEAK_C: f64 = 0.8;
/// Range of a sensor drift's rate, in percent of the baseline per hour
/// (faster drifts make the moving-window fingerprint flag clean batches on
/// the drifting array some hours in; see the module docs of [`super`]).
pub(crate) const SENSOR_DRIFT_RATE_PCT_PER_HOUR: std::ops::Range<f64> = 0.6..1.2;
/// Accumulated sensor drift, in percent of the baseline, at which a
/// calibration becomes due.
pub(crate) const CALIBRATION_DUE_PCT: f64 = 1.0;
/// Onset (and offset) ramp of a contamination.
pub(crate) const CONTAMINATION_RAMP_MS: f64 = 2_000.0;
/// The contaminant library.
pub(crate) const CONTAMINANTS: [&str; 3] = ["ethanol", "mould", "solvent"];

/// SplitMix64 finaliser: a well-mixed 64-bit value from `seed` and `tag`.
pub(crate) fn derive_seed(seed: u64, tag: u64) -> u64 {
    let mut z = seed ^ tag.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a: a stable hash of a name (products, contaminants).
pub(crate) fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The generator for one purpose and one stream.
pub(crate) fn rng_for(seed: u64, tag: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, tag));
    rng.set_stream(stream);
    rng
}

/// Stream number of a sensor: its line in the high bits.
pub(crate) fn sensor_stream(line: usize, sensor: usize) -> u64 {
    ((line as u64) << 16) | sensor as u64
}

/// The noise generator of a sensor, positioned at the start of `step`.
pub(crate) fn noise_rng_at(noise_key: [u8; 32], sensor: &SensorModel, step: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::from_seed(noise_key);
    rng.set_stream(sensor.noise_stream);
    rng.set_word_pos(u128::from(step) * u128::from(sensor.words_per_sample));
    rng
}

/// Moves a sequentially used noise generator to the start of `step`: the
/// same position [`noise_rng_at`] would give, so sequential and random
/// access draw the same numbers. Skipping forward within a few blocks is
/// cheaper than reseeking.
pub(crate) fn seek_noise(rng: &mut ChaCha8Rng, sensor: &SensorModel, step: u64) {
    let target = u128::from(step) * u128::from(sensor.words_per_sample);
    let position = rng.get_word_pos();
    if position > target || target - position > 64 {
        rng.set_word_pos(target);
    } else {
        for _ in position..target {
            rng.next_u32();
        }
    }
}

/// A standard normal draw truncated at ±[`NOISE_TRUNCATION`].
///
/// Truncation removes 6e-5 of the mass and guarantees that a rolling
/// z-score at a limit of 6 never fires on noise alone: every alarm of the
/// foundation detector on a clean stream is caused by a labelled event.
pub(crate) fn truncated_normal(rng: &mut ChaCha8Rng) -> f64 {
    loop {
        let z: f64 = StandardNormal.sample(rng);
        if z.abs() <= NOISE_TRUNCATION {
            return z;
        }
    }
}

/// A product: its temperature setpoint and its aroma fingerprint.
#[derive(Debug, Clone)]
pub(crate) struct ProductModel {
    pub name: String,
    /// Process temperature setpoint: 92 °C for the first product, 4 °C
    /// lower for each further one (espresso 92, decaf 88).
    pub setpoint_c: f64,
    /// Response per channel, 0.3..2.0, derived from the seed and the name.
    pub fingerprint: Vec<f64>,
}

impl ProductModel {
    pub fn new(seed: u64, index: usize, name: &str, channels: usize) -> ProductModel {
        let mut rng = rng_for(seed ^ fnv1a(name), TAG_PRODUCT, 0);
        ProductModel {
            name: name.to_owned(),
            setpoint_c: (92.0 - 4.0 * index as f64).max(20.0),
            fingerprint: (0..channels).map(|_| rng.random_range(0.3..2.0)).collect(),
        }
    }
}

/// A contaminant: a fixed relative response per channel.
#[derive(Debug, Clone)]
pub(crate) struct Contaminant {
    /// Relative rise per unit magnitude: 0.6..1.0 on 4..=6 responding
    /// channels, below 0.03 elsewhere.
    pub weights: Vec<f64>,
}

impl Contaminant {
    pub fn new(seed: u64, name: &'static str, channels: usize) -> Contaminant {
        let mut rng = rng_for(seed ^ fnv1a(name), TAG_CONTAMINANT, 0);
        let mut weights: Vec<f64> = (0..channels).map(|_| rng.random_range(0.0..0.03)).collect();
        let responding = rng.random_range(4..=6usize).min(channels);
        for channel in rand::seq::index::sample(&mut rng, channels, responding) {
            weights[channel] = rng.random_range(0.6..1.0);
        }
        Contaminant { weights }
    }

    /// Channels with a clear response.
    #[cfg(test)]
    pub fn responding_channels(&self) -> impl Iterator<Item = usize> + '_ {
        self.weights
            .iter()
            .enumerate()
            .filter(|(_, &weight)| weight >= 0.6)
            .map(|(channel, _)| channel)
    }
}

/// One channel of an e-nose array.
#[derive(Debug, Clone)]
pub(crate) struct ChannelModel {
    /// Clean-air level, 0.8..1.2.
    pub baseline: f64,
    /// Relative drift per hour of plant time, ±(0.02..0.08) %.
    pub drift_per_hour: f64,
    /// Relative change per °C, 0.1..0.3 %.
    pub temperature_coeff: f64,
    /// Relative change per %RH, 0.05..0.2 %.
    pub humidity_coeff: f64,
}

/// One sensor: identity, sampling phase and physical parameters.
#[derive(Debug, Clone)]
pub(crate) struct SensorModel {
    pub name: String,
    pub kind: SensorKind,
    /// Fixed phase of the sensor on the line's sampling grid, 0..50 ms.
    pub jitter_ms: i64,
    pub noise_stream: u64,
    /// Noise words reserved per sample (draws beyond it are rare and merely
    /// reuse the next sample's words).
    pub words_per_sample: u32,
    /// e-nose channels; empty for process sensors.
    pub channels: Vec<ChannelModel>,
    /// e-nose response per product and channel: the product fingerprint
    /// times a per-channel gain of 0.9..1.1.
    pub responses: Vec<Vec<f64>>,
}

impl SensorModel {
    pub fn new(
        seed: u64,
        line: usize,
        index: usize,
        kind: SensorKind,
        name: String,
        channels: usize,
        products: &[ProductModel],
    ) -> SensorModel {
        let stream = sensor_stream(line, index);
        let mut rng = rng_for(seed, TAG_SENSOR, stream);
        let jitter_ms = rng.random_range(0..50);
        if kind != SensorKind::Enose {
            return SensorModel {
                name,
                kind,
                jitter_ms,
                noise_stream: stream,
                words_per_sample: 4,
                channels: Vec::new(),
                responses: Vec::new(),
            };
        }
        let channel_models: Vec<ChannelModel> = (0..channels)
            .map(|_| {
                let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
                ChannelModel {
                    baseline: rng.random_range(0.8..1.2),
                    drift_per_hour: sign * rng.random_range(0.0002..0.0008),
                    temperature_coeff: rng.random_range(0.001..0.003),
                    humidity_coeff: rng.random_range(0.0005..0.002),
                }
            })
            .collect();
        let gains: Vec<f64> = (0..channels).map(|_| rng.random_range(0.9..1.1)).collect();
        let responses = products
            .iter()
            .map(|product| {
                product
                    .fingerprint
                    .iter()
                    .zip(&gains)
                    .map(|(response, gain)| response * gain)
                    .collect()
            })
            .collect();
        SensorModel {
            name,
            kind,
            jitter_ms,
            noise_stream: stream,
            words_per_sample: 2 * channels as u32 + 4,
            channels: channel_models,
            responses,
        }
    }
}

/// The slowly varying conditions of one line, drawn from the seed.
#[derive(Debug, Clone)]
pub(crate) struct LineClimate {
    /// Offset of the line's temperature from the product setpoint, ±0.2 °C.
    pub temperature_offset_c: f64,
    /// Direction of the temperature wander, ±1.
    pub wander_sign: f64,
    pub humidity_rh: f64,
    pub pressure_kpa: f64,
    pub ph: f64,
    pub flow_lpm: f64,
}

impl LineClimate {
    pub fn new(seed: u64, line: usize) -> LineClimate {
        let mut rng = rng_for(seed, TAG_LINE, line as u64);
        LineClimate {
            temperature_offset_c: rng.random_range(-0.2..0.2),
            wander_sign: if rng.random::<bool>() { 1.0 } else { -1.0 },
            humidity_rh: 45.0 + rng.random_range(-2.0..2.0),
            pressure_kpa: 101.3 + rng.random_range(-0.3..0.3),
            ph: 5.2 + rng.random_range(-0.05..0.05),
            flow_lpm: 12.0 + rng.random_range(-0.5..0.5),
        }
    }
}

/// What the sensors of a line are exposed to at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Conditions {
    /// Aroma exposure: up to two `(product, level 0..1)` pairs (the decaying
    /// previous product and the rising or steady current one).
    pub aroma: [Option<(usize, f64)>; 2],
    /// True process temperature, °C.
    pub temperature_c: f64,
    /// True relative humidity, %RH.
    pub humidity_rh: f64,
    /// Contamination: `(contaminant, magnitude × onset ramp)`.
    pub contamination: Option<(usize, f64)>,
}

/// Aroma level `t_ms` after the rise began: `1 - exp(-t/τ)`.
pub(crate) fn aroma_rise(t_ms: f64) -> f64 {
    if t_ms <= 0.0 {
        0.0
    } else if t_ms > 40.0 * AROMA_TAU_MS {
        1.0
    } else {
        1.0 - (-t_ms / AROMA_TAU_MS).exp()
    }
}

/// Aroma level `t_ms` after the supply stopped, from `level`.
pub(crate) fn aroma_decay(level: f64, t_ms: f64) -> f64 {
    if t_ms > 40.0 * AROMA_TAU_MS {
        0.0
    } else {
        level * (-t_ms.max(0.0) / AROMA_TAU_MS).exp()
    }
}

/// Temperature wander `t_ms` into a batch of `batch_ms`: a whole number of
/// half sine waves (nearest to the 20 min period, at least one), so it is
/// zero at both ends of every batch and batches of one product look alike.
pub(crate) fn wander(t_ms: f64, batch_ms: f64, sign: f64) -> f64 {
    let half_waves = (2.0 * batch_ms / WANDER_PERIOD_MS).round().max(1.0);
    sign * WANDER_AMPLITUDE_C * (std::f64::consts::PI * half_waves * t_ms / batch_ms).sin()
}

/// Process drift offset: a triangle rising to [`DRIFT_PEAK_C`] at the middle
/// of `[start, end)` and back to zero at its end.
pub(crate) fn drift_offset(ts_ms: i64, start_ms: i64, end_ms: i64) -> f64 {
    if ts_ms < start_ms || ts_ms >= end_ms {
        return 0.0;
    }
    let half = (end_ms - start_ms) as f64 / 2.0;
    let from_middle = (ts_ms - start_ms) as f64 - half;
    DRIFT_PEAK_C * (1.0 - from_middle.abs() / half)
}

/// Accumulated baseline drift, as a fraction of the baseline, of an array
/// drifting by `rate_pct_per_hour` since `start_ms`: 0 before the start,
/// then linear in the time since.
pub(crate) fn sensor_drift_fraction(ts_ms: i64, start_ms: i64, rate_pct_per_hour: f64) -> f64 {
    if ts_ms <= start_ms {
        return 0.0;
    }
    rate_pct_per_hour / 100.0 * (ts_ms - start_ms) as f64 / 3_600_000.0
}

/// Contamination intensity in `[start, end)`: ramps of
/// [`CONTAMINATION_RAMP_MS`] at both ends, 1 in between.
pub(crate) fn contamination_ramp(ts_ms: i64, start_ms: i64, end_ms: i64) -> f64 {
    if ts_ms < start_ms || ts_ms >= end_ms {
        return 0.0;
    }
    let on = (ts_ms - start_ms) as f64 / CONTAMINATION_RAMP_MS;
    let off = (end_ms - ts_ms) as f64 / CONTAMINATION_RAMP_MS;
    on.min(off).min(1.0)
}

/// Noise σ of a process sensor, in its unit.
pub(crate) fn noise_sigma(kind: SensorKind) -> f64 {
    match kind {
        SensorKind::Enose => ENOSE_NOISE_RELATIVE,
        SensorKind::Temperature => 0.05,
        SensorKind::Humidity => 0.3,
        SensorKind::Pressure => 0.05,
        SensorKind::Ph => 0.01,
        SensorKind::Flow => 0.05,
    }
}

/// Physical range of a kind (the validator's defaults).
pub(crate) fn physical_range(kind: SensorKind) -> (f64, f64) {
    match kind {
        SensorKind::Enose => (1e-6, 1.0e6),
        SensorKind::Temperature => (-50.0, 400.0),
        SensorKind::Humidity => (0.0, 100.0),
        SensorKind::Pressure => (0.0, 10_000.0),
        SensorKind::Ph => (0.0, 14.0),
        SensorKind::Flow => (0.0, 100_000.0),
    }
}

/// Resolution of the gateway, as a power of ten.
fn scale(kind: SensorKind) -> f64 {
    match kind {
        SensorKind::Enose => 1e5,
        SensorKind::Humidity => 1e2,
        SensorKind::Temperature | SensorKind::Pressure | SensorKind::Ph | SensorKind::Flow => 1e3,
    }
}

/// Clamps to the physical range and rounds to the gateway's resolution
/// (half to even).
fn quantise(kind: SensorKind, value: f64) -> f64 {
    let (low, high) = physical_range(kind);
    let scale = scale(kind);
    (round_half_even(value.clamp(low, high) * scale) / scale).clamp(low, high)
}

/// Rounds to the nearest integer, ties to even, for |x| < 2^51: adding and
/// subtracting 1.5·2^52 leaves no fraction bits. Exact IEEE arithmetic, so
/// the same on every platform, and much cheaper than a libm call.
fn round_half_even(x: f64) -> f64 {
    const MAGIC: f64 = 6_755_399_441_055_744.0;
    if x.abs() < 2_251_799_813_685_248.0 {
        (x + MAGIC) - MAGIC
    } else {
        x
    }
}

/// Appends the values of an e-nose array to `out`, before spikes and
/// [`finish`].
///
/// `x_c = L_c · (1 + m·w_c·r(t)) · (1 + 0.005·ε_c)` with
/// `L_c = (b_c·(1 + d_c·h + s) + Σ_p a_p(t)·R_{p,c}) · (1 + α_c·(T - 90) + β_c·(H - 45))`,
/// where `s` is the array's `sensor_drift`: its accumulated baseline drift
/// as a fraction of the baseline (0 unless a sensor drift is under way).
pub(crate) fn enose_values(
    sensor: &SensorModel,
    conditions: &Conditions,
    hours: f64,
    sensor_drift: f64,
    contaminants: &[Contaminant],
    rng: &mut ChaCha8Rng,
    out: &mut Vec<f64>,
) {
    let delta_t = conditions.temperature_c - REFERENCE_TEMPERATURE_C;
    let delta_h = conditions.humidity_rh - REFERENCE_HUMIDITY_RH;
    let contamination = conditions
        .contamination
        .and_then(|(index, intensity)| Some((contaminants.get(index)?, intensity)));
    for (channel, model) in sensor.channels.iter().enumerate() {
        let mut level = model.baseline * (1.0 + model.drift_per_hour * hours + sensor_drift);
        for (product, exposure) in conditions.aroma.iter().flatten() {
            level += exposure * sensor.responses[*product][channel];
        }
        level *= 1.0 + model.temperature_coeff * delta_t + model.humidity_coeff * delta_h;
        if let Some((contaminant, intensity)) = contamination {
            level *= 1.0 + intensity * contaminant.weights[channel];
        }
        out.push(level * (1.0 + ENOSE_NOISE_RELATIVE * truncated_normal(rng)));
    }
}

/// The value of a process sensor: true value plus noise, before spikes.
pub(crate) fn scalar_value(
    kind: SensorKind,
    conditions: &Conditions,
    climate: &LineClimate,
    rng: &mut ChaCha8Rng,
) -> f64 {
    let truth = match kind {
        SensorKind::Temperature => conditions.temperature_c,
        SensorKind::Humidity => conditions.humidity_rh,
        SensorKind::Pressure => climate.pressure_kpa,
        SensorKind::Ph => climate.ph,
        SensorKind::Flow => climate.flow_lpm,
        SensorKind::Enose => 1.0,
    };
    truth + noise_sigma(kind) * truncated_normal(rng)
}

/// Finishes a value: clamps and rounds it like the gateway does.
pub(crate) fn finish(kind: SensorKind, value: f64) -> f64 {
    quantise(kind, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_access_noise_equals_sequential_noise() {
        let products = [ProductModel::new(1, 0, "espresso", 16)];
        let sensor = SensorModel::new(1, 0, 0, SensorKind::Enose, "enose-1".into(), 16, &products);
        let key = [7u8; 32];
        let mut sequential = noise_rng_at(key, &sensor, 0);
        for step in 0..200u64 {
            // Skip some steps, as a dropout would.
            if step % 17 == 3 {
                continue;
            }
            seek_noise(&mut sequential, &sensor, step);
            let mut direct = noise_rng_at(key, &sensor, step);
            for _ in 0..16 {
                assert_eq!(
                    truncated_normal(&mut sequential),
                    truncated_normal(&mut direct)
                );
            }
        }
    }

    #[test]
    fn shapes_are_bounded_and_continuous_at_their_ends() {
        assert_eq!(aroma_rise(0.0), 0.0);
        assert!(aroma_rise(10_000.0) > 0.98);
        assert_eq!(aroma_rise(1e9), 1.0);
        assert!(aroma_decay(1.0, 10_000.0) < 0.02);
        for batch_ms in [60_000.0, 600_000.0, 1_000_000.0, 3_600_000.0] {
            assert!(wander(0.0, batch_ms, 1.0).abs() < 1e-12);
            assert!(wander(batch_ms, batch_ms, 1.0).abs() < 1e-9);
            assert!(wander(batch_ms / 3.0, batch_ms, -1.0).abs() <= WANDER_AMPLITUDE_C);
        }
        assert_eq!(drift_offset(100, 100, 300), 0.0);
        assert!((drift_offset(200, 100, 300) - DRIFT_PEAK_C).abs() < 1e-12);
        assert_eq!(contamination_ramp(10_000, 0, 60_000), 1.0);
        assert_eq!(contamination_ramp(1_000, 0, 60_000), 0.5);
    }

    #[test]
    fn rounding_is_half_even_and_exact() {
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(3.5), 4.0);
        assert_eq!(round_half_even(-1.4), -1.0);
        assert_eq!(round_half_even(123_456.500_1), 123_457.0);
        assert_eq!(quantise(SensorKind::Enose, 1.234_567_8), 1.234_57);
        assert_eq!(quantise(SensorKind::Humidity, 180.0), 100.0);
        assert!(quantise(SensorKind::Enose, -3.0) > 0.0);
    }

    #[test]
    fn contaminants_respond_clearly_on_four_or_more_channels() {
        for name in CONTAMINANTS {
            let contaminant = Contaminant::new(3, name, 8);
            assert!(contaminant.responding_channels().count() >= 4, "{name}");
        }
    }
}
