//! Deterministic data parallelism. Work is cut into tasks whose boundaries depend only on the
//! shapes, never on the thread count; threads merely pick tasks up. Each task writes its own
//! part of the result, and reductions across tasks are summed afterwards in task order, so
//! results are bitwise identical for any number of threads.

use crate::gemm::Isa;
use rayon::prelude::*;

/// Runs the tasks of one step: inline with one thread, else on the current rayon pool (the
/// executor's own; steps run inside its `install`), with the GEMM microkernels of `isa`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Par {
    threads: usize,
    isa: Isa,
}

impl Par {
    /// `threads` threads on the CPU's fastest path.
    pub fn new(threads: usize) -> Par {
        Par { threads: threads.max(1), isa: Isa::best() }
    }

    /// The same threads on path `isa`, which the CPU must support.
    pub fn with_isa(self, isa: Isa) -> Par {
        Par { isa, ..self }
    }

    pub fn threads(self) -> usize {
        self.threads
    }

    /// The instruction set of the GEMM microkernels.
    pub fn isa(self) -> Isa {
        self.isa
    }

    /// Calls `f(index, chunk, worker)` for consecutive chunks of `data` of `chunk` elements
    /// (the last may be shorter); `worker < threads`
    /// identifies the thread, so tasks can use per-worker scratch: a worker runs one task at a
    /// time because tasks never wait on other rayon work.
    pub fn chunks_mut<T: Send>(self, data: &mut [T], chunk: usize, f: impl Fn(usize, &mut [T], usize) + Sync + Send) {
        let chunk = chunk.max(1);
        if self.threads == 1 || data.len() <= chunk {
            data.chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c, 0));
        } else {
            let threads = self.threads;
            data.par_chunks_mut(chunk)
                .enumerate()
                .for_each(|(i, c)| f(i, c, rayon::current_thread_index().unwrap_or(0) % threads));
        }
    }
}

impl Par {
    /// Calls `f(task)` for tasks `0..n`, which must touch disjoint memory.
    pub fn tasks(self, n: usize, f: impl Fn(usize) + Sync + Send) {
        if self.threads == 1 || n <= 1 {
            (0..n).for_each(f);
        } else {
            (0..n).into_par_iter().for_each(f);
        }
    }

    /// [`Par::chunks_mut`] over two slices in step: `f(index, chunk of a, chunk of b,
    /// worker)`. Both must split into the same number of chunks.
    pub fn chunks_mut2<T: Send, U: Send>(
        self,
        a: &mut [T],
        a_chunk: usize,
        b: &mut [U],
        b_chunk: usize,
        f: impl Fn(usize, &mut [T], &mut [U], usize) + Sync + Send,
    ) {
        let (a_chunk, b_chunk) = (a_chunk.max(1), b_chunk.max(1));
        assert_eq!(a.len().div_ceil(a_chunk), b.len().div_ceil(b_chunk), "the slices split differently");
        if self.threads == 1 || a.len() <= a_chunk {
            a.chunks_mut(a_chunk).zip(b.chunks_mut(b_chunk)).enumerate().for_each(|(i, (x, y))| f(i, x, y, 0));
        } else {
            let threads = self.threads;
            a.par_chunks_mut(a_chunk)
                .zip(b.par_chunks_mut(b_chunk))
                .enumerate()
                .for_each(|(i, (x, y))| f(i, x, y, rayon::current_thread_index().unwrap_or(0) % threads));
        }
    }
}

impl Par {
    /// [`Par::chunks_mut`] over `data` and, where given, a second slice of the same length cut
    /// the same way: `f(index, chunk of data, chunk of beside, worker)`.
    pub fn chunks_mut_beside<T: Send>(
        self,
        data: &mut [T],
        chunk: usize,
        beside: Option<&mut [T]>,
        f: impl Fn(usize, &mut [T], Option<&mut [T]>, usize) + Sync + Send,
    ) {
        match beside {
            Some(b) => self.chunks_mut2(data, chunk, b, chunk, |t, d, b, w| f(t, d, Some(b), w)),
            None => self.chunks_mut(data, chunk, |t, d, w| f(t, d, None, w)),
        }
    }
}

