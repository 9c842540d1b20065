//! Helpers that know nothing about nodes or boot: a debounced file watcher and the log
//! formatter. Any layer may use them; they use no other part of the crate.

pub mod logging;
pub mod watch;
