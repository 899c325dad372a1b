//! Product fingerprints: a PCA model of each product as one e-nose array
//! smells it, cosine similarity to it, multivariate control limits around
//! it, and the nearest contaminant of a library when a cycle leaves it.
//!
//! # Model
//!
//! A [`FingerprintModel`] belongs to one array (`line/sensor`) and one
//! product: arrays differ in baseline and gain, so a fingerprint does not
//! transfer between them without calibration. It is fitted on the
//! [`Cycle`]s of reference batches (see `dataflows::training`):
//!
//! * **centroid** `c`: the mean cycle vector, in raw units: the fingerprint
//!   an operator sees;
//! * a [`PcaModel`] of the cycles in log space, `y = ln x`: metal-oxide
//!   responses scale multiplicatively with temperature, humidity, gain and
//!   contamination, and the logarithm makes those effects additive, so one
//!   linear model covers them;
//! * limits: Hotelling's T² and SPE at false-alarm rate `alpha`
//!   ([`PcaModel::t2_limit`], [`PcaModel::spe_limit`]) times
//!   `limit_margin`, and a similarity floor
//!   `s_min = 1 − similarity_margin · (1 − min_ref cos(x, c))`.
//!
//! # Scoring a cycle
//!
//! ```text
//! similarity  cos(x, c) = x·c / (|x| |c|)
//! T², SPE     of ln x through the model (with per-channel contributions)
//! alarm       T² > T²_lim  or  SPE > SPE_lim  or  cos < s_min
//! match       argmax_k cos(ln x − ȳ, ln(1 + s_k)) over the library, if ≥ min_match
//! ```
//!
//! The channels named with an alarm are those whose log response moved
//! furthest from the reference mean in reference standard deviations: what
//! an engineer checks first. (The T² and SPE decompositions of
//! [`PcaModel::t2_contributions`] spread a shift over correlated channels.)
//!
//! A contaminant signature `s_k` is the relative response of each channel
//! to the contaminant (0.3 = +30 %), as a lab measures it by spiking a
//! reference sample. The deviation of a contaminated cycle from the
//! product's mean log response is `ln(1 + m·s_k)`, nearly proportional to
//! `ln(1 + s_k)` for any magnitude `m`, so the cosine identifies the
//! contaminant whatever its concentration.
//!
//! # Cost
//!
//! Fitting: one PCA of `n` reference cycles of `p` channels, `O(n p² + p³)`.
//! Scoring: `O(p k + p · library)` per cycle, a few microseconds for 16
//! channels. A model is `O(p k)` numbers.

use crate::event_clock::Epoch;
use crate::exposure_cycles::Cycle;
use crate::model::{total_cmp_values, total_order_from_ord, Anomaly, AnomalyRule, SensorKind};
use crate::pca::{dot, Components, PcaConfig, PcaError, PcaModel};
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why a fingerprint cannot be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FingerprintError {
    /// Too few reference cycles.
    #[error(
        "fingerprint of {product} on {line}/{sensor} needs {needed} reference cycles, has {got}"
    )]
    TooFewCycles {
        /// The line.
        line: String,
        /// The array.
        sensor: String,
        /// The product.
        product: String,
        /// Cycles needed.
        needed: usize,
        /// Cycles given.
        got: usize,
    },
    /// A value is not positive (the log model needs positive responses).
    #[error("reference cycle at {start_ms} has a non-positive value in channel {channel}")]
    NonPositive {
        /// Window start of the cycle.
        start_ms: i64,
        /// The channel.
        channel: usize,
    },
    /// Too many reference cycles lie off the rest: the reference batch was
    /// disturbed for too long to stand for the product.
    #[error("fingerprint of {product} on {line}/{sensor}: {trimmed} of {cycles} reference cycles are outliers")]
    DisturbedReference {
        /// The line.
        line: String,
        /// The array.
        sensor: String,
        /// The product.
        product: String,
        /// Cycles trimmed.
        trimmed: usize,
        /// Cycles given.
        cycles: usize,
    },
    /// The PCA could not be fitted.
    #[error(transparent)]
    Pca(#[from] PcaError),
}

