//! Principal component analysis for fingerprints and multivariate process
//! monitoring: fit, projection, Hotelling's T², the squared prediction error
//! (SPE, Q) and their control limits and per-channel contributions.
//!
//! # Model
//!
//! A model is fitted on `n` reference observations of `p` variables (e-nose
//! channels, sniff-cycle features, process variables). Each variable is
//! centred on its reference mean `μ` and, when `standardise` is on, divided
//! by its reference standard deviation `s` (variables with no variance keep
//! `s = 1`, so a constant channel contributes its deviation in raw units).
//! The covariance `S` of the scaled reference data (divisor `n − 1`) is
//! diagonalised, `S = V Λ Vᵀ`, eigenvalues descending, and the first `k`
//! eigenvectors `P = V[:, ..k]` are kept: a fixed `k`, or the smallest `k`
//! explaining a given share of the variance.
//!
//! For an observation `x` with scaled form `z = (x − μ) / s`:
//!
//! ```text
//! scores       t   = Pᵀ z                       (k numbers)
//! Hotelling    T²  = Σ_a t_a² / λ_a             (distance inside the model plane)
//! residual     e   = z − P t
//! SPE / Q          = Σ_j e_j²                   (distance from the model plane)
//! ```
//!
//! # Control limits
//!
//! * T² for a new observation when mean and covariance were estimated from
//!   `n` reference observations (Tracy, Young & Mason 1992; Montgomery,
//!   *Introduction to Statistical Quality Control*, 7th ed., §11.3, Phase II):
//!   `T²_α = k (n + 1)(n − 1) / (n (n − k)) · F_{1−α}(k, n − k)`.
//! * SPE (Jackson & Mudholkar 1979, "Control procedures for residuals
//!   associated with principal component analysis", *Technometrics* 21):
//!   with `θ_i = Σ_{j>k} λ_j^i` over the discarded eigenvalues and
//!   `h₀ = 1 − 2θ₁θ₃ / (3θ₂²)`,
//!   `Q_α = θ₁ [ z_{1−α} √(2θ₂h₀²) / θ₁ + 1 + θ₂h₀(h₀ − 1) / θ₁² ]^{1/h₀}`.
//!   When `h₀ < 0.1` (one discarded eigenvalue dominating many small ones)
//!   that approximation fails, and the limit is Box's (1954) scaled χ²,
//!   `g · χ²_{1−α}(h)` with `g = θ₂/θ₁`, `h = θ₁²/θ₂`, which matches the
//!   mean and variance of SPE, but no lower than the largest discarded
//!   eigenvalue's own `λ·χ²_{1−α}(1)` plus the mean of the others (Box's
//!   tail is too light when one term dominates; checked by simulation). When nothing was discarded (or the residual
//!   variance is nil) the limit is zero and any residual is beyond it.
//!
//! # Contributions
//!
//! Alarms name the channels that drive them. SPE contributions are the
//! squared residuals `e_j²` (they sum to SPE). T² contributions use the
//! complete decomposition of Alcala & Qin (2009, "Reconstruction-based
//! contribution for process monitoring", *Automatica* 45): with
//! `D = P Λ⁻¹ Pᵀ`, `c_j = ((D^{1/2} z)_j)²`, which are non-negative and sum
//! to T² (`D^{1/2} z = P Λ^{-1/2} t`).
//!
//! # Cost
//!
//! Fitting is `O(n p² + p³)` (covariance plus a symmetric eigen-decomposition),
//! done once per model in a training dataflow. Projection is `O(p k)` per
//! observation and allocates only its result.

use nalgebra::{DMatrix, SymmetricEigen};
use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF, FisherSnedecor, Normal};

