//! Reports: one file per output format, all rendered from a [`record::RunRecord`].

pub mod record;
