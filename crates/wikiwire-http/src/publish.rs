//! `POST /api/v1/events`: JSON (one event or an array) or form-urlencoded packed events (one per
//! line), with a publisher's bearer token. Checks run cheapest first: token, declared length,
//! body, validation; nothing is stored unless every event is valid and the publisher's own.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use wikiwire_event::{Draft, FieldError, Timestamp, json, packed};

use wikiwire_hub::login_guard;

use crate::AppState;
use crate::error::ApiError;
use crate::listener::Peer;

enum Encoding {
    Json,
    Packed,
}

pub async fn publish(
    State(state): State<AppState>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let metrics = state.hub.metrics();
    let Some(token) = bearer(&headers) else {
        metrics.rejected_unauthorized.inc();
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "send Authorization: Bearer <publisher token>"));
    };
    let lookup = || state.hub.publishers().by_token(token);
    // Every request comes through the listener, which names its address; a router served some
    // other way (in tests) has none and is not slowed.
    let found = match peer {
        // A bearer token names no one: a success proves nothing about earlier failures.
        Some(Extension(Peer(ip))) => state.hub.logins().login(ip, login_guard::Claim::Unnamed, lookup),
        None => Ok(lookup()),
    };
    let publisher = match found {
        Ok(Some(publisher)) => publisher,
        Ok(None) => {
            metrics.rejected_unauthorized.inc();
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unknown publisher token"));
        }
        Err(wait) => {
            metrics.rejected_unauthorized.inc();
            return Err(ApiError {
                retry_after: Some(login_guard::whole_seconds(wait)),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, login_guard::refusal(wait))
            });
        }
    };
    let too_large = || {
        metrics.rejected_too_large.inc();
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("body larger than {} bytes", state.max_body))
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > state.max_body as u64) {
        return Err(too_large());
    }
    let bytes =
        match tokio::time::timeout(state.body_timeout, axum::body::to_bytes(body, state.max_body)).await {
            Ok(read) => read.map_err(|_| too_large())?,
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("the body did not arrive within {} s", state.body_timeout.as_secs()),
                ));
            }
        };
    let encoding = encoding(&headers, &bytes)?;
    let now = Timestamp::now();
    let parsed = match encoding {
        Encoding::Json => json::parse_submissions(&bytes, now).map(|drafts| {
            let batch = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
            (drafts, batch)
        }),
        Encoding::Packed => parse_packed(&bytes, now),
    };
    let (drafts, batch) = parsed.inspect_err(|_| metrics.rejected_invalid.inc())?;
    let appended =
        state.hub.publish(&publisher, drafts).await.map_err(|error| ApiError::from_publish(error, batch))?;
    let ids: Vec<u64> = appended.iter().map(|appended| appended.event.id).collect();
    let duplicates: Vec<u64> = appended.iter().filter(|a| a.duplicate).map(|a| a.event.id).collect();
    let status = if duplicates.len() == ids.len() { StatusCode::OK } else { StatusCode::CREATED };
    tracing::debug!(publisher = %publisher.name, ?ids, "published over HTTP");
    Ok((status, Json(serde_json::json!({ "ids": ids, "duplicates": duplicates }))).into_response())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim()).filter(|token| !token.is_empty())
}

/// JSON or packed by Content-Type; without one, by the first byte, as `curl -d` sends form type.
fn encoding(headers: &HeaderMap, body: &[u8]) -> Result<Encoding, ApiError> {
    let Some(content_type) = headers.get(header::CONTENT_TYPE) else {
        return Ok(match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{' | b'[') => Encoding::Json,
            _ => Encoding::Packed,
        });
    };
    let essence =
        content_type.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(Encoding::Json),
        other if other.starts_with("application/") && other.ends_with("+json") => Ok(Encoding::Json),
        "application/x-www-form-urlencoded" => Ok(Encoding::Packed),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send application/json or application/x-www-form-urlencoded (packed events, one per line)",
        )),
    }
}

fn parse_packed(body: &[u8], now: Timestamp) -> Result<(Vec<Draft>, bool), FieldError> {
    let text = std::str::from_utf8(body).map_err(|error| {
        FieldError::new("body", format!("not valid UTF-8 (at byte {})", error.valid_up_to()))
    })?;
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
    if lines.is_empty() {
        return Err(FieldError::new("body", "empty: send at least one packed event"));
    }
    if lines.len() > json::MAX_BATCH {
        return Err(FieldError::new("body", format!("at most {} events per request", json::MAX_BATCH)));
    }
    let batch = lines.len() > 1;
    let drafts = lines
        .iter()
        .enumerate()
        .map(|(index, line)| {
            packed::parse_submission(line, now)
                .map_err(|error| if batch { error.in_batch(index) } else { error })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((drafts, batch))
}
