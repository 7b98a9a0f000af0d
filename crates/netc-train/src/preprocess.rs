//! The recipe's preprocessing of each example: its pixels (raw, scaled, or less the mean
//! training image), then optionally MatConvNet `cnn_cifar`'s contrast normalisation and ZCA
//! whitening, with the statistics they learn from the data. The statistics are stored with the
//! weights, so evaluation and prediction preprocess exactly as training did.
//!
//! As `cnn_cifar.m` (MatConvNet beta13–16) computes them, for images `z` of `D` values after
//! the mean image is subtracted:
//! - contrast normalisation: `z ← z − mean(z)`, then `z ← z · mean(n) / max(n, 40)`, where `n`
//!   is the standard deviation of the centred image (divisor `D − 1`) and `mean(n)` its mean over
//!   the training and test images;
//! - whitening: `C = Σ z zᵀ / N` over the training images, with `N` the number of training *and*
//!   test images; `C = V diag(d) Vᵀ`; `z ← V diag(sqrt(mean(d)) / max(sqrt(d), 10)) Vᵀ z`.

use crate::{Samples, Values};
use netc_check::{Preprocess, TrainConfig};

/// The standard deviation below which contrast normalisation stops amplifying an image.
pub const MIN_NORM: f64 = 40.0;
/// What `preprocess = scale` divides pixels by, to bring them to [0, 1].
pub const SCALE_DIVISOR: f32 = 255.0;
/// The square root of an eigenvalue below which whitening stops amplifying its direction.
const MIN_SQRT_EIGENVALUE: f64 = 10.0;

/// Which preprocessing steps a recipe takes, in the order they apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recipe {
    pub pixels: Preprocess,
    pub contrast_norm: bool,
    pub whiten: bool,
}

impl Recipe {
    pub fn of(config: &TrainConfig) -> Recipe {
        Recipe { pixels: config.preprocess, contrast_norm: config.contrast_norm, whiten: config.whiten }
    }

    /// What the statistics of examples of `image_len` values must hold for this recipe.
    pub fn needs(self, image_len: usize) -> Needs {
        Needs {
            mean: (self.pixels == Preprocess::MeanImage).then_some(image_len),
            mean_norm: self.contrast_norm,
            whitening: self.whiten.then_some(image_len),
        }
    }
}

/// The statistics a recipe needs, as a weights file must hold them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Needs {
    /// The mean image's length.
    pub mean: Option<usize>,
    /// Whether the mean standard deviation of contrast normalisation is needed.
    pub mean_norm: bool,
    /// The side of the square whitening matrix.
    pub whitening: Option<usize>,
}

/// What preprocessing learned from the data.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Statistics {
    /// The mean training image.
    pub mean: Option<Vec<f32>>,
    /// The mean over training and test images of their standard deviation after centring.
    pub mean_norm: Option<f32>,
    /// The ZCA matrix, `D × D` row by row.
    pub whitening: Option<Vec<f32>>,
}

