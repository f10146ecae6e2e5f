//! The one route table: the only place that knows URL shapes.
//!
//! Ids in paths must be hyphenated UUIDs; anything else is answered 404 `not_found` (the
//! resource cannot exist), the same as an unknown UUID. A trailing `{*}` matches the rest of
//! the path, still percent-encoded (static files).

use tiny_http::{Method, Request};

use super::error::{ApiError, ApiResult};
use super::limits::Rate;
use super::reply::Reply;
use super::streams::StreamStart;
use super::{
    docs, events, health, messages, metrics, novnc, openapi, sessions, sse, ui, vnc_info,
    vnc_proxy, ws,
};
use crate::app::App;

/// What a path matched: its `{id}` segment, normalised to lowercase, and what `{*}` matched.
#[derive(Debug, Default)]
pub(crate) struct Params {
    pub id: String,
    pub tail: String,
}

/// A REST handler answers with JSON; a stream handler validates and returns a stream to start.
#[derive(Clone, Copy)]
pub(crate) enum Handler {
    Rest(fn(&App, &mut Request, &Params) -> ApiResult<Reply>),
    Stream(fn(&App, &mut Request, &Params) -> ApiResult<StreamStart>),
}

struct Route {
    method: &'static str,
    pattern: &'static str,
    handler: Handler,
    /// Reachable without a token.
    public: bool,
    /// The rate limit a request spends a token of.
    rate: Option<Rate>,
}

const fn route(method: &'static str, pattern: &'static str, handler: Handler) -> Route {
    Route {
        method,
        pattern,
        handler,
        public: false,
        rate: None,
    }
}

/// Literal patterns come before patterns with `{id}` where both could match.
const ROUTES: &[Route] = &[
    Route {
        public: true,
        ..route("GET", "/health", Handler::Rest(health::get))
    },
    route("GET", "/metrics", Handler::Rest(metrics::get)),
    route("GET", "/api/sessions", Handler::Rest(sessions::list)),
    Route {
        rate: Some(Rate::Sessions),
        ..route("POST", "/api/sessions", Handler::Rest(sessions::create))
    },
    route("GET", "/api/sessions/{id}", Handler::Rest(sessions::get)),
    route(
        "DELETE",
        "/api/sessions/{id}",
        Handler::Rest(sessions::delete),
    ),
    route(
        "POST",
        "/api/sessions/{id}/cancel",
        Handler::Rest(sessions::cancel),
    ),
    route(
        "GET",
        "/api/sessions/{id}/messages",
        Handler::Rest(messages::list),
    ),
    Route {
        rate: Some(Rate::Messages),
        ..route(
            "POST",
            "/api/sessions/{id}/messages",
            Handler::Rest(messages::post),
        )
    },
    route(
        "GET",
        "/api/sessions/{id}/events",
        Handler::Rest(events::list),
    ),
    route(
        "GET",
        "/api/sessions/{id}/stream",
        Handler::Stream(sse::start),
    ),
    route("GET", "/api/vnc/info", Handler::Rest(vnc_info::get)),
    route("GET", "/ws/vnc", Handler::Stream(vnc_proxy::start_shared)),
    route(
        "GET",
        "/ws/vnc/{id}",
        Handler::Stream(vnc_proxy::start_session),
    ),
    route("GET", "/ws/{id}", Handler::Stream(ws::start)),
    // The noVNC client is the Debian package's static files: public, because a browser does
    // not add `?token=` to the scripts a page loads. The VNC WebSocket still needs the token.
    Route {
        public: true,
        ..route("GET", "/novnc/{*}", Handler::Rest(novnc::get))
    },
    Route {
        public: true,
        ..route("HEAD", "/novnc/{*}", Handler::Rest(novnc::get))
    },
    // The API's description and its page: public, they hold no secrets (the page asks for
    // the token only to try requests).
    Route {
        public: true,
        ..route("GET", "/openapi.json", Handler::Rest(openapi::get))
    },
    // Also matches `/docs` and `/docs/` (empty tail): one route, so `Allow` lists GET once.
    Route {
        public: true,
        ..route("GET", "/docs/{*}", Handler::Rest(docs::get))
    },
    // The web page: public, because a browser loads it before it can ask for the token; it
    // holds no secrets, and every API call it makes needs the token.
    Route {
        public: true,
        ..route("GET", "/", Handler::Rest(ui::index))
    },
    Route {
        public: true,
        ..route("HEAD", "/", Handler::Rest(ui::index))
    },
    Route {
        public: true,
        ..route("GET", "/ui/{*}", Handler::Rest(ui::file))
    },
    Route {
        public: true,
        ..route("HEAD", "/ui/{*}", Handler::Rest(ui::file))
    },
];