/// Why a model cannot be fitted or applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PcaError {
    /// Fewer reference observations than the model needs.
    #[error("PCA needs at least {needed} observations, got {got}")]
    TooFewObservations {
        /// The minimum.
        needed: usize,
        /// What was given.
        got: usize,
    },
    /// Observations of different lengths, or of the wrong length for the model.
    #[error("observation {index} has {got} variables, expected {expected}")]
    DimensionMismatch {
        /// Position of the offending observation.
        index: usize,
        /// Variables expected.
        expected: usize,
        /// Variables given.
        got: usize,
    },
    /// A value is NaN or infinite.
    #[error("observation {index} has a non-finite value in variable {variable}")]
    NonFinite {
        /// Position of the offending observation.
        index: usize,
        /// The variable.
        variable: usize,
    },
    /// The component rule cannot be met.
    #[error("invalid component choice: {0}")]
    Components(String),
    /// A limit was asked for with a false-alarm rate outside (0, 1).
    #[error("false-alarm rate {0} is not in (0, 1)")]
    Alpha(f64),
}

/// How many principal components a model keeps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Components {
    /// Exactly this many (at most the number of variables).
    Fixed(usize),
    /// The fewest components whose eigenvalues explain at least this share
    /// of the total variance, in (0, 1].
    VarianceExplained(f64),
}

/// How to fit a model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PcaConfig {
    /// Components kept.
    pub components: Components,
    /// Divide each variable by its reference standard deviation.
    pub standardise: bool,
}

impl Default for PcaConfig {
    fn default() -> Self {
        PcaConfig {
            components: Components::VarianceExplained(0.9),
            standardise: true,
        }
    }
}

/// A fitted PCA model: everything projection and limits need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PcaModel {
    /// Reference mean per variable.
    pub mean: Vec<f64>,
    /// Scale per variable (standard deviation, or 1).
    pub scale: Vec<f64>,
    /// Kept loadings, one vector of `p` per component, strongest first.
    pub loadings: Vec<Vec<f64>>,
    /// Kept eigenvalues (score variances), descending.
    pub eigenvalues: Vec<f64>,
    /// Discarded eigenvalues, descending (they set the SPE limit).
    pub residual_eigenvalues: Vec<f64>,
    /// Reference observations the model was fitted on.
    pub observations: usize,
}

/// One observation seen through a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    /// Scores on the kept components.
    pub scores: Vec<f64>,
    /// Hotelling's T².
    pub t2: f64,
    /// Squared prediction error (Q).
    pub spe: f64,
    /// Residual per variable, in scaled units.
    pub residuals: Vec<f64>,
}

/// Below this `h₀` the Jackson–Mudholkar SPE limit is replaced by Box's
/// scaled χ² (`h₀` near or below zero makes the power transform meaningless).
const JACKSON_MUDHOLKAR_MIN_H0: f64 = 0.1;

/// Below this share of the largest eigenvalue an eigenvalue is numerical
/// noise: a component with it would divide T² by almost zero.
const EIGENVALUE_FLOOR: f64 = 1e-12;

