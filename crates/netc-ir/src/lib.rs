//! The netc tensor IR: programs of SSA values over small tensor operations, with element type
//! `f32` and static shapes whose batch dimension `N` stays symbolic, so one program serves
//! every batch size.
//!
//! * [`lower`] turns a checked [`netc_check::Net`] into a forward [`Program`] computing the
//!   loss and the logits; [`LowerOptions`] choose training or evaluation and the seed.
//! * [`grad`] turns a forward program into one that also computes the gradient of the loss
//!   with respect to every parameter (reverse-mode autodiff, program to program).
//! * [`Program`] prints as text, one instruction per line with its shape and source layer;
//!   [`Program::display_with_source`] adds line numbers.
//! * [`Tensor`] is the data every executor exchanges, [`rng`] the counter-based randomness
//!   they share, and [`init_params`] the initial parameter values.
//! * [`fixed_units`] is the seeded choice of which units of a layer play which part (NegLUs,
//!   min units, inhibitory units), shared by lowering and `netc summary`; [`param_infos`] is what
//!   a trainer needs to know about each parameter, including the [`SignConstraint`] of a weight
//!   that reads a `dale` population.
//!
//! ```
//! let src = "net tiny {\n  input x: [4]\n  dense(3)\n  relu\n  dense(2)\n  loss softmax_xent(classes=2)\n}";
//! let checked = netc_check::check(&netc_syntax::parse(src).unwrap(), &[]).unwrap();
//! let options = netc_ir::LowerOptions { mode: netc_ir::Mode::Train, seed: 0 };
//! let forward = netc_ir::lower(&checked.nets[0], options).unwrap();
//! let backward = netc_ir::grad(&forward).unwrap();
//! let names: Vec<&str> = backward.params().iter().map(|p| p.name).collect();
//! assert_eq!(names, ["dense1.weight", "dense1.bias", "dense2.weight", "dense2.bias"]);
//! assert!(backward.output("dense1.weight").is_some());
//! let text = forward.display_with_source(src).to_string();
//! assert!(text.contains("%6: [N,3] = matmul %0, %2 trans_b"), "{text}");
//! assert!(text.contains("# dense1 (line 3)"));
//! let params = netc_ir::init_params(&forward, &netc_check::Init::He, 7);
//! assert_eq!(params[0].1.shape(), &[3, 4]);
//! ```

mod autodiff;
mod init;
mod lower;
mod op;
mod program;
pub mod rng;
mod shape;
mod tensor;
mod units;

pub use autodiff::{grad, GradError};
pub use init::init_params;
pub use lower::{lower, param_infos, LowerError, LowerOptions, LABELS, LOGITS, LOSS, STEP};
pub use op::{
    Conv, Input, InputKind, Op, ParamInfo, ParamInit, PoolKind, RandomKey, ShapeError, SignConstraint, UnaryFn, Window,
};
pub use program::{Builder, Inst, Mode, Output, OutputKind, ParamRef, Program, Source, SourceId, ValueId};
pub use shape::{Dim, Shape};
pub use tensor::{Tensor, TensorSizeError};
pub use units::{all_fixed_units, fixed_units, UnitChoice};
