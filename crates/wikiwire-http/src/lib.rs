//! The HTTP API (SPEC §4). `router` builds the whole application without a socket, so tests and
//! the binary share it; `serve` runs it on a bound listener until the hub shuts down.
//!
//! | module | owns |
//! |---|---|
//! | [`error`] | `ApiError`, the JSON `{error, field?}` answer for every failure |
//! | [`params`] | strict query-string decoding, shared by every endpoint |
//! | [`publish`] | `POST /api/v1/events` |
//! | [`history`] | `GET /api/v1/events[/{id}]`, `GET /changes`, `GET /?action=changes` |
//! | [`stream`] | `GET /api/v1/stream` (Server-Sent Events) |
//! | [`v2`] | `GET /v2/stream/{streams}`: Wikimedia's EventStreams contract |
//! | [`wikis`] | description blocks, the channel directory, Atom feeds |
//! | [`ops`] | `/metrics`, `/healthz`, `/` (the live page, `page.html`) |
//!
//! Handlers never render an event themselves: JSON, XML and Atom come from `wikiwire-event`.

pub mod error;
pub mod history;
mod listener;
pub mod ops;
pub mod params;
pub mod publish;
pub mod stream;
pub mod v2;
pub mod wikis;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use tokio::net::TcpListener;
use wikiwire_event::api;
use wikiwire_hub::Hub;

use crate::error::ApiError;
pub use crate::listener::{ConnectionLimits, Peer, serve_router, serve_with};

#[derive(Clone)]
pub struct AppState {
    pub hub: Arc<Hub>,
    pub max_body: usize,
    pub heartbeat: Duration,
    /// Time a client has to send a request body (a slow body holds a connection and a buffer).
    pub body_timeout: Duration,
    /// `/v2/stream`'s events, each rendered once for all its clients.
    pub renders: Arc<v2::Renders>,
    /// `/v2/stream`'s configured streams (`[[stream]]`) by name, with their filters.
    pub streams: Arc<std::collections::HashMap<String, wikiwire_event::Filter>>,
}

/// An event's canonical JSON; with `links`, also the links to the change: the publisher's own
/// `urls`, then those the wiki's description block gives (for clients, like the live page, that
/// do not expand link templates themselves).
pub fn event_json(state: &AppState, event: &wikiwire_event::Event, links: bool) -> serde_json::Value {
    let mut value = serde_json::to_value(event).expect("an event is always JSON");
    if links {
        let described = state.hub.publishers().wiki(&event.wiki).map(|wiki| wiki.links_for(event));
        let all: Vec<serde_json::Value> = event
            .urls
            .iter()
            .chain(described.iter().flatten())
            .map(|link| serde_json::json!({ "url": link.url, "description": link.description }))
            .collect();
        value["links"] = serde_json::Value::Array(all);
    }
    value
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(ops::root))
        .route("/changes", get(history::changes_route))
        .route(api::EVENTS, get(history::events).post(publish::publish))
        .route(api::EVENT, get(history::event))
        .route(api::STREAM, get(stream::stream))
        .route("/v2/stream/{streams}", get(v2::stream).options(v2::preflight))
        .route(api::WIKIS, get(wikis::list))
        .route(api::WIKI, get(wikis::one))
        .route(api::CHANNELS, get(wikis::channels))
        .route(api::CHANNEL, get(wikis::channel))
        .route("/feeds/{file}", get(wikis::feed))
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here")
        })
        .layer(middleware::from_fn_with_state(state.clone(), count_and_share))
        .with_state(state)
}

/// Counts requests, lets pages on other sites read the public GET endpoints, and keeps browsers
/// from reading any answer as something else: `nosniff` everywhere, and a policy that lets no
/// answer but the live page (which sets its own, `ops::PAGE_POLICY`) run or load anything — a
/// feed or a JSON answer opened in a browser carries publishers' text.
async fn count_and_share(State(state): State<AppState>, request: Request, next: Next) -> Response {
    state.hub.metrics().http_requests.inc();
    let readable = request.method() == Method::GET;
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if readable {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(NOTHING_RUNS));
    }
    response
}

/// The policy of every answer but the live page: nothing is loaded, run or framed.
const NOTHING_RUNS: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Serves until the hub's shutdown token fires; open SSE streams end with it.
pub async fn serve(listener: TcpListener, state: AppState) -> std::io::Result<()> {
    serve_with(listener, state, ConnectionLimits::default()).await
}
