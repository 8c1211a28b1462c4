//! The Sobre agent: probes the machine, spools every envelope to disk and
//! sends it over MQTT or gRPC until the collector acknowledges its commit.

pub mod campaign;
pub use sobre_base::civil;
pub mod cleanup;
pub mod config;
pub mod enrol;
pub mod nudges;
pub mod probe;
pub mod runtime;
pub mod scan;
pub mod service;
pub use sobre_base::shutdown;
pub mod spool;
mod sys;
pub mod transport;

#[cfg(all(test, unix))]
mod file_modes_tests;

pub use runtime::{AgentError, run, run_configured};
