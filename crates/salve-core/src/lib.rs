//! salve's pure logic: the incident state machine and the remediation Job builder.
//!
//! Nothing in this crate talks to Kubernetes or reads a clock; the operator observes, calls
//! in here, and applies what comes back.
#![forbid(unsafe_code)]

pub mod conditions;
pub mod job;
pub mod machine;

pub use machine::{
    Effect, Gates, Hold, JobState, Notice, Observed, Transition, UnrecordedJob, Verification, next,
};
