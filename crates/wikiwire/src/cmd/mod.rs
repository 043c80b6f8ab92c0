//! One module per subcommand.

pub mod check;
pub mod demo;
pub mod listen;
pub mod migrate;
pub mod publish;
pub mod repair;
pub mod serve;
pub mod token;

use std::path::Path;

use crate::config::{Config, ConfigError};

/// Reads a configuration file and checks it whole: every part's sections, each by its own
/// rules. Every command reads its file through here.
pub fn load_config(path: &Path) -> Result<Config, ConfigError> {
    Config::load(path)
}