/// A contaminant of the library: its relative response per channel.
///
/// Signatures come from the configuration (`contaminants`, measured in a
/// lab) or are learned from a confirmed contamination
/// ([`crate::contaminant_library`]). Ordered by name, then response (with
/// `f64::total_cmp`): the library is a differential collection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContaminantSignature {
    /// Name reported in matches, e.g. `ethanol`.
    pub name: String,
    /// Relative response per channel (0.3 = the channel reads 30 % higher).
    pub response: Vec<f64>,
}

impl ContaminantSignature {
    /// Checks that the signature can be matched: a name without `/`, and responses that
    /// are finite, above −1 (a reading cannot fall below zero) and not all
    /// zero (a pattern with no direction matches nothing).
    pub fn check(&self) -> Result<(), String> {
        check_contaminant_name(&self.name)?;
        if self.response.is_empty() {
            return Err(format!("contaminant {:?} has no response", self.name));
        }
        if self.response.iter().any(|r| !r.is_finite() || *r <= -1.0) {
            return Err(format!(
                "contaminant {:?}: response values must be finite and > -1",
                self.name
            ));
        }
        if self.response.iter().all(|r| *r == 0.0) {
            return Err(format!(
                "contaminant {:?}: a response of zeros matches nothing",
                self.name
            ));
        }
        Ok(())
    }

    /// Content hash of the signature: its version on `scent.models` and in
    /// the verdicts whose findings it named.
    pub fn version(&self) -> String {
        let content = serde_json::to_vec(self).expect("a signature always serialises");
        hex::encode(&Sha256::digest(content)[..8])
    }

    /// How verdicts cite the signature: `contaminant:<name>:<version>`.
    pub fn reference(&self) -> String {
        format!("contaminant:{}:{}", self.name, self.version())
    }

    /// The signature in log space, `ln(1 + s)`: what a contaminated cycle's
    /// log deviation is proportional to.
    pub fn pattern(&self) -> Vec<f64> {
        self.response.iter().map(|r| r.ln_1p()).collect()
    }
}

total_order_from_ord!(ContaminantSignature);
impl Ord for ContaminantSignature {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name
            .cmp(&other.name)
            .then_with(|| total_cmp_values(&self.response, &other.response))
    }
}

/// Checks a contaminant's name: not blank, and without `/` (the name ends
/// the model key `contaminant/<name>`).
pub fn check_contaminant_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("a contaminant needs a name".into());
    }
    if name.contains('/') {
        return Err(format!(
            "contaminant name {name:?}: '/' is not allowed (the name ends the model key contaminant/<name>)"
        ));
    }
    Ok(())
}

/// Hashes what `Eq` compares: equal responses under `f64::total_cmp` have
/// equal bits.
impl std::hash::Hash for ContaminantSignature {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        for response in &self.response {
            response.to_bits().hash(state);
        }
    }
}

/// Whether match `a` (contaminant, cosine) explains a deviation better than
/// `b`: the higher cosine, and on a tie the name that sorts first, so the
/// choice never depends on the library's order.
pub fn better_match(a: (&str, f64), b: (&str, f64)) -> bool {
    a.1.total_cmp(&b.1).then_with(|| b.0.cmp(a.0)).is_gt()
}

/// The contaminant of `library` whose pattern is nearest to `deviation`
/// (a cycle's log deviation, [`FingerprintModel::deviation`]), if its
/// cosine reaches `min_match`. Signatures of another channel count are
/// skipped.
pub fn nearest_contaminant<'a>(
    deviation: &[f64],
    library: impl IntoIterator<Item = &'a ContaminantSignature>,
    min_match: f64,
) -> Option<(String, f64)> {
    let mut best: Option<(&str, f64)> = None;
    for signature in library {
        if signature.response.len() != deviation.len() {
            continue;
        }
        let cos = cosine(deviation, &signature.pattern());
        if cos >= min_match && best.is_none_or(|b| better_match((&signature.name, cos), b)) {
            best = Some((&signature.name, cos));
        }
    }
    best.map(|(name, cos)| (name.to_owned(), cos))
}

