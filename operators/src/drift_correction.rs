//! Drift correction for e-nose fingerprints: reference-gas calibration plus
//! optional self-training tracking of the remaining common drift.
//!
//! Metal-oxide sensors age: their sensitivity and baseline change over
//! months, so a classifier trained on fresh sensors misreads old ones (on
//! the UCI drift array, accuracy falls from above 90 % to below 50 % within
//! a year without correction). This module keeps fingerprints valid in two
//! steps, both in the feature space of [`crate::gas_classifier`]
//! (signed log, standardised with the training statistics), where a
//! multiplicative sensitivity change of a feature is an additive offset.
//!
//! **1. Reference-gas calibration** ([`ReferenceProfile`], [`DriftCorrector::calibrate`]).
//! After each recalibration the plant measures a few reference samples of a
//! known gas at known concentrations. The [`ReferenceProfile`] holds the
//! mean training-time response of every (class, concentration); for a
//! concentration between two trained ones it interpolates linearly in
//! `ln(concentration)`. The drift estimate is the mean difference between
//! the reference measurements and the trained responses,
//! `o_cal = mean_i (x_i - r(class_i, conc_i))`, and it is subtracted from
//! every later measurement. This is the additive (offset) form of component
//! correction with a reference gas (Artursson, Eklöv, Lundström, Mårtensson,
//! Sjöström, Holmberg, "Drift correction for gas sensors using multivariate
//! methods", J. Chemometrics 14 (2000) 711-723), with the drift component
//! taken as the mean reference displacement rather than the first principal
//! component of many reference measurements, since only a handful are
//! available per recalibration. In the raw domain it is the per-feature
//! multiplicative correction with reference samples of Haugen, Tomic and
//! Kvaal ("A calibration method for handling the temporal drift of solid
//! state gas-sensors", Anal. Chim. Acta 407 (2000) 23-39), and a diagonal
//! direct standardisation with transfer samples (Fonollosa, Fernández,
//! Gutiérrez-Gálvez, Huerta, Marco, "Calibration transfer and drift
//! counteraction in chemical sensor arrays using Direct Standardization",
//! Sens. Actuators B 236 (2016) 1044-1053).
//!
//! **2. Self-training drift tracking** ([`DriftCorrector::track`]). The
//! reference gas says nothing about how the other gases drift, and drift
//! keeps going between recalibrations. After each classification whose
//! posterior reaches [`DriftCompensationConfig::min_posterior`], the
//! residual of the corrected measurement from the predicted class's
//! training mean feeds an exponentially weighted offset,
//! `o_t = (1 - η) o_{t-1} + η (x_t - o_cal - μ_ĉ)`, subtracted from the next
//! measurements. It is self-training on confident predictions, restricted to
//! a shared offset so that one class cannot pull another's model: the
//! common-mode drift is estimated from the stream itself, in the spirit of
//! the adaptive drift counteraction reviewed by Di Carlo and Falasconi
//! ("Drift correction methods for gas chemical sensors in artificial
//! olfaction systems: techniques and challenges", in Advances in Chemical
//! Sensors, InTech 2012). It uses the measurements of the stream already
//! seen, never a label, and a recalibration resets it. Its weakness is the
//! weakness of all self-training: a run of confidently misread measurements
//! pulls the offset towards the wrong class and can lock it there (on the
//! UCI data, ammonia read as ethanol after a long acetaldehyde run), so the
//! rate is kept small and a recalibration is the way back.
//!
//! **What tracking is worth on real data: nothing yet.** Its result depends
//! on the order of the measurements. On the UCI drift batches 2-5 (train
//! batch 1, 10 reference samples per batch, `scent eval gas-drift`) tracking
//! reaches a mean accuracy of 0.864 with the rows in file order, but the
//! files are grouped by gas class (long runs of one gas, not time order),
//! and tracking profits from adapting to one class at a time. With the
//! scored rows shuffled it reaches 0.789 (mean over five seeds, worst
//! 0.781), below reference calibration alone (0.799, order-independent),
//! so the evaluation's headline is calibration alone and the 0.85 target
//! is not reached. Tracking stays available for streams whose drift is
//! slow against the mix of gases, but it is not shown to help; set
//! `tracking_rate` to 0 to disable it.
//!
//! [`DriftCompensatedClassifier`] ties the two to a [`GasClassifier`]: the
//! streaming fingerprint operator recalibrates it with reference
//! measurements and then classifies raw feature vectors one by one.
//!
//! Cost per measurement: O(d) for the correction and the tracking update
//! and O(k d) for the classification (d features, k classes); no allocation
//! in [`DriftCompensatedClassifier::classify`] beyond the score vector.
//! State: two offsets of d values.

