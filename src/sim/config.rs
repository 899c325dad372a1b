//! Configuration of the plant simulator: the plant layout, the sampling
//! grid, the batch rhythm, the scheduled events and the malformed records.
//!
//! [`SimConfig::validate`] checks every field before anything is generated
//! and names the offending key in its [`SimError`]. Events given explicitly
//! are checked later, against the batch schedule, by
//! [`Plant::new`](super::Plant::new).

use super::SimError;
use scent_operators::model::SensorKind;
use serde::{Deserialize, Serialize};

/// 2026-11-24T10:00:00Z, the default start of plant time.
pub const DEFAULT_START_TS_MS: i64 = 1_795_514_400_000;

/// Earliest accepted start: 2000-01-01T00:00:00Z (the validator's range).
const MIN_TS_MS: i64 = 946_684_800_000;
/// Latest accepted end: 2100-01-01T00:00:00Z (the validator's range).
const MAX_TS_MS: i64 = 4_102_444_800_000;
/// Longest identifier the validator accepts.
const MAX_IDENTIFIER_LEN: usize = 128;

/// Everything the simulator needs; `Default` is a three-line coffee plant
/// running for one hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Seed of every random choice; the same config always yields the same
    /// records, byte for byte.
    pub seed: u64,
    /// Plant identifier written into every reading.
    pub plant: String,
    /// Number of production lines, named `L1`..`Ln`.
    pub lines: usize,
    /// e-nose arrays per line, named `enose-1`..`enose-n`.
    pub enose_per_line: usize,
    /// Channels per e-nose array (8..=32).
    pub enose_channels: usize,
    /// Process sensors per line, one of each kind listed, named
    /// `<kind>-1` (e.g. `temperature-1`). `enose` is not allowed here.
    pub process_sensors: Vec<SensorKind>,
    /// Sampling period shared by all sensors of a line, in milliseconds
    /// (100..=60000). Each sensor adds a fixed phase jitter below 50 ms.
    pub sample_interval_ms: i64,
    /// Plant time of the first sample, epoch milliseconds.
    pub start_ts_ms: i64,
    /// Plant time simulated, in milliseconds.
    pub duration_ms: i64,
    /// Length of every batch, in milliseconds (at least one minute).
    pub batch_duration_ms: i64,
    /// Pause between two batches of a line, in milliseconds; readings go on
    /// with neither batch nor product.
    pub changeover_ms: i64,
    /// How long before a batch starts its product's aroma begins to build up
    /// at the e-nose arrays (the line is primed during the changeover), in
    /// milliseconds; at most `changeover_ms`. With 0 the aroma rises after
    /// the batch start and the rolling z-score flags the transient.
    pub aroma_lead_ms: i64,
    /// Minimum plant time after the last batch end of every line, in
    /// milliseconds: a batch that would end later is not started, so
    /// downstream event-time windows close before the run ends.
    pub tail_ms: i64,
    /// Products; each line alternates them batch by batch, line `k`
    /// (0-based) starting with product `k % n`.
    pub products: Vec<String>,
    /// Scheduled anomalies with ground-truth labels.
    pub events: EventPlan,
    /// Malformed records to inject into the readings stream, spread evenly
    /// over the run and cycling through the malformed classes.
    pub malformed_count: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            plant: "p1".into(),
            lines: 3,
            enose_per_line: 2,
            enose_channels: 16,
            process_sensors: vec![
                SensorKind::Temperature,
                SensorKind::Humidity,
                SensorKind::Pressure,
                SensorKind::Ph,
                SensorKind::Flow,
            ],
            sample_interval_ms: 1_000,
            start_ts_ms: DEFAULT_START_TS_MS,
            duration_ms: 3_600_000,
            batch_duration_ms: 600_000,
            changeover_ms: 60_000,
            aroma_lead_ms: 30_000,
            tail_ms: 120_000,
            products: vec!["espresso".into(), "decaf".into()],
            events: EventPlan::default(),
            malformed_count: 0,
        }
    }
}

impl SimConfig {
    /// The default plant with `seed`, run just long enough to emit about
    /// `total_readings` valid readings (dropouts make it slightly fewer).
    ///
    /// The run always ends with at least `tail_ms` (two minutes) of plant
    /// time after the last batch end, because batches that would end later
    /// are not started.
    pub fn for_readings(total_readings: u64, seed: u64) -> SimConfig {
        SimConfig::for_readings_with(
            SimConfig {
                seed,
                ..SimConfig::default()
            },
            total_readings,
        )
    }

