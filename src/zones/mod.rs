//! Zones: polygons and lines that turn detections into enter, exit, dwell,
//! cross and count events.

pub mod engine;
pub mod geometry;
pub mod objects;
pub mod service;
pub mod steps;

#[cfg(test)]
mod engine_tests;