use crate::gas_classifier::{ClassifierError, GasClassifier, Prediction};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Why drift correction cannot be fitted or applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DriftError {
    /// The underlying classifier or feature transform failed.
    #[error(transparent)]
    Classifier(#[from] ClassifierError),
    /// The profile has no response for this class near this concentration.
    #[error("no trained reference response for class {class} at concentration {concentration}")]
    NoReference {
        /// The reference gas class.
        class: usize,
        /// Its concentration.
        concentration: f64,
    },
    /// A concentration is not a positive finite number.
    #[error("reference {index} has concentration {concentration}, expected a positive number")]
    BadConcentration {
        /// Position of the measurement.
        index: usize,
        /// The value found.
        concentration: f64,
    },
    /// A vector does not have the expected number of features.
    #[error("vector has {got} features, expected {expected}")]
    DimensionMismatch {
        /// Features found.
        got: usize,
        /// Features expected.
        expected: usize,
    },
    /// A configuration value is out of range.
    #[error("invalid drift compensation configuration: {0}")]
    Config(String),
}

/// A measurement whose gas class and concentration are known: a training
/// sample or a reference-gas measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnownMeasurement<'a> {
    /// The gas class.
    pub class: usize,
    /// The gas concentration (any positive unit, the same everywhere).
    pub concentration: f64,
    /// The feature vector.
    pub features: &'a [f64],
}

/// Mean training response per class and concentration, in feature space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceProfile {
    /// Per class: `(concentration, mean response)` sorted by concentration.
    responses: BTreeMap<usize, Vec<(f64, Vec<f64>)>>,
    dim: usize,
}

impl ReferenceProfile {
    /// Relative difference under which two concentrations are the same level.
    const SAME_LEVEL: f64 = 1e-9;

    /// Averages the measurements of each (class, concentration) level.
    pub fn fit(measurements: &[KnownMeasurement<'_>]) -> Result<ReferenceProfile, DriftError> {
        let dim = measurements
            .first()
            .map(|m| m.features.len())
            .ok_or(ClassifierError::NoSamples)?;
        let mut sums: BTreeMap<usize, Vec<(f64, usize, Vec<f64>)>> = BTreeMap::new();
        for (index, measurement) in measurements.iter().enumerate() {
            check_concentration(index, measurement.concentration)?;
            check_dim(measurement.features, dim)?;
            let levels = sums.entry(measurement.class).or_default();
            let level = match levels
                .iter()
                .position(|(c, _, _)| same_level(*c, measurement.concentration))
            {
                Some(position) => &mut levels[position],
                None => {
                    levels.push((measurement.concentration, 0, vec![0.0; dim]));
                    levels.last_mut().expect("just pushed")
                }
            };
            level.1 += 1;
            for (sum, value) in level.2.iter_mut().zip(measurement.features) {
                *sum += value;
            }
        }
        let responses = sums
            .into_iter()
            .map(|(class, levels)| {
                let mut means: Vec<(f64, Vec<f64>)> = levels
                    .into_iter()
                    .map(|(concentration, count, sum)| {
                        let mean = sum.into_iter().map(|s| s / count as f64).collect();
                        (concentration, mean)
                    })
                    .collect();
                means.sort_by(|a, b| a.0.total_cmp(&b.0));
                (class, means)
            })
            .collect();
        Ok(ReferenceProfile { responses, dim })
    }

    /// Number of features.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The trained response of `class` at `concentration`: the level's mean,
    /// or a linear interpolation in `ln(concentration)` between the two
    /// nearest levels. Outside the trained range there is no response.
    pub fn response(&self, class: usize, concentration: f64) -> Result<Vec<f64>, DriftError> {
        let missing = DriftError::NoReference {
            class,
            concentration,
        };
        let levels = self.responses.get(&class).ok_or(missing.clone())?;
        if let Some((_, mean)) = levels.iter().find(|(c, _)| same_level(*c, concentration)) {
            return Ok(mean.clone());
        }
        let above = levels
            .iter()
            .position(|(c, _)| *c > concentration)
            .ok_or(missing.clone())?;
        if above == 0 {
            return Err(missing);
        }
        let (low_c, low) = &levels[above - 1];
        let (high_c, high) = &levels[above];
        let weight = (concentration.ln() - low_c.ln()) / (high_c.ln() - low_c.ln());
        Ok(low
            .iter()
            .zip(high)
            .map(|(l, h)| l + weight * (h - l))
            .collect())
    }
}

fn same_level(a: f64, b: f64) -> bool {
    (a - b).abs() <= ReferenceProfile::SAME_LEVEL * a.abs().max(b.abs())
}

fn check_concentration(index: usize, concentration: f64) -> Result<(), DriftError> {
    if concentration.is_finite() && concentration > 0.0 {
        Ok(())
    } else {
        Err(DriftError::BadConcentration {
            index,
            concentration,
        })
    }
}

fn check_dim(x: &[f64], expected: usize) -> Result<(), DriftError> {
    if x.len() == expected {
        Ok(())
    } else {
        Err(DriftError::DimensionMismatch {
            got: x.len(),
            expected,
        })
    }
}

/// Parameters of the drift compensation (frozen defaults, chosen on the UCI
/// gas-sensor-array drift data in file order; see `scent eval gas-drift`,
/// whose headline uses them with `tracking_rate` 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftCompensationConfig {
    /// LDA covariance shrinkage λ in `(0, 1]`.
    pub shrinkage: f64,
    /// Tracking rate η in `[0, 1)`; 0 disables tracking.
    pub tracking_rate: f64,
    /// Smallest posterior of a prediction that may update the tracked offset.
    pub min_posterior: f64,
}

