//! The SGD-with-momentum parameter update as a compiled kernel, run over the executor's
//! threads: `m ← momentum·m − weight_decay·w − g;  w ← w + lr·m` (MatConvNet's form, as
//! `netc-train`'s reference `optimizer::update` computes it, up to one FMA rounding).

use crate::par::{Par, ELEMENTS_PER_TASK};
use netc_jit::{Code, Kernel, Layout, Node};

/// Hyper-parameters of one step of one parameter tensor (the layer's multipliers applied).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
}

/// Operands `w, m, g` (per element) and `momentum, weight_decay, lr` (scalars); outputs
/// `w, m`, written over the operands.
pub(crate) fn sgd_kernel() -> Kernel {
    let mut k = Kernel::default();
    let [w, m, g] = [(); 3].map(|_| k.operand(Layout::Full));
    let [momentum, decay, lr] = [(); 3].map(|_| k.operand(Layout::Scalar));
    let kept = k.push(Node::Mul(momentum, m));
    let decayed = k.push(Node::Mul(decay, w));
    let m1 = k.push(Node::Sub(kept, decayed));
    let m2 = k.push(Node::Sub(m1, g));
    let step = k.push(Node::Mul(lr, m2));
    let w2 = k.push(Node::Add(w, step));
    k.outputs = vec![w2, m2];
    k
}

/// Pointers the update tasks share.
struct Operands([*mut f32; 8]);

// SAFETY: tasks read and write disjoint element ranges of `w` and `m`, and only read the rest.
unsafe impl Sync for Operands {}

impl Operands {
    /// A method so closures capture the `Sync` wrapper, not the array.
    fn all(&self) -> &[*mut f32] {
        &self.0
    }
}

/// Runs the update kernel `kernel` of `code` on equally long `w`, `m`, `g`.
pub(crate) fn run_sgd(code: &Code, kernel: usize, par: Par, sgd: Sgd, w: &mut [f32], m: &mut [f32], g: &[f32]) {
    let n = w.len();
    let mut scalars = [sgd.momentum, sgd.weight_decay, sgd.lr];
    let s = scalars.as_mut_ptr();
    let (wp, mp) = (w.as_mut_ptr(), m.as_mut_ptr());
    // The kernel never writes through the gradient's pointer.
    let gp = g.as_ptr().cast_mut();
    // SAFETY: `s` points to three values.
    let pointers = Operands(unsafe { [wp, mp, gp, s, s.add(1), s.add(2), wp, mp] });
    par.tasks(n.div_ceil(ELEMENTS_PER_TASK), |t| {
        let start = t * ELEMENTS_PER_TASK;
        // SAFETY: the three tensors hold `n` elements, the tasks' ranges are disjoint, and
        // each output element is written after its operands are read.
        unsafe { code.run(kernel, pointers.all(), 0..1, n, start..(start + ELEMENTS_PER_TASK).min(n)) }
    });
}
