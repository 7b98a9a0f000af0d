//! The netc tensor IR: programs of SSA values over small tensor operations, with element type
//! `f32` and static shapes whose batch dimension `N` stays symbolic, so one program serves
//! every batch size. This crate depends on no other netc crate: the front end lowers into it
//! (`netc-lower`), and executors read it.
//!
//! * [`Program`] is made only through [`Builder`], which applies every op's shape rule.
//! * [`grad`] turns a forward program into one that also computes the gradient of the loss
//!   with respect to every parameter (reverse-mode autodiff, program to program).
//! * A program prints as text, one instruction per line with its shape and source layer, and
//!   [`parse`] reads that text back to the same program (see [`text`](crate::parse)).
//! * [`Tensor`] is the data every executor exchanges, [`rng`] the counter-based randomness
//!   they share.
//!
//! ```
//! let text = "program tiny (eval) {
//!   source x span=0..9
//!   %0: [N,3] = input x                                   # x
//!   %1: [N] = labels
//!   %2: [2,3] = param w role=weight init=fans(3,2)
//!   %3: [N,2] = matmul %0, %2 trans_b                     # x
//!   %4: [] = softmax_xent %3, %1
//!   return loss = %4
//!   return logits = %3
//! }
//! ";
//! let program = netc_ir::parse(text).unwrap();
//! assert_eq!(program.to_string(), text);
//! let backward = netc_ir::grad(&program).unwrap();
//! assert!(backward.output("w").is_some());
//! let bad = netc_ir::parse(&text.replace("[N,2] = matmul", "[N,5] = matmul")).unwrap_err();
//! assert_eq!((bad.line, bad.column), (6, 7));
//! ```

mod autodiff;
mod op;
mod program;
pub mod rng;
mod rules;
mod shape;
mod span;
mod tensor;
mod text;

pub use autodiff::{grad, GradError};
pub use op::{
    BinaryFn, Conv, Distribution, Input, InputKind, Op, Pad, ParamInfo, ParamInit, ParamRole, PoolKind, RandomKey,
    SignConstraint, UnaryFn, Window,
};
pub use program::{Builder, Inst, Mode, Output, OutputKind, ParamRef, Program, Source, SourceId, ValueId};
pub use rng::RandomStream;
pub use rules::ShapeError;
pub use shape::{Dim, Shape};
pub use span::Span;
pub use tensor::{Tensor, TensorSizeError};
pub use text::{parse, TextError};

/// The name of the labels input; the data input keeps the user's name.
pub const LABELS: &str = "labels";
/// The name of the step-counter input of programs with per-step randomness.
pub const STEP: &str = "step";
/// The name of the scalar loss output; gradients are named like their parameters.
pub const LOSS: &str = "loss";
/// The name of the class-scores output.
pub const LOGITS: &str = "logits";
