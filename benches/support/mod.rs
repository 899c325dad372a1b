//! Support shared by the benches: the allocator of the `scent` binary, the
//! base event time, a small deterministic generator, and builders of
//! plausible sensor values and readings.
//!
//! Each bench includes it with `mod support;`; it is not a bench target of
//! its own (cargo only discovers `benches/*.rs` and `benches/*/main.rs`).

// Every bench binary compiles its own copy and uses only a subset of it.
#![allow(dead_code)]

use scent_operators::model::{Reading, SensorKind};

// The allocator of the `scent` binary, so the figures are the engine's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// 2026-11-24T08:00:00Z, a production morning.
pub const BASE_MS: i64 = 1_795_514_400_000;

/// A small deterministic generator (xorshift64*), seeded with its field.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    /// Roughly normal noise: the sum of four uniforms, centred (σ ≈ 0.58).
    /// Bounded by ±2.
    pub fn noise(&mut self) -> f64 {
        (0..4)
            .map(|_| (self.next() >> 11) as f64 / (1u64 << 53) as f64)
            .sum::<f64>()
            - 2.0
    }
}

/// The values of an e-nose array of `channels` metal-oxide sensors:
/// resistance ratios R/R0 rising from 0.6 by `step` per channel, with
/// 0.4 % noise.
pub fn enose_values(rng: &mut Rng, channels: usize, step: f64) -> Vec<f64> {
    (0..channels)
        .map(|channel| (0.6 + step * channel as f64) * (1.0 + 0.004 * rng.noise()))
        .collect()
}

/// Plausible values of a sensor: 16-channel e-nose resistance ratios R/R0
/// between 0.6 and 2.4, process values near their set points, all with
/// noise.
pub fn values(rng: &mut Rng, kind: SensorKind) -> Vec<f64> {
    let scalar = |rng: &mut Rng, set_point: f64, noise: f64| vec![set_point + noise * rng.noise()];
    match kind {
        SensorKind::Enose => enose_values(rng, 16, 0.12),
        SensorKind::Temperature => scalar(rng, 92.5, 0.05),
        SensorKind::Humidity => scalar(rng, 45.0, 0.3),
        SensorKind::Pressure => scalar(rng, 101.3, 0.02),
        SensorKind::Ph => scalar(rng, 5.2, 0.01),
        SensorKind::Flow => scalar(rng, 120.0, 0.5),
    }
}

/// Second `second` of `sensor` in plant p1 on `line`, during that line's
/// batch 03 of espresso: stamped 37 ms into the second, with `seq` counting
/// from 1 at `BASE_MS`.
pub fn reading(
    line: &str,
    sensor: &str,
    kind: SensorKind,
    second: i64,
    values: Vec<f64>,
) -> Reading {
    Reading {
        plant: "p1".into(),
        line: line.into(),
        sensor: sensor.into(),
        kind,
        ts_ms: BASE_MS + second * 1_000 + 37,
        seq: second as u64 + 1,
        batch: Some(format!("B-20261124-{line}-03")),
        product: Some("espresso".into()),
        values,
    }
}
