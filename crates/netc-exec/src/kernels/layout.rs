//! Data movement: broadcast, concatenation and slicing. Shapes are simplified when planned
//! (adjacent axes merged), so the loops see few, long rows.

/// `out[i] = x[Σ_a index_a(i)·strides[a]]` over the output shape `dims`, where a new axis has
/// stride 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Broadcast {
    dims: Vec<usize>,
    strides: Vec<usize>,
}

impl Broadcast {
    /// `axes[i]` is the output axis of input axis `i` (as in `Op::Broadcast`).
    pub fn new(in_dims: &[usize], out_dims: &[usize], axes: &[usize]) -> Broadcast {
        let mut strides = vec![0; out_dims.len()];
        let mut stride = 1;
        for (i, &axis) in axes.iter().enumerate().rev() {
            strides[axis] = stride;
            stride *= in_dims[i];
        }
        // Merge neighbours that step through the input (or stay put) as one axis.
        let mut dims: Vec<usize> = Vec::new();
        let mut merged: Vec<usize> = Vec::new();
        for (&d, &s) in out_dims.iter().zip(&strides) {
            if d == 1 {
                continue;
            }
            match (dims.last_mut(), merged.last_mut()) {
                (Some(last_d), Some(last_s)) if (*last_s == 0 && s == 0) || (s != 0 && *last_s == s * d) => {
                    *last_d *= d;
                    *last_s = s;
                }
                _ => {
                    dims.push(d);
                    merged.push(s);
                }
            }
        }
        Broadcast { dims, strides: merged }
    }

    pub fn run(&self, x: &[f32], out: &mut [f32]) {
        if out.is_empty() {
            return;
        }
        let (Some(&inner), Some(&stride)) = (self.dims.last(), self.strides.last()) else {
            // Every axis has extent 1: one element.
            if let (Some(o), Some(&v)) = (out.first_mut(), x.first()) {
                *o = v;
            }
            return;
        };
        let outer = &self.dims[..self.dims.len() - 1];
        for (r, row) in out.chunks_mut(inner).enumerate() {
            // The input offset of row `r`, decoding its index from the last outer axis up.
            let mut rest = r;
            let mut base = 0;
            for (&d, &s) in outer.iter().zip(&self.strides).rev() {
                base += (rest % d) * s;
                rest /= d;
            }
            match stride {
                0 => row.fill(x[base]),
                1 => row.copy_from_slice(&x[base..base + inner]),
                s => row.iter_mut().enumerate().for_each(|(j, v)| *v = x[base + j * s]),
            }
        }
    }
}

/// Joins blocks: per outer index, each part contributes a block of `blocks[p]` elements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Concat {
    pub outer: usize,
    pub blocks: Vec<usize>,
}

impl Concat {
    pub fn new(out_dims: &[usize], axis: usize, extents: &[usize]) -> Concat {
        let outer = out_dims[..axis].iter().product();
        let inner: usize = out_dims[axis + 1..].iter().product();
        Concat { outer, blocks: extents.iter().map(|e| e * inner).collect() }
    }

    pub fn run(&self, parts: &[&[f32]], out: &mut [f32]) {
        let mut at = 0;
        for o in 0..self.outer {
            for (part, &block) in parts.iter().zip(&self.blocks) {
                out[at..at + block].copy_from_slice(&part[o * block..(o + 1) * block]);
                at += block;
            }
        }
    }
}

/// Elements `start..start+len` of an axis: per outer index, a block of `len·inner` elements
/// at `start·inner` within each `extent·inner`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slice {
    pub outer: usize,
    pub from: usize,
    pub block: usize,
    pub stride: usize,
}

impl Slice {
    pub fn new(in_dims: &[usize], axis: usize, start: usize, len: usize) -> Slice {
        let outer = in_dims[..axis].iter().product();
        let inner: usize = in_dims[axis + 1..].iter().product();
        Slice { outer, from: start * inner, block: len * inner, stride: in_dims[axis] * inner }
    }

    pub fn run(&self, x: &[f32], out: &mut [f32]) {
        if self.block == 0 {
            return;
        }
        for (o, dst) in out.chunks_mut(self.block).enumerate().take(self.outer) {
            let at = o * self.stride + self.from;
            dst.copy_from_slice(&x[at..at + self.block]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_repeats_along_new_axes() {
        // [3] → [2, 3, 2] with the input on axis 1.
        let b = Broadcast::new(&[3], &[2, 3, 2], &[1]);
        let mut out = [0.0; 12];
        b.run(&[1.0, 2.0, 3.0], &mut out);
        assert_eq!(out, [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0]);
        // A scalar to everything.
        let b = Broadcast::new(&[], &[2, 2], &[]);
        let mut out = [0.0; 4];
        b.run(&[7.0], &mut out);
        assert_eq!(out, [7.0; 4]);
        // [2, 3] → [2, 4, 3]: rows are copied whole.
        let b = Broadcast::new(&[2, 3], &[2, 4, 3], &[0, 2]);
        let mut out = [0.0; 24];
        b.run(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &mut out);
        assert_eq!(&out[..6], &[1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
        assert_eq!(&out[12..15], &[4.0, 5.0, 6.0]);
    }

    #[test]
    fn concat_and_slice_are_inverse() {
        let c = Concat::new(&[2, 3, 2], 1, &[1, 2]);
        let a = [1.0, 2.0, 7.0, 8.0];
        let b = [3.0, 4.0, 5.0, 6.0, 9.0, 10.0, 11.0, 12.0];
        let mut out = [0.0; 12];
        c.run(&[&a, &b], &mut out);
        assert_eq!(out, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0]);
        let s = Slice::new(&[2, 3, 2], 1, 1, 2);
        let mut back = [0.0; 8];
        s.run(&out, &mut back);
        assert_eq!(back, b);
    }
}
