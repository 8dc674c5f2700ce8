//! arctern-lossyfs: a lose-unsynced FUSE filesystem for fault tests.
//!
//! [`overlay`] is the pure state machine (what is visible, what a fsync makes durable, what a
//! drop discards); [`fs`] is the thin FUSE adapter over a backing directory; [`control`] is
//! the daemon's command socket (`drop`, `status`, `delay`).

pub mod control;
pub mod fs;
pub mod overlay;
