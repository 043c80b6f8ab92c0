//! `wikiwire publish`: build an event from flags (or read JSON) and POST it with a token.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Map, Value};
use wikiwire_hub::config::Config;

use crate::cli::PublishArgs;
use crate::cmd::serve::local_token_path;

pub async fn run(args: PublishArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => Some(crate::config::Config::load(path)?.hub),
        None => None,
    };
    let body = match &args.json {
        Some(path) => read_json(path)?,
        None => Value::Object(event_from_flags(&args)?),
    };
    let token = token(&args, config.as_ref(), &body)?;
    let base = match (&args.url, &config) {
        (Some(url), _) => url.clone(),
        (None, Some(config)) => local_address(config),
        (None, None) => local_address(&Config::default()),
    };
    let url = wikiwire_event::api::events(base.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach the hub at {base}"))?;
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

/// Where a hub with this configuration listens, as seen from this machine.
fn local_address(config: &Config) -> String {
    let mut listen = config.http.listen;
    if listen.ip().is_unspecified() {
        let loopback: IpAddr =
            if listen.is_ipv4() { Ipv4Addr::LOCALHOST.into() } else { Ipv6Addr::LOCALHOST.into() };
        listen.set_ip(loopback);
    }
    format!("http://{listen}")
}

/// The token: given, from a file, from the configuration (the publisher of the event's wiki,
/// or the hub's generated local token), or `./wikiwire-data/local.token`.
fn token(args: &PublishArgs, config: Option<&Config>, body: &Value) -> anyhow::Result<String> {
    if let Some(token) = &args.token {
        return Ok(token.clone());
    }
    let path: PathBuf = match (&args.token_file, config) {
        (Some(path), _) => path.clone(),
        (None, Some(config)) if config.publishers.is_empty() => local_token_path(&config.data_dir),
        (None, Some(config)) => return publisher_token(config, body),
        (None, None) => local_token_path(Path::new(wikiwire_hub::config::DEFAULT_DATA_DIR)),
    };
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no --token given and cannot read {} (run `wikiwire serve` once, or pass --token)",
            path.display()
        )
    })?;
    Ok(text.trim().to_owned())
}

/// The token of the configured publisher that speaks for the event's wiki.
fn publisher_token(config: &Config, body: &Value) -> anyhow::Result<String> {
    let first = match body {
        Value::Array(events) => events.first().unwrap_or(&Value::Null),
        event => event,
    };
    let wiki = first["wiki"].as_str().context("no wiki in the event to find its publisher by")?;
    let publisher = config
        .publishers
        .iter()
        .find(|publisher| publisher.wikis.iter().any(|name| name.eq_ignore_ascii_case(wiki)))
        .with_context(|| format!("no publisher in the configuration speaks for {wiki:?}"))?;
    publisher.token.clone().with_context(|| {
        format!(
            "publisher {:?} has only a token_hash in the configuration: pass its token with --token or --token-file",
            publisher.name
        )
    })
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
    let required = [("wiki", &args.wiki), ("action", &args.action)];
    for (name, value) in required {
        if let Some(value) = value {
            event.insert(name.into(), Value::String(value.clone()));
        }
    }
    for (name, value) in &args.texts.0 {
        event.insert((*name).into(), Value::String(value.clone()));
    }
    for (name, value) in [("key", &args.key), ("time", &args.time)] {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hub_listening_on_every_address_is_reached_on_loopback() {
        let mut config = Config::parse("").unwrap();
        assert_eq!(local_address(&config), "http://127.0.0.1:8080");
        config.http.listen = "0.0.0.0:9000".parse().unwrap();
        assert_eq!(local_address(&config), "http://127.0.0.1:9000");
        config.http.listen = "[::]:9000".parse().unwrap();
        assert_eq!(local_address(&config), "http://[::1]:9000");
    }

    #[test]
    fn every_text_field_of_the_event_has_a_flag() {
        use clap::Parser;
        use wikiwire_event::fields::TEXT_FIELDS;

        let mut argv =
            vec!["wikiwire".to_owned(), "publish".into(), "--wiki=W".into(), "--action=SAVE".into()];
        for field in TEXT_FIELDS {
            argv.push(format!("--{}=the {}", field.name.replace('_', "-"), field.name));
        }
        let crate::cli::Command::Publish(args) = crate::cli::Cli::try_parse_from(argv).unwrap().command
        else {
            panic!("not the publish command");
        };
        let event = event_from_flags(&args).unwrap();
        for field in TEXT_FIELDS {
            assert_eq!(event[field.name], format!("the {}", field.name), "--{}", field.name);
        }
        assert_eq!(event.len(), TEXT_FIELDS.len() + 2);
    }
}
