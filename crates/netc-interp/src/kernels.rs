//! One straightforward loop nest per op. Operand shapes were checked when the program was
//! built and the batch size was bound from the inputs, so the kernels trust them.

use crate::real::Real;
use netc_ir::{Conv, Window};

/// A concrete tensor during interpretation.
#[derive(Clone, Debug)]
pub struct Buf<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

impl<T: Real> Buf<T> {
    pub fn new(shape: Vec<usize>, data: Vec<T>) -> Buf<T> {
        Buf { shape, data }
    }

    pub fn full(shape: Vec<usize>, value: T) -> Buf<T> {
        let len = shape.iter().product();
        Buf { shape, data: vec![value; len] }
    }

    fn dim(&self, axis: usize) -> usize {
        self.shape.get(axis).copied().unwrap_or(1)
    }
}

/// Row-major strides of a shape.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// (outer, extent, inner) around `axis`.
fn split(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (shape[..axis].iter().product(), shape[axis], shape[axis + 1..].iter().product())
}

pub fn zip<T: Real>(a: &Buf<T>, b: &Buf<T>, f: impl Fn(T, T) -> T) -> Buf<T> {
    Buf::new(a.shape.clone(), a.data.iter().zip(&b.data).map(|(&x, &y)| f(x, y)).collect())
}

pub fn select<T: Real>(m: &Buf<T>, a: &Buf<T>, b: &Buf<T>) -> Buf<T> {
    let data = m
        .data
        .iter()
        .zip(a.data.iter().zip(&b.data))
        .map(|(&m, (&x, &y))| if m != T::default() { x } else { y })
        .collect();
    Buf::new(a.shape.clone(), data)
}

/// Input axis `i` is output axis `axes[i]`.
pub fn broadcast<T: Real>(x: &Buf<T>, shape: Vec<usize>, axes: &[usize]) -> Buf<T> {
    let out_strides = strides(&shape);
    let in_strides = strides(&x.shape);
    let len: usize = shape.iter().product();
    let data = (0..len)
        .map(|flat| {
            let src: usize = axes.iter().zip(&in_strides).map(|(&a, &s)| (flat / out_strides[a]) % shape[a] * s).sum();
            x.data[src]
        })
        .collect();
    Buf::new(shape, data)
}

pub fn concat<T: Real>(xs: &[&Buf<T>], axis: usize, shape: Vec<usize>) -> Buf<T> {
    let (outer, _, inner) = split(&shape, axis);
    let mut data = Vec::with_capacity(shape.iter().product());
    for o in 0..outer {
        for x in xs {
            let block = x.dim(axis) * inner;
            data.extend_from_slice(&x.data[o * block..(o + 1) * block]);
        }
    }
    Buf::new(shape, data)
}

pub fn slice<T: Real>(x: &Buf<T>, axis: usize, start: usize, len: usize) -> Buf<T> {
    let (outer, extent, inner) = split(&x.shape, axis);
    let mut data = Vec::with_capacity(outer * len * inner);
    for o in 0..outer {
        let from = (o * extent + start) * inner;
        data.extend_from_slice(&x.data[from..from + len * inner]);
    }
    let mut shape = x.shape.clone();
    shape[axis] = len;
    Buf::new(shape, data)
}

pub fn reduce_sum<T: Real>(x: &Buf<T>, axes: &[usize], shape: Vec<usize>) -> Buf<T> {
    let in_strides = strides(&x.shape);
    let kept: Vec<usize> = (0..x.shape.len()).filter(|a| !axes.contains(a)).collect();
    let out_strides = strides(&shape);
    let mut out = Buf::full(shape, T::default());
    for (flat, &v) in x.data.iter().enumerate() {
        let dst: usize = kept.iter().zip(&out_strides).map(|(&a, &s)| (flat / in_strides[a]) % x.shape[a] * s).sum();
        out.data[dst] += v;
    }
    out
}

