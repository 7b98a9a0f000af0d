//! Data-parallel training whose result does not depend on how many processes share the work.
//!
//! A global batch is cut into a fixed number of chunks (`chunks`, not the number of processes).
//! Each chunk's gradient is computed by one process, the one of rank `chunk % processes`, and the
//! batch's gradient is the chunks' gradients weighted by their share of the batch and summed in
//! chunk order, element by element. A chunk's gradient is the same on whichever process computes
//! it (the executor is bitwise deterministic) and the sum's order is fixed by the chunks alone, so
//! K processes train the same bits as one process with the same `chunks`.
//!
//! The sum is spread over the processes: each owns a slice of the flattened gradient, receives
//! that slice of every chunk's gradient, sums it, and sends the sum to every process (a
//! reduce-scatter of fixed chunks, then an all-gather), so each process sends and receives about
//! two gradients' worth per step whatever K is.

use crate::{Backend, BatchResult, StepError};

/// The processes of one training run and the one message pattern data-parallel training needs.
/// Every process calls [`Collective::all_to_all`] the same number of times in the same order.
pub trait Collective: Sync {
    /// This process's rank, `0..size()`.
    fn rank(&self) -> usize;
    /// The number of processes.
    fn size(&self) -> usize;
    /// Sends `send[r]` to the process of rank r; returns what every process sent this one, by
    /// rank. An error (a process died, a time-out) names what happened.
    fn all_to_all(&self, send: Vec<Vec<f32>>) -> Result<Vec<Vec<f32>>, String>;
}

/// One process alone: the reference every K must equal.
#[derive(Clone, Copy, Debug, Default)]
pub struct Alone;

impl Collective for Alone {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_to_all(&self, send: Vec<Vec<f32>>) -> Result<Vec<Vec<f32>>, String> {
        Ok(send)
    }
}

/// How a run shares its batches: over `group`, in `chunks` chunks per batch.
#[derive(Clone, Copy)]
pub struct DataParallel<'a> {
    pub group: &'a dyn Collective,
    pub chunks: usize,
}

impl std::fmt::Debug for DataParallel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataParallel {{ rank: {}/{}, chunks: {} }}", self.group.rank(), self.group.size(), self.chunks)
    }
}

impl DataParallel<'_> {
    /// Only rank 0 writes the run folder.
    pub fn writes(&self) -> bool {
        self.group.rank() == 0
    }
}

/// What every process learns from one shared step.
#[derive(Clone, Debug, PartialEq)]
pub struct SharedStep {
    /// The batch's mean loss and errors; an error if any chunk's pass failed.
    pub result: Result<BatchResult, StepError>,
    /// Some process asked to stop (every process sees the same answer).
    pub stop: bool,
}

/// The examples `[start, end)` of a batch of `n` that chunk `c` of `chunks` holds: sizes differ by
/// at most one, and a chunk is empty only when the batch has fewer examples than chunks.
pub fn chunk_range(n: usize, chunks: usize, c: usize) -> (usize, usize) {
    (c * n / chunks, (c + 1) * n / chunks)
}

/// The slice `[start, end)` of a flattened gradient of `len` values that rank `r` of `k` sums.
fn owned_slice(len: usize, k: usize, r: usize) -> (usize, usize) {
    (r * len / k, (r + 1) * len / k)
}

/// Per chunk, what travels with its gradient: its loss (an f64 in two f32 bit patterns), its
/// errors, whether its pass failed, and whether its process asked to stop.
const HEADER: usize = 5;