/// Scratch memory with one part per worker: worker `w` owns `len` elements at `w·len`.
pub(crate) struct Scratch<'a> {
    ptr: *mut f32,
    len: usize,
    workers: usize,
    _data: std::marker::PhantomData<&'a mut [f32]>,
}

// SAFETY: workers touch disjoint parts (see `Scratch::worker`).
unsafe impl Send for Scratch<'_> {}
// SAFETY: as above.
unsafe impl Sync for Scratch<'_> {}

impl<'a> Scratch<'a> {
    pub fn new(data: &'a mut [f32], workers: usize) -> Scratch<'a> {
        let workers = workers.max(1);
        Scratch { ptr: data.as_mut_ptr(), len: data.len() / workers, workers, _data: std::marker::PhantomData }
    }

    /// Worker `w`'s part.
    ///
    /// # Safety
    /// At most one task per worker may use its part at a time; [`Par`] guarantees this for the
    /// `worker` it passes.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn worker(&self, w: usize) -> &mut [f32] {
        assert!(w < self.workers, "worker {w} of {}", self.workers);
        // SAFETY: in bounds (the parts tile the buffer); exclusive by the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(w * self.len), self.len) }
    }
}

/// Splits `total` items into tasks of at most `max` items each, as evenly as possible:
/// returns (tasks, items per task); the last task may be shorter.
pub(crate) fn split(total: usize, max: usize) -> (usize, usize) {
    if total == 0 {
        return (0, 0);
    }
    let tasks = total.div_ceil(max.max(1));
    let size = total.div_ceil(tasks);
    (total.div_ceil(size), size)
}

/// Elements per task of elementwise kernels: big enough to amortise scheduling, small enough
/// to balance two to a few dozen threads.
pub(crate) const ELEMENTS_PER_TASK: usize = 1 << 14;

/// `wide!(isa, fn(name: Type = value, …) { body })` runs `body` (which returns nothing) in a
/// function compiled for the vector instructions of GEMM path `isa`, so that the loops of the
/// kernels it calls (marked `#[inline(always)]`, which inlines them into it) vectorise to that
/// width: the crate itself is compiled for baseline x86-64 (SSE2). Only the width changes,
/// never an operation or its order (Rust neither contracts nor reassociates floating-point
/// arithmetic), so results are bitwise the same on every path. `isa` must be one the CPU
/// supports, as every `Par`'s is. A closure would not do: LLVM does not inline one into a
/// function with other target features reliably, and then it runs at baseline width.
macro_rules! wide {
    ($isa:expr, fn($($arg:ident: $ty:ty = $value:expr),* $(,)?) $body:block) => {{
        #[inline(always)]
        fn body($($arg: $ty),*) $body
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn avx512($($arg: $ty),*) {
            body($($arg),*)
        }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2($($arg: $ty),*) {
            body($($arg),*)
        }
        match $isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU supports the path (the macro's contract).
            $crate::gemm::Isa::Avx512 => unsafe { avx512($($value),*) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            $crate::gemm::Isa::Avx2 => unsafe { avx2($($value),*) },
            _ => body($($value),*),
        }
    }};
}
pub(crate) use wide;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_even_and_covers_everything() {
        assert_eq!(split(100, 64), (2, 50));
        assert_eq!(split(1000, 64), (16, 63));
        assert_eq!(split(7, 64), (1, 7));
        assert_eq!(split(0, 64), (0, 0));
        for total in 1..300 {
            for max in 1..40 {
                let (tasks, size) = split(total, max);
                assert!(size <= max && tasks * size >= total && (tasks - 1) * size < total, "{total} {max}");
            }
        }
    }
}
