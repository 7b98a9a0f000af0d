//! The kernels, one module per family. They work on slices the planner hands out and never
//! allocate.

pub(crate) mod conv;
pub(crate) mod elementwise;
pub(crate) mod layout;
pub(crate) mod matmul;
pub(crate) mod pool;
pub(crate) mod random;
pub(crate) mod reduce;
pub(crate) mod softmax;
