//! `GET /v2/stream/{streams}`: Wikimedia's EventStreams contract (SPEC §4), so clients written
//! for `stream.wikimedia.org` (pywikibot, requests-sse, sseclient, a browser's EventSource) work by
//! changing the base URL. The log and its promise are `/api/v1/stream`'s: a client that comes
//! back with the last id it received misses nothing and sees nothing twice. What is particular
//! to EventStreams — the body, ids, `since` — is built in `wikiwire_event::eventstreams`; this
//! module only chooses where to start and frames the events:
//!
//! * `text/event-stream` (the default): `:ok`, then `event: message`, `id: <KafkaSSE array>`,
//!   `data: <recentchange JSON>`; a pruned stretch is an `event: gap` (EventStreams' own clients
//!   only read `message`).
//! * `Accept: application/json…`: one JSON object per line, as KafkaSSE writes it.
//!
//! Errors are EventStreams' JSON problem bodies (`status`, `type`, `title`, `detail`, `method`,
//! `uri`), not `/api/v1`'s `{error, field}`.
//!
//! Live clients all read the same events, so each event is rendered once ([`Renders`]) and its
//! body and id shared by every client, as the IRC fan-out shares its lines: the rendering (the
//! datagram copied without nulls, the UUID's SHA-256, the JSON text) was three quarters of the
//! hub's CPU time with 2,000 clients (docs/PERFORMANCE.md).

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, stream};
use wikiwire_event::eventstreams::{self, Resume};
use wikiwire_event::{Event, Timestamp};
use wikiwire_hub::metrics::GaugeGuard;
use wikiwire_hub::{FollowError, Follower, Item, Lag};
use wikiwire_store::{Query, StoreError};

use crate::AppState;
use crate::error::ApiError;
use crate::params::Params;

/// The headers EventStreams (service-template-node) sends with every answer besides
/// `Access-Control-Allow-Origin: *`, which every GET of this API carries.
const ALLOW_HEADERS: &str = "accept, x-requested-with, content-type, last-event-id";
const EXPOSE_HEADERS: &str = "etag";

/// An error in EventStreams' shape.
struct Problem {
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: String,
    uri: String,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "status": self.status.as_u16(),
            "type": self.kind,
            "title": self.title,
            "detail": self.detail,
            "method": "get",
            "uri": self.uri,
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        cors(response.headers_mut());
        response
    }
}

fn cors(headers: &mut HeaderMap) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOW_HEADERS));
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE_HEADERS));
}

/// `OPTIONS /v2/stream/{streams}`: a browser's preflight for a request with `Last-Event-ID`.
pub async fn preflight() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET"));
    cors(headers);
    response
}

pub async fn stream(
    State(state): State<AppState>,
    Path(streams): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let uri = uri.to_string();
    let problem = |kind, title, detail: String| Problem {
        status: StatusCode::BAD_REQUEST,
        kind,
        title,
        detail,
        uri: uri.clone(),
    };
    // The built-in names carry every event; a configured one ([[stream]]) its filter.
    let (mut everything, mut configured, mut unknown) = (false, Vec::new(), Vec::new());
    for name in streams.split(',') {
        if eventstreams::STREAM_NAMES.contains(&name) {
            everything = true;
        } else if let Some(filter) = state.streams.get(name) {
            configured.push(filter.clone());
        } else {
            unknown.push(name);
        }
    }
    if !unknown.is_empty() {
        return problem("not_found", "Stream Not Found", format!("Invalid streams: {}", unknown.join(",")))
            .into_response();
    }
    let mut params = match Params::parse(raw.as_deref()) {
        Ok(params) => params,
        Err(error) => return problem("bad_request", "Bad Request", error.error).into_response(),
    };
    let since = match params.take("since") {
        Ok(None) => None,
        Ok(Some(text)) => match eventstreams::parse_since(&text) {
            Ok(time) => Some(Resume::At(time)),
            Err(error) => return problem("invalid_timestamp", "Invalid timestamp", error.0).into_response(),
        },
        Err(error) => return problem("invalid_timestamp", "Invalid timestamp", error.error).into_response(),
    };
    // As KafkaSSE: the header's assignments win over `since` (a reconnecting client repeats the
    // URL it first opened).
    let resume = match headers.get("last-event-id").map(|value| value.to_str()) {
        None => since,
        Some(Ok(text)) => match eventstreams::parse_last_event_id(text) {
            Ok(resume) => Some(resume),
            Err(error) => {
                return problem("invalid_assignment", "Invalid Last-Event-ID", error.0).into_response();
            }
        },
        Some(Err(_)) => {
            return problem("invalid_assignment", "Invalid Last-Event-ID", "Last-Event-ID: not text".into())
                .into_response();
        }
    };
    // EventStreams ignores parameters it does not know; ours that it does not have are filters.
    let mut filter = match params.into_known_filter() {
        Ok(filter) => filter,
        Err(error) => return problem("bad_request", "Bad Request", error.error).into_response(),
    };
    // One configured stream narrows what is followed; several are matched event by event.
    let any_of = match (everything, configured.len()) {
        (true, _) | (false, 0) => Vec::new(),
        (false, 1) => {
            filter = configured[0].clone().and(&filter);
            Vec::new()
        }
        (false, _) => configured,
    };
    let json_lines = headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.trim_start().starts_with("application/json"));
    let started = async {
        let after = match resume {
            None | Some(Resume::Latest) => None,
            Some(Resume::After(id)) => Some(id),
            Some(Resume::At(time)) => Some(first_at(&state, time).await?),
        };
        state.hub.follow(after, filter, Lag::End).await
    };
    let follower = match started.await {
        Ok(follower) => Selected { follower, any_of },
        Err(error) => return ApiError::from(error).into_response(),
    };
    let open = GaugeGuard::new(Arc::clone(state.hub.metrics()), |metrics| &metrics.sse_clients);
    let mut response = if json_lines { lines(state, follower, open) } else { events(state, follower, open) };
    cors(response.headers_mut());
    response
}

