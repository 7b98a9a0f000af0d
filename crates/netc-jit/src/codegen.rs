//! Translation of [`Kernel`]s to machine code with Cranelift.
//!
//! Every kernel becomes `fn(pointers, row_start, row_end, inner, col_start, col_end)`, a loop
//! over rows around three column loops: two 4-lane vectors per iteration, then one, then a
//! scalar tail. Vector and scalar code perform the same operations (FMA in both or in
//! neither), so an element's value never depends on where the caller splits the work.

use crate::kernel::{Kernel, Layout, Node, NodeId};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    types, AbiParam, Endianness, FuncRef, InstBuilder, MemFlagsData, Type, UserFuncName, Value,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, FuncId, Linkage, Module};
use netc_ir::{BinaryFn, UnaryFn};
use std::fmt;
use std::ops::Range;

/// Why code generation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JitError(pub String);

impl fmt::Display for JitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "code generation failed: {}", self.0)
    }
}

impl std::error::Error for JitError {}

fn err(e: impl fmt::Display) -> JitError {
    JitError(e.to_string())
}

type RawKernel = unsafe extern "C" fn(*const *mut f32, usize, usize, usize, usize, usize);

/// The executable memory of a set of kernels. Dropping it frees the code.
struct Machine(Option<JITModule>);

// SAFETY: after `finalize_definitions` the module is never used again except to free its
// memory on drop, which `&self` cannot reach; the code itself is immutable.
unsafe impl Sync for Machine {}
// SAFETY: as above; the module owns its memory, and freeing it from another thread is fine.
unsafe impl Send for Machine {}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Some(module) = self.0.take() {
            // SAFETY: the function pointers into this memory live in the same `Code`, which is
            // being dropped, so no caller can still hold one.
            unsafe { module.free_memory() };
        }
    }
}

/// Compiled kernels, in the order they were given.
pub struct Code {
    kernels: Vec<(RawKernel, usize)>,
    _machine: Machine,
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Code").field("kernels", &self.kernels.len()).finish()
    }
}

impl Code {
    /// The number of kernels.
    pub fn len(&self) -> usize {
        self.kernels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kernels.is_empty()
    }

    /// Runs kernel `k` on rows `rows` and columns `cols` of a grid `inner` columns wide.
    /// `pointers` holds the kernel's operands' base pointers, then its outputs'.
    ///
    /// # Safety
    /// Each pointer must be valid for every index its layout reads (operands) or `Full`
    /// index it writes (outputs) in that part of the grid, and no other thread may write what
    /// this call reads or writes.
    pub unsafe fn run(&self, k: usize, pointers: &[*mut f32], rows: Range<usize>, inner: usize, cols: Range<usize>) {
        let (f, arity) = self.kernels[k];
        assert_eq!(pointers.len(), arity, "kernel {k} takes {arity} pointers");
        assert!(cols.end <= inner || rows.is_empty(), "columns {cols:?} outside a grid {inner} wide");
        // SAFETY: the arity matches; validity of the pointers is the caller's obligation.
        unsafe { f(pointers.as_ptr(), rows.start, rows.end, inner, cols.start, cols.end) }
    }
}

/// `f(x)` for the functions compiled code calls out for.
macro_rules! callout {
    ($name:ident, $f:expr) => {
        extern "C" fn $name(x: f32) -> f32 {
            crate::kernel::apply($f, x)
        }
    };
}
callout!(sigmoid, UnaryFn::Sigmoid);
callout!(tanh, UnaryFn::Tanh);
callout!(sigmoid_deriv, UnaryFn::SigmoidDeriv);
callout!(tanh_deriv, UnaryFn::TanhDeriv);
callout!(exp, UnaryFn::Exp);
callout!(log, UnaryFn::Log);
callout!(log1p, UnaryFn::Log1p);
callout!(softplus, UnaryFn::Softplus);
callout!(log1p_deriv, UnaryFn::Log1pDeriv);
callout!(sqrt_deriv, UnaryFn::SqrtDeriv);

extern "C" fn pow(a: f32, b: f32) -> f32 {
    crate::kernel::apply_binary(BinaryFn::Pow, a, b)
}

type Callout = extern "C" fn(f32) -> f32;

