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
    /// Sends `send[r]` to the process of rank r and overwrites `received[r]` with what rank r
    /// sent this one (both have `size()` messages). Every process knows the pattern, so the caller
    /// sizes `received[r]` to the length rank r sends and no sizes travel; a message of another
    /// length is an error. An error (a process died, a time-out) names what happened.
    fn all_to_all(&self, send: &[Vec<f32>], received: &mut [Vec<f32>]) -> Result<(), String>;
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
    fn all_to_all(&self, send: &[Vec<f32>], received: &mut [Vec<f32>]) -> Result<(), String> {
        deliver(&send[0], &mut received[0], 0)
    }
}

/// Copies a message from rank `from` into the place its receiver sized for it.
fn deliver(message: &[f32], place: &mut [f32], from: usize) -> Result<(), String> {
    if message.len() != place.len() {
        return Err(format!("rank {from} sent {} values where {} were expected", message.len(), place.len()));
    }
    place.copy_from_slice(message);
    Ok(())
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

/// The messages of [`shared_step`], kept from step to step so a step reuses their memory.
#[derive(Debug, Default)]
pub struct Exchange {
    send: Vec<Vec<f32>>,
    received: Vec<Vec<f32>>,
    /// This process's slice of the batch's gradient.
    sum: Vec<f32>,
}

impl Exchange {
    /// `k` empty messages each way, their memory kept.
    fn clear(&mut self, k: usize) {
        for messages in [&mut self.send, &mut self.received] {
            messages.resize_with(k, Vec::new);
            messages.iter_mut().for_each(Vec::clear);
        }
    }

    /// Sizes the message expected from each rank r as `len(r)`.
    fn size_received(&mut self, len: impl Fn(usize) -> usize) {
        for (r, message) in self.received.iter_mut().enumerate() {
            message.resize(len(r), 0.0);
        }
    }
}

/// One step of data-parallel training: this process's chunks of the batch (`images`, `labels`:
/// the whole batch, assembled alike on every process) through `backend`, the gradients summed
/// in chunk order and written into `grads` on every process. `step` keys the batch's randomness;
/// chunk c's passes are keyed `step * chunks + c`, so one chunk keys as the batch itself.
#[allow(clippy::too_many_arguments)]
pub fn shared_step(
    parallel: DataParallel,
    exchange: &mut Exchange,
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
    exchange.clear(k);

    // Reduce-scatter: rank s receives every chunk's header and slice s of its gradient, from the
    // rank that computed it, chunks in order.
    let mut local_error = None;
    for c in (rank..chunks).step_by(k) {
        let (start, end) = chunk_range(n, chunks, c);
        let mut header = [0.0f32; HEADER];
        header[4] = f32::from(u8::from(stop));
        let mut computed = false;
        if start < end {
            let key = step.wrapping_mul(chunks as u64).wrapping_add(c as u64);
            let images = &images[start * image_len..end * image_len];
            match backend.train_step(params, images, &labels[start..end], key, grads) {
                Ok(result) => {
                    let bits = result.loss.to_bits();
                    header[0] = f32::from_bits((bits >> 32) as u32);
                    header[1] = f32::from_bits(bits as u32);
                    header[2] = result.errors as f32;
                    computed = true;
                }
                Err(error) => {
                    header[3] = 1.0;
                    local_error.get_or_insert(error);
                }
            }
        }
        for (s, message) in exchange.send.iter_mut().enumerate() {
            let (from, to) = owned_slice(len, k, s);
            message.extend_from_slice(&header);
            match computed {
                true => append_range(grads, from, to, message),
                false => message.resize(message.len() + to - from, 0.0),
            }
        }
    }
    // Rank r computed the chunks r, r + k, …, each a header and this process's slice.
    let (from, to) = owned_slice(len, k, rank);
    let width = HEADER + to - from;
    exchange.size_received(|r| (r..chunks).step_by(k).count() * width);
    group.all_to_all(&exchange.send, &mut exchange.received)?;

    // The batch's result and this process's slice of its gradient, summed in chunk order.
    let (received, sum) = (&exchange.received, &mut exchange.sum);
    sum.clear();
    sum.resize(to - from, 0.0);
    let (mut loss, mut errors, mut failed, mut stop_any, mut first) = (0.0f64, 0usize, false, false, true);
    for c in 0..chunks {
        let at = (c / k) * width;
        let (header, slice) = received[c % k][at..at + width].split_at(HEADER);
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
        // The first term is stored, not added to zero, so one chunk is exactly its gradient.
        match std::mem::take(&mut first) {
            true => sum.iter_mut().zip(slice).for_each(|(s, g)| *s = share * g),
            false => sum.iter_mut().zip(slice).for_each(|(s, g)| *s += share * g),
        }
    }

    // All-gather: every process sends its summed slice to every process.
    for message in &mut exchange.send {
        message.clone_from(&exchange.sum);
    }
    exchange.size_received(|r| {
        let (from, to) = owned_slice(len, k, r);
        to - from
    });
    group.all_to_all(&exchange.send, &mut exchange.received)?;
    for (r, slice) in exchange.received.iter().enumerate() {
        write_range(slice, owned_slice(len, k, r).0, grads);
    }
    let result = match (failed, local_error) {
        (false, _) => Ok(BatchResult { loss, errors }),
        (true, Some(error)) => Err(error),
        (true, None) => Err(StepError::Failed("another process's pass failed (its own error says why)".into())),
    };
    Ok(SharedStep { result, stop: stop_any })
}

/// Appends the values `[from, to)` of the parameters' gradients laid end to end.
fn append_range(grads: &[Vec<f32>], from: usize, to: usize, out: &mut Vec<f32>) {
    let mut at = 0;
    for g in grads {
        let (lo, hi) = (from.max(at), to.min(at + g.len()));
        if lo < hi {
            out.extend_from_slice(&g[lo - at..hi - at]);
        }
        at += g.len();
    }
}

/// Writes `values` over the parameters' gradients laid end to end, from position `from`.
fn write_range(values: &[f32], from: usize, grads: &mut [Vec<f32>]) {
    let to = from + values.len();
    let mut at = 0;
    for g in grads {
        let (lo, hi) = (from.max(at), to.min(at + g.len()));
        if lo < hi {
            g[lo - at..hi - at].copy_from_slice(&values[lo - from..hi - from]);
        }
        at += g.len();
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
        fn all_to_all(&self, send: &[Vec<f32>], received: &mut [Vec<f32>]) -> Result<(), String> {
            let poisoned = |_| "a rank panicked".to_string();
            {
                let mut boxes = self.group.boxes.lock().map_err(poisoned)?;
                for (to, message) in send.iter().enumerate() {
                    boxes[to][self.rank].clone_from(message);
                }
            }
            self.group.barrier.wait();
            {
                let boxes = self.group.boxes.lock().map_err(poisoned)?;
                for (from, place) in received.iter_mut().enumerate() {
                    super::deliver(&boxes[self.rank][from], place, from)?;
                }
            }
            // Nobody writes the next exchange's messages before everyone has read this one's.
            self.group.barrier.wait();
            Ok(())
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
    fn ranges_of_the_gradients_laid_end_to_end_round_trip() {
        let grads = vec![vec![1.0, 2.0, 3.0], vec![], vec![4.0, 5.0]];
        let mut all = Vec::new();
        append_range(&grads, 0, 5, &mut all);
        assert_eq!(all, [1.0, 2.0, 3.0, 4.0, 5.0]);
        let mut middle = Vec::new();
        append_range(&grads, 2, 4, &mut middle);
        assert_eq!(middle, [3.0, 4.0]);
        let mut written = vec![vec![0.0; 3], vec![], vec![0.0; 2]];
        write_range(&middle, 2, &mut written);
        assert_eq!(written, [vec![0.0, 0.0, 3.0], vec![], vec![4.0, 0.0]]);
    }

    #[test]
    fn thread_group_delivers_every_message_to_its_rank() {
        let group = threads::Group::new(3);
        std::thread::scope(|s| {
            for rank in 0..3 {
                let member = group.member(rank);
                s.spawn(move || {
                    for round in 0..4 {
                        let send: Vec<Vec<f32>> =
                            (0..3).map(|to| vec![(rank * 10 + to) as f32, round as f32]).collect();
                        let mut got = vec![vec![0.0; 2]; 3];
                        member.all_to_all(&send, &mut got).unwrap();
                        let want: Vec<Vec<f32>> =
                            (0..3).map(|from| vec![(from * 10 + rank) as f32, round as f32]).collect();
                        assert_eq!(got, want);
                    }
                });
            }
        });
    }
}
