//! The sampler: JPEG frames for perception workers, within a global budget.

pub mod budget;
pub mod camera;
pub mod decoder;
pub mod jpeg;
pub mod keyframes;
pub mod planner;
pub mod ring;