    /// `config` with its duration set so that it emits about
    /// `total_readings` valid readings: `lines · sensors_per_line` readings
    /// per sampling step.
    pub fn for_readings_with(config: SimConfig, total_readings: u64) -> SimConfig {
        let per_step = config.readings_per_step().max(1);
        let steps = total_readings.div_ceil(per_step).max(1);
        let duration = u128::from(steps) * config.sample_interval_ms.max(1) as u128;
        SimConfig {
            duration_ms: i64::try_from(duration).unwrap_or(i64::MAX),
            ..config
        }
    }

    /// Sensors of one line: e-nose arrays plus process sensors.
    pub fn sensors_per_line(&self) -> usize {
        self.enose_per_line + self.process_sensors.len()
    }

    /// Valid readings per sampling step over the whole plant.
    pub fn readings_per_step(&self) -> u64 {
        (self.lines * self.sensors_per_line()) as u64
    }

    /// Checks every field; the error names the offending key.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |key: &str, problem: String| Err(SimError::config(key, problem));
        check_identifier("plant", &self.plant)?;
        if !(1..=999).contains(&self.lines) {
            return bad("lines", format!("must lie in 1..=999, got {}", self.lines));
        }
        if self.enose_per_line > 99 {
            return bad(
                "enose_per_line",
                format!("must be at most 99, got {}", self.enose_per_line),
            );
        }
        if !(8..=32).contains(&self.enose_channels) {
            return bad(
                "enose_channels",
                format!("must lie in 8..=32, got {}", self.enose_channels),
            );
        }
        for (index, kind) in self.process_sensors.iter().enumerate() {
            if *kind == SensorKind::Enose {
                return bad(
                    "process_sensors",
                    "must not list `enose` (use enose_per_line)".into(),
                );
            }
            if self.process_sensors[..index].contains(kind) {
                return bad("process_sensors", format!("lists `{kind}` twice"));
            }
        }
        if self.sensors_per_line() == 0 {
            return bad(
                "process_sensors",
                "a line needs at least one sensor (with enose_per_line = 0)".into(),
            );
        }
        if !(100..=60_000).contains(&self.sample_interval_ms) {
            return bad(
                "sample_interval_ms",
                format!("must lie in 100..=60000, got {}", self.sample_interval_ms),
            );
        }
        if !(MIN_TS_MS..MAX_TS_MS).contains(&self.start_ts_ms) {
            return bad(
                "start_ts_ms",
                format!(
                    "must lie between 2000-01-01 and 2100-01-01 ({MIN_TS_MS}..{MAX_TS_MS}), got {}",
                    self.start_ts_ms
                ),
            );
        }
        if self.duration_ms <= 0 || self.duration_ms > MAX_TS_MS - self.start_ts_ms {
            return bad(
                "duration_ms",
                format!(
                    "must be positive and end before 2100-01-01, got {}",
                    self.duration_ms
                ),
            );
        }
        if !(60_000..=7 * 86_400_000).contains(&self.batch_duration_ms) {
            return bad(
                "batch_duration_ms",
                format!(
                    "must lie between one minute and one week, got {}",
                    self.batch_duration_ms
                ),
            );
        }
        if !(0..=86_400_000).contains(&self.changeover_ms) {
            return bad(
                "changeover_ms",
                format!("must lie between 0 and one day, got {}", self.changeover_ms),
            );
        }
        if !(0..=self.changeover_ms).contains(&self.aroma_lead_ms) {
            return bad(
                "aroma_lead_ms",
                format!(
                    "must lie in 0..=changeover_ms ({}), got {}",
                    self.changeover_ms, self.aroma_lead_ms
                ),
            );
        }
        if !(0..=86_400_000).contains(&self.tail_ms) {
            return bad(
                "tail_ms",
                format!("must lie between 0 and one day, got {}", self.tail_ms),
            );
        }
        if self.products.is_empty() {
            return bad("products", "must name at least one product".into());
        }
        for (index, product) in self.products.iter().enumerate() {
            check_identifier("products", product)?;
            if self.products[..index].contains(product) {
                return bad("products", format!("lists {product:?} twice"));
            }
        }
        self.events.validate()?;
        if self.malformed_count > 10_000_000 {
            return bad(
                "malformed_count",
                format!("must be at most 10000000, got {}", self.malformed_count),
            );
        }
        Ok(())
    }
}

