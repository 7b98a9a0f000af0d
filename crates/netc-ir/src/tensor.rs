//! The dense tensor every executor reads and writes: a concrete shape and row-major `f32` data.

use std::fmt;

/// A dense row-major tensor of `f32`. The shape is concrete (the batch size is known).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

/// The data length does not match the shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSizeError {
    pub shape: Vec<usize>,
    pub len: usize,
}

impl fmt::Display for TensorSizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a tensor of shape {:?} needs {} values, got {}",
            self.shape,
            self.shape.iter().product::<usize>(),
            self.len
        )
    }
}

impl std::error::Error for TensorSizeError {}

impl Tensor {
    /// A tensor from its shape and row-major data.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Tensor, TensorSizeError> {
        if shape.iter().product::<usize>() != data.len() {
            return Err(TensorSizeError { shape, len: data.len() });
        }
        Ok(Tensor { shape, data })
    }

    /// A tensor of the given shape with every element `value`.
    pub fn full(shape: Vec<usize>, value: f32) -> Tensor {
        let len = shape.iter().product();
        Tensor { shape, data: vec![value; len] }
    }

    pub fn zeros(shape: Vec<usize>) -> Tensor {
        Tensor::full(shape, 0.0)
    }

    /// A rank-1 tensor of the values.
    pub fn vector(data: Vec<f32>) -> Tensor {
        Tensor { shape: vec![data.len()], data }
    }

    /// A rank-0 tensor holding one value.
    pub fn scalar(value: f32) -> Tensor {
        Tensor { shape: Vec::new(), data: vec![value] }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn data(&self) -> &[f32] {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_checks_the_length_against_the_shape() {
        assert!(Tensor::new(vec![2, 3], vec![0.0; 6]).is_ok());
        let err = Tensor::new(vec![2, 3], vec![0.0; 5]).unwrap_err();
        assert_eq!(err.to_string(), "a tensor of shape [2, 3] needs 6 values, got 5");
        assert_eq!(Tensor::scalar(2.5).shape(), &[] as &[usize]);
        assert_eq!(Tensor::scalar(2.5).data(), &[2.5]);
    }
}