/// Parameters of fingerprint fitting and scoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FingerprintConfig {
    /// Principal components of the log-space model.
    pub pca: PcaConfig,
    /// False-alarm rate of the T² and SPE limits per cycle.
    pub alpha: f64,
    /// Factor applied to the theoretical T² and SPE limits. A reference of
    /// one batch (about 60 cycles) shows the noise of a cycle but not the
    /// spread between batches that stays within specification: process
    /// temperature and humidity moving within their tolerances shift every
    /// metal-oxide channel by tenths of a percent. With the default 4, no
    /// clean or process-drift batch of the simulated plant is held over
    /// 4 × 13 hours (`scent eval sim`), while contaminations exceed the
    /// limits a hundredfold.
    pub limit_margin: f64,
    /// How far below the worst reference similarity a cycle may fall, as a
    /// multiple of `1 − worst`.
    pub similarity_margin: f64,
    /// Reference cycles a model needs (after trimming).
    pub min_reference_cycles: usize,
    /// Reference cycles with a channel further than this many robust
    /// standard deviations (1.4826 · MAD) from the channel's median log
    /// response are left out of the fit.
    pub trim_robust_z: f64,
    /// Largest share of reference cycles that may be trimmed; above it the
    /// fit fails. The trimming is centred on the median, so it can only
    /// tell the disturbed cycles apart while they are a minority.
    pub max_trimmed_share: f64,
    /// Cosine between a deviation and a signature that names the contaminant.
    pub min_match: f64,
    /// The contaminant library.
    pub contaminants: Vec<ContaminantSignature>,
}

impl Default for FingerprintConfig {
    fn default() -> Self {
        FingerprintConfig {
            pca: PcaConfig {
                components: Components::VarianceExplained(0.8),
                standardise: true,
            },
            alpha: 0.001,
            limit_margin: 4.0,
            similarity_margin: 4.0,
            min_reference_cycles: 20,
            trim_robust_z: 8.0,
            max_trimmed_share: 0.4,
            min_match: 0.8,
            contaminants: Vec::new(),
        }
    }
}

impl FingerprintConfig {
    /// Checks the parameters; the error names the offending key.
    pub fn check(&self) -> Result<(), String> {
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(format!("alpha must be in (0, 1), got {}", self.alpha));
        }
        if self.limit_margin.is_nan() || self.limit_margin < 1.0 {
            return Err(format!(
                "limit_margin must be >= 1, got {}",
                self.limit_margin
            ));
        }
        if self.similarity_margin.is_nan() || self.similarity_margin < 1.0 {
            return Err(format!(
                "similarity_margin must be >= 1, got {}",
                self.similarity_margin
            ));
        }
        if self.trim_robust_z.is_nan() || self.trim_robust_z <= 0.0 {
            return Err(format!(
                "trim_robust_z must be positive, got {}",
                self.trim_robust_z
            ));
        }
        if !(0.0..0.5).contains(&self.max_trimmed_share) {
            return Err(format!(
                "max_trimmed_share must be in [0, 0.5), got {}",
                self.max_trimmed_share
            ));
        }
        if self.min_reference_cycles < 3 {
            return Err("min_reference_cycles must be at least 3".into());
        }
        if !(self.min_match > 0.0 && self.min_match <= 1.0) {
            return Err(format!(
                "min_match must be in (0, 1], got {}",
                self.min_match
            ));
        }
        for (index, contaminant) in self.contaminants.iter().enumerate() {
            contaminant
                .check()
                .map_err(|reason| format!("contaminants[{index}]: {reason}"))?;
        }
        Ok(())
    }
}

/// A product fingerprint on one array, with its limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FingerprintModel {
    /// The line of the array.
    pub line: String,
    /// The array.
    pub sensor: String,
    /// The product.
    pub product: String,
    /// Content hash: equal versions mean equal models.
    pub version: String,
    /// Reference batches the model was fitted on, sorted.
    pub reference_batches: Vec<String>,
    /// Mean reference cycle, raw units.
    pub centroid: Vec<f64>,
    /// PCA of the log responses.
    pub pca: PcaModel,
    /// T² limit (margin included).
    pub t2_limit: f64,
    /// SPE limit (margin included).
    pub spe_limit: f64,
    /// Similarity floor.
    pub similarity_limit: f64,
}

impl PartialEq for FingerprintModel {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for FingerprintModel {}
impl PartialOrd for FingerprintModel {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
/// Models are ordered by identity and version; the version is a hash of
/// the content, so equal keys mean equal models.
impl Ord for FingerprintModel {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.line, &self.sensor, &self.product, &self.version).cmp(&(
            &other.line,
            &other.sensor,
            &other.product,
            &other.version,
        ))
    }
}

