//! The reference interpreter for netc IR programs: one plain loop nest per op, no cleverness,
//! any batch size. It defines what compiled executors must compute.
//!
//! ```
//! use netc_ir::{grad, Mode, Tensor};
//! use netc_lower::{init_params, lower, LowerOptions};
//! use netc_interp::{Feed, Interpreter};
//!
//! let src = "net tiny {\n  input x: [4]\n  dense(3)\n  tanh\n  dense(2)\n  loss softmax_xent(classes=2)\n}";
//! let checked = netc_check::check(&netc_syntax::parse(src).unwrap(), &[]).unwrap();
//! let forward = lower(&checked.nets[0], LowerOptions { mode: Mode::Train, seed: 1 }).unwrap();
//! let program = grad(&forward).unwrap();
//! let params = init_params(&program, &netc_check::Init::Xavier, 1);
//! let data = Tensor::new(vec![2, 4], vec![0.5, -1.0, 2.0, 0.0, 1.0, 1.0, -0.5, 0.25]).unwrap();
//! let labels = Tensor::new(vec![2], vec![1.0, 0.0]).unwrap();
//! let feed = Feed { data: Some(&data), labels: Some(&labels), step: 0, params: &params };
//! let out = Interpreter::default().run(&program, &feed).unwrap();
//! assert!(out.get("loss").unwrap().data()[0] > 0.0);
//! assert_eq!(out.get("dense1.weight").unwrap().shape(), &[3, 4]);
//! ```

mod kernels;
mod real;

use kernels::Buf;
use netc_ir::{Dim, InputKind, Op, Program, Shape, Source, Tensor, ValueId};
use real::Real;
use std::collections::HashMap;
use std::fmt;

/// Runs programs in `f32`, as compiled code computes, or in `f64` for gradient checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interpreter {
    /// Stop at the first value holding a NaN or infinity and report its source layer.
    pub check_finite: bool,
}

impl Default for Interpreter {
    fn default() -> Interpreter {
        Interpreter { check_finite: true }
    }
}

/// The values of a program's inputs.
#[derive(Clone, Copy, Debug)]
pub struct Feed<'a> {
    /// The data batch `[N, ...]`.
    pub data: Option<&'a Tensor>,
    /// Class indices `[N]`.
    pub labels: Option<&'a Tensor>,
    /// The training-step counter; per-step random numbers are keyed by it.
    pub step: u64,
    /// Parameters by name, e.g. from [`netc_lower::init_params`].
    pub params: &'a [(String, Tensor)],
}

/// The program's outputs, named and in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Outputs {
    pub values: Vec<(String, Tensor)>,
}

