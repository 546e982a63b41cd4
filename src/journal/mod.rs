//! Crash-safe undo: records synced before every injection, the watchdog that
//! replays them when the runner dies, and `status` / `recover`.

pub mod store;
pub mod trust;
pub mod undo;
pub mod watchdog;