/// The position just before the first event at or after `time`; the end of the log when there
/// is none. The log's end is read first, so nothing appended meanwhile is passed over.
async fn first_at(state: &AppState, time: Timestamp) -> Result<u64, StoreError> {
    let store = state.hub.store();
    let end = store.bounds().await?.last_id;
    let mut after = 0;
    loop {
        let page = store.query(Query { from: Some(time), ..Query::after(after, 1) }).await?;
        if let Some(event) = page.events.first() {
            return Ok(event.id - 1);
        }
        match page.next {
            Some(next) if next < end => after = next,
            _ => return Ok(end),
        }
    }
}

/// Events whose renderings are kept, by id modulo this: live clients are within a few events of
/// each other; one catching up from further back renders what it reads itself (and may take a
/// slot from a newer event, which is then rendered again: a cost, never a wrong body).
const RENDERED_SLOTS: usize = 1024;

/// An event as every `/v2` client sends it.
pub struct Rendered {
    id: u64,
    /// The SSE `id:` (KafkaSSE's array).
    sse_id: String,
    /// The recentchange body: SSE's `data:`.
    body: String,
    /// The body and a line end: NDJSON's line.
    line: Bytes,
}

/// Each event's rendering, made by the first client that sends it and shared by the others. An
/// id names one event for the life of the process (in a cluster too: ids are the log's), and the
/// rendering depends only on the event and the configuration, so a kept one is always right.
pub struct Renders {
    slots: Box<[Mutex<Option<Arc<Rendered>>>]>,
}

impl Default for Renders {
    fn default() -> Renders {
        Renders { slots: (0..RENDERED_SLOTS).map(|_| Mutex::new(None)).collect() }
    }
}

impl Renders {
    fn get(&self, state: &AppState, event: &Event) -> Arc<Rendered> {
        let slot = &self.slots[(event.id % RENDERED_SLOTS as u64) as usize];
        if let Some(kept) = slot.lock().unwrap_or_else(PoisonError::into_inner).as_ref()
            && kept.id == event.id
        {
            return Arc::clone(kept);
        }
        // Rendered outside the lock; two clients that miss at once both render, one is kept.
        let rendered = Arc::new(render(state, event));
        *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&rendered));
        rendered
    }
}

fn render(state: &AppState, event: &Event) -> Rendered {
    let wiki = state.hub.publishers().wiki(&event.wiki);
    let body = eventstreams::recentchange(event, wiki, eventstreams::STREAM).to_string();
    let line = Bytes::from(format!("{body}\n"));
    Rendered { id: event.id, sse_id: eventstreams::event_id(event), body, line }
}

/// A request's events: its follower, and with several configured streams, their filters (an
/// event goes out when any of them carries it).
struct Selected {
    follower: Follower,
    any_of: Vec<wikiwire_event::Filter>,
}

impl Selected {
    async fn next(&mut self) -> Result<Item, FollowError> {
        loop {
            let item = self.follower.next().await?;
            if let Item::Event(event) = &item
                && !self.any_of.is_empty()
                && !self.any_of.iter().any(|filter| filter.matches(event))
            {
                continue;
            }
            return Ok(item);
        }
    }
}

type Streaming = (AppState, Selected, GaugeGuard);

fn events(state: AppState, follower: Selected, open: GaugeGuard) -> Response {
    let heartbeat = state.heartbeat;
    let shutdown = state.hub.shutdown().clone();
    // KafkaSSE's first bytes: a comment that sends the headers.
    let hello = stream::once(async { Ok::<_, Infallible>(SseEvent::default().comment("ok")) });
    let events =
        stream::unfold((state, follower, open), |(state, mut follower, open): Streaming| async move {
            let event = match follower.next().await {
                Ok(Item::Event(event)) => {
                    let rendered = state.renders.get(&state, &event);
                    SseEvent::default().event("message").id(&rendered.sse_id).data(&rendered.body)
                }
                Ok(Item::Gap { from, to }) => SseEvent::default()
                    .event("gap")
                    .id(eventstreams::position_id(to))
                    .data(serde_json::json!({ "from": from, "to": to }).to_string()),
                Err(error) => {
                    tracing::debug!(%error, "EventStreams stream ends");
                    return None;
                }
            };
            Some((Ok(event), (state, follower, open)))
        });
    let body = hello.chain(events).take_until(shutdown.cancelled_owned());
    crate::stream::sse_response(body, heartbeat)
}

/// One JSON object per line after an empty one, as KafkaSSE writes them (and, like it, no
/// heartbeat: a line reader would have to skip it).
fn lines(state: AppState, follower: Selected, open: GaugeGuard) -> Response {
    let shutdown = state.hub.shutdown().clone();
    let hello = stream::once(async { Ok::<_, Infallible>(Bytes::from_static(b"\n")) });
    let events =
        stream::unfold((state, follower, open), |(state, mut follower, open): Streaming| async move {
            let line = match follower.next().await {
                Ok(Item::Event(event)) => state.renders.get(&state, &event).line.clone(),
                // Nothing in this form can say it; the ids in the bodies show the jump.
                Ok(Item::Gap { .. }) => Bytes::new(),
                Err(error) => {
                    tracing::debug!(%error, "EventStreams JSON stream ends");
                    return None;
                }
            };
            Some((Ok(line), (state, follower, open)))
        });
    let body = hello.chain(events).take_until(shutdown.cancelled_owned());
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