/// The transcendental functions: computed in `f64` by Rust, one lane at a time.
const CALLOUTS: [(UnaryFn, &str, Callout); 10] = [
    (UnaryFn::Sigmoid, "netc_sigmoid", sigmoid),
    (UnaryFn::Tanh, "netc_tanh", tanh),
    (UnaryFn::SigmoidDeriv, "netc_sigmoid_deriv", sigmoid_deriv),
    (UnaryFn::TanhDeriv, "netc_tanh_deriv", tanh_deriv),
    (UnaryFn::Exp, "netc_exp", exp),
    (UnaryFn::Log, "netc_log", log),
    (UnaryFn::Log1p, "netc_log1p", log1p),
    (UnaryFn::Softplus, "netc_softplus", softplus),
    (UnaryFn::Log1pDeriv, "netc_log1p_deriv", log1p_deriv),
    (UnaryFn::SqrtDeriv, "netc_sqrt_deriv", sqrt_deriv),
];

/// `pow`, the one function of two operands computed by Rust.
const POW: &str = "netc_pow";

/// A function compiled code calls: one of [`CALLOUTS`], or [`POW`].
#[derive(Clone, Copy, PartialEq)]
enum Callee {
    Unary(UnaryFn),
    Pow,
}

/// Compiles `kernels` for the host CPU.
pub fn compile(kernels: &[Kernel]) -> Result<Code, JitError> {
    for k in kernels {
        k.validate().map_err(err)?;
    }
    let mut builder = JITBuilder::with_flags(&[("opt_level", "speed")], default_libcall_names()).map_err(err)?;
    for (_, name, f) in CALLOUTS {
        builder.symbol(name, f as *const u8);
    }
    builder.symbol(POW, pow as extern "C" fn(f32, f32) -> f32 as *const u8);
    let mut module = JITModule::new(builder);

    let ptr = module.target_config().pointer_type();
    let mut callout_sig = module.make_signature();
    callout_sig.params.push(AbiParam::new(types::F32));
    callout_sig.returns.push(AbiParam::new(types::F32));
    let mut callouts: Vec<FuncId> = CALLOUTS
        .iter()
        .map(|(_, name, _)| module.declare_function(name, Linkage::Import, &callout_sig).map_err(err))
        .collect::<Result<_, _>>()?;
    let mut pow_sig = callout_sig.clone();
    pow_sig.params.push(AbiParam::new(types::F32));
    callouts.push(module.declare_function(POW, Linkage::Import, &pow_sig).map_err(err)?);

    let mut sig = module.make_signature();
    sig.params.extend([AbiParam::new(ptr); 6]);
    let config = module.target_config();
    let mut ctx = module.make_context();
    let mut fctx = FunctionBuilderContext::new();
    let mut ids = Vec::with_capacity(kernels.len());
    for (i, kernel) in kernels.iter().enumerate() {
        let id = module.declare_function(&format!("kernel{i}"), Linkage::Local, &sig).map_err(err)?;
        ctx.func.signature = sig.clone();
        ctx.func.name = UserFuncName::user(0, id.as_u32());
        {
            let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
            let mut refs = vec![None; callouts.len()];
            let mut callout = |b: &mut FunctionBuilder, callee: Callee| {
                let i = match callee {
                    Callee::Unary(f) => CALLOUTS.iter().position(|(g, _, _)| *g == f)?,
                    Callee::Pow => CALLOUTS.len(),
                };
                Some(*refs[i].get_or_insert_with(|| module.declare_func_in_func(callouts[i], b.func)))
            };
            Emitter { kernel, ptr, callout: &mut callout }.function(&mut b);
            b.seal_all_blocks();
            b.finalize(config);
        }
        module.define_function(id, &mut ctx).map_err(|e| JitError(format!("{e:?}")))?;
        module.clear_context(&mut ctx);
        ids.push(id);
    }
    module.finalize_definitions().map_err(err)?;
    let kernels = ids
        .iter()
        .zip(kernels)
        .map(|(&id, k)| {
            let code = module.get_finalized_function(id);
            // SAFETY: the function was built with exactly this signature in the host's
            // default calling convention, which is `extern "C"`.
            let f = unsafe { std::mem::transmute::<*const u8, RawKernel>(code) };
            (f, k.operands.len() + k.outputs.len())
        })
        .collect();
    Ok(Code { kernels, _machine: Machine(Some(module)) })
}

