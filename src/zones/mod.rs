//! Zones: polygons and lines that turn detections into enter, exit, dwell,
//! cross and count events.

pub mod engine;
pub mod geometry;

#[cfg(test)]
mod engine_tests;
