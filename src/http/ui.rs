//! `GET|HEAD /` and `/ui/…`: the web page (plain HTML, CSS and ES modules from `ui/`),
//! embedded in the binary.
//!
//! Public routes: a browser loads the page before it can ask for `API_TOKEN`, and the files
//! hold no secrets (every API call the page makes still needs the token). Each file's `ETag`
//! is a hash of its bytes, computed once; `Cache-Control: no-cache` makes browsers revalidate
//! on every load, so a new binary is picked up at once and an unchanged file costs a 304.
//! Compression as for every static file ([`super::static_files`]).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use tiny_http::Request;

use super::error::{ApiError, ApiResult};
use super::reply::Reply;
use super::router::Params;
use super::static_files::{StaticFile, content_type, relative_path};
use crate::app::App;

const CACHE_CONTROL: &str = "no-cache";
/// The page talks only to this server (HTTP and WebSocket); screenshots are data: URLs.
const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; \
                   connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'; \
                   object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// One embedded file and its validator, hashed at first use.
struct Asset {
    name: &'static str,
    data: &'static [u8],
    etag: OnceLock<String>,
}

macro_rules! asset {
    ($name:literal) => {
        Asset {
            name: $name,
            data: include_bytes!(concat!("ui/", $name)),
            etag: OnceLock::new(),
        }
    };
}

static ASSETS: [Asset; 8] = [
    asset!("index.html"),
    asset!("app.css"),
    asset!("app.js"),
    asset!("api.js"),
    asset!("conversation.js"),
    asset!("desktop.js"),
    asset!("sessions.js"),
    asset!("icon.svg"),
];

/// `GET /`: the page.
pub(crate) fn index(_: &App, request: &mut Request, _: &Params) -> ApiResult<Reply> {
    Ok(serve(request, "index.html")?.header("Content-Security-Policy", CSP))
}

/// `GET /ui/{name}`: one of the page's files.
pub(crate) fn file(_: &App, request: &mut Request, params: &Params) -> ApiResult<Reply> {
    let relative = relative_path(&params.tail, "")?;
    serve(request, &relative.to_string_lossy())
}

fn serve(request: &Request, name: &str) -> ApiResult<Reply> {
    let asset = ASSETS
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| ApiError::not_found(format!("/ui/{name} not found")))?;
    let etag = asset
        .etag
        .get_or_init(|| format!("\"{:x}-{:016x}\"", asset.data.len(), fnv1a(asset.data)));
    let file = StaticFile {
        key: asset.name,
        content_type: content_type(Path::new(asset.name)),
        etag: etag.clone(),
        last_modified: None,
        cache_control: CACHE_CONTROL,
    };
    file.reply(request, || Ok(Arc::from(asset.data)))
}

/// FNV-1a, 64 bits: a content hash for validators (not for security).
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_file_has_a_known_type() {
        for asset in &ASSETS {
            let kind = content_type(Path::new(asset.name));
            assert_ne!(kind, "application/octet-stream", "{}", asset.name);
        }
    }

    #[test]
    fn hashes_differ_for_different_bytes() {
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    }
}