/// The outcome of routing a request.
pub(crate) enum Match {
    Found {
        handler: Handler,
        params: Params,
        public: bool,
        rate: Option<Rate>,
    },
    /// The path exists; these methods (plus OPTIONS) are allowed.
    WrongMethod(Vec<&'static str>),
}

/// Finds the route for `method` and `path` (no query string).
pub(crate) fn find(method: &Method, path: &str) -> ApiResult<Match> {
    let mut allowed = Vec::new();
    let mut bad_id = None;
    for route in ROUTES {
        match match_pattern(route.pattern, path) {
            PathMatch::No => continue,
            PathMatch::BadId(err) => bad_id = bad_id.or(Some(err)),
            PathMatch::Yes(params) if method.as_str() == route.method => {
                return Ok(Match::Found {
                    handler: route.handler,
                    params,
                    public: route.public,
                    rate: route.rate,
                });
            }
            PathMatch::Yes(_) => allowed.push(route.method),
        }
    }
    if !allowed.is_empty() {
        allowed.push("OPTIONS");
        return Ok(Match::WrongMethod(allowed));
    }
    Err(bad_id.unwrap_or_else(|| ApiError::not_found(format!("no route for {path}"))))
}

/// Whether any route serves `path` (for CORS preflight), and with which methods.
pub(crate) fn methods_for(path: &str) -> Vec<&'static str> {
    ROUTES
        .iter()
        .filter(|r| matches!(match_pattern(r.pattern, path), PathMatch::Yes(_)))
        .map(|r| r.method)
        .collect()
}

/// The pattern of the first route whose path shape fits `path`, whatever the method and
/// whether its id parses: a bounded metrics label. Allocates nothing.
pub(crate) fn pattern_for(path: &str) -> Option<&'static str> {
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    ROUTES
        .iter()
        .map(|r| r.pattern)
        .find(|pattern| shape_fits(pattern, path))
}

