//! The `wikiwire` command: `main.rs` parses and dispatches; each subcommand is a module of
//! [`cmd`]. `cmd::serve::start` is the one place that wires store, hub and front ends together,
//! shared by `serve`, the tests and the benchmarks.

pub mod cli;
pub mod cmd;
mod memory;
pub mod rcfeed;
