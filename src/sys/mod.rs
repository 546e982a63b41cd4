//! The thin layer that touches the host: /proc, signals, commands (tc, nft,
//! ip), cgroup files. Everything else is plain logic on top of it.

pub mod cgroup;
pub mod docker;
pub mod exec;
pub mod file;
pub mod hostlock;
pub mod net;
pub mod proc;
pub mod sockets;
pub mod text;
