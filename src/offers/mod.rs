//! Where the sampler and the workers meet: the frames offered to workers (a
//! detection must answer one of them) and what the online workers can take
//! (the sampler plans its budget with it). Both sides import these from here.

pub mod frames;

pub use frames::OfferedFrames;

/// What the sampler needs to know of the workers.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WorkerSummary {
    /// Workers online.
    pub online: usize,
    /// The most frames per second they take together; `None` when one of them set no limit.
    pub cap_fps: Option<f64>,
}
