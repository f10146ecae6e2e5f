//! CORS: off unless `CORS_ORIGINS` lists origins; only listed origins get the headers.

use tiny_http::Request;

use super::reply::Reply;
use super::request::header;
use super::router;

/// The request's `Origin` when it is in the allowed list (`*` allows any).
pub(crate) fn allowed_origin(request: &Request, origins: &[String]) -> Option<String> {
    let origin = header(request, "Origin")?;
    origins
        .iter()
        .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
        .then(|| origin.to_string())
}

/// Adds the CORS response headers for an allowed origin.
pub(crate) fn decorate(reply: Reply, origin: Option<&str>) -> Reply {
    match origin {
        Some(origin) => reply
            .header("Access-Control-Allow-Origin", origin)
            .header("Vary", "Origin"),
        None => reply,
    }
}

/// Answers an `OPTIONS` request: 204 with `Allow`, plus the preflight headers for an
/// allowed origin; 404 for a path no route serves.
pub(crate) fn preflight(request: &Request, path: &str, origins: &[String]) -> Option<Reply> {
    let mut methods = router::methods_for(path);
    if methods.is_empty() {
        return None;
    }
    methods.push("OPTIONS");
    let allow = methods.join(", ");
    let reply = Reply::no_content().header("Allow", allow.clone());
    let Some(origin) = allowed_origin(request, origins) else {
        return Some(reply);
    };
    let headers = header(request, "Access-Control-Request-Headers")
        .unwrap_or("Authorization, Content-Type, Last-Event-ID")
        .to_string();
    Some(
        decorate(reply, Some(&origin))
            .header("Access-Control-Allow-Methods", allow)
            .header("Access-Control-Allow-Headers", headers)
            .header("Access-Control-Max-Age", "600"),
    )
}
