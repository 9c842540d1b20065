//! ironpxe: a network-boot server for OpenStack Ironic nodes, over Ethernet and InfiniBand.
//!
//! One request takes one straight path: name parsing ([`addr`]) → the live snapshot
//! ([`store`]) → a boot decision ([`boot`]) → rendered bytes ([`render`]) → the wire.

#![deny(unsafe_code)] // one exception, allowed where it is: tftp::read_cached (preadv2)

pub mod addr;
pub mod admin;
pub mod app;
pub mod boot;
pub mod cli;
pub mod config;
pub mod dhcp;
pub mod http;
pub mod images;
pub mod inspect;
pub mod ironic;
pub mod journal;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod paths;
pub mod problems;
pub mod render;
pub mod resource;
pub mod serve;
pub mod store;
pub mod tftp;
pub mod watch;