/// How one cycle compares with its product's fingerprint.
#[derive(Debug, Clone, PartialEq)]
pub struct FingerprintScore {
    /// Cosine similarity to the centroid.
    pub similarity: f64,
    /// Hotelling's T² of the log responses.
    pub t2: f64,
    /// SPE of the log responses.
    pub spe: f64,
    /// Channels whose log response moved furthest from the reference mean,
    /// in reference standard deviations, strongest first (at most three).
    pub channels: Vec<u16>,
    /// The nearest contaminant and its cosine, when the cycle alarms and
    /// the cosine is at least `min_match`.
    pub matched: Option<(String, f64)>,
}

impl FingerprintScore {
    /// Whether any statistic is beyond its limit.
    pub fn alarm(&self, model: &FingerprintModel) -> bool {
        self.t2 > model.t2_limit
            || self.spe > model.spe_limit
            || self.similarity < model.similarity_limit
    }
}

/// The cycles whose every channel lies within `limit` robust standard
/// deviations of the channel's median log response: a reference batch in
/// which a fault or contamination hit a minority of the cycles still
/// yields a clean fingerprint (more than `max_trimmed_share` trimmed fails
/// the fit instead). Cycles of another channel count than the
/// first are left out too.
fn trim_outlying<'a>(cycles: &[&'a Cycle], limit: f64) -> Vec<&'a Cycle> {
    let Some(first) = cycles.first() else {
        return Vec::new();
    };
    let channels = first.values.len();
    let cycles: Vec<&Cycle> = cycles
        .iter()
        .copied()
        .filter(|c| c.values.len() == channels)
        .collect();
    let logs: Vec<Vec<f64>> = cycles.iter().map(|c| ln_values(&c.values)).collect();
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        }
    };
    let centres: Vec<(f64, f64)> = (0..channels)
        .map(|j| {
            let mut column: Vec<f64> = logs.iter().map(|y| y[j]).collect();
            let centre = median(&mut column);
            let mut deviations: Vec<f64> = column.iter().map(|y| (y - centre).abs()).collect();
            // A floor keeps a channel that never moves from excluding
            // every cycle over rounding noise.
            let spread = (1.4826 * median(&mut deviations)).max(1e-9);
            (centre, spread)
        })
        .collect();
    cycles
        .into_iter()
        .zip(&logs)
        .filter(|(_, y)| {
            y.iter()
                .zip(&centres)
                .all(|(v, (centre, spread))| (v - centre).abs() <= limit * spread)
        })
        .map(|(cycle, _)| cycle)
        .collect()
}

fn ln_values(values: &[f64]) -> Vec<f64> {
    values
        .iter()
        .map(|v| v.max(f64::MIN_POSITIVE).ln())
        .collect()
}

fn log_deviation(logs: &[f64], mean: &[f64]) -> Vec<f64> {
    logs.iter().zip(mean).map(|(y, m)| y - m).collect()
}

/// Cosine similarity; 0 when either vector is zero.
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let norms = dot(a, a).sqrt() * dot(b, b).sqrt();
    if norms > 0.0 {
        dot(a, b) / norms
    } else {
        0.0
    }
}

/// Channels ordered by contribution, strongest first, at most `top`.
pub fn top_channels(contributions: &[f64], top: usize) -> Vec<u16> {
    let mut order: Vec<usize> = (0..contributions.len()).collect();
    order.sort_by(|&a, &b| {
        contributions[b]
            .total_cmp(&contributions[a])
            .then(a.cmp(&b))
    });
    order
        .into_iter()
        .take(top)
        .map(|c| u16::try_from(c).unwrap_or(u16::MAX))
        .collect()
}

