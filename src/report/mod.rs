//! Reports: one file per output format, all rendered from a [`record::RunRecord`].

pub mod annotations;
pub mod history;
pub mod html;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod persist;
pub mod record;
pub mod samples;
pub mod stats;
pub mod summary;
pub mod table;
pub mod thin;
