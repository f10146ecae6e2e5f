//! `GET /docs` and `/docs/…`: Swagger UI for `/openapi.json`, embedded in the binary by
//! `utoipa-swagger-ui` (feature `vendored`), so the page works without internet access.
//!
//! `/docs` redirects to `/docs/` (the page loads its files by relative URLs). Files are served
//! like every static file ([`super::static_files`]: `ETag` from a hash of the bytes, computed
//! once; 304s; gzip): `no-cache` for the page and its configuration, an hour for the large
//! scripts and styles. Public, like the document it shows: the page asks for the token
//! (**Authorize**) only to try requests.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use tiny_http::Request;
use utoipa_swagger_ui::Config;

use super::error::{ApiError, ApiResult};
use super::openapi::fnv1a;
use super::reply::Reply;
use super::request::path;
use super::router::Params;
use super::static_files::{StaticFile, content_type};
use crate::app::App;

/// Files that must be revalidated on every load (the page and its configuration).
const NO_CACHE: &[&str] = &["index.html", "swagger-initializer.js"];

/// `GET /docs`, `/docs/` and `/docs/{file}`.
pub(crate) fn get(_: &App, request: &mut Request, params: &Params) -> ApiResult<Reply> {
    if path(request.url()) == "/docs" {
        return Ok(
            Reply::with_status(301, serde_json::json!({"location": "/docs/"}))
                .header("Location", "/docs/"),
        );
    }
    let name = if params.tail.is_empty() {
        "index.html"
    } else {
        params.tail.as_str()
    };
    let missing = || ApiError::not_found(format!("/docs/{name} not found"));
    let file = utoipa_swagger_ui::serve(name, config())
        .map_err(|err| {
            log::error!("docs: serving {name}: {err}");
            ApiError::internal()
        })?
        .ok_or_else(missing)?;
    let cache_control = if NO_CACHE.contains(&name) {
        "no-cache"
    } else {
        "public, max-age=3600"
    };
    let key = format!("docs/{name}");
    let static_file = StaticFile {
        key: &key,
        content_type: content_type(Path::new(name)),
        etag: etag(name, &file.bytes),
        last_modified: None,
        cache_control,
    };
    static_file.reply(request, || Ok(Arc::from(file.bytes.as_ref())))
}

/// Swagger UI's configuration: our document, no online validator (it would call
/// validator.swagger.io), and the token kept only for the page's lifetime.
fn config() -> Arc<Config<'static>> {
    static CONFIG: OnceLock<Arc<Config<'static>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            Arc::new(
                Config::from("/openapi.json")
                    .validator_url("none")
                    .display_request_duration(true)
                    .filter(true)
                    .persist_authorization(false),
            )
        })
        .clone()
}

/// The file's `ETag`, hashed once per file (the files never change while the process runs).
fn etag(name: &str, bytes: &[u8]) -> String {
    static TAGS: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    let mut tags = TAGS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    tags.entry(name.to_string())
        .or_insert_with(|| format!("\"{:016x}\"", fnv1a(bytes)))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_page_points_at_our_document_without_online_validation() {
        let init = utoipa_swagger_ui::serve("swagger-initializer.js", config())
            .unwrap()
            .unwrap();
        let text = String::from_utf8(init.bytes.into_owned()).unwrap();
        assert!(text.contains("\"/openapi.json\""), "{text}");
        assert!(text.contains("\"validatorUrl\": \"none\""), "{text}");
        for name in ["index.html", "swagger-ui-bundle.js", "swagger-ui.css"] {
            let file = utoipa_swagger_ui::serve(name, config()).unwrap();
            assert!(file.is_some(), "{name} is not embedded");
        }
    }
}
