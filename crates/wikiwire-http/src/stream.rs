//! `GET /api/v1/stream`: Server-Sent Events. `id:` is the event id, so a browser's EventSource
//! resumes with `Last-Event-ID` and gets no gap and no duplicate; a cursor older than retention
//! gets an explicit `gap` event first. A client that falls behind the bus is disconnected and
//! resumes from history when it reconnects (SPEC §1), so it never holds memory on the hub.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, stream};
use wikiwire_hub::metrics::GaugeGuard;
use wikiwire_hub::{Follower, Item, Lag};

use crate::AppState;
use crate::error::ApiError;
use crate::params::{Params, parse_id};

/// How long a browser waits before reconnecting.
const RETRY: Duration = Duration::from_secs(3);

pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut params = Params::parse(raw.as_deref())?;
    let since = params.take_id("since")?;
    let links = params.take_flag("links")?.then(|| state.clone());
    let resume =
        match headers.get("last-event-id") {
            None => None,
            Some(value) => {
                Some(value.to_str().ok().and_then(parse_id).ok_or_else(|| {
                    ApiError::bad_field("Last-Event-ID", "Last-Event-ID: must be an event id")
                })?)
            }
        };
    let filter = params.into_filter()?;
    // The header wins: a reconnecting EventSource repeats the original URL with its `since`.
    let follower = state.hub.follow(resume.or(since), filter, Lag::End).await?;
    let open = GaugeGuard::new(Arc::clone(state.hub.metrics()), |metrics| &metrics.sse_clients);
    // A first comment sends the headers and tells the client the stream is live.
    let hello = stream::once(async {
        Ok::<_, Infallible>(SseEvent::default().retry(RETRY).comment("wikiwire stream"))
    });
    let events = stream::unfold((follower, open, links), next_event);
    let body = hello.chain(events).take_until(state.hub.shutdown().clone().cancelled_owned());
    Ok(sse_response(body, state.heartbeat))
}

/// `body` as Server-Sent Events, with a `heartbeat` comment every `heartbeat` of silence, typed
/// `text/event-stream; charset=utf-8`: clients on `requests` (sseclient) read text without a
/// charset as Latin-1, which garbles every title that is not (KafkaSSE says it too); the charset
/// changes nothing for an EventSource.
pub(crate) fn sse_response<S>(body: S, heartbeat: Duration) -> Response
where
    S: futures_util::Stream<Item = Result<SseEvent, Infallible>> + Send + 'static,
{
    let mut response =
        Sse::new(body).keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat")).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
    response
}

/// What a stream carries along: its follower, its place in the metrics, and, when links were
/// asked for, the state that knows the wikis' description blocks.
type Streaming = (Follower, GaugeGuard, Option<AppState>);

async fn next_event(
    (mut follower, open, links): Streaming,
) -> Option<(Result<SseEvent, Infallible>, Streaming)> {
    let event = match follower.next().await {
        Ok(Item::Event(event)) => {
            let data = match &links {
                Some(state) => crate::event_json(state, &event, true).to_string(),
                None => event.to_json(),
            };
            SseEvent::default().id(event.id.to_string()).data(data)
        }
        Ok(Item::Gap { from, to }) => SseEvent::default()
            .event("gap")
            .id(to.to_string())
            .data(serde_json::json!({ "from": from, "to": to }).to_string()),
        Err(error) => {
            tracing::debug!(%error, "SSE stream ends");
            return None;
        }
    };
    Some((Ok(event), (follower, open, links)))
}
