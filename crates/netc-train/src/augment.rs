//! Random flips and padded crops of the training examples, drawn from the run's seed, the
//! optimizer step and the example's place in the batch, so a resumed run makes the same ones.

use netc_check::{Augment, Flip};
use netc_ir::rng::Key;
use netc_ir::RandomStream;

/// The random numbers of one step's augmentation.
pub fn step_key(seed: u64, step: u64) -> Key {
    Key::new(seed, &RandomStream::Augment, step)
}

/// Augments the example in `slot` of the batch, of shape `[channels, rows, cols]`, in place.
pub fn augment_example(
    augment: Augment,
    shape: [usize; 3],
    key: &Key,
    slot: usize,
    example: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let [_, rows, cols] = shape;
    let index = 1 + 3 * slot as u64;
    if augment.crop_pad > 0 {
        let pad = augment.crop_pad;
        let span = 2 * pad as u64 + 1;
        let dy = key.below(index + 1, span) as isize - pad as isize;
        let dx = key.below(index + 2, span) as isize - pad as isize;
        shift(example, rows, cols, dy, dx, scratch);
    }
    let flip = match augment.flip {
        Flip::None => false,
        Flip::Batch => key.uniform(0) < 0.5,
        Flip::Example => key.uniform(index) < 0.5,
    };
    if flip && cols > 0 {
        example.chunks_exact_mut(cols).for_each(<[f32]>::reverse);
    }
}

/// The window of the zero-padded example whose corner is `(dy, dx)` from the example's own:
/// `out[c][y][x] = in[c][y + dy][x + dx]`, 0 outside.
fn shift(example: &mut [f32], rows: usize, cols: usize, dy: isize, dx: isize, scratch: &mut Vec<f32>) {
    scratch.clear();
    scratch.extend_from_slice(example);
    let plane = rows * cols;
    for (out, src) in example.chunks_exact_mut(plane.max(1)).zip(scratch.chunks_exact(plane.max(1))) {
        for y in 0..rows {
            for x in 0..cols {
                let (sy, sx) = (y as isize + dy, x as isize + dx);
                let inside = (0..rows as isize).contains(&sy) && (0..cols as isize).contains(&sx);
                out[y * cols + x] = if inside { src[sy as usize * cols + sx as usize] } else { 0.0 };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two channels of 2×3: channel c, row y, column x holds 100c + 10y + x.
    fn example() -> Vec<f32> {
        (0..2).flat_map(|c| (0..2).flat_map(move |y| (0..3).map(move |x| (100 * c + 10 * y + x) as f32))).collect()
    }

    #[test]
    fn a_flip_reverses_every_row_of_every_channel() {
        let flip = Augment { flip: Flip::Example, crop_pad: 0 };
        let flipped_at = |step: u64| {
            let mut e = example();
            augment_example(flip, [2, 2, 3], &step_key(7, step), 0, &mut e, &mut Vec::new());
            e
        };
        let results: Vec<Vec<f32>> = (0..40).map(flipped_at).collect();
        let flipped: Vec<f32> = vec![2., 1., 0., 12., 11., 10., 102., 101., 100., 112., 111., 110.];
        assert!(results.iter().all(|r| *r == example() || *r == flipped));
        let count = results.iter().filter(|r| **r == flipped).count();
        assert!((8..=32).contains(&count), "{count} of 40 flipped");
        assert_eq!(flipped_at(3), flipped_at(3), "the same step flips the same way");
    }

    #[test]
    fn a_batch_flip_treats_every_slot_alike_and_per_example_flips_do_not() {
        let decisions = |flip: Flip, step: u64| -> Vec<bool> {
            (0..16)
                .map(|slot| {
                    let mut e = example();
                    let augment = Augment { flip, crop_pad: 0 };
                    augment_example(augment, [2, 2, 3], &step_key(1, step), slot, &mut e, &mut Vec::new());
                    e != example()
                })
                .collect()
        };
        for step in 0..10 {
            let batch = decisions(Flip::Batch, step);
            assert!(batch.iter().all(|&d| d == batch[0]), "step {step}: {batch:?}");
        }
        assert!((0..10).any(|step| {
            let each = decisions(Flip::Example, step);
            each.iter().any(|&d| d != each[0])
        }));
    }

    #[test]
    fn a_crop_shifts_within_the_padding_and_fills_zeros() {
        let mut e = example();
        shift(&mut e, 2, 3, 1, -1, &mut Vec::new());
        // Row 0 reads row 1 one column to the left; row 1 reads past the bottom: zeros.
        assert_eq!(e, vec![0., 10., 11., 0., 0., 0., 0., 110., 111., 0., 0., 0.]);
        let crop = Augment { flip: Flip::None, crop_pad: 1 };
        let mut seen = std::collections::HashSet::new();
        for step in 0..60 {
            let mut e = example();
            augment_example(crop, [2, 2, 3], &step_key(5, step), 2, &mut e, &mut Vec::new());
            seen.insert(e.iter().map(|v| *v as i32).collect::<Vec<_>>());
        }
        // Every offset in {-1, 0, 1}² gives a different window: all nine appear.
        assert_eq!(seen.len(), 9);
    }
}