impl PcaModel {
    /// Fits a model to reference observations (rows).
    pub fn fit(observations: &[Vec<f64>], config: &PcaConfig) -> Result<PcaModel, PcaError> {
        let n = observations.len();
        if n < 3 {
            return Err(PcaError::TooFewObservations { needed: 3, got: n });
        }
        let p = observations[0].len();
        for (index, row) in observations.iter().enumerate() {
            if row.len() != p {
                return Err(PcaError::DimensionMismatch {
                    index,
                    expected: p,
                    got: row.len(),
                });
            }
            if let Some(variable) = row.iter().position(|v| !v.is_finite()) {
                return Err(PcaError::NonFinite { index, variable });
            }
        }
        let mut mean = vec![0.0; p];
        for row in observations {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut scale = vec![1.0; p];
        if config.standardise {
            for (j, s) in scale.iter_mut().enumerate() {
                let var = observations
                    .iter()
                    .map(|row| (row[j] - mean[j]).powi(2))
                    .sum::<f64>()
                    / (n - 1) as f64;
                if var > 0.0 {
                    *s = var.sqrt();
                }
            }
        }
        let scaled = DMatrix::from_fn(n, p, |i, j| (observations[i][j] - mean[j]) / scale[j]);
        let covariance = (scaled.transpose() * &scaled) / (n - 1) as f64;
        let eigen = SymmetricEigen::new(covariance);
        let mut order: Vec<usize> = (0..p).collect();
        order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
        let values: Vec<f64> = order
            .iter()
            .map(|&i| eigen.eigenvalues[i].max(0.0))
            .collect();
        let total: f64 = values.iter().sum();
        let floor = values.first().copied().unwrap_or(0.0) * EIGENVALUE_FLOOR;
        let usable = values.iter().take_while(|&&v| v > floor).count();
        let k = match config.components {
            Components::Fixed(k) if k == 0 || k > p => {
                return Err(PcaError::Components(format!(
                    "{k} components of {p} variables"
                )))
            }
            Components::Fixed(k) => k.min(usable.max(1)),
            Components::VarianceExplained(share) if !(share > 0.0 && share <= 1.0) => {
                return Err(PcaError::Components(format!(
                    "variance share {share} is not in (0, 1]"
                )))
            }
            Components::VarianceExplained(share) => {
                let mut explained = 0.0;
                let mut k = 0;
                while k < usable && (k == 0 || explained < share * total) {
                    explained += values[k];
                    k += 1;
                }
                k.max(1)
            }
        };
        let loadings = order[..k]
            .iter()
            .map(|&i| eigen.eigenvectors.column(i).iter().copied().collect())
            .collect();
        Ok(PcaModel {
            mean,
            scale,
            loadings,
            eigenvalues: values[..k].to_vec(),
            residual_eigenvalues: values[k..].to_vec(),
            observations: n,
        })
    }

    /// Number of variables.
    pub fn variables(&self) -> usize {
        self.mean.len()
    }

    /// Number of kept components.
    pub fn components(&self) -> usize {
        self.eigenvalues.len()
    }

    /// Share of the reference variance the kept components explain.
    pub fn explained_variance(&self) -> f64 {
        let kept: f64 = self.eigenvalues.iter().sum();
        let total = kept + self.residual_eigenvalues.iter().sum::<f64>();
        if total > 0.0 {
            kept / total
        } else {
            1.0
        }
    }

    /// The observation centred and scaled as the model sees it.
    pub fn scale_observation(&self, x: &[f64]) -> Result<Vec<f64>, PcaError> {
        if x.len() != self.variables() {
            return Err(PcaError::DimensionMismatch {
                index: 0,
                expected: self.variables(),
                got: x.len(),
            });
        }
        Ok(x.iter()
            .zip(&self.mean)
            .zip(&self.scale)
            .map(|((v, m), s)| (v - m) / s)
            .collect())
    }

    /// Projects one observation: scores, T², SPE and residuals.
    pub fn project(&self, x: &[f64]) -> Result<Projection, PcaError> {
        let z = self.scale_observation(x)?;
        let scores: Vec<f64> = self
            .loadings
            .iter()
            .map(|loading| dot(loading, &z))
            .collect();
        let t2 = scores
            .iter()
            .zip(&self.eigenvalues)
            .map(|(t, l)| t * t / l)
            .sum();
        let mut residuals = z;
        for (loading, t) in self.loadings.iter().zip(&scores) {
            for (r, l) in residuals.iter_mut().zip(loading) {
                *r -= t * l;
            }
        }
        let spe = residuals.iter().map(|r| r * r).sum();
        Ok(Projection {
            scores,
            t2,
            spe,
            residuals,
        })
    }

    /// Per-variable contributions to T² (complete decomposition; they sum to T²).
    pub fn t2_contributions(&self, projection: &Projection) -> Vec<f64> {
        let mut half = vec![0.0; self.variables()];
        for ((loading, t), l) in self
            .loadings
            .iter()
            .zip(&projection.scores)
            .zip(&self.eigenvalues)
        {
            let weight = t / l.sqrt();
            for (h, v) in half.iter_mut().zip(loading) {
                *h += weight * v;
            }
        }
        half.iter().map(|h| h * h).collect()
    }

    /// Per-variable contributions to SPE (squared residuals; they sum to SPE).
    pub fn spe_contributions(&self, projection: &Projection) -> Vec<f64> {
        projection.residuals.iter().map(|r| r * r).collect()
    }

    /// Upper control limit of T² at false-alarm rate `alpha` for a new observation.
    pub fn t2_limit(&self, alpha: f64) -> Result<f64, PcaError> {
        check_alpha(alpha)?;
        let k = self.components() as f64;
        let n = self.observations as f64;
        if n <= k + 1.0 {
            return Err(PcaError::TooFewObservations {
                needed: self.components() + 2,
                got: self.observations,
            });
        }
        let f = FisherSnedecor::new(k, n - k)
            .expect("degrees of freedom are positive")
            .inverse_cdf(1.0 - alpha);
        Ok(k * (n + 1.0) * (n - 1.0) / (n * (n - k)) * f)
    }

    /// Upper control limit of SPE at false-alarm rate `alpha` (Jackson–Mudholkar).
    pub fn spe_limit(&self, alpha: f64) -> Result<f64, PcaError> {
        check_alpha(alpha)?;
        let theta = |power: i32| -> f64 {
            self.residual_eigenvalues
                .iter()
                .map(|l| l.powi(power))
                .sum()
        };
        let (theta1, theta2, theta3) = (theta(1), theta(2), theta(3));
        if theta1 <= 0.0 || theta2 <= 0.0 {
            return Ok(0.0);
        }
        let h0 = 1.0 - 2.0 * theta1 * theta3 / (3.0 * theta2 * theta2);
        if h0 < JACKSON_MUDHOLKAR_MIN_H0 {
            // One discarded eigenvalue dominates many small ones: the
            // normal approximation behind Jackson–Mudholkar breaks down
            // (the limit falls below the mean). Box's scaled χ² matches the
            // first two moments of SPE whatever the spectrum.
            // Its far tail is too light when one term dominates, so the
            // limit is at least that term's own quantile plus the mean of
            // the others.
            let g = theta2 / theta1;
            let h = theta1 * theta1 / theta2;
            let box_limit = g * ChiSquared::new(h)
                .expect("h is positive")
                .inverse_cdf(1.0 - alpha);
            let largest = self
                .residual_eigenvalues
                .iter()
                .copied()
                .fold(0.0, f64::max);
            let dominant_limit = largest
                * ChiSquared::new(1.0)
                    .expect("one degree of freedom")
                    .inverse_cdf(1.0 - alpha)
                + (theta1 - largest);
            return Ok(box_limit.max(dominant_limit));
        }
        let z = Normal::standard().inverse_cdf(1.0 - alpha);
        let inner = z * (2.0 * theta2 * h0 * h0).sqrt() / theta1
            + 1.0
            + theta2 * h0 * (h0 - 1.0) / (theta1 * theta1);
        Ok(theta1 * inner.max(0.0).powf(1.0 / h0))
    }
}

fn check_alpha(alpha: f64) -> Result<(), PcaError> {
    if alpha > 0.0 && alpha < 1.0 {
        Ok(())
    } else {
        Err(PcaError::Alpha(alpha))
    }
}

/// Dot product of two equally long slices.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::Gaussian;
    use proptest::prelude::*;

