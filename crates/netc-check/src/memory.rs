//! How much memory a training or evaluation step of a checked net needs, so that a run whose
//! step cannot fit is refused with the figure before anything is allocated.
//!
//! The estimate is a lower bound: the tensors the step must hold at once whatever the
//! executor (every activation of the batch, and for training its gradient; every parameter,
//! its gradient and the optimizer's state). Executors need some workspace on top (im2col
//! panels, masks), so a step under the budget may still come near it, but a step over it
//! certainly does not fit.

use crate::config::Optimizer;
use crate::model::Net;
use netc_syntax::{Code, Diagnostic};
use std::fmt;

/// Bytes of one element: every tensor is f32.
const ELEMENT: u64 = 4;

/// What a step holds, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepMemory {
    /// The examples in the batch.
    pub batch: u64,
    pub parameters: u64,
    /// The parameters' gradients (training only).
    pub gradients: u64,
    /// Momentum, or Adam's two moments (training only).
    pub optimizer_state: u64,
    /// Every layer's output for the whole batch, with the input batch; for training also their
    /// gradients.
    pub activations: u64,
}

/// Which step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step<'a> {
    /// Forward and backward over `batch` examples, then the optimizer's update.
    Train { batch: usize, optimizer: &'a Optimizer },
    /// Forward only.
    Evaluate { batch: usize },
}

impl StepMemory {
    /// The memory the step of `net` needs at least.
    pub fn of(net: &Net, step: Step) -> StepMemory {
        let parameter_elements =
            net.parameters().iter().fold(0u64, |sum, (_, p)| sum.saturating_add(elements(&p.shape)));
        let per_example = net
            .layers
            .iter()
            .fold(elements(&net.input.shape), |sum, layer| sum.saturating_add(elements(&layer.out_shape)));
        let (batch, training, state_copies) = match step {
            Step::Train { batch, optimizer } => {
                (batch, true, if matches!(optimizer, Optimizer::Adam { .. }) { 2 } else { 1 })
            }
            Step::Evaluate { batch } => (batch, false, 0),
        };
        let batch = u64::try_from(batch).unwrap_or(u64::MAX);
        let parameters = parameter_elements.saturating_mul(ELEMENT);
        let activations = per_example.saturating_mul(batch).saturating_mul(ELEMENT);
        StepMemory {
            batch,
            parameters,
            gradients: if training { parameters } else { 0 },
            optimizer_state: parameters.saturating_mul(state_copies),
            activations: if training { activations.saturating_mul(2) } else { activations },
        }
    }

    /// All of it.
    pub fn total(&self) -> u64 {
        self.parameters
            .saturating_add(self.gradients)
            .saturating_add(self.optimizer_state)
            .saturating_add(self.activations)
    }

    /// `Ok` when the step fits `budget` bytes; else the error naming the figures, the limit and
    /// how to change either. `what` names the step ("training `lenet`").
    pub fn check(&self, what: &str, budget: u64) -> Result<(), Diagnostic> {
        if self.total() <= budget {
            return Ok(());
        }
        let mut parts = vec![format!("parameters {}", Bytes(self.parameters))];
        if self.gradients > 0 {
            parts.push(format!("their gradients {}", Bytes(self.gradients)));
        }
        if self.optimizer_state > 0 {
            parts.push(format!("optimizer state {}", Bytes(self.optimizer_state)));
        }
        parts.push(format!("activations of {} examples {}", self.batch, Bytes(self.activations)));
        Err(Code::TooMuchMemory
            .error()
            .with_message(format!(
                "{what} with batch {} needs at least {} of memory, more than the limit of {}",
                self.batch,
                Bytes(self.total()),
                Bytes(budget)
            ))
            .with_notes(vec![
                format!("note: {}", parts.join(", ")),
                "help: lower the batch (`--batch` or `batch` in the train block), make the net smaller, or raise the limit with --max-memory".into(),
            ]))
    }
}

fn elements(shape: &[usize]) -> u64 {
    shape.iter().fold(1u64, |n, &d| n.saturating_mul(d as u64))
}

/// A byte count as people read it: `1.5 GB` (powers of 1000).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
        if self.0 < 1000 {
            return write!(f, "{} bytes", self.0);
        }
        let mut value = self.0 as f64 / 1000.0;
        let mut unit = 0;
        while value >= 1000.0 && unit + 1 < UNITS.len() {
            value /= 1000.0;
            unit += 1;
        }
        write!(f, "{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(source: &str) -> Net {
        let file = netc_syntax::parse(source).unwrap();
        crate::check(&file, &[]).unwrap().nets.remove(0)
    }

    #[test]
    fn a_training_step_counts_parameters_gradients_state_and_activations() {
        // 784 inputs, 10 outputs: 7,850 parameters; per example 784 + 10 + 10 activations.
        let mlp = net("net m { input x: [784]\n dense(10)\n relu\n loss softmax_xent(classes=10) }");
        let sgd = Optimizer::Sgd { lr: 0.1, momentum: 0.9, weight_decay: 0.0 };
        let memory = StepMemory::of(&mlp, Step::Train { batch: 100, optimizer: &sgd });
        assert_eq!(memory.parameters, 7_850 * 4);
        assert_eq!(memory.gradients, 7_850 * 4);
        assert_eq!(memory.optimizer_state, 7_850 * 4);
        assert_eq!(memory.activations, 804 * 100 * 4 * 2);
        let adam = Optimizer::Adam { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 };
        assert_eq!(StepMemory::of(&mlp, Step::Train { batch: 100, optimizer: &adam }).optimizer_state, 7_850 * 8);
        let eval = StepMemory::of(&mlp, Step::Evaluate { batch: 1000 });
        assert_eq!((eval.gradients, eval.optimizer_state, eval.activations), (0, 0, 804 * 1000 * 4));
        assert!(memory.check("training `m`", memory.total()).is_ok());
    }

    #[test]
    fn a_step_over_the_budget_is_refused_with_the_figures() {
        let mlp = net("net m { input x: [784]\n dense(10)\n loss softmax_xent(classes=10) }");
        let sgd = Optimizer::Sgd { lr: 0.1, momentum: 0.9, weight_decay: 0.0 };
        let memory = StepMemory::of(&mlp, Step::Train { batch: 100_000_000, optimizer: &sgd });
        let error = memory.check("training `m`", 8_000_000_000).unwrap_err();
        assert_eq!(
            error.message,
            "training `m` with batch 100000000 needs at least 635.2 GB of memory, more than the limit of 8.0 GB"
        );
        assert!(error.notes[0].contains("activations of 100000000 examples 635.2 GB"), "{:?}", error.notes);
        // A batch near the largest integer saturates instead of overflowing.
        let huge = StepMemory::of(&mlp, Step::Train { batch: usize::MAX, optimizer: &sgd });
        assert_eq!(huge.total(), u64::MAX);
        assert!(huge.check("training `m`", u64::MAX - 1).is_err());
    }

    #[test]
    fn byte_counts_read_as_people_write_them() {
        assert_eq!(Bytes(999).to_string(), "999 bytes");
        assert_eq!(Bytes(1_500).to_string(), "1.5 kB");
        assert_eq!(Bytes(12_000_000_000).to_string(), "12.0 GB");
        assert_eq!(Bytes(u64::MAX).to_string(), "18.4 EB");
    }
}