/// Whether `v` beats the current best: larger, or NaN (so NaN propagates).
fn beats<T: Real>(v: T, best: T) -> bool {
    v > best || (v.is_nan() && !best.is_nan())
}

/// The index along `axis` of the first largest element of each row.
fn argmax_rows<T: Real>(x: &Buf<T>, axis: usize) -> Vec<usize> {
    let (outer, extent, inner) = split(&x.shape, axis);
    let mut arg = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| x.data[(o * extent + k) * inner + i];
            let mut best = 0;
            for k in 1..extent {
                if beats(at(k), at(best)) {
                    best = k;
                }
            }
            arg.push(best);
        }
    }
    arg
}

pub fn reduce_max<T: Real>(x: &Buf<T>, axis: usize) -> Buf<T> {
    let (_, extent, inner) = split(&x.shape, axis);
    let data = argmax_rows(x, axis)
        .iter()
        .enumerate()
        .map(|(r, &k)| x.data[((r / inner) * extent + k) * inner + r % inner])
        .collect();
    let mut shape = x.shape.clone();
    shape.remove(axis);
    Buf::new(shape, data)
}

pub fn reduce_max_backward<T: Real>(x: &Buf<T>, g: &Buf<T>, axis: usize) -> Buf<T> {
    let (_, extent, inner) = split(&x.shape, axis);
    let mut dx = Buf::full(x.shape.clone(), T::default());
    for (r, &k) in argmax_rows(x, axis).iter().enumerate() {
        dx.data[((r / inner) * extent + k) * inner + r % inner] = g.data[r];
    }
    dx
}

pub fn matmul<T: Real>(a: &Buf<T>, b: &Buf<T>, trans_a: bool, trans_b: bool) -> Buf<T> {
    let (a1, b1) = (a.dim(1), b.dim(1));
    // Element (i, l) of op(a) is a[i·ai + l·al]; element (l, j) of op(b) is b[l·bl + j·bj].
    let (m, k, ai, al) = if trans_a { (a1, a.dim(0), 1, a1) } else { (a.dim(0), a1, a1, 1) };
    let (p, bl, bj) = if trans_b { (b.dim(0), 1, b1) } else { (b1, b1, 1) };
    let mut out = Buf::full(vec![m, p], T::default());
    for i in 0..m {
        for j in 0..p {
            let mut acc = T::default();
            for l in 0..k {
                acc += a.data[i * ai + l * al] * b.data[l * bl + j * bj];
            }
            out.data[i * p + j] = acc;
        }
    }
    out
}

pub fn bias_add<T: Real>(x: &Buf<T>, b: &Buf<T>) -> Buf<T> {
    let (_, channels, inner) = split(&x.shape, 1);
    let data = x.data.iter().enumerate().map(|(i, &v)| v + b.data[(i / inner) % channels]).collect();
    Buf::new(x.shape.clone(), data)
}

/// The geometry shared by a convolution and its two backward ops.
struct ConvGeom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    ho: usize,
    wo: usize,
    conv: Conv,
}

impl ConvGeom {
    fn new(x_shape: &[usize], w_shape: &[usize], y_shape: &[usize], conv: Conv) -> ConvGeom {
        ConvGeom {
            n: x_shape[0],
            c: x_shape[1],
            h: x_shape[2],
            w: x_shape[3],
            o: w_shape[0],
            kh: w_shape[2],
            kw: w_shape[3],
            ho: y_shape[2],
            wo: y_shape[3],
            conv,
        }
    }

