//! Compiled kernels against the reference evaluator, on random kernels and grids (odd widths
//! exercise the scalar tails), and invariance under any split of the grid.

use netc_ir::{BinaryFn, UnaryFn};
use netc_jit::{compile, Kernel, Layout, Node};
use proptest::prelude::*;

const FUNCTIONS: [UnaryFn; 18] = [
    UnaryFn::Relu,
    UnaryFn::Sigmoid,
    UnaryFn::Tanh,
    UnaryFn::Scale { c: -1.5 },
    UnaryFn::Equal { value: 1.0 },
    UnaryFn::ReluDeriv,
    UnaryFn::SigmoidDeriv,
    UnaryFn::TanhDeriv,
    UnaryFn::Exp,
    UnaryFn::Log,
    UnaryFn::Log1p,
    UnaryFn::Sqrt,
    UnaryFn::Abs,
    UnaryFn::Softplus,
    UnaryFn::Sign,
    UnaryFn::LogDeriv,
    UnaryFn::Log1pDeriv,
    UnaryFn::SqrtDeriv,
];

fn layout() -> impl Strategy<Value = Layout> {
    prop_oneof![
        3 => Just(Layout::Full),
        1 => Just(Layout::Col),
        1 => (1usize..5).prop_map(|period| Layout::Row { period }),
        1 => Just(Layout::Scalar),
    ]
}

/// A random kernel: operands, then nodes each reading earlier ones (picked by `u32`s taken
/// modulo the number of earlier nodes), then one or two outputs.
fn kernel() -> impl Strategy<Value = Kernel> {
    let node = (0u8..7, any::<[u32; 3]>(), 0..FUNCTIONS.len(), -2.0f32..2.0);
    (prop::collection::vec(layout(), 1..5), prop::collection::vec(node, 1..12), any::<u32>()).prop_map(
        |(layouts, nodes, extra)| {
            let mut k = Kernel::default();
            for l in layouts {
                k.operand(l);
            }
            for (kind, picks, f, c) in nodes {
                let n = k.nodes.len() as u32;
                let [a, b, m] = picks.map(|p| (p % n) as usize);
                k.push(match kind {
                    0 => Node::Const(c),
                    1 => Node::Unary(FUNCTIONS[f], a),
                    2 => Node::Add(a, b),
                    3 => Node::Sub(a, b),
                    4 => Node::Mul(a, b),
                    5 => Node::Binary(BinaryFn::ALL[f % BinaryFn::ALL.len()], a, b),
                    _ => Node::Select { mask: m, a, b },
                });
            }
            let last = k.nodes.len() - 1;
            k.outputs.push(last);
            let other = extra as usize % k.nodes.len();
            if other != last {
                k.outputs.push(other);
            }
            k
        },
    )
}

/// Operand values: mostly small numbers, with exact zeros and ones so selects, `equal` and
/// the derivative maps take both branches.
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            match (state >> 33) % 8 {
                0 => 0.0,
                1 => 1.0,
                r => ((state >> 40) as f32 / (1u64 << 24) as f32) * 6.0 - 3.0 + r as f32 * 0.01,
            }
        })
        .collect()
}

fn operand_len(layout: Layout, rows: usize, inner: usize) -> usize {
    match layout {
        Layout::Full => rows * inner,
        Layout::Col => inner,
        Layout::Row { period } => period,
        Layout::Scalar => 1,
    }
}

/// Runs kernel 0 of `code` over the grid in the given pieces, returning the outputs.
fn run(
    code: &netc_jit::Code,
    k: &Kernel,
    operands: &mut [Vec<f32>],
    rows: usize,
    inner: usize,
    pieces: &[(std::ops::Range<usize>, std::ops::Range<usize>)],
) -> Vec<Vec<f32>> {
    let mut outputs = vec![vec![f32::NAN; rows * inner]; k.outputs.len()];
    let mut pointers: Vec<*mut f32> = operands.iter_mut().map(|o| o.as_mut_ptr()).collect();
    pointers.extend(outputs.iter_mut().map(|o| o.as_mut_ptr()));
    for (r, c) in pieces {
        // SAFETY: every buffer covers the whole grid in its layout; nothing else runs.
        unsafe { code.run(0, &pointers, r.clone(), inner, c.clone()) };
    }
    outputs
}

