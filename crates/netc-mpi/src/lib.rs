//! netc's processes over MPI (rsmpi): the world communicator as a
//! [`Collective`](netc_train::parallel::Collective) for data-parallel training, and the barrier
//! that ends a sweep's shards.
//!
//! A collective is started non-blocking and polled against a deadline: MPI itself waits forever
//! for a process that hangs, so a process that hears nothing from the others within the time-out
//! says so and aborts the job (MPI_Abort ends every process; the launcher reports it). A process
//! that dies is reported by the launcher, which ends the others.

use mpi::datatype::{Partition, PartitionMut};
use mpi::request::Request;
use mpi::traits::*;
use mpi::Count;
use netc_train::parallel::Collective;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The exit status of a job aborted by a time-out.
const TIMED_OUT: i32 = 3;

/// How long a collective polls without sleeping.
const SPIN: Duration = Duration::from_millis(5);

/// This process's place among the job's processes.
pub struct World {
    // Finalizes MPI when dropped, after `world`'s last use.
    _universe: mpi::environment::Universe,
    world: mpi::topology::SimpleCommunicator,
    timeout: Duration,
    /// The flattened messages of the last exchange, kept so a step reuses their memory.
    scratch: Mutex<Scratch>,
}

#[derive(Default)]
struct Scratch {
    send: Vec<f32>,
    received: Vec<f32>,
}

impl World {
    /// Initialises MPI (once per process); a process started without a launcher is a world of
    /// one. `timeout`: how long a collective may wait for the other processes.
    pub fn init(timeout: Duration) -> Result<World, String> {
        let universe = mpi::initialize().ok_or("MPI was already initialised in this process")?;
        let world = universe.world();
        Ok(World { _universe: universe, world, timeout, scratch: Mutex::default() })
    }

    /// Waits until every process has called it, however long that takes (a sweep's shards end
    /// hours apart).
    pub fn barrier(&self) {
        self.world.barrier();
    }

    /// Ends every process of the job with `status`: what a process that fails must do, as the
    /// others would wait for it forever (MPI_Finalize waits for them too).
    pub fn abort(&self, status: i32) -> ! {
        self.world.abort(status)
    }

    /// Polls `request` until it completes or the time-out passes; then aborts the job.
    fn wait<'a, T: ?Sized, S: mpi::request::Scope<'a>>(&self, mut request: Request<'a, T, S>, what: &str) {
        let started = Instant::now();
        // Polled without sleeping for the first milliseconds (an exchange between processes
        // in step takes about that long; yielding leaves a shared core to a process still
        // computing), then with sleeps that grow to 1 ms.
        let mut pause = Duration::from_micros(50);
        loop {
            match request.test() {
                Ok(_) => return,
                Err(pending) => request = pending,
            }
            let waited = started.elapsed();
            if waited < SPIN {
                std::thread::yield_now();
                continue;
            }
            if waited > self.timeout {
                eprintln!(
                    "error: process {} of {}: the other processes did not answer within {} s ({what}); one of them \
                     died or hangs, so the job stops (a run resumes from its last checkpoint)",
                    self.rank(),
                    self.size(),
                    self.timeout.as_secs_f64()
                );
                self.world.abort(TIMED_OUT);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(1));
        }
    }
}

impl Collective for World {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    /// One MPI_Ialltoallv over flattened messages. The receive counts are the sizes the caller
    /// gave `received`; a longer message is MPI's truncation error, which ends the job.
    fn all_to_all(&self, send: &[Vec<f32>], received: &mut [Vec<f32>]) -> Result<(), String> {
        let count = |n: usize| Count::try_from(n).map_err(|_| format!("a message of {n} values is too long for MPI"));
        let counts = |messages: &[Vec<f32>]| messages.iter().map(|m| count(m.len())).collect::<Result<Vec<_>, _>>();
        let (send_counts, received_counts) = (counts(send)?, counts(received)?);
        let offsets = |counts: &[Count]| {
            counts.iter().scan(0, |at, &n| Some(std::mem::replace(at, *at + n))).collect::<Vec<Count>>()
        };
        let (send_offsets, received_offsets) = (offsets(&send_counts), offsets(&received_counts));

        let mut scratch = self.scratch.lock().map_err(|_| "a previous exchange panicked".to_string())?;
        let Scratch { send: flat_send, received: flat_received } = &mut *scratch;
        flat_send.clear();
        send.iter().for_each(|m| flat_send.extend_from_slice(m));
        flat_received.resize(received.iter().map(Vec::len).sum(), 0.0);
        let outgoing = Partition::new(&flat_send[..], &send_counts[..], &send_offsets[..]);
        let mut incoming = PartitionMut::new(&mut flat_received[..], &received_counts[..], &received_offsets[..]);
        mpi::request::scope(|scope| {
            let request = self.world.immediate_all_to_all_varcount_into(scope, &outgoing, &mut incoming);
            self.wait(request, "exchanging gradients");
        });
        let mut at = 0;
        for message in received.iter_mut() {
            let n = message.len();
            message.copy_from_slice(&flat_received[at..at + n]);
            at += n;
        }
        Ok(())
    }
}
