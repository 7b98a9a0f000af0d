//! Parameter initialisation from a seed. Each parameter draws from its own stream
//! (`init:layer.param`), so adding a layer does not change the others' initial values.

use netc_check::Init;
use netc_ir::rng::Key;
use netc_ir::{Distribution, ParamInit, Program, RandomStream, Tensor};

/// Initial values of every parameter of `program`, in order, named like the parameters.
/// Weights draw from `init`; biases and ConvAct's negative filters start at 0, ConvAct's
/// positive filters at the identity (1 at the centre), so a ConvAct layer starts as a ReLU.
/// A weight with a sign constraint (Dale's principle) takes the signs of its input units, with
/// magnitudes balanced between excitatory and inhibitory units
/// ([`SignConstraint::balance_signs`](netc_ir::SignConstraint::balance_signs)), so training starts
/// from weights that keep the signs.
pub fn init_params(program: &Program, init: &Init, seed: u64) -> Vec<(String, Tensor)> {
    program
        .params()
        .into_iter()
        .map(|p| {
            let key = Key::new(seed, &RandomStream::Init(p.name.to_string()), 0);
            let mut tensor = Tensor::zeros(p.shape.clone());
            match p.info.init {
                ParamInit::Weight { fan_in, fan_out } => {
                    draw(&mut tensor, &key, distribution(init, fan_in, fan_out), p.info.sign.as_ref())
                }
                ParamInit::Drawn(from) => draw(&mut tensor, &key, from, p.info.sign.as_ref()),
                ParamInit::Zeros => {}
                ParamInit::Constant { value } => tensor.data_mut().fill(value as f32),
                ParamInit::CentreTap => {
                    if let [channels, kh, kw] = p.shape[..] {
                        let data = tensor.data_mut();
                        for c in 0..channels {
                            data[(c * kh + kh / 2) * kw + kw / 2] = 1.0;
                        }
                    }
                }
            }
            (p.name.to_string(), tensor)
        })
        .collect()
}

/// Fills a weight from `from`; a weight with a sign constraint then takes its signs.
fn draw(tensor: &mut Tensor, key: &Key, from: Distribution, sign: Option<&netc_ir::SignConstraint>) {
    for (i, v) in (0..).zip(tensor.data_mut()) {
        *v = match from {
            Distribution::Normal { std } => std * key.normal(i),
            Distribution::Xavier { fan_in, fan_out } => {
                let (fan_in, fan_out) = (fan_in.max(1) as f64, fan_out.max(1) as f64);
                (6.0 / (fan_in + fan_out)).sqrt() * (2.0 * key.uniform(i) - 1.0)
            }
            Distribution::He { fan_in } => (2.0 / fan_in.max(1) as f64).sqrt() * key.normal(i),
        } as f32;
    }
    if let Some(sign) = sign {
        sign.balance_signs(tensor.data_mut());
    }
}

/// The distribution `init` names for a weight with these fans.
pub(crate) fn distribution(init: &Init, fan_in: usize, fan_out: usize) -> Distribution {
    match *init {
        Init::Normal { std } => Distribution::Normal { std },
        Init::Xavier => Distribution::Xavier { fan_in, fan_out },
        Init::He => Distribution::He { fan_in },
    }
}
