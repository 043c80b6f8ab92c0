//! Catch-up figures: `wikiwire listen` resuming 100,000 events behind, against a real hub.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::irc::start_hub;

#[derive(clap::Args)]
pub struct Args {
    /// Events the listener is behind when it resumes.
    #[arg(long, default_value_t = 100_000)]
    behind: usize,
    /// The wikiwire binary (default: next to this one).
    #[arg(long)]
    binary: Option<PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let binary = match args.binary {
        Some(binary) => binary,
        None => std::env::current_exe()?.with_file_name("wikiwire"),
    };
    let directory = tempfile::tempdir()?;
    let hub = start_hub(binary.clone(), directory.path()).await?;
    let client = reqwest::Client::new();
    let state = directory.path().join("cursor.json");
    let channel = format!("irc://{}/#BenchWiki.events", hub.irc);
    let listen = || {
        let mut command = tokio::process::Command::new(&binary);
        // A listener whose last event was 1 (a saved cursor is used first; none is saved yet).
        command
            .args(["listen", "--irc", &channel, "--format", "json", "--since", "1", "--state"])
            .arg(&state);
        command.env("RUST_LOG", "warn").stdout(Stdio::piped()).kill_on_drop(true);
        command
    };
    hub.publish(
        &client,
        &json!({"wiki": "BenchWiki", "action": "page_changed", "page": "Start", "user": "bench"}),
    )
    .await?;

    let publishing = Instant::now();
    for chunk in 0..args.behind.div_ceil(1000) {
        let batch: serde_json::Value = (0..1000.min(args.behind - chunk * 1000))
            .map(|n| json!({"wiki": "BenchWiki", "action": "page_changed", "page": format!("Page {chunk}/{n}"), "user": "bench",
                            "comment": "a typical edit summary", "revision": "2", "old_revision": "1"}))
            .collect();
        hub.publish(&client, &batch).await?;
    }
    println!("published {} events in {:.2} s", args.behind, publishing.elapsed().as_secs_f64());

    let started = Instant::now();
    let mut resumed = listen().spawn()?;
    let mut lines = BufReader::new(resumed.stdout.take().context("stdout")?).lines();
    let mut count = 0;
    while count < args.behind {
        tokio::time::timeout(Duration::from_secs(300), lines.next_line())
            .await
            .context("catching up")??
            .context("listener ended")?;
        count += 1;
    }
    let elapsed = started.elapsed();
    println!(
        "wikiwire listen resumed {} events behind: caught up in {:.2} s, {:.0} events/s (JSON lines to a pipe, cursor saved per 1000)",
        args.behind,
        elapsed.as_secs_f64(),
        args.behind as f64 / elapsed.as_secs_f64()
    );
    resumed.start_kill()?;
    Ok(())
}
