//! `wikiwire publish`: build an event from flags (or read JSON) and POST it with a token.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Map, Value};

use crate::cli::PublishArgs;
use crate::cmd::serve::local_token_path;

pub async fn run(args: PublishArgs) -> anyhow::Result<()> {
    let token = token(&args)?;
    let body = match &args.json {
        Some(path) => read_json(path)?,
        None => Value::Object(event_from_flags(&args)?),
    };
    let url = format!("{}/api/v1/events", args.url.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach the hub at {}", args.url))?;
    let status = response.status();
    let answer: Value =
        response.json().await.with_context(|| format!("{url} answered {status} without JSON"))?;
    if !status.is_success() {
        let message = answer["error"].as_str().unwrap_or("no reason given");
        bail!("the hub refused ({status}): {message}");
    }
    let duplicates = answer["duplicates"].as_array().cloned().unwrap_or_default();
    for id in answer["ids"].as_array().into_iter().flatten() {
        if duplicates.contains(id) {
            println!("{id} (already published with this key)");
        } else {
            println!("{id}");
        }
    }
    Ok(())
}

fn token(args: &PublishArgs) -> anyhow::Result<String> {
    if let Some(token) = &args.token {
        return Ok(token.clone());
    }
    let path: PathBuf =
        args.token_file.clone().unwrap_or_else(|| local_token_path(Path::new("./wikiwire-data")));
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no --token given and cannot read {} (run `wikiwire serve` once, or pass --token)",
            path.display()
        )
    })?;
    Ok(text.trim().to_owned())
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin().read_to_string(&mut text).context("cannot read standard input")?;
    } else {
        text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    }
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

fn event_from_flags(args: &PublishArgs) -> anyhow::Result<Map<String, Value>> {
    let mut event = Map::new();
    let texts = [
        ("wiki", &args.wiki),
        ("action", &args.action),
        ("page", &args.page),
        ("user", &args.user),
        ("comment", &args.comment),
        ("revision", &args.revision),
        ("old_revision", &args.old_revision),
        ("old_name", &args.old_name),
        ("file", &args.file),
        ("key", &args.key),
        ("time", &args.time),
    ];
    for (name, value) in texts {
        if let Some(value) = value {
            event.insert(name.into(), Value::String(value.clone()));
        }
    }
    if let Some(size) = args.size {
        event.insert("size".into(), Value::from(size));
    }
    if args.minor {
        event.insert("minor".into(), Value::Bool(true));
    }
    if args.bot {
        event.insert("bot".into(), Value::Bool(true));
    }
    for field in &args.fields {
        let Some((name, value)) = field.split_once('=') else {
            bail!("--field {field:?}: write NAME=VALUE");
        };
        event.insert(name.into(), Value::String(value.into()));
    }
    if !event.contains_key("wiki") || !event.contains_key("action") {
        bail!("give at least --wiki and --action (or --json FILE)");
    }
    Ok(event)
}
