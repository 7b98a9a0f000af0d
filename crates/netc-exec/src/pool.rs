//! The executor's rayon pool, entered without allocating. `ThreadPool::install` from outside
//! the pool pushes a job onto rayon's global queue, whose storage grows block by block, so
//! every few dozen runs would allocate. Instead one long-lived job sits on a pool thread and
//! receives runs through a mutex and condition variable; parallel loops inside a run only
//! use the workers' own deques, which do not allocate.

use crate::ExecError;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// A run handed to the pool thread: a borrowed closure with its lifetime erased (see
/// `Pool::run` for why that is sound).
struct Job(*mut (dyn FnMut() + Send + 'static));

// SAFETY: the closure is `Send`, and the caller keeps it alive and untouched until the pool
// thread reports it finished.
unsafe impl Send for Job {}

enum Slot {
    Idle,
    Ready(Job),
    Running,
    /// The run returned, or panicked with this payload.
    Finished(Option<Box<dyn std::any::Any + Send>>),
    Exit,
}

struct Shared {
    slot: Mutex<Slot>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        // A panic never happens while the lock is held, but be robust to poisoning anyway.
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, Slot>) -> MutexGuard<'a, Slot> {
        self.changed.wait(guard).unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) struct Pool {
    shared: Arc<Shared>,
    // Dropped after `Drop::drop` has told the long-lived job to return.
    _pool: rayon::ThreadPool,
}

impl Pool {
    pub fn new(threads: usize) -> Result<Pool, ExecError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("netc-exec-{i}"))
            .build()
            .map_err(|e| ExecError::ThreadPool { message: e.to_string() })?;
        let shared = Arc::new(Shared { slot: Mutex::new(Slot::Idle), changed: Condvar::new() });
        let serve = Arc::clone(&shared);
        pool.spawn(move || serve_runs(&serve));
        Ok(Pool { shared, _pool: pool })
    }

    /// Calls `f` once on a thread of the pool (where rayon's parallel iterators use the pool)
    /// and waits for it; a panic in `f` is resumed here.
    pub fn run(&self, f: &mut (dyn FnMut() + Send + '_)) {
        // SAFETY: only the lifetime is erased. The pool thread calls the closure and reports
        // `Finished` (catching any panic) before this function returns, so the borrow
        // outlives every use, and nothing else touches the closure meanwhile.
        let job = Job(unsafe {
            std::mem::transmute::<*mut (dyn FnMut() + Send + '_), *mut (dyn FnMut() + Send + 'static)>(f)
        });
        let mut slot = self.shared.lock();
        *slot = Slot::Ready(job);
        self.shared.changed.notify_all();
        while !matches!(*slot, Slot::Finished(_)) {
            slot = self.shared.wait(slot);
        }
        let outcome = std::mem::replace(&mut *slot, Slot::Idle);
        drop(slot);
        if let Slot::Finished(Some(payload)) = outcome {
            resume_unwind(payload);
        }
    }
}

/// The long-lived job: runs each job handed over until told to exit.
fn serve_runs(shared: &Shared) {
    let mut slot = shared.lock();
    loop {
        if matches!(*slot, Slot::Exit) {
            return;
        }
        if !matches!(*slot, Slot::Ready(_)) {
            // Idle, or a result the caller has not collected yet.
            slot = shared.wait(slot);
            continue;
        }
        if let Slot::Ready(Job(call)) = std::mem::replace(&mut *slot, Slot::Running) {
            drop(slot);
            // SAFETY: the caller of `Pool::run` keeps the closure alive and unaliased until it
            // sees `Finished`.
            let outcome = catch_unwind(AssertUnwindSafe(|| unsafe { (*call)() }));
            slot = shared.lock();
            *slot = Slot::Finished(outcome.err());
            shared.changed.notify_all();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        *self.shared.lock() = Slot::Exit;
        self.shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn runs_happen_on_the_pool_and_panics_come_back_to_the_caller() {
        let pool = Pool::new(2).unwrap();
        let mut on_pool = None;
        pool.run(&mut || on_pool = rayon::current_thread_index());
        assert!(on_pool.is_some());
        // Parallel loops inside a run use the pool's threads.
        let mut sum = 0u64;
        pool.run(&mut || sum = (0..1000u64).into_par_iter().sum());
        assert_eq!(sum, 499_500);
        let caught = catch_unwind(AssertUnwindSafe(|| pool.run(&mut || panic!("boom"))));
        assert!(caught.is_err());
        // The pool still serves runs after a panic.
        let mut after = 0;
        pool.run(&mut || after = 7);
        assert_eq!(after, 7);
    }
}
