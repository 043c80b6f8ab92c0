//! One module per subcommand.

pub mod check;
pub mod demo;
pub mod listen;
pub mod migrate;
pub mod publish;
pub mod repair;
pub mod serve;
pub mod token;
