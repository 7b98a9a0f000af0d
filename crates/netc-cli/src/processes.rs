//! The processes a command runs as: this one alone or, in a build with the `mpi` feature started
//! by `mpiexec -n K`, the K processes of the MPI world (docs/distributed.md).

use netc::train::parallel::Collective;
use std::time::Duration;

pub struct Processes {
    #[cfg(feature = "mpi")]
    world: netc_mpi::World,
}

impl Processes {
    /// Joins the launcher's processes (a world of one without a launcher); a collective waits
    /// `timeout` for the others before it stops the job.
    #[cfg_attr(not(feature = "mpi"), allow(unused_variables))]
    pub fn join(timeout: Duration) -> Result<Processes, crate::Failure> {
        Ok(Processes {
            #[cfg(feature = "mpi")]
            world: netc_mpi::World::init(timeout).map_err(crate::Failure::usage)?,
        })
    }

    pub fn group(&self) -> &dyn Collective {
        #[cfg(feature = "mpi")]
        return &self.world;
        #[cfg(not(feature = "mpi"))]
        &netc::train::parallel::Alone
    }

    /// Whether this process prints progress and results: the first one.
    pub fn leads(&self) -> bool {
        self.group().rank() == 0
    }

    /// The command's end: a failure of this process alone, among several, is printed and ends
    /// them all, as the others would wait for this one forever; otherwise `result` as it is (an
    /// agreed failure, which every process reaches, ends each normally, after the first has
    /// written its checkpoint).
    pub fn end(self, result: Result<(), crate::Failure>) -> Result<(), crate::Failure> {
        #[cfg(feature = "mpi")]
        if let (Err(failure @ crate::Failure { agreed: false, .. }), true) = (&result, self.group().size() > 1) {
            use std::io::Write;
            let _ = std::io::stderr().write_all(failure.text.as_bytes());
            // The launcher forwards output asynchronously and stops forwarding when it ends the
            // job: give it a moment to pass the error on.
            std::thread::sleep(std::time::Duration::from_millis(200));
            self.world.abort(i32::from(failure.status));
        }
        // Every process reached an agreed failure; the first says what happened.
        match result {
            Err(failure) if failure.agreed && !self.leads() => Err(crate::Failure { text: String::new(), ..failure }),
            result => result,
        }
    }

    /// Waits for every process to get here (however long that takes).
    pub fn barrier(&self) {
        #[cfg(feature = "mpi")]
        self.world.barrier();
    }
}