impl Statistics {
    /// Learns what `recipe` needs from the training set (and, as `cnn_cifar` does for the mean
    /// standard deviation and the covariance's divisor, the test set's images).
    pub fn learn(recipe: Recipe, train: &Samples, test: &Samples) -> Statistics {
        let mut stats = Statistics {
            mean: (recipe.pixels == Preprocess::MeanImage).then(|| mean_image(train)),
            ..Statistics::default()
        };
        let len = train.image_len;
        let mut z = vec![0f32; len];
        if recipe.contrast_norm {
            let images = train.images.chunks(len).chain(test.images.chunks(len));
            let (mut sum, mut count) = (0f64, 0usize);
            for image in images {
                stats.pixels(recipe.pixels, image, &mut z);
                sum += centre(&mut z);
                count += 1;
            }
            stats.mean_norm = Some((sum / count.max(1) as f64) as f32);
        }
        if recipe.whiten {
            let without_whitening = Recipe { whiten: false, ..recipe };
            let mut scratch = Vec::new();
            let mut normalised = train.images.chunks(len).map(|image| {
                stats.apply(without_whitening, image, &mut z, &mut scratch);
                z.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>()
            });
            let divisor = (train.len() + test.len()).max(1) as f64;
            stats.whitening = Some(if train.len() < len {
                // Fewer images than values: the covariance's eigenvectors of non-zero eigenvalue
                // come from the small Gram matrix of the images; the rest have eigenvalue 0.
                let images: Vec<Vec<f64>> = normalised.collect();
                zca_from_images(&images, len, divisor)
            } else {
                let mut covariance = vec![0f64; len * len];
                for z in &mut normalised {
                    for (i, &zi) in z.iter().enumerate() {
                        covariance[i * len..][..=i].iter_mut().zip(&z).for_each(|(c, &zj)| *c += zi * zj);
                    }
                }
                for i in 0..len {
                    for j in 0..=i {
                        covariance[i * len + j] /= divisor;
                        covariance[j * len + i] = covariance[i * len + j];
                    }
                }
                let (values, vectors) = symmetric_eigen(covariance, len);
                let columns = (0..len).map(|k| (0..len).map(|i| vectors[i * len + k]).collect()).collect();
                zca(&values, columns, len)
            });
        }
        stats
    }

    /// The network's input for one example: `pixels` through every step of `recipe` into `out`.
    /// `scratch` is grown once to the example's length and reused.
    pub fn apply(&self, recipe: Recipe, pixels: Values, out: &mut [f32], scratch: &mut Vec<f32>) {
        self.pixels(recipe.pixels, pixels, out);
        if let (true, Some(mean_norm)) = (recipe.contrast_norm, self.mean_norm) {
            let norm = centre(out);
            let factor = (f64::from(mean_norm) / norm.max(MIN_NORM)) as f32;
            out.iter_mut().for_each(|v| *v *= factor);
        }
        if let (true, Some(w)) = (recipe.whiten, &self.whitening) {
            scratch.clear();
            scratch.extend_from_slice(out);
            for (o, row) in out.iter_mut().zip(w.chunks_exact(scratch.len().max(1))) {
                *o = row.iter().zip(scratch.iter()).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum::<f64>() as f32;
            }
        }
    }

    /// The first step: raw values, scaled by 1/255 (pixels to [0, 1]), or less the mean image.
    fn pixels(&self, pixels: Preprocess, image: Values, out: &mut [f32]) {
        match (pixels, &self.mean) {
            (Preprocess::MeanImage, Some(mean)) => {
                out.iter_mut().zip(image.each()).zip(mean).for_each(|((o, p), &m)| *o = p - m)
            }
            (Preprocess::Scale, _) => out.iter_mut().zip(image.each()).for_each(|(o, p)| *o = p / SCALE_DIVISOR),
            _ => out.iter_mut().zip(image.each()).for_each(|(o, p)| *o = p),
        }
    }
}

/// Subtracts the image's mean from every value; returns its standard deviation (divisor `D − 1`).
fn centre(z: &mut [f32]) -> f64 {
    let n = z.len() as f64;
    let mean = z.iter().map(|&v| f64::from(v)).sum::<f64>() / n.max(1.0);
    z.iter_mut().for_each(|v| *v = (f64::from(*v) - mean) as f32);
    let squares: f64 = z.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    (squares / (n - 1.0).max(1.0)).sqrt()
}

/// The mean training image, summed in f64 so it does not depend on summation order.
pub fn mean_image(samples: &Samples) -> Vec<f32> {
    let mut sum = vec![0f64; samples.image_len];
    for image in samples.images.chunks(samples.image_len) {
        sum.iter_mut().zip(image.each()).for_each(|(s, p)| *s += f64::from(p));
    }
    let n = samples.len().max(1) as f64;
    sum.into_iter().map(|s| (s / n) as f32).collect()
}

