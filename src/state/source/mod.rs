//! Where node state comes from: a watched directory of Ironic JSON ([`dir`]) and the Ironic
//! API itself ([`ironic`], whose change-driven refresh keeps its pure rules in [`refresh`]),
//! optionally one slice of the fleet ([`subset`]); Ironic's change notifications are decoded
//! in [`notification`]. Both hand the store whole documents
//! through the same [`Update`](crate::state::Update) shape.

pub mod dir;
pub mod ironic;
pub mod notification;
pub mod refresh;
pub mod subset;