impl FingerprintModel {
    /// Fits the fingerprint of `product` on `line/sensor` from reference cycles.
    pub fn fit(
        line: &str,
        sensor: &str,
        product: &str,
        cycles: &[&Cycle],
        config: &FingerprintConfig,
    ) -> Result<FingerprintModel, FingerprintError> {
        for cycle in cycles {
            if let Some(channel) = cycle.values.iter().position(|v| v.is_nan() || *v <= 0.0) {
                return Err(FingerprintError::NonPositive {
                    start_ms: cycle.start_ms,
                    channel,
                });
            }
        }
        let given = cycles.len();
        let cycles = trim_outlying(cycles, config.trim_robust_z);
        let trimmed = given - cycles.len();
        if trimmed as f64 > config.max_trimmed_share * given as f64 {
            return Err(FingerprintError::DisturbedReference {
                line: line.to_owned(),
                sensor: sensor.to_owned(),
                product: product.to_owned(),
                trimmed,
                cycles: given,
            });
        }
        if cycles.len() < config.min_reference_cycles {
            return Err(FingerprintError::TooFewCycles {
                line: line.to_owned(),
                sensor: sensor.to_owned(),
                product: product.to_owned(),
                needed: config.min_reference_cycles,
                got: cycles.len(),
            });
        }
        let logs: Vec<Vec<f64>> = cycles.iter().map(|c| ln_values(&c.values)).collect();
        let pca = PcaModel::fit(&logs, &config.pca)?;
        let channels = pca.variables();
        let mut centroid = vec![0.0; channels];
        for cycle in &cycles {
            for (c, v) in centroid.iter_mut().zip(&cycle.values) {
                *c += v / cycles.len() as f64;
            }
        }
        let worst = cycles
            .iter()
            .map(|c| cosine(&c.values, &centroid))
            .fold(1.0, f64::min);
        let mut reference_batches: Vec<String> = cycles.iter().map(|c| c.batch.clone()).collect();
        reference_batches.sort();
        reference_batches.dedup();
        let mut model = FingerprintModel {
            line: line.to_owned(),
            sensor: sensor.to_owned(),
            product: product.to_owned(),
            version: String::new(),
            reference_batches,
            t2_limit: pca.t2_limit(config.alpha)? * config.limit_margin,
            spe_limit: pca.spe_limit(config.alpha)? * config.limit_margin,
            similarity_limit: 1.0 - config.similarity_margin * (1.0 - worst),
            centroid,
            pca,
        };
        model.version = model.content_hash();
        Ok(model)
    }

    fn content_hash(&self) -> String {
        let content = serde_json::to_vec(&(
            &self.line,
            &self.sensor,
            &self.product,
            &self.reference_batches,
            &self.centroid,
            &self.pca,
            self.t2_limit,
            self.spe_limit,
            self.similarity_limit,
        ))
        .expect("a model always serialises");
        format!("fp-{}", &hex::encode(Sha256::digest(content))[..12])
    }

    /// A cycle's log deviation from the reference mean, `ln x − ȳ`: the
    /// direction a contaminant pushes the array in, whatever its gain.
    pub fn deviation(&self, values: &[f64]) -> Vec<f64> {
        log_deviation(&ln_values(values), &self.pca.mean)
    }

    /// Scores one cycle's values against the fingerprint.
    pub fn score(
        &self,
        values: &[f64],
        library: &[ContaminantSignature],
        min_match: f64,
    ) -> Result<FingerprintScore, PcaError> {
        let logs = ln_values(values);
        let projection = self.pca.project(&logs)?;
        let similarity = cosine(values, &self.centroid);
        let scaled = self.pca.scale_observation(&logs)?;
        let contributions: Vec<f64> = scaled.iter().map(|z| z * z).collect();
        let alarm = projection.t2 > self.t2_limit
            || projection.spe > self.spe_limit
            || similarity < self.similarity_limit;
        // Matching only explains an alarm; clean cycles skip it.
        let matched = if alarm {
            let deviation = log_deviation(&logs, &self.pca.mean);
            nearest_contaminant(&deviation, library, min_match)
        } else {
            None
        };
        Ok(FingerprintScore {
            similarity,
            t2: projection.t2,
            spe: projection.spe,
            channels: top_channels(&contributions, 3),
            matched,
        })
    }
}

/// The anomalies of one scored cycle: one per statistic beyond its limit,
/// plus a `contaminant` anomaly when an alarming cycle matches the library.
pub fn cycle_anomalies(
    cycle: &Cycle,
    model: &FingerprintModel,
    score: &FingerprintScore,
    min_match: f64,
) -> Vec<Anomaly> {
    let anomaly = |rule, statistic, limit, contaminant| Anomaly {
        line: cycle.line.clone(),
        sensor: cycle.sensor.clone(),
        kind: SensorKind::Enose,
        batch: Some(cycle.batch.clone()),
        ts_ms: cycle.last_ms,
        seq: cycle.last_seq,
        rule,
        statistic,
        limit,
        channels: score.channels.clone(),
        contaminant,
    };
    let mut anomalies = Vec::new();
    if score.t2 > model.t2_limit {
        anomalies.push(anomaly(
            AnomalyRule::HotellingT2,
            score.t2,
            model.t2_limit,
            None,
        ));
    }
    if score.spe > model.spe_limit {
        anomalies.push(anomaly(AnomalyRule::Spe, score.spe, model.spe_limit, None));
    }
    if score.similarity < model.similarity_limit {
        anomalies.push(anomaly(
            AnomalyRule::Similarity,
            1.0 - score.similarity,
            1.0 - model.similarity_limit,
            None,
        ));
    }
    if let (false, Some((name, cos))) = (anomalies.is_empty(), &score.matched) {
        anomalies.push(anomaly(
            AnomalyRule::Contaminant,
            *cos,
            min_match,
            Some(name.clone()),
        ));
    }
    anomalies
}

