//! Gas classification from e-nose feature vectors: signed-log
//! standardisation, then shrinkage linear discriminant analysis.
//!
//! **Features.** An e-nose measurement is summarised by a fixed-length
//! feature vector (for the UCI drift array, 16 sensors x 8 features: the
//! steady-state resistance change ΔR, its normalised form, and rising and
//! decaying exponential-moving-average transients). The features span five
//! orders of magnitude and their size grows roughly as a power of the gas
//! concentration, so every value first goes through the signed log
//! `g(x) = sign(x) ln(1 + |x|)`. For large features (|x| ≫ 1: most ΔR
//! values) a power law becomes a straight line and a multiplicative change
//! of a sensor's sensitivity (the main effect of metal-oxide ageing)
//! becomes an additive offset, which is what [`crate::drift_correction`]
//! removes; for the small transient features (|x| < 1) `g` is nearly linear
//! and the offset model is only an approximation. Each transformed feature is then
//! standardised with the mean and standard deviation of the training set
//! ([`LogStandardizer`]).
//!
//! **Classifier.** Linear discriminant analysis with a pooled within-class
//! covariance shrunk towards a multiple of the identity (Ledoit & Wolf,
//! "A well-conditioned estimator for large-dimensional covariance
//! matrices", J. Multivariate Anal. 88 (2004); Friedman, "Regularized
//! discriminant analysis", JASA 84 (1989)):
//! `Σ = (1 - λ) S_w + λ (tr(S_w) / d) I`. With equal class priors the
//! discriminant of class `c` is `δ_c(x) = xᵀ Σ⁻¹ μ_c - ½ μ_cᵀ Σ⁻¹ μ_c`, and
//! the posterior is the softmax of the discriminants ([`ShrinkageLda`]).
//! Shrinkage keeps `Σ` invertible when the 128 features are strongly
//! collinear, and a small `λ` keeps the discriminant directions that matter.
//! LDA also gives what a fingerprint operator needs besides the label: the
//! class means in feature space, and a posterior that says how sure the
//! decision is.
//!
//! Cost: fitting is O(n d² + d³) once (d = feature count); classifying is
//! O(k d) for k classes and allocates one score vector.

use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

/// Why a classifier cannot be fitted or applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClassifierError {
    /// No training samples were given.
    #[error("classifier needs training samples, got none")]
    NoSamples,
    /// A vector does not have the expected number of features.
    #[error("sample {index} has {got} features, expected {expected}")]
    DimensionMismatch {
        /// Position of the sample (0 when classifying a single vector).
        index: usize,
        /// Features found.
        got: usize,
        /// Features expected.
        expected: usize,
    },
    /// A feature value is NaN or infinite.
    #[error("sample {index} has a non-finite value in feature {feature}")]
    NonFinite {
        /// Position of the sample.
        index: usize,
        /// The offending feature.
        feature: usize,
    },
    /// The number of labels differs from the number of samples.
    #[error("{samples} samples but {labels} labels")]
    LabelCount {
        /// Samples given.
        samples: usize,
        /// Labels given.
        labels: usize,
    },
    /// A label is not below the class count.
    #[error("sample {index} has class {class}, but there are only {classes} classes")]
    ClassOutOfRange {
        /// Position of the sample.
        index: usize,
        /// The label.
        class: usize,
        /// Number of classes.
        classes: usize,
    },
    /// A class has no training sample, so it has no mean.
    #[error("class {class} has no training sample")]
    MissingClass {
        /// The class.
        class: usize,
    },
    /// Too few samples to estimate a pooled covariance (need more than classes).
    #[error("{samples} samples are too few to estimate the covariance of {classes} classes")]
    TooFewSamples {
        /// Samples given.
        samples: usize,
        /// Number of classes.
        classes: usize,
    },
    /// The shrinkage is outside `(0, 1]`.
    #[error("shrinkage must lie in (0, 1], got {0}")]
    Shrinkage(f64),
    /// The shrunk covariance could not be inverted (all features constant).
    #[error("the shrunk within-class covariance is singular")]
    Singular,
}

/// The signed log used before standardisation: `sign(x) ln(1 + |x|)`.
pub fn signed_log(x: f64) -> f64 {
    x.signum() * x.abs().ln_1p()
}

fn check_vector(index: usize, x: &[f64], expected: usize) -> Result<(), ClassifierError> {
    if x.len() != expected {
        return Err(ClassifierError::DimensionMismatch {
            index,
            got: x.len(),
            expected,
        });
    }
    match x.iter().position(|v| !v.is_finite()) {
        Some(feature) => Err(ClassifierError::NonFinite { index, feature }),
        None => Ok(()),
    }
}

