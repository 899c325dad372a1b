//! Univariate control charts of `scent_operators::spc`: values per second
//! through each chart alone, and observations per second through an
//! `SpcMonitor` on a 16-channel e-nose stream.
//!
//! Every value of every channel of every sensor passes through these
//! charts, so their cost per value bounds how many channels one worker can
//! watch. Each chart is O(1) per value with a few floating-point
//! operations; the z-score also slides a window. The input is in-control
//! N(0, 1) noise from a fixed pool, so alarms are rare and the common
//! path is measured.
//!
//! * `chart/<name>`: one value through one chart (throughput in values):
//!   `shewhart` (rule 1 alone), `shewhart_we` (rules 1-4), `ewma`
//!   (λ = 0.2, exact limits), `cusum` (k = 0.5, h = 5), `zscore` (window
//!   120, outliers kept out).
//! * `monitor/enose16_default` and `monitor/enose16_all`: one 16-channel
//!   observation through `SpcMonitor::observe` with the default charts
//!   (Shewhart rule 1, EWMA, CUSUM), and with every chart and rule on
//!   (Western Electric 2-4 and the z-score added), limits learned first.
//!   Throughput is in observations; multiply by 16 for values.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use scent_operators::spc::{
    ControlChart, ControlLimits, CusumChart, CusumConfig, EwmaChart, EwmaConfig, ShewhartChart,
    ShewhartConfig, SpcConfig, SpcMonitor, WindowedZScore, ZScoreConfig,
};
use std::hint::black_box;

/// Distinct values cycled through.
const POOL: usize = 4_096;

/// N(0, 1) noise: SplitMix64 and Box-Muller, deterministic.
fn normal_pool(seed: u64, len: usize) -> Vec<f64> {
    let mut state = seed;
    let mut uniform = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (((z ^ (z >> 31)) >> 11) + 1) as f64 / (1u64 << 53) as f64
    };
    (0..len)
        .map(|_| {
            let radius = (-2.0 * uniform().ln()).sqrt();
            radius * (2.0 * std::f64::consts::PI * uniform()).cos()
        })
        .collect()
}

fn bench_chart(c: &mut Criterion, name: &str, chart: &mut dyn ControlChart, values: &[f64]) {
    let mut group = c.benchmark_group("spc/chart");
    group.throughput(Throughput::Elements(1));
    let mut cycle = values.iter().cycle();
    group.bench_function(name, |b| {
        b.iter(|| chart.observe(black_box(*cycle.next().expect("a non-empty pool"))))
    });
    group.finish();
}

fn charts(c: &mut Criterion) {
    let values = normal_pool(0x5ce7_0051, POOL);
    let limits = ControlLimits::new(0.0, 1.0).expect("valid limits");
    let config = SpcConfig::default();
    let mut shewhart = ShewhartChart::new(limits, &ShewhartConfig::default());
    bench_chart(c, "shewhart", &mut shewhart, &values);
    let mut shewhart_we = ShewhartChart::new(
        limits,
        &ShewhartConfig {
            western_electric: true,
            ..ShewhartConfig::default()
        },
    );
    bench_chart(c, "shewhart_we", &mut shewhart_we, &values);
    let mut ewma = EwmaChart::new(limits, &EwmaConfig::default());
    bench_chart(c, "ewma", &mut ewma, &values);
    let mut cusum = CusumChart::new(limits, &CusumConfig::default());
    bench_chart(c, "cusum", &mut cusum, &values);
    let mut zscore = WindowedZScore::new(
        &ZScoreConfig {
            enabled: true,
            ..ZScoreConfig::default()
        },
        config.sigma_floor(),
    );
    bench_chart(c, "zscore", &mut zscore, &values);
}

fn monitor(c: &mut Criterion) {
    const CHANNELS: usize = 16;
    let noise = normal_pool(0x5ce7_0052, POOL * CHANNELS);
    // Resistance ratios from 0.6 to 2.4 with 0.4 % noise, as in the
    // e-nose benches.
    let rows: Vec<Vec<f64>> = noise
        .chunks(CHANNELS)
        .map(|row| {
            row.iter()
                .enumerate()
                .map(|(channel, z)| {
                    let level = 0.6 + 0.1125 * channel as f64;
                    level * (1.0 + 0.004 * z)
                })
                .collect()
        })
        .collect();
    let all = SpcConfig {
        shewhart: ShewhartConfig {
            western_electric: true,
            ..ShewhartConfig::default()
        },
        zscore: ZScoreConfig {
            enabled: true,
            ..ZScoreConfig::default()
        },
        ..SpcConfig::default()
    };
    let mut group = c.benchmark_group("spc/monitor");
    group.throughput(Throughput::Elements(1));
    for (name, config) in [
        ("enose16_default", SpcConfig::default()),
        ("enose16_all", all),
    ] {
        let mut monitor = SpcMonitor::new(config, CHANNELS).expect("a valid configuration");
        let mut alarms = Vec::new();
        // Learn the limits and fill the z-score windows first.
        for row in rows.iter().take(1_000) {
            monitor.observe(row, &mut alarms).expect("valid rows");
        }
        assert!(!monitor.is_learning());
        let mut cycle = rows.iter().cycle();
        group.bench_function(name, |b| {
            b.iter(|| {
                alarms.clear();
                monitor
                    .observe(
                        black_box(cycle.next().expect("a non-empty pool")),
                        &mut alarms,
                    )
                    .expect("valid rows")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, charts, monitor);
criterion_main!(benches);