/// An alarming cycle's log deviation, with the anomaly it raised: what the
/// dataflow matches against the contaminant library.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Deviation {
    /// The first anomaly of the cycle: line, array, batch, time and the
    /// channels a contaminant anomaly reports.
    anomaly: Anomaly,
    /// `ln x − ȳ` per channel.
    deviation: Vec<f64>,
}

total_order_from_ord!(Deviation);
impl Ord for Deviation {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.anomaly
            .cmp(&other.anomaly)
            .then_with(|| total_cmp_values(&self.deviation, &other.deviation))
    }
}

/// A scored cycle's output: an anomaly, or the deviation of an alarming
/// cycle still to be matched.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum Scored {
    Anomaly(Anomaly),
    Deviation(Deviation),
}

/// What fingerprint scoring gives the agents.
pub struct ScoredFingerprints<'scope> {
    /// The anomalies of the cycles that leave their fingerprint, with the
    /// contaminants they match.
    pub anomalies: VecCollection<'scope, Epoch, Anomaly>,
    /// `(line, batch, reference)` of every library signature that named a
    /// finding of the batch ([`ContaminantSignature::reference`]), once per
    /// cycle it named.
    pub signatures: VecCollection<'scope, Epoch, (String, String, String)>,
}

/// Extension trait: cycles scored against their product fingerprints.
pub trait ScoreFingerprints<'scope> {
    /// Joins every cycle with the model assigned to its batch on its array
    /// (`(scored batch, model)`, see `dataflows::training`) and returns the
    /// anomalies of the cycles that leave their fingerprint, each alarming
    /// cycle matched against `library` (the configured and learned
    /// contaminants, a collection). A new model version retracts the
    /// anomalies of the old one and re-scores the batch's cycles; a new
    /// library entry re-matches every alarming cycle, so open batches take
    /// it up at once.
    fn score_fingerprints(
        self,
        models: VecCollection<'scope, Epoch, (String, FingerprintModel)>,
        library: VecCollection<'scope, Epoch, ContaminantSignature>,
        min_match: f64,
    ) -> ScoredFingerprints<'scope>;
}

