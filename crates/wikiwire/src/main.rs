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
            eprintln!("wikiwire: {error:#}");
            ExitCode::FAILURE
        }
    }
}