fn close(got: f32, want: f32) -> bool {
    got.to_bits() == want.to_bits()
        || (got.is_nan() && want.is_nan())
        || (got - want).abs() <= 1e-5 * (1.0 + want.abs().max(got.abs()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn compiled_kernels_match_the_reference_and_any_split(
        k in kernel(),
        rows in 1usize..6,
        inner in 1usize..23,
        seed in any::<u64>(),
        row_cut in any::<usize>(),
        col_cut in any::<usize>(),
    ) {
        let code = compile(std::slice::from_ref(&k)).unwrap();
        let mut operands: Vec<Vec<f32>> = k
            .operands
            .iter()
            .enumerate()
            .map(|(i, &l)| values(operand_len(l, rows, inner), seed ^ i as u64))
            .collect();
        let whole = run(&code, &k, &mut operands, rows, inner, &[(0..rows, 0..inner)]);

        let refs: Vec<&[f32]> = operands.iter().map(|o| o.as_slice()).collect();
        let reference = k.evaluate(&refs, rows, inner);
        for (o, &node) in k.outputs.iter().enumerate() {
            for (e, (&got, &want)) in whole[o].iter().zip(&reference[node]).enumerate() {
                prop_assert!(close(got, want), "output {o} element {e}: {got} vs {want}\n{k}");
            }
        }

        // Rows split in two, and within each row the columns split in two, as executors may.
        let (rc, cc) = (row_cut % (rows + 1), col_cut % (inner + 1));
        let mut pieces = Vec::new();
        for r in [0..rc, rc..rows] {
            for c in [0..cc, cc..inner] {
                pieces.push((r.clone(), c));
            }
        }
        let split = run(&code, &k, &mut operands, rows, inner, &pieces);
        for (a, b) in whole.iter().flatten().zip(split.iter().flatten()) {
            prop_assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{a} vs {b}\n{k}");
        }
    }
}

#[test]
fn an_update_may_write_over_its_operands() {
    // m ← 0.9·m − g;  w ← w + 0.1·m, in place.
    let mut k = Kernel::default();
    let (w, m, g) = (k.operand(Layout::Full), k.operand(Layout::Full), k.operand(Layout::Full));
    let mu = k.push(Node::Const(0.9));
    let decayed = k.push(Node::Mul(mu, m));
    let m2 = k.push(Node::Sub(decayed, g));
    let lr = k.push(Node::Const(0.1));
    let step = k.push(Node::Mul(lr, m2));
    let w2 = k.push(Node::Add(step, w));
    k.outputs = vec![w2, m2];
    let code = compile(&[k]).unwrap();
    let n = 11;
    let (mut wv, mut mv, mut gv) = (vec![1.0f32; n], vec![0.5f32; n], vec![2.0f32; n]);
    let pointers = [wv.as_mut_ptr(), mv.as_mut_ptr(), gv.as_mut_ptr(), wv.as_mut_ptr(), mv.as_mut_ptr()];
    // SAFETY: the buffers cover the 1×11 grid; outputs alias operands element for element.
    unsafe { code.run(0, &pointers, 0..1, n, 0..n) };
    let m_want = 0.9f32 * 0.5 - 2.0;
    assert!(mv.iter().all(|&v| (v - m_want).abs() < 1e-6), "{mv:?}");
    assert!(wv.iter().all(|&v| (v - (1.0 + 0.1 * m_want)).abs() < 1e-6), "{wv:?}");
    assert_eq!(gv, vec![2.0; n]);
}

#[test]
fn malformed_kernels_are_rejected_not_compiled() {
    let mut forward_reference = Kernel::default();
    forward_reference.push(Node::Unary(UnaryFn::Relu, 1));
    forward_reference.push(Node::Const(1.0));
    forward_reference.outputs.push(0);
    let err = compile(&[forward_reference]).unwrap_err();
    assert!(err.to_string().contains("does not come before it"), "{err}");

    let no_outputs = Kernel::default();
    assert!(compile(&[no_outputs]).unwrap_err().to_string().contains("no outputs"));
}
