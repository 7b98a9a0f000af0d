//! Static shapes with a symbolic batch dimension: `[N, 20, 24, 24]` serves every batch size.

use std::fmt;

/// One dimension: the symbolic batch size `N`, or a known extent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Batch,
    Fixed(usize),
}

/// The shape of an IR value. Usually the batch dimension leads, but a shape may hold it
/// anywhere (a transposed matmul operand) or not at all (parameters, batch sums).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Shape(pub Vec<Dim>);

impl Dim {
    /// The extent for batch size `n`.
    pub fn resolve(self, n: usize) -> usize {
        match self {
            Dim::Batch => n,
            Dim::Fixed(d) => d,
        }
    }

    pub fn fixed(self) -> Option<usize> {
        match self {
            Dim::Batch => None,
            Dim::Fixed(d) => Some(d),
        }
    }
}

impl Shape {
    /// A shape without a batch dimension.
    pub fn fixed(dims: &[usize]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::Fixed(d)).collect())
    }

    /// `[N, dims...]`: a batch of per-example shapes.
    pub fn batched(dims: &[usize]) -> Shape {
        Shape(std::iter::once(Dim::Batch).chain(dims.iter().map(|&d| Dim::Fixed(d))).collect())
    }

    pub fn scalar() -> Shape {
        Shape(Vec::new())
    }

    pub fn rank(&self) -> usize {
        self.0.len()
    }

    pub fn dims(&self) -> &[Dim] {
        &self.0
    }

    /// The concrete extents for batch size `n`.
    pub fn resolve(&self, n: usize) -> Vec<usize> {
        self.0.iter().map(|d| d.resolve(n)).collect()
    }

    /// How many times the batch dimension occurs.
    pub fn batch_count(&self) -> usize {
        self.0.iter().filter(|d| **d == Dim::Batch).count()
    }

    /// The product of the known extents.
    pub fn fixed_product(&self) -> usize {
        self.0.iter().filter_map(|d| d.fixed()).product()
    }

    /// The known extents, or `None` when the shape involves the batch size.
    pub fn as_fixed(&self) -> Option<Vec<usize>> {
        self.0.iter().map(|d| d.fixed()).collect()
    }

    /// Extent of `axis` if it is known.
    pub fn fixed_at(&self, axis: usize) -> Option<usize> {
        self.0.get(axis).and_then(|d| d.fixed())
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Batch => f.write_str("N"),
            Dim::Fixed(d) => write!(f, "{d}"),
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_print_and_resolve_with_the_batch_size() {
        let s = Shape::batched(&[20, 24, 24]);
        assert_eq!(s.to_string(), "[N,20,24,24]");
        assert_eq!(s.resolve(3), vec![3, 20, 24, 24]);
        assert_eq!(s.fixed_product(), 20 * 24 * 24);
        assert_eq!(s.as_fixed(), None);
        assert_eq!(Shape::fixed(&[5]).as_fixed(), Some(vec![5]));
        assert_eq!(Shape::scalar().to_string(), "[]");
    }
}