/// Signed log, then per-feature standardisation with training statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogStandardizer {
    mean: Vec<f64>,
    std_dev: Vec<f64>,
}

impl LogStandardizer {
    /// Below this standard deviation a feature counts as constant and is
    /// only centred (it maps to about 0).
    const MIN_STD_DEV: f64 = 1e-12;

    /// Fits the means and standard deviations of `signed_log(x)` over `raw`.
    pub fn fit<R: AsRef<[f64]>>(raw: &[R]) -> Result<LogStandardizer, ClassifierError> {
        let first = raw.first().ok_or(ClassifierError::NoSamples)?;
        let dim = first.as_ref().len();
        let mut mean = vec![0.0; dim];
        for (index, x) in raw.iter().enumerate() {
            check_vector(index, x.as_ref(), dim)?;
            for (m, v) in mean.iter_mut().zip(x.as_ref()) {
                *m += signed_log(*v);
            }
        }
        let n = raw.len() as f64;
        mean.iter_mut().for_each(|m| *m /= n);
        let mut variance = vec![0.0; dim];
        for x in raw {
            for ((s, v), m) in variance.iter_mut().zip(x.as_ref()).zip(&mean) {
                *s += (signed_log(*v) - m).powi(2);
            }
        }
        let denominator = (n - 1.0).max(1.0);
        let std_dev = variance
            .into_iter()
            .map(|s| {
                let std_dev = (s / denominator).sqrt();
                if std_dev < Self::MIN_STD_DEV {
                    1.0
                } else {
                    std_dev
                }
            })
            .collect();
        Ok(LogStandardizer { mean, std_dev })
    }

    /// Number of features.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Writes the transformed `raw` into `out` (both of length [`Self::dim`]).
    pub fn transform_into(&self, raw: &[f64], out: &mut [f64]) -> Result<(), ClassifierError> {
        check_vector(0, raw, self.dim())?;
        if out.len() != self.dim() {
            return Err(ClassifierError::DimensionMismatch {
                index: 0,
                got: out.len(),
                expected: self.dim(),
            });
        }
        for (((o, v), m), s) in out.iter_mut().zip(raw).zip(&self.mean).zip(&self.std_dev) {
            *o = (signed_log(*v) - m) / s;
        }
        Ok(())
    }

    /// The transformed `raw`.
    pub fn transform(&self, raw: &[f64]) -> Result<Vec<f64>, ClassifierError> {
        let mut out = vec![0.0; self.dim()];
        self.transform_into(raw, &mut out)?;
        Ok(out)
    }
}

/// A class decision with its posterior probability.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The most probable class.
    pub class: usize,
    /// Its posterior probability under equal priors, in `(0, 1]`.
    pub posterior: f64,
}

/// Linear discriminant analysis with a shrunk pooled covariance.
#[derive(Debug, Clone, PartialEq)]
pub struct ShrinkageLda {
    /// Row `c` is `Σ⁻¹ μ_c`.
    weights: DMatrix<f64>,
    /// Entry `c` is `-½ μ_cᵀ Σ⁻¹ μ_c`.
    biases: DVector<f64>,
    /// Row `c` is `μ_c`.
    means: Vec<Vec<f64>>,
}

impl ShrinkageLda {
    /// Fits class means and the shrunk pooled covariance; every class in
    /// `0..classes` needs at least one sample.
    pub fn fit<R: AsRef<[f64]>>(
        samples: &[R],
        labels: &[usize],
        classes: usize,
        shrinkage: f64,
    ) -> Result<ShrinkageLda, ClassifierError> {
        if !(shrinkage > 0.0 && shrinkage <= 1.0) {
            return Err(ClassifierError::Shrinkage(shrinkage));
        }
        let first = samples.first().ok_or(ClassifierError::NoSamples)?;
        if samples.len() != labels.len() {
            return Err(ClassifierError::LabelCount {
                samples: samples.len(),
                labels: labels.len(),
            });
        }
        if samples.len() <= classes {
            return Err(ClassifierError::TooFewSamples {
                samples: samples.len(),
                classes,
            });
        }
        let dim = first.as_ref().len();
        let mut means = vec![vec![0.0; dim]; classes];
        let mut counts = vec![0usize; classes];
        for (index, (x, &class)) in samples.iter().zip(labels).enumerate() {
            check_vector(index, x.as_ref(), dim)?;
            if class >= classes {
                return Err(ClassifierError::ClassOutOfRange {
                    index,
                    class,
                    classes,
                });
            }
            counts[class] += 1;
            for (m, v) in means[class].iter_mut().zip(x.as_ref()) {
                *m += v;
            }
        }
        for (class, (mean, &count)) in means.iter_mut().zip(&counts).enumerate() {
            if count == 0 {
                return Err(ClassifierError::MissingClass { class });
            }
            mean.iter_mut().for_each(|m| *m /= count as f64);
        }
        let mut scatter = DMatrix::<f64>::zeros(dim, dim);
        let mut centred = DVector::<f64>::zeros(dim);
        for (x, &class) in samples.iter().zip(labels) {
            for ((c, v), m) in centred.iter_mut().zip(x.as_ref()).zip(&means[class]) {
                *c = v - m;
            }
            scatter.syger(1.0, &centred, &centred, 1.0);
        }
        scatter.fill_upper_triangle_with_lower_triangle();
        let mut covariance = scatter / (samples.len() - classes) as f64;
        let target = covariance.trace() / dim as f64;
        covariance *= 1.0 - shrinkage;
        for i in 0..dim {
            covariance[(i, i)] += shrinkage * target;
        }
        let precision = covariance
            .cholesky()
            .ok_or(ClassifierError::Singular)?
            .inverse();
        let mut weights = DMatrix::<f64>::zeros(classes, dim);
        let mut biases = DVector::<f64>::zeros(classes);
        for (class, mean) in means.iter().enumerate() {
            let mean = DVector::from_column_slice(mean);
            let weight = &precision * &mean;
            biases[class] = -0.5 * mean.dot(&weight);
            weights.set_row(class, &weight.transpose());
        }
        Ok(ShrinkageLda {
            weights,
            biases,
            means,
        })
    }

