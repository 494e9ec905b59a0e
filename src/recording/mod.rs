//! Recorded footage: segment file layout, the segment index and the
//! reconciliation of disk and index at start-up.

pub mod floor;
pub mod fragments;
pub mod garbage;
pub mod guard;
pub mod index;
pub mod layout;
pub mod locks;
pub mod reconcile;
pub mod retention;
pub mod sweeper;
