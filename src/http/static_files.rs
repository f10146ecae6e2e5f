//! Static files, wherever their bytes come from (noVNC on disk, the web UI in the binary):
//! path checks, media types, validators and 304s, and gzip.
//!
//! - Paths are percent-decoded and checked segment by segment ([`relative_path`]): `.`, `..`,
//!   absolute paths, backslashes and NUL are refused with 400 before anything is looked up.
//! - Every file carries an `ETag` (and `Last-Modified` when it has a date); a matching
//!   `If-None-Match` (or, without it, `If-Modified-Since`) is a 304 with no body.
//! - A client that accepts gzip gets compressible files (text, scripts, JSON, SVG) gzipped.
//!   Each file is compressed once, at first use, and the result kept until its `ETag`
//!   changes. The gzip variant has its own `ETag` (`…-gz`), and `Vary: Accept-Encoding` tells
//!   caches that the encoding depends on the request.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use tiny_http::Request;

use super::error::{ApiError, ApiResult};
use super::reply::Reply;
use super::request::header;
use crate::util::time::DateTime;

/// Files smaller than this are sent as they are: gzip would save next to nothing.
const MIN_GZIP: usize = 512;
/// The gzip cache is emptied when it grows past this many files (a bound, not an LRU:
/// the files served are a small fixed set).
const GZIP_CACHE_FILES: usize = 512;

/// File key → (the `ETag` it was compressed at, the gzip bytes).
type GzipCache = HashMap<String, (String, Arc<[u8]>)>;

/// What to send for one file, apart from its bytes.
pub(crate) struct StaticFile<'a> {
    /// Identifies the file in the gzip cache (a path, or a name in the binary).
    pub key: &'a str,
    pub content_type: &'static str,
    /// The identity representation's strong validator, quoted (`"…"`).
    pub etag: String,
    pub last_modified: Option<String>,
    pub cache_control: &'static str,
}

impl StaticFile<'_> {
    /// The reply: 304 when the client's copy is current, otherwise the bytes `load` returns,
    /// gzipped when the client accepts it and it pays.
    pub(crate) fn reply(
        &self,
        request: &Request,
        load: impl FnOnce() -> ApiResult<Arc<[u8]>>,
    ) -> ApiResult<Reply> {
        let gzip = accepts_gzip(request) && is_compressible(self.content_type);
        let etag = if gzip {
            gzip_etag(&self.etag)
        } else {
            self.etag.clone()
        };
        let reply = if self.is_fresh(request, &etag) {
            Reply::with_status(304, serde_json::Value::Null)
        } else {
            self.body(load()?, gzip)
        };
        let reply = reply
            .header("ETag", etag)
            .header("Cache-Control", self.cache_control)
            .header("Vary", "Accept-Encoding")
            .header("X-Content-Type-Options", "nosniff");
        Ok(match &self.last_modified {
            Some(date) => reply.header("Last-Modified", date.clone()),
            None => reply,
        })
    }

    fn is_fresh(&self, request: &Request, etag: &str) -> bool {
        match header(request, "If-None-Match") {
            Some(tags) => tags.split(',').map(str::trim).any(|tag| {
                let tag = tag.strip_prefix("W/").unwrap_or(tag);
                tag == etag || tag == "*"
            }),
            None => {
                let since = header(request, "If-Modified-Since").map(str::trim);
                since.is_some() && since == self.last_modified.as_deref()
            }
        }
    }

    fn body(&self, data: Arc<[u8]>, gzip: bool) -> Reply {
        if gzip && data.len() >= MIN_GZIP {
            let packed = gzipped(self.key, &self.etag, &data);
            return Reply::bytes(200, self.content_type, packed.to_vec())
                .header("Content-Encoding", "gzip");
        }
        Reply::bytes(200, self.content_type, data.to_vec())
    }
}

/// The gzip variant's validator: `"abc"` → `"abc-gz"`.
fn gzip_etag(etag: &str) -> String {
    match etag.strip_suffix('"') {
        Some(open) => format!("{open}-gz\""),
        None => format!("{etag}-gz"),
    }
}

/// Whether `Accept-Encoding` lists `gzip` (or `x-gzip`, or `*`) with a non-zero weight.
pub(crate) fn accepts_gzip(request: &Request) -> bool {
    let Some(accept) = header(request, "Accept-Encoding") else {
        return false;
    };
    accept.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or("").to_ascii_lowercase();
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        matches!(coding.as_str(), "gzip" | "x-gzip" | "*") && !refused
    })
}

fn is_compressible(content_type: &str) -> bool {
    content_type.starts_with("text/")
        || content_type.starts_with("application/json")
        || content_type.starts_with("image/svg+xml")
}

