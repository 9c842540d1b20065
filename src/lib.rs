//! ironpxe: a network-boot server for OpenStack Ironic nodes, over Ethernet and InfiniBand.
//!
//! One request takes one straight path: name parsing ([`addr`]) → the live snapshot
//! ([`store`]) → a boot decision ([`boot`]) → rendered bytes ([`render`]) → the wire.

pub mod addr;
pub mod boot;
pub mod cli;
pub mod config;
pub mod node;
pub mod render;
pub mod serve;
pub mod store;
pub mod watch;