/// One step of data-parallel training: this process's chunks of the batch (`images`, `labels`:
/// the whole batch, assembled alike on every process) through `backend`, the gradients summed
/// in chunk order and written into `grads` on every process. `step` keys the batch's randomness;
/// chunk c's passes are keyed `step * chunks + c`, so one chunk keys as the batch itself.
#[allow(clippy::too_many_arguments)]
pub fn shared_step(
    parallel: DataParallel,
    backend: &mut dyn Backend,
    params: &[crate::Named],
    images: &[f32],
    labels: &[u8],
    step: u64,
    stop: bool,
    grads: &mut [Vec<f32>],
) -> Result<SharedStep, String> {
    let DataParallel { group, chunks } = parallel;
    let (k, rank, n) = (group.size(), group.rank(), labels.len());
    let image_len = images.len() / n.max(1);
    let len: usize = grads.iter().map(Vec::len).sum();
    let mine: Vec<usize> = (rank..chunks).step_by(k).collect();

    // Each of this process's chunks: its header and flattened gradient.
    let mut local_error = None;
    let mut computed = Vec::with_capacity(mine.len());
    for &c in &mine {
        let (start, end) = chunk_range(n, chunks, c);
        let mut header = [0.0f32; HEADER];
        header[4] = f32::from(u8::from(stop));
        let mut flat = vec![0.0f32; len];
        if start < end {
            let key = step.wrapping_mul(chunks as u64).wrapping_add(c as u64);
            match backend.train_step(
                params,
                &images[start * image_len..end * image_len],
                &labels[start..end],
                key,
                grads,
            ) {
                Ok(result) => {
                    let bits = result.loss.to_bits();
                    header[0] = f32::from_bits((bits >> 32) as u32);
                    header[1] = f32::from_bits(bits as u32);
                    header[2] = result.errors as f32;
                    flatten(grads, &mut flat);
                }
                Err(error) => {
                    header[3] = 1.0;
                    local_error.get_or_insert(error);
                }
            }
        }
        computed.push((header, flat));
    }

    // Reduce-scatter: rank s receives slice s of every chunk, with every chunk's header.
    let send = (0..k)
        .map(|s| {
            let (from, to) = owned_slice(len, k, s);
            let mut message = Vec::with_capacity(mine.len() * (HEADER + to - from));
            for (header, flat) in &computed {
                message.extend_from_slice(header);
                message.extend_from_slice(&flat[from..to]);
            }
            message
        })
        .collect();
    let received = group.all_to_all(send)?;
    let (from, to) = owned_slice(len, k, rank);
    let width = HEADER + to - from;
    let chunk_message = |c: usize| -> Result<&[f32], String> {
        let message = &received[c % k];
        let at = (c / k) * width;
        message.get(at..at + width).ok_or_else(|| format!("rank {} sent a short message", c % k))
    };

    // The batch's result and this process's slice of its gradient, summed in chunk order.
    let mut sum = vec![0.0f32; to - from];
    let (mut loss, mut errors, mut failed, mut stop_any, mut first) = (0.0f64, 0usize, false, false, true);
    for c in 0..chunks {
        let message = chunk_message(c)?;
        let (header, slice) = message.split_at(HEADER);
        stop_any |= header[4] != 0.0;
        failed |= header[3] != 0.0;
        let (start, end) = chunk_range(n, chunks, c);
        if start == end {
            continue;
        }
        let share = (end - start) as f32 / n as f32;
        let chunk_loss = f64::from_bits((u64::from(header[0].to_bits()) << 32) | u64::from(header[1].to_bits()));
        loss += chunk_loss * f64::from(share);
        errors += header[2] as usize;
        if first {
            sum.iter_mut().zip(slice).for_each(|(s, g)| *s = share * g);
            first = false;
        } else {
            sum.iter_mut().zip(slice).for_each(|(s, g)| *s += share * g);
        }
    }

    // All-gather: every process sends its summed slice to every process.
    let gathered = group.all_to_all(vec![sum; k])?;
    let mut flat = Vec::with_capacity(len);
    for (r, slice) in gathered.iter().enumerate() {
        let (from, to) = owned_slice(len, k, r);
        if slice.len() != to - from {
            return Err(format!("rank {r} sent {} gradient values where {} were expected", slice.len(), to - from));
        }
        flat.extend_from_slice(slice);
    }
    unflatten(&flat, grads);
    let result = match (failed, local_error) {
        (false, _) => Ok(BatchResult { loss, errors }),
        (true, Some(error)) => Err(error),
        (true, None) => Err(StepError::Failed("another process's pass failed (its own error says why)".into())),
    };
    Ok(SharedStep { result, stop: stop_any })
}