    /// Calls `f(x_start, w_start, y_index)` for every output element and every filter tap that
    /// falls inside the input (zero padding contributes nothing): the tap multiplies input
    /// `x_start + k·h·w` by weight `w_start + k·kh·kw` for each channel `k` of the group.
    fn each_tap(&self, mut f: impl FnMut(usize, usize, usize)) {
        let ConvGeom { n, c, h, w, o, kh, kw, ho, wo, conv } = *self;
        let (cpg, opg) = (c / conv.groups, o / conv.groups);
        for b in 0..n {
            for oc in 0..o {
                let x_group = (b * c + (oc / opg) * cpg) * h * w;
                for i in 0..ho {
                    for j in 0..wo {
                        let y = ((b * o + oc) * ho + i) * wo + j;
                        for a in 0..kh {
                            let Some(r) = (i * conv.stride + a).checked_sub(conv.pad).filter(|&r| r < h) else {
                                continue;
                            };
                            for e in 0..kw {
                                let Some(col) = (j * conv.stride + e).checked_sub(conv.pad).filter(|&col| col < w)
                                else {
                                    continue;
                                };
                                f(x_group + r * w + col, (oc * cpg * kh + a) * kw + e, y);
                            }
                        }
                    }
                }
            }
        }
    }

    fn channels_per_group(&self) -> usize {
        self.c / self.conv.groups
    }
}

pub fn conv2d<T: Real>(x: &Buf<T>, w: &Buf<T>, conv: Conv, y_shape: Vec<usize>) -> Buf<T> {
    let mut y = Buf::full(y_shape, T::default());
    let g = ConvGeom::new(&x.shape, &w.shape, &y.shape, conv);
    let (cpg, x_step, w_step) = (g.channels_per_group(), g.h * g.w, g.kh * g.kw);
    g.each_tap(|xs, ws, yi| {
        let mut acc = T::default();
        for k in 0..cpg {
            acc += x.data[xs + k * x_step] * w.data[ws + k * w_step];
        }
        y.data[yi] += acc;
    });
    y
}

pub fn conv2d_backward_data<T: Real>(dy: &Buf<T>, w: &Buf<T>, conv: Conv, x_shape: Vec<usize>) -> Buf<T> {
    let mut dx = Buf::full(x_shape, T::default());
    let g = ConvGeom::new(&dx.shape, &w.shape, &dy.shape, conv);
    let (cpg, x_step, w_step) = (g.channels_per_group(), g.h * g.w, g.kh * g.kw);
    g.each_tap(|xs, ws, yi| {
        let d = dy.data[yi];
        for k in 0..cpg {
            dx.data[xs + k * x_step] += d * w.data[ws + k * w_step];
        }
    });
    dx
}

pub fn conv2d_backward_filter<T: Real>(x: &Buf<T>, dy: &Buf<T>, conv: Conv, w_shape: Vec<usize>) -> Buf<T> {
    let mut dw = Buf::full(w_shape, T::default());
    let g = ConvGeom::new(&x.shape, &dw.shape, &dy.shape, conv);
    let (cpg, x_step, w_step) = (g.channels_per_group(), g.h * g.w, g.kh * g.kw);
    g.each_tap(|xs, ws, yi| {
        let d = dy.data[yi];
        for k in 0..cpg {
            dw.data[ws + k * w_step] += x.data[xs + k * x_step] * d;
        }
    });
    dw
}

/// Calls `f(window_index, input_indices)` for every pooling window, with the indices of the
/// window's elements that fall inside the input (padding excluded).
fn each_window(x_shape: &[usize], window: Window, y_shape: &[usize], mut f: impl FnMut(usize, &[usize])) {
    let (planes, h, w) = (x_shape[0] * x_shape[1], x_shape[2], x_shape[3]);
    let (ho, wo) = (y_shape[2], y_shape[3]);
    let [kh, kw] = window.kernel;
    let mut inside = Vec::with_capacity(kh * kw);
    for p in 0..planes {
        for i in 0..ho {
            for j in 0..wo {
                inside.clear();
                for a in 0..kh {
                    let Some(r) = (i * window.stride + a).checked_sub(window.pad.top).filter(|&r| r < h) else {
                        continue;
                    };
                    for b in 0..kw {
                        let Some(c) = (j * window.stride + b).checked_sub(window.pad.left).filter(|&c| c < w) else {
                            continue;
                        };
                        inside.push((p * h + r) * w + c);
                    }
                }
                f((p * ho + i) * wo + j, &inside);
            }
        }
    }
}