    /// Number of features.
    pub fn dim(&self) -> usize {
        self.weights.ncols()
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.means.len()
    }

    /// The training mean of `class` in feature space.
    pub fn class_mean(&self, class: usize) -> &[f64] {
        &self.means[class]
    }

    /// Writes the discriminant `δ_c(x)` of every class into `scores`.
    pub fn scores_into(&self, x: &[f64], scores: &mut [f64]) -> Result<(), ClassifierError> {
        check_vector(0, x, self.dim())?;
        if scores.len() != self.classes() {
            return Err(ClassifierError::DimensionMismatch {
                index: 0,
                got: scores.len(),
                expected: self.classes(),
            });
        }
        for (class, score) in scores.iter_mut().enumerate() {
            let row = self.weights.row(class);
            *score = self.biases[class] + row.iter().zip(x).map(|(w, v)| w * v).sum::<f64>();
        }
        Ok(())
    }

    /// The most probable class of `x` and its posterior (softmax of the
    /// discriminants; ties go to the lower class).
    pub fn classify(&self, x: &[f64]) -> Result<Prediction, ClassifierError> {
        let mut scores = vec![0.0; self.classes()];
        self.scores_into(x, &mut scores)?;
        Ok(prediction_from_scores(&scores))
    }
}

/// The arg-max class of `scores` and its softmax probability.
fn prediction_from_scores(scores: &[f64]) -> Prediction {
    let mut best = 0;
    for (class, score) in scores.iter().enumerate() {
        if *score > scores[best] {
            best = class;
        }
    }
    let top = scores[best];
    let normaliser: f64 = scores.iter().map(|s| (s - top).exp()).sum();
    Prediction {
        class: best,
        posterior: 1.0 / normaliser,
    }
}

/// Standardiser and discriminant fitted together on labelled raw vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct GasClassifier {
    standardizer: LogStandardizer,
    lda: ShrinkageLda,
}

