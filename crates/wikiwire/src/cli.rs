//! The command line: subcommands and flags (SPEC §7 fixes their names).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use wikiwire_event::fields::TEXT_FIELDS;

#[derive(Parser)]
#[command(name = "wikiwire", version, about = "The global event system for a network of wikis")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the hub: HTTP API and every configured front end.
    #[command(
        after_help = "Examples:\n  wikiwire serve\n  wikiwire serve --config /etc/wikiwire/wikiwire.toml"
    )]
    Serve(ConfigArgs),
    /// Run the hub with a simulated wiki farm editing pages, to see events flow at once.
    #[command(
        after_help = "Examples:\n  wikiwire demo                      # two demo wikis, data in ./wikiwire-demo-data\n  \
                            wikiwire demo --config wikiwire.toml   # simulated edits on every configured wiki\n\n\
                      Then open the printed HTTP address in a browser, or join #MoinDemo on the printed IRC address."
    )]
    Demo(ConfigArgs),
    /// Announce an event (over HTTP, as a publisher).
    #[command(
        after_help = "Examples:\n  wikiwire publish --wiki local --action page_changed --page 'Front Page' --user Alice --comment 'typo'\n  \
                            wikiwire publish --url https://hub.example --token-file moin.token --json events.json\n  \
                            echo '{\"wiki\":\"local\",\"action\":\"SAVE\",\"page\":\"P\",\"user\":\"u\"}' | wikiwire publish --json -"
    )]
    Publish(Box<PublishArgs>),
    /// Follow a channel: history not seen yet, then live; each event once, in order.
    #[command(
        after_help = "Examples:\n  wikiwire listen --irc irc://127.0.0.1:6667/#local.events --state local.cursor --format json\n  \
                            wikiwire listen --irc irc://127.0.0.1/#antispam --trust moin --exec ./update-blacklist.sh\n  \
                            wikiwire listen --irc ircs://irc.example.org/#wiki-feed --http https://hub.example --trust wikirelay --filter 'wiki=MoinMaster'"
    )]
    Listen(Box<ListenArgs>),
    /// Make a publisher token and the hash to put in the configuration.
    #[command(after_help = "Example:\n  wikiwire token --name moin")]
    Token(TokenArgs),
    /// Check a configuration file and report every mistake.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Move the events of this node's SQLite log into a new JetStream stream, keeping every id
    /// and key (run once, before the first node starts with `[cluster]`).
    #[command(
        after_help = "Examples:\n  wikiwire migrate --to-jetstream --config /etc/wikiwire/wikiwire.toml\n  \
                            wikiwire migrate --to-jetstream --no-history --config wikiwire.toml   # ids go on, history stays behind\n\n\
                      The file names the old data_dir and the new [cluster]; the stream must not hold events yet."
    )]
    Migrate(MigrateArgs),
    /// Repair a damaged SQLite log with the hub stopped: copy every readable event into a new file,
    /// keep the damaged one beside it, and reserve the ids of what was lost.
    #[command(after_help = "Examples:\n  wikiwire repair --config /etc/wikiwire/wikiwire.toml\n  \
                            wikiwire repair                    # ./wikiwire-data/events.sqlite\n\n\
                      Stop the hub first. Events that cannot be recovered stay as gaps at their ids: readers are told, \
                      no id is handed out twice. A cluster node needs no repair: it rebuilds a damaged replica at start.")]
    Repair(ConfigArgs),
    /// Print a shell completion script.
    #[command(after_help = "Examples:\n  wikiwire completions bash > /etc/bash_completion.d/wikiwire\n  \
                            wikiwire completions zsh > \"${fpath[1]}/_wikiwire\"\n  \
                            wikiwire completions fish > ~/.config/fish/completions/wikiwire.fish")]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Args)]
