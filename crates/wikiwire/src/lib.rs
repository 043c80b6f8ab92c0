//! The `wikiwire` command: `main.rs` parses and dispatches; each subcommand is a module of
//! [`cmd`]. `cmd::serve::start` is the one place that wires store, hub and front ends together,
//! shared by `serve`, the tests and the benchmarks; [`config`] composes the configuration file
//! from the parts the hub and each front end own.

pub mod cli;
pub mod cmd;
pub mod config;
mod memory;
pub mod rcfeed;