fn shape_fits(pattern: &str, path: &str) -> bool {
    let (mut pattern_parts, mut path_parts) = (pattern.split('/'), path.split('/'));
    loop {
        match (pattern_parts.next(), path_parts.next()) {
            (None, None) | (Some("{*}"), _) => return true,
            (Some("{id}"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// A route as the outside sees it (the OpenAPI document is checked against this list).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteInfo {
    pub method: &'static str,
    /// As in the table: `{id}` a session id, `{*}` the rest of the path.
    pub pattern: &'static str,
    /// Reachable without a token.
    pub public: bool,
}

/// Every route, in table order.
pub fn route_list() -> Vec<RouteInfo> {
    ROUTES
        .iter()
        .map(|r| RouteInfo {
            method: r.method,
            pattern: r.pattern,
            public: r.public,
        })
        .collect()
}

enum PathMatch {
    No,
    Yes(Params),
    BadId(ApiError),
}

fn match_pattern(pattern: &str, path: &str) -> PathMatch {
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    let (mut pattern_parts, mut path_parts) = (pattern.split('/'), path.split('/'));
    let mut params = Params::default();
    let mut bad_id = None;
    loop {
        match (pattern_parts.next(), path_parts.next()) {
            (None, None) => break,
            (Some("{*}"), first) => {
                params.tail = first
                    .into_iter()
                    .chain(path_parts)
                    .collect::<Vec<_>>()
                    .join("/");
                break;
            }
            (Some("{id}"), Some(segment)) => match parse_id(segment) {
                Ok(id) => params.id = id,
                Err(err) => bad_id = Some(err),
            },
            (Some(a), Some(b)) if a == b => {}
            _ => return PathMatch::No,
        }
    }
    match bad_id {
        Some(err) => PathMatch::BadId(err),
        None => PathMatch::Yes(params),
    }
}

fn parse_id(segment: &str) -> ApiResult<String> {
    match uuid::Uuid::try_parse(segment) {
        Ok(id) if segment.len() == 36 => Ok(id.hyphenated().to_string()),
        _ => Err(ApiError::not_found(format!(
            "{segment:?} is not a session id (ids are UUIDs)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0b9a3f0e-8d7c-4e5f-9a1b-2c3d4e5f6a7b";

    #[test]
    fn routes_match_methods_and_ids() {
        let path = format!("/api/sessions/{ID}/messages");
        let Ok(Match::Found { params, .. }) = find(&Method::Post, &path) else {
            panic!("no match")
        };
        assert_eq!(params.id, ID);
        let Ok(Match::WrongMethod(allow)) = find(&Method::Put, &path) else {
            panic!("expected 405")
        };
        assert_eq!(allow, ["GET", "POST", "OPTIONS"]);
    }

    #[test]
    fn unknown_paths_and_bad_ids_are_404() {
        assert_eq!(find(&Method::Get, "/nope").err().unwrap().status, 404);
        let err = find(&Method::Get, "/api/sessions/abc").err().unwrap();
        assert_eq!(err.status, 404);
        assert!(err.detail.contains("UUID"));
        assert!(find(&Method::Get, "/api/sessions/").is_ok());
    }

    #[test]
    fn vnc_literal_routes_win_and_tails_keep_the_rest() {
        let Ok(Match::Found { params, .. }) = find(&Method::Get, "/ws/vnc") else {
            panic!("no match")
        };
        assert_eq!(params.id, "");
        let Ok(Match::Found { params, .. }) = find(&Method::Get, &format!("/ws/vnc/{ID}")) else {
            panic!("no match")
        };
        assert_eq!(params.id, ID);
        let Ok(Match::Found { params, .. }) = find(&Method::Head, "/novnc/app/%2e%2e/ui.js") else {
            panic!("no match")
        };
        assert_eq!(params.tail, "app/%2e%2e/ui.js");
        for path in ["/novnc/", "/novnc"] {
            let Ok(Match::Found { params, .. }) = find(&Method::Get, path) else {
                panic!("no match for {path}")
            };
            assert_eq!(params.tail, "");
        }
    }

    #[test]
    fn patterns_for_metrics_follow_the_table_without_the_raw_path() {
        let cases = [
            (
                format!("/api/sessions/{ID}/messages"),
                Some("/api/sessions/{id}/messages"),
            ),
            (
                "/api/sessions/not-a-uuid".into(),
                Some("/api/sessions/{id}"),
            ),
            ("/api/sessions/".into(), Some("/api/sessions")),
            ("/ws/vnc".into(), Some("/ws/vnc")),
            (format!("/ws/{ID}"), Some("/ws/{id}")),
            ("/novnc/app/ui.js".into(), Some("/novnc/{*}")),
            ("/".into(), Some("/")),
            ("/nope/deeper".into(), None),
        ];
        for (path, pattern) in cases {
            assert_eq!(pattern_for(&path), pattern, "{path}");
        }
    }

    #[test]
    fn ids_are_normalised_to_lowercase() {
        let path = format!("/ws/{}", ID.to_uppercase());
        let Ok(Match::Found { params, .. }) = find(&Method::Get, &path) else {
            panic!("no match")
        };
        assert_eq!(params.id, ID);
    }
}

#[cfg(test)]
#[path = "router_props.rs"]
mod props;
