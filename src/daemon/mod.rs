//! The mount daemon: mount lifecycle, control socket, commit scheduler.

pub mod client;
pub mod control;
pub mod keysock;
pub mod mount;
pub mod protocol;
pub mod unseal;
