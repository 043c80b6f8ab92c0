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

use wikiwire_hub::Config;
use wikiwire_hub::config::ConfigError;

/// Reads a configuration file and checks it whole: the hub's rules and those the protocol crates
/// own (the Jabber bot's JIDs and languages). Every command reads its file through here.
pub fn load_config(path: &Path) -> Result<Config, ConfigError> {
    Config::load(path, &[wikiwire_xmpp::check_config])
}
