//! Backups: policies copying footage to a directory, a mounted stick or share,
//! or an rclone remote; and archive exports.

pub mod copy;
pub mod export;
pub mod index;
pub mod job;
pub mod mounts;
pub mod rclone;
pub mod scheduler;
pub mod select;
pub mod tar;
