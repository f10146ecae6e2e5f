//! `Reply`: a JSON response (or raw bytes, for static files) with a status and extra headers,
//! and its tiny_http form.

use std::io::Cursor;

use serde_json::Value;
use tiny_http::{Header, Response};

use super::error::ApiError;

/// What a REST handler returns on success.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(&'static str, String)>,
    /// A non-JSON body (static files) sent instead of `body`, with this `Content-Type`.
    pub raw: Option<(&'static str, Vec<u8>)>,
}

impl Reply {
    /// 200 with a JSON body.
    pub fn ok(body: Value) -> Reply {
        Reply::with_status(200, body)
    }

    pub fn with_status(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body,
            headers: Vec::new(),
            raw: None,
        }
    }

    /// A non-JSON body of `content_type`.
    pub fn bytes(status: u16, content_type: &'static str, data: Vec<u8>) -> Reply {
        Reply {
            raw: Some((content_type, data)),
            ..Reply::with_status(status, Value::Null)
        }
    }

    /// 200 with a JSON body serialised already (a `Serialize` type written straight to bytes,
    /// with no `Value` in between).
    pub fn json_bytes(data: Vec<u8>) -> Reply {
        Reply::bytes(200, "application/json", data)
    }

    /// An empty-bodied reply (preflight).
    pub fn no_content() -> Reply {
        Reply::with_status(204, Value::Null)
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// The tiny_http response: JSON body (none for 204 and 304) with `Content-Type`, or the
    /// raw body with its own.
    pub fn into_response(self) -> Response<Cursor<Vec<u8>>> {
        let (content_type, body) = match (self.status, self.raw) {
            (204 | 304, _) => (None, Vec::new()),
            (_, Some((content_type, data))) => (Some(content_type), data),
            // `to_vec` writes straight into the buffer (`to_string` goes through the
            // formatting machinery); serialising a `Value` cannot fail.
            (_, None) => (
                Some("application/json"),
                serde_json::to_vec(&self.body).unwrap_or_default(),
            ),
        };
        let mut response = Response::from_data(body).with_status_code(self.status);
        if let Some(content_type) = content_type {
            response.add_header(make_header("Content-Type", content_type));
        }
        for (name, value) in &self.headers {
            response.add_header(make_header(name, value));
        }
        response
    }
}

impl From<ApiError> for Reply {
    fn from(err: ApiError) -> Reply {
        let mut reply = Reply::with_status(err.status, err.body());
        if let Some(allow) = &err.allow {
            reply = reply.header("Allow", allow.clone());
        }
        if let Some(seconds) = err.retry_after {
            reply = reply.header("Retry-After", seconds.to_string());
        }
        if err.status == 401 {
            reply = reply.header("WWW-Authenticate", "Bearer");
        }
        reply
    }
}

/// A header from trusted parts; values with bytes tiny_http rejects become empty.
pub(crate) fn make_header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .or_else(|_| Header::from_bytes(name.as_bytes(), &b""[..]))
        .unwrap_or_else(|_| Header::from_bytes(&b"X-Invalid"[..], &b""[..]).expect("static"))
}
