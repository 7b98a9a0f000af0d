//! The machine's limit and how close the GEMM gets to it, measured on one core: a loop of
//! independent fused multiply-adds (the arithmetic peak of a path) and the GEMM on given
//! shapes. `netc-bench --peak` prints both, so throughput can be quoted as a fraction of it.

use crate::gemm::{gemm, pack_len, Isa, MatMut, MatRef};
use crate::ExecError;
use std::hint::black_box;
use std::time::Instant;

/// The sizes of one product `c[m × n] = a[m × k] · b[k × n]`, all row-major.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

impl GemmShape {
    /// Floating-point operations of one product (a multiply-add counts two).
    pub fn flops(self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64
    }
}

/// Refuses paths the CPU lacks.
fn available(isa: Isa) -> Result<(), ExecError> {
    if isa.is_available() {
        Ok(())
    } else {
        Err(ExecError::IsaUnavailable { isa })
    }
}

/// Calls `round` (which does `flops` operations) for at least `seconds` and five rounds, after
/// one warm-up round; returns the median GFLOP/s over the rounds.
fn median_rate(flops: f64, seconds: f64, mut round: impl FnMut()) -> f64 {
    round();
    let (start, mut rates) = (Instant::now(), Vec::new());
    while rates.len() < 5 || start.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        round();
        rates.push(flops / t.elapsed().as_secs_f64().max(1e-9) / 1e9);
    }
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// Independent multiply-add chains per register-width loop: enough to cover the FMA latency
/// on two pipes.
const CHAINS: usize = 16;
/// Multiply-adds per chain per round.
const STEPS: usize = 1 << 16;

/// The single-core arithmetic peak of path `isa` in GFLOP/s: the median rate of rounds of
/// `CHAINS` independent chains of fused multiply-adds at the path's vector width.
pub fn fma_peak_gflops(isa: Isa, seconds: f64) -> Result<f64, ExecError> {
    available(isa)?;
    let lanes = match isa {
        Isa::Avx512 => 16,
        Isa::Avx2 => 8,
        Isa::Portable => 1,
    };
    let flops = (2 * CHAINS * STEPS * lanes) as f64;
    let mut sink = 0.0f32;
    let rate = median_rate(flops, seconds, || {
        sink += match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has AVX-512F (checked by `available`).
            Isa::Avx512 => unsafe { fma_loop::avx512(black_box(STEPS)) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has AVX2 and FMA (checked by `available`).
            Isa::Avx2 => unsafe { fma_loop::avx2(black_box(STEPS)) },
            _ => fma_loop::scalar(black_box(STEPS)),
        };
    });
    black_box(sink);
    Ok(rate)
}

/// The GEMM's single-thread rate on `shape` with path `isa`, in GFLOP/s (median of rounds).
pub fn gemm_gflops(isa: Isa, shape: GemmShape, seconds: f64) -> Result<f64, ExecError> {
    available(isa)?;
    let GemmShape { m, n, k } = shape;
    let values = |len: usize, seed: usize| -> Vec<f32> {
        (0..len).map(|i| ((i * 7919 + seed) % 1000) as f32 / 1000.0 - 0.5).collect()
    };
    let (a, b) = (values(m * k, 1), values(k * n, 2));
    let mut c = vec![0.0f32; m * n];
    let mut pack = vec![0.0f32; pack_len(m, n, k)];
    Ok(median_rate(shape.flops(), seconds, || {
        let (a, b) = (MatRef::new(&a, 0, m, k, k, 1), MatRef::new(&b, 0, k, n, n, 1));
        gemm(isa, MatMut::new(&mut c, 0, m, n, n, 1), a, b, false, &mut pack);
        black_box(&mut c);
    }))
}

mod fma_loop {
    use super::CHAINS;

    /// `steps` multiply-adds on each of `CHAINS` scalar chains.
    pub(super) fn scalar(steps: usize) -> f32 {
        let mut acc = [0.0f32; CHAINS];
        let (x, y) = (std::hint::black_box(0.999_999f32), std::hint::black_box(1e-7f32));
        for _ in 0..steps {
            for a in &mut acc {
                *a = a.mul_add(x, y);
            }
        }
        acc.iter().sum()
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2(steps: usize) -> f32 {
        use std::arch::x86_64::*;
        let (x, y) = (_mm256_set1_ps(std::hint::black_box(0.999_999)), _mm256_set1_ps(std::hint::black_box(1e-7)));
        let mut acc = [_mm256_setzero_ps(); CHAINS];
        for _ in 0..steps {
            for a in &mut acc {
                *a = _mm256_fmadd_ps(*a, x, y);
            }
        }
        let mut total = [0.0f32; 8];
        for a in acc {
            let mut lanes = [0.0f32; 8];
            // SAFETY: `lanes` holds eight values.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), a) };
            total.iter_mut().zip(lanes).for_each(|(t, l)| *t += l);
        }
        total.iter().sum()
    }

    /// # Safety
    /// The CPU must support AVX-512F.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn avx512(steps: usize) -> f32 {
        use std::arch::x86_64::*;
        let (x, y) = (_mm512_set1_ps(std::hint::black_box(0.999_999)), _mm512_set1_ps(std::hint::black_box(1e-7)));
        let mut acc = [_mm512_setzero_ps(); CHAINS];
        for _ in 0..steps {
            for a in &mut acc {
                *a = _mm512_fmadd_ps(*a, x, y);
            }
        }
        acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_available_path_measures_a_positive_rate() {
        for isa in Isa::ALL.into_iter().filter(|isa| isa.is_available()) {
            assert!(fma_peak_gflops(isa, 0.0).expect("available") > 0.0, "{isa}");
            let shape = GemmShape { m: 7, n: 19, k: 5 };
            assert!(gemm_gflops(isa, shape, 0.0).expect("available") > 0.0, "{isa}");
        }
        for isa in Isa::ALL.into_iter().filter(|isa| !isa.is_available()) {
            assert_eq!(fma_peak_gflops(isa, 0.0), Err(ExecError::IsaUnavailable { isa }));
        }
    }
}
