//! Lifecycle execution: the pure rule evaluation (`rules`) and the background worker that applies
//! the rules of every bucket (`worker`).

pub mod rules;
pub mod worker;