fn check_identifier(key: &str, value: &str) -> Result<(), SimError> {
    if value.is_empty() || value.len() > MAX_IDENTIFIER_LEN {
        return Err(SimError::config(
            key,
            format!("must be 1..={MAX_IDENTIFIER_LEN} bytes long, got {value:?}"),
        ));
    }
    if value.chars().any(char::is_control) || value.contains('/') {
        return Err(SimError::config(
            key,
            format!("must not contain control characters or `/`, got {value:?}"),
        ));
    }
    Ok(())
}

/// Which anomalies the run contains.
///
/// In TOML: `events = "none"`, `[events.auto] batch_fraction = 0.25`, or
/// `[[events.explicit]] class = "stuck" line = "L2" batch = 5`.
///
/// Sensor drifts are part of the plan too: [`AutoEvents::drifting_sensors`]
/// arrays drift in an automatic plan, exactly the listed
/// [`EventClass::SensorDrift`] events in an explicit one, none with
/// [`EventPlan::None`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventPlan {
    /// A clean run: every batch is released.
    None,
    /// Events placed by the simulator (the default).
    Auto(AutoEvents),
    /// Exactly these events.
    Explicit(Vec<EventSpec>),
}

impl Default for EventPlan {
    fn default() -> Self {
        EventPlan::Auto(AutoEvents::default())
    }
}

impl EventPlan {
    fn validate(&self) -> Result<(), SimError> {
        match self {
            EventPlan::None | EventPlan::Explicit(_) => Ok(()),
            EventPlan::Auto(auto) => {
                if !(auto.batch_fraction.is_finite() && (0.0..=1.0).contains(&auto.batch_fraction))
                {
                    return Err(SimError::config(
                        "events.auto.batch_fraction",
                        format!("must lie in 0..=1, got {}", auto.batch_fraction),
                    ));
                }
                if auto.classes.is_empty() && auto.batch_fraction > 0.0 {
                    return Err(SimError::config(
                        "events.auto.classes",
                        "must name at least one class".into(),
                    ));
                }
                if auto.classes.contains(&EventClass::SensorDrift) {
                    return Err(SimError::config(
                        "events.auto.classes",
                        "must not list `sensor_drift` (persistent drifts are placed by \
                         events.auto.drifting_sensors)"
                            .into(),
                    ));
                }
                if auto.drifting_sensors > MAX_DRIFTING_SENSORS {
                    return Err(SimError::config(
                        "events.auto.drifting_sensors",
                        format!(
                            "must be at most {MAX_DRIFTING_SENSORS}, got {}",
                            auto.drifting_sensors
                        ),
                    ));
                }
                Ok(())
            }
        }
    }
}

/// Parameters of automatically placed events.
///
/// Batches are eligible unless they are the first batch of their product on
/// their line (the detector is still learning) or too short for the event.
/// On every line, an evenly spaced `batch_fraction` of the eligible batches
/// gets one event (a per-line phase offset spreads events across lines);
/// the k-th event of line `l` has class `classes[(k + l) % classes.len()]`,
/// so every line cycles through every class.
///
/// Independently of the batch events, `drifting_sensors` e-nose arrays get
/// a persistent [`EventClass::SensorDrift`]: drifts are drawn from a
/// generator of their own, so changing their number moves no other event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoEvents {
    /// Fraction of eligible batches that get an event (0..=1).
    pub batch_fraction: f64,
    /// Classes to cycle through (not `sensor_drift`, which is placed by
    /// `drifting_sensors`).
    pub classes: Vec<EventClass>,
    /// Distinct e-nose arrays whose clean-air baseline starts drifting at a
    /// seeded time in the first third of the run and drifts to its end,
    /// spread over the lines in a seeded order (at most 1000; capped at
    /// the number of arrays of the plant).
    pub drifting_sensors: usize,
    /// Contaminations covering the last 15 s of a batch (line `k % lines`
    /// gets the k-th, in the first batch from the middle of its run on
    /// without another event). The batch's last exposure cycle closes after
    /// its end event, so the decision made at the end is revised by that
    /// cycle's evidence before the batch seals: a superseded decision.
    pub late_contaminations: usize,
}

impl Default for AutoEvents {
    fn default() -> Self {
        AutoEvents {
            batch_fraction: 0.25,
            classes: EventClass::ALL.to_vec(),
            drifting_sensors: 1,
            late_contaminations: 0,
        }
    }
}

