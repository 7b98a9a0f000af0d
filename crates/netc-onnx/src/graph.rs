//! Building an ONNX graph: nodes with unique names, initializers, attributes, shared constants
//! and the tensors of shapes that involve the batch size.

use crate::onnx::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto, AttributeProto, NodeProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use netc_ir::{Dim, Shape};
use std::collections::{HashMap, HashSet};

/// The name of the symbolic batch dimension, as netc's IR writes it.
pub const BATCH: &str = "N";

/// A graph under construction. Every node has one output, named like the node.
#[derive(Default)]
pub struct Graph {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    /// Every node, value and initializer name given out, so none is given twice.
    taken: HashSet<String>,
    /// The next suffix to try for each base name.
    suffixes: HashMap<String, usize>,
    /// Shared constants by name (the name is made from the value).
    constants: HashSet<String>,
    /// The `[N]` tensor, once some shape needs it.
    batch: Option<String>,
}

impl Graph {
    /// `base`, or `base_1`, `base_2`, … if it is taken.
    pub fn fresh(&mut self, base: &str) -> String {
        if self.taken.insert(base.to_string()) {
            return base.to_string();
        }
        let suffix = self.suffixes.entry(base.to_string()).or_insert(1);
        loop {
            let name = format!("{base}_{suffix}");
            *suffix += 1;
            if self.taken.insert(name.clone()) {
                return name;
            }
        }
    }

    /// Reserves a name that must stay as it is (the graph's input, a parameter).
    pub fn reserve(&mut self, name: &str) {
        self.taken.insert(name.to_string());
    }

    /// Appends `op_type(inputs)` in `scope` (a layer's name) and returns its output.
    pub fn node(&mut self, scope: &str, op_type: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> String {
        let name = self.fresh(&format!("{scope}/{op_type}"));
        self.push_node(name.clone(), op_type, inputs, attributes, name.clone());
        name
    }

    /// Appends a node whose output has a given name (the graph's output).
    pub fn push_node(
        &mut self,
        name: String,
        op_type: &str,
        inputs: &[&str],
        attribute: Vec<AttributeProto>,
        output: String,
    ) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output],
            name,
            op_type: op_type.into(),
            attribute,
            ..Default::default()
        });
    }

    /// A `float` initializer named `name` (made unique).
    pub fn floats(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        let name = self.fresh(name);
        self.initializers.push(tensor(&name, DataType::Float, dims, data.iter().flat_map(|v| v.to_le_bytes())));
        name
    }

    /// The initializer of a parameter, under its name (reserved beforehand).
    pub fn parameter(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        self.initializers.push(tensor(name, DataType::Float, dims, data.iter().flat_map(|v| v.to_le_bytes())));
        name.to_string()
    }

    /// A float scalar, shared by every use of the same value.
    pub fn scalar(&mut self, value: f32) -> String {
        let name = format!("const({value})");
        if self.constants.insert(name.clone()) {
            self.reserve(&name);
            self.initializers.push(tensor(&name, DataType::Float, &[], value.to_le_bytes()));
        }
        name
    }

    /// A vector of `int64` (a shape, axes, indices), shared by every use of the same values.
    pub fn ints(&mut self, values: &[i64]) -> String {
        let listed: Vec<String> = values.iter().map(i64::to_string).collect();
        let name = format!("const[{}]", listed.join(","));
        if self.constants.insert(name.clone()) {
            self.reserve(&name);
            let bytes = values.iter().flat_map(|v| v.to_le_bytes());
            self.initializers.push(tensor(&name, DataType::Int64, &[values.len()], bytes));
        }
        name
    }

    /// The batch size as an `int64` vector of one element, read from the graph's input `input`.
    fn batch(&mut self, input: &str) -> String {
        if let Some(batch) = &self.batch {
            return batch.clone();
        }
        let batch = self.fresh(BATCH);
        let name = self.fresh(&format!("{BATCH}/Shape"));
        let range = vec![int("start", 0), int("end", 1)];
        self.push_node(name, "Shape", &[input], range, batch.clone());
        self.batch = Some(batch.clone());
        batch
    }

    /// `shape` as an `int64` tensor, for `Expand` and `Reshape`: a constant when it does not
    /// involve the batch size, else the batch size (read from the graph's input `input`)
    /// concatenated with the known extents.
    pub fn shape(&mut self, scope: &str, shape: &Shape, input: &str) -> String {
        let Some(known) = shape.as_fixed() else {
            let mut parts = Vec::new();
            let mut run = Vec::new();
            for dim in shape.dims() {
                match dim {
                    Dim::Fixed(d) => run.push(extent(*d)),
                    Dim::Batch => {
                        if !run.is_empty() {
                            parts.push(self.ints(&std::mem::take(&mut run)));
                        }
                        parts.push(self.batch(input));
                    }
                }
            }
            if !run.is_empty() {
                parts.push(self.ints(&run));
            }
            let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
            return self.node(scope, "Concat", &parts, vec![int("axis", 0)]);
        };
        self.ints(&known.into_iter().map(extent).collect::<Vec<_>>())
    }

    /// The shape operand of a `Reshape` to `shape`: the batch size, when it occurs once, as the
    /// `-1` that `Reshape` infers, so the target is a constant.
    pub fn reshape_target(&mut self, scope: &str, shape: &Shape, input: &str) -> String {
        if shape.batch_count() != 1 {
            return self.shape(scope, shape, input);
        }
        self.ints(&shape.dims().iter().map(|d| d.fixed().map_or(-1, extent)).collect::<Vec<_>>())
    }
}

/// An extent as ONNX writes it; netc's tensors have fewer than 2^31 elements.
pub fn extent(d: usize) -> i64 {
    i64::try_from(d).unwrap_or(i64::MAX)
}

fn tensor(name: &str, data_type: DataType, dims: &[usize], bytes: impl IntoIterator<Item = u8>) -> TensorProto {
    TensorProto {
        name: name.into(),
        data_type: data_type as i32,
        dims: dims.iter().map(|&d| extent(d)).collect(),
        raw_data: bytes.into_iter().collect(),
        ..Default::default()
    }
}

/// A `float` tensor value of `shape`, its batch dimension symbolic, for the graph's input and
/// output.
pub fn value_info(name: &str, shape: &Shape) -> ValueInfoProto {
    let dim = shape
        .dims()
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Batch => tensor_shape_proto::dimension::Value::DimParam(BATCH.into()),
                Dim::Fixed(d) => tensor_shape_proto::dimension::Value::DimValue(extent(*d)),
            }),
            ..Default::default()
        })
        .collect();
    let tensor = type_proto::Tensor { elem_type: DataType::Float as i32, shape: Some(TensorShapeProto { dim }) };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..Default::default() }),
        ..Default::default()
    }
}

pub fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i: value, ..Default::default() }
}

pub fn ints(name: &str, values: Vec<i64>) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Ints as i32, ints: values, ..Default::default() }
}

/// The `to` attribute of a `Cast`.
pub fn cast_to(data_type: DataType) -> AttributeProto {
    int("to", data_type as i64)
}