impl Outputs {
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// Outputs computed in `f64`: name, shape and values.
#[derive(Clone, Debug, PartialEq)]
pub struct Outputs64 {
    pub values: Vec<(String, Vec<usize>, Vec<f64>)>,
}

impl Outputs64 {
    pub fn get(&self, name: &str) -> Option<&[f64]> {
        self.values.iter().find(|(n, _, _)| n == name).map(|(_, _, v)| v.as_slice())
    }
}

/// Why a program could not run.
#[derive(Clone, Debug, PartialEq)]
pub enum RunError {
    MissingInput {
        name: String,
    },
    InputShape {
        name: String,
        expected: Shape,
        got: Vec<usize>,
    },
    /// The inputs disagree on the batch size, or none determines it.
    BatchSize {
        message: String,
    },
    /// A label that is not a class index.
    BadLabel {
        example: usize,
        value: f32,
        classes: usize,
    },
    /// A value holds a NaN or infinity.
    NonFinite {
        value: ValueId,
        op: &'static str,
        source: Option<Source>,
    },
    /// A value was read before it was computed; programs from `netc_ir::Builder` never do.
    Internal {
        value: ValueId,
    },
}

impl RunError {
    /// The source layer the problem arose in, if known.
    pub fn layer(&self) -> Option<&Source> {
        match self {
            RunError::NonFinite { source, .. } => source.as_ref(),
            _ => None,
        }
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::MissingInput { name } => write!(f, "no value given for input `{name}`"),
            RunError::InputShape { name, expected, got } => {
                write!(f, "input `{name}` should have shape {expected}, got {got:?}")
            }
            RunError::BatchSize { message } => f.write_str(message),
            RunError::BadLabel { example, value, classes } => {
                write!(f, "label {value} of example {example} is not a class index in 0..{classes}")
            }
            RunError::Internal { value } => write!(f, "internal error: {value} was read before it was computed"),
            RunError::NonFinite { value, op, source } => {
                write!(f, "`{op}` produced a NaN or infinity ({value})")?;
                if let Some(s) = source {
                    write!(f, " in `{}`", s.name)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for RunError {}

impl Interpreter {
    /// Runs `program` on `feed` in `f32` and returns its outputs.
    pub fn run(&self, program: &Program, feed: &Feed) -> Result<Outputs, RunError> {
        let values = self
            .run_in::<f32>(program, feed)?
            .into_iter()
            .map(|(name, buf)| {
                let tensor =
                    Tensor::new(buf.shape, buf.data).map_err(|e| RunError::BatchSize { message: e.to_string() })?;
                Ok((name, tensor))
            })
            .collect::<Result<_, RunError>>()?;
        Ok(Outputs { values })
    }

    /// Runs `program` on `feed` computing in `f64`, precise enough for finite differences.
    pub fn run_f64(&self, program: &Program, feed: &Feed) -> Result<Outputs64, RunError> {
        let values =
            self.run_in::<f64>(program, feed)?.into_iter().map(|(name, buf)| (name, buf.shape, buf.data)).collect();
        Ok(Outputs64 { values })
    }

    fn run_in<T: Real>(&self, program: &Program, feed: &Feed) -> Result<Vec<(String, Buf<T>)>, RunError> {
        let insts = program.insts();
        let inputs = bind_inputs(program, feed)?;
        let batch = batch_size(program, &inputs)?;
        // Free each value after its last reader.
        let mut last_use = vec![0; insts.len()];
        for (i, inst) in insts.iter().enumerate() {
            for a in &inst.args {
                last_use[a.0] = i;
            }
        }
        for o in program.outputs() {
            last_use[o.value.0] = usize::MAX;
        }
        let mut values: Vec<Option<Buf<T>>> = vec![None; insts.len()];
        for (i, inst) in insts.iter().enumerate() {
            let shape = inst.shape.resolve(batch);
            let arg = |k: usize| values[inst.args[k].0].as_ref().ok_or(RunError::Internal { value: inst.args[k] });
            let result = match &inst.op {
                Op::Input(input) => match &input.kind {
                    InputKind::Step => Buf::new(Vec::new(), vec![T::from_f64(feed.step as f64)]),
                    _ => {
                        let tensor = inputs
                            .get(&ValueId(i))
                            .copied()
                            .ok_or_else(|| RunError::MissingInput { name: input.name.clone() })?;
                        Buf::new(
                            tensor.shape().to_vec(),
                            tensor.data().iter().map(|&v| T::from_f64(f64::from(v))).collect(),
                        )
                    }
                },
                Op::Const(t) => {
                    Buf::new(t.shape().to_vec(), t.data().iter().map(|&v| T::from_f64(f64::from(v))).collect())
                }
                Op::Fill { value, .. } => Buf::full(shape, T::from_f64(f64::from(*value))),
                Op::RandomBernoulli { keep, key, .. } => {
                    let key = netc_ir::rng::Key::new(key.seed, &key.stream, feed.step);
                    let len: usize = shape.iter().product();
                    let data =
                        (0..len as u64).map(|e| T::from_f64(f64::from(u8::from(key.uniform(e) < *keep)))).collect();
                    Buf::new(shape, data)
                }
                Op::RandomParts { fracs, key, .. } => {
                    let key = netc_ir::rng::Key::new(key.seed, &key.stream, feed.step);
                    let parts = key.assign_parts(fracs, shape.iter().product());
                    Buf::new(shape, parts.into_iter().map(|p| T::from_f64(p as f64)).collect())
                }
                Op::RandomNormal { key, .. } => {
                    let key = netc_ir::rng::Key::new(key.seed, &key.stream, feed.step);
                    let len: usize = shape.iter().product();
                    // Rounded to `f32` first, so every executor draws the same numbers.
                    let data = (0..len as u64).map(|e| T::from_f64(f64::from(key.normal(e) as f32))).collect();
                    Buf::new(shape, data)
                }
                Op::StopGradient | Op::CustomGrad => arg(0)?.clone(),
                Op::Unary(f) => {
                    let x = arg(0)?;
                    Buf::new(x.shape.clone(), x.data.iter().map(|&v| T::from_f64(f.eval(v.to_f64()))).collect())
                }
                Op::Add => kernels::zip(arg(0)?, arg(1)?, |a, b| a + b),
                Op::Sub => kernels::zip(arg(0)?, arg(1)?, |a, b| a - b),
                Op::Mul => kernels::zip(arg(0)?, arg(1)?, |a, b| a * b),
                Op::Binary(f) => kernels::zip(arg(0)?, arg(1)?, |a, b| T::from_f64(f.eval(a.to_f64(), b.to_f64()))),
                Op::Select => kernels::select(arg(0)?, arg(1)?, arg(2)?),
                Op::Broadcast { axes, .. } => kernels::broadcast(arg(0)?, shape, axes),
                Op::Reshape { .. } => Buf::new(shape, arg(0)?.data.clone()),
                Op::Concat { axis } => {
                    let xs: Vec<&Buf<T>> = (0..inst.args.len()).map(arg).collect::<Result<_, _>>()?;
                    kernels::concat(&xs, *axis, shape)
                }
                Op::Slice { axis, start, len } => kernels::slice(arg(0)?, *axis, *start, *len),
                Op::ReduceSum { axes } => kernels::reduce_sum(arg(0)?, axes, shape),
                Op::ReduceMax { axis } => kernels::reduce_max(arg(0)?, *axis),
                Op::ReduceMaxBackward { axis } => kernels::reduce_max_backward(arg(0)?, arg(1)?, *axis),
                Op::MatMul { trans_a, trans_b } => kernels::matmul(arg(0)?, arg(1)?, *trans_a, *trans_b),
                Op::BiasAdd => kernels::bias_add(arg(0)?, arg(1)?),
                Op::Conv2d(conv) => kernels::conv2d(arg(0)?, arg(1)?, *conv, shape),
                Op::Conv2dBackwardData { conv, .. } => kernels::conv2d_backward_data(arg(0)?, arg(1)?, *conv, shape),
                Op::Conv2dBackwardFilter { conv, .. } => {
                    kernels::conv2d_backward_filter(arg(0)?, arg(1)?, *conv, shape)
                }
                Op::Pool { kind: netc_ir::PoolKind::Max, window } => kernels::max_pool(arg(0)?, *window, shape),
                Op::Pool { kind: netc_ir::PoolKind::Avg, window } => kernels::avg_pool(arg(0)?, *window, shape),
                Op::MaxPoolBackward(window) => kernels::max_pool_backward(arg(0)?, arg(1)?, *window),
                Op::AvgPoolBackward { window, .. } => kernels::avg_pool_backward(arg(0)?, *window, shape),
                Op::SoftmaxXent | Op::SoftmaxXentGrad => {
                    let z = arg(0)?;
                    let labels = class_indices(arg(1)?, z.shape.get(1).copied().unwrap_or(0))?;
                    if inst.op == Op::SoftmaxXent {
                        kernels::softmax_xent(z, &labels)
                    } else {
                        kernels::softmax_xent_grad(z, &labels)
                    }
                }
            };
            if self.check_finite && !result.data.iter().all(|v| v.is_finite()) {
                return Err(RunError::NonFinite {
                    value: ValueId(i),
                    op: inst.op.name(),
                    source: program.source_of(ValueId(i)).cloned(),
                });
            }
            values[i] = Some(result);
            for a in &inst.args {
                if last_use[a.0] == i {
                    values[a.0] = None;
                }
            }
        }
        program
            .outputs()
            .iter()
            .map(|o| {
                values[o.value.0].clone().map(|b| (o.name.clone(), b)).ok_or(RunError::Internal { value: o.value })
            })
            .collect()
    }
}

/// The tensor given for each data, labels and parameter input, checked against its shape
/// (up to the batch size).
fn bind_inputs<'a>(program: &Program, feed: &Feed<'a>) -> Result<HashMap<ValueId, &'a Tensor>, RunError> {
    let params: HashMap<&str, &Tensor> = feed.params.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut bound = HashMap::new();
    for (id, input) in program.inputs() {
        let given = match &input.kind {
            InputKind::Data => feed.data,
            InputKind::Labels => feed.labels,
            InputKind::Param(_) => params.get(input.name.as_str()).copied(),
            InputKind::Step => continue,
        };
        let tensor = given.ok_or_else(|| RunError::MissingInput { name: input.name.clone() })?;
        let fits = tensor.shape().len() == input.shape.rank()
            && input
                .shape
                .dims()
                .iter()
                .zip(tensor.shape())
                .all(|(d, &g)| matches!(d, Dim::Batch) || *d == Dim::Fixed(g));
        if !fits {
            return Err(RunError::InputShape {
                name: input.name.clone(),
                expected: input.shape.clone(),
                got: tensor.shape().to_vec(),
            });
        }
        bound.insert(id, tensor);
    }
    Ok(bound)
}

/// The batch size all inputs agree on; 1 when no shape in the program involves it.
fn batch_size(program: &Program, inputs: &HashMap<ValueId, &Tensor>) -> Result<usize, RunError> {
    let mut batch: Option<(usize, &str)> = None;
    for (id, input) in program.inputs() {
        let Some(tensor) = inputs.get(&id) else { continue };
        for (d, &g) in input.shape.dims().iter().zip(tensor.shape()) {
            if *d != Dim::Batch {
                continue;
            }
            match batch {
                Some((n, first)) if n != g => {
                    return Err(RunError::BatchSize {
                        message: format!("input `{first}` has batch size {n}, but `{}` has {g}", input.name),
                    })
                }
                _ => batch = Some((g, &input.name)),
            }
        }
    }
    let needs_batch = program.insts().iter().any(|i| i.shape.batch_count() > 0);
    match batch {
        Some((0, _)) if needs_batch => Err(RunError::BatchSize { message: "the batch is empty".into() }),
        Some((n, _)) => Ok(n),
        None if needs_batch => Err(RunError::BatchSize { message: "no input determines the batch size".into() }),
        None => Ok(1),
    }
}

/// Labels as class indices, each an integer in `0..classes`.
fn class_indices<T: Real>(labels: &Buf<T>, classes: usize) -> Result<Vec<usize>, RunError> {
    labels
        .data
        .iter()
        .enumerate()
        .map(|(example, &v)| {
            let v = v.to_f64();
            if v >= 0.0 && v.fract() == 0.0 && (v as usize) < classes {
                Ok(v as usize)
            } else {
                Err(RunError::BadLabel { example, value: v as f32, classes })
            }
        })
        .collect()
}
