//! Machine code for netc's fused elementwise kernels, generated at run time with Cranelift.
//!
//! A [`Kernel`] describes what one fused kernel computes: a small expression DAG (activations,
//! their derivatives, sums, products, mask selects) over operands read in a broadcast
//! [`Layout`]. [`compile`] turns a list of them into [`Code`]: 4-lane SIMD loops, unrolled
//! twice, with a scalar tail, using FMA where the CPU has it. [`Kernel::evaluate`] computes
//! the same thing element by element, the reference the compiled code is tested against.
//!
//! ```
//! use netc_jit::{compile, Kernel, Layout, Node};
//! use netc_ir::UnaryFn;
//!
//! // out = relu(x + bias[column])
//! let mut k = Kernel::default();
//! let x = k.operand(Layout::Full);
//! let bias = k.operand(Layout::Col);
//! let sum = k.push(Node::Add(x, bias));
//! let y = k.push(Node::Unary(UnaryFn::Relu, sum));
//! k.outputs.push(y);
//!
//! let code = compile(&[k]).unwrap();
//! let (mut xs, mut bias, mut out) = (vec![1.0, -2.0, 3.0, -4.0, 5.0, -6.0], vec![0.5, 1.0, -10.0], vec![0.0; 6]);
//! let pointers = [xs.as_mut_ptr(), bias.as_mut_ptr(), out.as_mut_ptr()];
//! // SAFETY: every pointer covers the 2×3 grid in its layout, and nothing else runs.
//! unsafe { code.run(0, &pointers, 0..2, 3, 0..3) };
//! assert_eq!(out, [1.5, 0.0, 0.0, 0.0, 6.0, 0.0]);
//! ```

mod codegen;
mod kernel;

pub use codegen::{compile, Code, JitError};
pub use kernel::{apply, apply_binary, InvalidKernel, Kernel, Layout, Node, NodeId};
