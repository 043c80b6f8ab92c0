//! History: `GET /api/v1/events` (JSON), `GET /api/v1/events/{id}`, and seed 1's XML at
//! `GET /changes` and `GET /?action=changes`. One reader, two renderings.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use wikiwire_event::{Event, Timestamp, xml};
use wikiwire_store::{MAX_PAGE, Query};

use crate::AppState;
use crate::error::ApiError;
use crate::params::{Params, parse_id};

const DEFAULT_LIMIT: usize = 100;

#[derive(Serialize)]
struct HistoryPage<'a> {
    events: &'a [Event],
    /// Pass as `since` for the next page; `null` when the log has nothing more.
    next: Option<u64>,
    /// Ids in this page's range whose stored event cannot be read (a damaged store); only when
    /// there are some.
    #[serde(skip_serializing_if = "<[u64]>::is_empty")]
    unreadable: &'a [u64],
}

#[derive(Serialize)]
struct LinkedPage<'a> {
    events: Vec<serde_json::Value>,
    next: Option<u64>,
    #[serde(skip_serializing_if = "<[u64]>::is_empty")]
    unreadable: &'a [u64],
}

struct History {
    events: Vec<Event>,
    next: Option<u64>,
    unreadable: Vec<u64>,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
}

async fn read(state: &AppState, mut params: Params) -> Result<History, ApiError> {
    let since = params.take_id("since")?.unwrap_or(0);
    let from = params.take_time("from")?;
    let to = params.take_time("to")?;
    let limit = params.take_limit(DEFAULT_LIMIT, MAX_PAGE)?;
    let filter = params.into_filter()?;
    let query = Query { from, to, filter, ..Query::after(since, limit) };
    let page = state.hub.store().query(query).await?;
    Ok(History { events: page.events, next: page.next, unreadable: page.unreadable, from, to })
}

fn json_page(history: &History) -> Response {
    Json(HistoryPage { events: &history.events, next: history.next, unreadable: &history.unreadable })
        .into_response()
}

fn xml_page(history: &History) -> Response {
    let document = xml::changes(&history.events, history.from, history.to, history.next);
    ([(header::CONTENT_TYPE, "application/xml; charset=utf-8")], document).into_response()
}

pub async fn events(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let mut params = Params::parse(raw.as_deref())?;
    let links = params.take_flag("links")?;
    let history = read(&state, params).await?;
    if links {
        let events = history.events.iter().map(|event| crate::event_json(&state, event, true)).collect();
        let page = LinkedPage { events, next: history.next, unreadable: &history.unreadable };
        return Ok(Json(page).into_response());
    }
    Ok(json_page(&history))
}

pub async fn event(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id(&id)
        .ok_or_else(|| ApiError::bad_field("id", "id: must be an event id (a non-negative integer)"))?;
    match state.hub.store().get(id).await? {
        Some(event) => Ok(Json(event).into_response()),
        None => Err(ApiError::not_found(format!("no event {id} (never assigned, or removed by retention)"))),
    }
}

/// `/changes` and `/?action=changes`: XML unless `format=json`.
pub async fn changes(state: &AppState, mut params: Params) -> Result<Response, ApiError> {
    params.take_exact("action", "changes");
    let format = params.take("format")?;
    let history = read(state, params).await?;
    match format.as_deref() {
        None | Some("xml") => Ok(xml_page(&history)),
        Some("json") => Ok(json_page(&history)),
        Some(_) => Err(ApiError::bad_field("format", "format: xml or json")),
    }
}

pub async fn changes_route(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    changes(&state, Params::parse(raw.as_deref())?).await
}