    /// Observations of 6 variables driven by 2 latent factors plus small noise.
    fn two_factor_data(n: usize, seed: u64) -> Vec<Vec<f64>> {
        let mut rng = Gaussian(seed);
        let a = [1.0, 0.8, 0.6, 0.0, 0.1, -0.5];
        let b = [0.0, 0.3, -0.4, 1.0, 0.9, 0.2];
        (0..n)
            .map(|_| {
                let (f1, f2) = (3.0 * rng.next(), 2.0 * rng.next());
                (0..6)
                    .map(|j| 10.0 + f1 * a[j] + f2 * b[j] + 0.05 * rng.next())
                    .collect()
            })
            .collect()
    }

    fn fixed(k: usize) -> PcaConfig {
        PcaConfig {
            components: Components::Fixed(k),
            standardise: false,
        }
    }

    #[test]
    fn two_factors_explain_nearly_all_variance() {
        let data = two_factor_data(500, 1);
        let model = PcaModel::fit(&data, &PcaConfig::default()).unwrap();
        assert_eq!(model.components(), 2, "{:?}", model.eigenvalues);
        assert!(model.explained_variance() > 0.99);
        let loading_norms: Vec<f64> = model.loadings.iter().map(|l| dot(l, l)).collect();
        for norm in loading_norms {
            assert!((norm - 1.0).abs() < 1e-9);
        }
    }

