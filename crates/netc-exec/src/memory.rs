//! The arena every value, constant and scratch buffer of one batch size lives in, and the
//! offset assignment that lets values whose lifetimes do not overlap share memory.

/// A range of the arena, in `f32` elements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Region {
    pub off: usize,
    pub len: usize,
}

/// Offsets are multiples of this many elements (64 bytes), so buffers start on cache lines.
const ALIGN: usize = 16;

/// One allocation, made when a batch size is first prepared.
#[derive(Debug)]
pub(crate) struct Arena {
    buf: Vec<f32>,
    /// Index of the first cache-line-aligned element of `buf`.
    start: usize,
    len: usize,
}

impl Arena {
    /// A zeroed arena of `len` elements, or `None` if the memory is not available.
    pub fn try_new(len: usize) -> Option<Arena> {
        let total = len.checked_add(ALIGN)?;
        let mut buf: Vec<f32> = Vec::new();
        buf.try_reserve_exact(total).ok()?;
        buf.resize(total, 0.0);
        let misalign = (buf.as_ptr() as usize / std::mem::size_of::<f32>()) % ALIGN;
        let start = (ALIGN - misalign) % ALIGN;
        Some(Arena { buf, start, len })
    }

    pub fn get(&self, r: Region) -> Option<&[f32]> {
        self.buf[self.start..self.start + self.len].get(r.off..r.off.checked_add(r.len)?)
    }

    pub fn get_mut(&mut self, r: Region) -> Option<&mut [f32]> {
        self.buf[self.start..self.start + self.len].get_mut(r.off..r.off.checked_add(r.len)?)
    }

    /// Raw access for a run, which hands disjoint regions to kernels and tasks.
    pub fn mem(&mut self) -> Mem {
        let whole = &mut self.buf[self.start..self.start + self.len];
        Mem { base: whole.as_mut_ptr(), len: whole.len() }
    }
}

/// The arena during a run: a base pointer that kernels and tasks slice by region.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mem {
    base: *mut f32,
    len: usize,
}

// SAFETY: `Mem` is only a base pointer; every access goes through `get`/`get_mut`, whose
// callers guarantee that regions written by one thread are not accessed by another.
unsafe impl Send for Mem {}
// SAFETY: as above.
unsafe impl Sync for Mem {}

impl Mem {
    /// # Safety
    /// No mutable slice of an overlapping region may be alive while the result is.
    pub unsafe fn get<'a>(self, r: Region) -> &'a [f32] {
        assert!(r.off + r.len <= self.len, "region {r:?} outside the arena of {}", self.len);
        // SAFETY: in bounds (checked above) of the arena, which outlives the run; aliasing is
        // the caller's obligation.
        unsafe { std::slice::from_raw_parts(self.base.add(r.off), r.len) }
    }

    /// The start of region `r`, for code that takes raw pointers.
    pub fn ptr(self, r: Region) -> *mut f32 {
        assert!(r.off + r.len <= self.len, "region {r:?} outside the arena of {}", self.len);
        // SAFETY: in bounds (checked above).
        unsafe { self.base.add(r.off) }
    }

    /// # Safety
    /// No other slice of an overlapping region may be alive while the result is.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get_mut<'a>(self, r: Region) -> &'a mut [f32] {
        assert!(r.off + r.len <= self.len, "region {r:?} outside the arena of {}", self.len);
        // SAFETY: as in `get`.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(r.off), r.len) }
    }
}

/// Arena memory holding integers (a max pooling's positions): `f32` and `u32` have the same
/// size and alignment, and every bit pattern is valid for both.
pub(crate) fn as_bits(values: &[f32]) -> &[u32] {
    // SAFETY: same size, alignment and validity (see above); the borrow is carried over.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast(), values.len()) }
}

/// [`as_bits`] for writing.
pub(crate) fn as_bits_mut(values: &mut [f32]) -> &mut [u32] {
    // SAFETY: as in `as_bits`.
    unsafe { std::slice::from_raw_parts_mut(values.as_mut_ptr().cast(), values.len()) }
}

/// A buffer to place: needed from step `first` through step `last` (inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Lifetime {
    pub first: usize,
    pub last: usize,
    pub len: usize,
}

/// Above this many buffers, [`assign`] places them in step order instead of by size: the
/// greedy placement compares every buffer with all those placed before it.
const GREEDY_ITEMS: usize = 4096;

/// Saturating: an absurd size must fail to allocate, not wrap around.
fn padded(len: usize) -> usize {
    len.div_ceil(ALIGN).saturating_mul(ALIGN)
}

/// Offsets for `items` such that items alive at the same step do not overlap, and the arena
/// length. Greedy by decreasing size, each at the lowest offset that fits: close to optimal
/// for the chain-like lifetimes of neural nets. A program of thousands of layers is placed
/// in step order instead, in time linear in its buffers but for a logarithm.
pub(crate) fn assign(items: &[Lifetime]) -> (Vec<usize>, usize) {
    if items.len() > GREEDY_ITEMS {
        return assign_in_step_order(items);
    }
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(items[i].len), items[i].first, i));
    let mut offsets = vec![0usize; items.len()];
    let mut placed: Vec<usize> = Vec::with_capacity(items.len());
    let mut total = 0;
    let mut busy: Vec<(usize, usize)> = Vec::new();
    for i in order {
        let item = items[i];
        busy.clear();
        busy.extend(
            placed
                .iter()
                .filter(|&&j| items[j].first <= item.last && item.first <= items[j].last)
                .map(|&j| (offsets[j], offsets[j].saturating_add(padded(items[j].len)))),
        );
        busy.sort_unstable();
        let mut at = 0usize;
        for &(start, end) in &busy {
            if start >= at.saturating_add(padded(item.len)) {
                break;
            }
            at = at.max(end);
        }
        offsets[i] = at;
        total = total.max(at.saturating_add(padded(item.len)));
        placed.push(i);
    }
    (offsets, total)
}

