//! `ApiError`: every failure of the HTTP API, answered as JSON `{error, field?}` with the right
//! status (SPEC §4). Handlers return it; nothing else writes error responses.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use wikiwire_event::FieldError;
use wikiwire_hub::PublishError;
use wikiwire_store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: String,
    pub field: Option<String>,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError { status, error: error.into(), field: None, retry_after: None }
    }

    pub fn bad_field(field: impl Into<String>, error: impl Into<String>) -> ApiError {
        ApiError { field: Some(field.into()), ..ApiError::new(StatusCode::BAD_REQUEST, error) }
    }

    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, what)
    }
}

impl From<FieldError> for ApiError {
    fn from(error: FieldError) -> ApiError {
        ApiError::bad_field(error.field.clone(), error.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match &error {
            // The cluster's log is out of reach for now (a failover, NATS down): say so, and
            // when to try again.
            StoreError::Unavailable { reason, .. } => {
                tracing::warn!(%reason, "event log unavailable answering a request");
                ApiError {
                    retry_after: Some(2),
                    ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("{error}; try again"))
                }
            }
            // Retrying will not help: say what is wrong, and whose move it is.
            StoreError::Damaged { .. } | StoreError::Corrupt { .. } => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{error}; the hub's operator must repair the store"),
            ),
            StoreError::Closed => ApiError {
                retry_after: Some(5),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the hub is shutting down; try again")
            },
            StoreError::Backend { .. } | StoreError::NewerSchema { .. } | StoreError::Conflict(_) => {
                tracing::error!(%error, "store failure answering a request");
                ApiError {
                    retry_after: Some(5),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the event store is unavailable; try again",
                    )
                }
            }
        }
    }
}

impl ApiError {
    /// A publish refusal; `batch` says whether fields get an `[index].` prefix.
    pub fn from_publish(error: PublishError, batch: bool) -> ApiError {
        match error {
            PublishError::NotYourWiki { index, .. } => {
                let field = if batch { format!("[{index}].wiki") } else { "wiki".to_owned() };
                ApiError { field: Some(field), ..ApiError::new(StatusCode::FORBIDDEN, error.to_string()) }
            }
            PublishError::RateLimited { retry_after } => {
                // Rounded up: a client that waits this long is let in. The text says the same
                // as Retry-After.
                let seconds = (retry_after.as_secs_f64().ceil() as u64).max(1);
                ApiError {
                    retry_after: Some(seconds),
                    ..ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        format!("too many events: retry in {seconds} s (Retry-After)"),
                    )
                }
            }
            PublishError::Store(error) => error.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.error });
        if let Some(field) = &self.field {
            body["field"] = serde_json::Value::String(field.clone());
        }
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"wikiwire\""));
        }
        response
    }
}
