//! Shared test helpers: build programs from net sources, make inputs, run both executors.
#![allow(dead_code)]

use netc_exec::{ExecOptions, Executor, Feed};
use netc_interp::Interpreter;
use netc_ir::rng::Key;
use netc_ir::{Mode, Program, Tensor};

/// A program with parameters and one batch of inputs.
pub struct Case {
    pub program: Program,
    pub params: Vec<(String, Tensor)>,
    pub data: Tensor,
    pub labels: Tensor,
    pub step: u64,
}

pub fn example(name: &str) -> String {
    let path = format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The program of the (only) net in `src`: with `grad`, forward and backward.
pub fn program(src: &str, mode: Mode, grad: bool, seed: u64) -> (Program, netc_check::Net) {
    let checked = netc_check::check(&netc_syntax::parse(src).expect("parses"), &[]).expect("checks");
    let net = checked.nets[0].clone();
    let forward = netc_lower::lower(&net, netc_lower::LowerOptions { mode, seed }).expect("lowers");
    let program = if grad { netc_ir::grad(&forward).expect("differentiates") } else { forward };
    (program, net)
}

/// Parameters from `init_params` (He), with the ones that start constant (biases, ConvAct
/// filters) perturbed so that every parameter matters.
pub fn params(program: &Program, seed: u64) -> Vec<(String, Tensor)> {
    let mut params = netc_lower::init_params(program, &netc_check::Init::He, seed);
    for (name, t) in &mut params {
        let key = Key { seed, stream: netc_ir::rng::stream(&format!("perturb:{name}")), step: 0 };
        for (i, v) in (0..).zip(t.data_mut()) {
            *v += (0.1 * key.normal(i)) as f32;
        }
    }
    params
}

/// A batch of `batch` examples of shape `example` with values in [-1, 1) and random labels.
pub fn inputs(example: &[usize], classes: usize, batch: usize, seed: u64) -> (Tensor, Tensor) {
    let mut shape = vec![batch];
    shape.extend_from_slice(example);
    let len: usize = shape.iter().product();
    let key = Key { seed, stream: netc_ir::rng::stream("test:data"), step: 0 };
    let data = (0..len as u64).map(|i| (2.0 * key.uniform(i) - 1.0) as f32).collect();
    let labels = (0..batch as u64).map(|i| key.below(1_000_000 + i, classes as u64) as f32).collect();
    (Tensor::new(shape, data).expect("shape"), Tensor::new(vec![batch], labels).expect("shape"))
}

pub fn case(src: &str, mode: Mode, grad: bool, batch: usize, seed: u64) -> Case {
    let (program, net) = program(src, mode, grad, seed);
    let params = params(&program, seed);
    let (data, labels) = inputs(&net.input.shape, net.loss.classes, batch, seed);
    Case { program, params, data, labels, step: seed % 5 + 1 }
}

/// A case for a program read from the textual IR: its data input's example shape and its
/// logits' class count decide the batch.
pub fn program_case(program: Program, batch: usize, seed: u64) -> Case {
    let example: Vec<usize> = program
        .inputs()
        .find(|(_, i)| i.kind == netc_ir::InputKind::Data)
        .map(|(_, i)| i.shape.dims()[1..].iter().filter_map(|d| d.fixed()).collect())
        .expect("a data input");
    let logits = program.output(netc_ir::LOGITS).expect("a logits output").value;
    let classes = program.insts()[logits.0].shape.fixed_at(1).expect("[N, classes] logits");
    let params = params(&program, seed);
    let (data, labels) = inputs(&example, classes, batch, seed);
    Case { program, params, data, labels, step: seed % 5 + 1 }
}

impl Case {
    pub fn data_name(&self) -> String {
        self.program
            .inputs()
            .find(|(_, i)| i.kind == netc_ir::InputKind::Data)
            .map(|(_, i)| i.name.clone())
            .expect("a data input")
    }

    /// The outputs by the reference interpreter.
    pub fn interpret(&self) -> Vec<(String, Vec<f32>)> {
        let feed = netc_interp::Feed {
            data: Some(&self.data),
            labels: Some(&self.labels),
            step: self.step,
            params: &self.params,
        };
        let interp = Interpreter { check_finite: false };
        let out = interp.run(&self.program, &feed).expect("the interpreter runs");
        out.values.into_iter().map(|(n, t)| (n, t.into_data())).collect()
    }

    /// Runs `exec` on this case (it must have been made for this program).
    pub fn run_on(&self, exec: &mut Executor) {
        let data_name = self.data_name();
        let mut inputs: Vec<(&str, &[f32])> = vec![(&data_name, self.data.data()), ("labels", self.labels.data())];
        inputs.extend(self.params.iter().map(|(n, t)| (n.as_str(), t.data())));
        let feed = Feed { batch: self.labels.len(), step: self.step, inputs: &inputs };
        exec.run(&feed).expect("the executor runs");
    }

    /// The case with its program printed and read back. The text must read back to the same
    /// program and print identically.
    pub fn reparsed(&self, context: &str) -> Case {
        let text = self.program.to_string();
        let program = netc_ir::parse(&text).unwrap_or_else(|e| panic!("{context}: {e}\n{text}"));
        assert_eq!(program.to_string(), text, "{context}: the text does not print back identically");
        assert!(program == self.program, "{context}: the text does not read back to the same program");
        Case {
            program,
            params: self.params.clone(),
            data: self.data.clone(),
            labels: self.labels.clone(),
            step: self.step,
        }
    }

    /// The outputs by the executor with `threads` threads.
    pub fn execute(&self, threads: usize) -> Vec<(String, Vec<f32>)> {
        let mut exec =
            Executor::new(&self.program, ExecOptions { threads, ..ExecOptions::default() }).expect("compiles");
        self.run_on(&mut exec);
        outputs(&exec)
    }
}

pub fn outputs(exec: &Executor) -> Vec<(String, Vec<f32>)> {
    exec.program()
        .outputs()
        .iter()
        .map(|o| (o.name.clone(), exec.output(&o.name).expect("an output").to_vec()))
        .collect()
}

/// Every element within `rel`·|want| + `abs`·max(1, scale) of the reference, where `scale` is
/// the largest magnitude in that output: rounding errors of long sums grow with the size of
/// the terms, so a small element of a large gradient gets the absolute tolerance of its
/// tensor.
pub fn assert_close(context: &str, got: &[(String, Vec<f32>)], want: &[(String, Vec<f32>)], rel: f32, abs: f32) {
    assert_eq!(got.len(), want.len(), "{context}: output count");
    for ((name, g), (wname, w)) in got.iter().zip(want) {
        assert_eq!(name, wname);
        assert_eq!(g.len(), w.len(), "{context}: `{name}` length");
        let scale = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (i, (&a, &b)) in g.iter().zip(w).enumerate() {
            let ok = (a - b).abs() <= abs * scale.max(1.0) + rel * b.abs();
            assert!(ok, "{context}: `{name}`[{i}] = {a}, the interpreter says {b} (output max |x| {scale})");
        }
        assert!(g.iter().all(|v| v.is_finite()), "{context}: `{name}` is not finite");
    }
}

pub fn assert_bitwise(context: &str, a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) {
    for ((name, x), (_, y)) in a.iter().zip(b) {
        let same = x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(same, "{context}: `{name}` differs");
    }
}