/// Builds one kernel's function.
struct Emitter<'a, C> {
    kernel: &'a Kernel,
    ptr: Type,
    callout: &'a mut C,
}

/// Per-row addresses and values, shared by the column loops.
struct Row {
    /// Base pointer of each operand, then each output.
    bases: Vec<Value>,
    /// Start of the current row of each `Full` operand or output (else its base).
    row_start: Vec<Value>,
    /// The current row's value of each `Row`/`Scalar` operand: scalar, then splatted.
    scalars: Vec<Option<(Value, Value)>>,
}

const LANES: i64 = 4;

impl<C: FnMut(&mut FunctionBuilder, Callee) -> Option<FuncRef>> Emitter<'_, C> {
    fn function(&mut self, b: &mut FunctionBuilder) {
        let ptr = self.ptr;
        let k = self.kernel;
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let p = b.block_params(entry).to_vec();
        let (table, r0, r1, inner, c0, c1) = (p[0], p[1], p[2], p[3], p[4], p[5]);
        let slots = k.operands.len() + k.outputs.len();
        let bases: Vec<Value> =
            (0..slots).map(|i| b.ins().load(ptr, MemFlagsData::trusted(), table, (i * 8) as i32)).collect();
        let mut scalars = vec![None; k.operands.len()];
        for (o, layout) in k.operands.iter().enumerate() {
            if *layout == Layout::Scalar {
                scalars[o] = Some(self.splat_load(b, bases[o]));
            }
        }

        let r = b.declare_var(ptr);
        let c = b.declare_var(ptr);
        b.def_var(r, r0);
        let [row_head, row_body, wide_head, wide_body, vec_head, vec_body, tail_head, tail_body, row_next, exit] =
            [(); 10].map(|_| b.create_block());
        b.ins().jump(row_head, &[]);

        b.switch_to_block(row_head);
        let rv = b.use_var(r);
        let more = b.ins().icmp(IntCC::UnsignedLessThan, rv, r1);
        b.ins().brif(more, row_body, &[], exit, &[]);

        b.switch_to_block(row_body);
        let rv = b.use_var(r);
        let first = b.ins().imul(rv, inner);
        let first_bytes = b.ins().ishl_imm_u(first, 2);
        let full = |slot: usize| slot >= k.operands.len() || k.operands[slot] == Layout::Full;
        let row_start: Vec<Value> =
            (0..slots).map(|s| if full(s) { b.ins().iadd(bases[s], first_bytes) } else { bases[s] }).collect();
        for (o, layout) in k.operands.iter().enumerate() {
            if let Layout::Row { period } = *layout {
                let index = b.ins().urem_imm_u(rv, period as i64);
                let bytes = b.ins().ishl_imm_u(index, 2);
                let at = b.ins().iadd(bases[o], bytes);
                scalars[o] = Some(self.splat_load(b, at));
            }
        }
        let row = Row { bases, row_start, scalars };
        b.def_var(c, c0);
        b.ins().jump(wide_head, &[]);

        // The column loops: `step` elements at a time while they fit.
        let mut column_loop = |b: &mut FunctionBuilder, head, body, next, step: i64, lanes: &[i64]| {
            b.switch_to_block(head);
            let cv = b.use_var(c);
            let end = b.ins().iadd_imm_s(cv, step);
            let fits = b.ins().icmp(IntCC::UnsignedLessThanOrEqual, end, c1);
            b.ins().brif(fits, body, &[], next, &[]);
            b.switch_to_block(body);
            let cv = b.use_var(c);
            for &offset in lanes {
                self.elements(b, &row, cv, offset);
            }
            let advanced = b.ins().iadd_imm_s(cv, step);
            b.def_var(c, advanced);
        };
        column_loop(b, wide_head, wide_body, vec_head, 2 * LANES, &[0, LANES]);
        b.ins().jump(wide_head, &[]);
        column_loop(b, vec_head, vec_body, tail_head, LANES, &[0]);
        b.ins().jump(tail_head, &[]);
        column_loop(b, tail_head, tail_body, row_next, 1, &[-1]);
        b.ins().jump(tail_head, &[]);

        b.switch_to_block(row_next);
        let rv = b.use_var(r);
        let next = b.ins().iadd_imm_s(rv, 1);
        b.def_var(r, next);
        b.ins().jump(row_head, &[]);

        b.switch_to_block(exit);
        b.ins().return_(&[]);
    }

    /// Loads one `f32` and splats it to a vector.
    fn splat_load(&self, b: &mut FunctionBuilder, at: Value) -> (Value, Value) {
        let s = b.ins().load(types::F32, MemFlagsData::trusted(), at, 0);
        let v = b.ins().splat(types::F32X4, s);
        (s, v)
    }

    /// Computes and stores the elements at column `col + offset`: four lanes, or one scalar
    /// when `offset` is −1.
    fn elements(&mut self, b: &mut FunctionBuilder, row: &Row, col: Value, offset: i64) {
        let k = self.kernel;
        let scalar = offset < 0;
        let ty = if scalar { types::F32 } else { types::F32X4 };
        let disp = (offset.max(0) * 4) as i32;
        let bytes = b.ins().ishl_imm_u(col, 2);
        let mem = MemFlagsData::new().with_notrap();
        let mut values: Vec<Option<Value>> = vec![None; k.nodes.len()];
        for (n, node) in k.nodes.iter().enumerate() {
            let v = |m: NodeId| values[m].expect("arguments come first and are computed");
            let value = match *node {
                Node::Operand(o) => match (k.operands[o], row.scalars[o]) {
                    (Layout::Full, _) => {
                        let at = b.ins().iadd(row.row_start[o], bytes);
                        b.ins().load(ty, mem, at, disp)
                    }
                    (Layout::Col, _) => {
                        let at = b.ins().iadd(row.bases[o], bytes);
                        b.ins().load(ty, mem, at, disp)
                    }
                    (_, Some((s, splat))) => {
                        if scalar {
                            s
                        } else {
                            splat
                        }
                    }
                    (_, None) => unreachable!("row and scalar operands are loaded per row"),
                },
                Node::Const(c) => constant(b, ty, c),
                // No contraction into FMA: each op of the IR rounds on its own, as the
                // interpreter computes it, on every CPU.
                Node::Add(x, y) => b.ins().fadd(v(x), v(y)),
                Node::Sub(x, y) => b.ins().fsub(v(x), v(y)),
                Node::Mul(x, y) => b.ins().fmul(v(x), v(y)),
                Node::Select { mask, a, b: other } => {
                    let zero = constant(b, ty, 0.0);
                    let cond = b.ins().fcmp(FloatCC::NotEqual, v(mask), zero);
                    choose(b, ty, cond, v(a), v(other))
                }
                Node::Unary(f, x) => self.unary(b, ty, f, v(x)),
                Node::Binary(f, x, y) => self.binary(b, ty, f, v(x), v(y)),
            };
            values[n] = Some(value);
        }
        for (i, &out) in k.outputs.iter().enumerate() {
            let slot = k.operands.len() + i;
            let at = b.ins().iadd(row.row_start[slot], bytes);
            let value = values[out].expect("outputs are computed");
            b.ins().store(mem, value, at, disp);
        }
    }

    fn unary(&mut self, b: &mut FunctionBuilder, ty: Type, f: UnaryFn, x: Value) -> Value {
        let zero = constant(b, ty, 0.0);
        let one = constant(b, ty, 1.0);
        let compare = |b: &mut FunctionBuilder, cc: FloatCC, y: Value| b.ins().fcmp(cc, x, y);
        match f {
            UnaryFn::Relu => {
                let c = compare(b, FloatCC::GreaterThan, zero);
                choose(b, ty, c, x, zero)
            }
            UnaryFn::ReluDeriv => {
                let c = compare(b, FloatCC::GreaterThan, zero);
                choose(b, ty, c, one, zero)
            }
            UnaryFn::Scale { c } => {
                let c = constant(b, ty, c as f32);
                b.ins().fmul(x, c)
            }
            UnaryFn::Equal { value } => {
                let v = constant(b, ty, value as f32);
                let c = compare(b, FloatCC::Equal, v);
                choose(b, ty, c, one, zero)
            }
            UnaryFn::Sqrt => b.ins().sqrt(x),
            UnaryFn::Abs => b.ins().fabs(x),
            UnaryFn::Sign => {
                let minus_one = constant(b, ty, -1.0);
                let negative = compare(b, FloatCC::LessThan, zero);
                let rest = choose(b, ty, negative, minus_one, zero);
                let positive = compare(b, FloatCC::GreaterThan, zero);
                choose(b, ty, positive, one, rest)
            }
            UnaryFn::LogDeriv => b.ins().fdiv(one, x),
            UnaryFn::Sigmoid
            | UnaryFn::Tanh
            | UnaryFn::SigmoidDeriv
            | UnaryFn::TanhDeriv
            | UnaryFn::Exp
            | UnaryFn::Log
            | UnaryFn::Log1p
            | UnaryFn::Softplus
            | UnaryFn::Log1pDeriv
            | UnaryFn::SqrtDeriv => self.call(b, ty, Callee::Unary(f), &[x]),
        }
    }

    fn binary(&mut self, b: &mut FunctionBuilder, ty: Type, f: BinaryFn, x: Value, y: Value) -> Value {
        let compare = |b: &mut FunctionBuilder, cc: FloatCC| {
            let c = b.ins().fcmp(cc, x, y);
            let (one, zero) = (constant(b, ty, 1.0), constant(b, ty, 0.0));
            choose(b, ty, c, one, zero)
        };
        match f {
            BinaryFn::Div => b.ins().fdiv(x, y),
            BinaryFn::Min => {
                let c = b.ins().fcmp(FloatCC::LessThan, x, y);
                choose(b, ty, c, x, y)
            }
            BinaryFn::Max => {
                let c = b.ins().fcmp(FloatCC::GreaterThan, x, y);
                choose(b, ty, c, x, y)
            }
            BinaryFn::Pow => self.call(b, ty, Callee::Pow, &[x, y]),
            BinaryFn::Less => compare(b, FloatCC::LessThan),
            BinaryFn::LessEqual => compare(b, FloatCC::LessThanOrEqual),
            BinaryFn::Greater => compare(b, FloatCC::GreaterThan),
            BinaryFn::GreaterEqual => compare(b, FloatCC::GreaterThanOrEqual),
            BinaryFn::Equal => compare(b, FloatCC::Equal),
            BinaryFn::NotEqual => compare(b, FloatCC::NotEqual),
        }
    }

    /// A call of a Rust function, lane by lane for vectors.
    fn call(&mut self, b: &mut FunctionBuilder, ty: Type, callee: Callee, args: &[Value]) -> Value {
        let callee = (self.callout)(b, callee).expect("every called function is declared");
        let call = |b: &mut FunctionBuilder, scalars: &[Value]| {
            let inst = b.ins().call(callee, scalars);
            b.inst_results(inst)[0]
        };
        if ty == types::F32 {
            return call(b, args);
        }
        let lanes: Vec<Value> = (0..LANES as u8)
            .map(|l| {
                let scalars: Vec<Value> = args.iter().map(|&a| b.ins().extractlane(a, l)).collect();
                call(b, &scalars)
            })
            .collect();
        let mut v = b.ins().scalar_to_vector(types::F32X4, lanes[0]);
        for (l, &s) in lanes.iter().enumerate().skip(1) {
            v = b.ins().insertlane(v, s, l as u8);
        }
        v
    }
}

fn constant(b: &mut FunctionBuilder, ty: Type, c: f32) -> Value {
    let s = b.ins().f32const(c);
    if ty == types::F32 {
        s
    } else {
        b.ins().splat(ty, s)
    }
}

/// `a` where the comparison result `cond` holds, else `b`.
fn choose(b: &mut FunctionBuilder, ty: Type, cond: Value, x: Value, y: Value) -> Value {
    if ty == types::F32 {
        b.ins().select(cond, x, y)
    } else {
        let mask = b.ins().bitcast(ty, MemFlagsData::new().with_endianness(Endianness::Little), cond);
        b.ins().bitselect(mask, x, y)
    }
}
