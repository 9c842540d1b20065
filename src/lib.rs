//! ironpxe: a network-boot server for OpenStack Ironic nodes, over Ethernet and InfiniBand.
//!
//! One request takes one straight path: a name parsed by the [`model`] → the live
//! [`state`] snapshot → a boot decision ([`model::boot`]) → bytes from [`render`] → the wire
//! ([`serving`]). Layers, bottom up — each uses only those below it (`tests/layers.rs`):
//! [`support`], [`model`], [`state`], [`render`], then [`serving`], [`dhcp`] and [`inspect`]
//! side by side; [`config`] parses the settings file into each layer's own settings; [`cli`]
//! is the binary's edge.

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