    #[test]
    fn an_observation_off_the_model_plane_has_a_large_spe_on_its_channel() {
        let data = two_factor_data(500, 2);
        let model = PcaModel::fit(&data, &fixed(2)).unwrap();
        let limit = model.spe_limit(0.01).unwrap();
        let mut inside = data[0].clone();
        let projection = model.project(&inside).unwrap();
        assert!(projection.spe < limit, "{} >= {limit}", projection.spe);
        inside[3] += 1.0;
        let projection = model.project(&inside).unwrap();
        assert!(projection.spe > 10.0 * limit);
        let contributions = model.spe_contributions(&projection);
        let top = (0..6)
            .max_by(|&a, &b| contributions[a].total_cmp(&contributions[b]))
            .unwrap();
        assert_eq!(top, 3);
    }

    #[test]
    fn t2_contributions_sum_to_t2() {
        let data = two_factor_data(300, 3);
        let model = PcaModel::fit(&data, &PcaConfig::default()).unwrap();
        let projection = model.project(&[20.0, 5.0, 9.0, 14.0, 7.0, 11.0]).unwrap();
        let sum: f64 = model.t2_contributions(&projection).iter().sum();
        assert!((sum - projection.t2).abs() < 1e-9 * projection.t2.max(1.0));
    }

    /// The T² and SPE limits hold their false-alarm rate on fresh in-control data.
    #[test]
    fn limits_hold_their_false_alarm_rate() {
        let reference = two_factor_data(1_000, 4);
        let model = PcaModel::fit(&reference, &fixed(2)).unwrap();
        let (t2_limit, spe_limit) = (
            model.t2_limit(0.01).unwrap(),
            model.spe_limit(0.01).unwrap(),
        );
        let fresh = two_factor_data(20_000, 5);
        let (mut t2_alarms, mut spe_alarms) = (0, 0);
        for x in &fresh {
            let p = model.project(x).unwrap();
            t2_alarms += usize::from(p.t2 > t2_limit);
            spe_alarms += usize::from(p.spe > spe_limit);
        }
        let t2_rate = t2_alarms as f64 / fresh.len() as f64;
        let spe_rate = spe_alarms as f64 / fresh.len() as f64;
        assert!(
            (0.005..0.02).contains(&t2_rate),
            "T² false-alarm rate {t2_rate}"
        );
        assert!(
            (0.005..0.02).contains(&spe_rate),
            "SPE false-alarm rate {spe_rate}"
        );
    }