impl GasClassifier {
    /// Fits the signed-log standardisation and the LDA on raw feature
    /// vectors with labels in `0..classes`.
    pub fn fit<R: AsRef<[f64]>>(
        raw: &[R],
        labels: &[usize],
        classes: usize,
        shrinkage: f64,
    ) -> Result<GasClassifier, ClassifierError> {
        let standardizer = LogStandardizer::fit(raw)?;
        let features = raw
            .iter()
            .map(|x| standardizer.transform(x.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let lda = ShrinkageLda::fit(&features, labels, classes, shrinkage)?;
        Ok(GasClassifier { standardizer, lda })
    }

    /// The feature transform (raw vector to standardised signed log).
    pub fn standardizer(&self) -> &LogStandardizer {
        &self.standardizer
    }

    /// The discriminant, which works on transformed vectors.
    pub fn lda(&self) -> &ShrinkageLda {
        &self.lda
    }

    /// Classifies a raw feature vector without any drift correction.
    pub fn classify_raw(&self, raw: &[f64]) -> Result<Prediction, ClassifierError> {
        self.lda.classify(&self.standardizer.transform(raw)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two well separated classes in 3 features, with some spread.
    fn two_blobs() -> (Vec<Vec<f64>>, Vec<usize>) {
        let mut samples = Vec::new();
        let mut labels = Vec::new();
        for i in 0..20 {
            let wobble = (i as f64 * 0.7).sin() * 0.3;
            samples.push(vec![1.0 + wobble, 2.0 - wobble, 0.5 * wobble]);
            labels.push(0);
            samples.push(vec![-1.0 + wobble, -2.0, 0.2 - wobble]);
            labels.push(1);
        }
        (samples, labels)
    }

    #[test]
    fn signed_log_is_odd_and_monotone() {
        assert_eq!(signed_log(0.0), 0.0);
        assert_eq!(signed_log(-5.0), -signed_log(5.0));
        assert!(signed_log(15596.0) > signed_log(2.0));
        assert!((signed_log(std::f64::consts::E - 1.0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn standardizer_centres_and_scales_the_training_set() {
        let raw: Vec<Vec<f64>> = (0..50)
            .map(|i| vec![10.0 * i as f64, -(i as f64) / 7.0, 3.0])
            .collect();
        let standardizer = LogStandardizer::fit(&raw).unwrap();
        let transformed: Vec<Vec<f64>> = raw
            .iter()
            .map(|x| standardizer.transform(x).unwrap())
            .collect();
        for feature in 0..2 {
            let mean = transformed.iter().map(|x| x[feature]).sum::<f64>() / 50.0;
            let var = transformed.iter().map(|x| x[feature].powi(2)).sum::<f64>() / 49.0;
            assert!(mean.abs() < 1e-12, "mean {mean}");
            assert!((var - 1.0).abs() < 1e-9, "variance {var}");
        }
        // A constant feature maps to about zero rather than NaN or infinity.
        assert!(transformed.iter().all(|x| x[2].abs() < 1e-9));
    }

    #[test]
    fn lda_separates_two_blobs_confidently() {
        let (samples, labels) = two_blobs();
        let lda = ShrinkageLda::fit(&samples, &labels, 2, 0.1).unwrap();
        for (x, &label) in samples.iter().zip(&labels) {
            let prediction = lda.classify(x).unwrap();
            assert_eq!(prediction.class, label);
            assert!(prediction.posterior > 0.99 && prediction.posterior <= 1.0);
        }
        assert!((lda.class_mean(1)[1] + 2.0).abs() < 1e-12);
    }

    #[test]
    fn posterior_is_one_half_between_equal_classes() {
        let prediction = prediction_from_scores(&[1.5, 1.5]);
        assert_eq!(prediction.class, 0);
        assert!((prediction.posterior - 0.5).abs() < 1e-12);
    }

    #[test]
    fn fitting_rejects_bad_input() {
        let (samples, labels) = two_blobs();
        assert_eq!(
            ShrinkageLda::fit(&samples, &labels, 3, 0.1),
            Err(ClassifierError::MissingClass { class: 2 })
        );
        assert_eq!(
            ShrinkageLda::fit(&samples, &labels, 2, 0.0),
            Err(ClassifierError::Shrinkage(0.0))
        );
        assert_eq!(
            ShrinkageLda::fit(&samples, &labels[1..], 2, 0.1),
            Err(ClassifierError::LabelCount {
                samples: 40,
                labels: 39
            })
        );
        let mut broken = samples.clone();
        broken[3][1] = f64::NAN;
        assert_eq!(
            ShrinkageLda::fit(&broken, &labels, 2, 0.1),
            Err(ClassifierError::NonFinite {
                index: 3,
                feature: 1
            })
        );
        let lda = ShrinkageLda::fit(&samples, &labels, 2, 0.1).unwrap();
        assert_eq!(
            lda.classify(&[1.0, 2.0]),
            Err(ClassifierError::DimensionMismatch {
                index: 0,
                got: 2,
                expected: 3
            })
        );
    }

    #[test]
    fn gas_classifier_works_on_raw_vectors_spanning_magnitudes() {
        // Class 0 responds strongly on sensor 0, class 1 on sensor 1; the
        // concentration scales both by up to two orders of magnitude.
        let mut raw = Vec::new();
        let mut labels = Vec::new();
        for step in 0..30 {
            let concentration = 1.0 + step as f64 * 3.0;
            raw.push(vec![1000.0 * concentration, 100.0 * concentration, -0.5]);
            labels.push(0);
            raw.push(vec![100.0 * concentration, 1000.0 * concentration, -0.4]);
            labels.push(1);
        }
        let classifier = GasClassifier::fit(&raw, &labels, 2, 0.05).unwrap();
        assert_eq!(classifier.classify_raw(&[5e4, 5e3, -0.5]).unwrap().class, 0);
        assert_eq!(classifier.classify_raw(&[5e3, 5e4, -0.4]).unwrap().class, 1);
    }
}
