//! `wikiwire listen`: a `Subscriber` printing events (text or JSON lines) or running a command
//! per event. Output is flushed before the cursor is saved, so a restart may repeat what was in
//! flight when the process was killed but never skips; SIGTERM and SIGINT end cleanly after the
//! current event, with everything flushed and the cursor saved.

use std::io::{IsTerminal, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::AsyncWriteExt;
use wikiwire_client::{IrcTarget, Options, Subscriber, TlsSettings};
use wikiwire_event::text::{TextOptions, TextStyle};
use wikiwire_event::{Event, Filter, text};

use crate::cli::{ListenArgs, OutputFormat};

/// Lines written before output is flushed and the cursor saved, while catching up.
const FLUSH_EVERY: usize = 1000;
/// A catch-up shorter than this shows no progress bar.
const PROGRESS_FROM: u64 = 1000;

pub async fn run(args: ListenArgs) -> anyhow::Result<()> {
    let irc = IrcTarget::parse(&args.irc).map_err(anyhow::Error::msg)?;
    let filter = match &args.filter {
        Some(text) => Filter::parse(text).context("--filter")?,
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
    // Colours and a progress bar only for a person at a terminal (and never with NO_COLOR).
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut progress = Progress::new(std::io::stderr().is_terminal());
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
        progress.show(subscriber.progress());
        match &args.exec {
            Some(command) => {
                run_command(command, &event).await;
                subscriber.commit(event.id)?;
            }
            None => {
                write_event(&mut out, &subscriber, &event, args.format, colour)?;
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
    progress.show(None);
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
    colour: bool,
) -> std::io::Result<()> {
    match format {
        OutputFormat::Json => writeln!(out, "{}", event.to_json()),
        OutputFormat::Text if colour => {
            let options = TextOptions { style: TextStyle::Colour, show_wiki: true };
            let line = text::render(event, subscriber.wiki(&event.wiki), options, 8192);
            writeln!(out, "\x1b[2m{}\x1b[0m {}", event.time, mirc_to_ansi(&line))
        }
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

/// The IRC colour line for a terminal: mIRC colour codes (`\x03NN`, `\x03` to reset, `\x02`
/// bold) become ANSI escapes, in the palette MediaWiki's IRC feed uses.
fn mirc_to_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 32);
    let mut characters = line.chars().peekable();
    let mut bold = false;
    while let Some(character) = characters.next() {
        match character {
            '\x03' => {
                let mut digits = String::new();
                while digits.len() < 2 && characters.peek().is_some_and(char::is_ascii_digit) {
                    digits.push(characters.next().expect("peeked"));
                }
                let ansi = match digits.parse::<u8>().ok() {
                    None => "39",
                    Some(2 | 12) => "34",
                    Some(3 | 9) => "32",
                    Some(4 | 5) => "31",
                    Some(7 | 8) => "33",
                    Some(6 | 13) => "35",
                    Some(10 | 11) => "36",
                    Some(14 | 15) => "90",
                    Some(_) => "39",
                };
                out.push_str(&format!("\x1b[{ansi}m"));
            }
            '\x02' => {
                bold = !bold;
                out.push_str(if bold { "\x1b[1m" } else { "\x1b[22m" });
            }
            _ => out.push(character),
        }
    }
    out.push_str("\x1b[0m");
    out
}

/// A one-line progress bar on standard error while a long catch-up runs.
struct Progress {
    enabled: bool,
    first: Option<u64>,
    drawn: Option<Instant>,
}

impl Progress {
    fn new(enabled: bool) -> Progress {
        Progress { enabled, first: None, drawn: None }
    }

    /// Draws `(reached, target)` at most ten times a second; `None` clears the line.
    fn show(&mut self, state: Option<(u64, u64)>) {
        if !self.enabled {
            return;
        }
        let Some((reached, target)) = state else {
            if self.drawn.take().is_some() {
                eprint!("\r\x1b[2K");
            }
            self.first = None;
            return;
        };
        let first = *self.first.get_or_insert(reached);
        let total = target.saturating_sub(first);
        if total < PROGRESS_FROM || self.drawn.is_some_and(|at| at.elapsed() < Duration::from_millis(100)) {
            return;
        }
        let done = reached.saturating_sub(first).min(total);
        let width = 30;
        let filled = (done * width / total.max(1)) as usize;
        eprint!(
            "\r\x1b[2Kcatching up [{}{}] {done}/{total} events ({}%)",
            "#".repeat(filled),
            "-".repeat(width as usize - filled),
            done * 100 / total.max(1)
        );
        self.drawn = Some(Instant::now());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn irc_colours_become_terminal_colours() {
        assert_eq!(
            mirc_to_ansi("\x0314[[\x0307Page\x0314]]\x03 x"),
            "\x1b[90m[[\x1b[33mPage\x1b[90m]]\x1b[39m x\x1b[0m"
        );
        assert_eq!(mirc_to_ansi("\x02-500\x02"), "\x1b[1m-500\x1b[22m\x1b[0m");
    }
}
