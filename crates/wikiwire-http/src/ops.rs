//! Operations: `/metrics`, `/healthz`, and `/` (the index, or seed 1's `?action=changes`).

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use wikiwire_event::xml::escape;

use crate::AppState;
use crate::error::ApiError;
use crate::history;
use crate::params::Params;

pub async fn metrics(State(state): State<AppState>) -> Response {
    let text = state.hub.render_metrics().await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// Ready when the store answers.
pub async fn healthz(State(state): State<AppState>) -> Response {
    match state.hub.store().bounds().await {
        Ok(bounds) => Json(serde_json::json!({ "status": "ok", "last_id": bounds.last_id })).into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "unavailable", "error": error.to_string() })),
        )
            .into_response(),
    }
}

/// `/?action=changes&...` is seed 1's history query; otherwise the index page.
pub async fn root(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let params = Params::parse(raw.as_deref())?;
    if raw.as_deref().is_some_and(|query| query.split('&').any(|pair| pair == "action=changes")) {
        return history::changes(&state, params).await;
    }
    Ok(Html(index(&state)).into_response())
}

fn index(state: &AppState) -> String {
    let mut wikis = String::new();
    for wiki in state.hub.publishers().wikis() {
        let name = escape(&wiki.name);
        wikis.push_str(&format!(
            "<li>{name}: <a href=\"/api/v1/wikis/{name}\">description</a>, \
             <a href=\"/api/v1/events?wiki={name}\">history</a>, <a href=\"/feeds/{name}.atom\">Atom</a></li>\n"
        ));
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>wikiwire</title></head>\n<body>\n\
         <h1>wikiwire</h1>\n<p>Events of the wikis on this hub:</p>\n<ul>\n{wikis}</ul>\n\
         <p>All wikis: <a href=\"/api/v1/events\">history (JSON)</a>, <a href=\"/changes\">history (XML)</a>, \
         <a href=\"/api/v1/stream\">live stream (SSE)</a>, <a href=\"/feeds/all.atom\">Atom</a>, \
         <a href=\"/metrics\">metrics</a>.</p>\n</body></html>\n"
    )
}
