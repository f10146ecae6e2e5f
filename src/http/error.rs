//! `ApiError`: every failure a client can see, mapped to one status and one JSON shape
//! `{"error": "<short code>", "detail": "<what and why>"}`.

use std::fmt;

use serde_json::json;

use crate::session::SessionError;
use crate::store::StoreError;

/// Result alias of the HTTP layer.
pub(crate) type ApiResult<T> = std::result::Result<T, ApiError>;

/// A failed request: status, short code, human detail, and the extra headers some statuses need.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub detail: String,
    /// `Allow` header of a 405.
    pub allow: Option<String>,
    /// `Retry-After` seconds of a 429.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            detail: detail.into(),
            allow: None,
            retry_after: None,
        }
    }

    /// 400: the body is not valid JSON (or the request is malformed).
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(400, "bad_request", detail)
    }

    /// 401: missing or wrong bearer token.
    pub fn unauthorized() -> ApiError {
        let detail = "send Authorization: Bearer <token> (or ?token= for EventSource/WebSocket)";
        ApiError::new(401, "unauthorized", detail)
    }

    /// 404: unknown route, malformed id, or unknown id.
    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(404, "not_found", detail)
    }

    /// 405 with the methods the path accepts.
    pub fn method_not_allowed(method: &str, allow: &[&str]) -> ApiError {
        let allow = allow.join(", ");
        let detail = format!("{method} is not allowed here; allowed: {allow}");
        ApiError {
            allow: Some(allow),
            ..ApiError::new(405, "method_not_allowed", detail)
        }
    }

    /// 413: the body exceeds `MAX_BODY_BYTES`.
    pub fn too_large(max: usize) -> ApiError {
        let detail = format!("request body exceeds {max} bytes (MAX_BODY_BYTES)");
        ApiError::new(413, "payload_too_large", detail)
    }

    /// 431: the request line and headers exceed `MAX_HEADER_BYTES`.
    pub fn headers_too_large(max: usize) -> ApiError {
        let detail = format!("request line and headers exceed {max} bytes (MAX_HEADER_BYTES)");
        ApiError::new(431, "headers_too_large", detail)
    }

    /// 415: a JSON route got another content type.
    pub fn unsupported_media(content_type: &str) -> ApiError {
        // Strict on purpose: a form post from any web page reaches localhost without a CORS
        // preflight, and this server runs shell commands. JSON needs a preflight.
        let detail = format!(
            "send the body as JSON with Content-Type: application/json (got {content_type:?}; \
             with curl add -H 'Content-Type: application/json')"
        );
        ApiError::new(415, "unsupported_media_type", detail)
    }

    /// 422: a field (body or query) failed validation; the detail starts with its name.
    pub fn invalid(field: &str, detail: impl fmt::Display) -> ApiError {
        ApiError::new(422, "invalid_field", format!("{field}: {detail}"))
    }

    /// 429: a rate limit is exhausted; a token comes back after `retry_after` seconds.
    pub fn rate_limited(detail: impl Into<String>, retry_after: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(429, "rate_limited", detail)
        }
    }

    /// 500 without internals (the cause goes to the log, not the client).
    pub fn internal() -> ApiError {
        ApiError::new(500, "internal_error", "the server failed; see its log")
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": self.code, "detail": self.detail})
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.detail)
    }
}

impl std::error::Error for ApiError {}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        match err {
            StoreError::Unavailable(why) => {
                log::warn!("store unavailable: {why}");
                ApiError::new(503, "store_unavailable", "the database is unavailable")
            }
            StoreError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            StoreError::Conflict(what) => ApiError::new(409, "conflict", what),
            other => {
                log::error!("store error: {other}");
                ApiError::internal()
            }
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(err: SessionError) -> ApiError {
        match err {
            SessionError::NotFound(id) => ApiError::not_found(format!("session {id} not found")),
            SessionError::Invalid { field, detail } => ApiError::invalid(&field, detail),
            SessionError::Conflict(why) => ApiError::new(409, "conflict", why),
            SessionError::ShuttingDown => {
                ApiError::new(503, "shutting_down", "the server is shutting down")
            }
            SessionError::Unavailable(why) => ApiError::new(503, "unavailable", why),
            SessionError::TooManyActive { max, idle_timeout } => {
                let detail = format!(
                    "{max} sessions already have a live worker (MAX_ACTIVE_SESSIONS); idle \
                     workers retire after WORKER_IDLE_TIMEOUT ({}s), retry then",
                    idle_timeout.as_secs()
                );
                ApiError::new(503, "too_many_active_sessions", detail)
            }
            SessionError::Store(err) => err.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_errors_map_to_statuses() {
        let invalid = SessionError::Invalid {
            field: "max_tokens".into(),
            detail: "must be an integer".into(),
        };
        let err = ApiError::from(invalid);
        assert_eq!((err.status, err.code), (422, "invalid_field"));
        assert!(err.detail.starts_with("max_tokens:"));
        assert_eq!(
            ApiError::from(SessionError::NotFound("x".into())).status,
            404
        );
        assert_eq!(ApiError::from(SessionError::ShuttingDown).status, 503);
        let down = SessionError::Store(StoreError::Unavailable("pool timeout".into()));
        assert_eq!(ApiError::from(down).status, 503);
    }

    #[test]
    fn internal_errors_hide_the_cause() {
        let err = ApiError::from(StoreError::Database("secret sql".into()));
        assert_eq!(err.status, 500);
        assert!(!err.body().to_string().contains("secret"));
    }
}
