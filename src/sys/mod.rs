//! Small helpers at the edge to the operating system: finding and spawning
//! programs, scrubbing secrets out of what they print, retry backoff, rate
//! limits, free space, a library's sockets. A leaf: it depends on nothing else in the crate.

pub mod backoff;
pub mod clock;
pub mod disk;
pub mod lines;
pub mod lock;
pub mod process;
pub mod rate;
pub mod scrub;
pub mod socket;
