//! One module per subcommand.

pub mod check;
pub mod listen;
pub mod publish;
pub mod serve;
pub mod token;
