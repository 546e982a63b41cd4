//! faultline: hypothesis-driven chaos experiments on one Linux host.
//!
//! Layout (see docs/architecture.md): `experiment` (model, loading,
//! validation), `probe` (one file per kind), `fault` (one file per kind:
//! plan -> inject -> verify, undo recorded first), `sys` (the only code that
//! touches the host), `journal` (undo records, watchdog, recover, status),
//! `runner` (phases, events, abort conditions, signals), `report` (one file
//! per output format), `commands` (one function per subcommand), `load`
//! (faultline or Chaos Toolkit format), `chaostoolkit` (its reader).

pub mod chaosmesh;
pub mod chaostoolkit;
pub mod cli;
pub mod commands;
pub mod exit;
pub mod experiment;
pub mod export;
pub mod fault;
pub mod journal;
pub mod load;
pub mod probe;
pub mod report;
pub mod runner;
pub mod sys;
pub mod units;
