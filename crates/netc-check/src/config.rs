//! The checked training configuration: the `train { }` block's settings over the defaults
//! (the thesis's MNIST recipe), with command-line overrides applied on top.

/// How to train. `Default` is the thesis recipe (MatConvNet `cnn_mnist`).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub optimizer: Optimizer,
    /// Per-epoch learning rates: `(lr, epochs)` runs in order; the last one holds afterwards.
    /// Empty means the optimizer's constant `lr`.
    pub lr_schedule: Vec<(f64, usize)>,
    pub batch: usize,
    pub epochs: usize,
    pub init: Init,
    /// The first preprocessing step: what the pixels become.
    pub preprocess: Preprocess,
    /// Then `cnn_cifar`'s per-image contrast normalisation.
    pub contrast_norm: bool,
    /// Then `cnn_cifar`'s ZCA whitening, learned from the training set.
    pub whiten: bool,
    /// Random flips and crops of the training examples.
    pub augment: Augment,
    pub seed: u64,
    /// Data set name or folder, if the file names one.
    pub data: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Optimizer {
    /// `m = momentum·m − weight_decay·w − g; w = w + lr·m`
    Sgd {
        lr: f64,
        momentum: f64,
        weight_decay: f64,
    },
    Adam {
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    },
}

/// Weight initialisation; biases start at zero.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// N(0, std²)
    Normal { std: f64 },
    /// Glorot/Xavier uniform: U(±sqrt(6 / (fan_in + fan_out))).
    Xavier,
    /// He normal: N(0, 2 / fan_in).
    He,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preprocess {
    /// Pixels 0–255 minus the training set's mean image.
    MeanImage,
    /// Pixels scaled to [0, 1].
    Scale,
    /// Raw pixels 0–255.
    None,
}

/// Random changes to the training examples after preprocessing, drawn from the seed and the
/// step, so a resumed run makes the same ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Augment {
    pub flip: Flip,
    /// Padded random crops: the example is padded with `crop_pad` zeros on every side and a
    /// window of its own size is cut at a random offset. 0: none.
    pub crop_pad: usize,
}

/// Horizontal flips, each with probability 0.5.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Flip {
    #[default]
    None,
    /// The whole batch or none of it, as `cnn_cifar`'s `getBatch` does.
    Batch,
    /// Each example on its own.
    Example,
}

/// The thesis's SGD: learning rate, momentum, weight decay.
pub(crate) const SGD_DEFAULTS: (f64, f64, f64) = (0.001, 0.9, 0.0005);

impl Default for TrainConfig {
    fn default() -> Self {
        let (lr, momentum, weight_decay) = SGD_DEFAULTS;
        TrainConfig {
            optimizer: Optimizer::Sgd { lr, momentum, weight_decay },
            lr_schedule: Vec::new(),
            batch: 100,
            epochs: 20,
            init: Init::Normal { std: 0.01 },
            preprocess: Preprocess::MeanImage,
            contrast_norm: false,
            whiten: false,
            augment: Augment::default(),
            seed: 0,
            data: None,
        }
    }
}

impl Optimizer {
    pub fn lr(&self) -> f64 {
        match self {
            Optimizer::Sgd { lr, .. } | Optimizer::Adam { lr, .. } => *lr,
        }
    }
}

impl TrainConfig {
    /// The learning rate in force during `epoch` (counted from 0).
    pub fn lr_at(&self, epoch: usize) -> f64 {
        let mut start = 0;
        for &(lr, epochs) in &self.lr_schedule {
            start += epochs;
            if epoch < start {
                return lr;
            }
        }
        self.lr_schedule.last().map_or(self.optimizer.lr(), |&(lr, _)| lr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_steps_and_holds_its_last_rate() {
        let config = TrainConfig { lr_schedule: vec![(0.05, 15), (0.005, 10), (0.0005, 5)], ..TrainConfig::default() };
        assert_eq!(config.lr_at(0), 0.05);
        assert_eq!(config.lr_at(14), 0.05);
        assert_eq!(config.lr_at(15), 0.005);
        assert_eq!(config.lr_at(29), 0.0005);
        assert_eq!(config.lr_at(40), 0.0005);
        assert_eq!(TrainConfig::default().lr_at(7), 0.001);
    }
}