/// The whitening matrix of the covariance `Σ zzᵀ / divisor` of fewer `images` than values: with
/// `G = Z Zᵀ / divisor = U diag(λ) Uᵀ`, the covariance's eigenvectors of eigenvalue `λₖ > 0` are
/// `Zᵀ uₖ / sqrt(divisor · λₖ)`; every other eigenvalue is 0.
fn zca_from_images(images: &[Vec<f64>], len: usize, divisor: f64) -> Vec<f32> {
    let n = images.len();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let mut gram = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            gram[i * n + j] = dot(&images[i], &images[j]) / divisor;
            gram[j * n + i] = gram[i * n + j];
        }
    }
    let (values, u) = symmetric_eigen(gram, n);
    let mut all_values = vec![0f64; len];
    let mut vectors = Vec::new();
    for (k, &value) in values.iter().enumerate() {
        all_values[k] = value;
        if value > 0.0 {
            let scale = (divisor * value).sqrt();
            let mut v = vec![0f64; len];
            for (i, image) in images.iter().enumerate() {
                v.iter_mut().zip(image).for_each(|(v, &x)| *v += x * u[i * n + k] / scale);
            }
            vectors.push(v);
        } else {
            vectors.push(vec![0f64; len]);
        }
    }
    zca(&all_values, vectors, len)
}

/// `V diag(sqrt(mean(d)) / max(sqrt(d), 10)) Vᵀ` from the eigenvalues `values` of a `len × len`
/// covariance and its eigenvectors `vectors` (those of the first `vectors.len()` values; the
/// others are any orthonormal completion), computed as `f₀ I + Σₖ (fₖ − f₀) vₖ vₖᵀ` with `f₀` the
/// factor of the floor, so that directions at the floor need no eigenvector.
fn zca(values: &[f64], vectors: Vec<Vec<f64>>, len: usize) -> Vec<f32> {
    let scale = (values.iter().sum::<f64>() / len.max(1) as f64).sqrt();
    let floor = scale / MIN_SQRT_EIGENVALUE;
    let mut w = vec![0f64; len * len];
    (0..len).for_each(|i| w[i * len + i] = floor);
    for (&d, v) in values.iter().zip(&vectors) {
        // A covariance's eigenvalues are non-negative; rounding can leave tiny negative ones.
        let factor = scale / d.max(0.0).sqrt().max(MIN_SQRT_EIGENVALUE) - floor;
        if factor == 0.0 {
            continue;
        }
        for (i, &vi) in v.iter().enumerate() {
            w[i * len..][..len].iter_mut().zip(v).for_each(|(w, &vj)| *w += factor * vi * vj);
        }
    }
    w.into_iter().map(|x| x as f32).collect()
}