/// Offsets as an allocator running the step would choose them: each buffer, when its first
/// step comes, takes the smallest free block that holds it (the lowest such), or the top of the
/// arena; it is freed after its last step, and free neighbours merge.
fn assign_in_step_order(items: &[Lifetime]) -> (Vec<usize>, usize) {
    use std::collections::{BTreeMap, BTreeSet};
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| (items[i].first, i));
    let mut ends: Vec<usize> = order.clone();
    ends.sort_by_key(|&i| (items[i].last, i));
    let mut ends = ends.into_iter().peekable();
    let mut offsets = vec![0usize; items.len()];
    // Free blocks by offset (their lengths), and by (length, offset).
    let mut free_at: BTreeMap<usize, usize> = BTreeMap::new();
    let mut free_by_len: BTreeSet<(usize, usize)> = BTreeSet::new();
    let mut top = 0usize;
    for i in order {
        let item = items[i];
        while let Some(&j) = ends.peek().filter(|&&j| items[j].last < item.first) {
            ends.next();
            let (mut start, mut len) = (offsets[j], padded(items[j].len));
            if let Some((&before, &before_len)) = free_at.range(..start).next_back() {
                if before.saturating_add(before_len) == start {
                    free_at.remove(&before);
                    free_by_len.remove(&(before_len, before));
                    (start, len) = (before, before_len.saturating_add(len));
                }
            }
            if let Some(after_len) = free_at.remove(&start.saturating_add(len)) {
                free_by_len.remove(&(after_len, start.saturating_add(len)));
                len = len.saturating_add(after_len);
            }
            free_at.insert(start, len);
            free_by_len.insert((len, start));
        }
        let need = padded(item.len);
        offsets[i] = match free_by_len.range((need, 0)..).next().copied() {
            Some((len, start)) => {
                free_by_len.remove(&(len, start));
                free_at.remove(&start);
                if len > need {
                    free_at.insert(start + need, len - need);
                    free_by_len.insert((len - need, start + need));
                }
                start
            }
            None => {
                let at = top;
                top = top.saturating_add(need);
                at
            }
        };
    }
    (offsets, top)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_lifetimes_get_disjoint_memory_and_others_share() {
        let items = [
            Lifetime { first: 0, last: 1, len: 100 },
            Lifetime { first: 1, last: 2, len: 50 },
            Lifetime { first: 2, last: 3, len: 100 },
            Lifetime { first: 3, last: 3, len: 10 },
        ];
        let (offsets, total) = assign(&items);
        let range = |i: usize| offsets[i]..offsets[i] + items[i].len;
        for a in 0..items.len() {
            for b in 0..a {
                let live_together = items[a].first <= items[b].last && items[b].first <= items[a].last;
                let overlap = range(a).start < range(b).end && range(b).start < range(a).end;
                assert!(!(live_together && overlap), "{a} and {b}");
            }
        }
        assert!(total <= 112 + 64, "{total}");
        assert!(offsets.iter().all(|o| o % ALIGN == 0));
    }

    /// Whether no two items alive at the same step overlap in memory, and all fit in `total`.
    fn disjoint(items: &[Lifetime], offsets: &[usize], total: usize) -> bool {
        let range = |i: usize| offsets[i]..offsets[i] + items[i].len;
        (0..items.len()).all(|a| {
            range(a).end <= total
                && (0..a).all(|b| {
                    let live_together = items[a].first <= items[b].last && items[b].first <= items[a].last;
                    !(live_together && range(a).start < range(b).end && range(b).start < range(a).end)
                })
        })
    }

    #[test]
    fn thousands_of_buffers_are_placed_in_step_order_without_overlap() {
        // A chain's forward values live until their backward step, nested, between short-lived
        // temporaries of assorted sizes, and parameters live throughout.
        let n = 3000;
        let mut items = Vec::new();
        for i in 0..n {
            items.push(Lifetime { first: i, last: 2 * n - i, len: 8 + i % 5 });
            items.push(Lifetime { first: i, last: i + 1, len: 1 + i % 37 });
            items.push(Lifetime { first: 0, last: 2 * n + 1, len: 64 });
        }
        assert!(items.len() > GREEDY_ITEMS);
        let (offsets, total) = assign(&items);
        assert!(disjoint(&items, &offsets, total));
        assert!(offsets.iter().all(|o| o % ALIGN == 0));
        // Temporaries reuse freed memory: the arena holds what is alive at once, not everything.
        let everything: usize = items.iter().map(|i| padded(i.len)).sum();
        assert!(total < everything * 3 / 4, "{total} of {everything}");
    }

    #[test]
    fn the_arena_is_cache_line_aligned() {
        let mut arena = Arena::try_new(5).unwrap();
        let mem = arena.mem();
        assert_eq!(mem.base as usize % 64, 0);
        assert!(arena.get(Region { off: 0, len: 5 }).is_some());
        assert!(arena.get(Region { off: 1, len: 5 }).is_none());
    }
}