fn flatten(grads: &[Vec<f32>], flat: &mut [f32]) {
    let mut at = 0;
    for g in grads {
        flat[at..at + g.len()].copy_from_slice(g);
        at += g.len();
    }
}

fn unflatten(flat: &[f32], grads: &mut [Vec<f32>]) {
    let mut at = 0;
    for g in grads {
        let len = g.len();
        g.copy_from_slice(&flat[at..at + len]);
        at += len;
    }
}

/// K processes as K threads of one process, for tests of everything above the transport.
pub mod threads {
    use super::Collective;
    use std::sync::{Barrier, Mutex};

    /// The shared mailboxes of `size` ranks; [`Group::member`] gives each thread its rank.
    pub struct Group {
        size: usize,
        /// `boxes[to][from]`: the message `from` sent `to` in the current exchange.
        boxes: Mutex<Vec<Vec<Vec<f32>>>>,
        barrier: Barrier,
    }

    impl Group {
        pub fn new(size: usize) -> Group {
            Group { size, boxes: Mutex::new(vec![vec![Vec::new(); size]; size]), barrier: Barrier::new(size) }
        }

        pub fn member(&self, rank: usize) -> Member<'_> {
            Member { group: self, rank }
        }
    }

    /// One rank of a [`Group`].
    pub struct Member<'g> {
        group: &'g Group,
        rank: usize,
    }

    impl Collective for Member<'_> {
        fn rank(&self) -> usize {
            self.rank
        }
        fn size(&self) -> usize {
            self.group.size
        }
        fn all_to_all(&self, send: Vec<Vec<f32>>) -> Result<Vec<Vec<f32>>, String> {
            {
                let mut boxes = self.group.boxes.lock().map_err(|_| "a rank panicked".to_string())?;
                for (to, message) in send.into_iter().enumerate() {
                    boxes[to][self.rank] = message;
                }
            }
            self.group.barrier.wait();
            let received = {
                let mut boxes = self.group.boxes.lock().map_err(|_| "a rank panicked".to_string())?;
                std::mem::replace(&mut boxes[self.rank], vec![Vec::new(); self.group.size])
            };
            // Nobody writes the next exchange's messages before everyone has read this one's.
            self.group.barrier.wait();
            Ok(received)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_a_batch_once_in_order() {
        for n in 0..40 {
            for chunks in 1..9 {
                let ranges: Vec<_> = (0..chunks).map(|c| chunk_range(n, chunks, c)).collect();
                assert_eq!(ranges[0].0, 0);
                assert_eq!(ranges[chunks - 1].1, n);
                assert!(ranges.windows(2).all(|w| w[0].1 == w[1].0));
                assert!(ranges.iter().all(|(a, b)| b - a == n / chunks || b - a == n / chunks + 1));
            }
        }
    }

    #[test]
    fn thread_group_delivers_every_message_to_its_rank() {
        let group = threads::Group::new(3);
        std::thread::scope(|s| {
            for rank in 0..3 {
                let member = group.member(rank);
                s.spawn(move || {
                    for round in 0..4 {
                        let send = (0..3).map(|to| vec![(rank * 10 + to) as f32, round as f32]).collect();
                        let got = member.all_to_all(send).unwrap();
                        let want: Vec<Vec<f32>> =
                            (0..3).map(|from| vec![(from * 10 + rank) as f32, round as f32]).collect();
                        assert_eq!(got, want);
                    }
                });
            }
        });
    }
}
