//! Finite-difference gradient checking shared by the op-level and whole-net tests.

use netc_interp::{Feed, Interpreter};
use netc_ir::rng::Key;
use netc_ir::{grad, Program, Tensor};

/// What a check runs the program on, besides the parameters.
pub struct Setup<'a> {
    pub data: Option<&'a Tensor>,
    pub labels: Option<&'a Tensor>,
    pub step: u64,
}

pub struct Options {
    /// Finite-difference step.
    pub h: f64,
    /// At most this many coordinates of each parameter are checked (sampled when larger).
    pub max_coords: usize,
    /// `|numeric − analytic| ≤ abs + rel·|analytic|`
    pub abs: f64,
    pub rel: f64,
    /// Skip coordinates where the difference quotient changes with the step: the loss has a
    /// kink (a ReLU or max switching) within `h`.
    pub skip_kinks: bool,
}

/// The loss in `f64`.
pub fn loss(program: &Program, setup: &Setup, params: &[(String, Tensor)]) -> Result<f64, String> {
    let feed = Feed { data: setup.data, labels: setup.labels, step: setup.step, params };
    let out = Interpreter::default().run_f64(program, &feed).map_err(|e| e.to_string())?;
    out.get(netc_ir::LOSS).and_then(|l| l.first().copied()).ok_or_else(|| "no loss output".to_string())
}

/// The central difference quotient of the loss along coordinate `i` of parameter `p`, using
/// the steps actually representable in `f32`.
fn difference(
    program: &Program,
    setup: &Setup,
    params: &mut [(String, Tensor)],
    p: usize,
    i: usize,
    h: f64,
) -> Result<f64, String> {
    let x = params[p].1.data()[i];
    let up = (f64::from(x) + h) as f32;
    let down = (f64::from(x) - h) as f32;
    params[p].1.data_mut()[i] = up;
    let l_up = loss(program, setup, params)?;
    params[p].1.data_mut()[i] = down;
    let l_down = loss(program, setup, params)?;
    params[p].1.data_mut()[i] = x;
    Ok((l_up - l_down) / (f64::from(up) - f64::from(down)))
}

/// Compares the gradient program's output for every parameter with central finite differences
/// of the forward program's loss, both computed in `f64`. Returns how many coordinates were
/// compared.
pub fn check_gradients(
    forward: &Program,
    setup: &Setup,
    params: &[(String, Tensor)],
    options: &Options,
) -> Result<usize, String> {
    let backward = grad(forward).map_err(|e| e.to_string())?;
    let feed = Feed { data: setup.data, labels: setup.labels, step: setup.step, params };
    let analytic = Interpreter::default().run_f64(&backward, &feed).map_err(|e| e.to_string())?;
    let forward_loss = loss(forward, setup, params)?;
    let backward_loss = analytic.get(netc_ir::LOSS).and_then(|l| l.first().copied()).ok_or("no loss")?;
    if (forward_loss - backward_loss).abs() > 1e-12 * (1.0 + forward_loss.abs()) {
        return Err(format!(
            "the gradient program's loss {backward_loss} differs from the forward loss {forward_loss}"
        ));
    }
    let mut params = params.to_vec();
    let (mut compared, mut skipped) = (0, 0);
    for p in 0..params.len() {
        let name = params[p].0.clone();
        let g = analytic.get(&name).ok_or_else(|| format!("no gradient for {name}"))?.to_vec();
        let len = params[p].1.len();
        if g.len() != len {
            return Err(format!("gradient of {name} has {} values, the parameter {len}", g.len()));
        }
        let coords: Vec<usize> = if len <= options.max_coords {
            (0..len).collect()
        } else {
            let key = Key { seed: 7, stream: netc_ir::rng::stream(&name), step: 0 };
            (0..options.max_coords as u64).map(|k| key.below(k, len as u64) as usize).collect()
        };
        for i in coords {
            let numeric = difference(forward, setup, &mut params, p, i, options.h)?;
            if options.skip_kinks {
                let finer = difference(forward, setup, &mut params, p, i, options.h / 4.0)?;
                if (numeric - finer).abs() > options.abs + options.rel * numeric.abs() {
                    skipped += 1;
                    continue;
                }
            }
            let tolerance = options.abs + options.rel * g[i].abs();
            if (numeric - g[i]).abs() > tolerance {
                return Err(format!("{name}[{i}]: analytic {} vs numeric {numeric}", g[i]));
            }
            compared += 1;
        }
    }
    if skipped > compared {
        return Err(format!("{skipped} coordinates were at kinks and only {compared} could be compared"));
    }
    Ok(compared)
}