/// Eigenvalues and eigenvectors (the columns of the row-major result) of a symmetric matrix, by
/// cyclic Jacobi rotations until the off-diagonal part vanishes: slow for large matrices (cubic
/// per sweep), but simple, accurate and deterministic.
fn symmetric_eigen(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0f64; n * n];
    (0..n).for_each(|i| v[i * n + i] = 1.0);
    let total: f64 = a.iter().map(|x| x * x).sum();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j].powi(2))
            .sum();
        if off <= total * 1e-30 || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Five training and two test images of four values. The expected values below were
    // computed independently with numpy 2.4 in float64, following `cnn_cifar.m` line by line
    // (`np.std(ddof=1)` for MATLAB's `std(z, 0, 1)`, `np.linalg.eigh` for `eig`):
    //
    //   m = train.mean(0); train -= m; test -= m                        # mean_image
    //   z = vstack([train, test]); z -= z.mean(1, keepdims=True)       # contrast_norm
    //   n = z.std(1, ddof=1); z *= (n.mean() / maximum(n, 40))[:, None]
    //   C = train.T @ train / (len(train) + len(test))                 # zca
    //   d, V = eigh(C); W = V @ diag(sqrt(d.mean()) / maximum(sqrt(d), 10)) @ V.T
    //   train, test = train @ W.T, test @ W.T
    const TRAIN: [u8; 20] = [10, 200, 30, 90, 0, 255, 128, 64, 50, 60, 70, 80, 255, 0, 255, 0, 12, 14, 250, 3];
    const TEST: [u8; 8] = [100, 100, 101, 99, 0, 0, 0, 255];

    fn run(pixels: Preprocess, contrast_norm: bool, whiten: bool) -> (Statistics, Vec<f32>, Vec<f32>) {
        let recipe = Recipe { pixels, contrast_norm, whiten };
        let train = Samples { images: Values::Bytes(&TRAIN), labels: &[0; 5], image_len: 4 };
        let test = Samples { images: Values::Bytes(&TEST), labels: &[0; 2], image_len: 4 };
        let stats = Statistics::learn(recipe, &train, &test);
        let apply = |pixels: &[u8]| {
            let mut out = vec![0f32; pixels.len()];
            crate::preprocess_all(recipe, &stats, Values::Bytes(pixels), 4, &mut out, &mut Vec::new());
            out
        };
        let (train, test) = (apply(&TRAIN), apply(&TEST));
        (stats, train, test)
    }

    fn assert_close(found: &[f32], expected: &[f64]) {
        assert_eq!(found.len(), expected.len());
        for (i, (&f, &e)) in found.iter().zip(expected).enumerate() {
            assert!((f64::from(f) - e).abs() <= 1e-4 * e.abs().max(1.0), "element {i}: {f} against {e}\n{found:?}");
        }
    }

    #[test]
    fn mean_image_subtraction_matches_numpy() {
        let (stats, train, test) = run(Preprocess::MeanImage, false, false);
        assert_eq!(stats.mean.as_deref(), Some(&[65.4, 105.8, 146.6, 47.4][..]));
        #[rustfmt::skip]
        assert_close(&train, &[-55.4, 94.2, -116.6, 42.6, -65.4, 149.2, -18.6, 16.6, -15.4, -45.8, -76.6, 32.6,
            189.6, -105.8, 108.4, -47.4, -53.4, -91.8, 103.4, -44.4]);
        assert_close(&test, &[34.6, -5.8, -45.6, 51.6, -65.4, -105.8, -146.6, 207.6]);
    }

    #[test]
    fn contrast_normalisation_matches_numpy_including_the_floor_of_40() {
        // The third image's standard deviation (12.9) is below 40: it is scaled by mean(n) / 40.
        let (stats, train, test) = run(Preprocess::None, true, false);
        assert!((f64::from(stats.mean_norm.unwrap()) - 86.13797124847936).abs() < 1e-4, "{stats:?}");
        #[rustfmt::skip]
        assert_close(&train, &[-73.1339856097758, 118.52749391929181, -52.95909302776869, 7.565584718252669,
            -88.42319404859252, 113.34785277369913, 12.85795886612643, -37.78261759123304, -32.30173921817976,
            -10.76724640605992, 10.76724640605992, 32.30173921817976, 74.5976713316367, -74.5976713316367,
            74.5976713316367, -74.5976713316367, -41.36363388967981, -39.93112708830562, 129.1046754738491,
            -47.80991449586368]);
        #[rustfmt::skip]
        assert_close(&test, &[0.0, 0.0, 2.153449281211984, -2.153449281211984, -43.06898562423968,
            -43.06898562423968, -43.06898562423968, 129.20695687271905]);
    }

    #[test]
    fn zca_whitening_matches_numpy() {
        let (stats, train, test) = run(Preprocess::None, false, true);
        #[rustfmt::skip]
        assert_close(&stats.whitening.unwrap(), &[1.6034163613300796, 0.24012012682349104, -0.5744112986409713,
            -0.2541208489767822, 0.24012012682349107, 1.4101913749815742, -0.2675781096417178, -1.3159044501272121,
            -0.5744112986409713, -0.2675781096417178, 1.0560212108996267, 0.0765505548211863, -0.25412084897678233,
            -1.3159044501272121, 0.07655055482118636, 4.297000804768948]);
        #[rustfmt::skip]
        assert_close(&train, &[23.95497361085947, 157.98073246384914, -20.689548653857702, 123.30449055863066,
            -28.557748220568172, 241.13091777801995, 71.8375325450701, -50.74911226011454, 34.03956685290289,
            -27.38533484502822, 35.27027763811714, 257.45829376252703, 262.39629098572266, -7.001785618647816,
            122.81052762595714, -45.280425009676975, -121.76250909568334, -48.21811998918715, 253.59592527069452,
            10.556528630101077]);
        #[rustfmt::skip]
        assert_close(&test, &[101.18014360391753, 7.731220544099028, 30.037706399890844, 276.1321557986662,
            -64.80081648907947, -335.5556347824391, 19.52039147940251, 1095.7352052160818]);
    }

    #[test]
    fn the_whole_cnn_cifar_recipe_matches_numpy() {
        // After contrast normalisation every image sums to zero, so the covariance is singular:
        // its zero eigenvalue is floored at 10² rather than blown up.
        let (stats, train, test) = run(Preprocess::MeanImage, true, true);
        #[rustfmt::skip]
        assert_close(&stats.whitening.unwrap(), &[2.7178029182870866, 1.722987381105507, 1.2595091938426628,
            1.1971902217171346, 1.722987381105507, 2.407158462792688, 1.544133710650626, 1.2232101604035663,
            1.259509193842663, 1.544133710650626, 2.38805354390892, 1.7057932665501796, 1.1971902217171346,
            1.2232101604035663, 1.7057932665501796, 2.771296066281507]);
        #[rustfmt::skip]
        assert_close(&train, &[-23.247065934319405, 63.584584813509736, -68.88508508922781, 28.547566210037072,
            -66.74547406377016, 99.17016839738245, -9.347429531169851, -23.077264802442617, 6.453032054147813,
            -68.40170689119594, -72.95337168053663, 134.9020465175851, 112.60006730041636, -47.14214649473519,
            2.5922959884065953, -68.05021679408728, -85.21305728485333, -64.7932796322429, 121.71944162085785,
            28.28689529623828]);
        #[rustfmt::skip]
        assert_close(&test, &[61.50983571016254, -46.928460916111995, -100.2799485455527, 85.69857375150212,
            -62.41088551362241, -88.0818296894592, -30.395254125039322, 180.88796932812065]);
    }

    #[test]
    fn fewer_images_than_values_whiten_as_the_full_covariance_does() {
        // Two training images of four values: the Gram-matrix path against the full one.
        let train = Samples { images: Values::Bytes(&TRAIN[..8]), labels: &[0; 2], image_len: 4 };
        let test = Samples { images: Values::Bytes(&TEST), labels: &[0; 2], image_len: 4 };
        let recipe = Recipe { pixels: Preprocess::MeanImage, contrast_norm: true, whiten: true };
        let found = Statistics::learn(recipe, &train, &test).whitening.unwrap();
        let stats = Statistics::learn(Recipe { whiten: false, ..recipe }, &train, &test);
        let mut covariance = vec![0f64; 16];
        for image in TRAIN[..8].chunks_exact(4) {
            let mut z = vec![0f32; 4];
            stats.apply(Recipe { whiten: false, ..recipe }, Values::Bytes(image), &mut z, &mut Vec::new());
            for i in 0..4 {
                for j in 0..4 {
                    covariance[i * 4 + j] += f64::from(z[i]) * f64::from(z[j]) / 4.0;
                }
            }
        }
        let (values, vectors) = symmetric_eigen(covariance, 4);
        let columns = (0..4).map(|k| (0..4).map(|i| vectors[i * 4 + k]).collect()).collect();
        let expected: Vec<f64> = zca(&values, columns, 4).into_iter().map(f64::from).collect();
        assert_close(&found, &expected);
    }

    #[test]
    fn jacobi_diagonalises_a_known_matrix() {
        // [[2, 1], [1, 2]] has eigenvalues 1 and 3, eigenvectors (1, ∓1)/√2.
        let (mut values, vectors) = symmetric_eigen(vec![2.0, 1.0, 1.0, 2.0], 2);
        values.sort_by(f64::total_cmp);
        assert!((values[0] - 1.0).abs() < 1e-12 && (values[1] - 3.0).abs() < 1e-12, "{values:?}");
        let h = std::f64::consts::FRAC_1_SQRT_2;
        assert!(vectors.iter().all(|v| (v.abs() - h).abs() < 1e-12), "{vectors:?}");
    }
}
