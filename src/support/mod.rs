//! Helpers that know nothing about nodes or boot: a debounced file watcher, the log
//! formatter and atomic file writes. Any layer may use them; they use no other part of the
//! crate.

pub mod fs;
pub mod logging;
pub mod watch;
