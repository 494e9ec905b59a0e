//! Compile-time ceilings: every fixed-capacity container is sized by these,
//! and a board profile may set its limits at most this high.

/// Most cameras any board may configure.
pub const MAX_CAMERAS: usize = 32;
/// Most zones (polygons and lines) per camera.
pub const MAX_ZONES_PER_CAMERA: usize = 32;
/// Most points of one zone polygon.
pub const MAX_ZONE_POINTS: usize = 32;
/// Most tracked objects the zone engine remembers per camera.
pub const MAX_TRACKS_PER_CAMERA: usize = 256;
/// Most preallocated frame slots per sampled camera.
pub const MAX_FRAME_SLOTS: usize = 16;
/// Largest JPEG frame the sampler may hold.
pub const MAX_FRAME_BYTES: u64 = 4 << 20;
/// Highest global sampling budget, frames per second.
pub const MAX_TOTAL_FPS: f64 = 240.0;
/// Most unsent events the outbox may keep.
pub const MAX_OUTBOX: u64 = 10_000_000;
/// Most perception workers tracked at once.
pub const MAX_WORKERS: usize = 64;
/// Most detections in one message.
pub const MAX_DETECTIONS_PER_MESSAGE: usize = 256;
/// Largest incoming message (detections, worker status) the node reads.
pub const MAX_MESSAGE_BYTES: u64 = 1 << 20;
/// Most concurrent media streams the viewing surface serves.
pub const MAX_VIEWERS: usize = 64;