    /// SPE = Σ λ_j z_j² over the discarded eigenvalues; its 99.9 % quantile
    /// by simulation, against the limit, for an even and an uneven spectrum
    /// (the uneven one has h₀ < 0 and takes Box's approximation).
    #[test]
    fn spe_limit_holds_for_even_and_uneven_residual_spectra() {
        for residual in [vec![0.5; 10], {
            let mut uneven = vec![1.0];
            uneven.extend([0.1; 15]);
            uneven
        }] {
            let model = PcaModel {
                mean: vec![0.0; residual.len() + 1],
                scale: vec![1.0; residual.len() + 1],
                loadings: vec![vec![0.0; residual.len() + 1]],
                eigenvalues: vec![1.0],
                residual_eigenvalues: residual.clone(),
                observations: 1_000,
            };
            let limit = model.spe_limit(0.001).unwrap();
            let mut rng = Gaussian(42);
            let mut spe: Vec<f64> = (0..100_000)
                .map(|_| residual.iter().map(|l| l * rng.next().powi(2)).sum())
                .collect();
            spe.sort_by(f64::total_cmp);
            let quantile = spe[99_900];
            assert!(
                (limit / quantile - 1.0).abs() < 0.15,
                "{residual:?}: limit {limit}, simulated 99.9 % quantile {quantile}"
            );
        }
    }

    #[test]
    fn t2_limit_matches_the_f_distribution_formula() {
        // k = 2, n = 1000, alpha = 0.01: F(0.99; 2, 998) = 4.626 (tables).
        let model = PcaModel::fit(&two_factor_data(1_000, 6), &fixed(2)).unwrap();
        let limit = model.t2_limit(0.01).unwrap();
        let expected = 2.0 * 1001.0 * 999.0 / (1000.0 * 998.0) * 4.626;
        assert!((limit - expected).abs() < 0.01, "{limit} vs {expected}");
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        assert!(matches!(
            PcaModel::fit(&[vec![1.0], vec![2.0]], &PcaConfig::default()),
            Err(PcaError::TooFewObservations { .. })
        ));
        let ragged = vec![vec![1.0, 2.0], vec![1.0], vec![3.0, 4.0]];
        assert!(matches!(
            PcaModel::fit(&ragged, &PcaConfig::default()),
            Err(PcaError::DimensionMismatch { index: 1, .. })
        ));
        let nan = vec![vec![1.0, 2.0], vec![1.0, f64::NAN], vec![3.0, 4.0]];
        assert!(matches!(
            PcaModel::fit(&nan, &PcaConfig::default()),
            Err(PcaError::NonFinite {
                index: 1,
                variable: 1
            })
        ));
        let model = PcaModel::fit(&two_factor_data(10, 7), &fixed(2)).unwrap();
        assert!(model.project(&[1.0]).is_err());
        assert!(matches!(model.t2_limit(1.5), Err(PcaError::Alpha(_))));
        assert!(PcaModel::fit(&two_factor_data(10, 7), &fixed(9)).is_err());
    }

    #[test]
    fn a_constant_channel_keeps_unit_scale() {
        let data: Vec<Vec<f64>> = two_factor_data(50, 8)
            .into_iter()
            .map(|mut row| {
                row[5] = 4.0;
                row
            })
            .collect();
        let model = PcaModel::fit(&data, &PcaConfig::default()).unwrap();
        assert_eq!(model.scale[5], 1.0);
        let mut x = data[0].clone();
        x[5] = 5.0;
        assert!(model.project(&x).unwrap().spe >= 0.99);
    }

    proptest! {
        /// With every component kept, the reconstruction is exact (SPE 0).
        #[test]
        fn full_rank_reconstruction_is_exact(seed in 0u64..1_000) {
            let data = two_factor_data(40, seed);
            let model = PcaModel::fit(&data, &fixed(6)).unwrap();
            for x in data.iter().take(5) {
                let p = model.project(x).unwrap();
                prop_assert!(p.spe < 1e-12, "spe {}", p.spe);
            }
        }

        /// Reconstruction error never grows when more components are kept.
        #[test]
        fn spe_shrinks_with_more_components(seed in 0u64..1_000) {
            let data = two_factor_data(60, seed);
            let x = &data[seed as usize % 60];
            let mut previous = f64::INFINITY;
            for k in 1..=6 {
                let spe = PcaModel::fit(&data, &fixed(k)).unwrap().project(x).unwrap().spe;
                prop_assert!(spe <= previous + 1e-9);
                previous = spe;
            }
        }
    }
}
