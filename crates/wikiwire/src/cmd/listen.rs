//! `wikiwire listen`: a `Subscriber` printing events (text or JSON lines) or running a command
//! per event. Output is flushed before the cursor is saved, so a restart may repeat what was in
//! flight when the process was killed but never skips; SIGTERM and SIGINT end cleanly after the
//! current event, with everything flushed and the cursor saved.

use std::io::Write;
use std::process::Stdio;

use anyhow::Context;
use tokio::io::AsyncWriteExt;
use wikiwire_client::{IrcTarget, Options, Subscriber, TlsSettings};
use wikiwire_event::text::{TextOptions, TextStyle};
use wikiwire_event::{Event, Filter, text};

use crate::cli::{ListenArgs, OutputFormat};

/// Lines written before output is flushed and the cursor saved, while catching up.
const FLUSH_EVERY: usize = 1000;

pub async fn run(args: ListenArgs) -> anyhow::Result<()> {
    let irc = IrcTarget::parse(&args.irc).map_err(anyhow::Error::msg)?;
    let filter = match &args.filter {
        Some(text) => Filter::parse(text).map_err(|error| anyhow::anyhow!("--filter: {error}"))?,
        None => Filter::all(),
    };
    let nick = args.nick.clone().unwrap_or_else(random_nick);
    let options = Options {
        irc,
        http: args.http.clone(),
        state: args.state.clone(),
        since: args.since,
        trust: args.trust.clone(),
        filter,
        nick,
        tls: TlsSettings { ca_file: args.ca.clone() },
    };
    let mut subscriber = Subscriber::open(options)?;
    let stop = stop_signal()?;
    tokio::pin!(stop);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut unflushed: Option<u64> = None;
    let mut pending_lines = 0;
    loop {
        let event = tokio::select! {
            biased;
            _ = &mut stop => break,
            event = subscriber.next() => event.context("listening stopped")?,
        };
        match &args.exec {
            Some(command) => {
                run_command(command, &event).await;
                subscriber.commit(event.id)?;
            }
            None => {
                write_event(&mut out, &subscriber, &event, args.format)?;
                unflushed = Some(event.id);
                pending_lines += 1;
                // Live: every event at once. Catching up: in batches, for speed.
                if subscriber.queued() == 0 || pending_lines >= FLUSH_EVERY {
                    out.flush()?;
                    subscriber.commit(event.id)?;
                    unflushed = None;
                    pending_lines = 0;
                }
            }
        }
    }
    out.flush()?;
    if let Some(id) = unflushed {
        subscriber.commit_durably(id)?;
    }
    Ok(())
}

fn write_event(
    out: &mut impl Write,
    subscriber: &Subscriber,
    event: &Event,
    format: OutputFormat,
) -> std::io::Result<()> {
    match format {
        OutputFormat::Json => writeln!(out, "{}", event.to_json()),
        OutputFormat::Text => {
            let options = TextOptions { style: TextStyle::Plain, show_wiki: true };
            writeln!(
                out,
                "{} {}",
                event.time,
                text::render(event, subscriber.wiki(&event.wiki), options, 8192)
            )
        }
    }
}

/// Runs `sh -c command` with the event in its environment and on its standard input. A failing
/// command is reported and the stream goes on.
async fn run_command(command: &str, event: &Event) {
    let json = event.to_json();
    let mut process = tokio::process::Command::new("sh");
    process.arg("-c").arg(command).stdin(Stdio::piped()).env("WIKIWIRE_EVENT", &json);
    let fields = [
        ("WIKIWIRE_ID", Some(event.id.to_string())),
        ("WIKIWIRE_TIME", Some(event.time.to_string())),
        ("WIKIWIRE_WIKI", Some(event.wiki.clone())),
        ("WIKIWIRE_ACTION", Some(event.action.to_string())),
        ("WIKIWIRE_PAGE", event.page.clone()),
        ("WIKIWIRE_USER", event.user.clone()),
        ("WIKIWIRE_COMMENT", event.comment.clone()),
        ("WIKIWIRE_REVISION", event.revision.clone()),
    ];
    for (name, value) in fields {
        if let Some(value) = value {
            process.env(name, value);
        }
    }
    let outcome = async {
        let mut child = process.spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(json.as_bytes()).await?;
            stdin.write_all(b"\n").await?;
        }
        child.wait().await
    }
    .await;
    match outcome {
        Ok(status) if status.success() => {}
        Ok(status) => tracing::warn!(event = event.id, %status, "--exec command failed"),
        Err(error) => tracing::warn!(event = event.id, %error, "--exec command could not run"),
    }
}

fn random_nick() -> String {
    let mut bytes = [0u8; 3];
    let _ = getrandom::fill(&mut bytes);
    format!("ww{}", bytes.iter().map(|byte| format!("{byte:02x}")).collect::<String>())
}

/// Resolves on SIGTERM or SIGINT.
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