/// The first largest element of a window; windows are never empty (padding < window).
fn window_argmax<T: Real>(x: &Buf<T>, inside: &[usize]) -> Option<usize> {
    inside.iter().copied().reduce(|best, k| if beats(x.data[k], x.data[best]) { k } else { best })
}

pub fn max_pool<T: Real>(x: &Buf<T>, window: Window, y_shape: Vec<usize>) -> Buf<T> {
    let mut y = Buf::full(y_shape, T::default());
    each_window(&x.shape, window, &y.shape.clone(), |yi, inside| {
        if let Some(k) = window_argmax(x, inside) {
            y.data[yi] = x.data[k];
        }
    });
    y
}

pub fn max_pool_backward<T: Real>(x: &Buf<T>, dy: &Buf<T>, window: Window) -> Buf<T> {
    let mut dx = Buf::full(x.shape.clone(), T::default());
    each_window(&x.shape, window, &dy.shape, |yi, inside| {
        if let Some(k) = window_argmax(x, inside) {
            dx.data[k] += dy.data[yi];
        }
    });
    dx
}

pub fn avg_pool<T: Real>(x: &Buf<T>, window: Window, y_shape: Vec<usize>) -> Buf<T> {
    let scale = T::from_f64(1.0 / (window.kernel[0] * window.kernel[1]) as f64);
    let mut y = Buf::full(y_shape, T::default());
    each_window(&x.shape, window, &y.shape.clone(), |yi, inside| {
        let mut sum = T::default();
        for &k in inside {
            sum += x.data[k];
        }
        y.data[yi] = sum * scale;
    });
    y
}

pub fn avg_pool_backward<T: Real>(dy: &Buf<T>, window: Window, x_shape: Vec<usize>) -> Buf<T> {
    let scale = T::from_f64(1.0 / (window.kernel[0] * window.kernel[1]) as f64);
    let mut dx = Buf::full(x_shape, T::default());
    each_window(&dx.shape.clone(), window, &dy.shape, |yi, inside| {
        for &k in inside {
            dx.data[k] += dy.data[yi] * scale;
        }
    });
    dx
}

/// Per row: the class probabilities, and `logsumexp(z)`.
fn softmax_rows<T: Real>(z: &Buf<T>) -> Vec<(Vec<T>, T)> {
    let classes = z.dim(1);
    z.data
        .chunks(classes.max(1))
        .map(|row| {
            let max = row.iter().copied().fold(row[0], |m, v| if beats(v, m) { v } else { m });
            let exps: Vec<T> = row.iter().map(|&v| (v - max).exp()).collect();
            let mut sum = T::default();
            for &e in &exps {
                sum += e;
            }
            (exps.iter().map(|&e| e / sum).collect(), max + sum.ln())
        })
        .collect()
}

/// `labels` were validated as class indices.
pub fn softmax_xent<T: Real>(z: &Buf<T>, labels: &[usize]) -> Buf<T> {
    let classes = z.dim(1);
    let mut total = T::default();
    for (r, (_, lse)) in softmax_rows(z).into_iter().enumerate() {
        total += lse - z.data[r * classes + labels[r]];
    }
    Buf::new(Vec::new(), vec![total / T::from_f64(labels.len().max(1) as f64)])
}

pub fn softmax_xent_grad<T: Real>(z: &Buf<T>, labels: &[usize]) -> Buf<T> {
    let scale = T::from_f64(1.0 / labels.len().max(1) as f64);
    let mut data = Vec::with_capacity(z.data.len());
    for (r, (probs, _)) in softmax_rows(z).into_iter().enumerate() {
        for (k, p) in probs.into_iter().enumerate() {
            let target = if k == labels[r] { T::from_f64(1.0) } else { T::default() };
            data.push((p - target) * scale);
        }
    }
    Buf::new(z.shape.clone(), data)
}
