//! placeholder
pub mod dinstar;