pub struct ConfigArgs {
    /// The configuration file (TOML); without it, loopback listeners and ./wikiwire-data.
    #[arg(long, short, env = "WIKIWIRE_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Args)]
pub struct MigrateArgs {
    /// Into the JetStream stream of the configuration's `[cluster]` (the only target there is).
    #[arg(long, required = true)]
    pub to_jetstream: bool,
    /// Copy no events: the stream only continues the ids after the last one.
    #[arg(long)]
    pub no_history: bool,
    /// The configuration with `data_dir` (the SQLite log) and `[cluster]`.
    #[arg(long, short, env = "WIKIWIRE_CONFIG")]
    pub config: PathBuf,
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Read the configuration and say what is wrong with it.
    #[command(after_help = "Example:\n  wikiwire config check --config wikiwire.toml")]
    Check(ConfigArgs),
}

#[derive(Args)]
pub struct TokenArgs {
    /// The publisher's name, to print a ready configuration block.
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Args)]
pub struct ListenArgs {
    /// The channel: irc://host[:port]/#channel, or ircs:// for TLS.
    #[arg(long)]
    pub irc: String,
    /// The hub's HTTP address for catching up; found in a wikiwire channel's topic if omitted.
    #[arg(long)]
    pub http: Option<String>,
    /// Keep the cursor (last event handled) here, so a restart resumes where it stopped.
    #[arg(long)]
    pub state: Option<std::path::PathBuf>,
    /// With no saved cursor, start after this id (0: all history); default: from now.
    #[arg(long)]
    pub since: Option<u64>,
    /// Only trust these publishers (nick, and account where the server tags it).
    #[arg(long)]
    pub trust: Vec<String>,
    /// How to print events.
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
    /// Run this shell command per event (the event as JSON on its standard input and in
    /// WIKIWIRE_EVENT, fields in WIKIWIRE_ID, WIKIWIRE_WIKI, WIKIWIRE_ACTION, WIKIWIRE_PAGE, ...).
    #[arg(long)]
    pub exec: Option<String>,
    /// Only these events (filter language, e.g. `action=page_changed&page=Help/*`); on a channel
    /// that is not wikiwire's own, say what the channel carries.
    #[arg(long)]
    pub filter: Option<String>,
    /// Our nick on IRC (default: a random one).
    #[arg(long)]
    pub nick: Option<String>,
    /// Extra CA certificates (PEM) for ircs://.
    #[arg(long)]
    pub ca: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Args)]
pub struct PublishArgs {
    /// The hub's HTTP address (default: the `[http] listen` of --config, else http://127.0.0.1:8080).
    #[arg(long, env = "WIKIWIRE_URL")]
    pub url: Option<String>,
    /// The hub's configuration file: its address, and the token of the wiki's publisher (the
    /// generated `local.token` in its data directory when it configures no publishers).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The publisher token.
    #[arg(long, env = "WIKIWIRE_TOKEN", hide_env_values = true, conflicts_with = "token_file")]
    pub token: Option<String>,
    /// A file holding the publisher token (default: ./wikiwire-data/local.token, made by `serve`).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Send this JSON (an event or an array of events); `-` reads standard input.
    #[arg(long, conflicts_with_all = ["wiki", "action", "page", "user"])]
    pub json: Option<PathBuf>,
    /// The wiki the change happened on (its publisher must speak for it).
    #[arg(long)]
    pub wiki: Option<String>,
    /// page_changed, page_created, ..., a MoinMoin alias (SAVE, ...) or your own name.
    #[arg(long)]
    pub action: Option<String>,
    #[command(flatten)]
    pub texts: TextFlags,
    /// The attachment's size in bytes.
    #[arg(long)]
    pub size: Option<u64>,
    /// A minor edit.
    #[arg(long)]
    pub minor: bool,
    /// Made by a bot.
    #[arg(long)]
    pub bot: bool,
    /// Idempotency key: sending the same key twice stores the event once.
    #[arg(long)]
    pub key: Option<String>,
    /// When the change happened (RFC 3339 or unix seconds); default now.
    #[arg(long)]
    pub time: Option<String>,
    /// Any other field, kept in `extra`.
    #[arg(long = "field", value_name = "NAME=VALUE")]
    pub fields: Vec<String>,
}

/// One flag per text field of the event (`--page`, `--old-revision`, ...), made from the event's
/// table of text fields so that a new field is a new flag without a change here.
#[derive(Default)]
pub struct TextFlags(pub Vec<(&'static str, String)>);

impl clap::FromArgMatches for TextFlags {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = TextFlags::default();
        flags.update_from_arg_matches(matches)?;
        Ok(flags)
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        for field in TEXT_FIELDS {
            if let Some(value) = matches.get_one::<String>(field.name) {
                self.0.retain(|(name, _)| *name != field.name);
                self.0.push((field.name, value.clone()));
            }
        }
        Ok(())
    }
}

impl Args for TextFlags {
    fn augment_args(command: clap::Command) -> clap::Command {
        TEXT_FIELDS.iter().fold(command, |command, field| {
            command.arg(
                clap::Arg::new(field.name)
                    .long(field.name.replace('_', "-"))
                    .value_name("TEXT")
                    .help(field.about),
            )
        })
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}