impl Default for DriftCompensationConfig {
    fn default() -> Self {
        DriftCompensationConfig {
            shrinkage: 0.02,
            tracking_rate: 0.02,
            min_posterior: 0.99,
        }
    }
}

impl DriftCompensationConfig {
    /// Checks the ranges; the error names the offending field.
    pub fn check(&self) -> Result<(), DriftError> {
        if !(self.shrinkage > 0.0 && self.shrinkage <= 1.0) {
            return Err(DriftError::Config(format!(
                "shrinkage must lie in (0, 1], got {}",
                self.shrinkage
            )));
        }
        if !(0.0..1.0).contains(&self.tracking_rate) {
            return Err(DriftError::Config(format!(
                "tracking_rate must lie in [0, 1), got {}",
                self.tracking_rate
            )));
        }
        if !(0.0..=1.0).contains(&self.min_posterior) {
            return Err(DriftError::Config(format!(
                "min_posterior must lie in [0, 1], got {}",
                self.min_posterior
            )));
        }
        Ok(())
    }
}

/// The offsets removed from feature vectors: the calibrated one and the
/// tracked one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftCorrector {
    calibration_offset: Vec<f64>,
    tracked_offset: Vec<f64>,
    tracking_rate: f64,
    min_posterior: f64,
}

impl DriftCorrector {
    /// A corrector that removes nothing yet (no reference measured); it
    /// still tracks when `tracking_rate > 0`.
    pub fn uncalibrated(dim: usize, tracking_rate: f64, min_posterior: f64) -> DriftCorrector {
        DriftCorrector {
            calibration_offset: vec![0.0; dim],
            tracked_offset: vec![0.0; dim],
            tracking_rate,
            min_posterior,
        }
    }

