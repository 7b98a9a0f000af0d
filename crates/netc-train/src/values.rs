//! The values of examples as the trainer reads them: bytes (pixels 0–255) or floats.

use std::ops::Range;

/// A run of example values, borrowed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Values<'a> {
    Bytes(&'a [u8]),
    Floats(&'a [f32]),
}

impl<'a> Values<'a> {
    pub fn len(&self) -> usize {
        match self {
            Values::Bytes(v) => v.len(),
            Values::Floats(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values in `range`.
    pub fn slice(&self, range: Range<usize>) -> Values<'a> {
        match self {
            Values::Bytes(v) => Values::Bytes(&v[range]),
            Values::Floats(v) => Values::Floats(&v[range]),
        }
    }

    /// Consecutive runs of `len` values (the last partial run left out).
    pub fn chunks(self, len: usize) -> impl Iterator<Item = Values<'a>> {
        let len = len.max(1);
        (0..self.len() / len).map(move |i| self.slice(i * len..(i + 1) * len))
    }

    /// Every value, as f32.
    pub fn each(self) -> impl Iterator<Item = f32> + 'a {
        let (bytes, floats): (&[u8], &[f32]) = match self {
            Values::Bytes(v) => (v, &[]),
            Values::Floats(v) => (&[], v),
        };
        bytes.iter().map(|&b| f32::from(b)).chain(floats.iter().copied())
    }
}

/// Example values owned, of either kind.
#[derive(Clone, Debug, PartialEq)]
pub enum OwnedValues {
    Bytes(Vec<u8>),
    Floats(Vec<f32>),
}

impl OwnedValues {
    pub fn view(&self) -> Values<'_> {
        match self {
            OwnedValues::Bytes(v) => Values::Bytes(v),
            OwnedValues::Floats(v) => Values::Floats(v),
        }
    }

    /// The values of `ranges` of `from`, one after the other.
    pub fn gather(from: Values, ranges: impl Iterator<Item = Range<usize>>) -> OwnedValues {
        match from {
            Values::Bytes(v) => OwnedValues::Bytes(ranges.flat_map(|r| v[r].iter().copied()).collect()),
            Values::Floats(v) => OwnedValues::Floats(ranges.flat_map(|r| v[r].iter().copied()).collect()),
        }
    }
}
