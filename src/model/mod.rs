//! The pure model: hardware addresses and the names firmware asks for, Ironic's nodes and
//! ports, the boot decision, and a request name → resource. No I/O, no clocks, no globals:
//! everything here is a function of its arguments and is unit-tested exhaustively.

pub mod addr;
pub mod boot;
pub mod ironic_pxe;
pub mod net;
pub mod node;
pub mod paths;
pub mod resource;