/// Most persistent sensor drifts an automatic plan may ask for.
const MAX_DRIFTING_SENSORS: usize = 1_000;

/// The classes of scheduled events (see the module docs of [`super`] for
/// their physics and expected decisions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventClass {
    /// A contaminant reaches every e-nose array of a line.
    Contamination,
    /// One sensor repeats its last values.
    Stuck,
    /// One sensor emits a few isolated spikes.
    Spike,
    /// One sensor goes silent.
    Dropout,
    /// The process temperature of a line drifts slowly.
    ProcessDrift,
    /// The clean-air baseline of one e-nose array drifts upwards from a
    /// start time to the end of the run (it needs calibration). Placed by
    /// [`AutoEvents::drifting_sensors`] or explicitly, never cycled.
    SensorDrift,
}

impl EventClass {
    /// Every class cycled through by automatic plans, in the default
    /// cycling order ([`EventClass::SensorDrift`] is placed apart).
    pub const ALL: [EventClass; 5] = [
        EventClass::Contamination,
        EventClass::Stuck,
        EventClass::Spike,
        EventClass::Dropout,
        EventClass::ProcessDrift,
    ];
}

/// One explicitly placed event. Optional fields are drawn from the seed
/// when absent, within the same ranges as automatic events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    /// What happens.
    pub class: EventClass,
    /// The line, e.g. `L2`.
    pub line: String,
    /// The batch, numbered from 1 within its line (`B-L2-0005` is 5).
    pub batch: u32,
    /// For sensor faults: the sensor, e.g. `enose-1`; for a process drift
    /// it must be the temperature sensor; for a sensor drift an e-nose
    /// array (required). Ignored for contamination.
    #[serde(default)]
    pub sensor: Option<String>,
    /// For contamination: the contaminant (`ethanol`, `mould`, `solvent`).
    #[serde(default)]
    pub contaminant: Option<String>,
    /// Start of the event after the batch start, in milliseconds (for a
    /// sensor drift: inside the batch, `0..batch_duration_ms`).
    #[serde(default)]
    pub start_offset_ms: Option<i64>,
    /// Length of the event, in milliseconds (for a process drift it runs to
    /// one minute before the batch end, and a sensor drift runs to the end
    /// of the run: ignored for both).
    #[serde(default)]
    pub duration_ms: Option<i64>,
    /// For a sensor drift: the baseline's rise in percent of the baseline
    /// per hour, in `0 < rate <= 100` (drawn in 0.6..1.2 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_pct_per_hour: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_deserialise_from_nothing() {
        SimConfig::default().validate().unwrap();
        let parsed: SimConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, SimConfig::default());
    }

    #[test]
    fn errors_name_the_key() {
        let config = SimConfig {
            enose_channels: 40,
            ..SimConfig::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("enose_channels"), "{error}");
        let config = SimConfig {
            process_sensors: vec![SensorKind::Ph, SensorKind::Ph],
            ..SimConfig::default()
        };
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("process_sensors"));
        let config = SimConfig {
            events: EventPlan::Auto(AutoEvents {
                batch_fraction: 1.5,
                ..AutoEvents::default()
            }),
            ..SimConfig::default()
        };
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("events.auto.batch_fraction"));
    }

    #[test]
    fn event_plans_parse_in_all_three_forms() {
        let none: EventPlan = serde_json::from_str("\"none\"").unwrap();
        assert_eq!(none, EventPlan::None);
        let auto: EventPlan = serde_json::from_str(r#"{"auto": {"batch_fraction": 0.5}}"#).unwrap();
        assert!(matches!(auto, EventPlan::Auto(a) if a.batch_fraction == 0.5));
        let explicit: EventPlan = serde_json::from_str(
            r#"{"explicit": [{"class": "stuck", "line": "L2", "batch": 5, "sensor": "ph-1"}]}"#,
        )
        .unwrap();
        assert!(
            matches!(explicit, EventPlan::Explicit(list) if list[0].class == EventClass::Stuck)
        );
    }

    #[test]
    fn for_readings_sizes_the_run() {
        let config = SimConfig::for_readings(100_000, 7);
        assert_eq!(config.seed, 7);
        let steps = config.duration_ms / config.sample_interval_ms;
        assert_eq!(steps as u64, 100_000u64.div_ceil(21));
    }
}
