//! `wikiwire`: parse the command line, set up logging, run the subcommand.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use wikiwire::{cli, cmd};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info".into())
                // tokio-xmpp writes every byte it sends at trace, SASL credentials included:
                // never, whatever RUST_LOG asks for. (A constant directive: it parses.)
                .add_directive("tokio_xmpp::xmlstream::capture=off".parse().expect("a valid directive")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("wikiwire: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            cli::Command::Serve(args) => cmd::serve::run(args.config.as_deref()).await,
            cli::Command::Demo(args) => cmd::demo::run(args.config.as_deref()).await,
            cli::Command::Publish(args) => cmd::publish::run(*args).await,
            cli::Command::Listen(args) => cmd::listen::run(*args).await,
            cli::Command::Token(args) => cmd::token::run(&args),
            cli::Command::Repair(args) => cmd::repair::run(args.config.as_deref()),
            cli::Command::Migrate(args) => cmd::migrate::run(&args).await,
            cli::Command::Config(cli::ConfigCommand::Check(args)) => cmd::check::run(args.config.as_deref()),
            cli::Command::Completions { shell } => {
                use clap::CommandFactory;
                clap_complete::generate(shell, &mut cli::Cli::command(), "wikiwire", &mut std::io::stdout());
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("wikiwire: {}", said_once(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by `: ` (as `{:#}` does, without a cause's trailing line end:
/// TOML's ends with one), each said once. An error that ends its own message with its cause's
/// (the store's errors do, for logs and answers that show no chain) has said that cause, and what
/// it says of its own causes, already: the chain stops there.
fn said_once(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        let cause = cause.trim_end();
        if text.ends_with(cause) {
            break;
        }
        text.push_str(": ");
        text.push_str(cause);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::said_once;

    #[test]
    fn a_cause_the_message_already_says_is_not_said_again() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let store = wikiwire_store::StoreError::backend_in("cannot create /x", io);
        let error = anyhow::Error::new(store).context("cannot open the store");
        assert_eq!(said_once(&error), "cannot open the store: storage failure: cannot create /x: denied");
        // A message that leaves its cause to the chain gets it appended, as `{:#}` would.
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let error = anyhow::Error::new(io).context("cannot read a.toml");
        assert_eq!(said_once(&error), "cannot read a.toml: gone");
    }
}
