//! ironpxe: a network-boot server for OpenStack Ironic nodes, over Ethernet and InfiniBand.
//!
//! One request takes one straight path: name parsing ([`addr`]) → the live snapshot
//! ([`store`]) → a boot decision ([`boot`]) → rendered bytes ([`render`]) → the wire.

#![deny(unsafe_code)] // one exception, allowed where it is: tftp::read_cached (preadv2)

pub mod cli;
pub mod config;
pub mod dhcp;
pub mod inspect;
pub mod model;
pub mod render;
pub mod serving;
pub mod state;
pub mod support;
