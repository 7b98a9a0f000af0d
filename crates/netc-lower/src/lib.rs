//! Lowering a checked net to the tensor IR: the meaning of every layer, as a program of small
//! IR ops.
//!
//! * [`lower`] turns a checked [`netc_check::Net`] into a forward [`netc_ir::Program`]
//!   computing the loss and the logits; [`LowerOptions`] choose training or evaluation and the
//!   seed.
//! * [`fixed_units`] is the seeded choice of which units of a layer play which part (NegLUs,
//!   min units, inhibitory units), shared by lowering and `netc summary`; [`param_infos`] is
//!   what a trainer needs to know about each parameter, including the
//!   [`SignConstraint`](netc_ir::SignConstraint) of a weight that reads a `dale` population.
//! * [`init_params`] gives the initial parameter values from the run's distribution and seed.
//!
//! ```
//! let src = "net tiny {\n  input x: [4]\n  dense(3)\n  relu\n  dense(2)\n  loss softmax_xent(classes=2)\n}";
//! let checked = netc_check::check(&netc_syntax::parse(src).unwrap(), &[]).unwrap();
//! let options = netc_lower::LowerOptions { mode: netc_ir::Mode::Train, seed: 0 };
//! let forward = netc_lower::lower(&checked.nets[0], options).unwrap().with_source_lines(src);
//! let backward = netc_ir::grad(&forward).unwrap();
//! let names: Vec<&str> = backward.params().iter().map(|p| p.name).collect();
//! assert_eq!(names, ["dense1.weight", "dense1.bias", "dense2.weight", "dense2.bias"]);
//! assert!(backward.output("dense1.weight").is_some());
//! let text = forward.to_string();
//! assert!(text.contains("%6: [N,3] = matmul %0, %2 trans_b"), "{text}");
//! assert!(text.contains("# dense1 (line 3)"));
//! let params = netc_lower::init_params(&forward, &netc_check::Init::He, 7);
//! assert_eq!(params[0].1.shape(), &[3, 4]);
//! ```

mod init;
mod lower;
mod units;

pub use init::init_params;
pub use lower::{lower, param_infos, LowerError, LowerOptions};
pub use units::{all_fixed_units, fixed_units, UnitChoice};
