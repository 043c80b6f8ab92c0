//! Operations: `/metrics`, `/healthz`, and `/` (the live page, or seed 1's `?action=changes`).

use std::sync::LazyLock;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;
use crate::history;
use crate::params::Params;

pub async fn metrics(State(state): State<AppState>) -> Response {
    let text = state.hub.render_metrics().await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// Ready when the store answers and was not found damaged and, in a cluster, when this node
/// follows the stream closely.
pub async fn healthz(State(state): State<AppState>) -> Response {
    if let Some(fault) = state.hub.store().fault() {
        let body = serde_json::json!({ "status": "damaged", "error": format!("the event store is damaged: {fault}") });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    let cluster = state.hub.store().cluster_status();
    if let Some(cluster) = &cluster {
        let body = serde_json::json!({
            "status": if cluster.unready.is_some() { "unavailable" } else { "ok" },
            "node": cluster.node,
            "connected": cluster.connected,
            "last_id": cluster.applied_id,
            "stream_last_id": cluster.stream_last_id,
            "error": cluster.unready,
        });
        let status = if cluster.unready.is_some() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
        return (status, Json(body)).into_response();
    }
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
    let policy = PAGE_POLICY.as_str();
    Ok(([(header::CACHE_CONTROL, "no-cache"), (header::CONTENT_SECURITY_POLICY, policy)], Html(PAGE))
        .into_response())
}

/// The live page's Content-Security-Policy: its own inline script and style (by hash, so an
/// injected one would not run), requests to this hub only, nothing framed or embedded.
pub static PAGE_POLICY: LazyLock<String> = LazyLock::new(|| {
    let hash = |open: &str, close: &str| {
        let start = PAGE.find(open).map(|at| at + open.len());
        let end = PAGE.find(close);
        // The page is ours and has one of each (a test checks the policy matches it).
        let inline = &PAGE[start.expect("page.html has an inline block")..end.expect("and its end")];
        format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(inline)))
    };
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self' data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hash("<script>", "</script>"),
        hash("<style>", "</style>")
    )
});

/// The live recent-changes page: one file, no build step, no external resource. It reads the
/// description blocks (`/api/v1/wikis`), recent history and then the SSE stream with `links=true`.
const PAGE: &str = include_str!("page.html");
