//! Parameter updates. SGD follows MatConvNet's `cnn_train` (the thesis's code):
//! `m = momentum·m − wd·w − g;  w = w + lr·m`, with `g` the gradient averaged over the batch and
//! `lr`, `wd` scaled by the layer's multipliers.

use crate::Named;
use netc_check::Optimizer;

/// One parameter tensor's optimizer state.
#[derive(Clone, Debug, PartialEq)]
pub struct Slot {
    /// SGD momentum, or Adam's first moment.
    pub m: Vec<f32>,
    /// Adam's second moment; empty for SGD.
    pub v: Vec<f32>,
}

impl Slot {
    pub fn new(optimizer: &Optimizer, len: usize) -> Slot {
        let v = if matches!(optimizer, Optimizer::Adam { .. }) { vec![0.0; len] } else { Vec::new() };
        Slot { m: vec![0.0; len], v }
    }
}

/// Applies one step to `w` given its gradient. `lr` is the schedule's rate for this epoch;
/// `t` counts steps from 1 (Adam's bias correction).
#[allow(clippy::too_many_arguments)]
pub fn update(
    optimizer: &Optimizer,
    lr: f64,
    lr_mult: f64,
    wd_mult: f64,
    t: u64,
    w: &mut [f32],
    g: &[f32],
    slot: &mut Slot,
) {
    match *optimizer {
        Optimizer::Sgd { momentum, weight_decay, .. } => {
            let (mu, wd, lr) = (momentum as f32, (weight_decay * wd_mult) as f32, (lr * lr_mult) as f32);
            for ((w, &g), m) in w.iter_mut().zip(g).zip(&mut slot.m) {
                *m = mu * *m - wd * *w - g;
                *w += lr * *m;
            }
        }
        Optimizer::Adam { beta1, beta2, eps, weight_decay, .. } => {
            // L2-regularised Adam: the decay term joins the gradient before the moments.
            let (b1, b2, wd) = (beta1 as f32, beta2 as f32, (weight_decay * wd_mult) as f32);
            let t = t.min(i32::MAX as u64) as i32;
            let step = (lr * lr_mult) as f32 * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t));
            for (((w, &g), m), v) in w.iter_mut().zip(g).zip(&mut slot.m).zip(&mut slot.v) {
                let g = g + wd * *w;
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                *w -= step * *m / (v.sqrt() + eps as f32);
            }
        }
    }
}

/// One optimizer step of every parameter: the optimizer, the schedule's rate for this epoch,
/// the step count `t` (from 1, for Adam's bias correction) and each parameter's
/// `(lr_mult, wd_mult)`, in the net's parameter order.
#[derive(Clone, Copy, Debug)]
pub struct Update<'a> {
    pub optimizer: &'a Optimizer,
    pub lr: f64,
    pub t: u64,
    pub mults: &'a [(f64, f64)],
}

impl Update<'_> {
    /// The reference: [`update`] of each parameter tensor in turn.
    pub fn apply(&self, params: &mut [Named], grads: &[Vec<f32>], slots: &mut [Slot]) {
        for (((p, g), slot), &(lr_mult, wd_mult)) in params.iter_mut().zip(grads).zip(slots).zip(self.mults) {
            update(self.optimizer, self.lr, lr_mult, wd_mult, self.t, p.1.data_mut(), g, slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgd_matches_the_matconvnet_update() {
        let opt = Optimizer::Sgd { lr: 0.1, momentum: 0.9, weight_decay: 0.01 };
        let mut w = vec![1.0f32, -2.0];
        let mut slot = Slot::new(&opt, 2);
        slot.m = vec![0.5, 0.0];
        update(&opt, 0.1, 2.0, 1.0, 1, &mut w, &[0.2, -0.4], &mut slot);
        // m = 0.9·0.5 − 0.01·1 − 0.2 = 0.24; w = 1 + 0.2·0.24
        assert!((slot.m[0] - 0.24).abs() < 1e-6);
        assert!((w[0] - 1.048).abs() < 1e-6);
        // m = 0 + 0.02 + 0.4 = 0.42; w = −2 + 0.2·0.42
        assert!((slot.m[1] - 0.42).abs() < 1e-6);
        assert!((w[1] + 1.916).abs() < 1e-6);
    }

    #[test]
    fn adam_first_step_moves_by_the_learning_rate() {
        let opt = Optimizer::Adam { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 };
        let mut w = vec![1.0f32, 1.0];
        let mut slot = Slot::new(&opt, 2);
        update(&opt, 0.01, 1.0, 1.0, 1, &mut w, &[3.0, -0.5], &mut slot);
        assert!((w[0] - 0.99).abs() < 1e-5, "{w:?}");
        assert!((w[1] - 1.01).abs() < 1e-5, "{w:?}");
    }
}
