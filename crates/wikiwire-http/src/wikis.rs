//! `GET /api/v1/wikis[/{wiki}]` (description blocks, SPEC §2.5), `GET /api/v1/channels[/{name}]`
//! (the IRC channel directory), and the Atom feeds `GET /feeds/{wiki}.atom`, `GET /feeds/all.atom`.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use wikiwire_event::atom::{self, FeedMeta};
use wikiwire_event::{Filter, Timestamp, WikiDescription, api};
use wikiwire_hub::ChannelSpec;
use wikiwire_store::Query;

use crate::AppState;
use crate::error::ApiError;
use crate::params::Params;

const FEED_DEFAULT: usize = 50;
const FEED_MAX: usize = 500;

/// A description block with the hub's own URLs for the wiki.
fn describe(state: &AppState, wiki: &WikiDescription) -> Value {
    let public = state.hub.public_url();
    let name = &wiki.name;
    // Serialising a struct of strings cannot fail.
    let mut value = serde_json::to_value(wiki).expect("description serialises");
    value["history"] = Value::String(format!("{}?wiki={name}", api::events(public)));
    value["stream"] = Value::String(format!("{}?wiki={name}", api::stream(public)));
    value["feed"] = Value::String(format!("{public}/feeds/{name}.atom"));
    value["url"] = Value::String(state.hub.wiki_url(name));
    value
}

pub async fn list(State(state): State<AppState>) -> Json<Value> {
    let wikis: Vec<Value> =
        state.hub.publishers().wikis().iter().map(|wiki| describe(&state, wiki)).collect();
    Json(serde_json::json!({ "wikis": wikis }))
}

pub async fn one(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let wiki = state
        .hub
        .publishers()
        .wiki(&name)
        .ok_or_else(|| ApiError::not_found(format!("no wiki {name:?} publishes here")))?;
    Ok(Json(describe(&state, wiki)))
}

fn describe_channel(state: &AppState, channel: &ChannelSpec) -> Value {
    serde_json::json!({
        "name": channel.name,
        "format": channel.format.name(),
        "filter": channel.filter.to_string(),
        "topic": channel.topic,
        "speakers": channel.speakers,
        "url": api::channel(state.hub.public_url(), &channel.name),
    })
}

pub async fn channels(State(state): State<AppState>) -> Json<Value> {
    let channels: Vec<Value> =
        state.hub.channels().iter().map(|channel| describe_channel(&state, channel)).collect();
    Json(serde_json::json!({ "channels": channels }))
}

/// One channel; the `#` may be given escaped (`%23antispam`) or left out (`antispam`).
pub async fn channel(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let name = if name.starts_with('#') { name } else { format!("#{name}") };
    let channel =
        state.hub.channel(&name).ok_or_else(|| ApiError::not_found(format!("no channel {name}")))?;
    Ok(Json(describe_channel(&state, channel)))
}

pub async fn feed(
    State(state): State<AppState>,
    Path(file): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let name = file.strip_suffix(".atom").ok_or_else(|| ApiError::not_found("feeds end in .atom"))?;
    let mut params = Params::parse(raw.as_deref())?;
    let limit = params.take_limit(FEED_DEFAULT, FEED_MAX)?;
    let mut filter = params.into_filter()?;
    let public = state.hub.public_url();
    let self_url = format!("{public}/feeds/{file}");
    let (title, show_wiki) = if name == "all" {
        ("Recent changes of all wikis".to_owned(), true)
    } else {
        let wiki = state
            .hub
            .publishers()
            .wiki(name)
            .ok_or_else(|| ApiError::not_found(format!("no wiki {name:?} publishes here")))?;
        filter = filter.and(&Filter::parse(&format!("wiki={}", wiki.name))?);
        (format!("Recent changes of {}", wiki.name), false)
    };
    let page = state.hub.store().query(Query { filter, ..Query::latest(None, limit) }).await?;
    let publishers = state.hub.publishers();
    let entries: Vec<_> = page.events.iter().map(|event| (event, publishers.wiki(&event.wiki))).collect();
    let meta =
        FeedMeta { public_url: public, title: &title, self_url: &self_url, now: Timestamp::now(), show_wiki };
    let document = atom::feed(&meta, &entries);
    Ok(([(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")], document).into_response())
}