    /// Estimates the calibration offset from reference measurements of known
    /// class and concentration (feature space); the tracked offset starts at
    /// zero. With no reference measurement the offset is zero.
    pub fn calibrate(
        profile: &ReferenceProfile,
        references: &[KnownMeasurement<'_>],
        tracking_rate: f64,
        min_posterior: f64,
    ) -> Result<DriftCorrector, DriftError> {
        let mut corrector =
            DriftCorrector::uncalibrated(profile.dim(), tracking_rate, min_posterior);
        for (index, reference) in references.iter().enumerate() {
            check_concentration(index, reference.concentration)?;
            check_dim(reference.features, profile.dim())?;
            let trained = profile.response(reference.class, reference.concentration)?;
            for ((offset, measured), expected) in corrector
                .calibration_offset
                .iter_mut()
                .zip(reference.features)
                .zip(&trained)
            {
                *offset += (measured - expected) / references.len() as f64;
            }
        }
        Ok(corrector)
    }

    /// Number of features.
    pub fn dim(&self) -> usize {
        self.calibration_offset.len()
    }

    /// The offset estimated from the reference measurements.
    pub fn calibration_offset(&self) -> &[f64] {
        &self.calibration_offset
    }

    /// The offset tracked since the last calibration.
    pub fn tracked_offset(&self) -> &[f64] {
        &self.tracked_offset
    }

    /// Writes `x - calibration offset - tracked offset` into `out`.
    pub fn correct_into(&self, x: &[f64], out: &mut [f64]) -> Result<(), DriftError> {
        check_dim(x, self.dim())?;
        check_dim(out, self.dim())?;
        for (((o, v), c), t) in out
            .iter_mut()
            .zip(x)
            .zip(&self.calibration_offset)
            .zip(&self.tracked_offset)
        {
            *o = v - c - t;
        }
        Ok(())
    }

    /// The corrected `x`.
    pub fn correct(&self, x: &[f64]) -> Result<Vec<f64>, DriftError> {
        let mut out = vec![0.0; self.dim()];
        self.correct_into(x, &mut out)?;
        Ok(out)
    }

    /// Updates the tracked offset with the measurement `x` (feature space,
    /// uncorrected) just classified with `posterior` into a class whose
    /// trained mean is `class_mean`. Returns whether the update happened
    /// (tracking enabled and posterior at least the threshold).
    pub fn track(
        &mut self,
        x: &[f64],
        class_mean: &[f64],
        posterior: f64,
    ) -> Result<bool, DriftError> {
        check_dim(x, self.dim())?;
        check_dim(class_mean, self.dim())?;
        if self.tracking_rate <= 0.0 || posterior < self.min_posterior {
            return Ok(false);
        }
        let rate = self.tracking_rate;
        for (((tracked, v), c), m) in self
            .tracked_offset
            .iter_mut()
            .zip(x)
            .zip(&self.calibration_offset)
            .zip(class_mean)
        {
            *tracked = (1.0 - rate) * *tracked + rate * (v - c - m);
        }
        Ok(true)
    }
}

/// A gas classifier with its reference profile and a drift corrector: the
/// drift-compensated fingerprint matcher of one sensor array.
#[derive(Debug, Clone)]
pub struct DriftCompensatedClassifier {
    classifier: GasClassifier,
    profile: ReferenceProfile,
    corrector: DriftCorrector,
    config: DriftCompensationConfig,
    transformed: Vec<f64>,
    corrected: Vec<f64>,
}

impl DriftCompensatedClassifier {
    /// Trains the classifier and the reference profile on raw measurements
    /// of known class (in `0..classes`) and concentration. The corrector
    /// starts uncalibrated.
    pub fn fit(
        training: &[KnownMeasurement<'_>],
        classes: usize,
        config: DriftCompensationConfig,
    ) -> Result<DriftCompensatedClassifier, DriftError> {
        config.check()?;
        let raw: Vec<&[f64]> = training.iter().map(|m| m.features).collect();
        let labels: Vec<usize> = training.iter().map(|m| m.class).collect();
        let classifier = GasClassifier::fit(&raw, &labels, classes, config.shrinkage)?;
        let transformed = raw
            .iter()
            .map(|x| classifier.standardizer().transform(x))
            .collect::<Result<Vec<_>, _>>()?;
        let known: Vec<KnownMeasurement<'_>> = training
            .iter()
            .zip(&transformed)
            .map(|(m, features)| KnownMeasurement {
                class: m.class,
                concentration: m.concentration,
                features,
            })
            .collect();
        let profile = ReferenceProfile::fit(&known)?;
        let dim = profile.dim();
        Ok(DriftCompensatedClassifier {
            classifier,
            profile,
            corrector: DriftCorrector::uncalibrated(
                dim,
                config.tracking_rate,
                config.min_posterior,
            ),
            config,
            transformed: vec![0.0; dim],
            corrected: vec![0.0; dim],
        })
    }

    /// The underlying classifier (no drift correction).
    pub fn classifier(&self) -> &GasClassifier {
        &self.classifier
    }

    /// The current corrector.
    pub fn corrector(&self) -> &DriftCorrector {
        &self.corrector
    }

    /// Recalibrates with raw reference measurements of known class and
    /// concentration; resets the tracked offset.
    pub fn recalibrate(&mut self, references: &[KnownMeasurement<'_>]) -> Result<(), DriftError> {
        let transformed = references
            .iter()
            .map(|m| self.classifier.standardizer().transform(m.features))
            .collect::<Result<Vec<_>, _>>()?;
        let known: Vec<KnownMeasurement<'_>> = references
            .iter()
            .zip(&transformed)
            .map(|(m, features)| KnownMeasurement {
                class: m.class,
                concentration: m.concentration,
                features,
            })
            .collect();
        self.corrector = DriftCorrector::calibrate(
            &self.profile,
            &known,
            self.config.tracking_rate,
            self.config.min_posterior,
        )?;
        Ok(())
    }

    /// The drift-corrected feature vector of a raw measurement (no tracking).
    pub fn correct(&self, raw: &[f64]) -> Result<Vec<f64>, DriftError> {
        let transformed = self.classifier.standardizer().transform(raw)?;
        self.corrector.correct(&transformed)
    }

    /// Corrects and classifies a raw measurement, then lets a confident
    /// prediction update the tracked offset for the measurements after it.
    pub fn classify(&mut self, raw: &[f64]) -> Result<Prediction, DriftError> {
        self.classifier
            .standardizer()
            .transform_into(raw, &mut self.transformed)?;
        self.corrector
            .correct_into(&self.transformed, &mut self.corrected)?;
        let lda = self.classifier.lda();
        let prediction = lda.classify(&self.corrected)?;
        self.corrector.track(
            &self.transformed,
            lda.class_mean(prediction.class),
            prediction.posterior,
        )?;
        Ok(prediction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Raw responses of a 4-feature array: each gas has its own pattern and
    /// the response scales with the concentration.
    fn response(class: usize, concentration: f64, sensitivity: &[f64]) -> Vec<f64> {
        let patterns = [
            [5.0, 1.0, 2.0, 1.0],
            [1.0, 5.0, 1.0, 2.0],
            [2.0, 1.0, 5.0, 3.0],
        ];
        patterns[class]
            .iter()
            .zip(sensitivity)
            .enumerate()
            .map(|(i, (p, s))| p * s * concentration * (1.0 + 0.03 * ((i + class) as f64).sin()))
            .collect()
    }

    fn training_set() -> Vec<(usize, f64, Vec<f64>)> {
        let fresh = [1.0; 4];
        let mut set = Vec::new();
        for class in 0..3 {
            for level in [10.0, 20.0, 50.0, 100.0, 200.0] {
                for repeat in 0..3 {
                    let mut x = response(class, level, &fresh);
                    x[repeat] *= 1.0 + 0.02 * repeat as f64;
                    set.push((class, level, x));
                }
            }
        }
        set
    }

    fn known(set: &[(usize, f64, Vec<f64>)]) -> Vec<KnownMeasurement<'_>> {
        set.iter()
            .map(|(class, concentration, x)| KnownMeasurement {
                class: *class,
                concentration: *concentration,
                features: x,
            })
            .collect()
    }

    #[test]
    fn profile_averages_levels_and_interpolates_in_log_concentration() {
        let a = [0.0, 2.0];
        let b = [2.0, 4.0];
        let c = [10.0, 10.0];
        let profile = ReferenceProfile::fit(&[
            KnownMeasurement {
                class: 0,
                concentration: 10.0,
                features: &a,
            },
            KnownMeasurement {
                class: 0,
                concentration: 10.0,
                features: &b,
            },
            KnownMeasurement {
                class: 0,
                concentration: 1000.0,
                features: &c,
            },
        ])
        .unwrap();
        assert_eq!(profile.response(0, 10.0).unwrap(), vec![1.0, 3.0]);
        // 100 is halfway between 10 and 1000 in log scale.
        let middle = profile.response(0, 100.0).unwrap();
        assert!((middle[0] - 5.5).abs() < 1e-12 && (middle[1] - 6.5).abs() < 1e-12);
        assert_eq!(
            profile.response(0, 5.0),
            Err(DriftError::NoReference {
                class: 0,
                concentration: 5.0
            })
        );
        assert!(profile.response(1, 10.0).is_err());
    }

    #[test]
    fn calibration_removes_a_pure_offset_exactly() {
        let x = [1.0, 2.0, 3.0];
        let profile = ReferenceProfile::fit(&[KnownMeasurement {
            class: 2,
            concentration: 50.0,
            features: &x,
        }])
        .unwrap();
        let shifted = [1.5, 1.0, 3.25];
        let corrector = DriftCorrector::calibrate(
            &profile,
            &[KnownMeasurement {
                class: 2,
                concentration: 50.0,
                features: &shifted,
            }],
            0.0,
            1.0,
        )
        .unwrap();
        assert_eq!(corrector.calibration_offset(), &[0.5, -1.0, 0.25]);
        assert_eq!(corrector.correct(&shifted).unwrap(), x.to_vec());
        // Correcting twice is not idempotent by design, but correcting a
        // vector and its shifted copy differs by the same shift.
        let other = corrector.correct(&[0.0, 0.0, 0.0]).unwrap();
        assert_eq!(other, vec![-0.5, 1.0, -0.25]);
    }

    #[test]
    fn tracking_follows_a_constant_residual_and_respects_the_threshold() {
        let mut corrector = DriftCorrector::uncalibrated(2, 0.5, 0.9);
        let mean = [1.0, 1.0];
        assert!(!corrector.track(&[3.0, 1.0], &mean, 0.5).unwrap());
        assert_eq!(corrector.tracked_offset(), &[0.0, 0.0]);
        for _ in 0..40 {
            assert!(corrector.track(&[3.0, 1.0], &mean, 0.95).unwrap());
        }
        let tracked = corrector.tracked_offset();
        assert!((tracked[0] - 2.0).abs() < 1e-9 && tracked[1].abs() < 1e-12);
        assert_eq!(corrector.correct(&[3.0, 1.0]).unwrap()[0], 3.0 - tracked[0]);
        let mut disabled = DriftCorrector::uncalibrated(2, 0.0, 0.0);
        assert!(!disabled.track(&[3.0, 1.0], &mean, 1.0).unwrap());
    }

    #[test]
    fn reference_calibration_recovers_accuracy_after_sensitivity_drift() {
        let training = training_set();
        let config = DriftCompensationConfig {
            tracking_rate: 0.0,
            ..DriftCompensationConfig::default()
        };
        let mut matcher = DriftCompensatedClassifier::fit(&known(&training), 3, config).unwrap();
        // Aged array: sensor sensitivities changed by up to a factor of 3.
        let aged = [0.35, 2.5, 0.5, 3.0];
        let test: Vec<(usize, f64, Vec<f64>)> = (0..3)
            .flat_map(|class| {
                [15.0, 40.0, 150.0].map(|level| (class, level, response(class, level, &aged)))
            })
            .collect();
        let uncorrected = test
            .iter()
            .filter(|(class, _, x)| matcher.classifier().classify_raw(x).unwrap().class == *class)
            .count();
        assert!(
            uncorrected < test.len(),
            "drift must hurt without correction"
        );
        let reference = response(0, 50.0, &aged);
        matcher
            .recalibrate(&[KnownMeasurement {
                class: 0,
                concentration: 50.0,
                features: &reference,
            }])
            .unwrap();
        for (class, _, x) in &test {
            assert_eq!(matcher.classify(x).unwrap().class, *class);
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let training = training_set();
        let bad = DriftCompensationConfig {
            tracking_rate: 1.0,
            ..DriftCompensationConfig::default()
        };
        assert!(matches!(
            DriftCompensatedClassifier::fit(&known(&training), 3, bad),
            Err(DriftError::Config(_))
        ));
        let mut matcher = DriftCompensatedClassifier::fit(
            &known(&training),
            3,
            DriftCompensationConfig::default(),
        )
        .unwrap();
        let x = response(1, 10.0, &[1.0; 4]);
        assert_eq!(
            matcher.recalibrate(&[KnownMeasurement {
                class: 1,
                concentration: -1.0,
                features: &x
            }]),
            Err(DriftError::BadConcentration {
                index: 0,
                concentration: -1.0
            })
        );
        assert_eq!(
            matcher.recalibrate(&[KnownMeasurement {
                class: 1,
                concentration: 500.0,
                features: &x
            }]),
            Err(DriftError::NoReference {
                class: 1,
                concentration: 500.0
            })
        );
        assert!(matches!(
            matcher.classify(&[1.0, 2.0]),
            Err(DriftError::Classifier(
                ClassifierError::DimensionMismatch { .. }
            ))
        ));
    }
}
