//! Outbound dialers: schedules, dial strings, imports, the loader and dispatch.

pub mod dialstring;
pub mod dncr_import;
pub mod import;
mod lines;
pub mod schedule;