/// The gzip of `data` for `key` at `etag`, compressed on first use. The lock is held only to
/// look up and to insert; two first requests may both compress, and one result is kept.
fn gzipped(key: &str, etag: &str, data: &[u8]) -> Arc<[u8]> {
    static CACHE: OnceLock<Mutex<GzipCache>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    let lock = || {
        cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    };
    if let Some((cached_etag, packed)) = lock().get(key)
        && cached_etag == etag
    {
        return packed.clone();
    }
    let packed: Arc<[u8]> = gzip(data).into();
    let mut cache = lock();
    if cache.len() >= GZIP_CACHE_FILES {
        cache.clear();
    }
    cache.insert(key.to_string(), (etag.to_string(), packed.clone()));
    packed
}

/// A gzip member (RFC 1952): header, raw deflate (miniz_oxide), CRC-32 and size.
pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    // ID1 ID2, CM=deflate, no flags, no mtime, XFL=0, OS=unknown.
    const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let deflated = miniz_oxide::deflate::compress_to_vec(data, 9);
    let mut out = Vec::with_capacity(HEADER.len() + deflated.len() + 8);
    out.extend_from_slice(&HEADER);
    out.extend_from_slice(&deflated);
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// CRC-32 (IEEE 802.3, reflected, as gzip uses it).
pub(crate) fn crc32(data: &[u8]) -> u32 {
    static TABLE: [u32; 256] = crc_table();
    let crc = data.iter().fold(!0u32, |crc, &byte| {
        TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8)
    });
    !crc
}

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
}

/// The decoded, checked relative path of a URL tail; `index` when it is empty.
pub(crate) fn relative_path(tail: &str, index: &str) -> ApiResult<PathBuf> {
    let decoded = percent_decode(tail)
        .ok_or_else(|| ApiError::bad_request("the path has a malformed %-escape"))?;
    let bad = |why: &str| ApiError::bad_request(format!("refused path: {why}"));
    if decoded.contains('\0') || decoded.contains('\\') {
        return Err(bad("NUL or backslash"));
    }
    if decoded.starts_with('/') {
        return Err(bad("absolute path"));
    }
    let mut relative = PathBuf::new();
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        if segment == "." || segment == ".." {
            return Err(bad("'.' and '..' segments are not allowed"));
        }
        relative.push(segment);
    }
    if relative.as_os_str().is_empty() {
        relative.push(index);
    }
    Ok(relative)
}

/// `%XX` decoding of a path (a `+` stays a `+`); `None` for a malformed escape or non-UTF-8.
fn percent_decode(input: &str) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The media type by extension (`.js` files are ES modules: `text/javascript`).
pub(crate) fn content_type(file: &Path) -> &'static str {
    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "mp3" => "audio/mpeg",
        "oga" | "ogg" => "audio/ogg",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `Tue, 04 Jun 2025 09:05:01 GMT` (RFC 9110 IMF-fixdate).
pub(crate) fn http_date(unix_secs: i64) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = DateTime::from_unix_millis(unix_secs.saturating_mul(1000));
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[t.weekday as usize],
        t.day,
        MONTHS[t.month as usize - 1],
        t.year,
        t.hour,
        t.minute,
        t.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_odd_paths_are_refused() {
        for tail in [
            "../etc/passwd",
            "app/../../x",
            "%2e%2e/%2e%2e/etc/passwd",
            "%2E%2E%2Fetc",
            "a/%2e/b",
            "%2fetc/passwd",
            "a%00b",
            "a%5c..%5cb",
            "%zz",
        ] {
            assert_eq!(relative_path(tail, "i").unwrap_err().status, 400, "{tail}");
        }
        assert_eq!(
            relative_path("", "vnc.html").unwrap(),
            PathBuf::from("vnc.html")
        );
        assert_eq!(
            relative_path("app//ui.js", "x").unwrap(),
            PathBuf::from("app/ui.js")
        );
    }

    #[test]
    fn dates_and_types() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_749_027_901), "Wed, 04 Jun 2025 09:05:01 GMT");
        assert!(content_type(Path::new("core/rfb.js")).starts_with("text/javascript"));
        assert_eq!(content_type(Path::new("x.WASM")), "application/wasm");
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn gzip_members_inflate_back_and_carry_crc_and_size() {
        let data = "hello, gzip! ".repeat(100);
        let packed = gzip(data.as_bytes());
        assert_eq!(&packed[..3], &[0x1f, 0x8b, 8]);
        let body = &packed[10..packed.len() - 8];
        let inflated = miniz_oxide::inflate::decompress_to_vec(body).unwrap();
        assert_eq!(inflated, data.as_bytes());
        let trailer = &packed[packed.len() - 8..];
        assert_eq!(trailer[..4], crc32(data.as_bytes()).to_le_bytes());
        assert_eq!(trailer[4..], (data.len() as u32).to_le_bytes());
    }

    #[test]
    fn gzip_etags_differ_from_identity_etags() {
        assert_eq!(gzip_etag("\"1a-2b\""), "\"1a-2b-gz\"");
    }
}