impl<'scope> ScoreFingerprints<'scope> for VecCollection<'scope, Epoch, Cycle> {
    fn score_fingerprints(
        self,
        models: VecCollection<'scope, Epoch, (String, FingerprintModel)>,
        library: VecCollection<'scope, Epoch, ContaminantSignature>,
        min_match: f64,
    ) -> ScoredFingerprints<'scope> {
        let cycles = self
            .map(|c| ((c.line.clone(), c.sensor.clone(), c.batch.clone()), c))
            .arrange_by_key();
        let models = models
            .map(|(batch, m)| ((m.line.clone(), m.sensor.clone(), batch), m))
            .arrange_by_key();
        let scored = cycles.join_core(models, move |_key, cycle, model| {
            // A cycle with another channel count than its model cannot be
            // scored; validation keeps an array's channel count fixed.
            let Ok(score) = model.score(&cycle.values, &[], min_match) else {
                return Vec::new();
            };
            let anomalies = cycle_anomalies(cycle, model, &score, min_match);
            let deviation = anomalies.first().map(|first| Deviation {
                anomaly: first.clone(),
                deviation: model.deviation(&cycle.values),
            });
            anomalies
                .into_iter()
                .map(Scored::Anomaly)
                .chain(deviation.map(Scored::Deviation))
                .collect()
        });
        let anomalies = scored.clone().flat_map(|scored| match scored {
            Scored::Anomaly(anomaly) => Some(anomaly),
            Scored::Deviation(_) => None,
        });
        let deviations = scored
            .flat_map(|scored| match scored {
                Scored::Deviation(deviation) => Some((deviation.deviation.len(), deviation)),
                Scored::Anomaly(_) => None,
            })
            .arrange_by_key();
        let library = library
            .map(|signature| {
                let reference = signature.reference();
                (signature.response.len(), (signature, reference))
            })
            .arrange_by_key();
        // Every candidate at or above `min_match`, keyed by its cycle; the
        // best one per cycle is the cycle's contaminant anomaly.
        let candidates = deviations.join_core(
            library,
            move |_channels, deviation, (signature, reference)| {
                let cos = cosine(&deviation.deviation, &signature.pattern());
                (cos >= min_match).then(|| {
                    let anomaly = &deviation.anomaly;
                    let cycle = (
                        anomaly.line.clone(),
                        anomaly.sensor.clone(),
                        anomaly.ts_ms,
                        anomaly.seq,
                    );
                    let matched = Anomaly {
                        rule: AnomalyRule::Contaminant,
                        statistic: cos,
                        limit: min_match,
                        contaminant: Some(signature.name.clone()),
                        ..anomaly.clone()
                    };
                    (cycle, (matched, reference.clone()))
                })
            },
        );
        let matches = candidates.reduce(|_cycle, input, output| {
            let mut best: Option<&(Anomaly, String)> = None;
            for (candidate, _count) in input {
                let (anomaly, _) = candidate;
                let name = anomaly.contaminant.as_deref().unwrap_or_default();
                if best.is_none_or(|(b, _)| {
                    better_match(
                        (name, anomaly.statistic),
                        (b.contaminant.as_deref().unwrap_or_default(), b.statistic),
                    )
                }) {
                    best = Some(candidate);
                }
            }
            if let Some(best) = best {
                output.push((best.clone(), 1));
            }
        });
        let signatures = matches.clone().flat_map(|(_cycle, (anomaly, reference))| {
            let batch = anomaly.batch?;
            Some((anomaly.line, batch, reference))
        });
        ScoredFingerprints {
            anomalies: anomalies.concat(matches.map(|(_cycle, (anomaly, _))| anomaly)),
            signatures,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic uniform numbers in [-1, 1) for noise.
    struct Noise(u64);
    impl Noise {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        }
    }

    const FINGERPRINT: [f64; 8] = [1.2, 0.8, 2.0, 1.5, 0.9, 1.1, 1.7, 0.6];

    fn cycle(start_ms: i64, values: Vec<f64>) -> Cycle {
        Cycle {
            line: "L1".into(),
            sensor: "enose-1".into(),
            batch: "B1".into(),
            product: "espresso".into(),
            start_ms,
            last_ms: start_ms + 9_000,
            first_seq: 1,
            last_seq: 10,
            readings: 10,
            values,
        }
    }

    /// Clean cycles: the fingerprint times (1 + 0.2 % noise) times a common
    /// temperature factor wandering by ±0.1 %.
    fn clean(n: usize, seed: u64) -> Vec<Cycle> {
        let mut noise = Noise(seed);
        (0..n)
            .map(|i| {
                let wander = 1.0 + 0.001 * (i as f64 / 7.0).sin();
                let values = FINGERPRINT
                    .iter()
                    .map(|f| f * wander * (1.0 + 0.002 * noise.next()))
                    .collect();
                cycle(i as i64 * 10_000, values)
            })
            .collect()
    }

    fn library() -> Vec<ContaminantSignature> {
        vec![
            ContaminantSignature {
                name: "ethanol".into(),
                response: vec![0.9, 0.0, 0.7, 0.0, 0.0, 0.8, 0.0, 0.0],
            },
            ContaminantSignature {
                name: "mould".into(),
                response: vec![0.0, 0.8, 0.0, 0.9, 0.0, 0.0, 0.7, 0.6],
            },
        ]
    }

    fn fitted() -> FingerprintModel {
        let reference = clean(60, 1);
        let refs: Vec<&Cycle> = reference.iter().collect();
        FingerprintModel::fit(
            "L1",
            "enose-1",
            "espresso",
            &refs,
            &FingerprintConfig::default(),
        )
        .unwrap()
    }

    #[test]
    fn clean_cycles_pass_and_contaminated_ones_alarm_with_their_contaminant() {
        let model = fitted();
        let config = FingerprintConfig::default();
        let false_alarms = clean(500, 2)
            .iter()
            .filter(|c| {
                model
                    .score(&c.values, &library(), config.min_match)
                    .unwrap()
                    .alarm(&model)
            })
            .count();
        assert!(
            false_alarms <= 2,
            "{false_alarms} of 500 clean cycles alarmed"
        );

        // Ethanol at a fifth of its signature: +14..18 % on channels 0, 2, 5.
        let mut values = clean(1, 3)[0].values.clone();
        for (v, r) in values.iter_mut().zip(&library()[0].response) {
            *v *= 1.0 + 0.2 * r;
        }
        let score = model.score(&values, &library(), config.min_match).unwrap();
        assert!(score.alarm(&model), "{score:?}");
        assert_eq!(score.matched.as_ref().unwrap().0, "ethanol");
        let mut top = score.channels.clone();
        top.sort_unstable();
        assert_eq!(top, vec![0, 2, 5]);
        assert!(score.similarity < model.similarity_limit);
    }

    #[test]
    fn the_version_is_a_content_hash() {
        let a = fitted();
        let b = fitted();
        assert_eq!(a.version, b.version);
        let other = clean(60, 9);
        let refs: Vec<&Cycle> = other.iter().collect();
        let c = FingerprintModel::fit(
            "L1",
            "enose-1",
            "espresso",
            &refs,
            &FingerprintConfig::default(),
        )
        .unwrap();
        assert_ne!(a.version, c.version);
    }

    /// A reference batch with a contamination in a third of its cycles
    /// still yields the clean fingerprint: the contaminated cycles are
    /// trimmed before the fit.
    #[test]
    fn contaminated_reference_cycles_are_trimmed_from_the_fit() {
        let config = FingerprintConfig::default();
        let mut reference = clean(60, 4);
        for cycle in reference.iter_mut().skip(20).take(20) {
            for (v, r) in cycle.values.iter_mut().zip(&library()[1].response) {
                *v *= 1.0 + 0.3 * r;
            }
        }
        let refs: Vec<&Cycle> = reference.iter().collect();
        let model = FingerprintModel::fit("L1", "enose-1", "espresso", &refs, &config).unwrap();
        let clean_model = fitted();
        for (a, b) in model.centroid.iter().zip(&clean_model.centroid) {
            assert!((a / b - 1.0).abs() < 0.002, "{a} vs {b}");
        }
        let false_alarms = clean(200, 5)
            .iter()
            .filter(|c| {
                model
                    .score(&c.values, &library(), config.min_match)
                    .unwrap()
                    .alarm(&model)
            })
            .count();
        assert!(
            false_alarms <= 2,
            "{false_alarms} of 200 clean cycles alarmed"
        );
    }

    #[test]
    fn a_reference_disturbed_for_most_of_its_cycles_fails_the_fit() {
        let mut reference = clean(60, 6);
        for cycle in reference.iter_mut().skip(10).take(35) {
            for (v, r) in cycle.values.iter_mut().zip(&library()[0].response) {
                *v *= 1.0 + 0.3 * r;
            }
        }
        let refs: Vec<&Cycle> = reference.iter().collect();
        assert!(matches!(
            FingerprintModel::fit(
                "L1",
                "enose-1",
                "espresso",
                &refs,
                &FingerprintConfig::default()
            ),
            Err(FingerprintError::DisturbedReference { .. })
        ));
    }

    #[test]
    fn bad_references_are_typed_errors() {
        let config = FingerprintConfig::default();
        let few = clean(5, 1);
        let refs: Vec<&Cycle> = few.iter().collect();
        assert!(matches!(
            FingerprintModel::fit("L1", "enose-1", "espresso", &refs, &config),
            Err(FingerprintError::TooFewCycles {
                needed: 20,
                got: 0..=5,
                ..
            })
        ));
        let mut zero = clean(30, 1);
        zero[4].values[3] = 0.0;
        let refs: Vec<&Cycle> = zero.iter().collect();
        assert!(matches!(
            FingerprintModel::fit("L1", "enose-1", "espresso", &refs, &config),
            Err(FingerprintError::NonPositive { channel: 3, .. })
        ));
        assert!(FingerprintConfig {
            alpha: 2.0,
            ..config
        }
        .check()
        .unwrap_err()
        .contains("alpha"));
    }
}
