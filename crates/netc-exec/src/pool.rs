//! The executor's rayon pool, entered without allocating. `ThreadPool::install` from outside
//! the pool pushes a job onto rayon's global queue, whose storage grows block by block, so
//! every few dozen runs would allocate. Instead one long-lived job sits on a pool thread and
//! receives runs through a mutex and condition variable; parallel loops inside a run only
//! use the workers' own deques, which do not allocate.
//!
//! A thread allocates as it starts (its deque, its handle for crossbeam's epochs) and as it
//! exits (finalising its thread-locals). So making the pool waits until every thread has
//! started and taken a job, and dropping it joins them: neither can happen later, during runs.

use crate::ExecError;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

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
    /// Taken in `Drop::drop`, after the long-lived job has been told to return.
    pool: Option<rayon::ThreadPool>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    pub fn new(threads: usize) -> Result<Pool, ExecError> {
        let mut workers = Vec::with_capacity(threads);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .spawn_handler(|thread| {
                let name = format!("netc-exec-{}", thread.index());
                workers.push(std::thread::Builder::new().name(name).spawn(|| thread.run())?);
                Ok(())
            })
            .build()
            .map_err(|e| ExecError::ThreadPool { message: e.to_string() })?;
        // Returns when every thread has started and stolen a job (registering with the epochs).
        pool.broadcast(|_| ());
        let shared = Arc::new(Shared { slot: Mutex::new(Slot::Idle), changed: Condvar::new() });
        let serve = Arc::clone(&shared);
        pool.spawn(move || serve_runs(&serve));
        Ok(Pool { shared, pool: Some(pool), workers })
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
        // Dropping the rayon pool tells its threads to finish; joining waits until they have.
        drop(self.pool.take());
        for worker in self.workers.drain(..) {
            // A worker's panic has already been reported where it happened.
            let _ = worker.join();
        }
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

    #[test]
    #[cfg(target_os = "linux")]
    fn dropping_the_pool_joins_its_threads() {
        let pool = Pool::new(3).unwrap();
        // Each worker's task folder, /proc/self/task/TID, which exists while the thread does.
        let mut tasks = Vec::new();
        let task = || std::path::Path::new("/proc").join(std::fs::read_link("/proc/thread-self").unwrap());
        pool.run(&mut || tasks = rayon::broadcast(|_| task()));
        assert_eq!(tasks.len(), 3);
        assert!(tasks.iter().all(|t| t.exists()), "{tasks:?}");
        drop(pool);
        assert!(tasks.iter().all(|t| !t.exists()), "threads left running: {tasks:?}");
    }
}
